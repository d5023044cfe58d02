//! The application's contract: a deterministic machine whose state replay rebuilds.

use serde::de::DeserializeOwned;
use serde::Serialize;

/// When an input was applied: handed in by the recorder, recorded with the input, and handed in
/// again, identical, on replay. A machine must take time from here, never from the system clock.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, serde::Deserialize)]
pub struct Tick {
    /// Sequence number of the input, counting from 0 for the first input ever recorded.
    pub seq: u64,
    /// Unix time in nanoseconds, from the file's calibrated clock.
    pub unix_ns: u64,
}

/// Encoding or decoding an input or a state failed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CodecError {
    /// The encoded value does not fit the space it must go into.
    #[error("encoded value does not fit in {capacity} bytes")]
    TooLarge {
        /// Bytes available.
        capacity: usize,
    },
    /// The bytes are not a valid encoding of the type.
    #[error("invalid encoding: {0}")]
    Invalid(String),
}

impl From<postcard::Error> for CodecError {
    fn from(e: postcard::Error) -> Self {
        CodecError::Invalid(e.to_string())
    }
}

/// A deterministic state machine: the part of a service's state worth replaying.
///
/// Everything nondeterministic (time, randomness, what arrived from the network) must reach the
/// machine through its inputs or the [`Tick`]. The machine itself is the state: it is encoded at
/// checkpoints and decoded to restart replay.
///
/// Inputs and states are encoded with [postcard](https://docs.rs/postcard) through serde by
/// default; override the `encode_*`/`decode_*` methods for a faster path, for instance
/// [`crate::codec::pod_encode`] for fixed-size inputs.
///
/// ```
/// use flightrec_schemas::{Machine, Tick};
/// use serde::{Deserialize, Serialize};
///
/// #[derive(Default, Serialize, Deserialize)]
/// struct Counter { total: u64, last_seen_ns: u64 }
///
/// impl Machine for Counter {
///     const NAME: &'static str = "counter";
///     const VERSION: u32 = 1;
///     type Input = u64;
///     fn apply(&mut self, input: &u64, tick: Tick) {
///         self.total += input;
///         self.last_seen_ns = tick.unix_ns;
///     }
/// }
///
/// let mut counter = Counter::default();
/// counter.apply(&5, Tick { seq: 0, unix_ns: 10 });
/// let mut bytes = vec![0; 64];
/// let len = counter.encode_state(&mut bytes).unwrap();
/// assert_eq!(Counter::decode_state(&bytes[..len]).unwrap().total, 5);
/// ```
pub trait Machine: Serialize + DeserializeOwned {
    /// Names the machine in every ring file, so a trace is never replayed through other code.
    const NAME: &'static str;
    /// Bump whenever `apply` or the encodings change behaviour.
    const VERSION: u32;
    /// One input.
    type Input: Serialize + DeserializeOwned;

    /// Applies one input. Must be deterministic: the same state, input and tick give the same
    /// resulting state.
    fn apply(&mut self, input: &Self::Input, tick: Tick);

    /// Appends the encoding of `input` to `out`.
    fn encode_input(input: &Self::Input, out: &mut Vec<u8>) -> Result<(), CodecError> {
        *out = postcard::to_extend(input, std::mem::take(out))?;
        Ok(())
    }

    /// The zero-copy path for hot inputs of at most 32 bytes: their encoding as slot words,
    /// written straight into the ring. `None`, the default, sends every input through
    /// [`Self::encode_input`]. Whatever this returns, [`Self::decode_input`] must read back from
    /// [`crate::slot::InlineRecord::bytes`]; [`crate::codec::pod_inline`] with
    /// [`crate::codec::pod_decode`] does so for plain-old-data inputs.
    #[inline(always)]
    fn encode_input_inline(input: &Self::Input) -> Option<crate::slot::InlineRecord> {
        let _ = input;
        None
    }

    /// Decodes an input encoded by [`Self::encode_input`].
    fn decode_input(bytes: &[u8]) -> Result<Self::Input, CodecError> {
        Ok(postcard::from_bytes(bytes)?)
    }

    /// Encodes the state into `out` and returns the bytes used, or
    /// [`CodecError::TooLarge`] when `out` is too small.
    fn encode_state(&self, out: &mut [u8]) -> Result<usize, CodecError> {
        let capacity = out.len();
        match postcard::to_slice(self, out) {
            Ok(used) => Ok(used.len()),
            Err(postcard::Error::SerializeBufferFull) => Err(CodecError::TooLarge { capacity }),
            Err(e) => Err(e.into()),
        }
    }

    /// Decodes a state encoded by [`Self::encode_state`].
    fn decode_state(bytes: &[u8]) -> Result<Self, CodecError> {
        Ok(postcard::from_bytes(bytes)?)
    }
}
