//! Hot-path costs of the recorder, each group measured against an in-run baseline so the
//! targets are ratios and do not depend on the machine the benchmark runs on.
//!
//! | group               | benchmark     | baseline       | target            |
//! |---------------------|---------------|----------------|-------------------|
//! | `record_32B`        | `apply`       | `baseline`     | at most 1.3x      |
//! | `record_32B`        | `trace_event` | `baseline`     | at most 1.3x      |
//! | `trace_two_threads` | `two_threads` | `one_thread`   | at most 1.1x      |
//! | `checkpoint_1MiB`   | `checkpoint`  | `memcpy_1MiB`  | at most 3x        |
//!
//! - `record_32B/baseline` is the design's floor for recording one input: read the TSC, store a
//!   32-byte record (plus its ticks) into a 64-byte slot of an mmap'd ring, and commit it with a
//!   release store of its sequence word.
//! - `record_32B/apply` is `Recorded::apply` of a 32-byte plain-old-data input on the zero-copy
//!   codec path, with a trivial machine; checkpoints are rare but do happen and are included.
//! - `record_32B/trace_event` is `Tracer::event` with a short message (one slot).
//! - `trace_two_threads` is the time per thread for tracing `iters` events, one thread alone
//!   versus two threads at once into the same recorder (each on its own lane).
//! - `checkpoint_1MiB/checkpoint` is `Recorded::checkpoint` of a 1 MiB state whose encoding is a
//!   plain copy, against copying 1 MiB between two buffers.
//!
//! Ring files live in a fresh temporary directory, on tmpfs where there is one (the recorder's
//! default location), and are removed afterwards.
#![allow(unsafe_code)]

mod common;

use common::ring_dir;
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

fn record_32b(c: &mut Criterion) {
    let dir = ring_dir();
    let mut group = c.benchmark_group("record_32B");
    group.throughput(Throughput::Elements(1));

    let ring = RawRing::create(&ring_path(dir.path(), "baseline"), RING_BYTES);
    let words = ring.words();
    let mask = (words.len() / SLOT_WORDS - 1) as u64;
    let mut pos = 0u64;
    group.bench_function("baseline", |b| {
        b.iter(|| {
            let order = black_box(&ORDER);
            let ticks = rdtsc();
            let at = (pos & mask) as usize * SLOT_WORDS;
            let slot: &[AtomicU64; SLOT_WORDS] = words[at..at + SLOT_WORDS]
                .try_into()
                .expect("a slot is SLOT_WORDS words");
            slot[1].store(ticks, Ordering::Relaxed);
            slot[2].store(order.id, Ordering::Relaxed);
            slot[3].store(order.price, Ordering::Relaxed);
            slot[4].store(order.quantity, Ordering::Relaxed);
            slot[5].store(order.side, Ordering::Relaxed);
            slot[0].store(pos + 1, Ordering::Release);
            pos += 1;
        })
    });

    let mut recorded = build(
        Builder::new()
            .input_lane_bytes(RING_BYTES)
            .checkpoint_every_inputs(100_000)
            .checkpoint_every(Duration::from_secs(1))
            .trace_lanes(1)
            .trace_lane_bytes(4096)
            .state_capacity(4096),
        ring_path(dir.path(), "apply"),
        Book::default(),
    );
    group.bench_function("apply", |b| b.iter(|| recorded.apply(black_box(&ORDER))));
    black_box(recorded.machine().traded);
    drop(recorded);

    let recorded = build(
        Builder::new()
            .input_lane_bytes(64 << 10)
            .trace_lanes(1)
            .trace_lane_bytes(RING_BYTES)
            .state_capacity(4096),
        ring_path(dir.path(), "trace"),
        Book::default(),
    );
    let tracer = recorded.tracer();
    group.bench_function("trace_event", |b| {
        b.iter(|| tracer.event(Level::Info, black_box(MESSAGE)))
    });
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

fn trace_two_threads(c: &mut Criterion) {
    let dir = ring_dir();
    let recorded = build(
        Builder::new()
            .input_lane_bytes(64 << 10)
            .trace_lanes(2)
            .trace_lane_bytes(RING_BYTES)
            .state_capacity(4096),
        ring_path(dir.path(), "threads"),
        Book::default(),
    );
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

fn checkpoint_1mib(c: &mut Criterion) {
    let dir = ring_dir();
    let mut group = c.benchmark_group("checkpoint_1MiB");
    group.throughput(Throughput::Bytes(STATE_BYTES as u64));

    let source = Blob::new(STATE_BYTES).bytes;
    let mut target = vec![0u8; STATE_BYTES];
    group.bench_function("memcpy_1MiB", |b| {
        b.iter(|| {
            target.copy_from_slice(black_box(&source));
            black_box(&mut target);
        })
    });

    let mut recorded = build(
        Builder::new()
            .input_lane_bytes(64 << 10)
            .trace_lanes(1)
            .trace_lane_bytes(4096)
            .state_capacity(2 * STATE_BYTES as u64),
        ring_path(dir.path(), "checkpoint"),
        Blob::new(STATE_BYTES),
    );
    group.bench_function("checkpoint", |b| b.iter(|| recorded.checkpoint()));
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .sample_size(50);
    targets = record_32b, trace_two_threads, checkpoint_1mib
}
criterion_main!(benches);
