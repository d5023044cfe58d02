//! Reading an export as untrusted input. `open` checks the header, the trailer and the whole
//! footer (every chunk inside the file, in order, not overlapping, with sizes it can justify);
//! chunks are read when asked for, each checked against its checksum and its decoded size
//! against the index before anything is allocated for it.

use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use capnp::Word;
use serde_json::Value;

use super::codec::{self, ChunkRef, StoredEvent};
use super::format::{
    self, Frame, Kind, Trailer, FORMAT_VERSION, FRAME_HEADER_LEN, HEADER_LEN, MAGIC,
    MAX_CHUNK_BYTES, MAX_LZ4_RATIO, TRAILER_LEN,
};
use super::{CheckpointInfo, Event, ExportError, Metadata};
use crate::map::RingMap;
use crate::tree::{Change, Segment};

/// Decoded events of one chunk.
struct EventsChunk {
    first_event: u64,
    events: Vec<StoredEvent>,
}

/// Decoded diffs of one chunk, positions increasing.
type DiffsChunk = Vec<(u64, Vec<Change>)>;

/// What the last reads decoded, so that stepping through a history decodes each chunk once and
/// rebuilds a state from the one before it.
#[derive(Default)]
struct Cache {
    events: Option<(usize, Arc<EventsChunk>)>,
    diffs: Option<(usize, Arc<DiffsChunk>)>,
    /// The last state rebuilt: its position, and the keyframe it was rebuilt from.
    state: Option<(u64, u64, Value)>,
}

/// An opened export.
pub struct Export {
    path: PathBuf,
    map: RingMap,
    metadata: Metadata,
    names: Vec<String>,
    input_count: u64,
    event_count: u64,
    chunks: Vec<ChunkRef>,
    /// Indices into `chunks` of the event chunks, in event order.
    event_chunks: Vec<usize>,
    /// Indices into `chunks` of the diff chunks, in position order.
    diff_chunks: Vec<usize>,
    /// Position and chunk index of each keyframe, positions increasing.
    keyframes: Vec<(u64, usize)>,
    keyframe_positions: Vec<u64>,
    checkpoints: Vec<CheckpointInfo>,
    checkpoint_chunks: Vec<usize>,
    cache: Mutex<Cache>,
}

impl std::fmt::Debug for Export {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Export")
            .field("path", &self.path)
            .field("inputs", &self.input_count)
            .field("events", &self.event_count)
            .field("chunks", &self.chunks.len())
            .finish_non_exhaustive()
    }
}

impl Export {
    /// Opens and validates the export at `path`: its header, trailer and footer. Costs reading
    /// the footer, whatever the history's length.
    pub fn open(path: &Path) -> Result<Export, ExportError> {
        let map = RingMap::open(path).map_err(|error| ExportError::Io {
            path: path.to_owned(),
            error,
        })?;
        let bad = |offset: u64, what: String| ExportError::Format {
            path: path.to_owned(),
            offset,
            what,
        };
        let len = map.len();
        if len < HEADER_LEN + TRAILER_LEN {
            return Err(bad(
                0,
                format!("{len} bytes is too short for an export (a truncated file?)"),
            ));
        }
        if len % 8 != 0 {
            return Err(bad(
                len,
                format!("{len} bytes is not a multiple of 8 (truncated or extended?)"),
            ));
        }
        let header = map
            .copy(0, HEADER_LEN)
            .ok_or_else(|| bad(0, "header unreadable".into()))?;
        if header[..8] != MAGIC {
            return Err(bad(0, "not an export (bad magic)".into()));
        }
        let version = u32::from_le_bytes([header[8], header[9], header[10], header[11]]);
        if version != FORMAT_VERSION {
            return Err(bad(
                8,
                format!(
                    "export format version {version}; this build reads version {FORMAT_VERSION} \
                     only (export the ring file again with this build)"
                ),
            ));
        }
        if header[12..16] != [0; 4] {
            return Err(bad(12, "reserved header bytes are not zero".into()));
        }
        let trailer_offset = len - TRAILER_LEN;
        let trailer_bytes = map
            .copy(trailer_offset, TRAILER_LEN)
            .ok_or_else(|| bad(trailer_offset, "trailer unreadable".into()))?;
        let trailer =
            Trailer::decode(&trailer_bytes).map_err(|what| bad(trailer_offset, what.into()))?;
        let footer_offset = trailer.footer_offset;
        if footer_offset < HEADER_LEN
            || footer_offset % 8 != 0
            || footer_offset.checked_add(trailer.footer_len) != Some(trailer_offset)
            || trailer.footer_len < 8
        {
            return Err(bad(
                trailer_offset,
                format!(
                    "the trailer places the footer at {footer_offset}, {} bytes long, which \
                     does not end at the trailer",
                    trailer.footer_len
                ),
            ));
        }
        let footer = read_words(&map, footer_offset, trailer.footer_len)
            .ok_or_else(|| bad(footer_offset, "footer unreadable".into()))?;
        let footer_bytes = Word::words_to_bytes(&footer);
        if format::checksum(footer_bytes) != trailer.footer_checksum {
            return Err(bad(footer_offset, "footer checksum mismatch".into()));
        }
        let index = codec::decode_index(footer_bytes)
            .map_err(|what| bad(footer_offset, format!("footer: {what}")))?;
        drop(footer);
        Export::from_index(path, map, index, footer_offset)
            .map_err(|what| bad(footer_offset, format!("footer: {what}")))
    }

    /// Checks the footer's index for consistency, and builds the reader's tables.
    fn from_index(
        path: &Path,
        map: RingMap,
        index: codec::IndexData,
        footer_offset: u64,
    ) -> Result<Export, String> {
        let (input_count, event_count) = (index.input_count, index.event_count);
        if input_count > event_count {
            return Err(format!("{input_count} inputs among {event_count} events"));
        }
        let mut event_chunks = Vec::new();
        let mut diff_chunks = Vec::new();
        let mut end = HEADER_LEN;
        let mut next_event = 0u64;
        let mut last_event_position = 0u64;
        let mut next_diff_position = 0u64;
        for (i, chunk) in index.chunks.iter().enumerate() {
            let stored = u64::from(chunk.stored_len);
            let raw = u64::from(chunk.raw_len);
            let chunk_end = format::pad8(stored)
                .and_then(|padded| chunk.offset.checked_add(FRAME_HEADER_LEN + padded));
            if chunk.offset < end
                || chunk.offset % 8 != 0
                || chunk_end.is_none_or(|e| e > footer_offset)
            {
                return Err(format!(
                    "chunk {i} at offset {} ({stored} bytes) is not inside the chunk area \
                     {end}..{footer_offset}",
                    chunk.offset
                ));
            }
            end = chunk_end.unwrap_or(footer_offset);
            if raw < 8 || raw % 8 != 0 || raw > MAX_CHUNK_BYTES || raw > stored * MAX_LZ4_RATIO {
                return Err(format!(
                    "chunk {i} claims {raw} bytes decompressed from {stored}"
                ));
            }
            let count = u64::from(chunk.count);
            if count == 0 || count > raw / 8 {
                return Err(format!("chunk {i} claims {count} records in {raw} bytes"));
            }
            match chunk.kind {
                Kind::Events => {
                    if chunk.first_event != next_event
                        || chunk.first_position < last_event_position
                        || chunk.last_position < chunk.first_position
                        || chunk.last_position > input_count
                    {
                        return Err(format!(
                            "event chunk {i} (events from {}, positions {}..={}) out of order",
                            chunk.first_event, chunk.first_position, chunk.last_position
                        ));
                    }
                    next_event += count;
                    last_event_position = chunk.last_position;
                    event_chunks.push(i);
                }
                Kind::Diffs => {
                    if chunk.first_position < next_diff_position
                        || chunk.last_position < chunk.first_position
                        || chunk.last_position >= input_count
                        || count > chunk.last_position - chunk.first_position + 1
                    {
                        return Err(format!(
                            "diff chunk {i} (positions {}..={}) out of order",
                            chunk.first_position, chunk.last_position
                        ));
                    }
                    next_diff_position = chunk.last_position + 1;
                    diff_chunks.push(i);
                }
                Kind::Keyframe | Kind::Checkpoint => {
                    if count != 1 {
                        return Err(format!("chunk {i} holds {count} records, not 1"));
                    }
                }
            }
        }
        if next_event != event_count {
            return Err(format!(
                "the event chunks hold {next_event} events, not {event_count}"
            ));
        }
        let chunk_of = |chunk: u32, kind: Kind| -> Result<usize, String> {
            let i = chunk as usize;
            match index.chunks.get(i) {
                Some(c) if c.kind == kind => Ok(i),
                _ => Err(format!("chunk {i} is not a {kind:?} chunk")),
            }
        };
        let mut keyframes = Vec::with_capacity(index.keyframes.len());
        for &(position, chunk) in &index.keyframes {
            let i = chunk_of(chunk, Kind::Keyframe)?;
            let after_last = keyframes.last().is_none_or(|&(last, _)| position > last);
            if !after_last || position >= input_count || index.chunks[i].first_position != position
            {
                return Err(format!(
                    "keyframe at position {position} out of order or range"
                ));
            }
            keyframes.push((position, i));
        }
        if let Some(panic) = index
            .metadata
            .replay_panics
            .iter()
            .find(|p| p.index as u64 >= input_count)
        {
            return Err(format!(
                "a replay panic at position {}, past the {input_count} inputs",
                panic.index
            ));
        }
        let mut checkpoints = Vec::with_capacity(index.checkpoints.len());
        let mut checkpoint_chunks = Vec::with_capacity(index.checkpoints.len());
        for &(info, chunk) in &index.checkpoints {
            let i = chunk_of(chunk, Kind::Checkpoint)?;
            if info.state_len > u64::from(index.chunks[i].raw_len) {
                return Err(format!(
                    "checkpoint {} claims {} bytes in a chunk of {}",
                    checkpoints.len(),
                    info.state_len,
                    index.chunks[i].raw_len
                ));
            }
            checkpoints.push(info);
            checkpoint_chunks.push(i);
        }
        Ok(Export {
            path: path.to_owned(),
            map,
            metadata: index.metadata,
            names: index.names,
            input_count,
            event_count,
            chunks: index.chunks,
            event_chunks,
            diff_chunks,
            keyframe_positions: keyframes.iter().map(|&(p, _)| p).collect(),
            keyframes,
            checkpoints,
            checkpoint_chunks,
            cache: Mutex::new(Cache::default()),
        })
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// What was recorded, and what became of the recording process.
    pub fn metadata(&self) -> &Metadata {
        &self.metadata
    }

    /// Inputs in the history: positions `0..len()`.
    pub fn len(&self) -> u64 {
        self.input_count
    }

    /// Whether the history holds no input.
    pub fn is_empty(&self) -> bool {
        self.input_count == 0
    }

    /// Events (inputs and trace events) in the timeline.
    pub fn event_count(&self) -> u64 {
        self.event_count
    }

    /// Positions of the keyframes, increasing.
    pub fn keyframe_positions(&self) -> &[u64] {
        &self.keyframe_positions
    }

    /// The event at `index` of the timeline (`0..event_count()`).
    pub fn event(&self, index: u64) -> Result<Event, ExportError> {
        let (chunk, decoded) = self.events_chunk_with_event(index)?;
        let offset = (index - decoded.first_event) as usize;
        self.resolve(chunk, &decoded.events[offset])
    }

    /// The events at indices `range` of the timeline (clamped to it), in order.
    pub fn events(&self, range: Range<u64>) -> Result<Vec<Event>, ExportError> {
        let end = range.end.min(self.event_count);
        let mut out = Vec::new();
        let mut index = range.start;
        while index < end {
            let (chunk, decoded) = self.events_chunk_with_event(index)?;
            let from = (index - decoded.first_event) as usize;
            let to = (end - decoded.first_event).min(decoded.events.len() as u64) as usize;
            for event in &decoded.events[from..to] {
                out.push(self.resolve(chunk, event)?);
            }
            index = decoded.first_event + to as u64;
        }
        Ok(out)
    }

    /// The input at `position`.
    pub fn input(&self, position: u64) -> Result<Event, ExportError> {
        self.check_position(position)?;
        // The input of a position is the last event of that position, so it is in the last chunk
        // whose first position is at most `position`.
        let slot = self
            .event_chunks
            .partition_point(|&c| self.chunks[c].first_position <= position);
        let chunk = self.event_chunks[slot.saturating_sub(1)];
        let decoded = self.events_chunk(chunk)?;
        let found = decoded
            .events
            .iter()
            .find(|e| e.kind == super::EventKind::Input && e.position == position);
        match found {
            Some(event) => self.resolve(chunk, event),
            None => Err(self.chunk_error(chunk, format!("the input at {position} is missing"))),
        }
    }

    /// The events whose position is in `positions`: for each position, the trace events just
    /// before its input, then the input; trace events after the last input have position
    /// `len()`.
    pub fn events_at(&self, positions: Range<u64>) -> Result<Vec<Event>, ExportError> {
        // The first event chunk that reaches the start.
        let slot = self
            .event_chunks
            .partition_point(|&c| self.chunks[c].last_position < positions.start);
        let mut out = Vec::new();
        for &chunk in &self.event_chunks[slot..] {
            if self.chunks[chunk].first_position >= positions.end {
                break;
            }
            let decoded = self.events_chunk(chunk)?;
            for event in &decoded.events {
                if positions.contains(&event.position) {
                    out.push(self.resolve(chunk, event)?);
                }
            }
        }
        Ok(out)
    }

    /// The state after the input at `position`, as a tree: the keyframe at or before it with
    /// the diffs after that keyframe applied (or, stepping forward, the last state rebuilt with
    /// the diffs since).
    pub fn state_tree(&self, position: u64) -> Result<Value, ExportError> {
        self.check_position(position)?;
        let slot = self.keyframes.partition_point(|&(p, _)| p <= position);
        let Some(&(keyframe, keyframe_chunk)) = slot.checked_sub(1).map(|s| &self.keyframes[s])
        else {
            return Err(ExportError::NoKeyframe {
                path: self.path.clone(),
                position,
            });
        };
        let cached = self.lock().state.take();
        let (mut at, mut tree) = match cached {
            Some((at, from, tree)) if from == keyframe && at <= position => (at, tree),
            _ => {
                let raw = self.read_chunk(keyframe_chunk)?;
                let (stored, tree) = codec::decode_keyframe(raw_bytes(&raw))
                    .map_err(|what| self.chunk_error(keyframe_chunk, what))?;
                if stored != keyframe {
                    return Err(self.chunk_error(
                        keyframe_chunk,
                        format!("holds position {stored}, not {keyframe}"),
                    ));
                }
                (keyframe, tree)
            }
        };
        // Apply the diffs of positions at+1 ..= position, chunk by chunk.
        let mut slot = self
            .diff_chunks
            .partition_point(|&c| self.chunks[c].last_position <= at);
        while at < position {
            let Some(&chunk) = self.diff_chunks.get(slot) else {
                break;
            };
            if self.chunks[chunk].first_position > position {
                break;
            }
            let diffs = self.diffs_chunk(chunk)?;
            for (diff_position, changes) in diffs.iter() {
                if *diff_position <= at || *diff_position > position {
                    continue;
                }
                for change in changes {
                    apply(&mut tree, change).map_err(|what| ExportError::BadDiff {
                        path: self.path.clone(),
                        position: *diff_position,
                        at: codec::path_text(&change.path),
                        what,
                    })?;
                }
            }
            at = self.chunks[chunk].last_position.min(position);
            slot += 1;
        }
        self.lock().state = Some((position, keyframe, tree.clone()));
        Ok(tree)
    }

    /// The state before the first input: the state after it with its diff undone (an export
    /// stores states after inputs only).
    pub fn base_state(&self) -> Result<Value, ExportError> {
        let mut tree = self.state_tree(0)?;
        // Undone in the diff's own order: a sequence that grew by several elements is cut at the
        // first, and one that was cut grows back from the first.
        for change in self.diff(0)? {
            let undo = Change {
                path: change.path.clone(),
                before: change.after,
                after: change.before,
            };
            apply(&mut tree, &undo).map_err(|what| ExportError::BadDiff {
                path: self.path.clone(),
                position: 0,
                at: change.path.to_string(),
                what,
            })?;
        }
        Ok(tree)
    }

    /// What the input at `position` changed (empty where nothing was stored for it).
    pub fn diff(&self, position: u64) -> Result<Vec<Change>, ExportError> {
        self.check_position(position)?;
        let slot = self
            .diff_chunks
            .partition_point(|&c| self.chunks[c].last_position < position);
        let Some(&chunk) = self.diff_chunks.get(slot) else {
            return Ok(Vec::new());
        };
        if self.chunks[chunk].first_position > position {
            return Ok(Vec::new());
        }
        let diffs = self.diffs_chunk(chunk)?;
        Ok(diffs
            .binary_search_by_key(&position, |(p, _)| *p)
            .map(|i| diffs[i].1.clone())
            .unwrap_or_default())
    }

    /// The stored checkpoints, in the order they were written.
    pub fn checkpoints(&self) -> &[CheckpointInfo] {
        &self.checkpoints
    }

    /// The state bytes of checkpoint `index` (of [`checkpoints`](Export::checkpoints)).
    pub fn checkpoint_state(&self, index: usize) -> Result<Vec<u8>, ExportError> {
        let Some(&chunk) = self.checkpoint_chunks.get(index) else {
            return Err(ExportError::OutOfRange {
                path: self.path.clone(),
                position: index as u64,
                len: self.checkpoints.len() as u64,
            });
        };
        let raw = self.read_chunk(chunk)?;
        let data = codec::decode_checkpoint(raw_bytes(&raw))
            .map_err(|what| self.chunk_error(chunk, what))?;
        let info = self.checkpoints[index];
        if data.input_seq != info.input_seq
            || data.hash != info.hash
            || data.unix_ns != info.unix_ns
            || data.state.len() as u64 != info.state_len
        {
            return Err(self.chunk_error(chunk, "differs from the index".into()));
        }
        Ok(data.state)
    }

    // -----------------------------------------------------------------------------------------

    fn lock(&self) -> std::sync::MutexGuard<'_, Cache> {
        self.cache
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn check_position(&self, position: u64) -> Result<(), ExportError> {
        if position >= self.input_count {
            return Err(ExportError::OutOfRange {
                path: self.path.clone(),
                position,
                len: self.input_count,
            });
        }
        Ok(())
    }

    fn chunk_error(&self, chunk: usize, what: String) -> ExportError {
        ExportError::Chunk {
            path: self.path.clone(),
            chunk,
            offset: self.chunks[chunk].offset,
            what,
        }
    }

    fn resolve(&self, chunk: usize, event: &StoredEvent) -> Result<Event, ExportError> {
        let name = self.names.get(event.name as usize).ok_or_else(|| {
            self.chunk_error(chunk, format!("an event names name {}", event.name))
        })?;
        Ok(Event {
            kind: event.kind,
            position: event.position,
            seq: event.seq,
            unix_ns: event.unix_ns,
            name: name.clone(),
            level: event.level,
            trace_kind: event.trace_kind,
            summary: event.summary.clone(),
            tree: event.tree.clone(),
            raw: event.raw.clone(),
        })
    }

    /// The event chunk holding event `index`, decoded.
    fn events_chunk_with_event(
        &self,
        index: u64,
    ) -> Result<(usize, Arc<EventsChunk>), ExportError> {
        if index >= self.event_count {
            return Err(ExportError::OutOfRange {
                path: self.path.clone(),
                position: index,
                len: self.event_count,
            });
        }
        let slot = self
            .event_chunks
            .partition_point(|&c| self.chunks[c].first_event <= index);
        let chunk = self.event_chunks[slot.saturating_sub(1)];
        Ok((chunk, self.events_chunk(chunk)?))
    }

    /// Event chunk `chunk`, decoded and checked against the index: its events numbered as the
    /// index says, in timeline order (an input at every position from the chunk's first).
    fn events_chunk(&self, chunk: usize) -> Result<Arc<EventsChunk>, ExportError> {
        if let Some((cached, decoded)) = &self.lock().events {
            if *cached == chunk {
                return Ok(decoded.clone());
            }
        }
        let raw = self.read_chunk(chunk)?;
        let (first_event, events) =
            codec::decode_events(raw_bytes(&raw)).map_err(|what| self.chunk_error(chunk, what))?;
        drop(raw);
        let info = self.chunks[chunk];
        if first_event != info.first_event || events.len() as u64 != u64::from(info.count) {
            return Err(self.chunk_error(chunk, "holds other events than the index says".into()));
        }
        let mut inputs_before = info.first_position;
        for event in &events {
            if event.position != inputs_before {
                return Err(self.chunk_error(
                    chunk,
                    format!("an event at position {} is out of order", event.position),
                ));
            }
            if event.kind == super::EventKind::Input {
                inputs_before += 1;
            }
        }
        let last = events.last().map_or(0, |e| e.position);
        // The next chunk must start where this one's inputs end.
        let next = self
            .event_chunks
            .iter()
            .position(|&c| c == chunk)
            .and_then(|slot| self.event_chunks.get(slot + 1));
        let next_starts = next.map_or(self.input_count, |&c| self.chunks[c].first_position);
        if last != info.last_position || inputs_before != next_starts {
            return Err(self.chunk_error(
                chunk,
                format!(
                    "its events end at position {last} with {inputs_before} inputs before the \
                     next chunk, which starts at {next_starts}"
                ),
            ));
        }
        let decoded = Arc::new(EventsChunk {
            first_event,
            events,
        });
        self.lock().events = Some((chunk, decoded.clone()));
        Ok(decoded)
    }

    /// Diff chunk `chunk`, decoded and checked against the index.
    fn diffs_chunk(&self, chunk: usize) -> Result<Arc<DiffsChunk>, ExportError> {
        if let Some((cached, decoded)) = &self.lock().diffs {
            if *cached == chunk {
                return Ok(decoded.clone());
            }
        }
        let raw = self.read_chunk(chunk)?;
        let diffs =
            codec::decode_diffs(raw_bytes(&raw)).map_err(|what| self.chunk_error(chunk, what))?;
        drop(raw);
        let info = self.chunks[chunk];
        let increasing = diffs.windows(2).all(|w| w[0].0 < w[1].0);
        let (first, last) = (diffs.first().map(|d| d.0), diffs.last().map(|d| d.0));
        if diffs.len() as u64 != u64::from(info.count)
            || !increasing
            || first != Some(info.first_position)
            || last != Some(info.last_position)
        {
            return Err(self.chunk_error(chunk, "holds other diffs than the index says".into()));
        }
        let decoded = Arc::new(diffs);
        self.lock().diffs = Some((chunk, decoded.clone()));
        Ok(decoded)
    }

    /// The decompressed message of chunk `chunk`, in 8-aligned words: the frame header must
    /// agree with the index, the stored bytes with their checksum, and the LZ4 block must decode
    /// to exactly the length the index gives (walked before the buffer is allocated).
    fn read_chunk(&self, chunk: usize) -> Result<Vec<Word>, ExportError> {
        let info = self.chunks[chunk];
        let bad = |what: &str| self.chunk_error(chunk, what.to_owned());
        let frame_bytes = self
            .map
            .copy(info.offset, FRAME_HEADER_LEN)
            .ok_or_else(|| bad("frame header outside the file"))?;
        let frame = Frame::decode(&frame_bytes);
        let expected = Frame {
            kind: info.kind as u32,
            reserved: 0,
            stored_len: info.stored_len,
            raw_len: info.raw_len,
            checksum: info.checksum,
        };
        if frame != expected {
            return Err(bad("frame header differs from the index"));
        }
        let stored = self
            .map
            .copy(info.offset + FRAME_HEADER_LEN, u64::from(info.stored_len))
            .ok_or_else(|| bad("stored bytes outside the file"))?;
        if format::checksum(&stored) != info.checksum {
            return Err(bad("checksum mismatch"));
        }
        let raw_len = u64::from(info.raw_len);
        match format::lz4_decoded_len(&stored, raw_len) {
            Some(len) if len == raw_len => {}
            Some(len) => {
                return Err(
                    self.chunk_error(chunk, format!("decompresses to {len} bytes, not {raw_len}"))
                )
            }
            None => return Err(bad("not an LZ4 block of the size the index gives")),
        }
        let mut words = Word::allocate_zeroed_vec(info.raw_len as usize / 8);
        let out = Word::words_to_bytes_mut(&mut words);
        match lz4_flex::block::decompress_into(&stored, out) {
            Ok(n) if n == out.len() => Ok(words),
            Ok(n) => Err(self.chunk_error(chunk, format!("decompressed {n} bytes, not {raw_len}"))),
            Err(e) => Err(self.chunk_error(chunk, format!("LZ4: {e}"))),
        }
    }
}

fn raw_bytes(words: &[Word]) -> &[u8] {
    Word::words_to_bytes(words)
}

/// `len` bytes at `offset` (both multiples of 8), as aligned words, or `None` outside the file.
fn read_words(map: &RingMap, offset: u64, len: u64) -> Option<Vec<Word>> {
    let source = map.words(offset, len / 8)?;
    let mut words = Word::allocate_zeroed_vec(source.len());
    let bytes = Word::words_to_bytes_mut(&mut words);
    for (out, word) in bytes.chunks_exact_mut(8).zip(source) {
        out.copy_from_slice(
            &word
                .load(std::sync::atomic::Ordering::Relaxed)
                .to_le_bytes(),
        );
    }
    Some(words)
}

/// Applies one change of a diff to `tree`: the value at its path must be its `before` (for an
/// element removed from the end of a sequence, the sequence is cut there), and becomes its
/// `after`. A key added to an object goes last (so key order may differ from the replayed
/// state's until the next keyframe; values compare equal regardless).
fn apply(tree: &mut Value, change: &Change) -> Result<(), String> {
    let Some((last, parents)) = change.path.0.split_last() else {
        if Some(&*tree) != change.before.as_ref() {
            return Err("the state before differs".into());
        }
        *tree = change.after.clone().ok_or("the root cannot be removed")?;
        return Ok(());
    };
    let mut node = tree;
    for segment in parents {
        node = match segment {
            Segment::Key(key) => node.as_object_mut().and_then(|m| m.get_mut(key)),
            Segment::Index(i) => node.as_array_mut().and_then(|a| a.get_mut(*i)),
        }
        .ok_or("no such parent")?;
    }
    match last {
        Segment::Key(key) => {
            let map = node.as_object_mut().ok_or("the parent is not an object")?;
            if map.get(key) != change.before.as_ref() {
                return Err("the value before differs".into());
            }
            match &change.after {
                Some(value) => {
                    map.insert(key.clone(), value.clone());
                }
                None => {
                    map.shift_remove(key);
                }
            }
        }
        Segment::Index(i) => {
            let items = node.as_array_mut().ok_or("the parent is not a sequence")?;
            let i = *i;
            match &change.after {
                None if i >= items.len() => {} // cut already, by an earlier index
                None => {
                    if Some(&items[i]) != change.before.as_ref() {
                        return Err("the value before differs".into());
                    }
                    items.truncate(i);
                }
                Some(value) => {
                    if items.get(i) != change.before.as_ref() {
                        return Err("the value before differs".into());
                    }
                    match i.cmp(&items.len()) {
                        std::cmp::Ordering::Less => items[i] = value.clone(),
                        std::cmp::Ordering::Equal => items.push(value.clone()),
                        std::cmp::Ordering::Greater => return Err("beyond the end".into()),
                    }
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tree::diff;
    use serde_json::json;

    #[test]
    fn diffs_applied_rebuild_the_state_after() {
        let pairs = [
            (json!({"a": 1, "b": [1, 2, 3]}), json!({"a": 2, "b": [1]})),
            (
                json!({"a": 1, "b": [1]}),
                json!({"b": [1, {"x": 2}, 3], "c": null}),
            ),
            (json!([1, 2]), json!({"now": "an object"})),
            (
                json!({"m": {"k.1": 1, "": 2}}),
                json!({"m": {"k.1": 3, "[x]": 4}}),
            ),
            (json!(1), json!("one")),
        ];
        for (before, after) in pairs {
            let mut tree = before.clone();
            for change in diff(&before, &after, usize::MAX) {
                let path = crate::tree::Path::parse(&codec::path_text(&change.path)).unwrap();
                assert_eq!(path, change.path);
                apply(&mut tree, &change).unwrap();
            }
            assert_eq!(tree, after, "from {before}");
        }
        let mut tree = json!({"a": 1});
        let stale = diff(&json!({"a": 5}), &json!({"a": 6}), 10);
        assert!(apply(&mut tree, &stale[0]).is_err());
    }
}
