//! Drawing: the layout, and what each pane shows of the application's state. Only the rows on
//! screen are formatted, so a frame costs the same on ten inputs or ten million.

mod format;
mod state;
mod theme;
mod timeline;

use flightrec_replayer::tree::{self, Path, Segment};
use flightrec_replayer::Fate;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Clear, Paragraph, Widget, Wrap};
use ratatui::Frame;

pub use format::{count, offset, utc};
pub use state::{Changed, ChangesView, TreeLine, TreeView};
pub use theme::Theme;
pub use timeline::{pane, TimelineLine, TimelineView, Tone};

use crate::app::{App, Focus, PromptKind};
use crate::keys::HELP;
use crate::outline::{self, Change, Flat, Label};
use crate::scan::Purpose;
use crate::source::{Facts, Source};
use crate::timeline::Row;

/// Longest value preview in the tree, in bytes.
const PREVIEW: usize = 160;

/// Draws the whole screen.
pub fn draw<S: Source>(app: &mut App<S>, frame: &mut Frame<'_>) {
    let [main, status, hint] = Layout::vertical([
        Constraint::Fill(1),
        Constraint::Length(1),
        Constraint::Length(1),
    ])
    .areas(frame.area());
    let [left, right] =
        Layout::horizontal([Constraint::Percentage(55), Constraint::Percentage(45)]).areas(main);
    let detail_height = (left.height / 3).clamp(3, 12);
    let [timeline_area, detail_area] =
        Layout::vertical([Constraint::Fill(1), Constraint::Length(detail_height)]).areas(left);
    let [state_area, changes_area] =
        Layout::vertical([Constraint::Fill(1), Constraint::Length(detail_height)]).areas(right);
    app.areas.timeline = timeline_area;
    app.areas.state = state_area;

    draw_timeline(app, frame, timeline_area);
    let detail = detail_lines(app);
    Paragraph::new(detail)
        .wrap(Wrap { trim: false })
        .block(pane(" selected ".into(), false, app.theme))
        .render(detail_area, frame.buffer_mut());
    draw_state(app, frame, state_area);
    let theme = app.theme;
    let empty = match app.selected_row() {
        Row::Input(_) => "this input changed nothing",
        _ => "select an input to see what it changed",
    };
    ChangesView {
        changes: app.changes(),
        empty,
        theme,
    }
    .render(changes_area, frame.buffer_mut());
    Paragraph::new(status_line(app))
        .style(theme.status())
        .render(status, frame.buffer_mut());
    Paragraph::new(hint_line(app)).render(hint, frame.buffer_mut());
    if app.help {
        draw_help(frame, main, theme);
    }
}

fn draw_timeline<S: Source>(app: &mut App<S>, frame: &mut Frame<'_>, area: Rect) {
    let height = usize::from(area.height.saturating_sub(2));
    let total = app.timeline.len(&app.rows);
    app.timeline_top = scrolled(app.timeline_top, app.selected, height, total);
    let end = total.min(app.timeline_top + height);
    let end_ns = app.facts.ending.unix_ns;
    let lines: Vec<TimelineLine> = (app.timeline_top..end)
        .filter_map(|position| app.timeline.row(&app.rows, position))
        .map(|row| timeline_line(app, row, end_ns))
        .collect();
    let filtered = match &app.filter {
        Some(spec) => format!(", filter {spec:?}"),
        None => String::new(),
    };
    let hidden = if app.show_traces {
        ""
    } else {
        ", events hidden"
    };
    let title = format!(
        " timeline {}/{}{filtered}{hidden} ",
        count(app.selected as u64 + 1),
        count(total as u64)
    );
    TimelineView {
        lines: &lines,
        selected: app.selected.checked_sub(app.timeline_top),
        title,
        focused: app.focus == Focus::Timeline,
        theme: app.theme,
    }
    .render(area, frame.buffer_mut());
}

/// The first row on screen so that `selected` is visible, moving as little as possible.
fn scrolled(top: usize, selected: usize, height: usize, total: usize) -> usize {
    let top = if selected < top {
        selected
    } else if height > 0 && selected >= top + height {
        selected + 1 - height
    } else {
        top
    };
    top.min(total.saturating_sub(height.max(1)))
}

fn timeline_line<S: Source>(app: &App<S>, row: Row, end_ns: u64) -> TimelineLine {
    let facts = &app.facts;
    let relative = |unix_ns: u64| offset(i128::from(unix_ns) - i128::from(end_ns));
    match row {
        Row::Input(index) => {
            let Some(input) = app.source.input(index) else {
                return damaged_line(index);
            };
            let panicked = facts.panics.iter().any(|p| p.index == index);
            let diverged = check_at(facts, input.seq) == Some(false);
            let (mark, tone) = if panicked || diverged {
                ("✖", Tone::Alarm)
            } else if app.timeline.is_checkpoint(index) {
                ("◆", Tone::Checkpoint)
            } else {
                (" ", Tone::Input)
            };
            TimelineLine {
                mark,
                position: format!("#{}", input.seq),
                time: relative(input.unix_ns),
                who: "input".into(),
                text: tree::brief(&input.tree),
                tone,
            }
        }
        Row::Trace(j) => {
            let trace = &facts.traces[j];
            let text = match &trace.event {
                Some(event) => format!("{} {}", event.level.as_str(), event.message),
                None => format!("damaged: {}", trace.damage.as_deref().unwrap_or("?")),
            };
            TimelineLine {
                mark: "·",
                position: String::new(),
                time: relative(trace.unix_ns),
                who: trace.thread.clone(),
                text,
                tone: Tone::Trace,
            }
        }
        Row::End => TimelineLine {
            mark: if ended_badly(facts) { "✖" } else { "■" },
            position: String::new(),
            time: relative(end_ns),
            who: "end".into(),
            text: fate(facts),
            tone: Tone::End,
        },
    }
}

/// Whether the recorded state hash at input `seq` matched the replay, if one was checked.
fn check_at(facts: &Facts, seq: u64) -> Option<bool> {
    facts
        .checks
        .iter()
        .find(|(at, _)| *at == seq)
        .map(|(_, passed)| *passed)
}

fn damaged_line(index: usize) -> TimelineLine {
    TimelineLine {
        mark: "✖",
        position: format!("[{index}]"),
        time: String::new(),
        who: "input".into(),
        text: "does not decode".into(),
        tone: Tone::Alarm,
    }
}

fn ended_badly(facts: &Facts) -> bool {
    matches!(facts.ending.status, Fate::Crashed | Fate::Died)
}

/// How the recording ended, on one line.
fn fate(facts: &Facts) -> String {
    let ending = &facts.ending;
    match (ending.status, &ending.crash) {
        (Fate::Crashed, Some(crash)) => match (crash.signal_name, &crash.location) {
            (Some(signal), _) => format!("crashed: {signal} in thread {}", crash.thread),
            (None, Some(location)) => format!("crashed: panic at {location}: {}", crash.message),
            (None, None) => format!("crashed: {}", crash.message),
        },
        (Fate::Crashed, None) => "crashed (the cause was not recorded)".into(),
        (Fate::Died, _) => "died without a word: SIGKILL, the OOM killer, or power loss".into(),
        (Fate::Exited, _) => "exited cleanly".into(),
        (Fate::Running, _) => "still recording when the file was read".into(),
    }
}

/// How the recording ended, in a few words.
fn short_fate(facts: &Facts) -> String {
    let ending = &facts.ending;
    match (&ending.crash, ending.status) {
        (Some(crash), Fate::Crashed) => match crash.signal_name {
            Some(signal) => format!("crashed: {signal}"),
            None => "crashed: panic".into(),
        },
        (_, status) => status.as_str().into(),
    }
}

/// The selected row in full.
fn detail_lines<S: Source>(app: &App<S>) -> Vec<Line<'static>> {
    let facts = &app.facts;
    let theme = app.theme;
    let label = |text: String| Span::styled(text, theme.label());
    match app.selected_row() {
        Row::Input(index) => {
            let Some(event) = app.source.input(index) else {
                return vec![Line::styled("this input does not decode", theme.alarm())];
            };
            let mut lines = vec![Line::from(vec![
                label(format!("input #{}", event.seq)),
                Span::raw(format!(
                    " at {} (position {} of the history)",
                    utc(event.unix_ns),
                    index
                )),
            ])];
            let input = Flat::of(&event.tree);
            lines.extend(value_lines(&input, Flat::ROOT, 0, theme));
            if app.timeline.is_checkpoint(index) {
                let verdict = match check_at(facts, event.seq) {
                    Some(true) => "its recorded state hash matches the replay",
                    Some(false) => "its recorded state hash DIFFERS from the replay",
                    None => "not verified here",
                };
                lines.push(Line::styled(
                    format!("◆ checkpoint taken before this input: {verdict}"),
                    theme.checkpoint(),
                ));
            }
            for panic in facts.panics.iter().filter(|p| p.index == index) {
                let at = panic.location.as_deref().unwrap_or("unknown location");
                lines.push(Line::styled(
                    format!("✖ apply panicked in replay at {at}: {}", panic.message),
                    theme.alarm(),
                ));
            }
            lines
        }
        Row::Trace(j) => {
            let trace = &facts.traces[j];
            let lane = facts
                .lane_names
                .get(trace.lane)
                .cloned()
                .unwrap_or_default();
            let mut lines = vec![Line::from(vec![
                label(format!("trace event, thread {}", trace.thread)),
                Span::raw(format!(
                    " (lane {lane}, #{}) at {}",
                    trace.seq,
                    utc(trace.unix_ns)
                )),
            ])];
            match (&trace.event, &trace.damage) {
                (Some(event), _) => {
                    let kind = format!("{:?}", event.kind).to_lowercase();
                    lines.push(Line::raw(format!(
                        "{kind}, {}, tid {}",
                        event.level.as_str(),
                        event.tid
                    )));
                    lines.push(Line::raw(event.message.clone()));
                    if event.truncated {
                        lines.push(Line::styled(
                            "(the message was cut to fit its lane)",
                            theme.quiet(),
                        ));
                    }
                }
                (None, damage) => lines.push(Line::styled(
                    format!("damaged: {}", damage.as_deref().unwrap_or("unknown")),
                    theme.alarm(),
                )),
            }
            lines
        }
        Row::End => end_lines(facts, theme),
    }
}

fn end_lines(facts: &Facts, theme: Theme) -> Vec<Line<'static>> {
    let mut lines = vec![Line::styled(fate(facts), theme.alarm())];
    if let Some(crash) = &facts.ending.crash {
        lines.push(Line::raw(format!(
            "thread {} (tid {}) at {}",
            crash.thread,
            crash.tid,
            utc(crash.time_unix_ns)
        )));
        if let Some(address) = &crash.fault_addr {
            lines.push(Line::raw(format!("fault address {address}")));
        }
        if crash.signal_name.is_some() {
            lines.push(Line::raw(crash.message.clone()));
        }
    }
    lines.push(Line::raw(match &facts.export {
        None => format!(
            "{} inputs replayed from the checkpoint at input #{}; {} panicked in replay",
            count(facts.len as u64),
            facts.base_seq,
            count(facts.panic_count as u64)
        ),
        Some(path) => format!(
            "{} inputs from input #{}, read from the export {path} (replayed and verified where \
             it was recorded: {})",
            count(facts.len as u64),
            facts.base_seq,
            facts.verification
        ),
    }));
    lines
}

/// A small value (an input) unfolded as indented lines.
fn value_lines(flat: &Flat, node: usize, depth: usize, theme: Theme) -> Vec<Line<'static>> {
    let mut lines = Vec::new();
    for (label, child) in flat.children(node) {
        let name = match label {
            Label::Index(i) => format!("[{i}]"),
            Label::Key(key) => key.to_owned(),
        };
        let pad = "  ".repeat(depth + 1);
        if flat.container(child).is_some() && flat.end(child) - child > 8 {
            lines.push(Line::from(vec![
                Span::raw(pad),
                Span::styled(name, theme.label()),
            ]));
            lines.extend(value_lines(flat, child, depth + 1, theme));
        } else {
            lines.push(Line::from(vec![
                Span::raw(pad),
                Span::styled(format!("{name}: "), theme.label()),
                Span::raw(flat.preview_string(child, PREVIEW)),
            ]));
        }
    }
    if lines.is_empty() && depth == 0 {
        lines.push(Line::raw(format!(
            "  {}",
            flat.preview_string(node, PREVIEW)
        )));
    }
    lines
}

fn draw_state<S: Source>(app: &mut App<S>, frame: &mut Frame<'_>, area: Rect) {
    let height = usize::from(area.height.saturating_sub(2));
    let flat = app.state_flat();
    // One walk gives the rows and the total; a second only when the tree shrank under the view.
    let top = scrolled(app.tree_top, app.tree_selected, height, usize::MAX);
    let mut window = outline::window(&flat, &app.expanded, top, height);
    app.tree_selected = app.tree_selected.min(window.total.saturating_sub(1));
    app.tree_top = scrolled(top, app.tree_selected, height, window.total);
    if app.tree_top != top {
        window = outline::window(&flat, &app.expanded, app.tree_top, height);
    }
    let changes = app.changes().to_vec();
    let lines: Vec<TreeLine> = window
        .rows
        .iter()
        .map(|row| tree_line(&flat, row, &changes))
        .collect();
    let applied = app.applied();
    let title = match applied.checked_sub(1) {
        Some(index) => format!(" state after input #{} ", app.facts.base_seq + index as u64),
        None => " state of the base checkpoint ".into(),
    };
    let focused = app.focus == Focus::State;
    TreeView {
        lines: &lines,
        selected: focused
            .then(|| app.tree_selected.checked_sub(app.tree_top))
            .flatten(),
        title,
        focused,
        theme: app.theme,
    }
    .render(area, frame.buffer_mut());
}

fn tree_line(flat: &Flat, row: &outline::Row, changes: &[Change]) -> TreeLine {
    let label = match row.path.0.last() {
        Some(Segment::Index(i)) => format!("[{i}]"),
        Some(Segment::Key(key)) => key.clone(),
        None => "(state)".into(),
    };
    let (fold, value) = match flat.container(row.node) {
        Some((kind, len)) if row.open => ("▾", size(kind, len)),
        Some(_) => ("▸", flat.preview_string(row.node, PREVIEW)),
        None => (" ", flat.preview_string(row.node, PREVIEW)),
    };
    TreeLine {
        depth: row.depth,
        fold,
        label,
        value,
        changed: changed(&row.path, changes),
    }
}

fn size(kind: outline::Kind, len: usize) -> String {
    match kind {
        outline::Kind::Seq => format!("[{} items]", count(len as u64)),
        outline::Kind::Map => format!("{{{} fields}}", count(len as u64)),
    }
}

/// Whether `path` is a changed value, inside one, or holds one.
fn changed(path: &Path, changes: &[Change]) -> Changed {
    let mut verdict = Changed::No;
    for change in changes {
        if path.0.starts_with(&change.path.0) {
            return Changed::Here;
        }
        if change.path.0.starts_with(&path.0) {
            verdict = Changed::Inside;
        }
    }
    verdict
}

fn status_line<S: Source>(app: &App<S>) -> Line<'static> {
    let facts = &app.facts;
    let mut parts = Vec::new();
    match app.selected_row() {
        Row::Input(index) => parts.push(format!(
            "input #{} ({} of {})",
            facts.base_seq + index as u64,
            count(index as u64 + 1),
            count(facts.len as u64)
        )),
        Row::Trace(_) => parts.push(format!(
            "event after {} of {} inputs",
            count(app.applied() as u64),
            count(facts.len as u64)
        )),
        Row::End => parts.push(format!("the end, after {} inputs", count(facts.len as u64))),
    }
    let when = match app.selected_row() {
        Row::Input(index) => app.source.input(index).map(|input| input.unix_ns),
        Row::Trace(j) => facts.traces.get(j).map(|trace| trace.unix_ns),
        Row::End => Some(facts.ending.unix_ns),
    };
    if let Some(unix_ns) = when {
        // The time of day (UTC); the timeline shows how long before the end, the pane the date.
        let stamp = utc(unix_ns);
        let time_of_day = stamp
            .split_once('T')
            .map_or(stamp.as_str(), |(_, time)| time);
        parts.push(time_of_day.to_owned());
    }
    parts.push(format!("{} {}", facts.machine, short_fate(facts)));
    if facts.lost > 0 {
        parts.push(format!("{} records overwritten or lost", count(facts.lost)));
    }
    parts.push(facts.verification.clone());
    Line::raw(format!(" {}", parts.join(" · ")))
}

fn hint_line<S: Source>(app: &App<S>) -> Line<'static> {
    if let Some(prompt) = &app.prompt {
        let what = match prompt.kind {
            PromptKind::Search => "search: ",
            PromptKind::Filter => "filter (input, trace, lane:NAME, text; empty clears): ",
        };
        return Line::from(vec![
            Span::styled(what, app.theme.label()),
            Span::raw(format!("{}▏", prompt.text)),
        ]);
    }
    if let Some(search) = &app.tracing {
        return Line::raw(format!(
            "looking back for the last change to {}… {:.0}% of {} inputs, {:.1}s (Esc cancels)",
            search.path,
            search.fraction() * 100.0,
            count(search.from as u64),
            search.started.elapsed().as_secs_f64()
        ));
    }
    if let Some(scan) = &app.scan {
        let what = match scan.purpose {
            Purpose::Filter { .. } => "filtering",
            Purpose::Search { .. } => "searching",
        };
        return Line::raw(format!(
            "{what}… {:.0}% of {} rows, {:.1}s (Esc cancels)",
            scan.fraction() * 100.0,
            count(scan.len as u64),
            scan.started.elapsed().as_secs_f64()
        ));
    }
    if let Some(message) = &app.message {
        return Line::raw(message.clone());
    }
    Line::styled(
        "←→ step  ↑↓ move  Tab pane  Enter fold  w who changed it  [ ] checkpoints  / search  f filter  t events  ? help  q quit",
        app.theme.quiet(),
    )
}

fn draw_help(frame: &mut Frame<'_>, area: Rect, theme: Theme) {
    let width = 62.min(area.width);
    let height = (HELP.len() as u16 + 4).min(area.height);
    let popup = Rect::new(
        area.x + (area.width - width) / 2,
        area.y + (area.height - height) / 2,
        width,
        height,
    );
    let mut lines: Vec<Line<'_>> = HELP
        .iter()
        .map(|(keys, what)| {
            Line::from(vec![
                Span::styled(format!("{keys:>10}  "), theme.label()),
                Span::raw(*what),
            ])
        })
        .collect();
    lines.push(Line::styled("any key closes this help", theme.quiet()));
    Clear.render(popup, frame.buffer_mut());
    Paragraph::new(lines)
        .block(pane(" keys ".into(), true, theme))
        .render(popup, frame.buffer_mut());
}
