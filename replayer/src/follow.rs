//! Following a live ring file: each poll reads only the slots written since the last one.
//!
//! A [`Follower`] keeps a cursor per lane: the position where the next record starts and the
//! sequence number it should carry. A poll reads forward from each cursor through the shared slot
//! protocol, with the same validation as recovery, and reports what it finds rather than hiding
//! it: records the writer overwrote before the follower could read them (it lapped the reader),
//! numbers the writer skipped, damaged slots, a record left half-written by a writer that is gone,
//! and the writer's fate once it is no longer running. A record still being written is not an
//! error: the follower stops at it and reads it on a later poll.
//!
//! The file is only ever read, and each poll visits at most a bounded number of slots per lane,
//! whatever the file holds.

use std::collections::HashMap;
use std::ops::Range;

use flightrec_schemas::header::{CrashRecord, FormatError, LaneInfo, LaneKind};
use flightrec_schemas::slot::{Corruption, SlotState, Slots, Stamp, SLOT_WORDS};
use flightrec_schemas::sync::{fence, AtomicU64, Ordering};
use flightrec_schemas::trace::{TraceEvent, TraceKind};

use crate::ring::{Fate, Ring};

/// Where a follower starts reading.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Start {
    /// After the newest committed record of each lane, as `tail -f` does.
    End,
    /// At the oldest record each lane still holds.
    Oldest,
}

/// One record read from a lane.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FollowedRecord {
    /// Index of its lane in the file's lane table (0 is the input lane).
    pub lane: usize,
    /// Sequence number in its lane (for inputs, the input's number).
    pub seq: u64,
    /// Slot position of its first slot.
    pub pos: u64,
    /// Clock ticks when it was recorded.
    pub ticks: u64,
    /// Unix time, ns, from the file's clock.
    pub unix_ns: u64,
    /// The payload, as committed.
    pub payload: Vec<u8>,
}

/// Why sequence numbers are missing between two records a follower read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GapCause {
    /// The writer overwrote them before the follower read them: it lapped the reader.
    Lapped,
    /// They sat in slots whose bytes are damaged.
    Damaged,
    /// The writer never wrote them: it numbers dropped inputs too (too large or unencodable).
    Skipped,
}

/// What one poll found, in order.
#[derive(Debug, PartialEq, Eq)]
pub enum Followed {
    /// An input.
    Input(FollowedRecord),
    /// A trace event or span edge, named after the thread that wrote it.
    Trace {
        /// The record.
        record: FollowedRecord,
        /// The writing thread's name (from its claim of the lane, else the lane's owner name).
        thread: String,
        /// The decoded payload, or why it does not decode.
        event: Result<TraceEvent, String>,
    },
    /// Sequence numbers of a lane that no record was read for.
    Gap {
        /// Lane index.
        lane: usize,
        /// The missing numbers.
        seqs: Range<u64>,
        /// Why they are missing.
        cause: GapCause,
    },
    /// A slot whose bytes no writer following the protocol leaves.
    Corrupt {
        /// Lane index.
        lane: usize,
        /// Its position.
        pos: u64,
        /// What is wrong.
        why: Corruption,
    },
    /// A record the writer began and never finished: it is gone.
    Torn {
        /// Lane index.
        lane: usize,
        /// Its position.
        pos: u64,
    },
    /// The writer stopped running; the last item of a follower.
    Ended {
        /// How it ended (never [`Fate::Running`]).
        fate: Fate,
        /// The crash record, if the writer left one (an error if it is unreadable).
        crash: Result<Option<CrashRecord>, FormatError>,
    },
}

impl Followed {
    /// The lane an item belongs to, if any.
    pub fn lane(&self) -> Option<usize> {
        match self {
            Followed::Input(record) | Followed::Trace { record, .. } => Some(record.lane),
            Followed::Gap { lane, .. } | Followed::Corrupt { lane, .. } => Some(*lane),
            Followed::Torn { lane, .. } => Some(*lane),
            Followed::Ended { .. } => None,
        }
    }
}

/// Totals over every poll so far.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FollowStats {
    /// Records read and returned.
    pub records: u64,
    /// Records overwritten before they could be read.
    pub missed: u64,
    /// Records lost to damaged slots.
    pub damaged: u64,
    /// Numbers the writer skipped.
    pub skipped: u64,
    /// Damaged slots found.
    pub corrupt: u64,
    /// Slots examined: the work done, bounded per poll.
    pub slots_visited: u64,
}

/// Follows a ring file as its writer appends to it. Never writes to the file.
pub struct Follower {
    ring: Ring,
    lanes: Vec<Cursor>,
    ended: bool,
    stats: FollowStats,
}

/// Where a lane's reading stands.
struct Cursor {
    info: LaneInfo,
    /// Position where the next record is expected to start.
    pos: u64,
    /// Sequence number the next record should carry, once known.
    next_seq: Option<u64>,
    /// Looking for the next record's first slot: the cursor jumped or passed damaged slots.
    resync: bool,
    /// What the cursor jumped over since the last record, for the gap that record reveals.
    lapped: bool,
    damaged: bool,
    /// Thread names by tid, from the lane's claim records.
    owners: HashMap<u32, String>,
    buf: Vec<u8>,
}

/// How a lane's drain stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Stop {
    /// Nothing more is committed at the cursor.
    CaughtUp,
    /// The slot at the cursor holds a record being written (or left half-written).
    Torn,
    /// The poll's work for this lane is used up; more may be waiting.
    Budget,
}

impl Follower {
    /// Starts following `ring`, at `start`.
    pub fn new(ring: Ring, start: Start) -> Follower {
        let lanes = ring
            .header()
            .lanes
            .iter()
            .map(|info| Cursor::new(&ring, *info, start))
            .collect();
        Follower {
            ring,
            lanes,
            ended: false,
            stats: FollowStats::default(),
        }
    }

    /// The ring being followed.
    pub fn ring(&self) -> &Ring {
        &self.ring
    }

    /// Totals so far.
    pub fn stats(&self) -> FollowStats {
        self.stats
    }

    /// Whether the writer's end has been reported; later polls return nothing.
    pub fn ended(&self) -> bool {
        self.ended
    }

    /// Reads what was committed since the last poll: every lane's new records, merged by time
    /// (each lane's own order kept), with what was lost among them; then, once the writer no
    /// longer runs and everything it wrote has been read, [`Followed::Ended`].
    pub fn poll(&mut self) -> Vec<Followed> {
        if self.ended {
            return Vec::new();
        }
        // The fate is read before the lanes: whatever the writer committed before it stopped
        // is then read by this poll, so the end is reported after the writer's last records.
        let fate = settled_fate(&self.ring);
        fence(Ordering::Acquire);
        let mut per_lane = Vec::with_capacity(self.lanes.len());
        let mut stops = Vec::with_capacity(self.lanes.len());
        for index in 0..self.lanes.len() {
            let mut items = Vec::new();
            stops.push(self.drain(index, &mut items));
            per_lane.push(items);
        }
        let mut out = merge_by_time(per_lane);
        if fate != Fate::Running && !stops.contains(&Stop::Budget) {
            for (index, stop) in stops.iter().enumerate() {
                if *stop == Stop::Torn {
                    let pos = self.lanes[index].pos;
                    out.push(Followed::Torn { lane: index, pos });
                }
            }
            out.push(Followed::Ended {
                fate,
                crash: self.ring.crash(),
            });
            self.ended = true;
        }
        out
    }

    /// Reads lane `index` forward from its cursor, at most two lanes' worth of slots.
    fn drain(&mut self, index: usize, out: &mut Vec<Followed>) -> Stop {
        let Follower {
            ring, lanes, stats, ..
        } = self;
        let cursor = &mut lanes[index];
        let Some(words) = ring.map().words(
            cursor.info.slots_offset(),
            cursor.info.slot_count * SLOT_WORDS as u64,
        ) else {
            return Stop::CaughtUp;
        };
        let Some(slots) = Slots::new(words) else {
            return Stop::CaughtUp;
        };
        let budget = 2 * cursor.info.slot_count;
        for _ in 0..budget {
            stats.slots_visited += 1;
            match cursor.step(&slots, words) {
                Step::Read(header) => {
                    let item = cursor.record(ring, index, header);
                    push_with_gap(cursor, index, header.seq, item, out, stats);
                }
                Step::Corrupt(pos, why) => {
                    stats.corrupt += 1;
                    out.push(Followed::Corrupt {
                        lane: index,
                        pos,
                        why,
                    });
                }
                Step::Moved | Step::Silent => {}
                Step::Stop(stop) => return stop,
            }
        }
        Stop::Budget
    }
}

/// What one step of a drain did.
enum Step {
    /// Read the record at the cursor (its payload is in the cursor's buffer).
    Read(flightrec_schemas::slot::RecordHeader),
    /// Found a damaged slot at this position and moved past it.
    Corrupt(u64, Corruption),
    /// Moved the cursor without reading a record.
    Moved,
    /// Nothing changed: look again.
    Silent,
    /// Stop reading this lane for now.
    Stop(Stop),
}

impl Cursor {
    fn new(ring: &Ring, info: LaneInfo, start: Start) -> Cursor {
        let mut cursor = Cursor {
            info,
            pos: 0,
            next_seq: Some(0),
            resync: false,
            lapped: false,
            damaged: false,
            owners: HashMap::new(),
            buf: Vec::new(),
        };
        cursor.place(ring, start);
        cursor
    }

    /// Puts the cursor at the start: one pass over the lane's stamps, the only time a follower
    /// looks at every slot.
    fn place(&mut self, ring: &Ring, start: Start) {
        let Some(words) = ring.map().words(
            self.info.slots_offset(),
            self.info.slot_count * SLOT_WORDS as u64,
        ) else {
            return;
        };
        let Some(slots) = Slots::new(words) else {
            return;
        };
        let mask = self.info.slot_count - 1;
        let heads = (0..self.info.slot_count).filter_map(|index| {
            let word = words[index as usize * SLOT_WORDS].load(Ordering::Relaxed);
            match Stamp::of(word) {
                Stamp::Head(pos) if pos & mask == index => Some(pos),
                _ => None,
            }
        });
        let found = match start {
            Start::End => heads.max(),
            Start::Oldest => heads.min(),
        };
        let Some(pos) = found else {
            return; // an empty lane: its first record starts at position 0 with number 0
        };
        self.pos = pos;
        self.next_seq = None;
        if start == Start::End {
            if let SlotState::Record(header) = slots.read(pos & mask, &mut self.buf) {
                self.pos = pos + header.slots();
                self.next_seq = Some(header.seq.saturating_add(1));
            }
        }
    }

    /// Examines the slot at the cursor and moves past what it can.
    fn step(&mut self, slots: &Slots<'_>, words: &[AtomicU64]) -> Step {
        let count = self.info.slot_count;
        let mask = count - 1;
        let index = self.pos & mask;
        let stamp = Stamp::of(words[index as usize * SLOT_WORDS].load(Ordering::Acquire));
        match stamp {
            Stamp::Bad => self.damaged_at(self.pos, Corruption::Misplaced { claimed_pos: 0 }),
            Stamp::Head(at) | Stamp::Continuation(at) if at & mask != index => {
                self.damaged_at(self.pos, Corruption::Misplaced { claimed_pos: at })
            }
            Stamp::Zero => {
                let dirty = matches!(slots.read(index, &mut self.buf), SlotState::Torn);
                Step::Stop(if dirty { Stop::Torn } else { Stop::CaughtUp })
            }
            // Still the previous lap's bytes: the writer has not got here yet.
            Stamp::Head(at) | Stamp::Continuation(at) if at < self.pos => {
                Step::Stop(Stop::CaughtUp)
            }
            // The writer has been here since: resume at the oldest position it cannot have
            // overwritten yet, one lap behind what it wrote here.
            Stamp::Head(at) | Stamp::Continuation(at) if at > self.pos => {
                self.pos = at.saturating_add(1).saturating_sub(count).max(self.pos + 1);
                self.resync = true;
                self.lapped = true;
                Step::Moved
            }
            // The rest of a record whose first slot was lost: expected after a jump, and damage
            // where a record should start.
            Stamp::Continuation(at) if self.resync => {
                self.pos = at + 1;
                Step::Moved
            }
            Stamp::Continuation(at) => {
                self.damaged_at(at, Corruption::BrokenContinuation { at_pos: at })
            }
            Stamp::Head(at) => match slots.read(index, &mut self.buf) {
                SlotState::Record(header) if header.pos == at => {
                    self.pos = at + header.slots();
                    self.resync = false;
                    Step::Read(header)
                }
                // Overwritten while read: the next step sees the newer stamp.
                SlotState::Overwritten | SlotState::Continuation | SlotState::Record(_) => {
                    Step::Silent
                }
                SlotState::Empty => Step::Stop(Stop::CaughtUp),
                SlotState::Torn => Step::Stop(Stop::Torn),
                SlotState::Corrupt(why) => self.damaged_at(at, why),
            },
        }
    }

    /// Moves past a damaged slot at `pos`, looking for the next record's first slot.
    fn damaged_at(&mut self, pos: u64, why: Corruption) -> Step {
        self.pos = pos + 1;
        self.resync = true;
        self.damaged = true;
        Step::Corrupt(pos, why)
    }

    /// The record just read into the buffer, decoded as far as the follower can.
    fn record(
        &mut self,
        ring: &Ring,
        lane: usize,
        header: flightrec_schemas::slot::RecordHeader,
    ) -> Option<Followed> {
        let record = FollowedRecord {
            lane,
            seq: header.seq,
            pos: header.pos,
            ticks: header.ticks,
            unix_ns: ring.header().clock.to_unix_ns(header.ticks),
            payload: std::mem::take(&mut self.buf),
        };
        if self.info.kind == LaneKind::Input {
            return Some(Followed::Input(record));
        }
        let event = TraceEvent::decode(&record.payload);
        if let Ok(claim) = &event {
            if claim.kind == TraceKind::Thread {
                // Names the thread's later events; not an event itself.
                self.owners.insert(claim.tid, claim.message.clone());
                return None;
            }
        }
        let thread = event
            .as_ref()
            .ok()
            .and_then(|e| self.owners.get(&e.tid).cloned())
            .unwrap_or_else(|| ring.lane_name(&self.info));
        Some(Followed::Trace {
            record,
            thread,
            event,
        })
    }
}

/// Pushes a record read at the cursor, after the gap its number reveals, if any.
fn push_with_gap(
    cursor: &mut Cursor,
    lane: usize,
    seq: u64,
    item: Option<Followed>,
    out: &mut Vec<Followed>,
    stats: &mut FollowStats,
) {
    if let Some(expected) = cursor.next_seq.filter(|&expected| seq > expected) {
        let cause = if cursor.lapped {
            GapCause::Lapped
        } else if cursor.damaged {
            GapCause::Damaged
        } else {
            GapCause::Skipped
        };
        let missing = seq - expected;
        match cause {
            GapCause::Lapped => stats.missed += missing,
            GapCause::Damaged => stats.damaged += missing,
            GapCause::Skipped => stats.skipped += missing,
        }
        out.push(Followed::Gap {
            lane,
            seqs: expected..seq,
            cause,
        });
    }
    cursor.next_seq = Some(seq.saturating_add(1));
    cursor.lapped = false;
    cursor.damaged = false;
    if let Some(item) = item {
        stats.records += 1;
        out.push(item);
    }
}

/// The writer's fate, read so that a writer that recorded its end and then exited is not taken
/// for one that died without a word: the pid is only checked while the status says running,
/// and the status is read again once the pid is gone.
fn settled_fate(ring: &Ring) -> Fate {
    match ring.fate() {
        Fate::Died => ring.fate(),
        fate => fate,
    }
}

/// Merges the lanes' items by time, keeping each lane's own order: a notice (gap, damage) goes
/// with the record after it in its lane. Items are moved once, into the result.
fn merge_by_time(per_lane: Vec<Vec<Followed>>) -> Vec<Followed> {
    let mut busy: Vec<Vec<Followed>> = per_lane.into_iter().filter(|l| !l.is_empty()).collect();
    if busy.len() <= 1 {
        return busy.pop().unwrap_or_default();
    }
    let keys: Vec<Vec<u64>> = busy.iter().map(|items| sort_times(items)).collect();
    let mut at = vec![0; busy.len()];
    let mut out = Vec::with_capacity(busy.iter().map(Vec::len).sum());
    let mut lanes: Vec<std::vec::IntoIter<Followed>> =
        busy.into_iter().map(Vec::into_iter).collect();
    loop {
        let earliest = (0..lanes.len())
            .filter_map(|lane| keys[lane].get(at[lane]).map(|&key| (key, lane)))
            .min();
        let Some((_, lane)) = earliest else {
            return out;
        };
        at[lane] += 1;
        out.extend(lanes[lane].next());
    }
}

/// The time each item sorts by: its own, or for a notice the next record's in its lane.
fn sort_times(items: &[Followed]) -> Vec<u64> {
    let mut next = u64::MAX;
    let mut keys: Vec<u64> = items
        .iter()
        .rev()
        .map(|item| {
            if let Followed::Input(r) | Followed::Trace { record: r, .. } = item {
                next = r.ticks;
            }
            next
        })
        .collect();
    keys.reverse();
    keys
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input(lane: usize, seq: u64, ticks: u64) -> Followed {
        Followed::Input(FollowedRecord {
            lane,
            seq,
            pos: seq,
            ticks,
            unix_ns: ticks,
            payload: Vec::new(),
        })
    }

    fn gap(lane: usize, seqs: Range<u64>) -> Followed {
        Followed::Gap {
            lane,
            seqs,
            cause: GapCause::Lapped,
        }
    }

    #[test]
    fn lanes_merge_by_time_with_notices_before_the_record_they_precede() {
        let lanes = vec![
            vec![
                input(0, 0, 10),
                gap(0, 1..5),
                input(0, 5, 40),
                input(0, 6, 50),
            ],
            vec![],
            vec![input(2, 0, 5), input(2, 1, 30), gap(2, 2..3)],
        ];
        let merged: Vec<(Option<usize>, Option<u64>)> = merge_by_time(lanes)
            .iter()
            .map(|item| match item {
                Followed::Input(r) => (Some(r.lane), Some(r.ticks)),
                other => (other.lane(), None),
            })
            .collect();
        assert_eq!(
            merged,
            [
                (Some(2), Some(5)),
                (Some(0), Some(10)),
                (Some(2), Some(30)),
                (Some(0), None),
                (Some(0), Some(40)),
                (Some(0), Some(50)),
                (Some(2), None),
            ]
        );
    }

    #[test]
    fn a_lane_out_of_time_order_keeps_its_own_order() {
        let lanes = vec![
            vec![input(0, 0, 20), input(0, 1, 10)],
            vec![input(1, 0, 15)],
        ];
        let seqs: Vec<(usize, u64)> = merge_by_time(lanes)
            .iter()
            .map(|item| match item {
                Followed::Input(r) => (r.lane, r.seq),
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(seqs, [(1, 0), (0, 0), (0, 1)]);
    }
}
