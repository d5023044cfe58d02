//! The timeline pane.

use ratatui::buffer::Buffer;
use ratatui::layout::Rect;
use ratatui::style::Style;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Paragraph, Widget};

use super::Theme;

/// What kind of row a line shows, for its colour.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tone {
    /// An ordinary input.
    Input,
    /// An input a checkpoint preceded.
    Checkpoint,
    /// An input whose replay panicked, or whose checkpoint did not verify.
    Alarm,
    /// A trace event.
    Trace,
    /// The end of the recording.
    End,
}

/// One row of the timeline, formatted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TimelineLine {
    /// A one-character mark: `◆` checkpoint, `✖` panic or crash, `·` event.
    pub mark: &'static str,
    /// `#364225`, or blank for events.
    pub position: String,
    /// Time relative to the end.
    pub time: String,
    /// `input`, or the thread that recorded the event.
    pub who: String,
    /// The one-line summary.
    pub text: String,
    /// Its colour.
    pub tone: Tone,
}

/// The timeline pane: a window of lines, one of them selected.
pub struct TimelineView<'a> {
    /// The lines on screen.
    pub lines: &'a [TimelineLine],
    /// Index in `lines` of the selected one.
    pub selected: Option<usize>,
    /// The pane's title.
    pub title: String,
    /// Whether the arrow keys move here.
    pub focused: bool,
    /// Styles.
    pub theme: Theme,
}

impl Widget for TimelineView<'_> {
    fn render(self, area: Rect, buf: &mut Buffer) {
        let position_width = self
            .lines
            .iter()
            .map(|l| l.position.len())
            .max()
            .unwrap_or(0);
        let who_width = self
            .lines
            .iter()
            .map(|l| l.who.chars().count())
            .max()
            .unwrap_or(0)
            .min(12);
        let lines: Vec<Line<'_>> = self
            .lines
            .iter()
            .enumerate()
            .map(|(i, line)| {
                let tone = match line.tone {
                    Tone::Input => Style::new(),
                    Tone::Checkpoint => self.theme.checkpoint(),
                    Tone::Alarm | Tone::End => self.theme.alarm(),
                    Tone::Trace => self.theme.quiet(),
                };
                let who: String = line.who.chars().take(who_width).collect();
                let spans = vec![
                    Span::styled(format!("{} ", line.mark), tone),
                    Span::styled(format!("{:>position_width$} ", line.position), tone),
                    Span::styled(format!("{:>9} ", line.time), self.theme.quiet()),
                    Span::styled(format!("{who:<who_width$} "), self.theme.label()),
                    Span::styled(line.text.clone(), tone),
                ];
                let mut rendered = Line::from(spans);
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

/// A bordered pane, its border bright when focused.
pub fn pane(title: String, focused: bool, theme: Theme) -> Block<'static> {
    let style = if focused {
        theme.focused()
    } else {
        Style::new()
    };
    Block::new()
        .borders(Borders::ALL)
        .border_style(style)
        .title(Span::styled(title, style))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_align_in_columns_and_the_selection_is_reversed() {
        let line = |mark, position: &str, who: &str, text: &str, tone| TimelineLine {
            mark,
            position: position.into(),
            time: "-1.5ms".into(),
            who: who.into(),
            text: text.into(),
            tone,
        };
        let lines = [
            line(
                "◆",
                "#300000",
                "input",
                "Deposit { account: 3, amount: 9 }",
                Tone::Checkpoint,
            ),
            line("·", "", "settlement", "info batch settled", Tone::Trace),
            line("✖", "", "end", "crashed: panic", Tone::End),
        ];
        let view = TimelineView {
            lines: &lines,
            selected: Some(1),
            title: " timeline ".into(),
            focused: true,
            theme: Theme::new(false),
        };
        let mut buf = Buffer::empty(Rect::new(0, 0, 64, 5));
        view.render(buf.area, &mut buf);
        let expected = Buffer::with_lines([
            "┌ timeline ────────────────────────────────────────────────────┐",
            "│◆ #300000    -1.5ms input      Deposit { account: 3, amount: 9│",
            "│·            -1.5ms settlement info batch settled             │",
            "│✖            -1.5ms end        crashed: panic                 │",
            "└──────────────────────────────────────────────────────────────┘",
        ]);
        let text = |b: &Buffer| {
            b.content
                .iter()
                .map(|c| c.symbol().to_owned())
                .collect::<String>()
        };
        assert_eq!(text(&buf), text(&expected));
        assert!(buf[(3, 2)]
            .modifier
            .contains(ratatui::style::Modifier::REVERSED));
        assert!(!buf[(3, 1)]
            .modifier
            .contains(ratatui::style::Modifier::REVERSED));
    }
}
