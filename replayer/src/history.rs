//! Replay: the state of a machine after every retained input, rebuilt from the base checkpoint
//! and verified against the state hashes recorded at checkpoints.
//!
//! A [`History`] replays everything once when it is built (verifying as it goes and keeping
//! encoded snapshots every `interval` inputs, within a memory budget), then reaches any position
//! from the nearest snapshot: at most `interval` inputs are re-applied, forwards or backwards.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::ops::Range;
use std::panic::{self, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Once};

use flightrec_schemas::checkpoint::state_hash;
use flightrec_schemas::clock::Clock;
use flightrec_schemas::header::LaneKind;
use flightrec_schemas::layout::CHECKPOINT_HEADER_SIZE;
use flightrec_schemas::trace::{TraceEvent, TraceKind};
use flightrec_schemas::{CodecError, Machine, Tick};

use crate::error::OpenError;
use crate::progress::{Progress, Stage};
use crate::recover::{Checkpoint, LaneRecords, Record, Recovered, RecoveredLane};
use crate::ring::Ring;
use crate::snapshots::{encode, Snapshots};
use crate::summary::{replay_base, Summary};
use crate::trail::{Trail, PER_WALK};
use crate::tree::{self, Change, Path as TreePath, Value};

/// Replay panics kept with their messages; more are only counted.
pub const MAX_PANICS_KEPT: usize = 1000;
/// Memory that snapshots may use by default: 256 MiB.
pub const DEFAULT_SNAPSHOT_BUDGET: usize = 256 << 20;

/// Why a ring file could not be replayed.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    /// The file could not be opened or is not a valid ring file.
    #[error(transparent)]
    Open(#[from] OpenError),
    /// It records another machine, or another version of it.
    #[error(
        "{path}: it records machine `{found}` version {found_version}, but this program replays \
         `{expected}` version {expected_version}; replay it with the service's own binary, which \
         serves the same commands through flightrec::cli"
    )]
    WrongMachine {
        /// The file.
        path: PathBuf,
        /// Machine named in the file.
        found: String,
        /// Its version.
        found_version: u32,
        /// Machine this program replays.
        expected: &'static str,
        /// Its version.
        expected_version: u32,
    },
    /// No usable checkpoint from which the retained inputs can be replayed.
    #[error("{path}: nothing to replay from: {why}")]
    NoBase {
        /// The file.
        path: PathBuf,
        /// What is missing.
        why: String,
    },
    /// The base checkpoint's state bytes (whose hash matched) do not decode.
    #[error("{path}: the checkpoint at input {seq} does not decode as `{machine}`: {error}")]
    BadCheckpoint {
        /// The file.
        path: PathBuf,
        /// Its input sequence number.
        seq: u64,
        /// The machine.
        machine: &'static str,
        /// The decoder's complaint.
        error: CodecError,
    },
    /// A retained input (whose checksum matched) does not decode.
    #[error("{path}: input {seq} does not decode: {error}")]
    BadInput {
        /// The file.
        path: PathBuf,
        /// Its sequence number.
        seq: u64,
        /// The decoder's complaint.
        error: CodecError,
    },
}

/// Settings of a replay.
#[derive(Clone, Debug)]
pub struct ReplayOptions {
    /// Bytes of encoded state that in-memory snapshots may hold; when the state grows past it,
    /// every other snapshot is dropped.
    pub snapshot_budget: usize,
    /// Where to report how far opening and replaying has come, for a loading screen.
    pub progress: Option<Arc<Progress>>,
}

impl Default for ReplayOptions {
    fn default() -> Self {
        ReplayOptions {
            snapshot_budget: DEFAULT_SNAPSHOT_BUDGET,
            progress: None,
        }
    }
}

/// One retained input, decoded.
#[derive(Clone, Debug)]
pub struct InputEvent<I> {
    /// Its sequence number in the input lane.
    pub seq: u64,
    /// Clock ticks when it was recorded.
    pub ticks: u64,
    /// Unix time, ns, from the file's clock calibration (the time the machine was handed).
    pub unix_ns: u64,
    /// The input.
    pub input: I,
}

/// One trace record, decoded.
#[derive(Clone, Debug)]
pub struct TraceRecord {
    /// Index of its lane in [`History::lane_names`].
    pub lane: usize,
    /// Name of the thread that wrote it (the lane's owner at the time; the lane's name when
    /// its owner's name record was overwritten).
    pub thread: String,
    /// Sequence number in its lane.
    pub seq: u64,
    /// Clock ticks when it was recorded.
    pub ticks: u64,
    /// Unix time, ns.
    pub unix_ns: u64,
    /// The event; `None` where the payload does not decode (the reason is in `damage`).
    pub event: Option<TraceEvent>,
    /// Why the payload does not decode.
    pub damage: Option<String>,
}

/// An input whose `apply` panicked during replay.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct ReplayPanic {
    /// Position of the input in the history.
    pub index: usize,
    /// Its sequence number.
    pub seq: u64,
    /// The panic message.
    pub message: String,
    /// Where it panicked, when known.
    pub location: Option<String>,
}

/// A recorded state hash compared with the replayed state's.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct HashCheck {
    /// Inputs applied before the checkpoint (the state after input `seq - 1`).
    pub seq: u64,
    /// Hash recorded at the checkpoint (hex in JSON: 64-bit numbers lose precision there).
    #[serde(serialize_with = "hex")]
    pub recorded: u64,
    /// Hash of the replayed state, encoded by this build; `None` when this build cannot encode
    /// it (its `encode_state` fails, or needs more than the recording's state capacity).
    #[serde(serialize_with = "hex_or_null")]
    pub replayed: Option<u64>,
}

impl HashCheck {
    /// Whether they match.
    pub fn passed(&self) -> bool {
        self.replayed == Some(self.recorded)
    }
}

fn hex<S: serde::Serializer>(hash: &u64, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.collect_str(&format_args!("{hash:016x}"))
}

fn hex_or_null<S: serde::Serializer>(hash: &Option<u64>, serializer: S) -> Result<S::Ok, S::Error> {
    match hash {
        Some(hash) => hex(hash, serializer),
        None => serializer.serialize_none(),
    }
}

/// Where the replayed history departs from the recorded one.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Divergence {
    /// The inputs in which it arose: after input `from_seq - 1` the states still agreed (the base
    /// checkpoint or an earlier matching check), before input `to_seq` they no longer do.
    pub from_seq: u64,
    /// See `from_seq`.
    pub to_seq: u64,
    /// The failed check.
    pub check: HashCheck,
    /// The first fields in which the recorded state and the replayed one differ (empty when the
    /// encodings differ but the values do not: the state's encoding is not deterministic).
    pub fields: Vec<Change>,
    /// Why no fields could be shown, or what the empty list means.
    pub note: Option<String>,
}

/// The outcome of verification.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize)]
pub struct Verification {
    /// Every check made, in order.
    pub checks: Vec<HashCheck>,
    /// The first failed check, explained.
    pub divergence: Option<Divergence>,
}

impl Verification {
    /// True when every recorded hash was matched (vacuously true when there was none to check).
    pub fn passed(&self) -> bool {
        self.divergence.is_none()
    }
}

/// The history of a machine rebuilt from a ring file: every retained input, the state after each,
/// the trace events around them, and the verification of the replay.
pub struct History<M: Machine> {
    path: PathBuf,
    summary: Summary,
    lane_names: Vec<String>,
    base_seq: u64,
    base: M,
    inputs: Inputs,
    traces: Vec<TraceRecord>,
    snapshots: Snapshots,
    panics: Vec<ReplayPanic>,
    /// Panics in all, of which the first [`MAX_PANICS_KEPT`] are kept.
    panic_count: usize,
    verification: Verification,
    /// The last state reached, and how many inputs it has applied.
    cursor: Option<(usize, M)>,
    /// States kept along the last walks, for stepping back through them.
    trail: Trail<M>,
}

/// The share of [`ReplayOptions::snapshot_budget`] that the [`Trail`] may take, as a divisor.
const TRAIL_SHARE: usize = 4;

impl<M: Machine + Clone> History<M> {
    /// Opens `path`, recovers it, and replays it with default options.
    pub fn open(path: &Path) -> Result<History<M>, ReplayError> {
        History::open_with(path, &ReplayOptions::default())
    }

    /// Opens `path`, recovers it, and replays it.
    pub fn open_with(path: &Path, options: &ReplayOptions) -> Result<History<M>, ReplayError> {
        let progress = options.progress.as_deref();
        progress.inspect(|p| p.enter(Stage::Recovering));
        let ring = Ring::open(path)?;
        check_machine::<M>(&ring)?;
        let recovered = Recovered::of(&ring);
        History::replay(&ring, recovered, options)
    }

    /// Replays what was recovered from `ring`.
    pub fn replay(
        ring: &Ring,
        mut recovered: Recovered,
        options: &ReplayOptions,
    ) -> Result<History<M>, ReplayError> {
        check_machine::<M>(ring)?;
        let path = ring.path().to_owned();
        let summary = Summary::with(ring, &recovered);
        let base_checkpoint = base_checkpoint(&path, &recovered)?.clone();
        let base_seq = base_checkpoint.header.input_seq;
        let base = M::decode_state(&base_checkpoint.state).map_err(|error| {
            ReplayError::BadCheckpoint {
                path: path.clone(),
                seq: base_seq,
                machine: M::NAME,
                error,
            }
        })?;
        let clock = ring.header().clock;
        let traces = decode_traces(&recovered, |t| clock.to_unix_ns(t));
        let lane_names = recovered.lanes.iter().map(|l| l.name.clone()).collect();
        let inputs = Inputs::from_base(
            std::mem::take(&mut recovered.lanes[0].records),
            base_seq,
            clock,
        );
        let state_bytes = base_checkpoint.state.len().max(std::mem::size_of::<M>());
        // No state of this recording was larger than its checkpoint slots.
        let capacity = ring.header().checkpoint_slot_size - CHECKPOINT_HEADER_SIZE;
        let limit = usize::try_from(capacity).unwrap_or(usize::MAX);
        let snapshots = Snapshots::new(options.snapshot_budget, state_bytes, inputs.len(), limit);
        let trail_states = options.snapshot_budget / TRAIL_SHARE / state_bytes;
        let mut checkpoints = recovered.checkpoints;
        checkpoints.retain(|c| c.header.input_seq > base_seq);
        let mut history = History {
            path,
            summary,
            lane_names,
            base_seq,
            base,
            inputs,
            traces,
            snapshots,
            panics: Vec::new(),
            panic_count: 0,
            verification: Verification::default(),
            cursor: None,
            trail: Trail::new(trail_states.min(4 * PER_WALK)),
        };
        let progress = options.progress.as_deref();
        let replayed = history.replay_all(&checkpoints, &base_checkpoint, progress);
        progress.inspect(|p| p.enter(Stage::Done));
        replayed?;
        Ok(history)
    }

    /// Applies every input once: decodes it, takes the snapshots, records panics, checks the
    /// hashes. Fails on the first input that does not decode.
    fn replay_all(
        &mut self,
        checkpoints: &[Checkpoint],
        base: &Checkpoint,
        progress: Option<&Progress>,
    ) -> Result<(), ReplayError> {
        progress.inspect(|p| p.replaying(self.inputs.len()));
        let mut verifier = Verifier {
            encoded: vec![0u8; base.state.len().max(4096)],
            limit: self.snapshots.limit(),
            agreed_at: self.base_seq,
            verification: Verification::default(),
        };
        // The base state, decoded then encoded again by this build, must give the recorded hash:
        // otherwise its encoding is not deterministic and no later check can be trusted.
        verifier.check(base, &self.base);
        let mut machine = self.base.clone();
        let base_seq = self.base_seq;
        let mut stops = FirstReplay {
            snapshots: &mut self.snapshots,
            verifier,
            pending: checkpoints,
            base_seq,
            progress,
        };
        let (panics, panic_count) = (&mut self.panics, &mut self.panic_count);
        let panicked = |index, message, location| {
            *panic_count += 1;
            if panics.len() >= MAX_PANICS_KEPT {
                return;
            }
            panics.push(ReplayPanic {
                index,
                seq: base_seq + index as u64,
                message,
                location,
            })
        };
        let inputs = &self.inputs;
        apply_range(&mut machine, inputs, 0..inputs.len(), &mut stops, panicked).map_err(
            |(index, error)| ReplayError::BadInput {
                path: self.path.clone(),
                seq: base_seq + index as u64,
                error,
            },
        )?;
        self.verification = stops.verifier.verification;
        progress.inspect(|p| p.replayed(self.inputs.len()));
        self.cursor = Some((self.inputs.len(), machine));
        Ok(())
    }

    /// The file replayed.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// What the file holds: header, status, crash, lanes, checkpoints.
    pub fn summary(&self) -> &Summary {
        &self.summary
    }

    /// Number of retained inputs replayed.
    pub fn len(&self) -> usize {
        self.inputs.len()
    }

    /// Whether no input was retained after the base checkpoint.
    pub fn is_empty(&self) -> bool {
        self.inputs.is_empty()
    }

    /// Sequence number of the base checkpoint: the first input replayed has this number.
    pub fn base_seq(&self) -> u64 {
        self.base_seq
    }

    /// Inputs between snapshots: the most that reaching any position re-applies.
    pub fn snapshot_interval(&self) -> usize {
        self.snapshots.interval()
    }

    /// Bytes of memory the snapshots hold (within [`ReplayOptions::snapshot_budget`]).
    pub fn snapshot_bytes(&self) -> usize {
        self.snapshots.bytes()
    }

    /// The input at `index` (0-based position in the history), decoded.
    pub fn input(&self, index: usize) -> Option<InputEvent<M::Input>> {
        if index >= self.len() {
            return None;
        }
        let record = self.inputs.record(index);
        Some(InputEvent {
            seq: record.seq,
            ticks: record.ticks,
            unix_ns: self.inputs.clock.to_unix_ns(record.ticks),
            input: M::decode_input(record.payload).ok()?,
        })
    }

    /// Every input, decoded one by one, in order.
    pub fn inputs(&self) -> impl Iterator<Item = InputEvent<M::Input>> + '_ {
        (0..self.len()).map_while(|index| self.input(index))
    }

    /// Every decoded trace record, ordered by time.
    pub fn traces(&self) -> &[TraceRecord] {
        &self.traces
    }

    /// Names of the lanes, indexed by [`TraceRecord::lane`].
    pub fn lane_names(&self) -> &[String] {
        &self.lane_names
    }

    /// Inputs whose `apply` panicked during replay (the crash itself, typically); the first
    /// [`MAX_PANICS_KEPT`] of them.
    pub fn panics(&self) -> &[ReplayPanic] {
        &self.panics
    }

    /// How many inputs panicked during replay in all.
    pub fn panic_count(&self) -> usize {
        self.panic_count
    }

    /// The result of checking the recorded state hashes.
    pub fn verification(&self) -> &Verification {
        &self.verification
    }

    /// The state of the base checkpoint, before the first replayed input.
    pub fn base_state(&self) -> &M {
        &self.base
    }

    /// The state after the input at `index`; `None` past the end.
    pub fn state_after(&mut self, index: usize) -> Option<&M> {
        (index < self.inputs.len()).then(|| self.seek(index + 1))
    }

    /// The state after `applied` inputs (0: the base state).
    ///
    /// It goes on from the nearest known state at or before `applied`: the cursor (nothing to set
    /// up), a state kept on the trail (one clone) or a snapshot (one decode). A long walk leaves
    /// states on the trail, so that the next step back is short.
    fn seek(&mut self, applied: usize) -> &M {
        let cursor = self
            .cursor
            .as_ref()
            .map(|(at, _)| *at)
            .filter(|&at| at <= applied);
        let kept = self.trail.nearest(applied).map(|(at, _)| at);
        let snapshot = self.snapshots.nearest(applied);
        if cursor < kept.max(Some(snapshot)) {
            let start = match self.trail.nearest(applied) {
                Some((at, state)) if at >= snapshot => Some((at, state.clone())),
                _ => self.snapshots.restore(applied),
            };
            self.cursor = Some(start.unwrap_or_else(|| (0, self.base.clone())));
        }
        let (at, machine) = self.cursor.as_mut().expect("set above");
        let range = *at..applied;
        // Every input decoded and applied once already: neither a decoding error nor a panic is
        // news here (panics were reported by the first replay).
        let ignore = |_, _, _| {};
        let interval = self.snapshots.interval();
        let _ = match self.trail.spacing(range.start, range.end, interval) {
            Some(spacing) => {
                let mut stops = KeepOnTrail {
                    trail: &mut self.trail,
                    next: range.start + spacing,
                    spacing,
                    target: applied,
                };
                apply_range(machine, &self.inputs, range, &mut stops, ignore)
            }
            None => apply_range(machine, &self.inputs, range, &mut NoStops, ignore),
        };
        *at = applied;
        machine
    }

    /// The input at `index` as a tree.
    pub fn input_tree(&self, index: usize) -> Option<Value> {
        self.input(index).map(|event| tree::tree_of(&event.input))
    }

    /// The state after the input at `index` as a tree.
    pub fn state_tree(&mut self, index: usize) -> Option<Value> {
        self.state_after(index).map(tree::tree_of)
    }

    /// What the input at `index` changed, at most `limit` leaves.
    pub fn diff(&mut self, index: usize, limit: usize) -> Option<Vec<Change>> {
        if index >= self.inputs.len() {
            return None;
        }
        let before = tree::tree_of(self.seek(index));
        let after = tree::tree_of(self.seek(index + 1));
        Some(tree::diff(&before, &after, limit))
    }

    /// The position of the last input at or before `index` that changed the value at `path`
    /// (its value after the input differs from its value before), or `None` if no replayed
    /// input did. Call it again with the result minus one for the change before that.
    pub fn last_change(&mut self, path: &TreePath, index: usize) -> Option<usize> {
        let index = index.min(self.inputs.len().checked_sub(1)?);
        // Back one snapshot interval at a time, each replayed forwards once.
        let mut end = index + 1;
        while end > 0 {
            let start = end.saturating_sub(self.snapshots.interval());
            if let Some(found) = self.last_change_in(path, start..end) {
                return Some(found);
            }
            end = start;
        }
        None
    }

    /// The last input among those at positions `range` that changed the value at `path`: one
    /// part of [`Self::last_change`]'s search, for a caller that spreads a long search over time
    /// (a UI between two key presses). It replays the range forwards once.
    pub fn last_change_in(&mut self, path: &TreePath, range: Range<usize>) -> Option<usize> {
        let end = range.end.min(self.inputs.len());
        if range.start >= end {
            return None;
        }
        let mut previous = crate::project::project(self.seek(range.start), &path.0);
        let mut found = None;
        for index in range.start..end {
            let value = crate::project::project(self.seek(index + 1), &path.0);
            if value != previous {
                found = Some(index);
            }
            previous = value;
        }
        found
    }
}

/// Refuses a ring file of another machine or version.
fn check_machine<M: Machine>(ring: &Ring) -> Result<(), ReplayError> {
    let header = ring.header();
    if header.machine_name != M::NAME || header.machine_version != M::VERSION {
        return Err(ReplayError::WrongMachine {
            path: ring.path().to_owned(),
            found: header.machine_name.clone(),
            found_version: header.machine_version,
            expected: M::NAME,
            expected_version: M::VERSION,
        });
    }
    Ok(())
}

/// The checkpoint replay starts from: the oldest from which every later retained input exists.
fn base_checkpoint<'r>(
    path: &Path,
    recovered: &'r Recovered,
) -> Result<&'r Checkpoint, ReplayError> {
    let no_base = |why: String| ReplayError::NoBase {
        path: path.to_owned(),
        why,
    };
    if recovered.checkpoints.is_empty() {
        let problems: Vec<String> = recovered
            .checkpoint_problems
            .iter()
            .map(|(slot, problem)| format!("slot {slot}: {problem:?}"))
            .collect();
        return Err(no_base(format!(
            "no usable checkpoint ({})",
            problems.join("; ")
        )));
    }
    let seq = replay_base(recovered.inputs(), &recovered.checkpoints).ok_or_else(|| {
        let inputs = recovered.inputs();
        no_base(format!(
            "the checkpoints (at inputs {:?}) are not followed by an unbroken run of the retained \
             inputs ({} of {} retained, gaps {:?})",
            recovered
                .checkpoints
                .iter()
                .map(|c| c.header.input_seq)
                .collect::<Vec<_>>(),
            inputs.retained(),
            inputs.recorded,
            inputs.gaps,
        ))
    })?;
    Ok(recovered
        .checkpoints
        .iter()
        .filter(|c| c.header.input_seq == seq)
        .max_by_key(|c| c.header.generation)
        .expect("replay_base names a recovered checkpoint"))
}

/// The retained inputs from the base checkpoint on, kept as recorded and decoded when applied:
/// a replay touches each input's bytes once, and memory stays what the file holds.
struct Inputs {
    lane: LaneRecords,
    /// Index in `lane` of the input at the base checkpoint.
    first: usize,
    /// Its sequence number: the input at position `i` has number `base_seq + i`.
    base_seq: u64,
    clock: Clock,
}

impl Inputs {
    /// The inputs of `lane` from `base_seq` on, which run unbroken (see [`replay_base`]): a
    /// replay need not read their sequence numbers.
    fn from_base(lane: LaneRecords, base_seq: u64, clock: Clock) -> Inputs {
        let first = lane.first_from(base_seq);
        // Sequence numbers ascend, so the run is unbroken when its ends are `len - 1` apart.
        let unbroken = match (lane.get(first), lane.last()) {
            (Some(start), Some(last)) => {
                start.seq == base_seq && last.seq - base_seq == (lane.len() - first) as u64 - 1
            }
            _ => true,
        };
        assert!(
            unbroken,
            "replay_base starts where the retained inputs run unbroken"
        );
        Inputs {
            lane,
            first,
            base_seq,
            clock,
        }
    }

    fn len(&self) -> usize {
        self.lane.len() - self.first
    }

    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The inputs at positions `range`, each with its position and tick, decoded one by one.
    #[inline]
    fn decode_range<M: Machine>(
        &self,
        range: Range<usize>,
    ) -> impl Iterator<Item = (usize, Result<(M::Input, Tick), CodecError>)> + '_ {
        let records = self.first + range.start..self.first + range.end;
        let tick = move |index: usize, ticks| Tick {
            seq: self.base_seq + index as u64,
            unix_ns: self.clock.to_unix_ns(ticks),
        };
        range
            .zip(self.lane.timed_payloads(records))
            .map(move |(index, (ticks, payload))| {
                let input = M::decode_input(payload);
                (index, input.map(|input| (input, tick(index, ticks))))
            })
    }

    /// The input at `index`, as recorded.
    fn record(&self, index: usize) -> Record<'_> {
        self.lane
            .get(self.first + index)
            .expect("index within the inputs")
    }
}

/// Every trace record of every trace lane, merged into one timeline by time.
fn decode_traces(recovered: &Recovered, unix_ns: impl Fn(u64) -> u64) -> Vec<TraceRecord> {
    let mut traces = Vec::new();
    for (index, lane) in recovered.lanes.iter().enumerate() {
        if lane.kind == LaneKind::Trace {
            decode_lane(index, lane, &unix_ns, &mut traces);
        }
    }
    traces.sort_by_key(|t| (t.ticks, t.lane, t.seq));
    traces
}

/// One trace lane's records, in sequence order, each named after the thread that wrote it: a
/// thread's name record precedes its events in its lane (it may carry a later time than the
/// first event, whose clock was read before the lane was claimed).
fn decode_lane(
    index: usize,
    lane: &RecoveredLane,
    unix_ns: &impl Fn(u64) -> u64,
    out: &mut Vec<TraceRecord>,
) {
    let mut owners: HashMap<u32, String> = HashMap::new();
    for record in &lane.records {
        let decoded = TraceEvent::decode(record.payload);
        if let Ok(event) = &decoded {
            if event.kind == TraceKind::Thread {
                owners.insert(event.tid, event.message.clone());
                continue;
            }
        }
        let thread = decoded
            .as_ref()
            .ok()
            .and_then(|event| owners.get(&event.tid))
            .unwrap_or(&lane.name)
            .clone();
        out.push(TraceRecord {
            lane: index,
            thread,
            seq: record.seq,
            ticks: record.ticks,
            unix_ns: unix_ns(record.ticks),
            damage: decoded.as_ref().err().cloned(),
            event: decoded.ok(),
        });
    }
}

/// The states a replay stops at, between runs of inputs that it applies back to back.
trait Stops<M> {
    /// The applied count of the next state to stop at.
    fn next(&self) -> usize;

    /// Does what is due at the state after `applied` inputs, if anything.
    fn reached(&mut self, machine: &M, applied: usize);
}

/// Reaching a position stops nowhere on the way.
struct NoStops;

impl<M> Stops<M> for NoStops {
    fn next(&self) -> usize {
        usize::MAX
    }

    fn reached(&mut self, _: &M, _: usize) {}
}

/// A long walk stops every `spacing` inputs to keep the state on the trail.
struct KeepOnTrail<'a, M> {
    trail: &'a mut Trail<M>,
    next: usize,
    spacing: usize,
    /// Where the walk goes: the trail keeps the states nearest to it.
    target: usize,
}

impl<M: Clone> Stops<M> for KeepOnTrail<'_, M> {
    fn next(&self) -> usize {
        self.next
    }

    fn reached(&mut self, machine: &M, applied: usize) {
        if applied == self.next {
            self.trail.keep(applied, machine, self.target);
            self.next += self.spacing;
        }
    }
}

/// The first replay stops where a snapshot is due and at every recorded checkpoint.
struct FirstReplay<'a> {
    snapshots: &'a mut Snapshots,
    verifier: Verifier,
    /// The checkpoints after the base not yet reached, in input order (see [`Recovered`]).
    pending: &'a [Checkpoint],
    base_seq: u64,
    progress: Option<&'a Progress>,
}

impl<M: Machine> Stops<M> for FirstReplay<'_> {
    fn next(&self) -> usize {
        let checkpoint = self.pending.first().map_or(usize::MAX, |c| {
            usize::try_from(c.header.input_seq - self.base_seq).unwrap_or(usize::MAX)
        });
        self.snapshots.next_due().min(checkpoint)
    }

    fn reached(&mut self, machine: &M, applied: usize) {
        self.progress.inspect(|p| p.replayed(applied));
        self.snapshots
            .offer(applied, machine, &mut self.verifier.encoded);
        let seq = self.base_seq + applied as u64;
        while let Some((checkpoint, rest)) = self.pending.split_first() {
            if checkpoint.header.input_seq > seq {
                break;
            }
            if checkpoint.header.input_seq == seq {
                self.verifier.check(checkpoint, machine);
            }
            self.pending = rest;
        }
    }
}

/// Compares replayed states with the checkpoints recorded at the same input.
struct Verifier {
    encoded: Vec<u8>,
    /// The most bytes a state may take: the recording's state capacity.
    limit: usize,
    /// The newest input sequence number at which the replay was known to agree.
    agreed_at: u64,
    verification: Verification,
}

impl Verifier {
    fn check<M: Machine>(&mut self, checkpoint: &Checkpoint, machine: &M) {
        let check = HashCheck {
            seq: checkpoint.header.input_seq,
            recorded: checkpoint.header.state_hash,
            replayed: hash_state(machine, &mut self.encoded, self.limit),
        };
        if check.passed() {
            self.agreed_at = check.seq;
        } else if self.verification.divergence.is_none() {
            let divergence = explain(self.agreed_at, check.clone(), checkpoint, machine);
            self.verification.divergence = Some(divergence);
        }
        self.verification.checks.push(check);
    }
}

/// The hash of `machine`'s state as this build encodes it; `None` when it cannot.
fn hash_state<M: Machine>(machine: &M, buffer: &mut Vec<u8>, limit: usize) -> Option<u64> {
    encode(machine, buffer, limit).map(|len| state_hash(&buffer[..len]))
}

/// Explains a failed check: which fields of the recorded state differ from the replayed one.
fn explain<M: Machine>(
    agreed_at: u64,
    check: HashCheck,
    recorded: &Checkpoint,
    replayed: &M,
) -> Divergence {
    let decoded = M::decode_state(&recorded.state);
    let (fields, note) = match decoded {
        _ if check.replayed.is_none() => (
            Vec::new(),
            Some(
                "this build cannot encode the replayed state (encode_state fails, or needs more \
                 than the recording's state capacity)"
                    .to_owned(),
            ),
        ),
        Ok(recorded_state) => {
            let fields = tree::diff(
                &tree::tree_of(&recorded_state),
                &tree::tree_of(replayed),
                20,
            );
            let note = fields.is_empty().then(|| {
                "the recorded and replayed states have equal values but different encodings: \
                 the state's encoding is not deterministic (a HashMap?)"
                    .to_owned()
            });
            (fields, note)
        }
        Err(error) => (
            Vec::new(),
            Some(format!(
                "the recorded state does not decode with this build: {error}"
            )),
        ),
    };
    Divergence {
        from_seq: agreed_at,
        to_seq: check.seq,
        check,
        fields,
        note,
    }
}

thread_local! {
    /// Set while this thread replays: its panics are expected and reported, not printed.
    static REPLAYING: Cell<bool> = const { Cell::new(false) };
    static PANIC_LOCATION: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// Applies the inputs at positions `range` to `machine`, stopping at the states `stops` asks
/// for. A panic in `apply` (the recorded crash, replayed) is caught, kept off stderr and
/// reported to `panicked`; replay goes on with the next input. The panic guard spans a run of
/// inputs, not each one, and between stops the loop does nothing but decode and apply, so that
/// `apply` is inlined into it as into the machine's own. Fails with the position of the first
/// input that does not decode.
fn apply_range<M: Machine>(
    machine: &mut M,
    inputs: &Inputs,
    range: Range<usize>,
    stops: &mut impl Stops<M>,
    mut panicked: impl FnMut(usize, String, Option<String>),
) -> Result<(), (usize, CodecError)> {
    let quiet = QuietPanics::begin();
    let mut next = range.start;
    while next < range.end {
        let current = Cell::new(next);
        let in_apply = Cell::new(false);
        let run = panic::catch_unwind(AssertUnwindSafe(|| {
            let mut stop = stops.next();
            for (index, decoded) in inputs.decode_range::<M>(next..range.end) {
                current.set(index);
                let (input, tick) = decoded.map_err(|error| (index, error))?;
                in_apply.set(true);
                machine.apply(&input, tick);
                in_apply.set(false);
                if index + 1 >= stop {
                    stops.reached(machine, index + 1);
                    stop = stops.next();
                }
            }
            Ok(())
        }));
        let payload = match run {
            Ok(result) => return result,
            Err(payload) => payload,
        };
        let index = current.get();
        let location = PANIC_LOCATION.with(|l| l.borrow_mut().take());
        let message = panic_message(payload.as_ref());
        if !in_apply.get() {
            // Not the recorded crash: the machine's decoder or encoder failed. Say so and let
            // the panic go on.
            drop(quiet);
            let at = location.unwrap_or_default();
            eprintln!("panic while decoding or encoding for replay, at input position {index}: {message} {at}");
            panic::resume_unwind(payload);
        }
        panicked(index, message, location);
        stops.reached(machine, index + 1);
        next = index + 1;
    }
    Ok(())
}

fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "(a panic without a message)".into())
}

/// Whether this thread is replaying inputs now: a panic here is a recorded one, replayed, which
/// the replay catches and reports. A panic hook of its own (a terminal UI's that restores the
/// screen) asks this to leave such panics alone.
pub fn replaying() -> bool {
    REPLAYING.with(Cell::get)
}

/// While alive, panics on this thread are replayed ones: captured, not printed.
struct QuietPanics {
    was: bool,
}

impl QuietPanics {
    fn begin() -> QuietPanics {
        install_quiet_hook();
        QuietPanics {
            was: REPLAYING.with(|r| r.replace(true)),
        }
    }
}

impl Drop for QuietPanics {
    fn drop(&mut self) {
        REPLAYING.with(|r| r.set(self.was));
    }
}

/// Wraps the panic hook once: panics on replaying threads are captured, others go on as before.
fn install_quiet_hook() {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        let previous = panic::take_hook();
        panic::set_hook(Box::new(move |info| {
            if REPLAYING.with(Cell::get) {
                let location = info.location().map(|l| l.to_string());
                PANIC_LOCATION.with(|l| *l.borrow_mut() = location);
            } else {
                previous(info);
            }
        }));
    });
}
