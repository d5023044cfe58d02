//! A tiny machine for the documentation examples. Not part of the API.

use serde::{Deserialize, Serialize};

use crate::{Builder, Machine, Recorded, Tick};

/// Adds up its inputs.
#[derive(Default, Serialize, Deserialize)]
pub struct Counter {
    /// Sum of all inputs.
    pub total: u64,
}

impl Machine for Counter {
    const NAME: &'static str = "counter";
    const VERSION: u32 = 1;
    type Input = u64;
    fn apply(&mut self, input: &u64, _tick: Tick) {
        self.total += input;
    }
}

/// Removes a directory when dropped.
pub struct TempDir(pub std::path::PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A recorded `Counter` in a fresh temporary directory, removed when the guard drops.
pub fn recorded_counter() -> (Recorded<Counter>, TempDir) {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    let name = format!(
        "flightrec-doc-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    );
    let dir = std::env::temp_dir().join(name);
    let recorded = Builder::new()
        .dir(&dir)
        .input_lane_bytes(64 << 10)
        .trace_lanes(2)
        .trace_lane_bytes(16 << 10)
        .state_capacity(4096)
        .build(Counter::default())
        .expect("create a ring file in the temporary directory");
    (recorded, TempDir(dir))
}
