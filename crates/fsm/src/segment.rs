//! Segments as the connection machine sees them: header fields that matter for connection
//! management, and the payload's length (never its bytes).

use crate::SeqNum;
use std::fmt;
use std::ops::{BitOr, BitOrAssign};

/// TCP control bits (RFC 9293 §3.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Flags(u8);

impl Flags {
    /// No flags.
    pub const NONE: Flags = Flags(0);
    /// FIN: no more data from sender.
    pub const FIN: Flags = Flags(0x01);
    /// SYN: synchronize sequence numbers.
    pub const SYN: Flags = Flags(0x02);
    /// RST: reset the connection.
    pub const RST: Flags = Flags(0x04);
    /// PSH: push function.
    pub const PSH: Flags = Flags(0x08);
    /// ACK: the acknowledgment field is significant.
    pub const ACK: Flags = Flags(0x10);
    /// URG: the urgent pointer field is significant.
    pub const URG: Flags = Flags(0x20);

    /// From the low six bits of the TCP header's flag byte.
    pub fn from_bits(bits: u8) -> Flags {
        Flags(bits & 0x3f)
    }

    /// The bits, as in the TCP header.
    pub fn bits(self) -> u8 {
        self.0
    }

    /// Whether every flag in `other` is set.
    pub fn contains(self, other: Flags) -> bool {
        self.0 & other.0 == other.0
    }

    /// SYN set.
    pub fn syn(self) -> bool {
        self.contains(Flags::SYN)
    }
    /// ACK set.
    pub fn ack(self) -> bool {
        self.contains(Flags::ACK)
    }
    /// FIN set.
    pub fn fin(self) -> bool {
        self.contains(Flags::FIN)
    }
    /// RST set.
    pub fn rst(self) -> bool {
        self.contains(Flags::RST)
    }
    /// PSH set.
    pub fn psh(self) -> bool {
        self.contains(Flags::PSH)
    }
    /// URG set.
    pub fn urg(self) -> bool {
        self.contains(Flags::URG)
    }

    /// Compact tcpdump/packetdrill notation: `S`, `S.`, `F.`, `R`, `P.`, `.` for a bare ACK.
    pub fn short(self) -> String {
        let mut s = String::new();
        for (flag, c) in [
            (Flags::SYN, 'S'),
            (Flags::FIN, 'F'),
            (Flags::RST, 'R'),
            (Flags::PSH, 'P'),
            (Flags::URG, 'U'),
        ] {
            if self.contains(flag) {
                s.push(c);
            }
        }
        if self.ack() {
            s.push('.');
        }
        if s.is_empty() {
            s.push_str("none");
        }
        s
    }

    /// Names joined by `+`: `SYN+ACK`, `FIN+ACK`, `RST`.
    pub fn long(self) -> String {
        let names: Vec<&str> = [
            (Flags::SYN, "SYN"),
            (Flags::FIN, "FIN"),
            (Flags::RST, "RST"),
            (Flags::PSH, "PSH"),
            (Flags::URG, "URG"),
            (Flags::ACK, "ACK"),
        ]
        .iter()
        .filter(|(f, _)| self.contains(*f))
        .map(|(_, n)| *n)
        .collect();
        if names.is_empty() {
            "none".to_string()
        } else {
            names.join("+")
        }
    }
}

impl BitOr for Flags {
    type Output = Flags;
    fn bitor(self, rhs: Flags) -> Flags {
        Flags(self.0 | rhs.0)
    }
}

impl BitOrAssign for Flags {
    fn bitor_assign(&mut self, rhs: Flags) {
        self.0 |= rhs.0;
    }
}

impl fmt::Display for Flags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(&self.long())
    }
}

/// A TCP segment, as far as connection management is concerned (RFC 9293 §3.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Segment {
    /// SEG.SEQ.
    pub seq: SeqNum,
    /// SEG.ACK (meaningful only with the ACK flag).
    pub ack: SeqNum,
    /// Control bits.
    pub flags: Flags,
    /// Payload length in octets (the payload itself is never carried).
    pub len: u32,
    /// SEG.WND, unscaled as on the wire is not modelled: the window in octets.
    pub window: u32,
}

impl Segment {
    /// A segment with no payload.
    pub fn control(seq: SeqNum, ack: SeqNum, flags: Flags, window: u32) -> Segment {
        Segment {
            seq,
            ack,
            flags,
            len: 0,
            window,
        }
    }

    /// SEG.LEN: payload octets plus one for SYN and one for FIN (RFC 9293 §3.4).
    pub fn seg_len(&self) -> u32 {
        self.len + u32::from(self.flags.syn()) + u32::from(self.flags.fin())
    }

    /// The sequence number after this segment: SEG.SEQ + SEG.LEN.
    pub fn end(&self) -> SeqNum {
        self.seq + self.seg_len()
    }
}

impl fmt::Display for Segment {
    /// packetdrill style: `F. 1:1(0) ack 1 win 65535`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {}:{}({})",
            self.flags.short(),
            self.seq,
            self.seq + self.len,
            self.len
        )?;
        if self.flags.ack() {
            write!(f, " ack {}", self.ack)?;
        }
        write!(f, " win {}", self.window)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc9293_3_4_seg_len_counts_syn_and_fin() {
        let s = Segment {
            seq: SeqNum(100),
            ack: SeqNum(0),
            flags: Flags::SYN | Flags::FIN,
            len: 10,
            window: 0,
        };
        assert_eq!(s.seg_len(), 12);
        assert_eq!(s.end(), SeqNum(112));
    }

    #[test]
    fn notation() {
        assert_eq!((Flags::SYN | Flags::ACK).short(), "S.");
        assert_eq!(Flags::ACK.short(), ".");
        assert_eq!((Flags::FIN | Flags::ACK).long(), "FIN+ACK");
        let s = Segment::control(SeqNum(1), SeqNum(2), Flags::FIN | Flags::ACK, 100);
        assert_eq!(s.to_string(), "F. 1:1(0) ack 2 win 100");
    }
}
