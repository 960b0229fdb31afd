//! Real kernel sockets in a private network namespace (loopback and a dummy device only):
//! every TCP state, orphaned FIN_WAIT_2, a child process leaking CLOSE_WAIT, a dead socket
//! still held; asserted against the snapshot, the owner scan, the findings and `ss`.
//! Skipped with a printed reason when not root (or `ip` is missing, except in CI).
#![cfg(target_os = "linux")]
// The test setup needs socket options std does not offer (SO_LINGER {1,0}, SO_RCVBUF
// before listen, TCP_DEFER_ACCEPT); each is one setsockopt(2) call below.
#![allow(unsafe_code)]

use std::collections::BTreeMap;
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use tcpstate_fsm::State;
use tcpstate_host::doctor::{diagnose, Thresholds};
use tcpstate_host::netns::{resolve, run_in, NetnsSelector};
use tcpstate_host::owners::{scan, OwnerQuery};
use tcpstate_host::snapshot::{take, SnapshotOptions};
use tcpstate_host::{Snapshot, SockKind, Socket, TimerKind};

static SEQ: AtomicUsize = AtomicUsize::new(0);

struct TestNs {
    name: String,
}

impl TestNs {
    fn new(test: &str) -> Option<TestNs> {
        let root = std::fs::metadata("/proc/self")
            .map(|m| m.uid() == 0)
            .unwrap_or(false);
        if !root {
            eprintln!("SKIP {test}: needs root to create a network namespace");
            return None;
        }
        if Command::new("ip").arg("-V").output().is_err() {
            assert!(
                std::env::var_os("CI").is_none(),
                "CI: iproute2 `ip` is missing"
            );
            eprintln!("SKIP {test}: `ip` (iproute2) not installed");
            return None;
        }
        let name = format!(
            "tcpstate-host-{}-{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::SeqCst)
        );
        let ns = TestNs { name };
        ns.ip(&["netns", "add", &ns.name]);
        ns.ip(&["-n", &ns.name, "link", "set", "lo", "up"]);
        // A veth pair inside the namespace with a permanent neighbour for 10.77.0.2: SYNs
        // to it leave v0, reach v1 addressed to a MAC that is not v1's, and are dropped,
        // so the connect stays in SYN_SENT. (No dummy driver needed.)
        let n = ns.name.as_str();
        ns.ip(&[
            "-n", n, "link", "add", "v0", "type", "veth", "peer", "name", "v1",
        ]);
        ns.ip(&["-n", n, "addr", "add", "10.77.0.1/24", "dev", "v0"]);
        ns.ip(&["-n", n, "link", "set", "v0", "up"]);
        ns.ip(&["-n", n, "link", "set", "v1", "up"]);
        ns.ip(&[
            "-n",
            n,
            "neigh",
            "add",
            "10.77.0.2",
            "lladdr",
            "02:00:00:00:00:02",
            "dev",
            "v0",
            "nud",
            "permanent",
        ]);
        eprintln!("RUN {test} in network namespace {}", ns.name);
        Some(ns)
    }

    fn ip(&self, args: &[&str]) {
        let st = Command::new("ip").args(args).status().expect("run ip");
        assert!(st.success(), "ip {args:?} failed");
    }

    fn sel(&self) -> NetnsSelector {
        NetnsSelector::Named(self.name.clone())
    }

    /// Runs `f` in the namespace; sockets made there stay in it.
    fn run<T: Send>(&self, f: impl FnOnce() -> T + Send) -> T {
        let t = resolve(&self.sel()).expect("resolve netns");
        run_in(&t[0], f).expect("enter netns")
    }

    fn snapshot(&self) -> Snapshot {
        take(
            &self.sel(),
            &SnapshotOptions {
                extensions: true,
                kernel_context: true,
                ..Default::default()
            },
        )
        .expect("snapshot")
    }

    /// Per-state counts from `ss -tanH` in the namespace.
    fn ss_counts(&self) -> BTreeMap<State, usize> {
        let out = Command::new("ip")
            .args(["netns", "exec", &self.name, "ss", "-tanH"])
            .output()
            .expect("ss");
        assert!(out.status.success());
        let mut m = BTreeMap::new();
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            let word = line.split_whitespace().next().unwrap();
            *m.entry(word.parse::<State>().unwrap()).or_default() += 1;
        }
        m
    }
}

impl Drop for TestNs {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

fn setsockopt(fd: i32, level: i32, name: i32, val: &[i32]) {
    // SAFETY: the value points at `val.len()` live c_ints.
    let r = unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            val.as_ptr().cast(),
            std::mem::size_of_val(val) as libc::socklen_t,
        )
    };
    assert_eq!(
        r,
        0,
        "setsockopt {level}/{name}: {}",
        std::io::Error::last_os_error()
    );
}

/// A listener with a small receive buffer (inherited by accepted sockets), so that a peer
/// that writes fills our window quickly.
fn small_listener(defer_accept: bool) -> TcpListener {
    // SAFETY: plain socket(2); ownership moves into the TcpListener below.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) };
    assert!(fd >= 0);
    setsockopt(fd, libc::SOL_SOCKET, libc::SO_RCVBUF, &[4096]);
    if defer_accept {
        setsockopt(fd, libc::IPPROTO_TCP, libc::TCP_DEFER_ACCEPT, &[30]);
    }
    // SAFETY: fd is a fresh socket owned by nobody else.
    let l = unsafe { <TcpListener as std::os::fd::FromRawFd>::from_raw_fd(fd) };
    let sock = socket2_bind(fd);
    assert!(sock);
    l
}

fn socket2_bind(fd: i32) -> bool {
    let addr = libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: 0,
        sin_addr: libc::in_addr {
            s_addr: u32::from_ne_bytes([127, 0, 0, 1]),
        },
        sin_zero: [0; 8],
    };
    // SAFETY: addr is a live sockaddr_in of the size passed.
    let r = unsafe {
        libc::bind(
            fd,
            (&addr as *const libc::sockaddr_in).cast(),
            std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
        )
    };
    // SAFETY: listen on our own socket.
    r == 0 && unsafe { libc::listen(fd, 128) } == 0
}

fn fill(s: &mut TcpStream) -> usize {
    s.set_nonblocking(true).unwrap();
    let buf = [0x55u8; 65536];
    let mut total = 0;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match s.write(&buf) {
            Ok(n) => total += n,
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                // Let the peer's window close, then make sure it stays closed.
                std::thread::sleep(Duration::from_millis(50));
                match s.write(&buf) {
                    Ok(n) => total += n,
                    Err(e) if e.kind() == ErrorKind::WouldBlock => return total,
                    Err(e) => panic!("write: {e}"),
                }
            }
            Err(e) => panic!("write: {e}"),
        }
        assert!(Instant::now() < deadline, "could not fill the window");
    }
}

fn settle() {
    std::thread::sleep(Duration::from_millis(300));
}

fn find(snap: &Snapshot, local: SocketAddr, peer: SocketAddr) -> &Socket {
    snap.sockets
        .iter()
        .find(|s| s.local == local && s.peer == peer)
        .unwrap_or_else(|| panic!("no socket {local} -> {peer} in {:#?}", snap.sockets))
}

fn accept_timeout(l: &TcpListener, n: usize) -> Vec<TcpStream> {
    l.set_nonblocking(true).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut out = Vec::new();
    while out.len() < n {
        match l.accept() {
            Ok((s, _)) => {
                s.set_nonblocking(false).unwrap();
                out.push(s)
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                assert!(Instant::now() < deadline, "accept timed out");
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(e) => panic!("accept: {e}"),
        }
    }
    l.set_nonblocking(false).unwrap();
    out
}

struct KillOnDrop(Child);
impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn every_state_with_timer_and_owner_and_counts_equal_ss() {
    let Some(ns) = TestNs::new("every_state") else {
        return;
    };
    let me = std::process::id();

    struct World {
        l: TcpListener,
        defer: TcpListener,
        est: (TcpStream, TcpStream),
        tw_client: SocketAddr,
        orphan: SocketAddr,
        close_wait: TcpStream,
        fw1: (TcpStream, TcpStream),
        last_ack: (TcpStream, TcpStream),
        closing: (TcpStream, TcpStream),
        syn_recv_client: TcpStream,
    }
    let w = ns.run(|| {
        let l = small_listener(false);
        let la = l.local_addr().unwrap();
        // ESTABLISHED pair.
        let c = TcpStream::connect(la).unwrap();
        let s = accept_timeout(&l, 1).remove(0);
        let est = (c, s);
        // TIME_WAIT: the client closes first, the server follows.
        let c = TcpStream::connect(la).unwrap();
        let mut s = accept_timeout(&l, 1).remove(0);
        let tw_client = c.local_addr().unwrap();
        drop(c);
        let mut b = [0u8; 8];
        assert_eq!(s.read(&mut b).unwrap(), 0);
        drop(s);
        // Orphaned FIN_WAIT_2 (client closed, server never does) + CLOSE_WAIT we hold.
        let c = TcpStream::connect(la).unwrap();
        let s = accept_timeout(&l, 1).remove(0);
        let orphan = c.local_addr().unwrap();
        drop(c);
        let close_wait = s;
        // FIN_WAIT_1: our FIN queued behind data the peer's zero window blocks.
        let mut c = TcpStream::connect(la).unwrap();
        let s = accept_timeout(&l, 1).remove(0);
        fill(&mut c);
        c.shutdown(std::net::Shutdown::Write).unwrap();
        let fw1 = (c, s);
        // LAST_ACK: the peer closed; our FIN queued behind data its full window blocks.
        let c = TcpStream::connect(la).unwrap();
        let mut s = accept_timeout(&l, 1).remove(0);
        fill(&mut s);
        c.shutdown(std::net::Shutdown::Write).unwrap();
        std::thread::sleep(Duration::from_millis(100));
        s.shutdown(std::net::Shutdown::Write).unwrap();
        let last_ack = (c, s);
        // CLOSING: our FIN is blocked (FIN_WAIT_1) when the peer's FIN arrives.
        let mut c = TcpStream::connect(la).unwrap();
        let s = accept_timeout(&l, 1).remove(0);
        fill(&mut c);
        c.shutdown(std::net::Shutdown::Write).unwrap();
        s.shutdown(std::net::Shutdown::Write).unwrap();
        let closing = (c, s);
        // SYN_RECV: TCP_DEFER_ACCEPT keeps the request socket until data arrives.
        let defer = small_listener(true);
        let syn_recv_client = TcpStream::connect(defer.local_addr().unwrap()).unwrap();
        // SYN_SENT: the dummy device drops the SYN. The thread inherits the namespace.
        std::thread::spawn(|| TcpStream::connect("10.77.0.2:9"));
        World {
            l,
            defer,
            est,
            tw_client,
            orphan,
            close_wait,
            fw1,
            last_ack,
            closing,
            syn_recv_client,
        }
    });
    settle();

    let mut snap = ns.snapshot();
    let ss = ns.ss_counts();
    let ours: BTreeMap<State, usize> = snap.counts().into_iter().collect();
    assert_eq!(ours, ss, "per-state counts must equal `ss -tan`");

    let la = w.l.local_addr().unwrap();
    let check = |s: &Socket, state: State| assert_eq!(s.state, state, "{s:#?}");

    let listen = find(&snap, la, "0.0.0.0:0".parse().unwrap());
    check(listen, State::Listen);
    assert_eq!(listen.send_q, 128, "backlog limit as Send-Q");
    assert!(listen.timer.is_none());

    let est_c = find(&snap, w.est.0.local_addr().unwrap(), la);
    check(est_c, State::Established);
    assert!(est_c.tcp_info.unwrap().rtt_us.is_some());
    assert!(est_c.cookie.is_some());

    let tw = find(&snap, w.tw_client, la);
    check(tw, State::TimeWait);
    assert_eq!(tw.kind, SockKind::TimeWaitMini);
    let timer = tw.timer.expect("timewait timer");
    assert_eq!(timer.kind, TimerKind::TimeWait);
    assert!(timer.expires > Duration::from_secs(50) && timer.expires <= Duration::from_secs(60));
    assert!(tw.state_time().age.unwrap() < Duration::from_secs(10));

    let orphan = find(&snap, w.orphan, la);
    check(orphan, State::FinWait2);
    assert!(orphan.is_orphan_fin_wait_2(), "{orphan:#?}");
    assert_eq!(orphan.timer.unwrap().kind, TimerKind::TimeWait);
    assert_eq!(orphan.inode, 0);

    let cw = find(&snap, la, w.orphan);
    check(cw, State::CloseWait);
    assert_eq!(cw.recv_q, 1, "unread FIN");
    let age = cw.state_time();
    assert!(age.estimated && age.age.unwrap() < Duration::from_secs(30));

    check(
        find(&snap, w.fw1.0.local_addr().unwrap(), la),
        State::FinWait1,
    );
    check(
        find(&snap, la, w.last_ack.0.local_addr().unwrap()),
        State::LastAck,
    );
    check(
        find(&snap, w.last_ack.0.local_addr().unwrap(), la),
        State::FinWait2,
    );
    check(
        find(&snap, w.closing.0.local_addr().unwrap(), la),
        State::Closing,
    );
    check(
        find(&snap, la, w.closing.0.local_addr().unwrap()),
        State::FinWait2,
    );

    let da = w.defer.local_addr().unwrap();
    let req = find(&snap, da, w.syn_recv_client.local_addr().unwrap());
    check(req, State::SynReceived);
    assert_eq!(req.kind, SockKind::Request);
    assert_eq!(req.timer.unwrap().kind, TimerKind::Retransmit);

    let syn_sent = snap
        .sockets
        .iter()
        .find(|s| s.peer == "10.77.0.2:9".parse().unwrap())
        .expect("SYN_SENT socket");
    check(syn_sent, State::SynSent);
    assert_eq!(syn_sent.timer.unwrap().kind, TimerKind::Retransmit);

    // Owners: every socket with a file here is ours; find them by inode.
    let mut q = OwnerQuery::default();
    for s in snap.sockets.iter().filter(|s| s.inode != 0) {
        q.wanted.insert(s.inode);
        q.uids.insert(s.uid);
    }
    let result = scan(&q);
    for s in &mut snap.sockets {
        s.owner = result.owners.get(&s.inode).cloned();
    }
    let cw = find(&snap, la, w.orphan);
    let o = cw.owner.as_ref().expect("CLOSE_WAIT owner");
    assert_eq!((o.pid, o.fd), (me, w.close_wait.as_raw_fd() as u32));
    let o = find(&snap, w.est.0.local_addr().unwrap(), la)
        .owner
        .as_ref()
        .unwrap();
    assert_eq!((o.pid, o.fd), (me, w.est.0.as_raw_fd() as u32));
    assert!(
        find(&snap, w.tw_client, la).owner.is_none(),
        "TIME_WAIT has no owner"
    );

    // The /proc fallback sees the same sockets, minus what it cannot say.
    let proc_snap = take(
        &ns.sel(),
        &SnapshotOptions {
            proc_only: true,
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(proc_snap.counts(), snap.counts());
    assert!(proc_snap
        .sockets
        .iter()
        .all(|s| s.cookie.is_none() && s.tcp_info.is_none()));
    drop(w);
}

#[test]
fn child_leaking_close_wait_is_named_by_pid_and_fd() {
    let Some(ns) = TestNs::new("close_wait_leak") else {
        return;
    };
    let l = ns.run(|| TcpListener::bind("127.0.0.1:0").unwrap());
    let port = l.local_addr().unwrap().port();
    // bash opens two connections on fds 3 and 4, then becomes `sleep`, which inherits them
    // and never closes them.
    let script =
        format!("exec 3<>/dev/tcp/127.0.0.1/{port} 4<>/dev/tcp/127.0.0.1/{port}; exec sleep 60");
    let child = Command::new("ip")
        .args(["netns", "exec", &ns.name, "bash", "-c", &script])
        .stdin(Stdio::null())
        .spawn()
        .expect("spawn bash");
    let child = KillOnDrop(child);
    let conns = accept_timeout(&l, 2);
    // Wait until the child is `sleep` holding both fds.
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::fs::read_to_string(format!("/proc/{}/comm", child.0.id()))
        .map(|c| c.trim() != "sleep")
        .unwrap_or(true)
    {
        assert!(Instant::now() < deadline, "child never became sleep");
        std::thread::sleep(Duration::from_millis(20));
    }
    drop(conns); // we close first: the child's sockets go to CLOSE_WAIT
    settle();

    let mut snap = ns.snapshot();
    let mut q = OwnerQuery::default();
    for s in snap.sockets.iter().filter(|s| s.state == State::CloseWait) {
        q.wanted.insert(s.inode);
        q.uids.insert(s.uid);
    }
    assert_eq!(q.wanted.len(), 2);
    let result = scan(&q);
    for s in &mut snap.sockets {
        s.owner = result.owners.get(&s.inode).cloned();
    }
    let t = Thresholds {
        close_wait_count: 2,
        orphan_fin_wait_2_count: 1,
        ..Default::default()
    };
    let findings = diagnose(&snap, Some(&result), None, &t);
    let leak = findings
        .iter()
        .find(|f| f.id == "close_wait_leak")
        .unwrap_or_else(|| panic!("no leak finding in {findings:#?}"));
    assert_eq!(leak.pid, Some(child.0.id()));
    assert_eq!(leak.process.as_deref(), Some("sleep"));
    assert_eq!(leak.count, 2);
    assert!(leak.title.starts_with(&format!(
        "pid {} (sleep) leaks CLOSE_WAIT: 2 sockets",
        child.0.id()
    )));
    let ev = leak.evidence.join("\n");
    assert!(
        ev.contains("held by pid") && ev.contains("fds 3, 4"),
        "{ev}"
    );
    assert!(ev.contains("2 with Recv-Q 1"), "{ev}");
    assert!(ev.contains("estimate"), "{ev}");
    // Our side: orphans in FIN_WAIT_2 toward the leaking program.
    assert!(
        findings.iter().any(|f| f.id == "orphan_fin_wait_2"),
        "{findings:#?}"
    );
}

#[test]
fn dead_socket_still_held_is_found_and_fresh_socket_is_not() {
    let Some(ns) = TestNs::new("dead_socket") else {
        return;
    };
    let (l, c, s, fresh) = ns.run(|| {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let c = TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let s = accept_timeout(&l, 1).remove(0);
        // SAFETY: plain socket(2), never connected; wrapped so it is closed on drop.
        let fresh = unsafe {
            <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(libc::socket(
                libc::AF_INET,
                libc::SOCK_STREAM | libc::SOCK_CLOEXEC,
                0,
            ))
        };
        (l, c, s, fresh)
    });
    // SO_LINGER {1,0}: close() sends RST; the server's socket goes to CLOSED while we keep it.
    setsockopt(c.as_raw_fd(), libc::SOL_SOCKET, libc::SO_LINGER, &[1, 0]);
    drop(c);
    settle();
    let inode_of = |fd: i32| -> u64 {
        let link = std::fs::read_link(format!("/proc/self/fd/{fd}")).unwrap();
        tcpstate_host::owners::socket_inode(link.as_os_str().as_encoded_bytes()).unwrap()
    };
    let dead_inode = inode_of(s.as_raw_fd());
    let fresh_inode = inode_of(fresh.as_raw_fd());
    let snap = ns.snapshot();
    assert!(
        snap.sockets.iter().all(|x| x.inode != dead_inode),
        "a reset socket is in no table"
    );
    let q = OwnerQuery {
        known: Some(
            snap.sockets
                .iter()
                .map(|s| s.inode)
                .filter(|i| *i != 0)
                .collect(),
        ),
        ..Default::default()
    };
    let result = scan(&q);
    let dead = result
        .dead
        .iter()
        .find(|d| d.inode == dead_inode)
        .unwrap_or_else(|| panic!("dead socket not found: {result:#?}"));
    assert_eq!(dead.owner.pid, std::process::id());
    assert_eq!(dead.owner.fd, s.as_raw_fd() as u32);
    assert_eq!(dead.tcp_info.state, 7);
    assert!(
        result.dead.iter().all(|d| d.inode != fresh_inode),
        "never-connected socket is no leak"
    );
    let f = diagnose(&snap, Some(&result), None, &Thresholds::default());
    assert!(f
        .iter()
        .any(|f| f.id == "dead_socket_held" && f.pid == Some(std::process::id())));
    drop((l, s, fresh));
}

#[test]
fn missing_namespace_is_a_clear_error() {
    let err = take(
        &NetnsSelector::Named("tcpstate-no-such-netns".into()),
        &SnapshotOptions::default(),
    )
    .unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("tcpstate-no-such-netns"), "{msg}");
    assert!(take(
        &NetnsSelector::Named("../etc".into()),
        &SnapshotOptions::default()
    )
    .is_err());
}

#[test]
fn all_netns_includes_a_private_namespace_with_its_name() {
    let Some(ns) = TestNs::new("all_netns") else {
        return;
    };
    let l = ns.run(|| TcpListener::bind("127.0.0.1:0").unwrap());
    let snap = take(&NetnsSelector::All, &SnapshotOptions::default()).unwrap();
    let idx = snap
        .namespaces
        .iter()
        .position(|n| n.name == ns.name)
        .expect("named namespace listed");
    assert!(snap
        .sockets
        .iter()
        .any(|s| s.netns == idx && s.local == l.local_addr().unwrap() && s.state == State::Listen));
}

#[test]
fn exact_lookup_finds_time_wait_and_established_by_tuple_and_cookie() {
    use tcpstate_host::snapshot::lookup;
    let Some(ns) = TestNs::new("lookup") else {
        return;
    };
    let (l, c, s) = ns.run(|| {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let c = TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (s, _) = l.accept().unwrap();
        (l, c, s)
    });
    let (local, peer) = (c.local_addr().unwrap(), c.peer_addr().unwrap());
    let est = lookup(&ns.sel(), local, peer, None)
        .unwrap()
        .expect("established");
    assert_eq!(est.state, State::Established);
    assert!(est.tcp_info.is_some());
    // The client closes first and the server answers: the client end is in TIME_WAIT.
    drop(c);
    let mut s = s;
    let mut b = [0u8; 1];
    assert_eq!(s.read(&mut b).unwrap(), 0);
    drop(s);
    settle();
    let tw = lookup(&ns.sel(), local, peer, est.cookie)
        .unwrap()
        .expect("time-wait");
    assert_eq!(tw.state, State::TimeWait);
    assert_eq!(tw.kind, SockKind::TimeWaitMini);
    assert!(tw.timer.is_some_and(|t| t.expires.as_secs() <= 60));
    // The timewait minisocket inherits the cookie; another cookie is not this socket.
    let other = est.cookie.map(|c| c ^ 1);
    assert!(lookup(&ns.sel(), local, peer, other).unwrap().is_none());
    let nowhere: std::net::SocketAddr = "127.0.0.1:1".parse().unwrap();
    assert!(lookup(&ns.sel(), nowhere, peer, None).unwrap().is_none());
    drop(l);
}
