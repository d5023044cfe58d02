//! Chrome trace-event JSON (the "JSON Object Format": `traceEvents`, `displayTimeUnit`), which
//! Perfetto UI and chrome://tracing load: inputs and point trace events as instant events, span
//! entries and exits as `B`/`E` slices, one track per thread (named by `thread_name` metadata
//! events), checkpoints and the crash as global instant events. Written one event at a time.

use std::collections::HashMap;
use std::io::{self, Write};

use flightrec_schemas::trace::TraceKind;
use serde_json::{json, Value};

use super::export::{Recording, TraceSink};

/// The category of input events.
pub const INPUT_CATEGORY: &str = "input";

/// Writes a trace-event file, one event at a time.
pub struct ChromeWriter<W: Write> {
    out: W,
    /// Whether an event was written (the next one needs a comma).
    any: bool,
    /// Unix ns of time 0: the first event.
    origin: u64,
    /// The latest time written (Unix ns): where an end of unknown time is put.
    latest_ns: u64,
    pid: u32,
    /// Track of each thread, by name; the inputs' lane is 1.
    tids: HashMap<String, u32>,
    /// Spans open on each track, so that an exit whose entry was lost is not an unmatched `E`.
    open: HashMap<u32, usize>,
}

impl<W: Write> ChromeWriter<W> {
    /// Starts the file: time 0 is the recording's first event, the process track is named
    /// after the recording, and `otherData` says what was traced.
    pub fn begin(mut out: W, recording: &Recording) -> io::Result<ChromeWriter<W>> {
        let origin = recording.first_unix_ns;
        let other = json!({
            "machine": recording.machine(),
            "source": recording.source,
            "status": recording.status,
            "base_seq": recording.base_seq,
            "inputs": recording.inputs,
            "origin_unix_ns": origin,
        });
        out.write_all(b"{\"displayTimeUnit\":\"ms\",\"otherData\":")?;
        serde_json::to_writer(&mut out, &other)?;
        out.write_all(b",\"traceEvents\":[\n")?;
        let pid = recording.pid;
        let mut writer = ChromeWriter {
            out,
            any: false,
            origin,
            latest_ns: origin,
            pid,
            tids: HashMap::new(),
            open: HashMap::new(),
        };
        writer.event(&json!({
            "name": "process_name", "ph": "M", "pid": pid, "tid": 0,
            "args": { "name": recording.process() },
        }))?;
        writer.tid("input")?;
        Ok(writer)
    }

    /// Writes one event object.
    pub fn event(&mut self, event: &Value) -> io::Result<()> {
        if self.any {
            self.out.write_all(b",\n")?;
        }
        self.any = true;
        serde_json::to_writer(&mut self.out, event)?;
        Ok(())
    }

    /// Microseconds since the origin (negative before it); `unix_ns` is the latest time
    /// written if it is later than any before.
    fn ts(&mut self, unix_ns: u64) -> f64 {
        self.latest_ns = self.latest_ns.max(unix_ns);
        (i128::from(unix_ns) - i128::from(self.origin)) as f64 / 1000.0
    }

    /// The track of thread `name`, named by a metadata event the first time.
    fn tid(&mut self, name: &str) -> io::Result<u32> {
        if let Some(&tid) = self.tids.get(name) {
            return Ok(tid);
        }
        let tid = self.tids.len() as u32 + 1;
        self.tids.insert(name.to_owned(), tid);
        let pid = self.pid;
        self.event(&json!({
            "name": "thread_name", "ph": "M", "pid": pid, "tid": tid,
            "args": { "name": name },
        }))?;
        self.event(&json!({
            "name": "thread_sort_index", "ph": "M", "pid": pid, "tid": tid,
            "args": { "sort_index": tid },
        }))?;
        Ok(tid)
    }

    /// Ends the file and returns the writer.
    pub fn finish(mut self) -> io::Result<W> {
        self.out.write_all(b"\n]}\n")?;
        self.out.flush()?;
        Ok(self.out)
    }
}

impl<W: Write> TraceSink for ChromeWriter<W> {
    /// An input: an instant event on the inputs' track.
    fn input(
        &mut self,
        seq: u64,
        position: u64,
        unix_ns: u64,
        summary: &str,
        panicked: Option<&str>,
    ) -> io::Result<()> {
        let tid = self.tid("input")?;
        let mut args = json!({ "seq": seq, "position": position, "summary": summary });
        if let Some(message) = panicked {
            args["panicked"] = json!(message);
        }
        let ts = self.ts(unix_ns);
        self.event(&json!({
            "name": summary, "cat": INPUT_CATEGORY, "ph": "i", "s": "t",
            "ts": ts, "pid": self.pid, "tid": tid, "args": args,
        }))
    }

    /// A trace record of `thread`: a span edge or a point event.
    fn trace(
        &mut self,
        thread: &str,
        unix_ns: u64,
        level: &str,
        kind: TraceKind,
        message: &str,
    ) -> io::Result<()> {
        let tid = self.tid(thread)?;
        let ts = self.ts(unix_ns);
        let pid = self.pid;
        let depth = self.open.entry(tid).or_default();
        let (phase, name) = match kind {
            TraceKind::SpanEnter => {
                *depth += 1;
                ("B", message.to_owned())
            }
            TraceKind::SpanExit if *depth > 0 => {
                *depth -= 1;
                ("E", message.to_owned())
            }
            // Its entry was overwritten by the ring: an end with no beginning would be dropped.
            TraceKind::SpanExit => ("i", format!("← {message}")),
            TraceKind::Event | TraceKind::Thread => ("i", message.to_owned()),
        };
        let mut event = json!({
            "name": name, "cat": "trace", "ph": phase, "ts": ts, "pid": pid, "tid": tid,
            "args": { "level": level },
        });
        if phase == "i" {
            event["s"] = json!("t");
        }
        self.event(&event)
    }

    /// A recorded checkpoint: a global instant event.
    fn checkpoint(&mut self, input_seq: u64, unix_ns: u64, hash: u64) -> io::Result<()> {
        let ts = self.ts(unix_ns);
        self.event(&json!({
            "name": format!("checkpoint before input {input_seq}"), "cat": "checkpoint",
            "ph": "i", "s": "g", "ts": ts, "pid": self.pid, "tid": 0,
            "args": { "input_seq": input_seq, "hash": format!("{hash:016x}") },
        }))
    }

    /// The end of the recording: a crash or death, as a global instant event at `unix_ns`, or
    /// at the latest event when the time of death is unknown.
    fn end(&mut self, unix_ns: Option<u64>, status: &str, cause: &str) -> io::Result<()> {
        let ts = self.ts(unix_ns.unwrap_or(self.latest_ns));
        self.event(&json!({
            "name": format!("{status}: {cause}"), "cat": "crash", "ph": "i", "s": "g",
            "ts": ts, "pid": self.pid, "tid": 0,
            "args": { "status": status, "cause": cause },
        }))
    }
}
