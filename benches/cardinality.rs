//! High cardinality (issue #15): what a labelled counter series costs at 200k and 1M series,
//! all in, for shardmetrics and its peers; how ours grows with ticks when every series
//! changes; the aggregator tick per series; the first insert of a label tuple.
//!
//! One family `requests_total{route, status}` with ~20-byte routes (`/api/v1/route/0000001`)
//! and `status` one of 200, 404, 500; every series is incremented from two threads (the first
//! insert on one, then one more increment from a second thread, so each of our series has
//! cells in two shards). Memory is the process' resident set (`/proc/self/status` VmRSS)
//! before the registry exists and after, divided by the number of series: catalogue, label
//! strings, label index, cells of both threads, and for ours the published snapshot and the
//! window history — everything. The route strings the bench itself keeps (~72 B a series
//! resident) are built before the first reading and freed only after the last, so they are in
//! no delta (freed blocks in the middle of glibc's heap stay resident, so freeing them before a
//! reading would not take them out of it). First insert is the whole loop of first increments
//! on one thread divided by the series, timed once: it includes the tables' growth and the
//! first touch of fresh pages, and varies by some ±30 % between runs on a shared machine.
//!
//! * `shardmetrics`: after the inserts and the second thread's increments (before any tick),
//!   after the first tick, then after `ticks` more ticks with every series changing in between.
//!   Tick cost: the first tick and the median of the others, per series.
//! * Peers, each created after the base reading, and measured after the second thread's
//!   increments (they have no tick; a scrape is not measured): `prometheus-client` 0.25
//!   (`Family<Labels, Counter>` of a derived label set with two `String` fields, registered in
//!   a `Registry`, `get_or_create(&Labels { .. }).inc()`), `prometheus` 0.14 (`IntCounterVec`,
//!   `with_label_values(&[route, status]).inc()`), and `metrics` 0.24 with
//!   `metrics-exporter-prometheus` 0.18 (`PrometheusBuilder::new().build_recorder()`, installed
//!   on each recording thread with `metrics::with_local_recorder`,
//!   `counter!("requests_total", "route" => route.clone(), "status" => status).increment(1)`).
//!   After the memory reading each renders its registry to text once, and the bench checks
//!   that the text has every series and every increment.
//!
//! A counting `#[global_allocator]` (a wrapper around `System` with relaxed atomic counters)
//! gives allocation calls and bytes allocated (`alloc`, `alloc_zeroed`, `realloc` at its new
//! size) during the first-insert loop, per insert, and the live heap bytes per series beside
//! the RSS figure. It is present for every implementation, so the timings compare.
//!
//! Each size of each implementation runs in a child process of its own (this bench
//! re-executed with `--one N TICKS` for ours, `--one-peer NAME N` for a peer), so one run's
//! freed-but-retained heap does not hide in the next one's baseline.
//!
//! Output: a line per size and implementation on stdout and
//! `target/shardmetrics-bench/cardinality.json` (one object per row with `"impl"`; the peers'
//! tick fields are `null`). `--test` (criterion's smoke mode, used by CI; also any run without
//! `--bench`) runs 10,000 series for every implementation (ours for 5 ticks) and writes
//! `cardinality-test.json`, asserting only that the figures are sane. Run: `cargo bench --bench
//! cardinality` (about 40 s on 2 cores; one child at a time, the largest ~1.4 GB resident).

use std::{
    alloc::{GlobalAlloc, Layout, System},
    sync::atomic::{AtomicU64, Ordering},
    time::Instant,
};

// ---------------------------------------------------------------------------------------------
// The counting allocator.

struct Counting;

static CALLS: AtomicU64 = AtomicU64::new(0);
static ALLOCATED: AtomicU64 = AtomicU64::new(0);
static FREED: AtomicU64 = AtomicU64::new(0);

// SAFETY: every method forwards to `System` with the caller's arguments unchanged, so `System`'s
// guarantees are ours; the counters are plain atomics and never allocate.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded unchanged; the caller upholds `GlobalAlloc::alloc`'s contract.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            CALLS.fetch_add(1, Ordering::Relaxed);
            ALLOCATED.fetch_add(layout.size() as u64, Ordering::Relaxed);
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded unchanged; the caller upholds `GlobalAlloc::alloc_zeroed`'s contract.
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            CALLS.fetch_add(1, Ordering::Relaxed);
            ALLOCATED.fetch_add(layout.size() as u64, Ordering::Relaxed);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded unchanged; `ptr` was allocated by `System` through this wrapper.
        unsafe { System.dealloc(ptr, layout) };
        FREED.fetch_add(layout.size() as u64, Ordering::Relaxed);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: forwarded unchanged; `ptr` was allocated by `System` with `layout`.
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            // Counted as a new block of `new_size` bytes and the old one freed.
            CALLS.fetch_add(1, Ordering::Relaxed);
            ALLOCATED.fetch_add(new_size as u64, Ordering::Relaxed);
            FREED.fetch_add(layout.size() as u64, Ordering::Relaxed);
        }
        p
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

/// The allocator's counters at one moment.
#[derive(Clone, Copy)]
struct Heap {
    calls: u64,
    allocated: u64,
    freed: u64,
}

impl Heap {
    fn now() -> Heap {
        Heap {
            calls: CALLS.load(Ordering::SeqCst),
            allocated: ALLOCATED.load(Ordering::SeqCst),
            freed: FREED.load(Ordering::SeqCst),
        }
    }

    fn live(&self) -> i64 {
        self.allocated as i64 - self.freed as i64
    }
}

// ---------------------------------------------------------------------------------------------
// Readings.

#[cfg(target_os = "linux")]
fn rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    let kb: u64 = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .expect("VmRSS in /proc/self/status");
    kb * 1024
}

#[cfg(not(target_os = "linux"))]
fn rss() -> u64 {
    0
}

/// Resident memory and live heap at one moment.
#[derive(Clone, Copy)]
struct Reading {
    rss: u64,
    heap: i64,
}

impl Reading {
    fn now() -> Reading {
        Reading { rss: rss(), heap: Heap::now().live() }
    }

    /// Resident bytes and live heap bytes per series since `base`.
    fn per_series_since(&self, base: Reading, n: usize) -> (f64, f64) {
        (self.rss.saturating_sub(base.rss) as f64 / n as f64, (self.heap - base.heap) as f64 / n as f64)
    }
}

const STATUS: [&str; 3] = ["200", "404", "500"];

fn routes(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("/api/v1/route/{i:07}")).collect()
}

/// Times `insert` (the first increment of every series, on this thread) and counts its
/// allocations: (ns per insert, allocation calls per insert, bytes allocated per insert).
fn first_inserts(n: usize, insert: impl FnOnce()) -> (f64, f64, f64) {
    let before = Heap::now();
    let start = Instant::now();
    insert();
    let ns = start.elapsed().as_nanos() as f64 / n as f64;
    let after = Heap::now();
    (ns, (after.calls - before.calls) as f64 / n as f64, (after.allocated - before.allocated) as f64 / n as f64)
}

/// Series and the sum of their values in a text render: the lines of family `name` with labels.
fn rendered(text: &str, name: &str) -> (usize, u64) {
    let prefix = format!("{name}{{");
    text.lines().filter(|l| l.starts_with(&prefix)).fold((0, 0), |(series, total), l| {
        let value: f64 = l.rsplit(' ').next().and_then(|v| v.parse().ok()).expect("a sample value");
        (series + 1, total + value as u64)
    })
}

// ---------------------------------------------------------------------------------------------
// Results.

struct Row {
    imp: &'static str,
    series: usize,
    ticks: usize,
    insert_ns: f64,
    allocs_per_insert: f64,
    alloc_bytes_per_insert: f64,
    bytes_after_insert: f64,
    heap_bytes_after_insert: f64,
    /// Ours only.
    ticked: Option<Ticked>,
}

struct Ticked {
    first_tick_ns: f64,
    median_tick_ns: f64,
    bytes_after_one_tick: f64,
    heap_bytes_after_one_tick: f64,
    bytes_after_ticks: f64,
}

impl Row {
    /// One JSON object, fields in a fixed order (the peers' tick fields `null`).
    fn json(&self) -> String {
        let t = self.ticked.as_ref();
        let fields = [
            ("series", Some(self.series as f64)),
            ("ticks", Some(self.ticks as f64)),
            ("insert_ns", Some(self.insert_ns)),
            ("allocs_per_insert", Some(self.allocs_per_insert)),
            ("alloc_bytes_per_insert", Some(self.alloc_bytes_per_insert)),
            ("first_tick_ns_per_series", t.map(|t| t.first_tick_ns)),
            ("median_tick_ns_per_series", t.map(|t| t.median_tick_ns)),
            ("bytes_per_series_after_insert", Some(self.bytes_after_insert)),
            ("heap_bytes_per_series_after_insert", Some(self.heap_bytes_after_insert)),
            ("bytes_per_series_after_one_tick", t.map(|t| t.bytes_after_one_tick)),
            ("heap_bytes_per_series_after_one_tick", t.map(|t| t.heap_bytes_after_one_tick)),
            ("bytes_per_series_after_ticks", t.map(|t| t.bytes_after_ticks)),
        ];
        let mut out = format!("{{\"impl\":\"{}\"", self.imp);
        for (name, value) in fields {
            match value.filter(|v| v.is_finite()) {
                Some(v) if v.fract() == 0.0 => out += &format!(",\"{name}\":{v}"),
                Some(v) => out += &format!(",\"{name}\":{v:.2}"),
                None => out += &format!(",\"{name}\":null"),
            }
        }
        out + "}"
    }

    fn line(&self) -> String {
        let insert = format!(
            "first insert {:.0} ns, {:.2} allocations / {:.0} B allocated per insert",
            self.insert_ns, self.allocs_per_insert, self.alloc_bytes_per_insert
        );
        let after_insert = format!(
            "{:.0} B/series after insert (live heap {:.0} B/series)",
            self.bytes_after_insert, self.heap_bytes_after_insert
        );
        match &self.ticked {
            Some(t) => format!(
                "cardinality: {} {} series: {insert}; first tick {:.0} ns/series, median tick {:.0} ns/series; \
                 {after_insert}, {:.0} B/series after one tick (live heap {:.0}), {:.0} B/series after {} more \
                 ticks with every series changing",
                self.imp,
                self.series,
                t.first_tick_ns,
                t.median_tick_ns,
                t.bytes_after_one_tick,
                t.heap_bytes_after_one_tick,
                t.bytes_after_ticks,
                self.ticks
            ),
            None => format!("cardinality: {} {} series: {insert}; {after_insert}", self.imp, self.series),
        }
    }

    /// What both modes assert: the figures exist and are positive.
    fn check(&self) {
        assert!(self.insert_ns > 0.0, "{}: first insert timed", self.imp);
        assert!(self.alloc_bytes_per_insert.is_finite() && self.allocs_per_insert.is_finite());
        assert!(self.bytes_after_insert > 0.0, "{}: resident memory grew", self.imp);
        assert!(self.heap_bytes_after_insert > 0.0, "{}: live heap grew", self.imp);
        if let Some(t) = &self.ticked {
            assert!(t.first_tick_ns > 0.0 && t.median_tick_ns > 0.0, "ticks timed");
            assert!(t.bytes_after_one_tick > 0.0 && t.bytes_after_ticks > 0.0);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// shardmetrics.

fn measure_ours(n: usize, ticks: usize) -> Row {
    let routes = routes(n);
    let base = Reading::now();
    let registry = shardmetrics::Registry::builder().manual().max_series(n + 16).max_series_per_family(n + 16).build();
    let family = registry.counter("requests_total").family(&["route", "status"]).expect("valid family");
    let record = || {
        for (i, route) in routes.iter().enumerate() {
            family.with(&[route, STATUS[i % 3]]).inc();
        }
    };
    let (insert_ns, allocs_per_insert, alloc_bytes_per_insert) = first_inserts(n, record);
    std::thread::scope(|s| {
        s.spawn(record);
    });
    let (bytes_after_insert, heap_bytes_after_insert) = Reading::now().per_series_since(base, n);
    let start = Instant::now();
    let snap = registry.flush();
    let first_tick_ns = start.elapsed().as_nanos() as f64 / n as f64;
    assert_eq!(snap.family("requests_total").len(), n, "every series registered");
    drop(snap);
    let (bytes_after_one_tick, heap_bytes_after_one_tick) = Reading::now().per_series_since(base, n);
    let mut tick_ns = Vec::with_capacity(ticks);
    for _ in 0..ticks {
        record();
        let start = Instant::now();
        registry.flush();
        tick_ns.push(start.elapsed().as_nanos() as f64 / n as f64);
    }
    let total: u64 = registry
        .flush()
        .family("requests_total")
        .iter()
        .map(|s| match s.value() {
            shardmetrics::series::Value::Counter(c) => c.total,
            _ => 0,
        })
        .sum();
    assert_eq!(total, (n * (ticks + 2)) as u64, "nothing lost");
    let (bytes_after_ticks, _) = Reading::now().per_series_since(base, n);
    drop(routes);
    tick_ns.sort_by(f64::total_cmp);
    Row {
        imp: "shardmetrics",
        series: n,
        ticks,
        insert_ns,
        allocs_per_insert,
        alloc_bytes_per_insert,
        bytes_after_insert,
        heap_bytes_after_insert,
        ticked: Some(Ticked {
            first_tick_ns,
            median_tick_ns: tick_ns.get(tick_ns.len() / 2).copied().unwrap_or(f64::NAN),
            bytes_after_one_tick,
            heap_bytes_after_one_tick,
            bytes_after_ticks,
        }),
    }
}

// ---------------------------------------------------------------------------------------------
// Peers.

const PEERS: [&str; 3] = ["prometheus-client", "prometheus", "metrics"];

/// A peer's registry with the one family.
trait Peer: Sync {
    /// One increment of every series, on the calling thread.
    fn record_all(&self, routes: &[String]);
    /// The registry rendered to text.
    fn render(&self) -> String;
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, prometheus_client::encoding::EncodeLabelSet)]
struct Labels {
    route: String,
    status: String,
}

struct PrometheusClient {
    registry: prometheus_client::registry::Registry,
    family: prometheus_client::metrics::family::Family<Labels, prometheus_client::metrics::counter::Counter>,
}

impl PrometheusClient {
    fn new() -> Self {
        let mut registry = prometheus_client::registry::Registry::default();
        let family = prometheus_client::metrics::family::Family::default();
        // prometheus-client appends `_total` to a counter's name.
        registry.register("requests", "Requests served", family.clone());
        PrometheusClient { registry, family }
    }
}

impl Peer for PrometheusClient {
    fn record_all(&self, routes: &[String]) {
        for (i, route) in routes.iter().enumerate() {
            self.family.get_or_create(&Labels { route: route.clone(), status: STATUS[i % 3].to_owned() }).inc();
        }
    }

    fn render(&self) -> String {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry).expect("render");
        text
    }
}

struct Prometheus {
    registry: prometheus::Registry,
    vec: prometheus::IntCounterVec,
}

impl Prometheus {
    fn new() -> Self {
        let registry = prometheus::Registry::new();
        let vec = prometheus::IntCounterVec::new(
            prometheus::Opts::new("requests_total", "Requests served"),
            &["route", "status"],
        )
        .expect("counter vec");
        registry.register(Box::new(vec.clone())).expect("register");
        Prometheus { registry, vec }
    }
}

impl Peer for Prometheus {
    fn record_all(&self, routes: &[String]) {
        for (i, route) in routes.iter().enumerate() {
            self.vec.with_label_values(&[route.as_str(), STATUS[i % 3]]).inc();
        }
    }

    fn render(&self) -> String {
        prometheus::TextEncoder::new().encode_to_string(&self.registry.gather()).expect("render")
    }
}

struct MetricsRs {
    recorder: metrics_exporter_prometheus::PrometheusRecorder,
}

impl Peer for MetricsRs {
    fn record_all(&self, routes: &[String]) {
        metrics::with_local_recorder(&self.recorder, || {
            for (i, route) in routes.iter().enumerate() {
                metrics::counter!("requests_total", "route" => route.clone(), "status" => STATUS[i % 3]).increment(1);
            }
        });
    }

    fn render(&self) -> String {
        self.recorder.handle().render()
    }
}

fn measure_peer<P: Peer>(imp: &'static str, n: usize, make: impl FnOnce() -> P) -> Row {
    let routes = routes(n);
    let base = Reading::now();
    let peer = make();
    let (insert_ns, allocs_per_insert, alloc_bytes_per_insert) = first_inserts(n, || peer.record_all(&routes));
    std::thread::scope(|s| {
        s.spawn(|| peer.record_all(&routes));
    });
    let (bytes_after_insert, heap_bytes_after_insert) = Reading::now().per_series_since(base, n);
    let text = peer.render();
    assert_eq!(rendered(&text, "requests_total"), (n, 2 * n as u64), "{imp}: every series and increment rendered");
    drop((text, peer, routes));
    Row {
        imp,
        series: n,
        ticks: 0,
        insert_ns,
        allocs_per_insert,
        alloc_bytes_per_insert,
        bytes_after_insert,
        heap_bytes_after_insert,
        ticked: None,
    }
}

// ---------------------------------------------------------------------------------------------

/// Runs this bench again with `args` and returns its rows, echoing its other lines.
fn child(args: &[String], rows: &mut Vec<String>) {
    let exe = std::env::current_exe().expect("this bench's path");
    let out = std::process::Command::new(exe).args(args).output().expect("run the measuring child");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "child {args:?} failed: {stdout}{}", String::from_utf8_lossy(&out.stderr));
    for line in stdout.lines() {
        match line.strip_prefix("json: ") {
            Some(json) => {
                let row: serde_json::Value = serde_json::from_str(json).expect("the child's row is JSON");
                assert!(row["impl"].is_string(), "a row names its implementation");
                rows.push(json.to_owned());
            }
            None => println!("{line}"),
        }
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    // A child measuring one size of one implementation: print its row and exit.
    let row = if let Some(i) = args.iter().position(|a| a == "--one") {
        Some(measure_ours(args[i + 1].parse().expect("series"), args[i + 2].parse().expect("ticks")))
    } else if let Some(i) = args.iter().position(|a| a == "--one-peer") {
        let n = args[i + 2].parse().expect("series");
        Some(match args[i + 1].as_str() {
            "prometheus-client" => measure_peer("prometheus-client", n, PrometheusClient::new),
            "prometheus" => measure_peer("prometheus", n, Prometheus::new),
            "metrics" => measure_peer("metrics", n, || MetricsRs {
                recorder: metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder(),
            }),
            other => panic!("unknown peer {other}; one of {PEERS:?}"),
        })
    } else {
        None
    };
    if let Some(row) = row {
        row.check();
        println!("{}", row.line());
        println!("json: {}", row.json());
        return;
    }
    // `cargo bench` passes `--bench`; criterion's smoke mode adds `--test`; `cargo test
    // --benches` passes neither: anything but a real bench run is a smoke run.
    let smoke = args.iter().any(|a| a == "--test") || !args.iter().any(|a| a == "--bench");
    let sizes: &[(usize, usize)] = if smoke { &[(10_000, 5)] } else { &[(200_000, 100), (1_000_000, 20)] };
    let mut rows = Vec::new();
    for &(n, ticks) in sizes {
        child(&["--one".into(), n.to_string(), ticks.to_string()], &mut rows);
        for peer in PEERS {
            child(&["--one-peer".into(), peer.into(), n.to_string()], &mut rows);
        }
    }
    assert_eq!(rows.len(), sizes.len() * (1 + PEERS.len()), "a row per size and implementation");
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/shardmetrics-bench");
    let _ = std::fs::create_dir_all(&dir);
    let file = dir.join(if smoke { "cardinality-test.json" } else { "cardinality.json" });
    std::fs::write(&file, format!("[\n{}\n]\n", rows.join(",\n"))).expect("write the results");
}
