//! What the terminal UI shows, from either kind of file: a ring file replayed through its
//! machine's own code ([`History`]), or an export read without it ([`Export`]).
//!
//! The views need two kinds of thing: facts about the whole recording, gathered once when the UI
//! opens ([`Facts`]), and per-position answers (an input, a state, who changed a field), which
//! each source computes its own way.

use std::ops::Range;

use flightrec_replayer::export::{Event, EventKind, Export};
use flightrec_replayer::outline::Flat;
use flightrec_replayer::tree::{self, Path, Value};
use flightrec_replayer::{signal_name, CrashSummary, Fate, History, ReplayPanic, TraceRecord};
use flightrec_schemas::trace::{Level, TraceEvent};
use flightrec_schemas::Machine;

use crate::timeline::partition_point;

/// One input, as the views show it.
#[derive(Clone, Debug)]
pub struct InputRow {
    /// Its sequence number.
    pub seq: u64,
    /// When it was applied, Unix ns.
    pub unix_ns: u64,
    /// The input as a tree of named values.
    pub tree: Value,
}

/// How the recording ended.
#[derive(Clone, Debug)]
pub struct Ending {
    /// Exited, crashed, died, or still running.
    pub status: Fate,
    /// The cause of death, if recorded.
    pub crash: Option<CrashSummary>,
    /// When it ended: the crash, the exit, or the last input.
    pub unix_ns: u64,
}

/// What the views show about the recording as a whole.
#[derive(Clone, Debug)]
pub struct Facts {
    /// The recorded machine's name.
    pub machine: String,
    /// Inputs in the history.
    pub len: usize,
    /// Sequence number of the input at position 0.
    pub base_seq: u64,
    /// How the recording ended.
    pub ending: Ending,
    /// Records overwritten or lost, over every lane.
    pub lost: u64,
    /// Trace events in time order.
    pub traces: Vec<TraceRecord>,
    /// Lane names, indexed by [`TraceRecord::lane`].
    pub lane_names: Vec<String>,
    /// For each trace event, how many inputs come before it.
    pub inputs_before: Vec<usize>,
    /// Positions of the inputs that a checkpoint preceded.
    pub checkpoints: Vec<usize>,
    /// Recorded state hashes checked, by input sequence number: matched or not. Empty for an
    /// export, whose verification is only [`Facts::verification`].
    pub checks: Vec<(u64, bool)>,
    /// The verification in a few words, for the status line.
    pub verification: String,
    /// Inputs whose `apply` panicked in replay (the first ones).
    pub panics: Vec<ReplayPanic>,
    /// How many panicked in all.
    pub panic_count: usize,
    /// The export's path, when the recording is read from one (its states were replayed and
    /// verified where it was recorded; [`Facts::verification`] says how that went).
    pub export: Option<String>,
}

/// A recording the terminal UI can show.
pub trait Source {
    /// The facts about the whole recording; called once.
    fn facts(&self) -> Facts;

    /// The input at `index`.
    fn input(&self, index: usize) -> Option<InputRow>;

    /// Flattens the state after `applied` inputs (0: the base state) into `into`; false when
    /// this source cannot show it.
    fn flatten_state(&mut self, applied: usize, into: &mut Flat) -> bool;

    /// The last input among those at positions `range` that changed the value at `path`.
    fn last_change_in(&mut self, path: &Path, range: Range<usize>) -> Option<usize>;
}

impl<M: Machine + Clone> Source for History<M> {
    fn facts(&self) -> Facts {
        let summary = self.summary();
        let len = self.len();
        let ticks = |index: usize| self.input(index).map_or(u64::MAX, |event| event.ticks);
        let inputs_before = self
            .traces()
            .iter()
            .map(|trace| partition_point(len, |index| ticks(index) <= trace.ticks))
            .collect();
        let base = self.base_seq();
        let checkpoints = positions(summary.checkpoints.iter().map(|c| c.seq), base, len);
        let end = summary
            .crash
            .as_ref()
            .map(|crash| crash.time_unix_ns)
            .or(summary.exited_unix_ns)
            .or_else(|| self.input(len.checked_sub(1)?).map(|e| e.unix_ns))
            .unwrap_or(summary.created_unix_ns);
        let verification = self.verification();
        let checks: Vec<(u64, bool)> = verification
            .checks
            .iter()
            .map(|check| (check.seq, check.passed()))
            .collect();
        let passed = checks.iter().filter(|(_, ok)| *ok).count();
        Facts {
            machine: summary.machine.name.clone(),
            len,
            base_seq: base,
            ending: Ending {
                status: summary.status,
                crash: summary.crash.clone(),
                unix_ns: end,
            },
            lost: summary.lanes.iter().map(|lane| lane.lost).sum(),
            traces: self.traces().to_vec(),
            lane_names: self.lane_names().to_vec(),
            inputs_before,
            checkpoints,
            verification: match verification.passed() {
                true => format!("verified {passed}/{}", checks.len()),
                false => format!("DIVERGED: {passed}/{} hashes match", checks.len()),
            },
            checks,
            panics: self.panics().to_vec(),
            panic_count: self.panic_count(),
            export: None,
        }
    }

    fn input(&self, index: usize) -> Option<InputRow> {
        let event = History::input(self, index)?;
        Some(InputRow {
            seq: event.seq,
            unix_ns: event.unix_ns,
            tree: tree::tree_of(&event.input),
        })
    }

    fn flatten_state(&mut self, applied: usize, into: &mut Flat) -> bool {
        match applied.checked_sub(1) {
            None => into.refill(self.base_state()),
            Some(index) => match self.state_after(index) {
                Some(state) => into.refill(state),
                None => return false,
            },
        }
        true
    }

    fn last_change_in(&mut self, path: &Path, range: Range<usize>) -> Option<usize> {
        History::last_change_in(self, path, range)
    }
}

/// Events an export's facts are gathered from at a time.
const EVENTS_AT_ONCE: u64 = 65_536;

impl Source for Export {
    fn facts(&self) -> Facts {
        let meta = self.metadata();
        let len = usize::try_from(self.len()).unwrap_or(usize::MAX);
        let mut lane_names: Vec<String> = Vec::new();
        let mut traces = Vec::new();
        let mut inputs_before = Vec::new();
        let mut last_input_ns = None;
        // Read a window at a time: only the trace events are kept, not millions of inputs.
        let total = self.event_count();
        let windows = (0..total).step_by(EVENTS_AT_ONCE as usize);
        let events = windows.flat_map(|start| {
            self.events(start..total.min(start + EVENTS_AT_ONCE))
                .unwrap_or_default()
        });
        for event in events {
            if event.kind == EventKind::Input {
                last_input_ns = Some(event.unix_ns);
                continue;
            }
            let lane = match lane_names.iter().position(|name| *name == event.name) {
                Some(lane) => lane,
                None => {
                    lane_names.push(event.name.clone());
                    lane_names.len() - 1
                }
            };
            inputs_before.push(usize::try_from(event.position).unwrap_or(len).min(len));
            traces.push(trace_record(&event, lane));
        }
        let status = match meta.status.as_str() {
            "crashed" => Fate::Crashed,
            "died" => Fate::Died,
            "exited" => Fate::Exited,
            _ => Fate::Running,
        };
        let crash = meta.crash.as_ref().map(|crash| CrashSummary {
            kind: if crash.signal.is_some() {
                "signal"
            } else {
                "panic"
            },
            signal: crash.signal,
            signal_name: crash.signal.map(signal_name),
            code: crash.code,
            fault_addr: crash.fault_addr.clone(),
            location: crash.location.clone(),
            message: crash.message.clone(),
            thread: crash.thread.clone(),
            tid: crash.tid,
            time_unix_ns: crash.time_unix_ns,
        });
        let end = crash
            .as_ref()
            .map(|c| c.time_unix_ns)
            .or(meta.record_end_unix_ns)
            .or(last_input_ns)
            .unwrap_or(meta.record_start_unix_ns);
        let base = meta.base_seq;
        let checkpoints = positions(self.checkpoints().iter().map(|c| c.input_seq), base, len);
        Facts {
            machine: meta.machine_name.clone(),
            len,
            base_seq: base,
            ending: Ending {
                status,
                crash,
                unix_ns: end,
            },
            lost: meta.losses.iter().map(|(_, count)| count).sum(),
            traces,
            lane_names,
            inputs_before,
            checkpoints,
            checks: Vec::new(),
            verification: brief_verification(&meta.verification).to_owned(),
            panics: meta.replay_panics.clone(),
            panic_count: usize::try_from(meta.replay_panic_count).unwrap_or(usize::MAX),
            export: Some(self.path().display().to_string()),
        }
    }

    fn input(&self, index: usize) -> Option<InputRow> {
        let event = Export::input(self, index as u64).ok()?;
        Some(InputRow {
            seq: event.seq,
            unix_ns: event.unix_ns,
            tree: event.input_tree().unwrap_or(Value::Null),
        })
    }

    fn flatten_state(&mut self, applied: usize, into: &mut Flat) -> bool {
        let state = match applied.checked_sub(1) {
            None => self.base_state(),
            Some(index) => self.state_tree(index as u64),
        };
        match state {
            Ok(state) => {
                into.refill(&state);
                true
            }
            Err(_) => {
                into.refill(&Value::Null);
                false
            }
        }
    }

    fn last_change_in(&mut self, path: &Path, range: Range<usize>) -> Option<usize> {
        // Each input's diff names the paths it changed: no state needs rebuilding.
        range.rev().find(|&index| {
            self.diff(index as u64).is_ok_and(|changes| {
                changes.iter().any(|change| {
                    change.path.0.starts_with(&path.0) || path.0.starts_with(&change.path.0)
                })
            })
        })
    }
}

/// A trace event of an export as the timeline's record of it.
fn trace_record(event: &Event, lane: usize) -> TraceRecord {
    // Level 0: the record did not decode, and the summary says why.
    let decoded = match Level::from_code(event.level) {
        Some(level) => Ok(TraceEvent {
            kind: event.trace_kind,
            level,
            tid: 0,
            truncated: false,
            message: event.summary.clone(),
        }),
        None => Err(event.summary.clone()),
    };
    TraceRecord {
        lane,
        thread: event.name.clone(),
        seq: event.seq,
        ticks: event.unix_ns,
        unix_ns: event.unix_ns,
        damage: decoded.as_ref().err().cloned(),
        event: decoded.ok(),
    }
}

/// The verification line of an export, shortened for the status line.
fn brief_verification(line: &str) -> &str {
    line.split(';').next().unwrap_or(line)
}

/// Positions, among `len` inputs from `base`, of the inputs numbered `seqs`, sorted.
fn positions(seqs: impl Iterator<Item = u64>, base: u64, len: usize) -> Vec<usize> {
    let mut positions: Vec<usize> = seqs
        .filter_map(|seq| seq.checked_sub(base))
        .filter_map(|index| usize::try_from(index).ok())
        .filter(|&index| index < len)
        .collect();
    positions.sort_unstable();
    positions.dedup();
    positions
}
