//! The parser: every shared and own script parses; errors name file, line and column; garbage
//! never panics.

mod common;

use std::path::Path;

use proptest::prelude::*;
use tcpstate_conform::script::{Direction, EventKind, EventTime, Expected, OptionsSpec, TcpOption};
use tcpstate_conform::{parse_file, parse_str};

#[test]
fn every_shared_and_own_script_parses() {
    let mut paths = common::own_scripts();
    assert!(paths.len() >= 7, "own scripts: {paths:?}");
    if let Some(shared) = common::shared_scripts() {
        assert_eq!(shared.len(), 16, "{shared:?}");
        paths.extend(shared);
    }
    for p in paths {
        let s = parse_file(&p).unwrap_or_else(|e| panic!("{e}"));
        assert!(s.events.len() > 5, "{}", p.display());
    }
}

#[test]
fn a_shared_script_parses_into_what_it_says() {
    let Some(shared) = common::shared_scripts() else {
        return;
    };
    let k = shared
        .iter()
        .find(|p| p.ends_with("K_last_ack_fin_rto.pkt"))
        .unwrap();
    let s = parse_file(k).unwrap();
    assert!(matches!(&s.events[0].kind, EventKind::Shell(c) if c == "./defaults.sh"));
    assert_eq!(s.events[0].time, EventTime::Untimed);
    // `+.2~+1.2 > F. 1:1(0) ack 2`
    let rto = s
        .events
        .iter()
        .find(|e| matches!(e.time, EventTime::Range(..)))
        .unwrap();
    let EventTime::Range(a, b) = rto.time else {
        unreachable!()
    };
    assert!(a.relative && b.relative);
    assert_eq!(a.offset.as_millis(), 200);
    assert_eq!(b.offset.as_millis(), 1200);
    let EventKind::Packet(p) = &rto.kind else {
        panic!()
    };
    assert_eq!(p.direction, Direction::Outbound);
    assert_eq!(
        (p.flags.short().as_str(), p.seq, p.len, p.ack),
        ("F.", 1, 0, Some(2))
    );
    assert_eq!(rto.pos.line, 16);
}

#[test]
fn the_packetdrill_syntax_of_close_and_shutdown_scripts_parses() {
    // Written for this test in the style of packetdrill's gtests/net/tcp/close and shutdown
    // scripts: blocking calls, O_NONBLOCK, errno results, option lists, `<...>`, comments.
    let text = r#"
--tolerance_usecs=10000
/* a block
   comment */
`../common/defaults.sh`
    0 socket(..., SOCK_STREAM, IPPROTO_TCP) = 3
   +0 fcntl(3, F_SETFL, O_RDWR|O_NONBLOCK) = 0
   +0 connect(3, ..., ...) = -1 EINPROGRESS (Operation now in progress)
   +0 > S 0:0(0) <...>
 +.01...0.011 connect(3, ..., ...) = 0
  +.1 < S. 0:0(0) ack 1 win 32000 <mss 1460,nop,wscale 7,TS val 100 ecr 0,nop,nop,sackOK>
   +0 >  . 1:1(0) ack 1   // trailing comment
   +0 write(3, ..., 1000) = 1000
   +0 >  P. 1:1001(1000) ack 1
   +0 < . 1:1(0) ack 1001 win 257 <nop,nop,sack 1:2 5:9>
   +0 setsockopt(3, SOL_SOCKET, SO_LINGER, {onoff=1, linger=0}, 8) = 0
   +0 write(4, ..., 1000) = -1 EPIPE (Broken pipe)
    * > R 1001:1001(0)
%{ assert tcpi_state == 1 }%
"#;
    let s = parse_str(Path::new("inline.pkt"), text).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(s.option("tolerance_usecs"), Some("10000"));
    assert!(matches!(s.events.last().unwrap().kind, EventKind::Code(_)));
    let blocking = s
        .events
        .iter()
        .find(|e| matches!(e.time, EventTime::Blocking(..)))
        .unwrap();
    let EventTime::Blocking(a, b) = blocking.time else {
        unreachable!()
    };
    assert!(a.relative && !b.relative);
    assert_eq!(b.offset.as_micros(), 11_000);
    let errno = s.events.iter().find_map(|e| match &e.kind {
        EventKind::Call(c) if c.name == "connect" => Some(c.expected.clone()),
        _ => None,
    });
    assert_eq!(errno, Some(Expected::Errno("EINPROGRESS".into())));
    let sack = s.events.iter().find_map(|e| match &e.kind {
        EventKind::Packet(p) => match &p.options {
            OptionsSpec::List(l) => l.iter().find(|o| matches!(o, TcpOption::Sack(..))).copied(),
            _ => None,
        },
        _ => None,
    });
    assert_eq!(sack.unwrap().sack_blocks(), &[(1, 2), (5, 9)]);
    assert_eq!(
        s.events.iter().filter(|e| e.time == EventTime::Any).count(),
        1
    );
}

fn error_of(text: &str) -> String {
    parse_str(Path::new("bad.pkt"), text)
        .unwrap_err()
        .to_string()
}

#[test]
fn errors_name_file_line_and_column() {
    assert_eq!(
        error_of("0 socket(..., SOCK_STREAM, IPPROTO_TCP) = 3\n+0 > F. 1:2(0) ack 1\n"),
        "bad.pkt:2:9: inconsistent 1:2(0): end - seq must equal len"
    );
    assert_eq!(
        error_of("+0 < F. 1:1(0) win 257\n"),
        "bad.pkt:1:6: an inbound packet with the ACK flag (.) needs `ack N`"
    );
    assert_eq!(
        error_of("// ok\n  +0 > . 1:1(0) ack 1 <mss 1460,frob 3>\n"),
        "bad.pkt:2:33: unsupported TCP option \"frob\" (supported: mss, nop, eol, sackOK, wscale, TS, sack)"
    );
    assert_eq!(
        error_of("+0 close(4) = 0 garbage\n"),
        "bad.pkt:1:17: unexpected 'g' after the end of the event"
    );
    assert_eq!(
        error_of("+0 `ss -tan\n"),
        "bad.pkt:1:4: unterminated backquoted command"
    );
    assert_eq!(
        error_of("close(3) = 0\n"),
        "bad.pkt:1:1: expected a time (0.1, +.01, a~b, *, start...end), a header option or a backquoted command, found 'c'"
    );
    assert_eq!(
        error_of("+0 read(4, ..., 10) = -7\n"),
        "bad.pkt:1:23: a failing call returns -1 followed by an errno name"
    );
    assert_eq!(
        error_of("/* never closed\n+0 close(3) = 0\n"),
        "bad.pkt:1:1: unterminated /* comment"
    );
    assert_eq!(
        error_of("+0 > . 99999999999:1(0)\n"),
        "bad.pkt:1:8: a sequence number (seq:end(len)) 99999999999 does not fit in 32 bits"
    );
}

#[test]
fn a_missing_file_is_an_error_naming_it() {
    let e = parse_file(Path::new("/nonexistent/x.pkt"))
        .unwrap_err()
        .to_string();
    assert_eq!(e, "cannot read script /nonexistent/x.pkt");
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 500, ..ProptestConfig::default() })]

    #[test]
    fn garbage_never_panics(text in "\\PC{0,200}") {
        let _ = parse_str(Path::new("fuzz.pkt"), &text);
    }

    #[test]
    fn script_like_garbage_never_panics(
        parts in proptest::collection::vec(
            prop_oneof![
                Just("+0 "), Just("< "), Just("> "), Just("S. "), Just("F. "), Just("1:1(0) "),
                Just("ack "), Just("win "), Just("<mss 1460,"), Just("sack 1:2 "), Just(">"),
                Just("..."), Just("~"), Just("+.2"), Just("close("), Just("3"), Just(")"),
                Just(" = "), Just("-1 "), Just("ECONNRESET "), Just("(x)"), Just("\n"),
                Just("`"), Just("%{"), Just("}%"), Just("/*"), Just("*/"), Just("//"),
                Just("{onoff=1, "), Just("["), Just("]"), Just("4294967296"), Just("--x="),
                Just("\"s"), Just("|"), Just("*"),
            ],
            0..40,
        )
    ) {
        let text: String = parts.concat();
        let _ = parse_str(Path::new("fuzz.pkt"), &text);
    }

    #[test]
    fn mutated_real_scripts_never_panic(cut in 0usize..2000, insert in "\\PC{0,8}") {
        let base = "`./defaults.sh`\n    0 socket(..., SOCK_STREAM, IPPROTO_TCP) = 3\n   +0 setsockopt(4, SOL_SOCKET, SO_LINGER, {onoff=1, linger=0}, 8) = 0\n+.2~+1.2 > F. 1:1(0) ack 2 <nop,nop,sack 1:2>\n   +0 `! ss -tanH | grep -q 192.0.2.1`\n";
        let chars: Vec<char> = base.chars().collect();
        let at = cut % (chars.len() + 1);
        let mut text: String = chars[..at].iter().collect();
        text.push_str(&insert);
        text.extend(chars[at..].iter());
        let _ = parse_str(Path::new("fuzz.pkt"), &text);
    }
}
