//! Times, sizes and counts as the panes print them.

use std::time::{Duration, UNIX_EPOCH};

/// `2026-11-25T07:10:03.123Z`.
pub fn utc(unix_ns: u64) -> String {
    humantime::format_rfc3339_millis(UNIX_EPOCH + Duration::from_nanos(unix_ns)).to_string()
}

/// A signed time offset, `-1.234s`, `-79.1ms`, `-512µs`, `0s`, to three significant digits or
/// milliseconds, whichever is longer.
pub fn offset(ns: i128) -> String {
    let sign = if ns < 0 { "-" } else { "+" };
    let abs = ns.unsigned_abs() as f64;
    match ns.unsigned_abs() {
        0 => "0s".into(),
        1..1_000 => format!("{sign}{abs}ns"),
        1_000..1_000_000 => format!("{sign}{:.0}µs", abs / 1e3),
        1_000_000..10_000_000 => format!("{sign}{:.2}ms", abs / 1e6),
        10_000_000..1_000_000_000 => format!("{sign}{:.1}ms", abs / 1e6),
        _ => format!("{sign}{:.3}s", abs / 1e9),
    }
}

/// `12,345,678`.
pub fn count(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_and_counts_read_well() {
        assert_eq!(offset(-1_234_567_890), "-1.235s");
        assert_eq!(offset(-79_100_000), "-79.1ms");
        assert_eq!(offset(-5_120_000), "-5.12ms");
        assert_eq!(offset(-512_000), "-512µs");
        assert_eq!(offset(0), "0s");
        assert_eq!(offset(300), "+300ns");
        assert_eq!(count(0), "0");
        assert_eq!(count(999), "999");
        assert_eq!(count(1000), "1,000");
        assert_eq!(count(10_000_000), "10,000,000");
    }
}
