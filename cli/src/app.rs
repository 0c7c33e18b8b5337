//! The dashboard's state besides the data: what is being watched, whether the endpoint
//! answers, pause, sort order, the name filter, and what each key does. No terminal here
//! either; [`super::view`] draws an [`App`], and tests drive [`App::on_key`] directly.

use std::time::Duration;

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

use super::{
    ingest::Scrape,
    model::{Model, Sort},
};

/// Whether the endpoint answers.
#[derive(Debug, Clone, PartialEq)]
pub enum Status {
    /// No scrape has finished yet.
    Connecting,
    /// The latest scrape worked and took this long.
    Up { took: Duration },
    /// The latest scrape failed; the next try is in `retry_in`.
    Down { error: String, attempts: u32, retry_in: Duration },
}

/// What the dashboard shows and how.
#[derive(Debug, Clone)]
pub struct App {
    /// What is watched (a URL, or "demo (in-process)").
    pub target: String,
    pub model: Model,
    pub status: Status,
    pub paused: bool,
    pub sort: Sort,
    /// Case-insensitive substring every row's `name{labels}` must contain.
    pub filter: String,
    /// `/` was pressed: keys go to the filter until Enter or Esc.
    pub editing_filter: bool,
    pub quit: bool,
}

impl App {
    pub fn new(target: impl Into<String>) -> App {
        App {
            target: target.into(),
            model: Model::new(),
            status: Status::Connecting,
            paused: false,
            sort: Sort::default(),
            filter: String::new(),
            editing_filter: false,
            quit: false,
        }
    }

    /// A scrape arrived at `at` seconds; ignored (but the endpoint counted as up) while paused.
    pub fn on_scrape(&mut self, at: f64, scrape: Scrape, took: Duration) {
        self.status = Status::Up { took };
        if !self.paused {
            self.model.update(at, scrape);
        }
    }

    /// A scrape failed; the data on screen stays (marked stale) until the endpoint is back.
    pub fn on_failure(&mut self, error: String, attempts: u32, retry_in: Duration) {
        self.status = Status::Down { error, attempts, retry_in };
    }

    /// Handles a key press: `q`/Ctrl-C quit, `p` pause, `s` next sort order, `/` edit the filter
    /// (Enter keeps it, Esc clears it), Esc clears the filter.
    pub fn on_key(&mut self, key: KeyEvent) {
        if key.code == KeyCode::Char('c') && key.modifiers.contains(KeyModifiers::CONTROL) {
            self.quit = true;
            return;
        }
        if self.editing_filter {
            match key.code {
                KeyCode::Enter => self.editing_filter = false,
                KeyCode::Esc => {
                    self.editing_filter = false;
                    self.filter.clear();
                }
                KeyCode::Backspace => {
                    self.filter.pop();
                }
                KeyCode::Char(c) => self.filter.push(c),
                _ => {}
            }
            return;
        }
        match key.code {
            KeyCode::Char('q') | KeyCode::Char('Q') => self.quit = true,
            KeyCode::Char('p') | KeyCode::Char('P') | KeyCode::Char(' ') => self.paused = !self.paused,
            KeyCode::Char('s') | KeyCode::Char('S') => self.sort = self.sort.next(),
            KeyCode::Char('/') => self.editing_filter = true,
            KeyCode::Esc => self.filter.clear(),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(c: KeyCode) -> KeyEvent {
        KeyEvent::new(c, KeyModifiers::NONE)
    }

    #[test]
    fn keys() {
        let mut app = App::new("x");
        app.on_key(key(KeyCode::Char('s')));
        assert_eq!(app.sort, Sort::Calls);
        app.on_key(key(KeyCode::Char('p')));
        assert!(app.paused);
        app.on_key(key(KeyCode::Char('/')));
        for c in "q/s".chars() {
            app.on_key(key(KeyCode::Char(c)));
        }
        assert!(!app.quit, "q while editing the filter is text");
        assert_eq!(app.filter, "q/s");
        app.on_key(key(KeyCode::Backspace));
        app.on_key(key(KeyCode::Enter));
        assert_eq!(app.filter, "q/");
        app.on_key(key(KeyCode::Esc));
        assert_eq!(app.filter, "");
        app.on_key(key(KeyCode::Char('q')));
        assert!(app.quit);
        let mut app = App::new("x");
        app.on_key(KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL));
        assert!(app.quit);
    }
}
