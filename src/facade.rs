//! A backend for the [`metrics`] facade (feature `metrics-facade`): programs instrumented with
//! `metrics::counter!`, `gauge!`, `histogram!` and `describe_*!` record into a [`Registry`]'s
//! per-thread shards, and every shardmetrics exporter and query sees those series.
//!
//! One job over ~850 lines: the `metrics::Recorder` implementation and the key → handle cache
//! it needs on every macro call are one piece (the cache exists only for the recorder).
//!
//! ```
//! use shardmetrics::{facade::Recorder, Registry};
//!
//! let registry = Registry::new();
//! Recorder::new(registry.clone()).install()?; // once, at start-up
//!
//! metrics::describe_histogram!("request.latency", metrics::Unit::Seconds, "Time to serve a request");
//! metrics::counter!("requests", "route" => "/api").increment(1);
//! metrics::histogram!("request.latency").record(0.0042);
//!
//! let snap = registry.flush();
//! assert_eq!(snap.counter("requests", &[("route", "/api")]), Some(1));
//! let h = snap.histogram("request_latency", &[]).unwrap(); // sanitised name, nanoseconds
//! assert_eq!(h.max(), Some(4_200_000));
//! assert!(shardmetrics::export::prometheus::render(&snap).contains("request_latency_seconds_count 1"));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # How facade calls map onto shardmetrics
//!
//! | facade | here |
//! |---|---|
//! | metric name (`Key::name`) | [`sanitize_metric_name`]: every character outside `[a-zA-Z0-9_:]` (and a leading digit) becomes `_`, exactly as `metrics-exporter-prometheus` does: `http.requests-total` → `http_requests_total`, `9lives` → `_lives` |
//! | label keys | [`sanitize_label_key`]: outside `[a-zA-Z0-9_]` (and a leading digit) → `_`; label values are kept as given (escaped by the exporters) |
//! | label order | irrelevant: `("a","1"),("b","2")` and `("b","2"),("a","1")` are one series |
//! | `Counter::increment(n)` | [`Counter::add`]: the calling thread's shard cell |
//! | `Counter::absolute(v)` | see [below](#counterabsolute) |
//! | `Gauge::set/increment/decrement` | [`Gauge::set`]/[`Gauge::add`]/[`Gauge::sub`]; NaN is rejected and counted |
//! | `Histogram::record(v: f64)` | [`Histogram::record`] of `v × scale` rounded to the nearest integer; see [below](#histogram-values) |
//! | `describe_*!(name, unit, help)` | help text and unit of the family, before or after registration; see [below](#descriptions) |
//!
//! Registration never panics. A key that cannot be registered (a name that is empty after
//! sanitising, a name already used by another kind of metric or with other label names, a
//! reserved label such as `__x`, or `le`/`quantile` on a histogram, a unit clash with a series
//! registered through the native API) gets a *rejecting* handle: every value recorded through
//! it is dropped and counted in [`self_metrics::REJECTED`](crate::self_metrics::REJECTED)
//! (`shardmetrics_rejected_values_total`). [`Recorder::registration_errors`] counts the failed
//! registrations and [`Recorder::last_error`] says what the last one was.
//!
//! ## `Counter::absolute`
//!
//! A counter here is a sum of per-thread cells, so no operation can *set* its total. The facade
//! documents `absolute(v)` as "set the counter to at least `v`", for mirroring an external
//! monotonic total that several callers may report out of order. Each series keeps one atomic
//! high-water mark of the values given to `absolute`: `absolute(v)` raises it to `v` with one
//! `fetch_max` and adds the difference (if positive) through the calling thread's shard. So the
//! part of the total that comes from `absolute` is exactly the largest value ever passed, in
//! any interleaving of callers, and stale (smaller) values add nothing. Increments are not part
//! of that mark: a series fed by both `increment(n)` and `absolute(v)` totals
//! `Σn + max(v)`. A source that resets (reports a smaller value) adds nothing until it exceeds
//! its old maximum.
//!
//! ## Histogram values
//!
//! Histograms here hold `u64`s. A facade value `v` is stored as `round(v × scale)`
//! (ties away from zero, saturating at `u64::MAX`), where the scale comes from the unit the
//! histogram was described with:
//!
//! | `metrics::Unit` | registered as | scale |
//! |---|---|---|
//! | `Seconds` / `Milliseconds` / `Microseconds` / `Nanoseconds` | [`Unit::Nanoseconds`] | 10⁹ / 10⁶ / 10³ / 1 |
//! | `Bytes` / `Kibibytes` / `Mebibytes` / `Gibibytes` / `Tebibytes` | [`Unit::Bytes`] | 1 / 2¹⁰ / 2²⁰ / 2³⁰ / 2⁴⁰ |
//! | anything else, or not described | [`Unit::None`] | [`Recorder::with_scale`] (default 1) |
//!
//! So time histograms keep nanosecond resolution and export as `…_seconds` in seconds. Values
//! below half a unit of resolution are recorded as 0 (they still count): with the default scale
//! 1, a unitless `record(0.4)` is a 0. Use [`Recorder::with_scale`]`(1000.0)` to keep three
//! decimal places of unitless values; the snapshot and the exports then show the scaled
//! integers (250 for 0.25), and [`Recorder::histogram_scale`] gives the factor to divide by.
//! NaN, negative and infinite values are rejected and counted in `self_metrics::REJECTED`.
//!
//! ## Descriptions
//!
//! `describe_*!` before the first registration of a name: the family is registered with that
//! help text and unit. After it: the help text is set if the family has none, and the unit if
//! the family has none (`Unit::None`) — for a histogram only while nothing has been recorded
//! into it yet, because stored values cannot be rescaled (a late unit on a histogram that
//! already holds values is ignored; its help text still applies). The first non-empty help
//! and the first unit given for a name win. Counter and gauge units are metadata; only the
//! exact equivalents (the four time units, `Bytes`) are kept.
//!
//! # Performance characteristics
//!
//! A handle the facade returned (`let c = counter!("x");`) records straight into the shard:
//! one dynamic call, then the same wait-free path as a native [`Counter`]/[`Histogram`] (a
//! gauge is one atomic cell, as natively). Calling the macro every time also looks the key up:
//! a hash look-up in the calling thread's own cache (keyed by the key's precomputed hash; no
//! lock, no allocation, no write to memory another thread writes) and the `Arc` clone and drop
//! that the facade's owned handle types require — on a per-thread copy of the handle, so
//! threads calling the same macro do not bounce one reference count between cores. A thread's
//! first use of a key reads a process-wide copy-on-write map through arc-swap (lock-free).
//! Only the first use of a key takes the recorder's mutex and the catalogue lock.
//! Keys sent to an overflow series by a cardinality cap and keys that fail to register are not
//! cached, so the cache stays bounded by the registry's caps; such keys take the slow path on
//! every look-up.

#![forbid(unsafe_code)]

use std::{
    cell::RefCell,
    collections::HashMap,
    fmt,
    sync::{Arc, Mutex},
    thread::LocalKey,
};

use metrics::{Key, KeyName, Metadata, SharedString};

use crate::sync::{AtomicU64, Ordering};
use crate::{
    buckets,
    catalogue::Def,
    metric::sealed::Sealed,
    store::{Core, Store},
    sync::{lock, Published},
    Counter, Error, Gauge, Histogram, Kind, Registry, Unit,
};

/// Sanitises a metric name the way `metrics-exporter-prometheus` does: the first character
/// must match `[a-zA-Z_:]` and the others `[a-zA-Z0-9_:]`; each one that does not becomes `_`
/// (`http.requests-total` → `http_requests_total`, `9lives` → `_lives`).
pub fn sanitize_metric_name(name: &str) -> String {
    name.chars()
        .enumerate()
        .map(|(i, c)| {
            let ok = c.is_ascii_alphabetic() || c == '_' || c == ':' || (i > 0 && c.is_ascii_digit());
            if ok {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// Sanitises a label key the way `metrics-exporter-prometheus` does: the first character must
/// match `[a-zA-Z_]` and the others `[a-zA-Z0-9_]`; each one that does not becomes `_`
/// (`http.method` → `http_method`).
pub fn sanitize_label_key(key: &str) -> String {
    key.chars()
        .enumerate()
        .map(|(i, c)| if c.is_ascii_alphabetic() || c == '_' || (i > 0 && c.is_ascii_digit()) { c } else { '_' })
        .collect()
}

/// The unit a counter or gauge described with `u` is registered with: the exact equivalents,
/// else [`Unit::None`].
fn metadata_unit(u: metrics::Unit) -> Unit {
    match u {
        metrics::Unit::Seconds => Unit::Seconds,
        metrics::Unit::Milliseconds => Unit::Milliseconds,
        metrics::Unit::Microseconds => Unit::Microseconds,
        metrics::Unit::Nanoseconds => Unit::Nanoseconds,
        metrics::Unit::Bytes => Unit::Bytes,
        _ => Unit::None,
    }
}

/// The unit a histogram described with `u` is registered with, and the factor that turns a
/// facade `f64` into the stored `u64` (before rounding); `default_scale` for unitless ones.
fn histogram_unit(u: Option<metrics::Unit>, default_scale: f64) -> (Unit, f64) {
    match u {
        Some(metrics::Unit::Seconds) => (Unit::Nanoseconds, 1e9),
        Some(metrics::Unit::Milliseconds) => (Unit::Nanoseconds, 1e6),
        Some(metrics::Unit::Microseconds) => (Unit::Nanoseconds, 1e3),
        Some(metrics::Unit::Nanoseconds) => (Unit::Nanoseconds, 1.0),
        Some(metrics::Unit::Bytes) => (Unit::Bytes, 1.0),
        Some(metrics::Unit::Kibibytes) => (Unit::Bytes, (1u64 << 10) as f64),
        Some(metrics::Unit::Mebibytes) => (Unit::Bytes, (1u64 << 20) as f64),
        Some(metrics::Unit::Gibibytes) => (Unit::Bytes, (1u64 << 30) as f64),
        Some(metrics::Unit::Tebibytes) => (Unit::Bytes, (1u64 << 40) as f64),
        _ => (Unit::None, default_scale),
    }
}

/// Marks a [`Scale`] nothing has been recorded with yet. A scale is a positive `f64`, so its
/// sign bit is free.
const OPEN: u64 = 1 << 63;

/// The value scale of one histogram family, shared by all its facade handles.
///
/// # Synchronization
/// One atomic word: the scale's `f64` bits, plus [`OPEN`] while nothing has been recorded. The
/// first record clears `OPEN` (one `fetch_and`, then never again); a late description may swap
/// the scale only with a compare-exchange that expects `OPEN`. Both act on this one location,
/// so its modification order alone decides whether a value was recorded with the old or the new
/// scale, and no value is ever stored under a scale the family's unit does not match (the
/// describer changes the unit under the catalogue lock in the same critical section as the
/// exchange). Relaxed suffices: no other memory is published through this word.
#[derive(Debug)]
struct Scale(AtomicU64);

impl Scale {
    fn new(scale: f64) -> Self {
        Scale(AtomicU64::new(scale.to_bits() | OPEN))
    }

    /// The scale to record with; freezes it on first use.
    #[inline]
    fn for_record(&self) -> f64 {
        let bits = self.0.load(Ordering::Relaxed);
        if bits & OPEN == 0 {
            f64::from_bits(bits)
        } else {
            self.freeze()
        }
    }

    #[cold]
    #[inline(never)]
    fn freeze(&self) -> f64 {
        // Relaxed: see the type's docs. The value returned is the scale in force at the moment
        // of freezing, whichever describer came first.
        f64::from_bits(self.0.fetch_and(!OPEN, Ordering::Relaxed) & !OPEN)
    }

    /// Replaces the scale if nothing has been recorded with it yet.
    fn try_rescale(&self, scale: f64) -> bool {
        let cur = self.0.load(Ordering::Relaxed);
        cur & OPEN != 0
            && self.0.compare_exchange(cur, scale.to_bits() | OPEN, Ordering::Relaxed, Ordering::Relaxed).is_ok()
    }

    fn get(&self) -> f64 {
        f64::from_bits(self.0.load(Ordering::Relaxed) & !OPEN)
    }
}

/// The facade's view of one counter series. Each thread gets its own copy (see [`Cache`]);
/// copies share the series and the high-water mark.
#[derive(Clone)]
struct FacadeCounter {
    counter: Counter,
    /// Largest value passed to `absolute` (see the module docs).
    high_water: Arc<AtomicU64>,
}

impl metrics::CounterFn for FacadeCounter {
    #[inline]
    fn increment(&self, value: u64) {
        self.counter.add(value);
    }

    fn absolute(&self, value: u64) {
        // Relaxed: `fetch_max` is one atomic read-modify-write of one location, so concurrent
        // callers see a single order of maxima and the deltas they add sum to the final maximum.
        // The counter itself is read only after a flush, which orders the shard writes.
        let prev = self.high_water.fetch_max(value, Ordering::Relaxed);
        if value > prev {
            self.counter.add(value - prev);
        }
    }
}

/// The facade's view of one gauge series.
#[derive(Clone)]
struct FacadeGauge(Gauge);

impl metrics::GaugeFn for FacadeGauge {
    #[inline]
    fn increment(&self, value: f64) {
        self.0.add(value);
    }

    #[inline]
    fn decrement(&self, value: f64) {
        self.0.sub(value);
    }

    #[inline]
    fn set(&self, value: f64) {
        self.0.set(value);
    }
}

/// The facade's view of one histogram series.
#[derive(Clone)]
struct FacadeHistogram {
    hist: Histogram,
    scale: Arc<Scale>,
    core: Arc<Core>,
}

impl FacadeHistogram {
    /// `round(value × scale)`, or `None` for NaN, negative and infinite values.
    #[inline]
    fn scaled(&self, value: f64) -> Option<u64> {
        let x = value * self.scale.for_record();
        // The range excludes NaN, negative values and infinity; `as` saturates finite values above `u64::MAX`. Adding
        // 0.5 and truncating rounds half away from zero for the non-negative values left.
        (0.0..f64::INFINITY).contains(&x).then_some((x + 0.5) as u64)
    }
}

impl metrics::HistogramFn for FacadeHistogram {
    #[inline]
    fn record(&self, value: f64) {
        match self.scaled(value) {
            Some(v) => self.hist.record(v),
            None => self.core.reject(),
        }
    }

    fn record_many(&self, value: f64, count: usize) {
        match self.scaled(value) {
            Some(v) => (0..count).for_each(|_| self.hist.record(v)),
            None => (0..count).for_each(|_| self.core.reject()),
        }
    }
}

/// The handle behind keys that failed to register: counts every value it drops.
struct Rejecting(Arc<Core>);

impl metrics::CounterFn for Rejecting {
    fn increment(&self, _: u64) {
        self.0.reject();
    }
    fn absolute(&self, _: u64) {
        self.0.reject();
    }
}

impl metrics::GaugeFn for Rejecting {
    fn increment(&self, _: f64) {
        self.0.reject();
    }
    fn decrement(&self, _: f64) {
        self.0.reject();
    }
    fn set(&self, _: f64) {
        self.0.reject();
    }
}

impl metrics::HistogramFn for Rejecting {
    fn record(&self, _: f64) {
        self.0.reject();
    }
    fn record_many(&self, _: f64, count: usize) {
        (0..count).for_each(|_| self.0.reject());
    }
}

const CACHE_SHARDS: usize = 16;
/// Keys one thread caches for itself; past this, its look-ups share the process-wide entry.
const LOCAL_CAP: usize = 4096;

type KeyMap<W> = hashbrown::HashMap<Key, Arc<W>>;

/// One thread's copies of the handles of one recorder (the last one it looked a key up in).
struct Local<W> {
    recorder: u64,
    map: KeyMap<W>,
}

impl<W> Default for Local<W> {
    fn default() -> Self {
        Local { recorder: 0, map: KeyMap::default() }
    }
}

thread_local! {
    static LOCAL_COUNTERS: RefCell<Local<FacadeCounter>> = RefCell::default();
    static LOCAL_GAUGES: RefCell<Local<FacadeGauge>> = RefCell::default();
    static LOCAL_HISTOGRAMS: RefCell<Local<FacadeHistogram>> = RefCell::default();
}

/// A facade handle type with a per-thread cache.
trait Cached: Clone + 'static {
    fn local() -> &'static LocalKey<RefCell<Local<Self>>>;
}

impl Cached for FacadeCounter {
    fn local() -> &'static LocalKey<RefCell<Local<Self>>> {
        &LOCAL_COUNTERS
    }
}

impl Cached for FacadeGauge {
    fn local() -> &'static LocalKey<RefCell<Local<Self>>> {
        &LOCAL_GAUGES
    }
}

impl Cached for FacadeHistogram {
    fn local() -> &'static LocalKey<RefCell<Local<Self>>> {
        &LOCAL_HISTOGRAMS
    }
}

/// `metrics::Key` → handle, in two levels.
///
/// * Process-wide: copy-on-write maps published through arc-swap, split by the key's
///   precomputed hash so one insert copies a sixteenth of the keys. Read without a lock;
///   written only under the recorder's state mutex. Holds the canonical handle of each key.
/// * Per thread: the thread's own copy of each handle (its own `Arc` allocation). The facade
///   hands out `Arc`s and every macro call clones and drops one; with one shared `Arc` per key,
///   threads calling the same macro would bounce its reference count between cores. A thread
///   keeps copies for the last recorder it used only, at most [`LOCAL_CAP`] of them.
struct Cache<W> {
    shards: [Published<KeyMap<W>>; CACHE_SHARDS],
}

impl<W: Cached> Cache<W> {
    fn new() -> Self {
        Cache { shards: std::array::from_fn(|_| Published::new(Arc::new(KeyMap::default()))) }
    }

    #[inline]
    fn shard(&self, key: &Key) -> &Published<KeyMap<W>> {
        &self.shards[(key.get_hash() % CACHE_SHARDS as u64) as usize]
    }

    /// The process-wide entry.
    #[inline]
    fn shared(&self, key: &Key) -> Option<Arc<W>> {
        self.shard(key).read(|m| m.get(key).cloned())
    }

    /// This thread's copy of the handle of `key` in recorder `recorder`, if the key is known.
    #[inline]
    fn get(&self, recorder: u64, key: &Key) -> Option<Arc<W>> {
        let local = W::local().try_with(|l| {
            // A failed borrow would mean re-entry from inside this closure; nothing here calls
            // out, but fall back rather than panic.
            let mut l = l.try_borrow_mut().ok()?;
            if l.recorder == recorder {
                if let Some(w) = l.map.get(key) {
                    return Some(Some(w.clone()));
                }
            }
            Some(self.local_miss(&mut l, recorder, key))
        });
        match local {
            Ok(Some(found)) => found,
            // The thread is exiting (its thread-locals are gone) or re-entered.
            _ => self.shared(key),
        }
    }

    #[cold]
    #[inline(never)]
    fn local_miss(&self, l: &mut Local<W>, recorder: u64, key: &Key) -> Option<Arc<W>> {
        let shared = self.shared(key)?;
        if l.recorder != recorder {
            l.recorder = recorder;
            l.map = KeyMap::default();
        }
        if l.map.len() >= LOCAL_CAP {
            return Some(shared);
        }
        let mine = Arc::new((*shared).clone());
        l.map.insert(key.clone(), mine.clone());
        Some(mine)
    }

    /// Caller holds the state mutex (the only writer).
    fn insert(&self, key: &Key, w: Arc<W>) {
        let shard = self.shard(key);
        let mut next = shard.read(|m| m.clone());
        next.insert(key.clone(), w);
        shard.store(Arc::new(next));
    }
}

/// What `describe_*!` said about a name.
#[derive(Default)]
struct Description {
    help: String,
    unit: Option<metrics::Unit>,
}

/// Slow-path state, behind the recorder's mutex.
#[derive(Default)]
struct State {
    descriptions: HashMap<(Kind, String), Description>,
    /// Scale of each histogram family registered through this recorder.
    scales: HashMap<String, Arc<Scale>>,
    /// One wrapper per series, whichever keys (label orders, names that sanitise alike) reach
    /// it, so `absolute`'s high-water mark is per series.
    counters: HashMap<usize, Arc<FacadeCounter>>,
    gauges: HashMap<crate::shard::Loc, Arc<FacadeGauge>>,
    histograms: HashMap<usize, Arc<FacadeHistogram>>,
    last_error: Option<Error>,
}

struct Inner {
    /// Never-reused id (≥ 1) that keys the per-thread caches.
    id: u64,
    /// Keeps the aggregator thread running while the recorder lives (e.g. installed globally).
    registry: Registry,
    core: Arc<Core>,
    counters: Cache<FacadeCounter>,
    gauges: Cache<FacadeGauge>,
    histograms: Cache<FacadeHistogram>,
    state: Mutex<State>,
    rejecting: Arc<Rejecting>,
    registration_errors: AtomicU64,
}

/// A series the recorder found or registered for a key.
struct NewSeries {
    store: Store,
    /// A cardinality cap redirected the key to the family's overflow series.
    overflowed: bool,
    /// The family's unit.
    unit: Unit,
    /// Histograms: the family's scale.
    scale: Option<Arc<Scale>>,
}

/// Ids start at 1: 0 marks an empty per-thread cache.
static NEXT_RECORDER: AtomicU64 = AtomicU64::new(1);

/// A [`metrics::Recorder`] that records into a [`Registry`]. Cheap to clone (`Arc`).
///
/// Install it for the whole process with [`Recorder::install`], or for a scope with
/// [`metrics::with_local_recorder`]. See the [module docs](self) for how facade calls map onto
/// shardmetrics series.
#[derive(Clone)]
pub struct Recorder {
    inner: Arc<Inner>,
    /// Scale of unitless histograms registered through this value (see the module docs).
    default_scale: f64,
}

impl fmt::Debug for Recorder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Recorder")
            .field("registry", &self.inner.registry)
            .field("default_scale", &self.default_scale)
            .finish_non_exhaustive()
    }
}

impl Recorder {
    /// A recorder that registers facade metrics in `registry`.
    pub fn new(registry: Registry) -> Recorder {
        let core = registry.core().clone();
        Recorder {
            inner: Arc::new(Inner {
                id: NEXT_RECORDER.fetch_add(1, Ordering::Relaxed),
                rejecting: Arc::new(Rejecting(core.clone())),
                core,
                registry,
                counters: Cache::new(),
                gauges: Cache::new(),
                histograms: Cache::new(),
                state: Mutex::new(State::default()),
                registration_errors: AtomicU64::new(0),
            }),
            default_scale: 1.0,
        }
    }

    /// Scale for histograms without a time or byte unit: a facade value `v` is stored as
    /// `round(v × scale)`. `1000.0` keeps three decimal places (`0.25` → `250`). Applies to
    /// histogram names first registered through the returned recorder; default 1.
    ///
    /// # Panics
    /// If `scale` is not finite and positive (a configuration mistake, caught at start-up).
    pub fn with_scale(mut self, scale: f64) -> Recorder {
        assert!(scale.is_finite() && scale > 0.0, "histogram scale must be finite and positive, got {scale}");
        self.default_scale = scale;
        self
    }

    /// Sets this recorder as the process-wide `metrics` recorder.
    ///
    /// # Errors
    /// If a global recorder is already set (by this or any other backend): `metrics` allows one
    /// per process. The error hands this recorder back ([`metrics::SetRecorderError::into_inner`]).
    pub fn install(self) -> Result<(), metrics::SetRecorderError<Recorder>> {
        metrics::set_global_recorder(self)
    }

    /// The registry facade metrics are recorded in.
    pub fn registry(&self) -> &Registry {
        &self.inner.registry
    }

    /// The factor facade values of histogram `name` (as given to the macro; it is sanitised)
    /// are multiplied by before rounding, or `None` if no histogram of that name was registered
    /// through this recorder. Divide snapshot values by it to get facade values back.
    pub fn histogram_scale(&self, name: &str) -> Option<f64> {
        lock(&self.inner.state).scales.get(&sanitize_metric_name(name)).map(|s| s.get())
    }

    /// How many registrations failed (each got a rejecting handle, see the module docs).
    pub fn registration_errors(&self) -> u64 {
        self.inner.registration_errors.load(Ordering::Relaxed)
    }

    /// Why the most recent failed registration failed.
    pub fn last_error(&self) -> Option<Error> {
        lock(&self.inner.state).last_error.clone()
    }

    #[cold]
    fn failed(&self, e: Error) {
        self.inner.registration_errors.fetch_add(1, Ordering::Relaxed);
        lock(&self.inner.state).last_error = Some(e);
    }

    /// Registers `key` as a series of `kind` in the catalogue. Caller holds the state mutex.
    fn register_series(&self, state: &mut State, kind: Kind, key: &Key) -> Result<NewSeries, Error> {
        let name = sanitize_metric_name(key.name());
        let labels: Vec<(String, String)> =
            key.labels().map(|l| (sanitize_label_key(l.key()), l.value().to_owned())).collect();
        let desc = state.descriptions.get(&(kind, name.clone()));
        let help = desc.map(|d| d.help.clone()).filter(|h| !h.is_empty());
        let described = desc.and_then(|d| d.unit);
        let existing = lock(&self.inner.core.catalogue).family_kind_unit(&name);
        let (unit, scale) = match (kind, state.scales.get(&name)) {
            // A family this recorder created: its unit may have been set by a late description.
            (Kind::Histogram, Some(s)) => (existing.map_or(Unit::None, |(_, u)| u), Some(s.clone())),
            (Kind::Histogram, None) => {
                let (unit, scale) = histogram_unit(described, self.default_scale);
                (unit, Some(Arc::new(Scale::new(scale))))
            }
            // Counter and gauge units are metadata: adopt the family's if it exists.
            _ => match existing {
                Some((k, u)) if k == kind => (u, None),
                _ => (described.map_or(Unit::None, metadata_unit), None),
            },
        };
        let def = Def {
            name: name.clone(),
            kind,
            help,
            unit,
            labels,
            precision: buckets::DEFAULT_PRECISION,
            buckets: None,
            quantiles: None,
            quantile_window: None,
            stateset: false,
        };
        let mut overflowed = false;
        let store = self.inner.core.resolve(|c| {
            let r = c.register(def)?;
            overflowed = r.overflowed;
            Ok(r)
        })?;
        if let Some(s) = &scale {
            state.scales.entry(name).or_insert_with(|| s.clone());
        }
        Ok(NewSeries { store, overflowed, unit, scale })
    }

    #[cold]
    #[inline(never)]
    fn counter_slow(&self, key: &Key) -> Result<Arc<FacadeCounter>, Error> {
        let mut state = lock(&self.inner.state);
        if let Some(w) = self.inner.counters.shared(key) {
            return Ok(w);
        }
        let NewSeries { store, overflowed, unit, .. } = self.register_series(&mut state, Kind::Counter, key)?;
        let Store::Counter { index, .. } = store else { unreachable!("the catalogue returned a non-counter store") };
        let core = &self.inner.core;
        let w = state
            .counters
            .entry(index as usize)
            .or_insert_with(|| {
                Arc::new(FacadeCounter {
                    counter: Counter::from_store(core.clone(), store, unit),
                    high_water: Arc::new(AtomicU64::new(0)),
                })
            })
            .clone();
        if !overflowed {
            self.inner.counters.insert(key, w.clone());
        }
        Ok(w)
    }

    #[cold]
    #[inline(never)]
    fn gauge_slow(&self, key: &Key) -> Result<Arc<FacadeGauge>, Error> {
        let mut state = lock(&self.inner.state);
        if let Some(w) = self.inner.gauges.shared(key) {
            return Ok(w);
        }
        let NewSeries { store, overflowed, unit, .. } = self.register_series(&mut state, Kind::Gauge, key)?;
        let Store::Gauge(loc) = store else { unreachable!("the catalogue returned a non-gauge store") };
        let core = &self.inner.core;
        let w = state
            .gauges
            .entry(loc)
            .or_insert_with(|| Arc::new(FacadeGauge(Gauge::from_store(core.clone(), store, unit))))
            .clone();
        if !overflowed {
            self.inner.gauges.insert(key, w.clone());
        }
        Ok(w)
    }

    #[cold]
    #[inline(never)]
    fn histogram_slow(&self, key: &Key) -> Result<Arc<FacadeHistogram>, Error> {
        let mut state = lock(&self.inner.state);
        if let Some(w) = self.inner.histograms.shared(key) {
            return Ok(w);
        }
        let NewSeries { store, overflowed, unit, scale } = self.register_series(&mut state, Kind::Histogram, key)?;
        let Store::Histogram { index, .. } = store else {
            unreachable!("the catalogue returned a non-histogram store")
        };
        let scale = scale.expect("histograms always get a scale");
        let core = &self.inner.core;
        let w = state
            .histograms
            .entry(index as usize)
            .or_insert_with(|| {
                Arc::new(FacadeHistogram {
                    hist: Histogram::from_store(core.clone(), store, unit),
                    scale,
                    core: core.clone(),
                })
            })
            .clone();
        if !overflowed {
            self.inner.histograms.insert(key, w.clone());
        }
        Ok(w)
    }

    fn describe(&self, kind: Kind, name: &KeyName, unit: Option<metrics::Unit>, help: &str) {
        let name = sanitize_metric_name(name.as_str());
        let mut state = lock(&self.inner.state);
        let d = state.descriptions.entry((kind, name.clone())).or_default();
        if d.help.is_empty() {
            d.help = help.to_owned();
        }
        if d.unit.is_none() {
            d.unit = unit;
        }
        let (help, unit) = (d.help.clone(), d.unit);
        // Already registered: fill in what the family lacks. The catalogue lock is held across
        // the histogram rescale and the unit change (see `Scale`).
        let mut catalogue = lock(&self.inner.core.catalogue);
        let Some((k, current)) = catalogue.family_kind_unit(&name) else {
            return;
        };
        if k != kind {
            return;
        }
        let unit = match (kind, unit) {
            (_, None) => Unit::None,
            (Kind::Histogram, Some(u)) => {
                let (unit, scale) = histogram_unit(Some(u), self.default_scale);
                let rescaled = current == Unit::None
                    && unit != Unit::None
                    && state.scales.get(&name).is_some_and(|s| s.try_rescale(scale));
                if rescaled {
                    unit
                } else {
                    Unit::None
                }
            }
            (_, Some(u)) => metadata_unit(u),
        };
        catalogue.describe(&name, &help, unit);
    }
}

impl metrics::Recorder for Recorder {
    fn describe_counter(&self, key: KeyName, unit: Option<metrics::Unit>, description: SharedString) {
        self.describe(Kind::Counter, &key, unit, &description);
    }

    fn describe_gauge(&self, key: KeyName, unit: Option<metrics::Unit>, description: SharedString) {
        self.describe(Kind::Gauge, &key, unit, &description);
    }

    fn describe_histogram(&self, key: KeyName, unit: Option<metrics::Unit>, description: SharedString) {
        self.describe(Kind::Histogram, &key, unit, &description);
    }

    #[inline]
    fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> metrics::Counter {
        match self.inner.counters.get(self.inner.id, key) {
            Some(w) => metrics::Counter::from_arc(w),
            None => match self.counter_slow(key) {
                Ok(w) => metrics::Counter::from_arc(w),
                Err(e) => {
                    self.failed(e);
                    metrics::Counter::from_arc(self.inner.rejecting.clone())
                }
            },
        }
    }

    #[inline]
    fn register_gauge(&self, key: &Key, _: &Metadata<'_>) -> metrics::Gauge {
        match self.inner.gauges.get(self.inner.id, key) {
            Some(w) => metrics::Gauge::from_arc(w),
            None => match self.gauge_slow(key) {
                Ok(w) => metrics::Gauge::from_arc(w),
                Err(e) => {
                    self.failed(e);
                    metrics::Gauge::from_arc(self.inner.rejecting.clone())
                }
            },
        }
    }

    #[inline]
    fn register_histogram(&self, key: &Key, _: &Metadata<'_>) -> metrics::Histogram {
        match self.inner.histograms.get(self.inner.id, key) {
            Some(w) => metrics::Histogram::from_arc(w),
            None => match self.histogram_slow(key) {
                Ok(w) => metrics::Histogram::from_arc(w),
                Err(e) => {
                    self.failed(e);
                    metrics::Histogram::from_arc(self.inner.rejecting.clone())
                }
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sanitises_like_the_prometheus_exporter() {
        assert_eq!(sanitize_metric_name("http.requests-total"), "http_requests_total");
        assert_eq!(sanitize_metric_name("9lives"), "_lives");
        assert_eq!(sanitize_metric_name("a:b_c9"), "a:b_c9");
        assert_eq!(sanitize_metric_name("é x"), "__x");
        assert_eq!(sanitize_label_key("http.method"), "http_method");
        assert_eq!(sanitize_label_key("a:b"), "a_b");
        assert_eq!(sanitize_label_key("1st"), "_st");
    }

    #[test]
    fn scale_freezes_on_first_record() {
        let s = Scale::new(1.0);
        assert!(s.try_rescale(1e9));
        assert_eq!(s.get(), 1e9);
        assert_eq!(s.for_record(), 1e9);
        assert!(!s.try_rescale(1.0), "a scale in use must not change");
        assert_eq!(s.for_record(), 1e9);
    }

    #[test]
    fn histogram_units_and_scales() {
        assert_eq!(histogram_unit(Some(metrics::Unit::Seconds), 1.0), (Unit::Nanoseconds, 1e9));
        assert_eq!(histogram_unit(Some(metrics::Unit::Microseconds), 1.0), (Unit::Nanoseconds, 1e3));
        assert_eq!(histogram_unit(Some(metrics::Unit::Kibibytes), 1.0), (Unit::Bytes, 1024.0));
        assert_eq!(histogram_unit(Some(metrics::Unit::Percent), 1000.0), (Unit::None, 1000.0));
        assert_eq!(histogram_unit(None, 7.0), (Unit::None, 7.0));
    }
}
