//! The flightrec terminal UI: a time machine over a replayed [`History`]. It opens at the end of
//! the recording (the crash) and steps back through every input, showing the state after each,
//! what the input changed, and the trace events around it.
//!
//! The state and what each key does live in [`App`], which never touches a terminal; the panes
//! are `ratatui` widgets in [`view`]; [`run`] owns the terminal and the event loop.
//!
//! ```no_run
//! # type MyMachine = flightrec_tui::doc::Counter;
//! flightrec_tui::run::<MyMachine>("/dev/shm/my-service.ring".as_ref(), &Default::default())?;
//! # Ok::<(), flightrec_tui::TuiError>(())
//! ```
//!
//! [`History`]: flightrec_replayer::History

mod app;
#[doc(hidden)]
pub mod doc;
mod keys;
pub mod outline;
mod scan;
pub mod source;
mod term;
pub mod timeline;
pub mod view;

pub use app::{App, Focus};
pub use keys::{action, Action, HELP};
pub use source::{Facts, Source};
pub use term::{run, run_export, show, TuiError};
