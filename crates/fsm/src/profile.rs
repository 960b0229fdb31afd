//! Profiles: RFC 9293 as written, and Linux where the kernel differs.
//!
//! Every difference between the two is one named field here, documented with the kernel
//! function it comes from, so that a reader can see at a glance what "Linux" means and a
//! conformance run can set each knob the way a `sysctl` does.

use std::fmt;
use std::hash::{Hash, Hasher};
use std::ops::Deref;
use std::sync::Arc;
use std::time::Duration;

/// Which family of behaviour a profile starts from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Flavor {
    /// RFC 9293 text (with RFC 5961 challenge ACKs and RFC 6298 timers).
    Rfc9293,
    /// The Linux kernel (net/ipv4/tcp_*.c, as verified on 6.18).
    Linux,
}

impl Flavor {
    /// `rfc` or `linux`.
    pub fn name(self) -> &'static str {
        match self {
            Flavor::Rfc9293 => "rfc",
            Flavor::Linux => "linux",
        }
    }
}

/// The tunable behaviour of a [`crate::Connection`].
///
/// Construct with [`Profile::rfc9293`] or [`Profile::linux`], then adjust fields the way a
/// `sysctl` or socket option would.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Profile {
    /// Which family this profile starts from (decides, e.g., whether TIME_WAIT and orphaned
    /// FIN_WAIT_2 are processed by the kernel's mini-socket rules).
    pub flavor: Flavor,
    /// Maximum segment lifetime (RFC 9293 §3.4.2: 2 minutes).
    pub msl: Duration,
    /// How long TIME_WAIT lasts. RFC 9293 §3.6.1 MUST-13: 2·MSL. Linux: `TCP_TIMEWAIT_LEN`,
    /// a fixed 60 s (include/net/tcp.h), not a sysctl and unrelated to any MSL.
    pub time_wait: Duration,
    /// Linux `net.ipv4.tcp_fin_timeout` (default 60 s): how long an *orphaned* FIN_WAIT_2
    /// connection (the application called close()) waits for the peer's FIN before being
    /// silently dropped (`tcp_fin_time`, at least 3.5·RTO). `None`: wait forever. Linux
    /// only: RFC 9293 has no such timer, and the RFC flavor ignores this field.
    pub fin_timeout: Option<Duration>,
    /// close() with unread received data sends RST instead of FIN and ends the connection
    /// (`__tcp_close`, `TCPAbortOnClose`; RFC 2525 §2.17, RFC 9293 SHLD-3 / MAY-1).
    pub rst_on_close_with_unread_data: bool,
    /// New data arriving after close() (FIN_WAIT_1/2 with `RCV_SHUTDOWN`) is answered with
    /// RST and ends the connection (`tcp_rcv_state_process` "RFC 1122 says we MUST send a
    /// reset", `TCPAbortOnData`; `tcp_timewait_state_process` for the orphan FIN_WAIT_2).
    pub rst_on_data_after_close: bool,
    /// RFC 1337 fix F1: ignore RST in TIME_WAIT (`net.ipv4.tcp_rfc1337`, default 0 on Linux;
    /// RFC 9293 §3.10.7.4 does not mandate it, so the RFC profile also defaults to false).
    pub rfc1337: bool,
    /// A SYN with SEG.SEQ > RCV.NXT in TIME_WAIT on a server opens a new incarnation
    /// (`tcp_timewait_state_process` → `TCP_TW_SYN`; RFC 9293 MAY-2).
    pub accept_syn_in_time_wait: bool,
    /// The ISN Linux picks for that new incarnation: old SND.NXT + this (65535 + 2).
    pub time_wait_isn_offset: u32,
    /// A FIN arriving into a zero receive window is accepted (kernel selftest
    /// `tcp_rcv_zero_wnd_fin.pkt`), where RFC 9293 Table 6 says it is not acceptable.
    pub accept_fin_with_zero_window: bool,
    /// An RST sent by abort/close carries ACK (`tcp_send_active_reset` sends RST|ACK; RFC
    /// 9293 §3.10.5 sends `<SEQ=SND.NXT><CTL=RST>`).
    pub abort_rst_has_ack: bool,
    /// An RST at RCV.NXT−1 is accepted in CLOSE_WAIT, LAST_ACK and CLOSING, after the peer's
    /// FIN (`tcp_reset_check`).
    pub accept_rst_before_fin: bool,
    /// A retransmitted SYN in SYN_RECEIVED makes the SYN-ACK be retransmitted at once
    /// (`tcp_check_req` → `inet_rtx_syn_ack`) rather than answered with a bare ACK.
    pub resend_syn_ack_on_dup_syn: bool,
    /// In SYN_RECEIVED, the ACK is tested before the sequence number (Linux `tcp_check_req`:
    /// an ACK that does not acknowledge our SYN gets a reset even when the segment is out of
    /// window). RFC 9293 §3.10.7.4 checks the sequence number first.
    pub check_ack_first_in_syn_received: bool,
    /// At most one ACK per this interval answers unacceptable segments without data or FIN
    /// (duplicate ACKs for out-of-window segments, challenge ACKs, TIME_WAIT's ACKs): Linux
    /// `net.ipv4.tcp_invalid_ratelimit`, 500 ms (`tcp_oow_rate_limited`,
    /// `tcp_timewait_check_oow_rate_limit`). RFC 5961 §7 asks for challenge-ACK throttling
    /// without fixing a mechanism; the RFC profile has none (`None`).
    pub oow_ack_rate_limit: Option<Duration>,
    /// `net.ipv4.tcp_max_tw_buckets` is exhausted: `inet_twsk_alloc` fails in
    /// `tcp_time_wait`, so the connection closes at once where it would enter TIME_WAIT (or
    /// the orphaned FIN_WAIT_2 mini-socket), counted as `TCPTimeWaitOverflow`.
    pub time_wait_buckets_exhausted: bool,
    /// TIME_WAIT answers a retransmitted FIN (and other old segments) with an ACK and
    /// restarts its timer (RFC 9293 §3.10.7.4; `tcp_timewait_state_process` → `TCP_TW_ACK`).
    /// Every real stack does; `false` is a what-if for the model checker (`verify
    /// --no-reack`), showing why it must.
    pub time_wait_reacks_fin: bool,
    /// Initial retransmission timeout (RFC 6298 §2.1: 1 s; Linux `TCP_TIMEOUT_INIT`).
    pub rto_initial: Duration,
    /// Lower bound of the RTO (RFC 6298 §2.4: 1 s; Linux `TCP_RTO_MIN`: 200 ms).
    pub rto_min: Duration,
    /// Upper bound of the RTO (RFC 6298 §2.5: ≥ 60 s; Linux `TCP_RTO_MAX`: 120 s).
    pub rto_max: Duration,
    /// SYN retransmissions before giving up (Linux `tcp_syn_retries`, 6).
    pub syn_retries: u32,
    /// SYN-ACK retransmissions before giving up (Linux `tcp_synack_retries`, 5).
    pub synack_retries: u32,
    /// Data/FIN retransmissions before giving up (Linux `tcp_retries2`, 15; RFC 9293
    /// §3.8.3 R2 ≥ 100 s).
    pub data_retries: u32,
    /// Retransmissions of an orphaned connection's FIN before giving up (Linux
    /// `tcp_orphan_retries`; 0 means 8, `tcp_orphan_retries()`).
    pub orphan_retries: u32,
    /// RFC 9293 §3.10.8 user timeout (Linux `TCP_USER_TIMEOUT`): how long sent data may stay
    /// unacknowledged before the connection is aborted. `None`: only the retry limits apply.
    pub user_timeout: Option<Duration>,
    /// Segment size used to cut SENDs into segments.
    pub mss: u32,
    /// Receive buffer: the window advertised when nothing is unread.
    pub receive_buffer: u32,
}

impl Profile {
    /// RFC 9293 as written: TIME_WAIT 2·MSL with MSL 2 minutes, no orphan timeout, FIN on
    /// close whatever is unread.
    pub const fn rfc9293() -> Profile {
        const MSL_SECS: u64 = 120;
        Profile {
            flavor: Flavor::Rfc9293,
            msl: Duration::from_secs(MSL_SECS),
            time_wait: Duration::from_secs(2 * MSL_SECS),
            fin_timeout: None,
            rst_on_close_with_unread_data: false,
            rst_on_data_after_close: false,
            rfc1337: false,
            accept_syn_in_time_wait: false,
            time_wait_isn_offset: 65537,
            accept_fin_with_zero_window: false,
            abort_rst_has_ack: false,
            accept_rst_before_fin: false,
            resend_syn_ack_on_dup_syn: false,
            check_ack_first_in_syn_received: false,
            oow_ack_rate_limit: None,
            time_wait_buckets_exhausted: false,
            time_wait_reacks_fin: true,
            rto_initial: Duration::from_secs(1),
            rto_min: Duration::from_secs(1),
            rto_max: Duration::from_secs(60),
            syn_retries: 6,
            synack_retries: 5,
            data_retries: 15,
            orphan_retries: 15,
            user_timeout: None,
            mss: 1460,
            receive_buffer: 65535,
        }
    }

    /// Linux defaults (6.18): TIME_WAIT 60 s, orphaned FIN_WAIT_2 60 s, RST on close with
    /// unread data and on data after close, SYN accepted in TIME_WAIT, no RFC 1337.
    pub const fn linux() -> Profile {
        Profile {
            flavor: Flavor::Linux,
            msl: Duration::from_secs(30),
            time_wait: Duration::from_secs(60),
            fin_timeout: Some(Duration::from_secs(60)),
            rst_on_close_with_unread_data: true,
            rst_on_data_after_close: true,
            rfc1337: false,
            accept_syn_in_time_wait: true,
            time_wait_isn_offset: 65537,
            accept_fin_with_zero_window: true,
            abort_rst_has_ack: true,
            accept_rst_before_fin: true,
            resend_syn_ack_on_dup_syn: true,
            check_ack_first_in_syn_received: true,
            oow_ack_rate_limit: Some(Duration::from_millis(500)),
            time_wait_buckets_exhausted: false,
            time_wait_reacks_fin: true,
            rto_initial: Duration::from_secs(1),
            rto_min: Duration::from_millis(200),
            rto_max: Duration::from_secs(120),
            syn_retries: 6,
            synack_retries: 5,
            data_retries: 15,
            orphan_retries: 8,
            user_timeout: None,
            mss: 1460,
            receive_buffer: 65535,
        }
    }

    /// The profile for a flavor's defaults.
    pub fn for_flavor(flavor: Flavor) -> Profile {
        match flavor {
            Flavor::Rfc9293 => Profile::rfc9293(),
            Flavor::Linux => Profile::linux(),
        }
    }

    /// Set the MSL; in the RFC profile TIME_WAIT follows as 2·MSL (Linux's TIME_WAIT is fixed
    /// and does not follow).
    pub fn with_msl(mut self, msl: Duration) -> Profile {
        self.msl = msl;
        if self.flavor == Flavor::Rfc9293 {
            self.time_wait = 2 * msl;
        }
        self
    }

    /// Whether this is the Linux flavor.
    pub fn is_linux(&self) -> bool {
        self.flavor == Flavor::Linux
    }
}

/// The built-in profiles, shared by every connection created with one of them.
static RFC9293: Profile = Profile::rfc9293();
static LINUX: Profile = Profile::linux();

/// A connection's profile: a built-in one by reference, or its own copy (shared between
/// clones until one of them changes it).
///
/// A connection is created, cloned (the model checker) and dropped far more often than its
/// profile changes, and most use `Profile::linux()` or `Profile::rfc9293()` unchanged: a
/// reference keeps the connection 150 bytes smaller and its creation free of copies and
/// allocations. Equality and hashing are by value, as with the plain `Profile` before.
#[derive(Clone)]
pub(crate) enum SharedProfile {
    /// One of the built-in statics.
    Builtin(&'static Profile),
    /// Anything else (and a built-in one after [`SharedProfile::make_mut`]).
    Custom(Arc<Profile>),
}

impl SharedProfile {
    /// The built-in profile of a flavor ([`Profile::for_flavor`]).
    pub(crate) fn builtin(flavor: Flavor) -> SharedProfile {
        SharedProfile::Builtin(match flavor {
            Flavor::Rfc9293 => &RFC9293,
            Flavor::Linux => &LINUX,
        })
    }

    pub(crate) fn new(profile: Profile) -> SharedProfile {
        if profile == LINUX {
            SharedProfile::Builtin(&LINUX)
        } else if profile == RFC9293 {
            SharedProfile::Builtin(&RFC9293)
        } else {
            SharedProfile::Custom(Arc::new(profile))
        }
    }

    /// Copy on write: the profile of this connection only.
    pub(crate) fn make_mut(&mut self) -> &mut Profile {
        if let SharedProfile::Builtin(p) = *self {
            *self = SharedProfile::Custom(Arc::new(p.clone()));
        }
        match self {
            SharedProfile::Custom(p) => Arc::make_mut(p),
            SharedProfile::Builtin(_) => unreachable!("replaced by Custom above"),
        }
    }
}

impl Deref for SharedProfile {
    type Target = Profile;
    fn deref(&self) -> &Profile {
        match self {
            SharedProfile::Builtin(p) => p,
            SharedProfile::Custom(p) => p,
        }
    }
}

impl PartialEq for SharedProfile {
    fn eq(&self, other: &SharedProfile) -> bool {
        std::ptr::eq::<Profile>(&**self, &**other) || **self == **other
    }
}

impl Eq for SharedProfile {}

impl Hash for SharedProfile {
    fn hash<H: Hasher>(&self, state: &mut H) {
        (**self).hash(state);
    }
}

impl fmt::Debug for SharedProfile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        (**self).fmt(f)
    }
}

impl Default for Profile {
    fn default() -> Profile {
        Profile::rfc9293()
    }
}
