//! The header of a checkpoint slot. The writer fills the slot while its stamp is zero and stores
//! the stamp last with release ordering; a reader accepts a slot only when the stamp is nonzero,
//! unchanged after the copy, and the header hash and state hash both match.

use crate::layout::checkpoint as c;

/// Counter values read at a checkpoint; `None` where the machine lacks the counter.
pub type Counters = [Option<u64>; c::COUNTER_SLOTS];

/// The fields of a checkpoint slot's header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CheckpointHeader {
    /// Generation, counting checkpoints across both slots from 1.
    pub generation: u64,
    /// Inputs applied before this state: replay resumes at this sequence number.
    pub input_seq: u64,
    /// Clock ticks when it was taken.
    pub ticks: u64,
    /// Bytes of encoded state.
    pub state_len: u64,
    /// `xxh3_64` of the encoded state.
    pub state_hash: u64,
    /// Performance counters at the time.
    pub counters: Counters,
}

/// Words of the header from `INPUT_SEQ` up to and including `HEADER_HASH`.
pub const BODY_WORDS: usize = ((c::HEADER_HASH - c::INPUT_SEQ) / 8) as usize + 1;

impl CheckpointHeader {
    /// The header words from `INPUT_SEQ` to `HEADER_HASH`, the last being the hash of the others.
    pub fn body_words(&self) -> [u64; BODY_WORDS] {
        let mut words = [0u64; BODY_WORDS];
        words[0] = self.input_seq;
        words[1] = self.ticks;
        words[2] = self.state_len;
        words[3] = self.state_hash;
        let mut valid = 0u64;
        for (i, counter) in self.counters.iter().enumerate() {
            if let Some(value) = counter {
                valid |= 1 << i;
                words[5 + i] = *value;
            }
        }
        words[4] = valid;
        words[BODY_WORDS - 1] = hash_words(self.generation, &words[..BODY_WORDS - 1]);
        words
    }

    /// Decodes header words read from a slot whose stamp was `generation`. `None` when the
    /// header hash, which covers the generation too, does not match.
    pub fn from_body_words(generation: u64, words: &[u64; BODY_WORDS]) -> Option<Self> {
        if hash_words(generation, &words[..BODY_WORDS - 1]) != words[BODY_WORDS - 1] {
            return None;
        }
        let valid = words[4];
        let counters = std::array::from_fn(|i| (valid & (1 << i) != 0).then_some(words[5 + i]));
        Some(CheckpointHeader {
            generation,
            input_seq: words[0],
            ticks: words[1],
            state_len: words[2],
            state_hash: words[3],
            counters,
        })
    }
}

/// The header hash: `xxh3_64` of the body words, seeded with the generation so that a damaged
/// stamp is not taken for another generation.
fn hash_words(generation: u64, words: &[u64]) -> u64 {
    let mut bytes = [0u8; 8 * (BODY_WORDS - 1)];
    for (chunk, word) in bytes.chunks_exact_mut(8).zip(words) {
        chunk.copy_from_slice(&word.to_le_bytes());
    }
    twox_hash::XxHash3_64::oneshot_with_seed(generation, &bytes)
}

/// The hash recorded for a checkpoint's state bytes, and checked by replay.
pub fn state_hash(state: &[u8]) -> u64 {
    twox_hash::XxHash3_64::oneshot(state)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_round_trips_and_detects_damage() {
        let mut counters: Counters = [None; c::COUNTER_SLOTS];
        counters[0] = Some(123);
        counters[2] = Some(0);
        let header = CheckpointHeader {
            generation: 4,
            input_seq: 1000,
            ticks: 55,
            state_len: 4096,
            state_hash: 0xfeed,
            counters,
        };
        let mut words = header.body_words();
        assert_eq!(CheckpointHeader::from_body_words(4, &words), Some(header));
        assert_eq!(
            CheckpointHeader::from_body_words(5, &words),
            None,
            "another generation"
        );
        words[0] ^= 1;
        assert_eq!(CheckpointHeader::from_body_words(4, &words), None);
    }
}
