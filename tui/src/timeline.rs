//! The timeline: every retained input and trace event in time order, then the end (the crash).
//!
//! Nothing is materialised per input: a history of ten million inputs and a few thousand trace
//! events is described by where each trace event falls among the inputs, and a row number maps
//! to an input or an event by one binary search.

use flightrec_replayer::TraceRecord;

use crate::source::Facts;

/// What a row of the timeline shows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Row {
    /// The retained input at this position of the history.
    Input(usize),
    /// The trace event at this index of [`Facts::traces`].
    Trace(usize),
    /// How the recording ended: the crash, the death, the clean exit.
    End,
}

/// Which rows a view holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Rows {
    /// Inputs, trace events and the end.
    All,
    /// Inputs and the end.
    Inputs,
    /// The rows a filter kept, in timeline order.
    Only(Vec<Row>),
}

/// Where the trace events fall among the inputs, and the marks on inputs.
#[derive(Clone, Debug)]
pub struct Timeline {
    inputs: usize,
    /// For each trace event in order, how many inputs come before it.
    inputs_before: Vec<usize>,
    /// Positions of the inputs that a checkpoint preceded (its state is the one before them).
    checkpoints: Vec<usize>,
}

impl Timeline {
    /// The timeline of a recording: each trace event goes after the inputs its source placed
    /// before it (every input recorded at or before its time).
    pub fn of(facts: &Facts) -> Timeline {
        Timeline {
            inputs: facts.len,
            inputs_before: facts.inputs_before.clone(),
            checkpoints: facts.checkpoints.clone(),
        }
    }

    /// Number of rows in `rows`.
    pub fn len(&self, rows: &Rows) -> usize {
        match rows {
            Rows::All => self.inputs + self.inputs_before.len() + 1,
            Rows::Inputs => self.inputs + 1,
            Rows::Only(kept) => kept.len(),
        }
    }

    /// The row at `position` of `rows`.
    pub fn row(&self, rows: &Rows, position: usize) -> Option<Row> {
        if position >= self.len(rows) {
            return None;
        }
        Some(match rows {
            Rows::Only(kept) => kept[position],
            Rows::Inputs if position == self.inputs => Row::End,
            Rows::Inputs => Row::Input(position),
            Rows::All => {
                // Traces before `position`, and whether the row is one of them.
                let traces =
                    partition_point(self.inputs_before.len(), |j| self.trace_row(j) < position);
                if traces < self.inputs_before.len() && self.trace_row(traces) == position {
                    Row::Trace(traces)
                } else if position - traces == self.inputs {
                    Row::End
                } else {
                    Row::Input(position - traces)
                }
            }
        })
    }

    /// The position of `row` in `rows`, or of the nearest row before it that `rows` holds.
    pub fn position(&self, rows: &Rows, row: Row) -> usize {
        match rows {
            Rows::Only(kept) => {
                let key = self.order(row);
                partition_point(kept.len(), |p| self.order(kept[p]) <= key).saturating_sub(1)
            }
            Rows::Inputs => match row {
                Row::End => self.inputs,
                _ => self.inputs_up_to(row).saturating_sub(1),
            },
            Rows::All => self.order(row),
        }
    }

    /// Position of `row` in the full timeline: a total order on rows.
    pub fn order(&self, row: Row) -> usize {
        match row {
            Row::Trace(j) => self.trace_row(j),
            Row::Input(i) => {
                i + partition_point(self.inputs_before.len(), |j| self.inputs_before[j] <= i)
            }
            Row::End => self.inputs + self.inputs_before.len(),
        }
    }

    /// Inputs at or before `row` (for a trace event, the inputs recorded before it).
    pub fn inputs_up_to(&self, row: Row) -> usize {
        match row {
            Row::Input(i) => i + 1,
            Row::Trace(j) => self.inputs_before[j],
            Row::End => self.inputs,
        }
    }

    /// Number of retained inputs.
    pub fn inputs(&self) -> usize {
        self.inputs
    }

    /// Positions of the inputs that a checkpoint preceded.
    pub fn checkpoints(&self) -> &[usize] {
        &self.checkpoints
    }

    /// Whether a checkpoint was taken just before the input at `index`.
    pub fn is_checkpoint(&self, index: usize) -> bool {
        self.checkpoints.binary_search(&index).is_ok()
    }

    fn trace_row(&self, j: usize) -> usize {
        j + self.inputs_before[j]
    }
}

/// The first index in `0..len` for which `pred` is false (`pred` true then false).
pub(crate) fn partition_point(len: usize, pred: impl Fn(usize) -> bool) -> usize {
    let (mut low, mut high) = (0, len);
    while low < high {
        let mid = low + (high - low) / 2;
        if pred(mid) {
            low = mid + 1;
        } else {
            high = mid;
        }
    }
    low
}

/// The lowercase text a search or a filter matches against for a trace event.
pub fn trace_text(trace: &TraceRecord) -> String {
    let message = trace.event.as_ref().map_or_else(
        || trace.damage.clone().unwrap_or_default(),
        |event| format!("{} {}", event.level.as_str(), event.message),
    );
    format!("{} {message}", trace.thread)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn timeline(inputs: usize, inputs_before: Vec<usize>) -> Timeline {
        Timeline {
            inputs,
            inputs_before,
            checkpoints: vec![0, 3],
        }
    }

    #[test]
    fn rows_interleave_traces_among_inputs_and_map_back() {
        // Traces before input 0, after input 1 (twice), and after the last input.
        let t = timeline(4, vec![0, 2, 2, 4]);
        let all: Vec<Row> = (0..t.len(&Rows::All))
            .map(|p| t.row(&Rows::All, p).unwrap())
            .collect();
        use Row::*;
        assert_eq!(
            all,
            [
                Trace(0),
                Input(0),
                Input(1),
                Trace(1),
                Trace(2),
                Input(2),
                Input(3),
                Trace(3),
                End
            ]
        );
        for (position, row) in all.iter().enumerate() {
            assert_eq!(t.position(&Rows::All, *row), position);
            assert_eq!(t.order(*row), position);
        }
        assert_eq!(t.row(&Rows::All, 9), None);
        assert_eq!(t.position(&Rows::Inputs, Trace(1)), 1);
        assert_eq!(t.position(&Rows::Inputs, Trace(0)), 0);
        assert_eq!(t.position(&Rows::Inputs, End), 4);
        assert_eq!(t.row(&Rows::Inputs, 4), Some(End));
        let only = Rows::Only(vec![Input(1), Trace(2), End]);
        assert_eq!(t.position(&only, Trace(1)), 0);
        assert_eq!(t.position(&only, Input(3)), 1);
        assert_eq!(t.inputs_up_to(Trace(2)), 2);
        assert!(t.is_checkpoint(3) && !t.is_checkpoint(2));
    }

    #[test]
    fn an_empty_history_is_its_end() {
        let t = timeline(0, vec![0, 0]);
        assert_eq!(t.len(&Rows::All), 3);
        assert_eq!(t.row(&Rows::All, 2), Some(Row::End));
        assert_eq!(t.row(&Rows::Inputs, 0), Some(Row::End));
    }
}
