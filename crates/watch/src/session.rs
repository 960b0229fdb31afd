//! The driver: a tracefs instance (or, failing that, sock_diag sampling) feeding a
//! [`Tracker`], with sock_diag lookups and owner scans between batches, until a stop flag,
//! a duration or a count ends it.

use crate::error::WatchError;
use crate::event::{parse_line, ParseError};
use crate::report::{ClockMap, Report};
use crate::tracefs::{Instance, InstanceOptions, TraceFs};
use crate::tracker::{DumpRequest, Summary, Tracker, TrackerOptions};
use std::ops::ControlFlow;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tcpstate_fsm::State;
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

struct Driver<'a> {
    opts: &'a WatchOptions,
    tracker: Tracker,
    transitions: u64,
    last_summary: Duration,
    start: Duration,
}

impl Driver<'_> {
    fn lookup(&mut self, now: Duration, req: &DumpRequest) -> Result<(), WatchError> {
        let snap = snapshot::take(
            &self.opts.netns,
            &SnapshotOptions {
                states: req.states.clone(),
                ..SnapshotOptions::default()
            },
        )?;
        let wanted = self.tracker.apply_dump(now, req, &snap.sockets);
        if !wanted.is_empty() {
            let scan = owners::scan(&OwnerQuery {
                wanted,
                uids: self.tracker.wanted_uids(),
                known: None,
                netns: Some(snap.namespaces.iter().filter_map(|n| n.inode).collect()),
                threads: 1,
            });
            self.tracker.apply_owners(&scan.owners);
        } else {
            self.tracker.apply_owners(&Default::default());
        }
        Ok(())
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
    let mut d = Driver {
        opts,
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
        loop {
            next += d.opts.batch;
            sleep_until(next, stop);
            let over = d.over(boottime(), stop);
            let tracker = &mut d.tracker;
            inst.read_available(|line| match parse_line(line) {
                Ok(ev) => tracker.feed(&ev),
                Err(ParseError::OtherEvent(_)) => {}
                Err(_) => tracker.bad_line(),
            })?;
            let now = boottime();
            if let Some(req) = d.tracker.needs(now) {
                d.lookup(now, &req)?;
            }
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

fn finish(
    d: &mut Driver<'_>,
    lost: Option<u64>,
    sink: &mut dyn FnMut(Output) -> ControlFlow<()>,
) -> Result<(), WatchError> {
    let now = boottime();
    // One last lookup so that what is pending can be confirmed.
    if let Some(req) = d.tracker.needs(now) {
        d.lookup(now, &req)?;
    }
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
    let all = DumpRequest {
        states: State::ALL.to_vec(),
    };
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
        let wanted = d.tracker.apply_dump(now, &all, &snap.sockets);
        if !wanted.is_empty() {
            let scan = owners::scan(&OwnerQuery {
                wanted,
                uids: d.tracker.wanted_uids(),
                known: None,
                netns: Some(snap.namespaces.iter().filter_map(|n| n.inode).collect()),
                threads: 1,
            });
            d.tracker.apply_owners(&scan.owners);
        } else {
            d.tracker.apply_owners(&Default::default());
        }
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
