//! Labelled families: `family.with(&["/api", "200"])` finds (or registers) the series for a
//! tuple of label values.
//!
//! The hot look-up probes a [`LabelIndex`]: one Acquire load of the current table, a hash of
//! the `&str` values, a short probe comparing strings — no lock, no allocation, and no write
//! to shared memory (no reference count, no arc-swap debt slot) — and returns a borrowed
//! handle. A miss takes the family's mutex, registers the label set in the catalogue and
//! inserts it (amortised O(1): the table doubles, nothing is copied per insert).
//!
//! Once a cardinality cap refuses a label set the family is *full* for good (series are never
//! removed): everything is published, and every later miss goes straight to the overflow
//! series without a lock. Label sets refused by a cap are not cached, so the maps stay bounded.

use std::{fmt, marker::PhantomData, sync::Arc as StdArc};

use crate::{
    error::Error,
    metric::{label_index::LabelIndex, Metric},
    store::{Core, Store},
    sync::{lock, Arc, OnceBox},
    Unit,
};

pub(crate) struct FamilyInner {
    core: Arc<Core>,
    index: usize,
    name: StdArc<str>,
    /// Label names in the order `with` takes values.
    names: Box<[StdArc<str>]>,
    unit: Unit,
    /// Label values → series: lock-free, write-free reads.
    series: LabelIndex,
    /// Set once a cap refused a label set: the overflow series every later new label set goes
    /// to (published with Release, read with Acquire; see [`OnceBox`]).
    overflow: OnceBox<Store>,
}

impl FamilyInner {
    pub(crate) fn new(core: Arc<Core>, index: usize, name: StdArc<str>, names: Vec<StdArc<str>>, unit: Unit) -> Self {
        FamilyInner {
            core,
            index,
            name,
            names: names.into(),
            unit,
            series: LabelIndex::new(),
            overflow: OnceBox::new(),
        }
    }

    #[cold]
    #[inline(never)]
    fn resolve_slow(&self, values: &[&str]) -> Result<Store, Error> {
        if let Some(&overflow) = self.overflow.get() {
            if values.len() != self.names.len() {
                return Err(self.arity_error(values.len()));
            }
            self.core.count_overflow();
            return Ok(overflow);
        }
        let mut writer = self.series.write();
        if let Some(s) = writer.get(values) {
            return Ok(s);
        }
        let mut overflowed = false;
        let store = self.core.resolve(|c| {
            let r = c.family_series(self.index, &self.names, values)?;
            overflowed = r.overflowed;
            Ok(r)
        })?;
        if overflowed {
            self.overflow.get_or_init(|| store);
        } else {
            writer.insert(values, store);
        }
        Ok(store)
    }

    fn arity_error(&self, got: usize) -> Error {
        Error::LabelCount { name: self.name.to_string(), expected: self.names.len(), got }
    }

    /// `with`'s miss path: register, or fall back to the overflow series on an error.
    #[cold]
    #[inline(never)]
    fn with_slow(&self, values: &[&str]) -> Store {
        match self.resolve_slow(values) {
            Ok(s) => s,
            Err(_) => self.overflow(),
        }
    }

    #[cold]
    #[inline(never)]
    fn overflow(&self) -> Store {
        self.core.reject();
        lock(&self.core.catalogue).overflow_series(self.index)
    }

    #[inline]
    fn resolve(&self, values: &[&str]) -> Result<Store, Error> {
        match self.series.get(values) {
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
    /// Lock-free and write-free on a hit: each value read once into two words (no copy, no
    /// `memcmp` for one to four values of up to 16 bytes), one multiply per value for the hash
    /// (the multiplies independent of each other), one Acquire load of the table, a linear
    /// probe comparing the stored hash, then the key's words.
    ///
    /// Compiles to (x86-64, rustc 1.95, callgrind on `benches/hot_path.rs`, the bench loop's own
    /// instructions included): 111 instructions for `with(&[v]).inc()`, 149 for two values,
    /// 188 for three (`.inc()` is about 11 of them); no `memcpy`/`bcmp`. Per value: its pointer
    /// and length, a length-class branch (predicted while a label's values stay in one class:
    /// under 4, 4–7, 8–16 bytes), two or three loads of its bytes, one `mul`; then one load of
    /// the table word (its slots' address and capacity), one of the slot, the entry's hash and shape compares, and the key words
    /// compared with one branch. Writes nothing but the counter cell. (Forced inline it is
    /// ~25 instructions shorter but measured ~1 ns slower in the hot-path bench, and it grows
    /// every call site; `#[inline]` leaves it to the compiler.)
    #[inline]
    pub fn with(&self, values: &[&str]) -> M::Ref<'_> {
        let store = match self.inner.series.get(values) {
            Some(s) => s,
            None => self.inner.with_slow(values),
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
