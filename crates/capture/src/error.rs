//! Errors of the capture readers. Every error that concerns the file names the byte offset
//! where the problem was found, so a user can look at it with `xxd -s OFFSET`.

use std::io;

/// Why a capture file could not be read (further).
#[derive(Debug, thiserror::Error)]
pub enum CaptureError {
    /// An I/O error from the underlying reader.
    #[error("I/O error at file offset {offset}: {source}")]
    Io {
        /// Byte offset where the read started.
        offset: u64,
        /// The error.
        #[source]
        source: io::Error,
    },
    /// The file starts with neither a pcap magic number nor a pcapng Section Header Block.
    #[error(
        "not a pcap or pcapng file: unknown magic number {magic:#010x} at file offset 0 \
         (expected a1b2c3d4 / a1b23c4d pcap, or 0a0d0d0a pcapng, in either byte order)"
    )]
    UnknownFormat {
        /// The first four bytes, big-endian.
        magic: u32,
    },
    /// The file ended in the middle of a header, record or block.
    #[error("capture truncated at file offset {offset}: {what} needs {needed} bytes, only {available} present")]
    Truncated {
        /// Byte offset where the incomplete item starts.
        offset: u64,
        /// What was being read.
        what: &'static str,
        /// Bytes needed.
        needed: u64,
        /// Bytes present.
        available: u64,
    },
    /// A length field that cannot be right (larger than any sane packet, or smaller than
    /// its own header).
    #[error("absurd {what} {value} at file offset {offset}")]
    AbsurdLength {
        /// Byte offset of the record or block.
        offset: u64,
        /// Which length.
        what: &'static str,
        /// Its value.
        value: u64,
    },
    /// A structural error in a pcapng file.
    #[error("malformed pcapng at file offset {offset}: {reason}")]
    Malformed {
        /// Byte offset of the block.
        offset: u64,
        /// What is wrong.
        reason: String,
    },
    /// The file could not be opened.
    #[error("cannot open {path}: {source}")]
    Open {
        /// The path given.
        path: String,
        /// The error.
        #[source]
        source: io::Error,
    },
}
