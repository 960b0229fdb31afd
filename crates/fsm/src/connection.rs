//! The connection: one TCB, driven sans-IO.
//!
//! The caller feeds user calls, arriving segments and the current time; it polls segments to
//! transmit ([`Connection::poll_transmit`]), the next deadline ([`Connection::poll_timeout`])
//! and events ([`Connection::poll_event`]). Time is a [`Duration`] since an epoch the caller
//! chooses (a virtual clock in tests, capture timestamps in the analyzer).
//!
//! All segment processing happens in [`Connection::handle_segment`], which dispatches on the
//! state exactly as RFC 9293 §3.10.7 does and, in the synchronized states, runs the ordered
//! checks of §3.10.7.4 as one method each. Linux's TIME_WAIT (and orphaned FIN_WAIT_2) is a
//! mini-socket with rules of its own (`tcp_timewait_state_process`); it is processed by its
//! own method and visible through [`Connection::time_wait_sock`].

use crate::profile::SharedProfile;
use crate::queue::InlineQueue;
use crate::{
    CallKind, Flags, Flavor, Profile, Segment, SegmentKind, SeqNum, State, TimerKind, Trigger,
};
use std::fmt;
use std::time::Duration;

/// How the connection was opened (RFC 9293 §3.10.7.4: a reset in SYN_RECEIVED returns a
/// passively opened connection to LISTEN, and refuses an actively opened one).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Origin {
    /// Not opened yet.
    None,
    /// OPEN active (`connect()`).
    Active,
    /// OPEN passive (`listen()`).
    Passive,
}

/// Something the application should learn about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Event {
    /// The state changed.
    StateChanged {
        /// State before.
        from: State,
        /// State after.
        to: State,
        /// What caused it.
        trigger: Trigger,
    },
    /// The handshake completed (ESTABLISHED reached).
    Connected,
    /// New data can be read (octets newly received in order).
    Readable(u32),
    /// The peer's FIN arrived: reads return end of file once the buffer is drained.
    PeerClosed,
    /// The connection was reset by the peer (ECONNRESET).
    Reset,
    /// The active open was refused (ECONNREFUSED).
    Refused,
    /// A retry limit or the user timeout gave up (ETIMEDOUT).
    TimedOut,
    /// The TCB is gone (CLOSED).
    Closed,
}

/// Why a user call failed (RFC 9293 §3.10 error texts, with the errno a socket would give).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CallError {
    /// "connection does not exist" (ENOTCONN).
    NotConnected,
    /// "connection already exists" (EISCONN / EALREADY).
    AlreadyExists,
    /// "connection closing": no more sends after our FIN (EPIPE).
    Closing,
    /// "connection reset" (ECONNRESET).
    Reset,
    /// "connection refused" (ECONNREFUSED).
    Refused,
    /// "connection aborted due to user timeout" (ETIMEDOUT).
    TimedOut,
    /// Nothing to read yet (EAGAIN).
    WouldBlock,
}

impl CallError {
    /// The errno name a socket call would return.
    pub fn errno(self) -> &'static str {
        match self {
            CallError::NotConnected => "ENOTCONN",
            CallError::AlreadyExists => "EISCONN",
            CallError::Closing => "EPIPE",
            CallError::Reset => "ECONNRESET",
            CallError::Refused => "ECONNREFUSED",
            CallError::TimedOut => "ETIMEDOUT",
            CallError::WouldBlock => "EAGAIN",
        }
    }
}

impl fmt::Display for CallError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = match self {
            CallError::NotConnected => "connection does not exist",
            CallError::AlreadyExists => "connection already exists",
            CallError::Closing => "connection closing",
            CallError::Reset => "connection reset",
            CallError::Refused => "connection refused",
            CallError::TimedOut => "connection aborted due to user timeout",
            CallError::WouldBlock => "no data available",
        };
        write!(f, "{text} ({})", self.errno())
    }
}

impl std::error::Error for CallError {}

/// A segment to send.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Transmit {
    /// The segment.
    pub segment: Segment,
    /// Whether this re-sends something sent before.
    pub retransmission: bool,
}

/// Linux's TIME_WAIT mini-socket (`struct tcp_timewait_sock`) as `ss` would show it: the
/// substate (TIME_WAIT, or FIN_WAIT_2 for an orphan) and when its timer fires.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeWaitSock {
    /// `tw_substate`: TIME_WAIT or FIN_WAIT_2.
    pub substate: State,
    /// When the `timewait` timer fires.
    pub expires: Duration,
    /// `tw_rcv_nxt`.
    pub rcv_nxt: SeqNum,
    /// `tw_snd_nxt`.
    pub snd_nxt: SeqNum,
}

/// Per-connection retransmission state (RFC 6298).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Rtx {
    deadline: Option<Duration>,
    rto: Duration,
    retries: u32,
    /// SRTT and RTTVAR in nanoseconds (u128 holds any `Duration`), kept as integers between
    /// samples so that an update converts only the sample and the resulting RTO. SRTT is
    /// [`NO_RTT_SAMPLE`] until the first sample (an `Option<u128>` would take 32 bytes).
    srtt: u128,
    rttvar: u128,
    /// Karn's algorithm: time a segment ending at this sequence number, unless retransmitted.
    sample: Option<(SeqNum, Duration)>,
}

/// One TCP connection (one TCB), sans-IO.
///
/// `Clone + Eq + Hash`, so a model checker can store and compare whole connections.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Connection {
    profile: SharedProfile,
    state: State,
    origin: Origin,
    /// The ISS used by the next open (active or passive); the caller chooses it.
    next_iss: SeqNum,

    // Send sequence space (RFC 9293 §3.3.1).
    iss: SeqNum,
    snd_una: SeqNum,
    snd_nxt: SeqNum,
    snd_wnd: u32,
    snd_wl1: SeqNum,
    snd_wl2: SeqNum,
    max_snd_wnd: u32,
    /// Octets the application wrote that are not yet segmentized.
    unsent: u32,
    /// The application closed or shut down its sending side: a FIN follows the data.
    fin_pending: bool,
    /// Sequence number of our FIN once sent.
    fin_seq: Option<SeqNum>,

    // Receive sequence space.
    irs: SeqNum,
    rcv_nxt: SeqNum,
    /// Octets received in order and not yet read by the application.
    unread: u32,
    peer_fin: bool,

    /// close() was called: the socket is an orphan (Linux `SOCK_DEAD`, `RCV_SHUTDOWN`).
    app_closed: bool,
    linger_zero: bool,
    /// Sticky error reported to later calls (RFC 9293: "connection reset" etc.).
    error: Option<CallError>,

    rtx: Rtx,
    time_wait_deadline: Option<Duration>,
    fin_wait_2_deadline: Option<Duration>,
    user_timeout_deadline: Option<Duration>,
    /// Linux: TIME_WAIT or the orphaned FIN_WAIT_2 is held by a mini-socket.
    mini_socket: bool,

    ack_pending: bool,
    /// When the last rate-limited out-of-window ACK was sent (`last_oow_ack_time`).
    last_oow_ack: Option<Duration>,
    /// Segments to send, until polled, inline up to two (no allocation per connection). A
    /// call usually queues one (a SYN, an ACK, a RST, a retransmission, or data up to one
    /// MSS with its FIN); data of more than two MSS at once spills to the heap.
    transmits: InlineQueue<Transmit, TRANSMITS_INLINE>,
    /// Events until polled: one call reports at most a handful (a transition, Connected or
    /// Readable, PeerClosed, Closed...).
    events: InlineQueue<Event, EVENTS_INLINE>,
    /// Segments to send are dropped instead of queued ([`Connection::set_drop_transmits`]).
    /// Part of equality: such a connection never has transmits to poll.
    drop_transmits: bool,
}

/// `Rtx::srtt` before the first RTT sample: above any SRTT, which is at most
/// `Duration::MAX` (about 2^94 ns).
const NO_RTT_SAMPLE: u128 = u128::MAX;

/// Transmits held inline before the queue spills to the heap. Each costs 24 bytes in every
/// connection; two instead of four measured 0.3 % fewer instructions for the capture
/// analyzer (smaller moves of its connection table entries), with no spill on its corpus.
const TRANSMITS_INLINE: usize = 2;
/// Events held inline before the queue spills to the heap.
const EVENTS_INLINE: usize = 4;

impl Connection {
    /// A connection in CLOSED. `iss` is the initial send sequence number it will use (RFC
    /// 9293 §3.4.1: the caller's clock-driven or random choice; sans-IO, so it is given).
    pub fn new(profile: Profile, iss: SeqNum) -> Connection {
        Connection::with_shared_profile(SharedProfile::new(profile), iss)
    }

    /// `Connection::new(Profile::for_flavor(flavor), iss)`, without building and comparing
    /// a profile: for callers creating connections by the thousand (the capture analyzer).
    pub fn with_flavor(flavor: Flavor, iss: SeqNum) -> Connection {
        Connection::with_shared_profile(SharedProfile::builtin(flavor), iss)
    }

    fn with_shared_profile(profile: SharedProfile, iss: SeqNum) -> Connection {
        let rto = profile.rto_initial;
        Connection {
            profile,
            state: State::Closed,
            origin: Origin::None,
            next_iss: iss,
            iss,
            snd_una: iss,
            snd_nxt: iss,
            snd_wnd: 0,
            snd_wl1: SeqNum(0),
            snd_wl2: SeqNum(0),
            max_snd_wnd: 0,
            unsent: 0,
            fin_pending: false,
            fin_seq: None,
            irs: SeqNum(0),
            rcv_nxt: SeqNum(0),
            unread: 0,
            peer_fin: false,
            app_closed: false,
            linger_zero: false,
            error: None,
            rtx: Rtx {
                deadline: None,
                rto,
                retries: 0,
                srtt: NO_RTT_SAMPLE,
                rttvar: 0,
                sample: None,
            },
            time_wait_deadline: None,
            fin_wait_2_deadline: None,
            user_timeout_deadline: None,
            mini_socket: false,
            ack_pending: false,
            last_oow_ack: None,
            transmits: InlineQueue::new(),
            events: InlineQueue::new(),
            drop_transmits: false,
        }
    }

    // ----- inspection -------------------------------------------------------------------

    /// The current state.
    pub fn state(&self) -> State {
        self.state
    }

    /// The profile.
    pub fn profile(&self) -> &Profile {
        &self.profile
    }

    /// Mutable profile, for knobs that change at run time like a `sysctl` (e.g. `rfc1337`).
    pub fn profile_mut(&mut self) -> &mut Profile {
        self.profile.make_mut()
    }

    /// Choose the ISS of the next incarnation (active open, or the SYN,ACK of a passive one).
    pub fn set_next_iss(&mut self, iss: SeqNum) {
        self.next_iss = iss;
    }

    /// How the connection was opened.
    pub fn origin(&self) -> Origin {
        self.origin
    }

    /// SND.UNA.
    pub fn snd_una(&self) -> SeqNum {
        self.snd_una
    }
    /// SND.NXT.
    pub fn snd_nxt(&self) -> SeqNum {
        self.snd_nxt
    }
    /// RCV.NXT.
    pub fn rcv_nxt(&self) -> SeqNum {
        self.rcv_nxt
    }
    /// ISS of the current incarnation.
    pub fn iss(&self) -> SeqNum {
        self.iss
    }
    /// IRS of the current incarnation.
    pub fn irs(&self) -> SeqNum {
        self.irs
    }
    /// Octets received and not yet read (Linux Recv-Q).
    pub fn unread(&self) -> u32 {
        self.unread
    }
    /// Octets sent or queued and not yet acknowledged (Linux Send-Q).
    pub fn unacknowledged(&self) -> u32 {
        self.snd_nxt.distance_from(self.snd_una).max(0) as u32 + self.unsent
    }
    /// Whether close() was called (Linux: the socket is an orphan).
    pub fn is_orphan(&self) -> bool {
        self.app_closed
    }
    /// Consecutive retransmissions of the current front of the queue.
    pub fn retransmissions(&self) -> u32 {
        self.rtx.retries
    }

    /// The current retransmission timeout.
    pub fn rto(&self) -> Duration {
        self.rtx.rto
    }

    /// Linux's mini-socket view of TIME_WAIT / orphaned FIN_WAIT_2, as `ss` shows it.
    pub fn time_wait_sock(&self) -> Option<TimeWaitSock> {
        if !self.mini_socket {
            return None;
        }
        let expires = match self.state {
            State::TimeWait => self.time_wait_deadline?,
            State::FinWait2 => self.fin_wait_2_deadline?,
            _ => return None,
        };
        Some(TimeWaitSock {
            substate: self.state,
            expires,
            rcv_nxt: self.rcv_nxt,
            snd_nxt: self.snd_nxt,
        })
    }

    // ----- polling ----------------------------------------------------------------------

    /// The next segment to send, if any.
    #[inline]
    pub fn poll_transmit(&mut self, _now: Duration) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    /// With `on`, every segment this connection would queue to send is dropped instead, as
    /// if it were polled and ignored at once (the queued ones too): for callers that follow
    /// only the states, such as the capture analyzer, which sees the real segments on the
    /// wire. Nothing else changes: the segments are never read back by the connection. Off
    /// (the default), they are queued for [`Connection::poll_transmit`].
    pub fn set_drop_transmits(&mut self, on: bool) {
        self.drop_transmits = on;
        if on {
            self.transmits.clear();
        }
    }

    /// The earliest deadline of the running timers (retransmission, TIME_WAIT, FIN_WAIT_2,
    /// user timeout), each independent of the others.
    pub fn poll_timeout(&self) -> Option<Duration> {
        self.poll_timer().map(|(at, _)| at)
    }

    /// The earliest running timer and its deadline.
    pub fn poll_timer(&self) -> Option<(Duration, TimerKind)> {
        [
            (self.user_timeout_deadline, TimerKind::UserTimeout),
            (self.time_wait_deadline, TimerKind::TimeWait),
            (self.fin_wait_2_deadline, TimerKind::FinWait2),
            (self.rtx.deadline, TimerKind::Retransmission),
        ]
        .into_iter()
        .filter_map(|(at, kind)| at.map(|at| (at, kind)))
        .min_by_key(|&(at, _)| at)
    }

    /// The next event, if any.
    #[inline]
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// Whether [`Connection::poll_event`] has an event to return.
    #[inline]
    pub fn has_events(&self) -> bool {
        !self.events.is_empty()
    }

    // ----- user calls (RFC 9293 §3.10.1–3.10.6) ------------------------------------------

    /// OPEN passive (`listen()`), §3.10.1.
    pub fn open_passive(&mut self) -> Result<(), CallError> {
        if self.state != State::Closed {
            return Err(CallError::AlreadyExists);
        }
        self.reset_tcb();
        self.origin = Origin::Passive;
        self.set_state(State::Listen, Trigger::Call(CallKind::OpenPassive));
        Ok(())
    }

    /// OPEN active (`connect()`), §3.10.1; in LISTEN this is §3.10.2's SEND with a remote
    /// socket given, which the RFC profile allows.
    pub fn open_active(&mut self, now: Duration) -> Result<(), CallError> {
        match self.state {
            State::Closed => self.reset_tcb(),
            State::Listen if !self.profile.is_linux() => {}
            _ => return Err(CallError::AlreadyExists),
        }
        self.origin = Origin::Active;
        self.iss = self.next_iss;
        self.snd_una = self.iss;
        self.snd_nxt = self.iss + 1;
        self.emit(self.iss, Flags::SYN, 0, false);
        self.arm_rtx(now);
        self.set_state(State::SynSent, Trigger::Call(CallKind::OpenActive));
        Ok(())
    }

    /// SEND of `len` octets (§3.10.2). Queued in SYN_SENT/SYN_RECEIVED, sent at once in
    /// ESTABLISHED and CLOSE_WAIT (flow and congestion control are not modelled).
    pub fn send(&mut self, now: Duration, len: u32) -> Result<(), CallError> {
        if let Some(err) = self.error {
            return Err(err);
        }
        match self.state {
            State::Closed | State::Listen => Err(CallError::NotConnected),
            _ if self.fin_pending || self.fin_seq.is_some() => Err(CallError::Closing),
            State::SynSent | State::SynReceived | State::Established | State::CloseWait => {
                self.unsent += len;
                self.flush(now);
                Ok(())
            }
            _ => Err(CallError::Closing),
        }
    }

    /// RECEIVE up to `max` octets (§3.10.3). `Ok(0)` is end of file (the peer's FIN was
    /// received and everything before it read).
    pub fn read(&mut self, max: u32) -> Result<u32, CallError> {
        if self.unread > 0 {
            let n = self.unread.min(max);
            self.unread -= n;
            return Ok(n);
        }
        if self.peer_fin {
            return Ok(0);
        }
        if let Some(err) = self.error {
            return Err(err);
        }
        match self.state {
            State::Closed | State::Listen => Err(CallError::NotConnected),
            _ => Err(CallError::WouldBlock),
        }
    }

    /// `SO_LINGER {1,0}`: a later close() aborts (`tcp_disconnect`) instead of closing.
    pub fn set_linger_zero(&mut self, on: bool) {
        self.linger_zero = on;
    }

    /// `shutdown(SHUT_WR)`: send FIN after queued data, keep receiving (§3.6.1 half-close;
    /// `tcp_shutdown`).
    pub fn shutdown_write(&mut self, now: Duration) -> Result<(), CallError> {
        match self.state {
            State::Closed | State::Listen => Err(CallError::NotConnected),
            // `inet_shutdown` routes SYN_SENT to disconnect: like CLOSE in SYN-SENT.
            State::SynSent => {
                self.delete_tcb(Trigger::Call(CallKind::ShutdownWrite));
                Ok(())
            }
            State::SynReceived | State::Established => {
                self.fin_pending = true;
                self.set_state(State::FinWait1, Trigger::Call(CallKind::ShutdownWrite));
                self.flush(now);
                Ok(())
            }
            State::CloseWait => {
                self.fin_pending = true;
                self.set_state(State::LastAck, Trigger::Call(CallKind::ShutdownWrite));
                self.flush(now);
                Ok(())
            }
            // Already shut down for sending: nothing more to do.
            _ => Ok(()),
        }
    }

    /// CLOSE (`close()`), §3.10.4, with Linux's `__tcp_close` where the profile says so.
    pub fn close(&mut self, now: Duration) -> Result<(), CallError> {
        if self.linger_zero && self.state != State::Listen {
            // SO_LINGER {1,0}: close() is an abort (tcp_disconnect).
            self.app_closed = true;
            return self.abort(now);
        }
        let was_orphan = self.app_closed;
        self.app_closed = true;
        match self.state {
            State::Closed => Err(CallError::NotConnected),
            State::Listen | State::SynSent => {
                // §3.10.4: delete the TCB; no segment is sent.
                self.delete_tcb(Trigger::Call(CallKind::Close));
                Ok(())
            }
            State::Established
            | State::CloseWait
            | State::FinWait1
            | State::FinWait2
            | State::Closing
            | State::LastAck
                if self.profile.rst_on_close_with_unread_data && self.unread > 0 =>
            {
                // __tcp_close: "data was unread" → RST|ACK at SND.NXT, straight to CLOSE
                // (RFC 2525 §2.17). The unread data is discarded.
                self.unread = 0;
                self.send_active_reset();
                self.delete_tcb(Trigger::Call(CallKind::Close));
                Ok(())
            }
            State::SynReceived | State::Established => {
                self.fin_pending = true;
                self.set_state(State::FinWait1, Trigger::Call(CallKind::Close));
                self.flush(now);
                Ok(())
            }
            State::CloseWait => {
                self.fin_pending = true;
                self.set_state(State::LastAck, Trigger::Call(CallKind::Close));
                self.flush(now);
                Ok(())
            }
            State::FinWait2 => {
                // Already half-closed by shutdown(); close() now orphans it. Linux arms the
                // FIN_WAIT_2 timeout (adjudge_to_death in __tcp_close).
                if !was_orphan {
                    self.arm_orphan_fin_wait_2(now);
                }
                Ok(())
            }
            // FIN already sent: RFC "error: connection closing" is about a second CLOSE;
            // a socket close() here simply orphans the connection.
            State::FinWait1 | State::Closing | State::LastAck => Ok(()),
            State::TimeWait => Err(CallError::Closing),
        }
    }

    /// ABORT, §3.10.5: RST where the state has a synchronized peer, then CLOSED.
    pub fn abort(&mut self, _now: Duration) -> Result<(), CallError> {
        match self.state {
            State::Closed => Err(CallError::NotConnected),
            State::Listen | State::SynSent => {
                self.delete_tcb(Trigger::Call(CallKind::Abort));
                Ok(())
            }
            // RFC §3.10.5: RST in SYN-RECEIVED, ESTABLISHED, FIN-WAIT-1/2, CLOSE-WAIT — the
            // same set as Linux's tcp_need_reset().
            State::SynReceived
            | State::Established
            | State::FinWait1
            | State::FinWait2
            | State::CloseWait => {
                self.send_active_reset();
                self.delete_tcb(Trigger::Call(CallKind::Abort));
                Ok(())
            }
            // CLOSING, LAST-ACK, TIME-WAIT: "respond with ok and delete the TCB", no RST.
            State::Closing | State::LastAck | State::TimeWait => {
                self.delete_tcb(Trigger::Call(CallKind::Abort));
                Ok(())
            }
        }
    }

    // ----- timers (RFC 9293 §3.10.8) -----------------------------------------------------

    /// Fire every timer whose deadline is at or before `now`.
    pub fn handle_timeout(&mut self, now: Duration) {
        if self.user_timeout_deadline.is_some_and(|d| d <= now) {
            self.user_timeout_deadline = None;
            self.error = Some(CallError::TimedOut);
            self.events.push_back(Event::TimedOut);
            self.delete_tcb(Trigger::Timer(TimerKind::UserTimeout));
            return;
        }
        if self.time_wait_deadline.is_some_and(|d| d <= now) {
            // §3.10.8 TIME-WAIT TIMEOUT: delete the TCB.
            self.delete_tcb(Trigger::Timer(TimerKind::TimeWait));
            return;
        }
        if self.fin_wait_2_deadline.is_some_and(|d| d <= now) {
            // Linux: the orphan gave up waiting for the peer's FIN (tcp_fin_timeout).
            self.delete_tcb(Trigger::Timer(TimerKind::FinWait2));
            return;
        }
        if self.rtx.deadline.is_some_and(|d| d <= now) {
            self.on_retransmission_timeout(now);
        }
    }

    fn retry_limit(&self) -> u32 {
        match self.state {
            State::SynSent => self.profile.syn_retries,
            State::SynReceived => self.profile.synack_retries,
            _ if self.app_closed && self.profile.is_linux() => self.profile.orphan_retries,
            _ => self.profile.data_retries,
        }
    }

    fn on_retransmission_timeout(&mut self, now: Duration) {
        self.rtx.deadline = None;
        if self.snd_una == self.snd_nxt {
            return;
        }
        if self.rtx.retries >= self.retry_limit() {
            // tcp_write_timeout: give up.
            self.error = Some(CallError::TimedOut);
            self.events.push_back(Event::TimedOut);
            if self.state == State::SynReceived && self.origin == Origin::Passive {
                // The listener drops the embryonic connection and keeps listening.
                self.back_to_listen(Trigger::Timer(TimerKind::Retransmission));
            } else {
                self.delete_tcb(Trigger::Timer(TimerKind::Retransmission));
            }
            return;
        }
        self.rtx.retries += 1;
        // RFC 6298 §5.5: back off the timer; Karn: no RTT sample from a retransmission.
        self.rtx.rto = (self.rtx.rto * 2).min(self.profile.rto_max);
        self.rtx.sample = None;
        self.retransmit_front();
        self.rtx.deadline = Some(now + self.rtx.rto);
    }

    /// Re-send the front of the retransmission queue: SYN, SYN-ACK, or data from SND.UNA
    /// (at most one MSS), with the FIN if it fits.
    fn retransmit_front(&mut self) {
        if self.snd_una == self.iss {
            // Our SYN is not acknowledged yet (SYN-SENT, SYN-RECEIVED, or a FIN-WAIT-1
            // entered from SYN-RECEIVED): the SYN goes first.
            let flags = if self.state == State::SynSent {
                Flags::SYN
            } else {
                Flags::SYN | Flags::ACK
            };
            self.emit(self.iss, flags, 0, true);
            return;
        }
        let data_end = self.fin_seq.unwrap_or(self.snd_nxt);
        let outstanding = data_end.distance_from(self.snd_una).max(0) as u32;
        let len = outstanding.min(self.profile.mss);
        let mut flags = Flags::ACK;
        if let Some(fin) = self.fin_seq {
            if self.snd_una + len == fin {
                flags |= Flags::FIN;
            }
        }
        if len > 0 {
            flags |= Flags::PSH;
        }
        self.emit(self.snd_una, flags, len, true);
    }

    // ----- segment arrival (RFC 9293 §3.10.7) --------------------------------------------

    /// Process an arriving segment (§3.10.7), dispatching on the state.
    pub fn handle_segment(&mut self, now: Duration, seg: Segment) {
        match self.state {
            State::Closed => self.segment_in_closed(&seg),
            State::Listen => self.segment_in_listen(now, &seg),
            State::SynSent => self.segment_in_syn_sent(now, &seg),
            State::TimeWait | State::FinWait2 if self.mini_socket => {
                self.segment_in_timewait_sock(now, &seg)
            }
            _ => self.segment_in_synchronized(now, &seg),
        }
        self.flush(now);
    }

    /// §3.10.7.1 CLOSED: everything but a RST is answered with a RST.
    fn segment_in_closed(&mut self, seg: &Segment) {
        if let Some(rst) = reset_for_unexpected(seg) {
            self.push_transmit(rst, false);
        }
    }

    /// §3.10.7.2 LISTEN.
    fn segment_in_listen(&mut self, now: Duration, seg: &Segment) {
        let f = seg.flags;
        if f.rst() {
            return; // first: an RST is ignored
        }
        if f.ack() {
            // second: any ACK is bad here: <SEQ=SEG.ACK><CTL=RST>
            self.push_transmit(Segment::control(seg.ack, SeqNum(0), Flags::RST, 0), false);
            return;
        }
        if f.syn() {
            // third: a SYN. Linux drops SYN+FIN (tcp_v4_rcv / tcp_rcv_state_process: "if
            // (th->fin) goto discard"); the RFC would queue the FIN, which nothing here needs.
            if f.fin() && self.profile.is_linux() {
                return;
            }
            self.accept_syn(now, seg, self.next_iss, Trigger::Segment(SegmentKind::Syn));
        }
        // fourth: anything else is dropped.
    }

    /// LISTEN (or Linux TIME_WAIT, `TCP_TW_SYN`) + SYN → SYN_RECEIVED, sending SYN,ACK.
    fn accept_syn(&mut self, now: Duration, seg: &Segment, iss: SeqNum, trigger: Trigger) {
        let keep_origin = self.origin;
        self.reset_tcb();
        self.origin = if keep_origin == Origin::None {
            Origin::Passive
        } else {
            keep_origin
        };
        self.irs = seg.seq;
        self.rcv_nxt = seg.seq + 1;
        self.iss = iss;
        self.snd_una = iss;
        self.snd_nxt = iss + 1;
        self.snd_wnd = seg.window;
        self.max_snd_wnd = seg.window;
        self.snd_wl1 = seg.seq;
        self.emit(iss, Flags::SYN | Flags::ACK, 0, false);
        self.arm_rtx(now);
        self.set_state(State::SynReceived, trigger);
    }

    /// §3.10.7.3 SYN-SENT.
    fn segment_in_syn_sent(&mut self, now: Duration, seg: &Segment) {
        let f = seg.flags;
        // first: the ACK bit.
        let mut ack_ok = false;
        if f.ack() {
            if seg.ack.le(self.iss) || seg.ack.gt(self.snd_nxt) {
                if !f.rst() {
                    self.push_transmit(Segment::control(seg.ack, SeqNum(0), Flags::RST, 0), false);
                }
                return;
            }
            ack_ok = seg.ack.gt(self.snd_una) && seg.ack.le(self.snd_nxt);
        }
        // second: the RST bit. Only an RST that acknowledges our SYN is believed (RFC 5961
        // §3.2 asks the same); it means "connection refused".
        if f.rst() {
            if ack_ok {
                self.error = Some(CallError::Refused);
                self.events.push_back(Event::Refused);
                self.delete_tcb(Trigger::Segment(SegmentKind::Rst));
            }
            return;
        }
        // fourth: the SYN bit.
        if f.syn() {
            self.irs = seg.seq;
            self.rcv_nxt = seg.seq + 1;
            if ack_ok {
                self.snd_una = seg.ack;
                self.on_ack_progress(now, seg.ack);
            }
            if self.snd_una.gt(self.iss) {
                self.update_window(seg);
                self.set_state(State::Established, Trigger::Segment(SegmentKind::SynAck));
                self.events.push_back(Event::Connected);
                self.ack_pending = true;
            } else {
                // Simultaneous open (§3.10.7.3, MUST-10): <SEQ=ISS><ACK=RCV.NXT><CTL=SYN,ACK>.
                self.snd_wnd = seg.window;
                self.max_snd_wnd = self.max_snd_wnd.max(seg.window);
                self.snd_wl1 = seg.seq;
                self.snd_wl2 = seg.ack;
                self.emit(self.iss, Flags::SYN | Flags::ACK, 0, false);
                self.arm_rtx(now);
                self.set_state(State::SynReceived, Trigger::Segment(SegmentKind::Syn));
            }
        }
        // fifth: neither SYN nor RST: drop.
    }

    /// §3.10.7.4, "Otherwise": SYN-RECEIVED and the synchronized states, as ordered steps.
    fn segment_in_synchronized(&mut self, now: Duration, seg: &Segment) {
        if self.state == State::SynReceived
            && self.profile.check_ack_first_in_syn_received
            && seg.flags.ack()
            && !seg.flags.rst()
            && !(seg.ack.gt(self.snd_una) && seg.ack.le(self.snd_nxt))
        {
            // Linux tcp_check_req tests the ACK of a request socket before its sequence
            // window: an unacceptable ACK gets <SEQ=SEG.ACK><CTL=RST> even when the
            // segment is also out of window (where the RFC order would send an ACK, which
            // a TIME_WAIT peer answers with an ACK, and so on).
            self.push_transmit(Segment::control(seg.ack, SeqNum(0), Flags::RST, 0), false);
            return;
        }
        if !self.check_sequence(now, seg) {
            return;
        }
        if seg.flags.rst() {
            self.check_rst(now, seg);
            return;
        }
        if seg.flags.syn() && !self.check_syn(now, seg) {
            return;
        }
        if !self.check_ack(now, seg) {
            return;
        }
        // sixth, URG: the urgent pointer is not modelled (RFC 6093 deprecates its use).
        if !self.process_text(seg) {
            return;
        }
        self.process_fin(now, seg);
    }

    /// RCV.WND: what is left of the receive buffer.
    fn rcv_wnd(&self) -> u32 {
        self.profile.receive_buffer.saturating_sub(self.unread)
    }

    /// Table 6 of §3.10.7.4: is the segment's sequence space acceptable?
    fn acceptable(&self, seg: &Segment) -> bool {
        let wnd = self.rcv_wnd();
        let len = seg.seg_len();
        let right = self.rcv_nxt + wnd;
        match (len, wnd) {
            (0, 0) => seg.seq == self.rcv_nxt,
            (0, _) => seg.seq.in_range(self.rcv_nxt, right),
            (_, 0) => {
                // Linux accepts a bare FIN at RCV.NXT into a zero window, so a FIN can never
                // be stuck behind a closed window.
                self.profile.accept_fin_with_zero_window
                    && seg.len == 0
                    && seg.flags.fin()
                    && seg.seq == self.rcv_nxt
            }
            (_, _) => {
                seg.seq.in_range(self.rcv_nxt, right)
                    || (seg.seq + (len - 1)).in_range(self.rcv_nxt, right)
            }
        }
    }

    /// First check: sequence number. Returns whether processing continues.
    fn check_sequence(&mut self, now: Duration, seg: &Segment) -> bool {
        if self.acceptable(seg) {
            return true;
        }
        if seg.flags.rst() {
            // Linux tcp_reset_check: after the peer's FIN, an RST at RCV.NXT−1 still resets.
            if self.profile.accept_rst_before_fin
                && matches!(
                    self.state,
                    State::CloseWait | State::LastAck | State::Closing
                )
                && seg.seq == self.rcv_nxt - 1
            {
                self.reset_by_peer();
            }
            return false; // an unacceptable RST is dropped silently
        }
        if self.state == State::SynReceived
            && seg.flags.syn()
            && !seg.flags.ack()
            && seg.seq == self.irs
            && self.profile.resend_syn_ack_on_dup_syn
        {
            // The peer did not get our SYN,ACK: send it again (tcp_check_req).
            self.emit(self.iss, Flags::SYN | Flags::ACK, 0, true);
            return false;
        }
        // <SEQ=SND.NXT><ACK=RCV.NXT><CTL=ACK>, then drop (rate-limited in Linux).
        self.oow_ack(now, seg);
        if self.state == State::TimeWait && !self.profile.time_wait_reacks_fin {
            self.ack_pending = false;
            return false;
        }
        if self.state == State::TimeWait && seg.flags.fin() && seg.end() == self.rcv_nxt {
            // §3.10.7.4 fifth/eighth check for TIME-WAIT: "The only thing that can arrive
            // in this state is a retransmission of the remote FIN. Acknowledge it, and
            // restart the 2 MSL timeout." (It fails this first check, being old.)
            self.time_wait_deadline = Some(now + self.profile.time_wait);
        }
        false
    }

    /// Second check: RST (RFC 5961 §3.2 form).
    fn check_rst(&mut self, now: Duration, seg: &Segment) {
        if seg.seq != self.rcv_nxt {
            // In the window but not exactly RCV.NXT: challenge ACK, drop.
            self.oow_ack(now, seg);
            return;
        }
        match self.state {
            State::SynReceived if self.origin == Origin::Passive => {
                // "return this connection to LISTEN state"; the user need not be informed.
                self.back_to_listen(Trigger::Segment(SegmentKind::Rst));
            }
            State::SynReceived => {
                self.error = Some(CallError::Refused);
                self.events.push_back(Event::Refused);
                self.delete_tcb(Trigger::Segment(SegmentKind::Rst));
            }
            State::TimeWait if self.profile.rfc1337 => {
                // RFC 1337 F1: ignore RST in TIME-WAIT, or an old duplicate assassinates it.
            }
            State::Closing | State::LastAck | State::TimeWait => {
                self.delete_tcb(Trigger::Segment(SegmentKind::Rst));
            }
            _ => self.reset_by_peer(),
        }
    }

    fn reset_by_peer(&mut self) {
        self.error = Some(CallError::Reset);
        self.events.push_back(Event::Reset);
        // "all segment queues should be flushed": unread data is lost (read gives ECONNRESET).
        self.unread = 0;
        self.delete_tcb(Trigger::Segment(SegmentKind::Rst));
    }

    /// Fourth check: SYN. Returns whether processing continues.
    fn check_syn(&mut self, now: Duration, seg: &Segment) -> bool {
        if self.state == State::SynReceived && self.origin == Origin::Passive {
            // "If the connection was initiated with a passive OPEN, then return this
            // connection to the LISTEN state and return."
            let _ = seg;
            self.back_to_listen(Trigger::Segment(SegmentKind::Syn));
            return false;
        }
        // RFC 5961 §4.2: any SYN in a synchronized state gets a challenge ACK and is dropped.
        self.oow_ack(now, seg);
        false
    }

    /// Fifth check: ACK. Returns whether processing continues.
    fn check_ack(&mut self, now: Duration, seg: &Segment) -> bool {
        if !seg.flags.ack() {
            return false; // "if the ACK bit is off, drop the segment and return"
        }
        if self.state == State::SynReceived {
            // SYN-RECEIVED comes before RFC 5961's test, which is for the synchronized
            // states: an unacceptable ACK here gets a reset, not a challenge ACK (RFC 9293
            // §3.10.7.4 fifth check; Linux tcp_check_req → embryonic_reset). A challenge ACK
            // would ping-pong for ever with a TIME_WAIT peer that re-ACKs everything (found
            // by `tcpstate verify`, property `termination`).
            if seg.ack.gt(self.snd_una) && seg.ack.le(self.snd_nxt) {
                self.snd_una = seg.ack;
                self.on_ack_progress(now, seg.ack);
                self.update_window(seg);
                self.set_state(State::Established, Trigger::Segment(SegmentKind::AckOfSyn));
                self.events.push_back(Event::Connected);
            } else {
                // <SEQ=SEG.ACK><CTL=RST>
                self.push_transmit(Segment::control(seg.ack, SeqNum(0), Flags::RST, 0), false);
                return false;
            }
        }
        // RFC 5961 §5.2: acceptable iff SND.UNA − MAX.SND.WND =< SEG.ACK =< SND.NXT.
        let oldest = self.snd_una - self.max_snd_wnd.max(1);
        if seg.ack.gt(self.snd_nxt) || seg.ack.lt(oldest) {
            self.oow_ack(now, seg);
            return false;
        }
        if seg.ack.gt(self.snd_una) {
            self.snd_una = seg.ack;
            self.on_ack_progress(now, seg.ack);
        }
        if self.snd_una.le(seg.ack) {
            self.update_window(seg);
        }
        let fin_acked = self.fin_seq.is_some_and(|fin| self.snd_una == fin + 1);
        match self.state {
            State::FinWait1 if fin_acked => self.on_fin_acked_in_fin_wait_1(now),
            State::Closing if fin_acked => {
                self.enter_time_wait(now, Trigger::Segment(SegmentKind::AckOfFin))
            }
            State::LastAck if fin_acked => {
                self.delete_tcb(Trigger::Segment(SegmentKind::AckOfFin));
                return false;
            }
            _ => {}
        }
        self.state != State::Closed
    }

    /// FIN_WAIT_1 → FIN_WAIT_2 (and, for a Linux orphan, the FIN_WAIT_2 mini-socket).
    fn on_fin_acked_in_fin_wait_1(&mut self, now: Duration) {
        let trigger = Trigger::Segment(SegmentKind::AckOfFin);
        if self.profile.is_linux() && self.app_closed {
            if self.profile.time_wait_buckets_exhausted {
                // tcp_time_wait(sk, TCP_FIN_WAIT2, tmo) cannot allocate the tw sock: tcp_done.
                self.delete_tcb(trigger);
                return;
            }
            self.set_state(State::FinWait2, trigger);
            self.arm_orphan_fin_wait_2(now);
            return;
        }
        self.set_state(State::FinWait2, trigger);
    }

    /// Linux `tcp_fin_time()`: the orphan's FIN_WAIT_2 timeout, at least 3.5·RTO.
    fn arm_orphan_fin_wait_2(&mut self, now: Duration) {
        if !self.profile.is_linux() {
            return; // RFC 9293 has no such timer: FIN-WAIT-2 waits for the peer's FIN.
        }
        if let Some(fin_timeout) = self.profile.fin_timeout {
            let floor = self.rtx.rto * 7 / 2;
            let tmo = fin_timeout.max(floor);
            self.fin_wait_2_deadline = Some(now + tmo);
            // Within TCP_TIMEWAIT_LEN the kernel swaps the socket for a tw sock at once.
            self.mini_socket = tmo <= Duration::from_secs(60);
            self.stop_rtx();
        }
    }

    /// Seventh check: segment text. Returns whether processing continues.
    fn process_text(&mut self, seg: &Segment) -> bool {
        if seg.len == 0 {
            return true;
        }
        match self.state {
            State::Established | State::FinWait1 | State::FinWait2 => {}
            // CLOSE-WAIT, CLOSING, LAST-ACK, TIME-WAIT: "ignore the segment text" (a FIN
            // has been received).
            _ => return true,
        }
        let data_end = seg.seq + seg.len;
        let new_data = data_end.gt(self.rcv_nxt);
        if self.profile.rst_on_data_after_close
            && self.app_closed
            && matches!(self.state, State::FinWait1 | State::FinWait2)
            && new_data
        {
            // tcp_rcv_state_process: "RFC 793 says to queue data in these states, RFC 1122
            // says we MUST send a reset." The reset is sent like one for no connection.
            self.answer_with_reset(seg);
            self.delete_tcb(Trigger::Segment(SegmentKind::DataAfterClose));
            return false;
        }
        if seg.seq.gt(self.rcv_nxt) {
            // Out of order: SHLD-31 says hold it; reassembly is not modelled, so it is
            // dropped and a duplicate ACK tells the peer what we expect.
            self.ack_pending = true;
            return false;
        }
        if new_data {
            let fresh = data_end.distance_from(self.rcv_nxt) as u32;
            let room = self.rcv_wnd();
            let taken = fresh.min(room);
            self.rcv_nxt += taken;
            self.unread += taken;
            if taken > 0 {
                self.events.push_back(Event::Readable(taken));
            }
            if taken < fresh {
                self.ack_pending = true;
                return false; // the FIN (if any) lies beyond what fit
            }
        }
        self.ack_pending = true;
        true
    }

    /// Eighth check: FIN.
    fn process_fin(&mut self, now: Duration, seg: &Segment) {
        if !seg.flags.fin() {
            return;
        }
        // The FIN occupies the sequence number right after the data.
        if seg.seq + seg.len != self.rcv_nxt {
            if seg.end().gt(self.rcv_nxt) {
                self.ack_pending = true; // a FIN beyond a gap is not processed yet
            }
            return;
        }
        self.rcv_nxt += 1;
        self.ack_pending = true;
        let first_fin = !self.peer_fin;
        self.peer_fin = true;
        let trigger = Trigger::Segment(SegmentKind::Fin);
        match self.state {
            State::SynReceived | State::Established => self.set_state(State::CloseWait, trigger),
            // Our FIN would have moved us to FIN-WAIT-2 in the ACK check if it were acked.
            State::FinWait1 => self.set_state(State::Closing, trigger),
            State::FinWait2 => self.enter_time_wait(now, trigger),
            State::TimeWait => {
                self.time_wait_deadline = Some(now + self.profile.time_wait);
            }
            _ => {}
        }
        if first_fin {
            self.events.push_back(Event::PeerClosed);
        }
    }

    /// Enter TIME_WAIT: start the 2·MSL timer, stop the others (§3.10.7.4 eighth check).
    fn enter_time_wait(&mut self, now: Duration, trigger: Trigger) {
        if self.profile.is_linux() && self.profile.time_wait_buckets_exhausted {
            // tcp_time_wait: inet_twsk_alloc failed (TCPTimeWaitOverflow) → tcp_done. The
            // ACK of the peer's FIN still goes out.
            self.flush_ack_now();
            self.delete_tcb(trigger);
            return;
        }
        self.stop_rtx();
        self.fin_wait_2_deadline = None;
        self.user_timeout_deadline = None;
        self.time_wait_deadline = Some(now + self.profile.time_wait);
        self.mini_socket = self.profile.is_linux();
        self.set_state(State::TimeWait, trigger);
    }

    /// Linux's TIME_WAIT mini-socket: `tcp_timewait_state_process` (tcp_minisocks.c),
    /// for substate TIME_WAIT and for an orphan's FIN_WAIT_2.
    fn segment_in_timewait_sock(&mut self, now: Duration, seg: &Segment) {
        let f = seg.flags;
        let seq = seg.seq;
        let end = seg.end();
        if self.state == State::FinWait2 {
            // "Just repeat all the checks of tcp_rcv_state_process()".
            let wnd = self.rcv_wnd();
            if !tcp_in_window(seq, end, self.rcv_nxt, self.rcv_nxt + wnd) {
                self.oow_ack(now, seg); // out of window: ACK
                return;
            }
            if f.rst() {
                self.delete_tcb(Trigger::Segment(SegmentKind::Rst));
                return;
            }
            if f.syn() && seq.ge(self.rcv_nxt) {
                self.answer_with_reset(seg);
                self.delete_tcb(Trigger::Segment(SegmentKind::Syn));
                return;
            }
            if !f.ack() || end.le(self.rcv_nxt) || end == seq {
                return; // duplicate or pure ACK: nothing to do
            }
            if !f.fin() || end != self.rcv_nxt + 1 {
                // "If new data arrive after half-duplex close, reset."
                self.answer_with_reset(seg);
                self.delete_tcb(Trigger::Segment(SegmentKind::DataAfterClose));
                return;
            }
            // FIN arrived: enter true TIME_WAIT.
            self.rcv_nxt = end;
            self.peer_fin = true;
            self.ack_pending = true;
            self.fin_wait_2_deadline = None;
            self.enter_time_wait(now, Trigger::Segment(SegmentKind::Fin));
            self.events.push_back(Event::PeerClosed);
            return;
        }

        // Real TIME_WAIT. In-window segment: only a bare ACK or an RST at RCV.NXT.
        if seq == self.rcv_nxt && (seq == end || f.rst()) {
            if f.rst() {
                // "This is TIME_WAIT assassination, in two flavors." Killed unless
                // tcp_rfc1337 is set.
                if !self.profile.rfc1337 {
                    self.delete_tcb(Trigger::Segment(SegmentKind::Rst));
                }
            } else {
                self.time_wait_deadline = Some(now + self.profile.time_wait);
            }
            return;
        }
        // A new SYN with a higher sequence number: accept as a new incarnation if a listener
        // exists (here: the connection was opened passively), ISN = tw_snd_nxt + 65537.
        // Without a listener it falls through to the ACK (tcp_v4_rcv: TCP_TW_SYN →
        // TCP_TW_ACK).
        let new_syn = f.syn() && !f.rst() && !f.ack() && seq.gt(self.rcv_nxt);
        if new_syn && self.profile.accept_syn_in_time_wait && self.origin == Origin::Passive {
            let mut isn = self.snd_nxt + self.profile.time_wait_isn_offset;
            if isn == SeqNum(0) {
                isn += 1;
            }
            self.time_wait_deadline = None;
            self.mini_socket = false;
            self.accept_syn(now, seg, isn, Trigger::Segment(SegmentKind::Syn));
            return;
        }
        if !f.rst() && self.profile.time_wait_reacks_fin {
            // "In this case we must reset the TIMEWAIT timer", except for an ACK-less SYN,
            // which may be an old duplicate.
            if f.ack() {
                self.time_wait_deadline = Some(now + self.profile.time_wait);
            }
            // tcp_timewait_check_oow_rate_limit
            self.oow_ack(now, seg);
        }
        // An out-of-window RST is ignored.
    }

    // ----- helpers ----------------------------------------------------------------------

    fn update_window(&mut self, seg: &Segment) {
        // §3.10.7.4 fifth check: update the send window if the segment is newer.
        if self.snd_wl1.lt(seg.seq) || (self.snd_wl1 == seg.seq && self.snd_wl2.le(seg.ack)) {
            self.snd_wnd = seg.window;
            self.snd_wl1 = seg.seq;
            self.snd_wl2 = seg.ack;
            self.max_snd_wnd = self.max_snd_wnd.max(seg.window);
        }
    }

    /// New data acknowledged: RTT sample (RFC 6298 §2, Karn), reset backoff, re-arm.
    fn on_ack_progress(&mut self, now: Duration, ack: SeqNum) {
        if let Some((seq, sent)) = self.rtx.sample {
            if ack.ge(seq) {
                let r = now.saturating_sub(sent);
                // RFC 6298 §2.3 (and Karn): the RTO is recomputed from a new sample only;
                // an ACK of retransmitted data keeps the backed-off value.
                let (srtt, rttvar, rto) = rtt_sample(
                    (self.rtx.srtt != NO_RTT_SAMPLE).then_some(self.rtx.srtt),
                    self.rtx.rttvar,
                    r,
                    self.profile.rto_min,
                    self.profile.rto_max,
                );
                self.rtx.srtt = srtt;
                self.rtx.rttvar = rttvar;
                self.rtx.rto = rto;
                self.rtx.sample = None;
            }
        }
        self.rtx.retries = 0;
        if self.snd_una == self.snd_nxt {
            self.stop_rtx();
        } else {
            self.rtx.deadline = Some(now + self.rtx.rto);
            if let Some(ut) = self.profile.user_timeout {
                self.user_timeout_deadline = Some(now + ut);
            }
        }
    }

    fn arm_rtx(&mut self, now: Duration) {
        if self.rtx.deadline.is_none() {
            self.rtx.deadline = Some(now + self.rtx.rto);
        }
        if self.rtx.sample.is_none() && self.rtx.retries == 0 {
            self.rtx.sample = Some((self.snd_nxt, now));
        }
        if let Some(ut) = self.profile.user_timeout {
            self.user_timeout_deadline.get_or_insert(now + ut);
        }
    }

    fn stop_rtx(&mut self) {
        self.rtx.deadline = None;
        self.rtx.sample = None;
        self.user_timeout_deadline = None;
    }

    /// Segmentize queued data and the FIN where the state allows; otherwise send a pending
    /// ACK.
    ///
    /// Called after every arriving segment and user call, which mostly leave nothing to
    /// segmentize (nothing unsent, no FIN pending): then the full version below only sends
    /// the pending ACK, if any, so that is done here without it.
    #[inline]
    fn flush(&mut self, now: Duration) {
        if self.unsent == 0 && !self.fin_pending {
            if self.ack_pending {
                self.flush_ack_now();
            }
            return;
        }
        self.flush_pending(now);
    }

    fn flush_pending(&mut self, now: Duration) {
        let can_send =
            matches!(
                self.state,
                State::Established
                    | State::CloseWait
                    | State::FinWait1
                    | State::LastAck
                    | State::Closing
            ) || (self.state == State::SynReceived && self.fin_pending && self.unsent == 0);
        let mut sent = false;
        if can_send {
            while self.unsent > 0 {
                let len = self.unsent.min(self.profile.mss);
                self.unsent -= len;
                let mut flags = Flags::ACK | Flags::PSH;
                let fin_now = self.fin_pending && self.unsent == 0;
                if fin_now {
                    flags |= Flags::FIN;
                    self.fin_seq = Some(self.snd_nxt + len);
                    self.fin_pending = false;
                }
                self.emit(self.snd_nxt, flags, len, false);
                self.snd_nxt += len + u32::from(fin_now);
                sent = true;
            }
            if self.fin_pending && self.unsent == 0 {
                self.fin_seq = Some(self.snd_nxt);
                self.fin_pending = false;
                self.emit(self.snd_nxt, Flags::FIN | Flags::ACK, 0, false);
                self.snd_nxt += 1;
                sent = true;
            }
            if sent {
                self.arm_rtx(now);
            }
        }
        if self.ack_pending && !sent {
            self.flush_ack_now();
        }
        self.ack_pending = false;
    }

    /// An ACK answering an unacceptable segment (duplicate or challenge ACK). Linux sends at
    /// most one per `tcp_invalid_ratelimit` per socket, except for segments carrying data or
    /// a FIN (`tcp_oow_rate_limited`), which is what stops ACK wars such as the RFC 1337 H2
    /// loop between TIME_WAIT and a desynchronized peer.
    fn oow_ack(&mut self, now: Duration, seg: &Segment) {
        if let Some(limit) = self.profile.oow_ack_rate_limit {
            let exempt = seg.seq != seg.end() && !seg.flags.syn();
            if !exempt {
                if let Some(last) = self.last_oow_ack {
                    if now >= last && now - last < limit {
                        return;
                    }
                }
                self.last_oow_ack = Some(now);
            }
        }
        self.ack_pending = true;
    }

    fn flush_ack_now(&mut self) {
        if self.ack_pending && self.state != State::Closed && self.state != State::Listen {
            self.emit(self.snd_nxt, Flags::ACK, 0, false);
        }
        self.ack_pending = false;
    }

    /// Build and queue a segment from this connection, ACKing RCV.NXT where ACK is set.
    fn emit(&mut self, seq: SeqNum, flags: Flags, len: u32, retransmission: bool) {
        if flags.ack() {
            self.ack_pending = false;
        }
        if self.drop_transmits {
            // Not built: it would be dropped in push_transmit.
            return;
        }
        let seg = Segment {
            seq,
            ack: if flags.ack() { self.rcv_nxt } else { SeqNum(0) },
            flags,
            len,
            window: self.rcv_wnd(),
        };
        self.push_transmit(seg, retransmission);
    }

    fn push_transmit(&mut self, segment: Segment, retransmission: bool) {
        if self.drop_transmits {
            return;
        }
        self.transmits.push_back(Transmit {
            segment,
            retransmission,
        });
    }

    /// RST from abort/close: `<SEQ=SND.NXT><CTL=RST>` (RFC), RST|ACK in Linux
    /// (`tcp_send_active_reset`).
    fn send_active_reset(&mut self) {
        let flags = if self.profile.abort_rst_has_ack {
            Flags::RST | Flags::ACK
        } else {
            Flags::RST
        };
        self.emit(self.snd_nxt, flags, 0, false);
    }

    /// A reset answering `seg` as if no connection existed (§3.10.7.1).
    fn answer_with_reset(&mut self, seg: &Segment) {
        if let Some(rst) = reset_for_unexpected(seg) {
            self.push_transmit(rst, false);
        }
    }

    fn set_state(&mut self, to: State, trigger: Trigger) {
        let from = self.state;
        if from == to {
            return;
        }
        self.state = to;
        self.events
            .push_back(Event::StateChanged { from, to, trigger });
    }

    /// Delete the TCB: CLOSED, every timer stopped, queues flushed.
    fn delete_tcb(&mut self, trigger: Trigger) {
        self.stop_rtx();
        self.time_wait_deadline = None;
        self.fin_wait_2_deadline = None;
        self.user_timeout_deadline = None;
        self.mini_socket = false;
        self.unsent = 0;
        self.fin_pending = false;
        self.ack_pending = false;
        self.set_state(State::Closed, trigger);
        self.events.push_back(Event::Closed);
    }

    fn back_to_listen(&mut self, trigger: Trigger) {
        self.stop_rtx();
        self.reset_tcb();
        self.origin = Origin::Passive;
        self.set_state(State::Listen, trigger);
    }

    /// Fresh sequence variables for a new incarnation (keeps profile, options, origin).
    fn reset_tcb(&mut self) {
        self.iss = self.next_iss;
        self.snd_una = self.iss;
        self.snd_nxt = self.iss;
        self.snd_wnd = 0;
        self.max_snd_wnd = 0;
        self.unsent = 0;
        self.fin_pending = false;
        self.fin_seq = None;
        self.rcv_nxt = SeqNum(0);
        self.irs = SeqNum(0);
        self.unread = 0;
        self.peer_fin = false;
        self.app_closed = false;
        self.error = None;
        self.rtx.rto = self.profile.rto_initial;
        self.rtx.retries = 0;
        self.rtx.srtt = NO_RTT_SAMPLE;
        self.rtx.sample = None;
        self.rtx.deadline = None;
        self.time_wait_deadline = None;
        self.fin_wait_2_deadline = None;
        self.user_timeout_deadline = None;
        self.mini_socket = false;
    }
}

/// The reset a segment gets when it reaches no connection (RFC 9293 §3.10.7.1), or `None`
/// for an arriving RST. With ACK: `<SEQ=SEG.ACK><CTL=RST>`; without:
/// `<SEQ=0><ACK=SEG.SEQ+SEG.LEN><CTL=RST,ACK>`.
pub fn reset_for_unexpected(seg: &Segment) -> Option<Segment> {
    if seg.flags.rst() {
        return None;
    }
    Some(if seg.flags.ack() {
        Segment::control(seg.ack, SeqNum(0), Flags::RST, 0)
    } else {
        Segment::control(SeqNum(0), seg.end(), Flags::RST | Flags::ACK, 0)
    })
}

/// RFC 6298 §2.2–2.4: SRTT, RTTVAR and the RTO after the RTT sample `r` (`srtt` is `None`
/// before the first sample), with K = 4, alpha = 1/8, beta = 1/4 and the RTO clamped to
/// `[min, max]`.
///
/// Computed on whole nanoseconds: `Duration`'s `* k` is exact and its `/ k` is the floor of
/// the nanosecond count divided by k, so `d * 7 / 8` and `n * 7 / 8` on `n = d.as_nanos()`
/// agree wherever the `Duration` version does not overflow (and panic; u128 holds
/// 7·`Duration::MAX`). `Duration` re-normalises seconds and nanoseconds with divisions
/// after every operation, which on the capture's per-ACK path cost more instructions than
/// the rest of `on_ack_progress`.
fn rtt_sample(
    srtt: Option<u128>,
    rttvar: u128,
    r: Duration,
    min: Duration,
    max: Duration,
) -> (u128, u128, Duration) {
    if let Some(small) = rtt_sample_u64(srtt, rttvar, r, min, max) {
        return small;
    }
    let r = r.as_nanos();
    let (srtt, rttvar) = match srtt {
        None => (r, r / 2),
        Some(srtt) => (srtt * 7 / 8 + r / 8, rttvar * 3 / 4 + srtt.abs_diff(r) / 4),
    };
    let rto = (srtt + rttvar * 4).max(min.as_nanos()).min(max.as_nanos());
    (srtt, rttvar, duration_from_nanos(rto))
}

/// [`rtt_sample`] on u64 when every operand is below 2^60 ns (36 years), which is every
/// real one: the same formulas then cannot overflow (7·2^60 and 2^60 + 4·2^60 fit), and u128
/// multiplications, shifts and the conversions of `min` and `max` to nanoseconds cost the
/// capture analyzer's per-ACK path about a third of its instructions. The clamp compares
/// `Duration`s instead, which order exactly as their nanosecond counts do, and
/// `Duration::from_nanos` is exact on u64. `None` for larger operands.
fn rtt_sample_u64(
    srtt: Option<u128>,
    rttvar: u128,
    r: Duration,
    min: Duration,
    max: Duration,
) -> Option<(u128, u128, Duration)> {
    const LIMIT: u64 = 1 << 60;
    const NANOS_PER_SEC: u64 = 1_000_000_000;
    // 2^30 s + 1 s is below 2^60 ns.
    if r.as_secs() >= 1 << 30 {
        return None;
    }
    let r = r.as_secs() * NANOS_PER_SEC + u64::from(r.subsec_nanos());
    let small = |n: u128| u64::try_from(n).ok().filter(|&n| n < LIMIT);
    let (srtt, rttvar) = match srtt {
        None => (r, r / 2),
        Some(srtt) => {
            let (srtt, rttvar) = (small(srtt)?, small(rttvar)?);
            (srtt * 7 / 8 + r / 8, rttvar * 3 / 4 + srtt.abs_diff(r) / 4)
        }
    };
    let rto = Duration::from_nanos(srtt + rttvar * 4).max(min).min(max);
    Some((srtt.into(), rttvar.into(), rto))
}

/// The `Duration` of `nanos` nanoseconds; the u64 case (up to 584 years) is the cheap one.
fn duration_from_nanos(nanos: u128) -> Duration {
    const NANOS_PER_SEC: u128 = 1_000_000_000;
    match u64::try_from(nanos) {
        Ok(n) => Duration::from_nanos(n),
        Err(_) => Duration::new(
            u64::try_from(nanos / NANOS_PER_SEC).unwrap_or(u64::MAX),
            (nanos % NANOS_PER_SEC) as u32,
        ),
    }
}

/// `tcp_in_window()` of tcp_minisocks.c: does [seq, end) touch [s_win, e_win]?
fn tcp_in_window(seq: SeqNum, end: SeqNum, s_win: SeqNum, e_win: SeqNum) -> bool {
    if seq == s_win {
        return true;
    }
    if end.gt(s_win) && seq.lt(e_win) {
        return true;
    }
    seq == e_win && seq == end
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The RFC 6298 update as it was written with `Duration` operations before
    /// [`rtt_sample`] moved it to nanoseconds: the reference the new code must match.
    fn rtt_sample_with_duration_ops(
        srtt: Option<Duration>,
        rttvar: Duration,
        r: Duration,
        min: Duration,
        max: Duration,
    ) -> (Duration, Duration, Duration) {
        let (srtt, rttvar) = match srtt {
            None => (r, r / 2),
            Some(srtt) => {
                let diff = srtt.abs_diff(r);
                (srtt * 7 / 8 + r / 8, rttvar * 3 / 4 + diff / 4)
            }
        };
        (srtt, rttvar, (srtt + rttvar * 4).max(min).min(max))
    }

    /// Durations from nanoseconds to centuries, with sub-second parts, so carries between
    /// seconds and nanoseconds are exercised.
    fn duration() -> impl Strategy<Value = Duration> {
        prop_oneof![
            (0u64..2_000_000_000).prop_map(Duration::from_nanos),
            (0u64..4_000, 0u32..1_000_000_000).prop_map(|(s, n)| Duration::new(s, n)),
            (0u64..(1 << 40), 0u32..1_000_000_000).prop_map(|(s, n)| Duration::new(s, n)),
            // Beyond u64 nanoseconds (584 years), where the slow conversion path runs.
            ((1u64 << 35)..(1 << 50), 0u32..1_000_000_000).prop_map(|(s, n)| Duration::new(s, n)),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(20_000))]
        #[test]
        fn rtt_sample_matches_duration_arithmetic(
            srtt in proptest::option::of(duration()),
            rttvar in duration(),
            r in duration(),
            a in duration(),
            b in duration(),
        ) {
            let (min, max) = (a.min(b), a.max(b));
            let (s, v, rto) =
                rtt_sample(srtt.map(|d| d.as_nanos()), rttvar.as_nanos(), r, min, max);
            prop_assert_eq!(
                (duration_from_nanos(s), duration_from_nanos(v), rto),
                rtt_sample_with_duration_ops(srtt, rttvar, r, min, max)
            );
        }

        /// The u64 path is taken for every operand of up to 34 years (and gives the same
        /// answer as the u128 one, by the property above).
        #[test]
        fn rtt_sample_u64_covers_real_durations(
            srtt in proptest::option::of(0u64..(1 << 60)),
            rttvar in 0u64..(1 << 60),
            r_secs in 0u64..(1 << 30),
            r_nanos in 0u32..1_000_000_000,
            a in duration(),
            b in duration(),
        ) {
            let (min, max) = (a.min(b), a.max(b));
            let r = Duration::new(r_secs, r_nanos);
            let srtt = srtt.map(u128::from);
            let fast = rtt_sample_u64(srtt, rttvar.into(), r, min, max);
            prop_assert!(fast.is_some());
            let (s, v, rto) = fast.unwrap();
            let reference = rtt_sample_with_duration_ops(
                srtt.map(duration_from_nanos),
                duration_from_nanos(rttvar.into()),
                r,
                min,
                max,
            );
            prop_assert_eq!((duration_from_nanos(s), duration_from_nanos(v), rto), reference);
        }
    }

    #[test]
    fn rtt_sample_rfc6298_first_and_later_samples() {
        let ms = Duration::from_millis;
        let ns = |d: Duration| d.as_nanos();
        // First sample R: SRTT = R, RTTVAR = R/2, RTO = SRTT + 4·RTTVAR (§2.2).
        assert_eq!(
            rtt_sample(None, 0, ms(100), ms(200), ms(120_000)),
            (ns(ms(100)), ns(ms(50)), ms(300))
        );
        // Later: RTTVAR = 3/4·50 + 1/4·|100 − 60| = 47.5, SRTT = 7/8·100 + 1/8·60 = 95 (§2.3).
        let (srtt, rttvar, rto) =
            rtt_sample(Some(ns(ms(100))), ns(ms(50)), ms(60), ms(200), ms(120_000));
        assert_eq!(
            (srtt, rttvar),
            (ns(ms(95)), ns(Duration::from_micros(47_500)))
        );
        assert_eq!(rto, ms(285));
        // Clamped to the minimum (§2.4).
        assert_eq!(rtt_sample(None, 0, ms(1), ms(200), ms(120_000)).2, ms(200));
    }

    #[test]
    fn queues_and_shared_profile_keep_connections_comparable() {
        // Two connections reaching the same state by different queue histories are equal.
        let mut a = Connection::new(Profile::linux(), SeqNum(100));
        let mut b = Connection::new(Profile::linux(), SeqNum(100));
        a.open_passive().unwrap();
        b.open_passive().unwrap();
        while a.poll_event().is_some() {}
        assert_ne!(a, b, "b still holds its StateChanged event");
        while b.poll_event().is_some() {}
        assert_eq!(a, b);
        // A profile changed at run time makes them differ; changing it back makes them equal.
        a.profile_mut().rfc1337 = true;
        assert_ne!(a, b);
        a.profile_mut().rfc1337 = false;
        assert_eq!(a, b);
        assert_eq!(a.profile(), &Profile::linux());
    }

    /// The capture analyzer keeps two connections per live TCP connection (tens of
    /// thousands): their size is cache misses and copies. 464 bytes before the profile was
    /// shared and the queues went inline.
    #[test]
    #[cfg(target_pointer_width = "64")]
    fn connection_stays_small() {
        let size = std::mem::size_of::<Connection>();
        assert!(size <= 368, "Connection grew to {size} bytes");
    }

    #[test]
    fn dropping_transmits_is_discarding_them_after_every_call() {
        let now = Duration::ZERO;
        let mut a = Connection::new(Profile::linux(), SeqNum(1));
        let mut b = a.clone();
        a.set_drop_transmits(true);
        // A passive open, data both ways (more than fits inline), both FINs, a challenge
        // ACK for an old segment: SYN,ACK, data, ACKs, FIN and duplicate ACKs are dropped.
        let calls: [&dyn Fn(&mut Connection); 8] = [
            &|c| c.open_passive().unwrap(),
            &|c| c.handle_segment(now, Segment::control(SeqNum(9), SeqNum(0), Flags::SYN, 0)),
            &|c| c.handle_segment(now, Segment::control(SeqNum(10), SeqNum(2), Flags::ACK, 0)),
            &|c| c.send(now, 5 * c.profile().mss).unwrap(),
            &|c| {
                let mut data = Segment::control(SeqNum(10), SeqNum(2), Flags::ACK, 0);
                data.len = 100;
                c.handle_segment(now, data);
                // Read, or close() would abort (Linux: RST when data is left unread).
                assert_eq!(c.read(u32::MAX), Ok(100));
            },
            &|c| c.handle_segment(now, Segment::control(SeqNum(3), SeqNum(2), Flags::ACK, 0)),
            &|c| c.close(now).unwrap(),
            &|c| {
                let fin = Segment::control(SeqNum(110), SeqNum(2), Flags::FIN | Flags::ACK, 0);
                c.handle_segment(now, fin);
            },
        ];
        let mut sent = 0;
        for call in calls {
            call(&mut a);
            call(&mut b);
            assert_eq!(a.poll_transmit(now), None);
            while b.poll_transmit(now).is_some() {
                sent += 1;
            }
            assert_eq!(a.state(), b.state());
            b.set_drop_transmits(true);
            assert_eq!(a, b);
            b.set_drop_transmits(false);
            while let Some(e) = a.poll_event() {
                assert_eq!(Some(e), b.poll_event());
            }
            assert_eq!(b.poll_event(), None);
        }
        assert!(sent >= 9, "only {sent} segments sent");
        assert_eq!(a.state(), State::Closing);
    }

    #[test]
    fn with_flavor_is_new_with_the_flavors_profile() {
        for flavor in [Flavor::Linux, Flavor::Rfc9293] {
            let mut a = Connection::with_flavor(flavor, SeqNum(7));
            let mut b = Connection::new(Profile::for_flavor(flavor), SeqNum(7));
            assert_eq!(a, b);
            assert_eq!(a.profile(), &Profile::for_flavor(flavor));
            a.open_active(Duration::ZERO).unwrap();
            b.open_active(Duration::ZERO).unwrap();
            assert_eq!(a, b);
            assert_eq!(
                a.poll_transmit(Duration::ZERO),
                b.poll_transmit(Duration::ZERO)
            );
        }
    }
}
