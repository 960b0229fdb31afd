//! `tcpstate conform SCRIPT...`: packet scripts against the machine, the real kernel, or
//! both with the first divergence side by side.

use crate::args::ChartArg;
use crate::output::{use_color, ColorChoice};
use anyhow::Context;
use serde_json::{json, Value};
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;
use tcpstate_conform::{
    compare, machine, Divergence, Mode, RunOptions, RunReport, Script, TraceEntry,
};

/// Which backends run the scripts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Against {
    /// The tcpstate machine (Linux profile, virtual clock).
    Machine,
    /// The real kernel, in a private network namespace (Linux, root).
    Kernel,
    /// Both, with the first divergence side by side.
    Both,
}

/// Arguments of `tcpstate conform`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Packet scripts (packetdrill syntax, the subset in the README).
    #[arg(required = true)]
    scripts: Vec<PathBuf>,
    /// Which backends to run.
    #[arg(long, value_enum, default_value_t = Against::Both)]
    against: Against,
    /// Check flags, seq, ack, len, window, options and timing (default for --against kernel).
    #[arg(long, conflicts_with = "semantic")]
    strict: bool,
    /// Check flags, seq, ack, len, results, states and order (default for machine and both).
    #[arg(long)]
    semantic: bool,
    /// Timing tolerance in microseconds (default: the script's --tolerance_usecs, else 50000).
    #[arg(long)]
    tolerance_usecs: Option<u64>,
    /// Draw each script's machine run as a sequence chart.
    #[arg(long, value_enum)]
    chart: Option<ChartArg>,
    /// One JSON document instead of the table.
    #[arg(long)]
    json: bool,
    /// Colour: auto, always, never (NO_COLOR is honoured).
    #[arg(long, value_enum, default_value_t = ColorChoice::Auto)]
    color: ColorChoice,
}

struct Outcome {
    script: Script,
    machine: Option<RunReport>,
    timeline: Option<tcpstate_fsm::Timeline>,
    kernel: Option<RunReport>,
    divergence: Option<Divergence>,
}

/// Run `tcpstate conform`.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let mode = if args.strict {
        Mode::Strict
    } else if args.semantic || args.against != Against::Kernel {
        Mode::Semantic
    } else {
        Mode::Strict
    };
    let options = RunOptions {
        mode,
        tolerance: args.tolerance_usecs.map(Duration::from_micros),
    };
    // Parse everything first: a typo in the fifth script should not cost four kernel runs.
    let mut scripts = Vec::new();
    for path in &args.scripts {
        match tcpstate_conform::parse_file(path) {
            Ok(s) => scripts.push(s),
            Err(e) => {
                eprintln!("tcpstate: error: {e}");
                return Ok(ExitCode::from(2));
            }
        }
    }
    let mut outcomes = Vec::new();
    for script in scripts {
        let (machine, timeline) = if args.against != Against::Kernel {
            let (r, t) = machine::run(&script, &options);
            (Some(r), Some(t))
        } else {
            (None, None)
        };
        let kernel = if args.against != Against::Machine {
            Some(run_kernel(&script, &options)?)
        } else {
            None
        };
        let divergence = match (&machine, &kernel) {
            (Some(m), Some(k)) => compare(m, k, mode),
            _ => None,
        };
        outcomes.push(Outcome {
            script,
            machine,
            timeline,
            kernel,
            divergence,
        });
    }
    let ok = outcomes.iter().all(|o| {
        o.machine.as_ref().is_none_or(RunReport::passed)
            && o.kernel.as_ref().is_none_or(RunReport::passed)
            && o.divergence.is_none()
    });
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    if args.json {
        let doc = json!({
            "version": 1,
            "against": format!("{:?}", args.against).to_lowercase(),
            "mode": mode.name(),
            "scripts": outcomes.iter().map(outcome_json).collect::<Vec<_>>(),
            "passed": ok,
        });
        writeln!(out, "{}", serde_json::to_string_pretty(&doc)?)?;
    } else {
        write_table(&mut out, &outcomes, mode, use_color(args.color))?;
        if let Some(chart) = args.chart {
            for o in &outcomes {
                if let Some(t) = &o.timeline {
                    writeln!(out, "\n== {} (machine) ==", o.script.name())?;
                    write!(out, "{}", tcpstate_draw::chart(t, chart.format()))?;
                }
            }
        }
    }
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

#[cfg(target_os = "linux")]
fn run_kernel(script: &Script, options: &RunOptions) -> anyhow::Result<RunReport> {
    tcpstate_conform::kernel::run(script, options)
        .with_context(|| format!("running {} against the kernel", script.path.display()))
}

#[cfg(not(target_os = "linux"))]
fn run_kernel(script: &Script, _options: &RunOptions) -> anyhow::Result<RunReport> {
    Err(tcpstate_conform::Error::NotLinux)
        .with_context(|| format!("running {} against the kernel", script.path.display()))
}

fn verdict(r: &Option<RunReport>) -> &'static str {
    match r {
        None => "-",
        Some(r) if r.passed() => "PASS",
        Some(_) => "FAIL",
    }
}

fn paint(s: &str, color: bool) -> String {
    let code = match s {
        "PASS" | "same" => "32",
        "FAIL" => "31",
        "-" => return s.to_string(),
        _ => "33",
    };
    if color {
        format!("\x1b[{code}m{s}\x1b[0m")
    } else {
        s.to_string()
    }
}

fn write_table(
    out: &mut impl Write,
    outcomes: &[Outcome],
    mode: Mode,
    color: bool,
) -> anyhow::Result<()> {
    let width = outcomes
        .iter()
        .map(|o| o.script.name().len())
        .max()
        .unwrap_or(6)
        .max(6);
    writeln!(
        out,
        "{:<width$}  {:<7}  {:<7}  machine vs kernel",
        "script", "machine", "kernel"
    )?;
    for o in outcomes {
        let diff = match (&o.machine, &o.kernel, &o.divergence) {
            (Some(_), Some(_), None) => "same".to_string(),
            (Some(_), Some(_), Some(d)) => format!("{} differs at line {}", d.what, d.pos.line),
            _ => "-".to_string(),
        };
        // Pad before painting: escape codes have no width.
        let m = format!("{:<7}", verdict(&o.machine));
        let k = format!("{:<7}", verdict(&o.kernel));
        writeln!(
            out,
            "{:<width$}  {}  {}  {}",
            o.script.name(),
            paint(m.trim_end(), color) + &m[m.trim_end().len()..],
            paint(k.trim_end(), color) + &k[k.trim_end().len()..],
            paint(&diff, color && diff != "-"),
        )?;
    }
    let count = |f: fn(&Outcome) -> &Option<RunReport>| {
        let ran: Vec<&RunReport> = outcomes.iter().filter_map(|o| f(o).as_ref()).collect();
        (ran.iter().filter(|r| r.passed()).count(), ran.len())
    };
    let (mp, mn) = count(|o| &o.machine);
    let (kp, kn) = count(|o| &o.kernel);
    let tol = outcomes
        .iter()
        .find_map(|o| {
            o.kernel
                .as_ref()
                .or(o.machine.as_ref())
                .map(|r| r.tolerance)
        })
        .unwrap_or_default();
    let mut parts = Vec::new();
    if mn > 0 {
        parts.push(format!("machine {mp}/{mn} passed"));
    }
    if kn > 0 {
        parts.push(format!("kernel {kp}/{kn} passed"));
    }
    if mn > 0 && kn > 0 {
        let d = outcomes.iter().filter(|o| o.divergence.is_some()).count();
        parts.push(format!("{d} divergent"));
    }
    writeln!(
        out,
        "{} scripts: {} ({} mode, timing tolerance {} ms)",
        outcomes.len(),
        parts.join(", "),
        mode.name(),
        tol.as_millis()
    )?;
    for o in outcomes {
        for r in [&o.machine, &o.kernel].into_iter().flatten() {
            if let Some(f) = &r.failure {
                writeln!(
                    out,
                    "\n{} against the {}: FAIL at {}",
                    o.script.path.display(),
                    r.backend.name(),
                    f
                )?;
            }
        }
        if let Some(d) = &o.divergence {
            write_divergence(out, o, d)?;
        }
    }
    Ok(())
}

fn describe(e: &Option<TraceEntry>) -> (String, String) {
    match e {
        None => ("(stopped before this event)".into(), String::new()),
        Some(e) => (
            e.observed.to_string(),
            format!(
                "state {}",
                e.state.map_or("none (no connection)", |s| s.name())
            ),
        ),
    }
}

fn write_divergence(out: &mut impl Write, o: &Outcome, d: &Divergence) -> anyhow::Result<()> {
    writeln!(
        out,
        "\n{}: first divergence ({}) at line {}: {}",
        o.script.path.display(),
        d.what,
        d.pos.line,
        d.event
    )?;
    let (l1, l2) = describe(&d.left);
    let (r1, r2) = describe(&d.right);
    let w = ["machine".len(), l1.len(), l2.len()]
        .into_iter()
        .max()
        .unwrap_or(0);
    writeln!(out, "  {:<w$} | kernel", "machine")?;
    writeln!(out, "  {:<w$} | {}", l1, r1)?;
    writeln!(out, "  {:<w$} | {}", l2, r2)?;
    Ok(())
}

fn report_json(r: &RunReport) -> Value {
    let mut v = json!({
        "backend": r.backend.name(),
        "passed": r.passed(),
        "elapsed_s": r.elapsed.as_secs_f64(),
        "tolerance_s": r.tolerance.as_secs_f64(),
        "states": r.states().iter().map(|(at, s)| json!({
            "at_s": at.as_secs_f64(),
            "state": s.map(|s| s.name()),
        })).collect::<Vec<_>>(),
    });
    if let Some(f) = &r.failure {
        v["failure"] = json!({"line": f.pos.line, "column": f.pos.col, "message": f.message});
    }
    v
}

fn outcome_json(o: &Outcome) -> Value {
    let mut v = json!({"script": o.script.path.display().to_string()});
    if let Some(m) = &o.machine {
        v["machine"] = report_json(m);
    }
    if let Some(k) = &o.kernel {
        v["kernel"] = report_json(k);
    }
    if let Some(d) = &o.divergence {
        let side = |e: &Option<TraceEntry>| match e {
            None => json!({"observed": "stopped"}),
            Some(e) => json!({
                "observed": e.observed.to_string(),
                "state": e.state.map(|s| s.name()),
            }),
        };
        v["divergence"] = json!({
            "line": d.pos.line,
            "event": d.event,
            "what": d.what,
            "machine": side(&d.left),
            "kernel": side(&d.right),
        });
    }
    v
}
