//! Following a live ring file: a recorder in this process writes on another thread while a
//! [`Follower`] polls. Inputs and trace messages are functions of their sequence numbers, so
//! every record the follower returns is checked byte for byte, and every number is accounted
//! for: read once, in order, or reported in a gap with its cause. Damaged and random files are
//! polled repeatedly and must never make a poll panic or do unbounded work.

use std::ops::Range;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use flightrec_recorder::{Builder, Level, Machine, Recorded, Tick};
use flightrec_replayer::{recover_lane, Fate, Followed, Follower, GapCause, Ring, Start};
use flightrec_schemas::layout::{header as h, SLOT_SIZE};
use flightrec_schemas::trace::TraceKind;
use proptest::prelude::*;
use serde::{Deserialize, Serialize};

/// Counts its inputs and their bytes.
#[derive(Default, Serialize, Deserialize)]
struct Blobs {
    inputs: u64,
    bytes: u64,
}

impl Machine for Blobs {
    const NAME: &'static str = "blobs";
    const VERSION: u32 = 1;
    type Input = Vec<u8>;
    fn apply(&mut self, input: &Vec<u8>, _tick: Tick) {
        self.inputs += 1;
        self.bytes += input.len() as u64;
    }
}

/// Input `i`: 0 to 149 bytes, so records of one to four slots.
fn input(i: u64) -> Vec<u8> {
    let len = (i * 37 % 150) as usize;
    (0..len).map(|j| (i as usize * 31 + j * 7) as u8).collect()
}

/// The record payload of input `i`.
fn encoded(i: u64) -> Vec<u8> {
    let mut out = Vec::new();
    Blobs::encode_input(&input(i), &mut out).unwrap();
    out
}

/// Trace message `i`, of one to three slots.
fn message(i: u64) -> String {
    format!("event {i} {}", "x".repeat((i % 90) as usize))
}

/// A recorder into a new file in `dir` with an input lane of `input_slots` slots and one trace
/// lane of 256.
fn recorder(dir: &Path, input_slots: u64) -> Recorded<Blobs> {
    Builder::new()
        .dir(dir)
        .input_lane_bytes(input_slots * SLOT_SIZE)
        .trace_lanes(1)
        .trace_lane_bytes(256 * SLOT_SIZE)
        .state_capacity(4 << 10)
        .checkpoint_every_inputs(1_000_000)
        .crash_capture(false)
        .counters(false)
        .build(Blobs::default())
        .expect("create the ring file")
}

/// Writes inputs `inputs` and a trace event for every tenth, on this thread.
fn write(recorded: &mut Recorded<Blobs>, inputs: Range<u64>) {
    let tracer = recorded.tracer();
    for i in inputs {
        recorded.apply(&input(i));
        if i % 10 == 0 {
            tracer.event(Level::Info, &message(i / 10));
        }
    }
}

/// What a follower returned, checked and accounted for lane by lane.
#[derive(Default, Debug)]
struct Seen {
    /// Per lane: every sequence number read or reported in a gap, in the order returned.
    numbers: Vec<Vec<u64>>,
    /// The numbers reported as lapped, in any lane.
    lapped: Vec<u64>,
    /// Those of the input lane.
    inputs_lapped: u64,
    /// Trace messages, in order.
    messages: Vec<String>,
    /// How the writer ended, once reported.
    ended: Option<Fate>,
    polls_after_end: usize,
}

impl Seen {
    /// Takes one poll's items, checking each record's bytes against what was written.
    fn take(&mut self, items: Vec<Followed>) {
        if self.ended.is_some() {
            assert!(items.is_empty(), "a poll after the end returned {items:?}");
            self.polls_after_end += 1;
            return;
        }
        for item in items {
            assert!(self.ended.is_none(), "{item:?} after the end");
            if let Some(lane) = item.lane() {
                if self.numbers.len() <= lane {
                    self.numbers.resize(lane + 1, Vec::new());
                }
            }
            match item {
                Followed::Input(record) => {
                    assert_eq!(record.lane, 0);
                    assert_eq!(record.payload, encoded(record.seq), "input {}", record.seq);
                    self.numbers[0].push(record.seq);
                }
                Followed::Trace {
                    record,
                    thread,
                    event,
                } => {
                    let event = event.expect("trace events decode");
                    assert_eq!(event.kind, TraceKind::Event);
                    assert_eq!(thread, "writer", "events are named after their thread");
                    self.numbers[record.lane].push(record.seq);
                    self.messages.push(event.message);
                }
                Followed::Gap { lane, seqs, cause } => {
                    assert_eq!(cause, GapCause::Lapped, "lane {lane}: {seqs:?}");
                    self.lapped.extend(seqs.clone());
                    if lane == 0 {
                        self.inputs_lapped += seqs.end - seqs.start;
                    }
                    self.numbers[lane].extend(seqs);
                }
                Followed::Ended { fate, .. } => self.ended = Some(fate),
                other => panic!("an undamaged file gave {other:?}"),
            }
        }
    }

    /// The input numbers, which must be every number from `first` to `end`, once, in order.
    fn assert_inputs(&self, numbers: Range<u64>) {
        let inputs = &self.numbers[0];
        assert!(
            inputs.iter().copied().eq(numbers.clone()),
            "inputs returned out of order, twice or not at all: {} numbers, first {:?}, last {:?}, \
             expected {numbers:?}",
            inputs.len(),
            inputs.first(),
            inputs.last()
        );
    }

    /// The trace messages, which must be `message(i)` for each `i` in order, except those
    /// reported lost.
    fn assert_messages(&self, all: Range<u64>) {
        let mut read = self.messages.iter().peekable();
        for i in all {
            if read.peek().is_some_and(|m| **m == message(i)) {
                read.next();
            }
        }
        assert!(
            read.peek().is_none(),
            "trace messages out of order or unknown from {:?}",
            read.peek()
        );
    }
}

/// The trace lane's numbers run on without repeats: every one read or reported, except the
/// claim records that name the thread (not returned).
fn assert_trace_numbers(numbers: &[u64]) {
    assert!(
        numbers.windows(2).all(|w| w[0] < w[1]),
        "trace numbers out of order or repeated: {numbers:?}"
    );
}

#[test]
fn a_follower_reads_every_record_once_in_order_while_the_writer_runs() {
    const INPUTS: u64 = 20_000;
    let dir = tempfile::tempdir().unwrap();
    // Room for every input, so nothing can be lapped: every one must be read.
    let mut recorded = recorder(dir.path(), 64 << 10);
    let path = recorded.path().to_owned();
    let mut follower = Follower::new(Ring::open(&path).unwrap(), Start::End);
    let mut seen = Seen::default();
    std::thread::scope(|s| {
        let writer = std::thread::Builder::new()
            .name("writer".into())
            .spawn_scoped(s, move || {
                write(&mut recorded, 0..INPUTS);
                recorded.finish();
            })
            .unwrap();
        while seen.ended.is_none() {
            seen.take(follower.poll());
            std::thread::yield_now();
        }
        writer.join().unwrap();
    });
    seen.take(follower.poll());
    assert_eq!(seen.ended, Some(Fate::Exited));
    assert_eq!(seen.polls_after_end, 1);
    seen.assert_inputs(0..INPUTS);
    assert_eq!(seen.inputs_lapped, 0);
    // The trace lane wraps many times over: the follower may have been lapped there.
    assert_trace_numbers(&seen.numbers[1]);
    seen.assert_messages(0..INPUTS / 10);
    let stats = follower.stats();
    assert_eq!(stats.missed, seen.lapped.len() as u64);
    assert_eq!((stats.corrupt, stats.damaged, stats.skipped), (0, 0, 0));
}

#[test]
fn a_follower_lapped_by_a_fast_writer_counts_what_it_missed() {
    const BURSTS: u64 = 60;
    const BURST: u64 = 500;
    let dir = tempfile::tempdir().unwrap();
    // 256 slots hold about a hundred inputs: a burst laps the ring several times.
    let mut recorded = recorder(dir.path(), 256);
    let path = recorded.path().to_owned();
    let mut follower = Follower::new(Ring::open(&path).unwrap(), Start::End);
    let mut seen = Seen::default();
    // Every fifth burst is written while the follower waits, so that it is surely lapped; the
    // others race with its polls.
    let (quiet, quiet_started) = std::sync::mpsc::channel();
    let (waiting, follower_waits) = std::sync::mpsc::channel();
    let (quiet_done, quiet_ended) = std::sync::mpsc::channel();
    std::thread::scope(|s| {
        std::thread::Builder::new()
            .name("writer".into())
            .spawn_scoped(s, move || {
                for burst in 0..BURSTS {
                    let inputs = burst * BURST..(burst + 1) * BURST;
                    if burst % 5 == 0 {
                        quiet.send(()).unwrap();
                        follower_waits.recv().unwrap();
                        write(&mut recorded, inputs);
                        quiet_done.send(()).unwrap();
                    } else {
                        write(&mut recorded, inputs);
                    }
                }
                recorded.finish();
            })
            .unwrap();
        while seen.ended.is_none() {
            if quiet_started.try_recv().is_ok() {
                waiting.send(()).unwrap();
                quiet_ended.recv().unwrap();
            }
            seen.take(follower.poll());
        }
    });
    // Every number is accounted for, once, in order: read, or missed in a reported gap.
    seen.assert_inputs(0..BURSTS * BURST);
    assert_trace_numbers(&seen.numbers[1]);
    seen.assert_messages(0..BURSTS * BURST / 10);
    assert_eq!(follower.stats().missed, seen.lapped.len() as u64);
    assert!(seen.inputs_lapped >= BURSTS / 5 * (BURST - 256));
}

#[test]
fn a_follower_that_fell_a_lap_behind_resumes_at_the_oldest_record_left() {
    let dir = tempfile::tempdir().unwrap();
    let mut recorded = recorder(dir.path(), 256);
    let path = recorded.path().to_owned();
    write(&mut recorded, 0..50);
    let mut follower = Follower::new(Ring::open(&path).unwrap(), Start::End);
    assert!(follower.poll().is_empty(), "started at the end");
    // Several laps while the follower does not look.
    write(&mut recorded, 50..1_000);
    let items = follower.poll();
    let ring = Ring::open(&path).unwrap();
    let retained = recover_lane(&ring, &ring.header().lanes[0]);
    let oldest = retained.first().unwrap().seq;
    let inputs: Vec<u64> = items
        .iter()
        .filter_map(|item| match item {
            Followed::Input(record) => Some(record.seq),
            _ => None,
        })
        .collect();
    // Everything the ring still held is read: the gap is only what was overwritten.
    assert_eq!(inputs, retained.seqs().collect::<Vec<_>>());
    assert!(items.contains(&Followed::Gap {
        lane: 0,
        seqs: 50..oldest,
        cause: GapCause::Lapped,
    }));
    assert_eq!(follower.stats().missed, oldest - 50);
    write(&mut recorded, 1_000..1_010);
    let next: Vec<u64> = follower
        .poll()
        .iter()
        .filter_map(|item| match item {
            Followed::Input(record) => Some(record.seq),
            _ => None,
        })
        .collect();
    assert_eq!(next, (1_000..1_010).collect::<Vec<_>>());
    drop(recorded);
}

#[test]
fn a_follower_from_the_start_reads_what_recovery_reads_and_reports_a_crash() {
    let dir = tempfile::tempdir().unwrap();
    let mut recorded = recorder(dir.path(), 1024);
    let path = recorded.path().to_owned();
    write(&mut recorded, 0..2_000);
    let mut follower = Follower::new(Ring::open(&path).unwrap(), Start::Oldest);
    let first = follower.poll();
    // Recorded is dropped while a panic unwinds: the file says crashed.
    let panicked = std::thread::spawn(move || {
        let _recorded = recorded;
        panic!("the machine thread dies");
    })
    .join();
    assert!(panicked.is_err());
    let last = follower.poll();
    assert!(
        matches!(
            last.last(),
            Some(Followed::Ended {
                fate: Fate::Crashed,
                crash: Ok(None)
            })
        ),
        "{last:?}"
    );
    let ring = Ring::open(&path).unwrap();
    let retained = recover_lane(&ring, &ring.header().lanes[0]);
    let inputs: Vec<u64> = first
        .iter()
        .chain(&last)
        .filter_map(|item| match item {
            Followed::Input(record) => Some(record.seq),
            _ => None,
        })
        .collect();
    assert_eq!(inputs, retained.seqs().collect::<Vec<_>>());
    assert!(follower.poll().is_empty() && follower.ended());
}

#[test]
fn a_record_being_written_is_read_when_it_is_complete_not_before() {
    let dir = tempfile::tempdir().unwrap();
    let mut recorded = recorder(dir.path(), 1024);
    let path = recorded.path().to_owned();
    write(&mut recorded, 0..11);
    let ring = Ring::open(&path).unwrap();
    let lane = ring.header().lanes[0];
    let next_pos = {
        let retained = recover_lane(&ring, &lane);
        let last = retained.last().unwrap();
        last.pos + flightrec_schemas::layout::slots_for(last.payload.len() as u32)
    };
    let mut follower = Follower::new(ring, Start::End);
    // The writer's first step on the next record: zero its stamp over bytes already there (as
    // a record of the previous lap would have left them).
    let file = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    let head = lane.slots_offset() + (next_pos % lane.slot_count) * SLOT_SIZE;
    file.write_all_at(&[0xAB; 8], head + 8).unwrap();
    assert!(follower.poll().is_empty(), "a torn head is not a record");
    assert_eq!(follower.stats().records, 0);
    // Input 11 comes without a trace event.
    write(&mut recorded, 11..12);
    let items = follower.poll();
    assert!(
        matches!(&items[..], [Followed::Input(r)] if r.seq == 11 && r.payload == encoded(11)),
        "{items:?}"
    );
}

#[test]
fn a_writer_gone_mid_record_leaves_a_torn_record_reported_at_the_end() {
    let dir = tempfile::tempdir().unwrap();
    let mut recorded = recorder(dir.path(), 1024);
    let path = recorded.path().to_owned();
    write(&mut recorded, 0..10);
    recorded.finish();
    let ring = Ring::open(&path).unwrap();
    let lane = ring.header().lanes[0];
    let retained = recover_lane(&ring, &lane);
    let last = retained.last().unwrap();
    // Unmake the last record's stamp, as a writer killed while writing it leaves it.
    let file = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    let head = lane.slots_offset() + (last.pos % lane.slot_count) * SLOT_SIZE;
    file.write_all_at(&0u64.to_le_bytes(), head).unwrap();
    let mut follower = Follower::new(Ring::open(&path).unwrap(), Start::Oldest);
    let items = follower.poll();
    let inputs = items
        .iter()
        .filter(|item| matches!(item, Followed::Input(_)))
        .count();
    assert_eq!(inputs, 9);
    let tail = &items[items.len() - 2..];
    assert!(
        matches!(tail, [Followed::Torn { lane: 0, pos }, Followed::Ended { fate: Fate::Exited, .. }] if *pos == last.pos),
        "{tail:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// Hostile files

/// A finished ring whose lanes have all wrapped.
fn pristine() -> &'static (Vec<u8>, Vec<flightrec_schemas::header::LaneInfo>) {
    static PRISTINE: OnceLock<(Vec<u8>, Vec<flightrec_schemas::header::LaneInfo>)> =
        OnceLock::new();
    PRISTINE.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let mut recorded = recorder(dir.path(), 256);
        write(&mut recorded, 0..3_000);
        let path = recorded.finish();
        let lanes = Ring::open(&path).unwrap().header().lanes.clone();
        (std::fs::read(&path).unwrap(), lanes)
    })
}

/// Writes `bytes` to a new file in `dir`, marked as running (this process is its writer, so it
/// reads as alive and the follower keeps polling).
fn running_copy(dir: &Path, bytes: &[u8]) -> PathBuf {
    let path = dir.join("damaged.ring");
    let mut bytes = bytes.to_vec();
    bytes[h::STATUS as usize..h::STATUS as usize + 8].copy_from_slice(&1u64.to_le_bytes());
    std::fs::write(&path, bytes).unwrap();
    path
}

/// A change to the file: `len` bytes of `value` at a fraction `at` of the lanes' span.
#[derive(Clone, Debug)]
struct Damage {
    at: f64,
    bytes: Vec<u8>,
}

fn damage() -> impl Strategy<Value = Damage> {
    (0.0..1.0f64, prop::collection::vec(any::<u8>(), 1..80))
        .prop_map(|(at, bytes)| Damage { at, bytes })
}

fn apply(file: &std::fs::File, lanes: &[flightrec_schemas::header::LaneInfo], damage: &Damage) {
    let start = lanes[0].offset;
    let end = lanes.last().unwrap().end();
    let offset = start + ((end - start) as f64 * damage.at) as u64;
    let len = (damage.bytes.len() as u64).min(end - offset) as usize;
    file.write_all_at(&damage.bytes[..len], offset).unwrap();
}

/// Polls `path` from both starts, damaging it again between polls; every poll must return and
/// stay within two lanes' worth of slots per lane.
fn poll_damaged(path: &Path, between: &[Damage]) -> Result<(), TestCaseError> {
    let (_, lanes) = pristine();
    let per_poll: u64 = lanes.iter().map(|lane| 2 * lane.slot_count).sum();
    let file = std::fs::OpenOptions::new().write(true).open(path).unwrap();
    for start in [Start::End, Start::Oldest] {
        let ring = Ring::open(path).expect("the header is intact");
        let mut follower = Follower::new(ring, start);
        for damage in between {
            let before = follower.stats().slots_visited;
            for item in follower.poll() {
                if let Followed::Input(record) = &item {
                    prop_assert!(record.payload.len() <= 64 << 10);
                }
            }
            prop_assert!(follower.stats().slots_visited - before <= per_poll);
            apply(&file, lanes, damage);
        }
    }
    Ok(())
}

/// Fills `bytes` from a xorshift generator seeded with `seed`.
fn fill_random(bytes: &mut [u8], seed: u64) {
    let mut state = seed | 1;
    for chunk in bytes.chunks_mut(8) {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        chunk.copy_from_slice(&state.to_le_bytes()[..chunk.len()]);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    #[test]
    fn damaged_rings_polled_repeatedly_never_panic(
        initial in prop::collection::vec(damage(), 0..20),
        between in prop::collection::vec(damage(), 1..8),
    ) {
        let (bytes, lanes) = pristine();
        let dir = tempfile::tempdir().unwrap();
        let path = running_copy(dir.path(), bytes);
        let file = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
        for damage in &initial {
            apply(&file, lanes, damage);
        }
        poll_damaged(&path, &between)?;
    }

    #[test]
    fn random_lanes_polled_repeatedly_never_panic(
        seed in any::<u64>(),
        between in prop::collection::vec(damage(), 1..8),
    ) {
        let (bytes, lanes) = pristine();
        let mut random = bytes.clone();
        let (start, end) = (lanes[0].offset as usize, lanes.last().unwrap().end() as usize);
        fill_random(&mut random[start..end], seed);
        let dir = tempfile::tempdir().unwrap();
        let path = running_copy(dir.path(), &random);
        poll_damaged(&path, &between)?;
    }
}
