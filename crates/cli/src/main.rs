//! `tcpstate`: the command line. Thin: parsing, output formatting and exit codes; the work
//! lives in the library crates.

use clap::{Parser, Subcommand};
use std::process::ExitCode;

mod args;
mod capture;
mod conform;
mod diagram;
mod doctor;
mod explain;
mod exporter;
mod ls;
mod output;
mod simulate;
mod timeline_json;
mod verify;
mod watch;

/// The life and death of TCP connections.
#[derive(Parser, Debug)]
#[command(name = "tcpstate", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Diagnose this host (the default): CLOSE_WAIT leaks, TIME_WAIT pressure, orphans, dead sockets.
    Doctor(doctor::Args),
    /// TCP sockets with state, queues, time in state and owner (like `ss -tanp`).
    Ls(ls::Args),
    /// Live state transitions from the kernel, each connection's lifeline (TIME_WAIT
    /// included), CLOSE_WAIT warnings, dwell summary.
    Watch(watch::Args),
    /// What a state means, its ways in and out, how long it lasts, what to do.
    Explain(explain::Args),
    /// A built-in scenario (two endpoints, the real machine) as a sequence chart.
    Simulate(simulate::Args),
    /// The state diagram from the transition table (dot, SVG or Mermaid).
    Diagram(diagram::Args),
    /// Connections in a pcap/pcapng file: both endpoints' states, who closed first, CLOSE_WAIT
    /// dwell, Zeek conn_state/history (`--zeek` for conn.log lines).
    Capture(capture::Args),
    /// Model checking: why TIME_WAIT exists (the real machine, a lossy network, shortest
    /// counterexamples as sequence charts).
    Verify(verify::Args),
    /// Packet scripts (packetdrill subset) against the machine and the real kernel.
    Conform(conform::Args),
    /// Prometheus metrics for fleets: /metrics with CLOSE_WAIT per process, TIME_WAIT per
    /// remote, port usage, dead sockets, abort counters (loopback unless --allow-remote).
    Exporter(exporter::Args),
}

fn run() -> anyhow::Result<ExitCode> {
    let cli = Cli::parse();
    match cli.command {
        None => doctor::run(doctor::Args::defaults()?),
        Some(Command::Doctor(args)) => doctor::run(args),
        Some(Command::Ls(args)) => ls::run(args),
        Some(Command::Capture(args)) => capture::run(args),
        Some(Command::Simulate(args)) => simulate::run(args),
        Some(Command::Explain(args)) => explain::run(args),
        Some(Command::Watch(args)) => watch::run(args),
        Some(Command::Conform(args)) => conform::run(args),
        Some(Command::Diagram(args)) => diagram::run(args),
        Some(Command::Exporter(args)) => exporter::run(args),
        Some(Command::Verify(args)) => verify::run(args),
    }
}

fn main() -> ExitCode {
    match run() {
        Ok(code) => code,
        Err(err) => {
            if output::is_broken_pipe(&err) {
                return ExitCode::SUCCESS;
            }
            eprintln!("tcpstate: error: {err}");
            for cause in err.chain().skip(1) {
                eprintln!("  caused by: {cause}");
            }
            ExitCode::from(2)
        }
    }
}
