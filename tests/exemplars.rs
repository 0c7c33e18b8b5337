//! Exemplars (`record_with_exemplar`, `inc_with_exemplar`) and summary-style quantile series:
//! what the snapshot carries and the exact lines both text formats and JSON write.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use shardmetrics::{export, self_metrics, series::Value, Error, Registry, Unit};

fn lines_with<'a>(text: &'a str, prefix: &str) -> Vec<&'a str> {
    text.lines().filter(|l| l.starts_with(prefix)).collect()
}

fn rejected(r: &Registry) -> u64 {
    match r.snapshot().series().iter().find(|s| s.name() == self_metrics::REJECTED).map(|s| s.value()) {
        Some(Value::Counter(c)) => c.total,
        other => panic!("no rejected counter: {other:?}"),
    }
}

/// Splits ` # {labels} value timestamp` off a sample line.
fn exemplar_of(line: &str) -> Option<(&str, f64, f64)> {
    let (_, ex) = line.split_once(" # {")?;
    let (labels, rest) = ex.split_once("} ")?;
    let (v, ts) = rest.split_once(' ')?;
    Some((labels, v.parse().ok()?, ts.parse().ok()?))
}

#[test]
fn histogram_keeps_the_latest_exemplar_per_le_bucket() {
    let r = Registry::builder().manual().build();
    let h =
        r.histogram("ex_latency").help("Latency").unit(Unit::Nanoseconds).buckets(&[0.001, 0.01, 0.1]).build().unwrap();
    let before = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs_f64();
    h.record(500_000); // no exemplar
    h.record_with_exemplar(800_000, &[("trace_id", "fast-1")]); // le=0.001
    h.record_with_exemplar(900_000, &[("trace_id", "fast-2")]); // le=0.001, replaces fast-1
    h.record_with_exemplar(50_000_000, &[("trace_id", "mid"), ("span_id", "s\"1")]); // le=0.1
    h.record_with_exemplar(3_000_000_000, &[("trace_id", "slow")]); // +Inf
    let snap = r.flush();
    let s = snap.series().iter().find(|s| s.name() == "ex_latency").unwrap();
    let Value::Histogram(hs) = s.value() else { panic!() };
    assert_eq!(hs.count(), 5, "exemplar records are counted like any other");
    let ex = s.exemplars();
    assert_eq!(ex.len(), 4, "one slot per le bound plus +Inf");
    let trace = |i: usize| ex[i].as_ref().map(|e| e.labels().next().unwrap().1.to_owned());
    assert_eq!(trace(0).as_deref(), Some("fast-2"));
    assert_eq!(trace(1), None);
    assert_eq!(trace(2).as_deref(), Some("mid"));
    assert_eq!(trace(3).as_deref(), Some("slow"));
    assert_eq!(ex[2].as_ref().unwrap().value(), 50_000_000);

    let om = export::openmetrics::render(&snap);
    let buckets = lines_with(&om, "ex_latency_seconds_bucket");
    assert_eq!(buckets.len(), 4, "{om}");
    let (labels, v, ts) = exemplar_of(buckets[0]).expect("le=0.001 carries an exemplar");
    assert!(buckets[0].starts_with("ex_latency_seconds_bucket{le=\"0.001\"} 3 # {"), "{}", buckets[0]);
    assert_eq!(labels, "trace_id=\"fast-2\"");
    assert_eq!(v, 0.0009);
    let after = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs_f64();
    assert!(ts >= before - 0.001 && ts <= after + 0.001, "{before} <= {ts} <= {after}");
    assert_eq!(buckets[1], "ex_latency_seconds_bucket{le=\"0.01\"} 3");
    assert_eq!(exemplar_of(buckets[2]).unwrap().0, "trace_id=\"mid\",span_id=\"s\\\"1\"");
    assert!(buckets[3].starts_with("ex_latency_seconds_bucket{le=\"+Inf\"} 5 # {trace_id=\"slow\"} 3 "), "{om}");

    // Prometheus 0.0.4 has no exemplar syntax.
    let prom = export::prometheus::render(&snap);
    assert!(!prom.contains(" # {"), "{prom}");
    assert!(prom.contains("ex_latency_seconds_bucket{le=\"+Inf\"} 5\n"), "{prom}");
}

#[test]
fn counter_exemplars_follow_the_total_sample() {
    let r = Registry::builder().manual().build();
    let c = r.counter("ex_requests_total").help("Requests").build().unwrap();
    c.add(10);
    c.add_with_exemplar(5, &[("trace_id", "t1")]);
    let fam = r.counter("ex_jobs_total").help("Jobs").family(&["queue"]).unwrap();
    fam.with(&["a"]).inc_with_exemplar(&[("trace_id", "ja")]);
    fam.with(&["b"]).inc();
    let snap = r.flush();
    let om = export::openmetrics::render(&snap);
    let line = lines_with(&om, "ex_requests_total ")[0];
    assert!(line.starts_with("ex_requests_total 15 # {trace_id=\"t1\"} 5 "), "{line}");
    let jobs = lines_with(&om, "ex_jobs_total{");
    assert!(jobs[0].starts_with("ex_jobs_total{queue=\"a\"} 1 # {trace_id=\"ja\"} 1 "), "{om}");
    assert_eq!(jobs[1], "ex_jobs_total{queue=\"b\"} 1");

    let json: serde_json::Value = serde_json::from_str(&export::json::render(&snap)).unwrap();
    let series = json["series"].as_array().unwrap();
    let req = series.iter().find(|s| s["name"] == "ex_requests_total").unwrap();
    assert_eq!(req["exemplars"][0]["labels"]["trace_id"], "t1");
    assert_eq!(req["exemplars"][0]["value"], 5);
    assert!(req["exemplars"][0]["timestamp_ms"].as_u64().unwrap() > 1_600_000_000_000);
    let b = series.iter().find(|s| s["name"] == "ex_jobs_total" && s["labels"]["queue"] == "b").unwrap();
    assert!(b.get("exemplars").is_none(), "{b}");
}

#[test]
fn invalid_exemplars_are_dropped_and_counted_but_the_value_is_recorded() {
    let r = Registry::builder().manual().build();
    let c = r.counter("ex_bad_total").build().unwrap();
    let h = r.histogram("ex_bad_hist").build().unwrap();
    c.inc_with_exemplar(&[("bad-name", "x")]);
    c.inc_with_exemplar(&[("trace_id", &"x".repeat(200))]);
    h.record_with_exemplar(5, &[("a", "1"), ("a", "2")]);
    h.record_with_exemplar(7, &[("__reserved", "1")]);
    let snap = r.flush();
    let c = snap.series().iter().find(|s| s.name() == "ex_bad_total").unwrap();
    assert_eq!(c.value(), Value::Counter(shardmetrics::series::CounterValue { total: 2, delta: 2, rate: c_rate(&c) }));
    assert!(c.exemplars().iter().all(Option::is_none));
    let h = snap.series().iter().find(|s| s.name() == "ex_bad_hist").unwrap();
    let Value::Histogram(hs) = h.value() else { panic!() };
    assert_eq!(hs.count(), 2);
    assert!(h.exemplars().iter().all(Option::is_none));
    assert_eq!(rejected(&r), 4);
    assert!(!export::openmetrics::render(&snap).contains(" # {"));
}

fn c_rate(s: &shardmetrics::series::Series<'_>) -> f64 {
    match s.value() {
        Value::Counter(c) => c.rate,
        _ => unreachable!(),
    }
}

#[test]
fn timer_stop_with_exemplar_records_the_elapsed_time() {
    let r = Registry::builder().manual().build();
    let h = r.histogram("ex_timed").unit(Unit::Microseconds).build().unwrap();
    let t = h.start_timer();
    std::thread::sleep(Duration::from_millis(3));
    let d = t.stop_with_exemplar(&[("trace_id", "timed")]);
    let snap = r.flush();
    let s = snap.series().iter().find(|s| s.name() == "ex_timed").unwrap();
    let e = s.exemplars().iter().flatten().next().expect("an exemplar");
    assert_eq!(e.value(), d.as_micros() as u64);
    assert!(e.value() >= 3_000);
}

#[test]
fn quantile_series_are_a_summary_family_beside_the_histogram() {
    let r = Registry::builder().manual().build();
    let h = r
        .histogram("q_latency")
        .help("Latency")
        .unit(Unit::Nanoseconds)
        .quantiles(&[0.5, 0.9, 0.99, 0.999])
        .family(&["route"])
        .unwrap();
    for i in 1..=1000u64 {
        h.with(&["/a"]).record(i * 1_000_000); // 1 ms .. 1 s
    }
    let _empty = h.with(&["/b"]);
    let snap = r.flush();
    let hs = match snap.series().iter().find(|s| s.name() == "q_latency" && s.labels().get("route") == Some("/a")) {
        Some(s) => match s.value() {
            Value::Histogram(h) => h.clone(),
            _ => unreachable!(),
        },
        None => panic!("no series"),
    };
    let prom = export::prometheus::render(&snap);
    assert!(
        prom.contains(
            "# HELP q_latency_seconds_quantiles Latency (quantiles)\n# TYPE q_latency_seconds_quantiles summary\n"
        ),
        "{prom}"
    );
    for q in [0.5, 0.9, 0.99, 0.999] {
        let prefix = format!("q_latency_seconds_quantiles{{route=\"/a\",quantile=\"{q}\"}} ");
        let line = lines_with(&prom, &prefix);
        assert_eq!(line.len(), 1, "{prefix}\n{prom}");
        let v: f64 = line[0][prefix.len()..].parse().unwrap();
        let want = hs.quantile(q).unwrap() as f64 / 1e9;
        assert!((v - want).abs() <= want * 1e-12, "q{q}: {v} vs {want}");
        assert!((v - q).abs() <= q * 0.02, "q{q} = {v} within 2% of the true {q} s");
    }
    // An empty series' quantiles are NaN; sum and count are cumulative.
    assert!(prom.contains("q_latency_seconds_quantiles{route=\"/b\",quantile=\"0.5\"} NaN\n"), "{prom}");
    assert!(prom.contains("q_latency_seconds_quantiles_count{route=\"/a\"} 1000\n"), "{prom}");
    assert!(prom.contains("q_latency_seconds_quantiles_sum{route=\"/a\"} 500.5\n"), "{prom}");
    // The classic histogram is still there, unchanged.
    assert!(prom.contains("q_latency_seconds_count{route=\"/a\"} 1000\n"), "{prom}");

    let om = export::openmetrics::render(&snap);
    assert!(om.contains("# TYPE q_latency_seconds_quantiles summary\n"), "{om}");
    let count_then_sum =
        "q_latency_seconds_quantiles_count{route=\"/a\"} 1000\nq_latency_seconds_quantiles_sum{route=\"/a\"} 500.5\n";
    assert!(om.contains(count_then_sum), "{om}");
    assert!(om.ends_with("# EOF\n"));
}

#[test]
fn quantile_window_forgets_old_values() {
    let w = Duration::from_millis(400);
    let r = Registry::builder().manual().windows(&[w]).build();
    let h =
        r.histogram("qw_latency").unit(Unit::Milliseconds).quantiles(&[0.5, 0.99]).quantile_window(w).build().unwrap();
    for _ in 0..100 {
        h.record(1000);
    }
    r.flush();
    std::thread::sleep(Duration::from_millis(600));
    for _ in 0..100 {
        h.record(2);
    }
    let snap = r.flush();
    let prom = export::prometheus::render(&snap);
    let p99: f64 = lines_with(&prom, "qw_latency_seconds_quantiles{quantile=\"0.99\"} ")[0]
        .rsplit(' ')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!(p99 < 0.0021, "the window holds only the 2 ms values: p99 = {p99}\n{prom}");
    assert!(prom.contains("qw_latency_seconds_quantiles_count 200\n"), "count stays cumulative\n{prom}");
}

#[test]
fn quantile_configuration_is_validated() {
    let r = Registry::builder().manual().windows(&[Duration::from_secs(60)]).build();
    let err = |res: Result<shardmetrics::Histogram, Error>| match res {
        Err(Error::InvalidQuantiles { reason, .. }) => reason,
        other => panic!("expected InvalidQuantiles, got {other:?}"),
    };
    assert!(err(r.histogram("qv_a").quantiles(&[0.5, 1.5]).build()).contains("0..=1"));
    assert!(err(r.histogram("qv_b").quantiles(&[0.9, 0.5]).build()).contains("ascending"));
    assert!(err(r.histogram("qv_c").quantiles(&[f64::NAN]).build()).contains("0..=1"));
    assert!(err(r.histogram("qv_d").quantiles(&[]).build()).contains("no quantiles"));
    assert!(err(r.histogram("qv_e").quantile_window(Duration::from_secs(60)).build()).contains("needs quantiles"));
    assert!(err(r.histogram("qv_f").quantiles(&[0.5]).quantile_window(Duration::from_secs(5)).build())
        .contains("registry's windows"));
    let _ok = r.histogram("qv_ok").quantiles(&[0.5]).quantile_window(Duration::from_secs(60)).build().unwrap();
    assert!(matches!(
        r.histogram("qv_ok").quantiles(&[0.9]).build(),
        Err(Error::ConfigMismatch { what: "quantiles", .. })
    ));
    // The summary family's names are taken: nothing else may be exported under them.
    assert!(matches!(r.gauge("qv_ok_quantiles").build(), Err(Error::ExpositionClash { .. })));
    assert!(matches!(r.counter("qv_ok_quantiles_count").build(), Err(Error::ExpositionClash { .. })));
}
