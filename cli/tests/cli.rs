//! The built `shardmetrics` binary end to end: the demo serves while it runs and exits 0;
//! `report`, `export` and `top` read it; failures (closed port, port in use, bad flags) say
//! what is wrong with a meaningful exit code.

use std::{
    io::{BufRead, BufReader, Read, Write},
    net::{TcpListener, TcpStream},
    process::{Child, Command, ExitStatus, Stdio},
    sync::mpsc::{self, Receiver},
    time::{Duration, Instant},
};

use serde_json::Value as Json;

use shardmetrics_test_support as common;

const BIN: &str = env!("CARGO_BIN_EXE_shardmetrics");

/// A running `shardmetrics demo`, killed when dropped.
struct Demo {
    child: Child,
    /// `http://127.0.0.1:PORT`.
    base: String,
    lines: Receiver<String>,
}

impl Drop for Demo {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts the demo on a free port, paced (so parallel tests leave each other CPU), and waits
/// for the URL it prints.
fn start_demo(extra: &[&str]) -> Demo {
    start_demo_with_env(extra, &[])
}

/// [`start_demo`] with extra environment variables.
fn start_demo_with_env(extra: &[&str], env: &[(&str, &str)]) -> Demo {
    let mut child = Command::new(BIN)
        .args(["demo", "--no-tui", "--listen", "127.0.0.1:0", "--threads", "2"])
        .args(extra)
        .envs(env.iter().copied())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the demo");
    let stdout = child.stdout.take().unwrap();
    let (tx, lines) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { return };
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    let first = lines.recv_timeout(Duration::from_secs(20)).expect("the demo prints its URL first");
    let url =
        first.split_whitespace().find(|w| w.starts_with("http://")).unwrap_or_else(|| panic!("no URL in {first:?}"));
    let base = url.strip_suffix("/metrics").unwrap_or_else(|| panic!("{url} is not …/metrics")).to_owned();
    Demo { child, base, lines }
}

/// A plain HTTP/1.1 GET: (status, body).
fn http_get(base: &str, path: &str) -> (u16, String) {
    let addr = base.strip_prefix("http://").unwrap();
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(s, "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").unwrap();
    let mut raw = String::new();
    s.read_to_string(&mut raw).unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").expect("a response head");
    let status = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    (status, body.to_owned())
}

/// Waits until the demo's endpoint has published ticks with operations in them.
fn wait_for_ticks(base: &str, ticks: u64) -> Json {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (status, body) = http_get(base, "/metrics.json");
        assert_eq!(status, 200, "{body}");
        let doc: Json = serde_json::from_str(&body).expect("JSON");
        if doc["seq"].as_u64().unwrap_or(0) >= ticks && doc["operations"].as_array().is_some_and(|o| !o.is_empty()) {
            return doc;
        }
        assert!(Instant::now() < deadline, "no tick with operations within 20 s: {body}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

struct Output {
    status: ExitStatus,
    stdout: String,
    stderr: String,
    took: Duration,
}

/// Runs the binary to completion (killing it after `limit`).
fn run(args: &[&str], limit: Duration) -> Output {
    let started = Instant::now();
    let mut child = Command::new(BIN)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run shardmetrics");
    let mut out = child.stdout.take().unwrap();
    let mut err = child.stderr.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        out.read_to_string(&mut s).unwrap();
        s
    });
    let err_reader = std::thread::spawn(move || {
        let mut s = String::new();
        err.read_to_string(&mut s).unwrap();
        s
    });
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if started.elapsed() > limit {
            let _ = child.kill();
            panic!("shardmetrics {args:?} still running after {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Output { status, stdout: reader.join().unwrap(), stderr: err_reader.join().unwrap(), took: started.elapsed() }
}

/// A port nothing listens on (bound, then released).
fn closed_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

#[test]
fn demo_serves_while_it_runs_and_exits_zero() {
    let started = Instant::now();
    let mut demo = start_demo(&["--seconds", "3"]);
    // The endpoint answers during the run, in both formats, with the demo's instruments.
    let doc = wait_for_ticks(&demo.base, 1);
    let ops: Vec<&str> = doc["operations"].as_array().unwrap().iter().filter_map(|o| o["name"].as_str()).collect();
    assert!(ops.contains(&"demo_request") && ops.contains(&"demo_db_query"), "{ops:?}");
    let (status, text) = http_get(&demo.base, "/metrics");
    assert_eq!(status, 200);
    let families = shardmetrics::scrape::parse_prometheus(&text).expect("the text endpoint parses");
    for name in
        ["demo_request_calls_total", "demo_request_duration_seconds", "demo_queue_depth", "demo_payment_breaker"]
    {
        assert!(families.iter().any(|f| f.name == name), "{name} missing");
    }
    let status = loop {
        if let Some(s) = demo.child.try_wait().unwrap() {
            break s;
        }
        assert!(started.elapsed() < Duration::from_secs(30), "the demo did not stop after --seconds 3");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "{status:?}");
    assert!(started.elapsed() >= Duration::from_secs(3));
    // Everything it printed (the channel closes when its stdout does).
    let mut lines = Vec::new();
    while let Ok(l) = demo.lines.recv_timeout(Duration::from_secs(10)) {
        lines.push(l);
    }
    let out = lines.join("\n");
    // Plain mode (stdout is a pipe): a table per tick, then the total.
    assert!(out.contains("operation") && out.contains("demo_request{method=\"GET\",route=\"/api/users\"}"), "{out}");
    let done = out.lines().find(|l| l.starts_with("done: ")).unwrap_or_else(|| panic!("no summary in {out}"));
    let n: u64 = done.split_whitespace().nth(1).unwrap().parse().unwrap();
    assert!(n > 0, "{done}");
}

#[test]
fn report_against_a_running_demo() {
    let demo = start_demo(&["--seconds", "60", "--rate", "20000", "--interval", "200ms"]);
    wait_for_ticks(&demo.base, 2);

    let out = run(&["report", &demo.base], Duration::from_secs(30));
    assert!(out.status.success(), "{}", out.stderr);
    for section in [
        "shardmetrics report — ",
        "Slowest operations",
        "Most called",
        "Error rates",
        "Busiest counters",
        "Process",
        "Alerts",
        "Warnings",
    ] {
        assert!(out.stdout.contains(section), "{section:?} missing:\n{}", out.stdout);
    }
    assert!(out.stdout.contains("/metrics.json (json"), "the base address resolves to the JSON document");
    assert!(out.stdout.contains("demo_request{method=\"POST\",route=\"/api/checkout\"}"));
    assert!(out.stdout.contains("state demo_payment_breaker"));

    // The text endpoint: operations are recognised from their three series.
    let out = run(&["report", &format!("{}/metrics", demo.base)], Duration::from_secs(30));
    assert!(out.status.success(), "{}", out.stderr);
    assert!(out.stdout.contains("(prometheus text"), "{}", out.stdout);
    let slowest = out.stdout.split("Most called").next().unwrap();
    assert!(slowest.contains("demo_request{method=\"GET\",route=\"/api/search\"}"), "{slowest}");

    // Thresholds crossed: warnings, and exit 1 with --strict.
    let out = run(
        &["report", &demo.base, "--max-error-rate", "0.01", "--max-p99", "1ms", "--strict"],
        Duration::from_secs(30),
    );
    assert_eq!(out.status.code(), Some(1), "{}", out.stdout);
    let warnings = out.stdout.split("\nWarnings\n").nth(1).unwrap();
    assert!(warnings.contains("! demo_request{method=\"POST\",route=\"/api/checkout\"}: error rate"), "{warnings}");
    assert!(warnings.contains(": p99 ") && warnings.contains("> 1.00ms"), "{warnings}");
}

#[test]
fn export_writes_files_that_parse() {
    let demo = start_demo(&["--seconds", "60", "--rate", "20000", "--interval", "200ms"]);
    wait_for_ticks(&demo.base, 1);
    let dir = std::env::temp_dir().join(format!("sm-cli-export-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();

    let json_path = dir.join("snap.json");
    let out =
        run(&["export", &demo.base, "--format", "json", "--out", json_path.to_str().unwrap()], Duration::from_secs(30));
    assert!(out.status.success(), "{}", out.stderr);
    assert!(out.stderr.contains("wrote") && out.stderr.contains("series"), "{}", out.stderr);
    let doc: Json = serde_json::from_str(&std::fs::read_to_string(&json_path).unwrap()).unwrap();
    assert!(doc["series"].as_array().unwrap().iter().any(|s| s["name"] == "demo_queue_depth"));
    assert!(doc["operations"].as_array().unwrap().iter().any(|o| o["name"] == "demo_request"));

    let prom_path = dir.join("snap.prom");
    let out = run(
        &["export", &demo.base, "--format", "prometheus", "--out", prom_path.to_str().unwrap()],
        Duration::from_secs(30),
    );
    assert!(out.status.success(), "{}", out.stderr);
    let families = shardmetrics::scrape::parse_prometheus(&std::fs::read_to_string(&prom_path).unwrap()).unwrap();
    assert!(families.iter().any(|f| f.name == "demo_request_calls_total"));
    let left: Vec<_> =
        std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    assert_eq!(left.len(), 2, "no temporary files left behind: {left:?}");

    // A directory that does not exist: exit 5 and the path in the message.
    let bad = dir.join("missing").join("x.json");
    let out = run(&["export", &demo.base, "--out", bad.to_str().unwrap()], Duration::from_secs(30));
    assert_eq!(out.status.code(), Some(5), "{}", out.stderr);
    assert!(out.stderr.contains("cannot write") && out.stderr.contains("missing"), "{}", out.stderr);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn top_plain_mode_against_json_and_text() {
    let demo = start_demo(&["--seconds", "60", "--rate", "20000", "--interval", "200ms"]);
    wait_for_ticks(&demo.base, 1);

    let out = run(&["top", &demo.base, "--no-tui", "--seconds", "2", "--interval", "300ms"], Duration::from_secs(30));
    assert!(out.status.success(), "{}", out.stderr);
    assert!(out.stdout.contains("json, window 10s"), "{}", out.stdout);
    assert!(out.stdout.contains("demo_request{method=\"GET\",route=\"/api/users\"}"));
    assert!(out.stdout.matches("── ").count() >= 3, "a table per scrape:\n{}", out.stdout);

    // Text endpoint: rates appear from the second scrape on.
    let url = format!("{}/metrics", demo.base);
    let out = run(&["top", &url, "--no-tui", "--seconds", "2", "--interval", "300ms"], Duration::from_secs(30));
    assert!(out.status.success(), "{}", out.stderr);
    assert!(out.stdout.contains("prometheus text"));
    let last = out.stdout.rsplit("── ").nth(1).unwrap_or("");
    assert!(last.contains("per second") && last.contains("demo_request_calls_total"), "{}", out.stdout);

    // The dashboard itself, drawn as text.
    let out = run(&["top", &demo.base, "--no-tui", "--seconds", "1", "--frame", "120x40"], Duration::from_secs(30));
    assert!(out.status.success(), "{}", out.stderr);
    for part in
        [" shardmetrics top ", "Latency", "p99▼", "p99 over time", "Rates", "Gauges · caches · states", "Alerts"]
    {
        assert!(out.stdout.contains(part), "{part:?} missing:\n{}", out.stdout);
    }
}

#[test]
fn top_against_a_closed_port_fails_clearly() {
    let url = format!("http://127.0.0.1:{}", closed_port());
    let out = run(&["top", &url, "--no-tui", "--seconds", "10"], Duration::from_secs(30));
    assert_eq!(out.status.code(), Some(3), "{}", out.stderr);
    assert!(out.took < Duration::from_secs(8), "fails at once, not after --seconds: {:?}", out.took);
    assert!(out.stderr.contains("connection refused"), "{}", out.stderr);
    assert!(out.stderr.contains("Is the service running? Try `shardmetrics demo`"), "{}", out.stderr);
    assert!(out.stdout.is_empty(), "{}", out.stdout);

    let out = run(&["report", &url], Duration::from_secs(30));
    assert_eq!(out.status.code(), Some(3));
    assert!(out.stderr.contains("connection refused"));
}

#[test]
fn top_reports_an_endpoint_that_goes_away() {
    let mut demo = start_demo(&["--seconds", "2", "--rate", "5000", "--interval", "200ms"]);
    wait_for_ticks(&demo.base, 1);
    let out = run(&["top", &demo.base, "--no-tui", "--seconds", "6", "--interval", "300ms"], Duration::from_secs(30));
    let _ = demo.child.wait();
    // Up first (tables), then down: each failed attempt reported with its backoff, and the
    // exit code says it ended down.
    assert!(out.stdout.contains("demo_request"), "{}", out.stdout);
    assert!(
        out.stderr.contains("scrape failed (attempt 1)") && out.stderr.contains("connection refused"),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("retrying in"), "{}", out.stderr);
    assert_eq!(out.status.code(), Some(3), "{}", out.stderr);
}

#[test]
fn demo_on_a_busy_port_suggests_another() {
    let busy = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = busy.local_addr().unwrap().to_string();
    let out = run(&["demo", "--no-tui", "--listen", &addr, "--seconds", "1"], Duration::from_secs(30));
    assert_eq!(out.status.code(), Some(3), "{}", out.stderr);
    assert!(out.stderr.contains("already in use") && out.stderr.contains("--listen 127.0.0.1:0"), "{}", out.stderr);
}

#[test]
fn bad_flags_give_usage() {
    let out = run(&["demo", "--threads", "zero"], Duration::from_secs(30));
    assert_eq!(out.status.code(), Some(2));
    assert!(out.stderr.contains("invalid value 'zero' for '--threads"), "{}", out.stderr);
    let out = run(&["report", "http://x", "--bogus"], Duration::from_secs(30));
    assert_eq!(out.status.code(), Some(2));
    assert!(out.stderr.contains("unexpected argument '--bogus'") && out.stderr.contains("Usage:"), "{}", out.stderr);
    let out = run(&["top"], Duration::from_secs(30));
    assert_eq!(out.status.code(), Some(2));
    assert!(out.stderr.contains("<URL>"), "{}", out.stderr);
    let out = run(&["top", "ftp://x"], Duration::from_secs(30));
    assert_eq!(out.status.code(), Some(2));
    assert!(out.stderr.contains("unsupported scheme"), "{}", out.stderr);
    let out = run(&["--help"], Duration::from_secs(30));
    assert!(out.status.success());
    assert!(out.stdout.contains("Exit codes:") && out.stdout.contains("top") && out.stdout.contains("report"));
}

/// A real Go-client exposition (Prometheus' own `/metrics`: client_golang like node_exporter,
/// with histograms, summaries and process_* series): `top` falls back from /metrics.json to
/// /metrics, computes rates from successive scrapes, and `report` reads it.
#[test]
fn top_and_report_against_a_real_prometheus() {
    let Some(prom) = common::Prometheus::start("cli-prom", &[], &[]) else { return };
    let port = prom.api.port();
    let base = format!("http://127.0.0.1:{port}");

    let out = run(&["top", &base, "--no-tui", "--seconds", "3", "--interval", "500ms"], Duration::from_secs(60));
    assert!(out.status.success(), "{}", out.stderr);
    assert!(out.stdout.contains(&format!("{base}/metrics · prometheus text")), "{}", out.stdout);
    let last = out.stdout.rsplit("── ").nth(1).unwrap();
    // Rates need two scrapes: the last table has them (its own /metrics handler counts our scrapes).
    assert!(last.contains("per second") && last.contains("promhttp_metric_handler_requests_total"), "{last}");
    assert!(last.contains("process: ") && last.contains("rss "), "{last}");

    let out = run(&["report", &base], Duration::from_secs(60));
    assert!(out.status.success(), "{}", out.stderr);
    let slowest = out.stdout.split("Most called").next().unwrap();
    assert!(slowest.contains("prometheus_http_request_duration_seconds{/metrics}"), "{}", out.stdout);
}

/// Serves like node_exporter: Prometheus text on /metrics, an HTML landing page (status 200)
/// on every other path. Returns the base URL; the thread serves `n` requests.
fn fake_node_exporter(n: usize) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        for (i, stream) in listener.incoming().take(n).enumerate() {
            let Ok(mut s) = stream else { continue };
            let mut head = Vec::new();
            let mut byte = [0u8; 1];
            while !head.ends_with(b"\r\n\r\n") && s.read(&mut byte).map(|n| n == 1).unwrap_or(false) {
                head.push(byte[0]);
            }
            let path = String::from_utf8_lossy(&head).split_whitespace().nth(1).unwrap_or("").to_owned();
            let (ct, body) = if path == "/metrics" {
                let text = format!(
                    "# TYPE node_network_receive_bytes_total counter\nnode_network_receive_bytes_total{{device=\"eth0\"}} {}\n\
                     # TYPE process_resident_memory_bytes gauge\nprocess_resident_memory_bytes 2.097152e+07\n",
                    1_000_000 * (i + 1)
                );
                ("text/plain; version=0.0.4; charset=utf-8", text)
            } else {
                ("text/html; charset=UTF-8", "<html><head><title>Node Exporter</title></head></html>".to_owned())
            };
            let _ = write!(
                s,
                "HTTP/1.1 200 OK\r\nContent-Type: {ct}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    base
}

#[test]
fn a_base_address_that_answers_html_falls_back_to_metrics() {
    let base = fake_node_exporter(64);
    let out = run(&["report", &base], Duration::from_secs(30));
    assert!(out.status.success(), "{}", out.stderr);
    assert!(out.stdout.contains(&format!("{base}/metrics (prometheus text")), "{}", out.stdout);
    assert!(out.stdout.contains("rss 20.0MiB"), "{}", out.stdout);
    // `export --format json` asks /metrics.json only, and says what it got instead.
    let out = run(&["export", &base, "--format", "json"], Duration::from_secs(30));
    assert_eq!(out.status.code(), Some(4), "{}", out.stderr);
    assert!(out.stderr.contains("text/html") && out.stderr.contains("--format prometheus"), "{}", out.stderr);
}

/// The real node_exporter, when installed (Debian package prometheus-node-exporter).
#[test]
fn top_against_a_real_node_exporter() {
    let Some(exporter) = common::tool("prometheus-node-exporter") else { return };
    let dir = common::temp_dir("cli-node");
    let port = common::free_port();
    let guard = common::spawn(&exporter, &[format!("--web.listen-address=127.0.0.1:{port}")], dir);
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    common::wait_for(Duration::from_secs(30), &guard, "node_exporter to answer", || {
        common::request(addr, "GET", "/metrics", &[]).ok().filter(|r| r.status == 200)
    });
    let base = format!("127.0.0.1:{port}");
    let out = run(&["top", &base, "--no-tui", "--seconds", "3", "--interval", "1s"], Duration::from_secs(60));
    assert!(out.status.success(), "{}", out.stderr);
    let last = out.stdout.rsplit("── ").nth(1).unwrap();
    assert!(last.contains("node_") && last.contains("per second") && last.contains("process: cpu "), "{last}");
    assert!(
        last.contains("go_memstats_last_gc_time_seconds = ") && last.contains(" ago"),
        "timestamps as ages: {last}"
    );
}

/// Issue #14: huge numbers were a panic (exit 101); now a usage error that names the option.
#[test]
fn huge_numbers_are_usage_errors_not_panics() {
    for args in [
        &["demo", "--seconds", "18446744073709551615", "--no-tui", "--listen", "127.0.0.1:0"][..],
        &["top", "127.0.0.1:1", "--seconds", "18446744073709551615", "--no-tui"],
        &["top", "127.0.0.1:1", "--timeout", "18446744073709551615s", "--no-tui", "--seconds", "1"],
        &["demo", "--interval", "18446744073709551615s", "--no-tui", "--seconds", "1", "--listen", "127.0.0.1:0"],
    ] {
        let out = run(args, Duration::from_secs(30));
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", out.stderr);
        assert!(!out.stderr.contains("panicked"), "{args:?}: {}", out.stderr);
        let option = args.iter().find(|a| a.starts_with("--") && !["--no-tui", "--listen"].contains(a)).unwrap();
        assert!(out.stderr.contains("invalid value") && out.stderr.contains(option), "{}", out.stderr);
        assert!(out.stdout.is_empty(), "nothing started: {}", out.stdout);
    }
}

/// Issue #14: port 70000 was tried, and reported as "connection refused".
#[test]
fn an_out_of_range_port_is_a_bad_address() {
    for args in [&["top", "127.0.0.1:70000", "--no-tui", "--seconds", "1"][..], &["report", "http://127.0.0.1:70000"]] {
        let out = run(args, Duration::from_secs(30));
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", out.stderr);
        assert!(out.stderr.contains("port 70000 is out of range"), "{}", out.stderr);
        assert!(!out.stderr.contains("connection refused"), "{}", out.stderr);
    }
    let out = run(&["demo", "--no-tui", "--seconds", "1", "--listen", "127.0.0.1:70000"], Duration::from_secs(30));
    assert_eq!(out.status.code(), Some(2), "{}", out.stderr);
    assert!(out.stderr.contains("port 70000 is out of range"), "{}", out.stderr);
}

/// Serves `body` with `content_type` on every path for `n` requests; returns the base URL.
fn serve_fixed(content_type: &'static str, body: &'static str, n: usize) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        for stream in listener.incoming().take(n) {
            let Ok(mut s) = stream else { continue };
            let mut head = Vec::new();
            let mut byte = [0u8; 1];
            while !head.ends_with(b"\r\n\r\n") && s.read(&mut byte).map(|n| n == 1).unwrap_or(false) {
                head.push(byte[0]);
            }
            let _ = write!(
                s,
                "HTTP/1.1 200 OK\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    base
}

/// Issue #14: invalid JSON served as `application/json` was "asked for JSON but got
/// application/json"; now the parser's complaint and where.
#[test]
fn invalid_json_says_what_is_wrong() {
    let base = serve_fixed("application/json", "{not json", 8);
    let out = run(&["export", &base, "--format", "json"], Duration::from_secs(30));
    assert_eq!(out.status.code(), Some(4), "{}", out.stderr);
    assert!(
        out.stderr.contains("the body is not valid JSON: key must be a string at line 1 column 2"),
        "{}",
        out.stderr
    );
    assert!(!out.stderr.contains("asked for JSON but got application/json"), "{}", out.stderr);
    let out = run(&["report", &format!("{base}/metrics.json")], Duration::from_secs(30));
    assert_eq!(out.status.code(), Some(4), "{}", out.stderr);
    assert!(out.stderr.contains("not valid JSON: key must be a string at line 1 column 2"), "{}", out.stderr);
}

/// `demo --otlp URL` pushes every tick to an OTLP/HTTP receiver (here a loopback listener that
/// answers 200) and prints what it delivered when it stops; the OTel environment picks the
/// histogram form (exponential here: the recorded buckets at the demo's schema 5).
#[test]
fn demo_pushes_otlp_when_asked() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, bodies) = mpsc::channel();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            stream.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            let mut raw = Vec::new();
            let mut buf = [0u8; 16384];
            let (head, mut body) = loop {
                let Ok(n) = stream.read(&mut buf) else { break (String::new(), Vec::new()) };
                if n == 0 {
                    break (String::new(), Vec::new());
                }
                raw.extend_from_slice(&buf[..n]);
                if let Some(i) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
                    break (String::from_utf8_lossy(&raw[..i]).to_ascii_lowercase(), raw[i + 4..].to_vec());
                }
            };
            let len: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0);
            while body.len() < len {
                match stream.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => body.extend_from_slice(&buf[..n]),
                }
            }
            let _ = stream.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
            if tx.send((head, body)).is_err() {
                return;
            }
        }
    });
    let url = format!("http://{addr}");
    let mut demo = start_demo_with_env(
        &["--seconds", "2", "--interval", "200ms", "--rate", "2000", "--otlp", &url],
        &[("OTEL_EXPORTER_OTLP_METRICS_DEFAULT_HISTOGRAM_AGGREGATION", "base2_exponential_bucket_histogram")],
    );
    let status = demo.child.wait().unwrap();
    assert!(status.success(), "{status:?}");
    let mut lines = Vec::new();
    while let Ok(l) = demo.lines.recv_timeout(Duration::from_secs(10)) {
        lines.push(l);
    }
    let out = lines.join("\n");
    assert!(out.contains(&format!("pushing OTLP to {url}/v1/metrics")), "{out}");
    let summary = out.lines().find(|l| l.starts_with("otlp: ")).unwrap_or_else(|| panic!("no otlp line in {out}"));
    let sent: u64 = summary.split_whitespace().nth(1).unwrap().parse().unwrap();
    assert!(sent >= 2, "{summary}");
    let received: Vec<(String, Vec<u8>)> = bodies.try_iter().collect();
    assert_eq!(received.len() as u64, sent, "{summary}");
    let (head, body) = received.last().unwrap();
    assert!(head.starts_with("post /v1/metrics ") && head.contains("content-type: application/x-protobuf"), "{head}");
    let req = shardmetrics::export::otlp::decode_body(body, false).unwrap();
    let rm = &req.resource_metrics[0];
    let service = shardmetrics::export::otlp::attribute(&rm.resource.as_ref().unwrap().attributes, "service.name");
    assert_eq!(service, Some("shardmetrics-demo"));
    let names: Vec<&str> = rm.scope_metrics[0].metrics.iter().map(|m| m.name.as_str()).collect();
    for name in ["demo_request_calls", "demo_request_duration", "demo_queue_depth"] {
        assert!(names.contains(&name), "{name} in {names:?}");
    }
    use shardmetrics::export::otlp::proto::metric::Data;
    let duration = rm.scope_metrics[0].metrics.iter().find(|m| m.name == "demo_request_duration").unwrap();
    let Some(Data::ExponentialHistogram(h)) = &duration.data else { panic!("{:?}", duration.data) };
    assert_eq!(duration.unit, "s");
    let mut total = 0;
    for p in &h.data_points {
        assert_eq!(p.scale, 5);
        let buckets: u64 = p.positive.as_ref().map_or(0, |b| b.bucket_counts.iter().sum());
        assert_eq!(buckets + p.zero_count, p.count, "{p:?}");
        total += p.count;
    }
    assert!(total > 100, "{total} requests timed");
}
