//! High cardinality (issue #15): what a labelled counter series costs at 200k and 1M series,
//! all in, and how that grows with ticks when every series changes; the aggregator tick per
//! series; the first insert of a label tuple.
//!
//! One family `requests_total{route, status}` with ~20-byte routes; every series is
//! incremented from two threads (the first insert on one, then one more increment from a
//! second thread, so each series has cells in two shards), then the registry ticks `ticks`
//! times with every series changing in between. Memory is the process' resident set
//! (`/proc/self/status` VmRSS) before the registry exists and after, divided by the number of
//! series: catalogue, label strings, label index, cells of both threads, the published
//! snapshot and the window history — everything. The route strings the bench itself keeps
//! (~48 B a series) are freed before the last reading.
//!
//! Not yet beside the peers (prometheus-client, metrics-rs, prometheus): `benches/memory.rs`
//! has them for registration and recording cost; putting them here is part of issue #15.
//!
//! Each size runs in a child process of its own (this bench re-executed with `--one N TICKS`),
//! so one size's freed-but-retained heap does not hide in the next one's baseline.
//!
//! Output: a line per size on stdout and `target/shardmetrics-bench/cardinality.json`.
//! `--test` (criterion's smoke mode, used by CI; also any run without `--bench`) runs 10,000
//! series for 5 ticks and writes `cardinality-test.json`, asserting only that the figures are
//! sane. Run: `cargo bench --bench cardinality` (about a minute, ~2 GB of memory at 1M).

use std::time::Instant;

#[cfg(target_os = "linux")]
fn rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    let kb: u64 = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .expect("VmRSS in /proc/self/status");
    kb * 1024
}

#[cfg(not(target_os = "linux"))]
fn rss() -> u64 {
    0
}

struct Row {
    series: usize,
    ticks: usize,
    insert_ns: f64,
    first_tick_ns: f64,
    median_tick_ns: f64,
    bytes_after_one_tick: f64,
    bytes_after_ticks: f64,
}

fn measure(n: usize, ticks: usize) -> Row {
    const STATUS: [&str; 3] = ["200", "404", "500"];
    let base = rss();
    let registry = shardmetrics::Registry::builder().manual().max_series(n + 16).max_series_per_family(n + 16).build();
    let family = registry.counter("requests_total").family(&["route", "status"]).expect("valid family");
    let routes: Vec<String> = (0..n).map(|i| format!("/api/v1/route/{i:07}")).collect();
    let record = || {
        for (i, route) in routes.iter().enumerate() {
            family.with(&[route, STATUS[i % 3]]).inc();
        }
    };
    let start = Instant::now();
    record();
    let insert_ns = start.elapsed().as_nanos() as f64 / n as f64;
    std::thread::scope(|s| {
        s.spawn(record);
    });
    let start = Instant::now();
    let snap = registry.flush();
    let first_tick_ns = start.elapsed().as_nanos() as f64 / n as f64;
    assert_eq!(snap.family("requests_total").len(), n, "every series registered");
    drop(snap);
    let after_one = rss();
    let mut tick_ns = Vec::with_capacity(ticks);
    for _ in 0..ticks {
        record();
        let start = Instant::now();
        registry.flush();
        tick_ns.push(start.elapsed().as_nanos() as f64 / n as f64);
    }
    let total: u64 = registry
        .flush()
        .family("requests_total")
        .iter()
        .map(|s| match s.value() {
            shardmetrics::series::Value::Counter(c) => c.total,
            _ => 0,
        })
        .sum();
    assert_eq!(total, (n * (ticks + 2)) as u64, "nothing lost");
    drop(routes);
    let after = rss();
    tick_ns.sort_by(f64::total_cmp);
    Row {
        series: n,
        ticks,
        insert_ns,
        first_tick_ns,
        median_tick_ns: tick_ns.get(tick_ns.len() / 2).copied().unwrap_or(f64::NAN),
        bytes_after_one_tick: after_one.saturating_sub(base) as f64 / n as f64,
        bytes_after_ticks: after.saturating_sub(base) as f64 / n as f64,
    }
}

fn row_json(r: &Row) -> String {
    format!(
        "{{\"series\":{},\"ticks\":{},\"insert_ns\":{:.1},\"first_tick_ns_per_series\":{:.1},\
         \"median_tick_ns_per_series\":{:.1},\"bytes_per_series_after_one_tick\":{:.1},\
         \"bytes_per_series_after_ticks\":{:.1}}}",
        r.series, r.ticks, r.insert_ns, r.first_tick_ns, r.median_tick_ns, r.bytes_after_one_tick, r.bytes_after_ticks
    )
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    // A child measuring one size: print its row as JSON and exit.
    if let Some(i) = args.iter().position(|a| a == "--one") {
        let n = args[i + 1].parse().expect("series");
        let ticks = args[i + 2].parse().expect("ticks");
        let r = measure(n, ticks);
        assert!(r.insert_ns > 0.0 && r.median_tick_ns > 0.0, "timings measured");
        println!(
            "cardinality: {} series: first insert {:.0} ns, first tick {:.0} ns/series, median tick {:.0} ns/series; \
             {:.0} B/series after one tick, {:.0} B/series after {} more ticks with every series changing",
            r.series,
            r.insert_ns,
            r.first_tick_ns,
            r.median_tick_ns,
            r.bytes_after_one_tick,
            r.bytes_after_ticks,
            r.ticks
        );
        println!("json: {}", row_json(&r));
        return;
    }
    // `cargo bench` passes `--bench`; criterion's smoke mode adds `--test`; `cargo test
    // --benches` passes neither: anything but a real bench run is a smoke run.
    let smoke = args.iter().any(|a| a == "--test") || !args.iter().any(|a| a == "--bench");
    let sizes: &[(usize, usize)] = if smoke { &[(10_000, 5)] } else { &[(200_000, 100), (1_000_000, 20)] };
    let exe = std::env::current_exe().expect("this bench's path");
    let mut rows = Vec::new();
    for &(n, ticks) in sizes {
        let out = std::process::Command::new(&exe)
            .args(["--one", &n.to_string(), &ticks.to_string()])
            .output()
            .expect("run the measuring child");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "child failed: {stdout}{}", String::from_utf8_lossy(&out.stderr));
        for line in stdout.lines() {
            match line.strip_prefix("json: ") {
                Some(json) => rows.push(json.to_owned()),
                None => println!("{line}"),
            }
        }
    }
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/shardmetrics-bench");
    let _ = std::fs::create_dir_all(&dir);
    let file = dir.join(if smoke { "cardinality-test.json" } else { "cardinality.json" });
    std::fs::write(&file, format!("[{}]", rows.join(","))).expect("write the results");
}
