//! The world: two real connections, a bounded network, the applications' scripts, and the
//! ghost state the properties need. One function, [`Model::apply`], makes one step.

use crate::{Config, Property};
use std::collections::HashMap;
use std::time::Duration;
use tcpstate_fsm::{
    CallError, CallKind, CallStepKind, Connection, Event, Flags, Profile, Segment, SegmentKind,
    SeqNum, Side, State, TimerKind, Trigger,
};

/// Every call is made at this one instant; timers fire when the search chooses, with
/// `handle_timeout(deadline)` (see the crate documentation).
pub(crate) const NOW: Duration = Duration::ZERO;
/// A later instant used only on a throw-away clone, to observe that TIME_WAIT restarts
/// its timer.
const PROBE: Duration = Duration::from_secs(1_000_000);
/// The client's ISS, reused by every incarnation (the adversarial worst case).
pub(crate) const ISS_A: SeqNum = SeqNum(100);
/// The server's first ISS. Unlike the client's, the server's ISN is fresh for every
/// connection its listener creates, as a real stack's is (RFC 9293 §3.4.1's ISN clock, RFC
/// 6528): the k-th (from 0) takes `ISS_B + k·SERVER_ISN_STEP` (see [`server_iss`]).
pub(crate) const ISS_B: SeqNum = SeqNum(300);
/// How far the server's ISN clock moves between two of its connections: beyond everything
/// an earlier connection sent (SYN and FIN) plus the largest window the bounds allow
/// ([`crate::MAX_WINDOW`]), so an old ACK can neither complete a later handshake (RFC 9293
/// §3.10.7.4, SYN-RECEIVED) nor pass RFC 5961's ACK range test of a later connection.
pub(crate) const SERVER_ISN_STEP: u32 = 10_000;

/// The ISS of the server's connection number `k` (0, 1, ...): its ISN clock.
pub(crate) fn server_iss(k: u8) -> SeqNum {
    ISS_B + SERVER_ISN_STEP * u32::from(k)
}

/// A segment in flight, with the hidden incarnation tag of the TCB that sent it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct Packet {
    pub to: Side,
    pub seg: Segment,
    /// Incarnation (1, 2, ...) of the connection that sent it; only properties read it.
    pub tag: u8,
}

impl Packet {
    fn key(&self) -> (usize, u32, u32, u8, u32, u32, u8) {
        let s = &self.seg;
        (
            self.to.index(),
            s.seq.0,
            s.ack.0,
            s.flags.bits(),
            s.len,
            s.window,
            self.tag,
        )
    }
}

/// What the applications and the properties remember about one endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub(crate) struct Ghost {
    /// Incarnation of the current (or last) connection; 0 before any.
    pub inc: u8,
    /// Client: connect() calls so far.
    pub connects: u8,
    /// Connections created at this endpoint by an arriving SYN so far (the server's
    /// listener: its ISN clock, see [`server_iss`]).
    pub accepted: u8,
    /// The application sent its data in this incarnation.
    pub sent: bool,
    /// The application called close() in this incarnation.
    pub closed: bool,
    /// Octets the application read in this incarnation.
    pub read: u32,
    /// The application read end of file.
    pub eof: bool,
    /// The application was told of an error (reset, refused, timed out).
    pub error: bool,
    /// This incarnation went through CLOSE_WAIT / TIME_WAIT.
    pub seen_close_wait: bool,
    pub seen_time_wait: bool,
    /// Client: the last connection ended with the application closed and no error.
    pub ended_clean: bool,
}

/// One state of the world. Connections are interned (see [`Interner`]).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct World {
    pub conns: [u32; 2],
    /// The network, a multiset kept sorted.
    pub net: Box<[Packet]>,
    pub losses: u8,
    pub dups: u8,
    pub ghost: [Ghost; 2],
    /// Bit n: incarnation n is excused from `orderly-close` (an abort, a close with unread
    /// data, a user or FIN_WAIT_2 timeout happened in it).
    pub excused: u8,
}

/// One step of the world.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Action {
    /// The network delivers a segment.
    Deliver(Packet),
    /// The network loses a segment.
    Lose(Packet),
    /// The network duplicates a segment (the copy may arrive much later).
    Duplicate(Packet),
    /// A timer of this endpoint fires.
    Fire(Side),
    /// Client application: connect().
    Connect,
    /// Client application: send its data.
    Send,
    /// An application closes.
    Close(Side),
}

/// What happened in a step, for the timeline.
#[derive(Debug, Clone)]
pub(crate) enum Rec {
    Call {
        side: Side,
        kind: CallStepKind,
        result: Result<(), String>,
    },
    Sent {
        side: Side,
        pkt: Packet,
        retransmission: bool,
    },
    Received {
        pkt: Packet,
    },
    Lost {
        pkt: Packet,
    },
    Duplicated {
        pkt: Packet,
    },
    Timer {
        side: Side,
        kind: TimerKind,
    },
    Event {
        side: Side,
        event: Event,
    },
    Note {
        side: Side,
        text: String,
    },
}

/// A property violated by a step.
pub(crate) type Violation = (Property, String);

/// Executions that would put more segments in flight than the bound are not explored.
#[derive(Debug)]
pub(crate) struct Overflow;

/// Each distinct connection state once; worlds refer to them by index.
///
/// The key is the whole connection (`Connection: Hash + Eq`), so two worlds are merged only
/// when their connections are identical, deadlines included. Because every call is made
/// at the one instant [`NOW`], deadlines take few distinct values.
#[derive(Default)]
pub(crate) struct Interner {
    map: HashMap<Connection, u32>,
    conns: Vec<Connection>,
}

impl Interner {
    fn intern(&mut self, c: Connection) -> u32 {
        if let Some(&id) = self.map.get(&c) {
            return id;
        }
        let id = self.conns.len() as u32;
        self.conns.push(c.clone());
        self.map.insert(c, id);
        id
    }

    pub fn get(&self, id: u32) -> &Connection {
        &self.conns[id as usize]
    }

    pub fn len(&self) -> usize {
        self.conns.len()
    }
}

/// How a long timer relates to 2·MSL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TimerLength {
    /// Zero: fires at once.
    Immediate,
    /// Shorter than 2·MSL: may fire at any step.
    Short,
    /// At least 2·MSL: fires once the old segments have died (see `old_segments_dead`).
    Long,
}

fn timer_length(len: Duration, msl: Duration) -> TimerLength {
    if len.is_zero() {
        TimerLength::Immediate
    } else if len < 2 * msl {
        TimerLength::Short
    } else {
        TimerLength::Long
    }
}

/// "A" or "B", as in the findings.
pub(crate) fn name(side: Side) -> &'static str {
    match side {
        Side::A => "A",
        Side::B => "B",
    }
}

fn has_tcb(state: State) -> bool {
    !matches!(state, State::Closed | State::Listen)
}

/// The world's rules.
pub(crate) struct Model {
    pub cfg: Config,
    pub profile: Profile,
    time_wait: TimerLength,
    fin_wait_2: TimerLength,
    pub interner: Interner,
}

/// A step in progress.
struct Step<'a> {
    conns: [Connection; 2],
    touched: [bool; 2],
    w: World,
    net: Vec<Packet>,
    viol: Vec<Violation>,
    /// Segments sent in this step, by side.
    sent: Vec<(Side, Segment)>,
    log: Option<&'a mut Vec<Rec>>,
}

impl Step<'_> {
    fn rec(&mut self, r: impl FnOnce() -> Rec) {
        if let Some(log) = self.log.as_deref_mut() {
            log.push(r());
        }
    }

    fn violate(&mut self, p: Property, text: String) {
        self.viol.push((p, text));
    }

    fn remove(&mut self, pkt: &Packet) {
        let i = self
            .net
            .iter()
            .position(|p| p == pkt)
            .expect("action names a packet in flight");
        self.net.remove(i);
    }
}

/// The connection's condition just before a step, for the checks that compare.
#[derive(Debug, Clone, Copy)]
struct Before {
    state: State,
    rcv_nxt: SeqNum,
    snd_nxt: SeqNum,
}

impl Model {
    pub fn new(cfg: Config) -> Model {
        let profile = cfg.profile();
        let time_wait = timer_length(profile.time_wait, profile.msl);
        let fin_wait_2 = profile
            .fin_timeout
            .map_or(TimerLength::Long, |d| timer_length(d, profile.msl));
        Model {
            cfg,
            profile,
            time_wait,
            fin_wait_2,
            interner: Interner::default(),
        }
    }

    /// The initial world: the client CLOSED, the server LISTENing, nothing in flight.
    pub fn initial(&mut self, log: Option<&mut Vec<Rec>>) -> World {
        let a = Connection::new(self.profile.clone(), ISS_A);
        let mut b = Connection::new(self.profile.clone(), ISS_B);
        b.open_passive().expect("a new connection can listen");
        while b.poll_event().is_some() {}
        if let Some(log) = log {
            log.push(Rec::Call {
                side: Side::B,
                kind: CallStepKind::Lifecycle(CallKind::OpenPassive),
                result: Ok(()),
            });
            log.push(Rec::Event {
                side: Side::B,
                event: Event::StateChanged {
                    from: State::Closed,
                    to: State::Listen,
                    trigger: Trigger::Call(CallKind::OpenPassive),
                },
            });
        }
        World {
            conns: [self.interner.intern(a), self.interner.intern(b)],
            net: Box::new([]),
            losses: 0,
            dups: 0,
            ghost: [Ghost::default(); 2],
            excused: 0,
        }
    }

    fn conn(&self, w: &World, side: Side) -> &Connection {
        self.interner.get(w.conns[side.index()])
    }

    /// The actions enabled in a world, in a fixed order (so the search is deterministic).
    pub fn actions(&self, w: &World, out: &mut Vec<Action>) {
        out.clear();
        let b = &self.cfg.bounds;
        let distinct = w
            .net
            .iter()
            .enumerate()
            .filter(|(i, p)| *i == 0 || w.net[i - 1] != **p)
            .map(|(_, p)| *p);
        for p in distinct.clone() {
            out.push(Action::Deliver(p));
        }
        if w.losses < b.losses {
            out.extend(distinct.clone().map(Action::Lose));
        }
        if w.dups < b.duplicates && w.net.len() < b.in_flight {
            out.extend(distinct.map(Action::Duplicate));
        }
        for side in [Side::A, Side::B] {
            if self.may_fire(w, side) {
                out.push(Action::Fire(side));
            }
        }
        let a = self.conn(w, Side::A);
        let ga = &w.ghost[0];
        match a.state() {
            State::Closed => {
                let first = ga.connects == 0;
                let again = ga.ended_clean && ga.connects <= self.cfg.bounds.reconnects;
                if first || again {
                    out.push(Action::Connect);
                }
            }
            State::Established | State::CloseWait if !ga.sent => out.push(Action::Send),
            _ if ga.sent && !ga.closed => out.push(Action::Close(Side::A)),
            _ => {}
        }
        let bc = self.conn(w, Side::B);
        let gb = &w.ghost[1];
        if has_tcb(bc.state()) && self.cfg.server_closes && gb.eof && !gb.closed {
            out.push(Action::Close(Side::B));
        }
    }

    /// Whether the endpoint's next timer may fire now (the MSL guards).
    fn may_fire(&self, w: &World, side: Side) -> bool {
        let c = self.conn(w, side);
        let Some((at, kind)) = c.poll_timer() else {
            return false;
        };
        if at <= NOW {
            return false; // zero-length timers already fired within the step
        }
        match kind {
            TimerKind::TimeWait => self.long_timer_may_expire(w, side, self.time_wait),
            TimerKind::FinWait2 => self.long_timer_may_expire(w, side, self.fin_wait_2),
            TimerKind::UserTimeout => true,
            TimerKind::Retransmission => {
                // RTO > RTT: the timer expires only once the round trip it covers is over:
                // none of this endpoint's segments that occupy sequence space (SYN, data,
                // FIN — what the timer retransmits) is still in flight, nor any segment of
                // its incarnation coming back to it (the answer that may acknowledge them).
                // Spurious retransmissions are left to the network's duplicates; a give-up
                // then means the peer really stopped answering. The endpoint's own bare
                // ACKs and RSTs do not hold the timer: a real RTO runs from the last
                // (re)transmission, and an unacceptable ACK answered by an ACK (two
                // desynchronized ends, RFC 9293 §3.10.7.4 first check) neither
                // acknowledges anything nor restarts it, so such a ping-pong cannot keep
                // the timer from expiring for ever.
                let inc = w.ghost[side.index()].inc;
                w.net
                    .iter()
                    .all(|p| p.tag != inc || (p.to != side && p.seg.seg_len() == 0))
            }
        }
    }

    /// A timer of at least 2·MSL expires once the old segments have died (none of its
    /// incarnation or an earlier one in flight) and the peer holds no connection of it that
    /// still has something due — a retransmission, or its application's close: the clock's
    /// stand-in for "the peer's retransmissions, each within an RTO far below MSL, and its
    /// prompt application have all been heard" (see the crate documentation for why this is
    /// exact while `Config::give_up_after` <= MSL, and why dropping it would shorten
    /// TIME_WAIT). A peer with nothing due — a server that never closes, idle in
    /// CLOSE_WAIT — does not hold it: Linux's orphaned FIN_WAIT_2 timer exists for that peer.
    fn long_timer_may_expire(&self, w: &World, side: Side, len: TimerLength) -> bool {
        if len != TimerLength::Long {
            return true;
        }
        let inc = w.ghost[side.index()].inc;
        let old_in_flight = w.net.iter().any(|p| p.tag <= inc);
        let peer = side.other();
        let pc = self.conn(w, peer);
        let pg = &w.ghost[peer.index()];
        let will_close = !pg.closed && (peer == Side::A || self.cfg.server_closes);
        let peer_holds_it =
            has_tcb(pc.state()) && pg.inc <= inc && (pc.poll_timer().is_some() || will_close);
        !old_in_flight && !peer_holds_it
    }

    /// Make one step. Returns the next world and the properties the step violated.
    pub fn apply(
        &mut self,
        w: &World,
        action: Action,
        log: Option<&mut Vec<Rec>>,
    ) -> Result<(World, Vec<Violation>), Overflow> {
        let mut s = Step {
            conns: [self.conn(w, Side::A).clone(), self.conn(w, Side::B).clone()],
            touched: [false; 2],
            w: w.clone(),
            net: w.net.to_vec(),
            viol: Vec::new(),
            sent: Vec::new(),
            log,
        };
        match action {
            Action::Deliver(pkt) => self.deliver(&mut s, pkt),
            Action::Lose(pkt) => {
                s.remove(&pkt);
                s.w.losses += 1;
                s.rec(|| Rec::Lost { pkt });
            }
            Action::Duplicate(pkt) => {
                s.net.push(pkt);
                s.w.dups += 1;
                s.rec(|| Rec::Duplicated { pkt });
            }
            Action::Fire(side) => self.fire(&mut s, side),
            Action::Connect => {
                let g = &mut s.w.ghost[0];
                g.connects += 1;
                *g = Ghost {
                    inc: g.connects,
                    connects: g.connects,
                    accepted: g.accepted,
                    ..Ghost::default()
                };
                let inc = g.inc;
                let c = &mut s.conns[0];
                // The adversary reuses the ISN: the new incarnation overlaps the old one.
                c.set_next_iss(ISS_A);
                let r = c.open_active(NOW);
                if inc > 1 {
                    s.rec(|| Rec::Note {
                        side: Side::A,
                        text: format!(
                            "incarnation {inc}: same 4-tuple, same ISS {} (worst case)",
                            ISS_A
                        ),
                    });
                }
                self.call(
                    &mut s,
                    Side::A,
                    CallStepKind::Lifecycle(CallKind::OpenActive),
                    r,
                );
            }
            Action::Send => {
                let n = self.cfg.bounds.data;
                let r = s.conns[0].send(NOW, n);
                s.w.ghost[0].sent = true;
                self.call(&mut s, Side::A, CallStepKind::Send(n), r);
            }
            Action::Close(side) => {
                let i = side.index();
                if s.conns[i].unread() > 0 {
                    let inc = s.w.ghost[i].inc;
                    s.w.excused |= 1 << inc;
                }
                let r = s.conns[i].close(NOW);
                s.w.ghost[i].closed = true;
                self.call(&mut s, side, CallStepKind::Lifecycle(CallKind::Close), r);
            }
        }
        self.settle(&mut s);
        if s.net.len() > self.cfg.bounds.in_flight {
            return Err(Overflow);
        }
        s.net.sort_by_key(Packet::key);
        s.w.net = s.net.into_boxed_slice();
        for (i, side) in [Side::A, Side::B].into_iter().enumerate() {
            if s.touched[i] {
                let c = std::mem::replace(
                    &mut s.conns[i],
                    Connection::new(Profile::default(), SeqNum(0)),
                );
                s.w.conns[side.index()] = self.interner.intern(c);
            }
        }
        Ok((s.w, s.viol))
    }

    fn call(&self, s: &mut Step, side: Side, kind: CallStepKind, r: Result<(), CallError>) {
        s.rec(|| Rec::Call {
            side,
            kind,
            result: r.map_err(|e| e.to_string()),
        });
        let before = Before {
            state: s.conns[side.index()].state(),
            rcv_nxt: s.conns[side.index()].rcv_nxt(),
            snd_nxt: s.conns[side.index()].snd_nxt(),
        };
        self.drain(s, side, before, None);
    }

    /// Zero-length timers fire at once; the server application reads as soon as there is
    /// something to read (data or end of file: a prompt reader, which also keeps its
    /// window open); the persistent server listens again as soon as its connection is gone
    /// (a listener always exists behind an accepted connection).
    fn settle(&self, s: &mut Step) {
        for _ in 0..4 {
            let mut quiet = true;
            for side in [Side::A, Side::B] {
                if s.conns[side.index()]
                    .poll_timer()
                    .is_some_and(|(at, _)| at <= NOW)
                {
                    self.fire(s, side);
                    quiet = false;
                }
            }
            if Self::readable(&s.conns[1], &s.w.ghost[1]) {
                self.read_all(s);
                quiet = false;
            }
            if s.conns[1].state() == State::Closed {
                s.conns[1].set_next_iss(server_iss(s.w.ghost[1].accepted));
                let r = s.conns[1].open_passive();
                self.call(
                    s,
                    Side::B,
                    CallStepKind::Lifecycle(CallKind::OpenPassive),
                    r,
                );
                quiet = false;
            }
            if quiet {
                break;
            }
        }
        // Whenever the listener is (back) in LISTEN — opened again, or its connection in
        // SYN_RECEIVED given up or reset — the next connection it creates takes the next
        // value of its ISN clock.
        if s.touched[1] && s.conns[1].state() == State::Listen {
            s.conns[1].set_next_iss(server_iss(s.w.ghost[1].accepted));
        }
    }

    /// Whether the server application has something to read: data, or end of file.
    fn readable(c: &Connection, g: &Ghost) -> bool {
        has_tcb(c.state())
            && (c.unread() > 0 || (!g.eof && matches!(c.clone().read(u32::MAX), Ok(0))))
    }

    /// The server application reads everything there is, and end of file.
    fn read_all(&self, s: &mut Step) {
        let c = &mut s.conns[1];
        let mut reads = Vec::new();
        while let Ok(n) = c.read(u32::MAX) {
            reads.push(n);
            if n == 0 {
                break;
            }
        }
        s.touched[1] = true;
        for n in reads {
            if n == 0 {
                s.w.ghost[1].eof = true;
            } else {
                s.w.ghost[1].read += n;
            }
            self.call(s, Side::B, CallStepKind::Read(n), Ok(()));
        }
    }

    fn fire(&self, s: &mut Step, side: Side) {
        let i = side.index();
        let Some((at, kind)) = s.conns[i].poll_timer() else {
            return;
        };
        s.rec(|| Rec::Timer { side, kind });
        let c = &s.conns[i];
        let before = Before {
            state: c.state(),
            rcv_nxt: c.rcv_nxt(),
            snd_nxt: c.snd_nxt(),
        };
        if matches!(kind, TimerKind::FinWait2 | TimerKind::UserTimeout) {
            let inc = s.w.ghost[i].inc;
            s.w.excused |= 1 << inc;
        }
        s.conns[i].handle_timeout(at);
        self.drain(s, side, before, None);
    }

    fn deliver(&self, s: &mut Step, pkt: Packet) {
        s.remove(&pkt);
        s.rec(|| Rec::Received { pkt });
        let side = pkt.to;
        let i = side.index();
        let c = &s.conns[i];
        let before = Before {
            state: c.state(),
            rcv_nxt: c.rcv_nxt(),
            snd_nxt: c.snd_nxt(),
        };
        let seg = pkt.seg;
        let sn = name(side);
        let retransmitted_fin = before.state == State::TimeWait
            && seg.flags.fin()
            && !seg.flags.rst()
            && seg.end() == before.rcv_nxt;
        let restart_ok = if retransmitted_fin {
            let mut probe = c.clone();
            probe.handle_segment(PROBE, seg);
            let restarted =
                probe.poll_timer() == Some((PROBE + self.profile.time_wait, TimerKind::TimeWait));
            restarted || probe.state() != State::TimeWait
        } else {
            true
        };
        s.conns[i].handle_segment(NOW, seg);
        self.drain(s, side, before, Some(pkt));
        if retransmitted_fin {
            let reacked = s.rec_sent_from(side).iter().any(|t| {
                t.flags == Flags::ACK
                    && t.len == 0
                    && t.seq == before.snd_nxt
                    && t.ack == before.rcv_nxt
            });
            if !reacked {
                s.violate(
                    Property::TimeWaitDuties,
                    format!(
                        "{sn} in TIME_WAIT did not answer the retransmitted FIN {seg} with ACK {}:{}",
                        before.snd_nxt, before.rcv_nxt
                    ),
                );
            }
            if !restart_ok {
                s.violate(
                    Property::TimeWaitDuties,
                    format!("{sn} in TIME_WAIT did not restart its timer on the retransmitted FIN"),
                );
            }
        }
    }

    /// Collect one endpoint's events and transmits after it was driven: update the ghost
    /// state, check the per-step properties, put the segments on the network.
    fn drain(&self, s: &mut Step, side: Side, before: Before, delivered: Option<Packet>) {
        let i = side.index();
        let sn = name(side);
        s.touched[i] = true;
        let events: Vec<Event> = std::iter::from_fn(|| s.conns[i].poll_event()).collect();
        let sent: Vec<_> = std::iter::from_fn(|| s.conns[i].poll_transmit(NOW)).collect();
        let after = s.conns[i].state();

        // A connection created by a SYN belongs to that SYN's incarnation.
        let created = events.iter().any(|e| {
            matches!(e, Event::StateChanged { from, to: State::SynReceived, .. }
                if matches!(from, State::Listen | State::Closed | State::TimeWait))
        });
        if let (true, Some(pkt)) = (created, delivered) {
            let g = &mut s.w.ghost[i];
            *g = Ghost {
                inc: pkt.tag,
                connects: g.connects,
                accepted: g.accepted.saturating_add(1),
                ..Ghost::default()
            };
        }
        let inc = s.w.ghost[i].inc;
        let excused = s.w.excused & (1 << inc) != 0;

        for ev in &events {
            s.rec(|| Rec::Event { side, event: *ev });
            match *ev {
                Event::Reset | Event::Refused | Event::TimedOut => s.w.ghost[i].error = true,
                Event::StateChanged { from, to, trigger } => {
                    self.check_transition(s, side, from, to, trigger, delivered, excused)
                }
                _ => {}
            }
        }

        // no-cross-incarnation: data or FIN of another incarnation advanced RCV.NXT.
        if let Some(pkt) = delivered {
            let rcv_after = s.conns[i].rcv_nxt();
            if has_tcb(before.state)
                && before.state != State::SynSent
                && !created
                && has_tcb(after)
                && rcv_after.gt(before.rcv_nxt)
                && pkt.tag != inc
            {
                let what = if pkt.seg.flags.fin() && pkt.seg.len == 0 {
                    "the FIN".to_string()
                } else if pkt.seg.flags.fin() {
                    format!("{} octet(s) of data and the FIN", pkt.seg.len)
                } else {
                    format!("{} octet(s) of data", pkt.seg.len)
                };
                s.violate(
                    Property::NoCrossIncarnation,
                    format!(
                        "{sn}'s connection of incarnation {inc} ({}) accepted {what} sent by incarnation {} ({})",
                        before.state, pkt.tag, pkt.seg
                    ),
                );
            }
        }

        // time-wait-duties: nothing but a bare ACK leaves TIME_WAIT.
        if before.state == State::TimeWait && matches!(after, State::TimeWait | State::Closed) {
            for t in &sent {
                let seg = t.segment;
                if seg.flags != Flags::ACK || seg.len != 0 {
                    s.violate(
                        Property::TimeWaitDuties,
                        format!("{sn} sent {seg} from TIME_WAIT"),
                    );
                }
            }
        }

        let tag = if has_tcb(before.state) || has_tcb(after) {
            inc
        } else {
            delivered.map_or(inc, |p| p.tag)
        };
        for t in sent {
            let pkt = Packet {
                to: side.other(),
                seg: t.segment,
                tag,
            };
            s.rec(|| Rec::Sent {
                side,
                pkt,
                retransmission: t.retransmission,
            });
            s.net.push(pkt);
            s.sent.push((side, t.segment));
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn check_transition(
        &self,
        s: &mut Step,
        side: Side,
        from: State,
        to: State,
        trigger: Trigger,
        delivered: Option<Packet>,
        excused: bool,
    ) {
        let i = side.index();
        let sn = name(side);
        let inc = s.w.ghost[i].inc;
        let foreign = delivered.filter(|p| p.tag != inc);
        // no-cross-incarnation: a handshake completed by another incarnation's segment.
        if let Some(p) = foreign {
            let completes = (from == State::SynSent && has_tcb(to))
                || (from == State::SynReceived
                    && trigger == Trigger::Segment(SegmentKind::AckOfSyn));
            if completes {
                s.violate(
                    Property::NoCrossIncarnation,
                    format!(
                        "{sn}'s connection of incarnation {inc} completed its handshake ({from} -> {to}) with {} sent by incarnation {}",
                        p.seg, p.tag
                    ),
                );
            }
        }
        match to {
            State::CloseWait => {
                s.w.ghost[i].seen_close_wait = true;
                if s.w.ghost[i].seen_time_wait {
                    s.violate(
                        Property::CloseWaitXorTimeWait,
                        format!("{sn} entered CLOSE_WAIT after TIME_WAIT in incarnation {inc}"),
                    );
                }
            }
            State::TimeWait => {
                s.w.ghost[i].seen_time_wait = true;
                if s.w.ghost[i].seen_close_wait {
                    s.violate(
                        Property::CloseWaitXorTimeWait,
                        format!("{sn} entered TIME_WAIT after CLOSE_WAIT in incarnation {inc}"),
                    );
                }
            }
            _ => {}
        }
        if from == State::CloseWait {
            let allowed = matches!(
                trigger,
                Trigger::Call(_)
                    | Trigger::Segment(SegmentKind::Rst)
                    | Trigger::Timer(TimerKind::Retransmission | TimerKind::UserTimeout)
            );
            if !allowed {
                s.violate(
                    Property::CloseWaitNeedsClose,
                    format!("{sn} left CLOSE_WAIT for {to} on {trigger} without its application closing"),
                );
            }
        }
        // orderly-close.
        if !excused && to == State::Closed {
            let reset = trigger == Trigger::Segment(SegmentKind::Rst);
            if reset && !matches!(from, State::SynSent | State::SynReceived) {
                s.violate(
                    Property::OrderlyClose,
                    format!(
                        "{sn}'s connection of incarnation {inc} was torn down by an RST in {from}"
                    ),
                );
            } else if from == State::LastAck && trigger != Trigger::Segment(SegmentKind::AckOfFin) {
                s.violate(
                    Property::OrderlyClose,
                    format!("{sn} (the passive closer) left LAST_ACK on {trigger}, not on the ACK of its FIN"),
                );
            }
        }
        // time-wait-duties: with RFC 1337 on, no RST shortens TIME_WAIT.
        if from == State::TimeWait
            && to == State::Closed
            && trigger == Trigger::Segment(SegmentKind::Rst)
            && self.profile.rfc1337
        {
            s.violate(
                Property::TimeWaitDuties,
                format!("an RST ended {sn}'s TIME_WAIT although RFC 1337 is on"),
            );
        }
        if to == State::Closed && i == 0 {
            let g = &mut s.w.ghost[0];
            g.ended_clean = g.closed && !g.error;
        }
    }
}

impl Step<'_> {
    /// Segments this side sent in this step.
    fn rec_sent_from(&self, side: Side) -> Vec<Segment> {
        self.sent
            .iter()
            .filter(|(s, _)| *s == side)
            .map(|(_, seg)| *seg)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    /// An old duplicate SYN still makes a ghost connection at the listener while the
    /// client is in TIME_WAIT (RFC 793 Figure 10's situation), but with the next ISS of the
    /// server's ISN clock, so no old ACK of the first connection can complete it.
    #[test]
    fn ghost_connection_from_an_old_syn_gets_a_fresh_iss() {
        let mut m = Model::new(Config::default());
        let init = m.initial(None);
        let mut seen = HashSet::from([init.clone()]);
        let mut todo = vec![init];
        let mut acts = Vec::new();
        let mut ghosts = 0;
        while let Some(w) = todo.pop() {
            let (a, b) = (m.conn(&w, Side::A), m.conn(&w, Side::B));
            if a.state() == State::TimeWait
                && b.state() == State::SynReceived
                && w.ghost[1].inc == w.ghost[0].inc
            {
                ghosts += 1;
                let k = w.ghost[1].accepted;
                assert!(
                    k >= 2,
                    "a ghost is at least the listener's second connection"
                );
                assert_eq!(b.iss(), server_iss(k - 1));
                assert_ne!(b.iss(), ISS_B);
            }
            m.actions(&w, &mut acts);
            for act in acts.clone() {
                if let Ok((next, _)) = m.apply(&w, act, None) {
                    if seen.insert(next.clone()) {
                        todo.push(next);
                    }
                }
            }
        }
        assert!(ghosts > 0, "no ghost SYN_RECV in {} states", seen.len());
    }
}
