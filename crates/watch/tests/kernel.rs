//! Real kernel, private network namespace, loopback only: connections are staged with real
//! sockets while the watcher runs, and what it reports is checked against what must have
//! happened — TIME_WAIT included, which the tracepoint itself never reports.
//!
//! Skipped with a printed reason when not root or when tracefs cannot be used; in CI
//! (CI=true, root) a missing tracefs is a failure.
#![cfg(target_os = "linux")]

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::os::fd::AsFd;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tcpstate_fsm::State;
use tcpstate_host::netns::{self, NetnsSelector};
use tcpstate_watch::report::Origin;
use tcpstate_watch::session::{self, Mode, Output, SourceInfo, WatchOptions};
use tcpstate_watch::{Closer, Lifeline, Report, TrackerOptions, TransitionReport};

struct Netns(String);

impl Netns {
    fn new(tag: &str) -> Netns {
        let name = format!("tcpstate-watch-{tag}-{}", std::process::id());
        let _ = Command::new("ip")
            .args(["netns", "del", &name])
            .stderr(std::process::Stdio::null())
            .status();
        let ok = Command::new("ip")
            .args(["netns", "add", &name])
            .status()
            .expect("ip")
            .success();
        assert!(ok, "ip netns add {name}");
        let ok = Command::new("ip")
            .args(["-n", &name, "link", "set", "lo", "up"])
            .status()
            .expect("ip")
            .success();
        assert!(ok);
        Netns(name)
    }

    fn sysctl(&self, key: &str, value: &str) {
        let ok = Command::new("ip")
            .args([
                "netns",
                "exec",
                &self.0,
                "sysctl",
                "-qw",
                &format!("{key}={value}"),
            ])
            .status()
            .expect("sysctl")
            .success();
        assert!(ok, "sysctl {key}");
    }

    /// Runs `f` inside the namespace (sockets made there stay there).
    fn run<T: Send>(&self, f: impl FnOnce() -> T + Send) -> T {
        let t = netns::resolve(&NetnsSelector::Named(self.0.clone())).expect("netns");
        netns::run_in(&t[0], f).expect("enter netns")
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

fn can_run() -> bool {
    if !rustix::process::geteuid().is_root() {
        eprintln!("skipped: kernel watch tests need root (tracefs, netns)");
        return false;
    }
    if Command::new("ip").arg("-V").output().is_err() {
        assert!(std::env::var_os("CI").is_none(), "iproute2 missing in CI");
        eprintln!("skipped: `ip` (iproute2) not installed");
        return false;
    }
    match tcpstate_watch::tracefs::TraceFs::locate_or_mount() {
        Ok(_) => true,
        Err(e) => {
            assert!(
                std::env::var_os("CI").is_none(),
                "tracefs unusable in CI: {e}"
            );
            eprintln!("skipped: {e}");
            false
        }
    }
}

/// Watches `ns` while `stage` runs, then `linger` more, and returns every report.
fn watch_while(
    ns: &Netns,
    tweak: impl FnOnce(&mut WatchOptions),
    stage: impl FnOnce(),
    linger: Duration,
) -> (Vec<Report>, Vec<Output>) {
    let mut opts = WatchOptions {
        netns: NetnsSelector::Named(ns.0.clone()),
        mode: Mode::Trace,
        tracker: TrackerOptions {
            timewait_poll: Duration::from_millis(200),
            ..TrackerOptions::default()
        },
        batch: Duration::from_millis(50),
        buffer_kb: 1024,
        binary: std::env::var_os("TCPSTATE_TEST_TEXT_PIPE").is_none(),
        ..WatchOptions::default()
    };
    tweak(&mut opts);
    let stop = Arc::new(AtomicBool::new(false));
    let outputs = Arc::new(Mutex::new(Vec::new()));
    let started = Arc::new(AtomicBool::new(false));
    let handle = {
        let (stop, outputs, started) = (stop.clone(), outputs.clone(), started.clone());
        std::thread::spawn(move || {
            session::watch(&opts, &stop, &mut |o| {
                if matches!(o, Output::Started { .. }) {
                    started.store(true, Ordering::SeqCst);
                }
                outputs.lock().unwrap().push(o);
                std::ops::ControlFlow::Continue(())
            })
        })
    };
    for _ in 0..200 {
        if started.load(Ordering::SeqCst) || handle.is_finished() {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(started.load(Ordering::SeqCst), "watch did not start");
    stage();
    std::thread::sleep(linger);
    stop.store(true, Ordering::SeqCst);
    handle.join().expect("watch thread").expect("watch");
    let outputs = Arc::try_unwrap(outputs).unwrap().into_inner().unwrap();
    let reports = outputs
        .iter()
        .filter_map(|o| match o {
            Output::Report(r) => Some(r.clone()),
            _ => None,
        })
        .collect();
    (reports, outputs)
}

fn transitions_of(r: &[Report], port: u16, local_side: bool) -> Vec<TransitionReport> {
    r.iter()
        .filter_map(|r| match r {
            Report::Transition(t)
                if (if local_side {
                    t.local.port()
                } else {
                    t.remote.port()
                }) == port =>
            {
                Some(t.clone())
            }
            _ => None,
        })
        .collect()
}

fn lifeline_of(r: &[Report], local_port: u16) -> Lifeline {
    r.iter()
        .find_map(|r| match r {
            Report::Lifeline(l) if l.local.port() == local_port && l.remote.port() != 0 => {
                Some((**l).clone())
            }
            _ => None,
        })
        .unwrap_or_else(|| panic!("no lifeline for local port {local_port} in {r:#?}"))
}

fn states(l: &Lifeline) -> Vec<State> {
    l.states.iter().map(|d| d.state).collect()
}

fn pairs(t: &[TransitionReport]) -> Vec<(State, State)> {
    t.iter().map(|t| (t.from, t.to)).collect()
}

/// The tracefs instance the watch used is gone.
fn no_instance_left(outputs: &[Output]) {
    let name = outputs
        .iter()
        .find_map(|o| match o {
            Output::Started {
                source: SourceInfo::Tracepoint { instance, .. },
                ..
            } => Some(instance.clone()),
            _ => None,
        })
        .expect("a tracepoint watch");
    let dir = format!("/sys/kernel/tracing/instances/{name}");
    assert!(
        !std::path::Path::new(&dir).exists(),
        "{dir} left behind after the watch"
    );
}

/// A connected pair inside the namespace: (client, server, listener).
fn connect(ns: &Netns, port: u16) -> (TcpStream, TcpStream, TcpListener) {
    ns.run(|| {
        let l = TcpListener::bind(("127.0.0.1", port)).expect("bind");
        let c = TcpStream::connect(("127.0.0.1", port)).expect("connect");
        let (s, _) = l.accept().expect("accept");
        (c, s, l)
    })
}

/// Long enough for a lookup (one batch, 50 ms here) to land between two steps even on a
/// loaded machine.
const PAUSE: Duration = Duration::from_millis(600);

/// The short tests run one at a time: on a busy 2-CPU machine, parallel watchers starve each
/// other's lookups. (The 60 s test runs beside them.)
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

#[test]
fn client_closes_first_and_the_report_shows_time_wait() {
    if !can_run() {
        return;
    }
    let _serial = serial();
    let ns = Netns::new("cc");
    let port = 7101;
    let mut cport = 0;
    let (reports, outputs) = watch_while(
        &ns,
        |o| o.tracker.filter.ports = vec![port],
        || {
            let (c, s, _l) = connect(&ns, port);
            cport = c.local_addr().unwrap().port();
            std::thread::sleep(PAUSE);
            // Half-close, keeping the fd: the full socket stays in FIN_WAIT_2 until the
            // server's FIN, then tcp_time_wait(TCP_TIME_WAIT) swaps it for a minisocket.
            c.shutdown(Shutdown::Write).unwrap();
            std::thread::sleep(PAUSE);
            drop(s);
            std::thread::sleep(PAUSE);
            drop(c);
        },
        Duration::from_millis(600),
    );
    let client = transitions_of(&reports, cport, true);
    assert_eq!(
        pairs(&client),
        vec![
            (State::Closed, State::SynSent),
            (State::SynSent, State::Established),
            (State::Established, State::FinWait1),
            (State::FinWait1, State::FinWait2),
            (State::FinWait2, State::TimeWait),
        ],
        "{client:#?}"
    );
    let tw = client.last().unwrap();
    assert_eq!(
        tw.kernel,
        Some((State::FinWait2, State::Closed)),
        "the tracepoint said CLOSE"
    );
    assert_eq!(tw.origin, Origin::TimewaitConfirmed);
    let est = &client[3 - 1];
    assert_eq!(est.to, State::FinWait1);
    let dwell = est.dwell.unwrap();
    assert!(
        dwell >= PAUSE && dwell < PAUSE + Duration::from_millis(300),
        "ESTABLISHED dwell {dwell:?}"
    );
    // The owner comes from the socket lookup: this test process.
    assert_eq!(
        client[1].owner.as_ref().map(|o| o.pid),
        Some(std::process::id())
    );
    // The server: passive close, lifeline ended by its LAST_ACK.
    let sl = lifeline_of(&reports, port);
    assert_eq!(
        states(&sl),
        vec![
            State::SynReceived,
            State::Established,
            State::CloseWait,
            State::LastAck
        ]
    );
    assert_eq!(sl.closed_first, Some(Closer::Peer));
    assert_eq!(sl.end, "fin");
    let cw = sl.states[2].dwell;
    assert!(
        cw >= PAUSE && cw < PAUSE + Duration::from_millis(300),
        "CLOSE_WAIT {cw:?}"
    );
    // The client is still in TIME_WAIT when the watch stops (60 s, fixed).
    let cl = lifeline_of(&reports, cport);
    assert!(cl.still_open);
    assert_eq!(cl.last, State::TimeWait);
    assert_eq!(cl.closed_first, Some(Closer::Local));
    no_instance_left(&outputs);
}

#[test]
fn server_closes_first_orphan_goes_fin_wait_2_then_time_wait() {
    if !can_run() {
        return;
    }
    let _serial = serial();
    let ns = Netns::new("sc");
    let port = 7102;
    let mut cport = 0;
    let (reports, outputs) = watch_while(
        &ns,
        |o| o.tracker.filter.ports = vec![port],
        || {
            let (c, s, _l) = connect(&ns, port);
            cport = c.local_addr().unwrap().port();
            std::thread::sleep(PAUSE);
            drop(s); // orphaned at once: handed to a FIN_WAIT_2 timewait socket
            std::thread::sleep(PAUSE);
            drop(c);
        },
        Duration::from_millis(800),
    );
    let server: Vec<_> = transitions_of(&reports, port, true)
        .into_iter()
        .filter(|t| t.remote.port() == cport)
        .collect();
    let p = pairs(&server);
    assert!(p.contains(&(State::Established, State::FinWait1)), "{p:?}");
    assert!(
        p.contains(&(State::FinWait2, State::FinWait2)),
        "handover in substate FIN_WAIT_2: {p:?}"
    );
    assert_eq!(p.last(), Some(&(State::FinWait2, State::TimeWait)), "{p:?}");
    let sl = lifeline_of(&reports, port);
    assert_eq!(sl.last, State::TimeWait);
    assert!(sl.still_open);
    assert_eq!(sl.closed_first, Some(Closer::Local));
    // FIN_WAIT_2 lasted until the client's FIN, one pause later.
    let fw2 = sl
        .states
        .iter()
        .find(|d| d.state == State::FinWait2)
        .unwrap()
        .dwell;
    assert!(
        fw2 >= PAUSE - Duration::from_millis(10) && fw2 < PAUSE + Duration::from_millis(300),
        "{fw2:?}"
    );
    let cl = lifeline_of(&reports, cport);
    assert_eq!(
        states(&cl),
        vec![
            State::SynSent,
            State::Established,
            State::CloseWait,
            State::LastAck
        ]
    );
    assert_eq!(cl.closed_first, Some(Closer::Peer));
    no_instance_left(&outputs);
}

#[test]
fn rst_by_linger_zero_and_by_unread_data_never_become_time_wait() {
    if !can_run() {
        return;
    }
    let _serial = serial();
    let ns = Netns::new("rst");
    let (p1, p2) = (7103, 7104);
    let (mut c1port, mut s2peer) = (0, 0);
    let (reports, outputs) = watch_while(
        &ns,
        |o| o.tracker.filter.ports = vec![p1, p2],
        || {
            let (c, _s, _l) = connect(&ns, p1);
            c1port = c.local_addr().unwrap().port();
            rustix::net::sockopt::set_socket_linger(c.as_fd(), Some(Duration::ZERO)).unwrap();
            std::thread::sleep(PAUSE);
            drop(c); // SO_LINGER {1,0}: RST
            let (mut c2, s2, _l2) = connect(&ns, p2);
            s2peer = c2.local_addr().unwrap().port();
            c2.write_all(b"unread").unwrap();
            std::thread::sleep(PAUSE);
            drop(s2); // closing with unread data: RST (RFC 2525 §2.17)
            std::thread::sleep(Duration::from_millis(100));
            let mut buf = [0u8; 8];
            assert!(c2.read(&mut buf).is_err(), "the peer must see ECONNRESET");
        },
        Duration::from_millis(500),
    );
    let l1 = lifeline_of(&reports, c1port);
    assert_eq!(states(&l1), vec![State::SynSent, State::Established]);
    assert_eq!(l1.end, "rst_sent");
    assert_eq!(l1.end_detail.as_deref(), Some("TCP_STATE"));
    let peer1 = reports
        .iter()
        .find_map(|r| match r {
            Report::Lifeline(l) if l.local.port() == p1 && l.remote.port() == c1port => Some(l),
            _ => None,
        })
        .expect("server side of the linger-0 connection");
    assert_eq!(peer1.end, "rst_received");
    let l2 = reports
        .iter()
        .find_map(|r| match r {
            Report::Lifeline(l) if l.local.port() == p2 && l.remote.port() == s2peer => Some(l),
            _ => None,
        })
        .expect("server side of the unread-data connection");
    assert_eq!(l2.end, "rst_sent");
    assert_eq!(l2.end_detail.as_deref(), Some("TCP_ABORT_ON_CLOSE"));
    assert!(
        !reports
            .iter()
            .any(|r| matches!(r, Report::Transition(t) if t.to == State::TimeWait)),
        "no TIME_WAIT after RSTs"
    );
    no_instance_left(&outputs);
}

#[test]
fn close_wait_leak_is_warned_once_with_its_owner() {
    if !can_run() {
        return;
    }
    let _serial = serial();
    let ns = Netns::new("cw");
    let port = 7105;
    let mut keep = Vec::new();
    let (reports, outputs) = watch_while(
        &ns,
        |o| {
            o.tracker.close_wait_threshold = Some(Duration::from_millis(400));
            o.tracker.filter.ports = vec![port];
        },
        || {
            let (c, s, l) = connect(&ns, port);
            drop(c); // the peer closes; we never close s: a leak
            keep.push((s, l));
        },
        Duration::from_millis(1200),
    );
    let warnings: Vec<_> = reports
        .iter()
        .filter_map(|r| match r {
            Report::Warning(w) => Some(w),
            _ => None,
        })
        .collect();
    assert_eq!(warnings.len(), 1, "{warnings:#?}");
    assert_eq!(warnings[0].local.port(), port);
    assert_eq!(
        warnings[0].owner.as_ref().map(|o| o.pid),
        Some(std::process::id())
    );
    assert!(warnings[0].dwell >= Duration::from_millis(400));
    // At exit the leak is still open in CLOSE_WAIT.
    let l = lifeline_of(&reports, port);
    assert!(l.still_open);
    assert_eq!(l.last, State::CloseWait);
    let summary = outputs
        .iter()
        .find_map(|o| match o {
            Output::Summary {
                summary,
                last: true,
                lost_events,
            } => Some((summary, *lost_events)),
            _ => None,
        })
        .expect("final summary");
    assert_eq!(summary.1, Some(0), "no events lost");
    drop(keep);
    no_instance_left(&outputs);
}

#[test]
fn orphan_fin_wait_2_timewait_socket_ends_with_tcp_fin_timeout() {
    if !can_run() {
        return;
    }
    let _serial = serial();
    let ns = Netns::new("fw2");
    ns.sysctl("net.ipv4.tcp_fin_timeout", "1");
    let port = 7106;
    let mut cport = 0;
    let mut keep = Vec::new();
    let (reports, outputs) = watch_while(
        &ns,
        |o| o.tracker.filter.ports = vec![port],
        || {
            let (c, s, l) = connect(&ns, port);
            cport = c.local_addr().unwrap().port();
            drop(c); // orphan in FIN_WAIT_2: the server never answers with its FIN
            keep.push((s, l));
        },
        Duration::from_millis(2500),
    );
    let cl = lifeline_of(&reports, cport);
    assert!(!cl.still_open, "{cl:#?}");
    assert_eq!(cl.end, "timewait_expired");
    let fw2 = cl.states.last().unwrap();
    assert_eq!(fw2.state, State::FinWait2);
    assert!(
        fw2.dwell >= Duration::from_millis(900) && fw2.dwell < Duration::from_millis(1600),
        "FIN_WAIT_2 for tcp_fin_timeout = 1 s: {:?}",
        fw2.dwell
    );
    drop(keep);
    no_instance_left(&outputs);
}

/// The whole 60 s of TIME_WAIT, ended by its timer. Long by nature (TCP_TIMEWAIT_LEN is
/// fixed); it runs in parallel with the others.
#[test]
fn time_wait_lasts_sixty_seconds_and_ends_with_its_timer() {
    if !can_run() {
        return;
    }
    let ns = Netns::new("tw60");
    let port = 7107;
    let mut cport = 0;
    let (reports, outputs) = watch_while(
        &ns,
        |o| {
            o.tracker.timewait_poll = Duration::from_millis(500);
            o.tracker.filter.ports = vec![port];
        },
        || {
            let (c, s, _l) = connect(&ns, port);
            cport = c.local_addr().unwrap().port();
            c.shutdown(Shutdown::Write).unwrap();
            std::thread::sleep(Duration::from_millis(100));
            drop(s);
            std::thread::sleep(Duration::from_millis(100));
            drop(c);
        },
        Duration::from_secs(62),
    );
    let cl = lifeline_of(&reports, cport);
    assert!(!cl.still_open);
    assert_eq!(cl.end, "timewait_expired");
    assert_eq!(
        states(&cl),
        vec![
            State::SynSent,
            State::Established,
            State::FinWait1,
            State::FinWait2,
            State::TimeWait
        ]
    );
    let tw = cl.states.last().unwrap().dwell;
    assert!(
        // 60 s (TCP_TIMEWAIT_LEN), fired by a timer wheel that rounds far timers up (never
        // early), seen gone at the next poll.
        tw >= Duration::from_millis(59_500) && tw <= Duration::from_secs(65),
        "TIME_WAIT {tw:?}"
    );
    no_instance_left(&outputs);
}

/// The fallback without tracefs: sock_diag sampled by cookie, labelled with its resolution.
#[test]
fn sampled_mode_sees_time_wait_with_its_resolution() {
    if !can_run() {
        return;
    }
    let _serial = serial();
    let ns = Netns::new("smp");
    let port = 7108;
    let mut cport = 0;
    let res = Duration::from_millis(50);
    let (reports, outputs) = watch_while(
        &ns,
        |o| {
            o.mode = Mode::Sample(res);
            o.tracker.filter.ports = vec![port];
        },
        || {
            let (c, s, _l) = connect(&ns, port);
            cport = c.local_addr().unwrap().port();
            std::thread::sleep(PAUSE);
            c.shutdown(Shutdown::Write).unwrap();
            std::thread::sleep(PAUSE);
            drop(s);
            std::thread::sleep(PAUSE);
            drop(c);
        },
        Duration::from_millis(400),
    );
    assert!(outputs.iter().any(|o| matches!(
        o,
        Output::Started { source: SourceInfo::Sampled { interval, .. }, .. } if *interval == res
    )));
    let client = transitions_of(&reports, cport, true);
    assert!(!client.is_empty());
    assert!(client.iter().all(|t| t.origin == Origin::Sampled(res)));
    let to: Vec<State> = client.iter().map(|t| t.to).collect();
    assert_eq!(to.last(), Some(&State::TimeWait), "{to:?}");
    assert!(to.contains(&State::FinWait2), "{to:?}");
}

#[test]
fn simultaneous_close_goes_through_closing_to_a_confirmed_time_wait() {
    if !can_run() {
        return;
    }
    let _serial = serial();
    let ns = Netns::new("sim");
    let port = 7107;
    const ATTEMPTS: usize = 40;
    let mut kept = Vec::new();
    let (reports, outputs) = watch_while(
        &ns,
        |o| o.tracker.filter.ports = vec![port],
        || {
            let l = ns.run(|| TcpListener::bind(("127.0.0.1", port)).expect("bind"));
            for _ in 0..ATTEMPTS {
                let (c, s) = ns.run(|| {
                    let c = TcpStream::connect(("127.0.0.1", port)).expect("connect");
                    let (s, _) = l.accept().expect("accept");
                    (c, s)
                });
                // Both FINs must leave before either arrives: each side is then in
                // FIN_WAIT_1 when the peer's FIN comes, and tcp_fin() moves it to CLOSING
                // (RFC 9293 §3.6, simultaneous close). On loopback that is a race, so it
                // is tried a number of times, each end shut down from its own thread.
                let go = Arc::new(std::sync::Barrier::new(2));
                let g = go.clone();
                let s = std::thread::spawn(move || {
                    g.wait();
                    s.shutdown(Shutdown::Write).unwrap();
                    s
                });
                go.wait();
                c.shutdown(Shutdown::Write).unwrap();
                let s = s.join().unwrap();
                std::thread::sleep(Duration::from_millis(20));
                kept.push((c, s));
            }
            std::thread::sleep(PAUSE);
            // Both ends are closed by the application: each hands over to a timewait
            // socket (or already did from CLOSING/FIN_WAIT_2).
            kept.clear();
            drop(l);
        },
        Duration::from_millis(800),
    );
    let closing: Vec<&TransitionReport> = reports
        .iter()
        .filter_map(|r| match r {
            Report::Transition(t) if t.from == State::FinWait1 && t.to == State::Closing => Some(t),
            _ => None,
        })
        .collect();
    if closing.is_empty() {
        eprintln!(
            "skipped: no simultaneous close in {ATTEMPTS} attempts (every FIN arrived after \
             its peer's was acknowledged); nothing to check"
        );
        no_instance_left(&outputs);
        return;
    }
    for t in &closing {
        assert_eq!(t.origin, Origin::Tracepoint);
        let same = |x: &TransitionReport| x.local == t.local && x.remote == t.remote;
        // Out of CLOSING: the ACK of its own FIN came; tcp_time_wait() hands the socket
        // over and the tracepoint says CLOSING → CLOSE; the lookup finds the minisocket.
        let out = reports
            .iter()
            .find_map(|r| match r {
                Report::Transition(x) if same(x) && x.from == State::Closing => Some(x),
                _ => None,
            })
            .unwrap_or_else(|| panic!("nothing out of CLOSING for {t:#?}"));
        assert_eq!(out.to, State::TimeWait, "{out:#?}");
        assert_eq!(out.kernel, Some((State::Closing, State::Closed)));
        assert_eq!(out.origin, Origin::TimewaitConfirmed);
        let life = reports
            .iter()
            .find_map(|r| match r {
                Report::Lifeline(l) if l.local == t.local && l.remote == t.remote => Some(l),
                _ => None,
            })
            .expect("a lifeline (still in TIME_WAIT at exit)");
        assert_eq!(life.closed_first, Some(Closer::Simultaneous));
        let seq = states(life);
        let at = seq
            .iter()
            .position(|s| *s == State::FinWait1)
            .expect("FIN_WAIT_1");
        assert_eq!(
            &seq[at..],
            &[State::FinWait1, State::Closing, State::TimeWait],
            "{seq:?}"
        );
    }
    eprintln!(
        "{} of {ATTEMPTS} closes went through CLOSING",
        closing.len()
    );
    no_instance_left(&outputs);
}
