//! Clock reads: what the timer guard's two clock reads cost with `std::time::Instant` and
//! with `quanta` (TSC-based), so a choice of clock for `Histogram::start_timer` rests on numbers.
//!
//! Group `clock`, one thread, ns per operation (`Throughput::Elements(1)`):
//!
//! * `std-instant`: one `std::time::Instant::now()` (vDSO `clock_gettime(CLOCK_MONOTONIC)`).
//! * `quanta-instant`: one `quanta::Clock::now()` (TSC read scaled to a `quanta::Instant`).
//! * `quanta-raw`: one `quanta::Clock::raw()` (the TSC) plus `Clock::scaled` of it — what a
//!   timer that stores the raw start and scales only at the end pays per read.
//! * `quanta-raw-unscaled`: the raw TSC read alone.
//! * `timer_guard-std`: `Instant::now()` … `elapsed()` + an `lzcnt` bucket index and a plain
//!   increment into a thread-local array: a timer guard built on std's clock, no library.
//! * `timer_guard-quanta-raw`: the same with two raw TSC reads and `Clock::delta_as_nanos`.
//! * `timer_guard-shardmetrics`: `drop(hist.start_timer())` through the core (whatever clock it
//!   uses), for comparison with the two floors above.
//!
//! Before the timings the bench prints the kernel clocksource (the TSC path only helps when
//! std's vDSO clock is itself TSC-backed or slower) and checks that quanta and std agree on a
//! 20 ms sleep, so a mis-calibrated TSC can't produce a flattering number.
//!
//! Loop discipline as in `hot_path.rs`: `for i in 0..iters { op(black_box(i)) }`, results
//! passed through `black_box`; `SHARDMETRICS_BENCH_CLOCK=cpu` times with the thread's CPU
//! clock instead of wall time.
//!
//! Run: `cargo bench --bench clock`; smoke test: `cargo bench --bench clock -- --test`.

mod common;

use std::{
    cell::Cell,
    hint::black_box,
    time::{Duration, Instant},
};

use common::time_loop;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use shardmetrics::{__private as buckets, Registry, Unit};

const FLOOR_BUCKETS: usize = buckets::bucket_count(buckets::DEFAULT_PRECISION);

thread_local! {
    static FLOOR_HIST: [Cell<u64>; FLOOR_BUCKETS] = const { [const { Cell::new(0) }; FLOOR_BUCKETS] };
}

/// `lzcnt` bucket index + plain increment into a thread-local array (the histogram floor).
#[inline(always)]
fn floor_record(v: u64) {
    FLOOR_HIST.with(|a| {
        let cell = &a[buckets::index(v, buckets::DEFAULT_PRECISION)];
        cell.set(cell.get() + 1);
    });
}

/// Prints the clocksource and checks quanta against std over a sleep.
fn clock_report(clock: &quanta::Clock) {
    let source = std::fs::read_to_string("/sys/devices/system/clocksource/clocksource0/current_clocksource")
        .map(|s| s.trim().to_owned())
        .unwrap_or_else(|_| "unknown".to_owned());
    let (std_start, raw_start) = (Instant::now(), clock.raw());
    std::thread::sleep(Duration::from_millis(20));
    let (raw_end, std_elapsed) = (clock.raw(), std_start.elapsed());
    let quanta_ns = clock.delta_as_nanos(raw_start, raw_end) as f64;
    let std_ns = std_elapsed.as_nanos() as f64;
    let ratio = quanta_ns / std_ns;
    println!();
    println!("clocksource: {source}; 20 ms sleep: std {std_ns:.0} ns, quanta {quanta_ns:.0} ns (ratio {ratio:.4})");
    assert!((0.95..1.05).contains(&ratio), "quanta disagrees with std::time::Instant by more than 5 %: {ratio}");
}

fn clock(c: &mut Criterion) {
    let qc = quanta::Clock::new();
    clock_report(&qc);

    let mut g = c.benchmark_group("clock");
    g.throughput(Throughput::Elements(1));

    g.bench_function("std-instant", |b| {
        b.iter_custom(|iters| {
            time_loop(iters, |_| {
                black_box(Instant::now());
            })
        })
    });
    g.bench_function("quanta-instant", |b| {
        b.iter_custom(|iters| {
            time_loop(iters, |_| {
                black_box(qc.now());
            })
        })
    });
    g.bench_function("quanta-raw", |b| {
        b.iter_custom(|iters| {
            time_loop(iters, |_| {
                black_box(qc.scaled(qc.raw()));
            })
        })
    });
    g.bench_function("quanta-raw-unscaled", |b| {
        b.iter_custom(|iters| {
            time_loop(iters, |_| {
                black_box(qc.raw());
            })
        })
    });

    g.bench_function("timer_guard-std", |b| {
        b.iter_custom(|iters| {
            time_loop(iters, |_| {
                let start = Instant::now();
                floor_record(start.elapsed().as_nanos() as u64);
            })
        })
    });
    g.bench_function("timer_guard-quanta-raw", |b| {
        b.iter_custom(|iters| {
            time_loop(iters, |_| {
                let start = qc.raw();
                floor_record(qc.delta_as_nanos(start, qc.raw()));
            })
        })
    });

    let reg = Registry::builder().manual().build();
    let hist = reg.histogram("bench_timer").unit(Unit::Nanoseconds).build().expect("valid histogram");
    g.bench_function("timer_guard-shardmetrics", |b| {
        b.iter_custom(|iters| time_loop(iters, |_| drop(hist.start_timer())))
    });
    g.finish();

    // The timer really recorded: one value per call, none of them zero-length nonsense.
    let snap = reg.flush();
    let h = snap.histogram("bench_timer", &[]).expect("timer histogram published");
    assert!(h.count() > 0, "timer_guard-shardmetrics recorded nothing");
    FLOOR_HIST.with(|a| assert!(a.iter().map(Cell::get).sum::<u64>() > 0, "the floor timers recorded nothing"));
}

fn criterion() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(1))
        .sample_size(30)
        .configure_from_args()
}

criterion_group! {
    name = benches;
    config = criterion();
    targets = clock
}
criterion_main!(benches);
