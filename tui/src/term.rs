//! The terminal: set up, always restored (on error and on panic too), and the event loop.

use std::io::{self, IsTerminal, Stdout};
use std::path::Path;
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use flightrec_replayer::export::{Export, ExportError};
use flightrec_replayer::{History, Progress, ReplayError, ReplayOptions};
use flightrec_schemas::Machine;
use ratatui::backend::CrosstermBackend;
use ratatui::crossterm::event::{
    self, DisableMouseCapture, EnableMouseCapture, Event, KeyCode, KeyModifiers, MouseEventKind,
};
use ratatui::crossterm::execute;
use ratatui::crossterm::terminal::{
    disable_raw_mode, enable_raw_mode, EnterAlternateScreen, LeaveAlternateScreen,
};
use ratatui::layout::{Constraint, Layout};
use ratatui::text::Line;
use ratatui::widgets::{Paragraph, Widget};
use ratatui::Terminal;

use crate::app::App;
use crate::keys;
use crate::source::Source;
use crate::view::{self, pane, Theme};

/// Longest a search or filter works between two looks at the keyboard.
const WORK_SLICE: Duration = Duration::from_millis(10);
/// How long the loop sleeps waiting for a key when there is nothing to do.
const IDLE_POLL: Duration = Duration::from_millis(250);

/// Why the TUI could not run.
#[derive(Debug, thiserror::Error)]
pub enum TuiError {
    /// Standard output is not a terminal.
    #[error(
        "the terminal UI needs a terminal; `flightrec replay FILE` prints the same history as text"
    )]
    NotATerminal,
    /// The terminal failed.
    #[error("terminal: {0}")]
    Io(#[from] io::Error),
    /// The file could not be replayed.
    #[error(transparent)]
    Replay(#[from] ReplayError),
    /// The export could not be read.
    #[error(transparent)]
    Export(#[from] ExportError),
}

/// Opens `path` (showing progress meanwhile), then runs the TUI over it until the user quits.
pub fn run<M>(path: &Path, options: &ReplayOptions) -> Result<(), TuiError>
where
    M: Machine + Clone + Send + 'static,
{
    if !io::stdout().is_terminal() {
        return Err(TuiError::NotATerminal);
    }
    let mut terminal = TerminalGuard::enter()?;
    let Some(history) = open::<M>(&mut terminal.terminal, path, options)? else {
        return Ok(());
    };
    let mut app = App::new(history);
    event_loop(&mut terminal.terminal, &mut app)
}

/// Runs the TUI over a history already replayed, or an export, until the user quits.
pub fn show<S: Source>(source: S) -> Result<(), TuiError> {
    if !io::stdout().is_terminal() {
        return Err(TuiError::NotATerminal);
    }
    let mut terminal = TerminalGuard::enter()?;
    event_loop(&mut terminal.terminal, &mut App::new(source))
}

/// Opens the export at `path` (no machine needed) and runs the TUI over it until the user quits.
pub fn run_export(path: &Path) -> Result<(), TuiError> {
    let export = Export::open(path)?;
    show(export)
}

type Term = Terminal<CrosstermBackend<Stdout>>;

/// The TUI's main loop: draw, wait for a key (or work on a search), act.
fn event_loop<S: Source>(terminal: &mut Term, app: &mut App<S>) -> Result<(), TuiError> {
    while !app.should_quit() {
        terminal.draw(|frame| view::draw(app, frame))?;
        let wait = if app.is_busy() {
            Duration::ZERO
        } else {
            IDLE_POLL
        };
        if event::poll(wait)? {
            match event::read()? {
                Event::Key(key) => {
                    if let Some(action) = keys::action(key, app.prompt.is_some()) {
                        app.handle(action);
                    }
                }
                Event::Mouse(mouse) => match mouse.kind {
                    MouseEventKind::ScrollDown => app.scroll(mouse.column, mouse.row, true),
                    MouseEventKind::ScrollUp => app.scroll(mouse.column, mouse.row, false),
                    _ => {}
                },
                // The next draw takes the new size.
                _ => {}
            }
        }
        app.work(WORK_SLICE);
    }
    Ok(())
}

/// Replays `path` on another thread while the screen shows how long it has been at it.
/// `None` when the user gave up waiting.
fn open<M>(
    terminal: &mut Term,
    path: &Path,
    options: &ReplayOptions,
) -> Result<Option<History<M>>, TuiError>
where
    M: Machine + Clone + Send + 'static,
{
    let (done, result) = mpsc::channel();
    let progress = Arc::new(Progress::default());
    let mut options = options.clone();
    options.progress = Some(Arc::clone(&progress));
    let owned_path = path.to_owned();
    std::thread::Builder::new()
        .name("flightrec-replay".into())
        .spawn(move || {
            let _ = done.send(History::<M>::open_with(&owned_path, &options));
        })?;
    let started = Instant::now();
    let bytes = std::fs::metadata(path).map_or(0, |m| m.len());
    let theme = Theme::from_env();
    loop {
        match result.recv_timeout(Duration::from_millis(100)) {
            Ok(history) => return Ok(Some(history?)),
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                return Err(io::Error::other("the replay thread died").into())
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
        }
        let elapsed = started.elapsed();
        terminal.draw(|frame| {
            let [_, middle, _] = Layout::vertical([
                Constraint::Fill(1),
                Constraint::Length(6),
                Constraint::Fill(1),
            ])
            .areas(frame.area());
            let spinner = ["⠋", "⠙", "⠹", "⠸", "⠼", "⠴", "⠦", "⠧", "⠇", "⠏"];
            let tick = (elapsed.as_millis() / 100) as usize % spinner.len();
            let lines = vec![
                Line::raw(format!(
                    "{} {} ({} MiB)",
                    spinner[tick],
                    path.display(),
                    bytes >> 20,
                )),
                Line::raw(loading_status(&progress, elapsed)),
                Line::styled("q or Ctrl-C gives up", theme.quiet()),
            ];
            Paragraph::new(lines)
                .block(pane(" flightrec ".into(), true, theme))
                .render(middle, frame.buffer_mut());
        })?;
        while event::poll(Duration::ZERO)? {
            if let Event::Key(key) = event::read()? {
                let ctrl_c =
                    key.code == KeyCode::Char('c') && key.modifiers.contains(KeyModifiers::CONTROL);
                if key.code == KeyCode::Char('q') || key.code == KeyCode::Esc || ctrl_c {
                    return Ok(None);
                }
            }
        }
    }
}

/// One line on how far opening has come: the stage, while replaying the inputs done, and the time.
fn loading_status(progress: &Progress, elapsed: Duration) -> String {
    format!("{}: {:.1}s", progress.describe(), elapsed.as_secs_f64())
}

/// The terminal in raw mode on the alternate screen with the mouse captured; dropping it (or a
/// panic anywhere) gives the user's terminal back as it was.
struct TerminalGuard {
    terminal: Term,
}

impl TerminalGuard {
    fn enter() -> io::Result<TerminalGuard> {
        install_panic_hook();
        enable_raw_mode()?;
        let mut stdout = io::stdout();
        if let Err(error) = execute!(stdout, EnterAlternateScreen, EnableMouseCapture) {
            restore();
            return Err(error);
        }
        let mut terminal =
            Terminal::new(CrosstermBackend::new(stdout)).inspect_err(|_| restore())?;
        // Some terminals keep old text on the alternate screen; ratatui draws only what differs
        // from a blank screen.
        terminal.clear().inspect_err(|_| restore())?;
        Ok(TerminalGuard { terminal })
    }
}

impl Drop for TerminalGuard {
    fn drop(&mut self) {
        restore();
        let _ = self.terminal.show_cursor();
    }
}

/// Leaves raw mode and the alternate screen; harmless when already left.
fn restore() {
    let _ = disable_raw_mode();
    let _ = execute!(io::stdout(), DisableMouseCapture, LeaveAlternateScreen);
}

/// Restores the terminal before the panic message is printed, so the message is readable and
/// the shell usable. Installed once; the previous hook still runs. A panic that a replay is
/// about to catch (the recorded crash, re-applied while seeking) is not the UI's: the screen
/// stays.
fn install_panic_hook() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if !flightrec_replayer::replaying() {
                restore();
            }
            previous(info);
        }));
    });
}
