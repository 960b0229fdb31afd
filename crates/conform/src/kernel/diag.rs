//! A small sock_diag client: dumps the IPv4 TCP sockets of the current network namespace
//! with their states (NETLINK_SOCK_DIAG, `SOCK_DIAG_BY_FAMILY` with an `inet_diag_req_v2`,
//! include/uapi/linux/inet_diag.h). Time-wait sockets are included: the kernel reports them
//! with their substate (TIME_WAIT, or FIN_WAIT_2 for an orphan's tw sock), as `ss` shows.
//!
//! No unsafe: the request is built and the replies parsed as bytes; an unconnected netlink
//! socket sends to the kernel (destination port id 0) without an address.

use std::io::{self, Read};
use std::net::{Ipv4Addr, SocketAddrV4};

use socket2::{Domain, Protocol, Socket, Type};
use tcpstate_fsm::State;

const SOCK_DIAG_BY_FAMILY: u16 = 20;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const NLM_F_REQUEST: u16 = 1;
const NLM_F_DUMP: u16 = 0x300;

/// One socket of the dump.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DiagSocket {
    /// Local address.
    pub local: SocketAddrV4,
    /// Remote address.
    pub remote: SocketAddrV4,
    /// State (request socks are reported as SYN_RECEIVED).
    pub state: State,
}

fn nl_err(what: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.into())
}

/// Dumps every IPv4 TCP socket of the calling thread's network namespace.
pub fn dump_tcp4() -> io::Result<Vec<DiagSocket>> {
    let sock = Socket::new(
        Domain::from(libc::AF_NETLINK),
        Type::DGRAM,
        Some(Protocol::from(libc::NETLINK_SOCK_DIAG)),
    )?;
    let mut req = Vec::with_capacity(72);
    req.extend(72u32.to_ne_bytes()); // nlmsg_len: 16 header + 56 inet_diag_req_v2
    req.extend(SOCK_DIAG_BY_FAMILY.to_ne_bytes());
    req.extend((NLM_F_REQUEST | NLM_F_DUMP).to_ne_bytes());
    req.extend(1u32.to_ne_bytes()); // seq
    req.extend(0u32.to_ne_bytes()); // pid
    req.push(libc::AF_INET as u8); // sdiag_family
    req.push(libc::IPPROTO_TCP as u8); // sdiag_protocol
    req.push(0); // idiag_ext
    req.push(0); // pad
    req.extend(u32::MAX.to_ne_bytes()); // idiag_states: all
    req.resize(72, 0); // inet_diag_sockid: zero = no filter
    sock.send(&req)?;
    let mut out = Vec::new();
    let mut buf = vec![0u8; 32 * 1024];
    loop {
        let n = (&sock).read(&mut buf)?;
        let mut msg = buf.get(..n).unwrap_or_default();
        if msg.is_empty() {
            return Err(nl_err("empty netlink reply"));
        }
        while msg.len() >= 16 {
            let len = u32::from_ne_bytes([msg[0], msg[1], msg[2], msg[3]]) as usize;
            let kind = u16::from_ne_bytes([msg[4], msg[5]]);
            if len < 16 || len > msg.len() {
                return Err(nl_err(format!(
                    "netlink message length {len} in {} bytes",
                    msg.len()
                )));
            }
            match kind {
                NLMSG_DONE => return Ok(out),
                NLMSG_ERROR => {
                    let code = msg
                        .get(16..20)
                        .map(|b| i32::from_ne_bytes([b[0], b[1], b[2], b[3]]));
                    return Err(match code {
                        Some(c) if c < 0 => io::Error::from_raw_os_error(-c),
                        _ => nl_err("netlink error without code"),
                    });
                }
                SOCK_DIAG_BY_FAMILY => {
                    if let Some(s) = parse_inet_diag_msg(&msg[16..len])? {
                        out.push(s);
                    }
                }
                _ => {}
            }
            // Messages are 4-byte aligned (NLMSG_ALIGN).
            let next = len.div_ceil(4) * 4;
            msg = msg.get(next..).unwrap_or_default();
        }
    }
}

/// `struct inet_diag_msg`: family, state, timer, retrans, then the sockid (ports big-endian,
/// addresses as 4 x be32), expires, rqueue, wqueue, uid, inode.
fn parse_inet_diag_msg(b: &[u8]) -> io::Result<Option<DiagSocket>> {
    if b.len() < 72 {
        return Err(nl_err(format!("inet_diag_msg of {} bytes", b.len())));
    }
    if b[0] != libc::AF_INET as u8 {
        return Ok(None);
    }
    // Request socks (TCP_NEW_SYN_RECV, 12) come back as SYN_RECEIVED, as ss shows them.
    let state = State::from_kernel_code(b[1])
        .map_err(|_| nl_err(format!("unknown TCP state code {}", b[1])))?;
    let port = |i: usize| u16::from_be_bytes([b[i], b[i + 1]]);
    let ip = |i: usize| Ipv4Addr::new(b[i], b[i + 1], b[i + 2], b[i + 3]);
    Ok(Some(DiagSocket {
        local: SocketAddrV4::new(ip(8), port(4)),
        remote: SocketAddrV4::new(ip(24), port(6)),
        state,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_or_foreign_messages_are_errors_or_skipped() {
        assert!(parse_inet_diag_msg(&[0; 10]).is_err());
        let mut m = [0u8; 72];
        m[0] = libc::AF_INET6 as u8;
        assert_eq!(parse_inet_diag_msg(&m).unwrap(), None);
        m[0] = libc::AF_INET as u8;
        m[1] = 99;
        assert!(parse_inet_diag_msg(&m).is_err());
        m[1] = 6;
        m[4..6].copy_from_slice(&8080u16.to_be_bytes());
        m[8..12].copy_from_slice(&[192, 168, 0, 1]);
        let s = parse_inet_diag_msg(&m).unwrap().unwrap();
        assert_eq!(s.state, State::TimeWait);
        assert_eq!(s.local, "192.168.0.1:8080".parse().unwrap());
    }
}
