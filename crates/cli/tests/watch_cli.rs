//! `tcpstate watch` end to end: the binary in a private namespace with `--json`, and the
//! tracefs instance of a SIGKILLed watch removed by the next start.
//! Skipped with a printed reason when not root or without tracefs (a failure in CI).
#![cfg(target_os = "linux")]

use std::io::{BufRead, BufReader};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use tcpstate_host::netns::{resolve, run_in, NetnsSelector};

struct Netns(String);

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

fn setup(tag: &str) -> Option<Netns> {
    let root = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .map(|l| l.split_whitespace().nth(1) == Some("0"))
        })
        .unwrap_or(false);
    let ci = std::env::var_os("CI").is_some();
    if !root {
        eprintln!("SKIP {tag}: needs root (tracefs, network namespaces)");
        return None;
    }
    let tracefs = Path::new("/sys/kernel/tracing/instances").is_dir()
        || Command::new("mount")
            .args(["-t", "tracefs", "nodev", "/sys/kernel/tracing"])
            .status()
            .is_ok_and(|s| s.success());
    if !tracefs {
        assert!(!ci, "CI: tracefs cannot be mounted");
        eprintln!("SKIP {tag}: tracefs not mounted and cannot be mounted");
        return None;
    }
    let name = format!("tcpstate-wcli-{tag}-{}", std::process::id());
    let ok = Command::new("ip")
        .args(["netns", "add", &name])
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        assert!(!ci, "CI: cannot create a netns");
        eprintln!("SKIP {tag}: `ip netns add` failed");
        return None;
    }
    let ns = Netns(name);
    Command::new("ip")
        .args(["-n", &ns.0, "link", "set", "lo", "up"])
        .status()
        .expect("ip link");
    Some(ns)
}

fn in_ns<T: Send>(ns: &Netns, f: impl FnOnce() -> T + Send) -> T {
    let t = resolve(&NetnsSelector::Named(ns.0.clone())).expect("resolve");
    run_in(&t[0], f).expect("run_in")
}

#[test]
fn json_lines_show_time_wait_that_the_tracepoint_never_says() {
    let Some(ns) = setup("json") else { return };
    let mut child = Command::new(assert_cmd::cargo::cargo_bin("tcpstate"))
        .args([
            "watch",
            "--json",
            "--summary",
            "--duration",
            "6s",
            "--netns",
            &ns.0,
        ])
        .args(["--port", "7201", "--require-trace"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let start: serde_json::Value = serde_json::from_str(&lines.next().unwrap().unwrap()).unwrap();
    assert_eq!(start["type"], "start");
    assert_eq!(start["source"], "tracepoint");
    let (c, s, l) = in_ns(&ns, || {
        let l = TcpListener::bind("127.0.0.1:7201").unwrap();
        let c = TcpStream::connect("127.0.0.1:7201").unwrap();
        let (s, _) = l.accept().unwrap();
        (c, s, l)
    });
    let cport = c.local_addr().unwrap().port();
    // Long enough for the owner scan (it walks /proc/*/fd: slow on a busy host) to find
    // the sockets before they are closed.
    std::thread::sleep(Duration::from_millis(2500));
    drop(c);
    std::thread::sleep(Duration::from_millis(400));
    drop(s);
    drop(l);
    let objs: Vec<serde_json::Value> = lines
        .map(|l| serde_json::from_str(&l.unwrap()).expect("one JSON object per line"))
        .collect();
    assert!(child.wait().unwrap().success());
    for o in &objs {
        assert_eq!(o["version"], 1);
    }
    let client: Vec<&serde_json::Value> = objs
        .iter()
        .filter(|o| o["type"] == "transition" && o["local"] == format!("127.0.0.1:{cport}"))
        .collect();
    let to: Vec<&str> = client.iter().map(|o| o["to"].as_str().unwrap()).collect();
    assert_eq!(
        to,
        [
            "SYN_SENT",
            "ESTABLISHED",
            "FIN_WAIT_1",
            "FIN_WAIT_2",
            "FIN_WAIT_2",
            "TIME_WAIT"
        ],
        "{client:#?}"
    );
    assert_eq!(
        client[4]["kernel_to"], "CLOSED",
        "the tracepoint's own word"
    );
    assert_eq!(client[4]["origin"], "timewait_confirmed");
    assert_eq!(
        client[1]["pid"],
        std::process::id(),
        "owner by socket lookup"
    );
    let server_end = objs
        .iter()
        .find(|o| {
            o["type"] == "lifeline" && o["local"] == "127.0.0.1:7201" && o["remote"] != "0.0.0.0:0"
        })
        .expect("server lifeline");
    assert_eq!(server_end["closed_first"], "peer");
    assert_eq!(server_end["end"], "fin");
    let summary = objs
        .iter()
        .find(|o| o["type"] == "summary")
        .expect("summary");
    assert_eq!(
        summary["timewait_confirmed"], 1,
        "one handover: the client's"
    );
    assert_eq!(summary["lost_events"], 0);
}

#[test]
fn killed_watch_instance_is_removed_by_the_next_start() {
    let Some(ns) = setup("kill") else { return };
    let bin = assert_cmd::cargo::cargo_bin("tcpstate");
    let mut victim = Command::new(&bin)
        .args(["watch", "--netns", &ns.0, "--require-trace"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    let dir = format!("/sys/kernel/tracing/instances/tcpstate-{}", victim.id());
    let t0 = Instant::now();
    while !Path::new(&dir).exists() && t0.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(Path::new(&dir).exists(), "{dir} was not created");
    victim.kill().unwrap(); // SIGKILL: no chance to clean up
    victim.wait().unwrap();
    assert!(Path::new(&dir).exists(), "SIGKILL leaves the instance");
    let out = Command::new(&bin)
        .args([
            "watch",
            "--netns",
            &ns.0,
            "--require-trace",
            "--duration",
            "200ms",
        ])
        .output()
        .expect("second watch");
    assert!(out.status.success(), "{out:?}");
    assert!(!Path::new(&dir).exists(), "stale {dir} not removed");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("removed stale instances"), "{stderr}");

    // SIGTERM: the instance goes with the process.
    let mut term = Command::new(&bin)
        .args(["watch", "--netns", &ns.0, "--require-trace"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    let dir = format!("/sys/kernel/tracing/instances/tcpstate-{}", term.id());
    let t0 = Instant::now();
    while !Path::new(&dir).exists() && t0.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(20));
    }
    Command::new("kill")
        .args(["-TERM", &term.id().to_string()])
        .status()
        .unwrap();
    assert!(term.wait().unwrap().success(), "SIGTERM is a normal stop");
    assert!(!Path::new(&dir).exists(), "{dir} left after SIGTERM");
}

#[test]
fn missing_namespace_is_a_clear_error() {
    let out = Command::new(assert_cmd::cargo::cargo_bin("tcpstate"))
        .args([
            "watch",
            "--netns",
            "no-such-netns-tcpstate",
            "--duration",
            "1s",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no-such-netns-tcpstate"), "{err}");
}
