//! The demo service: the ledger fed by seeded traffic at a steady rate, with two worker threads
//! that trace, recording everything. It runs until the ledger's latent bug kills it.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use flightrec_recorder::{Builder, Level, RecorderError, Tracer};

use super::ledger::{Ledger, LedgerInput};
use super::traffic::Traffic;

/// How to run the service.
#[derive(Clone, Debug)]
pub struct ServiceOptions {
    /// Seed of the traffic.
    pub seed: u64,
    /// Ring file to create.
    pub ring: PathBuf,
    /// Inputs per second; 0 for as fast as possible.
    pub rate: u64,
    /// Stop cleanly after this many inputs (for tests); `None` runs until the crash.
    pub max_inputs: Option<u64>,
    /// Panic after this many inputs, long before the ledger's own bug (for tests of
    /// supervisors, which need crashes that come quickly and leave a small state).
    pub crash_after: Option<u64>,
}

/// The recorder settings of the demo: small enough for a laptop's /dev/shm, large enough to
/// keep the inputs from the bug to the crash.
pub fn recorder_settings() -> Builder {
    Builder::new()
        .input_lane_bytes(8 << 20)
        .trace_lanes(4)
        .trace_lane_bytes(256 << 10)
        .state_capacity(4 << 20)
        .checkpoint_every_inputs(50_000)
}

/// Runs the service. Returns only if `max_inputs` is reached (or the ring cannot be created);
/// otherwise the ledger's audit (or `crash_after`) panics and the panic unwinds out of the caller.
pub fn run(options: &ServiceOptions) -> Result<u64, RecorderError> {
    let mut recorded = recorder_settings()
        .path(&options.ring)
        .build(Ledger::default())?;
    let tracer = recorded.tracer();
    let applied = Arc::new(AtomicU64::new(0));
    let _workers = Workers::start(&tracer, &applied);
    tracer.event(Level::Info, "ledger service started");
    let pace = Pacer::new(options.rate);
    for (n, input) in Traffic::new(options.seed).enumerate() {
        let n = n as u64;
        if options.max_inputs.is_some_and(|max| n >= max) {
            break;
        }
        if options.crash_after == Some(n) {
            panic!("injected crash after {n} inputs (--crash-after)");
        }
        pace.wait(n);
        let tick = recorded.apply(&input);
        applied.store(n + 1, Ordering::Relaxed);
        match input {
            LedgerInput::Audit => flightrec_recorder::event!(
                tracer,
                Level::Info,
                "audit passed at input {}",
                tick.seq
            ),
            LedgerInput::Transfer { amount, .. } if amount > 24_900 => {
                flightrec_recorder::event!(
                    tracer,
                    Level::Debug,
                    "large transfer of {amount} cents at input {}",
                    tick.seq
                )
            }
            _ => {}
        }
    }
    let inputs = recorded.inputs();
    recorded.finish();
    Ok(inputs)
}

/// Sleeps so that input `n` is applied no earlier than `n / rate` seconds after the start.
struct Pacer {
    start: Instant,
    rate: u64,
}

impl Pacer {
    fn new(rate: u64) -> Pacer {
        Pacer {
            start: Instant::now(),
            rate,
        }
    }

    fn wait(&self, n: u64) {
        if self.rate == 0 || n % 1000 != 0 {
            return;
        }
        let due = Duration::from_secs_f64(n as f64 / self.rate as f64);
        if let Some(ahead) = due.checked_sub(self.start.elapsed()) {
            std::thread::sleep(ahead);
        }
    }
}

/// Two background threads that trace what they see: the settlement batcher and the reporter.
struct Workers {
    threads: Vec<std::thread::JoinHandle<()>>,
    stop: Arc<std::sync::atomic::AtomicBool>,
}

impl Workers {
    fn start(tracer: &Tracer, applied: &Arc<AtomicU64>) -> Workers {
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let spawn = |name: &str, period: Duration, report: fn(&Tracer, u64, u64)| {
            let (tracer, applied, stop) = (tracer.clone(), Arc::clone(applied), Arc::clone(&stop));
            std::thread::Builder::new()
                .name(name.into())
                .spawn(move || {
                    let mut round = 0;
                    while !stop.load(Ordering::Relaxed) {
                        std::thread::sleep(period);
                        round += 1;
                        report(&tracer, round, applied.load(Ordering::Relaxed));
                    }
                })
                .expect("spawn a demo worker thread")
        };
        let threads = vec![
            spawn(
                "settlement",
                Duration::from_millis(5),
                |t, round, applied| {
                    flightrec_recorder::event!(
                        t,
                        Level::Info,
                        "settled batch {round} ({applied} inputs applied)"
                    )
                },
            ),
            spawn(
                "reporter",
                Duration::from_millis(50),
                |t, round, applied| {
                    flightrec_recorder::event!(
                        t,
                        Level::Debug,
                        "report {round}: {applied} inputs so far"
                    )
                },
            ),
        ];
        Workers { threads, stop }
    }
}

impl Drop for Workers {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}
