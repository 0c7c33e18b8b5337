//! The OTLP exporter over real HTTP on loopback, against in-process receivers whose request
//! bodies are decoded by the official Python `opentelemetry-proto` package (not by our prost
//! types): every value is checked against the snapshot and the text export (sums, gauges,
//! histogram buckets, summaries, attributes, exemplar ids, resource, start times,
//! temporality); delta pushes add back up to the cumulative totals; and receivers that answer
//! 429 with `Retry-After`, 503, 400, `partial_success` (encoded by Python too), or hang.
//!
//! Without `python3` and `opentelemetry-proto` the decoding tests print a SKIPPED line (and
//! fail under CI=true): `bash .ci/install` installs the package. The receiver, the decoder, the
//! registry, the cumulative check and the partial-success check are shared with
//! tests/otlp_json.rs (tests/otlp_common/mod.rs).

#![cfg(feature = "otlp")]

mod otlp_common;

use std::{
    collections::HashMap,
    process::Command,
    time::{Duration, Instant},
};

use otlp_common::{
    attrs, builder, check_cumulative, check_three_rejected, decode_requests, float, int, metric, nanos, populated,
    python_otlp, the_one_request, Receiver,
};
use serde_json::Value as Json;
use shardmetrics::{
    export::{
        otlp::{Compression, Histograms, Temporality},
        ExportError, ExporterBuilder,
    },
    Registry, Unit,
};

/// What a loaded 2-core machine may add to a bound on wall time.
const SLACK: Duration = Duration::from_millis(1500);

// ---------------------------------------------------------------------------------------------
// Tests.

#[test]
fn python_decodes_every_value_of_a_gzip_push() {
    if !python_otlp() {
        return;
    }
    let receiver = Receiver::ok();
    let r = populated();
    let otlp = builder(&receiver.url()).compression(Compression::Gzip).header("X-Tenant", "blue").build(&r).unwrap();
    let snap = r.flush();
    otlp.send_once(&snap).unwrap();
    let (_, decoded) = the_one_request(&receiver, "protobuf", Some("gzip"));
    check_cumulative(&decoded, &snap, &r, false);
    let stats = otlp.stats();
    assert_eq!((stats.sent_batches, stats.sent_samples), (1, snap.series().len() as u64 + 1), "{stats:?}");
}

#[test]
fn delta_pushes_add_up_to_the_cumulative_totals() {
    if !python_otlp() {
        return;
    }
    let (cum_rx, delta_rx) = (Receiver::ok(), Receiver::ok());
    let r = Registry::builder().manual().build();
    let cum = builder(&cum_rx.url()).build(&r).unwrap();
    let delta = builder(&delta_rx.url()).temporality(Temporality::Delta).build(&r).unwrap();
    let c = r.counter("jobs_total").family(&["queue"]).unwrap();
    let h = r.histogram("job_duration").unit(Unit::Milliseconds).buckets(&[0.01, 0.1, 1.0]).build().unwrap();
    let mut times = vec![nanos(r.started_at())];
    for round in 1..=4u64 {
        c.with(&["a"]).add(round);
        if round >= 2 {
            c.with(&["b"]).add(10 * round); // appears in the second round
        }
        for v in 0..round * 3 {
            h.record(v * 40 % 1500);
        }
        let snap = r.flush();
        times.push(nanos(snap.taken_at()));
        cum.send_once(&snap).unwrap();
        delta.send_once(&snap).unwrap();
    }
    let cums = decode_requests(&cum_rx.requests(), "protobuf");
    let deltas = decode_requests(&delta_rx.requests(), "protobuf");
    assert_eq!((cums.len(), deltas.len()), (4, 4));
    let mut sums: HashMap<Vec<(String, String)>, u64> = HashMap::new();
    let (mut count, mut buckets) = (0u64, vec![0u64; 4]);
    let mut sum = 0.0;
    for (i, (cr, dr)) in cums.iter().zip(&deltas).enumerate() {
        let dm = metric(dr, "jobs");
        assert_eq!(dm["sum"]["aggregation_temporality"], "AGGREGATION_TEMPORALITY_DELTA");
        assert_eq!(dm["sum"]["is_monotonic"], true);
        for p in dm["sum"]["data_points"].as_array().unwrap() {
            assert_eq!(int(&p["start_time_unix_nano"]), times[i], "a delta starts at the previous export");
            assert_eq!(int(&p["time_unix_nano"]), times[i + 1]);
            *sums.entry(attrs(p)).or_default() += int(&p["as_int"]);
        }
        for p in metric(cr, "jobs")["sum"]["data_points"].as_array().unwrap() {
            assert_eq!(sums[&attrs(p)], int(&p["as_int"]), "round {i}: deltas add up to the total");
            // A series new since the previous export starts there; the others at the start.
            let b_new = attrs(p)[0].1 == "b";
            let want_start = if b_new { times[1] } else { times[0] };
            assert_eq!(int(&p["start_time_unix_nano"]), want_start, "round {i} {:?}", attrs(p));
        }
        let dp = &metric(dr, "job_duration")["histogram"]["data_points"][0];
        assert_eq!(int(&dp["start_time_unix_nano"]), times[i]);
        assert!(dp.get("min").is_none() && dp.get("max").is_none(), "no min or max in a delta: {dp}");
        count += int(&dp["count"]);
        sum += float(&dp["sum"]);
        for (b, v) in buckets.iter_mut().zip(dp["bucket_counts"].as_array().unwrap()) {
            *b += int(v);
        }
        let cp = &metric(cr, "job_duration")["histogram"]["data_points"][0];
        assert_eq!(count, int(&cp["count"]), "round {i}");
        assert!((sum - float(&cp["sum"])).abs() < 1e-9, "round {i}: {sum} vs {}", cp["sum"]);
        let cb: Vec<u64> = cp["bucket_counts"].as_array().unwrap().iter().map(int).collect();
        assert_eq!(buckets, cb, "round {i}");
    }
    let snap = r.snapshot();
    assert_eq!(
        sums[&vec![("queue".to_owned(), "a".to_owned())]],
        snap.counter("jobs_total", &[("queue", "a")]).unwrap()
    );
}

/// `Histograms::Exponential`, decoded by the official Python messages: scale 5, every recorded
/// value in the bucket its value in seconds falls in (OTLP index `i` holds
/// `(2^(i/32), 2^((i+1)/32)]`), the zero bucket, count and sum; and delta pushes whose buckets
/// add up, index by index, to the cumulative ones.
#[test]
fn exponential_histograms_are_the_recorded_buckets_and_deltas_add_up() {
    if !python_otlp() {
        return;
    }
    let (cum_rx, delta_rx) = (Receiver::ok(), Receiver::ok());
    let r = Registry::builder().manual().build();
    let mut recorded: Vec<u64> = Vec::new();
    // Exponential for every histogram but `payload_bytes` (a per-family override), which
    // stays explicit.
    let exponential =
        |url: &str| builder(url).histograms(Histograms::Exponential).histogram_form("payload", Histograms::Explicit);
    let cum = exponential(&cum_rx.url()).build(&r).unwrap();
    let delta = exponential(&delta_rx.url()).temporality(Temporality::Delta).build(&r).unwrap();
    let h = r.histogram("job_duration").unit(Unit::Milliseconds).build().unwrap();
    let sizes = r.histogram("payload").unit(Unit::Bytes).buckets(&[64.0, 1024.0]).build().unwrap();
    sizes.record(100);
    // An exemplar on an exponential point: its value in seconds, its ids as bytes.
    h.record_with_exemplar(2_500, &[("trace_id", "4bf92f3577b34da6a3ce929d0e0e4736"), ("span_id", "00f067aa0ba902b7")]);
    recorded.push(2_500);
    let mut delta_buckets: HashMap<i64, u64> = HashMap::new();
    let (mut delta_count, mut delta_zero) = (0u64, 0u64);
    for round in 1..=3u64 {
        for i in 0..50 * round {
            let v = if i % 17 == 0 { 0 } else { (i * i * 7 + round * 13) % 5_000 };
            h.record(v);
            recorded.push(v);
        }
        let snap = r.flush();
        cum.send_once(&snap).unwrap();
        delta.send_once(&snap).unwrap();
        let c = decode_requests(&cum_rx.requests(), "protobuf").pop().unwrap();
        let d = decode_requests(&delta_rx.requests(), "protobuf").pop().unwrap();
        let cp = &metric(&c, "job_duration")["exponential_histogram"]["data_points"][0];
        let dp = &metric(&d, "job_duration")["exponential_histogram"]["data_points"][0];
        assert_eq!(cp["scale"], 5, "{cp}");
        let e = &cp["exemplars"][0];
        assert_eq!(
            (e["trace_id"].as_str(), e["span_id"].as_str(), float(&e["as_double"])),
            (Some("4bf92f3577b34da6a3ce929d0e0e4736"), Some("00f067aa0ba902b7"), 2.5),
            "{cp}"
        );
        for req in [&c, &d] {
            let p = &metric(req, "payload")["histogram"]["data_points"][0];
            assert_eq!(p["explicit_bounds"], serde_json::json!([64.0, 1024.0]), "{p}");
            assert!(metric(req, "payload").get("exponential_histogram").is_none());
        }
        // Expected from the recorded values: the OTLP index of v ms = ceil(32·log2(v/1000)) − 1.
        let mut expected: HashMap<i64, u64> = HashMap::new();
        for &v in recorded.iter().filter(|&&v| v > 0) {
            let i = (32.0 * (v as f64 / 1000.0).log2()).ceil() as i64 - 1;
            *expected.entry(i).or_default() += 1;
        }
        let buckets = |p: &Json| -> HashMap<i64, u64> {
            let offset = p["positive"]["offset"].as_i64().unwrap_or(0);
            let counts = p["positive"]["bucket_counts"].as_array().cloned().unwrap_or_default();
            counts.iter().enumerate().map(|(j, n)| (offset + j as i64, int(n))).filter(|&(_, n)| n > 0).collect()
        };
        assert_eq!(buckets(cp), expected, "round {round}");
        let zeros = recorded.iter().filter(|&&v| v == 0).count() as u64;
        assert_eq!(cp.get("zero_count").map_or(0, int), zeros);
        assert_eq!(int(&cp["count"]), recorded.len() as u64);
        let sum_s = recorded.iter().sum::<u64>() as f64 / 1000.0;
        assert!((float(&cp["sum"]) - sum_s).abs() < 1e-9, "{} vs {sum_s}", cp["sum"]);
        // Deltas: added up, the cumulative point.
        for (i, n) in buckets(dp) {
            *delta_buckets.entry(i).or_default() += n;
        }
        delta_count += int(&dp["count"]);
        delta_zero += dp.get("zero_count").map_or(0, int);
        assert_eq!(delta_buckets, expected, "round {round}: deltas add up");
        assert_eq!((delta_count, delta_zero), (recorded.len() as u64, zeros));
    }
}

#[test]
fn a_429_with_retry_after_is_retried_after_it() {
    let receiver = Receiver::start(|n| {
        Some(if n == 0 {
            (429, vec![("Retry-After", "1".into())], b"slow down".to_vec())
        } else {
            (200, vec![], vec![])
        })
    });
    let r = populated();
    let otlp = builder(&receiver.url()).build(&r).unwrap();
    let t = Instant::now();
    otlp.send_once(&r.flush()).unwrap();
    let took = t.elapsed();
    assert!(took >= Duration::from_secs(1), "waited for Retry-After (our backoff: 5 ms): {took:?}");
    assert!(took < Duration::from_secs(1) + SLACK, "{took:?}");
    let s = otlp.stats();
    assert_eq!((s.attempts, s.retries, s.sent_batches), (2, 1, 1), "{s:?}");
    assert_eq!(receiver.requests().len(), 2);
}

#[test]
fn a_503_is_retried_and_other_errors_are_not() {
    let receiver = Receiver::start(|n| Some(if n == 0 { (503, vec![], vec![]) } else { (200, vec![], vec![]) }));
    let r = populated();
    let otlp = builder(&receiver.url()).build(&r).unwrap();
    otlp.send_once(&r.flush()).unwrap();
    assert_eq!((otlp.stats().attempts, otlp.stats().sent_batches), (2, 1));
    // OTLP retries 429, 502, 503, 504 only: a 500 or a 400 is final.
    for status in [400, 500] {
        let receiver = Receiver::start(move |_| Some((status, vec![], b"no".to_vec())));
        let otlp = builder(&receiver.url()).build(&r).unwrap();
        let err = otlp.send_once(&r.flush()).unwrap_err();
        assert!(matches!(err, ExportError::Rejected { status: s, .. } if s == status), "{err:?}");
        assert_eq!((otlp.stats().attempts, otlp.stats().failed_batches), (1, 1));
    }
}

#[test]
fn partial_success_is_read_and_counted() {
    if !python_otlp() {
        return;
    }
    // The answer, encoded by the official package.
    let script = "import sys\nfrom opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2 as s\n\
                  r = s.ExportMetricsServiceResponse()\nr.partial_success.rejected_data_points = 3\n\
                  r.partial_success.error_message = 'too old'\nsys.stdout.buffer.write(r.SerializeToString())";
    let out = Command::new("python3").args(["-c", script]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let content_type = vec![("Content-Type", "application/x-protobuf".into())];
    check_three_rejected(builder, content_type, out.stdout, "a protobuf answer");
}

#[test]
fn a_hung_receiver_does_not_hold_shutdown() {
    let receiver = Receiver::start(|_| None);
    let r = populated();
    r.flush();
    let handle = builder(&receiver.url())
        .interval(Duration::from_millis(20))
        .timeout(Duration::from_secs(30))
        .shutdown_timeout(Duration::from_millis(300))
        .start(&r)
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while receiver.requests().is_empty() {
        assert!(Instant::now() < deadline, "no request reached the receiver");
        std::thread::sleep(Duration::from_millis(5));
    }
    let t = Instant::now();
    let stats = handle.shutdown();
    let took = t.elapsed();
    assert!(took < Duration::from_millis(300) + SLACK, "{took:?}");
    assert!(stats.failed_batches >= 1 && stats.sent_batches == 0, "{stats:?}");
}

#[test]
fn the_background_thread_pushes_each_new_snapshot() {
    let receiver = Receiver::ok();
    let r = Registry::builder().manual().build();
    let c = r.counter("ticks_total").build().unwrap();
    let handle = builder(&receiver.url()).interval(Duration::from_millis(10)).start(&r).unwrap();
    for _ in 0..3 {
        c.inc();
        r.flush();
        std::thread::sleep(Duration::from_millis(40));
    }
    let stats = handle.shutdown();
    assert!(stats.sent_batches >= 3, "{stats:?}");
    assert_eq!(receiver.requests().len() as u64, stats.sent_batches);
    assert!(receiver.requests().iter().all(|q| !q.body.is_empty() && !q.headers.contains_key("content-encoding")));
}
