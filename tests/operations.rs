//! Operations, caches, state sets and trends, against hand-computed values.

use std::time::Duration;

use shardmetrics::{
    trend::{Direction, TrendConfig},
    Registry,
};

#[test]
fn operation_stats() {
    let r = Registry::builder().manual().build();
    let op = r.operation("db_query").help("Database queries").label("table", "users").build().unwrap();
    for ms in [1u64, 2, 3, 4] {
        op.record(Duration::from_millis(ms), true);
    }
    op.record(Duration::from_millis(10), false);
    let v: Result<u32, &str> = op.time_result(|| Err("boom"));
    assert!(v.is_err());
    assert_eq!(op.time(|| 7), 7);
    op.start().fail();
    {
        let _ok = op.start();
    }
    let snap = r.flush();
    let s = snap.operation("db_query", &[("table", "users")]).unwrap();
    assert_eq!(s.count, 9);
    assert_eq!(s.errors, 3);
    assert!((s.error_rate.unwrap() - 3.0 / 9.0).abs() < 1e-12);
    assert!((s.success_rate.unwrap() - 6.0 / 9.0).abs() < 1e-12);
    assert!(s.total_time >= Duration::from_millis(20));
    assert!(s.max.unwrap() >= 10_000_000);
    let p50 = s.p50.unwrap();
    assert!(p50 <= 4_100_000, "{p50}");
    assert!(s.stddev.unwrap() > 0.0);
    let ops: Vec<_> =
        snap.operations().map(|(n, l, st)| (n.to_owned(), l.get("table").map(str::to_owned), st.count)).collect();
    assert_eq!(ops, vec![("db_query".to_owned(), Some("users".to_owned()), 9)]);
    let json: serde_json::Value =
        serde_json::from_str(&shardmetrics::export::json::render_window(&snap, Duration::from_secs(60))).unwrap();
    let o = &json["operations"][0];
    assert_eq!((o["name"].as_str(), o["labels"]["table"].as_str()), (Some("db_query"), Some("users")));
    assert_eq!((o["stats"]["count"].as_u64(), o["stats"]["errors"].as_u64()), (Some(9), Some(3)));
    assert_eq!(o["window"]["count"].as_u64(), Some(9));
    // The parts are ordinary series, so every exporter carries them.
    let text = shardmetrics::export::prometheus::render(&snap);
    assert!(text.contains("db_query_calls_total{table=\"users\"} 9"), "{text}");
    assert!(text.contains("db_query_errors_total{table=\"users\"} 3"));
    assert!(text.contains("db_query_duration_seconds_count{table=\"users\"} 9"));
}

#[test]
fn min_duration_skips_fast_timings_but_counts_calls() {
    let r = Registry::builder().manual().build();
    let op = r.operation("fast").min_duration(Duration::from_millis(1)).build().unwrap();
    op.record(Duration::from_micros(10), true);
    op.record(Duration::from_millis(5), true);
    let s = r.flush().operation("fast", &[]).unwrap();
    assert_eq!(s.count, 2);
    assert_eq!(s.min, s.max, "only the 5 ms timing was recorded");
}

#[test]
fn cache_hit_rate() {
    let r = Registry::builder().manual().build();
    let c = r.cache("users_cache", "User cache").unwrap();
    assert_eq!(r.flush().cache("users_cache", &[]).unwrap().hit_rate, None);
    for _ in 0..3 {
        c.hit();
    }
    c.miss();
    c.evict(2);
    c.set_size(40);
    let s = r.flush().cache("users_cache", &[]).unwrap();
    assert_eq!((s.hits, s.misses, s.evictions, s.size), (3, 1, 2, 40.0));
    assert_eq!(s.hit_rate, Some(0.75));
}

#[test]
fn state_set_transitions_and_time_in_state() {
    let r = Registry::builder().manual().build();
    let b = r.state_set("breaker", &["closed", "open", "half_open"], "Circuit breaker").unwrap();
    assert_eq!(b.state(), "closed");
    assert!(!b.set("exploded"));
    std::thread::sleep(Duration::from_millis(20));
    assert!(b.set("open"));
    assert!(b.set("open"), "same state again is a no-op");
    assert!(b.set("half_open"));
    assert!(b.set("closed"));
    let snap = r.flush();
    assert_eq!(snap.gauge("breaker", &[("breaker", "closed")]), Some(1.0));
    assert_eq!(snap.gauge("breaker", &[("breaker", "open")]), Some(0.0));
    assert_eq!(snap.counter("breaker_transitions_total", &[("from", "closed"), ("to", "open")]), Some(1));
    assert_eq!(snap.counter("breaker_transitions_total", &[("from", "half_open"), ("to", "closed")]), Some(1));
    let closed_ns = snap.counter("breaker_state_seconds_total", &[("state", "closed")]).unwrap();
    assert!(closed_ns >= 20_000_000, "{closed_ns}");
    let text = shardmetrics::export::prometheus::render(&snap);
    // Time in state is exported in seconds.
    let line = text.lines().find(|l| l.starts_with("breaker_state_seconds_total{state=\"closed\"}")).unwrap();
    let secs: f64 = line.rsplit(' ').next().unwrap().parse().unwrap();
    assert!((0.02..10.0).contains(&secs), "{line}");
}

/// Transitions from many threads at once: whatever the interleaving, once they stop exactly one
/// state is active and it is `state()`; the transitions form one path (into − out of each state
/// = [current] − [initial]); and the time credited to states adds up to no more than the time
/// that passed, with no state's time lost (the sum covers the span up to the last transition).
#[test]
fn state_set_concurrent_transitions_stay_consistent() {
    const STATES: [&str; 4] = ["a", "b", "c", "d"];
    for round in 0..20 {
        let r = Registry::builder().manual().build();
        let name = "st";
        let start = std::time::Instant::now();
        let set = r.state_set(name, &STATES, "concurrent transitions").unwrap();
        std::thread::scope(|s| {
            for t in 0..4usize {
                let set = set.clone();
                s.spawn(move || {
                    let mut x = (round * 7 + t * 13 + 1) as u64;
                    for _ in 0..2_000 {
                        x ^= x << 13;
                        x ^= x >> 7;
                        x ^= x << 17;
                        assert!(set.set(STATES[(x % 4) as usize]));
                    }
                });
            }
        });
        let elapsed = start.elapsed().as_nanos() as u64;
        let snap = r.flush();
        let active: Vec<&str> =
            STATES.iter().copied().filter(|s| snap.gauge(name, &[(name, s)]) == Some(1.0)).collect();
        assert_eq!(active, [set.state()], "round {round}: exactly the current state is active");
        for s in STATES {
            let into: u64 =
                STATES.iter().filter_map(|f| snap.counter("st_transitions_total", &[("from", f), ("to", s)])).sum();
            let out: u64 =
                STATES.iter().filter_map(|t| snap.counter("st_transitions_total", &[("from", s), ("to", t)])).sum();
            let expected = i64::from(s == set.state()) - i64::from(s == "a");
            assert_eq!(into as i64 - out as i64, expected, "round {round}: flow through {s}");
        }
        let credited: u64 = STATES.iter().filter_map(|s| snap.counter("st_state_seconds_total", &[("state", s)])).sum();
        assert!(credited <= elapsed, "round {round}: {credited} ns credited in {elapsed} ns");
    }
}

#[test]
fn trends_and_anomalies() {
    let w = Duration::from_secs(1);
    let r = Registry::builder().manual().windows(&[w, Duration::from_secs(10)]).build();
    let op = r.operation("api").build().unwrap();
    let cfg = TrendConfig { window: w, tolerance: 0.1, baseline: Duration::from_secs(10), anomaly_factor: 3.0 };
    // Previous window: 1 ms calls.
    for _ in 0..1000 {
        op.record(Duration::from_millis(1), true);
    }
    r.flush();
    std::thread::sleep(Duration::from_millis(1100));
    // Latest window: the same → stable.
    for _ in 0..1000 {
        op.record(Duration::from_millis(1), true);
    }
    let t = r.flush().trend("api", &[], &cfg).unwrap();
    assert_eq!(t.direction, Direction::Stable, "{t:?}");
    assert!(!t.anomaly);
    std::thread::sleep(Duration::from_millis(1100));
    // Latest window: a few 10 ms calls → degrading, and p99 beyond 3× the 10 s baseline's
    // (where they are under 1 % of the calls).
    for _ in 0..10 {
        op.record(Duration::from_millis(10), true);
    }
    let t = r.flush().trend("api", &[], &cfg).unwrap();
    assert_eq!(t.direction, Direction::Degrading, "{t:?}");
    assert!(t.mean_change.unwrap() > 5.0);
    assert!(t.anomaly, "{t:?}");
    std::thread::sleep(Duration::from_millis(1100));
    for _ in 0..100 {
        op.record(Duration::from_millis(1), true);
    }
    let t = r.flush().trend("api", &[], &cfg).unwrap();
    assert_eq!(t.direction, Direction::Improving, "{t:?}");
    // A window with no calls: no data, stable, counts 0.
    std::thread::sleep(Duration::from_millis(1100));
    let t = r.flush().trend("api", &[], &cfg).unwrap();
    assert_eq!(t.latest.count, 0);
    assert_eq!(t.latest.p99, None);
    assert_eq!(t.direction, Direction::Stable);
}
