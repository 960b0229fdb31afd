//! `tcpstate capture FILE`: connections in a pcap/pcapng file with both endpoints' states,
//! as a table, JSON, or Zeek conn.log lines; totals over the file (`--summary`); the
//! sequence chart of one connection (`--conn ID --chart FORMAT`).

use crate::args::ChartArg;
use crate::timeline_json::timeline_to_json;
use anyhow::{bail, Context};
use serde_json::{json, Value};
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;
use tcpstate_capture::summary::{Dwells, Percentiles};
use tcpstate_capture::zeek::{ServerPorts, PROTOCOL_PORTS};
use tcpstate_capture::{
    analyze_file, format_time, summarize_file, ConnectionReport, Options, Summary,
};
use tcpstate_fsm::{Side, State, StepKind, Timeline};

/// Arguments of `tcpstate capture`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The capture file (pcap or pcapng).
    pub file: PathBuf,
    /// Zeek mode: conn.log TSV on stdout, and Zeek's packet handling (bad-checksum packets
    /// dropped unless -C, Zeek's connection timers split connections as Zeek does).
    #[arg(long)]
    pub zeek: bool,
    /// Like `zeek -C`: keep packets with bad TCP checksums (loopback and offloaded captures).
    #[arg(short = 'C', long = "ignore-checksums")]
    pub ignore_checksums: bool,
    /// Like `zeek -b`: bare mode, no likely-server-port list except the protocols in --load.
    #[arg(short = 'b', long)]
    pub bare: bool,
    /// With -b: protocols whose server ports Zeek would have loaded (`@load
    /// base/protocols/NAME`), comma-separated: http, ftp, ssl, krb, imap, xmpp, smtp, ssh, dns, pop3.
    #[arg(long, value_delimiter = ',')]
    pub load: Vec<String>,
    /// One JSON document instead of the table.
    #[arg(long)]
    pub json: bool,
    /// Print the state timeline of every connection after the table.
    #[arg(long, conflicts_with_all = ["summary", "conn"])]
    pub timelines: bool,
    /// Totals instead of one row per connection: connections by conn_state, who closes
    /// first per server port, CLOSE_WAIT dwell percentiles per server port, RST rates.
    #[arg(long, conflicts_with = "conn")]
    pub summary: bool,
    /// Only the connection with this ID (the ID column of the table, `id` in JSON; IDs
    /// number connections in order of first packet, so use the same --zeek/-b flags).
    #[arg(long, value_name = "ID")]
    pub conn: Option<u64>,
    /// With --conn: draw its sequence chart (SYN, FIN and RST segments with both ends'
    /// states; data and pure ACKs are counted, not drawn). Default text.
    #[arg(long, value_enum, requires = "conn")]
    pub chart: Option<ChartArg>,
    /// Worker threads for the connection table (connections are sharded by 4-tuple while
    /// this thread reads and decodes); the output is the same for any count. Default: the
    /// number of CPUs, at most 8.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=256))]
    pub threads: Option<u16>,
}

fn ms(d: Duration) -> String {
    let s = d.as_secs_f64();
    if s >= 1.0 {
        format!("{s:.3}s")
    } else {
        format!("{:.3}ms", s * 1000.0)
    }
}

fn state_name(s: Option<State>) -> &'static str {
    s.map_or("?", State::name)
}

fn side_name(s: Side) -> &'static str {
    match s {
        Side::A => "orig",
        Side::B => "resp",
    }
}

fn addr(a: std::net::SocketAddr) -> String {
    a.to_string()
}

fn conn_json(c: &ConnectionReport) -> Value {
    let r = &c.rfc;
    let endpoint = |k: usize| {
        let f = &r.facts[k];
        let mut v = json!({
            "addr": addr(if k == 0 { c.orig } else { c.resp }),
            "segments": f.segments,
            "payload_bytes": f.payload,
            "syns": f.syns,
            "syn_retransmissions": f.syn_retransmissions,
            "fins": f.fins,
            "fin_retransmissions": f.fin_retransmissions,
            "time_wait_seen": r.time_wait[k],
            "fin_received_in_time_wait": f.fin_received_in_time_wait,
        });
        if let Some(s) = r.final_state[k] {
            v["final_state"] = json!(s.name());
        }
        if let Some(d) = r.close_wait[k] {
            v["close_wait_s"] = json!(d.as_secs_f64());
            v["close_wait_open"] = json!(r.close_wait_open[k]);
        }
        if let Some(at) = f.first_fin_at {
            v["first_fin_at_s"] = json!(at.as_secs_f64());
        }
        let states: Vec<Value> = r.states[k]
            .iter()
            .map(|(at, s)| json!({"at_s": at.as_secs_f64(), "state": s.name()}))
            .collect();
        v["states"] = json!(states);
        v
    };
    let notes: Vec<Value> = r
        .timeline
        .iter()
        .flat_map(|t| &t.steps)
        .filter_map(|s| match &s.kind {
            StepKind::Note(t) => {
                Some(json!({"at_s": s.at.as_secs_f64(), "side": side_name(s.side), "note": t}))
            }
            _ => None,
        })
        .collect();
    let mut v = json!({
        "id": c.id,
        "orig": addr(c.orig),
        "resp": addr(c.resp),
        "start_s": c.start_ns as f64 / 1e9,
        "duration_s": c.duration_ns as f64 / 1e9,
        "endpoints": [endpoint(0), endpoint(1)],
        "simultaneous_close": r.simultaneous_close,
        "half_open": r.half_open,
        "anomalies": r.anomalies,
        "notes": notes,
        "bad_checksums": c.bad_checksums,
        "zeek": {
            "conn_state": c.zeek.conn_state,
            "history": c.zeek.history.as_str(),
            "orig_bytes": c.zeek.orig_bytes,
            "resp_bytes": c.zeek.resp_bytes,
            "missed_bytes": c.zeek.missed_bytes,
            "orig_pkts": c.zeek.orig_pkts,
            "orig_ip_bytes": c.zeek.orig_ip_bytes,
            "resp_pkts": c.zeek.resp_pkts,
            "resp_ip_bytes": c.zeek.resp_ip_bytes,
        },
    });
    if let Some(s) = r.closed_first {
        v["closed_first_by"] = json!(side_name(s));
    }
    if let Some((s, st)) = r.reset {
        v["reset_by"] = json!(side_name(s));
        if let Some(st) = st {
            v["reset_in_state"] = json!(st.name());
        }
    }
    v
}

fn end_tag(r: &tcpstate_capture::RfcReport) -> String {
    match (r.closed_first, r.reset) {
        (Some(s), _) => side_name(s).to_string(),
        (None, Some((s, _))) => format!("RST:{}", side_name(s)),
        (None, None) => "-".to_string(),
    }
}

const TABLE_HEADER: [&str; 11] = [
    "ID",
    "ORIG -> RESP",
    "START",
    "DURATION",
    "ORIG END",
    "RESP END",
    "CLOSE1",
    "CLOSE_WAIT",
    "TW",
    "STATE",
    "HISTORY",
];

fn table_row(out: &mut impl Write, c: &ConnectionReport, timelines: bool) -> std::io::Result<()> {
    let r = &c.rfc;
    let tw = match r.time_wait {
        [true, true] => "both",
        [true, false] => "orig",
        [false, true] => "resp",
        _ => "-",
    };
    let cw = r
        .close_wait
        .iter()
        .zip(r.close_wait_open)
        .find_map(|(d, open)| d.map(|d| format!("{}{}", ms(d), if open { "+" } else { "" })))
        .unwrap_or_else(|| "-".into());
    writeln!(
        out,
        "{:>4}  {:<44} {:>17} {:>11}  {:<11} {:<11} {:<6} {:>11} {:<4} {:<6} {}",
        c.id,
        format!("{} -> {}", c.orig, c.resp),
        format_time(c.start_ns),
        ms(Duration::from_nanos(c.duration_ns.max(0) as u64)),
        state_name(r.final_state[0]),
        state_name(r.final_state[1]),
        end_tag(r),
        cw,
        tw,
        c.zeek.conn_state,
        c.zeek.history,
    )?;
    if !timelines {
        return Ok(());
    }
    for step in r.timeline.iter().flat_map(|t| &t.steps) {
        let what = match &step.kind {
            StepKind::Transition { from, to, trigger } => {
                format!("{} -> {} ({trigger})", from.name(), to.name())
            }
            StepKind::Sent {
                segment,
                retransmission,
                ..
            } => format!(
                "sent {segment}{}",
                if *retransmission {
                    " (retransmission)"
                } else {
                    ""
                }
            ),
            StepKind::Note(t) => format!("note: {t}"),
            _ => continue,
        };
        writeln!(
            out,
            "        {:>12}  {}  {what}",
            ms(step.at),
            side_name(step.side)
        )?;
    }
    Ok(())
}

fn pct(n: u64, of: u64) -> f64 {
    if of == 0 {
        0.0
    } else {
        n as f64 * 100.0 / of as f64
    }
}

fn percentiles_json(p: Option<Percentiles>) -> Value {
    match p {
        None => json!({"count": 0}),
        Some(p) => json!({
            "count": p.count,
            "p50_s": p.p50.as_secs_f64(),
            "p90_s": p.p90.as_secs_f64(),
            "p99_s": p.p99.as_secs_f64(),
            "max_s": p.max.as_secs_f64(),
        }),
    }
}

fn dwells_json(d: &mut Dwells) -> Value {
    json!({
        "completed": percentiles_json(d.completed()),
        "still_open": percentiles_json(d.still_open()),
    })
}

fn summary_json(s: &mut Summary) -> Value {
    let states: serde_json::Map<String, Value> = s
        .conn_states
        .iter()
        .map(|(k, v)| (k.to_string(), json!(v)))
        .collect();
    let resets: Vec<Value> = s
        .resets
        .iter()
        .map(|((side, state), n)| {
            let mut v = json!({"by": side_name(*side), "connections": n});
            if let Some(st) = state {
                v["in_state"] = json!(st.name());
            }
            v
        })
        .collect();
    let total = s.connections;
    let ports: Vec<Value> = s
        .ports
        .iter_mut()
        .map(|(port, p)| {
            json!({
                "port": port,
                "connections": p.connections,
                "closed_first": {
                    "orig": p.orig_closed_first,
                    "resp": p.resp_closed_first,
                    "simultaneous": p.simultaneous_close,
                    "no_fin": p.no_fin,
                },
                "reset_by_orig": p.reset_by_orig,
                "reset_by_resp": p.reset_by_resp,
                "reset_rate": pct(p.reset_by_orig + p.reset_by_resp, p.connections) / 100.0,
                "close_wait": {
                    "orig": dwells_json(&mut p.orig_close_wait),
                    "resp": dwells_json(&mut p.resp_close_wait),
                },
            })
        })
        .collect();
    let reset_total = s.reset_by(Side::A) + s.reset_by(Side::B);
    json!({
        "connections": total,
        "conn_states": states,
        "reset_connections": reset_total,
        "reset_rate": pct(reset_total, total) / 100.0,
        "resets": resets,
        "ports": ports,
    })
}

fn percentile_cells(p: Option<Percentiles>) -> String {
    match p {
        None => format!("{:>7} {:>10} {:>10} {:>10} {:>10}", 0, "-", "-", "-", "-"),
        Some(p) => format!(
            "{:>7} {:>10} {:>10} {:>10} {:>10}",
            p.count,
            ms(p.p50),
            ms(p.p90),
            ms(p.p99),
            ms(p.max)
        ),
    }
}

/// Server ports shown in the text summary (the busiest); JSON lists them all.
const SUMMARY_PORTS: usize = 20;

fn write_summary(out: &mut impl Write, s: &mut Summary) -> std::io::Result<()> {
    let total = s.connections;
    writeln!(out, "connections by conn_state (Zeek's codes)")?;
    let mut states: Vec<(&str, u64)> = s.conn_states.iter().map(|(k, v)| (*k, *v)).collect();
    states.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
    for (state, n) in states {
        writeln!(out, "  {state:<7} {n:>10} {:>6.1}%", pct(n, total))?;
    }
    let (ro, rr) = (s.reset_by(Side::A), s.reset_by(Side::B));
    writeln!(
        out,
        "\nresets: {} of {total} connections ({:.1}%): first RST by orig {ro}, by resp {rr}",
        ro + rr,
        pct(ro + rr, total)
    )?;
    for ((side, state), n) in &s.resets {
        writeln!(
            out,
            "  by {:<4} in {:<12} {n:>10}",
            side_name(*side),
            state.map_or("(unknown)", State::name)
        )?;
    }
    let mut ports: Vec<(&u16, &mut tcpstate_capture::summary::PortSummary)> =
        s.ports.iter_mut().collect();
    ports.sort_by(|a, b| b.1.connections.cmp(&a.1.connections).then(a.0.cmp(b.0)));
    let hidden = ports.len().saturating_sub(SUMMARY_PORTS);
    ports.truncate(SUMMARY_PORTS);
    writeln!(
        out,
        "\nwho closes first, per server port (the responder's port)\n  {:>5} {:>10} {:>12} {:>12} {:>8} {:>8} {:>9} {:>9} {:>7}",
        "PORT", "CONNS", "ORIG FIRST", "RESP FIRST", "SIMULT", "NO FIN", "RST ORIG", "RST RESP", "RST %"
    )?;
    for (port, p) in &ports {
        writeln!(
            out,
            "  {port:>5} {:>10} {:>12} {:>12} {:>8} {:>8} {:>9} {:>9} {:>6.1}%",
            p.connections,
            p.orig_closed_first,
            p.resp_closed_first,
            p.simultaneous_close,
            p.no_fin,
            p.reset_by_orig,
            p.reset_by_resp,
            pct(p.reset_by_orig + p.reset_by_resp, p.connections)
        )?;
    }
    writeln!(
        out,
        "\nCLOSE_WAIT dwell per server port (its FIN received -> its own FIN or RST sent; OPEN: still in CLOSE_WAIT at the end, lower bounds)\n  {:>5} {:<4} {:>7} {:>10} {:>10} {:>10} {:>10}  {:>7} {:>10}",
        "PORT", "SIDE", "COUNT", "P50", "P90", "P99", "MAX", "OPEN", "OPEN MAX"
    )?;
    for (port, p) in ports.iter_mut() {
        for (side, d) in [
            ("orig", &mut p.orig_close_wait),
            ("resp", &mut p.resp_close_wait),
        ] {
            if d.is_empty() {
                continue;
            }
            let open = d.still_open();
            writeln!(
                out,
                "  {port:>5} {side:<4} {}  {:>7} {:>10}",
                percentile_cells(d.completed()),
                open.map_or(0, |p| p.count),
                open.map_or_else(|| "-".to_string(), |p| ms(p.max)),
            )?;
        }
    }
    if hidden > 0 {
        writeln!(out, "  ({hidden} more server ports: see --json)")?;
    }
    Ok(())
}

fn lifelines(t: &Timeline) -> String {
    let mut s = String::from("\n");
    for side in [Side::A, Side::B] {
        let dwell = t.dwell(side);
        let last = dwell.len().saturating_sub(1);
        let parts: Vec<String> = dwell
            .into_iter()
            .enumerate()
            // The first CLOSED only lasts until the endpoint's first packet in the capture
            // (a server's listen() is never on the wire): not a measured dwell.
            .filter(|&(i, (state, _, _))| !(i == 0 && state == State::Closed))
            .map(|(i, (state, _, d))| {
                if i == last {
                    state.name().to_string()
                } else {
                    format!("{} {}", state.name(), ms(d))
                }
            })
            .collect();
        let parts = if parts.is_empty() {
            "(state not reconstructed: no handshake seen)".to_string()
        } else {
            parts.join(" -> ")
        };
        s.push_str(&format!("{} {}: {parts}\n", side_name(side), t.name(side)));
    }
    s
}

/// Run the command.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let server_ports = if args.bare {
        let names: Vec<&str> = args.load.iter().map(String::as_str).collect();
        ServerPorts::bare(&names).with_context(|| {
            let known: Vec<&str> = PROTOCOL_PORTS.iter().map(|(n, _)| *n).collect();
            format!(
                "unknown protocol in --load {:?}; known: {}",
                args.load,
                known.join(", ")
            )
        })?
    } else {
        ServerPorts::default_list()
    };
    // Full timelines cost time and memory: only when something prints them.
    let opts = Options {
        zeek: args.zeek,
        ignore_checksums: args.ignore_checksums,
        server_ports,
        timelines: args.timelines || args.conn.is_some() || (args.json && !args.summary),
        threads: args.threads.map_or_else(
            || {
                std::thread::available_parallelism()
                    .map_or(1, usize::from)
                    .min(8)
            },
            usize::from,
        ),
    };
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::with_capacity(1 << 16, stdout.lock());
    let mut write_err: Option<std::io::Error> = None;
    let mut conns: Vec<Value> = Vec::new();
    let mut totals = Summary::new();
    let mut chosen: Option<ConnectionReport> = None;
    let mut n = 0u64;
    let per_conn = !args.summary && args.conn.is_none();
    if args.zeek && !args.json && per_conn {
        writeln!(out, "{}", tcpstate_capture::ZEEK_HEADER)?;
    }
    let mut header_done = false;
    let result = if args.summary {
        // Totals only: with threads, each worker counts its own connections.
        summarize_file(&args.file, opts).map(|(s, capture)| {
            n = s.connections;
            totals = s;
            capture
        })
    } else {
        analyze_file(&args.file, opts, &mut |c| {
            if write_err.is_some() {
                return;
            }
            n += 1;
            if let Some(id) = args.conn {
                if c.id == id {
                    chosen = Some(c);
                }
                return;
            }
            let res = (|| -> std::io::Result<()> {
                if args.json {
                    conns.push(conn_json(&c));
                } else if args.zeek {
                    // Zeek's uids are random; these are stable per file (C + connection number).
                    writeln!(out, "{}", c.zeek_line(&format!("C{:016x}", c.id)))?;
                } else {
                    if !header_done {
                        let h = TABLE_HEADER;
                        writeln!(
                        out,
                        "{:>4}  {:<44} {:>17} {:>11}  {:<11} {:<11} {:<6} {:>11} {:<4} {:<6} {}",
                        h[0], h[1], h[2], h[3], h[4], h[5], h[6], h[7], h[8], h[9], h[10]
                    )?;
                        header_done = true;
                    }
                    table_row(&mut out, &c, args.timelines)?;
                }
                Ok(())
            })();
            if let Err(e) = res {
                write_err = Some(e);
            }
        })
    };
    if let Some(e) = write_err {
        return Err(e.into());
    }
    let mut summary = result.with_context(|| format!("reading {}", args.file.display()))?;
    let error = summary.error.take();
    let skipped: serde_json::Map<String, Value> = summary
        .skipped
        .iter()
        .map(|(k, v)| (k.clone(), json!(v)))
        .collect();
    let counts_line = format!(
        "{} connections, {} TCP segments in {} frames ({} bad TCP checksums{}); times are at the capture point",
        n,
        summary.totals.segments,
        summary.frames,
        summary.totals.bad_checksums,
        if summary.totals.dropped > 0 {
            format!(", {} dropped", summary.totals.dropped)
        } else {
            String::new()
        }
    );
    let mut doc = json!({
        "version": 1,
        "file": args.file.display().to_string(),
        "frames": summary.frames,
        "tcp_segments": summary.totals.segments,
        "bad_checksums": summary.totals.bad_checksums,
        "dropped": summary.totals.dropped,
        "skipped": skipped,
        "times_note": "times are when packets passed the capture point: exact on loopback, estimates of the endpoints' times elsewhere",
    });
    if let Some(id) = args.conn {
        // Write what we have before any read error is reported.
        let Some(c) = chosen else {
            out.flush()?;
            if let Some(e) = error {
                return Err(anyhow::Error::new(e).context(format!(
                    "reading {}: no connection {id} before this point",
                    args.file.display()
                )));
            }
            bail!(
                "no connection with ID {id} in {} (it has {n}; IDs are 1..={n}, in order of first packet, and depend on --zeek/-b)",
                args.file.display()
            );
        };
        let timeline = c
            .rfc
            .timeline
            .clone()
            .context("internal: the timeline was not recorded")?;
        if args.json {
            doc["connection"] = conn_json(&c);
            doc["timeline"] = timeline_to_json(&timeline);
            serde_json::to_writer_pretty(&mut out, &doc)?;
            writeln!(out)?;
        } else {
            let format = args.chart.unwrap_or(ChartArg::Text);
            out.write_all(tcpstate_draw::chart(&timeline, format.format()).as_bytes())?;
            if format == ChartArg::Text {
                out.write_all(lifelines(&timeline).as_bytes())?;
                let f = &c.rfc.facts;
                writeln!(
                    out,
                    "segments: orig {} ({} payload bytes), resp {} ({} payload bytes); only SYN, FIN and RST are drawn; times are at the capture point",
                    f[0].segments, f[0].payload, f[1].segments, f[1].payload
                )?;
            }
        }
    } else if args.summary {
        if args.json {
            doc["summary"] = summary_json(&mut totals);
            serde_json::to_writer_pretty(&mut out, &doc)?;
            writeln!(out)?;
        } else {
            writeln!(out, "{counts_line}\n")?;
            write_summary(&mut out, &mut totals)?;
        }
    } else if args.json {
        doc["connections"] = Value::Array(conns);
        serde_json::to_writer_pretty(&mut out, &doc)?;
        writeln!(out)?;
    } else if !args.zeek {
        writeln!(out, "{counts_line}")?;
    }
    out.flush()?;
    for (offset, why) in &summary.damaged {
        eprintln!(
            "tcpstate: warning: {}: frame at file offset {offset} skipped: {why}",
            args.file.display()
        );
    }
    if let Some(e) = error {
        return Err(anyhow::Error::new(e).context(format!(
            "reading {} (connections above cover the packets before this point)",
            args.file.display()
        )));
    }
    Ok(ExitCode::SUCCESS)
}
