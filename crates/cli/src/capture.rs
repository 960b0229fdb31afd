//! `tcpstate capture FILE`: connections in a pcap/pcapng file with both endpoints' states,
//! as a table, JSON, or Zeek conn.log lines.

use anyhow::Context;
use serde_json::{json, Value};
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;
use tcpstate_capture::zeek::{ServerPorts, PROTOCOL_PORTS};
use tcpstate_capture::{analyze_file, format_time, ConnectionReport, Options};
use tcpstate_fsm::{Side, State, StepKind};

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
    #[arg(long)]
    pub timelines: bool,
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
        let states: Vec<Value> = r
            .timeline
            .states(if k == 0 { Side::A } else { Side::B })
            .iter()
            .map(|(at, s)| json!({"at_s": at.as_secs_f64(), "state": s.name()}))
            .collect();
        v["states"] = json!(states);
        v
    };
    let notes: Vec<Value> = r
        .timeline
        .steps
        .iter()
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
            "history": c.zeek.history,
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
    let opts = Options {
        zeek: args.zeek,
        ignore_checksums: args.ignore_checksums,
        server_ports,
    };
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let mut write_err: Option<std::io::Error> = None;
    let mut conns: Vec<Value> = Vec::new();
    let mut n = 0u64;
    if args.zeek && !args.json {
        writeln!(out, "{}", tcpstate_capture::ZEEK_HEADER)?;
    }
    let table_header = format!(
        "{:>4}  {:<44} {:>17} {:>11}  {:<11} {:<11} {:<6} {:>11} {:<4} {:<6} {}",
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
        "HISTORY"
    );
    let mut header_done = false;
    let result = analyze_file(&args.file, opts, &mut |c| {
        if write_err.is_some() {
            return;
        }
        n += 1;
        let res = (|| -> std::io::Result<()> {
            if args.json {
                conns.push(conn_json(&c));
            } else if args.zeek {
                // Zeek's uids are random; these are stable per file (C + connection number).
                writeln!(out, "{}", c.zeek_line(&format!("C{:016x}", c.id)))?;
            } else {
                if !header_done {
                    writeln!(out, "{table_header}")?;
                    header_done = true;
                }
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
                    .find_map(|(d, open)| {
                        d.map(|d| format!("{}{}", ms(d), if open { "+" } else { "" }))
                    })
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
                    match (r.closed_first, r.reset) {
                        (Some(s), _) => side_name(s).to_string(),
                        (None, Some((s, _))) => format!("RST:{}", side_name(s)),
                        (None, None) => "-".to_string(),
                    },
                    cw,
                    tw,
                    c.zeek.conn_state,
                    c.zeek.history,
                )?;
                if args.timelines {
                    for step in &r.timeline.steps {
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
                }
            }
            Ok(())
        })();
        if let Err(e) = res {
            write_err = Some(e);
        }
    });
    if let Some(e) = write_err {
        return Err(e.into());
    }
    let mut summary = result.with_context(|| format!("reading {}", args.file.display()))?;
    let error = summary.error.take();
    if args.json {
        let skipped: serde_json::Map<String, Value> = summary
            .skipped
            .iter()
            .map(|(k, v)| (k.clone(), json!(v)))
            .collect();
        let doc = json!({
            "version": 1,
            "file": args.file.display().to_string(),
            "frames": summary.frames,
            "tcp_segments": summary.totals.segments,
            "bad_checksums": summary.totals.bad_checksums,
            "dropped": summary.totals.dropped,
            "skipped": skipped,
            "connections": conns,
            "times_note": "times are when packets passed the capture point: exact on loopback, estimates of the endpoints' times elsewhere",
        });
        serde_json::to_writer_pretty(&mut out, &doc)?;
        writeln!(out)?;
    } else if !args.zeek {
        writeln!(
            out,
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
        )?;
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
