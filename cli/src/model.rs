//! The dashboard's data: successive [`Scrape`]s (from [`ingest`](super::ingest)) feed a
//! [`Model`], which works out what the screen shows: request rates (the source's own rates for
//! JSON, differences of successive totals for text), recent latency quantiles (the JSON
//! window's, or computed from the change in a text histogram's buckets since the previous
//! scrape), error rates, process resources, alert and state-set states, cache hit ratios, and
//! short histories for sparklines and charts.
//!
//! Nothing here touches a terminal or the network: the caller passes each scrape and the time
//! it was taken, so tests can replay recorded scrapes.

use std::collections::{BTreeMap, VecDeque};

use super::{
    human::Measure,
    ingest::{LatencyKind, Quantiles, Scrape, SeriesKey, SeriesMap, Source},
};

/// How many scrapes of p99 history each latency row keeps for the chart.
pub const HISTORY: usize = 120;

/// How many scrapes of rate history each counter row keeps: the width of its sparkline, which
/// shows no more.
pub const TREND: usize = 16;

/// A counter's last [`TREND`] rates, oldest first, kept in the row itself: a big endpoint has
/// hundreds of thousands of counters, and a separate allocation (or an `f64` and a tag per
/// point) would cost several times as much. Two bytes a rate (bfloat16): a sparkline has eight
/// levels.
#[derive(Clone, Copy)]
pub struct Trend {
    values: [Bf16; TREND],
    len: u8,
    next: u8,
}

impl Default for Trend {
    fn default() -> Trend {
        Trend { values: [Bf16::NONE; TREND], len: 0, next: 0 }
    }
}

impl Trend {
    fn push(&mut self, v: Option<f64>) {
        self.values[self.next as usize] = Bf16::new(v);
        self.next = ((self.next as usize + 1) % TREND) as u8;
        self.len = (self.len as usize + 1).min(TREND) as u8;
    }

    /// The rates, oldest first (`None` where there was none).
    pub fn iter(&self) -> impl DoubleEndedIterator<Item = Option<f64>> + ExactSizeIterator + '_ {
        let start = self.next as usize + TREND - self.len as usize;
        (start..start + self.len as usize).map(move |i| self.values[i % TREND].get())
    }

    pub fn len(&self) -> usize {
        self.len as usize
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl PartialEq for Trend {
    fn eq(&self, other: &Trend) -> bool {
        self.iter().eq(other.iter())
    }
}

impl std::fmt::Debug for Trend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

/// An `f32` cut to its upper half ("bfloat16": 8 bits of exponent, 8 of precision, a relative
/// error within 0.4%), NaN for none.
#[derive(Clone, Copy, PartialEq)]
struct Bf16(u16);

impl std::fmt::Debug for Bf16 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.get().fmt(f)
    }
}

impl Bf16 {
    const NONE: Bf16 = Bf16(0x7FC0);

    fn new(v: Option<f64>) -> Bf16 {
        match v.map(|v| v as f32) {
            Some(v) if !v.is_nan() => {
                // Rounded to nearest, ties to even (past the largest value: infinity).
                let bits = v.to_bits();
                Bf16((bits.saturating_add(0x7FFF + ((bits >> 16) & 1)) >> 16) as u16)
            }
            _ => Bf16::NONE,
        }
    }

    fn get(self) -> Option<f64> {
        of_f32(f32::from_bits((self.0 as u32) << 16))
    }
}

/// `v`, NaN for none.
fn of_f32(v: f32) -> Option<f64> {
    (!v.is_nan()).then_some(v as f64)
}

/// The value at quantile `q` of cumulative buckets, interpolating linearly inside the bucket
/// like PromQL's `histogram_quantile`; the highest finite bound when the rank falls in `+Inf`.
pub fn bucket_quantile(q: f64, buckets: &[(f64, f64)]) -> Option<f64> {
    let total = buckets.last()?.1;
    if total <= 0.0 || !total.is_finite() {
        return None;
    }
    let rank = q * total;
    let (mut lower, mut below) = (0.0, 0.0);
    for &(le, count) in buckets {
        if count >= rank && count > below {
            if le.is_infinite() {
                return Some(lower);
            }
            return Some(lower + (le - lower) * ((rank - below) / (count - below)).clamp(0.0, 1.0));
        }
        if le.is_finite() {
            lower = le;
        }
        below = count;
    }
    Some(lower)
}

/// Bucket-wise difference `now - before` (a reset — any bucket going down — gives `now`).
fn bucket_delta(now: &[(f64, f64)], before: &[(f64, f64)]) -> Vec<(f64, f64)> {
    let reset = now.len() != before.len() || now.iter().zip(before).any(|(n, b)| n.0 != b.0 || n.1 < b.1);
    if reset {
        return now.to_vec();
    }
    now.iter().zip(before).map(|(n, b)| (n.0, n.1 - b.1)).collect()
}

/// What the rows are ordered by; `s` cycles through them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Sort {
    /// Slowest first (p99), rates by rate.
    #[default]
    P99,
    /// Most calls per second first.
    Calls,
    /// Highest error ratio first.
    Errors,
    /// Alphabetical.
    Name,
}

impl Sort {
    pub fn next(self) -> Sort {
        match self {
            Sort::P99 => Sort::Calls,
            Sort::Calls => Sort::Errors,
            Sort::Errors => Sort::Name,
            Sort::Name => Sort::P99,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Sort::P99 => "p99",
            Sort::Calls => "calls/s",
            Sort::Errors => "errors",
            Sort::Name => "name",
        }
    }
}

/// A counter on screen.
#[derive(Debug, Clone, PartialEq)]
pub struct RateRow {
    pub key: SeriesKey,
    pub measure: Measure,
    pub total: f64,
    /// Per second; `None` until two scrapes of a text source.
    pub rate: Option<f64>,
    /// The last [`TREND`] rates.
    pub history: Trend,
}

/// An operation, histogram or summary on screen.
#[derive(Debug, Clone, PartialEq)]
pub struct LatencyRow {
    pub key: SeriesKey,
    pub kind: LatencyKind,
    pub measure: Measure,
    pub count: f64,
    pub errors: Option<f64>,
    /// Calls per second.
    pub rate: Option<f64>,
    /// Recent error ratio (the JSON window, or since the previous scrape), `None` without calls.
    pub error_rate: Option<f64>,
    /// Recent quantiles (`None` entries while idle).
    pub q: Quantiles,
    /// p99 per scrape since the row appeared, the last [`HISTORY`], oldest first (two bytes
    /// each, as a [`Trend`]'s rates: drawn, never printed); their times are the model's
    /// ([`Model::p99_history`]).
    p99s: VecDeque<Bf16>,
    /// The scrape's cumulative buckets (text sources), for the next scrape's recent quantiles.
    pub buckets: Vec<(f64, f64)>,
}

/// Process resources, from the conventional `process_*` series.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Resources {
    /// CPU time per second (1.0 = one core busy).
    pub cpu: Option<f64>,
    pub resident_bytes: Option<f64>,
    pub virtual_bytes: Option<f64>,
    pub open_fds: Option<f64>,
    pub max_fds: Option<f64>,
    pub threads: Option<f64>,
}

impl Resources {
    pub fn is_empty(&self) -> bool {
        *self == Resources::default()
    }
}

/// An alert and its state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlertRow {
    pub name: String,
    pub state: String,
}

/// A state set (e.g. a circuit breaker) and its current state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateRow {
    pub name: String,
    pub state: String,
}

/// A cache's hit ratio (recent when rates are known, else since start).
#[derive(Debug, Clone, PartialEq)]
pub struct CacheRow {
    pub key: SeriesKey,
    pub hit_ratio: Option<f64>,
    pub lookups_per_second: Option<f64>,
    pub size: Option<f64>,
}

/// A row of a [`Rows`] table.
pub trait Row {
    fn key(&self) -> &SeriesKey;
}

impl Row for RateRow {
    fn key(&self) -> &SeriesKey {
        &self.key
    }
}

impl Row for LatencyRow {
    fn key(&self) -> &SeriesKey {
        &self.key
    }
}

/// Rows sorted by key: a map from [`SeriesKey`] to row, in one allocation (a big endpoint has
/// hundreds of thousands of rows; a tree's nodes would cost as much again).
#[derive(Debug, Clone)]
pub struct Rows<T>(Vec<T>);

impl<T> Default for Rows<T> {
    fn default() -> Rows<T> {
        Rows(Vec::new())
    }
}

impl<T: Row> Rows<T> {
    /// The row of `key`.
    pub fn get(&self, key: &SeriesKey) -> Option<&T> {
        self.0.binary_search_by(|r| r.key().cmp(key)).ok().map(|i| &self.0[i])
    }

    /// The rows in key order.
    pub fn values(&self) -> std::slice::Iter<'_, T> {
        self.0.iter()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl<T: Row> Rows<T> {
    /// Takes in the next scrape's `new` entries (in key order, each key once), in place: the row
    /// of a key already here goes through `update(row, value, false)`, a new key gets
    /// `update(make(key), value, true)`, and rows whose key is not in `new` go. No second table
    /// is built while the series stay the same (the usual case), so a model is not briefly two.
    fn merge<U, I>(&mut self, new: I, make: impl Fn(SeriesKey) -> T, mut update: impl FnMut(&mut T, U, bool))
    where
        I: IntoIterator<Item = (SeriesKey, U)>,
        I::IntoIter: ExactSizeIterator,
    {
        let new = new.into_iter();
        let rows = &mut self.0;
        let mut kept = vec![false; rows.len()];
        // The first scrape's rows are all new: made in a table of the right size at once.
        let mut added = Vec::with_capacity(if rows.is_empty() { new.len() } else { 0 });
        let mut i = 0;
        for (key, v) in new {
            while i < rows.len() && rows[i].key() < &key {
                i += 1;
            }
            if i < rows.len() && rows[i].key() == &key {
                update(&mut rows[i], v, false);
                kept[i] = true;
                i += 1;
            } else {
                let mut row = make(key);
                update(&mut row, v, true);
                added.push(row);
            }
        }
        if kept.iter().any(|k| !k) {
            let mut kept = kept.into_iter();
            rows.retain(|_| kept.next().unwrap_or(false));
        }
        if rows.is_empty() {
            *rows = added;
        } else if !added.is_empty() {
            rows.reserve_exact(added.len());
            rows.extend(added);
            rows.sort_unstable_by(|a, b| a.key().cmp(b.key()));
        }
    }
}

impl<T: Row> std::ops::Index<&SeriesKey> for Rows<T> {
    type Output = T;

    fn index(&self, key: &SeriesKey) -> &T {
        self.get(key).unwrap_or_else(|| panic!("no row {key}"))
    }
}

/// Everything the dashboard shows, updated one scrape at a time.
#[derive(Debug, Clone, Default)]
pub struct Model {
    pub source: Option<Source>,
    /// Scrapes taken in so far.
    pub scrapes: u64,
    /// Time of the latest scrape (the caller's clock, seconds).
    pub last_at: Option<f64>,
    pub seq: Option<u64>,
    pub window: Option<String>,
    pub bytes: usize,
    pub rates: Rows<RateRow>,
    pub latencies: Rows<LatencyRow>,
    pub gauges: SeriesMap<f64>,
    /// Times of the last [`HISTORY`] scrapes, oldest first: those of every row's p99 history.
    times: VecDeque<f64>,
}

impl Model {
    pub fn new() -> Model {
        Model::default()
    }

    /// Takes in a scrape made at `at` seconds (any monotonic clock, the same for every call).
    ///
    /// The scrape is consumed: the rows keep what the next scrape is compared with (totals,
    /// counts, buckets), and share the scrape's keys, so a model costs about one scrape. Rows are
    /// updated in place: no second table is built while the series stay the same.
    pub fn update(&mut self, at: f64, scrape: Scrape) {
        let dt = self.last_at.map(|t| at - t).filter(|dt| *dt > 0.0);
        let Scrape { source, counters, gauges, latencies, seq, window, bytes, .. } = scrape;

        let new_rate =
            |key| RateRow { key, measure: Measure::Plain, total: 0.0, rate: None, history: Trend::default() };
        self.rates.merge(counters, new_rate, |row, c, fresh| {
            let rate = c.rate.or_else(|| {
                if fresh {
                    return None;
                }
                // A counter that went down was reset: everything since is new.
                let inc = if c.total >= row.total { c.total - row.total } else { c.total };
                Some(inc / dt?)
            });
            row.measure = c.measure;
            row.total = c.total;
            row.rate = rate;
            row.history.push(rate);
        });

        let new_latency = |key| LatencyRow {
            key,
            kind: LatencyKind::Histogram,
            measure: Measure::Plain,
            count: 0.0,
            errors: None,
            rate: None,
            error_rate: None,
            q: Quantiles::default(),
            // Room for one value at first: most `report`s and many rows never get a second.
            p99s: VecDeque::with_capacity(1),
            buckets: Vec::new(),
        };
        self.latencies.merge(latencies, new_latency, |row, o, fresh| {
            let delta_count = (!fresh).then_some(if o.count >= row.count { o.count - row.count } else { o.count });
            let rate = o.rate.or_else(|| Some(delta_count? / dt?));
            let error_rate = o.recent_error_rate.or_else(|| {
                let errors = o.errors?;
                match delta_count {
                    Some(n) if n > 0.0 => Some((errors - row.errors.unwrap_or(0.0)).max(0.0) / n),
                    Some(_) => None,
                    None => (o.count > 0.0).then(|| errors / o.count),
                }
            });
            let q = match &o.quantiles {
                Some(q) => *q,
                None if !fresh && !o.buckets.is_empty() => quantiles_of(&bucket_delta(&o.buckets, &row.buckets)),
                None => quantiles_of(&o.buckets),
            };
            if row.p99s.len() == HISTORY {
                row.p99s.pop_front();
            }
            row.p99s.push_back(Bf16::new(q.p99));
            row.kind = o.kind;
            row.measure = o.measure;
            row.count = o.count;
            row.errors = o.errors;
            row.rate = rate;
            row.error_rate = error_rate;
            row.q = q;
            row.buckets = o.buckets;
        });
        if self.times.len() == HISTORY {
            self.times.pop_front();
        }
        self.times.push_back(at);

        self.gauges = gauges;
        self.source = Some(source);
        self.seq = seq;
        self.window = window;
        self.bytes = bytes;
        self.scrapes += 1;
        self.last_at = Some(at);
    }

    /// `(scrape time, p99)` of `row` per scrape since it appeared, the last [`HISTORY`], oldest
    /// first.
    pub fn p99_history<'a>(
        &'a self,
        row: &'a LatencyRow,
    ) -> impl DoubleEndedIterator<Item = (f64, Option<f64>)> + ExactSizeIterator + 'a {
        let n = row.p99s.len().min(self.times.len());
        let times = self.times.range(self.times.len() - n..);
        times.copied().zip(row.p99s.range(row.p99s.len() - n..).map(|v| v.get()))
    }

    /// Latency rows matching `filter`, in `sort` order.
    pub fn latency_rows(&self, sort: Sort, filter: &str) -> Vec<&LatencyRow> {
        let mut rows: Vec<&LatencyRow> = self.latencies.values().filter(|r| r.key.matches(filter)).collect();
        match sort {
            // Durations first (a p99 of 8 KiB is not slower than one of 150 ms), slowest first.
            Sort::P99 => rows.sort_by(|a, b| {
                (a.measure != Measure::Seconds)
                    .cmp(&(b.measure != Measure::Seconds))
                    .then_with(|| desc(a.q.p99, b.q.p99))
                    .then_with(|| desc(a.rate, b.rate))
            }),
            Sort::Calls => rows.sort_by(|a, b| desc(a.rate, b.rate).then_with(|| desc(Some(a.count), Some(b.count)))),
            Sort::Errors => rows.sort_by(|a, b| desc(a.error_rate, b.error_rate).then_with(|| desc(a.rate, b.rate))),
            Sort::Name => rows.sort_by(|a, b| a.key.cmp(&b.key)),
        }
        rows
    }

    /// Counter rows matching `filter`: busiest first, or alphabetical for [`Sort::Name`].
    pub fn rate_rows(&self, sort: Sort, filter: &str) -> Vec<&RateRow> {
        let mut rows: Vec<&RateRow> = self.rates.values().filter(|r| r.key.matches(filter)).collect();
        if sort != Sort::Name {
            rows.sort_by(|a, b| desc(a.rate, b.rate).then_with(|| desc(Some(a.total), Some(b.total))));
        }
        rows
    }

    fn gauge(&self, name: &str) -> Option<f64> {
        self.gauges.iter().find(|(k, _)| k.name() == name).map(|(_, v)| *v)
    }

    /// `process_*` series, if the endpoint exports them.
    pub fn resources(&self) -> Resources {
        Resources {
            cpu: self.rates.values().find(|r| r.key.name() == "process_cpu_seconds_total").and_then(|r| r.rate),
            resident_bytes: self.gauge("process_resident_memory_bytes"),
            virtual_bytes: self.gauge("process_virtual_memory_bytes"),
            open_fds: self.gauge("process_open_fds"),
            max_fds: self.gauge("process_max_fds"),
            threads: self.gauge("process_threads"),
        }
    }

    /// Alerts from `shardmetrics_alert_state` (or Prometheus' `ALERTS`), firing first.
    ///
    /// A series with a `state`/`alertstate` label is one state of an alert, active when its
    /// value is non-zero; without one the value is the state: 0 inactive, 1 pending, 2 firing.
    pub fn alerts(&self) -> Vec<AlertRow> {
        let mut rows: Vec<AlertRow> = self
            .gauges
            .iter()
            .filter(|(k, _)| k.name() == "shardmetrics_alert_state" || k.name() == "ALERTS")
            .filter_map(|(k, v)| {
                let name = ["alert", "alertname", "rule", "name"]
                    .iter()
                    .find_map(|l| k.label(l))
                    .map_or_else(|| k.to_string(), str::to_owned);
                let state = match k.label("state").or(k.label("alertstate")) {
                    Some(_) if *v == 0.0 => return None,
                    Some(s) => s.to_owned(),
                    None => match *v as i64 {
                        0 => "inactive".to_owned(),
                        1 => "pending".to_owned(),
                        2 => "firing".to_owned(),
                        _ => super::human::si(Some(*v)),
                    },
                };
                Some(AlertRow { name, state })
            })
            .collect();
        let rank = |s: &str| match s {
            "firing" => 0,
            "pending" => 1,
            _ => 2,
        };
        rows.sort_by(|a, b| rank(&a.state).cmp(&rank(&b.state)).then_with(|| a.name.cmp(&b.name)));
        rows
    }

    /// State sets: gauge families `x{x="state"}` with 1 on the current state (shardmetrics'
    /// `StateSet`, OpenMetrics `stateset`).
    pub fn states(&self) -> Vec<StateRow> {
        let mut by_name: BTreeMap<&str, Option<&str>> = BTreeMap::new();
        for (k, v) in &self.gauges {
            let mut labels = k.labels();
            if let (Some((label, value)), None) = (labels.next(), labels.next()) {
                if label == k.name() {
                    let e = by_name.entry(k.name()).or_default();
                    if *v >= 1.0 {
                        *e = Some(value);
                    }
                }
            }
        }
        by_name
            .into_iter()
            .map(|(name, state)| StateRow { name: name.to_owned(), state: state.unwrap_or("?").to_owned() })
            .collect()
    }

    /// Caches: `x_hits_total` with `x_misses_total` (and `x_size`) under the same labels.
    pub fn caches(&self) -> Vec<CacheRow> {
        self.rates
            .values()
            .filter_map(|hits| {
                let base = hits.key.name().strip_suffix("_hits_total")?;
                let misses = self.rates.get(&hits.key.renamed(&format!("{base}_misses_total")))?;
                let (ratio, lookups) = match (hits.rate, misses.rate) {
                    (Some(h), Some(m)) if h + m > 0.0 => (Some(h / (h + m)), Some(h + m)),
                    (Some(_), Some(_)) => (None, Some(0.0)),
                    _ => {
                        let n = hits.total + misses.total;
                        ((n > 0.0).then(|| hits.total / n), None)
                    }
                };
                Some(CacheRow {
                    key: hits.key.renamed(base),
                    hit_ratio: ratio,
                    lookups_per_second: lookups,
                    size: self.gauges.get(&hits.key.renamed(&format!("{base}_size"))).copied(),
                })
            })
            .collect()
    }

    /// Gauges other than process resources, alerts and state sets, matching `filter`.
    pub fn plain_gauges(&self, filter: &str) -> Vec<(&SeriesKey, f64)> {
        self.gauges
            .iter()
            .filter(|(k, _)| {
                !k.name().starts_with("process_")
                    && k.name() != "shardmetrics_alert_state"
                    && k.name() != "ALERTS"
                    && !is_state_set(k)
                    && k.matches(filter)
            })
            .map(|(k, v)| (k, *v))
            .collect()
    }
}

/// `x{x="state"}`: one state of a state set.
fn is_state_set(k: &SeriesKey) -> bool {
    let mut labels = k.labels();
    matches!((labels.next(), labels.next()), (Some((l, _)), None) if l == k.name())
}

fn quantiles_of(buckets: &[(f64, f64)]) -> Quantiles {
    Quantiles {
        p50: bucket_quantile(0.5, buckets),
        p90: bucket_quantile(0.9, buckets),
        p99: bucket_quantile(0.99, buckets),
        max: None,
    }
}

/// Descending order with `None` (and NaN) last.
fn desc(a: Option<f64>, b: Option<f64>) -> std::cmp::Ordering {
    let a = a.filter(|v| !v.is_nan());
    let b = b.filter(|v| !v.is_nan());
    match (a, b) {
        (Some(a), Some(b)) => b.total_cmp(&a),
        (Some(_), None) => std::cmp::Ordering::Less,
        (None, Some(_)) => std::cmp::Ordering::Greater,
        (None, None) => std::cmp::Ordering::Equal,
    }
}

#[cfg(test)]
mod tests {
    use shardmetrics::scrape;

    use super::*;

    const TEXT_1: &str = "# TYPE req_total counter\nreq_total{route=\"/a\"} 100\n\
        # TYPE lat_seconds histogram\nlat_seconds_bucket{le=\"0.1\"} 10\nlat_seconds_bucket{le=\"1\"} 10\n\
        lat_seconds_bucket{le=\"+Inf\"} 10\nlat_seconds_sum 0.5\nlat_seconds_count 10\n";
    const TEXT_2: &str = "# TYPE req_total counter\nreq_total{route=\"/a\"} 150\n\
        # TYPE lat_seconds histogram\nlat_seconds_bucket{le=\"0.1\"} 10\nlat_seconds_bucket{le=\"1\"} 110\n\
        lat_seconds_bucket{le=\"+Inf\"} 110\nlat_seconds_sum 50.5\nlat_seconds_count 110\n";

    #[test]
    fn text_rates_come_from_successive_scrapes() {
        let mut m = Model::new();
        m.update(10.0, Scrape::from_text(TEXT_1, scrape::Format::Prometheus).unwrap());
        let key = SeriesKey::new("req_total", [("route".to_owned(), "/a".to_owned())]);
        assert_eq!(m.rates[&key].rate, None, "one scrape has no rate");
        m.update(12.0, Scrape::from_text(TEXT_2, scrape::Format::Prometheus).unwrap());
        assert_eq!(m.rates[&key].rate, Some(25.0));
        let lat = &m.latencies[&SeriesKey::new("lat_seconds", [])];
        assert_eq!(lat.rate, Some(50.0));
        // The 100 new observations all fell in (0.1, 1]: recent p50 is inside it, not in the
        // first bucket the cumulative counts would point at.
        let p50 = lat.q.p50.unwrap();
        assert!((0.1..=1.0).contains(&p50) && (p50 - 0.55).abs() < 1e-9, "{p50}");
    }

    #[test]
    fn series_come_and_go_between_scrapes() {
        let text = |keys: &[(&str, f64)]| {
            let mut t = String::from("# TYPE c_total counter\n");
            for (k, v) in keys {
                t.push_str(&format!("c_total{{k=\"{k}\"}} {v}\n"));
            }
            t.push_str("# TYPE h_seconds histogram\nh_seconds_bucket{le=\"1\"} 1\nh_seconds_bucket{le=\"+Inf\"} 1\n");
            Scrape::from_text(&t, scrape::Format::Prometheus).unwrap()
        };
        let key = |k: &str| SeriesKey::new("c_total", [("k".to_owned(), k.to_owned())]);
        let mut m = Model::new();
        m.update(0.0, text(&[("b", 10.0), ("d", 10.0)]));
        m.update(1.0, text(&[("a", 5.0), ("b", 20.0), ("c", 1.0), ("d", 30.0)]));
        m.update(2.0, text(&[("a", 6.0), ("c", 3.0), ("d", 40.0), ("e", 1.0)]));
        let keys: Vec<String> = m.rates.values().map(|r| r.key.label("k").unwrap().to_owned()).collect();
        assert_eq!(keys, ["a", "c", "d", "e"], "in key order, `b` gone");
        assert_eq!(m.rates[&key("d")].history.iter().collect::<Vec<_>>(), [None, Some(20.0), Some(10.0)]);
        assert_eq!(m.rates[&key("a")].history.iter().collect::<Vec<_>>(), [None, Some(1.0)]);
        assert_eq!(m.rates[&key("e")].history.iter().collect::<Vec<_>>(), [None]);
        assert_eq!(m.rates[&key("c")].rate, Some(2.0));
        let h = &m.latencies[&SeriesKey::new("h_seconds", [])];
        assert_eq!(m.p99_history(h).map(|(t, _)| t).collect::<Vec<_>>(), [0.0, 1.0, 2.0]);
        // Long runs keep the last TREND rates and HISTORY p99s, with their times.
        for i in 3..200 {
            m.update(i as f64, text(&[("a", 6.0 + i as f64)]));
        }
        let a = &m.rates[&key("a")];
        assert_eq!(a.history.len(), TREND);
        assert!(a.history.iter().all(|r| r == Some(1.0)));
        let h = &m.latencies[&SeriesKey::new("h_seconds", [])];
        let times: Vec<f64> = m.p99_history(h).map(|(t, _)| t).collect();
        assert_eq!((times.len(), times[0], times[HISTORY - 1]), (HISTORY, 80.0, 199.0));
        assert_eq!(m.rates.len(), 1);
    }

    #[test]
    fn trend_points_keep_three_digits() {
        for v in [0.0, 1.0, 1234.5, 3.3e-7, 9.99e12, -42.0, f64::INFINITY] {
            let got = Bf16::new(Some(v)).get().unwrap();
            assert!(got == v || ((got - v) / v).abs() < 0.004, "{v} -> {got}");
        }
        assert_eq!(Bf16::new(None).get(), None);
        assert_eq!(Bf16::new(Some(f64::NAN)).get(), None);
        assert_eq!(Bf16::new(Some(f64::MAX)).get(), Some(f64::INFINITY));
    }

    #[test]
    fn counter_reset_is_not_a_negative_rate() {
        let mut m = Model::new();
        m.update(0.0, Scrape::from_text(TEXT_2, scrape::Format::Prometheus).unwrap());
        m.update(1.0, Scrape::from_text(TEXT_1, scrape::Format::Prometheus).unwrap());
        let key = SeriesKey::new("req_total", [("route".to_owned(), "/a".to_owned())]);
        assert_eq!(m.rates[&key].rate, Some(100.0));
    }

    #[test]
    fn quantiles_from_buckets() {
        let b = [(0.1, 50.0), (0.2, 100.0), (f64::INFINITY, 100.0)];
        assert_eq!(bucket_quantile(0.5, &b), Some(0.1));
        assert!((bucket_quantile(0.75, &b).unwrap() - 0.15).abs() < 1e-12);
        assert_eq!(bucket_quantile(0.5, &[(1.0, 0.0), (f64::INFINITY, 0.0)]), None);
        // Everything in +Inf: the highest finite bound.
        assert_eq!(bucket_quantile(0.99, &[(1.0, 0.0), (f64::INFINITY, 5.0)]), Some(1.0));
    }

    #[test]
    fn operations_are_recognised_in_text() {
        let text = "# TYPE db_calls_total counter\ndb_calls_total 20\n# TYPE db_errors_total counter\n\
            db_errors_total 5\n# TYPE db_duration_seconds histogram\ndb_duration_seconds_bucket{le=\"0.01\"} 20\n\
            db_duration_seconds_bucket{le=\"+Inf\"} 20\ndb_duration_seconds_sum 0.1\ndb_duration_seconds_count 20\n";
        let s = Scrape::from_text(text, scrape::Format::Prometheus).unwrap();
        let op = &s.latencies[&SeriesKey::new("db", [])];
        assert_eq!(op.kind, LatencyKind::Operation);
        assert_eq!((op.count, op.errors), (20.0, Some(5.0)));
        let mut m = Model::new();
        m.update(0.0, s);
        assert_eq!(m.latencies[&SeriesKey::new("db", [])].error_rate, Some(0.25));
    }

    #[test]
    fn sorting() {
        let mut m = Model::new();
        let json = r#"{"seq":3,"series":[],"operations":[
            {"name":"a","labels":{},"stats":{"count":10,"errors":0,"p99_ns":5000000,"throughput":100.0}},
            {"name":"b","labels":{},"stats":{"count":99,"errors":9,"p99_ns":1000,"throughput":900.0}}]}"#;
        m.update(0.0, Scrape::from_json(json).unwrap());
        let names = |s| m.latency_rows(s, "").iter().map(|r| r.key.name().to_owned()).collect::<Vec<_>>();
        assert_eq!(names(Sort::P99), ["a", "b"]);
        assert_eq!(names(Sort::Calls), ["b", "a"]);
        assert_eq!(names(Sort::Errors), ["b", "a"]);
        assert_eq!(m.latency_rows(Sort::P99, "B").len(), 1);
    }
}
