//! Interop with the real Prometheus toolchain (Debian packages, installed by `.ci/install`):
//! `promtool check metrics` on our text output, Python prometheus_client's strict OpenMetrics
//! parser on our OpenMetrics output, and a real `prometheus` server scraping the endpoint and
//! answering queries about what it scraped.
#![cfg(feature = "http")]

use shardmetrics_test_support as common;

use std::{
    io::Write,
    process::{Command, Stdio},
    time::Duration,
};

use common::{request, tool, urlencode, wait_for, Prometheus};
use shardmetrics::{export::http::Server, Registry, Unit};

/// A registry with every kind of series, all with help text (promtool lints missing HELP).
fn populated() -> Registry {
    let r = Registry::builder().interval(Duration::from_millis(100)).build();
    let requests = r.counter("interop_requests_total").help("Requests served").family(&["route", "status"]).unwrap();
    requests.with(&["/api", "200"]).add(41);
    requests.with(&["/api", "200"]).inc_with_exemplar(&[("trace_id", "c0ffee")]);
    requests.with(&["/a\"quoted\\path\nx", "500"]).add(3);
    r.gauge("interop_queue_depth").help("Queue depth\nwith a newline").build().unwrap().set(-2.5);
    r.gauge("interop_ratio").help("Ratio").unit(Unit::Ratio).build().unwrap().set(f64::INFINITY);
    let lat = r
        .histogram("interop_latency")
        .help("Request latency")
        .unit(Unit::Nanoseconds)
        .quantiles(&[0.5, 0.9, 0.99, 0.999])
        .build()
        .unwrap();
    // 90 fast requests at 2 ms, 10 slow ones at 400 ms; one of each carries a trace id.
    for _ in 0..89 {
        lat.record(2_000_000);
    }
    lat.record_with_exemplar(2_000_000, &[("trace_id", "fa57")]);
    for _ in 0..9 {
        lat.record(400_000_000);
    }
    lat.record_with_exemplar(400_000_000, &[("trace_id", "510w"), ("span_id", "1")]);
    let sizes = r.histogram("interop_payload").help("Payload size").unit(Unit::Bytes).family(&["dir"]).unwrap();
    sizes.with(&["in"]).record(1500);
    let breaker = r.state_set("interop_breaker", &["closed", "open"], "Circuit breaker").unwrap();
    breaker.set("open");
    r.flush();
    r
}

fn run_with_stdin(program: &std::path::Path, args: &[&str], input: &str) -> (i32, String) {
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.code().unwrap_or(-1), text)
}

#[test]
fn promtool_accepts_text_format_without_warnings() {
    let Some(promtool) = tool("promtool") else { return };
    let r = populated();
    let text = shardmetrics::export::prometheus::render(&r.snapshot());
    let (code, out) = run_with_stdin(&promtool, &["check", "metrics"], &text);
    assert_eq!(code, 0, "promtool check metrics failed:\n{out}\n--- input ---\n{text}");
    assert!(out.trim().is_empty(), "promtool printed warnings:\n{out}\n--- input ---\n{text}");
}

#[test]
fn python_strict_openmetrics_parser_accepts_openmetrics() {
    if !common::python_module("prometheus_client") {
        return;
    }
    let r = populated();
    let text = shardmetrics::export::openmetrics::render(&r.snapshot());
    let script = "import sys\nfrom prometheus_client.openmetrics.parser import text_string_to_metric_families\n\
                  fams = list(text_string_to_metric_families(sys.stdin.read()))\n\
                  print(len(fams))\nfor f in fams:\n    print('family', f.name, f.type)\n    for s in f.samples:\n        print(s.name, sorted(s.labels.items()), s.value, \
                  sorted(s.exemplar.labels.items()) if s.exemplar else '', s.exemplar.value if s.exemplar else '')\n";
    let (code, out) = run_with_stdin(std::path::Path::new("python3"), &["-c", script], &text);
    assert_eq!(code, 0, "prometheus_client rejected our OpenMetrics:\n{out}\n--- input ---\n{text}");
    assert!(
        out.contains("interop_requests_total [('route', '/api'), ('status', '200')] 42 [('trace_id', 'c0ffee')] 1"),
        "{out}"
    );
    assert!(out.contains("interop_latency_seconds_bucket [('le', '0.0025')] 90 [('trace_id', 'fa57')] 0.002"), "{out}");
    assert!(
        out.contains("interop_latency_seconds_bucket [('le', '0.5')] 100 [('span_id', '1'), ('trace_id', '510w')] 0.4"),
        "{out}"
    );
    assert!(out.contains("family interop_latency_seconds_quantiles summary"), "{out}");
    // 400 ms's exponential bucket's representative is above 400 ms, so clamped to the max: exact.
    assert!(out.contains("interop_latency_seconds_quantiles [('quantile', '0.99')] 0.4 "), "{out}");
    assert!(out.contains("interop_latency_seconds_count [] 100"), "{out}");
    assert!(out.contains("interop_queue_depth [] -2.5"), "{out}");
    assert!(text.contains("# TYPE interop_breaker stateset\n"), "{text}");
    assert!(out.contains("interop_breaker [('interop_breaker', 'open')] 1"), "{out}");
}

#[test]
fn real_prometheus_scrapes_the_endpoint() {
    let r = populated();
    let server = Server::builder().listen("127.0.0.1:0").start(&r).unwrap();
    // Exemplar storage keeps the exemplars it scrapes (OpenMetrics) for /api/v1/query_exemplars.
    let Some(prom) = Prometheus::start("prometheus", &[server.local_addr()], &["--enable-feature=exemplar-storage"])
    else {
        return;
    };
    let (guard, api) = (&prom.guard, prom.api);
    let query = |q: &str| -> Option<serde_json::Value> {
        let v: serde_json::Value = serde_json::from_slice(&prom.query(q)?).ok()?;
        let result = v["data"]["result"].as_array()?.clone();
        (!result.is_empty()).then_some(serde_json::Value::Array(result))
    };
    let value = |v: &serde_json::Value| -> f64 { v[0]["value"][1].as_str().unwrap().parse().unwrap() };

    // The scrape succeeded (up == 1) …
    let up = wait_for(Duration::from_secs(60), guard, "a successful scrape", || query("up{job=\"shardmetrics\"} == 1"));
    assert_eq!(value(&up), 1.0);
    // … and the counter's value is what we recorded.
    let c = wait_for(Duration::from_secs(30), guard, "the counter", || {
        query("interop_requests_total{route=\"/api\",status=\"200\"}")
    });
    assert_eq!(value(&c), 42.0);
    // Escaped label values survive the round trip.
    let q = wait_for(Duration::from_secs(30), guard, "the escaped series", || {
        query("interop_requests_total{status=\"500\"}")
    });
    assert_eq!(q[0]["metric"]["route"].as_str(), Some("/a\"quoted\\path\nx"));
    assert_eq!(value(&q), 3.0);
    let g = wait_for(Duration::from_secs(30), guard, "the gauge", || query("interop_queue_depth"));
    assert_eq!(value(&g), -2.5);
    // p50 is in the 2 ms cluster, p95 in the 400 ms one (classic buckets: 1-2.5-5 steps).
    let p50 = wait_for(Duration::from_secs(30), guard, "histogram_quantile", || {
        query("histogram_quantile(0.5, interop_latency_seconds_bucket)")
    });
    let p50 = value(&p50);
    assert!((0.001..=0.0025).contains(&p50), "p50 = {p50}");
    let p95 = value(&query("histogram_quantile(0.95, interop_latency_seconds_bucket)").unwrap());
    assert!((0.25..=0.5).contains(&p95), "p95 = {p95}");
    let count = value(&query("interop_latency_seconds_count").unwrap());
    assert_eq!(count, 100.0);
    // The summary-style quantile series: p99 in the 400 ms cluster (within the 1.56 % bucket error).
    let p99 = value(&query("interop_latency_seconds_quantiles{quantile=\"0.99\"}").unwrap());
    assert!((p99 - 0.4).abs() <= 0.4 * 0.016, "p99 = {p99}");
    // Exemplars arrived through the OpenMetrics scrape and were stored.
    let exemplars = wait_for(Duration::from_secs(30), guard, "the exemplars", || {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
        let path = format!(
            "/api/v1/query_exemplars?query={}&start={}&end={}",
            urlencode("interop_latency_seconds_bucket"),
            now - 3600,
            now + 60
        );
        let reply = request(api, "GET", &path, &[]).ok()?;
        let v: serde_json::Value = serde_json::from_slice(&reply.body).ok()?;
        let data = v["data"].as_array()?.clone();
        (!data.is_empty()).then_some(data)
    });
    let traces: Vec<&str> = exemplars
        .iter()
        .flat_map(|series| series["exemplars"].as_array().unwrap().iter())
        .filter_map(|e| e["labels"]["trace_id"].as_str())
        .collect();
    assert!(traces.contains(&"510w") && traces.contains(&"fa57"), "{exemplars:?}");
    drop(server);
}
