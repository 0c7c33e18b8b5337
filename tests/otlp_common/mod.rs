//! What tests/otlp.rs (protobuf) and tests/otlp_json.rs (JSON) share: a loopback HTTP
//! receiver, the decoder built on Python's official `opentelemetry-proto` package, helpers
//! that read its `MessageToDict` output, the registry both push, and the check of a decoded
//! cumulative push against the snapshot and the text export.

// Each test binary uses only some of these (e.g. `Receiver::ok` vs `Receiver::ok_json`).
#![allow(dead_code)]

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
        otlp::{EnvConfig, OtlpBuilder},
        prometheus, Backoff, ExporterBuilder,
    },
    self_metrics,
    series::{Series, Value},
    Registry, Snapshot, Unit,
};
use shardmetrics_test_support as common;

// ---------------------------------------------------------------------------------------------
// A loopback receiver.

/// One request as the receiver read it.
#[derive(Debug, Clone)]
pub struct Request {
    /// Lower-cased header names.
    pub headers: HashMap<String, String>,
    pub path: String,
    pub body: Vec<u8>,
}

impl Request {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(String::as_str)
    }

    /// The body, gunzipped (by flate2) when the request says so.
    pub fn plain_body(&self) -> Vec<u8> {
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
pub type Answer = (u16, Vec<(&'static str, String)>, Vec<u8>);

/// A listener whose thread reads each request, records it and answers what `answer` says for
/// the n-th request (`None`: keep the connection and never answer). Stops when dropped.
pub struct Receiver {
    addr: SocketAddr,
    requests: Arc<Mutex<Vec<Request>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Receiver {
    pub fn start(answer: impl Fn(usize) -> Option<Answer> + Send + 'static) -> Receiver {
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

    /// Answers 200 with an empty protobuf response.
    pub fn ok() -> Receiver {
        Receiver::start(|_| Some((200, vec![("Content-Type", "application/x-protobuf".into())], Vec::new())))
    }

    /// Answers 200 with an empty JSON response, as a Collector does to a JSON request.
    pub fn ok_json() -> Receiver {
        Receiver::start(|_| Some((200, vec![("Content-Type", "application/json".into())], b"{}".to_vec())))
    }

    pub fn url(&self) -> String {
        format!("http://{}/v1/metrics", self.addr)
    }

    pub fn requests(&self) -> Vec<Request> {
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

/// Gunzips (Python's gzip) a `gzip` body, decodes it with the official `opentelemetry-proto`
/// classes and prints `json_format.MessageToDict` of each with the protocol's field names,
/// trace and span ids in hex. A `json` body is parsed by `json_format.Parse` (strict: unknown
/// fields fail it) after its hex `traceId`/`spanId` became base64 (what OTLP/JSON receivers do
/// before protobuf's JSON parser); a `protobuf` body by `ParseFromString`, and must re-serialise
/// to its own length (every byte understood: nothing unknown or duplicated dropped).
const DECODE: &str = r#"
import base64, gzip, json, sys
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
for path, kind, encoding in zip(sys.argv[1::3], sys.argv[2::3], sys.argv[3::3]):
    data = open(path, "rb").read()
    if encoding == "gzip":
        data = gzip.decompress(data)
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
pub fn python_otlp() -> bool {
    common::python_module("google.protobuf") && common::python_module("opentelemetry.proto")
}

/// Decodes (body, `json` | `protobuf`, `gzip` | `none`) triples with Python, one object each.
pub fn decode(bodies: &[(Vec<u8>, &str, &str)]) -> Vec<Json> {
    let dir = common::temp_dir("otlp-python");
    let mut args = vec!["-c".to_owned(), DECODE.to_owned()];
    for (i, (body, kind, encoding)) in bodies.iter().enumerate() {
        let path = dir.join(format!("body{i}.bin"));
        std::fs::write(&path, body).unwrap();
        args.extend([path.display().to_string(), (*kind).to_owned(), (*encoding).to_owned()]);
    }
    let out = Command::new("python3").args(&args).output().expect("python3");
    let _ = std::fs::remove_dir_all(&dir);
    assert!(out.status.success(), "python failed: {}", String::from_utf8_lossy(&out.stderr));
    match serde_json::from_slice(&out.stdout).unwrap() {
        Json::Array(v) => v,
        other => panic!("{other}"),
    }
}

/// The requests a receiver got (`kind`: `json` or `protobuf`), gunzipped and decoded by Python.
pub fn decode_requests(requests: &[Request], kind: &str) -> Vec<Json> {
    let bodies: Vec<_> =
        requests.iter().map(|r| (r.body.clone(), kind, r.header("content-encoding").unwrap_or("none"))).collect();
    decode(&bodies)
}

/// The one request `receiver` got, checked (path, the `Content-Type` of `kind`, `encoding` as
/// its `Content-Encoding`, the `X-Tenant: blue` the tests set), and its decode by Python.
pub fn the_one_request(receiver: &Receiver, kind: &str, encoding: Option<&str>) -> (Request, Json) {
    let reqs = receiver.requests();
    assert_eq!(reqs.len(), 1);
    let req = &reqs[0];
    assert_eq!(req.path, "/v1/metrics");
    let content_type = if kind == "json" { "application/json" } else { "application/x-protobuf" };
    assert_eq!(req.header("content-type"), Some(content_type));
    assert_eq!(req.header("content-encoding"), encoding);
    assert_eq!(req.header("x-tenant"), Some("blue"));
    let decoded = decode_requests(&reqs, kind).pop().unwrap();
    (reqs[0].clone(), decoded)
}

// ---------------------------------------------------------------------------------------------
// Reading the decoded requests.

/// A protobuf-JSON 64-bit integer (a string) or a number, as u64.
pub fn int(v: &Json) -> u64 {
    match v {
        Json::String(s) => s.parse().unwrap(),
        Json::Number(n) => n.as_u64().unwrap(),
        Json::Null => 0,
        other => panic!("not an integer: {other}"),
    }
}

pub fn float(v: &Json) -> f64 {
    v.as_f64().unwrap_or_else(|| panic!("not a number: {v}"))
}

pub fn nanos(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).unwrap().as_nanos() as u64
}

/// Every metric of a decoded request.
pub fn metrics(req: &Json) -> &Vec<Json> {
    req["resource_metrics"][0]["scope_metrics"][0]["metrics"].as_array().unwrap()
}

pub fn metric<'a>(req: &'a Json, name: &str) -> &'a Json {
    metrics(req).iter().find(|m| m["name"] == name).unwrap_or_else(|| panic!("no metric {name} in {req}"))
}

/// The attributes of a point or resource as (key, string value) pairs, sorted.
pub fn attrs(v: &Json) -> Vec<(String, String)> {
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

pub fn labels(s: &Series<'_>) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = s.labels().iter().map(|(k, v)| (k.to_owned(), v.to_owned())).collect();
    out.sort();
    out
}

/// The data point of `data` (`sum`, `gauge`, …) with these attributes.
pub fn point<'a>(m: &'a Json, data: &str, want: &[(String, String)]) -> &'a Json {
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

/// The `service.name` that `builder` sets and `check_cumulative` expects.
pub const SERVICE: &str = "otlp-test";

pub fn populated() -> Registry {
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

/// An exporter to `url` with the default protocol (`http/protobuf`), `SERVICE` and a short
/// backoff.
pub fn builder(url: &str) -> OtlpBuilder {
    OtlpBuilder::from_config(EnvConfig::default())
        .endpoint(url)
        .service_name(SERVICE)
        .resource_attribute("deployment.environment", "ci")
        .backoff(Backoff::new().initial(Duration::from_millis(5)).max_attempts(3))
}

/// Pushes a `populated()` registry once through `builder` to a receiver that answers 200 with
/// `headers` and `body`, a partial success rejecting 3 points, and checks that the stats and the
/// self-metrics count those 3 rejected and the others sent (`what` labels a failure).
pub fn check_three_rejected(
    builder: fn(&str) -> OtlpBuilder,
    headers: Vec<(&'static str, String)>,
    body: Vec<u8>,
    what: &str,
) {
    let receiver = Receiver::start(move |_| Some((200, headers.clone(), body.clone())));
    let r = populated();
    let otlp = builder(&receiver.url()).build(&r).unwrap();
    let snap = r.flush();
    otlp.send_once(&snap).unwrap();
    let s = otlp.stats();
    let points = snap.series().len() as u64 + 1;
    assert_eq!((s.sent_batches, s.sent_samples, s.rejected_samples), (1, points - 3, 3), "{what}: {s:?}");
    let after = r.flush();
    let outcome = |o| after.counter(self_metrics::EXPORT_SAMPLES, &[("exporter", "otlp"), ("outcome", o)]);
    assert_eq!((outcome("sent"), outcome("rejected")), (Some(points - 3), Some(3)), "{what}");
}

/// The OTLP name and UCUM unit the test expects for a family (the compatibility rules; an
/// empty name: a self-metric, counted only).
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

/// Checks every series of `snap` (of `populated`) in the decoded cumulative request `req`;
/// `exponential`: the histograms were sent as exponential ones.
pub fn check_cumulative(req: &Json, snap: &Snapshot, registry: &Registry, exponential: bool) {
    let (start, now) = (nanos(registry.started_at()), nanos(snap.taken_at()));
    let text = prometheus::render(snap);
    for s in snap.series() {
        let (name, unit) = expected_name(&s);
        if name.is_empty() {
            continue; // self-metrics: checked by count below
        }
        let m = metric(req, name);
        assert_eq!(m["unit"].as_str().unwrap_or(""), unit, "{name}");
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
                // Bounds and counts: exactly the text export's `le` buckets, de-cumulated.
                let text_name = if name == "payload" { "payload_bytes" } else { "request_duration_seconds" };
                let buckets = text_buckets(&text, text_name, &s);
                assert_eq!(buckets.len(), counts.len(), "{name}: every `le` of the text export, +Inf included");
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
        ("service.name", SERVICE),
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
    // One point per series (the self-metrics included) plus the summary point.
    let points: usize = metrics(req)
        .iter()
        .map(|m| {
            ["sum", "gauge", "histogram", "exponential_histogram", "summary"]
                .iter()
                .filter_map(|k| m[k]["data_points"].as_array().map(Vec::len))
                .sum::<usize>()
        })
        .sum();
    assert_eq!(points, snap.series().len() + 1);
}
