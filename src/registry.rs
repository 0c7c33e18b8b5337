//! The [`Registry`] handle: its builder, the aggregator thread it owns, the global registry,
//! and the entry points that register metrics (through [`MetricBuilder`]).

use std::{fmt, time::Duration};

use crate::{
    aggregator::{Aggregator, Ticker},
    catalogue::{Catalogue, Def, Limits, Registered},
    error::Error,
    metric::{
        counter::Counter,
        gauge::{Gauge, GaugeStore},
        histogram::Histogram,
    },
    metric_builder::MetricBuilder,
    self_metrics,
    shard::ShardList,
    snapshot::Snapshot,
    store::{next_registry_id, Core, Store},
    sync::{lock, Arc as SyncArc, Mutex, Published},
    Kind,
};

/// Configures and starts a [`Registry`].
#[derive(Debug, Clone)]
#[must_use = "a builder does nothing until `build()`"]
pub struct RegistryBuilder {
    interval: Duration,
    background: bool,
    max_series: usize,
    max_series_per_family: usize,
    limits: Limits,
    windows: Vec<Duration>,
    expire_after: Option<u32>,
}

impl Default for RegistryBuilder {
    fn default() -> Self {
        RegistryBuilder {
            interval: RegistryBuilder::DEFAULT_INTERVAL,
            background: cfg!(not(shardmetrics_loom)),
            max_series: RegistryBuilder::DEFAULT_MAX_SERIES,
            max_series_per_family: RegistryBuilder::DEFAULT_MAX_SERIES_PER_FAMILY,
            limits: Limits {
                name: RegistryBuilder::DEFAULT_MAX_NAME_LEN,
                label_value: RegistryBuilder::DEFAULT_MAX_LABEL_VALUE_LEN,
            },
            windows: crate::window::DEFAULT_WINDOWS.to_vec(),
            expire_after: None,
        }
    }
}

impl RegistryBuilder {
    /// Default aggregator tick.
    pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(1);
    /// Default cap on series per metric family; further label sets go to the overflow series.
    pub const DEFAULT_MAX_SERIES_PER_FAMILY: usize = 10_000;
    /// Default cap on series per registry.
    pub const DEFAULT_MAX_SERIES: usize = 200_000;
    /// Longest aggregator tick [`interval`](Self::interval) accepts: one day.
    pub const MAX_INTERVAL: Duration = Duration::from_secs(24 * 3600);
    /// Default limit on metric and label names, in bytes: OpenTelemetry's limit on instrument
    /// names (255).
    pub const DEFAULT_MAX_NAME_LEN: usize = 255;
    /// Default limit on label values, in bytes: Grafana Mimir's default
    /// (`max_label_value_length`), so what is accepted here is accepted there.
    pub const DEFAULT_MAX_LABEL_VALUE_LEN: usize = 2048;

    /// Aggregator tick (default 1 s), clamped to 1 ms ..= [`MAX_INTERVAL`](Self::MAX_INTERVAL)
    /// (a tick a day apart is no longer a metric; use [`manual`](Self::manual) and
    /// [`Registry::flush`] for that).
    pub fn interval(mut self, interval: Duration) -> Self {
        self.interval = interval.clamp(Duration::from_millis(1), Self::MAX_INTERVAL);
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

    /// Longest metric or label name accepted, in bytes (default
    /// [`DEFAULT_MAX_NAME_LEN`](Self::DEFAULT_MAX_NAME_LEN)). Longer ones are refused with
    /// [`Error::TooLong`].
    pub fn max_name_len(mut self, bytes: usize) -> Self {
        self.limits.name = bytes;
        self
    }

    /// Longest label value accepted, in bytes (default
    /// [`DEFAULT_MAX_LABEL_VALUE_LEN`](Self::DEFAULT_MAX_LABEL_VALUE_LEN)). A registration with
    /// a longer one is refused with [`Error::TooLong`]; a family look-up with one
    /// ([`Family::with`](crate::Family::with)) is counted in
    /// `shardmetrics_rejected_values_total` and recorded in the family's overflow series, like
    /// any look-up that cannot get a series of its own.
    pub fn max_label_value_len(mut self, bytes: usize) -> Self {
        self.limits.label_value = bytes;
        self
    }

    /// Cap on series per metric name (default 10,000); see [`RegistryBuilder::max_series`].
    pub fn max_series_per_family(mut self, n: usize) -> Self {
        self.max_series_per_family = n;
        self
    }

    /// Window lengths served by [`Snapshot::window`] and the JSON endpoint (default 10 s, 1 min,
    /// 5 min). Each costs a bounded set of checkpoints per counter and histogram (see
    /// [`crate::window`] for the resolution), whatever the number of ticks.
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
        let mut catalogue =
            Catalogue::new(self.max_series, self.max_series_per_family, self.windows.clone(), self.limits);
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
        Registry {
            owner: SyncArc::new(Owner { core, ticker: Mutex::new(ticker), started_at: std::time::SystemTime::now() }),
        }
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
    /// When the registry was built: the start of every cumulative series (OTLP's
    /// `start_time_unix_nano`).
    started_at: std::time::SystemTime,
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

    /// Starts defining a histogram (`u64` values in base-2 exponential buckets, as Prometheus native histograms).
    pub fn histogram(&self, name: &str) -> MetricBuilder<'_, Histogram> {
        MetricBuilder::new(self, name, Kind::Histogram)
    }

    /// Starts defining an [`Operation`](crate::metric::Operation): latency histogram plus call and
    /// error counters under one name.
    pub fn operation(&self, name: &str) -> crate::metric::operation::OperationBuilder<'_> {
        crate::metric::operation::OperationBuilder::new(self, name)
    }

    /// Registers [`Cache`](crate::metric::Cache) named `name`.
    pub fn cache(&self, name: &str, help: &str) -> Result<crate::metric::Cache, Error> {
        crate::metric::Cache::new(self, name, help)
    }

    /// Registers a [`StateSet`](crate::metric::StateSet) starting in `states[0]`.
    pub fn state_set(&self, name: &str, states: &[&str], help: &str) -> Result<crate::metric::StateSet, Error> {
        crate::metric::StateSet::new(self, name, states, help)
    }

    pub(crate) fn note_operation(&self, name: &str) {
        lock(&self.owner.core.catalogue).note_operation(name);
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

    /// Adds a [`Collector`](crate::aggregator::Collector), run at the start of every tick.
    pub fn add_collector(&self, collector: impl crate::aggregator::Collector + 'static) {
        lock(&self.owner.core.aggregator).collectors.push(Box::new(collector));
    }

    /// Adds an [`Observer`](crate::aggregator::Observer), run with every published snapshot.
    pub fn add_observer(&self, observer: impl crate::aggregator::Observer + 'static) {
        lock(&self.owner.core.aggregator).observers.push(Box::new(observer));
    }

    /// Whether the background aggregator thread is running.
    pub fn is_ticking(&self) -> bool {
        lock(&self.owner.ticker).is_some()
    }

    /// When the registry was built: the time every cumulative total counts from (the OTLP
    /// exporter's `start_time_unix_nano`).
    pub fn started_at(&self) -> std::time::SystemTime {
        self.owner.started_at
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
        lock(&self.owner.core.catalogue).len()
    }
}

/// The process-wide default registry (1 s interval), created on first use.
#[cfg(not(shardmetrics_loom))]
pub fn global() -> &'static Registry {
    // loom-exempt: a process-wide static (loom types cannot be statics; not built under loom).
    static GLOBAL: std::sync::OnceLock<Registry> = std::sync::OnceLock::new();
    GLOBAL.get_or_init(Registry::new)
}

/// A private, manually ticked registry for no-op handles.
#[cfg(not(shardmetrics_loom))]
pub(crate) fn sink() -> &'static Registry {
    // loom-exempt: as for `global`.
    static SINK: std::sync::OnceLock<Registry> = std::sync::OnceLock::new();
    SINK.get_or_init(|| Registry::builder().manual().build())
}
