//! Property tests of the decoders readers apply to untrusted ring-file bytes: the header page,
//! the crash record and live words, trace payloads, checkpoint headers and lane slots.
//!
//! What must hold for any input: no panic, and nothing accepted that the format rules out (a
//! lane or checkpoint slot outside the file or overlapping another region, a record whose
//! checksum does not match its payload, a payload longer than the lane allows). And the slot
//! protocol must give back, byte for byte, every record a writer wrote and has not overwritten.
#![cfg(not(loom))]

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};

use flightrec_schemas::checkpoint::{CheckpointHeader, Counters, BODY_WORDS};
use flightrec_schemas::clock::{Clock, ClockSource};
use flightrec_schemas::header::{
    crash_state, CrashCause, CrashRecord, FormatError, HeaderInfo, LaneKind, LayoutPlan, LiveWords,
    Status,
};
use flightrec_schemas::layout::{
    self, crash, header as h, lane_bytes, lane_entry, slot, slots_for, CHECKPOINT_HEADER_SIZE,
    CHECKPOINT_SLOTS, FORMAT_VERSION, HEADER_SIZE, LANE_CONTROL_SIZE, MAGIC, MAX_LANES,
    MAX_MACHINE_NAME, PAGE, SLOT_SIZE,
};
use flightrec_schemas::slot::{record_checksum, SlotState, Slots, SLOT_WORDS};
use flightrec_schemas::trace::{TraceEvent, TRACE_HEADER_LEN};
use proptest::prelude::*;
use proptest::sample::Index;

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

// ---------------------------------------------------------------------------------------------
// Header page
// ---------------------------------------------------------------------------------------------

/// Checks everything a reader relies on in a header that decoded successfully. Arithmetic is
/// done in `u128` so that this check cannot overflow where the decoder might have.
fn assert_layout_sound(info: &HeaderInfo, file_len: u64) -> Result<(), TestCaseError> {
    let file_size = info.file_size as u128;
    prop_assert!(info.file_size <= file_len, "file_size beyond the file");
    prop_assert!(info.format_version >= 1 && info.format_version <= FORMAT_VERSION);
    prop_assert!(!info.machine_name.is_empty() && info.machine_name.len() <= MAX_MACHINE_NAME);
    prop_assert!(!info.lanes.is_empty() && info.lanes.len() <= MAX_LANES as usize);
    let mut previous_end = HEADER_SIZE as u128;
    for (i, lane) in info.lanes.iter().enumerate() {
        prop_assert_eq!(lane.kind == LaneKind::Input, i == 0, "lane {} kind", i);
        prop_assert!(lane.slot_count.is_power_of_two() && lane.slot_count >= 4);
        prop_assert!(lane.offset % PAGE == 0, "lane {} unaligned", i);
        let offset = lane.offset as u128;
        prop_assert!(
            offset >= previous_end,
            "lane {} at {} overlaps the region ending at {}",
            i,
            offset,
            previous_end
        );
        let used_end =
            offset + LANE_CONTROL_SIZE as u128 + lane.slot_count as u128 * SLOT_SIZE as u128;
        prop_assert!(used_end <= file_size, "lane {} runs past file_size", i);
        let region = (LANE_CONTROL_SIZE as u128 + lane.slot_count as u128 * SLOT_SIZE as u128)
            .div_ceil(PAGE as u128)
            * PAGE as u128;
        previous_end = offset + region;
    }
    let cp_offset = info.checkpoint_offset as u128;
    let cp_size = info.checkpoint_slot_size as u128;
    prop_assert!(
        info.checkpoint_offset % PAGE == 0,
        "checkpoint offset unaligned"
    );
    prop_assert!(
        cp_offset >= previous_end,
        "checkpoints at {} overlap the lanes ending at {}",
        cp_offset,
        previous_end
    );
    prop_assert!(cp_size >= CHECKPOINT_HEADER_SIZE as u128);
    prop_assert!(
        cp_offset + cp_size * CHECKPOINT_SLOTS as u128 <= file_size,
        "checkpoint slots run past file_size"
    );
    Ok(())
}

fn assert_error_typed(error: &FormatError) -> Result<(), TestCaseError> {
    // Every variant is typed; its message must say something.
    let text = error.to_string();
    prop_assert!(!text.is_empty());
    if let FormatError::BadField { field, .. } = error {
        prop_assert!(text.contains(field));
    }
    Ok(())
}

fn plan_strategy() -> impl Strategy<Value = LayoutPlan> {
    (2u32..=16, 0u32..MAX_LANES, 2u32..=12, 0u64..(1 << 20)).prop_map(
        |(input_log, trace_lanes, trace_log, state_capacity)| LayoutPlan {
            input_slots: 1 << input_log,
            trace_lanes,
            trace_slots: 1 << trace_log,
            state_capacity,
        },
    )
}

prop_compose! {
    fn header_strategy()(
        plan in plan_strategy(),
        name in "[a-z][a-z0-9_-]{0,63}",
        hostname in "[a-z0-9.-]{0,64}",
        machine_version in any::<u32>(),
        pid in any::<u32>(),
        process_start in any::<u64>(),
        created_unix_ns in any::<u64>(),
        tsc in any::<bool>(),
        base_ticks in any::<u64>(),
        base_unix_ns in any::<u64>(),
        mult in any::<u64>(),
        checkpoint_every_inputs in any::<u32>(),
        checkpoint_every_ms in any::<u64>(),
    ) -> HeaderInfo {
        let (lanes, checkpoint_offset, checkpoint_slot_size, file_size) = plan.place();
        HeaderInfo {
            format_version: FORMAT_VERSION,
            file_size,
            machine_name: name,
            machine_version,
            pid,
            process_start,
            created_unix_ns,
            hostname,
            clock: Clock {
                source: if tsc { ClockSource::Tsc } else { ClockSource::Monotonic },
                base_ticks,
                base_unix_ns,
                mult,
            },
            lanes,
            checkpoint_offset,
            checkpoint_slot_size,
            checkpoint_every_inputs,
            checkpoint_every_ms,
        }
    }
}

/// Values that tend to find overflow and off-by-one mistakes.
fn edgy_u64() -> impl Strategy<Value = u64> {
    prop_oneof![
        Just(0u64),
        Just(1),
        Just(3),
        Just(4),
        Just(63),
        Just(64),
        Just(PAGE - 1),
        Just(PAGE),
        Just(PAGE + 1),
        Just(u32::MAX as u64),
        Just(1 << 32),
        Just(1 << 57),
        Just(1 << 58),
        Just(1 << 60),
        Just(1 << 63),
        Just(u64::MAX),
        Just(u64::MAX - 1),
        Just(u64::MAX - (PAGE - 1)),
        Just(u64::MAX - 2 * PAGE + 1),
        Just(u64::MAX / 2),
        any::<u64>(),
    ]
}

/// Offsets and widths of every header field a decoder looks at.
fn header_fields() -> Vec<(u64, usize)> {
    let mut fields = vec![
        (h::FORMAT_VERSION, 4),
        (h::HEADER_SIZE, 4),
        (h::FILE_SIZE, 8),
        (h::MACHINE_NAME_LEN, 4),
        (h::LANE_COUNT, 4),
        (h::CLOCK_SOURCE, 4),
        (h::CLOCK_SHIFT, 4),
        (h::CHECKPOINT_OFFSET, 8),
        (h::CHECKPOINT_SLOT_SIZE, 8),
        (h::CHECKPOINT_SLOT_COUNT, 4),
        (h::STATUS, 8),
        (h::CRASH + crash::STATE, 8),
        (h::CRASH + crash::KIND, 4),
        (h::CRASH + crash::THREAD_NAME_LEN, 4),
        (h::CRASH + crash::LOCATION_LEN, 4),
        (h::CRASH + crash::MESSAGE_LEN, 4),
    ];
    for lane in 0..4 {
        let entry = h::LANE_TABLE + lane * lane_entry::SIZE;
        fields.extend([
            (entry + lane_entry::KIND, 4),
            (entry + lane_entry::SLOT_SIZE, 4),
            (entry + lane_entry::OFFSET, 8),
            (entry + lane_entry::SLOT_COUNT, 8),
        ]);
    }
    fields
}

fn put(page: &mut [u8], at: u64, width: usize, value: u64) {
    let at = at as usize;
    page[at..at + width].copy_from_slice(&value.to_le_bytes()[..width]);
}

proptest! {
    #![proptest_config(config(1024))]

    /// Arbitrary bytes of arbitrary length, with an arbitrary claimed file length: an error or
    /// a sound layout, never a panic. Half the cases get a valid magic, version and header size
    /// so that the decoder gets past its first checks.
    #[test]
    fn header_decode_survives_arbitrary_bytes(
        mut bytes in prop::collection::vec(any::<u8>(), 0..8192),
        file_len in prop_oneof![any::<u64>(), edgy_u64(), 0u64..(1 << 24)],
        valid_prefix in any::<bool>(),
    ) {
        if valid_prefix && bytes.len() >= 16 {
            bytes[..8].copy_from_slice(&MAGIC);
            put(&mut bytes, h::FORMAT_VERSION, 4, FORMAT_VERSION as u64);
            put(&mut bytes, h::HEADER_SIZE, 4, HEADER_SIZE);
        }
        match HeaderInfo::decode(&bytes, file_len) {
            Ok(info) => assert_layout_sound(&info, file_len)?,
            Err(error) => assert_error_typed(&error)?,
        }
    }

    /// A valid header with a few bytes of its first 2048 changed (the fields, the crash record
    /// and the lane table live there): an error, or a layout in which every lane and checkpoint
    /// slot lies inside the file and no two regions overlap.
    #[test]
    fn mutated_header_decodes_to_a_sound_layout_or_an_error(
        info in header_strategy(),
        mutations in prop::collection::vec((0usize..2048, any::<u8>(), any::<bool>()), 1..8),
        slack in prop_oneof![Just(0u64), 0u64..(4 * PAGE), Just(u64::MAX)],
    ) {
        let mut page = info.encode();
        let file_len = info.file_size.saturating_add(slack);
        prop_assert_eq!(HeaderInfo::decode(&page, file_len), Ok(info.clone()));
        for (at, byte, xor) in mutations {
            if xor {
                page[at] ^= byte | 1;
            } else {
                page[at] = byte;
            }
        }
        match HeaderInfo::decode(&page, file_len) {
            Ok(decoded) => assert_layout_sound(&decoded, file_len)?,
            Err(error) => assert_error_typed(&error)?,
        }
    }

    /// A valid header with a few decoded fields set to edge values (sizes near 2^64, offsets
    /// past the end, counts of zero), checked against claimed file lengths up to 2^64 - 1.
    #[test]
    fn header_with_edge_values_decodes_to_a_sound_layout_or_an_error(
        info in header_strategy(),
        smashes in prop::collection::vec((any::<Index>(), edgy_u64()), 1..6),
        file_len in prop_oneof![Just(None), Just(Some(u64::MAX)), any::<u64>().prop_map(Some)],
    ) {
        let mut page = info.encode();
        let fields = header_fields();
        for (field, value) in smashes {
            let (at, width) = fields[field.index(fields.len())];
            put(&mut page, at, width, value);
        }
        let file_len = file_len.unwrap_or(info.file_size);
        match HeaderInfo::decode(&page, file_len) {
            Ok(decoded) => assert_layout_sound(&decoded, file_len)?,
            Err(error) => assert_error_typed(&error)?,
        }
        let _ = CrashRecord::decode(&page);
        let _ = LiveWords::decode(&page);
    }

    /// The crash record and live words of an arbitrary header page never panic. Most cases get
    /// a committed crash state and a known kind so the text fields are decoded too.
    #[test]
    fn crash_record_and_live_words_survive_arbitrary_pages(
        mut page in prop::collection::vec(any::<u8>(), HEADER_SIZE as usize),
        state in prop_oneof![
            1 => Just(None),
            1 => (0u64..4).prop_map(Some),
            3 => Just(Some(crash_state::COMMITTED)),
        ],
        kind in prop_oneof![1 => Just(None), 1 => (0u32..4).prop_map(Some), 3 => (1u32..=2).prop_map(Some)],
    ) {
        if let Some(state) = state {
            put(&mut page, h::CRASH + crash::STATE, 8, state);
        }
        if let Some(kind) = kind {
            put(&mut page, h::CRASH + crash::KIND, 4, kind as u64);
        }
        let live = LiveWords::decode(&page);
        let code = u64::from_le_bytes(page[h::STATUS as usize..][..8].try_into().unwrap());
        prop_assert_eq!(live.status, Status::from_code(code));
        let at = (h::CRASH + crash::STATE) as usize;
        let state = u64::from_le_bytes(page[at..at + 8].try_into().unwrap());
        let at = (h::CRASH + crash::KIND) as usize;
        let kind = u32::from_le_bytes(page[at..at + 4].try_into().unwrap());
        match CrashRecord::decode(&page) {
            Ok(None) => prop_assert_eq!(state, crash_state::NONE),
            Ok(Some(record)) => {
                prop_assert_eq!(state, crash_state::COMMITTED);
                prop_assert!(kind == 1 || kind == 2);
                // Lossy UTF-8 may triple a byte into U+FFFD, never more.
                prop_assert!(record.thread_name.len() <= 3 * crash::THREAD_NAME_CAP);
                prop_assert!(record.message.len() <= 3 * crash::MESSAGE_CAP);
                if let CrashCause::Panic { location } = &record.cause {
                    prop_assert!(location.len() <= 3 * crash::LOCATION_CAP);
                }
            }
            Err(error) => prop_assert!(!error.to_string().is_empty()),
        }
    }

    /// Trace payloads: any bytes decode or fail with a message; a decoded event is exactly the
    /// payload's header fields and its (lossily decoded) message.
    #[test]
    fn trace_event_decode_survives_arbitrary_bytes(
        mut bytes in prop::collection::vec(any::<u8>(), 0..512),
        plausible in any::<bool>(),
    ) {
        if plausible && bytes.len() >= 2 {
            bytes[0] = bytes[0] % 3 + 1;
            bytes[1] = bytes[1] % 5 + 1;
        }
        match TraceEvent::decode(&bytes) {
            Ok(event) => {
                prop_assert!(bytes.len() >= TRACE_HEADER_LEN);
                prop_assert_eq!(event.kind as u8, bytes[0]);
                prop_assert_eq!(event.level as u8, bytes[1]);
                prop_assert_eq!(event.tid, u32::from_le_bytes(bytes[4..8].try_into().unwrap()));
                prop_assert_eq!(event.truncated, bytes[2] & 1 != 0);
                prop_assert_eq!(
                    event.message,
                    String::from_utf8_lossy(&bytes[TRACE_HEADER_LEN..]).into_owned()
                );
            }
            Err(message) => prop_assert!(!message.is_empty()),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Checkpoint headers
// ---------------------------------------------------------------------------------------------

/// The header hash over the first `BODY_WORDS - 1` words, as `schemas/FORMAT.md` defines it.
/// The header hash as FORMAT.md specifies it: XXH3 of the body words, seeded with the generation.
fn header_hash(generation: u64, words: &[u64]) -> u64 {
    let bytes: Vec<u8> = words.iter().flat_map(|w| w.to_le_bytes()).collect();
    twox_hash::XxHash3_64::oneshot_with_seed(generation, &bytes)
}

fn counters_strategy() -> impl Strategy<Value = Counters> {
    prop::array::uniform8(prop::option::of(any::<u64>()))
}

proptest! {
    #![proptest_config(config(1024))]

    /// Arbitrary words never panic; with a matching hash they decode, and the decoded header
    /// encodes to words that decode to it again (what a writer would store for it).
    #[test]
    fn checkpoint_header_from_arbitrary_words(
        words in prop::array::uniform::<_, BODY_WORDS>(any::<u64>()),
        generation in any::<u64>(),
        fix_hash in any::<bool>(),
    ) {
        let mut words = words;
        if fix_hash {
            words[BODY_WORDS - 1] = header_hash(generation, &words[..BODY_WORDS - 1]);
        }
        match CheckpointHeader::from_body_words(generation, &words) {
            Some(header) => {
                prop_assert!(fix_hash, "accepted a header whose hash does not match");
                prop_assert_eq!(header.generation, generation);
                prop_assert_eq!(
                    (header.input_seq, header.ticks, header.state_len, header.state_hash),
                    (words[0], words[1], words[2], words[3])
                );
                let again = header.body_words();
                prop_assert_eq!(CheckpointHeader::from_body_words(generation, &again), Some(header));
            }
            None => prop_assert!(!fix_hash, "refused a header whose hash matches"),
        }
    }

    /// What the writer stores is read back exactly.
    #[test]
    fn checkpoint_header_round_trips(
        generation in any::<u64>(),
        input_seq in any::<u64>(),
        ticks in any::<u64>(),
        state_len in any::<u64>(),
        state_hash in any::<u64>(),
        counters in counters_strategy(),
        flip in prop::option::of((0usize..BODY_WORDS, 0u32..64)),
    ) {
        let header = CheckpointHeader { generation, input_seq, ticks, state_len, state_hash, counters };
        let mut words = header.body_words();
        prop_assert_eq!(CheckpointHeader::from_body_words(generation, &words), Some(header));
        if let Some((word, bit)) = flip {
            words[word] ^= 1 << bit;
            // A flipped bit that changes nothing decoded (a counter value under a clear valid
            // bit, or an unused valid bit) may pass; anything else must be caught.
            if let Some(decoded) = CheckpointHeader::from_body_words(generation, &words) {
                prop_assert_eq!(decoded, header);
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Lane slots
// ---------------------------------------------------------------------------------------------

fn lane(words: &[u64]) -> Vec<AtomicU64> {
    words.iter().map(|&w| AtomicU64::new(w)).collect()
}

fn snapshot(words: &[AtomicU64]) -> Vec<u64> {
    words.iter().map(|w| w.load(Ordering::Relaxed)).collect()
}

/// A word to plant in a slot: random, or a stamp that is valid or almost valid for some slot.
#[derive(Clone, Debug)]
enum Plant {
    Random(u64),
    /// `index + lap * slot_count + 1 + delta`, optionally with the continuation bit.
    Stamp {
        index: Index,
        lap: u64,
        delta: i8,
        continuation: bool,
    },
    /// A length-and-checksum word with a plausible length.
    Length {
        len: u32,
        checksum: u32,
    },
}

fn plant_strategy() -> impl Strategy<Value = Plant> {
    prop_oneof![
        any::<u64>().prop_map(Plant::Random),
        (any::<Index>(), 0u64..1 << 20, -2i8..=2, any::<bool>()).prop_map(
            |(index, lap, delta, continuation)| Plant::Stamp {
                index,
                lap,
                delta,
                continuation
            }
        ),
        (0u32..1200, any::<u32>()).prop_map(|(len, checksum)| Plant::Length { len, checksum }),
    ]
}

impl Plant {
    fn value(&self, slot_count: u64) -> u64 {
        match *self {
            Plant::Random(v) => v,
            Plant::Stamp {
                index,
                lap,
                delta,
                continuation,
            } => {
                let pos = index.index(slot_count as usize) as u64 + lap * slot_count;
                let stamp = (pos + 1).wrapping_add_signed(delta as i64);
                if continuation {
                    stamp | slot::CONTINUATION
                } else {
                    stamp
                }
            }
            Plant::Length { len, checksum } => len as u64 | (checksum as u64) << 32,
        }
    }
}

/// A record as read back: position, sequence number, ticks, payload.
type Found = (u64, u64, u64, Vec<u8>);

/// Reads slot `index` and checks what a reader may rely on; returns the record, if any.
fn read_checked(
    slots: &Slots<'_>,
    words: &[AtomicU64],
    index: u64,
) -> Result<Option<Found>, TestCaseError> {
    let mut payload = vec![0xAA; 3]; // must be cleared by `read`
    let state = slots.read(index, &mut payload);
    // Whatever the slot holds, the buffer never grows past what the lane allows.
    prop_assert!(payload.len() <= slots.max_record_len() as usize);
    let SlotState::Record(header) = state else {
        return Ok(None);
    };
    let mask = slots.slot_count() - 1;
    prop_assert_eq!(
        header.pos & mask,
        index & mask,
        "record read from another slot"
    );
    prop_assert!(
        header.len <= slots.max_record_len(),
        "length beyond the lane's limit"
    );
    prop_assert_eq!(payload.len(), header.len as usize);
    let head = (header.pos & mask) as usize * SLOT_WORDS;
    let stored = (words[head + 3].load(Ordering::Relaxed) >> 32) as u32;
    prop_assert_eq!(
        record_checksum(header.pos, header.seq, header.ticks, &payload),
        stored,
        "accepted a record whose checksum does not match its payload"
    );
    prop_assert_eq!(words[head + 1].load(Ordering::Relaxed), header.seq);
    prop_assert_eq!(words[head + 2].load(Ordering::Relaxed), header.ticks);
    Ok(Some((header.pos, header.seq, header.ticks, payload)))
}

/// A record as the writer wrote it.
#[derive(Clone, Debug)]
struct Written {
    seq: u64,
    ticks: u64,
    payload: Vec<u8>,
}

/// Slot count (8 to 64) and records of lengths up to that lane's `max_record_len`.
fn lane_and_records(max_records: usize) -> impl Strategy<Value = (u64, Vec<Written>)> {
    (3u32..=6).prop_flat_map(move |log| {
        let slot_count = 1u64 << log;
        let words: Vec<AtomicU64> = (0..slot_count as usize * SLOT_WORDS)
            .map(|_| AtomicU64::new(0))
            .collect();
        let max_len = Slots::new(&words).unwrap().max_record_len() as usize;
        let record = (
            any::<u64>(),
            prop_oneof![
                2 => prop::collection::vec(any::<u8>(), 0..=max_len),
                1 => prop::collection::vec(any::<u8>(), max_len..=max_len),
                1 => prop::collection::vec(any::<u8>(), 0..=slot::HEAD_PAYLOAD as usize + 1),
            ],
        )
            .prop_map(|(ticks, payload)| Written {
                seq: 0,
                ticks,
                payload,
            });
        (
            Just(slot_count),
            prop::collection::vec(record, 0..max_records),
        )
    })
}

fn start_position() -> impl Strategy<Value = u64> {
    // Positions count slots written since creation; they never get near 2^63, where a stamp
    // (`pos + 1`) would collide with the continuation bit.
    prop_oneof![0u64..256, 0u64..(1 << 62), Just((1 << 62) - 1)]
}

proptest! {
    #![proptest_config(config(1024))]

    /// A lane of arbitrary words (with planted near-valid stamps and lengths, on top of some
    /// genuinely written records that may then be damaged): reading any slot never panics,
    /// never yields a record whose checksum does not match its payload, and never a payload
    /// longer than `max_record_len`.
    #[test]
    fn slot_read_survives_arbitrary_words(
        (slot_count, records) in lane_and_records(12),
        start in start_position(),
        fill in prop::collection::vec(any::<u64>(), 64 * SLOT_WORDS),
        zero_fill in any::<bool>(),
        plants in prop::collection::vec((any::<Index>(), 0usize..SLOT_WORDS, plant_strategy()), 0..24),
        extra_reads in prop::collection::vec(any::<u64>(), 0..4),
    ) {
        let n = slot_count as usize * SLOT_WORDS;
        let initial: Vec<u64> = if zero_fill { vec![0; n] } else { fill[..n].to_vec() };
        let words = lane(&initial);
        let slots = Slots::new(&words).unwrap();
        let mut pos = start;
        for (seq, record) in records.iter().enumerate() {
            pos += slots.write(pos, seq as u64, record.ticks, &record.payload);
        }
        for (slot_index, word, plant) in &plants {
            let at = slot_index.index(slot_count as usize) * SLOT_WORDS + word;
            words[at].store(plant.value(slot_count), Ordering::Relaxed);
        }
        for index in (0..slot_count).chain(extra_reads) {
            read_checked(&slots, &words, index)?;
        }
    }

    /// Records written at consecutive positions from any start are read back exactly: the
    /// newest ones whose slots were not overwritten since, byte for byte, and nothing else. A
    /// writer following the protocol never leaves a slot that reads as torn or corrupt.
    #[test]
    fn slots_round_trip_the_records_not_overwritten(
        (slot_count, mut records) in lane_and_records(200),
        start in start_position(),
        first_seq in prop_oneof![Just(0u64), any::<u64>().prop_map(|s| s >> 1)],
    ) {
        let words = lane(&vec![0; slot_count as usize * SLOT_WORDS]);
        let slots = Slots::new(&words).unwrap();
        // owner[slot index] = the record that last wrote the slot.
        let mut owner: Vec<Option<usize>> = vec![None; slot_count as usize];
        let mut placed = Vec::new();
        let mut pos = start;
        for (i, record) in records.iter_mut().enumerate() {
            record.seq = first_seq + i as u64;
            prop_assert!(record.payload.len() <= slots.max_record_len() as usize);
            let used = slots.write(pos, record.seq, record.ticks, &record.payload);
            prop_assert_eq!(used, slots_for(record.payload.len() as u32));
            for s in 0..used {
                owner[((pos + s) % slot_count) as usize] = Some(i);
            }
            placed.push((pos, used));
            pos += used;
        }
        let expected: Vec<Found> = records
            .iter()
            .enumerate()
            .filter(|&(i, _)| {
                let (at, used) = placed[i];
                (0..used).all(|s| owner[((at + s) % slot_count) as usize] == Some(i))
            })
            .map(|(i, r)| (placed[i].0, r.seq, r.ticks, r.payload.clone()))
            .collect();
        let mut found = BTreeMap::new();
        let mut payload = Vec::new();
        for index in 0..slot_count {
            let state = slots.read(index, &mut payload);
            prop_assert!(
                matches!(state, SlotState::Record(_) | SlotState::Continuation | SlotState::Empty),
                "slot {} reads as {:?} after a clean write sequence",
                index,
                state
            );
            if let Some(record) = read_checked(&slots, &words, index)? {
                prop_assert!(found.insert(record.1, record).is_none(), "a sequence number twice");
            }
        }
        let found: Vec<_> = found.into_values().collect();
        prop_assert_eq!(found, expected);
        // Nothing was written that a reader could see changing: reading is read-only.
        let before = snapshot(&words);
        for index in 0..slot_count {
            slots.read(index, &mut payload);
        }
        prop_assert_eq!(snapshot(&words), before);
    }
}

// ---------------------------------------------------------------------------------------------
// Known edges, as plain tests
// ---------------------------------------------------------------------------------------------

#[test]
fn a_header_from_place_round_trips_for_the_largest_lane_table() {
    let plan = LayoutPlan {
        input_slots: 4,
        trace_lanes: MAX_LANES - 1,
        trace_slots: 4,
        state_capacity: 0,
    };
    let (lanes, checkpoint_offset, checkpoint_slot_size, file_size) = plan.place();
    assert_eq!(lanes.len(), MAX_LANES as usize);
    assert_eq!(
        lanes.last().unwrap().offset + lane_bytes(4),
        checkpoint_offset
    );
    let info = HeaderInfo {
        format_version: FORMAT_VERSION,
        file_size,
        machine_name: "m".into(),
        machine_version: 1,
        pid: 1,
        process_start: 0,
        created_unix_ns: 0,
        hostname: String::new(),
        clock: Clock {
            source: ClockSource::Monotonic,
            base_ticks: 0,
            base_unix_ns: 0,
            mult: 1 << 32,
        },
        lanes,
        checkpoint_offset,
        checkpoint_slot_size,
        checkpoint_every_inputs: 1,
        checkpoint_every_ms: 1,
    };
    let page = info.encode();
    assert_eq!(page.len(), layout::HEADER_SIZE as usize);
    assert_eq!(HeaderInfo::decode(&page, file_size), Ok(info));
}

/// A lane table ending exactly at 2^64 (possible only with a claimed file length near 2^64,
/// never from a real file) must be refused, not overflow `offset + lane_bytes(..)`.
/// (Once a regression: the `previous_end` sum in `decode_lanes` wrapped to 0 and let the second
/// lane sit on top of the header page.)
#[test]
fn a_lane_ending_at_two_to_the_64_is_refused() {
    let plan = LayoutPlan {
        input_slots: 4,
        trace_lanes: 1,
        trace_slots: 4,
        state_capacity: 0,
    };
    let (lanes, checkpoint_offset, checkpoint_slot_size, file_size) = plan.place();
    let info = HeaderInfo {
        format_version: FORMAT_VERSION,
        file_size,
        machine_name: "m".into(),
        machine_version: 1,
        pid: 1,
        process_start: 0,
        created_unix_ns: 0,
        hostname: String::new(),
        clock: Clock {
            source: ClockSource::Monotonic,
            base_ticks: 0,
            base_unix_ns: 0,
            mult: 1 << 32,
        },
        lanes,
        checkpoint_offset,
        checkpoint_slot_size,
        checkpoint_every_inputs: 1,
        checkpoint_every_ms: 1,
    };
    let mut page = info.encode();
    put(&mut page, h::FILE_SIZE, 8, u64::MAX);
    // Lane 0: 4 slots in the last page below 2^64 (its bytes end at 2^64 - 3712, inside).
    put(
        &mut page,
        h::LANE_TABLE + lane_entry::OFFSET,
        8,
        u64::MAX - (PAGE - 1),
    );
    // Lane 1 at offset 0, which only passes if the end of lane 0 wrapped to 0.
    put(
        &mut page,
        h::LANE_TABLE + lane_entry::SIZE + lane_entry::OFFSET,
        8,
        0,
    );
    match HeaderInfo::decode(&page, u64::MAX) {
        Ok(decoded) => panic!("accepted overlapping lanes: {:?}", decoded.lanes),
        Err(error) => assert!(matches!(error, FormatError::BadLane { .. }), "{error}"),
    }
}
