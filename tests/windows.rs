//! Windowed views against hand-computed values.

use std::time::Duration;

use shardmetrics::Registry;

#[test]
fn windows_sum_exactly_the_ticks_they_cover() {
    let r = Registry::builder().manual().windows(&[Duration::from_millis(250), Duration::from_secs(60)]).build();
    let c = r.counter("w_total").build().unwrap();
    let h = r.histogram("w_hist").build().unwrap();

    // Tick 1: 10 increments, values 100 ×4.
    c.add(10);
    for _ in 0..4 {
        h.record(100);
    }
    r.flush();
    std::thread::sleep(Duration::from_millis(300));
    // Tick 2 (300 ms later): 5 increments, values 1000 and 2000.
    c.add(5);
    h.record(1000);
    h.record(2000);
    let snap = r.flush();
    assert_eq!(snap.windows(), &[Duration::from_millis(250), Duration::from_secs(60)]);

    let long = snap.window(Duration::from_secs(60));
    assert_eq!(long.ticks(), 2);
    assert_eq!(long.counter("w_total", &[]).unwrap().increase, 15);
    let lh = long.histogram("w_hist", &[]).unwrap();
    assert_eq!((lh.count(), lh.sum()), (6, 3400));
    assert_eq!(lh.quantile(0.5), Some(100));

    // The short window holds only tick 2.
    let short = snap.window(Duration::from_millis(250));
    assert_eq!(short.ticks(), 1);
    let sc = short.counter("w_total", &[]).unwrap();
    assert_eq!(sc.increase, 5);
    let secs = short.covered().as_secs_f64();
    assert!(secs >= 0.3);
    assert!((sc.rate - 5.0 / secs).abs() < 1e-9);
    let sh = short.histogram("w_hist", &[]).unwrap();
    assert_eq!((sh.count(), sh.sum()), (2, 3000));
    let (min, max) = (sh.min().unwrap(), sh.max().unwrap());
    // Bucket bounds: within one bucket width (1/32 at p = 5) below the smallest value.
    assert!((968..=1000).contains(&min) && max == 2000, "{min} {max}");
    let p50 = sh.quantile(0.5).unwrap();
    assert!((min..=max).contains(&p50));

    // Tick 3: nothing recorded → an empty short window, not the last value.
    std::thread::sleep(Duration::from_millis(300));
    let snap = r.flush();
    let empty = snap.window(Duration::from_millis(250));
    assert_eq!(empty.ticks(), 1);
    assert_eq!(empty.counter("w_total", &[]).unwrap().increase, 0);
    assert_eq!(empty.counter("w_total", &[]).unwrap().rate, 0.0);
    let eh = empty.histogram("w_hist", &[]).unwrap();
    assert_eq!((eh.count(), eh.quantile(0.99), eh.min(), eh.max(), eh.mean()), (0, None, None, None, None));
    // Unknown series are None, not zero.
    assert!(empty.counter("nope_total", &[]).is_none());
    // The long window still has everything.
    assert_eq!(snap.window(Duration::from_secs(60)).counter("w_total", &[]).unwrap().increase, 15);
}

#[test]
fn history_is_bounded_by_the_longest_window() {
    let r = Registry::builder().manual().windows(&[Duration::from_millis(50)]).build();
    let c = r.counter("b_total").build().unwrap();
    for _ in 0..40 {
        c.inc();
        r.flush();
        std::thread::sleep(Duration::from_millis(5));
    }
    let snap = r.flush();
    let w = snap.window(Duration::from_secs(3600));
    // ~50 ms of 5 ms ticks (+1 straddling), not 41.
    assert!(w.ticks() <= 15, "kept {} ticks", w.ticks());
    assert!(w.counter("b_total", &[]).unwrap().increase <= 15);
}

/// Windows come from checkpoints about a quarter window apart (`shardmetrics::window::SLOTS`),
/// not from every tick: each answer must still be the exact sum over the ticks it reports
/// covering, and the span it covers must be within W/8 plus one tick of the length asked for.
#[test]
fn checkpointed_windows_are_exact_for_the_span_they_cover() {
    let (short, long) = (Duration::from_millis(100), Duration::from_millis(400));
    let r = Registry::builder().manual().windows(&[short, long]).build();
    let c = r.counter("cp_total").build().unwrap();
    let h = r.histogram("cp_hist").build().unwrap();
    // Per tick: its interval, the counter's increase, the histogram's count and sum.
    let mut ticks: Vec<(Duration, u64, u64, u64)> = Vec::new();
    let mut checked = 0;
    for i in 0..160u64 {
        let inc = (i * 7919) % 13 + if i % 37 == 0 { 1 << 40 } else { 0 };
        c.add(inc);
        let values: Vec<u64> = (0..i % 4).map(|k| 1000 + 250 * k + i).collect();
        for &v in &values {
            h.record(v);
        }
        let snap = r.flush();
        ticks.push((snap.interval(), inc, values.len() as u64, values.iter().sum()));
        std::thread::sleep(Duration::from_millis(2 + i % 5));
        let elapsed: Duration = ticks.iter().map(|t| t.0).sum();
        for (len, w) in
            [(short, short), (long, long), (Duration::from_millis(250), long), (Duration::from_secs(9), long)]
        {
            // The ticks the window reports, by seq: tick index k (into `ticks`) is seq k + 1,
            // so seqs `start..end` cover the ticks `start..end`.
            let check = |win: shardmetrics::window::Window<'_>| {
                let seqs = win.seqs();
                assert_eq!((seqs.end - seqs.start) as usize, win.ticks(), "tick {i}, {len:?}");
                let span = &ticks[seqs.start as usize..seqs.end as usize];
                let what = format!("tick {i}, {len:?}, seqs {seqs:?}");
                assert_eq!(span.iter().map(|t| t.0).sum::<Duration>(), win.covered(), "{what}");
                let wc = win.counter("cp_total", &[]).unwrap();
                assert_eq!(wc.increase, span.iter().map(|t| t.1).sum::<u64>(), "{what}");
                let wh = win.histogram("cp_hist", &[]).unwrap();
                assert_eq!(wh.count(), span.iter().map(|t| t.2).sum::<u64>(), "{what}");
                assert_eq!(wh.sum(), span.iter().map(|t| t.3).sum::<u64>(), "{what}");
                if win.ticks() > 0 {
                    assert!(wh.count() == 0 || wh.quantile(0.5).is_some());
                }
            };
            let win = snap.window(len);
            assert_eq!(win.seqs().end, snap.seq(), "a window ends at the snapshot's tick");
            check(win);
            let max_tick = ticks.iter().map(|t| t.0).max().unwrap();
            let served = len.min(long);
            let slack = w / 8 + max_tick;
            if elapsed > 2 * w + slack {
                assert!(win.covered().abs_diff(served) <= slack, "tick {i}: {len:?} covers {:?}", win.covered());
                // The window before: ends about `served` before this tick, where `win` starts
                // give or take the checkpoint spacing.
                let before = snap.window_before(served);
                let age: Duration = ticks[before.seqs().end as usize..].iter().map(|t| t.0).sum();
                assert!(age.abs_diff(served) <= slack, "tick {i}: the window before {served:?} ends {age:?} ago");
                check(before);
                checked += 1;
            }
        }
    }
    assert!(checked > 50, "checked {checked} windows after warm-up");
}
