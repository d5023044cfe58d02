use std::path::PathBuf;

use flightrec_schemas::header::FormatError;

/// Why a ring file cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// The file could not be opened or mapped.
    #[error("cannot read {path}: {error}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What the system said.
        error: std::io::Error,
    },
    /// The header is not a valid ring header.
    #[error("{path}: {error}")]
    Format {
        /// The file.
        path: PathBuf,
        /// What is wrong, and where.
        error: FormatError,
    },
    /// The writer has created the file but not finished laying it out yet.
    #[error(
        "{path}: the writer is still creating this file (status word not yet written); try again"
    )]
    NotReady {
        /// The file.
        path: PathBuf,
    },
}
