//! Lock-free, per-thread sharded in-process metrics.
//!
//! Recording a counter, gauge or histogram value costs about as much as a plain memory write:
//! each thread writes only its own [shard](crate::Registry) of cells (a Relaxed load and store,
//! no lock, no `fetch_add`, no allocation after first touch). One aggregator thread per
//! [`Registry`] merges the shards every interval into an immutable [`Snapshot`] published
//! through `arc-swap`; exporters ([`export::prometheus`], [`export::json`]) and queries read
//! only snapshots.
//!
//! | type | what it is |
//! |---|---|
//! | [`Registry`] | a set of metrics, its shards and its aggregator thread; [`global()`] is the default one |
//! | [`Counter`] | monotonic `u64` |
//! | [`Gauge`] | `f64`, last write wins |
//! | [`Histogram`] | `u64` values in base-2 exponential (native) buckets; [`Timer`] records elapsed time on drop |
//! | [`Family`] | labelled series, `family.with(&["/api", "200"])` |
//! | [`Snapshot`] | what one tick merged: totals, deltas, rates, quantiles |
//!
//! ```
//! use shardmetrics::{Registry, Unit};
//! use std::time::Duration;
//!
//! let registry = Registry::builder().interval(Duration::from_millis(100)).build();
//! let requests = registry.counter("http_requests_total").help("Requests served")
//!     .label("route", "/api").build()?;
//! let latency = registry.histogram("request_duration").unit(Unit::Nanoseconds).build()?;
//! let by_status = registry.counter("responses_total").family(&["route", "status"])?;
//!
//! std::thread::scope(|s| {
//!     for _ in 0..4 {
//!         s.spawn(|| for i in 0..1000 {
//!             requests.inc();
//!             latency.record(1_000 + i);
//!             by_status.with(&["/api", "200"]).inc();
//!         });
//!     }
//! });
//!
//! let snap = registry.flush();
//! assert_eq!(snap.counter("http_requests_total", &[("route", "/api")]), Some(4000));
//! assert_eq!(snap.counter("responses_total", &[("status", "200"), ("route", "/api")]), Some(4000));
//! let h = snap.histogram("request_duration", &[]).unwrap();
//! assert_eq!(h.count(), 4000);
//! assert!(h.quantile(0.99).unwrap() >= 1_950);
//! println!("{}", shardmetrics::export::prometheus::render(&snap));
//! # Ok::<(), shardmetrics::Error>(())
//! ```
//!
//! The protocol — who writes each cell, which Release pairs with which Acquire, why nothing
//! is lost at thread exit — and where each part lives are on one page, ARCHITECTURE.md in the
//! repository (and in this crate's package); the `shard` and `aggregator` module docs hold the
//! full arguments.

#![deny(unsafe_op_in_unsafe_fn)]
// docs.rs builds with `--cfg docsrs`: every item shows the feature it needs.
#![cfg_attr(docsrs, feature(doc_cfg))]
// The loom build is for the crate's own models; its cfg is noise in the labels.
#![cfg_attr(docsrs, doc(auto_cfg(hide(shardmetrics_loom))))]
#![warn(missing_debug_implementations)]

mod aggregator;
// Alerts run on std threads and channels; the loom build compiles only the core.
#[cfg(not(shardmetrics_loom))]
pub mod alert;
mod buckets;
mod catalogue;
mod clock;
pub mod collect;
mod error;
pub mod exemplar;
mod exp_buckets;
pub mod export;
mod exposition;
#[cfg(all(feature = "metrics-facade", not(shardmetrics_loom)))]
pub mod facade;
mod history;
mod metric;
mod metric_builder;
mod registry;
pub mod scrape;
pub mod self_metrics;
mod shard;
mod snapshot;
mod store;
mod sync;
mod thin_str;
pub mod trend;
mod unit;
pub mod window;

/// The README's examples, compiled and run as doc tests (with the default features, which
/// the runnable ones need).
#[cfg(all(doctest, feature = "json", feature = "http"))]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;

/// Not part of the API: the bucket layouts, for the differential fuzz targets in `fuzz/`
/// (which check it against a model) and the benches' floor (a plain array indexed the same
/// way). May change in any release.
#[doc(hidden)]
pub mod __private {
    pub use crate::buckets::{
        bucket_count, highest, index, lowest, relative_error, DEFAULT_PRECISION, MAX_PRECISION, MIN_PRECISION,
    };

    /// The exponential (native-histogram) bucket math, for its benches and fuzz targets.
    pub mod exp_buckets {
        pub use crate::exp_buckets::*;
    }
}

pub use error::Error;
pub use metric::{Counter, CounterRef, Family, Gauge, GaugeRef, Histogram, HistogramRef, Metric, Timer};
pub use metric_builder::MetricBuilder;
#[cfg(not(shardmetrics_loom))]
pub use registry::global;
pub use registry::{Registry, RegistryBuilder};
pub use snapshot::Snapshot;
pub use unit::{Kind, Unit};

/// What a [`Snapshot`] holds: its series, their values and histogram views, and each family's
/// metadata.
pub mod series {
    pub use crate::snapshot::{
        Bucket, CounterValue, FamilyInfo, HistogramSnapshot, Labels, LabelsIter, Series, SeriesList, Value,
    };
}

/// Operations, caches and state sets: several series under one name with derived statistics
/// (the per-function / per-stage views of the old Python monitors), and their snapshot views.
pub mod ops {
    pub use crate::{
        metric::{Cache, Operation, OperationBuilder, OperationGuard, StateSet},
        snapshot::{CacheSnapshot, OperationStats},
    };
}
