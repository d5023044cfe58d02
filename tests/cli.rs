//! End-to-end tests of the `flightrec` binary: the demo crashes deterministically and leaves a
//! ring file, `inspect` reports it in text and JSON, a live or SIGKILLed writer is reported as
//! such, bad files are refused with exit code 2 and one line of stderr, and an existing ring file
//! is never overwritten.
//!
//! Every ring file goes to a fresh temporary directory; nothing here touches `/dev/shm`.

use std::ffi::OsStr;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use rand::{Rng as _, SeedableRng as _};
use serde_json::Value;
use tempfile::TempDir;

/// The longest any single command may take before the test gives up on it.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(60);
/// The longest the live-service test waits for the service to show the expected progress.
const SERVICE_TIMEOUT: Duration = Duration::from_secs(20);

/// The input whose audit finds the broken books, for seed 42 (and for most seeds: audits run
/// every 20,000 inputs, and the 65,537th account is opened between inputs 360,000 and 380,000).
const SEED_42_CRASH_INPUT: u64 = 379_999;
/// A seed whose 65,537th account is opened before input 360,000, so its audit fails one audit
/// period earlier than seed 42's. Found by trying seeds; it depends on the traffic generator.
const EARLY_SEED: u64 = 113;

// ---------------------------------------------------------------------------------------------
// Running the binary

fn flightrec() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_flightrec"));
    command.stdin(Stdio::null()).env("RUST_BACKTRACE", "0");
    command
}

/// What a finished command printed, and how it ended.
struct Output {
    status: ExitStatus,
    stdout: String,
    stderr: String,
}

impl Output {
    fn code(&self) -> Option<i32> {
        self.status.code()
    }

    /// Panics with everything the command printed unless it exited with `code`.
    fn expect_code(&self, code: i32, what: &str) -> &Output {
        assert_eq!(
            self.code(),
            Some(code),
            "{what}: expected exit code {code}, got {:?}\n--- stdout\n{}--- stderr\n{}",
            self.status,
            self.stdout,
            self.stderr
        );
        self
    }

    fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}):\n{}", self.stdout))
    }
}

/// Runs `flightrec ARGS` to completion, killing it if it takes longer than [`COMMAND_TIMEOUT`].
fn run<I, S>(args: I) -> Output
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let mut command = flightrec();
    command.args(args);
    let shown = format!("{command:?}");
    let child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {shown}: {e}"));
    let pid = child.id();
    let (send, receive) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = send.send(child.wait_with_output());
    });
    match receive.recv_timeout(COMMAND_TIMEOUT) {
        Ok(output) => {
            let output = output.unwrap_or_else(|e| panic!("waiting for {shown}: {e}"));
            Output {
                status: output.status,
                stdout: String::from_utf8(output.stdout).expect("stdout is UTF-8"),
                stderr: String::from_utf8(output.stderr).expect("stderr is UTF-8"),
            }
        }
        Err(_) => {
            // The waiting thread still owns the child, so it has not been reaped: the pid is ours.
            let _ = nix::sys::signal::kill(pid_of(pid), nix::sys::signal::Signal::SIGKILL);
            panic!("{shown} did not finish within {COMMAND_TIMEOUT:?}");
        }
    }
}

fn pid_of(pid: u32) -> nix::unistd::Pid {
    nix::unistd::Pid::from_raw(i32::try_from(pid).expect("pids fit in i32"))
}

/// `flightrec inspect --json FILE`, which must succeed.
fn inspect_json(ring: &Path) -> Value {
    run([
        OsStr::new("inspect"),
        OsStr::new("--json"),
        ring.as_os_str(),
    ])
    .expect_code(0, "inspect --json")
    .json()
}

/// Runs the whole demo with `seed` as fast as possible into a new directory below `dir`, and
/// returns its stdout and the ring file it names.
fn demo(dir: &Path, seed: u64) -> (Output, PathBuf) {
    let rings = dir.join(format!("seed-{seed}"));
    let output = run([
        OsStr::new("demo"),
        OsStr::new("--no-tui"),
        OsStr::new("--rate"),
        OsStr::new("0"),
        OsStr::new("--seed"),
        OsStr::new(&seed.to_string()),
        OsStr::new("--dir"),
        rings.as_os_str(),
    ]);
    output.expect_code(0, "demo");
    let ring = ring_path_in_demo_output(&output.stdout);
    assert!(
        ring.starts_with(&rings),
        "the demo's ring file {} is not in --dir {}",
        ring.display(),
        rings.display()
    );
    (output, ring)
}

/// The path on the line after "recording into" in the demo's report.
fn ring_path_in_demo_output(stdout: &str) -> PathBuf {
    let mut lines = stdout.lines();
    lines
        .by_ref()
        .find(|l| l.trim_end().ends_with("recording into"))
        .unwrap_or_else(|| panic!("no \"recording into\" line in the demo's output:\n{stdout}"));
    let path = lines
        .next()
        .unwrap_or_else(|| panic!("nothing after \"recording into\":\n{stdout}"))
        .trim();
    assert!(
        path.ends_with(".ring"),
        "the demo's ring file {path:?} does not end in .ring"
    );
    PathBuf::from(path)
}

/// A small real ring file: the service stopped cleanly after 10 inputs.
fn small_ring(dir: &Path) -> PathBuf {
    let ring = dir.join("small.ring");
    run([
        OsStr::new("demo"),
        OsStr::new("--service"),
        OsStr::new("--rate"),
        OsStr::new("0"),
        OsStr::new("--max-inputs"),
        OsStr::new("10"),
        OsStr::new("--ring"),
        ring.as_os_str(),
    ])
    .expect_code(0, "demo --service --max-inputs 10");
    ring
}

fn u64_at(value: &Value, key: &str) -> u64 {
    value[key]
        .as_u64()
        .unwrap_or_else(|| panic!("`{key}` is not a non-negative integer in {value}"))
}

fn str_at<'a>(value: &'a Value, key: &str) -> &'a str {
    value[key]
        .as_str()
        .unwrap_or_else(|| panic!("`{key}` is not a string in {value}"))
}

fn array_at<'a>(value: &'a Value, key: &str) -> &'a [Value] {
    value[key]
        .as_array()
        .unwrap_or_else(|| panic!("`{key}` is not an array in {value}"))
}

/// The lane named `name`.
fn lane<'a>(summary: &'a Value, name: &str) -> Option<&'a Value> {
    array_at(summary, "lanes")
        .iter()
        .find(|l| l["name"].as_str() == Some(name))
}

/// The facts of a crashed run that depend only on the seed: where the input lane ends, the
/// crash message, and every checkpoint's position, size and state hash.
fn deterministic_part(summary: &Value) -> (Value, Value, Vec<(Value, Value, Value)>) {
    let input = &summary["lanes"][0];
    let input = serde_json::json!({
        "recorded": input["recorded"],
        "retained": input["retained"],
        "first_seq": input["first_seq"],
        "last_seq": input["last_seq"],
    });
    let checkpoints = array_at(summary, "checkpoints")
        .iter()
        .map(|c| (c["seq"].clone(), c["bytes"].clone(), c["hash"].clone()))
        .collect();
    (input, summary["crash"]["message"].clone(), checkpoints)
}

// ---------------------------------------------------------------------------------------------
// 1. The demo

#[test]
fn the_demo_crashes_and_reports_what_the_ring_file_kept() {
    let tmp = TempDir::new().unwrap();
    let (output, ring) = demo(tmp.path(), 42);
    let out = &output.stdout;

    assert!(
        ring.is_file(),
        "{} does not exist after the demo",
        ring.display()
    );
    assert!(
        out.contains("the service panicked and exited with code 101"),
        "the report does not say the service panicked:\n{out}"
    );
    assert!(
        out.contains(&format!("audit failed at input {SEED_42_CRASH_INPUT}")),
        "the report does not show the crash cause:\n{out}"
    );
    // The service's own "ledger service pid ..." banner is not repeated in the report.
    assert!(!out.contains("ledger service pid"), "{out}");
    assert!(out.contains("what survived in the ring file:"), "{out}");
    assert!(
        out.contains(&format!("  flightrec inspect {}", ring.display())),
        "{out}"
    );
    // The replayed story: the crash input replayed, verified, and the input that broke the books.
    assert!(out.contains("2 of 2 recorded state hashes match"), "{out}");
    assert!(
        out.lines()
            .any(|l| l.contains(&format!("#{SEED_42_CRASH_INPUT} "))
                && l.contains("Audit")
                && l.ends_with("← panicked")),
        "{out}"
    );
    assert!(
        out.contains(
            "the invariant (holdings = deposits − withdrawals) first broke at input #364225: Open"
        ),
        "{out}"
    );

    // The lane table: a header and an input row whose counts add up.
    assert!(
        out.lines().any(|l| l.split_whitespace().collect::<Vec<_>>()
            == [
                "lanes", "lane", "kind", "recorded", "retained", "lost", "torn", "corrupt", "gaps",
                "dropped"
            ]),
        "no lane table header:\n{out}"
    );
    let input_row: Vec<&str> = out
        .lines()
        .map(str::split_whitespace)
        .map(Iterator::collect)
        .find(|words: &Vec<&str>| words.first() == Some(&"input") && words.get(1) == Some(&"input"))
        .unwrap_or_else(|| panic!("no input lane row:\n{out}"));
    let counts: Vec<u64> = input_row[2..]
        .iter()
        .map(|w| {
            w.parse()
                .unwrap_or_else(|_| panic!("{w:?} in {input_row:?}"))
        })
        .collect();
    assert_eq!(counts.len(), 7, "{input_row:?}");
    let (recorded, retained, lost) = (counts[0], counts[1], counts[2]);
    assert_eq!(recorded, SEED_42_CRASH_INPUT + 1, "{input_row:?}");
    assert!(retained > 0, "{input_row:?}");
    assert_eq!(retained + lost, recorded, "{input_row:?}");
    assert!(out.contains("status      crashed: panic at "), "{out}");
}

// ---------------------------------------------------------------------------------------------
// 2. Determinism

#[test]
fn the_same_seed_crashes_at_the_same_input_and_another_seed_differs() {
    let tmp = TempDir::new().unwrap();
    let first = inspect_json(&demo(&tmp.path().join("a"), 42).1);
    let second = inspect_json(&demo(&tmp.path().join("b"), 42).1);
    let other = inspect_json(&demo(tmp.path(), EARLY_SEED).1);

    let recorded = |s: &Value| u64_at(&s["lanes"][0], "recorded");
    assert_eq!(recorded(&first), recorded(&second));
    assert_eq!(recorded(&first), SEED_42_CRASH_INPUT + 1);
    // Not just the crash point: the retained window, the cause and every checkpoint's state.
    assert_eq!(deterministic_part(&first), deterministic_part(&second));

    assert_ne!(
        recorded(&first),
        recorded(&other),
        "seed {EARLY_SEED} was chosen to crash one audit earlier than seed 42; has the traffic \
         generator changed?"
    );
    assert_ne!(first["crash"]["message"], other["crash"]["message"]);
    let hashes = |s: &Value| deterministic_part(s).2;
    assert_ne!(hashes(&first), hashes(&other));
}

// ---------------------------------------------------------------------------------------------
// 3. inspect --json on a crashed ring

#[test]
fn inspect_json_describes_the_crashed_demo() {
    let tmp = TempDir::new().unwrap();
    let (_, ring) = demo(tmp.path(), 42);
    let s = inspect_json(&ring);

    assert_eq!(s["path"].as_str(), Some(ring.to_str().unwrap()));
    assert_eq!(s["format_version"].as_u64(), Some(2));
    assert_eq!(str_at(&s["machine"], "name"), "ledger");
    assert!(s["machine"]["version"].is_u64(), "{}", s["machine"]);
    assert_eq!(str_at(&s, "status"), "crashed");
    assert!(s["crash_error"].is_null(), "{}", s["crash_error"]);
    assert!(s["exited_unix_ns"].is_null());
    assert!(u64_at(&s, "pid") > 0);

    let crash = &s["crash"];
    assert_eq!(str_at(crash, "kind"), "panic");
    assert!(
        str_at(crash, "message").starts_with("audit failed at input "),
        "{crash}"
    );
    assert_eq!(str_at(crash, "thread"), "main");
    assert!(str_at(crash, "location").contains("ledger.rs"), "{crash}");
    assert!(u64_at(crash, "time_unix_ns") >= u64_at(&s, "created_unix_ns"));

    let lanes = array_at(&s, "lanes");
    let input = &lanes[0];
    assert_eq!(str_at(input, "name"), "input");
    assert_eq!(str_at(input, "kind"), "input");
    for lane in lanes {
        for key in ["recorded", "retained", "lost", "torn", "corrupt", "gaps"] {
            u64_at(lane, key);
        }
        assert_eq!(
            u64_at(lane, "retained") + u64_at(lane, "lost"),
            u64_at(lane, "recorded"),
            "{lane}"
        );
        assert_eq!(u64_at(lane, "torn") + u64_at(lane, "corrupt"), 0, "{lane}");
    }
    // The ring kept the input that crashed: the last one recorded is the one the panic names.
    let last = u64_at(input, "last_seq");
    assert_eq!(last + 1, u64_at(input, "recorded"));
    assert!(str_at(crash, "message").starts_with(&format!("audit failed at input {last}:")));

    let traces = &lanes[1..];
    assert!(!traces.is_empty());
    assert!(traces.iter().all(|l| l["kind"] == "trace"), "{lanes:?}");
    let busy: Vec<&str> = traces
        .iter()
        .filter(|l| u64_at(l, "retained") > 0)
        .map(|l| str_at(l, "name"))
        .collect();
    // The main thread and at least one worker. (Which workers keep their own name is a matter of
    // timing: a lane freed by a worker that exits while the panic unwinds is taken over, and
    // renamed, by the next thread that traces; the SIGKILL test checks both worker names.)
    assert!(
        busy.len() >= 2,
        "fewer than two trace lanes hold events: {busy:?}"
    );
    assert!(busy.contains(&"main"), "{busy:?}");
    assert!(
        busy.iter()
            .all(|n| ["main", "settlement", "reporter"].contains(n)),
        "{busy:?}"
    );
    for unused in traces.iter().filter(|l| u64_at(l, "recorded") == 0) {
        assert_eq!(str_at(unused, "name"), "(unused)");
    }

    let checkpoints = array_at(&s, "checkpoints");
    assert!(!checkpoints.is_empty());
    let mut previous = None;
    for c in checkpoints {
        let seq = u64_at(c, "seq");
        assert!(u64_at(c, "bytes") > 0, "{c}");
        assert!(seq <= u64_at(input, "recorded"), "{c}");
        assert!(
            previous < Some(seq),
            "checkpoints are not oldest first: {checkpoints:?}"
        );
        previous = Some(seq);
        let counters = c["counters"]
            .as_object()
            .unwrap_or_else(|| panic!("no counters object in {c}"));
        for key in [
            "task_clock_ns",
            "page_faults",
            "context_switches",
            "instructions",
            "cycles",
        ] {
            let value = counters
                .get(key)
                .unwrap_or_else(|| panic!("no counter `{key}` in {c}"));
            assert!(value.is_null() || value.is_u64(), "{key}: {value}");
        }
    }
    let replay_from = u64_at(&s, "replay_from");
    assert!(checkpoints.iter().any(|c| u64_at(c, "seq") == replay_from));
    assert!(replay_from >= u64_at(input, "first_seq"));

    let losses = &s["losses"];
    for key in [
        "trace_dropped_no_lane",
        "trace_dropped_reentrant",
        "inputs_unencodable",
        "checkpoints_failed",
    ] {
        assert_eq!(u64_at(losses, key), 0, "{losses}");
    }
}

// ---------------------------------------------------------------------------------------------
// 4. A live service, read while it runs, then killed with SIGKILL

/// A child that is killed and reaped if the test fails before it does so itself.
struct Reaped(Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        // `Child` knows when it has been reaped, so this never signals a recycled pid.
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Reads the service's banner "ledger service pid N recording to PATH" from its stderr.
fn read_banner(stderr: &mut impl BufRead) -> (u32, PathBuf) {
    let mut line = String::new();
    stderr
        .read_line(&mut line)
        .expect("read the service's stderr");
    let banner = line
        .trim_end()
        .strip_prefix("ledger service pid ")
        .and_then(|rest| rest.split_once(" recording to "));
    let Some((pid, path)) = banner else {
        panic!("unexpected first line of the service's stderr: {line:?}");
    };
    (pid.parse().expect("a pid"), PathBuf::from(path))
}

/// Polls `inspect --json` until `done` holds, failing after [`SERVICE_TIMEOUT`]. Attempts that
/// fail with exit code 2 are retried: the file may not be created or initialised yet.
fn inspect_until(ring: &Path, what: &str, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + SERVICE_TIMEOUT;
    loop {
        let output = run([
            OsStr::new("inspect"),
            OsStr::new("--json"),
            ring.as_os_str(),
        ]);
        if output.code() != Some(2) {
            let summary = output
                .expect_code(0, "inspect --json of a live ring")
                .json();
            assert_eq!(str_at(&summary, "status"), "running", "{summary}");
            if done(&summary) {
                return summary;
            }
        }
        assert!(
            Instant::now() < deadline,
            "the live service did not get to {what} within {SERVICE_TIMEOUT:?}; last inspect:\n{}{}",
            output.stdout,
            output.stderr
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_live_service_reads_as_running_and_as_died_after_sigkill() {
    let tmp = TempDir::new().unwrap();
    let child = flightrec()
        .args([
            "demo",
            "--service",
            "--seed",
            "1",
            "--rate",
            "2000",
            "--dir",
        ])
        .arg(tmp.path())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the service");
    let mut child = Reaped(child);
    // Kept open until the end: the service must never write into a closed pipe.
    let mut stderr = BufReader::new(child.0.stderr.take().expect("piped stderr"));
    let (pid, ring) = read_banner(&mut stderr);
    assert_eq!(pid, child.0.id());
    assert!(ring.starts_with(tmp.path()), "{}", ring.display());
    assert!(
        ring.extension() == Some(OsStr::new("ring")),
        "{}",
        ring.display()
    );

    // Read live: the status is `running` and both worker threads own a named, busy lane.
    let trace_retained = |s: &Value, name: &str| lane(s, name).map_or(0, |l| u64_at(l, "retained"));
    let first = inspect_until(&ring, "inputs and both workers' events", |s| {
        u64_at(&s["lanes"][0], "retained") > 0
            && trace_retained(s, "settlement") > 0
            && trace_retained(s, "reporter") > 0
    });
    assert_eq!(u64_at(&first, "pid"), u64::from(pid));
    assert!(first["crash"].is_null());
    // Reading did not disturb the writer: it keeps recording.
    let recorded = u64_at(&first["lanes"][0], "recorded");
    inspect_until(&ring, "record more inputs", |s| {
        u64_at(&s["lanes"][0], "recorded") > recorded
    });

    nix::sys::signal::kill(pid_of(pid), nix::sys::signal::Signal::SIGKILL).expect("SIGKILL");
    let status = child.0.wait().expect("wait for the service");
    use std::os::unix::process::ExitStatusExt as _;
    assert_eq!(
        status.signal(),
        Some(9),
        "the service ended otherwise: {status:?}"
    );
    drop(stderr);

    let s = inspect_json(&ring);
    assert_eq!(str_at(&s, "status"), "died");
    assert!(s["crash"].is_null(), "{}", s["crash"]);
    assert!(s["crash_error"].is_null(), "{}", s["crash_error"]);
    assert!(s["exited_unix_ns"].is_null());
    let input = &s["lanes"][0];
    assert!(u64_at(input, "retained") > 0, "{input}");
    assert!(u64_at(input, "recorded") > recorded, "{input}");
    assert!(trace_retained(&s, "settlement") > 0, "{s}");
    assert!(trace_retained(&s, "reporter") > 0, "{s}");

    let text = run([OsStr::new("inspect"), ring.as_os_str()]);
    text.expect_code(0, "inspect");
    assert!(
        text.stdout
            .contains(&format!("died: the writer (pid {pid}) is gone")),
        "{}",
        text.stdout
    );
}

// ---------------------------------------------------------------------------------------------
// 5. A clean stop

#[test]
fn a_service_that_stops_cleanly_reads_as_exited() {
    let tmp = TempDir::new().unwrap();
    let output = run([
        OsStr::new("demo"),
        OsStr::new("--service"),
        OsStr::new("--seed"),
        OsStr::new("1"),
        OsStr::new("--rate"),
        OsStr::new("0"),
        OsStr::new("--max-inputs"),
        OsStr::new("5000"),
        OsStr::new("--dir"),
        tmp.path().as_os_str(),
    ]);
    output.expect_code(0, "demo --service --max-inputs 5000");
    assert!(output.stdout.is_empty(), "{}", output.stdout);
    let mut stderr = BufReader::new(output.stderr.as_bytes());
    let (_, ring) = read_banner(&mut stderr);
    assert!(
        output
            .stderr
            .ends_with("ledger service stopped cleanly after 5000 inputs\n"),
        "{}",
        output.stderr
    );

    let s = inspect_json(&ring);
    assert_eq!(str_at(&s, "status"), "exited");
    assert!(s["crash"].is_null());
    assert!(u64_at(&s, "exited_unix_ns") >= u64_at(&s, "created_unix_ns"));
    let input = &s["lanes"][0];
    assert_eq!(u64_at(input, "recorded"), 5000);
    assert_eq!(u64_at(input, "retained"), 5000);
    let checkpoints = array_at(&s, "checkpoints");
    assert_eq!(
        u64_at(checkpoints.last().expect("a checkpoint"), "seq"),
        5000
    );

    let text = run([OsStr::new("inspect"), ring.as_os_str()]);
    assert!(text
        .expect_code(0, "inspect")
        .stdout
        .contains("status      exited cleanly at "));
}

// ---------------------------------------------------------------------------------------------
// 6. Bad input

/// `inspect` (text and JSON) must refuse `file` with exit code 2, nothing on stdout, and one line
/// on stderr that starts with "flightrec: ", names the file and contains `hint`.
fn assert_refused(file: &Path, hint: &str) {
    for json in [false, true] {
        let mut args = vec![OsStr::new("inspect"), file.as_os_str()];
        if json {
            args.push(OsStr::new("--json"));
        }
        let output = run(&args);
        let what = format!(
            "inspect{} {}",
            if json { " --json" } else { "" },
            file.display()
        );
        output.expect_code(2, &what);
        let err = &output.stderr;
        assert!(
            output.stdout.is_empty(),
            "{what} printed to stdout:\n{}",
            output.stdout
        );
        assert!(!err.contains("panicked"), "{what} panicked:\n{err}");
        assert_eq!(
            err.lines().count(),
            1,
            "{what}: not one line of stderr:\n{err}"
        );
        assert!(err.ends_with('\n'), "{what}: {err:?}");
        assert!(err.starts_with("flightrec: "), "{what}: {err}");
        assert!(
            err.contains(&file.display().to_string()),
            "{what} does not name the file: {err}"
        );
        assert!(
            err.contains(hint),
            "{what} does not mention {hint:?}: {err}"
        );
    }
}

/// A copy of `ring` named `name` in `dir`, with the bytes at `offset` replaced by `bytes`.
fn patched_copy(ring: &Path, dir: &Path, name: &str, offset: usize, bytes: &[u8]) -> PathBuf {
    let mut data = std::fs::read(ring).unwrap();
    data[offset..offset + bytes.len()].copy_from_slice(bytes);
    let path = dir.join(name);
    std::fs::write(&path, data).unwrap();
    path
}

#[test]
fn inspect_refuses_bad_files_with_exit_code_2_and_one_line() {
    let tmp = TempDir::new().unwrap();
    let dir = tmp.path();
    let ring = small_ring(dir);
    inspect_json(&ring); // the unpatched file is fine

    assert_refused(&dir.join("no-such-file.ring"), "No such file");

    let empty = dir.join("empty.ring");
    std::fs::write(&empty, b"").unwrap();
    assert_refused(&empty, "too short");

    let text = dir.join("notes.txt");
    std::fs::write(&text, "this is not a ring file\n").unwrap();
    assert_refused(&text, "not a flightrec ring file");
    let stub = dir.join("stub.ring");
    std::fs::write(&stub, b"FLRING\r\n\x01").unwrap();
    assert_refused(&stub, "too short");

    let long_text = dir.join("long-notes.txt");
    std::fs::write(&long_text, "this is not a ring file\n".repeat(1000)).unwrap();
    assert_refused(&long_text, "not a flightrec ring file");

    let random = dir.join("random.bin");
    let mut rng = rand_pcg::Pcg64Mcg::seed_from_u64(7);
    let noise: Vec<u8> = (0..10 * 1024).map(|_| rng.gen()).collect();
    std::fs::write(&random, noise).unwrap();
    assert_refused(&random, "not a flightrec ring file");

    let truncated = dir.join("truncated.ring");
    std::fs::write(&truncated, &std::fs::read(&ring).unwrap()[..100_000]).unwrap();
    assert_refused(&truncated, "truncated");

    let future = patched_copy(&ring, dir, "future.ring", 8, &99u32.to_le_bytes());
    assert_refused(&future, "newer");

    let lanes = patched_copy(&ring, dir, "lanes.ring", 100, &[255]);
    assert_refused(&lanes, "lane_count");

    assert_refused(dir, "cannot read");
}

/// Any damage to the header page gives a report (exit 0) or a one-line refusal (exit 2), never a
/// panic or a hang.
#[test]
fn inspect_survives_random_damage_to_the_header_page() {
    let tmp = TempDir::new().unwrap();
    let (_, ring) = demo(tmp.path(), 42);
    let original = std::fs::read(&ring).unwrap();
    let damaged = tmp.path().join("damaged.ring");
    let config = Config {
        cases: 24,
        failure_persistence: None,
        ..Config::default()
    };
    let damage = proptest::collection::vec((0..4096usize, any::<u8>()), 1..4);
    TestRunner::new(config)
        .run(&damage, |damage| {
            let mut data = original.clone();
            for &(offset, byte) in &damage {
                data[offset] = byte;
            }
            std::fs::write(&damaged, &data).unwrap();
            let output = run([
                OsStr::new("inspect"),
                OsStr::new("--json"),
                damaged.as_os_str(),
            ]);
            let fail = |why: &str| {
                TestCaseError::fail(format!(
                    "{why} ({:?})\n--- stdout\n{}--- stderr\n{}",
                    output.status, output.stdout, output.stderr
                ))
            };
            match output.code() {
                Some(0) => {
                    if !output.stderr.is_empty() {
                        return Err(fail("exit 0 with stderr"));
                    }
                    output.json();
                }
                Some(2) => {
                    if !output.stdout.is_empty()
                        || output.stderr.lines().count() != 1
                        || !output.stderr.starts_with("flightrec: ")
                    {
                        return Err(fail("exit 2 without exactly one line of stderr"));
                    }
                }
                _ => return Err(fail("neither exit 0 nor 2")),
            }
            Ok(())
        })
        .unwrap();
}

// ---------------------------------------------------------------------------------------------
// 7. Help and completions

#[test]
fn help_version_and_completions() {
    let help = run(["--help"]);
    let out = &help.expect_code(0, "--help").stdout;
    for word in ["demo", "inspect", "completions", "ring file"] {
        assert!(
            out.contains(word),
            "--help does not mention {word:?}:\n{out}"
        );
    }

    let demo = run(["demo", "--help"]);
    let out = &demo.expect_code(0, "demo --help").stdout;
    for option in ["--no-tui", "--service", "--seed", "--dir", "--rate"] {
        assert!(
            out.contains(option),
            "demo --help does not mention {option}:\n{out}"
        );
    }
    for hidden in ["--ring", "--max-inputs"] {
        assert!(
            !out.contains(hidden),
            "demo --help shows hidden {hidden}:\n{out}"
        );
    }

    let inspect = run(["inspect", "--help"]);
    let out = &inspect.expect_code(0, "inspect --help").stdout;
    for word in ["<FILE>", "--json", "2 when"] {
        assert!(
            out.contains(word),
            "inspect --help does not mention {word:?}:\n{out}"
        );
    }

    let version = run(["--version"]);
    assert_eq!(
        version.expect_code(0, "--version").stdout,
        format!("flightrec {}\n", env!("CARGO_PKG_VERSION"))
    );

    let bash = run(["completions", "bash"]);
    let script = &bash.expect_code(0, "completions bash").stdout;
    assert!(script.contains("flightrec"), "{script}");
    assert!(
        script.contains("inspect") && script.contains("--no-tui"),
        "{script}"
    );
    assert!(bash.stderr.is_empty(), "{}", bash.stderr);

    // Usage errors are clap's: exit 2 and a message on stderr, nothing on stdout.
    for args in [
        &["inspect"][..],
        &["demo", "--bogus"],
        &["completions", "tcsh"],
    ] {
        let output = run(args);
        output.expect_code(2, &format!("{args:?}"));
        assert!(output.stdout.is_empty(), "{args:?}: {}", output.stdout);
        assert!(
            output.stderr.starts_with("error: "),
            "{args:?}: {}",
            output.stderr
        );
    }
}

// ---------------------------------------------------------------------------------------------
// 8. An existing ring file is never overwritten

#[test]
fn the_service_never_overwrites_an_existing_file() {
    let tmp = TempDir::new().unwrap();
    let ring = small_ring(tmp.path());
    let text = tmp.path().join("notes.ring");
    std::fs::write(&text, "not a ring, but not ours to overwrite\n").unwrap();

    for existing in [&ring, &text] {
        let before = std::fs::read(existing).unwrap();
        let output = run([
            OsStr::new("demo"),
            OsStr::new("--service"),
            OsStr::new("--rate"),
            OsStr::new("0"),
            OsStr::new("--max-inputs"),
            OsStr::new("10"),
            OsStr::new("--ring"),
            existing.as_os_str(),
        ]);
        let what = format!("demo --service --ring {}", existing.display());
        assert!(
            !output.status.success(),
            "{what} succeeded:\n{}{}",
            output.stdout,
            output.stderr
        );
        assert!(
            !output.stderr.contains("panicked"),
            "{what}: {}",
            output.stderr
        );
        let last = output.stderr.lines().last().unwrap_or_default();
        assert!(last.starts_with("flightrec: "), "{what}: {}", output.stderr);
        assert!(last.contains("already exists"), "{what}: {}", output.stderr);
        assert!(
            last.contains(&existing.display().to_string()),
            "{what}: {last}"
        );
        assert!(
            std::fs::read(existing).unwrap() == before,
            "{what} changed the file"
        );
    }
}

/// Without `--service`, the demo must not report a ring file it could not create as if the run
/// had recorded it (it once exited 0 showing the earlier file's content as "what survived").
#[test]
fn the_demo_does_not_report_an_existing_file_as_its_own() {
    let tmp = TempDir::new().unwrap();
    let ring = small_ring(tmp.path());
    let before = std::fs::read(&ring).unwrap();
    let output = run([
        OsStr::new("demo"),
        OsStr::new("--no-tui"),
        OsStr::new("--rate"),
        OsStr::new("0"),
        OsStr::new("--ring"),
        ring.as_os_str(),
    ]);
    assert!(std::fs::read(&ring).unwrap() == before);
    assert!(!output.status.success(), "{}", output.stdout);
    assert!(
        !output.stdout.contains("what survived"),
        "{}",
        output.stdout
    );
    assert!(
        output.stderr.contains("already exists"),
        "{}",
        output.stderr
    );
}
