//! What the recorder does at its limits: every loss is counted, recording never stops, and
//! replay stays possible.

use flightrec_recorder::{Builder, Level, Machine, Recorded, Tick};
use flightrec_replayer::{recover_lane, Fate, Ring, Summary};
use serde::{Deserialize, Serialize};

/// Appends its inputs' lengths; its state grows with every input.
#[derive(Default, Serialize, Deserialize)]
struct Log {
    lengths: Vec<u32>,
}

impl Machine for Log {
    const NAME: &'static str = "log";
    const VERSION: u32 = 1;
    type Input = Vec<u8>;
    fn apply(&mut self, input: &Vec<u8>, _tick: Tick) {
        self.lengths.push(input.len() as u32);
    }
}

fn small(dir: &tempfile::TempDir) -> Builder {
    Builder::new()
        .dir(dir.path())
        .input_lane_bytes(16 << 10)
        .trace_lanes(2)
        .trace_lane_bytes(8 << 10)
        .state_capacity(64 << 10)
        .crash_capture(false)
}

fn summary_of(recorded: Recorded<Log>) -> Summary {
    let path = recorded.finish();
    Summary::of(&Ring::open(&path).expect("the recorder wrote a valid file"))
}

#[test]
fn a_third_tracing_thread_is_dropped_and_counted_when_two_lanes_exist() {
    let dir = tempfile::tempdir().unwrap();
    let recorded = small(&dir).build(Log::default()).unwrap();
    let tracer = recorded.tracer();
    let barrier = std::sync::Barrier::new(3);
    std::thread::scope(|s| {
        for _ in 0..3 {
            s.spawn(|| {
                tracer.event(Level::Info, "hello");
                // Hold the lane until all three threads have tried.
                barrier.wait();
            });
        }
    });
    let summary = summary_of(recorded);
    assert_eq!(summary.losses.trace_dropped_no_lane, 1);
    let traced: u64 = summary.lanes[1..].iter().map(|l| l.retained).sum();
    assert_eq!(
        traced,
        2 * 2,
        "two events, each after its thread's name record"
    );
}

#[test]
fn a_lane_given_back_by_an_exited_thread_continues_its_numbering() {
    let dir = tempfile::tempdir().unwrap();
    let recorded = small(&dir).trace_lanes(1).build(Log::default()).unwrap();
    let tracer = recorded.tracer();
    for round in 0..3 {
        let tracer = tracer.clone();
        std::thread::spawn(move || {
            for i in 0..5 {
                flightrec_recorder::event!(tracer, Level::Debug, "round {round} event {i}");
            }
        })
        .join()
        .unwrap();
    }
    let path = recorded.finish();
    let ring = Ring::open(&path).unwrap();
    let lane = recover_lane(&ring, &ring.header().lanes[1]);
    let seqs: Vec<u64> = lane.seqs().collect();
    // Each round: the thread's name record, then its five events.
    assert_eq!(seqs, (0..18).collect::<Vec<_>>());
    assert_eq!(Summary::of(&ring).losses.trace_dropped_no_lane, 0);
}

#[test]
fn an_input_too_large_for_the_lane_is_counted_and_replay_resumes_after_it() {
    let dir = tempfile::tempdir().unwrap();
    let mut recorded = small(&dir).build(Log::default()).unwrap();
    recorded.apply(&vec![1; 10]);
    recorded.apply(&vec![2; 100_000]);
    recorded.apply(&vec![3; 10]);
    assert_eq!(
        recorded.machine().lengths,
        [10, 100_000, 10],
        "the oversized input is still applied"
    );
    let summary = summary_of(recorded);
    let input = &summary.lanes[0];
    assert_eq!(
        (
            input.recorded,
            input.retained,
            input.dropped_too_large,
            input.gaps
        ),
        (3, 2, 1, 1)
    );
    assert!(
        summary.checkpoints.iter().any(|c| c.seq == 2),
        "a checkpoint right after the dropped input"
    );
    assert_eq!(summary.replay_from, Some(2));
}

#[test]
fn a_state_too_large_for_its_slot_fails_checkpoints_but_not_recording() {
    let dir = tempfile::tempdir().unwrap();
    let mut recorded = small(&dir)
        .state_capacity(1024)
        .checkpoint_every_inputs(100)
        .build(Log::default())
        .unwrap();
    // The slot holds a page less its header: 3,840 bytes, about 3,800 one-byte lengths.
    for _ in 0..5_000 {
        recorded.apply(&vec![0; 8]);
    }
    let summary = summary_of(recorded);
    assert!(summary.losses.checkpoints_failed > 0);
    assert_eq!(summary.lanes[0].recorded, 5_000);
    assert_eq!(summary.status, Fate::Exited);
}

#[test]
fn a_wrapped_input_lane_still_starts_at_a_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    // 256 slots; the cadence alone (10,000 inputs) would let the lane wrap past its checkpoint.
    let mut recorded = small(&dir)
        .checkpoint_every_inputs(10_000)
        .build(Log::default())
        .unwrap();
    for i in 0..5_000u32 {
        recorded.apply(&vec![0; (i % 70) as usize]);
    }
    let summary = summary_of(recorded);
    let input = &summary.lanes[0];
    assert!(input.lost > 0, "the lane wrapped");
    let base = summary
        .replay_from
        .expect("some checkpoint covers the retained inputs");
    assert!(base >= input.first_seq.unwrap() && base <= input.recorded);
    assert!(input.recorded - base > 0);
}

/// A machine named with a path separator.
#[derive(Default, Serialize, Deserialize)]
struct Slashed;

impl Machine for Slashed {
    const NAME: &'static str = "../escape";
    const VERSION: u32 = 1;
    type Input = u8;
    fn apply(&mut self, _input: &u8, _tick: Tick) {}
}

#[test]
fn a_machine_name_unfit_for_the_header_or_a_file_name_is_refused_before_creating_anything() {
    let dir = tempfile::tempdir().unwrap();
    let error = small(&dir).build(Slashed).err().expect("refused");
    assert!(
        matches!(error, flightrec_recorder::RecorderError::Config(_)),
        "{error}"
    );
    assert!(error.to_string().contains("../escape"), "{error}");
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}
