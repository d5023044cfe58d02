//! A lane's recovered records, held in about the payload's size plus 8 bytes a record.
//!
//! Opening a large ring is bound by the memory it fills: fresh pages cost more to fault in than
//! the slots cost to read and check. So a record keeps only its payload and a [`Step`]: its
//! payload's length and the ticks since the record before. Its sequence number, position and
//! payload place follow from the record before (the next number, the slot after it, the byte
//! after it), as they do in an undamaged lane read in order. A record whose fields do not follow
//! is a *break* and keeps them in full aside; so is the first record each reader thread finds.
//! The fields of every 64th record are kept too (*anchors*), so that any record is at most 63
//! steps from known fields.

use std::ops::Range;

use flightrec_schemas::layout::slots_for;
use flightrec_schemas::slot::{prefetch, Corruption};

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

/// Records from one anchor to the next.
const ANCHOR_EVERY: usize = 64;

/// A record's payload length and where its other fields come from, in 8 bytes: the ticks since
/// the record before, whose fields it follows, or the index of its fields among the breaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Step(u64);

/// Bits of a [`Step`] for the payload's length (a record holds at most 64 KiB).
const LEN_BITS: u32 = 17;
/// The bit of a [`Step`] that marks a break.
const BREAK: u64 = 1 << LEN_BITS;
/// Where a [`Step`]'s delta or break index starts.
const VALUE_SHIFT: u32 = LEN_BITS + 1;
/// The largest delta a [`Step`] holds (a longer pause, or a clock going back, makes a break).
const MAX_DELTA: u64 = u64::MAX >> VALUE_SHIFT;

impl Step {
    fn follows(len: usize, delta: u64) -> Step {
        debug_assert!(len < 1 << LEN_BITS && delta <= MAX_DELTA);
        Step(delta << VALUE_SHIFT | len as u64)
    }

    fn breaks(len: usize, entry: usize) -> Step {
        debug_assert!(len < 1 << LEN_BITS);
        Step((entry as u64) << VALUE_SHIFT | BREAK | len as u64)
    }

    #[inline]
    fn len(self) -> usize {
        (self.0 & (BREAK - 1)) as usize
    }

    #[inline]
    fn is_break(self) -> bool {
        self.0 & BREAK != 0
    }

    /// Ticks since the record before, for a step that follows it.
    #[inline]
    fn delta(self) -> u64 {
        self.0 >> VALUE_SHIFT
    }

    /// Index among the breaks, for a step that breaks.
    #[inline]
    fn entry(self) -> usize {
        (self.0 >> VALUE_SHIFT) as usize
    }
}

/// Everything about a record but its payload's length.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Fields {
    seq: u64,
    pos: u64,
    ticks: u64,
    /// Which of [`LaneRecords::segments`] holds the payload, and where in it.
    segment: usize,
    offset: usize,
}

impl Fields {
    /// The fields of the record after this one, of `len` bytes, if that record follows it
    /// `delta` ticks later (the sums were checked when the records were added).
    #[inline]
    fn next(&self, len: usize, delta: u64) -> Fields {
        Fields {
            seq: self.seq.wrapping_add(1),
            pos: self.pos.wrapping_add(slots_for(len as u32)),
            ticks: self.ticks.wrapping_add(delta),
            segment: self.segment,
            offset: self.offset + len,
        }
    }

    /// The ticks from this record (of `len` bytes) to `next`, if `next` follows it.
    fn delta_to(&self, len: usize, next: &Fields) -> Option<u64> {
        let delta = next.ticks.checked_sub(self.ticks)?;
        let follows = self.seq.checked_add(1) == Some(next.seq)
            && self.pos.checked_add(slots_for(len as u32)) == Some(next.pos)
            && delta <= MAX_DELTA
            && *next == self.next(len, delta);
        follows.then_some(delta)
    }
}

/// A record whose fields do not follow from the one before, as a [`Run`] finds it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Break {
    /// The record's index in its run.
    index: usize,
    fields: Fields,
}

/// Everything recovered from one lane, in sequence order.
#[derive(Clone, Debug, Default)]
pub struct LaneRecords {
    /// Each record's [`Step`], as its bits.
    steps: Vec<u64>,
    /// The fields of the records that do not follow the one before, in record order.
    breaks: Vec<Fields>,
    /// The fields of records 0, 64, 128, …
    anchors: Vec<Fields>,
    /// The payloads, back to back in record order within each segment (one per reader thread):
    /// a replay streams through them.
    segments: Vec<Vec<u8>>,
    /// Whether the sequence numbers ascend (else the lane is put in order before use).
    ascending: bool,
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

/// A position among a lane's records, with the record's fields at hand.
#[derive(Clone, Copy, Debug)]
struct Cursor {
    index: usize,
    fields: Fields,
    len: usize,
}

impl LaneRecords {
    /// Records retained.
    pub fn len(&self) -> usize {
        self.steps.len()
    }

    /// Whether no record was retained.
    pub fn is_empty(&self) -> bool {
        self.steps.is_empty()
    }

    /// The record at `index` (0 is the oldest retained).
    pub fn get(&self, index: usize) -> Option<Record<'_>> {
        Some(self.record(&self.cursor(index)?))
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
            front: None,
        }
    }

    /// The sequence numbers of the records, ascending.
    pub fn seqs(&self) -> impl DoubleEndedIterator<Item = u64> + ExactSizeIterator + '_ {
        self.iter().map(|record| record.seq)
    }

    /// Records retained.
    pub fn retained(&self) -> u64 {
        self.len() as u64
    }

    /// Records written but not retained: overwritten by the ring, torn or damaged.
    pub fn lost(&self) -> u64 {
        self.recorded.saturating_sub(self.retained())
    }

    /// The index of the first record whose sequence number is `seq` or later (`len()` if none).
    pub fn first_from(&self, seq: u64) -> usize {
        // The anchors' numbers ascend like the records': the answer lies after the last anchor
        // below `seq`, within 64 records of it.
        let after = self.anchors.partition_point(|anchor| anchor.seq < seq);
        let Some(start) = after.checked_sub(1) else {
            return 0;
        };
        let mut cursor = self.anchor(start * ANCHOR_EVERY);
        while cursor.fields.seq < seq {
            if !self.advance(&mut cursor) {
                return self.len();
            }
        }
        cursor.index
    }

    /// The record with sequence number `seq`, if retained.
    pub fn find(&self, seq: u64) -> Option<Record<'_>> {
        self.get(self.first_from(seq))
            .filter(|record| record.seq == seq)
    }

    /// Time and payload of the records at `indices`, in order: what a replay reads.
    pub(crate) fn timed_payloads(&self, indices: Range<usize>) -> TimedPayloads<'_> {
        let Some(first) = self.cursor(indices.start).filter(|_| !indices.is_empty()) else {
            return TimedPayloads {
                lane: self,
                steps: [].iter(),
                bytes: &[],
                ticks: 0,
            };
        };
        let step = Step(self.steps[indices.start]);
        // Set as if just before the first record, whose step then leads to its own fields.
        let before = match step.is_break() {
            true => 0,
            false => first.fields.ticks.wrapping_sub(step.delta()),
        };
        TimedPayloads {
            lane: self,
            steps: self.steps[indices].iter(),
            bytes: &self.segments[first.fields.segment][first.fields.offset..],
            ticks: before,
        }
    }

    /// The position at the anchor at `index`, a multiple of [`ANCHOR_EVERY`] below `len()`.
    fn anchor(&self, index: usize) -> Cursor {
        Cursor {
            index,
            fields: self.anchors[index / ANCHOR_EVERY],
            len: Step(self.steps[index]).len(),
        }
    }

    /// The position at `index`, reached from the anchor before it.
    fn cursor(&self, index: usize) -> Option<Cursor> {
        if index >= self.len() {
            return None;
        }
        let mut cursor = self.anchor(index - index % ANCHOR_EVERY);
        while cursor.index < index {
            self.advance(&mut cursor);
        }
        Some(cursor)
    }

    /// Moves `cursor` to the next record; false (and left as it was) at the last one.
    #[inline]
    fn advance(&self, cursor: &mut Cursor) -> bool {
        let Some(&bits) = self.steps.get(cursor.index + 1) else {
            return false;
        };
        let step = Step(bits);
        cursor.fields = match step.is_break() {
            true => self.breaks[step.entry()],
            false => cursor.fields.next(cursor.len, step.delta()),
        };
        cursor.len = step.len();
        cursor.index += 1;
        true
    }

    fn record(&self, cursor: &Cursor) -> Record<'_> {
        let Fields {
            seq,
            pos,
            ticks,
            segment,
            offset,
        } = cursor.fields;
        Record {
            seq,
            pos,
            ticks,
            payload: &self.segments[segment][offset..offset + cursor.len],
        }
    }

    /// The time of the break `step` leads to, and the payloads from its own on in its segment.
    #[cold]
    #[inline(never)]
    fn time_and_payloads_of(&self, step: Step) -> (u64, &[u8]) {
        let fields = self.breaks[step.entry()];
        (
            fields.ticks,
            &self.segments[fields.segment][fields.offset..],
        )
    }

    /// Whether the sequence numbers ascend, each at most once.
    pub(super) fn ascending(&self) -> bool {
        self.ascending
    }

    /// A lane holding `records` in the order given.
    pub(super) fn collect<'a>(records: impl ExactSizeIterator<Item = Record<'a>>) -> LaneRecords {
        let mut steps = vec![0; records.len()];
        let mut run = Run::new(&mut steps, Vec::new());
        for record in records {
            let offset = run.bytes.len();
            run.bytes.extend_from_slice(record.payload);
            run.push(record.seq, record.pos, record.ticks, offset);
        }
        let run = run.finish();
        LaneRecords::join(steps, [(0, run)])
    }

    /// Joins the runs read into regions of `steps`, each given with its region's start, in
    /// record order: each run's steps are moved up against the previous run's (nothing moves
    /// when every slot held a record), and its payloads become a segment of their own.
    pub(super) fn join(
        mut steps: Vec<u64>,
        runs: impl IntoIterator<Item = (usize, RunRecords)>,
    ) -> LaneRecords {
        let mut lane = LaneRecords::default();
        let mut len = 0;
        for (start, run) in runs {
            if start != len {
                steps.copy_within(start..start + run.records, len);
            }
            let segment = lane.segments.len();
            for found in run.breaks {
                let index = len + found.index;
                let entry = lane.breaks.len();
                steps[index] = Step::breaks(Step(steps[index]).len(), entry).0;
                lane.breaks.push(Fields {
                    segment,
                    ..found.fields
                });
            }
            lane.segments.push(run.bytes);
            len += run.records;
        }
        steps.truncate(len);
        lane.steps = steps;
        lane.index();
        lane
    }

    /// Walks every record once: keeps the anchors, finds the gaps in the sequence numbers, and
    /// notes whether they ascend.
    fn index(&mut self) {
        self.anchors = Vec::with_capacity(self.len().div_ceil(ANCHOR_EVERY));
        self.gaps.clear();
        self.ascending = true;
        let Some(&first) = self.steps.first() else {
            return;
        };
        debug_assert!(Step(first).is_break(), "a lane's first record is a break");
        let mut fields = self.breaks[Step(first).entry()];
        let mut len = Step(first).len();
        self.anchors.push(fields);
        for (index, &bits) in self.steps.iter().enumerate().skip(1) {
            let step = Step(bits);
            if step.is_break() {
                let next = self.breaks[step.entry()];
                if next.seq <= fields.seq {
                    self.ascending = false;
                } else if next.seq > fields.seq + 1 {
                    self.gaps.push(fields.seq + 1..next.seq);
                }
                fields = next;
            } else {
                fields = fields.next(len, step.delta());
            }
            len = step.len();
            if index % ANCHOR_EVERY == 0 {
                self.anchors.push(fields);
            }
        }
    }
}

/// Appends records into a region of a lane's steps, with the breaks and payloads they need: one
/// per reader thread, joined by [`LaneRecords::join`].
pub(super) struct Run<'a> {
    steps: &'a mut [u64],
    records: usize,
    breaks: Vec<Break>,
    /// The run's payloads, back to back: a reader appends each record's here, then adds it.
    pub bytes: Vec<u8>,
    /// The last record added, and its length.
    last: Option<(Fields, usize)>,
}

/// What a [`Run`] found, ready to be joined.
pub(super) struct RunRecords {
    pub records: usize,
    breaks: Vec<Break>,
    bytes: Vec<u8>,
}

impl<'a> Run<'a> {
    /// A run writing into `steps` (room for every record it will add), appending payloads to
    /// `bytes` (empty, perhaps with room reserved).
    pub fn new(steps: &'a mut [u64], bytes: Vec<u8>) -> Run<'a> {
        Run {
            steps,
            records: 0,
            breaks: Vec::new(),
            bytes,
            last: None,
        }
    }

    /// Adds a record whose payload has just been appended to `bytes`, from `offset`.
    #[inline]
    pub fn push(&mut self, seq: u64, pos: u64, ticks: u64, offset: usize) {
        let len = self.bytes.len() - offset;
        let fields = Fields {
            seq,
            pos,
            ticks,
            segment: 0,
            offset,
        };
        let delta = self
            .last
            .and_then(|(last, last_len)| last.delta_to(last_len, &fields));
        let step = match delta {
            Some(delta) => Step::follows(len, delta),
            None => {
                self.breaks.push(Break {
                    index: self.records,
                    fields,
                });
                Step::breaks(len, self.breaks.len() - 1)
            }
        };
        self.steps[self.records] = step.0;
        self.records += 1;
        self.last = Some((fields, len));
    }

    pub fn finish(self) -> RunRecords {
        RunRecords {
            records: self.records,
            breaks: self.breaks,
            bytes: self.bytes,
        }
    }
}

/// How far ahead of the payload being replayed to ask for the bytes to be cached.
const PREFETCH_AHEAD: usize = 1024;

/// Time and payload of a run of records, in order: see [`LaneRecords::timed_payloads`].
pub(crate) struct TimedPayloads<'a> {
    lane: &'a LaneRecords,
    steps: std::slice::Iter<'a, u64>,
    /// The payloads of the next record and those after it in its segment.
    bytes: &'a [u8],
    /// Time of the previous record.
    ticks: u64,
}

impl<'a> Iterator for TimedPayloads<'a> {
    type Item = (u64, &'a [u8]);

    #[inline]
    fn next(&mut self) -> Option<(u64, &'a [u8])> {
        let step = Step(*self.steps.next()?);
        if step.is_break() {
            // Returned rather than set by the callee, so that the iterator can stay in registers.
            (self.ticks, self.bytes) = self.lane.time_and_payloads_of(step);
        } else {
            self.ticks = self.ticks.wrapping_add(step.delta());
        }
        let (payload, rest) = self.bytes.split_at(step.len());
        self.bytes = rest;
        prefetch(rest.as_ptr().wrapping_add(PREFETCH_AHEAD));
        Some((self.ticks, payload))
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
    /// The position at `indices.start`, once known.
    front: Option<Cursor>,
}

impl<'a> Iterator for Records<'a> {
    type Item = Record<'a>;

    fn next(&mut self) -> Option<Record<'a>> {
        if self.indices.is_empty() {
            return None;
        }
        let mut cursor = match self.front {
            Some(cursor) => cursor,
            None => self.lane.cursor(self.indices.start)?,
        };
        let record = self.lane.record(&cursor);
        self.indices.start += 1;
        let more = !self.indices.is_empty() && self.lane.advance(&mut cursor);
        self.front = more.then_some(cursor);
        Some(record)
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

#[cfg(test)]
mod tests {
    use super::{LaneRecords, Record, Step, ANCHOR_EVERY, LEN_BITS, MAX_DELTA};

    /// Records of `(seq, pos, ticks, payload)`.
    fn lane(records: &[(u64, u64, u64, Vec<u8>)]) -> LaneRecords {
        LaneRecords::collect(records.iter().map(|(seq, pos, ticks, payload)| Record {
            seq: *seq,
            pos: *pos,
            ticks: *ticks,
            payload,
        }))
    }

    #[test]
    fn every_record_reads_back_as_added_however_it_is_reached() {
        // Runs that follow, broken by a gap, a jump in position, a clock going back, a long
        // pause, and records of several slots; more than a few anchors' worth.
        let mut records = Vec::new();
        let (mut seq, mut pos, mut ticks) = (10u64, 3u64, 1_000u64);
        for i in 0..500u64 {
            let payload: Vec<u8> = (0..(i * 7 % 90) as u8).collect();
            records.push((seq, pos, ticks, payload.clone()));
            seq += if i % 97 == 5 { 4 } else { 1 };
            pos += flightrec_schemas::layout::slots_for(payload.len() as u32)
                + u64::from(i % 131 == 7);
            ticks = match i % 50 {
                13 => ticks - 500,
                29 => ticks + MAX_DELTA + 1,
                _ => ticks + i % 5,
            };
        }
        let built = lane(&records);
        let as_tuple = |r: Record<'_>| (r.seq, r.pos, r.ticks, r.payload.to_vec());
        let read: Vec<_> = built.iter().map(as_tuple).collect();
        assert_eq!(read, records);
        let backwards: Vec<_> = built.iter().rev().map(as_tuple).collect();
        assert!(backwards.iter().eq(records.iter().rev()));
        for (index, expected) in records.iter().enumerate() {
            assert_eq!(built.get(index).map(as_tuple).as_ref(), Some(expected));
            assert_eq!(
                built.find(expected.0).map(as_tuple).as_ref(),
                Some(expected)
            );
            let timed: Vec<_> = built.timed_payloads(index..records.len()).collect();
            let want: Vec<_> = records[index..]
                .iter()
                .map(|(_, _, t, p)| (*t, p.as_slice()))
                .collect();
            assert_eq!(timed, want, "replayed from {index}");
        }
        assert!(built.len() > 4 * ANCHOR_EVERY);
        assert_eq!(built.gaps.len(), 500 / 97 + 1);
        assert!(built.ascending());
    }

    proptest::proptest! {
        /// Whatever the fields (numbers that skip or go back, positions that jump, clocks that
        /// go back or pause for long), every way of reading gives back what was added.
        #[test]
        fn any_records_read_back_as_added(
            changes in proptest::collection::vec((0u64..4, 0u64..3, 0u8..6, 0usize..200), 0..300)
        ) {
            let (mut seq, mut pos, mut ticks) = (0u64, 0u64, 1u64 << 50);
            let mut records = Vec::new();
            for (i, (skip, jump, clock, len)) in changes.into_iter().enumerate() {
                let payload = vec![i as u8; len];
                records.push((seq, pos, ticks, payload));
                seq = seq.wrapping_add(1 + skip).wrapping_sub(u64::from(skip == 3) * 5);
                pos += flightrec_schemas::layout::slots_for(len as u32) + jump;
                ticks = match clock {
                    0 => ticks.wrapping_sub(3),
                    1 => ticks.wrapping_add(MAX_DELTA + 1),
                    c => ticks.wrapping_add(c as u64 * 1_000),
                };
            }
            let built = lane(&records);
            let as_tuple = |r: Record<'_>| (r.seq, r.pos, r.ticks, r.payload.to_vec());
            let read: Vec<_> = built.iter().map(as_tuple).collect();
            proptest::prop_assert_eq!(&read, &records);
            for from in [0, records.len() / 3, records.len().saturating_sub(1)] {
                let timed: Vec<_> = built.timed_payloads(from..records.len()).collect();
                let want: Vec<_> =
                    records[from..].iter().map(|(_, _, t, p)| (*t, p.as_slice())).collect();
                proptest::prop_assert_eq!(timed, want);
                proptest::prop_assert_eq!(built.get(from).map(as_tuple), records.get(from).cloned());
            }
            let ascending = records.windows(2).all(|w| w[0].0 < w[1].0);
            proptest::prop_assert_eq!(built.ascending(), ascending);
            if ascending {
                for (index, (seq, ..)) in records.iter().enumerate() {
                    proptest::prop_assert_eq!(built.first_from(*seq), index);
                }
            }
        }
    }

    #[test]
    fn the_first_record_at_or_after_a_number_is_found() {
        let records: Vec<_> = (0..300u64)
            .map(|i| (i * 2 + 1, i, i, vec![i as u8]))
            .collect();
        let built = lane(&records);
        assert_eq!(built.first_from(0), 0);
        assert_eq!(built.first_from(1), 0);
        assert_eq!(built.first_from(2), 1);
        assert_eq!(built.first_from(130), 65);
        assert_eq!(built.first_from(599), 299);
        assert_eq!(built.first_from(600), 300);
        assert!(built.find(130).is_none());
        assert_eq!(built.find(131).map(|r| r.pos), Some(65));
        assert_eq!(LaneRecords::default().first_from(5), 0);
    }

    #[test]
    fn a_number_that_goes_back_is_noticed() {
        let built = lane(&[(5, 0, 0, vec![]), (6, 1, 0, vec![]), (2, 2, 0, vec![])]);
        assert!(!built.ascending());
        let repeated = lane(&[(5, 0, 0, vec![]), (5, 1, 0, vec![])]);
        assert!(!repeated.ascending());
    }

    #[test]
    fn steps_hold_the_longest_record() {
        let len = flightrec_schemas::layout::MAX_RECORD_LEN as usize;
        assert!(len < 1 << LEN_BITS);
        assert_eq!(Step::follows(len, MAX_DELTA).len(), len);
        assert_eq!(Step::follows(len, MAX_DELTA).delta(), MAX_DELTA);
        let broken = Step::breaks(len, usize::MAX >> (LEN_BITS + 1));
        assert!(broken.is_break() && broken.len() == len);
    }
}
