//! `tcpstate-conform`: packet scripts played against the tcpstate machine and the real Linux
//! kernel, with the first divergence between them.
//!
//! What it is for: conformance. A script in a subset of packetdrill's language (socket calls,
//! injected `<` and expected `>` segments, backquoted `sysctl`/`ss` lines) runs against
//! * the **kernel** (Linux, root): inside a private network namespace made for the run, a TUN
//!   device carries the remote peer 192.0.2.1; the runner writes `<` segments as real IPv4
//!   packets, reads what the kernel sends and matches `>` lines, makes the calls as real
//!   syscalls, and observes the connection's state through sock_diag;
//! * the **machine**: the same script drives a [`tcpstate_fsm::Connection`] with a
//!   `Profile::Linux`-shaped profile and a virtual clock.
//!
//! Both backends share one [`run::Runner`] (time column, ISN remapping, matching), so a
//! difference in a report is a difference between the backends, not between two runners.
//!
//! What it is not: a packetdrill replacement. The subset covers close and shutdown paths
//! (see [`script`] for the grammar); IPv6, Python blocks, ECN, poll/epoll and many calls are
//! not supported and fail with a clear message instead of being ignored. It never sends traffic
//! outside the namespace it creates, and it does not print.
#![deny(missing_docs)]

pub mod errno;
#[cfg(target_os = "linux")]
pub mod kernel;
pub mod machine;
pub mod parse;
pub mod run;
pub mod script;
pub mod shell;
pub mod wire;

use std::path::PathBuf;

pub use parse::{parse_file, parse_str, ParseError};
pub use run::{
    compare, Backend, BackendKind, Divergence, Failure, Mode, Observed, RunOptions, RunReport,
    TraceEntry,
};
pub use script::Script;

/// What can go wrong around a run (as opposed to a script failing, which is a [`Failure`]
/// inside a [`RunReport`]).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The script file could not be read.
    #[error("cannot read script {}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The script does not parse.
    #[error(transparent)]
    Parse(#[from] ParseError),
    /// The kernel backend needs root (network namespaces, TUN devices).
    #[error("the kernel backend needs root (CAP_NET_ADMIN and CAP_SYS_ADMIN) to create network namespace {netns}; run as root or use --against machine")]
    NotRoot {
        /// The namespace it would have created.
        netns: String,
    },
    /// Setting up the private network namespace or its TUN device failed.
    #[error("setting up network namespace {netns}: {what}")]
    Setup {
        /// The namespace.
        netns: String,
        /// What failed.
        what: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A bug in the runner (a panic on its thread), reported instead of propagated.
    #[error("internal error: {0}")]
    Internal(String),
    /// The kernel backend is only built on Linux.
    #[error("the kernel backend needs Linux")]
    NotLinux,
}
