//! Atomics used by the shared-memory protocols, swapped for loom's under `--cfg loom` so the
//! same code is model-checked.

#[cfg(loom)]
pub use loom::sync::atomic::{fence, AtomicU64, Ordering};
#[cfg(not(loom))]
pub use std::sync::atomic::{fence, AtomicU64, Ordering};
