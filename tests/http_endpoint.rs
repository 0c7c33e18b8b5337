//! The scrape endpoint over real loopback TCP: formats, negotiation, gzip, auth, limits, and
//! hostile clients (oversized headers, slowloris, garbage) that must not stop it serving others.
#![cfg(feature = "http")]

use std::{
    io::{Read, Write},
    net::{SocketAddr, TcpStream},
    time::{Duration, Instant},
};

use shardmetrics::{
    export::http::{Server, DEFAULT_LISTEN},
    Registry, Unit,
};

use common::{parse, Reply};
use shardmetrics_test_support as common;

fn request(addr: SocketAddr, method: &str, path: &str, headers: &[(&str, &str)]) -> Reply {
    common::request(addr, method, path, headers).unwrap()
}

fn get(addr: SocketAddr, path: &str) -> Reply {
    request(addr, "GET", path, &[])
}

fn registry_with_data() -> Registry {
    let r = Registry::builder().manual().build();
    let c = r.counter("served_total").help("Requests served").family(&["route"]).unwrap();
    c.with(&["/a\"b"]).add(5);
    let h = r.histogram("latency").help("Latency").unit(Unit::Nanoseconds).build().unwrap();
    for v in [1_000, 20_000, 3_000_000] {
        h.record(v);
    }
    r.flush();
    r
}

fn start(r: &Registry) -> Server {
    Server::builder().listen("127.0.0.1:0").start(r).unwrap()
}

#[test]
fn default_listen_is_loopback() {
    assert!(DEFAULT_LISTEN.starts_with("127.0.0.1:"));
}

#[test]
fn formats_and_content_types() {
    let r = registry_with_data();
    let server = start(&r);
    let addr = server.local_addr();

    let text = get(addr, "/metrics");
    assert_eq!(text.status, 200);
    assert_eq!(text.header("content-type"), Some("text/plain; version=0.0.4; charset=utf-8"));
    assert!(text.text().contains("served_total{route=\"/a\\\"b\"} 5\n"), "{}", text.text());
    assert!(text.text().contains("latency_seconds_count 3\n"));

    let prom_accept = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,\
                       text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
    let om = request(addr, "GET", "/metrics", &[("Accept", prom_accept)]);
    assert_eq!(om.status, 200);
    assert_eq!(om.header("content-type"), Some("application/openmetrics-text; version=1.0.0; charset=utf-8"));
    assert!(om.text().ends_with("# EOF\n"));

    let json = get(addr, "/metrics.json");
    assert_eq!(json.status, 200);
    assert_eq!(json.header("content-type"), Some("application/json"));
    let v: serde_json::Value = serde_json::from_slice(&json.body).unwrap();
    let series = v["series"].as_array().unwrap();
    assert!(series.iter().any(|s| s["name"] == "latency" && s["count"] == 3));

    let head = request(addr, "HEAD", "/metrics", &[]);
    assert_eq!(head.status, 200);
    assert!(head.body.is_empty());

    assert_eq!(get(addr, "/healthz").text(), "ok\n");
    assert_eq!(get(addr, "/nope").status, 404);
    let post = request(addr, "POST", "/metrics", &[("Content-Length", "0")]);
    assert_eq!(post.status, 405);
    assert_eq!(post.header("allow"), Some("GET, HEAD"));
}

#[test]
fn gzip_when_accepted() {
    let r = registry_with_data();
    let server = start(&r);
    let plain = get(server.local_addr(), "/metrics");
    let gz = request(server.local_addr(), "GET", "/metrics", &[("Accept-Encoding", "gzip, deflate")]);
    assert_eq!(gz.header("content-encoding"), Some("gzip"));
    let mut decoded = Vec::new();
    flate2::read::GzDecoder::new(&gz.body[..]).read_to_end(&mut decoded).unwrap();
    assert_eq!(decoded, plain.body);
    assert_eq!(plain.header("content-encoding"), None);
}

#[test]
fn bearer_and_basic_auth() {
    let r = registry_with_data();
    let server = Server::builder().listen("127.0.0.1:0").bearer_token("s3cret").start(&r).unwrap();
    let addr = server.local_addr();
    let none = get(addr, "/metrics");
    assert_eq!(none.status, 401);
    assert_eq!(none.header("www-authenticate"), Some("Bearer"));
    assert_eq!(request(addr, "GET", "/metrics", &[("Authorization", "Bearer wrong")]).status, 401);
    assert_eq!(request(addr, "GET", "/metrics", &[("Authorization", "Bearer s3cret")]).status, 200);
    assert_eq!(get(addr, "/healthz").status, 200, "liveness needs no secret");

    let server = Server::builder().listen("127.0.0.1:0").basic_auth("prom", "pw").start(&r).unwrap();
    let addr = server.local_addr();
    assert_eq!(get(addr, "/metrics").status, 401);
    // base64("prom:pw") = cHJvbTpwdw==
    assert_eq!(request(addr, "GET", "/metrics", &[("Authorization", "Basic cHJvbTpwdw==")]).status, 200);
    assert_eq!(request(addr, "GET", "/metrics", &[("Authorization", "Basic cHJvbTpwdX==")]).status, 401);
}

#[test]
fn concurrent_scrapes_during_recording_cost_one_render_per_snapshot() {
    let r = Registry::builder().manual().build();
    let c = r.counter("busy_total").build().unwrap();
    c.inc();
    r.flush();
    let server = start(&r);
    let addr = server.local_addr();
    // 16 scrapers of one unchanged snapshot: one render.
    std::thread::scope(|s| {
        for _ in 0..16 {
            s.spawn(|| assert_eq!(get(addr, "/metrics").status, 200));
        }
    });
    assert_eq!(server.render_count(), 1);

    // Scrapers while two threads record and a third flushes: every scrape succeeds and the
    // counter never goes backwards from one scrape to the next.
    let stop = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|s| {
        for _ in 0..2 {
            s.spawn(|| {
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    c.inc();
                }
            });
        }
        s.spawn(|| {
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                r.flush();
                std::thread::sleep(Duration::from_millis(2));
            }
        });
        let scrapers: Vec<_> = (0..4)
            .map(|_| {
                s.spawn(|| {
                    let mut last = 0u64;
                    for _ in 0..40 {
                        let reply = get(addr, "/metrics");
                        assert_eq!(reply.status, 200);
                        let text = reply.text();
                        let line = text.lines().find(|l| l.starts_with("busy_total ")).unwrap();
                        let v: u64 = line[11..].parse().unwrap();
                        assert!(v >= last, "{v} < {last}");
                        last = v;
                    }
                })
            })
            .collect();
        for s in scrapers {
            s.join().unwrap();
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
    });
    assert!(server.render_count() > 1);
}

#[test]
fn oversized_headers_are_refused_and_others_still_served() {
    let r = registry_with_data();
    let server = start(&r);
    let addr = server.local_addr();
    let big = "x".repeat(64 * 1024);
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let _ = s.write_all(format!("GET /metrics HTTP/1.1\r\nHost: x\r\nX-Big: {big}\r\n\r\n").as_bytes());
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw);
    if !raw.is_empty() {
        let reply = parse(&raw).unwrap();
        assert_eq!(reply.status, 431, "oversized head must be refused");
    }
    assert_eq!(get(addr, "/metrics").status, 200);
}

#[test]
fn garbage_is_answered_or_closed_and_others_still_served() {
    let r = registry_with_data();
    let server = start(&r);
    let addr = server.local_addr();
    for junk in
        [&b"\x00\x01\x02\xff\xfe garbage\r\n\r\n"[..], b"GET\r\n\r\n", b"GET / HTTP/9.9\r\n\r\n", &[0xffu8; 4096]]
    {
        let mut s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let _ = s.write_all(junk);
        let mut raw = Vec::new();
        let _ = s.read_to_end(&mut raw); // EOF (closed) or an error response, within the timeout
        if raw.windows(4).any(|w| w == b"\r\n\r\n") {
            assert!(parse(&raw).unwrap().status >= 400);
        }
    }
    assert_eq!(get(addr, "/metrics").status, 200);
}

#[test]
fn slowloris_clients_are_timed_out_and_others_still_served() {
    let r = registry_with_data();
    let server =
        Server::builder().listen("127.0.0.1:0").header_read_timeout(Duration::from_millis(300)).start(&r).unwrap();
    let addr = server.local_addr();
    let mut slow: Vec<TcpStream> = (0..8)
        .map(|_| {
            let mut s = TcpStream::connect(addr).unwrap();
            s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n").unwrap();
            s
        })
        .collect();
    // Others are served while the slow ones dribble.
    assert_eq!(get(addr, "/metrics").status, 200);
    let start = Instant::now();
    for s in &mut slow {
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let _ = s.write_all(b"X-Slow: 1\r\n");
        let mut buf = Vec::new();
        let _ = s.read_to_end(&mut buf); // the server closes the connection
    }
    assert!(start.elapsed() < Duration::from_secs(4), "slow clients were not cut off: {:?}", start.elapsed());
    assert_eq!(get(addr, "/metrics").status, 200);
}

/// At the cap a new connection is not refused: it takes the place of the connection that has
/// waited longest for a request head (closed after a short linger), while a younger waiting
/// one is left alone and is served when its request arrives.
#[test]
fn connection_cap_evicts_the_longest_waiting_connection() {
    let r = registry_with_data();
    let server = Server::builder().listen("127.0.0.1:0").max_connections(2).start(&r).unwrap();
    let addr = server.local_addr();
    let mut oldest = TcpStream::connect(addr).unwrap();
    std::thread::sleep(Duration::from_millis(50)); // accepted in this order
    let mut younger = TcpStream::connect(addr).unwrap();
    std::thread::sleep(Duration::from_millis(100)); // let the server accept them: it is full
    assert_eq!(get(addr, "/metrics").status, 200, "a new client must get in at the cap");

    oldest.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut buf = [0u8; 64];
    let closed = match oldest.read(&mut buf) {
        Ok(n) => n == 0,
        Err(e) => !matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut),
    };
    assert!(closed, "the longest waiter should have been closed");

    younger.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    younger.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").unwrap();
    let mut raw = Vec::new();
    let _ = younger.read_to_end(&mut raw);
    assert_eq!(parse(&raw).map(|r| r.status), Some(200), "the younger waiter must survive the eviction");
}

#[test]
fn shutdown_stops_serving() {
    let r = registry_with_data();
    let server = start(&r);
    let addr = server.local_addr();
    assert_eq!(get(addr, "/healthz").status, 200);
    server.shutdown();
    assert!(TcpStream::connect_timeout(&addr, Duration::from_millis(500)).is_err());
}

#[test]
fn json_windows_by_query() {
    let r = registry_with_data();
    let c = r.counter("win_total").build().unwrap();
    c.add(4);
    r.flush();
    let server = start(&r);
    let addr = server.local_addr();
    let ok = get(addr, "/metrics.json?window=1m");
    assert_eq!(ok.status, 200, "{}", ok.text());
    let v: serde_json::Value = serde_json::from_slice(&ok.body).unwrap();
    assert_eq!(v["window"]["length"], "1m");
    assert_eq!(v["windows"], serde_json::json!(["10s", "1m", "5m"]));
    let s = v["series"].as_array().unwrap().iter().find(|s| s["name"] == "win_total").unwrap();
    assert_eq!(s["window"]["increase"], 4);
    let h = v["series"].as_array().unwrap().iter().find(|s| s["name"] == "latency").unwrap();
    assert_eq!(h["window"]["count"], 3);

    let bad = get(addr, "/metrics.json?window=7m");
    assert_eq!(bad.status, 400);
    assert!(bad.text().contains("10s, 1m, 5m"), "{}", bad.text());
    assert_eq!(get(addr, "/metrics?window=1m").status, 400);
    assert_eq!(get(addr, "/metrics.json?window=").status, 400);
    assert_eq!(get(addr, "/metrics.json?other=1").status, 200);
}

/// Before the registry's first tick (a minute away here) the endpoint publishes a snapshot
/// itself: registered series are scraped at zero from the first scrape on, never an empty 200
/// that Prometheus would take as every series gone stale.
#[test]
fn registered_series_are_scraped_at_zero_before_the_first_tick() {
    let r = Registry::builder().interval(Duration::from_secs(60)).build();
    let _c = r.counter("early_total").help("Counted early").build().unwrap();
    let _h = r.histogram("early_latency").help("Early latency").unit(Unit::Nanoseconds).build().unwrap();
    assert_eq!(r.snapshot().seq(), 0, "the registry has not ticked yet");
    let server = start(&r);
    let addr = server.local_addr();

    let text = get(addr, "/metrics");
    assert_eq!(text.status, 200);
    let body = text.text();
    assert!(body.contains("early_total 0\n"), "{body}");
    assert!(body.contains("early_latency_seconds_count 0\n"), "{body}");
    assert!(r.snapshot().seq() >= 1);

    #[cfg(feature = "json")]
    {
        let r2 = Registry::builder().interval(Duration::from_secs(60)).build();
        let _c = r2.counter("early_json_total").build().unwrap();
        let server = start(&r2);
        let json = get(server.local_addr(), "/metrics.json");
        assert_eq!(json.status, 200);
        let v: serde_json::Value = serde_json::from_slice(&json.body).unwrap();
        assert!(v["seq"].as_u64() >= Some(1), "{v}");
        let series = v["series"].as_array().unwrap();
        assert!(series.iter().any(|s| s["name"] == "early_json_total" && s["value"] == 0), "{v}");
    }
}

/// Auth comes before the query string: an unauthenticated client with a bad `window` gets 401
/// and learns nothing about the configured windows.
#[test]
fn auth_is_checked_before_the_window() {
    let r = registry_with_data();
    let server = Server::builder().listen("127.0.0.1:0").bearer_token("s3cret").start(&r).unwrap();
    let addr = server.local_addr();
    for path in ["/metrics.json?window=7m", "/metrics?window=1m", "/metrics.json?window=", "/metrics.json?window=%00"] {
        let reply = get(addr, path);
        assert_eq!(reply.status, 401, "{path}: {}", reply.text());
        assert_eq!(reply.text(), "unauthorized\n", "{path}");
        assert!(!reply.text().contains("10s"), "{path}");
    }
    let authed = request(addr, "GET", "/metrics.json?window=7m", &[("Authorization", "Bearer s3cret")]);
    assert_eq!(authed.status, 400);
    assert!(authed.text().contains("10s, 1m, 5m"), "{}", authed.text());
}

/// An unknown `window` is quoted back cut to 64 characters, not echoed in full.
#[test]
fn a_long_bad_window_is_cut_in_the_error() {
    let r = registry_with_data();
    let server = start(&r);
    let long = "9".repeat(7 * 1024);
    let reply = get(server.local_addr(), &format!("/metrics.json?window={long}"));
    assert_eq!(reply.status, 400);
    let text = reply.text();
    assert!(text.len() < 300, "{} bytes: {}", text.len(), text.chars().take(200).collect::<String>());
    assert!(text.contains(&format!("\"{}…\" (7168 characters)", "9".repeat(64))), "{text}");
    assert!(text.contains("configured windows: 10s, 1m, 5m"), "{text}");
    // A short one is quoted whole.
    let short = get(server.local_addr(), "/metrics.json?window=7m");
    assert!(short.text().starts_with("unknown window \"7m\" "), "{}", short.text());
}
