//! `shardmetrics report URL`: one scrape as a human-readable report with warnings.

use std::io::Write;

use super::{
    args::ReportArgs,
    fetch::{Fetcher, Target, Want},
    model::Model,
    text::{self, Thresholds},
    top::scrape_once,
    CliError, EXIT_FAILURE, EXIT_USAGE,
};

/// Runs `report`; returns the exit code (1 with `--strict` when there are warnings).
pub fn run(args: ReportArgs) -> Result<u8, CliError> {
    let target = Target::parse(&args.endpoint.url).map_err(|e| CliError::new(EXIT_USAGE, e))?;
    let mut fetcher = Fetcher::new(target, Want::Any, args.endpoint.timeout, args.endpoint.bearer.clone());
    fetcher.window = args.window.clone();
    let (scrape, _) = scrape_once(&mut fetcher)?;
    let mut model = Model::new();
    model.update(0.0, scrape);
    let t = Thresholds { error_rate: args.max_error_rate / 100.0, p99: args.max_p99.as_secs_f64() };
    let mut out = std::io::stdout().lock();
    out.write_all(text::report(&model, &fetcher.url(), args.top.max(1), t).as_bytes())?;
    out.flush()?;
    Ok(if args.strict && !text::warnings(&model, t).is_empty() { EXIT_FAILURE } else { 0 })
}
