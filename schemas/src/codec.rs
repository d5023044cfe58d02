//! Zero-copy encoding for hot, fixed-size inputs: the input's bytes are the record.

use crate::machine::CodecError;
use crate::slot::InlineRecord;

/// Appends the raw bytes of a plain-old-data value.
///
/// ```
/// use flightrec_schemas::codec::{pod_decode, pod_encode};
/// let mut out = Vec::new();
/// pod_encode(&[1u64, 2, 3, 4], &mut out).unwrap();
/// assert_eq!(out.len(), 32);
/// assert_eq!(pod_decode::<[u64; 4]>(&out).unwrap(), [1, 2, 3, 4]);
/// ```
#[inline]
pub fn pod_encode<T: bytemuck::Pod>(value: &T, out: &mut Vec<u8>) -> Result<(), CodecError> {
    out.extend_from_slice(bytemuck::bytes_of(value));
    Ok(())
}

/// Reads a plain-old-data value from exactly its size in bytes (any alignment).
pub fn pod_decode<T: bytemuck::Pod>(bytes: &[u8]) -> Result<T, CodecError> {
    bytemuck::try_pod_read_unaligned(bytes).map_err(|_| {
        CodecError::Invalid(format!(
            "expected {} bytes, found {}",
            std::mem::size_of::<T>(),
            bytes.len()
        ))
    })
}

/// The zero-copy encoding of a plain-old-data value of at most 32 bytes, for
/// [`crate::Machine::encode_input_inline`]: its bytes go straight into the ring's slot words.
/// Its bytes are those [`pod_encode`] appends, so [`pod_decode`] reads them back.
///
/// ```
/// use flightrec_schemas::codec::{pod_decode, pod_inline};
/// let record = pod_inline(&[7u64, 8, 9, 10]);
/// assert_eq!(record.len, 32);
/// assert_eq!(pod_decode::<[u64; 4]>(&record.bytes()).unwrap(), [7, 8, 9, 10]);
/// ```
#[inline(always)]
pub fn pod_inline<T: bytemuck::Pod>(value: &T) -> InlineRecord {
    const {
        assert!(
            std::mem::size_of::<T>() <= 32,
            "pod_inline takes values of at most 32 bytes"
        )
    };
    let mut words = [0u64; 4];
    let size = std::mem::size_of::<T>();
    bytemuck::bytes_of_mut(&mut words)[..size].copy_from_slice(bytemuck::bytes_of(value));
    // The slot stores words little-endian; on a big-endian host, reorder each word's bytes.
    let words = words.map(u64::from_le);
    InlineRecord {
        words,
        len: size as u32,
    }
}
