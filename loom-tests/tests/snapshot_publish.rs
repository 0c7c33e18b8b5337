//! Snapshot publication (`Published` in `src/sync.rs`, `Aggregator::tick`): a reader whose
//! `snapshot()` happens-after a `flush()` sees that flush's values (or a later snapshot's),
//! never an older snapshot.
#![cfg(shardmetrics_loom)]

use loom::{
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    thread,
};
use shardmetrics::Registry;
use shardmetrics_loom_tests::{counter_total, explore};

/// The writer records, flushes, then raises a flag (Release); a reader that sees the flag
/// (Acquire) must see the flushed value in `snapshot()`.
#[test]
fn snapshot_after_flush_via_flag() {
    let outcomes = explore(|| {
        let registry = Registry::builder().manual().build();
        let c = registry.counter("pub_total").build().unwrap();
        let flag = Arc::new(AtomicBool::new(false));
        let (r, f) = (registry.clone(), flag.clone());
        let writer = thread::spawn(move || {
            c.add(3);
            let flushed = r.flush();
            assert_eq!(counter_total(&flushed, "pub_total"), 3);
            f.store(true, Ordering::Release);
        });
        let (r, f) = (registry.clone(), flag.clone());
        let reader = thread::spawn(move || {
            let raised = f.load(Ordering::Acquire);
            let snap = r.snapshot();
            let v = counter_total(&snap, "pub_total");
            if raised {
                assert_eq!(v, 3, "snapshot() after the flag shows an older snapshot (seq {})", snap.seq());
                assert!(snap.seq() >= 1);
            } else {
                assert!([0, 3].contains(&v), "partial value {v}");
            }
            (raised, v)
        });
        writer.join().unwrap();
        let seen = reader.join().unwrap();
        // join is a happens-before edge too: no new flush needed.
        assert_eq!(counter_total(&registry.snapshot(), "pub_total"), 3);
        seen
    });
    assert!(outcomes.contains(&(true, 3)), "the reader never saw the flag");
    assert!(outcomes.contains(&(false, 0)), "the reader never ran before the flush");
    assert!(outcomes.contains(&(false, 3)), "the reader never saw the snapshot before the flag");
}

/// Two flushes race; each publishes in sequence order, so a reader that happens-after both
/// sees the later one's (complete) totals, and successive `snapshot()` loads never go back.
#[test]
fn concurrent_flushes_publish_in_order() {
    let outcomes = explore(|| {
        let registry = Registry::builder().manual().build();
        let c = registry.counter("pub_total").build().unwrap();
        let (r1, c1) = (registry.clone(), c.clone());
        let t1 = thread::spawn(move || {
            c1.add(1);
            r1.flush().seq()
        });
        let r2 = registry.clone();
        let t2 = thread::spawn(move || {
            c.add(10);
            let a = r2.snapshot();
            let b = r2.flush();
            let d = r2.snapshot();
            assert!(a.seq() < b.seq() && b.seq() <= d.seq(), "seq {} {} {}", a.seq(), b.seq(), d.seq());
            assert!(counter_total(&d, "pub_total") >= counter_total(&b, "pub_total"));
            assert!(counter_total(&b, "pub_total") >= 10, "a flush missed its own thread's record");
            b.seq()
        });
        let s1 = t1.join().unwrap();
        let s2 = t2.join().unwrap();
        let last = registry.snapshot();
        assert_eq!(last.seq(), s1.max(s2), "the latest snapshot is not the last flush");
        assert_eq!(counter_total(&last, "pub_total"), 11);
        (s1, s2)
    });
    assert_eq!(outcomes.into_iter().collect::<Vec<_>>(), [(1, 2), (2, 1)]);
}
