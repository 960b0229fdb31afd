//! A hand-written parser for the packetdrill subset: a character cursor that knows its line
//! and column, so every error names `file:line:col`. It never panics on any input (indexing
//! goes through `get`, numbers through checked parsing; a proptest feeds it garbage).

use std::path::{Path, PathBuf};
use std::time::Duration;

use tcpstate_fsm::Flags;

use crate::script::{
    Arg, CallSpec, Direction, Event, EventKind, EventTime, Expected, HeaderOption, OptionsSpec,
    PacketSpec, Pos, Script, TcpOption, TimeSpec,
};

/// A script that could not be parsed (or read).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}:{pos}: {message}", path.display())]
pub struct ParseError {
    /// The file.
    pub path: PathBuf,
    /// Where the problem is.
    pub pos: Pos,
    /// What is wrong.
    pub message: String,
}

/// Reads and parses a script file.
pub fn parse_file(path: &Path) -> Result<Script, crate::Error> {
    let text = std::fs::read_to_string(path).map_err(|source| crate::Error::Read {
        path: path.to_path_buf(),
        source,
    })?;
    Ok(parse_str(path, &text)?)
}

/// Parses script text; `path` is used in error messages and kept in the [`Script`].
pub fn parse_str(path: &Path, text: &str) -> Result<Script, ParseError> {
    let mut p = Parser {
        path: path.to_path_buf(),
        chars: text.chars().collect(),
        i: 0,
        line: 1,
        col: 1,
    };
    p.script()
}

struct Parser {
    path: PathBuf,
    chars: Vec<char>,
    i: usize,
    line: usize,
    col: usize,
}

type PResult<T> = Result<T, ParseError>;

fn is_ident_start(c: char) -> bool {
    c.is_ascii_alphabetic() || c == '_'
}

fn is_ident_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

impl Parser {
    fn pos(&self) -> Pos {
        Pos {
            line: self.line,
            col: self.col,
        }
    }

    fn err_at<T>(&self, pos: Pos, message: impl Into<String>) -> PResult<T> {
        Err(ParseError {
            path: self.path.clone(),
            pos,
            message: message.into(),
        })
    }

    fn err<T>(&self, message: impl Into<String>) -> PResult<T> {
        self.err_at(self.pos(), message)
    }

    fn peek(&self) -> Option<char> {
        self.chars.get(self.i).copied()
    }

    fn peek_at(&self, k: usize) -> Option<char> {
        self.chars.get(self.i.saturating_add(k)).copied()
    }

    fn starts_with(&self, s: &str) -> bool {
        s.chars()
            .enumerate()
            .all(|(k, c)| self.peek_at(k) == Some(c))
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.i += 1;
        if c == '\n' {
            self.line += 1;
            self.col = 1;
        } else {
            self.col += 1;
        }
        Some(c)
    }

    fn bump_n(&mut self, n: usize) {
        for _ in 0..n {
            self.bump();
        }
    }

    /// What the next character is, for messages.
    fn describe_next(&self) -> String {
        match self.peek() {
            None => "end of file".to_string(),
            Some('\n') => "end of line".to_string(),
            Some(c) => format!("{c:?}"),
        }
    }

    /// Skips blanks and comments on the current line (not the newline). A `/* */` comment may
    /// span lines.
    fn skip_inline(&mut self) -> PResult<()> {
        loop {
            match self.peek() {
                Some(' ' | '\t' | '\r') => {
                    self.bump();
                }
                Some('/') if self.peek_at(1) == Some('/') => {
                    while !matches!(self.peek(), None | Some('\n')) {
                        self.bump();
                    }
                }
                Some('/') if self.peek_at(1) == Some('*') => {
                    let start = self.pos();
                    self.bump_n(2);
                    loop {
                        if self.starts_with("*/") {
                            self.bump_n(2);
                            break;
                        }
                        if self.bump().is_none() {
                            return self.err_at(start, "unterminated /* comment");
                        }
                    }
                }
                _ => return Ok(()),
            }
        }
    }

    /// Skips blanks, comments and newlines.
    fn skip_all(&mut self) -> PResult<()> {
        loop {
            self.skip_inline()?;
            if self.peek() == Some('\n') {
                self.bump();
            } else {
                return Ok(());
            }
        }
    }

    /// After an event: only blanks and comments may follow on its line.
    fn end_of_line(&mut self) -> PResult<()> {
        self.skip_inline()?;
        match self.peek() {
            None | Some('\n') => Ok(()),
            Some(_) => self.err(format!(
                "unexpected {} after the end of the event",
                self.describe_next()
            )),
        }
    }

    fn expect(&mut self, c: char, what: &str) -> PResult<()> {
        if self.peek() == Some(c) {
            self.bump();
            Ok(())
        } else {
            self.err(format!("expected {what}, found {}", self.describe_next()))
        }
    }

    fn script(&mut self) -> PResult<Script> {
        let mut script = Script {
            path: self.path.clone(),
            ..Script::default()
        };
        loop {
            self.skip_all()?;
            let Some(c) = self.peek() else { break };
            let pos = self.pos();
            if c == '-' && self.peek_at(1) == Some('-') {
                if !script.events.is_empty() {
                    return self.err("header options (--name=value) must come before the events");
                }
                script.options.push(self.header_option()?);
                self.end_of_line()?;
                continue;
            }
            let time = if c == '`' || self.starts_with("%{") {
                EventTime::Untimed
            } else {
                self.time()?
            };
            self.skip_inline()?;
            let kind = self.event_body(time)?;
            self.end_of_line()?;
            script.events.push(Event { pos, time, kind });
        }
        Ok(script)
    }

    fn header_option(&mut self) -> PResult<HeaderOption> {
        let pos = self.pos();
        self.bump_n(2);
        let name = self.word_with(|c| is_ident_char(c) || c == '-');
        if name.is_empty() {
            return self.err("expected an option name after --");
        }
        let value = if self.peek() == Some('=') {
            self.bump();
            let mut v = String::new();
            while let Some(c) = self.peek() {
                if c.is_whitespace() || self.starts_with("//") {
                    break;
                }
                v.push(c);
                self.bump();
            }
            Some(v)
        } else {
            None
        };
        Ok(HeaderOption { pos, name, value })
    }

    fn word_with(&mut self, ok: impl Fn(char) -> bool) -> String {
        let mut s = String::new();
        while let Some(c) = self.peek() {
            if !ok(c) {
                break;
            }
            s.push(c);
            self.bump();
        }
        s
    }

    fn ident(&mut self, what: &str) -> PResult<String> {
        match self.peek() {
            Some(c) if is_ident_start(c) => Ok(self.word_with(is_ident_char)),
            _ => self.err(format!("expected {what}, found {}", self.describe_next())),
        }
    }

    /// A non-negative decimal time in seconds: `0`, `.01`, `1.5`.
    fn seconds(&mut self) -> PResult<Duration> {
        let pos = self.pos();
        let int = self.word_with(|c| c.is_ascii_digit());
        let mut frac = String::new();
        // `...` after a number is the blocking-call separator, not a decimal point.
        if self.peek() == Some('.') && !self.starts_with("...") {
            self.bump();
            frac = self.word_with(|c| c.is_ascii_digit());
        }
        if int.is_empty() && frac.is_empty() {
            return self.err_at(
                pos,
                format!("expected a time, found {}", self.describe_next()),
            );
        }
        let secs: u64 = if int.is_empty() {
            0
        } else {
            match int.parse() {
                Ok(v) if v <= 1_000_000 => v,
                _ => return self.err_at(pos, "time too large"),
            }
        };
        // Microsecond resolution, as packetdrill (digits beyond the sixth are ignored).
        let mut micros: u64 = 0;
        for k in 0..6 {
            let d = frac
                .chars()
                .nth(k)
                .and_then(|c| c.to_digit(10))
                .unwrap_or(0);
            micros = micros * 10 + u64::from(d);
        }
        Ok(Duration::from_secs(secs) + Duration::from_micros(micros))
    }

    fn time_spec(&mut self) -> PResult<TimeSpec> {
        let relative = if self.peek() == Some('+') {
            self.bump();
            true
        } else {
            false
        };
        Ok(TimeSpec {
            relative,
            offset: self.seconds()?,
        })
    }

    fn time(&mut self) -> PResult<EventTime> {
        match self.peek() {
            Some('*') => {
                self.bump();
                Ok(EventTime::Any)
            }
            Some(c) if c == '+' || c == '.' || c.is_ascii_digit() => {
                let start = self.time_spec()?;
                if self.peek() == Some('~') {
                    self.bump();
                    let end = self.time_spec()?;
                    Ok(EventTime::Range(start, end))
                } else if self.starts_with("...") {
                    self.bump_n(3);
                    let end = self.time_spec()?;
                    Ok(EventTime::Blocking(start, end))
                } else {
                    Ok(EventTime::At(start))
                }
            }
            _ => self.err(format!(
                "expected a time (0.1, +.01, a~b, *, start...end), a header option or a backquoted command, found {}",
                self.describe_next()
            )),
        }
    }

    fn event_body(&mut self, time: EventTime) -> PResult<EventKind> {
        match self.peek() {
            Some('<') => {
                self.bump();
                Ok(EventKind::Packet(self.packet(Direction::Inbound)?))
            }
            Some('>') => {
                self.bump();
                Ok(EventKind::Packet(self.packet(Direction::Outbound)?))
            }
            Some('`') => Ok(EventKind::Shell(self.backquoted()?)),
            Some('%') if self.peek_at(1) == Some('{') => Ok(EventKind::Code(self.code_block()?)),
            Some(c) if is_ident_start(c) => {
                if time == EventTime::Any {
                    return self.err("a call cannot happen at any time (*)");
                }
                Ok(EventKind::Call(self.call()?))
            }
            _ => self.err(format!(
                "expected a packet (< or >), a call, or a backquoted command, found {}",
                self.describe_next()
            )),
        }
    }

    fn backquoted(&mut self) -> PResult<String> {
        let start = self.pos();
        self.bump();
        let mut s = String::new();
        loop {
            match self.bump() {
                Some('`') => return Ok(s),
                Some(c) => s.push(c),
                None => return self.err_at(start, "unterminated backquoted command"),
            }
        }
    }

    fn code_block(&mut self) -> PResult<String> {
        let start = self.pos();
        self.bump_n(2);
        let mut s = String::new();
        loop {
            if self.starts_with("}%") {
                self.bump_n(2);
                return Ok(s);
            }
            match self.bump() {
                Some(c) => s.push(c),
                None => return self.err_at(start, "unterminated %{ code block"),
            }
        }
    }

    fn u32_value(&mut self, what: &str) -> PResult<u32> {
        let pos = self.pos();
        let digits = self.word_with(|c| c.is_ascii_digit());
        if digits.is_empty() {
            return self.err_at(
                pos,
                format!("expected {what}, found {}", self.describe_next()),
            );
        }
        match digits.parse::<u32>() {
            Ok(v) => Ok(v),
            Err(_) => self.err_at(pos, format!("{what} {digits} does not fit in 32 bits")),
        }
    }

    /// Blanks only (packet and option fields are separated by spaces on one line).
    fn blanks(&mut self) {
        while matches!(self.peek(), Some(' ' | '\t' | '\r')) {
            self.bump();
        }
    }

    fn packet(&mut self, direction: Direction) -> PResult<PacketSpec> {
        self.blanks();
        let flags_pos = self.pos();
        let text = self.word_with(|c| "SFRPEWU.-".contains(c));
        if text.is_empty() {
            return self.err(format!(
                "expected TCP flags (S F R P . or -), found {}",
                self.describe_next()
            ));
        }
        let mut flags = Flags::NONE;
        for c in text.chars() {
            flags |= match c {
                'S' => Flags::SYN,
                'F' => Flags::FIN,
                'R' => Flags::RST,
                'P' => Flags::PSH,
                '.' => Flags::ACK,
                'U' => Flags::URG,
                '-' => Flags::NONE,
                // ECE and CWR (ECN) are not part of this subset.
                _ => {
                    return self.err_at(
                        flags_pos,
                        format!("flag {c:?} (ECN) is not supported; use S F R P U . or -"),
                    )
                }
            };
        }
        self.blanks();
        let seq_pos = self.pos();
        let seq = self.u32_value("a sequence number (seq:end(len))")?;
        self.expect(':', "':' in seq:end(len)")?;
        let end = self.u32_value("an end sequence number")?;
        self.expect('(', "'(' in seq:end(len)")?;
        let len = self.u32_value("a payload length")?;
        self.expect(')', "')' after the payload length")?;
        if end.wrapping_sub(seq) != len {
            return self.err_at(
                seq_pos,
                format!("inconsistent {seq}:{end}({len}): end - seq must equal len"),
            );
        }
        let mut spec = PacketSpec {
            direction,
            flags,
            seq,
            len,
            ack: None,
            window: None,
            urgent: None,
            options: OptionsSpec::None,
        };
        loop {
            self.blanks();
            match self.peek() {
                Some('<') => {
                    let pos = self.pos();
                    self.bump();
                    spec.options = self.options()?;
                    if spec.options == OptionsSpec::Any && direction == Direction::Inbound {
                        return self.err_at(
                            pos,
                            "<...> (don't check options) only makes sense on an outbound (>) packet",
                        );
                    }
                }
                Some(c) if is_ident_start(c) => {
                    let pos = self.pos();
                    let word = self.word_with(is_ident_char);
                    self.blanks();
                    match word.as_str() {
                        "ack" => spec.ack = Some(self.u32_value("an ack number")?),
                        "win" => spec.window = Some(self.u32_value("a window")?),
                        "urg" => {
                            let v = self.u32_value("an urgent pointer")?;
                            spec.urgent = Some(u16::try_from(v).or_else(|_| {
                                self.err_at(pos, "urgent pointer does not fit in 16 bits")
                            })?);
                        }
                        _ => {
                            return self.err_at(
                                pos,
                                format!("unknown packet field {word:?} (expected ack, win, urg or <options>)"),
                            )
                        }
                    }
                }
                _ => break,
            }
        }
        if spec.ack.is_some() != flags.ack() && direction == Direction::Inbound {
            return self.err_at(
                flags_pos,
                if flags.ack() {
                    "an inbound packet with the ACK flag (.) needs `ack N`"
                } else {
                    "`ack N` given without the ACK flag (.)"
                },
            );
        }
        Ok(spec)
    }

    fn options(&mut self) -> PResult<OptionsSpec> {
        self.blanks();
        if self.starts_with("...") {
            self.bump_n(3);
            self.blanks();
            self.expect('>', "'>' after <...")?;
            return Ok(OptionsSpec::Any);
        }
        let mut list = Vec::new();
        loop {
            self.blanks();
            let pos = self.pos();
            let name = self.ident("a TCP option (mss, nop, sackOK, wscale, TS, sack, eol)")?;
            self.blanks();
            let opt = match name.as_str() {
                "nop" => TcpOption::Nop,
                "eol" => TcpOption::Eol,
                "sackOK" => TcpOption::SackPermitted,
                "mss" => {
                    let v = self.u32_value("an MSS")?;
                    TcpOption::Mss(
                        u16::try_from(v).or_else(|_| self.err_at(pos, "mss does not fit in 16 bits"))?,
                    )
                }
                "wscale" => {
                    let v = self.u32_value("a window scale")?;
                    TcpOption::WindowScale(
                        u8::try_from(v)
                            .or_else(|_| self.err_at(pos, "wscale does not fit in 8 bits"))?,
                    )
                }
                "TS" => {
                    let w = self.ident("`val`")?;
                    if w != "val" {
                        return self.err_at(pos, "expected `TS val N ecr N`");
                    }
                    self.blanks();
                    let val = self.u32_value("a timestamp value")?;
                    self.blanks();
                    let w = self.ident("`ecr`")?;
                    if w != "ecr" {
                        return self.err_at(pos, "expected `TS val N ecr N`");
                    }
                    self.blanks();
                    let ecr = self.u32_value("a timestamp echo reply")?;
                    TcpOption::Timestamp(val, ecr)
                }
                "sack" => {
                    let mut blocks = [(0u32, 0u32); 4];
                    let mut n = 0u8;
                    while matches!(self.peek(), Some(c) if c.is_ascii_digit()) {
                        if n == 4 {
                            return self.err_at(pos, "at most four SACK blocks fit in a TCP header");
                        }
                        let l = self.u32_value("a SACK block start")?;
                        self.expect(':', "':' in a SACK block left:right")?;
                        let r = self.u32_value("a SACK block end")?;
                        blocks[usize::from(n)] = (l, r);
                        n += 1;
                        self.blanks();
                    }
                    if n == 0 {
                        return self.err_at(pos, "sack needs at least one block left:right");
                    }
                    TcpOption::Sack(blocks, n)
                }
                other => {
                    return self.err_at(
                        pos,
                        format!("unsupported TCP option {other:?} (supported: mss, nop, eol, sackOK, wscale, TS, sack)"),
                    )
                }
            };
            list.push(opt);
            self.blanks();
            match self.peek() {
                Some(',') => {
                    self.bump();
                }
                Some('>') => {
                    self.bump();
                    return Ok(OptionsSpec::List(list));
                }
                _ => {
                    return self.err(format!(
                        "expected ',' or '>' in the option list, found {}",
                        self.describe_next()
                    ))
                }
            }
        }
    }

    fn call(&mut self) -> PResult<CallSpec> {
        let name = self.ident("a call name")?;
        self.blanks();
        self.expect('(', "'(' after the call name")?;
        let args = self.arg_list(')')?;
        self.blanks();
        self.expect('=', "'= result' after the call")?;
        self.blanks();
        let pos = self.pos();
        let value = self.integer("a result")?;
        self.blanks();
        let expected = if value == -1 && matches!(self.peek(), Some(c) if is_ident_start(c)) {
            let errno = self.ident("an errno name")?;
            self.blanks();
            if self.peek() == Some('(') {
                // `(Connection reset by peer)`: free text, may itself contain parentheses.
                let start = self.pos();
                let mut depth = 0usize;
                loop {
                    match self.peek() {
                        Some('(') => depth += 1,
                        Some(')') => {
                            depth = depth.saturating_sub(1);
                            if depth == 0 {
                                self.bump();
                                break;
                            }
                        }
                        None | Some('\n') => {
                            return self.err_at(start, "unterminated errno description (...)")
                        }
                        _ => {}
                    }
                    self.bump();
                }
            }
            Expected::Errno(errno)
        } else if value < -1 {
            return self.err_at(pos, "a failing call returns -1 followed by an errno name");
        } else {
            Expected::Value(value)
        };
        Ok(CallSpec {
            name,
            args,
            expected,
        })
    }

    fn integer(&mut self, what: &str) -> PResult<i64> {
        let pos = self.pos();
        let negative = if self.peek() == Some('-') {
            self.bump();
            true
        } else {
            false
        };
        let (radix, digits) = if self.starts_with("0x") || self.starts_with("0X") {
            self.bump_n(2);
            (16, self.word_with(|c| c.is_ascii_hexdigit()))
        } else {
            (10, self.word_with(|c| c.is_ascii_digit()))
        };
        if digits.is_empty() {
            return self.err_at(
                pos,
                format!("expected {what}, found {}", self.describe_next()),
            );
        }
        match i64::from_str_radix(&digits, radix) {
            Ok(v) => Ok(if negative { -v } else { v }),
            Err(_) => self.err_at(pos, format!("{what} is out of range")),
        }
    }

    fn arg_list(&mut self, close: char) -> PResult<Vec<Arg>> {
        let mut args = Vec::new();
        self.blanks();
        if self.peek() == Some(close) {
            self.bump();
            return Ok(args);
        }
        loop {
            self.blanks();
            args.push(self.arg()?);
            self.blanks();
            match self.peek() {
                Some(',') => {
                    self.bump();
                }
                Some(c) if c == close => {
                    self.bump();
                    return Ok(args);
                }
                _ => {
                    return self.err(format!(
                        "expected ',' or {close:?} in the argument list, found {}",
                        self.describe_next()
                    ))
                }
            }
        }
    }

    fn arg(&mut self) -> PResult<Arg> {
        match self.peek() {
            Some('.') if self.starts_with("...") => {
                self.bump_n(3);
                Ok(Arg::Ellipsis)
            }
            Some('[') => {
                self.bump();
                Ok(Arg::Array(self.arg_list(']')?))
            }
            Some('{') => {
                self.bump();
                let mut fields = Vec::new();
                loop {
                    self.blanks();
                    if self.peek() == Some('}') && fields.is_empty() {
                        self.bump();
                        break;
                    }
                    let name = self.ident("a struct field name")?;
                    self.blanks();
                    self.expect('=', "'=' after the struct field name")?;
                    self.blanks();
                    let v = self.arg()?;
                    fields.push((name, v));
                    self.blanks();
                    match self.peek() {
                        Some(',') => {
                            self.bump();
                        }
                        Some('}') => {
                            self.bump();
                            break;
                        }
                        _ => {
                            return self.err(format!(
                                "expected ',' or '}}' in the struct, found {}",
                                self.describe_next()
                            ))
                        }
                    }
                }
                Ok(Arg::Struct(fields))
            }
            Some('"') => {
                let start = self.pos();
                self.bump();
                let mut s = String::new();
                loop {
                    match self.bump() {
                        Some('"') => return Ok(Arg::Str(s)),
                        Some('\\') => match self.bump() {
                            Some('n') => s.push('\n'),
                            Some(c) => s.push(c),
                            None => return self.err_at(start, "unterminated string"),
                        },
                        Some(c) => s.push(c),
                        None => return self.err_at(start, "unterminated string"),
                    }
                }
            }
            Some(c) if c == '-' || c.is_ascii_digit() => Ok(Arg::Int(self.integer("an integer")?)),
            Some(c) if is_ident_start(c) => {
                let mut names = vec![self.word_with(is_ident_char)];
                loop {
                    self.blanks();
                    if self.peek() != Some('|') {
                        break;
                    }
                    self.bump();
                    self.blanks();
                    names.push(self.ident("a constant after '|'")?);
                }
                Ok(Arg::Names(names))
            }
            _ => self.err(format!(
                "expected an argument, found {}",
                self.describe_next()
            )),
        }
    }
}
