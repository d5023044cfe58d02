//! The whole application driven by scripted keys into a test backend, each screen compared with
//! a committed snapshot (`tui/tests/snapshots`; review changes with `cargo insta review`, or
//! rerun with `INSTA_UPDATE=always` and read the diff).
//!
//! The recording is made here, in process, with a fixed sequence of inputs and trace events, so
//! every screen is the same on every run except for clock readings, which are masked.

use std::path::PathBuf;

use flightrec_recorder::{Builder, Level, Machine, Tick};
use flightrec_replayer::History;
use flightrec_tui::timeline::Row;
use flightrec_tui::view::{self, Theme};
use flightrec_tui::{Action, App};
use ratatui::backend::TestBackend;
use ratatui::Terminal;
use serde::{Deserialize, Serialize};

/// A shop's shelves: each input restocks or sells one product.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
struct Shop {
    shelves: Vec<Shelf>,
    sales: u64,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
struct Shelf {
    product: String,
    stock: u64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
enum Order {
    Restock { shelf: u8, units: u64 },
    Sell { shelf: u8 },
}

impl Machine for Shop {
    const NAME: &'static str = "shop";
    const VERSION: u32 = 1;
    type Input = Order;

    fn apply(&mut self, input: &Order, _tick: Tick) {
        match *input {
            Order::Restock { shelf, units } => {
                let at = usize::from(shelf);
                if self.shelves.len() <= at {
                    self.shelves.resize_with(at + 1, Shelf::default);
                    self.shelves[at].product = format!("product {at}");
                }
                self.shelves[at].stock += units;
            }
            Order::Sell { shelf } => {
                if let Some(shelf) = self.shelves.get_mut(usize::from(shelf)) {
                    shelf.stock = shelf.stock.saturating_sub(1);
                    self.sales += 1;
                }
            }
        }
    }
}

fn order(n: u64) -> Order {
    if n % 3 == 0 {
        Order::Restock {
            shelf: (n % 4) as u8,
            units: n,
        }
    } else {
        Order::Sell {
            shelf: (n % 4) as u8,
        }
    }
}

/// 60 orders, a checkpoint every 20, a trace event every 10.
fn recording(dir: &tempfile::TempDir) -> PathBuf {
    let mut recorded = Builder::new()
        .path(dir.path().join("shop.ring"))
        .input_lane_bytes(64 << 10)
        .trace_lanes(1)
        .trace_lane_bytes(16 << 10)
        .state_capacity(16 << 10)
        .checkpoint_every_inputs(20)
        .crash_capture(false)
        .counters(false)
        .build(Shop::default())
        .expect("create the ring file");
    let tracer = recorded.tracer();
    for n in 0..60 {
        recorded.apply(&order(n));
        if n % 10 == 9 {
            tracer.event(Level::Info, &format!("{} orders served", n + 1));
        }
    }
    recorded.finish()
}

struct Screen {
    app: App<History<Shop>>,
    terminal: Terminal<TestBackend>,
    _dir: tempfile::TempDir,
}

impl Screen {
    fn open() -> Screen {
        let dir = tempfile::tempdir().expect("temporary directory");
        let history = History::<Shop>::open(&recording(&dir)).expect("replay the recording");
        let mut app = App::new(history);
        app.set_theme(Theme::new(false));
        Screen {
            app,
            terminal: Terminal::new(TestBackend::new(110, 28)).expect("test terminal"),
            _dir: dir,
        }
    }

    /// Presses `keys` in order (each drawn before the next, as a user sees them), letting any
    /// search or filter finish, and returns the screen.
    fn press(&mut self, keys: &[Action]) -> String {
        for &key in keys {
            self.draw();
            self.app.handle(key);
            while self.app.is_busy() {
                self.app.work(std::time::Duration::from_millis(50));
            }
        }
        self.draw()
    }

    fn typing(&mut self, text: &str) -> String {
        let keys: Vec<Action> = text.chars().map(Action::Type).collect();
        self.press(&keys)
    }

    fn draw(&mut self) -> String {
        let app = &mut self.app;
        self.terminal
            .draw(|frame| view::draw(app, frame))
            .expect("draw");
        self.terminal.backend().to_string()
    }
}

/// Snapshots with the clock readings masked: they differ on every run.
macro_rules! assert_screen {
    ($name:expr, $screen:expr) => {
        insta::with_settings!({filters => vec![
            (r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", "<utc>"),
            (r"\d\d:\d\d:\d\d\.\d{3}Z", "<time>"),
            (r" *[+-]?[0-9.]+(ns|µs|ms|s) ", " <ago> "),
        ]}, {
            insta::assert_snapshot!($name, $screen);
        });
    };
}

#[test]
fn opens_at_the_end_of_the_recording() {
    let mut screen = Screen::open();
    assert_eq!(screen.app.selected_row(), Row::End);
    assert_screen!("opens_at_the_end", screen.draw());
}

#[test]
fn stepping_back_shows_each_input_and_what_it_changed() {
    use Action::*;
    let mut screen = Screen::open();
    let shown = screen.press(&[StepBack, StepBack]);
    assert_eq!(screen.app.selected_row(), Row::Input(18));
    assert_screen!("two_inputs_back", shown);
    let shown = screen.press(&[StepForward]);
    assert_eq!(screen.app.selected_row(), Row::Input(19));
    assert!(shown.contains("sales: 37 → 38"), "{shown}");
}

#[test]
fn the_tree_folds_and_w_finds_who_changed_a_field() {
    use Action::*;
    let mut screen = Screen::open();
    screen.press(&[StepBack, SwitchPane, Down, Down, Toggle, Down]);
    // On shelves[1].product, then stock: the last input to touch shelf 1's stock.
    let shown = screen.press(&[Down, WhoChanged]);
    assert_screen!("who_changed_shelf_1", shown);
    let first = screen.app.selected_row();
    screen.press(&[WhoChanged]);
    let second = screen.app.selected_row();
    assert!(second < first, "{second:?} is before {first:?}");
    // Up to shelves[1] and fold it.
    let shown = screen.press(&[Up, Up, Toggle]);
    assert!(shown.contains("▸ [1]: { product: \"\", stock: "), "{shown}");
}

#[test]
fn search_and_filter_find_rows_and_the_end_stays() {
    use Action::*;
    let mut screen = Screen::open();
    screen.press(&[Search]);
    screen.typing("orders served");
    screen.press(&[Submit]);
    let found = screen.app.selected_row();
    assert!(matches!(found, Row::Trace(0)), "{found:?}");
    screen.press(&[NextMatch]);
    assert_eq!(screen.app.selected_row(), Row::Trace(1));
    screen.press(&[PreviousMatch]);
    assert_eq!(screen.app.selected_row(), Row::Trace(0));

    screen.press(&[Filter]);
    screen.typing("restock shelf: 2,");
    let shown = screen.press(&[Submit]);
    assert_screen!("filtered_restocks_of_shelf_2", shown);
    // Clearing the filter: an empty filter line.
    screen.press(&[Filter]);
    screen.press(&[Erase; 20]);
    let shown = screen.press(&[Submit]);
    assert!(shown.contains("filter cleared"), "{shown}");
}

#[test]
fn checkpoints_ends_and_trace_toggle() {
    use Action::*;
    let mut screen = Screen::open();
    // Two checkpoint slots: the one at input 40, where replay starts, and the final one at the
    // clean exit, after the last input.
    screen.press(&[PreviousCheckpoint]);
    assert_eq!(screen.app.selected_row(), Row::Input(0));
    let shown = screen.press(&[PreviousCheckpoint]);
    assert!(shown.contains("no earlier checkpoint"), "{shown}");
    let shown = screen.press(&[NextCheckpoint]);
    assert!(shown.contains("no later checkpoint"), "{shown}");
    screen.press(&[Last, First]);
    assert_eq!(screen.app.selected_row(), Row::Input(0));
    let shown = screen.press(&[Traces]);
    assert!(!shown.contains("orders served"), "{shown}");
    screen.press(&[Last]);
    assert_eq!(screen.app.selected_row(), Row::End);
    let shown = screen.press(&[Traces]);
    assert!(shown.contains("60 orders served"), "{shown}");
}

#[test]
fn help_opens_and_any_key_closes_it_and_resizing_redraws() {
    use Action::*;
    let mut screen = Screen::open();
    assert_screen!("help", screen.press(&[Help]));
    let shown = screen.press(&[StepBack]);
    assert!(!shown.contains(" keys "), "help closed");
    screen.terminal.backend_mut().resize(60, 16);
    assert_screen!("small_terminal", screen.draw());
    screen.press(&[Quit]);
    assert!(screen.app.should_quit());
}

/// The same recording read from an export, with no machine: every input's row, the selected
/// input in full, its state and its changes show as they do from the ring file.
#[test]
fn an_export_shows_the_same_inputs_states_and_changes_as_its_ring_file() {
    use flightrec_replayer::export::{export_history, Export, HistoryExportOptions};
    let dir = tempfile::tempdir().expect("temporary directory");
    let ring = recording(&dir);
    let mut history = History::<Shop>::open(&ring).expect("replay the recording");
    let inputs = history.len();
    let out = dir.path().join("shop.flightrec");
    let options = HistoryExportOptions {
        keyframe_every: 16,
        ..HistoryExportOptions::default()
    };
    export_history(&mut history, &out, &options, &mut |_, _| {}).expect("export");
    let mut from_ring = App::new(History::<Shop>::open(&ring).expect("replay the recording"));
    let mut from_export = App::new(Export::open(&out).expect("open the export"));
    from_ring.set_theme(Theme::new(false));
    from_export.set_theme(Theme::new(false));
    let mut terminal = Terminal::new(TestBackend::new(110, 28)).expect("test terminal");
    let mut ring_screen = |app: &mut App<History<Shop>>| {
        terminal.draw(|frame| view::draw(app, frame)).expect("draw");
        terminal.backend().to_string()
    };
    let mut export_terminal = Terminal::new(TestBackend::new(110, 28)).expect("test terminal");
    let mut export_screen = |app: &mut App<Export>| {
        export_terminal
            .draw(|frame| view::draw(app, frame))
            .expect("draw");
        export_terminal.backend().to_string()
    };
    ring_screen(&mut from_ring);
    let end = export_screen(&mut from_export);
    assert!(
        end.contains(&format!("the end, after {inputs} inputs")),
        "{end}"
    );
    // Each screen matches the ring file's above its status line, but for what only a replay
    // knows: that a checkpoint's hash was verified here, and the end's details.
    let comparable = |screen: &str| -> Vec<String> {
        let lines: Vec<&str> = screen.lines().collect();
        lines[..lines.len() - 3]
            .iter()
            .filter(|line| {
                !line.contains("checkpoint taken before this input")
                    && !line.contains("hash matches the replay")
            })
            .map(|line| line.to_string())
            .collect()
    };
    let keys = std::iter::repeat_n(Action::StepBack, inputs + 2).chain([
        Action::SwitchPane,
        Action::Down,
        Action::Toggle,
        Action::Down,
        Action::Down,
        Action::WhoChanged,
    ]);
    for (step, key) in keys.enumerate() {
        from_ring.handle(key);
        from_export.handle(key);
        while from_export.is_busy() || from_ring.is_busy() {
            from_ring.work(std::time::Duration::from_millis(50));
            from_export.work(std::time::Duration::from_millis(50));
        }
        let (ring, export) = (ring_screen(&mut from_ring), export_screen(&mut from_export));
        let differing: Vec<(String, String)> = comparable(&export)
            .into_iter()
            .zip(comparable(&ring))
            .filter(|(a, b)| a != b)
            .collect();
        assert!(
            differing.is_empty(),
            "after key {step} ({key:?}), export vs ring file: {differing:#?}\n{export}"
        );
        assert_eq!(from_export.selected_row(), from_ring.selected_row());
    }
}
