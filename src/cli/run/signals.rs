//! What the supervisor waits for, as one stream of events: SIGINT, SIGTERM, SIGHUP and SIGQUIT
//! to forward, SIGTSTP and SIGCONT (job control: Ctrl-Z, `fg`, `bg`), SIGCHLD when a child may
//! have ended, and the export thread saying it is done.
//!
//! `signal-hook` turns the signals into messages read by one thread (its handler only writes to
//! a pipe), so the main loop can wait with a timeout while it backs off between restarts. The
//! signals are caught, not blocked: a blocked mask would be inherited by the service, which
//! could then never be stopped; caught signals are reset to their default action by `exec`.

use std::sync::atomic::AtomicBool;
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use nix::sys::signal::Signal;
use signal_hook::consts::{SIGCHLD, SIGCONT, SIGHUP, SIGINT, SIGPIPE, SIGQUIT, SIGTERM, SIGTSTP};
use signal_hook::iterator::Signals;

/// Something that happened.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event {
    /// A signal arrived: one to forward, or SIGCHLD.
    Signal(Signal),
    /// The export thread finished its last job after being told to close.
    Idle,
}

impl Event {
    /// The signal to forward to the service, if it is one: SIGINT and SIGTERM, and SIGHUP and
    /// SIGQUIT, which a terminal sends to its foreground process group (the supervisor's, not
    /// the service's) when it closes or on Ctrl-\\.
    pub fn to_forward(self) -> Option<Signal> {
        match self {
            Event::Signal(
                signal @ (Signal::SIGINT | Signal::SIGTERM | Signal::SIGHUP | Signal::SIGQUIT),
            ) => Some(signal),
            _ => None,
        }
    }

    /// Whether this is Ctrl-Z (SIGTSTP), which the terminal sends to the supervisor's process
    /// group only: the service's must be stopped by hand.
    pub fn is_suspend(self) -> bool {
        self == Event::Signal(Signal::SIGTSTP)
    }

    /// Whether this is SIGCONT, after a suspend: the service's process group must be continued.
    pub fn is_continue(self) -> bool {
        self == Event::Signal(Signal::SIGCONT)
    }
}

/// Stops the service's process group `group` (when there is a service) with the SIGTSTP the
/// terminal sent, then the supervisor itself, as a shell's job stops on Ctrl-Z. Returns once
/// the supervisor is continued (`fg`, `bg`); the SIGCONT that continued it then arrives as an
/// event, on which the caller continues the service.
pub fn suspend(group: Option<nix::unistd::Pid>) {
    if let Some(group) = group {
        let _ = nix::sys::signal::killpg(group, Signal::SIGTSTP);
    }
    // Stops the whole process (SIGTSTP itself is caught here).
    let _ = signal_hook::low_level::emulate_default_handler(SIGTSTP);
}

/// The stream of events.
pub struct Events {
    receiver: Receiver<Event>,
    sender: Sender<Event>,
}

impl Events {
    /// Catches the signals to forward and SIGCHLD from now on and starts the thread that reads
    /// them.
    pub fn start() -> anyhow::Result<Events> {
        let mut signals =
            Signals::new([SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGTSTP, SIGCONT, SIGCHLD])
                .context("cannot catch the signals to forward")?;
        // A closed stderr must not kill the supervisor (leaving the service unsupervised): with
        // SIGPIPE caught, writes fail with EPIPE instead, and the lines are dropped.
        signal_hook::flag::register(SIGPIPE, Arc::new(AtomicBool::new(false)))
            .context("cannot catch SIGPIPE")?;
        let (sender, receiver) = mpsc::channel();
        let forward = sender.clone();
        std::thread::Builder::new()
            .name("flightrec-signals".into())
            .spawn(move || {
                for number in signals.forever() {
                    let Ok(signal) = Signal::try_from(number) else {
                        continue;
                    };
                    if forward.send(Event::Signal(signal)).is_err() {
                        return;
                    }
                }
            })
            .context("cannot start the signal thread")?;
        Ok(Events { receiver, sender })
    }

    /// A sender for other threads' events.
    pub fn sender(&self) -> Sender<Event> {
        self.sender.clone()
    }

    /// The next event; `None` when `timeout` passes first.
    pub fn next(&self, timeout: Option<Duration>) -> Option<Event> {
        match timeout {
            // `self` holds a sender, so the channel never disconnects.
            None => self.receiver.recv().ok(),
            Some(timeout) => self.receiver.recv_timeout(timeout).ok(),
        }
    }
}
