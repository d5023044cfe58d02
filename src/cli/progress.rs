//! Progress of long work on stderr, for a person at a terminal: opening a large ring file takes
//! seconds, and a silent command looks hung.

use std::io::{IsTerminal, Write};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::Duration;

use flightrec_replayer::{progress_line, Progress, ReplayOptions};

/// Work shorter than this shows nothing.
const QUIET_FOR: Duration = Duration::from_millis(400);
/// How often the line is redrawn.
const EVERY: Duration = Duration::from_millis(200);

/// Runs `open` with `options` reporting to a progress line on stderr, when stderr is a terminal.
pub fn opening<T>(options: &ReplayOptions, open: impl FnOnce(&ReplayOptions) -> T) -> T {
    if !std::io::stderr().is_terminal() {
        return open(options);
    }
    let progress = Arc::new(Progress::default());
    let mut options = options.clone();
    options.progress = Some(Arc::clone(&progress));
    let (finished, wait) = mpsc::channel::<()>();
    std::thread::scope(|scope| {
        scope.spawn(move || report(&progress, &wait));
        let result = open(&options);
        drop(finished);
        result
    })
}

/// Redraws the progress line until `wait` is closed, then erases it.
fn report(progress: &Progress, wait: &mpsc::Receiver<()>) {
    if wait.recv_timeout(QUIET_FOR) != Err(mpsc::RecvTimeoutError::Timeout) {
        return;
    }
    let mut stderr = std::io::stderr();
    loop {
        let line = progress.describe();
        // `\r` and erase-to-end: one line, rewritten in place.
        let _ = write!(stderr, "\rflightrec: {line}\x1b[K");
        if wait.recv_timeout(EVERY) != Err(mpsc::RecvTimeoutError::Timeout) {
            let _ = write!(stderr, "\r\x1b[K");
            return;
        }
    }
}

/// A progress line for work counted in inputs, as a callback `(done, total)`: redrawn at most
/// every [`EVERY`] once the work has lasted [`QUIET_FOR`], when stderr is a terminal; call
/// [`Counter::finish`] to erase it.
pub struct Counter {
    what: &'static str,
    started: std::time::Instant,
    drawn: Option<std::time::Instant>,
    terminal: bool,
}

impl Counter {
    /// A counter that says `flightrec: {what} input {done} of {total} ({percent}%)`.
    pub fn new(what: &'static str) -> Counter {
        Counter {
            what,
            started: std::time::Instant::now(),
            drawn: None,
            terminal: std::io::stderr().is_terminal(),
        }
    }

    /// Reports `done` of `total`.
    pub fn update(&mut self, done: u64, total: u64) {
        let now = std::time::Instant::now();
        if !self.terminal
            || now.duration_since(self.started) < QUIET_FOR
            || self.drawn.is_some_and(|at| now.duration_since(at) < EVERY)
        {
            return;
        }
        self.drawn = Some(now);
        let line = progress_line(self.what, done, total);
        let _ = write!(std::io::stderr(), "\rflightrec: {line}\x1b[K");
    }

    /// Erases the line, if one was drawn.
    pub fn finish(&mut self) {
        if self.drawn.take().is_some() {
            let _ = write!(std::io::stderr(), "\r\x1b[K");
        }
    }
}
