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

fn run_ok(args: &[&str], trace: &Path) -> String {
    let out = Command::cargo_bin("tcpstate")
        .unwrap()
        .args(args)
        .arg(trace)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn summary_agrees_with_the_connections_it_counts() {
    let Some(t) = trace("pop3__pop3.pcap") else {
        return;
    };
    let all: serde_json::Value = serde_json::from_str(&run_ok(&["capture", "--json"], &t)).unwrap();
    let sum: serde_json::Value =
        serde_json::from_str(&run_ok(&["capture", "--summary", "--json"], &t)).unwrap();
    assert_eq!(sum["version"], 1);
    let s = &sum["summary"];
    let conns = all["connections"].as_array().unwrap();
    assert_eq!(s["connections"], conns.len());
    // Recount from the per-connection document.
    let count = |f: &dyn Fn(&serde_json::Value) -> bool| conns.iter().filter(|c| f(c)).count();
    for state in ["REJ", "SF"] {
        assert_eq!(
            s["conn_states"][state],
            count(&|c| c["zeek"]["conn_state"] == state),
            "{state}"
        );
    }
    assert_eq!(s["conn_states"]["REJ"], 6);
    assert_eq!(
        s["reset_connections"],
        count(&|c| c.get("reset_by").is_some())
    );
    let port = &s["ports"][0];
    assert_eq!(port["port"], 110);
    assert_eq!(
        port["closed_first"]["resp"],
        count(&|c| c["closed_first_by"] == "resp")
    );
    assert_eq!(port["closed_first"]["no_fin"], 6);
    assert_eq!(port["reset_by_resp"], 6);
    // CLOSE_WAIT: the clients (orig) sat in it after the servers' FINs.
    let mut dwells: Vec<f64> = conns
        .iter()
        .filter_map(|c| c["endpoints"][0]["close_wait_s"].as_f64())
        .collect();
    dwells.sort_by(f64::total_cmp);
    let cw = &port["close_wait"]["orig"]["completed"];
    assert_eq!(cw["count"], dwells.len());
    assert_eq!(cw["max_s"].as_f64(), dwells.last().copied());
    // Nearest-rank median.
    assert_eq!(
        cw["p50_s"].as_f64(),
        Some(dwells[dwells.len().div_ceil(2) - 1])
    );
    let text = run_ok(&["capture", "--summary"], &t);
    assert!(text.contains("connections by conn_state"), "{text}");
    assert!(text.contains("REJ              6   54.5%"), "{text}");
}

#[test]
fn one_connection_as_a_chart_or_a_timeline() {
    let Some(t) = trace("tcp__miss_end_data.pcap") else {
        return;
    };
    let text = run_ok(&["capture", "--conn", "1", "--chart", "text"], &t);
    // The responder closed first and ends in TIME_WAIT; the originator passed CLOSE_WAIT.
    assert!(
        text.contains("[TIME_WAIT]") && text.contains("[CLOSE_WAIT]"),
        "{text}"
    );
    assert!(text.contains("capture loss: 2902 bytes"), "{text}");
    let svg = run_ok(&["capture", "--conn", "1", "--chart", "svg"], &t);
    assert!(svg.contains("<svg") && svg.trim_end().ends_with("</svg>"));
    let msc = run_ok(&["capture", "--conn", "1", "--chart", "msc"], &t);
    assert!(msc.contains("msc {"), "{msc}");
    // mscgen itself must accept it (installed by .ci/run for the draw tests).
    let dir = std::env::temp_dir().join(format!("tcpstate-capture-msc-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("c.msc"), &msc).unwrap();
    match std::process::Command::new("mscgen")
        .args(["-T", "svg", "-o"])
        .arg(dir.join("c.svg"))
        .arg("-i")
        .arg(dir.join("c.msc"))
        .output()
    {
        Ok(out) => assert!(
            out.status.success(),
            "mscgen: {}",
            String::from_utf8_lossy(&out.stderr)
        ),
        Err(_) if std::env::var("CI").is_ok_and(|v| v == "true") => panic!("CI: mscgen missing"),
        Err(_) => eprintln!("mscgen not installed: the msc chart was not rendered"),
    }
    std::fs::remove_dir_all(&dir).ok();
    let doc: serde_json::Value =
        serde_json::from_str(&run_ok(&["capture", "--conn", "1", "--json"], &t)).unwrap();
    assert_eq!(doc["connection"]["id"], 1);
    assert_eq!(doc["connection"]["closed_first_by"], "resp");
    let steps = doc["timeline"]["steps"].as_array().unwrap();
    assert!(steps
        .iter()
        .any(|s| s["kind"] == "transition" && s["to"] == "TIME_WAIT"));
    // IDs are shown in the table for picking one.
    let table = run_ok(&["capture"], &t);
    assert!(
        table.lines().nth(1).unwrap().trim_start().starts_with("1 "),
        "{table}"
    );
}

#[test]
fn unknown_connection_id_and_chart_without_conn_are_usage_errors() {
    let Some(t) = trace("tcp__miss_end_data.pcap") else {
        return;
    };
    let out = Command::cargo_bin("tcpstate")
        .unwrap()
        .args(["capture", "--conn", "7"])
        .arg(&t)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no connection with ID 7"), "{err}");
    let out = Command::cargo_bin("tcpstate")
        .unwrap()
        .args(["capture", "--chart", "svg"])
        .arg(&t)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}
