//! Pushing metrics to a Prometheus Pushgateway, as a batch job or a short-lived process would:
//! one push on the calling thread with `push_once`, then the exporter's background thread
//! pushing every interval, and `shutdown()` pushing the final values and reporting what was
//! sent, failed and retried.
//!
//! ```sh
//! cargo run --example push --features push                          # built-in loopback receiver
//! cargo run --example push --features push -- http://127.0.0.1:9091  # a real Pushgateway
//! PUSHGATEWAY_URL=http://127.0.0.1:9091 cargo run --example push --features push
//! ```
//!
//! With no gateway given, a tiny receiver thread on a free loopback port stands in for one. It
//! answers its first request `503 Service Unavailable`, so the output shows a retry with
//! backoff. Prints each request the receiver gets
//! (`receiver: PUT /metrics/job/… (1235 bytes: batch_records_total 1000) -> 503`), then the
//! exporter's statistics and its self-metrics (`shardmetrics_export_samples_total`).

use std::{
    io::{BufRead, BufReader, Read, Write},
    net::{TcpListener, TcpStream},
    time::Duration,
};

use shardmetrics::{
    export::{pushgateway::Pushgateway, Backoff, ExporterBuilder},
    self_metrics, Registry,
};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let url = match std::env::args().nth(1).or_else(|| std::env::var("PUSHGATEWAY_URL").ok()) {
        Some(url) => url,
        None => start_receiver()?,
    };

    let registry = Registry::builder().interval(Duration::from_millis(100)).build();
    let records = registry.counter("batch_records_total").help("Records imported").build()?;
    let last_batch = registry.gauge("batch_last_size").help("Records in the last batch").build()?;

    // The group is /metrics/job/<job>/<label>/<value>…; PUT (the default) replaces it each time.
    let gateway = Pushgateway::builder(&url)
        .job("shardmetrics_example")
        .grouping_label("instance", "example-1")
        .interval(Duration::from_millis(500)) // default: the registry's interval
        .timeout(Duration::from_secs(2))
        .backoff(Backoff::new().initial(Duration::from_millis(100)).max_attempts(3))
        .build(&registry)?;
    println!("pushing to {}", gateway.url());

    // One push now, on this thread (what a batch job does at its end). Failures are retried with
    // the backoff above and, if every attempt fails, returned; they never panic.
    records.add(1_000);
    last_batch.set(1_000.0);
    if let Err(e) = gateway.push_once(&registry.flush()) {
        eprintln!("push failed: {e}");
    }

    // Or let the exporter's own thread push each new snapshot every interval.
    let exporter = gateway.start();
    for size in [200, 300, 250, 400] {
        records.add(size);
        last_batch.set(size as f64);
        std::thread::sleep(Duration::from_millis(300));
    }

    // Shutdown merges and pushes a final snapshot, then joins the exporter's thread.
    let stats = exporter.shutdown();
    println!(
        "exporter: {} batches / {} samples sent, {} failed, {} dropped; {} attempts, {} retries",
        stats.sent_batches,
        stats.sent_samples,
        stats.failed_samples,
        stats.dropped_samples,
        stats.attempts,
        stats.retries
    );

    // The same counts are self-metrics in the registry, exported along with everything else.
    let snap = registry.flush();
    for outcome in ["sent", "failed", "dropped"] {
        let n = snap.counter(self_metrics::EXPORT_SAMPLES, &[("exporter", "pushgateway"), ("outcome", outcome)]);
        println!(
            "{}{{exporter=\"pushgateway\",outcome=\"{outcome}\"}} {}",
            self_metrics::EXPORT_SAMPLES,
            n.unwrap_or(0)
        );
    }
    let retries = snap.counter(self_metrics::EXPORT_RETRIES, &[("exporter", "pushgateway")]).unwrap_or(0);
    println!("{}{{exporter=\"pushgateway\"}} {retries}", self_metrics::EXPORT_RETRIES);
    registry.shutdown();
    Ok(())
}

/// Starts a stand-in Pushgateway on a free loopback port and returns its base URL. It answers
/// every request `200 OK`, except the first one (`503`, to show a retry), and closes each
/// connection after one answer. The thread is left to end with the process.
fn start_receiver() -> std::io::Result<String> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let url = format!("http://{}", listener.local_addr()?);
    std::thread::spawn(move || {
        for (n, stream) in listener.incoming().enumerate() {
            let status = if n == 0 { "503 Service Unavailable" } else { "200 OK" };
            if let Err(e) = stream.and_then(|s| answer(s, status)) {
                eprintln!("receiver: {e}");
            }
        }
    });
    Ok(url)
}

/// Reads one request (head and `Content-Length` body), logs it and answers with `status`.
fn answer(mut stream: TcpStream, status: &str) -> std::io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut reader = BufReader::new(&stream);
    let mut request_line = String::new();
    reader.read_line(&mut request_line)?;
    let mut content_length = 0;
    loop {
        let mut header = String::new();
        if reader.read_line(&mut header)? == 0 || header.trim().is_empty() {
            break;
        }
        if let Some((name, value)) = header.split_once(':') {
            if name.eq_ignore_ascii_case("content-length") {
                content_length = value.trim().parse().unwrap_or(0);
            }
        }
    }
    let mut body = vec![0; content_length];
    reader.read_exact(&mut body)?;
    let request = request_line.split(' ').take(2).collect::<Vec<_>>().join(" ");
    let body = String::from_utf8_lossy(&body);
    let records = body.lines().find(|l| l.starts_with("batch_records_total ")).unwrap_or("");
    println!("receiver: {request} ({content_length} bytes: {records}) -> {}", &status[..3]);
    write!(stream, "HTTP/1.1 {status}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
}
