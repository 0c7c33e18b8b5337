//! Alert rules end to end: through a real registry, its observer hook, the notifier thread and
//! the exports.

use std::{
    sync::{
        atomic::{AtomicBool, AtomicUsize, Ordering},
        mpsc, Arc,
    },
    time::{Duration, Instant},
};

use shardmetrics::{
    alert::{AlertState, Alerts, Notification, NotificationKind, Rule},
    Registry, Unit,
};

const WAIT: Duration = Duration::from_secs(5);

fn notified(alerts: Alerts) -> (Alerts, mpsc::Receiver<Notification>) {
    let (tx, rx) = mpsc::channel();
    (alerts.on_notify(move |n| drop(tx.send(n.clone()))), rx)
}

fn next(rx: &mpsc::Receiver<Notification>) -> Notification {
    rx.recv_timeout(WAIT).expect("a notification within 5 s")
}

/// Nothing more arrives (the notifier is given a moment to deliver stragglers).
fn quiet(rx: &mpsc::Receiver<Notification>) {
    if let Ok(n) = rx.recv_timeout(Duration::from_millis(200)) {
        panic!("unexpected notification: {n}");
    }
}

fn state(snap: &shardmetrics::Snapshot, rule: &str) -> Option<f64> {
    snap.gauge("shardmetrics_alert_state", &[("rule", rule)])
}

fn sent(snap: &shardmetrics::Snapshot, rule: &str, kind: &str) -> u64 {
    snap.counter("shardmetrics_alert_notifications_total", &[("rule", rule), ("kind", kind)]).unwrap_or(0)
}

#[test]
fn fires_on_the_nth_breaching_tick_not_one_earlier() {
    let registry = Registry::builder().manual().build();
    let db = registry.operation("db_query").build().unwrap();
    let (alerts, rx) =
        notified(Alerts::new().rule(Rule::new("db_slow", "p99(db_query) > 50ms").unwrap().for_ticks(3)).unwrap());
    alerts.install(&registry).unwrap();

    // Below the threshold: nothing, however many ticks.
    db.record(Duration::from_millis(20), true);
    for _ in 0..4 {
        registry.flush();
    }
    // Above it from now on (the cumulative p99 of 1 fast + 99 slow calls is slow).
    for _ in 0..99 {
        db.record(Duration::from_millis(80), true);
    }
    let first_breach = registry.flush().seq();
    let mut states = Vec::new();
    for _ in 0..4 {
        states.push(state(&registry.flush(), "db_slow").unwrap());
    }
    // The gauge set while evaluating tick k shows in snapshot k+1: the breach started at
    // `first_breach`, so ticks first_breach and +1 are pending and +2 fires.
    assert_eq!(states, [0.0, 0.0, 1.0, 1.0]);
    let n = next(&rx);
    assert_eq!(n.kind, NotificationKind::Fired);
    assert_eq!(n.seq, first_breach + 2, "fired on the third breaching tick");
    assert_eq!((n.state, n.previous), (AlertState::Warning, AlertState::Ok));
    assert_eq!(n.threshold, Some(0.05));
    let v = n.value.unwrap();
    assert!((0.078..=0.082).contains(&v), "p99 in seconds: {v}");
    assert!(n.to_string().starts_with("[WARNING] db_slow fired: p99(db_query) > 50ms (value 8"), "{n}");
    quiet(&rx);
}

#[test]
fn for_a_duration_waits_that_long_of_continuous_breach() {
    let registry = Registry::builder().manual().build();
    let g = registry.gauge("queue_depth").build().unwrap();
    let (alerts, rx) = notified(
        Alerts::new()
            .rule(Rule::new("backlog", "queue_depth > 100").unwrap().for_duration(Duration::from_millis(300)))
            .unwrap(),
    );
    alerts.install(&registry).unwrap();
    g.set(500.0);
    let t0 = Instant::now();
    registry.flush(); // first breach
    std::thread::sleep(Duration::from_millis(100));
    registry.flush();
    assert!(t0.elapsed() < Duration::from_millis(290), "the machine stalled; the test cannot judge");
    assert_eq!(state(&registry.flush(), "backlog"), Some(0.0));
    std::thread::sleep(Duration::from_millis(350).saturating_sub(t0.elapsed()));
    let fired_at = registry.flush().seq();
    assert_eq!(state(&registry.flush(), "backlog"), Some(1.0));
    let n = next(&rx);
    assert_eq!((n.kind, n.seq), (NotificationKind::Fired, fired_at));
    quiet(&rx);
}

#[test]
fn resolves_and_says_so() {
    let registry = Registry::builder().manual().build();
    let mem = registry.gauge("rss").unit(Unit::Bytes).build().unwrap();
    let (alerts, rx) = notified(
        Alerts::new()
            .rule(Rule::new("mem", "rss > 2GiB").unwrap().target("1GiB").unwrap().description("too big"))
            .unwrap(),
    );
    alerts.install(&registry).unwrap();
    mem.set(3.0 * (1u64 << 30) as f64);
    registry.flush();
    mem.set(1.5 * (1u64 << 30) as f64);
    let resolved_at = registry.flush().seq();
    let snap = registry.flush();
    assert_eq!(state(&snap, "mem"), Some(0.0));
    assert_eq!(snap.gauge("shardmetrics_alert_value", &[("rule", "mem")]), Some(1.5 * (1u64 << 30) as f64));
    let fired = next(&rx);
    assert_eq!(fired.kind, NotificationKind::Fired);
    assert_eq!(
        fired.to_string(),
        "[WARNING] mem fired: rss > 2GiB (value 3GiB, threshold 2GiB, target 1GiB) — too big"
    );
    let r = next(&rx);
    assert_eq!(r.kind, NotificationKind::Resolved);
    assert_eq!((r.state, r.previous, r.seq), (AlertState::Ok, AlertState::Warning, resolved_at));
    assert_eq!(r.threshold, Some(2.0 * (1u64 << 30) as f64));
    assert!(r.to_string().starts_with("[RESOLVED] mem resolved (was warning)"), "{r}");
    assert_eq!((sent(&snap, "mem", "fired"), sent(&snap, "mem", "resolved")), (1, 1));
    quiet(&rx);
}

#[test]
fn escalates_warning_to_critical_and_back() {
    let registry = Registry::builder().manual().build();
    let lat = registry.gauge("latency").unit(Unit::Seconds).build().unwrap();
    let (alerts, rx) = notified(
        Alerts::new()
            .rule(Rule::new("lat", "latency > 50ms").unwrap().critical("200ms").unwrap().for_ticks(2))
            .unwrap(),
    );
    alerts.install(&registry).unwrap();
    let mut states = Vec::new();
    // warning, warning, critical, critical, critical, warning, ok
    for v in [0.08, 0.08, 0.3, 0.3, 0.3, 0.1, 0.0, 0.0] {
        lat.set(v);
        states.push(state(&registry.flush(), "lat").unwrap());
    }
    // Shifted by one tick (the gauge shows the previous evaluation); `for 2 ticks` delays each
    // raise by one more: warning from the 2nd tick at 80 ms, critical from the 2nd at 300 ms.
    // The drops are immediate.
    assert_eq!(states, [0.0, 0.0, 1.0, 1.0, 2.0, 2.0, 1.0, 0.0]);
    let got: Vec<(NotificationKind, AlertState, AlertState)> =
        (0..4).map(|_| next(&rx)).map(|n| (n.kind, n.previous, n.state)).collect();
    assert_eq!(
        got,
        [
            (NotificationKind::Fired, AlertState::Ok, AlertState::Warning),
            (NotificationKind::Escalated, AlertState::Warning, AlertState::Critical),
            (NotificationKind::Deescalated, AlertState::Critical, AlertState::Warning),
            (NotificationKind::Resolved, AlertState::Warning, AlertState::Ok),
        ]
    );
    quiet(&rx);
}

#[test]
fn cooldown_silences_flapping_but_not_the_state() {
    let registry = Registry::builder().manual().build();
    let g = registry.gauge("errors_in_flight").build().unwrap();
    let (alerts, rx) = notified(
        Alerts::new()
            .rule(Rule::new("flap", "errors_in_flight > 10").unwrap().cooldown(Duration::from_millis(400)))
            .unwrap(),
    );
    alerts.install(&registry).unwrap();
    let t0 = Instant::now();
    let mut states = Vec::new();
    for v in [20.0, 0.0, 20.0, 0.0, 20.0] {
        g.set(v);
        states.push(state(&registry.flush(), "flap").unwrap());
    }
    assert!(t0.elapsed() < Duration::from_millis(350), "the machine stalled; the test cannot judge");
    let snap = registry.flush();
    states.push(state(&snap, "flap").unwrap());
    // The state follows the data on every tick …
    assert_eq!(states, [0.0, 1.0, 0.0, 1.0, 0.0, 1.0]);
    // … but within the cooldown only the first raise and its resolution were notified.
    assert_eq!(next(&rx).kind, NotificationKind::Fired);
    assert_eq!(next(&rx).kind, NotificationKind::Resolved);
    quiet(&rx);
    assert_eq!(sent(&snap, "flap", "fired"), 1);
    // Still raised when the cooldown is over: notified then.
    std::thread::sleep(Duration::from_millis(430).saturating_sub(t0.elapsed()));
    let at = registry.flush().seq();
    let n = next(&rx);
    assert_eq!((n.kind, n.seq), (NotificationKind::Fired, at));
    quiet(&rx);
}

#[cfg(feature = "json")]
#[test]
fn state_metric_is_in_every_export() {
    let registry = Registry::builder().manual().build();
    let g = registry.gauge("temp").build().unwrap();
    Alerts::new()
        .rule(Rule::new("hot", "temp > 90").unwrap().severity(shardmetrics::alert::Severity::Critical))
        .unwrap()
        .install(&registry)
        .unwrap();
    g.set(95.0);
    registry.flush();
    let snap = registry.flush();
    let prom = shardmetrics::export::prometheus::render(&snap);
    assert!(prom.contains("shardmetrics_alert_state{rule=\"hot\"} 2\n"), "{prom}");
    assert!(prom.contains("shardmetrics_alert_value{rule=\"hot\"} 95\n"), "{prom}");
    let json: serde_json::Value = serde_json::from_str(&shardmetrics::export::json::render(&snap)).unwrap();
    let series = find_series(&json, "shardmetrics_alert_state", "hot").expect("the alert state series in JSON");
    assert_eq!(series["value"], 2.0);
}

#[cfg(feature = "json")]
/// The JSON series object with this name and `rule` label, wherever the render nests it.
fn find_series<'a>(v: &'a serde_json::Value, name: &str, rule: &str) -> Option<&'a serde_json::Value> {
    match v {
        serde_json::Value::Object(o) if o.get("name").and_then(|n| n.as_str()) == Some(name) => {
            (v["labels"]["rule"] == rule).then_some(v)
        }
        serde_json::Value::Object(o) => o.values().find_map(|x| find_series(x, name, rule)),
        serde_json::Value::Array(a) => a.iter().find_map(|x| find_series(x, name, rule)),
        _ => None,
    }
}

#[test]
fn stats_read_what_the_snapshot_says() {
    let registry = Registry::builder().manual().windows(&[Duration::from_secs(60)]).build();
    let api = registry.operation("api").build().unwrap();
    let cache = registry.cache("users", "user cache").unwrap();
    let reqs = registry.counter("reqs_total").build().unwrap();
    let h = registry.histogram("payload").unit(Unit::Bytes).build().unwrap();
    let rules = [
        ("err", "error_rate(api)[1m] > 20%", 0.3),
        ("ok", "success_rate(api) < 90%", 0.7),
        ("calls", "count(api)[1m] >= 10", 10.0),
        ("slowest", "max(api) > 1s", 2.0),
        ("fastest", "min(api)[1m] < 2ms", 0.001),
        ("hits", "hit_rate(users)[1m] < 80%", 0.75),
        ("hits_all", "hit_rate(users) < 80%", 0.75),
        ("inc", "increase(reqs_total)[1m] > 100", 250.0),
        ("total", "reqs_total > 100", 250.0),
        ("big", "max(payload) > 1KiB", 4096.0),
        ("mean", "mean(payload) > 1KiB", 2560.0),
    ];
    let mut alerts = Alerts::new();
    for (name, expr, _) in rules {
        alerts.add(Rule::new(name, expr).unwrap()).unwrap();
    }
    alerts.install(&registry).unwrap();
    for i in 0..10 {
        let d = if i == 0 { Duration::from_millis(1) } else { Duration::from_secs(2) };
        api.record(d, i >= 3);
    }
    cache.hit();
    cache.hit();
    cache.hit();
    cache.miss();
    reqs.add(250);
    h.record(1024);
    h.record(4096);
    registry.flush();
    let snap = registry.flush();
    for (name, expr, want) in rules {
        let v = snap.gauge("shardmetrics_alert_value", &[("rule", name)]).unwrap();
        let ok = (v - want).abs() <= want * 0.016;
        assert!(ok, "{name} = `{expr}`: value {v}, want {want}");
        assert_eq!(state(&snap, name), Some(1.0), "{name} = `{expr}` should fire with {v}");
    }
    // Throughput and rate depend on the tick length; check them against the snapshot itself.
    let registry2 = Registry::builder().manual().build();
    let c = registry2.counter("n_total").build().unwrap();
    Alerts::new().rule(Rule::new("rate", "rate(n_total) > 0").unwrap()).unwrap().install(&registry2).unwrap();
    registry2.flush();
    c.add(1000);
    let s1 = registry2.flush();
    let s2 = registry2.flush();
    let want = s1.counter_value("n_total", &[]).unwrap().rate;
    assert!(want > 0.0);
    assert_eq!(s2.gauge("shardmetrics_alert_value", &[("rule", "rate")]), Some(want));
}

#[test]
fn rules_that_do_not_fit_their_metrics_say_why_once() {
    let registry = Registry::builder().manual().windows(&[Duration::from_secs(10)]).build();
    let g = registry.gauge("depth").build().unwrap();
    let mem = registry.gauge("mem").unit(Unit::Bytes).build().unwrap();
    let (alerts, rx) = notified(
        Alerts::new()
            .rule(Rule::new("p99_of_gauge", "p99(depth) > 3").unwrap())
            .unwrap()
            .rule(Rule::new("units", "mem > 50ms").unwrap())
            .unwrap()
            .rule(Rule::new("long", "rate(depth_total)[1h] > 3").unwrap())
            .unwrap()
            .rule(Rule::new("missing", "p99(not_there) > 3").unwrap())
            .unwrap(),
    );
    alerts.install(&registry).unwrap();
    g.set(100.0);
    mem.set(1e9);
    for _ in 0..3 {
        registry.flush();
    }
    let mut why: Vec<(String, String)> = (0..3)
        .map(|_| next(&rx))
        .map(|n| match n.kind {
            NotificationKind::Invalid(w) => (n.rule.to_string(), w),
            k => panic!("{k:?}"),
        })
        .collect();
    why.sort();
    assert_eq!(why[0].0, "long");
    assert!(why[0].1.contains("window [1h] is longer than the registry keeps (10s)"), "{}", why[0].1);
    assert_eq!(why[1].0, "p99_of_gauge");
    assert!(why[1].1.contains("p99() needs a histogram or an operation, and `depth` is a gauge"), "{}", why[1].1);
    assert_eq!(why[2].0, "units");
    assert!(why[2].1.contains("the thresholds are a duration but value(mem) is a byte size"), "{}", why[2].1);
    // Once each, and none of them fires; a missing metric is just "no data".
    quiet(&rx);
    let snap = registry.flush();
    for r in ["p99_of_gauge", "units", "long", "missing"] {
        assert_eq!(state(&snap, r), Some(0.0), "{r}");
    }
}

#[test]
fn a_slow_callback_never_delays_snapshots() {
    let registry = Registry::builder().interval(Duration::from_millis(10)).build();
    let g = registry.gauge("flappy").build().unwrap();
    let in_callback = Arc::new(AtomicBool::new(false));
    let calls = Arc::new(AtomicUsize::new(0));
    let (flag, count) = (in_callback.clone(), calls.clone());
    Alerts::new()
        .rule(Rule::new("flap", "flappy > 0").unwrap())
        .unwrap()
        .on_notify(move |_| {
            flag.store(true, Ordering::SeqCst);
            count.fetch_add(1, Ordering::SeqCst);
            std::thread::sleep(Duration::from_millis(500));
        })
        .install(&registry)
        .unwrap();
    // Flap on every tick so there is always something to notify.
    let stop = Arc::new(AtomicBool::new(false));
    let flapper = {
        let (g, stop) = (g.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut v = 1.0;
            while !stop.load(Ordering::Relaxed) {
                g.set(v);
                v = 1.0 - v;
                std::thread::sleep(Duration::from_millis(10));
            }
        })
    };
    let t0 = Instant::now();
    while !in_callback.load(Ordering::SeqCst) {
        assert!(t0.elapsed() < WAIT, "the callback never ran");
        std::thread::sleep(Duration::from_millis(1));
    }
    // The callback is now asleep for 500 ms. Ticks and flushes go on meanwhile.
    let seq0 = registry.snapshot().seq();
    let mut slowest = Duration::ZERO;
    let t1 = Instant::now();
    for _ in 0..20 {
        let t = Instant::now();
        registry.flush();
        slowest = slowest.max(t.elapsed());
        std::thread::sleep(Duration::from_millis(10));
    }
    let spent = t1.elapsed();
    let ticks = registry.snapshot().seq() - seq0;
    stop.store(true, Ordering::Relaxed);
    flapper.join().unwrap();
    println!("with a 500 ms callback asleep: {ticks} ticks in {spent:?}, slowest flush {slowest:?}");
    assert!(calls.load(Ordering::SeqCst) <= 2, "the callback ran while we measured: this measured nothing");
    assert!(slowest < Duration::from_millis(100), "a flush waited for the callback: {slowest:?}");
    // 20 flushes plus background ticks every 10 ms.
    assert!(ticks >= 20, "only {ticks} ticks in {spent:?}");
}

#[test]
fn a_full_queue_drops_and_counts_instead_of_blocking() {
    let registry = Registry::builder().manual().build();
    let g = registry.gauge("x").build().unwrap();
    let (release_tx, release_rx) = mpsc::channel::<()>();
    let release_rx = std::sync::Mutex::new(release_rx);
    let delivered = Arc::new(AtomicUsize::new(0));
    let d = delivered.clone();
    Alerts::new()
        .rule(Rule::new("x", "x > 0").unwrap())
        .unwrap()
        .queue_capacity(1)
        .on_notify(move |_| {
            d.fetch_add(1, Ordering::SeqCst);
            let _ = release_rx.lock().unwrap().recv_timeout(WAIT);
        })
        .install(&registry)
        .unwrap();
    let t0 = Instant::now();
    for i in 0..8 {
        g.set(f64::from(i % 2 == 0));
        registry.flush();
    }
    assert!(t0.elapsed() < Duration::from_secs(1), "flushes blocked on the queue");
    let snap = registry.flush();
    let dropped = snap.counter("shardmetrics_alert_notifications_dropped_total", &[]).unwrap();
    let queued = sent(&snap, "x", "fired") + sent(&snap, "x", "resolved");
    assert_eq!(dropped + queued, 8, "every notification is queued or counted as dropped");
    assert!(dropped >= 6, "queue of 1 + one in the callback, got {dropped} dropped");
    drop(release_tx);
    let t = Instant::now();
    while delivered.load(Ordering::SeqCst) < queued as usize {
        assert!(t.elapsed() < WAIT);
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn the_notifier_thread_ends_with_its_registry() {
    let token = Arc::new(());
    let held = token.clone();
    let registry = Registry::builder().interval(Duration::from_millis(10)).build();
    Alerts::new()
        .rule(Rule::new("never", "nothing > 1").unwrap())
        .unwrap()
        .on_notify(move |_| {
            let _ = &held;
        })
        .install(&registry)
        .unwrap();
    registry.flush();
    assert_eq!(Arc::strong_count(&token), 2);
    drop(registry);
    // The callback (and the token it holds) is dropped when the notifier thread ends.
    let t = Instant::now();
    while Arc::strong_count(&token) > 1 {
        assert!(t.elapsed() < WAIT, "the notifier thread outlived its registry");
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[cfg(any(feature = "alerts-toml", feature = "json"))]
const GOOD_TOML: &str = r#"
[[rule]]
name = "db_slow"
expr = "p99(db_query)[1m] > 50ms"
critical = "200ms"
for = "2 ticks"
cooldown = "5m"
description = "database latency"

[[rule]]
name = "api_errors"
expr = "error_rate(api)[1m] > 5%"
severity = "critical"
for = 1
"#;

#[cfg(feature = "alerts-toml")]
#[test]
fn rules_load_from_toml_and_fire() {
    let alerts = Alerts::from_toml_str(GOOD_TOML).unwrap();
    let names: Vec<&str> = alerts.rules().map(|r| r.name()).collect();
    assert_eq!(names, ["db_slow", "api_errors"]);
    let db_slow = alerts.rules().next().unwrap();
    assert_eq!(db_slow.get_cooldown(), Duration::from_secs(300));
    let registry = Registry::builder().manual().build();
    let db = registry.operation("db_query").build().unwrap();
    let api = registry.operation("api").build().unwrap();
    let (alerts, rx) = notified(alerts);
    alerts.install(&registry).unwrap();
    db.record(Duration::from_millis(300), true);
    api.record(Duration::from_millis(1), false);
    registry.flush();
    registry.flush();
    let snap = registry.flush();
    assert_eq!(state(&snap, "db_slow"), Some(2.0));
    assert_eq!(state(&snap, "api_errors"), Some(2.0));
    let mut got: Vec<(String, AlertState)> = (0..2).map(|_| next(&rx)).map(|n| (n.rule.to_string(), n.state)).collect();
    got.sort();
    assert_eq!(got, [("api_errors".into(), AlertState::Critical), ("db_slow".into(), AlertState::Critical)]);
}

#[cfg(feature = "alerts-toml")]
#[test]
fn toml_errors_point_at_the_rule_and_field() {
    let cases: &[(&str, &str)] = &[
        (
            "[[rule]]\nname = \"a\"\nexpr = \"p99(x) > 1ms\"\n[[rule]]\nname = \"b\"\nexpr = \"p98(x) > 1ms\"\n",
            "alert rules, rule #2 (\"b\"), field `expr`: unknown stat `p98`",
        ),
        (
            "[[rule]]\nname = \"a\"\nexpr = \"p99(x) > 50xs\"\n",
            "alert rules, rule #1 (\"a\"), field `expr`: unknown unit `xs`",
        ),
        (
            "[[rule]]\nname = \"a\"\nexpr = \"p99(x) > 5ms\"\ncritical = \"1ms\"\n",
            "field `critical`: critical threshold 1ms is below",
        ),
        (
            "[[rule]]\nname = \"a\"\nexpr = \"p99(x) > 5ms\"\ncritical = \"lots\"\n",
            "field `critical`: expected a number",
        ),
        ("[[rule]]\nname = \"a\"\nexpr = \"p99(x) > 5ms\"\nfor = \"3 tiks\"\n", "field `for`: bad duration \"3 tiks\""),
        (
            "[[rule]]\nname = \"a\"\nexpr = \"p99(x) > 5ms\"\ncooldown = \"soon\"\n",
            "field `cooldown`: bad duration \"soon\"",
        ),
        ("[[rule]]\nname = \"a\"\nexpr = \"p99(x) > 5ms\"\ncritcal = \"9ms\"\n", "field `critcal`: unknown field"),
        ("[[rule]]\nexpr = \"p99(x) > 5ms\"\n", "rule #1, field `name`: missing"),
        ("[[rule]]\nname = \"a\"\n", "field `expr`: missing"),
        ("[[rule]]\nname = \"a\"\nexpr = \"p99(x) > 5ms\"\nseverity = \"fatal\"\n", "unknown severity \"fatal\""),
        ("[[rule]]\nname = \"a\"\nexpr = 5\n", "field `expr`: expected a string, found an integer"),
        (
            "[[rule]]\nname = \"a\"\nexpr = \"x > 1\"\n[[rule]]\nname = \"a\"\nexpr = \"y > 1\"\n",
            "rule #2 (\"a\"), field `name`: another rule has this name",
        ),
        ("[[rule]\nname = 1", "invalid TOML"),
        ("[alerts]\nx = 1\n", "unknown top-level key \"alerts\""),
    ];
    for (text, want) in cases {
        let e = Alerts::from_toml_str(text).expect_err(text).to_string();
        assert!(e.contains(want), "for\n{text}\ngot:  {e}\nwant: {want}");
    }
}

#[cfg(feature = "json")]
#[test]
fn json_rules_and_errors() {
    let ok = r#"{"rules": [
        {"name": "mem", "expr": "process_resident_memory_bytes > 2GiB", "for": "30s"},
        {"name": "hits", "expr": "hit_rate(users)[5m]", "warning": "< 80%", "critical": "< 50%"}
    ]}"#;
    let alerts = Alerts::from_json_str(ok).unwrap();
    assert_eq!(alerts.rules().len(), 2);
    assert_eq!(
        alerts.rules().next().unwrap().get_hold(),
        shardmetrics::alert::expr::Hold::Time(Duration::from_secs(30))
    );
    let e = Alerts::from_json_str(r#"[{"name": "x", "expr": "p99(db)[1m] > 50ms", "for": "3 tiks"}]"#).unwrap_err();
    assert_eq!((e.index, e.rule.as_deref(), e.field.as_deref()), (Some(1), Some("x"), Some("for")));
    let e = Alerts::from_json_str(r#"[{"name": "x", "expr": "p99(db)[1m] > 50ms", "warning": true}]"#).unwrap_err();
    assert!(e.to_string().contains("field `warning`: expected a string, found a boolean"), "{e}");
    let e = Alerts::from_json_str(r#"{"rules": [1]}"#).unwrap_err();
    assert_eq!(e.to_string(), "alert rules, rule #1: a rule must be an object");
    let e = Alerts::from_json_str("{").unwrap_err();
    assert!(e.to_string().starts_with("alert rules: invalid JSON"), "{e}");
}

#[cfg(feature = "json")]
#[test]
fn load_picks_the_format_by_extension() {
    let dir = std::env::temp_dir().join(format!("shardmetrics-alerts-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let json = dir.join("rules.json");
    std::fs::write(&json, r#"[{"name": "a", "expr": "x > 1"}]"#).unwrap();
    assert_eq!(Alerts::load(&json).unwrap().rules().len(), 1);
    let toml = dir.join("rules.toml");
    std::fs::write(&toml, GOOD_TOML).unwrap();
    match Alerts::load(&toml) {
        Ok(a) => assert!(cfg!(feature = "alerts-toml") && a.rules().len() == 2),
        Err(e) => assert!(!cfg!(feature = "alerts-toml") && e.to_string().contains("alerts-toml"), "{e}"),
    }
    let bad = dir.join("rules.yaml");
    std::fs::write(&bad, "").unwrap();
    let e = Alerts::load(&bad).unwrap_err().to_string();
    assert!(e.contains("use a .toml or .json extension") && e.contains("rules.yaml"), "{e}");
    let e = Alerts::load(dir.join("absent.json")).unwrap_err().to_string();
    assert!(e.contains("cannot read"), "{e}");
    std::fs::remove_dir_all(&dir).unwrap();
}
