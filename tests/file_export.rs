//! The file exporter: atomic replace under a polling reader, rotation and retention, and the
//! error path (counted, logged, retried next tick, never a panic).

use std::{
    fs, io,
    path::{Path, PathBuf},
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc,
    },
    time::{Duration, Instant, SystemTime},
};

use shardmetrics::self_metrics;
use shardmetrics::{
    export::{
        file::{FileExporter, FileFormat, FileMode},
        prometheus, ExportError, ExporterBuilder,
    },
    Registry, Unit,
};
use shardmetrics_test_support::logs::logged;

/// A directory removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        static N: AtomicU64 = AtomicU64::new(0);
        let p = std::env::temp_dir().join(format!(
            "shardmetrics-file-{}-{tag}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = fs::remove_dir_all(&p);
        fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }

    fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }

    fn names(&self) -> Vec<String> {
        let mut v: Vec<String> =
            fs::read_dir(&self.0).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
        v.sort();
        v
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// A registry with `n` labelled counters and a histogram, recorded into by a thread that
/// keeps changing every value (so consecutive files differ in content and length).
fn busy_registry(n: usize) -> (Registry, Arc<AtomicBool>, std::thread::JoinHandle<()>) {
    let registry = Registry::builder().interval(Duration::from_millis(1)).build();
    let family = registry.counter("file_requests").help("Requests").family(&["id"]).unwrap();
    let latency = registry.histogram("file_latency").unit(Unit::Microseconds).build().unwrap();
    let ids: Vec<String> = (0..n).map(|i| i.to_string()).collect();
    let stop = Arc::new(AtomicBool::new(false));
    let s = stop.clone();
    let writer = std::thread::spawn(move || {
        let mut i = 0u64;
        while !s.load(Ordering::Relaxed) {
            for id in &ids {
                family.with(&[id.as_str()]).add(i % 7 + 1);
            }
            latency.record(i % 5000);
            i += 1;
        }
    });
    (registry, stop, writer)
}

/// Sample lines of a text export.
fn sample_lines(text: &str) -> usize {
    text.lines().filter(|l| !l.starts_with('#')).count()
}

#[test]
fn readers_never_see_a_partial_prometheus_file() {
    let dir = TempDir::new("atomic");
    let path = dir.path("metrics.prom");
    let (registry, stop, writer) = busy_registry(1000);
    let deadline = Instant::now() + Duration::from_secs(20);
    while registry.flush().family("file_requests").len() < 1000 {
        assert!(Instant::now() < deadline, "the writer did not register its series");
        std::thread::sleep(Duration::from_millis(5));
    }
    let exporter = FileExporter::builder(&path)
        .interval(Duration::from_millis(1))
        .format(FileFormat::Prometheus)
        .start(&registry)
        .unwrap();
    // Every series is registered now (the exporter's self-metrics included): the number of
    // sample lines of every complete file from this snapshot on.
    let registered = registry.flush();
    let expected_samples = sample_lines(&prometheus::render(&registered));
    while exporter.stats().last_sent_seq < registered.seq() {
        assert!(Instant::now() < deadline, "the exporter wrote nothing: {:?}", exporter.stats());
        std::thread::sleep(Duration::from_millis(1));
    }

    let start = Instant::now();
    let (mut reads, mut distinct, mut last) = (0u64, 0u64, String::new());
    while start.elapsed() < Duration::from_millis(1500) {
        match fs::read_to_string(&path) {
            Ok(text) => {
                reads += 1;
                assert!(text.ends_with('\n'), "a file cut short ({} bytes)", text.len());
                assert_eq!(sample_lines(&text), expected_samples, "a partial or mixed file");
                assert!(text.starts_with("# TYPE file_latency_seconds histogram\n"), "{}", &text[..80]);
                assert!(text.contains("\n# HELP file_requests_total Requests\n"));
                if text != last {
                    distinct += 1;
                    last = text;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound && reads == 0 => {}
            Err(e) => panic!("the file vanished after the first write: {e}"),
        }
    }
    stop.store(true, Ordering::Relaxed);
    writer.join().unwrap();
    let stats = exporter.shutdown();
    assert!(stats.sent_batches >= 3, "{stats:?}");
    assert_eq!(stats.failed_batches, 0, "{stats:?}");
    assert!(reads >= 20 && distinct >= 3, "{reads} reads saw {distinct} distinct files");
    // The final snapshot was written, and no temporary file is left behind.
    // (The self-metrics keep changing after the final write; compare the recorded series.)
    let ours = |t: &str| t.lines().filter(|l| l.contains("file_")).map(str::to_owned).collect::<Vec<_>>();
    let final_text = fs::read_to_string(&path).unwrap();
    assert_eq!(ours(&final_text), ours(&prometheus::render(&registry.flush())), "shutdown wrote the last values");
    assert_eq!(dir.names(), ["metrics.prom"]);
}

#[cfg(feature = "json")]
#[test]
fn readers_never_see_a_partial_json_file() {
    let dir = TempDir::new("atomic-json");
    let path = dir.path("metrics.json");
    let (registry, stop, writer) = busy_registry(500);
    let exporter = FileExporter::builder(&path)
        .interval(Duration::from_millis(1))
        .format(FileFormat::Json)
        .start(&registry)
        .unwrap();
    let start = Instant::now();
    let mut seqs = Vec::new();
    while start.elapsed() < Duration::from_millis(1000) {
        if let Ok(text) = fs::read_to_string(&path) {
            let doc: serde_json::Value =
                serde_json::from_str(&text).unwrap_or_else(|e| panic!("unparsable file ({} bytes): {e}", text.len()));
            seqs.push(doc["seq"].as_u64().unwrap());
        }
    }
    stop.store(true, Ordering::Relaxed);
    writer.join().unwrap();
    let stats = exporter.shutdown();
    // (Thresholds are low on purpose: on a loaded 2-core machine a debug-build JSON render plus
    // two fsyncs can take tens of milliseconds.)
    seqs.dedup();
    assert!(seqs.len() >= 2, "the reader saw {} distinct files", seqs.len());
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "the file never goes back in time");
    assert!(stats.sent_batches >= 3 && stats.failed_batches == 0, "{stats:?}");
    assert_eq!(dir.names(), ["metrics.json"]);
}

/// `(seq, record)` of every record in an appended Prometheus file.
fn records(path: &Path) -> Vec<u64> {
    let text = fs::read_to_string(path).unwrap();
    text.lines()
        .filter_map(|l| l.strip_prefix("# shardmetrics snapshot seq="))
        .map(|rest| rest.split_once(' ').unwrap().0.parse().unwrap())
        .collect()
}

#[test]
fn append_rotates_by_size_and_keeps_max_files() {
    let dir = TempDir::new("rotate");
    let path = dir.path("m.prom");
    let registry = Registry::builder().manual().build();
    let c = registry.counter("rotations").build().unwrap();
    // Keep sequence numbers two digits wide so that every record has the same size.
    for _ in 0..10 {
        registry.flush();
    }
    let probe = FileExporter::builder(dir.path("probe.prom")).mode(FileMode::Append).build(&registry).unwrap();
    probe.write_once(&registry.flush()).unwrap();
    let record = fs::metadata(dir.path("probe.prom")).unwrap().len();
    fs::remove_file(dir.path("probe.prom")).unwrap();

    // Room for three records per file; two rotated files kept.
    let exporter = FileExporter::builder(&path)
        .mode(FileMode::Append)
        .rotate_bytes(3 * record + record / 2)
        .max_files(2)
        .build(&registry)
        .unwrap();
    let mut written = Vec::new();
    for _ in 0..14 {
        c.inc();
        let snap = registry.flush();
        written.push(snap.seq());
        exporter.write_once(&snap).unwrap();
        for name in dir.names() {
            let len = fs::metadata(dir.path(&name)).unwrap().len();
            assert!(len <= 3 * record + record / 2, "{name} is {len} bytes");
        }
    }
    assert_eq!(dir.names(), ["m.prom", "m.prom.1", "m.prom.2"]);
    // 14 records, 3 per file: files of 3,3,3,3,2 — the live file has the last 2, the rotated
    // ones the 6 before, and the oldest 6 were deleted.
    let kept: Vec<u64> =
        [dir.path("m.prom.2"), dir.path("m.prom.1"), path.clone()].iter().flat_map(|p| records(p)).collect();
    assert_eq!(kept, written[6..], "retained records are the newest, in order, none lost or doubled");
    assert_eq!(records(&path).len(), 2);
    // Each record is a complete text export.
    let live = fs::read_to_string(&path).unwrap();
    assert_eq!(live.matches("# TYPE rotations_total counter").count(), 2);
    let last_record = live.rsplit("# shardmetrics snapshot").next().unwrap();
    assert!(last_record.contains("\nrotations_total 14\n"), "{live}");
    let stats =
        registry.flush().counter(self_metrics::EXPORT_SAMPLES, &[("exporter", "file"), ("outcome", "sent")]).unwrap();
    assert!(stats > 0);
}

#[test]
fn retention_deletes_old_and_surplus_rotated_files() {
    let dir = TempDir::new("retention");
    let path = dir.path("m.prom");
    let registry = Registry::builder().manual().build();
    let exporter = FileExporter::builder(&path)
        .mode(FileMode::Append)
        .rotate_bytes(1) // every record gets a file of its own
        .max_files(5)
        .max_age(Duration::from_secs(3600))
        .build(&registry)
        .unwrap();
    for _ in 0..4 {
        exporter.write_once(&registry.flush()).unwrap();
    }
    assert_eq!(dir.names(), ["m.prom", "m.prom.1", "m.prom.2", "m.prom.3"]);
    // Age .2 and .3 past max_age; add a stray .9 past max_files and an unrelated file.
    let two_hours_ago = SystemTime::now() - Duration::from_secs(7200);
    for name in ["m.prom.2", "m.prom.3"] {
        fs::File::options().write(true).open(dir.path(name)).unwrap().set_modified(two_hours_ago).unwrap();
    }
    fs::write(dir.path("m.prom.9"), "stray").unwrap();
    fs::write(dir.path("m.prom.bak"), "not ours").unwrap();
    exporter.write_once(&registry.flush()).unwrap();
    // The write rotated (.1 → .2, .2 → .3, .3 → .4), then retention removed the two old files
    // (now .3 and .4) and the stray .9.
    assert_eq!(dir.names(), ["m.prom", "m.prom.1", "m.prom.2", "m.prom.bak"]);
    assert_eq!(records(&dir.path("m.prom.2")), [3]);
    assert_eq!(records(&dir.path("m.prom.1")), [4]);
    assert_eq!(records(&path), [5]);
}

#[test]
fn unwritable_directory_is_counted_logged_and_retried_next_tick() {
    logged(log::Level::Error, ""); // installs the capture
    let dir = TempDir::new("error");
    // A regular file where the directory should be: every write fails with ENOTDIR, even as root.
    let blocker = dir.path("not_a_dir");
    fs::write(&blocker, "x").unwrap();
    let path = blocker.join("metrics.prom");
    let registry = Registry::builder().interval(Duration::from_millis(5)).build();
    let c = registry.counter("file_errors_test").build().unwrap();

    let one_shot = FileExporter::builder(&path).build(&registry).unwrap();
    match one_shot.write_once(&registry.flush()) {
        Err(ExportError::Io { path: p, message }) => assert!(p.ends_with("metrics.prom") && !message.is_empty()),
        other => panic!("expected an I/O error, got {other:?}"),
    }

    // A failed write is retried at every tick (5 ms), with no backoff: 20 failures in a row
    // take about 100 ms (with the HTTP exporters' backoff, doubling up to 10 s, they took
    // minutes). Each is one attempt, given up and counted at once.
    let exporter = FileExporter::builder(&path).interval(Duration::from_millis(5)).start(&registry).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while exporter.stats().failed_batches < 20 && Instant::now() < deadline {
        c.inc();
        std::thread::sleep(Duration::from_millis(5));
    }
    let failing = exporter.stats();
    assert!(failing.failed_batches >= 20 && failing.sent_batches == 0, "retried at every tick: {failing:?}");
    // One attempt per snapshot. The counters of a running exporter are read one by one: an
    // attempt in flight is counted before its outcome, so attempts may be one ahead.
    let in_flight = failing.attempts - failing.failed_batches;
    assert!(in_flight <= 1 && failing.retries == 0, "one attempt per snapshot: {failing:?}");
    assert!(exporter.is_running(), "errors do not stop the exporter");
    let failed = registry.flush().counter(self_metrics::EXPORT_SAMPLES, &[("exporter", "file"), ("outcome", "failed")]);
    assert!(failed.is_some_and(|f| f >= failing.failed_samples), "{failed:?} {failing:?}");
    assert!(logged(log::Level::Error, "file exporter: giving up") >= 20, "each failure is logged");

    // Fix the directory: the next tick writes the file (2 s: a loaded machine's ticks, not a
    // backoff delay).
    fs::remove_file(&blocker).unwrap();
    fs::create_dir(&blocker).unwrap();
    let fixed = Instant::now();
    while exporter.stats().sent_batches == 0 {
        assert!(fixed.elapsed() < Duration::from_secs(2), "not written at the next tick: {:?}", exporter.stats());
        c.inc();
        std::thread::sleep(Duration::from_millis(5));
    }
    c.add(1000);
    let stats = exporter.shutdown();
    assert!(stats.sent_batches >= 1, "retried after the fix: {stats:?}");
    let text = fs::read_to_string(&path).unwrap();
    let total = registry.snapshot().counter("file_errors_test", &[]).unwrap();
    assert!(text.contains(&format!("file_errors_test_total {total}\n")), "final value written: {total}\n{text}");
    let mut names: Vec<String> =
        fs::read_dir(&blocker).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    names.sort();
    assert_eq!(names, ["metrics.prom"], "no temporary files left behind");
}
