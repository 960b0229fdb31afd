//! `tcpstate diagram` from the outside: formats, profiles, files, bad input.

use assert_cmd::Command;
use predicates::prelude::*;

fn tcpstate() -> Command {
    Command::cargo_bin("tcpstate").unwrap()
}

#[test]
fn dot_is_the_default() {
    tcpstate()
        .arg("diagram")
        .assert()
        .success()
        .stdout(predicate::str::contains("digraph tcp_states {"))
        .stdout(predicate::str::contains("TIME_WAIT -> CLOSED_END"));
}

#[test]
fn rfc_profile_speaks_rfc_and_has_no_linux_rows() {
    tcpstate()
        .args(["diagram", "--profile", "rfc", "--format", "mermaid"])
        .assert()
        .success()
        .stdout(predicate::str::starts_with("---\ntitle: "))
        .stdout(predicate::str::contains("stateDiagram-v2"))
        .stdout(predicate::str::contains("state \"TIME-WAIT\" as TIME_WAIT"))
        .stdout(predicate::str::contains("(Linux)").not());
}

#[test]
fn builtin_svg_to_a_file() {
    let dir = std::env::temp_dir().join(format!("tcpstate-diagram-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("d.svg");
    tcpstate()
        .args(["diagram", "--format", "svg", "--layout", "builtin", "-o"])
        .arg(&file)
        .assert()
        .success()
        .stdout(predicate::str::is_empty());
    let svg = std::fs::read_to_string(&file).unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    assert!(svg.starts_with("<svg "));
    assert!(svg.contains("built-in layout"));
}

#[test]
fn unknown_format_and_unwritable_file_exit_2() {
    tcpstate()
        .args(["diagram", "--format", "png"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains(
            "possible values: dot, svg, mermaid",
        ));
    tcpstate()
        .args(["diagram", "-o", "/nonexistent-dir/x.dot"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("/nonexistent-dir/x.dot"));
}
