//! Churn stress: waves of short-lived writer threads record known amounts into a counter, a
//! labelled family and a histogram while a reader checks every snapshot it can get, a flusher
//! calls `flush()` in a loop and the background aggregator ticks every millisecond. At the end
//! the totals are exact, shards were re-used (count ≤ peak live writers) and per-thread memory
//! did not grow with churn.

use std::{
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc, Barrier,
    },
    thread,
    time::{Duration, Instant},
};

use shardmetrics::{Registry, Snapshot};

const WAVES: u64 = 6;
const PER_WAVE: u64 = 8; // 48 writer threads in all
const OPS: u64 = 40_000; // records per writer per metric
const ROUTES: [&str; 3] = ["/a", "/b", "/c"];

/// The value writer `w` records on its `i`-th histogram record: spans 1 µs–100 ms in ns.
fn value(w: u64, i: u64) -> u64 {
    1_000 + (w * 7_919 + i * 104_729) % 100_000_000
}

struct Seen {
    seq: u64,
    counter: u64,
    family: [u64; 3],
    hist_count: u64,
}

/// Checks one snapshot's invariants and that nothing went backwards since `prev`.
fn check(snap: &Snapshot, prev: &mut Seen) {
    assert!(snap.seq() >= prev.seq, "snapshot seq went backwards: {} after {}", snap.seq(), prev.seq);
    let counter = snap.counter("churn_total", &[]).unwrap_or(0);
    let family = ROUTES.map(|r| snap.counter("churn_route_total", &[("route", r)]).unwrap_or(0));
    let hist_count = match snap.histogram("churn_latency", &[]) {
        None => 0,
        Some(h) => {
            let bucket_sum: u64 = h.buckets().map(|b| b.count).sum();
            assert_eq!(h.count(), bucket_sum, "count != Σ buckets (seq {})", snap.seq());
            if h.count() > 0 {
                let (min, max) = (h.min().unwrap(), h.max().unwrap());
                let (p50, p99) = (h.quantile(0.5).unwrap(), h.quantile(0.99).unwrap());
                assert!(min <= p50 && p50 <= p99 && p99 <= max, "min {min} p50 {p50} p99 {p99} max {max}");
                let mean = h.mean().unwrap();
                assert!(min as f64 <= mean && mean <= max as f64, "mean {mean} outside [{min}, {max}]");
            }
            h.count()
        }
    };
    if snap.seq() > prev.seq {
        assert!(counter >= prev.counter, "counter went backwards: {} after {}", counter, prev.counter);
        for (r, (now, before)) in family.iter().zip(prev.family).enumerate() {
            assert!(*now >= before, "family series {} went backwards: {now} after {before}", ROUTES[r]);
        }
        assert!(hist_count >= prev.hist_count, "histogram count went backwards");
        *prev = Seen { seq: snap.seq(), counter, family, hist_count };
    }
}

#[test]
fn churn_with_concurrent_snapshots_and_flushes() {
    let started = Instant::now();
    let registry = Registry::builder().interval(Duration::from_millis(1)).build();
    let counter = registry.counter("churn_total").build().unwrap();
    let family = Arc::new(registry.counter("churn_route_total").family(&["route"]).unwrap());
    let hist = registry.histogram("churn_latency").build().unwrap();
    let stop = Arc::new(AtomicBool::new(false));

    let reader = {
        let (registry, stop) = (registry.clone(), stop.clone());
        thread::spawn(move || {
            let mut prev = Seen { seq: 0, counter: 0, family: [0; 3], hist_count: 0 };
            let mut checked = 0u64;
            while !stop.load(Ordering::Acquire) {
                check(&registry.snapshot(), &mut prev);
                checked += 1;
            }
            checked
        })
    };
    let flushes = Arc::new(AtomicU64::new(0));
    let flusher = {
        let (registry, stop, flushes) = (registry.clone(), stop.clone(), flushes.clone());
        thread::spawn(move || {
            let mut prev = Seen { seq: 0, counter: 0, family: [0; 3], hist_count: 0 };
            while !stop.load(Ordering::Acquire) {
                check(&registry.flush(), &mut prev);
                flushes.fetch_add(1, Ordering::Relaxed);
            }
        })
    };

    let mut memory_after_first_wave = 0;
    let mut expected_hist_sum = 0u64;
    for wave in 0..WAVES {
        // All writers of a wave are alive at once (the barrier), so the wave needs PER_WAVE
        // shards; later waves must re-use them.
        let barrier = Arc::new(Barrier::new(PER_WAVE as usize));
        let writers: Vec<_> = (0..PER_WAVE)
            .map(|k| {
                let w = wave * PER_WAVE + k;
                expected_hist_sum += (0..OPS).map(|i| value(w, i)).sum::<u64>();
                let (counter, family, hist, barrier) = (counter.clone(), family.clone(), hist.clone(), barrier.clone());
                thread::spawn(move || {
                    barrier.wait();
                    for i in 0..OPS {
                        counter.add(w + 1);
                        family.with(&[ROUTES[(i % 3) as usize]]).inc();
                        hist.record(value(w, i));
                    }
                    barrier.wait();
                })
            })
            .collect();
        for t in writers {
            t.join().unwrap();
        }
        if wave == 0 {
            memory_after_first_wave = registry.shard_memory_bytes();
        }
    }
    let writers = WAVES * PER_WAVE;
    stop.store(true, Ordering::Release);
    let snapshots_checked = reader.join().unwrap();
    flusher.join().unwrap();

    let snap = registry.flush();
    assert_eq!(snap.counter("churn_total", &[]), Some(OPS * writers * (writers + 1) / 2));
    for r in ROUTES {
        let per_route = OPS / 3 + u64::from(ROUTES.iter().position(|x| *x == r).unwrap() < (OPS % 3) as usize);
        assert_eq!(snap.counter("churn_route_total", &[("route", r)]), Some(per_route * writers), "route {r}");
    }
    let h = snap.histogram("churn_latency", &[]).unwrap();
    assert_eq!(h.count(), OPS * writers);
    assert_eq!(h.sum(), expected_hist_sum);
    assert_eq!(h.buckets().map(|b| b.count).sum::<u64>(), OPS * writers);

    let shards = registry.shard_count();
    let memory = registry.shard_memory_bytes();
    assert!(shards <= PER_WAVE as usize, "{shards} shards for at most {PER_WAVE} live writers");
    // Re-used shards keep their cells; the only growth churn can cause is a bucket group a
    // re-used shard had not needed yet (lazily allocated, (2^5 + 2) × 8 B each at the default
    // precision: one group per power of two). The values span 2^9..2^27, i.e. at most GROUPS
    // groups per shard.
    const GROUPS: usize = 27 - 9 + 1;
    let group_bytes = 8 * ((1 << shardmetrics::Histogram::DEFAULT_PRECISION) + 2);
    assert!(
        memory <= memory_after_first_wave + shards * GROUPS * group_bytes,
        "shard memory grew beyond the bucket groups the value range needs: {memory} B after, \
         {memory_after_first_wave} B after the first wave"
    );
    assert!(memory / shards <= 16 << 10, "{} B per shard", memory / shards);
    let elapsed = started.elapsed();
    println!(
        "churn: {writers} writers in {WAVES} waves, {} records, {snapshots_checked} snapshots checked, {} flushes, \
         {shards} shards, {memory} B of shard memory ({} B per shard; {memory_after_first_wave} B after wave 1), \
         {elapsed:.1?}",
        OPS * writers * 3,
        flushes.load(Ordering::Relaxed),
        memory / shards,
    );
    registry.shutdown();
}
