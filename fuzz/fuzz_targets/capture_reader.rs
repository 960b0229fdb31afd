//! Fuzz the pcap/pcapng readers, the decoders and the connection analysis in both modes
//! (and the sharded analysis once):
//! `cargo fuzz run capture_reader -s none` (stable toolchain, no sanitizer).
#![no_main]

use libfuzzer_sys::fuzz_target;
use tcpstate_capture::{analyze, summarize, CaptureReader, Options};

fuzz_target!(|data: &[u8]| {
    for zeek in [false, true] {
        if let Ok(reader) = CaptureReader::new(data) {
            let opts = Options {
                zeek,
                ..Options::default()
            };
            let _ = analyze(reader, opts, &mut |c| {
                let _ = c.zeek_line("F");
            });
        }
    }
    // The sharded path (reader thread, two workers, merge) on the same input.
    if let Ok(reader) = CaptureReader::new(data) {
        let opts = Options {
            zeek: true,
            threads: 2,
            ..Options::default()
        };
        let _ = summarize(reader, opts);
    }
});
