//! A tiny machine for the crate's documentation examples.

use flightrec_schemas::{Machine, Tick};
use serde::{Deserialize, Serialize};

/// Counts.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Counter {
    /// The count.
    pub count: u64,
}

impl Machine for Counter {
    const NAME: &'static str = "counter";
    const VERSION: u32 = 1;
    type Input = u64;
    fn apply(&mut self, input: &u64, _tick: Tick) {
        self.count += input;
    }
}
