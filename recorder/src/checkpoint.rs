//! Checkpoint slots: the machine's state encoded in place, alternating between two slots so a
//! crash mid-checkpoint leaves the previous one intact.
#![allow(unsafe_code)]

use std::sync::atomic::Ordering;
use std::sync::Arc;

use flightrec_schemas::checkpoint::{state_hash, CheckpointHeader};
use flightrec_schemas::layout::{checkpoint as c, CHECKPOINT_HEADER_SIZE};
use flightrec_schemas::Machine;

use crate::counters::Counters;
use crate::file::RingFile;

/// Writes checkpoints into the two slots alternately.
pub(crate) struct CheckpointWriter {
    file: Arc<RingFile>,
    offset: u64,
    slot_size: u64,
    /// Generation of the newest committed checkpoint (0 before the first).
    generation: u64,
    counters: Counters,
}

impl CheckpointWriter {
    pub fn new(file: Arc<RingFile>, offset: u64, slot_size: u64, counters: Counters) -> Self {
        CheckpointWriter {
            file,
            offset,
            slot_size,
            generation: 0,
            counters,
        }
    }

    pub fn counters_available(&self) -> usize {
        self.counters.available()
    }

    /// Encodes `machine` straight into the slot the newest checkpoint does not occupy. On
    /// failure that slot is left invalid and the other keeps the previous checkpoint.
    pub fn write<M: Machine>(&mut self, machine: &M, input_seq: u64, ticks: u64) -> bool {
        let generation = self.generation + 1;
        let base = self.offset + (generation % 2) * self.slot_size;
        let stamp = self.file.word(base + c::STAMP);
        stamp.store(0, Ordering::Relaxed);
        std::sync::atomic::fence(Ordering::Release);
        let capacity = self.slot_size - CHECKPOINT_HEADER_SIZE;
        // SAFETY: this writer is the only code in the process that touches checkpoint slots, it
        // runs on the machine's thread, and the slice does not outlive this call.
        let area = unsafe { self.file.bytes_mut(base + CHECKPOINT_HEADER_SIZE, capacity) };
        let Ok(len) = machine.encode_state(area) else {
            return false;
        };
        let header = CheckpointHeader {
            generation,
            input_seq,
            ticks,
            state_len: len as u64,
            state_hash: state_hash(&area[..len]),
            counters: self.counters.read(),
        };
        let words = header.body_words();
        let body = self.file.words(base + c::INPUT_SEQ, words.len() as u64);
        for (slot, word) in body.iter().zip(words) {
            slot.store(word, Ordering::Relaxed);
        }
        stamp.store(generation, Ordering::Release);
        self.generation = generation;
        true
    }
}
