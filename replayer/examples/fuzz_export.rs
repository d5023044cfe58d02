//! A fuzzer for the export reader, on stable Rust: it writes an export of a synthetic history
//! (inputs, trace events, keyframes, diffs, checkpoints, in many small chunks), then damages
//! copies of it and reads each copy back through `Export`, checking that
//!
//! - nothing panics, hangs, or allocates more than the file justifies (twice what reading the
//!   pristine file costs, plus twice the file's size);
//! - a refusal, or a failed read, names the file;
//! - raw damage (flipped bits, overwritten or zeroed bytes, truncation, garbage appended) never
//!   reads back as anything but the pristine content: what is not refused is exact;
//! - forged damage, which recompresses a chunk (or rewrites the footer) after changing its
//!   message and fixes every checksum, so the Cap'n Proto decoding and the consistency checks
//!   see garbage, is answered with an error or with some content, never with a panic, a hang or
//!   an allocation beyond the bound.
//!
//! ```text
//! cargo run -p flightrec-replayer --example fuzz_export --release -- \
//!     [--seed S] [--iterations N] [--first I]
//! ```
//!
//! Without `--iterations` it runs until stopped. Iteration `I` of seed `S` is repeated alone by
//! `--seed S --first I --iterations 1`. A failure prints that command, then aborts; a hang
//! aborts after [`HANG_LIMIT`].
//!
//! `replayer/tests/export_format.rs` includes this file for a bounded run in `cargo test`, and
//! uses its synthetic history for the round-trip tests.

// In the test build, `main` and its argument parsing are unused.
#![cfg_attr(test, allow(dead_code))]

use std::collections::BTreeMap;
use std::ops::Range;
use std::path::Path;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use capnp::message::ReaderOptions;
use flightrec_replayer::export::format::{self, Frame, Trailer, FRAME_HEADER_LEN, TRAILER_LEN};
use flightrec_replayer::export::{
    CheckpointEntry, Crash, EventKind, Export, ExportError, ExportOptions, ExportWriter,
    InputEntry, Metadata, TraceEntry,
};
use flightrec_replayer::tree::{diff, Change, Value};
use flightrec_replayer::ReplayPanic;
use flightrec_schemas::trace::TraceKind;
use flightrec_schemas::trace_capnp as schema;
use proptest::prelude::*;
use proptest::sample::Index;
use proptest::strategy::ValueTree;
use proptest::test_runner::{RngAlgorithm, TestRng, TestRunner};
use serde_json::json;

/// Inputs of the fuzzed export (the round-trip test makes longer ones).
pub const FUZZ_INPUTS: u64 = 600;
/// Inputs between keyframes in the fuzzed export.
pub const FUZZ_KEYFRAME_EVERY: u64 = 50;
/// Allowance for fixed costs: error messages, small tables, the footer.
const ALLOWED_FIXED: usize = 64 << 10;
/// One iteration takes milliseconds; one that takes this long is hung.
pub const HANG_LIMIT: Duration = Duration::from_secs(60);

// ---------------------------------------------------------------------------------------------
// The synthetic history

/// The kinds of trace event, in turn.
const TRACE_KINDS: [TraceKind; 4] = [
    TraceKind::Event,
    TraceKind::SpanEnter,
    TraceKind::SpanExit,
    TraceKind::Thread,
];

/// A history made up without a machine: inputs, the trees of the states after each, and trace
/// events around them. Its states change in every way a diff can say: scalars, keys added and
/// removed (some needing quotes in a path), sequences growing and shrinking, types changing.
pub struct Synthetic {
    /// The state before the first input.
    pub initial: Value,
    /// Input trees.
    pub inputs: Vec<Value>,
    /// `states[p]`: the state after the input at position `p`.
    pub states: Vec<Value>,
    /// Trace events before each input (thread, level, kind, message); the last entry follows the
    /// last input.
    pub traces: Vec<Vec<(String, u8, TraceKind, String)>>,
    /// Checkpoints: input seq, state bytes.
    pub checkpoints: Vec<(u64, Vec<u8>)>,
    /// Sequence number of position 0.
    pub base_seq: u64,
}

impl Synthetic {
    /// `n` inputs.
    pub fn new(n: u64) -> Synthetic {
        let initial = json!({
            "count": 0,
            "sum": 0,
            "ratio": 0.0,
            "accounts": [{"id": 0, "balance": 100}, {"id": 1, "balance": 50}],
            "tags": {},
            "log": [],
            "mode": "idle",
        });
        let mut state = initial.clone();
        let (mut inputs, mut states, mut traces) = (Vec::new(), Vec::new(), Vec::new());
        for i in 0..n {
            let input = json!({"Step": {"i": i, "kind": i % 7, "note": format!("step {i}")}});
            step(&mut state, i);
            inputs.push(input);
            states.push(state.clone());
            let threads = ["worker-1", "worker-2", "io \"main\""];
            traces.push(
                (0..i % 3)
                    .map(|t| {
                        let thread = threads[((i + t) % 3) as usize].to_owned();
                        let kind = TRACE_KINDS[((i + t) % 4) as usize];
                        let message = format!("before {i}, #{t}");
                        (thread, (1 + (i + t) % 5) as u8, kind, message)
                    })
                    .collect(),
            );
        }
        traces.push(vec![(
            "io \"main\"".into(),
            1,
            TraceKind::SpanExit,
            "after the last input".into(),
        )]);
        let checkpoints = vec![
            (1_000, (0..1000u32).map(|b| (b * 7) as u8).collect()),
            (1_000 + n / 2, vec![0xAB; 300]),
        ];
        Synthetic {
            initial,
            inputs,
            states,
            traces,
            checkpoints,
            base_seq: 1_000,
        }
    }

    /// The state before position `p`'s input.
    pub fn before(&self, p: usize) -> &Value {
        if p == 0 {
            &self.initial
        } else {
            &self.states[p - 1]
        }
    }

    /// What position `p`'s input changed.
    pub fn diff(&self, p: usize) -> Vec<Change> {
        diff(self.before(p), &self.states[p], usize::MAX)
    }

    /// The metadata written with it.
    pub fn metadata(&self, keyframe_every: u64) -> Metadata {
        Metadata {
            ring_format_version: 1,
            machine_name: "synthetic".into(),
            machine_version: 3,
            host: "test-host".into(),
            pid: 4242,
            record_start_unix_ns: 1_700_000_000_000_000_000,
            record_end_unix_ns: Some(1_700_000_100_000_000_000),
            exported_unix_ns: 1_700_000_200_000_000_000,
            status: "crashed".into(),
            cause_of_death: Some("panicked at ledger.rs:10: overdraft".into()),
            crash: Some(Crash {
                kind: "panic".into(),
                signal: None,
                code: Some(-6),
                fault_addr: None,
                location: Some("ledger.rs:10:5".into()),
                message: "overdraft".into(),
                thread: "main".into(),
                tid: 4243,
                time_unix_ns: 1_700_000_100_000_000_000,
            }),
            losses: vec![
                ("trace_dropped_no_lane".into(), 3),
                ("inputs_lost".into(), 0),
            ],
            verification: "passed: 2 hashes checked".into(),
            base_seq: self.base_seq,
            keyframe_interval: keyframe_every as u32,
            replay_panics: vec![
                ReplayPanic {
                    index: 0,
                    seq: self.base_seq,
                    message: "overdraft".into(),
                    location: Some("ledger.rs:10:5".into()),
                },
                ReplayPanic {
                    index: self.inputs.len() - 1,
                    seq: self.base_seq + self.inputs.len() as u64 - 1,
                    message: "a \"quoted\" message".into(),
                    location: None,
                },
            ],
            replay_panic_count: 7,
        }
    }

    /// Writes it to `path` with a keyframe every `keyframe_every` inputs.
    pub fn write(
        &self,
        path: &Path,
        keyframe_every: u64,
        options: ExportOptions,
    ) -> Result<u64, ExportError> {
        let mut writer = ExportWriter::create_with(path, self.metadata(keyframe_every), options)?;
        let mut trace_seq = 0;
        for (p, input) in self.inputs.iter().enumerate() {
            self.push_traces(&mut writer, p, &mut trace_seq)?;
            let raw = format!("raw-{p}").into_bytes();
            let position = writer.push_input(InputEntry {
                seq: self.base_seq + p as u64,
                unix_ns: 1_700_000_000_000_000_000 + p as u64 * 1000,
                summary: &format!("Step {p}"),
                tree: input,
                raw: &raw,
            })?;
            assert_eq!(position, p as u64);
            writer.push_diff(position, &self.diff(p))?;
            if position % keyframe_every == 0 {
                writer.push_keyframe(position, &self.states[p])?;
            }
        }
        self.push_traces(&mut writer, self.inputs.len(), &mut trace_seq)?;
        for (i, (seq, state)) in self.checkpoints.iter().enumerate() {
            writer.push_checkpoint(CheckpointEntry {
                input_seq: *seq,
                hash: format::checksum(state),
                unix_ns: 1_700_000_000_000_000_000 + i as u64,
                state,
            })?;
        }
        writer.finish()
    }

    fn push_traces(
        &self,
        writer: &mut ExportWriter,
        p: usize,
        seq: &mut u64,
    ) -> Result<(), ExportError> {
        for (thread, level, kind, message) in &self.traces[p] {
            writer.push_trace(TraceEntry {
                seq: *seq,
                unix_ns: 1_700_000_000_000_000_000 + p as u64 * 1000 - 1,
                thread,
                level: *level,
                kind: *kind,
                message,
            })?;
            *seq += 1;
        }
        Ok(())
    }

    /// The timeline as it must read back: (kind, trace kind, position, summary) of every event.
    pub fn timeline(&self) -> Vec<(EventKind, TraceKind, u64, String)> {
        let mut out = Vec::new();
        for (p, traces) in self.traces.iter().enumerate() {
            for (_, _, kind, message) in traces {
                out.push((EventKind::Trace, *kind, p as u64, message.clone()));
            }
            if p < self.inputs.len() {
                let summary = format!("Step {p}");
                out.push((EventKind::Input, TraceKind::Event, p as u64, summary));
            }
        }
        out
    }
}

/// The state change of input `i`.
fn step(state: &mut Value, i: u64) {
    let s = state.as_object_mut().expect("an object");
    s["count"] = json!(i + 1);
    let sum = s["sum"].as_u64().unwrap_or(0);
    s["sum"] = json!((sum * 31 + i) % 1_000_000_007);
    if i % 4 == 1 {
        s["ratio"] = json!(i as f64 / 4.0);
    }
    let accounts = s["accounts"].as_array_mut().expect("accounts");
    if i % 3 == 0 {
        let n = accounts.len();
        let balance = &mut accounts[(i as usize) % n]["balance"];
        *balance = json!(balance.as_u64().unwrap_or(0) + i);
    }
    if i % 97 == 96 {
        accounts.push(json!({"id": accounts.len(), "balance": i}));
    }
    if i % 211 == 210 && accounts.len() > 1 {
        accounts.pop();
    }
    let tags = s["tags"].as_object_mut().expect("tags");
    if i % 5 == 0 {
        let key = if i % 10 == 0 {
            format!("peer[10.0.0.{}]", i % 3)
        } else {
            format!("k{}", i % 11)
        };
        tags.insert(key, json!(i));
    }
    if i % 7 == 3 {
        tags.shift_remove(&format!("k{}", (i / 7) % 11));
    }
    let log = s["log"].as_array_mut().expect("log");
    if i % 13 == 0 {
        if log.len() >= 5 {
            log.truncate(2);
        } else {
            log.push(json!(format!("entry {i}")));
        }
    }
    if i % 50 == 25 {
        s["mode"] = if s["mode"].is_string() {
            json!({"busy": {"since": i}})
        } else {
            json!("idle")
        };
    }
}

// ---------------------------------------------------------------------------------------------
// The pristine file

/// The export as written, where its chunks and footer are, and what reading it costs.
pub struct Pristine {
    /// The file.
    pub bytes: Vec<u8>,
    /// The history it holds.
    pub history: Synthetic,
    /// Offset and stored length of each chunk.
    pub chunks: Vec<(u64, u64)>,
    /// Where the footer starts.
    pub footer_offset: u64,
    /// The most memory reading the pristine file took.
    pub peak: usize,
}

impl Pristine {
    /// Built once per process.
    pub fn get() -> &'static Pristine {
        static PRISTINE: OnceLock<Pristine> = OnceLock::new();
        PRISTINE.get_or_init(|| {
            let history = Synthetic::new(FUZZ_INPUTS);
            let dir = tempfile::tempdir().expect("tempdir");
            let path = dir.path().join("pristine.flightrec");
            let options = ExportOptions {
                events_per_chunk: 64,
                diffs_per_chunk: 16,
                ..ExportOptions::default()
            };
            history
                .write(&path, FUZZ_KEYFRAME_EVERY, options)
                .expect("write the pristine export");
            let bytes = std::fs::read(&path).expect("read it back");
            let trailer =
                Trailer::decode(&bytes[bytes.len() - TRAILER_LEN as usize..]).expect("a trailer");
            let footer = &bytes[trailer.footer_offset as usize..][..trailer.footer_len as usize];
            let chunks = with_index(footer, |index| {
                index
                    .get_chunks()
                    .expect("chunks")
                    .iter()
                    .map(|c| (c.get_offset(), u64::from(c.get_stored_len())))
                    .collect()
            });
            let (outcome, peak) =
                alloc_count::peak_during(|| read_and_check(&path, Some(&history)));
            assert_eq!(outcome, Outcome::Opened { damaged_reads: 0 });
            Pristine {
                bytes,
                history,
                chunks,
                footer_offset: trailer.footer_offset,
                peak,
            }
        })
    }
}

/// Runs `f` on the `Index` message in `footer` (copied to aligned words first).
fn with_index<T>(footer: &[u8], f: impl FnOnce(schema::index::Reader<'_>) -> T) -> T {
    let mut words = capnp::Word::allocate_zeroed_vec(footer.len() / 8);
    capnp::Word::words_to_bytes_mut(&mut words).copy_from_slice(footer);
    let mut slice = capnp::Word::words_to_bytes(&words);
    let message = capnp::serialize::read_message_from_flat_slice(&mut slice, ReaderOptions::new())
        .expect("the pristine footer");
    f(message.get_root().expect("an index"))
}

// ---------------------------------------------------------------------------------------------
// Mutations

/// A footer field of a chunk reference.
#[derive(Clone, Copy, Debug)]
pub enum RefField {
    Offset,
    StoredLen,
    RawLen,
    FirstPosition,
    LastPosition,
    FirstEvent,
    Count,
}

/// One piece of damage.
#[derive(Clone, Debug)]
pub enum Mutation {
    /// Flip one bit anywhere.
    FlipBit { at: Index, bit: u8 },
    /// Overwrite bytes with random ones.
    Overwrite { at: Index, bytes: Vec<u8> },
    /// Zero aligned words.
    ZeroWords { at: Index, words: u8 },
    /// Cut the file short.
    Truncate { to: Index },
    /// Append garbage.
    Extend { bytes: Vec<u8> },
    /// Change a trailer word (footer offset, length): absurd or near sizes.
    Trailer { word: u8, value: u64 },
    /// Flip bits in the decompressed message of a chunk (or, past the last chunk, in the
    /// footer), then recompress it and fix every checksum and offset.
    Reforge {
        target: usize,
        flips: Vec<(Index, u8)>,
    },
    /// Set a chunk reference's field in the footer to `value`, fixing the frame header to agree
    /// (where it has the field) and the footer checksum. Chunks are counted modulo their number.
    ForgeRef {
        chunk: usize,
        field: RefField,
        value: u64,
    },
}

impl Mutation {
    /// Whether the mutation forges checksums (so content may read back changed).
    pub fn forges(&self) -> bool {
        matches!(self, Mutation::Reforge { .. } | Mutation::ForgeRef { .. })
    }

    pub fn apply(&self, bytes: &mut Vec<u8>) {
        let len = bytes.len();
        match self {
            Mutation::FlipBit { at, bit } => {
                if len > 0 {
                    bytes[at.index(len)] ^= 1 << (bit % 8);
                }
            }
            Mutation::Overwrite { at, bytes: new } => {
                if len > 0 {
                    let i = at.index(len);
                    let end = (i + new.len()).min(len);
                    bytes[i..end].copy_from_slice(&new[..end - i]);
                }
            }
            Mutation::ZeroWords { at, words } => {
                if len > 0 {
                    let start = at.index(len) & !7;
                    let end = (start + 8 * *words as usize).min(len);
                    bytes[start..end].fill(0);
                }
            }
            Mutation::Truncate { to } => bytes.truncate(to.index(len + 1)),
            Mutation::Extend { bytes: garbage } => bytes.extend_from_slice(garbage),
            Mutation::Trailer { word, value } => {
                if len >= TRAILER_LEN as usize {
                    let at = len - TRAILER_LEN as usize + 8 * (*word as usize % 2);
                    bytes[at..at + 8].copy_from_slice(&value.to_le_bytes());
                }
            }
            Mutation::Reforge { target, flips } => reforge(bytes, *target, flips),
            Mutation::ForgeRef {
                chunk,
                field,
                value,
            } => forge_ref(bytes, *chunk, *field, *value),
        }
    }
}

/// The pristine file rebuilt with chunk `target`'s message (or the footer) changed.
fn reforge(bytes: &mut Vec<u8>, target: usize, flips: &[(Index, u8)]) {
    let pristine = Pristine::get();
    if *bytes != pristine.bytes {
        return; // only forged on the pristine file: offsets are known there
    }
    let which = target % (pristine.chunks.len() + 1);
    let flip = |message: &mut Vec<u8>| {
        for (at, bit) in flips {
            let i = at.index(message.len());
            message[i] ^= 1 << (bit % 8);
        }
    };
    if which == pristine.chunks.len() {
        let mut footer = bytes[pristine.footer_offset as usize..bytes.len() - 32].to_vec();
        flip(&mut footer);
        rewrite_footer(bytes, pristine.footer_offset, footer);
        return;
    }
    let (offset, stored_len) = pristine.chunks[which];
    let frame = Frame::decode(&bytes[offset as usize..][..FRAME_HEADER_LEN as usize]);
    let stored_at = (offset + FRAME_HEADER_LEN) as usize;
    let stored = &bytes[stored_at..][..stored_len as usize];
    let mut message =
        lz4_flex::block::decompress(stored, frame.raw_len as usize).expect("a pristine chunk");
    flip(&mut message);
    let restored = lz4_flex::block::compress(&message);
    let new_frame = Frame {
        stored_len: restored.len() as u32,
        checksum: format::checksum(&restored),
        ..frame
    };
    let old_end = stored_at + format::pad8(stored_len).unwrap() as usize;
    let mut rebuilt = bytes[..offset as usize].to_vec();
    rebuilt.extend_from_slice(&new_frame.encode());
    rebuilt.extend_from_slice(&restored);
    rebuilt.resize(format::pad8(rebuilt.len() as u64).unwrap() as usize, 0);
    let delta = rebuilt.len() as i64 - old_end as i64;
    rebuilt.extend_from_slice(&bytes[old_end..pristine.footer_offset as usize]);
    let footer_offset = rebuilt.len() as u64;
    let footer = edit_index(
        &bytes[pristine.footer_offset as usize..bytes.len() - 32],
        |index| {
            let mut chunks = index.get_chunks().expect("chunks");
            let mut this = chunks.reborrow().get(which as u32);
            this.set_stored_len(new_frame.stored_len);
            this.set_checksum(new_frame.checksum);
            for later in which + 1..chunks.len() as usize {
                let mut c = chunks.reborrow().get(later as u32);
                let offset = c.reborrow_as_reader().get_offset();
                c.set_offset(offset.wrapping_add_signed(delta));
            }
        },
    );
    rebuilt.extend_from_slice(&footer);
    rebuilt.extend_from_slice(&[0; 32]);
    rewrite_footer(&mut rebuilt, footer_offset, footer);
    *bytes = rebuilt;
}

/// Sets one field of a chunk reference in the footer.
fn forge_ref(bytes: &mut Vec<u8>, chunk: usize, field: RefField, value: u64) {
    let pristine = Pristine::get();
    if *bytes != pristine.bytes {
        return;
    }
    let which = chunk % pristine.chunks.len();
    let footer = edit_index(
        &bytes[pristine.footer_offset as usize..bytes.len() - 32],
        |index| {
            let mut chunks = index.get_chunks().expect("chunks");
            let mut c = chunks.reborrow().get(which as u32);
            match field {
                RefField::Offset => c.set_offset(value),
                RefField::StoredLen => c.set_stored_len(value as u32),
                RefField::RawLen => c.set_raw_len(value as u32),
                RefField::FirstPosition => c.set_first_position(value),
                RefField::LastPosition => c.set_last_position(value),
                RefField::FirstEvent => c.set_first_event(value),
                RefField::Count => c.set_count(value as u32),
            }
        },
    );
    // The frame header agrees, so only the bounds checks stand between the claim and a read.
    let (offset, _) = pristine.chunks[which];
    let at = offset as usize;
    let mut frame = Frame::decode(&bytes[at..at + FRAME_HEADER_LEN as usize]);
    match field {
        RefField::StoredLen => frame.stored_len = value as u32,
        RefField::RawLen => frame.raw_len = value as u32,
        _ => {}
    }
    bytes[at..at + FRAME_HEADER_LEN as usize].copy_from_slice(&frame.encode());
    let footer_offset = pristine.footer_offset;
    rewrite_footer(bytes, footer_offset, footer);
}

/// The footer message with `edit` applied.
fn edit_index(footer: &[u8], edit: impl FnOnce(schema::index::Builder<'_>)) -> Vec<u8> {
    let mut builder = capnp::message::Builder::new_default();
    with_index(footer, |index| {
        builder.set_root(index).expect("copy the index")
    });
    edit(builder.get_root().expect("the index"));
    capnp::serialize::write_message_to_words(&builder)
}

/// Replaces everything from `footer_offset` with `footer` and a trailer for it.
fn rewrite_footer(bytes: &mut Vec<u8>, footer_offset: u64, footer: Vec<u8>) {
    bytes.truncate(footer_offset as usize);
    let trailer = Trailer {
        footer_offset,
        footer_len: footer.len() as u64,
        footer_checksum: format::checksum(&footer),
    };
    bytes.extend_from_slice(&footer);
    bytes.extend_from_slice(&trailer.encode());
}

fn absurd() -> impl Strategy<Value = u64> {
    prop_oneof![
        Just(0u64),
        Just(1),
        Just(8),
        Just(255),
        Just(1 << 20),
        Just(u32::MAX as u64),
        Just(1 << 32),
        Just(1 << 62),
        Just(u64::MAX),
        any::<u64>(),
        any::<u16>().prop_map(u64::from),
    ]
}

fn ref_field() -> impl Strategy<Value = RefField> {
    prop_oneof![
        Just(RefField::Offset),
        Just(RefField::StoredLen),
        Just(RefField::RawLen),
        Just(RefField::FirstPosition),
        Just(RefField::LastPosition),
        Just(RefField::FirstEvent),
        Just(RefField::Count),
    ]
}

/// Any one mutation.
pub fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        4 => (any::<Index>(), 0u8..8).prop_map(|(at, bit)| Mutation::FlipBit { at, bit }),
        2 => (any::<Index>(), prop::collection::vec(any::<u8>(), 1..64))
            .prop_map(|(at, bytes)| Mutation::Overwrite { at, bytes }),
        2 => (any::<Index>(), 1u8..=16).prop_map(|(at, words)| Mutation::ZeroWords { at, words }),
        1 => any::<Index>().prop_map(|to| Mutation::Truncate { to }),
        1 => prop::collection::vec(any::<u8>(), 1..256)
            .prop_map(|bytes| Mutation::Extend { bytes }),
        1 => (0u8..2, absurd()).prop_map(|(word, value)| Mutation::Trailer { word, value }),
        4 => (any::<usize>(), prop::collection::vec((any::<Index>(), 0u8..8), 1..6))
            .prop_map(|(target, flips)| Mutation::Reforge { target, flips }),
        3 => (any::<usize>(), ref_field(), absurd())
            .prop_map(|(chunk, field, value)| Mutation::ForgeRef { chunk, field, value }),
    ]
}

/// One to three mutations, applied in order (the forging ones only act on the pristine file,
/// so they count when they come first).
pub fn mutations() -> impl Strategy<Value = Vec<Mutation>> {
    prop::collection::vec(mutation(), 1..4)
}

// ---------------------------------------------------------------------------------------------
// The checks

/// What became of one damaged file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Refused at open, with the error's kind.
    Refused(&'static str),
    /// Opened; `damaged_reads` reads failed with an error.
    Opened { damaged_reads: usize },
}

fn error_kind(error: &ExportError) -> &'static str {
    match error {
        ExportError::Io { .. } => "cannot read",
        ExportError::Exists { .. } => "exists",
        ExportError::Format { .. } => "bad format",
        ExportError::Chunk { .. } => "bad chunk",
        ExportError::OutOfRange { .. } => "out of range",
        ExportError::NoKeyframe { .. } => "no keyframe",
        ExportError::BadDiff { .. } => "bad diff",
        ExportError::Misuse { .. } => "misuse",
    }
}

/// Writes `bytes` to `path`, reads it back and checks what it says (panicking on any
/// violation), including how much memory that took. `exact`: the damage forged no checksum, so
/// whatever reads back must be pristine. Returns the outcome and the peak.
pub fn check(bytes: &[u8], path: &Path, exact: bool) -> (Outcome, usize) {
    let pristine = Pristine::get();
    std::fs::write(path, bytes).expect("write the damaged file");
    let expected = exact.then_some(&pristine.history);
    let (outcome, peak) = alloc_count::peak_during(|| read_and_check(path, expected));
    let allowed = 2 * pristine.peak + 2 * bytes.len() + ALLOWED_FIXED;
    assert!(
        peak <= allowed,
        "reading a {}-byte file allocated {peak} bytes (allowed {allowed}): {outcome:?}",
        bytes.len()
    );
    (outcome, peak)
}

fn names_file(error: &ExportError, path: &Path) {
    let text = error.to_string();
    assert!(
        text.contains(&path.display().to_string()),
        "the error does not name the file: {text}"
    );
}

/// Opens the export at `path` and reads a sample of everything in it; with `expected`, what
/// reads back must be that history's.
fn read_and_check(path: &Path, expected: Option<&Synthetic>) -> Outcome {
    let export = match Export::open(path) {
        Ok(export) => export,
        Err(error) => {
            names_file(&error, path);
            return Outcome::Refused(error_kind(&error));
        }
    };
    let exact = expected.is_some();
    let fallback;
    let history = match expected {
        Some(history) => history,
        None => {
            fallback = Synthetic::new(0);
            &fallback
        }
    };
    let mut damaged_reads = 0;
    let mut failed = |error: ExportError| {
        names_file(&error, path);
        // Positions past the end fail by design, damage or not.
        if !matches!(error, ExportError::OutOfRange { .. }) {
            damaged_reads += 1;
        }
    };
    if exact {
        assert_eq!(export.len(), history.inputs.len() as u64, "inputs");
        assert_eq!(*export.metadata(), history.metadata(FUZZ_KEYFRAME_EVERY));
    }
    let len = export.len();
    let timeline = history.timeline();
    let samples = [0, 1, len / 3, len / 2, len.saturating_sub(1), len, len + 1];
    for &p in &samples {
        let expect_ok = exact && p < len;
        match export.input(p) {
            Ok(event) if exact => {
                assert_eq!(event.summary, format!("Step {p}"));
                assert_eq!(
                    event.input_tree().as_ref(),
                    Some(&history.inputs[p as usize])
                );
            }
            Ok(_) => {}
            Err(error) => {
                assert!(!expect_ok || !matches!(error, ExportError::OutOfRange { .. }));
                failed(error)
            }
        }
        match export.state_tree(p) {
            Ok(tree) if exact => assert_eq!(tree, history.states[p as usize], "state {p}"),
            Ok(_) => {}
            Err(error) => failed(error),
        }
        match export.diff(p) {
            Ok(changes) if exact => assert_eq!(changes, history.diff(p as usize), "diff {p}"),
            Ok(_) => {}
            Err(error) => failed(error),
        }
    }
    let events = export.event_count();
    for start in [0, events / 2, events.saturating_sub(3)] {
        match export.events(start..start + 5) {
            Ok(read) if exact => {
                let expected = &timeline[start as usize..(start as usize + 5).min(timeline.len())];
                let read: Vec<_> = read
                    .iter()
                    .map(|e| (e.kind, e.trace_kind, e.position, e.summary.clone()))
                    .collect();
                assert_eq!(read, expected, "events from {start}");
            }
            Ok(_) => {}
            Err(error) => failed(error),
        }
    }
    if let Err(error) = export.events_at(len / 4..len / 4 + 3) {
        failed(error);
    }
    for i in 0..export.checkpoints().len() + 1 {
        match export.checkpoint_state(i) {
            Ok(state) if exact => assert_eq!(state, history.checkpoints[i].1, "checkpoint {i}"),
            Ok(_) => {}
            Err(error) => failed(error),
        }
    }
    Outcome::Opened { damaged_reads }
}

// ---------------------------------------------------------------------------------------------
// The loop

/// Outcomes of a run, by kind.
#[derive(Debug, Default)]
pub struct Stats {
    /// Damaged files checked.
    pub iterations: u64,
    /// Refusals at open, by kind.
    pub refused: BTreeMap<&'static str, u64>,
    /// Damaged files opened.
    pub opened: u64,
    /// Opened files in which some read failed.
    pub opened_with_damage: u64,
    /// The most memory one check took.
    pub peak_bytes: usize,
}

impl Stats {
    fn add(&mut self, (outcome, peak): (Outcome, usize)) {
        self.iterations += 1;
        self.peak_bytes = self.peak_bytes.max(peak);
        match outcome {
            Outcome::Refused(kind) => *self.refused.entry(kind).or_default() += 1,
            Outcome::Opened { damaged_reads } => {
                self.opened += 1;
                self.opened_with_damage += u64::from(damaged_reads > 0);
            }
        }
    }
}

/// The mutations of iteration `iteration` of the run seeded `seed`.
pub fn mutations_for(seed: u64, iteration: u64) -> Vec<Mutation> {
    let mut key = [0u8; 32];
    key[..8].copy_from_slice(&seed.to_le_bytes());
    key[8..16].copy_from_slice(&iteration.to_le_bytes());
    let rng = TestRng::from_seed(RngAlgorithm::ChaCha, &key);
    let mut runner = TestRunner::new_with_rng(ProptestConfig::default(), rng);
    mutations()
        .new_tree(&mut runner)
        .expect("mutations always generate")
        .current()
}

/// The pristine file with `mutations` applied, and whether what reads back must be exact.
pub fn damaged(mutations: &[Mutation]) -> (Vec<u8>, bool) {
    let mut bytes = Pristine::get().bytes.clone();
    let mut exact = true;
    for mutation in mutations {
        let before = bytes.len();
        let was_pristine = bytes == Pristine::get().bytes;
        mutation.apply(&mut bytes);
        if mutation.forges()
            && was_pristine
            && (bytes != Pristine::get().bytes || before != bytes.len())
        {
            exact = false;
        }
    }
    (bytes, exact)
}

/// Runs `iterations` iterations (or forever), reporting every `report_every`.
pub fn run(seed: u64, iterations: Range<u64>, report_every: u64, dir: &Path) -> Stats {
    let path = dir.join("damaged.flightrec");
    let mut stats = Stats::default();
    let started = Instant::now();
    Pristine::get();
    for iteration in iterations {
        let mutations = mutations_for(seed, iteration);
        let (bytes, exact) = damaged(&mutations);
        set_context(seed, iteration, &mutations);
        let _watchdog = Watchdog::arm(HANG_LIMIT);
        stats.add(check(&bytes, &path, exact));
        if report_every > 0 && stats.iterations % report_every == 0 {
            eprintln!(
                "{:>9} iterations in {:.1?}: {stats:?}",
                stats.iterations,
                started.elapsed()
            );
        }
    }
    clear_context();
    stats
}

// ---------------------------------------------------------------------------------------------
// Reporting failures, the watchdog, counting allocations: shared with the other fuzz program

#[path = "support/fuzz.rs"]
mod support;
pub use support::{alloc_count, clear_context, install_panic_hook, Watchdog};

fn set_context(seed: u64, iteration: u64, mutations: &[Mutation]) {
    support::set_context("fuzz_export", seed, iteration, &mutations);
}

/// Names the case being checked (by a test that does not come from a seed).
pub fn set_case(case: impl std::fmt::Debug) {
    support::set_case("fuzz_export", case);
}

// ---------------------------------------------------------------------------------------------
// The program

fn main() {
    let args = support::parse_args().unwrap_or_else(|e| {
        eprintln!("fuzz_export: {e}\nusage: fuzz_export [--seed S] [--iterations N] [--first I]");
        std::process::exit(2)
    });
    install_panic_hook(true);
    let end = args
        .iterations
        .map_or(u64::MAX, |n| args.first.saturating_add(n));
    let dir = tempfile::tempdir().expect("tempdir");
    eprintln!(
        "fuzz_export: seed {}, iterations {}..{end}",
        args.seed, args.first
    );
    let started = Instant::now();
    let stats = run(args.seed, args.first..end, 10_000, dir.path());
    println!(
        "{} iterations in {:.1?}, no failure: {stats:?}",
        stats.iterations,
        started.elapsed()
    );
}
