//! The header page: what the writer stores at creation, and a validating decoder for readers.
//!
//! The decoder works on a private copy of the page and the file's real size, so nothing in the
//! header is trusted: every offset and count is checked before it is used.

use crate::clock::{Clock, ClockSource};
use crate::layout::{
    self, checkpoint_slot_bytes, crash, header as h, lane_bytes, lane_entry, CHECKPOINT_SLOTS,
    FORMAT_VERSION, HEADER_SIZE, MAGIC, MAX_LANES, MAX_MACHINE_NAME, SLOT_SIZE,
};

/// Names of the counters stored with each checkpoint, in slot order.
pub const COUNTER_NAMES: [&str; 5] = [
    "task_clock_ns",
    "page_faults",
    "context_switches",
    "instructions",
    "cycles",
];

/// What the writer last said about itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    /// Recording (or died without a word: SIGKILL, OOM kill, power loss).
    Running,
    /// Shut down cleanly.
    Exited,
    /// Died of a panic or a fatal signal, described by the crash record.
    Crashed,
}

impl Status {
    /// The number stored in the header.
    pub const fn code(self) -> u64 {
        match self {
            Status::Running => 1,
            Status::Exited => 2,
            Status::Crashed => 3,
        }
    }

    /// The status a header number names, if any.
    pub const fn from_code(code: u64) -> Option<Self> {
        match code {
            1 => Some(Status::Running),
            2 => Some(Status::Exited),
            3 => Some(Status::Crashed),
            _ => None,
        }
    }
}

/// What a lane carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum LaneKind {
    /// Inputs of the recorded machine, applied in sequence order.
    Input,
    /// Trace events of one thread at a time, shown but never applied.
    Trace,
}

impl LaneKind {
    /// The number stored in the lane table.
    pub const fn code(self) -> u32 {
        match self {
            LaneKind::Input => 1,
            LaneKind::Trace => 2,
        }
    }

    /// The kind a lane-table number names, if any.
    pub const fn from_code(code: u32) -> Option<Self> {
        match code {
            1 => Some(LaneKind::Input),
            2 => Some(LaneKind::Trace),
            _ => None,
        }
    }
}

/// One lane as described by the lane table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LaneInfo {
    /// What it carries.
    pub kind: LaneKind,
    /// File offset of its control block.
    pub offset: u64,
    /// Number of 64-byte slots (a power of two).
    pub slot_count: u64,
}

impl LaneInfo {
    /// File offset of the first slot.
    pub fn slots_offset(&self) -> u64 {
        self.offset + layout::LANE_CONTROL_SIZE
    }

    /// File offset just past its last slot. A decoded header has checked that this does not
    /// overflow and lies inside the file.
    pub fn end(&self) -> u64 {
        self.slots_offset() + self.slot_count * SLOT_SIZE
    }
}

/// The immutable part of the header, as the writer creates it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HeaderInfo {
    /// Layout version of the file.
    pub format_version: u32,
    /// Bytes of the whole file.
    pub file_size: u64,
    /// Name of the recorded machine.
    pub machine_name: String,
    /// Version of the recorded machine.
    pub machine_version: u32,
    /// Writer's process id.
    pub pid: u32,
    /// Writer's start time in clock ticks since boot, 0 if unknown.
    pub process_start: u64,
    /// Unix nanoseconds at creation.
    pub created_unix_ns: u64,
    /// Host name of the writer.
    pub hostname: String,
    /// Tick-to-time calibration.
    pub clock: Clock,
    /// Lanes, inputs first.
    pub lanes: Vec<LaneInfo>,
    /// File offset of the first checkpoint slot; the second follows it.
    pub checkpoint_offset: u64,
    /// Bytes of one checkpoint slot, header included.
    pub checkpoint_slot_size: u64,
    /// Configured cadence in inputs (informative).
    pub checkpoint_every_inputs: u32,
    /// Configured cadence in milliseconds (informative).
    pub checkpoint_every_ms: u64,
}

/// Sizes from which the writer lays out a file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LayoutPlan {
    /// Slots of the input lane.
    pub input_slots: u64,
    /// Number of trace lanes.
    pub trace_lanes: u32,
    /// Slots of each trace lane.
    pub trace_slots: u64,
    /// Largest encoded state a checkpoint slot holds.
    pub state_capacity: u64,
}

impl LayoutPlan {
    /// Lane table and checkpoint placement for this plan, and the total file size.
    pub fn place(&self) -> (Vec<LaneInfo>, u64, u64, u64) {
        let mut lanes = Vec::with_capacity(1 + self.trace_lanes as usize);
        let mut offset = HEADER_SIZE;
        let mut push = |kind, slot_count| {
            lanes.push(LaneInfo {
                kind,
                offset,
                slot_count,
            });
            offset += lane_bytes(slot_count);
        };
        push(LaneKind::Input, self.input_slots);
        for _ in 0..self.trace_lanes {
            push(LaneKind::Trace, self.trace_slots);
        }
        let slot_size = checkpoint_slot_bytes(self.state_capacity);
        let file_size = offset + slot_size * CHECKPOINT_SLOTS as u64;
        (lanes, offset, slot_size, file_size)
    }
}

/// A header that cannot be trusted, and where.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FormatError {
    /// The file ends before its header does.
    #[error("file is {len} bytes, too short for a {need}-byte ring header (truncated?)")]
    Truncated {
        /// Bytes present.
        len: u64,
        /// Bytes needed.
        need: u64,
    },
    /// The magic bytes are wrong.
    #[error(
        "not a flightrec ring file: it begins with \"{}\", not \"FLRING\\r\\n\"",
        found.escape_ascii()
    )]
    BadMagic {
        /// The first eight bytes found.
        found: [u8; 8],
    },
    /// The file was written by a newer flightrec.
    #[error("ring format version {found} is newer than this build understands ({supported}); use a newer flightrec")]
    FutureVersion {
        /// Version in the file.
        found: u32,
        /// Newest version this build reads.
        supported: u32,
    },
    /// A header field holds an impossible value.
    #[error("header field `{field}` at offset {offset}: {problem}")]
    BadField {
        /// Name of the field.
        field: &'static str,
        /// Its offset in the file.
        offset: u64,
        /// What is wrong with it.
        problem: String,
    },
    /// A lane-table entry holds an impossible value.
    #[error("lane {lane} (table entry at offset {offset}): {problem}")]
    BadLane {
        /// Index of the lane.
        lane: u32,
        /// Offset of its table entry.
        offset: u64,
        /// What is wrong with it.
        problem: String,
    },
}

fn u32_at(page: &[u8], at: u64) -> u32 {
    let at = at as usize;
    u32::from_le_bytes(page[at..at + 4].try_into().expect("4 bytes"))
}

fn u64_at(page: &[u8], at: u64) -> u64 {
    let at = at as usize;
    u64::from_le_bytes(page[at..at + 8].try_into().expect("8 bytes"))
}

fn put_u32(page: &mut [u8], at: u64, v: u32) {
    page[at as usize..at as usize + 4].copy_from_slice(&v.to_le_bytes());
}

fn put_u64(page: &mut [u8], at: u64, v: u64) {
    page[at as usize..at as usize + 8].copy_from_slice(&v.to_le_bytes());
}

/// The longest prefix of `s` of at most `max` bytes that ends on a character boundary.
#[inline]
pub fn truncate_utf8(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

fn bad(field: &'static str, offset: u64, problem: impl Into<String>) -> FormatError {
    FormatError::BadField {
        field,
        offset,
        problem: problem.into(),
    }
}

impl HeaderInfo {
    /// Encodes the immutable fields into a header page. The status word is left zero: the writer
    /// stores it last, once the file is fully laid out.
    pub fn encode(&self) -> Vec<u8> {
        let mut page = vec![0u8; HEADER_SIZE as usize];
        page[..8].copy_from_slice(&MAGIC);
        put_u32(&mut page, h::FORMAT_VERSION, self.format_version);
        put_u32(&mut page, h::HEADER_SIZE, HEADER_SIZE as u32);
        put_u64(&mut page, h::FILE_SIZE, self.file_size);
        put_u32(&mut page, h::MACHINE_VERSION, self.machine_version);
        let name = truncate_utf8(&self.machine_name, MAX_MACHINE_NAME);
        put_u32(&mut page, h::MACHINE_NAME_LEN, name.len() as u32);
        let at = h::MACHINE_NAME as usize;
        page[at..at + name.len()].copy_from_slice(name.as_bytes());
        put_u32(&mut page, h::PID, self.pid);
        put_u32(&mut page, h::LANE_COUNT, self.lanes.len() as u32);
        put_u64(&mut page, h::PROCESS_START, self.process_start);
        put_u64(&mut page, h::CREATED_UNIX_NS, self.created_unix_ns);
        put_u32(&mut page, h::CLOCK_SOURCE, self.clock.source.code());
        put_u32(&mut page, h::CLOCK_SHIFT, Clock::SHIFT);
        put_u64(&mut page, h::CLOCK_BASE_TICKS, self.clock.base_ticks);
        put_u64(&mut page, h::CLOCK_BASE_UNIX_NS, self.clock.base_unix_ns);
        put_u64(&mut page, h::CLOCK_MULT, self.clock.mult);
        put_u64(&mut page, h::CHECKPOINT_OFFSET, self.checkpoint_offset);
        put_u64(
            &mut page,
            h::CHECKPOINT_SLOT_SIZE,
            self.checkpoint_slot_size,
        );
        put_u32(&mut page, h::CHECKPOINT_SLOT_COUNT, CHECKPOINT_SLOTS);
        put_u32(
            &mut page,
            h::CHECKPOINT_EVERY_INPUTS,
            self.checkpoint_every_inputs,
        );
        put_u64(&mut page, h::CHECKPOINT_EVERY_MS, self.checkpoint_every_ms);
        let host = truncate_utf8(&self.hostname, 64);
        let at = h::HOSTNAME as usize;
        page[at..at + host.len()].copy_from_slice(host.as_bytes());
        for (i, lane) in self.lanes.iter().enumerate() {
            let entry = h::LANE_TABLE + i as u64 * lane_entry::SIZE;
            put_u32(&mut page, entry + lane_entry::KIND, lane.kind.code());
            put_u32(&mut page, entry + lane_entry::SLOT_SIZE, SLOT_SIZE as u32);
            put_u64(&mut page, entry + lane_entry::OFFSET, lane.offset);
            put_u64(&mut page, entry + lane_entry::SLOT_COUNT, lane.slot_count);
        }
        page
    }

    /// Decodes and validates a header page copied from a file of `file_len` bytes.
    ///
    /// ```
    /// use flightrec_schemas::header::{FormatError, HeaderInfo};
    /// let err = HeaderInfo::decode(b"definitely not a ring file", 26).unwrap_err();
    /// assert!(matches!(err, FormatError::BadMagic { .. }));
    /// let err = HeaderInfo::decode(b"FLRING\r\n", 8).unwrap_err();
    /// assert!(matches!(err, FormatError::Truncated { len: 8, .. }));
    /// ```
    pub fn decode(page: &[u8], file_len: u64) -> Result<HeaderInfo, FormatError> {
        // A short file that is not a ring file at all is better called that than "truncated".
        if let Some(magic) = page.first_chunk::<8>() {
            if *magic != MAGIC {
                return Err(FormatError::BadMagic { found: *magic });
            }
        }
        if (page.len() as u64) < HEADER_SIZE || file_len < HEADER_SIZE {
            return Err(FormatError::Truncated {
                len: file_len,
                need: HEADER_SIZE,
            });
        }
        let format_version = u32_at(page, h::FORMAT_VERSION);
        if format_version > FORMAT_VERSION {
            return Err(FormatError::FutureVersion {
                found: format_version,
                supported: FORMAT_VERSION,
            });
        }
        if format_version < FORMAT_VERSION {
            return Err(bad(
                "format_version",
                h::FORMAT_VERSION,
                "versions before 2 (an earlier record checksum) are not read by this build",
            ));
        }
        let header_size = u32_at(page, h::HEADER_SIZE) as u64;
        if header_size != HEADER_SIZE {
            return Err(bad(
                "header_size",
                h::HEADER_SIZE,
                format!("{header_size}, expected {HEADER_SIZE}"),
            ));
        }
        let file_size = u64_at(page, h::FILE_SIZE);
        if file_size > file_len {
            return Err(bad(
                "file_size",
                h::FILE_SIZE,
                format!("header says {file_size} bytes but the file has {file_len} (truncated)"),
            ));
        }
        let machine_name = decode_name(page)?;
        let clock = decode_clock(page)?;
        let lanes = decode_lanes(page, file_size)?;
        let (checkpoint_offset, checkpoint_slot_size) =
            decode_checkpoints(page, &lanes, file_size)?;
        Ok(HeaderInfo {
            format_version,
            file_size,
            machine_name,
            machine_version: u32_at(page, h::MACHINE_VERSION),
            pid: u32_at(page, h::PID),
            process_start: u64_at(page, h::PROCESS_START),
            created_unix_ns: u64_at(page, h::CREATED_UNIX_NS),
            hostname: decode_hostname(page),
            clock,
            lanes,
            checkpoint_offset,
            checkpoint_slot_size,
            checkpoint_every_inputs: u32_at(page, h::CHECKPOINT_EVERY_INPUTS),
            checkpoint_every_ms: u64_at(page, h::CHECKPOINT_EVERY_MS),
        })
    }
}

fn decode_name(page: &[u8]) -> Result<String, FormatError> {
    let len = u32_at(page, h::MACHINE_NAME_LEN) as usize;
    if len == 0 || len > MAX_MACHINE_NAME {
        let problem = format!("length {len} is outside 1..={MAX_MACHINE_NAME}");
        return Err(bad("machine_name_len", h::MACHINE_NAME_LEN, problem));
    }
    let at = h::MACHINE_NAME as usize;
    std::str::from_utf8(&page[at..at + len])
        .map(str::to_owned)
        .map_err(|e| bad("machine_name", h::MACHINE_NAME, format!("not UTF-8: {e}")))
}

fn decode_hostname(page: &[u8]) -> String {
    let field = &page[h::HOSTNAME as usize..h::HOSTNAME as usize + 64];
    let len = field.iter().position(|&b| b == 0).unwrap_or(64);
    String::from_utf8_lossy(&field[..len]).into_owned()
}

fn decode_clock(page: &[u8]) -> Result<Clock, FormatError> {
    let code = u32_at(page, h::CLOCK_SOURCE);
    let source = ClockSource::from_code(code).ok_or_else(|| {
        bad(
            "clock_source",
            h::CLOCK_SOURCE,
            format!("unknown source {code}"),
        )
    })?;
    let shift = u32_at(page, h::CLOCK_SHIFT);
    if shift != Clock::SHIFT {
        return Err(bad(
            "clock_shift",
            h::CLOCK_SHIFT,
            format!("{shift}, expected {}", Clock::SHIFT),
        ));
    }
    Ok(Clock {
        source,
        base_ticks: u64_at(page, h::CLOCK_BASE_TICKS),
        base_unix_ns: u64_at(page, h::CLOCK_BASE_UNIX_NS),
        mult: u64_at(page, h::CLOCK_MULT),
    })
}

fn decode_lanes(page: &[u8], file_size: u64) -> Result<Vec<LaneInfo>, FormatError> {
    let count = u32_at(page, h::LANE_COUNT);
    if count == 0 || count > MAX_LANES {
        let problem = format!("{count} lanes, expected 1..={MAX_LANES}");
        return Err(bad("lane_count", h::LANE_COUNT, problem));
    }
    let mut lanes: Vec<LaneInfo> = Vec::with_capacity(count as usize);
    for lane in 0..count {
        let entry = h::LANE_TABLE + lane as u64 * lane_entry::SIZE;
        let bad_lane = |problem: String| FormatError::BadLane {
            lane,
            offset: entry,
            problem,
        };
        let code = u32_at(page, entry + lane_entry::KIND);
        let kind =
            LaneKind::from_code(code).ok_or_else(|| bad_lane(format!("unknown kind {code}")))?;
        if (lane == 0) != (kind == LaneKind::Input) {
            return Err(bad_lane("lane 0 must be the one input lane".into()));
        }
        let slot_size = u32_at(page, entry + lane_entry::SLOT_SIZE) as u64;
        if slot_size != SLOT_SIZE {
            return Err(bad_lane(format!(
                "slot size {slot_size}, expected {SLOT_SIZE}"
            )));
        }
        let offset = u64_at(page, entry + lane_entry::OFFSET);
        let slot_count = u64_at(page, entry + lane_entry::SLOT_COUNT);
        if !slot_count.is_power_of_two() || slot_count < 4 {
            return Err(bad_lane(format!(
                "slot count {slot_count} is not a power of two >= 4"
            )));
        }
        let previous_end = lanes.last().map_or(HEADER_SIZE, LaneInfo::end);
        if offset < previous_end || offset % layout::PAGE != 0 {
            return Err(bad_lane(format!(
                "offset {offset} overlaps the previous region or is unaligned"
            )));
        }
        let end = slot_count
            .checked_mul(SLOT_SIZE)
            .and_then(|b| b.checked_add(layout::LANE_CONTROL_SIZE))
            .and_then(|b| b.checked_add(offset));
        if end.is_none_or(|end| end > file_size) {
            return Err(bad_lane(format!(
                "{slot_count} slots at offset {offset} run past the end of the {file_size}-byte file"
            )));
        }
        lanes.push(LaneInfo {
            kind,
            offset,
            slot_count,
        });
    }
    Ok(lanes)
}

fn decode_checkpoints(
    page: &[u8],
    lanes: &[LaneInfo],
    file_size: u64,
) -> Result<(u64, u64), FormatError> {
    let slots = u32_at(page, h::CHECKPOINT_SLOT_COUNT);
    if slots != CHECKPOINT_SLOTS {
        let problem = format!("{slots}, expected {CHECKPOINT_SLOTS}");
        return Err(bad(
            "checkpoint_slot_count",
            h::CHECKPOINT_SLOT_COUNT,
            problem,
        ));
    }
    let offset = u64_at(page, h::CHECKPOINT_OFFSET);
    let lanes_end = lanes.last().map_or(HEADER_SIZE, LaneInfo::end);
    if offset < lanes_end || offset % layout::PAGE != 0 {
        let problem =
            format!("{offset} overlaps the lanes (which end at {lanes_end}) or is unaligned");
        return Err(bad("checkpoint_offset", h::CHECKPOINT_OFFSET, problem));
    }
    let size = u64_at(page, h::CHECKPOINT_SLOT_SIZE);
    let end = size
        .checked_mul(CHECKPOINT_SLOTS as u64)
        .and_then(|b| b.checked_add(offset));
    if size < layout::CHECKPOINT_HEADER_SIZE
        || size % 8 != 0
        || end.is_none_or(|end| end > file_size)
    {
        let problem =
            format!("slots of {size} bytes at {offset} are not whole words or do not fit a {file_size}-byte file");
        return Err(bad(
            "checkpoint_slot_size",
            h::CHECKPOINT_SLOT_SIZE,
            problem,
        ));
    }
    Ok((offset, size))
}

/// The cause of death recorded in the header.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CrashRecord {
    /// Signal or panic.
    pub cause: CrashCause,
    /// Kernel thread id of the thread that died.
    pub tid: u32,
    /// Its name, if it had one.
    pub thread_name: String,
    /// Unix nanoseconds of death.
    pub time_unix_ns: u64,
    /// Panic message, or a description of the signal.
    pub message: String,
}

/// What killed the writer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CrashCause {
    /// A fatal signal.
    Signal {
        /// Signal number.
        signal: i32,
        /// `si_code`.
        code: i32,
        /// Faulting address, for SIGSEGV, SIGBUS, SIGILL and SIGFPE.
        fault_addr: u64,
    },
    /// A panic.
    Panic {
        /// `file:line:column`.
        location: String,
    },
}

/// Crash kinds as stored in the record.
pub mod crash_kind {
    /// A fatal signal.
    pub const SIGNAL: u32 = 1;
    /// A panic.
    pub const PANIC: u32 = 2;
}

/// Values of the crash record's state word.
pub mod crash_state {
    /// No crash recorded.
    pub const NONE: u64 = 0;
    /// Being written (the writer died while writing it).
    pub const WRITING: u64 = 1;
    /// Complete.
    pub const COMMITTED: u64 = 2;
}

fn text(page: &[u8], at: u64, len_at: u64, cap: usize) -> String {
    let len = (u32_at(page, len_at) as usize).min(cap);
    String::from_utf8_lossy(&page[at as usize..at as usize + len]).into_owned()
}

impl CrashRecord {
    /// Decodes the crash record from a header page. `Ok(None)` when nothing was recorded.
    pub fn decode(page: &[u8]) -> Result<Option<CrashRecord>, FormatError> {
        let base = h::CRASH;
        let state = u64_at(page, base + crash::STATE);
        match state {
            crash_state::NONE => return Ok(None),
            crash_state::COMMITTED => {}
            crash_state::WRITING => {
                return Err(bad(
                    "crash.state",
                    base,
                    "the writer died while recording its crash",
                ));
            }
            other => return Err(bad("crash.state", base, format!("unknown state {other}"))),
        }
        let cause = match u32_at(page, base + crash::KIND) {
            crash_kind::SIGNAL => CrashCause::Signal {
                signal: u32_at(page, base + crash::SIGNAL) as i32,
                code: u32_at(page, base + crash::SI_CODE) as i32,
                fault_addr: u64_at(page, base + crash::FAULT_ADDR),
            },
            crash_kind::PANIC => CrashCause::Panic {
                location: text(
                    page,
                    base + crash::LOCATION,
                    base + crash::LOCATION_LEN,
                    crash::LOCATION_CAP,
                ),
            },
            other => {
                return Err(bad(
                    "crash.kind",
                    base + crash::KIND,
                    format!("unknown kind {other}"),
                ))
            }
        };
        Ok(Some(CrashRecord {
            cause,
            tid: u32_at(page, base + crash::TID),
            thread_name: text(
                page,
                base + crash::THREAD_NAME,
                base + crash::THREAD_NAME_LEN,
                crash::THREAD_NAME_CAP,
            ),
            time_unix_ns: u64_at(page, base + crash::TIME_UNIX_NS),
            message: text(
                page,
                base + crash::MESSAGE,
                base + crash::MESSAGE_LEN,
                crash::MESSAGE_CAP,
            ),
        }))
    }
}

/// The mutable words of the header, decoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LiveWords {
    /// Status code as stored (0 while the writer is still laying the file out).
    pub status: Option<Status>,
    /// Trace events dropped for want of a free lane.
    pub dropped_no_lane: u64,
    /// Checkpoints that could not be written.
    pub checkpoints_failed: u64,
    /// Unix nanoseconds of a clean exit, 0 otherwise.
    pub exited_unix_ns: u64,
    /// Trace events dropped because their thread was already inside the recorder.
    pub dropped_reentrant: u64,
    /// Inputs that could not be encoded.
    pub inputs_unencodable: u64,
}

impl LiveWords {
    /// Decodes the mutable words from a header page.
    pub fn decode(page: &[u8]) -> LiveWords {
        LiveWords {
            status: Status::from_code(u64_at(page, h::STATUS)),
            dropped_no_lane: u64_at(page, h::DROPPED_NO_LANE),
            checkpoints_failed: u64_at(page, h::CHECKPOINTS_FAILED),
            exited_unix_ns: u64_at(page, h::EXITED_UNIX_NS),
            dropped_reentrant: u64_at(page, h::DROPPED_REENTRANT),
            inputs_unencodable: u64_at(page, h::INPUTS_UNENCODABLE),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn sample() -> HeaderInfo {
        let plan = LayoutPlan {
            input_slots: 1024,
            trace_lanes: 3,
            trace_slots: 256,
            state_capacity: 10_000,
        };
        let (lanes, checkpoint_offset, checkpoint_slot_size, file_size) = plan.place();
        HeaderInfo {
            format_version: FORMAT_VERSION,
            file_size,
            machine_name: "ledger".into(),
            machine_version: 3,
            pid: 42,
            process_start: 777,
            created_unix_ns: 1_700_000_000_000_000_000,
            hostname: "host-a".into(),
            clock: Clock {
                source: ClockSource::Tsc,
                base_ticks: 5,
                base_unix_ns: 6,
                mult: 7,
            },
            lanes,
            checkpoint_offset,
            checkpoint_slot_size,
            checkpoint_every_inputs: 1000,
            checkpoint_every_ms: 500,
        }
    }

    #[test]
    fn header_round_trips() {
        let info = sample();
        let page = info.encode();
        assert_eq!(HeaderInfo::decode(&page, info.file_size).unwrap(), info);
    }

    #[test]
    fn truncated_file_and_future_version_are_named() {
        let info = sample();
        let mut page = info.encode();
        let err = HeaderInfo::decode(&page, info.file_size - 1).unwrap_err();
        assert!(
            matches!(
                err,
                FormatError::BadField {
                    field: "file_size",
                    ..
                }
            ),
            "{err}"
        );
        page[8] = 99;
        let err = HeaderInfo::decode(&page, info.file_size).unwrap_err();
        assert_eq!(
            err,
            FormatError::FutureVersion {
                found: 99,
                supported: FORMAT_VERSION
            }
        );
    }

    #[test]
    fn lanes_that_overlap_or_overflow_are_refused() {
        let info = sample();
        let mut page = info.encode();
        let entry = (h::LANE_TABLE + lane_entry::SIZE + lane_entry::SLOT_COUNT) as usize;
        page[entry..entry + 8].copy_from_slice(&(1u64 << 60).to_le_bytes());
        let err = HeaderInfo::decode(&page, info.file_size).unwrap_err();
        assert!(matches!(err, FormatError::BadLane { lane: 1, .. }), "{err}");
    }
}
