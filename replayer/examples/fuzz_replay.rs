//! A fuzzer for replay, on stable Rust: it records a small ring file with a tiny machine, then
//! damages copies of it (flipped bits, overwritten bytes, zeroed words, copied ranges,
//! truncation, extension, header fields set to extreme values) and replays each copy through
//! `History`, checking that
//!
//! - nothing panics, hangs, or allocates more than the file justifies;
//! - a refusal names the file;
//! - a replay returns only inputs that were recorded, numbered as recorded, and the states,
//!   diffs and "last changes" that those inputs give (the tiny machine's state after `n` inputs
//!   is known here for every `n`).
//!
//! ```text
//! cargo run -p flightrec-replayer --example fuzz_replay --release -- \
//!     [--seed S] [--iterations N] [--first I]
//! ```
//!
//! Without `--iterations` it runs until stopped. Each iteration draws its damage from its own
//! seed, derived from `--seed` and the iteration's number, so `--seed S --first I --iterations 1`
//! repeats iteration `I` alone. A failure prints that command, then aborts (a panic is not
//! caught: catching it could hide a bug); a hang aborts after [`HANG_LIMIT`].
//!
//! `replayer/tests/fuzz_replay.rs` includes this file to run a bounded fuzz in `cargo test`.

// In the test build, `main` and its argument parsing are unused.
#![cfg_attr(test, allow(dead_code))]

use std::collections::BTreeMap;
use std::ops::Range;
use std::path::Path;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use flightrec_recorder::{Builder, Level, Machine, Tick};
use flightrec_replayer::tree::{Path as TreePath, Segment, Value};
use flightrec_replayer::{History, OpenError, ReplayError, ReplayOptions, Ring};
use flightrec_schemas::header::HeaderInfo;
use flightrec_schemas::layout::{
    checkpoint as cp, header as h, lane_control, lane_entry, slot, HEADER_SIZE, PAGE, SLOT_SIZE,
};
use proptest::prelude::*;
use proptest::sample::Index;
use proptest::strategy::ValueTree;
use proptest::test_runner::{RngAlgorithm, TestRng, TestRunner};
use serde::{Deserialize, Serialize};

/// Inputs recorded into the pristine file: almost three times around its 2,048-slot input lane.
const RECORDED_INPUTS: u64 = 3_000;
/// Inputs between cadence checkpoints. The input dropped at [`OVERSIZED_AT`] forces one after it,
/// and the next is not due before the last input: replay runs from there to the exit checkpoint.
const CHECKPOINT_EVERY: u64 = 700;
/// An input too large for the lane: dropped by the recorder, which leaves a gap in the numbering
/// among the retained inputs, and a checkpoint after it.
const OVERSIZED_AT: u64 = 2_600;
/// Snapshot budget of every replay: small, so that snapshots are 64 inputs apart.
const SNAPSHOT_BUDGET: usize = 16 << 10;
/// A replay holds what the lanes hold about twice (the recovered bytes, then the decoded inputs
/// and trace records) plus its snapshots; a refusal, at most the recovered lanes. Beyond this,
/// an allocation is not justified by the file.
const ALLOWED_PER_FILE_BYTE: usize = 2;
/// Allowance for fixed costs: the header page, error messages, small tables.
const ALLOWED_FIXED: usize = 64 << 10;
/// One iteration takes milliseconds; one that takes this long is hung.
pub const HANG_LIMIT: Duration = Duration::from_secs(60);

// ---------------------------------------------------------------------------------------------
// The tiny machine

/// Counts its inputs and a few properties of them, so that its fields change at different rates
/// (every input, about half of them, one in 60) and `last_change` has something to find.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tiny {
    count: u64,
    sum: u64,
    odd: u64,
    rare: u64,
    head: Vec<u8>,
}

impl Machine for Tiny {
    const NAME: &'static str = "fuzz-tiny";
    const VERSION: u32 = 1;
    type Input = Vec<u8>;

    fn apply(&mut self, input: &Vec<u8>, _tick: Tick) {
        self.count += 1;
        self.sum = input.iter().fold(self.sum.rotate_left(5), |sum, &b| {
            sum.wrapping_mul(31) ^ b as u64
        });
        self.odd += is_odd(input) as u64;
        self.rare += is_rare(input) as u64;
        self.head = input.iter().take(4).copied().collect();
    }
}

fn is_odd(input: &[u8]) -> bool {
    input.len() % 2 == 1
}

fn is_rare(input: &[u8]) -> bool {
    input.len() % 67 == 5
}

/// Input `seq`: 0 to 119 bytes (records of one to three slots), or for [`OVERSIZED_AT`] 40,000
/// bytes, more than a quarter of the lane, which the recorder refuses.
fn input(seq: u64) -> Vec<u8> {
    let len = if seq == OVERSIZED_AT {
        40_000
    } else {
        (seq * 37 % 120) as usize
    };
    (0..len)
        .map(|i| (seq as usize * 13 + i * 7) as u8)
        .collect()
}

// ---------------------------------------------------------------------------------------------
// The pristine file

/// The file as recorded, where its regions are, and what it holds.
pub struct Pristine {
    /// The file.
    pub bytes: Vec<u8>,
    /// Its header.
    pub header: HeaderInfo,
    /// Fields that [`Mutation::Field`] sets: offset and width.
    fields: Vec<(u64, usize)>,
    /// Input `seq` as recorded (dropped ones included).
    inputs: Vec<Vec<u8>>,
    /// `states[n]` is the machine after inputs `0..n`.
    states: Vec<Tiny>,
    /// Inputs the undamaged file replays.
    pub replayed_len: usize,
}

impl Pristine {
    /// Records the file once per process.
    pub fn get() -> &'static Pristine {
        static PRISTINE: OnceLock<Pristine> = OnceLock::new();
        PRISTINE.get_or_init(Pristine::record)
    }

    fn record() -> Pristine {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut recorded = Builder::new()
            .dir(dir.path())
            .input_lane_bytes(128 << 10)
            .trace_lanes(1)
            .trace_lane_bytes(16 << 10)
            .state_capacity(16 << 10)
            .checkpoint_every_inputs(CHECKPOINT_EVERY)
            .crash_capture(false)
            .counters(false)
            .build(Tiny::default())
            .expect("create the pristine ring file");
        let tracer = recorded.tracer();
        let inputs: Vec<Vec<u8>> = (0..RECORDED_INPUTS).map(input).collect();
        let mut states = vec![Tiny::default()];
        for (seq, input) in inputs.iter().enumerate() {
            recorded.apply(input);
            states.push(recorded.machine().clone());
            if seq % 10 == 0 {
                tracer.event(Level::Info, &format!("applied input {seq}"));
            }
        }
        let path = recorded.finish();
        let bytes = std::fs::read(&path).expect("read the pristine file");
        let header = Ring::open(&path)
            .expect("the recorder wrote a valid file")
            .header()
            .clone();
        let replayed_len = replayable(&path);
        Pristine {
            bytes,
            fields: fields(&header),
            header,
            inputs,
            states,
            replayed_len,
        }
    }

    /// Byte ranges of the file's regions.
    fn region(&self, region: Region) -> Range<u64> {
        let lane = |i: usize| self.header.lanes[i].offset..self.header.lanes[i].end();
        let checkpoints = self.header.checkpoint_offset;
        match region {
            Region::Header => 0..HEADER_SIZE,
            Region::Inputs => lane(0),
            Region::Traces => lane(1),
            Region::Checkpoints => checkpoints..checkpoints + 2 * self.header.checkpoint_slot_size,
            Region::Anywhere => 0..self.bytes.len() as u64,
        }
    }
}

/// Every header field, lane-table entry and control word, and the header words of both
/// checkpoint slots and of the first slots of each lane, with their widths.
fn fields(header: &HeaderInfo) -> Vec<(u64, usize)> {
    let mut fields = vec![
        (h::FORMAT_VERSION, 4),
        (h::HEADER_SIZE, 4),
        (h::FILE_SIZE, 8),
        (h::MACHINE_VERSION, 4),
        (h::MACHINE_NAME_LEN, 4),
        (h::PID, 4),
        (h::LANE_COUNT, 4),
        (h::CLOCK_SOURCE, 4),
        (h::CLOCK_BASE_TICKS, 8),
        (h::CLOCK_BASE_UNIX_NS, 8),
        (h::CLOCK_MULT, 8),
        (h::CHECKPOINT_OFFSET, 8),
        (h::CHECKPOINT_SLOT_SIZE, 8),
        (h::CHECKPOINT_SLOT_COUNT, 4),
        (h::STATUS, 8),
    ];
    // One entry past the last lane too: it is read when the lane count grows.
    for lane in 0..=header.lanes.len() as u64 {
        let entry = h::LANE_TABLE + lane * lane_entry::SIZE;
        fields.extend([
            (entry + lane_entry::KIND, 4),
            (entry + lane_entry::SLOT_SIZE, 4),
            (entry + lane_entry::OFFSET, 8),
            (entry + lane_entry::SLOT_COUNT, 8),
        ]);
    }
    for lane in &header.lanes {
        let control = [
            lane_control::OWNER,
            lane_control::NEXT_SEQ,
            lane_control::DROPPED_TOO_LARGE,
        ];
        fields.extend(control.map(|word| (lane.offset + word, 8)));
        for index in 0..4 {
            let at = lane.slots_offset() + index * SLOT_SIZE;
            fields.extend([
                (at + slot::STAMP, 8),
                (at + slot::SEQ, 8),
                (at + slot::LEN, 4),
            ]);
        }
    }
    for index in 0..2 {
        let at = header.checkpoint_offset + index * header.checkpoint_slot_size;
        for word in [cp::STAMP, cp::INPUT_SEQ, cp::STATE_LEN, cp::STATE_HASH] {
            fields.push((at + word, 8));
        }
    }
    fields
}

/// The undamaged file must replay as designed (hundreds of inputs, a checkpoint at each end), or
/// the fuzzer would test less than it should. Returns how many inputs it replays.
fn replayable(path: &Path) -> usize {
    let history = History::<Tiny>::open_with(path, &options()).expect("replay the pristine file");
    assert!(
        history.verification().passed(),
        "{:?}",
        history.verification()
    );
    assert_eq!(history.base_seq(), OVERSIZED_AT + 1, "the replay's base");
    assert_eq!(
        history.verification().checks.len(),
        2,
        "the base and the exit checkpoint"
    );
    assert!(!history.traces().is_empty(), "no trace records");
    assert_eq!(history.base_seq() + history.len() as u64, RECORDED_INPUTS);
    history.len()
}

/// Options of every replay.
pub fn options() -> ReplayOptions {
    ReplayOptions {
        snapshot_budget: SNAPSHOT_BUDGET,
        ..ReplayOptions::default()
    }
}

// ---------------------------------------------------------------------------------------------
// Damage

/// A part of the file, so that small regions (the header page) are hit as often as big ones.
#[derive(Clone, Copy, Debug)]
pub enum Region {
    Header,
    Inputs,
    Traces,
    Checkpoints,
    Anywhere,
}

/// A byte in a region.
#[derive(Clone, Debug)]
pub struct Spot {
    region: Region,
    at: Index,
}

impl Spot {
    /// The offset in the pristine layout, if the (perhaps truncated) file still reaches it.
    fn offset(&self, len: usize) -> Option<usize> {
        let range = Pristine::get().region(self.region);
        let offset = range.start + self.at.index((range.end - range.start) as usize) as u64;
        (offset < len as u64).then_some(offset as usize)
    }
}

/// A value for a header field: extremes, near-misses of the file's length or of the field's own
/// value (plausible layouts that are wrong), or anything.
#[derive(Clone, Debug)]
pub enum Extreme {
    Absolute(u64),
    /// The file's current length plus this.
    FromLength(i64),
    /// 2 to this power: slot counts and sizes that pass the power-of-two check.
    PowerOfTwo(u8),
    /// The field's current value plus this.
    Nudge(i64),
}

impl Extreme {
    fn resolve(&self, current: u64, file_len: usize) -> u64 {
        match *self {
            Extreme::Absolute(value) => value,
            Extreme::FromLength(delta) => (file_len as u64).wrapping_add_signed(delta),
            Extreme::PowerOfTwo(power) => 1 << (power % 64),
            Extreme::Nudge(delta) => current.wrapping_add_signed(delta),
        }
    }
}

/// One piece of damage.
#[derive(Clone, Debug)]
pub enum Mutation {
    /// Flip one bit.
    FlipBit { at: Spot, bit: u8 },
    /// Overwrite bytes with random ones.
    Overwrite { at: Spot, bytes: Vec<u8> },
    /// Zero aligned words: a stamp, a length, part of a payload.
    ZeroWords { at: Spot, words: u8 },
    /// Copy `len` bytes (whole slots when `slots`) from one place to another.
    Copy {
        from: Spot,
        to: Spot,
        len: u16,
        slots: bool,
    },
    /// Cut the file short.
    Truncate { to: Index },
    /// Append garbage.
    Extend { bytes: Vec<u8> },
    /// Set a header field, control word, or slot or checkpoint header word.
    Field { field: Index, value: Extreme },
}

fn region() -> impl Strategy<Value = Region> {
    prop_oneof![
        3 => Just(Region::Header),
        3 => Just(Region::Inputs),
        1 => Just(Region::Traces),
        2 => Just(Region::Checkpoints),
        2 => Just(Region::Anywhere),
    ]
}

fn spot() -> impl Strategy<Value = Spot> {
    (region(), any::<Index>()).prop_map(|(region, at)| Spot { region, at })
}

fn extreme() -> impl Strategy<Value = Extreme> {
    let absolute = prop_oneof![
        Just(0u64),
        Just(1),
        Just(4),
        Just(PAGE),
        Just(u32::MAX as u64),
        Just(1 << 40),
        Just(1 << 62),
        Just(1 << 63),
        Just(u64::MAX - PAGE + 1),
        Just(u64::MAX),
        any::<u64>(),
    ];
    let near = || {
        let page = PAGE as i64;
        let deltas = [-page, -64, -8, -1, 0, 1, 8, 64, page];
        (0..deltas.len()).prop_map(move |i| deltas[i])
    };
    prop_oneof![
        3 => absolute.prop_map(Extreme::Absolute),
        1 => near().prop_map(Extreme::FromLength),
        1 => any::<u8>().prop_map(Extreme::PowerOfTwo),
        2 => near().prop_map(Extreme::Nudge),
    ]
}

/// Any one mutation.
pub fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        4 => (spot(), 0u8..8).prop_map(|(at, bit)| Mutation::FlipBit { at, bit }),
        2 => (spot(), prop::collection::vec(any::<u8>(), 1..64))
            .prop_map(|(at, bytes)| Mutation::Overwrite { at, bytes }),
        2 => (spot(), 1u8..=16).prop_map(|(at, words)| Mutation::ZeroWords { at, words }),
        2 => (spot(), spot(), 1u16..2048, any::<bool>())
            .prop_map(|(from, to, len, slots)| Mutation::Copy { from, to, len, slots }),
        1 => any::<Index>().prop_map(|to| Mutation::Truncate { to }),
        1 => prop::collection::vec(any::<u8>(), 1..4096)
            .prop_map(|bytes| Mutation::Extend { bytes }),
        4 => (any::<Index>(), extreme())
            .prop_map(|(field, value)| Mutation::Field { field, value }),
    ]
}

/// One to four mutations, applied in order.
pub fn mutations() -> impl Strategy<Value = Vec<Mutation>> {
    prop::collection::vec(mutation(), 1..5)
}

impl Mutation {
    pub fn apply(&self, bytes: &mut Vec<u8>) {
        let len = bytes.len();
        match self {
            Mutation::FlipBit { at, bit } => {
                if let Some(i) = at.offset(len) {
                    bytes[i] ^= 1 << bit;
                }
            }
            Mutation::Overwrite { at, bytes: new } => {
                if let Some(i) = at.offset(len) {
                    let end = (i + new.len()).min(len);
                    bytes[i..end].copy_from_slice(&new[..end - i]);
                }
            }
            Mutation::ZeroWords { at, words } => {
                if let Some(i) = at.offset(len) {
                    let start = i & !7;
                    let end = (start + 8 * *words as usize).min(len);
                    bytes[start..end].fill(0);
                }
            }
            Mutation::Copy {
                from,
                to,
                len: n,
                slots,
            } => copy(bytes, from, to, *n as usize, *slots),
            Mutation::Truncate { to } => bytes.truncate(to.index(len + 1)),
            Mutation::Extend { bytes: garbage } => bytes.extend_from_slice(garbage),
            Mutation::Field { field, value } => {
                let fields = &Pristine::get().fields;
                let (at, width) = fields[field.index(fields.len())];
                set_field(bytes, at as usize, width, value);
            }
        }
    }
}

/// Sets the little-endian field of `width` bytes at `at`, if the file still reaches it.
pub fn set_field(bytes: &mut [u8], at: usize, width: usize, value: &Extreme) {
    let file_len = bytes.len();
    let Some(field) = bytes.get_mut(at..at + width) else {
        return;
    };
    let mut current = [0u8; 8];
    current[..width].copy_from_slice(field);
    let value = value.resolve(u64::from_le_bytes(current), file_len);
    field.copy_from_slice(&value.to_le_bytes()[..width]);
}

/// Copies a range within the file; with `slots`, whole slots to a slot boundary, so that a
/// record moves intact to another position or lane.
fn copy(bytes: &mut [u8], from: &Spot, to: &Spot, len: usize, slots: bool) {
    let (Some(mut src), Some(mut dst)) = (from.offset(bytes.len()), to.offset(bytes.len())) else {
        return;
    };
    let mut len = len;
    if slots {
        // Slots start at multiples of their size: lanes are page aligned, their control
        // blocks two slots long.
        let align = |at: usize| at - at % SLOT_SIZE as usize;
        (src, dst, len) = (
            align(src),
            align(dst),
            len.next_multiple_of(SLOT_SIZE as usize),
        );
    }
    let len = len.min(bytes.len() - src).min(bytes.len() - dst);
    bytes.copy_within(src..src + len, dst);
}

// ---------------------------------------------------------------------------------------------
// The checks

/// What became of one damaged file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Refused, with the error's kind.
    Refused(&'static str),
    /// Replayed; `intact` when every input of the pristine replay is still there.
    Replayed { inputs: usize, intact: bool },
}

fn error_kind(error: &ReplayError) -> &'static str {
    match error {
        ReplayError::Open(OpenError::Io { .. }) => "cannot read",
        ReplayError::Open(OpenError::Format { .. }) => "bad format",
        ReplayError::Open(OpenError::NotReady { .. }) => "not ready",
        ReplayError::WrongMachine { .. } => "wrong machine",
        ReplayError::NoBase { .. } => "nothing to replay from",
        ReplayError::BadCheckpoint { .. } => "checkpoint does not decode",
        ReplayError::BadInput { .. } => "input does not decode",
    }
}

/// Writes `bytes` to `path`, replays it, and checks everything the replay says (panicking on
/// any violation), including how much memory the replay took. Returns the outcome and that
/// peak.
pub fn check(bytes: &[u8], path: &Path) -> (Outcome, usize) {
    std::fs::write(path, bytes).expect("write the damaged file");
    let (outcome, peak) = alloc_count::peak_during(|| replay_and_check(path));
    let allowed = match outcome {
        Outcome::Refused(_) => bytes.len() + ALLOWED_FIXED,
        Outcome::Replayed { .. } => {
            ALLOWED_PER_FILE_BYTE * bytes.len() + SNAPSHOT_BUDGET + ALLOWED_FIXED
        }
    };
    assert!(
        peak <= allowed,
        "a replay of a {}-byte file allocated {peak} bytes (allowed {allowed}): {outcome:?}",
        bytes.len()
    );
    (outcome, peak)
}

fn replay_and_check(path: &Path) -> Outcome {
    match History::<Tiny>::open_with(path, &options()) {
        Err(error) => {
            let text = error.to_string();
            assert!(
                text.contains(&path.display().to_string()),
                "the refusal does not name the file: {text}"
            );
            Outcome::Refused(error_kind(&error))
        }
        Ok(mut history) => {
            check_history(&mut history);
            let intact = history.len() == Pristine::get().replayed_len;
            Outcome::Replayed {
                inputs: history.len(),
                intact,
            }
        }
    }
}

/// A replay of a damaged file must hold only what was recorded: inputs recorded under those
/// numbers, consecutive from a recorded base state, and the states, diffs and last changes that
/// they give. The hashes recorded at checkpoints must then all match: random damage cannot
/// forge a checksummed record or a hashed checkpoint, so a mismatch would be the replayer's.
fn check_history(history: &mut History<Tiny>) {
    let pristine = Pristine::get();
    let base = history.base_seq();
    assert!(base <= RECORDED_INPUTS, "base checkpoint at input {base}");
    assert!(
        *history.base_state() == pristine.states[base as usize],
        "the base state at {base} was never recorded"
    );
    for (index, event) in history.inputs().enumerate() {
        let seq = base + index as u64;
        assert_eq!(event.seq, seq, "the input at position {index}");
        let recorded = pristine.inputs.get(seq as usize);
        assert!(
            recorded == Some(&event.input),
            "input {seq} was not recorded as {:?}",
            event.input
        );
    }
    let verification = history.verification();
    assert!(
        verification.passed(),
        "recorded inputs from a recorded base diverged: {verification:?}"
    );
    assert!(
        history.snapshot_bytes() <= SNAPSHOT_BUDGET,
        "snapshots over budget"
    );
    let len = history.len();
    for index in [0, len / 3, len / 2, len.saturating_sub(1)] {
        check_position(history, index);
    }
    assert!(history.state_after(len).is_none(), "a state after the end");
    assert!(history.diff(len, 8).is_none(), "a diff after the end");
}

/// The state after the input at `index`, what it changed, and the last changes before it.
fn check_position(history: &mut History<Tiny>, index: usize) {
    if index >= history.len() {
        return;
    }
    let pristine = Pristine::get();
    let applied = history.base_seq() as usize + index + 1;
    let state = history.state_after(index).expect("a retained position");
    assert!(
        *state == pristine.states[applied],
        "the state after input {}",
        applied - 1
    );
    let count = TreePath(vec![Segment::Key("count".into())]);
    let changes = history.diff(index, 8).expect("a retained position");
    let counted = changes
        .iter()
        .find(|c| c.path == count)
        .expect("every input changes the count");
    let counts = (counted.before.as_ref(), counted.after.as_ref());
    let (before, after) = (Value::from(applied as u64 - 1), Value::from(applied as u64));
    assert_eq!(
        counts,
        (Some(&before), Some(&after)),
        "what input {} changed",
        applied - 1
    );
    assert_eq!(history.last_change(&count, index), Some(index));
    for (field, changes) in [("odd", is_odd as fn(&[u8]) -> bool), ("rare", is_rare)] {
        let path = TreePath(vec![Segment::Key(field.into())]);
        let expected = (0..=index)
            .rev()
            .find(|&i| changes(&history.input(i).expect("in range").input));
        assert_eq!(
            history.last_change(&path, index),
            expected,
            "last change of {field}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// The loop

/// Outcomes of a run, by kind.
#[derive(Debug, Default)]
pub struct Stats {
    /// Damaged files checked.
    pub iterations: u64,
    /// Refusals, by kind.
    pub refused: BTreeMap<&'static str, u64>,
    /// Damaged files replayed.
    pub replayed: u64,
    /// Replays that lost inputs to the damage.
    pub replayed_partly: u64,
    /// The most memory one replay took.
    pub peak_bytes: usize,
}

impl Stats {
    fn add(&mut self, (outcome, peak): (Outcome, usize)) {
        self.iterations += 1;
        self.peak_bytes = self.peak_bytes.max(peak);
        match outcome {
            Outcome::Refused(kind) => *self.refused.entry(kind).or_default() += 1,
            Outcome::Replayed { intact, .. } => {
                self.replayed += 1;
                self.replayed_partly += u64::from(!intact);
            }
        }
    }
}

/// The mutations of iteration `iteration` of the run seeded `seed`.
pub fn mutations_for(seed: u64, iteration: u64) -> Vec<Mutation> {
    let mut key = [0u8; 32];
    key[..8].copy_from_slice(&seed.to_le_bytes());
    key[8..16].copy_from_slice(&iteration.to_le_bytes());
    let rng = TestRng::from_seed(RngAlgorithm::ChaCha, &key);
    let mut runner = TestRunner::new_with_rng(ProptestConfig::default(), rng);
    mutations()
        .new_tree(&mut runner)
        .expect("mutations always generate")
        .current()
}

/// Runs `iterations` iterations (or forever) from `first`, reporting every `report_every`.
pub fn run(seed: u64, iterations: Range<u64>, report_every: u64, dir: &Path) -> Stats {
    let pristine = Pristine::get();
    let path = dir.join("damaged.ring");
    let mut stats = Stats::default();
    let started = Instant::now();
    for iteration in iterations {
        let mutations = mutations_for(seed, iteration);
        let mut bytes = pristine.bytes.clone();
        for mutation in &mutations {
            mutation.apply(&mut bytes);
        }
        set_context(seed, iteration, &mutations);
        let _watchdog = Watchdog::arm(HANG_LIMIT);
        stats.add(check(&bytes, &path));
        if report_every > 0 && stats.iterations % report_every == 0 {
            eprintln!(
                "{:>9} iterations in {:.1?}: {stats:?}",
                stats.iterations,
                started.elapsed()
            );
        }
    }
    clear_context();
    stats
}

// ---------------------------------------------------------------------------------------------
// Reporting failures, the watchdog, counting allocations: shared with the other fuzz program

#[path = "support/fuzz.rs"]
mod support;
pub use support::{alloc_count, clear_context, install_panic_hook, Watchdog};

fn set_context(seed: u64, iteration: u64, mutations: &[Mutation]) {
    support::set_context("fuzz_replay", seed, iteration, &mutations);
}

/// Names the case being checked (by a test that does not come from a seed).
pub fn set_case(case: impl std::fmt::Debug) {
    support::set_case("fuzz_replay", case);
}

// ---------------------------------------------------------------------------------------------
// The program

fn main() {
    let args = support::parse_args().unwrap_or_else(|e| {
        eprintln!("fuzz_replay: {e}\nusage: fuzz_replay [--seed S] [--iterations N] [--first I]");
        std::process::exit(2)
    });
    install_panic_hook(true);
    let end = args
        .iterations
        .map_or(u64::MAX, |n| args.first.saturating_add(n));
    let dir = tempfile::tempdir().expect("tempdir");
    eprintln!(
        "fuzz_replay: seed {}, iterations {}..{end}",
        args.seed, args.first
    );
    let started = Instant::now();
    let stats = run(args.seed, args.first..end, 10_000, dir.path());
    println!(
        "{} iterations in {:.1?}, no failure: {stats:?}",
        stats.iterations,
        started.elapsed()
    );
}
