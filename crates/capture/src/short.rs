//! Short per-connection lists kept inline: Zeek's history letters and each end's state
//! changes. Both are a handful of items for nearly every connection ("ShADadFf"; CLOSED →
//! SYN_SENT → ESTABLISHED → FIN_WAIT_1 → FIN_WAIT_2 → TIME_WAIT), and allocating them on the
//! heap cost more per connection than analysing several of its packets — more still with
//! `--threads`, where a report allocated by a worker is freed by the reading thread. Longer
//! lists spill to the heap, so nothing is ever cut short.

use std::fmt;
use std::ops::Deref;
use std::time::Duration;
use tcpstate_fsm::State;

const HISTORY_INLINE: usize = 24;

/// Zeek's `history` string: inline up to 24 letters, on the heap beyond. Reads as a `&str`.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct History {
    len: u8,
    inline: [u8; HISTORY_INLINE],
    /// The whole history once it outgrew `inline` (or met a non-ASCII char).
    spill: String,
}

impl History {
    /// The letters.
    pub fn as_str(&self) -> &str {
        if self.spill.is_empty() {
            // Only ASCII is ever stored inline, so this cannot fail.
            std::str::from_utf8(&self.inline[..usize::from(self.len)]).unwrap_or("")
        } else {
            &self.spill
        }
    }

    /// The letters as bytes (no UTF-8 check: for comparisons on the per-packet path).
    pub fn as_bytes(&self) -> &[u8] {
        if self.spill.is_empty() {
            &self.inline[..usize::from(self.len)]
        } else {
            self.spill.as_bytes()
        }
    }

    /// Append one letter.
    #[inline(always)]
    pub(crate) fn push(&mut self, c: char) {
        let n = usize::from(self.len);
        if n < HISTORY_INLINE && c.is_ascii() && self.spill.is_empty() {
            self.inline[n] = c as u8;
            self.len += 1;
            return;
        }
        self.push_spilled(c);
    }

    #[cold]
    #[inline(never)]
    fn push_spilled(&mut self, c: char) {
        let n = usize::from(self.len);
        if self.spill.is_empty() {
            // Inline letters are ASCII: each byte is its char.
            self.spill
                .extend(self.inline[..n].iter().map(|&b| char::from(b)));
        }
        self.spill.push(c);
    }

    /// Replace the letters.
    pub(crate) fn set(&mut self, s: &str) {
        *self = History::default();
        for c in s.chars() {
            self.push(c);
        }
    }
}

impl Deref for History {
    type Target = str;
    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl fmt::Display for History {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

impl fmt::Debug for History {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl PartialEq<str> for History {
    fn eq(&self, other: &str) -> bool {
        self.as_bytes() == other.as_bytes()
    }
}

impl PartialEq<&str> for History {
    fn eq(&self, other: &&str) -> bool {
        self.as_bytes() == other.as_bytes()
    }
}

const STATES_INLINE: usize = 8;

/// One end's states with the time it entered each: inline up to 8, on the heap beyond.
/// Reads as a slice of `(Duration, State)`.
#[derive(Clone, PartialEq, Eq)]
pub struct StateLog {
    len: u8,
    inline: [(Duration, State); STATES_INLINE],
    /// The whole log once it outgrew `inline`.
    spill: Vec<(Duration, State)>,
}

impl Default for StateLog {
    fn default() -> StateLog {
        StateLog {
            len: 0,
            inline: [(Duration::ZERO, State::Closed); STATES_INLINE],
            spill: Vec::new(),
        }
    }
}

impl StateLog {
    /// The entries, in order.
    pub fn as_slice(&self) -> &[(Duration, State)] {
        if self.spill.is_empty() {
            &self.inline[..usize::from(self.len)]
        } else {
            &self.spill
        }
    }

    fn as_mut_slice(&mut self) -> &mut [(Duration, State)] {
        if self.spill.is_empty() {
            &mut self.inline[..usize::from(self.len)]
        } else {
            &mut self.spill
        }
    }

    /// Append an entry.
    #[inline(always)]
    pub(crate) fn push(&mut self, entry: (Duration, State)) {
        let n = usize::from(self.len);
        if n < STATES_INLINE && self.spill.is_empty() {
            self.inline[n] = entry;
            self.len += 1;
            return;
        }
        self.push_spilled(entry);
    }

    #[cold]
    #[inline(never)]
    fn push_spilled(&mut self, entry: (Duration, State)) {
        let n = usize::from(self.len);
        if self.spill.is_empty() {
            self.spill.extend_from_slice(&self.inline[..n]);
        }
        self.spill.push(entry);
    }

    /// Sort by time, keeping the order of equal times (capture times can step backwards).
    pub(crate) fn sort_by_time(&mut self) {
        let entries = self.as_mut_slice();
        if !entries.is_sorted_by_key(|(at, _)| *at) {
            entries.sort_by_key(|(at, _)| *at);
        }
    }
}

impl Deref for StateLog {
    type Target = [(Duration, State)];
    fn deref(&self) -> &[(Duration, State)] {
        self.as_slice()
    }
}

impl fmt::Debug for StateLog {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.as_slice()).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn history_spills_past_its_inline_room_and_keeps_every_letter() {
        let mut h = History::default();
        let letters: String = "ShADadFfTtWw".chars().cycle().take(61).collect();
        for (n, c) in letters.char_indices() {
            h.push(c);
            assert_eq!(h.as_str(), &letters[..=n]);
        }
        h.set("^h");
        assert_eq!(h, "^h");
        h.push('é');
        assert_eq!(h.as_str(), "^hé");
        assert_eq!(format!("{h}|{h:?}"), "^hé|\"^hé\"");
        assert_eq!(History::default().as_str(), "");
    }

    #[test]
    fn state_log_spills_past_its_inline_room_and_sorts_stably() {
        let mut log = StateLog::default();
        let states = [
            State::Closed,
            State::SynSent,
            State::Established,
            State::FinWait1,
        ];
        let entries: Vec<(Duration, State)> = (0..20u64)
            .map(|k| (Duration::from_millis(20 - k), states[k as usize % 4]))
            .collect();
        for (n, e) in entries.iter().enumerate() {
            log.push(*e);
            assert_eq!(log.as_slice(), &entries[..=n]);
        }
        log.sort_by_time();
        assert!(log.is_sorted_by_key(|(at, _)| *at));
        let mut short = StateLog::default();
        short.push((Duration::from_secs(2), State::Listen));
        short.push((Duration::from_secs(1), State::Closed));
        short.push((Duration::from_secs(1), State::SynReceived));
        short.sort_by_time();
        assert_eq!(
            short.as_slice(),
            &[
                (Duration::from_secs(1), State::Closed),
                (Duration::from_secs(1), State::SynReceived),
                (Duration::from_secs(2), State::Listen)
            ]
        );
    }
}
