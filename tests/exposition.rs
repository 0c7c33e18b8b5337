//! Golden tests of the Prometheus 0.0.4 and OpenMetrics 1.0 renders for a small fixed registry,
//! and an invariant checker (no duplicate series; `le` strictly increasing and ending in `+Inf`;
//! cumulative counts non-decreasing; `_count` equal to the `+Inf` bucket) applied to both
//! renders of it and of a larger registry with every unit and bucket layout.

use std::collections::{BTreeMap, BTreeSet};

use shardmetrics::{
    export::{openmetrics, prometheus},
    scrape::{self, MetricFamily, MetricType},
    Error, Registry, Snapshot, Unit,
};

/// Sorted `(name, value)` label pairs.
type LabelSet = Vec<(String, String)>;
/// Sample values by sample name and sorted labels.
type Samples = BTreeMap<(String, LabelSet), f64>;
/// A classic histogram point: `(le, cumulative count)` buckets, `_count`, whether `_sum` is there.
type Point = (Vec<(f64, f64)>, Option<f64>, bool);

/// counter with labels that need escaping, gauge ±Inf and a rejected NaN, nanosecond
/// histogram with `le` bounds that are inexact in binary (3e-8 s = 30 ns).
fn fixed_registry() -> Registry {
    let r = Registry::builder().manual().build();
    let requests = r
        .counter("http_requests_total")
        .help("Requests \"served\"\nand \\ more")
        .family(&["route"])
        .expect("valid counter family");
    requests.with(&["/a\"b"]).add(3);
    requests.with(&["c\\d\ne"]).inc();
    let temp = r.gauge("temperature").family(&["sensor"]).expect("valid gauge family");
    temp.with(&["inf"]).set(f64::INFINITY);
    temp.with(&["minus"]).set(f64::NEG_INFINITY);
    temp.with(&["nan"]).set(1.5);
    temp.with(&["nan"]).set(f64::NAN); // rejected and counted: the gauge stays 1.5
    let latency = r
        .histogram("request_duration")
        .unit(Unit::Nanoseconds)
        .help("Latency")
        .buckets(&[3e-8, 1e-6, 1e-3])
        .build()
        .expect("valid histogram");
    // Classic `le` counts are exact at exponential bucket bounds and within one bucket (2.2 %)
    // elsewhere: the values sit at least a bucket away from the decimal bounds they are under
    // (30 ns is alone in its bucket, exactly), so the counts are the exact ones.
    for v in [30, 900, 5_000_000] {
        latency.record(v);
    }
    r
}

const PROMETHEUS_GOLDEN: &str = r#"# HELP http_requests_total Requests "served"\nand \\ more
# TYPE http_requests_total counter
http_requests_total{route="/a\"b"} 3
http_requests_total{route="c\\d\ne"} 1
# HELP request_duration_seconds Latency
# TYPE request_duration_seconds histogram
request_duration_seconds_bucket{le="3e-8"} 1
request_duration_seconds_bucket{le="1e-6"} 2
request_duration_seconds_bucket{le="0.001"} 2
request_duration_seconds_bucket{le="+Inf"} 3
request_duration_seconds_sum 0.00500093
request_duration_seconds_count 3
# HELP shardmetrics_cardinality_overflow_total Series look-ups redirected to an overflow series by a cardinality cap
# TYPE shardmetrics_cardinality_overflow_total counter
shardmetrics_cardinality_overflow_total 0
# HELP shardmetrics_rejected_values_total Values rejected on the recording path (NaN, bad label counts)
# TYPE shardmetrics_rejected_values_total counter
shardmetrics_rejected_values_total 1
# TYPE temperature gauge
temperature{sensor="inf"} +Inf
temperature{sensor="minus"} -Inf
temperature{sensor="nan"} 1.5
"#;

const OPENMETRICS_GOLDEN: &str = r#"# TYPE http_requests counter
# HELP http_requests Requests \"served\"\nand \\ more
http_requests_total{route="/a\"b"} 3
http_requests_total{route="c\\d\ne"} 1
# TYPE request_duration_seconds histogram
# UNIT request_duration_seconds seconds
# HELP request_duration_seconds Latency
request_duration_seconds_bucket{le="3e-8"} 1
request_duration_seconds_bucket{le="1e-6"} 2
request_duration_seconds_bucket{le="0.001"} 2
request_duration_seconds_bucket{le="+Inf"} 3
request_duration_seconds_count 3
request_duration_seconds_sum 0.00500093
# TYPE shardmetrics_cardinality_overflow counter
# HELP shardmetrics_cardinality_overflow Series look-ups redirected to an overflow series by a cardinality cap
shardmetrics_cardinality_overflow_total 0
# TYPE shardmetrics_rejected_values counter
# HELP shardmetrics_rejected_values Values rejected on the recording path (NaN, bad label counts)
shardmetrics_rejected_values_total 1
# TYPE temperature gauge
temperature{sensor="inf"} +Inf
temperature{sensor="minus"} -Inf
temperature{sensor="nan"} 1.5
# EOF
"#;

#[test]
fn prometheus_golden() {
    let snap = fixed_registry().flush();
    assert_eq!(prometheus::render(&snap), PROMETHEUS_GOLDEN);
}

#[test]
fn openmetrics_golden() {
    let snap = fixed_registry().flush();
    assert_eq!(openmetrics::render(&snap), OPENMETRICS_GOLDEN);
    assert_eq!(openmetrics::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8");
}

#[test]
fn goldens_parse_back_to_the_recorded_values() {
    for (text, om) in [(PROMETHEUS_GOLDEN, false), (OPENMETRICS_GOLDEN, true)] {
        let families = if om { scrape::parse_openmetrics(text) } else { scrape::parse_prometheus(text) }.unwrap();
        let samples = check_invariants(&families);
        let get = |name: &str, labels: &[(&str, &str)]| {
            let mut l: Vec<(String, String)> = labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
            l.sort();
            samples[&(name.to_owned(), l)]
        };
        assert_eq!(get("http_requests_total", &[("route", "/a\"b")]), 3.0);
        assert_eq!(get("http_requests_total", &[("route", "c\\d\ne")]), 1.0);
        assert_eq!(get("temperature", &[("sensor", "inf")]), f64::INFINITY);
        assert_eq!(get("temperature", &[("sensor", "minus")]), f64::NEG_INFINITY);
        assert_eq!(get("temperature", &[("sensor", "nan")]), 1.5);
        assert_eq!(get("shardmetrics_rejected_values_total", &[]), 1.0);
        assert_eq!(get("request_duration_seconds_bucket", &[("le", "3e-8")]), 1.0, "30 ns is ≤ 3e-8 s");
        assert_eq!(get("request_duration_seconds_count", &[]), 3.0);
        assert_eq!(get("request_duration_seconds_sum", &[]), 5_000_930.0 / 1e9);
        let help = families.iter().find(|f| f.name.starts_with("http_requests")).unwrap().help.clone();
        assert_eq!(help.as_deref(), Some("Requests \"served\"\nand \\ more"));
        if om {
            let h = families.iter().find(|f| f.name == "request_duration_seconds").unwrap();
            assert_eq!((h.kind, h.unit.as_deref()), (MetricType::Histogram, Some("seconds")));
        }
    }
}

/// Checks the invariants of one parsed render and returns its samples by (name, sorted labels).
/// A summary series: `(quantile, value)` pairs, `_count` and `_sum` sample counts.
type SummaryPoint = (Vec<(f64, f64)>, u32, u32);

fn check_invariants(families: &[MetricFamily]) -> Samples {
    let mut samples = BTreeMap::new();
    let mut names = BTreeSet::new();
    for f in families {
        assert!(names.insert(f.name.clone()), "family {} appears twice", f.name);
        for s in &f.samples {
            let mut labels = s.labels.clone();
            labels.sort();
            let key = (s.name.clone(), labels);
            assert!(samples.insert(key, s.value).is_none(), "duplicate series {} {:?}", s.name, s.labels);
        }
        if f.kind == MetricType::Summary {
            // Per series: quantiles ascending in 0..=1 with non-decreasing values, one _count
            // and one _sum.
            let mut points: BTreeMap<LabelSet, SummaryPoint> = BTreeMap::new();
            for s in &f.samples {
                let mut key: Vec<(String, String)> =
                    s.labels.iter().filter(|(k, _)| k != "quantile").cloned().collect();
                key.sort();
                let p = points.entry(key).or_default();
                match &s.name[f.name.len()..] {
                    "" => p.0.push((s.label("quantile").expect("quantile").parse().expect("numeric"), s.value)),
                    "_count" => p.1 += 1,
                    "_sum" => p.2 += 1,
                    other => panic!("unexpected summary sample suffix {other:?}"),
                }
            }
            for (labels, (qs, count, sum)) in points {
                let at = format!("{} {labels:?}", f.name);
                assert!(qs.iter().all(|(q, _)| (0.0..=1.0).contains(q)), "{at}: quantile outside 0..=1");
                assert!(qs.windows(2).all(|w| w[0].0 < w[1].0), "{at}: quantiles not ascending");
                assert!(
                    qs.iter().all(|(_, v)| v.is_nan()) || qs.windows(2).all(|w| w[0].1 <= w[1].1),
                    "{at}: quantile values decrease"
                );
                assert_eq!((count, sum), (1, 1), "{at}: one _count and one _sum");
            }
            continue;
        }
        if f.kind != MetricType::Histogram {
            continue;
        }
        // Per series: buckets in order, +Inf last and equal to _count.
        let mut points: BTreeMap<LabelSet, Point> = BTreeMap::new();
        for s in &f.samples {
            let mut key: Vec<(String, String)> = s.labels.iter().filter(|(k, _)| k != "le").cloned().collect();
            key.sort();
            let p = points.entry(key).or_default();
            match &s.name[f.name.len()..] {
                "_bucket" => {
                    let le = s.label("le").expect("le");
                    let le = if le == "+Inf" { f64::INFINITY } else { le.parse::<f64>().expect("numeric le") };
                    p.0.push((le, s.value));
                }
                "_count" => p.1 = Some(s.value),
                "_sum" => p.2 = true,
                other => panic!("unexpected histogram sample suffix {other:?}"),
            }
        }
        assert!(!points.is_empty(), "histogram {} without series", f.name);
        for (labels, (buckets, count, sum)) in points {
            let at = format!("{} {labels:?}", f.name);
            assert!(buckets.windows(2).all(|w| w[0].0 < w[1].0), "{at}: le not strictly increasing");
            assert!(buckets.windows(2).all(|w| w[0].1 <= w[1].1), "{at}: cumulative counts decrease");
            let last = buckets.last().unwrap_or_else(|| panic!("{at}: no buckets"));
            assert_eq!(last.0, f64::INFINITY, "{at}: last bucket is not +Inf");
            assert_eq!(count, Some(last.1), "{at}: _count != +Inf bucket");
            assert!(sum, "{at}: no _sum");
        }
    }
    samples
}

/// Both renders of `snap`, parsed strictly and checked.
fn check_both(snap: &Snapshot) -> [Samples; 2] {
    let prom = prometheus::render(snap);
    let om = openmetrics::render(snap);
    let p = scrape::parse_prometheus(&prom).unwrap_or_else(|e| panic!("{e}\n{prom}"));
    let o = scrape::parse_openmetrics(&om).unwrap_or_else(|e| panic!("{e}\n{om}"));
    [check_invariants(&p), check_invariants(&o)]
}

#[test]
fn invariants_hold_for_every_unit_and_bucket_layout() {
    let r = Registry::builder().manual().build();
    let units = [
        ("ns", Unit::Nanoseconds),
        ("us", Unit::Microseconds),
        ("ms", Unit::Milliseconds),
        ("s", Unit::Seconds),
        ("b", Unit::Bytes),
        ("ratio", Unit::Ratio),
        ("plain", Unit::None),
    ];
    let layouts: [Option<&[f64]>; 3] = [None, Some(&[-5.0, -1.0, 0.0, 0.5, 1.0, 1e3]), Some(&[1e-9, 7e-7, 3e-8 * 1e3])];
    let mut expected_series = 0;
    for (un, unit) in units {
        for (li, layout) in layouts.iter().enumerate() {
            let mut b = r.histogram(&format!("h_{un}_{li}")).unit(unit);
            if let Some(l) = layout {
                b = b.buckets(l);
            }
            if li != 1 {
                b = b.quantiles(&[0.0, 0.5, 0.9, 0.99, 0.999, 1.0]);
            }
            let fam = b.family(&["k"]).expect("valid histogram family");
            for (i, key) in ["empty", "one", "many"].into_iter().enumerate() {
                let h = fam.with(&[key]);
                expected_series += 1;
                for j in 0..(i * i * 50) as u64 {
                    h.record(j * j * 997 + 1);
                    if j % 17 == 0 {
                        h.record_with_exemplar(j * 31 + 1, &[("trace_id", &format!("t{j}"))]);
                    }
                }
                h.record(0); // zero is a valid value (and the lowest bucket)
                if i == 2 {
                    h.record(u64::MAX);
                }
            }
        }
    }
    let snap = r.flush();
    let [prom, om] = check_both(&snap);
    for samples in [&prom, &om] {
        let counts = samples
            .keys()
            .filter(|(n, _)| n.starts_with("h_") && n.ends_with("_count") && !n.ends_with("_quantiles_count"))
            .count();
        assert_eq!(counts, expected_series);
        let summaries = samples.keys().filter(|(n, _)| n.starts_with("h_") && n.ends_with("_quantiles_count")).count();
        assert_eq!(summaries, expected_series * 2 / 3);
    }
    // The two formats carry the same counts and sums, sample for sample (OpenMetrics leaves out
    // negative `le` bounds, whose buckets are always empty).
    for (key, v) in &prom {
        match om.get(key) {
            Some(o) => assert!(o.to_bits() == v.to_bits() || (o.is_nan() && v.is_nan()), "{key:?}"),
            None => {
                let le: f64 = key.1.iter().find(|(k, _)| k == "le").expect("only buckets differ").1.parse().unwrap();
                assert!(le < 0.0 && *v == 0.0, "{key:?}");
            }
        }
    }
}

#[test]
fn clashing_exported_names_are_refused_at_registration() {
    let r = Registry::builder().manual().build();
    r.counter("x").build().expect("first").inc();
    let e = r.counter("x_total").build().expect_err("x and x_total are both x_total");
    assert!(matches!(&e, Error::ExpositionClash { other, .. } if other == "x"), "{e}");
    r.histogram("lat").unit(Unit::Nanoseconds).build().expect("histogram").record(1);
    assert!(r.gauge("lat_seconds").build().is_err(), "the histogram is exported as lat_seconds");
    assert!(r.gauge("lat_seconds_count").build().is_err());
    r.gauge("y").build().expect("gauge").set(1.0);
    assert!(r.counter("y_total").build().is_err(), "OpenMetrics family y would clash with the gauge y");
    assert!(r.counter("shardmetrics_rejected_values").build().is_err(), "the self-metric's exported name");
    // Re-registering the same metric is not a clash.
    r.counter("x").build().expect("same metric again").inc();
    r.counter("z_total").build().expect("unrelated").inc();
    check_both(&r.flush());
}
