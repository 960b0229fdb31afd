//! Totals over a whole capture, for `tcpstate capture --summary`: connections by Zeek
//! `conn_state`, who closes first per server port, how long each side sat in CLOSE_WAIT per
//! server port (percentiles), and how often connections end in a reset.
//!
//! The server port is the responder's port: the port the SYN went to, or, for connections
//! whose handshake was not captured, Zeek's guess from its likely server ports (see
//! [`crate::zeek::ServerPorts`]). Memory: a few counters per server port plus one `u64` per
//! CLOSE_WAIT dwell (percentiles are exact, not estimated from buckets).

use crate::ConnectionReport;
use std::collections::BTreeMap;
use std::time::Duration;
use tcpstate_fsm::{Side, State};

/// CLOSE_WAIT dwells of one side of the connections to one server port.
#[derive(Debug, Clone, Default)]
pub struct Dwells {
    /// Completed dwells (CLOSE_WAIT entered and left within the capture), in nanoseconds.
    done_ns: Vec<u64>,
    /// Dwells still running when the capture ended: their length is a lower bound.
    open_ns: Vec<u64>,
}

/// Percentiles of a set of durations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Percentiles {
    /// How many.
    pub count: usize,
    /// Median (nearest rank).
    pub p50: Duration,
    /// 90th percentile (nearest rank).
    pub p90: Duration,
    /// 99th percentile (nearest rank).
    pub p99: Duration,
    /// Largest.
    pub max: Duration,
}

/// Nearest-rank percentiles of `values` (sorted in place); `None` when empty.
pub fn percentiles(values: &mut [u64]) -> Option<Percentiles> {
    if values.is_empty() {
        return None;
    }
    values.sort_unstable();
    let n = values.len();
    // Nearest rank: the smallest value with at least p% of the values at or below it.
    let rank = |p: usize| values[(n * p).div_ceil(100).clamp(1, n) - 1];
    Some(Percentiles {
        count: n,
        p50: Duration::from_nanos(rank(50)),
        p90: Duration::from_nanos(rank(90)),
        p99: Duration::from_nanos(rank(99)),
        max: Duration::from_nanos(values[n - 1]),
    })
}

impl Dwells {
    /// Percentiles of the completed dwells.
    pub fn completed(&mut self) -> Option<Percentiles> {
        percentiles(&mut self.done_ns)
    }

    /// Percentiles of the dwells still open at the end of the capture (lower bounds).
    pub fn still_open(&mut self) -> Option<Percentiles> {
        percentiles(&mut self.open_ns)
    }

    fn merge(&mut self, other: Dwells) {
        self.done_ns.extend(other.done_ns);
        self.open_ns.extend(other.open_ns);
    }

    /// Whether no dwell was recorded.
    pub fn is_empty(&self) -> bool {
        self.done_ns.is_empty() && self.open_ns.is_empty()
    }
}

/// Counters for the connections to one server port.
#[derive(Debug, Clone, Default)]
pub struct PortSummary {
    /// Connections.
    pub connections: u64,
    /// The originator (client) sent the first FIN.
    pub orig_closed_first: u64,
    /// The responder (server) sent the first FIN.
    pub resp_closed_first: u64,
    /// Both FINs crossed (simultaneous close, CLOSING visited).
    pub simultaneous_close: u64,
    /// Nobody sent a FIN (reset, never established, or still open at the end).
    pub no_fin: u64,
    /// The originator sent the first RST.
    pub reset_by_orig: u64,
    /// The responder sent the first RST.
    pub reset_by_resp: u64,
    /// CLOSE_WAIT dwells of the originator (the server closed first).
    pub orig_close_wait: Dwells,
    /// CLOSE_WAIT dwells of the responder (the client closed first).
    pub resp_close_wait: Dwells,
}

/// Totals over a capture.
#[derive(Debug, Clone, Default)]
pub struct Summary {
    /// Connections.
    pub connections: u64,
    /// Connections by Zeek `conn_state`.
    pub conn_states: BTreeMap<&'static str, u64>,
    /// Connections with a RST, by who sent the first one, and the sender's state then
    /// (`None` when its state was not reconstructed).
    pub resets: BTreeMap<(Side, Option<State>), u64>,
    /// Per server (responder) port.
    pub ports: BTreeMap<u16, PortSummary>,
}

impl Summary {
    /// An empty summary.
    pub fn new() -> Summary {
        Summary::default()
    }

    /// Count one finished connection.
    pub fn add(&mut self, c: &ConnectionReport) {
        self.connections += 1;
        *self.conn_states.entry(c.zeek.conn_state).or_default() += 1;
        let r = &c.rfc;
        let p = self.ports.entry(c.resp.port()).or_default();
        p.connections += 1;
        if r.simultaneous_close {
            p.simultaneous_close += 1;
        } else {
            match r.closed_first {
                Some(Side::A) => p.orig_closed_first += 1,
                Some(Side::B) => p.resp_closed_first += 1,
                None => p.no_fin += 1,
            }
        }
        if let Some((side, state)) = r.reset {
            *self.resets.entry((side, state)).or_default() += 1;
            match side {
                Side::A => p.reset_by_orig += 1,
                Side::B => p.reset_by_resp += 1,
            }
        }
        for (k, dwells) in [&mut p.orig_close_wait, &mut p.resp_close_wait]
            .into_iter()
            .enumerate()
        {
            if let Some(d) = r.close_wait[k] {
                let ns = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
                if r.close_wait_open[k] {
                    dwells.open_ns.push(ns);
                } else {
                    dwells.done_ns.push(ns);
                }
            }
        }
    }

    /// Add another summary's counts (e.g. of other connections of the same capture): the
    /// result is what counting all their connections into one summary gives.
    pub fn merge(&mut self, other: Summary) {
        // Destructured, so that a new field cannot be forgotten here.
        let Summary {
            connections,
            conn_states,
            resets,
            ports,
        } = other;
        self.connections += connections;
        for (state, n) in conn_states {
            *self.conn_states.entry(state).or_default() += n;
        }
        for (key, n) in resets {
            *self.resets.entry(key).or_default() += n;
        }
        for (port, o) in ports {
            let PortSummary {
                connections,
                orig_closed_first,
                resp_closed_first,
                simultaneous_close,
                no_fin,
                reset_by_orig,
                reset_by_resp,
                orig_close_wait,
                resp_close_wait,
            } = o;
            let p = self.ports.entry(port).or_default();
            p.connections += connections;
            p.orig_closed_first += orig_closed_first;
            p.resp_closed_first += resp_closed_first;
            p.simultaneous_close += simultaneous_close;
            p.no_fin += no_fin;
            p.reset_by_orig += reset_by_orig;
            p.reset_by_resp += reset_by_resp;
            p.orig_close_wait.merge(orig_close_wait);
            p.resp_close_wait.merge(resp_close_wait);
        }
    }

    /// Connections whose first RST came from `side`.
    pub fn reset_by(&self, side: Side) -> u64 {
        self.resets
            .iter()
            .filter(|((s, _), _)| *s == side)
            .map(|(_, n)| n)
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let mut v: Vec<u64> = (1..=100).rev().collect();
        let p = percentiles(&mut v).unwrap();
        assert_eq!(p.count, 100);
        assert_eq!(p.p50, Duration::from_nanos(50));
        assert_eq!(p.p90, Duration::from_nanos(90));
        assert_eq!(p.p99, Duration::from_nanos(99));
        assert_eq!(p.max, Duration::from_nanos(100));
        let mut one = vec![7];
        let p = percentiles(&mut one).unwrap();
        assert_eq!(
            (p.p50, p.p99, p.max),
            (
                Duration::from_nanos(7),
                Duration::from_nanos(7),
                Duration::from_nanos(7)
            )
        );
        assert!(percentiles(&mut []).is_none());
        let mut three = vec![30, 10, 20];
        let p = percentiles(&mut three).unwrap();
        assert_eq!(
            (p.p50, p.p90),
            (Duration::from_nanos(20), Duration::from_nanos(30))
        );
    }
}
