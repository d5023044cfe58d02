//! Human-readable times for the command line.

use std::time::{Duration, UNIX_EPOCH};

/// `2026-11-25T07:10:03.123Z` for Unix nanoseconds.
pub fn utc(unix_ns: u64) -> String {
    let time = UNIX_EPOCH + Duration::from_nanos(unix_ns);
    humantime::format_rfc3339_millis(time).to_string()
}

/// `12.0 MiB` for a byte count.
pub fn bytes(n: u64) -> String {
    match n {
        0..1024 => format!("{n} B"),
        1024..1_048_576 => format!("{:.1} KiB", n as f64 / 1024.0),
        1_048_576..1_073_741_824 => format!("{:.1} MiB", n as f64 / 1_048_576.0),
        _ => format!("{:.2} GiB", n as f64 / 1_073_741_824.0),
    }
}
