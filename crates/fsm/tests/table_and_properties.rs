//! The transition table and the machine agree: the machine makes only transitions the table
//! lists for its profile, and every row is made by some run. Plus property tests over random
//! sequences of user calls, segments and timeouts.

mod common;

use common::{apply, random_action, Action, Observed, Rng};
use proptest::prelude::*;
use std::collections::HashSet;
use std::time::Duration;
use tcpstate_fsm::{
    table, Connection, Profile, ScenarioOptions, SeqNum, State, Trigger, SCENARIOS,
};

/// Profiles the walks use: both flavors with default knobs, plus the knob settings that
/// open the remaining rows (user timeout, no TIME_WAIT buckets, rfc1337).
fn profiles() -> Vec<Profile> {
    let mut v = vec![Profile::linux(), Profile::rfc9293()];
    for base in [Profile::linux(), Profile::rfc9293()] {
        let mut p = base.clone();
        p.user_timeout = Some(Duration::from_millis(1500));
        v.push(p);
        let mut p = base.clone();
        p.rfc1337 = true;
        v.push(p);
    }
    let mut p = Profile::linux();
    p.time_wait_buckets_exhausted = true;
    v.push(p);
    let mut p = Profile::linux();
    p.fin_timeout = Some(Duration::from_secs(90)); // longer than TIME_WAIT: a full socket
    v.push(p);
    v
}

fn walk(profile: &Profile, seed: u64, steps: usize, iss: SeqNum) -> Observed {
    let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
    let mut c = Connection::new(profile.clone(), iss);
    let mut now = Duration::ZERO;
    let mut seen = Observed::default();
    for _ in 0..steps {
        let a = random_action(&mut rng);
        apply(&mut c, &mut now, a, &mut seen);
    }
    seen
}

#[test]
fn machine_makes_only_table_transitions_and_every_row() {
    let mut made: HashSet<(bool, State, State, Trigger)> = HashSet::new();
    for profile in profiles() {
        let linux = profile.is_linux();
        for seed in 0..3000u64 {
            let iss = SeqNum((seed as u32).wrapping_mul(2_654_435_761));
            for (from, to, trigger) in walk(&profile, seed, 120, iss).transitions {
                let row = table::lookup(from, to, trigger).unwrap_or_else(|| {
                    panic!(
                        "not in the table: {from} -> {to} ({trigger}), profile {}",
                        profile.flavor.name()
                    )
                });
                assert!(
                    row.applies_to_linux(linux),
                    "{from} -> {to} ({trigger}) made by the {} profile, table says {:?}",
                    profile.flavor.name(),
                    row.applies
                );
                made.insert((linux, from, to, trigger));
            }
        }
        // The scenarios too.
        for s in SCENARIOS {
            let t = s.run(&ScenarioOptions {
                profile: profile.clone(),
                ..ScenarioOptions::default()
            });
            for step in &t.steps {
                if let tcpstate_fsm::StepKind::Transition { from, to, trigger } = step.kind {
                    assert!(table::lookup(from, to, trigger).is_some());
                    made.insert((linux, from, to, trigger));
                }
            }
        }
    }
    let mut missing = Vec::new();
    for row in table::TRANSITIONS {
        for linux in [false, true] {
            if row.applies_to_linux(linux)
                && !made.contains(&(linux, row.from, row.to, row.trigger))
            {
                missing.push(format!(
                    "{} -> {} ({}) [{}]",
                    row.from,
                    row.to,
                    row.trigger,
                    if linux { "linux" } else { "rfc" }
                ));
            }
        }
    }
    assert!(
        missing.is_empty(),
        "rows never exercised:\n{}",
        missing.join("\n")
    );
}

fn action_strategy() -> impl Strategy<Value = u64> {
    any::<u64>()
}

/// Incarnations: a new one starts when a handshake starts again.
fn check_close_wait_xor_time_wait(transitions: &[(State, State, Trigger)]) -> Result<(), String> {
    let mut saw_cw = false;
    let mut saw_tw = false;
    for &(from, to, _) in transitions {
        if matches!(to, State::SynSent | State::SynReceived)
            && matches!(from, State::Closed | State::Listen | State::TimeWait)
        {
            saw_cw = false;
            saw_tw = false;
        }
        saw_cw |= to == State::CloseWait;
        saw_tw |= to == State::TimeWait;
        if saw_cw && saw_tw {
            return Err(format!(
                "CLOSE_WAIT and TIME_WAIT in one incarnation: {transitions:?}"
            ));
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, .. ProptestConfig::default() })]

    /// Random sequences never panic, and one endpoint of one connection is never in both
    /// CLOSE_WAIT and TIME_WAIT.
    #[test]
    fn random_sequences_keep_invariants(seed in action_strategy(), linux in any::<bool>(), near_wrap in any::<bool>()) {
        let profile = if linux { Profile::linux() } else { Profile::rfc9293() };
        // Near 2^32 the sequence numbers wrap during the walk.
        let iss = if near_wrap { SeqNum(u32::MAX - 3) } else { SeqNum(seed as u32) };
        let seen = walk(&profile, seed, 200, iss);
        prop_assert!(check_close_wait_xor_time_wait(&seen.transitions).is_ok(), "{:?}", seen.transitions);
    }

    /// Explicit action lists (shrinkable) do the same.
    #[test]
    fn explicit_sequences_keep_invariants(codes in proptest::collection::vec(any::<u64>(), 1..150)) {
        let mut c = Connection::new(Profile::linux(), SeqNum(u32::MAX - 1));
        let mut now = Duration::ZERO;
        let mut seen = Observed::default();
        for code in codes {
            let mut rng = Rng(code | 1);
            let a: Action = random_action(&mut rng);
            apply(&mut c, &mut now, a, &mut seen);
        }
        prop_assert!(check_close_wait_xor_time_wait(&seen.transitions).is_ok());
    }
}

#[test]
fn sequence_numbers_wrap_through_a_whole_connection() {
    // ISS just below 2^32 on both sides: the handshake, data and close all cross zero.
    let o = ScenarioOptions::default();
    let mut s = tcpstate_fsm::Sim::new(
        "wrap",
        (
            "client",
            Connection::new(o.profile.clone(), SeqNum(u32::MAX - 10)),
        ),
        (
            "server",
            Connection::new(o.profile.clone(), SeqNum(u32::MAX)),
        ),
        o.latency,
    );
    use tcpstate_fsm::Side::*;
    s.listen(B).unwrap();
    s.connect(A).unwrap();
    s.run_for(Duration::from_millis(50));
    s.send(A, 5000).unwrap();
    s.send(B, 7000).unwrap();
    s.run_for(Duration::from_millis(50));
    assert_eq!(s.read_all(B), Ok(5000));
    assert_eq!(s.read_all(A), Ok(7000));
    s.close(A).unwrap();
    s.run_for(Duration::from_millis(50));
    s.close(B).unwrap();
    s.run_until_idle(Duration::from_secs(100));
    let t = s.into_timeline();
    assert_eq!(t.final_state(A), Some(State::Closed));
    assert!(t.visited(A, State::TimeWait));
    assert!(t.visited(B, State::LastAck));
    // No retransmission was needed: every ACK across the wrap was understood.
    assert!(
        !t.steps.iter().any(|s| matches!(
            s.kind,
            tcpstate_fsm::StepKind::Sent {
                retransmission: true,
                ..
            }
        )),
        "{t}"
    );
}
