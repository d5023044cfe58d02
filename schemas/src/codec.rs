//! Zero-copy encoding for hot, fixed-size inputs: the input's bytes are the record.

use crate::machine::CodecError;

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
