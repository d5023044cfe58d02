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
    /// The number of the input after which a checkpoint is due, precomputed so the hot path
    /// compares once: the input cadence (`last_checkpoint_seq` plus the cadence, minus one), or
    /// sooner, the input after which the lane would have no slot left before `window_end`, or
    /// zero after an input that could not be recorded. See [`Self::due_after`].
    due_after_seq: u64,
    /// The part of `due_after_seq` that does not depend on the room left: the input cadence's,
    /// or zero once an input could not be recorded (replay resumes at the checkpoint after it).
    due_regardless_of_room: u64,
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
            due_regardless_of_room: 0,
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
        let seq = self.record(input, ticks);
        let tick = Tick {
            seq,
            unix_ns: self.clock.to_unix_ns(ticks),
        };
        self.machine.apply(input, tick);
        if seq >= self.due_after_seq || ticks >= self.next_checkpoint_ticks {
            self.checkpoint_at(ticks);
        }
        tick
    }

    /// Writes the input record and returns its number. An input that could not be recorded
    /// has its number skipped and makes a checkpoint due after it.
    #[inline(always)]
    fn record(&mut self, input: &M::Input, ticks: u64) -> u64 {
        if let Some(inline) = M::encode_input_inline(input) {
            // There is a slot for it: the input that took the last one before `window_end` made
            // a checkpoint due (see `due_after`), which moved `window_end` on.
            debug_assert!(self.input.pos() < self.window_end);
            return self.input.push_inline(ticks, &inline);
        }
        self.record_encoded(input, ticks)
    }

    /// The serde path of [`Self::record`].
    #[inline(always)]
    fn record_encoded(&mut self, input: &M::Input, ticks: u64) -> u64 {
        let seq = self.write_encoded(input, ticks);
        // A record of several slots, or none, moves the lane's position and the input numbers
        // apart: the input after which the lane runs out of room moves with them.
        self.due_after_seq = self.due_after();
        seq
    }

    #[inline(always)]
    fn write_encoded(&mut self, input: &M::Input, ticks: u64) -> u64 {
        let seq = self.input.seq();
        self.encoded.clear();
        if M::encode_input(input, &mut self.encoded).is_err() {
            self.shared.count(h::INPUTS_UNENCODABLE);
            self.skip();
            return seq;
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
            self.skip();
        }
        seq
    }

    /// Skips the number of an input that could not be recorded; a checkpoint follows it, so
    /// that replay resumes after it.
    fn skip(&mut self) {
        self.input.skip();
        self.due_regardless_of_room = 0;
    }

    /// The input after which a checkpoint is due: the cadence's, or sooner the last input that
    /// leaves a slot before `window_end` (so the next inline input needs no check of its own),
    /// or every input after one that could not be recorded.
    fn due_after(&self) -> u64 {
        // Slots and numbers advance together on the inline path: with `free` slots left, the
        // input numbered `seq() + free - 1` takes the last one, and the one after it would not
        // fit. With none left, the input just written (`seq() - 1`) is the last.
        let free = self.window_end.saturating_sub(self.input.pos());
        let last_fitting = self.input.seq().saturating_add(free).saturating_sub(1);
        self.due_regardless_of_room.min(last_fitting)
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
        self.due_regardless_of_room = seq.saturating_add(self.cadence.inputs).saturating_sub(1);
        self.due_after_seq = self.due_after();
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Builder;
    use flightrec_replayer::{Ring, Summary};
    use flightrec_schemas::codec::{pod_decode, pod_encode, pod_inline};
    use flightrec_schemas::slot::InlineRecord;
    use flightrec_schemas::CodecError;
    use serde::{Deserialize, Serialize};

    /// Sums its inputs, each recorded inline (one slot).
    #[derive(Default, Serialize, Deserialize)]
    struct Sum {
        total: u64,
    }

    impl Machine for Sum {
        const NAME: &'static str = "sum";
        const VERSION: u32 = 1;
        type Input = u64;
        fn apply(&mut self, input: &u64, _tick: Tick) {
            self.total = self.total.wrapping_add(*input);
        }
        fn encode_input(input: &u64, out: &mut Vec<u8>) -> Result<(), CodecError> {
            pod_encode(input, out)
        }
        fn encode_input_inline(input: &u64) -> Option<InlineRecord> {
            Some(pod_inline(input))
        }
        fn decode_input(bytes: &[u8]) -> Result<u64, CodecError> {
            pod_decode(bytes)
        }
    }

    /// The inline path checks no room before writing: the checkpoint due after the input that
    /// takes the lane's last free slot must come first, however the lane's position and the
    /// input numbers were moved apart by the checkpoints before.
    #[test]
    fn a_wrapping_lane_of_inline_inputs_checkpoints_before_it_overwrites_the_window() {
        let dir = tempfile::tempdir().unwrap();
        // 256 slots; the cadence alone (10,000 inputs) would let the lane wrap past its checkpoint.
        let mut recorded = Builder::new()
            .dir(dir.path())
            .input_lane_bytes(16 << 10)
            .checkpoint_every_inputs(10_000)
            .state_capacity(4 << 10)
            .crash_capture(false)
            .counters(false)
            .build(Sum::default())
            .unwrap();
        let capacity = recorded.input.capacity();
        for i in 0..5_000u64 {
            if i % 777 == 0 {
                // Checkpoints outside the cadence shift where the window ends.
                recorded.checkpoint();
            }
            recorded.apply(&i);
            assert!(recorded.input.pos() <= recorded.window_end);
            assert!(recorded.input.pos() - recorded.window_start <= capacity);
        }
        let path = recorded.finish();
        let summary = Summary::of(&Ring::open(&path).unwrap());
        let input = &summary.lanes[0];
        assert_eq!(input.recorded, 5_000);
        assert!(input.lost > 0, "the lane wrapped");
        let base = summary
            .replay_from
            .expect("a checkpoint covers the retained inputs");
        assert!(base >= input.first_seq.unwrap() && base <= input.recorded);
    }
}
