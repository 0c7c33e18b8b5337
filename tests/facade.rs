//! The `metrics` facade backend, driven only through the `metrics` macros (`counter!`,
//! `gauge!`, `histogram!`, `describe_*!`). Every test records under its own registry via
//! `metrics::with_local_recorder` (per thread), so tests stay isolated while the harness runs
//! them in parallel; `install_sets_the_global_recorder_once` is the one test that touches the
//! global recorder (local recorders take precedence over it, so it cannot leak into the others).

use std::sync::Barrier;

use metrics::{counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram, Unit as MUnit};
use shardmetrics::{facade::Recorder, self_metrics, Kind, Registry, Snapshot, Unit};

fn setup() -> (Registry, Recorder) {
    let registry = Registry::builder().manual().build();
    let recorder = Recorder::new(registry.clone());
    (registry, recorder)
}

fn rejected(snap: &Snapshot) -> u64 {
    snap.counter(self_metrics::REJECTED, &[]).expect("self-metric present")
}

#[test]
fn counters_are_exact_across_threads() {
    const THREADS: usize = 8;
    const N: u64 = 20_000;
    let (registry, recorder) = setup();
    let barrier = Barrier::new(THREADS);
    std::thread::scope(|s| {
        for t in 0..THREADS {
            let (recorder, barrier) = (&recorder, &barrier);
            s.spawn(move || {
                metrics::with_local_recorder(recorder, || {
                    barrier.wait();
                    if t % 2 == 0 {
                        // Macro look-up on every call.
                        for _ in 0..N {
                            counter!("http.requests", "route" => "/api").increment(1);
                        }
                    } else {
                        // A cached handle.
                        let c = counter!("http.requests", "route" => "/api");
                        for _ in 0..N {
                            c.increment(1);
                        }
                    }
                    counter!("by_thread", "t" => t.to_string()).increment(t as u64 + 1);
                });
            });
        }
    });
    let snap = registry.flush();
    assert_eq!(snap.counter("http_requests", &[("route", "/api")]), Some(THREADS as u64 * N));
    for t in 0..THREADS {
        assert_eq!(snap.counter("by_thread", &[("t", &t.to_string())]), Some(t as u64 + 1));
    }
    assert_eq!(recorder.registration_errors(), 0);
    assert_eq!(rejected(&snap), 0);
}

#[test]
fn gauges_set_increment_decrement() {
    let (registry, recorder) = setup();
    metrics::with_local_recorder(&recorder, || {
        gauge!("queue-depth").set(5.0);
        gauge!("queue-depth").increment(2.0);
        gauge!("queue-depth").decrement(1.5);
        gauge!("temp", "room" => "a").set(-3.25);
        gauge!("temp", "room" => "b").set(20.0);
    });
    let snap = registry.flush();
    assert_eq!(snap.gauge("queue_depth", &[]), Some(5.5));
    assert_eq!(snap.gauge("temp", &[("room", "a")]), Some(-3.25));
    assert_eq!(snap.gauge("temp", &[("room", "b")]), Some(20.0));
}

#[test]
fn histograms_in_seconds_record_nanoseconds_and_export_seconds() {
    const THREADS: usize = 4;
    let (registry, recorder) = setup();
    metrics::with_local_recorder(&recorder, || {
        describe_histogram!("request.latency", MUnit::Seconds, "Time to serve a request");
    });
    std::thread::scope(|s| {
        for _ in 0..THREADS {
            s.spawn(|| {
                metrics::with_local_recorder(&recorder, || {
                    let h = histogram!("request.latency", "route" => "/api");
                    // 1000 values: 1 µs, 2 µs, … 1 ms.
                    for i in 1..=1000u32 {
                        h.record(f64::from(i) * 1e-6);
                    }
                });
            });
        }
    });
    let snap = registry.flush();
    let h = snap.histogram("request_latency", &[("route", "/api")]).expect("registered");
    assert_eq!(h.count(), THREADS as u64 * 1000);
    assert_eq!(h.min(), Some(1_000));
    assert_eq!(h.max(), Some(1_000_000));
    let p50 = h.quantile(0.5).unwrap() as f64;
    assert!((p50 - 500_000.0).abs() / 500_000.0 < 0.02, "p50 {p50}");
    let p99 = h.quantile(0.99).unwrap() as f64;
    assert!((p99 - 990_000.0).abs() / 990_000.0 < 0.02, "p99 {p99}");
    let series = snap.find("request_latency", &[("route", "/api")]).unwrap();
    assert_eq!(series.family().unit(), Unit::Nanoseconds);
    assert_eq!(series.family().help(), "Time to serve a request");
    assert_eq!(recorder.histogram_scale("request.latency"), Some(1e9));

    let text = shardmetrics::export::prometheus::render(&snap);
    assert!(text.contains("# HELP request_latency_seconds Time to serve a request\n"), "{text}");
    assert!(text.contains("# TYPE request_latency_seconds histogram\n"), "{text}");
    assert!(text.contains("request_latency_seconds_count{route=\"/api\"} 4000\n"), "{text}");
    // Sum of 1..=1000 µs = 0.5005 s per thread.
    let sum_line = text.lines().find(|l| l.starts_with("request_latency_seconds_sum")).unwrap();
    let sum: f64 = sum_line.rsplit(' ').next().unwrap().parse().unwrap();
    assert!((sum - 4.0 * 0.5005).abs() < 1e-9, "{sum_line}");
}

#[test]
fn units_scale_histogram_values() {
    let (registry, recorder) = setup();
    metrics::with_local_recorder(&recorder, || {
        describe_histogram!("rtt_ms", MUnit::Milliseconds, "");
        describe_histogram!("payload", MUnit::Kibibytes, "");
        histogram!("rtt_ms").record(1.5);
        histogram!("payload").record(1.5);
        // Unitless, default scale 1: rounded to the nearest integer.
        histogram!("batch").record(2.4);
        histogram!("batch").record(2.5);
        histogram!("batch").record(0.4);
    });
    let snap = registry.flush();
    assert_eq!(snap.histogram("rtt_ms", &[]).unwrap().max(), Some(1_500_000));
    assert_eq!(snap.find("rtt_ms", &[]).unwrap().family().unit(), Unit::Nanoseconds);
    assert_eq!(snap.histogram("payload", &[]).unwrap().max(), Some(1536));
    assert_eq!(snap.find("payload", &[]).unwrap().family().unit(), Unit::Bytes);
    let batch = snap.histogram("batch", &[]).unwrap();
    assert_eq!((batch.count(), batch.min(), batch.max(), batch.sum()), (3, Some(0), Some(3), 5));
    assert_eq!(recorder.histogram_scale("batch"), Some(1.0));
}

#[test]
fn with_scale_keeps_decimal_places_of_unitless_histograms() {
    let registry = Registry::builder().manual().build();
    let recorder = Recorder::new(registry.clone()).with_scale(1000.0);
    metrics::with_local_recorder(&recorder, || {
        for v in [0.25, 0.5, 0.001, 0.0004] {
            histogram!("hit_ratio").record(v);
        }
        describe_histogram!("wait", MUnit::Seconds, "");
        histogram!("wait").record(0.25); // a time unit ignores the unitless scale
    });
    let snap = registry.flush();
    let h = snap.histogram("hit_ratio", &[]).unwrap();
    assert_eq!((h.count(), h.min(), h.max(), h.sum()), (4, Some(0), Some(500), 751));
    assert_eq!(recorder.histogram_scale("hit_ratio"), Some(1000.0));
    assert_eq!(snap.histogram("wait", &[]).unwrap().max(), Some(250_000_000));
}

#[test]
fn nan_negative_and_infinite_values_are_rejected_and_counted() {
    let (registry, recorder) = setup();
    metrics::with_local_recorder(&recorder, || {
        let h = histogram!("h");
        h.record(1.0);
        h.record(f64::NAN);
        h.record(-1.0);
        h.record(f64::INFINITY);
        h.record(-0.0); // not negative: a 0
        h.record_many(f64::NAN, 3);
        gauge!("g").set(f64::NAN);
        gauge!("g").set(2.0);
        gauge!("g").increment(f64::NAN);
    });
    let snap = registry.flush();
    let h = snap.histogram("h", &[]).unwrap();
    assert_eq!((h.count(), h.min(), h.max()), (2, Some(0), Some(1)));
    assert_eq!(snap.gauge("g", &[]), Some(2.0));
    assert_eq!(rejected(&snap), 3 + 3 + 2);
}

#[test]
fn label_order_does_not_matter() {
    let (registry, recorder) = setup();
    metrics::with_local_recorder(&recorder, || {
        counter!("c", "a" => "1", "b" => "2").increment(1);
        counter!("c", "b" => "2", "a" => "1").increment(10);
        let labels = vec![metrics::Label::new("b", "2"), metrics::Label::new("a", "1")];
        counter!("c", labels).increment(100);
        // One series, so one high-water mark for `absolute` whichever order names it.
        counter!("m", "x" => "1", "y" => "2").absolute(50);
        counter!("m", "y" => "2", "x" => "1").absolute(40);
        histogram!("h", "p" => "1", "q" => "2").record(5.0);
        histogram!("h", "q" => "2", "p" => "1").record(7.0);
    });
    let snap = registry.flush();
    assert_eq!(snap.counter("c", &[("a", "1"), ("b", "2")]), Some(111));
    assert_eq!(snap.family("c").len(), 1);
    assert_eq!(snap.counter("m", &[("x", "1"), ("y", "2")]), Some(50));
    assert_eq!(snap.histogram("h", &[("p", "1"), ("q", "2")]).unwrap().count(), 2);
}

#[test]
fn names_and_label_keys_are_sanitised() {
    let (registry, recorder) = setup();
    metrics::with_local_recorder(&recorder, || {
        counter!("9lives.count-total", "http.method" => "GET", "1st" => "x.y").increment(3);
        // Sanitises to the same series as the line above.
        counter!("9lives_count_total", "http_method" => "GET", "_st" => "x.y").increment(4);
        gauge!("disk.free-bytes", "mount.point" => "/").set(1.0);
    });
    let snap = registry.flush();
    assert_eq!(snap.counter("_lives_count_total", &[("http_method", "GET"), ("_st", "x.y")]), Some(7));
    assert_eq!(snap.gauge("disk_free_bytes", &[("mount_point", "/")]), Some(1.0));
    let text = shardmetrics::export::prometheus::render(&snap);
    assert!(text.contains("_lives_count_total{_st=\"x.y\",http_method=\"GET\"} 7\n"), "{text}");
    assert_eq!(recorder.registration_errors(), 0);
}

#[test]
fn absolute_adds_only_past_the_high_water_mark() {
    let (registry, recorder) = setup();
    metrics::with_local_recorder(&recorder, || {
        let c = counter!("bytes_read");
        c.absolute(10);
        c.absolute(7); // stale: nothing
        c.absolute(15);
        counter!("bytes_read").absolute(15);
        // Increments are not part of the mark.
        counter!("mixed").increment(5);
        counter!("mixed").absolute(20);
        counter!("mixed").increment(1);
        counter!("mixed").absolute(20);
    });
    let snap = registry.flush();
    assert_eq!(snap.counter("bytes_read", &[]), Some(15));
    assert_eq!(snap.counter("mixed", &[]), Some(26));

    // Concurrent reporters of one external total, out of order: the total is the maximum.
    const THREADS: u64 = 4;
    std::thread::scope(|s| {
        for t in 0..THREADS {
            let recorder = &recorder;
            s.spawn(move || {
                metrics::with_local_recorder(recorder, || {
                    let c = counter!("external");
                    for i in 0..10_000u64 {
                        if t % 2 == 0 {
                            c.absolute(i * THREADS + t);
                        } else {
                            // Per-thread copies of the handle share the high-water mark.
                            counter!("external").absolute(i * THREADS + t);
                        }
                    }
                });
            });
        }
    });
    let snap = registry.flush();
    assert_eq!(snap.counter("external", &[]), Some(9_999 * THREADS + THREADS - 1));
}

#[test]
fn describe_before_and_after_registration() {
    let (registry, recorder) = setup();
    metrics::with_local_recorder(&recorder, || {
        describe_counter!("early_total", MUnit::Bytes, "Described first");
        counter!("early_total").increment(1);

        counter!("late_total").increment(1);
        describe_counter!("late_total", MUnit::Seconds, "Described after registration");

        gauge!("late_gauge").set(1.0);
        describe_gauge!("late_gauge", MUnit::Milliseconds, "A late gauge");

        // Registered, nothing recorded yet: the late unit still applies, with its scale.
        let h = histogram!("late_hist");
        describe_histogram!("late_hist", MUnit::Milliseconds, "Late but before any value");
        h.record(2.0);

        // Values already recorded unitless: the unit is ignored, the help text applies.
        histogram!("too_late").record(3.0);
        describe_histogram!("too_late", MUnit::Seconds, "Too late for a unit");
        histogram!("too_late").record(4.0);

        // The first help text and unit win.
        describe_counter!("early_total", MUnit::Seconds, "Second description");
    });
    let snap = registry.flush();
    let fam = |n: &str| snap.find(n, &[]).unwrap().family().clone();
    assert_eq!(
        (fam("early_total").help().to_owned(), fam("early_total").unit()),
        ("Described first".into(), Unit::Bytes)
    );
    assert_eq!(fam("late_total").help(), "Described after registration");
    assert_eq!(fam("late_total").unit(), Unit::Seconds);
    assert_eq!((fam("late_gauge").help(), fam("late_gauge").unit()), ("A late gauge", Unit::Milliseconds));

    assert_eq!(fam("late_hist").unit(), Unit::Nanoseconds);
    assert_eq!(fam("late_hist").help(), "Late but before any value");
    assert_eq!(snap.histogram("late_hist", &[]).unwrap().max(), Some(2_000_000));
    assert_eq!(recorder.histogram_scale("late_hist"), Some(1e6));

    assert_eq!((fam("too_late").help(), fam("too_late").unit()), ("Too late for a unit", Unit::None));
    let h = snap.histogram("too_late", &[]).unwrap();
    assert_eq!((h.min(), h.max()), (Some(3), Some(4)));
    assert_eq!(recorder.histogram_scale("too_late"), Some(1.0));
    assert_eq!(snap.find("too_late", &[]).unwrap().kind(), Kind::Histogram);
}

#[test]
fn registration_errors_never_panic_and_are_counted() {
    let (registry, recorder) = setup();
    metrics::with_local_recorder(&recorder, || {
        counter!("dup").increment(1);
        gauge!("dup").set(1.0); // another kind under the same name
        gauge!("dup").increment(1.0);
        counter!("labelled", "a" => "1").increment(1);
        counter!("labelled", "b" => "1").increment(1); // other label names
        histogram!("hist", "le" => "1").record(1.0); // reserved on histograms
        counter!("", "x" => "1").increment(1); // empty name
        counter!("rsv", "__name" => "1").increment(1); // reserved prefix
    });
    let snap = registry.flush();
    assert_eq!(snap.counter("dup", &[]), Some(1));
    assert_eq!(snap.gauge("dup", &[]), None);
    assert_eq!(snap.counter("labelled", &[("a", "1")]), Some(1));
    assert_eq!(snap.counter("labelled", &[("b", "1")]), None);
    assert!(snap.family("hist").is_empty());
    // Each dropped value counted once.
    assert_eq!(rejected(&snap), 6);
    assert_eq!(recorder.registration_errors(), 6);
    assert!(recorder.last_error().unwrap().to_string().contains("__name"));
}

#[test]
fn a_clash_with_a_native_registration_is_rejected_not_rescaled() {
    let (registry, recorder) = setup();
    let native = registry.histogram("native_latency").unit(Unit::Microseconds).build().unwrap();
    native.record(7);
    metrics::with_local_recorder(&recorder, || {
        describe_histogram!("native_latency", MUnit::Seconds, "from the facade");
        histogram!("native_latency").record(1.0);
    });
    let snap = registry.flush();
    let h = snap.histogram("native_latency", &[]).unwrap();
    assert_eq!((h.count(), h.max()), (1, Some(7)));
    let info = snap.find("native_latency", &[]).unwrap().family().clone();
    assert_eq!((info.unit(), info.help()), (Unit::Microseconds, "from the facade"));
    assert_eq!(rejected(&snap), 1);
}

#[test]
fn overflowed_keys_go_to_the_overflow_series() {
    let registry = Registry::builder().manual().max_series_per_family(3).build();
    let recorder = Recorder::new(registry.clone());
    metrics::with_local_recorder(&recorder, || {
        for round in 0..2 {
            for i in 0..10 {
                counter!("per_user", "user" => i.to_string()).increment(1);
            }
            let _ = round;
        }
    });
    let snap = registry.flush();
    assert_eq!(snap.counter("per_user", &[("user", "0")]), Some(2));
    assert_eq!(snap.counter("per_user", &[("user", "2")]), Some(2));
    assert_eq!(snap.counter("per_user", &[("user", "3")]), None);
    assert_eq!(snap.counter("per_user", &[("overflow", "true")]), Some(14));
    assert_eq!(snap.counter(self_metrics::OVERFLOW, &[]), Some(14));
}

#[test]
fn one_thread_alternating_between_recorders_keeps_them_apart() {
    let (reg_a, rec_a) = setup();
    let (reg_b, rec_b) = setup();
    for i in 0..100u64 {
        let (rec, n) = if i % 2 == 0 { (&rec_a, 1) } else { (&rec_b, 10) };
        metrics::with_local_recorder(rec, || {
            counter!("shared_name").increment(n);
            histogram!("shared_hist").record(n as f64);
        });
    }
    let (a, b) = (reg_a.flush(), reg_b.flush());
    assert_eq!(a.counter("shared_name", &[]), Some(50));
    assert_eq!(b.counter("shared_name", &[]), Some(500));
    assert_eq!(a.histogram("shared_hist", &[]).unwrap().max(), Some(1));
    assert_eq!(b.histogram("shared_hist", &[]).unwrap().min(), Some(10));
}

#[test]
fn install_sets_the_global_recorder_once() {
    let registry = Registry::builder().manual().build();
    Recorder::new(registry.clone()).install().expect("first install");
    let again = Recorder::new(Registry::builder().manual().build()).install();
    let err = again.expect_err("a second global recorder must be refused");
    assert!(err.to_string().contains("already initialized"), "{err}");
    // The global recorder serves threads without a local one.
    std::thread::spawn(|| counter!("global_hits").increment(2)).join().unwrap();
    counter!("global_hits").increment(1);
    assert_eq!(registry.flush().counter("global_hits", &[]), Some(3));
}
