//! The writer side of flightrec: a service links this crate to keep, always on, a ring of its
//! recent inputs, trace events and state checkpoints in a shared-memory file that survives a
//! crash.
//!
//! Three tiers:
//! - [`record`]: one line, defaults and environment overrides.
//! - [`Builder`]: every setting, each documented with its default and environment variable.
//! - [`Recorded`] and [`Tracer`]: the handles on the machine's thread and on any thread.
//!
//! ```
//! # use flightrec_recorder::doc_example::Counter;
//! # let dir = std::env::temp_dir().join(format!("flightrec-doc-lib-{}", std::process::id()));
//! # std::env::set_var("FLIGHTREC_DIR", &dir);
//! let mut recorded = flightrec_recorder::record(Counter::default())?;
//! recorded.apply(&1);
//! println!("recording to {}", recorded.path().display());
//! # drop(recorded); std::fs::remove_dir_all(&dir).unwrap();
//! # Ok::<(), flightrec_recorder::RecorderError>(())
//! ```

mod builder;
mod checkpoint;
mod clock;
mod counters;
mod crash;
mod error;
mod file;
mod lane;
mod recorded;
mod shared;
mod trace;
#[cfg(feature = "tracing")]
mod tracing_layer;

#[doc(hidden)]
pub mod doc_example;

pub use builder::{parse_size, Builder, ENV_DIR, ENV_PATH};
pub use crash::FATAL_SIGNALS;
pub use error::RecorderError;
pub use flightrec_schemas::trace::Level;
pub use flightrec_schemas::{Machine, Tick};
pub use recorded::Recorded;
pub use trace::Tracer;
#[cfg(feature = "tracing")]
pub use tracing_layer::FlightrecLayer;

/// Starts recording `machine` with the default settings, overridden by the environment
/// (`FLIGHTREC_PATH`, `FLIGHTREC_DIR`, …; see [`Builder`]).
pub fn record<M: Machine>(machine: M) -> Result<Recorded<M>, RecorderError> {
    Builder::new().build(machine)
}
