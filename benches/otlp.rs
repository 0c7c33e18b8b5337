//! The OTLP exporter's cost per series (feature `otlp`), off the recording path, beside
//! opentelemetry-rust encoding the same data:
//!
//! * `otlp_encode/request/<kind>/<n>`: building the `ExportMetricsServiceRequest` of one
//!   snapshot (the mapping, attributes, the per-series memory for start times) for n = 10,000
//!   counter series (10 families × 1,000 label values), n = 1,000 histograms (50 values each
//!   spanning 1 µs–96 ms, the 22 default time bounds) or the same histograms as OTLP
//!   exponential histograms (`histograms_exp`, `Histograms::Exponential`); cumulative
//!   temporality.
//! * `otlp_encode/protobuf/<kind>/<n>`: prost-encoding that request; `…/gzip/…` gzip on top;
//!   `…/json/…` the OTLP/JSON encoding of it (`Protocol::HttpJson`).
//! * `otlp_encode/peer_collect/<kind>/<n>`: the same data recorded into the OpenTelemetry SDK
//!   (`opentelemetry_sdk` 0.33: 10 u64 counters × 1,000 attribute sets; one f64 histogram in
//!   seconds with the same 22 bounds, or the SDK's base-2 exponential aggregation with
//!   max_size 160, max_scale 20), read by `ManualReader::collect` into a reused
//!   `ResourceMetrics`: the SDK's aggregation-to-`MetricData` step, its counterpart of our
//!   snapshot (which the aggregator publishes every tick whether or not anything exports it),
//!   reported on its own so that the SDK pipeline does not hide the encode figure.
//! * `otlp_encode/peer_request/<kind>/<n>`: opentelemetry-proto's `From<&ResourceMetrics>` for
//!   its `ExportMetricsServiceRequest` (what opentelemetry-otlp does before encoding): the
//!   counterpart of our `request` row.
//! * `otlp_encode/peer_protobuf/<kind>/<n>`: prost `encode_to_vec` of that request: the
//!   counterpart of our `protobuf` row.
//! * `otlp_push/counters/10000`: `Otlp::send_once` of the 10,000-counter snapshot over real
//!   HTTP to a loopback receiver that reads the body and answers 200 (encode + POST + answer).
//!
//! The setup asserts that both sides export the same number of points (one per series), the
//! same bounds and the same totals. Throughput is in series (criterion's element rate is
//! series/s; ns per series is the time divided by n). No peer row for the push: opentelemetry-otlp's
//! HTTP client and its periodic reader would be measured, not the encoding.
//!
//! Run: `cargo bench --bench otlp --features otlp`; smoke: `… -- --test`.

use std::{
    hint::black_box,
    io::{Read, Write},
    net::TcpListener,
    sync::{Arc, Weak},
    time::Duration,
};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use opentelemetry::{metrics::MeterProvider as _, KeyValue as OtelKeyValue};
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest as PeerRequest;
use opentelemetry_sdk::{
    error::OTelSdkResult,
    metrics::{
        data::ResourceMetrics, reader::MetricReader, Aggregation, Instrument, InstrumentKind, ManualReader, Pipeline,
        SdkMeterProvider, Stream, Temporality as SdkTemporality,
    },
    Resource as SdkResource,
};
use prost::Message as _;
use shardmetrics::{
    export::{
        otlp::{
            encode_body, json,
            proto::{metric::Data, ExportMetricsServiceRequest},
            Compression, Encoder, EnvConfig, Histograms, OtlpBuilder, Temporality,
        },
        prometheus::DEFAULT_TIME_BUCKETS,
    },
    Registry, Unit,
};

/// Counter series `i` of family `f`: its value (both sides).
fn counter_value(f: usize, i: usize) -> u64 {
    (i * 7 + f) as u64
}

/// Value `k` (of 50) of histogram series `i`, in nanoseconds: 1 µs to ~96 ms (both sides; the
/// SDK records it in seconds).
fn latency_ns(i: usize, k: u64) -> u64 {
    1_000 + (k * k * 40_000 + i as u64 * 997) % 100_000_000
}

fn route(i: usize) -> String {
    format!("/api/v1/items/{i}")
}

fn counters(n: usize) -> Registry {
    let r = Registry::builder().manual().build();
    for f in 0..10 {
        let family = r.counter(&format!("bench_requests_{f}_total")).family(&["route", "status"]).unwrap();
        for i in 0..n / 10 {
            family.with(&[&route(i), "200"]).add(counter_value(f, i));
        }
    }
    r.flush();
    r
}

fn histograms(n: usize) -> Registry {
    let r = Registry::builder().manual().build();
    let family = r.histogram("bench_latency").unit(Unit::Nanoseconds).family(&["route"]).unwrap();
    for i in 0..n {
        let h = family.with(&[&route(i)]);
        for k in 0..50u64 {
            h.record(latency_ns(i, k));
        }
    }
    r.flush();
    r
}

fn encoder(r: &Registry) -> Encoder {
    let resource = OtlpBuilder::from_config(EnvConfig::default()).service_name("bench").resource();
    Encoder::new(resource, Temporality::Cumulative, r.started_at())
}

/// The SDK's per-stream cardinality limit in the peer (default 2,000): room for every series
/// of the data set in one instrument, so that nothing folds into the overflow series.
const PEER_CARDINALITY_LIMIT: usize = 10_000;

/// A `ManualReader` shared with the provider (which takes its reader by value, and
/// `ManualReader` is not `Clone`), so that the bench can call `collect`.
#[derive(Debug)]
struct SharedReader(Arc<ManualReader>);

impl MetricReader for SharedReader {
    fn register_pipeline(&self, pipeline: Weak<Pipeline>) {
        self.0.register_pipeline(pipeline)
    }
    fn collect(&self, rm: &mut ResourceMetrics) -> OTelSdkResult {
        self.0.collect(rm)
    }
    fn force_flush(&self) -> OTelSdkResult {
        self.0.force_flush()
    }
    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.0.shutdown_with_timeout(timeout)
    }
    fn shutdown(&self) -> OTelSdkResult {
        self.0.shutdown()
    }
    fn temporality(&self, kind: InstrumentKind) -> SdkTemporality {
        self.0.temporality(kind)
    }
}

/// The OpenTelemetry SDK with one data set recorded: a meter provider (cumulative temporality,
/// the `ManualReader`'s default) and its reader.
struct Peer {
    _provider: SdkMeterProvider,
    reader: Arc<ManualReader>,
}

impl Peer {
    /// A provider whose view raises the cardinality limit and, when given, sets the
    /// histograms' aggregation.
    fn new(histogram_aggregation: Option<Aggregation>, record: impl FnOnce(&SdkMeterProvider)) -> Peer {
        let reader = Arc::new(ManualReader::builder().build());
        let view = move |inst: &Instrument| {
            let mut stream = Stream::builder().with_cardinality_limit(PEER_CARDINALITY_LIMIT);
            if let (InstrumentKind::Histogram, Some(aggregation)) = (inst.kind(), &histogram_aggregation) {
                stream = stream.with_aggregation(aggregation.clone());
            }
            Some(stream.build().expect("valid stream"))
        };
        let provider = SdkMeterProvider::builder()
            .with_resource(SdkResource::builder().with_service_name("bench").build())
            .with_reader(SharedReader(reader.clone()))
            .with_view(view)
            .build();
        record(&provider);
        Peer { _provider: provider, reader }
    }

    fn collect(&self, rm: &mut ResourceMetrics) {
        self.reader.collect(rm).expect("collect");
    }
}

fn peer_counters(n: usize) -> Peer {
    Peer::new(None, |provider| {
        let meter = provider.meter("bench");
        for f in 0..10 {
            let counter = meter.u64_counter(format!("bench_requests_{f}")).build();
            for i in 0..n / 10 {
                let attributes = [OtelKeyValue::new("route", route(i)), OtelKeyValue::new("status", "200")];
                counter.add(counter_value(f, i), &attributes);
            }
        }
    })
}

fn peer_histograms(n: usize, exponential: bool) -> Peer {
    let aggregation = exponential.then_some(Aggregation::Base2ExponentialHistogram {
        max_size: 160,
        max_scale: 20,
        record_min_max: true,
    });
    Peer::new(aggregation, |provider| {
        let histogram = provider
            .meter("bench")
            .f64_histogram("bench_latency")
            .with_unit("s")
            .with_boundaries(DEFAULT_TIME_BUCKETS.to_vec())
            .build();
        for i in 0..n {
            let attributes = [OtelKeyValue::new("route", route(i))];
            for k in 0..50u64 {
                histogram.record(latency_ns(i, k) as f64 / 1e9, &attributes);
            }
        }
    })
}

/// What one side's request holds of the data set (the metrics named `bench_…`): points, the
/// counters' total, the histograms' total count, the explicit bounds of a histogram point,
/// buckets of the exponential points and their lowest and highest scale.
#[derive(Debug, Default, PartialEq)]
struct Shape {
    points: usize,
    counter_total: u64,
    histogram_count: u64,
    bounds: Option<Vec<f64>>,
    exponential_buckets: usize,
    scales: Option<(i32, i32)>,
}

fn our_shape(req: &ExportMetricsServiceRequest) -> Shape {
    let mut s = Shape::default();
    let metrics = req.resource_metrics.iter().flat_map(|r| &r.scope_metrics).flat_map(|s| &s.metrics);
    for m in metrics.filter(|m| m.name.starts_with("bench_")) {
        use shardmetrics::export::otlp::proto::number_data_point::Value;
        match m.data.as_ref().unwrap() {
            Data::Sum(sum) => {
                s.points += sum.data_points.len();
                for p in &sum.data_points {
                    let Some(Value::AsInt(v)) = p.value else { panic!("integer counter") };
                    s.counter_total += v as u64;
                }
            }
            Data::Histogram(h) => {
                s.points += h.data_points.len();
                s.histogram_count += h.data_points.iter().map(|p| p.count).sum::<u64>();
                s.bounds = h.data_points.first().map(|p| p.explicit_bounds.clone());
            }
            Data::ExponentialHistogram(h) => {
                s.points += h.data_points.len();
                s.histogram_count += h.data_points.iter().map(|p| p.count).sum::<u64>();
                s.exponential_buckets += h
                    .data_points
                    .iter()
                    .map(|p| p.positive.as_ref().map_or(0, |b| b.bucket_counts.len()))
                    .sum::<usize>();
                for p in &h.data_points {
                    let (lo, hi) = s.scales.unwrap_or((p.scale, p.scale));
                    s.scales = Some((lo.min(p.scale), hi.max(p.scale)));
                }
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    s
}

/// The peer's request read through our messages (the same schema): its bytes decoded as ours.
fn peer_shape(req: &PeerRequest) -> Shape {
    our_shape(&ExportMetricsServiceRequest::decode(req.encode_to_vec().as_slice()).expect("the same schema"))
}

fn gzip_len(body: &[u8]) -> usize {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(body).unwrap();
    gz.finish().unwrap().len()
}

fn encode(c: &mut Criterion) {
    let mut g = c.benchmark_group("otlp_encode");
    let data = [
        ("counters", counters(10_000), Histograms::Explicit, peer_counters(10_000), 10_000),
        ("histograms", histograms(1_000), Histograms::Explicit, peer_histograms(1_000, false), 1_000),
        ("histograms_exp", histograms(1_000), Histograms::Exponential, peer_histograms(1_000, true), 1_000),
    ];
    for (kind, registry, form, peer, n) in data {
        let snap = registry.snapshot();
        let enc = encoder(&registry).histograms(form);
        g.throughput(Throughput::Elements(n as u64));
        g.bench_with_input(BenchmarkId::new(format!("request/{kind}"), n), &snap, |b, snap| {
            b.iter(|| enc.encode(black_box(snap)))
        });
        let (req, points) = enc.encode(&snap);
        let bytes = encode_body(&req, Compression::None).unwrap().len();
        let gz = encode_body(&req, Compression::Gzip).unwrap().len();
        let json_bytes = json::encode(&req).len();
        println!(
            "otlp {kind} {n}: {bytes} B protobuf ({:.1} B/series), {gz} B gzip, {json_bytes} B JSON ({:.1} B/series)",
            bytes as f64 / n as f64,
            json_bytes as f64 / n as f64
        );
        g.bench_with_input(BenchmarkId::new(format!("protobuf/{kind}"), n), &req, |b, req| {
            b.iter(|| encode_body(black_box(req), Compression::None))
        });
        g.bench_with_input(BenchmarkId::new(format!("gzip/{kind}"), n), &req, |b, req| {
            b.iter(|| encode_body(black_box(req), Compression::Gzip))
        });
        g.bench_with_input(BenchmarkId::new(format!("json/{kind}"), n), &req, |b, req| {
            b.iter(|| json::encode(black_box(req)))
        });

        // The peer: the same data through the SDK's reader, opentelemetry-proto's transform
        // and prost.
        let mut rm = ResourceMetrics::default();
        peer.collect(&mut rm);
        let peer_req = PeerRequest::from(&rm);
        let (ours, theirs) = (our_shape(&req), peer_shape(&peer_req));
        // Ours also carries the registry's two own counters (`shardmetrics_cardinality_overflow`,
        // `shardmetrics_rejected_values`; zero), left out of the comparison.
        assert_eq!(points as usize, n + 2, "{kind}: our points");
        assert_eq!(ours.points, n, "{kind}: our points");
        assert_eq!(theirs.points, n, "{kind}: the SDK's points (cardinality limit?)");
        assert_eq!(ours.counter_total, theirs.counter_total, "{kind}: counter totals");
        assert_eq!(ours.histogram_count, theirs.histogram_count, "{kind}: histogram counts");
        assert_eq!(ours.bounds, theirs.bounds, "{kind}: explicit bounds");
        assert_eq!(form == Histograms::Exponential, ours.exponential_buckets > 0, "{kind}: our form");
        assert_eq!(form == Histograms::Exponential, theirs.exponential_buckets > 0, "{kind}: the SDK's form");
        let peer_body = peer_req.encode_to_vec();
        println!(
            "otlp {kind} {n} (opentelemetry-proto): {} B protobuf ({:.1} B/series), {} B gzip",
            peer_body.len(),
            peer_body.len() as f64 / n as f64,
            gzip_len(&peer_body)
        );
        if form == Histograms::Exponential {
            println!(
                "otlp {kind} {n}: positive buckets per point: {:.1} at scales {:?} (ours), {:.1} at scales {:?} \
                 (opentelemetry_sdk)",
                ours.exponential_buckets as f64 / n as f64,
                ours.scales.unwrap(),
                theirs.exponential_buckets as f64 / n as f64,
                theirs.scales.unwrap(),
            );
        }
        g.bench_function(BenchmarkId::new(format!("peer_collect/{kind}"), n), |b| {
            b.iter(|| peer.collect(black_box(&mut rm)))
        });
        g.bench_with_input(BenchmarkId::new(format!("peer_request/{kind}"), n), &rm, |b, rm| {
            b.iter(|| PeerRequest::from(black_box(rm)))
        });
        g.bench_with_input(BenchmarkId::new(format!("peer_protobuf/{kind}"), n), &peer_req, |b, req| {
            b.iter(|| black_box(req).encode_to_vec())
        });
    }
    g.finish();
}

/// A loopback receiver that reads each request and answers 200 (one connection at a time,
/// kept alive).
fn receiver() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            std::thread::spawn(move || {
                let mut buf = vec![0u8; 1 << 16];
                let mut pending: Vec<u8> = Vec::new();
                loop {
                    // Head, then Content-Length bytes of body.
                    let head_end = loop {
                        if let Some(i) = pending.windows(4).position(|w| w == b"\r\n\r\n") {
                            break i + 4;
                        }
                        match stream.read(&mut buf) {
                            Ok(0) | Err(_) => return,
                            Ok(n) => pending.extend_from_slice(&buf[..n]),
                        }
                    };
                    let head = String::from_utf8_lossy(&pending[..head_end]).to_ascii_lowercase();
                    let len: usize = head
                        .lines()
                        .find_map(|l| l.strip_prefix("content-length:"))
                        .and_then(|v| v.trim().parse().ok())
                        .unwrap_or(0);
                    while pending.len() < head_end + len {
                        match stream.read(&mut buf) {
                            Ok(0) | Err(_) => return,
                            Ok(n) => pending.extend_from_slice(&buf[..n]),
                        }
                    }
                    pending.drain(..head_end + len);
                    if stream.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n").is_err() {
                        return;
                    }
                }
            });
        }
    });
    format!("http://{addr}/v1/metrics")
}

fn push(c: &mut Criterion) {
    let registry = counters(10_000);
    let snap = registry.snapshot();
    let otlp = OtlpBuilder::from_config(EnvConfig::default()).endpoint(&receiver()).build(&registry).unwrap();
    let mut g = c.benchmark_group("otlp_push");
    g.throughput(Throughput::Elements(10_000));
    g.measurement_time(Duration::from_secs(5));
    g.bench_function(BenchmarkId::new("counters", 10_000), |b| b.iter(|| otlp.send_once(black_box(&snap)).unwrap()));
    g.finish();
}

criterion_group!(benches, encode, push);
criterion_main!(benches);
