//! The export file format: a synthetic history written and read back position by position, the
//! writer's rules (no overwriting, temporary files, order), and the reader's defences, with the
//! fuzzer of `examples/fuzz_export.rs` bounded for `cargo test`: a fixed-seed run, a proptest
//! of the same property (which shrinks what it finds), and sizes and offsets claiming absurd
//! values, which must be refused without being allocated.

#[path = "../examples/fuzz_export.rs"]
mod fuzz;

use flightrec_replayer::export::format::{self, Frame, Trailer, FRAME_HEADER_LEN, TRAILER_LEN};
use flightrec_replayer::export::{
    EventKind, Export, ExportError, ExportOptions, ExportWriter, InputEntry, Metadata,
};
use flightrec_replayer::ReplayPanic;
use fuzz::{Mutation, Outcome, Pristine, RefField, Synthetic, Watchdog, HANG_LIMIT};
use proptest::prelude::*;

/// Iterations of the bounded run, and its seed.
const ITERATIONS: u64 = 300;
const SEED: u64 = 0x2026_1201;

/// `cases` per property, unless `PROPTEST_CASES` asks for a deeper (or shallower) run.
fn config(cases: u32) -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(cases);
    ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

// ---------------------------------------------------------------------------------------------
// Round trip

fn check_round_trip(history: &Synthetic, keyframe_every: u64, options: ExportOptions) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("history.flightrec");
    let size = history
        .write(&path, keyframe_every, options)
        .expect("write the export");
    assert_eq!(size, std::fs::metadata(&path).unwrap().len());
    let names: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, ["history.flightrec"], "no temporary file left");

    let export = Export::open(&path).expect("open the export");
    let n = history.inputs.len() as u64;
    assert_eq!(export.len(), n);
    assert_eq!(*export.metadata(), history.metadata(keyframe_every));
    let timeline = history.timeline();
    assert_eq!(export.event_count(), timeline.len() as u64);
    let expected_keyframes: Vec<u64> = (0..n).step_by(keyframe_every as usize).collect();
    assert_eq!(export.keyframe_positions(), expected_keyframes);

    // Position by position, forwards: inputs, diffs, states.
    for p in 0..n {
        let input = export.input(p).expect("an input");
        assert_eq!(input.kind, EventKind::Input);
        assert_eq!(input.position, p);
        assert_eq!(input.seq, history.base_seq + p);
        assert_eq!(input.name, "input");
        assert_eq!(input.summary, format!("Step {p}"));
        assert_eq!(
            input.input_tree().as_ref(),
            Some(&history.inputs[p as usize])
        );
        assert_eq!(input.raw, Some(format!("raw-{p}").into_bytes()));
        assert_eq!(
            export.diff(p).expect("a diff"),
            history.diff(p as usize),
            "diff {p}"
        );
        let state = export.state_tree(p).expect("a state");
        assert_eq!(state, history.states[p as usize], "state after input {p}");
    }
    // And backwards, and jumping, from a fresh reader (no state to step from).
    let export = Export::open(&path).expect("open again");
    let mut p = n;
    while p > 0 {
        p -= 1;
        let state = export.state_tree(p).expect("a state");
        assert_eq!(
            state, history.states[p as usize],
            "state after input {p}, backwards"
        );
        p = p.saturating_sub(p % 37);
    }
    // The whole timeline, in slices of odd sizes, and by position.
    let mut read = Vec::new();
    let mut start = 0;
    while start < export.event_count() {
        read.extend(export.events(start..start + 333).expect("events"));
        start += 333;
    }
    let read_timeline: Vec<_> = read
        .iter()
        .map(|e| (e.kind, e.trace_kind, e.position, e.summary.clone()))
        .collect();
    assert_eq!(read_timeline, timeline);
    for (i, event) in read.iter().enumerate().step_by(101) {
        assert_eq!(export.event(i as u64).expect("an event"), *event);
    }
    let traces = read.iter().filter(|e| e.kind == EventKind::Trace);
    for trace in traces.take(10) {
        assert!(trace.name.starts_with("worker-") || trace.name == "io \"main\"");
        assert!((1..=5).contains(&trace.level));
        assert!(trace.tree.is_none() && trace.raw.is_none());
    }
    for from in [0, 1, n / 2, n - 1, n] {
        let expected: Vec<_> = timeline
            .iter()
            .filter(|(_, _, position, _)| (from..from + 3).contains(position))
            .cloned()
            .collect();
        let at: Vec<_> = export
            .events_at(from..from + 3)
            .expect("events at positions")
            .iter()
            .map(|e| (e.kind, e.trace_kind, e.position, e.summary.clone()))
            .collect();
        assert_eq!(at, expected, "events at {from}..");
    }
    // Checkpoints.
    assert_eq!(export.checkpoints().len(), history.checkpoints.len());
    for (i, (seq, state)) in history.checkpoints.iter().enumerate() {
        let info = export.checkpoints()[i];
        assert_eq!((info.input_seq, info.hash), (*seq, format::checksum(state)));
        assert_eq!(info.state_len, state.len() as u64);
        assert_eq!(
            export.checkpoint_state(i).expect("checkpoint bytes"),
            *state
        );
    }
    // Past the end.
    assert!(matches!(
        export.input(n),
        Err(ExportError::OutOfRange { .. })
    ));
    assert!(matches!(
        export.state_tree(n),
        Err(ExportError::OutOfRange { .. })
    ));
    assert!(matches!(
        export.diff(n),
        Err(ExportError::OutOfRange { .. })
    ));
    assert!(matches!(
        export.event(export.event_count()),
        Err(ExportError::OutOfRange { .. })
    ));
    assert!(export.checkpoint_state(history.checkpoints.len()).is_err());
}

#[test]
fn a_synthetic_history_reads_back_position_by_position() {
    let history = Synthetic::new(5_000);
    check_round_trip(&history, 100, ExportOptions::default());
}

#[test]
fn small_chunks_and_sparse_keyframes_read_back_the_same() {
    let history = Synthetic::new(2_000);
    let options = ExportOptions {
        events_per_chunk: 7,
        diffs_per_chunk: 5,
        chunk_bytes: 2_000,
        ..ExportOptions::default()
    };
    check_round_trip(&history, 333, options);
}

#[test]
fn an_empty_history_opens() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("empty.flightrec");
    ExportWriter::create(&path, Metadata::default())
        .unwrap()
        .finish()
        .unwrap();
    let export = Export::open(&path).unwrap();
    assert!(export.is_empty());
    assert_eq!(export.event_count(), 0);
    assert!(export.events(0..10).unwrap().is_empty());
    assert!(matches!(
        export.state_tree(0),
        Err(ExportError::OutOfRange { .. })
    ));
}

// ---------------------------------------------------------------------------------------------
// The writer's rules

/// An export of another format version is refused at its header, with an error naming both
/// versions (its footer may mean something else).
#[test]
fn other_format_versions_are_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("old.flightrec");
    let mut writer = ExportWriter::create(&path, Metadata::default()).unwrap();
    one_input(&mut writer);
    writer.finish().unwrap();
    let mut bytes = std::fs::read(&path).unwrap();
    for version in [1, format::FORMAT_VERSION + 1] {
        bytes[8..12].copy_from_slice(&u32::to_le_bytes(version));
        std::fs::write(&path, &bytes).unwrap();
        let error = Export::open(&path).unwrap_err();
        let message = error.to_string();
        assert!(
            matches!(error, ExportError::Format { offset: 8, .. })
                && message.contains(&format!("format version {version}"))
                && message.contains(&format!("reads version {}", format::FORMAT_VERSION)),
            "{message}"
        );
    }
}

fn one_input(writer: &mut ExportWriter) {
    let tree = serde_json::json!("x");
    writer
        .push_input(InputEntry {
            seq: 0,
            unix_ns: 0,
            summary: "x",
            tree: &tree,
            raw: &[],
        })
        .unwrap();
}

#[test]
fn the_writer_never_overwrites_unless_asked_and_leaves_no_temporary_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a.flightrec");
    std::fs::write(&path, b"precious").unwrap();
    let refused = ExportWriter::create(&path, Metadata::default());
    assert!(matches!(refused, Err(ExportError::Exists { .. })));
    assert_eq!(std::fs::read(&path).unwrap(), b"precious");

    // A file appearing while the export is written is not replaced either.
    let other = dir.path().join("b.flightrec");
    let mut writer = ExportWriter::create(&other, Metadata::default()).unwrap();
    one_input(&mut writer);
    std::fs::write(&other, b"arrived meanwhile").unwrap();
    assert!(matches!(writer.finish(), Err(ExportError::Exists { .. })));
    assert_eq!(std::fs::read(&other).unwrap(), b"arrived meanwhile");

    // Asked to, it replaces.
    let options = ExportOptions {
        overwrite: true,
        ..ExportOptions::default()
    };
    let mut writer = ExportWriter::create_with(&path, Metadata::default(), options).unwrap();
    one_input(&mut writer);
    writer.finish().unwrap();
    assert_eq!(Export::open(&path).unwrap().len(), 1);

    // Dropped unfinished: nothing at the path, no temporary file.
    let dropped = dir.path().join("c.flightrec");
    let mut writer = ExportWriter::create(&dropped, Metadata::default()).unwrap();
    one_input(&mut writer);
    drop(writer);
    let mut names: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ["a.flightrec", "b.flightrec"]);
}

#[test]
fn the_writer_refuses_records_out_of_order() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("order.flightrec");
    let mut writer = ExportWriter::create(&path, Metadata::default()).unwrap();
    one_input(&mut writer);
    one_input(&mut writer);
    let tree = serde_json::json!({});
    writer.push_diff(1, &[]).unwrap();
    assert!(matches!(
        writer.push_diff(1, &[]),
        Err(ExportError::Misuse { .. })
    ));
    assert!(matches!(
        writer.push_diff(0, &[]),
        Err(ExportError::Misuse { .. })
    ));
    writer.push_keyframe(1, &tree).unwrap();
    assert!(matches!(
        writer.push_keyframe(0, &tree),
        Err(ExportError::Misuse { .. })
    ));
    writer.push_keyframe(5, &tree).unwrap();
    // A keyframe past the last input is found at the end.
    assert!(matches!(writer.finish(), Err(ExportError::Misuse { .. })));
    assert!(!path.exists());

    // So is a replay panic past the last input.
    let panic = ReplayPanic {
        index: 2,
        seq: 2,
        message: "too late".into(),
        location: None,
    };
    let metadata = Metadata {
        replay_panics: vec![panic],
        replay_panic_count: 1,
        ..Metadata::default()
    };
    let mut writer = ExportWriter::create(&path, metadata).unwrap();
    one_input(&mut writer);
    one_input(&mut writer);
    assert!(matches!(writer.finish(), Err(ExportError::Misuse { .. })));
    assert!(!path.exists());
}

#[test]
fn a_state_before_the_first_keyframe_is_an_error_not_a_guess() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("late.flightrec");
    let mut writer = ExportWriter::create(&path, Metadata::default()).unwrap();
    one_input(&mut writer);
    one_input(&mut writer);
    writer
        .push_keyframe(1, &serde_json::json!({"k": 1}))
        .unwrap();
    writer.finish().unwrap();
    let export = Export::open(&path).unwrap();
    assert!(matches!(
        export.state_tree(0),
        Err(ExportError::NoKeyframe { .. })
    ));
    assert_eq!(export.state_tree(1).unwrap(), serde_json::json!({"k": 1}));
    assert_eq!(export.diff(0).unwrap(), vec![]);
}

// ---------------------------------------------------------------------------------------------
// The reader's defences

/// Checks `bytes` as the fuzzer does, naming `what` if it fails.
fn check(bytes: &[u8], exact: bool, what: impl std::fmt::Debug) -> Outcome {
    fuzz::set_case(what);
    let dir = tempfile::tempdir().expect("tempdir");
    let _watchdog = Watchdog::arm(HANG_LIMIT);
    let (outcome, _peak) = fuzz::check(bytes, &dir.path().join("damaged.flightrec"), exact);
    fuzz::clear_context();
    outcome
}

#[test]
fn a_bounded_fuzz_run_reads_back_only_what_was_written() {
    fuzz::install_panic_hook(false);
    let dir = tempfile::tempdir().expect("tempdir");
    let stats = fuzz::run(SEED, 0..ITERATIONS, 0, dir.path());
    eprintln!("{stats:?}");
    assert_eq!(stats.iterations, ITERATIONS);
    // The damage reaches every path: files refused at open (always as a bad format: the
    // header, trailer and footer are checked whole), files that open with intact content, and
    // files that open but fail some reads.
    assert!(stats.refused.get("bad format") >= Some(&20), "{stats:?}");
    assert!(stats.opened > stats.opened_with_damage, "{stats:?}");
    assert!(stats.opened_with_damage > 0, "{stats:?}");
}

proptest! {
    #![proptest_config(config(128))]

    /// The fuzzer's property, with shrinking.
    #[test]
    fn damaged_exports_are_refused_or_read_back_exactly(mutations in fuzz::mutations()) {
        fuzz::install_panic_hook(false);
        let (bytes, exact) = fuzz::damaged(&mutations);
        check(&bytes, exact, &mutations);
    }

    /// Any bytes at all, and any bytes behind a valid header.
    #[test]
    fn garbage_is_refused(garbage in prop::collection::vec(any::<u8>(), 0..4096), header in any::<bool>()) {
        fuzz::install_panic_hook(false);
        let mut bytes = garbage;
        if header && bytes.len() >= 16 {
            bytes[..16].copy_from_slice(&format::encode_header());
        }
        let outcome = check(&bytes, false, "garbage");
        prop_assert!(matches!(outcome, Outcome::Refused(_)), "{outcome:?}");
    }
}

/// Sizes no file here comes near.
const ABSURD: [u64; 6] = [
    1 << 31,
    u32::MAX as u64,
    1 << 32,
    1 << 40,
    1 << 63,
    u64::MAX,
];

#[test]
fn every_truncation_is_refused() {
    fuzz::install_panic_hook(false);
    let pristine = Pristine::get();
    let len = pristine.bytes.len();
    for cut in (0..len).step_by(len / 97 + 1).chain(len - 40..len) {
        let outcome = check(&pristine.bytes[..cut], true, ("truncated to", cut));
        assert!(
            matches!(outcome, Outcome::Refused(_)),
            "cut at {cut}: {outcome:?}"
        );
    }
}

#[test]
fn absurd_trailer_fields_are_refused_without_being_allocated() {
    fuzz::install_panic_hook(false);
    let len = Pristine::get().bytes.len() as u64;
    for word in 0..2u8 {
        for value in ABSURD.into_iter().chain([0, 8, len, len - 32, len - 8]) {
            let (bytes, _) = fuzz::damaged(&[Mutation::Trailer { word, value }]);
            let outcome = check(&bytes, true, ("trailer word", word, value));
            assert_eq!(
                outcome,
                Outcome::Refused("bad format"),
                "{value} in word {word}"
            );
        }
    }
}

/// A chunk whose (checksummed, consistent) footer entry and frame header claim an absurd size:
/// refused at open, or at the read, without the claim being allocated (`fuzz::check` measures).
#[test]
fn chunks_claiming_absurd_sizes_are_refused_without_being_allocated() {
    fuzz::install_panic_hook(false);
    let chunks = Pristine::get().chunks.len();
    let fields = [
        RefField::Offset,
        RefField::StoredLen,
        RefField::RawLen,
        RefField::Count,
    ];
    for chunk in [0, chunks / 2, chunks - 1] {
        for field in fields {
            for value in ABSURD {
                let mutation = Mutation::ForgeRef {
                    chunk,
                    field,
                    value,
                };
                let (bytes, _) = fuzz::damaged(std::slice::from_ref(&mutation));
                let outcome = check(&bytes, false, &mutation);
                assert_eq!(outcome, Outcome::Refused("bad format"), "{mutation:?}");
            }
        }
    }
}

/// A raw length within the LZ4 ratio bound, but not what the block decodes to: the file opens,
/// the chunk is refused when read, before its claimed size is allocated.
#[test]
fn a_raw_length_the_block_does_not_decode_to_is_refused_before_allocating() {
    fuzz::install_panic_hook(false);
    let pristine = Pristine::get();
    // The largest chunk, so that the claim (255 times its stored size) is large.
    let (which, &(offset, stored)) = pristine
        .chunks
        .iter()
        .enumerate()
        .max_by_key(|(_, c)| c.1)
        .unwrap();
    let claim = (stored * 255) & !7;
    let mutation = Mutation::ForgeRef {
        chunk: which,
        field: RefField::RawLen,
        value: claim,
    };
    let (bytes, _) = fuzz::damaged(std::slice::from_ref(&mutation));
    let frame = Frame::decode(&bytes[offset as usize..][..FRAME_HEADER_LEN as usize]);
    assert_eq!(u64::from(frame.raw_len), claim, "the forgery took");
    let trailer = Trailer::decode(&bytes[bytes.len() - TRAILER_LEN as usize..]).unwrap();
    assert_ne!(trailer.footer_offset, 0);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("claim.flightrec");
    std::fs::write(&path, &bytes).unwrap();
    let export = Export::open(&path).expect("the claim is within the ratio bound");
    // Read everything: exactly the forged chunk fails, naming itself.
    let errors: Vec<_> = (0..export.len())
        .flat_map(|p| {
            [
                export.input(p).err(),
                export.state_tree(p).err(),
                export.diff(p).err(),
            ]
        })
        .flatten()
        .chain((0..export.checkpoints().len()).filter_map(|i| export.checkpoint_state(i).err()))
        .collect();
    assert!(!errors.is_empty());
    for error in &errors {
        let text = error.to_string();
        assert!(
            text.contains(&format!("chunk {which} ")) && text.contains("decompresses to"),
            "{text}"
        );
    }
    let outcome = check(&bytes, false, &mutation);
    assert!(matches!(outcome, Outcome::Opened { .. }), "{outcome:?}");
}
