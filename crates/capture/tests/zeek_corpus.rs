//! Every trace of ../shared/corpus/zeek against the conn.log Zeek itself expects for it.
//!
//! Rows are matched by (orig, resp) tuple and, within a tuple, by order. The comparison
//! covers conn_state, history, packet and IP byte counts, and duration / orig_bytes /
//! resp_bytes / missed_bytes where Zeek gives them (see the corpus README). The test prints
//! every difference and the match rates, and fails on any difference not listed in
//! `KNOWN_DIFFERENCES` (each with its reason).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use tcpstate_capture::zeek::ServerPorts;
use tcpstate_capture::{analyze_file, ConnectionReport, Options};

fn corpus() -> Option<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/corpus/zeek");
    dir.join("MANIFEST.tsv").exists().then_some(dir)
}

/// The uid-independent fields of a conn.log row, as strings.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Row {
    tuple: String,
    duration: String,
    orig_bytes: String,
    resp_bytes: String,
    conn_state: String,
    missed_bytes: String,
    history: String,
    orig_pkts: String,
    orig_ip_bytes: String,
    resp_pkts: String,
    resp_ip_bytes: String,
}

/// How to read one field of a row.
type Field = fn(&Row) -> &String;

fn parse_baseline(text: &str) -> Vec<Row> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let f: Vec<&str> = l.split('\t').collect();
            (f.len() >= 20 && f[6] == "tcp").then(|| Row {
                tuple: format!("{}:{} > {}:{}", f[2], f[3], f[4], f[5]),
                duration: f[8].into(),
                orig_bytes: f[9].into(),
                resp_bytes: f[10].into(),
                conn_state: f[11].into(),
                missed_bytes: f[14].into(),
                history: f[15].into(),
                orig_pkts: f[16].into(),
                orig_ip_bytes: f[17].into(),
                resp_pkts: f[18].into(),
                resp_ip_bytes: f[19].into(),
            })
        })
        .collect()
}

fn ours(c: &ConnectionReport) -> Row {
    let line = c.zeek_line("X");
    let f: Vec<&str> = line.split('\t').collect();
    Row {
        tuple: format!("{}:{} > {}:{}", f[2], f[3], f[4], f[5]),
        duration: f[8].into(),
        orig_bytes: f[9].into(),
        resp_bytes: f[10].into(),
        conn_state: f[11].into(),
        missed_bytes: f[14].into(),
        history: f[15].into(),
        orig_pkts: f[16].into(),
        orig_ip_bytes: f[17].into(),
        resp_pkts: f[18].into(),
        resp_ip_bytes: f[19].into(),
    }
}

/// The protocol scripts each bare (`-b`) Zeek test `@load`s (from the test files named in
/// MANIFEST.tsv): they decide `likely_server_ports` in bare mode.
fn bare_loads(trace: &Path) -> &'static [&'static str] {
    let name = trace.file_name().and_then(|n| n.to_str()).unwrap_or("");
    match name {
        "tcp__missing-syn.pcap" | "tcp__miss_end_data.pcap" | "mixed-vlan-mpls.pcap" => &["http"],
        "ftp__ipv4.pcap" => &["ftp"],
        "http__concurrent-range-requests.pcap" => &["http"],
        "tls__imap-starttls.pcap" => &["ssl", "imap"],
        "krb__optional-service-name.pcap" => &["krb"],
        "pop3__bad-list-retr-crafted.pcap" | "pop3__pop3.pcap" => &["pop3"],
        "tls__xmpp-starttls.pcap" => &["ssl", "xmpp"],
        "http__connect-with-header.pcap" => &["http", "ssl"],
        "smtp.pcap" => &["smtp"],
        _ => &[],
    }
}

fn run(trace: &Path, flags: &str) -> Vec<Row> {
    let bare = flags.split_whitespace().any(|f| f == "-b");
    let opts = Options {
        zeek: true,
        ignore_checksums: flags.split_whitespace().any(|f| f == "-C"),
        timelines: true,
        server_ports: if bare {
            ServerPorts::bare(bare_loads(trace)).unwrap()
        } else {
            ServerPorts::default_list()
        },
        ..Options::default()
    };
    let mut rows = Vec::new();
    let summary = analyze_file(trace, opts, &mut |c| rows.push(ours(&c)))
        .unwrap_or_else(|e| panic!("{}: {e}", trace.display()));
    assert!(
        summary.error.is_none(),
        "{}: {:?}",
        trace.display(),
        summary.error
    );
    rows
}

/// Differences accepted, with their reason: (case, tuple, field, reason); `*` matches any.
const KNOWN_DIFFERENCES: &[(&str, &str, &str, &str)] = &[(
    "scripts.base.frameworks.netcontrol.packetfilter__conn.log",
    "*",
    "*",
    "the Zeek test installs a NetControl DROP rule for every originator on \
     connection_established, so Zeek stops seeing those hosts' packets after the handshake \
     (rows `Sh`, one packet each way, and fewer rows); tcpstate has no NetControl and sees \
     every packet of smtp.pcap",
)];

fn known(case: &str, tuple: &str, field: &str) -> bool {
    KNOWN_DIFFERENCES
        .iter()
        .any(|(c, t, f, _)| *c == case && (*t == "*" || *t == tuple) && (*f == "*" || *f == field))
}

#[test]
fn zeek_corpus_conn_state_and_history() {
    let Some(dir) = corpus() else {
        eprintln!("skipping: ../shared/corpus/zeek is absent");
        return;
    };
    let manifest = std::fs::read_to_string(dir.join("MANIFEST.tsv")).unwrap();
    let mut cases: Vec<(String, PathBuf, Vec<Row>, String)> = Vec::new();
    for line in manifest.lines().skip(1) {
        let f: Vec<&str> = line.split('\t').collect();
        if f.len() < 4 {
            continue;
        }
        let baseline = std::fs::read_to_string(dir.join(f[2])).unwrap();
        cases.push((
            f[0].into(),
            dir.join(f[1]),
            parse_baseline(&baseline),
            f[3].into(),
        ));
    }
    // The four RST traces: `history, conn_state` lines, run with -b -C.
    let rst = std::fs::read_to_string(dir.join("baselines/conn_state-RST-behavior.out")).unwrap();
    let names = [
        "single-rst",
        "syn-then-rst",
        "syn-then-ack-then-rst",
        "syn-then-stuff-then-rst",
    ];
    for (name, line) in names
        .iter()
        .zip(rst.lines().filter(|l| !l.starts_with('#')))
    {
        let (history, state) = line.split_once(", ").unwrap();
        let trace = dir.join(format!("traces/tcp__{name}.pcap"));
        let mut ours_rows = run(&trace, "-b -C");
        assert_eq!(ours_rows.len(), 1, "{name}");
        let row = ours_rows.remove(0);
        let expected = Row {
            history: history.into(),
            conn_state: state.into(),
            ..row.clone()
        };
        cases.push((
            format!("conn_state-RST-behavior/{name}"),
            trace,
            vec![expected],
            "-b -C".into(),
        ));
    }

    let fields: [(&str, Field); 10] = [
        ("conn_state", |r| &r.conn_state),
        ("history", |r| &r.history),
        ("orig_pkts", |r| &r.orig_pkts),
        ("resp_pkts", |r| &r.resp_pkts),
        ("orig_ip_bytes", |r| &r.orig_ip_bytes),
        ("resp_ip_bytes", |r| &r.resp_ip_bytes),
        ("duration", |r| &r.duration),
        ("orig_bytes", |r| &r.orig_bytes),
        ("resp_bytes", |r| &r.resp_bytes),
        ("missed_bytes", |r| &r.missed_bytes),
    ];
    let mut matched = HashMap::<&str, (usize, usize)>::new();
    let mut unexpected = Vec::new();
    for (case, trace, expected, flags) in &cases {
        let got = run(trace, flags);
        // Group by tuple, keeping order.
        let mut got_by: HashMap<&str, Vec<&Row>> = HashMap::new();
        for r in &got {
            got_by.entry(&r.tuple).or_default().push(r);
        }
        let mut seen: HashMap<&str, usize> = HashMap::new();
        for e in expected {
            let k = seen.entry(&e.tuple).or_default();
            let g = got_by
                .get(e.tuple.as_str())
                .and_then(|v| v.get(*k))
                .copied();
            *k += 1;
            for (name, get) in &fields {
                let entry = matched.entry(name).or_default();
                entry.1 += 1;
                let ok = g.is_some_and(|g| get(g) == get(e));
                if ok {
                    entry.0 += 1;
                    continue;
                }
                let got_v = g.map_or("<no row>".to_string(), |g| get(g).clone());
                let msg = format!("{case}: {} {name}: zeek {} ours {got_v}", e.tuple, get(e));
                eprintln!("DIFF {msg}");
                if !known(case, &e.tuple, name) {
                    unexpected.push(msg);
                }
            }
        }
        let expected_count = expected.len();
        if got.len() != expected_count {
            let msg = format!("{case}: {} TCP rows, zeek has {expected_count}", got.len());
            eprintln!("DIFF {msg}");
            if !known(case, "*", "rows") {
                unexpected.push(msg);
            }
        }
    }
    let mut names: Vec<_> = matched.keys().copied().collect();
    names.sort();
    for n in names {
        let (ok, all) = matched[n];
        eprintln!("match rate {n}: {ok}/{all}");
    }
    assert!(
        unexpected.is_empty(),
        "{} unexpected differences:\n{}",
        unexpected.len(),
        unexpected.join("\n")
    );
}
