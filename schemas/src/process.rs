//! Identifying the writer process across pid reuse.

/// Start time of process `pid` in clock ticks since boot (`/proc/PID/stat` field 22), the value
/// stored in the header's `process_start`. `None` if the process does not exist.
pub fn start_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_start_ticks(&stat)
}

/// [`start_ticks`] of a process still running: `None` also once it has exited, even while its
/// parent has not yet reaped it (a zombie writes nothing more; right after a SIGKILL, its ring
/// is already evidence).
pub fn running_start_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let state = stat[stat.rfind(')')? + 1..].split_whitespace().next()?;
    if matches!(state, "Z" | "X" | "x") {
        return None;
    }
    parse_start_ticks(&stat)
}

/// Field 22 of a `/proc/PID/stat` line. The command name (field 2) may hold spaces and
/// parentheses, so fields are counted after its closing parenthesis.
pub fn parse_start_ticks(stat: &str) -> Option<u64> {
    let after_name = &stat[stat.rfind(')')? + 1..];
    // Field 3 is the first after the name; field 22 is the 20th of those.
    after_name.split_whitespace().nth(19)?.parse().ok()
}

#[cfg(test)]
mod tests {
    #[test]
    fn parses_a_name_with_spaces_and_parentheses() {
        let line = "123 (a (b) c) S 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 999 20 21";
        assert_eq!(super::parse_start_ticks(line), Some(999));
        assert!(super::start_ticks(std::process::id()).is_some());
    }

    #[test]
    fn an_exited_process_not_yet_reaped_is_not_running() {
        let mut child = std::process::Command::new("true")
            .spawn()
            .expect("start a child");
        let pid = child.id();
        // Exited but not reaped: a zombie until the wait below.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        while super::running_start_ticks(pid).is_some() && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        assert!(
            super::start_ticks(pid).is_some(),
            "the zombie is still listed"
        );
        assert!(super::running_start_ticks(pid).is_none());
        child.wait().expect("reap the child");
        assert!(super::running_start_ticks(std::process::id()).is_some());
    }
}
