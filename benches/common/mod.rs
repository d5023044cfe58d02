//! What the benchmarks share.

use std::path::Path;

/// The replay and export benchmarks' machine (the others use none of it).
#[allow(dead_code)]
pub mod accounts;

/// A fresh temporary directory for ring files: on tmpfs where there is one, as in production.
pub fn ring_dir() -> tempfile::TempDir {
    let shm = Path::new("/dev/shm");
    let made = if shm.is_dir() {
        tempfile::Builder::new()
            .prefix("flightrec-bench-")
            .tempdir_in(shm)
    } else {
        tempfile::tempdir()
    };
    made.expect("create a temporary directory for ring files")
}
