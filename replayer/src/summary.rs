//! What `flightrec inspect` reports: a serialisable summary of a ring file.

use serde::Serialize;

use flightrec_schemas::header::{CrashCause, CrashRecord, LaneKind};

use crate::recover::{Checkpoint, LaneRecords, Recovered};
use crate::ring::{Fate, Ring};

/// The machine a file records.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct MachineId {
    /// Its name.
    pub name: String,
    /// Its version.
    pub version: u32,
}

/// A summary of a ring file: header, status, crash, lanes, checkpoints, losses.
#[derive(Clone, Debug, Serialize)]
pub struct Summary {
    /// The file.
    pub path: String,
    /// Layout version.
    pub format_version: u32,
    /// Recorded machine.
    pub machine: MachineId,
    /// `running`, `exited`, `crashed` or `died`.
    pub status: Fate,
    /// The cause of death, if recorded.
    pub crash: Option<CrashSummary>,
    /// Why the crash record could not be read, if it is damaged.
    pub crash_error: Option<String>,
    /// Writer's pid.
    pub pid: u32,
    /// Writer's host.
    pub host: String,
    /// Creation time, Unix ns.
    pub created_unix_ns: u64,
    /// Clean-exit time, Unix ns.
    pub exited_unix_ns: Option<u64>,
    /// `tsc` or `monotonic`.
    pub clock: &'static str,
    /// Bytes of the file.
    pub file_bytes: u64,
    /// Per-lane counts.
    pub lanes: Vec<LaneSummary>,
    /// Usable checkpoints, oldest first.
    pub checkpoints: Vec<CheckpointSummary>,
    /// Checkpoint slots that hold no usable checkpoint, and why.
    pub checkpoint_problems: Vec<String>,
    /// Losses counted in the header.
    pub losses: Losses,
    /// The oldest checkpoint from which every later retained input can be replayed.
    pub replay_from: Option<u64>,
}

/// Counts for one lane.
#[derive(Clone, Debug, Serialize)]
pub struct LaneSummary {
    /// Owner name (`input`, or the thread's name).
    pub name: String,
    /// `input` or `trace`.
    pub kind: &'static str,
    /// Records ever written.
    pub recorded: u64,
    /// Records recovered.
    pub retained: u64,
    /// Records written but not recovered (overwritten by the ring, torn or damaged).
    pub lost: u64,
    /// Slots found mid-write.
    pub torn: u64,
    /// Slots holding impossible bytes.
    pub corrupt: u64,
    /// Runs of missing sequence numbers inside the retained range.
    pub gaps: u64,
    /// Records dropped as too large.
    pub dropped_too_large: u64,
    /// Oldest retained sequence number.
    pub first_seq: Option<u64>,
    /// Newest retained sequence number.
    pub last_seq: Option<u64>,
}

/// One usable checkpoint.
#[derive(Clone, Debug, Serialize)]
pub struct CheckpointSummary {
    /// Inputs applied before it: replay from here starts at this sequence number.
    pub seq: u64,
    /// Bytes of encoded state.
    pub bytes: u64,
    /// Generation (counts checkpoints).
    pub generation: u64,
    /// `xxh3_64` of the state, hex.
    pub hash: String,
    /// When it was taken, Unix ns.
    pub unix_ns: u64,
    /// Counter values by name; `null` where the machine lacks the counter.
    pub counters: std::collections::BTreeMap<&'static str, Option<u64>>,
}

/// The recorded cause of death.
#[derive(Clone, Debug, Serialize)]
pub struct CrashSummary {
    /// `signal` or `panic`.
    pub kind: &'static str,
    /// Signal number.
    pub signal: Option<i32>,
    /// Signal name, e.g. `SIGSEGV`.
    pub signal_name: Option<&'static str>,
    /// `si_code`.
    pub code: Option<i32>,
    /// Fault address, hex.
    pub fault_addr: Option<String>,
    /// Panic location.
    pub location: Option<String>,
    /// Panic message or signal description.
    pub message: String,
    /// Thread name.
    pub thread: String,
    /// Kernel thread id.
    pub tid: u32,
    /// Time of death, Unix ns.
    pub time_unix_ns: u64,
}

/// Losses counted in the header.
#[derive(Clone, Debug, Serialize)]
pub struct Losses {
    /// Trace events dropped because every trace lane was taken.
    pub trace_dropped_no_lane: u64,
    /// Trace events dropped on re-entry (a signal handler tracing mid-trace).
    pub trace_dropped_reentrant: u64,
    /// Inputs that could not be encoded.
    pub inputs_unencodable: u64,
    /// Checkpoints that could not be written.
    pub checkpoints_failed: u64,
}

impl Summary {
    /// Reads everything a summary needs from `ring`.
    pub fn of(ring: &Ring) -> Summary {
        Summary::with(ring, &Recovered::of(ring))
    }

    /// Summarises what was already recovered from `ring`.
    pub fn with(ring: &Ring, recovered: &Recovered) -> Summary {
        let header = ring.header();
        let live = ring.live();
        let (crash, crash_error) = match ring.crash() {
            Ok(crash) => (crash.map(|c| CrashSummary::from(&c)), None),
            Err(e) => (None, Some(e.to_string())),
        };
        let checkpoints = &recovered.checkpoints;
        let checkpoint_problems = recovered
            .checkpoint_problems
            .iter()
            // A slot never written yet is not a problem.
            .filter(|(_, problem)| *problem != crate::recover::CheckpointProblem::Empty)
            .map(|(slot, problem)| format!("slot {slot}: {problem:?}"))
            .collect();
        let replay_from = replay_base(recovered.inputs(), checkpoints);
        Summary {
            path: ring.path().display().to_string(),
            format_version: header.format_version,
            machine: MachineId {
                name: header.machine_name.clone(),
                version: header.machine_version,
            },
            status: ring.fate(),
            crash,
            crash_error,
            pid: header.pid,
            host: header.hostname.clone(),
            created_unix_ns: header.created_unix_ns,
            exited_unix_ns: (live.exited_unix_ns != 0).then_some(live.exited_unix_ns),
            clock: match header.clock.source {
                flightrec_schemas::clock::ClockSource::Tsc => "tsc",
                flightrec_schemas::clock::ClockSource::Monotonic => "monotonic",
            },
            file_bytes: header.file_size,
            lanes: recovered
                .lanes
                .iter()
                .map(|lane| LaneSummary::new(lane.kind, &lane.name, &lane.records))
                .collect(),
            checkpoints: checkpoints
                .iter()
                .map(|c| CheckpointSummary::new(c, &header.clock))
                .collect(),
            checkpoint_problems,
            losses: Losses {
                trace_dropped_no_lane: live.dropped_no_lane,
                trace_dropped_reentrant: live.dropped_reentrant,
                inputs_unencodable: live.inputs_unencodable,
                checkpoints_failed: live.checkpoints_failed,
            },
            replay_from,
        }
    }

    /// Whether anything was lost, torn or damaged.
    pub fn has_losses(&self) -> bool {
        let l = &self.losses;
        self.lanes
            .iter()
            .any(|lane| lane.lost + lane.torn + lane.corrupt + lane.dropped_too_large > 0)
            || l.trace_dropped_no_lane
                + l.trace_dropped_reentrant
                + l.inputs_unencodable
                + l.checkpoints_failed
                > 0
    }
}

/// The oldest checkpoint after which every input up to the newest retained one is present.
pub fn replay_base(inputs: &LaneRecords, checkpoints: &[Checkpoint]) -> Option<u64> {
    let last_gap_end = inputs.gaps.last().map_or(0, |g| g.end);
    let first = inputs.first().map_or(inputs.recorded, |r| r.seq);
    checkpoints
        .iter()
        .map(|c| c.header.input_seq)
        .filter(|&seq| seq >= first.max(last_gap_end) || seq >= inputs.recorded)
        .filter(|&seq| seq <= inputs.recorded)
        .min()
}

impl LaneSummary {
    fn new(kind: LaneKind, name: &str, records: &LaneRecords) -> LaneSummary {
        LaneSummary {
            name: if name.is_empty() {
                "(unused)".into()
            } else {
                name.to_owned()
            },
            kind: match kind {
                LaneKind::Input => "input",
                LaneKind::Trace => "trace",
            },
            recorded: records.recorded,
            retained: records.retained(),
            lost: records.lost(),
            torn: records.torn.len() as u64,
            corrupt: records.corrupt.len() as u64,
            gaps: records.gaps.len() as u64,
            dropped_too_large: records.dropped_too_large,
            first_seq: records.first().map(|r| r.seq),
            last_seq: records.last().map(|r| r.seq),
        }
    }
}

impl CheckpointSummary {
    fn new(checkpoint: &Checkpoint, clock: &flightrec_schemas::clock::Clock) -> CheckpointSummary {
        let h = &checkpoint.header;
        CheckpointSummary {
            seq: h.input_seq,
            bytes: h.state_len,
            generation: h.generation,
            hash: format!("{:016x}", h.state_hash),
            unix_ns: clock.to_unix_ns(h.ticks),
            counters: checkpoint.counters().collect(),
        }
    }
}

impl From<&CrashRecord> for CrashSummary {
    fn from(crash: &CrashRecord) -> CrashSummary {
        let base = CrashSummary {
            kind: "panic",
            signal: None,
            signal_name: None,
            code: None,
            fault_addr: None,
            location: None,
            message: crash.message.clone(),
            thread: crash.thread_name.clone(),
            tid: crash.tid,
            time_unix_ns: crash.time_unix_ns,
        };
        match &crash.cause {
            CrashCause::Signal {
                signal,
                code,
                fault_addr,
            } => CrashSummary {
                kind: "signal",
                signal: Some(*signal),
                signal_name: Some(signal_name(*signal)),
                code: Some(*code),
                fault_addr: Some(format!("{fault_addr:#x}")),
                ..base
            },
            CrashCause::Panic { location } => CrashSummary {
                location: Some(location.clone()),
                ..base
            },
        }
    }
}

/// The conventional name of a signal number.
pub fn signal_name(signal: i32) -> &'static str {
    match signal {
        libc::SIGSEGV => "SIGSEGV",
        libc::SIGBUS => "SIGBUS",
        libc::SIGILL => "SIGILL",
        libc::SIGFPE => "SIGFPE",
        libc::SIGABRT => "SIGABRT",
        libc::SIGKILL => "SIGKILL",
        libc::SIGTERM => "SIGTERM",
        libc::SIGINT => "SIGINT",
        _ => "signal",
    }
}
