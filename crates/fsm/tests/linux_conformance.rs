//! The sixteen Linux close-path behaviours of `../shared/conformance/linux/`, each verified
//! on a real 6.18 kernel, written as unit tests of `Profile::linux()`.
//!
//! Each test plays the script's lines against a server-side `Connection`: `<` lines are
//! injected with `inject`, `>` lines are checked with `expect`, `ss state` checks become
//! state assertions. Sequence numbers are relative: both ISNs are 0, as in the scripts.

use std::time::Duration;
use tcpstate_fsm::{CallError, Connection, Flags, Profile, Segment, SeqNum, State};

const S: Flags = Flags::SYN;
const A: Flags = Flags::ACK;
const F: Flags = Flags::FIN;
const R: Flags = Flags::RST;
const P: Flags = Flags::PSH;

struct Script {
    conn: Connection,
    now: Duration,
}

impl Script {
    /// The scripts' common prologue: socket, bind, listen, the handshake, accept.
    fn accepted(profile: Profile) -> Script {
        let mut conn = Connection::new(profile, SeqNum(0));
        conn.open_passive().unwrap();
        let mut s = Script {
            conn,
            now: Duration::ZERO,
        };
        s.inject(S, 0, 0, 0);
        s.expect(S | A, 0, 1, 0);
        s.inject(A, 1, 1, 0);
        assert_eq!(s.conn.state(), State::Established);
        s
    }

    fn wait(&mut self, secs: f64) {
        self.now += Duration::from_secs_f64(secs);
        // Fire every timer that is due by now, in order.
        while let Some(t) = self.conn.poll_timeout() {
            if t > self.now {
                break;
            }
            self.conn.handle_timeout(t);
        }
    }

    fn inject(&mut self, flags: Flags, seq: u32, ack: u32, len: u32) {
        let seg = Segment {
            seq: SeqNum(seq),
            ack: SeqNum(ack),
            flags,
            len,
            window: 32792,
        };
        self.conn.handle_segment(self.now, seg);
    }

    #[track_caller]
    fn expect(&mut self, flags: Flags, seq: u32, ack: u32, len: u32) {
        let t = self.conn.poll_transmit(self.now).unwrap_or_else(|| {
            panic!(
                "expected {} {seq}:{}({len}) ack {ack}, got nothing",
                flags.short(),
                seq + len
            )
        });
        let seg = t.segment;
        assert_eq!(
            (seg.flags.short(), seg.seq, seg.len),
            (flags.short(), SeqNum(seq), len),
            "segment {seg}"
        );
        if flags.ack() {
            assert_eq!(seg.ack, SeqNum(ack), "segment {seg}");
        }
    }

    #[track_caller]
    fn expect_nothing(&mut self) {
        if let Some(t) = self.conn.poll_transmit(self.now) {
            panic!("expected nothing, got {}", t.segment);
        }
    }

    #[track_caller]
    fn state(&self, s: State) {
        assert_eq!(self.conn.state(), s);
    }

    /// Into TIME_WAIT as the active closer: close(), ACK of FIN, peer FIN, our ACK.
    /// The application closes (or shuts down) its sending side, the FIN goes out, and the
    /// peer acknowledges it.
    fn fin_acked_after(&mut self, call: fn(&mut Connection, Duration) -> Result<(), CallError>) {
        self.wait(0.01);
        call(&mut self.conn, self.now).unwrap();
        self.expect(F | A, 1, 1, 0);
        self.wait(0.01);
        self.inject(A, 1, 2, 0);
    }

    fn enter_time_wait(&mut self) {
        self.fin_acked_after(Connection::close);
        self.state(State::FinWait2);
        self.wait(0.01);
        self.inject(F | A, 1, 2, 0);
        self.expect(A, 2, 2, 0);
        self.state(State::TimeWait);
    }
}

#[test]
fn a_simultaneous_close() {
    let mut s = Script::accepted(Profile::linux());
    s.wait(0.01);
    s.conn.shutdown_write(s.now).unwrap();
    s.expect(F | A, 1, 1, 0);
    s.wait(0.01);
    s.inject(F | A, 1, 1, 0);
    s.expect(A, 2, 2, 0);
    s.state(State::Closing);
    s.wait(0.01);
    s.inject(A, 2, 2, 0);
    s.state(State::TimeWait);
    // A retransmitted FIN in TIME_WAIT is re-ACKed, and TIME_WAIT goes on.
    s.wait(0.01);
    s.inject(F | A, 1, 2, 0);
    s.expect(A, 2, 2, 0);
    s.state(State::TimeWait);
}

#[test]
fn b1_time_wait_rst_kills() {
    let mut s = Script::accepted(Profile::linux());
    s.enter_time_wait();
    s.wait(0.01);
    s.inject(R | A, 2, 2, 0);
    s.expect_nothing();
    s.state(State::Closed);
    // The old connection is gone: its FIN now gets a reset.
    s.wait(0.01);
    s.inject(F | A, 1, 2, 0);
    s.expect(R, 2, 0, 0);
}

#[test]
fn b2_time_wait_rst_ignored_with_rfc1337() {
    let mut s = Script::accepted(Profile::linux());
    s.conn.profile_mut().rfc1337 = true;
    s.enter_time_wait();
    s.wait(0.01);
    s.inject(R | A, 2, 2, 0);
    s.expect_nothing();
    s.state(State::TimeWait);
    s.wait(0.01);
    s.inject(F | A, 1, 2, 0);
    s.expect(A, 2, 2, 0);
}

#[test]
fn c1_time_wait_new_syn_with_higher_seq_opens_new_incarnation() {
    let mut s = Script::accepted(Profile::linux());
    s.enter_time_wait();
    s.wait(0.01);
    s.inject(S, 1000, 0, 0);
    // ISN = tw_snd_nxt (2) + 65535 + 2.
    s.expect(S | A, 65539, 1001, 0);
    s.state(State::SynReceived);
    s.wait(0.01);
    s.inject(A, 1001, 65540, 0);
    s.state(State::Established);
}

#[test]
fn c2_time_wait_old_syn_with_lower_seq_gets_ack() {
    let mut s = Script::accepted(Profile::linux());
    s.enter_time_wait();
    let expiry = s.conn.time_wait_sock().unwrap().expires;
    s.wait(0.01);
    s.inject(S, 0, 0, 0);
    s.expect(A, 2, 2, 0);
    s.state(State::TimeWait);
    // An ACK-less SYN does not restart the TIME_WAIT timer.
    assert_eq!(s.conn.time_wait_sock().unwrap().expires, expiry);
}

#[test]
fn d1_close_with_unread_data_sends_rst() {
    let mut s = Script::accepted(Profile::linux());
    s.wait(0.01);
    s.inject(P | A, 1, 1, 10);
    s.expect(A, 1, 11, 0);
    s.wait(0.01);
    s.conn.close(s.now).unwrap();
    s.expect(R | A, 1, 11, 0);
    s.expect_nothing();
    s.state(State::Closed);
}

#[test]
fn d2_linger_zero_sends_rst_and_leaves_nothing() {
    let mut s = Script::accepted(Profile::linux());
    s.conn.set_linger_zero(true);
    s.wait(0.01);
    s.conn.close(s.now).unwrap();
    s.expect(R | A, 1, 1, 0);
    s.state(State::Closed);
    assert!(s.conn.time_wait_sock().is_none());
}

#[test]
fn e1_orphan_fin_wait_2_data_gets_rst() {
    let mut s = Script::accepted(Profile::linux());
    s.fin_acked_after(Connection::close);
    s.state(State::FinWait2);
    assert_eq!(
        s.conn.time_wait_sock().map(|tw| tw.substate),
        Some(State::FinWait2),
        "the orphan is held by a timewait mini-socket with substate FIN_WAIT2"
    );
    s.wait(0.01);
    s.inject(P | A, 1, 2, 10);
    s.expect(R, 2, 0, 0);
    s.state(State::Closed);
}

#[test]
fn e2_orphan_fin_wait_2_times_out() {
    let mut s = Script::accepted(Profile::linux());
    s.conn.profile_mut().fin_timeout = Some(Duration::from_secs(1));
    s.fin_acked_after(Connection::close);
    s.state(State::FinWait2);
    s.wait(1.5);
    s.state(State::Closed);
    s.inject(F | A, 1, 2, 0);
    s.expect(R, 2, 0, 0);
}

#[test]
fn f_close_wait_duplicate_fin_gets_duplicate_ack() {
    let mut s = Script::accepted(Profile::linux());
    s.wait(0.01);
    s.inject(F | A, 1, 1, 0);
    s.expect(A, 1, 2, 0);
    s.state(State::CloseWait);
    s.wait(0.05);
    s.inject(F | A, 1, 1, 0);
    s.expect(A, 1, 2, 0);
    s.state(State::CloseWait);
}

#[test]
fn h_orphan_fin_wait_1_data_gets_rst() {
    let mut s = Script::accepted(Profile::linux());
    s.wait(0.01);
    s.conn.close(s.now).unwrap();
    s.expect(F | A, 1, 1, 0);
    s.wait(0.01);
    s.inject(P | A, 1, 1, 10);
    s.expect(R, 1, 0, 0);
    s.state(State::Closed);
}

#[test]
fn i_syn_in_established_gets_challenge_ack() {
    let mut s = Script::accepted(Profile::linux());
    s.wait(0.01);
    s.inject(S, 500, 0, 0);
    s.expect(A, 1, 1, 0);
    s.state(State::Established);
}

#[test]
fn j_rst_in_window_but_not_exact_gets_challenge_ack() {
    let mut s = Script::accepted(Profile::linux());
    s.wait(0.01);
    s.inject(R | A, 100, 1, 0);
    s.expect(A, 1, 1, 0);
    s.state(State::Established);
    s.wait(0.01);
    s.inject(R | A, 1, 1, 0);
    s.expect_nothing();
    s.state(State::Closed);
    assert_eq!(s.conn.read(1000), Err(CallError::Reset));
}

#[test]
fn k_last_ack_fin_is_retransmitted_on_rto() {
    let mut s = Script::accepted(Profile::linux());
    s.wait(0.01);
    s.inject(F | A, 1, 1, 0);
    s.expect(A, 1, 2, 0);
    s.wait(0.01);
    s.conn.close(s.now).unwrap();
    s.expect(F | A, 1, 2, 0);
    s.state(State::LastAck);
    let deadline = s.conn.poll_timeout().unwrap() - s.now;
    assert!(
        deadline >= Duration::from_millis(200) && deadline <= Duration::from_millis(1200),
        "RTO {deadline:?} within the script's +.2~+1.2"
    );
    s.wait(deadline.as_secs_f64());
    s.expect(F | A, 1, 2, 0);
    s.inject(A, 2, 2, 0);
    s.state(State::Closed);
}

#[test]
fn l1_no_time_wait_bucket_after_shutdown() {
    let mut s = Script::accepted(Profile::linux());
    s.conn.profile_mut().time_wait_buckets_exhausted = true;
    s.fin_acked_after(Connection::shutdown_write);
    s.state(State::FinWait2);
    s.wait(0.01);
    s.inject(F | A, 1, 2, 0);
    s.expect(A, 2, 2, 0);
    s.state(State::Closed);
    s.wait(0.01);
    s.inject(F | A, 1, 2, 0);
    s.expect(R, 2, 0, 0);
}

#[test]
fn l2_no_time_wait_bucket_for_orphan() {
    let mut s = Script::accepted(Profile::linux());
    s.conn.profile_mut().time_wait_buckets_exhausted = true;
    s.fin_acked_after(Connection::close);
    s.state(State::Closed);
    s.wait(0.01);
    s.inject(F | A, 1, 2, 0);
    s.expect(R, 2, 0, 0);
}

#[test]
fn every_shared_script_has_a_test_here() {
    let dir =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/conformance/linux");
    let Ok(entries) = std::fs::read_dir(&dir) else {
        eprintln!("skipping: {} is absent (a user's own clone)", dir.display());
        return;
    };
    let mut scripts: Vec<String> = entries
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".pkt"))
        .collect();
    scripts.sort();
    // Each script's prefix (A, B1, ..., L2) names one test above.
    let covered = [
        "A_", "B1_", "B2_", "C1_", "C2_", "D1_", "D2_", "E1_", "E2_", "F_", "H_", "I_", "J_", "K_",
        "L1_", "L2_",
    ];
    assert_eq!(scripts.len(), 16, "{scripts:?}");
    for script in &scripts {
        assert!(
            covered.iter().any(|p| script.starts_with(p)),
            "no unit test for {script}"
        );
    }
}
