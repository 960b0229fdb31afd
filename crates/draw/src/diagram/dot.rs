//! Graphviz dot source of the state diagram.
//!
//! The figure's shape comes from ranks (`rank=same` groups, one per row of RFC 9293
//! Figure 5), `group` attributes that keep the three columns straight, and invisible edges
//! that fix the left-to-right order inside a row. Edges that run against the figure's
//! downward flow (back to LISTEN or to the top CLOSED, TIME-WAIT's Linux reopen) carry
//! `constraint=false` so they do not disturb the ranks.

use super::{Diagram, Edge, Node};
use std::fmt::Write;
use tcpstate_fsm::State;

/// The rows of the figure, top to bottom, each left to right.
const RANKS: &[&[&str]] = &[
    &["CLOSED"],
    &["LISTEN"],
    &["SYN_RECV", "SYN_SENT"],
    &["ESTABLISHED"],
    &["FIN_WAIT_1", "CLOSE_WAIT"],
    &["FIN_WAIT_2", "CLOSING", "LAST_ACK"],
    &["TIME_WAIT", "CLOSED_END"],
];

/// The figure's columns: the active closer on the left, the passive closer on the right.
fn group(node: Node) -> &'static str {
    match node {
        Node::ClosedEnd => "right",
        Node::ClosedBeside(_) => "",
        Node::State(State::SynReceived | State::FinWait1 | State::FinWait2) => "left",
        Node::State(State::SynSent | State::CloseWait | State::LastAck) => "right",
        Node::State(_) => "centre",
    }
}

/// Invisible edges that hold the columns straight where the table has no edge between
/// vertical neighbours.
const SPINE: &[(&str, &str)] = &[
    ("LISTEN", "ESTABLISHED"),
    ("ESTABLISHED", "CLOSING"),
    ("SYN_SENT", "CLOSE_WAIT"),
];

/// Rank (row of the figure) of a main box; None for the small CLOSED boxes, which dot
/// places itself.
fn rank(node: Node) -> Option<usize> {
    let id = node.id();
    RANKS.iter().position(|r| r.contains(&id.as_str()))
}

/// Whether the small CLOSED box of a state sits on its left (the left column and the
/// bottom row) or its right.
fn beside_is_left(state: State) -> bool {
    matches!(
        state,
        State::SynReceived | State::FinWait1 | State::FinWait2 | State::TimeWait
    )
}

/// A row of the figure with the small CLOSED boxes of its states placed beside them.
fn row_with_beside(d: &Diagram, row: &[&str]) -> Vec<String> {
    let nodes = d.nodes();
    let mut out = Vec::new();
    for id in row {
        let beside = nodes
            .iter()
            .find(|n| matches!(n, Node::ClosedBeside(of) if of.name() == *id));
        match beside {
            Some(b) if matches!(b, Node::ClosedBeside(of) if beside_is_left(*of)) => {
                out.push(b.id());
                out.push(id.to_string());
            }
            Some(b) => {
                out.push(id.to_string());
                out.push(b.id());
            }
            None => out.push(id.to_string()),
        }
    }
    out
}

/// The edges that end in the small CLOSED box beside `state`.
fn beside_edges(d: &Diagram, state: State) -> impl Iterator<Item = &Edge> {
    d.edges
        .iter()
        .filter(move |e| e.to == Node::ClosedBeside(state))
}

/// The port (table row) of the small CLOSED box an edge points at.
fn beside_port(d: &Diagram, edge: &Edge) -> String {
    let Node::ClosedBeside(of) = edge.to else {
        unreachable!("only edges into a small CLOSED box have a port")
    };
    let i = beside_edges(d, of)
        .position(|e| e == edge)
        .expect("edge is among its box's edges");
    format!("r{i}")
}

/// The small CLOSED box beside `state`: a title, then one table row per edge ending here,
/// holding that edge's label in its colour.
fn beside_table(d: &Diagram, state: State) -> String {
    let mut t = String::from(
        "<<table border=\"1\" cellborder=\"0\" cellspacing=\"0\" cellpadding=\"2\" \
         color=\"#888888\" bgcolor=\"#ffffff\" style=\"rounded\">",
    );
    let _ = write!(
        t,
        "<tr><td align=\"center\"><font face=\"Helvetica-Bold\" point-size=\"10\" \
         color=\"#444444\">{}</font></td></tr><hr/>",
        html(d.node_label(Node::ClosedBeside(state)))
    );
    for (i, edge) in beside_edges(d, state).enumerate() {
        let _ = write!(
            t,
            "<tr><td align=\"left\" balign=\"left\" port=\"r{i}\"><font face=\"{}\" \
             point-size=\"9\" color=\"{}\">",
            // Linux-only rows: italic here, as their short arrows are too short to show dashes.
            if edge.linux_only {
                "Helvetica-Oblique"
            } else {
                "Helvetica"
            },
            edge.side.colour()
        );
        let lines: Vec<String> = edge.label_lines().iter().map(|l| html(l)).collect();
        t.push_str(&lines.join("<br/>"));
        t.push_str("</font></td></tr>");
    }
    t.push_str("</table>>");
    t
}

/// A dot double-quoted string.
fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Text inside a dot HTML-like label.
fn html(s: &str) -> String {
    crate::xml::escape(s)
}

/// A multi-line, left-justified edge label: one line per table row.
fn edge_label(edge: &Edge) -> String {
    let mut label = String::new();
    for line in edge.label_lines() {
        label.push_str(&line);
        label.push('\n');
    }
    // dot: "\l" ends a left-justified line.
    let mut q = quote(&label);
    q = q.replace("\\n", "\\l");
    q
}

fn legend(d: &Diagram) -> String {
    let mut s = String::new();
    s.push_str("<<table border=\"0\" cellborder=\"0\" cellspacing=\"1\" cellpadding=\"2\">");
    let _ = write!(
        s,
        "<tr><td colspan=\"2\" align=\"left\"><b>{}</b></td></tr>",
        html(&d.title())
    );
    for side in d.sides() {
        let _ = write!(
            s,
            "<tr><td width=\"28\" height=\"6\" fixedsize=\"true\" bgcolor=\"{c}\"></td>\
             <td align=\"left\"><font color=\"{c}\">{}</font></td></tr>",
            html(side.legend()),
            c = side.colour()
        );
    }
    let mut styles = "bold: the normal open and close; thin: everything else".to_string();
    if d.has_linux_only() {
        styles.push_str("; dashed (in the small boxes: italic): Linux only");
    }
    let _ = write!(
        s,
        "<tr><td></td><td align=\"left\">{}</td></tr>\
         <tr><td></td><td align=\"left\">labels: event [condition] / what is sent; \
         the small CLOSED boxes are the one state CLOSED, each arrow's label \
         written in the row it points at</td></tr>",
        html(&styles)
    );
    s.push_str("</table>>");
    s
}

/// The dot source.
pub(super) fn render(d: &Diagram) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "// {} (tcpstate diagram --profile {})",
        d.title(),
        d.profile.name()
    );
    let _ = writeln!(s, "// Generated from the transition table of tcpstate-fsm.");
    s.push_str("digraph tcp_states {\n");
    s.push_str(
        "  graph [rankdir=TB, newrank=true, nodesep=0.35, ranksep=0.55, splines=spline, \
         fontname=\"Helvetica\", fontsize=11, labelloc=b, labeljust=l,\n         label=",
    );
    s.push_str(&legend(d));
    s.push_str("];\n");
    s.push_str(
        "  node [shape=box, style=\"rounded,filled\", fillcolor=\"#f4f4f4\", color=\"#333333\", \
         penwidth=1.4, fontname=\"Helvetica-Bold\", fontsize=12, width=1.6, height=0.5];\n",
    );
    s.push_str("  edge [fontname=\"Helvetica\", fontsize=9, arrowsize=0.7];\n\n");

    for node in d.nodes() {
        match node {
            Node::ClosedBeside(of) => {
                let _ = writeln!(
                    s,
                    "  {} [shape=plain, label={}];",
                    node.id(),
                    beside_table(d, of)
                );
            }
            _ => {
                let _ = writeln!(
                    s,
                    "  {} [label={}, group={}{}];",
                    node.id(),
                    quote(d.node_label(node)),
                    group(node),
                    // CLOSED's two opens leave in the figure's order: LISTEN, then SYN-SENT.
                    if node == Node::State(State::Closed) {
                        ", ordering=out"
                    } else {
                        ""
                    }
                );
            }
        }
    }
    s.push('\n');
    for row in RANKS {
        let ids = row_with_beside(d, row);
        let _ = writeln!(s, "  {{ rank=same; {}; }}", ids.join("; "));
        // Left-to-right order inside the row.
        if ids.len() > 1 {
            let _ = writeln!(s, "  {} [style=invis];", ids.join(" -> "));
        }
    }
    for (a, b) in SPINE {
        let _ = writeln!(s, "  {a} -> {b} [style=invis, weight=4];");
    }
    s.push('\n');

    for edge in &d.edges {
        let colour = edge.side.colour();
        let mut attrs = vec![
            format!("id={}", quote(&edge.id())),
            format!("color={}", quote(colour)),
            format!("fontcolor={}", quote(colour)),
        ];
        // Graphviz 2.43 misreads arrow attributes that follow a tooltip: keep it last.
        let tooltip = format!("tooltip={}", quote(&edge.sources()));
        if let Node::ClosedBeside(of) = edge.to {
            // The label is written in the small CLOSED box, in the row the edge points at.
            let port = beside_port(d, edge);
            let (tail_port, head_port) = if beside_is_left(of) {
                // constraint=false: the invisible ordering edge keeps the box on the left
                // (a flat edge would otherwise put its head to the right of its tail).
                attrs.push("constraint=false".into());
                ("w", "e")
            } else {
                ("e", "w")
            };
            attrs.push(tooltip);
            let _ = writeln!(
                s,
                "  {}:{tail_port} -> {}:{port}:{head_port} [{}];",
                edge.from.id(),
                edge.to.id(),
                attrs.join(", ")
            );
            continue;
        }
        attrs.insert(1, format!("label={}", edge_label(edge)));
        if edge.normal {
            attrs.push("penwidth=2.6".into());
            attrs.push("weight=3".into());
        } else {
            attrs.push("penwidth=1.0".into());
        }
        if edge.linux_only {
            attrs.push("style=dashed".into());
        }
        if let (Some(to), Some(from)) = (rank(edge.to), rank(edge.from)) {
            // Edges within a row and short edges back up must not move the ranks; the
            // long way back (TIME-WAIT's Linux reopen) routes best as an ordinary back
            // edge, which dot reverses for ranking.
            if to == from || (to < from && from - to <= 2) {
                attrs.push("constraint=false".into());
            }
        }
        attrs.push(tooltip);
        let _ = writeln!(
            s,
            "  {} -> {} [{}];",
            edge.from.id(),
            edge.to.id(),
            attrs.join(", ")
        );
    }
    s.push_str("}\n");
    s
}
