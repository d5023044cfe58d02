//! A read-only mapping of a ring file, accessed only through bounds-checked atomic loads: the
//! writer may still be changing it, and its contents are untrusted.
#![allow(unsafe_code)]

use std::fs::File;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use memmap2::{MmapOptions, MmapRaw};

/// A mapped ring file.
pub struct RingMap {
    map: Option<MmapRaw>,
    len: u64,
}

impl RingMap {
    /// Maps `path` read-only.
    pub fn open(path: &Path) -> std::io::Result<RingMap> {
        let file = File::open(path)?;
        let metadata = file.metadata()?;
        if !metadata.is_file() {
            // mmap would fail with a baffling "No such device"; say what it is instead.
            let what = if metadata.is_dir() {
                "a directory"
            } else {
                "not a regular file"
            };
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!("is {what}"),
            ));
        }
        let len = metadata.len();
        if len == 0 {
            return Ok(RingMap { map: None, len: 0 });
        }
        let map = MmapOptions::new().map_raw_read_only(&file)?;
        Ok(RingMap {
            map: Some(map),
            len,
        })
    }

    /// Bytes mapped.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// The `count` words at byte `offset`, or `None` if that range is not inside the file.
    pub fn words(&self, offset: u64, count: u64) -> Option<&[AtomicU64]> {
        let end = count.checked_mul(8)?.checked_add(offset)?;
        let map = self.map.as_ref()?;
        if offset % 8 != 0 || end > self.len {
            return None;
        }
        // SAFETY: the range is inside the mapping (checked above) and 8-aligned (the mapping is
        // page aligned); it lives as long as `self`. The memory is only ever read, through
        // atomics, so a writer in another process changing it is not a data race here.
        Some(unsafe {
            std::slice::from_raw_parts(map.as_ptr().add(offset as usize).cast(), count as usize)
        })
    }

    /// Copies `len` bytes at `offset` (8-aligned) into a new vector, or `None` if out of range.
    pub fn copy(&self, offset: u64, len: u64) -> Option<Vec<u8>> {
        let words = self.words(offset, len.div_ceil(8))?;
        let mut out = Vec::with_capacity(len as usize + 8);
        for word in words {
            out.extend_from_slice(&word.load(Ordering::Relaxed).to_le_bytes());
        }
        out.truncate(len as usize);
        Some(out)
    }
}

/// Asks the kernel to back the spare capacity of `buffer` with huge pages. Recovery fills
/// buffers of up to the file's size; with 4 KiB pages a 1 GiB lane costs a quarter of a million
/// page faults, a good part of the time it takes to read. Only a hint: it changes no contents.
pub fn prefer_huge_pages<T>(buffer: &mut Vec<T>) {
    prefer_huge_pages_in(buffer.spare_capacity_mut());
}

/// [`prefer_huge_pages`] for memory not yet touched that is already part of a buffer (such as a
/// `vec![0; n]`, whose pages the kernel supplies zeroed on first touch).
pub fn prefer_huge_pages_in<T>(memory: &mut [T]) {
    const HUGE: usize = 2 << 20;
    let bytes = std::mem::size_of_val(memory);
    if bytes < 2 * HUGE {
        return;
    }
    let start = memory.as_mut_ptr() as usize;
    let aligned = start.next_multiple_of(HUGE);
    let len = (start + bytes - aligned) / HUGE * HUGE;
    // SAFETY: `aligned..aligned + len` lies within `memory` (rounded inwards to whole huge
    // pages), which the caller owns, and MADV_HUGEPAGE only changes how the kernel backs those
    // pages, never their contents or validity. Failure is harmless.
    unsafe {
        libc::madvise(aligned as *mut libc::c_void, len, libc::MADV_HUGEPAGE);
    }
}
