//! Segments with absolute sequence numbers and real TCP options, and their IPv4 encoding
//! (RFC 791 header, RFC 9293 §3.1 TCP header, the one's-complement checksum of RFC 1071 over
//! the pseudo-header). The kernel backend writes and reads these bytes on a TUN device; the
//! machine backend only uses [`WireSegment`].

use std::net::{Ipv4Addr, SocketAddrV4};

use tcpstate_fsm::{Flags, SeqNum};

use crate::script::TcpOption;

/// A TCP segment as it travels: absolute numbers, the window field as on the wire, options.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WireSegment {
    /// SEG.SEQ.
    pub seq: SeqNum,
    /// SEG.ACK (zero without the ACK flag).
    pub ack: SeqNum,
    /// Control bits.
    pub flags: Flags,
    /// Payload octets.
    pub len: u32,
    /// The 16-bit window field (unscaled).
    pub window: u16,
    /// Urgent pointer.
    pub urgent: u16,
    /// TCP options in order.
    pub options: Vec<TcpOption>,
}

/// A packet that is not an IPv4 TCP segment we can read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("undecodable packet: {0}")]
pub struct DecodeError(pub String);

/// An IPv4 TCP packet read from the wire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ipv4Tcp {
    /// Source address and port.
    pub src: SocketAddrV4,
    /// Destination address and port.
    pub dst: SocketAddrV4,
    /// The segment.
    pub segment: WireSegment,
}

fn sum16(data: &[u8], mut acc: u32) -> u32 {
    let mut chunks = data.chunks_exact(2);
    for c in &mut chunks {
        acc += u32::from(u16::from_be_bytes([c[0], c[1]]));
    }
    if let [last] = chunks.remainder() {
        acc += u32::from(*last) << 8;
    }
    acc
}

fn fold(mut acc: u32) -> u16 {
    while acc > 0xffff {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    !(acc as u16)
}

/// Encodes options, padding with EOL to a multiple of four octets (RFC 9293 §3.1).
pub fn encode_options(options: &[TcpOption]) -> Vec<u8> {
    let mut out = Vec::new();
    for o in options {
        match *o {
            TcpOption::Eol => out.push(0),
            TcpOption::Nop => out.push(1),
            TcpOption::Mss(v) => {
                out.extend([2, 4]);
                out.extend(v.to_be_bytes());
            }
            TcpOption::WindowScale(v) => out.extend([3, 3, v]),
            TcpOption::SackPermitted => out.extend([4, 2]),
            TcpOption::Sack(..) => {
                let blocks = o.sack_blocks();
                out.extend([5, (2 + 8 * blocks.len()) as u8]);
                for (l, r) in blocks {
                    out.extend(l.to_be_bytes());
                    out.extend(r.to_be_bytes());
                }
            }
            TcpOption::Timestamp(v, e) => {
                out.extend([8, 10]);
                out.extend(v.to_be_bytes());
                out.extend(e.to_be_bytes());
            }
        }
    }
    while out.len() % 4 != 0 {
        out.push(0);
    }
    out
}

/// Decodes the options area of a TCP header. Trailing EOL padding is not reported.
pub fn decode_options(mut data: &[u8]) -> Result<Vec<TcpOption>, DecodeError> {
    let mut out = Vec::new();
    while let Some(&kind) = data.first() {
        match kind {
            0 => {
                // EOL: the rest is padding. Report it only if the kernel put non-zero bytes after.
                if data.iter().any(|&b| b != 0) {
                    out.push(TcpOption::Eol);
                }
                break;
            }
            1 => {
                out.push(TcpOption::Nop);
                data = &data[1..];
                continue;
            }
            _ => {}
        }
        let len = usize::from(
            *data
                .get(1)
                .ok_or_else(|| DecodeError("option without length".into()))?,
        );
        if len < 2 || len > data.len() {
            return Err(DecodeError(format!("option {kind} with bad length {len}")));
        }
        let body = &data[2..len];
        let be32 = |b: &[u8]| u32::from_be_bytes([b[0], b[1], b[2], b[3]]);
        let opt = match (kind, body.len()) {
            (2, 2) => TcpOption::Mss(u16::from_be_bytes([body[0], body[1]])),
            (3, 1) => TcpOption::WindowScale(body[0]),
            (4, 0) => TcpOption::SackPermitted,
            (5, n) if n % 8 == 0 && n <= 32 && n > 0 => {
                let mut blocks = [(0, 0); 4];
                for (k, b) in body.chunks_exact(8).enumerate() {
                    blocks[k] = (be32(&b[..4]), be32(&b[4..]));
                }
                TcpOption::Sack(blocks, (n / 8) as u8)
            }
            (8, 8) => TcpOption::Timestamp(be32(&body[..4]), be32(&body[4..])),
            _ => {
                return Err(DecodeError(format!(
                    "unsupported TCP option kind {kind} length {len}"
                )))
            }
        };
        out.push(opt);
        data = &data[len..];
    }
    Ok(out)
}

/// Builds an IPv4 packet (no IP options, TTL 64, DF) carrying `seg` with a zero-filled payload.
pub fn encode_ipv4(src: SocketAddrV4, dst: SocketAddrV4, seg: &WireSegment) -> Vec<u8> {
    let opts = encode_options(&seg.options);
    let tcp_len = 20 + opts.len() + seg.len as usize;
    let total = 20 + tcp_len;
    let mut p = Vec::with_capacity(total);
    // IPv4 header (RFC 791 §3.1).
    p.extend([0x45, 0]);
    p.extend((total as u16).to_be_bytes());
    p.extend([0, 0, 0x40, 0]); // id 0, DF
    p.extend([64, 6, 0, 0]); // TTL, protocol TCP, checksum placeholder
    p.extend(src.ip().octets());
    p.extend(dst.ip().octets());
    let ip_csum = fold(sum16(&p[..20], 0));
    p[10..12].copy_from_slice(&ip_csum.to_be_bytes());
    // TCP header (RFC 9293 §3.1).
    let t = p.len();
    p.extend(src.port().to_be_bytes());
    p.extend(dst.port().to_be_bytes());
    p.extend(seg.seq.0.to_be_bytes());
    p.extend(seg.ack.0.to_be_bytes());
    let offset_words = ((20 + opts.len()) / 4) as u8;
    p.push(offset_words << 4);
    p.push(seg.flags.bits());
    p.extend(seg.window.to_be_bytes());
    p.extend([0, 0]);
    p.extend(seg.urgent.to_be_bytes());
    p.extend(&opts);
    p.resize(total, 0);
    let csum = tcp_checksum(*src.ip(), *dst.ip(), &p[t..]);
    p[t + 16..t + 18].copy_from_slice(&csum.to_be_bytes());
    p
}

/// The TCP checksum over the IPv4 pseudo-header and the segment (checksum field included as is).
fn tcp_checksum(src: Ipv4Addr, dst: Ipv4Addr, tcp: &[u8]) -> u16 {
    let mut pseudo = Vec::with_capacity(12);
    pseudo.extend(src.octets());
    pseudo.extend(dst.octets());
    pseudo.extend([0, 6]);
    pseudo.extend((tcp.len() as u16).to_be_bytes());
    fold(sum16(tcp, sum16(&pseudo, 0)))
}

/// Decodes an IPv4 TCP packet; `Ok(None)` for other packets (IPv6, ICMP, ...).
pub fn decode_ipv4(p: &[u8]) -> Result<Option<Ipv4Tcp>, DecodeError> {
    let Some(&v) = p.first() else {
        return Err(DecodeError("empty packet".into()));
    };
    if v >> 4 != 4 {
        return Ok(None);
    }
    let ihl = usize::from(v & 0x0f) * 4;
    if ihl < 20 || p.len() < ihl {
        return Err(DecodeError(format!(
            "IPv4 header length {ihl} in a {}-byte packet",
            p.len()
        )));
    }
    if p[9] != 6 {
        return Ok(None);
    }
    let total = usize::from(u16::from_be_bytes([p[2], p[3]]));
    if total > p.len() || total < ihl + 20 {
        return Err(DecodeError(format!(
            "IPv4 total length {total} in a {}-byte packet",
            p.len()
        )));
    }
    let src_ip = Ipv4Addr::new(p[12], p[13], p[14], p[15]);
    let dst_ip = Ipv4Addr::new(p[16], p[17], p[18], p[19]);
    let t = &p[ihl..total];
    let doff = usize::from(t[12] >> 4) * 4;
    if doff < 20 || doff > t.len() {
        return Err(DecodeError(format!(
            "TCP data offset {doff} in a {}-byte segment",
            t.len()
        )));
    }
    let be32 = |b: &[u8]| u32::from_be_bytes([b[0], b[1], b[2], b[3]]);
    let segment = WireSegment {
        seq: SeqNum(be32(&t[4..8])),
        ack: SeqNum(be32(&t[8..12])),
        flags: Flags::from_bits(t[13]),
        len: (t.len() - doff) as u32,
        window: u16::from_be_bytes([t[14], t[15]]),
        urgent: u16::from_be_bytes([t[18], t[19]]),
        options: decode_options(&t[20..doff])?,
    };
    Ok(Some(Ipv4Tcp {
        src: SocketAddrV4::new(src_ip, u16::from_be_bytes([t[0], t[1]])),
        dst: SocketAddrV4::new(dst_ip, u16::from_be_bytes([t[2], t[3]])),
        segment,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> WireSegment {
        WireSegment {
            seq: SeqNum(0xdead_beef),
            ack: SeqNum(7),
            flags: Flags::SYN | Flags::ACK,
            len: 3,
            window: 32792,
            urgent: 0,
            options: vec![
                TcpOption::Mss(1000),
                TcpOption::SackPermitted,
                TcpOption::Nop,
                TcpOption::WindowScale(7),
                TcpOption::Timestamp(100, 0),
                TcpOption::Sack([(1, 2), (5, 9), (0, 0), (0, 0)], 2),
            ],
        }
    }

    #[test]
    fn encode_then_decode_round_trips_and_checksums_verify() {
        let src = "192.0.2.1:40000".parse().unwrap();
        let dst = "192.168.0.1:8080".parse().unwrap();
        let bytes = encode_ipv4(src, dst, &sample());
        // A correct checksum makes the one's-complement sum over header + pseudo-header zero.
        assert_eq!(fold(sum16(&bytes[..20], 0)), 0);
        assert_eq!(tcp_checksum(*src.ip(), *dst.ip(), &bytes[20..]), 0);
        let back = decode_ipv4(&bytes).unwrap().unwrap();
        assert_eq!(back.src, src);
        assert_eq!(back.dst, dst);
        assert_eq!(back.segment, sample());
    }

    #[test]
    fn rfc1071_checksum_example() {
        // RFC 1071 §3: the words 0001 f203 f4f5 f6f7 sum to ddf2 (complement 220d).
        assert_eq!(
            fold(sum16(&[0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7], 0)),
            0x220d
        );
    }

    #[test]
    fn truncated_packets_are_errors_not_panics() {
        let src = "192.0.2.1:1".parse().unwrap();
        let dst = "192.168.0.1:2".parse().unwrap();
        let bytes = encode_ipv4(src, dst, &sample());
        for n in 0..bytes.len() {
            let _ = decode_ipv4(&bytes[..n]);
        }
        assert!(decode_ipv4(&[]).is_err());
    }
}
