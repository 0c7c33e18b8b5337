//! Trend detection per operation: the latest window against the one before it, and an anomaly
//! flag against a longer baseline window.

#![forbid(unsafe_code)]

use std::time::Duration;

use crate::{snapshot::OperationStats, Snapshot};

/// Which way an operation's latency is moving.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Mean and p99 both dropped by more than the tolerance.
    Improving,
    /// Mean or p99 rose by more than the tolerance.
    Degrading,
    /// Neither, or not enough data in one of the windows.
    Stable,
}

/// How to compare windows.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TrendConfig {
    /// Length of the latest window and of the one before it (default 1 min).
    pub window: Duration,
    /// Relative change below which latency is "stable" (default 0.10 = 10 %).
    pub tolerance: f64,
    /// Longer window used as the anomaly baseline (default 5 min).
    pub baseline: Duration,
    /// The latest p99 is an anomaly beyond `anomaly_factor ×` the baseline's p99 (default 3).
    pub anomaly_factor: f64,
}

impl Default for TrendConfig {
    fn default() -> Self {
        TrendConfig {
            window: Duration::from_secs(60),
            tolerance: 0.10,
            baseline: Duration::from_secs(300),
            anomaly_factor: 3.0,
        }
    }
}

/// The result of [`Snapshot::trend`].
#[derive(Debug, Clone, PartialEq)]
pub struct Trend {
    pub direction: Direction,
    /// Relative change of the mean latency, latest vs previous (`0.5` = 50 % slower).
    pub mean_change: Option<f64>,
    /// Relative change of p99, latest vs previous.
    pub p99_change: Option<f64>,
    /// The latest window's p99 exceeds `anomaly_factor ×` the baseline window's p99.
    pub anomaly: bool,
    pub latest: OperationStats,
    pub previous: OperationStats,
}

fn change(new: Option<f64>, old: Option<f64>) -> Option<f64> {
    match (new, old) {
        (Some(n), Some(o)) if o > 0.0 => Some((n - o) / o),
        _ => None,
    }
}

impl Snapshot {
    /// Compares operation `name`'s latest window with the window before it.
    pub fn trend(&self, name: &str, labels: &[(&str, &str)], cfg: &TrendConfig) -> Option<Trend> {
        let latest = self.window(cfg.window).operation(name, labels)?;
        let previous = self.window_before(cfg.window).operation(name, labels)?;
        let baseline = self.window(cfg.baseline).operation(name, labels)?;
        let mean_change = change(latest.mean, previous.mean);
        let p99_change = change(latest.p99.map(|v| v as f64), previous.p99.map(|v| v as f64));
        let direction = match (mean_change, p99_change) {
            (Some(m), Some(p)) if m > cfg.tolerance || p > cfg.tolerance => Direction::Degrading,
            (Some(m), Some(p)) if m < -cfg.tolerance && p < -cfg.tolerance => Direction::Improving,
            _ => Direction::Stable,
        };
        let anomaly = match (latest.p99, baseline.p99) {
            (Some(l), Some(b)) => l as f64 > cfg.anomaly_factor * b as f64,
            _ => false,
        };
        Some(Trend { direction, mean_change, p99_change, anomaly, latest, previous })
    }
}
