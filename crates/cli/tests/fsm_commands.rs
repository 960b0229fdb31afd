//! `simulate` and `explain` through the real binary.

use assert_cmd::Command;
use predicates::prelude::*;

fn tcpstate() -> Command {
    Command::cargo_bin("tcpstate").expect("binary built")
}

#[test]
fn simulate_list_names_every_scenario() {
    let out = tcpstate().args(["simulate", "--list"]).assert().success();
    let text = String::from_utf8(out.get_output().stdout.clone()).unwrap();
    for s in tcpstate_fsm::SCENARIOS {
        assert!(text.contains(s.name), "{} missing from:\n{text}", s.name);
    }
    assert_eq!(text.lines().count(), tcpstate_fsm::SCENARIOS.len());
}

#[test]
fn simulate_json_is_a_documented_timeline() {
    let out = tcpstate()
        .args(["simulate", "lost-final-ack", "--json"])
        .assert()
        .success();
    let doc: serde_json::Value = serde_json::from_slice(&out.get_output().stdout).unwrap();
    assert_eq!(doc["version"], 1);
    assert_eq!(doc["scenario"], "lost-final-ack");
    assert_eq!(doc["profile"], "linux");
    let steps = doc["steps"].as_array().unwrap();
    // The lost ACK is marked lost; no RST is ever sent; the FIN is retransmitted.
    assert!(steps
        .iter()
        .any(|s| s["kind"] == "sent" && s["lost"] == true));
    assert!(!steps
        .iter()
        .any(|s| s["kind"] == "sent" && s["segment"]["flags"].as_str().unwrap().contains('R')));
    assert!(steps.iter().any(|s| s["kind"] == "sent"
        && s["retransmission"] == true
        && s["segment"]["flags"].as_str().unwrap().contains('F')));
    let client = doc["states"]["client"].as_array().unwrap();
    let tw = client.iter().find(|s| s["state"] == "TIME_WAIT").unwrap();
    assert!(tw["duration_s"].as_f64().unwrap() >= 60.0);
}

#[test]
fn simulate_rfc_profile_uses_two_msl() {
    let out = tcpstate()
        .args([
            "simulate",
            "client-close",
            "--profile",
            "rfc",
            "--msl",
            "30s",
            "--json",
        ])
        .assert()
        .success();
    let doc: serde_json::Value = serde_json::from_slice(&out.get_output().stdout).unwrap();
    let client = doc["states"]["client"].as_array().unwrap();
    let tw = client.iter().find(|s| s["state"] == "TIME_WAIT").unwrap();
    assert_eq!(tw["duration_s"].as_f64().unwrap().round(), 60.0);
}

#[test]
fn simulate_rfc1337_flag_protects_time_wait() {
    let dwell = |extra: &[&str]| -> f64 {
        let mut args = vec!["simulate", "time-wait-assassination", "--json"];
        args.extend_from_slice(extra);
        let out = tcpstate().args(&args).assert().success();
        let doc: serde_json::Value = serde_json::from_slice(&out.get_output().stdout).unwrap();
        doc["states"]["client"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["state"] == "TIME_WAIT")
            .unwrap()["duration_s"]
            .as_f64()
            .unwrap()
    };
    assert!(dwell(&[]) < 10.0);
    assert!(dwell(&["--rfc1337"]) >= 60.0);
}

#[test]
fn simulate_unknown_scenario_is_a_usage_error() {
    tcpstate()
        .args(["simulate", "no-such-thing"])
        .assert()
        .code(2)
        .stderr(
            predicate::str::contains("unknown scenario")
                .and(predicate::str::contains("client-close")),
        );
}

#[test]
fn simulate_text_chart_shows_states_and_dwell() {
    tcpstate()
        .args(["simulate", "close-wait-leak"])
        .assert()
        .success()
        .stdout(predicate::str::contains("CLOSE_WAIT").and(predicate::str::contains("FIN_WAIT_2")));
}

#[test]
fn explain_time_wait_tells_the_two_reasons() {
    tcpstate()
        .args(["explain", "time-wait"])
        .assert()
        .success()
        .stdout(
            predicate::str::contains("two reasons")
                .and(predicate::str::contains("FIN_WAIT_2"))
                .and(predicate::str::contains("60 s"))
                .and(predicate::str::contains("active closer")),
        );
}

#[test]
fn explain_accepts_every_spelling_and_rejects_unknown() {
    for spelling in [
        "CLOSE_WAIT",
        "close-wait",
        "CLOSE-WAIT",
        "TCP_CLOSE_WAIT",
        "8",
    ] {
        tcpstate()
            .args(["explain", spelling])
            .assert()
            .success()
            .stdout(
                predicate::str::contains("never called close()")
                    .or(predicate::str::contains("not called close()")),
            );
    }
    tcpstate()
        .args(["explain", "TIME_WIAT"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("unknown TCP state"));
}

#[test]
fn explain_json_lists_table_rows() {
    let out = tcpstate()
        .args(["explain", "CLOSE_WAIT", "--json", "--profile", "rfc"])
        .assert()
        .success();
    let doc: serde_json::Value = serde_json::from_slice(&out.get_output().stdout).unwrap();
    assert_eq!(doc["state"], "CLOSE_WAIT");
    let outs = doc["ways_out"].as_array().unwrap();
    assert!(outs
        .iter()
        .any(|r| r["to"] == "LAST_ACK" && r["trigger"] == "CLOSE"));
    assert!(
        outs.iter().all(|r| r["linux_only"] == false),
        "rfc profile only"
    );
    assert!(doc["ways_in"]
        .as_array()
        .unwrap()
        .iter()
        .any(|r| r["from"] == "ESTABLISHED"));
}
