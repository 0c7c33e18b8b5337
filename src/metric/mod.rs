//! Hot-path handles: [`Counter`], [`Gauge`], [`Histogram`] (with [`Timer`]) and labelled
//! [`Family`] look-ups. Every recording operation takes `&self`, returns nothing to check,
//! takes no lock and allocates nothing after a thread's first touch of a series.

// The sealed trait's methods take crate-private types (`Core`, `Store`). The lint sees the
// trait as reachable through `Metric`, but `sealed` cannot be named outside this crate, so
// nobody outside can call or implement them.
#![allow(private_interfaces)]

pub(crate) mod counter;
pub(crate) mod family;
pub(crate) mod gauge;
pub(crate) mod histogram;
pub(crate) mod label_index;
pub(crate) mod operation;

pub use counter::{Counter, CounterRef};
pub use family::Family;
pub use gauge::{Gauge, GaugeRef};
pub use histogram::{Histogram, HistogramRef, Timer};
pub use operation::{Cache, Operation, OperationBuilder, OperationGuard, StateSet};

/// A kind of metric handle that a [`crate::MetricBuilder`] builds and a [`Family`] hands out.
/// Implemented by [`Counter`], [`Gauge`] and [`Histogram`]; sealed.
///
/// `Metric::Ref<'a>` is the borrowed handle [`Family::with`] returns ([`CounterRef`],
/// [`GaugeRef`], [`HistogramRef`]): it records without touching a reference count, so a
/// labelled look-up never writes a shared cache line.
pub trait Metric: sealed::Sealed + Sized {}

pub(crate) mod sealed {
    use crate::{store::Core, store::Store, sync::Arc, Unit};

    pub trait Sealed {
        type Ref<'a>;
        fn from_store(core: Arc<Core>, store: Store, unit: Unit) -> Self;
        fn make_ref(core: &Arc<Core>, store: Store, unit: Unit) -> Self::Ref<'_>;
    }
}
