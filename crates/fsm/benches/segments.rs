//! Segments processed per second by one `Connection`.
//!
//! `cargo bench -p tcpstate-fsm --bench segments` (harness-less: prints its own table). Three
//! workloads: in-order data into an ESTABLISHED receiver (the capture analyzer's bulk case),
//! pure ACKs advancing a sender, and whole connection lifetimes (handshake, data, close,
//! TIME_WAIT) through the two-endpoint simulator.

use std::hint::black_box;
use std::time::{Duration, Instant};
use tcpstate_fsm::{Connection, Flags, Profile, Segment, SeqNum, Side, Sim};

fn established_receiver() -> Connection {
    let mut c = Connection::new(Profile::linux(), SeqNum(100));
    c.open_passive().unwrap();
    c.handle_segment(Duration::ZERO, seg(Flags::SYN, 500, 0, 0));
    c.handle_segment(Duration::ZERO, seg(Flags::ACK, 501, 101, 0));
    while c.poll_transmit(Duration::ZERO).is_some() {}
    while c.poll_event().is_some() {}
    c
}

fn seg(flags: Flags, seq: u32, ack: u32, len: u32) -> Segment {
    Segment {
        seq: SeqNum(seq),
        ack: SeqNum(ack),
        flags,
        len,
        window: 65535,
    }
}

fn data_in(n: u64) -> Duration {
    let mut c = established_receiver();
    let mut seq = SeqNum(501);
    let start = Instant::now();
    for i in 0..n {
        let now = Duration::from_nanos(i);
        c.handle_segment(
            now,
            Segment {
                seq,
                ack: SeqNum(101),
                flags: Flags::ACK | Flags::PSH,
                len: 1448,
                window: 65535,
            },
        );
        seq += 1448;
        black_box(c.poll_transmit(now));
        let _ = c.read(u32::MAX);
        while c.poll_event().is_some() {}
    }
    start.elapsed()
}

fn acks_in(n: u64) -> Duration {
    let mut c = established_receiver();
    let start = Instant::now();
    let mut acked = SeqNum(101);
    for i in 0..n {
        let now = Duration::from_nanos(i);
        c.send(now, 1448).unwrap();
        while c.poll_transmit(now).is_some() {}
        acked += 1448;
        c.handle_segment(now, seg(Flags::ACK, 501, acked.0, 0));
        while c.poll_event().is_some() {}
    }
    start.elapsed()
}

fn lifetimes(n: u64) -> Duration {
    let start = Instant::now();
    for i in 0..n {
        let mut s = Sim::new(
            "bench",
            ("c", Connection::new(Profile::linux(), SeqNum(i as u32))),
            ("s", Connection::new(Profile::linux(), SeqNum(7))),
            Duration::from_millis(1),
        );
        s.listen(Side::B).unwrap();
        s.connect(Side::A).unwrap();
        s.run_for(Duration::from_millis(5));
        s.send(Side::A, 3000).unwrap();
        s.run_for(Duration::from_millis(5));
        let _ = s.read_all(Side::B);
        s.close(Side::A).unwrap();
        s.run_for(Duration::from_millis(5));
        s.close(Side::B).unwrap();
        s.run_until_idle(Duration::from_secs(120));
        black_box(s.into_timeline());
    }
    start.elapsed()
}

fn main() {
    // `cargo test --benches` runs this too: keep that pass short.
    let quick = std::env::args().any(|a| a == "--test" || a == "--quick");
    let scale = if quick { 1_000 } else { 2_000_000 };
    println!("{:<34} {:>12} {:>14}", "workload", "count", "per second");
    for (name, n, f) in [
        (
            "data segments into ESTABLISHED",
            scale,
            data_in as fn(u64) -> Duration,
        ),
        ("ACKs into a sender", scale, acks_in),
        ("connection lifetimes (simulated)", scale / 100, lifetimes),
    ] {
        // Best of three: the machines are noisy.
        let best = (0..3).map(|_| f(n)).min().unwrap();
        let rate = n as f64 / best.as_secs_f64();
        println!("{name:<34} {n:>12} {rate:>14.0}");
    }
}
