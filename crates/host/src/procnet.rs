//! The fallback source: `/proc/net/tcp` and `/proc/net/tcp6` text (`tcp4_seq_show()`,
//! `get_tcp4_sock()`, `get_timewait4_sock()` in net/ipv4/tcp_ipv4.c). Used only when
//! NETLINK_SOCK_DIAG is unavailable; see [`crate::Source::missing`] for what it lacks.
//!
//! Pure text handling: a line that does not parse is an error naming the line, never a
//! panic (property-tested).

use crate::model::{SockKind, Socket, Timer, TimerKind};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;
use tcpstate_fsm::State;

/// A line of /proc/net/tcp{,6} that does not have the kernel's shape.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {reason}: {text:?}")]
pub struct ProcNetError {
    /// 1-based line number.
    pub line: usize,
    /// What was wrong.
    pub reason: &'static str,
    /// The line (shortened to 160 characters).
    pub text: String,
}

/// `USER_HZ`: /proc/net/tcp prints timers with `jiffies_delta_to_clock_t()`.
const USER_HZ: u64 = 100;

fn parse_addr(s: &str) -> Option<SocketAddr> {
    let (ip, port) = s.split_once(':')?;
    let port = u16::from_str_radix(port, 16).ok()?;
    let ip = match ip.len() {
        // The kernel prints the __be32 as a host-order u32 with %08X.
        8 => IpAddr::V4(Ipv4Addr::from(
            u32::from_str_radix(ip, 16).ok()?.to_ne_bytes(),
        )),
        32 => {
            let mut b = [0u8; 16];
            for (i, chunk) in b.chunks_mut(4).enumerate() {
                let w = u32::from_str_radix(ip.get(i * 8..i * 8 + 8)?, 16).ok()?;
                chunk.copy_from_slice(&w.to_ne_bytes());
            }
            IpAddr::V6(Ipv6Addr::from(b))
        }
        _ => return None,
    };
    Some(SocketAddr::new(ip, port))
}

fn hex_pair(s: &str) -> Option<(u64, u64)> {
    let (a, b) = s.split_once(':')?;
    Some((
        u64::from_str_radix(a, 16).ok()?,
        u64::from_str_radix(b, 16).ok()?,
    ))
}

/// Parses the whole file (header line first), keeping only sockets whose state is in
/// `want` (all when `want` is empty).
pub fn parse(text: &str, want: &[State]) -> Result<Vec<Socket>, ProcNetError> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if i == 0 || line.trim().is_empty() {
            continue; // header
        }
        let sock = parse_line(line).map_err(|reason| ProcNetError {
            line: i + 1,
            reason,
            text: line.chars().take(160).collect(),
        })?;
        if want.is_empty() || want.contains(&sock.state) {
            out.push(sock);
        }
    }
    Ok(out)
}

/// Parses one row: `sl local rem st tx:rx tr:when retrnsmt uid timeout inode ...`.
pub fn parse_line(line: &str) -> Result<Socket, &'static str> {
    let f: Vec<&str> = line.split_whitespace().collect();
    if f.len() < 10 {
        return Err("fewer than 10 fields");
    }
    let local = parse_addr(f[1]).ok_or("bad local address")?;
    let peer = parse_addr(f[2]).ok_or("bad remote address")?;
    let code = u8::from_str_radix(f[3], 16).map_err(|_| "bad state")?;
    let state = State::from_kernel_code(code).map_err(|_| "unknown state code")?;
    let (tx, rx) = hex_pair(f[4]).ok_or("bad tx_queue:rx_queue")?;
    let (tr, when) = hex_pair(f[5]).ok_or("bad tr:tm->when")?;
    let retr = u64::from_str_radix(f[6], 16).map_err(|_| "bad retrnsmt")?;
    let uid: u32 = f[7].parse().map_err(|_| "bad uid")?;
    let inode: u64 = f[9].parse().map_err(|_| "bad inode")?;
    let tr = u8::try_from(tr).map_err(|_| "bad timer code")?;
    let kind = if tr == 3 && inode == 0 {
        SockKind::TimeWaitMini
    } else if state == State::SynReceived && inode == 0 {
        SockKind::Request
    } else {
        SockKind::Full
    };
    let timer = TimerKind::from_code(tr).map(|kind| Timer {
        kind,
        expires: Duration::from_millis(when.saturating_mul(1000 / USER_HZ)),
        retransmits: u8::try_from(retr).unwrap_or(u8::MAX),
    });
    Ok(Socket {
        state,
        kind,
        local,
        peer,
        recv_q: u32::try_from(rx).unwrap_or(u32::MAX),
        send_q: u32::try_from(tx).unwrap_or(u32::MAX),
        uid,
        inode,
        cookie: None,
        timer,
        tcp_info: None,
        mem: None,
        netns: 0,
        owner: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const TCP: &str = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:1F90 00000000:0000 0A 00000000:00000002 00:00000000 00000000     0        0 52011 1 0000000000000000 100 0 0 10 0
   1: 0100007F:1F90 0100007F:D4F0 08 00000000:00000001 00:00000000 00000000  1000        0 52013 1 0000000000000000 20 4 30 10 -1
   2: 0100007F:D4F2 0100007F:1F90 06 00000000:00000000 03:000016A0 00000000     0        0 0 3 0000000000000000
";

    #[test]
    fn parses_listen_close_wait_and_time_wait() {
        let socks = parse(TCP, &[]).unwrap();
        assert_eq!(socks.len(), 3);
        assert_eq!(socks[0].state, State::Listen);
        assert_eq!(socks[0].local.to_string(), "127.0.0.1:8080");
        assert_eq!(socks[0].recv_q, 2);
        assert_eq!(socks[1].state, State::CloseWait);
        assert_eq!(socks[1].uid, 1000);
        assert_eq!(socks[1].inode, 52013);
        assert_eq!(socks[1].peer.port(), 0xD4F0);
        let tw = &socks[2];
        assert_eq!(tw.state, State::TimeWait);
        assert_eq!(tw.kind, SockKind::TimeWaitMini);
        assert_eq!(
            tw.timer.unwrap().expires,
            Duration::from_millis(0x16A0 * 10)
        );
        assert_eq!(parse(TCP, &[State::TimeWait]).unwrap().len(), 1);
    }

    #[test]
    fn parses_ipv6() {
        let line = "   0: 00000000000000000000000001000000:0016 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1234 1 0000000000000000 100 0 0 10 0";
        let s = parse_line(line).unwrap();
        assert_eq!(s.local.to_string(), "[::1]:22");
    }

    #[test]
    fn bad_line_is_a_clear_error() {
        let err = parse("header\n   0: zz:1 00:0 0A\n", &[]).unwrap_err();
        assert_eq!(err.line, 2);
        assert!(err.to_string().contains("line 2"));
    }

    proptest! {
        #[test]
        fn garbage_never_panics(s in "\\PC{0,300}") {
            let _ = parse(&s, &[]);
        }

        #[test]
        fn mutated_rows_never_panic(pos in 0usize..400, c in proptest::char::any()) {
            let mut s: Vec<char> = TCP.chars().collect();
            let n = s.len();
            s[pos % n] = c;
            let s: String = s.into_iter().collect();
            let _ = parse(&s, &[]);
        }
    }
}
