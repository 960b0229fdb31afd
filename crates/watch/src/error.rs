//! The crate's error type; each variant names the file or namespace involved.

use std::path::PathBuf;

/// What stopped the watcher.
#[derive(Debug, thiserror::Error)]
pub enum WatchError {
    /// tracefs cannot be used (not mounted and not mountable, no tracepoint...).
    #[error("tracefs unavailable: {0}")]
    TraceFs(String),
    /// A tracefs or /proc file could not be read or written.
    #[error("cannot use {path}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// An exact sock_diag lookup failed.
    #[error("sock_diag lookup in network namespace {netns}: cannot {step}")]
    Lookup {
        /// The namespace.
        netns: String,
        /// What was being done.
        step: &'static str,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// sock_diag, owners or namespaces failed.
    #[error(transparent)]
    Host(#[from] tcpstate_host::HostError),
    /// A clock could not be read.
    #[error("cannot read CLOCK_BOOTTIME")]
    Clock,
    /// Not built for Linux.
    #[error("tcpstate watch needs Linux (tracefs, sock_diag)")]
    Unsupported,
}

impl WatchError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> WatchError {
        WatchError::Io {
            path: path.into(),
            source,
        }
    }
}
