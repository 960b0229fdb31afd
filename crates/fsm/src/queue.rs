//! A first-in first-out queue whose first few elements live inline.
//!
//! A [`crate::Connection`] queues the segments it sends and the events it reports until the
//! caller polls them, which callers do after every call: the queues hold a handful of
//! elements at a time. A `VecDeque` would allocate on the first push of every connection
//! (and the capture analyzer drives two connections per TCP connection it sees), so the
//! first `N` elements are kept in a ring inside the connection, and only a burst longer
//! than that (a large `send()` cut into many segments) spills to the heap.
//!
//! Equality and hashing see only the queued elements, in order, never where they sit: a
//! model checker compares whole connections, and two connections with the same pending
//! output are the same state.

use std::collections::VecDeque;
use std::fmt;
use std::hash::{Hash, Hasher};

/// FIFO of `Copy` elements: up to `N` inline, the rest in a heap `VecDeque`.
///
/// Invariant: every element of the ring was queued before every element of `overflow`, so
/// a push goes to `overflow` whenever that is not empty (or the ring is full), and a pop
/// takes from the ring first.
#[derive(Clone)]
pub(crate) struct InlineQueue<T: Copy, const N: usize> {
    /// Slots `head, head+1, .. head+len-1` (modulo `N`) are `Some`, the others `None`.
    /// `Option` costs no space for the element types used here (they have a niche), and
    /// keeps the buffer initialised without a placeholder value.
    ring: [Option<T>; N],
    head: u8,
    len: u8,
    /// Allocated on the first spill and kept (empty) afterwards, so a connection that
    /// bursts once does not allocate again for every burst. Boxed (the lint's extra
    /// allocation happens only on a spill) so that it costs every connection 8 bytes, not a
    /// `VecDeque`'s 32.
    #[allow(clippy::box_collection)]
    overflow: Option<Box<VecDeque<T>>>,
}

impl<T: Copy, const N: usize> InlineQueue<T, N> {
    /// Compile-time check: the ring indices fit the `u8` fields.
    const FITS: () = assert!(N > 0 && N <= u8::MAX as usize);

    pub(crate) fn new() -> Self {
        let () = Self::FITS;
        InlineQueue {
            ring: [None; N],
            head: 0,
            len: 0,
            overflow: None,
        }
    }

    fn overflow_len(&self) -> usize {
        self.overflow.as_ref().map_or(0, |o| o.len())
    }

    pub(crate) fn len(&self) -> usize {
        usize::from(self.len) + self.overflow_len()
    }

    pub(crate) fn push_back(&mut self, value: T) {
        let len = usize::from(self.len);
        if len < N && self.overflow_len() == 0 {
            self.ring[(usize::from(self.head) + len) % N] = Some(value);
            self.len += 1;
        } else {
            self.overflow
                .get_or_insert_with(Default::default)
                .push_back(value);
        }
    }

    pub(crate) fn pop_front(&mut self) -> Option<T> {
        if self.len == 0 {
            return self.overflow.as_mut().and_then(|o| o.pop_front());
        }
        let head = usize::from(self.head);
        self.head = ((head + 1) % N) as u8;
        self.len -= 1;
        self.ring[head].take()
    }

    /// The queued elements, oldest first.
    pub(crate) fn iter(&self) -> impl Iterator<Item = &T> + '_ {
        let head = usize::from(self.head);
        (0..usize::from(self.len))
            .filter_map(move |i| self.ring[(head + i) % N].as_ref())
            .chain(self.overflow.iter().flat_map(|o| o.iter()))
    }
}

impl<T: Copy, const N: usize> Default for InlineQueue<T, N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T: Copy + PartialEq, const N: usize> PartialEq for InlineQueue<T, N> {
    fn eq(&self, other: &Self) -> bool {
        self.len() == other.len() && self.iter().eq(other.iter())
    }
}

impl<T: Copy + Eq, const N: usize> Eq for InlineQueue<T, N> {}

impl<T: Copy + Hash, const N: usize> Hash for InlineQueue<T, N> {
    fn hash<H: Hasher>(&self, state: &mut H) {
        // As a slice hashes: the length, then the elements.
        state.write_usize(self.len());
        for value in self.iter() {
            value.hash(state);
        }
    }
}

impl<T: Copy + fmt::Debug, const N: usize> fmt::Debug for InlineQueue<T, N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::hash_map::DefaultHasher;

    fn hash_of<T: Hash>(value: &T) -> u64 {
        let mut h = DefaultHasher::new();
        value.hash(&mut h);
        h.finish()
    }

    proptest! {
        /// Any interleaving of pushes and pops behaves exactly like a `VecDeque`, including
        /// across spills to the heap and back.
        #[test]
        fn behaves_like_a_vecdeque(ops in proptest::collection::vec(any::<Option<u16>>(), 0..200)) {
            let mut q: InlineQueue<u16, 4> = InlineQueue::new();
            let mut model = VecDeque::new();
            for op in ops {
                match op {
                    Some(v) => {
                        q.push_back(v);
                        model.push_back(v);
                    }
                    None => prop_assert_eq!(q.pop_front(), model.pop_front()),
                }
                prop_assert_eq!(q.len(), model.len());
                prop_assert!(q.iter().eq(model.iter()));
            }
            while let Some(v) = model.pop_front() {
                prop_assert_eq!(q.pop_front(), Some(v));
            }
            prop_assert_eq!(q.pop_front(), None);
        }

        /// Equal contents compare and hash equal whatever the ring position or spill
        /// history; different contents compare different.
        #[test]
        fn equality_is_by_contents(
            skew in 0usize..9,
            burst in 0usize..9,
            items in proptest::collection::vec(any::<u8>(), 0..12),
            other in proptest::collection::vec(any::<u8>(), 0..12),
        ) {
            let mut a: InlineQueue<u8, 4> = InlineQueue::new();
            // Move the ring head and possibly leave an empty spill buffer behind.
            for i in 0..skew + burst {
                a.push_back(i as u8);
            }
            for _ in 0..skew + burst {
                a.pop_front();
            }
            let mut b: InlineQueue<u8, 4> = InlineQueue::new();
            let mut c: InlineQueue<u8, 4> = InlineQueue::new();
            for &v in &items {
                a.push_back(v);
                b.push_back(v);
            }
            for &v in &other {
                c.push_back(v);
            }
            prop_assert_eq!(&a, &b);
            prop_assert_eq!(hash_of(&a), hash_of(&b));
            prop_assert_eq!(a.clone(), b.clone());
            prop_assert_eq!(a == c, items == other);
            prop_assert_eq!(format!("{a:?}"), format!("{items:?}"));
        }
    }
}
