//! `shardmetrics report URL`: one scrape as a human-readable report with warnings.

use std::io::Write;

use super::{
    args::ReportArgs,
    fetch::{Fetcher, Want},
    model::Model,
    text::{self, Thresholds},
    top::scrape_once,
    CliError, EXIT_FAILURE,
};

/// Checks and converts `args` without starting anything: the fetcher and the thresholds.
pub fn prepare(args: &ReportArgs) -> Result<(Fetcher, Thresholds), CliError> {
    let mut fetcher = args.endpoint.fetcher(Want::Any);
    fetcher.window = args.window.clone();
    let t = Thresholds { error_rate: args.max_error_rate / 100.0, p99: args.max_p99.as_secs_f64() };
    Ok((fetcher, t))
}

/// Runs `report`; returns the exit code (1 with `--strict` when there are warnings).
pub fn run(args: ReportArgs) -> Result<u8, CliError> {
    let (mut fetcher, t) = prepare(&args)?;
    let (scrape, _) = scrape_once(&mut fetcher)?;
    let mut model = Model::new();
    model.update(0.0, scrape);
    let mut out = std::io::stdout().lock();
    out.write_all(text::report(&model, &fetcher.url(), args.top.max(1), t).as_bytes())?;
    out.flush()?;
    Ok(if args.strict && !text::warnings(&model, t).is_empty() { EXIT_FAILURE } else { 0 })
}
