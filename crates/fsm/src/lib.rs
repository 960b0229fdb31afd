//! `tcpstate-fsm`: an executable, sans-IO model of TCP connection management.
//!
//! What it is for: the one state machine every other part of tcpstate drives — simulation,
//! model checking, capture reconstruction, kernel conformance and explanations. It follows
//! RFC 9293 §3.10 (event processing) with RFC 5961's challenge ACKs, and a Linux profile
//! where the kernel differs, each difference a named field of [`Profile`] citing the kernel
//! function it comes from.
//!
//! What it is not: a TCP implementation. It never touches a socket or a clock (the caller
//! feeds user calls, segments and the current time, and polls for segments to send, the
//! next deadline and events, in the shape of quinn-proto); payloads are lengths, not bytes;
//! congestion control, flow control beyond the receive window, SACK, timestamps and options
//! are not modelled. It has no dependencies beyond std.
#![deny(missing_docs)]

mod connection;
pub mod explain;
mod profile;
mod queue;
pub mod scenarios;
mod segment;
mod seq;
pub mod sim;
mod state;
pub mod table;
mod timeline;
mod trigger;

pub use connection::{
    reset_for_unexpected, CallError, Connection, Event, Origin, TimeWaitSock, Transmit,
};
pub use explain::{explain, Explanation};
pub use profile::{Flavor, Profile};
pub use scenarios::{scenario, Scenario, ScenarioOptions, SCENARIOS};
pub use segment::{Flags, Segment};
pub use seq::SeqNum;
pub use sim::{Fate, Sim};
pub use state::{ParseStateError, State};
pub use table::{Applies, Path, Transition, TRANSITIONS};
pub use timeline::{human_duration, CallStep, CallStepKind, Side, Step, StepKind, Timeline};
pub use trigger::{CallKind, SegmentKind, TimerKind, Trigger};
