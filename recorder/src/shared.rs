//! What every handle on one ring file shares.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use flightrec_schemas::clock::Clock;
use flightrec_schemas::header::LaneInfo;

use crate::file::RingFile;

/// The file, its clock and its trace lanes.
pub(crate) struct Shared {
    /// Distinguishes recorders in one process (a thread may trace into several).
    pub id: u64,
    pub file: Arc<RingFile>,
    pub clock: Clock,
    pub trace_lanes: Vec<LaneInfo>,
}

impl Shared {
    pub fn new(file: Arc<RingFile>, clock: Clock, trace_lanes: Vec<LaneInfo>) -> Shared {
        static NEXT_ID: AtomicU64 = AtomicU64::new(1);
        Shared {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            file,
            clock,
            trace_lanes,
        }
    }

    /// Adds one to the header counter at `offset`.
    #[cold]
    pub fn count(&self, offset: u64) {
        self.file.word(offset).fetch_add(1, Ordering::Relaxed);
    }
}
