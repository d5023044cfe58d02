//! Between the Rust types of an export and its Cap'n Proto messages (`schemas/trace.capnp`).
//! Encoding builds each message in one reused segment ([`Scratch`]) from records whose texts are
//! already written back to back ([`PendingEvents`], [`PendingDiffs`]), so a chunk of thousands of
//! records costs no allocation once the buffers have grown. Decoding is of untrusted bytes:
//! every list is checked against the message's size before anything is allocated for it, every
//! text must be UTF-8, every enum known.

use std::ops::Range;

use capnp::message::{Builder, ReaderOptions};
use capnp::serialize;
use flightrec_schemas::trace::TraceKind;
use flightrec_schemas::trace_capnp as schema;

use super::format::{reader_options, Kind};
pub use super::scratch::Scratch;
use super::text::{push_json, push_path};
use super::{Crash, EventKind, Metadata};
use crate::history::ReplayPanic;
use crate::tree::{Change, Path};

/// An error while decoding, for the caller to place (chunk, offset).
pub type DecodeResult<T> = Result<T, String>;

/// An event as stored: its name is an index into the footer's names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredEvent {
    pub kind: EventKind,
    pub trace_kind: TraceKind,
    pub position: u64,
    pub seq: u64,
    pub unix_ns: u64,
    pub name: u32,
    pub level: u8,
    pub summary: String,
    pub tree: Option<String>,
    pub raw: Option<Vec<u8>>,
}

/// Where a chunk is and what it holds, as the footer says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChunkRef {
    pub kind: Kind,
    pub offset: u64,
    pub stored_len: u32,
    pub raw_len: u32,
    pub checksum: u64,
    pub first_position: u64,
    pub last_position: u64,
    pub first_event: u64,
    pub count: u32,
}

/// The footer, decoded (not yet checked for consistency: the reader does that).
#[derive(Clone, Debug, Default)]
pub struct IndexData {
    pub metadata: Metadata,
    pub names: Vec<String>,
    pub input_count: u64,
    pub event_count: u64,
    pub chunks: Vec<ChunkRef>,
    /// Position and chunk index.
    pub keyframes: Vec<(u64, u32)>,
    /// The checkpoint and its chunk index.
    pub checkpoints: Vec<(super::CheckpointInfo, u32)>,
}

/// A decoded checkpoint message.
pub struct CheckpointData {
    pub input_seq: u64,
    pub hash: u64,
    pub unix_ns: u64,
    pub state: Vec<u8>,
}

/// The path of a change as stored: `tree::Path`'s Display, the root as "".
pub fn path_text(path: &Path) -> String {
    let mut out = Vec::new();
    push_path(&mut out, path);
    String::from_utf8(out).unwrap_or_default()
}

// ---------------------------------------------------------------------------------------------
// Encoding

/// Words a text of `len` bytes takes in a message (with its NUL, padded to a word).
fn text_words(len: usize) -> usize {
    (len + 8) / 8
}

/// Words a data field of `len` bytes takes.
fn data_words(len: usize) -> usize {
    len.div_ceil(8)
}

/// Words of an `Event` struct (5 data words, 3 pointers), a `Change` (3 pointers) and a `Diff`
/// (1 data word, 1 pointer) with its list's tag: what the generated code's struct sizes say.
const EVENT_WORDS: usize = 8;
const CHANGE_WORDS: usize = 3;
const DIFF_WORDS: usize = 3;
/// The root pointer, a root struct and a list tag, generously.
const MESSAGE_WORDS: usize = 16;

/// The piece `range` of a pending chunk's bytes.
fn slice<'b>(bytes: &'b [u8], range: &Range<usize>) -> &'b [u8] {
    &bytes[range.clone()]
}

/// An event waiting for its chunk; its texts are ranges of [`PendingEvents::bytes`].
#[derive(Clone, Debug)]
struct PendingEvent {
    kind: EventKind,
    trace_kind: TraceKind,
    position: u64,
    seq: u64,
    unix_ns: u64,
    name: u32,
    level: u8,
    summary: Range<usize>,
    tree: Option<Range<usize>>,
    raw: Option<Range<usize>>,
}

/// The events of the chunk being filled.
#[derive(Debug, Default)]
pub struct PendingEvents {
    records: Vec<PendingEvent>,
    bytes: Vec<u8>,
    /// Words the chunk's message will take, at most.
    words: usize,
}

/// An event to append to [`PendingEvents`].
pub struct NewEvent<'a> {
    pub kind: EventKind,
    pub trace_kind: TraceKind,
    pub position: u64,
    pub seq: u64,
    pub unix_ns: u64,
    pub name: u32,
    pub level: u8,
    pub summary: &'a str,
    /// An input's tree, written as JSON text.
    pub tree: Option<&'a serde_json::Value>,
    /// An input's bytes (empty: not kept).
    pub raw: &'a [u8],
}

impl PendingEvents {
    /// Appends an event.
    pub fn push(&mut self, event: NewEvent<'_>) {
        let summary = self.append(event.summary.as_bytes());
        let tree = event.tree.map(|tree| {
            let start = self.bytes.len();
            push_json(&mut self.bytes, tree);
            start..self.bytes.len()
        });
        let raw = (!event.raw.is_empty()).then(|| self.append(event.raw));
        self.words += EVENT_WORDS
            + text_words(summary.len())
            + tree.as_ref().map_or(0, |t| text_words(t.len()))
            + raw.as_ref().map_or(0, |r| data_words(r.len()));
        self.records.push(PendingEvent {
            kind: event.kind,
            trace_kind: event.trace_kind,
            position: event.position,
            seq: event.seq,
            unix_ns: event.unix_ns,
            name: event.name,
            level: event.level,
            summary,
            tree,
            raw,
        });
    }

    fn append(&mut self, bytes: &[u8]) -> Range<usize> {
        let start = self.bytes.len();
        self.bytes.extend_from_slice(bytes);
        start..self.bytes.len()
    }

    /// Events waiting.
    pub fn len(&self) -> usize {
        self.records.len()
    }

    /// Bytes the chunk's message will take, at most.
    pub fn message_bytes(&self) -> usize {
        (self.words + MESSAGE_WORDS) * 8
    }

    /// The first and last event's positions, if any is waiting.
    pub fn positions(&self) -> Option<(u64, u64)> {
        Some((
            self.records.first()?.position,
            self.records.last()?.position,
        ))
    }

    /// Forgets the events, keeping the memory.
    pub fn clear(&mut self) {
        self.records.clear();
        self.bytes.clear();
        self.words = 0;
    }
}

/// A change waiting for its chunk: ranges of [`PendingDiffs::bytes`].
#[derive(Clone, Debug)]
struct PendingChange {
    path: Range<usize>,
    before: Option<Range<usize>>,
    after: Option<Range<usize>>,
}

/// The diffs of the chunk being filled.
#[derive(Debug, Default)]
pub struct PendingDiffs {
    /// Each diff's position and the range of its changes in `changes`.
    diffs: Vec<(u64, Range<usize>)>,
    changes: Vec<PendingChange>,
    bytes: Vec<u8>,
    words: usize,
}

impl PendingDiffs {
    /// Appends the diff of the input at `position`.
    pub fn push(&mut self, position: u64, changes: &[Change]) {
        let first = self.changes.len();
        for change in changes {
            let start = self.bytes.len();
            push_path(&mut self.bytes, &change.path);
            let path = start..self.bytes.len();
            let before = change.before.as_ref().map(|v| self.json(v));
            let after = change.after.as_ref().map(|v| self.json(v));
            self.words += CHANGE_WORDS
                + text_words(path.len())
                + before.as_ref().map_or(0, |b| text_words(b.len()))
                + after.as_ref().map_or(0, |a| text_words(a.len()));
            self.changes.push(PendingChange {
                path,
                before,
                after,
            });
        }
        self.words += DIFF_WORDS;
        self.diffs.push((position, first..self.changes.len()));
    }

    fn json(&mut self, value: &serde_json::Value) -> Range<usize> {
        let start = self.bytes.len();
        push_json(&mut self.bytes, value);
        start..self.bytes.len()
    }

    /// Diffs waiting.
    pub fn len(&self) -> usize {
        self.diffs.len()
    }

    /// Bytes the chunk's message will take, at most.
    pub fn message_bytes(&self) -> usize {
        (self.words + MESSAGE_WORDS) * 8
    }

    /// The first and last diff's positions, if any is waiting.
    pub fn positions(&self) -> Option<(u64, u64)> {
        Some((self.diffs.first()?.0, self.diffs.last()?.0))
    }

    /// Forgets the diffs, keeping the memory.
    pub fn clear(&mut self) {
        self.diffs.clear();
        self.changes.clear();
        self.bytes.clear();
        self.words = 0;
    }
}

fn kind_code(kind: Kind) -> schema::ChunkKind {
    match kind {
        Kind::Events => schema::ChunkKind::Events,
        Kind::Diffs => schema::ChunkKind::Diffs,
        Kind::Keyframe => schema::ChunkKind::Keyframe,
        Kind::Checkpoint => schema::ChunkKind::Checkpoint,
    }
}

fn trace_kind_code(kind: TraceKind) -> schema::TraceKind {
    match kind {
        TraceKind::Event => schema::TraceKind::Event,
        TraceKind::SpanEnter => schema::TraceKind::SpanEnter,
        TraceKind::SpanExit => schema::TraceKind::SpanExit,
        TraceKind::Thread => schema::TraceKind::Thread,
    }
}

/// Builds the `EventChunk` message of the pending events in `scratch`.
pub fn encode_events(scratch: &mut Scratch, first_event: u64, events: &PendingEvents) {
    scratch.build(events.message_bytes(), |message| {
        let mut root = message.init_root::<schema::event_chunk::Builder>();
        root.set_first_event(first_event);
        let mut list = root.init_events(events.records.len() as u32);
        let bytes = &events.bytes;
        for (i, event) in events.records.iter().enumerate() {
            let mut out = list.reborrow().get(i as u32);
            out.set_kind(match event.kind {
                EventKind::Input => schema::EventKind::Input,
                EventKind::Trace => schema::EventKind::Trace,
            });
            out.set_trace_kind(trace_kind_code(event.trace_kind));
            out.set_position(event.position);
            out.set_seq(event.seq);
            out.set_unix_ns(event.unix_ns);
            out.set_name(event.name);
            out.set_level(event.level);
            out.set_summary(capnp::text::Reader::from(slice(bytes, &event.summary)));
            if let Some(tree) = &event.tree {
                out.set_tree(capnp::text::Reader::from(slice(bytes, tree)));
            }
            if let Some(raw) = &event.raw {
                out.set_raw(slice(bytes, raw));
            }
        }
    })
}

/// Builds the `DiffChunk` message of the pending diffs in `scratch`.
pub fn encode_diffs(scratch: &mut Scratch, diffs: &PendingDiffs) {
    build_diffs(scratch, diffs, diffs.message_bytes());
}

/// [`encode_diffs`] in a segment sized for `estimate` bytes.
fn build_diffs(scratch: &mut Scratch, diffs: &PendingDiffs, estimate: usize) {
    scratch.build(estimate, |message| {
        let root = message.init_root::<schema::diff_chunk::Builder>();
        let mut list = root.init_diffs(diffs.diffs.len() as u32);
        let bytes = &diffs.bytes;
        for (i, (position, changes)) in diffs.diffs.iter().enumerate() {
            let mut out = list.reborrow().get(i as u32);
            out.set_position(*position);
            let changes = &diffs.changes[changes.clone()];
            let mut changes_out = out.init_changes(changes.len() as u32);
            for (j, change) in changes.iter().enumerate() {
                let mut c = changes_out.reborrow().get(j as u32);
                c.set_path(capnp::text::Reader::from(slice(bytes, &change.path)));
                if let Some(before) = &change.before {
                    c.set_before(capnp::text::Reader::from(slice(bytes, before)));
                }
                if let Some(after) = &change.after {
                    c.set_after(capnp::text::Reader::from(slice(bytes, after)));
                }
            }
        }
    })
}

/// Builds a `Keyframe` message in `scratch`: `tree` is the state's JSON text.
pub fn encode_keyframe(scratch: &mut Scratch, position: u64, tree: &[u8]) {
    scratch.build(8 * text_words(tree.len()), |message| {
        let mut root = message.init_root::<schema::keyframe::Builder>();
        root.set_position(position);
        root.set_tree(capnp::text::Reader::from(tree));
    })
}

/// Builds a `Checkpoint` message in `scratch`.
pub fn encode_checkpoint(
    scratch: &mut Scratch,
    input_seq: u64,
    hash: u64,
    unix_ns: u64,
    state: &[u8],
) {
    scratch.build(8 * data_words(state.len()), |message| {
        let mut root = message.init_root::<schema::checkpoint::Builder>();
        root.set_input_seq(input_seq);
        root.set_hash(hash);
        root.set_unix_ns(unix_ns);
        root.set_state(state);
    })
}

/// The footer's `Index` message.
pub fn encode_index(index: &IndexData) -> Vec<u8> {
    let mut message = Builder::new_default();
    let mut root = message.init_root::<schema::index::Builder>();
    encode_metadata(root.reborrow().init_metadata(), &index.metadata);
    let mut names = root.reborrow().init_names(index.names.len() as u32);
    for (i, name) in index.names.iter().enumerate() {
        names.set(i as u32, name.as_str());
    }
    root.set_input_count(index.input_count);
    root.set_event_count(index.event_count);
    let mut chunks = root.reborrow().init_chunks(index.chunks.len() as u32);
    for (i, chunk) in index.chunks.iter().enumerate() {
        let mut out = chunks.reborrow().get(i as u32);
        out.set_kind(kind_code(chunk.kind));
        out.set_offset(chunk.offset);
        out.set_stored_len(chunk.stored_len);
        out.set_raw_len(chunk.raw_len);
        out.set_checksum(chunk.checksum);
        out.set_first_position(chunk.first_position);
        out.set_last_position(chunk.last_position);
        out.set_first_event(chunk.first_event);
        out.set_count(chunk.count);
    }
    let mut keyframes = root.reborrow().init_keyframes(index.keyframes.len() as u32);
    for (i, (position, chunk)) in index.keyframes.iter().enumerate() {
        let mut out = keyframes.reborrow().get(i as u32);
        out.set_position(*position);
        out.set_chunk(*chunk);
    }
    let mut checkpoints = root.init_checkpoints(index.checkpoints.len() as u32);
    for (i, (info, chunk)) in index.checkpoints.iter().enumerate() {
        let mut out = checkpoints.reborrow().get(i as u32);
        out.set_input_seq(info.input_seq);
        out.set_hash(info.hash);
        out.set_unix_ns(info.unix_ns);
        out.set_state_len(info.state_len);
        out.set_chunk(*chunk);
    }
    serialize::write_message_to_words(&message)
}

fn encode_metadata(mut out: schema::metadata::Builder<'_>, metadata: &Metadata) {
    out.set_format_version(super::format::FORMAT_VERSION);
    out.set_ring_format_version(metadata.ring_format_version);
    out.set_machine_name(metadata.machine_name.as_str());
    out.set_machine_version(metadata.machine_version);
    out.set_host(metadata.host.as_str());
    out.set_pid(metadata.pid);
    out.set_record_start_unix_ns(metadata.record_start_unix_ns);
    out.set_record_end_unix_ns(metadata.record_end_unix_ns.unwrap_or(0));
    out.set_exported_unix_ns(metadata.exported_unix_ns);
    out.set_status(metadata.status.as_str());
    if let Some(cause) = &metadata.cause_of_death {
        out.set_cause_of_death(cause.as_str());
    }
    if let Some(crash) = &metadata.crash {
        let mut c = out.reborrow().init_crash();
        c.set_kind(crash.kind.as_str());
        c.set_signal(crash.signal.unwrap_or(0));
        c.set_has_code(crash.code.is_some());
        c.set_code(crash.code.unwrap_or(0));
        if let Some(addr) = &crash.fault_addr {
            c.set_fault_addr(addr.as_str());
        }
        if let Some(location) = &crash.location {
            c.set_location(location.as_str());
        }
        c.set_message(crash.message.as_str());
        c.set_thread(crash.thread.as_str());
        c.set_tid(crash.tid);
        c.set_time_unix_ns(crash.time_unix_ns);
    }
    let mut losses = out.reborrow().init_losses(metadata.losses.len() as u32);
    for (i, (name, value)) in metadata.losses.iter().enumerate() {
        let mut counter = losses.reborrow().get(i as u32);
        counter.set_name(name.as_str());
        counter.set_value(*value);
    }
    out.set_verification(metadata.verification.as_str());
    out.set_base_seq(metadata.base_seq);
    out.set_keyframe_interval(metadata.keyframe_interval);
    let mut panics = out
        .reborrow()
        .init_replay_panics(metadata.replay_panics.len() as u32);
    for (i, panic) in metadata.replay_panics.iter().enumerate() {
        let mut p = panics.reborrow().get(i as u32);
        p.set_position(panic.index as u64);
        p.set_seq(panic.seq);
        p.set_message(panic.message.as_str());
        if let Some(location) = &panic.location {
            p.set_location(location.as_str());
        }
    }
    out.set_replay_panic_count(metadata.replay_panic_count);
}

// ---------------------------------------------------------------------------------------------
// Decoding

/// Reads the message that fills `bytes` (8-byte aligned) exactly, under traversal limits sized
/// to it, and hands its reader to `decode`.
fn with_message<T>(
    bytes: &[u8],
    decode: impl FnOnce(&capnp::message::Reader<serialize::BufferSegments<&[u8]>>) -> DecodeResult<T>,
) -> DecodeResult<T> {
    let options: ReaderOptions = reader_options(bytes.len());
    let mut rest = bytes;
    let message = serialize::read_message_from_flat_slice(&mut rest, options)
        .map_err(|e| format!("not a Cap'n Proto message: {e}"))?;
    if !rest.is_empty() {
        return Err(format!("{} bytes after the message", rest.len()));
    }
    decode(&message)
}

fn err(e: capnp::Error) -> String {
    format!("bad message: {e}")
}

/// A list of `len` elements in a message of `bytes` bytes: each element of these schemas takes
/// at least a word, so a longer list is forged (its elements would be traversal-limit "free").
fn check_len(len: u32, bytes: usize, what: &str) -> DecodeResult<usize> {
    if len as usize > bytes / 8 {
        return Err(format!("{what}: {len} elements in a {bytes}-byte message"));
    }
    Ok(len as usize)
}

fn text(reader: capnp::Result<capnp::text::Reader<'_>>, what: &str) -> DecodeResult<String> {
    reader
        .map_err(err)?
        .to_string()
        .map_err(|_| format!("{what} is not UTF-8"))
}

fn optional_text(
    present: bool,
    reader: capnp::Result<capnp::text::Reader<'_>>,
    what: &str,
) -> DecodeResult<Option<String>> {
    present.then(|| text(reader, what)).transpose()
}

/// Decodes an `EventChunk`: its first event's index and its events.
pub fn decode_events(bytes: &[u8]) -> DecodeResult<(u64, Vec<StoredEvent>)> {
    with_message(bytes, |message| {
        let root = message
            .get_root::<schema::event_chunk::Reader>()
            .map_err(err)?;
        let list = root.get_events().map_err(err)?;
        let len = check_len(list.len(), bytes.len(), "events")?;
        let mut events = Vec::with_capacity(len);
        for event in list.iter() {
            let kind = match event.get_kind() {
                Ok(schema::EventKind::Input) => EventKind::Input,
                Ok(schema::EventKind::Trace) => EventKind::Trace,
                Err(e) => return Err(format!("unknown event kind {}", e.0)),
            };
            let trace_kind = match event.get_trace_kind() {
                Ok(schema::TraceKind::Event) => TraceKind::Event,
                Ok(schema::TraceKind::SpanEnter) => TraceKind::SpanEnter,
                Ok(schema::TraceKind::SpanExit) => TraceKind::SpanExit,
                Ok(schema::TraceKind::Thread) => TraceKind::Thread,
                Err(e) => return Err(format!("unknown trace kind {}", e.0)),
            };
            events.push(StoredEvent {
                kind,
                trace_kind,
                position: event.get_position(),
                seq: event.get_seq(),
                unix_ns: event.get_unix_ns(),
                name: event.get_name(),
                level: event.get_level(),
                summary: text(event.get_summary(), "a summary")?,
                tree: optional_text(event.has_tree(), event.get_tree(), "an input tree")?,
                raw: if event.has_raw() {
                    Some(event.get_raw().map_err(err)?.to_vec())
                } else {
                    None
                },
            });
        }
        Ok((root.get_first_event(), events))
    })
}

/// Decodes a `DiffChunk`: each input's position and its changes, parsed.
pub fn decode_diffs(bytes: &[u8]) -> DecodeResult<Vec<(u64, Vec<Change>)>> {
    with_message(bytes, |message| {
        let root = message
            .get_root::<schema::diff_chunk::Reader>()
            .map_err(err)?;
        let list = root.get_diffs().map_err(err)?;
        let len = check_len(list.len(), bytes.len(), "diffs")?;
        let mut diffs = Vec::with_capacity(len);
        for diff in list.iter() {
            let stored = diff.get_changes().map_err(err)?;
            let count = check_len(stored.len(), bytes.len(), "changes")?;
            let mut changes = Vec::with_capacity(count);
            for change in stored.iter() {
                let path_text = text(change.get_path(), "a path")?;
                let path = Path::parse(&path_text).map_err(|e| format!("bad path: {e}"))?;
                let value = |present, reader, what| -> DecodeResult<Option<serde_json::Value>> {
                    optional_text(present, reader, what)?
                        .map(|json| {
                            serde_json::from_str(&json)
                                .map_err(|e| format!("{what} of {path_text}: {e}"))
                        })
                        .transpose()
                };
                changes.push(Change {
                    before: value(change.has_before(), change.get_before(), "the value before")?,
                    after: value(change.has_after(), change.get_after(), "the value after")?,
                    path,
                });
            }
            diffs.push((diff.get_position(), changes));
        }
        Ok(diffs)
    })
}

/// Decodes a `Keyframe`: its position and its tree, parsed.
pub fn decode_keyframe(bytes: &[u8]) -> DecodeResult<(u64, serde_json::Value)> {
    with_message(bytes, |message| {
        let root = message
            .get_root::<schema::keyframe::Reader>()
            .map_err(err)?;
        let json = root.get_tree().map_err(err)?.as_bytes();
        let tree = serde_json::from_slice(json).map_err(|e| format!("the tree: {e}"))?;
        Ok((root.get_position(), tree))
    })
}

/// Decodes a `Checkpoint`.
pub fn decode_checkpoint(bytes: &[u8]) -> DecodeResult<CheckpointData> {
    with_message(bytes, |message| {
        let root = message
            .get_root::<schema::checkpoint::Reader>()
            .map_err(err)?;
        Ok(CheckpointData {
            input_seq: root.get_input_seq(),
            hash: root.get_hash(),
            unix_ns: root.get_unix_ns(),
            state: root.get_state().map_err(err)?.to_vec(),
        })
    })
}

/// Decodes the footer's `Index`.
pub fn decode_index(bytes: &[u8]) -> DecodeResult<IndexData> {
    with_message(bytes, |message| {
        let root = message.get_root::<schema::index::Reader>().map_err(err)?;
        let metadata = decode_metadata(root.get_metadata().map_err(err)?, bytes.len())?;
        let names_list = root.get_names().map_err(err)?;
        let mut names = Vec::with_capacity(check_len(names_list.len(), bytes.len(), "names")?);
        for name in names_list.iter() {
            names.push(text(name, "a name")?);
        }
        let chunk_list = root.get_chunks().map_err(err)?;
        let mut chunks = Vec::with_capacity(check_len(chunk_list.len(), bytes.len(), "chunks")?);
        for (i, chunk) in chunk_list.iter().enumerate() {
            let kind = match chunk.get_kind() {
                Ok(schema::ChunkKind::Events) => Kind::Events,
                Ok(schema::ChunkKind::Diffs) => Kind::Diffs,
                Ok(schema::ChunkKind::Keyframe) => Kind::Keyframe,
                Ok(schema::ChunkKind::Checkpoint) => Kind::Checkpoint,
                Err(e) => return Err(format!("chunk {i} has unknown kind {}", e.0)),
            };
            chunks.push(ChunkRef {
                kind,
                offset: chunk.get_offset(),
                stored_len: chunk.get_stored_len(),
                raw_len: chunk.get_raw_len(),
                checksum: chunk.get_checksum(),
                first_position: chunk.get_first_position(),
                last_position: chunk.get_last_position(),
                first_event: chunk.get_first_event(),
                count: chunk.get_count(),
            });
        }
        let keyframe_list = root.get_keyframes().map_err(err)?;
        let mut keyframes =
            Vec::with_capacity(check_len(keyframe_list.len(), bytes.len(), "keyframes")?);
        for keyframe in keyframe_list.iter() {
            keyframes.push((keyframe.get_position(), keyframe.get_chunk()));
        }
        let checkpoint_list = root.get_checkpoints().map_err(err)?;
        let mut checkpoints = Vec::with_capacity(check_len(
            checkpoint_list.len(),
            bytes.len(),
            "checkpoints",
        )?);
        for checkpoint in checkpoint_list.iter() {
            let info = super::CheckpointInfo {
                input_seq: checkpoint.get_input_seq(),
                hash: checkpoint.get_hash(),
                unix_ns: checkpoint.get_unix_ns(),
                state_len: checkpoint.get_state_len(),
            };
            checkpoints.push((info, checkpoint.get_chunk()));
        }
        Ok(IndexData {
            metadata,
            names,
            input_count: root.get_input_count(),
            event_count: root.get_event_count(),
            chunks,
            keyframes,
            checkpoints,
        })
    })
}

fn decode_metadata(m: schema::metadata::Reader<'_>, bytes: usize) -> DecodeResult<Metadata> {
    let version = m.get_format_version();
    if version != super::format::FORMAT_VERSION {
        return Err(format!("the metadata names format version {version}"));
    }
    let crash = if m.has_crash() {
        let c = m.get_crash().map_err(err)?;
        Some(Crash {
            kind: text(c.get_kind(), "the crash kind")?,
            signal: Some(c.get_signal()).filter(|&s| s != 0),
            code: c.get_has_code().then(|| c.get_code()),
            fault_addr: optional_text(c.has_fault_addr(), c.get_fault_addr(), "a fault address")?,
            location: optional_text(c.has_location(), c.get_location(), "a location")?,
            message: text(c.get_message(), "the crash message")?,
            thread: text(c.get_thread(), "the crash thread")?,
            tid: c.get_tid(),
            time_unix_ns: c.get_time_unix_ns(),
        })
    } else {
        None
    };
    let loss_list = m.get_losses().map_err(err)?;
    let mut losses = Vec::with_capacity(check_len(loss_list.len(), bytes, "losses")?);
    for counter in loss_list.iter() {
        losses.push((
            text(counter.get_name(), "a counter name")?,
            counter.get_value(),
        ));
    }
    let panic_list = m.get_replay_panics().map_err(err)?;
    let mut replay_panics = Vec::with_capacity(check_len(panic_list.len(), bytes, "panics")?);
    for panic in panic_list.iter() {
        let position = panic.get_position();
        replay_panics.push(ReplayPanic {
            index: usize::try_from(position)
                .map_err(|_| format!("a replay panic at position {position}"))?,
            seq: panic.get_seq(),
            message: text(panic.get_message(), "a panic message")?,
            location: optional_text(panic.has_location(), panic.get_location(), "a location")?,
        });
    }
    Ok(Metadata {
        ring_format_version: m.get_ring_format_version(),
        machine_name: text(m.get_machine_name(), "the machine name")?,
        machine_version: m.get_machine_version(),
        host: text(m.get_host(), "the host")?,
        pid: m.get_pid(),
        record_start_unix_ns: m.get_record_start_unix_ns(),
        record_end_unix_ns: Some(m.get_record_end_unix_ns()).filter(|&t| t != 0),
        exported_unix_ns: m.get_exported_unix_ns(),
        status: text(m.get_status(), "the status")?,
        cause_of_death: optional_text(
            m.has_cause_of_death(),
            m.get_cause_of_death(),
            "the cause of death",
        )?,
        crash,
        losses,
        verification: text(m.get_verification(), "the verification")?,
        base_seq: m.get_base_seq(),
        keyframe_interval: m.get_keyframe_interval(),
        replay_panics,
        replay_panic_count: m.get_replay_panic_count(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A message larger than its segment was sized for grows into heap segments and still
    /// reads back: the size estimate costs speed, never correctness.
    #[test]
    fn a_message_outgrowing_its_estimate_reads_back() {
        let change = |i: usize| Change {
            path: Path(vec![crate::tree::Segment::Index(i)]),
            before: Some(serde_json::json!(i)),
            after: Some(serde_json::json!("x".repeat(i * 7))),
        };
        let changes_of =
            |position: u64| -> Vec<Change> { (0..position as usize % 7).map(change).collect() };
        let mut diffs = PendingDiffs::default();
        for position in 0..300 {
            diffs.push(position, &changes_of(position));
        }
        let mut scratch = Scratch::default();
        for estimate in [0, 64, diffs.message_bytes()] {
            build_diffs(&mut scratch, &diffs, estimate);
            let decoded = decode_diffs(scratch.message()).expect("decodes");
            assert_eq!(decoded.len(), 300);
            for (position, changes) in decoded {
                assert_eq!(changes, changes_of(position), "position {position}");
            }
        }
    }
}
