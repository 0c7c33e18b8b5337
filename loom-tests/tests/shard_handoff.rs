//! Shard hand-off at thread exit (`src/shard.rs`, "Ownership" and "Thread exit"): a writer's
//! thread-local destructor releases its shard (Release), the next thread claims it (Acquire)
//! and continues from the exited thread's cell values — while another thread flushes.
#![cfg(shardmetrics_loom)]

use loom::thread;
use shardmetrics::{Counter, Registry};
use shardmetrics_loom_tests::{counter_total, explore};

fn setup() -> (Registry, Counter) {
    let registry = Registry::builder().manual().build();
    let c = registry.counter("handoff_total").build().unwrap();
    (registry, c)
}

/// T1 records and exits; only then T2 starts. Loom's `join` returns once the closure has
/// returned, which may be before the thread-local destructors ran (std's `join` waits for
/// them), so T2 finds T1's shard either released — and must continue from T1's values — or
/// still owned, and takes a fresh one. A flusher runs concurrently with both writers; what it
/// publishes is a prefix of the writes, and the final flush is exact.
#[test]
fn exited_writer_shard_is_reused_while_flushing() {
    let outcomes = explore(|| {
        let (registry, c) = setup();
        let flusher = {
            let r = registry.clone();
            thread::spawn(move || {
                let a = counter_total(&r.flush(), "handoff_total");
                let b = counter_total(&r.flush(), "handoff_total");
                assert!(a <= b, "flushed totals went backwards: {a} then {b}");
                b
            })
        };
        let c1 = c.clone();
        thread::spawn(move || {
            c1.inc();
            c1.add(1);
        })
        .join()
        .unwrap();
        let c2 = c.clone();
        thread::spawn(move || {
            c2.add(3);
            c2.add(2);
        })
        .join()
        .unwrap();
        let seen = flusher.join().unwrap();
        assert!([0, 1, 2, 5, 7].contains(&seen), "flushed total {seen} is not a prefix sum of the writes");
        let shards = registry.shard_count();
        assert!((1..=2).contains(&shards), "{shards} shards for two sequential writers");
        assert_eq!(counter_total(&registry.flush(), "handoff_total"), 7, "a re-used shard lost or doubled values");
        (shards, seen)
    });
    let shards: Vec<usize> = outcomes.iter().map(|o| o.0).collect();
    assert!(shards.contains(&1), "no execution re-used the released shard");
    assert!(shards.contains(&2), "no execution claimed while T1 still owned its shard");
    for seen in [0, 1, 2, 5, 7] {
        assert!(outcomes.contains(&(1, seen)), "the flusher never saw {seen} with the shard re-used");
    }
}

/// T1 and T2 overlap: T2 claims either T1's released shard or a fresh one, depending on the
/// interleaving. Either way nothing is lost or doubled.
#[test]
fn racing_exit_and_claim_lose_nothing() {
    let outcomes = explore(|| {
        let (registry, c) = setup();
        let flusher = {
            let r = registry.clone();
            thread::spawn(move || counter_total(&r.flush(), "handoff_total"))
        };
        let (c1, c2) = (c.clone(), c.clone());
        let t1 = thread::spawn(move || c1.add(2));
        let t2 = thread::spawn(move || c2.add(5));
        t1.join().unwrap();
        t2.join().unwrap();
        let seen = flusher.join().unwrap();
        assert!([0, 2, 5, 7].contains(&seen), "flushed total {seen} is not a sum of whole writes");
        let shards = registry.shard_count();
        assert!((1..=2).contains(&shards), "{shards} shards for two writers");
        assert_eq!(counter_total(&registry.flush(), "handoff_total"), 7);
        (shards, seen)
    });
    assert!(outcomes.iter().any(|o| o.0 == 1), "T2 never re-used T1's shard");
    for seen in [0, 2, 5, 7] {
        assert!(outcomes.iter().any(|o| o.1 == seen), "the flusher never saw {seen}");
    }
}

/// A record made after the thread's shard binding was destroyed (from another thread-local's
/// destructor at thread exit) takes a shard for that one record and gives it back
/// (`with_temporary_shard`): neither lost nor a panic. Loom drops a thread's thread-locals in
/// hash-map order, which differs between executions, so the model drives that path directly
/// (`add_after_binding_destroyed`) while T1 still owns its bound shard; `tests/thread_exit.rs`
/// checks the real destructor case with std threads.
#[test]
fn record_after_binding_destroyed_is_kept() {
    let outcomes = explore(|| {
        let (registry, c) = setup();
        let flusher = {
            let r = registry.clone();
            thread::spawn(move || counter_total(&r.flush(), "handoff_total"))
        };
        let c1 = c.clone();
        let t1 = thread::spawn(move || {
            c1.inc();
            c1.add_after_binding_destroyed(10);
        });
        let c2 = c.clone();
        let t2 = thread::spawn(move || c2.add_after_binding_destroyed(100));
        t1.join().unwrap();
        t2.join().unwrap();
        let seen = flusher.join().unwrap();
        // Any subset of the three records: a flush that does not happen-after a record may
        // miss it, and cells of different shards are read with no order between them (T1's
        // `10` can be seen without its earlier `1`); a record is never seen in part.
        assert!(
            [0, 1, 10, 11, 100, 101, 110, 111].contains(&seen),
            "flushed total {seen} is not a sum of whole writes"
        );
        assert_eq!(counter_total(&registry.flush(), "handoff_total"), 111);
        // T1's bound shard stays owned; the two one-off records share a second shard or (when
        // they overlap) take one each.
        let shards = registry.shard_count();
        assert!((2..=3).contains(&shards), "{shards} shards");
        (shards, seen)
    });
    assert!(outcomes.iter().any(|o| o.0 == 2), "the one-off shard was never re-used");
    assert!(outcomes.iter().any(|o| o.0 == 3), "the one-off records never overlapped");
    for seen in [0, 1, 11, 100, 101, 111] {
        assert!(outcomes.iter().any(|o| o.1 == seen), "the flusher never saw {seen}");
    }
}
