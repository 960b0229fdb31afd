//! Streaming readers for pcap and pcapng files.
//!
//! One packet at a time from any `Read`, with one reusable buffer: memory does not grow with
//! the file. pcap: microsecond and nanosecond magic numbers in both byte orders. pcapng: any
//! number of sections (each with its own byte order) and interfaces (each with its own link
//! type, `if_tsresol` and `if_tsoffset`); Enhanced, Simple and obsolete Packet Blocks carry
//! packets, every other block type is skipped.

use crate::CaptureError;
use std::fs::File;
use std::io::{self, Read};
use std::path::Path;

/// Largest record or block accepted. Real snap lengths stop at 256 KiB; anything larger
/// than this is a corrupt length field, and refusing it keeps a garbage file from making us
/// allocate gigabytes.
const MAX_RECORD: u64 = 16 * 1024 * 1024;

/// A link-layer header type (tcpdump.org LINKTYPE_ values).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct LinkType(pub u32);

impl LinkType {
    /// BSD loopback: 4-byte address family in the capturing host's byte order.
    pub const NULL: LinkType = LinkType(0);
    /// Ethernet.
    pub const ETHERNET: LinkType = LinkType(1);
    /// Raw IP (DLT_RAW on most systems).
    pub const RAW: LinkType = LinkType(101);
    /// OpenBSD loopback: 4-byte address family in network byte order.
    pub const LOOP: LinkType = LinkType(108);
    /// Linux "cooked" capture v1.
    pub const LINUX_SLL: LinkType = LinkType(113);
    /// Raw IPv4.
    pub const IPV4: LinkType = LinkType(228);
    /// Raw IPv6.
    pub const IPV6: LinkType = LinkType(229);
    /// Linux "cooked" capture v2.
    pub const LINUX_SLL2: LinkType = LinkType(276);
}

/// Which file format is being read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Classic libpcap format.
    Pcap {
        /// Timestamps in nanoseconds (magic a1b23c4d) rather than microseconds.
        nanos: bool,
        /// Fields are big-endian.
        big_endian: bool,
    },
    /// pcapng.
    Pcapng,
}

/// One captured packet, borrowed from the reader's buffer.
#[derive(Debug, Clone, Copy)]
pub struct Packet<'a> {
    /// Capture time, nanoseconds since the Unix epoch (pcapng `if_tsoffset` applied).
    pub ts_ns: i64,
    /// Link-layer header type of the interface it was captured on.
    pub link: LinkType,
    /// The captured bytes (possibly fewer than `orig_len`).
    pub data: &'a [u8],
    /// The packet's length on the wire.
    pub orig_len: u32,
    /// Byte offset of the record or block in the file.
    pub offset: u64,
    /// pcapng interface id (0 for pcap).
    pub interface: u32,
}

#[derive(Debug, Clone, Copy)]
struct Interface {
    link: LinkType,
    /// `if_tsresol`: units per second are 10^n (binary false) or 2^n (binary true).
    tsresol: u8,
    binary: bool,
    /// `if_tsoffset` in seconds.
    tsoffset: i64,
}

impl Interface {
    /// Timestamp units to nanoseconds, in 128-bit arithmetic so no resolution overflows.
    fn to_ns(self, units: u64) -> i64 {
        let units = units as i128;
        let ns: i128 = if self.binary {
            let shift = u32::from(self.tsresol.min(120));
            (units * 1_000_000_000) >> shift
        } else if self.tsresol <= 9 {
            units * 10i128.pow(9 - u32::from(self.tsresol))
        } else {
            units / 10i128.pow(u32::from(self.tsresol.min(38)) - 9)
        };
        let ns = ns + i128::from(self.tsoffset) * 1_000_000_000;
        ns.clamp(i128::from(i64::MIN), i128::from(i64::MAX)) as i64
    }
}

/// A streaming pcap/pcapng reader.
///
/// It reads the file in large chunks into one buffer and hands out packets that borrow from
/// it, so a packet's bytes are copied once (by the kernel, into the buffer), not again per
/// packet; the buffer grows only for a record larger than a chunk (at most [`MAX_RECORD`]).
pub struct CaptureReader<R: Read> {
    inner: R,
    /// File offset of `buf[pos]`, the next unread byte.
    offset: u64,
    format: Format,
    /// pcap: the file's link type.
    pcap_link: LinkType,
    /// pcapng: the current section's byte order and interfaces.
    big_endian: bool,
    interfaces: Vec<Interface>,
    /// Read-ahead: `buf[pos..end]` holds file bytes not yet consumed.
    buf: Vec<u8>,
    pos: usize,
    end: usize,
    /// The underlying reader reported end of file.
    eof: bool,
}

/// Bytes read from the file per read call.
const CHUNK: usize = 1 << 20;

impl CaptureReader<File> {
    /// Open a file by path.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, CaptureError> {
        let path = path.as_ref();
        let file = File::open(path).map_err(|source| CaptureError::Open {
            path: path.display().to_string(),
            source,
        })?;
        CaptureReader::new(file)
    }
}

/// A pcap record's timestamp in nanoseconds (the fraction is in µs unless the file's magic
/// said ns).
#[inline(always)]
fn pcap_ts_ns(secs: u32, frac: u32, nanos: bool) -> i64 {
    let frac_ns = if nanos {
        i64::from(frac)
    } else {
        i64::from(frac) * 1000
    };
    i64::from(secs) * 1_000_000_000 + frac_ns
}

/// A pcap record header's `ts_sec`, `ts_usec` (or nanoseconds), `incl_len`, `orig_len`.
#[inline(always)]
fn pcap_record_fields(h: &[u8; 16], be: bool) -> [u32; 4] {
    let w = |at: usize| u32::from_le_bytes([h[at], h[at + 1], h[at + 2], h[at + 3]]);
    let fields = [w(0), w(4), w(8), w(12)];
    if be {
        fields.map(u32::swap_bytes)
    } else {
        fields
    }
}

fn u16_at(b: &[u8], at: usize, be: bool) -> u16 {
    let v = [b[at], b[at + 1]];
    if be {
        u16::from_be_bytes(v)
    } else {
        u16::from_le_bytes(v)
    }
}

fn u32_at(b: &[u8], at: usize, be: bool) -> u32 {
    let v = [b[at], b[at + 1], b[at + 2], b[at + 3]];
    if be {
        u32::from_be_bytes(v)
    } else {
        u32::from_le_bytes(v)
    }
}

impl<R: Read> CaptureReader<R> {
    /// Start reading: detects pcap or pcapng from the first bytes.
    pub fn new(inner: R) -> Result<Self, CaptureError> {
        let mut reader = CaptureReader {
            inner,
            offset: 0,
            format: Format::Pcapng,
            pcap_link: LinkType::ETHERNET,
            big_endian: false,
            interfaces: Vec::new(),
            buf: Vec::new(),
            pos: 0,
            end: 0,
            eof: false,
        };
        let got = reader.fill(4)?;
        if got < 4 {
            return Err(CaptureError::Truncated {
                offset: 0,
                what: "file header",
                needed: 4,
                available: got as u64,
            });
        }
        let head = reader.window(0, 4);
        let magic = u32::from_be_bytes([head[0], head[1], head[2], head[3]]);
        let pcap = match magic {
            0xa1b2_c3d4 => Some((false, true)),
            0xd4c3_b2a1 => Some((false, false)),
            0xa1b2_3c4d => Some((true, true)),
            0x4d3c_b2a1 => Some((true, false)),
            _ => None,
        };
        if let Some((nanos, big_endian)) = pcap {
            let got = reader.fill(24)?;
            if got < 24 {
                return Err(CaptureError::Truncated {
                    offset: 0,
                    what: "pcap file header",
                    needed: 24,
                    available: got as u64,
                });
            }
            reader.format = Format::Pcap { nanos, big_endian };
            reader.big_endian = big_endian;
            // The link type is the low 28 bits; the top bits may carry FCS information.
            reader.pcap_link = LinkType(u32_at(reader.window(0, 24), 20, big_endian) & 0x0fff_ffff);
            reader.consume(24);
            return Ok(reader);
        }
        if magic == 0x0a0d_0d0a {
            // The Section Header Block stays unread: `next_packet` reads it like any block
            // (its length can only be read after its byte-order magic).
            let got = reader.fill(8)?;
            if got < 8 {
                return Err(CaptureError::Truncated {
                    offset: 0,
                    what: "pcapng section header",
                    needed: 12,
                    available: got as u64,
                });
            }
            return Ok(reader);
        }
        Err(CaptureError::UnknownFormat { magic })
    }

    /// The detected file format.
    pub fn format(&self) -> Format {
        self.format
    }

    /// Byte offset of the next unread byte.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// Make at least `n` unread bytes available (fewer only at end of file); returns how
    /// many of the `n` are.
    #[inline]
    fn fill(&mut self, n: usize) -> Result<usize, CaptureError> {
        if self.end - self.pos >= n {
            return Ok(n);
        }
        self.refill(n)
    }

    /// [`Self::fill`] when the read-ahead runs short: once per chunk, not per packet.
    #[cold]
    #[inline(never)]
    fn refill(&mut self, n: usize) -> Result<usize, CaptureError> {
        if self.pos > 0 {
            // Move the unread tail to the front: at most one record's worth of bytes.
            self.buf.copy_within(self.pos..self.end, 0);
            self.end -= self.pos;
            self.pos = 0;
        }
        // Small first (a small file, or a probe, should not cost a megabyte), then chunks.
        let size = n.max(if self.buf.is_empty() { 1 << 16 } else { CHUNK });
        if self.buf.len() < size {
            self.buf.resize(size, 0);
        }
        while self.end < n && !self.eof {
            match self.inner.read(&mut self.buf[self.end..]) {
                Ok(0) => self.eof = true,
                Ok(k) => self.end += k,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(source) => {
                    return Err(CaptureError::Io {
                        offset: self.offset + self.end as u64,
                        source,
                    })
                }
            }
        }
        Ok(n.min(self.end))
    }

    /// `len` unread bytes starting `at` bytes after the next unread one (already filled).
    fn window(&self, at: usize, len: usize) -> &[u8] {
        &self.buf[self.pos + at..self.pos + at + len]
    }

    fn consume(&mut self, n: usize) {
        self.pos += n;
        self.offset += n as u64;
    }

    /// The next packet, `Ok(None)` at a clean end of file.
    #[allow(clippy::should_implement_trait)]
    #[inline]
    pub fn next_packet(&mut self) -> Result<Option<Packet<'_>>, CaptureError> {
        match self.format {
            Format::Pcap { nanos, big_endian } => self.next_pcap(nanos, big_endian),
            Format::Pcapng => self.next_pcapng(),
        }
    }

    #[inline]
    fn next_pcap(&mut self, nanos: bool, be: bool) -> Result<Option<Packet<'_>>, CaptureError> {
        // Fast path: the whole record (header and data) is already in the read-ahead, as it
        // is for all but one record per chunk. Its header is read in place, with one length
        // check for the four fields and one for the data; only the copied field values leave
        // this block, so the buffer is free to be refilled on the slow path.
        let fields = match self.buf[self.pos..self.end].split_first_chunk::<16>() {
            Some((hdr, data)) => {
                let fields = pcap_record_fields(hdr, be);
                let incl = fields[2];
                (u64::from(incl) <= MAX_RECORD && incl as usize <= data.len()).then_some(fields)
            }
            None => None,
        };
        let Some(fields) = fields else {
            return self.next_pcap_refilling(nanos, be);
        };
        Ok(Some(self.take_pcap_record(fields, nanos)))
    }

    /// The pcap record at the read position, whose header gave `fields` and whose data is
    /// all in the read-ahead: consumed, and returned as a packet.
    #[inline]
    fn take_pcap_record(&mut self, [secs, frac, incl, orig]: [u32; 4], nanos: bool) -> Packet<'_> {
        let start = self.offset;
        let data_at = self.pos + 16;
        self.consume(16 + incl as usize);
        Packet {
            ts_ns: pcap_ts_ns(secs, frac, nanos),
            link: self.pcap_link,
            data: &self.buf[data_at..data_at + incl as usize],
            orig_len: orig,
            offset: start,
            interface: 0,
        }
    }

    /// [`Self::next_pcap`] for a record not yet all in the read-ahead: reads more of the
    /// file, and says which part is missing when the file ends first.
    #[cold]
    #[inline(never)]
    fn next_pcap_refilling(
        &mut self,
        nanos: bool,
        be: bool,
    ) -> Result<Option<Packet<'_>>, CaptureError> {
        let start = self.offset;
        let fields = match self.pcap_record_header(start)? {
            Some(hdr) => pcap_record_fields(&hdr, be),
            None => return Ok(None),
        };
        let incl = fields[2];
        if u64::from(incl) > MAX_RECORD {
            return Err(CaptureError::AbsurdLength {
                offset: start,
                what: "pcap captured length",
                value: u64::from(incl),
            });
        }
        self.fill_block(16 + u64::from(incl), start, "pcap packet data")?;
        Ok(Some(self.take_pcap_record(fields, nanos)))
    }

    /// A pcap record header that is not all in the read-ahead yet: `None` at a clean end of
    /// file (no byte of a next record), an error when the file ends inside the header.
    #[cold]
    #[inline(never)]
    fn pcap_record_header(&mut self, start: u64) -> Result<Option<[u8; 16]>, CaptureError> {
        let got = self.fill(16)?;
        if got == 0 {
            return Ok(None);
        }
        match self.window(0, got).first_chunk::<16>() {
            Some(hdr) => Ok(Some(*hdr)),
            None => Err(CaptureError::Truncated {
                offset: start,
                what: "pcap record header",
                needed: 16,
                available: got as u64,
            }),
        }
    }

    /// Fill a whole block of `total` bytes, or say how much of it the file has.
    fn fill_block(
        &mut self,
        total: u64,
        start: u64,
        what: &'static str,
    ) -> Result<(), CaptureError> {
        let got = self.fill(total as usize)?;
        if (got as u64) < total {
            return Err(CaptureError::Truncated {
                offset: start,
                what,
                needed: total,
                available: got as u64,
            });
        }
        Ok(())
    }

    fn next_pcapng(&mut self) -> Result<Option<Packet<'_>>, CaptureError> {
        // The loop finds the next packet's place in the buffer; the packet borrowing the
        // buffer is made after it (a borrow returned from inside the loop would hold the
        // buffer for the loop's later iterations too).
        let (ts_ns, link, data_at, caplen, orig_len, start, interface) = loop {
            let start = self.offset;
            let got = self.fill(8)?;
            if got == 0 {
                return Ok(None);
            }
            if got < 8 {
                return Err(CaptureError::Truncated {
                    offset: start,
                    what: "pcapng block header",
                    needed: 8,
                    available: got as u64,
                });
            }
            let h = self.window(0, 8);
            let header = [h[0], h[1], h[2], h[3], h[4], h[5], h[6], h[7]];
            let raw_type = u32::from_be_bytes([header[0], header[1], header[2], header[3]]);
            if raw_type == 0x0a0d_0d0a {
                // Section Header Block: the byte-order magic decides this section's order.
                self.fill_block(12, start, "pcapng section header")?;
                let b = self.window(8, 4);
                self.big_endian = match u32::from_be_bytes([b[0], b[1], b[2], b[3]]) {
                    0x1a2b_3c4d => true,
                    0x4d3c_2b1a => false,
                    other => {
                        return Err(CaptureError::Malformed {
                            offset: start,
                            reason: format!("unknown byte-order magic {other:#010x}"),
                        })
                    }
                };
                let total = u64::from(u32_at(&header, 4, self.big_endian));
                if !(28..=MAX_RECORD).contains(&total) {
                    return Err(CaptureError::AbsurdLength {
                        offset: start,
                        what: "pcapng section header length",
                        value: total,
                    });
                }
                // A new section resets the interface list (pcapng §4.1).
                self.interfaces.clear();
                self.fill_block(total, start, "pcapng section header")?;
                self.consume(total as usize);
                continue;
            }
            let be = self.big_endian;
            let block_type = u32_at(&header, 0, be);
            let total = u64::from(u32_at(&header, 4, be));
            if !(12..=MAX_RECORD).contains(&total) {
                return Err(CaptureError::AbsurdLength {
                    offset: start,
                    what: "pcapng block length",
                    value: total,
                });
            }
            self.fill_block(total, start, "pcapng block")?;
            // Body without the block header and the trailing copy of the total length.
            let body_len = (total - 12) as usize;
            let body_at = self.pos + 8;
            self.consume(total as usize);
            let b = &self.buf[body_at..body_at + body_len];
            match block_type {
                1 => {
                    let iface = parse_idb(b, be, start)?;
                    self.interfaces.push(iface);
                }
                6 | 2 => {
                    // Enhanced Packet Block (6), obsolete Packet Block (2): same layout
                    // except the interface id width.
                    if body_len < 20 {
                        return Err(CaptureError::Malformed {
                            offset: start,
                            reason: format!("packet block body of {body_len} bytes, need 20"),
                        });
                    }
                    let if_id = if block_type == 6 {
                        u32_at(b, 0, be)
                    } else {
                        u32::from(u16_at(b, 0, be))
                    };
                    let ts = (u64::from(u32_at(b, 4, be)) << 32) | u64::from(u32_at(b, 8, be));
                    let caplen = u32_at(b, 12, be) as usize;
                    let orig = u32_at(b, 16, be);
                    if caplen > body_len - 20 {
                        return Err(CaptureError::Malformed {
                            offset: start,
                            reason: format!(
                                "captured length {caplen} exceeds the block's {} data bytes",
                                body_len - 20
                            ),
                        });
                    }
                    let iface = *self.interfaces.get(if_id as usize).ok_or_else(|| {
                        CaptureError::Malformed {
                            offset: start,
                            reason: format!(
                                "packet on interface {if_id}, but the section describes {}",
                                self.interfaces.len()
                            ),
                        }
                    })?;
                    break (
                        iface.to_ns(ts),
                        iface.link,
                        body_at + 20,
                        caplen,
                        orig,
                        start,
                        if_id,
                    );
                }
                3 => {
                    // Simple Packet Block: interface 0, no timestamp.
                    if body_len < 4 {
                        return Err(CaptureError::Malformed {
                            offset: start,
                            reason: "simple packet block without its length field".into(),
                        });
                    }
                    let orig = u32_at(b, 0, be);
                    let iface =
                        *self
                            .interfaces
                            .first()
                            .ok_or_else(|| CaptureError::Malformed {
                                offset: start,
                                reason: "simple packet block before any interface".into(),
                            })?;
                    let caplen = (orig as usize).min(body_len - 4);
                    break (0, iface.link, body_at + 4, caplen, orig, start, 0);
                }
                _ => {}
            }
        };
        Ok(Some(Packet {
            ts_ns,
            link,
            data: &self.buf[data_at..data_at + caplen],
            orig_len,
            offset: start,
            interface,
        }))
    }
}

/// An Interface Description Block's body (without the trailing length).
fn parse_idb(b: &[u8], be: bool, start: u64) -> Result<Interface, CaptureError> {
    if b.len() < 8 {
        return Err(CaptureError::Malformed {
            offset: start,
            reason: format!("interface description body of {} bytes, need 8", b.len()),
        });
    }
    let mut iface = Interface {
        link: LinkType(u32::from(u16_at(b, 0, be))),
        tsresol: 6,
        binary: false,
        tsoffset: 0,
    };
    // Options: code u16, length u16, value padded to 4 bytes.
    let mut at = 8;
    while at + 4 <= b.len() {
        let code = u16_at(b, at, be);
        let len = usize::from(u16_at(b, at + 2, be));
        let value_at = at + 4;
        if value_at + len > b.len() {
            break; // a damaged option list: keep what was read
        }
        match code {
            0 => break,
            9 if len >= 1 => {
                iface.binary = b[value_at] & 0x80 != 0;
                iface.tsresol = b[value_at] & 0x7f;
            }
            14 if len >= 8 => {
                let mut v = [0u8; 8];
                v.copy_from_slice(&b[value_at..value_at + 8]);
                iface.tsoffset = if be {
                    i64::from_be_bytes(v)
                } else {
                    i64::from_le_bytes(v)
                };
            }
            _ => {}
        }
        at = value_at + len.div_ceil(4) * 4;
    }
    Ok(iface)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pcap_file(magic: u32, be: bool, link: u32, records: &[(u32, u32, &[u8])]) -> Vec<u8> {
        let w32 = |v: u32| if be { v.to_be_bytes() } else { v.to_le_bytes() };
        let w16 = |v: u16| if be { v.to_be_bytes() } else { v.to_le_bytes() };
        let mut f = Vec::new();
        f.extend(w32(magic));
        f.extend(w16(2));
        f.extend(w16(4));
        f.extend(w32(0));
        f.extend(w32(0));
        f.extend(w32(65535));
        f.extend(w32(link));
        for (s, frac, data) in records {
            f.extend(w32(*s));
            f.extend(w32(*frac));
            f.extend(w32(data.len() as u32));
            f.extend(w32(data.len() as u32));
            f.extend_from_slice(data);
        }
        f
    }

    #[test]
    fn pcap_micro_and_nano_in_both_byte_orders() {
        for (magic, nanos) in [(0xa1b2c3d4u32, false), (0xa1b23c4d, true)] {
            for be in [false, true] {
                let f = pcap_file(magic, be, 101, &[(10, 500, b"abc"), (11, 7, b"")]);
                let mut r = CaptureReader::new(&f[..]).unwrap();
                assert_eq!(
                    r.format(),
                    Format::Pcap {
                        nanos,
                        big_endian: be
                    }
                );
                let p = r.next_packet().unwrap().unwrap();
                let frac = if nanos { 500 } else { 500_000 };
                assert_eq!(p.ts_ns, 10_000_000_000 + frac);
                assert_eq!(p.data, b"abc");
                assert_eq!(p.link, LinkType::RAW);
                assert_eq!(p.offset, 24);
                let p = r.next_packet().unwrap().unwrap();
                assert_eq!(p.offset, 24 + 16 + 3);
                assert!(r.next_packet().unwrap().is_none());
            }
        }
    }

    #[test]
    fn truncated_record_names_its_offset() {
        let mut f = pcap_file(0xa1b2c3d4, false, 1, &[(1, 0, b"abcdef")]);
        f.truncate(f.len() - 2);
        let mut r = CaptureReader::new(&f[..]).unwrap();
        let err = r.next_packet().unwrap_err();
        assert!(
            matches!(
                err,
                CaptureError::Truncated {
                    offset: 24,
                    needed: 22,
                    available: 20,
                    ..
                }
            ),
            "{err}"
        );
        assert!(err.to_string().contains("offset 24"));
    }

    #[test]
    fn absurd_length_is_refused() {
        let mut f = pcap_file(0xa1b2c3d4, false, 1, &[]);
        f.extend(1u32.to_le_bytes());
        f.extend(0u32.to_le_bytes());
        f.extend(0x7fff_ffffu32.to_le_bytes());
        f.extend(0x7fff_ffffu32.to_le_bytes());
        let err = CaptureReader::new(&f[..])
            .unwrap()
            .next_packet()
            .unwrap_err();
        assert!(
            matches!(err, CaptureError::AbsurdLength { offset: 24, .. }),
            "{err}"
        );
    }

    #[test]
    fn unknown_magic() {
        let err = CaptureReader::new(&b"GIF89a......"[..]).err().unwrap();
        assert!(matches!(err, CaptureError::UnknownFormat { .. }));
    }

    /// Build a pcapng block.
    fn block(be: bool, ty: u32, body: &[u8]) -> Vec<u8> {
        let w32 = |v: u32| if be { v.to_be_bytes() } else { v.to_le_bytes() };
        let mut body = body.to_vec();
        while !body.len().is_multiple_of(4) {
            body.push(0);
        }
        let total = body.len() as u32 + 12;
        let mut b = Vec::new();
        b.extend(w32(ty));
        b.extend(w32(total));
        b.extend(body);
        b.extend(w32(total));
        b
    }

    fn shb(be: bool) -> Vec<u8> {
        let mut body = Vec::new();
        body.extend(if be {
            0x1a2b3c4du32.to_be_bytes()
        } else {
            0x1a2b3c4du32.to_le_bytes()
        });
        body.extend([0, 1, 0, 0]); // version (value irrelevant here)
        body.extend((-1i64).to_le_bytes());
        block(be, 0x0a0d0d0a, &body)
    }

    fn idb(be: bool, link: u16, opts: &[(u16, Vec<u8>)]) -> Vec<u8> {
        let w16 = |v: u16| if be { v.to_be_bytes() } else { v.to_le_bytes() };
        let mut body = Vec::new();
        body.extend(w16(link));
        body.extend([0, 0]);
        body.extend(if be {
            65535u32.to_be_bytes()
        } else {
            65535u32.to_le_bytes()
        });
        for (code, v) in opts {
            body.extend(w16(*code));
            body.extend(w16(v.len() as u16));
            let mut v = v.clone();
            while !v.len().is_multiple_of(4) {
                v.push(0);
            }
            body.extend(v);
        }
        body.extend([0, 0, 0, 0]);
        block(be, 1, &body)
    }

    fn epb(be: bool, iface: u32, ts: u64, data: &[u8]) -> Vec<u8> {
        let w32 = |v: u32| if be { v.to_be_bytes() } else { v.to_le_bytes() };
        let mut body = Vec::new();
        body.extend(w32(iface));
        body.extend(w32((ts >> 32) as u32));
        body.extend(w32(ts as u32));
        body.extend(w32(data.len() as u32));
        body.extend(w32(data.len() as u32));
        body.extend_from_slice(data);
        block(be, 6, &body)
    }

    #[test]
    fn pcapng_interfaces_resolution_offset_and_sections() {
        for be in [false, true] {
            let mut f = shb(be);
            f.extend(idb(be, 1, &[]));
            // ns resolution, +100 s offset
            let off = if be {
                100i64.to_be_bytes()
            } else {
                100i64.to_le_bytes()
            };
            f.extend(idb(be, 113, &[(9, vec![9]), (14, off.to_vec())]));
            // 2^-10 resolution
            f.extend(idb(be, 101, &[(9, vec![0x80 | 10])]));
            f.extend(block(be, 5, b"statistics")); // skipped
            f.extend(epb(be, 0, 1_500_000, b"e"));
            f.extend(epb(be, 1, 2_000_000_007, b"sll"));
            f.extend(epb(be, 2, 3 * 1024 + 512, b"raw"));
            // A new section resets the interfaces; the other byte order this time.
            f.extend(shb(!be));
            f.extend(idb(!be, 229, &[]));
            f.extend(epb(!be, 0, 5, b"v6"));
            let mut r = CaptureReader::new(&f[..]).unwrap();
            let p = r.next_packet().unwrap().unwrap();
            assert_eq!(
                (p.link, p.ts_ns, p.data),
                (LinkType::ETHERNET, 1_500_000_000, &b"e"[..])
            );
            let p = r.next_packet().unwrap().unwrap();
            assert_eq!(p.link, LinkType::LINUX_SLL);
            assert_eq!(p.ts_ns, 102_000_000_007);
            assert_eq!(p.interface, 1);
            let p = r.next_packet().unwrap().unwrap();
            assert_eq!(p.ts_ns, 3_500_000_000);
            let p = r.next_packet().unwrap().unwrap();
            assert_eq!(
                (p.link, p.ts_ns, p.data),
                (LinkType::IPV6, 5_000, &b"v6"[..])
            );
            assert!(r.next_packet().unwrap().is_none());
        }
    }

    #[test]
    fn pcapng_packet_on_undeclared_interface_is_an_error() {
        let mut f = shb(false);
        f.extend(epb(false, 3, 0, b"x"));
        let err = CaptureReader::new(&f[..])
            .unwrap()
            .next_packet()
            .unwrap_err();
        assert!(
            matches!(err, CaptureError::Malformed { offset: 28, .. }),
            "{err}"
        );
    }
}
