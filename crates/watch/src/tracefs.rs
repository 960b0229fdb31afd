//! A private tracefs instance (`instances/tcpstate-<pid>`): created with its own ring
//! buffer, trace clock and event filters, read through its `trace_pipe`, and removed when
//! dropped (normal exit, Ctrl-C / SIGTERM through the caller's stop flag, or a panic's
//! unwinding). Instances left by a killed run are removed at the next start. The global
//! instance (`/sys/kernel/tracing/trace`, its events and options) is never touched.

use crate::error::WatchError;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Where tracefs is mounted.
#[derive(Debug, Clone)]
pub struct TraceFs {
    root: PathBuf,
    /// Mounted by this process (it is left mounted: other tools may use it from now on).
    pub mounted_here: bool,
}

const TRACEFS: &str = "/sys/kernel/tracing";
const DEBUGFS_TRACING: &str = "/sys/kernel/debug/tracing";
/// Prefix of the instances this tool makes.
pub const INSTANCE_PREFIX: &str = "tcpstate-";

static NEXT_IN_PROCESS: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

/// The pid in an instance name `tcpstate-<pid>` or `tcpstate-<pid>-<n>`.
pub fn instance_pid(name: &str) -> Option<u32> {
    let rest = name.strip_prefix(INSTANCE_PREFIX)?;
    let (pid, n) = rest.split_once('-').unwrap_or((rest, "0"));
    n.parse::<u32>().ok()?;
    pid.parse().ok()
}

impl TraceFs {
    /// The tracefs root (holds `instances/`).
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Finds tracefs, mounting it on /sys/kernel/tracing when it is not mounted
    /// (`mount -t tracefs nodev /sys/kernel/tracing`).
    pub fn locate_or_mount() -> Result<TraceFs, WatchError> {
        for root in [TRACEFS, DEBUGFS_TRACING] {
            let root = PathBuf::from(root);
            if root.join("instances").is_dir() {
                return Ok(TraceFs {
                    root,
                    mounted_here: false,
                });
            }
        }
        let target = Path::new(TRACEFS);
        if !target.is_dir() {
            return Err(WatchError::TraceFs(format!(
                "{TRACEFS} does not exist (sysfs not mounted, or a kernel without CONFIG_TRACING)"
            )));
        }
        match rustix::mount::mount(
            "nodev",
            target,
            "tracefs",
            rustix::mount::MountFlags::empty(),
            None,
        ) {
            Ok(()) => Ok(TraceFs {
                root: target.to_path_buf(),
                mounted_here: true,
            }),
            Err(e) => {
                let why = match e {
                    rustix::io::Errno::PERM | rustix::io::Errno::ACCESS => {
                        "mounting needs CAP_SYS_ADMIN (run as root, or mount it for this user)"
                            .to_string()
                    }
                    rustix::io::Errno::NODEV => {
                        "the kernel has no tracefs (CONFIG_TRACING off)".to_string()
                    }
                    other => format!("mount(2) failed: {}", io::Error::from(other)),
                };
                Err(WatchError::TraceFs(format!(
                    "tracefs is not mounted and `mount -t tracefs nodev {TRACEFS}` failed: {why}"
                )))
            }
        }
    }

    /// Removes `tcpstate-<pid>` instances whose process is gone; returns their names.
    pub fn remove_stale_instances(&self) -> Vec<String> {
        let mut removed = Vec::new();
        let Ok(dir) = fs::read_dir(self.root.join("instances")) else {
            return removed;
        };
        for e in dir.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let Some(pid) = instance_pid(&name) else {
                continue;
            };
            if Path::new(&format!("/proc/{pid}")).exists() {
                continue; // alive (possibly a reused pid: then it is left alone)
            }
            if remove_instance_dir(&e.path()).is_ok() {
                removed.push(name);
            }
        }
        removed
    }
}

fn remove_instance_dir(dir: &Path) -> io::Result<()> {
    // rmdir of an instance fails with EBUSY while one of its files is open; a reader that
    // just closed may take a moment.
    let mut last = None;
    for _ in 0..50 {
        match fs::remove_dir(dir) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => last = Some(e),
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Err(last.unwrap_or_else(|| io::Error::other("rmdir failed")))
}

/// How to set the instance up.
#[derive(Debug, Clone)]
pub struct InstanceOptions {
    /// Ring buffer per CPU, KiB.
    pub buffer_kb: u32,
    /// Ports to keep (local or remote), filtered in the kernel; empty: all.
    pub ports: Vec<u16>,
    /// Read the per-CPU binary pages (`trace_pipe_raw`) rather than the text pipe.
    pub binary: bool,
}

impl Default for InstanceOptions {
    fn default() -> Self {
        InstanceOptions {
            buffer_kb: 8192,
            ports: Vec::new(),
            binary: true,
        }
    }
}

/// Per-CPU binary readers.
#[derive(Debug)]
struct Raw {
    cpus: Vec<(u32, File)>,
    page: Vec<u8>,
    formats: crate::raw::Formats,
}

/// An event enabled in the instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Enabled {
    /// `group/name`.
    pub event: String,
    /// The filter set on it.
    pub filter: String,
}

/// A private tracefs instance, removed on drop.
#[derive(Debug)]
pub struct Instance {
    dir: PathBuf,
    pipe: Option<File>,
    raw: Option<Raw>,
    tail: Vec<u8>,
    /// What is enabled, with filters.
    pub enabled: Vec<Enabled>,
    /// Stale instances removed at creation.
    pub removed_stale: Vec<String>,
}

fn write_file(path: &Path, value: &str) -> Result<(), WatchError> {
    let mut f = OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(path)
        .map_err(|e| WatchError::io(path, e))?;
    f.write_all(value.as_bytes())
        .map_err(|e| WatchError::io(path, e))
}

/// The kernel filter for events with sport/dport fields.
fn port_filter(ports: &[u16]) -> Option<String> {
    if ports.is_empty() {
        return None;
    }
    let alts: Vec<String> = ports
        .iter()
        .map(|p| format!("sport == {p} || dport == {p}"))
        .collect();
    Some(format!("({})", alts.join(" || ")))
}

impl Instance {
    /// Creates and arms `instances/tcpstate-<pid>`.
    pub fn create(fs: &TraceFs, opts: &InstanceOptions) -> Result<Instance, WatchError> {
        let removed_stale = fs.remove_stale_instances();
        // tcpstate-<pid>, then tcpstate-<pid>-<n> for further watchers in one process.
        let n = NEXT_IN_PROCESS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let name = match n {
            0 => format!("{INSTANCE_PREFIX}{}", std::process::id()),
            n => format!("{INSTANCE_PREFIX}{}-{n}", std::process::id()),
        };
        let dir = fs.root.join("instances").join(name);
        if dir.exists() {
            // Ours from an earlier watch in this process that failed to clean up.
            remove_instance_dir(&dir).map_err(|e| WatchError::io(&dir, e))?;
        }
        fs::create_dir(&dir).map_err(|e| WatchError::io(&dir, e))?;
        let mut inst = Instance {
            dir,
            pipe: None,
            raw: None,
            tail: Vec::new(),
            enabled: Vec::new(),
            removed_stale,
        };
        inst.arm(opts)?;
        Ok(inst)
    }

    fn arm(&mut self, opts: &InstanceOptions) -> Result<(), WatchError> {
        let d = self.dir.clone();
        // CLOCK_BOOTTIME: convertible to wall time, and it keeps counting across suspend.
        write_file(&d.join("trace_clock"), "boot")?;
        write_file(&d.join("buffer_size_kb"), &opts.buffer_kb.to_string())?;
        let ports = port_filter(&opts.ports);
        let state_filter = match &ports {
            Some(p) => format!("protocol == 6 && {p}"),
            None => "protocol == 6".to_string(),
        };
        let main = d.join("events/sock/inet_sock_set_state");
        if !main.is_dir() {
            return Err(WatchError::TraceFs(
                "the kernel has no sock:inet_sock_set_state tracepoint (Linux 4.16+)".into(),
            ));
        }
        self.enable("sock/inet_sock_set_state", Some(&state_filter), true)?;
        // Helpers that make the story exact where they exist: who sent or received a RST,
        // and the cookie a timewait socket inherits. Absent on old kernels: optional.
        self.enable("tcp/tcp_send_reset", None, false)?;
        self.enable("tcp/tcp_receive_reset", ports.as_deref(), false)?;
        self.enable("tcp/tcp_destroy_sock", ports.as_deref(), false)?;
        write_file(&d.join("tracing_on"), "1")?;
        if opts.binary {
            if let Some(raw) = self.open_raw()? {
                self.raw = Some(raw);
                return Ok(());
            }
        }
        let pipe_path = d.join("trace_pipe");
        let pipe = OpenOptions::new()
            .read(true)
            .custom_flags(rustix::fs::OFlags::NONBLOCK.bits() as i32)
            .open(&pipe_path)
            .map_err(|e| WatchError::io(&pipe_path, e))?;
        self.pipe = Some(pipe);
        Ok(())
    }

    /// Opens every CPU's `trace_pipe_raw` and reads the formats; None when the instance
    /// has no per-CPU files or a format does not parse (then the text pipe is used).
    fn open_raw(&self) -> Result<Option<Raw>, WatchError> {
        let fmt = |ev: &str| {
            fs::read_to_string(self.dir.join("events").join(ev).join("format"))
                .ok()
                .and_then(|t| crate::raw::parse_format(&t))
        };
        let formats = crate::raw::Formats {
            set_state: fmt("sock/inet_sock_set_state"),
            send_reset: fmt("tcp/tcp_send_reset"),
            receive_reset: fmt("tcp/tcp_receive_reset"),
            destroy: fmt("tcp/tcp_destroy_sock"),
        };
        if formats.set_state.is_none() {
            return Ok(None);
        }
        let Ok(dir) = fs::read_dir(self.dir.join("per_cpu")) else {
            return Ok(None);
        };
        let mut cpus = Vec::new();
        for e in dir.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let Some(cpu) = name.strip_prefix("cpu").and_then(|n| n.parse::<u32>().ok()) else {
                continue;
            };
            let path = e.path().join("trace_pipe_raw");
            let f = OpenOptions::new()
                .read(true)
                .custom_flags(rustix::fs::OFlags::NONBLOCK.bits() as i32)
                .open(&path)
                .map_err(|e| WatchError::io(&path, e))?;
            cpus.push((cpu, f));
        }
        if cpus.is_empty() {
            return Ok(None);
        }
        cpus.sort_by_key(|c| c.0);
        // One read returns at most one sub-buffer (page by default).
        let sub_kb = fs::read_to_string(self.dir.join("buffer_subbuf_size_kb"))
            .ok()
            .and_then(|t| t.trim().parse::<usize>().ok())
            .unwrap_or(4)
            .max(4);
        Ok(Some(Raw {
            cpus,
            page: vec![0u8; sub_kb * 1024],
            formats,
        }))
    }

    /// Whether the binary per-CPU pages are read.
    pub fn is_binary(&self) -> bool {
        self.raw.is_some()
    }

    /// Reads every page available now from every CPU (never blocks), decoding events
    /// into `f`, then sorts nothing: events of one CPU come in order, CPUs interleave.
    /// Returns (records not decoded, pages that said events were lost before them).
    pub fn read_raw(
        &mut self,
        mut f: impl FnMut(crate::event::TraceEvent),
    ) -> Result<(u64, u64), WatchError> {
        let Some(raw) = self.raw.as_mut() else {
            return Ok((0, 0));
        };
        let (mut undecoded, mut missed) = (0, 0);
        for (cpu, file) in &mut raw.cpus {
            loop {
                match file.read(&mut raw.page) {
                    Ok(0) => break,
                    Ok(n) => {
                        let st =
                            crate::raw::decode_page(&raw.page[..n], *cpu, &raw.formats, &mut f);
                        undecoded += st.undecoded;
                        missed += st.missed;
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => {
                        return Err(WatchError::io(
                            self.dir.join(format!("per_cpu/cpu{cpu}/trace_pipe_raw")),
                            e,
                        ))
                    }
                }
            }
        }
        Ok((undecoded, missed))
    }

    fn enable(
        &mut self,
        event: &str,
        filter: Option<&str>,
        required: bool,
    ) -> Result<(), WatchError> {
        let dir = self.dir.join("events").join(event);
        if !dir.is_dir() {
            if required {
                return Err(WatchError::TraceFs(format!("no event {event}")));
            }
            return Ok(());
        }
        if let Some(f) = filter {
            write_file(&dir.join("filter"), f)?;
        }
        write_file(&dir.join("enable"), "1")?;
        self.enabled.push(Enabled {
            event: event.to_string(),
            filter: filter.unwrap_or("").to_string(),
        });
        Ok(())
    }

    /// The instance directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The instance name.
    pub fn name(&self) -> String {
        self.dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    }

    /// Reads every complete line available now (never blocks), calling `f` on each.
    /// Returns the number of bytes read.
    pub fn read_available(&mut self, mut f: impl FnMut(&str)) -> Result<usize, WatchError> {
        let Some(pipe) = self.pipe.as_mut() else {
            return Ok(0);
        };
        let mut buf = vec![0u8; 256 * 1024];
        let mut total = 0;
        loop {
            match pipe.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    total += n;
                    self.tail.extend_from_slice(&buf[..n]);
                    let mut start = 0;
                    while let Some(pos) = self.tail[start..].iter().position(|&b| b == b'\n') {
                        let line = &self.tail[start..start + pos];
                        f(&String::from_utf8_lossy(line));
                        start += pos + 1;
                    }
                    self.tail.drain(..start);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(WatchError::io(self.dir.join("trace_pipe"), e)),
            }
        }
        Ok(total)
    }

    /// Events the ring buffer lost (`overrun` + `dropped events` over every CPU's stats).
    pub fn lost_events(&self) -> u64 {
        let mut lost = 0;
        let Ok(dir) = fs::read_dir(self.dir.join("per_cpu")) else {
            return 0;
        };
        for e in dir.flatten() {
            if let Ok(text) = fs::read_to_string(e.path().join("stats")) {
                for line in text.lines() {
                    if let Some(v) = line
                        .strip_prefix("overrun:")
                        .or_else(|| line.strip_prefix("dropped events:"))
                    {
                        lost += v.trim().parse::<u64>().unwrap_or(0);
                    }
                }
            }
        }
        lost
    }

    /// Disables the events, closes the pipe and removes the instance.
    pub fn remove(&mut self) -> Result<(), WatchError> {
        if !self.dir.exists() {
            return Ok(());
        }
        let _ = write_file(&self.dir.join("tracing_on"), "0");
        self.pipe = None;
        self.raw = None;
        remove_instance_dir(&self.dir).map_err(|e| WatchError::io(&self.dir, e))
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        let _ = self.remove();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instance_names() {
        assert_eq!(instance_pid("tcpstate-123"), Some(123));
        assert_eq!(instance_pid("tcpstate-123-2"), Some(123));
        assert_eq!(instance_pid("tcpstate-x"), None);
        assert_eq!(instance_pid("tcpstate-1-x"), None);
        assert_eq!(instance_pid("other-1"), None);
    }

    #[test]
    fn port_filter_text() {
        assert_eq!(port_filter(&[]), None);
        assert_eq!(
            port_filter(&[80, 443]).unwrap(),
            "(sport == 80 || dport == 80 || sport == 443 || dport == 443)"
        );
    }
}
