//! Opening a ring file: header, status, crash record, and access to lanes and checkpoints.

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;

use flightrec_schemas::header::{
    CrashRecord, FormatError, HeaderInfo, LaneInfo, LiveWords, Status,
};
use flightrec_schemas::layout::{header as h, lane_control, HEADER_SIZE};

use crate::error::OpenError;
use crate::map::RingMap;

/// How the writer ended, as far as a reader can tell.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Fate {
    /// The writer is alive and recording.
    Running,
    /// It shut down cleanly.
    Exited,
    /// It recorded its own death: a panic or a fatal signal (see the crash record).
    Crashed,
    /// It vanished without a word: SIGKILL, the OOM killer, or a power loss. Its status still
    /// says running but its process is gone.
    Died,
}

impl Fate {
    /// Lower-case name, as in the JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Fate::Running => "running",
            Fate::Exited => "exited",
            Fate::Crashed => "crashed",
            Fate::Died => "died",
        }
    }
}

/// An open, validated ring file.
pub struct Ring {
    path: PathBuf,
    map: RingMap,
    header: HeaderInfo,
}

impl Ring {
    /// Opens `path` read-only and validates its header. Works while the writer runs and after
    /// it died; never changes the file.
    ///
    /// ```
    /// let err = flightrec_replayer::Ring::open("/definitely/not/here.ring".as_ref()).err().unwrap();
    /// assert!(err.to_string().contains("not/here.ring"));
    /// ```
    pub fn open(path: &Path) -> Result<Ring, OpenError> {
        let map = RingMap::open(path).map_err(|error| OpenError::Io {
            path: path.to_owned(),
            error,
        })?;
        // The writer stores the status word last, with release ordering: read it first, so a
        // nonzero status guarantees a complete header page.
        let status = map
            .words(h::STATUS, 1)
            .map_or(0, |w| w[0].load(Ordering::Acquire));
        let page = map
            .copy(0, HEADER_SIZE.min(map.len() & !7))
            .unwrap_or_default();
        let format_error = |error| OpenError::Format {
            path: path.to_owned(),
            error,
        };
        let not_ready = || OpenError::NotReady {
            path: path.to_owned(),
        };
        let header = match HeaderInfo::decode(&page, map.len()) {
            Ok(header) => header,
            // A ring file half laid out: its header page may still be arriving.
            Err(FormatError::BadField { .. } | FormatError::BadLane { .. }) if status == 0 => {
                return Err(not_ready())
            }
            Err(error) => return Err(format_error(error)),
        };
        if Status::from_code(status).is_none() {
            if status == 0 {
                return Err(not_ready());
            }
            return Err(format_error(FormatError::BadField {
                field: "status",
                offset: h::STATUS,
                problem: format!("{status} is not a known status (1 running, 2 exited, 3 crashed)"),
            }));
        }
        Ok(Ring {
            path: path.to_owned(),
            map,
            header,
        })
    }

    /// Where the file is.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The validated header.
    pub fn header(&self) -> &HeaderInfo {
        &self.header
    }

    /// A fresh copy of the header page (its mutable words may have changed since opening).
    pub fn header_page(&self) -> Vec<u8> {
        self.map
            .copy(0, HEADER_SIZE)
            .expect("the header was validated at open")
    }

    /// The header's mutable words, read now.
    pub fn live(&self) -> LiveWords {
        LiveWords::decode(&self.header_page())
    }

    /// The crash record, if the writer left one. A record the writer died while writing is
    /// reported as an error naming its offset.
    pub fn crash(&self) -> Result<Option<CrashRecord>, flightrec_schemas::header::FormatError> {
        CrashRecord::decode(&self.header_page())
    }

    /// How the writer ended.
    pub fn fate(&self) -> Fate {
        match self.live().status {
            Some(Status::Exited) => Fate::Exited,
            Some(Status::Crashed) => Fate::Crashed,
            _ if writer_alive(&self.header) => Fate::Running,
            _ => Fate::Died,
        }
    }

    /// The mapping, for the recovery code.
    pub(crate) fn map(&self) -> &RingMap {
        &self.map
    }

    /// The name stored in a lane's control block (thread name, or `input`).
    pub fn lane_name(&self, lane: &LaneInfo) -> String {
        let bytes = self
            .map
            .copy(
                lane.offset + lane_control::NAME,
                lane_control::NAME_CAP as u64,
            )
            .unwrap_or_default();
        let len = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
        String::from_utf8_lossy(&bytes[..len]).into_owned()
    }

    /// A word of a lane's control block.
    pub(crate) fn lane_control(&self, lane: &LaneInfo, field: u64) -> u64 {
        self.map
            .words(lane.offset + field, 1)
            .map_or(0, |w| w[0].load(Ordering::Acquire))
    }
}

/// Whether the writer process still runs: same pid, not exited (a zombie not yet reaped has),
/// and the same start time, so a later process that reused the pid is not mistaken for the
/// writer.
fn writer_alive(header: &HeaderInfo) -> bool {
    let this_host = nix_hostname();
    if !header.hostname.is_empty() && this_host.as_deref().is_some_and(|h| h != header.hostname) {
        // Written on another machine: no way to tell, so trust the status word.
        return true;
    }
    match flightrec_schemas::process::running_start_ticks(header.pid) {
        None => false,
        Some(start) => header.process_start == 0 || start == header.process_start,
    }
}

fn nix_hostname() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_owned())
}
