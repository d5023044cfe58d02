//! `flightrec replay` and `flightrec verify` on ring files recorded in this process: the state
//! after an input with its diff, JSON output, the range check of `--at`, a machine the binary
//! does not know, and a recording whose history the binary's ledger does not reproduce (as a
//! patched build would see a production trace): `verify` exits 1 and names where it departs.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use flightrec::demo::{Ledger, LedgerInput, Traffic};
use flightrec::recorder::Builder;
use flightrec::{Machine, Tick};
use serde::{Deserialize, Serialize};

fn flightrec(args: &[&str], ring: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_flightrec"))
        .args(args.iter().take(1))
        .arg(ring)
        .args(args.iter().skip(1))
        .stdin(Stdio::null())
        .output()
        .expect("run flightrec")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn small(dir: &Path, name: &str) -> (Builder, PathBuf) {
    let path = dir.join(format!("{name}.ring"));
    let builder = Builder::new()
        .path(&path)
        .input_lane_bytes(1 << 20)
        .trace_lanes(1)
        .trace_lane_bytes(16 << 10)
        .state_capacity(1 << 20)
        .checkpoint_every_inputs(1_000)
        .crash_capture(false)
        .counters(false);
    (builder, path)
}

/// Records `count` inputs of the demo traffic through machine `M` and exits cleanly.
fn record<M: Machine<Input = LedgerInput>>(
    dir: &Path,
    name: &str,
    machine: M,
    count: usize,
) -> PathBuf {
    let (builder, path) = small(dir, name);
    let mut recorded = builder.build(machine).expect("create a ring");
    for input in Traffic::new(7).take(count) {
        recorded.apply(&input);
    }
    recorded.finish();
    path
}

#[test]
fn replay_shows_the_input_what_it_changed_and_the_state_after_it() {
    let dir = tempfile::tempdir().unwrap();
    let ring = record(dir.path(), "ledger", Ledger::default(), 2_500);
    let output = flightrec(&["replay", "--at", "2100"], &ring);
    let stdout = text(&output.stdout);
    assert!(output.status.success(), "{stdout}{}", text(&output.stderr));
    let mut expected = Ledger::default();
    let inputs: Vec<LedgerInput> = Traffic::new(7).take(2_101).collect();
    for (seq, input) in inputs.iter().enumerate() {
        expected.apply(
            input,
            Tick {
                seq: seq as u64,
                unix_ns: 0,
            },
        );
    }
    assert!(stdout.contains("input #2100 of 2000..=2499"), "{stdout}");
    assert!(
        stdout.contains(&format!("deposited: {}", expected.deposited)),
        "{stdout}"
    );
    assert!(stdout.contains("changed\n"), "{stdout}");

    let json = flightrec(&["replay", "--at", "2100", "--json"], &ring);
    assert!(json.status.success());
    let value: serde_json::Value = serde_json::from_slice(&json.stdout).expect("JSON");
    assert_eq!(value["seq"], 2100);
    assert_eq!(value["input"], serde_json::to_value(&inputs[2100]).unwrap());
    assert_eq!(value["state"], serde_json::to_value(&expected).unwrap());
    assert!(
        value["diff"].as_array().is_some_and(|d| !d.is_empty()),
        "{value}"
    );
}

#[test]
fn replay_refuses_an_input_outside_the_history_naming_the_range() {
    let dir = tempfile::tempdir().unwrap();
    let ring = record(dir.path(), "ledger", Ledger::default(), 1_500);
    for at in ["999", "1500"] {
        let output = flightrec(&["replay", "--at", at], &ring);
        let stderr = text(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{stderr}");
        assert!(stderr.contains("1000 to 1499"), "{stderr}");
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
    }
}

#[test]
fn verify_passes_on_a_faithful_recording() {
    let dir = tempfile::tempdir().unwrap();
    let ring = record(dir.path(), "ledger", Ledger::default(), 3_500);
    let output = flightrec(&["verify"], &ring);
    let stdout = text(&output.stdout);
    assert_eq!(output.status.code(), Some(0), "{stdout}");
    assert!(stdout.contains("verified"), "{stdout}");
    let json = flightrec(&["verify", "--json"], &ring);
    let value: serde_json::Value = serde_json::from_slice(&json.stdout).expect("JSON");
    assert_eq!(value["passed"], true);
    assert!(!value["checks"].as_array().unwrap().is_empty(), "{value}");
}

/// The ledger as an older build had it: the same name, version, state and inputs, but transfers
/// charge no fee. Replaying its recording with today's ledger departs at the first fee.
#[derive(Clone, Default, Serialize, Deserialize)]
struct FeelessLedger(Ledger);

impl Machine for FeelessLedger {
    const NAME: &'static str = Ledger::NAME;
    const VERSION: u32 = Ledger::VERSION;
    type Input = LedgerInput;

    fn apply(&mut self, input: &LedgerInput, tick: Tick) {
        let fees_before = self.0.fees;
        self.0.apply(input, tick);
        if let LedgerInput::Transfer { from, .. } = *input {
            // Give the fee back: the old build never took it.
            let fee = self.0.fees - fees_before;
            self.0.fees = fees_before;
            if let Some(payer) = self.0.accounts.get_mut(from as usize) {
                payer.balance += fee;
            }
        }
    }
}

#[test]
fn verify_names_the_window_and_the_fields_where_a_different_build_departs() {
    let dir = tempfile::tempdir().unwrap();
    let ring = record(dir.path(), "feeless", FeelessLedger::default(), 3_500);
    let output = flightrec(&["verify"], &ring);
    let stdout = text(&output.stdout);
    assert_eq!(
        output.status.code(),
        Some(1),
        "{stdout}{}",
        text(&output.stderr)
    );
    assert!(stdout.contains("DIVERGED"), "{stdout}");
    assert!(stdout.contains("between inputs 3000 and 3499"), "{stdout}");
    assert!(stdout.contains("fees: 0 → "), "{stdout}");

    let json = flightrec(&["verify", "--json"], &ring);
    assert_eq!(json.status.code(), Some(1));
    let value: serde_json::Value = serde_json::from_slice(&json.stdout).expect("JSON");
    assert_eq!(value["passed"], false);
    assert_eq!(value["divergence"]["from_seq"], 3000);
    assert_eq!(value["divergence"]["to_seq"], 3500);
    let fields = value["divergence"]["fields"].as_array().expect("fields");
    assert!(fields.iter().any(|f| f["path"] == "fees"), "{value}");
}

/// A machine this binary does not know.
#[derive(Clone, Default, Serialize, Deserialize)]
struct Counter(u64);

impl Machine for Counter {
    const NAME: &'static str = "counter";
    const VERSION: u32 = 3;
    type Input = u64;
    fn apply(&mut self, input: &u64, _tick: Tick) {
        self.0 += input;
    }
}

#[test]
fn a_machine_this_binary_does_not_know_gets_a_message_saying_how_to_replay_it() {
    let dir = tempfile::tempdir().unwrap();
    let (builder, ring) = small(dir.path(), "counter");
    let mut recorded = builder.build(Counter::default()).unwrap();
    recorded.apply(&5);
    recorded.finish();
    for command in ["replay", "verify"] {
        let output = flightrec(&[command], &ring);
        let stderr = text(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{stderr}");
        assert!(stderr.contains("`counter` version 3"), "{stderr}");
        assert!(stderr.contains("flightrec::cli"), "{stderr}");
    }
}

#[test]
fn a_recording_without_inputs_after_its_checkpoint_shows_that_state() {
    let dir = tempfile::tempdir().unwrap();
    let ring = record(dir.path(), "ledger", Ledger::default(), 0);
    let output = flightrec(&["replay"], &ring);
    let stdout = text(&output.stdout);
    assert_eq!(
        output.status.code(),
        Some(0),
        "{stdout}{}",
        text(&output.stderr)
    );
    assert!(
        stdout.contains("no input was recorded after the checkpoint at input 0"),
        "{stdout}"
    );
    assert!(stdout.contains("accounts: ["), "{stdout}");
}

#[test]
fn verify_says_which_inputs_no_recorded_hash_covers() {
    let dir = tempfile::tempdir().unwrap();
    let ring = record(dir.path(), "ledger", Ledger::default(), 1_500);
    let (builder, live) = small(dir.path(), "unfinished");
    let mut recorded = builder.build(Ledger::default()).unwrap();
    for input in Traffic::new(7).take(1_500) {
        recorded.apply(&input);
    }
    // Forgotten, as a killed process would be: no final checkpoint.
    std::mem::forget(recorded);
    let output = flightrec(&["verify"], &live);
    let stdout = text(&output.stdout);
    assert_eq!(output.status.code(), Some(0), "{stdout}");
    assert!(
        stdout.contains("inputs 1000..=1499 (500 inputs) come after the last checkpoint"),
        "{stdout}"
    );
    let finished = text(&flightrec(&["verify"], &ring).stdout);
    assert!(
        !finished.contains("come after the last checkpoint"),
        "{finished}"
    );
}

#[test]
fn a_reader_that_stops_early_ends_the_command_quietly() {
    let dir = tempfile::tempdir().unwrap();
    let ring = record(dir.path(), "ledger", Ledger::default(), 1_500);
    let mut child = Command::new(env!("CARGO_BIN_EXE_flightrec"))
        .args(["replay", "--json"])
        .arg(&ring)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take()); // the reader is gone before the first byte
    let output = child.wait_with_output().unwrap();
    let stderr = text(&output.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
}
