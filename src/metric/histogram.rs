//! Histograms: `u64` values in per-thread base-2 exponential (native-histogram) buckets, and RAII timers.

use std::fmt;

use crate::{
    metric::{sealed::Sealed, Metric},
    shard::{with_cached_shard, with_shard, HistLoc},
    store::{Core, Store},
    sync::Arc,
    Unit,
};

/// Records `value` into the calling thread's slot of the histogram at `loc`.
///
/// # Performance characteristics
/// Wait-free: thread-local access, bucket index from one `lzcnt`, loads of the slot chunk and
/// bucket group, min/max/sum updates and one Release store of the bucket. No lock, no
/// read-modify-write; a bucket group is allocated the first time this thread hits its power
/// of two.
///
/// Compiles to (x86-64, rustc 1.95, `benches/hot_path.rs` `histogram_record`, `objdump -d`):
/// 46 instructions from the thread-local compare to the bucket store, once the handle's
/// fields are in registers, plus the slot's record count after it. 9 loads (two thread-local
/// words, slot-chunk pointer, bucket-group pointer, `min_inv`, `max`, `sum`, the bucket, the
/// count), 3 stores always (`sum`, the bucket's and the count's `incq`, each a plain load +
/// store) and 2 only when the value is a new minimum or maximum; 5 branches
/// (registry id, slot chunk allocated, group allocated: never taken once warm; new min, new
/// max: rarely taken); one `bsr` for the bucket index and three variable shifts by the
/// handle's precision; no call. Callgrind: 51 instructions per `record(v)` in a loop (50
/// before the count was added).
#[inline(always)]
pub(crate) fn record(id: u64, core: &Core, loc: HistLoc, precision: u8, value: u64) {
    // SAFETY: `precision` is the series' precision: handles copy `loc` and `precision` together
    // from the series' `Store::Histogram`, so every record into its slots uses the same one.
    if with_cached_shard(id, |s| unsafe { s.hist_slot(loc).record(value, precision) }).is_none() {
        record_slow(id, core, loc, precision, value);
    }
}

/// [`record`] on a thread whose shard for this registry is not cached (its first record, or
/// one after its binding was destroyed).
#[cold]
#[inline(never)]
fn record_slow(id: u64, core: &Core, loc: HistLoc, precision: u8, value: u64) {
    // SAFETY: as in `record`.
    with_shard(id, &core.shards, |s| unsafe { s.hist_slot(loc).record(value, precision) });
}

macro_rules! histogram_methods {
    () => {
        /// Records one value.
        #[inline]
        pub fn record(&self, value: u64) {
            record(self.id, &self.core, self.loc, self.precision, value);
        }

        /// Records a duration in the histogram's time unit (nanoseconds if it has none).
        #[inline]
        pub fn record_duration(&self, d: std::time::Duration) {
            let nanos = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
            self.record(self.unit.convert_nanos(nanos));
        }

        /// Records one value and keeps `labels` (e.g. `&[("trace_id", id)]`) as the latest
        /// exemplar of the exported `le` bucket the value falls in, written after that bucket's
        /// sample in OpenMetrics. The value takes the ordinary fast path; the exemplar costs an
        /// allocation and a lock-free swap (the series' first one also takes the catalogue
        /// lock). An invalid exemplar is dropped and counted as rejected; see
        /// [`crate::exemplar::Exemplar`].
        pub fn record_with_exemplar(&self, value: u64, labels: &[(&str, &str)]) {
            self.record(value);
            self.core.histogram_exemplar(self.loc, value, labels);
        }

        /// [`record_duration`](Self::record_duration) with an exemplar (see
        /// [`record_with_exemplar`](Self::record_with_exemplar)).
        pub fn record_duration_with_exemplar(&self, d: std::time::Duration, labels: &[(&str, &str)]) {
            let nanos = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
            self.record_with_exemplar(self.unit.convert_nanos(nanos), labels);
        }

        /// Starts a timer that records the elapsed time when dropped: two clock reads and one
        /// record.
        #[inline]
        pub fn start_timer(&self) -> Timer<'_> {
            Timer {
                id: self.id,
                core: &self.core,
                loc: self.loc,
                precision: self.precision,
                unit: self.unit,
                start: Some(crate::clock::now()),
            }
        }

        /// Runs `f` and records how long it took.
        #[inline]
        pub fn time<R>(&self, f: impl FnOnce() -> R) -> R {
            let _t = self.start_timer();
            f()
        }

        /// The unit values are recorded in.
        pub fn unit(&self) -> Unit {
            self.unit
        }
    };
}

/// A histogram of `u64` values. Cheap to clone (`Arc`), `Send + Sync`.
#[derive(Clone)]
#[must_use = "histograms do nothing unless you use them"]
pub struct Histogram {
    id: u64,
    core: Arc<Core>,
    loc: HistLoc,
    precision: u8,
    unit: Unit,
}

impl Histogram {
    /// Lowest precision, i.e. exponential schema, a histogram can have
    /// ([`MetricBuilder::precision`](crate::MetricBuilder)): schema 0, one bucket per power of
    /// two, ≤ 33 % quantile error.
    pub const MIN_PRECISION: u8 = crate::buckets::MIN_PRECISION;
    /// Highest precision (schema 8, Prometheus' maximum): 256 buckets per power of two,
    /// ≤ 0.14 % quantile error (plus half a unit: values are integers).
    pub const MAX_PRECISION: u8 = crate::buckets::MAX_PRECISION;
    /// The default (schema 5): 32 buckets per power of two, ≤ 1.79 % quantile error.
    pub const DEFAULT_PRECISION: u8 = crate::buckets::DEFAULT_PRECISION;

    histogram_methods!();

    /// A histogram that records into a private registry nobody reads.
    #[cfg(not(shardmetrics_loom))]
    pub fn noop() -> Histogram {
        crate::registry::sink().histogram("noop_histogram").build().expect("valid")
    }

    /// Loom models only: the shard chunk this series' slots live in.
    #[cfg(shardmetrics_loom)]
    #[doc(hidden)]
    pub fn shard_chunk(&self) -> usize {
        self.loc.chunk()
    }
}

impl fmt::Debug for Histogram {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Histogram")
            .field("precision", &self.precision)
            .field("unit", &self.unit)
            .finish_non_exhaustive()
    }
}

/// A histogram borrowed from a [`crate::Family`].
#[derive(Clone, Copy)]
#[must_use = "histograms do nothing unless you use them"]
pub struct HistogramRef<'a> {
    id: u64,
    core: &'a Arc<Core>,
    loc: HistLoc,
    precision: u8,
    unit: Unit,
}

impl HistogramRef<'_> {
    histogram_methods!();

    /// An owned handle to the same series.
    pub fn to_owned(&self) -> Histogram {
        Histogram { id: self.id, core: self.core.clone(), loc: self.loc, precision: self.precision, unit: self.unit }
    }
}

impl fmt::Debug for HistogramRef<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HistogramRef").field("precision", &self.precision).finish_non_exhaustive()
    }
}

/// Records the time since it was started into its histogram when dropped.
#[must_use = "a timer records when it is dropped; binding it to `_` drops it at once"]
pub struct Timer<'a> {
    id: u64,
    core: &'a Core,
    loc: HistLoc,
    precision: u8,
    unit: Unit,
    /// Raw clock reading ([`crate::clock`]) at the start; `None` once recorded or discarded.
    start: Option<u64>,
}

impl Timer<'_> {
    /// Records now and returns the elapsed time.
    pub fn stop(mut self) -> std::time::Duration {
        let start = self.start.take().expect("timer runs until stopped");
        let nanos = crate::clock::nanos_since(start);
        self.record(nanos);
        std::time::Duration::from_nanos(nanos)
    }

    /// Records now with an exemplar (e.g. the request's trace id) and returns the elapsed time;
    /// see [`Histogram::record_with_exemplar`].
    pub fn stop_with_exemplar(mut self, labels: &[(&str, &str)]) -> std::time::Duration {
        let start = self.start.take().expect("timer runs until stopped");
        let nanos = crate::clock::nanos_since(start);
        let value = self.unit.convert_nanos(nanos);
        record(self.id, self.core, self.loc, self.precision, value);
        self.core.histogram_exemplar(self.loc, value, labels);
        std::time::Duration::from_nanos(nanos)
    }

    /// Drops the timer without recording.
    pub fn discard(mut self) {
        self.start = None;
    }

    #[inline]
    fn record(&self, nanos: u64) {
        record(self.id, self.core, self.loc, self.precision, self.unit.convert_nanos(nanos));
    }
}

impl Drop for Timer<'_> {
    #[inline]
    fn drop(&mut self) {
        if let Some(start) = self.start {
            self.record(crate::clock::nanos_since(start));
        }
    }
}

impl fmt::Debug for Timer<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Timer").field("start", &self.start).finish_non_exhaustive()
    }
}

impl Metric for Histogram {}

impl Sealed for Histogram {
    type Ref<'a> = HistogramRef<'a>;

    fn from_store(core: Arc<Core>, store: Store, unit: Unit) -> Self {
        match store {
            Store::Histogram { loc, precision, .. } => Histogram { id: core.id, core, loc, precision, unit },
            _ => unreachable!("catalogue returned a non-histogram store for a histogram"),
        }
    }

    #[inline]
    fn make_ref(core: &Arc<Core>, store: Store, unit: Unit) -> HistogramRef<'_> {
        match store {
            Store::Histogram { loc, precision, .. } => HistogramRef { id: core.id, core, loc, precision, unit },
            _ => unreachable!("catalogue returned a non-histogram store for a histogram"),
        }
    }
}
