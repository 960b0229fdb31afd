//! Zeek's view of a TCP connection: endpoint states, the `history` string, `conn_state`,
//! sizes and content gaps, computed the way Zeek's TCP analyzer computes them.
//!
//! Written from a reading of Zeek's `TCPSessionAdapter.cc` (`Process`, `update_history`,
//! `UpdateStateMachine` and its per-state helpers, `ConnectionClosed`), `TCP_Endpoint.cc`
//! (`Size`, `CheckHistory`, scaled letters), `TCP_Reassembler.cc` / `Reassem.cc` (gaps and
//! `missed_bytes`) and `scripts/base/protocols/conn/main.zeek` (`conn_state`). Function
//! names in comments refer to those files. The per-packet order of `Process` is kept,
//! because the history string depends on it.
//!
//! This is the Zeek-compatibility layer only: the endpoint states here are Zeek's seven
//! (INACTIVE .. RESET), not RFC 9293 states, which the fsm machine provides.

use crate::short::History;
use std::collections::BTreeMap;
use tcpstate_fsm::Flags;

/// Zeek's per-endpoint state (`EndpointState` in `TCP_Endpoint.h`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ZeekState {
    /// Nothing seen.
    Inactive,
    /// SYN seen.
    SynSent,
    /// SYN+ACK seen without an initial SYN.
    SynAckSent,
    /// Data seen without a SYN.
    Partial,
    /// Established.
    Established,
    /// FIN seen.
    Closed,
    /// RST seen.
    Reset,
}

impl ZeekState {
    /// Zeek's script-level name (`TCP_ESTABLISHED`...).
    pub fn name(self) -> &'static str {
        match self {
            ZeekState::Inactive => "TCP_INACTIVE",
            ZeekState::SynSent => "TCP_SYN_SENT",
            ZeekState::SynAckSent => "TCP_SYN_ACK_SENT",
            ZeekState::Partial => "TCP_PARTIAL",
            ZeekState::Established => "TCP_ESTABLISHED",
            ZeekState::Closed => "TCP_CLOSED",
            ZeekState::Reset => "TCP_RESET",
        }
    }
}

/// `TOO_LARGE_SEQ_DELTA` in TCPSessionAdapter.cc.
const TOO_LARGE_SEQ_DELTA: i32 = 1_048_576;
/// `tcp_max_initial_window`, `tcp_max_above_hole_without_any_acks`,
/// `tcp_excessive_data_without_further_acks` (init-bare.zeek defaults).
const MAX_INITIAL_WINDOW: u64 = 16384;
const MAX_ABOVE_HOLE_WITHOUT_ACKS: u64 = 16384;
const EXCESSIVE_DATA_WITHOUT_ACKS: u64 = 10 * 1024 * 1024;

// History masks (`HIST_*` in TCP_Endpoint.h): one bit per kind, shifted by 16 for the
// responder.
const HIST_SYN: u32 = 0x1;
const HIST_FIN: u32 = 0x2;
const HIST_RST: u32 = 0x4;
const HIST_FIN_RST: u32 = 0x8;
const HIST_DATA: u32 = 0x10;
const HIST_ACK: u32 = 0x20;
const HIST_MULTI_FLAG: u32 = 0x40;

fn seq_delta(a: u32, b: u32) -> i32 {
    a.wrapping_sub(b) as i32
}

/// Content reassembly bookkeeping, ranges only (the bytes are never kept): enough to find
/// the gaps that Zeek's reassembler reports as `g` and `missed_bytes`.
#[derive(Debug, Clone, Default)]
struct Reassembly {
    /// Relative sequence number up to which the stream is delivered or given up.
    last_reassem: u64,
    trim: u64,
    /// Undelivered blocks above `last_reassem`: start → end (merged, disjoint).
    blocks: BTreeMap<u64, u64>,
    skip: bool,
}

impl Reassembly {
    fn new() -> Reassembly {
        Reassembly {
            last_reassem: 1,
            trim: 1,
            ..Reassembly::default()
        }
    }

    fn undelivered_bytes(&self) -> u64 {
        self.blocks
            .iter()
            .next_back()
            .map_or(0, |(_, &end)| end.saturating_sub(self.last_reassem))
    }

    fn block_bytes(&self) -> u64 {
        self.blocks.iter().map(|(s, e)| e - s).sum()
    }

    /// Insert a range, merging overlaps; deliver what became contiguous.
    fn insert(&mut self, mut seq: u64, upper: u64) {
        if upper <= self.last_reassem {
            return;
        }
        if self.blocks.is_empty() && seq <= self.last_reassem {
            // In order with nothing held above: delivered at once (what the general path
            // below does, without touching the map).
            self.last_reassem = upper;
            return;
        }
        seq = seq.max(self.last_reassem);
        let mut end = upper;
        // Merge with every block overlapping or touching [seq, end).
        let overlapping: Vec<(u64, u64)> = self
            .blocks
            .range(..=end)
            .filter(|(_, &e)| e >= seq)
            .map(|(&s, &e)| (s, e))
            .collect();
        for (s, e) in overlapping {
            self.blocks.remove(&s);
            seq = seq.min(s);
            end = end.max(e);
        }
        self.blocks.insert(seq, end);
        self.deliver_contiguous();
    }

    fn deliver_contiguous(&mut self) {
        while let Some((&s, &e)) = self.blocks.iter().next() {
            if s > self.last_reassem {
                break;
            }
            self.blocks.remove(&s);
            self.last_reassem = self.last_reassem.max(e);
        }
    }
}

/// One endpoint as Zeek tracks it (`TCP_Endpoint`).
#[derive(Debug, Clone)]
struct Endpoint {
    state: ZeekState,
    prev_state: ZeekState,
    /// Initial sequence number. Zeek keeps it in an int64, but only ever stores a 32-bit
    /// sequence number there, so a u32 (widened where Zeek compares 64-bit values) is exact.
    start_seq: u32,
    last_seq: u32,
    ack_seq: u32,
    seq_wraps: u32,
    ack_wraps: u32,
    fin_cnt: u32,
    fin_seq: u64,
    did_close: bool,
    hist_last_syn: u64,
    hist_last_fin: u64,
    hist_last_rst: u64,
    /// Scaled-letter counters and thresholds: checksum, gap, retransmission, zero window.
    chk: (u32, u32),
    gap: (u32, u32),
    rxmt: (u32, u32),
    win0: (u32, u32),
    reasm: Reassembly,
    /// Packets and IP bytes sent (Zeek's ConnSize analyzer).
    pkts: u64,
    ip_bytes: u64,
}

impl Endpoint {
    fn new() -> Endpoint {
        Endpoint {
            state: ZeekState::Inactive,
            prev_state: ZeekState::Inactive,
            start_seq: 0,
            last_seq: 0,
            ack_seq: 0,
            seq_wraps: 0,
            ack_wraps: 0,
            fin_cnt: 0,
            fin_seq: 0,
            did_close: false,
            hist_last_syn: 0,
            hist_last_fin: 0,
            hist_last_rst: 0,
            chk: (0, 1),
            gap: (0, 1),
            rxmt: (0, 1),
            win0: (0, 1),
            reasm: Reassembly::new(),
            pkts: 0,
            ip_bytes: 0,
        }
    }

    fn init_all(&mut self, seq: u32, last: u32) {
        self.start_seq = seq;
        self.ack_seq = seq;
        self.last_seq = last;
    }

    fn full(seq: u32, wraps: u32) -> u64 {
        (u64::from(wraps) << 32) + u64::from(seq)
    }

    fn to_relative(&self, seq: u32, wraps: u32) -> u64 {
        Endpoint::full(seq, wraps).wrapping_sub(u64::from(self.start_seq))
    }

    fn update_last_seq_raw(&mut self, seq: u32) {
        if seq < self.last_seq {
            self.seq_wraps += 1;
        }
        self.last_seq = seq;
    }

    fn update_ack_seq_raw(&mut self, seq: u32) {
        if seq < self.ack_seq {
            self.ack_wraps += 1;
        }
        self.ack_seq = seq;
    }

    fn no_data_acked(&self) -> bool {
        let ack = Endpoint::full(self.ack_seq, self.ack_wraps);
        let start = u64::from(self.start_seq);
        ack == start || ack == start + 1
    }

    fn is_active(&self) -> bool {
        self.state != ZeekState::Inactive && !self.did_close
    }

    /// `is_clean` in TCP_Reassembler.cc.
    fn is_clean(&self) -> bool {
        self.state == ZeekState::Established
            || (self.state == ZeekState::Closed && self.prev_state == ZeekState::Established)
    }
}

/// The result of one packet for the caller's timer bookkeeping.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PacketEffects {
    /// Arm the attempt timer (`tcp_attempt_delay` after now).
    pub attempt_timer: bool,
    /// The handshake finished: the inactivity timeout becomes `tcp_inactivity_timeout`.
    pub handshake_done: bool,
    /// `ConnectionClosed` saw a complete close: cancel analyzer timers and delete the
    /// connection `tcp_close_delay` after its last time.
    pub close_complete: bool,
    /// A half close by an endpoint already seen: re-arm the expire timer.
    pub expire_timer: bool,
}

/// A connection as Zeek's TCP analyzer sees it.
#[derive(Debug, Clone)]
pub struct ZeekConn {
    /// Endpoints by index: 0 is the sender of the first packet, 1 its peer.
    ep: [Endpoint; 2],
    /// Index of the current originator.
    orig: usize,
    history: History,
    hist_seen: u32,
    is_partial: bool,
    /// Bit 0: first packet from endpoint 0 seen; bit 1: from endpoint 1 (by index).
    first_packet_seen: u8,
    /// `is_active` of the session adapter: cleared by finish/reset events.
    pub is_active: bool,
    close_deferred: bool,
    deferred_gen_event: bool,
    /// Sum of gap lengths (`missed_bytes`).
    pub missed_bytes: u64,
}

impl Default for ZeekConn {
    fn default() -> Self {
        ZeekConn::new()
    }
}

impl ZeekConn {
    /// A fresh connection: endpoint 0 is the originator.
    pub fn new() -> ZeekConn {
        ZeekConn {
            ep: [Endpoint::new(), Endpoint::new()],
            orig: 0,
            history: History::default(),
            hist_seen: 0,
            is_partial: false,
            first_packet_seen: 0,
            is_active: true,
            close_deferred: false,
            deferred_gen_event: false,
            missed_bytes: 0,
        }
    }

    /// The current originator's endpoint index.
    pub fn orig_index(&self) -> usize {
        self.orig
    }

    /// The history string.
    pub fn history(&self) -> &str {
        self.history.as_str()
    }

    /// The history string, moved out (the connection is finished).
    pub fn take_history(&mut self) -> History {
        std::mem::take(&mut self.history)
    }

    /// Swap originator and responder (`Connection::FlipRoles` + the adapter's).
    pub fn flip_roles(&mut self) {
        self.orig ^= 1;
        self.is_partial = false;
        self.history.push('^');
    }

    fn is_orig(&self, i: usize) -> bool {
        i == self.orig
    }

    /// `Connection::CheckHistory` via `TCP_Endpoint::CheckHistory`: returns whether the
    /// kind was already seen; adds the letter the first time.
    // Inlined: nearly every call finds its bit already set and only tests a mask.
    #[inline]
    fn check_history(&mut self, i: usize, mask: u32, code: char) -> bool {
        // The history can only be "H" when its one letter came from here, as the
        // originator's SYN bit: test that bit mask before reading the string.
        if (code == 'A' || code == 'D') && self.hist_seen == HIST_SYN {
            self.flip_if_only_syn_ack();
        }
        let is_orig = self.is_orig(i);
        let mask = if is_orig { mask } else { mask << 16 };
        if self.hist_seen & mask == 0 {
            self.hist_seen |= mask;
            self.push_letter(is_orig, code);
            false
        } else {
            true
        }
    }

    /// Part of `CheckHistory` for `A` and `D`: a connection that began with a SYN-ACK
    /// (history "H"), now with productive traffic, flips and pretends the missing SYN was
    /// seen (PR #2191).
    #[cold]
    #[inline(never)]
    fn flip_if_only_syn_ack(&mut self) {
        if self.history == "H" {
            self.flip_roles();
            self.history.set("^h");
            self.first_packet_seen |= 1 << self.orig;
        }
    }

    /// Append a letter, in lower case for the responder.
    #[inline]
    fn push_letter(&mut self, is_orig: bool, code: char) {
        let code = if is_orig {
            code
        } else {
            code.to_ascii_lowercase()
        };
        self.history.push(code);
    }

    fn add_history(&mut self, i: usize, code: char) {
        self.push_letter(self.is_orig(i), code);
    }

    /// `Session::ScaledHistoryEntry`: the letter at the 1st, 10th, 100th... occurrence.
    fn scaled(&mut self, i: usize, code: char, which: fn(&mut Endpoint) -> &mut (u32, u32)) {
        let (counter, threshold) = which(&mut self.ep[i]);
        *counter += 1;
        if *counter == *threshold {
            match threshold.checked_mul(10) {
                Some(t) => *threshold = t,
                None => *counter = 0,
            }
            self.add_history(i, code);
        }
    }

    /// A packet dropped for a bad checksum: only the `C` letter.
    pub fn checksum_error(&mut self, i: usize) {
        self.scaled(i, 'C', |e| &mut e.chk);
    }

    fn set_state(&mut self, i: usize, new: ZeekState, fx: &mut PacketEffects) {
        let hs = |s: ZeekState| {
            matches!(
                s,
                ZeekState::Inactive | ZeekState::SynSent | ZeekState::SynAckSent
            )
        };
        let e = &self.ep[i];
        if new != e.state {
            if !hs(new) && hs(e.state) && hs(self.ep[i ^ 1].state) {
                fx.handshake_done = true;
            }
            let e = &mut self.ep[i];
            e.prev_state = e.state;
            e.state = new;
        }
    }

    /// `SetPartialStatus`.
    fn set_partial_status(&mut self, i: usize, flags: Flags) {
        if self.is_orig(i) {
            if self.first_packet_seen & (1 << i) == 0 {
                self.is_partial = !flags.syn() || flags.ack();
            }
        } else if self.first_packet_seen & (1 << i) == 0 && !self.is_partial {
            self.is_partial = !flags.syn();
        }
    }

    /// Whether this packet reuses the connection's tuple for a new connection
    /// (`TCPSessionAdapter::IsReuse`): only SYNs (or SYN-ACKs of half connections).
    pub fn is_reuse(&self, flags: Flags, seq: u32) -> bool {
        if !flags.syn() {
            return false;
        }
        let (o, r) = (&self.ep[self.orig], &self.ep[self.orig ^ 1]);
        let mut conn_orig = o;
        if flags.ack() {
            if o.state != ZeekState::Inactive {
                return false;
            }
            conn_orig = r;
        }
        let closed = o.did_close || r.did_close;
        if !closed {
            if seq == conn_orig.start_seq {
                return false;
            }
            if !flags.ack()
                && conn_orig.state == ZeekState::SynAckSent
                && r.state == ZeekState::Inactive
                && seq == r.start_seq
            {
                return false;
            }
        }
        true
    }

    /// Process one packet from endpoint `i` (`TCPSessionAdapter::Process` and the parts of
    /// `TCPAnalyzer::DeliverPacket` after the checksum). `sets_last_time` is told whether
    /// the session's last time should advance (both sides not yet closed).
    // The arguments are the header fields Zeek's `Process` reads; a struct would only rename them.
    #[allow(clippy::too_many_arguments)]
    pub fn process(
        &mut self,
        i: usize,
        seq: u32,
        ack: u32,
        flags: Flags,
        window: u16,
        len: u32,
        ip_len: u32,
        caplen_ok: bool,
    ) -> (PacketEffects, bool) {
        let mut fx = PacketEffects::default();
        let p = i ^ 1;
        let len_i = len as i64;
        self.set_partial_status(i, flags);
        // get_segment_len: SYN and FIN take a sequence number; a RST's data does not count.
        let mut seg_len = len_i + i64::from(flags.syn()) + i64::from(flags.fin());
        if flags.rst() {
            seg_len -= len_i;
        }
        let seq_one_past = seq.wrapping_add(seg_len as u32);
        self.init_endpoint(i, flags, seq, seq_one_past);

        // Only SYN, FIN and RST letters and payload read the relative sequence number: a
        // bare ACK (a third of all packets) skips computing it.
        let (rel_seq, seq_underflow) = if len > 0 || flags.syn() || flags.fin() || flags.rst() {
            let e = &self.ep[i];
            get_relative_seq(e, seq, e.last_seq, e.seq_wraps)
        } else {
            (0, false)
        };
        self.update_history(i, flags, rel_seq, len);

        // update_window: only the zero-window letter matters here.
        if window == 0
            && !flags.rst()
            && self.ep[p].state != ZeekState::Closed
            && self.ep[i].state != ZeekState::Reset
        {
            self.scaled(i, 'W', |e| &mut e.win0);
        }
        let sets_last_time = !self.ep[0].did_close || !self.ep[1].did_close;

        if flags.fin() {
            self.ep[i].fin_cnt += 1;
            self.ep[i].fin_seq = rel_seq.wrapping_add(seg_len as u64);
        }
        let mut rel_ack = 0u64;
        if flags.ack() {
            if self.ep[p].state == ZeekState::Inactive {
                rel_ack = 1;
                // init_peer: number the peer as if its SYN had been seen.
                let a = ack.wrapping_sub(1);
                let peer = &mut self.ep[p];
                peer.start_seq = a;
                peer.ack_seq = a;
                peer.last_seq = a;
            } else {
                let peer = &self.ep[p];
                let (r, underflow) = get_relative_seq(peer, ack, peer.ack_seq, peer.ack_wraps);
                if underflow {
                    rel_ack = 0;
                } else {
                    rel_ack = r;
                    if !flags.rst() {
                        // update_ack_seq
                        let delta = seq_delta(ack, peer.ack_seq);
                        if !(ack == 0 && delta > TOO_LARGE_SEQ_DELTA) && delta > 0 {
                            self.ep[p].update_ack_seq_raw(ack);
                        }
                    }
                }
            }
        }
        self.update_last_seq(i, seq_one_past, flags, len);

        // Once an endpoint has left INACTIVE, only a SYN, FIN or RST moves its state
        // machine: the common data or ACK segment skips it.
        let (do_close, gen_event) = if !(flags.syn() || flags.fin() || flags.rst())
            && self.ep[i].state != ZeekState::Inactive
        {
            (false, false)
        } else {
            self.update_state_machine(i, seq, len, flags, &mut fx)
        };

        if flags.ack() {
            self.ack_received(p, rel_ack);
            // AckReceived ends in the peer reassembler's CheckEOF: an acknowledged hole
            // may complete a close that was deferred for pending data.
            self.check_eof(p, &mut fx);
        }
        // ConnSize counts the packet.
        self.ep[i].pkts += 1;
        self.ep[i].ip_bytes += u64::from(ip_len);

        let rel_data_seq = if flags.syn() {
            rel_seq.wrapping_add(1)
        } else {
            rel_seq
        };
        if len > 0 && !flags.rst() && !seq_underflow && caplen_ok {
            self.data_sent(i, rel_data_seq, u64::from(len));
        }
        self.check_eof(i, &mut fx);
        if do_close {
            self.connection_closed(i, gen_event, &mut fx);
        }
        (fx, sets_last_time)
    }

    fn init_endpoint(&mut self, i: usize, flags: Flags, seq: u32, last: u32) {
        let e = &mut self.ep[i];
        if !flags.syn() && e.state != ZeekState::Inactive {
            // Only a SYN renumbers an endpoint already seen.
            return;
        }
        match e.state {
            ZeekState::Inactive => {
                if flags.syn() {
                    e.init_all(seq, last);
                } else {
                    // A partial connection: number as though a SYN had been seen, but keep
                    // the first packet from looking like a duplicate.
                    e.start_seq = seq.wrapping_sub(1);
                    e.ack_seq = seq.wrapping_sub(1);
                    e.last_seq = seq;
                }
            }
            ZeekState::SynSent | ZeekState::SynAckSent => {
                if flags.syn() && seq != e.start_seq {
                    e.init_all(seq, last);
                }
            }
            ZeekState::Established | ZeekState::Partial => {
                if flags.syn() {
                    e.init_all(seq, last);
                }
            }
            ZeekState::Reset => {
                if flags.syn() && e.prev_state == ZeekState::Inactive {
                    e.init_all(seq, last);
                }
            }
            ZeekState::Closed => {}
        }
    }

    fn update_history(&mut self, i: usize, flags: Flags, rel_seq: u64, len: u32) {
        let bits = u8::from(flags.syn()) + u8::from(flags.fin()) + u8::from(flags.rst());
        if bits > 1 {
            if flags.fin() && flags.rst() {
                self.check_history(i, HIST_FIN_RST, 'I');
            } else {
                self.check_history(i, HIST_MULTI_FLAG, 'Q');
            }
        } else if bits == 1 {
            if flags.syn() {
                let code = if flags.ack() { 'H' } else { 'S' };
                if self.check_history(i, HIST_SYN, code) && rel_seq != self.ep[i].hist_last_syn {
                    self.add_history(i, code);
                }
                self.ep[i].hist_last_syn = rel_seq;
            }
            if flags.fin() {
                let at = rel_seq.wrapping_add(u64::from(len));
                if self.check_history(i, HIST_FIN, 'F') && at != self.ep[i].hist_last_fin {
                    self.add_history(i, 'F');
                }
                self.ep[i].hist_last_fin = at;
            }
            if flags.rst() {
                if self.check_history(i, HIST_RST, 'R') && rel_seq != self.ep[i].hist_last_rst {
                    self.add_history(i, 'R');
                }
                self.ep[i].hist_last_rst = rel_seq;
            }
        } else if len > 0 {
            self.check_history(i, HIST_DATA, 'D');
        } else if flags.ack() {
            self.check_history(i, HIST_ACK, 'A');
        }
    }

    /// `update_last_seq`: a payload at or below the highest sequence seen is a
    /// retransmission (`T`).
    fn update_last_seq(&mut self, i: usize, last_seq: u32, flags: Flags, len: u32) {
        let e = &self.ep[i];
        let delta_last = seq_delta(last_seq, e.last_seq);
        if (flags.syn() || flags.rst())
            && !(-TOO_LARGE_SEQ_DELTA..=TOO_LARGE_SEQ_DELTA).contains(&delta_last)
        {
            // untrusted jump
        } else if flags.fin() && e.last_seq == e.start_seq.wrapping_add(1) {
            self.ep[i].update_last_seq_raw(last_seq);
        } else if e.state == ZeekState::Reset {
            // no trust after a RST
        } else if delta_last > 0 {
            self.ep[i].update_last_seq_raw(last_seq);
        } else if len > 0 {
            self.scaled(i, 'T', |e| &mut e.rxmt);
        }
    }

    fn update_state_machine(
        &mut self,
        i: usize,
        seq: u32,
        len: u32,
        flags: Flags,
        fx: &mut PacketEffects,
    ) -> (bool, bool) {
        let p = i ^ 1;
        let mut do_close = false;
        let mut gen_event = false;
        let is_orig = self.is_orig(i);
        match self.ep[i].state {
            ZeekState::Inactive => {
                if flags.syn() {
                    if is_orig {
                        let s = if flags.ack() {
                            ZeekState::SynAckSent
                        } else {
                            ZeekState::SynSent
                        };
                        self.set_state(i, s, fx);
                        fx.attempt_timer = true;
                    } else {
                        if !flags.ack()
                            && self.ep[p].state == ZeekState::SynAckSent
                            && seq == self.ep[i].start_seq
                        {
                            // SYN/SYN-ACK reversal: flip and establish.
                            self.flip_roles();
                            self.set_state(p, ZeekState::Established, fx);
                            self.first_packet_seen |= 1 << self.orig;
                        }
                        if self.ep[p].state == ZeekState::SynSent {
                            self.set_state(p, ZeekState::Established, fx);
                        }
                        self.set_state(i, ZeekState::Established, fx);
                    }
                }
                if flags.fin() {
                    self.set_state(i, ZeekState::Closed, fx);
                    do_close = true;
                    gen_event = true;
                }
                if flags.rst() {
                    self.set_state(i, ZeekState::Reset, fx);
                    let is_reject = if self.is_orig(i) {
                        self.ep[p].state == ZeekState::Established
                    } else {
                        matches!(self.ep[p].state, ZeekState::SynSent | ZeekState::SynAckSent)
                    };
                    do_close = true;
                    gen_event = !is_reject;
                    if is_reject {
                        // connection_rejected: the adapter stays active
                    }
                }
                if self.ep[i].state == ZeekState::Inactive {
                    let orig_state = self.ep[self.orig].state;
                    if !self.is_orig(i) && len == 0 && orig_state == ZeekState::SynSent {
                        // An eccentric stack ACKing the SYN before its SYN-ACK.
                    } else if flags.ack() && self.ep[p].state == ZeekState::Established {
                        self.set_state(i, ZeekState::Established, fx);
                        self.is_partial = false;
                        self.first_packet_seen |= 1 << i;
                    } else {
                        self.set_state(i, ZeekState::Partial, fx);
                    }
                }
            }
            ZeekState::SynSent | ZeekState::SynAckSent => {
                if flags.fin() {
                    self.set_state(i, ZeekState::Closed, fx);
                    do_close = true;
                    gen_event = true;
                }
                if flags.rst() {
                    self.set_state(i, ZeekState::Reset, fx);
                    self.is_active = false; // ConnectionReset
                    do_close = true;
                }
            }
            ZeekState::Established | ZeekState::Partial => {
                if flags.syn()
                    && self.ep[i].state == ZeekState::Partial
                    && self.ep[p].state == ZeekState::Inactive
                    && !flags.ack()
                {
                    self.set_state(i, ZeekState::SynSent, fx);
                }
                if flags.fin() && !flags.rst() {
                    self.set_state(i, ZeekState::Closed, fx);
                    if self.ep[p].state == ZeekState::Reset
                        && self.ep[p].prev_state == ZeekState::Closed
                    {
                        // The peer sent FIN then RST: that was a normal close after all.
                        self.set_state(p, ZeekState::Closed, fx);
                    }
                    do_close = true;
                    gen_event = true;
                }
                if flags.rst() {
                    self.set_state(i, ZeekState::Reset, fx);
                    do_close = true;
                    let peer = &self.ep[p];
                    if peer.state != ZeekState::Reset || peer.prev_state != ZeekState::Established {
                        self.is_active = false;
                    }
                }
            }
            ZeekState::Closed => {
                if flags.rst() && self.ep[p].state != ZeekState::Closed {
                    self.set_state(i, ZeekState::Reset, fx);
                    if !self.ep[i].did_close {
                        do_close = true;
                    }
                }
            }
            ZeekState::Reset => {}
        }
        (do_close, gen_event)
    }

    /// `TCP_Reassembler::AckReceived` on endpoint `i`'s stream.
    fn ack_received(&mut self, i: usize, seq: u64) {
        let mut seq = seq;
        let e = &self.ep[i];
        if e.fin_cnt > 0 && seq >= e.fin_seq {
            seq = e.fin_seq.saturating_sub(1);
        }
        if seq <= e.reasm.trim {
            return;
        }
        if seq <= e.reasm.last_reassem && e.reasm.blocks.is_empty() {
            // Acknowledging delivered data with nothing held: what `trim_to_seq` does in
            // that case, without the call.
            self.ep[i].reasm.trim = seq;
            return;
        }
        self.trim_to_seq(i, seq);
    }

    /// `DataBlockList::Trim` with `TCP_Reassembler::Undelivered`.
    fn trim_to_seq(&mut self, i: usize, seq: u64) {
        if seq > self.ep[i].reasm.last_reassem {
            self.undelivered(i, seq);
        }
        let r = &mut self.ep[i].reasm;
        if r.blocks.is_empty() {
            // Nothing held (the usual in-order case): only the trim point moves.
            r.trim = r.trim.max(seq);
            return;
        }
        // Blocks wholly below seq are gone (delivered or given up).
        let below: Vec<u64> = r
            .blocks
            .range(..seq)
            .filter(|(_, &e)| e <= seq)
            .map(|(&s, _)| s)
            .collect();
        for s in below {
            r.blocks.remove(&s);
        }
        r.deliver_contiguous();
        r.trim = r.trim.max(seq);
    }

    fn undelivered(&mut self, i: usize, up_to: u64) {
        if up_to <= 2 && self.is_partial {
            return;
        }
        if !self.ep[i].reasm.skip {
            // Fill the holes below each held block (none held: the usual case).
            while !self.ep[i].reasm.blocks.is_empty() {
                let r = &self.ep[i].reasm;
                let Some((&s, _)) = r.blocks.range(r.last_reassem..).next() else {
                    break;
                };
                if s >= up_to {
                    break;
                }
                let at = r.last_reassem;
                self.gap(i, s - at);
                let r = &mut self.ep[i].reasm;
                r.last_reassem = s;
                r.deliver_contiguous();
            }
            let at = self.ep[i].reasm.last_reassem;
            if up_to > at {
                self.gap(i, up_to - at);
            }
        }
        let r = &mut self.ep[i].reasm;
        if up_to > r.last_reassem {
            r.last_reassem = up_to;
        }
    }

    fn gap(&mut self, i: usize, len: u64) {
        if self.ep[i].is_clean() && self.ep[i ^ 1].is_clean() {
            self.scaled(i, 'G', |e| &mut e.gap);
            self.missed_bytes += len;
        }
    }

    /// `TCP_Reassembler::DataSent`.
    fn data_sent(&mut self, i: usize, seq: u64, len: u64) {
        let e = &self.ep[i];
        if e.reasm.skip {
            return;
        }
        let ack = e.to_relative(e.ack_seq, e.ack_wraps);
        let mut seq = seq;
        let upper = seq + len;
        if seq < ack {
            if upper <= ack {
                return;
            }
            seq = ack;
        }
        if upper <= e.reasm.trim {
            return;
        }
        let seq = seq.max(e.reasm.trim);
        self.ep[i].reasm.insert(seq, upper);
        // BlockInserted: with nothing acknowledged yet and more than an initial window
        // sent, give up waiting for the hole.
        let e = &self.ep[i];
        if e.no_data_acked() && self.size(i) > MAX_INITIAL_WINDOW {
            let to = e.reasm.last_reassem;
            self.trim_to_seq(i, to);
        }
        let e = &self.ep[i];
        if e.reasm.blocks.is_empty() {
            // Nothing held: no hole to give up on.
            return;
        }
        if (e.no_data_acked() && e.reasm.undelivered_bytes() > MAX_ABOVE_HOLE_WITHOUT_ACKS)
            || e.reasm.block_bytes() > EXCESSIVE_DATA_WITHOUT_ACKS
        {
            let r = &mut self.ep[i].reasm;
            r.blocks.clear();
            r.skip = true;
        }
    }

    /// `TCP_Reassembler::DataPending` for endpoint `i`.
    fn data_pending(&self, i: usize) -> bool {
        let e = &self.ep[i];
        if e.reasm.skip {
            return false;
        }
        // Absolute 64-bit numbers, as `TCP_Reassembler::DataPending` compares them.
        let delivered = u64::from(e.start_seq).wrapping_add(e.reasm.last_reassem);
        let last = Endpoint::full(e.last_seq, e.seq_wraps);
        if last < delivered {
            return false;
        }
        if delivered != last.wrapping_sub(1) && delivered != last {
            return true;
        }
        e.state != ZeekState::Reset && !self.ep[i ^ 1].reasm.blocks.is_empty()
    }

    fn check_eof(&mut self, i: usize, fx: &mut PacketEffects) {
        // A close deferred for pending data completes once the data is no longer pending.
        if self.close_deferred && !self.data_pending(i) {
            let e = &self.ep[i];
            if e.fin_cnt > 0 || matches!(e.state, ZeekState::Closed | ZeekState::Reset) {
                let gen = self.deferred_gen_event;
                self.close_deferred = false;
                self.connection_closed(i, gen, fx);
            }
        }
    }

    /// `ConnectionClosed`.
    fn connection_closed(&mut self, i: usize, gen_event: bool, fx: &mut PacketEffects) {
        if self.data_pending(i) {
            self.close_deferred = true;
            if !self.deferred_gen_event {
                self.deferred_gen_event = gen_event;
            }
            return;
        }
        self.close_deferred = false;
        if self.ep[i].did_close {
            return;
        }
        self.ep[i].did_close = true;
        let (e, p) = (&self.ep[i], &self.ep[i ^ 1]);
        let complete = e.state == ZeekState::Reset || p.did_close || p.state == ZeekState::Inactive;
        if complete {
            if (e.prev_state != ZeekState::Inactive || p.state != ZeekState::Inactive)
                && (gen_event || self.deferred_gen_event)
            {
                self.deferred_gen_event = false;
                self.is_active = false; // connection_finished / half_finished
            }
            fx.close_complete = true;
        } else if e.prev_state != ZeekState::Inactive {
            fx.expire_timer = true;
        }
    }

    /// `TCP_Endpoint::Size` of endpoint `i`.
    pub fn size(&self, i: usize) -> u64 {
        let e = &self.ep[i];
        let p = &self.ep[i ^ 1];
        if e.prev_state == ZeekState::SynSent
            && e.state == ZeekState::Reset
            && p.state == ZeekState::Inactive
            && !e.no_data_acked()
        {
            return 0;
        }
        let last = Endpoint::full(e.last_seq, e.seq_wraps);
        let ack = Endpoint::full(e.ack_seq, e.ack_wraps);
        let top = last.max(ack);
        let mut size = top.wrapping_sub(u64::from(e.start_seq));
        size = size.saturating_sub(1);
        if e.fin_cnt > 0 && size != 0 {
            size -= 1;
        }
        size
    }

    /// Endpoint `i`'s Zeek state.
    pub fn state(&self, i: usize) -> ZeekState {
        self.ep[i].state
    }

    /// Whether endpoint `i` has closed (`did_close`).
    pub fn did_close(&self, i: usize) -> bool {
        self.ep[i].did_close
    }

    /// Whether either side is active and not closed (`IsActive` of either endpoint).
    pub fn any_active(&self) -> bool {
        self.ep[0].is_active() || self.ep[1].is_active()
    }

    /// Packets and IP bytes sent by endpoint `i`.
    pub fn counts(&self, i: usize) -> (u64, u64) {
        (self.ep[i].pkts, self.ep[i].ip_bytes)
    }

    /// `conn_state` (scripts/base/protocols/conn/main.zeek).
    pub fn conn_state(&self) -> &'static str {
        use ZeekState::*;
        let (o, r) = (self.orig, self.orig ^ 1);
        let os = self.ep[o].state;
        let rs = self.ep[r].state;
        let o_inactive = matches!(os, Inactive | Partial);
        let r_inactive = matches!(rs, Inactive | Partial);
        if rs == Reset {
            if matches!(os, SynSent | SynAckSent)
                || (os == Reset && self.size(o) == 0 && self.size(r) == 0)
            {
                "REJ"
            } else if o_inactive {
                "RSTRH"
            } else {
                "RSTR"
            }
        } else if os == Reset {
            if r_inactive {
                if rstos0_history(self.history.as_str()) {
                    "RSTOS0"
                } else {
                    "OTH"
                }
            } else {
                "RSTO"
            }
        } else if rs == Closed && os == Closed {
            "SF"
        } else if os == Closed {
            if r_inactive {
                "SH"
            } else {
                "S2"
            }
        } else if rs == Closed {
            if o_inactive {
                "SHR"
            } else {
                "S3"
            }
        } else if os == SynSent && rs == Inactive {
            "S0"
        } else if os == Established && rs == Established {
            "S1"
        } else {
            "OTH"
        }
    }

    /// Zeek's `ts`-independent state for the RFC layer: whether each side's first packet
    /// was seen (used for flips at creation).
    pub fn mark_first_packet(&mut self, i: usize) {
        self.first_packet_seen |= 1 << i;
    }
}

/// `/^\^?S[^HAFGIQ]*R.*$/` on the whole history (PR #1166).
fn rstos0_history(h: &str) -> bool {
    let h = h.strip_prefix('^').unwrap_or(h);
    let Some(rest) = h.strip_prefix('S') else {
        return false;
    };
    for c in rest.chars() {
        if c == 'R' {
            return true;
        }
        if "HAFGIQ".contains(c) {
            return false;
        }
    }
    false
}

/// `get_relative_seq`: a 64-bit sequence relative to the endpoint's ISN, tracking wraps;
/// the flag says the sequence lies before the ISN.
fn get_relative_seq(e: &Endpoint, cur: u32, last: u32, wraps: u32) -> (u64, bool) {
    let delta = seq_delta(cur, last);
    let mut wraps = wraps;
    if delta < 0 {
        if wraps > 0 && cur > last {
            wraps -= 1;
        }
    } else if delta > 0 && cur < last {
        wraps += 1;
    }
    if wraps == 0 {
        let d = seq_delta(cur, e.start_seq);
        return (d as i64 as u64, d < 0);
    }
    (e.to_relative(cur, wraps), false)
}

/// Zeek's `likely_server_ports` in default mode (the TCP ports the base scripts register;
/// see ../shared/reference/zeek-conn.md §1.6). Bare mode (`-b`) loads no protocol scripts,
/// so its list is empty.
pub const LIKELY_SERVER_PORTS: &[u16] = &[
    21, 22, 25, 53, 79, 80, 81, 88, 135, 139, 143, 389, 443, 445, 465, 502, 514, 563, 585, 587,
    614, 631, 636, 989, 990, 992, 993, 995, 1080, 1434, 1883, 2811, 3128, 3268, 3306, 3389, 5222,
    5223, 5269, 5432, 6379, 6666, 6667, 6668, 6669, 8000, 8080, 8888, 20000,
];

/// The TCP ports each Zeek protocol script registers (its `ports` constant, which ends up
/// in `likely_server_ports`). Zeek's `-b` loads none of them unless a script `@load`s the
/// protocol, so a bare run's list is the union over the protocols it loads.
pub const PROTOCOL_PORTS: &[(&str, &[u16])] = &[
    ("http", &[80, 81, 631, 1080, 3128, 8000, 8080, 8888]),
    ("ftp", &[21, 2811]),
    (
        "ssl",
        &[443, 465, 563, 585, 614, 636, 989, 990, 992, 993, 995, 5223],
    ),
    ("krb", &[88]),
    ("imap", &[143]),
    ("xmpp", &[5222, 5269]),
    ("smtp", &[25, 587]),
    ("ssh", &[22]),
    ("dns", &[53]),
    ("pop3", &[]),
];

/// Which ports count as likely server ports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerPorts(Vec<u16>);

impl ServerPorts {
    /// Zeek's default list (all base protocol scripts loaded).
    pub fn default_list() -> ServerPorts {
        ServerPorts(LIKELY_SERVER_PORTS.to_vec())
    }

    /// Bare mode with the given protocols loaded (`zeek -b` plus `@load
    /// base/protocols/NAME`); `None` when a name is unknown.
    pub fn bare(protocols: &[&str]) -> Option<ServerPorts> {
        let mut ports = Vec::new();
        for name in protocols {
            let (_, p) = PROTOCOL_PORTS.iter().find(|(n, _)| n == name)?;
            ports.extend_from_slice(p);
        }
        ports.sort_unstable();
        ports.dedup();
        Some(ServerPorts(ports))
    }

    /// Add ports.
    pub fn extend(&mut self, more: &[u16]) {
        self.0.extend_from_slice(more);
        self.0.sort_unstable();
        self.0.dedup();
    }

    /// Whether `port` is listed.
    pub fn contains(&self, port: u16) -> bool {
        self.0.binary_search(&port).is_ok()
    }

    /// `TCPAnalyzer::WantConnection`'s flip decision for a connection's first packet.
    pub fn flip_at_creation(&self, src_port: u16, dst_port: u16, flags: Flags) -> bool {
        if flags.syn() && !flags.ack() {
            return false;
        }
        if self.contains(src_port) {
            if self.contains(dst_port) {
                !flags.syn() && src_port < dst_port
            } else {
                true
            }
        } else {
            false
        }
    }
}

impl Default for ServerPorts {
    fn default() -> Self {
        ServerPorts::default_list()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rstos0_pattern() {
        assert!(rstos0_history("SR"));
        assert!(rstos0_history("SaR"));
        assert!(rstos0_history("^SrR"));
        assert!(!rstos0_history("SaFR"));
        assert!(!rstos0_history("R"));
        // Case matters: a responder SYN-ACK (`h`) does not stop the pattern.
        assert!(rstos0_history("ShR"));
        assert!(!rstos0_history("SHR"));
    }

    #[test]
    fn server_port_list_is_sorted_for_binary_search() {
        assert!(LIKELY_SERVER_PORTS.windows(2).all(|w| w[0] < w[1]));
        let full = ServerPorts::default_list();
        let bare = ServerPorts::bare(&[]).unwrap();
        assert!(full.flip_at_creation(80, 40000, Flags::ACK));
        assert!(!bare.flip_at_creation(80, 40000, Flags::ACK));
        assert!(!full.flip_at_creation(80, 40000, Flags::SYN));
        // Both likely: flip only for non-SYNs from the lower port.
        assert!(full.flip_at_creation(80, 443, Flags::ACK));
        assert!(!full.flip_at_creation(443, 80, Flags::ACK));
        assert!(ServerPorts::bare(&["krb"]).unwrap().contains(88));
        assert!(ServerPorts::bare(&["nope"]).is_none());
    }
}
