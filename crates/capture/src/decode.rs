//! From link-layer frames to TCP segments: small hand-written layers for every link type a
//! capture of TCP traffic is likely to carry, IPv4 with fragment reassembly, IPv6 with its
//! extension-header chain, and the TCP header with checksum verification.
//!
//! Lengths come from the IP header, not from the captured length (a snap length cuts the
//! payload, not the segment), except when the IPv4 total length is 0: that is a TSO/GSO
//! super-packet captured before segmentation, and the captured length is all there is
//! (Zeek does the same in `TCPAnalyzer::DeliverPacket`).

use crate::reader::{LinkType, Packet};
use std::collections::HashMap;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use tcpstate_fsm::Flags;

/// Whether a segment's TCP checksum was right.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Checksum {
    /// Verified and correct.
    Good,
    /// Verified and wrong (typical of captures taken on the sending host with checksum
    /// offload, and of loopback).
    Bad,
    /// Not verifiable: the segment was cut by the snap length.
    Unverified,
}

/// One TCP segment as seen on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TcpSegment {
    /// Source address and port.
    pub src: SocketAddr,
    /// Destination address and port.
    pub dst: SocketAddr,
    /// Sequence number.
    pub seq: u32,
    /// Acknowledgment number.
    pub ack: u32,
    /// Control bits.
    pub flags: Flags,
    /// Advertised window (unscaled, as on the wire).
    pub window: u16,
    /// Payload length from the IP header.
    pub payload_len: u32,
    /// IP total length (IPv6: payload length + 40), what Zeek counts as IP bytes.
    pub ip_len: u32,
    /// Checksum verdict.
    pub checksum: Checksum,
    /// The capture holds fewer payload bytes than the IP header says (snap length).
    pub truncated: bool,
    /// For IPv4, whether the IP header checksum was right; `true` (not checked) when the
    /// decoder was told not to verify it ([`Decoder::verify_ip_checksums`]).
    pub ip_checksum_ok: bool,
}

/// Why a frame yields no TCP segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Skip {
    /// A link type this decoder does not know.
    UnknownLinkType(u32),
    /// A link-layer payload that is neither IPv4 nor IPv6 (ARP, LLDP...).
    NotIp,
    /// IP, but not TCP.
    NotTcp,
    /// A fragment held until its datagram is complete.
    FragmentHeld,
    /// A header cut short by the snap length or damaged.
    Truncated(&'static str),
    /// A header whose fields contradict each other.
    Malformed(&'static str),
}

impl fmt::Display for Skip {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Skip::UnknownLinkType(l) => write!(f, "unsupported link type {l}"),
            Skip::NotIp => f.write_str("not IP"),
            Skip::NotTcp => f.write_str("not TCP"),
            Skip::FragmentHeld => f.write_str("IP fragment waiting for the rest"),
            Skip::Truncated(what) => write!(f, "truncated {what}"),
            Skip::Malformed(what) => write!(f, "malformed {what}"),
        }
    }
}

impl Skip {
    /// Whether this is worth a warning (a damaged packet), rather than ordinary non-TCP
    /// traffic or a held fragment.
    pub fn is_damage(&self) -> bool {
        matches!(
            self,
            Skip::Truncated(_) | Skip::Malformed(_) | Skip::UnknownLinkType(_)
        )
    }
}

const ETH_IPV4: u16 = 0x0800;
const ETH_IPV6: u16 = 0x86dd;

/// Held fragments of one datagram.
#[derive(Debug)]
struct FragBuf {
    first_seen_ns: i64,
    /// (offset, bytes) of each fragment's payload.
    parts: Vec<(usize, Vec<u8>)>,
    /// The IP header of the first fragment (offset 0), with addresses.
    header: Option<FragHeader>,
    /// Payload length once the last fragment (no MF) was seen.
    total: Option<usize>,
}

#[derive(Debug, Clone, Copy)]
struct FragHeader {
    src: IpAddr,
    dst: IpAddr,
    v4_header_ok: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct FragKey {
    src: IpAddr,
    dst: IpAddr,
    id: u32,
    proto: u8,
}

/// Fragments are dropped after this long without completing (Zeek's `frag_timeout`).
const FRAG_TIMEOUT_NS: i64 = 300 * 1_000_000_000;
/// At most this many incomplete datagrams are held: memory stays bounded on a flood.
const MAX_HELD_DATAGRAMS: usize = 4096;
/// Largest reassembled datagram payload.
const MAX_DATAGRAM: usize = 65535;

/// Decodes frames into TCP segments; keeps the fragment reassembly state.
#[derive(Debug, Default)]
pub struct Decoder {
    frags: HashMap<FragKey, FragBuf>,
    scratch: Vec<u8>,
    /// Whether to verify TCP checksums (costs a pass over the payload).
    pub verify_checksums: bool,
    /// Whether to verify IPv4 header checksums (only Zeek's packet dropping uses them).
    pub verify_ip_checksums: bool,
}

impl Decoder {
    /// A decoder; `verify_checksums` decides whether TCP and IPv4 header checksums are
    /// computed.
    pub fn new(verify_checksums: bool) -> Decoder {
        Decoder {
            verify_checksums,
            verify_ip_checksums: verify_checksums,
            ..Decoder::default()
        }
    }

    /// Decode one captured frame.
    #[inline]
    pub fn decode(&mut self, pkt: &Packet<'_>) -> Result<TcpSegment, Skip> {
        let ip = link_payload(pkt.link, pkt.data)?;
        self.decode_ip(ip, pkt.ts_ns)
    }

    /// Decode an IP packet (version from its first nibble).
    #[inline]
    pub fn decode_ip(&mut self, ip: &[u8], ts_ns: i64) -> Result<TcpSegment, Skip> {
        match ip.first().map(|b| b >> 4) {
            Some(4) => self.decode_v4(ip, ts_ns),
            Some(6) => self.decode_v6(ip, ts_ns),
            Some(_) => Err(Skip::NotIp),
            None => Err(Skip::Truncated("IP header")),
        }
    }

    fn decode_v4(&mut self, ip: &[u8], ts_ns: i64) -> Result<TcpSegment, Skip> {
        // The fixed header as an array: one length check instead of one per field.
        let Some(h) = ip.first_chunk::<20>() else {
            return Err(Skip::Truncated("IPv4 header"));
        };
        let ihl = usize::from(h[0] & 0x0f) * 4;
        if ihl < 20 {
            return Err(Skip::Malformed("IPv4 header length"));
        }
        if ip.len() < ihl {
            return Err(Skip::Truncated("IPv4 options"));
        }
        let total = usize::from(u16::from_be_bytes([h[2], h[3]]));
        let proto = h[9];
        let frag = u16::from_be_bytes([h[6], h[7]]);
        let more = frag & 0x2000 != 0;
        let offset = usize::from(frag & 0x1fff) * 8;
        // Total length 0: a TSO super-packet; trust the captured bytes.
        let end = if total == 0 {
            ip.len()
        } else {
            if total < ihl {
                return Err(Skip::Malformed("IPv4 total length"));
            }
            total
        };
        if proto != 6 {
            return Err(Skip::NotTcp);
        }
        let src = IpAddr::V4(Ipv4Addr::from_bits(u32::from_be_bytes([
            h[12], h[13], h[14], h[15],
        ])));
        let dst = IpAddr::V4(Ipv4Addr::from_bits(u32::from_be_bytes([
            h[16], h[17], h[18], h[19],
        ])));
        let header_ok = !self.verify_ip_checksums || ones_complement(&ip[..ihl], 0) == 0xffff;
        let available = &ip[ihl..end.min(ip.len())];
        let payload_len = end - ihl;
        if more || offset != 0 {
            if available.len() < payload_len {
                return Err(Skip::Truncated("IPv4 fragment"));
            }
            let key = FragKey {
                src,
                dst,
                id: u32::from(u16::from_be_bytes([h[4], h[5]])),
                proto,
            };
            let header = (offset == 0).then_some(FragHeader {
                src,
                dst,
                v4_header_ok: header_ok,
            });
            return self.add_fragment(key, header, offset, more, available, ts_ns, true);
        }
        tcp(
            src,
            dst,
            available,
            payload_len,
            total as u32,
            header_ok,
            self.verify_checksums,
        )
    }

    fn decode_v6(&mut self, ip: &[u8], ts_ns: i64) -> Result<TcpSegment, Skip> {
        // The fixed header as an array: one length check instead of one per field.
        let Some(h) = ip.first_chunk::<40>() else {
            return Err(Skip::Truncated("IPv6 header"));
        };
        let plen = usize::from(u16::from_be_bytes([h[4], h[5]]));
        let (src, dst) = (&h[8..24], &h[24..40]);
        let src = IpAddr::V6(Ipv6Addr::from(
            <[u8; 16]>::try_from(src).unwrap_or_default(),
        ));
        let mut dst = IpAddr::V6(Ipv6Addr::from(
            <[u8; 16]>::try_from(dst).unwrap_or_default(),
        ));
        // Payload length 0 with a jumbogram or TSO: use what was captured.
        let end = if plen == 0 { ip.len() } else { 40 + plen };
        let mut next = h[6];
        let mut at = 40;
        let mut fragment: Option<(usize, bool, u32)> = None;
        // Walk the extension-header chain (RFC 8200 §4).
        loop {
            match next {
                6 => break,
                0 | 43 | 60 | 135 | 139 | 140 => {
                    let h = ip
                        .get(at..at + 8)
                        .ok_or(Skip::Truncated("IPv6 extension header"))?;
                    let len = (usize::from(h[1]) + 1) * 8;
                    let hdr = ip
                        .get(at..at + len)
                        .ok_or(Skip::Truncated("IPv6 extension header"))?;
                    if next == 43 {
                        // Routing header: with segments left, the checksum's destination
                        // is the final one, the last address (RFC 8200 §8.1).
                        let (rtype, left) = (hdr[2], hdr[3]);
                        if left > 0 && (rtype == 0 || rtype == 2) && len >= 24 {
                            let last = &hdr[len - 16..len];
                            dst = IpAddr::V6(Ipv6Addr::from(
                                <[u8; 16]>::try_from(last).unwrap_or_default(),
                            ));
                        }
                    }
                    next = h[0];
                    at += len;
                }
                51 => {
                    // Authentication Header: length in 4-octet units minus 2 (RFC 4302).
                    let h = ip.get(at..at + 2).ok_or(Skip::Truncated("IPv6 AH"))?;
                    let len = (usize::from(h[1]) + 2) * 4;
                    next = h[0];
                    at += len;
                }
                44 => {
                    let h = ip
                        .get(at..at + 8)
                        .ok_or(Skip::Truncated("IPv6 fragment header"))?;
                    let off_m = u16::from_be_bytes([h[2], h[3]]);
                    let id = u32::from_be_bytes([h[4], h[5], h[6], h[7]]);
                    fragment = Some((usize::from(off_m >> 3) * 8, off_m & 1 != 0, id));
                    next = h[0];
                    at += 8;
                }
                _ => return Err(Skip::NotTcp),
            }
            if at > end {
                return Err(Skip::Malformed("IPv6 extension header chain"));
            }
        }
        let payload_len = end - at;
        let available = &ip[at.min(ip.len())..end.min(ip.len())];
        if let Some((offset, more, id)) = fragment {
            if offset != 0 || more {
                if available.len() < payload_len {
                    return Err(Skip::Truncated("IPv6 fragment"));
                }
                let key = FragKey {
                    src,
                    dst,
                    id,
                    proto: 6,
                };
                let header = (offset == 0).then_some(FragHeader {
                    src,
                    dst,
                    v4_header_ok: true,
                });
                return self.add_fragment(key, header, offset, more, available, ts_ns, false);
            }
        }
        tcp(
            src,
            dst,
            available,
            payload_len,
            (plen + 40) as u32,
            true,
            self.verify_checksums,
        )
    }

    #[allow(clippy::too_many_arguments)]
    fn add_fragment(
        &mut self,
        key: FragKey,
        header: Option<FragHeader>,
        offset: usize,
        more: bool,
        data: &[u8],
        ts_ns: i64,
        v4: bool,
    ) -> Result<TcpSegment, Skip> {
        if offset + data.len() > MAX_DATAGRAM {
            return Err(Skip::Malformed("fragment beyond 65535 bytes"));
        }
        if self.frags.len() >= MAX_HELD_DATAGRAMS && !self.frags.contains_key(&key) {
            self.frags
                .retain(|_, f| ts_ns - f.first_seen_ns < FRAG_TIMEOUT_NS);
            if self.frags.len() >= MAX_HELD_DATAGRAMS {
                return Err(Skip::Malformed("too many incomplete IP datagrams held"));
            }
        }
        let buf = self.frags.entry(key).or_insert_with(|| FragBuf {
            first_seen_ns: ts_ns,
            parts: Vec::new(),
            header: None,
            total: None,
        });
        if ts_ns - buf.first_seen_ns > FRAG_TIMEOUT_NS {
            buf.parts.clear();
            buf.header = None;
            buf.total = None;
            buf.first_seen_ns = ts_ns;
        }
        if header.is_some() {
            buf.header = header;
        }
        if !more {
            buf.total = Some(offset + data.len());
        }
        buf.parts.push((offset, data.to_vec()));
        // Complete when the parts, sorted, cover 0..total without a hole.
        let (Some(total), Some(hdr)) = (buf.total, buf.header) else {
            return Err(Skip::FragmentHeld);
        };
        buf.parts.sort_by_key(|p| p.0);
        let mut covered = 0;
        for (off, bytes) in &buf.parts {
            if *off > covered {
                return Err(Skip::FragmentHeld);
            }
            covered = covered.max(off + bytes.len());
        }
        if covered < total {
            return Err(Skip::FragmentHeld);
        }
        let Some(buf) = self.frags.remove(&key) else {
            return Err(Skip::FragmentHeld);
        };
        self.scratch.clear();
        self.scratch.resize(total, 0);
        // Later fragments overwrite earlier ones where they overlap (as Linux does).
        for (off, bytes) in &buf.parts {
            let end = (off + bytes.len()).min(total);
            if *off < end {
                self.scratch[*off..end].copy_from_slice(&bytes[..end - off]);
            }
        }
        let ip_len = if v4 { total + 20 } else { total + 40 };
        tcp(
            hdr.src,
            hdr.dst,
            &self.scratch,
            total,
            ip_len as u32,
            hdr.v4_header_ok,
            self.verify_checksums,
        )
    }
}

/// The TCP header and checksum of a segment whose bytes (possibly cut) are `seg`.
///
/// Inlined into each IP decoder: there the address family is known, so the pseudo-header
/// sum and the `SocketAddr`s are built without matching on it.
#[inline(always)]
fn tcp(
    src: IpAddr,
    dst: IpAddr,
    seg: &[u8],
    seg_len: usize,
    ip_len: u32,
    ip_checksum_ok: bool,
    verify: bool,
) -> Result<TcpSegment, Skip> {
    // The fixed header as an array: one length check instead of one per field.
    let Some(h) = seg.first_chunk::<20>() else {
        return Err(Skip::Truncated("TCP header"));
    };
    let data_off = usize::from(h[12] >> 4) * 4;
    if data_off < 20 {
        return Err(Skip::Malformed("TCP header length"));
    }
    if data_off > seg_len {
        return Err(Skip::Malformed("TCP header longer than the segment"));
    }
    if seg.len() < data_off {
        return Err(Skip::Truncated("TCP options"));
    }
    // A segment cut by the snap length cannot be verified: no pass over its bytes.
    let whole = seg.get(..seg_len).filter(|_| verify);
    let checksum = match whole {
        None => Checksum::Unverified,
        Some(whole) => {
            let pseudo = pseudo_header_sum(src, dst, seg_len as u32);
            if ones_complement(whole, pseudo) == 0xffff {
                Checksum::Good
            } else {
                Checksum::Bad
            }
        }
    };
    Ok(TcpSegment {
        src: SocketAddr::new(src, u16::from_be_bytes([h[0], h[1]])),
        dst: SocketAddr::new(dst, u16::from_be_bytes([h[2], h[3]])),
        seq: u32::from_be_bytes([h[4], h[5], h[6], h[7]]),
        ack: u32::from_be_bytes([h[8], h[9], h[10], h[11]]),
        flags: Flags::from_bits(h[13]),
        window: u16::from_be_bytes([h[14], h[15]]),
        payload_len: (seg_len - data_off) as u32,
        ip_len,
        checksum,
        truncated: seg.len() < seg_len,
        ip_checksum_ok,
    })
}

/// The TCP pseudo-header (RFC 9293 §3.1) as an unfolded sum for [`ones_complement`]:
/// addresses are added as whole 32- or 64-bit big-endian words, which is the same sum
/// modulo 0xffff as their 16-bit words (2^16 = 1 modulo 0xffff).
#[inline(always)]
fn pseudo_header_sum(src: IpAddr, dst: IpAddr, len: u32) -> u64 {
    let mut sum: u64 = 6 + u64::from(len);
    for addr in [src, dst] {
        match addr {
            IpAddr::V4(a) => sum += u64::from(a.to_bits()),
            IpAddr::V6(a) => {
                let bits = a.to_bits();
                sum = add_with_carry(sum, (bits >> 64) as u64);
                sum = add_with_carry(sum, bits as u64);
            }
        }
    }
    sum
}

/// `a + b` in one's-complement arithmetic on 64 bits: a carry out of the top wraps around
/// to the bottom (RFC 1071 §2 (C): the sum can be done in any word width, then folded).
#[inline(always)]
fn add_with_carry(a: u64, b: u64) -> u64 {
    let (sum, carry) = a.overflowing_add(b);
    // No overflow here: with a carry, `sum` is at most 2^64 - 2.
    sum + u64::from(carry)
}

/// RFC 1071 one's-complement sum of `data` plus `initial`, folded to 16 bits (0xffff when
/// a packet including its checksum field is correct; 0 only when everything summed is 0).
///
/// Eight bytes at a time as big-endian `u64` words with end-around carry, folded once at
/// the end: the same result as summing 16-bit words (2^16 = 1 modulo 0xffff, and the
/// accumulator is zero only if every word was), at a quarter of the additions. Inlined:
/// for the tens of bytes of a typical segment the call and the loop setup would cost as
/// much as the loop.
#[inline(always)]
pub fn ones_complement(data: &[u8], initial: u64) -> u16 {
    let (words, rest) = data.as_chunks::<8>();
    let mut sum = initial;
    for w in words {
        sum = add_with_carry(sum, u64::from_be_bytes(*w));
    }
    // Fewer than 8 bytes left, starting on an 8-byte boundary (an odd last byte is the
    // high half of a zero-padded word).
    let r = rest.len();
    let tail = match data.last_chunk::<8>() {
        // The last 8 bytes in one load; shifting left drops the 8 - r already summed and
        // puts the r new ones at the top, where they sit on their own 16-bit boundaries.
        Some(last) if r > 0 => u64::from_be_bytes(*last) << ((8 - r) * 8),
        _ => {
            let mut padded = [0u8; 8];
            for (p, b) in padded.iter_mut().zip(rest) {
                *p = *b;
            }
            u64::from_be_bytes(padded)
        }
    };
    let sum = add_with_carry(sum, tail);
    // Fold 64 -> 32 -> 16 bits, each with its end-around carry.
    let (sum, carry) = ((sum >> 32) as u32).overflowing_add(sum as u32);
    let sum = sum + u32::from(carry);
    let (sum, carry) = ((sum >> 16) as u16).overflowing_add(sum as u16);
    sum + u16::from(carry)
}

/// The network-layer bytes of a frame, after the link-layer header(s).
#[inline]
pub fn link_payload(link: LinkType, frame: &[u8]) -> Result<&[u8], Skip> {
    // The common case without a call: untagged Ethernet carrying IP.
    if link == LinkType::ETHERNET {
        if let Some((h, rest)) = frame.split_first_chunk::<14>() {
            if matches!(u16::from_be_bytes([h[12], h[13]]), ETH_IPV4 | ETH_IPV6) {
                return Ok(rest);
            }
        }
    }
    any_link_payload(link, frame)
}

/// [`link_payload`] for every link type and every Ethernet frame.
fn any_link_payload(link: LinkType, frame: &[u8]) -> Result<&[u8], Skip> {
    match link.0 {
        1 => ethernet(frame),
        // RAW (101), its BSD numbers (12, 14), IPV4 (228), IPV6 (229): the frame is IP.
        101 | 12 | 14 | 228 | 229 => Ok(frame),
        0 | 108 => {
            let h = frame.get(..4).ok_or(Skip::Truncated("loopback header"))?;
            let h = [h[0], h[1], h[2], h[3]];
            // NULL: host byte order of the capturing machine, which we cannot know, so
            // accept either; LOOP: network byte order.
            let families = if link.0 == 0 {
                [u32::from_le_bytes(h), u32::from_be_bytes(h)]
            } else {
                [u32::from_be_bytes(h); 2]
            };
            // AF_INET is 2 everywhere; AF_INET6 is 10 (Linux), 24 (NetBSD, OpenBSD,
            // BSD/OS), 28 (FreeBSD, DragonFly), 30 (macOS, iOS).
            if families.iter().any(|f| matches!(f, 2 | 10 | 24 | 28 | 30)) {
                Ok(&frame[4..])
            } else {
                Err(Skip::NotIp)
            }
        }
        113 => {
            // Linux cooked v1: 16-byte header, protocol in the last two bytes.
            let h = frame.get(..16).ok_or(Skip::Truncated("Linux SLL header"))?;
            ether_type_payload(u16::from_be_bytes([h[14], h[15]]), &frame[16..])
        }
        276 => {
            // Linux cooked v2: 20-byte header, protocol first.
            let h = frame
                .get(..20)
                .ok_or(Skip::Truncated("Linux SLL2 header"))?;
            ether_type_payload(u16::from_be_bytes([h[0], h[1]]), &frame[20..])
        }
        other => Err(Skip::UnknownLinkType(other)),
    }
}

fn ethernet(frame: &[u8]) -> Result<&[u8], Skip> {
    let h = frame.get(..14).ok_or(Skip::Truncated("Ethernet header"))?;
    ether_type_payload(u16::from_be_bytes([h[12], h[13]]), &frame[14..])
}

/// Follow VLAN tags (802.1Q, 802.1ad, QinQ), MPLS label stacks and PPPoE to IP.
fn ether_type_payload(mut ether_type: u16, mut rest: &[u8]) -> Result<&[u8], Skip> {
    // Bounded: each step consumes bytes, and 16 layers is deeper than any real frame.
    for _ in 0..16 {
        match ether_type {
            ETH_IPV4 | ETH_IPV6 => return Ok(rest),
            0x8100 | 0x88a8 | 0x9100 | 0x9200 => {
                let h = rest.get(..4).ok_or(Skip::Truncated("VLAN tag"))?;
                ether_type = u16::from_be_bytes([h[2], h[3]]);
                rest = &rest[4..];
            }
            0x8847 | 0x8848 => {
                // MPLS: labels until bottom-of-stack, then the first nibble says IPv4/6.
                loop {
                    let l = rest.get(..4).ok_or(Skip::Truncated("MPLS label"))?;
                    let bottom = l[2] & 1 != 0;
                    rest = &rest[4..];
                    if bottom {
                        break;
                    }
                }
                return match rest.first().map(|b| b >> 4) {
                    Some(4 | 6) => Ok(rest),
                    _ => Err(Skip::NotIp),
                };
            }
            0x8864 => {
                // PPPoE session: 6-byte header, then the PPP protocol.
                let h = rest.get(..8).ok_or(Skip::Truncated("PPPoE header"))?;
                let ppp = u16::from_be_bytes([h[6], h[7]]);
                rest = &rest[8..];
                return match ppp {
                    0x0021 | 0x0057 => Ok(rest),
                    _ => Err(Skip::NotIp),
                };
            }
            _ => return Err(Skip::NotIp),
        }
    }
    Err(Skip::Malformed("too many nested link-layer headers"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A valid IPv4 TCP packet with correct checksums.
    pub(crate) fn ipv4_tcp(flags: u8, payload: &[u8]) -> Vec<u8> {
        let total = 40 + payload.len();
        let mut p = vec![
            0x45,
            0,
            (total >> 8) as u8,
            total as u8,
            0,
            1,
            0x40,
            0,
            64,
            6,
            0,
            0,
            10,
            0,
            0,
            1,
            10,
            0,
            0,
            2,
        ];
        let c = !ones_complement(&p, 0);
        p[10..12].copy_from_slice(&c.to_be_bytes());
        let mut t = vec![
            0x30, 0x39, 0, 80, 0, 0, 0, 100, 0, 0, 0, 0, 0x50, flags, 0xff, 0xff, 0, 0, 0, 0,
        ];
        t.extend_from_slice(payload);
        let sum = pseudo_header_sum(
            IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)),
            IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2)),
            t.len() as u32,
        );
        let c = !ones_complement(&t, sum);
        t[16..18].copy_from_slice(&c.to_be_bytes());
        p.extend(t);
        p
    }

    /// RFC 1071's textbook loop, 16 bits at a time, folded until it fits: what the wide
    /// [`ones_complement`] must equal for every length, alignment of the tail and initial.
    fn sum_of_16_bit_words(data: &[u8], initial: u64) -> u16 {
        let mut sum = u128::from(initial);
        for pair in data.chunks(2) {
            sum += u128::from(u16::from_be_bytes([
                pair[0],
                pair.get(1).copied().unwrap_or(0),
            ]));
        }
        while sum >> 16 != 0 {
            sum = (sum & 0xffff) + (sum >> 16);
        }
        sum as u16
    }

    proptest::proptest! {
        #[test]
        fn wide_sum_equals_16_bit_sum(
            data in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..100),
            initial in proptest::prop_oneof![
                proptest::prelude::Just(0u64),
                proptest::prelude::Just(u64::MAX),
                proptest::prelude::any::<u64>(),
                0u64..0x3_0000,
            ],
            fill in proptest::prop_oneof![
                proptest::prelude::Just(None),
                proptest::prelude::Just(Some(0u8)),
                proptest::prelude::Just(Some(0xffu8)),
            ],
        ) {
            // All-zero and all-ones data are where end-around carries and the 0 / 0xffff
            // distinction bite.
            let data: Vec<u8> = match fill {
                Some(b) => vec![b; data.len()],
                None => data,
            };
            proptest::prop_assert_eq!(
                ones_complement(&data, initial),
                sum_of_16_bit_words(&data, initial)
            );
        }
    }

    #[test]
    fn checksums_and_lengths() {
        let mut d = Decoder::new(true);
        let p = ipv4_tcp(0x02, b"hello");
        let s = d.decode_ip(&p, 0).unwrap();
        assert_eq!(s.checksum, Checksum::Good);
        assert!(s.ip_checksum_ok);
        assert_eq!(s.payload_len, 5);
        assert_eq!(s.ip_len, 45);
        assert!(s.flags.syn());
        assert_eq!(s.src.to_string(), "10.0.0.1:12345");
        let mut bad = p.clone();
        *bad.last_mut().unwrap() ^= 1;
        assert_eq!(d.decode_ip(&bad, 0).unwrap().checksum, Checksum::Bad);
        // Cut by a snap length: the payload length still comes from the IP header.
        let cut = d.decode_ip(&p[..42], 0).unwrap();
        assert_eq!((cut.payload_len, cut.checksum), (5, Checksum::Unverified));
    }

    #[test]
    fn link_layers() {
        let ip = ipv4_tcp(0x10, b"");
        let mut eth = vec![0u8; 12];
        eth.extend([0x81, 0x00, 0, 5, 0x88, 0xa8, 0, 6, 0x88, 0x47]);
        eth.extend([0, 0, 0, 64, 0, 0, 1, 64]); // two MPLS labels, the second bottom
        eth.extend(&ip);
        assert_eq!(link_payload(LinkType::ETHERNET, &eth).unwrap(), &ip[..]);
        let mut sll2 = vec![0x08, 0x00];
        sll2.extend([0u8; 18]);
        sll2.extend(&ip);
        assert_eq!(link_payload(LinkType::LINUX_SLL2, &sll2).unwrap(), &ip[..]);
        let mut sll = vec![0u8; 14];
        sll.extend([0x86, 0xdd]);
        assert_eq!(
            link_payload(LinkType::LINUX_SLL, &sll).unwrap(),
            &[] as &[u8]
        );
        for af in [2u32, 10, 24, 28, 30] {
            for bytes in [af.to_le_bytes(), af.to_be_bytes()] {
                let mut null = bytes.to_vec();
                null.extend(&ip);
                assert_eq!(link_payload(LinkType::NULL, &null).unwrap(), &ip[..]);
            }
            let mut lo = af.to_be_bytes().to_vec();
            lo.extend(&ip);
            assert_eq!(link_payload(LinkType::LOOP, &lo).unwrap(), &ip[..]);
        }
        assert_eq!(
            link_payload(LinkType(147), &ip),
            Err(Skip::UnknownLinkType(147))
        );
    }

    #[test]
    fn ipv4_fragments_reassemble_in_any_order() {
        let full = ipv4_tcp(0x18, &[7u8; 40]);
        let tcp_bytes = &full[20..];
        let frag = |off: usize, more: bool, part: &[u8]| {
            let mut h = full[..20].to_vec();
            let total = 20 + part.len();
            h[2..4].copy_from_slice(&(total as u16).to_be_bytes());
            let fo = (off / 8) as u16 | if more { 0x2000 } else { 0 };
            h[6..8].copy_from_slice(&fo.to_be_bytes());
            h[10..12].copy_from_slice(&[0, 0]);
            let c = !ones_complement(&h, 0);
            h[10..12].copy_from_slice(&c.to_be_bytes());
            h.extend_from_slice(part);
            h
        };
        let a = frag(0, true, &tcp_bytes[..24]);
        let b = frag(24, true, &tcp_bytes[24..48]);
        let c = frag(48, false, &tcp_bytes[48..]);
        let mut d = Decoder::new(true);
        assert_eq!(d.decode_ip(&c, 0), Err(Skip::FragmentHeld));
        assert_eq!(d.decode_ip(&a, 0), Err(Skip::FragmentHeld));
        let s = d.decode_ip(&b, 0).unwrap();
        assert_eq!(s.payload_len, 40);
        assert_eq!(s.checksum, Checksum::Good);
        assert!(d.frags.is_empty());
    }

    #[test]
    fn ipv6_extension_headers() {
        let v4 = ipv4_tcp(0x02, b"");
        let tcp_bytes = &v4[20..];
        let mut p = vec![0x60, 0, 0, 0];
        let plen = 8 + 8 + tcp_bytes.len();
        p.extend((plen as u16).to_be_bytes());
        p.push(0); // hop-by-hop
        p.push(64);
        p.extend([0u8; 15]);
        p.push(1);
        p.extend([0u8; 15]);
        p.push(2);
        p.extend([60, 0, 0, 0, 0, 0, 0, 0]); // HBH -> dest opts
        p.extend([6, 0, 0, 0, 0, 0, 0, 0]); // dest opts -> TCP
        p.extend_from_slice(tcp_bytes);
        let s = Decoder::new(true).decode_ip(&p, 0).unwrap();
        assert!(s.flags.syn());
        assert_eq!(s.src.to_string(), "[::1]:12345");
        assert_eq!(s.ip_len as usize, plen + 40);
        // Checksum was made for IPv4 addresses, so it is wrong here: computed, not skipped.
        assert_eq!(s.checksum, Checksum::Bad);
    }
}
