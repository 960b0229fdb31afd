//! What the watcher reports: a transition, a connection's lifeline at its end, a live
//! CLOSE_WAIT warning. Text (`Display`) and JSON (`to_json`) renderings live here so that
//! every front end prints the same thing.

use crate::event::Task;
use serde_json::{json, Map, Value};
use std::fmt;
use std::net::SocketAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tcpstate_fsm::{State, Timeline};
use tcpstate_host::{Addr, Owner};

/// Version of the JSON objects (`"version"` in every line).
pub const JSON_VERSION: u32 = 1;

/// Maps the trace clock (CLOCK_BOOTTIME) to wall time, from one pair of readings taken
/// together.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClockMap {
    /// CLOCK_BOOTTIME at the reference moment.
    pub boot: Duration,
    /// Wall time at the same moment.
    pub wall: SystemTime,
}

impl ClockMap {
    /// Wall time of a trace-clock instant.
    pub fn wall(&self, at: Duration) -> SystemTime {
        if at >= self.boot {
            self.wall + (at - self.boot)
        } else {
            self.wall - (self.boot - at)
        }
    }

    /// `HH:MM:SS.micros` (UTC) of a trace-clock instant.
    pub fn time_of_day(&self, at: Duration) -> String {
        let d = self.wall(at).duration_since(UNIX_EPOCH).unwrap_or_default();
        let s = d.as_secs() % 86_400;
        format!(
            "{:02}:{:02}:{:02}.{:06}",
            s / 3600,
            s / 60 % 60,
            s % 60,
            d.subsec_micros()
        )
    }

    /// RFC 3339 UTC timestamp with microseconds.
    pub fn rfc3339(&self, at: Duration) -> String {
        let d = self.wall(at).duration_since(UNIX_EPOCH).unwrap_or_default();
        let days = (d.as_secs() / 86_400) as i64;
        let (y, m, day) = civil_from_days(days);
        format!("{y:04}-{m:02}-{day:02}T{}Z", self.time_of_day(at))
    }
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian (H. Hinnant's
/// `civil_from_days`).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// Where a reported state change comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// The `sock:inet_sock_set_state` tracepoint, as the kernel said it.
    Tracepoint,
    /// The tracepoint said `X → CLOSE`; a timewait socket with the same cookie (or
    /// 4-tuple) was found in sock_diag, so the connection lives on in TIME_WAIT (or in the
    /// FIN_WAIT_2 substate of an orphan).
    TimewaitConfirmed,
    /// The tracepoint said `X → CLOSE` without a RST, but no timewait socket was found by
    /// the lookup that followed (tw bucket overflow, or it was already gone).
    TimewaitNotFound,
    /// A timewait socket's change seen by polling sock_diag (substate change, expiry,
    /// disappearance): exact to the poll interval.
    TimewaitPoll(Duration),
    /// A timewait socket ended at an event the tracepoints show (a new connection on the
    /// same 4-tuple, or a RST the timewait socket sent).
    TimewaitEvent,
    /// Sampled mode: two sock_diag dumps this far apart differed.
    Sampled(Duration),
}

impl Origin {
    /// snake_case name for JSON.
    pub fn name(self) -> &'static str {
        match self {
            Origin::Tracepoint => "tracepoint",
            Origin::TimewaitConfirmed => "timewait_confirmed",
            Origin::TimewaitNotFound => "timewait_not_found",
            Origin::TimewaitPoll(_) => "timewait_poll",
            Origin::TimewaitEvent => "timewait_event",
            Origin::Sampled(_) => "sampled",
        }
    }

    /// The time resolution of this origin, when it is not exact.
    pub fn resolution(self) -> Option<Duration> {
        match self {
            Origin::TimewaitPoll(d) | Origin::Sampled(d) => Some(d),
            _ => None,
        }
    }
}

/// Who closed first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Closer {
    /// This socket sent the first FIN (ESTABLISHED → FIN_WAIT_1): the active closer.
    Local,
    /// The peer's FIN came first (ESTABLISHED → CLOSE_WAIT).
    Peer,
    /// Both FINs crossed (FIN_WAIT_1 → CLOSING).
    Simultaneous,
}

impl Closer {
    /// Name for text and JSON.
    pub fn name(self) -> &'static str {
        match self {
            Closer::Local => "local",
            Closer::Peer => "peer",
            Closer::Simultaneous => "simultaneous",
        }
    }
}

/// One logical state change of one connection.
#[derive(Debug, Clone, PartialEq)]
pub struct TransitionReport {
    /// When (trace clock).
    pub at: Duration,
    /// Connection number (this run).
    pub conn: u64,
    /// Local address.
    pub local: SocketAddr,
    /// Remote address.
    pub remote: SocketAddr,
    /// State before.
    pub from: State,
    /// State after.
    pub to: State,
    /// What the tracepoint itself said, when it differs (`FIN_WAIT_2 → CLOSE` for a
    /// socket that went on as a timewait socket).
    pub kernel: Option<(State, State)>,
    /// How it was observed.
    pub origin: Origin,
    /// Time spent in `from` (None when `from` began before the watch or is unknown).
    pub dwell: Option<Duration>,
    /// The task on the CPU when the tracepoint fired (None for polled changes).
    pub task: Option<Task>,
    /// The socket's owner, from a socket lookup (not the task above).
    pub owner: Option<Owner>,
    /// Anything worth saying.
    pub note: Option<String>,
}

/// One state of a lifeline.
#[derive(Debug, Clone, PartialEq)]
pub struct Dwell {
    /// The state.
    pub state: State,
    /// Time in it.
    pub dwell: Duration,
    /// Entered before the watch began or while unobserved: the dwell is a lower bound.
    pub at_least: bool,
}

/// A connection's whole observed life, reported when it ends (or when the watch stops).
#[derive(Debug, Clone, PartialEq)]
pub struct Lifeline {
    /// When it ended (or the watch stopped).
    pub at: Duration,
    /// Connection number.
    pub conn: u64,
    /// Local address.
    pub local: SocketAddr,
    /// Remote address.
    pub remote: SocketAddr,
    /// States in order with their dwell.
    pub states: Vec<Dwell>,
    /// Final state: CLOSED, or the state it was still in when the watch stopped.
    pub last: State,
    /// Still open when the watch stopped.
    pub still_open: bool,
    /// Who closed first.
    pub closed_first: Option<Closer>,
    /// How it ended (`fin`, `rst_sent`, `rst_received`, `timewait_expired`, ...).
    pub end: String,
    /// Detail (RST reason, ...).
    pub end_detail: Option<String>,
    /// Owner, when found.
    pub owner: Option<Owner>,
    /// Time resolution when durations are sampled.
    pub resolution: Option<Duration>,
    /// The life as a Timeline (both endpoints when both are on this host).
    pub timeline: Timeline,
}

/// A socket over `--close-wait-threshold` in CLOSE_WAIT (reported once per socket).
#[derive(Debug, Clone, PartialEq)]
pub struct Warning {
    /// When.
    pub at: Duration,
    /// Connection number.
    pub conn: u64,
    /// Local address.
    pub local: SocketAddr,
    /// Remote address.
    pub remote: SocketAddr,
    /// Time in CLOSE_WAIT so far.
    pub dwell: Duration,
    /// The threshold.
    pub threshold: Duration,
    /// Owner, when found.
    pub owner: Option<Owner>,
}

/// Anything the watcher reports.
#[derive(Debug, Clone, PartialEq)]
pub enum Report {
    /// A state change.
    Transition(TransitionReport),
    /// A connection's life at its end.
    Lifeline(Box<Lifeline>),
    /// A CLOSE_WAIT over the threshold.
    Warning(Warning),
}

impl Report {
    /// When it happened (trace clock).
    pub fn at(&self) -> Duration {
        match self {
            Report::Transition(t) => t.at,
            Report::Lifeline(l) => l.at,
            Report::Warning(w) => w.at,
        }
    }

    /// One JSON object (one line of `--json`).
    pub fn to_json(&self, clock: &ClockMap) -> Value {
        match self {
            Report::Transition(t) => t.to_json(clock),
            Report::Lifeline(l) => l.to_json(clock),
            Report::Warning(w) => w.to_json(clock),
        }
    }
}

/// Durations for people: `62 µs`, `3.1 ms`, `2.1 s`, `1 min 3 s`.
pub struct Human(pub Duration);

impl fmt::Display for Human {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let d = self.0;
        let s = if d < Duration::from_millis(1) {
            format!("{} µs", d.as_micros())
        } else if d < Duration::from_millis(10) {
            format!("{:.1} ms", d.as_secs_f64() * 1e3)
        } else if d < Duration::from_secs(1) {
            format!("{} ms", d.as_millis())
        } else if d < Duration::from_secs(10) {
            format!("{:.2} s", d.as_secs_f64())
        } else if d < Duration::from_secs(120) {
            format!("{:.1} s", d.as_secs_f64())
        } else {
            format!("{} min {} s", d.as_secs() / 60, d.as_secs() % 60)
        };
        f.pad(&s)
    }
}

fn owner_text(o: &Option<Owner>) -> String {
    match o {
        Some(o) => format!("{}[{}] fd {}", o.process, o.pid, o.fd),
        None => "-".into(),
    }
}

fn put_owner(m: &mut Map<String, Value>, o: &Option<Owner>) {
    if let Some(o) = o {
        m.insert("pid".into(), json!(o.pid));
        m.insert("process".into(), json!(o.process));
        m.insert("fd".into(), json!(o.fd));
    }
}

impl TransitionReport {
    /// One line: `time  local → remote  OLD → NEW  (dwell)  owner  [task]`.
    pub fn line(&self, clock: &ClockMap) -> String {
        let mut s = format!(
            "{}  {:<21} → {:<21}  {:>11} → {:<11}",
            clock.time_of_day(self.at),
            Addr(&self.local).to_string(),
            Addr(&self.remote).to_string(),
            self.from.name(),
            self.to.name(),
        );
        match self.dwell {
            Some(d) => s.push_str(&format!(" {:>10}", format!("+{}", Human(d)))),
            None => s.push_str(&format!(" {:>10}", "")),
        }
        s.push_str("  ");
        s.push_str(&owner_text(&self.owner));
        if let Some(t) = &self.task {
            if t.interrupt && t.comm.is_empty() {
                s.push_str(&format!("  [softirq, interrupted pid {}]", t.pid));
            } else if t.interrupt {
                s.push_str(&format!("  [softirq, on CPU: {}]", t.comm));
            } else if self.owner.as_ref().map(|o| o.pid as i32) != Some(t.pid) {
                s.push_str(&format!("  [task {}[{}]]", t.comm, t.pid));
            }
        }
        if let Some((a, b)) = self.kernel {
            s.push_str(&format!("  (kernel: {a} → {b})"));
        }
        if let Some(r) = self.origin.resolution() {
            s.push_str(&format!("  (±{})", Human(r)));
        }
        if let Some(n) = &self.note {
            s.push_str("  ");
            s.push_str(n);
        }
        s
    }

    fn to_json(&self, clock: &ClockMap) -> Value {
        let mut m = Map::new();
        m.insert("version".into(), json!(JSON_VERSION));
        m.insert("type".into(), json!("transition"));
        m.insert("time".into(), json!(clock.rfc3339(self.at)));
        m.insert("conn".into(), json!(self.conn));
        m.insert("local".into(), json!(Addr(&self.local).to_string()));
        m.insert("remote".into(), json!(Addr(&self.remote).to_string()));
        m.insert("from".into(), json!(self.from.name()));
        m.insert("to".into(), json!(self.to.name()));
        m.insert("origin".into(), json!(self.origin.name()));
        if let Some(r) = self.origin.resolution() {
            m.insert("resolution_s".into(), json!(r.as_secs_f64()));
        }
        if let Some((a, b)) = self.kernel {
            m.insert("kernel_from".into(), json!(a.name()));
            m.insert("kernel_to".into(), json!(b.name()));
        }
        if let Some(d) = self.dwell {
            m.insert("dwell_s".into(), json!(d.as_secs_f64()));
        }
        put_owner(&mut m, &self.owner);
        if let Some(t) = &self.task {
            // Binary records carry no name for interrupted tasks: absent, not empty.
            if !t.comm.is_empty() {
                m.insert("task".into(), json!(t.comm));
            }
            m.insert("task_pid".into(), json!(t.pid));
            m.insert("task_in_interrupt".into(), json!(t.interrupt));
        }
        if let Some(n) = &self.note {
            m.insert("note".into(), json!(n));
        }
        Value::Object(m)
    }
}

impl Lifeline {
    /// `local → remote  ESTABLISHED 2.1 s → FIN_WAIT_1 0.2 ms → ... → CLOSED  (closed first: local)`.
    pub fn line(&self) -> String {
        let mut s = format!("{} → {}  ", Addr(&self.local), Addr(&self.remote));
        let pm = self
            .resolution
            .map(|r| format!(" ±{}", Human(r)))
            .unwrap_or_default();
        for d in &self.states {
            let ge = if d.at_least { "≥" } else { "" };
            s.push_str(&format!("{} {ge}{}{pm} → ", d.state.name(), Human(d.dwell)));
        }
        if self.still_open {
            s.push_str(&format!("(still {} at exit)", self.last.name()));
        } else {
            s.push_str(self.last.name());
        }
        let mut extra = Vec::new();
        if let Some(c) = self.closed_first {
            extra.push(format!("closed first: {}", c.name()));
        }
        if !self.still_open {
            match &self.end_detail {
                Some(d) => extra.push(format!("end: {} {d}", self.end)),
                None => extra.push(format!("end: {}", self.end)),
            }
        }
        if self.owner.is_some() {
            extra.push(owner_text(&self.owner));
        }
        if !extra.is_empty() {
            s.push_str(&format!("  ({})", extra.join("; ")));
        }
        s
    }

    fn to_json(&self, clock: &ClockMap) -> Value {
        let mut m = Map::new();
        m.insert("version".into(), json!(JSON_VERSION));
        m.insert("type".into(), json!("lifeline"));
        m.insert("time".into(), json!(clock.rfc3339(self.at)));
        m.insert("conn".into(), json!(self.conn));
        m.insert("local".into(), json!(Addr(&self.local).to_string()));
        m.insert("remote".into(), json!(Addr(&self.remote).to_string()));
        let states: Vec<Value> = self
            .states
            .iter()
            .map(|d| {
                json!({
                    "state": d.state.name(),
                    "dwell_s": d.dwell.as_secs_f64(),
                    "at_least": d.at_least,
                })
            })
            .collect();
        m.insert("states".into(), Value::Array(states));
        m.insert("last".into(), json!(self.last.name()));
        m.insert("still_open".into(), json!(self.still_open));
        if let Some(c) = self.closed_first {
            m.insert("closed_first".into(), json!(c.name()));
        }
        m.insert("end".into(), json!(self.end));
        if let Some(d) = &self.end_detail {
            m.insert("end_detail".into(), json!(d));
        }
        if let Some(r) = self.resolution {
            m.insert("resolution_s".into(), json!(r.as_secs_f64()));
        }
        put_owner(&mut m, &self.owner);
        Value::Object(m)
    }
}

impl Warning {
    /// One line.
    pub fn line(&self, clock: &ClockMap) -> String {
        format!(
            "{}  WARNING {} → {} in CLOSE_WAIT for {} (threshold {}): the peer closed and {} has not called close()",
            clock.time_of_day(self.at),
            Addr(&self.local),
            Addr(&self.remote),
            Human(self.dwell),
            Human(self.threshold),
            match &self.owner {
                Some(o) => format!("{}[{}] (fd {})", o.process, o.pid, o.fd),
                None => "its owner (not found)".into(),
            }
        )
    }

    fn to_json(&self, clock: &ClockMap) -> Value {
        let mut m = Map::new();
        m.insert("version".into(), json!(JSON_VERSION));
        m.insert("type".into(), json!("close_wait_warning"));
        m.insert("time".into(), json!(clock.rfc3339(self.at)));
        m.insert("conn".into(), json!(self.conn));
        m.insert("local".into(), json!(Addr(&self.local).to_string()));
        m.insert("remote".into(), json!(Addr(&self.remote).to_string()));
        m.insert("state".into(), json!(State::CloseWait.name()));
        m.insert("dwell_s".into(), json!(self.dwell.as_secs_f64()));
        m.insert("threshold_s".into(), json!(self.threshold.as_secs_f64()));
        put_owner(&mut m, &self.owner);
        Value::Object(m)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wall_clock_conversion_and_dates() {
        let c = ClockMap {
            boot: Duration::from_secs(100),
            wall: UNIX_EPOCH + Duration::from_secs(86_400 * 365 + 3600),
        };
        assert_eq!(
            c.rfc3339(Duration::from_secs(100)),
            "1971-01-01T01:00:00.000000Z"
        );
        assert_eq!(
            c.rfc3339(Duration::from_micros(99_500_000)),
            "1971-01-01T00:59:59.500000Z"
        );
        assert_eq!(civil_from_days(19_723), (2024, 1, 1));
        assert_eq!(civil_from_days(19_782), (2024, 2, 29));
    }

    #[test]
    fn human_durations() {
        assert_eq!(Human(Duration::from_micros(62)).to_string(), "62 µs");
        assert_eq!(Human(Duration::from_micros(3100)).to_string(), "3.1 ms");
        assert_eq!(Human(Duration::from_millis(200)).to_string(), "200 ms");
        assert_eq!(Human(Duration::from_millis(2100)).to_string(), "2.10 s");
        assert_eq!(Human(Duration::from_secs(60)).to_string(), "60.0 s");
        assert_eq!(Human(Duration::from_secs(125)).to_string(), "2 min 5 s");
    }
}
