//! `flightrec export`: a ring file's replayed history as a self-contained export
//! (`.flightrec`), or a ring file or an export as Chrome trace-event JSON or Perfetto's
//! protobuf trace; and `inspect` and `replay` of exports, which need no knowledge of the machine.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::fs::File;
use std::io::{BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use flightrec_replayer::export::{
    export_history, format, trace_summary, Event, EventKind, Export, ExportError, ExportOptions,
    HistoryExportOptions, DEFAULT_KEYFRAME_EVERY,
};
use flightrec_replayer::tree::{self, Value};
use flightrec_replayer::{Fate, History, TraceRecord};
use flightrec_schemas::trace::{Level, TraceKind};
use flightrec_schemas::Machine;
use serde_json::json;

use super::chrome::ChromeWriter;
use super::perfetto::PerfettoWriter;
use super::progress::Counter;
use super::replay::{open_history, render_changes, render_value, MemoryArgs, DIFF_LIMIT};
use super::time::{bytes, utc};
use super::Failure;

/// What `export` writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// A self-contained export file (`.flightrec`), opened without the service's binary.
    Flightrec,
    /// Chrome trace-event JSON, for Perfetto UI (ui.perfetto.dev) or chrome://tracing.
    Chrome,
    /// Perfetto's protobuf trace (`.pftrace`), for Perfetto UI or trace_processor: inputs,
    /// threads' spans and events, checkpoints and the crash on tracks of the service's process.
    Perfetto,
}

#[derive(Debug, clap::Args)]
pub struct ExportArgs {
    /// The ring file (`.ring`); with `--format chrome` or `perfetto`, a ring file or an export
    /// (`.flightrec`).
    file: PathBuf,
    /// Where to write.
    #[arg(short, long, value_name = "OUT")]
    output: PathBuf,
    /// What to write.
    #[arg(long, value_enum, default_value = "flightrec")]
    format: Format,
    /// A keyframe (the whole state) every N inputs: a larger N makes a smaller file whose
    /// states take longer to reach.
    #[arg(long, value_name = "N", default_value_t = DEFAULT_KEYFRAME_EVERY,
          value_parser = clap::value_parser!(u64).range(1..))]
    keyframe_every: u64,
    /// Replace OUT if it exists.
    #[arg(long)]
    force: bool,
    #[command(flatten)]
    memory: MemoryArgs,
}

/// Whether `path` starts with the export magic (an unreadable or short file is not an export:
/// the ring file reader then says what is wrong with it).
pub fn is_export(path: &Path) -> bool {
    let mut magic = [0u8; 8];
    File::open(path)
        .and_then(|mut file| file.read_exact(&mut magic))
        .is_ok_and(|()| magic == format::MAGIC)
}

/// Opens an export; any reason it cannot be read is bad input (exit 2).
fn open_export(path: &Path) -> Result<Export, Failure> {
    Export::open(path).map_err(Failure::bad_input)
}

/// A failure to read an export is bad input; to write one, not.
pub(super) fn failure(error: ExportError) -> Failure {
    match error {
        ExportError::Format { .. }
        | ExportError::Chunk { .. }
        | ExportError::OutOfRange { .. }
        | ExportError::NoKeyframe { .. }
        | ExportError::BadDiff { .. } => Failure::bad_input(error),
        ExportError::Exists { .. } => anyhow::Error::new(error)
            .context("use --force to replace it")
            .into(),
        ExportError::Io { .. } | ExportError::Misuse { .. } => error.into(),
    }
}

pub fn run<M: Machine + Clone>(args: ExportArgs) -> Result<ExitCode, Failure> {
    // Before the replay and the export, which take minutes on a large ring, not after them.
    refuse_to_replace(&args.output, args.force)?;
    if is_export(&args.file) {
        if args.format == Format::Flightrec {
            return Err(Failure::bad_input(anyhow::anyhow!(
                "{} is already an export; `--format chrome` or `--format perfetto` converts it \
                 to a trace file",
                args.file.display()
            )));
        }
        let export = open_export(&args.file)?;
        write_output(&args.output, args.force, |out| {
            trace_of_export(&export, args.format, out)
        })?;
        return Ok(ExitCode::SUCCESS);
    }
    let mut history = open_history::<M>(&args.file, &args.memory.options())?;
    match args.format {
        Format::Perfetto | Format::Chrome => {
            write_output(&args.output, args.force, |out| {
                trace_of_history(&history, args.format, out)
            })?;
        }
        Format::Flightrec => {
            let options = HistoryExportOptions {
                keyframe_every: args.keyframe_every,
                writer: ExportOptions {
                    overwrite: args.force,
                    ..ExportOptions::default()
                },
                ..HistoryExportOptions::default()
            };
            let mut counter = Counter::new("exporting");
            let written = export_history(&mut history, &args.output, &options, &mut |done, all| {
                counter.update(done, all)
            });
            counter.finish();
            let summary = written.map_err(failure)?;
            let ring_bytes = std::fs::metadata(&args.file).map_or(0, |m| m.len());
            eprintln!(
                "flightrec: wrote {} ({}; the ring file is {}): {} inputs, {} trace events, {} \
                 keyframes, {} changes, {} checkpoints",
                summary.path.display(),
                bytes(summary.bytes),
                bytes(ring_bytes),
                summary.inputs,
                summary.traces,
                summary.keyframes,
                summary.changes,
                summary.checkpoints
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// An error if `path` exists and may not be replaced.
fn refuse_to_replace(path: &Path, force: bool) -> Result<(), Failure> {
    if !force && path.symlink_metadata().is_ok() {
        return Err(anyhow::anyhow!(
            "{} already exists (not overwritten); use --force to replace it",
            path.display()
        )
        .into());
    }
    Ok(())
}

/// Writes `path` through `write`, under a temporary name that is renamed into place when it
/// succeeds; refuses to replace an existing file unless `force` (checked again: it may have
/// appeared meanwhile).
fn write_output(
    path: &Path,
    force: bool,
    write: impl FnOnce(&mut BufWriter<File>) -> Result<(), Failure>,
) -> Result<(), Failure> {
    refuse_to_replace(path, force)?;
    let name = path
        .file_name()
        .map_or_else(|| "trace".into(), |n| n.to_string_lossy().into_owned());
    let temp = path.with_file_name(format!(".{name}.{}.tmp", std::process::id()));
    let file = File::create(&temp).with_context(|| format!("cannot create {}", temp.display()))?;
    let mut out = BufWriter::with_capacity(1 << 20, file);
    let result = write(&mut out).and_then(|()| {
        out.flush()
            .with_context(|| format!("cannot write {}", temp.display()))?;
        std::fs::rename(&temp, path)
            .with_context(|| format!("cannot rename {} to {}", temp.display(), path.display()))?;
        Ok(())
    });
    if result.is_err() {
        let _ = std::fs::remove_file(&temp);
    }
    result
}

/// What a trace file says of the recording as a whole, gathered before its events.
pub(super) struct Recording {
    pub machine_name: String,
    pub machine_version: u32,
    /// The recording process's pid and host.
    pub pid: u32,
    pub host: String,
    /// Where the events were read: a ring file or an export.
    pub source: String,
    /// How the recording ended: "crashed", "died", "exited", "running".
    pub status: String,
    pub base_seq: u64,
    pub inputs: u64,
    /// When the ring file was created (Unix ns).
    pub created_unix_ns: u64,
    /// The earliest of the first input, the first trace event and the checkpoints (Unix ns);
    /// `created_unix_ns` when there is none.
    pub first_unix_ns: u64,
}

impl Recording {
    fn of_history<M: Machine + Clone>(history: &History<M>) -> Recording {
        let summary = history.summary();
        let first_input = history.input(0).map(|e| e.unix_ns);
        let first_trace = history.traces().first().map(|t| t.unix_ns);
        let first = [first_input, first_trace]
            .into_iter()
            .flatten()
            .chain(summary.checkpoints.iter().map(|c| c.unix_ns))
            .min();
        Recording {
            machine_name: summary.machine.name.clone(),
            machine_version: summary.machine.version,
            pid: summary.pid,
            host: summary.host.clone(),
            source: summary.path.clone(),
            status: summary.status.as_str().to_owned(),
            base_seq: history.base_seq(),
            inputs: history.len() as u64,
            created_unix_ns: summary.created_unix_ns,
            first_unix_ns: first.unwrap_or(summary.created_unix_ns),
        }
    }

    fn of_export(export: &Export) -> Result<Recording, Failure> {
        let meta = export.metadata();
        let first = if export.event_count() > 0 {
            Some(export.event(0).map_err(failure)?.unix_ns)
        } else {
            None
        };
        let first = first
            .into_iter()
            .chain(export.checkpoints().iter().map(|c| c.unix_ns))
            .min();
        Ok(Recording {
            machine_name: meta.machine_name.clone(),
            machine_version: meta.machine_version,
            pid: meta.pid,
            host: meta.host.clone(),
            source: export.path().display().to_string(),
            status: meta.status.clone(),
            base_seq: meta.base_seq,
            inputs: export.len(),
            created_unix_ns: meta.record_start_unix_ns,
            first_unix_ns: first.unwrap_or(meta.record_start_unix_ns),
        })
    }

    /// `ledger v1`.
    pub fn machine(&self) -> String {
        format!("{} v{}", self.machine_name, self.machine_version)
    }

    /// `ledger v1 (pid 4242 on host)`: the name of the process's track.
    pub fn process(&self) -> String {
        format!("{} (pid {} on {})", self.machine(), self.pid, self.host)
    }
}

/// A trace file written as a recording is walked, in time order within each kind: the Chrome
/// and the Perfetto writers. Each starts from a [`Recording`] and is given its events by
/// [`walk_history`] or [`walk_export`].
pub(super) trait TraceSink {
    /// An input, at its position among the inputs and with the message of its replay's panic.
    fn input(
        &mut self,
        seq: u64,
        position: u64,
        unix_ns: u64,
        summary: &str,
        panicked: Option<&str>,
    ) -> std::io::Result<()>;

    /// A trace record of `thread`: a span edge or a point event (`level` "damaged": a payload
    /// that did not decode).
    fn trace(
        &mut self,
        thread: &str,
        unix_ns: u64,
        level: &str,
        kind: TraceKind,
        message: &str,
    ) -> std::io::Result<()>;

    /// A recorded checkpoint, taken before input `input_seq`.
    fn checkpoint(&mut self, input_seq: u64, unix_ns: u64, hash: u64) -> std::io::Result<()>;

    /// The crash or death that ended the recording, at `unix_ns` when that is known (else the
    /// writer puts it at the latest event).
    fn end(&mut self, unix_ns: Option<u64>, status: &str, cause: &str) -> std::io::Result<()>;
}

/// Writes the trace of a replayed history in `format` (Chrome or Perfetto).
fn trace_of_history<M: Machine + Clone>(
    history: &History<M>,
    format: Format,
    out: &mut impl Write,
) -> Result<(), Failure> {
    let recording = Recording::of_history(history);
    write_trace(format, &recording, out, |sink| walk_history(history, sink))
}

/// Writes the trace of an export in `format` (Chrome or Perfetto).
fn trace_of_export(export: &Export, format: Format, out: &mut impl Write) -> Result<(), Failure> {
    let recording = Recording::of_export(export)?;
    write_trace(format, &recording, out, |sink| walk_export(export, sink))
}

/// Begins the writer of `format`, hands it to `walk`, and ends the file.
fn write_trace<W: Write>(
    format: Format,
    recording: &Recording,
    out: W,
    walk: impl FnOnce(&mut dyn TraceSink) -> Result<(), Failure>,
) -> Result<(), Failure> {
    if format == Format::Perfetto {
        let mut sink = PerfettoWriter::begin(out, recording)?;
        walk(&mut sink)?;
        sink.finish()?;
    } else {
        let mut sink = ChromeWriter::begin(out, recording)?;
        walk(&mut sink)?;
        sink.finish()?;
    }
    Ok(())
}

/// Gives `sink` a replayed history's inputs with the trace records between them, then its
/// checkpoints and how it ended.
fn walk_history<M: Machine + Clone>(
    history: &History<M>,
    sink: &mut dyn TraceSink,
) -> Result<(), Failure> {
    let summary = history.summary();
    let panics: HashMap<usize, &str> = history
        .panics()
        .iter()
        .map(|p| (p.index, p.message.as_str()))
        .collect();
    let mut records = history.traces().iter().peekable();
    for index in 0..history.len() {
        let event = history
            .input(index)
            .with_context(|| format!("input at position {index} does not decode"))?;
        while let Some(record) = records.next_if(|t| t.ticks < event.ticks) {
            trace_record(sink, record)?;
        }
        let name = tree::brief(&tree::tree_of(&event.input));
        let panicked = panics.get(&index).copied();
        sink.input(event.seq, index as u64, event.unix_ns, &name, panicked)?;
    }
    for record in records {
        trace_record(sink, record)?;
    }
    for checkpoint in &summary.checkpoints {
        let hash = u64::from_str_radix(&checkpoint.hash, 16).unwrap_or(0);
        sink.checkpoint(checkpoint.seq, checkpoint.unix_ns, hash)?;
    }
    if matches!(summary.status, Fate::Crashed | Fate::Died) {
        let crash = summary.crash.as_ref();
        let cause = crash.map_or("no cause recorded", |c| c.message.as_str());
        // As the export's metadata has it, so that both give the end the same time.
        let when = crash.map(|c| c.time_unix_ns).or(summary.exited_unix_ns);
        sink.end(when, summary.status.as_str(), cause)?;
    }
    Ok(())
}

/// A ring file's trace record, or what is left of one whose payload did not decode.
fn trace_record(sink: &mut dyn TraceSink, record: &TraceRecord) -> std::io::Result<()> {
    match &record.event {
        Some(event) => sink.trace(
            &record.thread,
            record.unix_ns,
            event.level.as_str(),
            event.kind,
            &event.message,
        ),
        None => sink.trace(
            &record.thread,
            record.unix_ns,
            "damaged",
            TraceKind::Event,
            &trace_summary(record),
        ),
    }
}

/// Events read from an export at a time.
const EVENTS_AT_ONCE: u64 = 4096;

/// Gives `sink` an export's events (inputs and trace records, in the order stored), then its
/// checkpoints and how it ended.
fn walk_export(export: &Export, sink: &mut dyn TraceSink) -> Result<(), Failure> {
    let meta = export.metadata();
    let panics: HashMap<u64, &str> = meta
        .replay_panics
        .iter()
        .map(|p| (p.index as u64, p.message.as_str()))
        .collect();
    let mut start = 0;
    while start < export.event_count() {
        let events = export
            .events(start..start + EVENTS_AT_ONCE)
            .map_err(failure)?;
        start += EVENTS_AT_ONCE;
        for event in &events {
            match event.kind {
                EventKind::Input => sink.input(
                    event.seq,
                    event.position,
                    event.unix_ns,
                    &event.summary,
                    panics.get(&event.position).copied(),
                )?,
                EventKind::Trace => {
                    let level = Level::from_code(event.level).map_or("damaged", Level::as_str);
                    let (kind, message) = (event.trace_kind, &event.summary);
                    sink.trace(&event.name, event.unix_ns, level, kind, message)?;
                }
            }
        }
    }
    for checkpoint in export.checkpoints() {
        sink.checkpoint(checkpoint.input_seq, checkpoint.unix_ns, checkpoint.hash)?;
    }
    if meta.status == "crashed" || meta.status == "died" {
        let crash = meta.crash.as_ref();
        let cause = crash
            .map(|c| c.message.as_str())
            .or(meta.cause_of_death.as_deref())
            .unwrap_or("no cause recorded");
        let when = crash.map(|c| c.time_unix_ns).or(meta.record_end_unix_ns);
        sink.end(when, &meta.status, cause)?;
    }
    Ok(())
}

/// `flightrec inspect` of an export: metadata, counts, keyframes and checkpoints.
pub fn inspect(file: &Path, as_json: bool) -> Result<ExitCode, Failure> {
    let export = open_export(file)?;
    let meta = export.metadata();
    let file_bytes = std::fs::metadata(file).map_or(0, |m| m.len());
    let inputs = export.len();
    let traces = export.event_count() - inputs;
    let last_seq = (inputs > 0).then(|| meta.base_seq + inputs - 1);
    if as_json {
        let crash = meta.crash.as_ref().map(|c| {
            json!({
                "kind": c.kind, "signal": c.signal, "code": c.code, "fault_addr": c.fault_addr,
                "location": c.location, "message": c.message, "thread": c.thread, "tid": c.tid,
                "time_unix_ns": c.time_unix_ns,
            })
        });
        let losses: serde_json::Map<String, Value> = meta
            .losses
            .iter()
            .map(|(name, n)| (name.clone(), json!(n)))
            .collect();
        let checkpoints: Vec<Value> = export
            .checkpoints()
            .iter()
            .map(|c| {
                json!({
                    "input_seq": c.input_seq, "hash": format!("{:016x}", c.hash),
                    "unix_ns": c.unix_ns, "bytes": c.state_len,
                })
            })
            .collect();
        let report = json!({
            "path": file.display().to_string(),
            "kind": "export",
            "format_version": format::FORMAT_VERSION,
            "ring_format_version": meta.ring_format_version,
            "file_bytes": file_bytes,
            "machine": { "name": meta.machine_name, "version": meta.machine_version },
            "host": meta.host,
            "pid": meta.pid,
            "record_start_unix_ns": meta.record_start_unix_ns,
            "record_end_unix_ns": meta.record_end_unix_ns,
            "exported_unix_ns": meta.exported_unix_ns,
            "status": meta.status,
            "cause_of_death": meta.cause_of_death,
            "crash": crash,
            "losses": losses,
            "verification": meta.verification,
            "replay_panics": meta.replay_panics,
            "replay_panic_count": meta.replay_panic_count,
            "base_seq": meta.base_seq,
            "last_seq": last_seq,
            "inputs": inputs,
            "trace_events": traces,
            "keyframe_interval": meta.keyframe_interval,
            "keyframes": export.keyframe_positions(),
            "checkpoints": checkpoints,
        });
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(ExitCode::SUCCESS);
    }
    let mut out = String::new();
    let mut line = |label: &str, text: String| {
        let _ = writeln!(out, "{label:<12}{text}");
    };
    line(
        "export",
        format!(
            "{} ({}, export format {}, from a ring file of format {})",
            file.display(),
            bytes(file_bytes),
            format::FORMAT_VERSION,
            meta.ring_format_version
        ),
    );
    line(
        "machine",
        format!(
            "{} v{}  (pid {} on {})",
            meta.machine_name, meta.machine_version, meta.pid, meta.host
        ),
    );
    let ended = meta.record_end_unix_ns.map_or("?".into(), utc);
    line(
        "recorded",
        format!("{} to {ended}", utc(meta.record_start_unix_ns)),
    );
    line("exported", utc(meta.exported_unix_ns));
    let status = match &meta.cause_of_death {
        Some(cause) => format!("{}: {cause}", meta.status),
        None => meta.status.clone(),
    };
    line("status", status);
    if let Some(crash) = &meta.crash {
        let lines = super::inspect::crash_lines(
            &crash.message,
            &crash.thread,
            crash.tid,
            crash.time_unix_ns,
        );
        for text in lines {
            line("", text);
        }
    }
    line("verified", meta.verification.clone());
    let panic_count = usize::try_from(meta.replay_panic_count).unwrap_or(usize::MAX);
    for text in super::replay::panic_lines(&meta.replay_panics, panic_count) {
        line("", text);
    }
    let range = match last_seq {
        Some(last) => format!("inputs #{}..=#{last}", meta.base_seq),
        None => "no input".into(),
    };
    line(
        "timeline",
        format!("{inputs} inputs ({range}), {traces} trace events"),
    );
    let keyframes = export.keyframe_positions();
    let shown: Vec<String> = keyframes.iter().take(8).map(u64::to_string).collect();
    let more = if keyframes.len() > 8 { ", …" } else { "" };
    line(
        "keyframes",
        format!(
            "{} (every {} inputs; at positions {}{more})",
            keyframes.len(),
            meta.keyframe_interval,
            shown.join(", ")
        ),
    );
    let checkpoints: Vec<String> = export
        .checkpoints()
        .iter()
        .map(|c| {
            format!(
                "input {} ({}, hash {:016x})",
                c.input_seq,
                bytes(c.state_len),
                c.hash
            )
        })
        .collect();
    line(
        "checkpoints",
        if checkpoints.is_empty() {
            "none".into()
        } else {
            checkpoints.join("; ")
        },
    );
    let losses: Vec<String> = meta
        .losses
        .iter()
        .filter(|(_, n)| *n > 0)
        .map(|(name, n)| format!("{name} {n}"))
        .collect();
    line(
        "losses",
        if losses.is_empty() {
            "none beyond ring overwrites".into()
        } else {
            losses.join(", ")
        },
    );
    print!("{out}");
    Ok(ExitCode::SUCCESS)
}

/// `flightrec replay` of an export: the input at `--at` (a sequence number), what it changed
/// and the state after it, as for a ring file.
pub fn replay(file: &Path, at: Option<u64>, as_json: bool) -> Result<ExitCode, Failure> {
    let export = open_export(file)?;
    let meta = export.metadata();
    let header = format!(
        "{} v{} from {} ({}); exported from the checkpoint at input {}; {}",
        meta.machine_name,
        meta.machine_version,
        file.display(),
        meta.status,
        meta.base_seq,
        meta.verification
    );
    if export.is_empty() {
        if as_json {
            println!("{}", json!({ "seq": meta.base_seq, "state": null }));
        } else {
            println!("{header}");
            println!(
                "no input was recorded after the checkpoint at input {}",
                meta.base_seq
            );
        }
        return Ok(ExitCode::SUCCESS);
    }
    let last = meta.base_seq + export.len() - 1;
    let seq = at.unwrap_or(last);
    if seq < meta.base_seq || seq > last {
        return Err(Failure::bad_input(anyhow::anyhow!(
            "{}: input {seq} is not in the export; it holds inputs {} to {last}",
            file.display(),
            meta.base_seq
        )));
    }
    let position = seq - meta.base_seq;
    let event: Event = export.input(position).map_err(failure)?;
    let input = event.input_tree().unwrap_or(Value::Null);
    let changes = export.diff(position).map_err(failure)?;
    let state = export.state_tree(position).map_err(failure)?;
    let panic = meta
        .replay_panics
        .iter()
        .find(|p| p.index as u64 == position);
    if as_json {
        let step = json!({
            "seq": event.seq,
            "position": position,
            "unix_ns": event.unix_ns,
            "input": input,
            "panic": panic,
            "diff": changes,
            "state": state,
        });
        println!("{}", serde_json::to_string_pretty(&step)?);
        return Ok(ExitCode::SUCCESS);
    }
    let mut out = String::new();
    let _ = writeln!(out, "{header}");
    let _ = writeln!(
        out,
        "input #{} of {}..={last} at {}",
        event.seq,
        meta.base_seq,
        utc(event.unix_ns)
    );
    let _ = writeln!(out, "  {}", event.summary);
    if let Some(panic) = panic {
        let _ = writeln!(out, "  panicked: {}", panic.message);
    }
    let _ = writeln!(out, "changed");
    out.push_str(&render_changes(&changes, DIFF_LIMIT, "  "));
    let _ = writeln!(out, "state after input #{}", event.seq);
    render_value(&mut out, &state, 1);
    print!("{out}");
    Ok(ExitCode::SUCCESS)
}
