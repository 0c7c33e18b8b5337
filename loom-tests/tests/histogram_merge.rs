//! Histogram merge while owners record (`src/shard.rs` "Histograms", `merge_histogram` in
//! `src/aggregator.rs`): the owner stores min/max/sum before the Release bucket increment; the
//! aggregator loads buckets with Acquire before sum/min/max. The owner's last store is the
//! slot's record count (Release); a tick that finds the counts unchanged reuses the previous
//! merge, so the final flush after the writers joined checks that a reused merge is never
//! stale (the count is loaded with Acquire before any bucket). Every published snapshot must be
//! consistent (count == Σ buckets, min ≤ quantiles ≤ max, min ≤ mean ≤ max, every counted
//! bucket inside [min, max]) and counts never go backwards between successive snapshots.
#![cfg(shardmetrics_loom)]

use loom::thread;
use shardmetrics::{Registry, Snapshot};
use shardmetrics_loom_tests::{check_histogram, explore};

/// Precision (schema) 1 keeps a slot small; the values land in three different bucket groups
/// (powers of two 2, 0 and 5), so every record also allocates and publishes a group while the
/// aggregator reads.
const VALUES: [u64; 3] = [6, 1, 40];
/// The exponential bucket `(low, high)` each of `VALUES` lands in at schema 1 (bounds
/// `2^(k/2)`: `(2^2.5, 2^3]`, `(2^-0.5, 2^0]`, `(2^5, 2^5.5]`).
const BUCKETS: [(u64, u64); 3] = [(6, 8), (1, 1), (33, 45)];

/// Checks one snapshot against the recorded values: beyond [`check_histogram`], the counted
/// buckets are exactly some of `VALUES`' buckets, min/max are recorded values that bound every
/// counted one, and the sum lies between the counted values' sum and the total. Returns
/// (count, sum, min, max).
fn check_against_values(snap: &Snapshot) -> (u64, u64, Option<u64>, Option<u64>) {
    let n = check_histogram(snap, "latency");
    let h = snap.histogram("latency", &[]).expect("registered before any tick");
    let mut counted = Vec::new();
    for b in h.buckets() {
        let i = BUCKETS.iter().position(|&r| r == (b.low, b.high)).unwrap_or_else(|| panic!("stray bucket {b:?}"));
        assert_eq!(b.count, 1, "bucket {b:?} counted a value twice");
        counted.push(VALUES[i]);
    }
    if let (Some(min), Some(max)) = (h.min(), h.max()) {
        assert!(VALUES.contains(&min) && VALUES.contains(&max), "min {min} / max {max} were never recorded");
        assert!(counted.iter().all(|&v| min <= v && v <= max), "[{min}, {max}] does not cover {counted:?}");
        let (lo, hi): (u64, u64) = (counted.iter().sum(), VALUES.iter().sum());
        assert!((lo..=hi).contains(&h.sum()), "sum {} outside [{lo}, {hi}]", h.sum());
    }
    (n, h.sum(), h.min(), h.max())
}

/// One writer records three values while a ticker publishes twice.
#[test]
fn snapshots_stay_consistent_while_recording() {
    let outcomes = explore(|| {
        let registry = Registry::builder().manual().build();
        let h = registry.histogram("latency").precision(1).build().unwrap();
        let writer = thread::spawn(move || {
            for v in VALUES {
                h.record(v);
            }
        });
        let ticker = {
            let r = registry.clone();
            thread::spawn(move || {
                let a = check_against_values(&r.flush()).0;
                let b = check_against_values(&r.flush()).0;
                assert!(a <= b, "count went backwards: {a} then {b}");
                (a, b)
            })
        };
        writer.join().unwrap();
        let seen = ticker.join().unwrap();
        let last = check_against_values(&registry.flush());
        assert_eq!(last, (3, 47, Some(1), Some(40)));
        seen
    });
    for n in 0..=3 {
        assert!(outcomes.iter().any(|&(a, b)| a == n || b == n), "no tick ever counted exactly {n} values");
    }
    assert!(outcomes.iter().any(|&(a, b)| a < b), "the two ticks never saw different counts");
}

/// Two writers on one histogram (two shards): the second flushes right after its own record
/// (which that flush must count) while the first may be anywhere in its record. The merged
/// bounds come from every shard whose buckets were counted; a shard whose record is under way
/// may widen them but never leaves a counted value outside.
#[test]
fn two_shards_merge_consistently() {
    let outcomes = explore(|| {
        let registry = Registry::builder().manual().build();
        let h = registry.histogram("latency").precision(1).build().unwrap();
        let (h1, h2, r) = (h.clone(), h.clone(), registry.clone());
        let w1 = thread::spawn(move || h1.record(VALUES[0]));
        let w2 = thread::spawn(move || {
            h2.record(VALUES[2]);
            let seen = check_against_values(&r.flush());
            assert!(seen.0 >= 1 && seen.3 == Some(40), "a flush missed its own thread's record: {seen:?}");
            seen
        });
        w1.join().unwrap();
        let seen = w2.join().unwrap();
        let snap = registry.flush();
        let h = snap.histogram("latency", &[]).unwrap();
        assert_eq!(check_histogram(&snap, "latency"), 2);
        assert_eq!((h.sum(), h.min(), h.max()), (46, Some(6), Some(40)));
        seen
    });
    assert!(outcomes.contains(&(1, 40, Some(40), Some(40))), "the other shard was never invisible");
    assert!(outcomes.contains(&(1, 40, Some(6), Some(40))), "an uncounted record never widened the bounds");
    assert!(outcomes.contains(&(2, 46, Some(6), Some(40))), "the other shard was never fully visible");
}
