//! The OTLP exporter over real HTTP on loopback, against in-process receivers whose request
//! bodies are decoded by the official Python `opentelemetry-proto` package (not by our prost
//! types): every value is checked against the snapshot and the text export (sums, gauges,
//! histogram buckets, summaries, attributes, exemplar ids, resource, start times,
//! temporality); delta pushes add back up to the cumulative totals; and receivers that answer
//! 429 with `Retry-After`, 503, 400, `partial_success` (encoded by Python too), or hang.
//!
//! Without `python3` and `opentelemetry-proto` the decoding tests print a SKIPPED line (and
//! fail under CI=true): `bash .ci/install` installs the package.

#![cfg(feature = "otlp")]

use std::{
    collections::HashMap,
    io::{Read, Write},
    net::{SocketAddr, TcpListener, TcpStream},
    process::Command,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Mutex,
    },
    thread::JoinHandle,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use serde_json::Value as Json;
use shardmetrics::{
    export::{
        otlp::{Compression, EnvConfig, Histograms, OtlpBuilder, Temporality},
        prometheus, Backoff, ExportError, ExporterBuilder,
    },
    self_metrics,
    series::{Series, Value},
    Registry, Snapshot, Unit,
};
use shardmetrics_test_support as common;

/// What a loaded 2-core machine may add to a bound on wall time.
const SLACK: Duration = Duration::from_millis(1500);

// ---------------------------------------------------------------------------------------------
// A loopback receiver.

/// One request as the receiver read it.
#[derive(Debug, Clone)]
struct Request {
    /// Lower-cased header names.
    headers: HashMap<String, String>,
    path: String,
    body: Vec<u8>,
}

/// An answer: status, extra header lines, body.
type Answer = (u16, Vec<(&'static str, String)>, Vec<u8>);

/// A listener whose thread reads each request, records it and answers what `answer` says for
/// the n-th request (`None`: keep the connection and never answer). Stops when dropped.
struct Receiver {
    addr: SocketAddr,
    requests: Arc<Mutex<Vec<Request>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Receiver {
    fn start(answer: impl Fn(usize) -> Option<Answer> + Send + 'static) -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let requests = Arc::new(Mutex::new(Vec::new()));
        let (s, reqs) = (stop.clone(), requests.clone());
        let thread = std::thread::spawn(move || {
            let mut kept = Vec::new();
            while !s.load(Ordering::Relaxed) {
                let Ok((mut stream, _)) = listener.accept() else {
                    std::thread::sleep(Duration::from_millis(2));
                    continue;
                };
                stream.set_nonblocking(false).unwrap();
                stream.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
                let Some(req) = read_request(&mut stream) else { continue };
                let n = {
                    let mut all = reqs.lock().unwrap();
                    all.push(req);
                    all.len() - 1
                };
                match answer(n) {
                    Some((status, headers, body)) => {
                        let mut head =
                            format!("HTTP/1.1 {status} X\r\nContent-Length: {}\r\nConnection: close\r\n", body.len());
                        for (k, v) in headers {
                            head.push_str(&format!("{k}: {v}\r\n"));
                        }
                        head.push_str("\r\n");
                        let _ = stream.write_all(head.as_bytes());
                        let _ = stream.write_all(&body);
                        let _ = stream.flush();
                    }
                    None => kept.push(stream),
                }
            }
        });
        Receiver { addr, requests, stop, thread: Some(thread) }
    }

    fn ok() -> Receiver {
        Receiver::start(|_| Some((200, vec![("Content-Type", "application/x-protobuf".into())], Vec::new())))
    }

    fn url(&self) -> String {
        format!("http://{}/v1/metrics", self.addr)
    }

    fn requests(&self) -> Vec<Request> {
        self.requests.lock().unwrap().clone()
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn read_request(stream: &mut TcpStream) -> Option<Request> {
    let mut raw = Vec::new();
    let mut buf = [0u8; 8192];
    let head_end = loop {
        let n = stream.read(&mut buf).ok().filter(|&n| n > 0)?;
        raw.extend_from_slice(&buf[..n]);
        if let Some(i) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
    };
    let head = String::from_utf8_lossy(&raw[..head_end]).into_owned();
    let mut lines = head.lines();
    let path = lines.next()?.split(' ').nth(1)?.to_owned();
    let headers: HashMap<String, String> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let length: usize = headers.get("content-length").and_then(|v| v.parse().ok()).unwrap_or(0);
    let mut body = raw[head_end..].to_vec();
    while body.len() < length {
        let n = stream.read(&mut buf).ok().filter(|&n| n > 0)?;
        body.extend_from_slice(&buf[..n]);
    }
    Some(Request { headers, path, body })
}

// ---------------------------------------------------------------------------------------------
// The independent decoder.

/// Gunzips (Python's gzip) when the request says so, decodes with the official
/// `opentelemetry-proto` classes, and prints `json_format.MessageToDict` with the protocol's
/// field names; trace and span ids are turned from base64 into hex.
const DECODE: &str = r#"
import base64, gzip, json, sys
from google.protobuf import json_format
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2 as svc
out = []
for path, encoding in zip(sys.argv[1::2], sys.argv[2::2]):
    data = open(path, "rb").read()
    if encoding == "gzip":
        data = gzip.decompress(data)
    req = svc.ExportMetricsServiceRequest()
    req.ParseFromString(data)
    # Every byte understood: nothing unknown (or duplicated) that the decoder dropped.
    assert len(req.SerializeToString()) == len(data), "re-serialises to a different length"
    d = json_format.MessageToDict(req, preserving_proto_field_name=True)
    def ids(x):
        if isinstance(x, dict):
            for k in ("trace_id", "span_id"):
                if k in x:
                    x[k] = base64.b64decode(x[k]).hex()
            for v in x.values():
                ids(v)
        elif isinstance(x, list):
            for v in x:
                ids(v)
    ids(d)
    out.append(d)
print(json.dumps(out))
"#;

/// Whether the official package is there (a SKIPPED line, or a failure under CI, if not).
fn python_otlp() -> bool {
    common::python_module("google.protobuf") && common::python_module("opentelemetry.proto")
}

/// Decodes request bodies with Python, one JSON object each.
fn decode(requests: &[Request]) -> Vec<Json> {
    let dir = common::temp_dir("otlp-python");
    let mut args = vec!["-c".to_owned(), DECODE.to_owned()];
    for (i, r) in requests.iter().enumerate() {
        let path = dir.join(format!("body{i}.bin"));
        std::fs::write(&path, &r.body).unwrap();
        args.push(path.display().to_string());
        args.push(r.headers.get("content-encoding").cloned().unwrap_or_else(|| "none".into()));
    }
    let out = Command::new("python3").args(&args).output().expect("python3");
    let _ = std::fs::remove_dir_all(&dir);
    assert!(out.status.success(), "python failed: {}", String::from_utf8_lossy(&out.stderr));
    match serde_json::from_slice(&out.stdout).unwrap() {
        Json::Array(v) => v,
        other => panic!("{other}"),
    }
}

/// A protobuf-JSON 64-bit integer (a string) or a number, as u64.
fn int(v: &Json) -> u64 {
    match v {
        Json::String(s) => s.parse().unwrap(),
        Json::Number(n) => n.as_u64().unwrap(),
        Json::Null => 0,
        other => panic!("not an integer: {other}"),
    }
}

fn float(v: &Json) -> f64 {
    v.as_f64().unwrap_or_else(|| panic!("not a number: {v}"))
}

fn nanos(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).unwrap().as_nanos() as u64
}

/// Every metric of a decoded request.
fn metrics(req: &Json) -> &Vec<Json> {
    req["resource_metrics"][0]["scope_metrics"][0]["metrics"].as_array().unwrap()
}

fn metric<'a>(req: &'a Json, name: &str) -> &'a Json {
    metrics(req).iter().find(|m| m["name"] == name).unwrap_or_else(|| panic!("no metric {name} in {req}"))
}

/// The attributes of a point or resource as (key, string value) pairs, sorted.
fn attrs(v: &Json) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = v["attributes"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|kv| {
                    (kv["key"].as_str().unwrap().to_owned(), kv["value"]["string_value"].as_str().unwrap().to_owned())
                })
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out
}

fn labels(s: &Series<'_>) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = s.labels().iter().map(|(k, v)| (k.to_owned(), v.to_owned())).collect();
    out.sort();
    out
}

/// The data point of `data` (`sum`, `gauge`, …) with these attributes.
fn point<'a>(m: &'a Json, data: &str, want: &[(String, String)]) -> &'a Json {
    m[data]["data_points"]
        .as_array()
        .unwrap_or_else(|| panic!("{} has no {data}: {m}", m["name"]))
        .iter()
        .find(|p| attrs(p) == want)
        .unwrap_or_else(|| panic!("no point {want:?} in {m}"))
}

/// The text export's `_bucket` samples of one histogram series: (`le`, cumulative count).
fn text_buckets(text: &str, name: &str, s: &Series<'_>) -> Vec<(String, u64)> {
    let prefix = format!("{name}_bucket{{");
    text.lines()
        .filter_map(|l| l.strip_prefix(&prefix))
        .filter_map(|rest| {
            let (pairs, value) = rest.rsplit_once("} ")?;
            let mut le = None;
            let mut other = Vec::new();
            for pair in pairs.split(',') {
                let (k, v) = pair.split_once('=')?;
                let v = v.trim_matches('"').to_owned();
                if k == "le" {
                    le = Some(v);
                } else {
                    other.push((k.to_owned(), v));
                }
            }
            other.sort();
            (other == labels(s)).then(|| (le.unwrap(), value.parse().unwrap()))
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// The registry under test.

fn populated() -> Registry {
    let r = Registry::builder().manual().build();
    let requests = r.counter("http_requests_total").help("Requests served").family(&["route", "status"]).unwrap();
    requests.with(&["/api", "200"]).add(41);
    requests.with(&["/api", "500"]).add(2);
    requests.with(&["/static", "200"]).inc_with_exemplar(&[("trace_id", "0af7651916cd43dd8448eb211c80319c")]);
    r.counter("cpu_seconds_total").unit(Unit::Nanoseconds).build().unwrap().add(2_250_000_000);
    r.gauge("temperature").label("room", "lab").build().unwrap().set(-12.25);
    r.gauge("queue_wait").unit(Unit::Milliseconds).build().unwrap().set(7.5);
    let latency = r
        .histogram("request_duration")
        .help("Latency")
        .unit(Unit::Nanoseconds)
        .quantiles(&[0.5, 0.9, 0.99])
        .label("route", "/api")
        .build()
        .unwrap();
    for v in 1..=200u64 {
        latency.record(v * 1_000_000);
    }
    latency.record_with_exemplar(
        3_500_000_000,
        &[("trace_id", "4bf92f3577b34da6a3ce929d0e0e4736"), ("span_id", "00f067aa0ba902b7")],
    );
    let sizes = r.histogram("payload_bytes").unit(Unit::Bytes).buckets(&[64.0, 1024.0, 65536.0]).build().unwrap();
    for v in [10, 100, 1000, 10_000, 100_000] {
        sizes.record(v);
    }
    r
}

fn builder(url: &str) -> OtlpBuilder {
    OtlpBuilder::from_config(EnvConfig::default())
        .endpoint(url)
        .service_name("otlp-test")
        .resource_attribute("deployment.environment", "ci")
        .backoff(Backoff::new().initial(Duration::from_millis(5)).max_attempts(3))
}

/// The OTLP name and UCUM unit the test expects for a family (the compatibility rules).
fn expected_name(s: &Series<'_>) -> (&'static str, &'static str) {
    match s.name() {
        "http_requests_total" => ("http_requests", ""),
        "cpu_seconds_total" => ("cpu", "s"),
        "temperature" => ("temperature", ""),
        "queue_wait" => ("queue_wait", "ms"),
        "request_duration" => ("request_duration", "s"),
        "payload_bytes" => ("payload", "By"),
        n if n.starts_with("shardmetrics_") => ("", ""),
        other => panic!("unexpected family {other}"),
    }
}

/// Checks every series of `snap` in the decoded request `req` (cumulative).
fn check_cumulative(req: &Json, snap: &Snapshot, registry: &Registry) {
    let start = nanos(registry.started_at());
    let now = nanos(snap.taken_at());
    let text = prometheus::render(snap);
    for s in snap.series() {
        let (name, unit) = expected_name(&s);
        if name.is_empty() {
            continue; // self-metrics: checked by count below
        }
        let m = metric(req, name);
        assert_eq!(m["unit"].as_str().unwrap_or(""), unit, "{name}");
        let want = labels(&s);
        match s.value() {
            Value::Counter(c) => {
                assert_eq!(m["sum"]["is_monotonic"], true);
                assert_eq!(m["sum"]["aggregation_temporality"], "AGGREGATION_TEMPORALITY_CUMULATIVE");
                let p = point(m, "sum", &want);
                assert_eq!((int(&p["start_time_unix_nano"]), int(&p["time_unix_nano"])), (start, now), "{name}");
                if s.family().unit().is_time() {
                    assert_eq!(float(&p["as_double"]), c.total as f64 / 1e9, "{name}");
                } else {
                    assert_eq!(int(&p["as_int"]), c.total, "{name}");
                }
            }
            Value::Gauge(g) => {
                let p = point(m, "gauge", &want);
                assert_eq!(float(&p["as_double"]), g, "{name}");
                assert_eq!(int(&p["time_unix_nano"]), now);
            }
            Value::Histogram(h) => {
                assert_eq!(m["histogram"]["aggregation_temporality"], "AGGREGATION_TEMPORALITY_CUMULATIVE");
                let p = point(m, "histogram", &want);
                assert_eq!((int(&p["start_time_unix_nano"]), int(&p["time_unix_nano"])), (start, now), "{name}");
                assert_eq!(int(&p["count"]), h.count(), "{name}");
                let scale = if s.family().unit().is_time() { 1e9 } else { 1.0 };
                assert_eq!(float(&p["sum"]), h.sum() as f64 / scale, "{name}");
                assert_eq!(float(&p["min"]), h.min().unwrap() as f64 / scale, "{name}");
                assert_eq!(float(&p["max"]), h.max().unwrap() as f64 / scale, "{name}");
                // Bounds and counts: exactly the text export's `le` buckets, de-cumulated.
                let text_name = if name == "payload" { "payload_bytes" } else { "request_duration_seconds" };
                let buckets = text_buckets(&text, text_name, &s);
                let bounds: Vec<f64> = p["explicit_bounds"].as_array().unwrap().iter().map(float).collect();
                let counts: Vec<u64> = p["bucket_counts"].as_array().unwrap().iter().map(int).collect();
                assert_eq!(counts.len(), bounds.len() + 1);
                assert_eq!(buckets.len(), counts.len(), "{name}: every `le` of the text export, +Inf included");
                assert_eq!(counts.iter().sum::<u64>(), h.count());
                let mut cumulative = 0;
                for (i, (le, c)) in buckets.iter().enumerate() {
                    if le == "+Inf" {
                        assert_eq!(*c, h.count());
                        continue;
                    }
                    assert_eq!(le.parse::<f64>().unwrap(), bounds[i], "{name} bound {i}");
                    cumulative += counts[i];
                    assert_eq!(cumulative, *c, "{name} le={le}");
                }
            }
        }
    }
    // Exemplars: the counter's trace id, the histogram's trace and span ids, as bytes.
    let c = point(
        metric(req, "http_requests"),
        "sum",
        &[("route".into(), "/static".into()), ("status".into(), "200".into())],
    );
    assert_eq!(c["exemplars"][0]["trace_id"], "0af7651916cd43dd8448eb211c80319c");
    assert_eq!(int(&c["exemplars"][0]["as_int"]), 1);
    let h = point(metric(req, "request_duration"), "histogram", &[("route".into(), "/api".into())]);
    let e = &h["exemplars"][0];
    assert_eq!(
        (e["trace_id"].as_str(), e["span_id"].as_str()),
        (Some("4bf92f3577b34da6a3ce929d0e0e4736"), Some("00f067aa0ba902b7"))
    );
    assert_eq!(float(&e["as_double"]), 3.5);
    // The summary of the quantile series.
    let q = point(metric(req, "request_duration_quantiles"), "summary", &[("route".into(), "/api".into())]);
    let hist = snap.histogram("request_duration", &[("route", "/api")]).unwrap();
    assert_eq!(int(&q["count"]), hist.count());
    let qs = q["quantile_values"].as_array().unwrap();
    assert_eq!(qs.len(), 3);
    for (qv, want) in qs.iter().zip([0.5, 0.9, 0.99]) {
        assert_eq!(float(&qv["quantile"]), want);
        assert_eq!(float(&qv["value"]), hist.quantile(want).unwrap() as f64 / 1e9);
    }
    // Resource and scope.
    let resource = &req["resource_metrics"][0]["resource"];
    let ra = attrs(resource);
    for (k, v) in [
        ("service.name", "otlp-test"),
        ("deployment.environment", "ci"),
        ("telemetry.sdk.name", "shardmetrics"),
        ("telemetry.sdk.language", "rust"),
        ("telemetry.sdk.version", env!("CARGO_PKG_VERSION")),
    ] {
        assert!(ra.contains(&(k.to_owned(), v.to_owned())), "{k}={v} in {ra:?}");
    }
    assert_eq!(req["resource_metrics"][0]["scope_metrics"][0]["scope"]["name"], "shardmetrics");
    // One point per series (the self-metrics included) plus the summary point.
    let points: usize = metrics(req)
        .iter()
        .map(|m| {
            ["sum", "gauge", "histogram", "summary"]
                .iter()
                .filter_map(|k| m[k]["data_points"].as_array().map(Vec::len))
                .sum::<usize>()
        })
        .sum();
    assert_eq!(points, snap.series().len() + 1);
}

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
    let reqs = receiver.requests();
    assert_eq!(reqs.len(), 1);
    let req = &reqs[0];
    assert_eq!(req.path, "/v1/metrics");
    assert_eq!(req.headers.get("content-type").map(String::as_str), Some("application/x-protobuf"));
    assert_eq!(req.headers.get("content-encoding").map(String::as_str), Some("gzip"));
    assert_eq!(req.headers.get("x-tenant").map(String::as_str), Some("blue"));
    let decoded = decode(&reqs);
    check_cumulative(&decoded[0], &snap, &r);
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
    let cums = decode(&cum_rx.requests());
    let deltas = decode(&delta_rx.requests());
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
        let c = decode(&cum_rx.requests()).pop().unwrap();
        let d = decode(&delta_rx.requests()).pop().unwrap();
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
    let answer = out.stdout;
    let receiver =
        Receiver::start(move |_| Some((200, vec![("Content-Type", "application/x-protobuf".into())], answer.clone())));
    let r = populated();
    let otlp = builder(&receiver.url()).build(&r).unwrap();
    let snap = r.flush();
    otlp.send_once(&snap).unwrap();
    let s = otlp.stats();
    let points = snap.series().len() as u64 + 1;
    assert_eq!((s.sent_batches, s.sent_samples, s.rejected_samples), (1, points - 3, 3), "{s:?}");
    let after = r.flush();
    let outcome = |o| after.counter(self_metrics::EXPORT_SAMPLES, &[("exporter", "otlp"), ("outcome", o)]);
    assert_eq!((outcome("sent"), outcome("rejected")), (Some(points - 3), Some(3)));
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
