//! `tcpstate exporter` at the command line: the loopback rule, bad flags, and `--once`.

use assert_cmd::Command;
use predicates::prelude::*;

#[test]
fn refuses_a_non_loopback_address_without_permission() {
    Command::cargo_bin("tcpstate")
        .unwrap()
        .args(["exporter", "--listen", "0.0.0.0:0"])
        .assert()
        .code(2)
        .stderr(
            predicate::str::contains("not a loopback address")
                .and(predicate::str::contains("--allow-remote")),
        );
}

#[test]
fn rejects_bad_limits() {
    Command::cargo_bin("tcpstate")
        .unwrap()
        .args([
            "exporter",
            "--header-timeout",
            "0",
            "--listen",
            "127.0.0.1:0",
        ])
        .assert()
        .code(2);
    Command::cargo_bin("tcpstate")
        .unwrap()
        .args(["exporter", "--listen", "not-an-address"])
        .assert()
        .code(2);
}

#[cfg(target_os = "linux")]
#[test]
fn once_prints_one_scrape_in_the_prometheus_format() {
    let out = Command::cargo_bin("tcpstate")
        .unwrap()
        .args(["exporter", "--once", "--no-dead-scan"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("# TYPE tcpstate_sockets gauge"));
    assert!(text.contains("tcpstate_sockets{netns=\""));
    assert!(text.contains("# TYPE tcpstate_scrape_errors_total counter"));
    assert!(text.contains("tcpstate_scrape_errors_total{stage=\"snapshot\"} 0"));
    assert!(!text.contains("# EOF"));
}

#[test]
fn a_missing_namespace_is_a_clear_error() {
    Command::cargo_bin("tcpstate")
        .unwrap()
        .args(["exporter", "--once", "--netns", "tcpstate-no-such-netns"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("tcpstate-no-such-netns"));
}
