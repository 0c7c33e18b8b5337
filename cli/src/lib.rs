//! The modules of the `shardmetrics` binary: `demo` (a simulated service measured with the
//! public API), `top` (a live dashboard for any endpoint), `report` and `export` (one scrape to
//! text or a file). A library only so the dashboard renders headless in tests; not a stable API.
//!
//! Data flows one way: [`fetch`] (HTTP) or the demo's own snapshots → [`ingest`] (the body
//! becomes an [`ingest::Scrape`]) → [`model`] (successive scrapes become a [`model::Model`]) →
//! [`view`] (ratatui, any backend) or [`text`] (plain). Only [`terminal`] touches the terminal,
//! so the dashboard renders headless in tests.

#![forbid(unsafe_code)]

pub mod app;
pub mod args;
pub mod demo;
pub mod export;
pub mod fetch;
pub mod human;
pub mod ingest;
pub mod model;
pub mod report;
pub mod terminal;
pub mod text;
pub mod top;
pub mod view;

use std::fmt;

/// `report --strict` found warnings; or an unexpected failure.
pub const EXIT_FAILURE: u8 = 1;
/// Bad command line (clap's own code).
pub const EXIT_USAGE: u8 = 2;
/// The endpoint cannot be reached, or the demo cannot listen on its address.
pub const EXIT_UNREACHABLE: u8 = 3;
/// The endpoint answered with an HTTP error or with something that is not metrics.
pub const EXIT_BAD_RESPONSE: u8 = 4;
/// The output file cannot be written.
pub const EXIT_WRITE: u8 = 5;

/// A failure to report on stderr, with the exit code it maps to.
#[derive(Debug)]
pub struct CliError {
    pub code: u8,
    pub message: String,
}

impl CliError {
    pub fn new(code: u8, message: impl Into<String>) -> CliError {
        CliError { code, message: message.into() }
    }
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl From<std::io::Error> for CliError {
    fn from(e: std::io::Error) -> CliError {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            // `shardmetrics … | head`: the reader left; nothing went wrong here.
            return CliError::new(0, "");
        }
        CliError::new(EXIT_FAILURE, format!("I/O error: {e}"))
    }
}
