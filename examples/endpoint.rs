//! A Prometheus scrape endpoint in a few lines: a registry with a counter, a gauge, a latency
//! histogram (timed with a `Timer`) and a labelled `Family`, served by
//! `shardmetrics::export::http::Server` on a free loopback port. The example then scrapes its
//! own `/metrics` with a plain `TcpStream`, prints what it got and shuts down.
//!
//! ```sh
//! cargo run --example endpoint            # `http` is a default feature
//! cargo run --example endpoint -- 60      # keep serving (and recording) for 60 s: curl the printed URL
//! ```
//!
//! Prints the URL, the response's status line and `Content-Type`, then the Prometheus text
//! (`# HELP`, `# TYPE`, `jobs_processed_total 50`, `job_outcomes_total{kind="email",outcome="ok"} 16`,
//! `job_duration_seconds_sum …`, …) without the histogram's `_bucket` lines.

use std::{
    io::{Read, Write},
    net::{SocketAddr, TcpStream},
    time::{Duration, Instant},
};

use shardmetrics::{export::http::Server, Registry, Unit};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // How long to keep serving after the self-scrape (first argument, default 0 s).
    let serve_for = Duration::from_secs(std::env::args().nth(1).map(|s| s.parse()).transpose()?.unwrap_or(0));

    // One registry; its aggregator thread merges the per-thread shards every 100 ms.
    let registry = Registry::builder().interval(Duration::from_millis(100)).build();
    let jobs = registry.counter("jobs_processed_total").help("Jobs processed").build()?;
    let queue = registry.gauge("queue_depth").help("Jobs waiting to be processed").build()?;
    // A time unit makes the export a `_seconds` histogram; values are recorded in nanoseconds.
    let duration = registry.histogram("job_duration").help("Time to process a job").unit(Unit::Nanoseconds).build()?;
    // A family: one counter series per (kind, outcome) label pair, created on first use.
    let outcomes =
        registry.counter("job_outcomes_total").help("Jobs by kind and outcome").family(&["kind", "outcome"])?;

    // Record some work. Each call writes only this thread's shard: no lock, no shared atomic.
    let work = |i: u64| {
        let _timer = duration.start_timer(); // records the elapsed time when dropped
        std::thread::sleep(Duration::from_micros(100 + 20 * (i % 10)));
        jobs.inc();
        let kind = if i % 3 == 0 { "email" } else { "report" };
        outcomes.with(&[kind, if i % 10 == 7 { "error" } else { "ok" }]).inc();
        queue.set((i % 8) as f64);
    };
    for i in 0..50 {
        work(i);
    }

    // Port 0: the OS picks a free port; `local_addr()` / `url()` say which.
    let server = Server::builder().listen("127.0.0.1:0").start(&registry)?;
    println!("serving {} (also /metrics.json and /healthz)", server.url());

    // The endpoint serves the latest published snapshot. `flush()` merges and publishes one now,
    // so the scrape below sees the 50 jobs without waiting for the next tick.
    registry.flush();
    let response = http_get(server.local_addr(), "/metrics")?;
    let (head, body) = response.split_once("\r\n\r\n").ok_or("malformed HTTP response")?;
    let mut head_lines = head.lines();
    println!("{}", head_lines.next().unwrap_or_default());
    head_lines.filter(|l| l.to_ascii_lowercase().starts_with("content-type:")).for_each(|l| println!("{l}"));
    println!();
    // The classic histogram's `_bucket` lines are most of the text; show everything else.
    let (buckets, rest): (Vec<&str>, Vec<&str>) = body.lines().partition(|l| l.contains("_bucket{"));
    rest.iter().for_each(|line| println!("{line}"));
    println!("({} `_bucket` lines not shown)", buckets.len());

    // Optionally keep the endpoint up, still recording, so it can be scraped from outside.
    if !serve_for.is_zero() {
        println!("serving for {serve_for:?}: curl {}", server.url());
        let start = Instant::now();
        for i in 50.. {
            if start.elapsed() >= serve_for {
                break;
            }
            work(i);
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    // Stop accepting, close connections, join the server thread; then stop the aggregator.
    server.shutdown();
    registry.shutdown();
    Ok(())
}

/// A minimal HTTP/1.1 GET: `Connection: close` makes the server end the response with EOF, and
/// no `Accept-Encoding` means an uncompressed body.
fn http_get(addr: SocketAddr, path: &str) -> std::io::Result<String> {
    let mut stream = TcpStream::connect(addr)?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(stream, "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n")?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    Ok(response)
}
