//! The payload of a trace-lane record: one event or span edge of one thread.
//!
//! ```text
//! 0  u8   kind      1 event, 2 span enter, 3 span exit
//! 1  u8   level     1 error, 2 warn, 3 info, 4 debug, 5 trace
//! 2  u16  flags     bit 0: the message was truncated
//! 4  u32  tid       kernel thread id of the recording thread
//! 8  ...  message   UTF-8
//! ```

/// Bytes before the message.
pub const TRACE_HEADER_LEN: usize = 8;
/// Flag: the message was cut to fit [`crate::layout::MAX_RECORD_LEN`] or the lane.
pub const FLAG_TRUNCATED: u16 = 1;

/// Severity, as in `tracing`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Level {
    /// Something failed.
    Error = 1,
    /// Something is off.
    Warn = 2,
    /// Normal operation.
    Info = 3,
    /// Detail for developers.
    Debug = 4,
    /// Fine detail.
    Trace = 5,
}

impl Level {
    /// The level a stored byte names.
    pub fn from_code(code: u8) -> Option<Level> {
        [
            Level::Error,
            Level::Warn,
            Level::Info,
            Level::Debug,
            Level::Trace,
        ]
        .get(code.wrapping_sub(1) as usize)
        .copied()
    }

    /// Lower-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Error => "error",
            Level::Warn => "warn",
            Level::Info => "info",
            Level::Debug => "debug",
            Level::Trace => "trace",
        }
    }
}

/// What a trace record marks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TraceKind {
    /// A point event (a log line).
    Event = 1,
    /// A span was entered.
    SpanEnter = 2,
    /// A span was exited.
    SpanExit = 3,
    /// A thread took this lane: the message is its name. Written when a thread claims a lane,
    /// so that events keep the name of the thread that wrote them after the lane changes hands.
    Thread = 4,
}

impl TraceKind {
    /// The kind a stored byte names.
    pub fn from_code(code: u8) -> Option<TraceKind> {
        match code {
            1 => Some(TraceKind::Event),
            2 => Some(TraceKind::SpanEnter),
            3 => Some(TraceKind::SpanExit),
            4 => Some(TraceKind::Thread),
            _ => None,
        }
    }
}

/// A decoded trace record payload.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TraceEvent {
    /// Event or span edge.
    pub kind: TraceKind,
    /// Severity.
    pub level: Level,
    /// Recording thread.
    pub tid: u32,
    /// Whether the message was cut.
    pub truncated: bool,
    /// The text.
    pub message: String,
}

/// The fixed header of a trace payload.
#[inline]
pub fn encode_header(
    kind: TraceKind,
    level: Level,
    flags: u16,
    tid: u32,
) -> [u8; TRACE_HEADER_LEN] {
    let mut out = [0u8; TRACE_HEADER_LEN];
    out[0] = kind as u8;
    out[1] = level as u8;
    out[2..4].copy_from_slice(&flags.to_le_bytes());
    out[4..8].copy_from_slice(&tid.to_le_bytes());
    out
}

impl TraceEvent {
    /// Decodes a trace payload. Invalid UTF-8 is replaced, not refused: a damaged message is
    /// still worth showing.
    pub fn decode(payload: &[u8]) -> Result<TraceEvent, String> {
        if payload.len() < TRACE_HEADER_LEN {
            return Err(format!(
                "trace payload of {} bytes is shorter than its header",
                payload.len()
            ));
        }
        let kind = TraceKind::from_code(payload[0])
            .ok_or_else(|| format!("unknown trace kind {}", payload[0]))?;
        let level =
            Level::from_code(payload[1]).ok_or_else(|| format!("unknown level {}", payload[1]))?;
        let flags = u16::from_le_bytes([payload[2], payload[3]]);
        let tid = u32::from_le_bytes(payload[4..8].try_into().expect("4 bytes"));
        let message = String::from_utf8_lossy(&payload[TRACE_HEADER_LEN..]).into_owned();
        Ok(TraceEvent {
            kind,
            level,
            tid,
            truncated: flags & FLAG_TRUNCATED != 0,
            message,
        })
    }
}
