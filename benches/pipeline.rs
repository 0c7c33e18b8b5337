//! Everything downstream of the hot path: the aggregator tick, `snapshot()`, the Prometheus
//! text render beside the peers' renders, and per-thread memory per series.
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
//! Run: `cargo bench --bench pipeline`; smoke test: `cargo bench --bench pipeline -- --test`.

use std::{hint::black_box, sync::Barrier, thread, time::Duration};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
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
            shardmetrics::Value::Counter(c) => c.total,
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

fn criterion() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(20)
        .configure_from_args()
}

criterion_group! {
    name = benches;
    config = criterion();
    targets = pipeline
}
criterion_main!(benches);
