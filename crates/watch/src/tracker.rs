//! The sans-IO heart of the watcher: kernel events and sock_diag observations in, logical
//! transitions, lifelines and warnings out. It never reads a clock, a file or a socket;
//! the driver feeds it trace events, dumps and owners with the current time, and asks
//! which sockets to look up next ([`Tracker::lookups`]): exact lookups by 4-tuple and
//! cookie, never dumps.
//!
//! ## The TIME_WAIT truth
//! Linux never reports TIME_WAIT through `sock:inet_sock_set_state`: when the active
//! closer's FIN exchange completes, `tcp_time_wait()` hashes a timewait minisocket in the
//! full socket's place and then calls `tcp_done()`, whose `tcp_set_state(TCP_CLOSE)` is
//! the full socket's last event (`FIN_WAIT_2 → CLOSE`, or from FIN_WAIT_1 / CLOSING). An
//! orphan (the application already called close()) is handed over as soon as its FIN is
//! acknowledged, before the peer's FIN: the minisocket then carries the substate
//! FIN_WAIT_2 (`tcp_rcv_state_process()`, `tcp_fin_time()`).
//!
//! So `X → CLOSE` from FIN_WAIT_1, FIN_WAIT_2 or CLOSING with no RST seen on the socket is
//! held back until a sock_diag lookup finds the timewait socket — by the cookie it
//! inherits (`inet_twsk_alloc()`; the full socket's cookie comes from
//! `tcp:tcp_destroy_sock`), else by 4-tuple. Found: the transition is reported as
//! `X → TIME_WAIT` (or, for the FIN_WAIT_2 substate, as a handover while the connection
//! stays in FIN_WAIT_2), with the kernel's own `X → CLOSE` alongside. Not found: the
//! kernel's `X → CLOSE` is reported as is, saying no timewait socket was found.
//!
//! The minisocket's later life fires no tracepoint, so it is polled: a substate change
//! FIN_WAIT_2 → TIME_WAIT (the peer's FIN reached the orphan) is reported at the poll
//! with its resolution; its end is the timer (`idiag_expires`, re-read at every poll since
//! an ACK or a PAWS reject re-arms it in `tcp_timewait_state_process()`), or earlier when a
//! new socket takes the same 4-tuple (`tcp_twsk_unique()` reuse, or a SYN accepted in
//! TIME_WAIT: exact, from the new socket's event), when the timewait socket answers with
//! a RST (`tcp:tcp_send_reset` reason `TCP_TIMEWAIT_SOCKET`: exact), or when it vanishes
//! between two polls before its timer (an incoming RST, `ss -K`: bounded by the polls).

use crate::event::{EventKind, Task, TraceEvent};
use crate::report::{Closer, Dwell, Lifeline, Origin, Report, TransitionReport, Warning};
use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;
use tcpstate_fsm::{SegmentKind, Side, State, StepKind, Timeline, Trigger, TRANSITIONS};
use tcpstate_host::{Owner, SockKind, Socket};

/// What to show. Kinds are ANDed, values of one kind ORed; empty means no restriction.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    /// Local or remote port.
    pub ports: Vec<u16>,
    /// Local or remote IP address.
    pub addrs: Vec<IpAddr>,
    /// Transitions from or to one of these states; lifelines that visit one.
    pub states: Vec<State>,
    /// Owner pid (connections whose owner was not found do not match).
    pub pids: Vec<u32>,
}

impl Filter {
    fn tuple_ok(&self, local: &SocketAddr, remote: &SocketAddr) -> bool {
        (self.ports.is_empty()
            || self.ports.contains(&local.port())
            || self.ports.contains(&remote.port()))
            && (self.addrs.is_empty()
                || self.addrs.contains(&local.ip())
                || self.addrs.contains(&remote.ip()))
    }

    fn owner_ok(&self, owner: &Option<Owner>) -> bool {
        self.pids.is_empty() || owner.as_ref().is_some_and(|o| self.pids.contains(&o.pid))
    }
}

/// How the tracker is fed.
#[derive(Debug, Clone)]
pub struct TrackerOptions {
    /// Warn once per socket past this time in CLOSE_WAIT.
    pub close_wait_threshold: Option<Duration>,
    /// Only sockets found in the dumped namespace(s) are reported (false: every event,
    /// e.g. `--all-netns`).
    pub check_membership: bool,
    /// How often timewait sockets are polled for their substate and end.
    pub timewait_poll: Duration,
    /// What to show.
    pub filter: Filter,
    /// Look up owners.
    pub owners: bool,
    /// When the watch began (trace clock).
    pub start: Duration,
}

impl Default for TrackerOptions {
    fn default() -> Self {
        TrackerOptions {
            close_wait_threshold: None,
            check_membership: true,
            timewait_poll: Duration::from_secs(1),
            filter: Filter::default(),
            owners: true,
            start: Duration::ZERO,
        }
    }
}

/// One exact sock_diag lookup (`SOCK_DIAG_BY_FAMILY` without `NLM_F_DUMP`,
/// `inet_diag_find_one_icsk()`) the tracker wants: the socket with this 4-tuple in the
/// watched namespace(s), and with this cookie when one is given (the kernel checks it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lookup {
    /// The tracker's connection id.
    pub conn: u64,
    /// Local address and port.
    pub local: SocketAddr,
    /// Remote address and port.
    pub remote: SocketAddr,
    /// The socket's cookie, when known.
    pub cookie: Option<u64>,
    /// A timewait socket is expected (a handover to confirm, or a poll).
    pub timewait: bool,
}

#[derive(Debug, Clone)]
struct Rst {
    sent: bool,
    reason: Option<String>,
}

#[derive(Debug, Clone)]
struct Tw {
    /// When the full socket handed over (its kernel CLOSE event).
    since: Duration,
    /// The state before the handover.
    from: State,
    /// Substate found by sock_diag (None: not yet looked up).
    substate: Option<State>,
    /// When the timer fires, as last reported.
    expires_at: Option<Duration>,
    /// Last poll that saw it.
    last_seen: Option<Duration>,
    /// Task of the kernel CLOSE event.
    task: Task,
    /// The cookie to ask for: the full socket's, when it existed before the handover
    /// (`inet_twsk_alloc()` copies `sk_cookie`; one first made by `tcp:tcp_destroy_sock`,
    /// after the copy, is not the minisocket's), then the minisocket's own once found.
    cookie: Option<u64>,
    /// When it is next asked for (its key in the poll schedule).
    next_poll: Option<Duration>,
}

#[derive(Debug, Clone)]
struct Conn {
    id: u64,
    local: SocketAddr,
    remote: SocketAddr,
    /// Logical states with entry times.
    path: Vec<(State, Duration)>,
    /// The first state was entered before it was observed.
    first_unobserved: bool,
    /// The first path entry is the socket's birth (CLOSED, or the listener it was cloned
    /// from), not a state it dwelt in.
    born: bool,
    cookie: Option<u64>,
    inode: Option<u64>,
    uid: Option<u32>,
    owner: Option<Owner>,
    owner_tried: bool,
    owner_asked: bool,
    looked_up: bool,
    member: Option<bool>,
    rst: Option<Rst>,
    closed_first: Option<Closer>,
    tw: Option<Tw>,
    cw_warned: bool,
    /// The first task that changed its state from process context (its own syscall).
    task_pid: Option<i32>,
    ended: Option<(Duration, String, Option<String>)>,
    sampled: bool,
}

impl Conn {
    fn state(&self) -> State {
        self.path.last().map(|p| p.0).unwrap_or(State::Closed)
    }

    fn entered(&self) -> Duration {
        self.path.last().map(|p| p.1).unwrap_or_default()
    }

    fn key(&self) -> Key {
        (self.local, self.remote)
    }
}

type Key = (SocketAddr, SocketAddr);

#[derive(Debug, Clone)]
enum Pending {
    /// A logical transition, finalised at drain.
    Transition {
        conn: u64,
        at: Duration,
        from: State,
        to: State,
        dwell: Option<Duration>,
        task: Option<Task>,
        origin: Origin,
        kernel: Option<(State, State)>,
        note: Option<String>,
    },
    /// A handover to a timewait socket awaiting its lookup.
    TimewaitEntry { conn: u64 },
    /// The end of a connection.
    End { conn: u64 },
}

/// Counters and dwell samples behind `--summary`.
#[derive(Debug, Clone, Default)]
pub struct Summary {
    /// Completed dwell times per state.
    pub dwell: BTreeMap<State, Vec<Duration>>,
    /// Logical transitions reported.
    pub transitions: BTreeMap<(State, State), u64>,
    /// CLOSE_WAIT dwell per owner (`process[pid]`, or `unknown`).
    pub close_wait_by_process: BTreeMap<String, Vec<Duration>>,
    /// Connections that ended in a RST, by direction and reason.
    pub rst_endings: BTreeMap<String, u64>,
    /// Handover to a timewait socket confirmed by sock_diag.
    pub timewait_confirmed: u64,
    /// Handover without a RST where no timewait socket was found.
    pub timewait_not_found: u64,
    /// Connections ended.
    pub ended: u64,
    /// Connections left out because they could not be placed in the watched namespace.
    pub unattributed: u64,
    /// Trace lines that did not decode.
    pub bad_lines: u64,
}

/// Nearest-rank percentile of sorted samples.
pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// The tracker.
#[derive(Debug)]
pub struct Tracker {
    opts: TrackerOptions,
    next_id: u64,
    conns: HashMap<u64, Conn>,
    live: HashMap<Key, u64>,
    /// Connects still without a local port: (local ip, remote) → ids, oldest first.
    connecting: HashMap<(IpAddr, SocketAddr), VecDeque<u64>>,
    /// Recently ended keys, for late `tcp_destroy_sock` events.
    ended_keys: HashMap<Key, u64>,
    /// Recently ended connections' paths, to draw both ends of a loopback connection.
    recent: VecDeque<Conn>,
    pending: VecDeque<Pending>,
    summary: Summary,
    sample_resolution: Option<Duration>,
    by_cookie: HashMap<u64, u64>,
    pid_in_ns: HashMap<i32, bool>,
    /// Connections not yet looked up: each round touches only these, the handovers and
    /// the timewait polls due, never every connection (tens of thousands of timewait
    /// sockets under a connect/close loop).
    unplaced: Vec<u64>,
    /// Handovers to a timewait socket not yet confirmed.
    handovers: Vec<u64>,
    /// Timewait polls by due time.
    tw_schedule: std::collections::BTreeSet<(Duration, u64)>,
}

const RECENT: usize = 256;

impl Tracker {
    /// A tracker for tracepoint events.
    pub fn new(opts: TrackerOptions) -> Tracker {
        Tracker {
            opts,
            next_id: 1,
            conns: HashMap::new(),
            live: HashMap::new(),
            connecting: HashMap::new(),
            ended_keys: HashMap::new(),
            recent: VecDeque::new(),
            pending: VecDeque::new(),
            summary: Summary::default(),
            sample_resolution: None,
            by_cookie: HashMap::new(),
            pid_in_ns: HashMap::new(),
            unplaced: Vec::new(),
            handovers: Vec::new(),
            tw_schedule: std::collections::BTreeSet::new(),
        }
    }

    /// The counters so far.
    pub fn summary(&self) -> &Summary {
        &self.summary
    }

    /// Counts a trace line that did not decode.
    pub fn bad_line(&mut self) {
        self.summary.bad_lines += 1;
    }

    /// Connections currently tracked.
    pub fn open_connections(&self) -> usize {
        self.live.len()
    }

    fn new_conn(&mut self, local: SocketAddr, remote: SocketAddr) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        self.conns.insert(
            id,
            Conn {
                id,
                local,
                remote,
                path: Vec::new(),
                first_unobserved: false,
                born: false,
                cookie: None,
                inode: None,
                uid: None,
                owner: None,
                owner_tried: !self.opts.owners,
                owner_asked: false,
                looked_up: false,
                member: (!self.opts.check_membership).then_some(true),
                rst: None,
                closed_first: None,
                tw: None,
                cw_warned: false,
                task_pid: None,
                ended: None,
                sampled: false,
            },
        );
        self.unplaced.push(id);
        id
    }

    /// Feeds one kernel event.
    pub fn feed(&mut self, ev: &TraceEvent) {
        match &ev.kind {
            EventKind::SetState {
                local,
                remote,
                old,
                new,
            } => self.set_state(ev.ts, &ev.task, *local, *remote, *old, *new),
            EventKind::SendReset {
                local,
                remote,
                reason,
                ..
            } => {
                let key = (*local, *remote);
                // tcp_disconnect() and __tcp_close() set CLOSE before they send the RST
                // (tcp_send_active_reset()): the RST may follow the end by a moment.
                if let Some(&id) = self.ended_keys.get(&key) {
                    if let Some(c) = self.conns.get_mut(&id) {
                        if let Some((at, end, detail)) = &mut c.ended {
                            if end == "closed"
                                && ev.ts.saturating_sub(*at) < Duration::from_millis(1)
                            {
                                *end = "rst_sent".into();
                                *detail = Some(reason.clone());
                                c.rst = Some(Rst {
                                    sent: true,
                                    reason: Some(reason.clone()),
                                });
                            }
                        }
                    }
                    return;
                }
                let Some(&id) = self.live.get(&key) else {
                    return;
                };
                let unconfirmed = self.conns[&id].tw.as_ref().is_some_and(|t| {
                    t.substate.is_none() && ev.ts.saturating_sub(t.since) < Duration::from_millis(1)
                });
                if unconfirmed && reason != "TCP_TIMEWAIT_SOCKET" {
                    // CLOSE from FIN_WAIT_1/2 or CLOSING followed by our RST (close with
                    // unread data, linger 0): an abort, not a timewait handover.
                    let c = self.conns.get_mut(&id).expect("live");
                    let tw = c.tw.take().expect("checked");
                    let dwell = (!(c.path.len() == 1 && c.first_unobserved))
                        .then(|| tw.since.saturating_sub(c.entered()));
                    c.path.push((State::Closed, tw.since));
                    c.rst = Some(Rst {
                        sent: true,
                        reason: Some(reason.clone()),
                    });
                    c.ended = Some((tw.since, "rst_sent".into(), Some(reason.clone())));
                    self.pending.push_back(Pending::Transition {
                        conn: id,
                        at: tw.since,
                        from: tw.from,
                        to: State::Closed,
                        dwell,
                        task: Some(tw.task),
                        origin: Origin::Tracepoint,
                        kernel: None,
                        note: None,
                    });
                    self.live.remove(&key);
                    self.ended_keys.insert(key, id);
                    self.pending.push_back(Pending::End { conn: id });
                    return;
                }
                if self.conns[&id].tw.is_some() {
                    if reason == "TCP_TIMEWAIT_SOCKET" {
                        // tcp_timewait_state_process() → TCP_TW_RST: the RST is sent and
                        // the minisocket descheduled (inet_twsk_deschedule_put()).
                        self.end_timewait(
                            id,
                            ev.ts,
                            Origin::TimewaitEvent,
                            "timewait_rst",
                            Some(
                                "the timewait socket answered a segment with RST and was dropped"
                                    .into(),
                            ),
                        );
                    }
                    return;
                }
                if let Some(c) = self.conns.get_mut(&id) {
                    c.rst = Some(Rst {
                        sent: true,
                        reason: Some(reason.clone()),
                    });
                }
            }
            EventKind::ReceiveReset {
                local,
                remote,
                cookie,
            } => {
                if let Some(&id) = self.live.get(&(*local, *remote)) {
                    if let Some(c) = self.conns.get_mut(&id) {
                        c.rst = Some(Rst {
                            sent: false,
                            reason: None,
                        });
                        c.cookie = Some(*cookie);
                    }
                }
            }
            EventKind::Destroy {
                local,
                remote,
                cookie,
            } => {
                let key = (*local, *remote);
                let id = self
                    .live
                    .get(&key)
                    .or_else(|| self.ended_keys.get(&key))
                    .copied();
                if let Some(c) = id.and_then(|id| self.conns.get_mut(&id)) {
                    c.cookie.get_or_insert(*cookie);
                }
            }
        }
    }

    fn set_state(
        &mut self,
        ts: Duration,
        task: &Task,
        local: SocketAddr,
        remote: SocketAddr,
        old: State,
        new: State,
    ) {
        let key = (local, remote);
        // A new socket on the 4-tuple of a timewait socket: the minisocket was replaced
        // (tcp_twsk_unique() reuse for a connect, TCP_TW_SYN for an accepted SYN).
        if let Some(&id) = self.live.get(&key) {
            if self.conns[&id].tw.is_some() {
                self.end_timewait(
                    id,
                    ts,
                    Origin::TimewaitEvent,
                    "timewait_reused",
                    Some("a new connection took the 4-tuple".into()),
                );
            }
        }
        let id = match self.live.get(&key) {
            Some(&id) => id,
            None => self.adopt_or_create(local, remote, old, new),
        };
        let Some(c) = self.conns.get_mut(&id) else {
            return;
        };
        if !task.interrupt && c.task_pid.is_none() {
            c.task_pid = Some(task.pid);
        }
        let mut note = None;
        if c.state() != old && !c.path.is_empty() {
            note = Some(format!(
                "kernel says it left {old}, last seen in {} (events lost?)",
                c.state()
            ));
        }
        let dwell = (!(c.path.is_empty() || c.path.len() == 1 && c.first_unobserved))
            .then(|| ts.saturating_sub(c.entered()));
        if c.path.is_empty() {
            // A fresh socket (CLOSE → SYN_SENT / LISTEN), or a child cloned from its
            // listener (inet_csk_clone_lock(): LISTEN → SYN_RECV): born now.
            if old == State::Closed || (old == State::Listen && new == State::SynReceived) {
                c.path.push((old, ts));
                c.born = true;
            } else {
                // Entered before the watch (or while unobserved).
                c.path.push((old, self.opts.start.min(ts)));
                c.first_unobserved = true;
            }
        }
        match (old, new) {
            (State::Established | State::SynReceived, State::FinWait1) => {
                c.closed_first.get_or_insert(Closer::Local);
            }
            (State::Established, State::CloseWait) => {
                c.closed_first.get_or_insert(Closer::Peer);
            }
            (State::FinWait1, State::Closing) => c.closed_first = Some(Closer::Simultaneous),
            _ => {}
        }
        if new == State::Closed
            && matches!(old, State::FinWait1 | State::FinWait2 | State::Closing)
            && c.rst.is_none()
        {
            // tcp_time_wait() → tcp_done(): held until the timewait socket is looked up.
            c.tw = Some(Tw {
                since: ts,
                from: old,
                substate: None,
                expires_at: None,
                last_seen: None,
                task: task.clone(),
                cookie: c.cookie,
                next_poll: None,
            });
            self.handovers.push(id);
            self.pending.push_back(Pending::TimewaitEntry { conn: id });
            return;
        }
        c.path.push((new, ts));
        self.pending.push_back(Pending::Transition {
            conn: id,
            at: ts,
            from: old,
            to: new,
            dwell,
            task: Some(task.clone()),
            origin: Origin::Tracepoint,
            kernel: None,
            note,
        });
        if new == State::Closed {
            let (end, detail) = match &c.rst {
                Some(Rst { sent: true, reason }) => ("rst_sent", reason.clone()),
                Some(Rst { sent: false, .. }) => ("rst_received", None),
                None if old == State::LastAck => ("fin", None),
                None if old == State::Listen => ("listener_closed", None),
                None if old == State::SynSent => ("connect_failed", None),
                None => ("closed", None),
            };
            c.ended = Some((ts, end.to_string(), detail));
            self.live.remove(&key);
            self.ended_keys.insert(key, id);
            self.pending.push_back(Pending::End { conn: id });
        }
    }

    fn adopt_or_create(
        &mut self,
        local: SocketAddr,
        remote: SocketAddr,
        old: State,
        new: State,
    ) -> u64 {
        // connect(): CLOSE → SYN_SENT fires in tcp_v4_connect() before
        // inet_hash_connect() picks the local port, so that event has port 0; the socket's
        // next event (from SYN_SENT) carries the port. Adopt the oldest such connect.
        if old == State::SynSent && local.port() != 0 {
            let k = (local.ip(), remote);
            if let Some(q) = self.connecting.get_mut(&k) {
                if let Some(id) = q.pop_front() {
                    if q.is_empty() {
                        self.connecting.remove(&k);
                    }
                    let zero = SocketAddr::new(local.ip(), 0);
                    self.live.remove(&(zero, remote));
                    if let Some(c) = self.conns.get_mut(&id) {
                        c.local = local;
                    }
                    self.live.insert((local, remote), id);
                    return id;
                }
            }
        }
        let id = self.new_conn(local, remote);
        if old == State::Closed && new == State::SynSent && local.port() == 0 {
            self.connecting
                .entry((local.ip(), remote))
                .or_default()
                .push_back(id);
            // Keyed with port 0 until adopted (or failed with port 0, which also matches).
            self.live.entry((local, remote)).or_insert(id);
        } else {
            self.live.insert((local, remote), id);
        }
        id
    }

    fn end_timewait(
        &mut self,
        id: u64,
        at: Duration,
        origin: Origin,
        end: &str,
        detail: Option<String>,
    ) {
        let Some(c) = self.conns.get_mut(&id) else {
            return;
        };
        let Some(tw) = &c.tw else { return };
        let from = tw.substate.unwrap_or(State::TimeWait);
        if tw.substate.is_none() {
            // Ended before its lookup: whether a timewait socket took over is unknown;
            // report the kernel's own X → CLOSE.
            let (since, from, task) = (tw.since, tw.from, tw.task.clone());
            let dwell = (!(c.path.len() == 1 && c.first_unobserved))
                .then(|| since.saturating_sub(c.entered()));
            c.path.push((State::Closed, since));
            self.pending.push_back(Pending::Transition {
                conn: id,
                at: since,
                from,
                to: State::Closed,
                dwell,
                task: Some(task),
                origin: Origin::TimewaitNotFound,
                kernel: None,
                note: Some(format!(
                    "no lookup before the 4-tuple was taken again at +{}",
                    crate::report::Human(at.saturating_sub(since))
                )),
            });
        } else {
            let dwell = at.saturating_sub(c.entered());
            c.path.push((State::Closed, at));
            self.pending.push_back(Pending::Transition {
                conn: id,
                at,
                from,
                to: State::Closed,
                dwell: Some(dwell),
                task: None,
                origin,
                kernel: None,
                note: detail.clone(),
            });
        }
        c.tw = None;
        c.ended = Some((at, end.to_string(), detail));
        let key = c.key();
        self.live.remove(&key);
        self.ended_keys.insert(key, id);
        self.pending.push_back(Pending::End { conn: id });
    }

    /// Sampled mode: one sock_diag dump, `resolution` after the previous one. Sockets are
    /// tracked by cookie; a state seen for the first time, a changed state and a vanished
    /// socket become transitions at `now`, exact only to `resolution`.
    pub fn feed_sample(&mut self, now: Duration, sockets: &[Socket], resolution: Duration) {
        let first = self.sample_resolution.is_none();
        self.sample_resolution = Some(resolution);
        let mut seen = HashSet::new();
        for s in sockets {
            let Some(cookie) = s.cookie else { continue };
            seen.insert(cookie);
            let id = match self.by_cookie.get(&cookie) {
                Some(&id) => id,
                None => {
                    let id = self.new_conn(s.local, s.peer);
                    self.by_cookie.insert(cookie, id);
                    self.live.insert((s.local, s.peer), id);
                    let c = self.conns.get_mut(&id).expect("just inserted");
                    c.sampled = true;
                    c.cookie = Some(cookie);
                    c.member = Some(true);
                    c.first_unobserved = true;
                    c.path
                        .push((s.state, if first { self.opts.start } else { now }));
                    if !first {
                        // Created between two samples: its first state is a lower bound.
                        self.pending.push_back(Pending::Transition {
                            conn: id,
                            at: now,
                            from: State::Closed,
                            to: s.state,
                            dwell: None,
                            task: None,
                            origin: Origin::Sampled(resolution),
                            kernel: None,
                            note: Some("first seen".into()),
                        });
                    }
                    id
                }
            };
            let c = self.conns.get_mut(&id).expect("tracked");
            if s.inode != 0 {
                c.inode = Some(s.inode);
                c.uid = Some(s.uid);
            }
            if c.state() != s.state {
                let from = c.state();
                let dwell = (!(c.path.len() == 1 && c.first_unobserved))
                    .then(|| now.saturating_sub(c.entered()));
                match (from, s.state) {
                    (State::Established, State::FinWait1 | State::FinWait2) => {
                        c.closed_first.get_or_insert(Closer::Local);
                    }
                    (State::Established, State::CloseWait | State::LastAck) => {
                        c.closed_first.get_or_insert(Closer::Peer);
                    }
                    _ => {}
                }
                c.path.push((s.state, now));
                self.pending.push_back(Pending::Transition {
                    conn: id,
                    at: now,
                    from,
                    to: s.state,
                    dwell,
                    task: None,
                    origin: Origin::Sampled(resolution),
                    kernel: None,
                    note: None,
                });
            }
        }
        let gone: Vec<(u64, u64)> = self
            .by_cookie
            .iter()
            .filter(|(cookie, _)| !seen.contains(cookie))
            .map(|(c, id)| (*c, *id))
            .collect();
        for (cookie, id) in gone {
            self.by_cookie.remove(&cookie);
            let Some(c) = self.conns.get_mut(&id) else {
                continue;
            };
            let from = c.state();
            let dwell = (!(c.path.len() == 1 && c.first_unobserved))
                .then(|| now.saturating_sub(c.entered()));
            c.path.push((State::Closed, now));
            let end = match from {
                State::TimeWait => "timewait_gone",
                State::LastAck => "fin",
                _ => "gone",
            };
            c.ended = Some((now, end.into(), None));
            let key = c.key();
            self.live.remove(&key);
            self.pending.push_back(Pending::Transition {
                conn: id,
                at: now,
                from,
                to: State::Closed,
                dwell,
                task: None,
                origin: Origin::Sampled(resolution),
                kernel: None,
                note: Some("no longer in the table".into()),
            });
            self.pending.push_back(Pending::End { conn: id });
        }
        for c in self.conns.values_mut() {
            if c.sampled {
                c.looked_up = true;
            }
        }
        // Sampled connections are never looked up.
        self.unplaced.clear();
    }

    /// The exact sock_diag lookups wanted before the next [`Tracker::drain`]: one per
    /// socket, never a dump. Asked for are
    /// - connections not yet placed in the watched namespace(s) and still open (one that
    ///   already reached CLOSE is unhashed, `inet_unhash()`, so no lookup can find it:
    ///   it is placed by its loopback peer or by the task that made its calls, see
    ///   [`Tracker::apply_lookups`]); a connect still without its local port is left to
    ///   the same fallback;
    /// - every handover to a timewait socket not yet confirmed;
    /// - confirmed timewait sockets whose poll is due (`timewait_poll` after they were
    ///   last seen) or whose timer was due since.
    pub fn lookups(&self, now: Duration) -> Vec<Lookup> {
        let ask = |c: &Conn, timewait, cookie| Lookup {
            conn: c.id,
            local: c.local,
            remote: c.remote,
            cookie,
            timewait,
        };
        let mut out = Vec::new();
        for c in self.handovers.iter().filter_map(|id| self.conns.get(id)) {
            if let Some(tw) = c.tw.as_ref().filter(|t| t.substate.is_none()) {
                out.push(ask(c, true, tw.cookie));
            }
        }
        for (due, id) in self.tw_schedule.range(..=(now, u64::MAX)) {
            let Some(c) = self.conns.get(id) else {
                continue;
            };
            if let Some(tw) = c.tw.as_ref().filter(|t| t.next_poll == Some(*due)) {
                out.push(ask(c, true, tw.cookie));
            }
        }
        for c in self.unplaced.iter().filter_map(|id| self.conns.get(id)) {
            if !c.sampled
                && !c.looked_up
                && c.tw.is_none()
                && c.ended.is_none()
                && c.local.port() != 0
            {
                out.push(ask(c, false, c.cookie));
            }
        }
        out
    }

    /// Applies the answers to [`Tracker::lookups`] (`found[i]` answers `asked[i]`: the
    /// socket the kernel found, or None), taken at `now`, and places what no lookup could
    /// find. Returns the inodes whose owners are wanted.
    pub fn apply_lookups(
        &mut self,
        now: Duration,
        asked: &[Lookup],
        found: &[Option<Socket>],
    ) -> HashSet<u64> {
        let poll = self.opts.timewait_poll;
        let mut tw_events = Vec::new();
        let mut schedule = Vec::new();
        // Tuples the kernel holds (any kind), for placing a loopback end by its peer.
        let mut present: HashSet<Key> = HashSet::new();
        for (l, s) in asked.iter().zip(found) {
            let Some(c) = self.conns.get_mut(&l.conn) else {
                continue;
            };
            // inet_lookup() falls back to a listener when no connection has the tuple:
            // only the socket with exactly this 4-tuple answers.
            let s = s
                .as_ref()
                .filter(|s| s.local == c.local && s.peer == c.remote);
            if let Some(s) = s {
                present.insert((s.local, s.peer));
            }
            let full = s.filter(|s| s.kind != SockKind::TimeWaitMini);
            let tw_sock = s.filter(|s| s.kind == SockKind::TimeWaitMini);
            if !c.looked_up {
                if let Some(s) = full {
                    c.member = Some(true);
                    if s.inode != 0 {
                        c.inode = Some(s.inode);
                        c.uid = Some(s.uid);
                    }
                    if c.cookie.is_none() {
                        c.cookie = s.cookie;
                    }
                } else if tw_sock.is_some() && c.tw.is_some() {
                    c.member = Some(true);
                }
            }
            if !l.timewait {
                continue;
            }
            let Some(tw) = c.tw.as_mut() else { continue };
            match (tw.substate, tw_sock) {
                (None, Some(s)) => {
                    tw.substate = Some(s.state);
                    tw.last_seen = Some(now);
                    tw.expires_at = s.timer.map(|t| now + t.expires);
                    // From now on it is asked for by its own cookie: exact.
                    tw.cookie = s.cookie.or(tw.cookie);
                    c.member = Some(true);
                    schedule.push((c.id, next_poll(tw, now, poll)));
                }
                (None, None) => tw_events.push((c.id, TwEvent::NotFound)),
                (Some(sub), Some(s)) => {
                    tw.last_seen = Some(now);
                    tw.expires_at = s.timer.map(|t| now + t.expires);
                    schedule.push((c.id, next_poll(tw, now, poll)));
                    if sub != s.state {
                        tw.substate = Some(s.state);
                        tw_events.push((c.id, TwEvent::Substate(sub, s.state)));
                    }
                }
                (Some(_), None) => {
                    let last = tw.last_seen.unwrap_or(tw.since);
                    match tw.expires_at {
                        // The timer fired: the end is when it was due.
                        Some(e) if e <= now + Duration::from_millis(5) => {
                            tw_events.push((c.id, TwEvent::Expired(e.max(last))))
                        }
                        _ => tw_events.push((c.id, TwEvent::Vanished(last))),
                    }
                }
            }
        }
        // The polls due were asked; the next ones are scheduled.
        self.tw_schedule = self.tw_schedule.split_off(&(now, u64::MAX));
        for (id, due) in schedule {
            if let Some(tw) = self.conns.get_mut(&id).and_then(|c| c.tw.as_mut()) {
                tw.next_poll = Some(due);
                self.tw_schedule.insert((due, id));
            }
        }
        // Everything that could be asked has been; the rest is placed below.
        let mut touched = std::mem::take(&mut self.unplaced);
        touched.append(&mut self.handovers);
        for id in &touched {
            if let Some(c) = self.conns.get_mut(id) {
                if !c.sampled {
                    c.looked_up = true;
                }
            }
        }
        // A loopback connection's two ends live in one namespace: an end gone before the
        // lookup belongs where its peer was found.
        for id in &touched {
            let Some(c) = self.conns.get(id) else {
                continue;
            };
            if c.member.is_some() {
                continue;
            }
            let rev = (c.remote, c.local);
            let loopback = c.local.ip().is_loopback() && c.remote.ip().is_loopback();
            let is_member = |other: Option<&Conn>| other.is_some_and(|o| o.member == Some(true));
            let peer_here = loopback
                && (present.contains(&rev)
                    || is_member(self.live.get(&rev).and_then(|i| self.conns.get(i)))
                    || is_member(self.ended_keys.get(&rev).and_then(|i| self.conns.get(i)))
                    || self
                        .recent
                        .iter()
                        .any(|r| r.key() == rev && r.member == Some(true)));
            let task_here = c.task_pid.and_then(|p| self.pid_in_ns.get(&p)).copied();
            let member = if peer_here {
                true
            } else {
                // Gone before the lookup: the process that made its own calls on it
                // (connect, close) is in the namespace, or not.
                task_here.unwrap_or(false)
            };
            if let Some(c) = self.conns.get_mut(id) {
                c.member = Some(member);
            }
        }
        for (id, ev) in tw_events {
            self.apply_tw_event(id, now, poll, ev);
        }
        let mut wanted = HashSet::new();
        for id in &touched {
            if let Some(c) = self.conns.get_mut(id) {
                if let Some(ino) = c
                    .inode
                    .filter(|_| c.member == Some(true) && !c.owner_tried && !c.owner_asked)
                {
                    c.owner_asked = true;
                    wanted.insert(ino);
                }
            }
        }
        wanted
    }

    /// Inodes of placed sockets whose owners were not asked for yet (each is asked once).
    pub fn owners_wanted(&mut self) -> HashSet<u64> {
        let mut wanted = HashSet::new();
        for c in self.conns.values_mut() {
            if c.member == Some(true) && !c.owner_tried && !c.owner_asked {
                if let Some(ino) = c.inode {
                    c.owner_asked = true;
                    wanted.insert(ino);
                }
            }
        }
        wanted
    }

    /// Pids of tasks (process context) of connections not yet placed in a namespace: the
    /// driver says which are in the watched namespace(s) with [`Tracker::set_pid_netns`]
    /// before [`Tracker::apply_lookups`], for sockets gone before their lookup.
    pub fn unplaced_task_pids(&self) -> HashSet<i32> {
        self.unplaced
            .iter()
            .chain(&self.handovers)
            .filter_map(|id| self.conns.get(id))
            .filter(|c| c.member.is_none())
            .filter_map(|c| c.task_pid)
            .filter(|p| !self.pid_in_ns.contains_key(p))
            .collect()
    }

    /// Whether each pid is in the watched namespace(s).
    pub fn set_pid_netns(&mut self, pids: impl IntoIterator<Item = (i32, bool)>) {
        if self.pid_in_ns.len() > 65_536 {
            self.pid_in_ns.clear();
        }
        self.pid_in_ns.extend(pids);
    }

    /// Uids of the sockets whose owners are wanted (scanned first by the owner scan).
    pub fn wanted_uids(&self) -> HashSet<u32> {
        self.conns
            .values()
            .filter(|c| !c.owner_tried)
            .filter_map(|c| c.uid)
            .collect()
    }

    fn apply_tw_event(&mut self, id: u64, now: Duration, poll: Duration, ev: TwEvent) {
        match ev {
            TwEvent::NotFound => {
                // Resolved at drain (reported as the kernel's X → CLOSE).
                if let Some(c) = self.conns.get_mut(&id) {
                    if let Some(tw) = &mut c.tw {
                        tw.substate = Some(State::Closed);
                    }
                }
            }
            TwEvent::Substate(from, to) => {
                let Some(c) = self.conns.get(&id) else { return };
                // When the peer is on this host too, its LAST_ACK is the moment its FIN
                // left; otherwise the poll bounds it.
                let rev = (c.remote, c.local);
                let peer_fin = self
                    .live
                    .get(&rev)
                    .or_else(|| self.ended_keys.get(&rev))
                    .and_then(|pid| self.conns.get(pid))
                    .or_else(|| self.recent.iter().rev().find(|r| r.key() == rev))
                    .and_then(|p| {
                        p.path
                            .iter()
                            .find(|(s, _)| *s == State::LastAck)
                            .map(|(_, t)| *t)
                    })
                    .filter(|t| *t >= c.entered());
                let (at, origin, note) = match peer_fin {
                    Some(t) => (
                        t,
                        Origin::TimewaitEvent,
                        Some("the peer's FIN (its LAST_ACK on this host) reached the orphan's timewait socket".to_string()),
                    ),
                    None => (
                        now,
                        Origin::TimewaitPoll(poll),
                        Some("the peer's FIN reached the orphan's timewait socket".to_string()),
                    ),
                };
                let c = self.conns.get_mut(&id).expect("checked");
                let dwell = at.saturating_sub(c.entered());
                c.path.push((to, at));
                self.pending.push_back(Pending::Transition {
                    conn: id,
                    at,
                    from,
                    to,
                    dwell: Some(dwell),
                    task: None,
                    origin,
                    kernel: None,
                    note,
                });
            }
            TwEvent::Expired(at) => {
                let sub = self.conns[&id].tw.as_ref().and_then(|t| t.substate);
                let what = if sub == Some(State::FinWait2) {
                    "tcp_fin_timeout"
                } else {
                    "TCP_TIMEWAIT_LEN"
                };
                self.end_timewait(
                    id,
                    at,
                    Origin::TimewaitPoll(poll),
                    "timewait_expired",
                    Some(format!("timer ({what}) fired")),
                )
            }
            TwEvent::Vanished(last) => self.end_timewait(
                id,
                now,
                Origin::TimewaitPoll(now.saturating_sub(last)),
                "timewait_killed",
                Some("gone before its timer: a RST it accepted, or SOCK_DESTROY (ss -K)".into()),
            ),
        }
    }

    /// Owners found for inodes [`Tracker::apply_lookups`] asked for (`asked`: the inodes
    /// that scan looked for; the others stay pending).
    pub fn apply_owners(&mut self, asked: &HashSet<u64>, owners: &HashMap<u64, Owner>) {
        self.apply_owners_inner(asked, owners)
    }

    /// Open connections holding these inodes: (inode, local, remote, cookie), for
    /// checking with an exact lookup that a socket whose holder was not found among its
    /// namespace's processes still exists before its holder is sought everywhere.
    pub fn sockets_of(
        &self,
        inodes: &HashSet<u64>,
    ) -> Vec<(u64, SocketAddr, SocketAddr, Option<u64>)> {
        self.conns
            .values()
            .filter(|c| c.ended.is_none() && c.tw.is_none())
            .filter_map(|c| {
                let ino = c.inode.filter(|i| inodes.contains(i))?;
                Some((ino, c.local, c.remote, c.cookie))
            })
            .collect()
    }

    fn apply_owners_inner(&mut self, asked: &HashSet<u64>, owners: &HashMap<u64, Owner>) {
        for c in self.conns.values_mut() {
            if let Some(ino) = c.inode.filter(|i| asked.contains(i)) {
                if !c.owner_tried {
                    c.owner = owners.get(&ino).cloned();
                    c.owner_tried = true;
                }
            }
        }
    }

    fn ready(&self, p: &Pending) -> bool {
        let id = match p {
            Pending::Transition { conn, .. } | Pending::End { conn } => *conn,
            Pending::TimewaitEntry { conn } => {
                let Some(c) = self.conns.get(conn) else {
                    return true;
                };
                if c.tw.as_ref().is_some_and(|t| t.substate.is_none()) {
                    return false;
                }
                *conn
            }
        };
        let Some(c) = self.conns.get(&id) else {
            return true;
        };
        c.looked_up
            && c.member.is_some()
            && (c.owner_tried || c.inode.is_none() || c.member == Some(false))
    }

    /// Reports everything that is resolved, in time order, plus CLOSE_WAIT warnings due
    /// at `now`.
    pub fn drain(&mut self, now: Duration) -> Vec<Report> {
        let mut out = Vec::new();
        while let Some(p) = self.pending.front() {
            if !self.ready(p) {
                break;
            }
            let p = self.pending.pop_front().expect("front exists");
            self.finalize(p, &mut out);
        }
        if let Some(th) = self.opts.close_wait_threshold {
            for c in self.conns.values_mut() {
                if c.state() == State::CloseWait
                    && !c.cw_warned
                    && c.member == Some(true)
                    && c.ended.is_none()
                    && (c.owner_tried || c.inode.is_none())
                {
                    let dwell = now.saturating_sub(c.entered());
                    if dwell >= th
                        && self.opts.filter.tuple_ok(&c.local, &c.remote)
                        && self.opts.filter.owner_ok(&c.owner)
                    {
                        c.cw_warned = true;
                        out.push(Report::Warning(Warning {
                            at: now,
                            conn: c.id,
                            local: c.local,
                            remote: c.remote,
                            dwell,
                            threshold: th,
                            owner: c.owner.clone(),
                        }));
                    }
                }
            }
        }
        out.sort_by_key(|r| r.at());
        // Forget what ended long enough ago not to receive late events.
        if self.pending.is_empty() {
            self.ended_keys.clear();
        }
        out
    }

    fn finalize(&mut self, p: Pending, out: &mut Vec<Report>) {
        match p {
            Pending::Transition {
                conn,
                at,
                from,
                to,
                dwell,
                task,
                origin,
                kernel,
                note,
            } => {
                let Some(c) = self.conns.get(&conn) else {
                    return;
                };
                if c.member != Some(true) {
                    return;
                }
                self.emit_transition(
                    out,
                    TransitionReport {
                        at,
                        conn,
                        local: c.local,
                        remote: c.remote,
                        from,
                        to,
                        kernel,
                        origin,
                        dwell,
                        task,
                        owner: c.owner.clone(),
                        note,
                    },
                );
            }
            Pending::TimewaitEntry { conn } => {
                let Some(c) = self.conns.get_mut(&conn) else {
                    return;
                };
                let Some(tw) = c.tw.clone() else { return };
                let dwell = (!(c.path.len() == 1 && c.first_unobserved))
                    .then(|| tw.since.saturating_sub(c.entered()));
                let sub = tw.substate.unwrap_or(State::Closed);
                let (to, origin, note) = match sub {
                    State::TimeWait => (
                        State::TimeWait,
                        Origin::TimewaitConfirmed,
                        tw.expires_at.map(|e| {
                            format!("timewait socket found, timer {}", crate::report::Human(e.saturating_sub(tw.since)))
                        }),
                    ),
                    State::FinWait2 => (
                        State::FinWait2,
                        Origin::TimewaitConfirmed,
                        Some("orphan handed to a timewait socket (substate FIN_WAIT_2), waiting for the peer's FIN".to_string()),
                    ),
                    _ => (
                        State::Closed,
                        Origin::TimewaitNotFound,
                        Some("no timewait socket found: tw bucket overflow (TCPTimeWaitOverflow), or it was gone before the lookup".to_string()),
                    ),
                };
                let member = c.member == Some(true);
                if to == State::Closed {
                    c.tw = None;
                    c.path.push((State::Closed, tw.since));
                    c.ended = Some((tw.since, "closed".into(), None));
                    let key = c.key();
                    self.live.remove(&key);
                    self.ended_keys.insert(key, conn);
                    self.summary.timewait_not_found += u64::from(member);
                } else {
                    self.summary.timewait_confirmed += u64::from(member);
                    if to != tw.from {
                        c.path.push((to, tw.since));
                    }
                }
                if member {
                    let c = &self.conns[&conn];
                    let r = TransitionReport {
                        at: tw.since,
                        conn,
                        local: c.local,
                        remote: c.remote,
                        from: tw.from,
                        to,
                        kernel: (to != State::Closed).then_some((tw.from, State::Closed)),
                        origin,
                        dwell,
                        task: Some(tw.task),
                        owner: c.owner.clone(),
                        note,
                    };
                    self.emit_transition(out, r);
                }
                if to == State::Closed {
                    self.finalize(Pending::End { conn }, out);
                }
            }
            Pending::End { conn } => {
                let Some(c) = self.conns.remove(&conn) else {
                    return;
                };
                if c.member != Some(true) {
                    if c.member == Some(false) {
                        self.summary.unattributed += 1;
                    }
                    return;
                }
                let l = self.lifeline(&c, None);
                self.recent.push_back(c);
                if self.recent.len() > RECENT {
                    self.recent.pop_front();
                }
                self.emit_lifeline(out, l);
            }
        }
    }

    fn emit_transition(&mut self, out: &mut Vec<Report>, r: TransitionReport) {
        let f = &self.opts.filter;
        let state_ok =
            f.states.is_empty() || f.states.contains(&r.from) || f.states.contains(&r.to);
        if !(f.tuple_ok(&r.local, &r.remote) && f.owner_ok(&r.owner) && state_ok) {
            return;
        }
        *self.summary.transitions.entry((r.from, r.to)).or_default() += 1;
        out.push(Report::Transition(r));
    }

    fn emit_lifeline(&mut self, out: &mut Vec<Report>, l: Lifeline) {
        let f = &self.opts.filter;
        let state_ok = f.states.is_empty() || l.states.iter().any(|d| f.states.contains(&d.state));
        if !(f.tuple_ok(&l.local, &l.remote) && f.owner_ok(&l.owner) && state_ok) {
            return;
        }
        if !l.still_open {
            self.summary.ended += 1;
            for d in &l.states {
                if d.at_least {
                    continue;
                }
                self.summary.dwell.entry(d.state).or_default().push(d.dwell);
                if d.state == State::CloseWait {
                    let who = l
                        .owner
                        .as_ref()
                        .map(|o| format!("{}[{}]", o.process, o.pid))
                        .unwrap_or_else(|| "unknown".into());
                    self.summary
                        .close_wait_by_process
                        .entry(who)
                        .or_default()
                        .push(d.dwell);
                }
            }
            if l.end.starts_with("rst_") {
                let key = match &l.end_detail {
                    Some(r) => format!("{} {r}", l.end),
                    None => l.end.clone(),
                };
                *self.summary.rst_endings.entry(key).or_default() += 1;
            }
        }
        out.push(Report::Lifeline(Box::new(l)));
    }

    fn lifeline(&self, c: &Conn, still_open_at: Option<Duration>) -> Lifeline {
        let mut states = Vec::new();
        let (end_at, end, detail) = match (&c.ended, still_open_at) {
            (Some(e), _) => e.clone(),
            (None, Some(t)) => (t, "still_open".into(), None),
            (None, None) => (c.entered(), "unknown".into(), None),
        };
        // Leading CLOSED (a fresh socket) is not a dwell worth showing.
        let path: Vec<(State, Duration)> = c.path.clone();
        for (i, (s, t)) in path.iter().enumerate() {
            let is_last = i + 1 == path.len();
            if is_last && still_open_at.is_none() {
                break;
            }
            if i == 0 && c.born {
                continue;
            }
            let until = path.get(i + 1).map(|p| p.1).unwrap_or(end_at);
            states.push(Dwell {
                state: *s,
                dwell: until.saturating_sub(*t),
                at_least: (i == 0 && c.first_unobserved) || (is_last && still_open_at.is_some()),
            });
        }
        let partner = self
            .live
            .get(&(c.remote, c.local))
            .and_then(|id| self.conns.get(id))
            .or_else(|| {
                self.recent
                    .iter()
                    .rev()
                    .find(|r| r.key() == (c.remote, c.local))
            });
        Lifeline {
            at: end_at,
            conn: c.id,
            local: c.local,
            remote: c.remote,
            states,
            last: if still_open_at.is_some() {
                c.state()
            } else {
                State::Closed
            },
            still_open: still_open_at.is_some(),
            closed_first: c.closed_first,
            end,
            end_detail: detail,
            owner: c.owner.clone(),
            resolution: c.sampled.then_some(self.sample_resolution).flatten(),
            timeline: timeline(c, partner),
        }
    }

    /// Stops: reports what is still pending and a lifeline for every connection still
    /// open (marked so, with lower-bound dwell for its current state).
    pub fn finish(&mut self, now: Duration) -> Vec<Report> {
        // Whatever could not be resolved is reported as far as it is known.
        for c in self.conns.values_mut() {
            c.looked_up = true;
            c.owner_tried = true;
            if c.member.is_none() {
                c.member = Some(!self.opts.check_membership);
            }
            if let Some(tw) = &mut c.tw {
                tw.substate.get_or_insert(State::Closed);
            }
        }
        let mut out = self.drain(now);
        let mut open: Vec<&Conn> = self
            .conns
            .values()
            .filter(|c| c.member == Some(true) && c.ended.is_none())
            .collect();
        open.sort_by_key(|c| c.id);
        let lifelines: Vec<Lifeline> = open.iter().map(|c| self.lifeline(c, Some(now))).collect();
        for mut l in lifelines {
            if let Some(c) = self.conns.get(&l.conn) {
                if let Some(tw) = &c.tw {
                    if let Some(e) = tw.expires_at {
                        l.end_detail = Some(format!(
                            "timewait timer fires in {}",
                            crate::report::Human(e.saturating_sub(now))
                        ));
                    }
                }
            }
            self.emit_lifeline(&mut out, l);
        }
        out
    }
}

#[derive(Debug, Clone, Copy)]
enum TwEvent {
    NotFound,
    Substate(State, State),
    Expired(Duration),
    Vanished(Duration),
}

/// When a confirmed timewait socket is asked for next: a poll interval after it was seen,
/// or when its timer is due if that comes first.
fn next_poll(tw: &Tw, now: Duration, poll: Duration) -> Duration {
    let next = now + poll;
    match tw.expires_at {
        Some(e) if e > now && e < next => e,
        _ => next,
    }
}

/// The trigger the transition table gives for a kernel transition, using what the RST
/// tracepoints said; None when the table has no such row (then a note is drawn instead).
fn infer_trigger(from: State, to: State, rst: Option<&Rst>) -> Option<Trigger> {
    let rows: Vec<_> = TRANSITIONS
        .iter()
        .filter(|t| t.from == from && t.to == to && t.applies_to_linux(true))
        .collect();
    if to == State::Closed {
        if let Some(r) = rst {
            let want = if r.sent {
                None
            } else {
                Some(Trigger::Segment(SegmentKind::Rst))
            };
            if let Some(w) = want {
                if rows.iter().any(|t| t.trigger == w) {
                    return Some(w);
                }
            } else if let Some(t) = rows.iter().find(|t| t.sends == "RST") {
                return Some(t.trigger);
            }
        }
    }
    rows.iter()
        .find(|t| t.normal)
        .or_else(|| rows.first())
        .map(|t| t.trigger)
}

fn push_path(tl: &mut Timeline, side: Side, c: &Conn, origin: Duration) {
    for w in c.path.windows(2) {
        let ((from, _), (to, at)) = (w[0], w[1]);
        let at = at.saturating_sub(origin);
        let rst = if to == State::Closed {
            c.rst.as_ref()
        } else {
            None
        };
        match infer_trigger(from, to, rst) {
            Some(trigger) => tl.push(at, side, StepKind::Transition { from, to, trigger }),
            None => tl.push(at, side, StepKind::Note(format!("kernel: {from} → {to}"))),
        }
    }
}

/// A connection's Timeline; both ends when the peer is on this host too.
fn timeline(c: &Conn, partner: Option<&Conn>) -> Timeline {
    let name = |x: &Conn| match &x.owner {
        Some(o) => format!(
            "{} ({}[{}])",
            tcpstate_host::Addr(&x.local),
            o.process,
            o.pid
        ),
        None => tcpstate_host::Addr(&x.local).to_string(),
    };
    let title = format!(
        "{} → {} (observed; triggers from the transition table)",
        tcpstate_host::Addr(&c.local),
        tcpstate_host::Addr(&c.remote)
    );
    let start = |x: &Conn| x.path.first().map(|p| p.1).unwrap_or_default();
    let origin = partner.map_or(start(c), |p| start(c).min(start(p)));
    let mut tl = Timeline::new(
        title,
        name(c),
        partner.map_or_else(|| tcpstate_host::Addr(&c.remote).to_string(), name),
    );
    push_path(&mut tl, Side::A, c, origin);
    if let Some(p) = partner {
        push_path(&mut tl, Side::B, p, origin);
    }
    tl.steps.sort_by_key(|s| s.at);
    tl
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{EventKind, Task, TraceEvent};
    use tcpstate_host::{Timer, TimerKind};

    fn task(interrupt: bool) -> Task {
        Task {
            comm: "t".into(),
            pid: 1,
            interrupt,
        }
    }

    fn ev(ms: u64, local: &str, remote: &str, old: State, new: State) -> TraceEvent {
        TraceEvent {
            ts: Duration::from_millis(ms),
            cpu: 0,
            task: task(false),
            kind: EventKind::SetState {
                local: local.parse().unwrap(),
                remote: remote.parse().unwrap(),
                old,
                new,
            },
        }
    }

    fn sock(state: State, kind: SockKind, local: &str, remote: &str, cookie: u64) -> Socket {
        Socket {
            state,
            kind,
            local: local.parse().unwrap(),
            peer: remote.parse().unwrap(),
            recv_q: 0,
            send_q: 0,
            uid: 0,
            inode: if kind == SockKind::Full {
                1000 + cookie
            } else {
                0
            },
            cookie: Some(cookie),
            timer: (kind == SockKind::TimeWaitMini).then_some(Timer {
                kind: TimerKind::TimeWait,
                expires: Duration::from_secs(60),
                retransmits: 0,
            }),
            tcp_info: None,
            mem: None,
            netns: 0,
            owner: None,
        }
    }

    fn opts() -> TrackerOptions {
        TrackerOptions {
            owners: false,
            ..TrackerOptions::default()
        }
    }

    /// Answers the tracker's lookups from `socks` as the kernel would: the socket with
    /// the asked 4-tuple, and the asked cookie when one is given.
    fn answer(t: &mut Tracker, now: Duration, socks: &[Socket]) -> Vec<Lookup> {
        let asked = t.lookups(now);
        let found: Vec<Option<Socket>> = asked
            .iter()
            .map(|l| {
                socks
                    .iter()
                    .find(|s| {
                        s.local == l.local
                            && s.peer == l.remote
                            && l.cookie.is_none_or(|k| s.cookie == Some(k))
                    })
                    .cloned()
            })
            .collect();
        t.apply_lookups(now, &asked, &found);
        asked
    }

    fn round(t: &mut Tracker, now_ms: u64, socks: &[Socket]) -> Vec<Report> {
        let now = Duration::from_millis(now_ms);
        answer(t, now, socks);
        t.drain(now)
    }

    const C: &str = "127.0.0.1:40000";
    const S: &str = "127.0.0.1:5000";

    fn transitions(r: &[Report]) -> Vec<(State, State)> {
        r.iter()
            .filter_map(|r| match r {
                Report::Transition(t) => Some((t.from, t.to)),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn client_close_is_reported_in_time_wait_then_expires() {
        let mut t = Tracker::new(opts());
        t.feed(&ev(0, "127.0.0.1:0", S, State::Closed, State::SynSent));
        t.feed(&ev(1, C, S, State::SynSent, State::Established));
        let r = round(
            &mut t,
            2,
            &[sock(State::Established, SockKind::Full, C, S, 7)],
        );
        assert_eq!(
            transitions(&r),
            vec![
                (State::Closed, State::SynSent),
                (State::SynSent, State::Established)
            ]
        );
        // The connect's CLOSE → SYN_SENT had port 0; it is reported with the real port.
        match &r[0] {
            Report::Transition(t) => assert_eq!(t.local, C.parse().unwrap()),
            _ => panic!(),
        }
        t.feed(&ev(2000, C, S, State::Established, State::FinWait1));
        t.feed(&ev(2001, C, S, State::FinWait1, State::FinWait2));
        t.feed(&ev(2002, C, S, State::FinWait2, State::Closed));
        t.feed(&TraceEvent {
            ts: Duration::from_millis(2002),
            cpu: 0,
            task: task(true),
            kind: EventKind::Destroy {
                local: C.parse().unwrap(),
                remote: S.parse().unwrap(),
                cookie: 7,
            },
        });
        // The tw socket inherited cookie 7, known from the lookup that placed the
        // socket: it is asked for by tuple and cookie, so a minisocket of the same tuple
        // with another cookie (listed first here) does not answer.
        let tw = sock(State::TimeWait, SockKind::TimeWaitMini, C, S, 7);
        let decoy = sock(State::TimeWait, SockKind::TimeWaitMini, C, S, 8);
        let asked = t.lookups(Duration::from_millis(2100));
        assert_eq!(asked.len(), 1);
        assert_eq!((asked[0].cookie, asked[0].timewait), (Some(7), true));
        let r = round(&mut t, 2100, &[decoy, tw.clone()]);
        assert_eq!(
            transitions(&r),
            vec![
                (State::Established, State::FinWait1),
                (State::FinWait1, State::FinWait2),
                (State::FinWait2, State::TimeWait)
            ]
        );
        match r.last().unwrap() {
            Report::Transition(tr) => {
                assert_eq!(tr.kernel, Some((State::FinWait2, State::Closed)));
                assert_eq!(tr.origin, Origin::TimewaitConfirmed);
            }
            _ => panic!(),
        }
        // Still there a second later, then gone after its timer.
        let mut later = tw.clone();
        later.timer.as_mut().unwrap().expires = Duration::from_millis(58_900);
        assert!(round(&mut t, 3200, &[later]).is_empty());
        let r = round(&mut t, 62_200, &[]);
        assert_eq!(transitions(&r), vec![(State::TimeWait, State::Closed)]);
        let Report::Lifeline(l) = r.last().unwrap() else {
            panic!()
        };
        let seq: Vec<State> = l.states.iter().map(|d| d.state).collect();
        assert_eq!(
            seq,
            vec![
                State::SynSent,
                State::Established,
                State::FinWait1,
                State::FinWait2,
                State::TimeWait
            ]
        );
        let tw_dwell = l.states.last().unwrap().dwell;
        // Timer seen at 2100 ms with 60 s left: ends at 62.1 s, i.e. 60.098 s in TIME_WAIT.
        assert_eq!(tw_dwell, Duration::from_millis(60_098));
        assert_eq!(l.closed_first, Some(Closer::Local));
        assert_eq!(l.end, "timewait_expired");
        assert_eq!(t.summary().timewait_confirmed, 1);
    }

    #[test]
    fn rst_close_does_not_become_time_wait() {
        let mut t = Tracker::new(opts());
        t.feed(&ev(0, S, C, State::Listen, State::SynReceived));
        t.feed(&ev(0, S, C, State::SynReceived, State::Established));
        round(
            &mut t,
            1,
            &[sock(State::Established, SockKind::Full, S, C, 1)],
        );
        t.feed(&TraceEvent {
            ts: Duration::from_millis(5),
            cpu: 0,
            task: task(false),
            kind: EventKind::SendReset {
                local: S.parse().unwrap(),
                remote: C.parse().unwrap(),
                state: Some(State::Established),
                reason: "TCP_ABORT_ON_CLOSE".into(),
            },
        });
        t.feed(&ev(5, S, C, State::Established, State::Closed));
        let r = round(&mut t, 10, &[]);
        let Report::Lifeline(l) = r.last().unwrap() else {
            panic!("{r:?}")
        };
        assert_eq!(l.end, "rst_sent");
        assert_eq!(l.end_detail.as_deref(), Some("TCP_ABORT_ON_CLOSE"));
        assert_eq!(t.summary().rst_endings["rst_sent TCP_ABORT_ON_CLOSE"], 1);
        // Loopback end gone before the lookup, with no peer found: not attributable.
        let mut t2 = Tracker::new(opts());
        t2.feed(&ev(0, S, C, State::Established, State::Closed));
        assert!(round(&mut t2, 10, &[]).is_empty());
        assert_eq!(t2.summary().unattributed, 1);
    }

    #[test]
    fn orphan_fin_wait_2_substate_then_time_wait_via_peer_fin() {
        let mut t = Tracker::new(opts());
        t.feed(&ev(0, C, S, State::Established, State::FinWait1));
        t.feed(&ev(0, S, C, State::Established, State::CloseWait));
        t.feed(&ev(1, C, S, State::FinWait1, State::FinWait2));
        t.feed(&ev(1, C, S, State::FinWait2, State::Closed));
        let mut fw2 = sock(State::FinWait2, SockKind::TimeWaitMini, C, S, 9);
        let cw = sock(State::CloseWait, SockKind::Full, S, C, 10);
        let r = round(&mut t, 50, &[fw2.clone(), cw.clone()]);
        assert!(transitions(&r).contains(&(State::FinWait2, State::FinWait2)));
        t.feed(&ev(3000, S, C, State::CloseWait, State::LastAck));
        t.feed(&ev(3000, S, C, State::LastAck, State::Closed));
        fw2.state = State::TimeWait;
        let r = round(&mut t, 3500, &[fw2.clone()]);
        let tr: Vec<_> = r
            .iter()
            .filter_map(|r| match r {
                Report::Transition(t) if t.to == State::TimeWait => Some(t.clone()),
                _ => None,
            })
            .collect();
        assert_eq!(tr.len(), 1);
        assert_eq!(
            tr[0].at,
            Duration::from_millis(3000),
            "peer's FIN time used"
        );
        assert_eq!(tr[0].dwell, Some(Duration::from_millis(2999)));
        // Its timer: killed early (vanished 10 s later, long before 60 s).
        let r = round(&mut t, 13_600, &[]);
        let Report::Lifeline(l) = r.last().unwrap() else {
            panic!()
        };
        assert_eq!(l.end, "timewait_killed");
        assert_eq!(l.closed_first, Some(Closer::Local));
    }

    #[test]
    fn reuse_of_the_tuple_ends_time_wait_exactly() {
        let mut t = Tracker::new(opts());
        t.feed(&ev(0, C, S, State::Established, State::FinWait1));
        t.feed(&ev(1, C, S, State::FinWait1, State::FinWait2));
        t.feed(&ev(2, C, S, State::FinWait2, State::Closed));
        let tw = sock(State::TimeWait, SockKind::TimeWaitMini, C, S, 3);
        round(&mut t, 10, &[tw]);
        t.feed(&ev(1500, "127.0.0.1:0", S, State::Closed, State::SynSent));
        t.feed(&ev(1501, C, S, State::SynSent, State::Established));
        let r = round(
            &mut t,
            1600,
            &[sock(State::Established, SockKind::Full, C, S, 4)],
        );
        let ends: Vec<_> = r
            .iter()
            .filter_map(|r| match r {
                Report::Lifeline(l) => Some(l.clone()),
                _ => None,
            })
            .collect();
        assert_eq!(ends.len(), 1);
        assert_eq!(ends[0].end, "timewait_reused");
        // Replaced when inet_hash_connect() gave the new socket the port: between its
        // CLOSE → SYN_SENT (port 0) and its next event, which carries the port.
        assert_eq!(
            ends[0].states.last().unwrap().dwell,
            Duration::from_millis(1499)
        );
        assert!(transitions(&r).contains(&(State::SynSent, State::Established)));
    }

    #[test]
    fn close_wait_warning_once_and_filters() {
        let mut o = opts();
        o.close_wait_threshold = Some(Duration::from_secs(1));
        o.filter.ports = vec![5000];
        let mut t = Tracker::new(o);
        t.feed(&ev(0, S, C, State::Established, State::CloseWait));
        t.feed(&ev(
            0,
            "127.0.0.1:6000",
            C,
            State::Established,
            State::CloseWait,
        ));
        let socks = [
            sock(State::CloseWait, SockKind::Full, S, C, 1),
            sock(State::CloseWait, SockKind::Full, "127.0.0.1:6000", C, 2),
        ];
        let r = round(&mut t, 10, &socks);
        assert_eq!(transitions(&r).len(), 1, "port filter");
        let r = round(&mut t, 1500, &socks);
        assert_eq!(
            r.iter().filter(|r| matches!(r, Report::Warning(_))).count(),
            1
        );
        assert!(round(&mut t, 2500, &socks).is_empty(), "warned once");
        let fin = t.finish(Duration::from_secs(3));
        let Report::Lifeline(l) = &fin[0] else {
            panic!()
        };
        assert!(l.still_open);
        assert_eq!(l.states[1].state, State::CloseWait);
        assert!(l.states[1].at_least, "still open: a lower bound");
        assert!(l.states[0].at_least, "ESTABLISHED began before the watch");
    }

    #[test]
    fn sampled_mode_tracks_cookies() {
        let mut t = Tracker::new(opts());
        let res = Duration::from_millis(100);
        t.feed_sample(
            Duration::ZERO,
            &[sock(State::Established, SockKind::Full, C, S, 5)],
            res,
        );
        t.feed_sample(
            Duration::from_millis(100),
            &[sock(State::TimeWait, SockKind::TimeWaitMini, C, S, 5)],
            res,
        );
        t.feed_sample(Duration::from_millis(200), &[], res);
        let r = t.drain(Duration::from_millis(200));
        assert_eq!(
            transitions(&r),
            vec![
                (State::Established, State::TimeWait),
                (State::TimeWait, State::Closed)
            ]
        );
        let Report::Lifeline(l) = r.last().unwrap() else {
            panic!()
        };
        assert_eq!(l.resolution, Some(res));
        assert!(l.states[0].at_least);
    }

    #[test]
    fn percentiles_nearest_rank() {
        let v: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        assert_eq!(percentile(&v, 50.0), Duration::from_millis(50));
        assert_eq!(percentile(&v, 99.0), Duration::from_millis(99));
        assert_eq!(percentile(&v, 100.0), Duration::from_millis(100));
        assert_eq!(percentile(&[], 50.0), Duration::ZERO);
    }

    #[test]
    fn trigger_inference_uses_rst_direction() {
        let rcv = Rst {
            sent: false,
            reason: None,
        };
        assert_eq!(
            infer_trigger(State::Established, State::Closed, Some(&rcv)),
            Some(Trigger::Segment(SegmentKind::Rst))
        );
        assert_eq!(
            infer_trigger(State::FinWait2, State::TimeWait, None),
            Some(Trigger::Segment(SegmentKind::Fin))
        );
        assert_eq!(infer_trigger(State::TimeWait, State::Listen, None), None);
    }
}
