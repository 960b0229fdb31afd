//! Network namespaces: which ones to look at, and running a closure inside one.
//!
//! A namespace is entered with setns(2) in a dedicated thread, which switches back to its
//! original namespace before it ends, so the caller's thread never changes namespace.
//! Per-namespace files are read through `/proc/thread-self/net/`, because `/proc/net`
//! follows the thread-group leader, not the calling thread.

use crate::error::HostError;
use std::collections::BTreeMap;
use std::fs::File;
use std::os::fd::AsFd;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// Which network namespaces to look at.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum NetnsSelector {
    /// The caller's.
    #[default]
    Current,
    /// `/run/netns/NAME` (as made by `ip netns add`).
    Named(String),
    /// The one process PID is in (`/proc/PID/ns/net`).
    Pid(u32),
    /// Every distinct namespace among `/proc/*/ns/net` and `/run/netns/*`.
    All,
}

/// A namespace ready to be entered.
#[derive(Debug)]
pub struct NetnsTarget {
    /// A name for people.
    pub name: String,
    /// The nsfs inode.
    pub inode: Option<u64>,
    /// Open namespace file; `None` for the caller's own namespace (no setns needed).
    file: Option<(File, PathBuf)>,
}

const RUN_NETNS: &str = "/run/netns";

fn ns_inode(path: &Path) -> Option<u64> {
    std::fs::metadata(path).ok().map(|m| m.ino())
}

/// Names of /run/netns entries by nsfs inode.
fn run_netns_names() -> BTreeMap<u64, String> {
    let mut names = BTreeMap::new();
    if let Ok(dir) = std::fs::read_dir(RUN_NETNS) {
        for e in dir.flatten() {
            if let Some(ino) = ns_inode(&e.path()) {
                names
                    .entry(ino)
                    .or_insert_with(|| e.file_name().to_string_lossy().into_owned());
            }
        }
    }
    names
}

fn label(ino: Option<u64>, names: &BTreeMap<u64, String>, fallback: String) -> String {
    let init = ns_inode(Path::new("/proc/1/ns/net"));
    match ino {
        Some(i) if names.contains_key(&i) => names[&i].clone(),
        Some(i) if Some(i) == init => "init".to_string(),
        _ => fallback,
    }
}

fn open(name: String, path: PathBuf) -> Result<NetnsTarget, HostError> {
    let file = File::open(&path).map_err(|source| HostError::Netns {
        name: name.clone(),
        path: path.clone(),
        source,
    })?;
    let inode = file.metadata().ok().map(|m| m.ino());
    Ok(NetnsTarget {
        name,
        inode,
        file: Some((file, path)),
    })
}

/// Whether the namespace with nsfs inode `inode` is the initial one (that of pid 1):
/// `None` when either inode is unknown (reading /proc/1/ns/net needs ptrace rights over
/// pid 1, i.e. root).
pub fn is_initial(inode: Option<u64>) -> Option<bool> {
    let init = ns_inode(Path::new("/proc/1/ns/net"))?;
    Some(inode? == init)
}

/// Resolves a selector into namespaces to enter.
pub fn resolve(sel: &NetnsSelector) -> Result<Vec<NetnsTarget>, HostError> {
    let names = run_netns_names();
    let own = ns_inode(Path::new("/proc/thread-self/ns/net"));
    match sel {
        NetnsSelector::Current => Ok(vec![NetnsTarget {
            name: label(
                own,
                &names,
                own.map_or("current".into(), |i| format!("net:[{i}]")),
            ),
            inode: own,
            file: None,
        }]),
        NetnsSelector::Named(n) => {
            if n.is_empty() || n.contains('/') || n == "." || n == ".." {
                return Err(HostError::Netns {
                    name: n.clone(),
                    path: PathBuf::from(RUN_NETNS).join(n),
                    source: std::io::Error::new(
                        std::io::ErrorKind::InvalidInput,
                        "a netns name is a file name under /run/netns",
                    ),
                });
            }
            open(n.clone(), PathBuf::from(RUN_NETNS).join(n)).map(|t| vec![t])
        }
        NetnsSelector::Pid(pid) => {
            let path = PathBuf::from(format!("/proc/{pid}/ns/net"));
            let mut t = open(format!("pid:{pid}"), path)?;
            t.name = label(t.inode, &names, t.name);
            Ok(vec![t])
        }
        NetnsSelector::All => {
            let mut seen = BTreeMap::<u64, NetnsTarget>::new();
            // Named ones first, so they keep their names.
            for (ino, name) in &names {
                if let Ok(t) = open(name.clone(), PathBuf::from(RUN_NETNS).join(name)) {
                    seen.entry(*ino).or_insert(t);
                }
            }
            let dir = std::fs::read_dir("/proc").map_err(|e| HostError::read("/proc", e))?;
            let mut pids: Vec<u32> = dir
                .flatten()
                .filter_map(|e| e.file_name().to_str()?.parse().ok())
                .collect();
            pids.sort_unstable();
            for pid in pids {
                let path = PathBuf::from(format!("/proc/{pid}/ns/net"));
                let Some(ino) = ns_inode(&path) else { continue }; // vanished or denied
                if seen.contains_key(&ino) {
                    continue;
                }
                if let Ok(mut t) = open(format!("pid:{pid}"), path) {
                    t.name = label(Some(ino), &names, t.name);
                    seen.insert(ino, t);
                }
            }
            let mut out: Vec<NetnsTarget> = seen.into_values().collect();
            // The caller's own namespace first, without setns.
            out.sort_by_key(|t| (t.inode != own, t.name != "init", t.name.clone()));
            if let Some(first) = out.first_mut() {
                if first.inode == own {
                    first.file = None;
                }
            }
            Ok(out)
        }
    }
}

/// Runs `f` inside the namespace (in a dedicated thread unless it is the caller's own).
pub fn run_in<T: Send>(target: &NetnsTarget, f: impl FnOnce() -> T + Send) -> Result<T, HostError> {
    let Some((file, path)) = &target.file else {
        return Ok(f());
    };
    std::thread::scope(|scope| {
        let handle = std::thread::Builder::new()
            .name(format!("netns-{}", target.name))
            .spawn_scoped(scope, || -> Result<T, HostError> {
                let enter_err = |source| HostError::Netns {
                    name: target.name.clone(),
                    path: path.clone(),
                    source,
                };
                let original = File::open("/proc/thread-self/ns/net")
                    .map_err(|e| HostError::read("/proc/thread-self/ns/net", e))?;
                crate::sys::setns_net(file.as_fd()).map_err(enter_err)?;
                let out = f();
                // Restore, although the thread ends right after: nothing else may ever
                // run on a thread left in a foreign namespace.
                crate::sys::setns_net(original.as_fd()).map_err(|source| HostError::Netns {
                    name: "original".into(),
                    path: "/proc/thread-self/ns/net".into(),
                    source,
                })?;
                Ok(out)
            })
            .map_err(|_| HostError::Thread(target.name.clone()))?;
        handle
            .join()
            .map_err(|_| HostError::Thread(target.name.clone()))?
    })
}
