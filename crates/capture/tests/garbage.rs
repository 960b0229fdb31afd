//! Random bytes, truncations and bit flips fed to the readers and the whole analysis: every
//! outcome must be a result or a clean error, never a panic or a hang.

use proptest::prelude::*;
use tcpstate_capture::{analyze, CaptureReader, Options};

/// A small valid pcap with a handshake, data and a close, as a seed for mutations.
fn seed() -> Vec<u8> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let path = dir.join("../../../shared/corpus/zeek/traces/tcp__miss_end_data.pcap");
    std::fs::read(path).unwrap_or_else(|_| {
        // Without the shared corpus: a pcap header and one raw-IP record.
        let mut f = vec![0xd4, 0xc3, 0xb2, 0xa1, 2, 0, 4, 0];
        f.extend([0u8; 8]);
        f.extend(65535u32.to_le_bytes());
        f.extend(101u32.to_le_bytes());
        f.extend([1, 0, 0, 0, 0, 0, 0, 0, 40, 0, 0, 0, 40, 0, 0, 0]);
        f.extend([
            0x45, 0, 0, 40, 0, 0, 0, 0, 64, 6, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2,
        ]);
        f.extend([
            0, 1, 0, 2, 0, 0, 0, 1, 0, 0, 0, 0, 0x50, 0x02, 0xff, 0xff, 0, 0, 0, 0,
        ]);
        f
    })
}

fn run_all(bytes: &[u8]) {
    for opts in [
        Options::default(),
        Options {
            zeek: true,
            ..Options::default()
        },
    ] {
        if let Ok(reader) = CaptureReader::new(bytes) {
            let mut n = 0;
            let _ = analyze(reader, opts.clone(), &mut |c| {
                n += 1;
                let _ = c.zeek_line("X");
            });
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
        run_all(&bytes);
    }

    #[test]
    fn random_bytes_after_a_valid_header_never_panic(
        ng in any::<bool>(),
        tail in proptest::collection::vec(any::<u8>(), 0..4096),
    ) {
        let mut f = if ng {
            // pcapng SHB (little-endian) + IDB for Ethernet.
            let mut f = vec![0x0a, 0x0d, 0x0d, 0x0a, 28, 0, 0, 0, 0x4d, 0x3c, 0x2b, 0x1a, 1, 0, 0, 0];
            f.extend([0xff; 8]);
            f.extend([28, 0, 0, 0]);
            f.extend([1, 0, 0, 0, 20, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 20, 0, 0, 0]);
            f
        } else {
            seed()[..24].to_vec()
        };
        f.extend(tail);
        run_all(&f);
    }

    #[test]
    fn truncations_and_bit_flips_of_a_real_trace(cut in any::<prop::sample::Index>(), flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..16)) {
        let mut f = seed();
        for (at, x) in flips {
            let i = at.index(f.len());
            f[i] ^= x;
        }
        let n = cut.index(f.len() + 1);
        f.truncate(n);
        run_all(&f);
    }
}

#[test]
fn every_truncation_of_a_real_trace_is_a_clean_error_or_end() {
    let f = seed();
    for n in 0..f.len() {
        match CaptureReader::new(&f[..n]) {
            Err(e) => assert!(!e.to_string().is_empty()),
            Ok(reader) => {
                if let Some(e) = analyze(reader, Options::default(), &mut |_| {}).error {
                    assert!(e.to_string().contains("offset"), "{e}");
                }
            }
        }
    }
}
