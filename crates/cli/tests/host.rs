//! `tcpstate ls` and `tcpstate doctor` on a private network namespace holding a CLOSE_WAIT
//! socket (this test process is the leaking program). Skipped when not root.
#![cfg(target_os = "linux")]

use assert_cmd::Command;
use std::io::Read;
use std::net::{TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;
use tcpstate_host::netns::{resolve, run_in, NetnsSelector};

struct Ns(String);
impl Drop for Ns {
    fn drop(&mut self) {
        let _ = std::process::Command::new("ip")
            .args(["netns", "del", &self.0])
            .status();
    }
}

fn setup(tag: &str) -> Option<Ns> {
    if std::fs::metadata("/proc/self")
        .map(|m| m.uid())
        .unwrap_or(1)
        != 0
    {
        eprintln!("SKIP {tag}: needs root for a private network namespace");
        return None;
    }
    let name = format!("tcpstate-cli-{tag}-{}", std::process::id());
    let ok = std::process::Command::new("ip")
        .args(["netns", "add", &name])
        .status();
    if !ok.is_ok_and(|s| s.success()) {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI: cannot create a netns"
        );
        eprintln!("SKIP {tag}: `ip netns add` failed");
        return None;
    }
    let ns = Ns(name);
    assert!(std::process::Command::new("ip")
        .args(["-n", &ns.0, "link", "set", "lo", "up"])
        .status()
        .unwrap()
        .success());
    eprintln!("RUN {tag} in network namespace {}", ns.0);
    Some(ns)
}

#[test]
fn ls_json_and_doctor_name_the_leak() {
    let Some(ns) = setup("leak") else { return };
    let t = resolve(&NetnsSelector::Named(ns.0.clone())).unwrap();
    let (l, held) = run_in(&t[0], || {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let c = TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (s, _) = l.accept().unwrap();
        drop(c); // the peer closes; we never do
        (l, s)
    })
    .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(200));

    let out = Command::cargo_bin("tcpstate")
        .unwrap()
        .args(["ls", "--netns", &ns.0, "--json", "close-wait"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["version"], 1);
    let socks = doc["sockets"].as_array().unwrap();
    assert_eq!(socks.len(), 1);
    let s = &socks[0];
    assert_eq!(s["state"], "CLOSE_WAIT");
    assert_eq!(s["local"], l.local_addr().unwrap().to_string());
    assert_eq!(s["pid"], std::process::id());
    assert_eq!(s["fd"], held.as_raw_fd());
    assert_eq!(s["age_estimated"], true);
    assert!(s["age_s"].as_f64().unwrap() < 30.0);
    assert_eq!(s["recv_q"], 1);
    assert_eq!(s["netns"], ns.0.as_str());

    // The table and the orphan on the other side.
    let out = Command::cargo_bin("tcpstate")
        .unwrap()
        .args(["ls", "--netns", &ns.0, "--color", "never"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.lines().next().unwrap().starts_with("STATE"), "{text}");
    assert!(
        text.contains("CLOSE_WAIT") && text.contains("FIN_WAIT_2"),
        "{text}"
    );
    assert!(
        text.contains("orphan, ") && text.contains(&format!("{}/", std::process::id())),
        "{text}"
    );

    let out = Command::cargo_bin("tcpstate")
        .unwrap()
        .args([
            "doctor",
            "--netns",
            &ns.0,
            "--close-wait-count",
            "1",
            "--fail-on",
            "warning",
            "--color",
            "never",
        ])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.contains(&format!("pid {} (", std::process::id())),
        "{text}"
    );
    assert!(text.contains("leaks CLOSE_WAIT: 1 sockets"), "{text}");
    assert!(text.contains("(estimate)"), "{text}");

    let out = Command::cargo_bin("tcpstate")
        .unwrap()
        .args(["doctor", "--netns", &ns.0, "--json"])
        .output()
        .unwrap();
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["version"], 1);
    assert!(doc["counts"]
        .as_array()
        .unwrap()
        .iter()
        .any(|c| c["state"] == "CLOSE_WAIT" && c["count"] == 1));
    let mut b = [0u8; 1];
    let _ = (&held).read(&mut b);
    drop((l, held));
}

#[test]
fn missing_netns_is_exit_2_with_its_name() {
    let out = Command::cargo_bin("tcpstate")
        .unwrap()
        .args(["ls", "--netns", "tcpstate-no-such-ns"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("tcpstate-no-such-ns"));
    let out = Command::cargo_bin("tcpstate")
        .unwrap()
        .args(["ls", "bogus-word"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}

/// Not root: sock_diag still lists every socket of the namespace (the counts stay
/// complete), the user's own processes are named, and the output says how many processes
/// could not be read. Runs `tcpstate` as `nobody` (setpriv inside `ip netns exec`).
#[test]
fn unprivileged_user_sees_own_sockets_and_is_told_what_it_cannot_see() {
    use std::os::unix::fs::PermissionsExt;
    let Some(ns) = setup("nobody") else { return };
    let have_setpriv = std::process::Command::new("setpriv")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !have_setpriv {
        assert!(std::env::var_os("CI").is_none(), "CI: setpriv is missing");
        eprintln!("SKIP nobody: setpriv (util-linux) not installed");
        return;
    }
    // A copy of the binary that `nobody` can reach (the target dir may sit under /root).
    let dir = std::env::temp_dir().join(format!("tcpstate-nobody-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    let bin = dir.join("tcpstate");
    std::fs::copy(assert_cmd::cargo::cargo_bin("tcpstate"), &bin).unwrap();
    std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).unwrap();
    let as_nobody = |args: &[&str]| {
        let mut c = std::process::Command::new("ip");
        c.args(["netns", "exec", &ns.0, "setpriv", "--reuid=nobody"])
            .args(["--regid=nogroup", "--clear-groups"])
            .arg(&bin)
            .args(args);
        c
    };

    // Root's sockets: a listener and a CLOSE_WAIT held by this (root) test process.
    let t = resolve(&NetnsSelector::Named(ns.0.clone())).unwrap();
    let (l, held) = run_in(&t[0], || {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let c = TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (s, _) = l.accept().unwrap();
        drop(c);
        (l, s)
    })
    .unwrap();
    // nobody's own connection: bash opens fd 3 to the listener, then becomes `sleep`.
    let port = l.local_addr().unwrap().port();
    let mut child = std::process::Command::new("ip")
        .args(["netns", "exec", &ns.0, "setpriv", "--reuid=nobody"])
        .args(["--regid=nogroup", "--clear-groups", "bash", "-c"])
        .arg(format!(
            "exec 3<>/dev/tcp/127.0.0.1/{port} && exec sleep 30"
        ))
        .spawn()
        .unwrap();
    let (accepted, client) = l.accept().unwrap();
    // Wait until the exec chain (ip, setpriv, bash) has become `sleep`, holding fd 3.
    let comm = format!("/proc/{}/comm", child.id());
    for _ in 0..100 {
        if std::fs::read_to_string(&comm).is_ok_and(|c| c.trim() == "sleep") {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }

    let out = as_nobody(&["ls", "--json"]).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let counts = &doc["counts"];
    assert_eq!(counts["LISTEN"], 1, "{doc}");
    assert_eq!(counts["ESTABLISHED"], 2, "{doc}");
    assert_eq!(counts["CLOSE_WAIT"], 1, "{doc}");
    let socks = doc["sockets"].as_array().unwrap();
    let own = socks
        .iter()
        .find(|s| s["state"] == "ESTABLISHED" && s["local"] == client.to_string())
        .unwrap_or_else(|| panic!("nobody's socket {client} missing: {doc}"));
    assert_eq!(own["pid"], child.id(), "{own}");
    assert_eq!(own["fd"], 3, "{own}");
    let cw = socks.iter().find(|s| s["state"] == "CLOSE_WAIT").unwrap();
    assert!(
        cw.get("pid").is_none(),
        "root's socket has no owner for nobody: {cw}"
    );
    let notes = doc["notes"].to_string();
    assert!(notes.contains("permission denied"), "{notes}");

    let out = as_nobody(&["doctor", "--close-wait-count", "1", "--color", "never"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(text.contains("leaks CLOSE_WAIT: 1 sockets"), "{text}");
    assert!(text.contains("unknown process"), "{text}");
    assert!(
        text.contains("note: owners: could not read the fds of"),
        "{text}"
    );
    // /proc/1/ns/net is unreadable: it cannot tell whether this is the initial namespace.
    assert!(
        text.contains("since boot, or since the namespace was created"),
        "{text}"
    );

    let _ = child.kill();
    let _ = child.wait();
    drop((l, held, accepted));
    let _ = std::fs::remove_dir_all(&dir);
}
