//! Sharded analysis ([`crate::Options::threads`] > 1): the calling thread reads and decodes,
//! and each worker thread owns the connections of some 4-tuples (a connection table of its
//! own). Connections never interact, so each worker finishes its connections exactly as a
//! single table would, provided it sees time pass the same way: every worker is shown every
//! segment's timestamp (a segment of another shard is a tick that runs its timers). Reports
//! come back with the [`FinishKey`] of the moment they were finished; merging by that key,
//! and numbering connections by their first segment, gives the single table's order and
//! IDs, so the output does not depend on the number of threads.

use crate::decode::TcpSegment;
use crate::tracker::{shard_of, FinishKey, FlowHashBuilder, Totals, Tracker};
use crate::{CaptureReader, CaptureSummary, ConnectionReport, Options, Summary};
use std::collections::{HashMap, VecDeque};
use std::io::Read;
use std::sync::mpsc::{self, Receiver, Sender, SyncSender};
use std::sync::Arc;

/// Segments per batch handed to the workers: large enough that channel traffic is a small
/// cost per segment, small enough that a batch stays in cache.
const BATCH: usize = 2048;
/// Batches in flight ahead of the merge (bounds memory and report latency). Three threads
/// share two cores on the machines we measured: 16 (about 3 MB of batches) lets the reader
/// run ahead while a worker is descheduled, ~5% faster than 4 (perf stat, 1.08 M packets).
const DEPTH: usize = 16;

/// Consecutive segments of the capture. Every worker reads every time (8 bytes a segment)
/// but only its own shard's segments, so a segment crosses to one other core, not to all.
#[derive(Default)]
struct Batch {
    /// Each segment's time, in capture order.
    times: Vec<i64>,
    /// Per shard: (position in `times`, segment), in capture order.
    shards: Vec<Vec<(u32, TcpSegment)>>,
}

impl Batch {
    fn clear(&mut self) {
        self.times.clear();
        for s in &mut self.shards {
            s.clear();
        }
    }
}

enum Job {
    Batch(Arc<Batch>),
    Finish,
}

/// What a worker did with one batch (or, with `totals`, at the end of the capture).
struct Done {
    /// First-segment ordinals of the connections it created, in order.
    created: Vec<u64>,
    /// Connections it finished, in [`FinishKey`] order.
    reports: Vec<(FinishKey, ConnectionReport)>,
    totals: Option<Totals>,
    /// In totals-only mode, at the end: its connections' totals.
    summary: Option<Summary>,
}

/// What the workers hand back.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Output {
    /// Every report, merged into one table's order on the calling thread.
    Reports,
    /// Totals only: each worker counts its own connections into a [`Summary`] (the sum does
    /// not depend on the order), and no report crosses threads.
    Totals,
}

fn worker(me: usize, opts: Options, output: Output, jobs: Receiver<Job>, done: Sender<Done>) {
    let mut tracker = Tracker::new(opts);
    let mut summary = (output == Output::Totals).then(Summary::new);
    if output == Output::Reports {
        tracker.record_creations();
    }
    // Reports are large: size each batch's list like the last one's, not by doubling.
    let mut expected = 0;
    while let Ok(Job::Batch(batch)) = jobs.recv() {
        let mut reports = Vec::with_capacity(expected + expected / 4);
        let mut sink = |k: FinishKey, r: ConnectionReport| match summary.as_mut() {
            Some(s) => s.add(&r),
            None => reports.push((k, r)),
        };
        let mut mine = batch.shards[me].iter().peekable();
        for (pos, &ts) in batch.times.iter().enumerate() {
            match mine.next_if(|(p, _)| *p as usize == pos) {
                Some((_, seg)) => tracker.segment_keyed(ts, seg, &mut sink),
                None => tracker.tick(ts, &mut sink),
            }
        }
        // Release the batch before reporting, so the reader can reuse its memory.
        drop(batch);
        expected = reports.len();
        let mut created = Vec::new();
        tracker.take_creations(&mut created);
        let batch_done = Done {
            created,
            reports,
            totals: None,
            summary: None,
        };
        if done.send(batch_done).is_err() {
            return;
        }
    }
    // Job::Finish, or the reader is gone: report what is still open.
    let mut reports = Vec::new();
    let counts = tracker.finish_keyed(&mut |k, r| match summary.as_mut() {
        Some(s) => s.add(&r),
        None => reports.push((k, r)),
    });
    let _ = done.send(Done {
        created: Vec::new(),
        reports,
        totals: Some(counts),
        summary,
    });
}

/// The reader's side: batches out, reports back in one table's order.
struct Dispatcher<'o> {
    jobs: Vec<SyncSender<Job>>,
    dones: Vec<Receiver<Done>>,
    batch: Batch,
    spare: Vec<Batch>,
    in_flight: VecDeque<Arc<Batch>>,
    /// Report ID of each open connection, by first-segment ordinal.
    ids: HashMap<u64, u64, FlowHashBuilder>,
    next_id: u64,
    totals: Totals,
    /// Totals-only mode: the workers' summaries, merged.
    summary: Summary,
    /// A worker is gone (it panicked): stop feeding; the scope re-raises its panic.
    broken: bool,
    out: &'o mut dyn FnMut(ConnectionReport),
}

impl Dispatcher<'_> {
    fn new_batch(&self) -> Batch {
        let shards = self.jobs.len().max(1);
        Batch {
            times: Vec::with_capacity(BATCH),
            // Room for an uneven split without regrowing.
            shards: (0..shards)
                .map(|_| Vec::with_capacity(BATCH / shards * 2))
                .collect(),
        }
    }

    fn push(&mut self, ts: i64, seg: &TcpSegment) {
        if self.broken {
            return;
        }
        let pos = self.batch.times.len() as u32;
        self.batch.times.push(ts);
        let shard = shard_of(seg, self.jobs.len());
        self.batch.shards[shard].push((pos, *seg));
        if self.batch.times.len() == BATCH {
            self.send_batch();
        }
    }

    fn send_batch(&mut self) {
        let next = self.spare.pop().unwrap_or_else(|| self.new_batch());
        let batch = Arc::new(std::mem::replace(&mut self.batch, next));
        for tx in &self.jobs {
            if tx.send(Job::Batch(Arc::clone(&batch))).is_err() {
                self.broken = true;
            }
        }
        self.in_flight.push_back(batch);
        while self.in_flight.len() > DEPTH && !self.broken {
            self.merge_oldest();
        }
    }

    /// Wait for every worker's result for the oldest batch in flight and emit its reports.
    fn merge_oldest(&mut self) {
        let mut dones = Vec::with_capacity(self.dones.len());
        for rx in &self.dones {
            match rx.recv() {
                Ok(d) => dones.push(d),
                Err(_) => {
                    self.broken = true;
                    return;
                }
            }
        }
        if let Some(batch) = self.in_flight.pop_front() {
            // Every worker dropped its handle before answering: the memory is ours again.
            if let Ok(mut b) = Arc::try_unwrap(batch) {
                b.clear();
                self.spare.push(b);
            }
        }
        self.merge(dones);
    }

    fn merge(&mut self, dones: Vec<Done>) {
        // IDs in order of first segment, as one table numbers its connections. A connection
        // is created in the batch of its first segment, never after the batch that ends it.
        let mut created: Vec<u64> = dones
            .iter()
            .flat_map(|d| d.created.iter().copied())
            .collect();
        created.sort_unstable();
        for first in created {
            self.next_id += 1;
            self.ids.insert(first, self.next_id);
        }
        let mut lists = Vec::with_capacity(dones.len());
        for d in dones {
            if let Some(s) = d.summary {
                self.summary.merge(s);
            }
            if let Some(t) = d.totals {
                self.totals.segments += t.segments;
                self.totals.bad_checksums += t.bad_checksums;
                self.totals.dropped += t.dropped;
                self.totals.connections += t.connections;
            }
            lists.push(d.reports.into_iter().peekable());
        }
        // Each list is in key order and keys are unique (a connection is finished once):
        // merging the heads gives one table's order without moving reports around.
        loop {
            let next = lists
                .iter_mut()
                .enumerate()
                .filter_map(|(i, l)| l.peek().map(|(k, _)| (*k, i)))
                .min();
            let Some((_, i)) = next else {
                break;
            };
            let Some((k, mut r)) = lists[i].next() else {
                break;
            };
            r.id = self
                .ids
                .remove(&k.conn)
                .expect("a connection is numbered in or before the batch that finishes it");
            (self.out)(r);
        }
    }
}

/// [`crate::analyze`] over `opts.threads` workers.
pub(crate) fn analyze<R: Read>(
    reader: CaptureReader<R>,
    opts: Options,
    out: &mut dyn FnMut(ConnectionReport),
) -> CaptureSummary {
    run(reader, opts, Output::Reports, out).1
}

/// [`crate::summarize`] over `opts.threads` workers.
pub(crate) fn summarize<R: Read>(
    reader: CaptureReader<R>,
    opts: Options,
) -> (Summary, CaptureSummary) {
    run(reader, opts, Output::Totals, &mut |_| {})
}

fn run<R: Read>(
    reader: CaptureReader<R>,
    opts: Options,
    output: Output,
    out: &mut dyn FnMut(ConnectionReport),
) -> (Summary, CaptureSummary) {
    let workers = opts.threads.max(1);
    std::thread::scope(|scope| {
        let mut d = Dispatcher {
            jobs: Vec::with_capacity(workers),
            dones: Vec::with_capacity(workers),
            batch: Batch::default(),
            spare: Vec::new(),
            in_flight: VecDeque::new(),
            ids: HashMap::with_hasher(FlowHashBuilder::random()),
            next_id: 0,
            totals: Totals::default(),
            summary: Summary::new(),
            broken: false,
            out,
        };
        for me in 0..workers {
            let (job_tx, job_rx) = mpsc::sync_channel(DEPTH);
            let (done_tx, done_rx) = mpsc::channel();
            let opts = opts.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("capture-shard-{me}"))
                .spawn_scoped(scope, move || worker(me, opts, output, job_rx, done_tx));
            // Out of threads: shard over the workers there are (the shard of a segment
            // depends only on the worker count, fixed before the first segment).
            if spawned.is_err() {
                break;
            }
            d.jobs.push(job_tx);
            d.dones.push(done_rx);
        }
        if d.jobs.is_empty() {
            let single = Options { threads: 1, ..opts };
            return match output {
                Output::Reports => (Summary::new(), crate::analyze(reader, single, d.out)),
                Output::Totals => crate::summarize(reader, single),
            };
        }
        d.batch = d.new_batch();
        let (mut summary, result) = crate::read_segments(reader, &opts, |ts, seg| d.push(ts, seg));
        if !d.batch.times.is_empty() && !d.broken {
            d.send_batch();
        }
        while !d.in_flight.is_empty() && !d.broken {
            d.merge_oldest();
        }
        for tx in &d.jobs {
            let _ = tx.send(Job::Finish);
        }
        if !d.broken {
            // The end of the capture: every worker's open connections, merged by first
            // segment as one table reports them.
            let mut dones = Vec::with_capacity(workers);
            for rx in &d.dones {
                if let Ok(done) = rx.recv() {
                    dones.push(done);
                }
            }
            d.merge(dones);
        }
        summary.totals = d.totals;
        summary.error = result.err();
        (d.summary, summary)
    })
}
