//! `tcpstate verify`: model-check connection close with the real machine and show, as
//! sequence charts, what goes wrong when TIME_WAIT is removed, shortened or cut short.

use crate::args::{ChartArg, ProfileArg};
use crate::timeline_json::timeline_to_json;
use anyhow::Context;
use serde_json::{json, Value};
use std::io::Write;
use std::process::ExitCode;
use tcpstate_check::{
    check, Bounds, Config, Counterexample, Property, Report, TimeWaitMode, Verdict,
};
use tcpstate_fsm::Flavor;

/// Model checking: why TIME_WAIT exists.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Machine profile.
    #[arg(long, value_enum, default_value = "rfc")]
    profile: ProfileArg,
    /// TIME_WAIT length relative to MSL: 2msl (default), 0 (none) or short (< 2·MSL).
    #[arg(long = "time-wait", default_value = "2msl", value_parser = parse_time_wait)]
    time_wait: TimeWaitMode,
    /// TIME_WAIT ignores a retransmitted FIN (neither re-ACKs it nor restarts the timer).
    #[arg(long)]
    no_reack: bool,
    /// An RST at RCV.NXT ends TIME_WAIT (RFC 9293 text, Linux tcp_rfc1337=0); by default
    /// RFC 1337 is on and TIME_WAIT ignores RSTs.
    #[arg(long)]
    rst_kills_time_wait: bool,
    /// The server application never calls close() (its connection stays in CLOSE_WAIT).
    #[arg(long)]
    server_never_closes: bool,
    /// Segments in flight at once.
    #[arg(long, default_value_t = Bounds::default().in_flight)]
    in_flight: usize,
    /// Duplications the network may make.
    #[arg(long, default_value_t = Bounds::default().duplicates)]
    duplicates: u8,
    /// Segments the network may lose.
    #[arg(long, default_value_t = Bounds::default().losses)]
    losses: u8,
    /// Retransmissions per segment before giving up.
    #[arg(long, default_value_t = Bounds::default().retries)]
    retries: u32,
    /// Reconnections of the client on the same 4-tuple (ISS reused).
    #[arg(long, default_value_t = Bounds::default().reconnects)]
    reconnects: u8,
    /// Octets the client sends per connection.
    #[arg(long, default_value_t = Bounds::default().data)]
    data: u32,
    /// Receive window of both endpoints, in octets.
    #[arg(long, default_value_t = Bounds::default().window)]
    window: u32,
    /// Stop after this many states (properties not yet decided are then reported unknown).
    #[arg(long, default_value_t = 1_000_000)]
    max_states: usize,
    /// Report only these properties (repeatable).
    #[arg(long = "property", value_parser = parse_property)]
    properties: Vec<Property>,
    /// How to draw counterexamples.
    #[arg(long, value_enum, default_value = "text")]
    chart: ChartArg,
    /// One JSON document instead of text.
    #[arg(long)]
    json: bool,
    /// Explain in plain words why TIME_WAIT exists, running the variants and drawing their
    /// counterexamples.
    #[arg(long, conflicts_with = "json")]
    explain: bool,
}

fn parse_time_wait(s: &str) -> Result<TimeWaitMode, String> {
    s.parse()
        .map_err(|e: tcpstate_check::CheckError| e.to_string())
}

fn parse_property(s: &str) -> Result<Property, String> {
    s.parse().map_err(|_| {
        let names: Vec<&str> = Property::ALL.iter().map(|p| p.name()).collect();
        format!("unknown property {s:?}; known: {}", names.join(", "))
    })
}

impl Args {
    fn config(&self) -> Config {
        Config {
            flavor: match self.profile {
                ProfileArg::Linux => Flavor::Linux,
                ProfileArg::Rfc => Flavor::Rfc9293,
            },
            time_wait: self.time_wait,
            reack: !self.no_reack,
            rst_kills_time_wait: self.rst_kills_time_wait,
            server_closes: !self.server_never_closes,
            bounds: Bounds {
                in_flight: self.in_flight,
                duplicates: self.duplicates,
                losses: self.losses,
                retries: self.retries,
                reconnects: self.reconnects,
                data: self.data,
                window: self.window,
            },
            max_states: self.max_states,
        }
    }

    fn shown(&self, p: Property) -> bool {
        self.properties.is_empty() || self.properties.contains(&p)
    }
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    if args.explain {
        explain(&args, &mut out)?;
        return Ok(ExitCode::SUCCESS);
    }
    let config = args.config();
    let report = match check(&config) {
        Ok(r) => r,
        Err(e) => {
            writeln!(out, "tcpstate verify: {e}")?;
            return Ok(ExitCode::from(2));
        }
    };
    if args.json {
        let doc = report_json(&report, &args);
        writeln!(out, "{}", serde_json::to_string_pretty(&doc)?)?;
    } else {
        write_report(&report, &args, &mut out)?;
    }
    let violated = report
        .results
        .iter()
        .any(|r| args.shown(r.property) && matches!(r.verdict, Verdict::Violated(_)));
    Ok(if violated {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

fn describe(config: &Config) -> Vec<String> {
    let p = config.profile();
    let b = &config.bounds;
    vec![
        format!(
            "profile {}: TIME_WAIT {} s against MSL {} s; RFC 1337 {}; TIME_WAIT {} a retransmitted FIN",
            config.flavor.name(),
            p.time_wait.as_secs(),
            p.msl.as_secs(),
            if p.rfc1337 { "on (RST ignored in TIME_WAIT)" } else { "off (an RST at RCV.NXT ends TIME_WAIT)" },
            if p.time_wait_reacks_fin { "re-ACKs" } else { "IGNORES" },
        ),
        format!(
            "world: client A connects, sends {} octet(s), closes, may reconnect {}x on the same 4-tuple with the same ISS; server B listens (a fresh ISS per connection), reads, {}",
            b.data,
            b.reconnects,
            if config.server_closes { "closes after end of file" } else { "NEVER closes" },
        ),
        format!(
            "network: <= {} in flight, <= {} loss(es), <= {} duplicate(s), any reordering; {} retransmission(s) per segment; window {}",
            b.in_flight, b.losses, b.duplicates, b.retries, b.window
        ),
        timing(config),
    ]
}

/// The timing assumption behind the 2·MSL guard, with this run's numbers: exact while an
/// endpoint gives up retransmitting within MSL.
fn timing(config: &Config) -> String {
    let p = config.profile();
    let span = config.give_up_after();
    let verdict = if span <= p.msl {
        format!("<= MSL {} s, so the rule is exact", p.msl.as_secs())
    } else {
        format!(
            "> MSL {} s: APPROXIMATE, runs where TIME_WAIT ends before the peer gives up are not explored",
            p.msl.as_secs()
        )
    };
    format!(
        "timing: a 2·MSL timer expires once nothing of its incarnation is in flight and the peer holds no connection of it with a retransmission or a close still due; a peer gives up after {} s of retransmissions {verdict}",
        span.as_secs()
    )
}

fn write_report(report: &Report, args: &Args, out: &mut impl Write) -> anyhow::Result<()> {
    writeln!(out, "tcpstate verify: {}", report.config.variant())?;
    for line in describe(&report.config) {
        writeln!(out, "  {line}")?;
    }
    writeln!(
        out,
        "explored {} states ({} transitions, {} distinct connection states) in {:.2} s{}",
        report.states,
        report.transitions,
        report.connection_states,
        report.elapsed.as_secs_f64(),
        if report.complete {
            ", exhaustively".to_string()
        } else {
            format!(", STOPPED at --max-states {}", report.config.max_states)
        }
    )?;
    writeln!(out)?;
    for r in report.results.iter().filter(|r| args.shown(r.property)) {
        let verdict = match &r.verdict {
            Verdict::Holds => "holds".to_string(),
            Verdict::Violated(c) => format!("VIOLATED ({} steps)", c.steps),
            Verdict::Unknown(_) => "unknown (search incomplete)".to_string(),
        };
        writeln!(out, "  {:<26} {verdict}", r.property.name())?;
    }
    for r in report.results.iter().filter(|r| args.shown(r.property)) {
        match &r.verdict {
            Verdict::Violated(c) => {
                writeln!(out)?;
                writeln!(
                    out,
                    "== {}: violated; shortest counterexample, {} steps ==",
                    r.property.name(),
                    c.steps
                )?;
                write_counterexample(c, args.chart, out)?;
            }
            Verdict::Unknown(why) => {
                writeln!(out)?;
                writeln!(out, "== {}: unknown: {why} ==", r.property.name())?;
            }
            Verdict::Holds => {}
        }
        if let Some(w) = &r.witness {
            writeln!(out)?;
            writeln!(
                out,
                "== {}: holds; the lasso when the application never closes ==",
                r.property.name()
            )?;
            write_counterexample(w, args.chart, out)?;
        }
    }
    Ok(())
}

fn write_counterexample(
    c: &Counterexample,
    chart: ChartArg,
    out: &mut impl Write,
) -> anyhow::Result<()> {
    for line in wrap(&c.explanation, 90) {
        writeln!(out, "{line}")?;
    }
    writeln!(out)?;
    out.write_all(tcpstate_draw::chart(&c.timeline, chart.format()).as_bytes())?;
    Ok(())
}

fn wrap(text: &str, width: usize) -> Vec<String> {
    let mut lines = Vec::new();
    let mut line = String::new();
    for word in text.split_whitespace() {
        if !line.is_empty() && line.len() + 1 + word.len() > width {
            lines.push(std::mem::take(&mut line));
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(word);
    }
    if !line.is_empty() {
        lines.push(line);
    }
    lines
}

fn counterexample_json(c: &Counterexample) -> Value {
    let mut v = json!({
        "steps": c.steps,
        "finding": c.finding,
        "explanation": c.explanation,
        "timeline": timeline_to_json(&c.timeline),
    });
    if let Some(k) = c.lasso_from {
        v["lasso_from_step"] = json!(k);
    }
    v
}

fn report_json(report: &Report, args: &Args) -> Value {
    let c = &report.config;
    let p = c.profile();
    let b = &c.bounds;
    let properties: Vec<Value> = report
        .results
        .iter()
        .filter(|r| args.shown(r.property))
        .map(|r| {
            let mut v = json!({
                "name": r.property.name(),
                "summary": r.property.summary(),
                "verdict": r.verdict.name(),
            });
            match &r.verdict {
                Verdict::Violated(cx) => v["counterexample"] = counterexample_json(cx),
                Verdict::Unknown(why) => v["reason"] = json!(why),
                Verdict::Holds => {}
            }
            if let Some(w) = &r.witness {
                v["witness"] = counterexample_json(w);
            }
            v
        })
        .collect();
    json!({
        "version": 1,
        "variant": c.variant(),
        "config": {
            "profile": c.flavor.name(),
            "time_wait": c.time_wait.name(),
            "time_wait_s": p.time_wait.as_secs_f64(),
            "msl_s": p.msl.as_secs_f64(),
            "rfc1337": p.rfc1337,
            "reack": c.reack,
            "server_closes": c.server_closes,
            "bounds": {
                "in_flight": b.in_flight,
                "duplicates": b.duplicates,
                "losses": b.losses,
                "retries": b.retries,
                "reconnects": b.reconnects,
                "data": b.data,
                "window": b.window,
            },
            "max_states": c.max_states,
            "give_up_after_s": c.give_up_after().as_secs_f64(),
        },
        "states": report.states,
        "transitions": report.transitions,
        "connection_states": report.connection_states,
        "complete": report.complete,
        "elapsed_s": report.elapsed.as_secs_f64(),
        "properties": properties,
    })
}

/// `--explain`: the argument in plain words, each claim backed by a run of the checker.
fn explain(args: &Args, out: &mut impl Write) -> anyhow::Result<()> {
    let base = args.config();
    let run = |f: &dyn Fn(&mut Config)| -> anyhow::Result<Report> {
        let mut c = base.clone();
        f(&mut c);
        check(&c).with_context(|| format!("checking {}", c.variant()))
    };
    let proper = run(&|_| {})?;
    let none = run(&|c| c.time_wait = TimeWaitMode::Zero)?;
    let noreack = run(&|c| c.reack = false)?;
    let assassin = run(&|c| c.rst_kills_time_wait = true)?;
    let never = run(&|c| c.server_closes = false)?;

    writeln!(
        out,
        "Why TIME_WAIT exists, checked on the real machine ({} profile).",
        base.flavor.name()
    )?;
    for line in describe(&base) {
        writeln!(out, "  {line}")?;
    }
    let show = |out: &mut dyn Write,
                title: &str,
                text: &str,
                r: &Report,
                p: Property|
     -> anyhow::Result<()> {
        writeln!(out, "\n{title}")?;
        for line in wrap(text, 90) {
            writeln!(out, "{line}")?;
        }
        match &r.result(p).verdict {
            Verdict::Violated(c) => {
                writeln!(
                    out,
                    "\n[{}] {} is violated in {} steps ({} states explored):",
                    r.config.variant(),
                    p.name(),
                    c.steps,
                    r.states
                )?;
                let mut w = Vec::new();
                write_counterexample(c, args.chart, &mut w)?;
                out.write_all(&w)?;
            }
            v => writeln!(
                out,
                "\n[{}] {}: {} ({} states explored)",
                r.config.variant(),
                p.name(),
                v.name(),
                r.states
            )?,
        }
        Ok(())
    };
    show(out, "1. TIME_WAIT re-sends the final ACK.",
        "The active closer's last ACK may be lost. The passive closer then retransmits its FIN, and someone must answer it. In TIME_WAIT the connection still exists and answers with the ACK; without TIME_WAIT the FIN meets no connection and is answered with an RST, so a clean close ends as a reset.",
        &none, Property::OrderlyClose)?;
    show(out, "   ... and a TIME_WAIT that ignores the FIN leaves the peer to give up.",
        "With --no-reack the retransmitted FIN is not answered: the passive closer retransmits until its retry limit and ends with a timeout instead of the ACK of its FIN.",
        &noreack, Property::TimeWaitDuties)?;
    show(out, "2. TIME_WAIT lets old duplicates die before the 4-tuple is reused.",
        "Segments of a closed connection may still be in flight. If the same 4-tuple is reused at once (and the client's new ISN overlaps the old one, the worst case), an old segment falls inside the new connection's window and is accepted: an old FIN or old data, or an old SYN-ACK that completes the new handshake.",
        &none, Property::NoCrossIncarnation)?;
    show(out, "3. An RST must not cut TIME_WAIT short (RFC 1337).",
        "If TIME_WAIT honours an RST at RCV.NXT, a reset provoked by an old duplicate assassinates it, and the 4-tuple is free too early: the hazards of point 1 and 2 come back.",
        &assassin, Property::OrderlyClose)?;
    show(out, "4. CLOSE_WAIT lasts until the program closes.",
        "CLOSE_WAIT means the peer has closed and this application has not. No TCP timer ends it: if the application never calls close(), the connection stays in CLOSE_WAIT for ever (and the peer waits in FIN_WAIT_2, or on Linux times out of it after tcp_fin_timeout).",
        &never, Property::Termination)?;
    writeln!(
        out,
        "\n5. With TIME_WAIT at 2·MSL, re-ACKing, and RFC 1337 on, every property:"
    )?;
    for r in &proper.results {
        writeln!(out, "  {:<26} {}", r.property.name(), r.verdict.name())?;
    }
    writeln!(
        out,
        "  ({} states, {:.2} s{})",
        proper.states,
        proper.elapsed.as_secs_f64(),
        if proper.complete {
            ", exhaustive"
        } else {
            ", search stopped at its limit"
        }
    )?;
    Ok(())
}
