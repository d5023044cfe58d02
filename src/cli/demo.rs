//! `flightrec demo`: the ledger service, run as a child process that really dies.

use std::io::{IsTerminal as _, Read as _};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, ExitStatus, Stdio};

use anyhow::Context as _;
use flightrec_replayer::{signal_name, Ring, Summary};

use crate::demo::service::{self, ServiceOptions};
use crate::demo::Ledger;
use flightrec_replayer::tree;
use flightrec_replayer::History;

use super::{default_demo_dir, Failure};

#[derive(Debug, clap::Args)]
pub struct DemoArgs {
    /// Print what survived instead of opening the terminal UI.
    #[arg(long)]
    no_tui: bool,
    /// Run only the service in this process (so it can be killed from outside); it prints its
    /// ring file's path and pid, then records until its bug kills it.
    #[arg(long)]
    service: bool,
    /// Seed of the traffic; the same seed crashes at the same input.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Directory for the ring file [default: /dev/shm/flightrec-demo]
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Inputs per second (0: as fast as possible).
    #[arg(long, default_value_t = 200_000)]
    rate: u64,
    /// Exact ring file path (overrides --dir).
    #[arg(long, hide = true)]
    ring: Option<PathBuf>,
    /// Stop cleanly after this many inputs instead of running until the crash.
    #[arg(long, hide = true)]
    max_inputs: Option<u64>,
    /// Panic after this many inputs instead of waiting for the ledger's bug.
    #[arg(long, hide = true)]
    crash_after: Option<u64>,
}

pub fn run(args: DemoArgs) -> Result<ExitCode, Failure> {
    // The recorder gives FLIGHTREC_PATH precedence over the path it is built with (that is how
    // `flightrec run` places rings): name the file it will really write.
    let from_env = std::env::var_os(flightrec_recorder::ENV_PATH).filter(|p| !p.is_empty());
    let ring = match args.ring.clone().or(from_env.map(PathBuf::from)) {
        Some(path) => path,
        None => fresh_ring_path(args.dir.clone().unwrap_or_else(default_demo_dir), args.seed)?,
    };
    if args.service {
        return run_service(&args, ring);
    }
    run_and_report(&args, &ring)
}

/// A path in `dir` that does not exist yet.
fn fresh_ring_path(dir: PathBuf, seed: u64) -> anyhow::Result<PathBuf> {
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let mut path = dir.join(format!("ledger-seed{seed}-{secs}.ring"));
    for n in 2.. {
        if !path.exists() {
            break;
        }
        path = dir.join(format!("ledger-seed{seed}-{secs}-{n}.ring"));
    }
    Ok(path)
}

fn run_service(args: &DemoArgs, ring: PathBuf) -> Result<ExitCode, Failure> {
    // One write: under `flightrec run` the supervisor's lines share this stderr, and tests read
    // the banner back.
    let banner = format!(
        "ledger service pid {} recording to {}\n",
        std::process::id(),
        ring.display()
    );
    let _ = std::io::Write::write_all(&mut std::io::stderr().lock(), banner.as_bytes());
    let options = ServiceOptions {
        seed: args.seed,
        ring,
        rate: args.rate,
        max_inputs: args.max_inputs,
        crash_after: args.crash_after,
    };
    let inputs = service::run(&options)?;
    eprintln!("ledger service stopped cleanly after {inputs} inputs");
    Ok(ExitCode::SUCCESS)
}

/// The arguments that led to `demo` on this process's command line: none for `flightrec demo`,
/// `flightrec` for a service serving these commands under a subcommand (`kvstore flightrec
/// demo`), so that the service child is started through the same path.
fn arguments_before_demo() -> Vec<std::ffi::OsString> {
    std::env::args_os()
        .skip(1)
        .take_while(|argument| argument != "demo")
        .collect()
}

fn run_and_report(args: &DemoArgs, ring: &Path) -> Result<ExitCode, Failure> {
    // The service would refuse it too, but only after we had announced a run.
    if ring.symlink_metadata().is_ok() {
        let exists = anyhow::anyhow!(
            "{} already exists; flightrec never overwrites a ring file",
            ring.display()
        );
        return Err(exists.into());
    }
    let exe = std::env::current_exe()
        .context("cannot find the flightrec executable to start the service")?;
    let mut child = Command::new(exe)
        .args(arguments_before_demo())
        .args([
            "demo",
            "--service",
            "--seed",
            &args.seed.to_string(),
            "--rate",
            &args.rate.to_string(),
        ])
        .arg("--ring")
        .arg(ring)
        .args(args.max_inputs.map(|n| format!("--max-inputs={n}")))
        .args(args.crash_after.map(|n| format!("--crash-after={n}")))
        .env("RUST_BACKTRACE", "0")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .context("cannot start the demo service")?;
    println!(
        "started the ledger service (pid {}, seed {}), recording into",
        child.id(),
        args.seed
    );
    println!("  {}", ring.display());
    println!(
        "it runs {} until its latent bug kills it...",
        rate_text(args.rate)
    );
    let mut stderr = String::new();
    if let Some(mut pipe) = child.stderr.take() {
        let _ = pipe.read_to_string(&mut stderr);
    }
    let status = child.wait().context("waiting for the demo service")?;
    println!();
    println!("the service {}", describe_exit(status));
    for line in stderr
        .lines()
        .filter(|l| !l.is_empty() && !l.starts_with("ledger service") && !l.starts_with("note:"))
    {
        println!("  │ {line}");
    }
    println!();
    println!("what survived in the ring file:");
    let opened = match Ring::open(ring) {
        Ok(opened) if opened.header().pid == child.id() => opened,
        // The service failed before recording (its stderr, shown above, says why).
        _ if status.code().is_some_and(|code| code != 0 && code != 101) => {
            return Err(
                anyhow::anyhow!("the demo service did not record; see its error above").into(),
            )
        }
        Ok(_) => {
            let foreign = anyhow::anyhow!("{} was not written by the demo service", ring.display());
            return Err(foreign.into());
        }
        Err(error) => return Err(Failure::bad_input(error)),
    };
    print!("{}", super::inspect::render(&Summary::of(&opened)));
    println!();
    let history = match super::replay::open_history::<Ledger>(ring, &Default::default()) {
        Ok(mut history) => {
            print!("{}", story(&mut history));
            Some(history)
        }
        Err(failure) => {
            println!("it cannot be replayed: {:#}", failure.error);
            None
        }
    };
    println!();
    match history {
        Some(history) if !args.no_tui && std::io::stdout().is_terminal() => {
            flightrec_tui::show(history).map_err(super::tui::failure)?;
        }
        Some(_) if !args.no_tui => {
            println!("(standard output is not a terminal, so the terminal UI stays closed)");
        }
        _ => {}
    }
    println!("look again with:");
    println!("  flightrec inspect {}", ring.display());
    println!("  flightrec replay {} --at N", ring.display());
    println!("  flightrec verify {}", ring.display());
    println!("  flightrec tui {}", ring.display());
    Ok(ExitCode::SUCCESS)
}

fn rate_text(rate: u64) -> String {
    if rate == 0 {
        "as fast as it can".into()
    } else {
        format!("at {rate} inputs/s")
    }
}

/// "died of SIGSEGV", "exited with code 101", "exited cleanly".
pub fn describe_exit(status: ExitStatus) -> String {
    match (status.code(), status.signal()) {
        (Some(0), _) => "exited cleanly".into(),
        (Some(101), _) => "panicked and exited with code 101".into(),
        (Some(code), _) => format!("exited with code {code}"),
        (None, Some(signal)) => format!("was killed by {} (signal {signal})", signal_name(signal)),
        (None, None) => "ended in an unknown way".into(),
    }
}

/// Inputs shown before the crash.
const LAST_INPUTS: usize = 5;

/// The replayed story of the crash: the last inputs, the state they produced, and the input that
/// first broke the ledger's invariant.
fn story(history: &mut History<Ledger>) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "the replayed story ({} inputs re-executed from the checkpoint at input {}; {}):",
        history.len(),
        history.base_seq(),
        super::replay::verification_brief(history.verification())
    );
    if history.is_empty() {
        let _ = writeln!(out, "  no input was recorded after that checkpoint");
        return out;
    }
    let last = history.len() - 1;
    let _ = writeln!(out, "  the last inputs before the end:");
    for index in last.saturating_sub(LAST_INPUTS - 1)..=last {
        let Some(event) = history.input(index) else {
            continue;
        };
        let panic = history.panics().iter().find(|p| p.index == index);
        let _ = writeln!(
            out,
            "    #{:<8} {}{}",
            event.seq,
            tree::brief(&tree::tree_of(&event.input)),
            panic.map_or(String::new(), |_| "   ← panicked".into())
        );
    }
    if let Some(state) = history.state_after(last) {
        let _ = writeln!(
            out,
            "  the ledger then: {} accounts holding {} cents, {} deposited − {} withdrawn = {} expected",
            state.accounts.len(),
            state.held(),
            state.deposited,
            state.withdrawn,
            state.expected()
        );
    }
    match first_unbalanced(history) {
        Some(index) => {
            let event = history.input(index).expect("a position of the history");
            let (seq, input) = (event.seq, tree::brief(&tree::tree_of(&event.input)));
            let _ = writeln!(
                out,
                "  the invariant (holdings = deposits − withdrawals) first broke at input #{seq}: {input}"
            );
            let changes = history.diff(index, 11).unwrap_or_default();
            out.push_str(&super::replay::render_changes(&changes, 10, "    "));
            let _ = writeln!(out, "  (flightrec replay --at {seq} shows it whole)");
        }
        None if !history.base_state().balanced() => {
            let _ = writeln!(
                out,
                "  the invariant was already broken at the checkpoint at input {}",
                history.base_seq()
            );
        }
        None => {
            let _ = writeln!(out, "  the invariant holds throughout the replayed inputs");
        }
    }
    out
}

/// The first input after which the ledger no longer balances. Money that goes missing is never
/// found again, so unbalanced states form a suffix of the history: a binary search finds it.
fn first_unbalanced(history: &mut History<Ledger>) -> Option<usize> {
    if !history.base_state().balanced() {
        return None;
    }
    let (mut low, mut high) = (0, history.len());
    while low < high {
        let mid = low + (high - low) / 2;
        let balanced = history.state_after(mid).is_some_and(Ledger::balanced);
        if balanced {
            low = mid + 1;
        } else {
            high = mid;
        }
    }
    (low < history.len()).then_some(low)
}
