//! The `metrics` facade path under shardmetrics' recorder beside metrics-exporter-prometheus's
//! own recorder, same macros, same run.
//!
//! * `handle`: a handle from the macro kept and reused (`let c = counter!("x"); c.increment(1)`).
//! * `macro`: the macro on every call (`counter!("x").increment(1)`): recorder look-up of the
//!   key each time.
//! * `macro_labels`: the same with two static labels.
//! * `shardmetrics-native/handle`: the floor, a native handle without the facade.
//!
//! Multi-thread benches start the threads on a barrier, each thread times its own loop, and the
//! slowest thread's time is reported, so the figure is ns per operation per thread. Loops are
//! timed with the shared bench clock (`benches/common/mod.rs`): wall time, or each thread's CPU
//! time under `SHARDMETRICS_BENCH_CLOCK=cpu` as in `hot_path.rs`. The exporter keeps histogram
//! samples until upkeep; `run_upkeep` runs between samples, outside the timed region.
//!
//! `cargo bench --features metrics-facade --bench facade`

mod common;

use std::{hint::black_box, sync::Barrier, time::Duration};

use common::time_loop;
use criterion::{criterion_group, criterion_main, measurement::WallTime, BenchmarkGroup, Criterion, Throughput};
use metrics::{counter, describe_histogram, histogram};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusRecorder};
use shardmetrics::{facade::Recorder, Registry, Unit};

/// Latencies from 1 µs to 100 ms, log-spaced, in seconds.
fn latencies() -> Vec<f64> {
    (0..4096).map(|i| 1e-6 * 1e5f64.powf(f64::from(i) / 4095.0)).collect()
}

/// On each of `threads` threads under `recorder`: `setup()` (untimed, e.g. fetching a
/// handle), then `op(black_box(i))` for `i` in `0..iters`, timed. Returns the slowest thread's
/// time.
fn run_threads<S, O>(recorder: &(dyn metrics::Recorder + Sync), threads: usize, iters: u64, setup: &S) -> Duration
where
    S: Fn() -> O + Sync,
    O: Fn(u64),
{
    let body = || time_loop(iters, setup());
    if threads == 1 {
        return metrics::with_local_recorder(recorder, body);
    }
    let barrier = Barrier::new(threads);
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                s.spawn(|| {
                    // The local recorder is per thread (`Recorder`s are `Sync`).
                    metrics::with_local_recorder(recorder, || {
                        let op = setup();
                        barrier.wait();
                        time_loop(iters, op)
                    })
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).max().unwrap()
    })
}

struct Peers {
    ours: Recorder,
    registry: Registry,
    theirs: PrometheusRecorder,
}

impl Peers {
    fn new() -> Peers {
        let registry = Registry::builder().build();
        let ours = Recorder::new(registry.clone());
        let theirs = PrometheusBuilder::new().build_recorder();
        for r in [&ours as &dyn metrics::Recorder, &theirs] {
            metrics::with_local_recorder(r, || {
                describe_histogram!("bench_latency", metrics::Unit::Seconds, "bench");
            });
        }
        Peers { ours, registry, theirs }
    }

    fn each(&self) -> [(&'static str, &(dyn metrics::Recorder + Sync)); 2] {
        [("shardmetrics", &self.ours), ("metrics-exporter-prometheus", &self.theirs)]
    }

    fn upkeep(&self) {
        self.theirs.handle().run_upkeep();
    }
}

fn bench<S, O>(g: &mut BenchmarkGroup<'_, WallTime>, peers: &Peers, threads: usize, name: &str, setup: S)
where
    S: Fn() -> O + Sync,
    O: Fn(u64),
{
    for (peer, rec) in peers.each() {
        g.bench_function(format!("{peer}/{name}"), |b| {
            b.iter_custom(|iters| {
                let t = run_threads(rec, threads, iters, &setup);
                peers.upkeep();
                t
            })
        });
    }
}

fn facade(c: &mut Criterion) {
    let peers = Peers::new();
    let lat = latencies();
    let lat = &lat;
    for threads in [1usize, 2] {
        let mut g = c.benchmark_group(format!("facade_counter/{threads}thr"));
        g.throughput(Throughput::Elements(1))
            .warm_up_time(Duration::from_secs(1))
            .measurement_time(Duration::from_secs(2));
        bench(&mut g, &peers, threads, "handle", || {
            let c = counter!("bench_handle");
            move |_| c.increment(black_box(1))
        });
        bench(&mut g, &peers, threads, "macro", || |_| counter!("bench_macro").increment(black_box(1)));
        // Floor: the native handle, no facade.
        let native = peers.registry.counter("bench_native").build().unwrap();
        g.bench_function("shardmetrics-native/handle", |b| {
            b.iter_custom(|iters| run_threads(&peers.ours, threads, iters, &|| |_| native.add(black_box(1))))
        });
        bench(&mut g, &peers, threads, "macro_labels", || {
            |_| counter!("bench_labels", "route" => "/api", "status" => "200").increment(black_box(1))
        });
        g.finish();

        let mut g = c.benchmark_group(format!("facade_histogram/{threads}thr"));
        g.throughput(Throughput::Elements(1))
            .warm_up_time(Duration::from_secs(1))
            .measurement_time(Duration::from_secs(2));
        bench(&mut g, &peers, threads, "handle", || {
            let h = histogram!("bench_latency");
            move |i: u64| h.record(black_box(lat[(i & 4095) as usize]))
        });
        bench(&mut g, &peers, threads, "macro", || {
            |i: u64| histogram!("bench_latency").record(black_box(lat[(i & 4095) as usize]))
        });
        let native = peers.registry.histogram("bench_native_latency").unit(Unit::Nanoseconds).build().unwrap();
        let lat_ns: Vec<u64> = lat.iter().map(|s| (s * 1e9) as u64).collect();
        g.bench_function("shardmetrics-native/handle", |b| {
            b.iter_custom(|iters| {
                run_threads(&peers.ours, threads, iters, &|| {
                    |i: u64| native.record(black_box(lat_ns[(i & 4095) as usize]))
                })
            })
        });
        g.finish();
    }
}

criterion_group!(benches, facade);
criterion_main!(benches);
