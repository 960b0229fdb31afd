//! `tcpstate-host`: the live Linux host as tcpstate sees it.
//!
//! What it is for: a snapshot of every TCP socket through NETLINK_SOCK_DIAG (IPv4 and
//! IPv6, state filter in the kernel, timewait minisockets with their substate and time
//! left, tcp_info parsed by length), with /proc/net/tcp as a fallback that says what it
//! lacks; the owner of each socket from /proc/*/fd, scanned by design rather than by brute
//! force; dead TCP sockets still held by a process (in no table, invisible to `ss`);
//! network namespaces (`--netns`, `--netns-pid`, `--all-netns`); the kernel's TIME_WAIT
//! and orphan knobs and counters; and the diagnosis rules (`doctor`) that turn all that
//! into findings with evidence, meaning and action.
//!
//! What it is not: a packet tracer (no eBPF, no tracefs here), a TCP state machine (that is
//! `tcpstate-fsm`, whose [`State`](tcpstate_fsm::State) it reuses), or portable: the live
//! parts are `cfg(target_os = "linux")`; the parsers, filters and rules build everywhere.
//! It never prints.
#![deny(missing_docs)]

pub mod diag;
pub mod doctor;
mod error;
pub mod filter;
pub mod kernel;
mod model;
pub mod owners;
pub mod procnet;

#[cfg(target_os = "linux")]
pub mod netns;
#[cfg(target_os = "linux")]
pub mod snapshot;
#[cfg(target_os = "linux")]
mod sys;

pub use error::HostError;
pub use kernel::KernelContext;
pub use model::{
    Addr, MemInfo, Namespace, Owner, Snapshot, SockKind, Socket, Source, StateTime, TcpInfo, Timer,
    TimerKind, ADDR_MAX_LEN, TIMEWAIT_LEN,
};
