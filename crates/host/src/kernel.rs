//! Kernel context of a network namespace: the sysctls that shape TIME_WAIT and orphan
//! handling, `/proc/net/sockstat` and the TcpExt counters of `/proc/net/netstat`.
//!
//! Parsing is pure and tolerant (a missing sysctl is `None`, a malformed counter line is
//! skipped); reading is Linux-only and per thread (`/proc/thread-self/net/...`), so it
//! reports the namespace the calling thread is in.

use serde::Serialize;
use std::collections::BTreeMap;

/// TcpExt counters tcpstate reports (net/ipv4/proc.c `snmp4_net_list`).
pub const COUNTERS: &[&str] = &[
    "TW",
    "TWRecycled",
    "TWKilled",
    "TCPTimeWaitOverflow",
    "TCPAbortOnData",
    "TCPAbortOnClose",
    "TCPAbortOnMemory",
    "TCPAbortOnTimeout",
    "TCPAbortOnLinger",
    "TCPAbortFailed",
    "ListenOverflows",
    "ListenDrops",
    "TCPOrphanQueued",
];

/// `/proc/net/sockstat` TCP line: `TCP: inuse N orphan N tw N alloc N mem N`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct SockStat {
    /// Hashed TCP sockets in this namespace.
    pub inuse: u64,
    /// Orphaned sockets (no fd), whole host.
    pub orphan: u64,
    /// Timewait minisockets in this namespace (true TIME_WAIT and FIN_WAIT_2 orphans).
    pub tw: u64,
    /// Full TCP sockets allocated, whole host (every namespace), hashed or not.
    pub alloc: u64,
    /// Pages of TCP memory, whole host.
    pub mem: u64,
}

/// Sysctls and counters of one network namespace.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct KernelContext {
    /// `net.ipv4.ip_local_port_range`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ip_local_port_range: Option<(u16, u16)>,
    /// `net.ipv4.tcp_max_tw_buckets`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tcp_max_tw_buckets: Option<u64>,
    /// `net.ipv4.tcp_tw_reuse` (0 off, 1 on, 2 loopback only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tcp_tw_reuse: Option<u64>,
    /// `net.ipv4.tcp_fin_timeout`, seconds: how long an orphan stays in FIN_WAIT_2.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tcp_fin_timeout_s: Option<u64>,
    /// `net.ipv4.tcp_rfc1337`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tcp_rfc1337: Option<u64>,
    /// `net.ipv4.tcp_max_orphans`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tcp_max_orphans: Option<u64>,
    /// `/proc/net/sockstat` TCP line.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sockstat: Option<SockStat>,
    /// TcpExt counters (since boot, or since the namespace was created), by kernel name.
    pub counters: BTreeMap<String, u64>,
}

impl KernelContext {
    /// Size of the ephemeral port range.
    pub fn ephemeral_ports(&self) -> Option<u64> {
        self.ip_local_port_range
            .map(|(lo, hi)| u64::from(hi.saturating_sub(lo)) + 1)
    }
}

/// Parses a sysctl value that is one unsigned number.
pub fn parse_number(text: &str) -> Option<u64> {
    text.trim().parse().ok()
}

/// Parses `ip_local_port_range` ("32768\t60999").
pub fn parse_port_range(text: &str) -> Option<(u16, u16)> {
    let mut it = text.split_whitespace();
    let lo = it.next()?.parse().ok()?;
    let hi = it.next()?.parse().ok()?;
    Some((lo, hi))
}

/// Parses the `TCP:` line of /proc/net/sockstat.
pub fn parse_sockstat(text: &str) -> Option<SockStat> {
    let line = text.lines().find(|l| l.starts_with("TCP:"))?;
    let f: Vec<&str> = line.split_whitespace().collect();
    let get = |k: &str| -> Option<u64> {
        let i = f.iter().position(|x| *x == k)?;
        f.get(i + 1)?.parse().ok()
    };
    Some(SockStat {
        inuse: get("inuse")?,
        orphan: get("orphan").unwrap_or(0),
        tw: get("tw").unwrap_or(0),
        alloc: get("alloc").unwrap_or(0),
        mem: get("mem").unwrap_or(0),
    })
}

/// Parses /proc/net/netstat (pairs of `Prefix: names` / `Prefix: values` lines) into the
/// TcpExt counters listed in [`COUNTERS`]. Malformed pairs are skipped.
pub fn parse_netstat(text: &str) -> BTreeMap<String, u64> {
    let mut out = BTreeMap::new();
    let lines: Vec<&str> = text.lines().collect();
    for pair in lines.chunks(2) {
        let [names, values] = pair else { continue };
        let (Some(("TcpExt", names)), Some(("TcpExt", values))) =
            (names.split_once(": "), values.split_once(": "))
        else {
            continue;
        };
        for (n, v) in names.split_whitespace().zip(values.split_whitespace()) {
            if COUNTERS.contains(&n) {
                if let Ok(v) = v.parse() {
                    out.insert(n.to_string(), v);
                }
            }
        }
    }
    out
}

/// Reads the context of the namespace the calling thread is in.
#[cfg(target_os = "linux")]
pub fn read() -> KernelContext {
    let sys = |name: &str| std::fs::read_to_string(format!("/proc/sys/net/ipv4/{name}")).ok();
    let net = |name: &str| std::fs::read_to_string(format!("/proc/thread-self/net/{name}")).ok();
    KernelContext {
        ip_local_port_range: sys("ip_local_port_range").and_then(|t| parse_port_range(&t)),
        tcp_max_tw_buckets: sys("tcp_max_tw_buckets").and_then(|t| parse_number(&t)),
        tcp_tw_reuse: sys("tcp_tw_reuse").and_then(|t| parse_number(&t)),
        tcp_fin_timeout_s: sys("tcp_fin_timeout").and_then(|t| parse_number(&t)),
        tcp_rfc1337: sys("tcp_rfc1337").and_then(|t| parse_number(&t)),
        tcp_max_orphans: sys("tcp_max_orphans").and_then(|t| parse_number(&t)),
        sockstat: net("sockstat").and_then(|t| parse_sockstat(&t)),
        counters: net("netstat")
            .map(|t| parse_netstat(&t))
            .unwrap_or_default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_netstat_pairs() {
        let t = "TcpExt: SyncookiesSent TW TWRecycled TCPAbortOnClose\nTcpExt: 0 17 3 42\nIpExt: InNoRoutes\nIpExt: 0\n";
        let c = parse_netstat(t);
        assert_eq!(c.get("TW"), Some(&17));
        assert_eq!(c.get("TCPAbortOnClose"), Some(&42));
        assert_eq!(c.get("SyncookiesSent"), None);
    }

    #[test]
    fn parses_sockstat_and_sysctls() {
        let s =
            parse_sockstat("sockets: used 5\nTCP: inuse 3 orphan 1 tw 20 alloc 9 mem 2\n").unwrap();
        assert_eq!((s.inuse, s.orphan, s.tw, s.alloc, s.mem), (3, 1, 20, 9, 2));
        assert_eq!(parse_port_range("32768\t60999\n"), Some((32768, 60999)));
        let k = KernelContext {
            ip_local_port_range: Some((32768, 60999)),
            ..Default::default()
        };
        assert_eq!(k.ephemeral_ports(), Some(28232));
        assert_eq!(parse_number(" 60\n"), Some(60));
        assert_eq!(parse_number("x"), None);
    }

    proptest! {
        #[test]
        fn garbage_never_panics(s in "\\PC{0,300}") {
            let _ = parse_netstat(&s);
            let _ = parse_sockstat(&s);
            let _ = parse_port_range(&s);
        }
    }
}
