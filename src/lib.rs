//! flightrec: a deterministic record-and-replay flight recorder for Rust services.
//!
//! This facade re-exports the parts:
//! - [`recorder`]: what a service links to record (`flightrec_recorder`).
//! - [`replayer`]: reading ring files after the fact (`flightrec_replayer`).
//! - [`schemas`]: the file format and the [`Machine`] trait (`flightrec_schemas`).
//! - [`cli`]: the `flightrec` commands, for a service's own binary.
//!
//! ```
//! use flightrec::{Machine, Tick};
//! use serde::{Deserialize, Serialize};
//!
//! #[derive(Default, Serialize, Deserialize)]
//! struct Hits { count: u64 }
//!
//! impl Machine for Hits {
//!     const NAME: &'static str = "hits";
//!     const VERSION: u32 = 1;
//!     type Input = ();
//!     fn apply(&mut self, _: &(), _: Tick) { self.count += 1; }
//! }
//!
//! let dir = std::env::temp_dir().join(format!("flightrec-facade-doc-{}", std::process::id()));
//! let mut recorded = flightrec::recorder::Builder::new().dir(&dir).build(Hits::default())?;
//! recorded.apply(&());
//! let path = recorded.finish();
//! let ring = flightrec::replayer::Ring::open(&path)?;
//! assert_eq!(flightrec::replayer::Summary::of(&ring).lanes[0].retained, 1);
//! # std::fs::remove_dir_all(&dir)?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub mod cli;
pub mod demo;

pub use flightrec_recorder as recorder;
pub use flightrec_replayer as replayer;
pub use flightrec_schemas as schemas;
pub use flightrec_schemas::{Machine, Tick};
pub use flightrec_tui as tui;

/// The README's examples, compiled as doctests so they stay true.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
