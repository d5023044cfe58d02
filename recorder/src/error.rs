use std::path::PathBuf;

/// Why a ring file could not be created or a recorder not built.
#[derive(Debug, thiserror::Error)]
pub enum RecorderError {
    /// A file already exists at the path; ring files are never overwritten.
    #[error("{path} already exists; flightrec never overwrites a ring file (it may hold the evidence of an earlier crash): move it away or choose another path")]
    AlreadyExists {
        /// The path asked for.
        path: PathBuf,
    },
    /// The filesystem cannot hold the ring.
    #[error("not enough space for a {bytes}-byte ring file at {path}: {error} (free space on that filesystem, or make the lanes smaller)")]
    NoSpace {
        /// The path asked for.
        path: PathBuf,
        /// Bytes the ring needs.
        bytes: u64,
        /// What the system said.
        error: std::io::Error,
    },
    /// Any other failure to create, size or map the file.
    #[error("cannot create ring file {path}: {error}")]
    Io {
        /// The path asked for.
        path: PathBuf,
        /// What the system said.
        error: std::io::Error,
    },
    /// A setting is out of range.
    #[error("invalid recorder setting: {0}")]
    Config(String),
}
