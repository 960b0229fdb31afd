//! Mermaid `sequenceDiagram` of a chart.
//!
//! Mermaid draws every message level, so a message's label carries its send time and,
//! when it arrived later, its arrival time; a lost segment is `-x`, a reception whose send
//! was never seen a dotted `-->>`. States are notes over the endpoint's lifeline.

use super::{arrow_label, call_label, initial_states, seconds, timer_label, Row, RowKind};
use crate::diagram::mermaid_text as text;
use std::fmt::Write;
use tcpstate_fsm::{Side, Timeline};

fn participant(side: Side) -> &'static str {
    match side {
        Side::A => "A",
        Side::B => "B",
    }
}

pub(super) fn render(t: &Timeline, rows: &[Row]) -> String {
    let mut s = String::from("sequenceDiagram\n");
    let _ = writeln!(s, "    title {}", text(&t.title));
    for side in [Side::A, Side::B] {
        let _ = writeln!(
            s,
            "    participant {} as {}",
            participant(side),
            text(t.name(side))
        );
    }
    for (side, st) in [Side::A, Side::B].iter().zip(initial_states(t)) {
        if let Some(st) = st {
            let _ = writeln!(s, "    Note over {}: {}", participant(*side), st.name());
        }
    }
    for row in rows {
        let me = participant(row.side);
        let other = participant(row.side.other());
        let at = seconds(row.at);
        // Notes go on the outer side of each lifeline.
        let outer = match row.side {
            Side::A => "left of",
            Side::B => "right of",
        };
        match &row.kind {
            RowKind::Segment {
                lost,
                arrivals,
                sent_seen,
                ..
            } => {
                let mut label = format!("{at} {}", arrow_label(&row.kind));
                let arrow = if *lost {
                    label.push_str(" (lost)");
                    "-x"
                } else if !sent_seen {
                    label = format!("{} (send not seen, arrived {at})", arrow_label(&row.kind));
                    "-->>"
                } else {
                    let later: Vec<String> = arrivals
                        .iter()
                        .filter(|(a, _)| *a != row.at || arrivals.len() > 1)
                        .map(|(a, _)| seconds(*a))
                        .collect();
                    if !later.is_empty() {
                        label.push_str(&format!(" (arrives {})", later.join(", ")));
                    }
                    "->>"
                };
                let _ = writeln!(s, "    {me}{arrow}{other}: {}", text(&label));
            }
            RowKind::Arrival { .. } => {}
            RowKind::Call(c) => {
                let _ = writeln!(s, "    Note {outer} {me}: {at} {}", text(&call_label(c)));
            }
            RowKind::Timer(k) => {
                let _ = writeln!(s, "    Note {outer} {me}: {at} {}", text(&timer_label(*k)));
            }
            RowKind::State(st) => {
                let _ = writeln!(s, "    Note over {me}: {}", st.name());
            }
            RowKind::Note(n) => {
                let _ = writeln!(s, "    Note {outer} {me}: {at} {}", text(n));
            }
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use crate::chart::{chart, sample, ChartFormat};

    /// The line without Mermaid entity codes (`#59;`), whose `;` is not a separator.
    fn strip_entities(l: &str) -> String {
        let mut out = String::new();
        let mut rest = l;
        while let Some(i) = rest.find('#') {
            out.push_str(&rest[..i]);
            let after = &rest[i + 1..];
            let digits = after.chars().take_while(char::is_ascii_digit).count();
            if digits > 0 && after[digits..].starts_with(';') {
                rest = &after[digits + 1..];
            } else {
                out.push('#');
                rest = after;
            }
        }
        out.push_str(rest);
        out
    }

    /// Mermaid has no offline validator here; check the grammar this output relies on:
    /// a header, declared participants, and every other line one of the statement forms
    /// used, with no character that would end a statement early.
    #[test]
    fn sequence_diagram_syntax() {
        for t in [sample::lost_fin(), sample::abort_with_unseen_send()] {
            let m = chart(&t, ChartFormat::Mermaid);
            let mut lines = m.lines();
            assert_eq!(lines.next(), Some("sequenceDiagram"));
            for line in lines {
                let l = line.trim_start();
                let ok = l.starts_with("title ")
                    || l.starts_with("participant A as ")
                    || l.starts_with("participant B as ")
                    || l.starts_with("Note over A: ")
                    || l.starts_with("Note over B: ")
                    || l.starts_with("Note left of A: ")
                    || l.starts_with("Note right of B: ")
                    || [
                        "A->>B: ", "B->>A: ", "A-xB: ", "B-xA: ", "A-->>B: ", "B-->>A: ",
                    ]
                    .iter()
                    .any(|p| l.starts_with(p));
                assert!(ok, "unexpected mermaid line: {line}");
                assert!(
                    !strip_entities(l).contains(';'),
                    "';' ends a mermaid statement: {line}"
                );
            }
            if t.title.starts_with("lost-fin") {
                assert!(m.contains("A-xB: "), "the lost FIN is drawn as lost");
            }
        }
    }
}
