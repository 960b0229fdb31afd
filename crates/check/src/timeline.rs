//! Counterexamples as timelines: the recorded actions are replayed from the stored worlds
//! with logging on, so the timeline shows the machine's own sends, receptions, timers and
//! transitions.

use crate::explore::Graph;
use crate::world::{Action, Model, Packet, Rec};
use crate::Property;
use std::time::Duration;
use tcpstate_fsm::{CallStep, Side, StepKind, Timeline};

/// One step of the world per second of timeline time: the times order the steps, they are
/// not real durations (timers fire when the search chooses).
const STEP: Duration = Duration::from_secs(1);

pub(crate) fn replay(
    model: &mut Model,
    graph: &Graph,
    property: Property,
    path: &[(u32, Action)],
    lasso_from: Option<usize>,
    finding: &str,
) -> Timeline {
    let mut tl = Timeline::new(
        format!("{} — {}", property.name(), model.cfg.variant()),
        "A (client)",
        "B (server)",
    );
    let mut log = Vec::new();
    model.initial(Some(&mut log));
    let mut ids = Ids::default();
    tl.push(
        Duration::ZERO,
        Side::A,
        StepKind::Note(
            "abstract time: one step per second; timers fire when the checker chooses, within the MSL rules"
                .into(),
        ),
    );
    ids.emit(&mut tl, Duration::ZERO, log.drain(..));
    for (k, &(from, action)) in path.iter().enumerate() {
        let at = STEP * (k as u32 + 1);
        if lasso_from == Some(k + 1) {
            tl.push(
                at,
                Side::A,
                StepKind::Note(format!(
                    "step {}: from here the run repeats or is stuck",
                    k + 1
                )),
            );
        }
        let w = graph.states[from as usize].clone();
        // The world is stored; the step is re-made with logging on, exactly as searched.
        let _ = model.apply(&w, action, Some(&mut log));
        ids.emit(&mut tl, at, log.drain(..));
    }
    let end = STEP * (path.len() as u32);
    let side = if finding.starts_with('B') {
        Side::B
    } else {
        Side::A
    };
    tl.push(
        end,
        side,
        StepKind::Note(format!("VIOLATION {}: {finding}", property.name())),
    );
    tl
}

/// Pairs each sent segment with its receptions, losses and duplicates.
#[derive(Default)]
struct Ids {
    next: u64,
    in_flight: Vec<(Packet, u64)>,
    sent_step: Vec<(u64, usize)>,
    /// The newest incarnation seen sending.
    newest: u8,
}

impl Ids {
    fn take(&mut self, pkt: &Packet) -> Option<u64> {
        let i = self.in_flight.iter().position(|(p, _)| p == pkt)?;
        Some(self.in_flight.remove(i).1)
    }

    fn emit(&mut self, tl: &mut Timeline, at: Duration, recs: impl Iterator<Item = Rec>) {
        for r in recs {
            match r {
                Rec::Call { side, kind, result } => {
                    tl.push(at, side, StepKind::Call(CallStep { kind, result }))
                }
                Rec::Sent {
                    side,
                    pkt,
                    retransmission,
                } => {
                    self.next += 1;
                    let id = self.next;
                    self.in_flight.push((pkt, id));
                    self.sent_step.push((id, tl.steps.len()));
                    tl.push(
                        at,
                        side,
                        StepKind::Sent {
                            id,
                            segment: pkt.seg,
                            lost: false,
                            retransmission,
                        },
                    );
                    self.newest = self.newest.max(pkt.tag);
                }
                Rec::Received { pkt } => {
                    let id = self.take(&pkt);
                    tl.push(
                        at,
                        pkt.to,
                        StepKind::Received {
                            id,
                            segment: pkt.seg,
                        },
                    );
                    if pkt.tag < self.newest {
                        // The tag is hidden from the machine; the reader should see it.
                        tl.push(
                            at,
                            pkt.to,
                            StepKind::Note(format!(
                                "an old segment: sent by incarnation {}",
                                pkt.tag
                            )),
                        );
                    }
                }
                Rec::Lost { pkt } => {
                    if let Some(id) = self.take(&pkt) {
                        if let Some(&(_, idx)) = self.sent_step.iter().find(|(i, _)| *i == id) {
                            if let StepKind::Sent { lost, .. } = &mut tl.steps[idx].kind {
                                *lost = true;
                            }
                        }
                    }
                    tl.push(
                        at,
                        pkt.to.other(),
                        StepKind::Note(format!("network loses {}", pkt.seg)),
                    );
                }
                Rec::Duplicated { pkt } => {
                    let id = self
                        .in_flight
                        .iter()
                        .find(|(p, _)| *p == pkt)
                        .map(|(_, id)| *id)
                        .unwrap_or(0);
                    self.in_flight.push((pkt, id));
                    tl.push(
                        at,
                        pkt.to.other(),
                        StepKind::Note(format!(
                            "network duplicates {} (incarnation {}); the copy may arrive much later",
                            pkt.seg, pkt.tag
                        )),
                    );
                }
                Rec::Timer { side, kind } => tl.push(at, side, StepKind::Timer(kind)),
                Rec::Event { side, event } => {
                    use tcpstate_fsm::Event;
                    let kind = match event {
                        Event::StateChanged { from, to, trigger } => {
                            StepKind::Transition { from, to, trigger }
                        }
                        Event::Reset => {
                            StepKind::Note("connection reset by peer (ECONNRESET)".into())
                        }
                        Event::Refused => {
                            StepKind::Note("connection refused (ECONNREFUSED)".into())
                        }
                        Event::TimedOut => {
                            StepKind::Note("connection timed out (ETIMEDOUT)".into())
                        }
                        Event::PeerClosed => StepKind::Note("peer closed: end of file".into()),
                        Event::Connected | Event::Readable(_) | Event::Closed => continue,
                    };
                    tl.push(at, side, kind);
                }
                Rec::Note { side, text } => tl.push(at, side, StepKind::Note(text)),
            }
        }
    }
}
