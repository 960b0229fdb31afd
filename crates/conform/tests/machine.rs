//! Every shared and own script against the machine (Linux profile, virtual clock).

mod common;

use std::path::Path;

use tcpstate_conform::{machine, parse_file, parse_str, Mode, Observed, RunOptions};
use tcpstate_fsm::{Side, State, StepKind};

fn semantic() -> RunOptions {
    RunOptions {
        mode: Mode::Semantic,
        tolerance: None,
    }
}

#[test]
fn shared_and_own_scripts_pass_on_the_machine() {
    let mut paths = common::own_scripts();
    paths.extend(common::shared_scripts().unwrap_or_default());
    let mut failed = Vec::new();
    for p in &paths {
        let script = parse_file(p).unwrap();
        let (report, timeline) = machine::run(&script, &semantic());
        eprintln!(
            "{:<40} {}",
            script.name(),
            if report.passed() { "PASS" } else { "FAIL" }
        );
        if let Some(f) = report.failure {
            failed.push(format!("{}: {f}", p.display()));
        }
        // The run is also a timeline with the machine's own transitions.
        assert!(timeline
            .steps
            .iter()
            .any(|s| matches!(s.kind, StepKind::Transition { .. })));
    }
    assert!(failed.is_empty(), "{failed:#?}");
}

#[test]
fn wrong_scripts_fail_on_the_machine_where_they_are_wrong() {
    let script = parse_file(&common::data("wrong_linger0_expects_fin.pkt")).unwrap();
    let (report, _) = machine::run(&script, &semantic());
    let f = report.failure.expect("the wrong script must fail");
    assert_eq!(f.pos.line, 13);
    assert!(f.message.contains("flags R. != F."), "{}", f.message);

    let script = parse_file(&common::data("wrong_state_assertion.pkt")).unwrap();
    let (report, _) = machine::run(&script, &semantic());
    let f = report.failure.expect("the wrong script must fail");
    assert_eq!(f.pos.line, 13);
    assert!(
        f.message.contains("machine has FIN_WAIT_2 with the peer"),
        "{}",
        f.message
    );
}

#[test]
fn the_trace_records_states_and_the_timeline_has_time_wait() {
    let Some(shared) = common::shared_scripts() else {
        return;
    };
    let a = shared
        .iter()
        .find(|p| p.ends_with("A_simultaneous_close.pkt"))
        .unwrap();
    let (report, timeline) = machine::run(&parse_file(a).unwrap(), &semantic());
    assert!(report.passed());
    let states: Vec<Option<State>> = report.states().into_iter().map(|(_, s)| s).collect();
    assert_eq!(
        states,
        vec![
            None,
            Some(State::SynReceived),
            Some(State::Established),
            Some(State::FinWait1),
            Some(State::Closing),
            Some(State::TimeWait),
        ]
    );
    assert_eq!(timeline.final_state(Side::A), Some(State::TimeWait));
}

#[test]
fn sysctls_change_the_profile_and_unknown_ones_fail_clearly() {
    let text = "0 `sysctl -q net.ipv4.tcp_no_such_knob=1`\n";
    let script = parse_str(Path::new("x.pkt"), text).unwrap();
    let (report, _) = machine::run(&script, &semantic());
    let f = report.failure.unwrap();
    assert!(
        f.message
            .contains("sysctl net.ipv4.tcp_no_such_knob is not modelled by the machine"),
        "{}",
        f.message
    );

    let text = "0 `sysctl -q net.ipv4.tcp_fin_timeout=7`\n+0 `sysctl -q net.ipv4.tcp_rfc1337=1 net.ipv4.tcp_max_tw_buckets=0`\n";
    let script = parse_str(Path::new("x.pkt"), text).unwrap();
    let backend = machine::MachineBackend::new("x");
    let mut runner = tcpstate_conform::run::Runner::new(&script, backend, &semantic());
    assert!(runner.run().passed());
    let p = runner.backend().profile().clone();
    assert_eq!(p.fin_timeout, Some(std::time::Duration::from_secs(7)));
    assert!(p.rfc1337 && p.time_wait_buckets_exhausted);
}

#[test]
fn calls_the_machine_cannot_model_fail_instead_of_passing() {
    let text = "0 socket(..., SOCK_STREAM, IPPROTO_TCP) = 3\n+0 getsockopt(3, SOL_SOCKET, SO_ERROR, [0], [4]) = 0\n";
    let script = parse_str(Path::new("x.pkt"), text).unwrap();
    let (report, _) = machine::run(&script, &semantic());
    assert!(report
        .failure
        .unwrap()
        .message
        .contains("getsockopt() is not modelled"));
    assert!(matches!(
        report.trace.last().unwrap().observed,
        Observed::NotRun(_)
    ));
}
