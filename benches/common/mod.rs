//! What the benchmarks share.

use std::path::Path;

/// The replay and export benchmarks' machine (the others use none of it).
#[allow(dead_code)]
pub mod accounts;

/// Ratios measured within each sample, for the targets that are ratios to a baseline.
#[allow(dead_code)]
pub mod paired;

/// A fresh temporary directory for ring files: on tmpfs where there is one, as in production.
/// Its name carries this process's id, so that the directories of benchmarks that were killed
/// (a tmpfs lives in memory: a few of them starve the next run) are found and removed here.
pub fn ring_dir() -> tempfile::TempDir {
    let shm = Path::new("/dev/shm");
    let prefix = format!("flightrec-bench-{}-", std::process::id());
    let made = if shm.is_dir() {
        remove_abandoned(shm);
        tempfile::Builder::new().prefix(&prefix).tempdir_in(shm)
    } else {
        tempfile::Builder::new().prefix(&prefix).tempdir()
    };
    made.expect("create a temporary directory for ring files")
}

/// Removes the ring directories in `dir` of benchmark processes that no longer run.
fn remove_abandoned(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let pid = name
            .to_str()
            .and_then(|n| n.strip_prefix("flightrec-bench-"))
            .and_then(|rest| rest.split('-').next())
            .and_then(|pid| pid.parse::<u32>().ok());
        let gone = pid.is_some_and(|pid| !Path::new(&format!("/proc/{pid}")).exists());
        if gone {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}
