//! `tcpstate`: the command line. Thin: parsing, output formatting and exit codes; the work
//! lives in the library crates.

use clap::{Parser, Subcommand};
use std::process::ExitCode;

mod capture;
mod output;

/// The life and death of TCP connections.
#[derive(Parser, Debug)]
#[command(name = "tcpstate", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Connections in a pcap/pcapng file: both endpoints' states, who closed first, CLOSE_WAIT
    /// dwell, Zeek conn_state/history (`--zeek` for conn.log lines).
    Capture(capture::Args),
}

fn run() -> anyhow::Result<ExitCode> {
    let cli = Cli::parse();
    match cli.command {
        None => Ok(ExitCode::SUCCESS),
        Some(Command::Capture(args)) => capture::run(args),
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
