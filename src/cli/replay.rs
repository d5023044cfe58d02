//! `flightrec replay` and `flightrec verify`: the machine's history rebuilt from a ring file.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use flightrec_replayer::tree::{self, Value};
use flightrec_replayer::{
    History, ReplayError, ReplayOptions, ReplayPanic, Verification, MAX_PANICS_KEPT,
};
use flightrec_schemas::Machine;

use super::time::utc;
use super::Failure;

/// Replay panics listed before "… and N more".
const PANICS_SHOWN: usize = 10;
/// Changes listed per input before "… and N more".
pub const DIFF_LIMIT: usize = 50;

#[derive(Debug, clap::Args)]
pub struct ReplayArgs {
    /// The ring file (`.ring`) or export (`.flightrec`).
    file: PathBuf,
    /// Show the state after this input (its sequence number, as in messages like "at input
    /// 379999") [default: the last retained input].
    #[arg(long, value_name = "N")]
    at: Option<u64>,
    /// Print JSON instead of text (the whole state, however large).
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    memory: MemoryArgs,
}

/// How much memory replay may keep in snapshots.
#[derive(Debug, clap::Args)]
pub struct MemoryArgs {
    /// Memory for in-memory snapshots of the state (e.g. 64MiB, 2GiB): more memory, faster
    /// jumps to any input.
    #[arg(long, value_name = "SIZE", default_value = "256MiB", value_parser = parse_memory)]
    snapshot_memory: u64,
}

impl MemoryArgs {
    pub fn options(&self) -> ReplayOptions {
        ReplayOptions {
            snapshot_budget: usize::try_from(self.snapshot_memory).unwrap_or(usize::MAX),
            ..ReplayOptions::default()
        }
    }
}

fn parse_memory(text: &str) -> Result<u64, String> {
    flightrec_recorder::parse_size(text)
        .ok_or_else(|| format!("{text:?} is not a size; try 256MiB, 1GiB or a number of bytes"))
}

#[derive(Debug, clap::Args)]
pub struct VerifyArgs {
    /// The ring file (`.ring`).
    file: PathBuf,
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    memory: MemoryArgs,
}

/// Opens and replays `file`, mapping every reason it cannot be replayed to exit code 2.
pub fn open_history<M: Machine + Clone>(
    file: &Path,
    options: &ReplayOptions,
) -> Result<History<M>, Failure> {
    super::progress::opening(options, |options| History::open_with(file, options))
        .map_err(|error: ReplayError| Failure::bad_input(error))
}

pub fn run_replay<M: Machine + Clone>(args: ReplayArgs) -> Result<ExitCode, Failure> {
    if super::export::is_export(&args.file) {
        return super::export::replay(&args.file, args.at, args.json);
    }
    let mut history = open_history::<M>(&args.file, &args.memory.options())?;
    if history.is_empty() {
        let state = tree::tree_of(history.base_state());
        if args.json {
            let base = serde_json::json!({ "seq": history.base_seq(), "state": state });
            println!("{}", serde_json::to_string_pretty(&base)?);
        } else {
            println!("{}", header_line(&history));
            println!(
                "no input was recorded after the checkpoint at input {}; its state:",
                history.base_seq()
            );
            let mut out = String::new();
            render_value(&mut out, &state, 1);
            print!("{out}");
        }
        return Ok(ExitCode::SUCCESS);
    }
    let last = history.base_seq() + history.len() as u64 - 1;
    let seq = args.at.unwrap_or(last);
    if seq < history.base_seq() || seq > last {
        return Err(Failure::bad_input(anyhow::anyhow!(
            "{}: input {seq} is not replayable; the history holds inputs {} to {last}",
            args.file.display(),
            history.base_seq()
        )));
    }
    let index = (seq - history.base_seq()) as usize;
    let step = Step::at(&mut history, index);
    if args.json {
        println!("{}", serde_json::to_string_pretty(&step.to_json(&history))?);
    } else {
        print!("{}", step.render(&history));
    }
    Ok(ExitCode::SUCCESS)
}

pub fn run_verify<M: Machine + Clone>(args: VerifyArgs) -> Result<ExitCode, Failure> {
    let history = open_history::<M>(&args.file, &args.memory.options())?;
    let verification = history.verification();
    if args.json {
        let report = serde_json::json!({
            "file": args.file.display().to_string(),
            "passed": verification.passed(),
            "base_seq": history.base_seq(),
            "inputs": history.len(),
            "checks": verification.checks,
            "divergence": verification.divergence,
            "panics": history.panics(),
            "panic_count": history.panic_count(),
        });
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", render_verification(&history));
    }
    Ok(if verification.passed() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// One position of a history, ready to show.
pub struct Step {
    index: usize,
    seq: u64,
    unix_ns: u64,
    input: Value,
    state: Value,
    changes: Vec<tree::Change>,
}

impl Step {
    /// The input at `index`, the state after it and what it changed.
    pub fn at<M: Machine + Clone>(history: &mut History<M>, index: usize) -> Step {
        let event = history.input(index).expect("index checked by the caller");
        let (seq, unix_ns) = (event.seq, event.unix_ns);
        let input = history.input_tree(index).expect("index checked");
        let changes = history.diff(index, usize::MAX).expect("index checked");
        let state = history.state_tree(index).expect("index checked");
        Step {
            index,
            seq,
            unix_ns,
            input,
            state,
            changes,
        }
    }

    fn to_json<M: Machine + Clone>(&self, history: &History<M>) -> Value {
        serde_json::json!({
            "seq": self.seq,
            "position": self.index,
            "unix_ns": self.unix_ns,
            "input": self.input,
            "panic": history.panics().iter().find(|p| p.index == self.index),
            "diff": self.changes,
            "state": self.state,
        })
    }

    /// Text for a terminal: the input, its outcome, its diff, and the state (large arrays cut).
    pub fn render<M: Machine + Clone>(&self, history: &History<M>) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "{}", header_line(history));
        let _ = writeln!(
            out,
            "input #{} of {}..={} at {}",
            self.seq,
            history.base_seq(),
            history.base_seq() + history.len() as u64 - 1,
            utc(self.unix_ns)
        );
        let _ = writeln!(out, "  {}", tree::brief(&self.input));
        if let Some(panic) = history.panics().iter().find(|p| p.index == self.index) {
            let _ = writeln!(out, "  panicked: {}", panic.message);
        }
        let _ = writeln!(out, "changed");
        out.push_str(&render_changes(&self.changes, DIFF_LIMIT, "  "));
        let _ = writeln!(out, "state after input #{}", self.seq);
        render_value(&mut out, &self.state, 1);
        out
    }
}

/// `ledger v1: /dev/shm/....ring, inputs 300000..=379999 replayed, 1 of 1 hashes verified`.
fn header_line<M: Machine + Clone>(history: &History<M>) -> String {
    let summary = history.summary();
    format!(
        "{} v{} from {} ({}); replayed from the checkpoint at input {}; {}",
        summary.machine.name,
        summary.machine.version,
        summary.path,
        summary.status.as_str(),
        history.base_seq(),
        verification_brief(history.verification())
    )
}

/// `2 of 2 recorded state hashes match`, or where they stop matching.
pub fn verification_brief(verification: &Verification) -> String {
    flightrec_replayer::export::verification_line(verification)
}

/// Changes as `path: before → after` lines indented by `indent`, at most `limit`.
pub fn render_changes(changes: &[tree::Change], limit: usize, indent: &str) -> String {
    let mut out = String::new();
    if changes.is_empty() {
        let _ = writeln!(out, "{indent}(nothing)");
    }
    let shown = |value: &Option<Value>| value.as_ref().map_or("(absent)".into(), tree::compact);
    for change in changes.iter().take(limit) {
        let _ = writeln!(
            out,
            "{indent}{}: {} → {}",
            change.path,
            shown(&change.before),
            shown(&change.after)
        );
    }
    if changes.len() > limit {
        let _ = writeln!(out, "{indent}… and {} more", changes.len() - limit);
    }
    out
}

/// Arrays longer than this show their first and last items only.
const ARRAY_SHOWN: usize = 6;

/// An indented rendering of a tree, cutting long arrays.
pub fn render_value(out: &mut String, value: &Value, depth: usize) {
    let pad = "  ".repeat(depth);
    match value {
        Value::Object(fields) => {
            for (key, field) in fields {
                if tree::is_leaf(field) {
                    let _ = writeln!(out, "{pad}{key}: {}", tree::compact(field));
                } else {
                    let _ = writeln!(out, "{pad}{key}: {}", container_size(field));
                    render_value(out, field, depth + 1);
                }
            }
        }
        Value::Array(items) => {
            let cut = items.len() > ARRAY_SHOWN;
            for (i, item) in items.iter().enumerate() {
                let head = i < ARRAY_SHOWN / 2;
                let tail = i + ARRAY_SHOWN / 2 >= items.len();
                if cut && !head && !tail {
                    if i == ARRAY_SHOWN / 2 {
                        let hidden = items.len() - ARRAY_SHOWN;
                        let _ = writeln!(
                            out,
                            "{pad}… {hidden} more (flightrec replay --json shows all)"
                        );
                    }
                    continue;
                }
                let _ = writeln!(out, "{pad}[{i}] {}", tree::compact(item));
            }
        }
        leaf => {
            let _ = writeln!(out, "{pad}{}", tree::compact(leaf));
        }
    }
}

fn container_size(value: &Value) -> String {
    match value {
        Value::Array(items) => format!("[{} items]", items.len()),
        Value::Object(fields) => format!("{{{} fields}}", fields.len()),
        _ => String::new(),
    }
}

/// The inputs that panicked during replay, one line each (the first few), then how many more:
/// `count` in all.
pub fn panic_lines(panics: &[ReplayPanic], count: usize) -> Vec<String> {
    let mut lines: Vec<String> = panics
        .iter()
        .take(PANICS_SHOWN)
        .map(|panic| {
            format!(
                "input {} panicked during replay: {}",
                panic.seq, panic.message
            )
        })
        .collect();
    if count > PANICS_SHOWN {
        lines.push(format!(
            "… and {} more panics (--json lists the first {MAX_PANICS_KEPT})",
            count - PANICS_SHOWN
        ));
    }
    lines
}

/// The full verification report as text.
fn render_verification<M: Machine + Clone>(history: &History<M>) -> String {
    let mut out = String::new();
    let verification = history.verification();
    let _ = writeln!(out, "{}", header_line(history));
    let _ = writeln!(
        out,
        "replayed {} inputs after the checkpoint at input {}",
        history.len(),
        history.base_seq(),
    );
    for check in &verification.checks {
        let verdict = if check.passed() { "match" } else { "MISMATCH" };
        let _ = writeln!(
            out,
            "  state before input {}: recorded hash {:016x}, replayed {}: {verdict}",
            check.seq,
            check.recorded,
            check
                .replayed
                .map_or("(cannot encode)".into(), |h| format!("{h:016x}"))
        );
    }
    let end = history.base_seq() + history.len() as u64;
    let checked_to = verification
        .checks
        .iter()
        .map(|c| c.seq)
        .max()
        .unwrap_or(end);
    if checked_to < end {
        let _ = writeln!(
            out,
            "  inputs {checked_to}..={} ({} inputs) come after the last checkpoint: replayed, \
             but no recorded hash covers them",
            end - 1,
            end - checked_to
        );
    }
    for line in panic_lines(history.panics(), history.panic_count()) {
        let _ = writeln!(out, "  {line}");
    }
    match &verification.divergence {
        None => {
            let _ = writeln!(out, "verified: {}", verification_brief(verification));
        }
        Some(divergence) => {
            let _ = writeln!(
                out,
                "{}: the replayed history departs from the recorded one",
                verification_brief(verification)
            );
            if let Some(note) = &divergence.note {
                let _ = writeln!(out, "  {note}");
            }
            let _ = writeln!(out, "first differing fields (recorded → replayed):");
            out.push_str(&render_changes(&divergence.fields, DIFF_LIMIT, "  "));
        }
    }
    out
}
