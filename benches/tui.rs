//! The cost of a key press in the terminal UI on a history of 10,000,000 inputs: the state
//! change plus a full render, beside the in-run baseline of rendering a static screen of the
//! same size. Target: every key press under 16 ms (one frame at 60 Hz).
//!
//! | group     | benchmark           | what one iteration is                                   |
//! |-----------|---------------------|---------------------------------------------------------|
//! | `tui_10M` | `static_screen`     | baseline: draw a screen of fixed text, every cell set    |
//! | `tui_10M` | `step_back`         | ← : the previous input, its state, diff and tree, drawn  |
//! | `tui_10M` | `jump_first_last`   | Home or End, alternately, across all 10M inputs, drawn;  |
//! |           |                     | the states kept for stepping are dropped first           |
//! | `tui_10M` | `who_changed`       | `w` on an account's balance: the first 4 ms of looking   |
//! |           |                     | back (the rest runs between key presses), drawn          |
//! | `tui_10M` | `page_down`         | PgDn in the timeline, drawn                              |
//!
//! The machine is a ledger of 65,536 accounts (the size the demo's ledger reaches when it
//! crashes), so every state shown is a tree of about 200,000 values: the tree pane must not
//! cost in proportion to it. The screen is 200 x 50 cells on ratatui's `TestBackend`.
//!
//! The ring file (about 1 GiB, on tmpfs where there is one) is recorded and replayed once
//! before the benchmarks; that takes a few seconds and is printed.

mod common;

use std::hint::black_box;
use std::time::{Duration, Instant};

use common::ring_dir;
use criterion::{criterion_group, criterion_main, Criterion};
use flightrec::demo::Ledger;
use flightrec_recorder::{Builder, Machine, Tick};
use flightrec_replayer::History;
use flightrec_tui::view::{self, Theme};
use flightrec_tui::{Action, App};
use rand::{Rng, SeedableRng};
use rand_pcg::Pcg64Mcg;
use ratatui::backend::TestBackend;
use ratatui::text::Line;
use ratatui::widgets::{Block, Borders, Paragraph};
use ratatui::Terminal;
use serde::{Deserialize, Serialize};

/// Inputs in the history.
const HISTORY_INPUTS: u64 = 10_000_000;
/// Accounts in the ledger.
const ACCOUNTS: u32 = 65_536;
/// Screen size.
const WIDTH: u16 = 200;
const HEIGHT: u16 = 50;
const SEED: u64 = 0x7e1e_4e91;

/// The demo ledger's accounts with a transfer-only input, so that 10M inputs never trip the
/// demo's latent bug.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct Bank {
    ledger: Ledger,
    moved: u64,
}

#[derive(Clone, Copy, Debug, Serialize, Deserialize)]
struct Move {
    from: u32,
    to: u32,
    cents: u64,
}

impl Machine for Bank {
    const NAME: &'static str = "bench-bank";
    const VERSION: u32 = 1;
    type Input = Move;

    fn apply(&mut self, input: &Move, _tick: Tick) {
        let accounts = &mut self.ledger.accounts;
        let (from, to) = (input.from as usize, input.to as usize);
        if accounts[from].balance >= input.cents {
            accounts[from].balance -= input.cents;
            accounts[from].operations += 1;
            accounts[to].balance += input.cents;
            accounts[to].operations += 1;
            self.moved += input.cents;
        }
    }
}

fn bank() -> Bank {
    let mut ledger = Ledger::default();
    ledger.accounts = (0..ACCOUNTS)
        .map(|_| flightrec::demo::ledger::Account {
            balance: 100_000,
            operations: 0,
        })
        .collect();
    Bank { ledger, moved: 0 }
}

/// Records and replays the 10M-input history.
fn history(dir: &std::path::Path) -> History<Bank> {
    let started = Instant::now();
    let mut recorded = Builder::new()
        .path(dir.join("bank.ring"))
        .input_lane_bytes(1 << 30) // lanes hold a power of two of slots: 16,777,216
        .trace_lanes(1)
        .trace_lane_bytes(1 << 20)
        .state_capacity(4 << 20)
        .checkpoint_every_inputs(u32::MAX as u64)
        .checkpoint_every(Duration::from_secs(24 * 3600))
        .crash_capture(false)
        .counters(false)
        .build(bank())
        .expect("create the ring file");
    let tracer = recorded.tracer();
    let mut rng = Pcg64Mcg::seed_from_u64(SEED);
    for n in 0..HISTORY_INPUTS {
        recorded.apply(&Move {
            from: rng.gen_range(0..ACCOUNTS),
            to: rng.gen_range(0..ACCOUNTS),
            cents: rng.gen_range(1..5_000),
        });
        if n % 10_000 == 0 {
            tracer.event(flightrec_recorder::Level::Info, "ten thousand more moves");
        }
    }
    let path = recorded.finish();
    let recorded_in = started.elapsed();
    let history = History::<Bank>::open(&path).expect("replay the ring file");
    assert_eq!(history.len() as u64, HISTORY_INPUTS);
    eprintln!(
        "tui_10M: recorded in {recorded_in:.2?}, opened and replayed in {:.2?}; snapshot \
         interval {} inputs",
        started.elapsed() - recorded_in,
        history.snapshot_interval()
    );
    history
}

fn test_terminal() -> Terminal<TestBackend> {
    Terminal::new(TestBackend::new(WIDTH, HEIGHT)).expect("test terminal")
}

/// Moves the state tree's selection to `target`, unfolding the nodes on the way.
fn select_field(app: &mut App<History<Bank>>, target: &str) {
    app.handle(Action::SwitchPane);
    for _ in 0..100 {
        let Some(path) = app.selected_field().map(|p| p.to_string()) else {
            break;
        };
        if path == target {
            return;
        }
        if target.starts_with(&path) && target[path.len()..].starts_with(['.', '[']) {
            app.handle(Action::Toggle);
            // Toggling an already unfolded node folds it: unfold it again.
            app.handle(Action::Down);
            let inside = app
                .selected_field()
                .is_some_and(|p| p.to_string().starts_with(&path));
            if !inside {
                app.handle(Action::Up);
                app.handle(Action::Toggle);
                app.handle(Action::Down);
            }
            continue;
        }
        app.handle(Action::Down);
    }
    panic!("could not select {target}");
}

/// Presses `key` and draws the screen.
fn press(app: &mut App<History<Bank>>, terminal: &mut Terminal<TestBackend>, key: Action) {
    app.handle(key);
    terminal.draw(|frame| view::draw(app, frame)).expect("draw");
}

fn tui_10m(c: &mut Criterion) {
    let dir = ring_dir();
    let mut app = App::new(history(dir.path()));
    app.set_theme(Theme::new(true));
    let mut terminal = test_terminal();
    terminal
        .draw(|frame| view::draw(&mut app, frame))
        .expect("draw");

    let mut group = c.benchmark_group("tui_10M");
    group.bench_function("static_screen", |b| {
        let mut terminal = test_terminal();
        let lines: Vec<Line<'_>> = (0..HEIGHT)
            .map(|row| Line::raw(format!("{row:>4} {}", "static text ".repeat(20))))
            .collect();
        b.iter(|| {
            terminal
                .draw(|frame| {
                    let text =
                        Paragraph::new(lines.clone()).block(Block::new().borders(Borders::ALL));
                    frame.render_widget(text, frame.area());
                })
                .expect("draw");
            black_box(terminal.backend());
        })
    });
    group.bench_function("step_back", |b| {
        press(&mut app, &mut terminal, Action::Last);
        b.iter(|| press(&mut app, &mut terminal, Action::StepBack))
    });
    let mut first = true;
    group.bench_function("jump_first_last", |b| {
        b.iter(|| {
            first = !first;
            let key = if first { Action::First } else { Action::Last };
            app.forget_states();
            press(&mut app, &mut terminal, key)
        })
    });
    group.bench_function("who_changed", |b| {
        // An account's balance, which changes every 30,000 inputs or so: `w` looks back
        // through more inputs than its first slice covers, and goes on between key presses.
        press(&mut app, &mut terminal, Action::Last);
        select_field(&mut app, "ledger.accounts[7].balance");
        b.iter(|| press(&mut app, &mut terminal, Action::WhoChanged))
    });
    press(&mut app, &mut terminal, Action::SwitchPane);
    group.bench_function("page_down", |b| {
        press(&mut app, &mut terminal, Action::First);
        b.iter(|| press(&mut app, &mut terminal, Action::PageDown))
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(30).warm_up_time(Duration::from_secs(1));
    targets = tui_10m
}
criterion_main!(benches);
