//! The value at one path of a serializable value, without building the whole tree.

use serde::Serialize;

use crate::tree::{tree_of, Segment, Value};

/// The value at `path` inside `value`'s tree, as [`crate::tree::tree_of`] would show it, or
/// `None` where the path does not exist.
pub fn project<T: Serialize + ?Sized>(value: &T, path: &[Segment]) -> Option<Value> {
    let tree = tree_of(value);
    crate::tree::Path(path.to_vec()).lookup(&tree).cloned()
}
