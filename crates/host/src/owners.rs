//! Who holds each socket: socket inode → pid, process name, fd, command line, read from
//! `/proc/*/fd`, and the dead sockets still held (TCP fds whose inode is in no table).
//!
//! A readlink costs 4–5 µs and hosts have 100k+ fds, so the scan is shaped by what is
//! wanted rather than done in full:
//! - it only runs when the caller needs owners, and only for the wanted inodes;
//! - processes whose uid owns a wanted socket (sock_diag's `idiag_uid`) are scanned first,
//!   the rest only while some wanted inode is still unfound (a process may have changed
//!   uid after creating its socket);
//! - it stops as soon as every wanted inode is found (unless dead sockets are sought,
//!   which needs every socket fd);
//! - workers take processes from a shared queue in parallel;
//! - a process or fd that vanishes mid-scan is skipped and counted, not an error.
//!
//! A dead-socket candidate (a TCP/TCPv6 fd, by the `system.sockprotoname` xattr, whose
//! inode is in no dumped table) is only reported after verifying it: the fd is duplicated
//! with pidfd_getfd(2) and `TCP_INFO` must say CLOSE with segments exchanged. That rules
//! out sockets of namespaces that were not dumped and fresh, never-connected sockets.

use crate::model::{Owner, TcpInfo};
use serde::Serialize;
use std::collections::{HashMap, HashSet};
#[cfg(target_os = "linux")]
use {
    crate::diag::parse_tcp_info,
    std::fs::File,
    std::os::fd::AsFd,
    std::os::unix::fs::MetadataExt,
    std::sync::atomic::{AtomicUsize, Ordering},
    std::sync::Mutex,
};

/// What to look for.
#[derive(Debug, Default)]
pub struct OwnerQuery {
    /// Socket inodes whose holders are wanted.
    pub wanted: HashSet<u64>,
    /// Uids owning the wanted sockets (scanned first).
    pub uids: HashSet<u32>,
    /// Every inode in the dumped tables; when set, dead sockets held are sought too, which
    /// needs a full scan.
    pub known: Option<HashSet<u64>>,
    /// nsfs inodes of the network namespaces dumped: processes in them are scanned first
    /// (sockets are usually held by processes of their own namespace), and only they are
    /// searched for dead sockets. `None`: no preference, every process searched.
    pub netns: Option<HashSet<u64>>,
    /// Worker threads (0: one per CPU, at most 8).
    pub threads: usize,
}

/// A TCP socket that left every table (reset, or closed after LAST_ACK) while a process
/// still holds its fd.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DeadSocket {
    /// Who holds it.
    #[serde(flatten)]
    pub owner: Owner,
    /// Its inode.
    pub inode: u64,
    /// `TCP` or `TCPv6`.
    pub protocol: String,
    /// `TCP_INFO` read through a duplicate of the fd.
    pub tcp_info: TcpInfo,
}

/// What the scan found, and what it could not see.
#[derive(Debug, Default, Serialize)]
pub struct OwnerScan {
    /// Holder of each wanted inode that was found.
    #[serde(skip)]
    pub owners: HashMap<u64, Owner>,
    /// Verified dead sockets still held.
    pub dead: Vec<DeadSocket>,
    /// TCP fds in no table that could not be verified (pidfd_getfd refused).
    pub dead_unverified: usize,
    /// Processes whose fds were read.
    pub processes_scanned: usize,
    /// Processes in /proc.
    pub processes_total: usize,
    /// fd links read.
    pub fds_read: usize,
    /// Processes whose fds could not be read (permission denied).
    pub processes_denied: usize,
    /// Processes that exited during the scan.
    pub processes_vanished: usize,
    /// The scan stopped early: every wanted inode was found.
    pub stopped_early: bool,
}

#[cfg(target_os = "linux")]
fn pids(with_netns: bool) -> Vec<(u32, Option<u32>, Option<u64>)> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.flatten()
        .filter_map(|e| {
            let pid: u32 = e.file_name().to_str()?.parse().ok()?;
            let uid = e.metadata().ok().map(|m| m.uid());
            let ns = if with_netns {
                std::fs::metadata(format!("/proc/{pid}/ns/net"))
                    .ok()
                    .map(|m| m.ino())
            } else {
                None
            };
            Some((pid, uid, ns))
        })
        .collect()
}

/// Parses a fd link target `socket:[12345]`.
pub fn socket_inode(link: &[u8]) -> Option<u64> {
    let rest = link.strip_prefix(b"socket:[")?.strip_suffix(b"]")?;
    std::str::from_utf8(rest).ok()?.parse().ok()
}

#[cfg(target_os = "linux")]
fn read_trimmed(path: &str) -> String {
    std::fs::read(path)
        .map(|b| {
            let s: Vec<u8> = b.iter().map(|&c| if c == 0 { b' ' } else { c }).collect();
            String::from_utf8_lossy(&s).trim().to_string()
        })
        .unwrap_or_default()
}

/// A process's name and command line.
#[cfg(target_os = "linux")]
fn process_info(pid: u32) -> (String, String) {
    (
        read_trimmed(&format!("/proc/{pid}/comm")),
        read_trimmed(&format!("/proc/{pid}/cmdline")),
    )
}

#[cfg(target_os = "linux")]
fn owner_of(pid: u32, fd: u32, cache: &mut Option<(String, String)>) -> Owner {
    let (process, cmdline) = cache.get_or_insert_with(|| process_info(pid));
    Owner {
        pid,
        process: process.clone(),
        fd,
        cmdline: cmdline.clone(),
    }
}

#[cfg(target_os = "linux")]
enum Verdict {
    Dead(TcpInfo),
    Alive,
    Unverified,
}

#[cfg(target_os = "linux")]
/// Checks a candidate through a duplicate of the fd: `TCP_INFO` state CLOSE (7) and at
/// least one segment exchanged (a fresh, never-connected socket has none).
fn verify_dead(pid: u32, fd: u32) -> Verdict {
    let Ok(pidfd) = crate::sys::pidfd_open(pid) else {
        return Verdict::Unverified;
    };
    let Ok(dup) = crate::sys::pidfd_getfd(pidfd.as_fd(), fd) else {
        return Verdict::Unverified;
    };
    let Ok(raw) = crate::sys::tcp_info(dup.as_fd()) else {
        return Verdict::Unverified;
    };
    let info = parse_tcp_info(&raw);
    let exchanged = info.segs_in.unwrap_or(0) > 0 || info.segs_out.unwrap_or(0) > 0;
    if info.state == 7 && exchanged {
        Verdict::Dead(info)
    } else {
        Verdict::Alive
    }
}

/// A hasher for socket inodes (already well spread): one multiply instead of SipHash, for
/// the sets probed once per fd read.
#[derive(Default, Clone, Copy)]
struct InodeHasher(u64);

impl std::hash::Hasher for InodeHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0 ^ u64::from(*b)).wrapping_mul(0x100_0000_01b3);
        }
    }
    fn write_u64(&mut self, x: u64) {
        self.0 = (x ^ (x >> 29)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
}

type InodeMap<V> = HashMap<u64, V, std::hash::BuildHasherDefault<InodeHasher>>;

#[cfg(target_os = "linux")]
struct Shared {
    /// Record every socket fd (a [`prescan`]), not only the wanted ones.
    collect_all: bool,
    /// Wanted inode -> its slot in `claimed`.
    slots: InodeMap<usize>,
    /// One flag per wanted inode: set by the first fd found holding it, so a socket shared
    /// by several processes (fork, SCM_RIGHTS) is counted once.
    claimed: Vec<std::sync::atomic::AtomicBool>,
    known: Option<InodeMap<()>>,
    remaining: AtomicUsize,
    found: Mutex<Vec<(u64, u32, u32)>>,
    processes: Mutex<HashMap<u32, (String, String)>>,
    dead: Mutex<Vec<DeadSocket>>,
    dead_unverified: AtomicUsize,
    scanned: AtomicUsize,
    fds: AtomicUsize,
    denied: AtomicUsize,
    vanished: AtomicUsize,
}

/// Writes `n` as a NUL-terminated decimal into `buf` (an fd's name under /proc/PID/fd).
#[cfg(target_os = "linux")]
fn fd_name(buf: &mut [u8; 12], mut n: u32) -> &std::ffi::CStr {
    let mut at = buf.len() - 1;
    buf[at] = 0;
    loop {
        at -= 1;
        buf[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    // Digits and one NUL at the end: always a valid C string.
    std::ffi::CStr::from_bytes_with_nul(&buf[at..]).unwrap_or_default()
}

#[cfg(target_os = "linux")]
impl Shared {
    fn done(&self) -> bool {
        !self.collect_all && self.known.is_none() && self.remaining.load(Ordering::Relaxed) == 0
    }

    /// Reads the fds of one process. Each fd costs a readlinkat(2) relative to the open
    /// /proc/PID/fd (no path walk from /). Listing the directory (getdents) costs as much
    /// again, since procfs builds a dentry per fd, so when the kernel tells the fd count
    /// (st_size of /proc/PID/fd, Linux >= 6.2) the fd numbers are probed in order instead,
    /// which visits a dense table (the usual case) once; a sparse table falls back to the
    /// listing after a bounded number of misses.
    fn scan_pid(&self, pid: u32, dead_ok: bool) {
        let dir_path = format!("/proc/{pid}/fd");
        let dir = match File::open(&dir_path) {
            Ok(d) => d,
            Err(e) => {
                match e.kind() {
                    std::io::ErrorKind::PermissionDenied => &self.denied,
                    _ => &self.vanished,
                }
                .fetch_add(1, Ordering::Relaxed);
                return;
            }
        };
        self.scanned.fetch_add(1, Ordering::Relaxed);
        let count = dir.metadata().map_or(0, |m| m.len());
        let mut cache = None;
        let mut hits = Vec::new();
        let mut link = [0u8; 64];
        let mut name = [0u8; 12];
        let mut n_fds = 0usize;
        let mut visit = |fd: u32, this: &Self| -> bool {
            let Ok(n) = crate::sys::readlinkat(dir.as_fd(), fd_name(&mut name, fd), &mut link)
            else {
                return false; // no such fd (or closed meanwhile)
            };
            n_fds += 1;
            if let Some(inode) = socket_inode(&link[..n.min(link.len())]) {
                this.on_socket(pid, fd, inode, dead_ok, &dir_path, &mut cache, &mut hits);
            }
            true
        };
        let mut probed_to = 0u32;
        if count > 0 {
            let mut misses = 0u64;
            let mut seen = 0u64;
            while seen < count && !self.done() {
                if visit(probed_to, self) {
                    seen += 1;
                } else {
                    misses += 1;
                    if misses > 64 + seen / 8 {
                        break; // sparse: list the rest
                    }
                }
                probed_to += 1;
            }
            if seen >= count || self.done() {
                probed_to = u32::MAX;
            }
        }
        if probed_to != u32::MAX {
            if let Ok(list) = std::fs::read_dir(&dir_path) {
                for entry in list.flatten() {
                    if self.done() {
                        break;
                    }
                    let Some(fd) = entry.file_name().to_str().and_then(|s| s.parse().ok()) else {
                        continue;
                    };
                    if fd >= probed_to {
                        visit(fd, self);
                    }
                }
            }
        }
        if !hits.is_empty() {
            self.found
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .append(&mut hits);
            if let Some(info) = cache {
                self.processes
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(pid, info);
            }
        }
        self.fds.fetch_add(n_fds, Ordering::Relaxed);
    }

    #[allow(clippy::too_many_arguments)]
    fn on_socket(
        &self,
        pid: u32,
        fd: u32,
        inode: u64,
        dead_ok: bool,
        dir_path: &str,
        cache: &mut Option<(String, String)>,
        hits: &mut Vec<(u64, u32, u32)>,
    ) {
        if self.collect_all {
            if cache.is_none() {
                *cache = Some(process_info(pid));
            }
            hits.push((inode, pid, fd));
            return;
        }
        if let Some(&slot) = self.slots.get(&inode) {
            if !self.claimed[slot].swap(true, Ordering::Relaxed) {
                if cache.is_none() {
                    *cache = Some(process_info(pid));
                }
                hits.push((inode, pid, fd));
                self.remaining.fetch_sub(1, Ordering::Relaxed);
            }
            return;
        }
        let Some(known) = self.known.as_ref().filter(|_| dead_ok) else {
            return;
        };
        if known.contains_key(&inode) {
            return;
        }
        let path = std::path::PathBuf::from(format!("{dir_path}/{fd}"));
        let Ok(proto) = crate::sys::getxattr(&path, "system.sockprotoname") else {
            return;
        };
        let proto = String::from_utf8_lossy(&proto)
            .trim_end_matches('\0')
            .to_string();
        if proto != "TCP" && proto != "TCPv6" {
            return;
        }
        match verify_dead(pid, fd) {
            Verdict::Dead(tcp_info) => {
                let d = DeadSocket {
                    owner: owner_of(pid, fd, cache),
                    inode,
                    protocol: proto,
                    tcp_info,
                };
                self.dead.lock().unwrap_or_else(|e| e.into_inner()).push(d);
            }
            Verdict::Unverified => {
                self.dead_unverified.fetch_add(1, Ordering::Relaxed);
            }
            Verdict::Alive => {}
        }
    }
}

#[cfg(target_os = "linux")]
impl Shared {
    fn new(q: Option<&OwnerQuery>) -> Shared {
        let slots: InodeMap<usize> = q.map_or_else(InodeMap::default, |q| {
            q.wanted.iter().enumerate().map(|(i, w)| (*w, i)).collect()
        });
        Shared {
            collect_all: q.is_none(),
            claimed: (0..slots.len())
                .map(|_| std::sync::atomic::AtomicBool::new(false))
                .collect(),
            slots,
            known: q
                .and_then(|q| q.known.as_ref())
                .map(|k| k.iter().map(|i| (*i, ())).collect()),
            remaining: AtomicUsize::new(q.map_or(0, |q| q.wanted.len())),
            found: Mutex::new(Vec::new()),
            processes: Mutex::new(HashMap::new()),
            dead: Mutex::new(Vec::new()),
            dead_unverified: AtomicUsize::new(0),
            scanned: AtomicUsize::new(0),
            fds: AtomicUsize::new(0),
            denied: AtomicUsize::new(0),
            vanished: AtomicUsize::new(0),
        }
    }

    /// Workers take processes from `order` until `finished(index)` or the end.
    fn run(
        &self,
        order: &[u32],
        dead_until: usize,
        threads: usize,
        finished: impl Fn(usize) -> bool + Sync,
    ) {
        let threads = match threads {
            0 => std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(2)
                .min(8),
            n => n,
        };
        let next = AtomicUsize::new(0);
        let work = || loop {
            let i = next.fetch_add(1, Ordering::Relaxed);
            if finished(i) {
                break;
            }
            let Some(pid) = order.get(i) else {
                break;
            };
            self.scan_pid(*pid, i < dead_until);
        };
        if threads <= 1 || order.len() < 4 {
            work();
        } else {
            std::thread::scope(|s| {
                for _ in 1..threads {
                    s.spawn(work);
                }
                work();
            });
        }
    }
}

/// Every socket fd of the processes in some network namespaces, read before the caller
/// knows which sockets it wants (see [`prescan`]).
#[derive(Debug, Default)]
pub struct Prescan {
    /// (inode, pid, fd) of every socket fd read.
    found: Vec<(u64, u32, u32)>,
    /// Name and command line of the processes with a socket fd.
    processes: HashMap<u32, (String, String)>,
    /// The processes read (or found unreadable).
    pids: HashSet<u32>,
    scanned: usize,
    fds: usize,
    denied: usize,
    vanished: usize,
}

#[cfg(target_os = "linux")]
/// Reads every socket fd of the processes in the network namespaces `netns` (nsfs
/// inodes), e.g. while the socket dump is still running: when the output shows every
/// socket, their holders are mostly those processes and all of them must be read anyway,
/// so the read need not wait for the dump. [`scan_after`] then only reads other processes
/// for what is still unfound.
pub fn prescan(netns: &HashSet<u64>, threads: usize) -> Prescan {
    let order: Vec<u32> = pids(true)
        .into_iter()
        .filter(|(_, _, ns)| ns.is_some_and(|n| netns.contains(&n)))
        .map(|(pid, _, _)| pid)
        .collect();
    let shared = Shared::new(None);
    shared.run(&order, 0, threads, |_| false);
    Prescan {
        found: shared.found.into_inner().unwrap_or_else(|e| e.into_inner()),
        processes: shared
            .processes
            .into_inner()
            .unwrap_or_else(|e| e.into_inner()),
        pids: order.into_iter().collect(),
        scanned: shared.scanned.into_inner(),
        fds: shared.fds.into_inner(),
        denied: shared.denied.into_inner(),
        vanished: shared.vanished.into_inner(),
    }
}

/// Holders remembered across scans, for callers that ask again and again (a metrics
/// scrape, a watcher): a remembered holder is re-checked with one readlink of
/// `/proc/PID/fd/N`, and only the inodes not confirmed that way cost a scan, so a steady
/// state costs O(wanted) instead of O(every fd on the host). The cache keeps the holders of
/// the last scan only, so it never grows past one scan's answer.
#[derive(Debug, Default)]
pub struct OwnerCache {
    holders: HashMap<u64, Owner>,
}

impl OwnerCache {
    /// An empty cache.
    pub fn new() -> OwnerCache {
        OwnerCache::default()
    }

    /// Inodes remembered.
    pub fn len(&self) -> usize {
        self.holders.len()
    }

    /// Nothing remembered.
    pub fn is_empty(&self) -> bool {
        self.holders.is_empty()
    }

    #[cfg(target_os = "linux")]
    /// [`scan`], confirming remembered holders first. A dead-socket search (`q.known`)
    /// reads every process of the namespaces anyway, so it gains nothing from the cache.
    pub fn scan(&mut self, q: &OwnerQuery) -> OwnerScan {
        let mut pre = Prescan::default();
        for inode in &q.wanted {
            let Some(o) = self.holders.get(inode) else {
                continue;
            };
            pre.fds += 1;
            let mut link = [0u8; 64];
            let path = format!("/proc/{}/fd/{}", o.pid, o.fd);
            let Ok(target) = std::fs::read_link(&path) else {
                continue; // the process or the fd is gone
            };
            let bytes = target.as_os_str().as_encoded_bytes();
            let n = bytes.len().min(link.len());
            link[..n].copy_from_slice(&bytes[..n]);
            if socket_inode(&link[..n]) != Some(*inode) {
                continue; // the fd number now holds something else
            }
            pre.found.push((*inode, o.pid, o.fd));
            // The pid may have been reused by a program that inherited the fd: re-read
            // its name once per process.
            pre.processes
                .entry(o.pid)
                .or_insert_with(|| process_info(o.pid));
        }
        let result = scan_after(q, pre);
        self.holders = result.owners.clone();
        result
    }
}

#[cfg(target_os = "linux")]
/// Scans /proc for the holders of the wanted inodes (and dead sockets when asked).
pub fn scan(q: &OwnerQuery) -> OwnerScan {
    scan_after(q, Prescan::default())
}

#[cfg(target_os = "linux")]
/// [`scan`], starting from what a [`prescan`] already read: its processes are not read
/// again. A dead-socket search (`q.known`) verifies fds one by one, so it ignores the
/// prescan and reads every process itself.
pub fn scan_after(q: &OwnerQuery, pre: Prescan) -> OwnerScan {
    scan_inner(q, pre, false)
}

#[cfg(target_os = "linux")]
/// [`scan`] limited to the processes in `q.netns` (all processes when it is `None`): an
/// inode not held there is left unfound instead of making the scan read every fd on the
/// host. For callers that know the socket's holder lives in its own namespace (a watcher
/// naming the program behind a connection) and prefer a quick "unknown" to a full scan.
pub fn scan_netns_only(q: &OwnerQuery) -> OwnerScan {
    scan_inner(q, Prescan::default(), true)
}

#[cfg(target_os = "linux")]
fn scan_inner(q: &OwnerQuery, mut pre: Prescan, only_netns: bool) -> OwnerScan {
    if q.known.is_some() {
        pre = Prescan::default();
    }
    let mut order = pids(q.netns.is_some());
    let total = order.len();
    order.retain(|(pid, _, _)| !pre.pids.contains(pid));
    let in_ns = |ns: Option<u64>| match &q.netns {
        Some(set) => ns.is_some_and(|n| set.contains(&n)),
        None => true,
    };
    if only_netns {
        order.retain(|(_, _, ns)| in_ns(*ns));
    }
    let considered = order.len() + pre.pids.len();
    // Priority: processes in the dumped namespaces, then processes of the uids that own
    // wanted sockets; the rest only while something is still unfound.
    order.sort_by_key(|(pid, uid, ns)| {
        (!in_ns(*ns), !uid.is_some_and(|u| q.uids.contains(&u)), *pid)
    });
    // The dead-socket search needs every process of the namespaces (a prefix of `order`).
    let dead_until = order.iter().take_while(|(_, _, ns)| in_ns(*ns)).count();
    let order: Vec<u32> = order.into_iter().map(|(pid, _, _)| pid).collect();
    let shared = Shared::new(Some(q));
    // What the prescan found: the lowest (pid, fd) holding each wanted inode claims it.
    pre.found.sort_unstable_by_key(|(_, pid, fd)| (*pid, *fd));
    let mut claimed_pre = Vec::new();
    for (inode, pid, fd) in pre.found {
        if let Some(&slot) = shared.slots.get(&inode) {
            if !shared.claimed[slot].swap(true, Ordering::Relaxed) {
                shared.remaining.fetch_sub(1, Ordering::Relaxed);
                claimed_pre.push((inode, pid, fd));
            }
        }
    }
    if !(q.wanted.is_empty() && q.known.is_none()) {
        let finished = |i: usize| {
            shared.remaining.load(Ordering::Relaxed) == 0 && (q.known.is_none() || i >= dead_until)
        };
        shared.run(&order, dead_until, q.threads, finished);
    }
    let seen = shared.scanned.load(Ordering::Relaxed)
        + shared.denied.load(Ordering::Relaxed)
        + shared.vanished.load(Ordering::Relaxed)
        + pre.scanned
        + pre.denied
        + pre.vanished;
    let stopped_early = seen < considered;
    let mut dead = shared.dead.into_inner().unwrap_or_else(|e| e.into_inner());
    dead.sort_by_key(|d| (d.owner.pid, d.owner.fd));
    let mut processes = shared
        .processes
        .into_inner()
        .unwrap_or_else(|e| e.into_inner());
    processes.extend(pre.processes);
    let mut found = shared.found.into_inner().unwrap_or_else(|e| e.into_inner());
    found.append(&mut claimed_pre);
    let mut owners = HashMap::with_capacity(found.len());
    for (inode, pid, fd) in found {
        let (process, cmdline) = processes.get(&pid).cloned().unwrap_or_default();
        owners.insert(
            inode,
            Owner {
                pid,
                process,
                fd,
                cmdline,
            },
        );
    }
    OwnerScan {
        owners,
        dead,
        dead_unverified: shared.dead_unverified.into_inner(),
        processes_scanned: shared.scanned.into_inner() + pre.scanned,
        processes_total: total,
        fds_read: shared.fds.into_inner() + pre.fds,
        processes_denied: shared.denied.into_inner() + pre.denied,
        processes_vanished: shared.vanished.into_inner() + pre.vanished,
        stopped_early,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_socket_links_only() {
        assert_eq!(socket_inode(b"socket:[524713]"), Some(524713));
        assert_eq!(socket_inode(b"pipe:[1]"), None);
        assert_eq!(socket_inode(b"socket:[]"), None);
        assert_eq!(socket_inode(b"socket:[12"), None);
        assert_eq!(socket_inode(b"/dev/null"), None);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn finds_own_socket_and_stops_early() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let fd = std::os::fd::AsRawFd::as_raw_fd(&l) as u32;
        let link = std::fs::read_link(format!("/proc/self/fd/{fd}")).unwrap();
        let inode = socket_inode(link.as_os_str().as_encoded_bytes()).unwrap();
        let me = std::process::id();
        use std::os::unix::fs::MetadataExt;
        let q = OwnerQuery {
            wanted: [inode].into(),
            uids: [std::fs::metadata("/proc/self").unwrap().uid()].into(),
            known: None,
            netns: None,
            threads: 2,
        };
        let scan = scan(&q);
        let o = &scan.owners[&inode];
        assert_eq!((o.pid, o.fd), (me, fd));
        assert!(!o.process.is_empty());
        assert!(scan.processes_scanned <= scan.processes_total);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn prescan_then_scan_after_reads_each_process_once() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let fd = std::os::fd::AsRawFd::as_raw_fd(&l) as u32;
        let link = std::fs::read_link(format!("/proc/self/fd/{fd}")).unwrap();
        let inode = socket_inode(link.as_os_str().as_encoded_bytes()).unwrap();
        use std::os::unix::fs::MetadataExt;
        let ns = std::fs::metadata("/proc/self/ns/net").unwrap().ino();
        let pre = prescan(&[ns].into(), 2);
        assert!(pre.pids.contains(&std::process::id()));
        assert!(pre
            .found
            .iter()
            .any(|(i, p, f)| (*i, *p, *f) == (inode, std::process::id(), fd)));
        let pre_fds = pre.fds;
        let q = OwnerQuery {
            wanted: [inode].into(),
            netns: Some([ns].into()),
            threads: 2,
            ..Default::default()
        };
        let scan = scan_after(&q, pre);
        let o = &scan.owners[&inode];
        assert_eq!((o.pid, o.fd), (std::process::id(), fd));
        // Found in the prescan: nothing else needed reading.
        assert_eq!(scan.fds_read, pre_fds);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn cache_confirms_a_remembered_holder_with_one_readlink() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let fd = std::os::fd::AsRawFd::as_raw_fd(&l) as u32;
        let link = std::fs::read_link(format!("/proc/self/fd/{fd}")).unwrap();
        let inode = socket_inode(link.as_os_str().as_encoded_bytes()).unwrap();
        use std::os::unix::fs::MetadataExt;
        let q = OwnerQuery {
            wanted: [inode].into(),
            netns: Some([std::fs::metadata("/proc/self/ns/net").unwrap().ino()].into()),
            threads: 1,
            ..Default::default()
        };
        let mut cache = OwnerCache::new();
        let first = cache.scan(&q);
        assert_eq!(first.owners[&inode].fd, fd);
        assert_eq!(cache.len(), 1);
        let second = cache.scan(&q);
        assert_eq!(second.owners[&inode].pid, std::process::id());
        // Confirmed from the cache: one link read, no process scanned.
        assert_eq!((second.fds_read, second.processes_scanned), (1, 0));
        drop(l);
        // The socket is gone: the cache does not make up a holder.
        let third = cache.scan(&q);
        assert!(third.owners.is_empty());
    }

    proptest! {
        #[test]
        fn link_parser_never_panics(b in proptest::collection::vec(any::<u8>(), 0..40)) {
            let _ = socket_inode(&b);
        }
    }
}
