//! Mermaid `stateDiagram-v2` of the state diagram.
//!
//! Mermaid cannot colour or dash individual transitions of a state diagram, so the label
//! carries what the colours say in the other formats: the path class in brackets and
//! `(Linux)` for Linux-only rows.

use super::{Diagram, Node, Side};
use std::fmt::Write;

/// Text that is safe in a Mermaid transition label: `;` and `#` would start a statement
/// or an entity, `:` a new label.
pub(crate) fn label_text(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '#' => out.push_str("#35;"),
            ';' => out.push_str("#59;"),
            ':' => out.push_str("#58;"),
            '\n' => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

fn side_word(side: Side) -> &'static str {
    match side {
        Side::Active => "active",
        Side::Passive => "passive",
        Side::Simultaneous => "simultaneous",
        Side::Abort => "reset",
        Side::Timeout => "timer",
    }
}

/// The Mermaid source.
pub(super) fn render(d: &Diagram) -> String {
    let mut s = String::new();
    s.push_str("---\n");
    // Quoted: the title contains ": ", which YAML would read as a mapping.
    let _ = writeln!(s, "title: \"{}\"", d.title().replace('"', "'"));
    s.push_str("---\n");
    s.push_str("stateDiagram-v2\n");
    for node in d.nodes() {
        let _ = writeln!(s, "    state \"{}\" as {}", d.node_label(node), node.id());
    }
    let _ = writeln!(
        s,
        "    [*] --> {}",
        Node::State(tcpstate_fsm::State::Closed).id()
    );
    for edge in &d.edges {
        let lines: Vec<String> = edge
            .label_lines()
            .iter()
            .map(|l| {
                let mut l = label_text(l);
                if edge.linux_only {
                    l.push_str(" (Linux)");
                }
                l
            })
            .collect();
        let mut label = lines.join("<br/>");
        if !edge.normal {
            let _ = write!(label, " [{}]", side_word(edge.side));
        }
        let _ = writeln!(s, "    {} --> {} : {}", edge.from.id(), edge.to.id(), label);
    }
    let end = Node::ClosedEnd;
    let _ = writeln!(s, "    {} --> [*]", end.id());
    s
}
