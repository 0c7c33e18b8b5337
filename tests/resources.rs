//! The process/system collector against the kernel's own numbers in /proc and /sys.
//!
//! One test function on purpose: the test harness runs tests on parallel threads, and thread
//! and fd counts must not move under the comparison.
#![cfg(all(feature = "process", target_os = "linux"))]

use std::{
    collections::HashMap,
    io::{Read, Write},
    net::{TcpListener, TcpStream},
    time::Duration,
};

use shardmetrics::{collect::process, Registry, Snapshot};

fn read(path: &str) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// `key:   value kB` of /proc/self/status or /proc/meminfo, in bytes (or the plain number).
fn field(text: &str, key: &str) -> u64 {
    let line = text.lines().find(|l| l.starts_with(&format!("{key}:"))).unwrap_or_else(|| panic!("no {key}"));
    let mut parts = line[key.len() + 1..].split_whitespace();
    let n: u64 = parts.next().unwrap().parse().unwrap();
    if parts.next() == Some("kB") {
        n * 1024
    } else {
        n
    }
}

/// Fields of /proc/self/stat from field 3 on (index 0 = field 3).
fn stat_fields() -> Vec<u64> {
    let s = read("/proc/self/stat");
    s[s.rfind(')').unwrap() + 2..].split_whitespace().map(|f| f.parse().unwrap_or(0)).collect()
}

fn clk_tck() -> u64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100)
}

fn cpu_ms(tck: u64) -> u64 {
    let f = stat_fields();
    // utime is field 14, stime field 15.
    (f[14 - 3] + f[15 - 3]) * 1000 / tck
}

fn io(key: &str) -> Option<u64> {
    let text = std::fs::read_to_string("/proc/self/io").ok()?;
    Some(field(&text, key))
}

fn fd_count() -> u64 {
    std::fs::read_dir("/proc/self/fd").unwrap().count() as u64
}

fn net() -> HashMap<String, (u64, u64)> {
    let mut out = HashMap::new();
    for e in std::fs::read_dir("/sys/class/net").unwrap().flatten() {
        let dev = e.file_name().to_string_lossy().into_owned();
        let stat = |k: &str| -> Option<u64> {
            std::fs::read_to_string(format!("/sys/class/net/{dev}/statistics/{k}")).ok()?.trim().parse().ok()
        };
        if let (Some(rx), Some(tx)) = (stat("rx_bytes"), stat("tx_bytes")) {
            out.insert(dev, (rx, tx));
        }
    }
    out
}

fn gauge(snap: &Snapshot, name: &str) -> f64 {
    snap.gauge(name, &[]).unwrap_or_else(|| panic!("{name} missing"))
}

fn counter(snap: &Snapshot, name: &str) -> u64 {
    snap.counter(name, &[]).unwrap_or_else(|| panic!("{name} missing"))
}

/// Asserts `v` lies within `[lo - slack, hi + slack]`.
fn between(what: &str, v: f64, a: f64, b: f64, slack: f64) {
    let (lo, hi) = (a.min(b) - slack, a.max(b) + slack);
    assert!(lo <= v && v <= hi, "{what}: {v} not in [{lo}, {hi}]");
}

/// Spins until the process has used `ms` more CPU time (wall time varies on a shared machine).
fn burn_cpu(ms: u64, tck: u64) -> u64 {
    let target = cpu_ms(tck) + ms;
    let mut x = 0u64;
    while cpu_ms(tck) < target {
        for i in 0..10_000u64 {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(i);
        }
    }
    std::hint::black_box(x)
}

#[test]
fn process_and_system_metrics_match_proc() {
    let tck = clk_tck();
    let registry = Registry::builder().manual().build();
    process::builder().min_interval(Duration::ZERO).register(&registry).unwrap();

    // Threads and fds to count.
    let (park_tx, park_rx) = std::sync::mpsc::channel::<()>();
    let park_rx = std::sync::Arc::new(std::sync::Mutex::new(park_rx));
    let parked: Vec<_> = (0..5)
        .map(|_| {
            let rx = park_rx.clone();
            std::thread::spawn(move || {
                let _ = rx.lock().unwrap().recv();
            })
        })
        .collect();
    let files: Vec<std::fs::File> = (0..16).map(|_| std::fs::File::open("/proc/self/status").unwrap()).collect();
    burn_cpu(300, tck);

    // Disk: write and sync 8 MiB so the storage layer sees it (if this filesystem has one).
    let path = std::env::temp_dir().join(format!("shardmetrics-resources-{}", std::process::id()));
    {
        let mut f = std::fs::File::create(&path).unwrap();
        f.write_all(&vec![7u8; 8 << 20]).unwrap();
        f.sync_all().unwrap();
    }
    std::fs::remove_file(&path).unwrap();

    // Network: 1 MiB over loopback.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let server = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        let mut buf = Vec::new();
        s.read_to_end(&mut buf).unwrap();
        buf.len()
    });
    TcpStream::connect(addr).unwrap().write_all(&vec![1u8; 1 << 20]).unwrap();
    assert_eq!(server.join().unwrap(), 1 << 20);

    let (status0, cpu0, fds0, net0, mem0) =
        (read("/proc/self/status"), cpu_ms(tck), fd_count(), net(), read("/proc/meminfo"));
    let (rd0, wr0) = (io("read_bytes"), io("write_bytes"));
    let snap = registry.flush();
    let (status1, cpu1, fds1, net1, mem1) =
        (read("/proc/self/status"), cpu_ms(tck), fd_count(), net(), read("/proc/meminfo"));
    let (rd1, wr1) = (io("read_bytes"), io("write_bytes"));

    // Threads: main, this test's thread, 5 parked; nothing starts or ends during the flush.
    let mut threads = gauge(&snap, "process_threads");
    assert_eq!(field(&status0, "Threads"), field(&status1, "Threads"), "thread count moved during the flush");
    // The runtime may start or end a helper thread of its own between our /proc read and the
    // collector's (seen on a loaded machine): re-sample a few times before calling it a mismatch.
    for _ in 0..5 {
        if threads == field(&read("/proc/self/status"), "Threads") as f64 {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
        threads = gauge(&registry.flush(), "process_threads");
    }
    assert_eq!(threads, field(&read("/proc/self/status"), "Threads") as f64);
    assert!(threads >= 7.0, "{threads}");
    // Open fds: both counts include the directory handle of their own listing.
    let fds = gauge(&snap, "process_open_fds");
    assert_eq!(fds0, fds1);
    assert_eq!(fds, fds1 as f64, "process_open_fds vs /proc/self/fd");
    assert!(fds >= 16.0);
    assert!(gauge(&snap, "process_max_fds") >= fds);
    // Memory: as the kernel reports it, allowing for what the flush itself allocates.
    between(
        "resident",
        gauge(&snap, "process_resident_memory_bytes"),
        field(&status0, "VmRSS") as f64,
        field(&status1, "VmRSS") as f64,
        1024.0 * 1024.0,
    );
    between(
        "virtual",
        gauge(&snap, "process_virtual_memory_bytes"),
        field(&status0, "VmSize") as f64,
        field(&status1, "VmSize") as f64,
        4.0 * 1024.0 * 1024.0,
    );
    // CPU time: the OS total (ms), not a sum of absolute samples; one clock tick of slack.
    let cpu = counter(&snap, "process_cpu_seconds_total");
    let tick_ms = (1000 / tck) as f64;
    between("cpu ms", cpu as f64, cpu0 as f64, cpu1 as f64, tick_ms);
    assert!(cpu >= 300, "burned 300 ms of CPU, counter says {cpu} ms");
    let prom = shardmetrics::export::prometheus::render(&snap);
    let line = prom.lines().find(|l| l.starts_with("process_cpu_seconds_total ")).unwrap();
    let secs: f64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    assert!((secs - cpu as f64 / 1000.0).abs() < 1e-9, "exported in seconds: {line}");
    // Start time: starttime (field 22, ticks after boot) + btime.
    let btime = read("/proc/stat").lines().find_map(|l| l.strip_prefix("btime ")?.trim().parse::<u64>().ok()).unwrap();
    let start = btime + stat_fields()[22 - 3] / tck;
    between("start time", gauge(&snap, "process_start_time_seconds"), start as f64, start as f64, 1.0);
    // Disk bytes (the storage layer's view: tmpfs and some overlays report 0; then both are 0).
    if let (Some(rd0), Some(rd1), Some(wr0), Some(wr1)) = (rd0, rd1, wr0, wr1) {
        between("disk read", counter(&snap, "process_disk_read_bytes_total") as f64, rd0 as f64, rd1 as f64, 0.0);
        between("disk written", counter(&snap, "process_disk_written_bytes_total") as f64, wr0 as f64, wr1 as f64, 0.0);
        println!("disk: read {rd1} B, written {wr1} B (after writing and syncing 8 MiB)");
    }
    // System memory.
    assert_eq!(gauge(&snap, "system_memory_total_bytes"), field(&mem1, "MemTotal") as f64);
    between(
        "available",
        gauge(&snap, "system_memory_available_bytes"),
        field(&mem0, "MemAvailable") as f64,
        field(&mem1, "MemAvailable") as f64,
        64.0 * 1024.0 * 1024.0,
    );
    // Network: every interface, equal to the kernel's totals.
    for (dev, (rx1, tx1)) in &net1 {
        let (rx0, tx0) = net0[dev];
        let rx = snap.counter("system_network_receive_bytes_total", &[("device", dev)]).unwrap();
        let tx = snap.counter("system_network_transmit_bytes_total", &[("device", dev)]).unwrap();
        between(&format!("{dev} rx"), rx as f64, rx0 as f64, *rx1 as f64, 0.0);
        between(&format!("{dev} tx"), tx as f64, tx0 as f64, *tx1 as f64, 0.0);
    }
    let lo0 = snap.counter("system_network_receive_bytes_total", &[("device", "lo")]).unwrap();
    assert!(lo0 >= 1 << 20, "1 MiB went over loopback; lo rx = {lo0}");

    // A second sample adds only what changed: the counters still equal the OS totals.
    burn_cpu(100, tck);
    TcpStream::connect(addr).map(drop).ok(); // the listener is gone: a refused connect, a few bytes
    let (cpu2a, net2a) = (cpu_ms(tck), net());
    let snap2 = registry.flush();
    let (cpu2b, net2b) = (cpu_ms(tck), net());
    let cpu2 = counter(&snap2, "process_cpu_seconds_total");
    between("cpu ms, 2nd sample", cpu2 as f64, cpu2a as f64, cpu2b as f64, tick_ms);
    assert!(cpu2 >= cpu + 100, "{cpu} → {cpu2}");
    let lo2 = snap2.counter("system_network_receive_bytes_total", &[("device", "lo")]).unwrap();
    between("lo rx, 2nd sample", lo2 as f64, net2a["lo"].0 as f64, net2b["lo"].0 as f64, 0.0);
    let ratio = gauge(&snap2, "system_cpu_usage_ratio");
    assert!((0.0..=1.0).contains(&ratio), "system cpu ratio {ratio}");

    drop(files);
    drop(park_tx);
    for t in parked {
        t.join().unwrap();
    }

    // Rate limiting: a 1 s collector on a fast-flushing registry samples once.
    let slow = Registry::builder().manual().build();
    process::builder().min_interval(Duration::from_secs(1)).register(&slow).unwrap();
    for _ in 0..5 {
        slow.flush();
    }
    let cost = slow.flush().histogram("shardmetrics_process_collect_duration", &[]).unwrap().count();
    assert_eq!(cost, 1, "sampled {cost} times in 6 quick ticks with a 1 s interval");

    // The collector's own cost per sample (printed, not asserted: it depends on the machine
    // and on how many processes /proc lists).
    let procs = std::fs::read_dir("/proc")
        .unwrap()
        .filter(|e| e.as_ref().is_ok_and(|e| e.file_name().to_string_lossy().parse::<u32>().is_ok()))
        .count();
    for (label, b) in [
        ("full (process + system + network)", process::builder()),
        ("process only", process::builder().system(false).network(false)),
        ("process + system", process::builder().network(false)),
        ("process + network", process::builder().system(false)),
    ] {
        let r = Registry::builder().manual().build();
        let mut c = b.min_interval(Duration::ZERO).build(&r).unwrap();
        c.sample();
        let mut times: Vec<Duration> = (0..200).map(|_| c.sample()).collect();
        times.sort();
        let mean = times.iter().sum::<Duration>() / times.len() as u32;
        println!(
            "collector cost, {label}: mean {mean:?}, p50 {:?}, p99 {:?} per sample ({procs} processes in /proc)",
            times[100], times[198]
        );
    }
}
