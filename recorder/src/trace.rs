//! Trace events from any thread. Each thread claims a trace lane of its own the first time it
//! records, and gives it back when it exits, so the hot path shares no cursor with other threads.
//! When every lane is taken, events are dropped and counted, never waited for.
#![allow(unsafe_code)]

use std::cell::{Cell, RefCell};
use std::fmt::Write as _;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use flightrec_schemas::layout::slot::HEAD_PAYLOAD;
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
        self.record(TraceKind::Event, level, message);
    }

    /// Records a formatted event; see [`event!`](crate::event).
    #[inline]
    pub fn event_fmt(&self, level: Level, args: std::fmt::Arguments<'_>) {
        // Plain literals need no formatting.
        match args.as_str() {
            Some(message) => self.record(TraceKind::Event, level, message),
            None => self.record_fmt(TraceKind::Event, level, args),
        }
    }

    /// Records that the current thread entered the span `name`.
    pub fn span_enter(&self, level: Level, name: &str) {
        self.record(TraceKind::SpanEnter, level, name);
    }

    /// Records that the current thread left the span `name`.
    pub fn span_exit(&self, level: Level, name: &str) {
        self.record(TraceKind::SpanExit, level, name);
    }

    /// The hot path, inlined whole into the caller: a call would pass the message through
    /// memory and save and restore registers, which costs as much as the record itself.
    #[inline(always)]
    fn record(&self, kind: TraceKind, level: Level, text: &str) {
        let ticks = clock::now(self.shared.clock.source);
        let id = self.shared.id;
        // Two small accesses rather than one holding the write: each inlines for certain.
        let (lane, tid) = HOT.with(|hot| {
            if hot.recorder.get() != id {
                return (std::ptr::null_mut(), 0);
            }
            hot.recorder.set(BUSY);
            (hot.lane.get(), hot.tid.get())
        });
        if lane.is_null() {
            return self.record_cold(ticks, kind, level, text);
        }
        // SAFETY: `HOT` held this recorder's id, so `lane` points at the writer of the hot lane
        // that this thread's `THREAD_LANES` owns, set by `publish_hot` after the lanes last
        // moved (they move only inside `with_lanes`, which marks `HOT` busy first and points it
        // afresh after); `ThreadLanes::drop` resets `HOT` before any lane is dropped. Nothing
        // else reaches the writer until `HOT` holds the id again: only this thread reads `HOT`,
        // and `BUSY` keeps a re-entrant event (a signal handler, a `Display` impl) off it.
        let writer = unsafe { &mut *lane };
        write_event(writer, ticks, kind, level, tid, text);
        HOT.with(|hot| hot.recorder.set(id));
    }

    /// The first event of a thread into this recorder, or one after an event into another:
    /// finds or claims the lane, makes it the hot one, and records.
    #[cold]
    #[inline(never)]
    fn record_cold(&self, ticks: u64, kind: TraceKind, level: Level, text: &str) {
        self.with_lanes(|lanes| lanes.record(&self.shared, ticks, kind, level, text));
    }

    #[inline(never)]
    fn record_fmt(&self, kind: TraceKind, level: Level, args: std::fmt::Arguments<'_>) {
        // The event happens now, not once it is formatted.
        let ticks = clock::now(self.shared.clock.source);
        self.with_lanes(|lanes| lanes.record_fmt(&self.shared, ticks, kind, level, args));
    }

    /// Runs `record` on this thread's lanes, unless the thread is already recording (a signal
    /// handler or a `Display` impl tracing mid-event) or exiting: then the event is counted as
    /// dropped. The hot lane is marked busy meanwhile, so that the hot path stays off it too.
    fn with_lanes(&self, record: impl FnOnce(&mut ThreadLanes)) {
        if HOT.with(|hot| hot.recorder.get()) == BUSY {
            return self.shared.count(h::DROPPED_REENTRANT);
        }
        let recorded = THREAD_LANES.try_with(|lanes| match lanes.try_borrow_mut() {
            Ok(mut lanes) => {
                HOT.with(|hot| hot.recorder.set(BUSY));
                // Points `HOT` afresh however `record` ends, a panic in a `Display` included.
                let busy = Busy(&mut lanes);
                record(busy.0);
            }
            Err(_) => self.shared.count(h::DROPPED_REENTRANT),
        });
        if recorded.is_err() {
            // The thread is exiting and its lane is already given back.
            self.shared.count(h::DROPPED_NO_LANE);
        }
    }
}

/// The thread's lanes while the cold path works on them; dropping it ends the busy spell.
struct Busy<'a>(&'a mut ThreadLanes);

impl Drop for Busy<'_> {
    fn drop(&mut self) {
        self.0.publish_hot();
    }
}

/// The longest text that fits one slot beside its header. Every lane takes a record of one
/// slot (a lane's limit is at least a slot's payload), so such a text is never cut.
const SHORT_TEXT: usize = HEAD_PAYLOAD as usize - TRACE_HEADER_LEN;

/// Writes one trace record into `writer`, its text cut to the lane's limit if need be.
#[inline(always)]
fn write_event(
    writer: &mut LaneWriter,
    ticks: u64,
    kind: TraceKind,
    level: Level,
    tid: u32,
    text: &str,
) {
    let header = |flags| u64::from_le_bytes(encode_header(kind, level, flags, tid));
    // A short text, the common case: one comparison with a constant settles both whether it
    // must be cut and whether it takes one slot, without looking up the lane's limit.
    if text.len() <= SHORT_TEXT {
        writer.push_prefixed_short(ticks, header(0), text.as_bytes());
        return;
    }
    let room = writer.max_len() as usize - TRACE_HEADER_LEN;
    let (message, flags) = match text.len() <= room {
        true => (text, 0),
        false => truncated(text, room),
    };
    writer.push_prefixed_fitting(ticks, header(flags), message.as_bytes());
}

thread_local! {
    static THREAD_LANES: RefCell<ThreadLanes> = const { RefCell::new(ThreadLanes::new()) };
    static HOT: Hot = const {
        Hot {
            recorder: Cell::new(NO_RECORDER),
            lane: Cell::new(std::ptr::null_mut()),
            tid: Cell::new(0),
        }
    };
}

/// `Hot::recorder` when the thread has no hot lane.
const NO_RECORDER: u64 = 0;
/// `Hot::recorder` while the thread writes through its lanes: recorder ids start at 1.
const BUSY: u64 = u64::MAX;

/// The hot path's copy of this thread's hot lane: plain cells with no destructor, so reading
/// them is a load from thread-local storage with no check of whether the thread is exiting (a
/// thread-local with a destructor needs one), and the hot path inlines wherever it is called.
/// The lane itself stays owned by `THREAD_LANES`.
struct Hot {
    /// The recorder whose lane `lane` is; [`NO_RECORDER`], or [`BUSY`] while an event is
    /// being written (an event recorded from inside that one is then dropped and counted).
    recorder: Cell<u64>,
    lane: Cell<*mut LaneWriter>,
    /// This thread's kernel id, for the records' headers.
    tid: Cell<u32>,
}

/// The lanes this thread owns, one per recorder it has traced into.
struct ThreadLanes {
    /// The lane of the recorder this thread traced into last, which [`HOT`] points into. It
    /// stays put while `HOT` points at it: only `Tracer::with_lanes` moves lanes, and it points
    /// `HOT` afresh before anything else can read it.
    hot: Option<OwnedLane>,
    /// The lanes of the other recorders this thread has traced into.
    others: Vec<OwnedLane>,
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
            hot: None,
            others: Vec::new(),
            formatted: String::new(),
            tid: 0,
        }
    }

    fn record(
        &mut self,
        shared: &Arc<Shared>,
        ticks: u64,
        kind: TraceKind,
        level: Level,
        text: &str,
    ) {
        let is_hot = matches!(&self.hot, Some(lane) if lane.recorder == shared.id);
        if !is_hot && !self.make_hot(shared) {
            return shared.count(h::DROPPED_NO_LANE);
        }
        if let Some(lane) = &mut self.hot {
            write_event(&mut lane.writer, ticks, kind, level, self.tid, text);
        }
    }

    /// Formats the event into the thread's reusable buffer, then records it.
    fn record_fmt(
        &mut self,
        shared: &Arc<Shared>,
        ticks: u64,
        kind: TraceKind,
        level: Level,
        args: std::fmt::Arguments<'_>,
    ) {
        let mut text = std::mem::take(&mut self.formatted);
        text.clear();
        let _ = text.write_fmt(args);
        self.record(shared, ticks, kind, level, &text);
        self.formatted = text;
    }

    /// Points [`HOT`] at the hot lane (or at none), ending a busy spell.
    fn publish_hot(&mut self) {
        let tid = self.tid;
        let (recorder, lane) = match &mut self.hot {
            Some(lane) => (lane.recorder, std::ptr::from_mut(&mut lane.writer)),
            None => (NO_RECORDER, std::ptr::null_mut()),
        };
        HOT.with(|hot| {
            hot.lane.set(lane);
            hot.tid.set(tid);
            hot.recorder.set(recorder);
        });
    }

    /// Makes this thread's lane of `shared` the hot one, claiming one first if the thread has
    /// none yet. False when every lane is taken.
    #[cold]
    #[inline(never)]
    fn make_hot(&mut self, shared: &Arc<Shared>) -> bool {
        let lane = match self.others.iter().position(|l| l.recorder == shared.id) {
            Some(index) => self.others.swap_remove(index),
            None => {
                if self.tid == 0 {
                    self.tid = gettid();
                }
                let Some(writer) = claim(shared, self.tid) else {
                    return false;
                };
                OwnedLane {
                    recorder: shared.id,
                    writer,
                }
            }
        };
        if let Some(previous) = self.hot.replace(lane) {
            self.others.push(previous);
        }
        true
    }
}

impl Drop for ThreadLanes {
    /// Unhooks the hot path before the lanes are given back: an event recorded later in this
    /// thread's exit (from another thread-local's destructor) finds no lane and is counted.
    fn drop(&mut self) {
        HOT.with(|hot| {
            hot.recorder.set(NO_RECORDER);
            hot.lane.set(std::ptr::null_mut());
        });
    }
}

/// `text` cut on a character boundary to at most `room` bytes, flagged as cut.
#[cold]
fn truncated(text: &str, room: usize) -> (&str, u16) {
    let message = flightrec_schemas::header::truncate_utf8(text, room);
    (message, FLAG_TRUNCATED)
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
