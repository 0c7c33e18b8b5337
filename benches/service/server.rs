//! What instrumentation costs a real HTTP service (issue #7): a small hyper server on loopback,
//! driven by `wrk` (`benches/service/run.sh`), in four variants that differ only in how each
//! request is recorded.
//!
//! * `none` — uninstrumented.
//! * `shardmetrics` — a counter, a `Family` counter by route and status, a latency histogram
//!   through a `Timer` guard; `/metrics` renders the last snapshot.
//! * `prometheus` — prometheus 0.14: `IntCounter`, `IntCounterVec`, `Histogram::start_timer`;
//!   `/metrics` is its `TextEncoder`.
//! * `metrics` — metrics 0.24 macros into metrics-exporter-prometheus 0.18's recorder (installed
//!   globally, upkeep every 5 s as its docs ask); `/metrics` is `PrometheusHandle::render`.
//!
//! Routes: `/api/users` and `/api/orders` format a small JSON body, `/health` answers `ok`,
//! anything else is 404. `/metrics` is the exporter, served beside the app but never hit by wrk.
//!
//! ```sh
//! cargo run --release --example bench_service_overhead -- --variant shardmetrics --listen 127.0.0.1:0
//! ```
//!
//! Prints `listening on http://ADDR` once bound, then serves until killed.

use std::{
    convert::Infallible,
    fmt::Write as _,
    io::Write as _,
    net::SocketAddr,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use bytes::Bytes;
use http_body_util::Full;
use hyper::{
    body::Incoming,
    header::{HeaderValue, CONTENT_TYPE},
    server::conn::http1,
    service::service_fn,
    Request, Response, StatusCode,
};
use hyper_util::rt::TokioIo;
use shardmetrics::{Counter, Family, Histogram, Registry, Unit};
use tokio::net::TcpListener;

/// Histogram bounds for the two peers that need them: 18 powers of two from 1 µs (as in
/// `benches/hot_path.rs`), so the request latencies (tens of µs) fall mid-table.
fn bounds_seconds() -> Vec<f64> {
    (0..18).map(|k| 1e-6 * f64::from(1u32 << k)).collect()
}

struct Shardmetrics {
    registry: Registry,
    requests: Counter,
    responses: Family<Counter>,
    latency: Histogram,
}

struct Prometheus {
    registry: prometheus::Registry,
    requests: prometheus::IntCounter,
    responses: prometheus::IntCounterVec,
    latency: prometheus::Histogram,
}

enum Instrumentation {
    None,
    Shardmetrics(Shardmetrics),
    Prometheus(Prometheus),
    Metrics(metrics_exporter_prometheus::PrometheusHandle),
}

impl Instrumentation {
    fn new(variant: &str) -> Result<Self, String> {
        Ok(match variant {
            "none" => Instrumentation::None,
            "shardmetrics" => {
                let registry = Registry::new();
                let err = |e: shardmetrics::Error| e.to_string();
                let requests =
                    registry.counter("http_requests_total").help("Requests received").build().map_err(err)?;
                let responses = registry
                    .counter("http_responses_total")
                    .help("Responses sent")
                    .family(&["route", "status"])
                    .map_err(err)?;
                let latency = registry
                    .histogram("http_request_duration")
                    .help("Time spent in the handler")
                    .unit(Unit::Nanoseconds)
                    .build()
                    .map_err(err)?;
                Instrumentation::Shardmetrics(Shardmetrics { registry, requests, responses, latency })
            }
            "prometheus" => {
                let err = |e: prometheus::Error| e.to_string();
                let registry = prometheus::Registry::new();
                let requests = prometheus::IntCounter::new("http_requests_total", "Requests received").map_err(err)?;
                let responses = prometheus::IntCounterVec::new(
                    prometheus::Opts::new("http_responses_total", "Responses sent"),
                    &["route", "status"],
                )
                .map_err(err)?;
                let latency = prometheus::Histogram::with_opts(
                    prometheus::HistogramOpts::new("http_request_duration_seconds", "Time spent in the handler")
                        .buckets(bounds_seconds()),
                )
                .map_err(err)?;
                registry.register(Box::new(requests.clone())).map_err(err)?;
                registry.register(Box::new(responses.clone())).map_err(err)?;
                registry.register(Box::new(latency.clone())).map_err(err)?;
                Instrumentation::Prometheus(Prometheus { registry, requests, responses, latency })
            }
            "metrics" => {
                let handle = metrics_exporter_prometheus::PrometheusBuilder::new()
                    .set_buckets(&bounds_seconds())
                    .map_err(|e| e.to_string())?
                    .install_recorder()
                    .map_err(|e| e.to_string())?;
                metrics::describe_counter!("http_requests_total", "Requests received");
                metrics::describe_counter!("http_responses_total", "Responses sent");
                metrics::describe_histogram!("http_request_duration_seconds", "Time spent in the handler");
                Instrumentation::Metrics(handle)
            }
            other => return Err(format!("unknown variant {other:?} (none, shardmetrics, prometheus, metrics)")),
        })
    }

    /// The exporter's text, or `None` for the uninstrumented variant (whose `/metrics` is a 404).
    fn render(&self) -> Option<String> {
        match self {
            Instrumentation::None => None,
            Instrumentation::Shardmetrics(m) => Some(shardmetrics::export::prometheus::render(&m.registry.snapshot())),
            Instrumentation::Prometheus(m) => {
                let mut out = String::new();
                prometheus::TextEncoder::new().encode_utf8(&m.registry.gather(), &mut out).ok()?;
                Some(out)
            }
            Instrumentation::Metrics(handle) => Some(handle.render()),
        }
    }
}

/// A per-process request sequence, so bodies differ from one request to the next.
static SEQ: AtomicU64 = AtomicU64::new(0);

/// The application proper: route, do a little work, build the response. Returns the route label
/// (`"unmatched"` for a 404) and the status label with it.
fn app(path: &str) -> (&'static str, &'static str, Response<Full<Bytes>>) {
    let seq = SEQ.fetch_add(1, Ordering::Relaxed);
    let (route, status, body, json) = match path {
        "/api/users" => {
            let id = seq % 10_000;
            let mut body = String::with_capacity(128);
            let _ = write!(
                body,
                r#"{{"id":{id},"name":"user-{id}","email":"user-{id}@example.com","active":{},"score":{:.2}}}"#,
                id % 7 != 0,
                (id % 997) as f64 / 9.97
            );
            ("/api/users", StatusCode::OK, body, true)
        }
        "/api/orders" => {
            let mut body = String::with_capacity(256);
            body.push_str(r#"{"orders":["#);
            let mut total = 0.0f64;
            for i in 0..3u64 {
                let price = ((seq + i * 31) % 5_000) as f64 / 100.0;
                let qty = 1 + (seq + i) % 4;
                total += price * qty as f64;
                if i > 0 {
                    body.push(',');
                }
                let _ =
                    write!(body, r#"{{"sku":"SKU-{:05}","qty":{qty},"price":{price:.2}}}"#, (seq * 7 + i) % 100_000);
            }
            let _ = write!(body, r#"],"total":{total:.2}}}"#);
            ("/api/orders", StatusCode::OK, body, true)
        }
        "/health" => ("/health", StatusCode::OK, String::from("ok"), false),
        _ => ("unmatched", StatusCode::NOT_FOUND, String::from(r#"{"error":"not found"}"#), true),
    };
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    *resp.status_mut() = status;
    let content_type = if json { "application/json" } else { "text/plain; charset=utf-8" };
    resp.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    let status_label = if status == StatusCode::OK { "200" } else { "404" };
    (route, status_label, resp)
}

/// One request through the variant's instrumentation, written as each library's docs suggest.
fn handle(instr: &Instrumentation, path: &str) -> Response<Full<Bytes>> {
    match instr {
        Instrumentation::None => app(path).2,
        Instrumentation::Shardmetrics(m) => {
            let _timer = m.latency.start_timer();
            m.requests.inc();
            let (route, status, resp) = app(path);
            m.responses.with(&[route, status]).inc();
            resp
        }
        Instrumentation::Prometheus(m) => {
            let _timer = m.latency.start_timer();
            m.requests.inc();
            let (route, status, resp) = app(path);
            m.responses.with_label_values(&[route, status]).inc();
            resp
        }
        Instrumentation::Metrics(_) => {
            let start = Instant::now();
            metrics::counter!("http_requests_total").increment(1);
            let (route, status, resp) = app(path);
            metrics::counter!("http_responses_total", "route" => route, "status" => status).increment(1);
            metrics::histogram!("http_request_duration_seconds").record(start.elapsed().as_secs_f64());
            resp
        }
    }
}

async fn serve(instr: Arc<Instrumentation>, req: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    if req.uri().path() == "/metrics" {
        if let Some(text) = instr.render() {
            let mut resp = Response::new(Full::new(Bytes::from(text)));
            resp.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("text/plain; version=0.0.4"));
            return Ok(resp);
        }
    }
    Ok(handle(&instr, req.uri().path()))
}

struct Args {
    variant: String,
    listen: SocketAddr,
    workers: usize,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args { variant: String::from("none"), listen: SocketAddr::from(([127, 0, 0, 1], 0)), workers: 1 };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--variant" => args.variant = value()?,
            "--listen" => args.listen = value()?.parse().map_err(|e| format!("--listen: {e}"))?,
            "--workers" => args.workers = value()?.parse().map_err(|e| format!("--workers: {e}"))?,
            "-h" | "--help" => {
                return Err(String::from(
                    "usage: bench_service_overhead [--variant none|shardmetrics|prometheus|metrics] \
                     [--listen 127.0.0.1:0] [--workers 1]",
                ))
            }
            other => return Err(format!("unknown argument {other:?} (try --help)")),
        }
    }
    if args.workers == 0 {
        return Err(String::from("--workers must be at least 1"));
    }
    Ok(args)
}

fn main() {
    let args = parse_args().unwrap_or_else(|e| {
        eprintln!("{e}");
        std::process::exit(2);
    });
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.workers)
        .enable_all()
        .build()
        .expect("tokio runtime");
    runtime.block_on(async move {
        let instr = Instrumentation::new(&args.variant).unwrap_or_else(|e| {
            eprintln!("{e}");
            std::process::exit(2);
        });
        if let Instrumentation::Metrics(handle) = &instr {
            // The recorder without an exporter leaves upkeep (draining histogram buffers) to us.
            let handle = handle.clone();
            tokio::spawn(async move {
                let mut every = tokio::time::interval(Duration::from_secs(5));
                loop {
                    every.tick().await;
                    handle.run_upkeep();
                }
            });
        }
        let instr = Arc::new(instr);
        let listener = TcpListener::bind(args.listen).await.expect("bind");
        let addr = listener.local_addr().expect("local address");
        println!("listening on http://{addr} variant={} workers={}", args.variant, args.workers);
        let _ = std::io::stdout().flush();
        loop {
            let (stream, _) = match listener.accept().await {
                Ok(conn) => conn,
                Err(e) => {
                    eprintln!("accept: {e}");
                    continue;
                }
            };
            let _ = stream.set_nodelay(true);
            let instr = instr.clone();
            tokio::spawn(async move {
                let service = service_fn(move |req| serve(instr.clone(), req));
                if let Err(e) = http1::Builder::new().serve_connection(TokioIo::new(stream), service).await {
                    if !e.is_incomplete_message() {
                        eprintln!("connection: {e}");
                    }
                }
            });
        }
    });
}
