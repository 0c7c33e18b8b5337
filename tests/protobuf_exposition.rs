//! The Prometheus protobuf exposition (`export::protobuf`), checked three ways:
//!
//! * decoded with prost (the messages in `export::protobuf::proto`) and compared with the
//!   snapshot and, series by series, with the Prometheus text render: the samples a Prometheus
//!   server derives from each format (`_bucket{le}`, `_sum`, `_count`, `{quantile}`) must be the
//!   same names, labels and values;
//! * decoded by an independent decoder: Python's protobuf package with the official schema
//!   (`proto/metrics.proto`, compiled at test time by grpcio-tools' bundled protoc), which must
//!   re-serialise every family to exactly our bytes (no unknown field, no wrong wire type) and
//!   yield the same samples;
//! * scraped by a real Prometheus (Debian's 2.42, `.ci/install`) started with
//!   `--enable-feature=native-histograms`, which makes it ask for protobuf first: the endpoint
//!   must have answered it in protobuf, and every series it stored must have the text render's
//!   value.

use std::{
    collections::BTreeMap,
    process::{Command, Stdio},
    time::{Duration, SystemTime},
};

use shardmetrics::{
    export::protobuf::{self, proto},
    Registry, Snapshot, Unit,
};
use shardmetrics_test_support as common;

/// A registry with every kind of family the renders handle: labelled counters with exemplars
/// and escaped label values, a counter in a time unit, gauges (negative, infinite, with a
/// unit), a StateSet, a nanosecond histogram with quantiles and bucket exemplars (one on the
/// `+Inf` bucket), a byte histogram, a histogram with configured bounds (one below zero, one on
/// a recorded value), and an empty histogram with quantiles (NaN).
fn populated() -> Registry {
    let r = Registry::builder().interval(Duration::from_millis(100)).build();
    let requests = r.counter("pb_requests_total").help("Requests served").family(&["route", "status"]).unwrap();
    requests.with(&["/api", "200"]).add(41);
    requests.with(&["/api", "200"]).inc_with_exemplar(&[("trace_id", "c0ffee")]);
    requests.with(&["/a\"quoted\\path\nx", "500"]).add(3);
    r.counter("pb_cpu").help("CPU time").unit(Unit::Milliseconds).build().unwrap().add(1500);
    r.gauge("pb_queue_depth").help("Queue depth\nwith a newline").build().unwrap().set(-2.5);
    r.gauge("pb_ratio").help("Ratio").unit(Unit::Ratio).build().unwrap().set(f64::INFINITY);
    r.gauge("pb_no_help").build().unwrap().set(7.0);
    let lat = r
        .histogram("pb_latency")
        .help("Request latency")
        .unit(Unit::Nanoseconds)
        .quantiles(&[0.5, 0.9, 0.99])
        .build()
        .unwrap();
    // 90 fast requests at 2 ms, 10 slow ones at 400 ms, one at 20 s (past the last bound).
    for _ in 0..89 {
        lat.record(2_000_000);
    }
    lat.record_with_exemplar(2_000_000, &[("trace_id", "fa57")]);
    for _ in 0..9 {
        lat.record(400_000_000);
    }
    lat.record_with_exemplar(400_000_000, &[("trace_id", "510w"), ("span_id", "1")]);
    lat.record_with_exemplar(20_000_000_000, &[("trace_id", "1nf")]);
    let sizes = r.histogram("pb_payload").help("Payload size").unit(Unit::Bytes).family(&["dir"]).unwrap();
    sizes.with(&["in"]).record(1500);
    sizes.with(&["out"]).record(70);
    let custom = r.histogram("pb_items").help("Items per batch").buckets(&[-1.0, 0.0, 3.0, 10.0]).build().unwrap();
    for v in [0, 3, 3, 4, 12] {
        custom.record(v);
    }
    let _idle = r.histogram("pb_idle").help("Never recorded").quantiles(&[0.5]).build().unwrap();
    let breaker = r.state_set("pb_breaker", &["closed", "open"], "Circuit breaker").unwrap();
    breaker.set("open");
    r.flush();
    r
}

/// A sample as Prometheus stores it: series name, labels without `le` and `quantile` (sorted),
/// and the `le` / `quantile` bound as a number (the two formats spell bounds differently).
type Key = (String, Vec<(String, String)>, Option<u64>, Option<u64>);

/// Samples with their values (compared NaN-aware through `same`).
type Samples = BTreeMap<Key, f64>;

fn key(name: &str, labels: impl IntoIterator<Item = (String, String)>) -> Key {
    let (mut le, mut quantile, mut rest) = (None, None, Vec::new());
    for (k, v) in labels {
        let number = || v.parse::<f64>().unwrap_or_else(|_| panic!("{name}: {k}={v:?} is not a number")).to_bits();
        match k.as_str() {
            "le" => le = Some(number()),
            "quantile" => quantile = Some(number()),
            _ => rest.push((k, v)),
        }
    }
    rest.sort();
    (name.to_owned(), rest, le, quantile)
}

/// The samples a Prometheus server reads from our text render.
fn text_samples(snapshot: &Snapshot) -> Samples {
    let text = shardmetrics::export::prometheus::render(snapshot);
    let families = shardmetrics::scrape::parse_prometheus(&text).unwrap();
    let mut out = Samples::new();
    for s in families.iter().flat_map(|f| &f.samples) {
        assert!(out.insert(key(&s.name, s.labels.iter().cloned()), s.value).is_none(), "{s:?} twice");
    }
    out
}

/// The samples a Prometheus server derives from protobuf families (its protobuf parser's
/// rules: a counter's series is the family name; a histogram's buckets are `_bucket{le}` with
/// an implicit `+Inf` bucket equal to the count, then `_sum`, `_count`; a summary's quantiles are
/// `{quantile}`, then `_sum`, `_count`).
fn protobuf_samples(families: &[proto::MetricFamily]) -> Samples {
    let mut out = Samples::new();
    for f in families {
        let name = f.name.as_deref().unwrap();
        for m in &f.metric {
            let labels: Vec<(String, String)> =
                m.label.iter().map(|l| (l.name.clone().unwrap(), l.value.clone().unwrap())).collect();
            let mut add = |suffix: &str, extra: Option<(&str, f64)>, v: f64| {
                let mut l = labels.clone();
                if let Some((k, b)) = extra {
                    l.push((k.to_owned(), b.to_string()));
                }
                let k = key(&format!("{name}{suffix}"), l);
                assert!(out.insert(k.clone(), v).is_none(), "{k:?} twice");
            };
            match proto::MetricType::try_from(f.r#type.unwrap()).unwrap() {
                proto::MetricType::Counter => add("", None, m.counter.as_ref().unwrap().value.unwrap()),
                proto::MetricType::Gauge => add("", None, m.gauge.as_ref().unwrap().value.unwrap()),
                proto::MetricType::Histogram => {
                    let h = m.histogram.as_ref().unwrap();
                    let count = h.sample_count.unwrap();
                    for b in &h.bucket {
                        add("_bucket", Some(("le", b.upper_bound.unwrap())), b.cumulative_count.unwrap() as f64);
                    }
                    if h.bucket.last().is_none_or(|b| b.upper_bound != Some(f64::INFINITY)) {
                        add("_bucket", Some(("le", f64::INFINITY)), count as f64);
                    }
                    add("_sum", None, h.sample_sum.unwrap());
                    add("_count", None, count as f64);
                }
                proto::MetricType::Summary => {
                    let s = m.summary.as_ref().unwrap();
                    for q in &s.quantile {
                        add("", Some(("quantile", q.quantile.unwrap())), q.value.unwrap());
                    }
                    add("_sum", None, s.sample_sum.unwrap());
                    add("_count", None, s.sample_count.unwrap() as f64);
                }
                other => panic!("{name}: unexpected type {other:?}"),
            }
        }
    }
    out
}

/// The samples of this test's families (not the registry's own `shardmetrics_*` series, which
/// may change from one tick to the next). Used by the tests that serve over HTTP.
#[cfg(feature = "http")]
fn ours(mut samples: Samples) -> Samples {
    samples.retain(|k, _| k.0.starts_with("pb_"));
    samples
}

fn same(a: f64, b: f64) -> bool {
    a == b || (a.is_nan() && b.is_nan())
}

/// Fails with every difference between two sample sets.
fn assert_same_samples(ours: &Samples, theirs: &Samples, what: &str) {
    let mut diff = Vec::new();
    for (k, v) in ours {
        match theirs.get(k) {
            Some(w) if same(*v, *w) => {}
            Some(w) => diff.push(format!("{k:?}: {v} here, {w} in {what}")),
            None => diff.push(format!("{k:?} = {v} missing from {what}")),
        }
    }
    diff.extend(theirs.keys().filter(|k| !ours.contains_key(*k)).map(|k| format!("{k:?} only in {what}")));
    assert!(diff.is_empty(), "{} differences:\n{}", diff.len(), diff.join("\n"));
}

fn family<'a>(families: &'a [proto::MetricFamily], name: &str) -> &'a proto::MetricFamily {
    families.iter().find(|f| f.name.as_deref() == Some(name)).unwrap_or_else(|| panic!("no family {name}"))
}

fn labels_of(e: &proto::Exemplar) -> Vec<(&str, &str)> {
    e.label.iter().map(|l| (l.name.as_deref().unwrap(), l.value.as_deref().unwrap())).collect()
}

#[test]
fn decodes_to_the_snapshot_and_the_text_series() {
    let before = SystemTime::now() - Duration::from_secs(1);
    let r = populated();
    let snapshot = r.snapshot();
    let body = protobuf::render(&snapshot);
    let families = protobuf::decode(&body).unwrap();

    // Every series the text render has, with the same name, labels and value.
    assert_same_samples(&text_samples(&snapshot), &protobuf_samples(&families), "the protobuf render");

    // Re-encoding what prost decoded gives our bytes back: every field is one the schema knows,
    // with its wire type, in field order, and nothing is left over.
    let mut again = Vec::new();
    for f in &families {
        prost::Message::encode_length_delimited(f, &mut again).unwrap();
    }
    assert!(again == body, "prost re-encodes to other bytes ({} vs {})", again.len(), body.len());

    // Family metadata: names as in the text render, types, help, units where OpenMetrics
    // writes `# UNIT`.
    let mut names: Vec<&str> = families.iter().map(|f| f.name.as_deref().unwrap()).collect();
    let n = names.len();
    names.sort();
    names.dedup();
    assert_eq!(names.len(), n, "family names repeat: {names:?}");
    use proto::MetricType as T;
    for (name, kind, help, unit) in [
        ("pb_requests_total", T::Counter, Some("Requests served"), None),
        ("pb_cpu_seconds_total", T::Counter, Some("CPU time"), Some("seconds")),
        ("pb_queue_depth", T::Gauge, Some("Queue depth\nwith a newline"), None),
        ("pb_ratio", T::Gauge, Some("Ratio"), Some("ratio")),
        ("pb_no_help", T::Gauge, None, None),
        ("pb_latency_seconds", T::Histogram, Some("Request latency"), Some("seconds")),
        ("pb_latency_seconds_quantiles", T::Summary, Some("Request latency (quantiles)"), None),
        ("pb_payload_bytes", T::Histogram, Some("Payload size"), Some("bytes")),
        ("pb_items", T::Histogram, Some("Items per batch"), None),
        ("pb_idle", T::Histogram, Some("Never recorded"), None),
        ("pb_idle_quantiles", T::Summary, Some("Never recorded (quantiles)"), None),
        ("pb_breaker", T::Gauge, Some("Circuit breaker"), None),
    ] {
        let f = family(&families, name);
        assert_eq!(f.r#type, Some(kind as i32), "{name}");
        assert_eq!(f.help.as_deref(), help, "{name}");
        assert_eq!(f.unit.as_deref(), unit, "{name}");
        for m in &f.metric {
            assert!(m.timestamp_ms.is_none() && m.untyped.is_none(), "{name}: {m:?}");
        }
    }

    // Values against the snapshot itself.
    let requests = family(&families, "pb_requests_total");
    let api = requests.metric.iter().find(|m| m.label.iter().any(|l| l.value.as_deref() == Some("200"))).unwrap();
    let total = snapshot.counter("pb_requests_total", &[("route", "/api"), ("status", "200")]).unwrap();
    assert_eq!(api.counter.as_ref().unwrap().value, Some(total as f64));
    assert_eq!(total, 42);
    let escaped = requests.metric.iter().find(|m| m.label.iter().any(|l| l.value.as_deref() == Some("500"))).unwrap();
    assert_eq!(escaped.label[0].value.as_deref(), Some("/a\"quoted\\path\nx"), "label values are raw, not escaped");
    assert!(escaped.counter.as_ref().unwrap().exemplar.is_none());
    assert_eq!(family(&families, "pb_cpu_seconds_total").metric[0].counter.as_ref().unwrap().value, Some(1.5));
    assert_eq!(family(&families, "pb_ratio").metric[0].gauge.as_ref().unwrap().value, Some(f64::INFINITY));
    let lat = snapshot.histogram("pb_latency", &[]).unwrap();
    let h = family(&families, "pb_latency_seconds").metric[0].histogram.clone().unwrap();
    assert_eq!(h.sample_count, Some(lat.count()));
    assert_eq!(h.sample_count, Some(101));
    assert_eq!(h.sample_sum, Some(lat.sum() as f64 / 1e9));
    let bounds: Vec<f64> = h.bucket.iter().map(|b| b.upper_bound.unwrap()).collect();
    let mut expected = shardmetrics::export::prometheus::DEFAULT_TIME_BUCKETS.to_vec();
    expected.push(f64::INFINITY); // written because its bucket has an exemplar
    assert_eq!(bounds, expected);
    let le = |b: f64| h.bucket.iter().find(|x| x.upper_bound == Some(b)).unwrap();
    assert_eq!(le(0.001).cumulative_count, Some(0));
    assert_eq!(le(0.0025).cumulative_count, Some(90));
    assert_eq!(le(0.5).cumulative_count, Some(100));
    assert_eq!(le(f64::INFINITY).cumulative_count, Some(101));
    // No native part while histograms are log-linear.
    assert!(h.schema.is_none() && h.zero_threshold.is_none() && h.positive_span.is_empty());
    assert!(h.positive_delta.is_empty() && h.exemplars.is_empty() && h.sample_count_float.is_none());
    let items = family(&families, "pb_items").metric[0].histogram.clone().unwrap();
    let counts: Vec<(f64, u64)> =
        items.bucket.iter().map(|b| (b.upper_bound.unwrap(), b.cumulative_count.unwrap())).collect();
    assert_eq!(counts, [(-1.0, 0), (0.0, 1), (3.0, 3), (10.0, 4)], "negative bounds are kept, as in the text");
    let idle = family(&families, "pb_idle_quantiles").metric[0].summary.clone().unwrap();
    assert_eq!((idle.sample_count, idle.sample_sum), (Some(0), Some(0.0)));
    assert!(idle.quantile[0].value.unwrap().is_nan());
    let q = family(&families, "pb_latency_seconds_quantiles").metric[0].summary.clone().unwrap();
    let p99 = q.quantile.iter().find(|q| q.quantile == Some(0.99)).unwrap().value.unwrap();
    assert_eq!(p99, lat.quantile(0.99).unwrap() as f64 / 1e9);
    let breaker = family(&families, "pb_breaker");
    let open = breaker.metric.iter().find(|m| m.label[0].value.as_deref() == Some("open")).unwrap();
    assert_eq!(open.label[0].name.as_deref(), Some("pb_breaker"));
    assert_eq!(open.gauge.as_ref().unwrap().value, Some(1.0));

    // Exemplars: the counter's and the buckets' latest, values in the base unit, timestamps to
    // the nanosecond.
    let now = SystemTime::now();
    let stamp = |e: &proto::Exemplar| {
        let t = e.timestamp.unwrap();
        SystemTime::UNIX_EPOCH + Duration::new(t.seconds as u64, t.nanos as u32)
    };
    let e = api.counter.as_ref().unwrap().exemplar.as_ref().unwrap();
    assert_eq!((labels_of(e), e.value), (vec![("trace_id", "c0ffee")], Some(1.0)));
    assert!((before..=now).contains(&stamp(e)));
    let e = le(0.0025).exemplar.as_ref().unwrap();
    assert_eq!((labels_of(e), e.value), (vec![("trace_id", "fa57")], Some(0.002)));
    let e = le(0.5).exemplar.as_ref().unwrap();
    assert_eq!((labels_of(e), e.value), (vec![("trace_id", "510w"), ("span_id", "1")], Some(0.4)));
    let e = le(f64::INFINITY).exemplar.as_ref().unwrap();
    assert_eq!((labels_of(e), e.value), (vec![("trace_id", "1nf")], Some(20.0)));
    assert!((before..=now).contains(&stamp(e)));
    assert_eq!(h.bucket.iter().filter(|b| b.exemplar.is_some()).count(), 3);
}

#[test]
fn render_into_appends_and_reuses_the_buffer() {
    let r = populated();
    let snapshot = r.snapshot();
    let body = protobuf::render(&snapshot);
    let mut buf = b"head".to_vec();
    protobuf::render_into(&snapshot, &mut buf);
    assert_eq!(&buf[..4], b"head");
    // The same families (not bytes: exemplar timestamps are read off a clock at each render).
    let decoded = protobuf_samples(&protobuf::decode(&buf[4..]).unwrap());
    assert_same_samples(&protobuf_samples(&protobuf::decode(&body).unwrap()), &decoded, "render_into");
    // An empty registry renders nothing at all (no empty families).
    assert!(protobuf::render(&Registry::new().snapshot()).is_empty());
}

#[test]
fn python_protobuf_decodes_with_the_official_schema() {
    if !common::python_module("google.protobuf") || !common::python_module("grpc_tools") {
        return;
    }
    let r = populated();
    let snapshot = r.snapshot();
    let body = protobuf::render(&snapshot);
    let dir = common::temp_dir("protobuf-python");
    std::fs::write(dir.join("body.bin"), &body).unwrap();
    let proto_dir = concat!(env!("CARGO_MANIFEST_DIR"), "/proto");
    // Compiles the schema, reads the length-delimited stream, checks that each family
    // re-serialises to exactly its bytes, and prints the samples Prometheus would derive, one
    // JSON line each (values as Python float reprs, which Rust parses back exactly).
    let script = r#"
import json, os, sys
import grpc_tools
from grpc_tools import protoc
proto_dir, out_dir, body = sys.argv[1:4]
well_known = os.path.join(os.path.dirname(grpc_tools.__file__), "_proto")
args = ["protoc", "-I" + proto_dir, "-I" + well_known, "--python_out=" + out_dir, os.path.join(proto_dir, "metrics.proto")]
assert protoc.main(args) == 0, "protoc failed"
sys.path.insert(0, out_dir)
import metrics_pb2 as pb
data = open(body, "rb").read()
pos = 0
def varint():
    global pos
    shift = value = 0
    while True:
        b = data[pos]; pos += 1
        value |= (b & 0x7F) << shift; shift += 7
        if b < 0x80:
            return value
while pos < len(data):
    n = varint()
    raw = data[pos:pos + n]; pos += n
    fam = pb.MetricFamily()
    fam.ParseFromString(raw)
    assert fam.SerializeToString() == raw, "family %s re-serialises to other bytes" % fam.name
    kind = pb.MetricType.Name(fam.type)
    print(json.dumps({"family": fam.name, "type": kind, "help": fam.help if fam.HasField("help") else None,
                      "unit": fam.unit if fam.HasField("unit") else None}))
    for m in fam.metric:
        labels = [[l.name, l.value] for l in m.label]
        def emit(suffix, v, extra=None, exemplar=None):
            ls = labels + ([[extra[0], repr(float(extra[1]))]] if extra else [])
            line = {"name": fam.name + suffix, "labels": ls, "value": repr(float(v))}
            if exemplar is not None and exemplar.ByteSize() > 0:
                line["exemplar"] = [[[l.name, l.value] for l in exemplar.label], repr(exemplar.value),
                                    exemplar.timestamp.seconds]
            print(json.dumps(line))
        if kind == "COUNTER":
            emit("", m.counter.value, exemplar=m.counter.exemplar if m.counter.HasField("exemplar") else None)
        elif kind == "GAUGE":
            emit("", m.gauge.value)
        elif kind == "HISTOGRAM":
            h = m.histogram
            for b in h.bucket:
                emit("_bucket", b.cumulative_count, ("le", b.upper_bound), b.exemplar if b.HasField("exemplar") else None)
            if not h.bucket or h.bucket[-1].upper_bound != float("inf"):
                emit("_bucket", h.sample_count, ("le", float("inf")))
            emit("_sum", h.sample_sum)
            emit("_count", h.sample_count)
            if h.HasField("schema"):
                # The native buckets hold every value: zero bucket plus the expanded deltas.
                assert -4 <= h.schema <= 8 and h.zero_threshold == 0.0, "native schema / zero threshold"
                assert sum(s.length for s in h.positive_span) == len(h.positive_delta), "spans vs deltas"
                total, bucket = h.zero_count, 0
                for d in h.positive_delta:
                    bucket += d
                    assert bucket >= 0, "negative bucket count"
                    total += bucket
                assert total == h.sample_count, "native buckets do not add up to the count"
            else:
                assert len(h.positive_span) == 0, "native spans without a schema"
        elif kind == "SUMMARY":
            s = m.summary
            for q in s.quantile:
                emit("", q.value, ("quantile", q.quantile))
            emit("_sum", s.sample_sum)
            emit("_count", s.sample_count)
        else:
            raise SystemExit("unexpected type " + kind)
"#;
    let out = Command::new("python3")
        .args(["-c", script, proto_dir, dir.to_str().unwrap(), dir.join("body.bin").to_str().unwrap()])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "python failed:\n{}{stdout}", String::from_utf8_lossy(&out.stderr));

    let (mut samples, mut families, mut exemplars) = (Samples::new(), Vec::new(), Vec::new());
    for line in stdout.lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        if let Some(f) = v["family"].as_str() {
            families.push((f.to_owned(), v["type"].as_str().unwrap().to_owned(), v["help"].clone(), v["unit"].clone()));
            continue;
        }
        let labels = v["labels"].as_array().unwrap().iter().map(|p| {
            let p = p.as_array().unwrap();
            (p[0].as_str().unwrap().to_owned(), p[1].as_str().unwrap().to_owned())
        });
        let k = key(v["name"].as_str().unwrap(), labels);
        if !v["exemplar"].is_null() {
            exemplars.push((k.clone(), v["exemplar"].to_string()));
        }
        let value: f64 = v["value"].as_str().unwrap().parse().unwrap();
        assert!(samples.insert(k.clone(), value).is_none(), "{k:?} twice");
    }
    assert_same_samples(&text_samples(&snapshot), &samples, "what Python decoded");
    let kinds: BTreeMap<&str, &str> = families.iter().map(|(f, t, ..)| (f.as_str(), t.as_str())).collect();
    assert_eq!(kinds["pb_requests_total"], "COUNTER");
    assert_eq!(kinds["pb_latency_seconds"], "HISTOGRAM");
    assert_eq!(kinds["pb_latency_seconds_quantiles"], "SUMMARY");
    assert_eq!(kinds["pb_breaker"], "GAUGE");
    let latency = families.iter().find(|f| f.0 == "pb_latency_seconds").unwrap();
    assert_eq!((latency.2.as_str(), latency.3.as_str()), (Some("Request latency"), Some("seconds")));
    let no_help = families.iter().find(|f| f.0 == "pb_no_help").unwrap();
    assert!(no_help.2.is_null() && no_help.3.is_null());
    let traces: Vec<&str> = exemplars.iter().map(|(_, e)| e.as_str()).collect();
    assert_eq!(traces.len(), 4, "{traces:?}");
    assert!(traces.iter().any(|e| e.contains(r#"[["trace_id","c0ffee"]],"1.0""#)), "{traces:?}");
    assert!(traces.iter().any(|e| e.contains(r#"[["trace_id","510w"],["span_id","1"]],"0.4""#)), "{traces:?}");
}

#[cfg(feature = "http")]
#[test]
fn real_prometheus_scrapes_protobuf_with_native_histograms_enabled() {
    use common::{request, urlencode, wait_for, Prometheus};
    use shardmetrics::export::http::{Format, Server};

    let r = populated();
    let server = Server::builder().listen("127.0.0.1:0").start(&r).unwrap();
    // Native histograms make Prometheus ask for protobuf first; exemplar storage keeps the
    // exemplars it reads from it.
    let flags = ["--enable-feature=native-histograms,exemplar-storage"];
    let Some(prom) = Prometheus::start("prometheus-protobuf", &[server.local_addr()], &flags) else { return };
    let (guard, api) = (&prom.guard, prom.api);
    let query = |q: &str| -> Option<Vec<serde_json::Value>> {
        let v: serde_json::Value = serde_json::from_slice(&prom.query(q)?).ok()?;
        let result = v["data"]["result"].as_array()?.clone();
        (!result.is_empty()).then_some(result)
    };

    wait_for(Duration::from_secs(60), guard, "a successful scrape", || query("up{job=\"shardmetrics\"} == 1"));
    // Everything the text render has, stored under the same names and labels (the job and
    // instance labels aside), with the same values: counters, gauges, classic buckets, sums,
    // counts, quantiles.
    // Histograms exported in their recorded unit carry native buckets, which Prometheus 2.42
    // stores instead of the classic series (`_bucket`, `_sum`, `_count`): those are checked
    // through `histogram_count` / `histogram_sum` / `histogram_quantile` below. The empty one
    // (`pb_idle`: no buckets, zero threshold 0, the no-op span) is classic to 2.42, which
    // predates the no-op span, and native to later versions: left out either way.
    let native = ["pb_payload_bytes", "pb_items", "pb_idle"];
    let classic = |k: &Key| {
        !native.iter().any(|f| ["_bucket", "_sum", "_count"].iter().any(|suffix| k.0 == format!("{f}{suffix}")))
    };
    let mut expected = ours(text_samples(&r.snapshot()));
    expected.retain(|k, _| classic(k));
    let stored = wait_for(Duration::from_secs(30), guard, "every series", || {
        let result = query("{__name__=~\"pb_.*\"}")?;
        let mut samples = Samples::new();
        for s in &result {
            if s.get("value").is_none() {
                continue; // a native histogram sample
            }
            let metric = s["metric"].as_object().unwrap();
            let name = metric["__name__"].as_str().unwrap();
            let labels = metric
                .iter()
                .filter(|(k, _)| !matches!(k.as_str(), "__name__" | "job" | "instance"))
                .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_owned()));
            let value: f64 = s["value"][1].as_str().unwrap().parse().unwrap();
            let k = key(name, labels);
            if classic(&k) {
                samples.insert(k, value);
            }
        }
        (samples.len() >= expected.len()).then_some(samples)
    });
    assert_same_samples(&expected, &stored, "Prometheus");

    // The native histograms: count and sum exact, quantiles within one bucket of ours.
    let snap = r.snapshot();
    let scalar = |q: &str| -> Option<f64> { query(q)?.first()?["value"][1].as_str()?.parse().ok() };
    for (name, series, labels) in
        [("pb_payload", "pb_payload_bytes{dir=\"in\"}", &[("dir", "in")][..]), ("pb_items", "pb_items", &[][..])]
    {
        let h = snap.histogram(name, labels).unwrap();
        let count = wait_for(Duration::from_secs(30), guard, "histogram_count", || {
            scalar(&format!("histogram_count({series})"))
        });
        assert_eq!(count, h.count() as f64, "{series}");
        let sum = scalar(&format!("histogram_sum({series})")).unwrap();
        assert_eq!(sum, h.sum() as f64, "{series}");
        // One bucket at schema 5 is a factor 2^(1/32).
        let width = 2f64.powf(1.0 / 32.0);
        for q in [0.5, 0.99] {
            let theirs = scalar(&format!("histogram_quantile({q}, {series})")).unwrap();
            let ours = h.quantile(q).unwrap() as f64;
            assert!(theirs <= ours * width && ours <= theirs * width, "{series} q={q}: {theirs} vs ours {ours}");
        }
    }

    // It asked for protobuf and got it: no scrape was answered in a text format.
    assert!(server.served_count(Format::Protobuf) > 0);
    assert_eq!(server.served_count(Format::Prometheus) + server.served_count(Format::OpenMetrics), 0);

    // The exemplars it read from the protobuf buckets and counter.
    let exemplars = wait_for(Duration::from_secs(30), guard, "the exemplars", || {
        let now = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).unwrap().as_secs();
        let path = format!(
            "/api/v1/query_exemplars?query={}&start={}&end={}",
            urlencode("{__name__=~\"pb_latency_seconds_bucket|pb_requests_total\"}"),
            now - 3600,
            now + 60
        );
        let reply = request(api, "GET", &path, &[]).ok()?;
        let v: serde_json::Value = serde_json::from_slice(&reply.body).ok()?;
        let data = v["data"].as_array()?.clone();
        let traces: Vec<String> = data
            .iter()
            .flat_map(|series| series["exemplars"].as_array().into_iter().flatten())
            .filter_map(|e| e["labels"]["trace_id"].as_str().map(str::to_owned))
            .collect();
        (traces.len() >= 4).then_some(traces)
    });
    for trace in ["c0ffee", "fa57", "510w", "1nf"] {
        assert!(exemplars.iter().any(|t| t == trace), "{trace} missing from {exemplars:?}");
    }
    drop(server);
}

#[cfg(feature = "http")]
#[test]
fn endpoint_serves_protobuf_when_asked_and_text_otherwise() {
    use common::request;
    use shardmetrics::export::http::{Format, Server};

    let r = populated();
    let server = Server::builder().listen("127.0.0.1:0").start(&r).unwrap();
    let accept = "application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited,\
                  application/openmetrics-text;version=1.0.0;q=0.8,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
    let reply = request(server.local_addr(), "GET", "/metrics", &[("Accept", accept)]).unwrap();
    assert_eq!(reply.header("content-type"), Some(protobuf::CONTENT_TYPE));
    // The same samples (not bytes: exemplar timestamps are read off a clock at each render).
    let served = ours(protobuf_samples(&protobuf::decode(&reply.body).unwrap()));
    assert_same_samples(&ours(text_samples(&r.snapshot())), &served, "the endpoint's protobuf");
    // Gzip, as for the text formats.
    let gz =
        request(server.local_addr(), "GET", "/metrics", &[("Accept", accept), ("Accept-Encoding", "gzip")]).unwrap();
    assert_eq!(gz.header("content-encoding"), Some("gzip"));
    let mut plain = Vec::new();
    std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(gz.body.as_slice()), &mut plain).unwrap();
    assert_eq!(plain, reply.body);
    // A text scraper still gets text.
    let text = request(server.local_addr(), "GET", "/metrics", &[]).unwrap();
    assert!(text.header("content-type").unwrap().starts_with("text/plain"));
    let parsed = shardmetrics::scrape::parse_prometheus(&text.text()).unwrap();
    assert!(parsed.iter().any(|f| f.name == "pb_latency_seconds"));
    assert_eq!(server.served_count(Format::Protobuf), 2);
    assert_eq!(server.served_count(Format::Prometheus), 1);
}
