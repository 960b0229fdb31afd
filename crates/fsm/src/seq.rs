//! Sequence numbers: 32-bit, compared modulo 2^32 (RFC 9293 §3.4).

use std::fmt;
use std::ops::{Add, AddAssign, Sub};

/// A TCP sequence or acknowledgment number.
///
/// Comparisons are modulo 2^32 (RFC 9293 §3.4: "the comparison operators must be interpreted
/// modulo 2**32"): `a < b` iff `(b - a) mod 2^32` is in `1..2^31`, as the kernel's `before()`
/// and `after()` do. This is not a total order, so `SeqNum` deliberately implements
/// `PartialOrd` only through these helper methods' semantics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct SeqNum(pub u32);

impl SeqNum {
    /// `self - other` as a signed distance (the kernel's `(s32)(seq1 - seq2)`).
    pub fn distance_from(self, other: SeqNum) -> i32 {
        self.0.wrapping_sub(other.0) as i32
    }

    /// `self < other` modulo 2^32 (kernel `before()`).
    pub fn lt(self, other: SeqNum) -> bool {
        self.distance_from(other) < 0
    }

    /// `self <= other` modulo 2^32.
    pub fn le(self, other: SeqNum) -> bool {
        self.distance_from(other) <= 0
    }

    /// `self > other` modulo 2^32 (kernel `after()`).
    pub fn gt(self, other: SeqNum) -> bool {
        self.distance_from(other) > 0
    }

    /// `self >= other` modulo 2^32.
    pub fn ge(self, other: SeqNum) -> bool {
        self.distance_from(other) >= 0
    }

    /// `low <= self < high` modulo 2^32 (an empty range when `low == high`).
    pub fn in_range(self, low: SeqNum, high: SeqNum) -> bool {
        self.ge(low) && self.lt(high)
    }
}

impl Add<u32> for SeqNum {
    type Output = SeqNum;
    fn add(self, rhs: u32) -> SeqNum {
        SeqNum(self.0.wrapping_add(rhs))
    }
}

impl AddAssign<u32> for SeqNum {
    fn add_assign(&mut self, rhs: u32) {
        self.0 = self.0.wrapping_add(rhs);
    }
}

impl Sub<u32> for SeqNum {
    type Output = SeqNum;
    fn sub(self, rhs: u32) -> SeqNum {
        SeqNum(self.0.wrapping_sub(rhs))
    }
}

impl fmt::Display for SeqNum {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc9293_3_4_comparisons_wrap_modulo_2_32() {
        let near_top = SeqNum(u32::MAX - 10);
        let wrapped = near_top + 20;
        assert_eq!(wrapped, SeqNum(9));
        assert!(near_top.lt(wrapped));
        assert!(wrapped.gt(near_top));
        assert_eq!(wrapped.distance_from(near_top), 20);
        assert!(SeqNum(5).in_range(near_top, wrapped));
        assert!(!SeqNum(9).in_range(near_top, wrapped));
        assert!(SeqNum(u32::MAX).in_range(near_top, wrapped));
        assert!(SeqNum(3).le(SeqNum(3)) && SeqNum(3).ge(SeqNum(3)));
        assert_eq!(SeqNum(2) - 5, SeqNum(u32::MAX - 2));
    }
}
