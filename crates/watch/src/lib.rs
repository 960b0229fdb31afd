//! `tcpstate-watch`: live TCP state transitions, with the true time spent in each state.
//!
//! What it is for: following sockets as they move, from the kernel's
//! `sock:inet_sock_set_state` tracepoint read through a private tracefs instance
//! (`instances/tcpstate-<pid>`, filtered to TCP and to the asked ports in the kernel,
//! removed on exit and cleaned up after a killed run), or — without tracefs or root — by
//! sampling sock_diag and tracking sockets by cookie, labelled with its resolution. It
//! reports what the tracepoint cannot: TIME_WAIT (the kernel swaps the full socket for a
//! timewait minisocket, so the tracepoint's last word is `FIN_WAIT_2 → CLOSE`; see
//! [`tracker`] for how the handover is confirmed against sock_diag and how its end is
//! found). It builds each connection's lifeline and [`Timeline`](tcpstate_fsm::Timeline),
//! the dwell summary, and CLOSE_WAIT warnings with the socket's owner (found by socket
//! lookup, not from the task the tracepoint names, which in softirq is whoever was on the
//! CPU).
//!
//! What it is not: a packet tracer (no payloads, sequence numbers or eBPF), a snapshot
//! tool (that is `tcpstate-host`, which it uses for sock_diag, owners and namespaces) or a
//! state machine (it reuses `tcpstate-fsm`'s `State`, `Timeline` and transition table).
//! The parser, tracker, reports and summary are portable and sans-IO; tracefs and the
//! driver are `cfg(target_os = "linux")`. It never prints.
#![deny(missing_docs)]

mod error;
pub mod event;
pub mod raw;
pub mod report;
pub mod summary;
pub mod tracker;

#[cfg(target_os = "linux")]
pub mod lookup;
#[cfg(target_os = "linux")]
pub mod session;
#[cfg(target_os = "linux")]
pub mod tracefs;

pub use error::WatchError;
pub use event::{parse_line, EventKind, Task, TraceEvent};
pub use report::{ClockMap, Closer, Dwell, Lifeline, Origin, Report, TransitionReport, Warning};
pub use tracker::{Filter, Lookup, Summary, Tracker, TrackerOptions};
