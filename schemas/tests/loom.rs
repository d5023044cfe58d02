//! Model checks of the lane record protocol (`flightrec_schemas::slot`) with loom: a writer and a
//! concurrent reader on a lane of a few slots, in every interleaving (within the preemption
//! bound) and with every value a relaxed load may return under the C++ memory model.
//!
//! Run with `scripts/loom.sh`, which sets `--cfg loom` so that `flightrec_schemas::sync` hands
//! the protocol loom's atomics.
//!
//! What must hold for every read, at every moment:
//! - `Record(h)` only for a record the writer really wrote, at `h.pos` with sequence `h.seq`, and
//!   the copied payload (and time and length) is exactly that record's, never a mix of two;
//! - never `Corrupt`: a writer following the protocol, alive or dead, never leaves bytes that look
//!   damaged. A write racing the read comes out as `Overwritten`, `Torn`, `Empty` or
//!   `Continuation`, or as the old or the new record intact.
//!
//! Each model has one reader reading one slot: a second read in the same model multiplies the
//! interleavings without adding a case, since loom already starts the reader at every point of
//! the writer's progress; so a scenario runs one model per slot of interest.
#![cfg(loom)]

use std::sync::atomic::{AtomicUsize, Ordering as StdOrdering};
use std::sync::Mutex;
use std::time::Instant;

use flightrec_schemas::layout::slots_for;
use flightrec_schemas::slot::{SlotState, Slots, SLOT_WORDS};
use loom::sync::atomic::{fence, AtomicU64, Ordering};
use loom::sync::Arc;
use loom::thread;

/// One record as the writer wrote it.
#[derive(Clone, Debug)]
struct Rec {
    pos: u64,
    seq: u64,
    ticks: u64,
    payload: Vec<u8>,
}

impl Rec {
    /// A record at `pos` with a payload of `len` bytes unique to `seq`.
    fn new(pos: u64, seq: u64, len: usize) -> Rec {
        let payload = (0..len)
            .map(|i| (seq as usize * 37 + i * 7 + 1) as u8)
            .collect();
        Rec {
            pos,
            seq,
            ticks: 1000 + seq,
            payload,
        }
    }

    /// Writes it through the public API; returns the slots used.
    fn write(&self, slots: &Slots<'_>) -> u64 {
        assert!(self.payload.len() <= slots.max_record_len() as usize);
        slots.write(self.pos, self.seq, self.ticks, &self.payload)
    }

    fn slots(&self) -> u64 {
        slots_for(self.payload.len() as u32)
    }

    fn covers(&self, slot_count: u64, index: u64) -> bool {
        (self.pos..self.pos + self.slots()).any(|p| p % slot_count == index)
    }
}

/// Records written back to back from position 0; `lens[i]` is the length of seq `i`.
fn history(lens: &[usize]) -> Vec<Rec> {
    let mut pos = 0;
    lens.iter()
        .enumerate()
        .map(|(seq, &len)| {
            let rec = Rec::new(pos, seq as u64, len);
            pos += rec.slots();
            rec
        })
        .collect()
}

fn lane(slot_count: usize) -> Arc<Vec<AtomicU64>> {
    Arc::new(
        (0..slot_count * SLOT_WORDS)
            .map(|_| AtomicU64::new(0))
            .collect(),
    )
}

/// What a reader may legitimately see at one slot.
struct Expect<'h> {
    /// Every record written to the lane, before or during the read.
    history: &'h [Rec],
    slot_count: u64,
    /// `Empty` is acceptable: the slot may not have been written yet, or is being overwritten
    /// and the reader saw its zeroed stamp and only zero words so far (old or new).
    may_be_empty: bool,
    /// `Torn` and `Overwritten` are acceptable: a write may be in progress, or have died.
    may_be_in_flux: bool,
}

impl Expect<'_> {
    fn check(&self, index: u64, state: SlotState, payload: &[u8]) {
        match state {
            SlotState::Record(h) => {
                let rec = self
                    .history
                    .iter()
                    .find(|r| r.seq == h.seq)
                    .unwrap_or_else(|| panic!("slot {index}: record {h:?} was never written"));
                assert_eq!(
                    (h.pos, h.ticks, h.len as usize),
                    (rec.pos, rec.ticks, rec.payload.len()),
                    "slot {index}: header of seq {} is not what was written",
                    h.seq
                );
                assert_eq!(h.pos % self.slot_count, index, "slot {index}: {h:?}");
                assert_eq!(
                    payload,
                    &rec.payload[..],
                    "slot {index}: payload of seq {} is not what was written",
                    h.seq
                );
            }
            SlotState::Continuation => {
                let continues = self
                    .history
                    .iter()
                    .any(|r| (r.pos + 1..r.pos + r.slots()).any(|p| p % self.slot_count == index));
                assert!(
                    continues,
                    "slot {index}: Continuation, but no record continues here"
                );
            }
            SlotState::Empty => assert!(self.may_be_empty, "slot {index}: Empty"),
            SlotState::Torn | SlotState::Overwritten => {
                assert!(self.may_be_in_flux, "slot {index}: {state:?}")
            }
            SlotState::Corrupt(c) => panic!("slot {index}: Corrupt({c:?}): {c}"),
        }
    }
}

/// After the writer finished: every slot holds exactly the latest record written over it.
fn check_final(slots: &Slots<'_>, history: &[Rec]) {
    let mut buf = Vec::new();
    for index in 0..slots.slot_count() {
        let state = slots.read(index, &mut buf);
        // The last record to cover the slot decides what is there.
        let last = history
            .iter()
            .flat_map(|r| (r.pos..r.pos + r.slots()).map(move |p| (p, r)))
            .rfind(|&(p, _)| p % slots.slot_count() == index);
        match last {
            None => assert_eq!(state, SlotState::Empty, "slot {index}"),
            Some((p, r)) if p != r.pos => {
                assert_eq!(state, SlotState::Continuation, "slot {index}")
            }
            Some((_, r)) => match state {
                SlotState::Record(h) if h.seq == r.seq && h.pos == r.pos => {
                    assert_eq!(buf, r.payload, "slot {index}")
                }
                other => panic!("slot {index}: expected seq {} intact, got {other:?}", r.seq),
            },
        }
    }
}

/// `loom::model`, reporting how many interleavings it explored and how long that took.
fn model<F>(name: &str, f: F)
where
    F: Fn() + Sync + Send + 'static,
{
    let count = std::sync::Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    {
        let count = count.clone();
        loom::model(move || {
            count.fetch_add(1, StdOrdering::Relaxed);
            f()
        });
    }
    eprintln!(
        "loom: {name}: {} interleavings in {:.1?}",
        count.load(StdOrdering::Relaxed),
        start.elapsed()
    );
}

/// One model: `records[..prefill]` are written before the threads start; then a writer thread
/// writes the rest while a reader thread reads slot `read` once. Afterwards every slot must hold
/// exactly the latest record written over it.
fn writer_vs_reader(name: &str, slot_count: usize, lens: &[usize], prefill: usize, read: u64) {
    let records = std::sync::Arc::new(history(lens));
    let name = format!("{name}, reading slot {read}");
    model(&name, move || {
        let words = lane(slot_count);
        let slots = Slots::new(&words[..]).unwrap();
        for rec in &records[..prefill] {
            rec.write(&slots);
        }

        let writer = {
            let (words, records) = (words.clone(), records.clone());
            thread::spawn(move || {
                let slots = Slots::new(&words[..]).unwrap();
                let mut pos = records[prefill].pos;
                for rec in &records[prefill..] {
                    assert_eq!(rec.pos, pos, "the test writes back to back");
                    pos += rec.write(&slots);
                }
            })
        };

        let reader = {
            let (words, records) = (words.clone(), records.clone());
            thread::spawn(move || {
                let slots = Slots::new(&words[..]).unwrap();
                let n = slot_count as u64;
                let (before, during) = records.split_at(prefill);
                let expect = Expect {
                    history: &records,
                    slot_count: n,
                    may_be_empty: !before.iter().any(|r| r.covers(n, read))
                        || during.iter().any(|r| r.covers(n, read)),
                    may_be_in_flux: true,
                };
                let mut buf = Vec::new();
                let state = slots.read(read, &mut buf);
                expect.check(read, state, &buf);
            })
        };

        writer.join().unwrap();
        reader.join().unwrap();
        check_final(&slots, &records);
    });
}

/// Test 1a: a fresh 4-slot lane; the writer writes three single-slot records (5 bytes, a full
/// 32 bytes, and an empty payload) while the reader reads one of their slots.
#[test]
fn reader_racing_the_writer_gets_exact_single_slot_records() {
    for read in 0..3 {
        writer_vs_reader("single-slot records", 4, &[5, 32, 0], 0, read);
    }
}

/// Test 1b: a fresh lane; the writer writes a single-slot record, one spanning two slots, and
/// another single-slot record while the reader reads the spanning record's head, its
/// continuation, or the record after it. A 4-slot lane admits records of at most 32 bytes (a
/// quarter of the lane), so this takes 8 slots.
#[test]
fn reader_racing_the_writer_gets_exact_spanning_records() {
    assert_eq!(history(&[8, 40, 16])[1].slots(), 2);
    for read in 1..4 {
        writer_vs_reader("spanning record", 8, &[8, 40, 16], 0, read);
    }
}

/// Test 3a: wraparound. The 4-slot lane is full (seq 0..4); the writer overwrites slots 0 and 1
/// with seq 4 and 5 while the reader reads one of them: it must get the old record or the new one
/// intact, or a state that says to retry.
#[test]
fn wraparound_overwrites_are_never_accepted_mixed() {
    for read in 0..2 {
        writer_vs_reader(
            "wraparound, single-slot",
            4,
            &[8, 16, 24, 32, 24, 8],
            4,
            read,
        );
    }
}

/// Test 3b: wraparound over a spanning record. Seq 0 spans slots 0-1 and seq 1..7 fill slots
/// 2..8; the writer then writes seq 7 at position 8 (slot 0, seq 0's head) and seq 8 spanning
/// positions 9-10 (slot 1, seq 0's continuation, and slot 2, seq 1), while the reader reads one
/// of those slots.
#[test]
fn wraparound_over_a_spanning_record() {
    let lens = [40, 8, 8, 8, 8, 8, 8, 8, 40];
    let records = history(&lens);
    assert_eq!((records[7].pos, records[8].pos), (8, 9));
    for read in 0..3 {
        writer_vs_reader("wraparound, spanning", 8, &lens, 7, read);
    }
}

/// Test 3c: a record straddling the end of the lane (positions 7 and 8, slots 7 and 0) written
/// over a full lane, followed by one more record, while the reader reads one of the slots.
#[test]
fn wraparound_record_straddling_the_end_of_the_lane() {
    let lens = [8, 8, 8, 8, 8, 8, 8, 40, 16];
    let records = history(&lens);
    assert_eq!((records[7].pos, records[8].pos), (7, 9));
    for read in [7, 0, 1] {
        writer_vs_reader("wraparound, straddling", 8, &lens, 7, read);
    }
}

/// Test 2a: a writer that dies mid-record, racing a reader. The writer thread writes seq 0
/// through the API, then starts overwriting it with seq 4 (position 4, the same slot) the way the
/// protocol does (zero the stamp, release fence, header and payload words) and dies after two of
/// those stores. Racing it, the reader gets seq 0 intact or a retryable state; after the death,
/// the slot reads `Torn`.
#[test]
fn writer_dying_mid_overwrite_leaves_torn_not_a_record() {
    let old = std::sync::Arc::new(Rec::new(0, 0, 24));
    model("dying writer", move || {
        let words = lane(4);
        let writer = {
            let (words, old) = (words.clone(), old.clone());
            thread::spawn(move || {
                let slots = Slots::new(&words[..]).unwrap();
                old.write(&slots);
                words[0].store(0, Ordering::Relaxed);
                fence(Ordering::Release);
                words[1].store(4, Ordering::Relaxed); // seq
                words[4].store(0x5EED_5EED_5EED_5EED, Ordering::Relaxed); // payload word 0
            })
        };
        let reader = {
            let (words, old) = (words.clone(), old.clone());
            thread::spawn(move || {
                let slots = Slots::new(&words[..]).unwrap();
                let mut buf = Vec::new();
                let state = slots.read(0, &mut buf);
                let history = [(*old).clone()];
                Expect {
                    history: &history,
                    slot_count: 4,
                    may_be_empty: true,
                    may_be_in_flux: true,
                }
                .check(0, state, &buf);
            })
        };
        writer.join().unwrap();
        reader.join().unwrap();
        let mut buf = Vec::new();
        let slots = Slots::new(&words[..]).unwrap();
        assert_eq!(slots.read(0, &mut buf), SlotState::Torn);
        for index in 1..4 {
            assert_eq!(slots.read(index, &mut buf), SlotState::Empty);
        }
    });
}

fn snapshot(words: &[AtomicU64]) -> Vec<u64> {
    words.iter().map(|w| w.load(Ordering::Relaxed)).collect()
}

/// Test 2b: the post-crash view, exhaustively. A writer killed while writing record `new` over a
/// lane holding `old` leaves the stores it issued before dying and nothing else. For every point
/// it can die at, and more (every subset of the new record's header and payload words having
/// landed, which covers any order the stores could reach memory in):
/// - the new record's head slot reads `Torn` (`Empty` if all its words happen to be zero),
///   never a record;
/// - each of its continuation slots reads `Continuation` if its stamp is not yet zeroed (or the
///   old record intact, if that slot held one) or already republished, and like the head slot
///   while its stamp is zero;
/// - every other slot reads as its old record, intact.
///
/// Single-threaded, so each loom model is one execution; the crash views are checked in batches
/// because loom's per-execution counters are 16-bit.
fn crash_views(name: &str, slot_count: usize, old: Vec<Rec>, new: Rec) {
    let start = Instant::now();
    let old = std::sync::Arc::new(old);
    let new = std::sync::Arc::new(new);

    // Lane images before and after the new record, written through the API.
    let images = std::sync::Arc::new(Mutex::new(None));
    {
        let (old, new, images) = (old.clone(), new.clone(), images.clone());
        loom::model(move || {
            let words = lane(slot_count);
            let slots = Slots::new(&words[..]).unwrap();
            for rec in old.iter() {
                rec.write(&slots);
            }
            let before = snapshot(&words);
            new.write(&slots);
            *images.lock().unwrap() = Some((before, snapshot(&words)));
        });
    }
    let (before, after) = images.lock().unwrap().take().unwrap();

    let covered: Vec<usize> = (new.pos..new.pos + new.slots())
        .map(|p| (p % slot_count as u64) as usize)
        .collect();
    let stamp = |s: usize| s * SLOT_WORDS;
    let data_words: Vec<usize> = covered
        .iter()
        .flat_map(|&s| stamp(s) + 1..stamp(s + 1))
        .collect();

    // Every crash view, as the lane image the dead writer leaves.
    let mut views: Vec<(Vec<u64>, String)> = Vec::new();
    // Died in step 1: a prefix of the covered stamps zeroed (head first), nothing else.
    for zeroed in 1..=covered.len() {
        let mut image = before.clone();
        for &s in &covered[..zeroed] {
            image[stamp(s)] = 0;
        }
        views.push((
            image,
            format!("died in step 1 after zeroing {zeroed} stamps"),
        ));
    }
    // Died in step 2: all covered stamps zero, any subset of the data words stored.
    assert!(data_words.len() <= 16, "keep the subsets enumerable");
    for mask in 0u32..1 << data_words.len() {
        let mut image = before.clone();
        for &s in &covered {
            image[stamp(s)] = 0;
        }
        for (bit, &w) in data_words.iter().enumerate() {
            if mask & (1 << bit) != 0 {
                image[w] = after[w];
            }
        }
        views.push((
            image,
            format!("died in step 2 with data words {mask:#b} stored"),
        ));
    }
    // Died in step 3: data complete, a prefix of the continuation stamps published.
    for published in 0..covered.len() {
        let mut image = after.clone();
        image[stamp(covered[0])] = 0;
        for &s in &covered[1 + published..] {
            image[stamp(s)] = 0;
        }
        views.push((
            image,
            format!("died in step 3 after {published} continuation stamps"),
        ));
    }
    let view_count = views.len();

    let shared = std::sync::Arc::new((old, new, before, after, covered));
    for batch in views.chunks(256) {
        let batch = std::sync::Arc::new(batch.to_vec());
        let shared = shared.clone();
        let mut builder = loom::model::Builder::new();
        builder.max_branches = 1 << 16;
        builder.check(move || {
            let (old, new, before, after, covered) = &*shared;
            let words = lane(slot_count);
            let slots = Slots::new(&words[..]).unwrap();
            let mut buf = Vec::new();
            let n = slot_count as u64;
            for (w, &v) in words.iter().zip(before) {
                w.store(v, Ordering::Relaxed);
            }
            // The slots the new record does not cover are never touched.
            for index in (0..slot_count).filter(|i| !covered.contains(i)) {
                let state = slots.read(index as u64, &mut buf);
                Expect {
                    history: old,
                    slot_count: n,
                    may_be_empty: true,
                    may_be_in_flux: false,
                }
                .check(index as u64, state, &buf);
            }
            for (image, what) in batch.iter() {
                for &s in covered {
                    for w in stamp(s)..stamp(s + 1) {
                        words[w].store(image[w], Ordering::Relaxed);
                    }
                }
                // Zero stamp: `Torn`, or `Empty` if nothing nonzero is left in the slot (a
                // never-written slot the writer died before storing into).
                let zeroed = |index: usize| {
                    if image[stamp(index)..stamp(index + 1)]
                        .iter()
                        .all(|&w| w == 0)
                    {
                        SlotState::Empty
                    } else {
                        SlotState::Torn
                    }
                };
                let head = covered[0];
                let state = slots.read(head as u64, &mut buf);
                assert_eq!(state, zeroed(head), "{what}: head slot {head}");
                for &index in &covered[1..] {
                    let state = slots.read(index as u64, &mut buf);
                    let stamp_now = image[stamp(index)];
                    if stamp_now == after[stamp(index)] {
                        assert_eq!(state, SlotState::Continuation, "{what}: slot {index}");
                    } else if stamp_now != 0 {
                        // Not zeroed yet: what the old record left, intact.
                        assert_eq!(stamp_now, before[stamp(index)], "{what}: slot {index}");
                        Expect {
                            history: old,
                            slot_count: n,
                            may_be_empty: false,
                            may_be_in_flux: false,
                        }
                        .check(index as u64, state, &buf);
                    } else {
                        assert_eq!(state, zeroed(index), "{what}: slot {index}");
                    }
                }
            }
            // Had it not died, the new record would be there intact.
            for (w, &v) in words.iter().zip(after) {
                w.store(v, Ordering::Relaxed);
            }
            let state = slots.read(covered[0] as u64, &mut buf);
            assert!(
                matches!(state, SlotState::Record(h) if h.seq == new.seq && h.pos == new.pos),
                "{state:?}"
            );
            assert_eq!(buf, new.payload);
        });
    }
    eprintln!(
        "loom: crash views, {name}: {view_count} views in {:.1?}",
        start.elapsed()
    );
}

#[test]
fn crash_views_single_slot_overwrite() {
    // Seq 4 at position 4 over seq 0 in a full 4-slot lane.
    crash_views(
        "single slot over a single slot",
        4,
        history(&[24, 8, 8, 8]),
        Rec::new(4, 4, 32),
    );
}

#[test]
fn crash_views_spanning_overwrite() {
    // Seq 7 spanning slots 0-1 over seq 0, which spanned the same two slots.
    crash_views(
        "spanning over spanning",
        8,
        history(&[40, 8, 8, 8, 8, 8, 8]),
        Rec::new(8, 7, 40),
    );
    // Seq 8 spanning slots 0-1 over two single-slot records, seq 0 and seq 1.
    crash_views(
        "spanning over two single slots",
        8,
        history(&[8; 8]),
        Rec::new(8, 8, 40),
    );
    // Seq 7 straddling the end of the lane (slots 7 and 0) over seq 0 and an empty slot 7.
    crash_views(
        "straddling the end",
        8,
        history(&[8; 7]),
        Rec::new(7, 7, 40),
    );
}
