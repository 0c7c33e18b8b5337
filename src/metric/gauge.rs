//! Gauges: `f64` values with last-write-wins semantics.
//!
//! A gauge is not sharded: `set` must be ordered against every other thread's `set`, which
//! per-thread cells cannot express without a global sequence. Each gauge is one 128-byte
//! padded atomic cell in the registry: `set` is a single Relaxed store (wait-free), `add` a
//! CAS loop (lock-free). For per-thread additive quantities prefer a counter pair.

use std::fmt;

use crossbeam_utils::CachePadded;

use crate::{
    metric::{sealed::Sealed, Metric},
    shard::Loc,
    store::{Core, Store},
    sync::{Arc, AtomicU64, LazySlice, Ordering},
    Unit,
};

#[cfg(not(shardmetrics_loom))]
const GAUGE_BASE: usize = 16;
#[cfg(shardmetrics_loom)]
const GAUGE_BASE: usize = 1;
#[cfg(not(shardmetrics_loom))]
const GAUGE_CHUNKS: usize = 24;
#[cfg(shardmetrics_loom)]
const GAUGE_CHUNKS: usize = 2;

/// One gauge: the value's bits, alone on its cache line(s) (many threads may write it):
/// `CachePadded`'s alignment is 128 bytes on x86-64, where the adjacent-line prefetcher pairs
/// lines (its doc says why).
pub(crate) type GaugeCell = CachePadded<AtomicU64>;

/// The registry's gauge cells, in never-moving chunks.
pub(crate) struct GaugeStore {
    chunks: [LazySlice<GaugeCell>; GAUGE_CHUNKS],
}

impl GaugeStore {
    pub(crate) fn new() -> Self {
        GaugeStore { chunks: std::array::from_fn(|_| LazySlice::new()) }
    }

    /// Location of the `index`-th gauge, or `None` past the last chunk.
    pub(crate) fn loc(index: usize) -> Option<Loc> {
        Loc::gauge(index, GAUGE_BASE, GAUGE_CHUNKS)
    }

    #[inline]
    pub(crate) fn cell(&self, loc: Loc) -> &AtomicU64 {
        let c = loc.chunk();
        let len = GAUGE_BASE << c;
        // SAFETY: gauge chunk `c` is always used with `GAUGE_BASE << c` cells.
        let cells = match unsafe { self.chunks[c].get(len) } {
            Some(cells) => cells,
            // SAFETY: as above.
            None => unsafe {
                self.chunks[c]
                    .get_or_init(len, || (0..len).map(|_| CachePadded::new(AtomicU64::new(0f64.to_bits()))).collect())
            },
        };
        &cells[loc.off()]
    }

    /// Current value (aggregator side).
    pub(crate) fn read(&self, loc: Loc) -> f64 {
        // Relaxed: a gauge is a single value; happens-before for flush() comes from the
        // aggregator mutex.
        f64::from_bits(self.cell(loc).load(Ordering::Relaxed))
    }
}

impl Drop for GaugeStore {
    fn drop(&mut self) {
        for (c, chunk) in self.chunks.iter_mut().enumerate() {
            // SAFETY: gauge chunk `c` is always used with `GAUGE_BASE << c` cells.
            unsafe { chunk.free(GAUGE_BASE << c) };
        }
    }
}

#[inline]
fn set(core: &Core, loc: Loc, v: f64) {
    if v.is_nan() {
        core.reject();
        return;
    }
    // Relaxed: last write wins; no other memory is published through a gauge.
    core.gauges.cell(loc).store(v.to_bits(), Ordering::Relaxed);
}

#[inline]
fn add(core: &Core, loc: Loc, d: f64) {
    if d.is_nan() {
        core.reject();
        return;
    }
    let cell = core.gauges.cell(loc);
    // Relaxed CAS loop: the update is atomic on the cell; nothing else is ordered by it.
    let r = cell.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |bits| {
        let next = f64::from_bits(bits) + d;
        (!next.is_nan()).then(|| next.to_bits())
    });
    if r.is_err() {
        core.reject();
    }
}

macro_rules! gauge_methods {
    () => {
        /// Sets the value. NaN is rejected and counted in `shardmetrics_rejected_values_total`.
        #[inline]
        pub fn set(&self, v: f64) {
            set(&self.core, self.loc, v);
        }

        /// Adds `d` (may be negative). A NaN operand or result is rejected and counted.
        #[inline]
        pub fn add(&self, d: f64) {
            add(&self.core, self.loc, d);
        }

        /// Subtracts `d`.
        #[inline]
        pub fn sub(&self, d: f64) {
            add(&self.core, self.loc, -d);
        }

        /// Adds 1.
        #[inline]
        pub fn inc(&self) {
            add(&self.core, self.loc, 1.0);
        }

        /// Subtracts 1.
        #[inline]
        pub fn dec(&self) {
            add(&self.core, self.loc, -1.0);
        }

        /// The current value (not a snapshot: what the next tick would read).
        pub fn value(&self) -> f64 {
            self.core.gauges.read(self.loc)
        }
    };
}

/// An `f64` gauge. Cheap to clone (`Arc`), `Send + Sync`.
#[derive(Clone)]
#[must_use = "gauges do nothing unless you use them"]
pub struct Gauge {
    core: Arc<Core>,
    loc: Loc,
}

impl Gauge {
    gauge_methods!();

    /// A gauge that records into a private registry nobody reads.
    #[cfg(not(shardmetrics_loom))]
    pub fn noop() -> Gauge {
        crate::registry::sink().gauge("noop_gauge").build().expect("valid")
    }
}

impl fmt::Debug for Gauge {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Gauge").field("value", &self.value()).finish_non_exhaustive()
    }
}

/// A gauge borrowed from a [`crate::Family`].
#[derive(Clone, Copy)]
#[must_use = "gauges do nothing unless you use them"]
pub struct GaugeRef<'a> {
    core: &'a Arc<Core>,
    loc: Loc,
}

impl GaugeRef<'_> {
    gauge_methods!();

    /// An owned handle to the same series.
    pub fn to_owned(&self) -> Gauge {
        Gauge { core: self.core.clone(), loc: self.loc }
    }
}

impl fmt::Debug for GaugeRef<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GaugeRef").field("value", &self.value()).finish_non_exhaustive()
    }
}

impl Metric for Gauge {}

impl Sealed for Gauge {
    type Ref<'a> = GaugeRef<'a>;

    fn from_store(core: Arc<Core>, store: Store, _unit: Unit) -> Self {
        match store {
            Store::Gauge(loc) => Gauge { core, loc },
            _ => unreachable!("catalogue returned a non-gauge store for a gauge"),
        }
    }

    #[inline]
    fn make_ref(core: &Arc<Core>, store: Store, _unit: Unit) -> GaugeRef<'_> {
        match store {
            Store::Gauge(loc) => GaugeRef { core, loc },
            _ => unreachable!("catalogue returned a non-gauge store for a gauge"),
        }
    }
}

#[cfg(all(test, not(shardmetrics_loom)))]
mod tests {
    use super::*;

    /// Two gauges written by different threads never share a cache line (or, on x86-64, the
    /// prefetcher's line pair): the cells of one chunk are `CachePadded` apart.
    #[test]
    fn gauge_cells_are_padded_apart() {
        let stride = std::mem::size_of::<GaugeCell>();
        assert!(stride >= 64 && stride.is_power_of_two(), "{stride}");
        #[cfg(target_arch = "x86_64")]
        assert_eq!(stride, 128);
        let store = GaugeStore::new();
        let (a, b) = (GaugeStore::loc(0).unwrap(), GaugeStore::loc(1).unwrap());
        let (pa, pb) = (store.cell(a) as *const AtomicU64 as usize, store.cell(b) as *const AtomicU64 as usize);
        assert_eq!(pb - pa, stride);
        assert_eq!(pa % stride, 0);
    }
}
