//! The `ls` filter: words like `close-wait dport 443 process java`, parsed once and matched
//! per socket. States (any spelling, or the `ss` groups) are handed to the kernel's state
//! mask; the rest is matched here.
//!
//! Grammar: `[state] STATE | GROUP`, `port|sport|dport [=] [:]N`, `src|dst|addr [=] IP[/LEN]`,
//! `pid [=] N`, `process|comm [=] NAME`; `KEY=VALUE` works too. Predicates of one kind
//! are alternatives (OR), different kinds must all hold (AND).

use crate::model::Socket;
use std::net::IpAddr;
use tcpstate_fsm::State;

/// A filter that did not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FilterError {
    /// A keyword without its value.
    #[error("filter keyword {0:?} needs a value")]
    MissingValue(String),
    /// A value that does not parse.
    #[error("bad value {value:?} for {key}: {why}")]
    BadValue {
        /// The keyword.
        key: String,
        /// The value.
        value: String,
        /// What was expected.
        why: &'static str,
    },
    /// Not a state, group or keyword.
    #[error("unknown filter word {0:?}: expected a state (e.g. close-wait), a group (all, connected, synchronized, bucket, big), or port/sport/dport/src/dst/addr/pid/process")]
    Unknown(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Net {
    ip: IpAddr,
    len: u8,
}

impl Net {
    fn parse(key: &str, v: &str) -> Result<Net, FilterError> {
        let bad = |why| FilterError::BadValue {
            key: key.into(),
            value: v.into(),
            why,
        };
        let v2 = v.trim_start_matches('[');
        let (ip, len) = match v2.split_once('/') {
            Some((ip, l)) => (ip, Some(l.parse::<u8>().map_err(|_| bad("prefix length"))?)),
            None => (v2, None),
        };
        let ip: IpAddr = ip
            .trim_end_matches(']')
            .parse()
            .map_err(|_| bad("an IP address"))?;
        let max = if ip.is_ipv4() { 32 } else { 128 };
        let len = len.unwrap_or(max);
        if len > max {
            return Err(bad("prefix length too long"));
        }
        Ok(Net { ip, len })
    }

    fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
            v4 => v4,
        };
        let (a, b, bits): (u128, u128, u32) = match (self.ip, ip) {
            (IpAddr::V4(n), IpAddr::V4(x)) => (u32::from(n).into(), u32::from(x).into(), 32),
            (IpAddr::V6(n), IpAddr::V6(x)) => (u128::from(n), u128::from(x), 128),
            _ => return false,
        };
        let shift = bits - u32::from(self.len);
        shift >= bits || (a >> shift) == (b >> shift)
    }
}

/// A parsed filter.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filter {
    /// States wanted (empty: all).
    pub states: Vec<State>,
    ports: Vec<u16>,
    sports: Vec<u16>,
    dports: Vec<u16>,
    srcs: Vec<Net>,
    dsts: Vec<Net>,
    addrs: Vec<Net>,
    pids: Vec<u32>,
    processes: Vec<String>,
}

fn group(word: &str) -> Option<Vec<State>> {
    use State::*;
    let w = word.to_ascii_lowercase();
    let all: Vec<State> = State::ALL.to_vec();
    Some(match w.as_str() {
        "all" => all,
        // ss: connected = all but LISTEN and CLOSED; synchronized = connected but SYN_SENT.
        "connected" => all
            .into_iter()
            .filter(|s| !matches!(s, Listen | Closed))
            .collect(),
        "synchronized" => all
            .into_iter()
            .filter(|s| !matches!(s, Listen | Closed | SynSent))
            .collect(),
        // The minisockets: request and timewait sockets.
        "bucket" => vec![SynReceived, TimeWait],
        "big" => all
            .into_iter()
            .filter(|s| !matches!(s, SynReceived | TimeWait))
            .collect(),
        "listening" => vec![Listen],
        _ => return None,
    })
}

fn port(key: &str, v: &str) -> Result<u16, FilterError> {
    v.trim_start_matches(':')
        .parse()
        .map_err(|_| FilterError::BadValue {
            key: key.into(),
            value: v.into(),
            why: "a port number 0-65535",
        })
}

impl Filter {
    /// Parses filter words.
    pub fn parse<S: AsRef<str>>(words: &[S]) -> Result<Filter, FilterError> {
        let mut f = Filter::default();
        let mut it = words.iter().map(|w| w.as_ref()).peekable();
        while let Some(word) = it.next() {
            let (key, inline) = match word.split_once('=') {
                Some((k, v)) if !k.is_empty() => (k.to_ascii_lowercase(), Some(v.to_string())),
                _ => (word.to_ascii_lowercase(), None),
            };
            let keyed = matches!(
                key.as_str(),
                "state"
                    | "port"
                    | "sport"
                    | "dport"
                    | "src"
                    | "dst"
                    | "addr"
                    | "pid"
                    | "process"
                    | "comm"
            );
            if !keyed {
                if let Some(g) = group(word) {
                    f.states.extend(g);
                } else if let Ok(s) = word.parse::<State>() {
                    f.states.push(s);
                } else {
                    return Err(FilterError::Unknown(word.to_string()));
                }
                continue;
            }
            let value = match inline {
                Some(v) => v,
                None => {
                    // Allow `dport = 443` as well as `dport 443`.
                    if it.peek() == Some(&"=") {
                        it.next();
                    }
                    it.next()
                        .ok_or_else(|| FilterError::MissingValue(key.clone()))?
                        .to_string()
                }
            };
            let v = value.as_str();
            match key.as_str() {
                "state" => match group(v) {
                    Some(g) => f.states.extend(g),
                    None => f.states.push(v.parse().map_err(|_| FilterError::BadValue {
                        key: key.clone(),
                        value: v.into(),
                        why: "a TCP state or group",
                    })?),
                },
                "port" => f.ports.push(port(&key, v)?),
                "sport" => f.sports.push(port(&key, v)?),
                "dport" => f.dports.push(port(&key, v)?),
                "src" => f.srcs.push(Net::parse(&key, v)?),
                "dst" => f.dsts.push(Net::parse(&key, v)?),
                "addr" => f.addrs.push(Net::parse(&key, v)?),
                "pid" => f.pids.push(v.parse().map_err(|_| FilterError::BadValue {
                    key: key.clone(),
                    value: v.into(),
                    why: "a process id",
                })?),
                _ => f.processes.push(v.to_string()),
            }
        }
        f.states.sort();
        f.states.dedup();
        Ok(f)
    }

    /// Whether every socket passes [`Filter::matches_socket`] (no state, port or address
    /// predicate): then the output needs the owner of every socket.
    pub fn selects_every_socket(&self) -> bool {
        self.states.is_empty()
            && self.ports.is_empty()
            && self.sports.is_empty()
            && self.dports.is_empty()
            && self.srcs.is_empty()
            && self.dsts.is_empty()
            && self.addrs.is_empty()
    }

    /// Whether the filter needs owners (pid or process predicates).
    pub fn needs_owners(&self) -> bool {
        !self.pids.is_empty() || !self.processes.is_empty()
    }

    /// Whether a socket passes everything but the owner predicates.
    pub fn matches_socket(&self, s: &Socket) -> bool {
        fn any<T>(v: &[T], f: impl Fn(&T) -> bool) -> bool {
            v.is_empty() || v.iter().any(f)
        }
        (self.states.is_empty() || self.states.contains(&s.state))
            && any(&self.ports, |p| s.local.port() == *p || s.peer.port() == *p)
            && any(&self.sports, |p| s.local.port() == *p)
            && any(&self.dports, |p| s.peer.port() == *p)
            && any(&self.srcs, |n| n.contains(s.local.ip()))
            && any(&self.dsts, |n| n.contains(s.peer.ip()))
            && any(&self.addrs, |n| {
                n.contains(s.local.ip()) || n.contains(s.peer.ip())
            })
    }

    /// Whether a socket passes the owner predicates (false without a known owner when
    /// there are any).
    pub fn matches_owner(&self, s: &Socket) -> bool {
        self.matches_owner_of(s.owner.as_ref())
    }

    /// [`Filter::matches_owner`] for an owner kept outside the socket (e.g. looked up in
    /// [`crate::owners::OwnerScan::owners`] by inode, without copying it into every row).
    pub fn matches_owner_of(&self, owner: Option<&crate::model::Owner>) -> bool {
        if !self.needs_owners() {
            return true;
        }
        let Some(o) = owner else { return false };
        (self.pids.is_empty() || self.pids.contains(&o.pid))
            && (self.processes.is_empty() || self.processes.contains(&o.process))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Socket;
    use proptest::prelude::*;

    fn sock(state: State, local: &str, peer: &str) -> Socket {
        crate::model::test_socket(state, local, peer)
    }

    #[test]
    fn states_in_any_spelling_and_groups() {
        let f = Filter::parse(&["close-wait", "TIME_WAIT", "state", "FIN-WAIT-1"]).unwrap();
        assert_eq!(
            f.states,
            vec![State::FinWait1, State::CloseWait, State::TimeWait]
        );
        let f = Filter::parse(&["bucket"]).unwrap();
        assert_eq!(f.states, vec![State::SynReceived, State::TimeWait]);
        assert_eq!(Filter::parse(&["connected"]).unwrap().states.len(), 9);
    }

    #[test]
    fn ports_and_addresses() {
        let s = sock(
            State::Established,
            "10.0.0.5:40000",
            "[::ffff:192.168.1.9]:443",
        );
        assert!(Filter::parse(&["dport", "443"]).unwrap().matches_socket(&s));
        assert!(Filter::parse(&["dport=:443"]).unwrap().matches_socket(&s));
        assert!(Filter::parse(&["dport", "=", "443"])
            .unwrap()
            .matches_socket(&s));
        assert!(!Filter::parse(&["sport", "443"]).unwrap().matches_socket(&s));
        assert!(Filter::parse(&["port", "40000"])
            .unwrap()
            .matches_socket(&s));
        assert!(Filter::parse(&["dst", "192.168.0.0/16"])
            .unwrap()
            .matches_socket(&s));
        assert!(
            Filter::parse(&["src", "10.0.0.0/8", "dport", "80", "dport", "443"])
                .unwrap()
                .matches_socket(&s)
        );
        assert!(!Filter::parse(&["addr", "172.16.0.0/12"])
            .unwrap()
            .matches_socket(&s));
        assert!(!Filter::parse(&["close-wait"]).unwrap().matches_socket(&s));
    }

    #[test]
    fn owner_predicates_need_an_owner() {
        let mut s = sock(State::CloseWait, "127.0.0.1:80", "127.0.0.1:5000");
        let f = Filter::parse(&["process", "java"]).unwrap();
        assert!(f.needs_owners());
        assert!(f.selects_every_socket());
        assert!(!Filter::parse(&["dport", "1"])
            .unwrap()
            .selects_every_socket());
        assert!(!f.matches_owner(&s));
        s.owner = Some(crate::model::Owner {
            pid: 812,
            process: "java".into(),
            fd: 3,
            cmdline: String::new(),
        });
        assert!(f.matches_owner(&s));
        assert!(!Filter::parse(&["pid", "1"]).unwrap().matches_owner(&s));
    }

    #[test]
    fn bad_filters_are_clear_errors() {
        assert!(matches!(
            Filter::parse(&["dport"]),
            Err(FilterError::MissingValue(_))
        ));
        assert!(Filter::parse(&["dport", "http"])
            .unwrap_err()
            .to_string()
            .contains("port"));
        assert!(matches!(
            Filter::parse(&["bogus"]),
            Err(FilterError::Unknown(_))
        ));
        assert!(Filter::parse(&["src", "1.2.3.4/40"]).is_err());
    }

    proptest! {
        #[test]
        fn garbage_never_panics(words in proptest::collection::vec("\\PC{0,12}", 0..6)) {
            if let Ok(f) = Filter::parse(&words) {
                let _ = f.matches_socket(&sock(State::Listen, "[::1]:1", "[::]:0"));
            }
        }
    }
}
