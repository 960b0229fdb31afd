//! A first-in first-out queue whose first few elements live inline.
//!
//! A [`crate::Connection`] queues the segments it sends and the events it reports until the
//! caller polls them, which callers do after every call: the queues hold a handful of
//! elements at a time. A `VecDeque` would allocate on the first push of every connection
//! (and the capture analyzer drives two connections per TCP connection it sees), so the
//! first `N` elements are kept inside the connection, and only a burst longer
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
/// The inline part is a plain slice `buf[start..end]` rather than a ring: callers drain the
/// queue after every call, and an emptied queue starts over at slot 0, so no index wraps
/// (a push or pop is a compare, a copy and an increment). A caller that leaves elements
/// queued while pushing more just spills sooner.
///
/// Invariant: every inline element was queued before every element of `overflow`, so a
/// push goes to `overflow` whenever that is not empty (or the slots are used up), and a pop
/// takes from the inline part first.
pub(crate) struct InlineQueue<T: Copy, const N: usize> {
    /// `buf[start..end]` are queued, and `Some`. Slots outside that range are stale or
    /// `None` and never read: `Option` keeps the buffer initialised without a placeholder
    /// value, and costs no space for the element types used here (they have a niche).
    buf: [Option<T>; N],
    start: u8,
    end: u8,
    /// Allocated on the first spill and kept (empty) afterwards, so a connection that
    /// bursts once does not allocate again for every burst. Boxed (the lint's extra
    /// allocation happens only on a spill) so that it costs every connection 8 bytes, not a
    /// `VecDeque`'s 32.
    #[allow(clippy::box_collection)]
    overflow: Option<Box<VecDeque<T>>>,
}

impl<T: Copy, const N: usize> InlineQueue<T, N> {
    /// Compile-time check: the indices fit the `u8` fields.
    const FITS: () = assert!(N > 0 && N <= u8::MAX as usize);

    pub(crate) fn new() -> Self {
        let () = Self::FITS;
        InlineQueue {
            buf: [None; N],
            start: 0,
            end: 0,
            overflow: None,
        }
    }

    fn overflow_len(&self) -> usize {
        self.overflow.as_ref().map_or(0, |o| o.len())
    }

    pub(crate) fn len(&self) -> usize {
        usize::from(self.end - self.start) + self.overflow_len()
    }

    #[inline]
    pub(crate) fn is_empty(&self) -> bool {
        self.start == self.end && self.overflow_len() == 0
    }

    #[inline]
    pub(crate) fn push_back(&mut self, value: T) {
        let end = usize::from(self.end);
        if end < N && self.overflow_len() == 0 {
            self.buf[end] = Some(value);
            self.end += 1;
        } else {
            self.spill(value);
        }
    }

    #[cold]
    fn spill(&mut self, value: T) {
        self.overflow
            .get_or_insert_with(Default::default)
            .push_back(value);
    }

    #[inline]
    pub(crate) fn pop_front(&mut self) -> Option<T> {
        if self.start < self.end {
            let value = self.buf[usize::from(self.start)];
            self.start += 1;
            if self.start == self.end {
                self.start = 0;
                self.end = 0;
            }
            return value;
        }
        match self.overflow.as_mut() {
            Some(o) => o.pop_front(),
            None => None,
        }
    }

    /// Drop every queued element.
    #[inline]
    pub(crate) fn clear(&mut self) {
        self.start = 0;
        self.end = 0;
        if let Some(o) = self.overflow.as_mut() {
            o.clear();
        }
    }

    /// The queued elements, oldest first.
    pub(crate) fn iter(&self) -> impl Iterator<Item = &T> + '_ {
        self.buf[usize::from(self.start)..usize::from(self.end)]
            .iter()
            .flatten()
            .chain(self.overflow.iter().flat_map(|o| o.iter()))
    }
}

impl<T: Copy, const N: usize> Clone for InlineQueue<T, N> {
    /// Like a derived clone, but an empty spill buffer is not copied: a model checker clones
    /// connections by the million, and one burst in a connection's past should not cost
    /// every clone an allocation.
    fn clone(&self) -> Self {
        InlineQueue {
            buf: self.buf,
            start: self.start,
            end: self.end,
            overflow: self.overflow.as_ref().filter(|o| !o.is_empty()).cloned(),
        }
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
                prop_assert_eq!(q.is_empty(), model.is_empty());
                prop_assert!(q.iter().eq(model.iter()));
            }
            let mut cleared = q.clone();
            cleared.clear();
            prop_assert_eq!(cleared.len(), 0);
            prop_assert_eq!(cleared.pop_front(), None);
            cleared.push_back(7);
            prop_assert_eq!(cleared.pop_front(), Some(7));
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
            // Move the start index and possibly leave an empty spill buffer behind.
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
