//! One line of a tracefs `trace_pipe` (default text format, one event per line) decoded
//! into a [`TraceEvent`]. Pure text handling: no I/O, no allocation beyond the task name,
//! and never a panic on garbage (property-tested below).
//!
//! The line shape is the kernel's `trace_print_context()` plus the event's `print fmt`:
//! ```text
//!          python3-8648    [001] ..s2.  1171.359988: inet_sock_set_state: family=AF_INET protocol=IPPROTO_TCP sport=37717 dport=40844 saddr=127.0.0.1 daddr=127.0.0.1 saddrv6=::ffff:127.0.0.1 daddrv6=::ffff:127.0.0.1 oldstate=TCP_LISTEN newstate=TCP_SYN_RECV
//! ```
//! The third flag character is `s` when the event was raised in softirq, `h`/`H` in a
//! hard interrupt: the task printed is then whoever happened to be on that CPU, not the
//! socket's owner.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;
use tcpstate_fsm::State;

/// The task that was on the CPU when the event fired.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Task {
    /// `comm` as the trace prints it (may be `<...>` when the kernel forgot it).
    pub comm: String,
    /// Thread id.
    pub pid: i32,
    /// The event fired in softirq or hardirq context: the task was merely interrupted and
    /// has nothing to do with the socket.
    pub interrupt: bool,
}

/// What the event says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventKind {
    /// `sock:inet_sock_set_state` for a TCP socket. `local`/`remote` are the socket's own
    /// addresses (`inet->inet_saddr/sport`, `inet_daddr/dport`); a connecting socket's
    /// first event (CLOSE → SYN_SENT) has local port 0, assigned later by
    /// `inet_hash_connect()`.
    SetState {
        /// Local address.
        local: SocketAddr,
        /// Remote address (port 0 for a listener).
        remote: SocketAddr,
        /// State before.
        old: State,
        /// State after.
        new: State,
    },
    /// `tcp:tcp_send_reset`: this host sent a RST. `local` is this host's side.
    SendReset {
        /// Local address.
        local: SocketAddr,
        /// Remote address.
        remote: SocketAddr,
        /// The sending socket's state, when the kernel knew it.
        state: Option<State>,
        /// `enum sk_rst_reason` name (`TCP_ABORT_ON_CLOSE`, `TCP_TIMEWAIT_SOCKET`...).
        reason: String,
    },
    /// `tcp:tcp_receive_reset`: a full socket accepted a RST (`tcp_reset()`).
    ReceiveReset {
        /// Local address.
        local: SocketAddr,
        /// Remote address.
        remote: SocketAddr,
        /// Socket cookie.
        cookie: u64,
    },
    /// `tcp:tcp_destroy_sock`: a full socket was freed (`inet_csk_destroy_sock()`); its
    /// cookie is the one a timewait socket inherits.
    Destroy {
        /// Local address.
        local: SocketAddr,
        /// Remote address.
        remote: SocketAddr,
        /// Socket cookie.
        cookie: u64,
    },
}

/// One decoded trace line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceEvent {
    /// Trace-clock timestamp (the instance uses `boot`, i.e. CLOCK_BOOTTIME).
    pub ts: Duration,
    /// CPU it fired on.
    pub cpu: u32,
    /// Who was on the CPU.
    pub task: Task,
    /// The event.
    pub kind: EventKind,
}

/// What made a line undecodable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// Not the `task-pid [cpu] flags ts: event: fields` shape.
    #[error("not a trace line: {0}")]
    Shape(&'static str),
    /// An event this parser does not decode (e.g. a marker); not an error for callers
    /// that read a shared pipe.
    #[error("event {0:?} is not one tcpstate enables")]
    OtherEvent(String),
    /// A field is missing or does not parse.
    #[error("field {field} missing or malformed in {event}")]
    Field {
        /// The event.
        event: &'static str,
        /// The field.
        field: &'static str,
    },
    /// A non-TCP protocol (the kernel filter should have dropped it).
    #[error("protocol {0} is not TCP")]
    Protocol(String),
}

/// Decodes one `trace_pipe` line (without its newline).
pub fn parse_line(line: &str) -> Result<TraceEvent, ParseError> {
    // The CPU field "[NNN]" ends the task; the task name may contain spaces and dashes.
    let (cpu_open, cpu_close) = find_cpu_field(line).ok_or(ParseError::Shape("no [cpu]"))?;
    let task_part = line[..cpu_open].trim();
    let (comm, pid) = task_part
        .rsplit_once('-')
        .ok_or(ParseError::Shape("no task-pid"))?;
    let pid: i32 = pid
        .trim()
        .parse()
        .map_err(|_| ParseError::Shape("bad pid"))?;
    let cpu: u32 = line[cpu_open + 1..cpu_close]
        .parse()
        .map_err(|_| ParseError::Shape("bad cpu"))?;
    let rest = line[cpu_close + 1..].trim_start();
    // Flags (irqs-off, need-resched, hard/softirq, preempt depth, migrate-disable) come
    // first unless the `irq-info` option is off; they are followed by the timestamp.
    let (first, after) = rest
        .split_once(' ')
        .ok_or(ParseError::Shape("no timestamp"))?;
    let (flags, rest) = if first.ends_with(':') {
        ("", rest)
    } else {
        (first, after.trim_start())
    };
    let interrupt = matches!(
        flags.as_bytes().get(2),
        Some(b's' | b'h' | b'H' | b'z' | b'Z')
    );
    let (ts_text, rest) = rest
        .split_once(": ")
        .ok_or(ParseError::Shape("no timestamp"))?;
    let ts = parse_ts(ts_text.trim()).ok_or(ParseError::Shape("bad timestamp"))?;
    let (event, fields) = rest
        .split_once(": ")
        .ok_or(ParseError::Shape("no event name"))?;
    let kind = match event {
        "inet_sock_set_state" => parse_set_state(fields)?,
        "tcp_send_reset" => parse_send_reset(fields)?,
        "tcp_receive_reset" => {
            let (local, remote, cookie) = parse_tuple_cookie("tcp_receive_reset", fields)?;
            EventKind::ReceiveReset {
                local,
                remote,
                cookie,
            }
        }
        "tcp_destroy_sock" => {
            let (local, remote, cookie) = parse_tuple_cookie("tcp_destroy_sock", fields)?;
            EventKind::Destroy {
                local,
                remote,
                cookie,
            }
        }
        other => return Err(ParseError::OtherEvent(other.to_string())),
    };
    Ok(TraceEvent {
        ts,
        cpu,
        task: Task {
            comm: comm.to_string(),
            pid,
            interrupt,
        },
        kind,
    })
}

fn find_cpu_field(line: &str) -> Option<(usize, usize)> {
    let b = line.as_bytes();
    let mut from = 0;
    while let Some(off) = line.get(from..)?.find('[') {
        let open = from + off;
        let mut i = open + 1;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        if i > open + 1 && i < b.len() && b[i] == b']' {
            return Some((open, i));
        }
        from = open + 1;
    }
    None
}

/// `SECONDS.FRACTION` (any number of fraction digits, up to ns) or a bare counter.
fn parse_ts(s: &str) -> Option<Duration> {
    let (secs, frac) = s.split_once('.').unwrap_or((s, ""));
    let secs: u64 = secs.parse().ok()?;
    if frac.len() > 9 || !frac.bytes().all(|c| c.is_ascii_digit()) {
        return None;
    }
    let mut nanos: u32 = if frac.is_empty() {
        0
    } else {
        frac.parse().ok()?
    };
    for _ in frac.len()..9 {
        nanos *= 10;
    }
    Some(Duration::new(secs, nanos))
}

/// Iterates `key=value` pairs separated by single spaces.
fn fields(s: &str) -> impl Iterator<Item = (&str, &str)> {
    s.split(' ').filter_map(|kv| kv.split_once('='))
}

fn kernel_state(name: &str) -> Option<State> {
    // Spelled TCP_ESTABLISHED ... TCP_NEW_SYN_RECV by __print_symbolic; State parses them.
    name.parse().ok()
}

fn parse_set_state(s: &str) -> Result<EventKind, ParseError> {
    const EV: &str = "inet_sock_set_state";
    let err = |field| ParseError::Field { event: EV, field };
    let (mut family, mut sport, mut dport) = (None, None, None);
    let (mut saddr, mut daddr, mut saddr6, mut daddr6) = (None, None, None, None);
    let (mut old, mut new) = (None, None);
    for (k, v) in fields(s) {
        match k {
            "family" => family = Some(v),
            "protocol" if v != "IPPROTO_TCP" => return Err(ParseError::Protocol(v.to_string())),
            "sport" => sport = Some(v.parse::<u16>().map_err(|_| err("sport"))?),
            "dport" => dport = Some(v.parse::<u16>().map_err(|_| err("dport"))?),
            "saddr" => saddr = v.parse::<Ipv4Addr>().ok(),
            "daddr" => daddr = v.parse::<Ipv4Addr>().ok(),
            "saddrv6" => saddr6 = v.parse::<Ipv6Addr>().ok(),
            "daddrv6" => daddr6 = v.parse::<Ipv6Addr>().ok(),
            "oldstate" => old = Some(kernel_state(v).ok_or(err("oldstate"))?),
            "newstate" => new = Some(kernel_state(v).ok_or(err("newstate"))?),
            _ => {}
        }
    }
    let (sip, dip): (IpAddr, IpAddr) = match family.ok_or(err("family"))? {
        "AF_INET" => (
            saddr.ok_or(err("saddr"))?.into(),
            daddr.ok_or(err("daddr"))?.into(),
        ),
        "AF_INET6" => (
            saddr6.ok_or(err("saddrv6"))?.into(),
            daddr6.ok_or(err("daddrv6"))?.into(),
        ),
        _ => return Err(err("family")),
    };
    Ok(EventKind::SetState {
        local: SocketAddr::new(sip, sport.ok_or(err("sport"))?),
        remote: SocketAddr::new(dip, dport.ok_or(err("dport"))?),
        old: old.ok_or(err("oldstate"))?,
        new: new.ok_or(err("newstate"))?,
    })
}

fn parse_send_reset(s: &str) -> Result<EventKind, ParseError> {
    const EV: &str = "tcp_send_reset";
    let err = |field| ParseError::Field { event: EV, field };
    let (mut src, mut dst, mut state, mut reason) = (None, None, None, None);
    for (k, v) in fields(s) {
        match k {
            // %pISpc: "1.2.3.4:80" or "[::1]:80".
            "src" => src = v.parse::<SocketAddr>().ok(),
            "dest" => dst = v.parse::<SocketAddr>().ok(),
            "state" => state = kernel_state(v),
            "reason" => reason = Some(v),
            _ => {}
        }
    }
    Ok(EventKind::SendReset {
        local: src.ok_or(err("src"))?,
        remote: dst.ok_or(err("dest"))?,
        state,
        // Older kernels have no reason field.
        reason: reason.unwrap_or("NOT_SPECIFIED").to_string(),
    })
}

fn parse_tuple_cookie(
    ev: &'static str,
    s: &str,
) -> Result<(SocketAddr, SocketAddr, u64), ParseError> {
    let err = |field| ParseError::Field { event: ev, field };
    let (mut family, mut sport, mut dport, mut cookie) = (None, None, None, None);
    let (mut saddr, mut daddr, mut saddr6, mut daddr6) = (None, None, None, None);
    for (k, v) in fields(s) {
        match k {
            "family" => family = Some(v),
            "sport" => sport = v.parse::<u16>().ok(),
            "dport" => dport = v.parse::<u16>().ok(),
            "saddr" => saddr = v.parse::<Ipv4Addr>().ok(),
            "daddr" => daddr = v.parse::<Ipv4Addr>().ok(),
            "saddrv6" => saddr6 = v.parse::<Ipv6Addr>().ok(),
            "daddrv6" => daddr6 = v.parse::<Ipv6Addr>().ok(),
            // Printed with %llx.
            "sock_cookie" => cookie = u64::from_str_radix(v, 16).ok(),
            _ => {}
        }
    }
    let (sip, dip): (IpAddr, IpAddr) = match family.ok_or(err("family"))? {
        "AF_INET" => (
            saddr.ok_or(err("saddr"))?.into(),
            daddr.ok_or(err("daddr"))?.into(),
        ),
        "AF_INET6" => (
            saddr6.ok_or(err("saddrv6"))?.into(),
            daddr6.ok_or(err("daddrv6"))?.into(),
        ),
        _ => return Err(err("family")),
    };
    Ok((
        SocketAddr::new(sip, sport.ok_or(err("sport"))?),
        SocketAddr::new(dip, dport.ok_or(err("dport"))?),
        cookie.ok_or(err("sock_cookie"))?,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    // Lines captured from this kernel (6.18) in a tracefs instance.
    const LISTEN_SYN_RECV: &str = "         python3-8648    [001] ..s2.  1171.359988: inet_sock_set_state: family=AF_INET protocol=IPPROTO_TCP sport=37717 dport=40844 saddr=127.0.0.1 daddr=127.0.0.1 saddrv6=::ffff:127.0.0.1 daddrv6=::ffff:127.0.0.1 oldstate=TCP_LISTEN newstate=TCP_SYN_RECV";
    const DESTROY: &str = "           rustc-8709    [001] .Ns1.  1171.368039: tcp_destroy_sock: family=AF_INET sport=40844 dport=37717 saddr=127.0.0.1 daddr=127.0.0.1 saddrv6=::ffff:127.0.0.1 daddrv6=::ffff:127.0.0.1 sock_cookie=108a";

    #[test]
    fn decodes_set_state_in_softirq() {
        let e = parse_line(LISTEN_SYN_RECV).unwrap();
        assert_eq!(e.ts, Duration::new(1171, 359_988_000));
        assert_eq!(e.cpu, 1);
        assert_eq!(e.task.comm, "python3");
        assert_eq!(e.task.pid, 8648);
        assert!(e.task.interrupt);
        assert_eq!(
            e.kind,
            EventKind::SetState {
                local: "127.0.0.1:37717".parse().unwrap(),
                remote: "127.0.0.1:40844".parse().unwrap(),
                old: State::Listen,
                new: State::SynReceived,
            }
        );
    }

    #[test]
    fn decodes_destroy_cookie_hex_and_task_with_dashes() {
        let line = DESTROY.replace("rustc-8709", "my-weird task-8709");
        let e = parse_line(&line).unwrap();
        assert_eq!(e.task.comm, "my-weird task");
        assert_eq!(e.task.pid, 8709);
        assert!(e.task.interrupt);
        match e.kind {
            EventKind::Destroy { cookie, .. } => assert_eq!(cookie, 0x108a),
            k => panic!("{k:?}"),
        }
    }

    #[test]
    fn decodes_ipv6_and_process_context() {
        let line = "            curl-1234    [000] .....  5.000001: inet_sock_set_state: family=AF_INET6 protocol=IPPROTO_TCP sport=0 dport=443 saddr=0.0.0.0 daddr=0.0.0.0 saddrv6=2001:db8::1 daddrv6=2001:db8::2 oldstate=TCP_CLOSE newstate=TCP_SYN_SENT";
        let e = parse_line(line).unwrap();
        assert!(!e.task.interrupt);
        match e.kind {
            EventKind::SetState {
                local,
                remote,
                old,
                new,
            } => {
                assert_eq!(local, "[2001:db8::1]:0".parse().unwrap());
                assert_eq!(remote, "[2001:db8::2]:443".parse().unwrap());
                assert_eq!((old, new), (State::Closed, State::SynSent));
            }
            k => panic!("{k:?}"),
        }
    }

    #[test]
    fn decodes_send_reset_with_reason() {
        let line = "          python3-9000    [000] b..1.  77.5: tcp_send_reset: skbaddr=0000000000000000 skaddr=00000000a1b2c3d4 src=127.0.0.1:5000 dest=127.0.0.1:40000 state=TCP_ESTABLISHED reason=TCP_ABORT_ON_CLOSE";
        let e = parse_line(line).unwrap();
        assert_eq!(e.ts, Duration::from_millis(77_500));
        assert_eq!(
            e.kind,
            EventKind::SendReset {
                local: "127.0.0.1:5000".parse().unwrap(),
                remote: "127.0.0.1:40000".parse().unwrap(),
                state: Some(State::Established),
                reason: "TCP_ABORT_ON_CLOSE".into(),
            }
        );
        let v6 = line
            .replace("127.0.0.1:5000", "[::1]:5000")
            .replace("127.0.0.1:40000", "[::1]:40000")
            .replace("TCP_ESTABLISHED", "UNKNOWN");
        match parse_line(&v6).unwrap().kind {
            EventKind::SendReset { local, state, .. } => {
                assert_eq!(local, "[::1]:5000".parse().unwrap());
                assert_eq!(state, None);
            }
            k => panic!("{k:?}"),
        }
    }

    #[test]
    fn rejects_garbage_and_other_events() {
        assert!(matches!(parse_line(""), Err(ParseError::Shape(_))));
        assert!(matches!(
            parse_line("# tracer: nop"),
            Err(ParseError::Shape(_))
        ));
        let marker = "   tcpstate-1  [000] .....  10.000000: tracing_mark_write: hello";
        assert!(matches!(parse_line(marker), Err(ParseError::OtherEvent(_))));
        let sctp = LISTEN_SYN_RECV.replace("IPPROTO_TCP", "IPPROTO_SCTP");
        assert!(matches!(parse_line(&sctp), Err(ParseError::Protocol(_))));
        let cut = &LISTEN_SYN_RECV[..LISTEN_SYN_RECV.len() - 30];
        assert!(parse_line(cut).is_err());
        let bad_state = LISTEN_SYN_RECV.replace("TCP_SYN_RECV", "TCP_BOGUS");
        assert!(matches!(
            parse_line(&bad_state),
            Err(ParseError::Field {
                field: "newstate",
                ..
            })
        ));
    }

    proptest! {
        #[test]
        fn never_panics_on_arbitrary_text(s in ".{0,300}") {
            let _ = parse_line(&s);
        }

        #[test]
        fn never_panics_on_mutated_real_lines(cut in 0usize..400, junk in ".{0,20}") {
            for base in [LISTEN_SYN_RECV, DESTROY] {
                let mut s: String = base.chars().take(cut).collect();
                s.push_str(&junk);
                let _ = parse_line(&s);
            }
        }
    }
}
