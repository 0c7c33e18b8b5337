//! Hot-path recording cost: shardmetrics beside its peers and a floor, at 1 and 2 threads.
//!
//! One bench over ~650 lines: every recording operation, each beside the peers and the floor.
//!
//! Every benchmark reports **ns per operation per thread**: each of the `t` threads performs
//! `iters` operations on the *same* metric/series (the contention case), started together
//! behind a barrier; the time returned to criterion is the slowest thread's own elapsed time,
//! so criterion's `time / iters` is the per-thread cost of one operation.
//!
//! The threads are two long-lived workers (spawned once for the whole binary), so thread-local
//! set-up — shardmetrics binding a shard, fast-telemetry's thread id, the first touch of a
//! chunk — happens during criterion's warm-up and is not measured.
//!
//! # Groups
//!
//! Benchmark ids are `<group>/<lib>/<t>t`; `lib` is `shardmetrics`, a peer, or `floor` (no
//! library: the thread's own cache line, found through one thread-local pointer, a Relaxed
//! load and a store; for histograms an `lzcnt` bucket index into the thread's own array).
//!
//! * `counter_inc`, `gauge_set`, `histogram_record`: one operation through a handle
//!   (`histogram_record` also has prometheus-client's native histogram at schema 5,
//!   `prometheus-client-native`).
//! * `timer_guard`: start a timer and drop it (two clock reads + one record).
//! * `labelled_inc`: look-up of an existing `(route, status)` series + increment.
//! * `labelled_inc_1`, `labelled_inc_2`, `labelled_inc_3`: the same with 1, 2 and 3 labels
//!   (`route`, `status`, `method`), with the counter floor beside them.
//! * `labelled_insert` (1 thread only): the first insert of a new, distinct `(route, status)`
//!   tuple plus its increment — the cost a new label value pays once. Families are rebuilt
//!   every 4,096 inserts (untimed) so memory stays bounded.
//! * `snapshot_load`: `Registry::snapshot()` beside arc-swap's own loads.
//!
//! # What stops the compiler from eliding or hoisting the work
//!
//! The measured loop is `common::time_loop`: `for i in 0..iters { op(black_box(i)) }` in a
//! function that is never inlined (one call per sample). `std::hint::black_box` is an empty asm
//! statement that the compiler must assume reads and writes any memory that has escaped, so
//! each iteration re-reads thread-locals and cannot fold `n` increments into one `+= n`; every
//! cell written is an atomic, which the compiler neither folds nor deletes. The handle `op`
//! captured is reached through `time_loop`'s `&F` argument, which the compiler may treat as
//! unchanging for the call, so a handle's own fields (id, cell location) are loaded once per
//! sample — as in a loop over `&self` in a service (`for r in batch { self.requests.inc() }`).
//! (Until 2026-12-07 `time_loop` was inlined into the worker's closure and the handle's fields
//! were re-loaded every iteration: 2.70 ns for our counter then, ~0.6 ns now, same engine.)
//! Inputs that a real program gets at run time — histogram values, gauge values, label values —
//! are derived from the black-boxed `i` (a 1,024-entry table of latencies log-uniform over
//! 1 µs–100 ms) or black-boxed themselves. The same loop and inputs are used for every
//! implementation, the floor included. `benches/callgrind.sh` counts the instructions of this
//! same loop per operation (`SHARDMETRICS_CALLGRIND=<group>/<lib>:<iters>`).
//!
//! # Clock
//!
//! By default each thread times itself with `Instant` (wall time). On a machine shared with
//! other work, wall time counts the time a thread spends descheduled, so
//! `SHARDMETRICS_BENCH_CLOCK=cpu` switches to the thread's own CPU time
//! (`CLOCK_THREAD_CPUTIME_ID`): robust to oversubscription, but it under-counts contention
//! when the two threads were not actually running at the same moment. BENCHMARKS.md says which
//! clock each table used. The clock is `benches/common/mod.rs`, shared by the timing benches.
//!
//! Run: `cargo bench --bench hot_path` (about 4 minutes on 2 cores); smoke test:
//! `cargo bench --bench hot_path -- --test`. See BENCHMARKS.md.

mod common;

use std::{
    cell::{Cell, RefCell},
    hint::black_box,
    sync::{
        atomic::{AtomicU64, Ordering::Relaxed},
        mpsc::{self, Receiver, Sender},
        Arc, Barrier, Mutex, OnceLock,
    },
    thread,
    time::{Duration, Instant},
};

use common::time_loop;
use criterion::{criterion_group, criterion_main, BenchmarkGroup, BenchmarkId, Criterion, Throughput};
use shardmetrics::{__private as buckets, Registry, Unit};

/// Thread counts measured (the machine has 2 cores).
const THREADS: [usize; 2] = [1, 2];

// ---------------------------------------------------------------------------------------------
// Inputs shared by every implementation.

/// Latencies in ns, log-uniform over 1 µs–100 ms, from a fixed-seed xorshift (same every run).
fn latencies() -> &'static [u64; 1024] {
    static VALUES: OnceLock<[u64; 1024]> = OnceLock::new();
    VALUES.get_or_init(|| {
        let mut state = 0x9E37_79B9_7F4A_7C15u64;
        std::array::from_fn(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let u = (state >> 11) as f64 / (1u64 << 53) as f64;
            // 1e3 ns · 1e5^u spans 1 µs ..= 100 ms.
            (1e3 * 1e5f64.powf(u)) as u64
        })
    })
}

#[inline(always)]
fn latency(values: &[u64; 1024], i: u64) -> u64 {
    values[(i & 1023) as usize]
}

/// Prometheus-style `le` bounds covering the same range (1 µs · 2^k, 18 buckets to ~131 ms).
fn bounds_seconds() -> Vec<f64> {
    (0..18).map(|k| 1e-6 * f64::from(1u32 << k)).collect()
}

fn bounds_nanos() -> Vec<u64> {
    (0..18).map(|k| 1_000u64 << k).collect()
}

// ---------------------------------------------------------------------------------------------
// The floor: what a record costs with no metrics library at all — the thread's own cache
// line (a per-thread heap block, found through one thread-local pointer, as any per-thread
// shard must be), a Relaxed load and a store. Atomics, not `Cell`s, so the compiler can neither
// fold a loop of increments into one add nor delete a loop of stores as dead.

/// Bucket array of the histogram floor: every bucket of precision 5.
const FLOOR_BUCKETS: usize = buckets::bucket_count(buckets::DEFAULT_PRECISION);

/// One thread's floor cells: the counter and the gauge on their own 128-byte line, then the
/// histogram floor's buckets.
#[repr(align(128))]
struct FloorCells {
    counter: AtomicU64,
    gauge: AtomicU64,
    hist: [AtomicU64; FLOOR_BUCKETS],
}

thread_local! {
    /// This thread's `FloorCells` (leaked on first use: two long-lived bench workers).
    static FLOOR: Cell<*const FloorCells> = const { Cell::new(std::ptr::null()) };
    /// Per-thread hdrhistogram (2 sig. figures, ~1 % error like our precision 5).
    static HDR_LOCAL: RefCell<hdrhistogram::Histogram<u64>> = RefCell::new(new_hdr());
}

#[inline(always)]
fn floor_cells() -> &'static FloorCells {
    let mut p = FLOOR.with(Cell::get);
    if p.is_null() {
        p = floor_init();
    }
    // SAFETY: `p` is this thread's leaked `FloorCells` (set once by `floor_init`, never freed).
    unsafe { &*p }
}

#[cold]
#[inline(never)]
fn floor_init() -> *const FloorCells {
    let cells: &'static FloorCells = Box::leak(Box::new(FloorCells {
        counter: AtomicU64::new(0),
        gauge: AtomicU64::new(0),
        hist: std::array::from_fn(|_| AtomicU64::new(0)),
    }));
    FLOOR.with(|c| c.set(cells));
    cells
}

#[inline(always)]
fn floor_inc() {
    let c = &floor_cells().counter;
    c.store(c.load(Relaxed) + 1, Relaxed);
}

#[inline(always)]
fn floor_set(v: f64) {
    floor_cells().gauge.store(v.to_bits(), Relaxed);
}

/// `lzcnt` bucket index + load and store of that bucket in the thread's own array.
#[inline(always)]
fn floor_record(v: u64) {
    let cell = &floor_cells().hist[buckets::index(v, buckets::DEFAULT_PRECISION)];
    cell.store(cell.load(Relaxed) + 1, Relaxed);
}

fn new_hdr() -> hdrhistogram::Histogram<u64> {
    hdrhistogram::Histogram::new_with_bounds(1, 3_600_000_000_000, 2).expect("valid hdrhistogram bounds")
}

// ---------------------------------------------------------------------------------------------
// The harness: long-lived workers, a barrier, the slowest thread's time.

type Job = Arc<dyn Fn(u64) -> Duration + Send + Sync>;

struct Pool {
    tasks: Vec<Sender<(Job, u64)>>,
    done: Mutex<Receiver<Duration>>,
}

fn pool() -> &'static Pool {
    static POOL: OnceLock<Pool> = OnceLock::new();
    POOL.get_or_init(|| {
        let (done_tx, done) = mpsc::channel();
        let tasks = (0..THREADS[THREADS.len() - 1])
            .map(|w| {
                let (tx, rx) = mpsc::channel::<(Job, u64)>();
                let done_tx = done_tx.clone();
                thread::Builder::new()
                    .name(format!("bench-worker-{w}"))
                    .spawn(move || {
                        for (job, iters) in rx {
                            if done_tx.send(job(iters)).is_err() {
                                return;
                            }
                        }
                    })
                    .expect("spawn bench worker");
                tx
            })
            .collect();
        Pool { tasks, done: Mutex::new(done) }
    })
}

/// Runs `op(i)` for `i in 0..iters` on each of `threads` workers at once (all on the same
/// metric, captured by `op`), returning the slowest worker's elapsed time.
fn run<F: Fn(u64) + Send + Sync + 'static>(threads: usize, iters: u64, op: &Arc<F>) -> Duration {
    let pool = pool();
    let done = pool.done.lock().expect("bench pool lock");
    let barrier = Arc::new(Barrier::new(threads));
    let op = op.clone();
    let job: Job = Arc::new(move |iters| {
        barrier.wait();
        time_loop(iters, &*op)
    });
    for task in &pool.tasks[..threads] {
        task.send((job.clone(), iters)).expect("bench worker alive");
    }
    (0..threads).map(|_| done.recv().expect("bench worker result")).max().unwrap_or_default()
}

/// The group being defined (for `SHARDMETRICS_CALLGRIND`).
static GROUP: Mutex<String> = Mutex::new(String::new());

/// `c.benchmark_group(name)`, remembering the name.
fn group<'a>(c: &'a mut Criterion, name: &str) -> BenchmarkGroup<'a, criterion::measurement::WallTime> {
    name.clone_into(&mut GROUP.lock().expect("group name"));
    c.benchmark_group(name)
}

/// `SHARDMETRICS_CALLGRIND=<group>/<lib>:<iters>`: instead of benchmarking, run that one
/// operation `iters` times on the main thread (after 1,000 untimed calls that bind the shard
/// and touch the cells) in the very loop criterion times, then exit. Under
/// `valgrind --tool=callgrind`, the difference between the totals of two runs (`iters` = N and
/// 0) over N is the instructions per operation, loop included (`benches/callgrind.sh`).
fn callgrind_target() -> Option<(String, u64)> {
    let spec = std::env::var("SHARDMETRICS_CALLGRIND").ok()?;
    let (target, iters) = spec.rsplit_once(':').expect("SHARDMETRICS_CALLGRIND=<group>/<lib>:<iters>");
    Some((target.to_owned(), iters.parse().expect("iterations")))
}

/// One benchmark per thread count for `op`, named `lib/<t>t` inside `group`.
fn bench_op<F: Fn(u64) + Send + Sync + 'static>(
    group: &mut BenchmarkGroup<'_, criterion::measurement::WallTime>,
    lib: &str,
    op: F,
) {
    bench_op_then(group, lib, op, || {});
}

/// Like [`bench_op`], with `after` run (untimed) after every sample — for peers that buffer
/// values until an upkeep step drains them.
fn bench_op_then<F: Fn(u64) + Send + Sync + 'static>(
    group: &mut BenchmarkGroup<'_, criterion::measurement::WallTime>,
    lib: &str,
    op: F,
    after: impl Fn(),
) {
    if let Some((target, iters)) = callgrind_target() {
        if target == format!("{}/{lib}", GROUP.lock().expect("group name")) {
            time_loop(1_000, &op);
            time_loop(iters, &op);
            after();
            std::process::exit(0);
        }
        return;
    }
    let op = Arc::new(op);
    for t in THREADS {
        group.bench_function(BenchmarkId::new(lib, format!("{t}t")), |b| {
            b.iter_custom(|iters| {
                let d = run(t, iters, &op);
                after();
                d
            })
        });
    }
}

// ---------------------------------------------------------------------------------------------
// Peers' set-up.

/// The metrics-rs facade needs a global recorder for 2-thread macros; one per process.
fn metrics_handle() -> &'static metrics_exporter_prometheus::PrometheusHandle {
    static HANDLE: OnceLock<metrics_exporter_prometheus::PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        let recorder = metrics_exporter_prometheus::PrometheusBuilder::new()
            .set_buckets(&bounds_seconds())
            .expect("valid buckets")
            .build_recorder();
        let handle = recorder.handle();
        metrics::set_global_recorder(recorder).expect("no other global recorder in this binary");
        handle
    })
}

fn ours() -> Registry {
    // Manual: no aggregator thread competing for the 2 cores while we measure.
    Registry::builder().manual().build()
}

// ---------------------------------------------------------------------------------------------
// Groups.

fn counter_inc(c: &mut Criterion) {
    let mut g = group(c, "counter_inc");
    g.throughput(Throughput::Elements(1));

    let reg = ours();
    let counter = reg.counter("bench_counter_total").build().expect("valid counter");
    bench_op(&mut g, "shardmetrics", move |_| counter.inc());

    let counter = prometheus::IntCounter::new("bench_counter_total", "help").expect("valid counter");
    bench_op(&mut g, "prometheus", move |_| counter.inc());

    let counter = prometheus_client::metrics::counter::Counter::<u64>::default();
    bench_op(&mut g, "prometheus-client", move |_| {
        counter.inc();
    });

    metrics_handle();
    let counter = metrics::counter!("bench_counter_total");
    bench_op(&mut g, "metrics", move |_| counter.increment(1));

    let counter = fast_telemetry::Counter::new(4);
    bench_op(&mut g, "fast-telemetry", move |_| counter.inc());

    bench_op(&mut g, "floor", |_| floor_inc());
    g.finish();
}

fn gauge_set(c: &mut Criterion) {
    let mut g = group(c, "gauge_set");
    g.throughput(Throughput::Elements(1));
    let v = |i: u64| (i & 1023) as f64;

    let reg = ours();
    let gauge = reg.gauge("bench_gauge").build().expect("valid gauge");
    bench_op(&mut g, "shardmetrics", move |i| gauge.set(v(i)));

    let gauge = prometheus::Gauge::new("bench_gauge", "help").expect("valid gauge");
    bench_op(&mut g, "prometheus", move |i| gauge.set(v(i)));

    let gauge = prometheus_client::metrics::gauge::Gauge::<f64, AtomicU64>::default();
    bench_op(&mut g, "prometheus-client", move |i| {
        gauge.set(v(i));
    });

    metrics_handle();
    let gauge = metrics::gauge!("bench_gauge");
    bench_op(&mut g, "metrics", move |i| gauge.set(v(i)));

    let gauge = fast_telemetry::GaugeF64::new();
    bench_op(&mut g, "fast-telemetry", move |i| gauge.set(v(i)));

    bench_op(&mut g, "floor", move |i| floor_set(v(i)));
    g.finish();
}

fn histogram_record(c: &mut Criterion) {
    let mut g = group(c, "histogram_record");
    g.throughput(Throughput::Elements(1));
    let values = latencies();

    let reg = ours();
    let hist = reg.histogram("bench_latency").unit(Unit::Nanoseconds).build().expect("valid histogram");
    bench_op(&mut g, "shardmetrics", move |i| hist.record(latency(values, i)));

    let hist = prometheus::Histogram::with_opts(
        prometheus::HistogramOpts::new("bench_latency_seconds", "help").buckets(bounds_seconds()),
    )
    .expect("valid histogram");
    bench_op(&mut g, "prometheus", move |i| hist.observe(latency(values, i) as f64 * 1e-9));

    let hist = prometheus_client::metrics::histogram::Histogram::new(bounds_seconds());
    bench_op(&mut g, "prometheus-client", move |i| hist.observe(latency(values, i) as f64 * 1e-9));

    // prometheus-client's native (sparse exponential) histogram at our schema, 5: the peer of
    // issue #16's exact native buckets.
    use prometheus_client::metrics::histogram::NativeHistogramConfig;
    let hist = prometheus_client::metrics::histogram::Histogram::new_native(NativeHistogramConfig::with_schema(5));
    bench_op(&mut g, "prometheus-client-native", move |i| hist.observe(latency(values, i) as f64 * 1e-9));

    let handle = metrics_handle();
    let hist = metrics::histogram!("bench_latency_seconds");
    // metrics-exporter-prometheus buffers every value until upkeep drains it (every 5 s in a
    // real exporter); drain after each sample, untimed, so memory stays bounded.
    bench_op_then(&mut g, "metrics", move |i| hist.record(latency(values, i) as f64 * 1e-9), || handle.run_upkeep());

    let hist = fast_telemetry::Histogram::new(&bounds_nanos(), 4);
    bench_op(&mut g, "fast-telemetry", move |i| hist.record(latency(values, i)));

    // hdrhistogram is single-writer (`record` takes `&mut self`). Shared across threads it
    // needs a lock: this is the "same metric from 2 threads" case.
    let hist = Mutex::new(new_hdr());
    bench_op(&mut g, "hdrhistogram-mutex", move |i| {
        hist.lock().expect("hdr lock").saturating_record(latency(values, i));
    });
    // One hdrhistogram per thread in a thread-local (no sharing, so no aggregation either):
    // what hdrhistogram costs when contention is designed away.
    bench_op(&mut g, "hdrhistogram-per-thread", move |i| {
        HDR_LOCAL.with(|h| h.borrow_mut().saturating_record(latency(values, i)));
    });

    bench_op(&mut g, "floor", move |i| floor_record(latency(values, i)));
    g.finish();
}

/// Trace ids for the exemplar benches: 1,024 distinct 16-hex-digit strings, picked by `i`.
fn trace_ids() -> &'static [String] {
    static IDS: OnceLock<Vec<String>> = OnceLock::new();
    IDS.get_or_init(|| (0..1024u64).map(|i| format!("{:016x}", i.wrapping_mul(0x9E37_79B9_7F4A_7C15))).collect())
}

/// A histogram record that carries an exemplar (a trace id) — what a traced request pays —
/// beside the plain record. prometheus-client is the only peer with exemplars
/// (`HistogramWithExemplars`, latest exemplar per bucket behind a lock).
fn histogram_exemplar(c: &mut Criterion) {
    let mut g = group(c, "histogram_exemplar");
    g.throughput(Throughput::Elements(1));
    let values = latencies();
    let ids = trace_ids();

    let reg = ours();
    let hist = reg.histogram("bench_latency").unit(Unit::Nanoseconds).build().expect("valid histogram");
    bench_op(&mut g, "shardmetrics", move |i| {
        hist.record_with_exemplar(latency(values, i), &[("trace_id", &ids[(i & 1023) as usize])]);
    });

    let hist = prometheus_client::metrics::exemplar::HistogramWithExemplars::<Vec<(String, String)>>::new(
        bounds_seconds().into_iter(),
    );
    bench_op(&mut g, "prometheus-client", move |i| {
        let labels = vec![("trace_id".to_owned(), ids[(i & 1023) as usize].clone())];
        hist.observe(latency(values, i) as f64 * 1e-9, Some(labels), None);
    });
    g.finish();
}

fn timer(c: &mut Criterion) {
    let mut g = group(c, "timer_guard");
    g.throughput(Throughput::Elements(1));

    let reg = ours();
    let hist = reg.histogram("bench_timer").unit(Unit::Nanoseconds).build().expect("valid histogram");
    bench_op(&mut g, "shardmetrics", move |_| drop(hist.start_timer()));

    let hist = prometheus::Histogram::with_opts(
        prometheus::HistogramOpts::new("bench_timer_seconds", "help").buckets(bounds_seconds()),
    )
    .expect("valid histogram");
    bench_op(&mut g, "prometheus", move |_| hist.start_timer().observe_duration());

    // Two clock reads and the floor record: the least a timer guard can cost.
    bench_op(&mut g, "floor", |_| {
        let start = Instant::now();
        floor_record(start.elapsed().as_nanos() as u64);
    });
    g.finish();
}

fn labelled_inc(c: &mut Criterion) {
    let mut g = group(c, "labelled_inc");
    g.throughput(Throughput::Elements(1));
    // Label values come from the request at run time: black-boxed so no hash is precomputed.
    const VALUES: [&str; 2] = ["/api", "200"];
    const PAIRS: [(&str, &str); 2] = [("route", "/api"), ("status", "200")];

    let reg = ours();
    let family = reg.counter("bench_route_hits_total").family(&["route", "status"]).expect("valid family");
    bench_op(&mut g, "shardmetrics", move |_| family.with(black_box(&VALUES)).inc());

    let vec =
        prometheus::IntCounterVec::new(prometheus::Opts::new("bench_route_hits_total", "help"), &["route", "status"])
            .expect("valid counter vec");
    bench_op(&mut g, "prometheus", move |_| vec.with_label_values(black_box(&VALUES)).inc());

    let family = prometheus_client::metrics::family::Family::<
        [(&'static str, &'static str); 2],
        prometheus_client::metrics::counter::Counter,
    >::default();
    bench_op(&mut g, "prometheus-client", move |_| {
        family.get_or_create(black_box(&PAIRS)).inc();
    });

    // metrics-rs resolves the key through the global recorder on every macro call; its labels
    // are `'static` literals baked into the call site (its intended fast path).
    metrics_handle();
    bench_op(&mut g, "metrics", |_| {
        metrics::counter!("bench_route_hits_total", "route" => "/api", "status" => "200").increment(1)
    });

    let counter = fast_telemetry::DynamicCounter::new(4);
    bench_op(&mut g, "fast-telemetry", move |_| counter.inc(black_box(&PAIRS)));
    g.finish();
}

// ---------------------------------------------------------------------------------------------
// Labelled look-up by label count, and the first insert of a label tuple.

/// Label names and run-time values of the `labelled_inc_<n>` groups (the first `n` of each).
const LABEL_NAMES: [&str; 3] = ["route", "status", "method"];
const LABEL_VALUES: [&str; 3] = ["/api", "200", "GET"];

/// Runs `job(iters)` on the first worker and returns the time it reports (it times itself).
fn run_job(iters: u64, job: &Job) -> Duration {
    let pool = pool();
    let done = pool.done.lock().expect("bench pool lock");
    pool.tasks[0].send((job.clone(), iters)).expect("bench worker alive");
    done.recv().expect("bench worker result")
}

/// `labelled_inc_<N>`: look-up + increment of one existing series of an `N`-label family.
fn labelled_inc_n<const N: usize>(c: &mut Criterion) {
    let mut g = group(c, &format!("labelled_inc_{N}"));
    g.throughput(Throughput::Elements(1));
    let names: [&'static str; N] = std::array::from_fn(|i| LABEL_NAMES[i]);
    let values: [&'static str; N] = std::array::from_fn(|i| LABEL_VALUES[i]);
    let pairs: [(&'static str, &'static str); N] = std::array::from_fn(|i| (LABEL_NAMES[i], LABEL_VALUES[i]));
    let metric = format!("bench_hits_{N}_total");

    let reg = ours();
    let family = reg.counter(&metric).family(&names).expect("valid family");
    bench_op(&mut g, "shardmetrics", move |_| family.with(black_box(&values)).inc());

    let vec = prometheus::IntCounterVec::new(prometheus::Opts::new(metric.clone(), "help"), &names)
        .expect("valid counter vec");
    bench_op(&mut g, "prometheus", move |_| vec.with_label_values(black_box(&values)).inc());

    let family = prometheus_client::metrics::family::Family::<
        [(&'static str, &'static str); N],
        prometheus_client::metrics::counter::Counter,
    >::default();
    bench_op(&mut g, "prometheus-client", move |_| {
        family.get_or_create(black_box(&pairs)).inc();
    });

    // metrics-rs: `'static` labels baked into the call site, as in `labelled_inc`. The macro
    // takes its labels literally, so one call site per label count.
    metrics_handle();
    match N {
        1 => bench_op(&mut g, "metrics", |_| metrics::counter!("bench_hits_1_total", "route" => "/api").increment(1)),
        2 => bench_op(&mut g, "metrics", |_| {
            metrics::counter!("bench_hits_2_total", "route" => "/api", "status" => "200").increment(1)
        }),
        _ => bench_op(&mut g, "metrics", |_| {
            metrics::counter!("bench_hits_3_total", "route" => "/api", "status" => "200", "method" => "GET")
                .increment(1)
        }),
    }

    let counter = fast_telemetry::DynamicCounter::new(4);
    bench_op(&mut g, "fast-telemetry", move |_| counter.inc(black_box(&pairs)));

    // What the increment would cost if the look-up were free.
    bench_op(&mut g, "floor", |_| floor_inc());
    g.finish();
}

fn labelled_inc_1(c: &mut Criterion) {
    labelled_inc_n::<1>(c);
}

fn labelled_inc_2(c: &mut Criterion) {
    labelled_inc_n::<2>(c);
}

fn labelled_inc_3(c: &mut Criterion) {
    labelled_inc_n::<3>(c);
}

/// Distinct label tuples inserted into one family before it is dropped and a fresh one built
/// (both untimed): bounds memory however many iterations criterion asks for, and stays under
/// every library's default cardinality cap (shardmetrics 10,000 per family).
const INSERT_CHUNK: u64 = 4_096;

/// Run-time route values for `labelled_insert`: `/api/v1/items/<i>`.
fn insert_routes() -> &'static [String] {
    static ROUTES: OnceLock<Vec<String>> = OnceLock::new();
    ROUTES.get_or_init(|| (0..INSERT_CHUNK).map(|i| format!("/api/v1/items/{i}")).collect())
}

/// One `labelled_insert` benchmark at 1 thread: `iters` inserts of a new `(route, "200")`
/// tuple (and one increment of it), in chunks of [`INSERT_CHUNK`] into a family made by
/// `fresh`; only the inserts are timed.
fn bench_insert<S: 'static>(
    group: &mut BenchmarkGroup<'_, criterion::measurement::WallTime>,
    lib: &str,
    fresh: impl Fn() -> S + Send + Sync + 'static,
    insert: impl Fn(&S, &str) + Send + Sync + 'static,
) {
    let routes = insert_routes();
    let job: Job = Arc::new(move |iters| {
        let mut total = Duration::ZERO;
        let mut left = iters;
        while left > 0 {
            let k = left.min(INSERT_CHUNK);
            let family = fresh();
            total += time_loop(k, |i| insert(&family, &routes[i as usize]));
            drop(black_box(family));
            left -= k;
        }
        total
    });
    group.bench_function(BenchmarkId::new(lib, "1t"), |b| b.iter_custom(|iters| run_job(iters, &job)));
}

fn labelled_insert(c: &mut Criterion) {
    let mut g = group(c, "labelled_insert");
    g.throughput(Throughput::Elements(1));

    bench_insert(
        &mut g,
        "shardmetrics",
        || {
            let reg = ours();
            let family = reg.counter("bench_route_hits_total").family(&["route", "status"]).expect("valid family");
            (reg, family)
        },
        |(_, family), route| family.with(&[route, "200"]).inc(),
    );

    bench_insert(
        &mut g,
        "prometheus",
        || {
            prometheus::IntCounterVec::new(
                prometheus::Opts::new("bench_route_hits_total", "help"),
                &["route", "status"],
            )
            .expect("valid counter vec")
        },
        |vec, route| vec.with_label_values(&[route, "200"]).inc(),
    );

    // A run-time label value has no `'static` lifetime, so prometheus-client's key owns it.
    type PcFamily = prometheus_client::metrics::family::Family<
        [(&'static str, String); 2],
        prometheus_client::metrics::counter::Counter,
    >;
    bench_insert(&mut g, "prometheus-client", PcFamily::default, |family, route| {
        family.get_or_create(&[("route", route.to_owned()), ("status", "200".to_owned())]).inc();
    });

    // metrics-rs: what `counter!("…", "route" => route)` does with an owned value, on a recorder
    // of our own (the global one can't be replaced, so its series could not be freed).
    bench_insert(
        &mut g,
        "metrics",
        || metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder(),
        |recorder, route| {
            use metrics::Recorder;
            static META: metrics::Metadata<'static> = metrics::Metadata::new("bench", metrics::Level::INFO, None);
            let key = metrics::Key::from_parts(
                "bench_route_hits_total",
                vec![
                    metrics::Label::new("route", route.to_owned()),
                    metrics::Label::from_static_parts("status", "200"),
                ],
            );
            recorder.register_counter(&key, &META).increment(1);
        },
    );

    bench_insert(
        &mut g,
        "fast-telemetry",
        || fast_telemetry::DynamicCounter::new(4),
        |counter, route| counter.inc(&[("route", route), ("status", "200")]),
    );
    g.finish();
}

fn snapshot_load(c: &mut Criterion) {
    let mut g = group(c, "snapshot_load");
    g.throughput(Throughput::Elements(1));

    let reg = ours();
    let counter = reg.counter("bench_counter_total").build().expect("valid counter");
    counter.inc();
    reg.flush();
    bench_op(&mut g, "shardmetrics", move |_| drop(black_box(reg.snapshot())));

    // Floors: arc-swap itself, owned (what `snapshot()` does) and guard-based (no ref-count write).
    let swap = Arc::new(arc_swap::ArcSwap::from_pointee(0u64));
    let s = swap.clone();
    bench_op(&mut g, "arc-swap-load_full", move |_| drop(black_box(s.load_full())));
    bench_op(&mut g, "arc-swap-load-guard", move |_| {
        let guard = swap.load();
        black_box(&*guard);
    });
    g.finish();
}

fn criterion() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_millis(1500))
        .sample_size(30)
        .configure_from_args()
}

criterion_group! {
    name = benches;
    config = criterion();
    targets = counter_inc, gauge_set, histogram_record, histogram_exemplar, timer, labelled_inc, labelled_inc_1, labelled_inc_2,
        labelled_inc_3, labelled_insert, snapshot_load
}
criterion_main!(benches);
