//! When the dead-socket search can be skipped, decided from the kernel's own counts, and
//! the dead sockets a previous search found, re-confirmed instead of searched again.
//!
//! A dead socket (a TCP socket in no table whose fd a process still holds) is a full socket
//! that is allocated but not hashed, and the kernel counts both:
//! - `alloc` in /proc/net/sockstat is every full TCP socket of the host, IPv4 and IPv6, in
//!   every namespace (`tcp_sockets_allocated`, shared by `tcp_prot` and `tcpv6_prot`);
//! - `inuse` in /proc/net/sockstat (`TCP:`) and sockstat6 (`TCP6:`) is the hashed full
//!   sockets of one namespace (`sock_prot_inuse_add()` in `__inet_hash()` and
//!   `inet_ehash_nolisten()`, undone in `inet_unhash()`); timewait minisockets and request
//!   sockets are in neither.
//!
//! So `alloc − Σ inuse over every namespace` counts the unhashed full sockets of the whole
//! host: every dead socket, plus sockets that never were in a table (socket() not yet
//! connected or listening, bound-only sockets, a failed connect() still open). When that
//! number is no larger than the dead sockets a previous search found that are still dead
//! now, those are all the unhashed sockets there are: no other dead socket exists and the
//! fd walk would find nothing new. Measured on Linux 6.18 (fresh, bound, listening,
//! connected, reset-while-held and refused sockets): the difference moves by exactly one for
//! each fresh, bound, dead or refused socket and not at all for the others.
//!
//! The counts are read namespace by namespace while sockets come and go, so one sweep
//! could pair an old `inuse` with a new `alloc`. A sweep is used only when the next one
//! reads the very same numbers; otherwise the search runs.
//!
//! What this cannot rule out, the search still does: an unhashed socket anywhere on the
//! host (also outside the exported namespaces, whose processes the search does not read)
//! makes the search run at every scrape, as it did before this gate existed.

use std::collections::HashSet;
use tcpstate_host::owners::DeadSocket;

/// The `TCP:` line's `inuse` and `alloc`, and the `TCP6:` line's `inuse` (0 without IPv6).
/// `None` when a needed field is missing: a guess here could hide a dead socket.
pub fn parse_counts(sockstat: &str, sockstat6: Option<&str>) -> Option<(u64, u64)> {
    let field = |text: &str, prefix: &str, key: &str| -> Option<u64> {
        let line = text.lines().find(|l| l.starts_with(prefix))?;
        let mut words = line.split_whitespace();
        words.find(|w| *w == key)?;
        words.next()?.parse().ok()
    };
    let inuse = field(sockstat, "TCP:", "inuse")?;
    let alloc = field(sockstat, "TCP:", "alloc")?;
    let inuse6 = match sockstat6 {
        Some(t) => field(t, "TCP6:", "inuse")?,
        None => 0,
    };
    Some((inuse + inuse6, alloc))
}

/// Unhashed full TCP sockets from one sweep: per namespace (hashed, alloc as read with it).
/// The largest `alloc` read is used, so a socket allocated during the sweep makes the
/// count larger, never smaller.
pub fn unhashed(sweep: &[(u64, u64)]) -> Option<u64> {
    let alloc = sweep.iter().map(|(_, a)| *a).max()?;
    let hashed: u64 = sweep.iter().map(|(h, _)| *h).sum();
    Some(alloc.saturating_sub(hashed))
}

/// Why the counts could not rule anything out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unknown {
    /// /proc could not be listed, or no namespace's sockstat could be read.
    Unreadable(String),
    /// Every pair of consecutive sweeps read different numbers (sockets came and went).
    Unsettled,
}

/// Whether the fd walk is needed: yes unless the host-wide unhashed count is known and no
/// larger than the dead sockets confirmed still dead (`confirmed`, distinct sockets).
pub fn search_needed(unhashed: &Result<u64, Unknown>, confirmed: usize) -> bool {
    match unhashed {
        Ok(n) => *n > confirmed as u64,
        Err(_) => true,
    }
}

/// One entry per socket: a dead socket shared by several fds or processes (fork,
/// SCM_RIGHTS) is listed once, under the first holder in (pid, fd) order, so that what a
/// search publishes and what a re-confirmation publishes are the same thing.
pub fn one_per_socket(mut dead: Vec<DeadSocket>) -> Vec<DeadSocket> {
    dead.sort_by_key(|d| (d.owner.pid, d.owner.fd));
    let mut seen = HashSet::new();
    dead.retain(|d| seen.insert(d.inode));
    dead
}

#[cfg(target_os = "linux")]
pub use live::{confirm, count_unhashed};

#[cfg(target_os = "linux")]
mod live {
    use super::Unknown;
    use std::collections::{BTreeMap, HashSet};
    use std::fs::File;
    use std::io::{Read, Seek};
    use std::os::unix::fs::MetadataExt;
    use tcpstate_host::netns::{self, NetnsSelector};
    use tcpstate_host::owners::{socket_inode, DeadSocket};

    /// The sockstat files of one namespace, opened once per count: an open file stays
    /// bound to the namespace it was opened in (`single_open_net()` takes the net at
    /// open), so a sweep is a few preads with no setns.
    struct NsFiles {
        v4: File,
        v6: Option<File>,
    }

    fn ns_inode(path: &str) -> Option<u64> {
        std::fs::metadata(path).ok().map(|m| m.ino())
    }

    fn open_pair(dir: &str) -> Option<NsFiles> {
        Some(NsFiles {
            v4: File::open(format!("{dir}/sockstat")).ok()?,
            // No sockstat6 without IPv6: no IPv6 socket is hashed there either.
            v6: File::open(format!("{dir}/sockstat6")).ok(),
        })
    }

    /// Every network namespace a process is in or /run/netns names, each once (by nsfs
    /// inode). A namespace missed here (held only by a bind mount elsewhere or an open
    /// fd) makes the count larger, which only makes the search run.
    fn open_all() -> Result<Vec<NsFiles>, Unknown> {
        let dir =
            std::fs::read_dir("/proc").map_err(|e| Unknown::Unreadable(format!("/proc: {e}")))?;
        let mut pids: BTreeMap<u64, Vec<u32>> = BTreeMap::new();
        for e in dir.flatten() {
            let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
                continue;
            };
            if let Some(ino) = ns_inode(&format!("/proc/{pid}/ns/net")) {
                pids.entry(ino).or_default().push(pid);
            }
        }
        let mut out = Vec::with_capacity(pids.len());
        for (ino, list) in &pids {
            // The first process of the namespace that is still there and still in it
            // (checked again after opening: a file of another namespace, counted twice,
            // would make the count too small).
            let opened = list.iter().find_map(|pid| {
                let files = open_pair(&format!("/proc/{pid}/net"))?;
                (ns_inode(&format!("/proc/{pid}/ns/net")) == Some(*ino)).then_some(files)
            });
            out.extend(opened);
        }
        // Named namespaces no process is in: opened from inside (setns in a helper thread).
        let seen: HashSet<u64> = pids.keys().copied().collect();
        if let Ok(named) = std::fs::read_dir("/run/netns") {
            for e in named.flatten() {
                let Some(name) = e.file_name().to_str().map(str::to_string) else {
                    continue;
                };
                let path = e.path();
                let Some(ino) = path.to_str().and_then(ns_inode) else {
                    continue;
                };
                if seen.contains(&ino) {
                    continue;
                }
                let Ok(mut targets) = netns::resolve(&NetnsSelector::Named(name)) else {
                    continue;
                };
                let Some(t) = targets.pop().filter(|t| t.inode == Some(ino)) else {
                    continue;
                };
                if let Ok(Some(files)) = netns::run_in(&t, || open_pair("/proc/thread-self/net")) {
                    out.push(files);
                }
            }
        }
        if out.is_empty() {
            return Err(Unknown::Unreadable(
                "no namespace's /proc/net/sockstat could be read".into(),
            ));
        }
        Ok(out)
    }

    fn read_again(f: &mut File, buf: &mut String) -> Option<()> {
        buf.clear();
        f.rewind().ok()?;
        f.read_to_string(buf).ok()?;
        Some(())
    }

    /// (hashed, alloc) of every namespace, in order; `None` if a file could not be read.
    fn sweep(files: &mut [NsFiles]) -> Option<Vec<(u64, u64)>> {
        let mut v4 = String::new();
        let mut v6 = String::new();
        let mut out = Vec::with_capacity(files.len());
        for f in files {
            read_again(&mut f.v4, &mut v4)?;
            let six = match &mut f.v6 {
                Some(file) => {
                    read_again(file, &mut v6)?;
                    Some(v6.as_str())
                }
                None => None,
            };
            out.push(super::parse_counts(&v4, six)?);
        }
        Some(out)
    }

    /// Unhashed full TCP sockets on the whole host (see the module docs), from two
    /// consecutive sweeps that agree; up to four sweeps are tried.
    pub fn count_unhashed() -> Result<u64, Unknown> {
        let mut files = open_all()?;
        let unreadable =
            || Unknown::Unreadable("a namespace's sockstat could not be read again".into());
        let mut last = sweep(&mut files).ok_or_else(unreadable)?;
        for _ in 0..3 {
            let next = sweep(&mut files).ok_or_else(unreadable)?;
            if next == last {
                return super::unhashed(&next).ok_or_else(unreadable);
            }
            last = next;
        }
        Err(Unknown::Unsettled)
    }

    /// The dead sockets of a previous search that are still dead: the holder's fd still
    /// links to the same socket (the fd was neither closed nor reused) and the socket is in
    /// none of the tables just dumped (`dumped`: the inodes the dump listed, or at least
    /// those of `previous` among them). A TCP socket out of every table returns to one only
    /// through connect() again after connect(AF_UNSPEC), and then the dump lists it, unless
    /// the socket belongs to a namespace that was not dumped (a holder in an exported
    /// namespace with a socket made elsewhere, reconnected since): the one case this check
    /// misses, and it would count one socket twice. The process name is read again (the
    /// pid may have been reused by a program that inherited the fd, or exec'd).
    pub fn confirm(previous: &[DeadSocket], dumped: &HashSet<u64>) -> Vec<DeadSocket> {
        let mut out = Vec::with_capacity(previous.len());
        for d in previous {
            if dumped.contains(&d.inode) {
                continue;
            }
            let path = format!("/proc/{}/fd/{}", d.owner.pid, d.owner.fd);
            let Ok(link) = std::fs::read_link(&path) else {
                continue;
            };
            if socket_inode(link.as_os_str().as_encoded_bytes()) != Some(d.inode) {
                continue;
            }
            let Ok(comm) = std::fs::read_to_string(format!("/proc/{}/comm", d.owner.pid)) else {
                continue; // exited between the two reads
            };
            let mut d = d.clone();
            d.owner.process = comm.trim_end_matches('\n').to_string();
            out.push(d);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tcpstate_host::{Owner, TcpInfo};

    const V4: &str =
        "sockets: used 310\nTCP: inuse 12 orphan 1 tw 40 alloc 20 mem 3\nUDP: inuse 2 mem 1\n";
    const V6: &str = "TCP6: inuse 5\nUDP6: inuse 1\n";

    #[test]
    fn counts_hashed_sockets_of_both_families() {
        assert_eq!(parse_counts(V4, Some(V6)), Some((17, 20)));
        assert_eq!(parse_counts(V4, None), Some((12, 20)));
    }

    #[test]
    fn a_missing_field_is_unknown_not_zero() {
        // Without `alloc` a zero would say "nothing unhashed" and hide dead sockets.
        assert_eq!(parse_counts("TCP: inuse 12 orphan 1 tw 4\n", None), None);
        assert_eq!(parse_counts("", None), None);
        assert_eq!(parse_counts(V4, Some("TCP6: inuse\n")), None);
        assert_eq!(parse_counts("TCP: inuse x alloc 3\n", None), None);
    }

    #[test]
    fn unhashed_is_the_largest_alloc_minus_every_namespace() {
        assert_eq!(unhashed(&[(17, 20), (2, 20)]), Some(1));
        // alloc grew during the sweep: the larger reading counts.
        assert_eq!(unhashed(&[(17, 20), (2, 21)]), Some(2));
        assert_eq!(unhashed(&[(30, 20)]), Some(0));
        assert_eq!(unhashed(&[]), None);
    }

    #[test]
    fn the_search_runs_unless_the_counts_rule_it_out() {
        assert!(!search_needed(&Ok(0), 0));
        assert!(!search_needed(&Ok(2), 2));
        assert!(search_needed(&Ok(3), 2));
        assert!(search_needed(&Err(Unknown::Unsettled), 5));
        assert!(search_needed(&Err(Unknown::Unreadable("x".into())), 0));
    }

    #[test]
    fn a_shared_dead_socket_is_listed_once_under_its_first_holder() {
        let d = |pid, fd, inode| DeadSocket {
            owner: Owner {
                pid,
                process: format!("p{pid}"),
                fd,
                cmdline: String::new(),
            },
            inode,
            protocol: "TCP".into(),
            tcp_info: TcpInfo::default(),
        };
        let out = one_per_socket(vec![d(9, 3, 100), d(7, 5, 100), d(7, 4, 200)]);
        let got: Vec<(u32, u32, u64)> = out
            .iter()
            .map(|d| (d.owner.pid, d.owner.fd, d.inode))
            .collect();
        assert_eq!(got, vec![(7, 4, 200), (7, 5, 100)]);
    }
}
