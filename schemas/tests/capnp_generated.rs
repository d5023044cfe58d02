//! The Rust code generated from `schemas/trace.capnp` is checked in (`src/trace_capnp.rs`), so
//! that a build needs no `capnp` binary. This test regenerates it into a temporary directory with
//! `capnpc` and fails if it differs from the checked-in file: the schema was changed without
//! regenerating, or the generated file was edited by hand.
//!
//! Where the `capnp` binary is missing (`scripts/install-deps.sh` installs it), the test is
//! skipped with a loud message, unless `CI` is set: CI must check it.
//!
//! To regenerate after changing the schema:
//!
//! ```text
//! FLIGHTREC_REGENERATE_CAPNP=1 cargo test -p flightrec-schemas --test capnp_generated
//! ```
#![cfg(not(loom))]

use std::path::Path;
use std::process::Command;

const SCHEMA: &str = "trace.capnp";
const GENERATED: &str = "src/trace_capnp.rs";

fn capnp_installed() -> bool {
    Command::new("capnp")
        .arg("--version")
        .output()
        .is_ok_and(|output| output.status.success())
}

/// The generated code without its doc comments: newer `capnp` binaries hand the plugin the
/// schema's comments, which it copies as `///` lines, older ones (Debian 12's 0.9) do not.
fn code_of(generated: &str) -> String {
    generated
        .lines()
        .filter(|line| !line.trim_start().starts_with("///"))
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn checked_in_code_matches_the_schema() {
    let crate_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    if !capnp_installed() {
        let message = "the `capnp` binary is not installed, so the checked-in \
                       schemas/src/trace_capnp.rs was NOT compared with schemas/trace.capnp \
                       (run scripts/install-deps.sh)";
        if std::env::var_os("CI").is_some() {
            panic!("{message}; CI must check it");
        }
        eprintln!("\n!!! SKIPPED: {message} !!!\n");
        return;
    }
    let out = tempfile::tempdir().expect("a temporary directory");
    capnpc::CompilerCommand::new()
        .src_prefix(crate_dir)
        .file(crate_dir.join(SCHEMA))
        .output_path(out.path())
        .run()
        .expect("capnp compiles schemas/trace.capnp");
    let generated_path = out.path().join("trace_capnp.rs");
    let generated = std::fs::read_to_string(&generated_path).expect("the generated file");
    let checked_in_path = crate_dir.join(GENERATED);
    if std::env::var_os("FLIGHTREC_REGENERATE_CAPNP").is_some() {
        std::fs::write(&checked_in_path, &generated).expect("write the generated file");
        eprintln!("regenerated {}", checked_in_path.display());
        return;
    }
    let checked_in = std::fs::read_to_string(&checked_in_path).unwrap_or_default();
    let (checked_in, generated) = (code_of(&checked_in), code_of(&generated));
    if checked_in != generated {
        let first_difference = checked_in
            .lines()
            .zip(generated.lines())
            .position(|(a, b)| a != b)
            .unwrap_or(checked_in.lines().count().min(generated.lines().count()));
        panic!(
            "{GENERATED} differs from what capnpc generates from {SCHEMA} (first at line {}); \
             regenerate it with FLIGHTREC_REGENERATE_CAPNP=1 cargo test -p flightrec-schemas \
             --test capnp_generated",
            first_difference + 1
        );
    }
}
