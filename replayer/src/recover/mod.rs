//! Recovering the committed records of a lane, and the checkpoints.
//!
//! Every slot is read through the shared slot protocol; what it finds is counted, never hidden:
//! torn records (a writer died mid-write), records overwritten while being read, and corrupt
//! slots, each with its position. Memory is bounded by the lane's own size in the file.

use flightrec_schemas::checkpoint::{state_hash, CheckpointHeader, Counters, BODY_WORDS};
use flightrec_schemas::header::{LaneInfo, LaneKind};
use flightrec_schemas::layout::{
    checkpoint as c, lane_control, slot, CHECKPOINT_HEADER_SIZE, CHECKPOINT_SLOTS,
};
use flightrec_schemas::slot::{Slots, SLOT_WORDS};
use flightrec_schemas::sync::Ordering;

use crate::ring::Ring;

mod parts;
mod records;
use parts::Read;
pub use records::{LaneRecords, Record, Records};

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
    if !out.ascending() {
        out = in_sequence_order(out);
    }
    out.torn.sort_unstable();
    continuations.sort_unstable();
    out.torn = torn_records(&out.torn, &continuations, lane.slot_count);
    let next_seq = out.last().map_or(0, |record| record.seq.saturating_add(1));
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

/// The records sorted by sequence number (an undamaged lane read from its oldest slot already
/// is). Two valid records cannot share a sequence number unless the writer's numbering was reset
/// by a corrupted control block; of those, the one at the newer position is kept.
fn in_sequence_order(records: LaneRecords) -> LaneRecords {
    let mut order: Vec<Record<'_>> = records.iter().collect();
    order.sort_by_key(|r| (r.seq, std::cmp::Reverse(r.pos)));
    order.dedup_by_key(|r| r.seq);
    // Rebuilt in that order, payloads included: a replay reads them back to back.
    let mut ordered = LaneRecords::collect(order.into_iter());
    ordered.torn = records.torn;
    ordered.overwritten = records.overwritten;
    ordered.corrupt = records.corrupt;
    ordered
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
    use super::{in_sequence_order, oldest_slot, torn_records, LaneRecords, Record};
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
        let payload = |pos: u64| pos.to_le_bytes()[..pos as usize % 3].to_vec();
        let lane =
            |records: &[(u64, u64)]| {
                let payloads: Vec<_> = records.iter().map(|&(_, pos)| payload(pos)).collect();
                LaneRecords::collect(records.iter().zip(&payloads).map(|(&(seq, pos), bytes)| {
                    Record {
                        seq,
                        pos,
                        ticks: pos,
                        payload: bytes,
                    }
                }))
            };
        let seqs_and_times = |lane: &LaneRecords| {
            let replayed: Vec<_> = lane.timed_payloads(0..lane.len()).collect();
            for (record, (ticks, bytes)) in lane.iter().zip(replayed) {
                assert_eq!((record.ticks, record.payload), (ticks, bytes));
                assert_eq!(ticks, record.pos);
                assert_eq!(bytes, payload(record.pos));
            }
            lane.iter().map(|r| (r.seq, r.pos)).collect::<Vec<_>>()
        };
        let wrapped = lane(&[(5, 5), (6, 6), (2, 2), (3, 3), (4, 4)]);
        assert!(!wrapped.ascending());
        let wrapped = in_sequence_order(wrapped);
        assert!(wrapped.ascending());
        assert_eq!(
            seqs_and_times(&wrapped),
            [(2, 2), (3, 3), (4, 4), (5, 5), (6, 6)]
        );
        let shuffled = in_sequence_order(lane(&[(9, 1), (2, 2), (7, 3), (1, 4), (2, 9)]));
        assert_eq!(
            seqs_and_times(&shuffled),
            [(1, 4), (2, 9), (7, 3), (9, 1)],
            "of equal numbers, the newer position is kept"
        );
        assert_eq!(shuffled.gaps, [3..7, 8..9]);
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
