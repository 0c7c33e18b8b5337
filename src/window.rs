//! Windowed views: what happened in the last 10 s, 1 min, 5 min — computed from a bounded ring
//! of per-tick deltas that every snapshot carries (shared `Arc`s, nothing copied per tick).
//!
//! # Semantics
//! * A window of length `d` covers the ticks that ended within `d` of the snapshot's tick; a
//!   tick that straddles the boundary is included whole. [`Window::covered`] is the time those
//!   ticks span and [`Window::ticks`] how many there are, so a rate is exact for what it covers.
//! * An empty window (no tick, or nothing recorded) reports `increase` 0 and rate 0 for counters
//!   and a histogram with `count() == 0` whose min/max/mean/quantiles are `None` — never the
//!   last value, never a zero latency.
//! * A window's histogram min and max are bucket bounds (within the histogram's precision),
//!   clamped by the cumulative min and max: exact per-window extremes would need per-tick resets
//!   of single-writer cells.
//! * Memory is bounded: the ring keeps the ticks of the longest configured window (and at most
//!   [`MAX_TICKS`]); a tick stores only the series that changed in it.

#![forbid(unsafe_code)]

use std::{sync::Arc, time::Duration};

use crate::{
    buckets,
    snapshot::{HistogramSnapshot, Snapshot, Value},
};

use crate::history::TickDelta;
pub use crate::history::{DEFAULT_WINDOWS, MAX_TICKS};

/// Merges sparse ascending bucket lists into `acc`.
fn add_into(acc: &mut Vec<(u32, u64)>, add: &[(u32, u64)]) {
    if acc.is_empty() {
        acc.extend_from_slice(add);
        return;
    }
    let mut out = Vec::with_capacity(acc.len() + add.len());
    let (mut a, mut b) = (acc.iter().peekable(), add.iter().peekable());
    loop {
        match (a.peek(), b.peek()) {
            (Some(&&(i, n)), Some(&&(j, m))) => {
                if i == j {
                    out.push((i, n + m));
                    a.next();
                    b.next();
                } else if i < j {
                    out.push((i, n));
                    a.next();
                } else {
                    out.push((j, m));
                    b.next();
                }
            }
            (Some(&&x), None) => {
                out.push(x);
                a.next();
            }
            (None, Some(&&y)) => {
                out.push(y);
                b.next();
            }
            (None, None) => break,
        }
    }
    *acc = out;
}

/// A counter over a window.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct WindowCounter {
    /// Increase during the window.
    pub increase: u64,
    /// `increase` per second of [`Window::covered`] (0 for an empty window).
    pub rate: f64,
}

/// A view of the last `length` of history, from one snapshot. See the module docs.
#[derive(Debug, Clone, Copy)]
pub struct Window<'a> {
    snapshot: &'a Snapshot,
    length: Duration,
    ticks: &'a [Arc<TickDelta>],
    /// Σ of the ticks' intervals (computed once: every per-series rate divides by it).
    covered: Duration,
}

impl Snapshot {
    /// The last `length` of history (see [`crate::window`] for the semantics).
    pub fn window(&self, length: Duration) -> Window<'_> {
        Window::new(self, length)
    }

    /// The window of `length` just before the latest one of that length (for trends).
    pub fn window_before(&self, length: Duration) -> Window<'_> {
        Window::ending(self, length, length)
    }
}

impl<'a> Window<'a> {
    pub(crate) fn new(snapshot: &'a Snapshot, length: Duration) -> Window<'a> {
        Window::ending(snapshot, Duration::ZERO, length)
    }

    /// The window of `length` that ends `offset` before the snapshot's tick.
    pub(crate) fn ending(snapshot: &'a Snapshot, offset: Duration, length: Duration) -> Window<'a> {
        let history = &snapshot.history[..];
        let Some(last) = history.last() else {
            return Window { snapshot, length, ticks: &[], covered: Duration::ZERO };
        };
        // Ticks with `end - length < at <= end`.
        let end = last.at.checked_sub(offset);
        let start = end.and_then(|e| e.checked_sub(length));
        let lo = history.partition_point(|t| start.is_some_and(|s| t.at <= s));
        let hi = history.partition_point(|t| end.is_some_and(|e| t.at <= e));
        let ticks = &history[lo..hi.max(lo)];
        Window { snapshot, length, ticks, covered: ticks.iter().map(|t| t.interval).sum() }
    }

    /// An operation's statistics over the window; `None` if it does not exist.
    pub fn operation(&self, name: &str, labels: &[(&str, &str)]) -> Option<crate::snapshot::OperationStats> {
        let (calls, errors, latency) = self.snapshot.operation_series(name, labels)?;
        let Value::Histogram(cumulative) = latency.value() else { return None };
        let calls_w = self.counter_by_id(calls.id);
        let errors_w = self.counter_by_id(errors.id);
        let h = self.histogram_by_id(latency.id, cumulative);
        Some(crate::snapshot::OperationStats::new(calls_w.increase, errors_w.increase, &h, self.covered()))
    }

    /// The requested length.
    pub fn length(&self) -> Duration {
        self.length
    }

    /// Number of ticks in the window (its sample count).
    pub fn ticks(&self) -> usize {
        self.ticks.len()
    }

    /// Time the included ticks span (may be less than [`Window::length`] early on).
    pub fn covered(&self) -> Duration {
        self.covered
    }

    /// A counter's increase and rate over the window; `None` if the series does not exist.
    pub fn counter(&self, name: &str, labels: &[(&str, &str)]) -> Option<WindowCounter> {
        let s = self.snapshot.find(name, labels)?;
        matches!(s.value(), Value::Counter(_)).then(|| self.counter_by_id(s.id))
    }

    pub(crate) fn counter_by_id(&self, id: u32) -> WindowCounter {
        let increase: u64 = self
            .ticks
            .iter()
            .filter_map(|t| t.counters.binary_search_by_key(&id, |&(i, _)| i).ok().map(|k| t.counters[k].1))
            .sum();
        self.counter_from(increase)
    }

    /// Every counter's increase over the window, indexed by series id, in one pass over the
    /// ticks: for renders of every series, where [`Window::counter_by_id`] per series would
    /// binary-search every tick for each one.
    #[cfg(feature = "json")]
    pub(crate) fn counter_increases(&self) -> Vec<u64> {
        let len = self.ticks.iter().filter_map(|t| t.counters.last()).map(|&(id, _)| id as usize + 1).max();
        let mut out = vec![0u64; len.unwrap_or(0)];
        for t in self.ticks {
            for &(id, d) in &t.counters {
                out[id as usize] += d;
            }
        }
        out
    }

    /// A counter's window view from its increase (see [`Window::counter_increases`]).
    pub(crate) fn counter_from(&self, increase: u64) -> WindowCounter {
        let secs = self.covered.as_secs_f64();
        WindowCounter { increase, rate: if secs > 0.0 { increase as f64 / secs } else { 0.0 } }
    }

    /// A histogram of the values recorded during the window; `None` if the series does not
    /// exist. Empty windows give `count() == 0` and `None` quantiles.
    pub fn histogram(&self, name: &str, labels: &[(&str, &str)]) -> Option<HistogramSnapshot> {
        let s = self.snapshot.find(name, labels)?;
        match s.value() {
            Value::Histogram(cumulative) => Some(self.histogram_by_id(s.id, cumulative)),
            _ => None,
        }
    }

    pub(crate) fn histogram_by_id(&self, id: u32, cumulative: &HistogramSnapshot) -> HistogramSnapshot {
        let p = cumulative.precision;
        let mut h = HistogramSnapshot::empty(p);
        let mut acc = Vec::new();
        for t in self.ticks {
            if let Ok(k) = t.histograms.binary_search_by_key(&id, |(i, _)| *i) {
                let d = &t.histograms[k].1;
                h.count += d.count;
                h.sum = h.sum.saturating_add(d.sum);
                add_into(&mut acc, &d.buckets);
            }
        }
        if let (Some(&(lo, _)), Some(&(hi, _))) = (acc.first(), acc.last()) {
            h.min = buckets::lowest(lo as usize, p).max(cumulative.min);
            h.max = buckets::highest(hi as usize, p).min(cumulative.max);
            if h.min > h.max {
                (h.min, h.max) = (h.max, h.min);
            }
        }
        h.delta_count = h.count;
        h.delta_sum = h.sum;
        let secs = self.covered.as_secs_f64();
        h.rate = if secs > 0.0 { h.count as f64 / secs } else { 0.0 };
        h.buckets = acc.into();
        h
    }
}

/// Parses a window length such as `10s`, `1m`, `5m`, `1h`, `500ms`.
pub fn parse_duration(s: &str) -> Option<Duration> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit())?;
    let (n, unit) = s.split_at(split);
    let n: u64 = n.parse().ok()?;
    let d = match unit {
        "ms" => Duration::from_millis(n),
        "s" => Duration::from_secs(n),
        "m" => Duration::from_secs(n.checked_mul(60)?),
        "h" => Duration::from_secs(n.checked_mul(3600)?),
        _ => return None,
    };
    (!d.is_zero()).then_some(d)
}

/// Formats a window length the way [`parse_duration`] reads it (`10s`, `1m`, `1h`).
pub fn format_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms % 3_600_000 == 0 {
        format!("{}h", ms / 3_600_000)
    } else if ms % 60_000 == 0 {
        format!("{}m", ms / 60_000)
    } else if ms % 1000 == 0 {
        format!("{}s", ms / 1000)
    } else {
        format!("{ms}ms")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::subtract;

    #[test]
    fn sparse_math() {
        assert_eq!(&*subtract(&[(1, 5), (3, 2), (9, 4)], &[(1, 5), (9, 1)]), &[(3, 2), (9, 3)]);
        let mut acc = vec![(1, 1), (5, 1)];
        add_into(&mut acc, &[(0, 2), (5, 3), (7, 1)]);
        assert_eq!(acc, vec![(0, 2), (1, 1), (5, 4), (7, 1)]);
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("10s"), Some(Duration::from_secs(10)));
        assert_eq!(parse_duration("1m"), Some(Duration::from_secs(60)));
        assert_eq!(parse_duration("2h"), Some(Duration::from_secs(7200)));
        assert_eq!(parse_duration("250ms"), Some(Duration::from_millis(250)));
        for bad in ["", "s", "10", "1x", "0s", "-1s"] {
            assert_eq!(parse_duration(bad), None, "{bad}");
        }
        for d in DEFAULT_WINDOWS {
            assert_eq!(parse_duration(&format_duration(*d)), Some(*d));
        }
    }
}
