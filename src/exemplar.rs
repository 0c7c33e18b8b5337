//! OpenMetrics exemplars: a labelled sample (typically a trace id) attached to a counter or to
//! one `le` bucket of a histogram, so a dashboard can jump from a latency bucket to a trace that
//! landed in it.
//!
//! # Where they live and what they cost
//!
//! Exemplars are not in the shards. [`crate::Counter::inc_with_exemplar`] and
//! [`crate::Histogram::record_with_exemplar`] record the value through the ordinary fast path
//! and then store the exemplar in the registry's exemplar store: one `ArcSwapOption` per
//! counter, and per histogram one per exported `le` bucket (plus `+Inf`), so each bucket keeps
//! the **latest** exemplar that fell into it — the slow tail bucket keeps its trace even while
//! the fast buckets are overwritten thousands of times a second. Storing one is two allocations
//! (the `Arc<Exemplar>` and one buffer for its label strings; escaping waits for the render),
//! a TSC clock read and a lock-free swap; the slot table of a series
//! is allocated the first time it records an exemplar (for a histogram, under the catalogue
//! lock, which also gives the `le` bounds). Plain `inc()` / `record()` never look at any of it.
//!
//! The aggregator copies the current exemplars into each snapshot (only while some series has
//! ever recorded one), and the OpenMetrics render writes them after the sample they belong to:
//!
//! ```text
//! http_request_duration_seconds_bucket{le="0.25"} 1027 # {trace_id="4bf92f3577b34da6"} 0.213 1700000000.123
//! ```
//!
//! The Prometheus 0.0.4 format has no exemplars; the JSON render lists them per series.
//!
//! # Validation
//!
//! Exemplar label names follow the metric label-name rule (`[a-zA-Z_][a-zA-Z0-9_]*`, no `__`
//! prefix, no duplicates), at most [`MAX_EXEMPLAR_LABELS`] labels and, as OpenMetrics requires,
//! the names and values together are at most 128 characters. An invalid exemplar is dropped and counted in
//! `shardmetrics_rejected_values_total`; the value itself is always recorded.

use std::{fmt, sync::Arc, time::SystemTime};

use crate::sync::{ArcCell, AtomicBool, OnceBox, Ordering};

/// Most characters the label names and values of one exemplar may have together (OpenMetrics).
pub const MAX_EXEMPLAR_LABEL_CHARS: usize = 128;

/// Most labels one exemplar may carry (a trace id and a span id are the usual two).
pub const MAX_EXEMPLAR_LABELS: usize = 8;

/// A sample attached to a counter or histogram bucket: labels (e.g. `trace_id`), the value
/// recorded with it and when.
///
/// Built in two allocations (the `Arc` and one buffer holding every name and value back to
/// back); the clock is the timers' TSC clock, converted to wall time when read.
#[derive(Clone, PartialEq)]
pub struct Exemplar {
    /// Names and values, back to back.
    data: Box<str>,
    /// Byte lengths of each (name, value) in `data`; the first `n` are used.
    lens: [(u16, u16); MAX_EXEMPLAR_LABELS],
    n: u8,
    value: u64,
    /// Raw clock reading ([`crate::clock`]) when recorded.
    at: u64,
}

impl Exemplar {
    /// Validates `labels` and builds an exemplar stamped now; `None` if a label name is invalid
    /// or repeated, there are more than [`MAX_EXEMPLAR_LABELS`], or the labels are longer than
    /// [`MAX_EXEMPLAR_LABEL_CHARS`].
    pub(crate) fn new(value: u64, labels: &[(&str, &str)]) -> Option<Exemplar> {
        if labels.len() > MAX_EXEMPLAR_LABELS {
            return None;
        }
        let mut bytes = 0;
        let mut lens = [(0u16, 0u16); MAX_EXEMPLAR_LABELS];
        for (i, (k, v)) in labels.iter().enumerate() {
            if !valid_label_name(k) || labels[..i].iter().any(|(o, _)| o == k) {
                return None;
            }
            bytes += k.len() + v.len();
            // ≤ 128 characters are ≤ 512 bytes: anything longer fails the check below anyway.
            lens[i] = (u16::try_from(k.len()).ok()?, u16::try_from(v.len()).ok()?);
        }
        // Characters ≤ bytes: count them only when the bytes alone could be too many.
        if bytes > MAX_EXEMPLAR_LABEL_CHARS
            && labels.iter().map(|(k, v)| k.chars().count() + v.chars().count()).sum::<usize>()
                > MAX_EXEMPLAR_LABEL_CHARS
        {
            return None;
        }
        let mut data = String::with_capacity(bytes);
        for (k, v) in labels {
            data.push_str(k);
            data.push_str(v);
        }
        Some(Exemplar { data: data.into(), lens, n: labels.len() as u8, value, at: crate::clock::now() })
    }

    /// The exemplar's labels, in the order they were given.
    pub fn labels(&self) -> impl ExactSizeIterator<Item = (&str, &str)> {
        let mut at = 0;
        self.lens[..usize::from(self.n)].iter().map(move |&(k, v)| {
            let (k, v) = (usize::from(k), usize::from(v));
            let pair = (&self.data[at..at + k], &self.data[at + k..at + k + v]);
            at += k + v;
            pair
        })
    }

    /// The value recorded with the exemplar, in the metric's own unit (for a counter, the
    /// amount added).
    pub fn value(&self) -> u64 {
        self.value
    }

    /// When the exemplar was recorded (wall clock now, less the time elapsed since on the
    /// timers' clock).
    pub fn timestamp(&self) -> SystemTime {
        let ago = std::time::Duration::from_nanos(crate::clock::nanos_since(self.at));
        SystemTime::now().checked_sub(ago).unwrap_or(std::time::UNIX_EPOCH)
    }

    /// Writes `k="v",…` escaped for the text formats.
    pub(crate) fn write_labels(&self, out: &mut String) {
        for (i, (k, v)) in self.labels().enumerate() {
            if i > 0 {
                out.push(',');
            }
            out.push_str(k);
            out.push_str("=\"");
            crate::exposition::escape_label_value(out, v);
            out.push('"');
        }
    }
}

impl fmt::Debug for Exemplar {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Exemplar")
            .field("labels", &self.labels().collect::<Vec<_>>())
            .field("value", &self.value)
            .field("timestamp", &self.timestamp())
            .finish()
    }
}

fn valid_label_name(k: &str) -> bool {
    let b = k.as_bytes();
    !b.is_empty()
        && (b[0].is_ascii_alphabetic() || b[0] == b'_')
        && b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'_')
        && !k.starts_with("__")
}

/// Slot tables of 64 entries in chunk 0, doubling per chunk (the shards' layout), allocated on
/// first use and never moved; enough chunks for every counter or histogram a registry can hold.
const BASE: usize = 64;
const CHUNKS: usize = 27;

struct Table<T> {
    chunks: [OnceBox<Box<[T]>>; CHUNKS],
}

impl<T: Default> Table<T> {
    fn new() -> Self {
        Table { chunks: std::array::from_fn(|_| OnceBox::new()) }
    }

    fn place(index: usize) -> (usize, usize) {
        let k = (usize::BITS - 1 - (index / BASE + 1).leading_zeros()) as usize;
        (k, index - BASE * ((1 << k) - 1))
    }

    fn get(&self, index: usize) -> Option<&T> {
        let (k, off) = Self::place(index);
        self.chunks.get(k)?.get().map(|c| &c[off])
    }

    fn get_or_init(&self, index: usize) -> Option<&T> {
        let (k, off) = Self::place(index);
        let chunk = self.chunks.get(k)?.get_or_init(|| (0..BASE << k).map(|_| T::default()).collect());
        Some(&chunk[off])
    }
}

/// A histogram's exemplar slots: one per exported `le` bound plus `+Inf`.
pub(crate) struct HistExemplars {
    /// The `le` bounds converted into the histogram's recording unit, ascending.
    upper: Box<[f64]>,
    slots: Box<[ArcCell<Exemplar>]>,
}

/// The exemplars of every counter and histogram of one registry.
pub(crate) struct ExemplarStore {
    /// Set once any series stored an exemplar: until then ticks skip the look-ups.
    used: AtomicBool,
    counters: Table<ArcCell<Exemplar>>,
    histograms: Table<OnceBox<HistExemplars>>,
}

/// The exemplars a snapshot carries for one series: one entry for a counter; for a histogram
/// one per exported `le` bound and a last one for `+Inf`.
pub type Exemplars = Box<[Option<Arc<Exemplar>>]>;

impl ExemplarStore {
    pub(crate) fn new() -> Self {
        ExemplarStore { used: AtomicBool::new(false), counters: Table::new(), histograms: Table::new() }
    }

    fn mark_used(&self) {
        if !self.used.load(Ordering::Relaxed) {
            self.used.store(true, Ordering::Relaxed);
        }
    }

    /// Keeps `e` as counter `index`'s latest exemplar.
    pub(crate) fn store_counter(&self, index: usize, e: Exemplar) {
        if let Some(slot) = self.counters.get_or_init(index) {
            slot.store(Some(Arc::new(e)));
            self.mark_used();
        }
    }

    /// Keeps `e` as the latest exemplar of histogram `index`'s bucket that holds its value;
    /// `bounds` gives the `le` bounds (in the recording unit) the first time the series stores
    /// one.
    pub(crate) fn store_histogram(&self, index: usize, e: Exemplar, bounds: impl FnOnce() -> Box<[f64]>) {
        let Some(cell) = self.histograms.get_or_init(index) else { return };
        let h = cell.get_or_init(|| {
            let upper = bounds();
            let slots = (0..=upper.len()).map(|_| ArcCell::default()).collect();
            HistExemplars { upper, slots }
        });
        let value = e.value as f64;
        let bucket = h.upper.partition_point(|&b| b < value);
        h.slots[bucket].store(Some(Arc::new(e)));
        self.mark_used();
    }

    /// Whether any series ever stored an exemplar.
    pub(crate) fn in_use(&self) -> bool {
        self.used.load(Ordering::Relaxed)
    }

    /// Counter `index`'s latest exemplar, for a snapshot.
    pub(crate) fn counter(&self, index: usize) -> Option<Exemplars> {
        let e = self.counters.get(index)?.load()?;
        Some(Box::new([Some(e)]))
    }

    /// Histogram `index`'s latest exemplar per bucket, for a snapshot.
    pub(crate) fn histogram(&self, index: usize) -> Option<Exemplars> {
        let h = self.histograms.get(index)?.get()?;
        Some(h.slots.iter().map(ArcCell::load).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validates_labels() {
        assert!(Exemplar::new(1, &[("trace_id", "abc")]).is_some());
        assert!(Exemplar::new(1, &[]).is_some());
        assert!(Exemplar::new(1, &[("1x", "a")]).is_none());
        assert!(Exemplar::new(1, &[("__x", "a")]).is_none());
        assert!(Exemplar::new(1, &[("a-b", "a")]).is_none());
        assert!(Exemplar::new(1, &[("a", "1"), ("a", "2")]).is_none());
        let long = "x".repeat(120);
        assert!(Exemplar::new(1, &[("trace_id", &long)]).is_some()); // 8 + 120 = 128
        let long = "x".repeat(121);
        assert!(Exemplar::new(1, &[("trace_id", &long)]).is_none());
        // Characters, not bytes: 120 two-byte characters + 8 fit.
        let wide = "é".repeat(120);
        assert!(Exemplar::new(1, &[("trace_id", &wide)]).is_some());
        assert!(Exemplar::new(1, &[("trace_id", &"é".repeat(121))]).is_none());
        let many: Vec<(String, String)> = (0..9).map(|i| (format!("l{i}"), "v".to_owned())).collect();
        let many: Vec<(&str, &str)> = many.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        assert!(Exemplar::new(1, &many[..8]).is_some());
        assert!(Exemplar::new(1, &many).is_none(), "more than MAX_EXEMPLAR_LABELS");
        let e = Exemplar::new(7, &[("trace_id", "a\"b"), ("span", "s")]).expect("valid");
        let mut rendered = String::new();
        e.write_labels(&mut rendered);
        assert_eq!(rendered, r#"trace_id="a\"b",span="s""#);
        assert_eq!(e.labels().collect::<Vec<_>>(), [("trace_id", "a\"b"), ("span", "s")]);
        assert_eq!(e.value(), 7);
    }

    #[test]
    fn table_places_every_index_once() {
        let mut seen = std::collections::HashSet::new();
        for i in 0..10_000 {
            let (k, off) = Table::<u8>::place(i);
            assert!(off < BASE << k, "{i}");
            assert!(seen.insert((k, off)));
        }
        assert!(Table::<u8>::place(u32::MAX as usize).0 < CHUNKS);
    }

    #[test]
    fn latest_per_bucket() {
        let s = ExemplarStore::new();
        assert!(!s.in_use());
        assert!(s.histogram(3).is_none());
        let bounds = || -> Box<[f64]> { Box::new([10.0, 100.0]) };
        s.store_histogram(3, Exemplar::new(5, &[("t", "a")]).unwrap(), bounds);
        s.store_histogram(3, Exemplar::new(10, &[("t", "b")]).unwrap(), || unreachable!("initialised once"));
        s.store_histogram(3, Exemplar::new(500, &[("t", "c")]).unwrap(), bounds);
        s.store_histogram(3, Exemplar::new(50, &[("t", "d")]).unwrap(), bounds);
        assert!(s.in_use());
        let ex = s.histogram(3).expect("stored");
        let label = |i: usize| ex[i].as_ref().map(|e| e.labels().next().unwrap().1.to_owned());
        // 10 ≤ le=10: the later exemplar replaced the first; 50 in le=100; 500 in +Inf.
        assert_eq!((label(0), label(1), label(2)), (Some("b".into()), Some("d".into()), Some("c".into())));
        s.store_counter(100_000, Exemplar::new(2, &[]).unwrap());
        assert_eq!(s.counter(100_000).unwrap()[0].as_ref().unwrap().value(), 2);
        assert!(s.counter(99_999).unwrap_or_default().iter().all(Option::is_none));
    }
}
