//! The eleven connection states of RFC 9293 §3.3.2, and every spelling users meet.

use std::fmt;
use std::str::FromStr;

/// A TCP connection state (RFC 9293 §3.3.2, Figure 5).
///
/// `Display` prints the netstat/kernel spelling (`TIME_WAIT`, `FIN_WAIT_1`, `SYN_RECV`), the
/// one used in tables and JSON. [`State::rfc_name`] and [`State::ss_name`] give the others;
/// [`FromStr`] accepts all of them, case-insensitively, plus the kernel's `TCP_*` names and the
/// numeric codes of `include/net/tcp_states.h`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum State {
    /// No connection (no TCB).
    Closed,
    /// Waiting for a connection request from any remote TCP.
    Listen,
    /// SYN sent, waiting for a matching SYN.
    SynSent,
    /// SYN received and SYN sent, waiting for the ACK of our SYN.
    SynReceived,
    /// Open connection; data flows both ways.
    Established,
    /// We closed (FIN sent); waiting for its ACK or the peer's FIN.
    FinWait1,
    /// Our FIN is acknowledged; waiting for the peer's FIN.
    FinWait2,
    /// The peer closed (its FIN received); waiting for our application to close.
    CloseWait,
    /// Both sides sent FIN, ours not yet acknowledged (simultaneous close).
    Closing,
    /// The peer closed first and we then closed; waiting for the ACK of our FIN.
    LastAck,
    /// We closed first and the close completed; waiting 2·MSL before forgetting the connection.
    TimeWait,
}

/// An unknown state spelling.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseStateError {
    /// What was given.
    pub input: String,
}

// Hand-written rather than thiserror: tcpstate-fsm has no dependencies beyond std.
impl fmt::Display for ParseStateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "unknown TCP state {:?}: expected one of CLOSED, LISTEN, SYN_SENT, SYN_RECV, \
             ESTABLISHED, FIN_WAIT_1, FIN_WAIT_2, CLOSE_WAIT, CLOSING, LAST_ACK, TIME_WAIT \
             (RFC, ss and kernel spellings and kernel codes 1-11 are accepted)",
            self.input
        )
    }
}

impl std::error::Error for ParseStateError {}

impl State {
    /// All eleven states, in the order of RFC 9293 §3.3.2.
    pub const ALL: [State; 11] = [
        State::Closed,
        State::Listen,
        State::SynSent,
        State::SynReceived,
        State::Established,
        State::FinWait1,
        State::FinWait2,
        State::CloseWait,
        State::Closing,
        State::LastAck,
        State::TimeWait,
    ];

    /// netstat / kernel spelling, used for display and JSON: `TIME_WAIT`, `FIN_WAIT_1`, `SYN_RECV`.
    pub fn name(self) -> &'static str {
        match self {
            State::Closed => "CLOSED",
            State::Listen => "LISTEN",
            State::SynSent => "SYN_SENT",
            State::SynReceived => "SYN_RECV",
            State::Established => "ESTABLISHED",
            State::FinWait1 => "FIN_WAIT_1",
            State::FinWait2 => "FIN_WAIT_2",
            State::CloseWait => "CLOSE_WAIT",
            State::Closing => "CLOSING",
            State::LastAck => "LAST_ACK",
            State::TimeWait => "TIME_WAIT",
        }
    }

    /// RFC 9293 spelling: `TIME-WAIT`, `SYN-RECEIVED`.
    pub fn rfc_name(self) -> &'static str {
        match self {
            State::Closed => "CLOSED",
            State::Listen => "LISTEN",
            State::SynSent => "SYN-SENT",
            State::SynReceived => "SYN-RECEIVED",
            State::Established => "ESTABLISHED",
            State::FinWait1 => "FIN-WAIT-1",
            State::FinWait2 => "FIN-WAIT-2",
            State::CloseWait => "CLOSE-WAIT",
            State::Closing => "CLOSING",
            State::LastAck => "LAST-ACK",
            State::TimeWait => "TIME-WAIT",
        }
    }

    /// `ss` spelling (`sstate_name` in iproute2's misc/ss.c): `ESTAB`, `SYN-RECV`, `UNCONN`.
    pub fn ss_name(self) -> &'static str {
        match self {
            State::Closed => "UNCONN",
            State::Listen => "LISTEN",
            State::SynSent => "SYN-SENT",
            State::SynReceived => "SYN-RECV",
            State::Established => "ESTAB",
            State::FinWait1 => "FIN-WAIT-1",
            State::FinWait2 => "FIN-WAIT-2",
            State::CloseWait => "CLOSE-WAIT",
            State::Closing => "CLOSING",
            State::LastAck => "LAST-ACK",
            State::TimeWait => "TIME-WAIT",
        }
    }

    /// Kernel enum name (`include/net/tcp_states.h`): `TCP_TIME_WAIT`, `TCP_CLOSE`.
    pub fn kernel_name(self) -> &'static str {
        match self {
            State::Closed => "TCP_CLOSE",
            State::Listen => "TCP_LISTEN",
            State::SynSent => "TCP_SYN_SENT",
            State::SynReceived => "TCP_SYN_RECV",
            State::Established => "TCP_ESTABLISHED",
            State::FinWait1 => "TCP_FIN_WAIT1",
            State::FinWait2 => "TCP_FIN_WAIT2",
            State::CloseWait => "TCP_CLOSE_WAIT",
            State::Closing => "TCP_CLOSING",
            State::LastAck => "TCP_LAST_ACK",
            State::TimeWait => "TCP_TIME_WAIT",
        }
    }

    /// Numeric code of `include/net/tcp_states.h` (as in /proc/net/tcp and sock_diag).
    pub fn kernel_code(self) -> u8 {
        match self {
            State::Established => 1,
            State::SynSent => 2,
            State::SynReceived => 3,
            State::FinWait1 => 4,
            State::FinWait2 => 5,
            State::TimeWait => 6,
            State::Closed => 7,
            State::CloseWait => 8,
            State::LastAck => 9,
            State::Listen => 10,
            State::Closing => 11,
        }
    }

    /// The state for a kernel code. `TCP_NEW_SYN_RECV` (12, a request socket) is a
    /// SYN_RECV as far as connection management goes (ss prints it as `SYN-RECV`);
    /// `TCP_BOUND_INACTIVE` (13, bound but never connected) is CLOSED.
    pub fn from_kernel_code(code: u8) -> Result<State, ParseStateError> {
        Ok(match code {
            1 => State::Established,
            2 => State::SynSent,
            3 | 12 => State::SynReceived,
            4 => State::FinWait1,
            5 => State::FinWait2,
            6 => State::TimeWait,
            7 | 13 => State::Closed,
            8 => State::CloseWait,
            9 => State::LastAck,
            10 => State::Listen,
            11 => State::Closing,
            _ => {
                return Err(ParseStateError {
                    input: code.to_string(),
                })
            }
        })
    }

    /// Synchronized states (RFC 9293 §3.5.2): ESTABLISHED and everything after it.
    pub fn is_synchronized(self) -> bool {
        !matches!(
            self,
            State::Closed | State::Listen | State::SynSent | State::SynReceived
        )
    }

    /// States in which we have sent our FIN (or are about to).
    pub fn has_closed_send_side(self) -> bool {
        matches!(
            self,
            State::FinWait1 | State::FinWait2 | State::Closing | State::LastAck | State::TimeWait
        )
    }

    /// States in which the peer's FIN has been received.
    pub fn has_peer_closed(self) -> bool {
        matches!(
            self,
            State::CloseWait | State::Closing | State::LastAck | State::TimeWait
        )
    }
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.name())
    }
}

impl FromStr for State {
    type Err = ParseStateError;

    fn from_str(s: &str) -> Result<State, ParseStateError> {
        let trimmed = s.trim();
        if let Ok(code) = trimmed.parse::<u8>() {
            return State::from_kernel_code(code);
        }
        // /proc/net/tcp prints the code as two hex digits ("0A" = LISTEN).
        if trimmed.len() == 2 && trimmed.chars().all(|c| c.is_ascii_hexdigit()) {
            if let Ok(code) = u8::from_str_radix(trimmed, 16) {
                return State::from_kernel_code(code);
            }
        }
        // Normalise: upper case, '-' and ' ' to '_', drop a "TCP_" prefix, then drop
        // remaining '_' so FIN_WAIT1, FIN-WAIT-1 and FIN_WAIT_1 all meet.
        let mut norm: String = trimmed
            .to_ascii_uppercase()
            .chars()
            .map(|c| if c == '-' || c == ' ' { '_' } else { c })
            .collect();
        if let Some(rest) = norm.strip_prefix("TCP_") {
            norm = rest.to_string();
        }
        let key: String = norm.chars().filter(|&c| c != '_').collect();
        let state = match key.as_str() {
            "CLOSED" | "CLOSE" | "UNCONN" => State::Closed,
            "LISTEN" => State::Listen,
            "SYNSENT" => State::SynSent,
            "SYNRECV" | "SYNRECEIVED" | "SYNRCVD" | "NEWSYNRECV" => State::SynReceived,
            "ESTABLISHED" | "ESTAB" => State::Established,
            "FINWAIT1" => State::FinWait1,
            "FINWAIT2" => State::FinWait2,
            "CLOSEWAIT" => State::CloseWait,
            "CLOSING" => State::Closing,
            "LASTACK" => State::LastAck,
            "TIMEWAIT" => State::TimeWait,
            _ => {
                return Err(ParseStateError {
                    input: s.to_string(),
                })
            }
        };
        Ok(state)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_spelling_round_trips() {
        for s in State::ALL {
            for spelled in [
                s.name(),
                s.rfc_name(),
                s.ss_name(),
                s.kernel_name(),
                &s.kernel_code().to_string(),
                &s.name().to_lowercase(),
            ] {
                assert_eq!(spelled.parse::<State>(), Ok(s), "{spelled}");
            }
        }
    }

    #[test]
    fn user_spellings() {
        assert_eq!("TIME-WAIT".parse(), Ok(State::TimeWait));
        assert_eq!("time_wait".parse(), Ok(State::TimeWait));
        assert_eq!("FIN_WAIT1".parse(), Ok(State::FinWait1));
        assert_eq!("FIN-WAIT-1".parse(), Ok(State::FinWait1));
        assert_eq!("SYN-RECV".parse(), Ok(State::SynReceived));
        assert_eq!("SYN_RECEIVED".parse(), Ok(State::SynReceived));
        assert_eq!("TCP_TIME_WAIT".parse(), Ok(State::TimeWait));
        assert_eq!("06".parse(), Ok(State::TimeWait));
        assert_eq!("0A".parse(), Ok(State::Listen));
        assert_eq!("estab".parse(), Ok(State::Established));
    }

    #[test]
    fn unknown_spelling_is_a_clear_error() {
        let err = "TIME_WIAT".parse::<State>().unwrap_err();
        assert!(err.to_string().contains("TIME_WIAT"));
        assert!("0".parse::<State>().is_err());
        assert!("14".parse::<State>().is_err());
        assert!("".parse::<State>().is_err());
    }

    #[test]
    fn kernel_codes_match_tcp_states_h() {
        assert_eq!(State::Established.kernel_code(), 1);
        assert_eq!(State::TimeWait.kernel_code(), 6);
        assert_eq!(State::Closing.kernel_code(), 11);
        assert_eq!(State::from_kernel_code(12), Ok(State::SynReceived));
    }
}
