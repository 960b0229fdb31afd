//! One test per RFC 9293 rule the machine implements, named after its section, against the
//! RFC profile (Linux differences are in `linux_conformance.rs`).

use std::time::Duration;
use tcpstate_fsm::{
    reset_for_unexpected, CallError, Connection, Event, Flags, Profile, Segment, SeqNum, State,
};

const S: Flags = Flags::SYN;
const A: Flags = Flags::ACK;
const F: Flags = Flags::FIN;
const R: Flags = Flags::RST;

fn seg(flags: Flags, seq: u32, ack: u32, len: u32) -> Segment {
    Segment {
        seq: SeqNum(seq),
        ack: SeqNum(ack),
        flags,
        len,
        window: 1000,
    }
}

fn sent(c: &mut Connection) -> Vec<Segment> {
    let mut v = Vec::new();
    while let Some(t) = c.poll_transmit(Duration::ZERO) {
        v.push(t.segment);
    }
    v
}

fn t(ms: u64) -> Duration {
    Duration::from_millis(ms)
}

/// Server side, ISS 100, peer ISN 500, ESTABLISHED: RCV.NXT 501, SND.NXT 101.
fn established() -> Connection {
    let mut c = Connection::new(Profile::rfc9293(), SeqNum(100));
    c.open_passive().unwrap();
    c.handle_segment(t(0), seg(S, 500, 0, 0));
    c.handle_segment(t(1), seg(A, 501, 101, 0));
    assert_eq!(c.state(), State::Established);
    sent(&mut c);
    c
}

/// Client side, ISS 100, peer ISN 500, in SYN-SENT.
fn syn_sent() -> Connection {
    let mut c = Connection::new(Profile::rfc9293(), SeqNum(100));
    c.open_active(t(0)).unwrap();
    assert_eq!(sent(&mut c), vec![seg(S, 100, 0, 0).with_window(65535)]);
    c
}

trait WithWindow {
    fn with_window(self, w: u32) -> Segment;
}
impl WithWindow for Segment {
    fn with_window(mut self, w: u32) -> Segment {
        self.window = w;
        self
    }
}

#[test]
fn s3_10_7_1_closed_resets_with_seq_seg_ack_when_ack_set() {
    let mut c = Connection::new(Profile::rfc9293(), SeqNum(0));
    c.handle_segment(t(0), seg(A, 10, 77, 5));
    assert_eq!(
        sent(&mut c),
        vec![Segment::control(SeqNum(77), SeqNum(0), R, 0)]
    );
}

#[test]
fn s3_10_7_1_closed_resets_with_ack_seg_seq_plus_len_without_ack() {
    let r = reset_for_unexpected(&seg(S | F, 10, 0, 5)).unwrap();
    assert_eq!(
        (r.seq, r.ack, r.flags),
        (SeqNum(0), SeqNum(10 + 5 + 2), R | A)
    );
    assert!(
        reset_for_unexpected(&seg(R, 1, 0, 0)).is_none(),
        "never answer a RST"
    );
}

#[test]
fn s3_10_7_2_listen_ignores_rst_and_resets_acks() {
    let mut c = Connection::new(Profile::rfc9293(), SeqNum(0));
    c.open_passive().unwrap();
    c.handle_segment(t(0), seg(R, 1, 0, 0));
    assert!(sent(&mut c).is_empty());
    c.handle_segment(t(0), seg(A, 1, 42, 0));
    assert_eq!(
        sent(&mut c),
        vec![Segment::control(SeqNum(42), SeqNum(0), R, 0)]
    );
    assert_eq!(c.state(), State::Listen);
}

#[test]
fn s3_10_7_2_listen_answers_syn_with_syn_ack() {
    let mut c = Connection::new(Profile::rfc9293(), SeqNum(100));
    c.open_passive().unwrap();
    c.handle_segment(t(0), seg(S, 500, 0, 0));
    let out = sent(&mut c);
    assert_eq!(out.len(), 1);
    assert_eq!(
        (out[0].flags, out[0].seq, out[0].ack),
        (S | A, SeqNum(100), SeqNum(501))
    );
    assert_eq!(c.state(), State::SynReceived);
}

#[test]
fn s3_10_7_3_syn_sent_resets_unacceptable_ack() {
    let mut c = syn_sent();
    c.handle_segment(t(1), seg(S | A, 500, 100, 0)); // SEG.ACK =< ISS
    assert_eq!(
        sent(&mut c),
        vec![Segment::control(SeqNum(100), SeqNum(0), R, 0)]
    );
    assert_eq!(c.state(), State::SynSent);
}

#[test]
fn s3_10_7_3_syn_sent_rst_with_acceptable_ack_is_refused() {
    let mut c = syn_sent();
    c.handle_segment(t(1), seg(R, 0, 101, 0)); // no ACK bit: dropped
    assert_eq!(c.state(), State::SynSent);
    c.handle_segment(t(1), seg(R | A, 0, 101, 0));
    assert_eq!(c.state(), State::Closed);
    let events: Vec<Event> = std::iter::from_fn(|| c.poll_event()).collect();
    assert!(events.contains(&Event::Refused));
    assert_eq!(c.read(10), Err(CallError::Refused));
}

#[test]
fn s3_10_7_3_syn_ack_establishes_and_acks() {
    let mut c = syn_sent();
    c.handle_segment(t(5), seg(S | A, 500, 101, 0));
    assert_eq!(c.state(), State::Established);
    let out = sent(&mut c);
    assert_eq!(
        (out[0].flags, out[0].seq, out[0].ack),
        (A, SeqNum(101), SeqNum(501))
    );
}

#[test]
fn s3_10_7_3_simultaneous_open_goes_to_syn_received() {
    let mut c = syn_sent();
    c.handle_segment(t(5), seg(S, 500, 0, 0));
    assert_eq!(c.state(), State::SynReceived);
    let out = sent(&mut c);
    assert_eq!(
        (out[0].flags, out[0].seq, out[0].ack),
        (S | A, SeqNum(100), SeqNum(501))
    );
    c.handle_segment(t(6), seg(S | A, 500, 101, 0).with_window(1000));
    // The peer's SYN,ACK: its SYN is old now (challenge ACK), its ACK completes ours.
    assert_eq!(c.state(), State::SynReceived);
    c.handle_segment(t(6), seg(A, 501, 101, 0));
    assert_eq!(c.state(), State::Established);
}

#[test]
fn s3_10_7_4_table6_unacceptable_segment_gets_ack() {
    let mut c = established();
    c.handle_segment(t(2), seg(A, 400, 101, 10)); // entirely before RCV.NXT
    assert_eq!(
        sent(&mut c),
        vec![Segment::control(SeqNum(101), SeqNum(501), A, 65535)]
    );
    c.handle_segment(t(2), seg(R, 400, 0, 0)); // unacceptable RST: silently dropped
    assert!(sent(&mut c).is_empty());
    assert_eq!(c.state(), State::Established);
}

#[test]
fn s3_10_7_4_table6_zero_window_accepts_only_exact_empty_segments() {
    let mut p = Profile::rfc9293();
    p.receive_buffer = 10;
    let mut c = Connection::new(p, SeqNum(100));
    c.open_passive().unwrap();
    c.handle_segment(t(0), seg(S, 500, 0, 0));
    c.handle_segment(t(1), seg(A, 501, 101, 0));
    c.handle_segment(t(2), seg(A, 501, 101, 10)); // fills the window
    sent(&mut c);
    assert_eq!(c.unread(), 10);
    // Window 0: a FIN (length 1) is not acceptable in the RFC profile.
    c.handle_segment(t(3), seg(F | A, 511, 101, 0));
    assert_eq!(c.state(), State::Established);
    // A bare ACK at RCV.NXT is.
    c.handle_segment(t(3), seg(A, 511, 101, 0));
    assert_eq!(c.rcv_nxt(), SeqNum(511));
}

#[test]
fn s3_10_7_4_rfc5961_rst_exact_resets_in_window_challenges() {
    let mut c = established();
    c.handle_segment(t(2), seg(R, 600, 0, 0));
    assert_eq!(sent(&mut c).len(), 1, "challenge ACK");
    assert_eq!(c.state(), State::Established);
    c.handle_segment(t(2), seg(R, 501, 0, 0));
    assert_eq!(c.state(), State::Closed);
    assert_eq!(c.read(1), Err(CallError::Reset));
}

#[test]
fn s3_10_7_4_rst_in_syn_received_returns_passive_to_listen() {
    let mut c = Connection::new(Profile::rfc9293(), SeqNum(100));
    c.open_passive().unwrap();
    c.handle_segment(t(0), seg(S, 500, 0, 0));
    c.handle_segment(t(1), seg(R, 501, 0, 0));
    assert_eq!(c.state(), State::Listen);
    assert!(
        c.poll_timeout().is_none(),
        "no SYN,ACK retransmission left running"
    );
}

#[test]
fn s3_10_7_4_rfc5961_syn_in_synchronized_state_gets_challenge_ack() {
    let mut c = established();
    c.handle_segment(t(2), seg(S, 600, 0, 0));
    let out = sent(&mut c);
    assert_eq!(
        (out[0].flags, out[0].seq, out[0].ack),
        (A, SeqNum(101), SeqNum(501))
    );
    assert_eq!(c.state(), State::Established);
}

#[test]
fn s3_10_7_4_ack_of_unsent_data_is_acked_and_dropped() {
    let mut c = established();
    c.handle_segment(t(2), seg(A, 501, 500, 0));
    assert_eq!(sent(&mut c).len(), 1);
    assert_eq!(c.snd_una(), SeqNum(101));
}

#[test]
fn s3_10_7_4_text_is_delivered_in_order_and_acked() {
    let mut c = established();
    c.handle_segment(t(2), seg(A, 501, 101, 100));
    let out = sent(&mut c);
    assert_eq!(out[0].ack, SeqNum(601));
    assert_eq!(c.read(1000), Ok(100));
    assert_eq!(c.read(1000), Err(CallError::WouldBlock));
}

#[test]
fn s3_10_7_4_fin_in_established_enters_close_wait_and_eof() {
    let mut c = established();
    c.handle_segment(t(2), seg(F | A, 501, 101, 0));
    assert_eq!(c.state(), State::CloseWait);
    assert_eq!(sent(&mut c)[0].ack, SeqNum(502));
    assert_eq!(c.read(10), Ok(0), "end of file");
    // CLOSE-WAIT lasts until the application closes: nothing else ends it.
    assert!(c.poll_timeout().is_none());
    c.close(t(3)).unwrap();
    assert_eq!(c.state(), State::LastAck);
    assert!(sent(&mut c)[0].flags.fin());
    c.handle_segment(t(4), seg(A, 502, 102, 0));
    assert_eq!(c.state(), State::Closed);
}

#[test]
fn s3_6_simultaneous_close_goes_through_closing() {
    let mut c = established();
    c.close(t(2)).unwrap();
    assert_eq!(c.state(), State::FinWait1);
    sent(&mut c);
    c.handle_segment(t(3), seg(F | A, 501, 101, 0)); // does not ack our FIN
    assert_eq!(c.state(), State::Closing);
    c.handle_segment(t(4), seg(A, 502, 102, 0));
    assert_eq!(c.state(), State::TimeWait);
}

#[test]
fn s3_6_1_half_close_keeps_receiving() {
    let mut c = established();
    c.shutdown_write(t(2)).unwrap();
    sent(&mut c);
    assert_eq!(c.send(t(2), 10), Err(CallError::Closing));
    c.handle_segment(t(3), seg(A, 501, 102, 0));
    assert_eq!(c.state(), State::FinWait2);
    c.handle_segment(t(4), seg(A, 501, 102, 300));
    assert_eq!(c.read(1000), Ok(300));
    c.handle_segment(t(5), seg(F | A, 801, 102, 0));
    assert_eq!(c.state(), State::TimeWait);
}

#[test]
fn s3_6_1_must_13_time_wait_is_two_msl_and_reacks_fin() {
    let mut c = established();
    c.close(t(0)).unwrap();
    c.handle_segment(t(0), seg(A, 501, 102, 0));
    c.handle_segment(t(0), seg(F | A, 501, 102, 0));
    assert_eq!(c.state(), State::TimeWait);
    assert_eq!(c.poll_timeout(), Some(Duration::from_secs(240)));
    sent(&mut c);
    // A retransmitted FIN: re-ACKed, and the 2·MSL timer restarts.
    c.handle_segment(Duration::from_secs(100), seg(F | A, 501, 102, 0));
    let out = sent(&mut c);
    assert_eq!(
        (out[0].flags, out[0].seq, out[0].ack),
        (A, SeqNum(102), SeqNum(502))
    );
    assert_eq!(c.poll_timeout(), Some(Duration::from_secs(340)));
    c.handle_timeout(Duration::from_secs(340));
    assert_eq!(c.state(), State::Closed);
}

#[test]
fn s3_4_2_msl_sets_time_wait_in_the_rfc_profile_only() {
    let p = Profile::rfc9293().with_msl(Duration::from_secs(30));
    assert_eq!(p.time_wait, Duration::from_secs(60));
    let l = Profile::linux().with_msl(Duration::from_secs(5));
    assert_eq!(
        l.time_wait,
        Duration::from_secs(60),
        "TCP_TIMEWAIT_LEN is fixed"
    );
}

#[test]
fn s3_10_7_4_rst_in_time_wait_kills_it_unless_rfc1337() {
    for rfc1337 in [false, true] {
        let mut p = Profile::rfc9293();
        p.rfc1337 = rfc1337;
        let mut c = Connection::new(p, SeqNum(100));
        c.open_passive().unwrap();
        c.handle_segment(t(0), seg(S, 500, 0, 0));
        c.handle_segment(t(0), seg(A, 501, 101, 0));
        c.close(t(0)).unwrap();
        c.handle_segment(t(0), seg(F | A, 501, 102, 0));
        assert_eq!(c.state(), State::TimeWait);
        c.handle_segment(t(1), seg(R, 502, 0, 0));
        let expected = if rfc1337 {
            State::TimeWait
        } else {
            State::Closed
        };
        assert_eq!(c.state(), expected);
    }
}

#[test]
fn s3_8_1_retransmission_backs_off_and_gives_up() {
    let mut c = syn_sent();
    let mut deadlines = Vec::new();
    while let Some(d) = c.poll_timeout() {
        deadlines.push(d);
        c.handle_timeout(d);
        if c.state() == State::Closed {
            break;
        }
        let out = sent(&mut c);
        assert_eq!(out[0].flags, S, "the SYN is retransmitted");
    }
    // 1 + 2 + 4 + ... : each interval doubles (RFC 6298 §5.5), 6 retries then ETIMEDOUT.
    let gaps: Vec<u64> = deadlines
        .windows(2)
        .map(|w| (w[1] - w[0]).as_secs())
        .collect();
    assert_eq!(gaps, vec![2, 4, 8, 16, 32, 60]);
    assert_eq!(c.state(), State::Closed);
    assert_eq!(c.read(1), Err(CallError::TimedOut));
}

#[test]
fn s3_10_8_user_timeout_aborts() {
    let mut p = Profile::rfc9293();
    p.user_timeout = Some(Duration::from_secs(5));
    let mut c = Connection::new(p, SeqNum(100));
    c.open_passive().unwrap();
    c.handle_segment(t(0), seg(S, 500, 0, 0));
    c.handle_segment(t(0), seg(A, 501, 101, 0));
    c.send(t(0), 100).unwrap();
    while let Some(d) = c.poll_timeout() {
        c.handle_timeout(d);
        if c.state() == State::Closed {
            assert_eq!(d, Duration::from_secs(5));
            break;
        }
    }
    assert_eq!(c.state(), State::Closed);
}

#[test]
fn s3_10_5_abort_sends_rst_only_where_the_peer_is_synchronized() {
    let mut c = established();
    c.abort(t(1)).unwrap();
    let out = sent(&mut c);
    assert_eq!((out[0].flags, out[0].seq), (R, SeqNum(101)));
    let mut c = syn_sent();
    c.abort(t(1)).unwrap();
    assert!(sent(&mut c).is_empty());
    assert_eq!(c.state(), State::Closed);
}

#[test]
fn s3_10_4_close_in_syn_sent_deletes_tcb_silently() {
    let mut c = syn_sent();
    c.close(t(1)).unwrap();
    assert!(sent(&mut c).is_empty());
    assert_eq!(c.state(), State::Closed);
    assert!(c.poll_timeout().is_none());
}

#[test]
fn s3_10_4_close_in_time_wait_is_an_error() {
    let mut c = established();
    c.close(t(0)).unwrap();
    c.handle_segment(t(0), seg(F | A, 501, 102, 0));
    assert_eq!(c.state(), State::TimeWait);
    assert_eq!(c.close(t(1)), Err(CallError::Closing));
}

#[test]
fn s3_10_7_4_syn_received_answers_unacceptable_ack_with_rst() {
    // Found by `tcpstate verify` (termination): a challenge ACK here ping-pongs for ever
    // with a TIME_WAIT peer; RFC 9293 (and Linux's tcp_check_req) send a reset.
    for profile in [Profile::rfc9293(), Profile::linux()] {
        let mut c = Connection::new(profile, SeqNum(300));
        c.open_passive().unwrap();
        c.handle_segment(t(0), seg(S, 100, 0, 0));
        sent(&mut c);
        c.handle_segment(t(1), seg(A, 101, 999, 0)); // beyond SND.NXT (301)
        assert_eq!(
            sent(&mut c),
            vec![Segment::control(SeqNum(999), SeqNum(0), R, 0)]
        );
        assert_eq!(c.state(), State::SynReceived);
    }
}

#[test]
fn s3_8_1_karn_an_ack_of_retransmitted_data_keeps_the_backed_off_rto() {
    // RFC 6298 §3 (Karn) and §5.5: no RTT sample from a retransmission, so the RTO stays
    // backed off until a segment sent once is acknowledged.
    let mut c = syn_sent();
    c.handle_segment(t(5), seg(S | A, 500, 101, 0));
    sent(&mut c);
    assert_eq!(c.rto(), Duration::from_secs(1), "RFC 6298 lower bound");
    c.send(t(10), 100).unwrap();
    sent(&mut c);
    let first = c.poll_timeout().unwrap();
    c.handle_timeout(first);
    assert_eq!(sent(&mut c)[0].len, 100, "retransmitted");
    assert_eq!(c.rto(), Duration::from_secs(2));
    c.handle_segment(first + t(5), seg(A, 501, 201, 0));
    assert_eq!(
        c.rto(),
        Duration::from_secs(2),
        "kept: the ACK gave no sample"
    );
    c.send(first + t(10), 100).unwrap();
    assert_eq!(
        c.poll_timeout(),
        Some(first + t(10) + Duration::from_secs(2))
    );
}
