//! The exemplar store (`src/exemplar.rs`): slot tables allocated on first use through a
//! `OnceBox` (Release CAS / Acquire load, the loser frees its own), each exemplar published
//! through an `ArcCell`, and the `used` flag that lets ticks skip the look-ups until the first
//! exemplar. Two writers race to allocate the same chunk while a ticker reads: a snapshot holds
//! either no exemplar for a series or a complete one, and the last flush holds both.
#![cfg(shardmetrics_loom)]

use loom::thread;
use shardmetrics::{Registry, Snapshot};
use shardmetrics_loom_tests::explore;

/// The value of `name`'s counter exemplar in `snap`, if it carries one.
fn exemplar(snap: &Snapshot, name: &str) -> Option<(u64, String)> {
    let series = snap.series().iter().find(|s| s.name() == name)?;
    let e = series.exemplars().first()?.as_ref()?;
    let (_, trace) = e.labels().next()?;
    Some((e.value(), trace.to_owned()))
}

/// Two writers race to allocate the same slot chunk (`OnceBox`: one CAS wins, the loser frees
/// its own) and publish their exemplars; afterwards both are there, whole.
#[test]
fn racing_first_exemplars_share_one_chunk() {
    shardmetrics_loom_tests::model(|| {
        let registry = Registry::builder().manual().build();
        let a = registry.counter("a_total").build().unwrap();
        let b = registry.counter("b_total").build().unwrap();
        let wa = thread::spawn(move || a.add_with_exemplar(3, &[("trace_id", "aa")]));
        let wb = thread::spawn(move || b.add_with_exemplar(4, &[("trace_id", "bb")]));
        wa.join().unwrap();
        wb.join().unwrap();
        let snap = registry.flush();
        assert_eq!(exemplar(&snap, "a_total"), Some((3, "aa".to_owned())));
        assert_eq!(exemplar(&snap, "b_total"), Some((4, "bb".to_owned())));
        assert_eq!((snap.counter("a_total", &[]), snap.counter("b_total", &[])), (Some(3), Some(4)));
    });
}

/// A writer stores a counter's first exemplar (allocating its chunk, publishing it, raising the
/// `used` flag) while a tick merges: the tick sees no exemplar or the whole one, never a torn
/// or foreign one, and the next flush sees it.
#[test]
fn exemplar_stored_while_ticking() {
    let outcomes = explore(|| {
        let registry = Registry::builder().manual().build();
        let a = registry.counter("a_total").build().unwrap();
        let writer = thread::spawn(move || a.add_with_exemplar(3, &[("trace_id", "aa")]));
        let r = registry.clone();
        let ticker = thread::spawn(move || exemplar(&r.flush(), "a_total"));
        writer.join().unwrap();
        let seen = ticker.join().unwrap();
        if let Some(e) = &seen {
            assert_eq!((e.0, e.1.as_str()), (3, "aa"), "a torn or foreign exemplar");
        }
        let snap = registry.flush();
        assert_eq!(exemplar(&snap, "a_total"), Some((3, "aa".to_owned())));
        assert_eq!(snap.counter("a_total", &[]), Some(3));
        seen.is_some()
    });
    assert_eq!(outcomes.len(), 2, "both orders explored: {outcomes:?}");
}
