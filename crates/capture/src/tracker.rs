//! The connection table: segments in, finished connections out.
//!
//! Key: the unordered 4-tuple plus incarnation. A SYN after a close, or a SYN with a
//! different ISN, ends the current connection on that tuple and starts a new one
//! (`ZeekConn::is_reuse`, Zeek's `IsReuse`). In Zeek mode, Zeek's connection timers
//! (attempt, expire, close delay, inactivity) also end connections, exactly when Zeek
//! would, because they decide how one TCP connection splits into conn.log rows.
//! Outside Zeek mode, only closed connections idle for longer than Linux's TIME_WAIT
//! (60 s) are dropped, so that memory follows concurrent connections, not file size.

use crate::decode::{Checksum, TcpSegment};
use crate::rfc::RfcView;
use crate::zeek::{ServerPorts, ZeekConn};
use crate::ConnectionReport;
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::hash::{BuildHasher, Hash, Hasher};
use std::net::SocketAddr;

const SEC: i64 = 1_000_000_000;
// init-bare.zeek defaults.
const TCP_SYN_TIMEOUT: i64 = 5 * SEC;
const TCP_SESSION_TIMER: i64 = 6 * SEC;
const TCP_CONNECTION_LINGER: i64 = 5 * SEC;
const TCP_ATTEMPT_DELAY: i64 = 5 * SEC;
const TCP_CLOSE_DELAY: i64 = 5 * SEC;
const TCP_INACTIVITY_TIMEOUT: i64 = 300 * SEC;
const UDP_INACTIVITY_TIMEOUT: i64 = 60 * SEC;
/// Outside Zeek mode: a closed connection idle this long is finished (Linux TIME_WAIT).
const CLOSED_IDLE: i64 = 60 * SEC;

/// How to analyse.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    /// Follow Zeek exactly: drop bad-checksum packets (unless `ignore_checksums`) and split
    /// connections with Zeek's timers.
    pub zeek: bool,
    /// Zeek's `-C`: do not drop packets with bad checksums.
    pub ignore_checksums: bool,
    /// Zeek's `likely_server_ports`, which decide the direction of connections whose
    /// first packet is not a SYN: the default list, or a bare (`-b`) run's.
    pub server_ports: ServerPorts,
    /// Record each connection's full timeline (control segments, transitions, notes) in
    /// [`crate::RfcReport::timeline`]. Off, only the facts and each side's state changes
    /// are kept, which is faster (totals and tables need nothing more). Default: on.
    pub timelines: bool,
    /// Threads for the connection table: with more than one, connections are sharded by
    /// 4-tuple over that many workers while the calling thread reads and decodes; the
    /// reports, their IDs and their order are the same for any count. Default: 1 (all in
    /// the calling thread).
    pub threads: usize,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            zeek: false,
            ignore_checksums: false,
            server_ports: ServerPorts::default(),
            timelines: true,
            threads: 1,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum TimerKind {
    Attempt,
    Expire,
    ConnDelete,
    Inactivity,
    ClosedIdle,
}

/// A pending connection timer. Timers due at the same time fire in order of their
/// connection's first segment, then of arming: an order that does not depend on which other
/// connections share the table, so that sharded tables finish connections in the order one
/// table would (field order is the sort order).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Timer {
    at: i64,
    /// The connection's [`Conn::first`].
    conn: u64,
    order: u64,
    slot: usize,
    /// Analyzer-timer generation (bumped by `CancelTimers`) or inactivity generation.
    generation: u32,
    kind: TimerKind,
}

/// Unordered 4-tuple, packed into words for a cheap hash and compare: each address as
/// 128 bits (IPv4 in the low 32), both ports and the address family in the last word.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FlowKey {
    lo: u128,
    hi: u128,
    ports: u64,
}

fn ip_bits(a: &SocketAddr) -> (u128, u64) {
    match a {
        SocketAddr::V4(v4) => (u128::from(v4.ip().to_bits()), 4),
        SocketAddr::V6(v6) => (v6.ip().to_bits(), 6),
    }
}

impl FlowKey {
    fn new(a: SocketAddr, b: SocketAddr) -> FlowKey {
        let ((ia, family), (ib, _)) = (ip_bits(&a), ip_bits(&b));
        // Order the endpoints so that both directions give the same key.
        let ((lo, lp), (hi, hp)) = if (ia, a.port()) <= (ib, b.port()) {
            ((ia, a.port()), (ib, b.port()))
        } else {
            ((ib, b.port()), (ia, a.port()))
        };
        FlowKey {
            lo,
            hi,
            ports: u64::from(lp) | u64::from(hp) << 16 | family << 32,
        }
    }
}

impl Hash for FlowKey {
    fn hash<H: Hasher>(&self, state: &mut H) {
        for w in [
            self.lo as u64,
            (self.lo >> 64) as u64,
            self.hi as u64,
            (self.hi >> 64) as u64,
            self.ports,
        ] {
            state.write_u64(w);
        }
    }
}

/// Which of `n` shards the connection of a segment belongs to: both directions agree (the
/// endpoints are combined with XOR, which does not care about their order), and every
/// segment of a 4-tuple goes to the same shard (reuse of the tuple included). Runs once per
/// segment on the reading thread, so it avoids building the ordered [`FlowKey`].
pub(crate) fn shard_of(seg: &TcpSegment, n: usize) -> usize {
    let ((a, _), (b, _)) = (ip_bits(&seg.src), ip_bits(&seg.dst));
    let x = a ^ b;
    let ports = u64::from(seg.src.port() ^ seg.dst.port());
    let k = (x as u64) ^ ((x >> 64) as u64).rotate_left(29) ^ (ports << 40) ^ ports;
    let h = folded_multiply(k ^ MIX, MIX.rotate_left(23) | 1);
    // Multiply-shift: an even spread over n without a division.
    ((u128::from(h) * n as u128) >> 64) as usize
}

/// The connection table's hasher: a folded 64×64→128-bit multiply per word (the mixing of
/// foldhash and wyhash), keyed by a per-table random seed, so that a crafted capture cannot
/// choose colliding tuples without knowing the seed. SipHash (std's default) costs several
/// times more per lookup, and the table is looked up once per packet.
#[derive(Clone, Copy)]
pub(crate) struct FlowHasher(u64);

const MIX: u64 = 0x9e37_79b9_7f4a_7c15;

fn folded_multiply(a: u64, b: u64) -> u64 {
    let p = u128::from(a) * u128::from(b);
    (p as u64) ^ ((p >> 64) as u64)
}

impl Hasher for FlowHasher {
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut w = [0u8; 8];
            w[..chunk.len()].copy_from_slice(chunk);
            self.write_u64(u64::from_le_bytes(w));
        }
    }

    fn write_u64(&mut self, w: u64) {
        self.0 = folded_multiply(self.0 ^ w, MIX);
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

/// Builds [`FlowHasher`]s from one random seed.
#[derive(Clone, Copy)]
pub(crate) struct FlowHashBuilder(u64);

impl FlowHashBuilder {
    pub(crate) fn random() -> FlowHashBuilder {
        // std's RandomState is seeded from the OS once per thread and then varied: borrow
        // its randomness rather than add a dependency.
        FlowHashBuilder(std::collections::hash_map::RandomState::new().hash_one(0u64) | 1)
    }
}

impl BuildHasher for FlowHashBuilder {
    type Hasher = FlowHasher;
    fn build_hasher(&self) -> FlowHasher {
        FlowHasher(self.0)
    }
}

struct Conn {
    /// Report ID: connections numbered in order of first segment, from 1.
    id: u64,
    /// Ordinal of the connection's first segment in the whole capture (unique).
    first: u64,
    key: FlowKey,
    /// Endpoint 0: the source of the first packet.
    addrs: [SocketAddr; 2],
    start_ns: i64,
    /// Zeek's session `last_time`.
    last_ns: i64,
    /// Time of the last packet of any kind (for the RFC view's idle drop).
    last_any_ns: i64,
    inactivity_timeout: i64,
    analyzer_gen: u32,
    inactivity_gen: u32,
    zeek: ZeekConn,
    rfc: RfcView,
    bad_checksums: u64,
}

/// Counters over the whole capture.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Totals {
    /// TCP segments seen.
    pub segments: u64,
    /// Of those, with a bad TCP checksum.
    pub bad_checksums: u64,
    /// Of those, dropped from analysis (Zeek mode without `-C`: bad checksums).
    pub dropped: u64,
    /// Connections reported.
    pub connections: u64,
}

/// When a connection was finished, as a sort key: one table emits its reports in increasing
/// key order, so the reports of sharded tables merge back into exactly that order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct FinishKey {
    /// Ordinal of the segment being processed (`u64::MAX`: the end of the capture).
    pub(crate) ordinal: u64,
    /// Which step of that segment's processing: timers and reuse, in the mode's order.
    pub(crate) phase: u8,
    /// Due time of the timer that finished the connection (0 otherwise).
    pub(crate) at: i64,
    /// The connection's first segment ordinal ([`Conn::first`]).
    pub(crate) conn: u64,
}

/// Where finished connections go, with their [`FinishKey`].
pub(crate) type Sink<'a> = dyn FnMut(FinishKey, ConnectionReport) + 'a;

/// The connection table.
pub struct Tracker {
    opts: Options,
    table: HashMap<FlowKey, usize, FlowHashBuilder>,
    slots: Vec<Option<Conn>>,
    free: Vec<usize>,
    timers: BinaryHeap<Reverse<Timer>>,
    timer_order: u64,
    next_id: u64,
    /// Ordinal of the segment being processed (the first is 1).
    ordinal: u64,
    /// First-segment ordinals of the connections created, when a sharded run asks for them.
    created: Option<Vec<u64>>,
    network_ns: i64,
    totals: Totals,
}

impl Tracker {
    /// An empty table.
    pub fn new(opts: Options) -> Tracker {
        Tracker {
            opts,
            table: HashMap::with_hasher(FlowHashBuilder::random()),
            slots: Vec::new(),
            free: Vec::new(),
            timers: BinaryHeap::new(),
            timer_order: 0,
            next_id: 0,
            ordinal: 0,
            created: None,
            network_ns: i64::MIN,
            totals: Totals::default(),
        }
    }

    /// Counters so far.
    pub fn totals(&self) -> Totals {
        self.totals
    }

    /// Connections currently open in the table.
    pub fn open_connections(&self) -> usize {
        self.table.len()
    }

    fn add_timer(&mut self, slot: usize, at: i64, kind: TimerKind) {
        let Some(c) = self.slots[slot].as_ref() else {
            return;
        };
        let generation = if kind == TimerKind::Inactivity {
            c.inactivity_gen
        } else {
            c.analyzer_gen
        };
        self.timer_order += 1;
        self.timers.push(Reverse(Timer {
            at,
            conn: c.first,
            order: self.timer_order,
            slot,
            generation,
            kind,
        }));
    }

    /// Phase of timer-driven finishes within a segment's processing: Zeek expires timers
    /// before the packet, the RFC view's idle timer runs after it.
    fn timer_phase(&self) -> u8 {
        u8::from(!self.opts.zeek)
    }

    /// Run timers due at or before `now` (Zeek: `expire_timers` before each packet).
    ///
    /// Called for every segment, and nearly always with nothing due: that check is inlined,
    /// the loop is not.
    #[inline]
    fn advance(&mut self, now: i64, out: &mut Sink<'_>) {
        if now > self.network_ns {
            self.network_ns = now;
        }
        if self
            .timers
            .peek()
            .is_some_and(|Reverse(t)| t.at <= self.network_ns)
        {
            self.run_due_timers(out);
        }
    }

    #[inline(never)]
    fn run_due_timers(&mut self, out: &mut Sink<'_>) {
        let now = self.network_ns;
        while let Some(Reverse(t)) = self.timers.peek().copied() {
            // A timer due at the end of representable time never fires (its time was
            // saturated from a garbage timestamp); otherwise re-arming at `now` would loop.
            if t.at > now || t.at == i64::MAX {
                break;
            }
            self.timers.pop();
            let Some(c) = self.slots[t.slot].as_ref() else {
                continue;
            };
            if c.first != t.conn {
                continue;
            }
            let current_gen = if t.kind == TimerKind::Inactivity {
                c.inactivity_gen
            } else {
                c.analyzer_gen
            };
            if t.generation != current_gen {
                continue;
            }
            self.fire(t, now, out);
        }
    }

    fn fire(&mut self, t: Timer, now: i64, out: &mut Sink<'_>) {
        let Some(c) = self.slots[t.slot].as_ref() else {
            return;
        };
        let key = FinishKey {
            ordinal: self.ordinal,
            phase: self.timer_phase(),
            at: t.at,
            conn: t.conn,
        };
        let z = &c.zeek;
        let (o, r) = (z.orig_index(), z.orig_index() ^ 1);
        use crate::zeek::ZeekState as Z;
        match t.kind {
            TimerKind::Attempt => {
                // AttemptTimer: an unanswered SYN is a finished attempt.
                if z.is_active
                    && matches!(z.state(o), Z::SynSent | Z::SynAckSent)
                    && z.state(r) == Z::Inactive
                {
                    self.remove(t.slot, key, out);
                }
            }
            TimerKind::Expire => {
                if !z.is_active {
                    return;
                }
                if c.last_ns.saturating_add(TCP_CONNECTION_LINGER) < now {
                    if z.did_close(0) || z.did_close(1) {
                        let done = (z.did_close(0) && z.did_close(1))
                            || z.state(0) == Z::Reset
                            || z.state(1) == Z::Reset
                            || z.state(0) == Z::Inactive
                            || z.state(1) == Z::Inactive;
                        if done {
                            self.remove(t.slot, key, out);
                            return;
                        }
                    }
                    if z.state(0) == Z::Inactive && z.state(1) == Z::Inactive {
                        self.remove(t.slot, key, out);
                        return;
                    }
                }
                self.add_timer(
                    t.slot,
                    now.saturating_add(TCP_SESSION_TIMER),
                    TimerKind::Expire,
                );
            }
            TimerKind::ConnDelete => self.remove(t.slot, key, out),
            TimerKind::Inactivity => {
                let due = c.last_ns.saturating_add(c.inactivity_timeout);
                if due <= now {
                    self.remove(t.slot, key, out);
                } else {
                    self.add_timer(t.slot, due, TimerKind::Inactivity);
                }
            }
            TimerKind::ClosedIdle => {
                let due = c.last_any_ns.saturating_add(CLOSED_IDLE);
                if due <= now {
                    self.remove(t.slot, key, out);
                } else {
                    self.add_timer(t.slot, due, TimerKind::ClosedIdle);
                }
            }
        }
    }

    fn remove(&mut self, slot: usize, key: FinishKey, out: &mut Sink<'_>) {
        // The report is built from the connection in place: a connection is about 2 KB,
        // and moving it out of its slot first costs a copy of all of it.
        let Some(c) = self.slots[slot].as_mut() else {
            return;
        };
        if self.table.get(&c.key) == Some(&slot) {
            self.table.remove(&c.key);
        }
        let r = report(c);
        self.slots[slot] = None;
        self.free.push(slot);
        self.totals.connections += 1;
        out(key, r);
    }

    /// Feed one segment captured at `ts_ns`.
    pub fn segment(&mut self, ts_ns: i64, seg: &TcpSegment, out: &mut dyn FnMut(ConnectionReport)) {
        self.segment_keyed(ts_ns, seg, &mut |_, r| out(r));
    }

    /// A segment that belongs to another shard's connections: only its time counts here
    /// (it runs this table's timers exactly as the segment itself would have).
    pub(crate) fn tick(&mut self, ts_ns: i64, out: &mut Sink<'_>) {
        self.ordinal += 1;
        self.advance(ts_ns, out);
    }

    /// Record the first-segment ordinals of created connections (for a sharded run).
    pub(crate) fn record_creations(&mut self) {
        self.created = Some(Vec::new());
    }

    /// The creations recorded since the last call.
    pub(crate) fn take_creations(&mut self, into: &mut Vec<u64>) {
        if let Some(c) = self.created.as_mut() {
            into.append(c);
        }
    }

    /// [`Tracker::segment`], with each finished connection's [`FinishKey`].
    pub(crate) fn segment_keyed(&mut self, ts_ns: i64, seg: &TcpSegment, out: &mut Sink<'_>) {
        self.ordinal += 1;
        self.totals.segments += 1;
        let bad = seg.checksum == Checksum::Bad;
        if bad {
            self.totals.bad_checksums += 1;
        }
        if self.opts.zeek {
            self.advance(ts_ns, out);
        }
        // Zeek drops a packet with a bad IPv4 header checksum before any connection exists.
        if self.opts.zeek && !self.opts.ignore_checksums && !seg.ip_checksum_ok {
            self.totals.dropped += 1;
            return;
        }
        let key = FlowKey::new(seg.src, seg.dst);
        let mut slot = self.table.get(&key).copied();
        if let Some(s) = slot {
            let c = self.slots[s].as_ref().expect("table points at a live slot");
            if c.zeek.is_reuse(seg.flags, seg.seq) {
                let key = FinishKey {
                    ordinal: self.ordinal,
                    phase: 1 - self.timer_phase(),
                    at: 0,
                    conn: c.first,
                };
                self.remove(s, key, out);
                slot = None;
            }
        }
        let slot = match slot {
            Some(s) => s,
            None => self.create(ts_ns, key, seg),
        };
        let zeek_mode = self.opts.zeek;
        let drop_bad = zeek_mode && !self.opts.ignore_checksums && bad;
        let c = self.slots[slot].as_mut().expect("live slot");
        let i = usize::from(seg.src != c.addrs[0]);
        c.last_any_ns = ts_ns;
        if bad {
            c.bad_checksums += 1;
        }
        if drop_bad {
            self.totals.dropped += 1;
            c.zeek.checksum_error(i);
            return;
        }
        let caplen_ok = !seg.truncated;
        let (fx, sets_last) = c.zeek.process(
            i,
            seg.seq,
            seg.ack,
            seg.flags,
            seg.window,
            seg.payload_len,
            seg.ip_len,
            caplen_ok,
        );
        if sets_last {
            c.last_ns = ts_ns;
        }
        c.rfc.segment(ts_ns.saturating_sub(c.start_ns), i, seg);
        let last_ns = c.last_ns;
        let closed = c.zeek.did_close(0) || c.zeek.did_close(1);
        if !zeek_mode {
            if closed && !c.rfc.idle_timer_armed {
                c.rfc.idle_timer_armed = true;
                self.add_timer(
                    slot,
                    ts_ns.saturating_add(CLOSED_IDLE),
                    TimerKind::ClosedIdle,
                );
            }
            self.advance(ts_ns, out);
            return;
        }
        if fx.handshake_done {
            let c = self.slots[slot].as_mut().expect("live slot");
            if c.inactivity_timeout != TCP_INACTIVITY_TIMEOUT {
                c.inactivity_timeout = TCP_INACTIVITY_TIMEOUT;
                c.inactivity_gen += 1;
                self.add_timer(
                    slot,
                    last_ns.saturating_add(TCP_INACTIVITY_TIMEOUT),
                    TimerKind::Inactivity,
                );
            }
        }
        if fx.attempt_timer {
            self.add_timer(
                slot,
                ts_ns.saturating_add(TCP_ATTEMPT_DELAY),
                TimerKind::Attempt,
            );
        }
        if fx.close_complete {
            let c = self.slots[slot].as_mut().expect("live slot");
            c.analyzer_gen += 1;
            self.add_timer(
                slot,
                last_ns.saturating_add(TCP_CLOSE_DELAY),
                TimerKind::ConnDelete,
            );
        } else if fx.expire_timer {
            self.add_timer(
                slot,
                last_ns.saturating_add(TCP_SESSION_TIMER),
                TimerKind::Expire,
            );
        }
    }

    fn create(&mut self, ts_ns: i64, key: FlowKey, seg: &TcpSegment) -> usize {
        self.next_id += 1;
        let mut zeek = ZeekConn::new();
        let flip =
            self.opts
                .server_ports
                .flip_at_creation(seg.src.port(), seg.dst.port(), seg.flags);
        if flip {
            zeek.flip_roles();
        }
        if let Some(created) = self.created.as_mut() {
            created.push(self.ordinal);
        }
        let conn = Conn {
            id: self.next_id,
            first: self.ordinal,
            key,
            addrs: [seg.src, seg.dst],
            start_ns: ts_ns,
            last_ns: ts_ns,
            last_any_ns: ts_ns,
            inactivity_timeout: UDP_INACTIVITY_TIMEOUT,
            analyzer_gen: 0,
            inactivity_gen: 0,
            zeek,
            rfc: RfcView::new(seg.src, seg.dst, self.opts.timelines),
            bad_checksums: 0,
        };
        let slot = match self.free.pop() {
            Some(s) => {
                self.slots[s] = Some(conn);
                s
            }
            None => {
                self.slots.push(Some(conn));
                self.slots.len() - 1
            }
        };
        self.table.insert(key, slot);
        if self.opts.zeek {
            self.add_timer(
                slot,
                ts_ns.saturating_add(TCP_SYN_TIMEOUT),
                TimerKind::Expire,
            );
            self.add_timer(
                slot,
                ts_ns.saturating_add(UDP_INACTIVITY_TIMEOUT),
                TimerKind::Inactivity,
            );
        }
        slot
    }

    /// End of capture: report every connection still open, in order of first packet.
    pub fn finish(self, out: &mut dyn FnMut(ConnectionReport)) -> Totals {
        self.finish_keyed(&mut |_, r| out(r))
    }

    /// [`Tracker::finish`], with each connection's [`FinishKey`].
    pub(crate) fn finish_keyed(mut self, out: &mut Sink<'_>) -> Totals {
        let mut live: Vec<(u64, usize)> = self
            .slots
            .iter()
            .enumerate()
            .filter_map(|(i, c)| c.as_ref().map(|c| (c.first, i)))
            .collect();
        live.sort_unstable();
        for (first, slot) in live {
            let key = FinishKey {
                ordinal: u64::MAX,
                phase: 0,
                at: 0,
                conn: first,
            };
            self.remove(slot, key, out);
        }
        self.totals
    }
}

fn report(c: &mut Conn) -> ConnectionReport {
    // conn_state reads the history (RSTOS0): before the history is moved out.
    let conn_state = c.zeek.conn_state();
    let history = c.zeek.take_history();
    let z = &c.zeek;
    let o = z.orig_index();
    let r = o ^ 1;
    let (orig_pkts, orig_ip_bytes) = z.counts(o);
    let (resp_pkts, resp_ip_bytes) = z.counts(r);
    let duration_ns = c.last_ns.saturating_sub(c.start_ns);
    crate::ConnectionReport {
        id: c.id,
        start_ns: c.start_ns,
        orig: c.addrs[o],
        resp: c.addrs[r],
        duration_ns,
        zeek: crate::ZeekSummary {
            conn_state,
            history,
            orig_bytes: z.size(o),
            resp_bytes: z.size(r),
            missed_bytes: z.missed_bytes,
            orig_pkts,
            orig_ip_bytes,
            resp_pkts,
            resp_ip_bytes,
        },
        bad_checksums: c.bad_checksums,
        rfc: c.rfc.finish(
            o,
            std::time::Duration::from_nanos(c.last_any_ns.saturating_sub(c.start_ns).max(0) as u64),
        ),
    }
}
