//! The kernel backend (Linux, root): every run gets a private network namespace with a TUN
//! device that plays the remote peer 192.0.2.1. `<` segments are written to the TUN as IPv4
//! packets, what the kernel routes to 192.0.2.1 is read back and matched against `>` lines,
//! calls are real syscalls on real sockets made inside the namespace, shell lines run there
//! with `/bin/sh`, and states come from sock_diag ([`diag`]).

mod sys;

use std::collections::{HashMap, VecDeque};
use std::fs::File;
use std::io::{Read, Write};
use std::net::{IpAddr, Shutdown, SocketAddr, SocketAddrV4};
use std::os::fd::AsFd;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use socket2::{Domain, Protocol, Socket, Type};
use tcpstate_fsm::State;

use crate::run::{
    local_addr, remote_addr, Backend, BackendKind, CallResult, RunOptions, RunReport, Runner,
    REMOTE_IP, SCRIPT_PORT,
};
use crate::script::{Arg, CallSpec, Expected, Script};
use crate::wire::{decode_ipv4, encode_ipv4, WireSegment};
use crate::Error;

/// The TUN device's name inside the namespace.
const TUN_NAME: &str = "tun0";
/// How long a call that is not written as blocking (`start...end`) may take before the run
/// fails instead of hanging.
const CALL_LIMIT: Duration = Duration::from_secs(2);
/// PATH for shell lines and setup commands (sysctl and ip live in sbin).
const PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Whether this process can create network namespaces and TUN devices (effective uid 0:
/// `/proc/self` is owned by the effective uid).
pub fn is_root() -> bool {
    std::fs::metadata("/proc/self")
        .map(|m| m.uid() == 0)
        .unwrap_or(false)
}

/// A named network namespace, removed when dropped (also on error and panic unwinding).
#[derive(Debug)]
pub struct Netns {
    name: String,
}

impl Netns {
    /// `ip netns add` with a unique name (`tcpstate-conform-PID-N`).
    pub fn create() -> Result<Netns, Error> {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let name = format!(
            "tcpstate-conform-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        if !is_root() {
            return Err(Error::NotRoot { netns: name });
        }
        run_tool(&name, &["ip", "netns", "add", &name])?;
        Ok(Netns { name })
    }

    /// Its name.
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        // Nothing to report to from a destructor; a leftover name would show in `ip netns`.
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .env("PATH", PATH)
            .output();
    }
}

/// Runs a setup command, turning a failure into [`Error::Setup`] naming the namespace.
fn run_tool(netns: &str, argv: &[&str]) -> Result<(), Error> {
    let setup = |source: std::io::Error| Error::Setup {
        netns: netns.to_string(),
        what: argv.join(" "),
        source,
    };
    let out = Command::new(argv[0])
        .args(&argv[1..])
        .env("PATH", PATH)
        .output()
        .map_err(setup)?;
    if out.status.success() {
        Ok(())
    } else {
        Err(setup(std::io::Error::other(format!(
            "{}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ))))
    }
}

/// Runs `script` against the kernel in a fresh namespace.
pub fn run(script: &Script, options: &RunOptions) -> Result<RunReport, Error> {
    let netns = Netns::create()?;
    let name = netns.name().to_string();
    let script = script.clone();
    let options = *options;
    // One thread enters the namespace; everything of the run (sockets, the TUN, shell lines,
    // helper threads) starts from it and so lives in the namespace. The caller's threads
    // never move.
    let worker = std::thread::Builder::new()
        .name(format!("conform {name}"))
        .spawn(move || -> Result<RunReport, Error> {
            let setup = |what: &str, source: std::io::Error| Error::Setup {
                netns: name.clone(),
                what: what.to_string(),
                source,
            };
            let ns = File::open(format!("/run/netns/{name}"))
                .map_err(|e| setup("open /run/netns entry", e))?;
            sys::enter_netns(&ns).map_err(|e| setup("setns", e))?;
            let backend = KernelBackend::setup(&name)?;
            let mut runner = Runner::new(&script, backend, &options);
            let report = runner.run();
            runner.backend().teardown();
            Ok(report)
        })
        .map_err(|source| Error::Setup {
            netns: netns.name().to_string(),
            what: "spawn the namespace thread".into(),
            source,
        })?;
    let result = worker.join();
    drop(netns);
    match result {
        Ok(r) => r,
        Err(_) => Err(Error::Internal("the kernel run's thread panicked".into())),
    }
}

/// When a call returned, and what: `Err` when the runner does not support it.
type Outcome = (Duration, Result<(CallResult, Option<Socket>), String>);

/// The kernel side of a run. Lives on the thread that entered the namespace.
struct KernelBackend {
    start: Instant,
    tun: File,
    queue: VecDeque<(Duration, WireSegment)>,
    /// Script fd number → socket.
    sockets: HashMap<i64, Arc<Socket>>,
    /// A call written as blocking, and the fd a socket it makes will get.
    blocking: Option<(mpsc::Receiver<Outcome>, i64)>,
    /// Our end and the peer's end of the connection the script talks about.
    local: SocketAddrV4,
    remote: SocketAddrV4,
}

impl KernelBackend {
    fn setup(netns: &str) -> Result<KernelBackend, Error> {
        run_tool(netns, &["ip", "link", "set", "lo", "up"])?;
        let tun = sys::open_tun(TUN_NAME).map_err(|source| Error::Setup {
            netns: netns.to_string(),
            what: format!("create TUN device {TUN_NAME} (/dev/net/tun, TUNSETIFF)"),
            source,
        })?;
        // No IPv6 on the device: no router solicitations or MLD reports among the segments.
        let _ = Command::new("sysctl")
            .args(["-qw", &format!("net.ipv6.conf.{TUN_NAME}.disable_ipv6=1")])
            .env("PATH", PATH)
            .output();
        // Buffer sizes decide the window scale the kernel offers (tcp_select_initial_window):
        // scripts of packetdrill's kind are written for its standard configuration
        // (gtests/net/common/defaults.sh: rmem max 15 MiB → `wscale 8`), while hosts differ
        // (32 MiB → `wscale 10`). The namespace is private, so this changes nothing outside.
        run_tool(
            netns,
            &["sysctl", "-q", "net.ipv4.tcp_rmem=4096 540000 15728640"],
        )?;
        run_tool(
            netns,
            &["sysctl", "-q", "net.ipv4.tcp_wmem=4096 262144 4194304"],
        )?;
        run_tool(
            netns,
            &["ip", "addr", "add", "192.168.0.1/24", "dev", TUN_NAME],
        )?;
        run_tool(netns, &["ip", "link", "set", TUN_NAME, "up"])?;
        run_tool(
            netns,
            &["ip", "route", "add", "192.0.2.0/24", "dev", TUN_NAME],
        )?;
        Ok(KernelBackend {
            start: Instant::now(),
            tun,
            queue: VecDeque::new(),
            sockets: HashMap::new(),
            blocking: None,
            local: local_addr(),
            remote: remote_addr(),
        })
    }

    fn teardown(&mut self) {
        // Wake any call still blocked (a failed script), then close everything.
        for s in self.sockets.values() {
            let _ = s.shutdown(Shutdown::Both);
        }
        self.sockets.clear();
    }

    /// Reads packets from the TUN until `until` (at least one non-blocking pass); returns once
    /// a relevant segment was queued when `stop_on_segment`.
    fn pump(&mut self, until: Duration, stop_on_segment: bool) -> Result<(), String> {
        let mut buf = vec![0u8; 65_536];
        loop {
            let now = self.start.elapsed();
            let left = until.saturating_sub(now);
            let readable = sys::wait_readable(self.tun.as_fd(), left)
                .map_err(|e| format!("poll on {TUN_NAME}: {e}"))?;
            if readable {
                let n = self
                    .tun
                    .read(&mut buf)
                    .map_err(|e| format!("reading {TUN_NAME}: {e}"))?;
                let at = self.start.elapsed();
                let packet = buf.get(..n).unwrap_or_default();
                match decode_ipv4(packet) {
                    Ok(Some(p)) if *p.dst.ip() == REMOTE_IP => {
                        // The connection the script talks about is the one the kernel talks on.
                        self.local = p.src;
                        self.remote = p.dst;
                        self.queue.push_back((at, p.segment));
                        if stop_on_segment {
                            return Ok(());
                        }
                    }
                    Ok(_) => {}
                    Err(e) => {
                        return Err(format!(
                            "the kernel sent a packet this runner cannot read: {e}"
                        ))
                    }
                }
            } else if self.start.elapsed() >= until {
                return Ok(());
            }
        }
    }

    fn fd_of(&self, args: &[Arg]) -> Result<(i64, Arc<Socket>), CallResult> {
        match args.first() {
            Some(Arg::Int(fd)) => match self.sockets.get(fd) {
                Some(s) => Ok((*fd, Arc::clone(s))),
                None => Err(Err("EBADF".into())),
            },
            _ => Err(Err("EBADF".into())),
        }
    }

    /// The script fd a new socket gets: the one the script expects, else the lowest free.
    fn new_fd(&self, spec: &CallSpec) -> i64 {
        match spec.expected {
            Expected::Value(v) if v >= 0 => v,
            _ => (3..).find(|fd| !self.sockets.contains_key(fd)).unwrap_or(3),
        }
    }

    /// Runs a call on a helper thread (started from this thread, so in the namespace).
    fn spawn_call(&self, spec: &CallSpec) -> Result<mpsc::Receiver<Outcome>, String> {
        let (tx, rx) = mpsc::channel();
        let sock = match spec.name.as_str() {
            "socket" => None,
            _ => match self.fd_of(&spec.args) {
                Ok((_, s)) => Some(s),
                Err(res) => {
                    let _ = tx.send((self.start.elapsed(), Ok((res, None))));
                    return Ok(rx);
                }
            },
        };
        let call = spec.clone();
        let start = self.start;
        std::thread::Builder::new()
            .name(format!("conform {}", spec.name))
            .spawn(move || {
                let out = exec(&call, sock.as_deref());
                // Drop this thread's reference before reporting: a close() right after the
                // call must be the last reference, or the kernel would close a moment later.
                drop(sock);
                let _ = tx.send((start.elapsed(), out));
            })
            .map_err(|e| format!("cannot start a thread for {}: {e}", spec.name))?;
        Ok(rx)
    }

    /// Takes a returned call's result; a socket it made gets script fd `fd`.
    fn adopt(
        &mut self,
        out: Result<(CallResult, Option<Socket>), String>,
        fd: i64,
    ) -> Result<CallResult, String> {
        let (res, new) = out?;
        Ok(match new {
            Some(sock) => {
                self.sockets.insert(fd, Arc::new(sock));
                Ok(fd)
            }
            None => res,
        })
    }
}

fn errno_of(e: &std::io::Error) -> String {
    match e.raw_os_error() {
        Some(n) => crate::errno::name(n),
        None => format!("error {e}"),
    }
}

fn int_arg(args: &[Arg], k: usize, what: &str) -> Result<i64, String> {
    match args.get(k) {
        Some(Arg::Int(v)) => Ok(*v),
        Some(Arg::Array(a)) => match a.as_slice() {
            [Arg::Int(v)] => Ok(*v),
            _ => Err(format!("{what}: expected [N]")),
        },
        other => Err(format!(
            "{what}: expected a number, found {}",
            other.map_or("nothing".into(), |a| a.to_string())
        )),
    }
}

fn names_arg(args: &[Arg], k: usize) -> Vec<String> {
    match args.get(k) {
        Some(Arg::Names(n)) => n.clone(),
        _ => Vec::new(),
    }
}

/// One syscall. `Err` = not supported by this runner (the script fails with that message);
/// `Ok((Err(errno), _))` = the syscall failed, which the script may expect.
fn exec(spec: &CallSpec, sock: Option<&Socket>) -> Result<(CallResult, Option<Socket>), String> {
    let io = |r: std::io::Result<()>| -> CallResult { r.map(|()| 0).map_err(|e| errno_of(&e)) };
    let args = &spec.args;
    let need = || sock.ok_or_else(|| "no socket".to_string());
    Ok(match spec.name.as_str() {
        "socket" => {
            let domain = names_arg(args, 0);
            if !(domain.is_empty() || domain == ["AF_INET"]) {
                return Err(format!(
                    "socket domain {} (only AF_INET is supported)",
                    domain.join("|")
                ));
            }
            let ty = names_arg(args, 1);
            if ty != ["SOCK_STREAM"] {
                return Err("only SOCK_STREAM sockets are supported".into());
            }
            match Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP)) {
                Ok(s) => (Ok(0), Some(s)),
                Err(e) => (Err(errno_of(&e)), None),
            }
        }
        "setsockopt" => {
            let s = need()?;
            let level = names_arg(args, 1);
            let name = names_arg(args, 2);
            let (level, name) = (level.join("|"), name.join("|"));
            let r = match (level.as_str(), name.as_str()) {
                ("SOL_SOCKET", "SO_REUSEADDR") => {
                    s.set_reuse_address(int_arg(args, 3, "SO_REUSEADDR")? != 0)
                }
                ("SOL_SOCKET", "SO_REUSEPORT") => {
                    s.set_reuse_port(int_arg(args, 3, "SO_REUSEPORT")? != 0)
                }
                ("SOL_SOCKET", "SO_KEEPALIVE") => {
                    s.set_keepalive(int_arg(args, 3, "SO_KEEPALIVE")? != 0)
                }
                ("SOL_SOCKET", "SO_RCVBUF") => {
                    s.set_recv_buffer_size(int_arg(args, 3, "SO_RCVBUF")?.max(0) as usize)
                }
                ("SOL_SOCKET", "SO_SNDBUF") => {
                    s.set_send_buffer_size(int_arg(args, 3, "SO_SNDBUF")?.max(0) as usize)
                }
                ("IPPROTO_TCP" | "SOL_TCP", "TCP_NODELAY") => {
                    s.set_nodelay(int_arg(args, 3, "TCP_NODELAY")? != 0)
                }
                ("SOL_SOCKET", "SO_LINGER") => {
                    let linger = crate::script::linger(args.get(3))?;
                    s.set_linger(linger)
                }
                _ => return Err(format!("setsockopt {level} {name} is not supported")),
            };
            (io(r), None)
        }
        "bind" => (io(need()?.bind(&local_addr().into())), None),
        "listen" => {
            let backlog = int_arg(args, 1, "listen backlog")?;
            (
                io(need()?.listen(backlog.clamp(0, i32::MAX as i64) as i32)),
                None,
            )
        }
        "accept" => match need()?.accept() {
            Ok((s, _)) => (Ok(0), Some(s)),
            Err(e) => (Err(errno_of(&e)), None),
        },
        "connect" => {
            let to = SocketAddrV4::new(REMOTE_IP, SCRIPT_PORT);
            (io(need()?.connect(&to.into())), None)
        }
        "read" | "recv" => {
            let n = int_arg(args, 2, "read length")?.clamp(0, 1 << 24) as usize;
            let mut buf = vec![0u8; n];
            let mut s: &Socket = need()?;
            (
                s.read(&mut buf).map(|k| k as i64).map_err(|e| errno_of(&e)),
                None,
            )
        }
        "write" | "send" => {
            let n = int_arg(args, 2, "write length")?.clamp(0, 1 << 24) as usize;
            let buf = vec![0u8; n];
            // MSG_NOSIGNAL: EPIPE as a result, never SIGPIPE.
            (
                need()?
                    .send_with_flags(&buf, libc::MSG_NOSIGNAL)
                    .map(|k| k as i64)
                    .map_err(|e| errno_of(&e)),
                None,
            )
        }
        "shutdown" => {
            let how = match names_arg(args, 1).join("|").as_str() {
                "SHUT_RD" => Shutdown::Read,
                "SHUT_WR" => Shutdown::Write,
                "SHUT_RDWR" => Shutdown::Both,
                other => return Err(format!("shutdown how {other:?}")),
            };
            (io(need()?.shutdown(how)), None)
        }
        "fcntl" => {
            let cmd = names_arg(args, 1).join("|");
            if cmd != "F_SETFL" {
                return Err(format!("fcntl {cmd} (only F_SETFL is supported)"));
            }
            let flags = names_arg(args, 2);
            (
                io(need()?.set_nonblocking(flags.iter().any(|f| f == "O_NONBLOCK"))),
                None,
            )
        }
        other => return Err(format!("the call {other}() is not supported")),
    })
}

impl Backend for KernelBackend {
    fn kind(&self) -> BackendKind {
        BackendKind::Kernel
    }

    fn now(&mut self) -> Duration {
        self.start.elapsed()
    }

    fn restart_clock(&mut self) {
        // Segments already read keep their order; their times become "before the start".
        let shift = self.start.elapsed();
        self.start += shift;
        for (at, _) in &mut self.queue {
            *at = at.saturating_sub(shift);
        }
    }

    fn wait_until(&mut self, t: Duration) -> Result<(), String> {
        self.pump(t, false)
    }

    fn inject(&mut self, segment: WireSegment) -> Result<(), String> {
        let packet = encode_ipv4(self.remote, self.local, &segment);
        self.tun
            .write_all(&packet)
            .map_err(|e| format!("writing to {TUN_NAME}: {e}"))
    }

    fn next_outbound(
        &mut self,
        deadline: Duration,
    ) -> Result<Option<(Duration, WireSegment)>, String> {
        if self.queue.is_empty() {
            self.pump(deadline, true)?;
        }
        Ok(self.queue.pop_front())
    }

    fn call(&mut self, spec: &CallSpec) -> Result<CallResult, String> {
        if spec.name == "close" {
            let (fd, sock) = match self.fd_of(&spec.args) {
                Ok(x) => x,
                Err(res) => return Ok(res),
            };
            self.sockets.remove(&fd);
            // The last reference closes the fd now (a blocking call still holding it would
            // delay the close, as a second fd to the same socket would in C).
            drop(sock);
            return Ok(Ok(0));
        }
        let fd = self.new_fd(spec);
        let rx = self.spawn_call(spec)?;
        match rx.recv_timeout(CALL_LIMIT) {
            Ok((_, out)) => self.adopt(out, fd),
            Err(_) => Err(format!(
                "{}() did not return within {} s; a call that blocks must be written `start...end`",
                spec.name,
                CALL_LIMIT.as_secs()
            )),
        }
    }

    fn start_blocking(&mut self, spec: &CallSpec) -> Result<(), String> {
        if spec.name == "close" {
            return Err("a blocking close() (SO_LINGER with a timeout) is not supported".into());
        }
        let fd = self.new_fd(spec);
        let rx = self.spawn_call(spec)?;
        self.blocking = Some((rx, fd));
        Ok(())
    }

    fn finish_blocking(
        &mut self,
        deadline: Duration,
    ) -> Result<Option<(Duration, CallResult)>, String> {
        let Some((rx, fd)) = self.blocking.take() else {
            return Err("no blocking call is pending".into());
        };
        loop {
            match rx.try_recv() {
                Ok((at, out)) => return Ok(Some((at, self.adopt(out, fd)?))),
                Err(mpsc::TryRecvError::Disconnected) => {
                    return Err("the blocking call's thread died".into())
                }
                Err(mpsc::TryRecvError::Empty) => {}
            }
            let now = self.start.elapsed();
            if now >= deadline {
                return Ok(None);
            }
            // Keep reading the TUN while the call blocks, so segment times stay accurate.
            self.pump((now + Duration::from_millis(1)).min(deadline), false)?;
        }
    }

    fn shell(&mut self, command: &str, dir: &Path) -> Result<Result<(), String>, String> {
        let out = Command::new("/bin/sh")
            .arg("-c")
            .arg(command)
            .current_dir(dir)
            .env("PATH", PATH)
            .output()
            .map_err(|e| format!("cannot run /bin/sh in {}: {e}", dir.display()))?;
        if out.status.success() {
            Ok(Ok(()))
        } else {
            let stderr = String::from_utf8_lossy(&out.stderr);
            Ok(Err(format!(
                "{}{}",
                out.status,
                if stderr.trim().is_empty() {
                    String::new()
                } else {
                    format!(": {}", stderr.trim())
                }
            )))
        }
    }

    fn peer_state(&mut self) -> Result<Option<State>, String> {
        // The calling thread is in the run's namespace: tcpstate-host's sock_diag dump of
        // "the namespace the calling thread is in" (time-wait sockets with their substate).
        let sockets = tcpstate_host::snapshot::dump_netlink(
            "the run's namespace",
            &tcpstate_host::snapshot::SnapshotOptions::default(),
        )
        .map_err(|e| format!("sock_diag dump: {e}"))?;
        let (local, remote) = (SocketAddr::V4(self.local), SocketAddr::V4(self.remote));
        let mut with_peer: Vec<&tcpstate_host::Socket> = sockets
            .iter()
            .filter(|s| s.peer.ip() == IpAddr::V4(REMOTE_IP) && s.state != State::Listen)
            .collect();
        // The script's connection first; among several, a full socket before a time-wait one.
        with_peer.sort_by_key(|s| {
            (
                s.local != local || s.peer != remote,
                s.state == State::TimeWait,
            )
        });
        Ok(with_peer.first().map(|s| s.state))
    }
}
