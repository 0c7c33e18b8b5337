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

/// Issue #15's memory goal: at most 200 B per labelled counter series all in (catalogue, label
/// text, label index, both threads' cells, snapshot, window checkpoints) after any number of
/// ticks. This test fails past twice the goal (2026-12-07: ~339 B here with every window
/// level full — the windows are short so that every level fills — and ~291 B after one tick;
/// BENCHMARKS.md "High cardinality" has the 1M figures beside the peers').
const GOAL_BYTES_PER_SERIES: f64 = 200.0;
const CEILING: f64 = 2.0 * GOAL_BYTES_PER_SERIES;

/// What one labelled counter series costs at 200k series after 100 ticks with every series
/// changing, measured in a process of its own (this test re-runs its own binary), so nothing
/// else the harness allocated blurs the figure; and that ticks do not grow it.
#[test]
fn memory_per_series_at_200k_series_over_100_ticks() {
    const N: usize = 200_000;
    const TICKS: usize = 100;
    if std::env::var_os("SM_CARDINALITY_CHILD").is_some() {
        return measure_child(N, TICKS);
    }
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "memory_per_series_at_200k_series_over_100_ticks", "--nocapture", "--test-threads=1"])
        .env("SM_CARDINALITY_CHILD", "1")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "child failed:\n{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    let figure = |key: &str| -> f64 {
        // The harness may print the test's name on the same line.
        let line = stdout.lines().find_map(|l| l.split(key).nth(1)).unwrap_or_else(|| panic!("{key} in {stdout}"));
        line.trim().parse().unwrap()
    };
    let (one, half, after) = (figure("after one tick:"), figure("after half:"), figure("after ticks:"));
    eprintln!(
        "memory per series at {N} series: {one:.0} B after one tick, {half:.0} B after {} more, {after:.0} B after {TICKS}",
        TICKS / 2
    );
    assert!(after <= CEILING, "{after:.0} B per series after {TICKS} ticks (ceiling {CEILING:.0})");
    // Windows are checkpoints: once every level holds its full set (the windows here are short,
    // so that happens within the first half), more ticks add nothing.
    assert!(after - half <= 16.0, "{half:.0} -> {after:.0} B per series over the last {} ticks", TICKS / 2);
}

fn measure_child(n: usize, ticks: usize) {
    const STATUS: [&str; 3] = ["200", "404", "500"];
    let routes: Vec<String> = (0..n).map(|i| format!("/api/v1/route/{i:07}")).collect();
    let base = rss_bytes();
    // Three windows like the defaults (10 s, 1 min, 5 min), short enough that every level of
    // checkpoints is full within the first half of the ticks.
    let windows = [20, 100, 400].map(std::time::Duration::from_millis);
    let r = Registry::builder().manual().windows(&windows).max_series(n + 16).max_series_per_family(n + 16).build();
    let family = r.counter("requests_total").family(&["route", "status"]).unwrap();
    let record = || {
        for (i, route) in routes.iter().enumerate() {
            family.with(&[route, STATUS[i % 3]]).inc();
        }
    };
    record();
    std::thread::scope(|s| {
        s.spawn(record);
    });
    r.flush();
    let one = rss_bytes().saturating_sub(base) as f64 / n as f64;
    let mut half = 0.0;
    for t in 0..ticks {
        if t == ticks / 2 {
            half = rss_bytes().saturating_sub(base) as f64 / n as f64;
            let covered = r.snapshot().window(windows[2]).covered();
            assert!(covered >= windows[2] / 2, "the longest level is filling: {covered:?}");
        }
        record();
        r.flush();
    }
    let snap = r.flush();
    let total: u64 = snap
        .family("requests_total")
        .iter()
        .map(|s| match s.value() {
            Value::Counter(c) => c.total,
            _ => 0,
        })
        .sum();
    assert_eq!(total, (n * (ticks + 2)) as u64, "nothing lost");
    drop(snap);
    let after = rss_bytes().saturating_sub(base) as f64 / n as f64;
    println!("after one tick: {one}");
    println!("after half: {half}");
    println!("after ticks: {after}");
}
