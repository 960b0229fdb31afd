//! Named, documented scenarios: two endpoints driven through a story, as a [`Timeline`].
//!
//! Each scenario drives the real [`Connection`] machine with a [`Sim`]; nothing is
//! scripted beyond the application calls and the network's faults.

use crate::{Connection, Fate, Flags, Profile, Segment, SeqNum, Side, Sim, Timeline};
use std::time::Duration;

/// Options shared by every scenario.
#[derive(Debug, Clone)]
pub struct ScenarioOptions {
    /// The profile both endpoints use.
    pub profile: Profile,
    /// One-way network latency.
    pub latency: Duration,
}

impl Default for ScenarioOptions {
    fn default() -> ScenarioOptions {
        ScenarioOptions {
            profile: Profile::linux(),
            latency: Duration::from_millis(10),
        }
    }
}

/// A named scenario.
pub struct Scenario {
    /// Name used on the command line (`client-close`).
    pub name: &'static str,
    /// One line saying what it shows.
    pub summary: &'static str,
    run: fn(&ScenarioOptions) -> Timeline,
}

impl Scenario {
    /// Run the scenario.
    pub fn run(&self, options: &ScenarioOptions) -> Timeline {
        (self.run)(options)
    }
}

/// Every scenario, in the order `simulate --list` shows them.
#[rustfmt::skip]
pub const SCENARIOS: &[Scenario] = &[
    Scenario { name: "client-close", summary: "the client closes first: it ends in TIME_WAIT, the server passes through CLOSE_WAIT and LAST_ACK", run: client_close },
    Scenario { name: "server-close", summary: "the server closes first: now the server sits in TIME_WAIT and the client in CLOSE_WAIT", run: server_close },
    Scenario { name: "simultaneous-close", summary: "both close at once: FINs cross, both go through CLOSING and both end in TIME_WAIT", run: simultaneous_close },
    Scenario { name: "lost-final-ack", summary: "the last ACK is lost: the server retransmits its FIN and TIME_WAIT re-ACKs it; nobody sees a RST", run: lost_final_ack },
    Scenario { name: "lost-fin", summary: "the client's FIN is lost and retransmitted after the RTO", run: lost_fin },
    Scenario { name: "linger-abort", summary: "SO_LINGER {1,0} then close(): RST instead of FIN, no TIME_WAIT, the peer gets ECONNRESET", run: linger_abort },
    Scenario { name: "unread-data-close", summary: "close() with unread data: Linux sends RST (RFC 2525 §2.17); the RFC profile sends FIN", run: unread_data_close },
    Scenario { name: "close-wait-leak", summary: "the server never calls close(): it sits in CLOSE_WAIT; the client waits in FIN_WAIT_2 until its orphan timeout", run: close_wait_leak },
    Scenario { name: "half-close", summary: "shutdown(SHUT_WR): the client stops sending but keeps reading while the server sends on", run: half_close },
    Scenario { name: "simultaneous-open", summary: "both send SYN at once: both pass through SYN_RECEIVED to ESTABLISHED", run: simultaneous_open },
    Scenario { name: "refused", summary: "connect() to a port nobody listens on: RST,ACK and ECONNREFUSED", run: refused },
    Scenario { name: "time-wait-assassination", summary: "an old duplicate makes TIME_WAIT send an ACK, the peer answers RST and TIME_WAIT dies early (RFC 1337); set rfc1337 to prevent it", run: time_wait_assassination },
];

/// Look a scenario up by name.
pub fn scenario(name: &str) -> Option<&'static Scenario> {
    SCENARIOS.iter().find(|s| s.name == name)
}

const CLIENT_ISS: SeqNum = SeqNum(1000);
const SERVER_ISS: SeqNum = SeqNum(5000);
/// Long enough for any timer of either profile to run out (TIME_WAIT 240 s in RFC 9293).
const DRAIN: Duration = Duration::from_secs(3600);

fn sim(title: &str, o: &ScenarioOptions) -> Sim {
    Sim::new(
        title,
        ("client", Connection::new(o.profile.clone(), CLIENT_ISS)),
        ("server", Connection::new(o.profile.clone(), SERVER_ISS)),
        o.latency,
    )
}

/// Listen, connect, run the handshake.
fn established(title: &str, o: &ScenarioOptions) -> Sim {
    let mut s = sim(title, o);
    s.listen(Side::B).expect("listen on a fresh connection");
    s.connect(Side::A).expect("connect on a fresh connection");
    s.run_for(o.latency * 4);
    s
}

fn pause(s: &mut Sim, ms: u64) {
    s.run_for(Duration::from_millis(ms));
}

/// The usual ending: the client closes, the server reads end of file and closes, and the
/// run goes on until every timer has run out.
fn client_closes_then_server(mut s: Sim) -> Timeline {
    let _ = s.close(Side::A);
    pause(&mut s, 50);
    let _ = s.read_all(Side::B);
    let _ = s.close(Side::B);
    s.run_until_idle(DRAIN);
    s.into_timeline()
}

fn is_bare_ack(seg: &Segment) -> bool {
    seg.flags == Flags::ACK && seg.len == 0
}

fn client_close(o: &ScenarioOptions) -> Timeline {
    let mut s = established("client-close", o);
    let _ = s.send(Side::A, 100);
    pause(&mut s, 50);
    let _ = s.read_all(Side::B);
    client_closes_then_server(s)
}

fn server_close(o: &ScenarioOptions) -> Timeline {
    let mut s = established("server-close", o);
    let _ = s.send(Side::A, 100);
    pause(&mut s, 50);
    let _ = s.read_all(Side::B);
    let _ = s.send(Side::B, 200);
    let _ = s.close(Side::B);
    pause(&mut s, 50);
    let _ = s.read_all(Side::A);
    let _ = s.read_all(Side::A);
    let _ = s.close(Side::A);
    s.run_until_idle(DRAIN);
    s.into_timeline()
}

fn simultaneous_close(o: &ScenarioOptions) -> Timeline {
    let mut s = established("simultaneous-close", o);
    let _ = s.close(Side::A);
    let _ = s.close(Side::B);
    s.run_until_idle(DRAIN);
    s.into_timeline()
}

fn lost_final_ack(o: &ScenarioOptions) -> Timeline {
    let mut s = established("lost-final-ack", o);
    // After the handshake, the client's first bare ACK is the one for the server's FIN.
    s.on_nth(Side::A, 1, is_bare_ack, Fate::Drop);
    client_closes_then_server(s)
}

fn lost_fin(o: &ScenarioOptions) -> Timeline {
    let mut s = established("lost-fin", o);
    s.on_nth(Side::A, 1, |seg| seg.flags.fin(), Fate::Drop);
    let _ = s.close(Side::A);
    s.run_for(Duration::from_secs(3));
    let _ = s.read_all(Side::B);
    let _ = s.close(Side::B);
    s.run_until_idle(DRAIN);
    s.into_timeline()
}

fn linger_abort(o: &ScenarioOptions) -> Timeline {
    let mut s = established("linger-abort", o);
    s.set_linger_zero(Side::A);
    let _ = s.close(Side::A);
    pause(&mut s, 50);
    let _ = s.read_all(Side::B);
    s.run_until_idle(DRAIN);
    s.into_timeline()
}

fn unread_data_close(o: &ScenarioOptions) -> Timeline {
    let mut s = established("unread-data-close", o);
    let _ = s.send(Side::B, 500);
    pause(&mut s, 50);
    // The client closes without reading the 500 octets.
    client_closes_then_server(s)
}

fn close_wait_leak(o: &ScenarioOptions) -> Timeline {
    let mut s = established("close-wait-leak", o);
    let _ = s.close(Side::A);
    pause(&mut s, 50);
    let _ = s.read_all(Side::B);
    s.note(
        Side::B,
        "the application reads end of file but never calls close()",
    );
    // Long enough for Linux's orphan FIN_WAIT_2 timeout (tcp_fin_timeout, 60 s); the RFC
    // profile has none, so the client then still waits in FIN_WAIT_2.
    s.run_for(Duration::from_secs(120));
    s.note(
        Side::B,
        "still CLOSE_WAIT: only this application's close() can end it",
    );
    s.into_timeline()
}

fn half_close(o: &ScenarioOptions) -> Timeline {
    let mut s = established("half-close", o);
    let _ = s.send(Side::A, 100);
    let _ = s.shutdown_write(Side::A);
    pause(&mut s, 50);
    let _ = s.read_all(Side::B);
    let _ = s.read_all(Side::B);
    for _ in 0..3 {
        let _ = s.send(Side::B, 1000);
        pause(&mut s, 50);
        let _ = s.read_all(Side::A);
    }
    let _ = s.close(Side::B);
    pause(&mut s, 50);
    let _ = s.read_all(Side::A);
    let _ = s.close(Side::A);
    s.run_until_idle(DRAIN);
    s.into_timeline()
}

fn simultaneous_open(o: &ScenarioOptions) -> Timeline {
    let mut s = sim("simultaneous-open", o);
    let _ = s.connect(Side::A);
    let _ = s.connect(Side::B);
    pause(&mut s, 100);
    let _ = s.close(Side::A);
    pause(&mut s, 50);
    let _ = s.close(Side::B);
    s.run_until_idle(DRAIN);
    s.into_timeline()
}

fn refused(o: &ScenarioOptions) -> Timeline {
    let mut s = sim("refused", o);
    s.note(Side::B, "no socket listens on this port");
    let _ = s.connect(Side::A);
    s.run_until_idle(DRAIN);
    s.into_timeline()
}

fn time_wait_assassination(o: &ScenarioOptions) -> Timeline {
    let mut s = established("time-wait-assassination", o);
    // A copy of the server's data segment is delayed in the network for 5 s: an old
    // duplicate that arrives while the client sits in TIME_WAIT.
    s.on_nth(
        Side::B,
        1,
        |seg| seg.len > 0,
        Fate::Duplicate(Duration::from_secs(5)),
    );
    let _ = s.send(Side::B, 100);
    pause(&mut s, 50);
    let _ = s.read_all(Side::A);
    client_closes_then_server(s)
}
