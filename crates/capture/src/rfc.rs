//! Both endpoints' RFC 9293 states, reconstructed by driving one `tcpstate_fsm::Connection`
//! per endpoint with what that endpoint is seen to send and receive (DESIGN.md principle 1:
//! no second state tracker here).
//!
//! What an endpoint sends becomes a user call on its machine (SYN → `open_active`, SYN+ACK →
//! `open_passive` then the peer's SYN, data → `send`, FIN → `shutdown_write`, RST →
//! `abort`); what its peer sends is fed to `handle_segment` at the capture time. The capture
//! point sits somewhere between the two hosts, so every time is the time the packet passed
//! the capture point: exact on loopback, an estimate elsewhere, and the output says so.
//! Retransmissions are recorded, not fed (the machine's own timers are not run: the capture
//! shows what the real timers did). A packet the machine refuses, or a segment the machine
//! would not have sent, becomes an anomaly note, and reconstruction continues.
//!
//! Only control segments (SYN, FIN, RST) and transitions are kept in the timeline; data and
//! pure ACKs are counted. Memory per connection is therefore bounded by its control traffic.

use crate::decode::TcpSegment;
use crate::short::StateLog;
use std::net::SocketAddr;
use std::time::Duration;
use tcpstate_fsm::{
    Connection, Event, Flags, Flavor, Segment, SeqNum, Side, State, StepKind, Timeline,
};

/// What one endpoint did, as observed.
#[derive(Debug, Clone, Default)]
pub struct EndpointFacts {
    /// SYNs (or SYN+ACKs) sent, including retransmissions.
    pub syns: u32,
    /// Retransmitted SYNs (same ISN again).
    pub syn_retransmissions: u32,
    /// FINs sent, including retransmissions.
    pub fins: u32,
    /// Retransmitted FINs (same sequence number again).
    pub fin_retransmissions: u32,
    /// First FIN sent at (since the connection's first packet).
    pub first_fin_at: Option<Duration>,
    /// First RST sent at, and the sender's state then (per its machine, when driven).
    pub rst: Option<(Duration, Option<State>)>,
    /// Segments sent.
    pub segments: u64,
    /// Payload octets sent (retransmissions included).
    pub payload: u64,
    /// FINs this endpoint sent while its machine was already in TIME_WAIT... (counted on the
    /// peer: a FIN retransmitted to a TIME_WAIT endpoint is evidence its final ACK was lost).
    pub fin_received_in_time_wait: u32,
}

/// One endpoint's reconstruction.
#[derive(Debug, Clone)]
struct Endpoint {
    addr: SocketAddr,
    machine: Option<Connection>,
    /// The peer's SYN, kept until this endpoint's SYN+ACK shows its ISN.
    pending_syn: Option<(Duration, Segment)>,
    isn: Option<u32>,
    fin_seq: Option<u32>,
    facts: EndpointFacts,
    /// Set when the machine could not be started (mid-stream capture).
    undriven_noted: bool,
    /// The machine's states with the time each was entered (the first entry is the state
    /// before the first transition, at time zero): kept even when steps are not recorded.
    states: StateLog,
}

/// Per-connection RFC reconstruction in progress.
#[derive(Debug, Clone)]
pub struct RfcView {
    ep: [Endpoint; 2],
    /// Whether to record the timeline's steps (segments, transitions, notes); when off, only
    /// each endpoint's state changes and the facts are kept.
    record: bool,
    /// Steps of both endpoints, endpoint index as `Side::A` = 0 until `finish` maps roles.
    steps: Vec<(Duration, usize, StepKind)>,
    next_id: u64,
    anomalies: u32,
    /// Tracker bookkeeping: the idle timer for closed connections is armed.
    pub(crate) idle_timer_armed: bool,
}

/// The finished reconstruction of a connection.
#[derive(Debug, Clone)]
pub struct RfcReport {
    /// Both endpoints' timeline; `Side::A` is the originator. `None` when the analysis was
    /// told not to record timelines ([`crate::Options::timelines`]).
    pub timeline: Option<Timeline>,
    /// Each side's states with the time it entered them, `[A, B]` (as
    /// [`Timeline::states`] gives them; empty when the machine was never driven).
    pub states: [StateLog; 2],
    /// Facts per side, `[A, B]`.
    pub facts: [EndpointFacts; 2],
    /// Final state per side per its machine (`None` when the machine could not be driven,
    /// e.g. the capture started mid-connection).
    pub final_state: [Option<State>; 2],
    /// Which side sent the first FIN.
    pub closed_first: Option<Side>,
    /// Both FINs crossed: the second FIN did not acknowledge the first.
    pub simultaneous_close: bool,
    /// Which sides' machines reached TIME_WAIT.
    pub time_wait: [bool; 2],
    /// How long each side sat in CLOSE_WAIT (its machine's entry to its exit, or to the end
    /// of the capture when it never left).
    pub close_wait: [Option<Duration>; 2],
    /// A side still in CLOSE_WAIT at the end of the capture.
    pub close_wait_open: [bool; 2],
    /// A RST: who sent it first and in which state.
    pub reset: Option<(Side, Option<State>)>,
    /// One side closed or vanished while the other never answered (only one direction
    /// seen, or the peer went silent).
    pub half_open: bool,
    /// Notes where the packets contradicted the machine.
    pub anomalies: u32,
}

/// States with both sequence spaces synchronized (RFC 9293 §3.3.2), where a gap in the
/// captured sequence numbers can only be capture loss.
fn synchronized(state: Option<State>) -> bool {
    matches!(
        state,
        Some(
            State::Established
                | State::FinWait1
                | State::FinWait2
                | State::CloseWait
                | State::Closing
                | State::LastAck
                | State::TimeWait
        )
    )
}

fn segment_of(seg: &TcpSegment) -> Segment {
    Segment {
        seq: SeqNum(seg.seq),
        ack: SeqNum(seg.ack),
        flags: seg.flags,
        len: seg.payload_len,
        window: u32::from(seg.window),
    }
}

/// The machine of an endpoint seen in a capture, with `iss` its first sequence number: the
/// Linux profile, and what it would send dropped (the capture shows what was really sent).
fn observed_machine(iss: SeqNum) -> Connection {
    let mut m = Connection::with_flavor(Flavor::Linux, iss);
    m.set_drop_transmits(true);
    m
}

impl RfcView {
    /// A connection whose first packet went from `a` to `b`; `record` keeps the full
    /// timeline (control segments, transitions, notes).
    pub fn new(a: SocketAddr, b: SocketAddr, record: bool) -> RfcView {
        let ep = |addr| Endpoint {
            addr,
            machine: None,
            pending_syn: None,
            isn: None,
            fin_seq: None,
            facts: EndpointFacts::default(),
            undriven_noted: false,
            states: StateLog::default(),
        };
        RfcView {
            ep: [ep(a), ep(b)],
            record,
            steps: Vec::new(),
            next_id: 0,
            anomalies: 0,
            idle_timer_armed: false,
        }
    }

    fn note(&mut self, at: Duration, side: usize, text: impl FnOnce() -> String) {
        self.anomalies += 1;
        if self.record {
            self.steps.push((at, side, StepKind::Note(text())));
        }
    }

    /// Drain a machine's events into transitions; read what became readable (the capture
    /// cannot see reads; assuming the application reads keeps Linux's close-with-unread-data
    /// RST from firing on data nobody could see unread).
    fn drain(&mut self, side: usize, at: Duration) {
        let e = &mut self.ep[side];
        let Some(m) = e.machine.as_mut() else {
            return;
        };
        // The machine drops its transmits (`set_drop_transmits`): only events to take.
        // Reading changes only the unread count, so one read of everything that became
        // readable, after the events are taken, leaves the machine as one read per event.
        let mut readable = 0u32;
        while let Some(ev) = m.poll_event() {
            match ev {
                Event::StateChanged { from, to, trigger } => {
                    if e.states.is_empty() {
                        e.states.push((Duration::ZERO, from));
                    }
                    e.states.push((at, to));
                    if self.record {
                        self.steps
                            .push((at, side, StepKind::Transition { from, to, trigger }));
                    }
                }
                Event::Readable(n) => readable = readable.saturating_add(n),
                _ => {}
            }
        }
        if readable > 0 {
            let _ = m.read(readable);
        }
    }

    /// One observed segment at `at` (since the connection's first packet) from endpoint `i`.
    pub fn segment(&mut self, at_ns: i64, i: usize, seg: &TcpSegment) {
        let at = Duration::from_nanos(at_ns.max(0) as u64);
        let s = segment_of(seg);
        let f = seg.flags;
        let peer = i ^ 1;
        let e = &mut self.ep[i];
        e.facts.segments += 1;
        e.facts.payload += u64::from(seg.payload_len);

        // Classify retransmissions of control segments.
        let mut retransmission = false;
        if f.syn() {
            e.facts.syns += 1;
            if e.isn == Some(seg.seq) {
                e.facts.syn_retransmissions += 1;
                retransmission = true;
            }
            e.isn = Some(seg.seq);
        }
        if f.fin() {
            let fin_at = seg.seq.wrapping_add(seg.payload_len);
            e.facts.fins += 1;
            if e.fin_seq == Some(fin_at) {
                e.facts.fin_retransmissions += 1;
                retransmission = true;
            }
            e.fin_seq.get_or_insert(fin_at);
            e.facts.first_fin_at.get_or_insert(at);
        }
        let state_before = e.machine.as_ref().map(|m| m.state());
        if f.rst() && e.facts.rst.is_none() {
            e.facts.rst = Some((at, state_before));
        }
        if self.record && (f.syn() || f.fin() || f.rst()) {
            self.next_id += 1;
            self.steps.push((
                at,
                i,
                StepKind::Sent {
                    id: self.next_id,
                    segment: s,
                    lost: false,
                    retransmission,
                },
            ));
            self.steps.push((
                at,
                peer,
                StepKind::Received {
                    id: Some(self.next_id),
                    segment: s,
                },
            ));
        }
        if !retransmission {
            self.drive_sender(at, i, &s);
        }
        if self.ep[peer].machine.as_ref().map(|m| m.state()) == Some(State::TimeWait) && f.fin() {
            self.ep[peer].facts.fin_received_in_time_wait += 1;
        }
        self.drive_receiver(at, peer, &s);
    }

    /// Make endpoint `i`'s machine send what it was seen sending.
    fn drive_sender(&mut self, at: Duration, i: usize, s: &Segment) {
        let f = s.flags;
        if self.ep[i].machine.is_none() {
            if f.syn() && !f.ack() {
                let m = self.ep[i].machine.insert(observed_machine(s.seq));
                let _ = m.open_active(at);
                self.drain(i, at);
                return;
            }
            if f.syn() && f.ack() {
                let m = self.ep[i].machine.insert(observed_machine(s.seq));
                let _ = m.open_passive();
                let pending = self.ep[i].pending_syn.take();
                match pending {
                    Some((syn_at, syn)) => {
                        self.drain(i, syn_at);
                        if let Some(m) = self.ep[i].machine.as_mut() {
                            m.handle_segment(syn_at, syn);
                        }
                        self.drain(i, syn_at);
                    }
                    None => {
                        self.drain(i, at);
                        self.note(at, i, || {
                            "SYN+ACK without a captured SYN: the peer's SYN is assumed at this time"
                                .into()
                        });
                        let syn = Segment::control(s.ack - 1, SeqNum(0), Flags::SYN, s.window);
                        if let Some(m) = self.ep[i].machine.as_mut() {
                            m.handle_segment(at, syn);
                        }
                        self.drain(i, at);
                    }
                }
                return;
            }
            if !self.ep[i].undriven_noted {
                self.ep[i].undriven_noted = true;
                let text = if f.rst() {
                    "RST from an endpoint with no handshake seen (no listener, or the capture \
                     started mid-connection): its state is not reconstructed"
                } else {
                    "capture starts mid-connection for this endpoint: no handshake seen, so its \
                     state is not reconstructed (ESTABLISHED is likely but not shown)"
                };
                if self.record {
                    self.steps.push((at, i, StepKind::Note(text.into())));
                }
            }
            return;
        }
        let state = self.ep[i].machine.as_ref().map(|m| m.state());
        // Capture loss on the way out: this segment starts beyond what the machine has
        // sent, so the bytes in between were sent but not captured. Send them first.
        if let Some(m) = self.ep[i].machine.as_mut() {
            let missing = s.seq.distance_from(m.snd_nxt());
            if synchronized(state) && missing > 0 && missing < (1 << 30) && !f.syn() {
                let _ = m.send(at, missing as u32);
                self.drain(i, at);
                if self.record {
                    self.steps.push((
                        at,
                        i,
                        StepKind::Note(format!(
                            "capture loss: {missing} bytes sent before this segment were not \
                             captured"
                        )),
                    ));
                }
            }
        }
        if !(f.rst() || f.fin() || f.syn() || s.len > 0) {
            // A pure ACK asks nothing of its sender's machine (what it acknowledges is
            // fed to the receiver): nothing to drive or drain.
            return;
        }
        let m = self.ep[i].machine.as_mut().expect("checked above");
        let mut problem = None;
        if f.rst() {
            if let Err(e) = m.abort(at) {
                problem = Some(format!(
                    "RST sent in {state:?}: the machine refuses abort ({e})"
                ));
            }
        } else {
            if s.len > 0 && !f.syn() {
                if let Err(e) = m.send(at, s.len) {
                    problem = Some(format!(
                        "{} bytes sent in {} where the machine refuses SEND ({e})",
                        s.len,
                        state.map_or("?", State::name)
                    ));
                }
            }
            if f.fin() {
                if let Err(e) = m.shutdown_write(at) {
                    problem = Some(format!(
                        "FIN sent in {} where the machine refuses to close ({e})",
                        state.map_or("?", State::name)
                    ));
                }
            }
            if f.syn() && !matches!(state, Some(State::SynSent | State::SynReceived)) {
                problem = Some(format!(
                    "SYN sent in {}: contradicts the machine",
                    state.map_or("?", State::name)
                ));
            }
        }
        // Data sent changes no state: skip the call then.
        if m.has_events() {
            self.drain(i, at);
        }
        if let Some(p) = problem {
            self.note(at, i, || p);
        }
    }

    /// Feed endpoint `r` what its peer sent.
    fn drive_receiver(&mut self, at: Duration, r: usize, s: &Segment) {
        if self.ep[r].machine.is_none() {
            if s.flags.syn() && !s.flags.ack() {
                // A passive opener's machine starts when its SYN+ACK shows its ISN.
                self.ep[r].pending_syn = Some((at, *s));
            }
            return;
        }
        let m = self.ep[r].machine.as_mut().expect("checked above");
        // Capture loss on the way in: the peer's segment starts beyond RCV.NXT and the peer
        // has sent it (its later segments prove it), so deliver the uncaptured bytes first,
        // as the receiving host most likely got them.
        let missing = s.seq.distance_from(m.rcv_nxt());
        if synchronized(Some(m.state())) && missing > 0 && missing < (1 << 30) && !s.flags.syn() {
            let fill = Segment {
                seq: m.rcv_nxt(),
                ack: s.ack,
                flags: Flags::ACK,
                len: missing as u32,
                window: s.window,
            };
            m.handle_segment(at, fill);
        }
        let m = self.ep[r].machine.as_mut().expect("checked above");
        m.handle_segment(at, *s);
        // Most segments (pure ACKs, data) change no state: skip the call then.
        if m.has_events() {
            self.drain(r, at);
        }
    }

    /// Finish: `orig` is the originator's endpoint index (Side::A); `end` the time of the
    /// last packet.
    pub fn finish(&mut self, orig: usize, end: Duration) -> RfcReport {
        let side = |i: usize| if i == orig { Side::A } else { Side::B };
        let timeline = self.record.then(|| {
            let mut timeline = Timeline::new(
                format!("{} → {}", self.ep[orig].addr, self.ep[orig ^ 1].addr),
                self.ep[orig].addr.to_string(),
                self.ep[orig ^ 1].addr.to_string(),
            );
            // Steps are pushed nearly in order (a passive opener's first transitions are
            // back-dated to its peer's SYN); a stable sort keeps ties in push order.
            if !self.steps.is_sorted_by_key(|(at, _, _)| *at) {
                self.steps.sort_by_key(|(at, _, _)| *at);
            }
            timeline.steps.reserve(self.steps.len());
            for (at, i, kind) in self.steps.drain(..) {
                timeline.push(at, side(i), kind);
            }
            timeline
        });
        let [e0, e1] = &mut self.ep;
        let (ea, eb) = if orig == 0 { (e0, e1) } else { (e1, e0) };
        for e in [&mut *ea, &mut *eb] {
            // The same order as the timeline's (capture times can step backwards).
            e.states.sort_by_time();
        }
        let facts = [std::mem::take(&mut ea.facts), std::mem::take(&mut eb.facts)];
        let final_state = [
            ea.machine.as_ref().map(|m| m.state()),
            eb.machine.as_ref().map(|m| m.state()),
        ];
        let states = [
            std::mem::take(&mut ea.states),
            std::mem::take(&mut eb.states),
        ];
        let visited = |k: usize, st: State| states[k].iter().any(|&(_, s)| s == st);
        let closed_first = match (facts[0].first_fin_at, facts[1].first_fin_at) {
            (Some(a), Some(b)) => Some(if b < a { Side::B } else { Side::A }),
            (Some(_), None) => Some(Side::A),
            (None, Some(_)) => Some(Side::B),
            (None, None) => None,
        };
        let time_wait = [visited(0, State::TimeWait), visited(1, State::TimeWait)];
        let simultaneous_close = visited(0, State::Closing) || visited(1, State::Closing);
        let mut close_wait = [None, None];
        let mut close_wait_open = [false, false];
        for k in 0..2 {
            let states = &states[k];
            for (n, &(entered, st)) in states.iter().enumerate() {
                if st == State::CloseWait {
                    let left = states.get(n + 1).map(|&(t, _)| t);
                    close_wait_open[k] = left.is_none();
                    close_wait[k] = Some(left.unwrap_or(end).saturating_sub(entered));
                }
            }
        }
        let reset = match (facts[0].rst, facts[1].rst) {
            (Some((a, sa)), Some((b, sb))) => {
                Some(if b < a { (Side::B, sb) } else { (Side::A, sa) })
            }
            (Some((_, sa)), None) => Some((Side::A, sa)),
            (None, Some((_, sb))) => Some((Side::B, sb)),
            (None, None) => None,
        };
        let half_open = (facts[0].segments == 0) != (facts[1].segments == 0);
        RfcReport {
            timeline,
            states,
            facts,
            final_state,
            closed_first,
            simultaneous_close,
            time_wait,
            close_wait,
            close_wait_open,
            reset,
            half_open,
            anomalies: self.anomalies,
        }
    }
}
