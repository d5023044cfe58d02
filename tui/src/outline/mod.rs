//! The state pane's model: a state flattened once per position ([`Flat`]), what an input changed
//! ([`diff`]), and the rows of the tree as folded by the user ([`Expanded`], [`window`]), computed
//! only for the rows on screen. The flattening and the diff are the replayer's
//! (`flightrec_replayer::outline`), which exports use too.

mod rows;

pub use flightrec_replayer::outline::{diff, Change, Flat, Kind, Label};
pub use rows::{window, Expanded, Row, Window};
