//! The memory a chunk's message is built in, reused from one message to the next.
//!
//! A message is built in one segment of a buffer that stays zeroed between messages (capnp wants
//! zeroed segments: the builder zeroes what it used when it is dropped), so building one costs no
//! clearing of the buffer. The buffer's first word is kept out of the segment for the stream
//! header: a message that fits its segment is then already in its serialized form, header and
//! segment side by side, and is compressed where it was built instead of being copied out first.
//! A message that outgrows the buffer grows into segments from the heap and is serialized into a
//! vector, so the buffer's size costs speed, never correctness.
#![allow(unsafe_code)]

use capnp::message::{Allocator, Builder, HeapAllocator};
use capnp::{serialize, Word};

/// Bytes of the stream header of a message of one segment: the segment count less one, then
/// the segment's length in words, as two little-endian `u32`.
const HEADER_BYTES: usize = 8;

/// Memory reused from one message to the next; see the module's documentation.
#[derive(Default)]
pub struct Scratch {
    /// The message built last. Declared before `buffer`, so that it is dropped first: dropping it
    /// zeroes what it used of the buffer.
    message: Option<Builder<BufferAllocator>>,
    /// Word 0: the stream header; the rest: the first segment, all zero while no message is built.
    buffer: Vec<Word>,
    /// The message built last, serialized, when it outgrew the buffer.
    serialized: Vec<u8>,
}

impl Scratch {
    /// Builds a message of about `bytes` bytes with `fill`.
    pub fn build(&mut self, bytes: usize, fill: impl FnOnce(&mut Builder<BufferAllocator>)) {
        // Zeroes what the last message used, before the buffer may be replaced.
        self.message = None;
        let words = bytes.div_ceil(8) + 1;
        if self.buffer.len() < words {
            self.buffer = Word::allocate_zeroed_vec(words.next_power_of_two().max(2));
        }
        let mut message = Builder::new(BufferAllocator::new(&mut self.buffer));
        fill(&mut message);
        self.message = Some(message);
    }

    // While a builder lives, the buffer is reached only through pointers from `Vec::as_mut_ptr`
    // and `Vec::as_ptr`, as the builder's are: they make no reference to the buffer's contents
    // that would invalidate the builder's pointers.

    /// The message built last, serialized.
    pub fn message(&mut self) -> &[u8] {
        let Some(message) = &self.message else {
            return &[];
        };
        let base = self.buffer.as_mut_ptr().cast::<u8>();
        let segments = message.get_segments_for_output();
        let in_place = match &*segments {
            [only] if std::ptr::eq(only.as_ptr(), base.wrapping_add(HEADER_BYTES)) => {
                Some(only.len())
            }
            _ => None,
        };
        drop(segments);
        let Some(segment_bytes) = in_place else {
            self.serialized.clear();
            // Writing to a Vec cannot fail.
            let _ = serialize::write_message(&mut self.serialized, message);
            return &self.serialized;
        };
        let mut header = [0u8; HEADER_BYTES];
        header[4..].copy_from_slice(&((segment_bytes / 8) as u32).to_le_bytes());
        // SAFETY: the buffer's first word is outside every segment, so no builder pointer
        // reaches it; `base` is valid for its 8 bytes.
        unsafe { base.cast::<[u8; HEADER_BYTES]>().write_unaligned(header) };
        // SAFETY: the one segment lies in the buffer right after its first word (checked above),
        // so the header and the segment are `HEADER_BYTES + segment_bytes` initialized bytes
        // from the buffer's start. The builder writes to them only when it is dropped, which
        // takes `&mut self`, so not while the returned borrow of `self` lives.
        unsafe {
            std::slice::from_raw_parts(
                self.buffer.as_ptr().cast::<u8>(),
                HEADER_BYTES + segment_bytes,
            )
        }
    }
}

/// Hands a message its first segment from a [`Scratch`]'s buffer, after the header word, and
/// further segments from the heap.
pub struct BufferAllocator {
    first: *mut u8,
    first_words: u32,
    first_taken: bool,
    heap: HeapAllocator,
}

// SAFETY: the allocator only points into the buffer of the `Scratch` that owns the builder that
// owns the allocator; they move between threads together, and the buffer (a heap allocation)
// does not move with them.
unsafe impl Send for BufferAllocator {}

impl BufferAllocator {
    /// Takes all of `buffer` but its first word; the rest must be zero.
    fn new(buffer: &mut Vec<Word>) -> BufferAllocator {
        let words = buffer.len().saturating_sub(1);
        BufferAllocator {
            first: buffer.as_mut_ptr().cast::<u8>().wrapping_add(HEADER_BYTES),
            first_words: u32::try_from(words).unwrap_or(u32::MAX),
            first_taken: false,
            heap: HeapAllocator::new(),
        }
    }
}

// SAFETY: the first segment is the buffer after its first word: zeroed (the buffer is
// allocated zeroed and every message zeroes what it used when it deallocates it), 8-byte
// aligned (words), valid while the `Scratch` keeps the buffer (it drops the builder before
// touching the buffer), and handed out once at a time. Other segments are the heap allocator's.
unsafe impl Allocator for BufferAllocator {
    fn allocate_segment(&mut self, minimum_size: u32) -> (*mut u8, u32) {
        if !self.first_taken && minimum_size <= self.first_words {
            self.first_taken = true;
            return (self.first, self.first_words);
        }
        self.heap.allocate_segment(minimum_size)
    }

    unsafe fn deallocate_segment(&mut self, ptr: *mut u8, word_size: u32, words_used: u32) {
        if ptr == self.first {
            // SAFETY: `ptr` is the first segment, `word_size` words long in the buffer; capnp
            // passes `words_used <= word_size`, the words it may have written.
            unsafe { std::ptr::write_bytes(ptr, 0, words_used as usize * 8) };
            self.first_taken = false;
        } else {
            // SAFETY: any other segment came from `heap`, with these sizes.
            unsafe { self.heap.deallocate_segment(ptr, word_size, words_used) }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use capnp::message::ReaderOptions;
    use flightrec_schemas::trace_capnp::keyframe;

    /// Builds a keyframe with a text of `len` bytes in `scratch`, sized for `estimate` bytes.
    /// Its position is set only for long texts: a short one after a long one finds the long
    /// one's position unless the buffer was zeroed in between.
    fn keyframe_of(scratch: &mut Scratch, len: usize, estimate: usize) -> Vec<u8> {
        let text = "x".repeat(len);
        scratch.build(estimate, |message| {
            let mut root = message.init_root::<keyframe::Builder>();
            if len > 100 {
                root.set_position(len as u64);
            }
            root.set_tree(text.as_str());
        });
        scratch.message().to_vec()
    }

    /// The same message built by capnp's own heap allocator and serialized by capnp.
    fn serialized_by_capnp(len: usize) -> Vec<u8> {
        let text = "x".repeat(len);
        let mut message = Builder::new_default();
        let mut root = message.init_root::<keyframe::Builder>();
        if len > 100 {
            root.set_position(len as u64);
        }
        root.set_tree(text.as_str());
        serialize::write_message_to_words(&message)
    }

    #[test]
    fn messages_in_place_or_outgrown_serialize_as_capnp_does() {
        let mut scratch = Scratch::default();
        // Fits; outgrows a small buffer; fits again in the grown buffer; then small ones reuse
        // a buffer a larger message used (which must have been zeroed again).
        for (len, estimate, fits) in [
            (10, 64, true),
            (5_000, 64, false),
            (5_000, 8_192, true),
            (3, 0, true),
            (700, 1_000, true),
        ] {
            let built = keyframe_of(&mut scratch, len, estimate);
            let reference = serialized_by_capnp(len);
            if fits {
                // Built in place, header and all: byte for byte what capnp writes.
                assert_eq!(built, reference, "len {len}, estimate {estimate}");
                continue;
            }
            // Outgrown: more segments than capnp's own allocator makes, the same message.
            let read = |bytes: &[u8]| {
                let message =
                    serialize::read_message_from_flat_slice(&mut &bytes[..], ReaderOptions::new())
                        .expect("reads back");
                let root = message.get_root::<keyframe::Reader>().expect("a keyframe");
                let tree = root.get_tree().expect("a tree").to_string().expect("UTF-8");
                (root.get_position(), tree)
            };
            assert_ne!(built.len(), reference.len(), "outgrew its buffer");
            assert_eq!(
                read(&built),
                read(&reference),
                "len {len}, estimate {estimate}"
            );
        }
    }

    #[test]
    fn the_buffer_is_zero_again_once_a_message_is_dropped() {
        let mut scratch = Scratch::default();
        let built = keyframe_of(&mut scratch, 2_000, 4_096);
        assert!(built.len() > 2_000, "the message holds its text");
        scratch.message = None;
        let bytes = Word::words_to_bytes(&scratch.buffer[1..]);
        assert!(bytes.iter().all(|&b| b == 0), "the segment was not zeroed");
    }
}
