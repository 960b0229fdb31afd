//! `tcpstate doctor` (and plain `tcpstate`): honest counts per state, then findings —
//! CLOSE_WAIT leaks per process, TIME_WAIT pressure, orphaned FIN_WAIT_2, dead sockets
//! still held — each with evidence, meaning and action.

use crate::ls::NetnsArgs;
use crate::output::{use_color, ColorChoice};
use anyhow::Context;
use serde::Serialize;
use std::io::{BufWriter, Write};
use std::process::ExitCode;
use std::time::Duration;
use tcpstate_host::doctor::{Finding, Severity, Thresholds};

/// Diagnose this host: CLOSE_WAIT leaks, TIME_WAIT pressure, orphans, dead sockets.
#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    pub ns: NetnsArgs,
    /// One JSON document (schema in the README).
    #[arg(long)]
    pub json: bool,
    /// Exit with status 1 when a finding is at least this severe (info, warning, critical).
    #[arg(long, value_name = "SEVERITY")]
    pub fail_on: Option<Severity>,
    /// CLOSE_WAIT sockets of one process for a leak finding.
    #[arg(long, default_value_t = 5, value_name = "N")]
    pub close_wait_count: usize,
    /// ...or one CLOSE_WAIT socket older than this many seconds (estimated age).
    #[arg(long, default_value_t = 60.0, value_name = "SECS")]
    pub close_wait_age: f64,
    /// TIME_WAIT toward one destination as a fraction of the ephemeral port range.
    #[arg(long, default_value_t = 0.2, value_name = "RATIO")]
    pub time_wait_port_ratio: f64,
    /// Timewait sockets as a fraction of tcp_max_tw_buckets.
    #[arg(long, default_value_t = 0.5, value_name = "RATIO")]
    pub time_wait_bucket_ratio: f64,
    /// Orphaned FIN_WAIT_2 toward one peer.
    #[arg(long, default_value_t = 5, value_name = "N")]
    pub orphan_fin_wait_2_count: usize,
    /// LAST_ACK toward one peer.
    #[arg(long, default_value_t = 10, value_name = "N")]
    pub last_ack_count: usize,
    /// SYN_RECV on one listener.
    #[arg(long, default_value_t = 50, value_name = "N")]
    pub syn_recv_count: usize,
    /// SYN_SENT toward one peer.
    #[arg(long, default_value_t = 5, value_name = "N")]
    pub syn_sent_count: usize,
    /// Sample the abort/TIME_WAIT counters over this many seconds and report growth.
    #[arg(long, value_name = "SECS")]
    pub sample: Option<f64>,
    /// Skip the search for dead sockets still held (a scan of every process's fds).
    #[arg(long)]
    pub no_dead_scan: bool,
    /// Colour: auto, always, never (NO_COLOR is honoured).
    #[arg(long, value_enum, default_value_t)]
    pub color: ColorChoice,
}

impl Args {
    /// The arguments of a bare `tcpstate doctor` (clap's defaults).
    pub fn defaults() -> anyhow::Result<Args> {
        use clap::{Args as _, FromArgMatches};
        let cmd = Args::augment_args(clap::Command::new("doctor"));
        let m = cmd.try_get_matches_from(["doctor"])?;
        Ok(Args::from_arg_matches(&m)?)
    }

    fn thresholds(&self) -> Thresholds {
        Thresholds {
            close_wait_count: self.close_wait_count,
            close_wait_age: Duration::from_secs_f64(self.close_wait_age.max(0.0)),
            time_wait_port_ratio: self.time_wait_port_ratio,
            time_wait_bucket_ratio: self.time_wait_bucket_ratio,
            orphan_fin_wait_2_count: self.orphan_fin_wait_2_count,
            last_ack_count: self.last_ack_count,
            syn_recv_count: self.syn_recv_count,
            syn_sent_count: self.syn_sent_count,
        }
    }
}

#[derive(Serialize)]
struct JsonDoc<'a> {
    version: u32,
    namespaces: &'a [tcpstate_host::Namespace],
    counts: Vec<tcpstate_host::doctor::StateCount>,
    findings: &'a [Finding],
    #[serde(skip_serializing_if = "Option::is_none")]
    owner_scan: Option<&'a tcpstate_host::owners::OwnerScan>,
    notes: &'a [String],
}

#[cfg(not(target_os = "linux"))]
pub fn run(_args: Args) -> anyhow::Result<ExitCode> {
    Err(tcpstate_host::HostError::Unsupported.into())
}

#[cfg(target_os = "linux")]
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    use std::collections::HashSet;
    use tcpstate_fsm::State;
    use tcpstate_host::doctor::{context_lines_in, diagnose, human, state_counts, CounterGrowth};
    use tcpstate_host::snapshot::{take_with, Extensions, SnapshotOptions};
    use tcpstate_host::SockKind;

    let sel = args.ns.selector();
    let opts = SnapshotOptions {
        states: Vec::new(),
        extensions: false,
        proc_only: args.ns.proc,
        kernel_context: true,
    };
    // The rules read tcp_info only for the CLOSE_WAIT age estimate: only CLOSE_WAIT
    // sockets cost the kernel a tcp_info fill.
    let ext = Extensions {
        tcp_info: vec![State::CloseWait],
        memory: Vec::new(),
    };
    let mut snap = take_with(&sel, &opts, &ext).context("taking the socket snapshot")?;
    let mut notes = crate::ls::snapshot_notes(&snap);

    // Dead sockets leave every table but stay counted in sockstat `alloc` (host-wide full
    // sockets): only when alloc exceeds the full sockets seen can one exist, so only then
    // pay for the scan of every fd.
    let full_seen = snap
        .sockets
        .iter()
        .filter(|s| s.kind == SockKind::Full)
        .count() as u64;
    let alloc = snap
        .namespaces
        .iter()
        .filter_map(|n| n.kernel.as_ref()?.sockstat.map(|s| s.alloc))
        .max();
    let dead_scan = !args.no_dead_scan && alloc.is_none_or(|a| a > full_seen);
    let known: Option<HashSet<u64>> = dead_scan.then(|| {
        snap.sockets
            .iter()
            .filter(|s| s.inode != 0)
            .map(|s| s.inode)
            .collect()
    });
    // Owners only for the sockets findings name: CLOSE_WAIT, listeners, SYN_SENT.
    let scan = crate::ls::attach_owners(
        &mut snap,
        |s| matches!(s.state, State::CloseWait | State::Listen | State::SynSent),
        known,
    );
    let unowned = snap
        .sockets
        .iter()
        .filter(|s| s.state == State::CloseWait && s.inode != 0 && s.owner.is_none())
        .count();
    notes.extend(crate::ls::scan_notes(&scan, unowned));
    if args.no_dead_scan {
        notes.push("dead sockets still held: not searched (--no-dead-scan)".into());
    } else if !dead_scan {
        notes.push(format!(
            "dead sockets still held: none possible (sockstat alloc {} <= {full_seen} full sockets seen), fd scan skipped",
            alloc.unwrap_or(0)
        ));
    }
    if scan.dead_unverified > 0 {
        notes.push(format!(
            "dead sockets: {} TCP fds in no table could not be verified (pidfd_getfd(2) needs ptrace rights; run as root)",
            scan.dead_unverified
        ));
    }

    let growth = match args.sample {
        Some(secs) if secs > 0.0 => {
            let before = snap
                .namespaces
                .first()
                .and_then(|n| n.kernel.as_ref())
                .map(|k| k.counters.clone())
                .unwrap_or_default();
            let interval = Duration::from_secs_f64(secs);
            std::thread::sleep(interval);
            let targets = tcpstate_host::netns::resolve(&sel)?;
            let after = match targets.first() {
                Some(t) => tcpstate_host::netns::run_in(t, tcpstate_host::kernel::read)?.counters,
                None => before.clone(),
            };
            Some(CounterGrowth {
                before,
                after,
                interval,
            })
        }
        _ => None,
    };

    let findings = diagnose(&snap, Some(&scan), growth.as_ref(), &args.thresholds());
    let fail = args
        .fail_on
        .is_some_and(|min| findings.iter().any(|f| f.severity >= min));
    let code = if fail {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    };

    let stdout = std::io::stdout();
    let mut out = BufWriter::new(stdout.lock());
    if args.json {
        let doc = JsonDoc {
            version: 1,
            namespaces: &snap.namespaces,
            counts: state_counts(&snap),
            findings: &findings,
            owner_scan: Some(&scan),
            notes: &notes,
        };
        serde_json::to_writer_pretty(&mut out, &doc)?;
        writeln!(out)?;
        out.flush()?;
        return Ok(code);
    }

    let color = use_color(args.color);
    let bold = |s: &str| {
        if color {
            format!("\x1b[1m{s}\x1b[0m")
        } else {
            s.to_string()
        }
    };
    let names: Vec<String> = snap
        .namespaces
        .iter()
        .map(|n| format!("{} ({})", n.name, source_name(n.source)))
        .collect();
    writeln!(
        out,
        "{}",
        bold(&format!(
            "tcpstate doctor: {} TCP sockets in network namespace{} {}",
            snap.sockets.len(),
            if names.len() == 1 { "" } else { "s" },
            names.join(", ")
        ))
    )?;
    writeln!(out)?;
    writeln!(out, "{}", bold("Sockets per state"))?;
    for c in state_counts(&snap) {
        let extra = match c.orphan_minisockets {
            Some(o) if o > 0 => format!(
                "  ({o} orphans held by the kernel after close; `ss -s` counts them as timewait)"
            ),
            _ => String::new(),
        };
        let extra = if c.state == "CLOSE_WAIT" {
            "  (`ss -s` counts these as estab)".to_string()
        } else {
            extra
        };
        writeln!(out, "  {:<12} {:>7}{extra}", c.state, c.count)?;
    }
    writeln!(out)?;
    if findings.is_empty() {
        writeln!(
            out,
            "{}",
            bold("No findings: no CLOSE_WAIT leak, no TIME_WAIT pressure, no orphans piling up, no dead sockets held.")
        )?;
    } else {
        writeln!(out, "{}", bold(&format!("Findings ({})", findings.len())))?;
    }
    for f in &findings {
        let sev = match (color, f.severity) {
            (true, Severity::Critical) => format!("\x1b[1;31m{:<8}\x1b[0m", "CRITICAL"),
            (true, Severity::Warning) => format!("\x1b[1;33m{:<8}\x1b[0m", "WARNING"),
            (true, Severity::Info) => format!("\x1b[1;34m{:<8}\x1b[0m", "INFO"),
            (false, s) => format!("{:<8}", s.name().to_uppercase()),
        };
        writeln!(out)?;
        writeln!(out, "{sev} {}  [{}]", f.title, f.id)?;
        for e in &f.evidence {
            writeln!(out, "  - {e}")?;
        }
        writeln!(out, "  meaning: {}", f.meaning)?;
        writeln!(out, "  action:  {}", f.action)?;
    }
    for ns in &snap.namespaces {
        if let Some(k) = &ns.kernel {
            writeln!(out)?;
            writeln!(out, "{}", bold(&format!("Kernel context ({})", ns.name)))?;
            let initial = tcpstate_host::netns::is_initial(ns.inode);
            for l in context_lines_in(k, initial) {
                writeln!(out, "  {l}")?;
            }
        }
    }
    writeln!(out)?;
    writeln!(
        out,
        "Owner scan: {} of {} processes, {} fds read{}.",
        scan.processes_scanned,
        scan.processes_total,
        scan.fds_read,
        if scan.stopped_early {
            ", stopped once every wanted socket was found"
        } else {
            ""
        }
    )?;
    if let Some(g) = &growth {
        writeln!(out, "Counters sampled over {}.", human(g.interval))?;
    }
    for n in &notes {
        writeln!(out, "note: {n}")?;
    }
    out.flush()?;
    Ok(code)
}

fn source_name(s: tcpstate_host::Source) -> &'static str {
    match s {
        tcpstate_host::Source::SockDiag => "sock_diag",
        tcpstate_host::Source::ProcNet => "/proc/net/tcp",
    }
}
