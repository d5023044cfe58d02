//! End-to-end tests of `flightrec tail`: it follows the demo service's ring file while the
//! service runs, shows each input and trace event as it arrives, accounts for every input
//! number, and ends with a line naming the crash; it ends cleanly at Ctrl-C, reports a writer
//! killed with SIGKILL as died, shows inputs of another machine by size, and does not disturb
//! the service it follows.
//!
//! Every ring file goes to a fresh temporary directory.

use std::ffi::OsStr;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use flightrec_recorder::{Builder, Level, Machine, Tick};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tempfile::TempDir;

/// The longest the test waits for a line, a file or a process before giving up on it.
const TIMEOUT: Duration = Duration::from_secs(60);
/// The input whose audit panics, for seed 42.
const SEED_42_CRASH_INPUT: u64 = 379_999;

fn flightrec() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_flightrec"));
    command.stdin(Stdio::null()).env("RUST_BACKTRACE", "0");
    command
}

/// A child that is killed and reaped if the test fails before it ends.
struct Reaped(Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        // `Child` knows when it has been reaped, so this never signals a recycled pid.
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Reaped {
    fn pid(&self) -> nix::unistd::Pid {
        nix::unistd::Pid::from_raw(self.0.id() as i32)
    }

    /// Waits for the child to end, failing after [`TIMEOUT`].
    fn wait(&mut self, what: &str) -> ExitStatus {
        let deadline = Instant::now() + TIMEOUT;
        loop {
            if let Some(status) = self.0.try_wait().expect("wait for a child") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "{what} did not end within {TIMEOUT:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// The demo service with seed 42 at `rate` inputs a second, recording into `dir`; returns it
/// and its ring file once that file is ready to read.
fn start_service(dir: &Path, rate: u64) -> (Reaped, PathBuf) {
    let mut child = Reaped(
        flightrec()
            .args(["demo", "--service", "--seed", "42", "--rate"])
            .arg(rate.to_string())
            .arg("--dir")
            .arg(dir)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start the service"),
    );
    let mut stderr = BufReader::new(child.0.stderr.take().expect("piped stderr"));
    let mut banner = String::new();
    stderr.read_line(&mut banner).expect("the service's banner");
    let ring = banner
        .trim_end()
        .split_once(" recording to ")
        .map(|(_, path)| PathBuf::from(path))
        .unwrap_or_else(|| panic!("unexpected banner {banner:?}"));
    // The rest of stderr (the panic message) is drained so the service never blocks on it.
    std::thread::spawn(move || std::io::copy(&mut stderr, &mut std::io::sink()));
    let deadline = Instant::now() + TIMEOUT;
    while flightrec_replayer::Ring::open(&ring).is_err() {
        assert!(
            Instant::now() < deadline,
            "{} never became readable",
            ring.display()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    (child, ring)
}

/// `flightrec tail ARGS` with its stdout read line by line on a thread.
struct Tail {
    child: Reaped,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Tail {
    fn start<I: IntoIterator<Item = S>, S: AsRef<OsStr>>(args: I) -> Tail {
        let mut child = Reaped(
            flightrec()
                .arg("tail")
                .args(args)
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit())
                .spawn()
                .expect("start tail"),
        );
        let stdout: ChildStdout = child.0.stdout.take().expect("piped stdout");
        let (send, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                if send.send(line.expect("tail writes UTF-8")).is_err() {
                    return;
                }
            }
        });
        Tail {
            child,
            lines,
            seen: Vec::new(),
        }
    }

    /// The next line, or `None` once tail closed its output.
    fn next_line(&mut self) -> Option<String> {
        match self.lines.recv_timeout(TIMEOUT) {
            Ok(line) => {
                self.seen.push(line.clone());
                Some(line)
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => None,
            Err(mpsc::RecvTimeoutError::Timeout) => {
                panic!(
                    "tail printed nothing for {TIMEOUT:?}; so far: {:?}",
                    self.seen
                )
            }
        }
    }

    /// Reads lines until one satisfies `wanted`.
    fn until(&mut self, what: &str, wanted: impl Fn(&str) -> bool) -> String {
        loop {
            match self.next_line() {
                Some(line) if wanted(&line) => return line,
                Some(_) => {}
                None => panic!("tail ended before {what}: {:?}", self.seen),
            }
        }
    }

    /// Every remaining line, and the exit status.
    fn finish(mut self, what: &str) -> (Vec<String>, ExitStatus) {
        while self.next_line().is_some() {}
        let status = self.child.wait(what);
        (self.seen, status)
    }
}

/// The number of an input line, `HH:MM:SS.uuuuuuZ  input #N  ...`.
fn input_number(line: &str) -> Option<u64> {
    let rest = line.split_once("  input #")?.1;
    rest.split(' ').next()?.parse().ok()
}

/// The numbers of a gap line, `-- N inputs #A to #B overwritten before tail could read them`.
fn gap_numbers(line: &str) -> Option<(u64, u64)> {
    let rest = line.strip_prefix("-- ")?;
    let (_, rest) = rest.split_once(" inputs #")?;
    let (first, rest) = rest.split_once(" to #")?;
    let last = rest.split(' ').next()?;
    Some((first.parse().ok()?, last.parse().ok()?))
}

/// Checks that input numbers run on from the first one shown, each once, in order: every
/// number is either shown or inside a reported gap. Returns how many inputs were shown.
fn assert_every_input_accounted_for(lines: &[String]) -> u64 {
    let mut next: Option<u64> = None;
    let mut shown = 0;
    for line in lines {
        let (first, last) = match (input_number(line), gap_numbers(line)) {
            (Some(n), _) => {
                shown += 1;
                (n, n)
            }
            (None, Some(gap)) => {
                assert!(
                    line.ends_with("overwritten before tail could read them"),
                    "{line}"
                );
                gap
            }
            (None, None) => continue,
        };
        if let Some(expected) = next {
            assert_eq!(first, expected, "input numbers jump at {line:?}");
        }
        next = Some(last + 1);
    }
    shown
}

#[test]
fn tail_follows_the_demo_service_live_and_ends_with_its_crash() {
    let tmp = TempDir::new().unwrap();
    let (mut service, ring) = start_service(tmp.path(), 100_000);
    let mut tail = Tail::start([&ring]);

    // Lines arrive while the service runs: an input before the crash, the service alive.
    let first = tail.until("an input", |line| input_number(line).is_some());
    assert!(
        service.0.try_wait().unwrap().is_none(),
        "the service ended before tail showed its first input"
    );
    assert!(input_number(&first).unwrap() < SEED_42_CRASH_INPUT);
    // Inputs are decoded with the demo's machine: `Deposit { account: 12, amount: 500 }`.
    let summary = first.split_once(&format!("#{}  ", input_number(&first).unwrap()));
    let summary = summary.map_or("", |(_, s)| s);
    assert!(
        ["Open", "Deposit", "Withdraw", "Transfer", "Audit"]
            .iter()
            .any(|variant| summary.starts_with(variant)),
        "{first}"
    );
    tail.until("a trace event of a worker", |line| {
        line.contains("settlement: settled batch") || line.contains("reporter: report")
    });

    let (lines, status) = tail.finish("tail of a crashing service");
    assert!(status.success(), "tail ended with {status:?}");
    let service_status = service.wait("the service");
    assert_eq!(service_status.code(), Some(101), "the demo service panics");

    let last = lines.last().unwrap();
    assert!(
        last.starts_with("-- the service crashed: panic at src/demo/ledger.rs:")
            && last.contains(&format!("\"audit failed at input {SEED_42_CRASH_INPUT}:"))
            && last.contains("in thread 'main'"),
        "the last line does not name the crash: {last}"
    );
    assert!(
        lines
            .iter()
            .filter(|l| l.starts_with("-- the service"))
            .count()
            == 1
    );
    let shown = assert_every_input_accounted_for(&lines);
    assert!(shown > 0);
    let last_input = lines.iter().rev().find_map(|l| input_number(l));
    assert_eq!(
        last_input,
        Some(SEED_42_CRASH_INPUT),
        "the crashing input is the last"
    );

    // The same ring, finished: from the start, as JSON.
    let tail = Tail::start([
        OsStr::new("--json"),
        OsStr::new("--from-start"),
        ring.as_os_str(),
    ]);
    let (lines, status) = tail.finish("tail --json --from-start");
    assert!(status.success());
    let json: Vec<Value> = lines
        .iter()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    let inputs: Vec<&Value> = json.iter().filter(|v| v["type"] == "input").collect();
    let seqs: Vec<u64> = inputs.iter().map(|v| v["seq"].as_u64().unwrap()).collect();
    assert!(
        seqs.windows(2).all(|w| w[1] == w[0] + 1),
        "a finished ring reads without gaps"
    );
    assert_eq!(seqs.last(), Some(&SEED_42_CRASH_INPUT));
    assert!(inputs
        .iter()
        .all(|v| v["input"].is_object() || v["input"].is_string()));
    assert!(json
        .iter()
        .any(|v| v["type"] == "trace" && v["thread"] == "settlement"));
    let end = json.last().unwrap();
    assert_eq!(end["type"], "end");
    assert_eq!(end["fate"], "crashed");
    assert_eq!(end["crash"]["kind"], "panic");
    assert!(end["crash"]["message"]
        .as_str()
        .unwrap()
        .starts_with(&format!("audit failed at input {SEED_42_CRASH_INPUT}:")));
    let inspect = flightrec()
        .args(["inspect", "--json"])
        .arg(&ring)
        .output()
        .unwrap();
    let summary: Value = serde_json::from_slice(&inspect.stdout).unwrap();
    assert_eq!(
        inputs.len() as u64,
        summary["lanes"][0]["retained"].as_u64().unwrap(),
        "tail from the start shows every retained input"
    );

    // Filters: only inputs, or only trace events, and the end line either way.
    for (filter, kept, dropped) in [
        ("--inputs", "input", "trace"),
        ("--traces", "trace", "input"),
    ] {
        let tail = Tail::start([
            OsStr::new(filter),
            OsStr::new("--json"),
            OsStr::new("--from-start"),
            ring.as_os_str(),
        ]);
        let (lines, _) = tail.finish(filter);
        let types: Vec<Value> = lines
            .iter()
            .map(|l| serde_json::from_str::<Value>(l).unwrap()["type"].clone())
            .collect();
        assert!(types.iter().any(|t| t == kept), "{filter}");
        assert!(!types.iter().any(|t| t == dropped), "{filter}");
        assert_eq!(types.last().unwrap(), "end", "{filter}");
    }
}

#[test]
fn tail_ends_cleanly_at_ctrl_c_and_reports_a_killed_service_as_died() {
    let tmp = TempDir::new().unwrap();
    let (mut service, ring) = start_service(tmp.path(), 20_000);

    let mut interrupted = Tail::start([&ring]);
    interrupted.until("an input", |line| input_number(line).is_some());
    nix::sys::signal::kill(interrupted.child.pid(), nix::sys::signal::Signal::SIGINT).unwrap();
    let (lines, status) = interrupted.finish("tail after Ctrl-C");
    assert_eq!(
        status.code(),
        Some(0),
        "Ctrl-C ends tail with exit 0: {status:?}"
    );
    assert!(
        !lines.iter().any(|l| l.starts_with("-- the service")),
        "the service still runs: {:?}",
        lines.last()
    );
    assert!(
        service.0.try_wait().unwrap().is_none(),
        "tail disturbed the service"
    );

    let mut follower = Tail::start([&ring]);
    follower.until("an input", |line| input_number(line).is_some());
    nix::sys::signal::kill(service.pid(), nix::sys::signal::Signal::SIGKILL).unwrap();
    service.wait("the killed service");
    let (lines, status) = follower.finish("tail of a killed service");
    assert!(status.success(), "{status:?}");
    assert_eq!(
        lines.last().unwrap(),
        "-- the service died: its process is gone without recording a cause \
         (SIGKILL, OOM kill or power loss)"
    );
    assert_every_input_accounted_for(&lines);
}

/// A machine the `flightrec` binary does not know.
#[derive(Default, Serialize, Deserialize)]
struct Tally {
    total: u64,
}

impl Machine for Tally {
    const NAME: &'static str = "tally";
    const VERSION: u32 = 3;
    type Input = Vec<u8>;
    fn apply(&mut self, input: &Vec<u8>, _tick: Tick) {
        self.total += input.len() as u64;
    }
}

/// A small ring of the tally machine, with one trace lane, in `tmp`.
fn small_tally_ring(tmp: &TempDir) -> flightrec_recorder::Recorded<Tally> {
    Builder::new()
        .dir(tmp.path())
        .input_lane_bytes(64 << 10)
        .trace_lanes(1)
        .trace_lane_bytes(16 << 10)
        .state_capacity(4 << 10)
        .crash_capture(false)
        .counters(false)
        .build(Tally::default())
        .unwrap()
}

#[test]
fn tail_shows_another_machines_inputs_by_size() {
    let tmp = TempDir::new().unwrap();
    let mut recorded = small_tally_ring(&tmp);
    let tracer = recorded.tracer();
    for len in 0..5 {
        recorded.apply(&vec![7; len]);
    }
    tracer.span_enter(Level::Warn, "flush");
    let ring = recorded.finish();
    let tail = Tail::start([OsStr::new("--from-start"), ring.as_os_str()]);
    let (lines, status) = tail.finish("tail of a tally ring");
    assert!(status.success());
    let inputs: Vec<&str> = lines
        .iter()
        .filter_map(|l| l.split_once("  input #").map(|(_, rest)| rest))
        .collect();
    // postcard: a length byte, then the bytes.
    assert_eq!(
        inputs,
        [
            "0  1 bytes",
            "1  2 bytes",
            "2  3 bytes",
            "3  4 bytes",
            "4  5 bytes"
        ]
    );
    let span = lines
        .iter()
        .find(|l| l.contains("→ flush"))
        .expect("the span");
    assert!(span.contains("warn "), "{span}");
    assert_eq!(lines.last().unwrap(), "-- the service exited cleanly");
}

#[test]
fn tail_of_an_export_says_what_to_do_instead() {
    let tmp = TempDir::new().unwrap();
    let export = tmp.path().join("crash.flightrec");
    let mut bytes = flightrec::replayer::export::format::MAGIC.to_vec();
    bytes.resize(4096, 0);
    std::fs::write(&export, bytes).unwrap();
    let output = flightrec().arg("tail").arg(&export).output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("is an export"), "{stderr}");
    assert!(
        stderr.contains("`inspect` and `replay` read exports"),
        "{stderr}"
    );
}

#[test]
fn tail_names_a_lane_that_a_thread_claims_after_it_started() {
    let tmp = TempDir::new().unwrap();
    let mut recorded = small_tally_ring(&tmp);
    recorded.apply(&vec![1]);
    let ring = recorded.path().to_owned();
    let mut tail = Tail::start([
        OsStr::new("--from-start"),
        OsStr::new("--json"),
        ring.as_os_str(),
    ]);
    // Once it shows the input, tail has read the lane names: the trace lane had none yet.
    tail.until("the input", |l| l.contains(r#""type":"input""#));
    let tracer = recorded.tracer();
    std::thread::Builder::new()
        .name("late".into())
        .spawn(move || tracer.event(Level::Info, "hello"))
        .unwrap()
        .join()
        .unwrap();
    let line = tail.until("the late thread's event", |l| {
        l.contains(r#""message":"hello""#)
    });
    recorded.finish();
    let (_, status) = tail.finish("tail of a lane claimed late");
    assert!(status.success());
    let event: Value = serde_json::from_str(&line).unwrap();
    assert_eq!(
        (&event["thread"], &event["lane"]),
        (&"late".into(), &"late".into()),
        "{line}"
    );
}
