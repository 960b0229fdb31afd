//! What the machine backend understands of backquoted shell lines: `sysctl` settings, a
//! `./defaults.sh`-style file of them, and `ss ... | grep` state assertions. The kernel
//! backend runs the very same lines with `/bin/sh` inside its namespace; this module gives
//! them a meaning without a shell, so both backends answer the same question.

use std::path::{Path, PathBuf};
use std::str::FromStr;

use tcpstate_fsm::State;

/// A shell line the machine can evaluate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ShellCommand {
    /// `sysctl [-q] [-w] name=value ...`.
    Sysctl(Vec<(String, String)>),
    /// A file of further lines (`./defaults.sh`), resolved against the script's directory.
    File(PathBuf),
    /// `exit 0` (the last line of such a file).
    Exit(i32),
    /// An `ss` state assertion.
    Ss(SsCheck),
}

/// `[!] ss -tanH [state S]... | grep -q ADDR [| grep -qv LISTEN]`: whether a TCP socket whose
/// line mentions ADDR exists in one of the states.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SsCheck {
    /// Leading `!`: the assertion is that no such socket exists.
    pub negated: bool,
    /// The `state` filters; empty = all states.
    pub states: Vec<State>,
    /// The address grepped for.
    pub pattern: String,
    /// A trailing `grep -v LISTEN`: listeners do not count.
    pub exclude_listen: bool,
}

impl SsCheck {
    /// Evaluates the check against the sockets that mention the pattern's address (the
    /// states of the connections with that peer; listeners never mention the peer).
    pub fn holds(&self, sockets_with_peer: &[State]) -> bool {
        let found = sockets_with_peer.iter().any(|s| {
            (self.states.is_empty() || self.states.contains(s))
                && !(self.exclude_listen && *s == State::Listen)
        });
        found != self.negated
    }
}

/// A shell line the machine backend does not understand.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the machine backend does not understand the shell command `{command}`: {why}")]
pub struct ShellError {
    /// The command.
    pub command: String,
    /// Why.
    pub why: String,
}

fn err(command: &str, why: impl Into<String>) -> ShellError {
    ShellError {
        command: command.to_string(),
        why: why.into(),
    }
}

/// `ss` state filter names (iproute2 misc/ss.c `sstate_namel`) and groups.
fn ss_states(name: &str) -> Option<Vec<State>> {
    let all_but = |skip: &[State]| -> Vec<State> {
        State::ALL
            .iter()
            .copied()
            .filter(|s| !skip.contains(s))
            .collect()
    };
    match name {
        "all" => Some(State::ALL.to_vec()),
        "connected" => Some(all_but(&[State::Listen, State::Closed])),
        "synchronized" => Some(all_but(&[State::Listen, State::Closed, State::SynSent])),
        "bucket" => Some(vec![State::SynReceived, State::TimeWait]),
        "big" => Some(all_but(&[State::SynReceived, State::TimeWait])),
        "established" => Some(vec![State::Established]),
        "syn-recv" => Some(vec![State::SynReceived]),
        _ => State::from_str(name).ok().map(|s| vec![s]),
    }
}

/// Parses one shell line.
pub fn parse_command(command: &str) -> Result<ShellCommand, ShellError> {
    let line = command.trim();
    let stages: Vec<&str> = line.split('|').map(str::trim).collect();
    let first: Vec<&str> = stages
        .first()
        .copied()
        .unwrap_or("")
        .split_whitespace()
        .collect();
    let (negated, words) = match first.split_first() {
        Some((&"!", rest)) => (true, rest),
        _ => (false, &first[..]),
    };
    let Some((&program, args)) = words.split_first() else {
        return Err(err(command, "empty command"));
    };
    match program {
        "sysctl" if !negated && stages.len() == 1 => {
            let mut settings = Vec::new();
            for a in args {
                if a.starts_with('-') {
                    if !matches!(*a, "-q" | "-w" | "-qw" | "-wq") {
                        return Err(err(command, format!("sysctl option {a}")));
                    }
                    continue;
                }
                let Some((k, v)) = a.split_once('=') else {
                    return Err(err(command, "only `sysctl name=value` settings are understood"));
                };
                settings.push((k.replace('/', "."), v.to_string()));
            }
            if settings.is_empty() {
                return Err(err(command, "sysctl without settings"));
            }
            Ok(ShellCommand::Sysctl(settings))
        }
        "exit" if !negated && stages.len() == 1 => match args {
            [code] => code
                .parse()
                .map(ShellCommand::Exit)
                .map_err(|_| err(command, "exit needs a number")),
            [] => Ok(ShellCommand::Exit(0)),
            _ => Err(err(command, "exit takes one number")),
        },
        p if p.ends_with(".sh") && !negated && args.is_empty() && stages.len() == 1 => {
            Ok(ShellCommand::File(PathBuf::from(p)))
        }
        "ss" => parse_ss(command, negated, args, &stages[1..]),
        other => Err(err(command, format!("unknown program {other:?} (understood: sysctl, ss | grep, *.sh files of those, exit)"))),
    }
}

fn parse_ss(
    command: &str,
    negated: bool,
    args: &[&str],
    rest: &[&str],
) -> Result<ShellCommand, ShellError> {
    let mut states = Vec::new();
    let mut it = args.iter();
    let mut tcp = false;
    while let Some(a) = it.next() {
        if let Some(flags) = a.strip_prefix('-') {
            if flags.starts_with('-') {
                return Err(err(command, format!("ss option {a}")));
            }
            for f in flags.chars() {
                match f {
                    't' => tcp = true,
                    // -a all, -n numeric, -H no header, -4 IPv4: do not change which sockets match.
                    'a' | 'n' | 'H' | '4' => {}
                    _ => return Err(err(command, format!("ss option -{f}"))),
                }
            }
        } else if *a == "state" {
            let Some(name) = it.next() else {
                return Err(err(command, "`state` needs a state name"));
            };
            let Some(s) = ss_states(name) else {
                return Err(err(command, format!("unknown ss state {name:?}")));
            };
            states.extend(s);
        } else {
            return Err(err(command, format!("ss argument {a:?}")));
        }
    }
    if !tcp {
        return Err(err(command, "only `ss -t` (TCP) is understood"));
    }
    // Listing every state is the same as no filter.
    if State::ALL.iter().all(|s| states.contains(s)) {
        states.clear();
    }
    let mut pattern = None;
    let mut exclude_listen = false;
    for (k, stage) in rest.iter().enumerate() {
        let w: Vec<&str> = stage.split_whitespace().collect();
        match (k, w.as_slice()) {
            (0, ["grep", "-q", p]) | (0, ["grep", p]) if !p.starts_with('-') => {
                pattern = Some(p.to_string())
            }
            (1, ["grep", "-qv" | "-vq", "LISTEN"]) | (1, ["grep", "-v", "-q", "LISTEN"]) => {
                exclude_listen = true
            }
            _ => {
                return Err(err(
                    command,
                    format!(
                    "pipeline stage `{stage}` (understood: `grep -q ADDR`, then `grep -qv LISTEN`)"
                ),
                ))
            }
        }
    }
    let Some(pattern) = pattern else {
        return Err(err(command, "an ss check needs `| grep -q ADDR`"));
    };
    Ok(ShellCommand::Ss(SsCheck {
        negated,
        states,
        pattern,
        exclude_listen,
    }))
}

/// Reads a file of shell lines (`defaults.sh`): one command a line; blank lines and `#`
/// comments are skipped. Each command comes back with its 1-based line number.
pub fn parse_file(path: &Path) -> Result<Vec<(usize, ShellCommand)>, ShellError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| err(&path.display().to_string(), format!("cannot read it: {e}")))?;
    let mut out = Vec::new();
    for (k, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let cmd = parse_command(line).map_err(|e| ShellError {
            command: format!("{}:{}: {}", path.display(), k + 1, e.command),
            why: e.why,
        })?;
        out.push((k + 1, cmd));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shared_scripts_shell_lines_parse() {
        let c = parse_command("ss -tanH state time-wait | grep -q 192.0.2.1").unwrap();
        let ShellCommand::Ss(c) = c else { panic!() };
        assert_eq!(c.states, vec![State::TimeWait]);
        assert!(!c.negated);
        assert!(c.holds(&[State::TimeWait]));
        assert!(!c.holds(&[State::FinWait2]));

        let ShellCommand::Ss(c) =
            parse_command("! ss -tanH | grep 192.0.2.1 | grep -qv LISTEN").unwrap()
        else {
            panic!()
        };
        assert!(c.negated && c.exclude_listen && c.states.is_empty());
        assert!(c.holds(&[]));
        assert!(c.holds(&[State::Listen]));
        assert!(!c.holds(&[State::LastAck]));

        assert_eq!(
            parse_command("sysctl -q net.ipv4.tcp_rfc1337=1").unwrap(),
            ShellCommand::Sysctl(vec![("net.ipv4.tcp_rfc1337".into(), "1".into())])
        );
        assert_eq!(
            parse_command("./defaults.sh").unwrap(),
            ShellCommand::File("./defaults.sh".into())
        );
        for s in [
            "closing",
            "fin-wait-2",
            "close-wait",
            "last-ack",
            "established",
        ] {
            let line = format!("ss -tanH state {s} | grep -q 192.0.2.1");
            assert!(parse_command(&line).is_ok(), "{line}");
        }
    }

    #[test]
    fn anything_else_is_a_clear_error() {
        for bad in [
            "rm -rf /",
            "ss -tanH state nosuch | grep -q x",
            "ss -tanH",
            "sysctl -a",
            "! sysctl -q a=1",
            "",
        ] {
            assert!(parse_command(bad).is_err(), "{bad}");
        }
    }
}
