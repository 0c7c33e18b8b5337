//! The HTTP exporters against receivers that misbehave (issue #14), all on loopback with
//! in-process receivers that stop by themselves:
//!
//! * a receiver that accepts the connection and never answers: shutdown returns within its
//!   timeout, a one-off push within its request timeout, and the hung request is counted as
//!   failed as soon as that timeout passes;
//! * a receiver that refuses with a long error body: the error and the log keep its start;
//! * a receiver that is down while snapshots of a large registry pile up: the queue stays
//!   within its byte bound and counts what it drops.

#![cfg(all(feature = "remote-write", feature = "push"))]

use std::{
    io::{Read, Write},
    net::{SocketAddr, TcpListener, TcpStream},
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use shardmetrics::self_metrics;
use shardmetrics::{
    export::{pushgateway::Pushgateway, remote_write::RemoteWrite, Backoff, ExportError, ExporterBuilder},
    Registry,
};
use shardmetrics_test_support::logs::{capture_logs, logged};

/// What a loaded 2-core machine may add to a bound on wall time.
const SLACK: Duration = Duration::from_millis(1500);

// ---------------------------------------------------------------------------------------------
// Receivers.

/// A loopback listener whose thread accepts connections and hands each to `serve`; it stops
/// (and drops every connection it kept) when dropped.
struct Receiver {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Receiver {
    fn start(serve: impl Fn(TcpStream, &mut Vec<TcpStream>) + Send + 'static) -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut kept = Vec::new();
            while !s.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((stream, _)) => {
                        stream.set_nonblocking(false).unwrap();
                        stream.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
                        serve(stream, &mut kept);
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        Receiver { addr, stop, thread: Some(thread) }
    }

    /// Accepts every connection and never answers (nor reads).
    fn hung() -> Receiver {
        Receiver::start(|stream, kept| kept.push(stream))
    }

    /// Reads each request and answers `status` with `body`.
    fn answering(status: u16, body: Vec<u8>) -> Receiver {
        Receiver::start(move |mut stream, _| {
            read_request(&mut stream);
            let head = format!(
                "HTTP/1.1 {status} Whatever\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            let _ = stream.write_all(head.as_bytes());
            let _ = stream.write_all(&body);
            let _ = stream.flush();
        })
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Reads a request's head and its `Content-Length` body.
fn read_request(stream: &mut TcpStream) {
    let mut raw = Vec::new();
    let mut buf = [0u8; 4096];
    let head_end = loop {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => raw.extend_from_slice(&buf[..n]),
        }
        if let Some(i) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
    };
    let head = String::from_utf8_lossy(&raw[..head_end]).to_ascii_lowercase();
    let length: usize =
        head.lines().find_map(|l| l.strip_prefix("content-length:")).and_then(|v| v.trim().parse().ok()).unwrap_or(0);
    let mut have = raw.len() - head_end;
    while have < length {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => have += n,
        }
    }
}

fn failed_samples(registry: &Registry, exporter: &str) -> Option<u64> {
    registry.flush().counter(self_metrics::EXPORT_SAMPLES, &[("exporter", exporter), ("outcome", "failed")])
}

/// Waits until the exporter has started a request (the first attempt is in flight).
fn wait_for_an_attempt(stats: impl Fn() -> shardmetrics::export::ExportStats) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while stats().attempts == 0 {
        assert!(Instant::now() < deadline, "no attempt within 10 s");
        std::thread::sleep(Duration::from_millis(5));
    }
}

// ---------------------------------------------------------------------------------------------
// (1) A receiver that accepts and never answers.

#[test]
fn remote_write_shutdown_returns_within_its_timeout_when_the_receiver_hangs() {
    let receiver = Receiver::hung();
    let registry = Registry::builder().interval(Duration::from_millis(10)).build();
    registry.counter("hung_work").build().unwrap().add(7);
    // The request timeout (30 s) is far beyond the shutdown timeout (default 5 s): the request
    // in flight when shutdown starts must not hold it.
    let exporter = RemoteWrite::builder(&receiver.url("/api/v1/write"))
        .interval(Duration::from_millis(20))
        .timeout(Duration::from_secs(30))
        .start(&registry)
        .unwrap();
    wait_for_an_attempt(|| exporter.stats());
    let t = Instant::now();
    let stats = exporter.shutdown();
    let took = t.elapsed();
    assert!(took < Duration::from_secs(5) + SLACK, "shutdown took {took:?} with the 5 s default");
    assert_eq!(stats.sent_batches, 0, "{stats:?}");
    assert!(stats.failed_batches >= 1 && stats.failed_samples > 0, "undelivered is failed: {stats:?}");
    assert_eq!(stats.queued_batches, 0, "{stats:?}");
    assert_eq!(failed_samples(&registry, "remote_write"), Some(stats.failed_samples));
}

#[test]
fn pushgateway_shutdown_returns_within_its_timeout_when_the_receiver_hangs() {
    let receiver = Receiver::hung();
    let registry = Registry::builder().interval(Duration::from_millis(10)).build();
    registry.counter("hung_work").build().unwrap().add(7);
    // The default request timeout (10 s), a short shutdown timeout.
    let exporter = Pushgateway::builder(&receiver.url(""))
        .job("hung")
        .interval(Duration::from_millis(20))
        .shutdown_timeout(Duration::from_secs(1))
        .start(&registry)
        .unwrap();
    wait_for_an_attempt(|| exporter.stats());
    let t = Instant::now();
    let stats = exporter.shutdown();
    let took = t.elapsed();
    assert!(took < Duration::from_secs(1) + SLACK, "shutdown took {took:?} with a 1 s timeout");
    assert_eq!(stats.sent_batches, 0, "{stats:?}");
    assert!(stats.failed_batches >= 1, "{stats:?}");
    assert_eq!(failed_samples(&registry, "pushgateway"), Some(stats.failed_samples));
}

#[test]
fn one_off_sends_to_a_hung_receiver_return_within_their_request_timeout() {
    capture_logs();
    let receiver = Receiver::hung();
    let registry = Registry::builder().manual().build();
    registry.counter("hung_work").build().unwrap().add(7);
    let timeout = Duration::from_secs(1);
    // Five attempts by default: a hang must not be waited for five times.
    let gateway = Pushgateway::builder(&receiver.url("")).job("hung").timeout(timeout).build(&registry).unwrap();
    let t = Instant::now();
    let err = gateway.push_once(&registry.flush()).unwrap_err();
    let took = t.elapsed();
    assert!(took < timeout + SLACK, "push_once took {took:?} with a 1 s request timeout: {err}");
    assert!(matches!(err, ExportError::TimedOut { timeout: t, .. } if t == timeout), "{err}");
    assert!(err.to_string().contains("no answer"), "{err}");
    assert!(failed_samples(&registry, "pushgateway").is_some_and(|f| f > 0));

    let t = Instant::now();
    let err = gateway.delete().unwrap_err();
    assert!(t.elapsed() < timeout + SLACK, "delete took {:?}: {err}", t.elapsed());

    let remote = RemoteWrite::builder(&receiver.url("/api/v1/write")).timeout(timeout).build(&registry).unwrap();
    let t = Instant::now();
    let err = remote.send_once(&registry.flush()).unwrap_err();
    assert!(t.elapsed() < timeout + SLACK, "send_once took {:?}: {err}", t.elapsed());
    assert!(matches!(err, ExportError::TimedOut { .. }), "{err}");
    assert!(logged(log::Level::Error, "remote_write exporter: no answer") >= 1, "timeouts are logged");
}

#[test]
fn a_hung_request_is_counted_failed_when_its_request_timeout_passes() {
    let receiver = Receiver::hung();
    let registry = Registry::builder().interval(Duration::from_millis(10)).build();
    registry.counter("hung_work").build().unwrap().add(7);
    let timeout = Duration::from_secs(1);
    let exporter = RemoteWrite::builder(&receiver.url("/api/v1/write"))
        .interval(Duration::from_millis(20))
        .timeout(timeout)
        .backoff(Backoff::new().max_attempts(5))
        .shutdown_timeout(Duration::from_millis(100))
        .start(&registry)
        .unwrap();
    wait_for_an_attempt(|| exporter.stats());
    let started = Instant::now();
    let deadline = started + timeout + SLACK;
    loop {
        let counted = failed_samples(&registry, "remote_write").is_some_and(|f| f > 0);
        if counted && exporter.stats().failed_batches >= 1 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no failure counted {:?} after the first attempt with a 1 s request timeout: {:?}",
            started.elapsed(),
            exporter.stats()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    let stats = exporter.stats();
    assert_eq!((stats.sent_batches, stats.retries), (0, 0), "a hang is not retried: {stats:?}");
    drop(exporter);
}

// ---------------------------------------------------------------------------------------------
// (2) A refusal with a long body.

#[test]
fn long_error_bodies_are_cut_not_dropped() {
    capture_logs();
    let mut body = b"first-bytes-of-the-answer: out of order sample ".to_vec();
    body.resize(10 * 1024, b'x');
    let receiver = Receiver::answering(400, body);
    let registry = Registry::builder().manual().build();
    registry.counter("refused_work").build().unwrap().add(1);
    let remote =
        RemoteWrite::builder(&receiver.url("/api/v1/write")).timeout(Duration::from_secs(5)).build(&registry).unwrap();
    let err = remote.send_once(&registry.flush()).unwrap_err();
    let ExportError::Rejected { status, body } = &err else { panic!("expected a refusal, got {err}") };
    assert_eq!(*status, 400);
    assert!(body.starts_with("first-bytes-of-the-answer: out of order sample xxx"), "{body:?}");
    assert!(body.ends_with('…'), "cut, and says so: {body:?}");
    assert!(body.len() <= 512 + '…'.len_utf8(), "{} bytes", body.len());
    assert!(
        logged(log::Level::Error, "HTTP 400, not retried: first-bytes-of-the-answer") >= 1,
        "the log shows the start of the answer"
    );

    // A short body is kept whole, without the marker.
    let short = Receiver::answering(400, b"bad labels\n".to_vec());
    let remote = RemoteWrite::builder(&short.url("/api/v1/write")).build(&registry).unwrap();
    let err = remote.send_once(&registry.flush()).unwrap_err();
    assert_eq!(err, ExportError::Rejected { status: 400, body: "bad labels".into() });

    // A retryable status keeps the start of its body too.
    let mut body = format!("a{}", "é".repeat(400)).into_bytes(); // the cut at 512 falls inside an 'é'
    body.extend_from_slice(b"tail");
    let busy = Receiver::answering(503, body);
    let remote = RemoteWrite::builder(&busy.url("/api/v1/write"))
        .backoff(Backoff::new().max_attempts(1))
        .build(&registry)
        .unwrap();
    let err = remote.send_once(&registry.flush()).unwrap_err();
    let ExportError::GaveUp { last, .. } = &err else { panic!("expected a give-up, got {err}") };
    assert!(last.starts_with("HTTP 503: aéé") && last.ends_with("é…"), "whole characters only: {last:?}");
}

// ---------------------------------------------------------------------------------------------
// (4) The queue, bounded in bytes.

#[test]
fn the_queue_stays_within_its_byte_bound_while_the_receiver_is_down() {
    let registry = Registry::builder().interval(Duration::from_millis(5)).build();
    let family = registry.counter("queued_requests").help("Requests").family(&["id"]).unwrap();
    for i in 0..5_000 {
        family.with(&[i.to_string().as_str()]).inc();
    }
    let tick = registry.counter("queued_ticks").build().unwrap();
    let batch = shardmetrics::export::remote_write::encode(&shardmetrics::export::remote_write::write_request(
        &registry.flush(),
        &[],
        0,
        shardmetrics::export::remote_write::RequestOptions { metadata: true, native_histograms: false },
    ))
    .unwrap()
    .len();
    let bound = batch * 7 / 2; // three batches fit, a fourth does not
                               // A closed port: every attempt fails at once; the first one's retry is a minute away, so
                               // every new snapshot waits in the queue.
    let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let exporter = RemoteWrite::builder(&format!("http://127.0.0.1:{port}/api/v1/write"))
        .interval(Duration::from_millis(5))
        .queue_capacity(100_000)
        .queue_bytes(bound)
        .backoff(Backoff::new().initial(Duration::from_secs(60)).max_attempts(100))
        .shutdown_timeout(Duration::ZERO)
        .start(&registry)
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while exporter.stats().dropped_batches < 5 {
        assert!(Instant::now() < deadline, "no drops: {:?}", exporter.stats());
        tick.inc();
        let s = exporter.stats();
        assert!(s.queued_bytes as usize <= bound && s.queued_batches <= 3, "over the bound {bound}: {s:?}");
        std::thread::sleep(Duration::from_millis(5));
    }
    let stats = exporter.shutdown();
    assert!(stats.peak_queued_bytes as usize <= bound, "peak over the bound {bound}: {stats:?}");
    assert!(stats.peak_queued_bytes as usize >= 2 * batch, "it did queue: {stats:?}");
    assert!(stats.dropped_batches >= 5 && stats.dropped_samples >= 5 * 5_000, "{stats:?}");
    assert_eq!((stats.queued_batches, stats.queued_bytes), (0, 0), "settled at shutdown: {stats:?}");
    let dropped =
        registry.flush().counter(self_metrics::EXPORT_SAMPLES, &[("exporter", "remote_write"), ("outcome", "dropped")]);
    assert_eq!(dropped, Some(stats.dropped_samples));
}
