//! The state pane's model: a state flattened once per position ([`Flat`]), what an input changed
//! ([`diff`]), and the rows of the tree as folded by the user ([`Expanded`], [`window`]), computed
//! only for the rows on screen.

mod diff;
mod flat;
mod rows;

pub use diff::{diff, Change};
pub use flat::{Flat, Kind, Label, Token};
pub use rows::{window, Expanded, Row, Window};
