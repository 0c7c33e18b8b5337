//! High cardinality (issue #15): what a labelled counter series costs at 200k and 1M series,
//! all in, for shardmetrics and its peers; how ours grows with ticks when every series
//! changes; the aggregator tick per series; the first insert of a label tuple; the render of
//! the registry to text, and for ours a scrape of the HTTP endpoint.
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
//!   Tick cost: the first tick and the median of the others, per series. After the last
//!   memory reading: `export::prometheus::render` and `export::openmetrics::render` of the
//!   latest snapshot, the median of 5 each per series (every render into a fresh `String`: at
//!   1M series its ~62 MB are above glibc's mmap threshold, so each render also faults in its
//!   pages), and `export::prometheus::render_into` into one reused buffer (what the endpoint
//!   does tick after tick), the text checked for every series and its total; with the
//!   `protobuf` feature, `export::protobuf::render_into` into one reused buffer the same way
//!   (median of 5 per series, and its bytes per series), decoded back and checked alike;
//!   then the HTTP endpoint (`export::http::Server` on 127.0.0.1, port 0), scraped 5 times over
//!   a plain `TcpStream` (`Connection: close`, uncompressed) with a `flush()` (a new snapshot)
//!   before each, so every scrape renders; each body compared with the render as it arrives
//!   and not kept (so the client's memory is not in the figure): the first scrape's latency
//!   (a fresh buffer), the median of the other four (the endpoint renders into the previous
//!   body's buffer once no response holds it), the endpoint's render count, and resident
//!   memory while scraping: VmHWM reset to
//!   VmRSS before the first scrape (`5` to `/proc/self/clear_refs`; where refused, the VmHWM
//!   read before and after, or the RSS after when the old peak was higher), minus VmRSS then.
//! * Peers, each created after the base reading, and measured after the second thread's
//!   increments (they have no tick; a scrape is not measured): `prometheus-client` 0.25
//!   (`Family<Labels, Counter>` of a derived label set with two `String` fields, registered in
//!   a `Registry`, `get_or_create(&Labels { .. }).inc()`), `prometheus` 0.14 (`IntCounterVec`,
//!   `with_label_values(&[route, status]).inc()`), and `metrics` 0.24 with
//!   `metrics-exporter-prometheus` 0.18 (`PrometheusBuilder::new().build_recorder()`, installed
//!   on each recording thread with `metrics::with_local_recorder`,
//!   `counter!("requests_total", "route" => route.clone(), "status" => status).increment(1)`).
//!   After the memory reading each renders its registry to text 5 times (median per series
//!   reported: `prometheus_client::encoding::text::encode` into a `String`, prometheus'
//!   `TextEncoder::encode_to_string` of `gather()`, `PrometheusHandle::render`), and the bench
//!   checks that the text has every series and every increment.
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
//! tick, OpenMetrics and scrape fields are `null`). `--test` (criterion's smoke mode, used by
//! CI; also any run without `--bench`) runs 10,000 series for every implementation (ours for 5
//! ticks) and writes `cardinality-test.json`, asserting only that the figures are sane. Run:
//! `cargo bench --bench cardinality` (about 70 s on 2 cores; one child at a time, the largest
//! ~1.2 GB resident). Needs the `http` feature (a default) for the endpoint.

use std::time::Instant;

#[path = "common/counting.rs"]
mod counting;

#[global_allocator]
static ALLOC: counting::Counting = counting::Counting;

/// The allocator's counters at one moment.
#[derive(Clone, Copy)]
struct Heap {
    calls: u64,
    allocated: u64,
    freed: u64,
}

impl Heap {
    fn now() -> Heap {
        Heap { calls: counting::calls(), allocated: counting::allocated(), freed: counting::freed() }
    }

    fn live(&self) -> i64 {
        self.allocated as i64 - self.freed as i64
    }
}

// ---------------------------------------------------------------------------------------------
// Readings.

/// A `/proc/self/status` field in bytes (`VmRSS:` resident now, `VmHWM:` its peak).
#[cfg(target_os = "linux")]
fn status_bytes(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    let kb: u64 = status
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("{field} in /proc/self/status"));
    kb * 1024
}

#[cfg(not(target_os = "linux"))]
fn status_bytes(_field: &str) -> u64 {
    0
}

fn rss() -> u64 {
    status_bytes("VmRSS:")
}

/// Peak resident memory (VmHWM).
fn peak_rss() -> u64 {
    status_bytes("VmHWM:")
}

/// Resets the peak (VmHWM) to the current resident memory: `5` to `/proc/self/clear_refs`
/// (Linux 4.0 on). False where that is refused.
fn reset_peak_rss() -> bool {
    cfg!(target_os = "linux") && std::fs::write("/proc/self/clear_refs", "5").is_ok()
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

/// Renders timed per implementation; the median is reported.
const RENDERS: usize = 5;

/// The protobuf exposition of `snap` into one reused buffer: the median of [`RENDERS`] encodes
/// after one that fills the buffer, per series, and the body's bytes per series; the body
/// decoded back must hold `n` series of `requests_total` adding up to `total`.
#[cfg(feature = "protobuf")]
fn protobuf_render(snap: &shardmetrics::Snapshot, n: usize, total: u64) -> Option<(f64, f64)> {
    use shardmetrics::export::protobuf;
    let mut buf = Vec::new();
    let mut times: Vec<f64> = (0..=RENDERS)
        .map(|_| {
            buf.clear();
            let start = Instant::now();
            protobuf::render_into(snap, &mut buf);
            start.elapsed().as_nanos() as f64 / n as f64
        })
        .skip(1) // the first fills a fresh buffer
        .collect();
    times.sort_by(f64::total_cmp);
    let families = protobuf::decode(&buf).expect("the protobuf body decodes");
    let requests = families.iter().find(|f| f.name.as_deref() == Some("requests_total")).expect("requests_total");
    let sum: f64 = requests.metric.iter().filter_map(|m| m.counter.as_ref()?.value).sum();
    assert_eq!((requests.metric.len(), sum), (n, total as f64), "every series in the protobuf body");
    Some((times[RENDERS / 2], buf.len() as f64 / n as f64))
}

#[cfg(not(feature = "protobuf"))]
fn protobuf_render(_: &shardmetrics::Snapshot, _: usize, _: u64) -> Option<(f64, f64)> {
    None
}

/// Times [`RENDERS`] calls of `render` (each previous text freed before the next, outside the
/// timing): (median ns per series, the last text).
fn median_render(n: usize, mut render: impl FnMut() -> String) -> (f64, String) {
    let mut ns = Vec::with_capacity(RENDERS);
    let mut text = String::new();
    for _ in 0..RENDERS {
        drop(std::mem::take(&mut text));
        let start = Instant::now();
        text = render();
        ns.push(start.elapsed().as_nanos() as f64 / n as f64);
    }
    ns.sort_by(f64::total_cmp);
    (ns[RENDERS / 2], text)
}

/// Scrapes of our endpoint per size, each after a new tick; the first is timed alone, the others for the median.
const SCRAPES: usize = 5;

/// Serves `registry` on a free loopback port and scrapes `/metrics` [`SCRAPES`] times, each
/// after a `flush()` (a new snapshot, so each scrape renders), checking each body against
/// `expected` (the Prometheus render of an identical snapshot: nothing is recorded in between).
fn scrape_endpoint(registry: &shardmetrics::Registry, n: usize, expected: &str) -> Scrape {
    let server = shardmetrics::export::http::Server::builder()
        .listen("127.0.0.1:0")
        .start(registry)
        .expect("start the endpoint");
    let reset = reset_peak_rss();
    let (rss_before, peak_before) = (rss(), peak_rss());
    let mut ms = Vec::with_capacity(SCRAPES);
    let mut response_bytes = 0;
    for _ in 0..SCRAPES {
        registry.flush();
        let start = Instant::now();
        response_bytes = http_get_metrics(server.local_addr(), expected.as_bytes());
        ms.push(start.elapsed().as_secs_f64() * 1e3);
    }
    let (rss_after, peak_after) = (rss(), peak_rss());
    let renders = server.render_count();
    server.shutdown();
    let (grown_to, rss_basis) = if reset {
        (peak_after, "peak, VmHWM reset before the first scrape")
    } else if peak_after > peak_before {
        (peak_after, "peak")
    } else {
        (rss_after, "resident after the scrapes: the peak before them was higher")
    };
    let mut later = ms[1..].to_vec();
    later.sort_by(f64::total_cmp);
    Scrape {
        first_ms: ms[0],
        median_ms: later[later.len() / 2],
        response_bytes,
        renders,
        rss_growth: grown_to.saturating_sub(rss_before) as f64 / n as f64,
        rss_basis,
        rss_retained: rss_after.saturating_sub(rss_before) as f64 / n as f64,
    }
}

/// `GET /metrics` over a plain blocking HTTP/1.1 connection (`Connection: close`, no
/// `Accept-Encoding`, so an uncompressed body), asserting a 200 and a body equal to `expected`.
/// The body is compared piece by piece as it arrives and never kept, so the client's own memory
/// is not in the scrape's resident-memory growth. Returns the response's size (head and body).
fn http_get_metrics(addr: std::net::SocketAddr, expected: &[u8]) -> usize {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr).expect("connect to the endpoint");
    stream.set_read_timeout(Some(std::time::Duration::from_secs(60))).expect("a read timeout");
    write!(stream, "GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").expect("send the request");
    let mut buf = vec![0u8; 256 * 1024];
    let mut filled = 0;
    let head_len = loop {
        let read = stream.read(&mut buf[filled..]).expect("read the response head");
        assert!(read > 0, "the endpoint closed the connection inside the response head");
        filled += read;
        if let Some(end) = buf[..filled].windows(4).position(|w| w == b"\r\n\r\n") {
            break end + 4;
        }
        assert!(filled < buf.len(), "a response head over 256 KiB");
    };
    let head = std::str::from_utf8(&buf[..head_len]).expect("a text head");
    assert!(head.starts_with("HTTP/1.1 200 "), "scrape answered {:?}", head.lines().next());
    let length: usize = head
        .lines()
        .filter_map(|l| l.split_once(':'))
        .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.trim().parse().ok())
        .expect("a Content-Length");
    assert_eq!(length, expected.len(), "the endpoint's body is as long as the render");
    let mut at = 0;
    let (mut from, mut to) = (head_len, filled);
    loop {
        let piece = &buf[from..to];
        assert!(at + piece.len() <= expected.len(), "a body longer than its Content-Length");
        assert!(piece == &expected[at..at + piece.len()], "the body differs from the render after byte {at}");
        at += piece.len();
        let read = stream.read(&mut buf).expect("read the body");
        if read == 0 {
            break;
        }
        (from, to) = (0, read);
    }
    assert_eq!(at, expected.len(), "the whole body arrived");
    head_len + at
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
    /// The registry rendered to text, after every memory reading.
    render: Render,
}

struct Ticked {
    first_tick_ns: f64,
    median_tick_ns: f64,
    bytes_after_one_tick: f64,
    heap_bytes_after_one_tick: f64,
    bytes_after_ticks: f64,
}

/// Render cost, taken after the memory readings.
struct Render {
    /// Median of [`RENDERS`] renders of the whole registry to Prometheus text (for
    /// prometheus-client its OpenMetrics text, its only one), per series.
    ns: f64,
    /// Ours only: the same for our OpenMetrics render.
    openmetrics_ns: Option<f64>,
    /// Ours only: Prometheus text into a reused buffer (`render_into`).
    reused_ns: Option<f64>,
    /// Ours only, with the `protobuf` feature: the protobuf exposition into a reused buffer
    /// (`export::protobuf::render_into`), per series, and its length per series.
    protobuf: Option<(f64, f64)>,
    /// Length of the text, per series.
    body_bytes: f64,
    /// Ours only.
    scrape: Option<Scrape>,
}

/// [`SCRAPES`] scrapes of `/metrics` from our HTTP endpoint, one snapshot.
struct Scrape {
    first_ms: f64,
    /// Median of the scrapes after the first.
    median_ms: f64,
    /// Head and body of one response.
    response_bytes: usize,
    /// Renders the endpoint did for the scrapes (its cache keeps one per snapshot and format).
    renders: usize,
    /// Peak resident memory while scraping minus resident memory before, per series.
    rss_growth: f64,
    /// What `rss_growth` is: the peak, or (when VmHWM could not be reset and was already higher
    /// before) the resident memory after the scrapes.
    rss_basis: &'static str,
    /// Resident memory after the scrapes minus before, per series (the cached body stays).
    rss_retained: f64,
}

impl Row {
    /// One JSON object, fields in a fixed order (what an implementation lacks `null`).
    fn json(&self) -> String {
        let t = self.ticked.as_ref();
        let sc = self.render.scrape.as_ref();
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
            ("render_ns_per_series", Some(self.render.ns)),
            ("openmetrics_render_ns_per_series", self.render.openmetrics_ns),
            ("reused_buffer_render_ns_per_series", self.render.reused_ns),
            ("protobuf_encode_ns_per_series", self.render.protobuf.map(|p| p.0)),
            ("protobuf_bytes_per_series", self.render.protobuf.map(|p| p.1)),
            ("body_bytes_per_series", Some(self.render.body_bytes)),
            ("scrape_first_ms", sc.map(|s| s.first_ms)),
            ("scrape_median_ms", sc.map(|s| s.median_ms)),
            ("scrape_response_bytes", sc.map(|s| s.response_bytes as f64)),
            ("scrape_renders", sc.map(|s| s.renders as f64)),
            ("scrape_rss_growth_bytes_per_series", sc.map(|s| s.rss_growth)),
            ("scrape_rss_retained_bytes_per_series", sc.map(|s| s.rss_retained)),
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
        let r = &self.render;
        let mut render = format!("; render {:.1} ns/series ({:.1} B/series of text)", r.ns, r.body_bytes);
        if let Some(om) = r.openmetrics_ns {
            render += &format!(", OpenMetrics {om:.1} ns/series");
        }
        if let Some(re) = r.reused_ns {
            render += &format!(", into a reused buffer {re:.1} ns/series");
        }
        if let Some((ns, bytes)) = r.protobuf {
            render += &format!("; protobuf into a reused buffer {ns:.1} ns/series ({bytes:.1} B/series)");
        }
        if let Some(s) = &r.scrape {
            render += &format!(
                "; {SCRAPES} scrapes of /metrics ({:.1} MB each): first {:.1} ms, median of the others {:.1} ms, \
                 {} render(s) by the endpoint; resident memory +{:.0} B/series while scraping ({}), +{:.0} B/series \
                 still resident after",
                s.response_bytes as f64 / 1e6,
                s.first_ms,
                s.median_ms,
                s.renders,
                s.rss_growth,
                s.rss_basis,
                s.rss_retained
            );
        }
        let line = match &self.ticked {
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
        };
        line + &render
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
        let r = &self.render;
        assert!(r.ns > 0.0 && r.body_bytes > 0.0, "{}: render timed", self.imp);
        assert!(r.openmetrics_ns.is_none_or(|ns| ns > 0.0), "OpenMetrics render timed");
        assert!(r.protobuf.is_none_or(|(ns, bytes)| ns > 0.0 && bytes > 0.0), "protobuf encode timed");
        if let Some(s) = &r.scrape {
            assert!(s.first_ms > 0.0 && s.median_ms > 0.0 && s.response_bytes > 0, "scrapes timed");
            assert!(s.rss_growth.is_finite() && s.rss_retained.is_finite());
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
    // Render and scrape, after every memory reading.
    let snap = registry.snapshot();
    let (render_ns, body) = median_render(n, || shardmetrics::export::prometheus::render(&snap));
    assert_eq!(rendered(&body, "requests_total"), (n, (n * (ticks + 2)) as u64), "every series rendered");
    let (openmetrics_ns, om) = median_render(n, || shardmetrics::export::openmetrics::render(&snap));
    assert_eq!(rendered(&om, "requests_total"), (n, (n * (ticks + 2)) as u64), "every series in OpenMetrics");
    drop(om);
    // Into one buffer, cleared and reused (`render_into`, what the endpoint does tick after tick).
    let mut buf = String::new();
    let mut reused: Vec<f64> = (0..=RENDERS)
        .map(|_| {
            buf.clear();
            let start = Instant::now();
            shardmetrics::export::prometheus::render_into(&snap, &mut buf);
            start.elapsed().as_nanos() as f64 / n as f64
        })
        .skip(1) // the first fills a fresh buffer
        .collect();
    assert_eq!(buf, body, "render_into writes what render returns");
    reused.sort_by(f64::total_cmp);
    let reused_ns = reused[RENDERS / 2];
    drop(buf);
    let protobuf = protobuf_render(&snap, n, (n * (ticks + 2)) as u64);
    drop(snap);
    let scrape = scrape_endpoint(&registry, n, &body);
    let body_bytes = body.len() as f64 / n as f64;
    drop((body, routes));
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
        render: Render {
            ns: render_ns,
            openmetrics_ns: Some(openmetrics_ns),
            reused_ns: Some(reused_ns),
            protobuf,
            body_bytes,
            scrape: Some(scrape),
        },
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
    let (render_ns, text) = median_render(n, || peer.render());
    assert_eq!(rendered(&text, "requests_total"), (n, 2 * n as u64), "{imp}: every series and increment rendered");
    let body_bytes = text.len() as f64 / n as f64;
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
        render: Render {
            ns: render_ns,
            openmetrics_ns: None,
            reused_ns: None,
            protobuf: None,
            body_bytes,
            scrape: None,
        },
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
