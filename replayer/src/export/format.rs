//! The framing of an export file: header, chunk frames, trailer, and the bounds every reader
//! checks. Prose in `schemas/EXPORT.md`; the two change together.

use capnp::message::ReaderOptions;
use twox_hash::XxHash3_64;

/// The first 8 bytes: `"FLREXP\r\n"` (the CR LF catches text-mode mangling, as the ring's does).
pub const MAGIC: [u8; 8] = *b"FLREXP\r\n";
/// The last 8 bytes.
pub const END_MAGIC: [u8; 8] = *b"FLREND\r\n";
/// The export format version this build writes and reads. Bump it whenever a file written by
/// this build could be misread by an older reader, or an older file by this one: a change to
/// the framing, or to what a message's fields mean (new fields an older reader would ignore
/// wrongly count too). Readers refuse every other version.
///
/// 2: trace events store their kind (`Event.traceKind`) and their bare message in `summary`;
/// the metadata stores the replay's panics.
pub const FORMAT_VERSION: u32 = 2;
/// Bytes of the header: magic, version, reserved.
pub const HEADER_LEN: u64 = 16;
/// Bytes of the trailer: footer offset, footer length, footer checksum, end magic.
pub const TRAILER_LEN: u64 = 32;
/// Bytes of a chunk's frame header: kind, reserved, stored length, raw length, checksum.
pub const FRAME_HEADER_LEN: u64 = 24;
/// The most bytes one chunk may hold once decompressed (a keyframe or checkpoint larger than
/// this cannot be exported).
pub const MAX_CHUNK_BYTES: u64 = 1 << 30;
/// LZ4 cannot expand a block by more than this factor (a 15-token run of 255-byte length bytes).
pub const MAX_LZ4_RATIO: u64 = 255;
/// How deep a message of this schema nests, with room to spare.
const NESTING_LIMIT: i32 = 16;

/// The kinds of chunk, as the frame header and `ChunkRef.kind` name them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// An `EventChunk`.
    Events = 0,
    /// A `DiffChunk`.
    Diffs = 1,
    /// A `Keyframe`.
    Keyframe = 2,
    /// A `Checkpoint`.
    Checkpoint = 3,
}

impl Kind {
    /// The kind a frame header's code names.
    pub fn from_code(code: u32) -> Option<Kind> {
        Some(match code {
            0 => Kind::Events,
            1 => Kind::Diffs,
            2 => Kind::Keyframe,
            3 => Kind::Checkpoint,
            _ => return None,
        })
    }
}

/// `xxh3_64` with seed 0: chunk and footer checksums.
pub fn checksum(bytes: &[u8]) -> u64 {
    XxHash3_64::oneshot(bytes)
}

/// The header, as written.
pub fn encode_header() -> [u8; HEADER_LEN as usize] {
    let mut header = [0u8; HEADER_LEN as usize];
    header[..8].copy_from_slice(&MAGIC);
    header[8..12].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
    header
}

/// A chunk's frame header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Frame {
    /// Its kind's code.
    pub kind: u32,
    /// Reserved, zero.
    pub reserved: u32,
    /// LZ4 bytes that follow.
    pub stored_len: u32,
    /// Bytes of the message once decompressed.
    pub raw_len: u32,
    /// `checksum` of the stored bytes.
    pub checksum: u64,
}

impl Frame {
    /// The 24 bytes of the frame header.
    pub fn encode(&self) -> [u8; FRAME_HEADER_LEN as usize] {
        let mut out = [0u8; FRAME_HEADER_LEN as usize];
        out[0..4].copy_from_slice(&self.kind.to_le_bytes());
        out[4..8].copy_from_slice(&self.reserved.to_le_bytes());
        out[8..12].copy_from_slice(&self.stored_len.to_le_bytes());
        out[12..16].copy_from_slice(&self.raw_len.to_le_bytes());
        out[16..24].copy_from_slice(&self.checksum.to_le_bytes());
        out
    }

    /// Decodes 24 bytes (the caller has read exactly that many).
    pub fn decode(bytes: &[u8]) -> Frame {
        Frame {
            kind: le32(&bytes[0..4]),
            reserved: le32(&bytes[4..8]),
            stored_len: le32(&bytes[8..12]),
            raw_len: le32(&bytes[12..16]),
            checksum: le64(&bytes[16..24]),
        }
    }
}

/// The trailer's fields.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Trailer {
    /// Where the footer starts.
    pub footer_offset: u64,
    /// Its length in bytes.
    pub footer_len: u64,
    /// `checksum` of the footer bytes.
    pub footer_checksum: u64,
}

impl Trailer {
    /// The 32 bytes of the trailer.
    pub fn encode(&self) -> [u8; TRAILER_LEN as usize] {
        let mut out = [0u8; TRAILER_LEN as usize];
        out[0..8].copy_from_slice(&self.footer_offset.to_le_bytes());
        out[8..16].copy_from_slice(&self.footer_len.to_le_bytes());
        out[16..24].copy_from_slice(&self.footer_checksum.to_le_bytes());
        out[24..32].copy_from_slice(&END_MAGIC);
        out
    }

    /// Decodes the 32 bytes of a trailer, or says what is wrong with them.
    pub fn decode(bytes: &[u8]) -> Result<Trailer, &'static str> {
        if bytes[24..32] != END_MAGIC {
            return Err("no end magic: the file is truncated or is not an export");
        }
        Ok(Trailer {
            footer_offset: le64(&bytes[0..8]),
            footer_len: le64(&bytes[8..16]),
            footer_checksum: le64(&bytes[16..24]),
        })
    }
}

fn le32(bytes: &[u8]) -> u32 {
    let mut word = [0u8; 4];
    word.copy_from_slice(bytes);
    u32::from_le_bytes(word)
}

fn le64(bytes: &[u8]) -> u64 {
    let mut word = [0u8; 8];
    word.copy_from_slice(bytes);
    u64::from_le_bytes(word)
}

/// `n` rounded up to a multiple of 8, or `None` on overflow.
pub fn pad8(n: u64) -> Option<u64> {
    n.checked_add(7).map(|n| n & !7)
}

/// Reader options for a message of `bytes` bytes: every word may be visited a few times (a
/// getter called twice counts twice), no more, so a message whose pointers alias one another
/// cannot make a small chunk cost a large traversal.
pub fn reader_options(bytes: usize) -> ReaderOptions {
    let mut options = ReaderOptions::new();
    options
        .traversal_limit_in_words(Some((bytes / 8).saturating_mul(4).saturating_add(1024)))
        .nesting_limit(NESTING_LIMIT);
    options
}

/// The exact number of bytes the LZ4 block `block` decodes to, found by walking its sequences
/// without writing anything (so a block claiming a size can be checked before allocating it), or
/// `None` if the block is malformed or decodes to more than `limit` bytes. Linear in the block's
/// length: every sequence but the last consumes at least three bytes.
pub fn lz4_decoded_len(block: &[u8], limit: u64) -> Option<u64> {
    let mut at = 0usize;
    let mut out = 0u64;
    // A length nibble of 15 continues in bytes until one is not 255.
    let extended = |at: &mut usize, mut len: u64| -> Option<u64> {
        loop {
            let byte = *block.get(*at)?;
            *at += 1;
            len = len.checked_add(u64::from(byte))?;
            if byte != 255 {
                return Some(len);
            }
        }
    };
    loop {
        let token = *block.get(at)?;
        at += 1;
        let mut literals = u64::from(token >> 4);
        if literals == 15 {
            literals = extended(&mut at, literals)?;
        }
        let literal_end = (at as u64).checked_add(literals)?;
        if literal_end > block.len() as u64 {
            return None;
        }
        at = literal_end as usize;
        out = out.checked_add(literals)?;
        if out > limit {
            return None;
        }
        if at == block.len() {
            // The last sequence: literals only.
            return Some(out);
        }
        let offset = u16::from_le_bytes([*block.get(at)?, *block.get(at + 1)?]);
        at += 2;
        if offset == 0 || u64::from(offset) > out {
            return None;
        }
        let mut matched = u64::from(token & 15);
        if matched == 15 {
            matched = extended(&mut at, matched)?;
        }
        out = out.checked_add(matched + 4)?;
        if out > limit {
            return None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_decoded_length_of_lz4_blocks_is_exact() {
        for data in [
            Vec::new(),
            b"a".to_vec(),
            vec![0u8; 100_000],
            (0..50_000u32)
                .flat_map(|i| (i % 251).to_le_bytes())
                .collect(),
            b"abcabcabcabcabcabcabcabcxyz".repeat(300),
        ] {
            let block = lz4_flex::block::compress(&data);
            assert_eq!(
                lz4_decoded_len(&block, u64::MAX),
                Some(data.len() as u64),
                "{} bytes",
                data.len()
            );
            if !data.is_empty() {
                assert_eq!(lz4_decoded_len(&block, data.len() as u64 - 1), None);
                assert_eq!(lz4_decoded_len(&block[..block.len() - 1], u64::MAX), None);
            }
        }
        // A run of length bytes claiming gigabytes, from a few bytes of input.
        let mut claim = vec![0x0F, b'x', 0x01, 0x00];
        claim.extend([255u8; 64]);
        claim.push(0);
        assert_eq!(lz4_decoded_len(&claim, 1 << 20), None);
    }

    #[test]
    fn frames_and_trailers_round_trip() {
        let frame = Frame {
            kind: 2,
            reserved: 0,
            stored_len: 77,
            raw_len: 800,
            checksum: 0x0123_4567_89ab_cdef,
        };
        assert_eq!(Frame::decode(&frame.encode()), frame);
        let trailer = Trailer {
            footer_offset: 4096,
            footer_len: 512,
            footer_checksum: 99,
        };
        assert_eq!(Trailer::decode(&trailer.encode()), Ok(trailer));
        assert!(Trailer::decode(&[0u8; 32]).is_err());
    }
}
