//! The parsed form of a packet script (the packetdrill subset described in the crate docs).

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use tcpstate_fsm::Flags;

/// A position in a script file: 1-based line and column (columns count characters).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Pos {
    /// 1-based line.
    pub line: usize,
    /// 1-based column, in characters.
    pub col: usize,
}

impl fmt::Display for Pos {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.line, self.col)
    }
}

/// A whole script.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Script {
    /// Where it was read from (used in messages and to run `./relative` shell commands).
    pub path: PathBuf,
    /// Header options (`--tolerance_usecs=10000`), in order.
    pub options: Vec<HeaderOption>,
    /// Events in script order.
    pub events: Vec<Event>,
}

impl Script {
    /// The value of a header option, if given (`--name=value`).
    pub fn option(&self, name: &str) -> Option<&str> {
        self.options
            .iter()
            .rev()
            .find(|o| o.name == name)
            .map(|o| o.value.as_deref().unwrap_or(""))
    }

    /// The script's file name without directories, for tables.
    pub fn name(&self) -> String {
        self.path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| self.path.display().to_string())
    }
}

/// `--name=value` in the script header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeaderOption {
    /// Where it was written.
    pub pos: Pos,
    /// The name without the leading dashes.
    pub name: String,
    /// The value after `=`, if any.
    pub value: Option<String>,
}

/// One line of the script that does something at a time.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// Where the event starts (its time column, or its first character when untimed).
    pub pos: Pos,
    /// When it happens.
    pub time: EventTime,
    /// What happens.
    pub kind: EventKind,
}

/// A point in script time: absolute (from the start) or relative to the previous event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeSpec {
    /// Written with a leading `+`.
    pub relative: bool,
    /// The amount.
    pub offset: Duration,
}

/// The time column of an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventTime {
    /// No time column (an initial shell command such as `` `./defaults.sh` ``): runs at once.
    Untimed,
    /// `*`: any time (outbound packets only make sense here).
    Any,
    /// `0.1` or `+.01`.
    At(TimeSpec),
    /// `a~b`: anywhere within the range (both ends inclusive).
    Range(TimeSpec, TimeSpec),
    /// `start...end`: a blocking call started at `start` that returns at `end`.
    Blocking(TimeSpec, TimeSpec),
}

/// What an event does.
#[derive(Debug, Clone, PartialEq)]
pub enum EventKind {
    /// A segment injected (`<`) or expected (`>`).
    Packet(PacketSpec),
    /// A socket call with its expected result.
    Call(CallSpec),
    /// A backquoted shell command that must exit 0.
    Shell(String),
    /// A `%{ ... }%` code block (parsed, not run: no Python interpreter here).
    Code(String),
}

/// Direction of a packet line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Direction {
    /// `<`: from the remote peer to the local stack (the runner injects it).
    Inbound,
    /// `>`: from the local stack to the remote peer (the runner expects it).
    Outbound,
}

/// A TCP option as written in a script (`mss 1460`, `nop`, `sackOK`, `wscale 7`,
/// `TS val 100 ecr 0`, `sack 1:2`, `eol`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TcpOption {
    /// End of option list (kind 0).
    Eol,
    /// No operation (kind 1).
    Nop,
    /// Maximum segment size (kind 2).
    Mss(u16),
    /// Window scale shift (kind 3).
    WindowScale(u8),
    /// SACK permitted (kind 4).
    SackPermitted,
    /// SACK blocks (kind 5), left:right, relative to the sender's peer's ISN in scripts.
    Sack([(u32, u32); 4], u8),
    /// Timestamps (kind 8): value and echo reply.
    Timestamp(u32, u32),
}

impl TcpOption {
    /// The SACK blocks of a `Sack` option as a slice (empty for other options).
    pub fn sack_blocks(&self) -> &[(u32, u32)] {
        match self {
            TcpOption::Sack(blocks, n) => &blocks[..usize::from(*n).min(4)],
            _ => &[],
        }
    }
}

impl fmt::Display for TcpOption {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TcpOption::Eol => write!(f, "eol"),
            TcpOption::Nop => write!(f, "nop"),
            TcpOption::Mss(v) => write!(f, "mss {v}"),
            TcpOption::WindowScale(v) => write!(f, "wscale {v}"),
            TcpOption::SackPermitted => write!(f, "sackOK"),
            TcpOption::Sack(..) => {
                write!(f, "sack")?;
                for (l, r) in self.sack_blocks() {
                    write!(f, " {l}:{r}")?;
                }
                Ok(())
            }
            TcpOption::Timestamp(v, e) => write!(f, "TS val {v} ecr {e}"),
        }
    }
}

/// The options part of a packet line.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum OptionsSpec {
    /// Nothing written: the segment carries no options.
    #[default]
    None,
    /// `<...>`: options are not checked.
    Any,
    /// An explicit list.
    List(Vec<TcpOption>),
}

/// Formats options as in a script: `<mss 1460,nop,wscale 7>`.
pub fn format_options(options: &[TcpOption]) -> String {
    let inner: Vec<String> = options.iter().map(|o| o.to_string()).collect();
    format!("<{}>", inner.join(","))
}

/// A packet line: `< S 0:0(0) win 32792 <mss 1000,sackOK>` or `> F. 1:1(0) ack 1`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PacketSpec {
    /// `<` or `>`.
    pub direction: Direction,
    /// Control bits (`.` is ACK).
    pub flags: Flags,
    /// Starting sequence number, relative to the sender's ISN.
    pub seq: u32,
    /// Payload length in octets.
    pub len: u32,
    /// `ack N` relative to the receiver's ISN, when written.
    pub ack: Option<u32>,
    /// `win N` (as on the wire, unscaled), when written.
    pub window: Option<u32>,
    /// `urg N`, when written.
    pub urgent: Option<u16>,
    /// The options part.
    pub options: OptionsSpec,
}

impl fmt::Display for PacketSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let dir = match self.direction {
            Direction::Inbound => '<',
            Direction::Outbound => '>',
        };
        write!(
            f,
            "{dir} {} {}:{}({})",
            self.flags.short(),
            self.seq,
            self.seq.wrapping_add(self.len),
            self.len
        )?;
        if let Some(a) = self.ack {
            write!(f, " ack {a}")?;
        }
        if let Some(w) = self.window {
            write!(f, " win {w}")?;
        }
        if let Some(u) = self.urgent {
            write!(f, " urg {u}")?;
        }
        match &self.options {
            OptionsSpec::None => Ok(()),
            OptionsSpec::Any => write!(f, " <...>"),
            OptionsSpec::List(l) => write!(f, " {}", format_options(l)),
        }
    }
}

/// An argument of a call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Arg {
    /// `...`: the runner fills it in.
    Ellipsis,
    /// An integer.
    Int(i64),
    /// A symbolic constant (`SOCK_STREAM`), or several joined by `|` (`O_RDWR|O_NONBLOCK`).
    Names(Vec<String>),
    /// `[1]`: a pointer to an array of arguments (an `int *` for setsockopt).
    Array(Vec<Arg>),
    /// `{onoff=1, linger=0}`: a struct, fields in order.
    Struct(Vec<(String, Arg)>),
    /// `"text"`.
    Str(String),
}

impl fmt::Display for Arg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Arg::Ellipsis => write!(f, "..."),
            Arg::Int(i) => write!(f, "{i}"),
            Arg::Names(n) => write!(f, "{}", n.join("|")),
            Arg::Array(a) => {
                let parts: Vec<String> = a.iter().map(|x| x.to_string()).collect();
                write!(f, "[{}]", parts.join(", "))
            }
            Arg::Struct(fields) => {
                let parts: Vec<String> = fields.iter().map(|(k, v)| format!("{k}={v}")).collect();
                write!(f, "{{{}}}", parts.join(", "))
            }
            Arg::Str(s) => write!(f, "{s:?}"),
        }
    }
}

/// The expected result of a call: `= 0`, `= 1000`, `= -1 ECONNRESET (Connection reset by peer)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expected {
    /// `= N` with N >= 0 (or any value that is not -1 with an errno).
    Value(i64),
    /// `= -1 NAME`: failure with that errno.
    Errno(String),
}

impl fmt::Display for Expected {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Expected::Value(v) => write!(f, "{v}"),
            Expected::Errno(e) => write!(f, "-1 {e}"),
        }
    }
}

/// A call line: `setsockopt(3, SOL_SOCKET, SO_REUSEADDR, [1], 4) = 0`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallSpec {
    /// The call's name.
    pub name: String,
    /// Its arguments.
    pub args: Vec<Arg>,
    /// The expected result.
    pub expected: Expected,
}

impl fmt::Display for CallSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self.args.iter().map(|a| a.to_string()).collect();
        write!(f, "{}({}) = {}", self.name, parts.join(", "), self.expected)
    }
}

/// `{onoff=1, linger=0}` → `Some(0 s)`; `{onoff=0, ...}` → `None` (SO_LINGER off).
pub fn linger(arg: Option<&Arg>) -> Result<Option<Duration>, String> {
    let Some(Arg::Struct(fields)) = arg else {
        return Err("SO_LINGER needs {onoff=N, linger=N}".into());
    };
    let get = |name: &str| {
        fields
            .iter()
            .find(|(k, _)| k == name)
            .and_then(|(_, v)| match v {
                Arg::Int(i) => Some(*i),
                _ => None,
            })
    };
    match (get("onoff"), get("linger")) {
        (Some(0), _) => Ok(None),
        (Some(_), Some(l)) => Ok(Some(Duration::from_secs(l.max(0) as u64))),
        _ => Err("SO_LINGER needs {onoff=N, linger=N}".into()),
    }
}
