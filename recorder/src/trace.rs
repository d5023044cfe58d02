//! Trace events from any thread. Each thread claims a trace lane of its own the first time it
//! records, and gives it back when it exits, so the hot path shares no cursor with other threads.
//! When every lane is taken, events are dropped and counted, never waited for.

use std::cell::RefCell;
use std::fmt::Write as _;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use flightrec_schemas::layout::{header as h, lane_control};
use flightrec_schemas::trace::{encode_header, Level, TraceKind, FLAG_TRUNCATED, TRACE_HEADER_LEN};

use crate::clock;
use crate::file::LaneMemory;
use crate::lane::LaneWriter;
use crate::shared::Shared;

/// A handle for recording trace events into a ring file from any thread. Cheap to clone.
///
/// ```
/// # use flightrec_recorder::doc_example::recorded_counter;
/// use flightrec_recorder::Level;
/// let (recorded, _dir) = recorded_counter();
/// let tracer = recorded.tracer();
/// std::thread::spawn(move || tracer.event(Level::Info, "worker started")).join().unwrap();
/// ```
#[derive(Clone)]
pub struct Tracer {
    shared: Arc<Shared>,
}

/// Records a formatted trace event without allocating (the text goes straight into the
/// thread's reusable buffer).
///
/// ```
/// # use flightrec_recorder::doc_example::recorded_counter;
/// let (recorded, _dir) = recorded_counter();
/// let tracer = recorded.tracer();
/// flightrec_recorder::event!(tracer, flightrec_recorder::Level::Warn, "queue at {}%", 93);
/// ```
#[macro_export]
macro_rules! event {
    ($tracer:expr, $level:expr, $($arg:tt)+) => {
        $tracer.event_fmt($level, format_args!($($arg)+))
    };
}

impl Tracer {
    pub(crate) fn new(shared: Arc<Shared>) -> Tracer {
        Tracer { shared }
    }

    /// Records a point event (a log line).
    #[inline]
    pub fn event(&self, level: Level, message: &str) {
        self.record(TraceKind::Event, level, Text::Str(message));
    }

    /// Records a formatted event; see [`event!`](crate::event).
    #[inline]
    pub fn event_fmt(&self, level: Level, args: std::fmt::Arguments<'_>) {
        // Plain literals need no formatting.
        match args.as_str() {
            Some(message) => self.record(TraceKind::Event, level, Text::Str(message)),
            None => self.record(TraceKind::Event, level, Text::Fmt(args)),
        }
    }

    /// Records that the current thread entered the span `name`.
    pub fn span_enter(&self, level: Level, name: &str) {
        self.record(TraceKind::SpanEnter, level, Text::Str(name));
    }

    /// Records that the current thread left the span `name`.
    pub fn span_exit(&self, level: Level, name: &str) {
        self.record(TraceKind::SpanExit, level, Text::Str(name));
    }

    #[inline]
    fn record(&self, kind: TraceKind, level: Level, text: Text<'_>) {
        let ticks = clock::now(self.shared.clock.source);
        let recorded = THREAD_LANES.try_with(|lanes| match lanes.try_borrow_mut() {
            Ok(mut lanes) => lanes.record(&self.shared, ticks, kind, level, text),
            Err(_) => self.shared.count(h::DROPPED_REENTRANT),
        });
        if recorded.is_err() {
            // The thread is exiting and its lane is already given back.
            self.shared.count(h::DROPPED_NO_LANE);
        }
    }
}

/// The text of a trace record: borrowed as is, or formatted into the thread's buffer.
enum Text<'a> {
    Str(&'a str),
    Fmt(std::fmt::Arguments<'a>),
}

thread_local! {
    static THREAD_LANES: RefCell<ThreadLanes> = const { RefCell::new(ThreadLanes::new()) };
}

/// The lanes this thread owns, one per recorder it has traced into.
struct ThreadLanes {
    owned: Vec<OwnedLane>,
    formatted: String,
    tid: u32,
}

struct OwnedLane {
    recorder: u64,
    writer: LaneWriter,
}

impl ThreadLanes {
    const fn new() -> ThreadLanes {
        ThreadLanes {
            owned: Vec::new(),
            formatted: String::new(),
            tid: 0,
        }
    }

    #[inline]
    fn record(
        &mut self,
        shared: &Arc<Shared>,
        ticks: u64,
        kind: TraceKind,
        level: Level,
        text: Text<'_>,
    ) {
        let index = match self.owned.iter().position(|l| l.recorder == shared.id) {
            Some(index) => index,
            None => match self.claim(shared) {
                Some(index) => index,
                None => return shared.count(h::DROPPED_NO_LANE),
            },
        };
        let text = match text {
            Text::Str(text) => text,
            Text::Fmt(args) => {
                self.formatted.clear();
                let _ = self.formatted.write_fmt(args);
                &self.formatted
            }
        };
        let writer = &mut self.owned[index].writer;
        let room = writer.max_len() as usize - TRACE_HEADER_LEN;
        let message = flightrec_schemas::header::truncate_utf8(text, room);
        let flags = if message.len() < text.len() {
            FLAG_TRUNCATED
        } else {
            0
        };
        let header = u64::from_le_bytes(encode_header(kind, level, flags, self.tid));
        // Cannot fail: the message was cut to the lane's limit above.
        let _ = writer.push_prefixed(ticks, header, message.as_bytes());
    }

    #[cold]
    fn claim(&mut self, shared: &Arc<Shared>) -> Option<usize> {
        if self.tid == 0 {
            self.tid = gettid();
        }
        let writer = claim(shared, self.tid)?;
        self.owned.push(OwnedLane {
            recorder: shared.id,
            writer,
        });
        Some(self.owned.len() - 1)
    }
}

impl Drop for OwnedLane {
    /// Gives the lane back for the next thread, which continues its positions and numbering.
    fn drop(&mut self) {
        let memory = self.writer.memory();
        memory
            .control(lane_control::NEXT_POS)
            .store(self.writer.pos(), Ordering::Relaxed);
        memory
            .control(lane_control::NEXT_SEQ)
            .store(self.writer.seq(), Ordering::Relaxed);
        memory
            .control(lane_control::OWNER)
            .store(0, Ordering::Release);
    }
}

/// Takes the first free trace lane of `shared` for the thread `tid`.
#[cold]
fn claim(shared: &Arc<Shared>, tid: u32) -> Option<LaneWriter> {
    for info in &shared.trace_lanes {
        let memory = LaneMemory::new(&shared.file, info);
        let owner = memory.control(lane_control::OWNER);
        if owner.load(Ordering::Relaxed) != 0
            || owner
                .compare_exchange(0, tid as u64, Ordering::Acquire, Ordering::Relaxed)
                .is_err()
        {
            continue;
        }
        let pos = memory
            .control(lane_control::NEXT_POS)
            .load(Ordering::Relaxed);
        let seq = memory
            .control(lane_control::NEXT_SEQ)
            .load(Ordering::Relaxed);
        memory
            .control(lane_control::LAST_TID)
            .store(tid as u64, Ordering::Relaxed);
        let name = std::thread::current()
            .name()
            .map_or_else(|| format!("thread-{tid}"), str::to_owned);
        store_name(&memory, &name);
        let mut writer = LaneWriter::new(memory, pos, seq);
        // The lane's name is its latest owner's; this record keeps each owner's name beside
        // its own events.
        let header = encode_header(TraceKind::Thread, Level::Info, 0, tid);
        let name = flightrec_schemas::header::truncate_utf8(&name, lane_control::NAME_CAP);
        let ticks = clock::now(shared.clock.source);
        let _ = writer.push_prefixed(ticks, u64::from_le_bytes(header), name.as_bytes());
        return Some(writer);
    }
    None
}

/// Stores a lane's owner name into its control block, NUL padded.
pub(crate) fn store_name(memory: &LaneMemory, name: &str) {
    let name = flightrec_schemas::header::truncate_utf8(name, lane_control::NAME_CAP);
    let mut bytes = [0u8; lane_control::NAME_CAP];
    bytes[..name.len()].copy_from_slice(name.as_bytes());
    for (i, chunk) in bytes.chunks_exact(8).enumerate() {
        let word = u64::from_le_bytes(chunk.try_into().expect("8 bytes"));
        memory
            .control(lane_control::NAME + 8 * i as u64)
            .store(word, Ordering::Relaxed);
    }
}

/// The kernel id of the calling thread (async-signal-safe).
pub(crate) fn gettid() -> u32 {
    nix::unistd::gettid().as_raw() as u32
}
