//! Everything downstream of the hot path: the aggregator tick, `snapshot()`, the Prometheus
//! text render beside the peers' renders, and per-thread memory per series.
//!
//! One bench over ~700 lines: every stage downstream of recording, each beside the peers.
//!
//! * `flush/…`: one `Registry::flush()` (merge every shard + publish) over 10,000 counter
//!   series written by 2 threads, and over 1,000 histograms written by 2 threads with values
//!   spanning 1 µs–100 ms.
//! * `snapshot/…`: `Registry::snapshot()` on the 10,000-series registry (an owned `Arc`).
//! * `render_10k_counters/…`: Prometheus text for 10,000 counter series (10 names × 1,000
//!   label values). Throughput is in series, so criterion's element rate is series/s; the
//!   ns/series figure is time / 10,000. Peers are rendered the way their scrape handler does:
//!   prometheus `gather()` + `TextEncoder`, prometheus-client `encode`,
//!   metrics-exporter-prometheus `PrometheusHandle::render`.
//! * Memory (bytes per series per thread from `Registry::shard_memory_bytes()`) and the
//!   histogram quantile error are printed as a table before the timings: criterion measures
//!   time only.
//!
//!
//! Added for the plots (ids `<group>/<function>/<parameter>`):
//!
//! * `tick_counters/<t>thr/<n>`: one `flush()` over `n` counter series (10 families × n/10
//!   label values; n = 1,000, 10,000, 100,000) with `t` = 1, 2, 8 writer threads alive that
//!   have each recorded into every series (one shard per thread). Before every timed flush the
//!   writers increment every series once more, untimed, so each tick merges, diffs and
//!   publishes a change in every series (the worst case; `flush/…` above is the no-change
//!   case). Throughput is in series. The registries have no windows (see `tick_registry`).
//! * `tick_histograms/<t>thr/<n>`: the same for n = 1,000 and 10,000 histograms, values
//!   spanning 1 µs–100 ms (~5 KB per series per thread; 10,000 × 8 threads ≈ 400 MB); and
//!   `<t>thr-idle/<n>`, the same histograms with no record between ticks (each tick then
//!   reuses the last merge of every histogram).
//! * `publish/merge/<n>` and `publish/visible/<n>`: of one such flush at 2 threads, the merge
//!   alone (`Snapshot::tick_duration`, wall) and the time until an observer, run right after
//!   the arc-swap store, sees the new snapshot; the difference is the publish.
//! * `snapshot_load_contended/<lib>`: `snapshot()` while one other thread calls it in a loop,
//!   beside arc-swap's `load_full` under the same contention.
//! * `render_histograms/<format>/1000` (feature `protobuf`): 1,000 histograms in every
//!   format, ours beside prometheus-client's native-histogram protobuf encoder.
//! * `render_prometheus`, `render_openmetrics`, `render_json` `/<lib>/<n>`: text renders of
//!   n = 100, 10,000, 100,000 counter series (10 realistic families × n/10 label values),
//!   throughput in series. Peers as in `render_10k_counters`; prometheus-client's only text
//!   format is OpenMetrics, so it appears in both text groups; the prometheus crate has no
//!   OpenMetrics encoder and metrics-exporter-prometheus none either; no peer renders JSON.
//!
//! Timers of the added groups honour `SHARDMETRICS_BENCH_CLOCK=cpu` like `hot_path.rs` (the
//! shared clock in `benches/common/mod.rs`).
//!
//! Run: `cargo bench --bench pipeline`; smoke test: `cargo bench --bench pipeline -- --test`.

mod common;

use std::{
    hint::black_box,
    sync::{
        atomic::{AtomicBool, Ordering},
        mpsc, Arc, Barrier, Mutex, OnceLock,
    },
    thread,
    time::Duration,
};

use common::time_loop;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use metrics::Recorder;
use shardmetrics::{Counter, Histogram, Registry, Unit};

const NAMES: usize = 10;
const PER_NAME: usize = 1_000;
const SERIES: usize = NAMES * PER_NAME;
const HISTOGRAMS: usize = 1_000;
const WRITERS: usize = 2;

fn name(n: usize) -> String {
    format!("bench_requests_{n}_total")
}

/// Latencies in ns, log-uniform over 1 µs–100 ms (fixed-seed xorshift, same every run).
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

/// 10,000 counter series, each incremented by `WRITERS` threads (`id + 1` times per thread).
fn counter_registry() -> Registry {
    let reg = Registry::builder().manual().build();
    let counters: Vec<Counter> = (0..SERIES)
        .map(|i| {
            reg.counter(&name(i / PER_NAME))
                .help("Requests served")
                .label("id", &(i % PER_NAME).to_string())
                .build()
                .expect("valid counter")
        })
        .collect();
    // Both writers hold their shard until both are done, so there are exactly 2 shards (a
    // writer that exited first would hand its shard to the next).
    let done = Barrier::new(WRITERS);
    thread::scope(|s| {
        for _ in 0..WRITERS {
            s.spawn(|| {
                for (i, c) in counters.iter().enumerate() {
                    c.add(i as u64 + 1);
                }
                done.wait();
            });
        }
    });
    reg
}

/// 1,000 histograms, each fed the 1,024 latencies by each of `WRITERS` threads.
fn histogram_registry(values: &[u64]) -> Registry {
    let reg = Registry::builder().manual().build();
    let hists: Vec<Histogram> = (0..HISTOGRAMS)
        .map(|i| {
            reg.histogram("bench_latency")
                .unit(Unit::Nanoseconds)
                .label("id", &i.to_string())
                .build()
                .expect("valid histogram")
        })
        .collect();
    let done = Barrier::new(WRITERS);
    thread::scope(|s| {
        for _ in 0..WRITERS {
            s.spawn(|| {
                for h in &hists {
                    for &v in values {
                        h.record(v);
                    }
                }
                done.wait();
            });
        }
    });
    reg
}

/// Prints bytes per series per thread and the quantile error of the merged histograms, and
/// checks the totals so a broken merge cannot print plausible numbers.
fn memory_report(counters: &Registry, hists: &Registry, values: &[u64]) {
    let snap = counters.flush();
    let expected: u64 = (1..=SERIES as u64).map(|n| n * WRITERS as u64).sum();
    let got: u64 = (0..NAMES)
        .flat_map(|n| snap.family(&name(n)).iter())
        .map(|s| match s.value() {
            shardmetrics::series::Value::Counter(c) => c.total,
            _ => 0,
        })
        .sum();
    assert_eq!(got, expected, "10,000-series flush lost or doubled increments");

    assert_eq!(counters.shard_count(), WRITERS);
    assert_eq!(hists.shard_count(), WRITERS);
    let counter_bytes = counters.shard_memory_bytes();
    let counter_shards = counters.shard_count();
    let hist_bytes = hists.shard_memory_bytes();
    let hist_shards = hists.shard_count();

    let snap = hists.flush();
    let h = snap.histogram("bench_latency", &[("id", "0")]).expect("histogram 0 published");
    assert_eq!(h.count(), (values.len() * WRITERS) as u64);
    let mut sorted = values.to_vec();
    sorted.sort_unstable();

    println!();
    println!("memory (Registry::shard_memory_bytes, all shards; goal: counter <= 16 B, histogram <= 8 KiB)");
    println!("| series | kind | threads | shard bytes | bytes / series / thread |");
    println!("|---:|---|---:|---:|---:|");
    let per = |bytes: usize, series: usize, shards: usize| bytes as f64 / (series * shards) as f64;
    println!(
        "| {SERIES} | counter | {counter_shards} | {counter_bytes} | {:.1} |",
        per(counter_bytes, SERIES, counter_shards)
    );
    println!(
        "| {HISTOGRAMS} | histogram (1 µs–100 ms, precision 5) | {hist_shards} | {hist_bytes} | {:.0} |",
        per(hist_bytes, HISTOGRAMS, hist_shards)
    );
    println!();
    println!("histogram quantile error vs exact (values log-uniform 1 µs–100 ms; goal <= 2 %)");
    println!("| q | exact ns | reported ns | relative error |");
    println!("|---:|---:|---:|---:|");
    for q in [0.5, 0.9, 0.99, 0.999] {
        // Exact: the value at rank ceil(q·n) (each value appears WRITERS times, so the
        // distribution equals that of `values`).
        let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
        let exact = sorted[rank - 1];
        let got = h.quantile(q).expect("non-empty histogram");
        let err = (got as f64 - exact as f64).abs() / exact as f64;
        println!("| {q} | {exact} | {got} | {:.2} % |", err * 100.0);
    }
    println!();
}

fn pipeline(c: &mut Criterion) {
    let values = latencies();
    let counters = counter_registry();
    let hists = histogram_registry(&values);
    memory_report(&counters, &hists, &values);

    let mut g = c.benchmark_group("flush");
    g.throughput(Throughput::Elements(SERIES as u64));
    g.bench_function("10k_counters_2_threads", |b| b.iter(|| black_box(counters.flush())));
    g.throughput(Throughput::Elements(HISTOGRAMS as u64));
    g.bench_function("1k_histograms_2_threads", |b| b.iter(|| black_box(hists.flush())));
    g.finish();

    let mut g = c.benchmark_group("snapshot");
    g.throughput(Throughput::Elements(1));
    g.bench_function("10k_series", |b| b.iter(|| black_box(counters.snapshot())));
    g.finish();

    let mut g = c.benchmark_group("render_10k_counters");
    g.throughput(Throughput::Elements(SERIES as u64));

    let snap = counters.flush();
    g.bench_function("shardmetrics", |b| b.iter(|| shardmetrics::export::prometheus::render(black_box(&snap))));
    // What a scrape handler does when the aggregator has already ticked: load + render.
    g.bench_function("shardmetrics-snapshot+render", |b| {
        b.iter(|| shardmetrics::export::prometheus::render(&counters.snapshot()))
    });

    let preg = prometheus::Registry::new();
    for n in 0..NAMES {
        let vec = prometheus::IntCounterVec::new(prometheus::Opts::new(name(n), "Requests served"), &["id"])
            .expect("valid counter vec");
        for i in 0..PER_NAME {
            vec.with_label_values(&[i.to_string().as_str()]).inc_by((n * PER_NAME + i) as u64 + 1);
        }
        preg.register(Box::new(vec)).expect("unique name");
    }
    let encoder = prometheus::TextEncoder::new();
    let text = encoder.encode_to_string(&preg.gather()).expect("encodes");
    assert_eq!(text.lines().filter(|l| !l.starts_with('#')).count(), SERIES);
    g.bench_function("prometheus", |b| b.iter(|| encoder.encode_to_string(&preg.gather()).expect("encodes")));

    type PcFamily =
        prometheus_client::metrics::family::Family<Vec<(String, String)>, prometheus_client::metrics::counter::Counter>;
    let mut pcreg = prometheus_client::registry::Registry::default();
    for n in 0..NAMES {
        let family = PcFamily::default();
        for i in 0..PER_NAME {
            family.get_or_create(&vec![("id".to_owned(), i.to_string())]).inc_by((n * PER_NAME + i) as u64 + 1);
        }
        // prometheus-client appends `_total` to counters itself.
        pcreg.register(format!("bench_requests_{n}"), "Requests served", family);
    }
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &pcreg).expect("encodes");
    assert_eq!(text.lines().filter(|l| !l.starts_with('#')).count(), SERIES);
    g.bench_function("prometheus-client", |b| {
        b.iter(|| {
            let mut out = String::new();
            prometheus_client::encoding::text::encode(&mut out, &pcreg).expect("encodes");
            out
        })
    });

    let recorder = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
    let meta = metrics::Metadata::new("bench", metrics::Level::INFO, None);
    for n in 0..NAMES {
        for i in 0..PER_NAME {
            let key = metrics::Key::from_parts(name(n), vec![metrics::Label::new("id", i.to_string())]);
            recorder.register_counter(&key, &meta).increment((n * PER_NAME + i) as u64 + 1);
        }
    }
    let handle = recorder.handle();
    let text = handle.render();
    assert_eq!(text.lines().filter(|l| !l.starts_with('#') && !l.is_empty()).count(), SERIES);
    g.bench_function("metrics-exporter-prometheus", |b| b.iter(|| handle.render()));

    let text = shardmetrics::export::prometheus::render(&snap);
    assert_eq!(text.lines().filter(|l| l.starts_with("bench_requests_")).count(), SERIES);
    g.finish();
}

// ---------------------------------------------------------------------------------------------
// The tick at scale: `tick_counters`, `tick_histograms`, `publish`, `snapshot_load_contended`.

/// Thread counts alive and recording during the tick benches.
const TICK_THREADS: [usize; 3] = [1, 2, 8];
const TICK_COUNTER_SERIES: [usize; 3] = [1_000, 10_000, 100_000];
/// 8 threads × 10,000 histograms × ~5 KB ≈ 400 MB: every combination fits under 4 GiB, so
/// none is skipped. 100,000 histograms (4 GB at 8 threads) is left out.
const TICK_HISTOGRAM_SERIES: [usize; 2] = [1_000, 10_000];

/// A registry for `n` series in 10 families, caps raised to fit. No windows: a bench flushes
/// every few milliseconds, so default windows (up to 5 min, 4,096 ticks of history) would keep
/// thousands of per-tick deltas alive; with none, each tick pushes one delta and drops the
/// previous one, the same steady-state work as a 1 s aggregator with its history full.
fn tick_registry(n: usize) -> Registry {
    Registry::builder().manual().windows(&[]).max_series(2 * n + 100).max_series_per_family(n / NAMES + 10).build()
}

/// `t` threads that stay alive, each running `record(round)` on command and acknowledging it:
/// their shards stay owned and full while the aggregator merges.
struct Writers {
    go: Vec<mpsc::Sender<u64>>,
    ack: mpsc::Receiver<()>,
    joins: Vec<thread::JoinHandle<()>>,
    round: u64,
}

impl Writers {
    /// Starts `t` writers and runs round 0 (every writer records into every series).
    fn start(t: usize, record: Arc<dyn Fn(u64) + Send + Sync>) -> Writers {
        let (ack_tx, ack) = mpsc::channel();
        let (go, joins) = (0..t)
            .map(|w| {
                let (tx, rx) = mpsc::channel::<u64>();
                let (ack_tx, record) = (ack_tx.clone(), record.clone());
                let join = thread::Builder::new()
                    .name(format!("bench-writer-{w}"))
                    .spawn(move || {
                        for round in rx {
                            record(round);
                            if ack_tx.send(()).is_err() {
                                return;
                            }
                        }
                    })
                    .expect("spawn bench writer");
                (tx, join)
            })
            .unzip();
        let mut writers = Writers { go, ack, joins, round: 0 };
        writers.run_round();
        writers
    }

    /// Every writer records once more (untimed by the callers), so the next tick sees every
    /// series changed.
    fn run_round(&mut self) {
        for tx in &self.go {
            tx.send(self.round).expect("bench writer alive");
        }
        for _ in &self.go {
            self.ack.recv().expect("bench writer acknowledged");
        }
        self.round += 1;
    }
}

impl Drop for Writers {
    fn drop(&mut self) {
        self.go.clear();
        for j in self.joins.drain(..) {
            j.join().expect("bench writer exited cleanly");
        }
    }
}

/// `n` counters in 10 families of `n / 10` (`id` label), as owned handles.
fn tick_counters_fixture(reg: &Registry, n: usize) -> Arc<Vec<Counter>> {
    let per = n / NAMES;
    let families: Vec<_> = (0..NAMES)
        .map(|f| reg.counter(&name(f)).help("Requests served").family(&["id"]).expect("valid family"))
        .collect();
    Arc::new((0..n).map(|i| families[i / per].get(&[&(i % per).to_string()]).expect("under the caps")).collect())
}

fn tick_histograms_fixture(reg: &Registry, n: usize) -> Arc<Vec<Histogram>> {
    let per = n / NAMES;
    let families: Vec<_> = (0..NAMES)
        .map(|f| {
            reg.histogram(&format!("bench_latency_{f}")).unit(Unit::Nanoseconds).family(&["id"]).expect("valid family")
        })
        .collect();
    Arc::new((0..n).map(|i| families[i / per].get(&[&(i % per).to_string()]).expect("under the caps")).collect())
}

/// Times `iters` flushes, each after an untimed round in which every writer touched every series.
fn timed_flushes(reg: &Registry, writers: &mut Writers, iters: u64) -> Duration {
    let mut total = Duration::ZERO;
    for _ in 0..iters {
        writers.run_round();
        let start = common::now();
        black_box(reg.flush());
        total += common::now() - start;
    }
    total
}

fn tick_counters(c: &mut Criterion) {
    let mut g = c.benchmark_group("tick_counters");
    g.sample_size(10);
    for n in TICK_COUNTER_SERIES {
        g.throughput(Throughput::Elements(n as u64));
        let reg = tick_registry(n);
        let counters = tick_counters_fixture(&reg, n);
        // Increasing thread counts on one registry: the first writers of each step re-use the
        // shards the previous step's writers released, so there are exactly `t` shards.
        for t in TICK_THREADS {
            let cs = counters.clone();
            let mut writers = Writers::start(t, Arc::new(move |_| cs.iter().for_each(Counter::inc)));
            assert_eq!(reg.shard_count(), t, "one shard per live writer");
            g.bench_function(BenchmarkId::new(format!("{t}thr"), n), |b| {
                b.iter_custom(|iters| timed_flushes(&reg, &mut writers, iters))
            });
            let rounds = writers.round;
            drop(writers);
            let snap = reg.flush();
            assert_eq!(snap.counter(&name(0), &[("id", "0")]).map(|v| v > 0), Some(true));
            assert!(rounds >= 1, "the set-up round (timed rounds follow unless a filter skipped this id)");
        }
    }
    g.finish();
}

fn tick_histograms(c: &mut Criterion) {
    let mut g = c.benchmark_group("tick_histograms");
    g.sample_size(10);
    let values = latencies();
    // Round 0 spreads 64 values over 1 µs–100 ms into every histogram (every bucket group a
    // real latency histogram touches is allocated); later rounds add one value each.
    let spread: Arc<Vec<u64>> = Arc::new(values.iter().step_by(16).copied().collect());
    for n in TICK_HISTOGRAM_SERIES {
        g.throughput(Throughput::Elements(n as u64));
        let reg = tick_registry(n);
        let hists = tick_histograms_fixture(&reg, n);
        for t in TICK_THREADS {
            let (hs, values) = (hists.clone(), spread.clone());
            let record = move |round: u64| {
                if round == 0 {
                    hs.iter().for_each(|h| values.iter().for_each(|&v| h.record(v)));
                } else {
                    let v = values[round as usize % values.len()];
                    hs.iter().for_each(|h| h.record(v));
                }
            };
            let mut writers = Writers::start(t, Arc::new(record));
            assert_eq!(reg.shard_count(), t, "one shard per live writer");
            g.bench_function(BenchmarkId::new(format!("{t}thr"), n), |b| {
                b.iter_custom(|iters| timed_flushes(&reg, &mut writers, iters))
            });
            // The same histograms left idle: every tick finds the slot counts unchanged and
            // reuses the last merge (one count load per shard per histogram).
            reg.flush();
            g.bench_function(BenchmarkId::new(format!("{t}thr-idle"), n), |b| {
                b.iter_custom(|iters| {
                    time_loop(iters, |_| {
                        black_box(reg.flush());
                    })
                })
            });
            drop(writers);
            let snap = reg.flush();
            let h = snap.histogram("bench_latency_0", &[("id", "0")]).expect("histogram published");
            assert!(h.count() >= spread.len() as u64, "round 0 merged");
        }
    }
    g.finish();
}

/// `publish/merge/<n>`: the merge alone, as the core's own (wall) clock reports it in
/// `Snapshot::tick_duration`. `publish/visible/<n>`: from the `flush()` call to the moment an
/// observer (run right after the arc-swap store) sees the new snapshot, i.e. merge + publish.
/// 2 writers alive, every series changed before each flush.
fn publish(c: &mut Criterion) {
    let mut g = c.benchmark_group("publish");
    g.sample_size(10);
    for n in [10_000, 100_000] {
        g.throughput(Throughput::Elements(n as u64));
        let reg = tick_registry(n);
        let counters = tick_counters_fixture(&reg, n);
        let seen: Arc<Mutex<Option<(u64, Duration)>>> = Arc::new(Mutex::new(None));
        let slot = seen.clone();
        reg.add_observer(move |s: &Arc<shardmetrics::Snapshot>| {
            *slot.lock().expect("observer slot") = Some((s.seq(), common::now()));
        });
        let cs = counters.clone();
        let mut writers = Writers::start(2, Arc::new(move |_| cs.iter().for_each(Counter::inc)));
        g.bench_function(BenchmarkId::new("merge", n), |b| {
            b.iter_custom(|iters| {
                (0..iters)
                    .map(|_| {
                        writers.run_round();
                        reg.flush().tick_duration()
                    })
                    .sum()
            })
        });
        g.bench_function(BenchmarkId::new("visible", n), |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    writers.run_round();
                    let start = common::now();
                    let seq = reg.flush().seq();
                    let (seen_seq, at) = seen.lock().expect("observer slot").expect("observer ran");
                    assert_eq!(seen_seq, seq, "the observer saw this flush's snapshot");
                    total += at - start;
                }
                total
            })
        });
    }
    g.finish();
}

/// `snapshot()` on a 10,000-series registry while one other thread calls `snapshot()` in a loop
/// (both touch the arc-swap and the `Arc`'s reference count), beside arc-swap's `load_full`
/// under the same contention.
fn snapshot_load_contended(c: &mut Criterion) {
    let mut g = c.benchmark_group("snapshot_load_contended");
    g.throughput(Throughput::Elements(1));
    let reg = counter_registry();
    reg.flush();
    let swap = Arc::new(arc_swap::ArcSwap::from_pointee(0u64));

    let contend = |load: &(dyn Fn() + Sync), g: &mut criterion::BenchmarkGroup<'_, _>, id: &str| {
        let stop = AtomicBool::new(false);
        thread::scope(|s| {
            s.spawn(|| {
                while !stop.load(Ordering::Relaxed) {
                    load();
                }
            });
            g.bench_function(id, |b| b.iter_custom(|iters| time_loop(iters, |_| load())));
            stop.store(true, Ordering::Relaxed);
        });
    };
    contend(&|| drop(black_box(reg.snapshot())), &mut g, "shardmetrics");
    contend(&|| drop(black_box(swap.load_full())), &mut g, "arc-swap-load_full");
    g.finish();
}

// ---------------------------------------------------------------------------------------------
// Renders at 100, 10,000 and 100,000 counter series: `render_prometheus`,
// `render_openmetrics`, `render_json`.

const RENDER_SERIES: [usize; 3] = [100, 10_000, 100_000];

/// Ten counter families with realistic names, help, label name and value prefix.
const RENDER_FAMILIES: [(&str, &str, &str, &str); NAMES] = [
    ("http_requests_total", "HTTP requests served.", "route", "/api/v1/users/"),
    ("http_response_bytes_total", "Bytes sent in HTTP response bodies.", "route", "/api/v1/orders/"),
    ("db_queries_total", "Database queries executed.", "statement", "select_order_by_id_"),
    ("cache_hits_total", "Cache look-ups that found the key.", "keyspace", "user:"),
    ("cache_misses_total", "Cache look-ups that missed.", "keyspace", "session:"),
    ("rpc_client_calls_total", "Outgoing RPC calls.", "method", "inventory.Inventory/Reserve"),
    ("queue_messages_published_total", "Messages published.", "topic", "orders.created."),
    ("queue_messages_consumed_total", "Messages consumed.", "topic", "payments.settled."),
    ("tcp_connections_accepted_total", "Connections accepted.", "peer", "10.0.3."),
    ("errors_total", "Errors by kind.", "kind", "upstream_timeout_"),
];

/// Label value `i` of family `f`, and the series' counter value.
fn render_label(f: usize, i: usize) -> String {
    format!("{}{i}", RENDER_FAMILIES[f].3)
}

fn render_value(f: usize, i: usize) -> u64 {
    (i as u64 * 7_919 + f as u64 * 104_729) % 50_000_000 + 1
}

/// One `n`-series data set in every library that renders text.
struct RenderFixture {
    n: usize,
    snap: Arc<shardmetrics::Snapshot>,
    prometheus: prometheus::Registry,
    prometheus_client: prometheus_client::registry::Registry,
    metrics: metrics_exporter_prometheus::PrometheusHandle,
}

fn sample_lines(text: &str) -> usize {
    text.lines().filter(|l| !l.starts_with('#') && !l.is_empty()).count()
}

impl RenderFixture {
    fn new(n: usize) -> RenderFixture {
        let per = n / NAMES;
        let reg = Registry::builder().manual().max_series(2 * n + 100).max_series_per_family(per + 10).build();
        for (f, &(name, help, label, _)) in RENDER_FAMILIES.iter().enumerate() {
            let family = reg.counter(name).help(help).family(&[label]).expect("valid family");
            (0..per).for_each(|i| family.with(&[&render_label(f, i)]).add(render_value(f, i)));
        }
        let snap = reg.flush();

        let prometheus = prometheus::Registry::new();
        for (f, &(name, help, label, _)) in RENDER_FAMILIES.iter().enumerate() {
            let vec = prometheus::IntCounterVec::new(prometheus::Opts::new(name, help), &[label]).expect("valid vec");
            (0..per).for_each(|i| vec.with_label_values(&[render_label(f, i).as_str()]).inc_by(render_value(f, i)));
            prometheus.register(Box::new(vec)).expect("unique name");
        }

        type PcFamily = prometheus_client::metrics::family::Family<
            [(&'static str, String); 1],
            prometheus_client::metrics::counter::Counter,
        >;
        let mut prometheus_client = prometheus_client::registry::Registry::default();
        for (f, &(name, help, label, _)) in RENDER_FAMILIES.iter().enumerate() {
            let family = PcFamily::default();
            (0..per).for_each(|i| {
                family.get_or_create(&[(label, render_label(f, i))]).inc_by(render_value(f, i));
            });
            // prometheus-client appends `_total` to counters itself.
            prometheus_client.register(name.trim_end_matches("_total"), help, family);
        }

        let recorder = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
        let meta = metrics::Metadata::new("bench", metrics::Level::INFO, None);
        for (f, &(name, help, label, _)) in RENDER_FAMILIES.iter().enumerate() {
            recorder.describe_counter(name.into(), None, help.into());
            for i in 0..per {
                let key = metrics::Key::from_parts(name, vec![metrics::Label::new(label, render_label(f, i))]);
                recorder.register_counter(&key, &meta).increment(render_value(f, i));
            }
        }
        let fixture = RenderFixture { n, snap, prometheus, prometheus_client, metrics: recorder.handle() };

        // Every library renders every series (a render that dropped series would look fast).
        let ours = shardmetrics::export::prometheus::render(&fixture.snap);
        assert_eq!(ours.lines().filter(|l| RENDER_FAMILIES.iter().any(|f| l.starts_with(f.0))).count(), n);
        assert_eq!(sample_lines(&fixture.render_prometheus_crate()), n);
        assert_eq!(sample_lines(&fixture.render_prometheus_client()), n);
        assert_eq!(sample_lines(&fixture.metrics.render()), n);
        fixture
    }

    fn render_prometheus_crate(&self) -> String {
        prometheus::TextEncoder::new().encode_to_string(&self.prometheus.gather()).expect("encodes")
    }

    fn render_prometheus_client(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.prometheus_client).expect("encodes");
        out
    }
}

fn render_fixtures() -> &'static [RenderFixture] {
    static FIXTURES: OnceLock<Vec<RenderFixture>> = OnceLock::new();
    FIXTURES.get_or_init(|| RENDER_SERIES.iter().map(|&n| RenderFixture::new(n)).collect())
}

fn render_group<'c>(
    c: &'c mut Criterion,
    group: &str,
) -> criterion::BenchmarkGroup<'c, criterion::measurement::WallTime> {
    let mut g = c.benchmark_group(group);
    g.sample_size(10);
    g.measurement_time(Duration::from_secs(3));
    g
}

fn render_prometheus(c: &mut Criterion) {
    let mut g = render_group(c, "render_prometheus");
    for fx in render_fixtures() {
        let n = fx.n;
        g.throughput(Throughput::Elements(n as u64));
        g.bench_function(BenchmarkId::new("shardmetrics", n), |b| {
            b.iter(|| shardmetrics::export::prometheus::render(black_box(&fx.snap)))
        });
        // What its scrape handler does: gather + TextEncoder.
        g.bench_function(BenchmarkId::new("prometheus", n), |b| b.iter(|| fx.render_prometheus_crate()));
        // prometheus-client encodes OpenMetrics text only; it is the closest equivalent it has
        // to the Prometheus text format, so it is listed here too (and in render_openmetrics).
        g.bench_function(BenchmarkId::new("prometheus-client", n), |b| b.iter(|| fx.render_prometheus_client()));
        g.bench_function(BenchmarkId::new("metrics-exporter-prometheus", n), |b| b.iter(|| fx.metrics.render()));
    }
    g.finish();
}

/// OpenMetrics text. The prometheus crate has no OpenMetrics encoder and
/// metrics-exporter-prometheus renders the Prometheus format only: both are absent.
fn render_openmetrics(c: &mut Criterion) {
    let mut g = render_group(c, "render_openmetrics");
    for fx in render_fixtures() {
        let n = fx.n;
        g.throughput(Throughput::Elements(n as u64));
        g.bench_function(BenchmarkId::new("shardmetrics", n), |b| {
            b.iter(|| shardmetrics::export::openmetrics::render(black_box(&fx.snap)))
        });
        g.bench_function(BenchmarkId::new("prometheus-client", n), |b| b.iter(|| fx.render_prometheus_client()));
    }
    g.finish();
}

/// JSON: shardmetrics only — none of the peers has a JSON render.
#[cfg(feature = "json")]
fn render_json(c: &mut Criterion) {
    let mut g = render_group(c, "render_json");
    for fx in render_fixtures() {
        let n = fx.n;
        g.throughput(Throughput::Elements(n as u64));
        g.bench_function(BenchmarkId::new("shardmetrics", n), |b| {
            b.iter(|| shardmetrics::export::json::render(black_box(&fx.snap)))
        });
    }
    g.finish();
}

#[cfg(not(feature = "json"))]
fn render_json(_: &mut Criterion) {}

fn criterion() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(20)
        .configure_from_args()
}

/// `render_histograms/<format>/1000`: the 1,000 histograms of `histogram_registry` (ns, exported
/// in seconds, 1,024 latencies × 2 threads each) in every format, throughput in series: the
/// Prometheus text (classic `le` buckets), OpenMetrics, our protobuf (classic buckets plus the
/// native ones), and prometheus-client's protobuf encoder (`encode_to_vec`) over 1,000 of its
/// native histograms (schema 5) fed the same values — the encode a scrape of native histograms
/// costs each library.
#[cfg(feature = "protobuf")]
fn render_histograms(c: &mut Criterion) {
    use prometheus_client::metrics::histogram::{Histogram as PcHistogram, NativeHistogramConfig};
    let values = latencies();
    let reg = histogram_registry(&values);
    let snap = reg.flush();
    let mut g = c.benchmark_group("render_histograms");
    g.throughput(Throughput::Elements(HISTOGRAMS as u64));
    let n = HISTOGRAMS;
    g.bench_with_input(BenchmarkId::new("shardmetrics-prometheus-text", n), &snap, |b, s| {
        b.iter(|| shardmetrics::export::prometheus::render(black_box(s)))
    });
    g.bench_with_input(BenchmarkId::new("shardmetrics-openmetrics", n), &snap, |b, s| {
        b.iter(|| shardmetrics::export::openmetrics::render(black_box(s)))
    });
    g.bench_with_input(BenchmarkId::new("shardmetrics-protobuf", n), &snap, |b, s| {
        b.iter(|| shardmetrics::export::protobuf::render(black_box(s)))
    });
    let mut registry = prometheus_client::registry::Registry::default();
    let family =
        prometheus_client::metrics::family::Family::<Vec<(String, String)>, PcHistogram, _>::new_with_constructor(
            || PcHistogram::new_native(NativeHistogramConfig::with_schema(5)),
        );
    registry.register("bench_latency_seconds", "Latency", family.clone());
    for i in 0..HISTOGRAMS {
        let h = family.get_or_create(&vec![("id".to_owned(), i.to_string())]);
        for _ in 0..WRITERS {
            for &v in &values {
                h.observe(v as f64 * 1e-9);
            }
        }
    }
    g.bench_function(BenchmarkId::new("prometheus-client-native-protobuf", n), |b| {
        b.iter(|| prometheus_client::encoding::prometheus_protobuf::encode_to_vec(black_box(&registry)).unwrap())
    });
    g.finish();
}

#[cfg(not(feature = "protobuf"))]
fn render_histograms(_: &mut Criterion) {}

criterion_group! {
    name = benches;
    config = criterion();
    targets = pipeline, tick_counters, tick_histograms, publish, snapshot_load_contended, render_prometheus,
        render_openmetrics, render_json, render_histograms
}
criterion_main!(benches);
