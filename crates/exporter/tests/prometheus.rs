//! End to end: a real Prometheus server (started here on loopback, with a generated
//! config and a temporary data dir) scrapes the exporter while a CLOSE_WAIT leak is
//! staged in a private network namespace; the test asks Prometheus's HTTP API until the
//! leak's series appears with the right process and count, or fails after a deadline.
//!
//! The leak: a listener in the namespace accepts three connections from a process named
//! `leaky-client` and closes them; `leaky-client` never closes its ends, so its three
//! sockets sit in CLOSE_WAIT (RFC 9293 §3.10.7.4: FIN received, no CLOSE from the user).

mod common;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use tcpstate_exporter::{CollectorConfig, DeadScan};
use tcpstate_host::netns::{self, NetnsSelector};

const LEAKS: usize = 3;

use common::Stage as Staged;

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn which(name: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|d| d.join(name))
        .find(|f| f.is_file())
}

/// Percent-encodes a PromQL query for a URL.
fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'_' | b'-' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn query(prom: std::net::SocketAddr, q: &str) -> Option<serde_json::Value> {
    let r = common::get(prom, &format!("/api/v1/query?query={}", urlencode(q))).ok()?;
    if r.status != 200 {
        return None;
    }
    serde_json::from_str(&r.body).ok()
}

fn log_tail(path: &Path) -> String {
    let s = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(15)..].join("\n")
}

#[test]
fn prometheus_sees_a_close_wait_leak_in_a_private_namespace() {
    if !common::is_root() {
        eprintln!("skipped: needs root (ip netns add, setns)");
        return;
    }
    let Some(prometheus) = common::tool("prometheus") else {
        return;
    };
    let (Some(bash), Some(sleep)) = (which("bash"), which("sleep")) else {
        panic!("bash and sleep are needed to stage the leak");
    };
    let pid = std::process::id();
    let mut staged = Staged {
        netns: format!("tcpstate-exp-{pid}"),
        dir: std::env::temp_dir().join(format!("tcpstate-exporter-prom-{pid}")),
        children: Vec::new(),
    };
    let _ = std::fs::remove_dir_all(&staged.dir);
    std::fs::create_dir_all(staged.dir.join("data")).unwrap();
    let ok = |c: &mut Command| c.status().map(|s| s.success()).unwrap_or(false);
    assert!(
        ok(Command::new("ip").args(["netns", "add", &staged.netns])),
        "ip netns add {}",
        staged.netns
    );
    assert!(ok(Command::new("ip").args([
        "-n",
        &staged.netns,
        "link",
        "set",
        "lo",
        "up"
    ])));

    // A listener inside the namespace (the socket keeps the namespace it was made in).
    let target = netns::resolve(&NetnsSelector::Named(staged.netns.clone()))
        .unwrap()
        .remove(0);
    let listener = netns::run_in(&target, || TcpListener::bind("127.0.0.1:0"))
        .unwrap()
        .unwrap();
    let port = listener.local_addr().unwrap().port();

    // The leaking process: `sleep` copied under a telling name (so /proc/PID/comm says
    // it), holding three connections bash opened for it.
    let leaky = staged.dir.join("leaky-client");
    std::fs::copy(&sleep, &leaky).unwrap();
    let script = format!(
        "exec 3<>/dev/tcp/127.0.0.1/{port} 4<>/dev/tcp/127.0.0.1/{port} 5<>/dev/tcp/127.0.0.1/{port}; exec {} 600",
        leaky.display()
    );
    let child = Command::new("ip")
        .args(["netns", "exec", &staged.netns])
        .arg(&bash)
        .args(["-c", &script])
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    staged.children.push(child);
    for _ in 0..LEAKS {
        let (conn, _) = listener.accept().unwrap();
        drop(conn); // our FIN: the client side enters CLOSE_WAIT and stays there
    }

    // The exporter, looking into that namespace.
    let (exporter, _) = common::start(
        CollectorConfig {
            netns: NetnsSelector::Named(staged.netns.clone()),
            dead_scan: DeadScan::Never,
            ..Default::default()
        },
        |_| {},
    );

    // Prometheus, scraping it every second.
    let prom_port = free_port();
    let config = staged.dir.join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\nscrape_configs:\n  - job_name: tcpstate\n    static_configs:\n      - targets: ['{exporter}']\n"
        ),
    )
    .unwrap();
    let log_path = staged.dir.join("prometheus.log");
    let log = std::fs::File::create(&log_path).unwrap();
    let child = Command::new(&prometheus)
        .arg(format!("--config.file={}", config.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            staged.dir.join("data").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{prom_port}"))
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap();
    staged.children.push(child);
    let prom: std::net::SocketAddr = format!("127.0.0.1:{prom_port}").parse().unwrap();

    let q = "tcpstate_close_wait_sockets{process=\"leaky-client\"}";
    let deadline = Instant::now() + Duration::from_secs(90);
    let mut last = None;
    loop {
        if let Some(v) = query(prom, q) {
            let result = &v["data"]["result"];
            if let Some(series) = result.as_array().and_then(|a| a.first()) {
                let value = series["value"][1].as_str().unwrap_or("");
                if value == LEAKS.to_string() {
                    assert_eq!(series["metric"]["netns"], staged.netns.as_str());
                    assert_eq!(series["metric"]["job"], "tcpstate");
                    break;
                }
            }
            last = Some(v);
        }
        if let Some(Ok(Some(status))) = staged.children.last_mut().map(|c| c.try_wait()) {
            panic!("prometheus exited ({status}):\n{}", log_tail(&log_path));
        }
        assert!(
            Instant::now() < deadline,
            "no {q} = {LEAKS} within 90 s; last answer: {last:?}\nprometheus log:\n{}",
            log_tail(&log_path)
        );
        std::thread::sleep(Duration::from_millis(500));
    }

    // The age estimate of the leak and the scrape health made it too.
    let age = query(
        prom,
        "tcpstate_close_wait_oldest_age_seconds{process=\"leaky-client\"}",
    )
    .unwrap();
    let age: f64 = age["data"]["result"][0]["value"][1]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((0.0..600.0).contains(&age), "age {age}");
    let up = query(prom, "up{job=\"tcpstate\"}").unwrap();
    assert_eq!(up["data"]["result"][0]["value"][1], "1");
}
