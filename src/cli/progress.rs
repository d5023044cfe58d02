//! Progress of long work on stderr, for a person at a terminal: opening a large ring file takes
//! seconds, and a silent command looks hung.

use std::io::{IsTerminal, Write};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::Duration;

use flightrec_replayer::{Progress, ReplayOptions, Stage};

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
        let line = match progress.stage() {
            Stage::Waiting | Stage::Recovering => "reading and checking every record".to_string(),
            Stage::Replaying | Stage::Done => {
                let (done, total) = progress.inputs();
                let percent = (done * 100).checked_div(total).unwrap_or(100);
                format!("replaying input {done} of {total} ({percent}%)")
            }
        };
        // `\r` and erase-to-end: one line, rewritten in place.
        let _ = write!(stderr, "\rflightrec: {line}\x1b[K");
        if wait.recv_timeout(EVERY) != Err(mpsc::RecvTimeoutError::Timeout) {
            let _ = write!(stderr, "\r\x1b[K");
            return;
        }
    }
}
