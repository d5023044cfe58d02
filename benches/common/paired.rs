//! Paired measurements: a target timed beside its baseline within every sample.
//!
//! On a shared machine, the speed of the same loop drifts by a third over a few seconds (other
//! tenants, frequency, the host's scheduling). Criterion measures each benchmark in a window of
//! its own, so a baseline and its target see different drifts, and the ratio of their medians
//! carries that noise, which is larger than the margins the targets test.
//!
//! Here each sample runs the baseline and the target for the same number of iterations, back to
//! back, and alternates which goes first (so that neither always inherits the other's cache).
//! The sample's value is the target's time in units of the baseline's time in that sample, so
//! criterion's per-iteration estimate of it *is* the ratio, with its usual statistics: the
//! median and confidence interval it reports are those of the ratio, printed as `1.04 x`.
//!
//! Criterion still sizes the samples by wall time (its warm-up and iteration counts use the
//! elapsed time of the whole routine, baseline and target together).

use std::time::{Duration, Instant};

use criterion::measurement::{Measurement, ValueFormatter};
use criterion::{BenchmarkGroup, Throughput};

/// A measurement whose value is "target time divided by baseline time", summed over iterations.
/// It is only ever produced by [`bench`]: a routine timed with `b.iter` has no baseline.
pub struct Ratio;

impl Measurement for Ratio {
    type Intermediate = ();
    type Value = f64;

    fn start(&self) {
        panic!("a paired ratio is measured through paired::bench, not Bencher::iter")
    }

    fn end(&self, _: ()) -> f64 {
        panic!("a paired ratio is measured through paired::bench, not Bencher::iter")
    }

    fn add(&self, v1: &f64, v2: &f64) -> f64 {
        v1 + v2
    }

    fn zero(&self) -> f64 {
        0.0
    }

    fn to_f64(&self, value: &f64) -> f64 {
        *value
    }

    fn formatter(&self) -> &dyn ValueFormatter {
        &RatioFormatter
    }
}

/// Prints a ratio as `1.04 x`, unscaled.
struct RatioFormatter;

impl ValueFormatter for RatioFormatter {
    fn scale_values(&self, _typical: f64, _values: &mut [f64]) -> &'static str {
        "x"
    }

    fn scale_throughputs(
        &self,
        _typical: f64,
        _: &Throughput,
        _values: &mut [f64],
    ) -> &'static str {
        "x"
    }

    fn scale_for_machines(&self, _values: &mut [f64]) -> &'static str {
        "ratio"
    }
}

/// Benchmarks `target` against `baseline` as `name` in `group`: each is given an iteration
/// count and returns the time those iterations took.
pub fn bench(
    group: &mut BenchmarkGroup<'_, Ratio>,
    name: &str,
    mut baseline: impl FnMut(u64) -> Duration,
    mut target: impl FnMut(u64) -> Duration,
) {
    let mut baseline_first = false;
    group.bench_function(name, |b| {
        b.iter_custom(|iters| {
            baseline_first = !baseline_first;
            let (base, measured) = if baseline_first {
                let base = baseline(iters);
                (base, target(iters))
            } else {
                let measured = target(iters);
                (baseline(iters), measured)
            };
            // Per iteration, criterion divides this by `iters`: the ratio of the two times.
            iters as f64 * measured.as_secs_f64() / base.as_secs_f64().max(f64::MIN_POSITIVE)
        })
    });
}

/// Times `iters` calls of `once`, inlined into the loop.
#[inline(always)]
pub fn timed(iters: u64, mut once: impl FnMut()) -> Duration {
    let start = Instant::now();
    for _ in 0..iters {
        once();
    }
    start.elapsed()
}

/// Times `iters` runs of `routine`, each on a fresh input from `setup`: neither the setup nor
/// dropping what `routine` returns is timed (as criterion's `iter_batched`).
pub fn timed_each<I, O>(
    iters: u64,
    mut setup: impl FnMut() -> I,
    mut routine: impl FnMut(I) -> O,
) -> Duration {
    let mut total = Duration::ZERO;
    for _ in 0..iters {
        let input = setup();
        let start = Instant::now();
        let output = std::hint::black_box(routine(input));
        total += start.elapsed();
        drop(output);
    }
    total
}
