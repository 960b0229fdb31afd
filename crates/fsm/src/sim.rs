//! A two-endpoint driver with a virtual clock and a scriptable network.
//!
//! Two [`Connection`]s, A and B, joined by a network with a fixed one-way latency whose
//! behaviour can be scripted per segment: drop, duplicate or delay (and so reorder) the n-th
//! segment from one side that matches a predicate. Everything that happens is recorded as
//! a [`Timeline`]. Deterministic: the same script gives the same timeline.

use crate::{
    CallError, CallKind, CallStep, CallStepKind, Connection, Event, Segment, Side, StepKind,
    Timeline,
};
use std::time::Duration;

/// What the network does to a matched segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fate {
    /// Lost.
    Drop,
    /// Delivered twice: once normally, and a copy this much later (an old duplicate).
    Duplicate(Duration),
    /// Delivered after this extra delay (later segments may overtake it).
    Delay(Duration),
}

type Matcher = Box<dyn Fn(&Segment) -> bool>;

struct Rule {
    from: Side,
    nth: usize,
    seen: usize,
    matches: Matcher,
    fate: Fate,
}

struct Flight {
    at: Duration,
    order: u64,
    to: Side,
    id: u64,
    segment: Segment,
}

/// Two connections, a network and a clock.
pub struct Sim {
    conns: [Connection; 2],
    now: Duration,
    latency: Duration,
    timeline: Timeline,
    next_id: u64,
    next_order: u64,
    in_flight: Vec<Flight>,
    rules: Vec<Rule>,
}

impl Sim {
    /// A simulation of `a` and `b` with a one-way latency.
    pub fn new(
        title: impl Into<String>,
        a: (impl Into<String>, Connection),
        b: (impl Into<String>, Connection),
        latency: Duration,
    ) -> Sim {
        Sim {
            timeline: Timeline::new(title, a.0, b.0),
            conns: [a.1, b.1],
            now: Duration::ZERO,
            latency,
            next_id: 1,
            next_order: 0,
            in_flight: Vec::new(),
            rules: Vec::new(),
        }
    }

    /// The current virtual time.
    pub fn now(&self) -> Duration {
        self.now
    }

    /// One endpoint's connection.
    pub fn conn(&self, side: Side) -> &Connection {
        &self.conns[side.index()]
    }

    /// One endpoint's connection, mutably (e.g. to change a profile knob like a sysctl).
    pub fn conn_mut(&mut self, side: Side) -> &mut Connection {
        &mut self.conns[side.index()]
    }

    /// The timeline so far.
    pub fn timeline(&self) -> &Timeline {
        &self.timeline
    }

    /// Finish and return the timeline.
    pub fn into_timeline(self) -> Timeline {
        self.timeline
    }

    /// Script the network: the `nth` (1-based) segment sent by `from` that satisfies
    /// `matches` meets `fate`.
    pub fn on_nth(
        &mut self,
        from: Side,
        nth: usize,
        matches: impl Fn(&Segment) -> bool + 'static,
        fate: Fate,
    ) {
        self.rules.push(Rule {
            from,
            nth,
            seen: 0,
            matches: Box::new(matches),
            fate,
        });
    }

    /// Add a free-form note to the timeline.
    pub fn note(&mut self, side: Side, text: impl Into<String>) {
        self.timeline
            .push(self.now, side, StepKind::Note(text.into()));
    }

    /// Make a user call at the current time and record it.
    pub fn call(
        &mut self,
        side: Side,
        kind: CallStepKind,
        f: impl FnOnce(&mut Connection, Duration) -> Result<(), CallError>,
    ) -> Result<(), CallError> {
        let now = self.now;
        let result = f(&mut self.conns[side.index()], now);
        self.timeline.push(
            now,
            side,
            StepKind::Call(CallStep {
                kind,
                result: result.map_err(|e| e.to_string()),
            }),
        );
        self.collect(side);
        result
    }

    /// Convenience wrappers for the lifecycle calls.
    pub fn listen(&mut self, side: Side) -> Result<(), CallError> {
        self.call(
            side,
            CallStepKind::Lifecycle(CallKind::OpenPassive),
            |c, _| c.open_passive(),
        )
    }
    /// `connect()`.
    pub fn connect(&mut self, side: Side) -> Result<(), CallError> {
        self.call(
            side,
            CallStepKind::Lifecycle(CallKind::OpenActive),
            |c, now| c.open_active(now),
        )
    }
    /// `close()`.
    pub fn close(&mut self, side: Side) -> Result<(), CallError> {
        self.call(side, CallStepKind::Lifecycle(CallKind::Close), |c, now| {
            c.close(now)
        })
    }
    /// `shutdown(SHUT_WR)`.
    pub fn shutdown_write(&mut self, side: Side) -> Result<(), CallError> {
        self.call(
            side,
            CallStepKind::Lifecycle(CallKind::ShutdownWrite),
            |c, now| c.shutdown_write(now),
        )
    }
    /// ABORT.
    pub fn abort(&mut self, side: Side) -> Result<(), CallError> {
        self.call(side, CallStepKind::Lifecycle(CallKind::Abort), |c, now| {
            c.abort(now)
        })
    }
    /// SEND of `len` octets.
    pub fn send(&mut self, side: Side, len: u32) -> Result<(), CallError> {
        self.call(side, CallStepKind::Send(len), |c, now| c.send(now, len))
    }
    /// `SO_LINGER {1,0}`.
    pub fn set_linger_zero(&mut self, side: Side) {
        let _ = self.call(side, CallStepKind::SetLingerZero, |c, _| {
            c.set_linger_zero(true);
            Ok(())
        });
    }
    /// RECEIVE everything buffered; records how much was read (0 = end of file).
    pub fn read_all(&mut self, side: Side) -> Result<u32, CallError> {
        let now = self.now;
        let result = self.conns[side.index()].read(u32::MAX);
        let recorded = match result {
            Ok(n) => (n, Ok(())),
            Err(e) => (0, Err(e.to_string())),
        };
        self.timeline.push(
            now,
            side,
            StepKind::Call(CallStep {
                kind: CallStepKind::Read(recorded.0),
                result: recorded.1,
            }),
        );
        result
    }

    /// The time of the next thing that will happen (a delivery or a timer), if any.
    pub fn next_event_time(&self) -> Option<Duration> {
        let flight = self.in_flight.iter().map(|f| f.at).min();
        let timers = self.conns.iter().filter_map(|c| c.poll_timeout()).min();
        match (flight, timers) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Run every delivery and timer up to and including time `until`; the clock ends at
    /// `until`.
    pub fn run_until(&mut self, until: Duration) {
        while let Some(t) = self.next_event_time() {
            if t > until {
                break;
            }
            self.now = self.now.max(t);
            self.step();
        }
        self.now = self.now.max(until);
    }

    /// Run for `d` from now.
    pub fn run_for(&mut self, d: Duration) {
        let until = self.now + d;
        self.run_until(until);
    }

    /// Run until nothing is in flight and no timer is armed, or `limit` from now.
    pub fn run_until_idle(&mut self, limit: Duration) {
        let until = self.now + limit;
        while let Some(t) = self.next_event_time() {
            if t > until {
                break;
            }
            self.now = self.now.max(t);
            self.step();
        }
    }

    /// Deliveries due now first (in send order), then timers due now.
    fn step(&mut self) {
        let now = self.now;
        let mut due: Vec<Flight> = Vec::new();
        let mut i = 0;
        while i < self.in_flight.len() {
            if self.in_flight[i].at <= now {
                due.push(self.in_flight.remove(i));
            } else {
                i += 1;
            }
        }
        due.sort_by_key(|f| (f.at, f.order));
        for flight in due {
            self.timeline.push(
                now,
                flight.to,
                StepKind::Received {
                    id: Some(flight.id),
                    segment: flight.segment,
                },
            );
            self.conns[flight.to.index()].handle_segment(now, flight.segment);
            self.collect(flight.to);
        }
        for side in [Side::A, Side::B] {
            if let Some((t, kind)) = self.conns[side.index()].poll_timer() {
                if t <= now {
                    self.timeline.push(now, side, StepKind::Timer(kind));
                    self.conns[side.index()].handle_timeout(now);
                    self.collect(side);
                }
            }
        }
    }

    /// Record a side's events and put its transmits on the network.
    fn collect(&mut self, side: Side) {
        let now = self.now;
        let conn = &mut self.conns[side.index()];
        let mut events = Vec::new();
        while let Some(e) = conn.poll_event() {
            events.push(e);
        }
        let mut transmits = Vec::new();
        while let Some(t) = conn.poll_transmit(now) {
            transmits.push(t);
        }
        for e in events {
            let kind = match e {
                Event::StateChanged { from, to, trigger } => {
                    StepKind::Transition { from, to, trigger }
                }
                Event::Reset => StepKind::Note("connection reset by peer (ECONNRESET)".into()),
                Event::Refused => StepKind::Note("connection refused (ECONNREFUSED)".into()),
                Event::TimedOut => StepKind::Note("connection timed out (ETIMEDOUT)".into()),
                Event::PeerClosed => StepKind::Note("peer closed: end of file".into()),
                Event::Connected | Event::Readable(_) | Event::Closed => continue,
            };
            self.timeline.push(now, side, kind);
        }
        for t in transmits {
            let id = self.next_id;
            self.next_id += 1;
            let mut fate = None;
            for rule in &mut self.rules {
                if rule.from == side && (rule.matches)(&t.segment) {
                    rule.seen += 1;
                    if rule.seen == rule.nth {
                        fate = Some(rule.fate);
                    }
                }
            }
            let lost = fate == Some(Fate::Drop);
            self.timeline.push(
                now,
                side,
                StepKind::Sent {
                    id,
                    segment: t.segment,
                    lost,
                    retransmission: t.retransmission,
                },
            );
            if lost {
                continue;
            }
            let mut at = now + self.latency;
            if let Some(Fate::Delay(d)) = fate {
                at += d;
            }
            self.enqueue(at, side.other(), id, t.segment);
            if let Some(Fate::Duplicate(extra)) = fate {
                self.enqueue(at + extra, side.other(), id, t.segment);
            }
        }
    }

    fn enqueue(&mut self, at: Duration, to: Side, id: u64, segment: Segment) {
        self.next_order += 1;
        self.in_flight.push(Flight {
            at,
            order: self.next_order,
            to,
            id,
            segment,
        });
    }
}
