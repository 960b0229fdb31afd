//! The transition table as data: every state change the machine can make.
//!
//! The diagram is drawn from this table, `explain` lists a state's ways in and out from it,
//! and a test proves that the machine makes exactly the transitions listed here (and that
//! every row is exercised).

use crate::{CallKind, SegmentKind, State, TimerKind, Trigger};

/// Which part of the connection's life a transition belongs to (the colours and weights of
/// the classic diagram).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Path {
    /// The client's side of the three-way handshake.
    ActiveOpen,
    /// The server's side of the three-way handshake.
    PassiveOpen,
    /// The side that closes first (ends in TIME_WAIT).
    ActiveClose,
    /// The side whose peer closed first (goes through CLOSE_WAIT).
    PassiveClose,
    /// Simultaneous open or simultaneous close.
    Simultaneous,
    /// A reset: sent, received, or an abort by the application.
    Abort,
    /// A timer ending the connection.
    Timeout,
}

impl Path {
    /// snake_case name.
    pub fn name(self) -> &'static str {
        match self {
            Path::ActiveOpen => "active_open",
            Path::PassiveOpen => "passive_open",
            Path::ActiveClose => "active_close",
            Path::PassiveClose => "passive_close",
            Path::Simultaneous => "simultaneous",
            Path::Abort => "abort",
            Path::Timeout => "timeout",
        }
    }
}

/// Which profiles make a transition.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Applies {
    /// Both RFC 9293 and Linux.
    Both,
    /// Only the RFC 9293 profile.
    RfcOnly,
    /// Only the Linux profile (a kernel behaviour beyond or against the RFC text).
    LinuxOnly,
}

/// One row of the transition table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transition {
    /// State before.
    pub from: State,
    /// State after.
    pub to: State,
    /// What causes it.
    pub trigger: Trigger,
    /// Further condition, empty if none ("unread data", "passive origin").
    pub condition: &'static str,
    /// What is sent, empty if nothing ("SYN", "ACK", "RST").
    pub sends: &'static str,
    /// Which path it lies on.
    pub path: Path,
    /// On the normal open/close paths (drawn bold).
    pub normal: bool,
    /// Which profiles make it.
    pub applies: Applies,
    /// Where the behaviour comes from: an RFC section or a kernel function.
    pub source: &'static str,
}

impl Transition {
    /// `event [condition] / action`, as the classic diagram labels edges.
    pub fn label(&self) -> String {
        let mut s = self.trigger.label().to_string();
        if !self.condition.is_empty() {
            s.push_str(" [");
            s.push_str(self.condition);
            s.push(']');
        }
        if !self.sends.is_empty() {
            s.push_str(" / ");
            s.push_str(self.sends);
        }
        s
    }

    /// Whether the given profile can make this transition.
    pub fn applies_to_linux(&self, linux: bool) -> bool {
        match self.applies {
            Applies::Both => true,
            Applies::RfcOnly => !linux,
            Applies::LinuxOnly => linux,
        }
    }
}

use Applies::*;
use CallKind as C;
use Path::*;
use SegmentKind as S;
use State::*;
use TimerKind as T;

#[allow(clippy::too_many_arguments)]
const fn row(
    from: State,
    to: State,
    trigger: Trigger,
    condition: &'static str,
    sends: &'static str,
    path: Path,
    normal: bool,
    applies: Applies,
    source: &'static str,
) -> Transition {
    Transition {
        from,
        to,
        trigger,
        condition,
        sends,
        path,
        normal,
        applies,
        source,
    }
}

const fn call(c: CallKind) -> Trigger {
    Trigger::Call(c)
}
const fn rcv(s: SegmentKind) -> Trigger {
    Trigger::Segment(s)
}
const fn timer(t: TimerKind) -> Trigger {
    Trigger::Timer(t)
}

/// Every transition, grouped by the state it leaves.
#[rustfmt::skip]
pub const TRANSITIONS: &[Transition] = &[
    // CLOSED — RFC 9293 §3.10.1
    row(Closed, Listen, call(C::OpenPassive), "", "", PassiveOpen, true, Both, "RFC 9293 §3.10.1"),
    row(Closed, SynSent, call(C::OpenActive), "", "SYN", ActiveOpen, true, Both, "RFC 9293 §3.10.1"),
    // LISTEN — §3.10.7.2, §3.10.4
    row(Listen, SynReceived, rcv(S::Syn), "", "SYN,ACK", PassiveOpen, true, Both, "RFC 9293 §3.10.7.2"),
    row(Listen, SynSent, call(C::OpenActive), "SEND with remote", "SYN", ActiveOpen, false, RfcOnly, "RFC 9293 §3.10.2"),
    row(Listen, Closed, call(C::Close), "", "", PassiveOpen, false, Both, "RFC 9293 §3.10.4"),
    row(Listen, Closed, call(C::Abort), "", "", Abort, false, Both, "RFC 9293 §3.10.5"),
    // SYN_SENT — §3.10.7.3
    row(SynSent, Established, rcv(S::SynAck), "", "ACK", ActiveOpen, true, Both, "RFC 9293 §3.10.7.3"),
    row(SynSent, SynReceived, rcv(S::Syn), "simultaneous open", "SYN,ACK", Simultaneous, false, Both, "RFC 9293 §3.10.7.3"),
    row(SynSent, Closed, rcv(S::Rst), "ACK acceptable: refused", "", Abort, false, Both, "RFC 9293 §3.10.7.3"),
    row(SynSent, Closed, call(C::Close), "", "", Abort, false, Both, "RFC 9293 §3.10.4"),
    row(SynSent, Closed, call(C::Abort), "", "", Abort, false, Both, "RFC 9293 §3.10.5"),
    row(SynSent, Closed, call(C::ShutdownWrite), "", "", Abort, false, Both, "inet_shutdown → tcp_disconnect"),
    row(SynSent, Closed, timer(T::Retransmission), "SYN retries exhausted", "", Timeout, false, Both, "RFC 9293 §3.8.3; tcp_write_timeout"),
    row(SynSent, Closed, timer(T::UserTimeout), "", "", Timeout, false, Both, "RFC 9293 §3.10.8"),
    // SYN_RECEIVED — §3.10.7.4
    row(SynReceived, Established, rcv(S::AckOfSyn), "", "", PassiveOpen, true, Both, "RFC 9293 §3.10.7.4 (fifth check)"),
    row(SynReceived, Listen, rcv(S::Rst), "passive origin", "", PassiveOpen, false, Both, "RFC 9293 §3.10.7.4 (second check)"),
    row(SynReceived, Listen, rcv(S::Syn), "passive origin, in window", "", PassiveOpen, false, Both, "RFC 9293 §3.10.7.4 (fourth check)"),
    row(SynReceived, Closed, rcv(S::Rst), "active origin: refused", "", Abort, false, Both, "RFC 9293 §3.10.7.4 (second check)"),
    row(SynReceived, FinWait1, call(C::Close), "", "FIN", ActiveClose, false, Both, "RFC 9293 §3.10.4; tcp_close_state"),
    row(SynReceived, FinWait1, call(C::ShutdownWrite), "", "FIN", ActiveClose, false, Both, "tcp_shutdown; tcp_close_state"),
    row(SynReceived, Closed, call(C::Abort), "", "RST", Abort, false, Both, "RFC 9293 §3.10.5"),
    row(SynReceived, Listen, timer(T::Retransmission), "passive origin, SYN,ACK retries exhausted", "", Timeout, false, Both, "RFC 9293 §3.8.3; inet_csk_reqsk_queue_drop"),
    row(SynReceived, Closed, timer(T::Retransmission), "active origin, retries exhausted", "", Timeout, false, Both, "RFC 9293 §3.8.3"),
    row(SynReceived, Closed, timer(T::UserTimeout), "", "", Timeout, false, Both, "RFC 9293 §3.10.8"),
    row(TimeWait, SynReceived, rcv(S::Syn), "SEG.SEQ > RCV.NXT, passive origin", "SYN,ACK (ISN = SND.NXT + 65537)", PassiveOpen, false, LinuxOnly, "tcp_timewait_state_process (TCP_TW_SYN); RFC 9293 MAY-2"),
    // ESTABLISHED
    row(Established, FinWait1, call(C::Close), "", "FIN", ActiveClose, true, Both, "RFC 9293 §3.10.4"),
    row(Established, FinWait1, call(C::ShutdownWrite), "", "FIN", ActiveClose, false, Both, "RFC 9293 §3.6.1; tcp_shutdown"),
    row(Established, CloseWait, rcv(S::Fin), "", "ACK", PassiveClose, true, Both, "RFC 9293 §3.10.7.4 (eighth check); tcp_fin"),
    row(Established, Closed, call(C::Close), "unread data", "RST", Abort, false, LinuxOnly, "__tcp_close (RFC 2525 §2.17)"),
    row(Established, Closed, call(C::Abort), "", "RST", Abort, false, Both, "RFC 9293 §3.10.5"),
    row(Established, Closed, rcv(S::Rst), "SEG.SEQ = RCV.NXT", "", Abort, false, Both, "RFC 9293 §3.10.7.4; RFC 5961 §3"),
    row(Established, Closed, timer(T::Retransmission), "data retries exhausted", "", Timeout, false, Both, "RFC 9293 §3.8.3; tcp_write_timeout"),
    row(Established, Closed, timer(T::UserTimeout), "", "", Timeout, false, Both, "RFC 9293 §3.10.8"),
    // FIN_WAIT_1
    row(FinWait1, FinWait2, rcv(S::AckOfFin), "", "", ActiveClose, true, Both, "RFC 9293 §3.10.7.4 (fifth check)"),
    row(FinWait1, Closing, rcv(S::Fin), "our FIN not yet acked", "ACK", Simultaneous, false, Both, "RFC 9293 §3.10.7.4 (eighth check); tcp_fin"),
    row(FinWait1, Closed, rcv(S::AckOfFin), "orphan, no TIME_WAIT bucket", "", ActiveClose, false, LinuxOnly, "tcp_time_wait (inet_twsk_alloc fails: TCPTimeWaitOverflow)"),
    row(FinWait1, Closed, call(C::Close), "unread data", "RST", Abort, false, LinuxOnly, "__tcp_close (RFC 2525 §2.17)"),
    row(FinWait1, Closed, rcv(S::DataAfterClose), "after close()", "RST", Abort, false, LinuxOnly, "tcp_rcv_state_process (TCPAbortOnData); RFC 1122 §4.2.2.13"),
    row(FinWait1, Closed, rcv(S::Rst), "SEG.SEQ = RCV.NXT", "", Abort, false, Both, "RFC 9293 §3.10.7.4"),
    row(FinWait1, Closed, call(C::Abort), "", "RST", Abort, false, Both, "RFC 9293 §3.10.5"),
    row(FinWait1, Closed, timer(T::Retransmission), "FIN retries exhausted", "", Timeout, false, Both, "RFC 9293 §3.8.3; tcp_orphan_retries"),
    row(FinWait1, Closed, timer(T::UserTimeout), "", "", Timeout, false, Both, "RFC 9293 §3.10.8"),
    // FIN_WAIT_2
    row(FinWait2, TimeWait, rcv(S::Fin), "", "ACK", ActiveClose, true, Both, "RFC 9293 §3.10.7.4 (eighth check); tcp_fin"),
    row(FinWait2, Closed, rcv(S::Fin), "no TIME_WAIT bucket", "ACK", ActiveClose, false, LinuxOnly, "tcp_time_wait (inet_twsk_alloc fails: TCPTimeWaitOverflow)"),
    row(FinWait2, Closed, timer(T::FinWait2), "orphan: tcp_fin_timeout", "", Timeout, false, LinuxOnly, "tcp_fin_time; tw substate FIN_WAIT2 expiry"),
    row(FinWait2, Closed, rcv(S::DataAfterClose), "after close()", "RST", Abort, false, LinuxOnly, "tcp_timewait_state_process (TCP_TW_RST)"),
    row(FinWait2, Closed, rcv(S::Syn), "orphan, SEG.SEQ >= RCV.NXT", "RST", Abort, false, LinuxOnly, "tcp_timewait_state_process (TCP_TW_RST)"),
    row(FinWait2, Closed, call(C::Close), "unread data", "RST", Abort, false, LinuxOnly, "__tcp_close (RFC 2525 §2.17)"),
    row(FinWait2, Closed, rcv(S::Rst), "in window", "", Abort, false, Both, "RFC 9293 §3.10.7.4"),
    row(FinWait2, Closed, call(C::Abort), "", "RST", Abort, false, Both, "RFC 9293 §3.10.5"),
    // CLOSE_WAIT
    row(CloseWait, LastAck, call(C::Close), "", "FIN", PassiveClose, true, Both, "RFC 9293 §3.10.4"),
    row(CloseWait, LastAck, call(C::ShutdownWrite), "", "FIN", PassiveClose, false, Both, "RFC 9293 §3.6.1; tcp_shutdown"),
    row(CloseWait, Closed, call(C::Close), "unread data", "RST", Abort, false, LinuxOnly, "__tcp_close (RFC 2525 §2.17)"),
    row(CloseWait, Closed, call(C::Abort), "", "RST", Abort, false, Both, "RFC 9293 §3.10.5"),
    row(CloseWait, Closed, rcv(S::Rst), "SEG.SEQ = RCV.NXT", "", Abort, false, Both, "RFC 9293 §3.10.7.4"),
    row(CloseWait, Closed, timer(T::Retransmission), "data retries exhausted", "", Timeout, false, Both, "RFC 9293 §3.8.3"),
    row(CloseWait, Closed, timer(T::UserTimeout), "", "", Timeout, false, Both, "RFC 9293 §3.10.8"),
    // CLOSING
    row(Closing, TimeWait, rcv(S::AckOfFin), "", "", Simultaneous, false, Both, "RFC 9293 §3.10.7.4 (fifth check)"),
    row(Closing, Closed, rcv(S::AckOfFin), "no TIME_WAIT bucket", "", Simultaneous, false, LinuxOnly, "tcp_time_wait (inet_twsk_alloc fails: TCPTimeWaitOverflow)"),
    row(Closing, Closed, rcv(S::Rst), "SEG.SEQ = RCV.NXT", "", Abort, false, Both, "RFC 9293 §3.10.7.4"),
    row(Closing, Closed, call(C::Abort), "", "", Abort, false, Both, "RFC 9293 §3.10.5"),
    row(Closing, Closed, call(C::Close), "unread data", "RST", Abort, false, LinuxOnly, "__tcp_close (RFC 2525 §2.17)"),
    row(Closing, Closed, timer(T::UserTimeout), "", "", Timeout, false, Both, "RFC 9293 §3.10.8"),
    row(Closing, Closed, timer(T::Retransmission), "FIN retries exhausted", "", Timeout, false, Both, "RFC 9293 §3.8.3"),
    // LAST_ACK
    row(LastAck, Closed, rcv(S::AckOfFin), "", "", PassiveClose, true, Both, "RFC 9293 §3.10.7.4 (fifth check)"),
    row(LastAck, Closed, rcv(S::Rst), "SEG.SEQ = RCV.NXT", "", Abort, false, Both, "RFC 9293 §3.10.7.4"),
    row(LastAck, Closed, call(C::Abort), "", "", Abort, false, Both, "RFC 9293 §3.10.5"),
    row(LastAck, Closed, call(C::Close), "unread data", "RST", Abort, false, LinuxOnly, "__tcp_close (RFC 2525 §2.17)"),
    row(LastAck, Closed, timer(T::UserTimeout), "", "", Timeout, false, Both, "RFC 9293 §3.10.8"),
    row(LastAck, Closed, timer(T::Retransmission), "FIN retries exhausted", "", Timeout, false, Both, "RFC 9293 §3.8.3"),
    // TIME_WAIT
    row(TimeWait, Closed, timer(T::TimeWait), "", "", ActiveClose, true, Both, "RFC 9293 §3.10.8; TCP_TIMEWAIT_LEN"),
    row(TimeWait, Closed, rcv(S::Rst), "SEG.SEQ = RCV.NXT, no RFC 1337", "", Abort, false, Both, "RFC 9293 §3.10.7.4; tcp_timewait_state_process (assassination)"),
    row(TimeWait, Closed, call(C::Abort), "", "", Abort, false, Both, "RFC 9293 §3.10.5"),
];

/// The rows leaving `state`.
pub fn transitions_from(state: State) -> impl Iterator<Item = &'static Transition> {
    TRANSITIONS.iter().filter(move |t| t.from == state)
}

/// The rows entering `state` (self-loops excluded).
pub fn transitions_into(state: State) -> impl Iterator<Item = &'static Transition> {
    TRANSITIONS
        .iter()
        .filter(move |t| t.to == state && t.from != state)
}

/// The row for a (from, to, trigger) triple, if the table has one.
pub fn lookup(from: State, to: State, trigger: Trigger) -> Option<&'static Transition> {
    TRANSITIONS
        .iter()
        .find(|t| t.from == from && t.to == to && t.trigger == trigger)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_duplicate_keys_and_every_state_appears() {
        for (i, a) in TRANSITIONS.iter().enumerate() {
            for b in &TRANSITIONS[i + 1..] {
                assert!(
                    !(a.from == b.from && a.to == b.to && a.trigger == b.trigger),
                    "duplicate row {a:?}"
                );
            }
        }
        for s in State::ALL {
            assert!(
                TRANSITIONS.iter().any(|t| t.from == s || t.to == s),
                "{s} has no transition"
            );
        }
    }
}
