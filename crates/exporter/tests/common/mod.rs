//! Helpers shared by the exporter's integration tests: a raw HTTP/1.1 client (so bad
//! requests can be sent as they are), a server started in-process, tool lookup.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tcpstate_exporter::{CollectorConfig, ServerConfig, TcpCollector};

/// A parsed response.
pub struct Reply {
    pub status: u16,
    pub head: String,
    pub body: String,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<String> {
        self.head.lines().skip(1).find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim()
                .eq_ignore_ascii_case(name)
                .then(|| v.trim().to_string())
        })
    }
}

/// Sends `raw` as is and reads until the server closes (the request should carry
/// `Connection: close`).
pub fn raw(addr: SocketAddr, raw: &[u8]) -> std::io::Result<Reply> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    s.set_read_timeout(Some(Duration::from_secs(30)))?;
    s.write_all(raw)?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf)?;
    let text = String::from_utf8_lossy(&buf).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    Ok(Reply {
        status,
        head: head.to_string(),
        body: body.to_string(),
    })
}

/// `GET path` with `Connection: close`.
pub fn get(addr: SocketAddr, path: &str) -> std::io::Result<Reply> {
    raw(
        addr,
        format!("GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n").as_bytes(),
    )
}

/// Starts a server in a background thread; returns its address and the collector.
pub fn start(
    config: CollectorConfig,
    tune: impl FnOnce(&mut ServerConfig),
) -> (SocketAddr, Arc<TcpCollector>) {
    let mut sc = ServerConfig::new("127.0.0.1:0".parse().unwrap());
    tune(&mut sc);
    let bound = tcpstate_exporter::bind(sc).expect("bind 127.0.0.1:0");
    let addr = bound.local_addr();
    let collector = Arc::new(TcpCollector::new(config));
    let c = Arc::clone(&collector);
    std::thread::spawn(move || {
        tcpstate_exporter::serve(bound, c, std::future::pending::<()>()).expect("serve");
    });
    (addr, collector)
}

/// A tool on PATH. In CI (CI=true) a missing tool fails the test; locally it skips.
pub fn tool(name: &str) -> Option<PathBuf> {
    let found = std::env::var_os("PATH").and_then(|p| {
        std::env::split_paths(&p)
            .map(|d| d.join(name))
            .find(|f| f.is_file())
    });
    if found.is_none() {
        if std::env::var("CI").is_ok_and(|v| v == "true") {
            panic!("{name} is required in CI (Debian package: see .ci/run)");
        }
        eprintln!("skipped: {name} not found on PATH (apt-get install prometheus)");
    }
    found
}

pub fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .map(|l| l.split_whitespace().nth(2) == Some("0"))
        })
        .unwrap_or(false)
}

/// Runs `promtool check metrics` on `text`; returns its complaints when it fails.
pub fn promtool_check_metrics(promtool: &std::path::Path, text: &str) -> Result<(), String> {
    use std::process::{Command, Stdio};
    let mut child = Command::new(promtool)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| e.to_string())?;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .map_err(|e| e.to_string())?;
    let out = child.wait_with_output().map_err(|e| e.to_string())?;
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if out.status.success() && said.trim().is_empty() {
        Ok(())
    } else {
        Err(said)
    }
}

/// A private network namespace, the processes started in it and their files: everything
/// a kernel test made, removed on drop (also when an assertion fails).
pub struct Stage {
    pub netns: String,
    pub dir: PathBuf,
    pub children: Vec<std::process::Child>,
}

impl Drop for Stage {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = std::process::Command::new("ip")
            .args(["netns", "del", &self.netns])
            .status();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
