//! Windowed views: what happened in the last 10 s, 1 min, 5 min — computed from cumulative
//! checkpoints that every snapshot shares (see the `history` module): memory bounded in series ×
//! windows, whatever the number of ticks.
//!
//! # Semantics
//! * A window is the exact difference between two ticks: the snapshot's tick (or, for
//!   [`Snapshot::window_before`], a checkpoint about one window earlier) and a checkpoint about
//!   `length` before it. [`Window::covered`] is the time between the two and [`Window::ticks`]
//!   the number of ticks in between; every value (increase, rate, histogram) is exact for that
//!   span, ticks included whole.
//! * Resolution: the registry keeps, per configured window `W` ([`crate::RegistryBuilder::windows`]),
//!   checkpoints about `W / 4` apart ([`SLOTS`]) for two windows' worth. A length `L` is served by
//!   the smallest configured `W ≥ L` (a length beyond the longest configured window is served as
//!   that window), so `covered` is within about `W / 8` plus one tick of `L` once the registry has
//!   run that long, and shorter before.
//! * An empty window (no tick, or nothing recorded) reports `increase` 0 and rate 0 for counters
//!   and a histogram with `count() == 0` whose min/max/mean/quantiles are `None` — never the
//!   last value, never a zero latency.
//! * A window's histogram min and max are bucket bounds (within the histogram's precision),
//!   clamped by the cumulative min and max: exact per-window extremes would need per-tick resets
//!   of single-writer cells.

#![forbid(unsafe_code)]

use std::time::Duration;

use crate::{
    history::{self, Base, Level},
    snapshot::{HistogramSnapshot, Series, Snapshot, Value},
};

pub use crate::history::{DEFAULT_WINDOWS, KEEP, SLOTS};

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
    /// `None`: an empty window.
    span: Option<Span<'a>>,
}

/// The two points a non-empty window lies between.
#[derive(Debug, Clone, Copy)]
struct Span<'a> {
    level: &'a Level,
    /// Index into `level.points`.
    start: usize,
    /// `None`: the snapshot's own tick; `Some(i)`: `level.points[i]`.
    end: Option<usize>,
    ticks: u64,
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

/// The point of `candidates` (ages before the snapshot's tick) closest to `target`, preferring
/// the later (younger) on a tie.
fn closest(
    candidates: impl Iterator<Item = (Option<usize>, Duration)>,
    target: Duration,
) -> Option<(Option<usize>, Duration)> {
    candidates.min_by(|a, b| a.1.abs_diff(target).cmp(&b.1.abs_diff(target)).then(a.1.cmp(&b.1)))
}

impl<'a> Window<'a> {
    pub(crate) fn new(snapshot: &'a Snapshot, length: Duration) -> Window<'a> {
        Window::ending(snapshot, Duration::ZERO, length)
    }

    /// The window of `length` that ends about `offset` before the snapshot's tick.
    pub(crate) fn ending(snapshot: &'a Snapshot, offset: Duration, length: Duration) -> Window<'a> {
        let levels = &snapshot.levels;
        let Some(level) = levels.iter().find(|l| l.window >= length).or(levels.last()) else {
            return Window { snapshot, length, span: None };
        };
        let served = length.min(level.window);
        let age = |i: usize| snapshot.at.saturating_duration_since(level.points[i].at);
        let points = || (0..level.points.len()).map(|i| (Some(i), age(i)));
        let Some((end, end_age)) = closest(points().chain([(None, Duration::ZERO)]), offset) else {
            return Window { snapshot, length, span: None };
        };
        let earlier = points().filter(|&(_, a)| a > end_age);
        let span = closest(earlier, end_age + served).map(|(start, start_age)| {
            let start = start.expect("the snapshot's tick is the youngest point");
            let seq = |p: Option<usize>| p.map_or(snapshot.seq, |i| level.points[i].seq);
            Span { level, start, end, ticks: seq(end) - seq(Some(start)), covered: start_age - end_age }
        });
        Window { snapshot, length, span }
    }

    /// An operation's statistics over the window; `None` if it does not exist.
    pub fn operation(&self, name: &str, labels: &[(&str, &str)]) -> Option<crate::snapshot::OperationStats> {
        let (calls, errors, latency) = self.snapshot.operation_series(name, labels)?;
        let calls_w = self.counter_of(&calls)?;
        let errors_w = self.counter_of(&errors)?;
        let h = self.histogram_of(&latency)?;
        Some(crate::snapshot::OperationStats::new(calls_w.increase, errors_w.increase, &h, self.covered()))
    }

    /// The requested length.
    pub fn length(&self) -> Duration {
        self.length
    }

    /// Number of ticks in the window.
    pub fn ticks(&self) -> usize {
        self.span.map_or(0, |s| s.ticks as usize)
    }

    /// The ticks the window covers, by [`Snapshot::seq`]: the values are those recorded in
    /// ticks `start + 1 ..= end` of the returned `start..end` (empty for an empty window).
    /// `end - start == ticks()`.
    pub fn seqs(&self) -> std::ops::Range<u64> {
        self.span.map_or(self.snapshot.seq..self.snapshot.seq, |s| {
            let seq = |p: Option<usize>| p.map_or(self.snapshot.seq, |i| s.level.points[i].seq);
            seq(Some(s.start))..seq(s.end)
        })
    }

    /// Time the window spans (see the module docs: close to [`Window::length`] once the
    /// registry has run that long, less before).
    pub fn covered(&self) -> Duration {
        self.span.map_or(Duration::ZERO, |s| s.covered)
    }

    /// A counter's increase and rate over the window; `None` if the series does not exist.
    pub fn counter(&self, name: &str, labels: &[(&str, &str)]) -> Option<WindowCounter> {
        self.counter_of(&self.snapshot.find(name, labels)?)
    }

    /// Series `s`'s (of this window's snapshot) increase over the window; `None` if it is not a
    /// counter.
    pub(crate) fn counter_of(&self, s: &Series) -> Option<WindowCounter> {
        let Value::Counter(c) = s.value() else { return None };
        let Some(span) = self.span else { return Some(self.counter_from(0)) };
        let (level, i) = (span.level, s.slot() as usize);
        let last = level.points.len() - 1;
        // Σ of the segments from `start` to `end`; to the snapshot's tick also the part since
        // the latest point: raw total now − raw total there.
        let (to, tail) = match span.end {
            Some(e) => (e, 0),
            None => {
                let raw = match self.snapshot.bases.get(&s.id()) {
                    Some(Base::Counter(b)) => c.total.saturating_add(*b),
                    _ => c.total,
                };
                (last, raw.saturating_sub(level.latest.get(i).copied().unwrap_or(0)))
            }
        };
        let increase = (span.start..to).fold(tail, |acc, k| acc.saturating_add(level.segments[k].get(i)));
        Some(self.counter_from(increase))
    }

    /// A counter's window view from its increase.
    fn counter_from(&self, increase: u64) -> WindowCounter {
        let secs = self.covered().as_secs_f64();
        WindowCounter { increase, rate: if secs > 0.0 { increase as f64 / secs } else { 0.0 } }
    }

    /// A histogram of the values recorded during the window; `None` if the series does not
    /// exist. Empty windows give `count() == 0` and `None` quantiles.
    pub fn histogram(&self, name: &str, labels: &[(&str, &str)]) -> Option<HistogramSnapshot> {
        self.histogram_of(&self.snapshot.find(name, labels)?)
    }

    /// Series `s`'s (of this window's snapshot) values recorded during the window; `None` if
    /// it is not a histogram.
    pub(crate) fn histogram_of(&self, s: &Series) -> Option<HistogramSnapshot> {
        let Value::Histogram(cumulative) = s.value() else { return None };
        let p = cumulative.mapping;
        let Some(span) = self.span else { return Some(HistogramSnapshot::empty(p)) };
        let i = s.slot() as usize;
        let at = |k: usize| span.level.hists[k].get(i).cloned().flatten();
        let raw_now;
        let later: &HistogramSnapshot = match span.end {
            Some(e) => match at(e) {
                Some(l) => {
                    raw_now = HistogramSnapshot::clone(&l);
                    &raw_now
                }
                None => return Some(HistogramSnapshot::empty(p)),
            },
            None => match self.snapshot.bases.get(&s.id()) {
                Some(Base::Histogram(b)) => {
                    raw_now = plus(cumulative, b);
                    &raw_now
                }
                _ => cumulative,
            },
        };
        // The values between the two points: `since` subtracts counts, sums and buckets and
        // bounds min/max by the remaining buckets (clamped by the later point's extremes).
        let mut h = match at(span.start) {
            Some(earlier) => later.since(&earlier),
            None => later.clone(),
        };
        if h.count == 0 {
            return Some(HistogramSnapshot::empty(p));
        }
        h.delta_count = h.count;
        h.delta_sum = h.sum;
        let secs = self.covered().as_secs_f64();
        h.rate = if secs > 0.0 { h.count as f64 / secs } else { 0.0 };
        Some(h)
    }
}

/// `a + b` (counts, sums and buckets): a histogram shown from a base, made raw again.
fn plus(a: &HistogramSnapshot, b: &HistogramSnapshot) -> HistogramSnapshot {
    let mut h = a.clone();
    h.count = a.count.saturating_add(b.count);
    h.sum = a.sum.saturating_add(b.sum);
    h.buckets = history::add(&a.buckets, &b.buckets).into();
    h
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
