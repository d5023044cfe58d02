//! Recovering the committed records of a lane, and the checkpoints.
//!
//! Every slot is read through the shared slot protocol; what it finds is counted, never hidden:
//! torn records (a writer died mid-write), records overwritten while being read, and corrupt
//! slots, each with its position. Memory is bounded by the lane's own size in the file.

use std::ops::Range;

use flightrec_schemas::checkpoint::{state_hash, CheckpointHeader, Counters, BODY_WORDS};
use flightrec_schemas::header::{LaneInfo, LaneKind};
use flightrec_schemas::layout::{
    checkpoint as c, lane_control, slot, CHECKPOINT_HEADER_SIZE, CHECKPOINT_SLOTS,
};
use flightrec_schemas::slot::{Corruption, Slots, SLOT_WORDS};
use flightrec_schemas::sync::Ordering;

use crate::ring::Ring;

mod parts;
use parts::Read;

/// One recovered record, borrowed from its [`LaneRecords`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Record<'a> {
    /// Sequence number in the lane.
    pub seq: u64,
    /// Slot position of its first slot.
    pub pos: u64,
    /// Clock ticks when recorded.
    pub ticks: u64,
    /// Its payload.
    pub payload: &'a [u8],
}

/// What reading the records in order (a replay) needs of each beside its payload, in 8 bytes:
/// the payload's length, and the record's time as the ticks since the previous record's.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Step(u64);

/// Bits of a [`Step`] for the payload's length (a record holds at most 64 KiB).
const LEN_BITS: u32 = 17;
/// The delta of a [`Step`] whose time is not the previous record's plus a small delta (the
/// clock went back, or a long pause): its time is read from [`LaneRecords::ticks`].
const FAR: u64 = (1 << (64 - LEN_BITS)) - 1;

impl Step {
    fn new(len: u32, ticks: u64, previous: u64) -> Step {
        debug_assert!(len < 1 << LEN_BITS);
        let delta = ticks.checked_sub(previous).map_or(FAR, |d| d.min(FAR));
        Step(delta << LEN_BITS | len as u64)
    }

    #[inline]
    fn len(self) -> usize {
        (self.0 & ((1 << LEN_BITS) - 1)) as usize
    }

    /// Ticks since the previous record, unless [`FAR`].
    #[inline]
    fn delta(self) -> Option<u64> {
        let delta = self.0 >> LEN_BITS;
        (delta != FAR).then_some(delta)
    }
}

/// Everything recovered from one lane, in sequence order.
///
/// The records are kept as columns, and their payloads back to back in sequence order: reading
/// them in order (a replay) streams only the payloads and 8 bytes of [`Step`] a record, not the
/// 32 bytes of sequence number, position, time and payload start kept for random access.
#[derive(Clone, Debug, Default)]
pub struct LaneRecords {
    /// Sequence numbers, ascending, each at most once.
    seqs: Vec<u64>,
    /// Slot position of each record's first slot.
    positions: Vec<u64>,
    /// Clock ticks of each record.
    ticks: Vec<u64>,
    /// Where each record's payload starts in `bytes`.
    starts: Vec<u64>,
    /// Each record's [`Step`], as its bits.
    steps: Vec<u64>,
    bytes: Vec<u8>,
    /// Records found mid-write (the writer was writing them when it stopped, or is now), by the
    /// index of their first slot. A torn record of several slots counts once.
    pub torn: Vec<u64>,
    /// Slots the writer overwrote while they were being read (live files only).
    pub overwritten: u64,
    /// Slots whose bytes no writer could have produced, by slot index.
    pub corrupt: Vec<(u64, Corruption)>,
    /// Runs of sequence numbers missing between the first and last retained record.
    pub gaps: Vec<Range<u64>>,
    /// Records ever written to the lane (the last sequence number + 1).
    pub recorded: u64,
    /// Records dropped because they were larger than the lane accepts.
    pub dropped_too_large: u64,
}

impl LaneRecords {
    /// Records retained.
    pub fn len(&self) -> usize {
        self.seqs.len()
    }

    /// Whether no record was retained.
    pub fn is_empty(&self) -> bool {
        self.seqs.is_empty()
    }

    /// The record at `index` (0 is the oldest retained).
    pub fn get(&self, index: usize) -> Option<Record<'_>> {
        let start = *self.starts.get(index)? as usize;
        Some(Record {
            seq: self.seqs[index],
            pos: self.positions[index],
            ticks: self.ticks[index],
            payload: &self.bytes[start..start + Step(self.steps[index]).len()],
        })
    }

    /// The oldest record retained.
    pub fn first(&self) -> Option<Record<'_>> {
        self.get(0)
    }

    /// The newest record retained.
    pub fn last(&self) -> Option<Record<'_>> {
        self.get(self.len().checked_sub(1)?)
    }

    /// The records, oldest first.
    pub fn iter(&self) -> Records<'_> {
        Records {
            lane: self,
            indices: 0..self.len(),
        }
    }

    /// The sequence numbers of the records, ascending.
    pub fn seqs(&self) -> &[u64] {
        &self.seqs
    }

    /// Time and payload of the records at `indices`, in order: what a replay reads.
    pub(crate) fn timed_payloads(&self, indices: Range<usize>) -> TimedPayloads<'_> {
        let start = self.starts.get(indices.start).map_or(0, |&s| s as usize);
        let steps = &self.steps[indices.clone()];
        let ticks = &self.ticks[indices];
        // The first record's time is the one before it plus its delta, whatever that one was.
        let previous = match steps.first().and_then(|&s| Step(s).delta()) {
            Some(delta) => ticks[0].wrapping_sub(delta),
            None => 0,
        };
        TimedPayloads {
            steps: steps.iter(),
            ticks,
            bytes: &self.bytes[start..],
            at: 0,
            previous,
        }
    }

    /// Records retained.
    pub fn retained(&self) -> u64 {
        self.len() as u64
    }

    /// Records written but not retained: overwritten by the ring, torn or damaged.
    pub fn lost(&self) -> u64 {
        self.recorded.saturating_sub(self.retained())
    }

    /// The record with sequence number `seq`, if retained.
    pub fn find(&self, seq: u64) -> Option<Record<'_>> {
        self.get(self.seqs.binary_search(&seq).ok()?)
    }

    /// Adds a record whose payload was just appended to `bytes`, at `start`.
    fn push(&mut self, seq: u64, pos: u64, ticks: u64, start: usize) {
        let previous = self.ticks.last().copied().unwrap_or(0);
        let len = (self.bytes.len() - start) as u32;
        self.seqs.push(seq);
        self.positions.push(pos);
        self.ticks.push(ticks);
        self.starts.push(start as u64);
        self.steps.push(Step::new(len, ticks, previous).0);
    }
}

/// Time and payload of a run of records, in order: see [`LaneRecords::timed_payloads`].
pub(crate) struct TimedPayloads<'a> {
    steps: std::slice::Iter<'a, u64>,
    /// The times of the run, read only where a step's delta is [`FAR`].
    ticks: &'a [u64],
    /// The payloads of the run, back to back, and those after it.
    bytes: &'a [u8],
    /// Position in the run of the next record.
    at: usize,
    /// Time of the previous record.
    previous: u64,
}

impl<'a> Iterator for TimedPayloads<'a> {
    type Item = (u64, &'a [u8]);

    #[inline]
    fn next(&mut self) -> Option<(u64, &'a [u8])> {
        let step = Step(*self.steps.next()?);
        let ticks = match step.delta() {
            Some(delta) => self.previous.wrapping_add(delta),
            None => self.ticks[self.at],
        };
        let (payload, rest) = self.bytes.split_at(step.len());
        self.bytes = rest;
        self.previous = ticks;
        self.at += 1;
        Some((ticks, payload))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.steps.size_hint()
    }
}

/// The records of a lane, oldest first: see [`LaneRecords::iter`].
#[derive(Clone, Debug)]
pub struct Records<'a> {
    lane: &'a LaneRecords,
    indices: Range<usize>,
}

impl<'a> Iterator for Records<'a> {
    type Item = Record<'a>;

    fn next(&mut self) -> Option<Record<'a>> {
        self.lane.get(self.indices.next()?)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.indices.size_hint()
    }
}

impl DoubleEndedIterator for Records<'_> {
    fn next_back(&mut self) -> Option<Self::Item> {
        self.lane.get(self.indices.next_back()?)
    }
}

impl ExactSizeIterator for Records<'_> {}

impl<'a> IntoIterator for &'a LaneRecords {
    type Item = Record<'a>;
    type IntoIter = Records<'a>;

    fn into_iter(self) -> Records<'a> {
        self.iter()
    }
}

/// Everything recovered from a ring file: every lane's records and the usable checkpoints.
pub struct Recovered {
    /// Lanes in file order; the first is the input lane.
    pub lanes: Vec<RecoveredLane>,
    /// Usable checkpoints, oldest input sequence first.
    pub checkpoints: Vec<Checkpoint>,
    /// Checkpoint slots that hold no usable checkpoint, and why.
    pub checkpoint_problems: Vec<(u32, CheckpointProblem)>,
}

/// One lane's recovered records.
pub struct RecoveredLane {
    /// Input or trace.
    pub kind: LaneKind,
    /// `input`, or the name of the thread that last owned the lane.
    pub name: String,
    /// What it holds.
    pub records: LaneRecords,
}

impl Recovered {
    /// Reads every lane and both checkpoint slots of `ring` (a snapshot, if the writer runs).
    pub fn of(ring: &Ring) -> Recovered {
        let lanes = ring
            .header()
            .lanes
            .iter()
            .map(|lane| RecoveredLane {
                kind: lane.kind,
                name: ring.lane_name(lane),
                records: recover_lane(ring, lane),
            })
            .collect();
        let mut checkpoints = Vec::new();
        let mut checkpoint_problems = Vec::new();
        for entry in recover_checkpoints(ring) {
            match entry {
                Ok(checkpoint) => checkpoints.push(checkpoint),
                Err(problem) => checkpoint_problems.push(problem),
            }
        }
        checkpoints.sort_by_key(|c| c.header.input_seq);
        Recovered {
            lanes,
            checkpoints,
            checkpoint_problems,
        }
    }

    /// The input lane's records (a validated header always has one, first).
    pub fn inputs(&self) -> &LaneRecords {
        &self.lanes[0].records
    }
}

/// Lanes of fewer slots than this are read by one thread: below it, starting threads costs
/// more than it saves (a 16 MiB lane reads in a few milliseconds).
const SLOTS_PER_THREAD: u64 = 1 << 18;

/// Reads every slot of `lane`. A large lane is read in parts, one thread each (every slot can be
/// read on its own: a record's head reads its continuations itself), and the parts joined.
pub fn recover_lane(ring: &Ring, lane: &LaneInfo) -> LaneRecords {
    let words = ring
        .map()
        .words(lane.slots_offset(), lane.slot_count * SLOT_WORDS as u64)
        .expect("lane bounds were validated at open");
    let slots = Slots::new(words).expect("slot count was validated as a power of two");
    // Reading from the oldest slot yields the records already in sequence order.
    let oldest = oldest_slot(words, lane.slot_count);
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get() as u64);
    let parts = cores.min(lane.slot_count / SLOTS_PER_THREAD).max(1);
    let Read {
        records: mut out,
        mut continuations,
    } = parts::read(&slots, oldest, parts);
    order_by_sequence(&mut out);
    out.torn.sort_unstable();
    continuations.sort_unstable();
    out.torn = torn_records(&out.torn, &continuations, lane.slot_count);
    out.gaps = gaps(&out.seqs);
    let next_seq = out.seqs.last().map_or(0, |seq| seq.saturating_add(1));
    let released = ring.lane_control(lane, lane_control::OWNER) == 0;
    let saved_next = if released && lane.kind == LaneKind::Trace {
        ring.lane_control(lane, lane_control::NEXT_SEQ)
    } else {
        0
    };
    out.recorded = next_seq.max(saved_next);
    out.dropped_too_large = ring.lane_control(lane, lane_control::DROPPED_TOO_LARGE);
    out
}

/// The slot holding the oldest position of a lane that has wrapped, found by a binary search
/// for the drop in slot positions (0 if it has not wrapped). Damaged stamps can mislead it;
/// that costs only a sort afterwards ([`order_by_sequence`]).
fn oldest_slot(words: &[std::sync::atomic::AtomicU64], slot_count: u64) -> u64 {
    let position = |index: u64| {
        let stamp = words[(index as usize) * SLOT_WORDS].load(std::sync::atomic::Ordering::Relaxed);
        (stamp & !slot::CONTINUATION).wrapping_sub(1)
    };
    let first = position(0);
    let (mut low, mut high) = (1, slot_count);
    while low < high {
        let mid = low + (high - low) / 2;
        if position(mid) >= first {
            low = mid + 1;
        } else {
            high = mid;
        }
    }
    low % slot_count
}

/// Sorts records by sequence number, unless they already are (as an undamaged lane read from its
/// oldest slot is). Two valid records cannot share a sequence number unless the writer's
/// numbering was reset by a corrupted control block; of those, the one at the newer position is
/// kept.
fn order_by_sequence(records: &mut LaneRecords) {
    if records.seqs.is_sorted_by(|a, b| a < b) {
        return;
    }
    let mut order: Vec<usize> = (0..records.len()).collect();
    order.sort_by_key(|&i| (records.seqs[i], std::cmp::Reverse(records.positions[i])));
    order.dedup_by_key(|i| records.seqs[*i]);
    // Rebuilt in that order, payloads included: a replay reads them back to back.
    let unordered = std::mem::take(records);
    for i in order {
        let record = unordered.get(i).expect("an index of the records");
        let start = records.bytes.len();
        records.bytes.extend_from_slice(record.payload);
        records.push(record.seq, record.pos, record.ticks, start);
    }
    records.torn = unordered.torn;
    records.overwritten = unordered.overwritten;
    records.corrupt = unordered.corrupt;
}

/// What a slot holds, for grouping torn slots into records.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Mark {
    Other,
    Torn,
    Continuation,
}

/// The first slot of each torn record. A record torn while being published leaves its head and
/// some continuations unstamped (torn) and others already stamped as continuations, so a run of
/// torn and continuation slots that begins with a torn slot is one record. The last slot and slot
/// 0 are neighbours. `torn` is sorted.
fn torn_records(torn: &[u64], continuations: &[u64], slot_count: u64) -> Vec<u64> {
    if torn.is_empty() {
        return Vec::new();
    }
    let mut marks = vec![Mark::Other; slot_count as usize];
    for &i in continuations {
        marks[i as usize] = Mark::Continuation;
    }
    for &i in torn {
        marks[i as usize] = Mark::Torn;
    }
    let previous = |i: u64| ((i + slot_count - 1) % slot_count) as usize;
    let starts_a_record = |&&i: &&u64| {
        let mut j = previous(i);
        while marks[j] == Mark::Continuation {
            j = previous(j as u64);
        }
        marks[j] == Mark::Other
    };
    let starts: Vec<u64> = torn.iter().filter(starts_a_record).copied().collect();
    if starts.is_empty() {
        // Every slot is torn or a continuation: one record around the whole ring.
        return vec![torn[0]];
    }
    starts
}

fn gaps(seqs: &[u64]) -> Vec<Range<u64>> {
    seqs.windows(2)
        .filter(|w| w[1] > w[0] + 1)
        .map(|w| w[0] + 1..w[1])
        .collect()
}

/// A checkpoint slot as found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Checkpoint {
    /// Which of the two slots.
    pub slot: u32,
    /// Its header.
    pub header: CheckpointHeader,
    /// The encoded state, verified against its hash.
    pub state: Vec<u8>,
}

impl Checkpoint {
    /// Counter values by name, `None` where the writer's machine lacked the counter.
    pub fn counters(&self) -> impl Iterator<Item = (&'static str, Option<u64>)> + '_ {
        let counters: &Counters = &self.header.counters;
        flightrec_schemas::header::COUNTER_NAMES
            .iter()
            .zip(counters.iter())
            .map(|(n, v)| (*n, *v))
    }
}

/// Why a checkpoint slot holds no usable checkpoint.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CheckpointProblem {
    /// Never written, or being rewritten when the writer stopped.
    Empty,
    /// The header hash does not match.
    BadHeader,
    /// The stated length exceeds the slot.
    BadLength(u64),
    /// The state bytes do not match their hash.
    BadState,
    /// Rewritten while being read (live files only).
    Overwritten,
}

/// Reads both checkpoint slots, newest generation first. Each entry is a checkpoint or the
/// reason its slot holds none.
pub fn recover_checkpoints(ring: &Ring) -> Vec<Result<Checkpoint, (u32, CheckpointProblem)>> {
    let header = ring.header();
    let mut found: Vec<_> = (0..CHECKPOINT_SLOTS)
        .map(|slot| {
            read_checkpoint(
                ring,
                slot,
                header.checkpoint_offset + slot as u64 * header.checkpoint_slot_size,
            )
        })
        .collect();
    found.sort_by_key(|entry| std::cmp::Reverse(entry.as_ref().map_or(0, |c| c.header.generation)));
    found
}

fn read_checkpoint(
    ring: &Ring,
    slot: u32,
    base: u64,
) -> Result<Checkpoint, (u32, CheckpointProblem)> {
    let map = ring.map();
    let fail = |problem| Err((slot, problem));
    let words = map
        .words(base, (c::HEADER_HASH + 8) / 8)
        .expect("checkpoint slots were validated at open");
    let stamp = words[0].load(Ordering::Acquire);
    if stamp == 0 {
        return fail(CheckpointProblem::Empty);
    }
    let body: [u64; BODY_WORDS] = std::array::from_fn(|i| words[1 + i].load(Ordering::Relaxed));
    let Some(header) = CheckpointHeader::from_body_words(stamp, &body) else {
        return fail(CheckpointProblem::BadHeader);
    };
    if header.generation % CHECKPOINT_SLOTS as u64 != slot as u64 {
        return fail(CheckpointProblem::BadHeader);
    }
    let capacity = ring.header().checkpoint_slot_size - CHECKPOINT_HEADER_SIZE;
    if header.state_len > capacity {
        return fail(CheckpointProblem::BadLength(header.state_len));
    }
    let state = map
        .copy(base + CHECKPOINT_HEADER_SIZE, header.state_len)
        .expect("inside the validated slot");
    flightrec_schemas::sync::fence(Ordering::Acquire);
    if words[0].load(Ordering::Relaxed) != stamp {
        return fail(CheckpointProblem::Overwritten);
    }
    if state_hash(&state) != header.state_hash {
        return fail(CheckpointProblem::BadState);
    }
    Ok(Checkpoint {
        slot,
        header,
        state,
    })
}

#[cfg(test)]
mod tests {
    use super::{oldest_slot, order_by_sequence, torn_records, LaneRecords, Step, FAR, LEN_BITS};
    use flightrec_schemas::layout::slot::CONTINUATION;
    use flightrec_schemas::slot::SLOT_WORDS;
    use std::sync::atomic::AtomicU64;

    /// A lane of `stamps.len()` slots with these stamps.
    fn lane(stamps: &[u64]) -> Vec<AtomicU64> {
        let mut words: Vec<AtomicU64> = (0..stamps.len() * SLOT_WORDS)
            .map(|_| AtomicU64::new(0))
            .collect();
        for (i, &stamp) in stamps.iter().enumerate() {
            words[i * SLOT_WORDS] = AtomicU64::new(stamp);
        }
        words
    }

    #[test]
    fn the_oldest_slot_is_where_positions_drop() {
        // Positions 8..=13 in slots 0..=5, then 6 and 7 from the previous lap.
        let wrapped = lane(&[9, 10 | CONTINUATION, 11, 12, 13, 14, 7, 8 | CONTINUATION]);
        assert_eq!(oldest_slot(&wrapped, 8), 6);
        let fresh = lane(&[1, 2, 3, 0, 0, 0, 0, 0]);
        assert_eq!(oldest_slot(&fresh, 8), 0);
        let full = lane(&[1, 2, 3, 4, 5, 6, 7, 8]);
        assert_eq!(oldest_slot(&full, 8), 0);
        let just_wrapped = lane(&[9, 2, 3, 4, 5, 6, 7, 8]);
        assert_eq!(oldest_slot(&just_wrapped, 8), 1);
    }

    #[test]
    fn records_are_put_in_sequence_order_whatever_their_slot_order() {
        // Each record's time and payload are its position, to check that they move with it.
        let lane = |records: &[(u64, u64)]| {
            let mut lane = LaneRecords::default();
            for &(seq, pos) in records {
                let start = lane.bytes.len();
                lane.bytes
                    .extend_from_slice(&pos.to_le_bytes()[..pos as usize % 3]);
                lane.push(seq, pos, pos, start);
            }
            lane
        };
        let seqs_and_times = |lane: &LaneRecords| {
            let replayed: Vec<_> = lane.timed_payloads(0..lane.len()).collect();
            for (record, (ticks, payload)) in lane.iter().zip(replayed) {
                assert_eq!((record.ticks, record.payload), (ticks, payload));
                assert_eq!(ticks, record.pos);
                assert_eq!(
                    payload,
                    &record.pos.to_le_bytes()[..record.pos as usize % 3]
                );
            }
            lane.iter().map(|r| (r.seq, r.pos)).collect::<Vec<_>>()
        };
        let mut wrapped = lane(&[(5, 5), (6, 6), (2, 2), (3, 3), (4, 4)]);
        order_by_sequence(&mut wrapped);
        assert_eq!(
            seqs_and_times(&wrapped),
            [(2, 2), (3, 3), (4, 4), (5, 5), (6, 6)]
        );
        let mut shuffled = lane(&[(9, 1), (2, 2), (7, 3), (1, 4), (2, 9)]);
        order_by_sequence(&mut shuffled);
        assert_eq!(
            seqs_and_times(&shuffled),
            [(1, 4), (2, 9), (7, 3), (9, 1)],
            "of equal numbers, the newer position is kept"
        );
    }

    #[test]
    fn a_replay_reads_the_times_of_every_record_from_any_start() {
        // Deltas that fit, and those that do not: too large, negative, just at the limit.
        let times = [
            5,
            1 << 62,
            7,
            7,
            8,
            u64::MAX,
            3,
            FAR + 3,
            2 * FAR + 2,
            3 * FAR + 2,
        ];
        let mut lane = LaneRecords::default();
        for (i, &ticks) in times.iter().enumerate() {
            let start = lane.bytes.len();
            lane.bytes.extend(std::iter::repeat_n(i as u8, i));
            lane.push(i as u64, i as u64, ticks, start);
        }
        assert!(lane.steps.iter().all(|&s| Step(s).len() < 1 << LEN_BITS));
        for from in 0..times.len() {
            let replayed: Vec<_> = lane.timed_payloads(from..times.len()).collect();
            let expected: Vec<_> = lane
                .iter()
                .skip(from)
                .map(|r| (r.ticks, r.payload))
                .collect();
            assert_eq!(replayed, expected, "from {from}");
            assert!(replayed
                .iter()
                .all(|(_, p)| p.len() == p.first().map_or(0, |&b| b as usize)));
        }
    }

    #[test]
    fn adjacent_torn_slots_are_one_torn_record() {
        let runs = |torn: &[u64]| torn_records(torn, &[], 8);
        assert_eq!(runs(&[]), Vec::<u64>::new());
        assert_eq!(runs(&[3, 4, 5]), vec![3]);
        assert_eq!(runs(&[1, 3, 4]), vec![1, 3]);
        assert_eq!(runs(&[0, 1, 6, 7]), vec![6]);
        assert_eq!(runs(&[0, 1, 2, 3, 4, 5, 6, 7]), vec![0]);
    }

    #[test]
    fn published_continuations_join_the_torn_slots_around_them() {
        assert_eq!(torn_records(&[2, 4, 5], &[3], 8), vec![2]);
        assert_eq!(torn_records(&[0, 7], &[6], 8), vec![7]);
        // Continuations before a torn head belong to an older, overwritten record.
        assert_eq!(torn_records(&[3], &[1, 2], 8), vec![3]);
        assert_eq!(torn_records(&[0, 4], &[1, 2, 3, 5, 6, 7], 8), vec![0]);
    }
}
