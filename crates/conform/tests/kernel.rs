//! Every shared and own script against the real kernel, in private network namespaces made
//! by the runs (root only; skipped with a printed reason otherwise), and the machine compared
//! with it event by event.
#![cfg(target_os = "linux")]

mod common;

use tcpstate_conform::{compare, kernel, machine, parse_file, Mode, RunOptions};

/// Kernel runs one at a time: timing stays honest on a small machine, and the namespace
/// check at the end of a test sees only its own.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

fn root() -> bool {
    if kernel::is_root() {
        return true;
    }
    eprintln!("skipping: the kernel backend needs root (network namespaces, TUN devices)");
    false
}

fn leftover_namespaces() -> Vec<String> {
    let out = std::process::Command::new("ip")
        .args(["netns", "list"])
        .output()
        .unwrap();
    let prefix = format!("tcpstate-conform-{}-", std::process::id());
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.starts_with(&prefix))
        .map(str::to_string)
        .collect()
}

#[test]
fn shared_and_own_scripts_pass_on_the_kernel_and_agree_with_the_machine() {
    if !root() {
        return;
    }
    let _serial = serial();
    let mut paths = common::own_scripts();
    paths.extend(common::shared_scripts().unwrap_or_default());
    let strict = RunOptions {
        mode: Mode::Strict,
        tolerance: None,
    };
    let semantic = RunOptions {
        mode: Mode::Semantic,
        tolerance: None,
    };
    let mut problems = Vec::new();
    for p in &paths {
        let script = parse_file(p).unwrap();
        let k = kernel::run(&script, &strict).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
        let (m, _) = machine::run(&script, &semantic);
        let d = compare(&m, &k, Mode::Semantic);
        eprintln!(
            "{:<40} kernel {} machine {} {:.2}s {}",
            script.name(),
            if k.passed() { "PASS" } else { "FAIL" },
            if m.passed() { "PASS" } else { "FAIL" },
            k.elapsed.as_secs_f64(),
            d.as_ref().map_or("same".to_string(), |d| format!(
                "{} differs at line {}",
                d.what, d.pos.line
            ))
        );
        if let Some(f) = &k.failure {
            // The whole kernel trace, with sock_diag's state after each event, to diagnose.
            for e in &k.trace {
                eprintln!(
                    "    {:>3} {:8.4}s {:<55} {} {:?}",
                    e.pos.line,
                    e.at.as_secs_f64(),
                    e.event,
                    e.observed,
                    e.state
                );
            }
            problems.push(format!("kernel {}: {f}", p.display()));
        }
        if let Some(d) = d {
            problems.push(format!("{}: {d:?}", p.display()));
        }
    }
    assert!(problems.is_empty(), "{problems:#?}");
    assert!(
        leftover_namespaces().is_empty(),
        "{:?}",
        leftover_namespaces()
    );
}

#[test]
fn wrong_scripts_fail_on_the_kernel() {
    if !root() {
        return;
    }
    let _serial = serial();
    let opts = RunOptions::default();
    let script = parse_file(&common::data("wrong_linger0_expects_fin.pkt")).unwrap();
    let report = kernel::run(&script, &opts).unwrap();
    let f = report.failure.expect("the wrong script must fail");
    assert_eq!(f.pos.line, 13);
    assert!(f.message.contains("flags R. != F."), "{}", f.message);

    let script = parse_file(&common::data("wrong_state_assertion.pkt")).unwrap();
    let report = kernel::run(&script, &opts).unwrap();
    let f = report.failure.expect("the wrong script must fail");
    assert_eq!(f.pos.line, 13);
    assert!(
        f.message.contains("failed: exit status: 1"),
        "{}",
        f.message
    );
    // What sock_diag saw at the failing event is the truth the assertion missed.
    assert_eq!(
        report.trace.last().unwrap().state,
        Some(tcpstate_fsm::State::FinWait2)
    );
    assert!(leftover_namespaces().is_empty());
}

#[test]
fn sock_diag_sees_a_listener_in_a_fresh_namespace() {
    if !root() {
        return;
    }
    let _serial = serial();
    // A script whose only job is a listener, then an ss check the runner's own dump must agree
    // with: both see it in the namespace, and nothing leaks outside it.
    let text = "0 socket(..., SOCK_STREAM, IPPROTO_TCP) = 3\n+0 bind(3, ..., ...) = 0\n+0 listen(3, 1) = 0\n+0 `ss -tlnH | grep -q 192.168.0.1:8080`\n";
    let script = tcpstate_conform::parse_str(std::path::Path::new("listen.pkt"), text).unwrap();
    let r = kernel::run(&script, &RunOptions::default()).unwrap();
    // `ss -tlnH` uses -l, which the machine's interpreter does not accept, but the kernel runs it.
    assert!(r.passed(), "{:?}", r.failure);
    // The listener is not a connection with the peer.
    assert_eq!(r.trace.last().unwrap().state, None);
}
