//! The one runner both backends share: it walks the script's events, resolves the time
//! column, maps sequence numbers relative to each side's ISN, injects `<` segments, matches
//! `>` segments, checks call results and shell lines, and records what each event observed
//! (a [`TraceEntry`]) so two runs can be compared event by event.

use std::fmt;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::path::{Path, PathBuf};
use std::time::Duration;

use tcpstate_fsm::{Flags, SeqNum, State};

use crate::script::{
    format_options, CallSpec, Direction, Event, EventKind, EventTime, Expected, OptionsSpec,
    PacketSpec, Pos, Script, TcpOption, TimeSpec,
};
use crate::wire::WireSegment;

/// The local address, the kernel's side (packetdrill's default local address).
pub const LOCAL_IP: Ipv4Addr = Ipv4Addr::new(192, 168, 0, 1);
/// The remote peer the script plays (packetdrill's default remote address, TEST-NET-1).
pub const REMOTE_IP: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
/// The port `bind(fd, ..., ...)` binds and `connect(fd, ..., ...)` connects to.
pub const SCRIPT_PORT: u16 = 8080;
/// The remote peer's port for connections it opens.
pub const REMOTE_PORT: u16 = 48_123;
/// The remote peer's initial sequence number (scripts write it as 0).
pub const REMOTE_ISN: SeqNum = SeqNum(0x1000_0000);
/// The window of an inbound segment whose line gives none.
pub const DEFAULT_INBOUND_WINDOW: u16 = 65_535;
/// How long a `*` (any time) event may wait.
const ANY_TIME_LIMIT: Duration = Duration::from_secs(10);

/// The remote endpoint of connections the peer opens.
pub fn remote_addr() -> SocketAddrV4 {
    SocketAddrV4::new(REMOTE_IP, REMOTE_PORT)
}

/// The local address `bind(fd, ..., ...)` uses.
pub fn local_addr() -> SocketAddrV4 {
    SocketAddrV4::new(LOCAL_IP, SCRIPT_PORT)
}

/// Which backend ran a script.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BackendKind {
    /// The tcpstate machine with a virtual clock.
    Machine,
    /// The real Linux kernel in a private network namespace.
    Kernel,
}

impl BackendKind {
    /// `machine` or `kernel`.
    pub fn name(self) -> &'static str {
        match self {
            BackendKind::Machine => "machine",
            BackendKind::Kernel => "kernel",
        }
    }
}

/// How closely outbound segments are checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Mode {
    /// Flags, seq, ack, len, window, options and timing within the tolerance.
    Strict,
    /// Flags, seq, ack, len, call results, shell checks and order; not window, options or
    /// timing (beyond waiting up to the event's time plus the tolerance).
    Semantic,
}

impl Mode {
    /// `strict` or `semantic`.
    pub fn name(self) -> &'static str {
        match self {
            Mode::Strict => "strict",
            Mode::Semantic => "semantic",
        }
    }
}

/// Options of one run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunOptions {
    /// Strict or semantic matching.
    pub mode: Mode,
    /// Timing tolerance; `None` takes the script's `--tolerance_usecs` or 50 ms.
    pub tolerance: Option<Duration>,
}

impl Default for RunOptions {
    fn default() -> Self {
        RunOptions {
            mode: Mode::Strict,
            tolerance: None,
        }
    }
}

/// The default timing tolerance: 50 ms, what the shared scripts were verified with on a
/// shared VM (packetdrill's own default, 4 ms, is too tight for delayed-ACK/RTO noise there).
pub const DEFAULT_TOLERANCE: Duration = Duration::from_millis(50);

/// A call's outcome: a value, or an errno name.
pub type CallResult = Result<i64, String>;

/// What a backend must do for the runner. Times are durations since the run started (real
/// for the kernel, virtual for the machine). `Err(String)` from any method fails the script at
/// the current event with that message.
pub trait Backend {
    /// Which backend this is.
    fn kind(&self) -> BackendKind;
    /// The current time.
    fn now(&mut self) -> Duration;
    /// Make "now" time zero. Called once, after the untimed commands at the top of a script
    /// (`` `./defaults.sh` ``), which packetdrill runs before its clock starts.
    fn restart_clock(&mut self);
    /// Let time pass until `t` (outbound segments produced meanwhile are queued).
    fn wait_until(&mut self, t: Duration) -> Result<(), String>;
    /// Deliver a segment from the remote peer.
    fn inject(&mut self, segment: WireSegment) -> Result<(), String>;
    /// The next segment the local side sent, waiting until `deadline` at most (never waits
    /// when `deadline` has passed).
    fn next_outbound(
        &mut self,
        deadline: Duration,
    ) -> Result<Option<(Duration, WireSegment)>, String>;
    /// Make a call that does not block (or must not).
    fn call(&mut self, spec: &CallSpec) -> Result<CallResult, String>;
    /// Start a call that blocks (`start...end`).
    fn start_blocking(&mut self, spec: &CallSpec) -> Result<(), String>;
    /// The result of the blocking call, waiting until `deadline` at most.
    fn finish_blocking(
        &mut self,
        deadline: Duration,
    ) -> Result<Option<(Duration, CallResult)>, String>;
    /// Run a backquoted command from the script's directory: `Ok(Ok(()))` when it succeeded,
    /// `Ok(Err(detail))` when it ran and failed.
    fn shell(&mut self, command: &str, dir: &Path) -> Result<Result<(), String>, String>;
    /// The state of the connection with the remote peer (not a listener), `None` when there is
    /// no such connection.
    fn peer_state(&mut self) -> Result<Option<State>, String>;
}

/// A segment with sequence numbers relative to each side's ISN, as a script writes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelSegment {
    /// Control bits.
    pub flags: Flags,
    /// Relative SEG.SEQ.
    pub seq: u32,
    /// Relative SEG.ACK, when the ACK flag is set.
    pub ack: Option<u32>,
    /// Payload octets.
    pub len: u32,
    /// Window field as on the wire.
    pub window: u16,
    /// Options (SACK blocks relative).
    pub options: Vec<TcpOption>,
}

impl RelSegment {
    /// Flags, seq, ack and len equal (what `--semantic` compares).
    pub fn same_semantics(&self, other: &RelSegment) -> bool {
        self.flags == other.flags
            && self.seq == other.seq
            && self.ack == other.ack
            && self.len == other.len
    }
}

impl fmt::Display for RelSegment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {}:{}({})",
            self.flags.short(),
            self.seq,
            self.seq.wrapping_add(self.len),
            self.len
        )?;
        if let Some(a) = self.ack {
            write!(f, " ack {a}")?;
        }
        write!(f, " win {}", self.window)?;
        if !self.options.is_empty() {
            write!(f, " {}", format_options(&self.options))?;
        }
        Ok(())
    }
}

/// What one event observed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Observed {
    /// A segment was injected.
    Injected(RelSegment),
    /// The local side sent this segment at this time.
    Sent(Duration, RelSegment),
    /// Nothing was sent by the deadline.
    NothingSent,
    /// A call returned.
    Returned(CallResult),
    /// A blocking call was started.
    Started,
    /// A shell command succeeded (`true`) or failed.
    Shell(bool),
    /// The event was not run (a failure of the backend or an unsupported feature).
    NotRun(String),
}

impl Observed {
    /// Whether two observations agree under a mode (times are not compared here).
    pub fn agrees(&self, other: &Observed, mode: Mode) -> bool {
        match (self, other) {
            (Observed::Sent(_, a), Observed::Sent(_, b)) => match mode {
                Mode::Semantic => a.same_semantics(b),
                Mode::Strict => a == b,
            },
            (Observed::Injected(a), Observed::Injected(b)) => a.same_semantics(b),
            (a, b) => a == b,
        }
    }
}

impl fmt::Display for Observed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Observed::Injected(s) => write!(f, "injected {s}"),
            Observed::Sent(at, s) => write!(f, "sent {s} at {:.3}s", at.as_secs_f64()),
            Observed::NothingSent => write!(f, "nothing sent"),
            Observed::Returned(Ok(v)) => write!(f, "returned {v}"),
            Observed::Returned(Err(e)) => write!(f, "returned -1 {e}"),
            Observed::Started => write!(f, "started (blocking)"),
            Observed::Shell(true) => write!(f, "command succeeded"),
            Observed::Shell(false) => write!(f, "command failed"),
            Observed::NotRun(why) => write!(f, "not run: {why}"),
        }
    }
}

/// One event as a backend saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceEntry {
    /// Index of the event in the script.
    pub index: usize,
    /// Where it is written.
    pub pos: Pos,
    /// The event as written (normalised).
    pub event: String,
    /// When it ran (run time).
    pub at: Duration,
    /// What happened.
    pub observed: Observed,
    /// The connection's state with the peer right after the event (`None`: no connection).
    pub state: Option<State>,
}

/// Why a script failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// Index of the failing event (the number of events when the end-of-script check failed).
    pub index: usize,
    /// Where it is written.
    pub pos: Pos,
    /// What went wrong, with expected and actual values.
    pub message: String,
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: {}", self.pos.line, self.message)
    }
}

/// The result of running one script on one backend.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunReport {
    /// The script's file.
    pub path: PathBuf,
    /// Which backend.
    pub backend: BackendKind,
    /// Which mode.
    pub mode: Mode,
    /// The tolerance used.
    pub tolerance: Duration,
    /// `None` when the script passed.
    pub failure: Option<Failure>,
    /// What each event observed, up to and including a failing one.
    pub trace: Vec<TraceEntry>,
    /// Run time at the end.
    pub elapsed: Duration,
}

impl RunReport {
    /// Whether the script passed.
    pub fn passed(&self) -> bool {
        self.failure.is_none()
    }

    /// The states the connection went through, in order, with the time each was first seen
    /// (`None` = no connection).
    pub fn states(&self) -> Vec<(Duration, Option<State>)> {
        let mut out: Vec<(Duration, Option<State>)> = Vec::new();
        for e in &self.trace {
            if out.last().map(|l| l.1) != Some(e.state) {
                out.push((e.at, e.state));
            }
        }
        out
    }
}

/// The first event where two runs of the same script disagree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Divergence {
    /// Index of the event.
    pub index: usize,
    /// Where it is written.
    pub pos: Pos,
    /// The event as written.
    pub event: String,
    /// What the first run observed there (`None`: it had stopped before).
    pub left: Option<TraceEntry>,
    /// What the second run observed there.
    pub right: Option<TraceEntry>,
    /// What differs: `segment`, `state`, `result`, `shell`, `stopped`.
    pub what: &'static str,
}

/// Compares two runs of the same script event by event: observations (under `mode`) and the
/// connection state after each event. `None` when they agree on every event both ran and
/// both passed or failed at the same event.
pub fn compare(left: &RunReport, right: &RunReport, mode: Mode) -> Option<Divergence> {
    let n = left.trace.len().max(right.trace.len());
    for i in 0..n {
        let (l, r) = (left.trace.get(i), right.trace.get(i));
        let what = match (l, r) {
            (Some(l), Some(r)) => {
                if !l.observed.agrees(&r.observed, mode) {
                    match l.observed {
                        Observed::Sent(..) | Observed::NothingSent | Observed::Injected(_) => {
                            "segment"
                        }
                        Observed::Returned(_) | Observed::Started => "result",
                        Observed::Shell(_) => "shell",
                        Observed::NotRun(_) => "stopped",
                    }
                } else if l.state != r.state && l.observed != Observed::Started {
                    // (Right after a blocking call starts, the kernel may not have entered the
                    // syscall yet: the state there is a race, not a difference.)
                    "state"
                } else {
                    continue;
                }
            }
            _ => "stopped",
        };
        let any = l.or(r)?;
        return Some(Divergence {
            index: i,
            pos: any.pos,
            event: any.event.clone(),
            left: l.cloned(),
            right: r.cloned(),
            what,
        });
    }
    if left.passed() != right.passed() {
        let failed = left.failure.as_ref().or(right.failure.as_ref())?;
        return Some(Divergence {
            index: failed.index,
            pos: failed.pos,
            event: failed.message.clone(),
            left: None,
            right: None,
            what: "stopped",
        });
    }
    None
}

/// Formats an event as written (normalised).
pub fn describe_event(event: &Event) -> String {
    match &event.kind {
        EventKind::Packet(p) => p.to_string(),
        EventKind::Call(c) => c.to_string(),
        EventKind::Shell(s) => format!("`{s}`"),
        EventKind::Code(_) => "%{ ... }%".to_string(),
    }
}

/// Runs a script on a backend.
pub struct Runner<'a, B: Backend> {
    script: &'a Script,
    backend: B,
    mode: Mode,
    tolerance: Duration,
    local_isn: Option<SeqNum>,
    trace: Vec<TraceEntry>,
    /// When the previous event actually ran.
    last_action: Duration,
}

struct Pending {
    index: usize,
    pos: Pos,
    event: String,
    spec: CallSpec,
    start: Duration,
    end: Duration,
}

fn resolve(ts: TimeSpec, base: Duration) -> Duration {
    if ts.relative {
        base + ts.offset
    } else {
        ts.offset
    }
}

fn result_matches(expected: &Expected, got: &CallResult) -> bool {
    match (expected, got) {
        (Expected::Value(v), Ok(g)) => v == g,
        (Expected::Errno(e), Err(g)) => crate::errno::canonical(e) == crate::errno::canonical(g),
        _ => false,
    }
}

fn show_result(r: &CallResult) -> String {
    match r {
        Ok(v) => v.to_string(),
        Err(e) => match crate::errno::describe(e) {
            Some(d) => format!("-1 {e} ({d})"),
            None => format!("-1 {e}"),
        },
    }
}

/// The tolerance a run uses: the caller's, else the script's `--tolerance_usecs`, else 50 ms.
pub fn tolerance_for(script: &Script, options: &RunOptions) -> Duration {
    options
        .tolerance
        .or_else(|| {
            script
                .option("tolerance_usecs")
                .and_then(|v| v.parse::<u64>().ok())
                .map(Duration::from_micros)
        })
        .unwrap_or(DEFAULT_TOLERANCE)
}

impl<'a, B: Backend> Runner<'a, B> {
    /// A runner for `script` on `backend`.
    pub fn new(script: &'a Script, backend: B, options: &RunOptions) -> Self {
        Runner {
            script,
            backend,
            mode: options.mode,
            tolerance: tolerance_for(script, options),
            local_isn: None,
            trace: Vec::new(),
            last_action: Duration::ZERO,
        }
    }

    /// The backend (to inspect it after a run).
    pub fn backend(&mut self) -> &mut B {
        &mut self.backend
    }

    /// Runs every event; stops at the first failure.
    pub fn run(&mut self) -> RunReport {
        let failure = self.run_events().err();
        let elapsed = self.backend.now();
        RunReport {
            path: self.script.path.clone(),
            backend: self.backend.kind(),
            mode: self.mode,
            tolerance: self.tolerance,
            failure,
            trace: std::mem::take(&mut self.trace),
            elapsed,
        }
    }

    fn record(&mut self, index: usize, pos: Pos, event: String, at: Duration, observed: Observed) {
        // A backend that cannot tell its state is a failure of its own; record "unknown" as
        // no connection only when it says so, never guess.
        let state = self.backend.peer_state().unwrap_or(None);
        self.last_action = self.backend.now();
        self.trace.push(TraceEntry {
            index,
            pos,
            event,
            at,
            observed,
            state,
        });
    }

    fn fail<T>(&mut self, index: usize, pos: Pos, message: String) -> Result<T, Failure> {
        Err(Failure {
            index,
            pos,
            message,
        })
    }

    fn rel(&mut self, seg: &WireSegment) -> RelSegment {
        if self.local_isn.is_none() && seg.flags.syn() {
            self.local_isn = Some(seg.seq);
        }
        let local = self.local_isn.unwrap_or(seg.seq);
        let options = seg
            .options
            .iter()
            .map(|o| match o {
                TcpOption::Sack(..) => {
                    let mut blocks = [(0, 0); 4];
                    let b = o.sack_blocks();
                    for (k, (l, r)) in b.iter().enumerate() {
                        blocks[k] = (l.wrapping_sub(REMOTE_ISN.0), r.wrapping_sub(REMOTE_ISN.0));
                    }
                    TcpOption::Sack(blocks, b.len() as u8)
                }
                other => *other,
            })
            .collect();
        RelSegment {
            flags: seg.flags,
            seq: seg.seq.0.wrapping_sub(local.0),
            ack: seg
                .flags
                .ack()
                .then(|| seg.ack.0.wrapping_sub(REMOTE_ISN.0)),
            len: seg.len,
            window: seg.window,
            options,
        }
    }

    fn to_wire(&self, spec: &PacketSpec) -> Result<WireSegment, String> {
        let local = self.local_isn;
        let ack = match spec.ack {
            Some(a) => match local {
                Some(isn) => isn + a,
                // Before the local side's SYN was seen its ISN is unknown: only 0 is meaningful.
                None if !spec.flags.ack() => SeqNum(0),
                None => {
                    return Err(format!(
                        "`ack {a}` before the local side sent its SYN: its ISN is not known yet"
                    ))
                }
            },
            None => SeqNum(0),
        };
        let options = match &spec.options {
            OptionsSpec::List(l) => l
                .iter()
                .map(|o| match o {
                    TcpOption::Sack(..) => {
                        let isn = local.unwrap_or(SeqNum(0));
                        let mut blocks = [(0, 0); 4];
                        let b = o.sack_blocks();
                        for (k, (l, r)) in b.iter().enumerate() {
                            blocks[k] = ((isn + *l).0, (isn + *r).0);
                        }
                        TcpOption::Sack(blocks, b.len() as u8)
                    }
                    other => *other,
                })
                .collect(),
            _ => Vec::new(),
        };
        let window = match spec.window {
            Some(w) => u16::try_from(w).map_err(|_| format!("win {w} does not fit in 16 bits"))?,
            None => DEFAULT_INBOUND_WINDOW,
        };
        Ok(WireSegment {
            seq: REMOTE_ISN + spec.seq,
            ack,
            flags: spec.flags,
            len: spec.len,
            window,
            urgent: spec.urgent.unwrap_or(0),
            options,
        })
    }

    /// Differences between an expected `>` line and what was sent, under the mode.
    fn mismatches(&self, spec: &PacketSpec, got: &RelSegment) -> Vec<String> {
        let mut out = Vec::new();
        if spec.flags != got.flags {
            out.push(format!(
                "flags {} != {}",
                got.flags.short(),
                spec.flags.short()
            ));
        }
        if spec.seq != got.seq {
            out.push(format!("seq {} != {}", got.seq, spec.seq));
        }
        if spec.len != got.len {
            out.push(format!("len {} != {}", got.len, spec.len));
        }
        if let Some(a) = spec.ack {
            if got.ack != Some(a) {
                out.push(format!(
                    "ack {} != {a}",
                    got.ack.map_or("none".to_string(), |g| g.to_string())
                ));
            }
        }
        if self.mode == Mode::Strict {
            if let Some(w) = spec.window {
                if u32::from(got.window) != w {
                    out.push(format!("win {} != {w}", got.window));
                }
            }
            let expected: Option<&[TcpOption]> = match &spec.options {
                OptionsSpec::Any => None,
                OptionsSpec::None => Some(&[]),
                OptionsSpec::List(l) => Some(l),
            };
            if let Some(exp) = expected {
                // TS val is the sender's clock: not comparable; everything else is.
                let norm = |o: &TcpOption| match o {
                    TcpOption::Timestamp(_, e) => TcpOption::Timestamp(0, *e),
                    x => *x,
                };
                let a: Vec<TcpOption> = got.options.iter().map(norm).collect();
                let b: Vec<TcpOption> = exp.iter().map(norm).collect();
                if a != b {
                    out.push(format!(
                        "options {} != {}",
                        format_options(&got.options),
                        format_options(exp)
                    ));
                }
            }
        }
        out
    }

    fn run_events(&mut self) -> Result<(), Failure> {
        let script = self.script;
        let dir = script
            .path
            .parent()
            .map(Path::to_path_buf)
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or_else(|| PathBuf::from("."));
        let tol = self.tolerance;
        let mut prev = Duration::ZERO;
        let mut pending: Option<Pending> = None;
        let mut clock_started = false;
        for (index, event) in script.events.iter().enumerate() {
            let pos = event.pos;
            if !clock_started && event.time != EventTime::Untimed {
                self.backend.restart_clock();
                for entry in &mut self.trace {
                    entry.at = Duration::ZERO;
                }
                clock_started = true;
            }
            let text = describe_event(event);
            let (start, end) = match event.time {
                EventTime::Untimed => (prev, prev),
                EventTime::Any => (prev, prev + ANY_TIME_LIMIT),
                EventTime::At(t) => {
                    let t = resolve(t, prev);
                    (t, t)
                }
                EventTime::Range(a, b) => (resolve(a, prev), resolve(b, prev)),
                EventTime::Blocking(a, b) => {
                    let s = resolve(a, prev);
                    (s, resolve(b, s))
                }
            };
            if end < start {
                return self.fail(
                    index,
                    pos,
                    format!("time range ends ({:?}) before it starts ({:?})", end, start),
                );
            }
            match &event.kind {
                EventKind::Code(_) => {
                    self.record(
                        index,
                        pos,
                        text,
                        start,
                        Observed::NotRun("%{ }% code blocks are not supported".into()),
                    );
                    return self.fail(
                        index,
                        pos,
                        "%{ }% (Python) code blocks are not supported by tcpstate conform".into(),
                    );
                }
                EventKind::Shell(cmd) => {
                    self.wait(index, pos, start)?;
                    self.check_quiet(index, pos, &text)?;
                    let at = self.backend.now();
                    match self.backend.shell(cmd, &dir) {
                        Ok(Ok(())) => self.record(index, pos, text, at, Observed::Shell(true)),
                        Ok(Err(detail)) => {
                            self.record(index, pos, text, at, Observed::Shell(false));
                            return self.fail(index, pos, format!("`{cmd}` failed: {detail}"));
                        }
                        Err(e) => {
                            self.record(index, pos, text, at, Observed::NotRun(e.clone()));
                            return self.fail(index, pos, format!("`{cmd}`: {e}"));
                        }
                    }
                    prev = start;
                }
                EventKind::Call(spec) => {
                    if let Some(p) = pending.take() {
                        self.finish(p)?;
                    }
                    self.wait(index, pos, start)?;
                    self.check_quiet(index, pos, &text)?;
                    let at = self.backend.now();
                    if let EventTime::Blocking(..) = event.time {
                        if let Err(e) = self.backend.start_blocking(spec) {
                            self.record(index, pos, text, at, Observed::NotRun(e.clone()));
                            return self.fail(index, pos, e);
                        }
                        self.record(index, pos, text.clone(), at, Observed::Started);
                        pending = Some(Pending {
                            index,
                            pos,
                            event: text,
                            spec: spec.clone(),
                            start,
                            end,
                        });
                        prev = start;
                        continue;
                    }
                    match self.backend.call(spec) {
                        Ok(res) => {
                            let ok = result_matches(&spec.expected, &res);
                            self.record(index, pos, text, at, Observed::Returned(res.clone()));
                            if !ok {
                                return self.fail(
                                    index,
                                    pos,
                                    format!(
                                        "{}: expected {}, got {}",
                                        spec.name,
                                        spec.expected,
                                        show_result(&res)
                                    ),
                                );
                            }
                        }
                        Err(e) => {
                            self.record(index, pos, text, at, Observed::NotRun(e.clone()));
                            return self.fail(index, pos, format!("{}: {e}", spec.name));
                        }
                    }
                    prev = start;
                }
                EventKind::Packet(spec) if spec.direction == Direction::Inbound => {
                    self.wait(index, pos, start)?;
                    self.check_quiet(index, pos, &text)?;
                    let wire = match self.to_wire(spec) {
                        Ok(w) => w,
                        Err(e) => return self.fail(index, pos, e),
                    };
                    let rel = RelSegment {
                        flags: wire.flags,
                        seq: spec.seq,
                        ack: spec.ack,
                        len: spec.len,
                        window: wire.window,
                        options: match &spec.options {
                            OptionsSpec::List(l) => l.clone(),
                            _ => Vec::new(),
                        },
                    };
                    let at = self.backend.now();
                    if let Err(e) = self.backend.inject(wire) {
                        self.record(index, pos, text, at, Observed::NotRun(e.clone()));
                        return self.fail(index, pos, format!("injecting {spec}: {e}"));
                    }
                    self.record(index, pos, text, at, Observed::Injected(rel));
                    prev = start;
                }
                EventKind::Packet(spec) => {
                    let deadline = end.max(self.last_action) + tol;
                    let got = match self.backend.next_outbound(deadline) {
                        Ok(g) => g,
                        Err(e) => return self.fail(index, pos, e),
                    };
                    let Some((at, seg)) = got else {
                        let now = self.backend.now();
                        self.record(index, pos, text, now, Observed::NothingSent);
                        return self.fail(
                            index,
                            pos,
                            format!(
                                "expected {spec} at {}, nothing was sent by {:.3}s",
                                show_window(start, end),
                                deadline.as_secs_f64()
                            ),
                        );
                    };
                    let rel = self.rel(&seg);
                    let mut problems = self.mismatches(spec, &rel);
                    // Late means late relative to what caused it: the kernel cannot answer a
                    // stimulus the runner delivered late (a loaded machine), so the upper bound
                    // is the later of the script time and when the previous event really ran.
                    let latest = end.max(self.last_action) + tol;
                    if self.mode == Mode::Strict && (at + tol < start || at > latest) {
                        problems.push(format!(
                            "sent at {:.3}s, expected at {} (tolerance {} ms)",
                            at.as_secs_f64(),
                            show_window(start, end),
                            tol.as_millis()
                        ));
                    }
                    self.record(index, pos, text, at, Observed::Sent(at, rel.clone()));
                    if !problems.is_empty() {
                        return self.fail(
                            index,
                            pos,
                            format!(
                                "expected {spec}, sent {rel} at {:.3}s: {}",
                                at.as_secs_f64(),
                                problems.join(", ")
                            ),
                        );
                    }
                    prev = match event.time {
                        // A segment matched anywhere in a range or at any time moves the
                        // script's clock to when it was actually sent (as packetdrill does),
                        // so that `+0` after `+.2~+1.2` means "right after it".
                        EventTime::Range(..) | EventTime::Any => at,
                        _ => start,
                    };
                }
            }
        }
        if let Some(p) = pending.take() {
            self.finish(p)?;
        }
        let n = script.events.len();
        let pos = script.events.last().map(|e| e.pos).unwrap_or_default();
        self.check_quiet(n, pos, "end of script")?;
        Ok(())
    }

    fn wait(&mut self, index: usize, pos: Pos, t: Duration) -> Result<(), Failure> {
        match self.backend.wait_until(t) {
            Ok(()) => Ok(()),
            Err(e) => self.fail(index, pos, e),
        }
    }

    /// Before an injected segment, a call, a shell line and at the end: the local side must not
    /// have sent anything the script did not expect.
    fn check_quiet(&mut self, index: usize, pos: Pos, before: &str) -> Result<(), Failure> {
        let now = self.backend.now();
        match self.backend.next_outbound(now) {
            Ok(None) => Ok(()),
            Ok(Some((at, seg))) => {
                let rel = self.rel(&seg);
                self.fail(
                    index,
                    pos,
                    format!(
                        "unexpected outbound segment {rel} at {:.3}s (before {before})",
                        at.as_secs_f64()
                    ),
                )
            }
            Err(e) => self.fail(index, pos, e),
        }
    }

    fn finish(&mut self, p: Pending) -> Result<(), Failure> {
        let tol = self.tolerance;
        let got = match self
            .backend
            .finish_blocking(p.end.max(self.last_action) + tol)
        {
            Ok(g) => g,
            Err(e) => return self.fail(p.index, p.pos, e),
        };
        let Some((at, res)) = got else {
            return self.fail(
                p.index,
                p.pos,
                format!(
                    "{}: still blocked at {:.3}s, expected to return at {:.3}s",
                    p.spec.name,
                    (p.end + tol).as_secs_f64(),
                    p.end.as_secs_f64()
                ),
            );
        };
        let _ = p.start;
        // The blocking call's entry now shows its result, and the state when it returned
        // (when it started, the kernel may not even have entered the syscall).
        let state = self.backend.peer_state().unwrap_or(None);
        if let Some(entry) = self.trace.iter_mut().rev().find(|e| e.index == p.index) {
            entry.observed = Observed::Returned(res.clone());
            entry.state = state;
        }
        if !result_matches(&p.spec.expected, &res) {
            return self.fail(
                p.index,
                p.pos,
                format!(
                    "{} ({}): expected {}, got {}",
                    p.spec.name,
                    p.event,
                    p.spec.expected,
                    show_result(&res)
                ),
            );
        }
        // As for segments: not later than the script's end time or, when the runner itself
        // was late delivering what unblocks the call, than that delivery.
        let latest = p.end.max(self.last_action) + tol;
        if self.mode == Mode::Strict && (at + tol < p.end || at > latest) {
            return self.fail(
                p.index,
                p.pos,
                format!(
                    "{} returned at {:.3}s, expected at {:.3}s (tolerance {} ms)",
                    p.spec.name,
                    at.as_secs_f64(),
                    p.end.as_secs_f64(),
                    tol.as_millis()
                ),
            );
        }
        Ok(())
    }
}

fn show_window(start: Duration, end: Duration) -> String {
    if start == end {
        format!("{:.3}s", start.as_secs_f64())
    } else {
        format!("{:.3}s~{:.3}s", start.as_secs_f64(), end.as_secs_f64())
    }
}
