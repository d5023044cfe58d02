//! What a ring file keeps when its writer dies: the test binary re-executes itself as a recording
//! child (see [`child_entry`]) that is killed with SIGKILL, faults, aborts, panics or exits, and
//! the parent then checks every recovered byte against what the child must have written.
//!
//! Inputs and trace events are derived from their sequence numbers alone, so the parent knows the
//! exact payload of every record it recovers, and the machine's state after any number of inputs.

use std::fmt;
use std::io::{BufRead, BufReader, Write};
use std::ops::Range;
use std::os::unix::fs::{FileExt, PermissionsExt};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use flightrec_recorder::{Builder, Level, Machine, Recorded, RecorderError, Tick, Tracer};
use flightrec_replayer::{
    recover_checkpoints, recover_lane, replay_base, CheckpointProblem, Fate, LaneRecords, Ring,
};
use flightrec_schemas::header::{CrashCause, CrashRecord, LaneInfo, LaneKind};
use flightrec_schemas::layout::{slots_for, SLOT_SIZE};
use flightrec_schemas::trace::{encode_header, TraceEvent, TraceKind};
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

/// Names the scenario a child runs; unset in the parent.
const ENV_SCENARIO: &str = "FLIGHTREC_TEST_CHILD";
/// The ring file the child creates.
const ENV_RING: &str = "FLIGHTREC_TEST_RING";

/// Inputs a crashing child records before it crashes: about 600 slots, so nothing wraps.
const CRASH_INPUTS: u64 = 250;
/// Inputs a cleanly exiting child records: several times around the 1024-slot input lane.
const CLEAN_INPUTS: u64 = 2_000;
/// Trace threads of the SIGKILL child, one per trace lane.
const TRACERS: usize = 2;
/// The SIGKILL child reports its committed inputs every this many.
const PROGRESS_EVERY: u64 = 100;
/// SIGKILL runs, and the longest wait before each kill.
const KILL_RUNS: usize = 20;
const MAX_KILL_DELAY_MS: u64 = 200;
/// Where the SIGSEGV child writes: inside the never-mapped first page, and not 0, so finding it
/// in the crash record proves the handler read `si_addr` (0 is also what an unset field holds).
const FAULT_ADDR: usize = 0x10;
/// `si_code` of a fault at an unmapped address (Linux `SEGV_MAPERR`).
const SEGV_MAPERR: i32 = 1;

// ---------------------------------------------------------------------------------------------
// The recorded machine: its inputs and its state are functions of the sequence number.

/// One input: its sequence number and up to 149 bytes derived from it, so records of one to
/// four slots alternate.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct Input {
    seq: u64,
    bytes: Vec<u8>,
}

/// The input the children record as number `seq`.
fn input(seq: u64) -> Input {
    let len = (seq % 150) as usize;
    let bytes = (0..len)
        .map(|i| (seq.wrapping_mul(31).wrapping_add(i as u64 * 7) as u8) ^ 0x5a)
        .collect();
    Input { seq, bytes }
}

/// The exact record payload of input `seq`.
fn encoded_input(seq: u64) -> Vec<u8> {
    let mut out = Vec::new();
    Checksum::encode_input(&input(seq), &mut out).expect("inputs encode");
    out
}

/// Counts its inputs and folds their bytes into a checksum, so a checkpoint's state says exactly
/// which inputs were applied before it, in which order.
#[derive(Default, Serialize, Deserialize)]
struct Checksum {
    count: u64,
    sum: u64,
    /// Sequence number whose `apply` panics; not part of the state, so replay never panics.
    #[serde(skip)]
    panic_at: Option<u64>,
}

impl Checksum {
    fn fold(&mut self, input: &Input) {
        self.count += 1;
        self.sum = input
            .bytes
            .iter()
            .fold(self.sum.rotate_left(7) ^ input.seq, |acc, &b| {
                acc.wrapping_mul(0x0100_0000_01b3) ^ b as u64
            });
    }
}

impl Machine for Checksum {
    const NAME: &'static str = "crash-checksum";
    const VERSION: u32 = 1;
    type Input = Input;

    fn apply(&mut self, input: &Input, tick: Tick) {
        assert_eq!(input.seq, tick.seq, "inputs are applied in recorded order");
        if self.panic_at == Some(tick.seq) {
            panic!("poisoned input {}", tick.seq);
        }
        self.fold(input);
    }
}

/// `sums[n]` is the machine's checksum after inputs `0..n`.
fn checksums_upto(n: u64) -> Vec<u64> {
    let mut machine = Checksum::default();
    let mut sums = Vec::with_capacity(n as usize + 1);
    sums.push(machine.sum);
    for seq in 0..n {
        machine.fold(&input(seq));
        sums.push(machine.sum);
    }
    sums
}

/// The trace event tracer thread `thread` records as its `seq`-th: all kinds and levels, and
/// messages of one to three slots.
fn expected_trace(thread: usize, seq: u64) -> (TraceKind, Level, String) {
    let kinds = [TraceKind::Event, TraceKind::SpanEnter, TraceKind::SpanExit];
    let levels = [
        Level::Error,
        Level::Warn,
        Level::Info,
        Level::Debug,
        Level::Trace,
    ];
    let filler: String = (0..seq % 120)
        .map(|i| char::from(b'a' + ((seq + i) % 26) as u8))
        .collect();
    (
        kinds[(seq % 3) as usize],
        levels[(seq % 5) as usize],
        format!("tracer {thread} event {seq} {filler}"),
    )
}

// ---------------------------------------------------------------------------------------------
// The child side.

/// What a child does, named by [`ENV_SCENARIO`].
#[derive(Clone, Copy, Debug)]
enum Scenario {
    /// Records inputs (and two threads trace) until the parent kills it.
    RecordUntilKilled,
    /// Records [`CRASH_INPUTS`] inputs, then writes to an unmapped address.
    Segfault,
    /// Records [`CRASH_INPUTS`] inputs, then calls `abort`.
    Abort,
    /// Records inputs until `apply` panics on input [`CRASH_INPUTS`].
    PanicInApply,
    /// Records, catches a panic of another thread, records more, finishes.
    CaughtPanicThenFinish,
    /// Records [`CLEAN_INPUTS`] inputs and finishes.
    Finish,
    /// Tries to create a 16 MiB ring where there is no room for it.
    ExpectNoSpace,
}

impl Scenario {
    const ALL: [Scenario; 7] = [
        Scenario::RecordUntilKilled,
        Scenario::Segfault,
        Scenario::Abort,
        Scenario::PanicInApply,
        Scenario::CaughtPanicThenFinish,
        Scenario::Finish,
        Scenario::ExpectNoSpace,
    ];

    fn name(self) -> String {
        format!("{self:?}")
    }

    fn parse(name: &str) -> Option<Scenario> {
        Scenario::ALL.into_iter().find(|s| s.name() == name)
    }

    fn run(self, ring: &Path) {
        match self {
            Scenario::RecordUntilKilled => record_until_killed(ring),
            Scenario::Segfault => {
                let _recorded = record_then_crash(ring, Checksum::default());
                write_to_unmapped_address()
            }
            Scenario::Abort => {
                let _recorded = record_then_crash(ring, Checksum::default());
                std::process::abort()
            }
            Scenario::PanicInApply => {
                let poisoned = Checksum {
                    panic_at: Some(CRASH_INPUTS),
                    ..Checksum::default()
                };
                let mut recorded = record_then_crash(ring, poisoned);
                recorded.apply(&input(CRASH_INPUTS));
                unreachable!("input {CRASH_INPUTS} should have panicked");
            }
            Scenario::CaughtPanicThenFinish => {
                let mut recorded = start(ring, Checksum::default());
                record(&mut recorded, 0..CRASH_INPUTS);
                let worker = std::thread::Builder::new()
                    .name("doomed-worker".into())
                    .spawn(|| panic!("deliberate panic in a worker thread"))
                    .expect("spawn");
                assert!(worker.join().is_err(), "the worker panicked");
                record(&mut recorded, CRASH_INPUTS..2 * CRASH_INPUTS);
                recorded.finish();
            }
            Scenario::Finish => {
                let mut recorded = start(ring, Checksum::default());
                record(&mut recorded, 0..CLEAN_INPUTS);
                recorded.finish();
            }
            Scenario::ExpectNoSpace => expect_no_space(ring),
        }
    }
}

/// The child's entry point: a no-op in the parent; in a child (re-executed by
/// [`child_command`]), the scenario named by [`ENV_SCENARIO`], which for crash scenarios never
/// returns normally.
#[test]
fn child_entry() {
    let Ok(name) = std::env::var(ENV_SCENARIO) else {
        return;
    };
    let scenario =
        Scenario::parse(&name).unwrap_or_else(|| panic!("{ENV_SCENARIO}={name:?} is unknown"));
    let ring = PathBuf::from(std::env::var_os(ENV_RING).expect("the parent names the ring"));
    scenario.run(&ring);
}

/// Settings of every test ring: an input lane of 1024 slots that wraps, small trace lanes.
fn small_ring(ring: &Path) -> Builder {
    Builder::new()
        .path(ring)
        .input_lane_bytes(64 << 10)
        .trace_lanes(TRACERS as u32)
        .trace_lane_bytes(16 << 10)
        .state_capacity(64 << 10)
        .checkpoint_every_inputs(300)
        .checkpoint_every(Duration::from_millis(25))
}

fn start(ring: &Path, machine: Checksum) -> Recorded<Checksum> {
    small_ring(ring)
        .build(machine)
        .unwrap_or_else(|e| panic!("child cannot record: {e}"))
}

fn record(recorded: &mut Recorded<Checksum>, seqs: Range<u64>) {
    for seq in seqs {
        recorded.apply(&input(seq));
    }
}

/// Marks the child's reports on its stdout, which it shares with libtest's own lines.
const REPORT: &str = "[child]";

/// Tells the parent `key` is `value`, on a line of its own, flushed at once.
fn report(key: &str, value: impl fmt::Display) {
    let mut out = std::io::stdout().lock();
    writeln!(out, "\n{REPORT} {key} {value}").expect("stdout");
    out.flush().expect("stdout");
}

/// The value in a report line for `key`.
fn parse_report<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    line.strip_prefix(REPORT)?
        .strip_prefix(' ')?
        .strip_prefix(key)?
        .strip_prefix(' ')
}

/// Records [`CRASH_INPUTS`] inputs, then tells the parent which thread is about to crash.
fn record_then_crash(ring: &Path, machine: Checksum) -> Recorded<Checksum> {
    let mut recorded = start(ring, machine);
    record(&mut recorded, 0..CRASH_INPUTS);
    report("tid", nix::unistd::gettid());
    let comm = std::fs::read_to_string("/proc/thread-self/comm").expect("own comm");
    report("comm", comm.trim_end());
    report("thread", std::thread::current().name().unwrap_or(""));
    recorded
}

fn record_until_killed(ring: &Path) -> ! {
    let mut recorded = start(ring, Checksum::default());
    start_tracers(&recorded);
    let mut seq = 0;
    loop {
        recorded.apply(&input(seq));
        seq += 1;
        if seq % PROGRESS_EVERY == 0 {
            report("committed", seq);
        }
    }
}

/// Starts [`TRACERS`] threads that trace forever, and returns once each has traced once.
fn start_tracers(recorded: &Recorded<Checksum>) {
    let (ready, started) = mpsc::channel();
    for thread in 0..TRACERS {
        let tracer = recorded.tracer();
        let ready = ready.clone();
        std::thread::Builder::new()
            .name(format!("tracer-{thread}"))
            .spawn(move || {
                for seq in 0u64.. {
                    trace(&tracer, thread, seq);
                    if seq == 0 {
                        ready.send(()).expect("the main thread waits");
                    }
                }
            })
            .expect("spawn");
    }
    for _ in 0..TRACERS {
        started.recv().expect("a tracer started");
    }
}

fn trace(tracer: &Tracer, thread: usize, seq: u64) {
    let (kind, level, text) = expected_trace(thread, seq);
    match kind {
        TraceKind::Event => tracer.event(level, &text),
        TraceKind::SpanEnter => tracer.span_enter(level, &text),
        TraceKind::SpanExit => tracer.span_exit(level, &text),
        TraceKind::Thread => unreachable!("the recorder writes thread records itself"),
    }
}

#[allow(unsafe_code)]
fn write_to_unmapped_address() -> ! {
    let target = std::ptr::without_provenance_mut::<u8>(FAULT_ADDR);
    // SAFETY: not safe, deliberately: the first page is never mapped, so this store faults with
    // SIGSEGV and the process dies of it; nothing observes the write.
    unsafe { target.write_volatile(1) };
    unreachable!("a write to {FAULT_ADDR:#x} returned")
}

/// Building a 16 MiB ring must fail with `NoSpace`, naming the path and the size, and leave no
/// file behind. Reports the errno behind it, then `nospace-ok BYTES`, to the parent.
fn expect_no_space(ring: &Path) {
    let result = Builder::new()
        .path(ring)
        .input_lane_bytes(16 << 20)
        .trace_lanes(1)
        .state_capacity(4096)
        .crash_capture(false)
        .counters(false)
        .build(Checksum::default());
    let error = match result {
        Ok(_) => panic!("a 16 MiB ring was created at {}", ring.display()),
        Err(error) => error,
    };
    let message = error.to_string();
    let RecorderError::NoSpace {
        path,
        bytes,
        error: cause,
    } = &error
    else {
        panic!("expected NoSpace, got {error:?}: {message}");
    };
    assert_eq!(path, ring);
    assert!(*bytes >= 16 << 20, "{bytes} bytes is not the whole ring");
    assert!(message.contains(&ring.display().to_string()), "{message}");
    assert!(message.contains(&bytes.to_string()), "{message}");
    assert!(!ring.exists(), "{} was left behind", ring.display());
    let dir = ring.parent().expect("the ring is in a directory");
    let left: Vec<_> = std::fs::read_dir(dir).expect("read dir").collect();
    assert!(left.is_empty(), "left behind: {left:?}");
    report("nospace-errno", cause.raw_os_error().unwrap_or(0));
    report("nospace-ok", bytes);
}

// ---------------------------------------------------------------------------------------------
// The parent side: running children.

/// The test binary re-executed as the child running `scenario` on `ring`, with no recorder
/// settings inherited from the environment.
fn child_command(scenario: Scenario, ring: &Path) -> Command {
    let exe = std::env::current_exe().expect("own executable");
    let mut command = Command::new(exe);
    command.args(["--exact", "child_entry", "--nocapture", "--test-threads=1"]);
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("FLIGHTREC_") {
            command.env_remove(key);
        }
    }
    command
        .env(ENV_SCENARIO, scenario.name())
        .env(ENV_RING, ring)
        .stdin(Stdio::null());
    command
}

/// A fresh directory and a ring path inside it.
fn ring_path() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("tempdir");
    let ring = dir.path().join("test.ring");
    (dir, ring)
}

/// A child that ran to its end, and what it left.
struct Finished {
    _dir: tempfile::TempDir,
    ring: PathBuf,
    status: ExitStatus,
    stdout: String,
    stderr: String,
}

impl fmt::Display for Finished {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "child {}\n--- stdout\n{}--- stderr\n{}",
            self.status, self.stdout, self.stderr
        )
    }
}

impl Finished {
    /// The value of the child's `key value` report line.
    fn reported(&self, key: &str) -> &str {
        self.stdout
            .lines()
            .find_map(|line| parse_report(line, key))
            .unwrap_or_else(|| panic!("the child did not report `{key}`\n{self}"))
    }

    fn open(&self) -> Ring {
        Ring::open(&self.ring).unwrap_or_else(|e| panic!("{e}\n{self}"))
    }
}

/// Runs `scenario` in a child to its end.
fn run_child(scenario: Scenario) -> Finished {
    let (dir, ring) = ring_path();
    run_command(child_command(scenario, &ring), dir, ring).expect("spawn the child")
}

fn run_command(
    mut command: Command,
    dir: tempfile::TempDir,
    ring: PathBuf,
) -> std::io::Result<Finished> {
    let output = command.output()?;
    Ok(Finished {
        _dir: dir,
        ring,
        status: output.status,
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    })
}

/// Runs `setup` in the forked child right before it executes the test binary.
#[allow(unsafe_code)]
fn before_exec(
    command: &mut Command,
    setup: impl FnMut() -> std::io::Result<()> + Send + Sync + 'static,
) {
    // SAFETY: every `setup` passed here only makes system calls on data prepared before the fork
    // (paths short enough for nix's stack buffers): no allocation and no locks, which is what
    // code between fork and exec in a multithreaded parent may do.
    unsafe { command.pre_exec(setup) };
}

// ---------------------------------------------------------------------------------------------
// The parent side: checking what a ring kept.

/// Checks a recovered lane against `expected(seq)`, the payload its writer wrote as record `seq`:
/// the retained records run without a gap up to the last record written and carry exactly their
/// payloads; every loss is an overwritten prefix; nothing is corrupt; and the only torn slots are
/// those of the one record that was in flight. Returns the first retained sequence number.
fn verify_lane(
    what: &str,
    lane: &LaneRecords,
    info: &LaneInfo,
    expected: impl Fn(u64) -> Vec<u8>,
) -> u64 {
    let first = lane.first().map_or(lane.recorded, |r| r.seq);
    let seqs: Vec<u64> = lane.seqs().collect();
    let run: Vec<u64> = (first..lane.recorded).collect();
    assert!(
        seqs == run,
        "{what}: retained {} records, not the run {first}..{}; gaps {:?}",
        seqs.len(),
        lane.recorded,
        lane.gaps
    );
    for record in lane {
        assert!(
            record.payload == expected(record.seq),
            "{what}: payload of record {}",
            record.seq
        );
    }
    assert!(
        lane.corrupt.is_empty(),
        "{what}: corrupt {:?}",
        lane.corrupt
    );
    assert_eq!(lane.overwritten, 0, "{what}: a dead writer overwrote slots");
    assert_eq!(lane.retained() + lane.lost(), lane.recorded, "{what}");
    assert_eq!(
        lane.lost(),
        first,
        "{what}: only the oldest records are lost"
    );
    let Some(last) = lane.last() else {
        assert!(lane.torn.is_empty(), "{what}: torn {:?}", lane.torn);
        return first;
    };
    let in_flight = last.pos + slots_for(last.payload.len() as u32);
    let span = slots_for(expected(lane.recorded).len() as u32);
    for &torn in &lane.torn {
        let offset = (torn + info.slot_count - in_flight % info.slot_count) % info.slot_count;
        assert!(
            offset < span,
            "{what}: slot {torn} is torn, but only record {} was in flight, in the {span} slots \
             from slot {}",
            lane.recorded,
            in_flight % info.slot_count
        );
    }
    first
}

/// Recovers the input lane and checks every record, every checkpoint, and a replay from the
/// replay base to the last input. Returns the lane.
fn verify_inputs(ring: &Ring) -> LaneRecords {
    let info = &ring.header().lanes[0];
    let lane = recover_lane(ring, info);
    let first = verify_lane("input lane", &lane, info, encoded_input);
    for record in &lane {
        let decoded = Checksum::decode_input(record.payload).expect("inputs decode");
        assert_eq!(decoded, input(record.seq));
    }
    verify_checkpoints_and_replay(ring, &lane, first);
    lane
}

/// Every valid checkpoint holds exactly the state after its `input_seq` inputs; the newest lies
/// inside the retained window; and replay from the replay base reproduces the state after the
/// last recorded input.
fn verify_checkpoints_and_replay(ring: &Ring, inputs: &LaneRecords, first: u64) {
    let sums = checksums_upto(inputs.recorded);
    let mut valid = Vec::new();
    for found in recover_checkpoints(ring) {
        match found {
            Ok(checkpoint) => valid.push(checkpoint),
            // The slot being rewritten when the writer stopped, or never written.
            Err((slot, problem)) => {
                assert_eq!(problem, CheckpointProblem::Empty, "checkpoint slot {slot}")
            }
        }
    }
    assert!(!valid.is_empty(), "no valid checkpoint");
    for checkpoint in &valid {
        let at = checkpoint.header.input_seq;
        assert!(at <= inputs.recorded, "checkpoint at {at} is in the future");
        let state = Checksum::decode_state(&checkpoint.state).expect("checkpoints decode");
        assert_eq!(
            (state.count, state.sum),
            (at, sums[at as usize]),
            "state of the checkpoint at input {at}"
        );
    }
    let newest = valid
        .iter()
        .max_by_key(|c| c.header.generation)
        .expect("nonempty");
    assert!(
        (first..=inputs.recorded).contains(&newest.header.input_seq),
        "window invariant: newest checkpoint at {} but inputs {first}..{} retained",
        newest.header.input_seq,
        inputs.recorded
    );
    let base = replay_base(inputs, &valid).expect("a replay base");
    let from = valid
        .iter()
        .find(|c| c.header.input_seq == base)
        .expect("the base is a checkpoint");
    let mut machine = Checksum::decode_state(&from.state).expect("checkpoints decode");
    for record in inputs.iter().filter(|r| r.seq >= base) {
        let input = Checksum::decode_input(record.payload).expect("inputs decode");
        let tick = Tick {
            seq: record.seq,
            unix_ns: 0,
        };
        machine.apply(&input, tick);
    }
    assert_eq!(
        (machine.count, machine.sum),
        (inputs.recorded, sums[inputs.recorded as usize]),
        "replay from {base}"
    );
}

/// Recovers every trace lane and checks every event against what its thread traced. Returns,
/// by tracer thread, the events its lane recorded.
fn verify_trace_lanes(ring: &Ring) -> Vec<u64> {
    let mut recorded = vec![0; TRACERS];
    let trace_lanes = ring.header().lanes.iter();
    for info in trace_lanes.filter(|l| l.kind == LaneKind::Trace) {
        let name = ring.lane_name(info);
        let lane = recover_lane(ring, info);
        if name.is_empty() {
            assert_eq!(lane.recorded, 0, "an unclaimed lane holds records");
            continue;
        }
        let thread: usize = name
            .strip_prefix("tracer-")
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("lane of unexpected thread {name:?}"));
        let first = lane.first().expect("each tracer traced");
        let tid = TraceEvent::decode(first.payload)
            .expect("events decode")
            .tid;
        assert_ne!(tid, 0);
        // Record 0 names the thread that claimed the lane; its events follow.
        verify_lane(&name, &lane, info, |seq| match seq {
            0 => thread_record_payload(&name, tid),
            _ => expected_trace_payload(thread, tid, seq - 1),
        });
        for record in &lane {
            TraceEvent::decode(record.payload).expect("events decode");
        }
        recorded[thread] = lane.recorded.saturating_sub(1);
    }
    recorded
}

/// The record a thread named `name` writes when it claims a lane.
fn thread_record_payload(name: &str, tid: u32) -> Vec<u8> {
    let mut payload = encode_header(TraceKind::Thread, Level::Info, 0, tid).to_vec();
    payload.extend_from_slice(name.as_bytes());
    payload
}

/// The record payload of event `seq` of tracer `thread`, whose kernel thread id is `tid`.
fn expected_trace_payload(thread: usize, tid: u32, seq: u64) -> Vec<u8> {
    let (kind, level, message) = expected_trace(thread, seq);
    let mut payload = encode_header(kind, level, 0, tid).to_vec();
    payload.extend_from_slice(message.as_bytes());
    payload
}

/// The committed crash record; the child reported which thread was about to crash.
fn crash_record(ring: &Ring, child: &Finished) -> CrashRecord {
    let crash = ring
        .crash()
        .unwrap_or_else(|e| panic!("{e}\n{child}"))
        .unwrap_or_else(|| panic!("no crash record\n{child}"));
    let tid: u32 = child.reported("tid").parse().expect("a tid");
    assert_eq!(crash.tid, tid, "the crashing thread");
    assert!(crash.time_unix_ns >= ring.header().created_unix_ns);
    crash
}

/// Asserts that the child died of `signal`, chained to the default action, after the handler
/// recorded it with `fault_addr` as the crash of the thread that raised it.
fn assert_died_of_signal(child: &Finished, signal: i32, code: Option<i32>, fault_addr: u64) {
    assert_eq!(child.status.signal(), Some(signal), "{child}");
    let ring = child.open();
    assert_eq!(ring.fate(), Fate::Crashed, "{child}");
    let crash = crash_record(&ring, child);
    let CrashCause::Signal {
        signal: recorded,
        code: recorded_code,
        fault_addr: recorded_addr,
    } = crash.cause
    else {
        panic!("expected a signal, found {crash:?}\n{child}");
    };
    assert_eq!((recorded, recorded_addr), (signal, fault_addr), "{crash:?}");
    if let Some(code) = code {
        assert_eq!(recorded_code, code, "si_code");
    }
    // A signal handler cannot ask std for the thread's name; it records the kernel's.
    assert_eq!(crash.thread_name, child.reported("comm"), "{crash:?}");
    let name = flightrec_replayer::signal_name(signal);
    assert!(crash.message.contains(name), "{crash:?}");
    assert_all_inputs_retained(&ring, CRASH_INPUTS);
}

/// Every one of `count` inputs is retained, nothing is torn, and the checks of
/// [`verify_inputs`] hold.
fn assert_all_inputs_retained(ring: &Ring, count: u64) {
    let inputs = verify_inputs(ring);
    assert_eq!((inputs.retained(), inputs.recorded), (count, count));
    assert!(inputs.torn.is_empty(), "torn {:?}", inputs.torn);
    assert_eq!(verify_trace_lanes(ring), vec![0; TRACERS]);
}

// ---------------------------------------------------------------------------------------------
// Deaths.

#[test]
fn sigkill_at_random_moments_leaves_a_verified_window_that_replays() {
    let mut rng = rand_pcg::Pcg64::seed_from_u64(0xf11e_5eed);
    for run in 0..KILL_RUNS {
        let delay = Duration::from_millis(rng.gen_range(0..=MAX_KILL_DELAY_MS));
        kill_and_verify(run, delay);
    }
}

/// Starts a recording child, kills it `delay` after its first progress report, and checks the
/// ring against the inputs the child reported committed.
fn kill_and_verify(run: usize, delay: Duration) {
    let (_dir, ring_path) = ring_path();
    let mut child = child_command(Scenario::RecordUntilKilled, &ring_path)
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn the child");
    let stdout = child.stdout.take().expect("piped");
    let (progress, first_progress) = mpsc::channel();
    let reader = std::thread::spawn(move || {
        let mut committed = 0;
        for line in BufReader::new(stdout).lines() {
            let line = line.expect("child stdout");
            if let Some(n) = parse_report(&line, "committed") {
                committed = n.parse::<u64>().expect("a count");
                let _ = progress.send(());
            }
        }
        committed
    });
    let started = first_progress.recv_timeout(Duration::from_secs(30));
    if started.is_ok() {
        std::thread::sleep(delay);
    }
    child.kill().expect("SIGKILL the child");
    // Dead but not yet reaped, the writer is already no longer running.
    let deadline = Instant::now() + Duration::from_secs(30);
    while flightrec_schemas::process::running_start_ticks(child.id()).is_some() {
        assert!(Instant::now() < deadline, "the child outlived SIGKILL");
        std::thread::sleep(Duration::from_millis(5));
    }
    let unreaped = Ring::open(&ring_path).map(|ring| ring.fate());
    let status = child.wait().expect("reap the child");
    let committed = reader.join().expect("the reader");
    let context = format!("run {run}, killed {delay:?} after its first report, {status}");
    started.unwrap_or_else(|_| panic!("{context}: no progress within 30 s"));
    assert_eq!(status.signal(), Some(libc::SIGKILL), "{context}");

    let ring = Ring::open(&ring_path).unwrap_or_else(|e| panic!("{context}: {e}"));
    assert_eq!(ring.fate(), Fate::Died, "{context}");
    assert_eq!(
        unreaped.ok(),
        Some(Fate::Died),
        "{context}, before it was reaped"
    );
    assert_eq!(
        ring.crash().map_err(|e| e.to_string()),
        Ok(None),
        "{context}"
    );
    let inputs = verify_inputs(&ring);
    assert!(
        inputs.recorded >= committed,
        "{context}: {} inputs recorded, but the child had committed {committed}",
        inputs.recorded
    );
    let traced = verify_trace_lanes(&ring);
    assert!(
        traced.iter().all(|&n| n >= 1),
        "{context}: traced {traced:?}"
    );
    println!(
        "{context}: {} inputs recorded ({committed} reported), {} retained, torn slots {:?}; \
         events traced {traced:?}",
        inputs.recorded,
        inputs.retained(),
        inputs.torn
    );
}

#[test]
fn sigsegv_is_recorded_with_its_fault_address_and_still_kills_the_process() {
    let child = run_child(Scenario::Segfault);
    assert_died_of_signal(&child, libc::SIGSEGV, Some(SEGV_MAPERR), FAULT_ADDR as u64);
}

#[test]
fn abort_is_recorded_as_sigabrt_and_still_kills_the_process() {
    let child = run_child(Scenario::Abort);
    assert_died_of_signal(&child, libc::SIGABRT, None, 0);
}

#[test]
fn a_panic_in_apply_is_recorded_after_its_input() {
    let child = run_child(Scenario::PanicInApply);
    assert_eq!(child.status.code(), Some(101), "{child}");
    let ring = child.open();
    assert_eq!(ring.fate(), Fate::Crashed, "{child}");
    let crash = crash_record(&ring, &child);
    let CrashCause::Panic { location } = &crash.cause else {
        panic!("expected a panic, found {crash:?}\n{child}");
    };
    assert!(location.contains("crash.rs"), "{location}");
    assert_eq!(crash.message, format!("poisoned input {CRASH_INPUTS}"));
    assert_eq!(crash.thread_name, child.reported("thread"), "{crash:?}");
    // Recorded, then applied: the input that panicked is the last one kept.
    assert_all_inputs_retained(&ring, CRASH_INPUTS + 1);
}

#[test]
fn a_caught_panic_in_another_thread_does_not_mark_the_ring_crashed() {
    let child = run_child(Scenario::CaughtPanicThenFinish);
    assert!(child.status.success(), "{child}");
    let ring = child.open();
    assert_eq!(ring.fate(), Fate::Exited, "{child}");
    // The caught panic stays on record as evidence, without deciding the fate.
    let crash = ring.crash().expect("a readable crash record");
    let crash = crash.unwrap_or_else(|| panic!("the caught panic was not recorded\n{child}"));
    assert_eq!(crash.message, "deliberate panic in a worker thread");
    assert_eq!(crash.thread_name, "doomed-worker");
    assert_clean_finish(&ring, 2 * CRASH_INPUTS);
}

#[test]
fn finish_marks_the_ring_exited_with_a_final_checkpoint_at_the_last_input() {
    let child = run_child(Scenario::Finish);
    assert!(child.status.success(), "{child}");
    let ring = child.open();
    assert_eq!(ring.fate(), Fate::Exited, "{child}");
    assert_eq!(ring.crash().map_err(|e| e.to_string()), Ok(None));
    assert_clean_finish(&ring, CLEAN_INPUTS);
}

/// After `finish` with `count` inputs: all of them recorded, none torn, an exit time, and the
/// newest checkpoint taken after the last input.
fn assert_clean_finish(ring: &Ring, count: u64) {
    assert!(ring.live().exited_unix_ns >= ring.header().created_unix_ns);
    let inputs = verify_inputs(ring);
    assert_eq!(inputs.recorded, count);
    assert!(inputs.torn.is_empty(), "torn {:?}", inputs.torn);
    let newest = recover_checkpoints(ring)
        .into_iter()
        .filter_map(Result::ok)
        .max_by_key(|c| c.header.generation)
        .expect("a checkpoint");
    assert_eq!(newest.header.input_seq, count, "the final checkpoint");
    assert_eq!(replay_base(&inputs, &[newest]), Some(count));
}

/// The state a writer leaves when it dies while publishing a record of several slots: the
/// continuation stamps go first, in order, the head stamp last, so the head and the later
/// continuations are unstamped while the first continuation is published. That is still one torn
/// record, and `LaneRecords::torn` promises to count it once.
#[test]
fn a_record_torn_while_publishing_its_continuations_counts_once() {
    let (_dir, path) = ring_path();
    let mut recorded = build_in_process(&path).expect("a ring");
    record(&mut recorded, 0..150);
    recorded.finish();
    let info = Ring::open(&path).unwrap().header().lanes[0];
    let (last_seq, last_pos) = {
        let lane = recover_lane(&Ring::open(&path).unwrap(), &info);
        let last = lane.last().expect("records");
        assert_eq!(slots_for(last.payload.len() as u32), 4);
        (last.seq, last.pos)
    };
    let file = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    for slot in [0, 2, 3] {
        let index = (last_pos + slot) % info.slot_count;
        let stamp = info.slots_offset() + index * SLOT_SIZE;
        file.write_all_at(&0u64.to_le_bytes(), stamp).unwrap();
    }
    let lane = recover_lane(&Ring::open(&path).unwrap(), &info);
    assert_eq!(lane.recorded, last_seq, "the torn record is not retained");
    assert_eq!(
        lane.torn,
        vec![last_pos % info.slot_count],
        "one torn record"
    );
}

// ---------------------------------------------------------------------------------------------
// File safety.

/// A recorder for the in-process tests: it installs nothing process-wide.
fn build_in_process(ring: &Path) -> Result<Recorded<Checksum>, RecorderError> {
    small_ring(ring)
        .crash_capture(false)
        .counters(false)
        .build(Checksum::default())
}

/// Building at `ring` fails with `AlreadyExists` naming it.
fn assert_refused_as_existing(ring: &Path) {
    let error = match build_in_process(ring) {
        Ok(_) => panic!("a ring was created over {}", ring.display()),
        Err(error) => error,
    };
    assert!(
        matches!(&error, RecorderError::AlreadyExists { path } if path == ring),
        "{error:?}"
    );
    assert!(error.to_string().contains(&ring.display().to_string()));
}

#[test]
fn creating_over_an_existing_file_fails_and_leaves_its_bytes_untouched() {
    let (_dir, ring) = ring_path();
    let evidence = b"the evidence of an earlier crash".repeat(200);
    std::fs::write(&ring, &evidence).unwrap();
    assert_refused_as_existing(&ring);
    assert_eq!(std::fs::read(&ring).unwrap(), evidence);
}

#[test]
fn a_symlink_at_the_ring_path_is_not_followed() {
    let (dir, ring) = ring_path();
    let target = dir.path().join("target");
    std::fs::write(&target, b"not yours").unwrap();
    std::os::unix::fs::symlink(&target, &ring).unwrap();
    assert_refused_as_existing(&ring);
    assert_eq!(std::fs::read(&target).unwrap(), b"not yours");
    assert!(ring.symlink_metadata().unwrap().file_type().is_symlink());

    // A dangling link must not create its target either.
    let (dir, ring) = ring_path();
    let missing = dir.path().join("missing");
    std::os::unix::fs::symlink(&missing, &ring).unwrap();
    assert_refused_as_existing(&ring);
    assert!(!missing.exists(), "the link was followed");
}

#[test]
fn a_new_ring_file_is_readable_by_its_owner_only() {
    let (_dir, ring) = ring_path();
    let recorded = build_in_process(&ring).expect("a ring");
    let mode = std::fs::metadata(&ring).unwrap().permissions().mode();
    assert_eq!(mode & 0o7777, 0o600, "mode {mode:o}");
    recorded.finish();
}

#[test]
fn a_full_tmpfs_fails_with_no_space_and_leaves_no_file() {
    let (dir, ring) = ring_path();
    let mount_point = dir.path().to_owned();
    let mut command = child_command(Scenario::ExpectNoSpace, &ring);
    before_exec(&mut command, move || mount_small_tmpfs(&mount_point));
    match run_command(command, dir, ring) {
        Err(e) if e.raw_os_error() == Some(libc::EPERM) => {
            println!("skipped: needs CAP_SYS_ADMIN to mount a small tmpfs ({e})");
        }
        Err(e) => panic!("cannot mount a small tmpfs: {e}"),
        Ok(child) => assert_no_space_reported(&child, libc::ENOSPC),
    }
}

/// In a mount namespace of its own, mounts a 1 MiB tmpfs on `dir`.
fn mount_small_tmpfs(dir: &Path) -> std::io::Result<()> {
    use nix::mount::{mount, MsFlags};
    nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNS)?;
    let private = MsFlags::MS_REC | MsFlags::MS_PRIVATE;
    mount(None::<&str>, "/", None::<&str>, private, None::<&str>)?;
    mount(
        Some("tmpfs"),
        dir,
        Some("tmpfs"),
        MsFlags::empty(),
        Some("size=1m"),
    )?;
    Ok(())
}

#[test]
fn a_file_size_limit_fails_with_no_space_and_leaves_no_file() {
    let (dir, ring) = ring_path();
    let mut command = child_command(Scenario::ExpectNoSpace, &ring);
    before_exec(&mut command, limit_file_size);
    let child = run_command(command, dir, ring).expect("spawn the child");
    assert_no_space_reported(&child, libc::EFBIG);
    assert!(!child.ring.exists());
}

/// Limits files to 1 MiB, with SIGXFSZ ignored so that growing past it fails with EFBIG.
#[allow(unsafe_code)]
fn limit_file_size() -> std::io::Result<()> {
    use nix::sys::signal::{signal, SigHandler, Signal};
    nix::sys::resource::setrlimit(nix::sys::resource::Resource::RLIMIT_FSIZE, 1 << 20, 1 << 20)?;
    // SAFETY: ignoring a signal installs no handler, so nothing can run at the wrong moment.
    unsafe { signal(Signal::SIGXFSZ, SigHandler::SigIgn) }?;
    Ok(())
}

/// The child got `NoSpace` caused by `errno`, checked it, and lived.
fn assert_no_space_reported(child: &Finished, errno: i32) {
    assert_ne!(child.status.signal(), Some(libc::SIGBUS), "{child}");
    assert!(child.status.success(), "{child}");
    assert_eq!(
        child.reported("nospace-errno"),
        errno.to_string(),
        "{child}"
    );
    let bytes: u64 = child.reported("nospace-ok").parse().expect("a size");
    assert!(bytes >= 16 << 20);
}
