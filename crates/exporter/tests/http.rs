//! The HTTP server against real and hostile clients: routes, formats, `promtool check
//! metrics`, shared collections, and bad requests (huge headers, slowloris, idle
//! connections, odd methods, a connection flood) that must not stop it serving others.

mod common;

use common::{get, raw, start};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};
use tcpstate_exporter::{CollectorConfig, DeadScan};

fn quiet() -> CollectorConfig {
    // The dead-socket scan reads every fd on the host; these tests are about HTTP.
    CollectorConfig {
        dead_scan: DeadScan::Never,
        ..Default::default()
    }
}

#[test]
fn routes_and_formats() {
    let (addr, _) = start(quiet(), |_| {});
    let m = get(addr, "/metrics").unwrap();
    assert_eq!(m.status, 200, "{}", m.head);
    assert_eq!(
        m.header("content-type").as_deref(),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    assert!(m.body.contains("# TYPE tcpstate_sockets gauge"));
    assert!(m.body.contains("# TYPE tcpstate_scrapes_total counter"));
    assert!(!m.body.contains("# EOF"));

    let om = raw(
        addr,
        b"GET /metrics HTTP/1.1\r\nHost: t\r\nAccept: application/openmetrics-text;version=1.0.0,text/plain;q=0.5\r\nConnection: close\r\n\r\n",
    )
    .unwrap();
    assert_eq!(om.status, 200);
    assert!(om
        .header("content-type")
        .unwrap()
        .starts_with("application/openmetrics-text"));
    assert!(om.body.ends_with("# EOF\n"));
    assert!(om.body.contains("# TYPE tcpstate_scrapes counter"));

    let index = get(addr, "/").unwrap();
    assert_eq!(index.status, 200);
    assert!(index.body.contains("href=\"/metrics\""));

    let head = raw(
        addr,
        b"HEAD /metrics HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
    )
    .unwrap();
    assert_eq!(head.status, 200);
    assert!(head.body.is_empty());

    for path in ["/nope", "/metrics/", "/../etc/passwd", "/favicon.ico"] {
        assert_eq!(get(addr, path).unwrap().status, 404, "{path}");
    }
    // Query strings do not change the route.
    assert_eq!(get(addr, "/metrics?x=1").unwrap().status, 200);
}

#[test]
fn odd_methods_are_refused() {
    let (addr, _) = start(quiet(), |_| {});
    for method in ["POST", "PUT", "DELETE", "OPTIONS", "PATCH", "BREW", "TRACE"] {
        let r = raw(
            addr,
            format!("{method} /metrics HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                .as_bytes(),
        )
        .unwrap();
        assert_eq!(r.status, 405, "{method}: {}", r.head);
        assert_eq!(r.header("allow").as_deref(), Some("GET, HEAD"));
    }
    // Garbage instead of a request line: 400 (or closed), and the server still serves.
    let r = raw(
        addr,
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03garbage\r\n\r\n",
    )
    .unwrap();
    assert!(r.status == 400 || r.status == 0, "{}", r.head);
    assert_eq!(get(addr, "/metrics").unwrap().status, 200);
}

#[test]
fn huge_headers_get_431_and_others_are_served() {
    let (addr, _) = start(quiet(), |_| {});
    let big = "a".repeat(64 * 1024);
    let r = raw(
        addr,
        format!("GET /metrics HTTP/1.1\r\nHost: t\r\nX-Big: {big}\r\nConnection: close\r\n\r\n")
            .as_bytes(),
    );
    // hyper answers 431 and closes; the close may race our write (a reset), which is fine.
    if let Ok(r) = r {
        assert!(r.status == 431 || r.status == 0, "{}", r.head);
    }
    let many: String = (0..200).map(|i| format!("X-H{i}: v\r\n")).collect();
    let r = raw(
        addr,
        format!("GET /metrics HTTP/1.1\r\nHost: t\r\n{many}Connection: close\r\n\r\n").as_bytes(),
    );
    if let Ok(r) = r {
        assert!(r.status == 431 || r.status == 0, "{}", r.head);
    }
    assert_eq!(get(addr, "/metrics").unwrap().status, 200);
}

#[test]
fn slowloris_and_idle_connections_are_dropped_and_the_cap_holds() {
    let cap = 6;
    let (addr, _) = start(quiet(), |c| {
        c.max_connections = cap;
        c.header_timeout = Duration::from_secs(1);
    });
    // Fill every slot: half trickle a header that never ends, half say nothing.
    let mut hogs = Vec::new();
    for i in 0..cap {
        let mut s = TcpStream::connect(addr).unwrap();
        if i % 2 == 0 {
            s.write_all(b"GET /metrics HTTP/1.1\r\nX-Slow: ").unwrap();
        }
        hogs.push(s);
    }
    std::thread::sleep(Duration::from_millis(200));
    // Over the cap: a fixed 503, not a hang.
    let busy = get(addr, "/metrics").unwrap();
    assert_eq!(busy.status, 503, "{}", busy.head);
    // Keep trickling: the header timeout is for the whole header, so it still expires.
    let start = Instant::now();
    let mut closed = vec![false; cap];
    while closed.iter().any(|c| !c) && start.elapsed() < Duration::from_secs(8) {
        for (i, s) in hogs.iter_mut().enumerate() {
            if closed[i] {
                continue;
            }
            if i % 2 == 0 && s.write_all(b"a").is_err() {
                closed[i] = true;
                continue;
            }
            s.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
            let mut b = [0u8; 512];
            match s.read(&mut b) {
                Ok(_) => closed[i] = true, // EOF or an error response: dropped either way
                Err(e)
                    if e.kind() == std::io::ErrorKind::WouldBlock
                        || e.kind() == std::io::ErrorKind::TimedOut => {}
                Err(_) => closed[i] = true,
            }
        }
    }
    assert!(
        closed.iter().all(|c| *c),
        "slow/idle connections still open after {:?}",
        start.elapsed()
    );
    // The slots are free again.
    assert_eq!(get(addr, "/metrics").unwrap().status, 200);
}

#[test]
fn concurrent_scrapes_share_collections() {
    let (addr, collector) = start(quiet(), |_| {});
    let n = 16;
    let barrier = std::sync::Arc::new(std::sync::Barrier::new(n));
    let handles: Vec<_> = (0..n)
        .map(|_| {
            let b = std::sync::Arc::clone(&barrier);
            std::thread::spawn(move || {
                b.wait();
                get(addr, "/metrics").unwrap().status
            })
        })
        .collect();
    for h in handles {
        assert_eq!(h.join().unwrap(), 200);
    }
    let made = collector.scrapes();
    assert!(
        made >= 1 && made < n as u64,
        "{made} collections for {n} scrapes"
    );
}

#[test]
fn non_loopback_needs_permission() {
    let sc = tcpstate_exporter::ServerConfig::new("0.0.0.0:0".parse().unwrap());
    match tcpstate_exporter::bind(sc) {
        Err(tcpstate_exporter::ServeError::NotLoopback(a)) => {
            assert_eq!(a.to_string(), "0.0.0.0:0")
        }
        Err(e) => panic!("unexpected error {e}"),
        Ok(_) => panic!("bound a non-loopback address without permission"),
    }
    let mut sc = tcpstate_exporter::ServerConfig::new("0.0.0.0:0".parse().unwrap());
    sc.allow_remote = true;
    assert!(tcpstate_exporter::bind(sc).is_ok());
    let v6 = tcpstate_exporter::ServerConfig::new("[::1]:0".parse().unwrap());
    // ::1 is loopback: allowed (may fail only where IPv6 is off).
    if let Err(e) = tcpstate_exporter::bind(v6) {
        assert!(
            matches!(e, tcpstate_exporter::ServeError::Bind { .. }),
            "{e}"
        );
    }
}

#[test]
fn live_scrape_passes_promtool() {
    let Some(promtool) = common::tool("promtool") else {
        return;
    };
    // Default collector, dead-socket scan included, so every family can appear.
    let (addr, _) = start(CollectorConfig::default(), |_| {});
    let m = get(addr, "/metrics").unwrap();
    assert_eq!(m.status, 200);
    if let Err(e) = common::promtool_check_metrics(&promtool, &m.body) {
        panic!("promtool check metrics:\n{e}\n--- scrape ---\n{}", m.body);
    }
}
