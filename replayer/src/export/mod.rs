//! Export files (`.flightrec`): one self-contained file holding a whole replayed history, so it
//! can be opened on another machine without the service's binary.
//!
//! The file is a header, LZ4-compressed chunks each holding one Cap'n Proto message
//! (`schemas/trace.capnp`), a footer indexing them, and a fixed trailer; the layout is in
//! `schemas/EXPORT.md`. [`ExportWriter`] writes one from parts (it does not depend on
//! [`History`](crate::History)); [`Export`] opens one as untrusted input: opening reads and
//! checks only the header, trailer and footer, and reaching any position costs decoding one
//! chunk of events, or one keyframe and at most one keyframe interval of diffs.
//!
//! ```no_run
//! use flightrec_replayer::export::{Export, ExportWriter, InputEntry, Metadata};
//! use flightrec_replayer::tree::{diff, Value};
//! let before = serde_json::json!({"count": 0});
//! let after = serde_json::json!({"count": 1});
//! let mut writer = ExportWriter::create("crash.flightrec".as_ref(), Metadata::default())?;
//! let input = serde_json::json!({"Deposit": {"amount": 5}});
//! writer.push_input(InputEntry { seq: 0, unix_ns: 0, summary: "Deposit", tree: &input, raw: &[] })?;
//! writer.push_keyframe(0, &after)?;
//! writer.push_diff(0, &diff(&before, &after, usize::MAX))?;
//! writer.finish()?;
//! let export = Export::open("crash.flightrec".as_ref())?;
//! assert_eq!(export.state_tree(0)?, after);
//! # Ok::<(), flightrec_replayer::export::ExportError>(())
//! ```

mod codec;
pub mod format;
mod from_history;
mod reader;
mod scratch;
mod text;
mod writer;

use std::path::PathBuf;

use flightrec_schemas::trace::TraceKind;

use crate::history::ReplayPanic;

pub use from_history::{
    export_history, trace_summary, verification_line, ExportSummary, HistoryExportOptions,
    DEFAULT_KEYFRAME_EVERY,
};
pub use reader::Export;
pub use writer::{ExportOptions, ExportWriter};

/// Why an export cannot be written or read.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// The system refused a read or a write.
    #[error("cannot read or write {path}: {error}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What the system said.
        error: std::io::Error,
    },
    /// The writer would replace a file, and was not asked to.
    #[error("{path} already exists (not overwritten)")]
    Exists {
        /// The file.
        path: PathBuf,
    },
    /// The header, trailer or footer is not valid.
    #[error("{path}: {what} (at offset {offset})")]
    Format {
        /// The file.
        path: PathBuf,
        /// Where in the file.
        offset: u64,
        /// What is wrong.
        what: String,
    },
    /// A chunk does not decode, or does not hold what the index says.
    #[error("{path}: chunk {chunk} at offset {offset}: {what}")]
    Chunk {
        /// The file.
        path: PathBuf,
        /// Its index in the footer.
        chunk: usize,
        /// Where its frame starts.
        offset: u64,
        /// What is wrong.
        what: String,
    },
    /// A position past the last input.
    #[error("{path}: position {position} is past the end ({len} inputs)")]
    OutOfRange {
        /// The file.
        path: PathBuf,
        /// The position asked for.
        position: u64,
        /// Inputs in the export.
        len: u64,
    },
    /// No keyframe at or before a position, so its state cannot be rebuilt.
    #[error("{path}: no keyframe at or before position {position}")]
    NoKeyframe {
        /// The file.
        path: PathBuf,
        /// The position asked for.
        position: u64,
    },
    /// A stored diff does not apply to the state before it (the writer was handed incomplete or
    /// inconsistent diffs).
    #[error("{path}: the diff of position {position} does not apply at {at}: {what}")]
    BadDiff {
        /// The file.
        path: PathBuf,
        /// The input whose diff it is.
        position: u64,
        /// The path of the change.
        at: String,
        /// What is wrong.
        what: String,
    },
    /// The writer was used out of order, or handed something it cannot store.
    #[error("{path}: {what}")]
    Misuse {
        /// The file being written.
        path: PathBuf,
        /// What was wrong.
        what: String,
    },
}

/// What was recorded, and what became of the recording process.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Metadata {
    /// Format version of the ring file the history was replayed from; 0 if none.
    pub ring_format_version: u32,
    /// The recorded machine's name.
    pub machine_name: String,
    /// Its version.
    pub machine_version: u32,
    /// Where it was recorded.
    pub host: String,
    /// The recording process.
    pub pid: u32,
    /// When the ring file was created, Unix ns.
    pub record_start_unix_ns: u64,
    /// When the recording ended (exit or crash), if known.
    pub record_end_unix_ns: Option<u64>,
    /// When the export was written, Unix ns (0 if unknown).
    pub exported_unix_ns: u64,
    /// What became of the process: "running", "exited", "crashed", "died", ...
    pub status: String,
    /// One line for people, if the process died.
    pub cause_of_death: Option<String>,
    /// The crash record, if one was written.
    pub crash: Option<Crash>,
    /// What the recording lost: counter name and count.
    pub losses: Vec<(String, u64)>,
    /// The replay's verification result, one line.
    pub verification: String,
    /// Input sequence number of position 0.
    pub base_seq: u64,
    /// Inputs between keyframes, as the writer intended; 0 if unknown.
    pub keyframe_interval: u32,
    /// Inputs whose `apply` panicked when the history was replayed for the export (the
    /// recorded crash, replayed): the first ones, in order, as [`History::panics`](crate::History::panics).
    pub replay_panics: Vec<ReplayPanic>,
    /// How many inputs panicked in all (`replay_panics` may hold fewer).
    pub replay_panic_count: u64,
}

/// A crash record.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Crash {
    /// "panic", "signal", ...
    pub kind: String,
    /// The fatal signal, if any.
    pub signal: Option<i32>,
    /// Its code (`si_code`), if any.
    pub code: Option<i32>,
    /// The faulting address, if any.
    pub fault_addr: Option<String>,
    /// Where a panic happened, if known.
    pub location: Option<String>,
    /// The panic message or signal description.
    pub message: String,
    /// The crashing thread's name.
    pub thread: String,
    /// Its id.
    pub tid: u32,
    /// When, Unix ns.
    pub time_unix_ns: u64,
}

/// Whether an event was applied or only traced.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventKind {
    /// An input, applied to the machine.
    Input,
    /// A trace event from some thread, shown but never applied.
    Trace,
}

/// One event of the timeline, as read back.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    /// Input or trace.
    pub kind: EventKind,
    /// An input's position; for a trace event, the number of inputs before it.
    pub position: u64,
    /// Sequence number in its lane.
    pub seq: u64,
    /// Unix time, ns.
    pub unix_ns: u64,
    /// The lane's (inputs) or thread's (trace events) name.
    pub name: String,
    /// Trace level, 1 error ..= 5 trace; 0 for inputs and for trace records that did not
    /// decode.
    pub level: u8,
    /// Trace events: what the event marks (a point event, a span's entry or exit, a thread
    /// taking its lane); [`TraceKind::Event`] for inputs.
    pub trace_kind: TraceKind,
    /// Inputs: one line, as a timeline shows it. Trace events: the message (a span's or
    /// thread's name), or for a record that did not decode (level 0) why.
    pub summary: String,
    /// Inputs: the input as JSON text.
    pub tree: Option<String>,
    /// Inputs: the input as the machine encodes it, if it was kept.
    pub raw: Option<Vec<u8>>,
}

impl Event {
    /// An input's tree, parsed; `None` for trace events (or text that does not parse, which a
    /// checksummed chunk written by [`ExportWriter`] never holds).
    pub fn input_tree(&self) -> Option<serde_json::Value> {
        serde_json::from_str(self.tree.as_deref()?).ok()
    }
}

/// An input to append with [`ExportWriter::push_input`].
#[derive(Clone, Copy, Debug)]
pub struct InputEntry<'a> {
    /// Sequence number in the input lane.
    pub seq: u64,
    /// Unix time, ns.
    pub unix_ns: u64,
    /// One line, as a timeline shows it.
    pub summary: &'a str,
    /// The input as a tree.
    pub tree: &'a serde_json::Value,
    /// The input as the machine encodes it (empty: not kept).
    pub raw: &'a [u8],
}

/// A trace event to append with [`ExportWriter::push_trace`].
#[derive(Clone, Copy, Debug)]
pub struct TraceEntry<'a> {
    /// Sequence number in its lane.
    pub seq: u64,
    /// Unix time, ns.
    pub unix_ns: u64,
    /// The thread (or lane) that wrote it.
    pub thread: &'a str,
    /// Trace level, 1 error ..= 5 trace; 0 for a record that did not decode.
    pub level: u8,
    /// What it marks.
    pub kind: TraceKind,
    /// The message, one line (a span's or thread's name; for a record that did not decode, why).
    pub message: &'a str,
}

/// A checkpoint to store with [`ExportWriter::push_checkpoint`].
#[derive(Clone, Copy, Debug)]
pub struct CheckpointEntry<'a> {
    /// Sequence number of the first input not yet applied to it.
    pub input_seq: u64,
    /// The hash recorded with it.
    pub hash: u64,
    /// When it was taken, Unix ns.
    pub unix_ns: u64,
    /// The state as the machine encodes it.
    pub state: &'a [u8],
}

/// A stored checkpoint, as the footer describes it; its bytes come from
/// [`Export::checkpoint_state`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CheckpointInfo {
    /// Sequence number of the first input not yet applied to it.
    pub input_seq: u64,
    /// The hash recorded with it.
    pub hash: u64,
    /// When it was taken, Unix ns.
    pub unix_ns: u64,
    /// Bytes of its state.
    pub state_len: u64,
}
