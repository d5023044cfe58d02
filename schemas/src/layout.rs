//! Byte offsets and sizes of the ring file, version [`FORMAT_VERSION`]. `schemas/FORMAT.md` is
//! the prose twin of this module; change both together.
//!
//! All integers are little-endian. Offsets inside a region are relative to its start.

/// The first eight bytes of every ring file. The CR LF pair catches text-mode mangling.
pub const MAGIC: [u8; 8] = *b"FLRING\r\n";

/// Version of the ring-file layout, written right after the magic.
///
/// Bump it whenever an offset, a size, a field's meaning or the checksum changes. Readers refuse
/// files whose version is newer than theirs, so an old replayer never misreads a new file.
pub const FORMAT_VERSION: u32 = 2;

/// Every region starts on a page boundary so the writer can map and fault it independently.
pub const PAGE: u64 = 4096;

/// Bytes of the file header (page 0).
pub const HEADER_SIZE: u64 = 4096;

/// Bytes of one lane slot. Records longer than one slot continue in the following slots.
pub const SLOT_SIZE: u64 = 64;

/// Bytes before the first slot of a lane: its control block.
pub const LANE_CONTROL_SIZE: u64 = 128;

/// Bytes before the state bytes of a checkpoint slot.
pub const CHECKPOINT_HEADER_SIZE: u64 = 256;

/// Number of checkpoint slots; they alternate so a crash mid-checkpoint leaves the other intact.
pub const CHECKPOINT_SLOTS: u32 = 2;

/// Most lanes a file may describe (the lane table must fit in the header).
pub const MAX_LANES: u32 = ((HEADER_SIZE - header::LANE_TABLE) / lane_entry::SIZE) as u32;

/// Longest machine name, in bytes of UTF-8.
pub const MAX_MACHINE_NAME: usize = 64;

/// Longest record payload. Larger inputs are dropped and counted (and a checkpoint follows them
/// so that replay can resume after them); larger trace events are truncated.
pub const MAX_RECORD_LEN: u32 = 64 * 1024;

/// Fields of the header page.
pub mod header {
    /// `[u8; 8]`: [`super::MAGIC`].
    pub const MAGIC: u64 = 0;
    /// `u32`: [`super::FORMAT_VERSION`].
    pub const FORMAT_VERSION: u64 = 8;
    /// `u32`: bytes of this header, [`super::HEADER_SIZE`].
    pub const HEADER_SIZE: u64 = 12;
    /// `u64`: bytes of the whole file as created.
    pub const FILE_SIZE: u64 = 16;
    /// `u32`: the recorded machine's version.
    pub const MACHINE_VERSION: u64 = 24;
    /// `u32`: length of the machine name.
    pub const MACHINE_NAME_LEN: u64 = 28;
    /// `[u8; 64]`: the machine name, UTF-8.
    pub const MACHINE_NAME: u64 = 32;
    /// `u32`: process id of the writer.
    pub const PID: u64 = 96;
    /// `u32`: number of entries in the lane table.
    pub const LANE_COUNT: u64 = 100;
    /// `u64`: the writer's start time in clock ticks since boot (`/proc/PID/stat` field 22), so
    /// a reader can tell the writer from a later process that reuses its pid. 0 if unknown.
    pub const PROCESS_START: u64 = 104;
    /// `u64`: Unix time of creation, nanoseconds.
    pub const CREATED_UNIX_NS: u64 = 112;
    /// `u32`: [`crate::clock::ClockSource`] code.
    pub const CLOCK_SOURCE: u64 = 120;
    /// `u32`: fixed-point shift of the clock multiplier (always 32 in version 1).
    pub const CLOCK_SHIFT: u64 = 124;
    /// `u64`: ticks at the calibration point.
    pub const CLOCK_BASE_TICKS: u64 = 128;
    /// `u64`: Unix nanoseconds at the calibration point.
    pub const CLOCK_BASE_UNIX_NS: u64 = 136;
    /// `u64`: nanoseconds per tick times 2^32.
    pub const CLOCK_MULT: u64 = 144;
    /// `u64`: offset of the first checkpoint slot.
    pub const CHECKPOINT_OFFSET: u64 = 152;
    /// `u64`: bytes of one checkpoint slot, header included.
    pub const CHECKPOINT_SLOT_SIZE: u64 = 160;
    /// `u32`: number of checkpoint slots, [`super::CHECKPOINT_SLOTS`].
    pub const CHECKPOINT_SLOT_COUNT: u64 = 168;
    /// `u32`: inputs between cadence checkpoints, as configured (informative).
    pub const CHECKPOINT_EVERY_INPUTS: u64 = 172;
    /// `u64`: milliseconds between cadence checkpoints, as configured (informative).
    pub const CHECKPOINT_EVERY_MS: u64 = 176;
    /// `[u8; 64]`: host name of the writer, NUL padded.
    pub const HOSTNAME: u64 = 184;

    /// `u64` atomic: [`crate::header::Status`] code. Written last at creation.
    pub const STATUS: u64 = 256;
    /// `u64` atomic: trace events dropped because every trace lane was owned by another thread.
    pub const DROPPED_NO_LANE: u64 = 264;
    /// `u64` atomic: checkpoints that could not be written (state larger than a slot, or its
    /// encoding failed). While this grows, replay cannot move its base forward.
    pub const CHECKPOINTS_FAILED: u64 = 272;
    /// `u64` atomic: Unix nanoseconds of the clean exit, 0 while running or after a crash.
    pub const EXITED_UNIX_NS: u64 = 280;
    /// `u64` atomic: trace events dropped because the thread was already inside the recorder
    /// (a signal handler tracing while its thread traced).
    pub const DROPPED_REENTRANT: u64 = 288;
    /// `u64` atomic: inputs that could not be encoded; a checkpoint follows each.
    pub const INPUTS_UNENCODABLE: u64 = 296;

    /// Start of the crash record, see [`super::crash`].
    pub const CRASH: u64 = 512;
    /// Start of the lane table, see [`super::lane_entry`].
    pub const LANE_TABLE: u64 = 1024;
}

/// The crash record inside the header, written by the panic hook or fatal-signal handler.
pub mod crash {
    /// Bytes of the crash record.
    pub const SIZE: u64 = 512;
    /// `u64` atomic: 0 none, 1 being written, 2 committed (release store after the fields).
    pub const STATE: u64 = 0;
    /// `u32`: 1 fatal signal, 2 panic.
    pub const KIND: u64 = 8;
    /// `i32`: signal number.
    pub const SIGNAL: u64 = 12;
    /// `i32`: `si_code` of the signal.
    pub const SI_CODE: u64 = 16;
    /// `u32`: kernel thread id of the thread that died.
    pub const TID: u64 = 20;
    /// `u64`: fault address (`si_addr`) for SIGSEGV, SIGBUS, SIGILL, SIGFPE; else 0.
    pub const FAULT_ADDR: u64 = 24;
    /// `u64`: Unix nanoseconds of death.
    pub const TIME_UNIX_NS: u64 = 32;
    /// `u32`: bytes used of `THREAD_NAME`.
    pub const THREAD_NAME_LEN: u64 = 40;
    /// `u32`: bytes used of `LOCATION`.
    pub const LOCATION_LEN: u64 = 44;
    /// `u32`: bytes used of `MESSAGE`.
    pub const MESSAGE_LEN: u64 = 48;
    /// `[u8; 32]`: name of the thread that died.
    pub const THREAD_NAME: u64 = 56;
    /// `[u8; 128]`: `file:line:column` of a panic.
    pub const LOCATION: u64 = 88;
    /// `[u8; 296]`: panic message or signal description, truncated at a UTF-8 boundary.
    pub const MESSAGE: u64 = 216;
    /// Capacity of `THREAD_NAME`.
    pub const THREAD_NAME_CAP: usize = 32;
    /// Capacity of `LOCATION`.
    pub const LOCATION_CAP: usize = 128;
    /// Capacity of `MESSAGE`.
    pub const MESSAGE_CAP: usize = (SIZE - MESSAGE) as usize;
}

/// One entry of the lane table (immutable after creation).
pub mod lane_entry {
    /// Bytes of one entry.
    pub const SIZE: u64 = 32;
    /// `u32`: [`crate::header::LaneKind`] code.
    pub const KIND: u64 = 0;
    /// `u32`: bytes per slot, [`super::SLOT_SIZE`].
    pub const SLOT_SIZE: u64 = 4;
    /// `u64`: file offset of the lane's control block; slots follow it.
    pub const OFFSET: u64 = 8;
    /// `u64`: number of slots, a power of two.
    pub const SLOT_COUNT: u64 = 16;
}

/// The control block at the start of each lane. Only touched when a lane changes hands and
/// when something is dropped, never per record.
pub mod lane_control {
    /// `u64` atomic: 0 when free, else the kernel thread id of the owning thread (trace lanes)
    /// or the writer's pid (input lanes).
    pub const OWNER: u64 = 0;
    /// `u64`: next slot position, saved when a trace lane is released for the next owner.
    pub const NEXT_POS: u64 = 8;
    /// `u64`: next record sequence number, saved with `NEXT_POS`.
    pub const NEXT_SEQ: u64 = 16;
    /// `u64` atomic: records dropped because they exceeded [`super::MAX_RECORD_LEN`] or a
    /// quarter of the lane.
    pub const DROPPED_TOO_LARGE: u64 = 24;
    /// `u64`: kernel thread id of the latest owner.
    pub const LAST_TID: u64 = 40;
    /// `[u8; 32]`: name of the latest owner (thread name, or `input` for input lanes).
    pub const NAME: u64 = 48;
    /// Capacity of `NAME`.
    pub const NAME_CAP: usize = 32;
}

/// A lane slot. The first slot of a record carries its header; continuation slots carry only
/// the stamp and payload.
pub mod slot {
    /// `u64` atomic: `pos + 1` once committed, where `pos` is the slot's position in the lane;
    /// [`CONTINUATION`] is set on the second and later slots of a record; 0 while being written.
    pub const STAMP: u64 = 0;
    /// `u64`: record sequence number in the lane (for input lanes, the input's sequence).
    pub const SEQ: u64 = 8;
    /// `u64`: clock ticks when recorded.
    pub const TICKS: u64 = 16;
    /// `u32`: payload length in bytes.
    pub const LEN: u64 = 24;
    /// `u32`: [`crate::slot::record_checksum`] of position, sequence, ticks, length and payload.
    pub const CHECKSUM: u64 = 28;
    /// Payload bytes in the first slot of a record.
    pub const HEAD_PAYLOAD: u64 = 32;
    /// Payload bytes in each continuation slot (after its stamp).
    pub const CONT_PAYLOAD: u64 = super::SLOT_SIZE - 8;
    /// Stamp bit marking a continuation slot.
    pub const CONTINUATION: u64 = 1 << 63;
}

/// A checkpoint slot: a header, then the machine's encoded state.
pub mod checkpoint {
    /// `u64` atomic: 0 while empty or being written, else the checkpoint's generation (1, 2, …
    /// across both slots), stored with release ordering after everything else.
    pub const STAMP: u64 = 0;
    /// `u64`: number of inputs applied before this state; replay resumes at this sequence.
    pub const INPUT_SEQ: u64 = 8;
    /// `u64`: clock ticks when taken.
    pub const TICKS: u64 = 16;
    /// `u64`: bytes of encoded state that follow the header.
    pub const STATE_LEN: u64 = 24;
    /// `u64`: `xxh3_64` of the encoded state.
    pub const STATE_HASH: u64 = 32;
    /// `u64`: bit `i` set when counter `i` was read; a clear bit means the machine lacks it.
    pub const COUNTERS_VALID: u64 = 40;
    /// `[u64; 8]`: counters in [`crate::header::COUNTER_NAMES`] order.
    pub const COUNTERS: u64 = 48;
    /// `u64`: `xxh3_64` of bytes 8..112 of this header (everything but the stamp and itself).
    pub const HEADER_HASH: u64 = 112;
    /// Number of counter slots.
    pub const COUNTER_SLOTS: usize = 8;
}

/// Rounds `n` up to a multiple of [`PAGE`].
pub const fn page_align(n: u64) -> u64 {
    n.div_ceil(PAGE) * PAGE
}

/// Bytes of a lane with `slot_count` slots, control block included, page aligned.
pub const fn lane_bytes(slot_count: u64) -> u64 {
    page_align(LANE_CONTROL_SIZE + slot_count * SLOT_SIZE)
}

/// Bytes of a checkpoint slot holding up to `state_capacity` bytes of state, page aligned.
pub const fn checkpoint_slot_bytes(state_capacity: u64) -> u64 {
    page_align(CHECKPOINT_HEADER_SIZE + state_capacity)
}

/// Slots that a record of `len` payload bytes occupies.
///
/// ```
/// use flightrec_schemas::layout::slots_for;
/// assert_eq!(slots_for(0), 1);
/// assert_eq!(slots_for(32), 1);
/// assert_eq!(slots_for(33), 2);
/// assert_eq!(slots_for(32 + 56), 2);
/// ```
pub const fn slots_for(len: u32) -> u64 {
    let len = len as u64;
    if len <= slot::HEAD_PAYLOAD {
        1
    } else {
        1 + (len - slot::HEAD_PAYLOAD).div_ceil(slot::CONT_PAYLOAD)
    }
}
