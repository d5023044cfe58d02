//! Writing an export: events, diffs, keyframes and checkpoints are buffered into chunks,
//! compressed and appended to a temporary file beside the target, which `finish` completes with
//! the footer and trailer and then moves into place.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use flightrec_schemas::trace::TraceKind;

use super::codec::{self, ChunkRef, IndexData, NewEvent, PendingDiffs, PendingEvents, Scratch};
use super::format::{self, Frame, Kind, Trailer, FRAME_HEADER_LEN, MAX_CHUNK_BYTES};
use super::text;
use super::{
    CheckpointEntry, CheckpointInfo, EventKind, ExportError, InputEntry, Metadata, TraceEntry,
};
use crate::tree::Change;

/// How an export is written.
#[derive(Clone, Debug)]
pub struct ExportOptions {
    /// Replace an existing file at the path (by default, `create` and `finish` refuse to).
    pub overwrite: bool,
    /// Events per chunk at most: a chunk is what reading one event costs.
    pub events_per_chunk: usize,
    /// Diffs per chunk at most (a chunk also ends at every keyframe).
    pub diffs_per_chunk: usize,
    /// A chunk of events or diffs ends once its contents reach about this many bytes.
    pub chunk_bytes: usize,
}

impl Default for ExportOptions {
    fn default() -> ExportOptions {
        ExportOptions {
            overwrite: false,
            events_per_chunk: 4096,
            diffs_per_chunk: 4096,
            chunk_bytes: 1 << 20,
        }
    }
}

/// Writes an export. Records are appended in timeline order; nothing is visible at the path
/// until [`finish`](ExportWriter::finish) succeeds, and a writer dropped before that removes its
/// temporary file.
///
/// Appending costs no allocation once the buffers have grown to a chunk's size: records wait in
/// one buffer of bytes per chunk kind (their JSON written straight into it), each chunk's message
/// is built in one reused segment and compressed into one reused buffer.
pub struct ExportWriter {
    path: PathBuf,
    temp_path: PathBuf,
    file: Option<BufWriter<File>>,
    offset: u64,
    options: ExportOptions,
    metadata: Metadata,
    names: Vec<String>,
    name_ids: HashMap<String, u32>,
    /// The name id of the input lane, once an input was appended.
    input_name: Option<u32>,
    events: PendingEvents,
    first_event: u64,
    event_count: u64,
    input_count: u64,
    diffs: PendingDiffs,
    last_diff: Option<u64>,
    /// The segment messages are built in.
    scratch: Scratch,
    /// A keyframe's JSON text.
    json: Vec<u8>,
    /// A chunk's LZ4 block.
    compressed: Vec<u8>,
    chunks: Vec<ChunkRef>,
    keyframes: Vec<(u64, u32)>,
    checkpoints: Vec<(CheckpointInfo, u32)>,
}

impl ExportWriter {
    /// Starts an export to `path`, which must not exist yet.
    pub fn create(path: &Path, metadata: Metadata) -> Result<ExportWriter, ExportError> {
        ExportWriter::create_with(path, metadata, ExportOptions::default())
    }

    /// Starts an export to `path` with `options`.
    pub fn create_with(
        path: &Path,
        metadata: Metadata,
        options: ExportOptions,
    ) -> Result<ExportWriter, ExportError> {
        if !options.overwrite && path.symlink_metadata().is_ok() {
            return Err(ExportError::Exists {
                path: path.to_owned(),
            });
        }
        let temp_path = temp_path_for(path);
        let io = |error| ExportError::Io {
            path: temp_path.clone(),
            error,
        };
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&temp_path)
            .map_err(io)?;
        let mut writer = ExportWriter {
            path: path.to_owned(),
            temp_path: temp_path.clone(),
            file: Some(BufWriter::with_capacity(1 << 20, file)),
            offset: 0,
            options: ExportOptions {
                events_per_chunk: options.events_per_chunk.max(1),
                diffs_per_chunk: options.diffs_per_chunk.max(1),
                ..options
            },
            metadata,
            names: Vec::new(),
            name_ids: HashMap::new(),
            input_name: None,
            events: PendingEvents::default(),
            first_event: 0,
            event_count: 0,
            input_count: 0,
            diffs: PendingDiffs::default(),
            last_diff: None,
            scratch: Scratch::default(),
            json: Vec::new(),
            compressed: Vec::new(),
            chunks: Vec::new(),
            keyframes: Vec::new(),
            checkpoints: Vec::new(),
        };
        writer.write_bytes(&format::encode_header())?;
        Ok(writer)
    }

    /// The path the export will have.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Inputs appended so far.
    pub fn len(&self) -> u64 {
        self.input_count
    }

    /// Whether no input was appended yet.
    pub fn is_empty(&self) -> bool {
        self.input_count == 0
    }

    /// Appends the next input; returns its position.
    pub fn push_input(&mut self, input: InputEntry<'_>) -> Result<u64, ExportError> {
        let position = self.input_count;
        let name = match self.input_name {
            Some(id) => id,
            None => {
                let id = self.name_id("input");
                self.input_name = Some(id);
                id
            }
        };
        self.push_event(NewEvent {
            kind: EventKind::Input,
            trace_kind: TraceKind::Event,
            position,
            seq: input.seq,
            unix_ns: input.unix_ns,
            name,
            level: 0,
            summary: input.summary,
            tree: Some(input.tree),
            raw: input.raw,
        })?;
        self.input_count += 1;
        Ok(position)
    }

    /// Appends a trace event, after the inputs appended so far.
    pub fn push_trace(&mut self, trace: TraceEntry<'_>) -> Result<(), ExportError> {
        let name = self.name_id(trace.thread);
        self.push_event(NewEvent {
            kind: EventKind::Trace,
            trace_kind: trace.kind,
            position: self.input_count,
            seq: trace.seq,
            unix_ns: trace.unix_ns,
            name,
            level: trace.level,
            summary: trace.message,
            tree: None,
            raw: &[],
        })
    }

    /// Stores the state after the input at `position` whole. Keyframe positions must increase;
    /// the state at a position is rebuilt from the keyframe at or before it and the diffs after
    /// that keyframe, so the first keyframe should be at position 0.
    pub fn push_keyframe(
        &mut self,
        position: u64,
        tree: &serde_json::Value,
    ) -> Result<(), ExportError> {
        if let Some(&(last, _)) = self.keyframes.last() {
            if position <= last {
                return Err(self.misuse(format!(
                    "keyframe at position {position} after one at {last}"
                )));
            }
        }
        // Diffs after this keyframe start a chunk of their own, so rebuilding a state reads one
        // keyframe interval of diffs.
        self.flush_diffs()?;
        self.json.clear();
        text::push_json(&mut self.json, tree);
        codec::encode_keyframe(&mut self.scratch, position, &self.json);
        let chunk = self.write_chunk(Kind::Keyframe, position, position, 0, 1)?;
        self.keyframes.push((position, chunk));
        Ok(())
    }

    /// Stores what the input at `position` changed: every change, as [`crate::tree::diff`]
    /// gives them with no limit (a truncated diff cannot be applied). Positions must increase.
    pub fn push_diff(&mut self, position: u64, changes: &[Change]) -> Result<(), ExportError> {
        if let Some(last) = self.last_diff {
            if position <= last {
                return Err(self.misuse(format!("diff of position {position} after one of {last}")));
            }
        }
        self.last_diff = Some(position);
        self.diffs.push(position, changes);
        if self.diffs.len() >= self.options.diffs_per_chunk
            || self.diffs.message_bytes() >= self.options.chunk_bytes
        {
            self.flush_diffs()?;
        }
        Ok(())
    }

    /// Stores a checkpoint: the state as the machine encodes it, so that the service's own
    /// binary can re-execute the inputs from it.
    pub fn push_checkpoint(&mut self, checkpoint: CheckpointEntry<'_>) -> Result<(), ExportError> {
        codec::encode_checkpoint(
            &mut self.scratch,
            checkpoint.input_seq,
            checkpoint.hash,
            checkpoint.unix_ns,
            checkpoint.state,
        );
        let chunk = self.write_chunk(Kind::Checkpoint, 0, 0, 0, 1)?;
        let info = CheckpointInfo {
            input_seq: checkpoint.input_seq,
            hash: checkpoint.hash,
            unix_ns: checkpoint.unix_ns,
            state_len: checkpoint.state.len() as u64,
        };
        self.checkpoints.push((info, chunk));
        Ok(())
    }

    /// Writes the last chunks, the footer and the trailer, and moves the file into place.
    /// Returns the file's size.
    pub fn finish(mut self) -> Result<u64, ExportError> {
        self.flush_events()?;
        self.flush_diffs()?;
        let len = self.input_count;
        if let Some(&(position, _)) = self.keyframes.last() {
            if position >= len {
                return Err(self.misuse(format!(
                    "a keyframe at position {position}, but only {len} inputs"
                )));
            }
        }
        if let Some(position) = self.last_diff {
            if position >= len {
                return Err(self.misuse(format!(
                    "a diff of position {position}, but only {len} inputs"
                )));
            }
        }
        if let Some(panic) = self
            .metadata
            .replay_panics
            .iter()
            .find(|p| p.index as u64 >= len)
        {
            return Err(self.misuse(format!(
                "a replay panic at position {}, but only {len} inputs",
                panic.index
            )));
        }
        if self.metadata.keyframe_interval == 0 && self.keyframes.len() > 1 {
            let span = self.keyframes.last().map_or(0, |k| k.0) - self.keyframes[0].0;
            let interval = span / (self.keyframes.len() as u64 - 1);
            self.metadata.keyframe_interval = u32::try_from(interval).unwrap_or(u32::MAX);
        }
        let index = IndexData {
            metadata: std::mem::take(&mut self.metadata),
            names: std::mem::take(&mut self.names),
            input_count: self.input_count,
            event_count: self.event_count,
            chunks: std::mem::take(&mut self.chunks),
            keyframes: std::mem::take(&mut self.keyframes),
            checkpoints: std::mem::take(&mut self.checkpoints),
        };
        let footer = codec::encode_index(&index);
        let trailer = Trailer {
            footer_offset: self.offset,
            footer_len: footer.len() as u64,
            footer_checksum: format::checksum(&footer),
        };
        self.write_bytes(&footer)?;
        self.write_bytes(&trailer.encode())?;
        let size = self.offset;
        let file = self.file.take().expect("the file is open until finish");
        let io = |path: &Path, error| ExportError::Io {
            path: path.to_owned(),
            error,
        };
        let file = file
            .into_inner()
            .map_err(|e| io(&self.temp_path, e.into_error()))?;
        file.sync_all().map_err(|e| io(&self.temp_path, e))?;
        drop(file);
        self.move_into_place()?;
        Ok(size)
    }

    /// Renames the temporary file to the path: with a hard link where it must not replace an
    /// existing file (the link fails if one appeared meanwhile), else with a rename.
    fn move_into_place(&mut self) -> Result<(), ExportError> {
        let io = |path: &Path, error| ExportError::Io {
            path: path.to_owned(),
            error,
        };
        if self.options.overwrite {
            std::fs::rename(&self.temp_path, &self.path).map_err(|e| io(&self.path, e))?;
        } else {
            match std::fs::hard_link(&self.temp_path, &self.path) {
                Ok(()) => {
                    let _ = std::fs::remove_file(&self.temp_path);
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    return Err(ExportError::Exists {
                        path: self.path.clone(),
                    });
                }
                // A file system without hard links: check, then rename.
                Err(_) if self.path.symlink_metadata().is_ok() => {
                    return Err(ExportError::Exists {
                        path: self.path.clone(),
                    });
                }
                Err(_) => {
                    std::fs::rename(&self.temp_path, &self.path).map_err(|e| io(&self.path, e))?
                }
            }
        }
        // Moved: nothing for `drop` to remove.
        self.temp_path = PathBuf::new();
        Ok(())
    }

    fn misuse(&self, what: String) -> ExportError {
        ExportError::Misuse {
            path: self.path.clone(),
            what,
        }
    }

    fn name_id(&mut self, name: &str) -> u32 {
        if let Some(&id) = self.name_ids.get(name) {
            return id;
        }
        let id = self.names.len() as u32;
        self.names.push(name.to_owned());
        self.name_ids.insert(name.to_owned(), id);
        id
    }

    fn push_event(&mut self, event: NewEvent<'_>) -> Result<(), ExportError> {
        self.events.push(event);
        self.event_count += 1;
        if self.events.len() >= self.options.events_per_chunk
            || self.events.message_bytes() >= self.options.chunk_bytes
        {
            self.flush_events()?;
        }
        Ok(())
    }

    fn flush_events(&mut self) -> Result<(), ExportError> {
        let Some((first_position, last_position)) = self.events.positions() else {
            return Ok(());
        };
        codec::encode_events(&mut self.scratch, self.first_event, &self.events);
        let count = self.events.len() as u32;
        self.write_chunk(
            Kind::Events,
            first_position,
            last_position,
            self.first_event,
            count,
        )?;
        self.first_event += u64::from(count);
        self.events.clear();
        Ok(())
    }

    fn flush_diffs(&mut self) -> Result<(), ExportError> {
        let Some((first, last)) = self.diffs.positions() else {
            return Ok(());
        };
        codec::encode_diffs(&mut self.scratch, &self.diffs);
        let count = self.diffs.len() as u32;
        self.write_chunk(Kind::Diffs, first, last, 0, count)?;
        self.diffs.clear();
        Ok(())
    }

    /// Compresses the message just built in the scratch and appends it as a chunk; returns its
    /// index.
    fn write_chunk(
        &mut self,
        kind: Kind,
        first_position: u64,
        last_position: u64,
        first_event: u64,
        count: u32,
    ) -> Result<u32, ExportError> {
        let message = self.scratch.message();
        let raw_len = message.len();
        if raw_len as u64 > MAX_CHUNK_BYTES {
            return Err(self.misuse(format!(
                "a {kind:?} chunk of {raw_len} bytes, over the limit of {MAX_CHUNK_BYTES}"
            )));
        }
        let bound = lz4_flex::block::get_maximum_output_size(raw_len);
        if self.compressed.len() < bound {
            self.compressed.resize(bound, 0);
        }
        let stored_len = match lz4_flex::block::compress_into(message, &mut self.compressed) {
            Ok(len) => len,
            Err(e) => return Err(self.misuse(format!("LZ4 refused a {kind:?} chunk: {e}"))),
        };
        let raw_len = raw_len as u32;
        let stored = &self.compressed[..stored_len];
        let frame = Frame {
            kind: kind as u32,
            reserved: 0,
            stored_len: stored_len as u32,
            raw_len,
            checksum: format::checksum(stored),
        };
        let chunk = ChunkRef {
            kind,
            offset: self.offset,
            stored_len: frame.stored_len,
            raw_len: frame.raw_len,
            checksum: frame.checksum,
            first_position,
            last_position,
            first_event,
            count,
        };
        let padding = format::pad8(stored_len as u64).unwrap_or(0) - stored_len as u64;
        let file = self.file.as_mut().expect("the file is open until finish");
        let written = file
            .write_all(&frame.encode())
            .and_then(|()| file.write_all(stored))
            .and_then(|()| file.write_all(&[0u8; 8][..padding as usize]));
        if let Err(error) = written {
            return Err(ExportError::Io {
                path: self.temp_path.clone(),
                error,
            });
        }
        self.offset += FRAME_HEADER_LEN + stored_len as u64 + padding;
        let index = u32::try_from(self.chunks.len())
            .map_err(|_| self.misuse("more than 2^32 chunks".into()))?;
        self.chunks.push(chunk);
        Ok(index)
    }

    fn write_bytes(&mut self, bytes: &[u8]) -> Result<(), ExportError> {
        let file = self.file.as_mut().expect("the file is open until finish");
        file.write_all(bytes).map_err(|error| ExportError::Io {
            path: self.temp_path.clone(),
            error,
        })?;
        self.offset += bytes.len() as u64;
        Ok(())
    }
}

impl Drop for ExportWriter {
    fn drop(&mut self) {
        if !self.temp_path.as_os_str().is_empty() {
            drop(self.file.take());
            let _ = std::fs::remove_file(&self.temp_path);
        }
    }
}

/// A fresh name beside `path`: `.NAME.PID-N.tmp`.
fn temp_path_for(path: &Path) -> PathBuf {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let name = path
        .file_name()
        .map_or_else(|| "export".into(), |n| n.to_string_lossy().into_owned());
    path.with_file_name(format!(".{name}.{}-{n}.tmp", std::process::id()))
}
