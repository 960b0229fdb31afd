//! Sequence charts of a [`Timeline`]: two endpoints, the segments between them, each
//! endpoint's calls, timers and state after every transition.
//!
//! Every format reads the same [`Row`] list: one row per step, except that a reception
//! whose send is in the timeline (paired by `Sent.id` ↔ `Received.id`) is folded into that
//! send's arrow, which then knows when (and how often) it arrived.

mod mermaid;
mod msc;
mod svg;
mod text;

use std::time::Duration;
use tcpstate_fsm::{CallStep, CallStepKind, Segment, Side, State, StepKind, Timeline, TimerKind};

/// Output formats of a sequence chart.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum ChartFormat {
    /// Plain text for a terminal: two columns with arrows between them.
    #[default]
    Text,
    /// mscgen source (`mscgen -T png`).
    Msc,
    /// Mermaid `sequenceDiagram`.
    Mermaid,
    /// SVG: two lifelines, diagonal arrows from send to arrival.
    Svg,
}

/// A sequence chart of `timeline` in `format`.
pub fn chart(timeline: &Timeline, format: ChartFormat) -> String {
    let rows = rows(timeline);
    match format {
        ChartFormat::Text => text::render(timeline, &rows),
        ChartFormat::Msc => msc::render(timeline, &rows),
        ChartFormat::Mermaid => mermaid::render(timeline, &rows),
        ChartFormat::Svg => svg::render(timeline, &rows),
    }
}

/// What one row of a chart shows.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum RowKind {
    /// A segment leaving `side`.
    Segment {
        /// The segment.
        segment: Segment,
        /// Dropped by the network.
        lost: bool,
        /// A retransmission.
        retransmission: bool,
        /// When it arrived (more than once if duplicated), with the row index of each
        /// arrival.
        arrivals: Vec<(Duration, usize)>,
        /// False for a reception whose send is not in the timeline (a capture that missed
        /// it, a third party's RST): the row is the arrival, the send time is unknown.
        sent_seen: bool,
    },
    /// A paired arrival: drawn by the arrow of the send at row `sent_row`.
    Arrival { sent_row: usize },
    /// A user call.
    Call(CallStep),
    /// A timer expired.
    Timer(TimerKind),
    /// The endpoint is now in this state.
    State(State),
    /// A remark.
    Note(String),
}

/// One row: at a time, at one endpoint (for a segment: the sender).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Row {
    pub at: Duration,
    pub side: Side,
    pub kind: RowKind,
}

/// The chart rows of a timeline, in step order.
pub(crate) fn rows(t: &Timeline) -> Vec<Row> {
    let mut rows: Vec<Row> = Vec::with_capacity(t.steps.len());
    // Sent id -> row index, to pair receptions with their send.
    let mut sent: Vec<(u64, usize)> = Vec::new();
    for step in &t.steps {
        let kind = match &step.kind {
            StepKind::Sent {
                id,
                segment,
                lost,
                retransmission,
            } => {
                sent.push((*id, rows.len()));
                RowKind::Segment {
                    segment: *segment,
                    lost: *lost,
                    retransmission: *retransmission,
                    arrivals: Vec::new(),
                    sent_seen: true,
                }
            }
            StepKind::Received { id, segment } => {
                let paired = id.and_then(|id| {
                    sent.iter()
                        .rev()
                        .find(|(sid, row)| *sid == id && rows[*row].side != step.side)
                        .map(|(_, row)| *row)
                });
                match paired {
                    Some(sent_row) => {
                        let here = rows.len();
                        if let RowKind::Segment { arrivals, .. } = &mut rows[sent_row].kind {
                            arrivals.push((step.at, here));
                        }
                        RowKind::Arrival { sent_row }
                    }
                    None => {
                        // Drawn as an arrow from the other side, arriving now.
                        rows.push(Row {
                            at: step.at,
                            side: step.side.other(),
                            kind: RowKind::Segment {
                                segment: *segment,
                                lost: false,
                                retransmission: false,
                                arrivals: vec![(step.at, rows.len())],
                                sent_seen: false,
                            },
                        });
                        continue;
                    }
                }
            }
            StepKind::Call(c) => RowKind::Call(c.clone()),
            StepKind::Timer(k) => RowKind::Timer(*k),
            StepKind::Transition { to, .. } => RowKind::State(*to),
            StepKind::Note(n) => RowKind::Note(n.clone()),
        };
        rows.push(Row {
            at: step.at,
            side: step.side,
            kind,
        });
    }
    rows
}

/// The state each side starts in (the `from` of its first transition), if it ever changes.
pub(crate) fn initial_states(t: &Timeline) -> [Option<State>; 2] {
    [Side::A, Side::B].map(|s| t.states(s).first().map(|&(_, st)| st))
}

/// `FIN+ACK seq=101 ack=1`, with `len=` for data and `win=0` for a zero window.
pub(crate) fn segment_label(s: &Segment) -> String {
    let mut out = format!("{} seq={}", s.flags.long(), s.seq);
    if s.flags.ack() {
        out.push_str(&format!(" ack={}", s.ack));
    }
    if s.len > 0 {
        out.push_str(&format!(" len={}", s.len));
    }
    if s.window == 0 {
        out.push_str(" win=0");
    }
    out
}

/// A segment row's label with its annotations: `(retransmission)`, `(duplicated)`.
pub(crate) fn arrow_label(kind: &RowKind) -> String {
    match kind {
        RowKind::Segment {
            segment,
            retransmission,
            arrivals,
            ..
        } => {
            let mut l = segment_label(segment);
            if *retransmission {
                l.push_str(" (retransmission)");
            }
            if arrivals.len() > 1 {
                l.push_str(&format!(" (arrived {} times)", arrivals.len()));
            }
            l
        }
        _ => String::new(),
    }
}

/// How a call reads in a chart: `CLOSE`, `SEND 100 B`, `RECEIVE: EOF`, with its error.
pub(crate) fn call_label(c: &CallStep) -> String {
    let mut l = match c.kind {
        CallStepKind::Lifecycle(k) => k.label().to_string(),
        CallStepKind::Send(n) => format!("SEND {n} B"),
        CallStepKind::Read(0) => "RECEIVE: EOF".to_string(),
        CallStepKind::Read(n) => format!("RECEIVE {n} B"),
        CallStepKind::SetLingerZero => "SO_LINGER {1,0}".to_string(),
    };
    if let Err(e) = &c.result {
        l.push_str(&format!(" -> error: {e}"));
    }
    l
}

/// How a timer expiry reads in a chart.
pub(crate) fn timer_label(k: TimerKind) -> String {
    let what = match k {
        TimerKind::Retransmission => "retransmission timer",
        TimerKind::TimeWait => "TIME_WAIT timer (2MSL)",
        TimerKind::FinWait2 => "FIN_WAIT_2 timer",
        TimerKind::UserTimeout => "user timeout",
    };
    format!("{what} fires")
}

/// Seconds with millisecond precision: `0.050`, `60.100`.
pub(crate) fn seconds(d: Duration) -> String {
    format!("{}.{:03}", d.as_secs(), d.subsec_millis())
}

#[cfg(test)]
pub(crate) mod sample {
    //! Hand-built timelines for the chart tests (the machine's scenarios live in
    //! tcpstate-fsm; these only need to look like them).
    use std::time::Duration;
    use tcpstate_fsm::Segment;
    use tcpstate_fsm::{
        CallKind, CallStep, CallStepKind, Flags, SegmentKind, SeqNum, Side, State, StepKind,
        Timeline, TimerKind, Trigger,
    };

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn seg(seq: u32, ack: u32, flags: Flags) -> Segment {
        Segment::control(SeqNum(seq), SeqNum(ack), flags, 65535)
    }

    fn sent(id: u64, s: Segment, lost: bool, retransmission: bool) -> StepKind {
        StepKind::Sent {
            id,
            segment: s,
            lost,
            retransmission,
        }
    }

    fn recv(id: u64, s: Segment) -> StepKind {
        StepKind::Received {
            id: Some(id),
            segment: s,
        }
    }

    fn tr(from: State, to: State, trigger: Trigger) -> StepKind {
        StepKind::Transition { from, to, trigger }
    }

    fn call(k: CallKind) -> StepKind {
        StepKind::Call(CallStep {
            kind: CallStepKind::Lifecycle(k),
            result: Ok(()),
        })
    }

    /// The client closes first; its FIN is lost once and retransmitted; the server
    /// closes after reading EOF; the client ends in TIME_WAIT.
    pub fn lost_fin() -> Timeline {
        use State::*;
        let mut t = Timeline::new("lost-fin (hand-built)", "client", "server");
        let fin = seg(101, 501, Flags::FIN | Flags::ACK);
        let ack_fin = seg(501, 102, Flags::ACK);
        let fin_b = seg(501, 102, Flags::FIN | Flags::ACK);
        let last = seg(102, 502, Flags::ACK);
        t.push(ms(0), Side::A, call(CallKind::Close));
        t.push(
            ms(0),
            Side::A,
            tr(Established, FinWait1, Trigger::Call(CallKind::Close)),
        );
        t.push(ms(0), Side::A, sent(1, fin, true, false));
        t.push(ms(200), Side::A, StepKind::Timer(TimerKind::Retransmission));
        t.push(ms(200), Side::A, sent(2, fin, false, true));
        t.push(ms(225), Side::B, recv(2, fin));
        t.push(
            ms(225),
            Side::B,
            tr(Established, CloseWait, Trigger::Segment(SegmentKind::Fin)),
        );
        t.push(ms(225), Side::B, sent(3, ack_fin, false, false));
        t.push(ms(250), Side::A, recv(3, ack_fin));
        t.push(
            ms(250),
            Side::A,
            tr(FinWait1, FinWait2, Trigger::Segment(SegmentKind::AckOfFin)),
        );
        t.push(
            ms(300),
            Side::B,
            StepKind::Call(CallStep {
                kind: CallStepKind::Read(0),
                result: Ok(()),
            }),
        );
        t.push(ms(300), Side::B, call(CallKind::Close));
        t.push(
            ms(300),
            Side::B,
            tr(CloseWait, LastAck, Trigger::Call(CallKind::Close)),
        );
        t.push(ms(300), Side::B, sent(4, fin_b, false, false));
        t.push(ms(325), Side::A, recv(4, fin_b));
        t.push(
            ms(325),
            Side::A,
            tr(FinWait2, TimeWait, Trigger::Segment(SegmentKind::Fin)),
        );
        t.push(ms(325), Side::A, sent(5, last, false, false));
        t.push(ms(350), Side::B, recv(5, last));
        t.push(
            ms(350),
            Side::B,
            tr(LastAck, Closed, Trigger::Segment(SegmentKind::AckOfFin)),
        );
        t.push(ms(60_325), Side::A, StepKind::Timer(TimerKind::TimeWait));
        t.push(
            ms(60_325),
            Side::A,
            tr(TimeWait, Closed, Trigger::Timer(TimerKind::TimeWait)),
        );
        t.push(
            ms(60_325),
            Side::A,
            StepKind::Note("TIME_WAIT lasted 60 s (Linux TCP_TIMEWAIT_LEN)".into()),
        );
        t
    }

    /// SO_LINGER {1,0}: the client aborts with RST; a reset arrives at the server with
    /// no send recorded (as a capture that missed it would show it), then a duplicate.
    pub fn abort_with_unseen_send() -> Timeline {
        use State::*;
        let mut t = Timeline::new("linger-abort (hand-built)", "10.0.0.1:40000", "10.0.0.2:80");
        let rst = seg(101, 0, Flags::RST);
        t.push(
            ms(0),
            Side::A,
            StepKind::Call(CallStep {
                kind: CallStepKind::SetLingerZero,
                result: Ok(()),
            }),
        );
        t.push(ms(0), Side::A, call(CallKind::Close));
        t.push(
            ms(0),
            Side::A,
            tr(Established, Closed, Trigger::Call(CallKind::Close)),
        );
        t.push(ms(0), Side::A, sent(7, rst, false, false));
        t.push(ms(10), Side::B, recv(7, rst));
        t.push(ms(12), Side::B, recv(7, rst));
        t.push(
            ms(10),
            Side::B,
            tr(Established, Closed, Trigger::Segment(SegmentKind::Rst)),
        );
        t.push(
            ms(20),
            Side::B,
            StepKind::Received {
                id: None,
                segment: Segment {
                    len: 0,
                    ..seg(9, 0, Flags::RST)
                },
            },
        );
        t.push(
            ms(30),
            Side::B,
            StepKind::Call(CallStep {
                kind: CallStepKind::Send(100),
                result: Err("ECONNRESET".into()),
            }),
        );
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn receptions_fold_into_their_send() {
        let t = sample::lost_fin();
        let rows = rows(&t);
        assert_eq!(rows.len(), t.steps.len());
        let arrows: Vec<&Row> = rows
            .iter()
            .filter(|r| matches!(r.kind, RowKind::Segment { .. }))
            .collect();
        assert_eq!(arrows.len(), 5);
        match &arrows[0].kind {
            RowKind::Segment { lost, arrivals, .. } => {
                assert!(*lost);
                assert!(arrivals.is_empty());
            }
            _ => unreachable!(),
        }
        match &arrows[1].kind {
            RowKind::Segment {
                retransmission,
                arrivals,
                ..
            } => {
                assert!(*retransmission);
                assert_eq!(arrivals.len(), 1);
                assert_eq!(arrivals[0].0, Duration::from_millis(225));
            }
            _ => unreachable!(),
        }
    }

    #[test]
    fn an_unseen_send_becomes_an_arrow_from_the_other_side() {
        let t = sample::abort_with_unseen_send();
        let rows = rows(&t);
        let unseen: Vec<&Row> = rows
            .iter()
            .filter(|r| {
                matches!(
                    r.kind,
                    RowKind::Segment {
                        sent_seen: false,
                        ..
                    }
                )
            })
            .collect();
        assert_eq!(unseen.len(), 1);
        assert_eq!(unseen[0].side, Side::A);
        let dup = rows.iter().find_map(|r| match &r.kind {
            RowKind::Segment { arrivals, .. } if arrivals.len() == 2 => Some(()),
            _ => None,
        });
        assert!(dup.is_some(), "the duplicated RST arrives twice");
    }

    #[test]
    fn labels() {
        let s = Segment::control(
            tcpstate_fsm::SeqNum(101),
            tcpstate_fsm::SeqNum(1),
            tcpstate_fsm::Flags::FIN | tcpstate_fsm::Flags::ACK,
            0,
        );
        assert_eq!(segment_label(&s), "FIN+ACK seq=101 ack=1 win=0");
        assert_eq!(seconds(Duration::from_millis(60_325)), "60.325");
    }
}
