//! The driver: a tracefs instance (or, failing that, sock_diag sampling) feeding a
//! [`Tracker`], with sock_diag lookups and owner scans between batches, until a stop flag,
//! a duration or a count ends it.

use crate::error::WatchError;
use crate::event::{parse_line, ParseError};
use crate::lookup::Lookups;
use crate::report::{ClockMap, Report};
use crate::tracefs::{Instance, InstanceOptions, TraceFs};
use crate::tracker::{Summary, Tracker, TrackerOptions};
use std::ops::ControlFlow;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tcpstate_host::netns::NetnsSelector;
use tcpstate_host::owners::{self, OwnerQuery};
use tcpstate_host::snapshot::{self, SnapshotOptions};

/// Where events come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// The tracepoint if tracefs can be used, else sampling at this interval.
    Auto(Duration),
    /// The tracepoint or an error.
    Trace,
    /// Sampling sock_diag at this interval.
    Sample(Duration),
}

/// What to watch and for how long.
#[derive(Debug, Clone)]
pub struct WatchOptions {
    /// Namespace(s) whose sockets are reported (the tracepoint is host-wide; events are
    /// placed in a namespace by sock_diag lookups).
    pub netns: NetnsSelector,
    /// Event source.
    pub mode: Mode,
    /// Tracker settings (filters, threshold, timewait poll).
    pub tracker: TrackerOptions,
    /// Lookups and output happen once per batch.
    pub batch: Duration,
    /// Ring buffer per CPU, KiB.
    pub buffer_kb: u32,
    /// Read the per-CPU binary pages (false: the text `trace_pipe`).
    pub binary: bool,
    /// Stop after this long.
    pub duration: Option<Duration>,
    /// Stop after this many transitions (after filters).
    pub count: Option<u64>,
    /// Also deliver the summary every so often.
    pub summary_every: Option<Duration>,
}

impl Default for WatchOptions {
    fn default() -> Self {
        WatchOptions {
            netns: NetnsSelector::Current,
            mode: Mode::Auto(Duration::from_millis(100)),
            tracker: TrackerOptions::default(),
            batch: Duration::from_millis(100),
            buffer_kb: 8192,
            binary: true,
            duration: None,
            count: None,
            summary_every: None,
        }
    }
}

/// How the events are being observed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SourceInfo {
    /// The tracepoint in a private tracefs instance.
    Tracepoint {
        /// Read from the per-CPU binary pages (else the text pipe).
        binary: bool,
        /// Instance name.
        instance: String,
        /// Events and their kernel filters.
        events: Vec<(String, String)>,
        /// Stale instances removed at start.
        removed_stale: Vec<String>,
        /// tracefs was mounted by this run.
        mounted: bool,
    },
    /// Sampling.
    Sampled {
        /// Interval.
        interval: Duration,
        /// Why not the tracepoint.
        reason: String,
    },
}

/// What the watcher delivers.
#[derive(Debug, Clone)]
pub enum Output {
    /// Once, first.
    Started {
        /// The source.
        source: SourceInfo,
        /// Trace clock ↔ wall clock.
        clock: ClockMap,
    },
    /// A transition, lifeline or warning.
    Report(Report),
    /// A summary (periodic, or at the end).
    Summary {
        /// The counters.
        summary: Summary,
        /// Events the ring buffer lost so far (tracepoint mode).
        lost_events: Option<u64>,
        /// Last one.
        last: bool,
    },
}

/// Current CLOCK_BOOTTIME (the trace clock the instance is set to).
pub fn boottime() -> Duration {
    let ts = rustix::time::clock_gettime(rustix::time::ClockId::Boottime);
    Duration::new(
        ts.tv_sec.max(0) as u64,
        ts.tv_nsec.clamp(0, 999_999_999) as u32,
    )
}

/// A stop flag set by SIGINT and SIGTERM (the caller then returns normally, so the
/// tracefs instance is removed).
pub fn stop_on_signals() -> Result<Arc<AtomicBool>, WatchError> {
    let flag = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, Arc::clone(&flag))
            .map_err(|e| WatchError::io("signal handler", e))?;
    }
    Ok(flag)
}

/// Owner scans walk /proc/PID/fd: they read only the processes of the watched
/// namespace(s) (`owners::scan_netns_only`; a socket is held where it lives, and one whose
/// holder is elsewhere or gone is reported without an owner instead of making the scan
/// read every fd on the host), and run in a worker thread so that the event loop and the
/// timewait lookups are never held up. Reports wait for their owner's scan, not the
/// other way round. Each socket's owner is asked for once, when it is placed, and kept
/// with the connection.
type OwnerResult = (
    std::collections::HashSet<u64>,
    std::collections::HashMap<u64, tcpstate_host::Owner>,
    Scope,
);

/// Where an owner scan looks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scope {
    /// The processes of the watched namespace(s) (`owners::scan_netns_only`).
    Namespace,
    /// Every process: for sockets still open whose holder is not in their namespace (a
    /// thread that entered it with setns(2), an fd passed over a unix socket).
    Everywhere,
}

struct OwnerWorker {
    tx: Option<std::sync::mpsc::Sender<(OwnerQuery, Scope)>>,
    rx: std::sync::mpsc::Receiver<OwnerResult>,
    in_flight: usize,
    queued: Vec<(OwnerQuery, Scope)>,
}

impl OwnerWorker {
    fn new() -> OwnerWorker {
        let (tx, work) = std::sync::mpsc::channel::<(OwnerQuery, Scope)>();
        let (done, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for (q, scope) in work {
                let scan = match scope {
                    Scope::Namespace => owners::scan_netns_only(&q),
                    Scope::Everywhere => owners::scan(&q),
                };
                if done.send((q.wanted, scan.owners, scope)).is_err() {
                    break;
                }
            }
        });
        OwnerWorker {
            tx: Some(tx),
            rx,
            in_flight: 0,
            queued: Vec::new(),
        }
    }

    /// One scan at a time; what is asked meanwhile is merged into the next of its scope.
    fn ask(&mut self, q: OwnerQuery, scope: Scope) {
        match self.queued.iter_mut().find(|(_, s)| *s == scope) {
            Some((m, _)) => {
                m.wanted.extend(q.wanted);
                m.uids.extend(q.uids);
            }
            None => self.queued.push((q, scope)),
        }
        self.kick();
    }

    fn kick(&mut self) {
        if self.in_flight == 0 && !self.queued.is_empty() {
            let next = self.queued.remove(0);
            if let Some(tx) = &self.tx {
                if tx.send(next).is_ok() {
                    self.in_flight += 1;
                }
            }
        }
    }

    fn poll(&mut self, wait: bool) -> Option<OwnerResult> {
        if self.in_flight == 0 {
            self.kick();
            if self.in_flight == 0 {
                return None;
            }
        }
        let got = if wait {
            self.rx.recv_timeout(Duration::from_secs(5)).ok()
        } else {
            self.rx.try_recv().ok()
        };
        if got.is_some() {
            self.in_flight -= 1;
            self.kick();
        }
        got
    }
}

struct Driver<'a> {
    opts: &'a WatchOptions,
    owners: OwnerWorker,
    /// Exact lookups (tracepoint mode); sampling dumps instead.
    lookups: Option<Lookups>,
    tracker: Tracker,
    transitions: u64,
    last_summary: Duration,
    start: Duration,
}

impl Driver<'_> {
    /// One round of exact lookups: what the tracker asks for, each socket by 4-tuple and
    /// cookie, in one batch; then placement of what no lookup could find, and the owners
    /// of what was placed.
    fn lookup(&mut self, now: Duration) -> Result<(), WatchError> {
        let Some(lookups) = self.lookups.as_mut() else {
            return Ok(());
        };
        let asked = self.tracker.lookups(now);
        let asks: Vec<crate::lookup::Ask> = asked
            .iter()
            .map(|l| (l.local, l.remote, l.cookie))
            .collect();
        let found = lookups.lookup(&asks)?;
        let inodes = lookups.namespaces();
        let pids = self.tracker.unplaced_task_pids();
        if !pids.is_empty() {
            self.tracker.set_pid_netns(pids.into_iter().filter_map(|p| {
                use std::os::unix::fs::MetadataExt;
                let ino = std::fs::metadata(format!("/proc/{p}/ns/net")).ok()?.ino();
                Some((p, inodes.contains(&ino)))
            }));
        }
        let wanted = self.tracker.apply_lookups(now, &asked, &found);
        self.ask_owners(wanted, inodes);
        Ok(())
    }

    fn ask_owners(
        &mut self,
        wanted: std::collections::HashSet<u64>,
        inodes: std::collections::HashSet<u64>,
    ) {
        if wanted.is_empty() {
            self.collect_owners(false);
            return;
        }
        let q = OwnerQuery {
            wanted,
            uids: self.tracker.wanted_uids(),
            known: None,
            // Every namespace watched: every process may hold one.
            netns: (self.opts.netns != NetnsSelector::All).then_some(inodes),
            // In the worker thread: parallel does not hold anything up.
            threads: 0,
        };
        self.owners.ask(q, Scope::Namespace);
        self.collect_owners(false);
    }

    /// Applies finished owner scans; with `wait`, waits for the one in flight.
    fn collect_owners(&mut self, wait: bool) {
        while let Some((mut asked, found, scope)) = self.owners.poll(wait) {
            if scope == Scope::Namespace {
                let unfound: std::collections::HashSet<u64> = asked
                    .iter()
                    .filter(|i| !found.contains_key(i))
                    .copied()
                    .collect();
                let open = self.still_open(&unfound);
                if !open.is_empty() {
                    asked.retain(|i| !open.contains(i));
                    let q = OwnerQuery {
                        wanted: open,
                        uids: self.tracker.wanted_uids(),
                        known: None,
                        netns: None,
                        threads: 0,
                    };
                    self.owners.ask(q, Scope::Everywhere);
                }
            }
            self.tracker.apply_owners(&asked, &found);
        }
    }

    /// Which of these inodes still belong to an open socket, by exact lookups: a socket
    /// closed before the scan has no holder to find, and must not cost a scan of every
    /// fd on the host.
    fn still_open(
        &mut self,
        inodes: &std::collections::HashSet<u64>,
    ) -> std::collections::HashSet<u64> {
        let (Some(lookups), false) = (self.lookups.as_mut(), inodes.is_empty()) else {
            return Default::default();
        };
        let socks = self.tracker.sockets_of(inodes);
        let asks: Vec<crate::lookup::Ask> = socks.iter().map(|s| (s.1, s.2, s.3)).collect();
        // A failed check only costs the owner (unknown), never the watch.
        let Ok(found) = lookups.lookup(&asks) else {
            return Default::default();
        };
        socks
            .iter()
            .zip(found)
            .filter(|(s, f)| f.as_ref().is_some_and(|f| f.inode == s.0))
            .map(|(s, _)| s.0)
            .collect()
    }

    /// Delivers reports; Break when the sink or the count says stop.
    fn deliver(
        &mut self,
        reports: Vec<Report>,
        sink: &mut dyn FnMut(Output) -> ControlFlow<()>,
    ) -> ControlFlow<()> {
        for r in reports {
            let is_transition = matches!(r, Report::Transition(_));
            sink(Output::Report(r))?;
            if is_transition {
                self.transitions += 1;
                if self.opts.count.is_some_and(|c| self.transitions >= c) {
                    return ControlFlow::Break(());
                }
            }
        }
        ControlFlow::Continue(())
    }

    fn periodic_summary(
        &mut self,
        now: Duration,
        lost: Option<u64>,
        sink: &mut dyn FnMut(Output) -> ControlFlow<()>,
    ) -> ControlFlow<()> {
        if let Some(every) = self.opts.summary_every {
            if now.saturating_sub(self.last_summary) >= every {
                self.last_summary = now;
                return sink(Output::Summary {
                    summary: self.tracker.summary().clone(),
                    lost_events: lost,
                    last: false,
                });
            }
        }
        ControlFlow::Continue(())
    }

    fn over(&self, now: Duration, stop: &AtomicBool) -> bool {
        stop.load(Ordering::Relaxed)
            || self
                .opts
                .duration
                .is_some_and(|d| now.saturating_sub(self.start) >= d)
    }
}

/// Sleeps until `deadline` (trace clock) or the stop flag, in short steps.
fn sleep_until(deadline: Duration, stop: &AtomicBool) {
    loop {
        let now = boottime();
        if now >= deadline || stop.load(Ordering::Relaxed) {
            return;
        }
        std::thread::sleep((deadline - now).min(Duration::from_millis(50)));
    }
}

/// Watches until `stop` is set, the duration passes, the count is reached or the sink
/// breaks. Every output goes to `sink`; the final summary is always delivered last.
pub fn watch(
    opts: &WatchOptions,
    stop: &AtomicBool,
    sink: &mut dyn FnMut(Output) -> ControlFlow<()>,
) -> Result<(), WatchError> {
    let instance = match opts.mode {
        Mode::Sample(i) => Err((i, "sampling was asked for".to_string())),
        Mode::Trace | Mode::Auto(_) => {
            let made = TraceFs::locate_or_mount().and_then(|fs| {
                let inst = Instance::create(
                    &fs,
                    &InstanceOptions {
                        buffer_kb: opts.buffer_kb,
                        ports: opts.tracker.filter.ports.clone(),
                        binary: opts.binary,
                    },
                )?;
                Ok((inst, fs.mounted_here))
            });
            match (made, opts.mode) {
                (Ok(x), _) => Ok(x),
                (Err(e), Mode::Auto(i)) => Err((i, error_text(&e))),
                (Err(e), _) => return Err(e),
            }
        }
    };
    let start = boottime();
    let clock = ClockMap {
        boot: start,
        wall: SystemTime::now(),
    };
    let mut tracker_opts = opts.tracker.clone();
    tracker_opts.start = start;
    let lookups = match instance {
        Ok(_) => Some(Lookups::open(&opts.netns)?),
        // Sampling dumps; lookups only check that a socket whose holder was not found is
        // still open (and if no sock_diag socket can be had, the dump falls back too).
        Err(_) => Lookups::open(&opts.netns).ok(),
    };
    let mut d = Driver {
        opts,
        owners: OwnerWorker::new(),
        lookups,
        tracker: Tracker::new(tracker_opts),
        transitions: 0,
        last_summary: start,
        start,
    };
    match instance {
        Ok((inst, mounted)) => trace_loop(&mut d, inst, mounted, clock, stop, sink),
        Err((interval, reason)) => sample_loop(&mut d, interval, reason, clock, stop, sink),
    }
}

fn error_text(e: &WatchError) -> String {
    let mut s = e.to_string();
    let mut cur = std::error::Error::source(e);
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

fn trace_loop(
    d: &mut Driver<'_>,
    mut inst: Instance,
    mounted: bool,
    clock: ClockMap,
    stop: &AtomicBool,
    sink: &mut dyn FnMut(Output) -> ControlFlow<()>,
) -> Result<(), WatchError> {
    let source = SourceInfo::Tracepoint {
        binary: inst.is_binary(),
        instance: inst.name(),
        events: inst
            .enabled
            .iter()
            .map(|e| (e.event.clone(), e.filter.clone()))
            .collect(),
        removed_stale: inst.removed_stale.clone(),
        mounted,
    };
    let result = (|| -> Result<(), WatchError> {
        if sink(Output::Started { source, clock }).is_break() {
            return Ok(());
        }
        let mut next = d.start;
        let mut batch = Vec::new();
        let mut comms = std::collections::HashMap::new();
        loop {
            next += d.opts.batch;
            sleep_until(next, stop);
            let over = d.over(boottime(), stop);
            let tracker = &mut d.tracker;
            if inst.is_binary() {
                // CPUs are read one after the other: merge them by time for the batch.
                batch.clear();
                let (undecoded, _) = inst.read_raw(|ev| batch.push(ev))?;
                for _ in 0..undecoded {
                    tracker.bad_line();
                }
                batch.sort_by_key(|e| e.ts);
                for ev in &mut batch {
                    if !ev.task.interrupt {
                        ev.task.comm = comm_of(&mut comms, ev.task.pid);
                    }
                    tracker.feed(ev);
                }
            } else {
                inst.read_available(|line| match parse_line(line) {
                    Ok(ev) => tracker.feed(&ev),
                    Err(ParseError::OtherEvent(_)) => {}
                    Err(_) => tracker.bad_line(),
                })?;
            }
            let now = boottime();
            d.lookup(now)?;
            let reports = d.tracker.drain(now);
            if d.deliver(reports, sink).is_break() || over {
                break;
            }
            if d.periodic_summary(now, Some(inst.lost_events()), sink)
                .is_break()
            {
                break;
            }
        }
        Ok(())
    })();
    let lost = inst.lost_events();
    // Remove the instance before the last lookups and output: nothing more is read.
    let removed = inst.remove();
    drop(inst);
    result?;
    finish(d, Some(lost), sink)?;
    removed
}

/// The name of a task (binary records carry only its pid), cached; `?` once it exited.
fn comm_of(cache: &mut std::collections::HashMap<i32, String>, pid: i32) -> String {
    if cache.len() > 65_536 {
        cache.clear();
    }
    cache
        .entry(pid)
        .or_insert_with(|| {
            std::fs::read_to_string(format!("/proc/{pid}/comm"))
                .map(|s| s.trim_end().to_string())
                .unwrap_or_else(|_| "?".into())
        })
        .clone()
}

fn finish(
    d: &mut Driver<'_>,
    lost: Option<u64>,
    sink: &mut dyn FnMut(Output) -> ControlFlow<()>,
) -> Result<(), WatchError> {
    let now = boottime();
    // One last lookup so that what is pending can be confirmed, and its owners.
    d.lookup(now)?;
    d.collect_owners(true);
    let reports = d.tracker.finish(now);
    // The count was reached or the sink broke: still deliver the lifelines of the end.
    for r in reports {
        if sink(Output::Report(r)).is_break() {
            return Ok(());
        }
    }
    let _ = sink(Output::Summary {
        summary: d.tracker.summary().clone(),
        lost_events: lost,
        last: true,
    });
    Ok(())
}

fn sample_loop(
    d: &mut Driver<'_>,
    interval: Duration,
    reason: String,
    clock: ClockMap,
    stop: &AtomicBool,
    sink: &mut dyn FnMut(Output) -> ControlFlow<()>,
) -> Result<(), WatchError> {
    if sink(Output::Started {
        source: SourceInfo::Sampled { interval, reason },
        clock,
    })
    .is_break()
    {
        return Ok(());
    }
    let mut next = d.start;
    loop {
        let now = boottime();
        let snap = snapshot::take(
            &d.opts.netns,
            &SnapshotOptions {
                states: Vec::new(),
                ..SnapshotOptions::default()
            },
        )?;
        d.tracker.feed_sample(now, &snap.sockets, interval);
        let wanted = d.tracker.owners_wanted();
        let netns = snap.namespaces.iter().filter_map(|n| n.inode).collect();
        d.ask_owners(wanted, netns);
        let reports = d.tracker.drain(now);
        if d.deliver(reports, sink).is_break() || d.over(now, stop) {
            break;
        }
        if d.periodic_summary(now, None, sink).is_break() {
            break;
        }
        next += interval;
        sleep_until(next, stop);
    }
    finish(d, None, sink)
}
