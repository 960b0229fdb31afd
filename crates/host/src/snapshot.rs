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

/// Receive buffer: the kernel fills dump skbs up to 32 KiB (netlink_dump()); a larger
/// buffer leaves room and never truncates a datagram.
const RECV_BUF: usize = 64 * 1024;

/// Dumps TCP sockets of the namespace the calling thread is in, through NETLINK_SOCK_DIAG.
pub fn dump_netlink(netns: &str, opts: &SnapshotOptions) -> Result<Vec<Socket>, HostError> {
    let nl_err = |step, source| HostError::Netlink {
        step,
        netns: netns.to_string(),
        source,
    };
    let fd = crate::sys::sock_diag_socket(1 << 20).map_err(|e| nl_err("open", e))?;
    let mask = if opts.states.is_empty() {
        diag::state_mask(&State::ALL)
    } else {
        diag::state_mask(&opts.states)
    };
    let mut out = Vec::new();
    let mut buf = vec![0u8; RECV_BUF];
    for (seq, family) in [Family::V4, Family::V6].into_iter().enumerate() {
        let req = diag::build_request(family, mask, opts.extensions, seq as u32 + 1);
        crate::sys::send(fd.as_fd(), &req).map_err(|e| nl_err("send", e))?;
        loop {
            let n = crate::sys::recv(fd.as_fd(), &mut buf).map_err(|e| nl_err("recv", e))?;
            if n == 0 {
                break;
            }
            match diag::parse_batch(&buf[..n]) {
                Ok(batch) => {
                    out.extend(batch.sockets);
                    if batch.done {
                        break;
                    }
                }
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
    Ok(out)
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

fn dump_here(name: &str, opts: &SnapshotOptions) -> DumpResult {
    let kernel = opts.kernel_context.then(crate::kernel::read);
    if opts.proc_only {
        let s = dump_proc(opts)?;
        return Ok((s, Source::ProcNet, Some("asked for /proc".into()), kernel));
    }
    match dump_netlink(name, opts) {
        Ok(s) => Ok((s, Source::SockDiag, None, kernel)),
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
    let targets = netns::resolve(sel)?;
    let mut snap = Snapshot {
        namespaces: Vec::new(),
        sockets: Vec::new(),
        warnings: Vec::new(),
    };
    for t in &targets {
        let result = netns::run_in(t, || dump_here(&t.name, opts)).and_then(|r| r);
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
        snap.sockets.append(&mut socks);
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
