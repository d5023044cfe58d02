//! In-memory snapshots of a replayed state, kept encoded so that their memory is known exactly and
//! stays within a budget however the state grows.

use std::time::{Duration, Instant};

use flightrec_schemas::{CodecError, Machine};

/// Snapshots are never closer than this many inputs: encoding a state is dearer than applying one.
pub const MIN_INTERVAL: usize = 64;

/// States along the history, encoded by the machine, at most `interval` inputs apart.
pub struct Snapshots {
    budget: usize,
    interval: usize,
    /// (inputs applied, encoded state), in increasing order of inputs applied.
    taken: Vec<(usize, Vec<u8>)>,
    bytes: usize,
    /// When the replay passed the previous snapshot, to weigh encoding against applying.
    last: Instant,
    /// Inputs applied when the next snapshot is due.
    next_due: usize,
    /// The spacing the memory budget asks for; the cost rule never goes below it.
    floor: usize,
    /// The most bytes one encoded state may take.
    limit: usize,
    /// The most inputs between two consecutive snapshots (or the base and the first).
    widest: usize,
}

/// Encoding snapshots may take at most this fraction of the time spent applying inputs.
const ENCODE_SHARE: u32 = 16;

/// The longest that applying one interval of inputs should take, unless the memory budget asks
/// for wider spacing: a viewer reaches any position in about this time plus one decode.
const MAX_REACH: Duration = Duration::from_millis(4);

impl Snapshots {
    /// Room for `budget` bytes of encoded states, which are about `state_bytes` each, over a
    /// history of `inputs` inputs.
    pub fn new(budget: usize, state_bytes: usize, inputs: usize, limit: usize) -> Snapshots {
        let affordable = (budget / state_bytes.max(1)).max(1);
        let interval = inputs.div_ceil(affordable).max(MIN_INTERVAL);
        Snapshots {
            budget,
            interval,
            taken: Vec::new(),
            bytes: 0,
            last: Instant::now(),
            next_due: interval,
            floor: interval,
            limit,
            widest: interval,
        }
    }

    /// The most inputs between two snapshots: the most that reaching a position re-applies.
    pub fn interval(&self) -> usize {
        self.widest.max(self.interval)
    }

    /// The most bytes one encoded state may take.
    pub fn limit(&self) -> usize {
        self.limit
    }

    /// Bytes the snapshots hold.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Inputs applied when the next snapshot is due.
    pub fn next_due(&self) -> usize {
        self.next_due
    }

    /// Keeps `machine`, the state after `applied` inputs, if a snapshot is due there. Applied
    /// counts must arrive in increasing order.
    #[inline]
    pub fn offer<M: Machine>(&mut self, applied: usize, machine: &M, buffer: &mut Vec<u8>) {
        if applied >= self.next_due {
            self.take(applied, machine, buffer);
        }
    }

    #[cold]
    fn take<M: Machine>(&mut self, applied: usize, machine: &M, buffer: &mut Vec<u8>) {
        let previous = self.taken.last().map_or(0, |(at, _)| *at);
        let started = Instant::now();
        let applying = started - self.last;
        let Some(len) = encode(machine, buffer, self.limit) else {
            // A state this build cannot encode is reached from an earlier snapshot.
            self.next_due = applied + self.interval;
            return;
        };
        self.taken.push((applied, buffer[..len].to_vec()));
        self.bytes += len;
        self.last = Instant::now();
        // Encoding should cost about a sixteenth of applying: space the snapshots out when it
        // costs more, closer again (never below the budget's spacing) when far less. But never
        // so far apart that reaching a position takes more than `MAX_REACH` of applying: a
        // large state then costs a larger share to encode, and each key press of a viewer stays
        // quick.
        let encoding = self.last - started;
        let per_input = applying / (applied - previous).max(1) as u32;
        let interval = u32::try_from(self.interval).unwrap_or(u32::MAX);
        let reach = per_input.checked_mul(interval).unwrap_or(Duration::MAX);
        let closer = self.interval / 2 >= self.floor;
        if reach > MAX_REACH && closer {
            self.interval /= 2;
        } else if encoding * ENCODE_SHARE > applying && reach * 2 <= MAX_REACH {
            self.interval *= 2;
        } else if encoding * ENCODE_SHARE * 4 < applying && closer {
            self.interval /= 2;
        }
        self.widest = self.widest.max(applied - previous);
        while self.bytes > self.budget && !self.taken.is_empty() {
            self.thin();
        }
        self.next_due = self.taken.last().map_or(0, |(at, _)| *at) + self.interval;
    }

    /// Drops every other snapshot, doubling the distance between them.
    fn thin(&mut self) {
        let kept: Vec<(usize, Vec<u8>)> = std::mem::take(&mut self.taken)
            .into_iter()
            .skip(1)
            .step_by(2)
            .collect();
        self.bytes = kept.iter().map(|(_, state)| state.len()).sum();
        let starts = std::iter::once(0).chain(kept.iter().map(|(at, _)| *at));
        self.widest = starts
            .zip(kept.iter().map(|(at, _)| *at))
            .map(|(from, to)| to - from)
            .max()
            .unwrap_or(self.widest);
        self.taken = kept;
        self.interval *= 2;
        self.floor = self.floor.max(self.interval);
    }

    /// Inputs applied at the newest snapshot at or before `applied` (0: none, the base).
    pub fn nearest(&self, applied: usize) -> usize {
        let newest = self.taken.partition_point(|(at, _)| *at <= applied);
        newest.checked_sub(1).map_or(0, |i| self.taken[i].0)
    }

    /// The nearest snapshot at or before `applied` inputs that decodes, with its applied count.
    pub fn restore<M: Machine>(&self, applied: usize) -> Option<(usize, M)> {
        let newest = self.taken.partition_point(|(at, _)| *at <= applied);
        self.taken[..newest]
            .iter()
            .rev()
            .find_map(|(at, state)| Some((*at, M::decode_state(state).ok()?)))
    }
}

/// Encodes `machine` into `buffer`, growing it up to `limit` bytes; the length used, or `None`
/// when the machine cannot encode its state within that.
pub fn encode<M: Machine>(machine: &M, buffer: &mut Vec<u8>, limit: usize) -> Option<usize> {
    loop {
        match machine.encode_state(buffer) {
            Ok(len) => return Some(len),
            Err(CodecError::TooLarge { .. }) if buffer.len() < limit => {
                let larger = (buffer.len() * 2).clamp(4096, limit);
                buffer.resize(larger, 0);
            }
            Err(_) => return None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use flightrec_schemas::Tick;
    use serde::{Deserialize, Serialize};

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Growing(Vec<u64>);

    impl Machine for Growing {
        const NAME: &'static str = "growing";
        const VERSION: u32 = 1;
        type Input = u64;
        fn apply(&mut self, input: &u64, _tick: Tick) {
            self.0.push(*input);
        }
    }

    #[test]
    fn snapshots_stay_within_the_budget_as_the_state_grows() {
        let mut snapshots = Snapshots::new(10_000, 8, 100_000, 1 << 20);
        assert_eq!(snapshots.interval(), 80);
        let mut machine = Growing(Vec::new());
        let mut buffer = Vec::new();
        for applied in 1..=100_000 {
            if applied % 100 == 0 {
                machine.0.push(applied as u64);
            }
            snapshots.offer(applied, &machine, &mut buffer);
            assert!(snapshots.bytes() <= 10_000);
        }
        assert!(
            snapshots.interval() > 80,
            "thinned to {}",
            snapshots.interval()
        );
        let (at, state) = snapshots.restore::<Growing>(99_999).expect("a snapshot");
        assert!(at <= 99_999 && 99_999 - at <= snapshots.interval());
        assert_eq!(state.0.len(), at / 100);
        assert!(
            snapshots.restore::<Growing>(79).is_none(),
            "the first snapshot is at 80"
        );
    }
}
