//! The replayer reads ring files as untrusted input. These tests damage a real ring file, written
//! by the recorder, in every way a disk, a copy or an attacker might (flipped bits, overwritten
//! or zeroed ranges, truncation, trailing garbage, absurd header fields), and check that opening
//! and recovering it never panics, that a refusal names the file and what is wrong, that damage
//! is detected rather than returned as data, and that recovery allocates no more than the lane
//! it reads justifies.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::OnceLock;

use flightrec_recorder::{Builder, Level, Machine, Tick};
use flightrec_replayer::{
    recover_checkpoints, recover_lane, Checkpoint, LaneRecords, OpenError, Ring, Summary,
};
use flightrec_schemas::header::{crash_state, FormatError, LaneInfo, LaneKind};
use flightrec_schemas::layout::{
    crash, header as h, lane_control, lane_entry, slot, CHECKPOINT_HEADER_SIZE, FORMAT_VERSION,
    HEADER_SIZE, MAGIC, PAGE, SLOT_SIZE,
};
use flightrec_schemas::slot::{Slots, SLOT_WORDS};
use proptest::prelude::*;
use proptest::sample::Index;
use serde::{Deserialize, Serialize};

/// Counts its inputs and keeps the last one, so checkpoints carry a few bytes of real state.
#[derive(Default, Serialize, Deserialize)]
struct Blobs {
    inputs: u64,
    bytes: u64,
    last: Vec<u8>,
}

impl Machine for Blobs {
    const NAME: &'static str = "blobs";
    const VERSION: u32 = 1;
    type Input = Vec<u8>;
    fn apply(&mut self, input: &Vec<u8>, _tick: Tick) {
        self.inputs += 1;
        self.bytes += input.len() as u64;
        self.last.clone_from(input);
    }
}

/// Input `i`: 0 to 199 bytes (so records of one to five slots), and now and then one larger
/// than the lane accepts (dropped and counted by the recorder).
fn input(i: u64) -> Vec<u8> {
    let len = if i % 997 == 500 {
        15_000
    } else {
        (i * 37 % 200) as usize
    };
    (0..len).map(|j| (i as usize * 31 + j * 7) as u8).collect()
}

/// Trace message `i` of thread `t`: up to a few hundred bytes, and now and then longer than a
/// trace lane accepts (truncated by the recorder).
fn message(t: u64, i: u64) -> String {
    let len = if i % 301 == 150 {
        5_000
    } else {
        (i * 13 % 300) as usize
    };
    let mut text = format!("t{t} e{i} ");
    text.extend((0..len).map(|j| (b'a' + ((i as usize + j) % 26) as u8) as char));
    text
}

type Records = BTreeMap<u64, (u64, u64, Vec<u8>)>;

/// The ring file as written, and everything recovered from it undamaged.
struct Pristine {
    bytes: Vec<u8>,
    lanes: Vec<LaneInfo>,
    checkpoint_offset: u64,
    checkpoint_slot_size: u64,
    /// Per lane: seq → (pos, ticks, payload).
    records: Vec<Records>,
    /// Per checkpoint slot.
    checkpoints: Vec<Option<Checkpoint>>,
}

fn by_seq(lane: &LaneRecords) -> Records {
    lane.iter()
        .map(|r| (r.seq, (r.pos, r.ticks, r.payload.to_vec())))
        .collect()
}

fn pristine() -> &'static Pristine {
    static PRISTINE: OnceLock<Pristine> = OnceLock::new();
    PRISTINE.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let mut recorded = Builder::new()
            .dir(dir.path())
            .input_lane_bytes(64 << 10)
            .trace_lanes(2)
            .trace_lane_bytes(16 << 10)
            .state_capacity(16 << 10)
            .checkpoint_every_inputs(700)
            .crash_capture(false)
            .counters(false)
            .build(Blobs::default())
            .expect("create the ring file");
        let tracer = recorded.tracer();
        let claimed = std::sync::Barrier::new(3);
        std::thread::scope(|s| {
            for t in 0..2u64 {
                let (tracer, claimed) = (tracer.clone(), &claimed);
                s.spawn(move || {
                    tracer.event(Level::Info, &message(t, 0));
                    // Both threads hold a lane before either gives its lane back.
                    claimed.wait();
                    for i in 1..700 {
                        match i % 3 {
                            0 => tracer.span_enter(Level::Debug, &message(t, i)),
                            1 => tracer.event(Level::Warn, &message(t, i)),
                            _ => tracer.span_exit(Level::Debug, &message(t, i)),
                        }
                    }
                });
            }
            claimed.wait();
            for i in 0..3000 {
                recorded.apply(&input(i));
            }
        });
        let path = recorded.finish();
        let bytes = std::fs::read(&path).unwrap();
        let ring = Ring::open(&path).expect("the recorder wrote a valid file");
        let header = ring.header().clone();
        assert_eq!(header.file_size, bytes.len() as u64);
        let mut records = Vec::new();
        for lane in &header.lanes {
            let recovered = recover_lane(&ring, lane);
            assert!(recovered.torn.is_empty() && recovered.corrupt.is_empty());
            assert!(
                recovered.lost() > 0,
                "every lane should have wrapped: {lane:?}"
            );
            records.push(by_seq(&recovered));
        }
        assert!(records[0]
            .values()
            .any(|r| r.2.len() > 2 * SLOT_SIZE as usize));
        let mut checkpoints = vec![None, None];
        for found in recover_checkpoints(&ring) {
            let checkpoint = found.expect("both checkpoint slots are written");
            let slot = checkpoint.slot as usize;
            checkpoints[slot] = Some(checkpoint);
        }
        Pristine {
            bytes,
            lanes: header.lanes.clone(),
            checkpoint_offset: header.checkpoint_offset,
            checkpoint_slot_size: header.checkpoint_slot_size,
            records,
            checkpoints,
        }
    })
}

/// An open failure must be one of the `OpenError` variants, name the file, and say what is
/// wrong.
fn check_refusal(error: &OpenError, path: &Path) -> Result<(), TestCaseError> {
    let text = error.to_string();
    prop_assert!(
        text.contains(&path.display().to_string()),
        "error does not name the file: {}",
        text
    );
    match error {
        OpenError::Format { path: p, error } => {
            prop_assert_eq!(p.as_path(), path);
            let what = error.to_string();
            prop_assert!(!what.is_empty() && text.contains(&what), "{}", text);
        }
        OpenError::NotReady { path: p } => prop_assert_eq!(p.as_path(), path),
        OpenError::Io { .. } => {
            return Err(TestCaseError::fail(format!(
                "an existing, readable file gave {text}"
            )))
        }
    }
    Ok(())
}

/// Opens `path` and runs every reader over it. On success checks that recovery stays within
/// the lanes' bytes, and that wherever the file still describes a lane or the checkpoints as
/// the pristine file did, every record and checkpoint returned is exactly the one written.
/// Returns whether the file opened.
fn read_everything(path: &Path) -> Result<bool, TestCaseError> {
    let pristine = pristine();
    let ring = match Ring::open(path) {
        Ok(ring) => ring,
        Err(error) => {
            check_refusal(&error, path)?;
            return Ok(false);
        }
    };
    let header = ring.header().clone();
    let summary = Summary::of(&ring);
    prop_assert_eq!(summary.lanes.len(), header.lanes.len());
    let _ = format!("{summary:?}");
    let _ = (ring.live(), ring.crash(), ring.fate());
    for lane in &header.lanes {
        let _ = ring.lane_name(lane);
        let recovered = recover_lane(&ring, lane);
        let lane_bytes = lane.slot_count * SLOT_SIZE;
        let payload: u64 = recovered.iter().map(|r| r.payload.len() as u64).sum();
        prop_assert!(
            payload <= lane_bytes,
            "{} payload bytes recovered from a lane of {} bytes",
            payload,
            lane_bytes
        );
        prop_assert!(recovered.len() as u64 <= lane.slot_count);
        prop_assert!(recovered.torn.len() as u64 <= lane.slot_count);
        prop_assert!(recovered.corrupt.len() as u64 <= lane.slot_count);
        let seqs: Vec<u64> = recovered.seqs().collect();
        prop_assert!(seqs.windows(2).all(|w| w[0] < w[1]));
        let Some(same) = pristine.lanes.iter().position(|l| l == lane) else {
            continue;
        };
        for record in &recovered {
            let written = pristine.records[same].get(&record.seq);
            prop_assert!(
                written.is_some(),
                "lane {}: seq {} was never retained in the pristine file",
                same,
                record.seq
            );
            let (pos, ticks, bytes) = written.unwrap();
            prop_assert_eq!((record.pos, record.ticks), (*pos, *ticks));
            prop_assert!(
                record.payload == bytes.as_slice(),
                "lane {}: damaged payload of seq {} accepted as data",
                same,
                record.seq
            );
        }
    }
    let capacity = header.checkpoint_slot_size - CHECKPOINT_HEADER_SIZE;
    let same_checkpoints = header.checkpoint_offset == pristine.checkpoint_offset
        && header.checkpoint_slot_size == pristine.checkpoint_slot_size;
    for checkpoint in recover_checkpoints(&ring).into_iter().flatten() {
        prop_assert!(checkpoint.state.len() as u64 <= capacity);
        if same_checkpoints {
            let written = pristine.checkpoints[checkpoint.slot as usize].as_ref();
            prop_assert!(written.is_some(), "a checkpoint from an empty slot");
            let written = written.unwrap();
            // The generation is the slot's stamp, which no hash covers: compare all but it
            // (see `a_damaged_checkpoint_stamp_is_not_accepted_as_another_generation`).
            let mut header = checkpoint.header;
            header.generation = written.header.generation;
            prop_assert_eq!(header, written.header, "damaged checkpoint header accepted");
            prop_assert!(
                checkpoint.state == written.state,
                "damaged checkpoint state accepted"
            );
        }
    }
    Ok(true)
}

/// A fresh file holding `bytes`, in `dir`.
fn write_file(dir: &tempfile::TempDir, bytes: &[u8]) -> tempfile::TempPath {
    let file = tempfile::Builder::new()
        .suffix(".ring")
        .tempfile_in(dir.path())
        .unwrap();
    std::fs::write(file.path(), bytes).unwrap();
    file.into_temp_path()
}

fn put(bytes: &mut [u8], at: u64, width: usize, value: u64) {
    let at = at as usize;
    if at + width <= bytes.len() {
        bytes[at..at + width].copy_from_slice(&value.to_le_bytes()[..width]);
    }
}

// ---------------------------------------------------------------------------------------------
// Damage
// ---------------------------------------------------------------------------------------------

/// A value for a header or control-block field.
#[derive(Clone, Debug)]
enum Value {
    Absolute(u64),
    /// The file's current length plus this.
    FromLength(i64),
}

fn absurd_value() -> impl Strategy<Value = Value> {
    prop_oneof![
        prop_oneof![
            Just(0u64),
            Just(1),
            Just(2),
            Just(3),
            Just(65),
            Just(97),
            Just(255),
            Just(PAGE + 8),
            Just(u32::MAX as u64),
            Just(1 << 57),
            Just(1 << 60),
            Just(1 << 62),
            Just(1 << 63),
            Just(u64::MAX / 2 + 1),
            Just(u64::MAX - (PAGE - 1)),
            Just(u64::MAX),
            any::<u64>(),
        ]
        .prop_map(Value::Absolute),
        prop_oneof![
            Just(-(PAGE as i64)),
            Just(-1i64),
            Just(0),
            Just(1),
            Just(PAGE as i64),
        ]
        .prop_map(Value::FromLength),
    ]
}

/// Header fields and lane control words, with their widths.
fn fields() -> Vec<(u64, usize)> {
    let mut fields = vec![
        (h::FORMAT_VERSION, 4),
        (h::HEADER_SIZE, 4),
        (h::FILE_SIZE, 8),
        (h::MACHINE_NAME_LEN, 4),
        (h::LANE_COUNT, 4),
        (h::CLOCK_SOURCE, 4),
        (h::CLOCK_SHIFT, 4),
        (h::CLOCK_MULT, 8),
        (h::CLOCK_BASE_TICKS, 8),
        (h::CHECKPOINT_OFFSET, 8),
        (h::CHECKPOINT_SLOT_SIZE, 8),
        (h::CHECKPOINT_SLOT_COUNT, 4),
        (h::STATUS, 8),
        (h::DROPPED_NO_LANE, 8),
        (h::EXITED_UNIX_NS, 8),
        (h::CRASH + crash::STATE, 8),
        (h::CRASH + crash::KIND, 4),
        (h::CRASH + crash::THREAD_NAME_LEN, 4),
        (h::CRASH + crash::LOCATION_LEN, 4),
        (h::CRASH + crash::MESSAGE_LEN, 4),
    ];
    let pristine = pristine();
    for (lane, info) in pristine.lanes.iter().enumerate() {
        let entry = h::LANE_TABLE + lane as u64 * lane_entry::SIZE;
        fields.extend([
            (entry + lane_entry::KIND, 4),
            (entry + lane_entry::SLOT_SIZE, 4),
            (entry + lane_entry::OFFSET, 8),
            (entry + lane_entry::SLOT_COUNT, 8),
        ]);
        for word in [
            lane_control::OWNER,
            lane_control::NEXT_POS,
            lane_control::NEXT_SEQ,
            lane_control::DROPPED_TOO_LARGE,
            lane_control::NAME,
        ] {
            fields.push((info.offset + word, 8));
        }
    }
    // The entry after the last lane, read when the lane count is raised.
    let entry = h::LANE_TABLE + pristine.lanes.len() as u64 * lane_entry::SIZE;
    fields.extend([
        (entry + lane_entry::KIND, 4),
        (entry + lane_entry::OFFSET, 8),
    ]);
    fields
}

#[derive(Clone, Debug)]
enum Damage {
    /// Xor one byte anywhere with a nonzero mask.
    FlipBits { at: Index, mask: u8 },
    /// Overwrite a range anywhere with random bytes.
    Overwrite { at: Index, bytes: Vec<u8> },
    /// Zero a range anywhere.
    Zero { at: Index, len: usize },
    /// Overwrite a range inside a lane's slots (payload-only damage).
    LaneBytes {
        lane: Index,
        at: Index,
        bytes: Vec<u8>,
    },
    /// Zero some words of one slot inside a lane (a stamp, a length, part of a payload).
    LaneWords { lane: Index, slot: Index, words: u8 },
    /// Cut the file short.
    Truncate { to: Index },
    /// Append garbage.
    Extend { bytes: Vec<u8> },
    /// Set a header field or control word to an absurd value.
    Field { field: Index, value: Value },
}

fn damage() -> impl Strategy<Value = Damage> {
    prop_oneof![
        3 => (any::<Index>(), 1u8..=255).prop_map(|(at, mask)| Damage::FlipBits { at, mask }),
        2 => (any::<Index>(), prop::collection::vec(any::<u8>(), 1..512))
            .prop_map(|(at, bytes)| Damage::Overwrite { at, bytes }),
        1 => (any::<Index>(), 1usize..8192).prop_map(|(at, len)| Damage::Zero { at, len }),
        3 => (any::<Index>(), any::<Index>(), prop::collection::vec(any::<u8>(), 1..64))
            .prop_map(|(lane, at, bytes)| Damage::LaneBytes { lane, at, bytes }),
        2 => (any::<Index>(), any::<Index>(), 1u8..=255)
            .prop_map(|(lane, slot, words)| Damage::LaneWords { lane, slot, words }),
        1 => any::<Index>().prop_map(|to| Damage::Truncate { to }),
        1 => prop::collection::vec(any::<u8>(), 0..8192).prop_map(|bytes| Damage::Extend { bytes }),
        3 => (any::<Index>(), absurd_value()).prop_map(|(field, value)| Damage::Field { field, value }),
    ]
}

impl Damage {
    fn apply(&self, bytes: &mut Vec<u8>) {
        let pristine = pristine();
        let len = bytes.len();
        match self {
            Damage::FlipBits { at, mask } if len > 0 => bytes[at.index(len)] ^= mask,
            Damage::Overwrite { at, bytes: new } if len > 0 => {
                let start = at.index(len);
                let end = (start + new.len()).min(len);
                bytes[start..end].copy_from_slice(&new[..end - start]);
            }
            Damage::Zero { at, len: n } if len > 0 => {
                let start = at.index(len);
                let end = (start + n).min(len);
                bytes[start..end].fill(0);
            }
            Damage::LaneBytes {
                lane,
                at,
                bytes: new,
            } => {
                let lane = &pristine.lanes[lane.index(pristine.lanes.len())];
                let size = (lane.slot_count * SLOT_SIZE) as usize;
                let start = lane.slots_offset() as usize + at.index(size);
                let end = (start + new.len()).min(lane.slots_offset() as usize + size);
                if end <= len {
                    bytes[start..end].copy_from_slice(&new[..end - start]);
                }
            }
            Damage::LaneWords { lane, slot, words } => {
                let lane = &pristine.lanes[lane.index(pristine.lanes.len())];
                let slot = slot.index(lane.slot_count as usize) as u64;
                let base = lane.slots_offset() + slot * SLOT_SIZE;
                for word in 0..SLOT_WORDS as u64 {
                    if words & (1 << word) != 0 {
                        put(bytes, base + 8 * word, 8, 0);
                    }
                }
            }
            Damage::Truncate { to } => bytes.truncate(to.index(len + 1)),
            Damage::Extend { bytes: garbage } => bytes.extend_from_slice(garbage),
            Damage::Field { field, value } => {
                let fields = fields();
                let (at, width) = fields[field.index(fields.len())];
                let value = match *value {
                    Value::Absolute(v) => v,
                    Value::FromLength(delta) => (len as u64).wrapping_add_signed(delta),
                };
                put(bytes, at, width, value);
            }
            _ => {}
        }
    }
}

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

proptest! {
    #![proptest_config(config(256))]

    /// Any mix of damage: reading never panics; a refusal is an `OpenError` naming the file and
    /// the problem; what is read back is bounded by the lanes and is never damaged data.
    #[test]
    fn damaged_files_are_refused_or_read_without_accepting_damage(
        damages in prop::collection::vec(damage(), 1..5),
    ) {
        let pristine = pristine();
        let dir = tempfile::tempdir().unwrap();
        let mut bytes = pristine.bytes.clone();
        for damage in &damages {
            damage.apply(&mut bytes);
        }
        let path = write_file(&dir, &bytes);
        let opened = read_everything(&path)?;
        // Damage past the header page cannot make a file unreadable, only lose records.
        let header_intact = bytes.len() >= pristine.bytes.len()
            && bytes[..HEADER_SIZE as usize] == pristine.bytes[..HEADER_SIZE as usize];
        if header_intact {
            prop_assert!(opened, "a file with an intact header was refused");
        }
    }

    /// Damage confined to the lanes' slots: the file opens, and every record recovered is one
    /// that was written, byte for byte; damaged records are lost or reported, never returned.
    #[test]
    fn payload_damage_is_detected_never_returned(
        damages in prop::collection::vec(
            prop_oneof![
                (any::<Index>(), any::<Index>(), prop::collection::vec(any::<u8>(), 1..64))
                    .prop_map(|(lane, at, bytes)| Damage::LaneBytes { lane, at, bytes }),
                (any::<Index>(), any::<Index>(), 1u8..=255)
                    .prop_map(|(lane, slot, words)| Damage::LaneWords { lane, slot, words }),
            ],
            1..16,
        ),
    ) {
        let pristine = pristine();
        let dir = tempfile::tempdir().unwrap();
        let mut bytes = pristine.bytes.clone();
        for damage in &damages {
            damage.apply(&mut bytes);
        }
        let path = write_file(&dir, &bytes);
        prop_assert!(read_everything(&path)?, "payload-only damage made the file unreadable");
        let ring = Ring::open(&path).unwrap();
        for (lane, info) in pristine.lanes.iter().enumerate() {
            let recovered = recover_lane(&ring, info);
            // Damage only ever loses records (each one then reported torn or corrupt, or gone
            // with an overwritten stamp); it never adds one.
            prop_assert!(recovered.len() <= pristine.records[lane].len());
        }
    }

    /// Absurd header fields and control words, several at once.
    #[test]
    fn absurd_header_fields_are_refused_or_harmless(
        fields in prop::collection::vec((any::<Index>(), absurd_value()), 1..4),
    ) {
        let pristine = pristine();
        let dir = tempfile::tempdir().unwrap();
        let mut bytes = pristine.bytes.clone();
        for (field, value) in fields {
            Damage::Field { field, value }.apply(&mut bytes);
        }
        let path = write_file(&dir, &bytes);
        read_everything(&path)?;
    }
}

// ---------------------------------------------------------------------------------------------
// Plain cases
// ---------------------------------------------------------------------------------------------

fn open_bytes(
    bytes: &[u8],
) -> (
    tempfile::TempDir,
    std::path::PathBuf,
    Result<Ring, OpenError>,
) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("damaged.ring");
    std::fs::write(&path, bytes).unwrap();
    let opened = Ring::open(&path);
    (dir, path, opened)
}

fn format_error(opened: Result<Ring, OpenError>, path: &Path) -> (FormatError, String) {
    let error = match opened {
        Ok(_) => panic!("opened a damaged file"),
        Err(error) => error,
    };
    let text = error.to_string();
    assert!(text.contains(&path.display().to_string()), "{text}");
    match error {
        OpenError::Format { path: p, error } => {
            assert_eq!(p, path);
            (error, text)
        }
        other => panic!("expected a format error, got {other}"),
    }
}

#[test]
fn a_zero_length_file_is_refused_as_truncated() {
    let (_dir, path, opened) = open_bytes(&[]);
    let (error, text) = format_error(opened, &path);
    assert_eq!(
        error,
        FormatError::Truncated {
            len: 0,
            need: HEADER_SIZE
        }
    );
    assert!(text.contains("truncated"), "{text}");
}

#[test]
fn a_file_of_only_the_magic_is_refused_as_truncated() {
    let (_dir, path, opened) = open_bytes(&MAGIC);
    let (error, text) = format_error(opened, &path);
    assert_eq!(
        error,
        FormatError::Truncated {
            len: MAGIC.len() as u64,
            need: HEADER_SIZE
        }
    );
    assert!(text.contains("truncated"), "{text}");
}

#[test]
fn a_file_from_a_future_version_is_refused_by_version() {
    let mut bytes = pristine().bytes.clone();
    put(&mut bytes, h::FORMAT_VERSION, 4, FORMAT_VERSION as u64 + 1);
    let (_dir, path, opened) = open_bytes(&bytes);
    let (error, text) = format_error(opened, &path);
    assert_eq!(
        error,
        FormatError::FutureVersion {
            found: FORMAT_VERSION + 1,
            supported: FORMAT_VERSION
        }
    );
    assert!(text.contains("newer"), "{text}");
}

#[test]
fn a_file_of_an_older_version_is_refused_by_version() {
    for old in [0, FORMAT_VERSION - 1] {
        let mut bytes = pristine().bytes.clone();
        put(&mut bytes, h::FORMAT_VERSION, 4, old as u64);
        let (_dir, path, opened) = open_bytes(&bytes);
        let (error, text) = format_error(opened, &path);
        assert!(
            matches!(
                error,
                FormatError::BadField {
                    field: "format_version",
                    ..
                }
            ),
            "version {old}: {error:?}"
        );
        assert!(text.contains("versions before"), "{text}");
    }
}

#[test]
fn a_file_shorter_than_its_header_says_is_refused_as_truncated() {
    let pristine = pristine();
    // Cut short by one byte, by a page, and to just the header page.
    for len in [
        pristine.bytes.len() - 1,
        pristine.bytes.len() - PAGE as usize,
        HEADER_SIZE as usize,
    ] {
        let (_dir, path, opened) = open_bytes(&pristine.bytes[..len]);
        let (error, text) = format_error(opened, &path);
        assert!(
            matches!(
                error,
                FormatError::BadField {
                    field: "file_size",
                    ..
                }
            ),
            "{text}"
        );
        assert!(text.contains("truncated"), "{text}");
    }
    // The header claims more than the file holds.
    let mut bytes = pristine.bytes.clone();
    let claimed = bytes.len() as u64 + PAGE;
    put(&mut bytes, h::FILE_SIZE, 8, claimed);
    let (_dir, path, opened) = open_bytes(&bytes);
    let (_, text) = format_error(opened, &path);
    assert!(text.contains("truncated"), "{text}");
}

#[test]
fn a_file_whose_status_was_never_written_is_not_ready() {
    let mut bytes = pristine().bytes.clone();
    put(&mut bytes, h::STATUS, 8, 0);
    let (_dir, path, opened) = open_bytes(&bytes);
    match opened {
        Err(error @ OpenError::NotReady { .. }) => {
            assert!(error.to_string().contains(&path.display().to_string()))
        }
        Err(other) => panic!("expected NotReady, got {other}"),
        Ok(_) => panic!("opened a file whose status is 0"),
    }
}

#[test]
fn a_committed_crash_record_with_absurd_lengths_is_read_within_its_fields() {
    let mut bytes = pristine().bytes.clone();
    put(
        &mut bytes,
        h::CRASH + crash::STATE,
        8,
        crash_state::COMMITTED,
    );
    put(&mut bytes, h::CRASH + crash::KIND, 4, 2);
    for len in [
        crash::THREAD_NAME_LEN,
        crash::LOCATION_LEN,
        crash::MESSAGE_LEN,
    ] {
        put(&mut bytes, h::CRASH + len, 4, u32::MAX as u64);
    }
    let (_dir, _path, opened) = open_bytes(&bytes);
    let ring = opened.unwrap();
    let crash = ring.crash().unwrap().unwrap();
    assert!(crash.message.len() <= 3 * crash::MESSAGE_CAP);
    let _ = Summary::of(&ring);
}

/// Writes into `bytes` a record at position `pos` of `lane` that passes every check: the
/// checksum is not a secret, so anyone can forge one.
fn forge_record(bytes: &mut [u8], lane: &LaneInfo, pos: u64, seq: u64, payload: &[u8]) {
    let start = lane.slots_offset() as usize;
    let end = start + (lane.slot_count * SLOT_SIZE) as usize;
    let words: Vec<std::sync::atomic::AtomicU64> = bytes[start..end]
        .chunks_exact(8)
        .map(|w| std::sync::atomic::AtomicU64::new(u64::from_le_bytes(w.try_into().unwrap())))
        .collect();
    Slots::new(&words).unwrap().write(pos, seq, 1, payload);
    for (chunk, word) in bytes[start..end].chunks_exact_mut(8).zip(&words) {
        chunk.copy_from_slice(
            &word
                .load(std::sync::atomic::Ordering::Relaxed)
                .to_le_bytes(),
        );
    }
}

#[test]
fn forged_records_with_extreme_positions_are_read_without_panicking() {
    let pristine = pristine();
    for lane in &pristine.lanes {
        for pos in [
            0,
            lane.slot_count - 1,
            (slot::CONTINUATION - 2) & !(lane.slot_count - 1),
        ] {
            let mut bytes = pristine.bytes.clone();
            forge_record(&mut bytes, lane, pos, 12345, b"forged");
            let (_dir, _path, opened) = open_bytes(&bytes);
            let ring = opened.unwrap();
            let recovered = recover_lane(&ring, lane);
            let forged = recovered.find(12345).expect("a well-formed record is read");
            assert_eq!(forged.payload, b"forged");
            let _ = Summary::of(&ring);
        }
    }
}

/// A forged (or miscounted) record numbered `u64::MAX`, the largest sequence number a record
/// can carry, must not crash the reader.
/// (`recorded` is `last.seq + 1`, which must saturate rather than overflow.)
#[test]
fn a_record_numbered_u64_max_is_read_without_panicking() {
    let pristine = pristine();
    let lane = &pristine.lanes[0];
    assert_eq!(lane.kind, LaneKind::Input);
    let mut bytes = pristine.bytes.clone();
    forge_record(&mut bytes, lane, 0, u64::MAX, b"last");
    let (_dir, _path, opened) = open_bytes(&bytes);
    let ring = opened.unwrap();
    let recovered = recover_lane(&ring, lane);
    assert!(recovered.find(u64::MAX).is_some());
    let _ = Summary::of(&ring);
}

/// A bit flipped in a checkpoint slot's stamp changes the generation the reader reports, and so
/// which checkpoint `recover_checkpoints` calls the newest.
/// The header hash is seeded with the generation, so a damaged stamp fails it. Found by
/// `damaged_files_are_refused_or_read_without_accepting_damage` (a single `FlipBits`, mask 1,
/// on the stamp of checkpoint slot 1: generation 11 read back as 10).
#[test]
fn a_damaged_checkpoint_stamp_is_not_accepted_as_another_generation() {
    let pristine = pristine();
    for slot in 0..2u64 {
        for bit in [0, 40] {
            let mut bytes = pristine.bytes.clone();
            let stamp = pristine.checkpoint_offset + slot * pristine.checkpoint_slot_size;
            bytes[stamp as usize + bit / 8] ^= 1 << (bit % 8);
            let (_dir, _path, opened) = open_bytes(&bytes);
            let ring = opened.unwrap();
            for checkpoint in recover_checkpoints(&ring).into_iter().flatten() {
                let written = pristine.checkpoints[checkpoint.slot as usize].as_ref();
                assert_eq!(
                    Some(checkpoint.header.generation),
                    written.map(|c| c.header.generation),
                    "slot {slot}, stamp bit {bit}"
                );
            }
        }
    }
}
