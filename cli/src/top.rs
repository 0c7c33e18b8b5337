//! `shardmetrics top URL`: scrapes an endpoint on a background thread and shows the dashboard
//! (or, without a terminal, a plain table per scrape).
//!
//! The first scrape happens in the foreground, so a wrong address is an error at once (unless
//! `--wait`). After that an endpoint that goes away is shown as down, with the last data kept
//! on screen, and retried with exponential backoff until it answers again.

use std::{
    sync::mpsc,
    time::{Duration, Instant},
};

use super::{
    app::App,
    args::{self, TopArgs},
    fetch::{self, FetchError, Fetcher, Want},
    ingest::{Keys, ReadError, Scrape},
    terminal::{self, Update},
    CliError, EXIT_FAILURE, EXIT_UNREACHABLE,
};

/// Longest pause between retries of a down endpoint.
pub const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// The pause before retry number `attempts` (1-based): the scrape interval (at least 500 ms)
/// doubling per failure, capped at [`MAX_BACKOFF`].
pub fn backoff(attempts: u32, interval: Duration) -> Duration {
    let base = interval.max(Duration::from_millis(500));
    base.saturating_mul(1 << attempts.saturating_sub(1).min(10)).min(MAX_BACKOFF)
}

/// One scrape, parsed as the body arrives ([`Scrape::read`]).
pub fn scrape_once(fetcher: &mut Fetcher) -> Result<(Scrape, Duration), FetchError> {
    scrape_keyed(fetcher, &mut Keys::default())
}

/// [`scrape_once`] sharing `keys` with the endpoint's other scrapes ([`Scrape::read_keyed`]).
pub fn scrape_keyed(fetcher: &mut Fetcher, keys: &mut Keys) -> Result<(Scrape, Duration), FetchError> {
    let got = fetcher.fetch_with(|url, content_type, body| {
        Scrape::read_keyed(body, content_type, keys).map_err(|e| match e {
            ReadError::Io(e) => fetch::read_error(url, e),
            ReadError::Invalid(detail) => FetchError::Invalid { url: url.to_owned(), detail },
        })
    })?;
    Ok((got.value, got.took))
}

/// Checks and converts `args` without starting anything: the fetcher, and the deadline
/// counted from `epoch`.
pub fn prepare(args: &TopArgs, epoch: Instant) -> Result<(Fetcher, Option<Instant>), CliError> {
    let mut fetcher = args.endpoint.fetcher(Want::Any);
    fetcher.window = args.window.clone();
    Ok((fetcher, args::deadline(epoch, args.seconds)?))
}

/// Runs `top`; returns the exit code.
pub fn run(args: TopArgs) -> Result<u8, CliError> {
    let epoch = Instant::now();
    let (mut fetcher, deadline) = prepare(&args, epoch)?;

    // Every scrape, the first included, is made on one thread, which keeps the keys: the
    // model's keys and each new scrape's are one set, and what a scrape allocates is freed to
    // the same place the next one allocates from (the first scrape made on this thread would
    // leave its memory to this thread, out of the scrape thread's reach).
    //
    // The first scrape is waited for, so a wrong address is an error at once (unless
    // `--wait`). After that, a scrape waits in `send` until the dashboard takes it: a slow
    // dashboard (a big endpoint, a debug build) holds the scrape thread back, and there is never
    // a scrape in the channel while the next one is being made.
    let (first_tx, first_rx) = mpsc::channel();
    let (tx, rx) = mpsc::sync_channel(0);
    let (interval, wait) = (args.interval, args.wait);
    std::thread::Builder::new().name("sm-top-scrape".into()).spawn(move || {
        let mut keys = Keys::shared();
        let mut attempts = 0;
        let (first, took) = loop {
            match scrape_keyed(&mut fetcher, &mut keys) {
                Ok(ok) => break ok,
                Err(e) if wait && deadline.is_none_or(|d| Instant::now() < d) => {
                    attempts += 1;
                    let mut pause = backoff(attempts, interval);
                    eprintln!("{}; waiting {:.1}s (--wait)", e.short(), pause.as_secs_f64());
                    if let Some(d) = deadline {
                        pause = pause.min(d.saturating_duration_since(Instant::now()));
                    }
                    std::thread::sleep(pause);
                }
                Err(e) => {
                    let _ = first_tx.send(Err(e));
                    return;
                }
            }
        };
        // JSON: recent figures over the service's shortest window unless one was asked for.
        if fetcher.window.is_none() && first.window.is_none() {
            fetcher.window = first.windows.first().cloned();
        }
        let first = Update::Scrape { at: epoch.elapsed().as_secs_f64(), scrape: Box::new(first), took };
        if first_tx.send(Ok((fetcher.url(), first))).is_err() {
            return;
        }
        let mut failures = 0u32;
        loop {
            let pause = if failures == 0 { interval } else { backoff(failures, interval) };
            std::thread::sleep(pause);
            let update = match scrape_keyed(&mut fetcher, &mut keys) {
                Ok((scrape, took)) => {
                    failures = 0;
                    Update::Scrape { at: epoch.elapsed().as_secs_f64(), scrape: Box::new(scrape), took }
                }
                Err(e) => {
                    failures += 1;
                    Update::Failed { error: e.short(), attempts: failures, retry_in: backoff(failures, interval) }
                }
            };
            // The receiver is gone once the dashboard has quit.
            if tx.send(update).is_err() {
                return;
            }
        }
    })?;
    let (url, first) = match first_rx.recv() {
        Ok(first) => first?,
        Err(_) => return Err(CliError::new(EXIT_FAILURE, "the scrape thread stopped before the first scrape")),
    };
    let mut app = App::new(url);
    let mut first = Some(first);

    let feed = || first.take().into_iter().chain(rx.try_iter()).collect();
    if !args.no_tui && terminal::interactive() {
        terminal::run_tui(&mut app, feed, deadline)?;
        Ok(0)
    } else {
        let up = terminal::run_plain(&mut app, feed, deadline, epoch, args.frame)?;
        Ok(if up { 0 } else { EXIT_UNREACHABLE })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_caps() {
        let s = Duration::from_secs;
        assert_eq!(backoff(1, s(1)), s(1));
        assert_eq!(backoff(2, s(1)), s(2));
        assert_eq!(backoff(4, s(1)), s(8));
        assert_eq!(backoff(40, s(1)), MAX_BACKOFF);
        assert_eq!(backoff(1, Duration::from_millis(10)), Duration::from_millis(500));
    }
}
