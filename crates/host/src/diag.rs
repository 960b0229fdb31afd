//! The NETLINK_SOCK_DIAG wire format for TCP (include/uapi/linux/inet_diag.h), built and
//! parsed by hand: the request is 72 bytes, and the reply parser must keep `idiag_expires`
//! for timewait minisockets and take `struct tcp_info` at whatever length the kernel sends
//! (232 bytes on some kernels, 280 on 6.18), which the published crates do not.
//!
//! Pure byte handling, no I/O: every function takes a buffer and returns a value or a
//! [`DiagError`], never panics on garbage (property-tested).

use crate::model::{MemInfo, SockKind, Socket, TcpInfo, Timer, TimerKind};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;
use tcpstate_fsm::State;

/// `SOCK_DIAG_BY_FAMILY` (include/uapi/linux/sock_diag.h).
pub const SOCK_DIAG_BY_FAMILY: u16 = 20;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_DUMP: u16 = 0x300;
const NLMSG_HDRLEN: usize = 16;
const INET_DIAG_MSG_LEN: usize = 72;
const REQ_V2_LEN: usize = 56;

const AF_INET: u8 = 2;
const AF_INET6: u8 = 10;
const IPPROTO_TCP: u8 = 6;

/// `INET_DIAG_MEMINFO`.
const INET_DIAG_MEMINFO: u16 = 1;
/// `INET_DIAG_INFO`: struct tcp_info.
const INET_DIAG_INFO: u16 = 2;
/// `INET_DIAG_SKMEMINFO`: u32[SK_MEMINFO_VARS].
const INET_DIAG_SKMEMINFO: u16 = 7;

/// Address family of a dump.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    /// AF_INET.
    V4,
    /// AF_INET6 (includes v4-mapped sockets).
    V6,
}

impl Family {
    fn code(self) -> u8 {
        match self {
            Family::V4 => AF_INET,
            Family::V6 => AF_INET6,
        }
    }
}

/// A reply that is not what `inet_diag` sends.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DiagError {
    /// A header or message shorter than its declared or minimal length.
    #[error("truncated netlink message: {what} needs {need} bytes, {have} available")]
    Truncated {
        /// What was being read.
        what: &'static str,
        /// Bytes needed.
        need: usize,
        /// Bytes present.
        have: usize,
    },
    /// The kernel answered with an error (NLMSG_ERROR), e.g. EINVAL for an unknown protocol.
    #[error("kernel returned error {errno} ({})", std::io::Error::from_raw_os_error(*.errno))]
    Kernel {
        /// The positive errno.
        errno: i32,
    },
    /// An address family other than AF_INET/AF_INET6.
    #[error("unexpected address family {0} in inet_diag_msg")]
    Family(u8),
    /// A state code not in include/net/tcp_states.h.
    #[error("unknown TCP state code {0} in inet_diag_msg")]
    State(u8),
}

/// The bitmask of `idiag_states` for a set of states. `TCPF_NEW_SYN_RECV` (request
/// sockets) is added with SYN_RECV, as `ss` does, and `TCPF_BOUND_INACTIVE` is never asked
/// for (`ss -a` does not show bound-but-unconnected sockets either).
pub fn state_mask(states: &[State]) -> u32 {
    let mut mask = 0u32;
    for s in states {
        mask |= 1 << s.kernel_code();
        if *s == State::SynReceived {
            mask |= 1 << 12;
        }
    }
    mask
}

/// Builds the `nlmsghdr` + `inet_diag_req_v2` dump request for TCP sockets of `family` in
/// `states_mask`, asking for tcp_info and socket memory when `extensions` is set.
pub fn build_request(family: Family, states_mask: u32, extensions: bool, seq: u32) -> Vec<u8> {
    let ext = if extensions {
        EXT_TCP_INFO | EXT_SKMEMINFO
    } else {
        0
    };
    build_request_ext(family, states_mask, ext, seq)
}

/// `idiag_ext` bit asking for `struct tcp_info` (`INET_DIAG_INFO`).
pub const EXT_TCP_INFO: u8 = 1 << (INET_DIAG_INFO - 1);
/// `idiag_ext` bit asking for socket memory (`INET_DIAG_SKMEMINFO`).
pub const EXT_SKMEMINFO: u8 = 1 << (INET_DIAG_SKMEMINFO - 1);

/// Like [`build_request`], with the `idiag_ext` bits given one by one ([`EXT_TCP_INFO`],
/// [`EXT_SKMEMINFO`]): each extension costs the kernel a fill per socket
/// (`tcp_get_info()` alone is ~280 bytes), so a caller asks only for what it shows.
pub fn build_request_ext(family: Family, states_mask: u32, ext: u8, seq: u32) -> Vec<u8> {
    let len = NLMSG_HDRLEN + REQ_V2_LEN;
    let mut b = Vec::with_capacity(len);
    b.extend_from_slice(&(len as u32).to_ne_bytes());
    b.extend_from_slice(&SOCK_DIAG_BY_FAMILY.to_ne_bytes());
    b.extend_from_slice(&(NLM_F_REQUEST | NLM_F_DUMP).to_ne_bytes());
    b.extend_from_slice(&seq.to_ne_bytes());
    b.extend_from_slice(&0u32.to_ne_bytes()); // pid: the kernel
    b.push(family.code());
    b.push(IPPROTO_TCP);
    b.push(ext);
    b.push(0); // pad
    b.extend_from_slice(&states_mask.to_ne_bytes());
    b.resize(len, 0); // inet_diag_sockid: all zero = wildcard
    b
}

/// `INET_DIAG_NOCOOKIE`: no cookie check in an exact lookup.
const NO_COOKIE: u64 = u64::MAX;

/// Builds a request for ONE socket (no `NLM_F_DUMP`): the kernel looks it up by 4-tuple in
/// its hash tables (`inet_diag_find_one_icsk()`: established, timewait minisockets and
/// listeners alike), checks the cookie when one is given (`sock_diag_check_cookie()`), and
/// answers one `inet_diag_msg` or an `NLMSG_ERROR` (ENOENT: no such socket). No walk of
/// the hash tables, so it costs the same with 10 sockets or 100k.
pub fn build_lookup_request(
    local: SocketAddr,
    peer: SocketAddr,
    cookie: Option<u64>,
    ext: u8,
    seq: u32,
) -> Vec<u8> {
    let family = if local.is_ipv4() && peer.is_ipv4() {
        Family::V4
    } else {
        Family::V6
    };
    let mut b = build_request_ext(family, u32::MAX, ext, seq);
    b[6..8].copy_from_slice(&NLM_F_REQUEST.to_ne_bytes());
    // inet_diag_sockid after the 8-byte head of inet_diag_req_v2: sport, dport (big
    // endian), src[4], dst[4] (network order), if, cookie[2].
    let id = NLMSG_HDRLEN + 8;
    b[id..id + 2].copy_from_slice(&local.port().to_be_bytes());
    b[id + 2..id + 4].copy_from_slice(&peer.port().to_be_bytes());
    let put = |b: &mut Vec<u8>, at: usize, ip: IpAddr| match (family, ip) {
        (Family::V4, IpAddr::V4(v4)) => b[at..at + 4].copy_from_slice(&v4.octets()),
        (_, IpAddr::V4(v4)) => b[at..at + 16].copy_from_slice(&v4.to_ipv6_mapped().octets()),
        (_, IpAddr::V6(v6)) => b[at..at + 16].copy_from_slice(&v6.octets()),
    };
    put(&mut b, id + 4, local.ip());
    put(&mut b, id + 20, peer.ip());
    let c = cookie.unwrap_or(NO_COOKIE);
    b[id + 40..id + 44].copy_from_slice(&(c as u32).to_ne_bytes());
    b[id + 44..id + 48].copy_from_slice(&((c >> 32) as u32).to_ne_bytes());
    b
}

/// What one receive buffer held.
#[derive(Debug, Default)]
pub struct Batch {
    /// Sockets parsed from it.
    pub sockets: Vec<Socket>,
    /// NLMSG_DONE seen: the dump is complete.
    pub done: bool,
}

fn u16_at(b: &[u8], off: usize) -> Option<u16> {
    Some(u16::from_ne_bytes(b.get(off..off + 2)?.try_into().ok()?))
}
fn u32_at(b: &[u8], off: usize) -> Option<u32> {
    Some(u32::from_ne_bytes(b.get(off..off + 4)?.try_into().ok()?))
}
fn u64_at(b: &[u8], off: usize) -> Option<u64> {
    Some(u64::from_ne_bytes(b.get(off..off + 8)?.try_into().ok()?))
}

fn align4(n: usize) -> usize {
    (n + 3) & !3
}

/// Parses one datagram of a dump reply (possibly several netlink messages).
pub fn parse_batch(buf: &[u8]) -> Result<Batch, DiagError> {
    let mut out = Batch::default();
    out.done = parse_batch_into(buf, &mut out.sockets)?;
    Ok(out)
}

/// Like [`parse_batch`], appending the sockets to `out` (no intermediate vector: a dump
/// of 100k sockets is parsed straight into its final place). Returns whether NLMSG_DONE
/// was seen. On error, the sockets parsed before the bad message stay in `out`.
pub fn parse_batch_into(buf: &[u8], out: &mut Vec<Socket>) -> Result<bool, DiagError> {
    let mut off = 0;
    while off + NLMSG_HDRLEN <= buf.len() {
        let len = u32_at(buf, off).unwrap_or(0) as usize;
        let ty = u16_at(buf, off + 4).unwrap_or(0);
        if len < NLMSG_HDRLEN || off + len > buf.len() {
            return Err(DiagError::Truncated {
                what: "nlmsghdr",
                need: len.max(NLMSG_HDRLEN),
                have: buf.len() - off,
            });
        }
        let payload = &buf[off + NLMSG_HDRLEN..off + len];
        match ty {
            NLMSG_DONE => return Ok(true),
            NLMSG_ERROR => {
                let err = u32_at(payload, 0).ok_or(DiagError::Truncated {
                    what: "nlmsgerr",
                    need: 4,
                    have: payload.len(),
                })? as i32;
                if err != 0 {
                    return Err(DiagError::Kernel {
                        errno: err.checked_neg().unwrap_or(i32::MAX),
                    });
                }
            }
            SOCK_DIAG_BY_FAMILY => out.push(parse_msg(payload)?),
            _ => {} // NLMSG_NOOP and friends
        }
        off += align4(len);
    }
    Ok(false)
}

fn addr(family: u8, raw: &[u8], port: u16) -> Result<SocketAddr, DiagError> {
    let ip = match family {
        AF_INET => IpAddr::V4(Ipv4Addr::new(raw[0], raw[1], raw[2], raw[3])),
        AF_INET6 => {
            let mut a = [0u8; 16];
            a.copy_from_slice(&raw[..16]);
            IpAddr::V6(Ipv6Addr::from(a))
        }
        f => return Err(DiagError::Family(f)),
    };
    Ok(SocketAddr::new(ip, port))
}

/// Parses one `inet_diag_msg` and its attributes.
pub fn parse_msg(p: &[u8]) -> Result<Socket, DiagError> {
    if p.len() < INET_DIAG_MSG_LEN {
        return Err(DiagError::Truncated {
            what: "inet_diag_msg",
            need: INET_DIAG_MSG_LEN,
            have: p.len(),
        });
    }
    let family = p[0];
    let code = p[1];
    let timer_code = p[2];
    let retrans = p[3];
    // inet_diag_sockid: ports and addresses in network byte order.
    let sport = u16::from_be_bytes([p[4], p[5]]);
    let dport = u16::from_be_bytes([p[6], p[7]]);
    let local = addr(family, &p[8..24], sport)?;
    let peer = addr(family, &p[24..40], dport)?;
    let cookie =
        u64::from(u32_at(p, 44).unwrap_or(0)) | (u64::from(u32_at(p, 48).unwrap_or(0)) << 32);
    let expires = u32_at(p, 52).unwrap_or(0);
    let rqueue = u32_at(p, 56).unwrap_or(0);
    let wqueue = u32_at(p, 60).unwrap_or(0);
    let uid = u32_at(p, 64).unwrap_or(0);
    let inode = u32_at(p, 68).unwrap_or(0);

    let state = State::from_kernel_code(code).map_err(|_| DiagError::State(code))?;
    let kind = if timer_code == 3 && inode == 0 {
        // inet_twsk_diag_fill(): idiag_state = tw_substate, timer 3, no inode. Full
        // sockets never report timer 3 (inet_sk_diag_fill() uses 1, 2, 4, 5).
        SockKind::TimeWaitMini
    } else if code == 12 || (code == 3 && inode == 0) {
        // inet_req_diag_fill(): idiag_state = TCP_SYN_RECV, no inode.
        SockKind::Request
    } else {
        SockKind::Full
    };
    let timer = TimerKind::from_code(timer_code).map(|kind| Timer {
        kind,
        expires: Duration::from_millis(expires.into()),
        retransmits: retrans,
    });

    let mut sock = Socket {
        state,
        kind,
        local,
        peer,
        recv_q: rqueue,
        send_q: wqueue,
        uid,
        inode: inode.into(),
        cookie: Some(cookie),
        timer,
        tcp_info: None,
        mem: None,
        netns: 0,
        owner: None,
    };

    let mut off = INET_DIAG_MSG_LEN;
    while off + 4 <= p.len() {
        let alen = u16_at(p, off).unwrap_or(0) as usize;
        let aty = u16_at(p, off + 2).unwrap_or(0) & 0x3fff; // drop NLA_F_NESTED/NET_BYTEORDER
        if alen < 4 || off + alen > p.len() {
            return Err(DiagError::Truncated {
                what: "rtattr",
                need: alen.max(4),
                have: p.len() - off,
            });
        }
        let data = &p[off + 4..off + alen];
        match aty {
            INET_DIAG_INFO => sock.tcp_info = Some(parse_tcp_info(data)),
            INET_DIAG_SKMEMINFO => sock.mem = parse_skmeminfo(data),
            INET_DIAG_MEMINFO => {}
            _ => {}
        }
        off += align4(alen);
    }
    Ok(sock)
}

/// Parses `struct tcp_info` by length: each field is read only if the kernel sent it;
/// an unknown tail (newer kernel) is ignored.
pub fn parse_tcp_info(d: &[u8]) -> TcpInfo {
    TcpInfo {
        state: d.first().copied().unwrap_or(0),
        rto_us: u32_at(d, 8),
        last_data_sent_ms: u32_at(d, 44),
        last_data_recv_ms: u32_at(d, 52),
        last_ack_recv_ms: u32_at(d, 56),
        rtt_us: u32_at(d, 68),
        rttvar_us: u32_at(d, 72),
        snd_cwnd: u32_at(d, 80),
        total_retrans: u32_at(d, 100),
        bytes_acked: u64_at(d, 120),
        bytes_received: u64_at(d, 128),
        segs_out: u32_at(d, 136),
        segs_in: u32_at(d, 140),
        len: d.len(),
    }
}

/// `INET_DIAG_SKMEMINFO`: SK_MEMINFO_RMEM_ALLOC, RCVBUF, WMEM_ALLOC, SNDBUF, FWD_ALLOC,
/// WMEM_QUEUED, OPTMEM, BACKLOG, DROPS (include/uapi/linux/sock_diag.h).
fn parse_skmeminfo(d: &[u8]) -> Option<MemInfo> {
    Some(MemInfo {
        rmem_alloc: u32_at(d, 0)?,
        rcvbuf: u32_at(d, 4)?,
        wmem_alloc: u32_at(d, 8)?,
        sndbuf: u32_at(d, 12)?,
        wmem_queued: u32_at(d, 20)?,
        drops: u32_at(d, 32).unwrap_or(0),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn msg(family: u8, state: u8, timer: u8, inode: u32, attrs: &[(u16, Vec<u8>)]) -> Vec<u8> {
        let mut p = vec![family, state, timer, 2];
        p.extend_from_slice(&8080u16.to_be_bytes());
        p.extend_from_slice(&443u16.to_be_bytes());
        let mut src = [0u8; 16];
        src[..4].copy_from_slice(&[127, 0, 0, 1]);
        let mut dst = [0u8; 16];
        dst[..4].copy_from_slice(&[127, 0, 0, 2]);
        p.extend_from_slice(&src);
        p.extend_from_slice(&dst);
        p.extend_from_slice(&0u32.to_ne_bytes()); // if
        p.extend_from_slice(&7u32.to_ne_bytes()); // cookie lo
        p.extend_from_slice(&1u32.to_ne_bytes()); // cookie hi
        p.extend_from_slice(&41_500u32.to_ne_bytes()); // expires
        p.extend_from_slice(&1u32.to_ne_bytes()); // rqueue
        p.extend_from_slice(&0u32.to_ne_bytes()); // wqueue
        p.extend_from_slice(&1000u32.to_ne_bytes()); // uid
        p.extend_from_slice(&inode.to_ne_bytes());
        for (ty, data) in attrs {
            p.extend_from_slice(&((data.len() + 4) as u16).to_ne_bytes());
            p.extend_from_slice(&ty.to_ne_bytes());
            p.extend_from_slice(data);
            while p.len() % 4 != 0 {
                p.push(0);
            }
        }
        let mut m = Vec::new();
        m.extend_from_slice(&((p.len() + 16) as u32).to_ne_bytes());
        m.extend_from_slice(&SOCK_DIAG_BY_FAMILY.to_ne_bytes());
        m.extend_from_slice(&[0; 10]);
        m.extend_from_slice(&p);
        m
    }

    #[test]
    fn request_is_72_bytes_with_states_and_extensions() {
        let r = build_request(Family::V6, state_mask(&[State::CloseWait]), true, 9);
        assert_eq!(r.len(), 72);
        assert_eq!(r[16], AF_INET6);
        assert_eq!(r[17], IPPROTO_TCP);
        assert_eq!(r[18], 0b0100_0010);
        assert_eq!(u32_at(&r, 20), Some(1 << 8));
    }

    #[test]
    fn lookup_request_carries_the_tuple_and_cookie() {
        let r = build_lookup_request(
            "127.0.0.1:8080".parse().unwrap(),
            "127.0.0.2:443".parse().unwrap(),
            Some((1 << 32) | 7),
            0,
            5,
        );
        assert_eq!(r.len(), 72);
        assert_eq!(u16_at(&r, 6), Some(NLM_F_REQUEST)); // not a dump
        assert_eq!(r[16], AF_INET);
        assert_eq!(&r[24..28], &[0x1f, 0x90, 0x01, 0xbb]);
        assert_eq!(&r[28..32], &[127, 0, 0, 1]);
        assert_eq!(&r[44..48], &[127, 0, 0, 2]);
        assert_eq!((u32_at(&r, 64), u32_at(&r, 68)), (Some(7), Some(1)));
        let r = build_lookup_request(
            "[::1]:1".parse().unwrap(),
            "[::ffff:10.0.0.1]:2".parse().unwrap(),
            None,
            0,
            1,
        );
        assert_eq!(r[16], AF_INET6);
        assert_eq!(
            &r[44..60],
            &"::ffff:10.0.0.1".parse::<Ipv6Addr>().unwrap().octets()
        );
        assert_eq!(
            (u32_at(&r, 64), u32_at(&r, 68)),
            (Some(u32::MAX), Some(u32::MAX))
        );
    }

    #[test]
    fn timewait_minisocket_keeps_expires_and_substate() {
        // An orphaned FIN_WAIT_2 held as a tw sock: state 5, timer 3, inode 0.
        let b = msg(AF_INET, 5, 3, 0, &[]);
        let batch = parse_batch(&b).unwrap();
        let s = &batch.sockets[0];
        assert_eq!(s.state, State::FinWait2);
        assert_eq!(s.kind, SockKind::TimeWaitMini);
        assert!(s.is_orphan_fin_wait_2());
        assert_eq!(s.timer.unwrap().expires, Duration::from_millis(41_500));
        assert_eq!(s.local.to_string(), "127.0.0.1:8080");
        assert_eq!(s.peer.to_string(), "127.0.0.2:443");
        assert_eq!(s.cookie, Some((1 << 32) | 7));
        let t = s.state_time();
        assert_eq!(t.left, Some(Duration::from_millis(41_500)));
        assert!(!t.estimated);
    }

    #[test]
    fn tcp_info_of_any_length() {
        let mut info = vec![0u8; 280];
        info[0] = 8;
        info[56..60].copy_from_slice(&4104u32.to_ne_bytes());
        let b = msg(AF_INET, 8, 0, 99, &[(INET_DIAG_INFO, info.clone())]);
        let s = parse_batch(&b).unwrap().sockets.remove(0);
        assert_eq!(s.tcp_info.unwrap().last_ack_recv_ms, Some(4104));
        assert_eq!(s.state_time().age, Some(Duration::from_millis(4104)));
        assert!(s.state_time().estimated);
        // A 60-byte tcp_info (old kernel): later fields are absent, not garbage.
        let b = msg(AF_INET, 8, 0, 99, &[(INET_DIAG_INFO, info[..60].to_vec())]);
        let i = parse_batch(&b).unwrap().sockets[0].tcp_info.unwrap();
        assert_eq!(i.last_ack_recv_ms, Some(4104));
        assert_eq!(i.rtt_us, None);
        assert_eq!(i.bytes_received, None);
    }

    #[test]
    fn done_and_error() {
        let mut done = vec![0u8; 20];
        done[..4].copy_from_slice(&20u32.to_ne_bytes());
        done[4..6].copy_from_slice(&NLMSG_DONE.to_ne_bytes());
        assert!(parse_batch(&done).unwrap().done);
        let mut err = vec![0u8; 36];
        err[..4].copy_from_slice(&36u32.to_ne_bytes());
        err[4..6].copy_from_slice(&NLMSG_ERROR.to_ne_bytes());
        err[16..20].copy_from_slice(&(-22i32).to_ne_bytes());
        assert_eq!(
            parse_batch(&err).unwrap_err(),
            DiagError::Kernel { errno: 22 }
        );
    }

    #[test]
    fn truncated_message_is_an_error() {
        let b = msg(AF_INET, 1, 0, 5, &[]);
        let mut short = b[..40].to_vec();
        short[..4].copy_from_slice(&40u32.to_ne_bytes());
        assert!(matches!(
            parse_batch(&short),
            Err(DiagError::Truncated { .. })
        ));
        assert!(matches!(
            parse_batch(&b[..30]),
            Err(DiagError::Truncated { .. })
        ));
    }

    proptest! {
        #[test]
        fn garbage_never_panics(buf in proptest::collection::vec(any::<u8>(), 0..600)) {
            let _ = parse_batch(&buf);
            let _ = parse_msg(&buf);
            let _ = parse_tcp_info(&buf);
        }

        #[test]
        fn mutated_valid_message_never_panics(
            pos in 0usize..200, byte in any::<u8>(), cut in 0usize..200,
        ) {
            let mut b = msg(AF_INET6, 1, 1, 5, &[(INET_DIAG_INFO, vec![1; 104]), (INET_DIAG_SKMEMINFO, vec![2; 36])]);
            let n = b.len();
            b[pos % n] = byte;
            b.truncate(n - cut.min(n));
            let _ = parse_batch(&b);
        }
    }
}
