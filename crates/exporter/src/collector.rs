//! The prometheus-client [`Collector`]: every scrape takes a fresh snapshot through
//! `tcpstate-host` (sock_diag dump of the chosen namespaces with tcp_info and kernel
//! context, an owner scan for the CLOSE_WAIT sockets, and the dead-socket search when the
//! kernel's counts say one can exist), folds it into bounded rows and encodes them.

use crate::aggregate::{self, Folded, Limits};
use crate::encode::{self, SelfMetrics, Stage};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::DescriptorEncoder;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Instant;
use tcpstate_host::netns::NetnsSelector;

/// Whether to look for dead sockets still held (a scan of every process's fds).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DeadScan {
    /// Only when sockstat `alloc` (full TCP sockets, whole host) exceeds the full sockets
    /// the dump listed: otherwise none can exist and the fd scan is skipped.
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

/// Reads the host at every scrape.
#[derive(Debug)]
pub struct TcpCollector {
    config: CollectorConfig,
    scrapes: AtomicU64,
    errors: [AtomicU64; Stage::ALL.len()],
    folded: [AtomicU64; Folded::ALL.len()],
    last_error: Mutex<Option<String>>,
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
            last_error: Mutex::new(None),
        }
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
        use tcpstate_host::owners::{scan, OwnerQuery};
        use tcpstate_host::snapshot::{take, SnapshotOptions};
        use tcpstate_host::SockKind;

        let opts = SnapshotOptions {
            states: Vec::new(),
            // tcp_info gives the CLOSE_WAIT age estimate (tcpi_last_ack_recv).
            extensions: true,
            proc_only: self.config.proc_only,
            kernel_context: true,
        };
        let mut snap = take(&self.config.netns, &opts)?;
        // Dead sockets leave every table but stay counted in sockstat `alloc` (host-wide
        // full sockets): only when alloc exceeds the full sockets seen can one exist.
        let full_seen = snap
            .sockets
            .iter()
            .filter(|s| s.kind == SockKind::Full)
            .count() as u64;
        let alloc = snap
            .namespaces
            .iter()
            .filter_map(|n| n.kernel.as_ref()?.sockstat.map(|s| s.alloc))
            .max();
        let dead_scan = match self.config.dead_scan {
            DeadScan::Never => false,
            DeadScan::Auto => alloc.is_none_or(|a| a > full_seen),
        };
        let mut q = OwnerQuery {
            known: dead_scan.then(|| {
                snap.sockets
                    .iter()
                    .filter(|s| s.inode != 0)
                    .map(|s| s.inode)
                    .collect::<HashSet<u64>>()
            }),
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
        let owners = scan(&q);
        for s in &mut snap.sockets {
            if s.state == State::CloseWait {
                if let Some(o) = owners.owners.get(&s.inode) {
                    s.owner = Some(o.clone());
                }
            }
        }
        let dead = match (self.config.dead_scan, dead_scan) {
            (DeadScan::Never, _) => None,
            (DeadScan::Auto, true) => Some((owners.dead.as_slice(), owners.dead_unverified)),
            // Auto and none can exist: an honest zero.
            (DeadScan::Auto, false) => Some((&[][..], 0)),
        };
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
            },
        )
    }
}
