//! `tcpstate ls [FILTER]`: every TCP socket with state, queues, time in state and owner —
//! `ss -tanp`, with ages, the timewait substate and owners found by design.

use crate::output::{use_color, ColorChoice};
use anyhow::Context;
use serde::Serialize;
use std::collections::HashSet;
use std::io::{BufWriter, Write};
use std::process::ExitCode;
use std::time::Duration;
use tcpstate_host::filter::Filter;
use tcpstate_host::{Addr, Snapshot, SockKind, Socket, StateTime, TimerKind};

/// Which network namespaces to look at (shared by `ls` and `doctor`).
#[derive(clap::Args, Debug, Clone, Default)]
pub struct NetnsArgs {
    /// Network namespace NAME (/run/netns/NAME, as made by `ip netns add`).
    #[arg(long, value_name = "NAME", conflicts_with_all = ["netns_pid", "all_netns"])]
    pub netns: Option<String>,
    /// The network namespace process PID is in.
    #[arg(long, value_name = "PID", conflicts_with = "all_netns")]
    pub netns_pid: Option<u32>,
    /// Every distinct network namespace on the host (needs root); a NETNS column is added.
    #[arg(long)]
    pub all_netns: bool,
    /// Read /proc/net/tcp{,6} instead of NETLINK_SOCK_DIAG (what the fallback does).
    #[arg(long)]
    pub proc: bool,
}

#[cfg(target_os = "linux")]
impl NetnsArgs {
    pub fn selector(&self) -> tcpstate_host::netns::NetnsSelector {
        use tcpstate_host::netns::NetnsSelector;
        if self.all_netns {
            NetnsSelector::All
        } else if let Some(n) = &self.netns {
            NetnsSelector::Named(n.clone())
        } else if let Some(p) = self.netns_pid {
            NetnsSelector::Pid(p)
        } else {
            NetnsSelector::Current
        }
    }
}

/// Sort order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum SortKey {
    /// By state (diagram order), then local address.
    #[default]
    State,
    /// By local address.
    Local,
    /// By peer address.
    Peer,
    /// Largest Recv-Q first.
    RecvQ,
    /// Largest Send-Q first.
    SendQ,
    /// Oldest first (time in state, where known).
    Age,
    /// By owning pid.
    Pid,
}

/// List TCP sockets (like `ss -tanp`, with ages and the timewait substate).
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Filter words: states in any spelling (close-wait, TIME_WAIT, FIN-WAIT-2, 8) or
    /// groups (all, connected, synchronized, bucket, big); `port N`, `sport N`, `dport N`,
    /// `src IP[/LEN]`, `dst IP[/LEN]`, `addr IP[/LEN]`, `pid N`, `process NAME`.
    /// Kinds combine with AND, repeats of one kind with OR.
    #[arg(value_name = "FILTER")]
    pub filter: Vec<String>,
    /// One JSON document (schema in the README).
    #[arg(long)]
    pub json: bool,
    /// Do not look up owning processes (no /proc/*/fd scan).
    #[arg(long)]
    pub no_process: bool,
    /// Sort order.
    #[arg(long, value_enum, default_value_t)]
    pub sort: SortKey,
    /// Numeric addresses and ports (always the case; accepted for ss/netstat habits).
    #[arg(short = 'n', long)]
    pub numeric: bool,
    /// Show the command line of owners instead of the process name.
    #[arg(long)]
    pub cmdline: bool,
    /// Print at most N rows.
    #[arg(long, value_name = "N")]
    pub limit: Option<usize>,
    #[command(flatten)]
    pub ns: NetnsArgs,
    /// Colour: auto, always, never (NO_COLOR is honoured).
    #[arg(long, value_enum, default_value_t)]
    pub color: ColorChoice,
}

/// Human form of a duration for the TIME column: `850ms`, `52s`, `41m12s`, `3h05m`.
pub fn short(d: Duration) -> String {
    let ms = d.as_millis();
    let s = d.as_secs();
    if ms < 1000 {
        format!("{ms}ms")
    } else if s < 60 {
        format!("{s}s")
    } else if s < 3600 {
        format!("{}m{:02}s", s / 60, s % 60)
    } else {
        format!("{}h{:02}m", s / 3600, (s % 3600) / 60)
    }
}

/// The TIME column: time left in TIME_WAIT and for orphaned FIN_WAIT_2, the estimated
/// CLOSE_WAIT age (marked `~`), else the pending timer.
pub fn time_text(s: &Socket) -> String {
    let t = s.state_time();
    if let Some(left) = t.left {
        let prefix = if s.is_orphan_fin_wait_2() {
            "orphan, "
        } else {
            ""
        };
        return format!("{prefix}{} left", short(left));
    }
    if let (Some(age), true) = (t.age, t.estimated) {
        return format!("~{}", short(age));
    }
    match s.timer {
        Some(tm) if tm.kind == TimerKind::Retransmit && tm.retransmits > 0 => {
            format!("rto {} #{}", short(tm.expires), tm.retransmits)
        }
        Some(tm) if tm.kind == TimerKind::Retransmit => format!("rto {}", short(tm.expires)),
        Some(tm) => format!("{} {}", tm.kind.name(), short(tm.expires)),
        None => String::new(),
    }
}

fn owner_text(s: &Socket, cmdline: bool) -> String {
    match (&s.owner, s.kind) {
        (Some(o), _) => {
            let name = if cmdline && !o.cmdline.is_empty() {
                &o.cmdline
            } else {
                &o.process
            };
            format!("{}/{} fd={}", o.pid, name, o.fd)
        }
        (None, SockKind::TimeWaitMini) => "(kernel: timewait)".into(),
        (None, SockKind::Request) => "(kernel: request)".into(),
        (None, SockKind::Full) if s.inode == 0 => "(orphan: no fd)".into(),
        (None, SockKind::Full) => String::new(),
    }
}

#[derive(Serialize)]
struct JsonRow<'a> {
    #[serde(flatten)]
    socket: &'a Socket,
    netns: &'a str,
    #[serde(flatten)]
    time: StateTime,
    orphan: bool,
}

#[derive(Serialize)]
struct JsonDoc<'a> {
    version: u32,
    namespaces: &'a [tcpstate_host::Namespace],
    counts: std::collections::BTreeMap<&'static str, usize>,
    sockets: Vec<JsonRow<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    owner_scan: Option<&'a tcpstate_host::owners::OwnerScan>,
    notes: &'a [String],
}

/// Looks up owners for the given sockets (those with an inode) and attaches them.
#[cfg(target_os = "linux")]
pub fn attach_owners(
    snap: &mut Snapshot,
    pick: impl Fn(&Socket) -> bool,
    known_for_dead: Option<HashSet<u64>>,
) -> tcpstate_host::owners::OwnerScan {
    use tcpstate_host::owners::{scan, OwnerQuery};
    let mut q = OwnerQuery {
        known: known_for_dead,
        netns: snap
            .namespaces
            .iter()
            .map(|n| n.inode)
            .collect::<Option<HashSet<u64>>>(),
        ..Default::default()
    };
    for s in snap.sockets.iter().filter(|s| s.inode != 0 && pick(s)) {
        q.wanted.insert(s.inode);
        q.uids.insert(s.uid);
    }
    let result = scan(&q);
    for s in &mut snap.sockets {
        if let Some(o) = result.owners.get(&s.inode) {
            s.owner = Some(o.clone());
        }
    }
    result
}

/// What the owner scan could not see, for people.
pub fn scan_notes(scan: &tcpstate_host::owners::OwnerScan, unowned: usize) -> Vec<String> {
    let mut v = Vec::new();
    if scan.processes_denied > 0 {
        v.push(format!(
            "owners: could not read the fds of {} of {} processes (permission denied; run as root to see them); {unowned} sockets with a file have no owner shown",
            scan.processes_denied, scan.processes_total
        ));
    } else if unowned > 0 {
        v.push(format!(
            "owners: {unowned} sockets with a file were held by no process found in /proc (another pid namespace, a closing process, or an fd in flight)"
        ));
    }
    v
}

#[cfg(not(target_os = "linux"))]
pub fn run(_args: Args) -> anyhow::Result<ExitCode> {
    Err(tcpstate_host::HostError::Unsupported.into())
}

#[cfg(target_os = "linux")]
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    use tcpstate_host::snapshot::{take, SnapshotOptions};
    let filter = match Filter::parse(&args.filter) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("tcpstate ls: {e}");
            return Ok(ExitCode::from(2));
        }
    };
    let opts = SnapshotOptions {
        states: filter.states.clone(),
        extensions: true,
        proc_only: args.ns.proc,
        kernel_context: false,
    };
    let mut snap = take(&args.ns.selector(), &opts).context("taking the socket snapshot")?;
    snap.sockets.retain(|s| filter.matches_socket(s));

    let mut notes: Vec<String> = snap.warnings.clone();
    for ns in &snap.namespaces {
        if let Some(reason) = &ns.fallback_reason {
            notes.push(format!(
                "netns {}: read /proc/net/tcp{{,6}} ({reason}); missing: {}",
                ns.name,
                ns.source.missing().join(", ")
            ));
        }
    }
    let mut scan = None;
    if !args.no_process || filter.needs_owners() {
        let s = attach_owners(&mut snap, |_| true, None);
        let unowned = snap
            .sockets
            .iter()
            .filter(|s| s.inode != 0 && s.owner.is_none())
            .count();
        notes.extend(scan_notes(&s, unowned));
        scan = Some(s);
    }
    snap.sockets.retain(|s| filter.matches_owner(s));
    sort(&mut snap.sockets, args.sort);
    if let Some(n) = args.limit {
        snap.sockets.truncate(n);
    }

    let stdout = std::io::stdout();
    let mut out = BufWriter::with_capacity(1 << 16, stdout.lock());
    if args.json {
        let doc = JsonDoc {
            version: 1,
            namespaces: &snap.namespaces,
            counts: snap
                .counts()
                .into_iter()
                .map(|(s, n)| (s.name(), n))
                .collect(),
            sockets: snap
                .sockets
                .iter()
                .map(|s| JsonRow {
                    socket: s,
                    netns: &snap.namespaces[s.netns].name,
                    time: s.state_time(),
                    orphan: s.is_orphan_fin_wait_2(),
                })
                .collect(),
            owner_scan: scan.as_ref(),
            notes: &notes,
        };
        serde_json::to_writer_pretty(&mut out, &doc)?;
        writeln!(out)?;
    } else {
        write_table(&mut out, &snap, &args, use_color(args.color))?;
        out.flush()?;
        drop(out);
        for n in &notes {
            eprintln!("note: {n}");
        }
        return Ok(ExitCode::SUCCESS);
    }
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}

fn sort(socks: &mut [Socket], key: SortKey) {
    let idx = |s: &Socket| {
        tcpstate_fsm::State::ALL
            .iter()
            .position(|x| *x == s.state)
            .unwrap_or(0)
    };
    match key {
        SortKey::State => socks.sort_by(|a, b| {
            (a.netns, idx(a), a.local, a.peer).cmp(&(b.netns, idx(b), b.local, b.peer))
        }),
        SortKey::Local => socks.sort_by_key(|s| (s.local, s.peer)),
        SortKey::Peer => socks.sort_by_key(|s| (s.peer, s.local)),
        SortKey::RecvQ => socks.sort_by_key(|s| std::cmp::Reverse(s.recv_q)),
        SortKey::SendQ => socks.sort_by_key(|s| std::cmp::Reverse(s.send_q)),
        SortKey::Age => socks.sort_by_key(|s| std::cmp::Reverse(s.state_time().age)),
        SortKey::Pid => socks.sort_by_key(|s| (s.owner.as_ref().map(|o| o.pid), s.local)),
    }
}

fn paint(color: bool, state: tcpstate_fsm::State, text: &str) -> String {
    use tcpstate_fsm::State::*;
    if !color {
        return text.to_string();
    }
    let code = match state {
        CloseWait | LastAck => "33",
        TimeWait | FinWait2 | FinWait1 | Closing => "36",
        Established => "32",
        SynSent | SynReceived => "35",
        _ => "0",
    };
    format!("\x1b[{code}m{text}\x1b[0m")
}

fn write_table(
    out: &mut impl Write,
    snap: &Snapshot,
    args: &Args,
    color: bool,
) -> anyhow::Result<()> {
    let multi = snap.namespaces.len() > 1;
    let rows: Vec<[String; 8]> = snap
        .sockets
        .iter()
        .map(|s| {
            [
                if multi {
                    snap.namespaces[s.netns].name.clone()
                } else {
                    String::new()
                },
                s.state.name().to_string(),
                s.recv_q.to_string(),
                s.send_q.to_string(),
                Addr(&s.local).to_string(),
                Addr(&s.peer).to_string(),
                time_text(s),
                if args.no_process {
                    String::new()
                } else {
                    owner_text(s, args.cmdline)
                },
            ]
        })
        .collect();
    let head = [
        "NETNS", "STATE", "RECV-Q", "SEND-Q", "LOCAL", "PEER", "TIME", "PROCESS",
    ];
    let mut w = head.map(str::len);
    for r in &rows {
        for (i, c) in r.iter().enumerate() {
            w[i] = w[i].max(c.len());
        }
    }
    let first = if multi { 0 } else { 1 };
    let line = |out: &mut dyn Write, r: &[String], state: Option<tcpstate_fsm::State>| {
        let mut s = String::with_capacity(128);
        for i in first..8 {
            let cell = &r[i];
            let padded = if i == 2 || i == 3 {
                format!("{cell:>width$}", width = w[i])
            } else if i == 7 {
                cell.clone()
            } else {
                format!("{cell:<width$}", width = w[i])
            };
            let padded = match (i, state) {
                (1, Some(st)) => paint(color, st, &padded),
                _ => padded,
            };
            s.push_str(&padded);
            if i < 7 {
                s.push_str("  ");
            }
        }
        writeln!(out, "{}", s.trim_end())
    };
    let head: Vec<String> = head.iter().map(|h| h.to_string()).collect();
    line(out, &head, None)?;
    for (r, s) in rows.iter().zip(&snap.sockets) {
        line(out, r, Some(s.state))?;
    }
    Ok(())
}
