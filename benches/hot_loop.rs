//! Instrumentation overhead in a hot loop: the cost a service sees, not a micro-op in isolation.
//!
//! Each item does real work — a dependent chain of 22 table look-ups, multiplies and rotates
//! over a 16 KiB table, as a parser or a hash join does — and the work's result decides what
//! is recorded (as in a service, the metrics depend on what was computed):
//!
//! * one counter increment (`items_total`),
//! * one increment of a 3-label counter (`requests_total{route, status, method}`, 8 × 2 × 2 = 32
//!   series), the series chosen by the item,
//! * one histogram value (the item's "latency", 1 µs–100 ms).
//!
//! Two workloads (criterion groups `hot_loop_stream` and `hot_loop_batch`):
//!
//! * `stream`: each item's work starts from the previous item's result (a parser or decoder
//!   carrying its state): ~68 ns per item, and the recording runs beside the work's chain.
//! * `batch`: independent items. The CPU overlaps two items' 68-ns chains (~32 ns per item
//!   uninstrumented) as long as both fit in its reorder window; any instrumentation adds
//!   instructions to each item and can stop that overlap, so this workload shows the most any
//!   library can cost — a property of the loop as much as of the library.
//!
//! Variants (criterion ids `hot_loop_<workload>/<variant>/2t`, throughput in items; 2 threads,
//! each working through its own items on the same metrics):
//!
//! * `none`: the work only — the baseline every overhead is relative to;
//! * `<lib>/handles`: the labelled series resolved once, before the loop (an array of 32
//!   handles indexed by the item), as a careful service does;
//! * `<lib>/with`: the labelled series looked up by its label values on every item
//!   (`family.with(&[route, status, method])`, prometheus' `with_label_values`,
//!   prometheus-client's `get_or_create`, fast-telemetry's `DynamicCounter`), as most code does.
//!
//! After each workload's criterion group, an **interleaved run** prints the table
//! BENCHMARKS.md quotes: every variant timed in turn for `ROUNDS` rounds (so machine noise hits
//! all of them alike), the median ns per item of each, and its overhead over `none` from the
//! same rounds. `SHARDMETRICS_HOT_LOOP_ROUNDS=<n>` sets the rounds (default 21; 0 skips it; the
//! `--test` smoke run skips it); `SHARDMETRICS_HOT_LOOP_ONLY=<text>` keeps only `none` and the
//! variants whose name contains the text (e.g. `shardmetrics`); `SHARDMETRICS_BENCH_CLOCK=cpu`
//! times with each thread's CPU clock (`benches/common`). A criterion filter that matches no
//! group (`-- interleaved-only`) runs the interleaved table alone.
//!
//! Run: `cargo bench --bench hot_loop`; smoke: `cargo bench --bench hot_loop -- --test`.

mod common;

use std::{
    hint::black_box,
    sync::{Arc, Barrier, OnceLock},
    thread,
    time::Duration,
};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use shardmetrics::{Registry, Unit};

const THREADS: usize = 2;
const ROUTES: [&str; 8] =
    ["/", "/api/items", "/api/items/{id}", "/api/users", "/api/users/{id}", "/login", "/search", "/static"];
const STATUSES: [&str; 2] = ["200", "500"];
const METHODS: [&str; 2] = ["GET", "POST"];

/// The work's look-up table: 2,048 pseudo-random words (16 KiB, L1-resident).
fn table() -> &'static [u64; 2048] {
    static T: OnceLock<[u64; 2048]> = OnceLock::new();
    T.get_or_init(|| {
        let mut x = 0x9e37_79b9_7f4a_7c15_u64;
        std::array::from_fn(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        })
    })
}

/// ~68 ns of dependent work on input `i` (22 rounds); returns a hash of it.
#[inline(always)]
fn work(t: &[u64; 2048], i: u64) -> u64 {
    let mut x = i.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    for _ in 0..22 {
        x = (x ^ t[(x >> 53) as usize]).wrapping_mul(0xff51_afd7_ed55_8ccd).rotate_left(23);
    }
    x
}

/// The input of item `i`'s work: `i` itself (`batch`: independent items, whose work chains
/// the CPU overlaps), or `i` mixed with the running result (`stream`: each item's work starts
/// from the previous one's, as a parser or decoder carries its state).
#[inline(always)]
fn seed(chain: bool, i: u64, acc: u64) -> u64 {
    if chain {
        i ^ acc
    } else {
        i
    }
}

/// The item's series (0..32) and latency (ns, log-spread over 1 µs–100 ms) from its hash.
#[inline(always)]
fn outcome(h: u64) -> (usize, u64) {
    let series = (h & 31) as usize;
    // 2^10 … 2^26.6 ns: a mantissa and an exponent from the hash's bits.
    let latency = ((h >> 8) & 1023 | 1024) << ((h >> 20) % 17);
    (series, latency)
}

#[inline(always)]
fn labels(series: usize) -> [&'static str; 3] {
    [ROUTES[series & 7], STATUSES[(series >> 3) & 1], METHODS[(series >> 4) & 1]]
}

/// One variant: per thread, a closure run over `iters` items.
type Body = Arc<dyn Fn(u64, u64) -> u64 + Send + Sync>;

/// Runs `body(first_item, iters)` on `THREADS` threads at once; the slowest thread's time.
fn run(body: &Body, iters: u64) -> Duration {
    let barrier = Arc::new(Barrier::new(THREADS));
    let handles: Vec<_> = (0..THREADS as u64)
        .map(|t| {
            let (body, barrier) = (body.clone(), barrier.clone());
            thread::spawn(move || {
                // Warm-up outside the timing: thread-local binding, first touch of cells.
                black_box(body(t << 40, 64));
                barrier.wait();
                let start = common::now();
                black_box(body((t << 40) + 64, iters));
                common::now() - start
            })
        })
        .collect();
    handles.into_iter().map(|h| h.join().expect("hot loop thread")).max().unwrap_or_default()
}

/// The loop every variant runs: per item, the work, then `record(series, latency)` (nothing for
/// `none`). One generic body, so the variants differ only in what they record.
fn body(chain: bool, record: impl Fn(usize, u64) + Send + Sync + 'static) -> Body {
    let t = table();
    Arc::new(move |first, n| {
        let mut acc = 0;
        for i in first..first + n {
            let h = work(t, seed(chain, i, acc));
            let (s, l) = outcome(h);
            record(s, l);
            acc ^= h;
        }
        acc
    })
}

/// Every variant, by name.
fn variants(chain: bool) -> Vec<(&'static str, Body)> {
    let mut v: Vec<(&'static str, Body)> = vec![("none", body(chain, |_, _| {}))];

    // shardmetrics (a manual registry: no aggregator thread competing for the 2 cores).
    let reg = Registry::builder().manual().build();
    let items = reg.counter("items_total").build().unwrap();
    let family = reg.counter("requests_total").family(&["route", "status", "method"]).unwrap();
    let latency = reg.histogram("latency").unit(Unit::Nanoseconds).build().unwrap();
    let handles: Vec<_> = (0..32).map(|s| family.get(&labels(s)).unwrap()).collect();
    let (i2, l2) = (items.clone(), latency.clone());
    v.push((
        "shardmetrics/handles",
        body(chain, move |s, l| {
            i2.inc();
            handles[s].inc();
            l2.record(l);
        }),
    ));
    v.push((
        "shardmetrics/with",
        body(chain, move |s, l| {
            items.inc();
            family.with(&labels(s)).inc();
            latency.record(l);
        }),
    ));

    // prometheus.
    let p_items = prometheus::IntCounter::new("items_total", "help").unwrap();
    let p_family =
        prometheus::IntCounterVec::new(prometheus::Opts::new("requests_total", "help"), &["route", "status", "method"])
            .unwrap();
    let bounds: Vec<f64> = (0..12).map(|k| 1e-6 * 4f64.powi(k)).collect();
    let p_latency = prometheus::Histogram::with_opts(
        prometheus::HistogramOpts::new("latency_seconds", "help").buckets(bounds.clone()),
    )
    .unwrap();
    let p_handles: Vec<_> = (0..32).map(|s| p_family.with_label_values(&labels(s))).collect();
    let (i2, l2) = (p_items.clone(), p_latency.clone());
    v.push((
        "prometheus/handles",
        body(chain, move |s, l| {
            i2.inc();
            p_handles[s].inc();
            l2.observe(l as f64 * 1e-9);
        }),
    ));
    v.push((
        "prometheus/with",
        body(chain, move |s, l| {
            p_items.inc();
            p_family.with_label_values(&labels(s)).inc();
            p_latency.observe(l as f64 * 1e-9);
        }),
    ));

    // prometheus-client.
    type Pairs = [(&'static str, &'static str); 3];
    let pc_items = prometheus_client::metrics::counter::Counter::<u64>::default();
    let pc_family =
        prometheus_client::metrics::family::Family::<Pairs, prometheus_client::metrics::counter::Counter>::default();
    let pc_latency = prometheus_client::metrics::histogram::Histogram::new(bounds);
    let pairs = |s: usize| -> Pairs {
        let l = labels(s);
        [("route", l[0]), ("status", l[1]), ("method", l[2])]
    };
    let pc_handles: Vec<_> = (0..32).map(|s| pc_family.get_or_create(&pairs(s)).clone()).collect();
    let (i2, l2) = (pc_items.clone(), pc_latency.clone());
    v.push((
        "prometheus-client/handles",
        body(chain, move |s, l| {
            i2.inc();
            pc_handles[s].inc();
            l2.observe(l as f64 * 1e-9);
        }),
    ));
    v.push((
        "prometheus-client/with",
        body(chain, move |s, l| {
            pc_items.inc();
            pc_family.get_or_create(&pairs(s)).inc();
            pc_latency.observe(l as f64 * 1e-9);
        }),
    ));

    // fast-telemetry (sharded atomics; `DynamicCounter` takes the label pairs per call).
    let ft_items = Arc::new(fast_telemetry::Counter::new(4));
    let ft_handles: Vec<fast_telemetry::Counter> = (0..32).map(|_| fast_telemetry::Counter::new(4)).collect();
    let ft_bounds: Vec<u64> = (0..12).map(|k| 1_000 * 4u64.pow(k)).collect();
    let ft_latency = Arc::new(fast_telemetry::Histogram::new(&ft_bounds, 4));
    let ft_family = fast_telemetry::DynamicCounter::new(4);
    let (i2, l2) = (ft_items.clone(), ft_latency.clone());
    v.push((
        "fast-telemetry/handles",
        body(chain, move |s, l| {
            i2.inc();
            ft_handles[s].inc();
            l2.record(l);
        }),
    ));
    v.push((
        "fast-telemetry/with",
        body(chain, move |s, l| {
            ft_items.inc();
            ft_family.inc(&pairs(s));
            ft_latency.record(l);
        }),
    ));
    v
}

fn hot_loop(c: &mut Criterion) {
    for (workload, chain) in [("stream", true), ("batch", false)] {
        let mut g = c.benchmark_group(format!("hot_loop_{workload}"));
        g.throughput(Throughput::Elements(1));
        let variants = variants(chain);
        for (name, body) in &variants {
            g.bench_function(BenchmarkId::new(*name, format!("{THREADS}t")), |b| {
                b.iter_custom(|iters| run(body, iters))
            });
        }
        g.finish();
        interleaved(workload, &variants);
    }
}

/// The table BENCHMARKS.md quotes: every variant in turn, `ROUNDS` times; medians and
/// overhead over `none` from the same rounds.
fn interleaved(workload: &str, variants: &[(&'static str, Body)]) {
    let smoke = std::env::args().any(|a| a == "--test");
    let rounds: usize = std::env::var("SHARDMETRICS_HOT_LOOP_ROUNDS").ok().and_then(|v| v.parse().ok()).unwrap_or(21);
    if smoke || rounds == 0 {
        return;
    }
    const ITEMS: u64 = 2_000_000;
    // `SHARDMETRICS_HOT_LOOP_ONLY=<text>`: only `none` and the variants whose name contains it.
    let only = std::env::var("SHARDMETRICS_HOT_LOOP_ONLY").unwrap_or_default();
    let variants: Vec<_> =
        variants.iter().filter(|(name, _)| *name == "none" || name.contains(only.as_str())).collect();
    let mut times: Vec<Vec<f64>> = vec![Vec::new(); variants.len()];
    for _ in 0..rounds {
        for (k, (_, body)) in variants.iter().enumerate() {
            times[k].push(run(body, ITEMS).as_nanos() as f64 / ITEMS as f64);
        }
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let medians: Vec<f64> = times.iter_mut().map(median).collect();
    println!(
        "\nhot loop ({workload}), interleaved: {rounds} rounds × {ITEMS} items per thread, {THREADS} threads, clock {}",
        if common::cpu_clock() { "cpu" } else { "wall" }
    );
    println!("| variant | ns per item (median) | overhead over none |");
    println!("|---|---:|---:|");
    for ((name, _), m) in variants.iter().zip(&medians) {
        println!("| {name} | {m:.1} | {:+.1} % |", (m / medians[0] - 1.0) * 100.0);
    }
}

fn criterion() -> Criterion {
    Criterion::default().measurement_time(Duration::from_secs(3)).warm_up_time(Duration::from_secs(1)).sample_size(20)
}

criterion_group! { name = benches; config = criterion(); targets = hot_loop }
criterion_main!(benches);
