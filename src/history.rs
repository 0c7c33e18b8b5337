//! The per-tick history a snapshot carries: what changed during each tick (only the series
//! that changed), kept by the aggregator in a bounded ring and read by [`crate::window`]. A leaf
//! of the read layer: the snapshot holds these, windows sum them, neither depends on the other
//! through here.

#![forbid(unsafe_code)]

use std::time::{Duration, Instant};

/// Default windows.
pub const DEFAULT_WINDOWS: &[Duration] = &[Duration::from_secs(10), Duration::from_secs(60), Duration::from_secs(300)];

/// Upper bound on ticks kept, whatever the windows and interval.
pub const MAX_TICKS: usize = 4096;

/// A histogram's change during one tick.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct HistDelta {
    pub(crate) count: u64,
    pub(crate) sum: u64,
    pub(crate) buckets: Box<[(u32, u64)]>,
}

/// What changed during one tick: only series with a non-zero change, sorted by series id.
#[derive(Debug)]
pub(crate) struct TickDelta {
    pub(crate) at: Instant,
    pub(crate) interval: Duration,
    pub(crate) counters: Vec<(u32, u64)>,
    pub(crate) histograms: Vec<(u32, HistDelta)>,
}

/// Bucket-wise `cur - prev` of two sparse, ascending bucket lists (`cur ≥ prev` bucket-wise).
pub(crate) fn subtract(cur: &[(u32, u64)], prev: &[(u32, u64)]) -> Box<[(u32, u64)]> {
    let mut out = Vec::new();
    let mut p = prev.iter().peekable();
    for &(i, n) in cur {
        while p.peek().is_some_and(|&&(j, _)| j < i) {
            p.next();
        }
        let before = match p.peek() {
            Some(&&(j, m)) if j == i => m,
            _ => 0,
        };
        if n > before {
            out.push((i, n - before));
        }
    }
    out.into()
}
