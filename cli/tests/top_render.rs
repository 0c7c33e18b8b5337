//! The `top` dashboard rendered headless into ratatui's `TestBackend`, from recorded scrapes
//! (shardmetrics JSON with operations and a window; node_exporter-style Prometheus text) and
//! from a live registry's own renders, asserting on the drawn frame: titles, rates, the p99
//! column, sorting, the filter, down/stale state.

use std::time::Duration;

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use shardmetrics::{scrape::Format, Registry};
use shardmetrics_cli::{
    app::App,
    ingest::{LatencyKind, Scrape, SeriesKey},
    view,
};

/// A `/metrics.json?window=10s` document as the endpoint serves it (trimmed to a few series;
/// `SEQ`, `P99` and `CALLS` are filled in per scrape).
const JSON: &str = r#"{"seq":SEQ,"timestamp_ms":1767225600000,"interval_seconds":1.0,"tick_duration_seconds":0.00021,
"windows":["10s","1m","5m"],
"window":{"length":"10s","length_seconds":10.0,"covered_seconds":10.0,"ticks":10},
"series":[
 {"name":"demo_request_calls_total","type":"counter","labels":{"method":"POST","route":"/api/checkout"},"value":32900,"delta":1600,"rate":1600.0,"window":{"increase":16000,"rate":1600.0}},
 {"name":"demo_request_calls_total","type":"counter","labels":{"method":"GET","route":"/api/users"},"value":CALLS,"delta":12800,"rate":12800.0,"window":{"increase":128000,"rate":12800.0}},
 {"name":"demo_request_errors_total","type":"counter","labels":{"method":"POST","route":"/api/checkout"},"value":658,"delta":110,"rate":110.0,"window":{"increase":1100,"rate":110.0}},
 {"name":"demo_request_duration","type":"histogram","labels":{"method":"POST","route":"/api/checkout"},"unit":"nanoseconds","count":32900,"sum":1,"min":1,"max":1,"mean":1,"p50":1,"p90":1,"p99":1,"p999":1,"delta_count":1,"rate":1.0},
 {"name":"demo_response_bytes_total","type":"counter","labels":{},"unit":"bytes","value":1400000000,"delta":734003200,"rate":734003200.0,"window":{"increase":7340032000,"rate":734003200.0}},
 {"name":"demo_cache_hits_total","type":"counter","labels":{},"value":350000,"delta":8200,"rate":8200.0,"window":{"increase":82000,"rate":8200.0}},
 {"name":"demo_cache_misses_total","type":"counter","labels":{},"value":76900,"delta":1800,"rate":1800.0,"window":{"increase":18000,"rate":1800.0}},
 {"name":"demo_cache_size","type":"gauge","labels":{},"value":39600},
 {"name":"demo_queue_depth","type":"gauge","labels":{},"value":17},
 {"name":"demo_payment_breaker","type":"gauge","labels":{"demo_payment_breaker":"closed"},"value":0},
 {"name":"demo_payment_breaker","type":"gauge","labels":{"demo_payment_breaker":"open"},"value":1},
 {"name":"demo_payment_breaker","type":"gauge","labels":{"demo_payment_breaker":"half_open"},"value":0},
 {"name":"demo_payload_size","type":"histogram","labels":{},"unit":"bytes","count":500,"sum":1000000,"min":100,"max":9000,"mean":2000.0,"p50":1800,"p90":4000,"p99":8192,"p999":9000,"delta_count":50,"rate":50.0,
  "window":{"count":500,"sum":1000000,"min":100,"max":9000,"mean":2000.0,"p50":1800,"p90":4000,"p99":8192,"p999":9000,"rate":50.0}},
 {"name":"shardmetrics_alert_state","type":"gauge","labels":{"alert":"CheckoutErrors","state":"firing"},"value":1},
 {"name":"shardmetrics_alert_state","type":"gauge","labels":{"alert":"SlowSearch","state":"firing"},"value":0},
 {"name":"shardmetrics_alert_state","type":"gauge","labels":{"alert":"SlowSearch","state":"pending"},"value":1},
 {"name":"process_cpu_seconds_total","type":"counter","labels":{},"unit":"milliseconds","value":12500,"delta":750,"rate":750.0,"window":{"increase":7500,"rate":750.0}},
 {"name":"process_resident_memory_bytes","type":"gauge","labels":{},"unit":"bytes","value":25165824},
 {"name":"process_threads","type":"gauge","labels":{},"value":7}
],
"operations":[
 {"name":"demo_request","labels":{"method":"POST","route":"/api/checkout"},
  "stats":{"count":32900,"errors":658,"error_rate":0.02,"success_rate":0.98,"total_time_seconds":1500.0,"mean_ns":45600000.0,"min_ns":20000,"max_ns":2400000000,"stddev_ns":1.0,"p50_ns":44600000,"p90_ns":87000000,"p95_ns":99000000,"p99_ns":153000000,"p999_ns":900000000,"throughput":1600.0},
  "window":{"count":16000,"errors":1100,"error_rate":0.06875,"success_rate":0.93125,"total_time_seconds":700.0,"mean_ns":45600000.0,"min_ns":20000,"max_ns":2400000000,"stddev_ns":1.0,"p50_ns":44600000,"p90_ns":87000000,"p95_ns":99000000,"p99_ns":P99,"p999_ns":900000000,"throughput":1600.0}},
 {"name":"demo_request","labels":{"method":"GET","route":"/api/users"},
  "stats":{"count":CALLS,"errors":500,"error_rate":0.0019,"success_rate":0.9981,"total_time_seconds":40.0,"mean_ns":154000.0,"min_ns":9000,"max_ns":76300000,"stddev_ns":1.0,"p50_ns":154000,"p90_ns":860000,"p95_ns":1100000,"p99_ns":1920000,"p999_ns":9000000,"throughput":12800.0},
  "window":{"count":128000,"errors":243,"error_rate":0.0019,"success_rate":0.9981,"total_time_seconds":20.0,"mean_ns":154000.0,"min_ns":9000,"max_ns":76300000,"stddev_ns":1.0,"p50_ns":154000,"p90_ns":860000,"p95_ns":1100000,"p99_ns":1920000,"p999_ns":9000000,"throughput":12800.0}},
 {"name":"demo_db_query","labels":{},
  "stats":{"count":76900,"errors":62,"error_rate":0.0008,"success_rate":0.9992,"total_time_seconds":80.0,"mean_ns":1000000.0,"min_ns":50000,"max_ns":23200000,"stddev_ns":1.0,"p50_ns":827000,"p90_ns":3310000,"p95_ns":4000000,"p99_ns":6360000,"p999_ns":20000000,"throughput":3750.0},
  "window":{"count":37500,"errors":30,"error_rate":0.0008,"success_rate":0.9992,"total_time_seconds":40.0,"mean_ns":1000000.0,"min_ns":50000,"max_ns":23200000,"stddev_ns":1.0,"p50_ns":827000,"p90_ns":3310000,"p95_ns":4000000,"p99_ns":6360000,"p999_ns":20000000,"throughput":3750.0}}
]}"#;

fn json_scrape(seq: u64, p99_ms: u64, calls: u64) -> Scrape {
    let doc = JSON
        .replace("SEQ", &seq.to_string())
        .replace("P99", &(p99_ms * 1_000_000).to_string())
        .replace("CALLS", &calls.to_string());
    Scrape::parse(&doc, Some("application/json")).expect("fixture parses")
}

/// Two scrapes of node_exporter's `/metrics` (an excerpt, same series), five seconds apart.
const NODE_1: &str = r#"# HELP go_gc_duration_seconds A summary of the wall-time pause (stop-the-world) duration in garbage collection cycles.
# TYPE go_gc_duration_seconds summary
go_gc_duration_seconds{quantile="0"} 2.3e-05
go_gc_duration_seconds{quantile="0.25"} 3.1e-05
go_gc_duration_seconds{quantile="0.5"} 4.2e-05
go_gc_duration_seconds{quantile="0.75"} 5.9e-05
go_gc_duration_seconds{quantile="1"} 0.000412
go_gc_duration_seconds_sum 0.0123
go_gc_duration_seconds_count 187
# HELP node_cpu_seconds_total Seconds the CPUs spent in each mode.
# TYPE node_cpu_seconds_total counter
node_cpu_seconds_total{cpu="0",mode="idle"} 81234.56
node_cpu_seconds_total{cpu="0",mode="system"} 1234.5
node_cpu_seconds_total{cpu="0",mode="user"} 4567.89
# HELP node_load1 1m load average.
# TYPE node_load1 gauge
node_load1 0.42
# HELP node_memory_MemAvailable_bytes Memory information field MemAvailable_bytes.
# TYPE node_memory_MemAvailable_bytes gauge
node_memory_MemAvailable_bytes 8.589934592e+09
# HELP node_network_receive_bytes_total Network device statistic receive_bytes.
# TYPE node_network_receive_bytes_total counter
node_network_receive_bytes_total{device="eth0"} 1.23456789e+09
node_network_receive_bytes_total{device="lo"} 5.6789e+07
# HELP process_cpu_seconds_total Total user and system CPU time spent in seconds.
# TYPE process_cpu_seconds_total counter
process_cpu_seconds_total 10.5
# HELP process_max_fds Maximum number of open file descriptors.
# TYPE process_max_fds gauge
process_max_fds 1.048576e+06
# HELP process_open_fds Number of open file descriptors.
# TYPE process_open_fds gauge
process_open_fds 9
# HELP process_resident_memory_bytes Resident memory size in bytes.
# TYPE process_resident_memory_bytes gauge
process_resident_memory_bytes 2.097152e+07
# HELP promhttp_metric_handler_requests_total Total number of scrapes by HTTP status code.
# TYPE promhttp_metric_handler_requests_total counter
promhttp_metric_handler_requests_total{code="200"} 1234
promhttp_metric_handler_requests_total{code="500"} 0
promhttp_metric_handler_requests_total{code="503"} 0
"#;

fn node_2() -> String {
    NODE_1
        .replace("{cpu=\"0\",mode=\"idle\"} 81234.56", "{cpu=\"0\",mode=\"idle\"} 81239.06")
        .replace("{cpu=\"0\",mode=\"user\"} 4567.89", "{cpu=\"0\",mode=\"user\"} 4568.29")
        .replace("{device=\"eth0\"} 1.23456789e+09", "{device=\"eth0\"} 1239810770")
        .replace("{device=\"lo\"} 5.6789e+07", "{device=\"lo\"} 56840200")
        .replace("process_cpu_seconds_total 10.5", "process_cpu_seconds_total 10.75")
        .replace("{code=\"200\"} 1234", "{code=\"200\"} 1235")
        .replace("go_gc_duration_seconds_count 187", "go_gc_duration_seconds_count 190")
}

fn key(c: KeyCode) -> KeyEvent {
    KeyEvent::new(c, KeyModifiers::NONE)
}

/// The frame's line containing `needle` (panics with the whole frame if there is none).
fn line_with<'a>(frame: &'a str, needle: &str) -> &'a str {
    frame.lines().find(|l| l.contains(needle)).unwrap_or_else(|| panic!("no line with {needle:?} in\n{frame}"))
}

/// Row order of the latency table: the frame lines mentioning each needle, by position.
fn order(frame: &str, needles: &[&str]) -> Vec<usize> {
    needles
        .iter()
        .map(|n| frame.lines().position(|l| l.contains(n)).unwrap_or_else(|| panic!("{n:?} not in\n{frame}")))
        .collect()
}

fn json_app() -> App {
    let mut app = App::new("http://127.0.0.1:9464/metrics.json");
    app.on_scrape(0.0, json_scrape(41, 120, 250_000), Duration::from_micros(900));
    app.on_scrape(1.0, json_scrape(42, 153, 263_000), Duration::from_micros(1200));
    app
}

#[test]
fn json_dashboard_frame() {
    let app = json_app();
    let frame = view::to_text(&app, 150, 40);
    println!("{frame}");
    // Titles and header.
    for title in
        [" shardmetrics top ", "Latency — 4 of 4 series, by p99", "p99 over time", "Rates", "Process", "Alerts"]
    {
        assert!(frame.contains(title), "{title:?} missing in\n{frame}");
    }
    let head = frame.lines().next().unwrap();
    assert!(head.contains("json, window 10s, tick 42") && head.contains("2 scrapes"), "{head}");
    assert!(line_with(&frame, "operation / histogram").contains("p99▼"), "p99 is the sort column");

    // The p99 column: checkout's windowed p99 of the latest scrape (153 ms), users' 1.92 ms;
    // checkout's windowed error rate (6.875 %), and its throughput as the service computed it.
    let checkout = line_with(&frame, "route=\"/api/checkout\"}");
    assert!(checkout.contains("153ms") && checkout.contains("6.9%") && checkout.contains("1.60k"), "{checkout}");
    assert!(checkout.contains("44.6ms") && checkout.contains("2.40s"), "p50 and max: {checkout}");
    let users = line_with(&frame, "route=\"/api/users\"}");
    assert!(users.contains("1.92ms") && users.contains("12.8k") && users.contains("263k"), "{users}");
    // Slowest first: checkout (153 ms), db (6.36 ms), users (1.92 ms), then the bytes
    // histogram, whose p99 (8 KiB) is not a time and formats as bytes.
    let rows = order(&frame, &["route=\"/api/checkout\"}", "demo_db_query ", "route=\"/api/users\"}", "(hist)"]);
    assert!(rows.windows(2).all(|w| w[0] < w[1]), "{rows:?}\n{frame}");
    assert!(line_with(&frame, "demo_payload_size (hist)").contains("8.00KiB"));

    // Rates per series from the window, bytes as bytes per second.
    assert!(line_with(&frame, "demo_response_bytes_total").contains("700MiB/s"));
    // Gauges, the cache's hit ratio (8200 / 10000 lookups per second), the breaker's state.
    assert!(line_with(&frame, "cache demo_cache").contains("hit 82%"));
    assert!(line_with(&frame, "state demo_payment_breaker").contains("open"));
    assert!(line_with(&frame, "demo_queue_depth").contains("17"));
    // Process: 750 ms of CPU per second is 75 % of a core; resident memory 24 MiB.
    let process = line_with(&frame, "cpu ");
    assert!(
        process.contains("cpu 75%") && process.contains("rss 24.0MiB") && process.contains("threads 7"),
        "{process}"
    );
    // Alerts: the firing one first, the pending one after, the inactive state not shown.
    assert!(frame.contains("Alerts — 1 firing"));
    // The chart's legend names series by their label values.
    assert!(frame.contains("POST /api/checkout") && frame.contains("GET /api/users"), "{frame}");
    let alerts = order(&frame, &["firing   CheckoutErrors", "pending  SlowSearch"]);
    assert!(alerts[0] < alerts[1], "{frame}");
}

#[test]
fn sort_cycles_with_s() {
    let mut app = json_app();
    app.on_key(key(KeyCode::Char('s')));
    let frame = view::to_text(&app, 150, 40);
    assert!(line_with(&frame, "operation / histogram").contains("calls/s▼"));
    assert!(frame.contains("by calls/s"));
    let rows = order(&frame, &["route=\"/api/users\"}", "demo_db_query ", "route=\"/api/checkout\"}"]);
    assert!(rows.windows(2).all(|w| w[0] < w[1]), "busiest first: {rows:?}\n{frame}");

    app.on_key(key(KeyCode::Char('s')));
    let frame = view::to_text(&app, 150, 40);
    assert!(line_with(&frame, "operation / histogram").contains("err%▼"));
    let rows = order(&frame, &["route=\"/api/checkout\"}", "route=\"/api/users\"}", "demo_db_query "]);
    assert!(rows.windows(2).all(|w| w[0] < w[1]), "most failing first: {rows:?}\n{frame}");

    app.on_key(key(KeyCode::Char('s')));
    let frame = view::to_text(&app, 150, 40);
    // By name, then labels: method="GET" (users) sorts before method="POST" (checkout).
    let rows =
        order(&frame, &["demo_db_query ", "demo_payload_size", "route=\"/api/users\"}", "route=\"/api/checkout\"}"]);
    assert!(rows.windows(2).all(|w| w[0] < w[1]), "by name: {rows:?}\n{frame}");
    app.on_key(key(KeyCode::Char('s')));
    assert!(line_with(&view::to_text(&app, 150, 40), "operation / histogram").contains("p99▼"), "and round again");
}

#[test]
fn filter_by_name() {
    let mut app = json_app();
    app.on_key(key(KeyCode::Char('/')));
    for c in "USERS".chars() {
        app.on_key(key(KeyCode::Char(c)));
    }
    let frame = view::to_text(&app, 150, 40);
    assert!(line_with(&frame, " q quit").contains("USERS█"), "the filter being typed is shown");
    app.on_key(key(KeyCode::Enter));
    let frame = view::to_text(&app, 150, 40);
    assert!(frame.contains("Latency — 1 of 4 series"), "{frame}");
    assert!(frame.contains("route=\"/api/users\"}") && !frame.contains("/api/checkout"), "{frame}");
    assert!(line_with(&frame, " q quit").contains(": USERS"));
    app.on_key(key(KeyCode::Esc));
    let frame = view::to_text(&app, 150, 40);
    assert!(frame.contains("Latency — 4 of 4 series") && frame.contains("/api/checkout"));
}

#[test]
fn prometheus_text_rates_from_successive_scrapes() {
    let mut app = App::new("http://127.0.0.1:9100/metrics");
    let ct = Some("text/plain; version=0.0.4; charset=utf-8");
    app.on_scrape(100.0, Scrape::parse(NODE_1, ct).unwrap(), Duration::from_millis(3));
    let first = view::to_text(&app, 150, 40);
    // One scrape of a text endpoint has totals but no rates yet.
    let eth0 = line_with(&first, "node_network_receive_bytes_total{device=\"eth0\"}");
    assert!(eth0.contains(" - ") && eth0.contains("1.15GiB"), "{eth0}");

    app.on_scrape(105.0, Scrape::parse(&node_2(), ct).unwrap(), Duration::from_millis(3));
    let frame = view::to_text(&app, 150, 40);
    println!("{frame}");
    let head = frame.lines().next().unwrap();
    assert!(head.contains("prometheus text") && head.contains("2 scrapes"), "{head}");
    // (1239810770 − 1234567890) bytes / 5 s = 1 MiB/s; (56840200 − 56789000) / 5 = 10 KiB/s.
    assert!(line_with(&frame, "{device=\"eth0\"}").contains("1.00MiB/s"));
    assert!(line_with(&frame, "{device=\"lo\"}").contains("10.0KiB/s"));
    // 4.5 CPU-seconds idle in 5 s; 1 scrape of node_exporter itself in 5 s.
    assert!(line_with(&frame, "mode=\"idle\"}").contains("0.90"));
    // A name too long for its column keeps its label values: `…_requests_total{200}`.
    assert!(line_with(&frame, "promhttp_metric_handler_requests_total{200}").contains("0.20"));
    // Busiest first: eth0 bytes above lo bytes above idle CPU.
    let rows = order(&frame, &["{device=\"eth0\"}", "{device=\"lo\"}", "mode=\"idle\"}"]);
    assert!(rows.windows(2).all(|w| w[0] < w[1]), "{rows:?}");
    // The summary's own quantiles (no 0.99 given: "-"), its rate from the count difference.
    let gc = line_with(&frame, "go_gc_duration_seconds (summary)");
    assert!(gc.contains("42.0µs") && gc.contains("412µs") && gc.contains("0.60"), "{gc}");
    // node_exporter's own process: 0.25 s of CPU in 5 s.
    let process = line_with(&frame, "cpu ");
    assert!(
        process.contains("cpu 5.0%") && process.contains("rss 20.0MiB") && process.contains("fds 9/1.05M"),
        "{process}"
    );
    assert!(frame.contains("node_load1") && frame.contains("no alert states exported"));
    // CPU-seconds totals read as hours, not thousands of minutes.
    assert!(line_with(&frame, "mode=\"idle\"}").contains("22.6h"));
}

#[test]
fn endpoint_down_keeps_stale_data_and_says_so() {
    let mut app = json_app();
    app.on_failure("http://127.0.0.1:9464/metrics.json: connection refused".into(), 3, Duration::from_secs(4));
    let frame = view::to_text(&app, 150, 40);
    assert!(frame.lines().next().unwrap().contains("DOWN"));
    let footer = line_with(&frame, "endpoint down");
    assert!(
        footer.contains("connection refused") && footer.contains("retrying in 4.00s") && footer.contains("attempt 3")
    );
    assert!(frame.contains("(stale)") && frame.contains("153ms"), "the last data stays, marked stale");
    // Back up: no longer stale.
    app.on_scrape(5.0, json_scrape(43, 140, 270_000), Duration::from_millis(1));
    let frame = view::to_text(&app, 150, 40);
    assert!(!frame.contains("(stale)") && !frame.contains("DOWN") && frame.contains("140ms"));
}

#[test]
fn paused_dashboard_ignores_scrapes() {
    let mut app = json_app();
    app.on_key(key(KeyCode::Char('p')));
    app.on_scrape(2.0, json_scrape(43, 999, 300_000), Duration::from_millis(1));
    let frame = view::to_text(&app, 150, 40);
    assert!(frame.contains("PAUSED") && frame.contains("tick 42") && !frame.contains("999ms"), "{frame}");
    app.on_key(key(KeyCode::Char('p')));
    app.on_scrape(3.0, json_scrape(44, 999, 300_000), Duration::from_millis(1));
    assert!(view::to_text(&app, 150, 40).contains("999ms"));
}

#[test]
fn any_terminal_size_renders() {
    let app = json_app();
    for (w, h) in [(20, 8), (80, 24), (100, 30), (240, 70)] {
        let frame = view::to_text(&app, w, h);
        assert_eq!(frame.lines().count(), h as usize);
        assert!(frame.lines().all(|l| l.chars().count() <= w as usize));
        assert!(frame.contains("shardmetrics"), "{w}x{h}:\n{frame}");
    }
    assert!(view::to_text(&app, 80, 24).contains("Latency"));
}

#[test]
fn waiting_for_first_scrape() {
    let frame = view::to_text(&App::new("http://x:1"), 120, 30);
    assert!(frame.contains("connecting") && frame.contains("waiting for the first scrape"), "{frame}");
}

/// The model reads what the library really renders: a registry's operation through the JSON
/// export and through the Prometheus text export (where quantiles come from classic buckets).
#[test]
fn live_registry_round_trip() {
    let registry = Registry::builder().manual().build();
    let op = registry.operation("api").label("route", "/x").build().unwrap();
    for i in 1..=1000u64 {
        op.record(Duration::from_micros(i), i % 100 >= 3);
    }
    let snap = registry.flush();
    let want = snap.operation("api", &[("route", "/x")]).unwrap();
    let key = SeriesKey::new("api", [("route".to_owned(), "/x".to_owned())]);

    let json = shardmetrics::export::json::render(&snap);
    let mut app = App::new("json");
    app.on_scrape(0.0, Scrape::parse(&json, Some("application/json")).unwrap(), Duration::ZERO);
    let row = &app.model.latencies[&key];
    assert_eq!(row.kind, LatencyKind::Operation);
    assert_eq!((row.count, row.errors), (1000.0, Some(30.0)));
    assert_eq!(row.q.p99, Some(want.p99.unwrap() as f64 * 1e-9));
    assert_eq!(row.error_rate, Some(0.03));
    assert!(line_with(&view::to_text(&app, 150, 40), "api{route=\"/x\"}").contains("3.0%"));

    let text = shardmetrics::export::prometheus::render(&snap);
    let mut app = App::new("text");
    app.on_scrape(0.0, Scrape::from_text(&text, Format::Prometheus).unwrap(), Duration::ZERO);
    let row = &app.model.latencies[&key];
    assert_eq!(row.kind, LatencyKind::Operation, "api_duration_seconds + api_calls_total fold into one row");
    assert_eq!((row.count, row.errors, row.error_rate), (1000.0, Some(30.0), Some(0.03)));
    // About 500 values ≤ 0.5 ms (the log-linear buckets straddle the `le` bounds a little),
    // all 1000 ≤ 1 ms: the 990th interpolates to 0.99 ms.
    let p99 = row.q.p99.unwrap();
    assert!((p99 - 0.00099).abs() < 0.00099 * 0.01, "{p99}");
    let frame = view::to_text(&app, 150, 40);
    assert!(line_with(&frame, "api{route=\"/x\"}").contains("990µs"), "{frame}");
}
