//! `History`: every position reachable forwards and backwards with the same result, diffs and
//! "last change" of a field, the snapshot budget, trace events merged by time, and the
//! verification of recorded hashes, including a state whose encoding is not deterministic.

use std::collections::HashMap;
use std::path::PathBuf;

use flightrec_recorder::{Builder, Level, Machine, Tick};
use flightrec_replayer::tree::{Path, Value};
use flightrec_replayer::{History, Progress, ReplayError, ReplayOptions, Stage};
use serde::{Deserialize, Serialize};

/// Slots of a few named registers; each input sets one register.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
struct Registers {
    values: Vec<u64>,
    writes: u64,
    last_unix_ns: u64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct Set {
    register: u8,
    value: u64,
}

impl Machine for Registers {
    const NAME: &'static str = "registers";
    const VERSION: u32 = 1;
    type Input = Set;

    fn apply(&mut self, input: &Set, tick: Tick) {
        let at = input.register as usize;
        if self.values.len() <= at {
            self.values.resize(at + 1, 0);
        }
        self.values[at] = input.value;
        self.writes += 1;
        self.last_unix_ns = tick.unix_ns;
    }
}

/// The input number `n` of every recording here: register `n % 5` gets `n * 7`.
fn input(n: u64) -> Set {
    Set {
        register: (n % 5) as u8,
        value: n * 7,
    }
}

fn builder(dir: &tempfile::TempDir, name: &str) -> Builder {
    Builder::new()
        .path(dir.path().join(format!("{name}.ring")))
        .input_lane_bytes(256 << 10)
        .trace_lanes(2)
        .trace_lane_bytes(64 << 10)
        .state_capacity(64 << 10)
        .checkpoint_every_inputs(500)
        .crash_capture(false)
        .counters(false)
}

fn recorded_registers(dir: &tempfile::TempDir, count: u64) -> PathBuf {
    let builder = builder(dir, "registers");
    let mut recorded = builder.build(Registers::default()).unwrap();
    let tracer = recorded.tracer();
    for n in 0..count {
        recorded.apply(&input(n));
        if n % 100 == 0 {
            tracer.event(Level::Info, &format!("applied {n}"));
        }
    }
    recorded.finish()
}

/// No memory for snapshots: every position is replayed from the base checkpoint.
fn no_snapshots() -> ReplayOptions {
    ReplayOptions {
        snapshot_budget: 0,
        ..ReplayOptions::default()
    }
}

#[test]
fn every_state_is_the_same_reached_forwards_backwards_or_at_random() {
    let dir = tempfile::tempdir().unwrap();
    let ring = recorded_registers(&dir, 1_300);
    let mut history = History::<Registers>::open(&ring).unwrap();
    assert!(
        history.snapshot_bytes() > 0,
        "replays start from snapshots too"
    );
    assert!(history.verification().passed());
    assert_eq!(history.base_seq(), 1_000);
    assert_eq!(history.len(), 300);
    // Forwards, computing the expected states independently.
    let mut expected = history.base_state().clone();
    let mut forwards = Vec::new();
    for index in 0..history.len() {
        let event = history.input(index).unwrap().clone();
        assert_eq!(event.input, input(event.seq));
        expected.apply(
            &event.input,
            Tick {
                seq: event.seq,
                unix_ns: event.unix_ns,
            },
        );
        assert_eq!(
            history.state_after(index),
            Some(&expected),
            "forwards at {index}"
        );
        forwards.push(expected.clone());
    }
    for index in (0..history.len()).rev() {
        assert_eq!(
            history.state_after(index),
            Some(&forwards[index]),
            "backwards at {index}"
        );
    }
    for index in [250, 3, 299, 0, 128, 64, 63, 65] {
        assert_eq!(
            history.state_after(index),
            Some(&forwards[index]),
            "jump to {index}"
        );
    }
    assert_eq!(history.state_after(300), None);
    assert!(history.input(300).is_none() && history.input_tree(300).is_none());
    let mut bare = History::<Registers>::open_with(&ring, &no_snapshots()).unwrap();
    assert_eq!(bare.snapshot_bytes(), 0);
    for index in [299, 0, 150] {
        assert_eq!(
            bare.state_after(index),
            Some(&forwards[index]),
            "no snapshots, {index}"
        );
    }
}

#[test]
fn a_diff_names_what_one_input_changed() {
    let dir = tempfile::tempdir().unwrap();
    let ring = recorded_registers(&dir, 1_100);
    let mut history = History::<Registers>::open(&ring).unwrap();
    let index = 42; // input 1042 sets register 2 to 7294
    let changes = history.diff(index, 100).unwrap();
    let paths: Vec<String> = changes.iter().map(|c| c.path.to_string()).collect();
    assert_eq!(paths, ["writes", "last_unix_ns", "values[2]"]);
    let register = &changes[2];
    assert_eq!(register.before, Some(Value::from(1037 * 7)));
    assert_eq!(register.after, Some(Value::from(1042 * 7)));
    assert_eq!(history.diff(100, 10), None);
}

#[test]
fn the_last_change_of_a_field_is_found_and_the_one_before_it() {
    let dir = tempfile::tempdir().unwrap();
    let ring = recorded_registers(&dir, 1_300);
    let mut history = History::<Registers>::open(&ring).unwrap();
    let register_3 = Path::parse("values[3]").unwrap();
    // Register 3 is set by inputs 1003, 1008, ...: positions 3, 8, ...
    assert_eq!(history.last_change(&register_3, 299), Some(298));
    assert_eq!(history.last_change(&register_3, 297), Some(293));
    assert_eq!(history.last_change(&register_3, 130), Some(128));
    assert_eq!(history.last_change(&register_3, 2), None);
    let writes = Path::parse("writes").unwrap();
    assert_eq!(history.last_change(&writes, 77), Some(77));
    let missing = Path::parse("nothing.here").unwrap();
    assert_eq!(history.last_change(&missing, 299), None);
}

#[test]
fn opening_reports_its_progress_to_the_end() {
    let dir = tempfile::tempdir().unwrap();
    let ring = recorded_registers(&dir, 3_000);
    let progress = std::sync::Arc::new(Progress::default());
    assert_eq!(progress.stage(), Stage::Waiting);
    let options = ReplayOptions {
        progress: Some(progress.clone()),
        ..ReplayOptions::default()
    };
    let history = History::<Registers>::open_with(&ring, &options).unwrap();
    assert_eq!(progress.stage(), Stage::Done);
    assert_eq!(
        progress.inputs(),
        (history.len() as u64, history.len() as u64)
    );
}

#[test]
fn the_snapshot_budget_bounds_how_many_snapshots_are_kept() {
    let dir = tempfile::tempdir().unwrap();
    let ring = recorded_registers(&dir, 3_000);
    let roomy = History::<Registers>::open(&ring).unwrap();
    assert!(roomy.snapshot_bytes() > 0);
    let budget = roomy.snapshot_bytes() / 2;
    let tight = History::<Registers>::open_with(
        &ring,
        &ReplayOptions {
            snapshot_budget: budget,
            ..ReplayOptions::default()
        },
    )
    .unwrap();
    assert!(
        tight.snapshot_bytes() <= budget,
        "{} > {budget}",
        tight.snapshot_bytes()
    );
    assert!(tight.snapshot_interval() > roomy.snapshot_interval().min(64));
}

#[test]
fn trace_events_keep_their_threads_name_when_a_lane_changes_hands() {
    let dir = tempfile::tempdir().unwrap();
    let builder = builder(&dir, "traced");
    let mut recorded = builder.build(Registers::default()).unwrap();
    let tracer = recorded.tracer();
    let worker = {
        let tracer = tracer.clone();
        std::thread::Builder::new()
            .name("worker".into())
            .spawn(move || {
                for n in 0..50 {
                    tracer.event(Level::Debug, &format!("worker {n}"));
                }
            })
            .unwrap()
    };
    // The worker may exit before this thread first traces: this thread then takes over its
    // lane, and each event must still carry the name of the thread that wrote it.
    worker.join().unwrap();
    for n in 0..50 {
        recorded.apply(&input(n));
        tracer.event(Level::Info, &format!("main {n}"));
    }
    let ring = recorded.finish();
    let history = History::<Registers>::open(&ring).unwrap();
    let traces = history.traces();
    assert_eq!(
        traces.len(),
        100,
        "the threads' name records are not events"
    );
    assert!(traces.windows(2).all(|w| w[0].ticks <= w[1].ticks));
    for trace in traces {
        let message = &trace.event.as_ref().expect("decodes").message;
        let writer = if message.starts_with("worker") {
            "worker"
        } else {
            "trace_events_keep_their_threads_name_when_a_lane_changes_hands"
        };
        assert!(
            writer.starts_with(trace.thread.as_str()),
            "{message} named {}",
            trace.thread
        );
    }
}

/// A state kept in a `HashMap`: its encoding follows the map's random iteration order, so the
/// same values encode differently after a decode.
#[derive(Clone, Default, Serialize, Deserialize)]
struct Scattered {
    map: HashMap<u64, u64>,
}

impl Machine for Scattered {
    const NAME: &'static str = "scattered";
    const VERSION: u32 = 1;
    type Input = u64;
    fn apply(&mut self, input: &u64, _tick: Tick) {
        self.map.insert(*input, *input);
    }
}

#[test]
fn a_state_whose_encoding_is_not_deterministic_is_reported_at_the_base() {
    let dir = tempfile::tempdir().unwrap();
    let builder = builder(&dir, "scattered");
    let mut recorded = builder.build(Scattered::default()).unwrap();
    for n in 0..700 {
        recorded.apply(&n);
    }
    let ring = recorded.finish();
    let history = History::<Scattered>::open(&ring).unwrap();
    let divergence = history
        .verification()
        .divergence
        .as_ref()
        .expect("a 500-entry HashMap re-encodes in another order");
    assert_eq!((divergence.from_seq, divergence.to_seq), (500, 500));
    assert!(divergence.fields.is_empty(), "{:?}", divergence.fields);
    assert!(divergence
        .note
        .as_deref()
        .unwrap_or("")
        .contains("not deterministic"));
}

#[test]
fn a_file_of_another_machine_is_refused_by_name_and_version() {
    let dir = tempfile::tempdir().unwrap();
    let ring = recorded_registers(&dir, 10);
    match History::<Scattered>::open(&ring) {
        Err(ReplayError::WrongMachine {
            found,
            found_version,
            expected,
            ..
        }) => assert_eq!(
            (found.as_str(), found_version, expected),
            ("registers", 1, "scattered")
        ),
        Err(other) => panic!("{other}"),
        Ok(_) => panic!("replayed through the wrong machine"),
    }
}
