//! Memory per series: shardmetrics beside its peers, counted by a global allocator.
//!
//! A counting `#[global_allocator]` (a wrapper around `System`) tracks live bytes and the
//! number of allocation calls (`alloc`, `alloc_zeroed`, `realloc`) in the whole process. Each
//! measurement reads both counters before and after one phase, with every other thread parked
//! at a barrier, and divides by the number of series:
//!
//! * `registered_counter` / `registered_histogram`: **creating** `n` series (one label `id`,
//!   values `0..n`) and keeping their handles, on one thread, before any value is recorded —
//!   the catalogue: names, label strings, indexes, and whatever value storage a library
//!   allocates up front (every peer allocates its atomics here). `threads` is 1.
//! * `counter` / `histogram`: what `t` threads **recording** into those `n` existing series add
//!   (each thread: one increment per counter; the 1,024 latencies, log-uniform over
//!   1 µs–100 ms, per histogram). For shardmetrics this is its per-thread shard cells; peers
//!   keep one shared set of atomics, so theirs is ~0 here and their cost sits in the
//!   `registered_*` row. A series' total with `t` recording threads is the sum of the two rows.
//!
//! `bytes_per_series` is the phase's bytes / `n`; `bytes_per_series_per_thread` (an extra JSON
//! field) is that / `t`, the figure the goals are stated in: a counter <= 16 B and a histogram
//! <= 8 KiB per series per thread, at <= 2 % quantile error. Histogram rows carry
//! `max_quantile_error`: the largest relative error over q = 0.5, 0.9, 0.99, 0.999 against the
//! exact quantiles of the recorded values, for the configuration measured (shardmetrics
//! precision 5; hdrhistogram 2 significant figures; for the `le`-bucket peers, Prometheus'
//! `histogram_quantile` interpolation over their 18 buckets 1 µs · 2^k).
//!
//! Peers: prometheus `IntCounterVec` / `HistogramVec`, prometheus-client `Family`, metrics +
//! metrics-exporter-prometheus (recorder's `register_*`, upkeep run before measuring so
//! buffered histogram samples are folded in), fast-telemetry `DynamicCounter` /
//! `DynamicHistogram`, and hdrhistogram (one `Mutex<Histogram<u64>>` per series, 2 significant
//! figures over 1 ns–1 h, as in `hot_path.rs`).
//!
//! Output: a table on stdout and a JSON array of `{"lib", "kind", "threads", "series",
//! "bytes_per_series", "allocs_per_series", "bytes_per_series_per_thread"[,
//! "max_quantile_error"]}` in `target/shardmetrics-bench/memory.json`.
//!
//! `--test` (criterion's smoke mode, used by CI; also any run without `--bench`, as under
//! `cargo test --benches`) uses small `n` and writes `memory-test.json` instead, so a smoke run
//! never overwrites real figures. Both modes assert that the numbers are sane (a shardmetrics
//! counter cell costs at least its 8 bytes, the allocator saw at least what
//! `Registry::shard_memory_bytes` reports, every creation allocates something, every error is
//! finite and recorded counts are exact); the goals are reported, not asserted.
//!
//! Run: `cargo bench --bench memory` (about 20 s); smoke: `cargo bench --bench memory -- --test`.

use std::{
    hint::black_box,
    sync::{Barrier, Mutex},
    thread,
};

use metrics::Recorder;
use serde_json::json;
use shardmetrics::{Registry, Unit};

#[path = "common/counting.rs"]
mod counting;

#[global_allocator]
static ALLOC: counting::Counting = counting::Counting;

/// Live bytes and allocation calls so far.
fn counters() -> (i64, u64) {
    (counting::live(), counting::calls())
}

/// Bytes and allocation calls a phase added.
#[derive(Clone, Copy, Debug)]
struct Cost {
    bytes: i64,
    allocs: u64,
}

/// Runs `f` on this thread and returns what it added.
fn measure(f: impl FnOnce()) -> Cost {
    let (b0, a0) = counters();
    f();
    let (b1, a1) = counters();
    Cost { bytes: b1 - b0, allocs: a1 - a0 }
}

/// Spawns `threads` threads that each run `record`, all parked at a barrier before and after,
/// so the counters are read with no thread mid-set-up: returns what the recording added.
fn measure_threads(threads: usize, record: impl Fn() + Sync) -> Cost {
    let ready = Barrier::new(threads + 1);
    let go = Barrier::new(threads + 1);
    let done = Barrier::new(threads + 1);
    let exit = Barrier::new(threads + 1);
    thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| {
                ready.wait();
                go.wait();
                record();
                done.wait();
                // Stay alive (shard owned, thread-locals intact) until the counters are read.
                exit.wait();
            });
        }
        ready.wait();
        let (b0, a0) = counters();
        go.wait();
        done.wait();
        let (b1, a1) = counters();
        exit.wait();
        Cost { bytes: b1 - b0, allocs: a1 - a0 }
    })
}

// ---------------------------------------------------------------------------------------------
// Inputs.

/// Latencies in ns, log-uniform over 1 µs–100 ms (fixed-seed xorshift, as in the other benches).
fn latencies() -> Vec<u64> {
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    (0..1024)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let u = (state >> 11) as f64 / (1u64 << 53) as f64;
            (1e3 * 1e5f64.powf(u)) as u64
        })
        .collect()
}

/// `le` bounds of the bucketed peers, in ns: 1 µs · 2^k, 18 buckets (as in `hot_path.rs`).
fn bounds_nanos() -> Vec<u64> {
    (0..18).map(|k| 1_000u64 << k).collect()
}

fn bounds_seconds() -> Vec<f64> {
    bounds_nanos().iter().map(|&b| b as f64 * 1e-9).collect()
}

fn new_hdr() -> hdrhistogram::Histogram<u64> {
    hdrhistogram::Histogram::new_with_bounds(1, 3_600_000_000_000, 2).expect("valid hdrhistogram bounds")
}

const QUANTILES: [f64; 4] = [0.5, 0.9, 0.99, 0.999];

/// Exact quantile: the value at rank ceil(q·n).
fn exact_quantile(sorted: &[u64], q: f64) -> u64 {
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

/// Largest relative error of `estimate(q)` over [`QUANTILES`].
fn max_error(sorted: &[u64], estimate: impl Fn(f64) -> f64) -> f64 {
    QUANTILES
        .iter()
        .map(|&q| {
            let exact = exact_quantile(sorted, q) as f64;
            (estimate(q) - exact).abs() / exact
        })
        .fold(0.0, f64::max)
}

/// Prometheus' `histogram_quantile` over `le` buckets: linear interpolation inside the bucket
/// holding rank q·count (the first bucket's lower edge is 0).
fn le_bucket_quantile(sorted: &[u64], bounds: &[u64], q: f64) -> f64 {
    let mut cumulative: Vec<u64> = bounds.iter().map(|&b| sorted.partition_point(|&v| v <= b) as u64).collect();
    cumulative.push(sorted.len() as u64);
    let rank = q * sorted.len() as f64;
    let i = cumulative.iter().position(|&c| c as f64 >= rank).expect("rank within count");
    if i == bounds.len() {
        // +Inf bucket: Prometheus returns the highest finite bound.
        return bounds[bounds.len() - 1] as f64;
    }
    let (lo, hi) = (if i == 0 { 0.0 } else { bounds[i - 1] as f64 }, bounds[i] as f64);
    let below = if i == 0 { 0.0 } else { cumulative[i - 1] as f64 };
    let in_bucket = (cumulative[i] as f64 - below).max(1.0);
    lo + (hi - lo) * (rank - below) / in_bucket
}

// ---------------------------------------------------------------------------------------------
// Results.

struct Row {
    lib: &'static str,
    kind: &'static str,
    threads: usize,
    series: usize,
    cost: Cost,
    error: Option<f64>,
}

impl Row {
    fn bytes_per_series(&self) -> f64 {
        self.cost.bytes as f64 / self.series as f64
    }

    fn per_thread(&self) -> f64 {
        self.bytes_per_series() / self.threads as f64
    }

    fn json(&self) -> serde_json::Value {
        let mut v = json!({
            "lib": self.lib,
            "kind": self.kind,
            "threads": self.threads,
            "series": self.series,
            "bytes_per_series": self.bytes_per_series(),
            "allocs_per_series": self.cost.allocs as f64 / self.series as f64,
            "bytes_per_series_per_thread": self.per_thread(),
        });
        if let Some(e) = self.error {
            v["max_quantile_error"] = json!(e);
        }
        v
    }
}

/// Sizes measured: full run, or the smoke run's small ones.
struct Plan {
    counter_series: &'static [usize],
    histogram_series: &'static [usize],
    threads: &'static [usize],
}

const FULL: Plan = Plan { counter_series: &[1_000, 100_000], histogram_series: &[1_000], threads: &[1, 2, 8] };
const SMOKE: Plan = Plan { counter_series: &[2_000], histogram_series: &[50], threads: &[1, 2] };

fn ids(n: usize) -> Vec<String> {
    (0..n).map(|i| i.to_string()).collect()
}

fn manual_registry(n: usize) -> Registry {
    Registry::builder().manual().max_series(2 * n + 100).max_series_per_family(n + 10).build()
}

// ---------------------------------------------------------------------------------------------
// Counters.

fn counters_shardmetrics(n: usize, threads: &[usize], rows: &mut Vec<Row>) {
    let ids = ids(n);
    let reg = manual_registry(n);
    let family = reg.counter("bench_requests_total").help("Requests served").family(&["id"]).expect("family");
    let mut handles = Vec::with_capacity(n);
    let cost = measure(|| handles.extend(ids.iter().map(|id| family.get(&[id.as_str()]).expect("series"))));
    rows.push(Row { lib: "shardmetrics", kind: "registered_counter", threads: 1, series: n, cost, error: None });

    // Shards are re-used by the next threads, so measure with increasing thread counts and count
    // only the shards (and cells) each step adds: t threads alive, the first of them re-using
    // the shards of the last step's threads. Fresh registry per step keeps that simple.
    drop((handles, family, reg));
    for &t in threads {
        let reg = manual_registry(n);
        let family = reg.counter("bench_requests_total").help("Requests served").family(&["id"]).expect("family");
        let handles: Vec<_> = ids.iter().map(|id| family.get(&[id.as_str()]).expect("series")).collect();
        let shard_bytes_before = reg.shard_memory_bytes();
        let cost = measure_threads(t, || handles.iter().for_each(|c| c.inc()));
        let reported = reg.shard_memory_bytes() - shard_bytes_before;
        assert_eq!(reg.shard_count(), t, "one shard per recording thread");
        let snap = reg.flush();
        let total: u64 = snap
            .family("bench_requests_total")
            .iter()
            .map(|s| match s.value() {
                shardmetrics::series::Value::Counter(c) => c.total,
                _ => 0,
            })
            .sum();
        assert_eq!(total, (n * t) as u64, "every increment merged");
        let row = Row { lib: "shardmetrics", kind: "counter", threads: t, series: n, cost, error: None };
        assert!(row.per_thread() >= 8.0, "a counter cell is 8 bytes, counted {:.2} B", row.per_thread());
        assert!(
            cost.bytes as f64 >= 0.9 * reported as f64,
            "allocator saw {} B but the registry reports {reported} B of shard cells",
            cost.bytes
        );
        println!(
            "  shardmetrics counter n={n} t={t}: allocator {} B, Registry::shard_memory_bytes {reported} B",
            cost.bytes
        );
        rows.push(row);
    }
}

fn counters_peers(n: usize, threads: &[usize], rows: &mut Vec<Row>) {
    let ids = ids(n);

    for &t in threads {
        let mut handles = Vec::with_capacity(n);
        let vec =
            prometheus::IntCounterVec::new(prometheus::Opts::new("bench_requests_total", "Requests served"), &["id"])
                .expect("counter vec");
        let created = measure(|| handles.extend(ids.iter().map(|id| vec.with_label_values(&[id.as_str()]))));
        let recorded = measure_threads(t, || handles.iter().for_each(|c| c.inc()));
        assert_eq!(vec.with_label_values(&["0"]).get(), t as u64);
        push_pair(rows, "prometheus", "counter", t, n, created, recorded, None);
    }

    type PcFamily = prometheus_client::metrics::family::Family<
        [(&'static str, String); 1],
        prometheus_client::metrics::counter::Counter,
    >;
    for &t in threads {
        let mut handles = Vec::with_capacity(n);
        let family = PcFamily::default();
        let created = measure(|| {
            handles.extend(ids.iter().map(|id| family.get_or_create_owned(&[("id", id.clone())])));
        });
        let recorded = measure_threads(t, || {
            handles.iter().for_each(|c| {
                c.inc();
            })
        });
        assert_eq!(family.get_or_create(&[("id", "0".to_owned())]).get(), t as u64);
        push_pair(rows, "prometheus-client", "counter", t, n, created, recorded, None);
    }

    let meta = metrics::Metadata::new("bench", metrics::Level::INFO, None);
    for &t in threads {
        let mut handles = Vec::with_capacity(n);
        let recorder = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
        let created = measure(|| {
            handles.extend(ids.iter().map(|id| {
                let key = metrics::Key::from_parts("bench_requests_total", vec![metrics::Label::new("id", id.clone())]);
                recorder.register_counter(&key, &meta)
            }))
        });
        let recorded = measure_threads(t, || handles.iter().for_each(|c| c.increment(1)));
        let text = recorder.handle().render();
        assert!(text.contains(&format!("bench_requests_total{{id=\"0\"}} {t}")), "metrics recorded every increment");
        push_pair(rows, "metrics-exporter-prometheus", "counter", t, n, created, recorded, None);
    }

    for &t in threads {
        let mut handles = Vec::with_capacity(n);
        let counter = fast_telemetry::DynamicCounter::with_max_series(4, n + 10);
        let created = measure(|| handles.extend(ids.iter().map(|id| counter.series(&[("id", id.as_str())]))));
        let recorded = measure_threads(t, || handles.iter().for_each(|c| c.inc()));
        assert_eq!(counter.get(&[("id", "0")]), t as isize);
        push_pair(rows, "fast-telemetry", "counter", t, n, created, recorded, None);
    }
}

/// A peer's creation row (once per `n`, at the first thread count) and recording row.
#[allow(clippy::too_many_arguments)] // reason: one row pair's fields, named at every call
fn push_pair(
    rows: &mut Vec<Row>,
    lib: &'static str,
    kind: &'static str,
    t: usize,
    n: usize,
    created: Cost,
    recorded: Cost,
    error: Option<f64>,
) {
    let registered = if kind == "counter" { "registered_counter" } else { "registered_histogram" };
    if !rows.iter().any(|r| r.lib == lib && r.kind == registered && r.series == n) {
        assert!(created.bytes > 0, "{lib}: creating {n} series allocated nothing?");
        rows.push(Row { lib, kind: registered, threads: 1, series: n, cost: created, error });
    }
    rows.push(Row { lib, kind, threads: t, series: n, cost: recorded, error });
}

// ---------------------------------------------------------------------------------------------
// Histograms.

fn histograms(n: usize, threads: &[usize], values: &[u64], rows: &mut Vec<Row>) {
    let ids = ids(n);
    let mut sorted = values.to_vec();
    sorted.sort_unstable();
    let le_error = max_error(&sorted, |q| le_bucket_quantile(&sorted, &bounds_nanos(), q));

    for &t in threads {
        let reg = manual_registry(n);
        let family = reg.histogram("bench_latency").unit(Unit::Nanoseconds).family(&["id"]).expect("family");
        let mut handles = Vec::with_capacity(n);
        let created = measure(|| handles.extend(ids.iter().map(|id| family.get(&[id.as_str()]).expect("series"))));
        let recorded = measure_threads(t, || {
            for h in &handles {
                values.iter().for_each(|&v| h.record(v));
            }
        });
        let snap = reg.flush();
        let h = snap.histogram("bench_latency", &[("id", "0")]).expect("histogram published");
        assert_eq!(h.count(), (values.len() * t) as u64, "every value merged");
        let error = max_error(&sorted, |q| h.quantile(q).expect("non-empty") as f64);
        assert!(error.is_finite() && error < 1.0, "shardmetrics quantile error {error}");
        assert!(recorded.bytes > 0, "recording histograms allocated no shard memory?");
        push_pair(rows, "shardmetrics", "histogram", t, n, created, recorded, Some(error));
    }

    for &t in threads {
        let vec = prometheus::HistogramVec::new(
            prometheus::HistogramOpts::new("bench_latency_seconds", "help").buckets(bounds_seconds()),
            &["id"],
        )
        .expect("histogram vec");
        let mut handles = Vec::with_capacity(n);
        let created = measure(|| handles.extend(ids.iter().map(|id| vec.with_label_values(&[id.as_str()]))));
        let recorded = measure_threads(t, || {
            for h in &handles {
                values.iter().for_each(|&v| h.observe(v as f64 * 1e-9));
            }
        });
        assert_eq!(handles[0].get_sample_count(), (values.len() * t) as u64);
        push_pair(rows, "prometheus", "histogram", t, n, created, recorded, Some(le_error));
    }

    type PcFamily = prometheus_client::metrics::family::Family<
        [(&'static str, String); 1],
        prometheus_client::metrics::histogram::Histogram,
    >;
    for &t in threads {
        let family = PcFamily::new_with_constructor(
            (|| prometheus_client::metrics::histogram::Histogram::new(bounds_seconds()))
                as fn() -> prometheus_client::metrics::histogram::Histogram,
        );
        let mut handles = Vec::with_capacity(n);
        let created = measure(|| {
            handles.extend(ids.iter().map(|id| family.get_or_create_owned(&[("id", id.clone())])));
        });
        let recorded = measure_threads(t, || {
            for h in &handles {
                values.iter().for_each(|&v| h.observe(v as f64 * 1e-9));
            }
        });
        push_pair(rows, "prometheus-client", "histogram", t, n, created, recorded, Some(le_error));
    }

    let meta = metrics::Metadata::new("bench", metrics::Level::INFO, None);
    for &t in threads {
        let recorder = metrics_exporter_prometheus::PrometheusBuilder::new()
            .set_buckets(&bounds_seconds())
            .expect("valid buckets")
            .build_recorder();
        let handle = recorder.handle();
        let mut handles = Vec::with_capacity(n);
        let created = measure(|| {
            handles.extend(ids.iter().map(|id| {
                let key =
                    metrics::Key::from_parts("bench_latency_seconds", vec![metrics::Label::new("id", id.clone())]);
                recorder.register_histogram(&key, &meta)
            }))
        });
        let recorded = measure_threads(t, || {
            for h in &handles {
                values.iter().for_each(|&v| h.record(v as f64 * 1e-9));
            }
        });
        // The exporter buffers raw samples until upkeep folds them into its buckets; fold them
        // (as the exporter's 5 s upkeep would) and count what remains.
        let upkeep = measure(|| handle.run_upkeep());
        let recorded = Cost { bytes: recorded.bytes + upkeep.bytes, allocs: recorded.allocs + upkeep.allocs };
        let text = handle.render();
        assert!(
            text.contains(&format!("bench_latency_seconds_count{{id=\"0\"}} {}", values.len() * t)),
            "metrics recorded every value"
        );
        push_pair(rows, "metrics-exporter-prometheus", "histogram", t, n, created, recorded, Some(le_error));
    }

    for &t in threads {
        let hist = fast_telemetry::DynamicHistogram::with_limits(&bounds_nanos(), 4, n + 10);
        let mut handles = Vec::with_capacity(n);
        let created = measure(|| handles.extend(ids.iter().map(|id| hist.series(&[("id", id.as_str())]))));
        let recorded = measure_threads(t, || {
            for h in &handles {
                values.iter().for_each(|&v| h.record(v));
            }
        });
        assert_eq!(hist.count(&[("id", "0")]), (values.len() * t) as u64);
        push_pair(rows, "fast-telemetry", "histogram", t, n, created, recorded, Some(le_error));
    }

    let hdr_error = {
        let mut h = new_hdr();
        values.iter().for_each(|&v| h.saturating_record(v));
        max_error(&sorted, |q| h.value_at_quantile(q) as f64)
    };
    for &t in threads {
        let mut handles: Vec<Mutex<hdrhistogram::Histogram<u64>>> = Vec::with_capacity(n);
        let created = measure(|| handles.extend((0..n).map(|_| Mutex::new(new_hdr()))));
        let recorded = measure_threads(t, || {
            for h in &handles {
                let mut h = h.lock().expect("hdr lock");
                values.iter().for_each(|&v| h.saturating_record(v));
            }
        });
        assert_eq!(handles[0].lock().expect("hdr lock").len(), (values.len() * t) as u64);
        black_box(&handles);
        push_pair(rows, "hdrhistogram", "histogram", t, n, created, recorded, Some(hdr_error));
    }
}

// ---------------------------------------------------------------------------------------------

fn main() {
    let args: Vec<String> = std::env::args().collect();
    // `cargo bench` passes `--bench`; criterion's smoke mode adds `--test`; `cargo test
    // --benches` passes neither.
    let smoke = args.iter().any(|a| a == "--test") || !args.iter().any(|a| a == "--bench");
    let plan = if smoke { &SMOKE } else { &FULL };
    let values = latencies();
    let mut rows = Vec::new();

    println!("memory per series (counting global allocator){}", if smoke { " — smoke run, small n" } else { "" });
    for &n in plan.counter_series {
        counters_shardmetrics(n, plan.threads, &mut rows);
        counters_peers(n, plan.threads, &mut rows);
    }
    for &n in plan.histogram_series {
        histograms(n, plan.threads, &values, &mut rows);
    }

    println!();
    println!(
        "| lib | kind | threads | series | bytes / series | bytes / series / thread | allocs / series | max q error |"
    );
    println!("|---|---|---:|---:|---:|---:|---:|---:|");
    for r in &rows {
        let err = r.error.map_or_else(String::new, |e| format!("{:.2} %", e * 100.0));
        println!(
            "| {} | {} | {} | {} | {:.1} | {:.1} | {:.3} | {err} |",
            r.lib,
            r.kind,
            r.threads,
            r.series,
            r.bytes_per_series(),
            r.per_thread(),
            r.cost.allocs as f64 / r.series as f64
        );
    }

    println!();
    println!("goals (shardmetrics, per series per thread, recording rows):");
    let ours = |kind| rows.iter().filter(move |r: &&Row| r.lib == "shardmetrics" && r.kind == kind);
    let worst_counter = ours("counter").map(Row::per_thread).fold(0.0, f64::max);
    let worst_hist = ours("histogram").map(Row::per_thread).fold(0.0, f64::max);
    let worst_err = ours("histogram").filter_map(|r| r.error).fold(0.0, f64::max);
    let verdict = |ok: bool| if ok { "met" } else { "MISSED" };
    println!("  counter   <= 16 B:   worst {worst_counter:.1} B — {}", verdict(worst_counter <= 16.0));
    println!("  histogram <= 8 KiB:  worst {worst_hist:.0} B — {}", verdict(worst_hist <= 8192.0));
    println!("  quantile error <= 2 %: worst {:.2} % — {}", worst_err * 100.0, verdict(worst_err <= 0.02));

    let dir = std::path::Path::new(&std::env::var("CARGO_TARGET_DIR").unwrap_or_else(|_| "target".to_owned()))
        .join("shardmetrics-bench");
    std::fs::create_dir_all(&dir).expect("create target/shardmetrics-bench");
    let path = dir.join(if smoke { "memory-test.json" } else { "memory.json" });
    let json = serde_json::Value::Array(rows.iter().map(Row::json).collect());
    std::fs::write(&path, serde_json::to_string_pretty(&json).expect("serialises")).expect("write memory json");
    println!();
    println!("wrote {}", path.display());
}
