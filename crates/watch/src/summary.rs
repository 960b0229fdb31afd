//! `--summary`: how long sockets stayed in each state (count, p50, p90, p99, max), the
//! transition counts, CLOSE_WAIT dwell per process and the RST endings, as text or JSON.

use crate::report::{Human, JSON_VERSION};
use crate::tracker::{percentile, Summary};
use serde_json::{json, Value};
use std::time::Duration;

/// Dwell statistics of one set of samples.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stats {
    /// Samples.
    pub count: usize,
    /// Median.
    pub p50: Duration,
    /// 90th percentile.
    pub p90: Duration,
    /// 99th percentile.
    pub p99: Duration,
    /// Maximum.
    pub max: Duration,
}

/// Stats of unsorted samples (nearest-rank percentiles).
pub fn stats(samples: &[Duration]) -> Stats {
    let mut v = samples.to_vec();
    v.sort_unstable();
    Stats {
        count: v.len(),
        p50: percentile(&v, 50.0),
        p90: percentile(&v, 90.0),
        p99: percentile(&v, 99.0),
        max: v.last().copied().unwrap_or_default(),
    }
}

fn stats_json(s: &Stats) -> Value {
    json!({
        "count": s.count,
        "p50_s": s.p50.as_secs_f64(),
        "p90_s": s.p90.as_secs_f64(),
        "p99_s": s.p99.as_secs_f64(),
        "max_s": s.max.as_secs_f64(),
    })
}

impl Summary {
    /// The summary as text (several lines, no trailing newline).
    pub fn to_text(&self, lost_events: Option<u64>) -> String {
        let mut s = String::from("summary: time spent in each state by connections that ended\n");
        s.push_str(&format!(
            "  {:<12} {:>7} {:>10} {:>10} {:>10} {:>10}\n",
            "state", "count", "p50", "p90", "p99", "max"
        ));
        for (state, v) in &self.dwell {
            let st = stats(v);
            s.push_str(&format!(
                "  {:<12} {:>7} {:>10} {:>10} {:>10} {:>10}\n",
                state.name(),
                st.count,
                Human(st.p50).to_string(),
                Human(st.p90).to_string(),
                Human(st.p99).to_string(),
                Human(st.max).to_string()
            ));
        }
        s.push_str("transitions:\n");
        for ((a, b), n) in &self.transitions {
            s.push_str(&format!("  {:>11} → {:<11} {n}\n", a.name(), b.name()));
        }
        if !self.close_wait_by_process.is_empty() {
            s.push_str("CLOSE_WAIT dwell per process:\n");
            for (who, v) in &self.close_wait_by_process {
                let st = stats(v);
                s.push_str(&format!(
                    "  {:<24} count {} p50 {} max {}\n",
                    who,
                    st.count,
                    Human(st.p50),
                    Human(st.max)
                ));
            }
        }
        s.push_str("RST endings:");
        if self.rst_endings.is_empty() {
            s.push_str(" none\n");
        } else {
            s.push('\n');
            for (k, n) in &self.rst_endings {
                s.push_str(&format!("  {k}: {n}\n"));
            }
        }
        s.push_str(&format!(
            "connections ended: {}; TIME_WAIT handovers confirmed by sock_diag: {}, not found: {}",
            self.ended, self.timewait_confirmed, self.timewait_not_found
        ));
        if self.unattributed > 0 {
            s.push_str(&format!(
                "; left out (not found in the watched namespace): {}",
                self.unattributed
            ));
        }
        if self.bad_lines > 0 {
            s.push_str(&format!("; undecodable trace lines: {}", self.bad_lines));
        }
        if let Some(l) = lost_events {
            s.push_str(&format!("; events lost by the kernel ring buffer: {l}"));
        }
        s
    }

    /// The summary as one JSON object.
    pub fn to_json(&self, lost_events: Option<u64>) -> Value {
        let dwell: serde_json::Map<String, Value> = self
            .dwell
            .iter()
            .map(|(s, v)| (s.name().to_string(), stats_json(&stats(v))))
            .collect();
        let transitions: Vec<Value> = self
            .transitions
            .iter()
            .map(|((a, b), n)| json!({"from": a.name(), "to": b.name(), "count": n}))
            .collect();
        let cw: serde_json::Map<String, Value> = self
            .close_wait_by_process
            .iter()
            .map(|(k, v)| (k.clone(), stats_json(&stats(v))))
            .collect();
        let mut v = json!({
            "version": JSON_VERSION,
            "type": "summary",
            "dwell": dwell,
            "transitions": transitions,
            "close_wait_by_process": cw,
            "rst_endings": self.rst_endings,
            "ended": self.ended,
            "timewait_confirmed": self.timewait_confirmed,
            "timewait_not_found": self.timewait_not_found,
            "unattributed": self.unattributed,
            "bad_lines": self.bad_lines,
        });
        if let Some(l) = lost_events {
            v["lost_events"] = json!(l);
        }
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tcpstate_fsm::State;

    #[test]
    fn text_and_json_carry_the_numbers() {
        let mut s = Summary::default();
        s.dwell.insert(
            State::TimeWait,
            vec![Duration::from_secs(60), Duration::from_secs(59)],
        );
        s.transitions.insert((State::FinWait2, State::TimeWait), 2);
        s.rst_endings.insert("rst_received".into(), 1);
        let t = s.to_text(Some(0));
        assert!(t.contains("TIME_WAIT"), "{t}");
        assert!(t.contains("rst_received: 1"), "{t}");
        let j = s.to_json(Some(0));
        assert_eq!(j["dwell"]["TIME_WAIT"]["count"], 2);
        assert_eq!(j["dwell"]["TIME_WAIT"]["max_s"], 60.0);
        assert_eq!(j["transitions"][0]["to"], "TIME_WAIT");
        assert_eq!(j["lost_events"], 0);
    }
}
