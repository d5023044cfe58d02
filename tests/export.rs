//! Exports of ring files: every position of an export agrees with the replayed `History` (input,
//! state, diff), `flightrec export` then `inspect` and `replay` on the export, Chrome
//! trace-event JSON from a ring file and from an export, and a damaged export refused with
//! exit code 2.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use flightrec::demo::{Ledger, Traffic};
use flightrec::recorder::{Builder, Level};
use flightrec::replayer::export::{export_history, EventKind, Export, HistoryExportOptions};
use flightrec::replayer::{tree, History, Ring};
use flightrec::schemas::trace::TraceKind;
use flightrec::Machine;
use serde_json::Value;

const INPUTS: usize = 3_000;

fn flightrec(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_flightrec"))
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run flightrec")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn arg(path: &Path) -> &str {
    path.to_str().expect("a UTF-8 temporary path")
}

/// A ledger recording of `INPUTS` inputs with spans and events from two threads, all retained
/// after the first checkpoint.
fn record(dir: &Path) -> PathBuf {
    let path = dir.join("ledger.ring");
    let mut recorded = Builder::new()
        .path(&path)
        .input_lane_bytes(1 << 20)
        .trace_lanes(2)
        .trace_lane_bytes(64 << 10)
        .state_capacity(1 << 20)
        .checkpoint_every_inputs(100_000)
        .crash_capture(false)
        .counters(false)
        .build(Ledger::default())
        .expect("create a ring");
    let tracer = recorded.tracer();
    let worker = {
        let tracer = recorded.tracer();
        std::thread::Builder::new()
            .name("worker".into())
            .spawn(move || {
                tracer.span_enter(Level::Info, "settle");
                tracer.event(Level::Warn, "worker started");
                tracer.span_exit(Level::Info, "settle");
            })
            .unwrap()
    };
    worker.join().unwrap();
    for (i, input) in Traffic::new(11).take(INPUTS).enumerate() {
        if i % 500 == 0 {
            tracer.span_enter(Level::Debug, "batch");
        }
        recorded.apply(&input);
        if i % 500 == 499 {
            tracer.event(Level::Info, "batch done");
            tracer.span_exit(Level::Debug, "batch");
        }
    }
    recorded.finish();
    path
}

#[test]
fn every_position_of_an_export_agrees_with_the_replayed_history() {
    let dir = tempfile::tempdir().unwrap();
    let ring = record(dir.path());
    let out = dir.path().join("ledger.flightrec");
    let mut history = History::<Ledger>::open(&ring).unwrap();
    assert_eq!(history.len(), INPUTS);
    let options = HistoryExportOptions {
        keyframe_every: 256,
        ..HistoryExportOptions::default()
    };
    let mut reported = Vec::new();
    let summary = export_history(&mut history, &out, &options, &mut |done, total| {
        reported.push((done, total))
    })
    .unwrap();
    assert_eq!(reported.last(), Some(&(INPUTS as u64, INPUTS as u64)));
    assert_eq!(summary.inputs, INPUTS as u64);
    assert_eq!(summary.keyframes, INPUTS.div_ceil(256) as u64);
    assert_eq!(summary.traces, history.traces().len() as u64);

    let export = Export::open(&out).unwrap();
    let meta = export.metadata();
    assert_eq!(meta.machine_name, Ledger::NAME);
    assert_eq!(meta.status, "exited");
    assert_eq!(meta.base_seq, history.base_seq());
    assert_eq!(meta.keyframe_interval, 256);
    assert_eq!(export.len(), INPUTS as u64);
    for position in 0..INPUTS {
        let event = export.input(position as u64).unwrap();
        let input = history.input(position).unwrap();
        let input_tree = tree::tree_of(&input.input);
        assert_eq!(event.seq, input.seq);
        assert_eq!(event.unix_ns, input.unix_ns);
        assert_eq!(event.input_tree().as_ref(), Some(&input_tree));
        assert_eq!(event.summary, tree::brief(&input_tree));
        let mut raw = Vec::new();
        Ledger::encode_input(&input.input, &mut raw).unwrap();
        assert_eq!(event.raw.as_deref(), Some(&raw[..]));
        assert_eq!(
            export.diff(position as u64).unwrap(),
            history.diff(position, usize::MAX).unwrap(),
            "diff of position {position}"
        );
        assert_eq!(
            export.state_tree(position as u64).unwrap(),
            history.state_tree(position).unwrap(),
            "state after position {position}"
        );
    }
    // Every trace event, in its place among the inputs, named after its thread.
    let events = export.events(0..export.event_count()).unwrap();
    let traces: Vec<_> = events
        .iter()
        .filter(|e| e.kind == EventKind::Trace)
        .collect();
    assert_eq!(traces.len(), history.traces().len());
    for (stored, record) in traces.iter().zip(history.traces()) {
        assert_eq!(stored.name, record.thread);
        assert_eq!(stored.unix_ns, record.unix_ns);
        let event = record.event.as_ref().unwrap();
        assert_eq!(
            (stored.trace_kind, &stored.summary[..]),
            (event.kind, &event.message[..])
        );
    }
    assert!(traces.iter().any(|t| t.name == "worker"));
    assert!(traces
        .iter()
        .any(|t| (t.trace_kind, &t.summary[..]) == (TraceKind::SpanEnter, "batch")));
    // The checkpoints, byte for byte.
    let recorded: Vec<_> = flightrec::replayer::recover_checkpoints(&Ring::open(&ring).unwrap())
        .into_iter()
        .filter_map(Result::ok)
        .collect();
    assert_eq!(export.checkpoints().len(), recorded.len());
    for (index, checkpoint) in recorded.iter().enumerate() {
        assert_eq!(
            export.checkpoints()[index].input_seq,
            checkpoint.header.input_seq
        );
        assert_eq!(
            export.checkpoints()[index].hash,
            checkpoint.header.state_hash
        );
        assert_eq!(export.checkpoint_state(index).unwrap(), checkpoint.state);
    }
}

/// A state of every shape serde gives: maps with string and integer keys that gain and lose
/// keys, enums with and without fields, options, negative numbers, floats, tuples, strings.
#[derive(Clone, Default, serde::Serialize, serde::Deserialize)]
struct Shapes {
    by_name: std::collections::BTreeMap<String, Vec<i64>>,
    by_id: std::collections::BTreeMap<u32, (bool, Option<f64>)>,
    mode: Mode,
    last: Option<Op>,
    log: Vec<String>,
}

#[derive(Clone, Default, serde::Serialize, serde::Deserialize)]
enum Mode {
    #[default]
    Idle,
    Busy(u8),
    Draining {
        left: i32,
    },
}

#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
enum Op {
    Put(String, i64),
    Drop(String),
    Mark {
        id: u32,
        ratio: f64,
    },
    Cycle,
    /// Panics with this message.
    Fail(String),
}

impl Machine for Shapes {
    const NAME: &'static str = "shapes";
    const VERSION: u32 = 1;
    type Input = Op;

    fn apply(&mut self, op: &Op, tick: flightrec::Tick) {
        match op {
            Op::Put(name, value) => self.by_name.entry(name.clone()).or_default().push(*value),
            Op::Drop(name) => {
                self.by_name.remove(name);
            }
            Op::Mark { id, ratio } => {
                let entry = self.by_id.entry(*id).or_insert((false, None));
                entry.0 = !entry.0;
                entry.1 = (*ratio > 0.5).then_some(*ratio);
                if *ratio > 0.9 {
                    self.by_id.remove(id);
                }
            }
            Op::Cycle => {
                self.mode = match self.mode {
                    Mode::Idle => Mode::Busy((tick.seq % 7) as u8),
                    Mode::Busy(n) => Mode::Draining {
                        left: -i32::from(n),
                    },
                    Mode::Draining { .. } => Mode::Idle,
                };
                if self.log.len() > 3 {
                    self.log.remove(0);
                }
                self.log.push(format!("cycle {}", tick.seq));
            }
            Op::Fail(why) => panic!("{why}"),
        }
        self.last = Some(op.clone());
    }
}

#[test]
fn exports_of_states_of_every_shape_agree_with_the_history() {
    let dir = tempfile::tempdir().unwrap();
    let ring = dir.path().join("shapes.ring");
    let mut recorded = Builder::new()
        .path(&ring)
        .input_lane_bytes(1 << 20)
        .trace_lanes(1)
        .trace_lane_bytes(16 << 10)
        .state_capacity(1 << 20)
        .checkpoint_every_inputs(100_000)
        .crash_capture(false)
        .counters(false)
        .build(Shapes::default())
        .expect("create a ring");
    let mut seed = 7u64;
    let mut next = move |n: u64| {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (seed >> 33) % n
    };
    for _ in 0..1_500 {
        let name = format!("k{}", next(12));
        let op = match next(4) {
            0 => Op::Put(name, next(100) as i64 - 50),
            1 => Op::Drop(name),
            2 => Op::Mark {
                id: next(20) as u32,
                ratio: next(100) as f64 / 100.0,
            },
            _ => Op::Cycle,
        };
        recorded.apply(&op);
    }
    recorded.finish();
    let mut history = History::<Shapes>::open(&ring).unwrap();
    let out = dir.path().join("shapes.flightrec");
    let options = HistoryExportOptions {
        keyframe_every: 100,
        ..HistoryExportOptions::default()
    };
    export_history(&mut history, &out, &options, &mut |_, _| {}).unwrap();
    let export = Export::open(&out).unwrap();
    for position in 0..history.len() {
        assert_eq!(
            export.diff(position as u64).unwrap(),
            history.diff(position, usize::MAX).unwrap(),
            "diff of position {position}"
        );
        assert_eq!(
            export.state_tree(position as u64).unwrap(),
            history.state_tree(position).unwrap(),
            "state after position {position}"
        );
    }
}

/// A panic the replay caught (the recorded crash, replayed) travels in the export: `replay
/// --at` shows it at its input, `inspect` lists it and the Chrome trace marks the input, without
/// the machine, as the ring file's replay does with it.
#[test]
fn an_export_carries_the_panics_of_its_replay() {
    const WHY: &str = "the books do not balance";
    let dir = tempfile::tempdir().unwrap();
    let ring = dir.path().join("failing.ring");
    let mut recorded = Builder::new()
        .path(&ring)
        .input_lane_bytes(1 << 20)
        .trace_lanes(1)
        .trace_lane_bytes(16 << 10)
        .state_capacity(1 << 20)
        .crash_capture(false)
        .counters(false)
        .build(Shapes::default())
        .expect("create a ring");
    for i in 0..50 {
        recorded.apply(&Op::Put(format!("k{}", i % 5), i));
    }
    let failed = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        recorded.apply(&Op::Fail(WHY.into()))
    }));
    assert!(failed.is_err(), "the input panics when recorded");
    drop(recorded);
    let mut history = History::<Shapes>::open(&ring).unwrap();
    assert_eq!(history.panics().len(), 1, "{:?}", history.panics());
    let out = dir.path().join("failing.flightrec");
    export_history(
        &mut history,
        &out,
        &HistoryExportOptions::default(),
        &mut |_, _| {},
    )
    .unwrap();
    let export = Export::open(&out).unwrap();
    assert_eq!(export.metadata().replay_panics, history.panics());
    assert_eq!(export.metadata().replay_panic_count, 1);
    let last = (history.len() - 1).to_string();
    assert_eq!(history.panics()[0].index.to_string(), last);

    let json = |at: &str| -> Value {
        let output = flightrec(&["replay", arg(&out), "--at", at, "--json"]);
        assert!(output.status.success(), "{}", text(&output.stderr));
        serde_json::from_slice(&output.stdout).unwrap()
    };
    assert_eq!(json(&last)["panic"]["message"], WHY);
    assert_eq!(json("3")["panic"], Value::Null);
    let replay = text(&flightrec(&["replay", arg(&out), "--at", &last]).stdout);
    assert!(replay.contains(&format!("  panicked: {WHY}\n")), "{replay}");
    let inspect = text(&flightrec(&["inspect", arg(&out)]).stdout);
    assert!(
        inspect.contains(&format!("input {last} panicked during replay: {WHY}")),
        "{inspect}"
    );
    let inspect: Value =
        serde_json::from_slice(&flightrec(&["inspect", arg(&out), "--json"]).stdout).unwrap();
    assert_eq!(inspect["replay_panic_count"], 1);
    assert_eq!(inspect["replay_panics"][0]["message"], WHY);

    let chrome = dir.path().join("failing.json");
    let output = flightrec(&[
        "export",
        arg(&out),
        "--format",
        "chrome",
        "-o",
        arg(&chrome),
    ]);
    assert!(output.status.success(), "{}", text(&output.stderr));
    let trace: Value = serde_json::from_slice(&std::fs::read(&chrome).unwrap()).unwrap();
    let panicked: Vec<&Value> = trace["traceEvents"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["cat"] == "input" && e["args"]["panicked"].is_string())
        .collect();
    assert_eq!(panicked.len(), 1);
    assert_eq!(panicked[0]["args"]["panicked"], WHY);
    assert_eq!(panicked[0]["args"]["seq"].to_string(), last);
}

#[test]
fn the_cli_exports_and_reads_exports_without_the_machine() {
    let dir = tempfile::tempdir().unwrap();
    let ring = record(dir.path());
    let out = dir.path().join("out.flightrec");
    let export = flightrec(&[
        "export",
        arg(&ring),
        "-o",
        arg(&out),
        "--keyframe-every",
        "100",
    ]);
    assert!(export.status.success(), "{}", text(&export.stderr));
    assert!(
        text(&export.stderr).contains("3000 inputs"),
        "{}",
        text(&export.stderr)
    );

    // Not over an existing file, unless asked.
    let again = flightrec(&["export", arg(&ring), "-o", arg(&out)]);
    assert_eq!(again.status.code(), Some(1));
    assert!(
        text(&again.stderr).contains("--force"),
        "{}",
        text(&again.stderr)
    );
    let forced = flightrec(&[
        "export",
        arg(&ring),
        "-o",
        arg(&out),
        "--force",
        "--keyframe-every",
        "100",
    ]);
    assert!(forced.status.success(), "{}", text(&forced.stderr));

    let inspect = flightrec(&["inspect", arg(&out)]);
    let stdout = text(&inspect.stdout);
    assert!(
        inspect.status.success(),
        "{stdout}{}",
        text(&inspect.stderr)
    );
    assert!(stdout.contains("ledger v1"), "{stdout}");
    assert!(
        stdout.contains("3000 inputs (inputs #0..=#2999)"),
        "{stdout}"
    );
    assert!(stdout.contains("30 (every 100 inputs"), "{stdout}");
    let json: Value = serde_json::from_slice(&flightrec(&["inspect", arg(&out), "--json"]).stdout)
        .expect("inspect --json");
    assert_eq!(json["inputs"], 3000);
    assert_eq!(json["keyframes"].as_array().map(Vec::len), Some(30));
    assert_eq!(json["status"], "exited");
    assert!(!json["checkpoints"].as_array().unwrap().is_empty());

    // `replay --at` gives the same input, diff and state from the export as from the ring.
    for at in ["0", "1234", "2999"] {
        let from_ring = flightrec(&["replay", arg(&ring), "--at", at, "--json"]);
        let from_export = flightrec(&["replay", arg(&out), "--at", at, "--json"]);
        assert!(
            from_export.status.success(),
            "{}",
            text(&from_export.stderr)
        );
        let ring_json: Value = serde_json::from_slice(&from_ring.stdout).unwrap();
        let export_json: Value = serde_json::from_slice(&from_export.stdout).unwrap();
        for field in ["seq", "position", "unix_ns", "input", "diff", "state"] {
            assert_eq!(ring_json[field], export_json[field], "{field} at {at}");
        }
    }
    let replay = flightrec(&["replay", arg(&out), "--at", "1234"]);
    let stdout = text(&replay.stdout);
    assert!(replay.status.success(), "{}", text(&replay.stderr));
    assert!(stdout.contains("input #1234 of 0..=2999"), "{stdout}");
    assert!(stdout.contains("changed\n"), "{stdout}");
    assert!(stdout.contains("state after input #1234"), "{stdout}");
    let outside = flightrec(&["replay", arg(&out), "--at", "3000"]);
    assert_eq!(outside.status.code(), Some(2));
    assert!(
        text(&outside.stderr).contains("0 to 2999"),
        "{}",
        text(&outside.stderr)
    );
}

/// Checks a Chrome trace: it parses, and has every input, the thread names, the spans and the
/// checkpoints.
fn check_chrome(path: &Path) {
    let trace: Value = serde_json::from_slice(&std::fs::read(path).unwrap()).expect("JSON");
    assert_eq!(trace["displayTimeUnit"], "ms");
    let events = trace["traceEvents"].as_array().expect("traceEvents");
    let inputs: Vec<&Value> = events
        .iter()
        .filter(|e| e["cat"] == "input" && e["ph"] == "i")
        .collect();
    assert_eq!(inputs.len(), INPUTS);
    assert!(inputs
        .iter()
        .enumerate()
        .all(|(i, e)| e["args"]["seq"] == i));
    let threads: Vec<&str> = events
        .iter()
        .filter(|e| e["ph"] == "M" && e["name"] == "thread_name")
        .filter_map(|e| e["args"]["name"].as_str())
        .collect();
    assert!(threads.contains(&"input"), "{threads:?}");
    assert!(threads.contains(&"worker"), "{threads:?}");
    let begins = events.iter().filter(|e| e["ph"] == "B").count();
    let ends = events.iter().filter(|e| e["ph"] == "E").count();
    assert_eq!((begins, ends), (7, 7));
    assert!(events
        .iter()
        .any(|e| e["cat"] == "checkpoint" && e["s"] == "g"));
    assert!(events
        .iter()
        .all(|e| e["ph"] == "M" || e["ts"].as_f64().is_some_and(|ts| ts >= 0.0)));
}

#[test]
fn chrome_traces_come_from_ring_files_and_from_exports() {
    let dir = tempfile::tempdir().unwrap();
    let ring = record(dir.path());
    let from_ring = dir.path().join("ring.json");
    let output = flightrec(&[
        "export",
        arg(&ring),
        "--format",
        "chrome",
        "-o",
        arg(&from_ring),
    ]);
    assert!(output.status.success(), "{}", text(&output.stderr));
    check_chrome(&from_ring);

    let export = dir.path().join("out.flightrec");
    assert!(flightrec(&["export", arg(&ring), "-o", arg(&export)])
        .status
        .success());
    let from_export = dir.path().join("export.json");
    let output = flightrec(&[
        "export",
        arg(&export),
        "--format",
        "chrome",
        "-o",
        arg(&from_export),
    ]);
    assert!(output.status.success(), "{}", text(&output.stderr));
    check_chrome(&from_export);
}

#[test]
fn a_damaged_export_is_refused_with_one_line_and_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let ring = record(dir.path());
    let out = dir.path().join("out.flightrec");
    assert!(flightrec(&["export", arg(&ring), "-o", arg(&out)])
        .status
        .success());
    let bytes = std::fs::read(&out).unwrap();
    let truncated = dir.path().join("truncated.flightrec");
    std::fs::write(&truncated, &bytes[..bytes.len() / 2 / 8 * 8]).unwrap();
    for command in [&["inspect"][..], &["replay"], &["replay", "--json"]] {
        let output = flightrec(&[command, &[arg(&truncated)]].concat());
        let stderr = text(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{command:?}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(stderr.contains("truncated.flightrec"), "{stderr}");
    }
    let chrome = dir.path().join("t.json");
    let output = flightrec(&[
        "export",
        arg(&truncated),
        "--format",
        "chrome",
        "-o",
        arg(&chrome),
    ]);
    assert_eq!(output.status.code(), Some(2), "{}", text(&output.stderr));
    assert!(!chrome.exists());
    // An export is not exported again.
    let output = flightrec(&[
        "export",
        arg(&out),
        "-o",
        arg(&dir.path().join("again.flightrec")),
    ]);
    assert_eq!(output.status.code(), Some(2), "{}", text(&output.stderr));
}

#[test]
fn an_existing_output_is_refused_before_the_input_is_read() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.flightrec");
    std::fs::write(&out, b"kept").unwrap();
    // The input does not exist: reading it first would fail with exit 2 and say so, after
    // what on a real ring is minutes of replay.
    let missing = dir.path().join("missing.ring");
    for format in ["flightrec", "chrome", "perfetto"] {
        let output = flightrec(&["export", arg(&missing), "--format", format, "-o", arg(&out)]);
        let stderr = text(&output.stderr);
        assert_eq!(output.status.code(), Some(1), "{format}: {stderr}");
        assert!(stderr.contains("already exists"), "{format}: {stderr}");
        assert!(stderr.contains("--force"), "{format}: {stderr}");
    }
    assert_eq!(std::fs::read(&out).unwrap(), b"kept");
}

/// The ring file of a demo service killed with SIGKILL, once it has recorded some inputs.
fn killed_service(dir: &Path) -> PathBuf {
    use std::io::{BufRead, BufReader};
    let mut child = Command::new(env!("CARGO_BIN_EXE_flightrec"))
        .args(["demo", "--service", "--dir", arg(dir), "--rate", "2000"])
        .stdin(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the demo service");
    // Its banner on stderr: "ledger service pid N recording to PATH".
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut banner = String::new();
    stderr.read_line(&mut banner).unwrap();
    let ring = PathBuf::from(banner.trim_end().split(" recording to ").nth(1).unwrap());
    // The first thousand inputs come at once (the service paces itself by the thousand).
    for _ in 0..600 {
        let output = flightrec(&["inspect", "--json", arg(&ring)]);
        let inspect: Value = serde_json::from_slice(&output.stdout).unwrap_or_default();
        if inspect["lanes"][0]["recorded"].as_u64() >= Some(1000) {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    ring
}

/// The crash event of a Chrome trace, and the latest time of any other event.
fn end_of_chrome(path: &Path) -> (Value, f64) {
    let trace: Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    let events = trace["traceEvents"].as_array().unwrap();
    let ends: Vec<&Value> = events.iter().filter(|e| e["cat"] == "crash").collect();
    assert_eq!(ends.len(), 1, "{ends:?}");
    let latest = events
        .iter()
        .filter(|e| e["cat"] != "crash")
        .filter_map(|e| e["ts"].as_f64())
        .fold(f64::MIN, f64::max);
    (ends[0].clone(), latest)
}

#[test]
fn a_death_of_unknown_time_ends_the_chrome_trace_at_its_latest_event_from_ring_and_export() {
    let dir = tempfile::tempdir().unwrap();
    let ring = killed_service(dir.path());
    let export = dir.path().join("killed.flightrec");
    let output = flightrec(&["export", arg(&ring), "-o", arg(&export)]);
    assert!(output.status.success(), "{}", text(&output.stderr));
    for source in [&ring, &export] {
        let json = dir.path().join("trace.json");
        let _ = std::fs::remove_file(&json);
        let output = flightrec(&[
            "export",
            arg(source),
            "--format",
            "chrome",
            "-o",
            arg(&json),
        ]);
        assert!(output.status.success(), "{}", text(&output.stderr));
        let (end, latest) = end_of_chrome(&json);
        assert_eq!(end["args"]["status"], "died", "{source:?}: {end}");
        assert_eq!(end["ts"].as_f64(), Some(latest), "{source:?}: {end}");
    }
}
