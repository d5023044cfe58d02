//! Crash capture: a panic hook and a fatal-signal handler that write the cause of death into the
//! header of every live ring file of the process, then hand over to whatever was installed
//! before them.
//!
//! The signal path is async-signal-safe: it takes no lock, allocates nothing and formats
//! nothing; it reads a fixed registry of mapped headers and stores into them.
#![allow(unsafe_code)]

use std::ffi::c_void;
use std::ptr;
use std::sync::atomic::{AtomicPtr, AtomicU64, Ordering};
use std::sync::{Once, OnceLock};

use flightrec_schemas::header::{crash_kind, crash_state, Status};
use flightrec_schemas::layout::{crash, header as h};

/// The signals whose default action kills the process with a core dump, which the recorder
/// reports. SIGKILL cannot be caught; a reader recognises it by a running status and a dead pid.
pub const FATAL_SIGNALS: [libc::c_int; 5] = [
    libc::SIGSEGV,
    libc::SIGBUS,
    libc::SIGILL,
    libc::SIGFPE,
    libc::SIGABRT,
];

const MAX_RINGS: usize = 16;
static RINGS: [AtomicPtr<u8>; MAX_RINGS] = [const { AtomicPtr::new(ptr::null_mut()) }; MAX_RINGS];
static PREVIOUS: OnceLock<[libc::sigaction; FATAL_SIGNALS.len()]> = OnceLock::new();

/// Adds a mapped header to the rings that crash capture writes to. Returns false when the
/// registry is full (the ring then records no crash cause, and a reader reports it as "died").
pub fn register(base: *mut u8) -> bool {
    RINGS.iter().any(|slot| {
        slot.compare_exchange(ptr::null_mut(), base, Ordering::AcqRel, Ordering::Relaxed)
            .is_ok()
    })
}

/// Removes a header before its mapping goes away.
pub fn unregister(base: *mut u8) {
    for slot in &RINGS {
        let _ = slot.compare_exchange(base, ptr::null_mut(), Ordering::AcqRel, Ordering::Relaxed);
    }
}

/// The cause of death, as plain data the signal handler can fill without allocating.
struct Cause<'a> {
    kind: u32,
    /// The thread's name where known without allocating; else the kernel's name is used.
    thread: Option<&'a [u8]>,
    signal: i32,
    code: i32,
    fault_addr: u64,
    location: &'a [u8],
    message: &'a [u8],
    fatal: bool,
}

fn word(base: *mut u8, offset: u64) -> &'static AtomicU64 {
    // SAFETY: `base` is a registered header mapping of at least one page; `offset` is a fixed,
    // 8-aligned header offset inside it. Registered mappings stay alive until unregistered.
    unsafe { &*(base.add(offset as usize) as *const AtomicU64) }
}

fn put(base: *mut u8, offset: u64, bytes: &[u8]) {
    // SAFETY: as in `word`; the crash record's fields are fixed ranges inside the header page,
    // and writing them is exclusive because the state word was claimed first.
    unsafe { ptr::copy_nonoverlapping(bytes.as_ptr(), base.add(offset as usize), bytes.len()) }
}

fn put_text(base: *mut u8, at: u64, len_at: u64, text: &[u8], cap: usize) {
    let mut len = text.len().min(cap);
    // Cut on a character boundary: continuation bytes are 0b10xxxxxx.
    while len > 0 && len < text.len() && text[len] & 0xC0 == 0x80 {
        len -= 1;
    }
    put(base, at, &text[..len]);
    put(base, len_at, &(len as u32).to_le_bytes());
}

/// Writes `cause` into every registered ring, async-signal-safely.
fn record(cause: &Cause<'_>) {
    let tid = crate::trace::gettid();
    let time = realtime_ns();
    let mut kernel_name = [0u8; 16];
    // SAFETY: PR_GET_NAME writes at most 16 bytes into the buffer we pass.
    unsafe {
        libc::prctl(
            libc::PR_GET_NAME,
            kernel_name.as_mut_ptr() as libc::c_ulong,
            0,
            0,
            0,
        )
    };
    let kernel_len = kernel_name
        .iter()
        .position(|&b| b == 0)
        .unwrap_or(kernel_name.len());
    let name = cause.thread.unwrap_or(&kernel_name[..kernel_len]);
    for slot in &RINGS {
        let base = slot.load(Ordering::Acquire);
        if base.is_null() {
            continue;
        }
        if !claim(base) {
            // Another thread is writing its cause (a panic racing this signal); the process is
            // dying all the same.
            if cause.fatal {
                word(base, h::STATUS).store(Status::Crashed.code(), Ordering::Release);
            }
            continue;
        }
        let at = h::CRASH;
        put(base, at + crash::KIND, &cause.kind.to_le_bytes());
        put(base, at + crash::SIGNAL, &cause.signal.to_le_bytes());
        put(base, at + crash::SI_CODE, &cause.code.to_le_bytes());
        put(base, at + crash::TID, &tid.to_le_bytes());
        put(
            base,
            at + crash::FAULT_ADDR,
            &cause.fault_addr.to_le_bytes(),
        );
        put(base, at + crash::TIME_UNIX_NS, &time.to_le_bytes());
        let (name_at, name_len_at) = (at + crash::THREAD_NAME, at + crash::THREAD_NAME_LEN);
        put_text(base, name_at, name_len_at, name, crash::THREAD_NAME_CAP);
        let (loc_at, loc_len_at) = (at + crash::LOCATION, at + crash::LOCATION_LEN);
        put_text(
            base,
            loc_at,
            loc_len_at,
            cause.location,
            crash::LOCATION_CAP,
        );
        let (msg_at, msg_len_at) = (at + crash::MESSAGE, at + crash::MESSAGE_LEN);
        put_text(base, msg_at, msg_len_at, cause.message, crash::MESSAGE_CAP);
        word(base, at + crash::STATE).store(crash_state::COMMITTED, Ordering::Release);
        if cause.fatal {
            word(base, h::STATUS).store(Status::Crashed.code(), Ordering::Release);
        }
    }
}

/// Takes the crash record for writing. An empty record is always taken; a panic that was not
/// fatal (it may have been caught) gives way to a later panic or signal.
fn claim(base: *mut u8) -> bool {
    let state = word(base, h::CRASH + crash::STATE);
    loop {
        let current = state.load(Ordering::Acquire);
        let replaceable = match current {
            crash_state::NONE => true,
            crash_state::COMMITTED => {
                let kind = word(base, h::CRASH + crash::KIND).load(Ordering::Relaxed) as u32;
                let status = word(base, h::STATUS).load(Ordering::Relaxed);
                kind == crash_kind::PANIC && status != Status::Crashed.code()
            }
            _ => false,
        };
        if !replaceable {
            return false;
        }
        if state
            .compare_exchange(
                current,
                crash_state::WRITING,
                Ordering::AcqRel,
                Ordering::Acquire,
            )
            .is_ok()
        {
            return true;
        }
    }
}

fn realtime_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime is async-signal-safe and writes only into `ts`.
    unsafe { libc::clock_gettime(libc::CLOCK_REALTIME, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// Installs the panic hook and the fatal-signal handlers, once per process.
pub fn install() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        install_panic_hook();
        install_signal_handlers();
    });
    ensure_alternate_stack();
}

fn install_panic_hook() {
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let message = match info.payload().downcast_ref::<&str>() {
            Some(s) => (*s).to_owned(),
            None => info
                .payload()
                .downcast_ref::<String>()
                .cloned()
                .unwrap_or_else(|| "Box<dyn Any>".into()),
        };
        let location = info
            .location()
            .map(|l| format!("{}:{}:{}", l.file(), l.line(), l.column()))
            .unwrap_or_default();
        let thread = std::thread::current();
        record(&Cause {
            kind: crash_kind::PANIC,
            thread: thread.name().map(str::as_bytes),
            signal: 0,
            code: 0,
            fault_addr: 0,
            location: location.as_bytes(),
            message: message.as_bytes(),
            // Under panic=unwind the panic may be caught; the owner's drop marks the crash if
            // it unwinds through the recorder.
            fatal: cfg!(panic = "abort"),
        });
        previous(info);
    }));
}

fn install_signal_handlers() {
    let previous = FATAL_SIGNALS.map(|signal| {
        // SAFETY: a zeroed sigaction is a valid out-parameter; a null new action only queries.
        unsafe {
            let mut old: libc::sigaction = std::mem::zeroed();
            libc::sigaction(signal, ptr::null(), &mut old);
            old
        }
    });
    let _ = PREVIOUS.set(previous);
    for signal in FATAL_SIGNALS {
        // SAFETY: we install a valid `extern "C"` handler with SA_SIGINFO, which matches its
        // three-argument signature; the mask is initialised by sigemptyset.
        unsafe {
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = on_fatal_signal as *const () as usize;
            action.sa_flags = libc::SA_SIGINFO | libc::SA_ONSTACK;
            libc::sigemptyset(&mut action.sa_mask);
            libc::sigaction(signal, &action, ptr::null_mut());
        }
    }
}

/// Gives the calling thread an alternate signal stack if it has none, so a stack overflow can
/// still be recorded. Threads spawned by `std` already have one.
fn ensure_alternate_stack() {
    const SIZE: usize = 64 * 1024;
    // SAFETY: querying with a null new stack only writes into `current`; the new stack is a
    // fresh anonymous mapping that is never unmapped (it must outlive the thread's signals).
    unsafe {
        let mut current: libc::stack_t = std::mem::zeroed();
        if libc::sigaltstack(ptr::null(), &mut current) != 0
            || current.ss_flags & libc::SS_DISABLE == 0
        {
            return;
        }
        let prot = libc::PROT_READ | libc::PROT_WRITE;
        let flags = libc::MAP_PRIVATE | libc::MAP_ANONYMOUS;
        let stack = libc::mmap(ptr::null_mut(), SIZE, prot, flags, -1, 0);
        if stack == libc::MAP_FAILED {
            return;
        }
        let new = libc::stack_t {
            ss_sp: stack,
            ss_flags: 0,
            ss_size: SIZE,
        };
        libc::sigaltstack(&new, ptr::null_mut());
    }
}

extern "C" fn on_fatal_signal(
    signal: libc::c_int,
    info: *mut libc::siginfo_t,
    context: *mut c_void,
) {
    // SAFETY: the kernel passes a valid siginfo for SA_SIGINFO handlers; si_addr is meaningful
    // for the fault signals, and only read for them.
    let (code, fault_addr) = unsafe {
        let code = if info.is_null() { 0 } else { (*info).si_code };
        let faulting = matches!(
            signal,
            libc::SIGSEGV | libc::SIGBUS | libc::SIGILL | libc::SIGFPE
        );
        let addr = if faulting && !info.is_null() {
            (*info).si_addr() as u64
        } else {
            0
        };
        (code, addr)
    };
    record(&Cause {
        kind: crash_kind::SIGNAL,
        thread: None,
        signal,
        code,
        fault_addr,
        location: b"",
        message: describe(signal).as_bytes(),
        fatal: true,
    });
    // SAFETY: called from the handler with the handler's own arguments.
    unsafe { chain(signal, info, context) }
}

fn describe(signal: libc::c_int) -> &'static str {
    match signal {
        libc::SIGSEGV => "SIGSEGV: invalid memory reference",
        libc::SIGBUS => "SIGBUS: bus error (bad memory access)",
        libc::SIGILL => "SIGILL: illegal instruction",
        libc::SIGFPE => "SIGFPE: arithmetic exception",
        libc::SIGABRT => "SIGABRT: aborted",
        _ => "fatal signal",
    }
}

/// Hands the signal to the handler that was installed before ours, or to the default action.
///
/// # Safety
/// Must be called from a signal handler with the arguments the kernel passed it.
unsafe fn chain(signal: libc::c_int, info: *mut libc::siginfo_t, context: *mut c_void) {
    let index = FATAL_SIGNALS.iter().position(|&s| s == signal);
    let previous = index.and_then(|i| PREVIOUS.get().map(|all| all[i]));
    match previous.map(|p| (p.sa_sigaction, p.sa_flags)) {
        Some((libc::SIG_IGN, _)) => {}
        Some((handler, flags)) if handler != libc::SIG_DFL => {
            if flags & libc::SA_SIGINFO != 0 {
                // SAFETY: the previous owner installed this address as a three-argument handler.
                let handler: extern "C" fn(libc::c_int, *mut libc::siginfo_t, *mut c_void) =
                    unsafe { std::mem::transmute(handler) };
                handler(signal, info, context);
            } else {
                // SAFETY: the previous owner installed this address as a one-argument handler.
                let handler: extern "C" fn(libc::c_int) = unsafe { std::mem::transmute(handler) };
                handler(signal);
            }
        }
        _ => {
            // Restore the default action and re-raise: the signal is blocked while we run, so
            // it is delivered, and kills the process, as soon as this handler returns.
            // SAFETY: signal() and raise() are async-signal-safe.
            unsafe {
                libc::signal(signal, libc::SIG_DFL);
                libc::raise(signal);
            }
        }
    }
}
