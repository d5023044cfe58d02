//! Reading ticks on the hot path, and calibrating them to wall time once at creation.

use flightrec_schemas::clock::{Clock, ClockSource};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// How long creation spends measuring the TSC against the system clock. Two milliseconds give an
/// error around one part per million, well below what a postmortem timeline needs.
const CALIBRATION: Duration = Duration::from_millis(2);

/// Reads the clock of `source`.
#[inline(always)]
pub fn now(source: ClockSource) -> u64 {
    match source {
        #[cfg(target_arch = "x86_64")]
        ClockSource::Tsc => tsc(),
        _ => monotonic_ns(),
    }
}

#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn tsc() -> u64 {
    // `rdtsc` has no preconditions; it only reads the time-stamp counter.
    #[allow(unused_unsafe, unsafe_code)]
    // SAFETY: the intrinsic reads a register and cannot fault on x86_64.
    unsafe {
        core::arch::x86_64::_rdtsc()
    }
}

/// Out of line and cold: where the TSC is in use (nearly everywhere), the hot path then falls
/// through to `rdtsc` and keeps no call setup in its way.
#[cold]
#[inline(never)]
fn monotonic_ns() -> u64 {
    nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC)
        .map(|t| t.tv_sec() as u64 * 1_000_000_000 + t.tv_nsec() as u64)
        .unwrap_or(0)
}

/// Unix time in nanoseconds.
pub fn unix_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

/// Picks the TSC where the CPU says it is invariant (constant rate, not stopped in sleep states),
/// else `CLOCK_MONOTONIC`, and calibrates it against the system clock.
pub fn calibrate() -> Clock {
    let source = if invariant_tsc() {
        ClockSource::Tsc
    } else {
        ClockSource::Monotonic
    };
    if source == ClockSource::Monotonic {
        let (ticks, unix) = (monotonic_ns(), unix_ns());
        return Clock {
            source,
            base_ticks: ticks,
            base_unix_ns: unix,
            mult: 1 << Clock::SHIFT,
        };
    }
    let (start_ticks, start) = (now(source), Instant::now());
    let base_unix_ns = unix_ns();
    while start.elapsed() < CALIBRATION {
        std::hint::spin_loop();
    }
    let (end_ticks, elapsed) = (now(source), start.elapsed());
    let ticks = end_ticks.saturating_sub(start_ticks).max(1) as u128;
    let mult = ((elapsed.as_nanos() << Clock::SHIFT) / ticks) as u64;
    Clock {
        source,
        base_ticks: start_ticks,
        base_unix_ns,
        mult,
    }
}

fn invariant_tsc() -> bool {
    if !cfg!(target_arch = "x86_64")
        || std::env::var_os("FLIGHTREC_CLOCK").is_some_and(|v| v == "monotonic")
    {
        return false;
    }
    let Ok(cpuinfo) = std::fs::read_to_string("/proc/cpuinfo") else {
        return false;
    };
    let flags = cpuinfo
        .lines()
        .find(|l| l.starts_with("flags"))
        .unwrap_or("");
    let has = |flag| flags.split_whitespace().any(|f| f == flag);
    has("constant_tsc") && has("nonstop_tsc")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calibrated_clock_tracks_the_system_clock() {
        let clock = calibrate();
        std::thread::sleep(Duration::from_millis(20));
        let (ticks, unix) = (now(clock.source), unix_ns());
        let drift = clock.to_unix_ns(ticks).abs_diff(unix);
        assert!(
            drift < 2_000_000,
            "calibrated clock is {drift} ns off after 20 ms"
        );
    }
}
