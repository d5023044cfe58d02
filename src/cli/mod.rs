//! The `flightrec` command line. A service calls [`main_for`] with its own machine type from its
//! own binary to ship the same commands for its ring files:
//!
//! ```no_run
//! # type MyMachine = flightrec::demo::Ledger;
//! fn main() -> std::process::ExitCode {
//!     flightrec::cli::main_for::<MyMachine>()
//! }
//! ```
//!
//! Or, beside commands of its own, under a subcommand of its own (`myservice flightrec replay
//! FILE`), with [`Cli`] as a variant of its clap enum and [`main_with`]; `examples/kvstore` does so:
//!
//! ```no_run
//! # type MyMachine = flightrec::demo::Ledger;
//! use clap::Parser;
//!
//! #[derive(clap::Parser)]
//! enum MyService {
//!     /// Serve.
//!     Serve,
//!     /// Read this service's ring files.
//!     Flightrec(flightrec::cli::Cli),
//! }
//!
//! fn main() -> std::process::ExitCode {
//!     match MyService::parse() {
//!         MyService::Serve => std::process::ExitCode::SUCCESS,
//!         MyService::Flightrec(cli) => flightrec::cli::main_with::<MyMachine>(cli),
//!     }
//! }
//! ```

mod chrome;
mod demo;
mod export;
mod inspect;
pub mod perfetto;
mod progress;
mod replay;
mod run;
mod tail;
mod time;
mod tui;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand};
use flightrec_schemas::Machine;

/// Exit code for bad input: a file that is not a ring file, truncated, or of a future version.
pub const EXIT_BAD_INPUT: u8 = 2;

/// A deterministic record-and-replay flight recorder for Rust services.
///
/// A service links the recorder and keeps its recent inputs, trace events and state checkpoints
/// in a ring file in shared memory. The file survives a crash; these commands read it.
#[derive(Debug, Parser)]
#[command(
    name = "flightrec",
    version,
    propagate_version = true,
    max_term_width = 100
)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the demo: a ledger service with a latent bug, recorded until it crashes.
    ///
    /// Without options, runs the service as a child process, waits for it to die, and shows
    /// what the ring file kept. The same seed always crashes at the same input.
    Demo(demo::DemoArgs),
    /// Show what a ring file or an export holds: header, status, cause of death, lanes,
    /// checkpoints, losses (for an export: its metadata, counts, keyframes and checkpoints).
    ///
    /// Exits 0 on a readable file, 2 when the file is not a ring file or an export, is
    /// truncated, or was written by a newer flightrec.
    Inspect(inspect::InspectArgs),
    /// Replay a ring file: the state after an input, the input itself, and what it changed.
    ///
    /// Restores the base checkpoint and re-executes the recorded inputs through the machine.
    /// An export (`.flightrec`) is read instead, without the machine. Exits 2 when the file
    /// cannot be replayed (not a ring file, another machine, damaged).
    Replay(replay::ReplayArgs),
    /// Replay everything and check the state hashes recorded at checkpoints.
    ///
    /// Exits 0 when every recorded hash matches the replayed state, 1 when the replayed history
    /// diverges from the recorded one (the report names the inputs where), 2 on bad input.
    Verify(replay::VerifyArgs),
    /// Open a ring file or an export in the terminal UI, at the crash, to step back through every
    /// state.
    ///
    /// Keys: ← → step, ↑ ↓ move, Tab switches pane, Enter folds, w finds the input that last
    /// changed a field, [ ] checkpoints, / search, f filter, t trace events, ? help, q quit.
    Tui(tui::TuiArgs),
    /// Write a ring file's replayed history to a self-contained export (`.flightrec`) that
    /// `inspect` and `replay` read anywhere without the service's binary; or, with `--format
    /// chrome` or `--format perfetto`, a ring file or an export as Chrome trace-event JSON or
    /// as Perfetto's protobuf trace, for Perfetto UI.
    ///
    /// Every input's diff is computed from the states before and after it, so exporting costs
    /// a pass over the whole state per input. Exits 2 when the input cannot be read.
    Export(export::ExportArgs),
    /// Follow a running service's ring file live, like `tail -f`: each new input (its number,
    /// time of day, and what it is when the file records this binary's machine, else its size)
    /// and trace event (time, level, thread, text), one line each, merged by time.
    ///
    /// Read-only: the service is not disturbed. Starts at the end unless `--from-start`.
    /// Reports inputs overwritten before they could be read, and ends, exit 0, with a line
    /// saying how the service ended (exited, crashed with its cause, or died), or at Ctrl-C.
    Tail(tail::TailArgs),
    /// Supervise a service: keep the evidence of every crash, and restart it if asked.
    ///
    /// Hands the service a fresh ring file path in FLIGHTREC_PATH, which the recorder's default
    /// builder records to. When it dies abnormally (killed by a signal, a nonzero exit code, or a
    /// crash recorded in its ring) it is restarted at once with `--restart` (after a delay that
    /// doubles up to 4 s while it keeps crashing within 10 s), one line gives the cause, and its
    /// ring is exported in the background into DIR as TIME-MACHINE-pidN.flightrec; a ring of a
    /// machine this binary does not know is kept whole as .ring. A clean exit leaves nothing.
    ///
    /// The service runs in its own process group (so it should not read the terminal); SIGINT,
    /// SIGTERM, SIGHUP and SIGQUIT are forwarded to it. After SIGINT, SIGTERM or SIGQUIT it is
    /// not restarted. Dying of a forwarded SIGINT, SIGTERM or SIGHUP is a requested stop, not a
    /// crash; SIGQUIT (Ctrl-\) asks for the evidence, which is kept as after a crash. Ctrl-Z
    /// (SIGTSTP) stops the service with the supervisor, and `fg` or `bg` continues both. Exits
    /// with the last instance's exit code (128 + N after signal N).
    Run(run::RunArgs),
    /// Print a shell completion script, e.g. `flightrec completions bash > /etc/bash_completion.d/flightrec`.
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
}

/// An error with the exit code it deserves.
#[derive(Debug)]
pub struct Failure {
    code: u8,
    error: anyhow::Error,
}

impl Failure {
    /// Bad input (exit 2).
    pub fn bad_input(error: impl Into<anyhow::Error>) -> Failure {
        Failure {
            code: EXIT_BAD_INPUT,
            error: error.into(),
        }
    }
}

impl<E: Into<anyhow::Error>> From<E> for Failure {
    fn from(error: E) -> Failure {
        Failure {
            code: 1,
            error: error.into(),
        }
    }
}

/// The standalone `flightrec` binary: replays the built-in demo machine.
pub fn main() -> ExitCode {
    main_for::<crate::demo::Ledger>()
}

/// Parses the process arguments and runs the command, replaying ring files of machine `M`.
pub fn main_for<M: Machine + Clone + Send + 'static>() -> ExitCode {
    main_with::<M>(Cli::parse())
}

/// Runs a command line parsed by the service's own: for a binary that serves these commands
/// under a subcommand of its own, with a variant `Flightrec(flightrec::cli::Cli)` in its clap
/// enum (see `examples/kvstore`).
pub fn main_with<M: Machine + Clone + Send + 'static>(cli: Cli) -> ExitCode {
    restore_sigpipe();
    run::<M>(cli)
}

/// `flightrec replay --json FILE | head` should end quietly, as other command-line tools do,
/// rather than panic on the closed pipe: give SIGPIPE back its default action.
#[allow(unsafe_code)]
fn restore_sigpipe() {
    use nix::sys::signal::{signal, SigHandler, Signal};
    // SAFETY: restoring the default disposition installs no handler code, and this runs at the
    // start of `main`, before any thread that could be writing to a pipe.
    let _ = unsafe { signal(Signal::SIGPIPE, SigHandler::SigDfl) };
}

/// Runs a parsed command line and reports errors on one line of stderr.
pub fn run<M: Machine + Clone + Send + 'static>(cli: Cli) -> ExitCode {
    let result = match cli.command {
        Command::Demo(args) => demo::run(args),
        Command::Inspect(args) => inspect::run(args),
        Command::Replay(args) => replay::run_replay::<M>(args),
        Command::Verify(args) => replay::run_verify::<M>(args),
        Command::Tui(args) => tui::run::<M>(args),
        Command::Export(args) => export::run::<M>(args),
        Command::Run(args) => run::run::<M>(args),
        Command::Tail(args) => tail::run::<M>(args),
        Command::Completions { shell } => {
            clap_complete::generate(
                shell,
                &mut Cli::command(),
                "flightrec",
                &mut std::io::stdout(),
            );
            Ok(ExitCode::SUCCESS)
        }
    };
    result.unwrap_or_else(|failure| {
        eprintln!("flightrec: {:#}", failure.error);
        ExitCode::from(failure.code)
    })
}

/// Where demo ring files go by default: `/dev/shm/flightrec-demo`, or the temporary directory.
fn default_demo_dir() -> PathBuf {
    let shm = std::path::Path::new("/dev/shm");
    let base = if shm.is_dir() {
        shm.to_owned()
    } else {
        std::env::temp_dir()
    };
    base.join("flightrec-demo")
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_command_line_is_consistent() {
        use clap::CommandFactory;
        super::Cli::command().debug_assert();
    }
}
