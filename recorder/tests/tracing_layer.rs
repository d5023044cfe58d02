//! `FlightrecLayer`: what `tracing` events and spans become in the ring file's trace lanes, read
//! back lane by lane. Each test installs the layer for its own threads only (`with_default`).
#![cfg(feature = "tracing")]
// A counting global allocator needs `unsafe impl GlobalAlloc`.
#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::{Arc, Barrier};

use flightrec_recorder::{Builder, FlightrecLayer, Level, Machine, Recorded, Tick};
use flightrec_replayer::{recover_lane, Ring, Summary};
use flightrec_schemas::trace::{TraceEvent, TraceKind};
use serde::{Deserialize, Serialize};
use tracing_subscriber::prelude::*;

/// Counts the allocations of each thread, so a test can see that recording allocates nothing.
struct CountingAlloc;

thread_local! {
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

// SAFETY: every call is passed on to the system allocator unchanged; counting touches only a
// thread-local cell with no destructor, which needs no allocation.
unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.with(|n| n.set(n.get() + 1));
        // SAFETY: the caller's guarantees for `layout` are the system allocator's.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from `alloc` above, that is from the system allocator.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: CountingAlloc = CountingAlloc;

#[derive(Default, Serialize, Deserialize)]
struct Quiet;

impl Machine for Quiet {
    const NAME: &'static str = "quiet";
    const VERSION: u32 = 1;
    type Input = u8;
    fn apply(&mut self, _input: &u8, _tick: Tick) {}
}

fn recorder(dir: &tempfile::TempDir) -> Recorded<Quiet> {
    Builder::new()
        .path(dir.path().join("traced.ring"))
        .input_lane_bytes(16 << 10)
        .trace_lanes(4)
        .trace_lane_bytes(64 << 10)
        .state_capacity(4 << 10)
        .crash_capture(false)
        .counters(false)
        .build(Quiet)
        .unwrap()
}

/// One recorded trace event as a test compares it.
#[derive(Debug, PartialEq, Eq)]
struct Seen {
    thread: String,
    kind: TraceKind,
    level: Level,
    text: String,
}

fn seen(thread: &str, kind: TraceKind, level: Level, text: &str) -> Seen {
    Seen {
        thread: thread.into(),
        kind,
        level,
        text: text.into(),
    }
}

/// Every lane's events (not the thread-name records), lane after lane, each named after the
/// thread that wrote it.
fn read_back(recorded: Recorded<Quiet>) -> (Vec<Seen>, Summary) {
    let path = recorded.finish();
    let ring = Ring::open(&path).unwrap();
    let mut events = Vec::new();
    for info in &ring.header().lanes[1..] {
        let mut thread = String::new();
        for record in &recover_lane(&ring, info) {
            let event = TraceEvent::decode(record.payload).unwrap();
            assert!(!event.truncated);
            match event.kind {
                TraceKind::Thread => thread = event.message,
                kind => events.push(seen(&thread, kind, event.level, &event.message)),
            }
        }
    }
    (events, Summary::of(&ring))
}

/// Runs `body` on a thread named `name`, with the layer as its default subscriber.
fn traced_thread(
    recorded: &Recorded<Quiet>,
    name: &str,
    body: impl FnOnce() + Send + 'static,
) -> std::thread::JoinHandle<()> {
    let layer = FlightrecLayer::new(recorded.tracer());
    std::thread::Builder::new()
        .name(name.into())
        .spawn(move || {
            let subscriber = tracing_subscriber::registry().with(layer);
            tracing::subscriber::with_default(subscriber, body);
        })
        .unwrap()
}

fn run_traced(recorded: &Recorded<Quiet>, name: &str, body: impl FnOnce() + Send + 'static) {
    traced_thread(recorded, name, body).join().unwrap();
}

/// A field value shown through its `Debug`.
#[derive(Debug)]
#[allow(dead_code)] // `id` is read by the derived `Debug`, which the lint does not count.
struct Order {
    id: u32,
}

#[test]
fn events_keep_their_level_message_and_fields_in_tracing_s_compact_order() {
    let dir = tempfile::tempdir().unwrap();
    let recorded = recorder(&dir);
    run_traced(&recorded, "events", || {
        tracing::error!("disk full");
        tracing::warn!(free = 3, "low on space");
        tracing::info!(user = "ann", count = 2, "logged in as {}", "admin");
        tracing::debug!(ok = true, ratio = 0.5, order = ?Order { id: 9 });
        tracing::trace!(r#type = "raw", message = "plain message");
        let error = std::io::Error::other("refused");
        tracing::warn!(error = &error as &dyn std::error::Error, "connect failed");
    });
    let (events, summary) = read_back(recorded);
    let event = |level, text| seen("events", TraceKind::Event, level, text);
    assert_eq!(
        events,
        [
            event(Level::Error, "disk full"),
            event(Level::Warn, "low on space free=3"),
            event(Level::Info, r#"logged in as admin user="ann" count=2"#),
            event(Level::Debug, "ok=true ratio=0.5 order=Order { id: 9 }"),
            event(Level::Trace, r#"plain message type="raw""#),
            event(Level::Warn, "connect failed error=refused"),
        ]
    );
    assert_eq!(summary.losses.trace_dropped_reentrant, 0);
}

#[test]
fn with_target_starts_each_event_with_its_target() {
    let dir = tempfile::tempdir().unwrap();
    let recorded = recorder(&dir);
    let layer = FlightrecLayer::new(recorded.tracer()).with_target(true);
    let subscriber = tracing_subscriber::registry().with(layer);
    std::thread::spawn(move || {
        tracing::subscriber::with_default(subscriber, || {
            tracing::info!(target: "billing::invoice", n = 1, "sent");
            tracing::info!("default target");
        });
    })
    .join()
    .unwrap();
    let (events, _) = read_back(recorded);
    let texts: Vec<&str> = events.iter().map(|e| e.text.as_str()).collect();
    assert_eq!(
        texts,
        [
            "billing::invoice: sent n=1",
            "tracing_layer: default target"
        ]
    );
}

#[test]
fn spans_record_their_fields_on_entry_and_their_name_on_exit_nested() {
    let dir = tempfile::tempdir().unwrap();
    let recorded = recorder(&dir);
    run_traced(&recorded, "spans", || {
        let request = tracing::info_span!(
            "request",
            id = 7,
            path = "/a",
            status = tracing::field::Empty
        );
        let entered = request.enter();
        {
            let _db = tracing::debug_span!("db").entered();
            tracing::debug!("query");
        }
        // One field updated, one recorded for the first time.
        request.record("id", 8);
        request.record("status", 200);
        drop(entered);
        let _again = request.enter();
        tracing::info!("done");
    });
    let (events, _) = read_back(recorded);
    let edge = |kind, level, text| seen("spans", kind, level, text);
    assert_eq!(
        events,
        [
            edge(
                TraceKind::SpanEnter,
                Level::Info,
                r#"request id=7 path="/a""#
            ),
            edge(TraceKind::SpanEnter, Level::Debug, "db"),
            edge(TraceKind::Event, Level::Debug, "query"),
            edge(TraceKind::SpanExit, Level::Debug, "db"),
            edge(TraceKind::SpanExit, Level::Info, "request"),
            edge(
                TraceKind::SpanEnter,
                Level::Info,
                r#"request path="/a" id=8 status=200"#
            ),
            edge(TraceKind::Event, Level::Info, "done"),
            edge(TraceKind::SpanExit, Level::Info, "request"),
        ]
    );
}

#[test]
fn each_thread_s_events_and_spans_go_to_its_own_lane_under_its_name() {
    let dir = tempfile::tempdir().unwrap();
    let recorded = recorder(&dir);
    // All three hold a lane at once: none starts before each has traced once.
    let start = Arc::new(Barrier::new(3));
    let workers: Vec<_> = (0..3)
        .map(|n| {
            let start = Arc::clone(&start);
            traced_thread(&recorded, &format!("worker-{n}"), move || {
                tracing::info!("ready");
                start.wait();
                for job in 0..20 {
                    let _job = tracing::info_span!("job", worker = n, job).entered();
                    tracing::info!(job, "working");
                }
            })
        })
        .collect();
    for worker in workers {
        worker.join().unwrap();
    }
    let (events, summary) = read_back(recorded);
    for n in 0..3 {
        let thread = format!("worker-{n}");
        let of_thread: Vec<&Seen> = events.iter().filter(|e| e.thread == thread).collect();
        let ready = (TraceKind::Event, "ready".to_owned());
        let jobs = (0..20).flat_map(|job| {
            [
                (TraceKind::SpanEnter, format!("job worker={n} job={job}")),
                (TraceKind::Event, format!("working job={job}")),
                (TraceKind::SpanExit, "job".to_owned()),
            ]
        });
        let want: Vec<Seen> = std::iter::once(ready)
            .chain(jobs)
            .map(|(kind, text)| seen(&thread, kind, Level::Info, &text))
            .collect();
        assert_eq!(of_thread, want.iter().collect::<Vec<_>>());
    }
    assert_eq!(events.len(), 3 * 61);
    assert_eq!(summary.losses.trace_dropped_no_lane, 0);
}

#[test]
fn an_event_with_fields_is_recorded_without_allocating() {
    let dir = tempfile::tempdir().unwrap();
    let recorded = recorder(&dir);
    run_traced(&recorded, "counted", || {
        // The first event claims the lane and sizes the thread's buffer.
        tracing::info!(order = 1, price = 10_250, "order matched");
        let before = ALLOCATIONS.with(Cell::get);
        assert!(before > 0, "the allocator counts this thread's allocations");
        for order in 2..100u64 {
            tracing::info!(order, price = 10_250, side = "buy", "order matched");
        }
        assert_eq!(ALLOCATIONS.with(Cell::get) - before, 0);
    });
    let (events, _) = read_back(recorded);
    assert_eq!(events.len(), 99);
    assert_eq!(
        events[98].text,
        r#"order matched order=99 price=10250 side="buy""#
    );
}

/// Logs while its `Debug` runs, as a careless field might.
struct Chatty;

impl std::fmt::Debug for Chatty {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        tracing::warn!("from inside a field");
        write!(f, "chatty")
    }
}

#[test]
fn an_event_logged_while_a_field_is_formatted_leaves_the_others_intact() {
    let dir = tempfile::tempdir().unwrap();
    let recorded = recorder(&dir);
    run_traced(&recorded, "chatty", || {
        tracing::info!(field = ?Chatty, "outer");
        let span = tracing::info_span!("span", field = ?Chatty);
        span.in_scope(|| tracing::info!("inside"));
    });
    let (events, summary) = read_back(recorded);
    let texts: Vec<&str> = events.iter().map(|e| e.text.as_str()).collect();
    // `tracing` itself discards an event dispatched while its subscriber is busy on the thread.
    assert_eq!(
        texts,
        ["outer field=chatty", "span field=chatty", "inside", "span"]
    );
    assert_eq!(summary.losses.trace_dropped_reentrant, 0);
}
