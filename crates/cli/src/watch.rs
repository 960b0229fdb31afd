//! `tcpstate watch`: live transitions from the kernel's tracepoint (or sampled sock_diag
//! when tracefs cannot be used), each connection's lifeline at its end — TIME_WAIT
//! included, which the tracepoint never shows — CLOSE_WAIT warnings and a dwell summary.

use crate::args::{parse_duration, ChartArg};
use anyhow::Context;
use std::io::{self, Write};
use std::net::IpAddr;
use std::ops::ControlFlow;
use std::process::ExitCode;
use std::time::Duration;
use tcpstate_fsm::State;

/// Arguments of `tcpstate watch`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// One JSON object per line (transitions, lifelines, warnings, summary).
    #[arg(long)]
    pub json: bool,
    /// Print a summary at exit: dwell per state (count, p50, p90, p99, max), transition
    /// counts, CLOSE_WAIT dwell per process, RST endings.
    #[arg(long)]
    pub summary: bool,
    /// Also print the summary every so often (e.g. 10s).
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub summary_every: Option<Duration>,
    /// Only the summary: no transition, lifeline or warning lines.
    #[arg(long)]
    pub summary_only: bool,
    /// Warn once per socket that stays longer than this in CLOSE_WAIT, with its owner.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub close_wait_threshold: Option<Duration>,
    /// Only connections with this local or remote port (repeatable; also filtered in the
    /// kernel).
    #[arg(long, value_name = "PORT")]
    pub port: Vec<u16>,
    /// Only connections with this local or remote address (repeatable).
    #[arg(long, value_name = "IP")]
    pub addr: Vec<IpAddr>,
    /// Only transitions from or to this state, lifelines visiting it (repeatable; any
    /// spelling).
    #[arg(long, value_name = "STATE")]
    pub state: Vec<State>,
    /// Only sockets owned by this pid (found by socket lookup; repeatable).
    #[arg(long, value_name = "PID")]
    pub pid: Vec<u32>,
    /// Stop after this long (e.g. 30s).
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub duration: Option<Duration>,
    /// Stop after this many transitions (after filters).
    #[arg(long, value_name = "N")]
    pub count: Option<u64>,
    /// --netns / --netns-pid / --all-netns (with --all-netns events are not checked for
    /// namespace membership and lookups go to every namespace).
    #[command(flatten)]
    pub namespace: crate::args::NamespaceArgs,
    /// Sample sock_diag at this interval instead of the tracepoint (no root needed;
    /// transitions between samples are missed).
    #[arg(long, value_name = "INTERVAL", value_parser = parse_duration)]
    pub sample: Option<Duration>,
    /// Fail (exit 2) rather than fall back to sampling when tracefs cannot be used.
    #[arg(long, conflicts_with = "sample")]
    pub require_trace: bool,
    /// Sampling interval of the fallback.
    #[arg(long, value_name = "INTERVAL", value_parser = parse_duration, default_value = "100ms")]
    pub fallback_interval: Duration,
    /// Lookups (namespace, owner, timewait sockets) and output happen once per batch.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, default_value = "100ms")]
    pub batch: Duration,
    /// How often timewait sockets are polled for their substate and end.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, default_value = "1s")]
    pub timewait_poll: Duration,
    /// Ring buffer per CPU of the tracefs instance, KiB.
    #[arg(long, value_name = "KIB", default_value_t = 8192)]
    pub buffer_kb: u32,
    /// Read the text `trace_pipe` instead of the per-CPU binary pages (slower: the kernel
    /// formats every line).
    #[arg(long)]
    pub text_pipe: bool,
    /// Do not look up socket owners (saves the /proc/*/fd scans).
    #[arg(long)]
    pub no_owners: bool,
    /// Draw each ended connection's Timeline (both ends when both are on this host).
    #[arg(long, value_name = "FORMAT")]
    pub chart: Option<ChartArg>,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    #[cfg(target_os = "linux")]
    {
        run_linux(args)
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = args;
        anyhow::bail!(tcpstate_watch::WatchError::Unsupported)
    }
}

#[cfg(target_os = "linux")]
fn run_linux(args: Args) -> anyhow::Result<ExitCode> {
    use tcpstate_watch::session::{self, Mode, Output, SourceInfo, WatchOptions};
    use tcpstate_watch::{Filter, Report, TrackerOptions};

    let netns = args.namespace.selector();
    // Fail early and clearly on a namespace that does not exist.
    tcpstate_host::netns::resolve(&netns).context("cannot watch that network namespace")?;
    let mode = match (args.sample, args.require_trace) {
        (Some(i), _) => Mode::Sample(i),
        (None, true) => Mode::Trace,
        (None, false) => Mode::Auto(args.fallback_interval),
    };
    let opts = WatchOptions {
        netns,
        mode,
        tracker: TrackerOptions {
            close_wait_threshold: args.close_wait_threshold,
            check_membership: !args.namespace.all_netns,
            timewait_poll: args.timewait_poll,
            filter: Filter {
                ports: args.port.clone(),
                addrs: args.addr.clone(),
                states: args.state.clone(),
                pids: args.pid.clone(),
            },
            owners: !args.no_owners,
            start: Duration::ZERO,
        },
        batch: args.batch.max(Duration::from_millis(1)),
        buffer_kb: args.buffer_kb.max(4),
        binary: !args.text_pipe,
        duration: args.duration,
        count: args.count,
        summary_every: args.summary_every,
    };
    let stop = session::stop_on_signals().context("cannot install SIGINT/SIGTERM handlers")?;
    let stdout = io::stdout();
    let mut out = stdout.lock();
    let mut err = io::stderr();
    let mut clock = None;
    let mut write_error: Option<io::Error> = None;
    let want_summary = args.summary || args.summary_only || args.summary_every.is_some();
    let mut sink = |o: Output| -> ControlFlow<()> {
        let r: io::Result<()> = (|| {
            match o {
                Output::Started { source, clock: c } => {
                    clock = Some(c);
                    let text = match &source {
                        SourceInfo::Tracepoint {
                            binary,
                            instance,
                            events,
                            removed_stale,
                            mounted,
                        } => {
                            let mut s = format!(
                                "watching: tracepoint sock:inet_sock_set_state in tracefs instance {instance} (trace clock boot, {}){}; events: {}",
                                if *binary { "per-CPU binary pages" } else { "text trace_pipe" },
                                if *mounted { ", tracefs mounted by this run" } else { "" },
                                events
                                    .iter()
                                    .map(|(e, f)| if f.is_empty() { e.clone() } else { format!("{e} [{f}]") })
                                    .collect::<Vec<_>>()
                                    .join(", ")
                            );
                            if !removed_stale.is_empty() {
                                s.push_str(&format!(
                                    "; removed stale instances: {}",
                                    removed_stale.join(", ")
                                ));
                            }
                            s.push_str(". Owners come from socket lookups; a [softirq] task is whoever was on the CPU.");
                            s
                        }
                        SourceInfo::Sampled { interval, reason } => format!(
                            "watching: sampled every {} ms by sock_diag (tracepoint unavailable: {reason}); transitions between samples are missed and times are ±{} ms",
                            interval.as_millis(),
                            interval.as_millis()
                        ),
                    };
                    if args.json {
                        let v = match &source {
                            SourceInfo::Tracepoint { instance, .. } => serde_json::json!({
                                "version": tcpstate_watch::report::JSON_VERSION,
                                "type": "start", "source": "tracepoint", "instance": instance,
                                "note": text,
                            }),
                            SourceInfo::Sampled { interval, reason } => serde_json::json!({
                                "version": tcpstate_watch::report::JSON_VERSION,
                                "type": "start", "source": "sampled",
                                "resolution_s": interval.as_secs_f64(), "reason": reason,
                                "note": text,
                            }),
                        };
                        writeln!(out, "{v}")?;
                    } else {
                        writeln!(err, "tcpstate: {text}")?;
                    }
                }
                Output::Report(r) => {
                    let Some(c) = &clock else { return Ok(()) };
                    if args.summary_only {
                        return Ok(());
                    }
                    if args.json {
                        let mut v = r.to_json(c);
                        if let (Report::Lifeline(l), Some(ch)) = (&r, args.chart) {
                            v["chart"] =
                                serde_json::json!(tcpstate_draw::chart(&l.timeline, ch.format()));
                        }
                        writeln!(out, "{v}")?;
                    } else {
                        match &r {
                            Report::Transition(t) => writeln!(out, "{}", t.line(c))?,
                            Report::Lifeline(l) => {
                                writeln!(out, "{}  LIFELINE  {}", c.time_of_day(l.at), l.line())?;
                                if let Some(ch) = args.chart {
                                    writeln!(
                                        out,
                                        "{}",
                                        tcpstate_draw::chart(&l.timeline, ch.format())
                                    )?;
                                }
                            }
                            Report::Warning(w) => writeln!(out, "{}", w.line(c))?,
                        }
                    }
                }
                Output::Summary {
                    summary,
                    lost_events,
                    last,
                } => {
                    if !(want_summary || last && lost_events.is_some_and(|l| l > 0)) {
                        return Ok(());
                    }
                    if !want_summary {
                        writeln!(
                            err,
                            "tcpstate: the kernel ring buffer lost {} events (raise --buffer-kb)",
                            lost_events.unwrap_or(0)
                        )?;
                        return Ok(());
                    }
                    if args.json {
                        let mut v = summary.to_json(lost_events);
                        v["final"] = serde_json::json!(last);
                        writeln!(out, "{v}")?;
                    } else {
                        writeln!(out, "{}", summary.to_text(lost_events))?;
                    }
                }
            }
            out.flush()
        })();
        match r {
            Ok(()) => ControlFlow::Continue(()),
            Err(e) => {
                write_error = Some(e);
                ControlFlow::Break(())
            }
        }
    };
    let result = session::watch(&opts, &stop, &mut sink);
    if let Some(e) = write_error {
        return Err(e).context("writing to stdout");
    }
    result.context("tcpstate watch failed")?;
    Ok(ExitCode::SUCCESS)
}
