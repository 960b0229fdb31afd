//! Every built-in scenario, in both profiles: snapshot of the timeline and the end states
//! that make it the story it claims to be.

use tcpstate_fsm::{Profile, ScenarioOptions, Side, State, SCENARIOS};

fn run(name: &str, profile: Profile) -> tcpstate_fsm::Timeline {
    let options = ScenarioOptions {
        profile,
        ..ScenarioOptions::default()
    };
    tcpstate_fsm::scenario(name)
        .expect("scenario exists")
        .run(&options)
}

#[test]
fn snapshots_of_every_scenario() {
    for s in SCENARIOS {
        for (label, profile) in [("linux", Profile::linux()), ("rfc", Profile::rfc9293())] {
            let timeline = s.run(&ScenarioOptions {
                profile,
                ..ScenarioOptions::default()
            });
            insta::assert_snapshot!(format!("{}-{}", s.name, label), timeline.to_string());
        }
    }
}

fn visited(t: &tcpstate_fsm::Timeline, side: Side) -> Vec<State> {
    t.states(side).into_iter().map(|(_, s)| s).collect()
}

#[test]
fn client_close_puts_time_wait_on_the_client() {
    let t = run("client-close", Profile::linux());
    use State::*;
    assert_eq!(
        visited(&t, Side::A),
        vec![
            Closed,
            SynSent,
            Established,
            FinWait1,
            FinWait2,
            TimeWait,
            Closed
        ]
    );
    assert_eq!(
        visited(&t, Side::B),
        vec![
            Closed,
            Listen,
            SynReceived,
            Established,
            CloseWait,
            LastAck,
            Closed
        ]
    );
    // TIME_WAIT lasts Linux's 60 s.
    let dwell = t.dwell(Side::A);
    let tw = dwell.iter().find(|d| d.0 == TimeWait).unwrap();
    assert_eq!(tw.2.as_secs(), 60);
}

#[test]
fn rfc_time_wait_is_two_msl() {
    let t = run("client-close", Profile::rfc9293());
    let tw = t
        .dwell(Side::A)
        .into_iter()
        .find(|d| d.0 == State::TimeWait)
        .unwrap();
    assert_eq!(tw.2.as_secs(), 240);
}

#[test]
fn server_close_swaps_roles() {
    let t = run("server-close", Profile::linux());
    assert!(t.visited(Side::B, State::TimeWait));
    assert!(t.visited(Side::A, State::CloseWait));
    assert!(!t.visited(Side::A, State::TimeWait));
}

#[test]
fn simultaneous_close_goes_through_closing_on_both() {
    let t = run("simultaneous-close", Profile::rfc9293());
    for side in [Side::A, Side::B] {
        assert!(t.visited(side, State::Closing), "{side:?}");
        assert!(t.visited(side, State::TimeWait), "{side:?}");
        assert_eq!(t.final_state(side), Some(State::Closed));
    }
}

fn sent_rst(t: &tcpstate_fsm::Timeline) -> bool {
    t.steps.iter().any(
        |s| matches!(&s.kind, tcpstate_fsm::StepKind::Sent { segment, .. } if segment.flags.rst()),
    )
}

#[test]
fn lost_final_ack_is_repaired_by_time_wait() {
    for profile in [Profile::linux(), Profile::rfc9293()] {
        let t = run("lost-final-ack", profile);
        assert!(!sent_rst(&t), "nobody sends RST:\n{t}");
        // The server retransmitted its FIN.
        assert!(t.steps.iter().any(|s| s.side == Side::B
            && matches!(&s.kind, tcpstate_fsm::StepKind::Sent { segment, retransmission: true, .. } if segment.flags.fin())));
        assert_eq!(t.final_state(Side::B), Some(State::Closed));
        // The server ended on the ACK of its FIN, not on a timeout.
        let last = t
            .steps
            .iter()
            .rev()
            .find_map(|s| match s.kind {
                tcpstate_fsm::StepKind::Transition { trigger, .. } if s.side == Side::B => {
                    Some(trigger)
                }
                _ => None,
            })
            .unwrap();
        assert_eq!(last.to_string(), "rcv ACK of FIN");
    }
}

#[test]
fn lost_fin_is_retransmitted() {
    let t = run("lost-fin", Profile::linux());
    let fins: Vec<_> = t
        .steps
        .iter()
        .filter(|s| s.side == Side::A)
        .filter_map(|s| match &s.kind {
            tcpstate_fsm::StepKind::Sent {
                segment,
                lost,
                retransmission,
                ..
            } if segment.flags.fin() => Some((*lost, *retransmission)),
            _ => None,
        })
        .collect();
    assert_eq!(fins, vec![(true, false), (false, true)]);
    assert!(t.visited(Side::A, State::TimeWait));
}

#[test]
fn linger_abort_leaves_no_time_wait() {
    let t = run("linger-abort", Profile::linux());
    assert!(sent_rst(&t));
    assert!(!t.visited(Side::A, State::TimeWait));
    assert!(!t.visited(Side::A, State::FinWait1));
    assert_eq!(t.final_state(Side::B), Some(State::Closed));
}

#[test]
fn unread_data_close_differs_by_profile() {
    let linux = run("unread-data-close", Profile::linux());
    assert!(sent_rst(&linux));
    assert!(!linux.visited(Side::A, State::TimeWait));
    let rfc = run("unread-data-close", Profile::rfc9293());
    assert!(!sent_rst(&rfc));
    assert!(rfc.visited(Side::A, State::TimeWait));
}

#[test]
fn close_wait_leak_stays_in_close_wait() {
    let linux = run("close-wait-leak", Profile::linux());
    assert_eq!(linux.final_state(Side::B), Some(State::CloseWait));
    // The client's orphan FIN_WAIT_2 timed out after tcp_fin_timeout.
    assert_eq!(linux.final_state(Side::A), Some(State::Closed));
    let rfc = run("close-wait-leak", Profile::rfc9293());
    assert_eq!(rfc.final_state(Side::A), Some(State::FinWait2));
    assert_eq!(rfc.final_state(Side::B), Some(State::CloseWait));
}

#[test]
fn half_close_keeps_data_flowing() {
    let t = run("half-close", Profile::linux());
    let reads: u32 = t
        .steps
        .iter()
        .filter(|s| s.side == Side::A)
        .filter_map(|s| match &s.kind {
            tcpstate_fsm::StepKind::Call(c) => match c.kind {
                tcpstate_fsm::CallStepKind::Read(n) => Some(n),
                _ => None,
            },
            _ => None,
        })
        .sum();
    assert_eq!(reads, 3000);
    assert!(t.visited(Side::A, State::FinWait2));
    assert!(t.visited(Side::A, State::TimeWait));
}

#[test]
fn simultaneous_open_passes_through_syn_received() {
    let t = run("simultaneous-open", Profile::rfc9293());
    for side in [Side::A, Side::B] {
        assert!(t.visited(side, State::SynReceived));
        assert!(t.visited(side, State::Established));
    }
}

#[test]
fn refused_connect() {
    let t = run("refused", Profile::linux());
    assert_eq!(
        visited(&t, Side::A),
        vec![State::Closed, State::SynSent, State::Closed]
    );
    assert!(t.to_string().contains("ECONNREFUSED"));
}

#[test]
fn time_wait_assassination_and_rfc1337() {
    let t = run("time-wait-assassination", Profile::linux());
    let tw = t
        .dwell(Side::A)
        .into_iter()
        .find(|d| d.0 == State::TimeWait)
        .unwrap();
    assert!(tw.2.as_secs() < 10, "TIME_WAIT cut short: {tw:?}\n{t}");
    let mut protected = Profile::linux();
    protected.rfc1337 = true;
    let t = run("time-wait-assassination", protected);
    let tw = t
        .dwell(Side::A)
        .into_iter()
        .find(|d| d.0 == State::TimeWait)
        .unwrap();
    assert!(tw.2.as_secs() >= 60, "rfc1337 keeps TIME_WAIT: {tw:?}\n{t}");
}
