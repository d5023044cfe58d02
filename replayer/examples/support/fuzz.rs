//! What both fuzz programs (`fuzz_replay`, `fuzz_export`) share: naming the case being checked so
//! a failure says how to repeat it, a panic hook and a watchdog that end the run on a panic or a
//! hang, a counting allocator that measures a check's peak memory, and the command line.
//!
//! Included with `#[path]` by each program (and so by the tests that include the programs).

use std::cell::RefCell;
use std::sync::mpsc;
use std::time::Duration;

// ---------------------------------------------------------------------------------------------
// Reporting failures: what was being done, and how to repeat it

thread_local! {
    /// What this thread is checking, for the panic hook and the watchdog.
    static CONTEXT: RefCell<String> = const { RefCell::new(String::new()) };
}

/// Names the seeded case that `program` is checking, and how to run it again alone.
pub fn set_context(program: &str, seed: u64, iteration: u64, mutations: &impl std::fmt::Debug) {
    let text = format!(
        "{program}: seed {seed} iteration {iteration}; repeat with\n  cargo run -p \
         flightrec-replayer --example {program} --release -- --seed {seed} --first {iteration} \
         --iterations 1\n  mutations: {mutations:?}"
    );
    CONTEXT.with(|c| *c.borrow_mut() = text);
}

/// Names the case being checked (by a test that does not come from a seed).
pub fn set_case(program: &str, case: impl std::fmt::Debug) {
    CONTEXT.with(|c| *c.borrow_mut() = format!("{program}: case {case:?}"));
}

/// Forgets the case being checked.
pub fn clear_context() {
    CONTEXT.with(|c| c.borrow_mut().clear());
}

/// Prints the context of a panicking thread before the usual message; with `abort`, ends the
/// process there, so that nothing can catch the panic. Install it before the first replay:
/// `History` wraps the hook it finds, to keep the panics of replayed inputs quiet, and this hook
/// must not see those.
pub fn install_panic_hook(abort: bool) {
    static INSTALL: std::sync::Once = std::sync::Once::new();
    INSTALL.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let context = CONTEXT.with(|c| c.borrow().clone());
            if !context.is_empty() {
                eprintln!("{context}");
            }
            previous(info);
            if abort {
                std::process::abort();
            }
        }));
    });
}

/// Aborts the process, saying what was being checked, unless dropped within its limit: a hang
/// must fail the run, not stall it.
pub struct Watchdog {
    done: Option<mpsc::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Watchdog {
    /// Starts watching the case named by the thread's context.
    pub fn arm(limit: Duration) -> Watchdog {
        let (done, finished) = mpsc::channel::<()>();
        let context = CONTEXT.with(|c| c.borrow().clone());
        let thread = std::thread::spawn(move || {
            if let Err(mpsc::RecvTimeoutError::Timeout) = finished.recv_timeout(limit) {
                eprintln!("{context}\nhung for more than {limit:?}");
                std::process::abort();
            }
        });
        Watchdog {
            done: Some(done),
            thread: Some(thread),
        }
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        drop(self.done.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Counting allocations

/// A global allocator that counts, per thread, the bytes allocated and not yet freed, so that a
/// replay's or a read's peak can be measured while other threads (other tests) allocate too.
pub mod alloc_count {
    #![allow(unsafe_code)]

    use std::alloc::{GlobalAlloc, Layout, System};
    use std::cell::Cell;

    struct Counting;

    #[global_allocator]
    static COUNTING: Counting = Counting;

    thread_local! {
        // Const-initialised and without destructors: usable inside the allocator at any time.
        static LIVE: Cell<isize> = const { Cell::new(0) };
        static PEAK: Cell<isize> = const { Cell::new(0) };
    }

    fn note(delta: isize) {
        let _ = LIVE.try_with(|live| {
            let now = live.get() + delta;
            live.set(now);
            let _ = PEAK.try_with(|peak| peak.set(peak.get().max(now)));
        });
    }

    // SAFETY: every method forwards to `System` with the caller's arguments unchanged, so it
    // upholds `GlobalAlloc`'s contract exactly as `System` does; the counting touches only
    // thread-local cells and never allocates.
    unsafe impl GlobalAlloc for Counting {
        unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
            // SAFETY: the caller's layout is passed on as given.
            let ptr = unsafe { System.alloc(layout) };
            if !ptr.is_null() {
                note(layout.size() as isize);
            }
            ptr
        }

        unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
            // SAFETY: as in `alloc`; forwarded so that large zeroed blocks stay lazily mapped.
            let ptr = unsafe { System.alloc_zeroed(layout) };
            if !ptr.is_null() {
                note(layout.size() as isize);
            }
            ptr
        }

        unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
            // SAFETY: the caller guarantees `ptr` came from this allocator (so from `System`)
            // with this layout.
            unsafe { System.dealloc(ptr, layout) };
            note(-(layout.size() as isize));
        }

        unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
            // SAFETY: the caller's guarantees for `realloc` are passed on as given.
            let new = unsafe { System.realloc(ptr, layout, new_size) };
            if !new.is_null() {
                note(new_size as isize - layout.size() as isize);
            }
            new
        }
    }

    /// Runs `f`, and returns its result and the most bytes this thread held at once beyond what
    /// it held before.
    pub fn peak_during<T>(f: impl FnOnce() -> T) -> (T, usize) {
        let before = LIVE.with(Cell::get);
        PEAK.with(|peak| peak.set(before));
        let result = f();
        let peak = PEAK.with(Cell::get);
        (result, (peak - before).max(0) as usize)
    }
}

// ---------------------------------------------------------------------------------------------
// The program

/// The command line of a fuzz program.
pub struct Args {
    /// Seed of the damage.
    pub seed: u64,
    /// The first iteration to run.
    pub first: u64,
    /// How many to run (default: until stopped).
    pub iterations: Option<u64>,
}

/// Reads `--seed S --first N --iterations K`.
pub fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        seed: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
        first: 0,
        iterations: None,
    };
    let mut words = std::env::args().skip(1);
    while let Some(flag) = words.next() {
        let value = words.next().ok_or(format!("{flag} needs a value"))?;
        let number = value
            .parse::<u64>()
            .map_err(|e| format!("{flag} {value}: {e}"))?;
        match flag.as_str() {
            "--seed" => args.seed = number,
            "--first" => args.first = number,
            "--iterations" => args.iterations = Some(number),
            _ => return Err(format!("unknown option {flag}")),
        }
    }
    Ok(args)
}
