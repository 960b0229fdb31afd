//! `tcpstate`: the command line. Thin: parsing, output formatting and exit codes; the work
//! lives in the library crates.

use clap::{Parser, Subcommand};
use std::process::ExitCode;

mod output;

/// The life and death of TCP connections.
#[derive(Parser, Debug)]
#[command(name = "tcpstate", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand, Debug)]
enum Command {}

fn run() -> anyhow::Result<ExitCode> {
    let cli = Cli::parse();
    match cli.command {
        None => Ok(ExitCode::SUCCESS),
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
