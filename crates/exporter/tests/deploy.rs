//! The alert rules and the dashboard in `deploy/`: promtool accepts the rules and their
//! unit tests pass; every alert has what an on-call person needs; every metric they use is
//! one the exporter publishes; every runbook link lands on a README heading.

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use tcpstate_exporter::encode::METRIC_NAMES;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn rules_dir() -> PathBuf {
    repo().join("deploy/prometheus")
}

fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// `tcpstate_...` identifiers in a text.
fn metric_refs(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut rest = text;
    while let Some(i) = rest.find("tcpstate_") {
        let tail = &rest[i..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        // Not part of a longer word (e.g. a URL path `tcpstate/...` is not matched anyway).
        let before = rest[..i].chars().last();
        if !before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_') {
            out.insert(tail[..end].to_string());
        }
        rest = &tail[end..];
    }
    out
}

fn promtool(args: &[&str]) {
    let Some(promtool) = common::tool("promtool") else {
        return;
    };
    let out = Command::new(promtool)
        .args(args)
        .current_dir(rules_dir())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "promtool {args:?}:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn promtool_checks_the_rules() {
    promtool(&["check", "rules", "tcpstate-alerts.yml"]);
}

#[test]
fn promtool_unit_tests_pass() {
    promtool(&["test", "rules", "tcpstate-alerts.test.yml"]);
}

struct Alert {
    name: String,
    body: String,
}

fn alerts() -> Vec<Alert> {
    let text = read(&rules_dir().join("tcpstate-alerts.yml"));
    let mut out: Vec<Alert> = Vec::new();
    for line in text.lines() {
        if let Some(name) = line.trim().strip_prefix("- alert:") {
            out.push(Alert {
                name: name.trim().to_string(),
                body: String::new(),
            });
        } else if let Some(a) = out.last_mut() {
            a.body.push_str(line);
            a.body.push('\n');
        }
    }
    out
}

#[test]
fn every_alert_is_complete_and_camel_case() {
    let alerts = alerts();
    assert!(alerts.len() >= 6, "{} alerts", alerts.len());
    let tests = read(&rules_dir().join("tcpstate-alerts.test.yml"));
    for a in &alerts {
        let first = a.name.chars().next().unwrap();
        assert!(
            first.is_ascii_uppercase() && a.name.chars().all(|c| c.is_ascii_alphanumeric()),
            "{} is not CamelCase",
            a.name
        );
        for key in [
            "expr:",
            "for:",
            "severity:",
            "summary:",
            "description:",
            "runbook_url:",
        ] {
            assert!(a.body.contains(key), "{} has no {key}", a.name);
        }
        assert!(
            tests.contains(&format!("alertname: {}", a.name)),
            "{} has no unit test",
            a.name
        );
    }
}

#[test]
fn runbook_links_land_on_readme_headings() {
    let readme = read(&repo().join("README.md"));
    let anchors: BTreeSet<String> = readme
        .lines()
        .filter_map(|l| l.strip_prefix("#### "))
        .map(|h| {
            h.trim()
                .to_lowercase()
                .chars()
                .filter(|c| c.is_alphanumeric() || *c == '-' || *c == ' ')
                .map(|c| if c == ' ' { '-' } else { c })
                .collect()
        })
        .collect();
    for a in alerts() {
        let url = a
            .body
            .lines()
            .find_map(|l| l.trim().strip_prefix("runbook_url:"))
            .unwrap()
            .trim()
            .trim_matches('"')
            .to_string();
        let anchor = url.split_once('#').map(|(_, a)| a).unwrap_or("");
        assert!(
            anchors.contains(anchor),
            "{}: runbook anchor #{anchor} is not a README heading",
            a.name
        );
    }
}

#[test]
fn rules_and_dashboard_use_only_published_metrics() {
    let published: BTreeSet<&str> = METRIC_NAMES.iter().copied().collect();
    let rules = read(&rules_dir().join("tcpstate-alerts.yml"));
    let dash_text = read(&repo().join("deploy/grafana/tcpstate.json"));
    for (what, text) in [("rules", &rules), ("dashboard", &dash_text)] {
        let refs = metric_refs(text);
        assert!(!refs.is_empty(), "{what} uses no tcpstate metric");
        for r in refs {
            // `tcpstate_alerts` style words are not metrics; all ours are published names.
            assert!(
                published.contains(r.as_str()),
                "{what} uses {r}, which the exporter does not publish"
            );
        }
    }
}

#[test]
fn dashboard_has_the_panels_the_issue_asks_for() {
    let dash: serde_json::Value =
        serde_json::from_str(&read(&repo().join("deploy/grafana/tcpstate.json"))).unwrap();
    assert!(dash["uid"].as_str().is_some_and(|u| !u.is_empty()));
    let panels = dash["panels"].as_array().unwrap();
    let exprs: Vec<String> = panels
        .iter()
        .flat_map(|p| p["targets"].as_array().cloned().unwrap_or_default())
        .map(|t| t["expr"].as_str().unwrap_or("").to_string())
        .collect();
    for needle in [
        "tcpstate_sockets",
        "tcpstate_close_wait_sockets",
        "tcpstate_time_wait_sockets",
        "tcpstate_ephemeral_port_usage_ratio",
    ] {
        assert!(
            exprs.iter().any(|e| e.contains(needle)),
            "no panel queries {needle}"
        );
    }
    let mut ids = BTreeSet::new();
    for p in panels {
        assert!(ids.insert(p["id"].as_u64().unwrap()), "duplicate panel id");
        assert!(p["gridPos"]["w"].as_u64().unwrap() <= 24);
    }
}
