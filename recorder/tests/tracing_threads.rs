//! The trace hot path's bookkeeping: an event recorded from inside another is dropped and
//! counted, one thread tracing into two recorders in turn writes each event to the right file,
//! and a thread that exits gives its lane back even after switching between recorders.

use std::fmt;

use flightrec_recorder::{Builder, Level, Machine, Recorded, Tick, Tracer};
use flightrec_replayer::{recover_lane, Ring, Summary};
use flightrec_schemas::trace::{TraceEvent, TraceKind};
use serde::{Deserialize, Serialize};

#[derive(Default, Serialize, Deserialize)]
struct Quiet;

impl Machine for Quiet {
    const NAME: &'static str = "quiet";
    const VERSION: u32 = 1;
    type Input = u8;
    fn apply(&mut self, _input: &u8, _tick: Tick) {}
}

fn recorder(dir: &tempfile::TempDir, name: &str) -> Recorded<Quiet> {
    Builder::new()
        .path(dir.path().join(format!("{name}.ring")))
        .input_lane_bytes(16 << 10)
        .trace_lanes(2)
        .trace_lane_bytes(64 << 10)
        .state_capacity(4 << 10)
        .crash_capture(false)
        .counters(false)
        .build(Quiet)
        .unwrap()
}

/// The messages of the events (not the thread-name records) of every trace lane of `recorded`.
fn messages(recorded: Recorded<Quiet>) -> (Vec<String>, Summary) {
    let path = recorded.finish();
    let ring = Ring::open(&path).unwrap();
    let mut out = Vec::new();
    for info in &ring.header().lanes[1..] {
        for record in &recover_lane(&ring, info) {
            let event = TraceEvent::decode(record.payload).unwrap();
            if event.kind != TraceKind::Thread {
                out.push(event.message);
            }
        }
    }
    (out, Summary::of(&ring))
}

/// Traces while it is being formatted into another event.
struct Nosy<'a>(&'a Tracer);

impl fmt::Display for Nosy<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.event(Level::Warn, "from inside");
        write!(f, "nosy")
    }
}

#[test]
fn an_event_recorded_while_another_is_written_is_dropped_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    let recorded = recorder(&dir, "nosy");
    let tracer = recorded.tracer();
    tracer.event(Level::Info, "first");
    flightrec_recorder::event!(tracer, Level::Info, "outer {}", Nosy(&tracer));
    tracer.event(Level::Info, "last");
    let (messages, summary) = messages(recorded);
    assert_eq!(messages, ["first", "outer nosy", "last"]);
    assert_eq!(summary.losses.trace_dropped_reentrant, 1);
}

#[test]
fn one_thread_tracing_into_two_recorders_in_turn_writes_each_event_to_its_own() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (recorder(&dir, "a"), recorder(&dir, "b"));
    let (ta, tb) = (a.tracer(), b.tracer());
    let thread = std::thread::spawn(move || {
        for i in 0..50 {
            ta.event(Level::Info, &format!("a{i}"));
            if i % 3 == 0 {
                tb.event(Level::Info, &format!("b{i}"));
            }
        }
    });
    thread.join().unwrap();
    // The thread has exited: both lanes were given back, so new threads can claim them.
    for tracer in [a.tracer(), b.tracer()] {
        std::thread::spawn(move || tracer.event(Level::Info, "after"))
            .join()
            .unwrap();
    }
    let (in_a, summary_a) = messages(a);
    let (in_b, summary_b) = messages(b);
    let mut want_a: Vec<String> = (0..50).map(|i| format!("a{i}")).collect();
    let mut want_b: Vec<String> = (0..50).step_by(3).map(|i| format!("b{i}")).collect();
    want_a.push("after".into());
    want_b.push("after".into());
    assert_eq!(in_a, want_a);
    assert_eq!(in_b, want_b);
    for summary in [summary_a, summary_b] {
        assert_eq!(summary.losses.trace_dropped_no_lane, 0);
        assert_eq!(summary.losses.trace_dropped_reentrant, 0);
    }
}

/// Panics while being formatted.
struct Explosive;

impl fmt::Display for Explosive {
    fn fmt(&self, _: &mut fmt::Formatter<'_>) -> fmt::Result {
        panic!("a Display impl that panics")
    }
}

#[test]
fn a_panic_while_formatting_an_event_leaves_the_thread_able_to_trace() {
    let dir = tempfile::tempdir().unwrap();
    let recorded = recorder(&dir, "explosive");
    let tracer = recorded.tracer();
    tracer.event(Level::Info, "before");
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        flightrec_recorder::event!(tracer, Level::Info, "boom {}", Explosive);
    }));
    assert!(outcome.is_err(), "the Display impl panicked");
    tracer.event(Level::Info, "after");
    let (messages, summary) = messages(recorded);
    assert_eq!(messages, ["before", "after"]);
    assert_eq!(summary.losses.trace_dropped_reentrant, 0);
}
