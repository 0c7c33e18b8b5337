//! The command line (clap derive).

use std::time::{Duration, Instant};

use clap::{Args, Parser, Subcommand, ValueEnum};

use super::{
    fetch::{Fetcher, Target, Want},
    CliError, EXIT_USAGE,
};

/// Longest `--seconds` (a year): far beyond any use, and far from `Instant` overflow.
pub const MAX_SECONDS: u64 = 365 * 24 * 3600;
/// Shortest `--interval` (the demo's tick, `top`'s scrape period).
pub const MIN_INTERVAL: Duration = Duration::from_millis(10);
/// Longest `--interval` and `--timeout`.
pub const MAX_INTERVAL: Duration = Duration::from_secs(3600);
/// Highest `--rate` (requests per second over all threads).
pub const MAX_RATE: f64 = 1e9;

const EXIT_CODES: &str = "\
Exit codes:
  0  success
  1  report --strict found warnings, or an unexpected failure
  2  bad command line
  3  endpoint unreachable, or the demo's listen address is unavailable
  4  endpoint answered with an HTTP error or something that is not metrics
  5  output file cannot be written";

/// Lock-free in-process metrics: a measured demo service, and a live dashboard, report and
/// snapshot exporter for any metrics endpoint.
#[derive(Debug, Parser)]
#[command(name = "shardmetrics", version, after_help = EXIT_CODES, args_conflicts_with_subcommands = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    /// `demo`'s options, for `shardmetrics` without a subcommand.
    #[command(flatten)]
    pub demo: DemoArgs,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a simulated latency-sensitive service, serve its metrics and watch them live (default).
    Demo(DemoArgs),
    /// Live dashboard for any endpoint serving shardmetrics JSON or Prometheus/OpenMetrics text.
    Top(TopArgs),
    /// Print a human-readable report of one scrape: slowest and busiest operations, errors, warnings.
    Report(ReportArgs),
    /// Write one scrape to a file (atomically), as shardmetrics JSON or Prometheus text.
    Export(ExportArgs),
}

#[derive(Debug, Clone, Args)]
pub struct DemoArgs {
    /// Worker threads handling synthetic requests.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub threads: u16,
    /// Run this many seconds, then exit 0 (default: until q or Ctrl-C).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(..=MAX_SECONDS))]
    pub seconds: Option<u64>,
    /// Print a plain table every tick instead of the dashboard (implied when stdout is not a terminal).
    #[arg(long)]
    pub no_tui: bool,
    /// Target requests per second over all threads (default: as fast as the threads go).
    #[arg(long, value_name = "RPS", value_parser = rate)]
    pub rate: Option<f64>,
    /// Address of the metrics endpoint, HOST:PORT (port 0 picks a free port).
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:9464", value_parser = listen_address)]
    pub listen: String,
    /// Aggregator tick (how often the snapshot and the dashboard update), e.g. 500ms, 1s.
    #[arg(long, value_name = "DURATION", default_value = "1s", value_parser = interval)]
    pub interval: Duration,
    /// Also push the metrics over OTLP/HTTP to this base URL (`/v1/metrics` is appended), e.g.
    /// http://localhost:4318. Without it, the demo pushes when OTEL_EXPORTER_OTLP_ENDPOINT (or
    /// OTEL_EXPORTER_OTLP_METRICS_ENDPOINT) is set; the other OTEL_* variables apply either way.
    #[arg(long, value_name = "URL")]
    pub otlp: Option<String>,
}

/// Options shared by the commands that scrape an endpoint.
#[derive(Debug, Clone, Args)]
pub struct EndpointArgs {
    /// The endpoint: a base address (`http://127.0.0.1:9464`, tries /metrics.json then /metrics)
    /// or a full URL of a metrics path.
    #[arg(value_parser = Target::parse)]
    pub url: Target,
    /// Give up on a scrape after this long, e.g. 5s.
    #[arg(long, value_name = "DURATION", default_value = "5s", value_parser = timeout)]
    pub timeout: Duration,
    /// Send `Authorization: Bearer TOKEN`.
    #[arg(long, value_name = "TOKEN")]
    pub bearer: Option<String>,
}

impl EndpointArgs {
    /// A fetcher for this endpoint (nothing is sent until [`Fetcher::fetch`]).
    pub fn fetcher(&self, want: Want) -> Fetcher {
        Fetcher::new(self.url.clone(), want, self.timeout, self.bearer.clone())
    }
}

/// When `--seconds` runs out, counted from `from`.
pub fn deadline(from: Instant, seconds: Option<u64>) -> Result<Option<Instant>, CliError> {
    seconds
        .map(|s| {
            from.checked_add(Duration::from_secs(s))
                .ok_or_else(|| CliError::new(EXIT_USAGE, format!("--seconds {s}: too far in the future")))
        })
        .transpose()
}

#[derive(Debug, Clone, Args)]
pub struct TopArgs {
    #[command(flatten)]
    pub endpoint: EndpointArgs,
    /// Time between scrapes, e.g. 1s, 500ms.
    #[arg(long, value_name = "DURATION", default_value = "1s", value_parser = interval)]
    pub interval: Duration,
    /// JSON endpoints: the window recent figures cover (one the service keeps, e.g. 10s, 1m;
    /// default its shortest).
    #[arg(long, value_name = "WINDOW", value_parser = window)]
    pub window: Option<String>,
    /// Print a plain table per scrape instead of the dashboard (implied when stdout is not a terminal).
    #[arg(long)]
    pub no_tui: bool,
    /// Stop after this many seconds.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(..=MAX_SECONDS))]
    pub seconds: Option<u64>,
    /// Keep retrying when the endpoint is not up yet, instead of exiting.
    #[arg(long)]
    pub wait: bool,
    /// Without a terminal: print the dashboard drawn as text at this size (e.g. 120x40) after
    /// each scrape, instead of the plain table.
    #[arg(long, value_name = "COLSxROWS", value_parser = frame_size)]
    pub frame: Option<(u16, u16)>,
}

#[derive(Debug, Clone, Args)]
pub struct ReportArgs {
    #[command(flatten)]
    pub endpoint: EndpointArgs,
    /// Rows per section.
    #[arg(long, value_name = "N", default_value_t = 10)]
    pub top: usize,
    /// Warn about operations whose error rate is above this percentage.
    #[arg(long, value_name = "PERCENT", default_value_t = 5.0, value_parser = positive_f64)]
    pub max_error_rate: f64,
    /// Warn about latencies whose p99 is above this, e.g. 1s, 250ms.
    #[arg(long, value_name = "DURATION", default_value = "1s", value_parser = duration)]
    pub max_p99: Duration,
    /// JSON endpoints: report over this window (e.g. 1m) instead of since the service started.
    #[arg(long, value_name = "WINDOW", value_parser = window)]
    pub window: Option<String>,
    /// Exit 1 when there are warnings (for CI and cron).
    #[arg(long)]
    pub strict: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ExportFormat {
    /// shardmetrics JSON (`/metrics.json`).
    Json,
    /// Prometheus text format 0.0.4 (`/metrics`).
    Prometheus,
}

#[derive(Debug, Clone, Args)]
pub struct ExportArgs {
    #[command(flatten)]
    pub endpoint: EndpointArgs,
    #[arg(long, value_enum, default_value_t = ExportFormat::Json)]
    pub format: ExportFormat,
    /// File to write (replaced atomically); `-` or absent for stdout.
    #[arg(long, short, value_name = "FILE")]
    pub out: Option<std::path::PathBuf>,
}

fn positive_f64(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v.is_finite() && v > 0.0 => Ok(v),
        _ => Err(format!("{s:?} is not a positive number")),
    }
}

/// `120x40`.
fn frame_size(s: &str) -> Result<(u16, u16), String> {
    let bad = || format!("{s:?} is not a size such as 120x40");
    let (w, h) = s.split_once(['x', 'X']).ok_or_else(bad)?;
    let (w, h): (u16, u16) = (w.parse().map_err(|_| bad())?, h.parse().map_err(|_| bad())?);
    if !(20..=1000).contains(&w) || !(8..=1000).contains(&h) {
        return Err(format!("{s:?}: between 20x8 and 1000x1000, please"));
    }
    Ok((w, h))
}

/// `--rate`: a positive number of requests per second, at most [`MAX_RATE`].
fn rate(s: &str) -> Result<f64, String> {
    match positive_f64(s)? {
        r if r <= MAX_RATE => Ok(r),
        _ => Err(format!("{s:?} is more than {MAX_RATE:e} requests per second")),
    }
}

/// `500ms`, `1s`, `2m`, `1h`.
fn duration(s: &str) -> Result<Duration, String> {
    shardmetrics::window::parse_duration(s).ok_or_else(|| format!("{s:?} is not a duration such as 500ms, 1s, 2m"))
}

fn duration_within(s: &str, min: Duration, max: Duration) -> Result<Duration, String> {
    let d = duration(s)?;
    if d < min || d > max {
        return Err(format!(
            "{s:?} is out of range: between {} and {}, please",
            shardmetrics::window::format_duration(min),
            shardmetrics::window::format_duration(max)
        ));
    }
    Ok(d)
}

/// `--interval`: [`MIN_INTERVAL`] to [`MAX_INTERVAL`].
fn interval(s: &str) -> Result<Duration, String> {
    duration_within(s, MIN_INTERVAL, MAX_INTERVAL)
}

/// `--timeout`: 1ms to [`MAX_INTERVAL`].
fn timeout(s: &str) -> Result<Duration, String> {
    duration_within(s, Duration::from_millis(1), MAX_INTERVAL)
}

/// `--window`: a duration such as `10s` or `1m`, kept as written (it goes into the URL).
fn window(s: &str) -> Result<String, String> {
    duration(s)?;
    Ok(s.trim().to_owned())
}

/// `--listen`: `HOST:PORT` (or `[V6]:PORT`), the port a number from 0 to 65535.
fn listen_address(s: &str) -> Result<String, String> {
    let s = s.trim();
    let (host, port) = split_host_port(s).ok_or_else(|| format!("{s:?} is not an address such as 127.0.0.1:9464"))?;
    if host.is_empty() {
        return Err(format!("{s:?}: the host is missing (e.g. 127.0.0.1:9464, or 0.0.0.0:9464 for every interface)"));
    }
    match port {
        None => Err(format!("{s:?}: the port is missing (e.g. {host}:9464, or {host}:0 for any free port)")),
        Some(p) => {
            check_port(p, true).map_err(|e| format!("{s:?}: {e}"))?;
            Ok(s.to_owned())
        }
    }
}

/// `host[:port]` or `[v6][:port]` → (host, port as written). `None` for a bracket left open or
/// text after `]` that is not a port.
pub(crate) fn split_host_port(s: &str) -> Option<(&str, Option<&str>)> {
    if let Some(rest) = s.strip_prefix('[') {
        let (host, after) = rest.split_once(']')?;
        return match after {
            "" => Some((host, None)),
            p => Some((host, Some(p.strip_prefix(':')?))),
        };
    }
    Some(match s.rsplit_once(':') {
        Some((host, port)) => (host, Some(port)),
        None => (s, None),
    })
}

/// A port as written: digits, at most 65535, and not 0 unless `zero_ok` (listening on any
/// free port).
pub(crate) fn check_port(p: &str, zero_ok: bool) -> Result<u16, String> {
    if p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("invalid port {p:?} (a number from 1 to 65535)"));
    }
    match p.parse::<u16>() {
        Ok(0) if !zero_ok => Err("port 0 cannot be connected to (a number from 1 to 65535)".into()),
        Ok(n) => Ok(n),
        Err(_) => Err(format!("port {p} is out of range (at most 65535)")),
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn command_line() {
        Cli::command().debug_assert();
        let cli = Cli::try_parse_from(["shardmetrics", "--threads", "2", "--seconds", "3"]).unwrap();
        assert!(cli.command.is_none());
        assert_eq!((cli.demo.threads, cli.demo.seconds), (2, Some(3)));
        let cli = Cli::try_parse_from(["shardmetrics", "top", "127.0.0.1:1", "--interval", "250ms"]).unwrap();
        let Some(Command::Top(top)) = cli.command else { panic!("not top") };
        assert_eq!(top.interval, Duration::from_millis(250));
        assert!(Cli::try_parse_from(["shardmetrics", "demo", "--threads", "0"]).is_err());
        assert!(Cli::try_parse_from(["shardmetrics", "report"]).is_err(), "URL is required");
        assert!(Cli::try_parse_from(["shardmetrics", "export", "x", "--format", "xml"]).is_err());
        let cli = Cli::try_parse_from(["shardmetrics", "top", "x", "--frame", "100x30"]).unwrap();
        let Some(Command::Top(top)) = cli.command else { panic!("not top") };
        assert_eq!(top.frame, Some((100, 30)));
        assert!(Cli::try_parse_from(["shardmetrics", "top", "x", "--frame", "5x5"]).is_err());
    }
}
