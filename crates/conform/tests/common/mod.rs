//! Where the test scripts are.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

/// `../shared/conformance/linux/*.pkt`, sorted; `None` (with a printed reason) when the shared
/// directory is absent.
pub fn shared_scripts() -> Option<Vec<PathBuf>> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/conformance/linux");
    if !dir.is_dir() {
        eprintln!(
            "skipping: shared conformance scripts not found at {}",
            dir.display()
        );
        return None;
    }
    Some(pkt_files(&dir))
}

/// This crate's own scripts (`scripts/*.pkt`).
pub fn own_scripts() -> Vec<PathBuf> {
    pkt_files(&Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts"))
}

/// A deliberately wrong script in `tests/data`.
pub fn data(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(name)
}

fn pkt_files(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "pkt"))
        .collect();
    v.sort();
    v
}
