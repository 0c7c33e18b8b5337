//! `shardmetrics demo`: a simulated latency-sensitive service, measured with the public API
//! and served on the HTTP endpoint, with the dashboard watching its own snapshots.
//!
//! Worker threads handle synthetic requests over five routes. Latencies are log-normal around
//! each route's median with a slow tail (1 request in 400 takes 5–30× longer); a small share
//! fails. Cacheable routes go through a response cache (`registry.cache_stats`); misses run a
//! database query (an operation of its own). Checkout calls a payment provider that has a
//! ten-second incident every minute (errors and latency up); a circuit breaker
//! (`registry.state_set`: closed → open → half_open) opens when checkout errors pile up and
//! sheds load until a probe succeeds. A queue-depth gauge rises during incidents.
//!
//! Latencies are drawn, not slept: unthrottled, the threads record as fast as they can, which
//! doubles as a demonstration of the hot path. `--rate` paces them to a target request rate.

use std::{
    sync::atomic::{AtomicBool, Ordering},
    time::{Duration, Instant},
};

use shardmetrics::{
    export::{http::Server, otlp::Otlp, ExporterBuilder, ExporterHandle},
    ops::Cache,
    ops::Operation,
    ops::StateSet,
    Counter, Gauge, Registry, Unit,
};

use super::{
    app::App,
    args::DemoArgs,
    ingest::Scrape,
    terminal::{self, Update},
    CliError, EXIT_FAILURE, EXIT_UNREACHABLE, EXIT_USAGE,
};

/// One synthetic route.
struct Route {
    method: &'static str,
    path: &'static str,
    /// Relative share of traffic.
    weight: u32,
    /// Median latency, microseconds.
    median_us: f64,
    /// Log-normal shape (σ of the underlying normal).
    sigma: f64,
    /// Share of requests that fail on their own.
    error_rate: f64,
    /// Served through the response cache.
    cacheable: bool,
    /// Calls the payment provider behind the circuit breaker.
    payment: bool,
}

const ROUTES: &[Route] = &[
    Route {
        method: "GET",
        path: "/api/users",
        weight: 40,
        median_us: 900.0,
        sigma: 0.45,
        error_rate: 0.002,
        cacheable: true,
        payment: false,
    },
    Route {
        method: "GET",
        path: "/api/orders",
        weight: 25,
        median_us: 4_000.0,
        sigma: 0.6,
        error_rate: 0.005,
        cacheable: true,
        payment: false,
    },
    Route {
        method: "GET",
        path: "/api/search",
        weight: 15,
        median_us: 18_000.0,
        sigma: 0.9,
        error_rate: 0.01,
        cacheable: false,
        payment: false,
    },
    Route {
        method: "POST",
        path: "/api/checkout",
        weight: 5,
        median_us: 45_000.0,
        sigma: 0.5,
        error_rate: 0.02,
        cacheable: false,
        payment: true,
    },
    Route {
        method: "GET",
        path: "/static",
        weight: 15,
        median_us: 120.0,
        sigma: 0.3,
        error_rate: 0.0005,
        cacheable: false,
        payment: false,
    },
];

/// Share of cache look-ups that hit.
const HIT_RATIO: f64 = 0.82;
/// Entries one worker's slice of the cache holds before evicting.
const CACHE_SLICE: usize = 20_000;
/// Every minute, seconds 40–50: the payment provider struggles.
fn incident_at(t: f64) -> bool {
    (40.0..50.0).contains(&(t % 60.0))
}

/// splitmix64 plus the distributions the workload needs (synthetic data, not the engine).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Log-normal around `median` with shape `sigma` (Box–Muller).
    fn lognormal(&mut self, median: f64, sigma: f64) -> f64 {
        let (u1, u2) = (self.unit().max(1e-12), self.unit());
        let z = (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos();
        median * (sigma * z).exp()
    }
}

/// The service's instruments, all registered through the public API.
struct Service {
    routes: Vec<Operation>,
    weights: Vec<u32>,
    db: Operation,
    cache: Cache,
    queue: Gauge,
    breaker: StateSet,
    bytes_sent: Counter,
    started: Instant,
    stop: AtomicBool,
}

impl Service {
    fn new(registry: &Registry) -> Result<Service, shardmetrics::Error> {
        let routes = ROUTES
            .iter()
            .map(|r| {
                registry
                    .operation("demo_request")
                    .help("Synthetic HTTP requests handled by the demo service")
                    .label("method", r.method)
                    .label("route", r.path)
                    .build()
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Service {
            routes,
            weights: ROUTES.iter().map(|r| r.weight).collect(),
            db: registry.operation("demo_db_query").help("Database queries on cache misses").build()?,
            cache: registry.cache("demo_cache", "Response cache")?,
            queue: registry.gauge("demo_queue_depth").help("Requests waiting for a worker").build()?,
            breaker: registry.state_set(
                "demo_payment_breaker",
                &["closed", "open", "half_open"],
                "Circuit breaker in front of the payment provider",
            )?,
            bytes_sent: registry
                .counter("demo_response_bytes_total")
                .help("Response body bytes sent")
                .unit(Unit::Bytes)
                .build()?,
            started: Instant::now(),
            stop: AtomicBool::new(false),
        })
    }

    fn pick(&self, rng: &mut Rng) -> usize {
        let total: u32 = self.weights.iter().sum();
        let mut x = (rng.next() % u64::from(total)) as u32;
        for (i, w) in self.weights.iter().enumerate() {
            if x < *w {
                return i;
            }
            x -= w;
        }
        self.weights.len() - 1
    }

    /// One request; returns whether it was a checkout and whether that succeeded (for the
    /// breaker logic).
    fn request(&self, rng: &mut Rng, w: &mut Worker, incident: bool) -> Option<bool> {
        let i = self.pick(rng);
        let route = &ROUTES[i];
        let mut us = rng.lognormal(route.median_us, route.sigma);
        if rng.next().is_multiple_of(400) {
            us *= 5.0 + 25.0 * rng.unit();
        }
        let mut ok = rng.unit() >= route.error_rate;
        if route.cacheable {
            if rng.unit() < HIT_RATIO {
                self.cache.hit();
                us *= 0.15;
            } else {
                self.cache.miss();
                let db_us = rng.lognormal(route.median_us * 0.6, 0.5);
                let db_ok = rng.unit() >= 0.001;
                self.db.record(Duration::from_nanos((db_us * 1e3) as u64), db_ok);
                ok &= db_ok;
                w.cache_entries += 1;
                if w.cache_entries > CACHE_SLICE {
                    self.cache.evict(256);
                    w.cache_entries -= 256;
                }
            }
        }
        let mut checkout = None;
        if route.payment {
            if self.breaker.state() == "open" {
                // Shed: fail fast without calling the provider.
                ok = false;
                us = rng.lognormal(60.0, 0.2);
            } else {
                if incident {
                    us *= 3.0;
                    ok &= rng.unit() >= 0.4;
                }
                checkout = Some(ok);
            }
        }
        self.routes[i].record(Duration::from_nanos((us * 1e3) as u64), ok);
        self.bytes_sent.add(if ok { 200 + rng.next() % 4000 } else { 120 });
        checkout
    }

    fn work(&self, seed: u64, leader: bool, rate_per_thread: Option<f64>, threads: usize) {
        let mut rng = Rng(seed);
        let mut w = Worker { cache_entries: CACHE_SLICE / 2, failure_ewma: 0.0, opened_at: 0.0, queue: 4.0 };
        let started = Instant::now();
        let mut done = 0u64;
        while !self.stop.load(Ordering::Relaxed) {
            let batch = match rate_per_thread {
                None => 256,
                Some(r) => {
                    let due = (started.elapsed().as_secs_f64() * r) as u64;
                    if due <= done {
                        std::thread::sleep(Duration::from_millis(2));
                        continue;
                    }
                    (due - done).min(10_000)
                }
            };
            let now = self.started.elapsed().as_secs_f64();
            let incident = incident_at(now);
            for _ in 0..batch {
                let checkout = self.request(&mut rng, &mut w, incident);
                if leader {
                    if let Some(ok) = checkout {
                        w.breaker(&self.breaker, ok, now);
                    }
                }
            }
            done += batch;
            if leader {
                if self.breaker.state() == "open" && now - w.opened_at >= 3.0 {
                    self.breaker.set("half_open");
                }
                // The queue drifts towards a few waiting requests, and piles up during incidents.
                let target = if incident { 120.0 } else { 6.0 };
                w.queue = (w.queue + (target - w.queue) * 0.02 + (rng.unit() - 0.5) * 3.0).clamp(0.0, 500.0);
                self.queue.set(w.queue.round());
                self.cache.set_size(w.cache_entries * threads);
            }
        }
    }
}

/// A worker's own state: its slice of the cache and (for the leader) the breaker's inputs.
struct Worker {
    cache_entries: usize,
    failure_ewma: f64,
    opened_at: f64,
    queue: f64,
}

impl Worker {
    /// closed → open when the failure average passes 25 %; half_open → closed on a success,
    /// back to open on a failure; open → half_open after 3 s (in `work`).
    fn breaker(&mut self, breaker: &StateSet, ok: bool, now: f64) {
        self.failure_ewma = 0.98 * self.failure_ewma + if ok { 0.0 } else { 0.02 };
        match breaker.state() {
            "closed" if self.failure_ewma > 0.25 => {
                breaker.set("open");
                self.opened_at = now;
            }
            "half_open" if ok => {
                breaker.set("closed");
                self.failure_ewma = 0.0;
            }
            "half_open" => {
                breaker.set("open");
                self.opened_at = now;
            }
            _ => {}
        }
    }
}

fn listen_error(addr: &str, e: std::io::Error) -> CliError {
    let message = if e.kind() == std::io::ErrorKind::AddrInUse {
        format!(
            "cannot serve metrics on {addr}: the address is already in use (another `shardmetrics demo` or \
             exporter?).\nPick another address, e.g. `--listen 127.0.0.1:0` for any free port."
        )
    } else {
        format!("cannot serve metrics on {addr}: {e}.\nPass an address such as `--listen 127.0.0.1:0`.")
    };
    CliError::new(EXIT_UNREACHABLE, message)
}

/// The demo's alert rules: checkout errors and search latency over the last 10 s (states show
/// in the dashboard's Alerts panel and as `shardmetrics_alert_state{rule}`).
fn demo_alerts(registry: &Registry) -> Result<(), Box<dyn std::error::Error>> {
    use shardmetrics::alert::{Alerts, Rule};
    Alerts::new()
        .rule(
            Rule::new("checkout_errors", r#"error_rate(demo_request{method="POST",route="/api/checkout"})[10s] > 5%"#)?
                .critical("20%")?
                .for_ticks(2),
        )?
        .rule(
            Rule::new("search_p99", r#"p99(demo_request{method="GET",route="/api/search"})[10s] > 100ms"#)?
                .for_ticks(2),
        )?
        .rule(Rule::new("rss", "process_resident_memory_bytes > 1GiB")?)?
        .install(registry)?;
    Ok(())
}

/// The demo's settings, checked and converted from its arguments.
#[derive(Debug, Clone)]
pub struct Plan {
    pub threads: usize,
    /// Requests per second each thread aims at (`None`: unthrottled).
    pub rate_per_thread: Option<f64>,
    /// When `--seconds` runs out.
    pub deadline: Option<Instant>,
}

/// Checks and converts `args` without starting anything, counting `--seconds` from `now`.
pub fn prepare(args: &DemoArgs, now: Instant) -> Result<Plan, CliError> {
    let threads = usize::from(args.threads).max(1);
    Ok(Plan {
        threads,
        rate_per_thread: args.rate.map(|r| r / threads as f64),
        deadline: super::args::deadline(now, args.seconds)?,
    })
}

/// The OTLP exporter, when `--otlp URL` is given or the OTel environment names an endpoint:
/// every tick (unless `OTEL_METRIC_EXPORT_INTERVAL` says otherwise), as service
/// `shardmetrics-demo` (unless `OTEL_SERVICE_NAME` names it).
fn start_otlp(args: &DemoArgs, registry: &Registry) -> Result<Option<ExporterHandle>, CliError> {
    let set = |k: &str| std::env::var(k).is_ok_and(|v| !v.trim().is_empty());
    let from_env = set("OTEL_EXPORTER_OTLP_ENDPOINT") || set("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT");
    if args.otlp.is_none() && !from_env {
        return Ok(None);
    }
    let mut builder = Otlp::builder();
    if let Some(url) = &args.otlp {
        builder = builder.base_endpoint(url.trim_end_matches("/v1/metrics"));
    }
    if !set("OTEL_METRIC_EXPORT_INTERVAL") {
        builder = builder.interval(args.interval);
    }
    if !set("OTEL_SERVICE_NAME") {
        builder = builder.service_name("shardmetrics-demo");
    }
    let otlp = builder
        .build(registry)
        .map_err(|e| CliError::new(EXIT_USAGE, format!("--otlp / OTEL_EXPORTER_OTLP_ENDPOINT: {e}")))?;
    println!("pushing OTLP to {}", otlp.endpoint());
    Ok(Some(otlp.start()))
}

/// Runs the demo; returns the exit code.
pub fn run(args: DemoArgs) -> Result<u8, CliError> {
    let plan = prepare(&args, Instant::now())?;
    let registry = Registry::builder().interval(args.interval).build();
    let svc = Service::new(&registry).map_err(|e| CliError::new(EXIT_FAILURE, format!("registering metrics: {e}")))?;
    shardmetrics::collect::process::register(&registry)
        .map_err(|e| CliError::new(EXIT_FAILURE, format!("registering process metrics: {e}")))?;
    demo_alerts(&registry).map_err(|e| CliError::new(EXIT_FAILURE, format!("installing alert rules: {e}")))?;
    let server =
        Server::builder().listen(args.listen.as_str()).start(&registry).map_err(|e| listen_error(&args.listen, e))?;
    let addr = server.local_addr();
    let threads = plan.threads;
    let pace = args.rate.map_or("unthrottled".to_owned(), |r| format!("paced to {r} requests/s"));
    println!("shardmetrics demo: serving {} (JSON at {}.json)", server.url(), server.url());
    println!("{threads} worker threads, {pace}; watch it from another terminal with `shardmetrics top http://{addr}`");
    let otlp = start_otlp(&args, &registry)?;
    let tui = !args.no_tui && terminal::interactive();
    let deadline = plan.deadline;
    let mut app = App::new(format!("demo (in-process), serving http://{addr}"));
    let epoch = Instant::now();
    let mut last_seq = registry.snapshot().seq();
    let feed = || {
        let snap = registry.snapshot();
        if snap.seq() == last_seq {
            return Vec::new();
        }
        last_seq = snap.seq();
        let t0 = Instant::now();
        // The same path `top` takes: the JSON document, read back into the dashboard model.
        let doc = shardmetrics::export::json::to_value(&snap, snap.windows().first().copied());
        match Scrape::from_json_value(&doc) {
            Ok(s) => {
                vec![Update::Scrape { at: epoch.elapsed().as_secs_f64(), scrape: Box::new(s), took: t0.elapsed() }]
            }
            Err(e) => vec![Update::Failed { error: e, attempts: 1, retry_in: args.interval }],
        }
    };
    let result = std::thread::scope(|s| {
        let rate_per_thread = plan.rate_per_thread;
        for t in 0..threads {
            let svc = &svc;
            s.spawn(move || svc.work(0x5eed + t as u64, t == 0, rate_per_thread, threads));
        }
        let r = if tui {
            terminal::run_tui(&mut app, feed, deadline).map(|_| true)
        } else {
            terminal::run_plain(&mut app, feed, deadline, epoch, None)
        };
        svc.stop.store(true, Ordering::Relaxed);
        r
    });
    server.shutdown();
    if let Some(otlp) = otlp {
        let s = otlp.shutdown();
        println!(
            "otlp: {} batches ({} data points) sent, {} failed, {} dropped, {} points rejected by the receiver",
            s.sent_batches, s.sent_samples, s.failed_batches, s.dropped_batches, s.rejected_samples
        );
    }
    let snap = registry.shutdown();
    result?;
    let total: u64 = snap.operations().filter(|(n, _, _)| *n == "demo_request").map(|(_, _, s)| s.count).sum();
    let secs = epoch.elapsed().as_secs_f64();
    println!("done: {total} requests in {secs:.1}s ({}/s)", super::human::si(Some(total as f64 / secs.max(1e-9))));
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lognormal_median() {
        let mut rng = Rng(7);
        let mut v: Vec<f64> = (0..20_001).map(|_| rng.lognormal(1000.0, 0.5)).collect();
        v.sort_by(f64::total_cmp);
        let median = v[10_000];
        assert!((950.0..1050.0).contains(&median), "{median}");
    }

    #[test]
    fn weighted_pick_follows_weights() {
        let registry = Registry::builder().manual().build();
        let svc = Service::new(&registry).unwrap();
        let mut rng = Rng(1);
        let mut counts = [0u32; ROUTES.len()];
        for _ in 0..100_000 {
            counts[svc.pick(&mut rng)] += 1;
        }
        let total: u32 = ROUTES.iter().map(|r| r.weight).sum();
        for (c, r) in counts.iter().zip(ROUTES) {
            let expected = 100_000.0 * f64::from(r.weight) / f64::from(total);
            assert!((f64::from(*c) - expected).abs() < expected * 0.05, "{} {c} vs {expected}", r.path);
        }
    }

    #[test]
    fn breaker_opens_and_recovers() {
        let registry = Registry::builder().manual().build();
        let svc = Service::new(&registry).unwrap();
        let mut w = Worker { cache_entries: 0, failure_ewma: 0.0, opened_at: 0.0, queue: 0.0 };
        for _ in 0..40 {
            w.breaker(&svc.breaker, false, 1.0);
        }
        assert_eq!(svc.breaker.state(), "open");
        svc.breaker.set("half_open");
        w.breaker(&svc.breaker, true, 5.0);
        assert_eq!(svc.breaker.state(), "closed");
    }
}
