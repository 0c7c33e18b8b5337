//! Registry drop while handles live (`Registry` / `Core` / `ShardList` in `src/registry.rs`
//! and `src/shard.rs`): the core lives as long as any handle, a thread's binding keeps its
//! shard alive past the list that created it, and everything is freed exactly once. Loom fails
//! an execution that leaks a loom `Arc` (core, shards) or frees one twice.
#![cfg(shardmetrics_loom)]

use loom::thread;
use shardmetrics::Registry;
use shardmetrics_loom_tests::{counter_total, explore};

/// The last `Registry` is dropped (after a flush) in one thread while another records through
/// a `Counter` and exits: the recording thread's handle and shard binding outlive the registry.
#[test]
fn last_registry_dropped_while_recording() {
    let outcomes = explore(|| {
        let registry = Registry::builder().manual().build();
        let c = registry.counter("drop_total").build().unwrap();
        let h = registry.histogram("drop_hist").precision(1).build().unwrap();
        let writer = thread::spawn(move || {
            c.inc();
            h.record(2);
            c.inc();
        });
        let dropper = thread::spawn(move || {
            let v = counter_total(&registry.flush(), "drop_total");
            drop(registry);
            v
        });
        writer.join().unwrap();
        let seen = dropper.join().unwrap();
        assert!(seen <= 2);
        seen
    });
    assert_eq!(outcomes.into_iter().collect::<Vec<_>>(), [0, 1, 2]);
}

/// One `Registry` clone is dropped while a thread records; the clone kept elsewhere still
/// flushes the exact total.
#[test]
fn registry_clone_dropped_while_recording() {
    explore(|| {
        let registry = Registry::builder().manual().build();
        let c = registry.counter("drop_total").build().unwrap();
        let clone = registry.clone();
        let writer = thread::spawn(move || c.add(4));
        let dropper = thread::spawn(move || drop(clone));
        writer.join().unwrap();
        dropper.join().unwrap();
        assert_eq!(counter_total(&registry.flush(), "drop_total"), 4);
    });
}

/// A thread records into registry A, every handle of A is dropped, then the same thread records
/// into registry B while another thread flushes B: binding B's shard forgets A's dead shard
/// (the thread-local holds its last reference), which must neither leak nor free anything
/// still in use.
#[test]
fn binding_forgets_shards_of_dropped_registries() {
    let outcomes = explore(|| {
        let b = Registry::builder().manual().build();
        let cb = b.counter("b_total").build().unwrap();
        let flusher = {
            let b = b.clone();
            thread::spawn(move || counter_total(&b.flush(), "b_total"))
        };
        let writer = thread::spawn(move || {
            let a = Registry::builder().manual().build();
            let ca = a.counter("a_total").build().unwrap();
            ca.add(1);
            drop((a, ca));
            cb.add(2);
        });
        writer.join().unwrap();
        let seen = flusher.join().unwrap();
        assert_eq!(counter_total(&b.flush(), "b_total"), 2);
        assert_eq!(b.shard_count(), 1);
        seen
    });
    assert_eq!(outcomes.into_iter().collect::<Vec<_>>(), [0, 2]);
}
