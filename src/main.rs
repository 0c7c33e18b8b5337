//! `shardmetrics` demo: worker threads serve synthetic requests instrumented through the
//! public API; once a second the main thread prints per-route rates and latency quantiles
//! from the published snapshot.
//!
//! Usage: `shardmetrics [demo] [--threads N] [--seconds N]`

use std::{
    process::ExitCode,
    sync::atomic::{AtomicBool, Ordering},
    time::{Duration, Instant},
};

use shardmetrics::{Registry, Unit};

const ROUTES: &[(&str, f64)] = &[("/api/users", 120_000.0), ("/api/orders", 450_000.0), ("/static", 15_000.0)];

struct Args {
    threads: usize,
    seconds: Option<u64>,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args { threads: 4, seconds: None };
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        let mut value = |name: &str| it.next().ok_or_else(|| format!("{name} needs a value"));
        match a.as_str() {
            "demo" => {}
            "--threads" => args.threads = value("--threads")?.parse().map_err(|e| format!("--threads: {e}"))?,
            "--seconds" => args.seconds = Some(value("--seconds")?.parse().map_err(|e| format!("--seconds: {e}"))?),
            "-h" | "--help" => {
                println!("usage: shardmetrics [demo] [--threads N] [--seconds N]");
                std::process::exit(0);
            }
            other => return Err(format!("unknown argument {other:?} (try --help)")),
        }
    }
    if args.threads == 0 {
        return Err("--threads must be at least 1".into());
    }
    Ok(args)
}

/// splitmix64: a few lines of synthetic randomness for the workload (not part of the engine).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Log-normal latency around `median` ns with a slow tail.
    fn latency(&mut self, median: f64) -> u64 {
        let (u1, u2) = (self.unit().max(1e-12), self.unit());
        let z = (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos();
        let tail = if self.next() % 1000 == 0 { 20.0 } else { 1.0 };
        (median * (0.5 * z).exp() * tail) as u64
    }
}

fn run(args: Args) -> Result<(), shardmetrics::Error> {
    let registry = Registry::builder().interval(Duration::from_secs(1)).build();
    let requests = registry.counter("demo_requests_total").help("Requests handled").family(&["route", "status"])?;
    let latency = registry
        .histogram("demo_request_duration")
        .help("Request latency")
        .unit(Unit::Nanoseconds)
        .family(&["route"])?;
    let cache_hits = registry.counter("demo_cache_hits_total").help("Cache hits").build()?;
    let cache_misses = registry.counter("demo_cache_misses_total").help("Cache misses").build()?;
    let queue = registry.gauge("demo_queue_depth").help("Requests waiting").build()?;
    let stop = AtomicBool::new(false);
    let started = Instant::now();

    println!(
        "shardmetrics demo: {} worker threads recording unthrottled; Ctrl-C to stop{}",
        args.threads,
        args.seconds.map(|s| format!(" (runs {s} s)")).unwrap_or_default()
    );
    std::thread::scope(|s| {
        for t in 0..args.threads {
            let (requests, latency, stop) = (&requests, &latency, &stop);
            let (cache_hits, cache_misses, queue) = (&cache_hits, &cache_misses, &queue);
            s.spawn(move || {
                let mut rng = Rng(t as u64 + 1);
                while !stop.load(Ordering::Relaxed) {
                    for _ in 0..1024 {
                        let r = (rng.next() % ROUTES.len() as u64) as usize;
                        let (route, median) = ROUTES[r];
                        let status = if rng.next() % 100 == 0 { "500" } else { "200" };
                        requests.with(&[route, status]).inc();
                        latency.with(&[route]).record(rng.latency(median));
                        if rng.next() % 10 < 8 {
                            cache_hits.inc();
                        } else {
                            cache_misses.inc();
                        }
                    }
                    queue.set((rng.next() % 64) as f64);
                }
            });
        }
        let mut last = registry.snapshot().seq();
        loop {
            if args.seconds.is_some_and(|s| started.elapsed() >= Duration::from_secs(s)) {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
            let snap = registry.snapshot();
            if snap.seq() == last {
                continue;
            }
            last = snap.seq();
            println!(
                "\n t={:>4.1}s  tick #{}  merged {} shards in {:?}",
                started.elapsed().as_secs_f64(),
                snap.seq(),
                snap.shard_count(),
                snap.tick_duration()
            );
            println!("  {:<12} {:>14} {:>10} {:>10} {:>10} {:>10}", "route", "req/s", "err/s", "p50", "p99", "p99.9");
            for (route, _) in ROUTES {
                let ok = snap.counter_value("demo_requests_total", &[("route", route), ("status", "200")]);
                let err = snap.counter_value("demo_requests_total", &[("route", route), ("status", "500")]);
                let h = snap.histogram("demo_request_duration", &[("route", route)]);
                let fmt = |v: Option<u64>| v.map(|v| format!("{:.1}µs", v as f64 / 1e3)).unwrap_or_else(|| "-".into());
                println!(
                    "  {:<12} {:>14.0} {:>10.0} {:>10} {:>10} {:>10}",
                    route,
                    ok.map_or(0.0, |c| c.rate) + err.map_or(0.0, |c| c.rate),
                    err.map_or(0.0, |c| c.rate),
                    fmt(h.and_then(|h| h.quantile(0.5))),
                    fmt(h.and_then(|h| h.quantile(0.99))),
                    fmt(h.and_then(|h| h.quantile(0.999))),
                );
            }
            let hits = snap.counter("demo_cache_hits_total", &[]).unwrap_or(0) as f64;
            let misses = snap.counter("demo_cache_misses_total", &[]).unwrap_or(0) as f64;
            if hits + misses > 0.0 {
                println!("  cache hit rate {:.1}%", 100.0 * hits / (hits + misses));
            }
        }
        stop.store(true, Ordering::Relaxed);
    });
    let snap = registry.shutdown();
    let total: u64 = snap
        .family("demo_requests_total")
        .iter()
        .filter_map(|s| match s.value() {
            shardmetrics::Value::Counter(c) => Some(c.total),
            _ => None,
        })
        .sum();
    println!("\ndone: {total} requests recorded in {:.1}s", started.elapsed().as_secs_f64());
    Ok(())
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
