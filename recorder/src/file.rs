//! The writer's mapping of the ring file: creation with the safety rules of FORMAT.md, and typed
//! access to its words. All raw-pointer access of the recorder goes through here.
#![allow(unsafe_code)]

use std::fs::{File, OpenOptions};
use std::io::ErrorKind;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use flightrec_schemas::header::LaneInfo;
use flightrec_schemas::layout::LANE_CONTROL_SIZE;
use flightrec_schemas::slot::{Slots, SLOT_WORDS};
use memmap2::{MmapOptions, MmapRaw};

use crate::error::RecorderError;

/// A created, fully reserved and mapped ring file.
pub struct RingFile {
    map: MmapRaw,
    path: PathBuf,
    _file: File,
}

impl RingFile {
    /// Creates `path` exclusively (never following a link, never replacing a file), mode 0600,
    /// and reserves `size` bytes before mapping them, so a full filesystem fails here rather than
    /// with SIGBUS at the first write. On any failure the new file is removed again.
    pub fn create(path: &Path, size: u64) -> Result<RingFile, RecorderError> {
        let io = |error| RecorderError::Io {
            path: path.to_owned(),
            error,
        };
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(path)
            .map_err(|e| match e.kind() {
                ErrorKind::AlreadyExists => RecorderError::AlreadyExists {
                    path: path.to_owned(),
                },
                _ => io(e),
            })?;
        let remove_on_error = |err: RecorderError| {
            let _ = std::fs::remove_file(path);
            err
        };
        reserve(&file, size).map_err(|e| {
            remove_on_error(match e.raw_os_error() {
                Some(libc::ENOSPC | libc::EFBIG | libc::EDQUOT) => RecorderError::NoSpace {
                    path: path.to_owned(),
                    bytes: size,
                    error: e,
                },
                _ => io(e),
            })
        })?;
        let map = MmapOptions::new()
            .len(size as usize)
            .map_raw(&file)
            .map_err(|e| remove_on_error(io(e)))?;
        Ok(RingFile {
            map,
            path: path.to_owned(),
            _file: file,
        })
    }

    /// Where the file is.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Bytes mapped.
    pub fn len(&self) -> u64 {
        self.map.len() as u64
    }

    /// The `count` words starting at byte `offset`.
    ///
    /// Panics if the range is not 8-aligned and inside the file: offsets come from the layout the
    /// writer computed itself, so a failure is a bug in the recorder, not bad input.
    pub fn words(&self, offset: u64, count: u64) -> &[AtomicU64] {
        assert!(
            offset % 8 == 0 && offset + count * 8 <= self.len(),
            "word range outside the ring"
        );
        // SAFETY: the range is inside the live mapping (checked above), 8-aligned (the mapping is
        // page aligned), and the mapping lives as long as `self`. Other processes only read it;
        // every mutation in this process goes through atomics, so sharing it as atomics is sound.
        unsafe {
            std::slice::from_raw_parts(
                self.map.as_ptr().add(offset as usize).cast(),
                count as usize,
            )
        }
    }

    /// The word at byte `offset`.
    pub fn word(&self, offset: u64) -> &AtomicU64 {
        &self.words(offset, 1)[0]
    }

    /// Copies `bytes` to `offset` with plain stores. Only for regions no reader accepts until a
    /// stamp published afterwards with release ordering says so (header page before the status
    /// word, checkpoint state before its stamp).
    pub fn write_bytes(&self, offset: u64, bytes: &[u8]) {
        assert!(
            offset + bytes.len() as u64 <= self.len(),
            "byte range outside the ring"
        );
        // SAFETY: in bounds (checked above); the mapping is writable and lives as long as `self`;
        // `bytes` cannot overlap the mapping (callers pass private buffers).
        unsafe {
            std::ptr::copy_nonoverlapping(
                bytes.as_ptr(),
                self.map.as_mut_ptr().add(offset as usize),
                bytes.len(),
            )
        }
    }

    /// Exclusive access to `len` bytes at `offset`, for encoding a checkpoint in place.
    ///
    /// # Safety
    /// The caller must be the only code in this process touching that range while the slice
    /// lives (the checkpoint writer, which runs on the machine's thread, owns its slots).
    #[allow(clippy::mut_from_ref)] // exclusivity is the unsafe contract above
    pub unsafe fn bytes_mut(&self, offset: u64, len: u64) -> &mut [u8] {
        assert!(offset + len <= self.len(), "byte range outside the ring");
        // SAFETY: in bounds, writable, alive for `'self`; exclusivity is the caller's contract.
        unsafe {
            std::slice::from_raw_parts_mut(self.map.as_mut_ptr().add(offset as usize), len as usize)
        }
    }

    /// Pointer to the start of the mapping, for the crash handler's registry.
    pub fn base_ptr(&self) -> *mut u8 {
        self.map.as_mut_ptr()
    }
}

impl Drop for RingFile {
    fn drop(&mut self) {
        // The crash handler must never touch a mapping that is going away.
        crate::crash::unregister(self.base_ptr());
    }
}

/// Reserves the file's blocks up front. tmpfs and the usual filesystems support this natively;
/// where `posix_fallocate` is not supported the file is grown with `set_len` instead.
fn reserve(file: &File, size: u64) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    match nix::fcntl::posix_fallocate(file.as_raw_fd(), 0, size as libc::off_t) {
        Ok(()) => Ok(()),
        Err(nix::errno::Errno::EOPNOTSUPP) => file.set_len(size),
        Err(errno) => Err(std::io::Error::from(errno)),
    }
}

/// One lane's slots and control block, kept mapped by the handle on the file it holds.
pub struct LaneMemory {
    slots: Slots<'static>,
    control: &'static [AtomicU64],
    /// Keeps the mapping alive for `slots` and `control`.
    _file: Arc<RingFile>,
}

impl LaneMemory {
    /// The memory of the lane `info` describes.
    pub fn new(file: &Arc<RingFile>, info: &LaneInfo) -> LaneMemory {
        let words = file.words(info.slots_offset(), info.slot_count * SLOT_WORDS as u64);
        let control = file.words(info.offset, LANE_CONTROL_SIZE / 8);
        // SAFETY: the references point into the mapping owned by `file`, which this struct keeps
        // alive in its `file` field; the mapping never moves, and the public methods only hand
        // out borrows tied to `&self`, so nothing outlives the mapping.
        let (words, control) = unsafe {
            (
                std::mem::transmute::<&[AtomicU64], &'static [AtomicU64]>(words),
                std::mem::transmute::<&[AtomicU64], &'static [AtomicU64]>(control),
            )
        };
        let slots = Slots::new(words).expect("the writer lays lanes out with power-of-two slots");
        LaneMemory {
            slots,
            control,
            _file: Arc::clone(file),
        }
    }

    /// The lane's slots. A reference, not a copy: the hot path then reads them in place instead
    /// of copying them to the stack for the calls it makes on its cold branches.
    #[inline(always)]
    pub fn slots(&self) -> &Slots<'_> {
        &self.slots
    }

    /// A word of the control block, by its `lane_control` offset.
    pub fn control(&self, field: u64) -> &AtomicU64 {
        &self.control[field as usize / 8]
    }
}
