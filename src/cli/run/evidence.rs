//! The evidence of crashed instances: their rings exported (or kept whole) into the crash
//! directory by a background thread, under timestamped names, the oldest removed beyond K.
//!
//! One thread does the jobs one after another: an export replays the whole ring and computes a
//! diff per input, which can take minutes of CPU, and the restarted service needs the cores more
//! than a second export does. While it works, newer jobs wait in a queue of at most K (older
//! waiting jobs are superseded: they would be rotated out as soon as written).

use std::collections::VecDeque;
use std::os::unix::fs::DirBuilderExt as _;
use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::sync::mpsc::Sender;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::SystemTime;

use anyhow::Context as _;
use flightrec_replayer::export::{export_history, ExportSummary, HistoryExportOptions};
use flightrec_replayer::{History, ReplayOptions};
use flightrec_schemas::Machine;

use super::signals::{Event, Events};
use crate::cli::time::bytes;

/// Snapshot memory of a background replay: an export walks the history once, front to back, so
/// snapshots buy little, and the memory belongs to the service running beside it.
const EXPORT_SNAPSHOT_BUDGET: usize = 64 << 20;

/// What to do with the ring of a crashed instance.
#[derive(Clone, Debug)]
pub struct Job {
    /// The instance's pid, to name it in messages.
    pub pid: u32,
    /// Its ring file.
    pub ring: PathBuf,
    /// Where its evidence goes: an export (`.flightrec`) or the ring itself (`.ring`).
    pub out: PathBuf,
}

impl Job {
    fn exports(&self) -> bool {
        self.out.extension().is_some_and(|e| e == EXPORT_EXT)
    }
}

const EXPORT_EXT: &str = "flightrec";
const RING_EXT: &str = "ring";

/// The evidence's file name: `20260101T120000.123Z-LABEL-pidPID.EXT`, so that names sort in
/// the order of the crashes.
pub fn file_name(at: SystemTime, label: &str, pid: u32, export: bool) -> String {
    let stamp = humantime::format_rfc3339_millis(at)
        .to_string()
        .replace(['-', ':'], "");
    let ext = if export { EXPORT_EXT } else { RING_EXT };
    format!("{stamp}-{label}-pid{pid}.{ext}")
}

/// Length of the timestamp that starts every name, `20260101T120000.123Z`.
const STAMP_LEN: usize = 20;

/// The label of a name made by [`file_name`]; `None` for any other file.
fn label_of(name: &str) -> Option<&str> {
    let stem = name
        .strip_suffix(".flightrec")
        .or_else(|| name.strip_suffix(".ring"))?;
    let (stamp, rest) = stem.split_at_checked(STAMP_LEN)?;
    let (label, pid) = rest.strip_prefix('-')?.rsplit_once("-pid")?;
    let shape = stamp.bytes().enumerate().all(|(i, b)| match i {
        8 => b == b'T',
        15 => b == b'.',
        19 => b == b'Z',
        _ => b.is_ascii_digit(),
    });
    (shape && !label.is_empty() && pid.parse::<u32>().is_ok()).then_some(label)
}

/// A label safe in a file name: letters, digits, `-`, `_` and `.` kept, the rest `_`.
pub fn label(text: &str) -> String {
    let label: String = text
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "-_.".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    if label.is_empty() {
        "service".into()
    } else {
        label
    }
}

#[derive(Default)]
struct Queue {
    waiting: VecDeque<Job>,
    busy: Option<Job>,
    closing: bool,
}

struct Shared {
    queue: Mutex<Queue>,
    wake: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Queue> {
        // The worker catches nothing that could poison the lock but a bug; keep going anyway.
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The crash directory and the thread that fills it.
pub struct Keeper {
    dir: PathBuf,
    keep: usize,
    shared: Arc<Shared>,
}

impl Keeper {
    /// Starts the thread that exports rings of machine `M` into `dir`, keeping `keep` files per
    /// label; it sends [`Event::Idle`] to `events` once closed and done.
    pub fn start<M: Machine + Clone + 'static>(
        dir: PathBuf,
        keep: usize,
        events: Sender<Event>,
    ) -> anyhow::Result<Keeper> {
        let shared = Arc::new(Shared {
            queue: Mutex::default(),
            wake: Condvar::new(),
        });
        let worker = Worker {
            dir: dir.clone(),
            keep,
            shared: Arc::clone(&shared),
        };
        std::thread::Builder::new()
            .name("flightrec-export".into())
            .spawn(move || {
                let _idle = IdleWhenGone(events);
                worker.run::<M>();
            })
            .context("cannot start the export thread")?;
        Ok(Keeper { dir, keep, shared })
    }

    /// Where the evidence of instance `pid` labelled `label`, crashed now, goes.
    pub fn destination(&self, label: &str, pid: u32, export: bool) -> PathBuf {
        self.dir
            .join(file_name(SystemTime::now(), label, pid, export))
    }

    /// Queues a job; waiting jobs beyond K are superseded, their rings removed.
    pub fn submit(&self, job: Job) {
        let mut queue = self.shared.lock();
        queue.waiting.push_back(job);
        while queue.waiting.len() > self.keep {
            let Some(old) = queue.waiting.pop_front() else {
                break;
            };
            let _ = std::fs::remove_file(&old.ring);
            say!(
                "skipped the export of pid {}: {} newer crashes are kept",
                old.pid,
                self.keep
            );
        }
        self.shared.wake.notify_one();
    }

    /// Lets the queued jobs finish. A signal that would be forwarded (SIGINT, SIGTERM, SIGHUP,
    /// SIGQUIT) meanwhile stops waiting: the rings not yet exported are kept whole in the crash
    /// directory instead.
    pub fn finish(&self, events: &Events) {
        let left = {
            let mut queue = self.shared.lock();
            queue.closing = true;
            self.shared.wake.notify_one();
            queue.waiting.len() + usize::from(queue.busy.is_some())
        };
        if left > 0 {
            say!(
                "finishing {left} export(s) before exiting (SIGINT, SIGTERM, SIGHUP or \
                 SIGQUIT meanwhile keeps the ring files whole instead)"
            );
        }
        loop {
            match events.next(None) {
                Some(Event::Idle) | None => return,
                Some(event) if event.to_forward().is_some() => return self.abandon(),
                Some(_) => {}
            }
        }
    }

    /// Keeps the rings of unfinished jobs whole, since the process is about to exit.
    fn abandon(&self) {
        let jobs: Vec<Job> = {
            let mut queue = self.shared.lock();
            let waiting = std::mem::take(&mut queue.waiting);
            queue.busy.iter().cloned().chain(waiting).collect()
        };
        for job in jobs {
            remove_partial_export(&job.out);
            let ring_out = job.out.with_extension(RING_EXT);
            match keep_ring(&job.ring, &ring_out) {
                Ok(()) => say!(
                    "kept pid {}'s ring file as {} (export it with `flightrec export \
                     {} -o {}`)",
                    job.pid,
                    ring_out.display(),
                    ring_out.display(),
                    job.out.display()
                ),
                Err(error) => say!(
                    "pid {}'s ring file stays at {}: {error:#}",
                    job.pid,
                    job.ring.display()
                ),
            }
            rotate(&self.dir, &job.out, self.keep);
        }
    }
}

/// Sends [`Event::Idle`] when the export thread ends, whichever way: the supervisor waits for it.
struct IdleWhenGone(Sender<Event>);

impl Drop for IdleWhenGone {
    fn drop(&mut self) {
        let _ = self.0.send(Event::Idle);
    }
}

/// The thread's side.
struct Worker {
    dir: PathBuf,
    keep: usize,
    shared: Arc<Shared>,
}

impl Worker {
    fn run<M: Machine + Clone>(&self) {
        while let Some(job) = self.next_job() {
            // A bug met on one ring must not cost the evidence of the next ones.
            let done = std::panic::catch_unwind(AssertUnwindSafe(|| self.carry_out::<M>(&job)));
            if done.is_err() {
                say!(
                    "exporting pid {}'s ring panicked; its ring file stays at {}",
                    job.pid,
                    job.ring.display()
                );
            }
            rotate(&self.dir, &job.out, self.keep);
            self.shared.lock().busy = None;
        }
    }

    /// The next job, marked busy; `None` once closed and empty.
    fn next_job(&self) -> Option<Job> {
        let mut queue = self.shared.lock();
        loop {
            if let Some(job) = queue.waiting.pop_front() {
                queue.busy = Some(job.clone());
                return Some(job);
            }
            if queue.closing {
                return None;
            }
            queue = self
                .shared
                .wake
                .wait(queue)
                .unwrap_or_else(|e| e.into_inner());
        }
    }

    /// Exports the ring (or keeps it whole), and says how it went. A ring is removed only once
    /// its evidence is safely in the crash directory.
    fn carry_out<M: Machine + Clone>(&self, job: &Job) {
        // Owner only, like the ring files (0600): the evidence holds what they held.
        let created = std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.dir);
        if let Err(error) = created {
            say!(
                "cannot create {} ({error}); pid {}'s ring file stays at {}",
                self.dir.display(),
                job.pid,
                job.ring.display()
            );
            return;
        }
        if job.exports() {
            match export::<M>(&job.ring, &job.out) {
                Ok(summary) => {
                    let _ = std::fs::remove_file(&job.ring);
                    say!(
                        "wrote {} ({}; {} inputs, {} trace events)",
                        summary.path.display(),
                        bytes(summary.bytes),
                        summary.inputs,
                        summary.traces
                    );
                    return;
                }
                Err(error) => say!(
                    "cannot export pid {}'s ring ({error:#}); keeping the ring file",
                    job.pid
                ),
            }
        }
        let ring_out = job.out.with_extension(RING_EXT);
        if let Err(error) = keep_ring(&job.ring, &ring_out) {
            say!(
                "pid {}'s ring file stays at {}: {error:#}",
                job.pid,
                job.ring.display()
            );
        } else if job.exports() {
            say!("kept {}", ring_out.display());
        }
    }
}

/// Replays `ring` with machine `M` and writes its export to `out`.
fn export<M: Machine + Clone>(ring: &Path, out: &Path) -> anyhow::Result<ExportSummary> {
    let options = ReplayOptions {
        snapshot_budget: EXPORT_SNAPSHOT_BUDGET,
        ..ReplayOptions::default()
    };
    let mut history = History::<M>::open_with(ring, &options)?;
    let summary = export_history(
        &mut history,
        out,
        &HistoryExportOptions::default(),
        &mut |_, _| {},
    )?;
    Ok(summary)
}

/// Moves the ring file `from` to `to`: a rename where both are on one filesystem, else a copy
/// under a temporary name, renamed into place, and only then the original removed.
fn keep_ring(from: &Path, to: &Path) -> anyhow::Result<()> {
    if std::fs::rename(from, to).is_ok() {
        return Ok(());
    }
    let name = to
        .file_name()
        .map_or_else(|| "ring".into(), |n| n.to_string_lossy().into_owned());
    let temp = to.with_file_name(format!(".{name}.{}.tmp", std::process::id()));
    let copied = std::fs::copy(from, &temp)
        .and_then(|_| std::fs::rename(&temp, to))
        .with_context(|| format!("cannot copy it to {}", to.display()));
    if copied.is_err() {
        let _ = std::fs::remove_file(&temp);
    }
    copied?;
    std::fs::remove_file(from).with_context(|| format!("cannot remove {}", from.display()))
}

/// Removes what an export to `out` interrupted by the process's exit would leave: the export
/// writer's temporary file `.NAME.PID-N.tmp` beside it.
fn remove_partial_export(out: &Path) {
    let (Some(dir), Some(name)) = (out.parent(), out.file_name()) else {
        return;
    };
    let prefix = format!(".{}.{}-", name.to_string_lossy(), std::process::id());
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let file = entry.file_name();
        let file = file.to_string_lossy();
        if file.starts_with(&prefix) && file.ends_with(".tmp") {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

/// Keeps the newest `keep` files of `newest`'s label in its directory (exports and kept rings
/// alike), removing older ones. Other labels, and files not named by [`file_name`], are left
/// alone: several services may share the directory.
fn rotate(dir: &Path, newest: &Path, keep: usize) {
    let Some(label) = newest
        .file_name()
        .and_then(|n| n.to_str())
        .and_then(label_of)
    else {
        return;
    };
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let mut ours: Vec<(String, PathBuf)> = entries
        .flatten()
        .filter_map(|entry| {
            let name = entry.file_name().into_string().ok()?;
            (label_of(&name)? == label).then(|| (name, entry.path()))
        })
        .collect();
    ours.sort();
    let excess = ours.len().saturating_sub(keep);
    for (_, path) in ours.drain(..excess) {
        let _ = std::fs::remove_file(path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    #[test]
    fn names_sort_by_time_and_give_back_their_label() {
        let at = UNIX_EPOCH + Duration::from_millis(1_767_225_600_123);
        let name = file_name(at, "kv-store", 42, true);
        assert_eq!(name, "20260101T000000.123Z-kv-store-pid42.flightrec");
        assert_eq!(label_of(&name), Some("kv-store"));
        let later = file_name(at + Duration::from_millis(1), "kv-store", 7, false);
        assert!(later > name);
        assert_eq!(label_of(&later), Some("kv-store"));
        for other in [
            "notes.txt",
            "kv-store.flightrec",
            "20260101T000000.123Z-kv-store.flightrec",
            "2026010aT000000.123Z-kv-store-pid4.ring",
            "20260101T000000.123Z--pid4.ring",
            ".20260101T000000.123Z-kv-pid4.ring.9.tmp",
        ] {
            assert_eq!(label_of(other), None, "{other}");
        }
    }

    #[test]
    fn labels_are_safe_file_name_parts() {
        assert_eq!(label("ledger"), "ledger");
        assert_eq!(label("my service/v2"), "my_service_v2");
        assert_eq!(label(""), "service");
    }

    #[test]
    fn rotation_keeps_the_newest_of_one_label_and_touches_nothing_else() {
        let dir = tempfile::tempdir().unwrap();
        let start = UNIX_EPOCH + Duration::from_secs(1_767_225_600);
        let mut names = Vec::new();
        for (i, (label, export)) in [
            ("kv", true),
            ("other", true),
            ("kv", false),
            ("kv", true),
            ("kv", false),
        ]
        .into_iter()
        .enumerate()
        {
            let name = file_name(start + Duration::from_secs(i as u64), label, 1, export);
            std::fs::write(dir.path().join(&name), b"").unwrap();
            names.push(name);
        }
        std::fs::write(dir.path().join("README"), b"").unwrap();
        rotate(dir.path(), &dir.path().join(&names[4]), 2);
        let mut left: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        left.sort();
        let mut expected = vec![
            names[1].clone(),
            names[3].clone(),
            names[4].clone(),
            "README".into(),
        ];
        expected.sort();
        assert_eq!(left, expected);
    }

    #[test]
    fn a_kept_ring_is_moved_whole_and_the_original_removed() {
        let dir = tempfile::tempdir().unwrap();
        let from = dir.path().join("a.ring");
        std::fs::write(&from, b"ring bytes").unwrap();
        let to = dir.path().join("kept").join("b.ring");
        std::fs::create_dir(to.parent().unwrap()).unwrap();
        keep_ring(&from, &to).unwrap();
        assert_eq!(std::fs::read(&to).unwrap(), b"ring bytes");
        assert!(!from.exists());
        let missing = keep_ring(&from, &dir.path().join("c.ring"));
        assert!(missing.is_err());
    }
}
