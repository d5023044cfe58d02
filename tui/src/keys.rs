//! Keys to actions: the one place that says what every key does.

use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyEventKind, KeyModifiers};

/// Everything the user can ask for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// The previous input (left, h).
    StepBack,
    /// The next input (right, l).
    StepForward,
    /// One row up in the focused pane.
    Up,
    /// One row down in the focused pane.
    Down,
    /// A page up in the focused pane.
    PageUp,
    /// A page down in the focused pane.
    PageDown,
    /// The first retained input (Home, g).
    First,
    /// The end: the crash (End, G).
    Last,
    /// The previous checkpoint (`[`).
    PreviousCheckpoint,
    /// The next checkpoint (`]`).
    NextCheckpoint,
    /// Ask for a search (`/`).
    Search,
    /// The next match (n).
    NextMatch,
    /// The previous match (N).
    PreviousMatch,
    /// Ask for a filter (f).
    Filter,
    /// Fold or unfold the selected tree node; in the timeline, go to the tree (Enter).
    Toggle,
    /// Go to the input that last changed the selected field; again for the change before (w).
    WhoChanged,
    /// Show or hide trace events (t).
    Traces,
    /// Switch between the timeline and the state tree (Tab).
    SwitchPane,
    /// Show or hide help (?).
    Help,
    /// Cancel a prompt, a search in progress, or close help (Esc).
    Cancel,
    /// Leave (q, Ctrl-C).
    Quit,
    /// Type a character into the prompt.
    Type(char),
    /// Erase the prompt's last character.
    Erase,
    /// Run the prompt.
    Submit,
}

/// The action of `key`; `typing` when a prompt takes the keyboard.
pub fn action(key: KeyEvent, typing: bool) -> Option<Action> {
    use Action::*;
    if key.kind == KeyEventKind::Release {
        return None;
    }
    let ctrl = key.modifiers.contains(KeyModifiers::CONTROL);
    if ctrl && key.code == KeyCode::Char('c') {
        return Some(Quit);
    }
    if typing {
        return match key.code {
            KeyCode::Char(c) if !ctrl => Some(Type(c)),
            KeyCode::Backspace => Some(Erase),
            KeyCode::Enter => Some(Submit),
            KeyCode::Esc => Some(Cancel),
            _ => None,
        };
    }
    Some(match key.code {
        KeyCode::Left | KeyCode::Char('h') => StepBack,
        KeyCode::Right | KeyCode::Char('l') => StepForward,
        KeyCode::Up | KeyCode::Char('k') => Up,
        KeyCode::Down | KeyCode::Char('j') => Down,
        KeyCode::PageUp => PageUp,
        KeyCode::PageDown | KeyCode::Char(' ') => PageDown,
        KeyCode::Home | KeyCode::Char('g') => First,
        KeyCode::End | KeyCode::Char('G') => Last,
        KeyCode::Char('[') => PreviousCheckpoint,
        KeyCode::Char(']') => NextCheckpoint,
        KeyCode::Char('/') => Search,
        KeyCode::Char('n') => NextMatch,
        KeyCode::Char('N') => PreviousMatch,
        KeyCode::Char('f') => Filter,
        KeyCode::Enter => Toggle,
        KeyCode::Char('w') => WhoChanged,
        KeyCode::Char('t') => Traces,
        KeyCode::Tab | KeyCode::BackTab => SwitchPane,
        KeyCode::Char('?') => Help,
        KeyCode::Esc => Cancel,
        KeyCode::Char('q') => Quit,
        _ => return None,
    })
}

/// The help screen: each key and what it does.
pub const HELP: &[(&str, &str)] = &[
    ("← → h l", "previous / next input"),
    ("↑ ↓ k j", "move in the focused pane"),
    ("PgUp PgDn", "a page up / down"),
    ("Home g", "first retained input"),
    ("End G", "the end: the crash"),
    ("[ ]", "previous / next checkpoint"),
    ("/ n N", "search; next / previous match"),
    ("f", "filter: input, trace, lane:NAME, text"),
    ("Tab", "switch timeline / state tree"),
    ("Enter", "fold / unfold the tree node"),
    ("w", "input that last changed the field (again: before)"),
    ("t", "show / hide trace events"),
    ("Esc", "cancel a search, close help"),
    ("?", "this help"),
    ("q", "quit"),
];

#[cfg(test)]
mod tests {
    use super::*;

    fn key(code: KeyCode) -> KeyEvent {
        KeyEvent::new(code, KeyModifiers::NONE)
    }

    #[test]
    fn keys_mean_one_thing_each_and_prompts_take_letters() {
        assert_eq!(
            action(key(KeyCode::Char('h')), false),
            Some(Action::StepBack)
        );
        assert_eq!(
            action(key(KeyCode::Char('h')), true),
            Some(Action::Type('h'))
        );
        assert_eq!(
            action(key(KeyCode::Char('q')), true),
            Some(Action::Type('q'))
        );
        assert_eq!(action(key(KeyCode::Enter), true), Some(Action::Submit));
        let ctrl_c = KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL);
        assert_eq!(action(ctrl_c, true), Some(Action::Quit));
        assert_eq!(action(key(KeyCode::F(5)), false), None);
    }
}
