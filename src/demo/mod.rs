//! The built-in demo: a ledger service with a latent bug, recorded until it dies.

pub mod ledger;
pub mod service;
pub mod traffic;

pub use ledger::{Ledger, LedgerInput};
pub use traffic::Traffic;
