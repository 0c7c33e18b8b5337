//! The OTLP exporter's cost per series (feature `otlp`), off the recording path:
//!
//! * `otlp_encode/request/<kind>/<n>`: building the `ExportMetricsServiceRequest` of one
//!   snapshot (the mapping, attributes, the per-series memory for start times) for n = 10,000
//!   counter series (10 families × 1,000 label values) or n = 1,000 histograms (values spanning
//!   1 µs–100 ms, the 11 default time bounds); cumulative temporality.
//! * `otlp_encode/protobuf/<kind>/<n>`: prost-encoding that request; `…/gzip/…` gzip on top;
//!   `…/json/…` the OTLP/JSON encoding of it (`Protocol::HttpJson`).
//! * `otlp_push/counters/10000`: `Otlp::send_once` of the 10,000-counter snapshot over real
//!   HTTP to a loopback receiver that reads the body and answers 200 (encode + POST + answer).
//!
//! Throughput is in series (criterion's element rate is series/s; ns per series is the time
//! divided by n). No peer beside it: opentelemetry-otlp would bring the OpenTelemetry SDK, and
//! with it an SDK pipeline (instruments, aggregation, `MetricData` assembly) whose cost would
//! dominate a per-series figure.
//!
//! Run: `cargo bench --bench otlp --features otlp`; smoke: `… -- --test`.

use std::{
    hint::black_box,
    io::{Read, Write},
    net::TcpListener,
    time::Duration,
};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use shardmetrics::{
    export::otlp::{encode_body, json, Compression, Encoder, EnvConfig, OtlpBuilder, Temporality},
    Registry, Unit,
};

fn counters(n: usize) -> Registry {
    let r = Registry::builder().manual().build();
    for f in 0..10 {
        let family = r.counter(&format!("bench_requests_{f}_total")).family(&["route", "status"]).unwrap();
        for i in 0..n / 10 {
            family.with(&[&format!("/api/v1/items/{i}"), "200"]).add((i * 7 + f) as u64);
        }
    }
    r.flush();
    r
}

fn histograms(n: usize) -> Registry {
    let r = Registry::builder().manual().build();
    let family = r.histogram("bench_latency").unit(Unit::Nanoseconds).family(&["route"]).unwrap();
    for i in 0..n {
        let h = family.with(&[&format!("/api/v1/items/{i}")]);
        for k in 0..50u64 {
            h.record(1_000 + (k * k * 40_000 + i as u64 * 997) % 100_000_000);
        }
    }
    r.flush();
    r
}

fn encoder(r: &Registry) -> Encoder {
    let resource = OtlpBuilder::from_config(EnvConfig::default()).service_name("bench").resource();
    Encoder::new(resource, Temporality::Cumulative, r.started_at())
}

fn encode(c: &mut Criterion) {
    let mut g = c.benchmark_group("otlp_encode");
    for (kind, registry, n) in [("counters", counters(10_000), 10_000), ("histograms", histograms(1_000), 1_000)] {
        let snap = registry.snapshot();
        let enc = encoder(&registry);
        g.throughput(Throughput::Elements(n as u64));
        g.bench_with_input(BenchmarkId::new(format!("request/{kind}"), n), &snap, |b, snap| {
            b.iter(|| enc.encode(black_box(snap)))
        });
        let (req, _) = enc.encode(&snap);
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
