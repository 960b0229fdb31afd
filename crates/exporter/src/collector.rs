//! The prometheus-client [`Collector`]: every scrape takes a fresh snapshot through
//! `tcpstate-host` (sock_diag dump of the chosen namespaces with tcp_info and kernel
//! context, the owners of the CLOSE_WAIT sockets, and the dead-socket search unless the
//! kernel's counts rule out a dead socket the last search did not find), folds it into
//! bounded rows and encodes them.
//!
//! What a collection remembers from the previous one only saves work, and is confirmed
//! before it is published: CLOSE_WAIT holders (an [`OwnerCache`]: one readlink per socket
//! instead of reading every fd of every process) and the dead sockets last found (still
//! held, still in no table; see [`crate::dead`]).
//!
//! [`OwnerCache`]: tcpstate_host::owners::OwnerCache

use crate::aggregate::{self, Folded, Limits};
#[cfg(target_os = "linux")]
use crate::dead;
use crate::encode::{self, SelfMetrics, Stage};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::DescriptorEncoder;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Instant;
use tcpstate_host::netns::NetnsSelector;

/// Whether to look for dead sockets still held (a read of every fd of the processes in
/// the exported namespaces).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DeadScan {
    /// Unless the kernel's counts rule a new one out: when the host's unhashed full TCP
    /// sockets (sockstat `alloc` minus `inuse` of every namespace) are no more than the
    /// dead sockets found last time and confirmed still dead, those are published again
    /// and the fd walk is skipped ([`crate::dead`]).
    #[default]
    Auto,
    /// Never (no `tcpstate_dead_sockets` series).
    Never,
}

/// What to collect.
#[derive(Debug, Clone, Default)]
pub struct CollectorConfig {
    /// Which namespaces.
    pub netns: NetnsSelector,
    /// Read /proc/net/tcp instead of sock_diag.
    pub proc_only: bool,
    /// Cardinality limits.
    pub limits: Limits,
    /// Dead-socket search.
    pub dead_scan: DeadScan,
}

/// What the dead-socket check did in one collection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeadOutcome {
    /// The fd walk ran: the counts showed more unhashed sockets than confirmed dead ones.
    Searched = 0,
    /// The fd walk ran: the counts could not be read consistently (sockets came and went
    /// during every sweep, or a sockstat file could not be read).
    SearchedUncounted = 1,
    /// The kernel's counts showed no unhashed socket beyond the confirmed dead ones; the
    /// walk was skipped.
    RuledOut = 2,
}

impl DeadOutcome {
    /// Every outcome, in label order.
    pub const ALL: [DeadOutcome; 3] = [
        DeadOutcome::Searched,
        DeadOutcome::SearchedUncounted,
        DeadOutcome::RuledOut,
    ];

    /// The `outcome` label value.
    pub fn label(self) -> &'static str {
        match self {
            DeadOutcome::Searched => "searched",
            DeadOutcome::SearchedUncounted => "searched_uncounted",
            DeadOutcome::RuledOut => "ruled_out",
        }
    }
}

/// What the last collection cost and decided (for tests and the index page).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LastCollection {
    /// fd links read looking for owners (and dead sockets, when searched).
    pub owner_fds_read: usize,
    /// Processes whose fd directory was read.
    pub owner_processes_scanned: usize,
    /// The dead-socket check; `None` when not made (`DeadScan::Never`).
    pub dead: Option<DeadOutcome>,
    /// Unhashed full TCP sockets on the whole host, when the counts settled.
    pub unhashed: Option<u64>,
    /// Dead sockets of the previous collection confirmed still dead before deciding.
    pub confirmed_dead: usize,
}

/// What collections carry over to the next one.
#[derive(Debug, Default)]
struct Memo {
    #[cfg(target_os = "linux")]
    owners: tcpstate_host::owners::OwnerCache,
    /// Verified dead sockets of the last collection, one per socket.
    #[cfg(target_os = "linux")]
    dead: Vec<tcpstate_host::owners::DeadSocket>,
    last: LastCollection,
}

/// Reads the host at every scrape.
#[derive(Debug)]
pub struct TcpCollector {
    config: CollectorConfig,
    scrapes: AtomicU64,
    errors: [AtomicU64; Stage::ALL.len()],
    folded: [AtomicU64; Folded::ALL.len()],
    dead_checks: [AtomicU64; DeadOutcome::ALL.len()],
    last_error: Mutex<Option<String>>,
    memo: Mutex<Memo>,
}

/// An error and its causes on one line.
fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

impl TcpCollector {
    /// A collector with its counters at zero.
    pub fn new(config: CollectorConfig) -> TcpCollector {
        TcpCollector {
            config,
            scrapes: AtomicU64::new(0),
            errors: Default::default(),
            folded: Default::default(),
            dead_checks: Default::default(),
            last_error: Mutex::new(None),
            memo: Mutex::new(Memo::default()),
        }
    }

    /// What the last collection cost and decided.
    pub fn last_collection(&self) -> LastCollection {
        self.memo
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .last
            .clone()
    }

    /// The configuration.
    pub fn config(&self) -> &CollectorConfig {
        &self.config
    }

    /// The last scrape's error, if the last scrape had one (for the index page).
    pub fn last_error(&self) -> Option<String> {
        self.last_error
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Collections made so far.
    pub fn scrapes(&self) -> u64 {
        self.scrapes.load(Ordering::Relaxed)
    }

    #[cfg(target_os = "linux")]
    fn gather(&self) -> Result<(aggregate::Collection, Vec<String>), tcpstate_host::HostError> {
        use std::collections::HashSet;
        use tcpstate_fsm::State;
        use tcpstate_host::owners::OwnerQuery;
        use tcpstate_host::snapshot::{take_with, Extensions, SnapshotOptions};

        let opts = SnapshotOptions {
            states: Vec::new(),
            extensions: false, // take_with: chosen per state below
            proc_only: self.config.proc_only,
            kernel_context: true,
        };
        // tcp_info gives the CLOSE_WAIT age estimate (tcpi_last_ack_recv); nothing else
        // published needs an extension, and socket memory none at all. The kernel takes one
        // extension set per request, so the full sockets of other states carry a tcp_info
        // too (one request per family is cheaper than splitting by state: host docs).
        let ext = Extensions {
            tcp_info: vec![State::CloseWait],
            memory: Vec::new(),
        };
        let mut snap = take_with(&self.config.netns, &opts, &ext)?;

        // One collection at a time uses the memory of the previous ones (the server's
        // single flight already serialises them; this lock makes `render_once` and any
        // other caller safe too). A collection that panicked leaves nothing unsafe behind:
        // every remembered holder and dead socket is confirmed again before use.
        let mut memo = self.memo.lock().unwrap_or_else(|e| e.into_inner());
        let memo = &mut *memo;

        // The processes of the exported namespaces are read first for owners, and only they
        // are searched for dead sockets: the scope is what --netns says, and a dead socket
        // has no namespace label to tell tenants apart. Owners of CLOSE_WAIT sockets are
        // still looked for elsewhere when not found there (a process may hold a socket of
        // another namespace: made before setns(2), or passed over a unix socket), which the
        // owner cache makes rare.
        let scope: Option<HashSet<u64>> = snap.namespaces.iter().map(|n| n.inode).collect();
        let mut q = OwnerQuery {
            netns: scope,
            ..Default::default()
        };
        for s in snap
            .sockets
            .iter()
            .filter(|s| s.state == State::CloseWait && s.inode != 0)
        {
            q.wanted.insert(s.inode);
            q.uids.insert(s.uid);
        }

        let mut dead_found = None;
        let mut search = false;
        if self.config.dead_scan == DeadScan::Auto {
            // Counts first, confirmation after: a known dead socket closed in between
            // lowers the confirmed number, which can only make the search run.
            let unhashed = dead::count_unhashed();
            // Which of the known dead sockets the dump lists again (only they are looked up,
            // so no set of every dumped inode is built).
            let known_dead: HashSet<u64> = memo.dead.iter().map(|d| d.inode).collect();
            let dumped: HashSet<u64> = if known_dead.is_empty() {
                HashSet::new()
            } else {
                snap.sockets
                    .iter()
                    .map(|s| s.inode)
                    .filter(|i| known_dead.contains(i))
                    .collect()
            };
            let confirmed = dead::confirm(&memo.dead, &dumped);
            search = dead::search_needed(&unhashed, confirmed.len());
            let outcome = match (search, &unhashed) {
                (false, _) => DeadOutcome::RuledOut,
                (true, Ok(_)) => DeadOutcome::Searched,
                (true, Err(_)) => DeadOutcome::SearchedUncounted,
            };
            self.dead_checks[outcome as usize].fetch_add(1, Ordering::Relaxed);
            memo.last = LastCollection {
                dead: Some(outcome),
                unhashed: unhashed.clone().ok(),
                confirmed_dead: confirmed.len(),
                ..Default::default()
            };
            if search {
                q.known = Some(
                    snap.sockets
                        .iter()
                        .filter(|s| s.inode != 0)
                        .map(|s| s.inode)
                        .collect(),
                );
            } else {
                // Every unhashed socket on the host is one of these: none is new.
                memo.dead = confirmed;
                dead_found = Some((memo.dead.clone(), 0));
            }
        } else {
            memo.last = LastCollection::default();
        }

        if !q.wanted.is_empty() || search {
            let owners = memo.owners.scan(&q);
            memo.last.owner_fds_read = owners.fds_read;
            memo.last.owner_processes_scanned = owners.processes_scanned;
            for s in &mut snap.sockets {
                if s.state == State::CloseWait {
                    if let Some(o) = owners.owners.get(&s.inode) {
                        s.owner = Some(o.clone());
                    }
                }
            }
            if search {
                memo.dead = dead::one_per_socket(owners.dead);
                dead_found = Some((memo.dead.clone(), owners.dead_unverified));
            }
        }
        let dead = dead_found
            .as_ref()
            .map(|(list, unverified)| (list.as_slice(), *unverified));
        let c = aggregate::collect(&snap, dead, self.config.limits);
        Ok((c, snap.warnings))
    }

    #[cfg(not(target_os = "linux"))]
    fn gather(&self) -> Result<(aggregate::Collection, Vec<String>), tcpstate_host::HostError> {
        Err(tcpstate_host::HostError::Unsupported)
    }
}

impl Collector for TcpCollector {
    fn encode(&self, mut enc: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let start = Instant::now();
        self.scrapes.fetch_add(1, Ordering::Relaxed);
        let err = |st: Stage, n: u64| {
            self.errors[Stage::ALL.iter().position(|s| *s == st).unwrap_or(0)]
                .fetch_add(n, Ordering::Relaxed);
        };
        let gathered = self.gather();
        let mut last_error = None;
        let collection = match gathered {
            Ok((c, warnings)) => {
                if !warnings.is_empty() {
                    err(Stage::Netns, warnings.len() as u64);
                    last_error = Some(warnings.join("; "));
                }
                for (i, f) in Folded::ALL.iter().enumerate() {
                    self.folded[i]
                        .fetch_add(c.folded.get(f).copied().unwrap_or(0), Ordering::Relaxed);
                }
                Some(c)
            }
            Err(e) => {
                err(Stage::Snapshot, 1);
                last_error = Some(chain(&e));
                None
            }
        };
        *self.last_error.lock().unwrap_or_else(|e| e.into_inner()) = last_error;
        if let Some(c) = &collection {
            encode::encode_collection(&mut enc, c)?;
        }
        let errors: Vec<(Stage, u64)> = Stage::ALL
            .iter()
            .zip(&self.errors)
            .map(|(s, n)| (*s, n.load(Ordering::Relaxed)))
            .collect();
        let dead_checks: Vec<(DeadOutcome, u64)> = DeadOutcome::ALL
            .iter()
            .zip(&self.dead_checks)
            .map(|(o, n)| (*o, n.load(Ordering::Relaxed)))
            .collect();
        let folded_total: Vec<(Folded, u64)> = Folded::ALL
            .iter()
            .zip(&self.folded)
            .map(|(f, n)| (*f, n.load(Ordering::Relaxed)))
            .collect();
        encode::encode_self(
            &mut enc,
            &SelfMetrics {
                duration_s: start.elapsed().as_secs_f64(),
                errors: &errors,
                scrapes: self.scrapes.load(Ordering::Relaxed),
                folded_total: &folded_total,
                dead_checks: (self.config.dead_scan == DeadScan::Auto).then_some(&dead_checks[..]),
            },
        )
    }
}
