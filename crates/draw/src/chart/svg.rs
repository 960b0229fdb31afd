//! The built-in SVG chart: two lifelines, time flowing down, one row per step.
//!
//! A segment is an arrow from its send row on the sender's lifeline to its arrival row on
//! the receiver's (`Sent.id` ↔ `Received.id`), so segments in flight are slanted and
//! crossing segments cross; a lost one stops half-way with a cross. State boxes sit on the
//! lifelines where the state changes; calls, timers and notes are written on the outer
//! side of their endpoint's lifeline; times on the left.

use super::{arrow_label, call_label, initial_states, seconds, timer_label, Row, RowKind};
use crate::xml::escape;
use std::fmt::Write;
use tcpstate_fsm::{Side, Timeline};

const CHAR_W: f64 = 6.1;
const ROW_H: f64 = 26.0;
const TIME_W: f64 = 64.0;
const MARGIN: f64 = 12.0;

fn text_w(s: &str) -> f64 {
    s.chars().count() as f64 * CHAR_W
}

/// What is written beside a lifeline on a row.
fn outer_text(row: &Row) -> Option<(String, &'static str)> {
    match &row.kind {
        RowKind::Call(c) => Some((call_label(c), "#222222")),
        RowKind::Timer(k) => Some((timer_label(*k), "#6f6f6f")),
        RowKind::Note(n) => Some((n.clone(), "#7a5c00")),
        _ => None,
    }
}

pub(super) fn render(t: &Timeline, rows: &[Row]) -> String {
    let outer_w = |side: Side| {
        rows.iter()
            .filter(|r| r.side == side)
            .filter_map(outer_text)
            .map(|(s, _)| text_w(&s) + 16.0)
            .fold(90.0, f64::max)
    };
    let label_w = rows
        .iter()
        .map(|r| text_w(&arrow_label(&r.kind)))
        .fold(0.0, f64::max);
    let xa = MARGIN + TIME_W + outer_w(Side::A);
    let xb = xa + (label_w + 140.0).max(380.0);
    let width = xb + outer_w(Side::B) + MARGIN;
    let top = 78.0;
    let y_of = |i: usize| top + ROW_H * (i as f64 + 1.0);
    let height = y_of(rows.len()) + ROW_H;
    let x_of = |side: Side| if side == Side::A { xa } else { xb };

    let mut s = String::new();
    let _ = writeln!(
        s,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width:.0}\" height=\"{height:.0}\" \
         viewBox=\"0 0 {width:.0} {height:.0}\" font-family=\"DejaVu Sans Mono, Menlo, Consolas, \
         monospace\" font-size=\"10\">"
    );
    let _ = writeln!(s, "<title>{}</title>", escape(&t.title));
    s.push_str(
        "<defs><marker id=\"arrow\" viewBox=\"0 0 10 10\" refX=\"9\" refY=\"5\" markerWidth=\"7\" \
         markerHeight=\"7\" markerUnits=\"userSpaceOnUse\" orient=\"auto\">\
         <path d=\"M0,0 L10,5 L0,10 z\" fill=\"#1f5fbf\"/></marker></defs>\n",
    );
    let _ = writeln!(
        s,
        "<rect x=\"0\" y=\"0\" width=\"{width:.0}\" height=\"{height:.0}\" fill=\"#ffffff\"/>\n\
         <text x=\"{MARGIN}\" y=\"20\" font-size=\"13\" font-weight=\"bold\">{}</text>\n\
         <text x=\"{MARGIN}\" y=\"{:.1}\" fill=\"#555555\">time (s)</text>",
        escape(&t.title),
        top - 16.0
    );
    for side in [Side::A, Side::B] {
        let x = x_of(side);
        let _ = writeln!(
            s,
            "<text x=\"{x:.1}\" y=\"44\" text-anchor=\"middle\" font-size=\"12\" \
             font-weight=\"bold\">{}</text>\n\
             <line x1=\"{x:.1}\" y1=\"50\" x2=\"{x:.1}\" y2=\"{:.1}\" stroke=\"#999999\"/>",
            escape(t.name(side)),
            height - 8.0
        );
    }
    let state_box = |s: &mut String, x: f64, y: f64, name: &str| {
        let w = text_w(name) + 12.0;
        let _ = writeln!(
            s,
            "<rect x=\"{:.1}\" y=\"{:.1}\" width=\"{w:.1}\" height=\"18\" rx=\"5\" fill=\"#f4f4f4\" \
             stroke=\"#333333\"/><text x=\"{x:.1}\" y=\"{:.1}\" text-anchor=\"middle\" \
             font-weight=\"bold\">{}</text>",
            x - w / 2.0,
            y - 9.0,
            y + 3.5,
            escape(name)
        );
    };
    for (side, st) in [Side::A, Side::B].iter().zip(initial_states(t)) {
        if let Some(st) = st {
            state_box(&mut s, x_of(*side), top, st.name());
        }
    }

    let mut last_time = None;
    for (i, row) in rows.iter().enumerate() {
        let y = y_of(i);
        if last_time != Some(row.at) {
            last_time = Some(row.at);
            let _ = writeln!(
                s,
                "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\" fill=\"#555555\">{}</text>",
                MARGIN + TIME_W - 8.0,
                y + 3.5,
                seconds(row.at)
            );
        }
        let x = x_of(row.side);
        match &row.kind {
            RowKind::Segment {
                lost,
                arrivals,
                sent_seen,
                ..
            } => {
                let label = arrow_label(&row.kind);
                let xo = x_of(row.side.other());
                let ends: Vec<(f64, f64, bool)> = if *lost {
                    // Half-way across, a little lower: it was in flight when it died.
                    vec![(x + (xo - x) * 0.55, y + ROW_H * 0.6, true)]
                } else if !sent_seen {
                    vec![(xo, y, false)]
                } else {
                    arrivals
                        .iter()
                        .map(|(_, r)| (xo, y_of(*r), false))
                        .collect()
                };
                let dash = if *sent_seen {
                    ""
                } else {
                    " stroke-dasharray=\"2 3\""
                };
                for (k, (ex, ey, cross)) in ends.iter().enumerate() {
                    let (ex, ey) = (*ex, *ey);
                    let marker = if *cross {
                        ""
                    } else {
                        " marker-end=\"url(#arrow)\""
                    };
                    let _ = writeln!(
                        s,
                        "<line x1=\"{x:.1}\" y1=\"{y:.1}\" x2=\"{ex:.1}\" y2=\"{ey:.1}\" \
                         stroke=\"#1f5fbf\" stroke-width=\"1.4\"{dash}{marker}/>"
                    );
                    if *cross {
                        let _ = writeln!(
                            s,
                            "<path d=\"M{:.1},{:.1} l10,10 M{:.1},{:.1} l-10,10\" \
                             stroke=\"#b24a3b\" stroke-width=\"2\"/>\
                             <text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\" \
                             fill=\"#b24a3b\">lost</text>",
                            ex - 5.0,
                            ey - 5.0,
                            ex + 5.0,
                            ey - 5.0,
                            ex,
                            ey + 16.0
                        );
                    }
                    if k == 0 {
                        // The label along the arrow, above it.
                        let (mx, my) = ((x + ex) / 2.0, (y + ey) / 2.0);
                        let angle = (ey - y).atan2(ex - x).to_degrees();
                        let angle = if angle.abs() > 90.0 {
                            angle - 180.0
                        } else {
                            angle
                        };
                        let _ = writeln!(
                            s,
                            "<text x=\"{mx:.1}\" y=\"{:.1}\" text-anchor=\"middle\" \
                             fill=\"#1f5fbf\" transform=\"rotate({angle:.2} {mx:.1} {my:.1})\">{}</text>",
                            my - 4.0,
                            escape(&label)
                        );
                    }
                }
            }
            RowKind::Arrival { .. } => {}
            RowKind::State(st) => state_box(&mut s, x, y, st.name()),
            _ => {
                if let Some((text, colour)) = outer_text(row) {
                    let (tx, anchor) = match row.side {
                        Side::A => (x - 10.0, "end"),
                        Side::B => (x + 10.0, "start"),
                    };
                    let italic = if matches!(row.kind, RowKind::Note(_)) {
                        " font-style=\"italic\""
                    } else {
                        ""
                    };
                    let _ = writeln!(
                        s,
                        "<text x=\"{tx:.1}\" y=\"{:.1}\" text-anchor=\"{anchor}\" \
                         fill=\"{colour}\"{italic}>{}</text>",
                        y + 3.5,
                        escape(&text)
                    );
                }
            }
        }
    }
    s.push_str("</svg>\n");
    s
}
