//! Captures of real kernel scenarios: scripted clients and servers with real sockets in a
//! private network namespace, captured by tcpdump on its loopback, then tcpstate's
//! reconstruction checked against what the script did (who closed first, who reset and in
//! which state, how long the server sat in CLOSE_WAIT, refused connections).
//!
//! The test re-runs its own binary inside the namespace (`ip netns exec NS <this test
//! binary> --exact scenario_runner`, with `TCPSTATE_CAPTURE_SCENARIOS` set): the sockets
//! are made there by a separate process, so the test needs neither `setns` nor `unsafe`.
//! Needs root, `ip` and `tcpdump`; skipped with a printed reason without them, except in CI
//! (`CI=true`), where a missing tool fails the test.
#![cfg(target_os = "linux")]

use socket2::SockRef;
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};
use tcpstate_capture::{analyze_file, ConnectionReport, Options};
use tcpstate_fsm::{Side, State};

const RUNNER_ENV: &str = "TCPSTATE_CAPTURE_SCENARIOS";

// One server port per scenario, so that each connection in the capture names its scenario.
const CLIENT_CLOSES: u16 = 7001;
const SERVER_CLOSES: u16 = 7002;
const CLIENT_RESETS: u16 = 7003;
const CLOSE_WAIT_HELD: u16 = 7004;
const SERVER_RESETS: u16 = 7005;
const REFUSED: u16 = 7006;
/// How long the CLOSE_WAIT scenario's server waits after reading EOF before it closes.
const HOLD: Duration = Duration::from_millis(1500);

fn is_root() -> bool {
    // The effective uid is the second field of /proc/self/status's Uid line.
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(2).map(|u| u == "0"))
        })
        .unwrap_or(false)
}

fn have(tool: &str, arg: &str) -> bool {
    Command::new(tool)
        .arg(arg)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true")
}

/// The namespace, tcpdump and the capture file, removed on drop (also on failure).
struct Lab {
    netns: String,
    dir: PathBuf,
    tcpdump: Option<Child>,
}

impl Lab {
    fn pcap(&self) -> PathBuf {
        self.dir.join("scenarios.pcap")
    }

    fn ip(&self, args: &[&str]) {
        let out = Command::new("ip").args(args).output().expect("run ip");
        assert!(
            out.status.success(),
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Stop tcpdump the way a user does (SIGTERM): it flushes and closes the file.
    fn stop_tcpdump(&mut self) {
        if let Some(mut child) = self.tcpdump.take() {
            let _ = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status();
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                match child.try_wait() {
                    Ok(Some(_)) => break,
                    Ok(None) if Instant::now() < deadline => {
                        thread::sleep(Duration::from_millis(20))
                    }
                    _ => {
                        let _ = child.kill();
                        let _ = child.wait();
                        panic!("tcpdump did not stop on SIGTERM within 10 s");
                    }
                }
            }
        }
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        if let Some(mut child) = self.tcpdump.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = Command::new("ip")
            .args(["netns", "del", &self.netns])
            .status();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[test]
fn kernel_scenarios_reconstructed_from_a_tcpdump_capture() {
    if std::env::var_os(RUNNER_ENV).is_some() {
        return; // this process is the scenario runner, not the test
    }
    let missing: Vec<&str> = [("ip", "-V"), ("tcpdump", "--version")]
        .into_iter()
        .filter(|(tool, arg)| !have(tool, arg))
        .map(|(tool, _)| tool)
        .collect();
    if !is_root() {
        eprintln!("skipping kernel capture scenarios: not root (needs a network namespace)");
        return;
    }
    if !missing.is_empty() {
        assert!(
            !in_ci(),
            "CI: {} missing (.ci/run installs iproute2 and tcpdump)",
            missing.join(", ")
        );
        eprintln!(
            "skipping kernel capture scenarios: {} not installed",
            missing.join(", ")
        );
        return;
    }

    let mut lab = Lab {
        netns: format!("tcpstate-capture-{}", std::process::id()),
        dir: std::env::temp_dir().join(format!("tcpstate-capture-kernel-{}", std::process::id())),
        tcpdump: None,
    };
    std::fs::create_dir_all(&lab.dir).unwrap();
    lab.ip(&["netns", "add", &lab.netns]);
    lab.ip(&["netns", "exec", &lab.netns, "ip", "link", "set", "lo", "up"]);

    // --immediate-mode: hand each packet to tcpdump at once (otherwise the kernel's ring
    // buffer delivers blocks after a timeout, and SIGTERM loses the last partial block);
    // -U: write each packet at once; -Z root: keep the right to write the file. Wait for
    // "listening on" so that no packet of the scenarios is sent before capture starts.
    let pcap = lab.pcap();
    let mut child = Command::new("ip")
        .args([
            "netns",
            "exec",
            &lab.netns,
            "tcpdump",
            "-i",
            "lo",
            "--immediate-mode",
        ])
        .args(["-U", "-Z", "root", "-w"])
        .arg(&pcap)
        .arg("tcp")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start tcpdump");
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    lab.tcpdump = Some(child);
    let mut line = String::new();
    loop {
        line.clear();
        let n = stderr.read_line(&mut line).unwrap();
        assert!(n > 0, "tcpdump exited before listening");
        if line.contains("listening on") {
            break;
        }
    }
    // Keep draining tcpdump's stderr so that it never blocks on a full pipe.
    let drain = thread::spawn(move || {
        let mut rest = String::new();
        let _ = stderr.read_to_string(&mut rest);
        rest
    });

    // The scenarios, in the namespace, by this same test binary.
    let exe = std::env::current_exe().unwrap();
    let out = Command::new("ip")
        .args(["netns", "exec", &lab.netns])
        .arg(&exe)
        .args([
            "--exact",
            "scenario_runner",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(RUNNER_ENV, "1")
        .output()
        .expect("run the scenarios in the namespace");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "scenario runner failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // What the script measured: `SCENARIO key=value ...` (libtest may print its own
    // "test scenario_runner ... " before it on the same line).
    let facts: BTreeMap<String, String> = stdout
        .lines()
        .filter_map(|l| l.find("SCENARIO ").map(|i| &l[i + "SCENARIO ".len()..]))
        .flat_map(|l| l.split_whitespace())
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    // The last packets (the final ACKs) are on the wire by now; let tcpdump write them.
    thread::sleep(Duration::from_millis(300));
    lab.stop_tcpdump();
    let tcpdump_log = drain.join().unwrap();

    let mut conns: Vec<ConnectionReport> = Vec::new();
    let summary = analyze_file(&pcap, Options::default(), &mut |c| conns.push(c))
        .unwrap_or_else(|e| panic!("{}: {e}", pcap.display()));
    assert!(summary.error.is_none(), "{:?}", summary.error);
    let by_port = |port: u16| -> &ConnectionReport {
        let mut found = conns.iter().filter(|c| c.resp.port() == port);
        let c = found.next().unwrap_or_else(|| {
            panic!("no connection to port {port} in the capture; tcpdump said: {tcpdump_log}")
        });
        assert!(found.next().is_none(), "two connections to port {port}");
        c
    };
    let story = |c: &ConnectionReport| {
        format!(
            "{} -> {}: final {:?}, closed first {:?}, reset {:?}, CLOSE_WAIT {:?} open {:?}, \
             TIME_WAIT {:?}, {} {}",
            c.orig,
            c.resp,
            c.rfc.final_state,
            c.rfc.closed_first,
            c.rfc.reset,
            c.rfc.close_wait,
            c.rfc.close_wait_open,
            c.rfc.time_wait,
            c.zeek.conn_state,
            c.zeek.history
        )
    };

    // The client closed first: it holds TIME_WAIT, the server passed through CLOSE_WAIT.
    let c = by_port(CLIENT_CLOSES);
    assert_eq!(c.rfc.closed_first, Some(Side::A), "{}", story(c));
    assert_eq!(c.rfc.reset, None, "{}", story(c));
    assert_eq!(
        c.rfc.final_state,
        [Some(State::TimeWait), Some(State::Closed)],
        "{}",
        story(c)
    );
    assert_eq!(c.rfc.time_wait, [true, false], "{}", story(c));
    assert!(
        c.rfc.close_wait[1].is_some() && !c.rfc.close_wait_open[1],
        "{}",
        story(c)
    );
    assert_eq!(c.zeek.conn_state, "SF", "{}", story(c));

    // The server closed first: the roles swap.
    let c = by_port(SERVER_CLOSES);
    assert_eq!(c.rfc.closed_first, Some(Side::B), "{}", story(c));
    assert_eq!(
        c.rfc.final_state,
        [Some(State::Closed), Some(State::TimeWait)],
        "{}",
        story(c)
    );
    assert_eq!(c.rfc.time_wait, [false, true], "{}", story(c));
    assert!(c.rfc.close_wait[0].is_some(), "{}", story(c));
    assert_eq!(c.zeek.conn_state, "SF", "{}", story(c));

    // SO_LINGER {1,0} on the client: a RST from ESTABLISHED instead of a FIN.
    let c = by_port(CLIENT_RESETS);
    assert_eq!(
        c.rfc.reset,
        Some((Side::A, Some(State::Established))),
        "{}",
        story(c)
    );
    assert_eq!(c.rfc.closed_first, None, "{}", story(c));
    assert_eq!(c.rfc.final_state[0], Some(State::Closed), "{}", story(c));
    assert_eq!(c.zeek.conn_state, "RSTO", "{}", story(c));

    // SO_LINGER {1,0} on the server.
    let c = by_port(SERVER_RESETS);
    assert_eq!(
        c.rfc.reset,
        Some((Side::B, Some(State::Established))),
        "{}",
        story(c)
    );
    assert_eq!(c.rfc.final_state[1], Some(State::Closed), "{}", story(c));
    assert_eq!(c.zeek.conn_state, "RSTR", "{}", story(c));

    // No listener: the kernel answers the SYN with a RST; the refusing end has no
    // handshake, so its state is not reconstructed (not guessed).
    let c = by_port(REFUSED);
    assert_eq!(c.rfc.reset, Some((Side::B, None)), "{}", story(c));
    assert_eq!(c.rfc.final_state[1], None, "{}", story(c));
    assert_eq!(c.zeek.conn_state, "REJ", "{}", story(c));

    // The server held CLOSE_WAIT for HOLD after reading EOF: the capture's dwell (the
    // client's FIN passing the capture point -> the server's FIN passing it) must agree
    // with what the script measured (EOF read -> close() returned), within scheduling
    // noise on a busy machine.
    let c = by_port(CLOSE_WAIT_HELD);
    assert_eq!(c.rfc.closed_first, Some(Side::A), "{}", story(c));
    assert!(!c.rfc.close_wait_open[1], "{}", story(c));
    let dwell = c.rfc.close_wait[1].expect("server CLOSE_WAIT dwell");
    let measured: f64 = facts
        .get("close_wait_s")
        .unwrap_or_else(|| panic!("the runner printed no close_wait_s:\n{stdout}"))
        .parse()
        .unwrap();
    let got = dwell.as_secs_f64();
    eprintln!("CLOSE_WAIT held: capture {got:.6} s, script {measured:.6} s, hold {HOLD:?}");
    assert!(
        got >= HOLD.as_secs_f64() && got < HOLD.as_secs_f64() + 0.5,
        "CLOSE_WAIT dwell {got:.6} s, the script held {HOLD:?}: {}",
        story(c)
    );
    assert!(
        (got - measured).abs() < 0.25,
        "CLOSE_WAIT dwell {got:.6} s in the capture, {measured:.6} s measured by the script"
    );
    assert_eq!(c.rfc.time_wait, [true, false], "{}", story(c));
    assert_eq!(conns.len(), 6, "one connection per scenario");
}

/// Not a test by itself: the scenario script, run by the test above inside its namespace
/// (it does nothing without `TCPSTATE_CAPTURE_SCENARIOS`).
#[test]
fn scenario_runner() {
    if std::env::var_os(RUNNER_ENV).is_none() {
        return;
    }
    run_scenarios();
}

fn local(port: u16) -> String {
    format!("127.0.0.1:{port}")
}

/// Run `server` on the next connection to `port` in a thread, `client` here; returns what
/// the server returned.
fn scenario<T: Send + 'static>(
    port: u16,
    server: impl FnOnce(TcpStream) -> T + Send + 'static,
    client: impl FnOnce(TcpStream),
) -> T {
    let listener = TcpListener::bind(local(port)).unwrap();
    let handle = thread::spawn(move || {
        let (s, _) = listener.accept().unwrap();
        server(s)
    });
    let s = TcpStream::connect(local(port)).unwrap();
    client(s);
    handle.join().unwrap()
}

fn read_exact_n(s: &mut TcpStream, n: usize) {
    let mut buf = vec![0u8; n];
    s.read_exact(&mut buf).unwrap();
}

/// Read until EOF; true when it ended with EOF (false: reset).
fn read_to_eof(s: &mut TcpStream) -> bool {
    let mut buf = [0u8; 64];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => {}
            Err(e) if e.kind() == ErrorKind::ConnectionReset => return false,
            Err(e) => panic!("read: {e}"),
        }
    }
}

fn run_scenarios() {
    // Client closes first; the server closes when it reads EOF.
    scenario(
        CLIENT_CLOSES,
        |mut s| {
            read_exact_n(&mut s, 5);
            s.write_all(b"world").unwrap();
            assert!(read_to_eof(&mut s));
        },
        |mut s| {
            s.write_all(b"hello").unwrap();
            read_exact_n(&mut s, 5);
        },
    );
    // Server closes first; the client closes when it reads EOF.
    scenario(
        SERVER_CLOSES,
        |mut s| {
            read_exact_n(&mut s, 5);
            s.write_all(b"world").unwrap();
        },
        |mut s| {
            s.write_all(b"hello").unwrap();
            assert!(read_to_eof(&mut s));
        },
    );
    // The client aborts with SO_LINGER {1,0}.
    scenario(
        CLIENT_RESETS,
        |mut s| {
            read_exact_n(&mut s, 5);
            s.write_all(b"world").unwrap();
            assert!(!read_to_eof(&mut s), "expected a reset");
        },
        |mut s| {
            s.write_all(b"hello").unwrap();
            read_exact_n(&mut s, 5);
            SockRef::from(&s).set_linger(Some(Duration::ZERO)).unwrap();
        },
    );
    // The server aborts with SO_LINGER {1,0}.
    scenario(
        SERVER_RESETS,
        |mut s| {
            read_exact_n(&mut s, 5);
            SockRef::from(&s).set_linger(Some(Duration::ZERO)).unwrap();
        },
        |mut s| {
            s.write_all(b"hello").unwrap();
            assert!(!read_to_eof(&mut s), "expected a reset");
        },
    );
    // The client closes first; the server sits in CLOSE_WAIT for HOLD before closing.
    let held = scenario(
        CLOSE_WAIT_HELD,
        |mut s| {
            read_exact_n(&mut s, 5);
            assert!(read_to_eof(&mut s));
            let eof = Instant::now();
            thread::sleep(HOLD);
            drop(s);
            eof.elapsed()
        },
        |mut s| {
            s.write_all(b"hello").unwrap();
        },
    );
    // Nobody listens: connect is refused.
    let err = TcpStream::connect(local(REFUSED)).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ConnectionRefused);
    println!("SCENARIO close_wait_s={:.6}", held.as_secs_f64());
}
