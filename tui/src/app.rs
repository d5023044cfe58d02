//! The application's state and what each action does to it. Drawing is in `view`; this module
//! never touches a terminal, so it is tested by driving actions and looking at the state.

use std::rc::Rc;
use std::time::{Duration, Instant};

use flightrec_replayer::tree::{self, Path};
use ratatui::layout::{Position, Rect};

use crate::keys::Action;
use crate::outline::{self, Change, Expanded, Flat};
use crate::scan::{Progress, Purpose, Query, Scan};
use crate::source::{Facts, Source};
use crate::timeline::{trace_text, Row, Rows, Timeline};
use crate::view::Theme;

/// Most changes listed for one input.
const MAX_CHANGES: usize = 500;
/// Flattened states kept: stepping one input either way reuses them.
const STATES_KEPT: usize = 4;
/// Rows a mouse wheel notch scrolls.
const WHEEL_ROWS: usize = 3;

/// Which pane the arrow keys move in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Focus {
    /// The timeline of inputs and events.
    Timeline,
    /// The state tree.
    State,
}

/// A line of text being typed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Prompt {
    /// Search or filter.
    pub kind: PromptKind,
    /// What was typed.
    pub text: String,
}

/// What a prompt is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PromptKind {
    /// `/`.
    Search,
    /// `f`.
    Filter,
}

/// Where the panes were last drawn, for the mouse and for paging.
#[derive(Clone, Copy, Debug, Default)]
pub struct Areas {
    /// The timeline pane.
    pub timeline: Rect,
    /// The state tree pane.
    pub state: Rect,
}

/// The TUI over one recording: a replayed ring file's [`History`](flightrec_replayer::History),
/// or an export.
pub struct App<S: Source> {
    pub(crate) source: S,
    /// What does not change while the UI runs.
    pub(crate) facts: Facts,
    pub(crate) timeline: Timeline,
    pub(crate) rows: Rows,
    pub(crate) show_traces: bool,
    /// The filter in force, as typed.
    pub(crate) filter: Option<String>,
    /// Position of the selected row in `rows`.
    pub(crate) selected: usize,
    /// First timeline row on screen.
    pub(crate) timeline_top: usize,
    pub(crate) focus: Focus,
    /// Flattened states by inputs applied, newest last.
    states: Vec<(usize, Rc<Flat>)>,
    /// What the selected input changed: (its position, the changes).
    changes: Option<(usize, Vec<Change>)>,
    pub(crate) expanded: Expanded,
    /// Selected row of the state tree, and the first on screen.
    pub(crate) tree_selected: usize,
    pub(crate) tree_top: usize,
    pub(crate) prompt: Option<Prompt>,
    /// The last search, for n and N.
    pub(crate) search: Option<String>,
    pub(crate) scan: Option<Scan>,
    /// The field `w` last looked for, and the input it found.
    watch: Option<(Path, usize)>,
    /// A `w` still looking back through the history, a slice at a time.
    pub(crate) tracing: Option<ChangeSearch>,
    pub(crate) message: Option<String>,
    pub(crate) help: bool,
    pub(crate) quit: bool,
    pub(crate) areas: Areas,
    pub(crate) theme: Theme,
}

/// A `w` looking back for the input that last changed a field.
pub(crate) struct ChangeSearch {
    pub(crate) path: Path,
    /// Inputs before this position are still to look at, newest first.
    pub(crate) end: usize,
    /// Where the search began, for its progress.
    pub(crate) from: usize,
    pub(crate) started: Instant,
}

impl ChangeSearch {
    /// The share of the inputs before `from` looked at so far.
    pub(crate) fn fraction(&self) -> f64 {
        1.0 - self.end as f64 / self.from.max(1) as f64
    }
}

/// Inputs `w` replays between two looks at the clock: a few milliseconds of work.
const CHANGE_CHUNK: usize = 4096;
/// How long `w` looks before the key press returns; the rest runs between key presses.
/// Short enough that the key press, with the render after it, stays within a frame.
const WHO_CHANGED_AT_ONCE: Duration = Duration::from_millis(4);

impl<S: Source> App<S> {
    /// Opens at the end of `source`: the crash.
    pub fn new(source: S) -> App<S> {
        let facts = source.facts();
        let timeline = Timeline::of(&facts);
        let mut app = App {
            source,
            facts,
            timeline,
            rows: Rows::All,
            show_traces: true,
            filter: None,
            selected: 0,
            timeline_top: 0,
            focus: Focus::Timeline,
            states: Vec::new(),
            changes: None,
            expanded: Expanded::default(),
            tree_selected: 0,
            tree_top: 0,
            prompt: None,
            search: None,
            scan: None,
            watch: None,
            tracing: None,
            message: None,
            help: false,
            quit: false,
            areas: Areas::default(),
            theme: Theme::from_env(),
        };
        app.select_row(Row::End);
        app.unfold_top_level();
        app
    }

    /// The recording shown.
    pub fn source(&self) -> &S {
        &self.source
    }

    /// Draws in colour or not, whatever `NO_COLOR` says.
    pub fn set_theme(&mut self, theme: Theme) {
        self.theme = theme;
    }

    /// Drops the flattened states kept for stepping, so that a benchmark measures a jump
    /// rather than the cache.
    #[doc(hidden)]
    pub fn forget_states(&mut self) {
        self.states.clear();
        self.changes = None;
    }

    /// The path of the selected field of the state tree (for benchmarks and tests that drive
    /// the tree).
    #[doc(hidden)]
    pub fn selected_field(&mut self) -> Option<Path> {
        self.selected_tree_row().map(|row| row.path)
    }

    /// Whether the user asked to leave.
    pub fn should_quit(&self) -> bool {
        self.quit
    }

    /// Whether a search, filter or `w` is still running (call [`App::work`] again soon).
    pub fn is_busy(&self) -> bool {
        self.scan.is_some() || self.tracing.is_some()
    }

    /// The selected row.
    pub fn selected_row(&self) -> Row {
        self.timeline
            .row(&self.rows, self.selected)
            .unwrap_or(Row::End)
    }

    /// Inputs applied to the state shown: the state after the selected input, or for an event,
    /// the state when it was recorded.
    pub fn applied(&self) -> usize {
        self.timeline.inputs_up_to(self.selected_row())
    }

    /// Does what `action` asks.
    pub fn handle(&mut self, action: Action) {
        if self.prompt.is_some() {
            return self.edit_prompt(action);
        }
        if self.help && !matches!(action, Action::Quit) {
            self.help = false;
            return;
        }
        if !matches!(action, Action::WhoChanged) {
            self.message = None;
        }
        // A key that moves elsewhere ends a `w` still looking: its answer would yank the
        // selection away from where the user went. (Esc says so; `w` starts afresh.)
        if !matches!(action, Action::Cancel) {
            self.tracing = None;
        }
        match action {
            Action::StepBack => self.step(false),
            Action::StepForward => self.step(true),
            Action::Up => self.move_by(-1),
            Action::Down => self.move_by(1),
            Action::PageUp => self.move_by(-(self.page() as isize)),
            Action::PageDown => self.move_by(self.page() as isize),
            Action::First => self.first_input(),
            Action::Last => self.select_row(Row::End),
            Action::PreviousCheckpoint => self.checkpoint(false),
            Action::NextCheckpoint => self.checkpoint(true),
            Action::Search => self.open_prompt(PromptKind::Search, String::new()),
            Action::Filter => {
                let current = self.filter.clone().unwrap_or_default();
                self.open_prompt(PromptKind::Filter, current);
            }
            Action::NextMatch => self.search_again(true),
            Action::PreviousMatch => self.search_again(false),
            Action::Toggle => self.toggle(),
            Action::WhoChanged => self.who_changed(),
            Action::Traces => self.toggle_traces(),
            Action::SwitchPane => self.switch_pane(),
            Action::Help => self.help = true,
            Action::Cancel => self.cancel(),
            Action::Quit => self.quit = true,
            Action::Type(_) | Action::Erase | Action::Submit => {}
        }
    }

    /// The mouse wheel over a pane scrolls it.
    pub fn scroll(&mut self, column: u16, row: u16, down: bool) {
        let at = Position::new(column, row);
        let delta = if down {
            WHEEL_ROWS as isize
        } else {
            -(WHEEL_ROWS as isize)
        };
        if self.areas.timeline.contains(at) {
            self.move_timeline(delta);
        } else if self.areas.state.contains(at) {
            self.move_tree(delta);
        }
    }

    /// Runs a pending search, filter or `w` for about `budget`.
    pub fn work(&mut self, budget: Duration) {
        if self.tracing.is_some() {
            return self.trace_change(budget);
        }
        let Some(mut scan) = self.scan.take() else {
            return;
        };
        let rows = match &scan.purpose {
            Purpose::Filter { base, .. } => base.clone(),
            Purpose::Search { .. } => self.rows.clone(),
        };
        let progress = {
            let (timeline, source, facts) = (&self.timeline, &self.source, &self.facts);
            scan.run(
                budget,
                |position| timeline.row(&rows, position),
                |query, row| row_matches(source, facts, query, row),
            )
        };
        match (progress, &scan.purpose) {
            (Progress::Working, _) => self.scan = Some(scan),
            (Progress::Found(position), _) => {
                self.set_selected(position);
                self.message = Some(format!("found {:?}", self.search.as_deref().unwrap_or("")));
            }
            (Progress::Finished, Purpose::Search { .. }) => {
                let query = self.search.as_deref().unwrap_or("");
                self.message = Some(format!("no row matches {query:?}"));
            }
            (Progress::Finished, Purpose::Filter { spec, .. }) => {
                let row = self.selected_row();
                let kept = scan.kept.len();
                self.message = Some(format!("filter {spec:?}: {kept} rows"));
                self.filter = Some(spec.clone());
                // The end always stays: it is what the user came to see.
                if scan.kept.last() != Some(&Row::End) {
                    scan.kept.push(Row::End);
                }
                self.rows = Rows::Only(scan.kept);
                self.selected = self.timeline.position(&self.rows, row);
            }
        }
    }

    fn edit_prompt(&mut self, action: Action) {
        let Some(prompt) = self.prompt.as_mut() else {
            return;
        };
        match action {
            Action::Type(c) => prompt.text.push(c),
            Action::Erase => {
                prompt.text.pop();
            }
            Action::Cancel => self.prompt = None,
            Action::Quit => self.quit = true,
            Action::Submit => {
                let prompt = self.prompt.take().expect("checked above");
                match prompt.kind {
                    PromptKind::Search => self.start_search(prompt.text, true),
                    PromptKind::Filter => self.start_filter(prompt.text),
                }
            }
            _ => {}
        }
    }

    fn open_prompt(&mut self, kind: PromptKind, text: String) {
        self.prompt = Some(Prompt { kind, text });
    }

    fn start_search(&mut self, text: String, forward: bool) {
        let query = Query::text(&text);
        if query.text.is_none() {
            return;
        }
        self.search = Some(text);
        let len = self.timeline.len(&self.rows);
        let purpose = Purpose::Search {
            forward,
            from: self.selected,
        };
        self.scan = Some(Scan::new(purpose, query, len));
    }

    fn search_again(&mut self, forward: bool) {
        match self.search.clone() {
            Some(text) => self.start_search(text, forward),
            None => self.message = Some("no search yet: press / to search".into()),
        }
    }

    fn start_filter(&mut self, spec: String) {
        let base = self.unfiltered();
        let query = Query::filter(&spec);
        if query == Query::default() {
            let row = self.selected_row();
            self.filter = None;
            self.rows = base;
            self.set_selected(self.timeline.position(&self.rows, row));
            self.message = Some("filter cleared".into());
            return;
        }
        let len = self.timeline.len(&base);
        self.scan = Some(Scan::new(Purpose::Filter { base, spec }, query, len));
    }

    fn unfiltered(&self) -> Rows {
        if self.show_traces {
            Rows::All
        } else {
            Rows::Inputs
        }
    }

    fn cancel(&mut self) {
        if let Some(search) = self.tracing.take() {
            self.message = Some(format!("w on {} cancelled", search.path));
        }
        if let Some(scan) = self.scan.take() {
            let what = match scan.purpose {
                Purpose::Filter { .. } => "filter",
                Purpose::Search { .. } => "search",
            };
            self.message = Some(format!("{what} cancelled"));
        }
    }

    fn toggle_traces(&mut self) {
        self.show_traces = !self.show_traces;
        let row = self.selected_row();
        self.rows = self.unfiltered();
        self.set_selected(self.timeline.position(&self.rows, row));
        if let Some(spec) = self.filter.take() {
            self.start_filter(spec);
        }
        self.message = Some(if self.show_traces {
            "trace events shown".into()
        } else {
            "trace events hidden".into()
        });
    }

    fn switch_pane(&mut self) {
        self.focus = match self.focus {
            Focus::Timeline => Focus::State,
            Focus::State => Focus::Timeline,
        };
    }

    fn page(&self) -> usize {
        let area = match self.focus {
            Focus::Timeline => self.areas.timeline,
            Focus::State => self.areas.state,
        };
        usize::from(area.height.saturating_sub(3)).max(1)
    }

    fn move_by(&mut self, delta: isize) {
        match self.focus {
            Focus::Timeline => self.move_timeline(delta),
            Focus::State => self.move_tree(delta),
        }
    }

    fn move_timeline(&mut self, delta: isize) {
        let last = self.timeline.len(&self.rows).saturating_sub(1);
        self.set_selected(self.selected.saturating_add_signed(delta).min(last));
    }

    fn move_tree(&mut self, delta: isize) {
        let total = self.tree_rows();
        self.tree_selected = self
            .tree_selected
            .saturating_add_signed(delta)
            .min(total.saturating_sub(1));
    }

    fn set_selected(&mut self, position: usize) {
        self.selected = position;
        self.watch = None;
    }

    fn select_row(&mut self, row: Row) {
        self.set_selected(self.timeline.position(&self.rows, row));
    }

    /// One input back or forward from the selected row, skipping events.
    fn step(&mut self, forward: bool) {
        let len = self.timeline.len(&self.rows);
        let mut position = self.selected;
        loop {
            position = match forward {
                true if position + 1 < len => position + 1,
                false if position > 0 => position - 1,
                _ => {
                    self.message = Some(if forward {
                        "this is the end of the recording".into()
                    } else {
                        "this is the oldest retained input".into()
                    });
                    return;
                }
            };
            if matches!(self.timeline.row(&self.rows, position), Some(Row::Input(_))) {
                return self.set_selected(position);
            }
        }
    }

    fn first_input(&mut self) {
        if self.timeline.inputs() == 0 {
            self.message = Some("no input was retained after the base checkpoint".into());
        }
        let position = self.timeline.position(&self.rows, Row::Input(0));
        let position = match self.timeline.row(&self.rows, position) {
            Some(Row::Input(_)) => position,
            // A filter may have dropped it: the first row kept after it.
            _ => (position + 1).min(self.timeline.len(&self.rows).saturating_sub(1)),
        };
        self.set_selected(position);
    }

    fn checkpoint(&mut self, forward: bool) {
        let current = self.applied();
        let checkpoints = self.timeline.checkpoints();
        // The checkpoint before input i holds the state after i inputs: `applied == i`.
        let target = if forward {
            checkpoints.iter().find(|&&index| index + 1 > current)
        } else {
            checkpoints.iter().rev().find(|&&index| index + 1 < current)
        };
        match target {
            Some(&index) => self.select_row(Row::Input(index)),
            None => {
                let which = if forward { "later" } else { "earlier" };
                self.message = Some(format!("no {which} checkpoint in the retained history"));
            }
        }
    }

    fn toggle(&mut self) {
        if self.focus == Focus::Timeline {
            self.focus = Focus::State;
            return;
        }
        let Some(row) = self.selected_tree_row() else {
            return;
        };
        let flat = self.state_flat();
        if flat.container(row.node).is_some() {
            self.expanded.toggle(&row.path.0);
        }
    }

    /// `w`: the input that last changed the selected field, at or before the input shown; again
    /// on the same field, the change before that.
    fn who_changed(&mut self) {
        let Some(row) = self.selected_tree_row() else {
            self.message = Some("select a field of the state first (Tab, then ↑ ↓)".into());
            return;
        };
        let path = row.path;
        let before = match &self.watch {
            Some((watched, found)) if *watched == path => match found.checked_sub(1) {
                Some(before) => before,
                None => {
                    self.message = Some(format!("no earlier change to {path} was retained"));
                    return;
                }
            },
            _ => match self.applied().checked_sub(1) {
                Some(index) => index,
                None => {
                    self.message = Some(format!("{path} is as the base checkpoint holds it"));
                    return;
                }
            },
        };
        self.tracing = Some(ChangeSearch {
            path,
            end: before + 1,
            from: before + 1,
            started: Instant::now(),
        });
        // A change nearby is found at once; a long search goes on between key presses.
        self.trace_change(WHO_CHANGED_AT_ONCE);
    }

    /// Looks back for the change `w` asked for, a chunk of inputs at a time, for about `budget`.
    fn trace_change(&mut self, budget: Duration) {
        let Some(mut search) = self.tracing.take() else {
            return;
        };
        let started = Instant::now();
        while search.end > 0 && started.elapsed() < budget {
            let start = search.end.saturating_sub(CHANGE_CHUNK);
            if let Some(index) = self.source.last_change_in(&search.path, start..search.end) {
                self.select_row(Row::Input(index));
                let seq = self.facts.base_seq + index as u64;
                self.message = Some(format!(
                    "{} last changed by input #{seq} (w again: the change before)",
                    search.path
                ));
                self.watch = Some((search.path, index));
                return;
            }
            search.end = start;
        }
        if search.end > 0 {
            self.tracing = Some(search);
            return;
        }
        self.message = Some(format!(
            "no retained input changed {}: it is as the base checkpoint holds it",
            search.path
        ));
    }

    fn unfold_top_level(&mut self) {
        let flat = self.state_flat();
        let tops: Vec<Path> = flat
            .children(Flat::ROOT)
            .filter(|(_, node)| flat.container(*node).is_some())
            .map(|(label, _)| Path(vec![segment(label)]))
            .collect();
        for path in tops {
            self.expanded.open(&path.0);
        }
    }

    /// The flattened state shown.
    pub(crate) fn state_flat(&mut self) -> Rc<Flat> {
        let applied = self.applied();
        self.flat_at(applied)
    }

    /// The flattened state after `applied` inputs, from the small cache when it is there.
    fn flat_at(&mut self, applied: usize) -> Rc<Flat> {
        if let Some(at) = self.states.iter().position(|(a, _)| *a == applied) {
            let entry = self.states.remove(at);
            self.states.push(entry);
        } else {
            // The evicted state's memory is reused when nothing else holds it.
            let mut flat = match self.states.len() {
                STATES_KEPT => Rc::try_unwrap(self.states.remove(0).1).unwrap_or_default(),
                _ => Flat::default(),
            };
            if !self.source.flatten_state(applied, &mut flat) {
                flat = Flat::default();
            }
            self.states.push((applied, Rc::new(flat)));
        }
        Rc::clone(&self.states.last().expect("pushed above").1)
    }

    /// What the selected input changed (nothing for an event or the end).
    pub(crate) fn changes(&mut self) -> &[Change] {
        let Row::Input(index) = self.selected_row() else {
            return &[];
        };
        if self.changes.as_ref().is_none_or(|(at, _)| *at != index) {
            let before = self.flat_at(index);
            let after = self.flat_at(index + 1);
            let changes = outline::diff(&before, &after, MAX_CHANGES);
            self.changes = Some((index, changes));
        }
        &self.changes.as_ref().expect("set above").1
    }

    /// Rows of the state tree in all.
    fn tree_rows(&mut self) -> usize {
        outline::window(&self.state_flat(), &self.expanded, 0, 0).total
    }

    fn selected_tree_row(&mut self) -> Option<outline::Row> {
        outline::window(&self.state_flat(), &self.expanded, self.tree_selected, 1)
            .rows
            .pop()
    }
}

/// A tree label as a path segment.
fn segment(label: outline::Label<'_>) -> tree::Segment {
    match label {
        outline::Label::Index(i) => tree::Segment::Index(i),
        outline::Label::Key(key) => tree::Segment::Key(key.to_owned()),
    }
}

/// Whether `row` matches `query`.
fn row_matches<S: Source>(source: &S, facts: &Facts, query: &Query, row: Row) -> bool {
    match row {
        Row::Input(index) => query.matches(true, "input", || {
            source.input(index).map_or_else(String::new, |input| {
                format!("#{} {}", input.seq, tree::brief(&input.tree))
            })
        }),
        Row::Trace(j) => {
            let trace = &facts.traces[j];
            let lane = facts.lane_names.get(trace.lane).map_or("", String::as_str);
            query.matches(false, lane, || trace_text(trace))
                || query.matches(false, &trace.thread, || trace_text(trace))
        }
        Row::End => false,
    }
}
