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

/// Keys of the checksum: the fractional digits of pi, so nothing up a sleeve.
const KEYS: [u64; 8] = [
    0x243F_6A88_85A3_08D3,
    0x1319_8A2E_0370_7344,
    0xA409_3822_299F_31D0,
    0x082E_FA98_EC4E_6C89,
    0x4528_21E6_38D0_1377,
    0xBE54_66CF_34E9_0C6C,
    0xC0AC_29B7_C97C_50DD,
    0x3F84_D5B5_B547_0917,
];

/// 64x64 to 128-bit multiply, folded to 64 bits (as in wyhash).
#[inline(always)]
fn mum(a: u64, b: u64) -> u64 {
    let product = (a as u128).wrapping_mul(b as u128);
    (product as u64) ^ ((product >> 64) as u64)
}

/// The checksum stored with each record, over its position, sequence number, time, length and
/// payload.
///
/// The payload is taken as little-endian 64-bit words `w`, zero padded, in pairs; there are
/// `max(2, ⌈len / 16⌉)` pairs, so the head slot's four words always count. Pair `i` adds
/// `mum(w[2i] ^ KEYS[2i % 8] ^ x, w[2i + 1] ^ KEYS[(2i + 1) % 8] ^ y)` to a wrapping sum, where
/// `(x, y)` is `(pos, seq)` for pair 0, `(len, 1)` for pair 1 and `(0, i)` after that. The
/// checksum is the high 32 bits of the sum, xor the two halves of `ticks`.
///
/// The multiplies of a record are independent of one another and of the clock read, so a record
/// of up to 32 bytes costs two multiplies side by side, an add and a xor: the writer's hot path,
/// which waits for its own work before the next clock read, waits for little more than one
/// multiply.
///
/// ```
/// use flightrec_schemas::slot::record_checksum;
/// let a = record_checksum(7, 3, 1000, b"deposit");
/// assert_eq!(a, record_checksum(7, 3, 1000, b"deposit"));
/// assert_ne!(a, record_checksum(8, 3, 1000, b"deposit"));
/// assert_ne!(a, record_checksum(7, 4, 1000, b"deposit"));
/// assert_ne!(a, record_checksum(7, 3, 1001, b"deposit"));
/// assert_ne!(a, record_checksum(7, 3, 1000, b"depositX"));
/// assert_ne!(a, record_checksum(7, 3, 1000, b"deposit\0"));
/// ```
pub fn record_checksum(pos: u64, seq: u64, ticks: u64, payload: &[u8]) -> u32 {
    let payload = Payload {
        prefix: None,
        body: payload,
    };
    let sum = checksum_sum(pos, seq, payload.len(), |i| payload.word(i));
    checksum_end(sum, ticks)
}

/// Pairs of payload words a checksum covers: the head slot's two, then one per 16 bytes.
#[inline(always)]
fn checksum_pairs(len: usize) -> usize {
    len.div_ceil(16).max(2)
}

/// The sum of the checksum's pairs, before the time is mixed in.
#[inline(always)]
fn checksum_sum(pos: u64, seq: u64, len: usize, word: impl Fn(usize) -> u64) -> u64 {
    let fields = RecordFields { pos, seq, len };
    let mut sum = 0u64;
    for i in 0..checksum_pairs(len) {
        sum = sum.wrapping_add(checksum_pair(i, word(2 * i), word(2 * i + 1), &fields));
    }
    sum
}

/// The head's word 3, `len | checksum << 32`, from the sum of pairs: the same bits as
/// `len | (checksum_end(sum, ticks) as u64) << 32`, arranged so that only a mask and a xor wait
/// for the sum (the rest depends on the clock and the length, known earlier).
#[inline(always)]
fn len_and_checksum(len: usize, sum: u64, ticks: u64) -> u64 {
    let early = (ticks ^ (ticks >> 32)) << 32 | len as u64;
    (sum & 0xFFFF_FFFF_0000_0000) ^ early
}

/// The fields of a record that its payload's multiplies mix in.
struct RecordFields {
    pos: u64,
    seq: u64,
    len: usize,
}

/// The checksum's two steps, shared by the writer's [`checksum`] and the reader's
/// [`StreamingChecksum`] so that the two cannot drift apart.
#[inline(always)]
fn checksum_pair(i: usize, a: u64, b: u64, fields: &RecordFields) -> u64 {
    let (x, y) = match i {
        0 => (fields.pos, fields.seq),
        1 => (fields.len as u64, 1),
        _ => (0, i as u64),
    };
    mum(a ^ KEYS[(2 * i) % 8] ^ x, b ^ KEYS[(2 * i + 1) % 8] ^ y)
}

/// The time enters last, with a xor, so that no multiply waits for the clock read.
#[inline(always)]
fn checksum_end(sum: u64, ticks: u64) -> u32 {
    ((sum >> 32) ^ ticks ^ (ticks >> 32)) as u32
}

/// What a slot's stamp says, before its record is read: the one decoding of the stamp that the
/// writer stores last (`position + 1`, with [`slot::CONTINUATION`] on a record's later slots).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stamp {
    /// Not committed: never written, or being written.
    Zero,
    /// The continuation bit with no position: no writer stores it.
    Bad,
    /// The first slot of the record at this position.
    Head(u64),
    /// A later slot of a record; its own position.
    Continuation(u64),
}

impl Stamp {
    /// Decodes a stamp word.
    pub fn of(word: u64) -> Stamp {
        match word {
            0 => Stamp::Zero,
            slot::CONTINUATION => Stamp::Bad,
            w if w & slot::CONTINUATION != 0 => Stamp::Continuation((w & !slot::CONTINUATION) - 1),
            w => Stamp::Head(w - 1),
        }
    }
}

/// The record checksum fed word by word, as a reader loads them: the same value as
/// [`record_checksum`] without going over the payload's bytes a second time.
struct StreamingChecksum {
    fields: RecordFields,
    ticks: u64,
    sum: u64,
    pending: Option<u64>,
    pair: usize,
}

impl StreamingChecksum {
    #[inline(always)]
    fn new(pos: u64, seq: u64, ticks: u64, len: usize) -> StreamingChecksum {
        StreamingChecksum {
            fields: RecordFields { pos, seq, len },
            ticks,
            sum: 0,
            pending: None,
            pair: 0,
        }
    }

    /// The next payload word, zero padded past the payload's end.
    #[inline(always)]
    fn push(&mut self, word: u64) {
        match self.pending.take() {
            None => self.pending = Some(word),
            Some(first) => {
                let mixed = checksum_pair(self.pair, first, word, &self.fields);
                self.sum = self.sum.wrapping_add(mixed);
                self.pair += 1;
            }
        }
    }

    #[inline(always)]
    fn finish(mut self) -> u32 {
        // Zero words complete the last pair and, for a short payload, the head's two pairs.
        while self.pending.is_some() || self.pair < checksum_pairs(self.fields.len) {
            self.push(0);
        }
        checksum_end(self.sum, self.ticks)
    }
}

/// A small record given as its words: the zero-copy path for fixed-size inputs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InlineRecord {
    /// The payload as little-endian words, zero padded.
    pub words: [u64; 4],
    /// Payload length in bytes, at most 32.
    pub len: u32,
}

impl InlineRecord {
    /// The payload bytes.
    pub fn bytes(&self) -> Vec<u8> {
        let mut bytes: Vec<u8> = self.words.iter().flat_map(|w| w.to_le_bytes()).collect();
        bytes.truncate(self.len as usize);
        bytes
    }
}

/// A record's payload: an optional first word (the trace header) followed by body bytes, read
/// as little-endian words without first copying them together.
#[derive(Clone, Copy)]
struct Payload<'a> {
    prefix: Option<u64>,
    body: &'a [u8],
}

impl Payload<'_> {
    #[inline(always)]
    fn len(&self) -> usize {
        self.prefix.map_or(0, |_| 8) + self.body.len()
    }

    /// The first four words, as the head slot stores them.
    #[inline(always)]
    fn head_words(&self) -> [u64; 4] {
        [self.word(0), self.word(1), self.word(2), self.word(3)]
    }

    /// Word `i`, zero past the end.
    #[inline(always)]
    fn word(&self, i: usize) -> u64 {
        match self.prefix {
            Some(prefix) if i == 0 => prefix,
            Some(_) => body_word(self.body, i - 1),
            None => body_word(self.body, i),
        }
    }
}

#[inline(always)]
fn body_word(body: &[u8], j: usize) -> u64 {
    let start = j * 8;
    match body.get(start..start + 8) {
        Some(chunk) => u64::from_le_bytes(chunk.try_into().expect("8 bytes")),
        None => partial_word(body.get(start..).unwrap_or(&[])),
    }
}

/// The first three little-endian words of `body` (at most 24 bytes), zero padded past its end.
///
/// Each word is one eight-byte load: the word holding the body's last bytes is loaded so that it
/// ends at the body's end (overlapping the word before it) and shifted down, so there is no loop
/// over bytes and no call to `memcpy`. This runs for every short trace message.
#[inline(always)]
fn short_words(body: &[u8]) -> [u64; 3] {
    let n = body.len();
    debug_assert!(n <= 24);
    let load = |at: usize| u64::from_le_bytes(body[at..at + 8].try_into().expect("8 bytes"));
    match n {
        0..8 => [partial_word(body), 0, 0],
        8 => [load(0), 0, 0],
        // Bytes `n - 8 .. n`, of which the last `n - 8` belong to the second word.
        9..=16 => [load(0), load(n - 8) >> (8 * (16 - n)), 0],
        // The last `n - 16` of them belong to the third word.
        _ => [load(0), load(8), load(n - 8) >> (8 * (24 - n))],
    }
}

/// The little-endian word of fewer than eight bytes, zero padded. Two overlapping loads instead
/// of a loop over the bytes: this runs for the tail of every trace message.
#[inline(always)]
fn partial_word(tail: &[u8]) -> u64 {
    let n = tail.len();
    debug_assert!(n < 8);
    if n >= 4 {
        let low = u32::from_le_bytes(tail[..4].try_into().expect("4 bytes")) as u64;
        let high = u32::from_le_bytes(tail[n - 4..n].try_into().expect("4 bytes")) as u64;
        low | high << (8 * (n - 4))
    } else if n >= 2 {
        let low = u16::from_le_bytes(tail[..2].try_into().expect("2 bytes")) as u64;
        let high = u16::from_le_bytes(tail[n - 2..n].try_into().expect("2 bytes")) as u64;
        low | high << (8 * (n - 2))
    } else {
        tail.first().map_or(0, |&byte| byte as u64)
    }
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

/// Asks the CPU to bring the cache line at `address` in, ahead of an access that will need it.
/// A hint only: on other architectures than x86_64 it does nothing.
#[inline(always)]
#[allow(unsafe_code)]
pub fn prefetch(address: *const u8) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch never faults and has no effect a program can observe, whatever the
    // address (it may lie past the end of an allocation); SSE is part of x86_64.
    unsafe {
        core::arch::x86_64::_mm_prefetch::<{ core::arch::x86_64::_MM_HINT_T0 }>(address.cast());
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = address;
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
    #[inline(always)]
    pub fn write(&self, pos: u64, seq: u64, ticks: u64, payload: &[u8]) -> u64 {
        self.write_payload(
            pos,
            seq,
            ticks,
            Payload {
                prefix: None,
                body: payload,
            },
        )
    }

    /// Writes a record whose payload is the 8 bytes of `prefix` (little-endian) followed by
    /// `body`, without joining them first. Same contract as [`Self::write`].
    #[inline(always)]
    pub fn write_prefixed(&self, pos: u64, seq: u64, ticks: u64, prefix: u64, body: &[u8]) -> u64 {
        if 8 + body.len() <= slot::HEAD_PAYLOAD as usize {
            self.write_prefixed_short(pos, seq, ticks, prefix, body);
            return 1;
        }
        let payload = Payload {
            prefix: Some(prefix),
            body,
        };
        debug_assert!(payload.len() <= self.max_record_len() as usize);
        self.write_spanning(pos, seq, ticks, &payload)
    }

    /// [`Self::write_prefixed`] of a `body` of at most 24 bytes, which always takes one slot.
    #[inline(always)]
    pub fn write_prefixed_short(&self, pos: u64, seq: u64, ticks: u64, prefix: u64, body: &[u8]) {
        debug_assert!(8 + body.len() <= slot::HEAD_PAYLOAD as usize);
        // A short trace message, the common case: its words come from a few overlapping loads
        // rather than from `Payload::word`'s general byte-by-byte cases.
        let [a, b, c] = short_words(body);
        self.write_single(pos, seq, ticks, 8 + body.len(), &[prefix, a, b, c]);
    }

    /// Writes a record of at most 32 bytes given as words; always one slot.
    #[inline(always)]
    pub fn write_inline(&self, pos: u64, seq: u64, ticks: u64, record: &InlineRecord) -> u64 {
        debug_assert!(record.len as u64 <= slot::HEAD_PAYLOAD);
        self.write_single(pos, seq, ticks, record.len as usize, &record.words);
        1
    }

    #[inline(always)]
    fn write_payload(&self, pos: u64, seq: u64, ticks: u64, payload: Payload<'_>) -> u64 {
        debug_assert!(payload.len() <= self.max_record_len() as usize);
        if payload.len() <= slot::HEAD_PAYLOAD as usize {
            self.write_single(pos, seq, ticks, payload.len(), &payload.head_words());
            1
        } else {
            self.write_spanning(pos, seq, ticks, &payload)
        }
    }

    /// The common case, kept small enough to inline: a record that fits its first slot, given
    /// as its four payload words (zero past the payload).
    #[inline(always)]
    fn write_single(&self, pos: u64, seq: u64, ticks: u64, len: usize, words: &[u64; 4]) {
        let slot = self.slot(pos);
        // Step 1: invalidate the slot before touching it.
        slot[0].store(0, Ordering::Relaxed);
        fence(Ordering::Release);
        // Step 2: header and payload (unused payload words are zeroed, not left stale). The
        // checksum is stored last: the other stores need not wait for its multiplies.
        slot[1].store(seq, Ordering::Relaxed);
        slot[2].store(ticks, Ordering::Relaxed);
        for (slot_word, &word) in slot[4..].iter().zip(words) {
            slot_word.store(word, Ordering::Relaxed);
        }
        let sum = checksum_sum(pos, seq, len, |i| words.get(i).copied().unwrap_or(0));
        slot[3].store(len_and_checksum(len, sum, ticks), Ordering::Relaxed);
        // Step 3: publish.
        slot[0].store(pos + 1, Ordering::Release);
    }

    /// A record spanning several slots.
    #[inline(never)]
    fn write_spanning(&self, pos: u64, seq: u64, ticks: u64, payload: &Payload<'_>) -> u64 {
        let slots = slots_for(payload.len() as u32);
        // Step 1: invalidate every slot the record will cover before touching any of them.
        for s in 0..slots {
            self.slot(pos + s)[0].store(0, Ordering::Relaxed);
        }
        fence(Ordering::Release);
        // Step 2: header and payload.
        let sum = checksum_sum(pos, seq, payload.len(), |i| payload.word(i));
        let head = self.slot(pos);
        head[1].store(seq, Ordering::Relaxed);
        head[2].store(ticks, Ordering::Relaxed);
        head[3].store(
            len_and_checksum(payload.len(), sum, ticks),
            Ordering::Relaxed,
        );
        let mut next = 0;
        for (i, word) in head[4..].iter().enumerate() {
            word.store(payload.word(i), Ordering::Relaxed);
            next = i + 1;
        }
        for s in 1..slots {
            for word in &self.slot(pos + s)[1..] {
                word.store(payload.word(next), Ordering::Relaxed);
                next += 1;
            }
        }
        // Step 3: publish, continuations first, the head stamp last.
        for s in 1..slots {
            let stamp = (pos + s + 1) | slot::CONTINUATION;
            self.slot(pos + s)[0].store(stamp, Ordering::Release);
        }
        head[0].store(pos + 1, Ordering::Release);
        slots
    }

    /// [`prefetch`]es the slot at lane position `pos`, ahead of the write that will need it.
    #[inline(always)]
    pub fn prefetch(&self, pos: u64) {
        let start = (pos & self.mask) as usize * SLOT_WORDS;
        prefetch(self.words.as_ptr().wrapping_add(start).cast());
    }

    /// The words of the slot at lane position `pos`.
    #[inline(always)]
    #[allow(unsafe_code)]
    fn slot(&self, pos: u64) -> &[AtomicU64; SLOT_WORDS] {
        let start = (pos & self.mask) as usize * SLOT_WORDS;
        debug_assert!(start + SLOT_WORDS <= self.words.len());
        // SAFETY: `Slots::new` checked that `words` holds `mask + 1` whole slots, so the slot
        // `pos & mask` lies inside it; the hot paths would otherwise check that on every write.
        unsafe {
            &*self
                .words
                .as_ptr()
                .add(start)
                .cast::<[AtomicU64; SLOT_WORDS]>()
        }
    }

    /// Reads the slot at `index` (0-based, `< slot_count`). A record's payload is copied into
    /// `payload` (cleared first); nothing is allocated beyond the record's checked length.
    pub fn read(&self, index: u64, payload: &mut Vec<u8>) -> SlotState {
        payload.clear();
        self.read_append(index, payload)
    }

    /// Like [`Slots::read`], but appends a record's payload to `out`, which is left as it was
    /// for anything but a record. Recovery reads a whole lane into one buffer this way, without
    /// a copy per record.
    pub fn read_append(&self, index: u64, out: &mut Vec<u8>) -> SlotState {
        let start = out.len();
        let state = self.read_from(index, out, start);
        if !matches!(state, SlotState::Record(_)) {
            out.truncate(start);
        }
        state
    }

    fn read_from(&self, index: u64, payload: &mut Vec<u8>, start: usize) -> SlotState {
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
        let end = start + len as usize;
        let mut sum = StreamingChecksum::new(pos, seq, ticks, len as usize);
        load_words(
            |i| self.word(pos, 4 + i),
            HEAD_PAYLOAD_WORDS,
            end,
            payload,
            &mut sum,
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
                end,
                payload,
                &mut sum,
            );
        }
        fence(Ordering::Acquire);
        if self.word(pos, 0).load(Ordering::Relaxed) != stamp {
            return SlotState::Overwritten;
        }
        if sum.finish() != checksum {
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

/// Appends words to `out` until it holds `total` bytes or `max_words` words were read, feeding
/// each to the checksum (the last one zero padded past `total`, as the checksum defines it).
#[inline]
fn load_words<'w>(
    word: impl Fn(usize) -> &'w AtomicU64,
    max_words: usize,
    total: usize,
    out: &mut Vec<u8>,
    sum: &mut StreamingChecksum,
) {
    let mut i = 0;
    // Whole words first: a fixed eight-byte copy, not a call to memcpy.
    while out.len() + 8 <= total && i < max_words {
        let value = word(i).load(Ordering::Relaxed);
        out.extend_from_slice(&value.to_le_bytes());
        sum.push(value);
        i += 1;
    }
    if out.len() < total && i < max_words {
        let take = total - out.len();
        let value = word(i).load(Ordering::Relaxed) & (u64::MAX >> (64 - 8 * take));
        out.extend_from_slice(&value.to_le_bytes()[..take]);
        sum.push(value);
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    fn lane(slots: usize) -> Vec<AtomicU64> {
        (0..slots * SLOT_WORDS).map(|_| AtomicU64::new(0)).collect()
    }

    #[test]
    fn the_streaming_checksum_is_the_record_checksum() {
        let bytes: Vec<u8> = (0..200u32).map(|i| (i * 37 + 11) as u8).collect();
        for len in 0..bytes.len() {
            let payload = &bytes[..len];
            let mut sum = StreamingChecksum::new(9, 4, 77, len);
            for chunk in payload.chunks(8) {
                let mut word = [0u8; 8];
                word[..chunk.len()].copy_from_slice(chunk);
                sum.push(u64::from_le_bytes(word));
            }
            assert_eq!(
                sum.finish(),
                record_checksum(9, 4, 77, payload),
                "{len} bytes"
            );
        }
    }

    /// The test vectors of FORMAT.md's appendix, computed there from the specification alone.
    #[test]
    fn the_checksum_matches_the_documented_test_vectors() {
        let counting: Vec<u8> = (0..0x28).collect();
        assert_eq!(record_checksum(0, 0, 0, b""), 0x00eb_426c);
        assert_eq!(record_checksum(7, 3, 1000, b"deposit"), 0xe27c_7ff6);
        assert_eq!(
            record_checksum(1029, 17, 123_456_789, &counting),
            0xcfa2_9061
        );
        let format = include_str!("../FORMAT.md");
        for documented in ["0x00eb426c", "0xe27c7ff6", "0xcfa29061"] {
            assert!(format.contains(documented), "FORMAT.md lists {documented}");
        }
    }

    #[test]
    fn the_head_word_holds_the_length_and_the_checksum() {
        for (len, sum, ticks) in [
            (0, 0, 0),
            (21, u64::MAX, 1 << 40),
            (32, 0x1234_5678_9abc, !7),
        ] {
            let checksum = checksum_end(sum, ticks);
            assert_eq!(
                len_and_checksum(len, sum, ticks),
                len as u64 | (checksum as u64) << 32
            );
        }
    }

    #[test]
    fn short_words_are_the_payload_words() {
        let bytes: Vec<u8> = (1..=24u8).collect();
        for n in 0..=24 {
            let body = &bytes[..n];
            let payload = Payload { prefix: None, body };
            let want = [payload.word(0), payload.word(1), payload.word(2)];
            assert_eq!(short_words(body), want, "{n} bytes");
        }
    }

    #[test]
    fn partial_words_are_the_bytes_zero_padded() {
        let bytes = [0x11u8, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77];
        for n in 0..8 {
            let mut padded = [0u8; 8];
            padded[..n].copy_from_slice(&bytes[..n]);
            assert_eq!(
                partial_word(&bytes[..n]),
                u64::from_le_bytes(padded),
                "{n} bytes"
            );
        }
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
