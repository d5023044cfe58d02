//! The replay fuzzer of `examples/fuzz_replay.rs`, bounded for `cargo test`: the first
//! iterations of a fixed seed, a proptest of the same property (which shrinks what it finds),
//! and header fields and record lengths claiming absurd sizes, which must be answered without
//! allocating them.

#[path = "../examples/fuzz_replay.rs"]
mod fuzz;

use flightrec_replayer::{recover_checkpoints, recover_lane, CheckpointProblem, Ring};
use flightrec_schemas::layout::{
    checkpoint as cp, header as h, lane_entry, slot, MAX_RECORD_LEN, SLOT_SIZE,
};
use flightrec_schemas::slot::Corruption;
use fuzz::{Extreme, Outcome, Pristine, Watchdog, HANG_LIMIT};
use proptest::prelude::*;

/// Iterations of the bounded run, and its seed.
const ITERATIONS: u64 = 300;
const SEED: u64 = 0x2026_1125;

/// Sizes no file here comes near. In a 4-byte field the larger ones keep their low bits: 0 or
/// `u32::MAX`, absurd too.
const ABSURD: [u64; 6] = [
    1 << 31,
    u32::MAX as u64,
    1 << 40,
    1 << 62,
    1 << 63,
    u64::MAX,
];

/// Record lengths beyond any lane's limit.
const ABSURD_LENGTHS: [u32; 3] = [MAX_RECORD_LEN + 1, 1 << 31, u32::MAX];

/// `cases` per property, unless `PROPTEST_CASES` asks for a deeper (or shallower) run.
fn config(cases: u32) -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(cases);
    ProptestConfig {
        cases,
        // Report the shrunk case; do not write regression files into the source tree.
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// Checks `bytes` as the fuzzer does (panicking on any violation, a hang aborting), naming
/// `what` if it fails. Every test installs the fuzzer's panic hook first, before any replay.
fn check(bytes: &[u8], what: impl std::fmt::Debug) -> Outcome {
    fuzz::set_case(what);
    let dir = tempfile::tempdir().expect("tempdir");
    let _watchdog = Watchdog::arm(HANG_LIMIT);
    let (outcome, _peak) = fuzz::check(bytes, &dir.path().join("damaged.ring"));
    fuzz::clear_context();
    outcome
}

#[test]
fn a_bounded_fuzz_run_replays_only_what_was_recorded() {
    fuzz::install_panic_hook(false);
    let dir = tempfile::tempdir().expect("tempdir");
    let stats = fuzz::run(SEED, 0..ITERATIONS, 0, dir.path());
    eprintln!("{stats:?}");
    assert_eq!(stats.iterations, ITERATIONS);
    // The damage reaches every path, or the run proved less than it seems: refusals of several
    // kinds, intact replays, and replays that lost inputs.
    assert!(stats.refused.len() >= 3, "{stats:?}");
    assert!(stats.replayed > stats.replayed_partly, "{stats:?}");
    assert!(stats.replayed_partly > 0, "{stats:?}");
}

proptest! {
    #![proptest_config(config(256))]

    /// The fuzzer's property, with shrinking: any damage is refused (naming the file) or
    /// replayed into only recorded inputs and the states they give, within bounded memory.
    #[test]
    fn damaged_files_are_refused_or_replay_only_what_was_recorded(
        mutations in fuzz::mutations(),
    ) {
        fuzz::install_panic_hook(false);
        let mut bytes = Pristine::get().bytes.clone();
        for mutation in &mutations {
            mutation.apply(&mut bytes);
        }
        check(&bytes, &mutations);
    }
}

/// The pristine file with `value` written over the `width`-byte field at `at`.
fn with_field(at: u64, width: usize, value: u64) -> Vec<u8> {
    let mut bytes = Pristine::get().bytes.clone();
    fuzz::set_field(&mut bytes, at as usize, width, &Extreme::Absolute(value));
    bytes
}

/// Every header field that sizes or places something, set to absurd sizes: refused as a bad
/// format, with no more memory than the file's own size (checked by `fuzz::check`).
#[test]
fn absurd_sizes_in_the_header_are_refused_without_being_allocated() {
    fuzz::install_panic_hook(false);
    let pristine = Pristine::get();
    let mut fields = vec![
        (h::FILE_SIZE, 8),
        (h::HEADER_SIZE, 4),
        (h::MACHINE_NAME_LEN, 4),
        (h::LANE_COUNT, 4),
        (h::CHECKPOINT_OFFSET, 8),
        (h::CHECKPOINT_SLOT_SIZE, 8),
    ];
    for lane in 0..pristine.header.lanes.len() as u64 {
        let entry = h::LANE_TABLE + lane * lane_entry::SIZE;
        fields.extend([
            (entry + lane_entry::OFFSET, 8),
            (entry + lane_entry::SLOT_COUNT, 8),
        ]);
    }
    for (at, width) in fields {
        for value in ABSURD {
            let outcome = check(&with_field(at, width, value), ("field", at, value));
            assert_eq!(outcome, Outcome::Refused("bad format"), "{value} at {at}");
        }
    }
}

/// `bytes` written to a file in a fresh directory, opened.
fn ring_of(bytes: &[u8]) -> (tempfile::TempDir, Ring) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("test.ring");
    std::fs::write(&path, bytes).expect("write");
    let ring = Ring::open(&path).expect("the file opens");
    (dir, ring)
}

/// The newest record of each lane claiming an absurd length is reported corrupt and loses only
/// itself: the file is still replayed, within the memory its lanes justify.
#[test]
fn records_claiming_absurd_lengths_are_skipped_without_being_allocated() {
    fuzz::install_panic_hook(false);
    let pristine = Pristine::get();
    let (_dir, ring) = ring_of(&pristine.bytes);
    for (lane, info) in pristine.header.lanes.iter().enumerate() {
        let newest = recover_lane(&ring, info).last().expect("records").pos;
        let slot_index = newest % info.slot_count;
        let at = info.slots_offset() + slot_index * SLOT_SIZE + slot::LEN;
        for value in ABSURD_LENGTHS {
            let bytes = with_field(at, 4, value.into());
            let (_dir, damaged) = ring_of(&bytes);
            let corrupt = recover_lane(&damaged, info).corrupt;
            let bad_length = Corruption::BadLength { len: value };
            assert_eq!(corrupt, vec![(slot_index, bad_length)], "lane {lane}");
            let outcome = check(&bytes, ("record length", at, value));
            // Losing the newest input ends the replay one input early.
            let inputs = pristine.replayed_len - usize::from(lane == 0);
            assert_eq!(
                outcome,
                Outcome::Replayed {
                    inputs,
                    intact: lane != 0
                },
                "lane {lane}"
            );
        }
    }
}

/// Checkpoints whose headers (with a valid hash) claim absurd state lengths are not read: with
/// both forged, there is nothing to replay from, and nothing was allocated for the claims.
#[test]
fn checkpoints_claiming_absurd_state_lengths_are_refused_without_being_allocated() {
    fuzz::install_panic_hook(false);
    let pristine = Pristine::get();
    let (_dir, ring) = ring_of(&pristine.bytes);
    let checkpoints: Vec<_> = recover_checkpoints(&ring).into_iter().flatten().collect();
    assert_eq!(checkpoints.len(), 2, "both checkpoint slots are written");
    for value in ABSURD {
        let mut bytes = pristine.bytes.clone();
        for checkpoint in &checkpoints {
            let mut header = checkpoint.header;
            header.state_len = value;
            let slot = pristine.header.checkpoint_offset
                + u64::from(checkpoint.slot) * pristine.header.checkpoint_slot_size;
            for (i, word) in header.body_words().iter().enumerate() {
                let at = (slot + cp::INPUT_SEQ) as usize + 8 * i;
                bytes[at..at + 8].copy_from_slice(&word.to_le_bytes());
            }
        }
        let (_dir, damaged) = ring_of(&bytes);
        for found in recover_checkpoints(&damaged) {
            let (_, problem) = found.expect_err("a checkpoint claiming an absurd length");
            assert_eq!(problem, CheckpointProblem::BadLength(value));
        }
        let outcome = check(&bytes, ("checkpoint state lengths", value));
        assert_eq!(
            outcome,
            Outcome::Refused("nothing to replay from"),
            "{value}"
        );
    }
}
