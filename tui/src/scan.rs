//! Searches and filters, run a slice at a time so that the screen keeps answering keys while
//! ten million inputs are matched.

use std::time::{Duration, Instant};

use crate::timeline::{Row, Rows};

/// What a search or a filter looks for. A filter's words: `input` or `trace` keep one kind,
/// `lane:NAME` one lane or thread, anything else is text; a search is all text. A row matches
/// text when each of its words appears, in any case, somewhere in the row's one-line description.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Query {
    /// Only inputs (`Some(true)`) or only trace events (`Some(false)`).
    pub inputs: Option<bool>,
    /// Lane or thread name, lowercase.
    pub lane: Option<String>,
    /// Text, lowercase.
    pub text: Option<String>,
}

impl Query {
    /// A search for `text`.
    pub fn text(text: &str) -> Query {
        Query {
            text: Some(text.trim().to_lowercase()).filter(|t| !t.is_empty()),
            ..Query::default()
        }
    }

    /// A filter written as words.
    pub fn filter(spec: &str) -> Query {
        let mut query = Query::default();
        let mut words = Vec::new();
        for word in spec.split_whitespace() {
            match word.to_lowercase().as_str() {
                "input" | "inputs" | "kind:input" => query.inputs = Some(true),
                "trace" | "traces" | "kind:trace" => query.inputs = Some(false),
                lane if lane.starts_with("lane:") => query.lane = Some(lane[5..].to_owned()),
                _ => words.push(word),
            }
        }
        query.text = Some(words.join(" ").to_lowercase()).filter(|t| !t.is_empty());
        query
    }

    /// Whether a row of kind `is_input`, in lane `lane`, described by `text()`, matches.
    /// The text is only built when the kind and lane pass.
    pub fn matches(&self, is_input: bool, lane: &str, text: impl FnOnce() -> String) -> bool {
        self.inputs.is_none_or(|inputs| inputs == is_input)
            && self
                .lane
                .as_ref()
                .is_none_or(|wanted| lane.to_lowercase() == *wanted)
            && self.text.as_ref().is_none_or(|wanted| {
                let text = text().to_lowercase();
                wanted.split_whitespace().all(|word| text.contains(word))
            })
    }
}

/// What a scan is for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Purpose {
    /// Keep the matching rows of these rows.
    Filter {
        /// The rows filtered.
        base: Rows,
        /// The filter as typed.
        spec: String,
    },
    /// Find the next match from position `from` of the rows shown.
    Search {
        /// Forwards (n) or backwards (N).
        forward: bool,
        /// Where it started.
        from: usize,
    },
}

/// A scan in progress over `len` rows.
#[derive(Clone, Debug)]
pub struct Scan {
    /// Why.
    pub purpose: Purpose,
    /// What matches.
    pub query: Query,
    /// Rows scanned so far.
    pub done: usize,
    /// Rows to scan.
    pub len: usize,
    /// Rows a filter kept so far.
    pub kept: Vec<Row>,
    /// When it began.
    pub started: Instant,
}

/// How a slice of scanning ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Progress {
    /// Time is up; more to do.
    Working,
    /// A search found this position.
    Found(usize),
    /// Every row was scanned.
    Finished,
}

impl Scan {
    /// A scan of `len` rows.
    pub fn new(purpose: Purpose, query: Query, len: usize) -> Scan {
        Scan {
            purpose,
            query,
            done: 0,
            len,
            kept: Vec::new(),
            started: Instant::now(),
        }
    }

    /// The position the `n`-th step of the scan looks at. A search starts next to `from` and
    /// wraps around, ending at `from` itself.
    fn position(&self, n: usize) -> usize {
        match self.purpose {
            Purpose::Filter { .. } => n,
            Purpose::Search {
                forward: true,
                from,
            } => (from + 1 + n) % self.len,
            Purpose::Search {
                forward: false,
                from,
            } => (from + self.len - 1 - n % self.len) % self.len,
        }
    }

    /// Scans for at most `budget`: `row_at` gives a position's row, `matches` says whether a row
    /// matches the query.
    pub fn run(
        &mut self,
        budget: Duration,
        row_at: impl Fn(usize) -> Option<Row>,
        mut matches: impl FnMut(&Query, Row) -> bool,
    ) -> Progress {
        let deadline = Instant::now() + budget;
        while self.done < self.len {
            let position = self.position(self.done);
            self.done += 1;
            if let Some(row) = row_at(position) {
                if matches(&self.query, row) {
                    match self.purpose {
                        Purpose::Filter { .. } => self.kept.push(row),
                        Purpose::Search { .. } => return Progress::Found(position),
                    }
                }
            }
            // Reading the clock costs more than most matches: look every 256 rows.
            if self.done % 256 == 0 && Instant::now() >= deadline {
                return Progress::Working;
            }
        }
        Progress::Finished
    }

    /// Fraction scanned.
    pub fn fraction(&self) -> f64 {
        if self.len == 0 {
            1.0
        } else {
            self.done as f64 / self.len as f64
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_read_kinds_lanes_and_text() {
        let query = Query::filter("trace lane:Settlement  Batch Done");
        assert_eq!(query.inputs, Some(false));
        assert_eq!(query.lane.as_deref(), Some("settlement"));
        assert_eq!(query.text.as_deref(), Some("batch done"));
        assert!(query.matches(false, "settlement", || "a BATCH DONE b".into()));
        assert!(query.matches(false, "settlement", || "done with the batch".into()));
        assert!(!query.matches(true, "settlement", || "batch done".into()));
        assert!(!query.matches(false, "main", || "batch done".into()));
        assert!(Query::filter("  ").matches(true, "x", || unreachable!("no text to match")));
    }

    #[test]
    fn searches_wrap_around_and_slices_resume() {
        let rows: Vec<Row> = (0..1000).map(Row::Input).collect();
        let row_at = |p: usize| rows.get(p).copied();
        let is = |target: usize| move |_: &Query, row: Row| row == Row::Input(target);
        let forward = Purpose::Search {
            forward: true,
            from: 990,
        };
        let mut scan = Scan::new(forward, Query::text("x"), rows.len());
        assert_eq!(
            scan.run(Duration::from_secs(9), row_at, is(3)),
            Progress::Found(3)
        );
        let backward = Purpose::Search {
            forward: false,
            from: 2,
        };
        let mut scan = Scan::new(backward.clone(), Query::text("x"), rows.len());
        assert_eq!(
            scan.run(Duration::from_secs(9), row_at, is(995)),
            Progress::Found(995)
        );
        let mut scan = Scan::new(backward, Query::text("x"), rows.len());
        assert_eq!(
            scan.run(Duration::from_secs(9), row_at, is(2)),
            Progress::Found(2)
        );
        let mut scan = Scan::new(
            Purpose::Filter {
                base: Rows::All,
                spec: "x".into(),
            },
            Query::text("x"),
            rows.len(),
        );
        // A zero budget still makes progress, 256 rows at a time.
        let even = |_: &Query, row: Row| matches!(row, Row::Input(i) if i % 2 == 0);
        assert_eq!(scan.run(Duration::ZERO, row_at, even), Progress::Working);
        assert_eq!(scan.done, 256);
        assert_eq!(
            scan.run(Duration::from_secs(9), row_at, even),
            Progress::Finished
        );
        assert_eq!(scan.kept.len(), 500);
    }
}
