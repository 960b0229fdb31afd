//! A random walk over one connection: user calls, timers, and segments from an adversarial
//! peer crafted against the connection's own sequence variables (so that exact, in-window,
//! old and future segments all occur).

#![allow(dead_code)]

use std::time::Duration;
use tcpstate_fsm::{Connection, Event, Flags, Segment, SeqNum, State, Trigger};

/// One step of a walk.
#[derive(Debug, Clone, Copy)]
pub enum Action {
    OpenPassive,
    OpenActive,
    Send(u32),
    Read,
    ShutdownWrite,
    Close,
    Abort,
    LingerZero,
    /// Advance the clock by this many milliseconds, firing due timers.
    Advance(u32),
    /// Jump to the next timer and fire it.
    FireTimer,
    /// Fire timers until none is left (at most 40): lets retry limits run out.
    Exhaust,
    Peer(PeerSeg),
}

/// Segments relative to the connection's variables.
#[derive(Debug, Clone, Copy)]
pub enum PeerSeg {
    Syn(u32),
    SynAck,
    AckAll,
    AckPartial,
    Data(u32),
    DataBeyondGap,
    FinNoAckOfOurs,
    FinAckAll,
    OldFin,
    RstExact,
    RstInWindow,
    RstBeforeFin,
    RstAckForSynSent,
    SynLower,
    SynHigher,
    AckTooNew,
    Garbage(u32, u32, u8, u16),
}

/// xorshift64*: deterministic, no dependencies.
pub struct Rng(pub u64);
impl Rng {
    pub fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

pub fn random_action(rng: &mut Rng) -> Action {
    use Action::*;
    use PeerSeg::*;
    match rng.below(40) {
        0 => OpenPassive,
        1 => OpenActive,
        2 | 3 => Send(1 + rng.below(3000) as u32),
        4 | 5 => Read,
        6 => ShutdownWrite,
        7 | 8 => Close,
        9 => Abort,
        10 => LingerZero,
        11 => Advance(rng.below(2000) as u32),
        12 | 13 => FireTimer,
        14 => Exhaust,
        15 | 16 => Peer(Syn(rng.next() as u32)),
        17 => Peer(SynAck),
        18..=21 => Peer(AckAll),
        22 => Peer(AckPartial),
        23 | 24 => Peer(Data(1 + rng.below(2000) as u32)),
        25 => Peer(DataBeyondGap),
        26 | 27 => Peer(FinNoAckOfOurs),
        28 | 29 => Peer(FinAckAll),
        30 => Peer(OldFin),
        31 => Peer(RstExact),
        32 => Peer(RstInWindow),
        33 => Peer(RstBeforeFin),
        34 => Peer(RstAckForSynSent),
        35 => Peer(SynLower),
        36 => Peer(SynHigher),
        37 => Peer(AckTooNew),
        _ => Peer(Garbage(
            rng.next() as u32,
            rng.next() as u32,
            rng.next() as u8,
            rng.next() as u16,
        )),
    }
}

pub fn peer_segment(c: &Connection, p: PeerSeg) -> Segment {
    let rcv = c.rcv_nxt();
    let una = c.snd_una();
    let nxt = c.snd_nxt();
    let (seq, ack, flags, len) = match p {
        PeerSeg::Syn(isn) => (SeqNum(isn), SeqNum(0), Flags::SYN, 0),
        PeerSeg::SynAck => (SeqNum(777), nxt, Flags::SYN | Flags::ACK, 0),
        PeerSeg::AckAll => (rcv, nxt, Flags::ACK, 0),
        PeerSeg::AckPartial => (rcv, una + 1, Flags::ACK, 0),
        PeerSeg::Data(n) => (rcv, una, Flags::ACK | Flags::PSH, n),
        PeerSeg::DataBeyondGap => (rcv + 500, una, Flags::ACK | Flags::PSH, 100),
        PeerSeg::FinNoAckOfOurs => (rcv, una, Flags::FIN | Flags::ACK, 0),
        PeerSeg::FinAckAll => (rcv, nxt, Flags::FIN | Flags::ACK, 0),
        PeerSeg::OldFin => (rcv - 1, nxt, Flags::FIN | Flags::ACK, 0),
        PeerSeg::RstExact => (rcv, nxt, Flags::RST | Flags::ACK, 0),
        PeerSeg::RstInWindow => (rcv + 100, nxt, Flags::RST, 0),
        PeerSeg::RstBeforeFin => (rcv - 1, nxt, Flags::RST, 0),
        PeerSeg::RstAckForSynSent => (SeqNum(0), nxt, Flags::RST | Flags::ACK, 0),
        PeerSeg::SynLower => (rcv - 5, SeqNum(0), Flags::SYN, 0),
        PeerSeg::SynHigher => (rcv + 100_000, SeqNum(0), Flags::SYN, 0),
        PeerSeg::AckTooNew => (rcv, nxt + 1000, Flags::ACK, 0),
        PeerSeg::Garbage(seq, ack, flags, len) => (
            SeqNum(seq),
            SeqNum(ack),
            Flags::from_bits(flags),
            u32::from(len) % 3000,
        ),
    };
    Segment {
        seq,
        ack,
        flags,
        len,
        window: 65535,
    }
}

/// What a walk observed.
#[derive(Default)]
pub struct Observed {
    pub transitions: Vec<(State, State, Trigger)>,
}

/// Apply one action; returns the clock.
pub fn apply(c: &mut Connection, now: &mut Duration, a: Action, seen: &mut Observed) {
    match a {
        Action::OpenPassive => {
            let _ = c.open_passive();
        }
        Action::OpenActive => {
            let _ = c.open_active(*now);
        }
        Action::Send(n) => {
            let _ = c.send(*now, n);
        }
        Action::Read => {
            let _ = c.read(u32::MAX);
        }
        Action::ShutdownWrite => {
            let _ = c.shutdown_write(*now);
        }
        Action::Close => {
            let _ = c.close(*now);
        }
        Action::Abort => {
            let _ = c.abort(*now);
        }
        Action::LingerZero => c.set_linger_zero(true),
        Action::Advance(ms) => {
            let until = *now + Duration::from_millis(u64::from(ms));
            while let Some(t) = c.poll_timeout() {
                if t > until {
                    break;
                }
                *now = (*now).max(t);
                c.handle_timeout(*now);
                drain(c, *now, seen);
            }
            *now = until;
        }
        Action::Exhaust => {
            for _ in 0..40 {
                let Some(t) = c.poll_timeout() else { break };
                *now = (*now).max(t);
                c.handle_timeout(*now);
                drain(c, *now, seen);
            }
        }
        Action::FireTimer => {
            if let Some(t) = c.poll_timeout() {
                *now = (*now).max(t);
                c.handle_timeout(*now);
            }
        }
        Action::Peer(p) => {
            let seg = peer_segment(c, p);
            c.handle_segment(*now, seg);
        }
    }
    drain(c, *now, seen);
}

fn drain(c: &mut Connection, now: Duration, seen: &mut Observed) {
    while c.poll_transmit(now).is_some() {}
    while let Some(e) = c.poll_event() {
        if let Event::StateChanged { from, to, trigger } = e {
            seen.transitions.push((from, to, trigger));
        }
    }
}
