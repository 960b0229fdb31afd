//! The collector across collections, against real sockets in a private network namespace:
//! CLOSE_WAIT holders come from the owner cache after the first collection (one readlink
//! each, no process read) and never outlive their sockets; dead sockets are published the
//! same whether searched or confirmed, the search is skipped exactly when the kernel's
//! counts allow it, and a dead socket that appears later is never hidden by the skip.
//!
//! Dead sockets are staged the way applications make them: a process connects, sends a
//! byte, and the peer closes without reading it, which makes the kernel answer with RST
//! (`tcp_close()` with unread data, RFC 2525 §2.17); the process keeps its fd of the
//! connection that no longer exists.

mod common;

use std::net::{TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tcpstate_exporter::{CollectorConfig, DeadOutcome, DeadScan, TcpCollector};
use tcpstate_host::netns::{self, NetnsSelector};

use common::Stage;

impl Stage {
    fn new(tag: &str) -> Option<Stage> {
        if !common::is_root() {
            eprintln!("skipped: needs root (ip netns add, setns, other processes' fds)");
            return None;
        }
        let pid = std::process::id();
        let stage = Stage {
            netns: format!("tcpstate-col-{tag}-{pid}"),
            dir: std::env::temp_dir().join(format!("tcpstate-collector-{tag}-{pid}")),
            children: Vec::new(),
        };
        let _ = std::fs::remove_dir_all(&stage.dir);
        std::fs::create_dir_all(&stage.dir).unwrap();
        let ok = |args: &[&str]| {
            Command::new("ip")
                .args(args)
                .status()
                .map(|s| s.success())
                .unwrap_or(false)
        };
        assert!(ok(&["netns", "add", &stage.netns]), "ip netns add");
        assert!(ok(&["-n", &stage.netns, "link", "set", "lo", "up"]));
        Some(stage)
    }

    /// A listener inside the namespace, held by the test.
    fn listener(&self) -> TcpListener {
        let t = netns::resolve(&NetnsSelector::Named(self.netns.clone()))
            .unwrap()
            .remove(0);
        netns::run_in(&t, || TcpListener::bind("127.0.0.1:0"))
            .unwrap()
            .unwrap()
    }

    /// A process named `name` in the namespace holding `n` connections to `port`, each
    /// after sending one byte when `send` (so that closing the accepted end without reading
    /// resets it).
    fn holder(&mut self, name: &str, port: u16, n: usize, send: bool) {
        let sleep = std::env::split_paths(&std::env::var_os("PATH").unwrap())
            .map(|d| d.join("sleep"))
            .find(|f| f.is_file())
            .expect("sleep on PATH");
        let exe = self.dir.join(name);
        std::fs::copy(&sleep, &exe).unwrap();
        let mut script = String::new();
        for i in 0..n {
            let fd = 3 + i;
            script.push_str(&format!("exec {fd}<>/dev/tcp/127.0.0.1/{port}; "));
            if send {
                script.push_str(&format!("echo x >&{fd}; "));
            }
        }
        script.push_str(&format!("exec {} 600", exe.display()));
        let child = Command::new("ip")
            .args(["netns", "exec", &self.netns, "bash", "-c", &script])
            .stdin(Stdio::null())
            .spawn()
            .unwrap();
        self.children.push(child);
    }

    fn collector(&self, dead_scan: DeadScan) -> Arc<TcpCollector> {
        Arc::new(TcpCollector::new(CollectorConfig {
            netns: NetnsSelector::Named(self.netns.clone()),
            dead_scan,
            ..Default::default()
        }))
    }
}

/// Accepts `n` connections; with `reset`, waits for each one's byte and closes it unread
/// (RST), else returns them (to be closed with FIN).
fn accept(l: &TcpListener, n: usize, reset: bool) -> Vec<TcpStream> {
    let mut out = Vec::new();
    for _ in 0..n {
        let (c, _) = l.accept().unwrap();
        if reset {
            c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            let mut b = [0u8; 1];
            assert_eq!(c.peek(&mut b).unwrap(), 1, "the holder's byte");
            drop(c); // unread data: RST
        } else {
            out.push(c);
        }
    }
    out
}

/// The value of the sample `series` (name and labels exactly as printed).
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|v| v.parse().ok())
}

fn scrape(c: &Arc<TcpCollector>) -> String {
    let text = tcpstate_exporter::render_once(Arc::clone(c)).unwrap();
    assert_eq!(c.last_error(), None, "{text}");
    text
}

/// Collects until `f(text)` holds (the kernel moves sockets asynchronously), or panics.
fn scrape_until(c: &Arc<TcpCollector>, what: &str, f: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let text = scrape(c);
        if f(&text) {
            return text;
        }
        assert!(Instant::now() < deadline, "never saw {what}:\n{text}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn close_wait_holders_come_from_the_cache_and_go_with_their_sockets() {
    let Some(mut stage) = Stage::new("cw") else {
        return;
    };
    let listener = stage.listener();
    let port = listener.local_addr().unwrap().port();
    stage.holder("leaky-client", port, 3, false);
    // The peer closes: each of leaky-client's three sockets enters CLOSE_WAIT.
    drop(accept(&listener, 3, false));
    let series = format!(
        "tcpstate_close_wait_sockets{{netns=\"{}\",process=\"leaky-client\"}}",
        stage.netns
    );
    let c = stage.collector(DeadScan::Never);
    // The first sight may catch bash before its exec: wait for the final name.
    scrape_until(&c, "three CLOSE_WAIT of leaky-client", |t| {
        sample(t, &series) == Some(3.0)
    });
    let first = c.last_collection();
    assert!(first.owner_fds_read >= 3, "{first:?}");

    let text = scrape(&c);
    assert_eq!(sample(&text, &series), Some(3.0), "{text}");
    let second = c.last_collection();
    // Every holder confirmed from the cache: one readlink each, no fd directory read.
    assert_eq!(
        (second.owner_fds_read, second.owner_processes_scanned),
        (3, 0),
        "{second:?}"
    );
    assert_eq!(second.dead, None);

    // The holder exits: its sockets are closed (LAST_ACK, then gone), and the cache must
    // not keep naming it.
    let mut child = stage.children.pop().unwrap();
    child.kill().unwrap();
    child.wait().unwrap();
    let text = scrape_until(&c, "no CLOSE_WAIT left", |t| {
        sample(
            t,
            &format!(
                "tcpstate_sockets{{netns=\"{}\",state=\"CLOSE_WAIT\"}}",
                stage.netns
            ),
        ) == Some(0.0)
    });
    assert!(!text.contains("leaky-client"), "{text}");
}

#[test]
fn dead_sockets_are_confirmed_or_searched_and_never_hidden() {
    let Some(mut stage) = Stage::new("dead") else {
        return;
    };
    let listener = stage.listener();
    let port = listener.local_addr().unwrap().port();
    let c = stage.collector(DeadScan::Auto);
    let dead = |name: &str| format!("tcpstate_dead_sockets{{process=\"{name}\"}}");
    // Whatever the gate decides, it must decide by its rule.
    let check_rule = |c: &TcpCollector| {
        let last = c.last_collection();
        let expected = match last.unhashed {
            Some(u) if u <= last.confirmed_dead as u64 => DeadOutcome::RuledOut,
            Some(_) => DeadOutcome::Searched,
            None => DeadOutcome::SearchedUncounted,
        };
        assert_eq!(last.dead, Some(expected), "{last:?}");
        last
    };

    stage.holder("dead-holder", port, 2, true);
    accept(&listener, 2, true);
    let text = scrape_until(&c, "two dead sockets of dead-holder", |t| {
        sample(t, &dead("dead-holder")) == Some(2.0)
    });
    assert_eq!(
        sample(&text, "tcpstate_dead_socket_candidates_unverified"),
        Some(0.0)
    );
    check_rule(&c);

    // Nothing changes: the same two, searched or confirmed. On a host where nothing else
    // holds an unhashed TCP socket, the counts rule the search out.
    let mut outcomes = Vec::new();
    for _ in 0..5 {
        let text = scrape(&c);
        assert_eq!(sample(&text, &dead("dead-holder")), Some(2.0), "{text}");
        let last = check_rule(&c);
        outcomes.push((last.dead, last.unhashed, last.confirmed_dead));
    }
    eprintln!("(outcome, host-wide unhashed, confirmed dead) per collection: {outcomes:?}");
    let text = scrape(&c);
    assert!(
        text.contains("tcpstate_dead_socket_checks_total{outcome=\"ruled_out\"}"),
        "{text}"
    );

    // A third dead socket appears in another process: the next collection must see it,
    // since the host-wide count now exceeds the two confirmed ones.
    stage.holder("late-holder", port, 1, true);
    accept(&listener, 1, true);
    let text = scrape_until(&c, "the late dead socket", |t| {
        sample(t, &dead("late-holder")) == Some(1.0)
    });
    assert_eq!(sample(&text, &dead("dead-holder")), Some(2.0), "{text}");
    check_rule(&c);

    // The first holder exits: its two are gone at once, confirmed or searched.
    let mut first = stage.children.remove(0);
    first.kill().unwrap();
    first.wait().unwrap();
    let text = scrape(&c);
    assert_eq!(sample(&text, &dead("dead-holder")), None, "{text}");
    assert_eq!(sample(&text, &dead("late-holder")), Some(1.0), "{text}");
    check_rule(&c);
}
