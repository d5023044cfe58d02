//! `flightrec inspect`.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use flightrec_replayer::{Fate, Ring, Summary};

use super::time::{bytes, utc};
use super::Failure;

#[derive(Debug, clap::Args)]
pub struct InspectArgs {
    /// The ring file (`.ring`) or export (`.flightrec`).
    file: PathBuf,
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
}

pub fn run(args: InspectArgs) -> Result<ExitCode, Failure> {
    if super::export::is_export(&args.file) {
        return super::export::inspect(&args.file, args.json);
    }
    let ring = Ring::open(&args.file).map_err(Failure::bad_input)?;
    let summary = Summary::of(&ring);
    if args.json {
        println!("{}", serde_json::to_string_pretty(&summary)?);
    } else {
        print!("{}", render(&summary));
    }
    Ok(ExitCode::SUCCESS)
}

/// The cause of death's message, then its thread and time: the lines under `status`, for a
/// ring file and an export alike.
pub fn crash_lines(message: &str, thread: &str, tid: u32, time_unix_ns: u64) -> [String; 2] {
    [
        format!("\"{message}\""),
        format!("in thread '{thread}' (tid {tid}) at {}", utc(time_unix_ns)),
    ]
}

/// The summary as aligned text.
pub fn render(s: &Summary) -> String {
    let mut out = String::new();
    let mut line = |label: &str, text: String| {
        let _ = writeln!(out, "{label:<12}{text}");
    };
    line("ring file", s.path.clone());
    line(
        "machine",
        format!(
            "{} v{}  (format {}, pid {} on {}, clock {})",
            s.machine.name, s.machine.version, s.format_version, s.pid, s.host, s.clock
        ),
    );
    line("created", utc(s.created_unix_ns));
    line("status", status_line(s));
    if let Some(crash) = &s.crash {
        for text in crash_lines(&crash.message, &crash.thread, crash.tid, crash.time_unix_ns) {
            line("", text);
        }
    }
    if let Some(error) = &s.crash_error {
        line("", format!("crash record unreadable: {error}"));
    }
    // Lanes are named after threads, such as `conn 127.0.0.1:36662`: the column fits the longest.
    let name_width = s.lanes.iter().map(|l| l.name.chars().count() + 1);
    let name_width = name_width.max().unwrap_or(0).max(14);
    let mut table = format!(
        "{:<name_width$}{:<7}{:>10}{:>10}{:>9}{:>6}{:>9}{:>6}{:>9}",
        "lane", "kind", "recorded", "retained", "lost", "torn", "corrupt", "gaps", "dropped"
    );
    for lane in &s.lanes {
        let _ = write!(
            table,
            "\n{:<12}{:<name_width$}{:<7}{:>10}{:>10}{:>9}{:>6}{:>9}{:>6}{:>9}",
            "",
            lane.name,
            lane.kind,
            lane.recorded,
            lane.retained,
            lane.lost,
            lane.torn,
            lane.corrupt,
            lane.gaps,
            lane.dropped_too_large
        );
    }
    line("lanes", table);
    let checkpoints: Vec<String> = s
        .checkpoints
        .iter()
        .map(|c| format!("input {} ({}, hash {})", c.seq, bytes(c.bytes), c.hash))
        .collect();
    line(
        "checkpoints",
        if checkpoints.is_empty() {
            "none usable".into()
        } else {
            checkpoints.join("; ")
        },
    );
    for problem in &s.checkpoint_problems {
        line("", problem.clone());
    }
    if let Some(last) = s.checkpoints.last() {
        let counters: Vec<String> = last
            .counters
            .iter()
            .map(|(name, value)| {
                format!(
                    "{name} {}",
                    value.map_or("missing".into(), |v| v.to_string())
                )
            })
            .collect();
        line("counters", counters.join(", "));
    }
    line("losses", losses_line(s));
    let replay = match s.replay_from {
        Some(seq) => format!("from the checkpoint at input {seq}"),
        None => "no checkpoint covers the retained inputs".into(),
    };
    line("replayable", replay);
    out
}

fn status_line(s: &Summary) -> String {
    match (s.status, &s.crash) {
        (Fate::Crashed, Some(crash)) if crash.kind == "panic" => {
            format!("crashed: panic at {}", crash.location.as_deref().unwrap_or("?"))
        }
        (Fate::Crashed, Some(crash)) => format!(
            "crashed: {} (signal {}, code {}, fault address {})",
            crash.signal_name.unwrap_or("signal"),
            crash.signal.unwrap_or(0),
            crash.code.unwrap_or(0),
            crash.fault_addr.as_deref().unwrap_or("-")
        ),
        (Fate::Crashed, None) => "crashed (no cause recorded)".into(),
        (Fate::Died, _) => format!(
            "died: the writer (pid {}) is gone without recording a cause: SIGKILL, OOM kill or power loss",
            s.pid
        ),
        (Fate::Exited, _) => format!("exited cleanly at {}", s.exited_unix_ns.map_or("?".into(), utc)),
        (Fate::Running, _) => format!("running (pid {} is alive)", s.pid),
    }
}

fn losses_line(s: &Summary) -> String {
    let l = &s.losses;
    let mut parts = Vec::new();
    let mut add = |n: u64, what: &str| {
        if n > 0 {
            parts.push(format!("{n} {what}"));
        }
    };
    add(
        l.trace_dropped_no_lane,
        "trace events dropped (all trace lanes busy)",
    );
    add(
        l.trace_dropped_reentrant,
        "trace events dropped (re-entrant)",
    );
    add(l.inputs_unencodable, "inputs not encodable");
    add(
        l.checkpoints_failed,
        "checkpoints failed (state too large?)",
    );
    for lane in &s.lanes {
        add(
            lane.dropped_too_large,
            &format!("records too large for lane {}", lane.name),
        );
        add(lane.torn, &format!("torn records in lane {}", lane.name));
        add(
            lane.corrupt,
            &format!("corrupt slots in lane {}", lane.name),
        );
    }
    if parts.is_empty() {
        "none beyond ring overwrites".into()
    } else {
        parts.join(", ")
    }
}
