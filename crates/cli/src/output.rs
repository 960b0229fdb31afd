//! Shared output plumbing: colour decisions, broken pipes.
//!
//! Commands write through `std::io::Write` and propagate errors with `?` (never
//! `println!`, which panics on a closed pipe); `main` turns EPIPE into a quiet exit.

use std::io::{self, IsTerminal};

/// Whether colour should be used for stdout, honouring `--color` and NO_COLOR.
pub fn use_color(choice: ColorChoice) -> bool {
    match choice {
        ColorChoice::Always => true,
        ColorChoice::Never => false,
        ColorChoice::Auto => {
            std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty()) && io::stdout().is_terminal()
        }
    }
}

/// `--color` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum ColorChoice {
    /// Colour on a terminal, unless NO_COLOR is set.
    #[default]
    Auto,
    /// Always colour.
    Always,
    /// Never colour.
    Never,
}

/// Whether an error (anywhere in its chain) is a closed pipe, e.g. `tcpstate ls | head`.
pub fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.chain().any(|cause| {
        cause
            .downcast_ref::<io::Error>()
            .is_some_and(|e| e.kind() == io::ErrorKind::BrokenPipe)
    })
}
