//! The sharded analysis (`Options::threads` > 1) must give exactly what one table gives:
//! the same reports, with the same IDs, in the same order, in every mode; and `summarize`
//! the same totals. Checked on the
//! Zeek corpus and on generated captures built to stress the merge: many interleaved
//! connections on few 4-tuples (reuse), equal timestamps (timers due at the same time in
//! different shards), idle gaps that fire Zeek's timers, resets, lost packets, mid-stream
//! starts and bad checksums.

use proptest::prelude::*;
use proptest::strategy::ValueTree;
use std::path::{Path, PathBuf};
use tcpstate_capture::{analyze, summarize, CaptureReader, Options};

fn modes() -> Vec<Options> {
    let mut v = Vec::new();
    for zeek in [false, true] {
        for ignore_checksums in [false, true] {
            for timelines in [false, true] {
                v.push(Options {
                    zeek,
                    ignore_checksums,
                    timelines,
                    ..Options::default()
                });
            }
        }
    }
    v
}

/// Everything the analysis said, as text: every report in order, then the totals.
fn run(bytes: &[u8], opts: &Options, threads: usize) -> String {
    let reader = CaptureReader::new(bytes).expect("a valid capture");
    let mut text = String::new();
    let opts = Options {
        threads,
        ..opts.clone()
    };
    let summary = analyze(reader, opts, &mut |c| text.push_str(&format!("{c:?}\n")));
    text.push_str(&format!(
        "{:?} {} {:?} {:?}",
        summary.totals, summary.frames, summary.skipped, summary.error
    ));
    text
}

/// The totals of `summarize`, as text (dwell lists are compared by their percentiles: their
/// order is not part of the result).
fn totals(bytes: &[u8], opts: &Options, threads: usize) -> String {
    let reader = CaptureReader::new(bytes).expect("a valid capture");
    let opts = Options {
        threads,
        ..opts.clone()
    };
    let (mut s, capture) = summarize(reader, opts);
    let mut text = format!(
        "{} {:?} {:?} {:?} {}\n",
        s.connections, s.conn_states, s.resets, capture.totals, capture.frames
    );
    for (port, p) in s.ports.iter_mut() {
        text.push_str(&format!(
            "{port}: {} {} {} {} {} {} {} {:?} {:?} {:?} {:?}\n",
            p.connections,
            p.orig_closed_first,
            p.resp_closed_first,
            p.simultaneous_close,
            p.no_fin,
            p.reset_by_orig,
            p.reset_by_resp,
            p.orig_close_wait.completed(),
            p.orig_close_wait.still_open(),
            p.resp_close_wait.completed(),
            p.resp_close_wait.still_open(),
        ));
    }
    text
}

fn assert_same_for_any_thread_count(bytes: &[u8], what: &str) {
    for opts in modes() {
        let one = totals(bytes, &opts, 1);
        for threads in [2, 3] {
            assert_eq!(
                one,
                totals(bytes, &opts, threads),
                "{what}: summarize, {threads} threads"
            );
        }
    }
    for opts in modes() {
        let one = run(bytes, &opts, 1);
        for threads in [2, 3, 5] {
            let many = run(bytes, &opts, threads);
            if one != many {
                let at = one
                    .lines()
                    .zip(many.lines())
                    .position(|(a, b)| a != b)
                    .unwrap_or(0);
                panic!(
                    "{what}: {threads} threads differ from one (zeek {}, -C {}, timelines {}) at line {at}:\n  one:  {}\n  many: {}",
                    opts.zeek,
                    opts.ignore_checksums,
                    opts.timelines,
                    one.lines().nth(at).unwrap_or("<end>"),
                    many.lines().nth(at).unwrap_or("<end>"),
                );
            }
        }
    }
}

/// A pcap (LINKTYPE_RAW, µs) writer for generated IPv4/TCP packets.
struct Pcap(Vec<u8>);

impl Pcap {
    fn new() -> Pcap {
        let mut f = vec![0xd4, 0xc3, 0xb2, 0xa1, 2, 0, 4, 0];
        f.extend([0u8; 8]);
        f.extend(65535u32.to_le_bytes());
        f.extend(101u32.to_le_bytes());
        Pcap(f)
    }

    fn tcp(&mut self, g: &Generated) {
        let (ts_us, src, dst, payload) = (g.ts, g.src, g.dst, g.len);
        let total = 40 + payload;
        let mut p = Vec::with_capacity(usize::from(total));
        p.extend([0x45, 0]);
        p.extend(total.to_be_bytes());
        p.extend([0, 0, 0x40, 0, 64, 6, 0, 0]);
        p.extend(src.0);
        p.extend(dst.0);
        let ip_sum = checksum(&p, 0);
        p[10..12].copy_from_slice(&ip_sum.to_be_bytes());
        p.extend(src.1.to_be_bytes());
        p.extend(dst.1.to_be_bytes());
        p.extend(g.seq.to_be_bytes());
        p.extend(g.ack.to_be_bytes());
        p.extend([0x50, g.flags]);
        p.extend(65535u16.to_be_bytes());
        p.extend([0, 0, 0, 0]);
        p.extend(std::iter::repeat_n(b'x', usize::from(payload)));
        let mut pseudo = 0u32;
        for w in src.0.chunks(2).chain(dst.0.chunks(2)) {
            pseudo += u32::from(u16::from_be_bytes([w[0], w[1]]));
        }
        pseudo += 6 + u32::from(20 + payload);
        let mut sum = checksum(&p[20..], pseudo);
        if !g.good {
            sum = sum.wrapping_add(1);
        }
        p[36..38].copy_from_slice(&sum.to_be_bytes());
        self.0.extend(((ts_us / 1_000_000) as u32).to_le_bytes());
        self.0.extend(((ts_us % 1_000_000) as u32).to_le_bytes());
        self.0.extend((p.len() as u32).to_le_bytes());
        self.0.extend((p.len() as u32).to_le_bytes());
        self.0.extend(p);
    }
}

fn checksum(bytes: &[u8], initial: u32) -> u16 {
    let mut sum = initial;
    for w in bytes.chunks(2) {
        sum += u32::from(u16::from_be_bytes([w[0], *w.get(1).unwrap_or(&0)]));
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

const SYN: u8 = 0x02;
const FIN: u8 = 0x01;
const RST: u8 = 0x04;
const ACK: u8 = 0x10;

/// What happens to one connection: how it ends, and which packets are missing.
#[derive(Debug, Clone)]
struct Plan {
    client: u8,
    port: u16,
    start_us: u64,
    /// 0: client closes first, 1: server closes first, 2: client resets, 3: server never
    /// answers, 4: mid-stream (no handshake), 5: server resets.
    ending: u8,
    data: u16,
    /// Drop the packet with this index (out of range: none).
    lost: usize,
    /// Bad TCP checksum on the packet with this index.
    bad: usize,
    /// Time step between packets, µs (0: equal timestamps).
    step_us: u64,
}

fn plan() -> impl Strategy<Value = Plan> {
    (
        0u8..3,
        prop_oneof![Just(80u16), Just(8080), 1u16..4],
        // Whole seconds often: connections created, closed and timed out at equal times.
        prop_oneof![(0u64..40).prop_map(|s| s * 1_000_000), 0u64..30_000_000],
        0u8..6,
        0u16..3000,
        0usize..20,
        0usize..40,
        prop_oneof![Just(0u64), Just(1), 1..2_000_000u64, Just(7_000_000)],
    )
        .prop_map(
            |(client, port, start_us, ending, data, lost, bad, step_us)| Plan {
                client,
                port,
                start_us,
                ending,
                data,
                lost,
                bad,
                step_us,
            },
        )
}

/// One generated packet.
struct Generated {
    ts: u64,
    order: usize,
    src: ([u8; 4], u16),
    dst: ([u8; 4], u16),
    seq: u32,
    ack: u32,
    flags: u8,
    len: u16,
    good: bool,
}

/// Render plans into one capture, packets sorted by time (stable: equal times keep
/// generation order), reusing 4-tuples across plans.
fn capture(plans: &[Plan]) -> Vec<u8> {
    let mut packets: Vec<Generated> = Vec::new();
    for (n, p) in plans.iter().enumerate() {
        let c = ([10, 0, 0, 1 + p.client], 40000 + (n as u16 % 3));
        let s = ([10, 0, 1, 1], p.port);
        let (ci, si) = (1000u32.wrapping_mul(n as u32 + 1), 7_000_000u32);
        let d = u32::from(p.data);
        let mut steps: Vec<(bool, u32, u32, u8, u16)> = Vec::new(); // from client?, seq, ack, flags, len
        if p.ending != 4 {
            steps.push((true, ci, 0, SYN, 0));
            if p.ending == 3 {
                steps.push((true, ci, 0, SYN, 0));
            } else {
                steps.push((false, si, ci + 1, SYN | ACK, 0));
                steps.push((true, ci + 1, si + 1, ACK, 0));
            }
        }
        if p.ending != 3 {
            steps.push((true, ci + 1, si + 1, ACK, p.data));
            steps.push((false, si + 1, ci + 1 + d, ACK, 100));
            let (c1, s1) = (ci + 1 + d, si + 101);
            match p.ending {
                0 | 4 => {
                    steps.push((true, c1, s1, FIN | ACK, 0));
                    steps.push((false, s1, c1 + 1, FIN | ACK, 0));
                    steps.push((true, c1 + 1, s1 + 1, ACK, 0));
                }
                1 => {
                    steps.push((false, s1, c1, FIN | ACK, 0));
                    steps.push((true, c1, s1 + 1, ACK, 0));
                    steps.push((true, c1, s1 + 1, FIN | ACK, 0));
                    steps.push((false, s1 + 1, c1 + 1, ACK, 0));
                }
                2 => steps.push((true, c1, s1, RST | ACK, 0)),
                _ => steps.push((false, s1, c1, RST, 0)),
            }
        }
        for (k, (from_client, seq, ack, flags, len)) in steps.into_iter().enumerate() {
            if k == p.lost {
                continue;
            }
            let ts = p.start_us + k as u64 * p.step_us;
            let good = k != p.bad;
            let (src, dst) = if from_client { (c, s) } else { (s, c) };
            packets.push(Generated {
                ts,
                order: packets.len(),
                src,
                dst,
                seq,
                ack,
                flags,
                len,
                good,
            });
        }
    }
    // A last connection long after the others: every timer still pending fires before it.
    packets.push(Generated {
        ts: 1_000_000_000,
        order: packets.len(),
        src: ([10, 0, 9, 9], 50000),
        dst: ([10, 0, 1, 1], 80),
        seq: 1,
        ack: 0,
        flags: SYN,
        len: 0,
        good: true,
    });
    packets.sort_by_key(|p| (p.ts, p.order));
    let mut w = Pcap::new();
    for p in &packets {
        w.tcp(p);
    }
    w.0
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn generated_captures_give_the_same_reports_for_any_thread_count(
        plans in proptest::collection::vec(plan(), 1..120),
    ) {
        let bytes = capture(&plans);
        assert_same_for_any_thread_count(&bytes, "generated capture");
    }
}

/// Larger than a batch of the sharded reader, so that merges span many batches.
#[test]
fn a_capture_of_many_batches_gives_the_same_reports_for_any_thread_count() {
    let mut runner = proptest::test_runner::TestRunner::deterministic();
    let plans: Vec<Plan> = (0..3000)
        .map(|_| plan().new_tree(&mut runner).unwrap().current())
        .collect();
    let bytes = capture(&plans);
    assert_same_for_any_thread_count(&bytes, "3000 generated connections");
}

fn corpus() -> Option<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/corpus/zeek/traces");
    dir.is_dir().then_some(dir)
}

#[test]
fn the_zeek_corpus_gives_the_same_reports_for_any_thread_count() {
    let Some(dir) = corpus() else {
        eprintln!("skipping: ../shared/corpus/zeek is absent");
        return;
    };
    let mut traces: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    traces.sort();
    assert!(!traces.is_empty());
    for trace in traces {
        let bytes = std::fs::read(&trace).unwrap();
        if CaptureReader::new(&bytes[..]).is_err() {
            continue;
        }
        assert_same_for_any_thread_count(&bytes, &trace.display().to_string());
    }
}

/// The same packets as a pcapng whose interface has `if_tsoffset` = `offset_s` seconds.
fn to_pcapng(pcap: &[u8], offset_s: i64) -> Vec<u8> {
    let block = |kind: u32, body: &[u8]| {
        let len = (12 + body.len().div_ceil(4) * 4) as u32;
        let mut b = Vec::new();
        b.extend(kind.to_le_bytes());
        b.extend(len.to_le_bytes());
        b.extend(body);
        b.resize(len as usize - 4, 0);
        b.extend(len.to_le_bytes());
        b
    };
    let mut shb = Vec::new();
    shb.extend(0x1A2B_3C4Du32.to_le_bytes());
    shb.extend([1, 0, 0, 0]);
    shb.extend((-1i64).to_le_bytes());
    let mut idb = Vec::new();
    idb.extend(101u16.to_le_bytes()); // LINKTYPE_RAW
    idb.extend([0, 0]);
    idb.extend(65535u32.to_le_bytes());
    idb.extend(14u16.to_le_bytes()); // if_tsoffset
    idb.extend(8u16.to_le_bytes());
    idb.extend(offset_s.to_le_bytes());
    idb.extend([0, 0, 0, 0]); // opt_endofopt
    let mut out = block(0x0A0D_0D0A, &shb);
    out.extend(block(1, &idb));
    let mut at = 24;
    while at + 16 <= pcap.len() {
        let word = |k: usize| u32::from_le_bytes(pcap[at + k..at + k + 4].try_into().unwrap());
        let ts_us = u64::from(word(0)) * 1_000_000 + u64::from(word(4));
        let caplen = word(8) as usize;
        let mut epb = Vec::new();
        epb.extend(0u32.to_le_bytes());
        epb.extend(((ts_us >> 32) as u32).to_le_bytes());
        epb.extend((ts_us as u32).to_le_bytes());
        epb.extend((caplen as u32).to_le_bytes());
        epb.extend(word(12).to_le_bytes());
        epb.extend(&pcap[at + 16..at + 16 + caplen]);
        out.extend(block(6, &epb));
        at += 16 + caplen;
    }
    out
}

/// Timestamps at the ends of representable time (a garbage `if_tsoffset`): every timer
/// computation saturates, nothing overflows (debug builds check), nothing loops for ever,
/// and threads still agree. This used to hang in Zeek mode (a timer re-armed at `now`).
#[test]
fn timestamps_at_the_end_of_time_neither_overflow_nor_hang() {
    let mut runner = proptest::test_runner::TestRunner::deterministic();
    let plans: Vec<Plan> = (0..60)
        .map(|_| plan().new_tree(&mut runner).unwrap().current())
        .collect();
    let pcap = capture(&plans);
    for offset_s in [
        i64::MAX / 1_000_000_000 - 20,
        i64::MAX,
        i64::MIN / 1_000_000_000,
        i64::MIN,
    ] {
        let bytes = to_pcapng(&pcap, offset_s);
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            assert_same_for_any_thread_count(&bytes, "end of time");
            let _ = tx.send(());
        });
        match rx.recv_timeout(std::time::Duration::from_secs(120)) {
            Ok(()) => {}
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                panic!("if_tsoffset {offset_s}: the analysis panicked (see above)")
            }
            Err(_) => panic!("if_tsoffset {offset_s}: the analysis did not finish in 120 s"),
        }
    }
}
