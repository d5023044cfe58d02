//! Stepping back through a wide snapshot interval: every state is the one reached forwards, and
//! the states kept along the first walk back spare the later steps most of the re-applying.

use std::sync::atomic::{AtomicU64, Ordering};

use flightrec_recorder::{Builder, Machine, Tick};
use flightrec_replayer::History;
use serde::{Deserialize, Serialize};

/// `apply` calls made by any `Wide` in this test binary.
static APPLIES: AtomicU64 = AtomicU64::new(0);

/// A large state that is dear to encode and cheap to change, so the replay spaces its snapshots
/// widely (encoding them should cost a small share of applying).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct Wide {
    cells: Vec<u64>,
    applied: u64,
}

const CELLS: usize = 1 << 15;
const INPUTS: u64 = 300_000;
const STEPS_BACK: usize = 3_000;

impl Machine for Wide {
    const NAME: &'static str = "wide";
    const VERSION: u32 = 1;
    type Input = u32;

    fn apply(&mut self, input: &u32, _tick: Tick) {
        APPLIES.fetch_add(1, Ordering::Relaxed);
        let cell = *input as usize % CELLS;
        self.cells[cell] = self.cells[cell]
            .wrapping_mul(31)
            .wrapping_add(*input as u64);
        self.applied += 1;
    }
}

fn input(n: u64) -> u32 {
    (n.wrapping_mul(0x9E37_79B9) >> 7) as u32
}

#[test]
fn stepping_back_through_a_wide_interval_is_exact_and_reapplies_little() {
    let dir = tempfile::tempdir().unwrap();
    let wide = Wide {
        cells: vec![0; CELLS],
        applied: 0,
    };
    let mut recorded = Builder::new()
        .path(dir.path().join("wide.ring"))
        .input_lane_bytes(32 << 20)
        .trace_lanes(1)
        .trace_lane_bytes(64 << 10)
        .state_capacity(1 << 20)
        .checkpoint_every_inputs(u32::MAX as u64)
        .checkpoint_every(std::time::Duration::from_secs(3600))
        .crash_capture(false)
        .counters(false)
        .build(wide.clone())
        .unwrap();
    for n in 0..INPUTS {
        recorded.apply(&input(n));
    }
    let path = recorded.finish();
    let mut history = History::<Wide>::open(&path).unwrap();
    assert_eq!(history.len() as u64, INPUTS);

    // The states of the last steps, computed independently.
    let mut expected = wide;
    let mut last = Vec::new();
    for n in 0..INPUTS {
        expected.apply(&input(n), Tick { seq: n, unix_ns: 0 });
        if n >= INPUTS - STEPS_BACK as u64 {
            last.push(expected.clone());
        }
    }
    let interval = history.snapshot_interval();
    let end = history.len() - 1;
    assert_eq!(history.state_after(end), Some(&last[STEPS_BACK - 1]));
    let before = APPLIES.load(Ordering::Relaxed);
    for step in 1..STEPS_BACK {
        let index = end - step;
        assert_eq!(
            history.state_after(index),
            Some(&last[STEPS_BACK - 1 - step]),
            "{step} steps back, at {index}"
        );
    }
    let applies = APPLIES.load(Ordering::Relaxed) - before;
    // Without the kept states, each step re-applies from the snapshot before it: on average
    // about half an interval. With them, the first walk back costs up to an interval and the
    // rest a few thousand inputs each.
    let from_snapshots = (STEPS_BACK as u64 - 1) * (interval as u64 / 2);
    eprintln!("interval {interval}: {applies} applies; {from_snapshots} from snapshots alone");
    if interval >= 4096 {
        assert!(
            applies * 4 < from_snapshots,
            "stepping back re-applied {applies} inputs; interval {interval}"
        );
    }
}
