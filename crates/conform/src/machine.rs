//! The machine backend: the script drives [`tcpstate_fsm::Connection`]s with a Linux
//! profile and a virtual clock.
//!
//! Sockets map onto the machine like this: `listen()` makes a listener, which is not a TCB
//! of its own here but the rule for segments that reach no live connection — a fresh
//! `Connection` opened passively gets the segment (a SYN starts a connection, anything else
//! gets the LISTEN answer of RFC 9293 §3.10.7.2); without a listener a CLOSED `Connection`
//! answers (§3.10.7.1). `accept()` hands out a connection that a passive open brought past
//! SYN_RECEIVED (a TIME_WAIT connection that accepted a new SYN counts again). Sysctls
//! change the profile of every connection at once, as a namespace-wide knob does in the
//! kernel; `ss` lines become state assertions ([`crate::shell`]).

use std::collections::{BTreeMap, VecDeque};
use std::path::Path;
use std::time::Duration;

use tcpstate_fsm::{
    CallError, CallKind, CallStep, CallStepKind, Connection, Event, Profile, Segment, SeqNum, Side,
    State, StepKind, Timeline,
};

use crate::run::{Backend, BackendKind, CallResult, RunOptions, RunReport, Runner};
use crate::script::{Arg, CallSpec, Expected, Script, TcpOption};
use crate::shell::{self, ShellCommand};
use crate::wire::WireSegment;

/// The ISS the machine uses for its first connection (any value works: scripts are relative).
const MACHINE_ISS: SeqNum = SeqNum(0x2000_0000);

/// Runs a script against the machine: the report, and the run as a [`Timeline`] (side A is
/// the local machine, side B the script's remote peer) for charts.
pub fn run(script: &Script, options: &RunOptions) -> (RunReport, Timeline) {
    let backend = MachineBackend::new(&script.name());
    let mut runner = Runner::new(script, backend, options);
    let report = runner.run();
    let timeline = std::mem::take(&mut runner.backend().timeline);
    (report, timeline)
}

#[derive(Debug, Clone)]
enum Fd {
    /// `socket()` done, nothing else that matters yet.
    Fresh {
        nonblocking: bool,
        linger_zero: bool,
        receive_buffer: Option<u32>,
    },
    /// `listen()` called.
    Listener { nonblocking: bool },
    /// A connection (connected or accepted).
    Conn {
        index: usize,
        nonblocking: bool,
        read_shut: bool,
    },
}

struct Conn {
    c: Connection,
    /// Opened by our listener (so `accept()` may return it).
    from_listener: bool,
    /// Returned by `accept()` (reset when a TIME_WAIT connection starts a new incarnation).
    accepted: bool,
    /// When it last became ESTABLISHED (a blocking connect returns then).
    connected_at: Option<Duration>,
}

/// The machine side of a run.
pub struct MachineBackend {
    now: Duration,
    profile: Profile,
    fds: BTreeMap<i64, Fd>,
    conns: Vec<Conn>,
    listening: bool,
    queue: VecDeque<(Duration, WireSegment)>,
    /// A call written `start...end`, and its result if it failed at once.
    blocking: Option<(CallSpec, Option<CallResult>)>,
    next_iss: SeqNum,
    /// The peer's window scale from its SYN (RFC 7323 §2.2): later windows are scaled by it.
    peer_wscale: Option<u8>,
    next_id: u64,
    /// The run as a timeline.
    pub timeline: Timeline,
}

fn to_wire(seg: &Segment) -> WireSegment {
    WireSegment {
        seq: seg.seq,
        ack: if seg.flags.ack() { seg.ack } else { SeqNum(0) },
        flags: seg.flags,
        len: seg.len,
        window: seg.window.min(u32::from(u16::MAX)) as u16,
        urgent: 0,
        options: Vec::new(),
    }
}

fn errno(e: CallError) -> CallResult {
    Err(e.errno().to_string())
}

impl MachineBackend {
    /// A backend with the Linux profile, no sockets, at time zero.
    pub fn new(title: &str) -> MachineBackend {
        MachineBackend {
            now: Duration::ZERO,
            profile: Profile::linux(),
            fds: BTreeMap::new(),
            conns: Vec::new(),
            listening: false,
            queue: VecDeque::new(),
            blocking: None,
            next_iss: MACHINE_ISS,
            peer_wscale: None,
            next_id: 0,
            timeline: Timeline::new(title, "local (machine)", "remote 192.0.2.1 (script)"),
        }
    }

    /// The profile in force (after the script's sysctls).
    pub fn profile(&self) -> &Profile {
        &self.profile
    }

    fn live(&self) -> Option<usize> {
        self.conns
            .iter()
            .rposition(|c| !matches!(c.c.state(), State::Closed | State::Listen))
    }

    fn note(&mut self, text: String) {
        self.timeline.push(self.now, Side::A, StepKind::Note(text));
    }

    /// Collects what a connection wants to send and what happened to it.
    fn drain(&mut self, index: usize) {
        let now = self.now;
        let Some(conn) = self.conns.get_mut(index) else {
            return;
        };
        let mut sent = Vec::new();
        while let Some(t) = conn.c.poll_transmit(now) {
            sent.push(t);
        }
        let mut events = Vec::new();
        while let Some(e) = conn.c.poll_event() {
            events.push(e);
        }
        for e in &events {
            if let Event::StateChanged { to, .. } = e {
                if *to == State::SynReceived {
                    conn.accepted = false;
                }
                if *to == State::Established {
                    conn.connected_at = Some(now);
                }
            }
        }
        for e in events {
            if let Event::StateChanged { from, to, trigger } = e {
                self.timeline
                    .push(now, Side::A, StepKind::Transition { from, to, trigger });
            }
        }
        for t in sent {
            self.emit(t.segment, t.retransmission);
        }
    }

    fn emit(&mut self, segment: Segment, retransmission: bool) {
        let id = self.next_id;
        self.next_id += 1;
        self.timeline.push(
            self.now,
            Side::A,
            StepKind::Sent {
                id,
                segment,
                lost: false,
                retransmission,
            },
        );
        self.timeline.push(
            self.now,
            Side::B,
            StepKind::Received {
                id: Some(id),
                segment,
            },
        );
        self.queue.push_back((self.now, to_wire(&segment)));
    }

    /// Fires every timer due at or before `t`, in deadline order, then sets the clock to `t`.
    /// With `stop_on_segment`, returns as soon as a timer made a segment.
    fn advance(&mut self, t: Duration, stop_on_segment: bool) {
        loop {
            let due = self
                .conns
                .iter()
                .enumerate()
                .filter_map(|(i, c)| c.c.poll_timeout().map(|at| (at, i)))
                .filter(|&(at, _)| at <= t)
                .min();
            let Some((at, i)) = due else { break };
            self.now = self.now.max(at);
            if let Some((_, kind)) = self.conns[i].c.poll_timer() {
                self.timeline.push(self.now, Side::A, StepKind::Timer(kind));
            }
            let now = self.now;
            self.conns[i].c.handle_timeout(now);
            self.drain(i);
            if stop_on_segment && !self.queue.is_empty() {
                return;
            }
        }
        self.now = self.now.max(t);
    }

    fn set_profile(&mut self, f: impl Fn(&mut Profile)) {
        f(&mut self.profile);
        for c in &mut self.conns {
            f(c.c.profile_mut());
        }
    }

    /// Applies one sysctl; `Err` for knobs the machine cannot honour.
    fn sysctl(&mut self, name: &str, value: &str) -> Result<(), String> {
        let key = name.trim_start_matches("net.ipv4.");
        let num = || {
            value
                .trim()
                .parse::<i64>()
                .map_err(|_| format!("sysctl {name}={value}: not a number"))
        };
        match key {
            // tcp_timewait_state_process: assassination unless rfc1337.
            "tcp_rfc1337" => {
                let on = num()? != 0;
                self.set_profile(|p| p.rfc1337 = on);
            }
            // tcp_fin_timeout: the orphaned FIN_WAIT_2 lifetime (tcp_fin_time()).
            "tcp_fin_timeout" => {
                let secs = num()?.max(0) as u64;
                self.set_profile(|p| p.fin_timeout = Some(Duration::from_secs(secs)));
            }
            // inet_twsk_alloc fails when tw_count >= max_tw_buckets: with 0 every TIME_WAIT
            // (and orphan FIN_WAIT_2) mini-socket is refused. A positive limit is never
            // reached by a one-connection script, so it means "not exhausted".
            "tcp_max_tw_buckets" => {
                let exhausted = num()? == 0;
                self.set_profile(|p| p.time_wait_buckets_exhausted = exhausted);
            }
            "tcp_syn_retries" => {
                let n = num()?.clamp(1, 127) as u32;
                self.set_profile(|p| p.syn_retries = n);
            }
            "tcp_synack_retries" => {
                let n = num()?.clamp(0, 255) as u32;
                self.set_profile(|p| p.synack_retries = n);
            }
            "tcp_retries2" => {
                let n = num()?.clamp(0, 255) as u32;
                self.set_profile(|p| p.data_retries = n);
            }
            "tcp_orphan_retries" => {
                // tcp_orphan_retries(): 0 means 8.
                let n = match num()? {
                    0 => 8,
                    n => n.clamp(1, 255) as u32,
                };
                self.set_profile(|p| p.orphan_retries = n);
            }
            // Options the machine does not model (it sends none): only their presence on the
            // wire depends on these, which --semantic does not compare.
            "tcp_timestamps" | "tcp_sack" | "tcp_dsack" | "tcp_window_scaling" => {
                self.note(format!("sysctl {name}={value}: options are not modelled"));
            }
            // Features the machine has none of; off is what it does, on is not supported.
            "tcp_ecn" | "tcp_fastopen" => {
                if num()? != 0 {
                    return Err(format!(
                        "sysctl {name}={value}: not modelled by the machine"
                    ));
                }
            }
            // SYN cookies only matter when the SYN queue overflows, which a script never does.
            "tcp_syncookies" => {}
            _ => return Err(format!("sysctl {name} is not modelled by the machine")),
        }
        Ok(())
    }

    fn run_shell(
        &mut self,
        command: &ShellCommand,
        dir: &Path,
        depth: usize,
    ) -> Result<Result<(), String>, String> {
        match command {
            ShellCommand::Sysctl(settings) => {
                for (k, v) in settings {
                    self.sysctl(k, v)?;
                }
                Ok(Ok(()))
            }
            ShellCommand::Exit(0) => Ok(Ok(())),
            ShellCommand::Exit(code) => Ok(Err(format!("exit {code}"))),
            ShellCommand::File(path) => {
                if depth > 4 {
                    return Err("shell files nested too deeply".into());
                }
                let full = dir.join(path);
                let lines = shell::parse_file(&full).map_err(|e| e.to_string())?;
                for (_, cmd) in lines {
                    if let ShellCommand::Exit(code) = cmd {
                        return Ok(if code == 0 {
                            Ok(())
                        } else {
                            Err(format!("exit {code}"))
                        });
                    }
                    if let Err(detail) = self.run_shell(&cmd, dir, depth + 1)? {
                        return Ok(Err(detail));
                    }
                }
                Ok(Ok(()))
            }
            ShellCommand::Ss(check) => {
                let peer = crate::run::REMOTE_IP.to_string();
                if !peer.contains(check.pattern.as_str()) {
                    return Err(format!("ss checks can only grep for the peer {peer}"));
                }
                let states: Vec<State> = self
                    .conns
                    .iter()
                    .map(|c| c.c.state())
                    .filter(|s| !matches!(s, State::Closed | State::Listen))
                    .collect();
                if check.holds(&states) {
                    Ok(Ok(()))
                } else {
                    let seen: Vec<&str> = states.iter().map(|s| s.name()).collect();
                    Ok(Err(format!(
                        "machine has {} with the peer",
                        if seen.is_empty() {
                            "no connection".to_string()
                        } else {
                            seen.join(", ")
                        }
                    )))
                }
            }
        }
    }

    fn fd_entry(&self, args: &[Arg]) -> Result<(i64, Fd), CallResult> {
        match args.first() {
            Some(Arg::Int(fd)) => self
                .fds
                .get(fd)
                .map(|f| (*fd, f.clone()))
                .ok_or_else(|| Err("EBADF".into())),
            _ => Err(Err("EBADF".into())),
        }
    }

    fn new_fd(&self, spec: &CallSpec) -> i64 {
        match spec.expected {
            Expected::Value(v) if v >= 0 => v,
            _ => (3..).find(|fd| !self.fds.contains_key(fd)).unwrap_or(3),
        }
    }

    fn record_call(&mut self, kind: CallStepKind, result: &CallResult) {
        let result = match result {
            Ok(_) => Ok(()),
            Err(e) => Err(e.clone()),
        };
        self.timeline
            .push(self.now, Side::A, StepKind::Call(CallStep { kind, result }));
    }

    fn pending_accept(&self) -> Option<usize> {
        self.conns.iter().position(|c| {
            c.from_listener
                && !c.accepted
                && !matches!(
                    c.c.state(),
                    State::Closed | State::Listen | State::SynReceived
                )
        })
    }

    fn do_call(&mut self, spec: &CallSpec, blocking: bool) -> Result<CallResult, String> {
        let now = self.now;
        let name = spec.name.as_str();
        if name == "socket" {
            let ty = match spec.args.get(1) {
                Some(Arg::Names(n)) => n.join("|"),
                _ => String::new(),
            };
            if ty != "SOCK_STREAM" {
                return Err("only SOCK_STREAM sockets are supported".into());
            }
            let fd = self.new_fd(spec);
            self.fds.insert(
                fd,
                Fd::Fresh {
                    nonblocking: false,
                    linger_zero: false,
                    receive_buffer: None,
                },
            );
            self.note(format!("socket() = {fd}"));
            return Ok(Ok(fd));
        }
        let (fd, entry) = match self.fd_entry(&spec.args) {
            Ok(x) => x,
            Err(res) => return Ok(res),
        };
        let nonblocking = match entry {
            Fd::Fresh { nonblocking, .. }
            | Fd::Listener { nonblocking }
            | Fd::Conn { nonblocking, .. } => nonblocking,
        };
        let would_block = |what: &str| -> Result<CallResult, String> {
            if nonblocking {
                Ok(Err("EAGAIN".into()))
            } else {
                Err(format!(
                    "{what} would block; a call that blocks must be written `start...end`"
                ))
            }
        };
        let res: CallResult = match (name, &entry) {
            ("setsockopt", _) => {
                let opt = match spec.args.get(2) {
                    Some(Arg::Names(n)) => n.join("|"),
                    _ => String::new(),
                };
                match opt.as_str() {
                    // Address reuse, keepalive and Nagle do not change close paths here.
                    "SO_REUSEADDR" | "SO_REUSEPORT" | "TCP_NODELAY" | "SO_KEEPALIVE" => Ok(0),
                    "SO_LINGER" => {
                        let linger = crate::script::linger(spec.args.get(3))?;
                        let zero =
                            match linger {
                                None => false,
                                Some(d) if d.is_zero() => true,
                                Some(_) => return Err(
                                    "SO_LINGER with a timeout (a blocking close) is not modelled"
                                        .into(),
                                ),
                            };
                        match entry {
                            Fd::Conn { index, .. } => self.conns[index].c.set_linger_zero(zero),
                            Fd::Fresh {
                                nonblocking,
                                receive_buffer,
                                ..
                            } => {
                                self.fds.insert(
                                    fd,
                                    Fd::Fresh {
                                        nonblocking,
                                        linger_zero: zero,
                                        receive_buffer,
                                    },
                                );
                            }
                            Fd::Listener { .. } => {}
                        }
                        if zero {
                            self.record_call(CallStepKind::SetLingerZero, &Ok(0));
                        }
                        Ok(0)
                    }
                    "SO_RCVBUF" => {
                        let n = match spec.args.get(3) {
                            Some(Arg::Array(a)) => match a.as_slice() {
                                [Arg::Int(n)] => *n,
                                _ => return Err("SO_RCVBUF needs [N]".into()),
                            },
                            _ => return Err("SO_RCVBUF needs [N]".into()),
                        };
                        // sock_setsockopt doubles the value (bookkeeping overhead).
                        let bytes = (n.clamp(0, i64::from(u32::MAX / 2)) as u32) * 2;
                        match entry {
                            Fd::Conn { index, .. } => {
                                self.conns[index].c.profile_mut().receive_buffer = bytes
                            }
                            Fd::Fresh {
                                nonblocking,
                                linger_zero,
                                ..
                            } => {
                                self.fds.insert(
                                    fd,
                                    Fd::Fresh {
                                        nonblocking,
                                        linger_zero,
                                        receive_buffer: Some(bytes),
                                    },
                                );
                            }
                            Fd::Listener { .. } => self.profile.receive_buffer = bytes,
                        }
                        Ok(0)
                    }
                    other => {
                        return Err(format!("setsockopt {other} is not modelled by the machine"))
                    }
                }
            }
            ("fcntl", _) => {
                let on = match spec.args.get(2) {
                    Some(Arg::Names(n)) => n.iter().any(|f| f == "O_NONBLOCK"),
                    _ => false,
                };
                let updated = match entry {
                    Fd::Fresh {
                        linger_zero,
                        receive_buffer,
                        ..
                    } => Fd::Fresh {
                        nonblocking: on,
                        linger_zero,
                        receive_buffer,
                    },
                    Fd::Listener { .. } => Fd::Listener { nonblocking: on },
                    Fd::Conn {
                        index, read_shut, ..
                    } => Fd::Conn {
                        index,
                        nonblocking: on,
                        read_shut,
                    },
                };
                self.fds.insert(fd, updated);
                Ok(0)
            }
            ("bind", Fd::Fresh { .. }) => Ok(0),
            ("bind", _) => Err("EINVAL".into()),
            ("listen", Fd::Fresh { nonblocking, .. }) => {
                self.fds.insert(
                    fd,
                    Fd::Listener {
                        nonblocking: *nonblocking,
                    },
                );
                self.listening = true;
                self.record_call(CallStepKind::Lifecycle(CallKind::OpenPassive), &Ok(0));
                Ok(0)
            }
            ("listen", Fd::Listener { .. }) => Ok(0),
            ("listen", _) => Err("EINVAL".into()),
            ("accept", Fd::Listener { .. }) => match self.pending_accept() {
                Some(index) => {
                    self.conns[index].accepted = true;
                    let new = self.new_fd(spec);
                    self.fds.insert(
                        new,
                        Fd::Conn {
                            index,
                            nonblocking: false,
                            read_shut: false,
                        },
                    );
                    self.note(format!("accept() = {new}"));
                    Ok(new)
                }
                None if blocking => {
                    return Err("accept() blocked with no connection to accept".into())
                }
                None => return would_block("accept()"),
            },
            ("accept", _) => Err("EINVAL".into()),
            (
                "connect",
                Fd::Fresh {
                    nonblocking,
                    linger_zero,
                    receive_buffer,
                },
            ) => {
                let mut c = Connection::new(self.profile.clone(), self.next_iss);
                if let Some(b) = receive_buffer {
                    c.profile_mut().receive_buffer = *b;
                }
                c.set_linger_zero(*linger_zero);
                let r = c.open_active(now);
                self.conns.push(Conn {
                    c,
                    from_listener: false,
                    accepted: true,
                    connected_at: None,
                });
                let index = self.conns.len() - 1;
                self.fds.insert(
                    fd,
                    Fd::Conn {
                        index,
                        nonblocking: *nonblocking,
                        read_shut: false,
                    },
                );
                let res = match r {
                    Ok(()) if *nonblocking => Err("EINPROGRESS".to_string()),
                    Ok(()) => Ok(0),
                    Err(e) => errno(e),
                };
                self.record_call(CallStepKind::Lifecycle(CallKind::OpenActive), &res);
                self.drain(index);
                if r.is_ok() && !*nonblocking && !blocking {
                    return Err(
                        "connect() on a blocking socket blocks; write it `start...end`".into(),
                    );
                }
                res
            }
            ("connect", Fd::Conn { .. }) => Err("EISCONN".into()),
            ("connect", _) => Err("EINVAL".into()),
            (
                "read" | "recv",
                Fd::Conn {
                    index, read_shut, ..
                },
            ) => {
                let max = match spec.args.get(2) {
                    Some(Arg::Int(n)) => (*n).clamp(0, i64::from(u32::MAX)) as u32,
                    _ => return Err("read needs a length".into()),
                };
                let index = *index;
                let r = self.conns[index].c.read(max);
                let res = match r {
                    Ok(n) => Ok(i64::from(n)),
                    // After SHUT_RD, Linux still hands out queued data (tcp_recvmsg reads the
                    // receive queue first) and then returns end of file instead of blocking.
                    Err(CallError::WouldBlock) if *read_shut => Ok(0),
                    Err(CallError::WouldBlock) => return would_block("read()"),
                    Err(e) => errno(e),
                };
                if let Ok(n) = res {
                    self.record_call(CallStepKind::Read(n as u32), &res);
                }
                self.drain(index);
                res
            }
            ("write" | "send", Fd::Conn { index, .. }) => {
                let n = match spec.args.get(2) {
                    Some(Arg::Int(n)) => (*n).clamp(0, i64::from(u32::MAX)) as u32,
                    _ => return Err("write needs a length".into()),
                };
                let index = *index;
                let res = match self.conns[index].c.send(now, n) {
                    Ok(()) => Ok(i64::from(n)),
                    Err(e) => errno(e),
                };
                self.record_call(CallStepKind::Send(n), &res);
                self.drain(index);
                res
            }
            (
                "shutdown",
                Fd::Conn {
                    index, nonblocking, ..
                },
            ) => {
                let how = match spec.args.get(1) {
                    Some(Arg::Names(n)) => n.join("|"),
                    _ => String::new(),
                };
                let index = *index;
                let (rd, wr) = match how.as_str() {
                    "SHUT_RD" => (true, false),
                    "SHUT_WR" => (false, true),
                    "SHUT_RDWR" => (true, true),
                    other => return Err(format!("shutdown how {other:?}")),
                };
                if rd {
                    self.fds.insert(
                        fd,
                        Fd::Conn {
                            index,
                            nonblocking: *nonblocking,
                            read_shut: true,
                        },
                    );
                }
                let res = if wr {
                    match self.conns[index].c.shutdown_write(now) {
                        Ok(()) => Ok(0),
                        Err(e) => errno(e),
                    }
                } else {
                    Ok(0)
                };
                if wr {
                    self.record_call(CallStepKind::Lifecycle(CallKind::ShutdownWrite), &res);
                }
                self.drain(index);
                res
            }
            ("read" | "recv" | "write" | "send" | "shutdown", _) => Err("ENOTCONN".into()),
            ("close", _) => {
                self.fds.remove(&fd);
                match entry {
                    Fd::Conn { index, .. } => {
                        // Only the last descriptor of a connection closes it.
                        let still_open = self
                            .fds
                            .values()
                            .any(|f| matches!(f, Fd::Conn { index: i, .. } if *i == index));
                        if !still_open {
                            let r = self.conns[index].c.close(now);
                            let res = match r {
                                Ok(()) => Ok(0),
                                Err(e) => errno(e),
                            };
                            self.record_call(CallStepKind::Lifecycle(CallKind::Close), &res);
                            self.drain(index);
                        }
                        Ok(0)
                    }
                    Fd::Listener { .. } => {
                        // inet_csk_listen_stop: connections not yet accepted are aborted.
                        self.listening = false;
                        for i in 0..self.conns.len() {
                            if self.conns[i].from_listener && !self.conns[i].accepted {
                                let _ = self.conns[i].c.abort(now);
                                self.drain(i);
                            }
                        }
                        self.record_call(CallStepKind::Lifecycle(CallKind::Close), &Ok(0));
                        Ok(0)
                    }
                    Fd::Fresh { .. } => Ok(0),
                }
            }
            (other, _) => return Err(format!("the call {other}() is not modelled by the machine")),
        };
        Ok(res)
    }
}

/// The window of an inbound segment in octets: SEG.WND << the peer's shift (RFC 7323 §2.3;
/// never for a SYN, whose window is unscaled).
fn scaled_window(seg: &WireSegment, shift: Option<u8>) -> u32 {
    let w = u32::from(seg.window);
    match shift {
        Some(s) if !seg.flags.syn() => w << s.min(14),
        _ => w,
    }
}

impl Backend for MachineBackend {
    fn kind(&self) -> BackendKind {
        BackendKind::Machine
    }

    fn now(&mut self) -> Duration {
        self.now
    }

    fn restart_clock(&mut self) {
        // Virtual time: nothing ran on the clock yet.
    }

    fn wait_until(&mut self, t: Duration) -> Result<(), String> {
        self.advance(t, false);
        Ok(())
    }

    fn inject(&mut self, segment: WireSegment) -> Result<(), String> {
        if segment.flags.syn() && !segment.flags.ack() {
            self.peer_wscale = segment.options.iter().find_map(|o| match o {
                TcpOption::WindowScale(s) => Some(*s),
                _ => None,
            });
        }
        // The MSS the peer announces bounds our segments (RFC 9293 §3.7.1); the profile's
        // own MSS is what we would announce, so the effective one is the smaller.
        let peer_mss = segment.flags.syn().then(|| {
            segment.options.iter().find_map(|o| match o {
                TcpOption::Mss(m) => Some(u32::from(*m)),
                _ => None,
            })
        });
        let seg = Segment {
            seq: segment.seq,
            ack: segment.ack,
            flags: segment.flags,
            len: segment.len,
            window: scaled_window(&segment, self.peer_wscale),
        };
        let id = self.next_id;
        self.next_id += 1;
        let now = self.now;
        self.timeline.push(
            now,
            Side::B,
            StepKind::Sent {
                id,
                segment: seg,
                lost: false,
                retransmission: false,
            },
        );
        self.timeline.push(
            now,
            Side::A,
            StepKind::Received {
                id: Some(id),
                segment: seg,
            },
        );
        let (index, created) = match self.live() {
            Some(i) => (i, false),
            None => {
                // No connection: the listener's rule, or CLOSED's.
                let mut c = Connection::new(self.profile.clone(), self.next_iss);
                if self.listening {
                    c.open_passive().map_err(|e| format!("passive open: {e}"))?;
                    // The LISTEN transition belongs to the listener, not to this connection.
                    while c.poll_event().is_some() {}
                }
                self.conns.push(Conn {
                    c,
                    from_listener: self.listening,
                    accepted: false,
                    connected_at: None,
                });
                (self.conns.len() - 1, true)
            }
        };
        if let Some(Some(mss)) = peer_mss {
            let p = self.conns[index].c.profile_mut();
            p.mss = p.mss.min(mss);
        }
        self.conns[index].c.handle_segment(now, seg);
        self.drain(index);
        if created {
            if matches!(self.conns[index].c.state(), State::Closed | State::Listen) {
                // A segment that started nothing (answered with RST, or dropped) leaves no
                // connection behind.
                self.conns.remove(index);
            } else {
                // Each new connection gets a fresh ISS, as the kernel's secure_tcp_seq would.
                self.next_iss += 0x0100_0000;
            }
        }
        Ok(())
    }

    fn next_outbound(
        &mut self,
        deadline: Duration,
    ) -> Result<Option<(Duration, WireSegment)>, String> {
        if self.queue.is_empty() {
            self.advance(deadline, true);
        }
        Ok(self.queue.pop_front())
    }

    fn call(&mut self, spec: &CallSpec) -> Result<CallResult, String> {
        self.do_call(spec, false)
    }

    fn start_blocking(&mut self, spec: &CallSpec) -> Result<(), String> {
        match spec.name.as_str() {
            "connect" => {
                let res = self.do_call(spec, true)?;
                self.blocking = Some((spec.clone(), res.is_err().then_some(res)));
                Ok(())
            }
            "accept" | "read" | "recv" => {
                self.blocking = Some((spec.clone(), None));
                Ok(())
            }
            other => Err(format!(
                "a blocking {other}() is not modelled by the machine"
            )),
        }
    }

    fn finish_blocking(
        &mut self,
        deadline: Duration,
    ) -> Result<Option<(Duration, CallResult)>, String> {
        let Some((spec, failed)) = self.blocking.take() else {
            return Err("no blocking call is pending".into());
        };
        if let Some(res) = failed {
            return Ok(Some((self.now, res)));
        }
        loop {
            let (_, entry) = match self.fd_entry(&spec.args) {
                Ok(x) => x,
                Err(res) => return Ok(Some((self.now, res))),
            };
            match (spec.name.as_str(), entry) {
                ("connect", Fd::Conn { index, .. }) => {
                    let c = &self.conns[index];
                    match c.c.state() {
                        State::SynSent | State::SynReceived => {}
                        State::Closed => {
                            let at = self.now;
                            // The error the connection reports to a call: ask it with a read.
                            let err = match self.conns[index].c.read(1) {
                                Err(e) => e.errno().to_string(),
                                Ok(_) => "ECONNREFUSED".to_string(),
                            };
                            return Ok(Some((at, Err(err))));
                        }
                        _ => return Ok(Some((c.connected_at.unwrap_or(self.now), Ok(0)))),
                    }
                }
                ("accept" | "read" | "recv", _) => {
                    let before = self.now;
                    match self.do_call(&spec, true) {
                        Ok(res) => return Ok(Some((before, res))),
                        Err(e) if e.contains("blocked") || e.contains("would block") => {}
                        Err(e) => return Err(e),
                    }
                }
                _ => {
                    return Err(format!(
                        "a blocking {}() on this descriptor is not modelled",
                        spec.name
                    ))
                }
            }
            // Let timers run toward the deadline; stop when nothing is left to happen.
            let next = self.conns.iter().filter_map(|c| c.c.poll_timeout()).min();
            match next {
                Some(t) if t <= deadline => self.advance(t, false),
                _ => {
                    self.advance(deadline, false);
                    return Ok(None);
                }
            }
        }
    }

    fn shell(&mut self, command: &str, dir: &Path) -> Result<Result<(), String>, String> {
        let parsed = shell::parse_command(command).map_err(|e| e.to_string())?;
        self.run_shell(&parsed, dir, 0)
    }

    fn peer_state(&mut self) -> Result<Option<State>, String> {
        Ok(self.live().map(|i| self.conns[i].c.state()))
    }
}
