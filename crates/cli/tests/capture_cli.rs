//! `tcpstate capture` end to end: table, conn.log, JSON, and a clean error on garbage.

use assert_cmd::Command;
use std::path::{Path, PathBuf};

fn trace(name: &str) -> Option<PathBuf> {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/corpus/zeek/traces")
        .join(name);
    if p.exists() {
        Some(p)
    } else {
        eprintln!("skipping: {} is absent", p.display());
        None
    }
}

#[test]
fn zeek_mode_writes_conn_log_rows_like_zeek() {
    let Some(t) = trace("pop3__pop3.pcap") else {
        return;
    };
    let out = Command::cargo_bin("tcpstate")
        .unwrap()
        .args(["capture", "--zeek", "-b"])
        .arg(&t)
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.starts_with("#separator \\x09"));
    let rej = text
        .lines()
        .filter(|l| l.contains("\tREJ\t") && l.contains("\tSr\t"))
        .count();
    assert_eq!(rej, 6, "{text}");
}

#[test]
fn json_tells_who_closed_first_and_reset() {
    let Some(t) = trace("pop3__bad-list-retr-crafted.pcap") else {
        return;
    };
    let out = Command::cargo_bin("tcpstate")
        .unwrap()
        .args(["capture", "--json"])
        .arg(&t)
        .output()
        .unwrap();
    assert!(out.status.success());
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["version"], 1);
    let c = &doc["connections"][0];
    assert_eq!(c["orig"], "127.0.0.1:58854");
    assert_eq!(c["zeek"]["conn_state"], "RSTO");
    assert_eq!(c["reset_by"], "orig");
    assert_eq!(c["closed_first_by"], "orig");
    // The server got the client's FIN: its machine went through CLOSE_WAIT.
    assert!(c["endpoints"][1]["close_wait_s"].is_number());
}

#[test]
fn garbage_is_a_clear_error_with_exit_2() {
    let dir = std::env::temp_dir().join(format!("tcpstate-capture-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let f = dir.join("garbage.pcap");
    std::fs::write(&f, b"this is not a capture").unwrap();
    let out = Command::cargo_bin("tcpstate")
        .unwrap()
        .arg("capture")
        .arg(&f)
        .output()
        .unwrap();
    std::fs::remove_dir_all(&dir).ok();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(
        err.contains("not a pcap or pcapng file") && err.contains("offset 0"),
        "{err}"
    );
}
