//! What a snapshot holds: one [`Socket`] per kernel TCP socket, with what the kernel said
//! about it, and nothing it did not say.

use serde::Serialize;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;
use tcpstate_fsm::State;

/// The kernel timer pending on a socket (`idiag_timer` in `inet_diag_msg`, the `tr` column
/// of /proc/net/tcp). Codes from `inet_sk_diag_fill()` / `get_tcp4_sock()`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TimerKind {
    /// Retransmission (also RACK reordering and tail loss probe): code 1.
    Retransmit,
    /// `sk_timer`: keepalive, or the FIN_WAIT_2 timer of an orphan held as a full socket: code 2.
    Keepalive,
    /// The timewait timer of a minisocket (true TIME_WAIT or orphaned FIN_WAIT_2): code 3.
    TimeWait,
    /// Zero-window probe (persist): code 4.
    Persist,
    /// Delayed ACK: code 5 (newer kernels).
    DelayedAck,
}

impl TimerKind {
    /// The kernel's code; `None` for 0 (no timer) or an unknown code.
    pub fn from_code(code: u8) -> Option<TimerKind> {
        match code {
            1 => Some(TimerKind::Retransmit),
            2 => Some(TimerKind::Keepalive),
            3 => Some(TimerKind::TimeWait),
            4 => Some(TimerKind::Persist),
            5 => Some(TimerKind::DelayedAck),
            _ => None,
        }
    }

    /// The name `ss -o` prints.
    pub fn name(self) -> &'static str {
        match self {
            TimerKind::Retransmit => "on",
            TimerKind::Keepalive => "keepalive",
            TimerKind::TimeWait => "timewait",
            TimerKind::Persist => "persist",
            TimerKind::DelayedAck => "delack",
        }
    }
}

/// A pending timer and when it fires.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Timer {
    /// Which timer.
    pub kind: TimerKind,
    /// Time until it fires (ms resolution from sock_diag, 10 ms from /proc).
    #[serde(rename = "expires_s", serialize_with = "ser_secs")]
    pub expires: Duration,
    /// `idiag_retrans`: retransmissions (retransmit timer) or unanswered probes (keepalive,
    /// persist) so far.
    pub retransmits: u8,
}

/// The parts of `struct tcp_info` (include/uapi/linux/tcp.h) tcpstate uses. Parsed by
/// length: a field the kernel did not send is `None` (older kernels send fewer bytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct TcpInfo {
    /// `tcpi_state`, the kernel state code.
    #[serde(skip)]
    pub state: u8,
    /// Retransmission timeout, µs.
    pub rto_us: Option<u32>,
    /// ms since we last sent data (`now - tp->lsndtime`).
    pub last_data_sent_ms: Option<u32>,
    /// ms since a segment with payload arrived (`icsk_ack.lrcvtime`); a bare FIN does not
    /// update it.
    pub last_data_recv_ms: Option<u32>,
    /// ms since an acceptable ACK arrived (`tp->rcv_tstamp`); the peer's FIN updates it.
    pub last_ack_recv_ms: Option<u32>,
    /// Smoothed RTT, µs.
    pub rtt_us: Option<u32>,
    /// RTT variance, µs.
    pub rttvar_us: Option<u32>,
    /// Congestion window, segments.
    pub snd_cwnd: Option<u32>,
    /// Retransmissions over the connection's life.
    pub total_retrans: Option<u32>,
    /// Bytes acknowledged by the peer.
    pub bytes_acked: Option<u64>,
    /// Bytes received.
    pub bytes_received: Option<u64>,
    /// Segments sent.
    pub segs_out: Option<u32>,
    /// Segments received.
    pub segs_in: Option<u32>,
    /// How many bytes the kernel sent (the size of its `struct tcp_info`).
    #[serde(skip)]
    pub len: usize,
}

/// Socket memory (`INET_DIAG_SKMEMINFO`, the `skmem:` of `ss -m`), bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct MemInfo {
    /// Receive queue memory allocated.
    pub rmem_alloc: u32,
    /// Receive buffer size (SO_RCVBUF).
    pub rcvbuf: u32,
    /// Transmit memory allocated.
    pub wmem_alloc: u32,
    /// Send buffer size (SO_SNDBUF).
    pub sndbuf: u32,
    /// Bytes queued for transmission.
    pub wmem_queued: u32,
    /// Packets dropped (`sk_drops`), 0 on kernels that do not report it.
    pub drops: u32,
}

/// Which kind of kernel object a row came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SockKind {
    /// A full socket (`struct tcp_sock`).
    Full,
    /// A timewait minisocket (`struct inet_timewait_sock`): true TIME_WAIT, or an orphaned
    /// FIN_WAIT_2 the kernel holds as one (substate FIN_WAIT_2). No inode, no owner.
    TimeWaitMini,
    /// A request socket (SYN_RECV before accept): no inode, no owner.
    Request,
}

/// Who holds a socket's file descriptor.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Owner {
    /// Process id.
    pub pid: u32,
    /// Process name (`/proc/PID/comm`).
    pub process: String,
    /// File descriptor number.
    pub fd: u32,
    /// Command line, NUL separators turned into spaces.
    pub cmdline: String,
}

/// One TCP socket as the kernel reported it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Socket {
    /// The state, with the timewait substate applied (an orphan in FIN_WAIT_2 held as a
    /// minisocket is FIN_WAIT_2, as in `inet_twsk_diag_fill()`).
    #[serde(serialize_with = "ser_state")]
    pub state: State,
    /// Full, timewait or request socket.
    pub kind: SockKind,
    /// Local address.
    #[serde(serialize_with = "ser_addr")]
    pub local: SocketAddr,
    /// Peer address (unspecified:0 for a listener).
    #[serde(serialize_with = "ser_addr")]
    pub peer: SocketAddr,
    /// Recv-Q: unread bytes (+1 for an unread FIN), or the accept queue for a listener.
    pub recv_q: u32,
    /// Send-Q: unacknowledged bytes, or the backlog limit for a listener (sock_diag only).
    pub send_q: u32,
    /// Owner uid of the socket inode.
    pub uid: u32,
    /// Socket inode (0: no file, i.e. orphan, minisocket or request).
    pub inode: u64,
    /// `idiag_cookie`, stable for the socket's life (a timewait minisocket inherits it).
    /// `None` from /proc.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cookie: Option<u64>,
    /// Pending timer.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timer: Option<Timer>,
    /// `struct tcp_info` (full sockets, sock_diag only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tcp_info: Option<TcpInfo>,
    /// Socket memory (full sockets, sock_diag only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mem: Option<MemInfo>,
    /// The network namespace the row came from (index into [`Snapshot::namespaces`]).
    #[serde(skip)]
    pub netns: usize,
    /// Who holds its fd, when looked up and found.
    #[serde(skip_serializing_if = "Option::is_none", flatten)]
    pub owner: Option<Owner>,
}

/// How long a socket has been in its state, or has left there, as far as the kernel says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct StateTime {
    /// Time in the current state, when known (exact or estimated, see `estimated`).
    #[serde(
        rename = "age_s",
        serialize_with = "ser_opt_secs",
        skip_serializing_if = "Option::is_none"
    )]
    pub age: Option<Duration>,
    /// Time left before the kernel drops the socket (TIME_WAIT, orphaned FIN_WAIT_2).
    #[serde(
        rename = "left_s",
        serialize_with = "ser_opt_secs",
        skip_serializing_if = "Option::is_none"
    )]
    pub left: Option<Duration>,
    /// The age is an estimate, not a kernel timestamp.
    #[serde(rename = "age_estimated")]
    pub estimated: bool,
}

/// `TCP_TIMEWAIT_LEN` (include/net/tcp.h): 60 s, fixed, no sysctl changes it.
pub const TIMEWAIT_LEN: Duration = Duration::from_secs(60);

impl Socket {
    /// An orphan (no process holds it) that the kernel holds as a FIN_WAIT_2 timewait
    /// minisocket: our FIN was acknowledged, the peer has not sent its FIN.
    pub fn is_orphan_fin_wait_2(&self) -> bool {
        self.state == State::FinWait2
            && (self.kind == SockKind::TimeWaitMini
                || (self.inode == 0 && self.kind == SockKind::Full))
    }

    /// Time in state, from what the kernel exposes:
    /// - TIME_WAIT: `left` = the timewait timer; `age` = 60 s − left (exact unless an ACK
    ///   or a PAWS reject re-armed the timer in `tcp_timewait_state_process()`).
    /// - FIN_WAIT_2 minisocket: `left` = the timer (`tcp_fin_timeout` from the close).
    /// - CLOSE_WAIT: `age` ≈ `tcpi_last_ack_recv` (the FIN updated it; later ACKs, e.g.
    ///   keepalive answers, reset it). Always an estimate: the kernel keeps no timestamp
    ///   for entering CLOSE_WAIT.
    pub fn state_time(&self) -> StateTime {
        let timer_left = self.timer.map(|t| t.expires);
        match self.state {
            State::TimeWait if self.kind == SockKind::TimeWaitMini => StateTime {
                age: timer_left.map(|l| TIMEWAIT_LEN.saturating_sub(l)),
                left: timer_left,
                estimated: false,
            },
            State::FinWait2 if self.kind == SockKind::TimeWaitMini => StateTime {
                age: None,
                left: timer_left,
                estimated: false,
            },
            State::CloseWait => StateTime {
                age: self
                    .tcp_info
                    .and_then(|i| i.last_ack_recv_ms)
                    .map(|ms| Duration::from_millis(ms.into())),
                left: None,
                estimated: true,
            },
            _ => StateTime {
                age: None,
                left: None,
                estimated: false,
            },
        }
    }
}

/// Where the rows came from, and so what is missing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    /// NETLINK_SOCK_DIAG: everything.
    SockDiag,
    /// /proc/net/tcp{,6}: no cookie, no tcp_info (so no CLOSE_WAIT age), no memory, no
    /// listener backlog limit, timers at 10 ms resolution.
    ProcNet,
}

impl Source {
    /// The details missing with this source (empty for sock_diag).
    pub fn missing(self) -> &'static [&'static str] {
        match self {
            Source::SockDiag => &[],
            Source::ProcNet => &[
                "socket cookie",
                "tcp_info (RTT, CLOSE_WAIT age estimate)",
                "socket memory",
                "listener backlog limit (Send-Q of LISTEN)",
            ],
        }
    }
}

/// A network namespace that was dumped.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Namespace {
    /// A name for people: the /run/netns name, `pid:N`, or `net:[INODE]`.
    pub name: String,
    /// The namespace inode (the N of `net:[N]`), when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub inode: Option<u64>,
    /// Where its rows came from.
    pub source: Source,
    /// Why netlink was not used, when it was not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fallback_reason: Option<String>,
    /// Its sysctls and counters, when asked for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kernel: Option<crate::kernel::KernelContext>,
}

/// Every TCP socket of one or more network namespaces, at one moment.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Snapshot {
    /// The namespaces dumped, in order.
    pub namespaces: Vec<Namespace>,
    /// The sockets.
    pub sockets: Vec<Socket>,
    /// What could not be looked at (e.g. a namespace that vanished during `--all-netns`).
    pub warnings: Vec<String>,
}

impl Snapshot {
    /// Count of sockets per state, in `State::ALL` order, zero counts left out.
    pub fn counts(&self) -> Vec<(State, usize)> {
        let mut n = [0usize; 11];
        for s in &self.sockets {
            n[state_index(s.state)] += 1;
        }
        State::ALL
            .iter()
            .zip(n)
            .filter(|(_, c)| *c > 0)
            .map(|(s, c)| (*s, c))
            .collect()
    }
}

pub(crate) fn state_index(s: State) -> usize {
    State::ALL.iter().position(|x| *x == s).unwrap_or(0)
}

/// An address the way tables and JSON print it: `ip:port`, `[v6]:port`.
pub struct Addr<'a>(pub &'a SocketAddr);

/// The longest address text: `[` + 45 (IPv6 with embedded IPv4) + `]:65535`.
pub const ADDR_MAX_LEN: usize = 54;

impl Addr<'_> {
    /// Writes the text into `buf` and returns its length; no allocation (tables print
    /// 100k of these). IPv4 digits are written by hand, the rest through `fmt`.
    pub fn write_to(&self, buf: &mut [u8; ADDR_MAX_LEN]) -> usize {
        fn num(buf: &mut [u8], at: usize, mut v: u32) -> usize {
            let mut tmp = [0u8; 5];
            let mut n = 0;
            loop {
                tmp[n] = b'0' + (v % 10) as u8;
                n += 1;
                v /= 10;
                if v == 0 {
                    break;
                }
            }
            for i in 0..n {
                buf[at + i] = tmp[n - 1 - i];
            }
            at + n
        }
        let mut at = 0;
        let v4 = |buf: &mut [u8], mut at: usize, o: [u8; 4]| {
            for (i, b) in o.iter().enumerate() {
                if i > 0 {
                    buf[at] = b'.';
                    at += 1;
                }
                at = num(buf, at, u32::from(*b));
            }
            at
        };
        match self.0.ip() {
            IpAddr::V4(ip) => at = v4(buf, at, ip.octets()),
            IpAddr::V6(ip) => match ip.to_ipv4_mapped() {
                // ss prints v4-mapped as [::ffff:a.b.c.d]; so do we, to stay comparable.
                Some(m) => {
                    buf[..8].copy_from_slice(b"[::ffff:");
                    at = v4(buf, 8, m.octets());
                    buf[at] = b']';
                    at += 1;
                }
                None => {
                    use std::io::Write;
                    let mut cur = std::io::Cursor::new(&mut buf[..]);
                    // Cannot fail: 47 bytes at most before the port.
                    let _ = write!(cur, "[{ip}]");
                    at = cur.position() as usize;
                }
            },
        }
        buf[at] = b':';
        num(buf, at + 1, u32::from(self.0.port()))
    }
}

impl fmt::Display for Addr<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut buf = [0u8; ADDR_MAX_LEN];
        let n = self.write_to(&mut buf);
        // Only ASCII was written.
        f.pad(std::str::from_utf8(&buf[..n]).unwrap_or("?"))
    }
}

fn ser_addr<S: serde::Serializer>(a: &SocketAddr, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(&Addr(a))
}

fn ser_state<S: serde::Serializer>(st: &State, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(st.name())
}

fn ser_secs<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64())
}

fn ser_opt_secs<S: serde::Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
    match d {
        Some(d) => s.serialize_f64(d.as_secs_f64()),
        None => s.serialize_none(),
    }
}

/// A full socket with no details, for the rules' and filters' unit tests.
#[cfg(test)]
pub(crate) fn test_socket(state: State, local: &str, peer: &str) -> Socket {
    Socket {
        state,
        kind: SockKind::Full,
        local: local.parse().expect("test address"),
        peer: peer.parse().expect("test address"),
        recv_q: 0,
        send_q: 0,
        uid: 0,
        inode: 1,
        cookie: None,
        timer: None,
        tcp_info: None,
        mem: None,
        netns: 0,
        owner: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn addresses_print_like_ss() {
        let t = |a: &str| Addr(&a.parse().unwrap()).to_string();
        assert_eq!(t("127.0.0.1:8080"), "127.0.0.1:8080");
        assert_eq!(t("0.0.0.0:0"), "0.0.0.0:0");
        assert_eq!(t("255.255.255.255:65535"), "255.255.255.255:65535");
        assert_eq!(t("[::ffff:10.1.2.3]:443"), "[::ffff:10.1.2.3]:443");
        assert_eq!(t("[::1]:22"), "[::1]:22");
        assert_eq!(
            format!("{:>16}|", Addr(&"1.2.3.4:5".parse().unwrap())),
            "       1.2.3.4:5|"
        );
    }

    proptest! {
        #[test]
        fn any_address_fits_and_matches_std(ip in any::<[u8; 16]>(), v4 in any::<[u8; 4]>(), port in any::<u16>()) {
            for ip in [IpAddr::from(ip), IpAddr::from(v4)] {
                let a = SocketAddr::new(ip, port);
                let text = Addr(&a).to_string();
                let std_text = match ip {
                    IpAddr::V6(v6) if v6.to_ipv4_mapped().is_some() => format!("[::ffff:{}]:{port}", v6.to_ipv4_mapped().unwrap()),
                    _ => a.to_string(),
                };
                prop_assert_eq!(text, std_text);
            }
        }
    }
}
