//! Bounded memory under a label explosion: a million distinct label values from several
//! threads stay within the cap; the rest is counted into one overflow series, not dropped.

use shardmetrics::self_metrics;
use shardmetrics::{series::Value, Registry};

fn rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap();
    let pages: u64 = statm.split_whitespace().nth(1).unwrap().parse().unwrap();
    pages * 4096
}

#[test]
fn a_million_distinct_label_values_stay_bounded() {
    const THREADS: usize = 4;
    const PER_THREAD: usize = 250_000;
    let r = Registry::builder().manual().max_series_per_family(10_000).build();
    let fam =
        r.counter("exploding_total").help("One series per request id (a mistake)").family(&["request_id"]).unwrap();
    let before = rss_bytes();
    std::thread::scope(|s| {
        for t in 0..THREADS {
            let fam = &fam;
            s.spawn(move || {
                let mut id = String::new();
                for i in 0..PER_THREAD {
                    id.clear();
                    use std::fmt::Write;
                    write!(id, "{t}-{i}").unwrap();
                    fam.with(&[&id]).inc();
                }
            });
        }
    });
    let snap = r.flush();
    let grown = rss_bytes().saturating_sub(before);
    let series = snap.family("exploding_total");
    assert_eq!(series.len(), 10_001, "10,000 capped series + 1 overflow");
    let total: u64 = series
        .iter()
        .map(|s| match s.value() {
            Value::Counter(c) => c.total,
            _ => unreachable!(),
        })
        .sum();
    assert_eq!(total, (THREADS * PER_THREAD) as u64, "every increment is somewhere");
    let overflow = snap.counter("exploding_total", &[("overflow", "true")]).unwrap();
    assert_eq!(overflow, (THREADS * PER_THREAD - 10_000) as u64);
    assert_eq!(snap.counter(self_metrics::OVERFLOW, &[]), Some(overflow));
    // Stated bound: 10,000 series with their catalogue entries, label strings, family map and
    // per-thread cells fit in 64 MiB (measured: see the closing note); an unbounded map of a
    // million label sets would not.
    eprintln!("RSS growth for 1,000,000 distinct label values: {:.1} MiB", grown as f64 / (1 << 20) as f64);
    assert!(grown < 64 << 20, "RSS grew by {} MiB", grown >> 20);
}

#[test]
fn idle_series_expire_and_restart_from_zero() {
    let r = Registry::builder().manual().expire_after(3).build();
    let fam = r.counter("sessions_total").help("Per-session requests").family(&["session"]).unwrap();
    let h = r.histogram("idle_hist").help("h").build().unwrap();
    let g = r.gauge("static_gauge").help("g").build().unwrap();
    g.set(1.0);
    fam.with(&["a"]).add(5);
    h.record(100);
    h.record(200);
    let snap = r.flush();
    assert_eq!(snap.counter("sessions_total", &[("session", "a")]), Some(5));
    // Three idle ticks: hidden (the third idle tick reaches the limit).
    r.flush();
    assert_eq!(r.flush().counter("sessions_total", &[("session", "a")]), Some(5));
    let snap = r.flush();
    assert_eq!(snap.counter("sessions_total", &[("session", "a")]), None, "expired");
    assert!(snap.histogram("idle_hist", &[]).is_none());
    assert_eq!(snap.gauge("static_gauge", &[]), Some(1.0), "gauges never expire");
    assert!(!shardmetrics::export::prometheus::render(&snap).contains("session=\"a\""));
    // It comes back counting from zero.
    fam.with(&["a"]).add(2);
    h.record(5000);
    let snap = r.flush();
    assert_eq!(snap.counter("sessions_total", &[("session", "a")]), Some(2));
    let hs = snap.histogram("idle_hist", &[]).unwrap();
    assert_eq!((hs.count(), hs.sum()), (1, 5000));
    assert!(hs.min().unwrap() > 4800 && hs.max() == Some(5000));
    // An active series never expires.
    for _ in 0..5 {
        fam.with(&["a"]).inc();
        r.flush();
    }
    assert_eq!(r.flush().counter("sessions_total", &[("session", "a")]), Some(7));
}
