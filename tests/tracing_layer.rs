//! A service that logs with `tracing` through `FlightrecLayer`, replayed: its events and spans
//! appear on the timeline the terminal UI shows, named after their threads, with their levels
//! and fields, each among the inputs it was logged between, and every thread's spans nested.

use std::collections::HashMap;
use std::sync::{Arc, Barrier};

use flightrec::recorder::{Builder, FlightrecLayer, Level, Recorded, Tracer};
use flightrec::replayer::History;
use flightrec::schemas::trace::TraceKind;
use flightrec::tui::timeline::{Row, Rows, Timeline};
use flightrec::tui::Source;
use flightrec::{Machine, Tick};
use serde::{Deserialize, Serialize};
use tracing_subscriber::prelude::*;

/// Inputs the machine thread applies, each inside a span, each followed by an event.
const INPUTS: u64 = 200;
/// Worker threads logging beside it.
const WORKERS: usize = 3;
/// Jobs each worker logs.
const JOBS: usize = 50;

/// Keeps a running total.
#[derive(Clone, Default, Serialize, Deserialize)]
struct Till {
    total: u64,
}

impl Machine for Till {
    const NAME: &'static str = "till";
    const VERSION: u32 = 1;
    type Input = u64;
    fn apply(&mut self, input: &u64, _tick: Tick) {
        self.total += input;
    }
}

/// Runs `body` with the layer as the thread's default subscriber.
fn with_layer<T>(tracer: Tracer, body: impl FnOnce() -> T) -> T {
    let subscriber = tracing_subscriber::registry().with(FlightrecLayer::new(tracer));
    tracing::subscriber::with_default(subscriber, body)
}

/// The machine's thread: each input applied inside a span `apply`, then logged.
fn serve(mut recorded: Recorded<Till>) -> Recorded<Till> {
    with_layer(recorded.tracer(), || {
        tracing::warn!(inputs = INPUTS, "opening the till");
        for amount in 0..INPUTS {
            let _apply = tracing::info_span!("apply", amount).entered();
            recorded.apply(&amount);
            tracing::debug!(amount, "applied");
        }
    });
    recorded
}

/// A worker thread: jobs in nested spans, with an error now and then.
fn work(tracer: Tracer, worker: usize, start: &Barrier) {
    with_layer(tracer, || {
        tracing::info!(worker, "worker up");
        start.wait();
        for job in 0..JOBS {
            let _job = tracing::info_span!("job", worker, job).entered();
            let _parse = tracing::trace_span!("parse").entered();
            if job % 10 == 9 {
                tracing::error!(job, reason = "bad checksum", "job rejected");
            }
        }
    });
}

/// Records the machine thread and the workers at once, then replays the ring file.
fn record_and_replay(dir: &tempfile::TempDir) -> History<Till> {
    let recorded = Builder::new()
        .path(dir.path().join("till.ring"))
        .trace_lanes(WORKERS as u32 + 1)
        .trace_lane_bytes(256 << 10)
        .crash_capture(false)
        .build(Till::default())
        .unwrap();
    let start = Arc::new(Barrier::new(WORKERS + 1));
    let workers: Vec<_> = (0..WORKERS)
        .map(|worker| {
            let (tracer, start) = (recorded.tracer(), Arc::clone(&start));
            std::thread::Builder::new()
                .name(format!("worker-{worker}"))
                .spawn(move || work(tracer, worker, &start))
                .unwrap()
        })
        .collect();
    let machine = std::thread::Builder::new()
        .name("till".into())
        .spawn(move || {
            start.wait();
            serve(recorded)
        })
        .unwrap();
    let recorded = machine.join().unwrap();
    for worker in workers {
        worker.join().unwrap();
    }
    let path = recorded.finish();
    History::open(&path).unwrap()
}

/// One trace row of the timeline.
struct Seen<'a> {
    /// Inputs before it on the timeline.
    inputs_before: usize,
    thread: &'a str,
    kind: TraceKind,
    level: Level,
    text: &'a str,
}

/// The trace rows of the timeline the terminal UI shows, in its order.
fn trace_rows<'a>(facts: &'a flightrec::tui::Facts, timeline: &Timeline) -> Vec<Seen<'a>> {
    let rows = (0..timeline.len(&Rows::All)).filter_map(|p| timeline.row(&Rows::All, p));
    rows.filter_map(|row| match row {
        Row::Trace(j) => Some((j, timeline.inputs_up_to(row))),
        _ => None,
    })
    .map(|(j, inputs_before)| {
        let trace = &facts.traces[j];
        let event = trace.event.as_ref().expect("no damaged records");
        Seen {
            inputs_before,
            thread: &trace.thread,
            kind: event.kind,
            level: event.level,
            text: &event.message,
        }
    })
    .collect()
}

#[test]
fn tracing_events_and_spans_appear_on_the_replayed_timeline() {
    let dir = tempfile::tempdir().unwrap();
    let history = record_and_replay(&dir);
    assert_eq!(history.len() as u64, INPUTS);
    let facts = history.facts();
    let timeline = Timeline::of(&facts);
    let seen = trace_rows(&facts, &timeline);

    // The machine thread's records, in order: each input's span encloses it on the timeline,
    // and its event follows it.
    let till: Vec<&Seen> = seen.iter().filter(|s| s.thread == "till").collect();
    assert_eq!(till.len() as u64, 1 + 3 * INPUTS);
    assert_eq!(
        (till[0].level, till[0].text),
        (Level::Warn, "opening the till inputs=200")
    );
    for (amount, records) in till[1..].chunks(3).enumerate() {
        let [enter, event, exit] = records else {
            unreachable!("chunks of 3")
        };
        assert_eq!(
            (enter.kind, enter.text),
            (TraceKind::SpanEnter, &*format!("apply amount={amount}"))
        );
        assert_eq!((event.kind, event.level), (TraceKind::Event, Level::Debug));
        assert_eq!(event.text, format!("applied amount={amount}"));
        assert_eq!((exit.kind, exit.text), (TraceKind::SpanExit, "apply"));
        assert_eq!(
            enter.inputs_before, amount,
            "the span opens before its input"
        );
        assert_eq!(
            event.inputs_before,
            amount + 1,
            "the event follows its input"
        );
    }

    // Each worker's records under its own name, errors with their fields.
    for worker in 0..WORKERS {
        let thread = format!("worker-{worker}");
        let mine: Vec<&Seen> = seen.iter().filter(|s| s.thread == thread).collect();
        assert_eq!(mine.len(), 1 + 4 * JOBS + JOBS / 10);
        assert_eq!(mine[0].text, format!("worker up worker={worker}"));
        let errors: Vec<&str> = mine
            .iter()
            .filter(|s| s.level == Level::Error)
            .map(|s| s.text)
            .collect();
        let want: Vec<String> = (0..JOBS)
            .filter(|job| job % 10 == 9)
            .map(|job| format!(r#"job rejected job={job} reason="bad checksum""#))
            .collect();
        assert_eq!(errors, want);
    }

    // Every thread's spans nest: an exit closes the innermost open span, and none stays open.
    let mut open: HashMap<&str, Vec<&str>> = HashMap::new();
    for s in &seen {
        let stack = open.entry(s.thread).or_default();
        match s.kind {
            TraceKind::SpanEnter => stack.push(s.text.split(' ').next().unwrap()),
            TraceKind::SpanExit => assert_eq!(
                stack.pop(),
                Some(s.text),
                "{}: exit of {}",
                s.thread,
                s.text
            ),
            _ => {}
        }
    }
    assert!(
        open.values().all(Vec::is_empty),
        "spans left open: {open:?}"
    );
    assert_eq!(open.len(), WORKERS + 1);
}
