//! Diagnosis rules: a [`Snapshot`] (plus owners, dead sockets and kernel context) in,
//! [`Finding`]s out — each with evidence (numbers), what it means on the state diagram,
//! and what to do. Pure: no I/O, so every rule is unit-tested on made-up snapshots.

use crate::kernel::KernelContext;
use crate::model::{Addr, Snapshot, SockKind, Socket, TimerKind};
use crate::owners::{DeadSocket, OwnerScan};
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;
use std::time::Duration;
use tcpstate_fsm::State;

/// How bad a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    /// Worth knowing.
    Info,
    /// Needs attention.
    Warning,
    /// Something is breaking or will soon.
    Critical,
}

impl Severity {
    /// Lower-case name.
    pub fn name(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Critical => "critical",
        }
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.name())
    }
}

impl FromStr for Severity {
    type Err = String;
    fn from_str(s: &str) -> Result<Severity, String> {
        match s.to_ascii_lowercase().as_str() {
            "info" => Ok(Severity::Info),
            "warning" | "warn" => Ok(Severity::Warning),
            "critical" | "crit" => Ok(Severity::Critical),
            _ => Err(format!(
                "unknown severity {s:?}: expected info, warning or critical"
            )),
        }
    }
}

/// A diagnosis.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Finding {
    /// Stable rule id, e.g. `close_wait_leak`.
    pub id: &'static str,
    /// How bad.
    pub severity: Severity,
    /// One line, with the main numbers.
    pub title: String,
    /// What was seen, with numbers.
    pub evidence: Vec<String>,
    /// What it means on the state diagram.
    pub meaning: String,
    /// What to do.
    pub action: String,
    /// The process concerned, when there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pid: Option<u32>,
    /// Its name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub process: Option<String>,
    /// Sockets concerned.
    pub count: usize,
    /// Oldest age in the group (an estimate for CLOSE_WAIT).
    #[serde(
        rename = "oldest_s",
        skip_serializing_if = "Option::is_none",
        serialize_with = "ser_opt_secs"
    )]
    pub oldest: Option<Duration>,
    /// Network namespace name.
    pub netns: String,
}

fn ser_opt_secs<S: serde::Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
    match d {
        Some(d) => s.serialize_f64(d.as_secs_f64()),
        None => s.serialize_none(),
    }
}

/// When a pattern becomes a finding.
#[derive(Debug, Clone, PartialEq)]
pub struct Thresholds {
    /// CLOSE_WAIT sockets of one process (or listener) for a leak finding...
    pub close_wait_count: usize,
    /// ...or any one of them older than this (estimate).
    pub close_wait_age: Duration,
    /// TIME_WAIT toward one (local IP, remote IP:port), as a fraction of the ephemeral
    /// port range, for a warning (critical at 2.5×).
    pub time_wait_port_ratio: f64,
    /// All timewait sockets as a fraction of tcp_max_tw_buckets, for a warning.
    pub time_wait_bucket_ratio: f64,
    /// Orphaned FIN_WAIT_2 toward one peer.
    pub orphan_fin_wait_2_count: usize,
    /// LAST_ACK toward one peer.
    pub last_ack_count: usize,
    /// SYN_RECV on one listener.
    pub syn_recv_count: usize,
    /// SYN_SENT toward one peer.
    pub syn_sent_count: usize,
}

impl Default for Thresholds {
    fn default() -> Thresholds {
        Thresholds {
            close_wait_count: 5,
            close_wait_age: Duration::from_secs(60),
            time_wait_port_ratio: 0.2,
            time_wait_bucket_ratio: 0.5,
            orphan_fin_wait_2_count: 5,
            last_ack_count: 10,
            syn_recv_count: 50,
            syn_sent_count: 5,
        }
    }
}

/// Counter growth measured over a sampling interval.
#[derive(Debug, Clone, PartialEq)]
pub struct CounterGrowth {
    /// Counters at the start.
    pub before: BTreeMap<String, u64>,
    /// Counters at the end.
    pub after: BTreeMap<String, u64>,
    /// Interval.
    pub interval: Duration,
}

/// Counts per state with the parts `ss -s` hides.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StateCount {
    /// State name.
    pub state: &'static str,
    /// Sockets in it.
    pub count: usize,
    /// Of which orphans held by the kernel as timewait minisockets (FIN_WAIT_2 only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub orphan_minisockets: Option<usize>,
}

/// Honest counts per state (FIN_WAIT_2 split into full sockets and orphan minisockets).
pub fn state_counts(snap: &Snapshot) -> Vec<StateCount> {
    snap.counts()
        .into_iter()
        .map(|(s, count)| StateCount {
            state: s.name(),
            count,
            orphan_minisockets: (s == State::FinWait2).then(|| {
                snap.sockets
                    .iter()
                    .filter(|x| x.state == State::FinWait2 && x.kind == SockKind::TimeWaitMini)
                    .count()
            }),
        })
        .collect()
}

/// Human duration: `41 min`, `3.2 s`, `2 h 5 min`.
pub fn human(d: Duration) -> String {
    let s = d.as_secs();
    if s >= 86_400 {
        format!("{} d {} h", s / 86_400, (s % 86_400) / 3600)
    } else if s >= 3600 {
        format!("{} h {} min", s / 3600, (s % 3600) / 60)
    } else if s >= 60 {
        format!("{} min", s / 60)
    } else {
        format!("{:.1} s", d.as_secs_f64())
    }
}

fn top_peers<'a>(socks: impl Iterator<Item = &'a Socket>, by_ip: bool) -> String {
    let mut n: HashMap<String, usize> = HashMap::new();
    for s in socks {
        let key = if by_ip {
            s.peer.ip().to_string()
        } else {
            Addr(&s.peer).to_string()
        };
        *n.entry(key).or_default() += 1;
    }
    let mut v: Vec<_> = n.into_iter().collect();
    v.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    let shown: Vec<String> = v
        .iter()
        .take(3)
        .map(|(p, c)| format!("{p} ({c})"))
        .collect();
    let more = v.len().saturating_sub(3);
    if more > 0 {
        format!("{} and {more} more", shown.join(", "))
    } else {
        shown.join(", ")
    }
}

fn ns_name(snap: &Snapshot, i: usize) -> String {
    snap.namespaces
        .get(i)
        .map(|n| n.name.clone())
        .unwrap_or_default()
}

/// What a state means for a finding: the `tcpstate explain` texts (what the state is, how
/// long Linux keeps it, what many of them mean on a host), kept in one place in
/// `tcpstate_fsm::explain`. A finding adds only what is specific to it.
pub fn state_meaning(state: State) -> String {
    let e = tcpstate_fsm::explain(state);
    format!(
        "{}: {} {} {}",
        state.name(),
        e.meaning,
        e.linux_duration,
        e.many_sockets
    )
}

fn close_wait_findings(snap: &Snapshot, t: &Thresholds, out: &mut Vec<Finding>) {
    // Group by (netns, pid) when the owner is known, else by (netns, local address).
    let mut groups: BTreeMap<(usize, Option<u32>, String), Vec<&Socket>> = BTreeMap::new();
    for s in snap.sockets.iter().filter(|s| s.state == State::CloseWait) {
        let key = match &s.owner {
            Some(o) => (s.netns, Some(o.pid), String::new()),
            None => (s.netns, None, Addr(&s.local).to_string()),
        };
        groups.entry(key).or_default().push(s);
    }
    for ((ns, pid, local), socks) in groups {
        let n = socks.len();
        let oldest = socks.iter().filter_map(|s| s.state_time().age).max();
        if n < t.close_wait_count && oldest.is_none_or(|o| o < t.close_wait_age) {
            continue;
        }
        let (mut q0, mut q1, mut qn, mut unread) = (0, 0, 0, 0u64);
        for s in &socks {
            match s.recv_q {
                0 => q0 += 1,
                1 => q1 += 1,
                b => {
                    qn += 1;
                    unread += u64::from(b - 1);
                }
            }
        }
        let keepalive = socks
            .iter()
            .filter(|s| s.timer.is_some_and(|x| x.kind == TimerKind::Keepalive))
            .count();
        let process = socks[0].owner.as_ref().map(|o| o.process.clone());
        let who = match (pid, &process) {
            (Some(p), Some(name)) => format!("pid {p} ({name})"),
            _ => format!("unknown process (local {local})"),
        };
        let title = match oldest {
            Some(o) => format!(
                "{who} leaks CLOSE_WAIT: {n} sockets, oldest ~{} (estimate)",
                human(o)
            ),
            None => format!("{who} leaks CLOSE_WAIT: {n} sockets"),
        };
        let mut evidence = vec![format!(
            "{n} sockets in CLOSE_WAIT; peers: {}",
            top_peers(socks.iter().copied(), false)
        )];
        if let Some(o) = oldest {
            evidence.push(format!(
                "oldest ~{} (estimate: time since the last ACK from the peer, tcpi_last_ack_recv; \
                 the kernel keeps no timestamp for entering CLOSE_WAIT)",
                human(o)
            ));
        }
        if keepalive > 0 {
            evidence.push(format!(
                "{keepalive} have a keepalive timer: keepalive answers reset that clock, so their age is underestimated"
            ));
        }
        if q0 > 0 {
            evidence.push(format!("{q0} with Recv-Q 0: the program read EOF (recv() returned 0) and never called close()"));
        }
        if q1 > 0 {
            evidence.push(format!("{q1} with Recv-Q 1: the program has not read since the FIN arrived (stuck or not polling)"));
        }
        if qn > 0 {
            evidence.push(format!(
                "{qn} with unread data ({unread} bytes in total): close() will send RST, not FIN (RFC 2525 §2.17, __tcp_close())"
            ));
        }
        if let (Some(p), Some(fds)) = (
            pid,
            Some(
                socks
                    .iter()
                    .filter_map(|s| s.owner.as_ref().map(|o| o.fd))
                    .collect::<Vec<_>>(),
            ),
        ) {
            let mut fds = fds;
            fds.sort_unstable();
            let shown: Vec<String> = fds.iter().take(10).map(|f| f.to_string()).collect();
            evidence.push(format!(
                "held by pid {p} on fds {}{}",
                shown.join(", "),
                if fds.len() > 10 { ", ..." } else { "" }
            ));
        }
        let critical =
            n >= t.close_wait_count * 10 || oldest.is_some_and(|o| o >= t.close_wait_age * 10);
        out.push(Finding {
            id: "close_wait_leak",
            severity: if critical { Severity::Critical } else { Severity::Warning },
            title,
            evidence,
            meaning: state_meaning(State::CloseWait),
            action: format!(
                "Fix {who}: close the socket when recv() returns 0 (EOF) and on every error path \
                 (connection pools: evict connections the server closed). Relief until then: restart \
                 the program, or kill the sockets with `ss -K state close-wait` (CAP_NET_ADMIN; the \
                 peer gets a RST). See `tcpstate explain CLOSE_WAIT`."
            ),
            pid,
            process,
            count: n,
            oldest,
            netns: ns_name(snap, ns),
        });
    }
}

fn time_wait_findings(snap: &Snapshot, t: &Thresholds, out: &mut Vec<Finding>) {
    for (ns_i, ns) in snap.namespaces.iter().enumerate() {
        let k = ns.kernel.clone().unwrap_or_default();
        let tw: Vec<&Socket> = snap
            .sockets
            .iter()
            .filter(|s| s.netns == ns_i && s.state == State::TimeWait)
            .collect();
        let mut groups: BTreeMap<(IpAddr, SocketAddr), Vec<&Socket>> = BTreeMap::new();
        for s in &tw {
            groups.entry((s.local.ip(), s.peer)).or_default().push(s);
        }
        let range = k.ip_local_port_range;
        let ports = k.ephemeral_ports();
        for ((lip, peer), socks) in &groups {
            let Some(ports) = ports else { break };
            // Only an active closer with ephemeral local ports uses up the range toward
            // this destination (the 4-tuple must stay unique for 2·MSL).
            let ephemeral = socks
                .iter()
                .filter(|s| range.is_some_and(|(lo, hi)| (lo..=hi).contains(&s.local.port())))
                .count();
            let ratio = ephemeral as f64 / ports as f64;
            if ratio < t.time_wait_port_ratio {
                continue;
            }
            let critical = ratio >= (t.time_wait_port_ratio * 2.5).min(0.9);
            out.push(Finding {
                id: "time_wait_pressure",
                severity: if critical { Severity::Critical } else { Severity::Warning },
                title: format!(
                    "{} TIME_WAIT from {lip} to {}: {:.0}% of the {ports} ephemeral ports",
                    socks.len(),
                    Addr(peer),
                    ratio * 100.0
                ),
                evidence: vec![
                    format!("{} TIME_WAIT sockets from {lip} to {} ({ephemeral} on ephemeral local ports)", socks.len(), Addr(peer)),
                    format!("ip_local_port_range {}-{} = {ports} ports per destination", range.map_or(0, |r| r.0), range.map_or(0, |r| r.1)),
                    format!("tcp_tw_reuse = {}", k.tcp_tw_reuse.map_or("unknown".into(), |v| v.to_string())),
                ],
                meaning: format!(
                    "{} Toward one destination the 4-tuple must stay unique, so when its \
                     ephemeral ports are all held, connect() fails with EADDRNOTAVAIL.",
                    state_meaning(State::TimeWait)
                ),
                action: "What helps: reuse connections (keep-alive, pools) instead of one per request; \
                    let the peer close first where the protocol allows; spread over more destination \
                    addresses/ports or source IPs; net.ipv4.tcp_tw_reuse=1 lets connect() reuse a \
                    TIME_WAIT port when timestamps make it safe. What does not: tcp_fin_timeout (it \
                    governs orphaned FIN_WAIT_2, not TIME_WAIT); tcp_tw_recycle (removed in Linux 4.12); \
                    SO_LINGER {1,0} (trades TIME_WAIT for RSTs and lost data). See `tcpstate explain TIME_WAIT`."
                    .into(),
                pid: None,
                process: None,
                count: socks.len(),
                oldest: socks.iter().filter_map(|s| s.state_time().age).max(),
                netns: ns.name.clone(),
            });
        }
        // All timewait minisockets (TIME_WAIT and FIN_WAIT_2 orphans) count against
        // tcp_max_tw_buckets (inet_twsk_alloc()).
        let minis = snap
            .sockets
            .iter()
            .filter(|s| s.netns == ns_i && s.kind == SockKind::TimeWaitMini)
            .count();
        if let Some(max) = k.tcp_max_tw_buckets.filter(|m| *m > 0) {
            let ratio = minis as f64 / max as f64;
            if ratio >= t.time_wait_bucket_ratio {
                out.push(Finding {
                    id: "time_wait_buckets",
                    severity: if ratio >= 0.9 { Severity::Critical } else { Severity::Warning },
                    title: format!("{minis} timewait sockets: {:.0}% of tcp_max_tw_buckets {max}", ratio * 100.0),
                    evidence: vec![format!("{} TIME_WAIT + {} orphaned FIN_WAIT_2 minisockets; tcp_max_tw_buckets = {max}", tw.len(), minis - tw.len().min(minis))],
                    meaning: format!(
                        "TIME_WAIT: {} Past tcp_max_tw_buckets the kernel closes sockets without \
                         TIME_WAIT (TCPTimeWaitOverflow), losing that protection.",
                        tcpstate_fsm::explain(State::TimeWait).meaning
                    ),
                    action: "Reduce connection churn (reuse connections); do not lower tcp_max_tw_buckets."
                        .into(),
                    pid: None,
                    process: None,
                    count: minis,
                    oldest: None,
                    netns: ns.name.clone(),
                });
            }
        }
        if let Some(o) = k.counters.get("TCPTimeWaitOverflow").filter(|v| **v > 0) {
            out.push(Finding {
                id: "time_wait_overflow",
                severity: Severity::Warning,
                title: format!("TCPTimeWaitOverflow = {o}: sockets closed without TIME_WAIT"),
                evidence: vec![format!(
                    "TcpExt TCPTimeWaitOverflow = {o} (since boot or namespace creation)"
                )],
                meaning: format!(
                    "TIME_WAIT: {} tcp_max_tw_buckets was reached at some point: those \
                     connections skipped it, so a delayed segment of theirs could be taken for a \
                     new connection's.",
                    tcpstate_fsm::explain(State::TimeWait).meaning
                ),
                action: "Reduce connection churn; raise tcp_max_tw_buckets if memory allows."
                    .into(),
                pid: None,
                process: None,
                count: 0,
                oldest: None,
                netns: ns.name.clone(),
            });
        }
    }
}

type PeerKey = (usize, String);

/// The parts of a warning about a group of sockets toward a peer (or on a listener) that
/// have no single process: completed by the rule with title, evidence, meaning, action.
fn peer_group(id: &'static str, count: usize, netns: String) -> Finding {
    Finding {
        id,
        severity: Severity::Warning,
        title: String::new(),
        evidence: Vec::new(),
        meaning: String::new(),
        action: String::new(),
        pid: None,
        process: None,
        count,
        oldest: None,
        netns,
    }
}

fn group_by(
    snap: &Snapshot,
    pred: impl Fn(&Socket) -> bool,
    key: impl Fn(&Socket) -> String,
) -> BTreeMap<PeerKey, Vec<&Socket>> {
    let mut g: BTreeMap<PeerKey, Vec<&Socket>> = BTreeMap::new();
    for s in snap.sockets.iter().filter(|s| pred(s)) {
        g.entry((s.netns, key(s))).or_default().push(s);
    }
    g
}

fn peer_findings(snap: &Snapshot, t: &Thresholds, out: &mut Vec<Finding>) {
    for ((ns, peer), socks) in group_by(
        snap,
        |s| s.is_orphan_fin_wait_2(),
        |s| Addr(&s.peer).to_string(),
    ) {
        if socks.len() < t.orphan_fin_wait_2_count {
            continue;
        }
        let fin_timeout = snap
            .namespaces
            .get(ns)
            .and_then(|n| n.kernel.as_ref())
            .and_then(|k| k.tcp_fin_timeout_s);
        out.push(Finding {
            title: format!("{} orphaned FIN_WAIT_2 toward {peer}: its program probably leaks CLOSE_WAIT", socks.len()),
            evidence: vec![
                format!("{} sockets closed by this host, FIN acknowledged by {peer}, no FIN back", socks.len()),
                format!("held by the kernel as timewait minisockets (no process), dropped after tcp_fin_timeout = {}", fin_timeout.map_or("unknown".into(), |v| format!("{v} s"))),
            ],
            meaning: state_meaning(State::FinWait2),
            action: format!("Run `tcpstate doctor` on the host of {peer} and look for a CLOSE_WAIT leak on that port."),
            ..peer_group("orphan_fin_wait_2", socks.len(), ns_name(snap, ns))
        });
    }
    for ((ns, peer), socks) in group_by(
        snap,
        |s| s.state == State::LastAck,
        |s| s.peer.ip().to_string(),
    ) {
        if socks.len() < t.last_ack_count {
            continue;
        }
        let retrans: u32 = socks
            .iter()
            .filter_map(|s| s.timer.map(|x| u32::from(x.retransmits)))
            .max()
            .unwrap_or(0);
        out.push(Finding {
            title: format!("{} LAST_ACK toward {peer}: the peer is gone", socks.len()),
            evidence: vec![format!("{} sockets in LAST_ACK to {peer}; up to {retrans} FIN retransmissions so far", socks.len())],
            meaning: state_meaning(State::LastAck),
            action: format!("Check reachability of {peer} (firewall state timeouts, crashed clients). The sockets clear themselves when retries run out."),
            ..peer_group("last_ack_pileup", socks.len(), ns_name(snap, ns))
        });
    }
    for ((ns, peer), socks) in group_by(
        snap,
        |s| s.state == State::SynSent,
        |s| Addr(&s.peer).to_string(),
    ) {
        if socks.len() < t.syn_sent_count {
            continue;
        }
        out.push(Finding {
            title: format!("{} SYN_SENT toward {peer}: unreachable or filtered", socks.len()),
            evidence: vec![format!("{} connection attempts to {peer} waiting for SYN-ACK; top owner: {}", socks.len(),
                socks.iter().find_map(|s| s.owner.as_ref()).map_or("unknown".into(), |o| format!("pid {} ({})", o.pid, o.process)))],
            meaning: state_meaning(State::SynSent),
            action: format!("Test reachability of {peer}; check firewalls and the peer's listen backlog; set connect timeouts in the client."),
            ..peer_group("syn_sent_unanswered", socks.len(), ns_name(snap, ns))
        });
    }
    // SYN_RECV per listener (local address), and full accept queues.
    for ((ns, local), socks) in group_by(
        snap,
        |s| s.state == State::SynReceived,
        |s| Addr(&s.local).to_string(),
    ) {
        if socks.len() < t.syn_recv_count {
            continue;
        }
        out.push(Finding {
            title: format!("{} SYN_RECV on {local}: handshakes not completing", socks.len()),
            evidence: vec![format!("{} half-open connections on {local} from {}", socks.len(), top_peers(socks.iter().copied(), true))],
            meaning: state_meaning(State::SynReceived),
            action: "Check net.ipv4.tcp_syncookies=1 and tcp_max_syn_backlog; look at the sources above.".into(),
            ..peer_group("syn_recv_backlog", socks.len(), ns_name(snap, ns))
        });
    }
    for s in snap
        .sockets
        .iter()
        .filter(|s| s.state == State::Listen && s.send_q > 0 && s.recv_q >= s.send_q)
    {
        out.push(Finding {
            id: "accept_queue_full",
            severity: Severity::Critical,
            title: format!("listener {} has a full accept queue ({} of {})", Addr(&s.local), s.recv_q, s.send_q),
            evidence: vec![format!("Recv-Q {} (connections waiting for accept()) >= backlog {}{}", s.recv_q, s.send_q,
                s.owner.as_ref().map_or(String::new(), |o| format!("; listener held by pid {} ({})", o.pid, o.process)))],
            meaning: format!(
                "{} Here handshakes complete but the program does not accept() them fast enough; \
                 new SYNs or final ACKs are dropped (ListenOverflows/ListenDrops).",
                state_meaning(State::Listen)
            ),
            action: "Make the program accept faster (more workers, non-blocking accept loop) or raise its listen() backlog and net.core.somaxconn.".into(),
            pid: s.owner.as_ref().map(|o| o.pid),
            process: s.owner.as_ref().map(|o| o.process.clone()),
            count: s.recv_q as usize,
            oldest: None,
            netns: ns_name(snap, s.netns),
        });
    }
}

fn dead_findings(dead: &[DeadSocket], out: &mut Vec<Finding>) {
    let mut by_pid: BTreeMap<u32, Vec<&DeadSocket>> = BTreeMap::new();
    for d in dead {
        by_pid.entry(d.owner.pid).or_default().push(d);
    }
    for (pid, ds) in by_pid {
        let name = ds[0].owner.process.clone();
        let fds: Vec<String> = ds.iter().take(10).map(|d| d.owner.fd.to_string()).collect();
        let last = ds.iter().filter_map(|d| d.tcp_info.last_ack_recv_ms).max();
        let mut evidence = vec![format!(
            "{} TCP sockets in CLOSED state, in no kernel table, held on fds {}{}",
            ds.len(),
            fds.join(", "),
            if ds.len() > 10 { ", ..." } else { "" }
        )];
        if let Some(ms) = last {
            evidence.push(format!(
                "the oldest last heard from its peer ~{} ago (estimate, tcpi_last_ack_recv)",
                human(Duration::from_millis(ms.into()))
            ));
        }
        out.push(Finding {
            id: "dead_socket_held",
            severity: if ds.len() >= 10 { Severity::Critical } else { Severity::Warning },
            title: format!("pid {pid} ({name}) holds {} dead TCP sockets", ds.len()),
            evidence,
            meaning: format!(
                "CLOSED: {} These connections got there (reset by the peer, or closed through \
                 LAST_ACK) but the program never closed the fd: they have left every table, so ss \
                 and netstat do not show them; reads return ECONNRESET or EOF. Often a CLOSE_WAIT \
                 leak whose peer later reset.",
                tcpstate_fsm::explain(State::Closed).meaning
            ),
            action: format!("Fix pid {pid} ({name}): close sockets on errors and EOF. Until then the fds and their memory are leaked; restarting the program frees them."),
            pid: Some(pid),
            process: Some(name),
            count: ds.len(),
            oldest: None,
            netns: String::new(),
        });
    }
}

fn counter_findings(snap: &Snapshot, growth: &CounterGrowth, out: &mut Vec<Finding>) {
    let explain = |name: &str| -> &'static str {
        match name {
            "TCPAbortOnData" => {
                "sockets closed with unread data or SO_LINGER {1,0}: RST instead of FIN"
            }
            "TCPAbortOnClose" => {
                "close() with unread received data sent RST (data lost for the peer)"
            }
            "TCPAbortOnLinger" => "orphans in FIN_WAIT_2 reset at once (TCP_LINGER2 < 0)",
            "TCPAbortOnTimeout" => {
                "connections killed after retransmissions or keepalive probes ran out"
            }
            "TCPAbortOnMemory" => "orphans reset for lack of memory or too many orphans",
            "TCPTimeWaitOverflow" => {
                "sockets closed without TIME_WAIT (tcp_max_tw_buckets reached)"
            }
            "ListenOverflows" | "ListenDrops" => "connections dropped at a full accept queue",
            _ => "",
        }
    };
    for (name, after) in &growth.after {
        let before = growth.before.get(name).copied().unwrap_or(*after);
        let grew = after.saturating_sub(before);
        let what = explain(name);
        if grew == 0 || what.is_empty() {
            continue;
        }
        out.push(Finding {
            id: "abort_counter_grew",
            severity: Severity::Warning,
            title: format!("{name} grew by {grew} in {}", human(growth.interval)),
            evidence: vec![format!("TcpExt {name}: {before} -> {after} over {}", human(growth.interval))],
            meaning: what.to_string(),
            action: "Find the sockets involved with `tcpstate ls` (and the watch command) while it happens.".into(),
            pid: None,
            process: None,
            count: grew as usize,
            oldest: None,
            netns: ns_name(snap, 0),
        });
    }
}

/// Applies every rule. `scan` adds dead sockets; `growth` adds counter findings.
pub fn diagnose(
    snap: &Snapshot,
    scan: Option<&OwnerScan>,
    growth: Option<&CounterGrowth>,
    t: &Thresholds,
) -> Vec<Finding> {
    let mut out = Vec::new();
    close_wait_findings(snap, t, &mut out);
    time_wait_findings(snap, t, &mut out);
    peer_findings(snap, t, &mut out);
    if let Some(scan) = scan {
        dead_findings(&scan.dead, &mut out);
    }
    if let Some(g) = growth {
        counter_findings(snap, g, &mut out);
    }
    out.sort_by(|a, b| b.severity.cmp(&a.severity).then(b.count.cmp(&a.count)));
    out
}

/// Kernel context lines for people.
pub fn context_lines(k: &KernelContext) -> Vec<String> {
    context_lines_in(k, None)
}

/// Kernel context lines for people, saying what the counters count from: TcpExt counters
/// are per network namespace, so outside the initial one (`initial` = `Some(false)`) they
/// count since the namespace was created, not since boot; `None` when unknown.
pub fn context_lines_in(k: &KernelContext, initial: Option<bool>) -> Vec<String> {
    let mut v = Vec::new();
    if let Some((lo, hi)) = k.ip_local_port_range {
        v.push(format!(
            "ip_local_port_range {lo}-{hi} ({} ports)",
            k.ephemeral_ports().unwrap_or(0)
        ));
    }
    let opt = |o: Option<u64>| o.map_or("?".to_string(), |v| v.to_string());
    v.push(format!(
        "tcp_max_tw_buckets {}  tcp_tw_reuse {}  tcp_fin_timeout {} s  tcp_rfc1337 {}  tcp_max_orphans {}",
        opt(k.tcp_max_tw_buckets),
        opt(k.tcp_tw_reuse),
        opt(k.tcp_fin_timeout_s),
        opt(k.tcp_rfc1337),
        opt(k.tcp_max_orphans)
    ));
    if let Some(s) = k.sockstat {
        v.push(format!(
            "sockstat: inuse {} orphan {} tw {} alloc {} (tw includes orphaned FIN_WAIT_2; alloc and orphan are host-wide)",
            s.inuse, s.orphan, s.tw, s.alloc
        ));
    }
    if !k.counters.is_empty() {
        let c: Vec<String> = k.counters.iter().map(|(n, v)| format!("{n} {v}")).collect();
        let since = match initial {
            Some(true) => "since boot",
            Some(false) => "since the namespace was created",
            None => "since boot, or since the namespace was created if it is not the initial one",
        };
        v.push(format!("counters {since}: {}", c.join(", ")));
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Namespace, Owner, Source, TcpInfo, Timer};

    fn sock(state: State, local: &str, peer: &str) -> Socket {
        crate::model::test_socket(state, local, peer)
    }

    fn snap(sockets: Vec<Socket>, kernel: KernelContext) -> Snapshot {
        Snapshot {
            namespaces: vec![Namespace {
                name: "test".into(),
                inode: None,
                source: Source::SockDiag,
                fallback_reason: None,
                kernel: Some(kernel),
            }],
            sockets,
            warnings: vec![],
        }
    }

    #[test]
    fn close_wait_leak_names_process_age_and_recv_q() {
        let mut socks = Vec::new();
        for i in 0..6u32 {
            let mut s = sock(
                State::CloseWait,
                "10.0.0.1:8080",
                &format!("10.0.0.2:{}", 50000 + i),
            );
            s.recv_q = if i == 0 {
                0
            } else if i < 3 {
                1
            } else {
                13
            };
            s.inode = 100 + u64::from(i);
            s.tcp_info = Some(TcpInfo {
                last_ack_recv_ms: Some(60_000 * (i + 1) * 7),
                ..Default::default()
            });
            s.owner = Some(Owner {
                pid: 812,
                process: "java".into(),
                fd: 10 + i,
                cmdline: String::new(),
            });
            socks.push(s);
        }
        let f = diagnose(
            &snap(socks, KernelContext::default()),
            None,
            None,
            &Thresholds::default(),
        );
        assert_eq!(f.len(), 1);
        let f = &f[0];
        assert_eq!(f.id, "close_wait_leak");
        assert_eq!(
            f.title,
            "pid 812 (java) leaks CLOSE_WAIT: 6 sockets, oldest ~42 min (estimate)"
        );
        assert_eq!(f.pid, Some(812));
        assert_eq!(f.severity, Severity::Critical);
        let ev = f.evidence.join("\n");
        assert!(ev.contains("1 with Recv-Q 0"), "{ev}");
        assert!(ev.contains("2 with Recv-Q 1"), "{ev}");
        assert!(ev.contains("3 with unread data (36 bytes"), "{ev}");
        assert!(ev.contains("estimate"));
        assert!(ev.contains("fds 10, 11, 12, 13, 14, 15"));
        // The meaning is the explain text, not a second copy of it.
        let e = tcpstate_fsm::explain(State::CloseWait);
        assert!(f.meaning.contains(e.meaning), "{}", f.meaning);
        assert!(f.meaning.contains(e.linux_duration), "{}", f.meaning);
    }

    #[test]
    fn counters_say_what_they_count_from() {
        let k = KernelContext {
            counters: [("TW".to_string(), 3)].into(),
            ..Default::default()
        };
        let last = |i| context_lines_in(&k, i).pop().unwrap();
        assert!(last(Some(true)).starts_with("counters since boot: TW 3"));
        assert!(last(Some(false)).starts_with("counters since the namespace was created: TW 3"));
        assert!(last(None).contains("if it is not the initial one"));
    }

    #[test]
    fn few_young_close_waits_are_not_a_leak() {
        let mut s = sock(State::CloseWait, "10.0.0.1:8080", "10.0.0.2:5000");
        s.tcp_info = Some(TcpInfo {
            last_ack_recv_ms: Some(2000),
            ..Default::default()
        });
        assert!(diagnose(
            &snap(vec![s.clone()], KernelContext::default()),
            None,
            None,
            &Thresholds::default()
        )
        .is_empty());
        // ...but one old one is.
        s.tcp_info = Some(TcpInfo {
            last_ack_recv_ms: Some(120_000),
            ..Default::default()
        });
        let f = diagnose(
            &snap(vec![s], KernelContext::default()),
            None,
            None,
            &Thresholds::default(),
        );
        assert_eq!(f[0].id, "close_wait_leak");
        assert!(f[0].title.contains("unknown process (local 10.0.0.1:8080)"));
    }

    #[test]
    fn time_wait_pressure_against_port_range() {
        let k = KernelContext {
            ip_local_port_range: Some((60000, 60099)),
            tcp_max_tw_buckets: Some(1000),
            ..Default::default()
        };
        let socks: Vec<Socket> = (0..30)
            .map(|i| {
                let mut s = sock(
                    State::TimeWait,
                    &format!("10.0.0.1:{}", 60000 + i),
                    "10.0.0.9:5432",
                );
                s.kind = SockKind::TimeWaitMini;
                s.inode = 0;
                s.timer = Some(Timer {
                    kind: TimerKind::TimeWait,
                    expires: Duration::from_secs(50),
                    retransmits: 0,
                });
                s
            })
            .collect();
        let f = diagnose(&snap(socks, k), None, None, &Thresholds::default());
        assert_eq!(f[0].id, "time_wait_pressure");
        assert!(
            f[0].title.contains("30% of the 100 ephemeral ports"),
            "{}",
            f[0].title
        );
        assert_eq!(f[0].oldest, Some(Duration::from_secs(10)));
        assert!(f[0].action.contains("tcp_fin_timeout"));
        assert!(f[0].action.contains("tcp_tw_recycle"));
        assert!(f[0]
            .meaning
            .contains(tcpstate_fsm::explain(State::TimeWait).linux_duration));
    }

    #[test]
    fn orphan_fin_wait_2_points_at_the_peer() {
        let socks: Vec<Socket> = (0..5)
            .map(|i| {
                let mut s = sock(
                    State::FinWait2,
                    &format!("10.0.0.1:{}", 40000 + i),
                    "10.0.0.7:8080",
                );
                s.kind = SockKind::TimeWaitMini;
                s.inode = 0;
                s
            })
            .collect();
        let f = diagnose(
            &snap(socks, KernelContext::default()),
            None,
            None,
            &Thresholds::default(),
        );
        assert_eq!(f[0].id, "orphan_fin_wait_2");
        assert!(f[0].title.contains("10.0.0.7:8080"));
    }

    #[test]
    fn counter_growth_and_full_accept_queue() {
        let mut l = sock(State::Listen, "0.0.0.0:80", "0.0.0.0:0");
        l.recv_q = 129;
        l.send_q = 128;
        let g = CounterGrowth {
            before: [("TCPAbortOnClose".to_string(), 5)].into(),
            after: [("TCPAbortOnClose".to_string(), 9)].into(),
            interval: Duration::from_secs(5),
        };
        let f = diagnose(
            &snap(vec![l], KernelContext::default()),
            None,
            Some(&g),
            &Thresholds::default(),
        );
        assert_eq!(f[0].id, "accept_queue_full");
        assert_eq!(f[1].id, "abort_counter_grew");
        assert_eq!(f[1].count, 4);
    }
}
