//! The registry's shared state and where each series' value lives: [`Store`] (a counter cell,
//! gauge cell or histogram slot, by location) and [`Core`] (shards, gauge cells, catalogue,
//! published snapshot, aggregator state, exemplars), which every handle holds an `Arc` of.
//! The bottom of the merge layer: handles record through it, the catalogue hands out its
//! locations, the aggregator reads it.

use std::time::Duration;

use crate::{
    aggregator::Aggregator,
    catalogue::{Catalogue, Registered},
    error::Error,
    metric::gauge::GaugeStore,
    shard::{CounterLoc, HistLoc, Loc, ShardList},
    snapshot::Snapshot,
    sync::{lock, Mutex, Published},
};

/// Where a series' value lives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Store {
    /// `index` is the dense counter-cell number, `loc` its place in every shard.
    Counter {
        index: u32,
        loc: CounterLoc,
    },
    Gauge(Loc),
    /// `mapping`: the precision and unit scale every record into the series' slots keys with.
    Histogram {
        index: u32,
        loc: HistLoc,
        mapping: crate::buckets::Mapping,
    },
}

// Every series holds a `Store` in the catalogue's view and in its family's label index: keep it
// at two words.
const _: () = assert!(std::mem::size_of::<Store>() == 16);

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
    pub(crate) rejected: CounterLoc,
    pub(crate) overflow: CounterLoc,
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

pub(crate) fn next_registry_id() -> u64 {
    // Ids start at 1: 0 marks an empty thread-local cache slot. loom-exempt: a std atomic on
    // purpose (a process-wide static, which loom's atomics cannot be; ids need only uniqueness).
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}
