//! The state diagram, drawn from the transition table [`tcpstate_fsm::TRANSITIONS`].
//!
//! One model ([`Diagram`]) feeds every format, so that the dot, SVG and Mermaid figures
//! always show the same edges: the rows of the table that the chosen profile makes, each
//! row's label (`event [condition] / action`) exactly once.
//!
//! The layout follows RFC 9293 Figure 5: CLOSED at the top, LISTEN, the two SYN states,
//! ESTABLISHED, the close states in two columns (the active closer's FIN-WAIT states on the
//! left, the passive closer's CLOSE-WAIT / LAST-ACK on the right, CLOSING between them) and
//! TIME-WAIT at the bottom. Like the figure, CLOSED is drawn twice: the top box is where
//! connections start (and where the handshake states fall back to), the bottom-right box
//! is where established connections end. Both are the one state CLOSED.

mod dot;
mod mermaid;
pub(crate) mod svg;

pub(crate) use mermaid::label_text as mermaid_text;

use crate::DrawError;
use tcpstate_fsm::{Applies, Path, State, Transition, TRANSITIONS};

/// Which profile's transitions to draw.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum DiagramProfile {
    /// The kernel's machine: every row the Linux profile makes (Linux-only rows dashed).
    #[default]
    Linux,
    /// RFC 9293 as written: the rows of the RFC profile, in RFC spellings.
    Rfc,
}

impl DiagramProfile {
    /// `linux` or `rfc`.
    pub fn name(self) -> &'static str {
        match self {
            DiagramProfile::Linux => "linux",
            DiagramProfile::Rfc => "rfc",
        }
    }

    /// Whether a table row belongs to this profile's diagram.
    pub fn includes(self, t: &Transition) -> bool {
        t.applies_to_linux(self == DiagramProfile::Linux)
    }

    /// How a state is spelled in this profile's figure: the kernel / netstat spelling
    /// (`SYN_RECV`, `TIME_WAIT`) for Linux, the RFC's (`SYN-RECEIVED`, `TIME-WAIT`) for RFC.
    pub fn state_name(self, state: State) -> &'static str {
        match self {
            DiagramProfile::Linux => state.name(),
            DiagramProfile::Rfc => state.rfc_name(),
        }
    }
}

/// Output formats of the state diagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DiagramFormat {
    /// Graphviz dot source.
    Dot,
    /// SVG: Graphviz's layout when `dot` is installed, the built-in layout otherwise.
    Svg,
    /// SVG from Graphviz; [`DrawError::GraphvizMissing`] when it is not installed.
    SvgGraphviz,
    /// SVG from the built-in layout, whether or not Graphviz is installed.
    SvgBuiltin,
    /// Mermaid `stateDiagram-v2`.
    Mermaid,
}

/// A box of the figure.
///
/// CLOSED is drawn more than once, each box the one state CLOSED: at the top where
/// connections start, at the bottom right where the normal close ends (as in RFC 9293
/// Figure 5), and as a small box beside each state that a reset, an abort or a timer can
/// end, so that those edges stay short and their labels next to the state they leave.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Node {
    /// The box of a state (for CLOSED, the top box where connections start).
    State(State),
    /// The bottom CLOSED box where LAST-ACK and TIME-WAIT end.
    ClosedEnd,
    /// A small CLOSED box beside the given state: where its resets, aborts and timeouts end.
    ClosedBeside(State),
}

impl Node {
    /// The main boxes, in drawing order (the small CLOSED boxes depend on the profile:
    /// see [`Diagram::nodes`]).
    pub const MAIN: [Node; 12] = [
        Node::State(State::Closed),
        Node::State(State::Listen),
        Node::State(State::SynReceived),
        Node::State(State::SynSent),
        Node::State(State::Established),
        Node::State(State::FinWait1),
        Node::State(State::CloseWait),
        Node::State(State::FinWait2),
        Node::State(State::Closing),
        Node::State(State::LastAck),
        Node::State(State::TimeWait),
        Node::ClosedEnd,
    ];

    /// The state the box shows.
    pub fn state(self) -> State {
        match self {
            Node::State(s) => s,
            Node::ClosedEnd | Node::ClosedBeside(_) => State::Closed,
        }
    }

    /// A stable identifier usable in dot, Mermaid and SVG ids: `TIME_WAIT`, `CLOSED_END`,
    /// `CLOSED_AFTER_FIN_WAIT_1`.
    pub fn id(self) -> String {
        match self {
            Node::State(s) => s.name().to_string(),
            Node::ClosedEnd => "CLOSED_END".to_string(),
            Node::ClosedBeside(s) => format!("CLOSED_AFTER_{}", s.name()),
        }
    }

    /// Whether this is one of the small CLOSED boxes.
    pub fn is_beside(self) -> bool {
        matches!(self, Node::ClosedBeside(_))
    }

    /// The box a row leaves from.
    fn source(t: &Transition) -> Node {
        Node::State(t.from)
    }

    /// The box a row arrives at. Into CLOSED: the normal close (LAST-ACK, TIME-WAIT) ends
    /// at the bottom box as in the RFC figure; LISTEN's CLOSE goes back up to the top box
    /// (also as in the figure); every other way into CLOSED (resets, aborts, timers, the
    /// Linux-only shortcuts) ends in the small box beside the state it leaves.
    fn target(t: &Transition) -> Node {
        if t.to != State::Closed {
            Node::State(t.to)
        } else if t.normal && t.from.is_synchronized() {
            Node::ClosedEnd
        } else if t.from == State::Listen {
            Node::State(State::Closed)
        } else {
            Node::ClosedBeside(t.from)
        }
    }
}

/// The colour class of an edge: which side of the connection takes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Side {
    /// Active open and active close: the client, the side that closes first (green).
    Active,
    /// Passive open and passive close: the server, the side whose peer closes first (blue).
    Passive,
    /// Simultaneous open or close (purple).
    Simultaneous,
    /// Resets and aborts (muted red).
    Abort,
    /// A timer ends the connection (grey).
    Timeout,
}

impl Side {
    /// The colour class of a table path.
    pub fn of(path: Path) -> Side {
        match path {
            Path::ActiveOpen | Path::ActiveClose => Side::Active,
            Path::PassiveOpen | Path::PassiveClose => Side::Passive,
            Path::Simultaneous => Side::Simultaneous,
            Path::Abort => Side::Abort,
            Path::Timeout => Side::Timeout,
        }
    }

    /// All classes, in legend order.
    pub const ALL: [Side; 5] = [
        Side::Active,
        Side::Passive,
        Side::Simultaneous,
        Side::Abort,
        Side::Timeout,
    ];

    /// The stroke and label colour.
    pub fn colour(self) -> &'static str {
        match self {
            Side::Active => "#1e7b34",
            Side::Passive => "#1f5fbf",
            Side::Simultaneous => "#8250a8",
            Side::Abort => "#b24a3b",
            Side::Timeout => "#6f6f6f",
        }
    }

    /// What the legend says about the colour.
    pub fn legend(self) -> &'static str {
        match self {
            Side::Active => "active side: active open, active close (ends in TIME-WAIT)",
            Side::Passive => "passive side: passive open, passive close (through CLOSE-WAIT)",
            Side::Simultaneous => "simultaneous open / simultaneous close",
            Side::Abort => "reset: RST sent or received, ABORT",
            Side::Timeout => "a timer gives up",
        }
    }
}

/// One drawn edge: one or more table rows between the same two boxes that share the same
/// drawing style (colour class, normal path or not, Linux-only or not).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Edge {
    /// Where it leaves.
    pub from: Node,
    /// Where it arrives.
    pub to: Node,
    /// Colour class.
    pub side: Side,
    /// On the normal open/close paths: drawn bold.
    pub normal: bool,
    /// Only the Linux profile makes these rows: drawn dashed.
    pub linux_only: bool,
    /// The rows drawn by this edge, in table order.
    pub rows: Vec<&'static Transition>,
}

impl Edge {
    /// One label line per row: `event [condition] / action`.
    pub fn label_lines(&self) -> Vec<String> {
        self.rows.iter().map(|t| t.label()).collect()
    }

    /// A stable id for SVG / dot: `e_FIN_WAIT_1_CLOSED_END_abort_linux`.
    pub fn id(&self) -> String {
        let side = match self.side {
            Side::Active => "active",
            Side::Passive => "passive",
            Side::Simultaneous => "simultaneous",
            Side::Abort => "abort",
            Side::Timeout => "timeout",
        };
        let mut id = format!("e_{}_{}_{}", self.from.id(), self.to.id(), side);
        if self.normal {
            id.push_str("_normal");
        }
        if self.linux_only {
            id.push_str("_linux");
        }
        id
    }

    /// The sources of its rows (RFC sections, kernel functions), for tooltips.
    pub fn sources(&self) -> String {
        let mut out: Vec<&str> = Vec::new();
        for t in &self.rows {
            if !out.contains(&t.source) {
                out.push(t.source);
            }
        }
        out.join("; ")
    }
}

/// The state diagram of one profile: boxes and edges, drawn by every format.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagram {
    /// Which profile.
    pub profile: DiagramProfile,
    /// The edges, in table order of their first row.
    pub edges: Vec<Edge>,
}

impl Diagram {
    /// Build the diagram of `profile` from the transition table.
    pub fn new(profile: DiagramProfile) -> Diagram {
        let mut edges: Vec<Edge> = Vec::new();
        for t in TRANSITIONS.iter().filter(|t| profile.includes(t)) {
            let from = Node::source(t);
            let to = Node::target(t);
            let side = Side::of(t.path);
            let linux_only = t.applies == Applies::LinuxOnly;
            match edges.iter_mut().find(|e| {
                e.from == from
                    && e.to == to
                    && e.side == side
                    && e.normal == t.normal
                    && e.linux_only == linux_only
            }) {
                Some(edge) => edge.rows.push(t),
                None => edges.push(Edge {
                    from,
                    to,
                    side,
                    normal: t.normal,
                    linux_only,
                    rows: vec![t],
                }),
            }
        }
        Diagram { profile, edges }
    }

    /// The label of a box in this profile's spelling.
    pub fn node_label(&self, node: Node) -> &'static str {
        self.profile.state_name(node.state())
    }

    /// Every box: the main ones, then the small CLOSED boxes this profile's edges use.
    pub fn nodes(&self) -> Vec<Node> {
        let mut nodes = Node::MAIN.to_vec();
        for e in &self.edges {
            if e.to.is_beside() && !nodes.contains(&e.to) {
                nodes.push(e.to);
            }
        }
        nodes
    }

    /// The figure's title.
    pub fn title(&self) -> String {
        match self.profile {
            DiagramProfile::Linux => {
                "TCP connection states: RFC 9293 Figure 5 as Linux runs it".to_string()
            }
            DiagramProfile::Rfc => "TCP connection states: RFC 9293 Figure 5".to_string(),
        }
    }

    /// Which colour classes occur (the legend lists only those).
    pub fn sides(&self) -> Vec<Side> {
        Side::ALL
            .into_iter()
            .filter(|s| self.edges.iter().any(|e| e.side == *s))
            .collect()
    }

    /// Whether any edge is Linux-only (the legend explains dashes only then).
    pub fn has_linux_only(&self) -> bool {
        self.edges.iter().any(|e| e.linux_only)
    }
}

/// The state diagram of `profile` in `format`.
///
/// [`DiagramFormat::Svg`] runs Graphviz `dot -Tsvg` when it is installed and falls back to
/// the built-in layout when it is not (the SVG says which in a comment); an installed
/// Graphviz that fails is an error, not a silent fallback.
pub fn diagram(profile: DiagramProfile, format: DiagramFormat) -> Result<String, DrawError> {
    let d = Diagram::new(profile);
    match format {
        DiagramFormat::Dot => Ok(dot::render(&d)),
        DiagramFormat::Mermaid => Ok(mermaid::render(&d)),
        DiagramFormat::SvgBuiltin => Ok(svg::render(&d)),
        DiagramFormat::SvgGraphviz => crate::graphviz::dot_to_svg(&dot::render(&d)),
        DiagramFormat::Svg => match crate::graphviz::dot_to_svg(&dot::render(&d)) {
            Ok(svg) => Ok(svg),
            Err(DrawError::GraphvizMissing) => Ok(svg::render(&d)),
            Err(e) => Err(e),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_row_of_the_profile_is_in_exactly_one_edge() {
        for profile in [DiagramProfile::Linux, DiagramProfile::Rfc] {
            let d = Diagram::new(profile);
            for t in TRANSITIONS {
                let n = d
                    .edges
                    .iter()
                    .flat_map(|e| e.rows.iter())
                    .filter(|r| **r == t)
                    .count();
                let want = usize::from(profile.includes(t));
                assert_eq!(n, want, "{profile:?}: {t:?}");
            }
        }
    }

    #[test]
    fn edge_ids_are_unique() {
        for profile in [DiagramProfile::Linux, DiagramProfile::Rfc] {
            let d = Diagram::new(profile);
            let mut ids: Vec<String> = d.edges.iter().map(Edge::id).collect();
            ids.sort();
            let n = ids.len();
            ids.dedup();
            assert_eq!(ids.len(), n);
        }
    }

    #[test]
    fn established_connections_end_in_the_bottom_closed_box() {
        let d = Diagram::new(DiagramProfile::Rfc);
        let tw = d
            .edges
            .iter()
            .find(|e| e.from.state() == State::TimeWait && e.normal)
            .expect("TIME_WAIT 2MSL edge");
        assert_eq!(tw.to, Node::ClosedEnd);
        let refused = d
            .edges
            .iter()
            .find(|e| e.from.state() == State::SynSent && e.to.state() == State::Closed)
            .expect("SYN_SENT -> CLOSED");
        assert_eq!(refused.to, Node::ClosedBeside(State::SynSent));
        let listen_close = d
            .edges
            .iter()
            .find(|e| e.from.state() == State::Listen && e.to.state() == State::Closed)
            .expect("LISTEN -> CLOSED");
        assert_eq!(listen_close.to, Node::State(State::Closed));
    }

    #[test]
    fn profiles_differ_only_in_their_own_rows() {
        let linux = Diagram::new(DiagramProfile::Linux);
        let rfc = Diagram::new(DiagramProfile::Rfc);
        assert!(linux.has_linux_only());
        assert!(!rfc.has_linux_only());
        // LISTEN -> SYN_SENT (SEND with a remote socket) exists only in the RFC.
        let listen_send = |d: &Diagram| {
            d.edges
                .iter()
                .any(|e| e.from.state() == State::Listen && e.to.state() == State::SynSent)
        };
        assert!(listen_send(&rfc));
        assert!(!listen_send(&linux));
    }
}
