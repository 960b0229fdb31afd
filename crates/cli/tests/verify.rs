//! `tcpstate verify` end to end: verdicts, exit codes, JSON schema, charts.

use assert_cmd::Command;
use serde_json::Value;

fn verify(args: &[&str]) -> assert_cmd::assert::Assert {
    Command::cargo_bin("tcpstate")
        .expect("binary")
        .arg("verify")
        .args(args)
        .assert()
}

#[test]
fn default_safety_properties_hold_exit_0() {
    let out = verify(&[
        "--property",
        "no-cross-incarnation",
        "--property",
        "orderly-close",
        "--property",
        "time-wait-duties",
    ])
    .code(0)
    .get_output()
    .stdout
    .clone();
    let text = String::from_utf8(out).unwrap();
    assert!(text.contains("exhaustively"), "{text}");
    assert!(text.contains("orderly-close              holds"), "{text}");
}

#[test]
fn default_every_property_holds_in_both_profiles_exit_0() {
    for profile in ["rfc", "linux"] {
        let out = verify(&["--profile", profile])
            .code(0)
            .get_output()
            .stdout
            .clone();
        let text = String::from_utf8(out).unwrap();
        assert!(text.contains("exhaustively"), "{text}");
        assert!(text.contains("termination                holds"), "{text}");
        assert!(!text.contains("VIOLATED"), "{text}");
        assert!(text.contains("so the rule is exact"), "{text}");
    }
}

#[test]
fn timing_assumption_is_reported_when_it_does_not_hold() {
    // Linux: MSL 30 s; four retries give up after 1+2+4+8+16 = 31 s.
    let out = verify(&["--profile", "linux", "--retries", "4", "--json"])
        .get_output()
        .stdout
        .clone();
    let doc: Value = serde_json::from_slice(&out).expect("one JSON document");
    assert_eq!(doc["config"]["give_up_after_s"], 31.0);
    let out = verify(&[
        "--profile",
        "linux",
        "--retries",
        "4",
        "--property",
        "orderly-close",
    ])
    .get_output()
    .stdout
    .clone();
    let text = String::from_utf8(out).unwrap();
    assert!(text.contains("APPROXIMATE"), "{text}");
}

#[test]
fn no_time_wait_json_has_the_shortest_reset_counterexample() {
    let out = verify(&["--time-wait", "0", "--max-states", "60000", "--json"])
        .code(1)
        .get_output()
        .stdout
        .clone();
    let doc: Value = serde_json::from_slice(&out).expect("one JSON document");
    assert_eq!(doc["version"], 1);
    assert_eq!(doc["config"]["time_wait"], "0");
    assert_eq!(doc["config"]["time_wait_s"], 0.0);
    assert_eq!(doc["complete"], false);
    let props = doc["properties"].as_array().unwrap();
    let oc = props.iter().find(|p| p["name"] == "orderly-close").unwrap();
    assert_eq!(oc["verdict"], "violated");
    assert_eq!(oc["counterexample"]["steps"], 11);
    let steps = oc["counterexample"]["timeline"]["steps"]
        .as_array()
        .unwrap();
    assert!(steps.len() > 11);
    let unknown = props.iter().find(|p| p["name"] == "termination").unwrap();
    assert_eq!(unknown["verdict"], "unknown");
    assert!(unknown["reason"].as_str().unwrap().contains("stopped"));
}

#[test]
fn rst_kills_time_wait_chart_as_mermaid() {
    let out = verify(&[
        "--rst-kills-time-wait",
        "--max-states",
        "60000",
        "--property",
        "orderly-close",
        "--chart",
        "mermaid",
    ])
    .code(1)
    .get_output()
    .stdout
    .clone();
    let text = String::from_utf8(out).unwrap();
    assert!(text.contains("sequenceDiagram"), "{text}");
    assert!(text.contains("RST in TIME_WAIT"), "{text}");
}

#[test]
fn bad_time_wait_is_a_usage_error() {
    verify(&["--time-wait", "forever"]).code(2);
    verify(&["--in-flight", "0"]).code(2);
}
