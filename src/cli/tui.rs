//! `flightrec tui`: the terminal UI over a ring file (replayed by this binary's machine) or an
//! export (read as it is, with no machine).

use std::path::PathBuf;
use std::process::ExitCode;

use flightrec_schemas::Machine;
use flightrec_tui::TuiError;

use super::replay::MemoryArgs;
use super::Failure;

#[derive(Debug, clap::Args)]
pub struct TuiArgs {
    /// The ring file (`.ring`) or export (`.flightrec`).
    file: PathBuf,
    #[command(flatten)]
    memory: MemoryArgs,
}

pub fn run<M: Machine + Clone + Send + 'static>(args: TuiArgs) -> Result<ExitCode, Failure> {
    if super::export::is_export(&args.file) {
        flightrec_tui::run_export(&args.file).map_err(failure)?;
    } else {
        flightrec_tui::run::<M>(&args.file, &args.memory.options()).map_err(failure)?;
    }
    Ok(ExitCode::SUCCESS)
}

/// A file that cannot be replayed is bad input (exit 2); a terminal failure is not.
pub fn failure(error: TuiError) -> Failure {
    match error {
        TuiError::Replay(_) | TuiError::Export(_) | TuiError::NotATerminal => {
            Failure::bad_input(error)
        }
        TuiError::Io(_) => error.into(),
    }
}
