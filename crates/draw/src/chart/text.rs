//! The plain-text chart for terminals (ASCII only, so it survives any terminal, log or
//! snapshot).
//!
//! ```text
//!  time (s)  client                                                  server
//!            ESTABLISHED                                             ESTABLISHED
//!     0.000  CLOSE
//!            [FIN_WAIT_1]
//!            ----- FIN+ACK seq=101 ack=501 ---------------x          lost
//! ```
//!
//! One row per step. A segment is one arrow on its send row; the receiver's column on that
//! row says when it arrived ("at 0.225") or that it was lost. A reception whose send was
//! never seen is drawn as a dotted arrow on the arrival row. Times are printed when they
//! change.

use super::{arrow_label, call_label, initial_states, seconds, timer_label, Row, RowKind};
use std::fmt::Write;
use tcpstate_fsm::{Side, Timeline};

const TIME_W: usize = 9;
const GAP: &str = "  ";

pub(super) fn render(t: &Timeline, rows: &[Row]) -> String {
    // Column contents first, to size the columns.
    let cells: Vec<[String; 3]> = rows.iter().map(cells).collect();
    // A note may be long: it runs past its column (its row has no arrow) and does not
    // widen the chart.
    let sized: Vec<&[String; 3]> = rows
        .iter()
        .zip(&cells)
        .filter(|(r, _)| !matches!(r.kind, RowKind::Note(_)))
        .map(|(_, c)| c)
        .collect();
    let initial = initial_states(t);
    let col_w = |i: usize, name: &str, init: Option<&str>| {
        sized
            .iter()
            .map(|c| c[i].chars().count())
            .chain([name.chars().count(), init.map_or(0, |s| s.len())])
            .max()
            .unwrap_or(0)
    };
    let left_w = col_w(0, t.name(Side::A), initial[0].map(|s| s.name())).max(12);
    let mid_w = rows
        .iter()
        .map(|r| arrow_label(&r.kind).chars().count() + 12)
        .max()
        .unwrap_or(0)
        .max(30);

    let mut out = String::new();
    let _ = writeln!(out, "{}", t.title);
    let line = |time: &str, left: &str, mid: &str, right: &str| -> String {
        let s = format!("{time:>TIME_W$}{GAP}{left:<left_w$}{GAP}{mid:<mid_w$}{GAP}{right}");
        s.trim_end().to_string()
    };
    let _ = writeln!(
        out,
        "{}",
        line("time (s)", t.name(Side::A), "", t.name(Side::B))
    );
    if initial.iter().any(Option::is_some) {
        let _ = writeln!(
            out,
            "{}",
            line(
                "",
                initial[0].map_or("", |s| s.name()),
                "",
                initial[1].map_or("", |s| s.name()),
            )
        );
    }

    let mut last_time = None;
    for (row, [left, _, right]) in rows.iter().zip(&cells) {
        if matches!(row.kind, RowKind::Arrival { .. }) {
            // Folded into its send's arrow.
            continue;
        }
        let time = if last_time == Some(row.at) {
            String::new()
        } else {
            last_time = Some(row.at);
            seconds(row.at)
        };
        let mid = arrow(row, mid_w);
        let _ = writeln!(out, "{}", line(&time, left, &mid, right));
    }
    out
}

/// The left (side A) and right (side B) cells of a row; index 1 is unused.
fn cells(row: &Row) -> [String; 3] {
    let own = match &row.kind {
        RowKind::Call(c) => call_label(c),
        RowKind::Timer(k) => timer_label(*k),
        RowKind::State(s) => format!("[{}]", s.name()),
        RowKind::Note(n) => format!("note: {n}"),
        RowKind::Segment { .. } | RowKind::Arrival { .. } => String::new(),
    };
    // On a segment's row, the receiver's column tells what became of it.
    let fate = match &row.kind {
        RowKind::Segment {
            lost,
            arrivals,
            sent_seen,
            ..
        } => {
            if *lost {
                "lost".to_string()
            } else if !sent_seen {
                "(send not seen)".to_string()
            } else if arrivals.is_empty() {
                "(not received)".to_string()
            } else if arrivals.iter().all(|(at, _)| *at == row.at) && arrivals.len() == 1 {
                String::new()
            } else {
                let times: Vec<String> = arrivals.iter().map(|(at, _)| seconds(*at)).collect();
                format!("at {}", times.join(", "))
            }
        }
        _ => String::new(),
    };
    match row.side {
        Side::A => [own, String::new(), fate],
        Side::B => [fate, String::new(), own],
    }
}

/// The arrow of a segment row, `width` wide: `---- label --->`, lost `---- label ---x`,
/// unseen send `.... label ...>`.
fn arrow(row: &Row, width: usize) -> String {
    let RowKind::Segment {
        lost, sent_seen, ..
    } = &row.kind
    else {
        return String::new();
    };
    let label = format!(" {} ", arrow_label(&row.kind));
    let fill = if *sent_seen { '-' } else { '.' };
    let n = label.chars().count();
    let total = width.saturating_sub(n);
    let lead = 4.min(total);
    let tail = total - lead;
    let run = |k: usize| fill.to_string().repeat(k);
    match (row.side, *lost) {
        (Side::A, false) => format!("{}{label}{}>", run(lead), run(tail.saturating_sub(1))),
        (Side::B, false) => format!("<{}{label}{}", run(tail.saturating_sub(1)), run(lead)),
        // A lost segment stops short of the receiver, ending in x.
        (Side::A, true) => format!("{}{label}{}x", run(lead), run(tail.saturating_sub(6))),
        (Side::B, true) => format!(
            "{:5}x{}{label}{}",
            "",
            run(tail.saturating_sub(6)),
            run(lead)
        ),
    }
}

#[cfg(test)]
mod tests {
    use crate::chart::{chart, sample, ChartFormat};

    #[test]
    fn lost_fin_text_chart() {
        insta::assert_snapshot!(chart(&sample::lost_fin(), ChartFormat::Text));
    }

    #[test]
    fn abort_text_chart() {
        insta::assert_snapshot!(chart(&sample::abort_with_unseen_send(), ChartFormat::Text));
    }
}
