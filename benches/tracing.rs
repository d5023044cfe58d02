//! The cost of recording a `tracing` event through `FlightrecLayer`, against a minimal `tracing`
//! layer measured in the same run, so the target is a ratio and does not depend on the machine.
//!
//! | group           | benchmark         | baseline     | target       |
//! |-----------------|-------------------|--------------|--------------|
//! | `tracing_event` | `flightrec_layer` | `ring_layer` | at most 1.5x |
//! | `tracing_event` | `tracer_fmt`      | (none)       | (for scale)  |
//!
//! - Every benchmark records `tracing::info!(order, price, "order matched")`: a message and two
//!   integer fields, from one thread, under a `tracing_subscriber::registry()` installed with
//!   `with_default`.
//! - `tracing_event/ring_layer` is the baseline: a layer that reads the TSC, formats the event
//!   the way `FlightrecLayer` does (`order matched order=7 price=10250`) into a buffer on the
//!   stack, and copies it with a header into a preallocated in-memory ring of atomic words,
//!   committing it with a release store. No lanes, no ring file, no checksum.
//! - `tracing_event/flightrec_layer` is the same event through `FlightrecLayer` into a ring file.
//! - `tracing_event/tracer_fmt` writes the same text with `flightrec_recorder::event!` straight
//!   to a `Tracer`, with no `tracing` at all: what the layer adds is the difference.
//! - `tracing_ratios/flightrec_layer_vs_ring_layer` is where the target is judged: the two layers
//!   timed back to back within every sample, its value their ratio (see `common::paired`).
//!
//! Ring files live in a fresh temporary directory, on tmpfs where there is one (the recorder's
//! default location), and are removed afterwards.
#![allow(unsafe_code)]

mod common;

use common::paired::{self, Ratio};
use std::cell::Cell;
use std::fmt::{self, Write as _};
use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use flightrec_recorder::{Builder, FlightrecLayer, Level, Machine, Recorded, Tick};
use tracing::field::{Field, Visit};
use tracing::{dispatcher, Dispatch, Event, Subscriber};
use tracing_subscriber::layer::{Context, Layer, SubscriberExt as _};

/// Words in the baseline's ring (1 MiB, as a flightrec trace lane).
const RING_WORDS: usize = (1 << 20) / 8;
/// The price field of every event.
const PRICE: u64 = 10_250;

/// No inputs: the benchmark records trace events only.
#[derive(Default, serde::Serialize, serde::Deserialize)]
struct Idle;

impl Machine for Idle {
    const NAME: &'static str = "bench-idle";
    const VERSION: u32 = 1;
    type Input = u8;
    fn apply(&mut self, _input: &u8, _tick: Tick) {}
}

#[inline(always)]
fn rdtsc() -> u64 {
    // SAFETY: `rdtsc` only reads the time-stamp counter; it has no preconditions on x86_64.
    #[allow(unused_unsafe)]
    unsafe {
        core::arch::x86_64::_rdtsc()
    }
}

/// The baseline: formats each event into a stack buffer and appends it to a ring of words.
struct RingLayer {
    words: Box<[AtomicU64]>,
    /// The next word to write; one writer at a time in this benchmark.
    head: AtomicU64,
}

impl RingLayer {
    fn new() -> RingLayer {
        RingLayer {
            words: (0..RING_WORDS).map(|_| AtomicU64::new(0)).collect(),
            head: AtomicU64::new(0),
        }
    }

    /// Appends a record: a header word (length, level), the ticks, then the text in words,
    /// the header stored last with release ordering.
    fn push(&self, ticks: u64, level: u64, text: &[u8]) {
        let mask = RING_WORDS as u64 - 1;
        let start = self.head.load(Ordering::Relaxed);
        let body_words = text.len().div_ceil(8) as u64;
        self.words[((start + 1) & mask) as usize].store(ticks, Ordering::Relaxed);
        for (i, chunk) in text.chunks(8).enumerate() {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.words[((start + 2 + i as u64) & mask) as usize]
                .store(u64::from_le_bytes(word), Ordering::Relaxed);
        }
        let header = (text.len() as u64) << 8 | level;
        self.words[(start & mask) as usize].store(header, Ordering::Release);
        self.head.store(start + 2 + body_words, Ordering::Relaxed);
    }
}

impl<S: Subscriber> Layer<S> for RingLayer {
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        let ticks = rdtsc();
        let mut text = StackText::default();
        let _ = write!(text, "{}", Compact(event));
        self.push(ticks, level_code(event.metadata().level()), text.as_bytes());
    }
}

/// The level as one byte, most severe first (as flightrec stores it).
fn level_code(level: &tracing::Level) -> u64 {
    match *level {
        tracing::Level::ERROR => 1,
        tracing::Level::WARN => 2,
        tracing::Level::INFO => 3,
        tracing::Level::DEBUG => 4,
        tracing::Level::TRACE => 5,
    }
}

/// A fixed buffer on the stack that keeps what fits and drops the rest.
struct StackText {
    bytes: [u8; 256],
    len: usize,
}

impl Default for StackText {
    fn default() -> Self {
        StackText {
            bytes: [0; 256],
            len: 0,
        }
    }
}

impl StackText {
    fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.len]
    }
}

impl fmt::Write for StackText {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let room = self.bytes.len() - self.len;
        let take = s.len().min(room);
        self.bytes[self.len..self.len + take].copy_from_slice(&s.as_bytes()[..take]);
        self.len += take;
        Ok(())
    }
}

/// An event as `tracing`'s compact format writes it: the message, then `key=value`.
struct Compact<'a>(&'a Event<'a>);

impl fmt::Display for Compact<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut message = Fields {
            out: f,
            message: true,
            wrote: false,
        };
        self.0.record(&mut message);
        let wrote = message.wrote;
        self.0.record(&mut Fields {
            out: f,
            message: false,
            wrote,
        });
        Ok(())
    }
}

/// Writes the message (first pass) or the other fields (second pass).
struct Fields<'f, 'a> {
    out: &'f mut fmt::Formatter<'a>,
    message: bool,
    wrote: bool,
}

impl Visit for Fields<'_, '_> {
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        let is_message = field.name() == "message";
        if is_message != self.message {
            return;
        }
        let separator = if self.wrote { " " } else { "" };
        self.wrote = true;
        let _ = match is_message {
            true => write!(self.out, "{separator}{value:?}"),
            false => write!(self.out, "{separator}{}={value:?}", field.name()),
        };
    }
}

/// A recorder of trace events only, its ring file in `dir`.
fn recorder(dir: &std::path::Path) -> Recorded<Idle> {
    Builder::new()
        .path(dir.join("tracing.ring"))
        .crash_capture(false)
        .build(Idle)
        .expect("create a ring file")
}

fn tracing_event(c: &mut Criterion) {
    let dir = common::ring_dir();
    let recorded = recorder(dir.path());
    let mut group = c.benchmark_group("tracing_event");
    group.throughput(Throughput::Elements(1));

    let mut order = 0u64;
    group.bench_function("ring_layer", |b| {
        let subscriber = tracing_subscriber::registry().with(RingLayer::new());
        tracing::subscriber::with_default(subscriber, || {
            b.iter(|| {
                order += 1;
                tracing::info!(order = black_box(order), price = PRICE, "order matched");
            })
        });
    });
    group.bench_function("flightrec_layer", |b| {
        let subscriber =
            tracing_subscriber::registry().with(FlightrecLayer::new(recorded.tracer()));
        tracing::subscriber::with_default(subscriber, || {
            b.iter(|| {
                order += 1;
                tracing::info!(order = black_box(order), price = PRICE, "order matched");
            })
        });
    });
    let tracer = recorded.tracer();
    group.bench_function("tracer_fmt", |b| {
        b.iter(|| {
            order += 1;
            flightrec_recorder::event!(
                tracer,
                Level::Info,
                "order matched order={} price={}",
                black_box(order),
                PRICE
            );
        })
    });
    group.finish();
    drop(recorded);
}

/// Records one `info!` event through whichever subscriber is the default.
#[inline(always)]
fn info(order: &Cell<u64>) {
    order.set(order.get() + 1);
    tracing::info!(
        order = black_box(order.get()),
        price = PRICE,
        "order matched"
    );
}

/// `flightrec_layer` against `ring_layer`, paired within every sample (see `common::paired`):
/// each side installs its subscriber for its own part of the sample.
fn tracing_ratios(c: &mut Criterion<Ratio>) {
    let dir = common::ring_dir();
    let recorded = recorder(dir.path());
    let ring = Dispatch::new(tracing_subscriber::registry().with(RingLayer::new()));
    let flightrec =
        Dispatch::new(tracing_subscriber::registry().with(FlightrecLayer::new(recorded.tracer())));
    let order = Cell::new(0u64);
    let mut group = c.benchmark_group("tracing_ratios");
    paired::bench(
        &mut group,
        "flightrec_layer_vs_ring_layer",
        |iters| dispatcher::with_default(&ring, || paired::timed(iters, || info(&order))),
        |iters| dispatcher::with_default(&flightrec, || paired::timed(iters, || info(&order))),
    );
    group.finish();
    drop(recorded);
}

criterion_group!(benches, tracing_event);
criterion_group! {
    name = ratios;
    config = Criterion::default().with_measurement(Ratio);
    targets = tracing_ratios
}
criterion_main!(benches, ratios);
