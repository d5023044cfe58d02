//! Hot-path costs of the recorder, each measured against an in-run baseline so the targets are
//! ratios and do not depend on the machine the benchmark runs on.
//!
//! The targets are judged in `record_ratios`, where each sample times the baseline and the
//! target back to back and its value is their ratio (see `common::paired`): on a shared machine
//! the same loop drifts by a third between criterion's separate windows, more than the margins.
//!
//! | `record_ratios` benchmark   | target                | baseline               | at most |
//! |-----------------------------|-----------------------|------------------------|---------|
//! | `apply_vs_baseline`         | `apply`               | `baseline`             | 1.3x    |
//! | `trace_event_vs_baseline`   | `trace_event`         | `baseline`             | 1.3x    |
//! | `two_threads_vs_one_thread` | two threads tracing   | one thread tracing     | 1.1x    |
//! | `checkpoint_vs_memcpy`      | `checkpoint`          | `memcpy_1MiB`          | 3x      |
//!
//! The groups `record_32B`, `trace_two_threads` and `checkpoint_1MiB` measure the same loops on
//! their own, for their absolute costs:
//!
//! - `baseline` is the design's floor for recording one input: read the TSC, store a 32-byte
//!   record (plus its ticks) into a 64-byte slot of an mmap'd ring, and commit it with a release
//!   store of its sequence word.
//! - `apply` is `Recorded::apply` of a 32-byte plain-old-data input on the zero-copy codec path,
//!   with a trivial machine; checkpoints are rare but do happen and are included.
//! - `trace_event` is `Tracer::event` with a short message (one slot).
//! - `one_thread` and `two_threads` are the time per thread for tracing `iters` events, one
//!   thread alone versus two threads at once into the same recorder (each on its own lane); of
//!   two threads, the slower one counts.
//! - `checkpoint` is `Recorded::checkpoint` of a 1 MiB state whose encoding is a plain copy,
//!   against `memcpy_1MiB`, copying 1 MiB between two buffers.
//!
//! Ring files live in a fresh temporary directory, on tmpfs where there is one (the recorder's
//! default location), and are removed afterwards.
#![allow(unsafe_code)]

mod common;

use common::paired::{self, Ratio};
use common::ring_dir;
use std::cell::RefCell;
use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use bytemuck::{Pod, Zeroable};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use flightrec_recorder::{Builder, Level, Machine, Recorded, Tick, Tracer};
use flightrec_schemas::codec::{pod_decode, pod_encode, pod_inline};
use flightrec_schemas::slot::InlineRecord;
use flightrec_schemas::CodecError;
use memmap2::MmapMut;
use serde::{Deserialize, Serialize};

/// Bytes of the baseline ring and of the recorder's input lane.
const RING_BYTES: u64 = 64 << 20;
/// Bytes of one slot, as in flightrec.
const SLOT_BYTES: usize = 64;
const SLOT_WORDS: usize = SLOT_BYTES / 8;
/// Bytes of the large state checkpointed by `checkpoint_1MiB`.
const STATE_BYTES: usize = 1 << 20;
/// The short trace message, which fits a single slot with its header.
const MESSAGE: &str = "order matched";

/// A 32-byte input, recorded as its raw bytes.
#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable, Serialize, Deserialize)]
struct Order {
    id: u64,
    price: u64,
    quantity: u64,
    side: u64,
}

const ORDER: Order = Order {
    id: 7,
    price: 10_250,
    quantity: 3,
    side: 1,
};

/// A trivial machine: sums the quantities of its orders.
#[derive(Default, Serialize, Deserialize)]
struct Book {
    traded: u64,
}

impl Machine for Book {
    const NAME: &'static str = "bench-book";
    const VERSION: u32 = 1;
    type Input = Order;

    fn apply(&mut self, input: &Order, _tick: Tick) {
        self.traded = self.traded.wrapping_add(input.quantity);
    }

    fn encode_input(input: &Order, out: &mut Vec<u8>) -> Result<(), CodecError> {
        pod_encode(input, out)
    }

    fn encode_input_inline(input: &Order) -> Option<InlineRecord> {
        Some(pod_inline(input))
    }

    fn decode_input(bytes: &[u8]) -> Result<Order, CodecError> {
        pod_decode(bytes)
    }
}

/// A machine with a large state whose encoding is a plain copy of its bytes.
#[derive(Serialize, Deserialize)]
struct Blob {
    bytes: Vec<u8>,
}

impl Blob {
    fn new(len: usize) -> Blob {
        Blob {
            bytes: (0..len).map(|i| (i * 31 + 7) as u8).collect(),
        }
    }
}

impl Machine for Blob {
    const NAME: &'static str = "bench-blob";
    const VERSION: u32 = 1;
    type Input = u64;

    fn apply(&mut self, input: &u64, _tick: Tick) {
        let at = *input as usize % self.bytes.len();
        self.bytes[at] = self.bytes[at].wrapping_add(1);
    }

    fn encode_state(&self, out: &mut [u8]) -> Result<usize, CodecError> {
        let len = self.bytes.len();
        let Some(area) = out.get_mut(..len) else {
            return Err(CodecError::TooLarge {
                capacity: out.len(),
            });
        };
        area.copy_from_slice(&self.bytes);
        Ok(len)
    }

    fn decode_state(bytes: &[u8]) -> Result<Blob, CodecError> {
        Ok(Blob {
            bytes: bytes.to_vec(),
        })
    }
}

/// A unique ring file path in `dir`.
fn ring_path(dir: &Path, name: &str) -> PathBuf {
    dir.join(format!("{name}.ring"))
}

fn build<M: Machine>(builder: Builder, path: PathBuf, machine: M) -> Recorded<M> {
    builder
        .path(path)
        .crash_capture(false)
        .build(machine)
        .expect("create a ring file")
}

/// The baseline's ring: a shared file mapping, written through atomics like flightrec's lanes.
struct RawRing {
    map: MmapMut,
    _file: std::fs::File,
}

impl RawRing {
    fn create(path: &Path, bytes: u64) -> RawRing {
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(path)
            .expect("create the baseline ring file");
        file.set_len(bytes).expect("size the baseline ring file");
        // SAFETY: the file was just created by this process, is not truncated while mapped, and
        // only this benchmark touches it.
        let map = unsafe { MmapMut::map_mut(&file) }.expect("map the baseline ring file");
        RawRing { map, _file: file }
    }

    fn words(&self) -> &[AtomicU64] {
        let ptr = self.map.as_ptr();
        // SAFETY: the mapping is page aligned (so 8-aligned), `len / 8` words lie inside it, it
        // lives as long as `self`, and every access through the slice is atomic.
        unsafe { std::slice::from_raw_parts(ptr.cast::<AtomicU64>(), self.map.len() / 8) }
    }
}

#[inline(always)]
fn rdtsc() -> u64 {
    // SAFETY: `rdtsc` only reads the time-stamp counter; it has no preconditions on x86_64.
    #[allow(unused_unsafe)]
    unsafe {
        core::arch::x86_64::_rdtsc()
    }
}

/// The baseline's writer: the design's floor for recording one 32-byte input.
struct BaselineWriter {
    ring: RawRing,
    mask: u64,
    pos: u64,
}

impl BaselineWriter {
    fn create(dir: &Path) -> BaselineWriter {
        let ring = RawRing::create(&ring_path(dir, "baseline"), RING_BYTES);
        let mask = (ring.words().len() / SLOT_WORDS - 1) as u64;
        BaselineWriter { ring, mask, pos: 0 }
    }

    /// Reads the TSC, stores `order` and the ticks into the next slot, and commits it with a
    /// release store of its sequence word.
    #[inline(always)]
    fn record(&mut self, order: &Order) {
        let ticks = rdtsc();
        let at = (self.pos & self.mask) as usize * SLOT_WORDS;
        let slot: &[AtomicU64; SLOT_WORDS] = self.ring.words()[at..at + SLOT_WORDS]
            .try_into()
            .expect("a slot is SLOT_WORDS words");
        slot[1].store(ticks, Ordering::Relaxed);
        slot[2].store(order.id, Ordering::Relaxed);
        slot[3].store(order.price, Ordering::Relaxed);
        slot[4].store(order.quantity, Ordering::Relaxed);
        slot[5].store(order.side, Ordering::Relaxed);
        slot[0].store(self.pos + 1, Ordering::Release);
        self.pos += 1;
    }
}

/// What `record_32B` measures: the baseline, a recorder applying inputs, one tracing. Its
/// methods are inlined into the timing loops, as the recorder's calls are into a service's code:
/// a call per iteration would be the harness's cost, not the recorder's.
struct Record32 {
    baseline: BaselineWriter,
    applying: Recorded<Book>,
    tracing: Recorded<Book>,
    tracer: Tracer,
}

impl Record32 {
    fn create(dir: &Path) -> Record32 {
        let applying = build(
            Builder::new()
                .input_lane_bytes(RING_BYTES)
                .checkpoint_every_inputs(100_000)
                .checkpoint_every(Duration::from_secs(1))
                .trace_lanes(1)
                .trace_lane_bytes(4096)
                .state_capacity(4096),
            ring_path(dir, "apply"),
            Book::default(),
        );
        let tracing = build(
            Builder::new()
                .input_lane_bytes(64 << 10)
                .trace_lanes(1)
                .trace_lane_bytes(RING_BYTES)
                .state_capacity(4096),
            ring_path(dir, "trace"),
            Book::default(),
        );
        let tracer = tracing.tracer();
        Record32 {
            baseline: BaselineWriter::create(dir),
            applying,
            tracing,
            tracer,
        }
    }

    #[inline(always)]
    fn baseline(&mut self) {
        self.baseline.record(black_box(&ORDER));
    }

    #[inline(always)]
    fn apply(&mut self) {
        self.applying.apply(black_box(&ORDER));
    }

    #[inline(always)]
    fn trace_event(&self) {
        self.tracer.event(Level::Info, black_box(MESSAGE));
    }
}

impl Drop for Record32 {
    fn drop(&mut self) {
        // Keeps the machine's work observable, so that `apply` is not optimised away.
        black_box(self.applying.machine().traded);
        black_box(self.tracing.machine().traded);
    }
}

fn record_32b(c: &mut Criterion) {
    let dir = ring_dir();
    let mut rig = Record32::create(dir.path());
    let mut group = c.benchmark_group("record_32B");
    group.throughput(Throughput::Elements(1));
    group.bench_function("baseline", |b| b.iter(|| rig.baseline()));
    group.bench_function("apply", |b| b.iter(|| rig.apply()));
    group.bench_function("trace_event", |b| b.iter(|| rig.trace_event()));
    group.finish();
}

/// Runs `threads` threads that each trace `iters` events once all are ready, and returns the
/// longest time any of them took.
fn trace_on_threads(tracer: &Tracer, threads: usize, iters: u64) -> Duration {
    let barrier = Arc::new(Barrier::new(threads));
    let handles: Vec<_> = (0..threads)
        .map(|_| {
            let tracer = tracer.clone();
            let barrier = Arc::clone(&barrier);
            std::thread::spawn(move || {
                // The first event claims the thread's lane; keep that out of the timing.
                tracer.event(Level::Info, "ready");
                barrier.wait();
                let start = Instant::now();
                for _ in 0..iters {
                    tracer.event(Level::Info, black_box(MESSAGE));
                }
                start.elapsed()
            })
        })
        .collect();
    handles
        .into_iter()
        .map(|h| h.join().expect("a tracing thread panicked"))
        .max()
        .unwrap_or_default()
}

/// A recorder with a trace lane for each of two threads.
fn two_lane_recorder(dir: &Path) -> Recorded<Book> {
    build(
        Builder::new()
            .input_lane_bytes(64 << 10)
            .trace_lanes(2)
            .trace_lane_bytes(RING_BYTES)
            .state_capacity(4096),
        ring_path(dir, "threads"),
        Book::default(),
    )
}

fn trace_two_threads(c: &mut Criterion) {
    let dir = ring_dir();
    let recorded = two_lane_recorder(dir.path());
    let tracer = recorded.tracer();
    let mut group = c.benchmark_group("trace_two_threads");
    group.throughput(Throughput::Elements(1));
    group.bench_function("one_thread", |b| {
        b.iter_custom(|iters| trace_on_threads(&tracer, 1, iters))
    });
    group.bench_function("two_threads", |b| {
        b.iter_custom(|iters| trace_on_threads(&tracer, 2, iters))
    });
    group.finish();
}

/// What `checkpoint_1MiB` measures: a copy of 1 MiB, and a recorder checkpointing 1 MiB.
struct Checkpoint1MiB {
    source: Vec<u8>,
    target: Vec<u8>,
    recorded: Recorded<Blob>,
}

impl Checkpoint1MiB {
    fn create(dir: &Path) -> Checkpoint1MiB {
        let recorded = build(
            Builder::new()
                .input_lane_bytes(64 << 10)
                .trace_lanes(1)
                .trace_lane_bytes(4096)
                .state_capacity(2 * STATE_BYTES as u64),
            ring_path(dir, "checkpoint"),
            Blob::new(STATE_BYTES),
        );
        Checkpoint1MiB {
            source: Blob::new(STATE_BYTES).bytes,
            target: vec![0u8; STATE_BYTES],
            recorded,
        }
    }

    #[inline(always)]
    fn memcpy(&mut self) {
        self.target.copy_from_slice(black_box(&self.source));
        black_box(&mut self.target);
    }

    #[inline(always)]
    fn checkpoint(&mut self) {
        self.recorded.checkpoint();
    }
}

fn checkpoint_1mib(c: &mut Criterion) {
    let dir = ring_dir();
    let mut rig = Checkpoint1MiB::create(dir.path());
    let mut group = c.benchmark_group("checkpoint_1MiB");
    group.throughput(Throughput::Bytes(STATE_BYTES as u64));
    group.bench_function("memcpy_1MiB", |b| b.iter(|| rig.memcpy()));
    group.bench_function("checkpoint", |b| b.iter(|| rig.checkpoint()));
    group.finish();
}

/// The targets, each measured beside its baseline within every sample (see `common::paired`).
fn record_ratios(c: &mut Criterion<Ratio>) {
    let dir = ring_dir();
    let mut group = c.benchmark_group("record_ratios");

    // Both sides of a pair use the one rig; each borrows it once per sample, not per iteration.
    let rig = RefCell::new(Record32::create(dir.path()));
    let baseline = |iters| {
        let mut rig = rig.borrow_mut();
        paired::timed(iters, || rig.baseline())
    };
    paired::bench(&mut group, "apply_vs_baseline", baseline, |iters| {
        let mut rig = rig.borrow_mut();
        paired::timed(iters, || rig.apply())
    });
    paired::bench(&mut group, "trace_event_vs_baseline", baseline, |iters| {
        let rig = rig.borrow();
        paired::timed(iters, || rig.trace_event())
    });
    drop(rig);

    let recorded = two_lane_recorder(dir.path());
    let tracer = recorded.tracer();
    paired::bench(
        &mut group,
        "two_threads_vs_one_thread",
        |iters| trace_on_threads(&tracer, 1, iters),
        |iters| trace_on_threads(&tracer, 2, iters),
    );
    drop(recorded);

    let rig = RefCell::new(Checkpoint1MiB::create(dir.path()));
    paired::bench(
        &mut group,
        "checkpoint_vs_memcpy",
        |iters| {
            let mut rig = rig.borrow_mut();
            paired::timed(iters, || rig.memcpy())
        },
        |iters| {
            let mut rig = rig.borrow_mut();
            paired::timed(iters, || rig.checkpoint())
        },
    );
    group.finish();
}

fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .sample_size(50)
}

criterion_group! {
    name = absolute;
    config = config();
    targets = record_32b, trace_two_threads, checkpoint_1mib
}
criterion_group! {
    name = ratios;
    config = config().with_measurement(Ratio);
    targets = record_ratios
}
criterion_main!(absolute, ratios);
