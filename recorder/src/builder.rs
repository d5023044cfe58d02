//! Settings of a recorder, with defaults and environment overrides.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use flightrec_schemas::header::{HeaderInfo, LaneKind, LayoutPlan};
use flightrec_schemas::layout::{lane_control, FORMAT_VERSION, MAX_LANES, SLOT_SIZE};
use flightrec_schemas::Machine;

use crate::counters::Counters;
use crate::error::RecorderError;
use crate::file::{LaneMemory, RingFile};
use crate::recorded::Recorded;
use crate::shared::Shared;

/// Environment variable naming the ring file to create; it wins over every other path setting.
/// `flightrec run` hands services their path through it.
pub const ENV_PATH: &str = "FLIGHTREC_PATH";
/// Environment variable naming the directory for ring files with generated names.
pub const ENV_DIR: &str = "FLIGHTREC_DIR";

/// Configures and creates a recorder. Every setting has a default and an environment override,
/// and the environment wins, so operators can resize a ring without a rebuild.
///
/// ```
/// # use flightrec_recorder::doc_example::Counter;
/// use flightrec_recorder::Builder;
/// use std::time::Duration;
/// let dir = std::env::temp_dir().join(format!("flightrec-doc-builder-{}", std::process::id()));
/// let mut recorded = Builder::new()
///     .dir(&dir)
///     .input_lane_bytes(1 << 20)
///     .checkpoint_every_inputs(10_000)
///     .checkpoint_every(Duration::from_secs(1))
///     .build(Counter::default())?;
/// recorded.apply(&3);
/// assert_eq!(recorded.machine().total, 3);
/// # drop(recorded); std::fs::remove_dir_all(&dir).unwrap();
/// # Ok::<(), flightrec_recorder::RecorderError>(())
/// ```
#[derive(Clone, Debug)]
pub struct Builder {
    path: Option<PathBuf>,
    dir: Option<PathBuf>,
    input_lane_bytes: u64,
    trace_lanes: u32,
    trace_lane_bytes: u64,
    checkpoint_every_inputs: u64,
    checkpoint_every: Duration,
    state_capacity: u64,
    crash_capture: bool,
    counters: bool,
}

impl Default for Builder {
    fn default() -> Self {
        Builder::new()
    }
}

impl Builder {
    /// The defaults: 16 MiB of inputs, 8 trace lanes of 1 MiB, a checkpoint every 100,000
    /// inputs or 10 seconds, states up to 16 MiB, crash capture and counters on, and the file in
    /// `/dev/shm` (or the temporary directory where there is no `/dev/shm`).
    pub fn new() -> Builder {
        Builder {
            path: None,
            dir: None,
            input_lane_bytes: 16 << 20,
            trace_lanes: 8,
            trace_lane_bytes: 1 << 20,
            checkpoint_every_inputs: 100_000,
            checkpoint_every: Duration::from_secs(10),
            state_capacity: 16 << 20,
            crash_capture: true,
            counters: true,
        }
    }

    /// The ring file to create; it must not exist. Env: `FLIGHTREC_PATH`.
    pub fn path(mut self, path: impl Into<PathBuf>) -> Self {
        self.path = Some(path.into());
        self
    }

    /// Directory for a generated name `MACHINE-PID-UNIXSECS.ring`, created if missing.
    /// Default `/dev/shm`. Env: `FLIGHTREC_DIR`.
    pub fn dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.dir = Some(dir.into());
        self
    }

    /// Bytes for the input lane, rounded down to a power of two of 64-byte slots. Default
    /// 16 MiB. Env: `FLIGHTREC_INPUT_LANE_BYTES` (suffixes K, M, G).
    pub fn input_lane_bytes(mut self, bytes: u64) -> Self {
        self.input_lane_bytes = bytes;
        self
    }

    /// Number of trace lanes, i.e. of threads that can trace at once. Default 8.
    /// Env: `FLIGHTREC_TRACE_LANES`.
    pub fn trace_lanes(mut self, lanes: u32) -> Self {
        self.trace_lanes = lanes;
        self
    }

    /// Bytes per trace lane. Default 1 MiB. Env: `FLIGHTREC_TRACE_LANE_BYTES`.
    pub fn trace_lane_bytes(mut self, bytes: u64) -> Self {
        self.trace_lane_bytes = bytes;
        self
    }

    /// Inputs between checkpoints. Default 100,000. Env: `FLIGHTREC_CHECKPOINT_INPUTS`.
    /// A checkpoint is also taken whenever the input lane would otherwise overwrite inputs
    /// that the newest checkpoint needs.
    pub fn checkpoint_every_inputs(mut self, inputs: u64) -> Self {
        self.checkpoint_every_inputs = inputs;
        self
    }

    /// Longest time between checkpoints (checked when an input arrives). Default 10 s.
    /// Env: `FLIGHTREC_CHECKPOINT_MS`.
    pub fn checkpoint_every(mut self, interval: Duration) -> Self {
        self.checkpoint_every = interval;
        self
    }

    /// Largest encoded state a checkpoint holds (rounded up to fill whole pages); two such
    /// slots are reserved. Default 16 MiB.
    /// Env: `FLIGHTREC_STATE_CAPACITY`.
    pub fn state_capacity(mut self, bytes: u64) -> Self {
        self.state_capacity = bytes;
        self
    }

    /// Whether to install the panic hook and fatal-signal handlers. Default on.
    pub fn crash_capture(mut self, on: bool) -> Self {
        self.crash_capture = on;
        self
    }

    /// Whether to read perf counters at checkpoints. Default on.
    pub fn counters(mut self, on: bool) -> Self {
        self.counters = on;
        self
    }

    fn with_env(mut self) -> Result<Self, RecorderError> {
        if let Some(path) = std::env::var_os(ENV_PATH).filter(|p| !p.is_empty()) {
            self.path = Some(path.into());
        }
        if let Some(dir) = std::env::var_os(ENV_DIR).filter(|d| !d.is_empty()) {
            self.dir = Some(dir.into());
        }
        override_size("FLIGHTREC_INPUT_LANE_BYTES", &mut self.input_lane_bytes)?;
        override_size("FLIGHTREC_TRACE_LANE_BYTES", &mut self.trace_lane_bytes)?;
        override_size("FLIGHTREC_STATE_CAPACITY", &mut self.state_capacity)?;
        override_size(
            "FLIGHTREC_CHECKPOINT_INPUTS",
            &mut self.checkpoint_every_inputs,
        )?;
        let mut lanes = self.trace_lanes as u64;
        override_size("FLIGHTREC_TRACE_LANES", &mut lanes)?;
        self.trace_lanes = lanes.min(u32::MAX as u64) as u32;
        let mut ms = self.checkpoint_every.as_millis() as u64;
        override_size("FLIGHTREC_CHECKPOINT_MS", &mut ms)?;
        self.checkpoint_every = Duration::from_millis(ms);
        Ok(self)
    }

    fn plan(&self) -> Result<LayoutPlan, RecorderError> {
        let config = |msg: String| Err(RecorderError::Config(msg));
        if self.trace_lanes >= MAX_LANES {
            return config(format!(
                "{} trace lanes; at most {}",
                self.trace_lanes,
                MAX_LANES - 1
            ));
        }
        if self.checkpoint_every_inputs == 0 {
            return config("checkpoint_every_inputs must be at least 1".into());
        }
        Ok(LayoutPlan {
            input_slots: slots("input lane", self.input_lane_bytes)?,
            trace_lanes: self.trace_lanes,
            trace_slots: slots("trace lane", self.trace_lane_bytes)?,
            state_capacity: self.state_capacity.max(64),
        })
    }

    /// The path the file will be created at.
    fn resolve_path(&self, machine: &str) -> Result<PathBuf, RecorderError> {
        if let Some(path) = &self.path {
            return Ok(path.clone());
        }
        let dir = self.dir.clone().unwrap_or_else(default_dir);
        std::fs::create_dir_all(&dir).map_err(|error| RecorderError::Io {
            path: dir.clone(),
            error,
        })?;
        let secs = crate::clock::unix_ns() / 1_000_000_000;
        Ok(dir.join(format!("{machine}-{}-{secs}.ring", std::process::id())))
    }

    /// Creates the ring file and starts recording `machine`, taking its first checkpoint.
    pub fn build<M: Machine>(self, machine: M) -> Result<Recorded<M>, RecorderError> {
        let settings = self.with_env()?;
        let plan = settings.plan()?;
        check_machine_name(M::NAME)?;
        let path = settings.resolve_path(M::NAME)?;
        let (lanes, checkpoint_offset, checkpoint_slot_size, file_size) = plan.place();
        let file = Arc::new(RingFile::create(&path, file_size)?);
        let clock = crate::clock::calibrate();
        let pid = std::process::id();
        let info = HeaderInfo {
            format_version: FORMAT_VERSION,
            file_size,
            machine_name: M::NAME.to_owned(),
            machine_version: M::VERSION,
            pid,
            process_start: flightrec_schemas::process::start_ticks(pid).unwrap_or(0),
            created_unix_ns: crate::clock::unix_ns(),
            hostname: nix::unistd::gethostname()
                .map(|h| h.to_string_lossy().into_owned())
                .unwrap_or_default(),
            clock,
            lanes: lanes.clone(),
            checkpoint_offset,
            checkpoint_slot_size,
            checkpoint_every_inputs: settings.checkpoint_every_inputs.min(u32::MAX as u64) as u32,
            checkpoint_every_ms: settings.checkpoint_every.as_millis() as u64,
        };
        file.write_bytes(0, &info.encode());
        let input = LaneMemory::new(&file, &lanes[0]);
        input
            .control(lane_control::OWNER)
            .store(pid as u64, std::sync::atomic::Ordering::Relaxed);
        crate::trace::store_name(&input, "input");
        let trace_lanes = lanes
            .into_iter()
            .filter(|l| l.kind == LaneKind::Trace)
            .collect();
        let shared = Arc::new(Shared::new(Arc::clone(&file), clock, trace_lanes));
        let counters = if settings.counters {
            Counters::open()
        } else {
            Counters::none()
        };
        let cadence = crate::recorded::Cadence {
            inputs: settings.checkpoint_every_inputs,
            ticks: clock
                .ticks_for_ns(settings.checkpoint_every.as_nanos().min(u64::MAX as u128) as u64),
        };
        let recorded = Recorded::start(
            machine,
            shared,
            input,
            checkpoint_offset,
            checkpoint_slot_size,
            counters,
            cadence,
        );
        if settings.crash_capture {
            crate::crash::install();
            crate::crash::register(file.base_ptr());
        }
        Ok(recorded)
    }
}

/// Slots for a lane of `bytes`: the largest power of two of 64-byte slots that `bytes` holds
/// (the lane's 128-byte control block comes on top), at least 64 (a 4 KiB lane).
fn slots(what: &str, bytes: u64) -> Result<u64, RecorderError> {
    let usable = bytes / SLOT_SIZE;
    if usable < 64 {
        return Err(RecorderError::Config(format!(
            "{what} of {bytes} bytes is too small; at least 4 KiB"
        )));
    }
    Ok(1 << usable.ilog2())
}

fn default_dir() -> PathBuf {
    let shm = Path::new("/dev/shm");
    if shm.is_dir() {
        shm.to_owned()
    } else {
        std::env::temp_dir()
    }
}

/// Replaces `value` with the environment variable `name`, if set: a number with an optional
/// K, M or G suffix (powers of 1024).
fn override_size(name: &str, value: &mut u64) -> Result<(), RecorderError> {
    let Ok(text) = std::env::var(name) else {
        return Ok(());
    };
    *value = parse_size(&text).ok_or_else(|| {
        RecorderError::Config(format!(
            "{name}={text:?} is not a size like 4096, 64K, 16M or 1G"
        ))
    })?;
    Ok(())
}

/// Parses `4096`, `64K`, `16M`, `1G` (powers of 1024; a trailing `B` or `iB` is allowed).
pub fn parse_size(text: &str) -> Option<u64> {
    let text = text.trim();
    let text = text
        .strip_suffix("iB")
        .or_else(|| text.strip_suffix('B'))
        .unwrap_or(text);
    let (digits, shift) = match text.char_indices().last()? {
        (i, 'k' | 'K') => (&text[..i], 10),
        (i, 'm' | 'M') => (&text[..i], 20),
        (i, 'g' | 'G') => (&text[..i], 30),
        _ => (text, 0),
    };
    digits.trim().parse::<u64>().ok()?.checked_mul(1 << shift)
}

/// A machine's name goes into the header, whole, and into default file names: it must be
/// non-empty, fit the header, and hold no '/' or control characters.
fn check_machine_name(name: &str) -> Result<(), RecorderError> {
    let max = flightrec_schemas::layout::MAX_MACHINE_NAME;
    let unsafe_char = |c: char| c == '/' || c.is_control();
    if name.is_empty() || name.len() > max || name.contains(unsafe_char) {
        return Err(RecorderError::Config(format!(
            "machine name {name:?} must be 1 to {max} bytes, without '/' or control characters"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::parse_size;

    #[test]
    fn sizes_parse_with_suffixes() {
        assert_eq!(parse_size("4096"), Some(4096));
        assert_eq!(parse_size("64K"), Some(64 << 10));
        assert_eq!(parse_size("16MiB"), Some(16 << 20));
        assert_eq!(parse_size("1g"), Some(1 << 30));
        assert_eq!(parse_size("lots"), None);
        assert_eq!(parse_size("99999999999999G"), None);
    }
}
