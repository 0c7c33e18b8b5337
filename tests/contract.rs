//! The public contract, compiled and checked as written: the names and signatures that code
//! outside this repository compiles against (the crate-level example in README.md shows the
//! same calls). Nothing here may change without a major version.

use std::{sync::Arc, time::Duration};

use shardmetrics::{Registry, Snapshot, Unit};

fn assert_clone_send_sync<T: Clone + Send + Sync>() {}

#[test]
fn contract() -> Result<(), shardmetrics::Error> {
    let registry = Registry::builder()
        .interval(Duration::from_millis(100)) // aggregator tick, default 1 s
        .build(); // starts the one aggregator thread
    let global: &'static Registry = shardmetrics::global();
    let shared = registry.clone(); // Registry and every handle: cheap Clone + Send + Sync
    assert_clone_send_sync::<Registry>();
    assert_clone_send_sync::<shardmetrics::Counter>();
    assert_clone_send_sync::<shardmetrics::Gauge>();
    assert_clone_send_sync::<shardmetrics::Histogram>();
    assert_clone_send_sync::<shardmetrics::Family<shardmetrics::Counter>>();
    let _ = (global, shared);

    let requests = registry.counter("http_requests_total").help("Requests served").label("route", "/api").build()?; // Result<Counter, shardmetrics::Error>
    requests.inc();
    requests.add(3);

    let depth = registry.gauge("queue_depth").build()?; // f64 gauge
    depth.set(3.0);
    depth.add(-1.0);

    let latency = registry.histogram("request_duration").unit(Unit::Nanoseconds).build()?; // u64 values
    latency.record(1_250);
    {
        let _timer = latency.start_timer(); /* work */
    } // records elapsed on drop
    let out = latency.time(|| 2 + 2);
    assert_eq!(out, 4);

    let by_route = registry.counter("route_hits_total").family(&["route", "status"])?;
    by_route.with(&["/api", "200"]).inc(); // labelled look-up on the hot path

    registry.flush(); // one synchronous merge + publish
    let snap: Arc<Snapshot> = registry.snapshot(); // wait-free: the latest published snapshot
    let total: Option<u64> = snap.counter("http_requests_total", &[("route", "/api")]);
    let g: Option<f64> = snap.gauge("queue_depth", &[]);
    let h = snap.histogram("request_duration", &[]).unwrap();
    let (n, sum): (u64, u64) = (h.count(), h.sum());
    let (p99, max, mean): (Option<u64>, Option<u64>, Option<f64>) = (h.quantile(0.99), h.max(), h.mean());
    // min/max/mean/quantile are None while the histogram is empty — never a made-up 0

    let text: String = shardmetrics::export::prometheus::render(&snap); // text format 0.0.4
    let json: String = shardmetrics::export::json::render(&snap); // serde_json

    assert_eq!(total, Some(4));
    assert_eq!(g, Some(2.0));
    assert_eq!(n, 3);
    assert!(sum >= 1_250);
    assert!(p99.is_some() && max.is_some() && mean.is_some());
    assert_eq!(snap.counter("route_hits_total", &[("status", "200"), ("route", "/api")]), Some(1));
    assert!(text.contains("http_requests_total{route=\"/api\"} 4\n"), "{text}");
    assert!(text.contains("# TYPE request_duration_seconds histogram"), "{text}");
    let parsed: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert!(parsed["series"].as_array().unwrap().len() >= 5);

    let empty = registry.histogram("never_recorded").build()?;
    let _ = empty;
    let snap = registry.flush();
    let e = snap.histogram("never_recorded", &[]).unwrap();
    assert_eq!((e.count(), e.min(), e.max(), e.mean(), e.quantile(0.5)), (0, None, None, None, None));
    Ok(())
}
