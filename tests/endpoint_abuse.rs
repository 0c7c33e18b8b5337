//! The scrape endpoint under abuse that reconnects: slow-header clients filling every
//! connection must not keep a well-behaved scraper or a liveness probe out (issue #14).
//!
//! Its own test binary, so that no other endpoint test competes with the attack for the CPU.
#![cfg(feature = "http")]

use std::time::{Duration, Instant};

use shardmetrics::{export::http::Server, Registry};
use shardmetrics_test_support::{request_within, SlowClients};

/// 200 sockets (three times the default cap of 64 connections) each dribble a never-ending
/// request head at one byte per second and reconnect the moment they are closed, from the same
/// address as the good client. A good client polling `/metrics` and `/healthz` with a fresh
/// connection each time (as a liveness probe does) must still get its 200s, quickly.
#[test]
fn slow_clients_that_reconnect_do_not_starve_scrapes_or_health_checks() {
    let r = Registry::builder().manual().build();
    r.counter("served_total").help("Requests served").build().unwrap().add(3);
    r.flush();
    let server = Server::builder().listen("127.0.0.1:0").start(&r).unwrap();
    let addr = server.local_addr();

    let attack = SlowClients::start(addr, 200, 4, Duration::from_secs(1));
    std::thread::sleep(Duration::from_secs(1)); // every attacker connected: the server is full

    const N: usize = 200;
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut latencies = Vec::with_capacity(N);
    let mut failures: Vec<String> = Vec::new();
    for i in 0..N {
        if Instant::now() > deadline {
            failures.push("not sent: out of time".into());
            continue;
        }
        let path = if i % 2 == 0 { "/metrics" } else { "/healthz" };
        let start = Instant::now();
        let reply = request_within(addr, "GET", path, &[], Duration::from_secs(2));
        latencies.push(start.elapsed());
        match reply {
            Ok(reply) if reply.status == 200 => {
                if path == "/metrics" {
                    assert!(reply.text().contains("served_total 3\n"), "{}", reply.text());
                }
            }
            Ok(reply) => failures.push(format!("{path}: {}", reply.status)),
            Err(e) => failures.push(format!("{path}: {e}")),
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let reconnects = attack.reconnects();
    drop(attack);

    latencies.sort();
    let pct = |p: usize| latencies[(latencies.len() * p).div_ceil(100).max(1) - 1];
    let ok = N - failures.len();
    let report = format!(
        "{ok}/{N} answered 200; latency p50 {:?}, p99 {:?}, max {:?}; attacker reconnects: {reconnects}; \
         first failures: {:?}",
        pct(50),
        pct(99),
        latencies.last().unwrap(),
        &failures[..failures.len().min(5)],
    );
    eprintln!("{report}");
    // The attack did fill the server: attackers were closed or refused and came back.
    assert!(reconnects >= 100, "the attack never pressed the server: {report}");
    assert!(ok * 100 >= N * 95, "the good client was starved: {report}");
    assert!(pct(99) < Duration::from_millis(100), "the good client was served too slowly: {report}");
}
