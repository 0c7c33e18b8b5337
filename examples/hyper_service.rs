//! Instrumenting an existing hyper 1 service: a `Family` of request counters by route and status,
//! a latency `Histogram` timed per request, and a `/metrics` route in the service's own router
//! that renders the registry's latest snapshot (no second port needed).
//!
//! The example serves on a free loopback port, sends itself a few requests over plain TCP (so
//! nothing beyond hyper and tokio is needed), prints the counts it recorded, then stops.
//!
//! ```sh
//! cargo run --example hyper_service       # `http` is a default feature (it brings hyper and tokio)
//! ```
//!
//! Prints one line per client request (`GET /users/3 -> 200`), the `http_requests_total`
//! lines of its own `/metrics`, and the latency count and p50/p99.

use std::{convert::Infallible, net::SocketAddr, sync::Arc, time::Duration};

use bytes::Bytes;
use http_body_util::Full;
use hyper::{
    body::Incoming,
    header::{HeaderValue, CONTENT_TYPE},
    server::conn::http1,
    service::service_fn,
    Method, Request, Response, StatusCode,
};
use hyper_util::rt::TokioIo;
use shardmetrics::{export::prometheus, Counter, Family, Histogram, Registry, Unit};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
};

/// The service's metrics, shared by every connection task (the handles are cheap to share).
struct Metrics {
    registry: Registry,
    requests: Family<Counter>,
    latency: Histogram,
}

impl Metrics {
    fn new() -> Result<Metrics, shardmetrics::Error> {
        let registry = Registry::builder().interval(Duration::from_secs(1)).build();
        let requests = registry
            .counter("http_requests_total")
            .help("Requests by route and status")
            .family(&["route", "status"])?;
        let latency = registry
            .histogram("http_request_duration")
            .help("Time spent in the handler")
            .unit(Unit::Nanoseconds)
            .build()?;
        Ok(Metrics { registry, requests, latency })
    }
}

/// The router. Labels use the route *pattern* (`/users/:id`), never the raw path, so the number
/// of series stays bounded whatever clients send.
async fn handle(req: Request<Incoming>, metrics: Arc<Metrics>) -> Result<Response<Full<Bytes>>, Infallible> {
    let timer = metrics.latency.start_timer(); // records the handler's time when dropped
    let path = req.uri().path();
    let (route, status, content_type, body) = match (req.method(), path) {
        (&Method::GET, "/") => ("/", StatusCode::OK, "text/plain", "hello\n".to_owned()),
        (&Method::GET, p) if p.starts_with("/users/") => {
            ("/users/:id", StatusCode::OK, "text/plain", format!("user {}\n", &p["/users/".len()..]))
        }
        // The scrape route: a wait-free read of the last merged snapshot, rendered as text.
        // (A large registry would render on `tokio::task::spawn_blocking`.)
        (&Method::GET, "/metrics") => {
            let text = prometheus::render(&metrics.registry.snapshot());
            ("/metrics", StatusCode::OK, prometheus::CONTENT_TYPE, text)
        }
        _ => ("unmatched", StatusCode::NOT_FOUND, "text/plain", "not found\n".to_owned()),
    };
    metrics.requests.with(&[route, status.as_str()]).inc();
    drop(timer);

    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    Ok(response)
}

/// The usual hyper 1 accept loop: one task per connection.
async fn serve(listener: TcpListener, metrics: Arc<Metrics>) {
    loop {
        // (An accept error, e.g. out of file descriptors, only fails that one connection.)
        let Ok((stream, _)) = listener.accept().await else { continue };
        let metrics = metrics.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req| handle(req, metrics.clone()));
            if let Err(e) = http1::Builder::new().serve_connection(TokioIo::new(stream), service).await {
                eprintln!("connection error: {e}");
            }
        });
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let metrics = Arc::new(Metrics::new()?);
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    println!("serving http://{addr}");
    let server = tokio::spawn(serve(listener, metrics.clone()));

    // Drive it: a few requests at once, over several connections and runtime worker threads.
    let paths = ["/", "/", "/users/1", "/users/2", "/users/3", "/", "/nope", "/users/4", "/", "/favicon.ico"];
    let clients: Vec<_> = paths.iter().map(|&path| tokio::spawn(get(addr, path))).collect();
    for (path, client) in paths.iter().zip(clients) {
        let (status, _) = client.await??;
        println!("GET {path} -> {status}");
    }

    // `/metrics` serves the latest tick (every second here); `flush()` publishes one now so the
    // scrape below includes the requests just made.
    metrics.registry.flush();
    let (_, scraped) = get(addr, "/metrics").await?;
    println!("\nfrom /metrics:");
    scraped.lines().filter(|l| l.starts_with("http_requests_total")).for_each(|l| println!("  {l}"));

    // The same numbers straight from a snapshot, without going through the text format.
    let snap = metrics.registry.flush();
    let latency = snap.histogram("http_request_duration", &[]).ok_or("no latency histogram")?;
    let micros = |q: f64| latency.quantile(q).map_or(0.0, |ns| ns as f64 / 1e3);
    println!(
        "\n{} requests timed (including the scrape), p50 {:.1} µs, p99 {:.1} µs",
        latency.count(),
        micros(0.5),
        micros(0.99)
    );

    // Stop the accept loop (a real service would shut down gracefully on a signal).
    server.abort();
    metrics.registry.shutdown();
    Ok(())
}

/// A bare HTTP/1.1 GET over tokio's `TcpStream`; returns the status code and the body.
async fn get(addr: SocketAddr, path: &str) -> std::io::Result<(u16, String)> {
    let mut stream = TcpStream::connect(addr).await?;
    stream.write_all(format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes()).await?;
    let mut response = String::new();
    stream.read_to_string(&mut response).await?;
    let bad = || std::io::Error::new(std::io::ErrorKind::InvalidData, "malformed HTTP response");
    let (head, body) = response.split_once("\r\n\r\n").ok_or_else(bad)?;
    let status = head.split(' ').nth(1).and_then(|s| s.parse().ok()).ok_or_else(bad)?;
    Ok((status, body.to_owned()))
}
