//! Native histograms end to end against a real Prometheus (Debian's 2.42, `.ci/install`,
//! started with `--enable-feature=native-histograms`): it scrapes the endpoint over protobuf
//! and receives the same histograms by remote write, and its `histogram_count`,
//! `histogram_sum` and `histogram_quantile` agree with our snapshot — the count exactly, the
//! sum to float rounding, quantiles within one bucket (schema 5: a factor 2^(1/32), 2.2 %).

#![cfg(all(feature = "http", feature = "protobuf", feature = "remote-write"))]

use std::time::Duration;

use shardmetrics::{Registry, Unit};
use shardmetrics_test_support as common;

/// One bucket at schema 5, relative: Prometheus interpolates inside the bucket, we report a
/// representative of it.
const ONE_BUCKET: f64 = 0.0219;

/// Latencies log-spread over 50 µs … 2 s (recorded in ns, exported in seconds: keyed by the
/// bucket of the value in seconds), sizes over 10 B … 1 MB (bytes) and item counts over
/// 1 … 10,000 (no unit), deterministic, with a few zeros (the zero bucket).
fn populated(prefix: &str) -> Registry {
    let r = Registry::builder().interval(Duration::from_millis(100)).build();
    let lat = r.histogram(&format!("{prefix}_latency")).help("Latency").unit(Unit::Nanoseconds).build().unwrap();
    let sizes = r.histogram(&format!("{prefix}_payload")).help("Payload").unit(Unit::Bytes).build().unwrap();
    let items = r.histogram(&format!("{prefix}_items")).help("Items per batch").build().unwrap();
    for i in 0..2_000u32 {
        let f = f64::from(i) / 2_000.0;
        lat.record((50_000.0 * (40_000f64).powf(f)) as u64);
        sizes.record((10.0 * (100_000f64).powf(f)) as u64);
        items.record(if i % 100 == 0 { 0 } else { (10_000f64).powf(f) as u64 });
    }
    r.flush();
    r
}

/// `(registered name, exported name, scale)`: what one recorded unit is in the exported unit.
fn histograms(prefix: &str) -> [(String, String, f64); 3] {
    [
        (format!("{prefix}_latency"), format!("{prefix}_latency_seconds"), 1e-9),
        (format!("{prefix}_payload"), format!("{prefix}_payload_bytes"), 1.0),
        (format!("{prefix}_items"), format!("{prefix}_items"), 1.0),
    ]
}

fn query(prom: &common::Prometheus, q: &str) -> Option<f64> {
    let v: serde_json::Value = serde_json::from_slice(&prom.query(q)?).ok()?;
    v["data"]["result"].as_array()?.first()?["value"][1].as_str()?.parse().ok()
}

/// Every query Prometheus answers about our native histograms, against the snapshot.
fn agree(r: &Registry, prefix: &str, prom: &common::Prometheus) {
    let snap = r.snapshot();
    for (name, exported, scale) in histograms(prefix) {
        let h = snap.histogram(&name, &[]).unwrap();
        let count = prom.wait_for(Duration::from_secs(60), "the native histogram", || {
            query(prom, &format!("histogram_count({exported})"))
        });
        assert_eq!(count, h.count() as f64, "{exported}: count");
        let sum = query(prom, &format!("histogram_sum({exported})")).unwrap();
        let ours = h.sum() as f64 * scale;
        assert!((sum - ours).abs() <= ours * 1e-12, "{exported}: sum {sum} vs {ours}");
        for q in [0.5, 0.99] {
            let theirs = query(prom, &format!("histogram_quantile({q}, {exported})")).unwrap();
            let ours = h.quantile(q).unwrap() as f64 * scale;
            assert!((theirs - ours).abs() <= ours * ONE_BUCKET, "{exported}: q{q} Prometheus {theirs} vs ours {ours}");
        }
    }
}

#[test]
fn real_prometheus_scrapes_native_histograms_over_protobuf() {
    use shardmetrics::export::http::{Format, Server};
    let r = populated("nh");
    let server = Server::builder().listen("127.0.0.1:0").start(&r).unwrap();
    let flags = ["--enable-feature=native-histograms"];
    let Some(prom) = common::Prometheus::start("native-scrape", &[server.local_addr()], &flags) else { return };
    agree(&r, "nh", &prom);
    assert!(server.served_count(Format::Protobuf) > 0);
}

/// The same histograms pushed by remote write with `native_histograms(true)` into Prometheus'
/// remote-write receiver: stored as native histograms that answer the same queries.
#[test]
fn real_prometheus_receives_native_histograms_by_remote_write() {
    use shardmetrics::export::{remote_write::RemoteWrite, Backoff, ExporterBuilder};
    let flags = ["--web.enable-remote-write-receiver", "--enable-feature=native-histograms"];
    let Some(prom) = common::Prometheus::start("native-remote-write", &[], &flags) else { return };
    let r = populated("rw");
    let exporter = RemoteWrite::builder(&format!("http://{}/api/v1/write", prom.api))
        .native_histograms(true)
        .interval(Duration::from_millis(100))
        .backoff(Backoff::new().initial(Duration::from_millis(50)).max_attempts(5))
        .start(&r)
        .unwrap();
    agree(&r, "rw", &prom);
    let stats = exporter.shutdown();
    assert!(stats.sent_batches >= 1, "{stats:?}");
    assert_eq!((stats.failed_samples, stats.failed_batches), (0, 0), "{stats:?}");
    // Native only: no classic bucket series was sent for them.
    assert!(query(&prom, "count(rw_payload_bytes_bucket)").is_none());
}

/// The native buckets of a decoded histogram as `(key, count)`: spans and deltas expanded.
fn expand(h: &shardmetrics::export::protobuf::proto::Histogram) -> Vec<(i32, u64)> {
    let mut out = Vec::new();
    let (mut key, mut count, mut deltas) = (0i32, 0i64, h.positive_delta.iter());
    for span in &h.positive_span {
        key += span.offset.unwrap_or(0);
        for _ in 0..span.length.unwrap_or(0) {
            count += deltas.next().expect("a delta per bucket");
            if count != 0 {
                out.push((key, count as u64));
            }
            key += 1;
        }
    }
    assert!(deltas.next().is_none(), "more deltas than the spans cover");
    out
}

/// The same values through prometheus-client 0.25's native histogram (schema 5) and its own
/// protobuf encoder: the same schema, count, sum and buckets, key for key. Integer values in a
/// unitless histogram, so both compute the bucket of the same number.
#[test]
fn same_native_buckets_as_prometheus_client() {
    use prometheus_client::{
        encoding::prometheus_protobuf,
        metrics::histogram::{Histogram as PcHistogram, NativeHistogramConfig},
        registry::Registry as PcRegistry,
    };
    use shardmetrics::export::protobuf;

    let r = Registry::builder().build();
    let ours = r.histogram("xc_sizes").help("Sizes").unit(Unit::Bytes).build().unwrap();
    let theirs = PcHistogram::new_native(NativeHistogramConfig::with_schema(5));
    let mut registry = PcRegistry::default();
    registry.register("xc_sizes_bytes", "Sizes", theirs.clone());
    // Log-spread over 1 … 10^12, every power of two and its neighbours (bucket edges).
    let mut values: Vec<u64> = (0..3_000u32).map(|i| 10f64.powf(f64::from(i) / 250.0) as u64).collect();
    for e in 0..40 {
        values.extend([(1u64 << e).saturating_sub(1).max(1), 1 << e, (1 << e) + 1]);
    }
    for &v in &values {
        ours.record(v);
        theirs.observe(v as f64);
    }
    let snap = r.flush();
    let decode = |body: &[u8], name: &str| {
        let families = protobuf::decode(body).unwrap();
        let f = families.into_iter().find(|f| f.name.as_deref() == Some(name)).unwrap();
        f.metric[0].histogram.clone().unwrap()
    };
    let a = decode(&protobuf::render(&snap), "xc_sizes_bytes");
    let b = decode(&prometheus_protobuf::encode_to_vec(&registry).unwrap(), "xc_sizes_bytes");
    assert_eq!(a.schema, b.schema);
    assert_eq!(a.sample_count, b.sample_count);
    assert_eq!(a.sample_sum, b.sample_sum);
    assert_eq!(expand(&a), expand(&b));
    assert_eq!(a.zero_count.unwrap_or(0), b.zero_count.unwrap_or(0));
}
