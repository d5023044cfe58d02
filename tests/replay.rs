//! Replaying what the demo service leaves behind. The service runs as a child process on seeded
//! traffic, so this test knows every input it recorded: it is killed with SIGKILL at random
//! moments, or runs until its latent bug kills it, and the replayed history is checked input by
//! input and state by state against a ledger rebuilt here from the same traffic.
//!
//! Every ring file goes to a fresh temporary directory; nothing here touches `/dev/shm`.

use std::io::Read;
use std::ops::Range;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use flightrec::demo::{Ledger, LedgerInput, Traffic};
use flightrec::replayer::{recover_lane, Fate, History, Ring, DEFAULT_SNAPSHOT_BUDGET};
use flightrec::{Machine, Tick};
use rand::{Rng, SeedableRng};
use rand_pcg::Pcg64Mcg;
use tempfile::TempDir;

/// Services killed by [`killed_services_replay_exactly_the_traffic_they_were_given`].
const KILL_RUNS: usize = 8;
/// Seeds the traffic seeds, rates and delays of the kill runs, so a failure repeats.
const PLAN_SEED: u64 = 0x5eed_f11e;
/// Paced rates (inputs per second). Even the longest delay ends far from the crash: at 150,000
/// inputs per second, 1.5 s is 225,000 inputs, and the latent bug kills near input 380,000.
const PACED_RATES: [u64; 2] = [50_000, 150_000];
const PACED_DELAY_MS: Range<u64> = 20..1_500;
/// Delays of unpaced (`--rate 0`) runs. The debug-built service records about 1.7 million
/// inputs a second on a 2-core guest, so 60 ms is about 100,000 inputs: far from the crash.
const UNPACED_DELAY_MS: Range<u64> = 20..60;
/// The longest wait for the service to record its first input, or to die of its bug.
const TIMEOUT: Duration = Duration::from_secs(60);

/// The input whose audit finds the broken books, for seed 42 (see tests/cli.rs).
const SEED_42_CRASH_INPUT: u64 = 379_999;
/// Account ids are 16-bit: this opening reuses id 0 and destroys that account's balance.
const FIRST_WRAPPED_OPEN: usize = 65_537;

// ---------------------------------------------------------------------------------------------
// Running the service

/// `flightrec demo --service` recording `seed`'s traffic at `rate` into `ring`, with no recorder
/// settings inherited from the environment (they would change the ring's sizes).
fn service(seed: u64, rate: u64, ring: &Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_flightrec"));
    command
        .args(["demo", "--service", "--seed", &seed.to_string()])
        .args(["--rate", &rate.to_string(), "--ring"])
        .arg(ring)
        .env("RUST_BACKTRACE", "0")
        .stdin(Stdio::null())
        .stdout(Stdio::null());
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("FLIGHTREC_") {
            command.env_remove(key);
        }
    }
    command
}

/// Kills and reaps the service if the test fails before it does. `Child` knows when it has been
/// reaped, so this never signals a recycled pid.
struct Reaped(Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Waits until the service has committed an input to `ring`; fails if it exits first.
fn wait_for_first_input(child: &mut Child, ring: &Path) {
    let deadline = Instant::now() + TIMEOUT;
    loop {
        if let Some(status) = child.try_wait().expect("poll the service") {
            panic!("the service ended before recording anything: {status:?}");
        }
        // The file may not exist yet, or its header may still be arriving.
        if let Ok(opened) = Ring::open(ring) {
            if recover_lane(&opened, &opened.header().lanes[0]).recorded > 0 {
                return;
            }
        }
        assert!(
            Instant::now() < deadline,
            "no input recorded in {TIMEOUT:?}"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// Waits for the service to end on its own, killing it after [`TIMEOUT`].
fn wait_for_exit(child: &mut Child) -> ExitStatus {
    let deadline = Instant::now() + TIMEOUT;
    loop {
        if let Some(status) = child.try_wait().expect("poll the service") {
            return status;
        }
        assert!(
            Instant::now() < deadline,
            "the service ran past {TIMEOUT:?}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

// ---------------------------------------------------------------------------------------------
// The ledger rebuilt from the traffic

/// Applies `input` to the ledger rebuilt here. Audits are skipped: they change nothing, and the
/// one that killed the service would panic here too. The ledger ignores the tick's time.
fn apply(ledger: &mut Ledger, input: &LedgerInput, seq: u64) {
    if *input != LedgerInput::Audit {
        ledger.apply(input, Tick { seq, unix_ns: 0 });
    }
}

/// A short description of a ledger, for failure messages (the whole ledger is megabytes).
fn outline(ledger: &Ledger) -> String {
    format!(
        "{} accounts, deposited {}, withdrawn {}, fees {}, refused {}, held {}",
        ledger.accounts.len(),
        ledger.deposited,
        ledger.withdrawn,
        ledger.fees,
        ledger.refused,
        ledger.held()
    )
}

fn assert_same_ledger(replayed: &Ledger, expected: &Ledger, what: &str) {
    assert!(
        replayed == expected,
        "{what}: the replayed ledger ({}) is not the one the traffic gives ({})",
        outline(replayed),
        outline(expected)
    );
}

/// Checks `history` against `seed`'s traffic applied to a fresh ledger: the base checkpoint's
/// state, the sequence number and value of every retained input, and the replayed state after
/// each input at the positions `probes`.
fn check_against_traffic(history: &mut History<Ledger>, seed: u64, probes: &[usize]) {
    let mut traffic = Traffic::new(seed);
    let mut ledger = Ledger::default();
    let base = history.base_seq();
    for (seq, input) in (0..base).zip(traffic.by_ref()) {
        apply(&mut ledger, &input, seq);
    }
    assert_same_ledger(history.base_state(), &ledger, "base checkpoint");
    let mut expected = Vec::new();
    for (index, (event, input)) in history.inputs().zip(traffic.by_ref()).enumerate() {
        let seq = base + index as u64;
        assert_eq!(event.seq, seq, "the input at position {index}");
        assert_eq!(event.input, input, "input {seq}");
        apply(&mut ledger, &input, seq);
        if probes.contains(&index) {
            expected.push((index, ledger.clone()));
        }
    }
    for (index, ledger) in expected {
        let replayed = history.state_after(index).expect("a retained position");
        assert_same_ledger(replayed, &ledger, &format!("after position {index}"));
    }
}

/// Sequence number of the `n`-th (1-based) account opening in `seed`'s traffic.
fn nth_open(seed: u64, n: usize) -> u64 {
    let (seq, _) = Traffic::new(seed)
        .enumerate()
        .filter(|(_, input)| matches!(input, LedgerInput::Open { .. }))
        .nth(n - 1)
        .expect("the traffic never ends");
    seq as u64
}

// ---------------------------------------------------------------------------------------------
// Killed with SIGKILL

#[derive(Debug)]
struct KillRun {
    seed: u64,
    rate: u64,
    delay: Duration,
}

/// The runs: varied seeds, unpaced or paced, killed between 20 ms and 1.5 s after their first
/// input, all before the latent bug could kill them. Unpaced runs die in the middle of writing
/// records; paced ones mostly while their pacer sleeps (every 1,000 inputs).
fn kill_plan() -> Vec<KillRun> {
    let mut rng = Pcg64Mcg::seed_from_u64(PLAN_SEED);
    (0..KILL_RUNS)
        .map(|run| {
            let (rate, delay_ms) = if run % 3 == 0 {
                (0, rng.gen_range(UNPACED_DELAY_MS))
            } else {
                let rate = PACED_RATES[rng.gen_range(0..PACED_RATES.len())];
                (rate, rng.gen_range(PACED_DELAY_MS))
            };
            KillRun {
                seed: rng.gen_range(0..10_000),
                rate,
                delay: Duration::from_millis(delay_ms),
            }
        })
        .collect()
}

/// Starts the service, kills it with SIGKILL `delay` after its first input, and reaps it.
fn record_then_kill(run: &KillRun, ring: &Path) {
    let mut child = Reaped(
        service(run.seed, run.rate, ring)
            .stderr(Stdio::null())
            .spawn()
            .expect("start the service"),
    );
    wait_for_first_input(&mut child.0, ring);
    std::thread::sleep(run.delay);
    child.0.kill().expect("SIGKILL the service");
    let status = child.0.wait().expect("reap the service");
    assert_eq!(
        status.signal(),
        Some(libc::SIGKILL),
        "{run:?} ended otherwise: {status:?}"
    );
}

/// Replays one killed run. Returns the number of hash checks made after the base checkpoint.
fn check_killed_run(run: &KillRun, ring: &Path, rng: &mut Pcg64Mcg) -> usize {
    let mut history = History::<Ledger>::open(ring).unwrap_or_else(|e| panic!("{run:?}: {e}"));
    assert_eq!(history.summary().status, Fate::Died, "{run:?}");
    let checks = check_verification(run, &history);
    let probes = match history.len() {
        0 => Vec::new(),
        len => vec![0, rng.gen_range(0..len), len - 1],
    };
    check_against_traffic(&mut history, run.seed, &probes);
    let (base, len) = (history.base_seq(), history.len());
    eprintln!(
        "{run:?}: replayed inputs {base}..{} ({checks} hash checks)",
        base + len as u64
    );
    checks
}

/// Verification passed, having compared the base checkpoint (re-encoded) and every later one
/// inside the replayed span, none skipped. Returns the number of later ones.
fn check_verification(run: &KillRun, history: &History<Ledger>) -> usize {
    let verification = history.verification();
    assert!(
        verification.passed(),
        "{run:?}: {:?}",
        verification.divergence
    );
    let later = history.base_seq() + 1..=history.base_seq() + history.len() as u64;
    let checkpoints = &history.summary().checkpoints;
    let inside = checkpoints
        .iter()
        .filter(|c| later.contains(&c.seq))
        .count();
    assert_eq!(
        verification.checks.len(),
        1 + inside,
        "{run:?}: {verification:?}"
    );
    inside
}

/// Whatever moment SIGKILL strikes, the file says the writer died, its retained inputs are
/// exactly the traffic's, and replaying them from the base checkpoint rebuilds exactly the
/// ledger that the traffic gives, matching every recorded state hash on the way.
#[test]
fn killed_services_replay_exactly_the_traffic_they_were_given() {
    let mut rng = Pcg64Mcg::seed_from_u64(PLAN_SEED ^ 1);
    let mut checks = 0;
    for run in kill_plan() {
        let tmp = TempDir::new().expect("tempdir");
        let ring = tmp.path().join("killed.ring");
        record_then_kill(&run, &ring);
        checks += check_killed_run(&run, &ring, &mut rng);
    }
    // Otherwise no run would have checked a state that replay computed.
    assert!(
        checks > 0,
        "no run replayed across a checkpoint after its base"
    );
}

// ---------------------------------------------------------------------------------------------
// Killed by its own bug

/// Runs seed 42 unpaced until its audit panics; returns the service's stderr.
fn record_until_the_bug_kills(ring: &Path) -> String {
    let spawned = service(42, 0, ring).stderr(Stdio::piped()).spawn();
    let mut child = Reaped(spawned.expect("start the service"));
    let mut pipe = child.0.stderr.take().expect("piped stderr");
    // Read on a thread so the service never blocks on a full pipe.
    let reader = std::thread::spawn(move || {
        let mut text = String::new();
        pipe.read_to_string(&mut text).map(|_| text)
    });
    let status = wait_for_exit(&mut child.0);
    let stderr = reader.join().expect("reader thread").expect("UTF-8 stderr");
    assert_eq!(
        status.code(),
        Some(101),
        "the service did not panic: {status:?}\n{stderr}"
    );
    stderr
}

/// Position of the first input after which the books no longer balance. Once an account is
/// overwritten its balance is gone for good (held only falls behind expected), so `balanced`
/// goes from true to false once: bisection finds the change in about 17 states, where a linear
/// scan would sum 65,536 balances 80,000 times.
fn first_unbalanced(history: &mut History<Ledger>) -> usize {
    let (mut low, mut high) = (0, history.len());
    while low < high {
        let mid = low + (high - low) / 2;
        if history.state_after(mid).expect("in range").balanced() {
            low = mid + 1;
        } else {
            high = mid;
        }
    }
    low
}

/// Checks, every `step` inputs, that the books balance before `broke` and not from it on: the
/// premise of [`first_unbalanced`].
fn check_balanced_until(history: &mut History<Ledger>, broke: usize, step: usize) {
    assert!(
        history.base_state().balanced(),
        "the base checkpoint is unbalanced"
    );
    for index in (0..history.len()).step_by(step).chain([broke - 1, broke]) {
        let balanced = history.state_after(index).expect("in range").balanced();
        assert_eq!(balanced, index < broke, "balanced after position {index}");
    }
}

/// The service's own crash, replayed: the last retained input is the audit that panicked, its
/// replay panics the same way, and the input that broke the books can be found among the
/// replayed states: the opening of the 65,537th account, which took over account 0.
#[test]
fn replay_finds_the_input_that_broke_the_books() {
    let tmp = TempDir::new().expect("tempdir");
    let ring = tmp.path().join("seed42.ring");
    let stderr = record_until_the_bug_kills(&ring);
    assert!(
        stderr.contains(&format!("audit failed at input {SEED_42_CRASH_INPUT}")),
        "{stderr}"
    );

    let mut history = History::<Ledger>::open(&ring).expect("replay the crashed run");
    assert_eq!(history.summary().status, Fate::Crashed);
    let verification = history.verification();
    assert!(verification.passed(), "{:?}", verification.divergence);
    assert!(
        !verification.checks.is_empty(),
        "no checkpoint between base and crash"
    );
    // Each snapshot is a ledger of some 60,000 accounts: the default budget must still hold.
    let snapshot_bytes = history.snapshot_bytes();
    assert!(
        snapshot_bytes <= DEFAULT_SNAPSHOT_BUDGET,
        "{snapshot_bytes} bytes"
    );

    let last = history.len() - 1;
    let event = history.input(last).expect("the last input");
    assert_eq!(
        (event.seq, &event.input),
        (SEED_42_CRASH_INPUT, &LedgerInput::Audit)
    );
    let panics = history.panics();
    assert_eq!(panics.len(), 1, "{panics:?}");
    assert_eq!(
        (panics[0].index, panics[0].seq),
        (last, SEED_42_CRASH_INPUT)
    );
    assert!(
        panics[0].message.contains("audit failed"),
        "{}",
        panics[0].message
    );

    let broke = first_unbalanced(&mut history);
    assert!(
        broke > 0 && broke < history.len(),
        "the books never broke ({broke})"
    );
    check_balanced_until(&mut history, broke, 1_000);
    let culprit = history.input(broke).expect("in range");
    assert!(
        matches!(culprit.input, LedgerInput::Open { .. }),
        "{culprit:?}"
    );
    assert_eq!(culprit.seq, nth_open(42, FIRST_WRAPPED_OPEN));
    // What it changed: account 0 was replaced, its operations counted from 1 again.
    let changes = history.diff(broke, 10).expect("in range");
    let paths: Vec<String> = changes.iter().map(|c| c.path.to_string()).collect();
    assert!(
        paths.contains(&"accounts[0].operations".to_owned()),
        "{paths:?}"
    );
    check_against_traffic(&mut history, 42, &[broke - 1, broke, last]);
}
