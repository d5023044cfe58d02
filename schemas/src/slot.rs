//! The lane record protocol, shared by the writer and every reader.
//!
//! A lane is a ring of 64-byte slots viewed as `AtomicU64` words. Each record occupies one or more
//! consecutive slots. Its stamps work like a sequence lock (Boehm, "Can seqlocks get along with
//! programming language memory models?", MSPC 2012), one per record instead of one per structure:
//!
//! 1. the writer zeroes the stamp of every slot it is about to use, then issues a release fence;
//! 2. it stores the header and payload words (relaxed);
//! 3. it stores the continuation stamps, then the head stamp `pos + 1`, with release ordering.
//!
//! A reader loads the head stamp with acquire ordering, copies the record, issues an acquire fence
//! and loads the stamp again: if it changed, the writer overwrote the record meanwhile. Because a
//! writer that dies mid-record leaves a zero stamp behind, a torn record is never accepted, whether
//! the writer is alive or killed; the checksum additionally rejects bytes damaged after the fact.
//!
//! Only one thread ever writes a lane, so there is no shared cursor and no read-modify-write on the
//! hot path.

use crate::layout::{slot, slots_for, MAX_RECORD_LEN, SLOT_SIZE};
use crate::sync::{fence, AtomicU64, Ordering};

/// Words per slot.
pub const SLOT_WORDS: usize = (SLOT_SIZE / 8) as usize;
const HEAD_PAYLOAD_WORDS: usize = (slot::HEAD_PAYLOAD / 8) as usize;

/// The checksum stored with each record: the payload's `xxh3_64`, mixed with the record's position,
/// sequence number, time and length, folded to 32 bits.
///
/// ```
/// use flightrec_schemas::slot::record_checksum;
/// let a = record_checksum(7, 3, 1000, b"deposit");
/// assert_eq!(a, record_checksum(7, 3, 1000, b"deposit"));
/// assert_ne!(a, record_checksum(8, 3, 1000, b"deposit"));
/// assert_ne!(a, record_checksum(7, 3, 1000, b"depositX"));
/// ```
#[inline]
pub fn record_checksum(pos: u64, seq: u64, ticks: u64, payload: &[u8]) -> u32 {
    const K0: u64 = 0x9E37_79B9_7F4A_7C15;
    const K1: u64 = 0xC2B2_AE3D_27D4_EB4F;
    let body = xxhash_rust::xxh3::xxh3_64(payload);
    let meta = pos.rotate_left(17) ^ seq.rotate_left(31) ^ ticks ^ ((payload.len() as u64) << 40);
    let product = ((body ^ K0) as u128).wrapping_mul((meta ^ K1) as u128);
    let folded = (product as u64) ^ ((product >> 64) as u64);
    (folded ^ (folded >> 32)) as u32
}

/// The fields of a committed record's first slot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RecordHeader {
    /// Position of the record's first slot in the lane (slot index = `pos % slot_count`).
    pub pos: u64,
    /// Sequence number of the record in its lane.
    pub seq: u64,
    /// Clock ticks when it was recorded.
    pub ticks: u64,
    /// Payload length in bytes.
    pub len: u32,
}

impl RecordHeader {
    /// Slots this record occupies.
    pub fn slots(&self) -> u64 {
        slots_for(self.len)
    }
}

/// What a reader found at one slot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SlotState {
    /// Never written: stamp and all words zero.
    Empty,
    /// A continuation of a record that starts in an earlier slot.
    Continuation,
    /// A committed record whose checksum matched; its payload is in the caller's buffer.
    Record(RecordHeader),
    /// A record being written, or left half-written by a writer that died: stamp zero, slot not.
    Torn,
    /// The writer overwrote the record while it was being read (live files only).
    Overwritten,
    /// Bytes that no writer following the protocol could have left: wrong position in the stamp,
    /// absurd length, missing continuation, or a checksum mismatch.
    Corrupt(Corruption),
}

/// Why a slot was judged corrupt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Corruption {
    /// The stamp names a position that does not map to this slot.
    Misplaced {
        /// The position the stamp claims.
        claimed_pos: u64,
    },
    /// The length exceeds [`MAX_RECORD_LEN`] or the lane.
    BadLength {
        /// The length found.
        len: u32,
    },
    /// A continuation slot of the record does not carry the expected stamp.
    BrokenContinuation {
        /// Position of the broken continuation slot.
        at_pos: u64,
    },
    /// The checksum does not match the record's bytes.
    Checksum {
        /// The record's sequence number as stored (not trustworthy).
        seq: u64,
    },
}

impl std::fmt::Display for Corruption {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Corruption::Misplaced { claimed_pos } => {
                write!(
                    f,
                    "stamp claims position {claimed_pos}, which belongs to another slot"
                )
            }
            Corruption::BadLength { len } => write!(f, "record length {len} is impossible"),
            Corruption::BrokenContinuation { at_pos } => {
                write!(
                    f,
                    "continuation slot at position {at_pos} is missing or stale"
                )
            }
            Corruption::Checksum { seq } => {
                write!(f, "checksum mismatch (record claims seq {seq})")
            }
        }
    }
}

/// A view of a lane's slots as words. `words.len()` is `slot_count * SLOT_WORDS`, `slot_count` a
/// power of two.
#[derive(Clone, Copy)]
pub struct Slots<'a> {
    words: &'a [AtomicU64],
    mask: u64,
}

impl<'a> Slots<'a> {
    /// Wraps the words of a lane. Returns `None` unless the slot count is a nonzero power of two
    /// and the words fill whole slots.
    pub fn new(words: &'a [AtomicU64]) -> Option<Self> {
        let count = (words.len() / SLOT_WORDS) as u64;
        (words.len() % SLOT_WORDS == 0 && count.is_power_of_two()).then_some(Slots {
            words,
            mask: count - 1,
        })
    }

    /// Number of slots.
    pub fn slot_count(&self) -> u64 {
        self.mask + 1
    }

    /// Largest payload a single record may carry in this lane: at most a quarter of the lane, so
    /// one oversized record can never wipe out the whole history.
    pub fn max_record_len(&self) -> u32 {
        let quarter = (self.slot_count() / 4).max(1);
        let bytes = slot::HEAD_PAYLOAD + (quarter - 1) * slot::CONT_PAYLOAD;
        bytes.min(MAX_RECORD_LEN as u64) as u32
    }

    #[inline(always)]
    fn word(&self, pos: u64, word: usize) -> &AtomicU64 {
        &self.words[(pos & self.mask) as usize * SLOT_WORDS + word]
    }

    /// Writes one record at lane position `pos` and returns the number of slots it used.
    ///
    /// The caller must be the lane's only writer and must have checked that `payload` is no longer
    /// than [`Self::max_record_len`].
    #[inline]
    pub fn write(&self, pos: u64, seq: u64, ticks: u64, payload: &[u8]) -> u64 {
        debug_assert!(payload.len() <= self.max_record_len() as usize);
        let slots = slots_for(payload.len() as u32);
        // Step 1: invalidate every slot the record will cover before touching any of them.
        for s in 0..slots {
            self.word(pos + s, 0).store(0, Ordering::Relaxed);
        }
        fence(Ordering::Release);
        // Step 2: header and payload.
        let checksum = record_checksum(pos, seq, ticks, payload);
        self.word(pos, 1).store(seq, Ordering::Relaxed);
        self.word(pos, 2).store(ticks, Ordering::Relaxed);
        let len_and_sum = payload.len() as u64 | (checksum as u64) << 32;
        self.word(pos, 3).store(len_and_sum, Ordering::Relaxed);
        let (head, rest) = payload.split_at(payload.len().min(slot::HEAD_PAYLOAD as usize));
        store_words(|i| self.word(pos, 4 + i), head, HEAD_PAYLOAD_WORDS);
        for (s, chunk) in rest.chunks(slot::CONT_PAYLOAD as usize).enumerate() {
            let at = pos + 1 + s as u64;
            store_words(|i| self.word(at, 1 + i), chunk, SLOT_WORDS - 1);
        }
        // Step 3: publish, continuations first, the head stamp last.
        for s in 1..slots {
            let stamp = (pos + s + 1) | slot::CONTINUATION;
            self.word(pos + s, 0).store(stamp, Ordering::Release);
        }
        self.word(pos, 0).store(pos + 1, Ordering::Release);
        slots
    }

    /// Reads the slot at `index` (0-based, `< slot_count`). A record's payload is copied into
    /// `payload` (cleared first); nothing is allocated beyond the record's checked length.
    pub fn read(&self, index: u64, payload: &mut Vec<u8>) -> SlotState {
        payload.clear();
        let index = index & self.mask;
        let stamp = self.word(index, 0).load(Ordering::Acquire);
        if stamp == 0 {
            let dirty = (1..SLOT_WORDS).any(|w| self.word(index, w).load(Ordering::Relaxed) != 0);
            return if dirty {
                SlotState::Torn
            } else {
                SlotState::Empty
            };
        }
        if stamp & slot::CONTINUATION != 0 {
            return SlotState::Continuation;
        }
        let pos = stamp - 1;
        if pos & self.mask != index {
            return SlotState::Corrupt(Corruption::Misplaced { claimed_pos: pos });
        }
        let seq = self.word(pos, 1).load(Ordering::Relaxed);
        let ticks = self.word(pos, 2).load(Ordering::Relaxed);
        let len_and_sum = self.word(pos, 3).load(Ordering::Relaxed);
        let (len, checksum) = (len_and_sum as u32, (len_and_sum >> 32) as u32);
        if len > self.max_record_len() {
            return self.unless_overwritten(pos, stamp, Corruption::BadLength { len });
        }
        let slots = slots_for(len);
        payload.reserve(len as usize);
        load_words(
            |i| self.word(pos, 4 + i),
            HEAD_PAYLOAD_WORDS,
            len as usize,
            payload,
        );
        for s in 1..slots {
            let at = pos + s;
            let want = (at + 1) | slot::CONTINUATION;
            if self.word(at, 0).load(Ordering::Acquire) != want {
                let broken = Corruption::BrokenContinuation { at_pos: at };
                return self.unless_overwritten(pos, stamp, broken);
            }
            load_words(
                |i| self.word(at, 1 + i),
                SLOT_WORDS - 1,
                len as usize,
                payload,
            );
        }
        fence(Ordering::Acquire);
        if self.word(pos, 0).load(Ordering::Relaxed) != stamp {
            return SlotState::Overwritten;
        }
        if record_checksum(pos, seq, ticks, payload) != checksum {
            return SlotState::Corrupt(Corruption::Checksum { seq });
        }
        SlotState::Record(RecordHeader {
            pos,
            seq,
            ticks,
            len,
        })
    }

    /// A record that looked corrupt may only have been overwritten mid-read; say which.
    fn unless_overwritten(&self, pos: u64, stamp: u64, corruption: Corruption) -> SlotState {
        fence(Ordering::Acquire);
        if self.word(pos, 0).load(Ordering::Relaxed) != stamp {
            SlotState::Overwritten
        } else {
            SlotState::Corrupt(corruption)
        }
    }
}

/// Stores `bytes` into up to `max_words` words, zero padding the last one.
#[inline(always)]
fn store_words<'w>(word: impl Fn(usize) -> &'w AtomicU64, bytes: &[u8], max_words: usize) {
    let mut chunks = bytes.chunks_exact(8);
    let mut i = 0;
    for chunk in &mut chunks {
        let value = u64::from_le_bytes(chunk.try_into().expect("chunks_exact yields 8 bytes"));
        word(i).store(value, Ordering::Relaxed);
        i += 1;
    }
    let tail = chunks.remainder();
    if !tail.is_empty() {
        let mut last = [0u8; 8];
        last[..tail.len()].copy_from_slice(tail);
        word(i).store(u64::from_le_bytes(last), Ordering::Relaxed);
        i += 1;
    }
    debug_assert!(i <= max_words);
}

/// Appends words to `out` until it holds `total` bytes or `max_words` words were read.
#[inline]
fn load_words<'w>(
    word: impl Fn(usize) -> &'w AtomicU64,
    max_words: usize,
    total: usize,
    out: &mut Vec<u8>,
) {
    let mut i = 0;
    while out.len() < total && i < max_words {
        let bytes = word(i).load(Ordering::Relaxed).to_le_bytes();
        let take = (total - out.len()).min(8);
        out.extend_from_slice(&bytes[..take]);
        i += 1;
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    fn lane(slots: usize) -> Vec<AtomicU64> {
        (0..slots * SLOT_WORDS).map(|_| AtomicU64::new(0)).collect()
    }

    #[test]
    fn records_round_trip_across_slot_boundaries_and_wraparound() {
        let words = lane(16);
        let slots = Slots::new(&words).unwrap();
        let mut pos = 13; // wraps after three slots
        let mut buf = Vec::new();
        for (seq, len) in [0usize, 5, 32, 33, 88, 89].into_iter().enumerate() {
            let payload: Vec<u8> = (0..len).map(|i| (i * 7 + seq) as u8).collect();
            let used = slots.write(pos, seq as u64, 1000 + seq as u64, &payload);
            match slots.read(pos % 16, &mut buf) {
                SlotState::Record(header) => {
                    assert_eq!(
                        (header.pos, header.seq, header.len as usize),
                        (pos, seq as u64, len)
                    );
                    assert_eq!(buf, payload);
                }
                other => panic!("len {len}: {other:?}"),
            }
            pos += used;
        }
    }

    #[test]
    fn a_zeroed_stamp_over_written_bytes_is_torn_not_empty() {
        let words = lane(4);
        let slots = Slots::new(&words).unwrap();
        let mut buf = Vec::new();
        assert_eq!(slots.read(0, &mut buf), SlotState::Empty);
        slots.write(0, 0, 1, b"payload");
        words[0].store(0, Ordering::Relaxed);
        assert_eq!(slots.read(0, &mut buf), SlotState::Torn);
    }

    #[test]
    fn flipped_payload_bits_fail_the_checksum() {
        let words = lane(4);
        let slots = Slots::new(&words).unwrap();
        slots.write(0, 9, 1, b"twenty-four bytes long..");
        words[5].fetch_xor(1 << 12, Ordering::Relaxed);
        let mut buf = Vec::new();
        assert_eq!(
            slots.read(0, &mut buf),
            SlotState::Corrupt(Corruption::Checksum { seq: 9 })
        );
    }
}
