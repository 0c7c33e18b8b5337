//! Loom models of shardmetrics' concurrency protocol.
//!
//! The models live in `tests/`, one file per structure, and compile only under
//! `RUSTFLAGS="--cfg shardmetrics_loom"`, where the engine's `sync` facade switches its
//! atomics, `Arc`, `Mutex` and thread-locals to loom and shrinks the shard chunks so the real
//! code runs on tiny storage. Run them all with `.ci/loom.sh` (release build with debug
//! assertions, `LOOM_MAX_PREEMPTIONS=2` unless set).
//!
//! Every model drives the public API of a manually ticked registry
//! (`Registry::builder().manual()`) and asserts exact values, not just the absence of a panic.

#![forbid(unsafe_code)]

/// Preemption bound used when `LOOM_MAX_PREEMPTIONS` is not set: every model is exhaustive up
/// to two preemptions, which keeps the whole run in minutes on two cores.
pub const DEFAULT_PREEMPTIONS: usize = 2;

/// Scheduling points allowed in one execution when `LOOM_MAX_BRANCHES` is not set. Every
/// atomic access is one; a tick visits every bucket group of every histogram slot of every
/// shard, which is more than loom's default of 1,000 in the histogram models.
pub const MAX_BRANCHES: usize = 20_000;

/// Runs `f` under loom with [`DEFAULT_PREEMPTIONS`] unless `LOOM_MAX_PREEMPTIONS` overrides it.
#[cfg(shardmetrics_loom)]
pub fn model<F>(f: F)
where
    F: Fn() + Sync + Send + 'static,
{
    let mut builder = loom::model::Builder::new();
    if builder.preemption_bound.is_none() {
        builder.preemption_bound = Some(DEFAULT_PREEMPTIONS);
    }
    if std::env::var_os("LOOM_MAX_BRANCHES").is_none() {
        builder.max_branches = MAX_BRANCHES;
    }
    let executions = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = executions.clone();
    let start = std::time::Instant::now();
    builder.check(move || {
        counted.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        f();
    });
    // Printed with `--nocapture` (`.ci/loom.sh` does): how much of the state space was explored.
    println!(
        "{}: {} executions in {:.1?} (preemption bound {:?})",
        std::thread::current().name().unwrap_or("model"),
        executions.load(std::sync::atomic::Ordering::Relaxed),
        start.elapsed(),
        builder.preemption_bound,
    );
}

/// Runs `f` under [`model`] and returns the set of values it returned across all executions,
/// so a test can check that the interleavings it is about were really explored (loom can
/// under-explore, e.g. tokio-rs/loom#392) as well as that every outcome is allowed.
#[cfg(shardmetrics_loom)]
pub fn explore<T, F>(f: F) -> std::collections::BTreeSet<T>
where
    T: Ord + Send + std::fmt::Debug + 'static,
    F: Fn() -> T + Sync + Send + 'static,
{
    let outcomes = std::sync::Arc::new(std::sync::Mutex::new(std::collections::BTreeSet::new()));
    let sink = outcomes.clone();
    model(move || {
        let outcome = f();
        sink.lock().unwrap().insert(outcome);
    });
    let set = std::mem::take(&mut *outcomes.lock().unwrap());
    println!("  outcomes: {set:?}");
    set
}

/// The total of the counter `name` (no labels) in `snap`, or 0 if it is not in the snapshot
/// yet (a tick that ran before the series was registered).
pub fn counter_total(snap: &shardmetrics::Snapshot, name: &str) -> u64 {
    snap.counter(name, &[]).unwrap_or(0)
}

/// Checks the histogram invariants of one published snapshot (count == Σ buckets,
/// min ≤ p0 ≤ p50 ≤ p99 ≤ p100 ≤ max, `None` exactly while empty) and returns its count.
pub fn check_histogram(snap: &shardmetrics::Snapshot, name: &str) -> u64 {
    let Some(h) = snap.histogram(name, &[]) else {
        return 0;
    };
    let bucket_sum: u64 = h.buckets().map(|b| b.count).sum();
    assert_eq!(h.count(), bucket_sum, "count != Σ buckets in snapshot #{}", snap.seq());
    if h.count() == 0 {
        assert_eq!((h.min(), h.max(), h.quantile(0.5)), (None, None, None), "empty histogram reports values");
        return 0;
    }
    let (min, max, mean) = (h.min().unwrap(), h.max().unwrap(), h.mean().unwrap());
    assert!(min as f64 <= mean && mean <= max as f64, "mean {mean} outside [min {min}, max {max}]");
    let qs: Vec<u64> = [0.0, 0.5, 0.99, 1.0].iter().map(|&q| h.quantile(q).unwrap()).collect();
    assert!(min <= qs[0], "min {min} > p0 {}", qs[0]);
    assert!(qs.windows(2).all(|w| w[0] <= w[1]), "quantiles not monotone: {qs:?}");
    assert!(qs[3] <= max, "p100 {} > max {max}", qs[3]);
    for b in h.buckets() {
        assert!(b.low <= max && b.high >= min, "bucket {b:?} outside [min {min}, max {max}]");
    }
    h.count()
}
