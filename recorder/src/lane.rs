//! A lane's single writer: its position and sequence live here, in the writer, not in shared
//! memory, so appending a record touches only the slots it fills.

use flightrec_schemas::layout::{lane_control, slots_for};
use flightrec_schemas::slot::{InlineRecord, Slots};

use crate::file::LaneMemory;

/// How many slots ahead of the one being written the writer prefetches: far enough for the line
/// to arrive from memory before a tight loop of one-slot records reaches it (about a hundred
/// nanoseconds away), near enough to be still cached when it does.
const PREFETCH_AHEAD: u64 = 16;

/// Appends records to one lane. Exactly one exists per lane at a time.
pub struct LaneWriter {
    memory: LaneMemory,
    pos: u64,
    seq: u64,
    max_len: u32,
}

/// A record longer than the lane accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TooLarge;

impl LaneWriter {
    /// Resumes writing at `pos` with the next record numbered `seq`.
    pub fn new(memory: LaneMemory, pos: u64, seq: u64) -> LaneWriter {
        let max_len = memory.slots().max_record_len();
        LaneWriter {
            memory,
            pos,
            seq,
            max_len,
        }
    }

    /// Appends one record stamped `ticks`. Never blocks: the oldest records are overwritten.
    #[inline]
    pub fn push(&mut self, ticks: u64, payload: &[u8]) -> Result<u64, TooLarge> {
        self.fits(payload.len())?;
        Ok(self.append(|slots, pos, seq| slots.write(pos, seq, ticks, payload)))
    }

    /// Appends a record of at most 32 bytes given as slot words (always fits).
    #[inline(always)]
    pub fn push_inline(&mut self, ticks: u64, record: &InlineRecord) -> u64 {
        let (pos, seq) = self.next_single();
        self.memory.slots().write_inline(pos, seq, ticks, record);
        seq
    }

    /// Appends one record whose payload is `prefix` (8 bytes, little-endian) then `body`.
    #[inline]
    pub fn push_prefixed(&mut self, ticks: u64, prefix: u64, body: &[u8]) -> Result<u64, TooLarge> {
        self.fits(body.len() + 8)?;
        Ok(self.push_prefixed_fitting(ticks, prefix, body))
    }

    /// [`Self::push_prefixed`] for a caller that has already cut `body` to
    /// [`Self::max_len`]` - 8` bytes (the trace path does, to flag the cut), so the length is
    /// not checked twice.
    #[inline(always)]
    pub fn push_prefixed_fitting(&mut self, ticks: u64, prefix: u64, body: &[u8]) -> u64 {
        debug_assert!(body.len() + 8 <= self.max_len as usize);
        self.append(|slots, pos, seq| slots.write_prefixed(pos, seq, ticks, prefix, body))
    }

    /// [`Self::push_prefixed`] of a `body` of at most 24 bytes: one slot, which every lane holds.
    #[inline(always)]
    pub fn push_prefixed_short(&mut self, ticks: u64, prefix: u64, body: &[u8]) -> u64 {
        let (pos, seq) = self.next_single();
        self.memory
            .slots()
            .write_prefixed_short(pos, seq, ticks, prefix, body);
        seq
    }

    /// Refuses (and counts) a record of `len` bytes that the lane cannot hold.
    #[inline(always)]
    fn fits(&self, len: usize) -> Result<(), TooLarge> {
        if len > self.max_len as usize {
            self.count_dropped_too_large();
            return Err(TooLarge);
        }
        Ok(())
    }

    /// Writes the next record with `write` (which returns the slots it used) and numbers it.
    #[inline(always)]
    fn append(&mut self, write: impl FnOnce(&Slots<'_>, u64, u64) -> u64) -> u64 {
        let seq = self.seq;
        // The slot a few records on is fetched while this one is written, so that it is in the
        // cache by the time it is written in turn: a lane is larger than the cache, and without
        // the hint a burst of records waits on memory for each slot's line.
        self.memory.slots().prefetch(self.pos + PREFETCH_AHEAD);
        self.pos += write(self.memory.slots(), self.pos, seq);
        self.seq += 1;
        seq
    }

    /// Takes the position and number of a record of one slot, for the hot paths that write one:
    /// no closure in their way, so nothing depends on the inliner's judgement of one.
    #[inline(always)]
    fn next_single(&mut self) -> (u64, u64) {
        let (pos, seq) = (self.pos, self.seq);
        self.memory.slots().prefetch(pos + PREFETCH_AHEAD);
        self.pos = pos + 1;
        self.seq = seq + 1;
        (pos, seq)
    }

    /// Skips a sequence number without writing (an input that could not be recorded).
    pub fn skip(&mut self) {
        self.seq += 1;
    }

    #[cold]
    fn count_dropped_too_large(&self) {
        use std::sync::atomic::Ordering::Relaxed;
        self.memory
            .control(lane_control::DROPPED_TOO_LARGE)
            .fetch_add(1, Relaxed);
    }

    /// Slots that a record of `len` bytes would take.
    pub fn slots_needed(len: usize) -> u64 {
        slots_for(len as u32)
    }

    /// Next slot position.
    pub fn pos(&self) -> u64 {
        self.pos
    }

    /// Next sequence number.
    pub fn seq(&self) -> u64 {
        self.seq
    }

    /// Longest payload accepted.
    pub fn max_len(&self) -> u32 {
        self.max_len
    }

    /// Slots in the lane.
    pub fn capacity(&self) -> u64 {
        self.memory.slots().slot_count()
    }

    /// The lane's memory.
    pub fn memory(&self) -> &LaneMemory {
        &self.memory
    }
}
