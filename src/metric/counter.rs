//! Counters: monotonic `u64` totals, one single-writer cell per thread.

use std::fmt;

use crate::{
    metric::{sealed::Sealed, Metric},
    shard::{single_writer_add, single_writer_inc, with_cached_shard, with_shard, CounterLoc},
    store::{Core, Store},
    sync::Arc,
    Unit,
};

/// Adds `n` to the calling thread's cell of the counter at `loc`.
///
/// # Performance characteristics
/// Wait-free: a thread-local access, one compare, two dependent loads (chunk pointer, cell)
/// and a store. No lock, no read-modify-write, no allocation after the thread's first touch of
/// the chunk.
#[inline(always)]
pub(crate) fn add(core: &Core, loc: CounterLoc, n: u64) {
    add_with_id::<false, _>(core.id, &core, loc, n);
}

/// [`add`] with the registry id already at hand (handles carry it, saving a dependent load);
/// `INC` selects [`single_writer_inc`] (`n` is 1: no saturation check on the hot path, see
/// [`crate::shard::SATURATED`]) over [`single_writer_add`].
///
/// Compiles to (x86-64, `inc()` in a loop, checked with `objdump -d` and callgrind): the
/// thread-local compare and shard load, the chunk pointer load and null test (first touch),
/// and an `incq` on the cell — 12 instructions per `inc()` with the loop's own. `add(n)` adds a
/// compare and a never-taken branch to the cold path that counts a saturated add.
///
/// `core` is taken by reference to whatever holds it (`&Arc<Core>` from a handle) and only
/// dereferenced on the cold paths, so a hot loop does not load it.
#[inline(always)]
fn add_with_id<const INC: bool, C: std::ops::Deref<Target = Core>>(id: u64, core: &C, loc: CounterLoc, n: u64) {
    let record = |s: &crate::shard::Shard| {
        let cell = s.counter_cell(loc);
        if INC {
            single_writer_inc(cell);
            true
        } else {
            single_writer_add(cell, n)
        }
    };
    match with_cached_shard(id, record) {
        Some(true) => {}
        Some(false) => saturated(core, loc),
        None => add_slow(id, core, loc, n),
    }
}

/// [`add_with_id`] on a thread whose shard for this registry is not cached (its first
/// record, or one after its binding was destroyed).
#[cold]
#[inline(never)]
fn add_slow(id: u64, core: &Core, loc: CounterLoc, n: u64) {
    if !with_shard(id, &core.shards, |s| single_writer_add(s.counter_cell(loc), n)) {
        saturated(core, loc);
    }
}

/// This thread's cell of the counter at `loc` is saturated (its total reads `u64::MAX`) and an
/// add did not fit: the amount is counted as a rejected value (unless the counter is the
/// rejected-values counter itself, which then stays at its maximum).
#[cold]
#[inline(never)]
fn saturated(core: &Core, loc: CounterLoc) {
    if loc != core.rejected {
        core.reject();
    }
}

/// A monotonic `u64` counter. Cheap to clone (`Arc`), `Send + Sync`.
#[derive(Clone)]
#[must_use = "counters do nothing unless you use them"]
pub struct Counter {
    id: u64,
    loc: CounterLoc,
    core: Arc<Core>,
}

impl Counter {
    /// Adds 1.
    #[inline]
    pub fn inc(&self) {
        add_with_id::<true, _>(self.id, &self.core, self.loc, 1);
    }

    /// Adds `n`.
    #[inline]
    pub fn add(&self, n: u64) {
        add_with_id::<false, _>(self.id, &self.core, self.loc, n);
    }

    /// Adds 1 and keeps `labels` (e.g. `&[("trace_id", id)]`) as the counter's exemplar, exported
    /// in OpenMetrics after the `_total` sample. The increment takes the ordinary fast path;
    /// the exemplar costs an allocation and a lock-free swap. An invalid exemplar (bad label
    /// name, over 128 characters) is dropped and counted as rejected; see [`crate::exemplar::Exemplar`].
    pub fn inc_with_exemplar(&self, labels: &[(&str, &str)]) {
        self.add_with_exemplar(1, labels);
    }

    /// Adds `n` and keeps `labels` as the counter's exemplar (see
    /// [`Counter::inc_with_exemplar`]).
    pub fn add_with_exemplar(&self, n: u64, labels: &[(&str, &str)]) {
        add_with_id::<false, _>(self.id, &self.core, self.loc, n);
        self.core.counter_exemplar(self.loc, n, labels);
    }

    /// A counter that records into a private registry nobody reads.
    #[cfg(not(shardmetrics_loom))]
    pub fn noop() -> Counter {
        crate::registry::sink().counter("noop_total").build().expect("valid")
    }

    /// Loom models only: adds `n` the way a record made after the thread's shard binding was
    /// destroyed does (from another thread-local's destructor): through a shard claimed for
    /// this one record. Loom cannot order thread-local destructors deterministically, so the
    /// models drive this path directly.
    #[cfg(shardmetrics_loom)]
    #[doc(hidden)]
    pub fn add_after_binding_destroyed(&self, n: u64) {
        if !crate::shard::with_temporary_shard(&self.core.shards, |s| single_writer_add(s.counter_cell(self.loc), n)) {
            saturated(&self.core, self.loc);
        }
    }

    /// Loom models only: the shard chunk this series' cells live in.
    #[cfg(shardmetrics_loom)]
    #[doc(hidden)]
    pub fn shard_chunk(&self) -> usize {
        self.loc.chunk()
    }
}

impl fmt::Debug for Counter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Counter").field("loc", &self.loc).finish_non_exhaustive()
    }
}

/// A counter borrowed from a [`crate::Family`]; records without touching a reference count.
#[derive(Clone, Copy)]
#[must_use = "counters do nothing unless you use them"]
pub struct CounterRef<'a> {
    id: u64,
    loc: CounterLoc,
    core: &'a Arc<Core>,
}

impl CounterRef<'_> {
    /// Adds 1.
    #[inline]
    pub fn inc(&self) {
        add_with_id::<true, _>(self.id, self.core, self.loc, 1);
    }

    /// Adds `n`.
    #[inline]
    pub fn add(&self, n: u64) {
        add_with_id::<false, _>(self.id, self.core, self.loc, n);
    }

    /// Adds 1 and keeps `labels` as the series' exemplar (see [`Counter::inc_with_exemplar`]).
    pub fn inc_with_exemplar(&self, labels: &[(&str, &str)]) {
        self.add_with_exemplar(1, labels);
    }

    /// Adds `n` and keeps `labels` as the series' exemplar (see [`Counter::inc_with_exemplar`]).
    pub fn add_with_exemplar(&self, n: u64, labels: &[(&str, &str)]) {
        add_with_id::<false, _>(self.id, self.core, self.loc, n);
        self.core.counter_exemplar(self.loc, n, labels);
    }

    /// An owned handle to the same series.
    pub fn to_owned(&self) -> Counter {
        Counter { id: self.id, loc: self.loc, core: self.core.clone() }
    }
}

impl fmt::Debug for CounterRef<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CounterRef").field("loc", &self.loc).finish_non_exhaustive()
    }
}

impl Metric for Counter {}

impl Sealed for Counter {
    type Ref<'a> = CounterRef<'a>;

    fn from_store(core: Arc<Core>, store: Store, _unit: Unit) -> Self {
        match store {
            Store::Counter { loc, .. } => Counter { id: core.id, loc, core },
            _ => unreachable!("catalogue returned a non-counter store for a counter"),
        }
    }

    #[inline]
    fn make_ref(core: &Arc<Core>, store: Store, _unit: Unit) -> CounterRef<'_> {
        match store {
            Store::Counter { loc, .. } => CounterRef { id: core.id, loc, core },
            _ => unreachable!("catalogue returned a non-counter store for a counter"),
        }
    }
}
