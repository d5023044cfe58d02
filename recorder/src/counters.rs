//! Performance counters, read at checkpoints only. A counter this machine cannot open (no
//! hardware PMU, perf_event_paranoid, seccomp) is recorded as missing, never as zero.

use flightrec_schemas::checkpoint::Counters as CounterValues;
use perf_event::events::{Event, Hardware, Software};

/// The counters of the recording process, in [`flightrec_schemas::header::COUNTER_NAMES`] order.
pub struct Counters {
    open: Vec<Option<perf_event::Counter>>,
}

impl Counters {
    /// Opens what this machine offers, counting this thread and the threads it creates later.
    pub fn open() -> Counters {
        let events: [Event; 5] = [
            Software::TASK_CLOCK.into(),
            Software::PAGE_FAULTS.into(),
            Software::CONTEXT_SWITCHES.into(),
            Hardware::INSTRUCTIONS.into(),
            Hardware::CPU_CYCLES.into(),
        ];
        let open = events.into_iter().map(open_one).collect();
        Counters { open }
    }

    /// No counters at all (recording without perf).
    pub fn none() -> Counters {
        Counters { open: Vec::new() }
    }

    /// Reads every open counter.
    pub fn read(&mut self) -> CounterValues {
        let mut values: CounterValues = Default::default();
        for (value, counter) in values.iter_mut().zip(&mut self.open) {
            *value = counter.as_mut().and_then(|c| c.read().ok());
        }
        values
    }

    /// How many counters are available.
    pub fn available(&self) -> usize {
        self.open.iter().flatten().count()
    }
}

fn open_one(event: Event) -> Option<perf_event::Counter> {
    let mut builder = perf_event::Builder::new().kind(event);
    builder.inherit(true);
    let mut counter = builder.build().ok()?;
    counter.enable().ok()?;
    Some(counter)
}
