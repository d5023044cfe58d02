//! `flightrec tail`: follows a running service's ring file live, read-only, one line per record.

use std::io::{IsTerminal as _, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use flightrec_replayer::tree::{self, Value};
use flightrec_replayer::{
    CrashSummary, Fate, Followed, FollowedRecord, Follower, GapCause, OpenError, Ring, Start,
};
use flightrec_schemas::header::{CrashRecord, FormatError};
use flightrec_schemas::trace::{TraceEvent, TraceKind};
use flightrec_schemas::Machine;
use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use serde_json::json;

use super::time::utc;
use super::Failure;

/// Longest sleep between looks for Ctrl-C while waiting for the next poll.
const SIGNAL_CHECK: Duration = Duration::from_millis(20);
/// How long a file whose writer is still laying it out is waited for (creation takes a few
/// milliseconds, most of them calibrating the clock).
const LAYOUT_PATIENCE: Duration = Duration::from_secs(5);

#[derive(Debug, clap::Args)]
pub struct TailArgs {
    /// The ring file (`.ring`) of a running service.
    file: PathBuf,
    /// Show only inputs (and what happened to the input lane).
    #[arg(long, conflicts_with = "traces")]
    inputs: bool,
    /// Show only trace events (and what happened to the trace lanes).
    #[arg(long)]
    traces: bool,
    /// Start with the oldest records the ring still holds instead of at its end.
    #[arg(long)]
    from_start: bool,
    /// Print one JSON object per line instead of text.
    #[arg(long)]
    json: bool,
    /// Milliseconds between looks at the file.
    #[arg(long, value_name = "MS", default_value_t = 100,
          value_parser = clap::value_parser!(u64).range(1..=60_000))]
    interval: u64,
}

pub fn run<M: Machine>(args: TailArgs) -> Result<ExitCode, Failure> {
    if super::export::is_export(&args.file) {
        return Err(Failure::bad_input(anyhow::anyhow!(
            "{} is an export, which holds a recording that has ended: `tail` follows the ring \
             file of a running service (`inspect` and `replay` read exports)",
            args.file.display()
        )));
    }
    let interval = Duration::from_millis(args.interval);
    let ring = open_when_ready(&args.file, interval)?;
    let interrupts = Interrupts::block()?;
    let mut view = View::<M>::new(&ring, &args);
    if std::io::stderr().is_terminal() {
        eprintln!("{}", view.banner(&ring));
    }
    let start = if args.from_start {
        Start::Oldest
    } else {
        Start::End
    };
    let mut follower = Follower::new(ring, start);
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    loop {
        // Polls keep a steady cadence: a poll that took longer than the interval (a burst)
        // is followed at once by the next.
        let next_poll = Instant::now() + interval;
        let items = follower.poll();
        view.name_lanes(follower.ring());
        for item in items {
            if let Some(line) = view.line(&item) {
                writeln!(out, "{line}")?;
            }
        }
        // One flush a poll: a pipe sees each poll's lines as they come.
        out.flush()?;
        if follower.ended() || interrupts.wait_until(next_poll)? {
            return Ok(ExitCode::SUCCESS);
        }
    }
}

/// Opens the ring file, waiting a little while its writer is still laying it out (one that died
/// doing so leaves it so for good).
fn open_when_ready(file: &Path, interval: Duration) -> Result<Ring, Failure> {
    let give_up = Instant::now() + LAYOUT_PATIENCE;
    loop {
        match Ring::open(file) {
            Err(OpenError::NotReady { .. }) if Instant::now() < give_up => {
                std::thread::sleep(interval)
            }
            opened => return opened.map_err(Failure::bad_input),
        }
    }
}

/// Ctrl-C and SIGTERM, blocked and read from a descriptor, so that they end the loop between
/// polls (output flushed, exit 0) instead of killing the process mid-line.
struct Interrupts {
    fd: SignalFd,
}

impl Interrupts {
    fn block() -> anyhow::Result<Interrupts> {
        let mut mask = SigSet::empty();
        mask.add(Signal::SIGINT);
        mask.add(Signal::SIGTERM);
        mask.thread_block()?;
        let fd = SignalFd::with_flags(&mask, SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC)?;
        Ok(Interrupts { fd })
    }

    /// Waits until `until`; true if interrupted first.
    fn wait_until(&self, until: Instant) -> anyhow::Result<bool> {
        loop {
            if self.fd.read_signal()?.is_some() {
                return Ok(true);
            }
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(false);
            }
            std::thread::sleep(left.min(SIGNAL_CHECK));
        }
    }
}

/// How items are shown: which, as text or JSON, inputs decoded when the machine matches.
struct View<M> {
    inputs: bool,
    traces: bool,
    json: bool,
    /// Lane names by index, read again after each poll: a trace lane is named by the first
    /// thread that claims it, which may be after tail started.
    lanes: Vec<String>,
    /// Whether the file records machine `M`, so its inputs decode.
    decodes: bool,
    recorded_machine: String,
    _machine: std::marker::PhantomData<M>,
}

impl<M: Machine> View<M> {
    fn new(ring: &Ring, args: &TailArgs) -> View<M> {
        let header = ring.header();
        View {
            inputs: !args.traces,
            traces: !args.inputs,
            json: args.json,
            lanes: header.lanes.iter().map(|l| ring.lane_name(l)).collect(),
            decodes: header.machine_name == M::NAME && header.machine_version == M::VERSION,
            recorded_machine: format!("{} v{}", header.machine_name, header.machine_version),
            _machine: std::marker::PhantomData,
        }
    }

    fn banner(&self, ring: &Ring) -> String {
        let how = if self.decodes {
            String::new()
        } else {
            format!(
                "; inputs shown by size (this binary decodes {} v{})",
                M::NAME,
                M::VERSION
            )
        };
        format!(
            "following {} ({}, pid {}){how}; Ctrl-C to stop",
            ring.path().display(),
            self.recorded_machine,
            ring.header().pid
        )
    }

    /// Reads the lanes' names again.
    fn name_lanes(&mut self, ring: &Ring) {
        let header = ring.header();
        self.lanes = header.lanes.iter().map(|l| ring.lane_name(l)).collect();
    }

    /// The lane's name; its index (`#3`) while it has none.
    fn lane_name(&self, lane: usize) -> String {
        match self.lanes.get(lane) {
            Some(name) if !name.is_empty() => name.clone(),
            _ => format!("#{lane}"),
        }
    }

    /// The line for `item`, or `None` if it is filtered out.
    fn line(&self, item: &Followed) -> Option<String> {
        let wanted = match item.lane() {
            Some(0) => self.inputs,
            Some(_) => self.traces,
            None => true,
        };
        if !wanted {
            return None;
        }
        Some(if self.json {
            self.json_of(item).to_string()
        } else {
            self.text_of(item)
        })
    }

    fn text_of(&self, item: &Followed) -> String {
        match item {
            Followed::Input(record) => format!(
                "{}  input #{}  {}",
                time_of_day(record.unix_ns),
                record.seq,
                self.input_summary(record)
            ),
            Followed::Trace {
                record,
                thread,
                event,
            } => format!(
                "{}  {}",
                time_of_day(record.unix_ns),
                trace_text(thread, event)
            ),
            Followed::Gap { lane, seqs, cause } => {
                let what = match lane {
                    0 => "inputs".to_owned(),
                    _ => format!("trace records of lane {}", self.lane_name(*lane)),
                };
                let (count, first, last) = (seqs.end - seqs.start, seqs.start, seqs.end - 1);
                let why = match cause {
                    GapCause::Lapped => "overwritten before tail could read them",
                    GapCause::Damaged => "lost in damaged slots",
                    GapCause::Skipped => "never recorded (too large or not encodable)",
                };
                format!("-- {count} {what} #{first} to #{last} {why}")
            }
            Followed::Corrupt { lane, pos, why } => format!(
                "-- damaged slot in lane {} at position {pos}: {why}",
                self.lane_name(*lane)
            ),
            Followed::Torn { lane, pos } => format!(
                "-- lane {}: a record left half-written at position {pos}",
                self.lane_name(*lane)
            ),
            Followed::Ended { fate, crash } => end_text(*fate, crash),
        }
    }

    fn input_summary(&self, record: &FollowedRecord) -> String {
        if !self.decodes {
            return format!("{} bytes", record.payload.len());
        }
        match M::decode_input(&record.payload) {
            Ok(input) => tree::brief(&tree::tree_of(&input)),
            Err(error) => format!("{} bytes, not decodable: {error}", record.payload.len()),
        }
    }

    fn json_of(&self, item: &Followed) -> Value {
        match item {
            Followed::Input(record) => {
                let mut line = json!({
                    "type": "input",
                    "seq": record.seq,
                    "pos": record.pos,
                    "unix_ns": record.unix_ns,
                    "time": utc(record.unix_ns),
                    "size": record.payload.len(),
                });
                if self.decodes {
                    let (key, value) = match M::decode_input(&record.payload) {
                        Ok(input) => ("input", tree::tree_of(&input)),
                        Err(error) => ("error", Value::String(error.to_string())),
                    };
                    line[key] = value;
                }
                line
            }
            Followed::Trace {
                record,
                thread,
                event,
            } => {
                let mut line = json!({
                    "type": "trace",
                    "lane": self.lane_name(record.lane),
                    "thread": thread,
                    "seq": record.seq,
                    "unix_ns": record.unix_ns,
                    "time": utc(record.unix_ns),
                });
                match event {
                    Ok(event) => {
                        line["kind"] = json!(kind_name(event.kind));
                        line["level"] = json!(event.level.as_str());
                        line["message"] = json!(event.message);
                        line["truncated"] = json!(event.truncated);
                    }
                    Err(why) => line["error"] = json!(why),
                }
                line
            }
            Followed::Gap { lane, seqs, cause } => json!({
                "type": "gap",
                "lane": self.lane_name(*lane),
                "first": seqs.start,
                "last": seqs.end - 1,
                "count": seqs.end - seqs.start,
                "cause": match cause {
                    GapCause::Lapped => "lapped",
                    GapCause::Damaged => "damaged",
                    GapCause::Skipped => "skipped",
                },
            }),
            Followed::Corrupt { lane, pos, why } => json!({
                "type": "corrupt",
                "lane": self.lane_name(*lane),
                "pos": pos,
                "why": why.to_string(),
            }),
            Followed::Torn { lane, pos } => json!({
                "type": "torn",
                "lane": self.lane_name(*lane),
                "pos": pos,
            }),
            Followed::Ended { fate, crash } => json!({
                "type": "end",
                "fate": fate.as_str(),
                "crash": crash.as_ref().ok().and_then(Option::as_ref).map(CrashSummary::from),
                "crash_error": crash.as_ref().err().map(ToString::to_string),
            }),
        }
    }
}

fn kind_name(kind: TraceKind) -> &'static str {
    match kind {
        TraceKind::Event => "event",
        TraceKind::SpanEnter => "enter",
        TraceKind::SpanExit => "exit",
        TraceKind::Thread => "thread",
    }
}

/// `info   settlement: settled batch 3`, with arrows for span edges.
fn trace_text(thread: &str, event: &Result<TraceEvent, String>) -> String {
    match event {
        Ok(event) => {
            let edge = match event.kind {
                TraceKind::SpanEnter => "→ ",
                TraceKind::SpanExit => "← ",
                TraceKind::Event | TraceKind::Thread => "",
            };
            let cut = if event.truncated { " [truncated]" } else { "" };
            format!(
                "{:<5}  {thread}: {edge}{}{cut}",
                event.level.as_str(),
                event.message
            )
        }
        Err(why) => format!("?      {thread}: undecodable trace record: {why}"),
    }
}

/// The last line: how the service ended, with the cause it recorded.
fn end_text(fate: Fate, crash: &Result<Option<CrashRecord>, FormatError>) -> String {
    match (fate, crash) {
        (Fate::Crashed, Ok(Some(crash))) => {
            let crash = CrashSummary::from(crash);
            let cause = match (&crash.location, crash.signal_name) {
                (Some(location), _) => format!("panic at {location}"),
                (None, Some(signal)) => signal.to_owned(),
                (None, None) => crash.kind.to_owned(),
            };
            format!(
                "-- the service crashed: {cause}: \"{}\" in thread '{}' (tid {}) at {}",
                crash.message,
                crash.thread,
                crash.tid,
                utc(crash.time_unix_ns)
            )
        }
        (Fate::Crashed, Ok(None)) => "-- the service crashed (no cause recorded)".into(),
        (Fate::Crashed, Err(error)) => {
            format!("-- the service crashed; its crash record is unreadable: {error}")
        }
        (Fate::Exited, _) => "-- the service exited cleanly".into(),
        (Fate::Died, _) => "-- the service died: its process is gone without recording a cause \
                            (SIGKILL, OOM kill or power loss)"
            .into(),
        (Fate::Running, _) => "-- the service is running".into(),
    }
}

/// `07:10:03.123456Z`: the UTC time of day, to the microsecond.
fn time_of_day(unix_ns: u64) -> String {
    let micros = unix_ns / 1_000 % 86_400_000_000;
    let (secs, micros) = (micros / 1_000_000, micros % 1_000_000);
    format!(
        "{:02}:{:02}:{:02}.{micros:06}Z",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_of_day_is_utc_to_the_microsecond() {
        // 2023-11-14T22:13:20.123456789Z
        assert_eq!(time_of_day(1_700_000_000_123_456_789), "22:13:20.123456Z");
        assert_eq!(time_of_day(0), "00:00:00.000000Z");
    }
}
