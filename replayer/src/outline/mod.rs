//! States flattened to tokens ([`Flat`]) and what changed between two of them ([`diff`] as
//! one-line previews for a view, [`tree_diff`] as [`crate::tree::diff`] gives it), without
//! building trees: a state of 65,536 accounts flattens in a few milliseconds where its tree
//! takes tens, and the diff skips every unchanged subtree in one comparison loop. The terminal
//! UI shows states through these, and an export computes every input's diff with them.

mod diff;
mod flat;

pub use diff::{diff, tree_diff, Change};
pub use flat::{Children, Compound, Flat, FlatError, Kind, Label, Token};
