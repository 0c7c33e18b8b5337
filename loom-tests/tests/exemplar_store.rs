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

#[test]
fn exemplars_stored_while_ticking() {
    let outcomes = explore(|| {
        let registry = Registry::builder().manual().build();
        let a = registry.counter("a_total").build().unwrap();
        let b = registry.counter("b_total").build().unwrap();
        let wa = thread::spawn(move || a.add_with_exemplar(3, &[("trace_id", "aa")]));
        let wb = thread::spawn(move || b.add_with_exemplar(4, &[("trace_id", "bb")]));
        let r = registry.clone();
        let ticker = thread::spawn(move || {
            let snap = r.flush();
            (exemplar(&snap, "a_total"), exemplar(&snap, "b_total"))
        });
        wa.join().unwrap();
        wb.join().unwrap();
        let seen = ticker.join().unwrap();
        for (e, want) in [(&seen.0, (3, "aa")), (&seen.1, (4, "bb"))] {
            if let Some((v, trace)) = e {
                assert_eq!((*v, trace.as_str()), want, "a torn or foreign exemplar");
            }
        }
        let snap = registry.flush();
        assert_eq!(exemplar(&snap, "a_total"), Some((3, "aa".to_owned())));
        assert_eq!(exemplar(&snap, "b_total"), Some((4, "bb".to_owned())));
        assert_eq!((snap.counter("a_total", &[]), snap.counter("b_total", &[])), (Some(3), Some(4)));
        (seen.0.is_some(), seen.1.is_some())
    });
    assert!(outcomes.contains(&(false, false)) && outcomes.contains(&(true, true)), "{outcomes:?}");
}
