//! What each state means to a network programmer: the texts behind `tcpstate explain` and
//! the advice in diagnoses. Ways in and out come from the transition table, not from here.

use crate::State;

/// The explanation of one state.
#[derive(Debug, Clone, Copy)]
pub struct Explanation {
    /// The state.
    pub state: State,
    /// What the state means, in one or two sentences.
    pub meaning: &'static str,
    /// Which end of a connection is in it.
    pub who: &'static str,
    /// How long it lasts on Linux, and what bounds it.
    pub linux_duration: &'static str,
    /// What many sockets in this state mean on a host.
    pub many_sockets: &'static str,
    /// What to do about it.
    pub what_to_do: &'static str,
    /// The full story, for the states people misunderstand (TIME_WAIT, CLOSE_WAIT).
    pub story: &'static [&'static str],
}

/// The explanation of `state`.
pub fn explain(state: State) -> &'static Explanation {
    EXPLANATIONS
        .iter()
        .find(|e| e.state == state)
        .expect("every state has an explanation")
}

/// Every explanation, in RFC 9293 order.
pub const EXPLANATIONS: &[Explanation] = &[
    Explanation {
        state: State::Closed,
        meaning: "No connection: there is no TCB. A segment arriving for it is answered with RST (RFC 9293 §3.10.7.1).",
        who: "Any socket before connect()/listen() and after the connection ended.",
        linux_duration: "Not a real state on Linux: the socket is destroyed (`ss` shows nothing; the tracepoint shows CLOSE).",
        many_sockets: "Unconnected sockets (ss UNCONN) are harmless unless their count grows: then something creates sockets and never connects or closes them.",
        what_to_do: "Nothing.",
        story: &[],
    },
    Explanation {
        state: State::Listen,
        meaning: "A server socket waiting for connection requests (SYNs) on a port.",
        who: "The server, after listen().",
        linux_duration: "As long as the program keeps the listening socket open.",
        many_sockets: "One per listening port (per SO_REUSEPORT socket). Recv-Q shows the accept queue: if it is near Send-Q (the backlog), the program accepts too slowly and SYNs are dropped.",
        what_to_do: "Watch the accept queue (Recv-Q vs Send-Q) and ListenOverflows/ListenDrops in /proc/net/netstat.",
        story: &[],
    },
    Explanation {
        state: State::SynSent,
        meaning: "connect() sent a SYN and waits for the SYN,ACK.",
        who: "The client (active opener).",
        linux_duration: "Normally one round trip. Without an answer the SYN is retransmitted tcp_syn_retries times (default 6: 1+2+4+8+16+32+64 s ≈ 127 s) before ETIMEDOUT.",
        many_sockets: "Many SYN_SENT sockets mean the peers do not answer: a dead server, a firewall dropping SYNs, or a routing problem.",
        what_to_do: "Check reachability of the remote addresses shown; lower connect timeouts in the application.",
        story: &[],
    },
    Explanation {
        state: State::SynReceived,
        meaning: "A SYN arrived and a SYN,ACK was sent; waiting for the final ACK of the handshake.",
        who: "The server (passive opener), or both sides of a simultaneous open.",
        linux_duration: "One round trip. Linux keeps these as request sockets (ss SYN-RECV) and retransmits the SYN,ACK tcp_synack_retries times (default 5, ≈ 63 s).",
        many_sockets: "Many SYN_RECV sockets mean clients do not complete handshakes: a SYN flood, or return traffic lost. SYN cookies take over when the queue fills.",
        what_to_do: "Check TCPReqQFullDrop / SyncookiesSent counters; consider tcp_syncookies and the listen backlog.",
        story: &[],
    },
    Explanation {
        state: State::Established,
        meaning: "The connection is open: data flows both ways.",
        who: "Both ends.",
        linux_duration: "Unbounded: until one side closes, or keepalive / TCP_USER_TIMEOUT / retransmission limits end a dead connection.",
        many_sockets: "Normal for busy servers. Watch Recv-Q (data the program has not read) and Send-Q (data the peer has not acknowledged).",
        what_to_do: "Nothing, unless queues stay full: a full Recv-Q means a slow reader, a full Send-Q a slow or dead peer.",
        story: &[],
    },
    Explanation {
        state: State::FinWait1,
        meaning: "We closed (close() or shutdown(SHUT_WR)) and sent FIN; waiting for its ACK.",
        who: "The active closer.",
        linux_duration: "One round trip. If the FIN is never acknowledged it is retransmitted; an orphan (after close()) gives up after tcp_orphan_retries (0 means 8).",
        many_sockets: "Many FIN_WAIT_1 sockets mean peers do not acknowledge our FIN: often they advertise a zero window (they stopped reading), or they are gone.",
        what_to_do: "Look at the peers; Send-Q shows data still queued ahead of the FIN.",
        story: &[],
    },
    Explanation {
        state: State::FinWait2,
        meaning: "Our FIN was acknowledged; waiting for the peer's FIN. The connection is half-closed: we may still receive data.",
        who: "The active closer.",
        linux_duration: "After close() (an orphan): tcp_fin_timeout, default 60 s, then the kernel drops it silently (held by a timewait mini-socket, so `ss` shows FIN-WAIT-2 with a timewait timer). After shutdown(SHUT_WR) with the socket still open: unbounded.",
        many_sockets: "Many FIN_WAIT_2 sockets mean the peers received our FIN but their programs never call close(): on the other host those connections sit in CLOSE_WAIT.",
        what_to_do: "Find the program on the peer host that does not close its sockets (`tcpstate` there shows it as a CLOSE_WAIT leak).",
        story: &[],
    },
    Explanation {
        state: State::CloseWait,
        meaning: "The peer closed (its FIN arrived, read() returns 0) and our program has not called close() yet.",
        who: "The passive closer: the end whose peer closed first.",
        linux_duration: "Unbounded. The kernel never ends CLOSE_WAIT by itself: only the program's close() (or an RST from the peer) does.",
        many_sockets: "A leak in the program that owns them: it does not notice end of file, or it forgets close() on some error path. Each one holds a file descriptor and memory until the process exits.",
        what_to_do: "Find the owning process (`tcpstate ls state close-wait`), then the code path that reads EOF (or gets an error) and does not close the socket. Restarting the process frees them; fixing the close() fixes it.",
        story: &[
            "CLOSE_WAIT means: the peer said 'I have nothing more to send' (FIN), our TCP acknowledged it, and now waits for OUR application to say the same. The name is literal: the connection waits for close().",
            "TCP cannot end it on its own. The peer may legitimately keep reading while we send (a half-close), so TCP has no timer here: in RFC 9293 §3.10 the normal way out of CLOSE-WAIT is the application's CLOSE, to LAST-ACK. Linux has no CLOSE_WAIT timer either; only a reset from the peer, keepalive (if the program enabled it) or a retransmission limit on unacknowledged data can end it, and those need a dead or hostile peer.",
            "So a CLOSE_WAIT socket that lasts is always the application's doing: it read end of file (read() returned 0) and did not close the socket, or it never read at all. Many of them are a file-descriptor leak.",
            "On the other host the same connections sit in FIN_WAIT_2 and disappear there after tcp_fin_timeout (60 s), so the peer forgets them long before we do; if our program finally closes, its FIN is then answered with RST.",
            "CLOSE_WAIT and TIME_WAIT never occur at the same end of one connection: CLOSE_WAIT is the end whose peer closed first (the passive closer), TIME_WAIT the end that closed first (the active closer).",
        ],
    },
    Explanation {
        state: State::Closing,
        meaning: "Both sides sent FIN at the same time (simultaneous close): the peer's FIN arrived before the ACK of ours.",
        who: "Both ends of a simultaneous close.",
        linux_duration: "One round trip, then TIME_WAIT on both ends.",
        many_sockets: "Rare. Many CLOSING sockets mean FINs crossing with lost ACKs.",
        what_to_do: "Nothing, usually.",
        story: &[],
    },
    Explanation {
        state: State::LastAck,
        meaning: "The peer closed first, then we closed: our FIN is sent and we wait for its ACK.",
        who: "The passive closer.",
        linux_duration: "One round trip; the FIN is retransmitted until acknowledged or the retry limit.",
        many_sockets: "Many LAST_ACK sockets mean our FINs are not acknowledged: the peer vanished (its FIN_WAIT_2 / TIME_WAIT ended) or packets are lost.",
        what_to_do: "Check the path to the peers.",
        story: &[],
    },
    Explanation {
        state: State::TimeWait,
        meaning: "We closed first and the close completed; the connection is remembered for a while so that the last ACK can be re-sent and old duplicates die.",
        who: "The active closer: the end that called close() first.",
        linux_duration: "Exactly 60 s (TCP_TIMEWAIT_LEN, not tunable); restarted by a retransmitted FIN. RFC 9293 asks 2·MSL = 4 minutes.",
        many_sockets: "Normal on a busy client or on a server that closes first. Each costs a small mini-socket, but on a client each also holds a local port for 60 s: tens of thousands to one destination can exhaust the ephemeral port range.",
        what_to_do: "Usually nothing. If ports run out: reuse connections (keep-alive, pools), let the client close first instead of the server, widen net.ipv4.ip_local_port_range, enable net.ipv4.tcp_tw_reuse for outgoing connections. Do not shorten TIME_WAIT with SO_LINGER {1,0} resets.",
        story: &[
            "TIME_WAIT exists for two reasons (RFC 9293 §3.6.1, MUST-13).",
            "1. To end the connection reliably. The last segment of the close is our ACK of the peer's FIN. If it is lost, the peer (in LAST_ACK) retransmits its FIN. Someone must still be there to ACK it again; without TIME_WAIT the retransmitted FIN meets no connection and is answered with RST, and the peer reports an error for a connection that closed cleanly. (`tcpstate simulate lost-final-ack`)",
            "2. To let old duplicates die. Segments of this connection may still be in the network. If a new connection reused the same four-tuple at once, an old segment could be accepted as data of the new one. Waiting 2·MSL (twice the maximum segment lifetime) guarantees they are gone. (`tcpstate verify --time-wait 0` shows both failures.)",
            "Why the active closer: the side that closes first is the side that sends the last ACK, so it is the one that must be able to repeat it. The passive closer ends on receiving that ACK and needs no wait.",
            "An RST can cut TIME_WAIT short (the RFC 1337 'assassination': an old duplicate provokes an ACK, the peer answers RST). Linux allows this unless net.ipv4.tcp_rfc1337=1. (`tcpstate simulate time-wait-assassination`)",
            "TIME_WAIT and CLOSE_WAIT never occur at the same end of one connection: TIME_WAIT is on the end that closed first, CLOSE_WAIT on the end whose peer closed first.",
            "Linux detail: TIME_WAIT is held by a small timewait mini-socket (struct tcp_timewait_sock) that replaces the full socket, which is why the sock:inet_sock_set_state tracepoint shows FIN_WAIT2 → CLOSE and never TIME_WAIT, while `ss` shows TIME-WAIT with a timewait timer.",
        ],
    },
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_state_is_explained_once() {
        for s in State::ALL {
            assert_eq!(
                EXPLANATIONS.iter().filter(|e| e.state == s).count(),
                1,
                "{s}"
            );
            assert!(!explain(s).meaning.is_empty());
        }
        assert!(!explain(State::TimeWait).story.is_empty());
        assert!(!explain(State::CloseWait).story.is_empty());
    }
}
