//! Taking a [`Snapshot`]: a sock_diag dump per namespace, or /proc/net/tcp when netlink is
//! unavailable (with the reason kept, so the output can say what is missing).

use crate::diag::{self, Family};
use crate::error::HostError;
use crate::model::{Namespace, Snapshot, Socket, Source};
use crate::netns::{self, NetnsSelector};
use std::os::fd::AsFd;
use tcpstate_fsm::State;

/// What to dump.
#[derive(Debug, Clone, Default)]
pub struct SnapshotOptions {
    /// States to ask the kernel for (filtered in the kernel); empty means all.
    pub states: Vec<State>,
    /// Ask for tcp_info and socket memory (needed for CLOSE_WAIT age, RTT).
    pub extensions: bool,
    /// Skip netlink and read /proc/net/tcp{,6} (what the fallback would do).
    pub proc_only: bool,
    /// Also read each namespace's sysctls and counters.
    pub kernel_context: bool,
}

/// Receive buffer: the kernel fills each dump skb up to ~32 KiB (netlink_dump() sizes it
/// from the reader's last recvmsg length, capped in netlink_recvmsg()), so 64 KiB always
/// holds one datagram whole; a dump of 100k sockets is ~300 datagrams.
const RECV_BUF: usize = 64 * 1024;

/// SO_RCVBUF of the netlink socket: netlink_dump() only refills while the socket has room.
const SOCKET_RCVBUF: usize = 1 << 20;

/// Which kernel extensions the caller needs, per state: finer than
/// [`SnapshotOptions::extensions`] (everything for every socket). A table that shows only
/// the CLOSE_WAIT age needs `tcp_info` for CLOSE_WAIT sockets and no memory information.
///
/// The kernel takes one extension set per request, and each request walks every bucket of
/// its established hash (`inet_diag_dump_icsk()`), which costs more than filling `tcp_info`
/// for every full socket (measured with 120k sockets: two requests with `tcp_info` for all,
/// 240 ms, against four requests split by state, 270 ms). So one request per address
/// family asks for the union of what the wanted states need: sockets of other states may
/// carry a `tcp_info` too, and a dump that wants no CLOSE_WAIT asks for none.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Extensions {
    /// States whose sockets need `struct tcp_info` (`INET_DIAG_INFO`).
    pub tcp_info: Vec<State>,
    /// States whose sockets need socket memory (`INET_DIAG_SKMEMINFO`).
    pub memory: Vec<State>,
}

impl Extensions {
    /// Everything for every state (what `SnapshotOptions::extensions` asks for).
    pub fn all() -> Extensions {
        Extensions {
            tcp_info: State::ALL.to_vec(),
            memory: State::ALL.to_vec(),
        }
    }

    /// The request: the state mask and the `idiag_ext` bits the wanted states need.
    fn request(&self, states: &[State]) -> (u32, u8) {
        let wanted: &[State] = if states.is_empty() {
            &State::ALL
        } else {
            states
        };
        let mut ext = 0;
        if wanted.iter().any(|s| self.tcp_info.contains(s)) {
            ext |= diag::EXT_TCP_INFO;
        }
        if wanted.iter().any(|s| self.memory.contains(s)) {
            ext |= diag::EXT_SKMEMINFO;
        }
        (diag::state_mask(wanted), ext)
    }
}

/// How many TCP sockets the namespace of the calling thread holds, from
/// /proc/net/sockstat{,6} (`inuse` + `tw`): a capacity hint, so a dump of 100k sockets is
/// parsed into one allocation instead of a vector grown (and copied) by doubling.
fn expected_sockets() -> usize {
    let read = |f: &str| std::fs::read_to_string(format!("/proc/thread-self/net/{f}")).ok();
    let v4 = read("sockstat")
        .and_then(|t| crate::kernel::parse_sockstat(&t))
        .map_or(0, |s| s.inuse + s.tw);
    let v6 = read("sockstat6")
        .and_then(|t| {
            let line = t.lines().find(|l| l.starts_with("TCP6:"))?;
            let mut it = line.split_whitespace().skip_while(|w| *w != "inuse");
            it.next()?;
            it.next()?.parse::<u64>().ok()
        })
        .unwrap_or(0);
    // Sockets come and go during the dump; a little slack avoids one late doubling.
    usize::try_from(v4 + v6)
        .unwrap_or(0)
        .saturating_add(256)
        .min(1 << 22)
}

/// Dumps TCP sockets of the namespace the calling thread is in, through NETLINK_SOCK_DIAG.
pub fn dump_netlink(netns: &str, opts: &SnapshotOptions) -> Result<Vec<Socket>, HostError> {
    let ext = if opts.extensions {
        Extensions::all()
    } else {
        Extensions::default()
    };
    let mut out = Vec::new();
    dump_netlink_into(netns, &opts.states, &ext, &mut out)?;
    Ok(out)
}

/// Like [`dump_netlink`], with extensions per state, appending to `out`.
pub fn dump_netlink_into(
    netns: &str,
    states: &[State],
    ext: &Extensions,
    out: &mut Vec<Socket>,
) -> Result<(), HostError> {
    let nl_err = |step, source| HostError::Netlink {
        step,
        netns: netns.to_string(),
        source,
    };
    let fd = crate::sys::sock_diag_socket(SOCKET_RCVBUF).map_err(|e| nl_err("open", e))?;
    out.reserve(expected_sockets());
    let mut buf = vec![0u8; RECV_BUF];
    let (mask, bits) = ext.request(states);
    for (seq, family) in [Family::V4, Family::V6].into_iter().enumerate() {
        let req = diag::build_request_ext(family, mask, bits, seq as u32 + 1);
        crate::sys::send(fd.as_fd(), &req).map_err(|e| nl_err("send", e))?;
        loop {
            let n = crate::sys::recv(fd.as_fd(), &mut buf).map_err(|e| nl_err("recv", e))?;
            if n == 0 {
                break;
            }
            match diag::parse_batch_into(&buf[..n], out) {
                Ok(true) => break,
                Ok(false) => {}
                // IPv6 disabled or not built: there are no IPv6 sockets to miss.
                Err(diag::DiagError::Kernel { errno })
                    if family == Family::V6 && (errno == libc::ENOENT || errno == libc::EINVAL) =>
                {
                    break
                }
                Err(source) => {
                    return Err(HostError::Diag {
                        netns: netns.to_string(),
                        source,
                    })
                }
            }
        }
    }
    Ok(())
}

/// Looks up one socket by 4-tuple (and cookie, when given) in the namespace the calling
/// thread is in, without a dump: see [`diag::build_lookup_request`]. `Ok(None)`: no such
/// socket (or another one with that tuple, when the cookie differs).
pub fn lookup_here(
    netns: &str,
    local: std::net::SocketAddr,
    peer: std::net::SocketAddr,
    cookie: Option<u64>,
    ext: &Extensions,
) -> Result<Option<Socket>, HostError> {
    let nl_err = |step, source| HostError::Netlink {
        step,
        netns: netns.to_string(),
        source,
    };
    let fd = crate::sys::sock_diag_socket(RECV_BUF).map_err(|e| nl_err("open", e))?;
    let (_, bits) = ext.request(&[]);
    let req = diag::build_lookup_request(local, peer, cookie, bits, 1);
    crate::sys::send(fd.as_fd(), &req).map_err(|e| nl_err("send", e))?;
    let mut buf = vec![0u8; RECV_BUF];
    let n = crate::sys::recv(fd.as_fd(), &mut buf).map_err(|e| nl_err("recv", e))?;
    let mut out = Vec::with_capacity(1);
    match diag::parse_batch_into(&buf[..n], &mut out) {
        Ok(_) => Ok(out.pop()),
        Err(diag::DiagError::Kernel { errno }) if errno == libc::ENOENT => Ok(None),
        Err(source) => Err(HostError::Diag {
            netns: netns.to_string(),
            source,
        }),
    }
}

/// [`lookup_here`] in the selected namespace(s): the first namespace holding the socket
/// answers (its index in the namespaces `netns::resolve` gives is set in `Socket::netns`).
pub fn lookup(
    sel: &NetnsSelector,
    local: std::net::SocketAddr,
    peer: std::net::SocketAddr,
    cookie: Option<u64>,
) -> Result<Option<Socket>, HostError> {
    for (i, t) in netns::resolve(sel)?.iter().enumerate() {
        let found = netns::run_in(t, || {
            lookup_here(&t.name, local, peer, cookie, &Extensions::all())
        })??;
        if let Some(mut s) = found {
            s.netns = i;
            return Ok(Some(s));
        }
    }
    Ok(None)
}

/// Reads /proc/thread-self/net/tcp{,6} of the namespace the calling thread is in.
pub fn dump_proc(opts: &SnapshotOptions) -> Result<Vec<Socket>, HostError> {
    let mut out = Vec::new();
    for file in ["tcp", "tcp6"] {
        let path = format!("/proc/thread-self/net/{file}");
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if file == "tcp6" && e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(HostError::read(path, e)),
        };
        let socks =
            crate::procnet::parse(&text, &opts.states).map_err(|source| HostError::ProcNet {
                path: path.into(),
                source,
            })?;
        out.extend(socks);
    }
    Ok(out)
}

fn error_chain(e: &HostError) -> String {
    let mut s = e.to_string();
    let mut cur: Option<&dyn std::error::Error> = std::error::Error::source(e);
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

type DumpResult = Result<
    (
        Vec<Socket>,
        Source,
        Option<String>,
        Option<crate::KernelContext>,
    ),
    HostError,
>;

fn dump_here(name: &str, opts: &SnapshotOptions, ext: &Extensions) -> DumpResult {
    let kernel = opts.kernel_context.then(crate::kernel::read);
    if opts.proc_only {
        let s = dump_proc(opts)?;
        return Ok((s, Source::ProcNet, Some("asked for /proc".into()), kernel));
    }
    let mut s = Vec::new();
    match dump_netlink_into(name, &opts.states, ext, &mut s) {
        Ok(()) => Ok((s, Source::SockDiag, None, kernel)),
        Err(e) => {
            let reason = error_chain(&e);
            let s = dump_proc(opts)?;
            Ok((s, Source::ProcNet, Some(reason), kernel))
        }
    }
}

/// Takes a snapshot of the selected namespaces. With [`NetnsSelector::All`] a namespace
/// that vanishes or cannot be entered is skipped and named in `warnings`; otherwise it is
/// an error.
pub fn take(sel: &NetnsSelector, opts: &SnapshotOptions) -> Result<Snapshot, HostError> {
    let ext = if opts.extensions {
        Extensions::all()
    } else {
        Extensions::default()
    };
    take_with(sel, opts, &ext)
}

/// Like [`take`], with the extensions chosen per state by `ext` (`opts.extensions` is
/// ignored): e.g. `tcp_info` for CLOSE_WAIT sockets only, which is all a table needs.
pub fn take_with(
    sel: &NetnsSelector,
    opts: &SnapshotOptions,
    ext: &Extensions,
) -> Result<Snapshot, HostError> {
    let targets = netns::resolve(sel)?;
    let mut snap = Snapshot {
        namespaces: Vec::new(),
        sockets: Vec::new(),
        warnings: Vec::new(),
    };
    for t in &targets {
        let result = netns::run_in(t, || dump_here(&t.name, opts, ext)).and_then(|r| r);
        let (mut socks, source, fallback_reason, kernel) = match result {
            Ok(r) => r,
            Err(e) if *sel == NetnsSelector::All => {
                snap.warnings.push(format!("skipped: {}", error_chain(&e)));
                continue;
            }
            Err(e) => return Err(e),
        };
        let idx = snap.namespaces.len();
        for s in &mut socks {
            s.netns = idx;
        }
        if snap.sockets.is_empty() {
            snap.sockets = socks; // no copy of the (large) first namespace's rows
        } else {
            snap.sockets.append(&mut socks);
        }
        snap.namespaces.push(Namespace {
            name: t.name.clone(),
            inode: t.inode,
            source,
            fallback_reason,
            kernel,
        });
    }
    Ok(snap)
}
