//! `tcpstate-draw`: the TCP state diagram and sequence charts, generated from the machine.
//!
//! What it is for: turning the transition table of `tcpstate-fsm` into the classic state
//! diagram (Graphviz dot, SVG, Mermaid `stateDiagram-v2`), and any [`Timeline`] into a
//! sequence chart (plain text for terminals, mscgen, Mermaid `sequenceDiagram`, SVG). Every
//! figure is computed from the same data the machine runs on, so the pictures cannot drift
//! from the behaviour.
//!
//! What it is not: a general graph layout engine or a TCP model. It knows no TCP rules of
//! its own (those live in `tcpstate-fsm`); the built-in SVG layouts are fixed arrangements
//! for these two kinds of figure. The one side effect is starting Graphviz `dot` for
//! [`DiagramFormat::Svg`] when it is installed; nothing here prints.
//!
//! [`Timeline`]: tcpstate_fsm::Timeline
#![deny(missing_docs)]

mod chart;
mod diagram;
mod graphviz;
mod xml;

pub use chart::{chart, ChartFormat};
pub use diagram::{diagram, Diagram, DiagramFormat, DiagramProfile, Edge, Node, Side};
pub use graphviz::graphviz_available;

use std::fmt;

/// What can go wrong while drawing.
///
/// Hand-written rather than derived with thiserror: this crate depends on `tcpstate-fsm`
/// only.
#[derive(Debug)]
pub enum DrawError {
    /// Graphviz `dot` is not installed (not found in `PATH`).
    GraphvizMissing,
    /// Graphviz ran and failed.
    Graphviz {
        /// Its exit status.
        status: String,
        /// What it wrote to stderr.
        stderr: String,
    },
    /// Talking to Graphviz failed.
    Io {
        /// What was being done.
        what: String,
        /// The underlying error.
        source: std::io::Error,
    },
}

impl fmt::Display for DrawError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DrawError::GraphvizMissing => {
                write!(f, "Graphviz `dot` is not installed (not found in PATH)")
            }
            DrawError::Graphviz { status, stderr } => {
                write!(f, "Graphviz `dot -Tsvg` failed ({status}): {stderr}")
            }
            DrawError::Io { what, source } => write!(f, "{what}: {source}"),
        }
    }
}

impl std::error::Error for DrawError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            DrawError::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}
