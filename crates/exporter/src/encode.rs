//! The metric families: names, help, labels, types. One place, so the README's metric
//! table, the alert rules and the dashboard can be checked against it
//! ([`METRIC_NAMES`]).
//!
//! Naming follows the Prometheus conventions (`promtool check metrics`): prefix
//! `tcpstate_`, base units in the name (`_seconds`, `_ratio`), `_total` on counters only
//! (prometheus-client adds it to counter samples).

use crate::aggregate::{Collection, Folded};
use crate::collector::DeadOutcome;
use prometheus_client::encoding::{DescriptorEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;
use std::borrow::Cow;
use std::fmt::Error;

/// Every metric family the exporter can publish, as scraped (counters with `_total`).
pub const METRIC_NAMES: &[&str] = &[
    "tcpstate_sockets",
    "tcpstate_orphan_fin_wait_2_sockets",
    "tcpstate_close_wait_sockets",
    "tcpstate_close_wait_oldest_age_seconds",
    "tcpstate_time_wait_sockets",
    "tcpstate_ephemeral_port_usage_ratio",
    "tcpstate_ephemeral_ports",
    "tcpstate_time_wait_buckets_max",
    "tcpstate_dead_sockets",
    "tcpstate_dead_socket_candidates_unverified",
    "tcpstate_dead_socket_checks_total",
    "tcpstate_aborts_total",
    "tcpstate_time_wait_overflows_total",
    "tcpstate_time_wait_recycled_total",
    "tcpstate_time_wait_killed_total",
    "tcpstate_listen_overflows_total",
    "tcpstate_listen_drops_total",
    "tcpstate_folded_label_sets",
    "tcpstate_label_sets_folded_total",
    "tcpstate_proc_fallback_namespaces",
    "tcpstate_scrape_duration_seconds",
    "tcpstate_scrape_errors_total",
    "tcpstate_scrapes_total",
    "tcpstate_build_info",
];

/// TcpExt counters (net/ipv4/proc.c `snmp4_net_list`) published as `tcpstate_aborts_total`,
/// with the `reason` label they get. Each is incremented where the kernel resets a
/// connection instead of closing it: `tcp_close()` with unread data (on_close), zero
/// linger or data after close (on_data), `tcp_out_of_resources()` (on_memory),
/// `tcp_write_timeout()` (on_timeout), TCP_LINGER2 < 0 (on_linger), and a reset that
/// could not be sent (failed).
pub const ABORT_COUNTERS: &[(&str, &str)] = &[
    ("TCPAbortOnData", "on_data"),
    ("TCPAbortOnClose", "on_close"),
    ("TCPAbortOnMemory", "on_memory"),
    ("TCPAbortOnTimeout", "on_timeout"),
    ("TCPAbortOnLinger", "on_linger"),
    ("TCPAbortFailed", "failed"),
];

/// TcpExt counters published as counters of their own: (kernel name, metric name without
/// `_total`, help).
const OTHER_COUNTERS: &[(&str, &str, &str)] = &[
    (
        "TCPTimeWaitOverflow",
        "tcpstate_time_wait_overflows",
        "Connections closed without TIME_WAIT because tcp_max_tw_buckets was reached (TcpExt TCPTimeWaitOverflow, inet_twsk_alloc()).",
    ),
    (
        "TWRecycled",
        "tcpstate_time_wait_recycled",
        "TIME_WAIT sockets reused by connect() under tcp_tw_reuse (TcpExt TWRecycled).",
    ),
    (
        "TWKilled",
        "tcpstate_time_wait_killed",
        "TIME_WAIT sockets killed early (TcpExt TWKilled).",
    ),
    (
        "ListenOverflows",
        "tcpstate_listen_overflows",
        "Connections dropped because a listener's accept queue was full (TcpExt ListenOverflows).",
    ),
    (
        "ListenDrops",
        "tcpstate_listen_drops",
        "SYNs or handshakes dropped at a listener for any reason (TcpExt ListenDrops).",
    ),
];

/// Stages a scrape can fail in (`tcpstate_scrape_errors_total{stage}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// The socket snapshot failed as a whole: nothing about sockets was published.
    Snapshot,
    /// One namespace could not be read (vanished or could not be entered) during
    /// `--all-netns`; the others were published.
    Netns,
}

impl Stage {
    /// Every stage, in label order.
    pub const ALL: [Stage; 2] = [Stage::Snapshot, Stage::Netns];

    /// The `stage` label value.
    pub fn label(self) -> &'static str {
        match self {
            Stage::Snapshot => "snapshot",
            Stage::Netns => "netns",
        }
    }
}

/// Escapes a label value for the text formats (backslash, double quote, newline), since
/// prometheus-client writes label values as given and process or namespace names can hold
/// any byte.
pub fn escape_label(v: &str) -> Cow<'_, str> {
    if !v.contains(['\\', '"', '\n']) {
        return Cow::Borrowed(v);
    }
    let mut s = String::with_capacity(v.len() + 4);
    for c in v.chars() {
        match c {
            '\\' => s.push_str("\\\\"),
            '"' => s.push_str("\\\""),
            '\n' => s.push_str("\\n"),
            c => s.push(c),
        }
    }
    Cow::Owned(s)
}

fn gauge_family<L, V, I>(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    rows: I,
) -> Result<(), Error>
where
    L: prometheus_client::encoding::EncodeLabelSet,
    V: prometheus_client::encoding::EncodeGaugeValue,
    I: IntoIterator<Item = (L, V)>,
{
    let mut rows = rows.into_iter().peekable();
    if rows.peek().is_none() {
        return Ok(());
    }
    let mut m = enc.encode_descriptor(name, help, None, MetricType::Gauge)?;
    for (labels, v) in rows {
        m.encode_family(&labels)?.encode_gauge(&v)?;
    }
    Ok(())
}

/// A family of one series without labels.
fn single_gauge<V: prometheus_client::encoding::EncodeGaugeValue>(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    v: V,
) -> Result<(), Error> {
    enc.encode_descriptor(name, help, None, MetricType::Gauge)?
        .encode_gauge(&v)
}

/// `name` without `_total`: prometheus-client appends it to counter samples.
fn counter_family<L, I>(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    rows: I,
) -> Result<(), Error>
where
    L: prometheus_client::encoding::EncodeLabelSet,
    I: IntoIterator<Item = (L, u64)>,
{
    let mut rows = rows.into_iter().peekable();
    if rows.peek().is_none() {
        return Ok(());
    }
    let mut m = enc.encode_descriptor(name, help, None, MetricType::Counter)?;
    for (labels, v) in rows {
        m.encode_family(&labels)?
            .encode_counter::<NoLabelSet, u64, f64>(&v, None)?;
    }
    Ok(())
}

/// Encodes the rows of one scrape (everything except the exporter's own counters).
pub fn encode_collection(enc: &mut DescriptorEncoder, c: &Collection) -> Result<(), Error> {
    let e = escape_label;
    gauge_family(
        enc,
        "tcpstate_sockets",
        "TCP sockets per state and network namespace, as NETLINK_SOCK_DIAG (or /proc/net/tcp) listed them; FIN_WAIT_2 includes orphans held as timewait minisockets.",
        c.sockets
            .iter()
            .map(|(ns, st, n)| ([("netns", e(ns)), ("state", Cow::Borrowed(st.name()))], *n)),
    )?;
    gauge_family(
        enc,
        "tcpstate_orphan_fin_wait_2_sockets",
        "Orphaned FIN_WAIT_2 sockets (no process) the kernel holds as timewait minisockets until tcp_fin_timeout; part of tcpstate_sockets{state=\"FIN_WAIT_2\"}.",
        c.orphan_fin_wait_2
            .iter()
            .map(|(ns, n)| ([("netns", e(ns))], *n)),
    )?;
    gauge_family(
        enc,
        "tcpstate_close_wait_sockets",
        "CLOSE_WAIT sockets per process (the peer closed, the application has not): the top N by count, the rest summed into process=\"other\".",
        c.close_wait
            .iter()
            .map(|r| ([("netns", e(&r.netns)), ("process", e(&r.process))], r.count)),
    )?;
    gauge_family(
        enc,
        "tcpstate_close_wait_oldest_age_seconds",
        "Estimated age of the oldest CLOSE_WAIT socket per process: time since the last ACK arrived (tcpi_last_ack_recv; the peer's FIN sets it, later ACKs such as keepalive answers reset it). Absent when the kernel gave no tcp_info.",
        c.close_wait.iter().filter_map(|r| {
            r.oldest_age_s
                .map(|a| ([("netns", e(&r.netns)), ("process", e(&r.process))], a))
        }),
    )?;
    gauge_family(
        enc,
        "tcpstate_time_wait_sockets",
        "TIME_WAIT sockets per remote endpoint: the top N by count, the rest summed into remote=\"other\".",
        c.time_wait
            .iter()
            .map(|r| ([("netns", e(&r.netns)), ("remote", e(&r.remote))], r.count)),
    )?;
    gauge_family(
        enc,
        "tcpstate_ephemeral_port_usage_ratio",
        "Ports of ip_local_port_range in use (any state but LISTEN, TIME_WAIT included) from a local address toward its busiest remote endpoint, over the size of the range; 1 means connect() to that endpoint fails with EADDRNOTAVAIL. Top N local addresses; local=\"other\" is the worst of the rest.",
        c.port_usage
            .iter()
            .map(|r| ([("netns", e(&r.netns)), ("local", e(&r.local))], r.ratio)),
    )?;
    gauge_family(
        enc,
        "tcpstate_ephemeral_ports",
        "Size of net.ipv4.ip_local_port_range.",
        c.kernel.iter().filter_map(|k| {
            k.kernel
                .ephemeral_ports()
                .map(|n| ([("netns", e(&k.netns))], n))
        }),
    )?;
    gauge_family(
        enc,
        "tcpstate_time_wait_buckets_max",
        "net.ipv4.tcp_max_tw_buckets: timewait minisockets (TIME_WAIT and orphaned FIN_WAIT_2) past it are not created and the connection skips TIME_WAIT.",
        c.kernel.iter().filter_map(|k| {
            k.kernel
                .tcp_max_tw_buckets
                .map(|n| ([("netns", e(&k.netns))], n))
        }),
    )?;
    if let Some(dead) = &c.dead {
        gauge_family(
            enc,
            "tcpstate_dead_sockets",
            "TCP sockets that left every kernel table (reset by the peer, or closed through LAST_ACK) while the process still holds the fd, verified with TCP_INFO through pidfd_getfd(2); invisible to ss and netstat.",
            dead.iter().map(|r| ([("process", e(&r.process))], r.count)),
        )?;
        single_gauge(
            enc,
            "tcpstate_dead_socket_candidates_unverified",
            "TCP fds in no table that could not be verified as dead (pidfd_getfd(2) refused).",
            c.dead_unverified,
        )?;
    }
    let mut aborts = Vec::new();
    for k in &c.kernel {
        for (kname, reason) in ABORT_COUNTERS {
            if let Some(v) = k.kernel.counters.get(*kname) {
                aborts.push((
                    [("netns", e(&k.netns)), ("reason", Cow::Borrowed(*reason))],
                    *v,
                ));
            }
        }
    }
    counter_family(
        enc,
        "tcpstate_aborts",
        "Connections the kernel reset instead of closing, by reason (TcpExt TCPAbortOn*: on_close = closed with unread data, on_data = zero linger or data after close, on_memory, on_timeout, on_linger, failed = the reset could not be sent).",
        aborts,
    )?;
    for (kname, metric, help) in OTHER_COUNTERS {
        counter_family(
            enc,
            metric,
            help,
            c.kernel.iter().filter_map(|k| {
                k.kernel
                    .counters
                    .get(*kname)
                    .map(|v| ([("netns", e(&k.netns))], *v))
            }),
        )?;
    }
    gauge_family(
        enc,
        "tcpstate_folded_label_sets",
        "Label sets summed into \"other\" in this scrape, per metric (netns: namespaces past --max-netns).",
        Folded::ALL.iter().map(|f| {
            (
                [("metric", f.label())],
                c.folded.get(f).copied().unwrap_or(0),
            )
        }),
    )?;
    single_gauge(
        enc,
        "tcpstate_proc_fallback_namespaces",
        "Namespaces read through /proc/net/tcp because NETLINK_SOCK_DIAG failed: no tcp_info there, so no CLOSE_WAIT age.",
        c.proc_fallbacks,
    )?;
    Ok(())
}

/// The exporter's own metrics, published on every scrape, also when the snapshot failed.
pub struct SelfMetrics<'a> {
    /// Seconds the collection took.
    pub duration_s: f64,
    /// Errors per stage since start.
    pub errors: &'a [(Stage, u64)],
    /// Scrapes since start.
    pub scrapes: u64,
    /// Label sets folded since start, per metric.
    pub folded_total: &'a [(Folded, u64)],
    /// Dead-socket checks since start, per outcome; `None` when the search is off.
    pub dead_checks: Option<&'a [(DeadOutcome, u64)]>,
}

/// Encodes the exporter's own metrics.
pub fn encode_self(enc: &mut DescriptorEncoder, s: &SelfMetrics) -> Result<(), Error> {
    counter_family(
        enc,
        "tcpstate_label_sets_folded",
        "Label sets summed into \"other\" since the exporter started, per metric: how much --top (or --max-netns) hid.",
        s.folded_total
            .iter()
            .map(|(f, n)| ([("metric", f.label())], *n)),
    )?;
    counter_family(
        enc,
        "tcpstate_scrape_errors",
        "Scrapes that failed in a stage since the exporter started (snapshot: nothing about sockets was published; netns: a namespace was skipped).",
        s.errors.iter().map(|(st, n)| ([("stage", st.label())], *n)),
    )?;
    if let Some(checks) = s.dead_checks {
        counter_family(
            enc,
            "tcpstate_dead_socket_checks",
            "Dead-socket checks since the exporter started, by outcome: searched = every fd of the exported namespaces' processes was read because the kernel's counts (sockstat alloc minus inuse of every namespace) showed unhashed TCP sockets beyond the dead ones already known; searched_uncounted = read because the counts moved during every sweep; ruled_out = the counts left no room for a new dead socket, so the known ones were confirmed still held and published again.",
            checks.iter().map(|(o, n)| ([("outcome", o.label())], *n)),
        )?;
    }
    enc.encode_descriptor(
        "tcpstate_scrapes",
        "Collections made since the exporter started (concurrent scrapes share one).",
        None,
        MetricType::Counter,
    )?
    .encode_counter::<NoLabelSet, u64, f64>(&s.scrapes, None)?;
    single_gauge(
        enc,
        "tcpstate_scrape_duration_seconds",
        "Time the last collection took: socket dump, owner scan, kernel counters.",
        s.duration_s,
    )?;
    gauge_family(
        enc,
        "tcpstate_build_info",
        "Always 1; the version of the exporter in a label.",
        [([("version", env!("CARGO_PKG_VERSION"))], 1u64)],
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_label_values() {
        assert_eq!(escape_label("nginx"), "nginx");
        assert_eq!(escape_label("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}
