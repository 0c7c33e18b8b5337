//! Thread exit with std threads (the loom models cover the protocol; these cover the real
//! thread-local machinery): records made from another thread-local's destructor, threads whose
//! destructors never run, and many short-lived threads re-using shards.

use std::{
    cell::RefCell,
    sync::{mpsc, Arc, Barrier},
    thread,
};

use shardmetrics::{Counter, Histogram, Registry};

fn manual() -> Registry {
    Registry::builder().manual().build()
}

/// Records into `counter` (and `hist`) when the thread-local is destroyed at thread exit.
struct RecordOnDrop(RefCell<Option<(Counter, Histogram, u64)>>);

impl Drop for RecordOnDrop {
    fn drop(&mut self) {
        if let Some((c, h, n)) = self.0.borrow_mut().take() {
            c.add(n);
            h.record(n);
        }
    }
}

thread_local! {
    static LATE: RecordOnDrop = const { RecordOnDrop(RefCell::new(None)) };
}

/// (a) Thread-local destructors run in reverse order of registration, so a `LATE` touched
/// before the thread's first record is destroyed *after* the engine's shard binding (its
/// record takes the one-off shard path), and one touched after is destroyed before it (the
/// ordinary path). Both must count exactly once, without a panic, and join (which waits for
/// the destructors) makes them visible to the next flush.
#[test]
fn records_from_another_thread_locals_destructor_are_kept() {
    let registry = manual();
    let c = registry.counter("late_total").build().unwrap();
    let h = registry.histogram("late_values").build().unwrap();
    let mut expected = 0;
    for i in 0..64u64 {
        let (c, h) = (c.clone(), h.clone());
        let late_first = i % 2 == 0;
        let n = 100 + i;
        expected += 1 + n;
        thread::spawn(move || {
            if late_first {
                LATE.with(|l| *l.0.borrow_mut() = Some((c.clone(), h.clone(), n)));
                c.inc();
            } else {
                c.inc();
                LATE.with(|l| *l.0.borrow_mut() = Some((c.clone(), h.clone(), n)));
            }
        })
        .join()
        .expect("a record from a thread-local destructor panicked");
    }
    let snap = registry.flush();
    assert_eq!(snap.counter("late_total", &[]), Some(expected));
    let hs = snap.histogram("late_values", &[]).unwrap();
    assert_eq!((hs.count(), hs.sum(), hs.min(), hs.max()), (64, (100..164).sum(), Some(100), Some(163)));
    // Sequential threads: the bound shard and the one-off shard are both released at exit,
    // so at most two shards exist whatever the destructor order.
    assert!(registry.shard_count() <= 2, "{} shards for one thread at a time", registry.shard_count());
}

/// (b) A thread that never exits (the main thread's pattern: its thread-local destructors may
/// never run) keeps its shard for good; its values are read anyway, and the next thread gets a
/// fresh shard instead of that one.
#[test]
fn values_of_a_thread_that_never_exits_are_in_the_snapshot() {
    let registry = manual();
    let c = registry.counter("immortal_total").build().unwrap();
    let h = registry.histogram("immortal_values").build().unwrap();
    let (recorded, wait) = (mpsc::channel::<()>(), mpsc::channel::<()>());
    let (done, parked) = (recorded.0, wait.1);
    {
        let (c, h) = (c.clone(), h.clone());
        // Detached on purpose: it blocks until the process ends (the sender is leaked below).
        thread::spawn(move || {
            c.add(41);
            h.record(7);
            done.send(()).unwrap();
            let _ = parked.recv();
        });
    }
    std::mem::forget(wait.0);
    recorded.1.recv().unwrap();
    // The channel message orders the records before this flush.
    let snap = registry.flush();
    assert_eq!(snap.counter("immortal_total", &[]), Some(41));
    assert_eq!(snap.histogram("immortal_values", &[]).unwrap().count(), 1);
    thread::spawn(move || c.inc()).join().unwrap();
    assert_eq!(registry.flush().counter("immortal_total", &[]), Some(42));
    assert_eq!(registry.shard_count(), 2, "the live thread's shard must not be handed out");
}

/// (c) 1,000 short-lived threads one after another: one shard in all, exact total.
#[test]
fn thousand_sequential_threads_share_one_shard() {
    let registry = manual();
    let c = registry.counter("seq_total").build().unwrap();
    let h = registry.histogram("seq_values").build().unwrap();
    for i in 0..1_000u64 {
        let (c, h) = (c.clone(), h.clone());
        thread::spawn(move || {
            c.add(i);
            h.record(i);
        })
        .join()
        .unwrap();
        if i % 250 == 0 {
            assert_eq!(registry.flush().counter("seq_total", &[]), Some(i * (i + 1) / 2));
        }
    }
    let snap = registry.flush();
    assert_eq!(snap.counter("seq_total", &[]), Some(999 * 1000 / 2));
    let hs = snap.histogram("seq_values", &[]).unwrap();
    assert_eq!((hs.count(), hs.sum(), hs.min(), hs.max()), (1_000, 999 * 1000 / 2, Some(0), Some(999)));
    assert_eq!(registry.shard_count(), 1, "exited threads' shards were not re-used");
}

/// (c) 1,000 short-lived threads in 125 waves of 8 that are all alive at once (a barrier holds
/// them after their first record): exactly 8 shards, exact totals.
#[test]
fn thousand_threads_in_waves_use_peak_live_shards() {
    const WAVE: usize = 8;
    let registry = manual();
    let c = registry.counter("wave_total").build().unwrap();
    let fam = registry.counter("wave_hits_total").family(&["slot"]).unwrap();
    let fam = Arc::new(fam);
    let mut expected = 0u64;
    for wave in 0..125u64 {
        let barrier = Arc::new(Barrier::new(WAVE));
        let threads: Vec<_> = (0..WAVE as u64)
            .map(|k| {
                let (c, fam, barrier) = (c.clone(), fam.clone(), barrier.clone());
                expected += wave + k;
                thread::spawn(move || {
                    c.add(wave + k);
                    barrier.wait();
                    fam.with(&[&k.to_string()]).inc();
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(registry.shard_count(), WAVE, "wave {wave}");
    }
    let snap = registry.flush();
    assert_eq!(snap.counter("wave_total", &[]), Some(expected));
    for k in 0..WAVE {
        assert_eq!(snap.counter("wave_hits_total", &[("slot", &k.to_string())]), Some(125));
    }
}

/// Counts the bytes each thread allocated minus the bytes it freed, so a test can measure what
/// one thread retains while other tests run in parallel.
struct PerThreadNet;

thread_local! {
    static NET_BYTES: std::cell::Cell<isize> = const { std::cell::Cell::new(0) };
}

// SAFETY: every method forwards to `System` with the caller's arguments unchanged; the
// bookkeeping touches only a const-initialised thread-local `Cell` (no allocation, no
// destructor), and `try_with` tolerates a thread-local that is already gone.
unsafe impl std::alloc::GlobalAlloc for PerThreadNet {
    unsafe fn alloc(&self, layout: std::alloc::Layout) -> *mut u8 {
        let _ = NET_BYTES.try_with(|n| n.set(n.get() + layout.size() as isize));
        // SAFETY: same contract as ours.
        unsafe { std::alloc::System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: std::alloc::Layout) {
        let _ = NET_BYTES.try_with(|n| n.set(n.get() - layout.size() as isize));
        // SAFETY: same contract as ours.
        unsafe { std::alloc::System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: PerThreadNet = PerThreadNet;

/// A long-lived thread that records into many short-lived registries must not keep the shards
/// of registries that are gone (its binding list would grow by one shard, with its cells, per
/// registry until the thread exits).
#[test]
fn long_lived_thread_does_not_retain_shards_of_dropped_registries() {
    fn one_registry() {
        let registry = manual();
        let c = registry.counter("short_lived_total").build().unwrap();
        let h = registry.histogram("short_lived_values").build().unwrap();
        c.inc();
        h.record(1_000);
        assert_eq!(registry.flush().counter("short_lived_total", &[]), Some(1));
    }
    // Warm up thread-local and std bookkeeping.
    for _ in 0..8 {
        one_registry();
    }
    let before = NET_BYTES.with(|n| n.get());
    for _ in 0..500 {
        one_registry();
    }
    let retained = NET_BYTES.with(|n| n.get()) - before;
    assert!(retained < 64 << 10, "{retained} B retained after 500 dropped registries");
}
