//! What the supervisor waits for, as one stream of events: SIGINT and SIGTERM to forward,
//! SIGCHLD when a child may have ended, and the export thread saying it is done.
//!
//! `signal-hook` turns the signals into messages read by one thread (its handler only writes to
//! a pipe), so the main loop can wait with a timeout while it backs off between restarts. The
//! signals are caught, not blocked: a blocked mask would be inherited by the service, which
//! could then never be stopped; caught signals are reset to their default action by `exec`.

use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::time::Duration;

use anyhow::Context as _;
use nix::sys::signal::Signal;
use signal_hook::consts::{SIGCHLD, SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

/// Something that happened.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event {
    /// A signal arrived: SIGINT or SIGTERM (to forward), or SIGCHLD.
    Signal(Signal),
    /// The export thread finished its last job after being told to close.
    Idle,
}

impl Event {
    /// Whether it asks the supervisor to stop: SIGINT or SIGTERM.
    pub fn is_stop(self) -> bool {
        matches!(self, Event::Signal(Signal::SIGINT | Signal::SIGTERM))
    }
}

/// The stream of events.
pub struct Events {
    receiver: Receiver<Event>,
    sender: Sender<Event>,
}

impl Events {
    /// Catches SIGINT, SIGTERM and SIGCHLD from now on and starts the thread that reads them.
    pub fn start() -> anyhow::Result<Events> {
        let mut signals = Signals::new([SIGINT, SIGTERM, SIGCHLD])
            .context("cannot catch SIGINT and SIGTERM to forward them")?;
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
            Some(timeout) => match self.receiver.recv_timeout(timeout) {
                Ok(event) => Some(event),
                Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => None,
            },
        }
    }
}
