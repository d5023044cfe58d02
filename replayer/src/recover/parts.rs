//! Reading a lane's slots in parts, side by side, into one column of steps allocated once.
//!
//! Every slot reads on its own (a record's head reads its continuations itself), so a lane splits
//! into runs of slots that threads read at once. Each run writes its records' steps straight into
//! its own region of the lane's steps, which are then closed up: when every slot holds a record
//! (a full lane of small records, the case that matters for speed), nothing moves. Each run's
//! payloads become a segment of the lane's own, so they are written once and never moved.

use std::ops::Range;
use std::sync::Mutex;

use flightrec_schemas::layout::{MAX_RECORD_LEN, SLOT_SIZE};
use flightrec_schemas::slot::{Corruption, SlotState, Slots};

use super::records::{LaneRecords, Run, RunRecords};
use crate::map::{prefer_huge_pages, prefer_huge_pages_in};

/// A lane's records, and the continuation slots met while reading them.
pub(super) struct Read {
    pub records: LaneRecords,
    pub continuations: Vec<u64>,
}

/// Reads every slot, from the oldest, in `parts` runs of slots, each run on a thread of its own
/// but the first (a run is read on this thread when no thread can be started).
pub(super) fn read(slots: &Slots<'_>, oldest: u64, parts: u64) -> Read {
    let count = slots.slot_count() as usize;
    let parts = parts.clamp(1, count as u64) as usize;
    let runs: Vec<Range<usize>> = (0..parts)
        .map(|p| p * count / parts..(p + 1) * count / parts)
        .collect();
    // At most one record per slot: bounded by the file. A zeroed allocation comes from the
    // kernel untouched, so each thread faults in the pages of its own region.
    let mut steps = vec![0; count];
    prefer_huge_pages_in(&mut steps);
    let found = read_runs(slots, oldest, &runs, split(&mut steps, &runs));
    join(steps, &runs, found)
}

/// `column` cut at the bounds of `runs`, which cover it in order.
fn split<'a>(mut column: &'a mut [u64], runs: &[Range<usize>]) -> Vec<&'a mut [u64]> {
    let mut regions = Vec::with_capacity(runs.len());
    for run in runs {
        let (region, rest) = column.split_at_mut(run.len());
        regions.push(region);
        column = rest;
    }
    regions
}

/// What a run found: its records, and the slots that hold none.
struct Found {
    records: RunRecords,
    torn: Vec<u64>,
    overwritten: u64,
    corrupt: Vec<(u64, Corruption)>,
    continuations: Vec<u64>,
}

/// Reads each run into its region: the first on this thread, the others on threads of their own
/// (or on this one, after the first, when no thread can be started).
fn read_runs(
    slots: &Slots<'_>,
    oldest: u64,
    runs: &[Range<usize>],
    regions: Vec<&mut [u64]>,
) -> Vec<Found> {
    // Each run's work, taken once, by its thread or by this one.
    let work: Vec<_> = runs
        .iter()
        .cloned()
        .zip(regions)
        .map(|w| Mutex::new(Some(w)))
        .collect();
    let read = |i: usize| {
        let (run, region) = work[i].lock().ok()?.take()?;
        Some(read_run(slots, oldest, run, region))
    };
    std::thread::scope(|scope| {
        let read = &read;
        let threads: Vec<_> = (1..runs.len())
            .map(|i| {
                std::thread::Builder::new()
                    .name("flightrec-recover".into())
                    .spawn_scoped(scope, move || read(i))
                    .ok()
            })
            .collect();
        let mut found = vec![read(0).expect("the first run is read here")];
        for (i, thread) in (1..).zip(threads) {
            let by_thread = thread.and_then(|t| {
                t.join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
            });
            found.push(
                by_thread
                    .or_else(|| read(i))
                    .expect("every run is read once"),
            );
        }
        found
    })
}

/// Reads the slots at reading positions `run` (0 is the oldest slot) into `region`.
fn read_run(slots: &Slots<'_>, oldest: u64, run: Range<usize>, region: &mut [u64]) -> Found {
    // No more payload than the run's slots hold, plus the rest of a record that starts in the
    // run and ends after it, and never more than the whole lane holds: bounded by the file.
    let per_slot = (SLOT_SIZE - 8) as usize;
    let room = (run.len() * per_slot + MAX_RECORD_LEN as usize)
        .min(slots.slot_count() as usize * per_slot);
    let mut bytes = Vec::with_capacity(room);
    prefer_huge_pages(&mut bytes);
    let mut records = Run::new(region, bytes);
    let (mut torn, mut overwritten, mut corrupt, mut continuations) =
        (Vec::new(), 0, Vec::new(), Vec::new());
    let mask = slots.slot_count() - 1; // a power of two
    for at in run {
        let index = (oldest + at as u64) & mask;
        let start = records.bytes.len();
        match slots.read_append(index, &mut records.bytes) {
            SlotState::Record(header) => records.push(header.seq, header.pos, header.ticks, start),
            SlotState::Torn => torn.push(index),
            SlotState::Overwritten => overwritten += 1,
            SlotState::Corrupt(why) => corrupt.push((index, why)),
            SlotState::Continuation => continuations.push(index),
            SlotState::Empty => {}
        }
    }
    Found {
        records: records.finish(),
        torn,
        overwritten,
        corrupt,
        continuations,
    }
}

/// Joins what the runs found: their records into one lane, and the slots that hold none.
fn join(steps: Vec<u64>, runs: &[Range<usize>], found: Vec<Found>) -> Read {
    let (mut torn, mut overwritten, mut corrupt, mut continuations) =
        (Vec::new(), 0, Vec::new(), Vec::new());
    let mut parts = Vec::with_capacity(found.len());
    for (run, part) in runs.iter().zip(found) {
        parts.push((run.start, part.records));
        torn.extend_from_slice(&part.torn);
        overwritten += part.overwritten;
        corrupt.extend_from_slice(&part.corrupt);
        continuations.extend_from_slice(&part.continuations);
    }
    let mut records = LaneRecords::join(steps, parts);
    records.torn = torn;
    records.overwritten = overwritten;
    records.corrupt = corrupt;
    Read {
        records,
        continuations,
    }
}

#[cfg(test)]
mod tests {
    use super::{read, Read};
    use crate::recover::oldest_slot;
    use flightrec_schemas::layout::slot::CONTINUATION;
    use flightrec_schemas::slot::{Slots, SLOT_WORDS};
    use std::sync::atomic::{AtomicU64, Ordering};

    /// Everything a reading holds, to compare two readings of the same slots.
    fn contents(read: &Read) -> impl PartialEq + std::fmt::Debug + '_ {
        let r = &read.records;
        let corrupt: Vec<_> = r
            .corrupt
            .iter()
            .map(|(i, why)| (i, why.to_string()))
            .collect();
        let records: Vec<_> = r
            .iter()
            .map(|r| (r.seq, r.pos, r.ticks, r.payload))
            .collect();
        let replayed: Vec<_> = r.timed_payloads(0..r.len()).collect();
        (
            (records, replayed, &r.gaps, r.ascending()),
            (&r.torn, r.overwritten, corrupt, &read.continuations),
        )
    }

    /// A wrapped lane of 64 slots holding records of 0 to 150 bytes (up to four slots, some
    /// across the end), with a torn record and a corrupt one.
    fn damaged_lane() -> Vec<AtomicU64> {
        let words: Vec<AtomicU64> = (0..64 * SLOT_WORDS).map(|_| AtomicU64::new(0)).collect();
        let slots = Slots::new(&words).expect("64 slots");
        let mut pos = 0;
        for seq in 0..90u64 {
            let payload: Vec<u8> = (0..(seq * 37 % 151) as u8).collect();
            pos += slots.write(pos, seq, 1_000 + seq * seq, &payload);
        }
        let head = |slot: usize| &words[slot * SLOT_WORDS];
        let torn = (0..64).find(|&i| head(i).load(Ordering::Relaxed) & CONTINUATION == 0);
        head(torn.expect("a head slot")).store(0, Ordering::Relaxed);
        words[40 * SLOT_WORDS + 5].fetch_xor(1, Ordering::Relaxed);
        words
    }

    #[test]
    fn reading_in_parts_finds_what_one_reading_finds() {
        let words = damaged_lane();
        let slots = Slots::new(&words).expect("64 slots");
        let oldest = oldest_slot(&words, 64);
        let whole = read(&slots, oldest, 1);
        assert!(!whole.records.torn.is_empty() && !whole.records.corrupt.is_empty());
        assert!(whole.records.len() > 20 && !whole.continuations.is_empty());
        for parts in 2..=9 {
            let joined = read(&slots, oldest, parts);
            assert_eq!(contents(&joined), contents(&whole), "in {parts} parts");
        }
    }

    #[test]
    fn a_full_lane_of_one_slot_records_reads_the_same_in_parts() {
        // Every slot a record, wrapped: the runs' regions already touch, nothing moves.
        let words: Vec<AtomicU64> = (0..64 * SLOT_WORDS).map(|_| AtomicU64::new(0)).collect();
        let slots = Slots::new(&words).expect("64 slots");
        for seq in 0..100u64 {
            slots.write(seq, seq, seq * 3, &seq.to_le_bytes()[..(seq % 9) as usize]);
        }
        let oldest = oldest_slot(&words, 64);
        let whole = read(&slots, oldest, 1);
        assert!(whole.records.seqs().eq(36..100));
        for parts in [2, 4, 7, 64, 100] {
            assert_eq!(contents(&read(&slots, oldest, parts)), contents(&whole));
        }
    }
}
