//! Exact sock_diag lookups, batched: the tracker's questions ("the socket with this
//! 4-tuple, and this cookie") answered one socket each, never by a dump.
//!
//! Why not `tcpstate_host::snapshot::lookup`: it resolves the namespace, enters it in a
//! new thread and opens a netlink socket for every single lookup. The watcher asks for
//! thousands of sockets a second, so it opens one `NETLINK_SOCK_DIAG` socket per
//! namespace once (a netlink socket answers for the namespace it was created in, whatever
//! thread uses it later) and sends its requests in chunks: the kernel handles every
//! message of one `send()` in turn (`netlink_rcv_skb()` → `inet_diag_find_one_icsk()`, an
//! RCU hash lookup that takes no bucket lock, unlike a dump walking every bucket) and
//! queues one reply per request, matched back by sequence number. The request and the
//! reply's parsing are the host crate's (`diag::build_lookup_request`,
//! `diag::parse_msg`).

use crate::error::WatchError;
use rustix::net::{AddressFamily, RecvFlags, SendFlags, SocketFlags, SocketType};
use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::os::fd::OwnedFd;
use tcpstate_host::netns::{self, NetnsSelector};
use tcpstate_host::{diag, Socket};

const NLMSG_HDRLEN: usize = 16;
const NLMSG_ERROR: u16 = 2;
const SOCK_DIAG_BY_FAMILY: u16 = 20;

/// Requests per `send()`: their replies (one skb each, ~1 KiB of receive-buffer charge)
/// must fit the socket's receive buffer, whose default cap (`net.core.rmem_max`) is
/// 208 KiB. A reply dropped anyway is asked again on its own.
const CHUNK: usize = 64;

/// One question: local, remote, cookie.
pub type Ask = (SocketAddr, SocketAddr, Option<u64>);

struct Space {
    name: String,
    inode: Option<u64>,
    fd: OwnedFd,
}

/// Lookup sockets for the watched namespace(s).
pub struct Lookups {
    sel: NetnsSelector,
    spaces: Vec<Space>,
    seq: u32,
    buf: Vec<u8>,
    /// Lookups sent since the start.
    pub sent: u64,
}

fn open_in(t: &netns::NetnsTarget) -> Result<OwnedFd, WatchError> {
    let err = |step: &'static str, source: std::io::Error| WatchError::Lookup {
        netns: t.name.clone(),
        step,
        source,
    };
    netns::run_in(t, || {
        rustix::net::socket_with(
            AddressFamily::NETLINK,
            SocketType::DGRAM,
            SocketFlags::CLOEXEC,
            Some(rustix::net::netlink::SOCK_DIAG),
        )
    })?
    .map_err(|e| err("open a sock_diag socket", e.into()))
    .and_then(|fd| {
        rustix::net::sockopt::set_socket_recv_buffer_size(&fd, 1 << 20)
            .map_err(|e| err("set SO_RCVBUF", e.into()))?;
        Ok(fd)
    })
}

impl Lookups {
    /// Opens one sock_diag socket in each selected namespace.
    pub fn open(sel: &NetnsSelector) -> Result<Lookups, WatchError> {
        let mut l = Lookups {
            sel: sel.clone(),
            spaces: Vec::new(),
            seq: 0,
            buf: vec![0u8; 64 * 1024],
            sent: 0,
        };
        l.refresh()?;
        Ok(l)
    }

    /// nsfs inodes of the namespaces looked in.
    pub fn namespaces(&self) -> HashSet<u64> {
        self.spaces.iter().filter_map(|s| s.inode).collect()
    }

    /// With every namespace selected, namespaces come and go: the list is resolved again
    /// (sockets are kept for namespaces already known, so only a new one is entered).
    pub fn refresh(&mut self) -> Result<(), WatchError> {
        if !self.spaces.is_empty() && self.sel != NetnsSelector::All {
            return Ok(());
        }
        let targets = netns::resolve(&self.sel)?;
        let mut old: HashMap<Option<u64>, Space> =
            self.spaces.drain(..).map(|s| (s.inode, s)).collect();
        for t in &targets {
            let space = match old.remove(&t.inode).filter(|_| t.inode.is_some()) {
                Some(s) => s,
                None => match open_in(t) {
                    Ok(fd) => Space {
                        name: t.name.clone(),
                        inode: t.inode,
                        fd,
                    },
                    // A namespace gone meanwhile holds no socket to find.
                    Err(_) if self.sel == NetnsSelector::All => continue,
                    Err(e) => return Err(e),
                },
            };
            self.spaces.push(space);
        }
        Ok(())
    }

    /// Answers every question: the socket the kernel found (in the first namespace that
    /// holds it; `Socket::netns` is its index among [`Lookups::namespaces`]), or None.
    pub fn lookup(&mut self, asks: &[Ask]) -> Result<Vec<Option<Socket>>, WatchError> {
        let mut out: Vec<Option<Socket>> = vec![None; asks.len()];
        if asks.is_empty() {
            return Ok(out);
        }
        self.refresh()?;
        let mut todo: Vec<usize> = (0..asks.len()).collect();
        for ns in 0..self.spaces.len() {
            if todo.is_empty() {
                break;
            }
            for chunk in todo.chunks(CHUNK) {
                self.chunk(ns, asks, chunk, &mut out)?;
            }
            todo.retain(|&i| out[i].is_none());
        }
        Ok(out)
    }

    /// One `send()` of up to [`CHUNK`] requests, then their replies.
    fn chunk(
        &mut self,
        ns: usize,
        asks: &[Ask],
        idx: &[usize],
        out: &mut [Option<Socket>],
    ) -> Result<(), WatchError> {
        let mut req = Vec::with_capacity(idx.len() * 72);
        let mut by_seq: HashMap<u32, usize> = HashMap::with_capacity(idx.len());
        for &i in idx {
            let (local, remote, cookie) = asks[i];
            self.seq = self.seq.wrapping_add(1).max(1);
            by_seq.insert(self.seq, i);
            req.extend_from_slice(&diag::build_lookup_request(
                local, remote, cookie, 0, self.seq,
            ));
        }
        self.sent += idx.len() as u64;
        let space = &self.spaces[ns];
        let err = |step: &'static str, source: std::io::Error| WatchError::Lookup {
            netns: space.name.clone(),
            step,
            source,
        };
        rustix::net::send(&space.fd, &req, SendFlags::empty())
            .map_err(|e| err("send lookups", e.into()))?;
        // The kernel answered inside send(): every reply is queued already, so reading
        // never waits; what is missing was dropped (receive buffer full) and is asked
        // again alone.
        while !by_seq.is_empty() {
            let n = match rustix::net::recv(&space.fd, &mut self.buf[..], RecvFlags::DONTWAIT) {
                Ok((n, _)) => n,
                Err(rustix::io::Errno::AGAIN) | Err(rustix::io::Errno::NOBUFS) => break,
                Err(rustix::io::Errno::INTR) => continue,
                Err(e) => return Err(err("receive lookup replies", e.into())),
            };
            if n == 0 {
                break;
            }
            parse_replies(&self.buf[..n], &mut by_seq, out, ns).map_err(|source| {
                WatchError::Host(tcpstate_host::HostError::Diag {
                    netns: space.name.clone(),
                    source,
                })
            })?;
        }
        let lost: Vec<usize> = by_seq.into_values().collect();
        if !lost.is_empty() {
            if idx.len() == 1 {
                return Err(err(
                    "receive a lookup reply",
                    std::io::Error::other("the kernel's reply never came"),
                ));
            }
            for i in lost {
                self.chunk(ns, asks, &[i], out)?;
            }
        }
        Ok(())
    }
}

/// Parses one datagram of replies: each message answers the request with its sequence
/// number (removed from `pending` once answered).
fn parse_replies(
    buf: &[u8],
    pending: &mut HashMap<u32, usize>,
    out: &mut [Option<Socket>],
    ns: usize,
) -> Result<(), diag::DiagError> {
    let u32_at =
        |o: usize| -> Option<u32> { Some(u32::from_ne_bytes(buf.get(o..o + 4)?.try_into().ok()?)) };
    let mut off = 0;
    while off + NLMSG_HDRLEN <= buf.len() {
        let len = u32_at(off).unwrap_or(0) as usize;
        if len < NLMSG_HDRLEN || off + len > buf.len() {
            return Err(diag::DiagError::Truncated {
                what: "nlmsghdr",
                need: len.max(NLMSG_HDRLEN),
                have: buf.len() - off,
            });
        }
        let ty = u16::from_ne_bytes([buf[off + 4], buf[off + 5]]);
        let seq = u32_at(off + 8).unwrap_or(0);
        let payload = &buf[off + NLMSG_HDRLEN..off + len];
        if let Some(i) = pending.get(&seq).copied() {
            match ty {
                SOCK_DIAG_BY_FAMILY => {
                    let mut s = diag::parse_msg(payload)?;
                    s.netns = ns;
                    out[i] = Some(s);
                    pending.remove(&seq);
                }
                NLMSG_ERROR => {
                    let errno = payload
                        .get(..4)
                        .map(|b| i32::from_ne_bytes([b[0], b[1], b[2], b[3]]))
                        .ok_or(diag::DiagError::Truncated {
                            what: "nlmsgerr",
                            need: 4,
                            have: payload.len(),
                        })?;
                    let errno = errno.checked_neg().unwrap_or(i32::MAX);
                    let absent = [
                        0,
                        // Not there, or another socket (the cookie differs).
                        rustix::io::Errno::NOENT.raw_os_error(),
                        // IPv6 not built: no IPv6 socket to find.
                        rustix::io::Errno::INVAL.raw_os_error(),
                    ];
                    if !absent.contains(&errno) {
                        return Err(diag::DiagError::Kernel { errno });
                    }
                    pending.remove(&seq);
                }
                _ => {} // NLMSG_NOOP and friends
            }
        }
        off += (len + 3) & !3;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(ty: u16, seq: u32, payload: &[u8]) -> Vec<u8> {
        let len = NLMSG_HDRLEN + payload.len();
        let mut m = Vec::new();
        m.extend_from_slice(&(len as u32).to_ne_bytes());
        m.extend_from_slice(&ty.to_ne_bytes());
        m.extend_from_slice(&0u16.to_ne_bytes());
        m.extend_from_slice(&seq.to_ne_bytes());
        m.extend_from_slice(&0u32.to_ne_bytes());
        m.extend_from_slice(payload);
        while m.len() % 4 != 0 {
            m.push(0);
        }
        m
    }

    #[test]
    fn errors_answer_their_own_request_and_garbage_is_an_error() {
        let mut pending: HashMap<u32, usize> = [(5, 0), (6, 1)].into_iter().collect();
        let mut out = vec![None, None];
        let enoent = (-2i32).to_ne_bytes();
        parse_replies(&msg(NLMSG_ERROR, 6, &enoent), &mut pending, &mut out, 0).unwrap();
        assert_eq!(pending.len(), 1);
        assert!(pending.contains_key(&5), "seq 5 still waits for its reply");
        // Another errno is an error, not a socket that is not there.
        let eperm = (-1i32).to_ne_bytes();
        assert!(parse_replies(&msg(NLMSG_ERROR, 5, &eperm), &mut pending, &mut out, 0).is_err());
        // A truncated header or socket message: an error, no panic.
        let mut m = msg(SOCK_DIAG_BY_FAMILY, 5, &[0u8; 8]);
        assert!(parse_replies(&m, &mut pending, &mut out, 0).is_err());
        m.truncate(10);
        m[0] = 200;
        assert!(
            parse_replies(&m, &mut pending, &mut out, 0).is_ok(),
            "short tail ignored"
        );
        let mut long = msg(SOCK_DIAG_BY_FAMILY, 5, &[0u8; 8]);
        long[0] = 200;
        assert!(parse_replies(&long, &mut pending, &mut out, 0).is_err());
        assert!(out.iter().all(Option::is_none));
    }
}
