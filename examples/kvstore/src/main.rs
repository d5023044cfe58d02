//! `kvstore`: a key-value store on a loopback TCP port, recorded by flightrec, whose own binary
//! also reads its recordings (`kvstore flightrec replay RING`, …). See the README.

mod machine;
mod protocol;
mod server;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// A key-value store on a loopback TCP port, recorded by flightrec.
#[derive(Debug, Parser)]
#[command(name = "kvstore", version, max_term_width = 100)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve GET, SET, DEL and INCR on 127.0.0.1, recording every write into a ring file.
    ///
    /// Prints the address and the ring file's path on its first line. The ring file is
    /// FLIGHTREC_PATH if set.
    Serve {
        /// The port; 0 picks a free one.
        #[arg(long, default_value_t = 7878)]
        port: u16,
    },
    /// Read this store's ring files (inspect, replay, verify, tui, export), follow a running
    /// one (tail), or run the store under the supervisor (run).
    Flightrec(flightrec::cli::Cli),
}

fn main() -> ExitCode {
    match Cli::parse().command {
        Command::Serve { port } => match server::serve(port) {
            Ok(()) => ExitCode::SUCCESS,
            Err(error) => {
                eprintln!("kvstore: {error:#}");
                ExitCode::FAILURE
            }
        },
        Command::Flightrec(cli) => flightrec::cli::main_with::<machine::KvStore>(cli),
    }
}
