//! mscgen source of a chart.
//!
//! One mscgen row per step. A segment's arc starts on its send row and, with `arcskip`,
//! ends on its arrival row, so a segment in flight is drawn slanted; a lost one is `-x`.
//! A left-most entity without a lifeline carries the times.

use super::{arrow_label, call_label, initial_states, seconds, timer_label, Row, RowKind};
use std::fmt::Write;
use tcpstate_fsm::{Side, Timeline};

/// Text inside an mscgen double-quoted attribute.
fn quote(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push(' '),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn entity(side: Side) -> &'static str {
    match side {
        Side::A => "a",
        Side::B => "b",
    }
}

pub(super) fn render(t: &Timeline, rows: &[Row]) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "# {}", t.title.replace('\n', " "));
    s.push_str("msc {\n  hscale=\"1.6\", arcgradient=\"0\";\n");
    let _ = writeln!(
        s,
        "  t [label=\"time (s)\", linecolour=\"white\"], a [label={}], b [label={}];",
        quote(t.name(Side::A)),
        quote(t.name(Side::B))
    );
    let initial = initial_states(t);
    if initial.iter().any(Option::is_some) {
        let boxes: Vec<String> = [Side::A, Side::B]
            .iter()
            .filter_map(|side| {
                initial[side.index()].map(|st| {
                    format!(
                        "{e} abox {e} [label={}]",
                        quote(st.name()),
                        e = entity(*side)
                    )
                })
            })
            .collect();
        let _ = writeln!(s, "  {};", boxes.join(", "));
    }

    let mut last_time = None;
    for (i, row) in rows.iter().enumerate() {
        let mut arcs: Vec<String> = Vec::new();
        if last_time != Some(row.at) {
            last_time = Some(row.at);
            arcs.push(format!(
                "t box t [label={}, linecolour=\"white\"]",
                quote(&seconds(row.at))
            ));
        }
        let me = entity(row.side);
        let other = entity(row.side.other());
        match &row.kind {
            RowKind::Segment {
                lost,
                arrivals,
                sent_seen,
                ..
            } => {
                let mut label = arrow_label(&row.kind);
                if !sent_seen {
                    label.push_str(" (send not seen)");
                }
                if *lost {
                    arcs.push(format!(
                        "{me} -x {other} [label={}, textbgcolour=\"white\"]",
                        quote(&label)
                    ));
                } else {
                    // Slanted to the first arrival's row.
                    let skip = arrivals.first().map_or(0, |(_, r)| r.saturating_sub(i));
                    let style = if *sent_seen { "->" } else { ":>" };
                    let mut arc = format!(
                        "{me} {style} {other} [label={}, textbgcolour=\"white\"",
                        quote(&label)
                    );
                    if skip > 0 {
                        let _ = write!(arc, ", arcskip=\"{skip}\"");
                    }
                    arc.push(']');
                    arcs.push(arc);
                }
            }
            RowKind::Arrival { .. } => {}
            RowKind::Call(c) => {
                arcs.push(format!("{me} rbox {me} [label={}]", quote(&call_label(c))));
            }
            RowKind::Timer(k) => {
                arcs.push(format!(
                    "{me} rbox {me} [label={}, textcolour=\"#6f6f6f\"]",
                    quote(&timer_label(*k))
                ));
            }
            RowKind::State(st) => {
                arcs.push(format!(
                    "{me} abox {me} [label={}, textbgcolour=\"#f4f4f4\"]",
                    quote(st.name())
                ));
            }
            RowKind::Note(n) => {
                arcs.push(format!("{me} note {me} [label={}]", quote(n)));
            }
        }
        if arcs.is_empty() {
            // An arrival at the same time as the row before: keep the row for arcskip.
            s.push_str("  |||;\n");
        } else {
            let _ = writeln!(s, "  {};", arcs.join(", "));
        }
    }
    s.push_str("}\n");
    s
}
