//! Behaviour of the core engine: exact totals, shard re-use, histogram consistency and
//! accuracy, registration rules, flush, aggregator lifetime.
//!
//! One job over ~650 lines: the engine's behaviour as a user sees it, by topic below.

use std::{
    sync::{
        atomic::{AtomicBool, Ordering},
        Barrier,
    },
    time::Duration,
};

use shardmetrics::self_metrics;
use shardmetrics::{series::Value, Error, Registry, Unit};

fn manual() -> Registry {
    Registry::builder().manual().build()
}

#[test]
fn exact_totals_with_thread_churn_and_shard_reuse() {
    let r = manual();
    let c = r.counter("churn_total").build().unwrap();
    let fam = r.counter("churn_by_kind_total").family(&["kind"]).unwrap();
    let h = r.histogram("churn_values").build().unwrap();
    const WAVES: u64 = 20;
    const THREADS: u64 = 4;
    const N: u64 = 5_000;
    for wave in 0..WAVES {
        std::thread::scope(|s| {
            for t in 0..THREADS {
                let (c, fam, h) = (&c, &fam, &h);
                s.spawn(move || {
                    for i in 0..N {
                        c.inc();
                        fam.with(&[if i % 2 == 0 { "even" } else { "odd" }]).add(2);
                        h.record(wave * 1000 + t * 10 + (i % 7));
                    }
                });
            }
        });
        // Flushes between waves must not double anything either.
        if wave % 3 == 0 {
            r.flush();
        }
    }
    let snap = r.flush();
    assert_eq!(snap.counter("churn_total", &[]), Some(WAVES * THREADS * N));
    assert_eq!(snap.counter("churn_by_kind_total", &[("kind", "even")]), Some(WAVES * THREADS * N));
    assert_eq!(snap.counter("churn_by_kind_total", &[("kind", "odd")]), Some(WAVES * THREADS * N));
    let hs = snap.histogram("churn_values", &[]).unwrap();
    assert_eq!(hs.count(), WAVES * THREADS * N);
    assert_eq!(hs.min(), Some(0));
    assert_eq!(hs.max(), Some((WAVES - 1) * 1000 + (THREADS - 1) * 10 + 6));
    // 80 threads ran, at most 4 at a time. A scope returns when the closures are done, which
    // can be just before the exiting threads' thread-local destructors hand their shards back,
    // so the next wave may briefly overlap the previous one: the bound is two waves, not 80.
    assert!(r.shard_count() <= 2 * THREADS as usize, "shards: {}", r.shard_count());
}

#[test]
fn memory_does_not_grow_with_thread_churn() {
    let r = manual();
    let c = r.counter("short_lived_total").build().unwrap();
    for _ in 0..1_000 {
        let c = c.clone();
        // `join` waits for the OS thread to exit, so its thread-local destructor (which hands
        // the shard back) has run before the next thread starts.
        std::thread::spawn(move || c.inc()).join().unwrap();
    }
    assert_eq!(r.flush().counter("short_lived_total", &[]), Some(1_000));
    assert_eq!(r.shard_count(), 1);
}

#[test]
fn flush_sees_everything_that_happened_before() {
    let r = manual();
    let c = r.counter("hb_total").build().unwrap();
    for round in 1..=50u64 {
        std::thread::scope(|s| {
            s.spawn(|| c.add(3));
        });
        // The scope's join happens-before this flush.
        assert_eq!(r.flush().counter("hb_total", &[]), Some(round * 3));
    }
}

#[test]
fn concurrent_flushes_publish_in_order_and_lose_nothing() {
    let r = manual();
    let c = r.counter("cf_total").build().unwrap();
    let stop = AtomicBool::new(false);
    std::thread::scope(|s| {
        for _ in 0..2 {
            s.spawn(|| {
                for _ in 0..100_000 {
                    c.inc();
                }
            });
        }
        for _ in 0..3 {
            s.spawn(|| {
                let mut last_seq = 0;
                let mut last_total = 0;
                while !stop.load(Ordering::Relaxed) {
                    let snap = r.flush();
                    assert!(snap.seq() > last_seq);
                    let total = snap.counter("cf_total", &[]).unwrap();
                    assert!(total >= last_total);
                    last_seq = snap.seq();
                    last_total = total;
                    // The published snapshot is never older than one we flushed ourselves.
                    assert!(r.snapshot().seq() >= snap.seq());
                }
            });
        }
        std::thread::sleep(Duration::from_millis(200));
        stop.store(true, Ordering::Relaxed);
    });
    assert_eq!(r.flush().counter("cf_total", &[]), Some(200_000));
}

#[test]
fn histogram_snapshots_are_consistent_while_writers_run() {
    let r = manual();
    let h = r.histogram("consistency").build().unwrap();
    let stop = AtomicBool::new(false);
    let start = Barrier::new(3);
    std::thread::scope(|s| {
        for t in 0..2u64 {
            let (h, stop, start) = (&h, &stop, &start);
            s.spawn(move || {
                start.wait();
                let mut i = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    // Spread over many powers of two so bucket groups get allocated concurrently.
                    h.record((i.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> (i % 64)) ^ t);
                    i += 1;
                }
            });
        }
        start.wait();
        let mut last = 0;
        for _ in 0..300 {
            let snap = r.flush();
            let hs = snap.histogram("consistency", &[]).unwrap();
            let buckets: u64 = hs.buckets().map(|b| b.count).sum();
            assert_eq!(hs.count(), buckets, "count must equal the sum of the buckets");
            assert!(hs.count() >= last, "counts never go backwards");
            last = hs.count();
            if hs.count() > 0 {
                let (min, max) = (hs.min().unwrap(), hs.max().unwrap());
                for q in [0.0, 0.01, 0.5, 0.9, 0.99, 0.999, 1.0] {
                    let v = hs.quantile(q).unwrap();
                    assert!(min <= v && v <= max, "q={q}: {min} <= {v} <= {max}");
                }
                for b in hs.buckets() {
                    assert!(b.high >= min && b.low <= max, "bucket {b:?} outside [{min}, {max}]");
                }
            }
        }
        stop.store(true, Ordering::Relaxed);
    });
}

#[test]
fn extreme_values_are_recorded() {
    let r = manual();
    let h = r.histogram("extremes").build().unwrap();
    h.record(0);
    h.record(u64::MAX);
    h.record(u64::MAX);
    let snap = r.flush();
    let hs = snap.histogram("extremes", &[]).unwrap();
    assert_eq!(hs.count(), 3);
    assert_eq!(hs.min(), Some(0));
    assert_eq!(hs.max(), Some(u64::MAX));
    assert_eq!(hs.sum(), u64::MAX, "sum saturates");
    assert_eq!(hs.quantile(0.0), Some(0));
    assert_eq!(hs.quantile(1.0), Some(u64::MAX));
    let p50 = hs.quantile(0.5).unwrap();
    assert!(p50 as f64 >= u64::MAX as f64 * (1.0 - 1.0 / 64.0), "p50 {p50}");
}

fn exact_quantile(sorted: &[u64], q: f64) -> u64 {
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

fn check_quantiles(values: &[u64], precision: u8) {
    let r = manual();
    let h = r.histogram("acc").precision(precision).build().unwrap();
    std::thread::scope(|s| {
        for chunk in values.chunks(values.len().div_ceil(3)) {
            s.spawn(|| chunk.iter().for_each(|&v| h.record(v)));
        }
    });
    let snap = r.flush();
    let hs = snap.histogram("acc", &[]).unwrap();
    let mut sorted = values.to_vec();
    sorted.sort_unstable();
    assert_eq!(hs.count(), values.len() as u64);
    assert_eq!(hs.min(), sorted.first().copied());
    assert_eq!(hs.max(), sorted.last().copied());
    // The exponential buckets' representative: within (γ-1)/(γ+1) of every value in its bucket
    // (γ = 2^(2^-p)), plus half a unit for rounding it to an integer; ≤ 1.79 % at the default.
    let relative = shardmetrics::__private::relative_error(precision);
    for q in [0.0, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95, 0.99, 0.999, 1.0] {
        let exact = exact_quantile(&sorted, q) as f64;
        let got = hs.quantile(q).unwrap() as f64;
        let err = if exact == 0.0 { got } else { (got - exact).abs() / exact };
        let bound = if exact == 0.0 { 0.0 } else { relative + 0.5 / exact };
        if precision == shardmetrics::Histogram::DEFAULT_PRECISION {
            assert!(err <= 0.0179, "default precision q={q}: got {got}, exact {exact}, err {err}");
        }
        assert!(err <= bound + 1e-12, "p={precision} q={q}: got {got}, exact {exact}, err {err} > {bound}");
    }
    // Classic `le` counts: every value more than a bucket below a bound is counted, none more
    // than a bucket above it; monotonic; everything at the max.
    let gamma = 2f64.powf(2f64.powi(-i32::from(precision))) * (1.0 + 1e-9);
    let mut last = 0;
    for k in 0..60 {
        let bound = (1.5f64).powi(k);
        let got = hs.count_le(bound);
        let surely = sorted.partition_point(|&v| (v as f64) * gamma <= bound) as u64;
        let maybe = sorted.partition_point(|&v| (v as f64) <= bound * gamma) as u64;
        assert!((surely..=maybe).contains(&got) && got >= last, "le {bound}: {got} not in {surely}..={maybe}");
        last = got;
    }
    assert_eq!(hs.count_le(*sorted.last().unwrap() as f64), values.len() as u64);
    // The HdrHistogram conversion (feature `hdrhistogram`) agrees on the median within its own
    // precision (3 significant figures; HdrHistogram tracks values up to 2^63 only, and our
    // extreme ranks are exact min/max where it reports a bucket's highest equivalent value).
    #[cfg(feature = "hdrhistogram")]
    {
        let hdr = hs.to_hdr();
        assert_eq!(hdr.len(), values.len() as u64);
        if hs.max().unwrap() < 1 << 62 && values.len() > 2 {
            let (ours, theirs) = (hs.quantile(0.5).unwrap() as f64, hdr.value_at_quantile(0.5) as f64);
            assert!((ours - theirs).abs() <= ours * 0.002 + 1.0, "hdr p50 {theirs} vs ours {ours}");
        }
    }
}

mod accuracy {
    use proptest::prelude::*;
    use rand::{rngs::StdRng, Rng, SeedableRng};

    use super::check_quantiles;

    #[test]
    fn default_precision_is_within_two_percent() {
        assert!(shardmetrics::__private::relative_error(shardmetrics::Histogram::DEFAULT_PRECISION) <= 0.011);
        assert_eq!(shardmetrics::Histogram::DEFAULT_PRECISION, 5);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(24))]

        #[test]
        fn uniform(seed in any::<u64>(), lo in 0u64..1_000_000, width in 1u64..1_000_000_000) {
            let mut rng = StdRng::seed_from_u64(seed);
            let v: Vec<u64> = (0..20_000).map(|_| lo + rng.random_range(0..width)).collect();
            check_quantiles(&v, 5);
        }

        #[test]
        fn log_normal_latencies(seed in any::<u64>(), median in 1_000f64..10_000_000f64, p in 3u8..=8) {
            let mut rng = StdRng::seed_from_u64(seed);
            let v: Vec<u64> = (0..20_000).map(|_| {
                let (u1, u2): (f64, f64) = (rng.random::<f64>().max(1e-12), rng.random());
                let z = (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos();
                (median * (0.8 * z).exp()) as u64
            }).collect();
            check_quantiles(&v, p);
        }

        #[test]
        fn bimodal_with_tail(seed in any::<u64>()) {
            let mut rng = StdRng::seed_from_u64(seed);
            let v: Vec<u64> = (0..20_000).map(|i| match i % 100 {
                0 => rng.random_range(1_000_000_000..u64::MAX / 2),
                1..=40 => rng.random_range(100..200),
                _ => rng.random_range(50_000..60_000),
            }).collect();
            check_quantiles(&v, 5);
        }

        #[test]
        fn arbitrary_values(v in proptest::collection::vec(any::<u64>(), 1..2_000), p in 0u8..=8) {
            check_quantiles(&v, p);
        }
    }
}

#[test]
fn invalid_names_are_rejected_with_a_clear_error() {
    let r = manual();
    for bad in ["", "9lives", "http.requests", "a-b", "sp ace", "ünïcode"] {
        let e = r.counter(bad).build().unwrap_err();
        assert!(matches!(e, Error::InvalidMetricName { .. }), "{bad}: {e:?}");
        assert!(e.to_string().contains("[a-zA-Z_:][a-zA-Z0-9_:]*"), "{e}");
    }
    let e = r.counter("ok_total").label("__reserved", "x").build().unwrap_err();
    assert!(matches!(e, Error::InvalidLabelName { .. }), "{e:?}");
    assert!(e.to_string().contains("__"), "{e}");
    let e = r.counter("ok_total").label("bad-label", "x").build().unwrap_err();
    assert!(matches!(e, Error::InvalidLabelName { .. }));
    let e = r.histogram("h").label("le", "1").build().unwrap_err();
    assert!(matches!(e, Error::InvalidLabelName { .. }));
    let e = r.counter("dup_total").family(&["a", "a"]).unwrap_err();
    assert!(matches!(e, Error::DuplicateLabel { .. }));
    let e = r.histogram("p").precision(9).build().unwrap_err();
    assert!(matches!(e, Error::InvalidPrecision { .. }));
    assert!(e.to_string().contains("schema") && e.to_string().contains("0..=8"), "{e}");
    let e = r.histogram("b").buckets(&[1.0, 0.5]).build().unwrap_err();
    assert!(matches!(e, Error::InvalidBuckets { .. }));
    // Label values may be anything.
    let c = r.counter("any_value_total").label("v", "quote\" backslash\\ newline\n ü").build().unwrap();
    c.inc();
    assert_eq!(r.flush().counter("any_value_total", &[("v", "quote\" backslash\\ newline\n ü")]), Some(1));
}

#[test]
fn conflicting_definitions_are_errors_and_identical_ones_share_a_series() {
    let r = manual();
    let a = r.counter("same_total").label("x", "1").build().unwrap();
    let b = r.counter("same_total").label("x", "1").build().unwrap();
    a.inc();
    b.inc();
    assert_eq!(r.flush().counter("same_total", &[("x", "1")]), Some(2));
    assert!(matches!(r.gauge("same_total").label("x", "1").build(), Err(Error::KindMismatch { .. })));
    assert!(matches!(r.counter("same_total").label("y", "1").build(), Err(Error::LabelNamesMismatch { .. })));
    assert!(matches!(r.counter("same_total").build(), Err(Error::LabelNamesMismatch { .. })));
    let _ = r.histogram("unit_h").unit(Unit::Nanoseconds).build().unwrap();
    assert!(matches!(r.histogram("unit_h").unit(Unit::Bytes).build(), Err(Error::ConfigMismatch { .. })));
    assert!(matches!(
        r.histogram("unit_h").unit(Unit::Nanoseconds).precision(7).build(),
        Err(Error::ConfigMismatch { .. })
    ));
    // A family and a labelled series of the same name and label names are the same series.
    let fam = r.counter("same_total").family(&["x"]).unwrap();
    fam.with(&["1"]).inc();
    assert_eq!(r.flush().counter("same_total", &[("x", "1")]), Some(3));
}

#[test]
fn label_order_does_not_matter() {
    let r = manual();
    let fam = r.counter("order_total").family(&["route", "status"]).unwrap();
    fam.with(&["/a", "200"]).inc();
    let direct = r.counter("order_total").label("status", "200").label("route", "/a").build().unwrap();
    direct.add(2);
    let snap = r.flush();
    assert_eq!(snap.counter("order_total", &[("route", "/a"), ("status", "200")]), Some(3));
    assert_eq!(snap.counter("order_total", &[("status", "200"), ("route", "/a")]), Some(3));
    assert_eq!(snap.counter("order_total", &[("status", "200")]), None);
    assert_eq!(snap.family("order_total").len(), 1);
    // A family declared with the names in another order is the same metric.
    let other = r.counter("order_total").family(&["status", "route"]).unwrap();
    other.with(&["200", "/a"]).inc();
    assert_eq!(r.flush().counter("order_total", &[("route", "/a"), ("status", "200")]), Some(4));
}

#[test]
fn family_arity_errors_are_counted_not_panics() {
    let r = manual();
    let fam = r.counter("arity_total").family(&["a", "b"]).unwrap();
    assert!(matches!(fam.try_with(&["x"]), Err(Error::LabelCount { expected: 2, got: 1, .. })));
    fam.with(&["x"]).inc();
    let snap = r.flush();
    assert_eq!(snap.counter(self_metrics::REJECTED, &[]), Some(1));
    assert_eq!(snap.counter("arity_total", &[("overflow", "true")]), Some(1));
}

/// The overflow series is `{overflow="true"}`; a user label of that name could produce the
/// same series (a family `col_total{overflow}` over its cap exported `col_total{overflow="true"}`
/// twice), so the name is reserved at registration, for every metric and family.
#[test]
fn the_overflow_label_name_is_reserved() {
    let r = Registry::builder().manual().max_series_per_family(1).build();
    let family = r.counter("col_total").family(&["overflow"]);
    assert!(
        matches!(&family, Err(Error::InvalidLabelName { label, reason, .. }) if label == "overflow" && reason.contains("overflow series")),
        "{family:?}"
    );
    let single = r.gauge("g").label("overflow", "true").build();
    assert!(matches!(single, Err(Error::InvalidLabelName { .. })), "{single:?}");
    // Whatever labels a capped family has, its series are unique in the render.
    let fam = r.counter("other_total").family(&["kind", "overflowing"]).unwrap();
    for v in ["true", "x", "y"] {
        fam.with(&[v, "true"]).inc();
    }
    let text = shardmetrics::export::prometheus::render(&r.flush());
    let mut lines: Vec<&str> =
        text.lines().filter(|l| !l.starts_with('#')).map(|l| l.rsplit_once(' ').unwrap().0).collect();
    let n = lines.len();
    lines.sort_unstable();
    lines.dedup();
    assert_eq!(lines.len(), n, "duplicate series in:\n{text}");
}

/// A 100,000-character name and a 1 MB label value used to be accepted (and the value sent on
/// every scrape). Names are limited to 255 bytes and label values to 2,048 by default, both
/// configurable; registrations beyond them get `Error::TooLong` (with the name cut short in
/// the message), family look-ups beyond them are counted and go to the overflow series.
#[test]
fn names_and_label_values_have_length_limits() {
    let r = manual();
    let long_name = "n".repeat(100_000);
    let e = r.counter(&long_name).build().unwrap_err();
    assert!(matches!(e, Error::TooLong { what: "metric name", len: 100_000, max: 255, .. }), "{e:?}");
    assert!(e.to_string().len() < 400, "the message does not echo the whole name: {} bytes", e.to_string().len());
    assert!(r.counter(&"n".repeat(255)).build().is_ok());
    let e = r.gauge("g").label(&"l".repeat(256), "v").build().unwrap_err();
    assert!(matches!(e, Error::TooLong { what: "label name", .. }), "{e:?}");
    let megabyte = "v".repeat(1 << 20);
    let e = r.gauge("g").label("l", &megabyte).build().unwrap_err();
    assert!(matches!(e, Error::TooLong { what: "label value", len: 1_048_576, max: 2048, .. }), "{e:?}");
    assert!(r.gauge("g2").label("l", &"v".repeat(2048)).build().is_ok());

    // The three refused registrations above are counted too.
    assert_eq!(r.flush().counter(self_metrics::REJECTED, &[]), Some(3));
    let family = r.counter("hits_total").family(&["route"]).unwrap();
    family.with(&[&megabyte]).inc();
    family.with(&["/api"]).inc();
    let snap = r.flush();
    assert_eq!(snap.counter("hits_total", &[("overflow", "true")]), Some(1));
    assert_eq!(snap.counter("hits_total", &[("route", "/api")]), Some(1));
    assert_eq!(snap.counter(self_metrics::REJECTED, &[]), Some(4));
    let text = shardmetrics::export::prometheus::render(&snap);
    assert!(text.len() < 100_000, "the long value is not exported: {} bytes", text.len());

    let roomy = Registry::builder().manual().max_name_len(300).max_label_value_len(1 << 20).build();
    assert!(roomy.counter(&"n".repeat(300)).build().is_ok());
    assert!(roomy.gauge("g").label("l", &megabyte).build().is_ok());
}

#[test]
fn cardinality_caps_redirect_to_one_overflow_series() {
    let r = Registry::builder().manual().max_series_per_family(10).build();
    let fam = r.counter("capped_total").family(&["id"]).unwrap();
    std::thread::scope(|s| {
        for t in 0..2 {
            let fam = &fam;
            s.spawn(move || {
                for i in 0..1_000 {
                    fam.with(&[&format!("{}", (i * 2 + t) % 100)]).inc();
                }
            });
        }
    });
    let snap = r.flush();
    let series = snap.family("capped_total");
    assert_eq!(series.len(), 11, "10 distinct + 1 overflow");
    let total: u64 = series
        .iter()
        .map(|s| match s.value() {
            Value::Counter(c) => c.total,
            _ => unreachable!(),
        })
        .sum();
    assert_eq!(total, 2_000, "nothing is dropped");
    let overflowed = snap.counter("capped_total", &[("overflow", "true")]).unwrap();
    assert_eq!(overflowed, 2_000 - 10 * 20);
    assert_eq!(snap.counter(self_metrics::OVERFLOW, &[]), Some(overflowed));
}

#[test]
fn gauges_reject_nan_and_count_it() {
    let r = manual();
    let g = r.gauge("g").build().unwrap();
    g.set(1.5);
    g.set(f64::NAN);
    g.add(f64::NAN);
    g.add(2.0);
    g.set(f64::INFINITY);
    g.add(f64::NEG_INFINITY); // inf + -inf = NaN: rejected, value stays +Inf
    let snap = r.flush();
    assert_eq!(snap.gauge("g", &[]), Some(f64::INFINITY));
    assert_eq!(snap.counter(self_metrics::REJECTED, &[]), Some(3));
    g.set(-4.0);
    g.sub(1.0);
    g.inc();
    g.dec();
    assert_eq!(r.flush().gauge("g", &[]), Some(-5.0));
}

#[test]
fn gauge_adds_from_many_threads_are_exact() {
    let r = manual();
    let g = r.gauge("depth").build().unwrap();
    std::thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| {
                for _ in 0..10_000 {
                    g.inc();
                    g.add(2.0);
                    g.dec();
                }
            });
        }
    });
    assert_eq!(r.flush().gauge("depth", &[]), Some(80_000.0));
}

/// A counter never decreases: `add(u64::MAX)` twice then `add(5)` reads `u64::MAX`, not 3
/// (which Prometheus would take for a reset), on one thread and across threads, and the
/// amounts that did not fit are counted as rejected values. (A thread's cell saturates at 2^63,
/// where the total starts reading `u64::MAX`, so `inc()` needs no check; each of the three
/// additions here crosses or lands past it.)
#[test]
fn counters_saturate_instead_of_wrapping() {
    let r = manual();
    let c = r.counter("big_total").build().unwrap();
    let rejected = |snap: &shardmetrics::Snapshot| snap.counter(self_metrics::REJECTED, &[]).unwrap_or(0);
    c.add(u64::MAX);
    c.add(u64::MAX);
    c.add(5);
    let snap = r.flush();
    assert_eq!(snap.counter("big_total", &[]), Some(u64::MAX));
    assert_eq!(rejected(&snap), 3, "no addition fitted whole");
    c.inc();
    assert_eq!(r.flush().counter("big_total", &[]), Some(u64::MAX), "inc on a saturated counter");

    // Across shards: two threads each hold more than half of u64::MAX; the merged total
    // saturates, and later ticks never read less.
    let spread = r.counter("spread_total").build().unwrap();
    std::thread::scope(|s| {
        for _ in 0..2 {
            s.spawn(|| spread.add(u64::MAX / 2 + 10));
        }
    });
    let first = r.flush().counter("spread_total", &[]).unwrap();
    assert_eq!(first, u64::MAX);
    spread.add(7);
    let second = r.flush();
    assert_eq!(second.counter("spread_total", &[]), Some(u64::MAX));
    let delta = second.series().iter().find(|s| s.name() == "spread_total").map(|s| match s.value() {
        Value::Counter(c) => c.delta,
        _ => unreachable!(),
    });
    assert_eq!(delta, Some(0), "a saturated total has no increase, never a huge wrapped one");
}

/// Durations at the edge of their range never panic the aggregator (a huge interval used to
/// overflow `Instant + interval` on its thread; a huge window `keep + interval` in every tick).
#[test]
fn extreme_intervals_and_windows_do_not_panic() {
    let r = Registry::builder().interval(Duration::MAX).windows(&[Duration::MAX, Duration::from_secs(1)]).build();
    assert_eq!(r.interval(), shardmetrics::RegistryBuilder::MAX_INTERVAL);
    let c = r.counter("x_total").build().unwrap();
    c.inc();
    let snap = r.flush();
    c.inc();
    let snap2 = r.flush();
    assert_eq!(snap2.counter("x_total", &[]), Some(2));
    assert_eq!(snap2.window(Duration::MAX).counter("x_total", &[]).map(|w| w.increase), Some(2));
    drop(snap);
    r.shutdown();
}

#[test]
fn deltas_and_rates() {
    let r = manual();
    let c = r.counter("d_total").build().unwrap();
    let h = r.histogram("d_hist").build().unwrap();
    c.add(10);
    h.record(5);
    r.flush();
    c.add(7);
    h.record(6);
    h.record(7);
    std::thread::sleep(Duration::from_millis(20));
    let snap = r.flush();
    let v = snap.counter_value("d_total", &[]).unwrap();
    assert_eq!((v.total, v.delta), (17, 7));
    let secs = snap.interval().as_secs_f64();
    assert!(secs >= 0.02);
    assert!((v.rate - 7.0 / secs).abs() < 1e-9);
    let hs = snap.histogram("d_hist", &[]).unwrap();
    assert_eq!((hs.count(), hs.delta_count(), hs.delta_sum()), (3, 2, 13));
}

#[test]
fn timers_record_in_the_histogram_unit() {
    let r = manual();
    let ns = r.histogram("t_ns").unit(Unit::Nanoseconds).build().unwrap();
    let us = r.histogram("t_us").unit(Unit::Microseconds).build().unwrap();
    {
        let _a = ns.start_timer();
        let _b = us.start_timer();
        std::thread::sleep(Duration::from_millis(5));
    }
    let t = ns.start_timer();
    t.discard();
    let d = ns.start_timer().stop();
    assert!(d < Duration::from_secs(1));
    let snap = r.flush();
    let n = snap.histogram("t_ns", &[]).unwrap();
    assert_eq!(n.count(), 2, "discarded timers record nothing");
    assert!(n.max().unwrap() >= 5_000_000);
    let u = snap.histogram("t_us", &[]).unwrap();
    assert!(u.max().unwrap() >= 5_000 && u.max().unwrap() < 5_000_000);
}

fn aggregator_threads() -> usize {
    std::fs::read_dir("/proc/self/task")
        .unwrap()
        .filter_map(|e| std::fs::read_to_string(e.ok()?.path().join("comm")).ok())
        .filter(|c| c.trim_end() == "sm-aggregator")
        .count()
}

fn wait_for_aggregator_threads(n: usize) {
    // The thread sets its own name after it starts, and exits after it is signalled.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while aggregator_threads() != n {
        assert!(std::time::Instant::now() < deadline, "expected {n} aggregator threads, see {}", aggregator_threads());
        std::thread::sleep(Duration::from_millis(1));
    }
}

#[test]
fn background_ticks_and_dropping_the_registry_stops_its_thread() {
    // Other tests in this binary use manual registries, so this one owns every aggregator thread.
    let before = aggregator_threads();
    let r = Registry::builder().interval(Duration::from_millis(10)).build();
    assert!(r.is_ticking());
    wait_for_aggregator_threads(before + 1);
    let c = r.counter("bg_total").build().unwrap();
    c.add(5);
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while r.snapshot().counter("bg_total", &[]) != Some(5) {
        assert!(std::time::Instant::now() < deadline, "background tick never published");
        std::thread::sleep(Duration::from_millis(5));
    }
    let clone = r.clone();
    drop(r);
    assert_eq!(aggregator_threads(), before + 1, "a clone keeps the thread");
    drop(clone);
    // Drop joins the thread, so it is gone at once.
    assert_eq!(aggregator_threads(), before, "last clone dropped: thread joined");
    c.inc(); // handles outlive the registry and still record without panicking
}

#[test]
fn shutdown_flushes_and_stops() {
    let r = Registry::builder().interval(Duration::from_secs(3600)).build();
    let c = r.counter("sd_total").build().unwrap();
    c.add(9);
    let snap = r.shutdown();
    assert!(!r.is_ticking());
    assert_eq!(snap.counter("sd_total", &[]), Some(9));
    assert_eq!(r.snapshot().seq(), snap.seq());
    c.inc();
    assert_eq!(r.flush().counter("sd_total", &[]), Some(10));
    r.shutdown();
}

#[test]
fn memory_per_series_per_thread() {
    let r = manual();
    let counters: Vec<_> = (0..10_000).map(|i| r.counter(&format!("mem_c{i}_total")).build().unwrap()).collect();
    let before = r.shard_memory_bytes();
    std::thread::scope(|s| {
        s.spawn(|| counters.iter().for_each(|c| c.inc()));
    });
    let per_counter = (r.shard_memory_bytes() - before) as f64 / 10_000.0;
    assert!(per_counter <= 16.0, "{per_counter} B per counter per thread");

    let r = manual();
    let hists: Vec<_> =
        (0..100).map(|i| r.histogram(&format!("mem_h{i}")).unit(Unit::Nanoseconds).build().unwrap()).collect();
    std::thread::scope(|s| {
        s.spawn(|| {
            for h in &hists {
                // 1 µs .. 100 ms, every power of two and in between.
                let mut v = 1_000u64;
                while v <= 100_000_000 {
                    h.record(v);
                    v += v / 7 + 1;
                }
            }
        });
    });
    let per_hist = r.shard_memory_bytes() as f64 / 100.0;
    assert!(per_hist <= 8192.0, "{per_hist} B per histogram per thread");
}

thread_local! {
    static RECORD_ON_EXIT: RecordOnExit = const { RecordOnExit(std::cell::Cell::new(None)) };
}

struct RecordOnExit(std::cell::Cell<Option<shardmetrics::Counter>>);

impl Drop for RecordOnExit {
    fn drop(&mut self) {
        if let Some(c) = self.0.take() {
            c.add(7);
        }
    }
}

#[test]
fn records_from_thread_local_destructors_are_kept() {
    let r = manual();
    let c = r.counter("tls_exit_total").build().unwrap();
    for _ in 0..50 {
        let c = c.clone();
        std::thread::spawn(move || {
            // Touch the counter first so this thread's shard binding exists (and may be
            // destroyed before RECORD_ON_EXIT's destructor runs), then arm the destructor.
            c.inc();
            RECORD_ON_EXIT.with(|x| x.0.set(Some(c.clone())));
        })
        .join()
        .unwrap();
    }
    assert_eq!(r.flush().counter("tls_exit_total", &[]), Some(50 * 8));
}

#[test]
fn noop_handles_record_nowhere_visible() {
    shardmetrics::Counter::noop().inc();
    shardmetrics::Gauge::noop().set(1.0);
    shardmetrics::Histogram::noop().record(1);
}

#[test]
fn collectors_run_before_the_merge_and_observers_after_publish() {
    let r = manual();
    let g = r.gauge("collected").build().unwrap();
    let mut n = 0.0;
    r.add_collector(move || {
        n += 1.0;
        g.set(n);
    });
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let s2 = seen.clone();
    r.add_observer(move |snap: &std::sync::Arc<shardmetrics::Snapshot>| {
        s2.lock().unwrap().push((snap.seq(), snap.gauge("collected", &[]).unwrap()));
    });
    r.add_collector(|| panic!("a broken collector must not stop the tick"));
    assert_eq!(r.flush().gauge("collected", &[]), Some(1.0));
    assert_eq!(r.flush().gauge("collected", &[]), Some(2.0));
    assert_eq!(*seen.lock().unwrap(), vec![(1, 1.0), (2, 2.0)]);
}

#[test]
fn a_thread_outliving_registries_does_not_keep_their_shards() {
    // This thread records into many short-lived registries; binding to a new one prunes the
    // bindings of dropped ones (their shards are freed then, not at thread exit). Memory is not
    // observable from here, so this checks that the pruning path keeps recording correct.
    let weak_probe = {
        let r = manual();
        let c = r.counter("probe_total").build().unwrap();
        c.inc();
        assert_eq!(r.flush().counter("probe_total", &[]), Some(1));
        r.shard_memory_bytes()
    };
    assert!(weak_probe > 0);
    for _ in 0..200 {
        let r = manual();
        let c = r.counter("short_total").build().unwrap();
        c.inc();
        drop(c);
        drop(r);
    }
    // Binding to a new registry prunes the dead ones; a final record still works.
    let r = manual();
    let c = r.counter("last_total").build().unwrap();
    c.inc();
    assert_eq!(r.flush().counter("last_total", &[]), Some(1));
}

#[test]
fn help_added_later_reaches_the_cached_render_headers() {
    let r = manual();
    let c = r.counter("late_help_total").build().unwrap();
    c.inc();
    let before = shardmetrics::export::prometheus::render(&r.flush());
    assert!(!before.contains("# HELP late_help_total"), "{before}");
    let _ = r.counter("late_help_total").help("Now documented").build().unwrap();
    let snap = r.flush();
    let after = shardmetrics::export::prometheus::render(&snap);
    assert!(after.contains("# HELP late_help_total Now documented\n"), "{after}");
    let om = shardmetrics::export::openmetrics::render(&snap);
    assert!(om.contains("# HELP late_help Now documented\n"), "{om}");
}

/// A tick that finds a histogram's record counts unchanged reuses its last merge; any record —
/// of zero, into an existing bucket, from a new thread — makes the next tick merge again.
#[test]
fn idle_histograms_are_reused_and_any_record_is_seen() {
    let r = manual();
    let h = r.histogram("idle_latency").build().unwrap();
    let get = |s: &shardmetrics::Snapshot| s.histogram("idle_latency", &[]).unwrap().clone();
    h.record(100);
    let a = get(&r.flush());
    let b = get(&r.flush());
    assert_eq!((a.count(), a.delta_count()), (1, 1));
    assert_eq!((b.count(), b.delta_count(), b.delta_sum(), b.rate()), (1, 0, 0, 0.0), "idle tick: no delta");
    assert_eq!(a.buckets().collect::<Vec<_>>(), b.buckets().collect::<Vec<_>>());
    // A zero changes neither the sum nor max; the count still changes.
    h.record(0);
    let c = get(&r.flush());
    assert_eq!((c.count(), c.delta_count(), c.min()), (2, 1, Some(0)));
    // The same bucket again.
    h.record(100);
    assert_eq!(get(&r.flush()).count(), 3);
    // Another thread (another shard) only.
    std::thread::scope(|s| {
        s.spawn(|| h.record(100));
    });
    let d = get(&r.flush());
    assert_eq!((d.count(), d.delta_count(), d.sum()), (4, 1, 300));
    // Windows see the per-tick deltas of merged and reused ticks alike.
    let w = r.snapshot().window(Duration::from_secs(60)).histogram("idle_latency", &[]).unwrap();
    assert_eq!(w.count(), 4);
}

/// Series registered across many ticks (the catalogue seals each tick's new series into a chunk
/// and merges chunks on a binary-counter schedule) come out sorted, complete and findable.
#[test]
fn series_registered_over_many_ticks_stay_sorted_and_findable() {
    let r = Registry::builder().manual().build();
    let a = r.counter("b_total").family(&["k"]).unwrap();
    let g = r.gauge("a_gauge").family(&["k"]).unwrap();
    let mut expected = Vec::new();
    for tick in 0..60u64 {
        for j in 0..(tick % 7) {
            // A scrambled order of values: sorted output must not follow registration order.
            let v = format!("v{:03}", (tick * 37 + j * 11) % 997);
            a.with(&[&v]).inc();
            g.with(&[&v]).set(tick as f64);
            expected.push(v);
        }
        let snap = r.flush();
        let names: Vec<(String, Vec<(String, String)>)> = snap
            .series()
            .iter()
            .map(|s| (s.name().to_owned(), s.labels().iter().map(|(k, v)| (k.to_owned(), v.to_owned())).collect()))
            .collect();
        let mut sorted = names.clone();
        sorted.sort();
        assert_eq!(names, sorted, "tick {tick}");
        expected.sort();
        expected.dedup();
        assert_eq!(snap.family("b_total").len(), expected.len());
        assert_eq!(snap.family("a_gauge").len(), expected.len());
        for v in &expected {
            assert!(snap.counter("b_total", &[("k", v)]).unwrap() >= 1, "{v}");
        }
    }
}
