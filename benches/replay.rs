//! Costs of the replayer, each group measured against an in-run baseline. The throughput target
//! is a ratio to its baseline; the history targets are absolute (an interactive user waits on
//! them), with the baseline shown for scale.
//!
//! | group               | benchmark          | baseline         | target                   |
//! |---------------------|--------------------|------------------|--------------------------|
//! | `replay_throughput` | `replay`           | `apply_decoded`  | at most 1.5x             |
//! | `replay_throughput` | `open_and_replay`  | `apply_decoded`  | none: what opening adds  |
//! | `history_10M`       | `random_position`  | `apply_interval` | median under 5 ms        |
//! | `history_10M`       | `step_back_1000`   | `apply_interval` | under 1 ms a step        |
//! | `open_1GiB`         | `open_and_recover` | `map_and_sum`    | at least 1 GB/s          |
//!
//! The ratio target is judged in `replay_ratios/replay_vs_apply_decoded`, where every sample
//! times `apply_decoded` and `replay` back to back and its value is their ratio (see
//! `common::paired`): this shared machine drifts more between criterion's separate windows
//! than the margin. `replay_throughput` keeps both figures on their own, for scale.
//!
//! The machine is a small account map: 256 balances and a few counters; its input is a 32-byte
//! plain-old-data transfer (deposit, transfer with a fee, or withdrawal) on the zero-copy codec
//! path, generated from a seeded RNG.
//!
//! - `replay_throughput/apply_decoded` applies 1,000,000 already-decoded inputs to a fresh
//!   machine in a loop: the machine's own cost, the floor of any replay. Its setup recovers and
//!   decodes them afresh each time, as `replay`'s setup recovers the payloads it reads: looping
//!   over one vector of inputs kept from run to run would time applying inputs that stay in the
//!   cache against a replay that never can (2.1x apart, against 1.45x so, in two runs here).
//! - `replay_throughput/replay` is `History::replay` of a ring holding the same 1,000,000 inputs,
//!   given the opened `Ring` and its `Recovered` (recovered outside the timing): decoding the
//!   inputs, applying them, taking snapshots and checking the recorded hashes.
//! - `replay_throughput/open_and_replay` is `History::open_with` of that file: the above plus
//!   opening, validating and recovering every slot.
//! - `history_10M` is a `History` of 10,000,000 inputs (default snapshot budget), built once
//!   outside the timing. `apply_interval` applies `snapshot_interval()` decoded inputs to a copy
//!   of the base state: the inputs that reaching a position re-applies at most.
//!   `random_position` is `state_after` of a position drawn from a seeded RNG.
//!   `step_back_1000` starts at the last position and steps back one input at a time, 1,000
//!   times; the time shown is per step (returning to the end between walks is not timed).
//! - `open_1GiB` is a ring whose 1 GiB input lane has wrapped, so every one of its 16,777,216
//!   slots holds a record. `open_and_recover` is `Ring::open` plus `Recovered::of` (every slot
//!   read and checksummed); `map_and_sum` maps the same file and sums it word by word. Both map
//!   the file afresh each iteration; throughput is the file's size.
//!
//! Ring files live in a fresh temporary directory, on tmpfs where there is one (the recorder's
//! default location), and are removed afterwards. Every group builds its ring files (about 1 GiB
//! each for the last two) even when a filter skips its benchmarks; the whole run takes a few
//! minutes and about 3.5 GiB of memory (ring files included) at its peak.
#![allow(unsafe_code)]

mod common;

use common::accounts::{Accounts, Traffic, Transfer};
use common::paired::{self, Ratio};
use common::ring_dir;
use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, SamplingMode, Throughput};
use flightrec_recorder::{Builder, Machine, Tick};
use flightrec_replayer::{History, Recovered, ReplayOptions, Ring};
use rand::{Rng, SeedableRng};
use rand_pcg::Pcg64Mcg;

/// Inputs replayed by `replay_throughput`.
const THROUGHPUT_INPUTS: usize = 1_000_000;
/// Inputs in the history of `history_10M`.
const HISTORY_INPUTS: u64 = 10_000_000;
/// Steps back from the end in one walk of `step_back_1000`.
const STEPS_BACK: u64 = 1_000;
/// Bytes of the input lane of `open_1GiB`.
const OPEN_LANE_BYTES: u64 = 1 << 30;
/// Bytes of one slot, as in flightrec: every input here fills exactly one.
const SLOT_BYTES: u64 = 64;
/// Seeds the traffic and the positions drawn by `random_position`.
const SEED: u64 = 0x5eed_4e91;

/// Records `count` inputs from `next` into a new ring file in `dir` with an input lane of
/// `input_lane_bytes`, checkpointing only when the lane forces it (and at the start and the
/// end), and returns the file's path.
fn record(
    dir: &Path,
    name: &str,
    input_lane_bytes: u64,
    count: u64,
    mut next: impl FnMut() -> Transfer,
) -> PathBuf {
    let mut recorded = Builder::new()
        .path(dir.join(format!("{name}.ring")))
        .input_lane_bytes(input_lane_bytes)
        .trace_lanes(1)
        .trace_lane_bytes(4096)
        .state_capacity(64 << 10)
        .checkpoint_every_inputs(u32::MAX as u64)
        .checkpoint_every(Duration::from_secs(24 * 3600))
        .crash_capture(false)
        .counters(false)
        .build(Accounts::new())
        .expect("create a ring file");
    for _ in 0..count {
        recorded.apply(&next());
    }
    recorded.finish()
}

/// The tick a replay hands the machine for input `seq` (any value will do for the baseline).
fn tick(seq: u64) -> Tick {
    Tick {
        seq,
        unix_ns: 1_700_000_000_000_000_000 + seq * 1_000,
    }
}

/// The ring of `replay_throughput`: 1,000,000 inputs, checked to replay to what a plain loop
/// over the same inputs computes. Returns its path and the opened ring.
fn throughput_ring(dir: &Path) -> (PathBuf, Ring) {
    let mut traffic = Traffic::new(SEED);
    let inputs: Vec<Transfer> = (0..THROUGHPUT_INPUTS).map(|_| traffic.next()).collect();
    let mut replayed = inputs.iter();
    let path = record(
        dir,
        "throughput",
        2 * THROUGHPUT_INPUTS as u64 * SLOT_BYTES,
        THROUGHPUT_INPUTS as u64,
        || *replayed.next().expect("one input per apply"),
    );
    let ring = Ring::open(&path).expect("open the ring file");

    // The replay must rebuild what the plain loop computes.
    let mut expected = Accounts::new();
    for (seq, input) in inputs.iter().enumerate() {
        expected.apply(input, tick(seq as u64));
    }
    let mut history =
        History::<Accounts>::replay(&ring, Recovered::of(&ring), &ReplayOptions::default())
            .expect("replay the ring file");
    assert_eq!(history.len(), THROUGHPUT_INPUTS);
    assert!(history.verification().passed(), "the replay diverged");
    let last = history
        .state_after(THROUGHPUT_INPUTS - 1)
        .expect("a last state");
    assert_eq!(last.balances, expected.balances);
    assert_eq!(last.applied, expected.applied);
    assert_eq!(last.rejected, expected.rejected);
    (path, ring)
}

/// The baseline: applies already-decoded inputs to a fresh machine.
fn apply_all(inputs: Vec<Transfer>) -> (Accounts, Vec<Transfer>) {
    let mut machine = Accounts::new();
    for (seq, input) in inputs.iter().enumerate() {
        machine.apply(input, tick(seq as u64));
    }
    (machine, inputs)
}

fn replay(ring: &Ring, recovered: Recovered) -> History<Accounts> {
    History::<Accounts>::replay(ring, recovered, &ReplayOptions::default())
        .expect("replay the ring")
}

fn replay_throughput(c: &mut Criterion) {
    let dir = ring_dir();
    let (path, ring) = throughput_ring(dir.path());
    let mut group = c.benchmark_group("replay_throughput");
    group.throughput(Throughput::Elements(THROUGHPUT_INPUTS as u64));
    group.sampling_mode(SamplingMode::Flat);
    group.bench_function("apply_decoded", |b| {
        b.iter_batched(|| decoded_inputs(&ring), apply_all, BatchSize::PerIteration)
    });
    group.bench_function("replay", |b| {
        b.iter_batched(
            || Recovered::of(&ring),
            |recovered| replay(&ring, recovered),
            BatchSize::PerIteration,
        )
    });
    group.bench_function("open_and_replay", |b| {
        b.iter_with_large_drop(|| {
            History::<Accounts>::open_with(&path, &ReplayOptions::default())
                .expect("open and replay the ring")
        })
    });
    group.finish();
}

/// `replay` against `apply_decoded`, paired within every sample (see `common::paired`).
fn replay_ratios(c: &mut Criterion<Ratio>) {
    let dir = ring_dir();
    let (_path, ring) = throughput_ring(dir.path());
    let mut group = c.benchmark_group("replay_ratios");
    group.sampling_mode(SamplingMode::Flat);
    paired::bench(
        &mut group,
        "replay_vs_apply_decoded",
        |iters| paired::timed_each(iters, || decoded_inputs(&ring), apply_all),
        |iters| paired::timed_each(iters, || Recovered::of(&ring), |r| replay(&ring, r)),
    );
    group.finish();
}

fn history_10m(c: &mut Criterion) {
    let dir = ring_dir();
    let started = Instant::now();
    let mut traffic = Traffic::new(SEED ^ 1);
    let path = record(dir.path(), "history", 1 << 30, HISTORY_INPUTS, || {
        traffic.next()
    });
    let recorded_in = started.elapsed();
    let started = Instant::now();
    let mut history = History::<Accounts>::open_with(&path, &ReplayOptions::default())
        .expect("open and replay 10M inputs");
    let opened_in = started.elapsed();
    let len = history.len();
    let interval = history.snapshot_interval();
    assert_eq!(len as u64, HISTORY_INPUTS);
    assert_eq!(history.base_seq(), 0);
    assert!(history.verification().passed(), "the replay diverged");
    eprintln!(
        "history_10M: recorded {HISTORY_INPUTS} inputs in {recorded_in:.2?}; \
         History::open_with took {opened_in:.2?}; snapshot interval {interval} inputs"
    );

    let mut group = c.benchmark_group("history_10M");
    group.bench_function("apply_interval", |b| {
        let base = history.base_state();
        let inputs: Vec<_> = history.inputs().take(interval).collect();
        b.iter_batched_ref(
            || base.clone(),
            |machine| {
                for event in &inputs {
                    let tick = Tick {
                        seq: event.seq,
                        unix_ns: event.unix_ns,
                    };
                    machine.apply(&event.input, tick);
                }
                black_box(&*machine);
            },
            BatchSize::SmallInput,
        )
    });
    let mut rng = Pcg64Mcg::seed_from_u64(SEED);
    group.bench_function("random_position", |b| {
        b.iter(|| {
            let index = rng.gen_range(0..len);
            black_box(history.state_after(index).map(|m| m.applied))
        })
    });
    group.bench_function("step_back_1000", |b| {
        b.iter_custom(|iters| {
            let walks = iters.div_ceil(STEPS_BACK);
            let mut elapsed = Duration::ZERO;
            for _ in 0..walks {
                black_box(history.state_after(len - 1).map(|m| m.applied));
                let start = Instant::now();
                for back in 1..=STEPS_BACK as usize {
                    black_box(history.state_after(len - 1 - back).map(|m| m.applied));
                }
                elapsed += start.elapsed();
            }
            // Per step, scaled to the `iters` steps criterion asked for.
            elapsed.mul_f64(iters as f64 / (walks * STEPS_BACK) as f64)
        })
    });
    group.finish();
}

/// The inputs of `ring`, recovered and decoded as a replay's setup leaves them: just written, in
/// the same state of the caches as the payloads a replay reads.
fn decoded_inputs(ring: &Ring) -> Vec<Transfer> {
    Recovered::of(ring)
        .inputs()
        .iter()
        .map(|record| Accounts::decode_input(record.payload).expect("a recorded input"))
        .collect()
}

/// Maps `path` and sums it word by word: the floor of reading every byte of a ring file.
fn map_and_sum(path: &Path) -> u64 {
    let file = std::fs::File::open(path).expect("open the ring file");
    // SAFETY: the ring file was written by this benchmark, whose recorder has finished; nothing
    // changes or truncates it while it is mapped.
    let map = unsafe { memmap2::Mmap::map(&file) }.expect("map the ring file");
    let words: &[u64] = bytemuck::cast_slice(&map[..map.len() / 8 * 8]);
    words.iter().fold(0u64, |sum, &word| sum.wrapping_add(word))
}

fn open_1gib(c: &mut Criterion) {
    let dir = ring_dir();
    let slots = OPEN_LANE_BYTES / SLOT_BYTES;
    let mut traffic = Traffic::new(SEED ^ 2);
    // Half as many again as the lane holds: it wraps, and every slot holds a record.
    let path = record(dir.path(), "open", OPEN_LANE_BYTES, slots * 3 / 2, || {
        traffic.next()
    });
    let file_bytes = std::fs::metadata(&path).expect("stat the ring file").len();
    {
        let ring = Ring::open(&path).expect("open the ring file");
        let recovered = Recovered::of(&ring);
        let inputs = recovered.inputs();
        assert_eq!(inputs.retained(), slots, "every slot holds a record");
        assert!(inputs.torn.is_empty() && inputs.corrupt.is_empty() && inputs.gaps.is_empty());
    }

    let mut group = c.benchmark_group("open_1GiB");
    group.throughput(Throughput::Bytes(file_bytes));
    group.sampling_mode(SamplingMode::Flat);
    group.measurement_time(Duration::from_secs(5));
    group.bench_function("map_and_sum", |b| b.iter(|| map_and_sum(&path)));
    group.bench_function("open_and_recover", |b| {
        b.iter_with_large_drop(|| {
            let ring = Ring::open(&path).expect("open the ring file");
            let recovered = Recovered::of(&ring);
            (recovered, ring)
        })
    });
    group.finish();
}

fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .sample_size(10)
}

criterion_group! {
    name = benches;
    config = config();
    targets = replay_throughput, history_10m, open_1gib
}
criterion_group! {
    name = ratios;
    config = config().with_measurement(Ratio);
    targets = replay_ratios
}
criterion_main!(benches, ratios);
