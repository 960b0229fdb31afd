//! `tcpstate-capture`: from a pcap or pcapng file to TCP connections, with both endpoints'
//! RFC 9293 state timelines and Zeek's `conn_state` / `history` for each.
//!
//! What it is for: reading captures (streaming, one packet at a time: memory follows the
//! number of concurrent connections, not the file size), splitting packets into connections
//! (4-tuple plus incarnation), reconstructing each endpoint's states by driving the
//! `tcpstate-fsm` machine, and computing Zeek's conn.log fields exactly as Zeek's TCP
//! analyzer does, so that `tcpstate capture --zeek` can stand in for `zeek -r`.
//!
//! What it is not: a protocol dissector (no application layers), a live capturer (read
//! files made by tcpdump/dumpcap), or a TCP stream reassembler (payload bytes are never
//! kept; only sequence ranges, for Zeek's gap accounting). It never prints.
//!
//! ```no_run
//! use tcpstate_capture::{analyze_file, Options};
//! let summary = analyze_file("trace.pcap", Options::default(), &mut |conn| {
//!     let _ = (conn.orig, conn.zeek.conn_state, conn.rfc.closed_first);
//! }).unwrap();
//! assert!(summary.error.is_none());
//! assert!(summary.totals.segments > 0);
//! ```
#![deny(missing_docs)]

pub mod decode;
mod error;
pub mod reader;
mod rfc;
mod sharded;
mod short;
pub mod summary;
mod tracker;
pub mod zeek;

pub use error::CaptureError;
pub use reader::{CaptureReader, Format, LinkType, Packet};
pub use rfc::{EndpointFacts, RfcReport, RfcView};
pub use short::{History, StateLog};
pub use summary::Summary;
pub use tracker::{Options, Totals, Tracker};

use decode::{Decoder, Skip, TcpSegment};
use std::collections::BTreeMap;
use std::io::Read;
use std::net::SocketAddr;
use std::path::Path;

/// Zeek's conn.log fields that do not depend on Zeek's random uid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ZeekSummary {
    /// `conn_state`.
    pub conn_state: &'static str,
    /// `history`.
    pub history: History,
    /// `orig_bytes` (Zeek's sequence-space size).
    pub orig_bytes: u64,
    /// `resp_bytes`.
    pub resp_bytes: u64,
    /// `missed_bytes`.
    pub missed_bytes: u64,
    /// `orig_pkts`.
    pub orig_pkts: u64,
    /// `orig_ip_bytes`.
    pub orig_ip_bytes: u64,
    /// `resp_pkts`.
    pub resp_pkts: u64,
    /// `resp_ip_bytes`.
    pub resp_ip_bytes: u64,
}

/// One finished connection.
#[derive(Debug, Clone)]
pub struct ConnectionReport {
    /// Sequence number of the connection in order of first packet (1-based).
    pub id: u64,
    /// Time of the first packet, ns since the Unix epoch.
    pub start_ns: i64,
    /// The originator (Zeek's orientation: the SYN sender, or a guess by port).
    pub orig: SocketAddr,
    /// The responder.
    pub resp: SocketAddr,
    /// Zeek's duration: first packet to last packet before both sides closed.
    pub duration_ns: i64,
    /// Zeek's view.
    pub zeek: ZeekSummary,
    /// Segments with a bad TCP checksum.
    pub bad_checksums: u64,
    /// The RFC 9293 reconstruction.
    pub rfc: RfcReport,
}

impl ConnectionReport {
    /// The conn.log line (Zeek's ASCII writer, tab-separated) with the given uid.
    pub fn zeek_line(&self, uid: &str) -> String {
        let ts = format_time(self.start_ns);
        let z = &self.zeek;
        // set_conn: duration and sizes only when the duration is positive.
        let (dur, ob, rb) = if self.duration_ns > 0 {
            (
                format_time(self.duration_ns),
                z.orig_bytes.to_string(),
                z.resp_bytes.to_string(),
            )
        } else {
            ("-".into(), "-".into(), "-".into())
        };
        let history = if z.history.is_empty() {
            "-"
        } else {
            z.history.as_str()
        };
        format!(
            "{ts}\t{uid}\t{}\t{}\t{}\t{}\ttcp\t-\t{dur}\t{ob}\t{rb}\t{}\t-\t-\t{}\t{history}\t{}\t{}\t{}\t{}\t-\t6",
            self.orig.ip(),
            self.orig.port(),
            self.resp.ip(),
            self.resp.port(),
            z.conn_state,
            z.missed_bytes,
            z.orig_pkts,
            z.orig_ip_bytes,
            z.resp_pkts,
            z.resp_ip_bytes,
        )
    }
}

/// The conn.log header lines (Zeek's ASCII writer).
pub const ZEEK_HEADER: &str = "#separator \\x09\n#set_separator\t,\n#empty_field\t(empty)\n#unset_field\t-\n#path\tconn\n#fields\tts\tuid\tid.orig_h\tid.orig_p\tid.resp_h\tid.resp_p\tproto\tservice\tduration\torig_bytes\tresp_bytes\tconn_state\tlocal_orig\tlocal_resp\tmissed_bytes\thistory\torig_pkts\torig_ip_bytes\tresp_pkts\tresp_ip_bytes\ttunnel_parents\tip_proto\n#types\ttime\tstring\taddr\tport\taddr\tport\tenum\tstring\tinterval\tcount\tcount\tstring\tbool\tbool\tcount\tstring\tcount\tcount\tcount\tcount\tset[string]\tcount";

/// Seconds with six decimals, as Zeek prints times and intervals (truncated to µs).
pub fn format_time(ns: i64) -> String {
    let us = ns.div_euclid(1000);
    format!(
        "{}.{:06}",
        us.div_euclid(1_000_000),
        us.rem_euclid(1_000_000)
    )
}

/// What a whole capture gave besides its connections.
#[derive(Debug, Default)]
pub struct CaptureSummary {
    /// Frames read.
    pub frames: u64,
    /// Segment and connection counters.
    pub totals: Totals,
    /// Frames that yielded no TCP segment, by reason.
    pub skipped: BTreeMap<String, u64>,
    /// The first damaged frames (offset, reason), at most 10, for warnings.
    pub damaged: Vec<(u64, String)>,
    /// The format read.
    pub format: Option<Format>,
    /// A read error part-way through the file: the connections reported cover the packets
    /// before it.
    pub error: Option<CaptureError>,
}

/// Analyse a capture file; `out` receives each connection as it finishes. An error opening
/// the file is an `Err`; an error part-way is in [`CaptureSummary::error`].
pub fn analyze_file(
    path: impl AsRef<Path>,
    opts: Options,
    out: &mut dyn FnMut(ConnectionReport),
) -> Result<CaptureSummary, CaptureError> {
    let reader = CaptureReader::open(path)?;
    Ok(analyze(reader, opts, out))
}

/// Analyse a capture from a reader. On a read error part-way, the connections seen so far
/// are still reported through `out`, and the error is in [`CaptureSummary::error`].
/// With [`Options::threads`] above 1 the connection table is sharded over worker threads;
/// `out` is still called on this thread, with the same reports in the same order.
pub fn analyze<R: Read>(
    reader: CaptureReader<R>,
    opts: Options,
    out: &mut dyn FnMut(ConnectionReport),
) -> CaptureSummary {
    if opts.threads > 1 {
        return sharded::analyze(reader, opts, out);
    }
    let mut tracker = Tracker::new(opts.clone());
    let (mut summary, result) =
        read_segments(reader, &opts, |ts, seg| tracker.segment(ts, seg, out));
    summary.totals = tracker.finish(out);
    summary.error = result.err();
    summary
}

/// Analyse a capture for its totals only: with [`Options::threads`] above 1, each worker
/// counts its own connections and the totals are merged, so no report crosses threads (the
/// totals do not depend on the order connections are counted in).
pub fn summarize<R: Read>(reader: CaptureReader<R>, opts: Options) -> (Summary, CaptureSummary) {
    if opts.threads > 1 {
        return sharded::summarize(reader, opts);
    }
    let mut totals = Summary::new();
    let summary = analyze(reader, opts, &mut |c| totals.add(&c));
    (totals, summary)
}

/// [`summarize`] a capture file. An error opening the file is an `Err`.
pub fn summarize_file(
    path: impl AsRef<Path>,
    opts: Options,
) -> Result<(Summary, CaptureSummary), CaptureError> {
    let reader = CaptureReader::open(path)?;
    Ok(summarize(reader, opts))
}

/// Read and decode every frame, counting what is skipped; `segment` receives each TCP
/// segment with its time (in Zeek mode truncated to microseconds, as Zeek reads through
/// libpcap). The error is the read error that ended the file early, if any.
pub(crate) fn read_segments<R: Read>(
    mut reader: CaptureReader<R>,
    opts: &Options,
    mut segment: impl FnMut(i64, &TcpSegment),
) -> (CaptureSummary, Result<(), CaptureError>) {
    let mut summary = CaptureSummary {
        format: Some(reader.format()),
        ..CaptureSummary::default()
    };
    // Checksums are verified unless Zeek mode was told to ignore them.
    let mut decoder = Decoder::new(!(opts.zeek && opts.ignore_checksums));
    // Only Zeek mode without -C acts on IPv4 header checksums (it drops such packets).
    decoder.verify_ip_checksums = opts.zeek && !opts.ignore_checksums;
    let zeek_us = opts.zeek;
    let result = loop {
        let pkt = match reader.next_packet() {
            Ok(Some(p)) => p,
            Ok(None) => break Ok(()),
            Err(e) => break Err(e),
        };
        summary.frames += 1;
        let ts = if zeek_us {
            // Floor to the microsecond; saturating at the ends of time.
            pkt.ts_ns.saturating_sub(pkt.ts_ns.rem_euclid(1000))
        } else {
            pkt.ts_ns
        };
        match decoder.decode(&pkt) {
            Ok(seg) => segment(ts, &seg),
            Err(skip) => record_skip(&mut summary, pkt.offset, skip),
        }
    };
    (summary, result)
}

fn record_skip(summary: &mut CaptureSummary, offset: u64, skip: Skip) {
    *summary.skipped.entry(skip.to_string()).or_default() += 1;
    if skip.is_damage() && summary.damaged.len() < 10 {
        summary.damaged.push((offset, skip.to_string()));
    }
}
