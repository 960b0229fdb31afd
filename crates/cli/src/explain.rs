//! `tcpstate explain STATE`: what a state means, how you get in and out (from the
//! transition table), how long it lasts on Linux, what many sockets in it mean, what to do.

use anyhow::Context;
use serde_json::json;
use std::io::Write;
use std::process::ExitCode;
use tcpstate_fsm::{explain, table, Applies, State, Transition};

/// Arguments of `tcpstate explain`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// A state, in any spelling: TIME_WAIT, TIME-WAIT, time-wait, TCP_TIME_WAIT, 6.
    state: String,
    /// Only the transitions of this profile (default: both, Linux-only rows marked).
    #[arg(long, value_enum)]
    profile: Option<crate::args::ProfileArg>,
    /// JSON output.
    #[arg(long)]
    json: bool,
}

fn wanted(row: &Transition, profile: Option<crate::args::ProfileArg>) -> bool {
    match profile {
        None => true,
        Some(p) => row.applies_to_linux(p == crate::args::ProfileArg::Linux),
    }
}

fn marker(row: &Transition) -> &'static str {
    match row.applies {
        Applies::Both => "",
        Applies::LinuxOnly => " [Linux only]",
        Applies::RfcOnly => " [RFC only]",
    }
}

/// Run `tcpstate explain`.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let state: State = args
        .state
        .parse()
        .with_context(|| format!("explain {:?}", args.state))?;
    let e = explain(state);
    let ins: Vec<&Transition> = table::transitions_into(state)
        .filter(|r| wanted(r, args.profile))
        .collect();
    let outs: Vec<&Transition> = table::transitions_from(state)
        .filter(|r| wanted(r, args.profile))
        .collect();
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    if args.json {
        let rows = |rows: &[&Transition]| -> Vec<serde_json::Value> {
            rows.iter()
                .map(|r| {
                    json!({
                        "from": r.from.name(), "to": r.to.name(), "trigger": r.trigger.label(),
                        "condition": r.condition, "sends": r.sends, "path": r.path.name(),
                        "linux_only": r.applies == Applies::LinuxOnly,
                        "rfc_only": r.applies == Applies::RfcOnly, "source": r.source,
                    })
                })
                .collect()
        };
        let doc = json!({
            "version": 1,
            "state": state.name(),
            "spellings": {
                "rfc": state.rfc_name(), "ss": state.ss_name(),
                "kernel": state.kernel_name(), "kernel_code": state.kernel_code(),
            },
            "meaning": e.meaning,
            "who": e.who,
            "linux_duration": e.linux_duration,
            "many_sockets": e.many_sockets,
            "what_to_do": e.what_to_do,
            "story": e.story,
            "ways_in": rows(&ins),
            "ways_out": rows(&outs),
        });
        writeln!(out, "{}", serde_json::to_string_pretty(&doc)?)?;
        return Ok(ExitCode::SUCCESS);
    }
    writeln!(
        out,
        "{}  (RFC 9293 {}, ss {}, kernel {} = {})\n",
        state.name(),
        state.rfc_name(),
        state.ss_name(),
        state.kernel_name(),
        state.kernel_code()
    )?;
    section(&mut out, "What it means", e.meaning)?;
    section(&mut out, "Who is in it", e.who)?;
    for (title, rows) in [("Ways in", &ins), ("Ways out", &outs)] {
        writeln!(out, "{title}")?;
        if rows.is_empty() {
            writeln!(out, "  (none)")?;
        }
        for r in rows.iter() {
            let mut label = r.trigger.label().to_string();
            if !r.condition.is_empty() {
                label.push_str(&format!(" [{}]", r.condition));
            }
            if !r.sends.is_empty() {
                label.push_str(&format!(" / send {}", r.sends));
            }
            writeln!(
                out,
                "  {:<12} → {:<12} {}{}\n  {:27}({}; {})",
                r.from.name(),
                r.to.name(),
                label,
                marker(r),
                "",
                r.path.name().replace('_', " "),
                r.source
            )?;
        }
        writeln!(out)?;
    }
    section(&mut out, "How long it lasts on Linux", e.linux_duration)?;
    section(&mut out, "Many sockets in this state", e.many_sockets)?;
    section(&mut out, "What to do", e.what_to_do)?;
    if !e.story.is_empty() {
        writeln!(out, "The full story")?;
        for paragraph in e.story {
            // Numbered paragraphs keep their number; the others get a bullet.
            let (marker, text) = match paragraph.split_once(". ") {
                Some((n, rest)) if n.chars().all(|c| c.is_ascii_digit()) => (format!("{n}."), rest),
                _ => ("-".to_string(), *paragraph),
            };
            let wrapped = wrap(text, 92, "     ");
            writeln!(out, "  {marker:<2} {}", &wrapped[5..])?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn section(out: &mut impl Write, title: &str, text: &str) -> std::io::Result<()> {
    writeln!(out, "{title}\n{}\n", wrap(text, 92, "  "))
}

/// Greedy word wrap with an indent.
fn wrap(text: &str, width: usize, indent: &str) -> String {
    let mut lines = Vec::new();
    let mut line = String::from(indent);
    for word in text.split_whitespace() {
        if line.len() > indent.len() && line.len() + 1 + word.len() > width {
            lines.push(std::mem::replace(&mut line, String::from(indent)));
        }
        if line.len() > indent.len() {
            line.push(' ');
        }
        line.push_str(word);
    }
    lines.push(line);
    lines.join("\n")
}
