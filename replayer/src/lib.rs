//! The reader side of flightrec: opens a ring file as untrusted input, recovers the committed
//! records of every lane and the checkpoints, and summarises what survived.
//!
//! ```no_run
//! use flightrec_replayer::{Ring, Summary};
//! let ring = Ring::open("/dev/shm/ledger-1234-1700000000.ring".as_ref())?;
//! let summary = Summary::of(&ring);
//! println!("{} {}: {}", summary.machine.name, summary.machine.version, summary.status.as_str());
//! # Ok::<(), flightrec_replayer::OpenError>(())
//! ```

mod error;
pub mod export;
mod follow;
mod history;
mod map;
pub mod outline;
mod progress;
mod project;
mod recover;
mod ring;
mod snapshots;
mod summary;
mod trail;
pub mod tree;

pub use error::OpenError;
pub use follow::{FollowStats, Followed, FollowedRecord, Follower, GapCause, Start};
pub use history::{
    replaying, Divergence, HashCheck, History, InputEvent, ReplayError, ReplayOptions, ReplayPanic,
    TraceRecord, Verification, DEFAULT_SNAPSHOT_BUDGET, MAX_PANICS_KEPT,
};
pub use progress::{progress_line, Progress, Stage};
pub use project::project;
pub use recover::{
    recover_checkpoints, recover_lane, Checkpoint, CheckpointProblem, LaneRecords, Record, Records,
    Recovered, RecoveredLane,
};
pub use ring::{Fate, Ring};
pub use summary::{
    replay_base, signal_name, CheckpointSummary, CrashSummary, LaneSummary, Losses, MachineId,
    Summary,
};
