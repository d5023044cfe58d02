//! Colours, or none: `NO_COLOR` (https://no-color.org) leaves only bold, dim and reverse.

use ratatui::style::{Color, Modifier, Style};

/// The styles of every element.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Theme {
    color: bool,
}

impl Theme {
    /// Colours unless `NO_COLOR` is set to something.
    pub fn from_env() -> Theme {
        Theme::new(std::env::var_os("NO_COLOR").is_none_or(|value| value.is_empty()))
    }

    /// With or without colour.
    pub const fn new(color: bool) -> Theme {
        Theme { color }
    }

    fn fg(self, color: Color) -> Style {
        if self.color {
            Style::new().fg(color)
        } else {
            Style::new()
        }
    }

    /// The selected row.
    pub fn selected(self) -> Style {
        Style::new().add_modifier(Modifier::REVERSED)
    }

    /// A value the selected input changed.
    pub fn changed(self) -> Style {
        self.fg(Color::Yellow).add_modifier(Modifier::BOLD)
    }

    /// A container holding a changed value.
    pub fn holds_change(self) -> Style {
        self.fg(Color::Yellow)
    }

    /// The crash, a panic, a failed check.
    pub fn alarm(self) -> Style {
        self.fg(Color::Red).add_modifier(Modifier::BOLD)
    }

    /// A checkpoint, a passed check.
    pub fn checkpoint(self) -> Style {
        self.fg(Color::Cyan)
    }

    /// Trace events and secondary text.
    pub fn quiet(self) -> Style {
        if self.color {
            self.fg(Color::DarkGray)
        } else {
            Style::new().add_modifier(Modifier::DIM)
        }
    }

    /// Field names and labels.
    pub fn label(self) -> Style {
        self.fg(Color::Blue)
    }

    /// The border of the focused pane.
    pub fn focused(self) -> Style {
        self.fg(Color::Green).add_modifier(Modifier::BOLD)
    }

    /// The status line.
    pub fn status(self) -> Style {
        if self.color {
            Style::new().bg(Color::Blue).fg(Color::White)
        } else {
            Style::new().add_modifier(Modifier::REVERSED)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn without_colour_only_modifiers_remain() {
        let plain = Theme::new(false);
        for style in [
            plain.selected(),
            plain.changed(),
            plain.holds_change(),
            plain.alarm(),
            plain.checkpoint(),
            plain.quiet(),
            plain.label(),
            plain.focused(),
            plain.status(),
        ] {
            assert_eq!((style.fg, style.bg), (None, None), "{style:?}");
        }
        assert!(Theme::new(true).alarm().fg.is_some());
    }
}
