//! `flightrec run`: supervises a service, keeps the evidence of each abnormal death and
//! restarts it.
//!
//! Each instance gets a fresh ring path in `FLIGHTREC_PATH`, which the recorder's default builder
//! honours. When an instance dies abnormally, the next one is started first and the ring is
//! exported afterwards on a background thread ([`evidence`]): an export replays the whole ring
//! and can take minutes, and the service must be back at once.

/// Prints one line of the supervisor's on stderr, `flightrec run: ` first.
macro_rules! say {
    ($($arg:tt)*) => {
        $crate::cli::run::say_line(&format!($($arg)*))
    };
}

mod evidence;
mod signals;

use std::ffi::OsString;
use std::os::unix::process::{CommandExt as _, ExitStatusExt as _};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, ExitStatus};
use std::time::{Duration, Instant};

use flightrec_replayer::{CrashSummary, Fate, OpenError, Ring};
use flightrec_schemas::Machine;
use nix::sys::signal::Signal;
use nix::unistd::Pid;

use super::Failure;
use evidence::{Job, Keeper};
use signals::Events;

#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// Restart the service when it dies abnormally: at once, or after a delay that doubles up
    /// to 4 s while it keeps crashing within 10 s of starting.
    #[arg(long)]
    restart: bool,
    /// Keep the evidence of the last K crashes in DIR (exports and kept ring files alike);
    /// older ones are removed.
    #[arg(long, value_name = "K", default_value_t = 5,
          value_parser = clap::value_parser!(u32).range(1..))]
    keep: u32,
    /// Where the evidence goes; created when first needed.
    #[arg(long, value_name = "DIR", default_value = "flightrec-crashes")]
    dir: PathBuf,
    /// The service's command line, after `--`.
    #[arg(value_name = "CMD", required = true, num_args = 1.., trailing_var_arg = true,
          allow_hyphen_values = true, value_parser = clap::value_parser!(OsString))]
    command: Vec<OsString>,
}

/// Instances that crash within this long of starting count as a crash loop.
const QUICK_CRASH: Duration = Duration::from_secs(10);
/// The delay before the next restart after two quick crashes in a row, doubled after each
/// further one, up to [`MAX_DELAY`].
const FIRST_DELAY: Duration = Duration::from_millis(250);
const MAX_DELAY: Duration = Duration::from_secs(4);

pub fn run<M: Machine + Clone + Send + 'static>(args: RunArgs) -> Result<ExitCode, Failure> {
    let events = Events::start()?;
    let keeper = Keeper::start::<M>(args.dir.clone(), args.keep as usize, events.sender())?;
    let mut supervisor = Supervisor {
        command: &args.command,
        restart: args.restart,
        rings: RingPlace::new(&args.command[0]),
        events: &events,
        keeper: &keeper,
        backoff: Backoff::default(),
    };
    let result = supervisor.supervise::<M>();
    keeper.finish(&events);
    result
}

/// A running instance of the service.
struct Instance {
    child: Child,
    ring: PathBuf,
    started: Instant,
}

/// How an instance ended.
struct Ended {
    pid: u32,
    status: ExitStatus,
    /// The last signal forwarded to it, if any.
    forwarded: Option<Signal>,
    /// Whether SIGINT, SIGTERM or SIGQUIT was among them: it was asked to stop, so it is not
    /// restarted.
    stop_asked: bool,
    ring: PathBuf,
    lived: Duration,
}

struct Supervisor<'a> {
    command: &'a [OsString],
    restart: bool,
    rings: RingPlace,
    events: &'a Events,
    keeper: &'a Keeper,
    backoff: Backoff,
}

impl Supervisor<'_> {
    /// Runs instances until one ends cleanly, is stopped, or crashes without `--restart`;
    /// returns its exit status as ours.
    fn supervise<M: Machine>(&mut self) -> Result<ExitCode, Failure> {
        let mut instance = self.start()?;
        say!(
            "started {} (pid {}) with FLIGHTREC_PATH={}",
            self.rings.stem,
            instance.child.id(),
            instance.ring.display()
        );
        loop {
            let ended = self.wait(instance)?;
            let ring = RingFacts::read(&ended.ring);
            match verdict(&ended, &ring) {
                Verdict::Clean => {
                    let _ = std::fs::remove_file(&ended.ring);
                    return Ok(mirror(ended.status));
                }
                Verdict::Stopped(signal) => {
                    let _ = std::fs::remove_file(&ended.ring);
                    say!(
                        "{} (pid {}) stopped on {}",
                        ring.name().unwrap_or(&self.rings.stem),
                        ended.pid,
                        signal.as_str()
                    );
                    return Ok(mirror(ended.status));
                }
                Verdict::Abnormal => {}
            }
            match self.after_crash::<M>(&ended, &ring)? {
                Some(next) => instance = next,
                None => return Ok(mirror(ended.status)),
            }
        }
    }

    /// Restarts the service if it should be (at once, or after the backoff delay), says what
    /// happened, and hands its ring to the keeper. `None` when no instance follows.
    fn after_crash<M: Machine>(
        &mut self,
        ended: &Ended,
        ring: &RingFacts,
    ) -> Result<Option<Instance>, Failure> {
        let job = self.plan::<M>(ended, ring);
        let restart = self.restart && !ended.stop_asked;
        let delay = if restart {
            self.backoff.after(ended.lived)
        } else {
            Duration::ZERO
        };
        // Restart before anything else: the export waits, the service does not.
        let next = (restart && delay.is_zero()).then(|| self.start());
        let then = match (&next, restart) {
            (Some(Ok(instance)), _) => restarted(instance),
            (Some(Err(_)), _) => "cannot restart it".into(),
            (None, true) => format!(
                "restarting in {} ms: {} quick crashes in a row (within {} s of starting)",
                delay.as_millis(),
                self.backoff.quick_crashes,
                QUICK_CRASH.as_secs()
            ),
            (None, false) => "not restarted".into(),
        };
        say!(
            "{}; {then}",
            crash_line(&self.rings.stem, ended, ring, &job)
        );
        if let Some(job) = job {
            self.keeper.submit(job);
        }
        match next {
            Some(started) => started.map(Some),
            None if restart && self.pause(delay) => {
                let instance = self.start()?;
                say!("{}", restarted(&instance));
                Ok(Some(instance))
            }
            None => Ok(None),
        }
    }

    /// Starts an instance with a fresh ring path, in its own process group so that a SIGINT
    /// from the terminal reaches it once, through us, rather than twice. It is sent SIGTERM if
    /// the supervisor dies (killed itself, it could forward nothing): a service nobody
    /// supervises would go on unwatched, and a supervisor started again would start a second.
    fn start(&mut self) -> Result<Instance, Failure> {
        let ring = self.rings.fresh()?;
        let program = &self.command[0];
        let mut command = Command::new(program);
        command
            .args(&self.command[1..])
            .env(flightrec_recorder::ENV_PATH, &ring)
            .process_group(0);
        terminate_with_supervisor(&mut command);
        let child = command
            .spawn()
            .map_err(|error| spawn_failure(program, error))?;
        Ok(Instance {
            child,
            ring,
            started: Instant::now(),
        })
    }

    /// Waits for the instance to end, forwarding signals to its process group.
    fn wait(&self, mut instance: Instance) -> Result<Ended, Failure> {
        let pid = instance.child.id();
        let (mut forwarded, mut stop_asked) = (None, false);
        loop {
            // Checked before each wait: a SIGCHLD that arrives meanwhile stays pending.
            if let Some(status) = instance.child.try_wait()? {
                return Ok(Ended {
                    pid,
                    status,
                    forwarded,
                    stop_asked,
                    ring: instance.ring,
                    lived: instance.started.elapsed(),
                });
            }
            let Some(event) = self.events.next(None) else {
                continue;
            };
            // The child is not reaped yet, so its pid (the group's id) is still ours.
            let group = Pid::from_raw(i32::try_from(pid).unwrap_or(i32::MAX));
            if event.is_suspend() {
                signals::suspend(Some(group));
            } else if event.is_continue() {
                let _ = nix::sys::signal::killpg(group, Signal::SIGCONT);
            }
            let Some(signal) = event.to_forward() else {
                continue;
            };
            let _ = nix::sys::signal::killpg(group, signal);
            forwarded = Some(signal);
            stop_asked |= matches!(signal, Signal::SIGINT | Signal::SIGTERM | Signal::SIGQUIT);
        }
    }

    /// Waits `delay`; `false` if a signal to forward came first (there is no one to forward it
    /// to: it stops the supervisor).
    fn pause(&self, delay: Duration) -> bool {
        let until = Instant::now() + delay;
        loop {
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return true;
            }
            if let Some(event) = self.events.next(Some(left)) {
                if event.is_suspend() {
                    signals::suspend(None);
                }
                if event.to_forward().is_some() {
                    say!("stopped while waiting to restart");
                    return false;
                }
            }
        }
    }

    /// What to keep of a crashed instance: an export when this binary knows its machine, the
    /// ring file itself otherwise; nothing when it wrote no ring.
    fn plan<M: Machine>(&self, ended: &Ended, ring: &RingFacts) -> Option<Job> {
        let (label, export) = match ring {
            RingFacts::Missing => return None,
            RingFacts::Unreadable(_) => (evidence::label(&self.rings.stem), false),
            RingFacts::Read(read) => (
                evidence::label(&read.machine),
                read.machine == M::NAME && read.version == M::VERSION,
            ),
        };
        Some(Job {
            pid: ended.pid,
            ring: ended.ring.clone(),
            out: self.keeper.destination(&label, ended.pid, export),
        })
    }
}

/// `restarted as pid N with FLIGHTREC_PATH=PATH`: the new ring, for `flightrec tail`.
fn restarted(instance: &Instance) -> String {
    format!(
        "restarted as pid {} with FLIGHTREC_PATH={}",
        instance.child.id(),
        instance.ring.display()
    )
}

/// Writes a line in one `write`: the service writes to the same stderr, and a line written in
/// pieces (as `eprintln!` does) could be cut by one of its lines.
fn say_line(text: &str) {
    use std::io::Write as _;
    let line = format!("flightrec run: {text}\n");
    let _ = std::io::stderr().lock().write_all(line.as_bytes());
}

/// Restart delays: none, unless instances keep crashing within [`QUICK_CRASH`] of starting.
#[derive(Debug, Default)]
struct Backoff {
    /// Instances in a row that crashed that quickly.
    quick_crashes: u32,
}

impl Backoff {
    /// The delay before restarting after an instance that lived `lived`.
    fn after(&mut self, lived: Duration) -> Duration {
        if lived >= QUICK_CRASH {
            self.quick_crashes = 0;
            return Duration::ZERO;
        }
        self.quick_crashes += 1;
        match self.quick_crashes {
            0 | 1 => Duration::ZERO,
            n => FIRST_DELAY
                .saturating_mul(1 << (n - 2).min(16))
                .min(MAX_DELAY),
        }
    }
}

/// Spawning failed: exit 127 when the command does not exist, 126 when it cannot be run, as a
/// shell would.
/// Makes the child of `command` receive SIGTERM when the supervisor dies. Spawning happens on
/// the supervisor's main thread, which lives as long as the supervisor: the kernel sends the
/// signal when the thread that forked exits.
#[allow(unsafe_code)]
fn terminate_with_supervisor(command: &mut Command) {
    let supervisor = nix::unistd::getpid();
    let bind = move || {
        nix::sys::prctl::set_pdeathsig(Signal::SIGTERM)?;
        // Had the supervisor died before that, nothing would signal the child: it gives up.
        if nix::unistd::getppid() != supervisor {
            return Err(nix::errno::Errno::ESRCH.into());
        }
        Ok(())
    };
    // SAFETY: the closure runs in the forked child before exec, and only makes two system calls
    // (prctl, getppid), both async-signal-safe; it allocates nothing and takes no lock.
    unsafe {
        command.pre_exec(bind);
    }
}

fn spawn_failure(program: &std::ffi::OsStr, error: std::io::Error) -> Failure {
    let code = match error.kind() {
        std::io::ErrorKind::NotFound => 127,
        _ => 126,
    };
    Failure {
        code,
        error: anyhow::anyhow!("cannot run {}: {error}", Path::new(program).display()),
    }
}

/// Our exit code for the service's status: its own code, or 128 + N after signal N.
fn mirror(status: ExitStatus) -> ExitCode {
    match (status.code(), status.signal()) {
        (Some(code), _) => ExitCode::from(code as u8),
        (None, Some(signal)) => ExitCode::from((128 + signal) as u8),
        (None, None) => ExitCode::FAILURE,
    }
}

/// Where instances' ring files go: `FLIGHTREC_DIR`, or where the recorder puts them by default
/// (`/dev/shm`, or the temporary directory).
struct RingPlace {
    dir: PathBuf,
    /// The command's file name, for ring names and messages.
    stem: String,
    made: u64,
}

impl RingPlace {
    fn new(program: &OsString) -> RingPlace {
        let dir = match std::env::var_os(flightrec_recorder::ENV_DIR).filter(|d| !d.is_empty()) {
            Some(dir) => PathBuf::from(dir),
            None if Path::new("/dev/shm").is_dir() => PathBuf::from("/dev/shm"),
            None => std::env::temp_dir(),
        };
        let stem = Path::new(program)
            .file_name()
            .map_or_else(|| "service".into(), |n| n.to_string_lossy().into_owned());
        RingPlace { dir, stem, made: 0 }
    }

    /// A path that does not exist yet: the recorder refuses to overwrite a ring file.
    fn fresh(&mut self) -> anyhow::Result<PathBuf> {
        use anyhow::Context as _;
        std::fs::create_dir_all(&self.dir)
            .with_context(|| format!("cannot create {}", self.dir.display()))?;
        let label = evidence::label(&self.stem);
        loop {
            self.made += 1;
            let name = format!("{label}-run{}-{}.ring", std::process::id(), self.made);
            let path = self.dir.join(name);
            if path.symlink_metadata().is_err() {
                return Ok(path);
            }
        }
    }
}

/// What the ring file of an ended instance says.
enum RingFacts {
    /// It wrote none (it does not record, or died before creating it).
    Missing,
    /// It wrote one that cannot be read (the reason).
    Unreadable(String),
    Read(ReadRing),
}

struct ReadRing {
    machine: String,
    version: u32,
    fate: Fate,
    crash: Option<CrashSummary>,
}

impl RingFacts {
    fn read(path: &Path) -> RingFacts {
        match Ring::open(path) {
            Ok(ring) => RingFacts::Read(ReadRing {
                machine: ring.header().machine_name.clone(),
                version: ring.header().machine_version,
                fate: ring.fate(),
                crash: ring.crash().ok().flatten().map(|c| CrashSummary::from(&c)),
            }),
            Err(OpenError::Io { error, .. }) if error.kind() == std::io::ErrorKind::NotFound => {
                RingFacts::Missing
            }
            Err(error) => RingFacts::Unreadable(error.to_string()),
        }
    }

    /// The machine's name, when the ring could be read.
    fn name(&self) -> Option<&str> {
        match self {
            RingFacts::Read(read) => Some(&read.machine),
            _ => None,
        }
    }

    fn crashed(&self) -> bool {
        matches!(self, RingFacts::Read(ring) if ring.fate == Fate::Crashed)
    }
}

#[derive(Debug, PartialEq, Eq)]
enum Verdict {
    /// Exit code 0 and no crash recorded: nothing to keep.
    Clean,
    /// Ended by the signal forwarded to it (or exited with 128 + its number) and no crash
    /// recorded: the stop that was asked for (or that a closing terminal brought).
    Stopped(Signal),
    /// Killed by another signal, a nonzero exit code, or a crash recorded in the ring.
    Abnormal,
}

fn verdict(ended: &Ended, ring: &RingFacts) -> Verdict {
    if ring.crashed() {
        return Verdict::Abnormal;
    }
    match (ended.status.code(), ended.status.signal(), ended.forwarded) {
        (Some(0), _, _) => Verdict::Clean,
        // SIGQUIT (Ctrl-\) asks for a core dump: evidence wanted, not a quiet stop.
        (_, _, Some(Signal::SIGQUIT)) => Verdict::Abnormal,
        (None, Some(died_of), Some(sent)) if died_of == sent as i32 => Verdict::Stopped(sent),
        (Some(code), None, Some(sent)) if code == 128 + sent as i32 => Verdict::Stopped(sent),
        _ => Verdict::Abnormal,
    }
}

/// `ledger (pid 4242) panicked and exited with code 101: "audit failed…" at src/x.rs:9:5;
/// exporting its ring to DIR/NAME.flightrec`: the cause, and where the evidence goes.
fn crash_line(stem: &str, ended: &Ended, ring: &RingFacts, job: &Option<Job>) -> String {
    let how = match ended.status.code() {
        Some(0) => "exited with code 0 after a recorded crash".into(),
        _ => super::demo::describe_exit(ended.status),
    };
    let (name, cause) = match ring {
        RingFacts::Read(read) => (read.machine.as_str(), read.crash.as_ref().map(crash_cause)),
        _ => (stem, None),
    };
    let cause = cause.map_or(String::new(), |c| format!(": {c}"));
    let evidence = match (ring, job) {
        (RingFacts::Missing, _) | (_, None) => {
            "it wrote no ring file (does it record with flightrec's Builder?)".to_owned()
        }
        (RingFacts::Unreadable(why), Some(job)) => format!(
            "keeping its unreadable ring file as {} ({why})",
            job.out.display()
        ),
        (RingFacts::Read(read), Some(job)) if job.out.extension().is_some_and(|e| e == "ring") => {
            format!(
                "keeping its ring file as {} (this flightrec does not know machine {} v{}: \
                 export it with the service's own binary's flightrec commands, `export {} -o \
                 OUT.flightrec`)",
                job.out.display(),
                read.machine,
                read.version,
                job.out.display()
            )
        }
        (RingFacts::Read(_), Some(job)) => format!("exporting its ring to {}", job.out.display()),
    };
    format!("{name} (pid {}) {how}{cause}; {evidence}", ended.pid)
}

/// The recorded cause, on one line: a panic's message (quoted, escaped) and location, or the
/// fatal signal's description.
fn crash_cause(crash: &CrashSummary) -> String {
    match &crash.location {
        Some(location) if crash.kind == "panic" => format!("{:?} at {location}", crash.message),
        _ => crash.message.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ended(status: ExitStatus, forwarded: Option<Signal>) -> Ended {
        Ended {
            pid: 7,
            status,
            forwarded,
            stop_asked: forwarded.is_some(),
            ring: PathBuf::from("r.ring"),
            lived: Duration::ZERO,
        }
    }

    fn exited(code: i32) -> ExitStatus {
        ExitStatus::from_raw(code << 8)
    }

    fn killed(signal: Signal) -> ExitStatus {
        ExitStatus::from_raw(signal as i32)
    }

    fn crashed_ring() -> RingFacts {
        RingFacts::Read(ReadRing {
            machine: "kv".into(),
            version: 1,
            fate: Fate::Crashed,
            crash: None,
        })
    }

    #[test]
    fn verdicts_follow_the_status_the_forwarded_signal_and_the_ring() {
        use Signal::*;
        let none = RingFacts::Missing;
        assert_eq!(verdict(&ended(exited(0), None), &none), Verdict::Clean);
        assert_eq!(verdict(&ended(exited(3), None), &none), Verdict::Abnormal);
        assert_eq!(
            verdict(&ended(killed(SIGKILL), None), &none),
            Verdict::Abnormal
        );
        assert_eq!(
            verdict(&ended(killed(SIGTERM), None), &none),
            Verdict::Abnormal
        );
        let stopped = verdict(&ended(killed(SIGTERM), Some(SIGTERM)), &none);
        assert_eq!(stopped, Verdict::Stopped(SIGTERM));
        let by_code = verdict(&ended(exited(130), Some(SIGINT)), &none);
        assert_eq!(by_code, Verdict::Stopped(SIGINT));
        let quit = verdict(&ended(killed(SIGQUIT), Some(SIGQUIT)), &none);
        assert_eq!(quit, Verdict::Abnormal, "Ctrl-\\ keeps the evidence");
        let other = verdict(&ended(killed(SIGSEGV), Some(SIGTERM)), &none);
        assert_eq!(other, Verdict::Abnormal);
        let crashed = crashed_ring();
        assert_eq!(
            verdict(&ended(exited(0), None), &crashed),
            Verdict::Abnormal
        );
        let crashed_on_stop = verdict(&ended(killed(SIGTERM), Some(SIGTERM)), &crashed);
        assert_eq!(crashed_on_stop, Verdict::Abnormal);
    }

    #[test]
    fn the_exit_code_mirrors_the_service() {
        assert_eq!(mirror(exited(0)), ExitCode::SUCCESS);
        assert_eq!(mirror(exited(101)), ExitCode::from(101));
        assert_eq!(mirror(killed(Signal::SIGTERM)), ExitCode::from(143));
    }

    #[test]
    fn restarts_back_off_only_in_a_crash_loop() {
        let mut backoff = Backoff::default();
        let delays: Vec<u128> = [1, 1, 1, 1, 1, 1, 1, 1, 20, 1, 1]
            .into_iter()
            .map(|lived| backoff.after(Duration::from_secs(lived)).as_millis())
            .collect();
        assert_eq!(
            delays,
            [0, 250, 500, 1000, 2000, 4000, 4000, 4000, 0, 0, 250]
        );
    }
}
