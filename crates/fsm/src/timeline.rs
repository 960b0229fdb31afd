//! `Timeline`: the one story type (DESIGN.md principle 2).
//!
//! A connection's life as ordered steps at one of two endpoints. Simulations,
//! counterexamples, captures, live watching and conformance runs produce timelines; charts,
//! duration summaries and JSON consume them.

use crate::{CallKind, Segment, State, TimerKind, Trigger};
use std::time::Duration;

/// Which of the two endpoints a step happens at (index into [`Timeline::endpoints`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Side {
    /// The first endpoint (by convention the client / active opener / local side).
    A,
    /// The second endpoint (the server / passive opener / remote side).
    B,
}

impl Side {
    /// 0 for A, 1 for B.
    pub fn index(self) -> usize {
        match self {
            Side::A => 0,
            Side::B => 1,
        }
    }

    /// The other endpoint.
    pub fn other(self) -> Side {
        match self {
            Side::A => Side::B,
            Side::B => Side::A,
        }
    }
}

/// A user call as recorded in a timeline, with its argument where it has one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallStep {
    /// Which call.
    pub kind: CallStepKind,
    /// `Err(text)` when the call failed ("connection closing", ECONNRESET...).
    pub result: Result<(), String>,
}

/// User calls including those that never change state by themselves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallStepKind {
    /// A call that can change state.
    Lifecycle(CallKind),
    /// SEND of n octets.
    Send(u32),
    /// RECEIVE: n octets read (0 = end of file).
    Read(u32),
    /// `SO_LINGER {1,0}` set (close will abort).
    SetLingerZero,
}

/// What happened in one step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StepKind {
    /// The application made a call.
    Call(CallStep),
    /// The endpoint sent a segment. `id` pairs it with its arrival(s); `lost` when the
    /// network dropped it (or, in a capture, when it was never seen arriving).
    Sent {
        /// Pairs a send with its receptions.
        id: u64,
        /// The segment.
        segment: Segment,
        /// Dropped by the network.
        lost: bool,
        /// A retransmission of something sent before.
        retransmission: bool,
    },
    /// The endpoint received a segment (`id` of the matching `Sent`, if known).
    Received {
        /// The matching send, if known.
        id: Option<u64>,
        /// The segment.
        segment: Segment,
    },
    /// A timer expired.
    Timer(TimerKind),
    /// The endpoint changed state.
    Transition {
        /// State before.
        from: State,
        /// State after.
        to: State,
        /// What caused it.
        trigger: Trigger,
    },
    /// A free-form remark (an anomaly, an estimate, an explanation).
    Note(String),
}

/// One step of a timeline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    /// Time since the timeline's start.
    pub at: Duration,
    /// Where it happened.
    pub side: Side,
    /// What happened.
    pub kind: StepKind,
}

/// A connection's life at two endpoints.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Timeline {
    /// A title for charts ("client-close", "10.0.0.1:5000 → 10.0.0.2:80").
    pub title: String,
    /// Names of the endpoints, A then B.
    pub endpoints: [String; 2],
    /// Steps in time order (ties keep insertion order).
    pub steps: Vec<Step>,
}

impl Timeline {
    /// An empty timeline.
    pub fn new(title: impl Into<String>, a: impl Into<String>, b: impl Into<String>) -> Timeline {
        Timeline {
            title: title.into(),
            endpoints: [a.into(), b.into()],
            steps: Vec::new(),
        }
    }

    /// Append a step.
    pub fn push(&mut self, at: Duration, side: Side, kind: StepKind) {
        self.steps.push(Step { at, side, kind });
    }

    /// The name of an endpoint.
    pub fn name(&self, side: Side) -> &str {
        &self.endpoints[side.index()]
    }

    /// Each side's state changes in order, with the time it entered each state.
    pub fn states(&self, side: Side) -> Vec<(Duration, State)> {
        let mut out = Vec::new();
        for step in &self.steps {
            if step.side != side {
                continue;
            }
            if let StepKind::Transition { from, to, .. } = step.kind {
                if out.is_empty() {
                    out.push((Duration::ZERO, from));
                }
                out.push((step.at, to));
            }
        }
        out
    }

    /// The state an endpoint is in after all steps (None if it never changed state).
    pub fn final_state(&self, side: Side) -> Option<State> {
        self.states(side).last().map(|&(_, s)| s)
    }

    /// Time spent in each state, in order: (state, entered at, duration). The last state's
    /// duration runs to the end of the timeline (the last step's time).
    pub fn dwell(&self, side: Side) -> Vec<(State, Duration, Duration)> {
        let states = self.states(side);
        let end = self.steps.last().map(|s| s.at).unwrap_or_default();
        states
            .iter()
            .enumerate()
            .map(|(i, &(at, state))| {
                let until = states.get(i + 1).map(|&(t, _)| t).unwrap_or(end);
                (state, at, until.saturating_sub(at))
            })
            .collect()
    }

    /// Whether an endpoint ever was in `state`.
    pub fn visited(&self, side: Side, state: State) -> bool {
        self.states(side).iter().any(|&(_, s)| s == state)
    }
}

impl std::fmt::Display for CallStepKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CallStepKind::Lifecycle(CallKind::OpenPassive) => f.write_str("listen()"),
            CallStepKind::Lifecycle(CallKind::OpenActive) => f.write_str("connect()"),
            CallStepKind::Lifecycle(CallKind::Close) => f.write_str("close()"),
            CallStepKind::Lifecycle(CallKind::ShutdownWrite) => f.write_str("shutdown(SHUT_WR)"),
            CallStepKind::Lifecycle(CallKind::Abort) => f.write_str("abort()"),
            CallStepKind::Send(n) => write!(f, "send({n})"),
            CallStepKind::Read(0) => f.write_str("read() = 0 (EOF)"),
            CallStepKind::Read(n) => write!(f, "read() = {n}"),
            CallStepKind::SetLingerZero => f.write_str("setsockopt(SO_LINGER, {1,0})"),
        }
    }
}

impl std::fmt::Display for StepKind {
    /// One compact line: `send F. 1001:1001(0) ack 5001 win 65535`, `FIN_WAIT_1 -> FIN_WAIT_2 (rcv ACK of FIN)`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StepKind::Call(call) => match &call.result {
                Ok(()) => write!(f, "{}", call.kind),
                Err(e) => write!(f, "{} -> error: {e}", call.kind),
            },
            StepKind::Sent {
                segment,
                lost,
                retransmission,
                ..
            } => {
                write!(f, "send {segment}")?;
                if *retransmission {
                    f.write_str(" (retransmission)")?;
                }
                if *lost {
                    f.write_str(" LOST")?;
                }
                Ok(())
            }
            StepKind::Received { segment, .. } => write!(f, "rcv  {segment}"),
            StepKind::Timer(t) => write!(f, "timer {} fires", t.name()),
            StepKind::Transition { from, to, trigger } => {
                write!(f, "{from} -> {to} ({trigger})")
            }
            StepKind::Note(text) => write!(f, "note: {text}"),
        }
    }
}

impl std::fmt::Display for Timeline {
    /// One step per line: time, endpoint, what happened.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "# {}", self.title)?;
        for step in &self.steps {
            writeln!(
                f,
                "{:>10.3}s {:<7} {}",
                step.at.as_secs_f64(),
                self.name(step.side),
                step.kind
            )?;
        }
        Ok(())
    }
}

/// A duration for people: `0 s`, `3.0 ms`, `2.1 s`, `60 s`, `4 min 0 s`.
pub fn human_duration(d: Duration) -> String {
    let secs = d.as_secs_f64();
    if secs == 0.0 {
        "0 s".into()
    } else if secs < 1.0 {
        format!("{:.1} ms", secs * 1000.0)
    } else if secs < 120.0 {
        let rounded = (secs * 10.0).round() / 10.0;
        if rounded.fract() == 0.0 {
            format!("{rounded:.0} s")
        } else {
            format!("{rounded:.1} s")
        }
    } else {
        let total = secs.round() as u64;
        format!("{} min {} s", total / 60, total % 60)
    }
}

impl Timeline {
    /// One endpoint's life as a line: `SYN_SENT 20.0 ms → ESTABLISHED 2.1 s → … → CLOSED`.
    /// The initial CLOSED (if it lasted no time) and the final state carry no duration; `None`
    /// if the endpoint never changed state.
    pub fn lifeline(&self, side: Side) -> Option<String> {
        let dwell = self.dwell(side);
        if dwell.is_empty() {
            return None;
        }
        let last = dwell.len() - 1;
        let parts: Vec<String> = dwell
            .into_iter()
            .enumerate()
            .filter(|&(i, (state, _, d))| !(i == 0 && state == State::Closed && d.is_zero()))
            .map(|(i, (state, _, d))| {
                if i == last {
                    state.to_string()
                } else {
                    format!("{state} {}", human_duration(d))
                }
            })
            .collect();
        Some(parts.join(" → "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{SegmentKind, Trigger};

    #[test]
    fn lifeline_and_human_durations() {
        let mut t = Timeline::new("t", "a", "b");
        let tr = |from, to| StepKind::Transition {
            from,
            to,
            trigger: Trigger::Segment(SegmentKind::Fin),
        };
        t.push(
            Duration::ZERO,
            Side::A,
            tr(State::Closed, State::Established),
        );
        t.push(
            Duration::from_millis(2100),
            Side::A,
            tr(State::Established, State::TimeWait),
        );
        t.push(
            Duration::from_millis(62100),
            Side::A,
            tr(State::TimeWait, State::Closed),
        );
        assert_eq!(
            t.lifeline(Side::A).unwrap(),
            "ESTABLISHED 2.1 s → TIME_WAIT 60 s → CLOSED"
        );
        assert_eq!(t.lifeline(Side::B), None);
        assert_eq!(human_duration(Duration::from_micros(200)), "0.2 ms");
        assert_eq!(human_duration(Duration::from_secs(240)), "4 min 0 s");
    }
}
