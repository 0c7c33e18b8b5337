//! The push exporters against real servers: a Prometheus server with its remote-write
//! receiver and a Pushgateway, each started here on a free loopback port with its data in a
//! temporary directory and killed when the test ends (a Drop guard), plus the failure path
//! against a closed port.
//!
//! The servers come from the Debian packages `prometheus` and `prometheus-pushgateway`
//! (`bash .ci/install`). When a binary is missing the test is skipped with a line saying so, and
//! fails under `CI=true` (`shardmetrics_test_support::tool`).

#![cfg(all(feature = "remote-write", feature = "push", feature = "json"))]

use std::{
    fs,
    net::TcpListener,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::atomic::{AtomicU64, Ordering},
    time::{Duration, Instant},
};

use serde_json::Value as Json;
use shardmetrics::self_metrics;
use shardmetrics::{
    export::{
        pushgateway::{PushMethod, Pushgateway},
        remote_write::RemoteWrite,
        Backoff, ExportError, ExporterBuilder,
    },
    Registry, Unit,
};
use shardmetrics_test_support::logs::{capture_logs, logged};

// ---------------------------------------------------------------------------------------------
// Harness: binaries, temp dirs, servers, HTTP.

/// A directory removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        static N: AtomicU64 = AtomicU64::new(0);
        let p = std::env::temp_dir().join(format!(
            "shardmetrics-interop-{}-{tag}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = fs::remove_dir_all(&p);
        fs::create_dir_all(&p).expect("create temp dir");
        TempDir(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// A server process, killed (and reaped) on drop, whatever the test's outcome.
struct Server {
    child: Child,
    port: u16,
    log: PathBuf,
    // Declared last: removed after the process is gone.
    _dir: TempDir,
}

impl Server {
    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    fn log(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A loopback port nobody listens on (bound and released).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port()
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(10)))
        .build()
        .into()
}

fn get(url: &str) -> Result<(u16, String), String> {
    let mut resp = agent().get(url).call().map_err(|e| e.to_string())?;
    let status = resp.status().as_u16();
    let body = resp.body_mut().read_to_string().map_err(|e| e.to_string())?;
    Ok((status, body))
}

/// Starts `bin` with `args(port, dir)` and waits until `GET /-/ready` answers 200. Retries
/// on another port if the process dies at once (e.g. the port was taken in between).
fn start_server(bin: &Path, tag: &str, args: impl Fn(u16, &Path) -> Vec<String>) -> Server {
    let mut last_log = String::new();
    for _ in 0..3 {
        let dir = TempDir::new(tag);
        let port = free_port();
        let log = dir.0.join("server.log");
        let out = fs::File::create(&log).expect("log file");
        let child = Command::new(bin)
            .args(args(port, &dir.0))
            .stdin(Stdio::null())
            .stdout(out.try_clone().expect("dup"))
            .stderr(out)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.display()));
        let mut server = Server { child, port, log, _dir: dir };
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = server.child.try_wait() {
                last_log = format!("{} exited with {status}:\n{}", bin.display(), server.log());
                break;
            }
            if let Ok((200, _)) = get(&server.url("/-/ready")) {
                return server;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        if last_log.is_empty() {
            panic!("{} did not become ready in 60 s:\n{}", bin.display(), server.log());
        }
    }
    panic!("could not start {}: {last_log}", bin.display());
}

fn start_prometheus(bin: &Path) -> Server {
    start_server(bin, "prometheus", |port, dir| {
        let config = dir.join("prometheus.yml");
        fs::write(&config, "global:\n  scrape_interval: 1m\n  evaluation_interval: 1m\n").expect("config");
        vec![
            format!("--config.file={}", config.display()),
            format!("--storage.tsdb.path={}", dir.join("data").display()),
            format!("--web.listen-address=127.0.0.1:{port}"),
            "--web.enable-remote-write-receiver".into(),
            "--log.level=warn".into(),
        ]
    })
}

fn start_pushgateway(bin: &Path) -> Server {
    start_server(bin, "pushgateway", |port, _| {
        vec![format!("--web.listen-address=127.0.0.1:{port}"), "--persistence.file=".into(), "--log.level=warn".into()]
    })
}

/// An instant query against Prometheus' HTTP API: the result vector.
fn query(prom: &Server, q: &str) -> Vec<Json> {
    let mut resp = agent().get(&prom.url("/api/v1/query")).query("query", q).call().expect("query");
    let body = resp.body_mut().read_to_string().expect("body");
    let json: Json = serde_json::from_str(&body).expect("json");
    assert_eq!(json["status"], "success", "{q}: {body}");
    json["data"]["result"].as_array().cloned().unwrap_or_default()
}

/// The value of the single series a query returns.
fn query_value(prom: &Server, q: &str) -> f64 {
    let result = query(prom, q);
    assert_eq!(result.len(), 1, "{q}: {result:?}");
    result[0]["value"][1].as_str().expect("value string").parse().expect("number")
}

// ---------------------------------------------------------------------------------------------
// (1) Remote write into a real Prometheus.

#[test]
fn remote_write_into_real_prometheus() {
    let Some(bin) = shardmetrics_test_support::tool("prometheus") else { return };
    let prom = start_prometheus(&bin);

    let registry = Registry::builder().interval(Duration::from_millis(50)).build();
    let requests = registry.counter("interop_requests").help("Requests").label("route", "/api").build().unwrap();
    let latency = registry.histogram("interop_latency").unit(Unit::Milliseconds).build().unwrap();
    let temperature = registry.gauge("interop_temperature").build().unwrap();
    requests.add(42);
    temperature.set(21.5);
    // 1..=100 ms, ten times each: p50 = 50 ms, p90 = 90 ms, sum = 50.5 s.
    for i in 0..1000 {
        latency.record(1 + i % 100);
    }

    let exporter = RemoteWrite::builder(&prom.url("/api/v1/write"))
        .external_label("job", "shardmetrics_interop")
        .external_label("instance", "test-1")
        .interval(Duration::from_millis(50))
        .backoff(Backoff::new().initial(Duration::from_millis(50)).max_attempts(5))
        .start(&registry)
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while exporter.stats().sent_batches == 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let stats = exporter.shutdown();
    assert!(stats.sent_batches >= 2, "periodic batches plus the final one: {stats:?}\n{}", prom.log());
    assert_eq!((stats.failed_samples, stats.failed_batches), (0, 0), "{stats:?}\n{}", prom.log());

    // The counter, with its labels and the external labels, under the text export's name.
    let result = query(&prom, "interop_requests_total");
    assert_eq!(result.len(), 1, "{result:?}");
    let metric = &result[0]["metric"];
    assert_eq!(metric["job"], "shardmetrics_interop");
    assert_eq!(metric["instance"], "test-1");
    assert_eq!(metric["route"], "/api");
    assert_eq!(result[0]["value"][1], "42");

    assert_eq!(query_value(&prom, "interop_temperature"), 21.5);
    assert_eq!(query_value(&prom, "interop_latency_seconds_count"), 1000.0);
    let sum = query_value(&prom, "interop_latency_seconds_sum");
    assert!((sum - 50.5).abs() < 1e-6, "sum in seconds: {sum}");
    let p50 = query_value(&prom, "histogram_quantile(0.5, interop_latency_seconds_bucket)");
    let p90 = query_value(&prom, "histogram_quantile(0.9, interop_latency_seconds_bucket)");
    assert!((0.04..=0.06).contains(&p50), "p50 = {p50}");
    assert!((0.08..=0.1).contains(&p90), "p90 = {p90}");

    // The exporter's own counters went along: the final batch carries the earlier ones' count.
    let sent = query_value(
        &prom,
        &format!(
            "{}{{exporter=\"remote_write\",outcome=\"sent\",job=\"shardmetrics_interop\"}}",
            self_metrics::EXPORT_SAMPLES
        ),
    );
    assert!(sent > 0.0 && sent < stats.sent_samples as f64, "sent = {sent}, {stats:?}");

    // A 4xx is not retried: one attempt, counted as failed.
    let wrong = RemoteWrite::builder(&prom.url("/api/v1/no_such_endpoint"))
        .backoff(Backoff::new().initial(Duration::from_millis(1)).max_attempts(5))
        .build(&registry)
        .unwrap();
    let before = registry.flush();
    match wrong.send_once(&before) {
        Err(ExportError::Rejected { status, .. }) => assert!((400..500).contains(&status), "{status}"),
        other => panic!("expected a refusal, got {other:?}"),
    }
    let after = registry.flush();
    let failed =
        after.counter(self_metrics::EXPORT_SAMPLES, &[("exporter", "remote_write"), ("outcome", "failed")]).unwrap();
    assert!(failed > 0, "the refused batch is counted");
    let retries = after.counter(self_metrics::EXPORT_RETRIES, &[("exporter", "remote_write")]).unwrap();
    assert_eq!(retries, 0, "a 404 is not retried");
}

// ---------------------------------------------------------------------------------------------
// (2) Pushgateway.

/// The sample lines of `name` on the gateway's /metrics whose labels include all of `labels`.
fn gateway_samples(gw: &Server, name: &str, labels: &[(&str, &str)]) -> Vec<f64> {
    let (status, body) = get(&gw.url("/metrics")).expect("GET /metrics");
    assert_eq!(status, 200);
    body.lines()
        .filter(|l| l.starts_with(&format!("{name}{{")) || l.starts_with(&format!("{name} ")))
        .filter(|l| labels.iter().all(|(k, v)| l.contains(&format!("{k}=\"{v}\""))))
        .map(|l| l.rsplit_once(' ').unwrap().1.parse().unwrap())
        .collect()
}

#[test]
fn pushgateway_receives_pushes_with_grouping_labels() {
    let Some(bin) = shardmetrics_test_support::tool("prometheus-pushgateway") else { return };
    let gw = start_pushgateway(&bin);
    let group = [("job", "interop_job"), ("instance", "host/1"), ("zone", "eu west")];

    // One-shot PUT: the series appears with the grouping labels (a '/' in a value went
    // through the @base64 form, the space percent-encoded).
    let r1 = Registry::builder().manual().build();
    r1.counter("interop_pushed").label("kind", "batch").build().unwrap().add(7);
    let h = r1.histogram("interop_push_latency").unit(Unit::Microseconds).build().unwrap();
    h.record(300);
    h.record(700);
    let pusher = |method| {
        Pushgateway::builder(&gw.url(""))
            .job("interop_job")
            .grouping_label("instance", "host/1")
            .grouping_label("zone", "eu west")
            .method(method)
            .backoff(Backoff::new().initial(Duration::from_millis(20)).max_attempts(3))
    };
    let put1 = pusher(PushMethod::Put).build(&r1).unwrap();
    assert!(put1.url().contains("/instance@base64/aG9zdC8x"), "{}", put1.url());
    put1.push_once(&r1.flush()).unwrap();
    let mut with_kind = group.to_vec();
    with_kind.push(("kind", "batch"));
    assert_eq!(gateway_samples(&gw, "interop_pushed_total", &with_kind), [7.0], "{}", gw.log());
    assert_eq!(gateway_samples(&gw, "interop_push_latency_seconds_count", &group), [2.0]);
    let sum = gateway_samples(&gw, "interop_push_latency_seconds_sum", &group);
    assert!(sum.len() == 1 && (sum[0] - 0.001).abs() < 1e-12, "300 + 700 µs in seconds: {sum:?}");
    assert_eq!(gateway_samples(&gw, "push_time_seconds", &group).len(), 1, "the gateway accepted the group");

    // PUT replaces the group; POST replaces only the names pushed.
    let r2 = Registry::builder().manual().build();
    r2.counter("interop_other").build().unwrap().add(3);
    pusher(PushMethod::Put).build(&r2).unwrap().push_once(&r2.flush()).unwrap();
    assert!(gateway_samples(&gw, "interop_pushed_total", &group).is_empty(), "PUT replaced the group");
    assert_eq!(gateway_samples(&gw, "interop_other_total", &group), [3.0]);
    pusher(PushMethod::Post).build(&r1).unwrap().push_once(&r1.flush()).unwrap();
    assert_eq!(gateway_samples(&gw, "interop_pushed_total", &group), [7.0], "POST added its names");
    assert_eq!(gateway_samples(&gw, "interop_other_total", &group), [3.0], "POST kept the others");

    // Periodic pushes from the exporter's thread; shutdown pushes the final value.
    let r3 = Registry::builder().interval(Duration::from_millis(20)).build();
    let ticks = r3.counter("interop_ticks").build().unwrap();
    let periodic = pusher(PushMethod::Put).interval(Duration::from_millis(20)).start(&r3).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut seen_intermediate = false;
    for i in 1..=50u64 {
        ticks.inc();
        std::thread::sleep(Duration::from_millis(5));
        if i == 25 {
            while Instant::now() < deadline {
                if let Some(v) = gateway_samples(&gw, "interop_ticks_total", &group).first() {
                    seen_intermediate = *v >= 1.0 && *v <= 25.0;
                    break;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    }
    let stats = periodic.shutdown();
    assert!(seen_intermediate, "a periodic push arrived while recording went on");
    assert!(stats.sent_batches >= 2 && stats.failed_batches == 0, "{stats:?}");
    assert_eq!(gateway_samples(&gw, "interop_ticks_total", &group), [50.0], "the final flush was pushed");
    let sent = gateway_samples(&gw, self_metrics::EXPORT_SAMPLES, &[("exporter", "pushgateway"), ("outcome", "sent")]);
    assert_eq!(sent.len(), 1, "self-metrics pushed along");
    assert!(sent[0] > 0.0);

    // DELETE removes the group.
    put1.delete().unwrap();
    assert!(gateway_samples(&gw, "push_time_seconds", &group).is_empty(), "group deleted");
}

// ---------------------------------------------------------------------------------------------
// (3) Failure path: a closed port.

#[test]
fn closed_port_is_retried_with_backoff_counted_and_never_blocks_recording() {
    capture_logs();
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}/api/v1/write");
    let registry = Registry::builder().interval(Duration::from_millis(10)).build();
    let work = registry.counter("interop_work").build().unwrap();

    // A: a snapshot every 50 ms, each tried 3 times 10–20 ms apart, then given up.
    let give_up = RemoteWrite::builder(&url)
        .interval(Duration::from_millis(50))
        .queue_capacity(4)
        .backoff(Backoff::new().initial(Duration::from_millis(10)).max(Duration::from_millis(20)).max_attempts(3))
        .timeout(Duration::from_secs(1))
        .shutdown_timeout(Duration::from_secs(2))
        .start(&registry)
        .unwrap();
    // B: a snapshot every 10 ms piling up behind delays growing to 40–80 ms: the queue of 2
    // overflows and drops its oldest batches.
    let overflow = RemoteWrite::builder(&url)
        .interval(Duration::from_millis(10))
        .queue_capacity(2)
        .backoff(Backoff::new().initial(Duration::from_millis(20)).max(Duration::from_millis(80)).max_attempts(3))
        .timeout(Duration::from_secs(1))
        .shutdown_timeout(Duration::from_millis(200))
        .start(&registry)
        .unwrap();

    let start = Instant::now();
    let mut recorded = 0u64;
    while start.elapsed() < Duration::from_millis(800) {
        for _ in 0..1000 {
            work.inc();
        }
        recorded += 1000;
        std::thread::sleep(Duration::from_millis(1));
    }
    let elapsed = start.elapsed();
    let a = give_up.shutdown();
    let b = overflow.shutdown();

    // Recording went on and lost nothing.
    assert_eq!(registry.flush().counter("interop_work", &[]), Some(recorded));

    // Nothing was sent; every batch of A was tried exactly 3 times, then given up.
    assert_eq!((a.sent_batches, b.sent_batches), (0, 0), "{a:?} {b:?}");
    assert!(a.failed_batches >= 5, "{a:?}");
    assert_eq!(a.dropped_batches, 0, "{a:?}");
    assert_eq!(a.attempts, 3 * a.failed_batches, "{a:?}");
    assert_eq!(a.retries, 2 * a.failed_batches, "{a:?}");
    // B dropped batches from its full queue; its backoff (10–20, 20–40, then 40–80 ms between
    // attempts) bounds the attempts of a ~1 s run to about 25, where retrying at every 10 ms
    // poll would make ~100.
    assert!(b.dropped_batches >= 1 && b.dropped_samples > 0, "{b:?}");
    assert!(b.failed_batches >= 1, "what was queued at shutdown is failed: {b:?}");
    let max_attempts = 3 + (elapsed.as_millis() as u64 + 250) / 40;
    assert!((3..=max_attempts).contains(&b.attempts), "{} attempts in {elapsed:?}: {b:?}", b.attempts);

    // The registry's self-metrics agree with the handles.
    let snap = registry.flush();
    let count =
        |outcome| snap.counter(self_metrics::EXPORT_SAMPLES, &[("exporter", "remote_write"), ("outcome", outcome)]);
    assert_eq!(count("failed"), Some(a.failed_samples + b.failed_samples));
    assert_eq!(count("dropped"), Some(b.dropped_samples));
    assert_eq!(count("sent"), Some(0));
    assert_eq!(
        snap.counter(self_metrics::EXPORT_RETRIES, &[("exporter", "remote_write")]),
        Some(a.retries + b.retries)
    );
    assert!(logged(log::Level::Error, "remote_write exporter: giving up") >= 5, "give-ups are logged");
    assert!(logged(log::Level::Warn, "remote_write exporter: attempt") >= 10, "retries are logged");
    assert!(logged(log::Level::Warn, "remote_write exporter: queue full") >= 1, "drops are logged");

    // One-shot push to the same closed port: exact backoff (no jitter), then an error.
    let gw = Pushgateway::builder(&format!("http://127.0.0.1:{port}"))
        .job("j")
        .backoff(Backoff::new().initial(Duration::from_millis(30)).jitter(0.0).max_attempts(3))
        .build(&registry)
        .unwrap();
    let t = Instant::now();
    let err = gw.push_once(&registry.flush()).unwrap_err();
    let took = t.elapsed();
    assert!(matches!(err, ExportError::GaveUp { attempts: 3, .. }), "{err}");
    assert!(took >= Duration::from_millis(90), "30 + 60 ms of backoff, took {took:?}");
    assert!(err.to_string().contains("gave up after 3 attempt(s)"), "{err}");
    let failed =
        registry.flush().counter(self_metrics::EXPORT_SAMPLES, &[("exporter", "pushgateway"), ("outcome", "failed")]);
    assert!(failed.is_some_and(|f| f > 0), "{failed:?}");
}
