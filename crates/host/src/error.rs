//! The one error type of the crate, each variant naming the file, socket or namespace
//! involved.

use std::path::PathBuf;

/// What went wrong while looking at the host.
#[derive(Debug, thiserror::Error)]
pub enum HostError {
    /// A file under /proc, /sys or /run could not be read.
    #[error("cannot read {path}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The sock_diag netlink socket failed (open, send or receive).
    #[error("NETLINK_SOCK_DIAG {step} failed in network namespace {netns}")]
    Netlink {
        /// open, send or recv.
        step: &'static str,
        /// The namespace's name.
        netns: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The kernel's sock_diag reply did not parse.
    #[error("bad sock_diag reply in network namespace {netns}")]
    Diag {
        /// The namespace's name.
        netns: String,
        /// What was wrong.
        #[source]
        source: crate::diag::DiagError,
    },
    /// /proc/net/tcp{,6} did not parse.
    #[error("bad {path}")]
    ProcNet {
        /// The file.
        path: PathBuf,
        /// The offending line.
        #[source]
        source: crate::procnet::ProcNetError,
    },
    /// A network namespace could not be entered.
    #[error("cannot enter network namespace {name} ({path})")]
    Netns {
        /// Its name.
        name: String,
        /// The file opened for setns.
        path: PathBuf,
        /// Why (ENOENT: no such namespace; EPERM: needs CAP_SYS_ADMIN).
        #[source]
        source: std::io::Error,
    },
    /// A worker thread panicked or could not be started.
    #[error("worker thread for network namespace {0} failed")]
    Thread(String),
    /// Not built for Linux.
    #[error("tcpstate-host inspects live Linux hosts; this build is not for Linux")]
    Unsupported,
}

impl HostError {
    pub(crate) fn read(path: impl Into<PathBuf>, source: std::io::Error) -> HostError {
        HostError::Read {
            path: path.into(),
            source,
        }
    }
}
