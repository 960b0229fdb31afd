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
use tcpstate_host::{Addr, Owner, Snapshot, SockKind, Socket, StateTime, TimerKind};

/// Which network namespaces to look at, and how (shared by `ls` and `doctor`).
#[derive(clap::Args, Debug, Clone, Default)]
pub struct NetnsArgs {
    #[command(flatten)]
    pub namespace: crate::args::NamespaceArgs,
    /// Read /proc/net/tcp{,6} instead of NETLINK_SOCK_DIAG (what the fallback does).
    #[arg(long)]
    pub proc: bool,
}

#[cfg(target_os = "linux")]
impl NetnsArgs {
    pub fn selector(&self) -> tcpstate_host::netns::NetnsSelector {
        self.namespace.selector()
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
fn write_short(out: &mut Vec<u8>, d: Duration) {
    let ms = d.as_millis();
    let s = d.as_secs();
    // Writing into a Vec cannot fail.
    let _ = if ms < 1000 {
        write!(out, "{ms}ms")
    } else if s < 60 {
        write!(out, "{s}s")
    } else if s < 3600 {
        write!(out, "{}m{:02}s", s / 60, s % 60)
    } else {
        write!(out, "{}h{:02}m", s / 3600, (s % 3600) / 60)
    };
}

/// The TIME column: time left in TIME_WAIT and for orphaned FIN_WAIT_2, the estimated
/// CLOSE_WAIT age (marked `~`), else the pending timer.
fn write_time(out: &mut Vec<u8>, s: &Socket) {
    let t = s.state_time();
    if let Some(left) = t.left {
        if s.is_orphan_fin_wait_2() {
            out.extend_from_slice(b"orphan, ");
        }
        write_short(out, left);
        out.extend_from_slice(b" left");
        return;
    }
    if let (Some(age), true) = (t.age, t.estimated) {
        out.push(b'~');
        write_short(out, age);
        return;
    }
    match s.timer {
        Some(tm) if tm.kind == TimerKind::Retransmit => {
            out.extend_from_slice(b"rto ");
            write_short(out, tm.expires);
            if tm.retransmits > 0 {
                let _ = write!(out, " #{}", tm.retransmits);
            }
        }
        Some(tm) => {
            out.extend_from_slice(tm.kind.name().as_bytes());
            out.push(b' ');
            write_short(out, tm.expires);
        }
        None => {}
    }
}

fn write_owner(out: &mut Vec<u8>, s: &Socket, owner: Option<&Owner>, cmdline: bool) {
    match (owner, s.kind) {
        (Some(o), _) => {
            let name = if cmdline && !o.cmdline.is_empty() {
                &o.cmdline
            } else {
                &o.process
            };
            let _ = write!(out, "{}/{} fd={}", o.pid, name, o.fd);
        }
        (None, SockKind::TimeWaitMini) => out.extend_from_slice(b"(kernel: timewait)"),
        (None, SockKind::Request) => out.extend_from_slice(b"(kernel: request)"),
        (None, SockKind::Full) if s.inode == 0 => out.extend_from_slice(b"(orphan: no fd)"),
        (None, SockKind::Full) => {}
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

/// Looks up the holders of the given sockets (those with an inode), without copying them
/// into the rows: the result maps inode -> owner.
#[cfg(target_os = "linux")]
pub fn scan_owners(
    snap: &Snapshot,
    pick: impl Fn(&Socket) -> bool,
    known_for_dead: Option<HashSet<u64>>,
) -> tcpstate_host::owners::OwnerScan {
    scan_owners_after(snap, pick, known_for_dead, Default::default())
}

/// [`scan_owners`], starting from what a prescan read during the dump.
#[cfg(target_os = "linux")]
pub fn scan_owners_after(
    snap: &Snapshot,
    pick: impl Fn(&Socket) -> bool,
    known_for_dead: Option<HashSet<u64>>,
    pre: tcpstate_host::owners::Prescan,
) -> tcpstate_host::owners::OwnerScan {
    use tcpstate_host::owners::{scan_after, OwnerQuery};
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
    scan_after(&q, pre)
}

/// Looks up owners for the given sockets (those with an inode) and attaches them.
#[cfg(target_os = "linux")]
pub fn attach_owners(
    snap: &mut Snapshot,
    pick: impl Fn(&Socket) -> bool,
    known_for_dead: Option<HashSet<u64>>,
) -> tcpstate_host::owners::OwnerScan {
    let result = scan_owners(snap, pick, known_for_dead);
    for s in &mut snap.sockets {
        if let Some(o) = result.owners.get(&s.inode) {
            s.owner = Some(o.clone());
        }
    }
    result
}

/// The snapshot's warnings and, per namespace read through /proc/net/tcp, why and what is
/// then missing.
pub fn snapshot_notes(snap: &Snapshot) -> Vec<String> {
    let mut notes = snap.warnings.clone();
    for ns in &snap.namespaces {
        if let Some(reason) = &ns.fallback_reason {
            notes.push(format!(
                "netns {}: read /proc/net/tcp{{,6}} ({reason}); missing: {}",
                ns.name,
                ns.source.missing().join(", ")
            ));
        }
    }
    notes
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
    use tcpstate_host::snapshot::{take_with, Extensions, SnapshotOptions};
    let filter = match Filter::parse(&args.filter) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("tcpstate ls: {e}");
            return Ok(ExitCode::from(2));
        }
    };
    let opts = SnapshotOptions {
        states: filter.states.clone(),
        extensions: args.json,
        proc_only: args.ns.proc,
        kernel_context: false,
    };
    // JSON carries tcp_info and memory for every socket; the table shows only the
    // CLOSE_WAIT age, so only CLOSE_WAIT sockets cost the kernel a tcp_info.
    let ext = if args.json {
        Extensions::all()
    } else {
        Extensions {
            tcp_info: vec![tcpstate_fsm::State::CloseWait],
            memory: Vec::new(),
        }
    };
    let want_owners = !args.no_process || filter.needs_owners();
    let sel = args.ns.selector();
    // Every socket shown: its holders are mostly the processes of the namespaces, which
    // must all be read anyway, so they are read while the kernel dumps the sockets.
    let prescan_ns: Option<HashSet<u64>> = (want_owners && filter.selects_every_socket())
        .then(|| tcpstate_host::netns::resolve(&sel).ok())
        .flatten()
        .and_then(|targets| targets.iter().map(|t| t.inode).collect());
    let (snap, pre) = std::thread::scope(|sc| {
        let pre = prescan_ns
            .as_ref()
            .map(|ns| sc.spawn(|| tcpstate_host::owners::prescan(ns, 0)));
        let snap = take_with(&sel, &opts, &ext);
        (snap, pre.and_then(|h| h.join().ok()))
    });
    let mut snap = snap.context("taking the socket snapshot")?;
    snap.sockets.retain(|s| filter.matches_socket(s));

    let mut notes = snapshot_notes(&snap);
    let scan = want_owners.then(|| {
        let s = scan_owners_after(&snap, |_| true, None, pre.unwrap_or_default());
        let unowned = snap
            .sockets
            .iter()
            .filter(|x| x.inode != 0 && !s.owners.contains_key(&x.inode))
            .count();
        notes.extend(scan_notes(&s, unowned));
        s
    });
    let owners = scan.as_ref().map(|s| &s.owners);
    let owner_of = |s: &Socket| -> Option<&Owner> {
        if s.inode == 0 {
            return None;
        }
        owners?.get(&s.inode)
    };
    let mut order = sorted(&snap.sockets, args.sort, &owner_of, |s| {
        filter.matches_owner_of(owner_of(s))
    });
    if let Some(n) = args.limit {
        order.truncate(n);
    }

    let stdout = std::io::stdout();
    let mut out = BufWriter::with_capacity(1 << 16, stdout.lock());
    if args.json {
        let mut counts = std::collections::BTreeMap::new();
        for &i in &order {
            *counts.entry(snap.sockets[i].state.name()).or_insert(0usize) += 1;
        }
        let rows: Vec<Socket> = order
            .iter()
            .map(|&i| {
                let s = &snap.sockets[i];
                let mut s = s.clone();
                s.owner = owner_of(&snap.sockets[i]).cloned();
                s
            })
            .collect();
        let doc = JsonDoc {
            version: 1,
            namespaces: &snap.namespaces,
            counts,
            sockets: rows
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
        out.flush()?;
        return Ok(ExitCode::SUCCESS);
    }
    let table = Table {
        snap: &snap,
        order: &order,
        owner_of: &owner_of,
        show_owner: !args.no_process,
        cmdline: args.cmdline,
        color: use_color(args.color),
    };
    table.write(&mut out)?;
    out.flush()?;
    drop(out);
    for n in &notes {
        eprintln!("note: {n}");
    }
    Ok(ExitCode::SUCCESS)
}

/// The indices of the sockets that pass `keep`, in `key` order. Sorting indices by a
/// compact key moves 12-byte entries instead of whole sockets; the index breaks ties, so
/// the order is the stable one.
fn sorted<'a>(
    socks: &'a [Socket],
    key: SortKey,
    owner_of: &dyn Fn(&'a Socket) -> Option<&'a Owner>,
    keep: impl Fn(&'a Socket) -> bool,
) -> Vec<usize> {
    fn by<'a, K: Ord>(
        socks: &'a [Socket],
        keep: impl Fn(&'a Socket) -> bool,
        k: impl Fn(&'a Socket) -> K,
    ) -> Vec<usize> {
        let mut v: Vec<(K, usize)> = socks
            .iter()
            .enumerate()
            .filter(|(_, s)| keep(s))
            .map(|(i, s)| (k(s), i))
            .collect();
        v.sort_unstable();
        v.into_iter().map(|(_, i)| i).collect()
    }
    // SocketAddr's order (V4 before V6, then address, then port) as plain integers.
    fn a(s: &std::net::SocketAddr) -> (bool, u128, u16) {
        match s.ip() {
            std::net::IpAddr::V4(ip) => (false, u32::from(ip).into(), s.port()),
            std::net::IpAddr::V6(ip) => (true, u128::from(ip), s.port()),
        }
    }
    use std::cmp::Reverse;
    match key {
        SortKey::State => by(socks, keep, |s| {
            (s.netns, state_rank(s.state), a(&s.local), a(&s.peer))
        }),
        SortKey::Local => by(socks, keep, |s| (a(&s.local), a(&s.peer))),
        SortKey::Peer => by(socks, keep, |s| (a(&s.peer), a(&s.local))),
        SortKey::RecvQ => by(socks, keep, |s| Reverse(s.recv_q)),
        SortKey::SendQ => by(socks, keep, |s| Reverse(s.send_q)),
        SortKey::Age => by(socks, keep, |s| Reverse(s.state_time().age)),
        SortKey::Pid => by(socks, keep, |s| (owner_of(s).map(|o| o.pid), a(&s.local))),
    }
}

fn state_rank(s: tcpstate_fsm::State) -> usize {
    tcpstate_fsm::State::ALL
        .iter()
        .position(|x| *x == s)
        .unwrap_or(0)
}

fn paint_code(state: tcpstate_fsm::State) -> &'static str {
    use tcpstate_fsm::State::*;
    match state {
        CloseWait | LastAck => "33",
        TimeWait | FinWait2 | FinWait1 | Closing => "36",
        Established => "32",
        SynSent | SynReceived => "35",
        _ => "0",
    }
}

/// The text table. Every cell of every row is written once into one byte arena (no
/// string per cell), the column widths taken on the way, then the rows are copied out
/// with their padding.
struct Table<'a, 'o> {
    snap: &'a Snapshot,
    order: &'a [usize],
    owner_of: &'o dyn Fn(&'a Socket) -> Option<&'a Owner>,
    show_owner: bool,
    cmdline: bool,
    color: bool,
}

const COLUMNS: usize = 8;
const HEAD: [&str; COLUMNS] = [
    "NETNS", "STATE", "RECV-Q", "SEND-Q", "LOCAL", "PEER", "TIME", "PROCESS",
];

impl Table<'_, '_> {
    fn write(&self, out: &mut impl Write) -> std::io::Result<()> {
        let multi = self.snap.namespaces.len() > 1;
        let mut arena: Vec<u8> = Vec::with_capacity(self.order.len() * 96);
        let mut ends: Vec<u32> = Vec::with_capacity(self.order.len() * COLUMNS);
        let mut w = HEAD.map(str::len);
        let mut addr = [0u8; tcpstate_host::ADDR_MAX_LEN];
        for &i in self.order {
            let s = &self.snap.sockets[i];
            let row_start = arena.len();
            let mut start = row_start;
            for (col, width) in w.iter_mut().enumerate() {
                match col {
                    0 if multi => {
                        arena.extend_from_slice(self.snap.namespaces[s.netns].name.as_bytes())
                    }
                    0 => {}
                    1 => arena.extend_from_slice(s.state.name().as_bytes()),
                    // Writing into a Vec cannot fail.
                    2 => drop(write!(arena, "{}", s.recv_q)),
                    3 => drop(write!(arena, "{}", s.send_q)),
                    4 | 5 => {
                        let a = if col == 4 { &s.local } else { &s.peer };
                        let n = Addr(a).write_to(&mut addr);
                        arena.extend_from_slice(&addr[..n]);
                    }
                    6 => write_time(&mut arena, s),
                    _ if self.show_owner => {
                        write_owner(&mut arena, s, (self.owner_of)(s), self.cmdline)
                    }
                    _ => {}
                }
                // A row's cells stay far below 4 GiB; the arena as a whole may not.
                *width = (*width).max(arena.len() - start);
                start = arena.len();
                ends.push((arena.len() - row_start) as u32);
            }
        }
        let first = if multi { 0 } else { 1 };
        let mut line: Vec<u8> = Vec::with_capacity(256);
        let mut emit = |out: &mut dyn Write,
                        cells: &mut dyn Iterator<Item = &[u8]>,
                        state: Option<tcpstate_fsm::State>|
         -> std::io::Result<()> {
            line.clear();
            for (col, cell) in cells.enumerate().skip(first) {
                let pad = w[col].saturating_sub(cell.len());
                let paint = match (col, state) {
                    (1, Some(st)) if self.color => Some(paint_code(st)),
                    _ => None,
                };
                if let Some(code) = paint {
                    let _ = write!(line, "\x1b[{code}m");
                }
                match col {
                    2 | 3 => {
                        line.resize(line.len() + pad, b' ');
                        line.extend_from_slice(cell);
                    }
                    7 => line.extend_from_slice(cell),
                    _ => {
                        line.extend_from_slice(cell);
                        line.resize(line.len() + pad, b' ');
                    }
                }
                if paint.is_some() {
                    line.extend_from_slice(b"\x1b[0m");
                }
                if col < COLUMNS - 1 {
                    line.extend_from_slice(b"  ");
                }
            }
            while line.last() == Some(&b' ') {
                line.pop();
            }
            line.push(b'\n');
            out.write_all(&line)
        };
        emit(out, &mut HEAD.iter().map(|h| h.as_bytes()), None)?;
        let mut row_start = 0usize;
        for (r, &i) in self.order.iter().enumerate() {
            let e = &ends[r * COLUMNS..(r + 1) * COLUMNS];
            let row_len = e[COLUMNS - 1] as usize;
            let row = &arena[row_start..row_start + row_len];
            let mut prev = 0usize;
            let mut cells = e.iter().map(|&end| {
                let c = &row[prev..end as usize];
                prev = end as usize;
                c
            });
            emit(out, &mut cells, Some(self.snap.sockets[i].state))?;
            row_start += row_len;
        }
        Ok(())
    }
}
