//! OTLP/HTTP JSON (`Protocol::HttpJson`) over real HTTP on loopback: the exporter's JSON pushes
//! are parsed by the official Python `opentelemetry-proto` package with protobuf's
//! `json_format.Parse` (strict: an unknown or misspelt field fails it), after turning the hex
//! `traceId`/`spanId` into the base64 that `json_format` expects for bytes — what OTLP/JSON
//! receivers do specially. Every value is checked against the snapshot and the text export, and
//! the raw body against the OTLP/JSON rules; the JSON and the protobuf encodings of the same
//! requests decode to the same message; the environment selects the protocol (and `grpc` fails
//! the build); a JSON answer's `partialSuccess` is counted.
//!
//! Without `python3` and `opentelemetry-proto` the decoding tests print a SKIPPED line (and
//! fail under CI=true): `bash .ci/install` installs the package. The receiver, the decoder, the
//! registry, the cumulative check and the partial-success check are shared with tests/otlp.rs
//! (tests/otlp_common/mod.rs).

#![cfg(feature = "otlp")]

mod otlp_common;

use std::collections::HashMap;

use otlp_common::{
    check_cumulative, check_three_rejected, decode, float, int, metric, populated, python_otlp, the_one_request,
    Receiver,
};
use serde_json::Value as Json;
use shardmetrics::{
    export::{
        otlp::{
            encode_body, json,
            proto::{self, any_value, AnyValue, KeyValue},
            Compression, Encoder, EnvConfig, Histograms, OtlpBuilder, Protocol, Temporality,
        },
        ExportError,
    },
    Unit,
};

/// The shared exporter, speaking OTLP/JSON.
fn builder(url: &str) -> OtlpBuilder {
    otlp_common::builder(url).protocol(Protocol::HttpJson)
}

// ---------------------------------------------------------------------------------------------
// The raw body.

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
// Tests.

#[test]
fn python_parses_every_value_of_a_json_push() {
    if !python_otlp() {
        return;
    }
    for (compression, exponential) in [(Compression::Gzip, false), (Compression::None, true)] {
        let receiver = Receiver::ok_json();
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
        let gzip = (compression == Compression::Gzip).then_some("gzip");
        let (req, decoded) = the_one_request(&receiver, "json", gzip);
        check_raw(&req.plain_body());
        check_cumulative(&decoded, &snap, &r, exponential);
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
        bodies.push((text.into_bytes(), "json", "none"));
        bodies.push((encode_body(req, Compression::None).unwrap(), "protobuf", "none"));
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
    let receiver = Receiver::ok_json();
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
        check_three_rejected(builder, headers, body, &format!("{content_type:?}"));
    }
    // An answer that is not an ExportMetricsServiceResponse rejects nothing.
    let receiver =
        Receiver::start(|_| Some((200, vec![("Content-Type", "application/json".into())], b"<html>".to_vec())));
    let r = populated();
    let otlp = builder(&receiver.url()).build(&r).unwrap();
    otlp.send_once(&r.flush()).unwrap();
    assert_eq!((otlp.stats().sent_batches, otlp.stats().rejected_samples), (1, 0));
}
