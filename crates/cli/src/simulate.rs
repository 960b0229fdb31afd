//! `tcpstate simulate SCENARIO`: a built-in scenario, both endpoints driven by the machine,
//! drawn as a sequence chart.

use crate::args::{parse_duration, ChartArg, ProfileArg};
use crate::timeline_json::timeline_to_json;
use anyhow::{bail, Context};
use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;
use tcpstate_fsm::{ScenarioOptions, Side, SCENARIOS};

/// Arguments of `tcpstate simulate`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The scenario (see --list).
    scenario: Option<String>,
    /// List the scenarios with one line each.
    #[arg(long)]
    list: bool,
    /// Which profile both endpoints use.
    #[arg(long, value_enum, default_value_t = ProfileArg::Linux)]
    profile: ProfileArg,
    /// Maximum segment lifetime for the RFC profile (TIME_WAIT = 2·MSL): 120s, 2m, 500ms.
    #[arg(long, value_parser = parse_duration)]
    msl: Option<Duration>,
    /// Ignore RST in TIME_WAIT (RFC 1337; Linux net.ipv4.tcp_rfc1337=1).
    #[arg(long)]
    rfc1337: bool,
    /// One-way network latency.
    #[arg(long, value_parser = parse_duration, default_value = "10ms")]
    latency: Duration,
    /// Chart format.
    #[arg(long, value_enum, default_value_t = ChartArg::Text)]
    chart: ChartArg,
    /// The timeline as JSON instead of a chart.
    #[arg(long)]
    json: bool,
    /// Write to this file instead of standard output.
    #[arg(short, long)]
    output: Option<std::path::PathBuf>,
}

/// Run `tcpstate simulate`.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    if args.list || args.scenario.is_none() {
        let width = SCENARIOS.iter().map(|s| s.name.len()).max().unwrap_or(0);
        for s in SCENARIOS {
            writeln!(out, "{:<width$}  {}", s.name, s.summary)?;
        }
        if args.scenario.is_none() && !args.list {
            writeln!(out, "\nusage: tcpstate simulate SCENARIO [--profile linux|rfc] [--chart text|msc|mermaid|svg] [--json]")?;
        }
        return Ok(ExitCode::SUCCESS);
    }
    let name = args.scenario.as_deref().unwrap_or_default();
    let Some(scenario) = tcpstate_fsm::scenario(name) else {
        let names: Vec<&str> = SCENARIOS.iter().map(|s| s.name).collect();
        bail!("unknown scenario {name:?}; known: {}", names.join(", "));
    };
    let mut profile = args.profile.profile();
    if let Some(msl) = args.msl {
        profile = profile.with_msl(msl);
    }
    profile.rfc1337 |= args.rfc1337;
    let timeline = scenario.run(&ScenarioOptions {
        profile: profile.clone(),
        latency: args.latency,
    });
    let rendered = if args.json {
        let mut doc = timeline_to_json(&timeline);
        doc["version"] = serde_json::json!(1);
        doc["scenario"] = serde_json::json!(scenario.name);
        doc["profile"] = serde_json::json!(profile.flavor.name());
        serde_json::to_string_pretty(&doc)? + "\n"
    } else {
        let mut s = tcpstate_draw::chart(&timeline, args.chart.format());
        if args.chart == ChartArg::Text {
            s.push_str(&summary(&timeline));
        }
        s
    };
    match &args.output {
        Some(path) => {
            std::fs::write(path, rendered).with_context(|| format!("writing {}", path.display()))?
        }
        None => out.write_all(rendered.as_bytes())?,
    }
    Ok(ExitCode::SUCCESS)
}

/// Each endpoint's lifeline.
fn summary(t: &tcpstate_fsm::Timeline) -> String {
    let mut s = String::from("\n");
    for side in [Side::A, Side::B] {
        if let Some(line) = t.lifeline(side) {
            s.push_str(&format!("{:<7} {line}\n", t.name(side)));
        }
    }
    s
}
