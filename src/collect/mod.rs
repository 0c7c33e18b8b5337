//! Collectors: external state sampled into ordinary metrics at the start of every aggregator
//! tick (see [`Collector`]), so every exporter carries it.
//!
//! * [`process`] (feature `process`): process and system resources through `sysinfo` —
//!   CPU seconds, resident and virtual memory, threads, open fds, start time, disk and network
//!   bytes, system CPU and memory — under the Prometheus standard names.

pub use crate::aggregator::{Collector, Observer};

#[cfg(feature = "process")]
pub mod process;
