//! How far opening and replaying a file has come, shared with whoever shows it (a loading screen,
//! a progress bar) while the work runs on another thread.

use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};

/// What the work is doing now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stage {
    /// Not started.
    Waiting,
    /// Reading and checking every record of the file.
    Recovering,
    /// Re-applying the inputs; see [`Progress::inputs`].
    Replaying,
    /// Finished, or failed.
    Done,
}

/// Progress counters, written by the replay and read from any thread. Updated at the replay's
/// stops (snapshots and checkpoints), a few milliseconds of work apart, so it costs nothing
/// measurable.
#[derive(Debug, Default)]
pub struct Progress {
    stage: AtomicU8,
    done: AtomicU64,
    total: AtomicU64,
}

impl Progress {
    /// What the work is doing now.
    pub fn stage(&self) -> Stage {
        match self.stage.load(Ordering::Relaxed) {
            0 => Stage::Waiting,
            1 => Stage::Recovering,
            2 => Stage::Replaying,
            _ => Stage::Done,
        }
    }

    /// Inputs replayed so far, and in all.
    pub fn inputs(&self) -> (u64, u64) {
        (
            self.done.load(Ordering::Relaxed),
            self.total.load(Ordering::Relaxed),
        )
    }

    /// The stage in a few words, with the count while replaying: what a loading screen or a
    /// progress line shows.
    pub fn describe(&self) -> String {
        match self.stage() {
            Stage::Waiting | Stage::Recovering => "reading and checking every record".into(),
            Stage::Replaying | Stage::Done => {
                let (done, total) = self.inputs();
                progress_line("replaying", done, total)
            }
        }
    }

    pub(crate) fn enter(&self, stage: Stage) {
        let code = match stage {
            Stage::Waiting => 0,
            Stage::Recovering => 1,
            Stage::Replaying => 2,
            Stage::Done => 3,
        };
        self.stage.store(code, Ordering::Relaxed);
    }

    pub(crate) fn replaying(&self, total: usize) {
        self.total.store(total as u64, Ordering::Relaxed);
        self.done.store(0, Ordering::Relaxed);
        self.enter(Stage::Replaying);
    }

    pub(crate) fn replayed(&self, done: usize) {
        self.done.store(done as u64, Ordering::Relaxed);
    }
}

/// `{what} input {done} of {total} ({percent}%)`: work counted in inputs, in words.
pub fn progress_line(what: &str, done: u64, total: u64) -> String {
    let percent = (done.saturating_mul(100)).checked_div(total).unwrap_or(100);
    format!("{what} input {done} of {total} ({percent}%)")
}

#[cfg(test)]
mod tests {
    use super::{Progress, Stage};

    #[test]
    fn stages_and_counts_read_back() {
        let progress = Progress::default();
        assert_eq!(progress.stage(), Stage::Waiting);
        progress.enter(Stage::Recovering);
        assert_eq!(progress.stage(), Stage::Recovering);
        progress.replaying(10);
        progress.replayed(4);
        assert_eq!(
            (progress.stage(), progress.inputs()),
            (Stage::Replaying, (4, 10))
        );
        progress.enter(Stage::Done);
        assert_eq!(progress.stage(), Stage::Done);
    }
}
