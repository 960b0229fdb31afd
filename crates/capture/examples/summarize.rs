//! Profiling harness: the library work behind `tcpstate capture --summary FILE`, without the
//! command line (`cargo run --release -p tcpstate-capture --example summarize -- FILE`).

use tcpstate_capture::{analyze_file, Options, Summary};

fn main() {
    let Some(path) = std::env::args().nth(1) else {
        eprintln!("usage: summarize FILE.pcap");
        std::process::exit(2);
    };
    let opts = Options {
        timelines: false,
        ..Options::default()
    };
    let mut summary = Summary::new();
    match analyze_file(&path, opts, &mut |c| summary.add(&c)) {
        Ok(s) => eprintln!(
            "{} frames, {} connections, {} server ports",
            s.frames,
            summary.connections,
            summary.ports.len()
        ),
        Err(e) => {
            eprintln!("{path}: {e}");
            std::process::exit(2);
        }
    }
}
