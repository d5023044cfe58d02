//! `flightrec export --format perfetto`: real recordings (a child process that traces spans from
//! three threads and crashes, and the demo service run until its bug kills it) exported to
//! Perfetto's protobuf trace, from the ring file and from an export, and decoded back with the
//! same message types: every input in order with its name and position, spans balanced on every
//! thread track (those left open closed at the end), thread tracks named, checkpoints and the
//! crash marked.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use flightrec::cli::perfetto::proto::{
    AnnotationValue, Trace, TrackDescriptor, TrackEvent, TrackEventType,
};
use flightrec::cli::perfetto::{CHECKPOINTS_TRACK, INPUTS_TRACK, INPUT_CATEGORY};
use flightrec::demo::{Ledger, LedgerInput, Traffic};
use flightrec::recorder::{Builder, Level};
use flightrec::replayer::{tree, History};
use prost::Message as _;

/// Names the ring file that the child (this test binary, re-executed) records into.
const ENV_CHILD_RING: &str = "PERFETTO_TEST_CHILD_RING";
/// Inputs of the child's traffic before the input that crashes it.
const CHILD_INPUTS: usize = 2_000;
/// What the child's last input panics with.
const CHILD_CRASH: &str = "transfers name open accounts";
/// The child's exit code once its machine has crashed.
const CHILD_EXIT: i32 = 3;
/// A seed whose demo crashes one audit period early (see tests/cli.rs).
const EARLY_SEED: u64 = 113;

fn flightrec(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_flightrec"))
        .args(args)
        .env("RUST_BACKTRACE", "0")
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

/// `flightrec ARGS`, which must succeed.
fn succeed(args: &[&str]) -> Output {
    let output = flightrec(args);
    assert!(
        output.status.success(),
        "flightrec {args:?}: {}\n{}",
        output.status,
        text(&output.stderr)
    );
    output
}

// ---------------------------------------------------------------------------------------------
// The child: spans from three threads, one left open by a thread that ends, one open at the
// crash, an exit whose entry was never recorded; then a panic in `apply`.

/// The child's entry point: a no-op in the parent.
#[test]
fn child_entry() {
    let Some(ring) = std::env::var_os(ENV_CHILD_RING) else {
        return;
    };
    record_spans_then_crash(Path::new(&ring));
}

fn record_spans_then_crash(ring: &Path) -> ! {
    let mut recorded = Builder::new()
        .path(ring)
        .input_lane_bytes(1 << 20)
        .trace_lanes(4)
        .trace_lane_bytes(64 << 10)
        .state_capacity(1 << 20)
        // One checkpoint, at the start: every input is retained and replayed.
        .checkpoint_every_inputs(100_000)
        .counters(false)
        .build(Ledger::default())
        .expect("create a ring");
    let tracer = recorded.tracer();
    let worker = |name: &str, work: fn(&flightrec::recorder::Tracer)| {
        let tracer = tracer.clone();
        std::thread::Builder::new()
            .name(name.into())
            .spawn(move || work(&tracer))
            .expect("spawn")
    };
    let settlement = worker("settlement", |t| {
        for round in 0..3 {
            t.span_enter(Level::Info, "batch");
            t.span_enter(Level::Debug, "settle");
            t.event(Level::Info, &format!("settled batch {round}"));
            t.span_exit(Level::Debug, "settle");
            t.span_exit(Level::Info, "batch");
        }
    });
    settlement.join().expect("settlement");
    let reporter = worker("reporter", |t| {
        t.span_exit(Level::Info, "orphan");
        t.span_enter(Level::Info, "report");
        t.event(Level::Warn, "reporter gives up");
    });
    reporter.join().expect("reporter");
    // The machine on a thread of its own, so that its track has a name of ours.
    let machine = std::thread::Builder::new()
        .name("machine".into())
        .spawn(move || {
            tracer.span_enter(Level::Info, "traffic");
            recorded.apply(&LedgerInput::Open { deposit: 1_000_000 });
            for input in Traffic::new(5).take(CHILD_INPUTS) {
                recorded.apply(&input);
            }
            recorded.apply(&LedgerInput::Deposit {
                account: 0,
                amount: 1_000_000,
            });
            recorded.apply(&LedgerInput::Transfer {
                from: 0,
                to: u16::MAX,
                amount: 1,
            });
        })
        .expect("spawn");
    assert!(
        machine.join().is_err(),
        "a transfer to an account never opened panics"
    );
    std::process::exit(CHILD_EXIT);
}

/// Runs the child into `dir` and returns its ring file and pid.
fn crashed_child(dir: &Path) -> (PathBuf, u32) {
    let ring = dir.join("child.ring");
    let mut command = Command::new(std::env::current_exe().expect("own executable"));
    command.args(["--exact", "child_entry", "--nocapture", "--test-threads=1"]);
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("FLIGHTREC_") {
            command.env_remove(key);
        }
    }
    let child = command
        .env(ENV_CHILD_RING, &ring)
        .env("RUST_BACKTRACE", "0")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn the child");
    let pid = child.id();
    let output = child.wait_with_output().expect("wait for the child");
    assert!(
        output.status.code() == Some(CHILD_EXIT) && text(&output.stderr).contains(CHILD_CRASH),
        "the child should have crashed: {}\n{}{}",
        output.status,
        text(&output.stdout),
        text(&output.stderr)
    );
    (ring, pid)
}

// ---------------------------------------------------------------------------------------------
// Reading a trace back.

/// A decoded trace: its tracks by uuid, and its events in the order written.
struct Decoded {
    tracks: BTreeMap<u64, TrackDescriptor>,
    events: Vec<(u64, TrackEvent)>,
}

impl Decoded {
    fn read(path: &Path) -> Decoded {
        let bytes = std::fs::read(path).expect("read the trace");
        let trace = Trace::decode(&bytes[..]).expect("a Perfetto trace");
        let mut decoded = Decoded {
            tracks: BTreeMap::new(),
            events: Vec::new(),
        };
        for packet in trace.packet {
            assert_eq!(packet.trusted_packet_sequence_id, Some(1));
            if let Some(track) = packet.track_descriptor {
                let uuid = track.uuid.expect("a track has a uuid");
                assert!(
                    decoded.tracks.insert(uuid, track).is_none(),
                    "track {uuid} twice"
                );
            }
            if let Some(event) = packet.track_event {
                let track = event.track_uuid.expect("an event names its track");
                assert!(
                    decoded.tracks.contains_key(&track),
                    "event before its track"
                );
                decoded
                    .events
                    .push((packet.timestamp.expect("an event has a time"), event));
            }
        }
        decoded
    }

    /// The one track named `name` (by its descriptor's name or its thread's name).
    fn track(&self, name: &str) -> u64 {
        let found: Vec<u64> = self
            .tracks
            .iter()
            .filter(|(_, t)| {
                t.name.as_deref() == Some(name)
                    || t.thread.as_ref().and_then(|d| d.thread_name.as_deref()) == Some(name)
            })
            .map(|(&uuid, _)| uuid)
            .collect();
        assert_eq!(found.len(), 1, "tracks named {name}: {found:?}");
        found[0]
    }

    fn process(&self) -> (u64, &TrackDescriptor) {
        let mut processes = self.tracks.iter().filter(|(_, t)| t.process.is_some());
        let (&uuid, track) = processes.next().expect("a process track");
        assert!(processes.next().is_none(), "one process track");
        (uuid, track)
    }

    fn thread_names(&self) -> BTreeSet<&str> {
        self.tracks
            .values()
            .filter_map(|t| t.thread.as_ref())
            .map(|t| t.thread_name.as_deref().expect("a thread track is named"))
            .collect()
    }

    fn on(&self, track: u64) -> impl Iterator<Item = &(u64, TrackEvent)> {
        self.events
            .iter()
            .filter(move |(_, e)| e.track_uuid == Some(track))
    }

    /// Inputs as (name, position, seq), in the order written.
    fn inputs(&self) -> Vec<(String, u64, u64)> {
        self.on(self.track(INPUTS_TRACK))
            .map(|(_, e)| {
                assert_eq!(e.r#type, Some(TrackEventType::Instant as i32));
                assert_eq!(e.categories, [INPUT_CATEGORY]);
                let name = e.name.clone().expect("an input is named");
                (name, uint(e, "position"), uint(e, "seq"))
            })
            .collect()
    }

    /// Checks that every thread track's slices nest (an end never without a begin), that none
    /// is left open, and returns the names of the slices begun on each thread.
    fn slices_by_thread(&self) -> BTreeMap<String, Vec<String>> {
        let mut slices = BTreeMap::new();
        for (uuid, track) in &self.tracks {
            let Some(thread) = &track.thread else {
                continue;
            };
            let name = thread.thread_name.clone().unwrap_or_default();
            let mut open: Vec<(u64, String)> = Vec::new();
            let mut begun = Vec::new();
            for (time, event) in self.on(*uuid) {
                match TrackEventType::try_from(event.r#type.unwrap_or(0)) {
                    Ok(TrackEventType::SliceBegin) => {
                        let slice = event.name.clone().expect("a slice is named");
                        open.push((*time, slice.clone()));
                        begun.push(slice);
                    }
                    Ok(TrackEventType::SliceEnd) => {
                        let (began, slice) = open
                            .pop()
                            .unwrap_or_else(|| panic!("an end without a begin on {name}"));
                        assert!(*time >= began, "{slice} on {name} ends before it begins");
                    }
                    Ok(TrackEventType::Instant) => {}
                    other => panic!("unexpected event type {other:?} on {name}"),
                }
            }
            assert!(open.is_empty(), "slices left open on {name}: {open:?}");
            slices.insert(name, begun);
        }
        slices
    }

    /// The crash's event on the process track.
    fn crash(&self) -> &TrackEvent {
        let (process, _) = self.process();
        let crashes: Vec<&TrackEvent> = self
            .on(process)
            .map(|(_, e)| e)
            .filter(|e| e.categories == ["crash"])
            .collect();
        assert_eq!(crashes.len(), 1, "one crash");
        crashes[0]
    }

    fn checkpoints(&self) -> usize {
        self.on(self.track(CHECKPOINTS_TRACK)).count()
    }
}

fn annotation<'e>(event: &'e TrackEvent, name: &str) -> Option<&'e AnnotationValue> {
    event
        .debug_annotations
        .iter()
        .find(|a| a.name.as_deref() == Some(name))
        .and_then(|a| a.value.as_ref())
}

fn uint(event: &TrackEvent, name: &str) -> u64 {
    match annotation(event, name) {
        Some(AnnotationValue::Uint(value)) => *value,
        other => panic!("{name} of {event:?} is {other:?}"),
    }
}

/// Every input of the replayed history as (name, position, seq), as the trace should name them.
fn expected_inputs(ring: &Path) -> Vec<(String, u64, u64)> {
    let history = History::<Ledger>::open(ring).expect("replay the ring");
    history
        .inputs()
        .enumerate()
        .map(|(position, event)| {
            let name = tree::brief(&tree::tree_of(&event.input));
            (name, position as u64, event.seq)
        })
        .collect()
}

/// `flightrec export SOURCE --format perfetto -o OUT`.
fn export_perfetto(source: &Path, out: &Path) -> Decoded {
    succeed(&[
        "export",
        arg(source),
        "--format",
        "perfetto",
        "-o",
        arg(out),
    ]);
    Decoded::read(out)
}

// ---------------------------------------------------------------------------------------------
// The tests.

/// Checks the child's trace: its process, inputs, threads, spans, checkpoints and crash.
fn check_child_trace(trace: &Decoded, expected: &[(String, u64, u64)], pid: u32) {
    let (_, process) = trace.process();
    let described = process.process.as_ref().unwrap();
    assert_eq!(described.pid, Some(pid as i32));
    let name = described.process_name.as_deref().unwrap();
    assert!(name.starts_with("ledger v1 (pid "), "{name}");

    assert_eq!(trace.inputs(), expected);
    // The input that crashed the service panics again when replayed.
    let inputs = trace.track(INPUTS_TRACK);
    let panicked: Vec<u64> = trace
        .on(inputs)
        .filter(|(_, e)| {
            matches!(annotation(e, "panicked"), Some(AnnotationValue::String(m)) if m == CHILD_CRASH)
        })
        .map(|(_, e)| uint(e, "position"))
        .collect();
    assert_eq!(panicked, [expected.len() as u64 - 1]);

    assert_eq!(
        trace.thread_names(),
        BTreeSet::from(["machine", "settlement", "reporter"])
    );
    let slices = trace.slices_by_thread();
    assert_eq!(slices["settlement"], ["batch", "settle"].repeat(3));
    // Left open when the reporter ended, and at the crash: closed at the end of the trace.
    assert_eq!(slices["reporter"], ["report"]);
    assert_eq!(slices["machine"], ["traffic"]);
    let reporter = trace.track("reporter");
    let instants: Vec<&str> = trace
        .on(reporter)
        .filter(|(_, e)| e.r#type == Some(TrackEventType::Instant as i32))
        .filter_map(|(_, e)| e.name.as_deref())
        .collect();
    assert_eq!(instants, ["← orphan", "reporter gives up"]);

    assert_eq!(trace.checkpoints(), 1, "the checkpoint at the start");
    let crash = trace.crash();
    let name = crash.name.as_deref().unwrap();
    assert!(name.starts_with("crashed: "), "{name}");
    assert!(name.contains(CHILD_CRASH), "{name}");

    // Absolute times: Unix nanoseconds of this run, with the crash last.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    let an_hour = 3_600_000_000_000;
    let last = trace.events.iter().map(|(t, _)| *t).max().unwrap();
    assert!(trace
        .events
        .iter()
        .all(|(t, _)| *t + an_hour > now && *t <= now));
    let crashed_at = trace
        .events
        .iter()
        .find(|(_, e)| e.categories == ["crash"])
        .unwrap()
        .0;
    assert_eq!(crashed_at, last);
}

#[test]
fn a_crashed_child_exports_to_perfetto_from_its_ring_and_from_its_export() {
    let dir = tempfile::tempdir().unwrap();
    let (ring, pid) = crashed_child(dir.path());
    let expected = expected_inputs(&ring);
    // The open, the traffic and the deposit; the transfer that panicked is the last input.
    assert_eq!(expected.len(), CHILD_INPUTS + 3);

    let from_ring = export_perfetto(&ring, &dir.path().join("ring.pftrace"));
    check_child_trace(&from_ring, &expected, pid);

    let export = dir.path().join("child.flightrec");
    succeed(&["export", arg(&ring), "-o", arg(&export)]);
    let from_export = export_perfetto(&export, &dir.path().join("export.pftrace"));
    check_child_trace(&from_export, &expected, pid);
    // The same events either way.
    assert_eq!(from_ring.events.len(), from_export.events.len());
    for (index, (ring, export)) in from_ring.events.iter().zip(&from_export.events).enumerate() {
        assert_eq!(ring, export, "event {index}");
    }
}

#[test]
fn the_demo_crash_exports_to_perfetto() {
    let dir = tempfile::tempdir().unwrap();
    let output = succeed(&[
        "demo",
        "--no-tui",
        "--rate",
        "0",
        "--seed",
        &EARLY_SEED.to_string(),
        "--dir",
        arg(dir.path()),
    ]);
    let stdout = text(&output.stdout);
    let ring = stdout
        .lines()
        .skip_while(|l| !l.trim_end().ends_with("recording into"))
        .nth(1)
        .map(|l| PathBuf::from(l.trim()))
        .unwrap_or_else(|| panic!("no ring file in the demo's output:\n{stdout}"));

    let trace = export_perfetto(&ring, &dir.path().join("demo.pftrace"));
    assert_eq!(trace.inputs(), expected_inputs(&ring));
    let threads = trace.thread_names();
    for thread in ["settlement", "reporter"] {
        assert!(threads.contains(thread), "{threads:?}");
    }
    trace.slices_by_thread();
    assert!(trace.checkpoints() > 0);
    let crash = trace.crash().name.as_deref().unwrap();
    assert!(
        crash.starts_with("crashed: audit failed at input "),
        "{crash}"
    );
}

#[test]
fn a_damaged_export_is_refused_with_exit_2_and_no_output() {
    let dir = tempfile::tempdir().unwrap();
    let (ring, _) = crashed_child(dir.path());
    let export = dir.path().join("child.flightrec");
    succeed(&["export", arg(&ring), "-o", arg(&export)]);
    let bytes = std::fs::read(&export).unwrap();
    let truncated = dir.path().join("truncated.flightrec");
    std::fs::write(&truncated, &bytes[..bytes.len() / 2]).unwrap();
    let out = dir.path().join("t.pftrace");
    let output = flightrec(&[
        "export",
        arg(&truncated),
        "--format",
        "perfetto",
        "-o",
        arg(&out),
    ]);
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("truncated.flightrec"), "{stderr}");
    assert!(!out.exists());
    let left: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|entry| entry.unwrap().file_name())
        .filter(|name| name.to_string_lossy().contains("pftrace"))
        .collect();
    assert!(left.is_empty(), "a temporary file is left: {left:?}");
}
