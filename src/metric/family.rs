//! Labelled families: `family.with(&["/api", "200"])` finds (or registers) the series for a
//! tuple of label values.
//!
//! The hot look-up reads an immutable hash map published through arc-swap (no lock, no
//! reference-count write: arc-swap's debt-list `load`), hashes the `&str` values directly
//! against the stored keys (no allocation) and returns a borrowed handle. A miss takes the
//! family's insert mutex, registers the series in the catalogue and publishes a copy of the
//! map with the new entry. Label sets refused by a cardinality cap are not cached (the map
//! stays bounded); they resolve to the family's overflow series through the slow path.

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

pub(crate) struct FamilyInner {
    core: Arc<Core>,
    index: usize,
    name: StdArc<str>,
    /// Label names in the order `with` takes values.
    names: Box<[StdArc<str>]>,
    unit: Unit,
    map: Published<LabelMap>,
    insert: Mutex<()>,
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
            insert: Mutex::new(()),
        }
    }

    #[cold]
    #[inline(never)]
    fn resolve_slow(&self, values: &[&str]) -> Result<Store, Error> {
        let _guard = lock(&self.insert);
        if let Some(s) = self.map.read(|m| m.get(&Query(values)).copied()) {
            return Ok(s);
        }
        let mut overflowed = false;
        let store = self.core.resolve(|c| {
            let r = c.family_series(self.index, &self.names, values)?;
            overflowed = r.overflowed;
            Ok(r)
        })?;
        if !overflowed {
            let mut next = self.map.read(|m| m.clone());
            next.insert(values.iter().map(|v| Box::from(*v)).collect(), store);
            self.map.store(Arc::new(next));
        }
        Ok(store)
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
