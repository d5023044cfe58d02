//! Perfetto's protobuf trace (`.pftrace`), which ui.perfetto.dev and `trace_processor` load:
//! a track for the service's process, an "inputs" track with every input as an instant event,
//! one thread track per recording thread with its spans as slices and its point events as
//! instants, a "checkpoints" track, and the crash as an instant on the process track. Times are
//! the events' Unix times in nanoseconds; a clock snapshot says that the trace clock is the
//! wall clock, so the UI can show times of day. Written one packet at a time.
//!
//! The crates that carry Perfetto's generated types either generate all of its ~400 `.proto`
//! files at build time (hundreds of thousands of lines) or bind its C++ SDK, so the handful of
//! messages needed are declared here with `prost`'s derive (see [`proto`]).

use std::collections::HashMap;
use std::io::{self, Write};

use flightrec_schemas::trace::TraceKind;
use prost::Message as _;

use super::export::{Recording, TraceSink};

/// The few messages of Perfetto's trace format that the writer uses, with the field numbers of
/// Perfetto's own definitions in `protos/perfetto/trace/`: `trace.proto`, `trace_packet.proto`,
/// `clock_snapshot.proto`, and in `track_event/`: `track_descriptor.proto`,
/// `process_descriptor.proto`, `thread_descriptor.proto`, `track_event.proto`,
/// `debug_annotation.proto`. Fields that Perfetto declares inside a `oneof` of which only one
/// member is used here are plain optional fields: the bytes are the same.
pub mod proto {
    /// A whole trace: a sequence of packets.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Trace {
        #[prost(message, repeated, tag = "1")]
        pub packet: Vec<TracePacket>,
    }

    /// One packet: a clock snapshot, a track's description or an event.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct TracePacket {
        /// Nanoseconds on the trace clock.
        #[prost(uint64, optional, tag = "8")]
        pub timestamp: Option<u64>,
        #[prost(uint32, optional, tag = "10")]
        pub trusted_packet_sequence_id: Option<u32>,
        /// [`SEQ_INCREMENTAL_STATE_CLEARED`] on the first packet of the sequence.
        #[prost(uint32, optional, tag = "13")]
        pub sequence_flags: Option<u32>,
        #[prost(message, optional, tag = "6")]
        pub clock_snapshot: Option<ClockSnapshot>,
        #[prost(message, optional, tag = "11")]
        pub track_event: Option<TrackEvent>,
        #[prost(message, optional, tag = "60")]
        pub track_descriptor: Option<TrackDescriptor>,
    }

    /// `TracePacket.SequenceFlags.SEQ_INCREMENTAL_STATE_CLEARED`.
    pub const SEQ_INCREMENTAL_STATE_CLEARED: u32 = 1;
    /// `BuiltinClock.BUILTIN_CLOCK_REALTIME`: the wall clock.
    pub const CLOCK_REALTIME: u32 = 1;
    /// `BuiltinClock.BUILTIN_CLOCK_BOOTTIME`: the default trace clock.
    pub const CLOCK_BOOTTIME: u32 = 6;

    /// The readings of several clocks at one instant.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct ClockSnapshot {
        #[prost(message, repeated, tag = "1")]
        pub clocks: Vec<Clock>,
    }

    /// One clock's reading in a [`ClockSnapshot`].
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Clock {
        #[prost(uint32, optional, tag = "1")]
        pub clock_id: Option<u32>,
        #[prost(uint64, optional, tag = "2")]
        pub timestamp: Option<u64>,
    }

    /// A track: a process, one of its threads, or a named track under a parent.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct TrackDescriptor {
        #[prost(uint64, optional, tag = "1")]
        pub uuid: Option<u64>,
        #[prost(uint64, optional, tag = "5")]
        pub parent_uuid: Option<u64>,
        #[prost(string, optional, tag = "2")]
        pub name: Option<String>,
        #[prost(message, optional, tag = "3")]
        pub process: Option<ProcessDescriptor>,
        #[prost(message, optional, tag = "4")]
        pub thread: Option<ThreadDescriptor>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct ProcessDescriptor {
        #[prost(int32, optional, tag = "1")]
        pub pid: Option<i32>,
        #[prost(string, optional, tag = "6")]
        pub process_name: Option<String>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct ThreadDescriptor {
        #[prost(int32, optional, tag = "1")]
        pub pid: Option<i32>,
        #[prost(int32, optional, tag = "2")]
        pub tid: Option<i32>,
        #[prost(string, optional, tag = "5")]
        pub thread_name: Option<String>,
    }

    /// An event on a track: a slice's beginning or end, or an instant.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct TrackEvent {
        #[prost(enumeration = "TrackEventType", optional, tag = "9")]
        pub r#type: Option<i32>,
        #[prost(uint64, optional, tag = "11")]
        pub track_uuid: Option<u64>,
        #[prost(string, optional, tag = "23")]
        pub name: Option<String>,
        #[prost(string, repeated, tag = "22")]
        pub categories: Vec<String>,
        #[prost(message, repeated, tag = "4")]
        pub debug_annotations: Vec<DebugAnnotation>,
    }

    /// `TrackEvent.Type`.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
    #[repr(i32)]
    pub enum TrackEventType {
        Unspecified = 0,
        SliceBegin = 1,
        SliceEnd = 2,
        Instant = 3,
    }

    /// A named argument of an event.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct DebugAnnotation {
        #[prost(string, optional, tag = "10")]
        pub name: Option<String>,
        #[prost(oneof = "AnnotationValue", tags = "2, 3, 4, 6")]
        pub value: Option<AnnotationValue>,
    }

    /// The value of a [`DebugAnnotation`].
    #[derive(Clone, PartialEq, prost::Oneof)]
    pub enum AnnotationValue {
        #[prost(bool, tag = "2")]
        Bool(bool),
        #[prost(uint64, tag = "3")]
        Uint(u64),
        #[prost(int64, tag = "4")]
        Int(i64),
        #[prost(string, tag = "6")]
        String(String),
    }
}

use proto::{AnnotationValue, DebugAnnotation, TrackDescriptor, TrackEvent, TrackEventType};

/// The category of input events.
pub const INPUT_CATEGORY: &str = "input";
/// The name of the inputs' track.
pub const INPUTS_TRACK: &str = "inputs";
/// The name of the checkpoints' track.
pub const CHECKPOINTS_TRACK: &str = "checkpoints";

/// Track ids: the process, its inputs, its checkpoints; threads from [`FIRST_THREAD_UUID`].
const PROCESS_UUID: u64 = 1;
const INPUTS_UUID: u64 = 2;
const CHECKPOINTS_UUID: u64 = 3;
const FIRST_THREAD_UUID: u64 = 16;
/// Every packet is on one sequence; its events are self-contained (no interned names).
const SEQUENCE: u32 = 1;

/// A recording thread's track.
struct ThreadTrack {
    uuid: u64,
    /// Spans entered and not yet exited.
    open: usize,
}

/// Writes a Perfetto trace, one packet at a time.
pub(super) struct PerfettoWriter<W: Write> {
    out: W,
    /// The packet being encoded (reused).
    buf: Vec<u8>,
    pid: i32,
    threads: HashMap<String, ThreadTrack>,
    checkpoints_declared: bool,
    /// The latest time written: where spans still open are closed.
    latest_ns: u64,
}

impl<W: Write> PerfettoWriter<W> {
    /// Starts the trace: a clock snapshot at the recording's creation (a Unix time), the
    /// process track named after the recording, and the inputs' track.
    pub(super) fn begin(out: W, recording: &Recording) -> io::Result<PerfettoWriter<W>> {
        let (now_ns, pid, process) = (
            recording.created_unix_ns,
            recording.pid,
            recording.process(),
        );
        let mut writer = PerfettoWriter {
            out,
            buf: Vec::with_capacity(256),
            // Linux pids fit in 30 bits; an export's claim otherwise is shown as 0.
            pid: i32::try_from(pid).unwrap_or(0),
            threads: HashMap::new(),
            checkpoints_declared: false,
            latest_ns: now_ns,
        };
        let clock = |clock_id| proto::Clock {
            clock_id: Some(clock_id),
            timestamp: Some(now_ns),
        };
        writer.packet(proto::TracePacket {
            timestamp: Some(now_ns),
            sequence_flags: Some(proto::SEQ_INCREMENTAL_STATE_CLEARED),
            clock_snapshot: Some(proto::ClockSnapshot {
                clocks: vec![clock(proto::CLOCK_BOOTTIME), clock(proto::CLOCK_REALTIME)],
            }),
            ..packet()
        })?;
        writer.track(TrackDescriptor {
            uuid: Some(PROCESS_UUID),
            process: Some(proto::ProcessDescriptor {
                pid: Some(writer.pid),
                process_name: Some(process),
            }),
            ..TrackDescriptor::default()
        })?;
        writer.named_track(INPUTS_UUID, INPUTS_TRACK)?;
        Ok(writer)
    }

    /// Appends one packet: field 1 of `Trace`, so that the file is a `Trace` at every packet.
    fn packet(&mut self, packet: proto::TracePacket) -> io::Result<()> {
        self.buf.clear();
        self.buf.push(0x0a); // field 1, length-delimited
        packet
            .encode_length_delimited(&mut self.buf)
            .map_err(io::Error::other)?;
        self.out.write_all(&self.buf)
    }

    fn track(&mut self, descriptor: TrackDescriptor) -> io::Result<()> {
        self.packet(proto::TracePacket {
            track_descriptor: Some(descriptor),
            ..packet()
        })
    }

    /// A track under the process, shown with `name`.
    fn named_track(&mut self, uuid: u64, name: &str) -> io::Result<()> {
        self.track(TrackDescriptor {
            uuid: Some(uuid),
            parent_uuid: Some(PROCESS_UUID),
            name: Some(name.to_owned()),
            ..TrackDescriptor::default()
        })
    }

    /// An event at `unix_ns`.
    fn event(&mut self, unix_ns: u64, event: TrackEvent) -> io::Result<()> {
        self.latest_ns = self.latest_ns.max(unix_ns);
        self.packet(proto::TracePacket {
            timestamp: Some(unix_ns),
            track_event: Some(event),
            ..packet()
        })
    }

    /// The track of thread `name`, described the first time.
    fn thread(&mut self, name: &str) -> io::Result<&mut ThreadTrack> {
        if !self.threads.contains_key(name) {
            let index = self.threads.len() as u64;
            let uuid = FIRST_THREAD_UUID + index;
            // Exports keep thread names, not ids: the tracks get small ids of their own.
            let tid = i32::try_from(index + 1).unwrap_or(i32::MAX);
            self.track(TrackDescriptor {
                uuid: Some(uuid),
                thread: Some(proto::ThreadDescriptor {
                    pid: Some(self.pid),
                    tid: Some(tid),
                    thread_name: Some(name.to_owned()),
                }),
                ..TrackDescriptor::default()
            })?;
            self.threads
                .insert(name.to_owned(), ThreadTrack { uuid, open: 0 });
        }
        Ok(self.threads.get_mut(name).expect("inserted above"))
    }

    /// Closes the spans still open at the latest time written, and returns the writer.
    pub fn finish(mut self) -> io::Result<W> {
        let mut open: Vec<(u64, usize)> = self.threads.values().map(|t| (t.uuid, t.open)).collect();
        open.sort_unstable();
        let when = self.latest_ns;
        for (uuid, depth) in open {
            for _ in 0..depth {
                self.event(when, slice_end(uuid))?;
            }
        }
        self.out.flush()?;
        Ok(self.out)
    }
}

impl<W: Write> TraceSink for PerfettoWriter<W> {
    /// An input: an instant on the inputs' track, with its position and sequence number.
    fn input(
        &mut self,
        seq: u64,
        position: u64,
        unix_ns: u64,
        summary: &str,
        panicked: Option<&str>,
    ) -> io::Result<()> {
        let mut annotations = vec![uint("position", position), uint("seq", seq)];
        if let Some(message) = panicked {
            annotations.push(string("panicked", message));
        }
        self.event(
            unix_ns,
            instant(INPUTS_UUID, summary, INPUT_CATEGORY, annotations),
        )
    }

    /// A trace record of `thread`: a span edge or a point event (`level` "damaged": a payload
    /// that did not decode).
    fn trace(
        &mut self,
        thread: &str,
        unix_ns: u64,
        level: &str,
        kind: TraceKind,
        message: &str,
    ) -> io::Result<()> {
        let track = self.thread(thread)?;
        let uuid = track.uuid;
        let annotations = vec![string("level", level)];
        let event = match kind {
            TraceKind::SpanEnter => {
                track.open += 1;
                let kind = TrackEventType::SliceBegin;
                track_event(kind, uuid, message, "trace", annotations)
            }
            TraceKind::SpanExit if track.open > 0 => {
                track.open -= 1;
                slice_end(uuid)
            }
            // Its entry was overwritten by the ring: an end with no beginning would be dropped.
            TraceKind::SpanExit => instant(uuid, &format!("← {message}"), "trace", annotations),
            TraceKind::Event | TraceKind::Thread => instant(uuid, message, "trace", annotations),
        };
        self.event(unix_ns, event)
    }

    /// A recorded checkpoint: an instant on the checkpoints' track.
    fn checkpoint(&mut self, input_seq: u64, unix_ns: u64, hash: u64) -> io::Result<()> {
        if !self.checkpoints_declared {
            self.checkpoints_declared = true;
            self.named_track(CHECKPOINTS_UUID, CHECKPOINTS_TRACK)?;
        }
        let name = format!("checkpoint before input {input_seq}");
        let annotations = vec![
            uint("input_seq", input_seq),
            string("hash", &format!("{hash:016x}")),
        ];
        self.event(
            unix_ns,
            instant(CHECKPOINTS_UUID, &name, "checkpoint", annotations),
        )
    }

    /// The end of the recording, a crash or a death: an instant on the process track at
    /// `unix_ns`, or at the latest event when the time of death is unknown.
    fn end(&mut self, unix_ns: Option<u64>, status: &str, cause: &str) -> io::Result<()> {
        let when = unix_ns.unwrap_or(self.latest_ns);
        let name = format!("{status}: {cause}");
        let annotations = vec![string("status", status), string("cause", cause)];
        self.event(when, instant(PROCESS_UUID, &name, "crash", annotations))
    }
}

/// A packet on the one sequence, with nothing else set.
fn packet() -> proto::TracePacket {
    proto::TracePacket {
        trusted_packet_sequence_id: Some(SEQUENCE),
        ..proto::TracePacket::default()
    }
}

fn instant(
    track: u64,
    name: &str,
    category: &str,
    debug_annotations: Vec<DebugAnnotation>,
) -> TrackEvent {
    track_event(
        TrackEventType::Instant,
        track,
        name,
        category,
        debug_annotations,
    )
}

fn track_event(
    kind: TrackEventType,
    track: u64,
    name: &str,
    category: &str,
    debug_annotations: Vec<DebugAnnotation>,
) -> TrackEvent {
    TrackEvent {
        r#type: Some(kind as i32),
        track_uuid: Some(track),
        name: Some(name.to_owned()),
        categories: vec![category.to_owned()],
        debug_annotations,
    }
}

fn slice_end(track: u64) -> TrackEvent {
    TrackEvent {
        r#type: Some(TrackEventType::SliceEnd as i32),
        track_uuid: Some(track),
        ..TrackEvent::default()
    }
}

fn uint(name: &str, value: u64) -> DebugAnnotation {
    DebugAnnotation {
        name: Some(name.to_owned()),
        value: Some(AnnotationValue::Uint(value)),
    }
}

fn string(name: &str, value: &str) -> DebugAnnotation {
    DebugAnnotation {
        name: Some(name.to_owned()),
        value: Some(AnnotationValue::String(value.to_owned())),
    }
}
