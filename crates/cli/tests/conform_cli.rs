//! `tcpstate conform`: exit codes, table, JSON, parse errors; the kernel only as root.

use assert_cmd::Command;
use std::path::{Path, PathBuf};

fn shared() -> Option<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/conformance/linux");
    if dir.is_dir() {
        Some(dir)
    } else {
        eprintln!(
            "skipping: shared conformance scripts not found at {}",
            dir.display()
        );
        None
    }
}

fn conform_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../conform")
}

fn tcpstate() -> Command {
    let mut c = Command::cargo_bin("tcpstate").unwrap();
    c.env("NO_COLOR", "1");
    c
}

#[test]
fn shared_scripts_pass_on_the_machine_with_a_summary_table() {
    let Some(dir) = shared() else { return };
    let out = tcpstate()
        .args(["conform", "--against", "machine"])
        .arg(dir.join("A_simultaneous_close.pkt"))
        .arg(dir.join("K_last_ack_fin_rto.pkt"))
        .assert()
        .success();
    let text = String::from_utf8(out.get_output().stdout.clone()).unwrap();
    assert!(text.starts_with("script"), "{text}");
    assert!(text.contains("K_last_ack_fin_rto.pkt"), "{text}");
    assert!(
        text.contains("2 scripts: machine 2/2 passed (semantic mode, timing tolerance 50 ms)"),
        "{text}"
    );
}

#[test]
fn a_wrong_script_exits_1_with_the_failing_line() {
    let wrong = conform_dir().join("tests/data/wrong_linger0_expects_fin.pkt");
    let out = tcpstate()
        .args(["conform", "--against", "machine"])
        .arg(&wrong)
        .assert()
        .code(1);
    let text = String::from_utf8(out.get_output().stdout.clone()).unwrap();
    assert!(
        text.contains("FAIL at line 13: expected > F. 1:1(0) ack 1, sent R. 1:1(0) ack 1"),
        "{text}"
    );
}

#[test]
fn a_parse_error_exits_2_naming_file_line_and_column() {
    let dir = std::env::temp_dir().join(format!("tcpstate-conform-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let bad = dir.join("bad.pkt");
    std::fs::write(
        &bad,
        "0 socket(..., SOCK_STREAM, IPPROTO_TCP) = 3\n+0 > F. 1:1(0) ack\n",
    )
    .unwrap();
    let out = tcpstate()
        .args(["conform", "--against", "machine"])
        .arg(&bad)
        .assert()
        .code(2);
    let err = String::from_utf8(out.get_output().stderr.clone()).unwrap();
    assert!(
        err.contains(&format!(
            "{}:2:19: expected an ack number, found end of line",
            bad.display()
        )),
        "{err}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn json_output_is_one_document() {
    let script = conform_dir().join("scripts/half_close.pkt");
    let out = tcpstate()
        .args(["conform", "--against", "machine", "--json"])
        .arg(&script)
        .assert()
        .success();
    let doc: serde_json::Value = serde_json::from_slice(&out.get_output().stdout).unwrap();
    assert_eq!(doc["version"], 1);
    assert_eq!(doc["mode"], "semantic");
    assert_eq!(doc["passed"], true);
    let m = &doc["scripts"][0]["machine"];
    assert_eq!(m["passed"], true);
    assert!(m.get("failure").is_none());
    let states: Vec<&str> = m["states"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|s| s["state"].as_str())
        .collect();
    assert_eq!(
        states,
        ["SYN_RECV", "ESTABLISHED", "CLOSE_WAIT", "LAST_ACK"]
    );
}

#[test]
fn against_both_as_root_shows_no_divergence_for_shared_scripts() {
    let root = std::fs::metadata("/proc/self")
        .map(|m| std::os::unix::fs::MetadataExt::uid(&m) == 0)
        .unwrap_or(false);
    if !root {
        eprintln!("skipping: --against kernel needs root");
        return;
    }
    let Some(dir) = shared() else { return };
    let out = tcpstate()
        .args(["conform", "--against", "both"])
        .arg(dir.join("B2_tw_rst_rfc1337.pkt"))
        .arg(dir.join("D2_linger0_rst.pkt"))
        .assert()
        .success();
    let text = String::from_utf8(out.get_output().stdout.clone()).unwrap();
    assert!(
        text.contains("2 scripts: machine 2/2 passed, kernel 2/2 passed, 0 divergent"),
        "{text}"
    );
}
