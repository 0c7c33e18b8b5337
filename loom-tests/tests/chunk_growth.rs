//! Shard chunk growth (`src/shard.rs` "Growth"): registering a series whose cells live in a
//! chunk no shard has yet, while other threads record and the aggregator ticks. With the loom
//! constants every chunk is tiny (counter chunk k holds 2^k cells, histogram chunk k 2^k
//! slots), so consecutive series land in different chunks and each first record publishes a
//! chunk (Release CAS) that the aggregator may be reading (Acquire load) at the same time.
#![cfg(shardmetrics_loom)]

use loom::thread;
use shardmetrics::Registry;
use shardmetrics_loom_tests::{check_histogram, counter_total, explore};

/// Counter A is registered up front; thread R registers counter B concurrently and records
/// into it while thread W records into A and a ticker publishes. No record is lost.
#[test]
fn counter_registered_while_recording_and_ticking() {
    let outcomes = explore(|| {
        let registry = Registry::builder().manual().build();
        // Counter cells 0 and 1 are the self-metrics (rejected values, cardinality overflow).
        let a = registry.counter("a_total").build().unwrap();
        assert_eq!(a.shard_chunk(), 1, "counter #2 should sit in chunk 1");
        let r = registry.clone();
        let registrar = thread::spawn(move || {
            let b = r.counter("b_total").build().unwrap();
            assert_eq!(b.shard_chunk(), 2, "counter #3 should sit in chunk 2");
            b.add(5);
        });
        let writer = thread::spawn(move || a.add(2));
        let r = registry.clone();
        let ticker = thread::spawn(move || {
            let snap = r.flush();
            (counter_total(&snap, "a_total"), snap.counter("b_total", &[]))
        });
        registrar.join().unwrap();
        writer.join().unwrap();
        let seen = ticker.join().unwrap();
        assert!([0, 2].contains(&seen.0), "a_total {}", seen.0);
        assert!([None, Some(0), Some(5)].contains(&seen.1), "b_total {:?}", seen.1);
        let snap = registry.flush();
        assert_eq!((counter_total(&snap, "a_total"), counter_total(&snap, "b_total")), (2, 5));
        // W may re-use R's shard if R's thread-locals were torn down before W's first record.
        assert!((1..=2).contains(&registry.shard_count()));
        seen
    });
    for b in [None, Some(0), Some(5)] {
        assert!(outcomes.iter().any(|o| o.1 == b), "the ticker never saw b_total = {b:?}");
    }
    assert!(outcomes.iter().any(|o| o.0 == 2) && outcomes.iter().any(|o| o.0 == 0));
}

/// The same for histogram slots: #0 in chunk 0 is recorded by W, #1 (chunk 1) is registered
/// and recorded by R, which then flushes; every published snapshot is consistent.
#[test]
fn histogram_registered_while_recording() {
    let outcomes = explore(|| {
        let registry = Registry::builder().manual().build();
        let h0 = registry.histogram("h0").precision(1).build().unwrap();
        assert_eq!(h0.shard_chunk(), 0);
        let r = registry.clone();
        let registrar = thread::spawn(move || {
            let h1 = r.histogram("h1").precision(1).build().unwrap();
            assert_eq!(h1.shard_chunk(), 1, "histogram #1 should sit in chunk 1");
            h1.record(3);
            let snap = r.flush();
            assert_eq!(check_histogram(&snap, "h1"), 1, "a flush missed its own thread's record");
            check_histogram(&snap, "h0")
        });
        let writer = thread::spawn(move || h0.record(9));
        writer.join().unwrap();
        let seen = registrar.join().unwrap();
        let snap = registry.flush();
        assert_eq!((check_histogram(&snap, "h0"), check_histogram(&snap, "h1")), (1, 1));
        assert_eq!(snap.histogram("h1", &[]).unwrap().max(), Some(3));
        assert_eq!(snap.histogram("h0", &[]).unwrap().max(), Some(9));
        seen
    });
    assert_eq!(outcomes.into_iter().collect::<Vec<_>>(), [0, 1]);
}
