//! `Recorded<M>`: records each input, then applies it, so the recorded order is the applied
//! order by construction; and takes the checkpoints that replay starts from.

use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use flightrec_schemas::clock::Clock;
use flightrec_schemas::header::Status;
use flightrec_schemas::layout::header as h;
use flightrec_schemas::{Machine, Tick};

use crate::checkpoint::CheckpointWriter;
use crate::clock;
use crate::counters::Counters;
use crate::file::LaneMemory;
use crate::lane::LaneWriter;
use crate::shared::Shared;
use crate::trace::Tracer;

/// When cadence checkpoints are due.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Cadence {
    pub inputs: u64,
    pub ticks: u64,
}

/// A machine whose every input is recorded into a ring file before it is applied.
///
/// Dropping it (or [`Recorded::finish`]) takes a last checkpoint and marks the file as exited
/// cleanly; dropping it while a panic unwinds marks the file as crashed.
///
/// ```
/// # use flightrec_recorder::doc_example::recorded_counter;
/// let (mut recorded, _dir) = recorded_counter();
/// let tick = recorded.apply(&40);
/// recorded.apply(&2);
/// assert_eq!(tick.seq, 0);
/// assert_eq!(recorded.machine().total, 42);
/// ```
pub struct Recorded<M: Machine> {
    machine: M,
    /// A copy of the file's clock, so the hot path reads it without a pointer chase.
    clock: Clock,
    input: LaneWriter,
    encoded: Vec<u8>,
    shared: Arc<Shared>,
    checkpoints: CheckpointWriter,
    cadence: Cadence,
    next_checkpoint_ticks: u64,
    /// The number of the input after which the input cadence is due (`last_checkpoint_seq`
    /// plus the cadence, minus one), precomputed so the hot path compares once.
    due_after_seq: u64,
    last_checkpoint_seq: u64,
    /// Input-lane position where the newest checkpoint's inputs begin; the lane must not wrap
    /// past it (the window invariant).
    window_start: u64,
    /// `window_start` plus the lane's capacity: a record ending past this position would
    /// overwrite inputs the newest checkpoint needs.
    window_end: u64,
    finished: bool,
}

impl<M: Machine> Recorded<M> {
    pub(crate) fn start(
        machine: M,
        shared: Arc<Shared>,
        input: LaneMemory,
        checkpoint_offset: u64,
        checkpoint_slot_size: u64,
        counters: Counters,
        cadence: Cadence,
    ) -> Recorded<M> {
        let file = Arc::clone(&shared.file);
        let checkpoints =
            CheckpointWriter::new(file, checkpoint_offset, checkpoint_slot_size, counters);
        let mut recorded = Recorded {
            machine,
            clock: shared.clock,
            input: LaneWriter::new(input, 0, 0),
            encoded: Vec::with_capacity(256),
            shared,
            checkpoints,
            cadence,
            next_checkpoint_ticks: 0,
            due_after_seq: 0,
            last_checkpoint_seq: 0,
            window_start: 0,
            window_end: 0,
            finished: false,
        };
        recorded.checkpoint_at(clock::now(recorded.shared.clock.source));
        recorded
            .shared
            .file
            .word(h::STATUS)
            .store(Status::Running.code(), Ordering::Release);
        recorded
    }

    /// Records `input`, then applies it to the machine. Returns the tick the machine saw.
    ///
    /// Never blocks and never fails: an input too large for the lane, or one that cannot be
    /// encoded, is counted in the file and followed by a checkpoint so replay can resume after it.
    #[inline]
    pub fn apply(&mut self, input: &M::Input) -> Tick {
        let ticks = clock::now(self.clock.source);
        let (seq, recorded) = self.record(input, ticks);
        let tick = Tick {
            seq,
            unix_ns: self.clock.to_unix_ns(ticks),
        };
        self.machine.apply(input, tick);
        let due = seq >= self.due_after_seq || ticks >= self.next_checkpoint_ticks;
        if due || !recorded {
            self.checkpoint_at(ticks);
        }
        tick
    }

    /// Writes the input record and returns its number, and false when it could not be recorded
    /// (its number is skipped).
    #[inline(always)]
    fn record(&mut self, input: &M::Input, ticks: u64) -> (u64, bool) {
        if let Some(inline) = M::encode_input_inline(input) {
            if self.input.pos() >= self.window_end {
                // One more slot would overwrite inputs the newest checkpoint needs.
                self.checkpoint_at(ticks);
            }
            return (self.input.push_inline(ticks, &inline), true);
        }
        self.record_encoded(input, ticks)
    }

    /// The serde path of [`Self::record`].
    #[inline(always)]
    fn record_encoded(&mut self, input: &M::Input, ticks: u64) -> (u64, bool) {
        let seq = self.input.seq();
        self.encoded.clear();
        if M::encode_input(input, &mut self.encoded).is_err() {
            self.shared.count(h::INPUTS_UNENCODABLE);
            self.input.skip();
            return (seq, false);
        }
        let len = self.encoded.len();
        if len <= self.input.max_len() as usize {
            let end = self.input.pos() + LaneWriter::slots_needed(len);
            if end > self.window_end {
                // Writing would overwrite inputs the newest checkpoint needs: checkpoint first.
                self.checkpoint_at(ticks);
            }
        }
        if self.input.push(ticks, &self.encoded).is_err() {
            self.input.skip();
            return (seq, false);
        }
        (seq, true)
    }

    #[cold]
    fn checkpoint_at(&mut self, ticks: u64) {
        let seq = self.input.seq();
        if !self.checkpoints.write(&self.machine, seq, ticks) {
            self.shared.count(h::CHECKPOINTS_FAILED);
        }
        // Even after a failed checkpoint, move on: retrying on every input would stall the
        // service, and the failure is counted for the reader.
        self.window_start = self.input.pos();
        self.window_end = self.window_start + self.input.capacity();
        self.last_checkpoint_seq = seq;
        self.due_after_seq = seq.saturating_add(self.cadence.inputs).saturating_sub(1);
        self.next_checkpoint_ticks = ticks.saturating_add(self.cadence.ticks);
    }

    /// Takes a checkpoint now, outside the cadence.
    pub fn checkpoint(&mut self) {
        self.checkpoint_at(clock::now(self.clock.source));
    }

    /// The machine, to read its state.
    pub fn machine(&self) -> &M {
        &self.machine
    }

    /// A handle for recording trace events from any thread.
    pub fn tracer(&self) -> Tracer {
        Tracer::new(Arc::clone(&self.shared))
    }

    /// The ring file.
    pub fn path(&self) -> &Path {
        self.shared.file.path()
    }

    /// Number of inputs applied so far.
    pub fn inputs(&self) -> u64 {
        self.input.seq()
    }

    /// Number of perf counters this machine provides (hardware ones are missing on most VMs).
    pub fn counters_available(&self) -> usize {
        self.checkpoints.counters_available()
    }

    /// Stops recording cleanly: a last checkpoint, then the file is marked as exited. Returns
    /// the ring file's path.
    pub fn finish(mut self) -> std::path::PathBuf {
        self.close();
        self.path().to_owned()
    }

    fn close(&mut self) {
        if std::mem::replace(&mut self.finished, true) {
            return;
        }
        let file = Arc::clone(&self.shared.file);
        if std::thread::panicking() {
            file.word(h::STATUS)
                .store(Status::Crashed.code(), Ordering::Release);
            return;
        }
        // A checkpoint at the same input already holds this state (the machine changes only
        // through `apply`); another would evict the older slot and shrink the replay window.
        if self.input.seq() != self.last_checkpoint_seq {
            self.checkpoint();
        }
        // Tracers may keep the mapping alive after this; a later crash of the process is not
        // this recording's death.
        crate::crash::unregister(file.base_ptr());
        file.word(h::EXITED_UNIX_NS)
            .store(clock::unix_ns(), Ordering::Relaxed);
        file.word(h::STATUS)
            .store(Status::Exited.code(), Ordering::Release);
    }
}

impl<M: Machine> Drop for Recorded<M> {
    fn drop(&mut self) {
        self.close();
    }
}
