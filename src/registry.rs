//! The series catalogue: `(name, labels) → storage location`, builders, cardinality caps,
//! and the [`Registry`] handle that owns the aggregator thread.

use std::{collections::HashMap, fmt, sync::Arc, time::Duration};

use crate::{
    aggregator::{Aggregator, Ticker},
    buckets,
    error::{validate_label_name, validate_metric_name, Error},
    metric::{
        counter::Counter,
        family::{Family, FamilyInner},
        gauge::{Gauge, GaugeStore},
        histogram::Histogram,
    },
    self_metrics,
    shard::{CounterLoc, HistLoc, Loc, ShardList},
    snapshot::{FamilyInfo, Labels, SeriesMeta, Snapshot},
    sync::{lock, Arc as SyncArc, Mutex, OnceBox, Published},
    Kind, Unit,
};

/// Default aggregator tick.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(1);
/// Default cap on series per metric family; further label sets go to the overflow series.
pub const DEFAULT_MAX_SERIES_PER_FAMILY: usize = 10_000;
/// Default cap on series per registry.
pub const DEFAULT_MAX_SERIES: usize = 200_000;

/// Where a series' value lives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Store {
    /// `index` is the dense counter-cell number, `loc` its place in every shard.
    Counter {
        index: usize,
        loc: CounterLoc,
    },
    Gauge(Loc),
    Histogram {
        index: usize,
        loc: HistLoc,
        precision: u8,
    },
}

/// Everything behind a registry that handles need: shards, gauges, catalogue, published
/// snapshot, aggregator state. Handles hold an `Arc<Core>`; the aggregator thread's lifetime is
/// tied to [`Registry`] clones instead.
pub(crate) struct Core {
    /// Never-reused id (≥ 1) that keys the thread-local shard binding.
    pub(crate) id: u64,
    pub(crate) shards: ShardList,
    pub(crate) gauges: GaugeStore,
    pub(crate) catalogue: Mutex<Catalogue>,
    pub(crate) published: Published<Snapshot>,
    pub(crate) aggregator: Mutex<Aggregator>,
    pub(crate) interval: Duration,
    pub(crate) exemplars: crate::exemplar::ExemplarStore,
    rejected: CounterLoc,
    overflow: CounterLoc,
}

impl Core {
    /// Counts one rejected value (NaN, bad label count) into the self-metric, on whichever
    /// thread noticed it — through that thread's shard like any other counter.
    #[cold]
    pub(crate) fn reject(&self) {
        crate::metric::counter::add(self, self.rejected, 1);
    }

    /// Keeps an exemplar for the counter at `loc` (off the fast path: allocates).
    #[cold]
    #[inline(never)]
    pub(crate) fn counter_exemplar(&self, loc: CounterLoc, n: u64, labels: &[(&str, &str)]) {
        match crate::exemplar::Exemplar::new(n, labels) {
            Some(e) => self.exemplars.store_counter(loc.index(), e),
            None => self.reject(),
        }
    }

    /// Keeps an exemplar for the histogram at `loc`, in the `le` bucket that holds `value`
    /// (off the fast path: allocates; the first one of a series takes the catalogue lock).
    #[cold]
    #[inline(never)]
    pub(crate) fn histogram_exemplar(&self, loc: HistLoc, value: u64, labels: &[(&str, &str)]) {
        let Some(e) = crate::exemplar::Exemplar::new(value, labels) else { return self.reject() };
        let index = loc.index();
        self.exemplars.store_histogram(index, e, || lock(&self.catalogue).exemplar_bounds(index));
    }

    /// Registers (or finds) a series and counts a cap redirect. The catalogue lock is released
    /// before the self-metric is recorded.
    pub(crate) fn resolve(&self, f: impl FnOnce(&mut Catalogue) -> Result<Registered, Error>) -> Result<Store, Error> {
        let r = f(&mut lock(&self.catalogue))?;
        if r.overflowed {
            self.count_overflow();
        }
        Ok(r.store)
    }

    /// Counts one look-up redirected to an overflow series.
    pub(crate) fn count_overflow(&self) {
        crate::metric::counter::add(self, self.overflow, 1);
    }
}

fn next_registry_id() -> u64 {
    // Ids start at 1: 0 marks an empty thread-local cache slot. A std atomic on purpose: this
    // is process-global bookkeeping, not part of any modelled protocol.
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}

/// Configures and starts a [`Registry`].
#[derive(Debug, Clone)]
#[must_use = "a builder does nothing until `build()`"]
pub struct RegistryBuilder {
    interval: Duration,
    background: bool,
    max_series: usize,
    max_series_per_family: usize,
    windows: Vec<Duration>,
    expire_after: Option<u32>,
}

impl Default for RegistryBuilder {
    fn default() -> Self {
        RegistryBuilder {
            interval: DEFAULT_INTERVAL,
            background: cfg!(not(shardmetrics_loom)),
            max_series: DEFAULT_MAX_SERIES,
            max_series_per_family: DEFAULT_MAX_SERIES_PER_FAMILY,
            windows: crate::window::DEFAULT_WINDOWS.to_vec(),
            expire_after: None,
        }
    }
}

impl RegistryBuilder {
    /// Aggregator tick (default 1 s). Values below 1 ms are raised to 1 ms.
    pub fn interval(mut self, interval: Duration) -> Self {
        self.interval = interval.max(Duration::from_millis(1));
        self
    }

    /// No aggregator thread: snapshots are published only by [`Registry::flush`]. For tests,
    /// the loom models, and embedding the tick in a loop of your own.
    pub fn manual(mut self) -> Self {
        self.background = false;
        self
    }

    /// Cap on series in the whole registry (default 200,000). Past it, new label sets of a
    /// family go to the family's overflow series (`overflow="true"`).
    pub fn max_series(mut self, n: usize) -> Self {
        self.max_series = n;
        self
    }

    /// Cap on series per metric name (default 10,000); see [`RegistryBuilder::max_series`].
    pub fn max_series_per_family(mut self, n: usize) -> Self {
        self.max_series_per_family = n;
        self
    }

    /// Window lengths served by [`Snapshot::window`] and the JSON endpoint (default 10 s, 1 min,
    /// 5 min). History for the longest is kept, up to [`crate::window::MAX_TICKS`] ticks.
    pub fn windows(mut self, windows: &[Duration]) -> Self {
        let mut w: Vec<Duration> = windows.iter().copied().filter(|d| !d.is_zero()).collect();
        w.sort();
        w.dedup();
        self.windows = w;
        self
    }

    /// Hides counters and histograms that saw no change for `ticks` ticks (default: never).
    /// An expired series that changes again reappears counting from zero (Prometheus' `rate()`
    /// treats that as a counter reset). Its cells stay allocated (8 B per thread per counter)
    /// and it keeps its place under the cardinality caps, so expiry trims exports, not memory;
    /// the caps bound memory. Gauges never expire.
    pub fn expire_after(mut self, ticks: u32) -> Self {
        self.expire_after = Some(ticks.max(1));
        self
    }

    /// Creates the registry and starts its aggregator thread (unless [`RegistryBuilder::manual`]).
    pub fn build(self) -> Registry {
        let mut catalogue = Catalogue::new(self.max_series, self.max_series_per_family, self.windows.clone());
        let mut self_counter = |name, help| match catalogue.register(Def::new(name, Kind::Counter).help(help)) {
            Ok(Registered { store: Store::Counter { loc, .. }, .. }) => loc,
            _ => unreachable!("self-metrics are valid counters"),
        };
        let rejected =
            self_counter(self_metrics::REJECTED, "Values rejected on the recording path (NaN, bad label counts)");
        let overflow = self_counter(
            self_metrics::OVERFLOW,
            "Series look-ups redirected to an overflow series by a cardinality cap",
        );
        let core = SyncArc::new(Core {
            id: next_registry_id(),
            shards: ShardList::new(),
            gauges: GaugeStore::new(),
            catalogue: Mutex::new(catalogue),
            published: Published::new(SyncArc::new(Snapshot::empty())),
            aggregator: Mutex::new(Aggregator::new(self.windows.clone(), self.expire_after)),
            interval: self.interval,
            exemplars: crate::exemplar::ExemplarStore::new(),
            rejected,
            overflow,
        });
        let ticker = self.background.then(|| Ticker::start(core.clone(), self.interval));
        Registry { owner: SyncArc::new(Owner { core, ticker: Mutex::new(ticker) }) }
    }
}

/// A set of metrics with its own shards and aggregator thread.
///
/// `Clone` is an `Arc` clone. The aggregator thread stops when the last `Registry` clone is
/// dropped (handles may outlive it and keep recording; [`Registry::flush`] is then the only way
/// to publish, from a clone you kept — so keep one).
#[derive(Clone)]
pub struct Registry {
    owner: SyncArc<Owner>,
}

struct Owner {
    core: SyncArc<Core>,
    ticker: Mutex<Option<Ticker>>,
}

impl Drop for Owner {
    fn drop(&mut self) {
        if let Some(t) = lock(&self.ticker).take() {
            t.stop();
        }
        // No tick can run any more (no ticker, no `Registry` left to flush), so collectors and
        // observers are dead weight — and they hold handles whose `Arc<Core>` would keep the
        // core, and any thread they own (the alert notifier), alive in a cycle. `try_lock`:
        // if the last clone is dropped inside a tick on this thread, leave them be.
        let hooks = self
            .core
            .aggregator
            .try_lock()
            .ok()
            .map(|mut a| (std::mem::take(&mut a.collectors), std::mem::take(&mut a.observers)));
        drop(hooks);
    }
}

impl fmt::Debug for Registry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Registry").field("id", &self.owner.core.id).finish_non_exhaustive()
    }
}

impl Default for Registry {
    fn default() -> Self {
        Registry::builder().build()
    }
}

impl Registry {
    /// A builder with the defaults: 1 s interval, background aggregator thread.
    pub fn builder() -> RegistryBuilder {
        RegistryBuilder::default()
    }

    /// A registry with the default configuration.
    pub fn new() -> Registry {
        Registry::default()
    }

    pub(crate) fn core(&self) -> &SyncArc<Core> {
        &self.owner.core
    }

    /// Starts defining a counter (`u64`, monotonic).
    pub fn counter(&self, name: &str) -> MetricBuilder<'_, Counter> {
        MetricBuilder::new(self, name, Kind::Counter)
    }

    /// Starts defining a gauge (`f64`, last write wins).
    pub fn gauge(&self, name: &str) -> MetricBuilder<'_, Gauge> {
        MetricBuilder::new(self, name, Kind::Gauge)
    }

    /// Starts defining a histogram (`u64` values in log-linear buckets).
    pub fn histogram(&self, name: &str) -> MetricBuilder<'_, Histogram> {
        MetricBuilder::new(self, name, Kind::Histogram)
    }

    /// Starts defining an [`Operation`](crate::Operation): latency histogram plus call and
    /// error counters under one name.
    pub fn operation(&self, name: &str) -> crate::metric::operation::OperationBuilder<'_> {
        crate::metric::operation::OperationBuilder::new(self, name)
    }

    /// Registers [`CacheStats`](crate::CacheStats) named `name`.
    pub fn cache_stats(&self, name: &str, help: &str) -> Result<crate::CacheStats, Error> {
        crate::CacheStats::new(self, name, help)
    }

    /// Registers a [`StateSet`](crate::StateSet) starting in `states[0]`.
    pub fn state_set(&self, name: &str, states: &[&str], help: &str) -> Result<crate::StateSet, Error> {
        crate::StateSet::new(self, name, states, help)
    }

    pub(crate) fn note_operation(&self, name: &str) {
        let mut c = lock(&self.owner.core.catalogue);
        if !c.operations.iter().any(|o| &**o == name) {
            c.operations.push(Arc::from(name));
            c.dirty = true;
        }
    }

    /// Merges every shard now and publishes the result; returns it.
    ///
    /// Everything recorded by operations that happen-before this call is in the returned
    /// snapshot (and in every later one). Safe to call from many threads at once: the merges
    /// are serialised and published in order.
    pub fn flush(&self) -> SyncArc<Snapshot> {
        Aggregator::tick(&self.owner.core)
    }

    /// The latest published snapshot. Wait-free.
    ///
    /// # Performance characteristics
    /// One `arc_swap::ArcSwap::load_full`: no lock, never waits for the aggregator.
    #[inline]
    pub fn snapshot(&self) -> SyncArc<Snapshot> {
        self.owner.core.published.load()
    }

    /// Publishes a final snapshot and stops the aggregator thread. Idempotent; recording and
    /// [`Registry::flush`] keep working afterwards.
    pub fn shutdown(&self) -> SyncArc<Snapshot> {
        if let Some(t) = lock(&self.owner.ticker).take() {
            t.stop();
        }
        self.flush()
    }

    /// Adds a [`Collector`](crate::Collector), run at the start of every tick.
    pub fn add_collector(&self, collector: impl crate::Collector + 'static) {
        lock(&self.owner.core.aggregator).collectors.push(Box::new(collector));
    }

    /// Adds an [`Observer`](crate::Observer), run with every published snapshot.
    pub fn add_observer(&self, observer: impl crate::Observer + 'static) {
        lock(&self.owner.core.aggregator).observers.push(Box::new(observer));
    }

    /// Whether the background aggregator thread is running.
    pub fn is_ticking(&self) -> bool {
        lock(&self.owner.ticker).is_some()
    }

    /// Configured aggregator interval.
    pub fn interval(&self) -> Duration {
        self.owner.core.interval
    }

    /// Number of shards ever created (the peak number of threads that recorded at once,
    /// since exited threads' shards are re-used).
    pub fn shard_count(&self) -> usize {
        self.owner.core.shards.len()
    }

    /// Bytes allocated for per-thread cells across all shards (counters, histogram slots and
    /// bucket groups), for memory-bound tests and capacity planning.
    pub fn shard_memory_bytes(&self) -> usize {
        let core = &self.owner.core;
        let precisions = lock(&core.catalogue).hist_precisions.clone();
        core.shards
            .iter()
            // SAFETY: `hist_precisions[i]` is histogram `i`'s precision (the catalogue appends
            // it when it assigns the number), the one every record into its slots used.
            .map(|s| unsafe { s.allocated_bytes(&precisions) })
            .sum()
    }

    /// Number of registered series (including the self-metrics and overflow series).
    pub fn series_count(&self) -> usize {
        lock(&self.owner.core.catalogue).series.len()
    }
}

/// The process-wide default registry (1 s interval), created on first use.
#[cfg(not(shardmetrics_loom))]
pub fn global() -> &'static Registry {
    static GLOBAL: std::sync::OnceLock<Registry> = std::sync::OnceLock::new();
    GLOBAL.get_or_init(Registry::new)
}

/// A private, manually ticked registry for no-op handles.
#[cfg(not(shardmetrics_loom))]
pub(crate) fn sink() -> &'static Registry {
    static SINK: std::sync::OnceLock<Registry> = std::sync::OnceLock::new();
    SINK.get_or_init(|| Registry::builder().manual().build())
}

/// A metric definition collected by a builder.
#[derive(Debug, Clone)]
pub(crate) struct Def {
    pub(crate) name: String,
    pub(crate) kind: Kind,
    pub(crate) help: Option<String>,
    pub(crate) unit: Unit,
    pub(crate) labels: Vec<(String, String)>,
    pub(crate) precision: u8,
    pub(crate) buckets: Option<Vec<f64>>,
    pub(crate) quantiles: Option<Vec<f64>>,
    pub(crate) quantile_window: Option<Duration>,
    /// A gauge family that is an OpenMetrics StateSet (one 0/1 series per state).
    pub(crate) stateset: bool,
}

impl Def {
    fn new(name: &str, kind: Kind) -> Def {
        Def {
            name: name.to_owned(),
            kind,
            help: None,
            unit: Unit::None,
            labels: Vec::new(),
            precision: buckets::DEFAULT_PRECISION,
            buckets: None,
            quantiles: None,
            quantile_window: None,
            stateset: false,
        }
    }

    fn help(mut self, help: &str) -> Def {
        self.help = Some(help.to_owned());
        self
    }
}

/// Builds a counter, gauge or histogram (see [`Registry::counter`] and friends).
#[must_use = "a builder registers nothing until `build()` or `family()`"]
pub struct MetricBuilder<'r, M> {
    registry: &'r Registry,
    def: Def,
    _kind: std::marker::PhantomData<fn() -> M>,
}

impl<M> fmt::Debug for MetricBuilder<'_, M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MetricBuilder").field("def", &self.def).finish_non_exhaustive()
    }
}

impl<'r, M: crate::metric::Metric> MetricBuilder<'r, M> {
    fn new(registry: &'r Registry, name: &str, kind: Kind) -> Self {
        MetricBuilder { registry, def: Def::new(name, kind), _kind: std::marker::PhantomData }
    }

    /// Help text (exported as `# HELP`).
    pub fn help(mut self, help: &str) -> Self {
        self.def.help = Some(help.to_owned());
        self
    }

    /// Unit of the values (time units are exported in seconds).
    pub fn unit(mut self, unit: Unit) -> Self {
        self.def.unit = unit;
        self
    }

    /// Adds a constant label to this series. Order does not matter.
    pub fn label(mut self, name: &str, value: &str) -> Self {
        self.def.labels.push((name.to_owned(), value.to_owned()));
        self
    }

    /// Adds several constant labels.
    pub fn labels(mut self, pairs: &[(&str, &str)]) -> Self {
        self.def.labels.extend(pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())));
        self
    }

    /// Registers the series (or returns the existing one with the same definition).
    pub fn build(self) -> Result<M, Error> {
        let core = self.registry.core();
        let unit = self.def.unit;
        let store = core.resolve(|c| c.register(self.def))?;
        Ok(M::from_store(core.clone(), store, unit))
    }

    /// Registers a labelled family: one series per distinct tuple of label values, looked up
    /// with [`Family::with`]. Constant labels given with [`MetricBuilder::label`] are not
    /// allowed here (give every label name).
    pub fn family(self, label_names: &[&str]) -> Result<Family<M>, Error> {
        let core = self.registry.core();
        let names: Vec<Arc<str>> = label_names.iter().map(|s| Arc::from(*s)).collect();
        let index = lock(&core.catalogue).register_family(&self.def, &names)?;
        Ok(Family::new(FamilyInner::new(core.clone(), index, Arc::from(self.def.name.as_str()), names, self.def.unit)))
    }
}

impl MetricBuilder<'_, crate::Gauge> {
    /// Marks the gauge family as an OpenMetrics StateSet (see [`crate::StateSet`]).
    pub(crate) fn stateset(mut self) -> Self {
        self.def.stateset = true;
        self
    }
}

impl MetricBuilder<'_, Histogram> {
    /// Sub-bucket bits (default 5: ≤ 1.56 % relative quantile error, 256 B per populated
    /// power of two per thread). Range `1..=10`.
    pub fn precision(mut self, bits: u8) -> Self {
        self.def.precision = bits;
        self
    }

    /// `le` boundaries for the classic-histogram exposition, in the exported base unit
    /// (seconds for time units). The default suits latencies from 1 µs to 10 s.
    pub fn buckets(mut self, bounds: &[f64]) -> Self {
        self.def.buckets = Some(bounds.to_vec());
        self
    }

    /// Also exports summary-style quantile series, e.g. `&[0.5, 0.9, 0.99, 0.999]`: a family
    /// of type `summary` named after the histogram's exported name plus `_quantiles`
    /// (`http_request_duration_seconds_quantiles{quantile="0.99"}`, with `_sum` and `_count`),
    /// rendered beside the classic histogram in both text formats. Quantiles are computed from
    /// the merged fine buckets at render time (within the precision's relative error), since
    /// the start or over [`quantile_window`](Self::quantile_window). Each must be in `0..=1`,
    /// ascending.
    pub fn quantiles(mut self, quantiles: &[f64]) -> Self {
        self.def.quantiles = Some(quantiles.to_vec());
        self
    }

    /// Computes the exported quantiles over the last `window` (one of the registry's
    /// [`RegistryBuilder::windows`]) instead of since the start, like a Prometheus summary's sliding
    /// window. Needs [`quantiles`](Self::quantiles).
    pub fn quantile_window(mut self, window: Duration) -> Self {
        self.def.quantile_window = Some(window);
        self
    }
}

struct FamilyEntry {
    info: Arc<FamilyInfo>,
    /// Sorted label names.
    label_names: Box<[Arc<str>]>,
    series: usize,
    overflow: Option<Store>,
}

pub(crate) struct SeriesEntry {
    pub(crate) meta: Arc<SeriesMeta>,
    pub(crate) family: usize,
    pub(crate) store: Store,
}

/// One entry of the aggregator's view: everything to merge and label one series.
#[derive(Clone)]
pub(crate) struct ViewEntry {
    pub(crate) id: u32,
    pub(crate) meta: Arc<SeriesMeta>,
    pub(crate) family: Arc<FamilyInfo>,
    pub(crate) store: Store,
}

/// The catalogue as the aggregator sees it, rebuilt only when something was registered.
pub(crate) struct View {
    /// Sorted by name, then labels.
    pub(crate) entries: Vec<ViewEntry>,
    pub(crate) counters: usize,
    pub(crate) histograms: usize,
    pub(crate) operations: Arc<[Arc<str>]>,
}

type SeriesKey = (Arc<str>, Labels);

/// The registry's catalogue. Behind a mutex: only registration and the aggregator's view
/// refresh take it, never the recording path.
pub(crate) struct Catalogue {
    families: Vec<FamilyEntry>,
    family_by_name: HashMap<Arc<str>, usize>,
    /// Every family and sample name the text renders use, with the family that uses it.
    exposed: HashMap<String, Arc<str>>,
    pub(crate) series: Vec<SeriesEntry>,
    by_key: HashMap<SeriesKey, usize>,
    counters: usize,
    gauges: usize,
    pub(crate) hist_precisions: Vec<u8>,
    /// The family of each histogram, by dense histogram number.
    hist_families: Vec<u32>,
    max_series: usize,
    max_per_family: usize,
    /// The registry's window lengths (a histogram's quantile window must be one of them).
    windows: Vec<Duration>,
    view: Arc<View>,
    dirty: bool,
    operations: Vec<Arc<str>>,
}

/// The outcome of a series look-up in the catalogue.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Registered {
    pub(crate) store: Store,
    /// A cap redirected the look-up to the family's overflow series.
    pub(crate) overflowed: bool,
}

impl Catalogue {
    fn new(max_series: usize, max_per_family: usize, windows: Vec<Duration>) -> Self {
        Catalogue {
            windows,
            families: Vec::new(),
            family_by_name: HashMap::new(),
            exposed: HashMap::new(),
            series: Vec::new(),
            by_key: HashMap::new(),
            counters: 0,
            gauges: 0,
            hist_precisions: Vec::new(),
            hist_families: Vec::new(),
            max_series,
            max_per_family,
            view: Arc::new(View { entries: Vec::new(), counters: 0, histograms: 0, operations: Arc::new([]) }),
            dirty: true,
            operations: Vec::new(),
        }
    }

    /// The current view, rebuilt (sorted) if series were added since the last call.
    pub(crate) fn view(&mut self) -> Arc<View> {
        if self.dirty {
            let mut entries: Vec<ViewEntry> = self
                .series
                .iter()
                .enumerate()
                .map(|(id, s)| ViewEntry {
                    id: id as u32,
                    meta: s.meta.clone(),
                    family: self.families[s.family].info.clone(),
                    store: s.store,
                })
                .collect();
            entries.sort_by(|a, b| (&a.meta.name, &a.meta.labels).cmp(&(&b.meta.name, &b.meta.labels)));
            self.view = Arc::new(View {
                entries,
                counters: self.counters,
                histograms: self.hist_precisions.len(),
                operations: self.operations.iter().cloned().collect(),
            });
            self.dirty = false;
        }
        self.view.clone()
    }

    /// Validates `def`'s name and label names, and finds or creates its family.
    fn family_for(&mut self, def: &Def, label_names: &[Arc<str>]) -> Result<usize, Error> {
        validate_metric_name(&def.name)?;
        for (i, l) in label_names.iter().enumerate() {
            validate_label_name(&def.name, l, def.kind)?;
            if label_names[..i].contains(l) {
                return Err(Error::DuplicateLabel { metric: def.name.clone(), label: l.to_string() });
            }
        }
        if def.kind == Kind::Histogram {
            if !(buckets::MIN_PRECISION..=buckets::MAX_PRECISION).contains(&def.precision) {
                return Err(Error::InvalidPrecision { name: def.name.clone(), precision: def.precision });
            }
            if let Some(b) = &def.buckets {
                if b.is_empty() || b.iter().any(|x| !x.is_finite()) || b.windows(2).any(|w| w[0] >= w[1]) {
                    return Err(Error::InvalidBuckets { name: def.name.clone() });
                }
            }
            let invalid = |reason| Err(Error::InvalidQuantiles { name: def.name.clone(), reason });
            match (&def.quantiles, def.quantile_window) {
                (Some(q), _) if q.is_empty() => return invalid("no quantiles given"),
                (Some(q), _) if q.iter().any(|x| !(0.0..=1.0).contains(x)) => {
                    return invalid("every quantile must be in 0..=1")
                }
                (Some(q), _) if q.windows(2).any(|w| w[0] >= w[1]) => {
                    return invalid("quantiles must be strictly ascending")
                }
                (None, Some(_)) => return invalid("a quantile window needs quantiles"),
                (_, Some(w)) if !self.windows.contains(&w) => {
                    return invalid("the quantile window is not one of the registry's windows")
                }
                _ => {}
            }
        }
        let mut sorted: Vec<Arc<str>> = label_names.to_vec();
        sorted.sort();
        if let Some(&f) = self.family_by_name.get(def.name.as_str()) {
            let fam = &mut self.families[f];
            let info = &fam.info;
            if info.kind != def.kind {
                return Err(Error::KindMismatch { name: def.name.clone(), registered: info.kind, requested: def.kind });
            }
            if *fam.label_names != *sorted {
                return Err(Error::LabelNamesMismatch {
                    name: def.name.clone(),
                    registered: fam.label_names.iter().map(|s| s.to_string()).collect(),
                    requested: sorted.iter().map(|s| s.to_string()).collect(),
                });
            }
            if info.unit != def.unit {
                return Err(Error::ConfigMismatch { name: def.name.clone(), what: "unit" });
            }
            if def.kind == Kind::Histogram {
                if info.precision != def.precision {
                    return Err(Error::ConfigMismatch { name: def.name.clone(), what: "precision" });
                }
                if def.buckets.is_some() && info.buckets.as_deref() != def.buckets.as_deref() {
                    return Err(Error::ConfigMismatch { name: def.name.clone(), what: "bucket layout" });
                }
                if def.quantiles.is_some()
                    && (info.quantiles.as_deref() != def.quantiles.as_deref()
                        || info.quantile_window != def.quantile_window)
                {
                    return Err(Error::ConfigMismatch { name: def.name.clone(), what: "quantiles" });
                }
            }
            if let Some(h) = &def.help {
                if fam.info.help.is_empty() && !h.is_empty() {
                    let mut info = (*fam.info).clone();
                    info.help = Arc::from(h.as_str());
                    info.headers = OnceBox::new();
                    fam.info = Arc::new(info);
                    self.dirty = true;
                }
            }
            return Ok(f);
        }
        let name: Arc<str> = Arc::from(def.name.as_str());
        let info = FamilyInfo {
            name: name.clone(),
            kind: def.kind,
            help: Arc::from(def.help.as_deref().unwrap_or("")),
            unit: def.unit,
            precision: def.precision,
            buckets: def.buckets.as_deref().map(Arc::from),
            quantiles: def.quantiles.as_deref().map(Arc::from),
            quantile_window: def.quantile_window,
            stateset: def.stateset,
            headers: OnceBox::new(),
        };
        let exposed = crate::exposition::exposition_names(info.desc());
        if let Some((n, other)) = exposed.iter().find_map(|n| self.exposed.get(n).map(|o| (n, o))) {
            let (exported, other) = (n.clone(), other.to_string());
            return Err(Error::ExpositionClash { name: def.name.clone(), exported, other });
        }
        for n in exposed {
            self.exposed.insert(n, name.clone());
        }
        self.families.push(FamilyEntry { info: Arc::new(info), label_names: sorted.into(), series: 0, overflow: None });
        self.family_by_name.insert(name, self.families.len() - 1);
        Ok(self.families.len() - 1)
    }

    #[cfg(feature = "metrics-facade")]
    /// The kind and unit of the family called `name`, if one is registered.
    pub(crate) fn family_kind_unit(&self, name: &str) -> Option<(Kind, Unit)> {
        let f = *self.family_by_name.get(name)?;
        Some((self.families[f].info.kind, self.families[f].info.unit))
    }

    #[cfg(feature = "metrics-facade")]
    /// Fills in the help text and unit of an already registered family, each only while it is
    /// still empty (`""`, [`Unit::None`]); `Unit::None` leaves the unit alone. For descriptions
    /// that arrive after the first series was registered (the `metrics` facade's `describe_*!`).
    /// Callers make sure a new unit does not reinterpret values already recorded.
    pub(crate) fn describe(&mut self, name: &str, help: &str, unit: Unit) {
        let Some(&f) = self.family_by_name.get(name) else {
            return;
        };
        let fam = &mut self.families[f];
        let set_help = fam.info.help.is_empty() && !help.is_empty();
        let set_unit = fam.info.unit == Unit::None && unit != Unit::None;
        if set_help || set_unit {
            let mut info = (*fam.info).clone();
            if set_help {
                info.help = Arc::from(help);
            }
            if set_unit {
                info.unit = unit;
            }
            info.headers = OnceBox::new();
            fam.info = Arc::new(info);
            self.dirty = true;
        }
    }

    /// Registers (or finds) a single series from a builder.
    pub(crate) fn register(&mut self, def: Def) -> Result<Registered, Error> {
        let names: Vec<Arc<str>> = def.labels.iter().map(|(k, _)| Arc::from(k.as_str())).collect();
        let f = self.family_for(&def, &names)?;
        let labels = def.labels.iter().map(|(k, v)| (Arc::from(k.as_str()), Arc::from(v.as_str()))).collect();
        self.series_in(f, labels)
    }

    /// Registers (or finds) a family without series.
    pub(crate) fn register_family(&mut self, def: &Def, label_names: &[Arc<str>]) -> Result<usize, Error> {
        if !def.labels.is_empty() {
            let (k, _) = &def.labels[0];
            return Err(Error::LabelNamesMismatch {
                name: def.name.clone(),
                registered: label_names.iter().map(|s| s.to_string()).collect(),
                requested: vec![k.clone()],
            });
        }
        self.family_for(def, label_names)
    }

    /// The series of family `f` with these label values (given in `names` order).
    pub(crate) fn family_series(&mut self, f: usize, names: &[Arc<str>], values: &[&str]) -> Result<Registered, Error> {
        if names.len() != values.len() {
            return Err(Error::LabelCount {
                name: self.families[f].info.name.to_string(),
                expected: names.len(),
                got: values.len(),
            });
        }
        let labels = names.iter().zip(values).map(|(k, v)| (k.clone(), Arc::from(*v))).collect();
        self.series_in(f, labels)
    }

    /// The exported `le` bounds of histogram `index`, converted into its recording unit.
    pub(crate) fn exemplar_bounds(&self, index: usize) -> Box<[f64]> {
        let info = &self.families[self.hist_families[index] as usize].info;
        info.le_bounds().iter().map(|&b| crate::exposition::bound_in_unit(b, info.unit())).collect()
    }

    /// The overflow series of family `f` (created on first use).
    pub(crate) fn overflow_series(&mut self, f: usize) -> Store {
        if let Some(s) = self.families[f].overflow {
            return s;
        }
        let labels = Labels::new(vec![(Arc::from("overflow"), Arc::from("true"))]);
        let store = self.allocate(f, labels).unwrap_or_else(|_| self.fallback_store(f));
        self.families[f].overflow = Some(store);
        store
    }

    /// When storage is exhausted: the first series of the family (there is always one by
    /// the time storage can run out).
    fn fallback_store(&self, f: usize) -> Store {
        self.series.iter().find(|s| s.family == f).map(|s| s.store).expect("storage exhausted on an empty family")
    }

    fn series_in(&mut self, f: usize, labels: Vec<(Arc<str>, Arc<str>)>) -> Result<Registered, Error> {
        let labels = Labels::new(labels);
        let key = (self.families[f].info.name.clone(), labels);
        if let Some(&i) = self.by_key.get(&key) {
            return Ok(Registered { store: self.series[i].store, overflowed: false });
        }
        if self.families[f].series >= self.max_per_family || self.series.len() >= self.max_series {
            return Ok(Registered { store: self.overflow_series(f), overflowed: true });
        }
        let store = self.allocate(f, key.1)?;
        Ok(Registered { store, overflowed: false })
    }

    fn allocate(&mut self, f: usize, labels: Labels) -> Result<Store, Error> {
        let info = self.families[f].info.clone();
        let exhausted = || Error::StorageExhausted { name: info.name.to_string() };
        let store = match info.kind {
            Kind::Counter => {
                let index = self.counters;
                let loc = CounterLoc::new(index).ok_or_else(exhausted)?;
                self.counters += 1;
                Store::Counter { index, loc }
            }
            Kind::Gauge => {
                let loc = GaugeStore::loc(self.gauges).ok_or_else(exhausted)?;
                self.gauges += 1;
                Store::Gauge(loc)
            }
            Kind::Histogram => {
                let index = self.hist_precisions.len();
                let loc = HistLoc::new(index).ok_or_else(exhausted)?;
                self.hist_precisions.push(info.precision);
                self.hist_families.push(f as u32);
                Store::Histogram { index, loc, precision: info.precision }
            }
        };
        let meta = Arc::new(SeriesMeta::new(info.name.clone(), labels.clone()));
        self.by_key.insert((info.name.clone(), labels), self.series.len());
        self.series.push(SeriesEntry { meta, family: f, store });
        self.families[f].series += 1;
        self.dirty = true;
        Ok(store)
    }
}
