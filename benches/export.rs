//! Costs of the export file (`.flightrec`), each group measured against an in-run baseline. The
//! throughput target is a ratio to its baseline; the jump target is absolute (a user waits on
//! it), with the baseline shown for scale.
//!
//! | group               | benchmark          | baseline         | target                        |
//! |---------------------|--------------------|------------------|-------------------------------|
//! | `export_throughput` | `writer`           | `lz4_same_bytes` | at least half its speed       |
//! | `export_throughput` | `export_history`   | `lz4_same_bytes` | none: what replay + diff add  |
//! | `export_10M`        | `open_and_jump`    | `open`           | median under 20 ms            |
//! | `export_10M`        | `jump`             | `open`           | none: the jump without `open` |
//! | `export_big_state`  | `flatten_against`  | `flatten`        | at most 1.25x its time        |
//! | `export_big_state`  | `diff`             | `flatten`        | at most 0.05x its time        |
//! | (setup, printed)    | export size        | ring file size   | none: printed, not timed      |
//!
//! The two ratio targets are judged in `export_ratios` (`writer_vs_lz4`, at most 2: at least
//! half LZ4's speed; `flatten_against_vs_flatten`, at most 1.25), where every sample times the
//! baseline and the target back to back and its value is their ratio (see `common::paired`);
//! the groups above keep the figures on their own, for scale.
//!
//! The machine is `benches/replay.rs`'s: 256 account balances and a few counters, with a 32-byte
//! plain-old-data transfer as its input, generated from a seeded RNG. An input's tree is five
//! numbers; its diff changes two to five fields.
//!
//! - `export_throughput` is a history of 100,000 inputs, recorded and replayed outside the timing
//!   (a keyframe every 1,024 inputs, raw input bytes kept: the defaults). Every benchmark's
//!   throughput is the same figure: the bytes of the chunks' Cap'n Proto messages before
//!   compression (the sum of their `raw_len`), read back from a first export.
//!   - `lz4_same_bytes` is `lz4_flex::compress_prepend_size` of those bytes, concatenated: the
//!     floor of any writer that compresses what it writes.
//!   - `writer` is `ExportWriter` fed every input (tree, summary, raw bytes), keyframe (as a
//!     tree), diff (as `Change`s) and checkpoint already prepared, through `finish`: encoding
//!     the JSON texts and messages, compressing, checksumming, writing the file to tmpfs and
//!     syncing it. The diffs are prepared by comparing the machine's fields, not by diffing
//!     trees; its chunks decode to exactly `export_history`'s bytes (checked at setup).
//!   - `export_history` is `export_history` of the `History`: the above plus stepping through
//!     every state, flattening each, diffing it with the one before, and building the input
//!     trees, on two threads.
//!   - Last runs (medians, one shared 2-core machine, whose load moves the baseline by up to 2x
//!     between runs): `lz4_same_bytes` 154–162 ms, `writer` 252–294 ms, `export_history`
//!     1.10–1.17 s; paired, the writer ran at 0.55–0.57x LZ4's speed (0.51–0.52x before it
//!     compressed each message where it was built; 0.27x before it reused its buffers).
//! - The size of each export beside its ring file is printed at setup: the ring file's size
//!   (the input lane sized to the next power of two of slots that holds every input), and the
//!   64-byte slots its inputs fill. Last run (format 2): 100,000 inputs, export 1.77x the ring
//!   file (151 B/input vs 85); 10M inputs, 1.35x (145 B/input vs 107).
//! - `export_10M` is an export of 10,000,000 inputs (1 GiB input lane), recorded and replayed
//!   once outside the timing, then written as `writer` writes (inputs prepared on one thread in
//!   batches, written on another): `export_history` of 10M inputs takes minutes on two cores,
//!   this about 65 s (printed). Its chunks are `export_history`'s (checked on the
//!   100,000). `open_and_jump` is `Export::open` of the file, then `state_tree` and `input` of
//!   a position drawn from a seeded RNG: one keyframe, at most 1,023 diffs and one event chunk
//!   decoded. `open` is `Export::open` alone (header, trailer and the whole footer checked).
//!   `jump` is `state_tree` + `input` at a random position on one export opened once (its cache
//!   of the last chunks rarely helps at random positions).
//!
//! - `export_big_state` is what exporting costs per input when the state is large: the demo's
//!   shape, 65,536 accounts of two numbers each (about 330,000 tokens flattened). `flatten` is
//!   `Flat::refill` of the state into reused memory. `flatten_against` is
//!   `Flat::refill_against` the state before it (one account and a counter differ, as an input
//!   of the demo changes them), which an export does once per input on its replaying thread.
//!   `diff` is `tree_diff` of the state before against that flat, which the export's writing
//!   thread does. Last run (medians, two runs each, shared machine): `flatten` 1.11 and 1.20 ms,
//!   `flatten_against` 0.89 and 1.31 ms, `diff` 0.72 and 0.98 µs. Before the flats noted what
//!   differed, the same diff compared the tokens one by one and stepped over every account
//!   before the changed one: 1.48 and 1.34 ms, beside `flatten` at 1.07 and 0.93 ms.
//!
//! Files live in a fresh temporary directory, on tmpfs where there is one, and are removed
//! afterwards. The run takes about two and a half minutes and about 3 GiB of memory (files
//! included) at its peak.

mod common;

use common::accounts::{Accounts, Traffic};
use common::paired::{self, Ratio};
use common::ring_dir;
use std::cell::RefCell;
use std::hint::black_box;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, SamplingMode, Throughput};
use flightrec_recorder::{Builder, Machine};
use flightrec_replayer::export::format::{self, Frame, Trailer, FRAME_HEADER_LEN, HEADER_LEN};
use flightrec_replayer::export::{
    export_history, CheckpointEntry, Export, ExportOptions, ExportSummary, ExportWriter,
    HistoryExportOptions, InputEntry, Metadata, DEFAULT_KEYFRAME_EVERY,
};
use flightrec_replayer::outline::{tree_diff, Flat};
use flightrec_replayer::tree::{self, Change, Path as TreePath, Segment, Value};
use flightrec_replayer::{recover_checkpoints, History, ReplayOptions, Ring};
use rand::{Rng, SeedableRng};
use rand_pcg::Pcg64Mcg;

/// Inputs exported by `export_throughput`.
const THROUGHPUT_INPUTS: u64 = 100_000;
/// Inputs in the export of `export_10M`.
const BIG_INPUTS: u64 = 10_000_000;
/// Bytes of one slot, as in flightrec: every input here fills exactly one.
const SLOT_BYTES: u64 = 64;
/// Seeds the traffic and the positions drawn by the jumps.
const SEED: u64 = 0x5eed_e4b0;

/// Records `count` seeded inputs into a new ring file `NAME.ring` in `dir`, its input lane the
/// smallest power of two of slots that holds them all, checkpointing only at the start and the
/// end; returns the file's path.
fn record(dir: &Path, name: &str, count: u64, seed: u64) -> PathBuf {
    let mut traffic = Traffic::new(seed);
    let mut recorded = Builder::new()
        .path(dir.join(format!("{name}.ring")))
        .input_lane_bytes(count.next_power_of_two() * SLOT_BYTES)
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
        recorded.apply(&traffic.next());
    }
    recorded.finish()
}

/// Records `count` inputs and opens the ring file as a `History` (which must verify).
fn history_of(dir: &Path, name: &str, count: u64, seed: u64) -> History<Accounts> {
    let path = record(dir, name, count, seed);
    let history =
        History::<Accounts>::open_with(&path, &ReplayOptions::default()).expect("replay the ring");
    assert_eq!(history.len() as u64, count);
    assert!(history.verification().passed(), "the replay diverged");
    history
}

/// Options that let every iteration write over the previous one's file.
fn overwriting() -> HistoryExportOptions {
    HistoryExportOptions {
        writer: ExportOptions {
            overwrite: true,
            ..ExportOptions::default()
        },
        ..HistoryExportOptions::default()
    }
}

/// Exports `history` to `out`.
fn export(history: &mut History<Accounts>, out: &Path) -> ExportSummary {
    export_history(history, out, &overwriting(), &mut |_, _| {}).expect("export the history")
}

/// Every chunk of an export's bytes, in file order: its frame header and its LZ4 block.
fn chunks(bytes: &[u8]) -> Vec<(Frame, &[u8])> {
    let trailer = Trailer::decode(&bytes[bytes.len() - format::TRAILER_LEN as usize..])
        .expect("an export's trailer");
    let (mut at, end) = (HEADER_LEN as usize, trailer.footer_offset as usize);
    let mut out = Vec::new();
    while at < end {
        let frame = Frame::decode(&bytes[at..at + FRAME_HEADER_LEN as usize]);
        let start = at + FRAME_HEADER_LEN as usize;
        out.push((frame, &bytes[start..start + frame.stored_len as usize]));
        at = start + format::pad8(frame.stored_len as u64).expect("a small block") as usize;
    }
    assert_eq!(at, end, "the chunks end where the footer starts");
    out
}

/// Every chunk's message of the export at `path`, decompressed and concatenated in file order:
/// the bytes its writer compressed.
fn chunk_messages(path: &Path) -> Vec<u8> {
    let bytes = std::fs::read(path).expect("read the export");
    let mut messages = Vec::new();
    for (frame, block) in chunks(&bytes) {
        let message = lz4_flex::block::decompress(block, frame.raw_len as usize)
            .expect("a chunk decompresses");
        assert_eq!(message.len(), frame.raw_len as usize);
        messages.extend_from_slice(&message);
    }
    messages
}

/// Prints the size of the export at `path` beside its ring file's.
fn print_sizes(group: &str, path: &Path, inputs: u64, ring: &Path) {
    let bytes = std::fs::read(path).expect("read the export");
    let chunks = chunks(&bytes);
    let raw: u64 = chunks.iter().map(|(f, _)| u64::from(f.raw_len)).sum();
    let export_bytes = bytes.len() as u64;
    let ring_bytes = std::fs::metadata(ring).expect("stat the ring").len();
    let slot_bytes = inputs * SLOT_BYTES;
    let per_input = |bytes: u64| bytes as f64 / inputs as f64;
    eprintln!(
        "{group}: export of {inputs} inputs, {} chunks: {export_bytes} bytes ({:.1} B/input; \
         {raw} bytes before LZ4, {:.1} B/input); ring file {ring_bytes} bytes ({:.1} B/input; \
         its inputs' slots {slot_bytes} bytes); export / ring file = {:.3}, export / slots = \
         {:.3}",
        chunks.len(),
        per_input(export_bytes),
        per_input(raw),
        per_input(ring_bytes),
        export_bytes as f64 / ring_bytes as f64,
        export_bytes as f64 / slot_bytes as f64,
    );
}

/// One input and what an export stores with it: what `export_history` computes before it
/// writes.
struct Position {
    seq: u64,
    unix_ns: u64,
    summary: String,
    tree: Value,
    raw: Vec<u8>,
    /// The state after it, whole, where a keyframe falls.
    keyframe: Option<Value>,
    /// What it changed (nothing is stored where it changed nothing).
    diff: Vec<Change>,
}

/// A top-level field of the state.
fn key(name: &str) -> TreePath {
    TreePath(vec![Segment::Key(name.to_owned())])
}

/// What `export_history` stores as the diff from `before` to `after`, in the same order
/// (`tree::diff`'s: the scalar fields in declaration order, then the balances that changed), but
/// found by comparing the fields instead of diffing flattened trees.
fn changes(before: &Accounts, after: &Accounts) -> Vec<Change> {
    let mut out = Vec::new();
    let scalars = [
        ("applied", before.applied, after.applied),
        ("rejected", before.rejected, after.rejected),
        ("fees", before.fees, after.fees),
        ("last_id", before.last_id, after.last_id),
        ("last_unix_ns", before.last_unix_ns, after.last_unix_ns),
    ];
    for (name, was, is) in scalars {
        if was != is {
            out.push(Change {
                path: key(name),
                before: Some(Value::from(was)),
                after: Some(Value::from(is)),
            });
        }
    }
    for (index, (was, is)) in before.balances.iter().zip(&after.balances).enumerate() {
        if was != is {
            out.push(Change {
                path: TreePath(vec![Segment::Key("balances".into()), Segment::Index(index)]),
                before: Some(Value::from(*was)),
                after: Some(Value::from(*is)),
            });
        }
    }
    out
}

/// Prepares the positions `range` of `history` as `export_history` would (a keyframe every
/// `DEFAULT_KEYFRAME_EVERY` inputs, raw bytes kept); `previous` is the state before the first,
/// and becomes the state after the last.
fn prepare(
    history: &mut History<Accounts>,
    range: Range<usize>,
    previous: &mut Accounts,
) -> Vec<Position> {
    range
        .map(|index| {
            let event = history.input(index).expect("an input");
            let tree = tree::tree_of(&event.input);
            let mut raw = Vec::new();
            Accounts::encode_input(&event.input, &mut raw).expect("encode an input");
            let state = history.state_after(index).expect("a state");
            let keyframe =
                (index as u64 % DEFAULT_KEYFRAME_EVERY == 0).then(|| tree::tree_of(state));
            let diff = changes(previous, state);
            previous.clone_from(state);
            Position {
                seq: event.seq,
                unix_ns: event.unix_ns,
                summary: tree::brief(&tree),
                tree,
                raw,
                keyframe,
                diff,
            }
        })
        .collect()
}

/// Appends `positions`, the first of which is `writer.len()`, in the order `export_history`
/// does: each input, then its keyframe, then its diff.
fn push_positions(writer: &mut ExportWriter, positions: &[Position]) {
    for p in positions {
        let position = writer
            .push_input(InputEntry {
                seq: p.seq,
                unix_ns: p.unix_ns,
                summary: &p.summary,
                tree: &p.tree,
                raw: &p.raw,
            })
            .expect("push an input");
        if let Some(state) = &p.keyframe {
            writer
                .push_keyframe(position, state)
                .expect("push a keyframe");
        }
        if !p.diff.is_empty() {
            writer.push_diff(position, &p.diff).expect("push a diff");
        }
    }
}

/// The recorded checkpoints of the ring file `history` was replayed from, as the export stores
/// them (`input_seq`, hash, time, state).
fn checkpoints_of(history: &History<Accounts>) -> Vec<(u64, u64, u64, Vec<u8>)> {
    let ring = Ring::open(history.path()).expect("open the ring");
    let clock = ring.header().clock;
    recover_checkpoints(&ring)
        .into_iter()
        .filter_map(Result::ok)
        .map(|c| {
            let h = c.header;
            (
                h.input_seq,
                h.state_hash,
                clock.to_unix_ns(h.ticks),
                c.state,
            )
        })
        .collect()
}

/// Starts an export to `out`, replacing any file there.
fn writer_to(out: &Path, base_seq: u64) -> ExportWriter {
    let metadata = Metadata {
        machine_name: Accounts::NAME.into(),
        machine_version: Accounts::VERSION,
        base_seq,
        keyframe_interval: DEFAULT_KEYFRAME_EVERY as u32,
        ..Metadata::default()
    };
    ExportWriter::create_with(out, metadata, overwriting().writer).expect("create the export")
}

/// Appends the checkpoints and finishes the export; returns its size.
fn finish(mut writer: ExportWriter, checkpoints: &[(u64, u64, u64, Vec<u8>)]) -> u64 {
    for (input_seq, hash, unix_ns, state) in checkpoints {
        writer
            .push_checkpoint(CheckpointEntry {
                input_seq: *input_seq,
                hash: *hash,
                unix_ns: *unix_ns,
                state,
            })
            .expect("push a checkpoint");
    }
    writer.finish().expect("finish the export")
}

/// Writes the export of `history` to `out` with `ExportWriter` directly: the inputs are
/// prepared on this thread (see [`prepare`]) in batches and written on another, as
/// `export_history` splits its work. Returns the file's size.
fn export_direct(history: &mut History<Accounts>, out: &Path) -> u64 {
    const BATCH: usize = 4096;
    let writer = writer_to(out, history.base_seq());
    let checkpoints = checkpoints_of(history);
    let (batches, to_write) = mpsc::sync_channel::<Vec<Position>>(4);
    std::thread::scope(|scope| {
        let writing = scope.spawn(move || {
            let mut writer = writer;
            for batch in to_write {
                push_positions(&mut writer, &batch);
            }
            finish(writer, &checkpoints)
        });
        let mut previous = history.base_state().clone();
        let len = history.len();
        for start in (0..len).step_by(BATCH) {
            let batch = prepare(history, start..len.min(start + BATCH), &mut previous);
            batches.send(batch).expect("the writing thread is alive");
        }
        drop(batches);
        writing.join().expect("the writing thread finished")
    })
}

/// What `export_throughput` measures: a history of 100,000 inputs, the Cap'n Proto bytes of its
/// export's chunks, and every input, keyframe and checkpoint prepared for an `ExportWriter`.
struct ThroughputRig {
    history: History<Accounts>,
    messages: Vec<u8>,
    positions: Vec<Position>,
    checkpoints: Vec<(u64, u64, u64, Vec<u8>)>,
    base_seq: u64,
    out: PathBuf,
}

impl ThroughputRig {
    /// Builds the rig in `dir`, checking that the prepared writer compresses exactly the bytes
    /// `export_history` does (and so does the 10M export's way of writing).
    fn create(dir: &Path, print: bool) -> ThroughputRig {
        let mut history = history_of(dir, "throughput", THROUGHPUT_INPUTS, SEED);
        let first = dir.join("first.flightrec");
        export(&mut history, &first);
        if print {
            print_sizes(
                "export_throughput",
                &first,
                THROUGHPUT_INPUTS,
                history.path(),
            );
        }
        let messages = chunk_messages(&first);
        let mut previous = history.base_state().clone();
        let len = history.len();
        let positions = prepare(&mut history, 0..len, &mut previous);
        let checkpoints = checkpoints_of(&history);
        let base_seq = history.base_seq();
        let mut rig = ThroughputRig {
            history,
            messages,
            positions,
            checkpoints,
            base_seq,
            out: dir.join("bench.flightrec"),
        };
        rig.write();
        assert!(
            chunk_messages(&rig.out) == rig.messages,
            "ExportWriter fed the prepared inputs compresses the same bytes as export_history"
        );
        export_direct(&mut rig.history, &rig.out);
        assert!(chunk_messages(&rig.out) == rig.messages);
        rig
    }

    /// The baseline: LZ4 of the chunks' bytes.
    fn lz4(&self) -> Vec<u8> {
        lz4_flex::compress_prepend_size(black_box(&self.messages))
    }

    /// `ExportWriter` fed the prepared inputs, through `finish`.
    fn write(&self) -> u64 {
        let mut writer = writer_to(&self.out, self.base_seq);
        push_positions(&mut writer, &self.positions);
        finish(writer, &self.checkpoints)
    }
}

fn export_throughput(c: &mut Criterion) {
    let dir = ring_dir();
    let mut rig = ThroughputRig::create(dir.path(), true);
    let mut group = c.benchmark_group("export_throughput");
    group.throughput(Throughput::Bytes(rig.messages.len() as u64));
    group.sampling_mode(SamplingMode::Flat);
    group.bench_function("lz4_same_bytes", |b| b.iter(|| rig.lz4()));
    group.bench_function("writer", |b| b.iter(|| rig.write()));
    rig.positions = Vec::new();
    group.bench_function("export_history", |b| {
        b.iter(|| export(&mut rig.history, &rig.out).bytes)
    });
    group.finish();
}

fn export_10m(c: &mut Criterion) {
    let dir = ring_dir();
    let started = Instant::now();
    let ring = record(dir.path(), "big", BIG_INPUTS, SEED ^ 1);
    let recorded_in = started.elapsed();
    let started = Instant::now();
    let mut history =
        History::<Accounts>::open_with(&ring, &ReplayOptions::default()).expect("replay 10M");
    assert_eq!(history.len() as u64, BIG_INPUTS);
    assert!(history.verification().passed(), "the replay diverged");
    let replayed_in = started.elapsed();
    let started = Instant::now();
    let path = dir.path().join("big.flightrec");
    export_direct(&mut history, &path);
    let exported_in = started.elapsed();
    let last_applied = history
        .state_after(history.len() - 1)
        .expect("the last state")
        .applied;
    drop(history);
    eprintln!(
        "export_10M: recorded {BIG_INPUTS} inputs in {recorded_in:.2?}, replayed them in \
         {replayed_in:.2?}, wrote the export in {exported_in:.2?}"
    );
    print_sizes("export_10M", &path, BIG_INPUTS, &ring);
    std::fs::remove_file(&ring).expect("remove the ring file");

    // Reaching a position rebuilds what the replay computed.
    let export = Export::open(&path).expect("open the export");
    assert_eq!(export.len(), BIG_INPUTS);
    let last = export.state_tree(BIG_INPUTS - 1).expect("the last state");
    assert_eq!(last["applied"], Value::from(last_applied));

    let mut group = c.benchmark_group("export_10M");
    group.bench_function("open", |b| {
        b.iter(|| Export::open(&path).expect("open the export"))
    });
    let mut rng = Pcg64Mcg::seed_from_u64(SEED);
    group.bench_function("open_and_jump", |b| {
        b.iter(|| {
            let export = Export::open(&path).expect("open the export");
            let position = rng.gen_range(0..BIG_INPUTS);
            let state = export.state_tree(position).expect("a state");
            let input = export.input(position).expect("an input");
            (state, input)
        })
    });
    let mut rng = Pcg64Mcg::seed_from_u64(SEED ^ 2);
    group.bench_function("jump", |b| {
        b.iter(|| {
            let position = rng.gen_range(0..BIG_INPUTS);
            let state = export.state_tree(position).expect("a state");
            let input = export.input(position).expect("an input");
            (state, input)
        })
    });
    group.finish();
}

/// One account of `export_big_state`'s state, shaped as the demo's.
#[derive(Clone, serde::Serialize)]
struct Account {
    balance: u64,
    operations: u32,
}

/// `export_big_state`'s state: the demo ledger's shape.
#[derive(Clone, serde::Serialize)]
struct Ledger {
    accounts: Vec<Account>,
    deposited: u64,
    fees: u64,
}

/// What `export_big_state` measures: the demo's shape of state before and after an input, and
/// the flat of the state before.
struct BigState {
    after: Ledger,
    flat_before: Arc<Flat>,
    flat_after: Flat,
}

impl BigState {
    /// Builds the states, checking that the diff of the flats is the three changed fields.
    fn create() -> BigState {
        let mut rng = Pcg64Mcg::seed_from_u64(SEED);
        let before = Ledger {
            accounts: (0..65_536)
                .map(|_| Account {
                    balance: rng.gen_range(0..1_000_000),
                    operations: rng.gen_range(0..100),
                })
                .collect(),
            deposited: 1 << 40,
            fees: 12_345,
        };
        let mut after = before.clone();
        after.accounts[40_000].balance += 500;
        after.accounts[40_000].operations += 1;
        after.fees += 1;
        let flat_before = Arc::new(Flat::of(&before));
        let mut flat_after = Flat::default();
        flat_after.refill_against(&after, &flat_before);
        let changes = tree_diff(&flat_before, &flat_after, usize::MAX);
        assert_eq!(
            changes,
            tree_diff(&flat_before, &Flat::of(&after), usize::MAX)
        );
        assert_eq!(
            changes
                .iter()
                .map(|c| c.path.to_string())
                .collect::<Vec<_>>(),
            [
                "fees",
                "accounts[40000].balance",
                "accounts[40000].operations"
            ]
        );
        BigState {
            after,
            flat_before,
            flat_after,
        }
    }

    fn flatten(&self, flat: &mut Flat) -> usize {
        flat.refill(black_box(&self.after));
        flat.len()
    }

    fn flatten_against(&self, flat: &mut Flat) -> usize {
        flat.refill_against(black_box(&self.after), &self.flat_before);
        flat.len()
    }
}

fn export_big_state(c: &mut Criterion) {
    let state = BigState::create();
    let mut group = c.benchmark_group("export_big_state");
    let mut flat = Flat::default();
    group.bench_function("flatten", |b| b.iter(|| state.flatten(&mut flat)));
    group.bench_function("flatten_against", |b| {
        b.iter(|| state.flatten_against(&mut flat))
    });
    group.bench_function("diff", |b| {
        b.iter(|| {
            tree_diff(
                black_box(&state.flat_before),
                black_box(&state.flat_after),
                usize::MAX,
            )
        })
    });
    group.finish();
}

/// The export targets that are ratios, each paired with its baseline within every sample (see
/// `common::paired`). `writer_vs_lz4` is the writer's time over LZ4's, so at most 2 means at
/// least half LZ4's speed.
fn export_ratios(c: &mut Criterion<Ratio>) {
    let mut group = c.benchmark_group("export_ratios");
    group.sampling_mode(SamplingMode::Flat);
    let state = BigState::create();
    let flat = RefCell::new(Flat::default());
    paired::bench(
        &mut group,
        "flatten_against_vs_flatten",
        |iters| {
            let mut flat = flat.borrow_mut();
            paired::timed(iters, || {
                black_box(state.flatten(&mut flat));
            })
        },
        |iters| {
            let mut flat = flat.borrow_mut();
            paired::timed(iters, || {
                black_box(state.flatten_against(&mut flat));
            })
        },
    );
    drop(state);

    let dir = ring_dir();
    let rig = ThroughputRig::create(dir.path(), false);
    paired::bench(
        &mut group,
        "writer_vs_lz4",
        |iters| paired::timed(iters, || drop(black_box(rig.lz4()))),
        |iters| {
            paired::timed(iters, || {
                black_box(rig.write());
            })
        },
    );
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
    targets = export_big_state, export_throughput, export_10m
}
criterion_group! {
    name = ratios;
    config = config().with_measurement(Ratio);
    targets = export_ratios
}
criterion_main!(benches, ratios);
