//! The family label index (`src/metric/label_index.rs`): lock-free, write-free look-ups while
//! one writer (serialised by the family's mutex) inserts entries and grows the table. A grown
//! table is filled before its Release publish; an entry is written before its slot's Release
//! store; readers Acquire both, and a reader that misses (an older table) falls back to the
//! mutex. Every increment must land in its own series exactly once.
#![cfg(shardmetrics_loom)]

use loom::thread;
use shardmetrics::Registry;
use shardmetrics_loom_tests::explore;

/// The index starts with 8 slots and grows past 4 entries. Four label sets are inserted up
/// front; then W inserts a fifth (the insert that grows the table) while R looks up a
/// pre-inserted one and a ticker publishes. R must find its series through the old or the new
/// table (never a torn entry), and both counts are exact.
#[test]
fn lookups_during_the_insert_that_grows_the_table() {
    let outcomes = explore(|| {
        let registry = Registry::builder().manual().build();
        let family = registry.counter("hits_total").family(&["route"]).unwrap();
        for route in ["a", "b", "c", "d"] {
            family.with(&[route]).inc();
        }
        let f = family.clone();
        let writer = thread::spawn(move || f.with(&["e"]).add(5));
        let f = family.clone();
        let reader = thread::spawn(move || f.with(&["b"]).add(2));
        let r = registry.clone();
        let ticker = thread::spawn(move || r.flush().counter("hits_total", &[("route", "e")]));
        writer.join().unwrap();
        reader.join().unwrap();
        let seen = ticker.join().unwrap();
        assert!([None, Some(0), Some(5)].contains(&seen), "route e {seen:?}");
        let snap = registry.flush();
        assert_eq!(snap.counter("hits_total", &[("route", "e")]), Some(5));
        assert_eq!(snap.counter("hits_total", &[("route", "b")]), Some(3));
        for route in ["a", "c", "d"] {
            assert_eq!(snap.counter("hits_total", &[("route", route)]), Some(1), "route {route}");
        }
        assert_eq!(snap.series().iter().filter(|s| s.name() == "hits_total").count(), 5);
        seen
    });
    assert!(outcomes.contains(&None) && outcomes.contains(&Some(5)), "{outcomes:?}");
}

/// Two threads look up the same new label set at once: one inserts it, the other either finds
/// the published entry or takes the mutex and finds it there. One series, both increments.
#[test]
fn racing_first_inserts_of_one_label_set() {
    shardmetrics_loom_tests::model(|| {
        let registry = Registry::builder().manual().build();
        let family = registry.counter("hits_total").family(&["route"]).unwrap();
        let handles: Vec<_> = [1u64, 10]
            .into_iter()
            .map(|n| {
                let f = family.clone();
                thread::spawn(move || f.with(&["new"]).add(n))
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
        let snap = registry.flush();
        assert_eq!(snap.counter("hits_total", &[("route", "new")]), Some(11));
        assert_eq!(snap.series().iter().filter(|s| s.name() == "hits_total").count(), 1);
    });
}
