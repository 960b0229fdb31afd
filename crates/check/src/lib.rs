//! `tcpstate-check`: a model checker for TCP connection close, driving the real machine.
//!
//! What it is for: proving, by exhaustive exploration, why TIME_WAIT exists and what breaks
//! without it. The world is two [`tcpstate_fsm::Connection`]s — a client that connects,
//! sends, closes and may reconnect on the same 4-tuple with its ISN reused (the adversarial
//! worst case), and a persistent listening server that reads, and closes after end of file —
//! joined by a network that loses, duplicates and reorders segments within bounds
//! ([`Bounds`]). Every step calls the same `Connection` code that `simulate`, `capture` and
//! `conform` use: there is no second model of TCP here. Segments carry a hidden incarnation
//! tag that only the properties ([`Property`]) look at. Each property is reported as holding
//! (with the number of states explored) or violated with a *shortest* counterexample, as a
//! [`tcpstate_fsm::Timeline`] that the draw crate can chart.
//!
//! The two ends choose their ISNs differently, as the issue asks. The client reuses its ISS
//! on every reconnection (the adversarial worst case: the new incarnation overlaps the old
//! one in sequence space). The server's listener takes a fresh ISS for every connection it
//! creates, as a real stack's ISN clock gives it (RFC 9293 §3.4.1, RFC 6528): the old ACK
//! of an earlier connection can then neither complete a later handshake nor pass RFC
//! 5961's ACK range test, while a connection made from an old duplicate SYN is still
//! possible and is answered as RFC 793's Figure 10 answers it.
//!
//! Time is abstracted. Every call is made at one constant instant and a timer fires
//! nondeterministically, at any step, by calling `handle_timeout` with its own deadline, so
//! absolute times never distinguish two states. What time still means is kept as guards,
//! relative to MSL:
//! - a timer of at least 2·MSL (TIME_WAIT, Linux's orphaned FIN_WAIT_2) may expire only
//!   once no segment of its incarnation or an earlier one is in flight (they have outlived
//!   MSL) and the peer holds no connection of that incarnation with something still due
//!   (a retransmission, or its application's close). The second clause stands in for the
//!   clock: the peer retransmits within its RTO, far less than MSL, so in real
//!   time its retransmitted FIN arrives before 2·MSL have passed (RFC 9293 §3.6: MSL for
//!   the lost ACK, MSL for the FIN that answers its loss). A connection the peer's
//!   listener made from an old duplicate SYN is created within MSL of TIME_WAIT's start and
//!   gives up after [`Config::give_up_after`] (15 s by default), so it too is gone before
//!   2·MSL: the clause is exact while `give_up_after` ≤ MSL, and the CLI says when it is
//!   not. Without the clause TIME_WAIT could end before the peer's first retransmission,
//!   which is the `--time-wait short` world, not 2·MSL. A peer with nothing due — a server
//!   that never closes, idle in CLOSE_WAIT — does not hold the timer: Linux's orphaned
//!   FIN_WAIT_2 timeout (`tcp_fin_timeout`) exists for exactly that peer;
//! - a shorter one may expire at any step; a zero-length one expires at once;
//! - a retransmission timer fires only once the round trip it covers is over (RTO > RTT):
//!   none of the endpoint's own SYN, data or FIN segments is in flight, nor any segment of
//!   its incarnation coming back to it. Its own bare ACKs do not hold it: a real RTO runs
//!   from the last (re)transmission, so an ACK ping-pong between two desynchronized ends
//!   cannot keep it from expiring. Old duplicates come from the network's duplication
//!   bound, and a give-up then means the peer really stopped answering.
//!
//! The server application reads as soon as there is something to read.
//!
//! Why an explicit-state breadth-first search of our own and not `stateright`: BFS gives
//! the shortest counterexample directly and deterministically; the world needs guards that
//! look at the whole network (the MSL rule) and a liveness check ("from every reachable
//! state a clean end is still reachable") which `stateright`'s `eventually` properties do
//! not provide — its documentation says they only work on acyclic paths — and the
//! counterexample has to become a `Timeline` with the machine's own events, which a
//! replay of the recorded actions gives in a few lines. The whole checker is about 1 500
//! lines with one dependency (`indexmap`, to keep each state once and index it).
//!
//! What it is not: a proof about real TCP stacks. The bounds are small (one data octet,
//! few segments in flight, one loss, one duplicate, three retransmissions per segment), the
//! client's ISN is forced to overlap, and timing is the guards above. Use it as a design oracle and a
//! regression test of the machine, as the variants' expected counterexamples show.
#![deny(missing_docs)]

mod explain;
mod explore;
mod timeline;
mod world;

use std::fmt;
use std::str::FromStr;
use std::time::Duration;
use tcpstate_fsm::{Flavor, Profile, Timeline};

pub use explore::check;

/// The largest receive window (`Bounds::window`) the model accepts: the server's ISN clock
/// moves further than this between two of its connections, so an old ACK always falls
/// outside a later connection's acceptable range.
pub const MAX_WINDOW: u32 = 1000;

/// How long TIME_WAIT lasts, relative to MSL (`--time-wait`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TimeWaitMode {
    /// 2·MSL (RFC 9293 MUST-13), or Linux's fixed 60 s with its MSL of 30 s: long enough.
    TwoMsl,
    /// No TIME_WAIT: the connection is deleted as soon as it would enter TIME_WAIT.
    Zero,
    /// Shorter than 2·MSL: it may expire before old segments have died.
    Short,
}

impl TimeWaitMode {
    /// `2msl`, `0` or `short`.
    pub fn name(self) -> &'static str {
        match self {
            TimeWaitMode::TwoMsl => "2msl",
            TimeWaitMode::Zero => "0",
            TimeWaitMode::Short => "short",
        }
    }
}

impl FromStr for TimeWaitMode {
    type Err = CheckError;
    fn from_str(s: &str) -> Result<Self, CheckError> {
        match s.to_ascii_lowercase().as_str() {
            "2msl" => Ok(TimeWaitMode::TwoMsl),
            "0" | "zero" | "none" => Ok(TimeWaitMode::Zero),
            "short" => Ok(TimeWaitMode::Short),
            _ => Err(CheckError::InvalidConfig(format!(
                "unknown TIME_WAIT length {s:?}: expected 2msl, 0 or short"
            ))),
        }
    }
}

/// Bounds of the explored world.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Bounds {
    /// Segments in flight at once (executions that would exceed it are not explored).
    pub in_flight: usize,
    /// How many times the network may duplicate a segment.
    pub duplicates: u8,
    /// How many segments the network may lose.
    pub losses: u8,
    /// Retransmissions of a SYN, SYN-ACK, data or FIN before the sender gives up.
    pub retries: u32,
    /// How many times the client may reconnect on the same 4-tuple after a clean close.
    pub reconnects: u8,
    /// Octets the client sends in each incarnation.
    pub data: u32,
    /// Receive buffer (the advertised window) of both endpoints, in octets.
    pub window: u32,
}

impl Default for Bounds {
    fn default() -> Bounds {
        Bounds {
            in_flight: 4,
            duplicates: 1,
            losses: 1,
            retries: 3,
            reconnects: 1,
            data: 1,
            window: 2,
        }
    }
}

/// What to check: a profile, a variant of TIME_WAIT, and the bounds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// The machine's profile family (`--profile rfc|linux`).
    pub flavor: Flavor,
    /// TIME_WAIT length relative to MSL.
    pub time_wait: TimeWaitMode,
    /// TIME_WAIT re-ACKs a retransmitted FIN (`--no-reack` turns this off).
    pub reack: bool,
    /// An RST at RCV.NXT ends TIME_WAIT (RFC 9293 text, Linux `tcp_rfc1337=0`); when false,
    /// RFC 1337's fix F1 is on and TIME_WAIT ignores RSTs.
    pub rst_kills_time_wait: bool,
    /// The server's application closes after reading end of file (when false it never
    /// closes, and its connection stays in CLOSE_WAIT).
    pub server_closes: bool,
    /// Bounds of the world.
    pub bounds: Bounds,
    /// Stop after this many states (the result then says the search was incomplete).
    pub max_states: usize,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            flavor: Flavor::Rfc9293,
            time_wait: TimeWaitMode::TwoMsl,
            reack: true,
            rst_kills_time_wait: false,
            server_closes: true,
            bounds: Bounds::default(),
            max_states: 20_000_000,
        }
    }
}

impl Config {
    /// The profile both endpoints run with: the flavor's defaults, then the variant's
    /// TIME_WAIT length, RFC 1337 setting, retry limits and receive buffer.
    pub fn profile(&self) -> Profile {
        let mut p = Profile::for_flavor(self.flavor);
        p.time_wait = match self.time_wait {
            // RFC: 2·MSL. Linux: TCP_TIMEWAIT_LEN (60 s) against its MSL of 30 s.
            TimeWaitMode::TwoMsl => p.time_wait.max(2 * p.msl),
            TimeWaitMode::Zero => Duration::ZERO,
            TimeWaitMode::Short => p.msl,
        };
        p.rfc1337 = !self.rst_kills_time_wait;
        p.syn_retries = self.bounds.retries;
        p.synack_retries = self.bounds.retries;
        p.data_retries = self.bounds.retries;
        p.orphan_retries = self.bounds.retries.max(1);
        p.receive_buffer = self.bounds.window;
        p.time_wait_reacks_fin = self.reack;
        // Every call happens at one abstract instant, so a rate limit in time would mean
        // "one ACK ever" here: the model leaves out-of-window ACKs unthrottled.
        p.oow_ack_rate_limit = None;
        p
    }

    /// How long an endpoint retransmits one segment before it gives up: the timeouts of
    /// the first transmission and of `bounds.retries` retransmissions, the RTO doubling from
    /// the profile's initial value up to its maximum (RFC 6298 §5.5). The guard on 2·MSL
    /// timers is exact while this is at most MSL (see the crate documentation).
    pub fn give_up_after(&self) -> Duration {
        let p = self.profile();
        let mut rto = p.rto_initial;
        let mut total = Duration::ZERO;
        for _ in 0..=self.bounds.retries {
            total += rto.min(p.rto_max);
            rto = rto.saturating_mul(2);
        }
        total
    }

    /// A short name of the variant: `rfc 2msl rfc1337`, `linux 0 rst-kills-tw no-reack`.
    pub fn variant(&self) -> String {
        let mut s = format!("{} time-wait={}", self.flavor.name(), self.time_wait.name());
        if self.rst_kills_time_wait {
            s.push_str(" rst-kills-time-wait");
        }
        if !self.reack {
            s.push_str(" no-reack");
        }
        if !self.server_closes {
            s.push_str(" server-never-closes");
        }
        s
    }

    fn validate(&self) -> Result<(), CheckError> {
        let b = &self.bounds;
        let bad = |what: String| Err(CheckError::InvalidConfig(what));
        if !(1..=12).contains(&b.in_flight) {
            return bad(format!("in-flight bound {} is outside 1..=12", b.in_flight));
        }
        if b.retries > 6 {
            return bad(format!("retries {} is more than 6", b.retries));
        }
        if b.reconnects > 6 {
            return bad(format!("reconnects {} is more than 6", b.reconnects));
        }
        if b.data == 0 || b.data > 1000 {
            return bad(format!("data {} is outside 1..=1000 octets", b.data));
        }
        if b.window == 0 {
            return bad("window 0 would never accept data".into());
        }
        if b.window > MAX_WINDOW {
            return bad(format!(
                "window {} is more than {MAX_WINDOW} octets (the server's ISN clock separates its connections by less)",
                b.window
            ));
        }
        if self.max_states == 0 {
            return bad("max-states 0".into());
        }
        Ok(())
    }
}

/// The properties, named as in the issue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Property {
    /// No segment of an earlier incarnation is accepted (data, FIN, or completing a
    /// handshake) by a later one.
    NoCrossIncarnation,
    /// If no application aborts, closes with unread data or times out, no endpoint is torn
    /// down by an RST, and the passive closer ends on the ACK of its FIN.
    OrderlyClose,
    /// In TIME_WAIT a retransmitted FIN is re-ACKed and the timer restarted; nothing else is
    /// sent; with RFC 1337 on, no RST shortens it.
    TimeWaitDuties,
    /// One endpoint of one connection never goes through both CLOSE_WAIT and TIME_WAIT.
    CloseWaitXorTimeWait,
    /// When both applications close, both endpoints reach CLOSED (the server LISTEN) and
    /// the network drains: from every reachable state such an end is still reachable.
    Termination,
    /// CLOSE_WAIT is left only through the application's own close (or shutdown), an abort,
    /// an RST, or a timeout.
    CloseWaitNeedsClose,
}

impl Property {
    /// Every property, in report order.
    pub const ALL: [Property; 6] = [
        Property::NoCrossIncarnation,
        Property::OrderlyClose,
        Property::TimeWaitDuties,
        Property::CloseWaitXorTimeWait,
        Property::Termination,
        Property::CloseWaitNeedsClose,
    ];

    /// The property's name: `no-cross-incarnation`, `orderly-close`, ...
    pub fn name(self) -> &'static str {
        match self {
            Property::NoCrossIncarnation => "no-cross-incarnation",
            Property::OrderlyClose => "orderly-close",
            Property::TimeWaitDuties => "time-wait-duties",
            Property::CloseWaitXorTimeWait => "close-wait-xor-time-wait",
            Property::Termination => "termination",
            Property::CloseWaitNeedsClose => "close-wait-needs-close",
        }
    }

    /// One line saying what the property asks.
    pub fn summary(self) -> &'static str {
        match self {
            Property::NoCrossIncarnation => {
                "no segment of an earlier incarnation is accepted (data, FIN, handshake) by a later one"
            }
            Property::OrderlyClose => {
                "without aborts, unread data or timeouts, no endpoint is torn down by an RST and the passive closer ends on the ACK of its FIN"
            }
            Property::TimeWaitDuties => {
                "TIME_WAIT re-ACKs a retransmitted FIN and restarts its timer, sends nothing else, and (RFC 1337) ignores RST"
            }
            Property::CloseWaitXorTimeWait => {
                "an endpoint of one connection never goes through both CLOSE_WAIT and TIME_WAIT"
            }
            Property::Termination => {
                "when both applications close, both endpoints reach CLOSED/LISTEN and the network drains"
            }
            Property::CloseWaitNeedsClose => {
                "CLOSE_WAIT is left only through the application's close (or an abort, RST or timeout)"
            }
        }
    }

    /// Whether it is a liveness property (checked on the whole state graph after the
    /// search).
    pub fn is_liveness(self) -> bool {
        self == Property::Termination
    }
}

impl fmt::Display for Property {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.name())
    }
}

impl FromStr for Property {
    type Err = CheckError;
    fn from_str(s: &str) -> Result<Self, CheckError> {
        Property::ALL
            .into_iter()
            .find(|p| p.name() == s)
            .ok_or_else(|| CheckError::InvalidConfig(format!("unknown property {s:?}")))
    }
}

/// A shortest path to a violation, as a timeline of both endpoints.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Counterexample {
    /// What went wrong, in one sentence ("B (incarnation 2) accepted the FIN of
    /// incarnation 1").
    pub finding: String,
    /// A paragraph saying why this matters and what the variant removed.
    pub explanation: String,
    /// Steps (actions of the world: a call, a delivery, a loss, a timer...) in the path.
    pub steps: usize,
    /// For liveness: the step (1-based) from which the run repeats or is stuck.
    pub lasso_from: Option<usize>,
    /// The run, both endpoints, with the machine's own transitions.
    pub timeline: Timeline,
}

/// The verdict on one property.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Holds in every explored state.
    Holds,
    /// Violated: the shortest counterexample.
    Violated(Box<Counterexample>),
    /// Not established: the search stopped at its state limit before finishing.
    Unknown(String),
}

impl Verdict {
    /// `holds`, `violated` or `unknown`.
    pub fn name(&self) -> &'static str {
        match self {
            Verdict::Holds => "holds",
            Verdict::Violated(_) => "violated",
            Verdict::Unknown(_) => "unknown",
        }
    }
}

/// One property's result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PropertyResult {
    /// Which property.
    pub property: Property,
    /// Holds, violated or unknown.
    pub verdict: Verdict,
    /// For a property that holds, an illustrating run where there is one (the CLOSE_WAIT
    /// lasso when the server never closes).
    pub witness: Option<Box<Counterexample>>,
}

/// The result of a run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// What was checked.
    pub config: Config,
    /// Distinct world states explored.
    pub states: usize,
    /// Transitions (state, action, state) explored.
    pub transitions: usize,
    /// Distinct connection (TCB) states seen, over both endpoints.
    pub connection_states: usize,
    /// States from which some execution was cut by the in-flight bound.
    pub bounded_states: usize,
    /// Whether the search finished (false: it stopped at `max_states`).
    pub complete: bool,
    /// Wall time of the search and the analysis.
    pub elapsed: Duration,
    /// One result per property, in [`Property::ALL`] order.
    pub results: Vec<PropertyResult>,
}

impl Report {
    /// The result for one property.
    pub fn result(&self, property: Property) -> &PropertyResult {
        self.results
            .iter()
            .find(|r| r.property == property)
            .expect("every property has a result")
    }

    /// Whether any property is violated.
    pub fn any_violated(&self) -> bool {
        self.results
            .iter()
            .any(|r| matches!(r.verdict, Verdict::Violated(_)))
    }
}

/// Why a check could not run.
#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    /// A flag value or bound makes no sense.
    #[error("invalid verify configuration: {0}")]
    InvalidConfig(String),
}
