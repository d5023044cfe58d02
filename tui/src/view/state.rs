//! The state pane (the tree, the changed fields highlighted) and the changes pane.

use ratatui::buffer::Buffer;
use ratatui::layout::Rect;
use ratatui::style::Style;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Paragraph, Widget};

use super::timeline::pane;
use super::Theme;
use crate::outline::Change;

/// How a tree row relates to what the selected input changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Changed {
    /// Untouched.
    No,
    /// It holds a changed value (a folded or unfolded container).
    Inside,
    /// It is a changed value.
    Here,
}

/// One row of the state tree, formatted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TreeLine {
    /// Indentation level.
    pub depth: usize,
    /// `▾` unfolded, `▸` folded, blank for a scalar.
    pub fold: &'static str,
    /// Field name or `[index]`.
    pub label: String,
    /// The value, or a container's size when unfolded.
    pub value: String,
    /// Whether the selected input changed it.
    pub changed: Changed,
}

/// The state tree pane.
pub struct TreeView<'a> {
    /// The lines on screen.
    pub lines: &'a [TreeLine],
    /// Index in `lines` of the selected one, when the pane is focused.
    pub selected: Option<usize>,
    /// Title.
    pub title: String,
    /// Whether the arrow keys move here.
    pub focused: bool,
    /// Styles.
    pub theme: Theme,
}

impl Widget for TreeView<'_> {
    fn render(self, area: Rect, buf: &mut Buffer) {
        let lines: Vec<Line<'_>> = self
            .lines
            .iter()
            .enumerate()
            .map(|(i, line)| {
                let value_style = match line.changed {
                    Changed::No => Style::new(),
                    Changed::Inside => self.theme.holds_change(),
                    Changed::Here => self.theme.changed(),
                };
                let marker = if line.changed == Changed::Here {
                    "●"
                } else {
                    " "
                };
                let mut rendered = Line::from(vec![
                    Span::styled(marker, self.theme.changed()),
                    Span::raw("  ".repeat(line.depth)),
                    Span::raw(format!("{} ", line.fold)),
                    Span::styled(format!("{}: ", line.label), self.theme.label()),
                    Span::styled(line.value.clone(), value_style),
                ]);
                if Some(i) == self.selected {
                    rendered = rendered.patch_style(self.theme.selected());
                }
                rendered
            })
            .collect();
        Paragraph::new(lines)
            .block(pane(self.title, self.focused, self.theme))
            .render(area, buf);
    }
}

/// The changes pane: every value the selected input changed, before → after.
pub struct ChangesView<'a> {
    /// The changes.
    pub changes: &'a [Change],
    /// Shown when there are none.
    pub empty: &'a str,
    /// Styles.
    pub theme: Theme,
}

impl Widget for ChangesView<'_> {
    fn render(self, area: Rect, buf: &mut Buffer) {
        let shown = |value: &Option<String>| value.clone().unwrap_or_else(|| "(absent)".into());
        let lines: Vec<Line<'_>> = if self.changes.is_empty() {
            vec![Line::styled(self.empty, self.theme.quiet())]
        } else {
            self.changes
                .iter()
                .map(|change| {
                    Line::from(vec![
                        Span::styled(format!("{}: ", change.path), self.theme.label()),
                        Span::raw(shown(&change.before)),
                        Span::raw(" → "),
                        Span::styled(shown(&change.after), self.theme.changed()),
                    ])
                })
                .collect()
        };
        let title = format!(" changed ({}) ", self.changes.len());
        Paragraph::new(lines)
            .block(pane(title, false, self.theme))
            .render(area, buf);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use flightrec_replayer::tree::Path;

    fn text(buf: &Buffer) -> Vec<String> {
        (0..buf.area.height)
            .map(|y| (0..buf.area.width).map(|x| buf[(x, y)].symbol()).collect())
            .collect()
    }

    #[test]
    fn the_tree_marks_changed_values_and_indents_children() {
        let line = |depth, fold, label: &str, value: &str, changed| TreeLine {
            depth,
            fold,
            label: label.into(),
            value: value.into(),
            changed,
        };
        let lines = [
            line(0, "▾", "accounts", "[2 items]", Changed::Inside),
            line(
                1,
                "▸",
                "[0]",
                "{ balance: 9059, operations: 1 }",
                Changed::Inside,
            ),
            line(1, "▸", "[1]", "{ balance: 5, operations: 2 }", Changed::No),
            line(0, " ", "deposited", "2800755561", Changed::Here),
        ];
        let mut buf = Buffer::empty(Rect::new(0, 0, 44, 6));
        TreeView {
            lines: &lines,
            selected: None,
            title: " state ".into(),
            focused: false,
            theme: Theme::new(false),
        }
        .render(buf.area, &mut buf);
        assert_eq!(
            text(&buf),
            [
                "┌ state ───────────────────────────────────┐",
                "│ ▾ accounts: [2 items]                    │",
                "│   ▸ [0]: { balance: 9059, operations: 1 }│",
                "│   ▸ [1]: { balance: 5, operations: 2 }   │",
                "│●  deposited: 2800755561                  │",
                "└──────────────────────────────────────────┘",
            ]
        );
    }

    #[test]
    fn changes_read_before_and_after() {
        let changes = [Change {
            path: Path::parse("accounts[0].balance").unwrap(),
            before: Some("79155".into()),
            after: Some("9059".into()),
        }];
        let mut buf = Buffer::empty(Rect::new(0, 0, 40, 3));
        ChangesView {
            changes: &changes,
            empty: "nothing",
            theme: Theme::new(false),
        }
        .render(buf.area, &mut buf);
        assert_eq!(text(&buf)[1], "│accounts[0].balance: 79155 → 9059     │");
    }
}
