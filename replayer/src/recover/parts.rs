//! Reading a lane's slots in parts, side by side, into columns allocated once.
//!
//! Every slot reads on its own (a record's head reads its continuations itself), so a lane splits
//! into runs of slots that threads read at once. Each run writes its records' fixed-size fields
//! straight into its own region of the lane's columns, which are then closed up: when every slot
//! holds a record (a full lane of small records, the case that matters for speed), nothing moves.
//! Payload bytes, whose sizes are not known ahead, go into a buffer per run, appended to the
//! first run's.

use std::ops::Range;
use std::sync::Mutex;

use flightrec_schemas::layout::SLOT_SIZE;
use flightrec_schemas::slot::{Corruption, SlotState, Slots};

use super::{LaneRecords, Step};
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
    // At most one record per slot: bounded by the file. Zeroed allocations come from the kernel
    // untouched, so each thread faults in the pages of its own region.
    let mut columns = Columns {
        seqs: vec![0; count],
        positions: vec![0; count],
        ticks: vec![0; count],
        starts: vec![0; count],
        steps: vec![0; count],
    };
    columns.prefer_huge_pages();
    let found = read_runs(slots, oldest, &runs, columns.regions(&runs));
    close_up(columns, &runs, found)
}

/// The fixed-size fields of every record, one column each, as in [`LaneRecords`].
struct Columns {
    seqs: Vec<u64>,
    positions: Vec<u64>,
    ticks: Vec<u64>,
    starts: Vec<u64>,
    steps: Vec<u64>,
}

impl Columns {
    fn each(&mut self) -> [&mut Vec<u64>; 5] {
        [
            &mut self.seqs,
            &mut self.positions,
            &mut self.ticks,
            &mut self.starts,
            &mut self.steps,
        ]
    }

    fn prefer_huge_pages(&mut self) {
        for column in self.each() {
            prefer_huge_pages_in(column);
        }
    }

    /// Each run's region of every column.
    fn regions(&mut self, runs: &[Range<usize>]) -> Vec<Region<'_>> {
        let [seqs, positions, ticks, starts, steps] = self.each().map(|c| split(c, runs));
        seqs.into_iter()
            .zip(positions)
            .zip(ticks)
            .zip(starts)
            .zip(steps)
            .map(|((((seqs, positions), ticks), starts), steps)| Region {
                seqs,
                positions,
                ticks,
                starts,
                steps,
            })
            .collect()
    }
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

/// One run's region of the columns: room for a record per slot of the run.
struct Region<'a> {
    seqs: &'a mut [u64],
    positions: &'a mut [u64],
    ticks: &'a mut [u64],
    starts: &'a mut [u64],
    steps: &'a mut [u64],
}

/// What a run found besides the fields written into its region.
#[derive(Default)]
struct Found {
    /// Records written into the region, from its start.
    records: usize,
    /// Their payloads, back to back; a record's start in its region is relative to these.
    bytes: Vec<u8>,
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
    regions: Vec<Region<'_>>,
) -> Vec<Found> {
    // Each run's work, taken once, by its thread or by this one.
    let work: Vec<_> = runs
        .iter()
        .cloned()
        .zip(regions)
        .map(|w| Mutex::new(Some(w)))
        .collect();
    let total = slots.slot_count() as usize;
    let read = |i: usize| {
        let (run, region) = work[i].lock().ok()?.take()?;
        // The first run's buffer gets room for every payload: appending the others never moves it.
        let room = if i == 0 { total } else { run.len() };
        Some(read_run(slots, oldest, run, region, room))
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

/// Reads the slots at reading positions `run` (0 is the oldest slot), with room for the payloads
/// of `room` slots.
fn read_run(
    slots: &Slots<'_>,
    oldest: u64,
    run: Range<usize>,
    region: Region<'_>,
    room: usize,
) -> Found {
    let mut found = Found::default();
    // No more payload than the slots hold, bounded by the file.
    found.bytes.reserve(room * (SLOT_SIZE - 8) as usize);
    prefer_huge_pages(&mut found.bytes);
    let mask = slots.slot_count() - 1; // a power of two
    let mut previous = 0;
    for at in run {
        let index = (oldest + at as u64) & mask;
        let start = found.bytes.len();
        match slots.read_append(index, &mut found.bytes) {
            SlotState::Record(header) => {
                let len = (found.bytes.len() - start) as u32;
                let i = found.records;
                region.seqs[i] = header.seq;
                region.positions[i] = header.pos;
                region.ticks[i] = header.ticks;
                region.starts[i] = start as u64;
                region.steps[i] = Step::new(len, header.ticks, previous).0;
                previous = header.ticks;
                found.records += 1;
            }
            SlotState::Torn => found.torn.push(index),
            SlotState::Overwritten => found.overwritten += 1,
            SlotState::Corrupt(why) => found.corrupt.push((index, why)),
            SlotState::Continuation => found.continuations.push(index),
            SlotState::Empty => {}
        }
    }
    found
}

/// Moves each run's records up against the previous run's, and joins what the runs found.
fn close_up(mut columns: Columns, runs: &[Range<usize>], found: Vec<Found>) -> Read {
    let mut found = found.into_iter();
    let first = found.next().expect("at least one run");
    let mut len = first.records;
    let mut bytes = first.bytes;
    let (mut torn, mut overwritten, mut corrupt, mut continuations) = (
        first.torn,
        first.overwritten,
        first.corrupt,
        first.continuations,
    );
    for (run, part) in runs[1..].iter().zip(found) {
        let moved = run.start..run.start + part.records;
        if moved.start != len {
            for column in columns.each() {
                column.copy_within(moved.clone(), len);
            }
        }
        let offset = bytes.len() as u64;
        for start in &mut columns.starts[len..len + part.records] {
            *start += offset;
        }
        // The run's first step counted its time from zero: count it from the record before.
        if part.records > 0 && len > 0 {
            let step = Step(columns.steps[len]);
            let previous = columns.ticks[len - 1];
            columns.steps[len] = Step::new(step.len() as u32, columns.ticks[len], previous).0;
        }
        len += part.records;
        bytes.extend_from_slice(&part.bytes);
        torn.extend_from_slice(&part.torn);
        overwritten += part.overwritten;
        corrupt.extend_from_slice(&part.corrupt);
        continuations.extend_from_slice(&part.continuations);
    }
    for column in columns.each() {
        column.truncate(len);
    }
    let Columns {
        seqs,
        positions,
        ticks,
        starts,
        steps,
    } = columns;
    let records = LaneRecords {
        seqs,
        positions,
        ticks,
        starts,
        steps,
        bytes,
        torn,
        overwritten,
        corrupt,
        ..LaneRecords::default()
    };
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
        (
            (&r.seqs, &r.positions, &r.ticks, &r.starts),
            (&r.steps, &r.bytes),
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
        assert_eq!(whole.records.seqs, (36..100).collect::<Vec<u64>>());
        for parts in [2, 4, 7, 64, 100] {
            assert_eq!(contents(&read(&slots, oldest, parts)), contents(&whole));
        }
    }
}
