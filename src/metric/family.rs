//! Labelled families: `family.with(&["/api", "200"])` finds (or registers) the series for a
//! tuple of label values.
//!
//! The hot look-up reads an immutable hash map published through arc-swap (no lock, no
//! reference-count write: arc-swap's debt-list `load`), hashes the `&str` values directly
//! against the stored keys (no allocation) and returns a borrowed handle.
//!
//! A miss takes the family's mutex and looks in the *pending* map of recently added label
//! sets; a new label set is registered in the catalogue and added there. The pending entries
//! are folded into a new published map when they reach a quarter of it (so building a family
//! of n series copies O(n) entries in all, not O(n²)), or after a few hundred look-ups found
//! them there (so a hot new series soon gets the lock-free path).
//!
//! Once a cardinality cap refuses a label set the family is *full* for good (series are never
//! removed): everything is published, and every later miss goes straight to the overflow
//! series without a lock. Label sets refused by a cap are not cached, so the maps stay bounded.

use std::{
    fmt,
    hash::{Hash, Hasher},
    marker::PhantomData,
};

use hashbrown::{Equivalent, HashMap};

use crate::Unit;
use crate::{
    error::Error,
    metric::Metric,
    registry::{Core, Store},
    sync::{lock, Arc, Mutex, Published},
};
use std::sync::Arc as StdArc;

type Key = Box<[Box<str>]>;
type LabelMap = HashMap<Key, Store>;

/// A borrowed look-up key that hashes exactly like [`Key`]: slice length, then each `str`.
struct Query<'a>(&'a [&'a str]);

impl Hash for Query<'_> {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.0.hash(state);
    }
}

impl Equivalent<Key> for Query<'_> {
    fn equivalent(&self, key: &Key) -> bool {
        self.0.len() == key.len() && self.0.iter().zip(key.iter()).all(|(a, b)| *a == &**b)
    }
}

/// Label sets added since the last publish, and how often look-ups found them here.
#[derive(Default)]
struct Pending {
    map: LabelMap,
    hits: usize,
}

/// Look-ups served from the pending map before it is published regardless of its size.
const PENDING_HITS_BEFORE_PUBLISH: usize = 256;

pub(crate) struct FamilyInner {
    core: Arc<Core>,
    index: usize,
    name: StdArc<str>,
    /// Label names in the order `with` takes values.
    names: Box<[StdArc<str>]>,
    unit: Unit,
    map: Published<LabelMap>,
    pending: Mutex<Pending>,
    /// Set (Release) after the last publish once a cap refused a label set; then `overflow`
    /// holds the overflow series.
    full: std::sync::atomic::AtomicBool,
    overflow: std::sync::OnceLock<Store>,
}

impl FamilyInner {
    pub(crate) fn new(core: Arc<Core>, index: usize, name: StdArc<str>, names: Vec<StdArc<str>>, unit: Unit) -> Self {
        FamilyInner {
            core,
            index,
            name,
            names: names.into(),
            unit,
            map: Published::new(Arc::new(LabelMap::default())),
            pending: Mutex::new(Pending::default()),
            full: std::sync::atomic::AtomicBool::new(false),
            overflow: std::sync::OnceLock::new(),
        }
    }

    /// Publishes the union of the published and pending maps. Caller holds `pending`.
    fn publish(&self, pending: &mut Pending) {
        if pending.map.is_empty() {
            return;
        }
        let mut next = self.map.read(|m| m.clone());
        next.extend(pending.map.drain());
        pending.hits = 0;
        self.map.store(Arc::new(next));
    }

    #[cold]
    #[inline(never)]
    fn resolve_slow(&self, values: &[&str]) -> Result<Store, Error> {
        // Acquire: pairs with the Release store below, after the final publish.
        if self.full.load(std::sync::atomic::Ordering::Acquire) {
            if values.len() != self.names.len() {
                return Err(self.arity_error(values.len()));
            }
            self.core.count_overflow();
            return Ok(*self.overflow.get().expect("set before `full`"));
        }
        let mut pending = lock(&self.pending);
        if let Some(s) = self.map.read(|m| m.get(&Query(values)).copied()) {
            return Ok(s);
        }
        if let Some(&s) = pending.map.get(&Query(values)) {
            pending.hits += 1;
            if pending.hits >= PENDING_HITS_BEFORE_PUBLISH {
                self.publish(&mut pending);
            }
            return Ok(s);
        }
        let mut overflowed = false;
        let store = self.core.resolve(|c| {
            let r = c.family_series(self.index, &self.names, values)?;
            overflowed = r.overflowed;
            Ok(r)
        })?;
        if overflowed {
            self.publish(&mut pending);
            let _ = self.overflow.set(store);
            self.full.store(true, std::sync::atomic::Ordering::Release);
        } else {
            pending.map.insert(values.iter().map(|v| Box::from(*v)).collect(), store);
            let published = self.map.read(|m| m.len());
            if pending.map.len() >= published / 4 + 8 {
                self.publish(&mut pending);
            }
        }
        Ok(store)
    }

    fn arity_error(&self, got: usize) -> Error {
        Error::LabelCount { name: self.name.to_string(), expected: self.names.len(), got }
    }

    #[cold]
    #[inline(never)]
    fn overflow(&self) -> Store {
        self.core.reject();
        lock(&self.core.catalogue).overflow_series(self.index)
    }

    #[inline]
    fn resolve(&self, values: &[&str]) -> Result<Store, Error> {
        match self.map.read(|m| m.get(&Query(values)).copied()) {
            Some(s) => Ok(s),
            None => self.resolve_slow(values),
        }
    }
}

/// A metric with label names fixed at creation and one series per distinct tuple of values.
/// Cheap to clone (`Arc`), `Send + Sync`.
///
/// [`Family::with`] returns a handle borrowed from the family, so a labelled look-up never
/// touches a shared reference count; it cannot outlive the family:
///
/// ```compile_fail
/// let registry = shardmetrics::Registry::builder().manual().build();
/// let hits = {
///     let family = registry.counter("hits_total").family(&["route"]).unwrap();
///     family.with(&["/api"]) // error: `family` does not live long enough
/// };
/// hits.inc();
/// ```
///
/// Take an owned handle for that ([`Family::get`] or `.to_owned()`):
///
/// ```
/// let registry = shardmetrics::Registry::builder().manual().build();
/// let hits = {
///     let family = registry.counter("hits_total").family(&["route"]).unwrap();
///     family.with(&["/api"]).to_owned()
/// };
/// hits.inc();
/// assert_eq!(registry.flush().counter("hits_total", &[("route", "/api")]), Some(1));
/// ```
///
/// Handles are `Send + Sync`, so one family serves every thread:
///
/// ```
/// fn assert_send_sync<T: Send + Sync>(_: &T) {}
/// let registry = shardmetrics::Registry::builder().manual().build();
/// let family = registry.counter("hits_total").family(&["route"]).unwrap();
/// assert_send_sync(&family);
/// assert_send_sync(&family.with(&["/api"]));
/// ```
#[must_use = "families do nothing unless you use them"]
pub struct Family<M> {
    inner: Arc<FamilyInner>,
    _metric: PhantomData<fn() -> M>,
}

impl<M> Clone for Family<M> {
    fn clone(&self) -> Self {
        Family { inner: self.inner.clone(), _metric: PhantomData }
    }
}

impl<M> fmt::Debug for Family<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Family")
            .field("name", &self.inner.name)
            .field("labels", &self.inner.names)
            .finish_non_exhaustive()
    }
}

impl<M: Metric> Family<M> {
    pub(crate) fn new(inner: FamilyInner) -> Self {
        Family { inner: Arc::new(inner), _metric: PhantomData }
    }

    /// The series for these label values (one per label name, in the family's order).
    ///
    /// Never fails: a wrong number of values is counted in
    /// `shardmetrics_rejected_values_total` and recorded into the overflow series; label sets
    /// beyond the cardinality cap go to the overflow series too. Use [`Family::try_with`] to
    /// see such errors.
    ///
    /// # Performance characteristics
    /// Lock-free on a hit: one arc-swap load, one hash of the values, one comparison.
    #[inline]
    pub fn with(&self, values: &[&str]) -> M::Ref<'_> {
        let store = match self.inner.resolve(values) {
            Ok(s) => s,
            Err(_) => self.inner.overflow(),
        };
        M::make_ref(&self.inner.core, store, self.inner.unit)
    }

    /// Like [`Family::with`], but a wrong number of values is an `Err`.
    pub fn try_with(&self, values: &[&str]) -> Result<M::Ref<'_>, Error> {
        let store = self.inner.resolve(values)?;
        Ok(M::make_ref(&self.inner.core, store, self.inner.unit))
    }

    /// An owned handle to the series for these values (for keeping it in a struct).
    pub fn get(&self, values: &[&str]) -> Result<M, Error> {
        let store = self.inner.resolve(values)?;
        Ok(M::from_store(self.inner.core.clone(), store, self.inner.unit))
    }

    /// The metric name.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// The label names, in the order [`Family::with`] takes values.
    pub fn label_names(&self) -> impl Iterator<Item = &str> {
        self.inner.names.iter().map(|s| &**s)
    }
}
