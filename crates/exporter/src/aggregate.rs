//! From what the host said (a [`Snapshot`], the owner scan's dead sockets) to the rows the
//! exporter publishes, with label cardinality bounded by construction: at most
//! `max_netns` namespaces, and at most `top` label sets per per-process / per-endpoint
//! metric, the rest summed into one `"other"` row and counted as folded.
//!
//! Pure: no I/O, so every rule is unit-tested on made-up snapshots.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use tcpstate_fsm::State;
use tcpstate_host::kernel::KernelContext;
use tcpstate_host::owners::DeadSocket;
use tcpstate_host::{Addr, Snapshot, SockKind, Socket};

/// The label value of a row that sums everything past the top N.
pub const OTHER: &str = "other";
/// The `process` label of a CLOSE_WAIT socket that has no file (inode 0): a connection
/// still in a listener's accept queue, never accepted by the application.
pub const NO_FILE: &str = "(not accepted)";
/// The `process` label of a CLOSE_WAIT socket whose holder was not found in /proc (another
/// pid namespace, a kernel socket, an fd in flight, or fds we may not read).
pub const UNKNOWN: &str = "(unknown)";

/// How much to keep.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Label sets kept per folded metric (CLOSE_WAIT per process, TIME_WAIT per remote,
    /// port usage per local address, dead sockets per process).
    pub top: usize,
    /// Network namespaces kept as their own `netns` label value.
    pub max_netns: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            top: 10,
            max_netns: 64,
        }
    }
}

/// The metrics whose rows are folded into `other` past the top N.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Folded {
    /// `tcpstate_close_wait_sockets` per (netns, process).
    CloseWait,
    /// `tcpstate_time_wait_sockets` per (netns, remote).
    TimeWait,
    /// `tcpstate_ephemeral_port_usage_ratio` per (netns, local).
    EphemeralPorts,
    /// `tcpstate_dead_sockets` per process.
    DeadSockets,
    /// Namespaces past `max_netns`.
    Namespaces,
}

impl Folded {
    /// Every kind, in label order.
    pub const ALL: [Folded; 5] = [
        Folded::CloseWait,
        Folded::TimeWait,
        Folded::EphemeralPorts,
        Folded::DeadSockets,
        Folded::Namespaces,
    ];

    /// The `metric` label value.
    pub fn label(self) -> &'static str {
        match self {
            Folded::CloseWait => "close_wait_sockets",
            Folded::TimeWait => "time_wait_sockets",
            Folded::EphemeralPorts => "ephemeral_port_usage_ratio",
            Folded::DeadSockets => "dead_sockets",
            Folded::Namespaces => "netns",
        }
    }
}

/// CLOSE_WAIT sockets of one process in one namespace.
#[derive(Debug, Clone, PartialEq)]
pub struct CloseWaitRow {
    /// Namespace label.
    pub netns: String,
    /// Process name (`/proc/PID/comm`), [`NO_FILE`], [`UNKNOWN`] or [`OTHER`].
    pub process: String,
    /// Sockets.
    pub count: u64,
    /// Oldest estimated age in seconds (`tcpi_last_ack_recv`), when the kernel gave one.
    pub oldest_age_s: Option<f64>,
}

/// TIME_WAIT sockets toward one remote endpoint.
#[derive(Debug, Clone, PartialEq)]
pub struct TimeWaitRow {
    /// Namespace label.
    pub netns: String,
    /// `ip:port` / `[v6]:port`, or [`OTHER`].
    pub remote: String,
    /// True TIME_WAIT minisockets (not the FIN_WAIT_2 orphans the kernel also holds as such).
    pub count: u64,
}

/// Ephemeral port usage of one local address.
#[derive(Debug, Clone, PartialEq)]
pub struct PortUsageRow {
    /// Namespace label.
    pub netns: String,
    /// Local IP, or [`OTHER`].
    pub local: String,
    /// Ports in `ip_local_port_range` used from this address toward its busiest remote
    /// endpoint, divided by the size of the range. A connect() needs a 4-tuple that is
    /// unique, so the range is exhausted per (local IP, remote IP, remote port)
    /// (`__inet_hash_connect()`), and the busiest destination is the one that runs out.
    pub ratio: f64,
}

/// Dead sockets held by one process.
#[derive(Debug, Clone, PartialEq)]
pub struct DeadRow {
    /// Process name or [`OTHER`].
    pub process: String,
    /// Verified dead TCP sockets still held.
    pub count: u64,
}

/// Kernel context of one kept namespace.
#[derive(Debug, Clone, PartialEq)]
pub struct KernelRow {
    /// Namespace label.
    pub netns: String,
    /// What was read there.
    pub kernel: KernelContext,
}

/// Everything one scrape publishes, before encoding.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Collection {
    /// Sockets per (netns, state); every state of every kept namespace, zeros included, so
    /// that a state's series does not vanish when its count drops to zero.
    pub sockets: Vec<(String, State, u64)>,
    /// Orphaned FIN_WAIT_2 held by the kernel as timewait minisockets, per netns (part of
    /// the FIN_WAIT_2 count above; `ss -s` counts them as "timewait").
    pub orphan_fin_wait_2: Vec<(String, u64)>,
    /// CLOSE_WAIT per process.
    pub close_wait: Vec<CloseWaitRow>,
    /// TIME_WAIT per remote.
    pub time_wait: Vec<TimeWaitRow>,
    /// Ephemeral port usage per local address.
    pub port_usage: Vec<PortUsageRow>,
    /// Dead sockets per process; `None` when they were not sought this scrape.
    pub dead: Option<Vec<DeadRow>>,
    /// Dead-socket candidates that could not be verified.
    pub dead_unverified: u64,
    /// Kernel context of each kept namespace that has one.
    pub kernel: Vec<KernelRow>,
    /// Label sets folded into `other` this scrape, per metric.
    pub folded: BTreeMap<Folded, u64>,
    /// Namespaces read through /proc/net/tcp (no tcp_info, so no CLOSE_WAIT age).
    pub proc_fallbacks: u64,
}

/// Rows kept and rows folded by [`top_n`].
type Split<K, V> = (Vec<(K, V)>, Vec<(K, V)>);

/// Sorts by value (largest first, ties by label so the output is stable), keeps the first
/// `top`, and returns the kept rows plus the folded ones.
fn top_n<K: Ord + Clone, V: Clone>(
    groups: impl IntoIterator<Item = (K, V)>,
    top: usize,
    key: impl Fn(&V) -> f64,
) -> Split<K, V> {
    let mut v: Vec<(K, V)> = groups.into_iter().collect();
    v.sort_by(|a, b| key(&b.1).total_cmp(&key(&a.1)).then_with(|| a.0.cmp(&b.0)));
    let rest = if v.len() > top {
        v.split_off(top)
    } else {
        Vec::new()
    };
    (v, rest)
}

/// The netns label of every dumped namespace: the first `max_netns` in the host's order
/// (the exporter's own namespace first, then by name), the rest [`OTHER`]. The order is
/// the host's resolve order rather than by socket count, so a namespace keeps its label
/// from scrape to scrape instead of flapping in and out of the kept set.
fn netns_labels(snap: &Snapshot, max_netns: usize) -> Vec<String> {
    snap.namespaces
        .iter()
        .enumerate()
        .map(|(i, n)| {
            if i < max_netns {
                n.name.clone()
            } else {
                OTHER.to_string()
            }
        })
        .collect()
}

fn process_label(s: &Socket) -> &str {
    match &s.owner {
        Some(o) => &o.process,
        None if s.inode == 0 => NO_FILE,
        None => UNKNOWN,
    }
}

/// Builds the rows of one scrape. `dead` is the owner scan's verified dead sockets, when
/// the scan looked for them.
pub fn collect(
    snap: &Snapshot,
    dead: Option<(&[DeadSocket], usize)>,
    limits: Limits,
) -> Collection {
    let labels = netns_labels(snap, limits.max_netns);
    let label_of = |s: &Socket| -> &str { labels.get(s.netns).map_or(OTHER, String::as_str) };
    let mut out = Collection::default();
    let folded_ns = snap.namespaces.len().saturating_sub(limits.max_netns) as u64;
    out.folded.insert(Folded::Namespaces, folded_ns);

    // Sockets per state and namespace.
    let mut kept_ns: Vec<&str> = Vec::new();
    for l in &labels {
        if !kept_ns.contains(&l.as_str()) {
            kept_ns.push(l);
        }
    }
    // Counted per namespace index and kernel state code, then summed per label: every
    // socket is visited, so no hashing or label lookup per socket.
    let mut per_ns = vec![([0u64; 12], 0u64); snap.namespaces.len() + 1];
    let last = per_ns.len() - 1; // an index the namespaces do not have: "other"
    for s in &snap.sockets {
        let row = &mut per_ns[s.netns.min(last)];
        row.0[usize::from(s.state.kernel_code()).min(11)] += 1;
        if s.state == State::FinWait2 && s.kind == SockKind::TimeWaitMini {
            row.1 += 1;
        }
    }
    for ns in &kept_ns {
        let mut sum = ([0u64; 12], 0u64);
        for (i, row) in per_ns.iter().enumerate() {
            if labels.get(i).map_or(OTHER, String::as_str) == *ns {
                for (a, b) in sum.0.iter_mut().zip(row.0) {
                    *a += b;
                }
                sum.1 += row.1;
            }
        }
        for st in State::ALL {
            let n = sum.0[usize::from(st.kernel_code()).min(11)];
            out.sockets.push((ns.to_string(), st, n));
        }
        out.orphan_fin_wait_2.push((ns.to_string(), sum.1));
    }

    // CLOSE_WAIT per (netns, process).
    let mut cw_by: HashMap<(&str, &str), (u64, Option<f64>)> = HashMap::new();
    for s in snap.sockets.iter().filter(|s| s.state == State::CloseWait) {
        let e = cw_by.entry((label_of(s), process_label(s))).or_default();
        e.0 += 1;
        if let Some(age) = s.state_time().age {
            let a = age.as_secs_f64();
            e.1 = Some(e.1.map_or(a, |o: f64| o.max(a)));
        }
    }
    let cw = cw_by
        .into_iter()
        .map(|((ns, p), v)| ((ns.to_string(), p.to_string()), v));
    let (kept, rest) = top_n(cw, limits.top, |v| v.0 as f64);
    for ((netns, process), (count, oldest_age_s)) in kept {
        out.close_wait.push(CloseWaitRow {
            netns,
            process,
            count,
            oldest_age_s,
        });
    }
    out.folded.insert(Folded::CloseWait, rest.len() as u64);
    if !rest.is_empty() {
        let count = rest.iter().map(|(_, v)| v.0).sum();
        let oldest_age_s = rest.iter().filter_map(|(_, v)| v.1).reduce(f64::max);
        out.close_wait.push(CloseWaitRow {
            netns: OTHER.into(),
            process: OTHER.into(),
            count,
            oldest_age_s,
        });
    }

    // TIME_WAIT per (netns, remote): true TIME_WAIT only (the minisocket's substate).
    // Grouped by address, turned into text once per remote rather than once per socket.
    let mut tw_by: HashMap<(&str, std::net::SocketAddr), u64> = HashMap::new();
    for s in snap.sockets.iter().filter(|s| s.state == State::TimeWait) {
        *tw_by.entry((label_of(s), s.peer)).or_default() += 1;
    }
    let tw = tw_by
        .into_iter()
        .map(|((ns, peer), n)| ((ns.to_string(), Addr(&peer).to_string()), n));
    let (kept, rest) = top_n(tw, limits.top, |v| *v as f64);
    for ((netns, remote), count) in kept {
        out.time_wait.push(TimeWaitRow {
            netns,
            remote,
            count,
        });
    }
    out.folded.insert(Folded::TimeWait, rest.len() as u64);
    if !rest.is_empty() {
        out.time_wait.push(TimeWaitRow {
            netns: OTHER.into(),
            remote: OTHER.into(),
            count: rest.iter().map(|(_, c)| c).sum(),
        });
    }

    // Ephemeral port usage per (netns, local IP): per namespace, its own port range.
    let ranges: Vec<Option<(u16, u16)>> = snap
        .namespaces
        .iter()
        .map(|n| n.kernel.as_ref().and_then(|k| k.ip_local_port_range))
        .collect();
    // (netns index, local ip) -> (remote) -> ports used
    let mut used: HashMap<(usize, IpAddr), HashMap<std::net::SocketAddr, u64>> = HashMap::new();
    for s in &snap.sockets {
        if s.state == State::Listen || s.peer.port() == 0 {
            continue;
        }
        let Some(Some((lo, hi))) = ranges.get(s.netns) else {
            continue;
        };
        let port = s.local.port();
        if port < *lo || port > *hi {
            continue;
        }
        *used
            .entry((s.netns, s.local.ip()))
            .or_default()
            .entry(s.peer)
            .or_default() += 1;
    }
    let mut usage: BTreeMap<(String, String), f64> = BTreeMap::new();
    for ((ns, ip), per_remote) in used {
        let Some(Some((lo, hi))) = ranges.get(ns) else {
            continue;
        };
        let size = f64::from(hi.saturating_sub(*lo)) + 1.0;
        let busiest = per_remote.values().copied().max().unwrap_or(0) as f64;
        let label = labels.get(ns).cloned().unwrap_or_else(|| OTHER.into());
        let e = usage.entry((label, ip.to_string())).or_default();
        *e = e.max(busiest / size);
    }
    let (kept, rest) = top_n(usage, limits.top, |v| *v);
    for ((netns, local), ratio) in kept {
        out.port_usage.push(PortUsageRow {
            netns,
            local,
            ratio,
        });
    }
    out.folded.insert(Folded::EphemeralPorts, rest.len() as u64);
    if !rest.is_empty() {
        // A ratio does not sum: the folded row is the worst of the rest.
        out.port_usage.push(PortUsageRow {
            netns: OTHER.into(),
            local: OTHER.into(),
            ratio: rest.iter().map(|(_, r)| *r).fold(0.0, f64::max),
        });
    }

    // Dead sockets per process.
    match dead {
        None => {
            out.dead = None;
            out.folded.insert(Folded::DeadSockets, 0);
        }
        Some((list, unverified)) => {
            let mut per: BTreeMap<String, u64> = BTreeMap::new();
            for d in list {
                *per.entry(d.owner.process.clone()).or_default() += 1;
            }
            let (kept, rest) = top_n(per, limits.top, |v| *v as f64);
            let mut rows: Vec<DeadRow> = kept
                .into_iter()
                .map(|(process, count)| DeadRow { process, count })
                .collect();
            out.folded.insert(Folded::DeadSockets, rest.len() as u64);
            if !rest.is_empty() {
                rows.push(DeadRow {
                    process: OTHER.into(),
                    count: rest.iter().map(|(_, c)| c).sum(),
                });
            }
            out.dead = Some(rows);
            out.dead_unverified = unverified as u64;
        }
    }

    // Kernel context of the kept namespaces only: the counters of folded namespaces are
    // not summed, because the sum would go down whenever the folded set changes, and
    // Prometheus would read that as a counter reset.
    for (i, n) in snap.namespaces.iter().enumerate().take(limits.max_netns) {
        if let Some(k) = &n.kernel {
            out.kernel.push(KernelRow {
                netns: labels[i].clone(),
                kernel: k.clone(),
            });
        }
    }
    out.proc_fallbacks = snap
        .namespaces
        .iter()
        .filter(|n| n.source == tcpstate_host::Source::ProcNet)
        .count() as u64;
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::SocketAddr;
    use std::time::Duration;
    use tcpstate_host::{Namespace, Owner, Source, TcpInfo, Timer, TimerKind};

    fn ns(name: &str, range: Option<(u16, u16)>) -> Namespace {
        Namespace {
            name: name.into(),
            inode: None,
            source: Source::SockDiag,
            fallback_reason: None,
            kernel: range.map(|r| KernelContext {
                ip_local_port_range: Some(r),
                ..Default::default()
            }),
        }
    }

    fn sock(state: State, local: &str, peer: &str, netns: usize) -> Socket {
        Socket {
            state,
            kind: if state == State::TimeWait {
                SockKind::TimeWaitMini
            } else {
                SockKind::Full
            },
            local: local.parse::<SocketAddr>().unwrap(),
            peer: peer.parse::<SocketAddr>().unwrap(),
            recv_q: 0,
            send_q: 0,
            uid: 0,
            inode: 0,
            cookie: None,
            timer: None,
            tcp_info: None,
            mem: None,
            netns,
            owner: None,
        }
    }

    fn close_wait(process: Option<&str>, age_ms: Option<u32>, netns: usize) -> Socket {
        let mut s = sock(State::CloseWait, "10.0.0.1:8080", "10.0.0.2:40000", netns);
        s.inode = 1;
        s.owner = process.map(|p| Owner {
            pid: 42,
            process: p.into(),
            fd: 3,
            cmdline: p.into(),
        });
        s.tcp_info = age_ms.map(|ms| TcpInfo {
            last_ack_recv_ms: Some(ms),
            ..Default::default()
        });
        s
    }

    fn snap(namespaces: Vec<Namespace>, sockets: Vec<Socket>) -> Snapshot {
        Snapshot {
            namespaces,
            sockets,
            warnings: Vec::new(),
        }
    }

    #[test]
    fn every_state_of_every_namespace_is_present_with_zeros() {
        let s = snap(
            vec![ns("init", None), ns("blue", None)],
            vec![sock(State::Listen, "0.0.0.0:80", "0.0.0.0:0", 1)],
        );
        let c = collect(&s, None, Limits::default());
        assert_eq!(c.sockets.len(), 22);
        assert!(c.sockets.contains(&("blue".into(), State::Listen, 1)));
        assert!(c.sockets.contains(&("init".into(), State::Listen, 0)));
        assert_eq!(c.folded[&Folded::Namespaces], 0);
    }

    #[test]
    fn close_wait_top_n_folds_the_rest_into_other() {
        let mut socks = Vec::new();
        for _ in 0..5 {
            socks.push(close_wait(Some("leaky"), Some(90_000), 0));
        }
        for _ in 0..3 {
            socks.push(close_wait(Some("middle"), Some(1_000), 0));
        }
        socks.push(close_wait(Some("small-a"), Some(500_000), 0));
        socks.push(close_wait(Some("small-b"), None, 0));
        socks.push(close_wait(None, None, 0));
        let mut unaccepted = close_wait(None, None, 0);
        unaccepted.inode = 0;
        socks.push(unaccepted);
        let s = snap(vec![ns("init", None)], socks);
        let c = collect(
            &s,
            None,
            Limits {
                top: 2,
                max_netns: 8,
            },
        );
        assert_eq!(c.close_wait.len(), 3);
        assert_eq!(c.close_wait[0].process, "leaky");
        assert_eq!(c.close_wait[0].count, 5);
        assert_eq!(c.close_wait[0].oldest_age_s, Some(90.0));
        assert_eq!(c.close_wait[1].process, "middle");
        let other = &c.close_wait[2];
        assert_eq!((other.process.as_str(), other.count), (OTHER, 4));
        // The oldest of the folded ones, not invented for those without an age.
        assert_eq!(other.oldest_age_s, Some(500.0));
        assert_eq!(c.folded[&Folded::CloseWait], 4);
    }

    #[test]
    fn unowned_close_wait_is_labelled_by_why() {
        let mut unaccepted = close_wait(None, None, 0);
        unaccepted.inode = 0;
        let s = snap(
            vec![ns("init", None)],
            vec![unaccepted, close_wait(None, None, 0)],
        );
        let c = collect(&s, None, Limits::default());
        let names: Vec<&str> = c.close_wait.iter().map(|r| r.process.as_str()).collect();
        assert!(names.contains(&NO_FILE) && names.contains(&UNKNOWN));
        assert!(c.close_wait.iter().all(|r| r.oldest_age_s.is_none()));
    }

    #[test]
    fn time_wait_per_remote_excludes_fin_wait_2_minisockets() {
        let mut socks = Vec::new();
        for i in 0..4 {
            socks.push(sock(
                State::TimeWait,
                &format!("10.0.0.1:{}", 40000 + i),
                "10.0.0.9:443",
                0,
            ));
        }
        socks.push(sock(State::TimeWait, "10.0.0.1:40100", "10.0.0.8:80", 0));
        let mut fw2 = sock(State::FinWait2, "10.0.0.1:40200", "10.0.0.9:443", 0);
        fw2.kind = SockKind::TimeWaitMini;
        socks.push(fw2);
        let s = snap(vec![ns("init", None)], socks);
        let c = collect(
            &s,
            None,
            Limits {
                top: 1,
                max_netns: 8,
            },
        );
        assert_eq!(
            c.time_wait,
            vec![
                TimeWaitRow {
                    netns: "init".into(),
                    remote: "10.0.0.9:443".into(),
                    count: 4
                },
                TimeWaitRow {
                    netns: OTHER.into(),
                    remote: OTHER.into(),
                    count: 1
                },
            ]
        );
        assert_eq!(c.orphan_fin_wait_2, vec![("init".into(), 1)]);
        assert_eq!(c.folded[&Folded::TimeWait], 1);
    }

    #[test]
    fn port_usage_is_the_busiest_destination_over_the_range() {
        let mut socks = Vec::new();
        // 50 ports toward 10.0.0.9:443 and 10 toward 10.0.0.8:80, in a range of 100.
        for i in 0..50 {
            socks.push(sock(
                State::TimeWait,
                &format!("10.0.0.1:{}", 1000 + i),
                "10.0.0.9:443",
                0,
            ));
        }
        for i in 0..10 {
            socks.push(sock(
                State::Established,
                &format!("10.0.0.1:{}", 1000 + i),
                "10.0.0.8:80",
                0,
            ));
        }
        // Outside the range (a server port): not counted.
        socks.push(sock(State::Established, "10.0.0.1:80", "10.0.0.7:5555", 0));
        // A listener in the range: not counted.
        socks.push(sock(State::Listen, "10.0.0.1:1050", "0.0.0.0:0", 0));
        let s = snap(vec![ns("init", Some((1000, 1099)))], socks);
        let c = collect(&s, None, Limits::default());
        assert_eq!(c.port_usage.len(), 1);
        assert_eq!(c.port_usage[0].local, "10.0.0.1");
        assert!((c.port_usage[0].ratio - 0.5).abs() < 1e-9);
    }

    #[test]
    fn no_port_range_means_no_ratio_rather_than_a_guess() {
        let s = snap(
            vec![ns("init", None)],
            vec![sock(
                State::Established,
                "10.0.0.1:40000",
                "10.0.0.9:443",
                0,
            )],
        );
        assert!(collect(&s, None, Limits::default()).port_usage.is_empty());
    }

    #[test]
    fn namespaces_past_the_limit_are_summed_and_their_counters_dropped() {
        let namespaces = vec![
            ns("init", Some((1, 2))),
            ns("a", Some((1, 2))),
            ns("b", Some((1, 2))),
        ];
        let socks = vec![
            sock(State::Listen, "0.0.0.0:1", "0.0.0.0:0", 1),
            sock(State::Listen, "0.0.0.0:1", "0.0.0.0:0", 2),
        ];
        let s = snap(namespaces, socks);
        let c = collect(
            &s,
            None,
            Limits {
                top: 10,
                max_netns: 1,
            },
        );
        assert!(c.sockets.contains(&(OTHER.into(), State::Listen, 2)));
        assert_eq!(c.sockets.len(), 22);
        assert_eq!(c.kernel.len(), 1);
        assert_eq!(c.folded[&Folded::Namespaces], 2);
    }

    #[test]
    fn dead_sockets_per_process() {
        let d = |p: &str| DeadSocket {
            owner: Owner {
                pid: 7,
                process: p.into(),
                fd: 9,
                cmdline: String::new(),
            },
            inode: 5,
            protocol: "TCP".into(),
            tcp_info: TcpInfo::default(),
        };
        let list = vec![d("a"), d("a"), d("b"), d("c")];
        let s = snap(vec![ns("init", None)], Vec::new());
        let c = collect(
            &s,
            Some((&list, 3)),
            Limits {
                top: 1,
                max_netns: 4,
            },
        );
        assert_eq!(
            c.dead,
            Some(vec![
                DeadRow {
                    process: "a".into(),
                    count: 2
                },
                DeadRow {
                    process: OTHER.into(),
                    count: 2
                }
            ])
        );
        assert_eq!(c.dead_unverified, 3);
        assert_eq!(c.folded[&Folded::DeadSockets], 2);
        assert_eq!(collect(&s, None, Limits::default()).dead, None);
    }

    #[test]
    fn time_wait_age_is_not_used_for_close_wait() {
        // A TIME_WAIT socket with a timer must not leak into CLOSE_WAIT rows.
        let mut t = sock(State::TimeWait, "10.0.0.1:1", "10.0.0.2:2", 0);
        t.timer = Some(Timer {
            kind: TimerKind::TimeWait,
            expires: Duration::from_secs(10),
            retransmits: 0,
        });
        let c = collect(
            &snap(vec![ns("init", None)], vec![t]),
            None,
            Limits::default(),
        );
        assert!(c.close_wait.is_empty());
        assert_eq!(c.folded[&Folded::CloseWait], 0);
    }
}
