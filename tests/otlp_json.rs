//! OTLP/HTTP JSON (`Protocol::HttpJson`) over real HTTP on loopback: the exporter's JSON pushes
//! are parsed by the official Python `opentelemetry-proto` package with protobuf's
//! `json_format.Parse` (strict: an unknown or misspelt field fails it), after turning the hex
//! `traceId`/`spanId` into the base64 that `json_format` expects for bytes — what OTLP/JSON
//! receivers do specially. Every value is checked against the snapshot; the JSON and the
//! protobuf encodings of the same requests decode to the same message; the environment selects
//! the protocol (and `grpc` fails the build); a JSON answer's `partialSuccess` is counted.
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
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use serde_json::Value as Json;
use shardmetrics::{
    export::{
        otlp::{
            encode_body, json,
            proto::{self, any_value, AnyValue, KeyValue},
            Compression, Encoder, EnvConfig, Histograms, OtlpBuilder, Protocol, Temporality,
        },
        Backoff, ExportError, ExporterBuilder,
    },
    self_metrics,
    series::{Series, Value},
    Registry, Snapshot, Unit,
};
use shardmetrics_test_support as common;

// ---------------------------------------------------------------------------------------------
// A loopback receiver (a small copy of tests/otlp.rs's).

/// One request as the receiver read it.
#[derive(Debug, Clone)]
struct Request {
    /// Lower-cased header names.
    headers: HashMap<String, String>,
    path: String,
    body: Vec<u8>,
}

impl Request {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(String::as_str)
    }

    /// The body, gunzipped when the request says so.
    fn plain_body(&self) -> Vec<u8> {
        if self.header("content-encoding") == Some("gzip") {
            let mut out = Vec::new();
            flate2::read::GzDecoder::new(self.body.as_slice()).read_to_end(&mut out).unwrap();
            out
        } else {
            self.body.clone()
        }
    }
}

/// An answer: status, extra header lines, body.
type Answer = (u16, Vec<(&'static str, String)>, Vec<u8>);

/// A listener whose thread reads each request, records it and answers what `answer` says for
/// the n-th request. Stops when dropped.
struct Receiver {
    addr: SocketAddr,
    requests: Arc<Mutex<Vec<Request>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Receiver {
    fn start(answer: impl Fn(usize) -> Answer + Send + 'static) -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let requests = Arc::new(Mutex::new(Vec::new()));
        let (s, reqs) = (stop.clone(), requests.clone());
        let thread = std::thread::spawn(move || {
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
                let (status, headers, body) = answer(n);
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
        });
        Receiver { addr, requests, stop, thread: Some(thread) }
    }

    /// Answers 200 with an empty JSON response, as a Collector does to a JSON request.
    fn ok() -> Receiver {
        Receiver::start(|_| (200, vec![("Content-Type", "application/json".into())], b"{}".to_vec()))
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

/// Decodes bodies (plain: the test gunzips) with the official `opentelemetry-proto` classes and
/// prints `json_format.MessageToDict` of each with the protocol's field names, trace and span
/// ids in hex. A `json` body is parsed by `json_format.Parse` after its hex `traceId`/`spanId`
/// became base64 (what OTLP/JSON receivers do before protobuf's JSON parser); a `protobuf` body
/// by `ParseFromString`, and must re-serialise to its own length (nothing unknown dropped).
const DECODE: &str = r#"
import base64, json, sys
from google.protobuf import json_format
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2 as svc
def walk(x, keys, conv):
    if isinstance(x, dict):
        for k in keys:
            if k in x:
                x[k] = conv(x[k])
        for v in x.values():
            walk(v, keys, conv)
    elif isinstance(x, list):
        for v in x:
            walk(v, keys, conv)
out = []
for path, kind in zip(sys.argv[1::2], sys.argv[2::2]):
    data = open(path, "rb").read()
    req = svc.ExportMetricsServiceRequest()
    if kind == "json":
        d = json.loads(data.decode("utf-8"))
        walk(d, ("traceId", "spanId"), lambda h: base64.b64encode(bytes.fromhex(h)).decode())
        json_format.Parse(json.dumps(d), req)  # strict: unknown fields fail
    else:
        req.ParseFromString(data)
        assert len(req.SerializeToString()) == len(data), "re-serialises to a different length"
    d = json_format.MessageToDict(req, preserving_proto_field_name=True)
    walk(d, ("trace_id", "span_id"), lambda b: base64.b64decode(b).hex())
    out.append(d)
print(json.dumps(out))
"#;

/// Whether the official package is there (a SKIPPED line, or a failure under CI, if not).
fn python_otlp() -> bool {
    common::python_module("google.protobuf") && common::python_module("opentelemetry.proto")
}

/// Decodes (body, "json" | "protobuf") pairs with Python, one object each.
fn decode(bodies: &[(Vec<u8>, &str)]) -> Vec<Json> {
    let dir = common::temp_dir("otlp-json-python");
    let mut args = vec!["-c".to_owned(), DECODE.to_owned()];
    for (i, (body, kind)) in bodies.iter().enumerate() {
        let path = dir.join(format!("body{i}.bin"));
        std::fs::write(&path, body).unwrap();
        args.push(path.display().to_string());
        args.push((*kind).to_owned());
    }
    let out = Command::new("python3").args(&args).output().expect("python3");
    let _ = std::fs::remove_dir_all(&dir);
    assert!(out.status.success(), "python failed: {}", String::from_utf8_lossy(&out.stderr));
    match serde_json::from_slice(&out.stdout).unwrap() {
        Json::Array(v) => v,
        other => panic!("{other}"),
    }
}

/// The JSON requests the receiver got, decoded by Python.
fn decode_requests(requests: &[Request]) -> Vec<Json> {
    decode(&requests.iter().map(|r| (r.plain_body(), "json")).collect::<Vec<_>>())
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

fn metric<'a>(req: &'a Json, name: &str) -> &'a Json {
    req["resource_metrics"][0]["scope_metrics"][0]["metrics"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == name)
        .unwrap_or_else(|| panic!("no metric {name} in {req}"))
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

/// What the OTLP/JSON rules say of the raw body, before any JSON-to-protobuf parser forgives
/// it: lowerCamelCase keys only, the temporality enum a number, 64-bit integers strings, ids
/// lowercase hex.
fn check_raw(body: &[u8]) {
    let raw: Json = serde_json::from_slice(body).unwrap_or_else(|e| panic!("not JSON ({e})"));
    fn walk(v: &Json, f: &mut dyn FnMut(&str, &Json)) {
        match v {
            Json::Object(m) => {
                for (k, v) in m {
                    f(k, v);
                    walk(v, f);
                }
            }
            Json::Array(a) => a.iter().for_each(|v| walk(v, f)),
            _ => {}
        }
    }
    let mut seen: HashMap<String, usize> = HashMap::new();
    walk(&raw, &mut |k, v| {
        assert!(k.chars().all(|c| c.is_ascii_alphanumeric()) && k.starts_with(|c: char| c.is_ascii_lowercase()), "{k}");
        *seen.entry(k.to_owned()).or_default() += 1;
        match k {
            "aggregationTemporality" => assert!(v.is_u64(), "an enum is its number: {v}"),
            "timeUnixNano" | "startTimeUnixNano" | "count" | "asInt" => assert!(v.is_string(), "{k}: {v}"),
            "bucketCounts" => assert!(v.as_array().unwrap().iter().all(Json::is_string), "{v}"),
            "traceId" | "spanId" => {
                let s = v.as_str().unwrap();
                let len = if k == "traceId" { 32 } else { 16 };
                assert!(s.len() == len && s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)), "{s}");
            }
            _ => {}
        }
    });
    for k in ["resourceMetrics", "scopeMetrics", "dataPoints", "timeUnixNano", "aggregationTemporality", "traceId"] {
        assert!(seen.contains_key(k), "no {k} in {raw}");
    }
}

// ---------------------------------------------------------------------------------------------
// The registry under test (tests/otlp.rs's).

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
        .protocol(Protocol::HttpJson)
        .service_name("otlp-json-test")
        .resource_attribute("deployment.environment", "ci")
        .backoff(Backoff::new().initial(Duration::from_millis(5)).max_attempts(3))
}

/// The OTLP name the test expects for a family (empty: a self-metric, counted only).
fn expected_name(s: &Series<'_>) -> &'static str {
    match s.name() {
        "http_requests_total" => "http_requests",
        "cpu_seconds_total" => "cpu",
        "temperature" => "temperature",
        "queue_wait" => "queue_wait",
        "request_duration" => "request_duration",
        "payload_bytes" => "payload",
        n if n.starts_with("shardmetrics_") => "",
        other => panic!("unexpected family {other}"),
    }
}

/// Checks every series of `snap` in the decoded cumulative request `req`; `exponential`: the
/// histograms were sent as exponential ones.
fn check_cumulative(req: &Json, snap: &Snapshot, registry: &Registry, exponential: bool) {
    let (start, now) = (nanos(registry.started_at()), nanos(snap.taken_at()));
    for s in snap.series() {
        let name = expected_name(&s);
        if name.is_empty() {
            continue;
        }
        let m = metric(req, name);
        let want = labels(&s);
        let scale = if s.family().unit().is_time() { 1e9 } else { 1.0 };
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
                assert_eq!((float(&p["as_double"]), int(&p["time_unix_nano"])), (g, now), "{name}");
            }
            Value::Histogram(h) if exponential => {
                let x = &m["exponential_histogram"];
                assert_eq!(x["aggregation_temporality"], "AGGREGATION_TEMPORALITY_CUMULATIVE");
                let p = point(m, "exponential_histogram", &want);
                assert_eq!((int(&p["start_time_unix_nano"]), int(&p["time_unix_nano"])), (start, now), "{name}");
                assert_eq!(int(&p["count"]), h.count(), "{name}");
                assert_eq!(float(&p["sum"]), h.sum() as f64 / scale, "{name}");
                let counts: u64 = p["positive"]["bucket_counts"].as_array().unwrap().iter().map(int).sum();
                assert_eq!(counts + p.get("zero_count").map_or(0, int), h.count(), "{name}: every value in a bucket");
                // The largest value lies in the last bucket: (base^(o+n−1), base^(o+n)].
                let scale_ = p["scale"].as_i64().unwrap() as f64;
                let last = p["positive"]["offset"].as_i64().unwrap_or(0) as f64
                    + p["positive"]["bucket_counts"].as_array().unwrap().len() as f64;
                let base = 2f64.powf(2f64.powf(-scale_));
                let max = h.max().unwrap() as f64 / scale;
                assert!(base.powf(last - 1.0) < max * (1.0 + 1e-12) && max <= base.powf(last) * (1.0 + 1e-12), "{p}");
            }
            Value::Histogram(h) => {
                assert_eq!(m["histogram"]["aggregation_temporality"], "AGGREGATION_TEMPORALITY_CUMULATIVE");
                let p = point(m, "histogram", &want);
                assert_eq!((int(&p["start_time_unix_nano"]), int(&p["time_unix_nano"])), (start, now), "{name}");
                assert_eq!(int(&p["count"]), h.count(), "{name}");
                assert_eq!(float(&p["sum"]), h.sum() as f64 / scale, "{name}");
                assert_eq!(float(&p["min"]), h.min().unwrap() as f64 / scale, "{name}");
                assert_eq!(float(&p["max"]), h.max().unwrap() as f64 / scale, "{name}");
                let bounds: Vec<f64> = p["explicit_bounds"].as_array().unwrap().iter().map(float).collect();
                let counts: Vec<u64> = p["bucket_counts"].as_array().unwrap().iter().map(int).collect();
                assert_eq!(counts.len(), bounds.len() + 1, "{name}");
                assert_eq!(counts.iter().sum::<u64>(), h.count(), "{name}");
                if name == "payload" {
                    assert_eq!(bounds, [64.0, 1024.0, 65536.0]);
                    assert_eq!(counts, [1, 2, 1, 1], "10 | 100, 1000 | 10000 | 100000, de-cumulated");
                }
            }
        }
    }
    // Exemplars: the counter's trace id, the histogram's trace and span ids.
    let c = point(
        metric(req, "http_requests"),
        "sum",
        &[("route".into(), "/static".into()), ("status".into(), "200".into())],
    );
    assert_eq!(c["exemplars"][0]["trace_id"], "0af7651916cd43dd8448eb211c80319c");
    assert_eq!(int(&c["exemplars"][0]["as_int"]), 1);
    let data = if exponential { "exponential_histogram" } else { "histogram" };
    let h = point(metric(req, "request_duration"), data, &[("route".into(), "/api".into())]);
    let e = &h["exemplars"][0];
    assert_eq!(
        (e["trace_id"].as_str(), e["span_id"].as_str()),
        (Some("4bf92f3577b34da6a3ce929d0e0e4736"), Some("00f067aa0ba902b7"))
    );
    assert_eq!(float(&e["as_double"]), 3.5);
    // The quantile series' summary.
    let q = point(metric(req, "request_duration_quantiles"), "summary", &[("route".into(), "/api".into())]);
    let hist = snap.histogram("request_duration", &[("route", "/api")]).unwrap();
    assert_eq!(int(&q["count"]), hist.count());
    let qs: Vec<(f64, f64)> =
        q["quantile_values"].as_array().unwrap().iter().map(|v| (float(&v["quantile"]), float(&v["value"]))).collect();
    let want: Vec<(f64, f64)> = [0.5, 0.9, 0.99].iter().map(|&x| (x, hist.quantile(x).unwrap() as f64 / 1e9)).collect();
    assert_eq!(qs, want);
    // Resource and scope.
    let ra = attrs(&req["resource_metrics"][0]["resource"]);
    for (k, v) in [
        ("service.name", "otlp-json-test"),
        ("deployment.environment", "ci"),
        ("telemetry.sdk.name", "shardmetrics"),
        ("telemetry.sdk.language", "rust"),
        ("telemetry.sdk.version", env!("CARGO_PKG_VERSION")),
    ] {
        assert!(ra.contains(&(k.to_owned(), v.to_owned())), "{k}={v} in {ra:?}");
    }
    let scope = &req["resource_metrics"][0]["scope_metrics"][0]["scope"];
    assert_eq!(
        (&scope["name"], &scope["version"]),
        (&Json::from("shardmetrics"), &Json::from(env!("CARGO_PKG_VERSION")))
    );
}

// ---------------------------------------------------------------------------------------------
// Tests.

#[test]
fn python_parses_every_value_of_a_json_push() {
    if !python_otlp() {
        return;
    }
    for (compression, exponential) in [(Compression::Gzip, false), (Compression::None, true)] {
        let receiver = Receiver::ok();
        let r = populated();
        let histograms = if exponential { Histograms::Exponential } else { Histograms::Explicit };
        let otlp = builder(&receiver.url())
            .compression(compression)
            .histograms(histograms)
            .header("X-Tenant", "blue")
            .build(&r)
            .unwrap();
        let snap = r.flush();
        otlp.send_once(&snap).unwrap();
        let reqs = receiver.requests();
        assert_eq!(reqs.len(), 1);
        let req = &reqs[0];
        assert_eq!(req.path, "/v1/metrics");
        assert_eq!(req.header("content-type"), Some("application/json"));
        let gzip = (compression == Compression::Gzip).then_some("gzip");
        assert_eq!(req.header("content-encoding"), gzip);
        assert_eq!(req.header("x-tenant"), Some("blue"));
        check_raw(&req.plain_body());
        let decoded = decode_requests(&reqs);
        check_cumulative(&decoded[0], &snap, &r, exponential);
        let stats = otlp.stats();
        let points = snap.series().len() as u64 + 1;
        assert_eq!((stats.sent_batches, stats.sent_samples, stats.rejected_samples), (1, points, 0), "{stats:?}");
    }
}

/// A request with every message and oneof case and the values JSON makes awkward: non-finite
/// and extreme doubles, the 64-bit extremes, escapes and non-ASCII text, bytes.
fn awkward_request() -> proto::ExportMetricsServiceRequest {
    use proto::{exponential_histogram_data_point::Buckets, metric::Data, number_data_point::Value as V};
    let kv = |key: &str, v| KeyValue { key: key.to_owned(), value: Some(AnyValue { value: Some(v) }) };
    let point = |v| proto::NumberDataPoint {
        attributes: vec![KeyValue::string("k", "tab\there \"q\" \\ \u{1} é 𝄞 \u{2028}")],
        start_time_unix_nano: 1,
        time_unix_nano: u64::MAX,
        value: Some(v),
        exemplars: vec![proto::Exemplar {
            filtered_attributes: vec![KeyValue::string("user", "")],
            time_unix_nano: 2,
            value: Some(proto::exemplar::Value::AsInt(-1)),
            span_id: vec![0xff; 8],
            trace_id: (0u8..16).collect(),
        }],
        flags: 1,
    };
    let doubles = [f64::NAN, f64::INFINITY, f64::NEG_INFINITY, 1e300, -0.0, 0.0, 5e-324, f64::MAX, 0.1, 1e21, 1e-7];
    let metric = |name: &str, data| proto::Metric {
        name: name.to_owned(),
        description: "d".to_owned(),
        unit: String::new(),
        data: Some(data),
        metadata: vec![kv("m", any_value::Value::BoolValue(true))],
    };
    let metrics = vec![
        metric(
            "ints",
            Data::Sum(proto::Sum {
                data_points: [i64::MIN, -1, 0, i64::MAX].into_iter().map(|v| point(V::AsInt(v))).collect(),
                aggregation_temporality: proto::AggregationTemporality::Delta as i32,
                is_monotonic: false,
            }),
        ),
        metric(
            "doubles",
            Data::Gauge(proto::Gauge { data_points: doubles.into_iter().map(|v| point(V::AsDouble(v))).collect() }),
        ),
        metric(
            "hist",
            Data::Histogram(proto::Histogram {
                data_points: vec![proto::HistogramDataPoint {
                    attributes: Vec::new(),
                    start_time_unix_nano: 0,
                    time_unix_nano: 3,
                    count: u64::MAX,
                    sum: Some(-0.0),
                    bucket_counts: vec![u64::MAX, 0],
                    explicit_bounds: vec![f64::NEG_INFINITY],
                    exemplars: Vec::new(),
                    flags: 0,
                    min: Some(f64::NAN),
                    max: Some(0.0),
                }],
                aggregation_temporality: proto::AggregationTemporality::Cumulative as i32,
            }),
        ),
        metric(
            "exp",
            Data::ExponentialHistogram(proto::ExponentialHistogram {
                data_points: vec![proto::ExponentialHistogramDataPoint {
                    attributes: Vec::new(),
                    start_time_unix_nano: 1,
                    time_unix_nano: 2,
                    count: 7,
                    sum: None,
                    scale: -4,
                    zero_count: 1,
                    positive: Some(Buckets { offset: -2, bucket_counts: vec![1, 0, 2] }),
                    negative: Some(Buckets { offset: 0, bucket_counts: vec![3] }),
                    flags: 0,
                    exemplars: Vec::new(),
                    min: Some(-1.5),
                    max: None,
                    zero_threshold: 1e-300,
                }],
                aggregation_temporality: proto::AggregationTemporality::Delta as i32,
            }),
        ),
        metric(
            "summary",
            Data::Summary(proto::Summary {
                data_points: vec![proto::SummaryDataPoint {
                    attributes: Vec::new(),
                    start_time_unix_nano: 1,
                    time_unix_nano: 2,
                    count: 3,
                    sum: 4.5,
                    quantile_values: vec![
                        proto::summary_data_point::ValueAtQuantile { quantile: 0.0, value: 0.0 },
                        proto::summary_data_point::ValueAtQuantile { quantile: 1.0, value: f64::INFINITY },
                    ],
                    flags: 0,
                }],
            }),
        ),
    ];
    proto::ExportMetricsServiceRequest {
        resource_metrics: vec![proto::ResourceMetrics {
            resource: Some(proto::Resource {
                attributes: vec![
                    kv("int", any_value::Value::IntValue(i64::MIN)),
                    kv("double", any_value::Value::DoubleValue(f64::NAN)),
                    kv("bytes", any_value::Value::BytesValue((0..=255).collect())),
                    kv("empty", any_value::Value::StringValue(String::new())),
                    kv(
                        "array",
                        any_value::Value::ArrayValue(proto::ArrayValue {
                            values: vec![AnyValue { value: Some(any_value::Value::DoubleValue(-0.0)) }],
                        }),
                    ),
                    kv(
                        "kvlist",
                        any_value::Value::KvlistValue(proto::KeyValueList {
                            values: vec![kv("nested", any_value::Value::BoolValue(false))],
                        }),
                    ),
                ],
                dropped_attributes_count: u32::MAX,
            }),
            scope_metrics: vec![proto::ScopeMetrics { scope: None, metrics, schema_url: "s".to_owned() }],
            schema_url: "r".to_owned(),
        }],
    }
}

/// The same requests, JSON- and protobuf-encoded, decode to the same message (compared as
/// `MessageToDict`): every request of a cumulative explicit-bucket encoder, of a delta
/// exponential one over three rounds, and an awkward hand-made one.
#[test]
fn json_and_protobuf_decode_to_the_same_message() {
    if !python_otlp() {
        return;
    }
    let r = populated();
    let resource = vec![("service.name".to_owned(), "same".to_owned())];
    let cumulative = Encoder::new(resource.clone(), Temporality::Cumulative, r.started_at());
    let delta = Encoder::new(resource, Temporality::Delta, r.started_at()).histograms(Histograms::Exponential);
    let c = r.counter("rounds_total").build().unwrap();
    let h = r.histogram("work").unit(Unit::Microseconds).build().unwrap();
    let mut requests = vec![awkward_request()];
    for round in 1..=3u64 {
        c.add(round);
        for v in 0..round * 20 {
            h.record(v * v * 37 % 100_000);
        }
        let snap = r.flush();
        requests.push(cumulative.encode(&snap).0);
        requests.push(delta.encode(&snap).0);
    }
    let mut bodies = Vec::new();
    for req in &requests {
        let text = json::encode(req);
        serde_json::from_str::<Json>(&text).unwrap_or_else(|e| panic!("invalid JSON ({e}): {text}"));
        bodies.push((text.into_bytes(), "json"));
        bodies.push((encode_body(req, Compression::None).unwrap(), "protobuf"));
    }
    let decoded = decode(&bodies);
    assert_eq!(decoded.len(), 2 * requests.len());
    for (i, pair) in decoded.chunks(2).enumerate() {
        if let Some(d) = difference(&pair[0], &pair[1], "") {
            panic!("request {i}: the JSON decode differs from the protobuf decode at {d}");
        }
    }
    // Spot checks that the awkward values came through as themselves.
    let awkward = &decoded[0];
    let doubles: Vec<&Json> = metric(awkward, "doubles")["gauge"]["data_points"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| &p["as_double"])
        .collect();
    assert_eq!(doubles[..3], [&Json::from("NaN"), &Json::from("Infinity"), &Json::from("-Infinity")]);
    assert_eq!(float(doubles[3]), 1e300);
    assert_eq!(float(doubles[6]), 5e-324);
    let ints = &metric(awkward, "ints")["sum"]["data_points"];
    assert_eq!(ints[0]["as_int"], i64::MIN.to_string());
    assert_eq!(ints[0]["time_unix_nano"], u64::MAX.to_string());
    assert_eq!(ints[0]["exemplars"][0]["trace_id"], "000102030405060708090a0b0c0d0e0f");
    assert_eq!(ints[0]["exemplars"][0]["span_id"], "ffffffffffffffff");
    assert_eq!(ints[0]["attributes"][0]["value"]["string_value"], "tab\there \"q\" \\ \u{1} é 𝄞 \u{2028}");
    let exp = &metric(awkward, "exp")["exponential_histogram"]["data_points"][0];
    assert_eq!((exp["scale"].as_i64(), float(&exp["zero_threshold"])), (Some(-4), 1e-300));
    assert_eq!(exp["negative"]["bucket_counts"][0], "3");
    // The encoders' delta and exponential requests really are what was compared.
    let last_delta = &decoded[2 * requests.len() - 2];
    let x = &metric(last_delta, "work")["exponential_histogram"];
    assert_eq!(x["aggregation_temporality"], "AGGREGATION_TEMPORALITY_DELTA");
    assert_eq!(int(&x["data_points"][0]["count"]), 60);
}

/// Where `a` and `b` first differ (a path and both values), if they do.
fn difference(a: &Json, b: &Json, path: &str) -> Option<String> {
    match (a, b) {
        (Json::Object(x), Json::Object(y)) => {
            let keys: std::collections::BTreeSet<&String> = x.keys().chain(y.keys()).collect();
            keys.into_iter().find_map(|k| {
                let null = Json::Null;
                difference(x.get(k).unwrap_or(&null), y.get(k).unwrap_or(&null), &format!("{path}.{k}"))
            })
        }
        (Json::Array(x), Json::Array(y)) if x.len() == y.len() => {
            x.iter().zip(y).enumerate().find_map(|(i, (a, b))| difference(a, b, &format!("{path}[{i}]")))
        }
        _ => (a != b).then(|| format!("{path}: {a} (JSON) vs {b} (protobuf)")),
    }
}

#[test]
fn the_environment_selects_json_and_grpc_fails_the_build() {
    let receiver = Receiver::ok();
    let r = populated();
    let env = |vars: Vec<(&'static str, String)>| {
        let (c, w) = EnvConfig::from_lookup(|k| vars.iter().find(|(n, _)| *n == k).map(|(_, v)| v.clone()));
        assert!(w.is_empty(), "{w:?}");
        c
    };
    let url = receiver.url();
    let config = env(vec![
        ("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", url.clone()),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc".into()),
        ("OTEL_EXPORTER_OTLP_METRICS_PROTOCOL", "http/json".into()),
        ("OTEL_EXPORTER_OTLP_COMPRESSION", "gzip".into()),
    ]);
    let otlp = OtlpBuilder::from_config(config).build(&r).unwrap();
    assert_eq!(otlp.protocol(), Protocol::HttpJson);
    otlp.send_once(&r.flush()).unwrap();
    let req = &receiver.requests()[0];
    assert_eq!((req.header("content-type"), req.header("content-encoding")), (Some("application/json"), Some("gzip")));
    check_raw(&req.plain_body());

    let grpc = env(vec![("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", url), ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc".into())]);
    let err = OtlpBuilder::from_config(grpc.clone()).build(&r).unwrap_err();
    assert!(matches!(err, ExportError::Unsupported { .. }), "{err:?}");
    let message = err.to_string();
    assert!(message.contains("gRPC") && message.contains("http/protobuf") && message.contains("4318"), "{message}");
    // The builder's protocol overrides the environment's grpc.
    assert_eq!(
        OtlpBuilder::from_config(grpc).protocol(Protocol::HttpProtobuf).build(&r).unwrap().protocol(),
        Protocol::HttpProtobuf
    );
}

/// A JSON answer's `partialSuccess` (`rejectedDataPoints` as a string or a number), a protobuf
/// answer to a JSON request (believed by its Content-Type), and a JSON answer without a
/// Content-Type (read in the request's encoding) are all counted as rejected points.
#[test]
fn partial_success_in_the_answer_is_counted() {
    // ExportMetricsServiceResponse { partial_success { rejected_data_points: 3, error_message: "too old" } }.
    let protobuf = b"\x0a\x0b\x08\x03\x12\x07too old".to_vec();
    let answers: Vec<(Option<&str>, Vec<u8>)> = vec![
        (
            Some("application/json"),
            br#"{"partialSuccess":{"rejectedDataPoints":"3","errorMessage":"too old"}}"#.to_vec(),
        ),
        (Some("application/json; charset=utf-8"), br#"{"partialSuccess": {"rejectedDataPoints": 3}}"#.to_vec()),
        (Some("application/x-protobuf"), protobuf),
        (None, br#"{"partialSuccess":{"errorMessage":"x","rejectedDataPoints":"3"}}"#.to_vec()),
    ];
    for (content_type, body) in answers {
        let headers: Vec<(&'static str, String)> =
            content_type.map(|t| ("Content-Type", t.to_owned())).into_iter().collect();
        let receiver = Receiver::start(move |_| (200, headers.clone(), body.clone()));
        let r = populated();
        let otlp = builder(&receiver.url()).build(&r).unwrap();
        let snap = r.flush();
        otlp.send_once(&snap).unwrap();
        let s = otlp.stats();
        let points = snap.series().len() as u64 + 1;
        assert_eq!((s.sent_batches, s.sent_samples, s.rejected_samples), (1, points - 3, 3), "{content_type:?}: {s:?}");
        let after = r.flush();
        let outcome = |o| after.counter(self_metrics::EXPORT_SAMPLES, &[("exporter", "otlp"), ("outcome", o)]);
        assert_eq!((outcome("sent"), outcome("rejected")), (Some(points - 3), Some(3)), "{content_type:?}");
    }
    // An answer that is not an ExportMetricsServiceResponse rejects nothing.
    let receiver = Receiver::start(|_| (200, vec![("Content-Type", "application/json".into())], b"<html>".to_vec()));
    let r = populated();
    let otlp = builder(&receiver.url()).build(&r).unwrap();
    otlp.send_once(&r.flush()).unwrap();
    assert_eq!((otlp.stats().sent_batches, otlp.stats().rejected_samples), (1, 0));
}
