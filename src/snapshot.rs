//! Immutable snapshots: what one aggregator tick saw, shared as `Arc<Snapshot>` with every
//! exporter and query. Nothing here touches a shard.
//!
//! One job over ~600 lines: the immutable snapshot and the read-side views of its series
//! (values, histogram statistics, operations, caches) that queries and exporters share.

#![forbid(unsafe_code)]

use std::{
    fmt,
    sync::Arc,
    time::{Duration, SystemTime},
};

use crate::{
    catalogue::{View, ViewEntry},
    exp_buckets::ScaledMapping,
    exposition::{le_bounds, Desc, Headers},
    store::Store,
    sync::OnceBox,
    Kind, Unit,
};

/// A series' labels, sorted by name. Cheap to clone.
///
/// One allocation holds the exposition label block (`k="v",k2="v2"`, values escaped for the
/// text formats), which renders copy as is and which the pairs are read from; when a value
/// needed escaping, the raw values follow it. The handle is one pointer (a thin `Arc` whose
/// allocation also holds the lengths): a series' catalogue entry carries it.
#[derive(Clone)]
pub struct Labels(crate::thin_str::ThinStr<LabelsHeader>);

#[derive(Clone, Copy)]
struct LabelsHeader {
    /// Length of the rendered block at the start of the text.
    rendered: u32,
    /// Number of pairs.
    len: u32,
}

impl Default for Labels {
    fn default() -> Labels {
        Labels::from_sorted(std::iter::empty())
    }
}

impl Labels {
    /// Sorts the pairs by name.
    pub fn new(mut pairs: Vec<(Arc<str>, Arc<str>)>) -> Labels {
        pairs.sort();
        Labels::from_sorted(pairs.iter().map(|(k, v)| (&**k, &**v)))
    }

    /// From pairs already sorted by name. One allocation: the text is built in a reused
    /// per-thread buffer and copied once into the `Arc`.
    pub(crate) fn from_sorted<'a>(pairs: impl Iterator<Item = (&'a str, &'a str)> + Clone) -> Labels {
        thread_local! {
            static BUF: std::cell::RefCell<String> = const { std::cell::RefCell::new(String::new()) };
        }
        BUF.with(|buf| {
            // A re-entrant call (impossible today) would find the buffer borrowed: use a fresh one.
            let mut own = String::new();
            let mut guard = buf.try_borrow_mut();
            let text = match guard.as_deref_mut() {
                Ok(b) => b,
                Err(_) => &mut own,
            };
            text.clear();
            let mut escaped = false;
            let mut len = 0u32;
            for (k, v) in pairs.clone() {
                if len > 0 {
                    text.push(',');
                }
                text.push_str(k);
                text.push_str("=\"");
                if crate::exposition::label_value_needs_escape(v) {
                    escaped = true;
                    crate::exposition::escape_label_value(text, v);
                } else {
                    text.push_str(v);
                }
                text.push('"');
                len += 1;
            }
            let rendered = text.len() as u32;
            if escaped {
                for (_, v) in pairs {
                    text.push_str(v);
                }
            }
            Labels(crate::thin_str::ThinStr::new(LabelsHeader { rendered, len }, text))
        })
    }

    /// The whole text: the rendered block, then the raw values if any was escaped.
    fn text(&self) -> &str {
        self.0.as_str()
    }

    /// `(name, value)` pairs, sorted by name.
    pub fn iter(&self) -> LabelsIter<'_> {
        let LabelsHeader { rendered, len } = self.0.header();
        let text = self.text();
        let escaped = text.len() > rendered as usize;
        LabelsIter { text, pos: 0, raw: escaped.then_some(rendered as usize), left: len }
    }

    /// The value of label `name`.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.iter().find(|&(k, _)| k == name).map(|(_, v)| v)
    }

    pub fn len(&self) -> usize {
        self.0.header().len as usize
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether these labels are exactly `query`, in any order.
    pub fn matches(&self, query: &[(&str, &str)]) -> bool {
        query.len() == self.len() && query.iter().all(|(k, v)| self.get(k) == Some(*v))
    }

    /// `k="v",k2="v2"` with values escaped for the text formats, no braces.
    pub(crate) fn rendered(&self) -> &str {
        &self.text()[..self.0.header().rendered as usize]
    }
}

/// The pairs of a [`Labels`], parsed from its rendered block.
#[derive(Debug, Clone)]
pub struct LabelsIter<'a> {
    text: &'a str,
    /// Next pair's start in the rendered block.
    pos: usize,
    /// Next raw value's start, when values needed escaping.
    raw: Option<usize>,
    left: u32,
}

impl<'a> Iterator for LabelsIter<'a> {
    type Item = (&'a str, &'a str);

    fn next(&mut self) -> Option<(&'a str, &'a str)> {
        if self.left == 0 {
            return None;
        }
        self.left -= 1;
        let text = self.text;
        // Label names never hold `=`; escaped values never hold a bare `"`.
        let eq = self.pos + text[self.pos..].find('=')?;
        let name = &text[self.pos..eq];
        let start = eq + 2;
        let bytes = text.as_bytes();
        let (mut i, mut escapes) = (start, 0);
        while bytes[i] != b'"' {
            if bytes[i] == b'\\' {
                i += 1;
                escapes += 1;
            }
            i += 1;
        }
        self.pos = i + 2;
        let value = match &mut self.raw {
            None => &text[start..i],
            Some(raw) => {
                let len = i - start - escapes;
                let v = &text[*raw..*raw + len];
                *raw += len;
                v
            }
        };
        Some((name, value))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.left as usize, Some(self.left as usize))
    }
}

impl ExactSizeIterator for LabelsIter<'_> {}

impl PartialEq for Labels {
    fn eq(&self, other: &Labels) -> bool {
        // The encoding is canonical: equal pairs, equal text.
        self.text() == other.text()
    }
}

impl Eq for Labels {}

impl std::hash::Hash for Labels {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.text().hash(state)
    }
}

impl PartialOrd for Labels {
    fn partial_cmp(&self, other: &Labels) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Labels {
    /// By pairs, name then value.
    fn cmp(&self, other: &Labels) -> std::cmp::Ordering {
        self.iter().cmp(other.iter())
    }
}

impl fmt::Debug for Labels {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

/// What all series of one metric name share.
#[derive(Debug, Clone)]
pub struct FamilyInfo {
    pub(crate) name: Arc<str>,
    pub(crate) kind: Kind,
    pub(crate) help: Arc<str>,
    pub(crate) unit: Unit,
    pub(crate) precision: u8,
    pub(crate) buckets: Option<Arc<[f64]>>,
    /// Quantiles exported as a summary family beside the histogram, and their window.
    pub(crate) quantiles: Option<Arc<[f64]>>,
    pub(crate) quantile_window: Option<std::time::Duration>,
    pub(crate) stateset: bool,
    /// Exposition names and header lines, rendered once per family (by the first exporter
    /// that needs them, never on a recording thread). Reset whenever help or unit change.
    pub(crate) headers: OnceBox<Headers>,
}

impl FamilyInfo {
    /// Names and header lines for the text formats (cached).
    pub(crate) fn headers(&self) -> &Headers {
        self.headers.get_or_init(|| Headers::new(self.desc()))
    }

    /// The family as the text formats see it.
    pub(crate) fn desc(&self) -> Desc<'_> {
        Desc {
            name: &self.name,
            kind: self.kind,
            unit: self.unit,
            help: &self.help,
            stateset: self.stateset,
            quantiles: self.quantiles.is_some(),
        }
    }

    /// The classic-histogram `le` bounds in the exported unit (configured, or the defaults for
    /// the unit).
    pub(crate) fn le_bounds(&self) -> &[f64] {
        le_bounds(self.buckets.as_deref(), self.unit)
    }

    pub fn name(&self) -> &str {
        &self.name
    }
    pub fn kind(&self) -> Kind {
        self.kind
    }
    pub fn help(&self) -> &str {
        &self.help
    }
    pub fn unit(&self) -> Unit {
        self.unit
    }
    /// Histogram precision (sub-bucket bits).
    pub fn precision(&self) -> u8 {
        self.precision
    }
    /// Whether this gauge family is a StateSet (exported as `stateset` in OpenMetrics).
    pub fn is_stateset(&self) -> bool {
        self.stateset
    }
    /// Configured classic-histogram `le` boundaries in the exported unit, if any.
    pub fn export_buckets(&self) -> Option<&[f64]> {
        self.buckets.as_deref()
    }
    /// Quantiles exported as summary-style series beside the classic histogram (see
    /// [`crate::MetricBuilder::quantiles`]), if configured.
    pub fn quantiles(&self) -> Option<&[f64]> {
        self.quantiles.as_deref()
    }
    /// The window the exported quantiles are computed over (`None`: since the start).
    pub fn quantile_window(&self) -> Option<std::time::Duration> {
        self.quantile_window
    }
}

/// A counter's value at a tick.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CounterValue {
    /// Cumulative total.
    pub total: u64,
    /// Increase since the previous tick.
    pub delta: u64,
    /// `delta` per second of the interval since the previous tick.
    pub rate: f64,
}

/// A merged histogram at a tick. Its count is the sum of its buckets, and `min ≤ every
/// quantile ≤ max`, in every snapshot (also while writers run).
#[derive(Clone, PartialEq)]
pub struct HistogramSnapshot {
    /// The series' bucket mapping: its schema (the precision) and the scale from the recorded
    /// unit to the unit its keys are in (seconds for ns, µs and ms histograms).
    pub(crate) mapping: &'static ScaledMapping,
    pub(crate) count: u64,
    pub(crate) sum: u64,
    pub(crate) min: u64,
    pub(crate) max: u64,
    /// Non-empty buckets: `(bucket index, count)`, ascending; shared between the snapshots
    /// of ticks that found the histogram unchanged. The index is the exponential bucket's
    /// dense slot of `mapping` (`buckets`): `0` the zero bucket, `i ≥ 1` for the key
    /// `mapping.first_key() + i - 1` (in the exported unit) at its schema.
    pub(crate) buckets: Arc<[(u32, u64)]>,
    pub(crate) delta_count: u64,
    pub(crate) delta_sum: u64,
    pub(crate) rate: f64,
}

/// One bucket of a [`HistogramSnapshot`]: every value in `low..=high` counted `count` times.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bucket {
    pub low: u64,
    pub high: u64,
    pub count: u64,
}

impl HistogramSnapshot {
    pub(crate) fn empty(mapping: &'static ScaledMapping) -> Self {
        HistogramSnapshot {
            mapping,
            count: 0,
            sum: 0,
            min: 0,
            max: 0,
            buckets: Arc::new([]),
            delta_count: 0,
            delta_sum: 0,
            rate: 0.0,
        }
    }

    /// Number of recorded values (= Σ bucket counts).
    pub fn count(&self) -> u64 {
        self.count
    }

    /// Sum of recorded values (saturating at `u64::MAX`).
    pub fn sum(&self) -> u64 {
        self.sum
    }

    /// Smallest recorded value; `None` while empty.
    pub fn min(&self) -> Option<u64> {
        (self.count > 0).then_some(self.min)
    }

    /// Largest recorded value; `None` while empty.
    pub fn max(&self) -> Option<u64> {
        (self.count > 0).then_some(self.max)
    }

    /// Arithmetic mean; `None` while empty.
    pub fn mean(&self) -> Option<f64> {
        (self.count > 0).then(|| self.sum as f64 / self.count as f64)
    }

    /// The value at quantile `q` (0 ≤ q ≤ 1): the representative of the exponential bucket
    /// holding the `⌈q·count⌉`-th smallest value (the point of the bucket's integers with the least
    /// worst-case relative error, rounded), clamped to `[min, max]` (exactly `min` and `max` for
    /// the first and last rank). Within `(γ-1)/(γ+1)` (`γ = 2^(2^-p)`) plus half a unit of the
    /// exact value: 1.79 % at most at the default precision (schema 5), 1.1 % above 1,357.
    /// `None` while empty or for NaN `q`.
    pub fn quantile(&self, q: f64) -> Option<u64> {
        if self.count == 0 || q.is_nan() {
            return None;
        }
        let q = q.clamp(0.0, 1.0);
        let rank = ((q * self.count as f64).ceil() as u64).clamp(1, self.count);
        // The extremes are known exactly.
        if rank == 1 {
            return Some(self.min);
        }
        if rank == self.count {
            return Some(self.max);
        }
        let mut seen = 0u64;
        for &(idx, n) in self.buckets.iter() {
            seen += n;
            if seen >= rank {
                let v = self.mapping.representative(idx as usize);
                return Some(v.clamp(self.min, self.max));
            }
        }
        Some(self.max)
    }

    /// Non-empty buckets, ascending.
    pub fn buckets(&self) -> impl ExactSizeIterator<Item = Bucket> + '_ {
        self.buckets.iter().map(|&(i, count)| Bucket {
            low: self.mapping.lowest(i as usize),
            high: self.mapping.highest(i as usize),
            count,
        })
    }

    /// Number of values whose bucket representative is ≤ `bound`: the cumulative count used for
    /// a classic `le` bucket. Every value is counted under exactly one boundary crossing, so no
    /// count is lost; exact when `bound` is an exponential bucket bound, otherwise as precise as
    /// the buckets (within one bucket, `2^(2^-p)`).
    pub fn count_le(&self, bound: f64) -> u64 {
        self.counts_le().count_le(bound)
    }

    /// A cursor answering [`count_le`](Self::count_le) for ascending bounds in one pass over
    /// the buckets (each bucket's representative computed once): a render's classic buckets.
    pub(crate) fn counts_le(&self) -> CountsLe<'_> {
        CountsLe { h: self, next: 0, cumulative: 0 }
    }

    /// What was recorded after `base` (an earlier state of the same histogram): counts, sum
    /// and buckets subtracted; min and max from the remaining buckets' bounds.
    pub(crate) fn since(&self, base: &HistogramSnapshot) -> HistogramSnapshot {
        let mut h = self.clone();
        h.count = self.count.saturating_sub(base.count);
        h.sum = self.sum.saturating_sub(base.sum);
        h.buckets = crate::history::subtract(&self.buckets, &base.buckets).into();
        if let (Some(&(lo, _)), Some(&(hi, _))) = (h.buckets.first(), h.buckets.last()) {
            h.min = self.mapping.lowest(lo as usize).max(self.min);
            h.max = self.mapping.highest(hi as usize).min(self.max);
            if h.min > h.max {
                (h.min, h.max) = (h.max, h.min);
            }
        }
        h
    }

    /// Standard deviation, from bucket representatives (within the buckets' precision); `None`
    /// while empty.
    pub fn stddev(&self) -> Option<f64> {
        let mean = self.mean()?;
        let var = self
            .buckets
            .iter()
            .map(|&(i, n)| {
                let v = self.mapping.representative(i as usize).clamp(self.min, self.max) as f64;
                n as f64 * (v - mean) * (v - mean)
            })
            .sum::<f64>()
            / self.count as f64;
        Some(var.sqrt())
    }

    /// Values recorded since the previous tick.
    pub fn delta_count(&self) -> u64 {
        self.delta_count
    }

    /// Sum of the values recorded since the previous tick.
    pub fn delta_sum(&self) -> u64 {
        self.delta_sum
    }

    /// Values recorded per second over the last interval.
    pub fn rate(&self) -> f64 {
        self.rate
    }

    /// Precision of the buckets: the exponential schema (`2^p` buckets per power of two).
    pub fn precision(&self) -> u8 {
        self.mapping.schema()
    }

    /// The buckets as a native (base-2 exponential) histogram: `(schema, zero count, the
    /// non-empty positive buckets as (key, count), ascending)`. The keys are those of the values
    /// in the exported unit (bucket `k` holds `(2^((k-1)·2^-schema), 2^(k·2^-schema)]` seconds
    /// for a histogram recorded in ns, µs or ms; in the recorded unit otherwise), exactly: each
    /// value was keyed by its mapping when recorded. The zero bucket holds exactly the value 0.
    /// `count == zero count + Σ positive counts`. Read by the binary formats.
    #[cfg(any(feature = "protobuf", feature = "remote-write", feature = "otlp"))]
    pub(crate) fn native(&self) -> (u8, u64, impl Iterator<Item = (i32, u64)> + '_) {
        let (zero, rest) = match self.buckets.first() {
            Some(&(0, n)) => (n, &self.buckets[1..]),
            _ => (0, &self.buckets[..]),
        };
        let first = self.mapping.first_key();
        (self.mapping.schema(), zero, rest.iter().map(move |&(i, n)| (first + i as i32 - 1, n)))
    }

    /// Converts to an `hdrhistogram::Histogram` (each bucket recorded at its representative), for
    /// HdrHistogram's iterators and serialisation.
    #[cfg(feature = "hdrhistogram")]
    pub fn to_hdr(&self) -> hdrhistogram::Histogram<u64> {
        let mut h = hdrhistogram::Histogram::<u64>::new(3).expect("3 significant figures is valid");
        for &(i, n) in self.buckets.iter() {
            let v = self.mapping.representative(i as usize).clamp(self.min, self.max);
            // Auto-resize is on, so `record_n` only fails on counter overflow, which the
            // saturating fallback avoids.
            let _ = h.record_n(v, n);
        }
        h
    }
}

/// See [`HistogramSnapshot::counts_le`].
pub(crate) struct CountsLe<'a> {
    h: &'a HistogramSnapshot,
    /// The first bucket not yet counted.
    next: usize,
    /// The counts of the buckets before it.
    cumulative: u64,
}

impl CountsLe<'_> {
    /// [`HistogramSnapshot::count_le`] of `bound`, which is at least every earlier bound asked.
    pub(crate) fn count_le(&mut self, bound: f64) -> u64 {
        let h = self.h;
        if bound >= h.max as f64 {
            return h.count;
        }
        while let Some(&(i, n)) = h.buckets.get(self.next) {
            if h.mapping.representative(i as usize) as f64 > bound {
                break;
            }
            self.cumulative += n;
            self.next += 1;
        }
        self.cumulative
    }
}

impl fmt::Debug for HistogramSnapshot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HistogramSnapshot")
            .field("count", &self.count)
            .field("sum", &self.sum)
            .field("min", &self.min())
            .field("max", &self.max())
            .field("p50", &self.quantile(0.5))
            .field("p99", &self.quantile(0.99))
            .finish_non_exhaustive()
    }
}

/// A series' value at a tick (borrowed from its snapshot).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Value<'a> {
    Counter(CounterValue),
    Gauge(f64),
    Histogram(&'a HistogramSnapshot),
}

/// One series in a snapshot: a borrowed view of the registry's static metadata (shared by every
/// snapshot until a series is registered) and of this tick's value. Cheap to copy.
#[derive(Clone, Copy)]
pub struct Series<'a> {
    snap: &'a Snapshot,
    entry: &'a ViewEntry,
    /// Catalogue id.
    id: u32,
}

impl fmt::Debug for Series<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Series")
            .field("name", &self.name())
            .field("labels", self.labels())
            .field("value", &self.value())
            .finish_non_exhaustive()
    }
}

impl<'a> Series<'a> {
    pub fn name(&self) -> &'a str {
        &self.snap.view.family_of(self.entry).name
    }
    pub fn labels(&self) -> &'a Labels {
        &self.entry.labels
    }
    pub fn family(&self) -> &'a FamilyInfo {
        self.snap.view.family_of(self.entry)
    }
    pub fn kind(&self) -> Kind {
        self.family().kind
    }
    /// The series' value at the snapshot's tick.
    pub fn value(&self) -> Value<'a> {
        let snap = self.snap;
        let i = self.entry.slot as usize;
        match self.entry.store {
            Store::Counter { .. } => {
                let total = snap.counters.get(i).copied().unwrap_or(0);
                let delta = total.saturating_sub(snap.prev_counters.get(i).copied().unwrap_or(0));
                let secs = snap.interval.as_secs_f64();
                let rate = if secs > 0.0 { delta as f64 / secs } else { 0.0 };
                Value::Counter(CounterValue { total, delta, rate })
            }
            Store::Gauge(_) => Value::Gauge(snap.gauges.get(i).copied().unwrap_or(0.0)),
            Store::Histogram { .. } => Value::Histogram(&snap.histograms[i]),
        }
    }
    /// The series' latest exemplars (empty if it never recorded one): for a counter one entry;
    /// for a histogram one per exported `le` bound ([`FamilyInfo::export_buckets`] or the
    /// default) and a last one for `+Inf`, each the latest exemplar whose value fell in that
    /// bucket (`None` if none did).
    pub fn exemplars(&self) -> &'a [Option<std::sync::Arc<crate::exemplar::Exemplar>>] {
        let ex = &self.snap.exemplars;
        match ex.binary_search_by_key(&self.id, |(id, _)| *id) {
            Ok(k) => &ex[k].1,
            Err(_) => &[],
        }
    }

    pub(crate) fn rendered_labels(&self) -> &'a str {
        self.entry.labels.rendered()
    }

    /// Catalogue index (keys expiry bases).
    pub(crate) fn id(&self) -> u32 {
        self.id
    }

    /// Dense number among the series of its kind (keys window checkpoints).
    pub(crate) fn slot(&self) -> u32 {
        self.entry.slot
    }
}

/// Series of a snapshot, sorted by name then labels: all of them ([`Snapshot::series`]) or one
/// metric's ([`Snapshot::family`]). Cheap to copy; iterate with `.iter()` or `for`.
#[derive(Clone, Copy)]
pub struct SeriesList<'a> {
    snap: &'a Snapshot,
    /// View positions `start..end`.
    start: usize,
    end: usize,
}

impl fmt::Debug for SeriesList<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

impl<'a> SeriesList<'a> {
    fn visible(&self, id: u32) -> bool {
        !self.snap.hidden.get(id as usize).copied().unwrap_or(false)
    }

    fn series_at(&self, pos: usize) -> Series<'a> {
        let (id, entry) = self.snap.view.at(pos);
        Series { snap: self.snap, entry, id }
    }

    /// The series, in order.
    pub fn iter(&self) -> impl DoubleEndedIterator<Item = Series<'a>> + 'a {
        let list = *self;
        (self.start..self.end).map(move |pos| list.series_at(pos)).filter(move |s| list.visible(s.id))
    }

    /// Number of series.
    pub fn len(&self) -> usize {
        if self.snap.hidden.is_empty() {
            self.end - self.start
        } else {
            self.snap.view.order[self.start..self.end].iter().filter(|&&id| self.visible(id)).count()
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The first series.
    pub fn first(&self) -> Option<Series<'a>> {
        self.iter().next()
    }

    /// The last series.
    pub fn last(&self) -> Option<Series<'a>> {
        self.iter().next_back()
    }

    /// The `i`-th series.
    pub fn get(&self, i: usize) -> Option<Series<'a>> {
        if self.snap.hidden.is_empty() {
            let pos = self.start.checked_add(i).filter(|&p| p < self.end)?;
            return Some(self.series_at(pos));
        }
        self.iter().nth(i)
    }
}

impl<'a> IntoIterator for SeriesList<'a> {
    type Item = Series<'a>;
    type IntoIter = Box<dyn DoubleEndedIterator<Item = Series<'a>> + 'a>;
    fn into_iter(self) -> Self::IntoIter {
        Box::new(self.iter())
    }
}

/// Everything one aggregator tick merged, immutable. Series metadata is the catalogue's view,
/// shared by every snapshot until a series is registered; values are stored by kind, by dense
/// series number (16 B per counter, 8 per gauge).
#[derive(Debug)]
pub struct Snapshot {
    pub(crate) seq: u64,
    pub(crate) taken_at: SystemTime,
    pub(crate) interval: Duration,
    pub(crate) tick_duration: Duration,
    pub(crate) shards: usize,
    /// The series' metadata, sorted by name, then labels.
    pub(crate) view: Arc<View>,
    /// Cumulative totals by counter number (idle-expiry bases subtracted), shared with the
    /// aggregator and window checkpoints.
    pub(crate) counters: Arc<[u64]>,
    /// The previous snapshot's `counters` (the deltas are the difference; shorter when series
    /// were added since).
    pub(crate) prev_counters: Arc<[u64]>,
    /// By gauge number.
    pub(crate) gauges: Box<[f64]>,
    /// By histogram number.
    pub(crate) histograms: Box<[HistogramSnapshot]>,
    /// Series (by id, ascending) with exemplars.
    pub(crate) exemplars: Box<[(u32, crate::exemplar::Exemplars)]>,
    /// By series id: expired series (idle expiry); empty when none is.
    pub(crate) hidden: Box<[bool]>,
    /// Window checkpoints, one level per configured window (shared between snapshots).
    pub(crate) levels: Arc<Vec<crate::history::Level>>,
    /// The tick's monotonic time (windows measure from it).
    pub(crate) at: std::time::Instant,
    /// Bases of series that expired and came back (windows add them back to get raw values).
    pub(crate) bases: crate::history::Bases,
    /// Configured window lengths, shortest first.
    pub(crate) windows: Arc<[Duration]>,
}

impl Snapshot {
    pub(crate) fn empty() -> Snapshot {
        Snapshot {
            seq: 0,
            taken_at: SystemTime::now(),
            interval: Duration::ZERO,
            tick_duration: Duration::ZERO,
            shards: 0,
            view: Arc::new(View::default()),
            counters: Arc::new([]),
            prev_counters: Arc::new([]),
            gauges: Box::new([]),
            histograms: Box::new([]),
            exemplars: Box::new([]),
            hidden: Box::new([]),
            levels: Arc::default(),
            at: std::time::Instant::now(),
            bases: crate::history::Bases::default(),
            windows: Arc::from(crate::history::DEFAULT_WINDOWS),
        }
    }

    /// The three series of operation `name` with these labels: calls, errors, latency.
    pub(crate) fn operation_series(
        &self,
        name: &str,
        labels: &[(&str, &str)],
    ) -> Option<(Series<'_>, Series<'_>, Series<'_>)> {
        Some((
            self.find(&format!("{name}_calls_total"), labels)?,
            self.find(&format!("{name}_errors_total"), labels)?,
            self.find(&format!("{name}_duration"), labels)?,
        ))
    }

    /// An operation's cumulative statistics (throughput over the last interval).
    pub fn operation(&self, name: &str, labels: &[(&str, &str)]) -> Option<OperationStats> {
        let (calls, errors, latency) = self.operation_series(name, labels)?;
        let (Value::Counter(c), Value::Counter(e), Value::Histogram(h)) =
            (calls.value(), errors.value(), latency.value())
        else {
            return None;
        };
        let mut stats = OperationStats::new(c.total, e.total, h, Duration::ZERO);
        stats.throughput = c.rate;
        Some(stats)
    }

    /// Every operation: `(name, labels, stats)`.
    pub fn operations(&self) -> impl Iterator<Item = (&str, &Labels, OperationStats)> + '_ {
        self.view.operations.iter().flat_map(move |name| {
            self.family(&format!("{name}_calls_total")).iter().filter_map(move |s| {
                let labels: Vec<(&str, &str)> = s.labels().iter().collect();
                Some((&**name, s.labels(), self.operation(name, &labels)?))
            })
        })
    }

    /// A cache's counters, size and hit rate.
    pub fn cache(&self, name: &str, labels: &[(&str, &str)]) -> Option<CacheSnapshot> {
        let hits = self.counter(&format!("{name}_hits_total"), labels)?;
        let misses = self.counter(&format!("{name}_misses_total"), labels)?;
        let evictions = self.counter(&format!("{name}_evictions_total"), labels)?;
        let size = self.gauge(&format!("{name}_size"), labels)?;
        let lookups = hits + misses;
        Some(CacheSnapshot {
            hits,
            misses,
            evictions,
            size,
            hit_rate: (lookups > 0).then(|| hits as f64 / lookups as f64),
        })
    }

    /// The configured window lengths, shortest first.
    pub fn windows(&self) -> &[Duration] {
        &self.windows
    }

    /// Tick number: 0 for the empty snapshot a registry starts with, then 1, 2, …
    pub fn seq(&self) -> u64 {
        self.seq
    }

    /// Wall-clock time of the tick.
    pub fn taken_at(&self) -> SystemTime {
        self.taken_at
    }

    /// Time since the previous tick (the denominator of every rate).
    pub fn interval(&self) -> Duration {
        self.interval
    }

    /// How long the merge took.
    pub fn tick_duration(&self) -> Duration {
        self.tick_duration
    }

    /// Number of shards merged.
    pub fn shard_count(&self) -> usize {
        self.shards
    }

    /// Every series, sorted by name then labels (series of one metric are adjacent).
    pub fn series(&self) -> SeriesList<'_> {
        SeriesList { snap: self, start: 0, end: self.view.len() }
    }

    /// The series of metric `name`.
    pub fn family(&self, name: &str) -> SeriesList<'_> {
        let (view, order) = (&self.view, &self.view.order);
        let name_of = |id: u32| &*view.family_of(view.records.get(id as usize)).name;
        let lo = order.partition_point(|&id| name_of(id) < name);
        let hi = lo + order[lo..].partition_point(|&id| name_of(id) == name);
        SeriesList { snap: self, start: lo, end: hi }
    }

    /// Groups of adjacent series sharing a metric name (families whose series all expired are
    /// left out).
    pub fn families(&self) -> impl Iterator<Item = SeriesList<'_>> {
        let (view, order) = (&self.view, &self.view.order);
        let name_of = move |id: u32| &view.family_of(view.records.get(id as usize)).name;
        let mut start = 0;
        std::iter::from_fn(move || {
            while start < order.len() {
                let name = name_of(order[start]);
                let end = start + order[start..].partition_point(|&id| name_of(id) == name);
                let list = SeriesList { snap: self, start, end };
                start = end;
                if !list.is_empty() {
                    return Some(list);
                }
            }
            None
        })
    }

    /// The series `name` with exactly these labels (in any order).
    pub fn find(&self, name: &str, labels: &[(&str, &str)]) -> Option<Series<'_>> {
        self.family(name).iter().find(|s| s.labels().matches(labels))
    }

    /// A counter's cumulative total.
    pub fn counter(&self, name: &str, labels: &[(&str, &str)]) -> Option<u64> {
        self.counter_value(name, labels).map(|c| c.total)
    }

    /// A counter's total, delta and rate.
    pub fn counter_value(&self, name: &str, labels: &[(&str, &str)]) -> Option<CounterValue> {
        match self.find(name, labels)?.value() {
            Value::Counter(c) => Some(c),
            _ => None,
        }
    }

    /// A gauge's value.
    pub fn gauge(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        match self.find(name, labels)?.value() {
            Value::Gauge(g) => Some(g),
            _ => None,
        }
    }

    /// A histogram.
    pub fn histogram(&self, name: &str, labels: &[(&str, &str)]) -> Option<&HistogramSnapshot> {
        match self.find(name, labels)?.value() {
            Value::Histogram(h) => Some(h),
            _ => None,
        }
    }
}

/// Derived statistics of an [`crate::metric::Operation`] (cumulative, or over a window).
#[derive(Debug, Clone, PartialEq)]
pub struct OperationStats {
    /// Calls.
    pub count: u64,
    /// Failed calls.
    pub errors: u64,
    /// `errors / count`; `None` without calls.
    pub error_rate: Option<f64>,
    /// `1 - error_rate`; `None` without calls.
    pub success_rate: Option<f64>,
    /// Sum of recorded durations.
    pub total_time: Duration,
    /// Latency statistics in nanoseconds; `None` while nothing was timed.
    pub mean: Option<f64>,
    pub min: Option<u64>,
    pub max: Option<u64>,
    pub stddev: Option<f64>,
    pub p50: Option<u64>,
    pub p90: Option<u64>,
    pub p95: Option<u64>,
    pub p99: Option<u64>,
    pub p999: Option<u64>,
    /// Calls per second (over the window, or the last interval for cumulative stats).
    pub throughput: f64,
}

impl OperationStats {
    pub(crate) fn new(count: u64, errors: u64, h: &HistogramSnapshot, covered: Duration) -> OperationStats {
        let rate = (count > 0).then(|| errors as f64 / count as f64);
        let secs = covered.as_secs_f64();
        OperationStats {
            count,
            errors,
            error_rate: rate,
            success_rate: rate.map(|r| 1.0 - r),
            total_time: Duration::from_nanos(h.sum()),
            mean: h.mean(),
            min: h.min(),
            max: h.max(),
            stddev: h.stddev(),
            p50: h.quantile(0.5),
            p90: h.quantile(0.9),
            p95: h.quantile(0.95),
            p99: h.quantile(0.99),
            p999: h.quantile(0.999),
            throughput: if secs > 0.0 { count as f64 / secs } else { 0.0 },
        }
    }
}

/// A [`crate::metric::Cache`] at a tick.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CacheSnapshot {
    pub hits: u64,
    pub misses: u64,
    pub evictions: u64,
    pub size: f64,
    /// `hits / (hits + misses)`; `None` before the first look-up.
    pub hit_rate: Option<f64>,
}

#[cfg(test)]
mod labels_tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> Labels {
        Labels::new(pairs.iter().map(|&(k, v)| (Arc::from(k), Arc::from(v))).collect())
    }

    #[test]
    fn pairs_survive_the_one_allocation_encoding() {
        let awkward = ["", "plain", "a\"b", "back\\slash", "new\nline", "\\\"\n", "ü ✓", "=\",", "\"", "\\"];
        for a in awkward {
            for b in awkward {
                let l = labels(&[("zeta", b), ("alpha", a), ("mid", "x")]);
                let pairs: Vec<_> = l.iter().collect();
                assert_eq!(pairs, [("alpha", a), ("mid", "x"), ("zeta", b)], "{a:?} {b:?}");
                assert_eq!(l.iter().len(), 3);
                assert_eq!((l.get("alpha"), l.get("zeta"), l.get("nope")), (Some(a), Some(b), None));
                assert!(l.matches(&[("mid", "x"), ("zeta", b), ("alpha", a)]));
                assert!(!l.matches(&[("mid", "x"), ("alpha", a)]));
                let mut want = String::from("alpha=\"");
                crate::exposition::escape_label_value(&mut want, a);
                want.push_str("\",mid=\"x\",zeta=\"");
                crate::exposition::escape_label_value(&mut want, b);
                want.push('"');
                assert_eq!(l.rendered(), want);
            }
        }
        let empty = labels(&[]);
        assert_eq!((empty.len(), empty.iter().next(), empty.rendered()), (0, None, ""));
        assert_eq!(empty, Labels::default());
    }

    #[test]
    fn order_and_equality_follow_the_pairs() {
        let values = ["", "a", "a b", "a\"", "a\\", "b", "ab"];
        let all: Vec<Labels> = values.iter().map(|v| labels(&[("k", v)])).collect();
        for (x, lx) in values.iter().zip(&all) {
            for (y, ly) in values.iter().zip(&all) {
                assert_eq!(lx.cmp(ly), x.cmp(y), "{x:?} vs {y:?}");
                assert_eq!(lx == ly, x == y);
            }
        }
        assert!(labels(&[("a", "z")]) < labels(&[("b", "a")]));
        assert!(labels(&[("a", "1")]) < labels(&[("a", "1"), ("b", "0")]));
    }
}

#[cfg(test)]
mod scaled_tests {
    use crate::{Registry, Unit};

    /// A histogram recorded in ns reads back in ns: bucket bounds hold their values, quantiles
    /// are within a bucket, `le` counts are exact at bounds of the seconds grid, and the native
    /// keys are the keys in seconds.
    #[test]
    fn nanosecond_histograms_read_back_in_nanoseconds() {
        let r = Registry::builder().manual().build();
        let h = r.histogram("scaled_latency").unit(Unit::Nanoseconds).build().unwrap();
        // 2^-10 s = 976,562.5 ns is a bucket bound at schema 5.
        let values = [0u64, 7, 976_562, 976_563, 2_000_000, 2_000_000, 400_000_000, u64::MAX];
        for v in values {
            h.record(v);
        }
        let snap = r.flush();
        let s = snap.histogram("scaled_latency", &[]).unwrap();
        assert_eq!((s.count(), s.precision()), (values.len() as u64, 5));
        let buckets: Vec<_> = s.buckets().collect();
        for v in values {
            let b = buckets.iter().find(|b| b.low <= v && v <= b.high).unwrap_or_else(|| panic!("{v} in no bucket"));
            assert!(b.count >= 1);
        }
        assert!(buckets.windows(2).all(|w| w[0].high < w[1].low));
        assert_eq!(s.count_le(976_562.5), 3, "0, 7 and 976,562 ns are ≤ 2^-10 s");
        assert_eq!(s.count_le(976_562.0), 3);
        let p50 = s.quantile(0.5).unwrap() as f64;
        assert!((p50 - 976_563.0).abs() / 976_563.0 < 0.011, "{p50}");
        #[cfg(any(feature = "protobuf", feature = "remote-write", feature = "otlp"))]
        native_keys_are_the_keys_in_seconds(s, &values);
    }

    #[cfg(any(feature = "protobuf", feature = "remote-write", feature = "otlp"))]
    fn native_keys_are_the_keys_in_seconds(s: &super::HistogramSnapshot, values: &[u64]) {
        use crate::exp_buckets::NANOS_TO_SECONDS;
        let (schema, zero, keys) = s.native();
        assert_eq!((schema, zero), (5, 1));
        let keys: Vec<_> = keys.collect();
        let mut expected: Vec<(i32, u64)> = Vec::new();
        for &v in values.iter().filter(|&&v| v > 0) {
            let k = NANOS_TO_SECONDS.key(v);
            match expected.last_mut() {
                Some((last, n)) if *last == k => *n += 1,
                _ => expected.push((k, 1)),
            }
        }
        assert_eq!(keys, expected);
        assert_eq!(keys[1].0, -10 << 5);
        assert_eq!(keys[2].0, (-10 << 5) + 1);
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn one_pass_classic_counts_equal_count_le_per_bound() {
        let r = crate::Registry::builder().manual().build();
        let h = r.histogram("t").unit(crate::Unit::Nanoseconds).build().unwrap();
        for i in 0..5_000u64 {
            h.record(i * i * 37 % 10_000_019);
        }
        let snap = r.flush();
        let hs = snap.histogram("t", &[]).unwrap();
        let bounds: Vec<f64> = (0..80).map(|k| 1.3f64.powi(k)).collect();
        let mut cursor = hs.counts_le();
        for &b in &bounds {
            assert_eq!(cursor.count_le(b), hs.count_le(b), "bound {b}");
        }
    }
}
