//! The only part that owns a terminal: the interactive loop (raw mode, alternate screen,
//! keys, resize) and the plain loop for pipes. Both take updates from a `feed` closure and
//! hand them to the [`App`]; drawing is [`super::view::draw`].

use std::{
    io::{self, IsTerminal, Write},
    time::{Duration, Instant},
};

use crossterm::event::{self, Event, KeyEventKind};

use super::{app::App, ingest::Scrape, view};

/// One thing that happened at the data source.
#[derive(Debug)]
pub enum Update {
    /// A scrape at `at` seconds (the caller's monotonic clock).
    Scrape { at: f64, scrape: Box<Scrape>, took: Duration },
    /// A failed scrape; the next try is in `retry_in`.
    Failed { error: String, attempts: u32, retry_in: Duration },
}

impl Update {
    fn apply(self, app: &mut App) {
        match self {
            Update::Scrape { at, scrape, took } => app.on_scrape(at, *scrape, took),
            Update::Failed { error, attempts, retry_in } => app.on_failure(error, attempts, retry_in),
        }
    }
}

/// Whether stdout is an interactive terminal (otherwise `--no-tui` is implied).
pub fn interactive() -> bool {
    io::stdout().is_terminal()
}

/// Runs the dashboard until `q`, Ctrl-C or `deadline`.
pub fn run_tui(app: &mut App, mut feed: impl FnMut() -> Vec<Update>, deadline: Option<Instant>) -> io::Result<()> {
    // try_init: raw mode + alternate screen, and a panic hook that restores the terminal.
    let mut terminal = ratatui::try_init()?;
    let result = (|| {
        let mut dirty = true;
        let mut last_draw = Instant::now();
        // At least one round, so that what was scraped before the deadline is shown.
        let mut first = true;
        while first || (!app.quit && deadline.is_none_or(|d| Instant::now() < d)) {
            first = false;
            for u in feed() {
                u.apply(app);
                dirty = true;
            }
            // Redraw on news, and at least every second so "retrying in" counts down.
            if dirty || last_draw.elapsed() >= Duration::from_secs(1) {
                terminal.draw(|f| view::draw(f, app))?;
                dirty = false;
                last_draw = Instant::now();
            }
            if event::poll(Duration::from_millis(100))? {
                match event::read()? {
                    Event::Key(k) if k.kind != KeyEventKind::Release => {
                        app.on_key(k);
                        dirty = true;
                    }
                    // ratatui resizes its buffers on the next draw.
                    Event::Resize(..) => dirty = true,
                    _ => {}
                }
            }
        }
        Ok(())
    })();
    ratatui::restore();
    result
}

/// Prints [`super::text::table`] (or, with `frame`, the dashboard drawn as text at that size)
/// after every scrape, and failures to stderr, until `deadline`. Returns whether the last
/// scrape worked.
pub fn run_plain(
    app: &mut App,
    mut feed: impl FnMut() -> Vec<Update>,
    deadline: Option<Instant>,
    started: Instant,
    frame: Option<(u16, u16)>,
) -> io::Result<bool> {
    let mut up = true;
    let stdout = io::stdout();
    loop {
        for u in feed() {
            match &u {
                Update::Scrape { .. } => up = true,
                Update::Failed { error, attempts, retry_in } => {
                    up = false;
                    eprintln!(
                        "scrape failed (attempt {attempts}): {error}; retrying in {:.1}s",
                        retry_in.as_secs_f64()
                    );
                }
            }
            let scraped = matches!(u, Update::Scrape { .. });
            u.apply(app);
            if scraped {
                let text = match frame {
                    Some((w, h)) => view::to_text(app, w, h),
                    None => {
                        let title = format!("{:>6.1}s {}", started.elapsed().as_secs_f64(), app.target);
                        super::text::table(&app.model, &title, 12)
                    }
                };
                let mut out = stdout.lock();
                writeln!(out, "{text}")?;
                out.flush()?;
            }
        }
        // Checked after taking in what arrived, so that a first scrape slower than `--seconds`
        // (a big endpoint) is still printed.
        if deadline.is_some_and(|d| Instant::now() >= d) {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(up)
}
