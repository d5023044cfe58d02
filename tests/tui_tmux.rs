//! One real terminal run: `flightrec demo` crashes its service and opens the TUI at the crash,
//! inside tmux; keys are sent with `send-keys` and the screen read with `capture-pane`.
//!
//! tmux is installed by `scripts/install-deps.sh` (which `.ci/run` calls). Without it the test
//! fails under CI and is skipped, loudly, elsewhere.

use std::process::Command;
use std::time::{Duration, Instant};

/// A tmux server of our own (`-L`), so the test never touches the user's sessions.
struct Tmux {
    socket: String,
}

impl Tmux {
    fn run(&self, args: &[&str]) -> String {
        let output = Command::new("tmux")
            .arg("-L")
            .arg(&self.socket)
            .args(args)
            .output()
            .expect("run tmux");
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    fn screen(&self) -> String {
        self.run(&["capture-pane", "-p", "-t", "demo"])
    }

    fn keys(&self, keys: &[&str]) {
        let mut args = vec!["send-keys", "-t", "demo"];
        args.extend_from_slice(keys);
        self.run(&args);
    }

    /// Waits until the screen shows `text`, and returns it.
    fn wait_for(&self, text: &str, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            let screen = self.screen();
            if screen.contains(text) {
                return screen;
            }
            assert!(
                Instant::now() < deadline,
                "waited {timeout:?} for {text:?}; the screen shows:\n{screen}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        self.run(&["kill-server"]);
    }
}

fn tmux_available() -> bool {
    Command::new("tmux").arg("-V").output().is_ok()
}

#[test]
fn the_demo_opens_the_tui_at_the_crash_and_gives_the_terminal_back() {
    if !tmux_available() {
        assert!(
            std::env::var_os("CI").is_none(),
            "tmux is missing: scripts/install-deps.sh installs it"
        );
        eprintln!("SKIPPED: tmux is not installed (scripts/install-deps.sh installs it)");
        return;
    }
    let dir = tempfile::tempdir().expect("temporary directory");
    let tmux = Tmux {
        socket: format!("flightrec-test-{}", std::process::id()),
    };
    let command = format!(
        "{} demo --seed 42 --rate 0 --dir {}; echo demo exited $?; sleep 600",
        env!("CARGO_BIN_EXE_flightrec"),
        dir.path().display()
    );
    tmux.run(&[
        "new-session",
        "-d",
        "-s",
        "demo",
        "-x",
        "160",
        "-y",
        "45",
        &command,
    ]);

    // The service crashes at input 379999; the TUI opens at the end.
    let screen = tmux.wait_for("the end, after", Duration::from_secs(120));
    assert!(screen.contains("crashed: panic"), "{screen}");
    assert!(screen.contains("#379999"), "{screen}");

    tmux.keys(&["Left"]);
    let screen = tmux.wait_for("input #379999 (", Duration::from_secs(10));
    assert!(screen.contains("state after input #379999"), "{screen}");
    tmux.keys(&["Left", "Left"]);
    tmux.wait_for("input #379997 (", Duration::from_secs(10));

    // Into the tree: the first account, unfolded, then who last changed its balance.
    tmux.keys(&["Tab", "Down", "Enter", "Down", "w"]);
    let screen = tmux.wait_for("last changed by input", Duration::from_secs(30));
    assert!(screen.contains("accounts[0].balance"), "{screen}");

    tmux.keys(&["?"]);
    tmux.wait_for("any key closes this help", Duration::from_secs(10));
    tmux.keys(&["Escape"]);

    // Quitting restores the terminal: the report printed before the TUI is back on screen.
    tmux.keys(&["q"]);
    let screen = tmux.wait_for("demo exited 0", Duration::from_secs(10));
    assert!(screen.contains("flightrec tui"), "{screen}");
}
