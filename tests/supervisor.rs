//! End-to-end tests of `flightrec run` with real child processes: the supervisor restarts a
//! crashing service and keeps the exports of its last crashes; it forwards SIGTERM and SIGINT to
//! the service and exits with its status; a clean exit leaves nothing behind; a ring of a machine
//! the binary does not know is kept whole, and counted by the rotation with the exports; killed
//! outright, it takes the service with it.
//!
//! The services are the demo's (`flightrec demo --service`, made to crash early with its hidden
//! `--crash-after`) and this test binary re-executed as a recording child (see [`child_entry`]).
//! Every ring file goes to a fresh temporary directory through `FLIGHTREC_DIR`.

use std::ffi::{OsStr, OsString};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use flightrec_recorder::{Builder, Machine, Tick};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tempfile::TempDir;

/// The longest the tests wait for any one thing before failing (not a measurement: a guard
/// against hanging forever).
const PATIENCE: Duration = Duration::from_secs(120);
/// Inputs the demo service records before its injected crash.
const CRASH_AFTER: u64 = 2_000;
/// Its panic message.
const CRASH_MESSAGE: &str = "injected crash after 2000 inputs (--crash-after)";

// ---------------------------------------------------------------------------------------------
// Running the supervisor

fn flightrec_exe() -> &'static str {
    env!("CARGO_BIN_EXE_flightrec")
}

/// A directory for ring files and one for the evidence, both inside a fresh temporary one.
struct Dirs {
    _tmp: TempDir,
    rings: PathBuf,
    crashes: PathBuf,
}

impl Dirs {
    fn new() -> Dirs {
        let tmp = TempDir::new().unwrap();
        Dirs {
            rings: tmp.path().join("rings"),
            crashes: tmp.path().join("crashes"),
            _tmp: tmp,
        }
    }

    /// The files in the crash directory, sorted; empty when it was never created.
    fn crash_files(&self) -> Vec<PathBuf> {
        files_in(&self.crashes)
    }

    fn assert_no_ring_left(&self) {
        let left = files_in(&self.rings);
        assert!(left.is_empty(), "ring files left behind: {left:?}");
    }
}

fn files_in(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries.map(|e| e.unwrap().path()).collect();
    files.sort();
    files
}

/// A running `flightrec run`, its stderr (the supervisor's lines and the services') read line
/// by line on a thread. Dropped while running, it is stopped: SIGTERM (which it forwards), then
/// SIGKILL if it does not end.
struct Supervisor {
    child: Child,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Supervisor {
    fn start(
        dirs: &Dirs,
        options: &[&str],
        service: &[impl AsRef<OsStr>],
        env: &[(&str, &str)],
    ) -> Self {
        let mut command = Command::new(flightrec_exe());
        command
            .arg("run")
            .args(options)
            .arg("--dir")
            .arg(&dirs.crashes)
            .arg("--")
            .args(service)
            .env("FLIGHTREC_DIR", &dirs.rings)
            .env("RUST_BACKTRACE", "0")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = command.spawn().expect("start flightrec run");
        let stderr = child.stderr.take().expect("piped stderr");
        let (send, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { return };
                if send.send(line).is_err() {
                    return;
                }
            }
        });
        Supervisor {
            child,
            lines,
            seen: Vec::new(),
        }
    }

    fn pid(&self) -> Pid {
        Pid::from_raw(self.child.id() as i32)
    }

    /// Reads lines until one satisfies `wanted`, and returns it.
    fn line_where(&mut self, what: &str, wanted: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if wanted(&line) {
                        return line;
                    }
                }
                Err(_) => panic!(
                    "no line with {what} within {PATIENCE:?}; stderr so far:\n{}",
                    self.seen.join("\n")
                ),
            }
        }
    }

    /// Waits for the supervisor to exit, and reads the rest of its stderr.
    fn wait(&mut self) -> ExitStatus {
        let deadline = Instant::now() + PATIENCE;
        let status = loop {
            if let Some(status) = self.child.try_wait().expect("wait for flightrec run") {
                break status;
            }
            assert!(
                Instant::now() < deadline,
                "flightrec run did not exit within {PATIENCE:?}; stderr so far:\n{}",
                self.seen.join("\n")
            );
            std::thread::sleep(Duration::from_millis(20));
        };
        // The pipe closes once the supervisor and every service it started are gone.
        while let Ok(line) = self.lines.recv_timeout(PATIENCE) {
            self.seen.push(line);
        }
        status
    }

    /// The supervisor's own lines.
    fn own_lines(&self) -> Vec<&str> {
        self.seen
            .iter()
            .map(String::as_str)
            .filter(|l| l.starts_with("flightrec run: "))
            .collect()
    }

    fn stderr(&self) -> String {
        self.seen.join("\n")
    }
}

impl Drop for Supervisor {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_some() {
            return;
        }
        let _ = kill(self.pid(), Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if self.child.try_wait().ok().flatten().is_some() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The pid and ring file in the demo service's banner, "ledger service pid N recording to PATH".
fn service_banner(line: &str) -> Option<(u32, PathBuf)> {
    let (pid, path) = line
        .strip_prefix("ledger service pid ")?
        .split_once(" recording to ")?;
    Some((pid.parse().ok()?, PathBuf::from(path)))
}

/// The path in a crash line's "exporting its ring to PATH;" or "keeping its ring file as PATH ".
fn evidence_path(line: &str) -> PathBuf {
    let rest = line
        .split_once("exporting its ring to ")
        .or_else(|| line.split_once("keeping its ring file as "))
        .unwrap_or_else(|| panic!("no evidence path in {line:?}"))
        .1;
    let end = rest.find([';', ' ']).unwrap_or(rest.len());
    PathBuf::from(&rest[..end])
}

fn is_crash_line(line: &str) -> bool {
    line.starts_with("flightrec run: ")
        && (line.contains(") was killed by ") || line.contains(") panicked and exited with code"))
}

fn inspect_json(file: &Path) -> Value {
    let output = Command::new(flightrec_exe())
        .args([
            OsStr::new("inspect"),
            OsStr::new("--json"),
            file.as_os_str(),
        ])
        .stdin(Stdio::null())
        .output()
        .expect("run flightrec inspect");
    assert!(
        output.status.success(),
        "inspect {}: {:?}\n{}",
        file.display(),
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("inspect --json prints JSON")
}

/// The demo service's command line, with `extra` arguments.
fn demo_service(extra: &[&str]) -> Vec<OsString> {
    let mut args = vec![OsString::from(flightrec_exe())];
    for arg in ["demo", "--service", "--seed", "7"].iter().chain(extra) {
        args.push(arg.into());
    }
    args
}

fn process_gone(pid: u32) -> bool {
    kill(Pid::from_raw(pid as i32), None) == Err(nix::errno::Errno::ESRCH)
}

// ---------------------------------------------------------------------------------------------
// 1. A crashing service, restarted, its last exports kept

#[test]
fn the_supervisor_restarts_a_crashing_service_and_keeps_its_last_exports() {
    let dirs = Dirs::new();
    let crash_after = CRASH_AFTER.to_string();
    let service = demo_service(&["--rate", "0", "--crash-after", &crash_after]);
    let mut supervisor = Supervisor::start(&dirs, &["--restart", "--keep", "2"], &service, &[]);
    for n in 1..=3 {
        let line = supervisor.line_where(&format!("crash {n}"), is_crash_line);
        assert!(
            line.contains("restarted as pid") || line.contains("restarting in "),
            "crash {n} was not followed by a restart: {line}"
        );
    }
    kill(supervisor.pid(), Signal::SIGTERM).expect("SIGTERM to the supervisor");
    let status = supervisor.wait();
    // The last instance was stopped by the forwarded SIGTERM (143), or crashed first (101).
    assert!(
        matches!(status.code(), Some(143 | 101)),
        "flightrec run ended with {status:?}; stderr:\n{}",
        supervisor.stderr()
    );

    let crashes: Vec<String> = supervisor
        .own_lines()
        .into_iter()
        .filter(|l| is_crash_line(l))
        .map(str::to_owned)
        .collect();
    assert!(crashes.len() >= 3, "{}", supervisor.stderr());
    // Each restart names the new instance's ring, as its banner does (the last instance may be
    // stopped before it prints one; the others crashed, so they printed theirs).
    let banners: Vec<(u32, PathBuf)> = supervisor
        .seen
        .iter()
        .filter_map(|l| service_banner(l))
        .collect();
    let mut confirmed = 0;
    for line in supervisor.own_lines() {
        let Some((_, restart)) = line.split_once("restarted as pid ") else {
            continue;
        };
        let (pid, ring) = restart
            .split_once(" with FLIGHTREC_PATH=")
            .unwrap_or_else(|| panic!("the restart does not name its ring: {line}"));
        let pid: u32 = pid.parse().unwrap();
        if let Some((_, banner_ring)) = banners.iter().find(|(p, _)| *p == pid) {
            assert_eq!(banner_ring, Path::new(ring), "{line}");
            confirmed += 1;
        }
    }
    assert!(confirmed >= 2, "{}", supervisor.stderr());
    let mut newest: Vec<PathBuf> = crashes[crashes.len() - 2..]
        .iter()
        .map(|l| evidence_path(l))
        .collect();
    newest.sort();
    assert_eq!(
        dirs.crash_files(),
        newest,
        "the crash directory should hold exactly the exports of the last two crashes; stderr:\n{}",
        supervisor.stderr()
    );
    for export in &newest {
        assert_eq!(export.extension(), Some(OsStr::new("flightrec")));
        let summary = inspect_json(export);
        assert_eq!(summary["kind"], "export", "{summary}");
        assert_eq!(summary["machine"]["name"], "ledger", "{summary}");
        assert_eq!(summary["status"], "crashed", "{summary}");
        assert_eq!(summary["crash"]["message"], CRASH_MESSAGE, "{summary}");
        assert_eq!(summary["last_seq"], CRASH_AFTER - 1, "{summary}");
    }
    dirs.assert_no_ring_left();
}

// ---------------------------------------------------------------------------------------------
// 2. SIGTERM and SIGINT are forwarded

#[test]
fn sigterm_sigint_and_sighup_are_forwarded_to_the_service_and_its_status_becomes_ours() {
    for (signal, code) in [
        (Signal::SIGTERM, 143),
        (Signal::SIGINT, 130),
        (Signal::SIGHUP, 129),
    ] {
        let dirs = Dirs::new();
        // At 1,000 inputs per second the service would run for minutes before its bug.
        let service = demo_service(&["--rate", "1000"]);
        let mut supervisor = Supervisor::start(&dirs, &["--restart"], &service, &[]);
        let banner = supervisor.line_where("the service's banner", |l| service_banner(l).is_some());
        let (service_pid, ring) = service_banner(&banner).unwrap();
        assert!(ring.starts_with(&dirs.rings), "{}", ring.display());
        // Only the supervisor is signalled: the service runs in its own process group, so the
        // signal can reach it only by being forwarded.
        kill(supervisor.pid(), signal).expect("signal the supervisor");
        let status = supervisor.wait();
        assert_eq!(
            status.code(),
            Some(code),
            "after {signal}: flightrec run ended with {status:?}; stderr:\n{}",
            supervisor.stderr()
        );
        assert!(process_gone(service_pid), "the service outlived {signal}");
        // Named after the ring's machine, or the command when the ring was not created yet.
        let stopped = format!("(pid {service_pid}) stopped on {signal}");
        assert!(
            supervisor.own_lines().iter().any(|l| l.ends_with(&stopped)),
            "{}",
            supervisor.stderr()
        );
        // A requested stop is not a crash: nothing is kept, and no instance follows.
        let banners = supervisor
            .seen
            .iter()
            .filter(|l| service_banner(l).is_some())
            .count();
        assert_eq!(banners, 1, "{}", supervisor.stderr());
        assert!(dirs.crash_files().is_empty(), "{:?}", dirs.crash_files());
        dirs.assert_no_ring_left();
    }
}

// ---------------------------------------------------------------------------------------------
// 3. A signal while the last export runs

#[test]
fn a_signal_while_the_last_export_runs_keeps_the_ring_whole_instead() {
    let dirs = Dirs::new();
    // The ledger's own bug: a state of 65,536 accounts, whose export takes minutes.
    let service = demo_service(&["--rate", "0"]);
    let mut supervisor = Supervisor::start(&dirs, &[], &service, &[]);
    let crash = supervisor.line_where("the crash", is_crash_line);
    assert!(crash.contains("not restarted"), "{crash}");
    supervisor.line_where("the wait for the export", |l| {
        l.starts_with("flightrec run: finishing 1 export(s) before exiting")
    });
    kill(supervisor.pid(), Signal::SIGTERM).expect("SIGTERM to the supervisor");
    let status = supervisor.wait();
    assert_eq!(status.code(), Some(101), "{}", supervisor.stderr());

    let kept = evidence_path(&crash).with_extension("ring");
    // Exactly the ring: no export, and no partial export's temporary file.
    assert_eq!(
        dirs.crash_files(),
        std::slice::from_ref(&kept),
        "{}",
        supervisor.stderr()
    );
    let summary = inspect_json(&kept);
    assert_eq!(summary["status"], "crashed", "{summary}");
    let message = summary["crash"]["message"].as_str().unwrap_or_default();
    assert!(message.starts_with("audit failed at input "), "{summary}");
    let hint = format!("flightrec export {} -o", kept.display());
    assert!(
        supervisor.own_lines().iter().any(|l| l.contains(&hint)),
        "{}",
        supervisor.stderr()
    );
    dirs.assert_no_ring_left();
}

// ---------------------------------------------------------------------------------------------
// 4. A clean exit

#[test]
fn a_clean_exit_leaves_nothing_behind() {
    let dirs = Dirs::new();
    let service = demo_service(&["--rate", "0", "--max-inputs", "3000"]);
    let mut supervisor = Supervisor::start(&dirs, &["--restart"], &service, &[]);
    let status = supervisor.wait();
    assert_eq!(status.code(), Some(0), "{}", supervisor.stderr());
    let banners: Vec<(u32, PathBuf)> = supervisor
        .seen
        .iter()
        .filter_map(|l| service_banner(l))
        .collect();
    assert_eq!(
        banners.len(),
        1,
        "restarted after a clean exit:\n{}",
        supervisor.stderr()
    );
    assert!(
        supervisor
            .seen
            .iter()
            .any(|l| l == "ledger service stopped cleanly after 3000 inputs"),
        "{}",
        supervisor.stderr()
    );
    assert!(!banners[0].1.exists(), "{} is left", banners[0].1.display());
    dirs.assert_no_ring_left();
    assert!(
        !dirs.crashes.exists(),
        "the crash directory was created for a clean exit"
    );
}

// ---------------------------------------------------------------------------------------------
// 5. A machine the binary does not know

/// Set in a re-executed child: record as [`Stranger`], then abort.
const ENV_CHILD: &str = "FLIGHTREC_SUPERVISOR_TEST_CHILD";

/// A machine the standalone `flightrec` binary does not know.
#[derive(Default, Serialize, Deserialize)]
struct Stranger {
    total: u64,
}

impl Machine for Stranger {
    const NAME: &'static str = "supervisor-stranger";
    const VERSION: u32 = 3;
    type Input = u64;

    fn apply(&mut self, input: &u64, _: Tick) {
        self.total += input;
    }
}

/// The child's entry point: a no-op in the parent; in a child, records a few inputs into the
/// ring the supervisor names in `FLIGHTREC_PATH` (the builder's default), then aborts.
#[test]
fn child_entry() {
    if std::env::var_os(ENV_CHILD).is_none() {
        return;
    }
    let mut recorded = Builder::new()
        .input_lane_bytes(64 << 10)
        .trace_lanes(1)
        .trace_lane_bytes(16 << 10)
        .state_capacity(4 << 10)
        .build(Stranger::default())
        .expect("the child records");
    for n in 0..100 {
        recorded.apply(&n);
    }
    std::process::abort();
}

#[test]
fn a_ring_of_an_unknown_machine_is_kept_whole_and_rotated_with_the_exports() {
    let dirs = Dirs::new();
    // An export left by an earlier crash of the same service: the oldest of three.
    std::fs::create_dir_all(&dirs.crashes).unwrap();
    let older = dirs
        .crashes
        .join("20000101T000000.000Z-supervisor-stranger-pid1.flightrec");
    std::fs::write(&older, b"an older export").unwrap();
    let unrelated = dirs.crashes.join("notes.txt");
    std::fs::write(&unrelated, b"not the supervisor's").unwrap();

    let exe = std::env::current_exe().expect("own executable");
    let service = [
        exe.as_os_str(),
        OsStr::new("--exact"),
        OsStr::new("child_entry"),
        OsStr::new("--nocapture"),
        OsStr::new("--test-threads=1"),
    ];
    let mut supervisor = Supervisor::start(
        &dirs,
        &["--restart", "--keep", "2"],
        &service,
        &[(ENV_CHILD, "1")],
    );
    let first = supervisor.line_where("the first crash", is_crash_line);
    let second = supervisor.line_where("the second crash", is_crash_line);
    kill(supervisor.pid(), Signal::SIGTERM).expect("SIGTERM to the supervisor");
    supervisor.wait();

    for line in [&first, &second] {
        assert!(
            line.starts_with("flightrec run: supervisor-stranger (pid ")
                && line.contains("was killed by SIGABRT (signal 6): SIGABRT: aborted")
                && line.contains("does not know machine supervisor-stranger v3")
                && line.contains("export it with the service's own binary"),
            "{line}"
        );
    }
    let kept: Vec<PathBuf> = supervisor
        .own_lines()
        .into_iter()
        .filter(|l| is_crash_line(l))
        .map(evidence_path)
        .collect();
    assert!(kept.len() >= 2, "{}", supervisor.stderr());
    let mut newest = kept[kept.len() - 2..].to_vec();
    newest.push(unrelated);
    newest.sort();
    // The older export is gone: kept rings and exports count together.
    assert_eq!(dirs.crash_files(), newest, "{}", supervisor.stderr());
    for ring in &newest[..2] {
        assert_eq!(ring.extension(), Some(OsStr::new("ring")));
        let summary = inspect_json(ring);
        assert_eq!(
            summary["machine"]["name"], "supervisor-stranger",
            "{summary}"
        );
        assert_eq!(summary["status"], "crashed", "{summary}");
        assert_eq!(summary["crash"]["signal_name"], "SIGABRT", "{summary}");
        assert_eq!(summary["lanes"][0]["retained"], 100, "{summary}");
    }
    dirs.assert_no_ring_left();
}

// ---------------------------------------------------------------------------------------------
// 6. The supervisor killed outright

#[test]
fn the_service_is_terminated_when_its_supervisor_is_killed() {
    let dirs = Dirs::new();
    let (mut supervisor, service_pid) = supervised_demo(&dirs);
    // SIGKILL cannot be caught: the supervisor forwards nothing, the kernel tells the service.
    kill(supervisor.pid(), Signal::SIGKILL).expect("kill the supervisor");
    let ended = eventually(Duration::from_secs(20), || process_ended(service_pid));
    if !ended {
        let _ = kill(Pid::from_raw(service_pid as i32), Signal::SIGKILL);
    }
    assert!(ended, "the service outlived its supervisor");
    supervisor.wait();
}

#[test]
fn ctrl_z_stops_the_service_with_its_supervisor_and_fg_continues_both() {
    let dirs = Dirs::new();
    let (mut supervisor, service_pid) = supervised_demo(&dirs);
    let supervisor_pid = supervisor.pid().as_raw() as u32;
    // A terminal sends Ctrl-Z's SIGTSTP to its foreground process group: the supervisor's, not
    // the service's.
    kill(supervisor.pid(), Signal::SIGTSTP).expect("Ctrl-Z the supervisor");
    for (who, pid) in [("service", service_pid), ("supervisor", supervisor_pid)] {
        assert!(
            eventually(Duration::from_secs(10), || process_state(pid) == Some('T')),
            "the {who} did not stop on Ctrl-Z (state {:?})",
            process_state(pid)
        );
    }
    // `fg` continues the supervisor's process group.
    kill(supervisor.pid(), Signal::SIGCONT).expect("continue the supervisor");
    for (who, pid) in [("service", service_pid), ("supervisor", supervisor_pid)] {
        assert!(
            eventually(Duration::from_secs(10), || process_state(pid)
                .is_some_and(|state| state != 'T')),
            "the {who} did not continue (state {:?})",
            process_state(pid)
        );
    }
    kill(supervisor.pid(), Signal::SIGTERM).expect("stop the supervisor");
    assert_eq!(
        supervisor.wait().code(),
        Some(143),
        "{}",
        supervisor.stderr()
    );
    assert!(
        process_gone(service_pid),
        "the service outlived its supervisor"
    );
}

/// Starts the demo service (at 1,000 inputs a second: minutes before its bug) under the
/// supervisor with `--restart`, and returns the supervisor and the service's pid.
fn supervised_demo(dirs: &Dirs) -> (Supervisor, u32) {
    let service = demo_service(&["--rate", "1000"]);
    let mut supervisor = Supervisor::start(dirs, &["--restart"], &service, &[]);
    let banner = supervisor.line_where("the service's banner", |l| service_banner(l).is_some());
    let (service_pid, _) = service_banner(&banner).unwrap();
    (supervisor, service_pid)
}

/// Whether `condition` holds within `timeout`.
fn eventually(timeout: Duration, condition: impl Fn() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    while !condition() {
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    true
}

/// The state letter of process `pid` in `/proc` (`T` when stopped), if it exists.
fn process_state(pid: u32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit_once(") ")?.1.chars().next()
}

/// Whether `pid` has exited: gone, or a zombie that nobody has reaped yet (its parent, the
/// supervisor, is dead).
fn process_ended(pid: u32) -> bool {
    let zombie = std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        stat.rsplit_once(") ")
            .is_some_and(|(_, rest)| rest.starts_with('Z'))
    });
    zombie || process_gone(pid)
}
