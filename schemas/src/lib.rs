//! The contracts that the flightrec writer and readers agree on.
//!
//! - [`layout`]: every offset of the ring file (prose in `schemas/FORMAT.md`), and
//!   [`layout::FORMAT_VERSION`].
//! - [`header`]: the header page, encoded by the writer, decoded and validated by readers.
//! - [`slot`]: the lane record protocol, the one implementation both sides use.
//! - [`checkpoint`]: checkpoint slot headers and the state hash.
//! - [`Machine`]: what a service implements to be recorded and replayed.
//!
//! This crate changes rarely: a change here is a change of the file format.

pub mod checkpoint;
pub mod clock;
pub mod codec;
pub mod header;
pub mod layout;
mod machine;
pub mod process;
pub mod slot;
pub mod sync;
pub mod trace;

pub use machine::{CodecError, Machine, Tick};
