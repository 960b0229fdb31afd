//! What makes a connection change state: a user call, an arriving segment, or a timer.
//!
//! One vocabulary for the transition table, the machine's events and the timelines, so that
//! a test can prove the machine only ever makes transitions the table lists.

use std::fmt;

/// A user call on a connection (RFC 9293 §3.10.1–3.10.6), without its arguments.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum CallKind {
    /// OPEN passive: `listen()`.
    OpenPassive,
    /// OPEN active: `connect()` (or SEND in LISTEN with a remote given).
    OpenActive,
    /// CLOSE: `close()`, the application is done with the connection.
    Close,
    /// `shutdown(SHUT_WR)`: a half-close, we send no more but keep reading.
    ShutdownWrite,
    /// ABORT (RFC 9293 §3.10.5). `close()` with `SO_LINGER {1,0}` is an abort too
    /// (`tcp_disconnect`): RST where `tcp_need_reset` says so.
    Abort,
}

/// What kind of arriving segment caused a transition.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SegmentKind {
    /// A SYN without ACK.
    Syn,
    /// A SYN+ACK acknowledging our SYN.
    SynAck,
    /// An ACK acknowledging our SYN.
    AckOfSyn,
    /// An ACK acknowledging our FIN.
    AckOfFin,
    /// A FIN (not acknowledging our FIN, or we sent none).
    Fin,
    /// An acceptable RST.
    Rst,
    /// New data after our application closed (Linux: answered with RST).
    DataAfterClose,
}

/// A timer of the connection (RFC 9293 §3.10.8 and Linux's extras).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TimerKind {
    /// Retransmission of SYN, SYN-ACK, data or FIN (RFC 6298), with backoff and a retry limit.
    Retransmission,
    /// The 2·MSL TIME_WAIT timer (Linux: `TCP_TIMEWAIT_LEN`, 60 s).
    TimeWait,
    /// Linux's orphaned FIN_WAIT_2 timeout (`tcp_fin_timeout`).
    FinWait2,
    /// The user timeout (RFC 9293 §3.10.8; Linux `TCP_USER_TIMEOUT`).
    UserTimeout,
}

/// What caused a transition.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Trigger {
    /// A user call.
    Call(CallKind),
    /// An arriving segment.
    Segment(SegmentKind),
    /// A timer expiring.
    Timer(TimerKind),
}

impl CallKind {
    /// Label as on the classic diagram.
    pub fn label(self) -> &'static str {
        match self {
            CallKind::OpenPassive => "passive OPEN",
            CallKind::OpenActive => "active OPEN",
            CallKind::Close => "CLOSE",
            CallKind::ShutdownWrite => "shutdown(WR)",
            CallKind::Abort => "ABORT",
        }
    }
}

impl SegmentKind {
    /// Label as on the classic diagram.
    pub fn label(self) -> &'static str {
        match self {
            SegmentKind::Syn => "rcv SYN",
            SegmentKind::SynAck => "rcv SYN,ACK",
            SegmentKind::AckOfSyn => "rcv ACK of SYN",
            SegmentKind::AckOfFin => "rcv ACK of FIN",
            SegmentKind::Fin => "rcv FIN",
            SegmentKind::Rst => "rcv RST",
            SegmentKind::DataAfterClose => "rcv data after close",
        }
    }
}

impl TimerKind {
    /// Label as on the classic diagram.
    pub fn label(self) -> &'static str {
        match self {
            TimerKind::Retransmission => "retransmission limit",
            TimerKind::TimeWait => "2MSL timeout",
            TimerKind::FinWait2 => "FIN_WAIT_2 timeout",
            TimerKind::UserTimeout => "user timeout",
        }
    }

    /// snake_case name for JSON.
    pub fn name(self) -> &'static str {
        match self {
            TimerKind::Retransmission => "retransmission",
            TimerKind::TimeWait => "time_wait",
            TimerKind::FinWait2 => "fin_wait_2",
            TimerKind::UserTimeout => "user_timeout",
        }
    }
}

impl Trigger {
    /// Label as on the classic diagram: `CLOSE`, `rcv FIN`, `2MSL timeout`.
    pub fn label(self) -> &'static str {
        match self {
            Trigger::Call(c) => c.label(),
            Trigger::Segment(s) => s.label(),
            Trigger::Timer(t) => t.label(),
        }
    }
}

impl fmt::Display for Trigger {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.label())
    }
}
