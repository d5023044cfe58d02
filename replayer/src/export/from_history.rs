//! Exporting a replayed [`History`]: every input with its tree and bytes, the trace events
//! placed among them, a keyframe every `keyframe_every` inputs, what every input changed, and
//! the recorded checkpoints.
//!
//! Each input's diff compares the states before and after it. Building both as trees and
//! diffing them costs an allocation per node of the whole state (tens of milliseconds for the
//! demo's 65,536 accounts); instead every state is flattened into reused token memory
//! ([`Flat`]) and compared with the previous one, skipping unchanged subtrees in one loop
//! ([`tree_diff`]), so only what changed becomes a tree. Each state is flattened against the
//! one before ([`Flat::refill_against`]), which notes the tokens that differ as it writes them,
//! so the diff reads neither state whole again: comparing two flattened states token by token
//! cost more than flattening one (and two passes over megabytes of tokens at once, one per
//! thread, slow each other down). Flattening still visits the whole state, once per input: that
//! is the cost of an export. The replay and the flattening run on one thread; the diff, the
//! conversion and the writing on another.

use std::path::{Path, PathBuf};
use std::sync::{mpsc, Arc};
use std::time::{SystemTime, UNIX_EPOCH};

use flightrec_schemas::trace::TraceKind;
use flightrec_schemas::Machine;

use super::{
    CheckpointEntry, Crash, ExportError, ExportOptions, ExportWriter, InputEntry, Metadata,
    TraceEntry,
};
use crate::history::{History, TraceRecord, Verification};
use crate::outline::{tree_diff, Flat};
use crate::recover::recover_checkpoints;
use crate::ring::{Fate, Ring};
use crate::summary::Summary;
use crate::tree;

/// Inputs between keyframes by default: reaching a position in the export applies at most this
/// many diffs.
pub const DEFAULT_KEYFRAME_EVERY: u64 = 1024;

/// How [`export_history`] writes.
#[derive(Clone, Debug)]
pub struct HistoryExportOptions {
    /// A keyframe (the whole state) after every this many inputs, starting with the first.
    pub keyframe_every: u64,
    /// Keep each input's encoded bytes (`M::encode_input`), so that the service's own binary can
    /// re-execute the export.
    pub raw_inputs: bool,
    /// Chunking, and whether an existing file may be replaced.
    pub writer: ExportOptions,
}

impl Default for HistoryExportOptions {
    fn default() -> HistoryExportOptions {
        HistoryExportOptions {
            keyframe_every: DEFAULT_KEYFRAME_EVERY,
            raw_inputs: true,
            writer: ExportOptions::default(),
        }
    }
}

/// What an export holds.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ExportSummary {
    /// Where it was written.
    pub path: PathBuf,
    /// Its size in bytes.
    pub bytes: u64,
    /// Inputs.
    pub inputs: u64,
    /// Trace events.
    pub traces: u64,
    /// Keyframes.
    pub keyframes: u64,
    /// Changes in all the diffs.
    pub changes: u64,
    /// Checkpoints.
    pub checkpoints: u64,
}

/// Writes `history` to the export file `out` (which must not exist unless
/// `options.writer.overwrite`), calling `progress(done, total)` as inputs are written. The
/// recorded checkpoints are read again from the ring file the history was replayed from.
pub fn export_history<M: Machine + Clone>(
    history: &mut History<M>,
    out: &Path,
    options: &HistoryExportOptions,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<ExportSummary, ExportError> {
    let keyframe_every = options.keyframe_every.max(1);
    let metadata = metadata_of(history, keyframe_every);
    let writer = ExportWriter::create_with(out, metadata, options.writer.clone())?;
    let misuse = |what: String| ExportError::Misuse {
        path: out.to_owned(),
        what,
    };
    // Read the checkpoints first: a ring file that changed since the replay fails early.
    let ring = Ring::open(history.path()).map_err(|e| {
        misuse(format!(
            "cannot read the checkpoints of {}: {e}",
            history.path().display()
        ))
    })?;
    let clock = ring.header().clock;
    let checkpoints: Vec<_> = recover_checkpoints(&ring)
        .into_iter()
        .filter_map(Result::ok)
        .collect();
    let mut summary = ExportSummary {
        path: out.to_owned(),
        ..ExportSummary::default()
    };
    let total = history.len() as u64;
    progress(0, total);

    // This thread replays and flattens; the other diffs, converts and writes. Flattened states
    // go there in order and come back to be filled again.
    let (to_writer, from_replay) = mpsc::sync_channel::<Step>(4);
    let (recycle, recycled) = mpsc::channel::<Flat>();
    let previous = Arc::new(Flat::of(history.base_state()));
    let traces: Vec<(u64, TraceStep)> = history
        .traces()
        .iter()
        .map(|t| (t.ticks, trace_step(t)))
        .collect();
    let counts = &mut summary;
    let sink_previous = Arc::clone(&previous);
    let (replayed, written) = std::thread::scope(|scope| {
        let writing = scope.spawn(move || {
            let mut sink = Sink {
                writer,
                previous: sink_previous,
                keyframe_every,
                summary: counts,
                recycle,
            };
            for step in from_replay {
                sink.take(step)?;
            }
            Ok::<_, ExportError>(sink.writer)
        });
        let replayed = replay_into(
            history,
            previous,
            traces,
            options.raw_inputs,
            to_writer,
            &recycled,
            progress,
        );
        let written = writing
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
        (replayed, written)
    });
    // The writer's error is the cause when both failed: the replay stopped because it did.
    let mut writer = written?;
    if let Err(index) = replayed {
        return Err(misuse(format!("input at position {index} does not decode")));
    }
    for checkpoint in &checkpoints {
        writer.push_checkpoint(CheckpointEntry {
            input_seq: checkpoint.header.input_seq,
            hash: checkpoint.header.state_hash,
            unix_ns: clock.to_unix_ns(checkpoint.header.ticks),
            state: &checkpoint.state,
        })?;
    }
    summary.checkpoints = checkpoints.len() as u64;
    summary.inputs = total;
    summary.bytes = writer.finish()?;
    progress(total, total);
    Ok(summary)
}

/// Replays every input of `history` in order and sends it, the state after it and the trace
/// events before it to the writing thread; stops early if that thread is gone (it failed).
/// Fails with the position of an input that does not decode.
fn replay_into<M: Machine + Clone>(
    history: &mut History<M>,
    mut previous: Arc<Flat>,
    traces: Vec<(u64, TraceStep)>,
    raw_inputs: bool,
    to_writer: mpsc::SyncSender<Step>,
    recycled: &mpsc::Receiver<Flat>,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<(), usize> {
    let total = history.len() as u64;
    let mut traces = traces.into_iter().peekable();
    let send = |step: Step| to_writer.send(step).is_ok();
    for index in 0..history.len() {
        let event = history.input(index).ok_or(index)?;
        while let Some((_, trace)) = traces.next_if(|(ticks, _)| *ticks < event.ticks) {
            if !send(Step::Trace(trace)) {
                return Ok(());
            }
        }
        let input_tree = tree::tree_of(&event.input);
        let mut raw = Vec::new();
        if raw_inputs && M::encode_input(&event.input, &mut raw).is_err() {
            raw.clear();
        }
        let input = InputStep {
            seq: event.seq,
            unix_ns: event.unix_ns,
            summary: tree::brief(&input_tree),
            tree: input_tree,
            raw,
        };
        let mut flat = recycled.try_recv().unwrap_or_default();
        let state = history
            .state_after(index)
            .expect("index below the history's length");
        // Noting what differs from the state before saves the diff a pass over both.
        flat.refill_against(state, &previous);
        let flat = Arc::new(flat);
        // Let go of the state before first, so that the writing thread can recycle it.
        previous = Arc::clone(&flat);
        if !send(Step::Input(Box::new(input), flat)) {
            return Ok(());
        }
        if index % 1024 == 1023 {
            progress(index as u64 + 1, total);
        }
    }
    for (_, trace) in traces {
        if !send(Step::Trace(trace)) {
            return Ok(());
        }
    }
    Ok(())
}

/// What the replaying thread hands the writing one, in timeline order.
enum Step {
    /// An input and the state after it, flattened against the one before.
    Input(Box<InputStep>, Arc<Flat>),
    /// A trace event after the inputs sent so far.
    Trace(TraceStep),
}

struct InputStep {
    seq: u64,
    unix_ns: u64,
    summary: String,
    tree: tree::Value,
    raw: Vec<u8>,
}

struct TraceStep {
    seq: u64,
    unix_ns: u64,
    thread: String,
    level: u8,
    kind: TraceKind,
    message: String,
}

/// A trace record as the export stores it: its kind in a field of its own, and its message (or,
/// for a record that did not decode, why, with level 0).
fn trace_step(trace: &TraceRecord) -> TraceStep {
    let (level, kind, message) = match &trace.event {
        Some(event) => (event.level as u8, event.kind, event.message.clone()),
        None => (
            0,
            TraceKind::Event,
            trace.damage.clone().unwrap_or_else(|| "?".into()),
        ),
    };
    TraceStep {
        seq: trace.seq,
        unix_ns: trace.unix_ns,
        thread: trace.thread.clone(),
        level,
        kind,
        message,
    }
}

/// A trace event on one line, as the terminal UI's timeline shows it: `info message`; a span's
/// entry and exit are `info → name` and `info ← name`; an undecodable record is
/// `damaged: why`. (An export stores the kind, level and message apart.)
pub fn trace_summary(trace: &TraceRecord) -> String {
    match &trace.event {
        Some(event) => {
            let level = event.level.as_str();
            match event.kind {
                TraceKind::SpanEnter => format!("{level} {SPAN_ENTER}{}", event.message),
                TraceKind::SpanExit => format!("{level} {SPAN_EXIT}{}", event.message),
                TraceKind::Event | TraceKind::Thread => format!("{level} {}", event.message),
            }
        }
        None => format!("damaged: {}", trace.damage.as_deref().unwrap_or("?")),
    }
}

const SPAN_ENTER: &str = "→ ";
const SPAN_EXIT: &str = "← ";

/// The writing side: diffs each state against the one before, and appends everything.
struct Sink<'s> {
    writer: ExportWriter,
    previous: Arc<Flat>,
    keyframe_every: u64,
    summary: &'s mut ExportSummary,
    recycle: mpsc::Sender<Flat>,
}

impl Sink<'_> {
    fn take(&mut self, step: Step) -> Result<(), ExportError> {
        match step {
            Step::Trace(trace) => {
                self.summary.traces += 1;
                self.writer.push_trace(TraceEntry {
                    seq: trace.seq,
                    unix_ns: trace.unix_ns,
                    thread: &trace.thread,
                    level: trace.level,
                    kind: trace.kind,
                    message: &trace.message,
                })
            }
            Step::Input(input, state) => {
                let position = self.writer.push_input(InputEntry {
                    seq: input.seq,
                    unix_ns: input.unix_ns,
                    summary: &input.summary,
                    tree: &input.tree,
                    raw: &input.raw,
                })?;
                if position % self.keyframe_every == 0 {
                    self.summary.keyframes += 1;
                    self.writer
                        .push_keyframe(position, &state.to_value(Flat::ROOT))?;
                }
                let changes = tree_diff(&self.previous, &state, usize::MAX);
                if !changes.is_empty() {
                    self.summary.changes += changes.len() as u64;
                    self.writer.push_diff(position, &changes)?;
                }
                let previous = std::mem::replace(&mut self.previous, state);
                // The replaying thread let go of it before sending the state after it (and
                // may be gone: then the memory is simply freed).
                if let Ok(previous) = Arc::try_unwrap(previous) {
                    let _ = self.recycle.send(previous);
                }
                Ok(())
            }
        }
    }
}

/// The export's metadata: what the history's summary says of the recording.
fn metadata_of<M: Machine + Clone>(history: &History<M>, keyframe_every: u64) -> Metadata {
    let summary = history.summary();
    let crash = summary.crash.as_ref().map(|c| Crash {
        kind: c.kind.to_owned(),
        signal: c.signal,
        code: c.code,
        fault_addr: c.fault_addr.clone(),
        location: c.location.clone(),
        message: c.message.clone(),
        thread: c.thread.clone(),
        tid: c.tid,
        time_unix_ns: c.time_unix_ns,
    });
    Metadata {
        ring_format_version: summary.format_version,
        machine_name: summary.machine.name.clone(),
        machine_version: summary.machine.version,
        host: summary.host.clone(),
        pid: summary.pid,
        record_start_unix_ns: summary.created_unix_ns,
        record_end_unix_ns: summary
            .crash
            .as_ref()
            .map(|c| c.time_unix_ns)
            .or(summary.exited_unix_ns),
        exported_unix_ns: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)),
        status: summary.status.as_str().to_owned(),
        cause_of_death: cause_of_death(summary),
        crash,
        losses: losses(summary),
        verification: verification_line(history.verification()),
        base_seq: history.base_seq(),
        keyframe_interval: u32::try_from(keyframe_every).unwrap_or(u32::MAX),
        replay_panics: history.panics().to_vec(),
        replay_panic_count: history.panic_count() as u64,
    }
}

/// How the process died, on one line; `None` if it did not.
fn cause_of_death(summary: &Summary) -> Option<String> {
    match (summary.status, &summary.crash) {
        (Fate::Crashed, Some(crash)) => Some(match (crash.signal_name, &crash.location) {
            (Some(signal), _) => format!("{signal} in thread {}", crash.thread),
            (None, Some(location)) => format!("panic at {location}: {}", crash.message),
            (None, None) => crash.message.clone(),
        }),
        (Fate::Crashed, None) => Some("crashed (the cause was not recorded)".into()),
        (Fate::Died, _) => {
            Some("died without recording a cause: SIGKILL, the OOM killer, or power loss".into())
        }
        (Fate::Exited | Fate::Running, _) => None,
    }
}

/// The loss counters of the header, and every lane's losses that are not zero.
fn losses(summary: &Summary) -> Vec<(String, u64)> {
    let l = &summary.losses;
    let mut out = vec![
        ("trace_dropped_no_lane".to_owned(), l.trace_dropped_no_lane),
        (
            "trace_dropped_reentrant".to_owned(),
            l.trace_dropped_reentrant,
        ),
        ("inputs_unencodable".to_owned(), l.inputs_unencodable),
        ("checkpoints_failed".to_owned(), l.checkpoints_failed),
    ];
    for lane in &summary.lanes {
        for (what, n) in [
            ("lost", lane.lost),
            ("torn", lane.torn),
            ("corrupt", lane.corrupt),
            ("dropped_too_large", lane.dropped_too_large),
        ] {
            if n > 0 {
                out.push((format!("lane {} {what}", lane.name), n));
            }
        }
    }
    out
}

/// The verification result on one line: `2 of 2 recorded state hashes match`, or where they
/// stop matching.
pub fn verification_line(verification: &Verification) -> String {
    let checks = &verification.checks;
    let matched = checks.iter().filter(|c| c.passed()).count();
    match &verification.divergence {
        None if checks.len() <= 1 => {
            "the base checkpoint re-encodes to its recorded hash; no later checkpoint to verify \
             against"
                .into()
        }
        None => format!("{matched} of {} recorded state hashes match", checks.len()),
        Some(d) if d.from_seq == d.to_seq => {
            format!("DIVERGED at the base checkpoint (input {})", d.to_seq)
        }
        Some(d) => format!(
            "DIVERGED between inputs {} and {}",
            d.from_seq,
            d.to_seq.saturating_sub(1)
        ),
    }
}
