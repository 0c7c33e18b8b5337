//! Helpers shared by the integration tests of `shardmetrics` and `shardmetrics-cli`: a minimal
//! HTTP/1.1 client over std TCP (so tests can also speak broken HTTP on purpose), real-server
//! process management, and [`tool`] / [`python_module`], the one rule for outside programs:
//!
//! * installed: the test runs;
//! * missing and `CI=true` (or `SHARDMETRICS_REQUIRE_TOOLS=1`): the test fails, saying how to
//!   install it — CI always runs every interop test;
//! * missing otherwise: the test returns early and prints one `SKIPPED` line to the terminal
//!   (past the test harness' output capture) naming the test, the missing program and
//!   `bash .ci/install`, so a machine with only Rust passes `cargo test` and says what it left out.

use std::{
    io::{Read, Write},
    net::{SocketAddr, TcpStream},
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
    pub fn text(&self) -> String {
        String::from_utf8(self.body.clone()).unwrap()
    }
}

/// A one-shot HTTP/1.1 request with `Connection: close`, read to EOF ([`request_within`] with
/// 10 s for connecting, writing and each read).
pub fn request(addr: SocketAddr, method: &str, path: &str, headers: &[(&str, &str)]) -> std::io::Result<Reply> {
    request_within(addr, method, path, headers, Duration::from_secs(10))
}

pub fn parse(raw: &[u8]) -> Option<Reply> {
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = std::str::from_utf8(&raw[..split]).ok()?;
    let mut lines = head.split("\r\n");
    let status = lines.next()?.split(' ').nth(1)?.parse().ok()?;
    let headers: Vec<(String, String)> =
        lines.filter_map(|l| l.split_once(':')).map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned())).collect();
    let mut body = raw[split + 4..].to_vec();
    let chunked = headers.iter().any(|(k, v)| k.eq_ignore_ascii_case("transfer-encoding") && v.contains("chunked"));
    if chunked {
        body = dechunk(&body);
    }
    Some(Reply { status, headers, body })
}

fn dechunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(eol) = b.windows(2).position(|w| w == b"\r\n") {
        let size = usize::from_str_radix(std::str::from_utf8(&b[..eol]).unwrap().split(';').next().unwrap().trim(), 16)
            .unwrap_or(0);
        if size == 0 {
            break;
        }
        out.extend_from_slice(&b[eol + 2..eol + 2 + size]);
        b = &b[eol + 2 + size + 2..];
    }
    out
}

/// Percent-encodes a query parameter value.
pub fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// A loopback port that was free a moment ago.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// How to get every outside program the tests use (Debian packages prometheus,
/// prometheus-pushgateway, prometheus-node-exporter; pip prometheus_client, protobuf,
/// grpcio-tools, opentelemetry-proto).
pub const INSTALL_HINT: &str = "`bash .ci/install` (as root) installs every outside program the tests use";

/// Whether a missing outside program fails the test (CI) instead of skipping it.
pub fn tools_required() -> bool {
    let set = |name: &str| std::env::var(name).is_ok_and(|v| !v.is_empty() && v != "0" && v != "false");
    set("CI") || set("SHARDMETRICS_REQUIRE_TOOLS")
}

/// Path of an outside program on PATH, or `None` after [`skip`] says why the test is skipped
/// (a failure under CI; see the crate doc).
pub fn tool(name: &str) -> Option<PathBuf> {
    let found = std::env::var_os("PATH")
        .and_then(|paths| std::env::split_paths(&paths).map(|p| p.join(name)).find(|p| p.is_file()));
    if found.is_none() {
        skip(&format!("`{name}` is not installed"));
    }
    found
}

/// Whether `python3` can import `module`; `false` after [`skip`] (a failure under CI).
pub fn python_module(module: &str) -> bool {
    let ok = Command::new("python3")
        .args(["-c", &format!("import {module}")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        skip(&format!("python3 cannot import `{module}`"));
    }
    ok
}

/// Reports a skipped test: under CI a panic, otherwise one line written straight to stderr
/// (the harness captures `eprintln!` of passing tests; a direct write reaches the terminal).
pub fn skip(why: &str) {
    let thread = std::thread::current();
    let test = thread.name().unwrap_or("this test");
    if tools_required() {
        panic!("{test} needs an outside program: {why}; {INSTALL_HINT}");
    }
    let line = format!("SKIPPED {test}: {why}; {INSTALL_HINT} (under CI=true a missing one fails)\n");
    let _ = std::io::Write::write_all(&mut std::io::stderr().lock(), line.as_bytes());
}

/// A child process that is killed when dropped.
pub struct ChildGuard {
    pub child: Child,
    pub dir: PathBuf,
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A fresh temporary directory under the target dir.
pub fn temp_dir(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("shardmetrics-{tag}-{}-{}", std::process::id(), free_port()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

pub fn spawn(program: &PathBuf, args: &[String], dir: PathBuf) -> ChildGuard {
    let log = std::fs::File::create(dir.join("server.log")).unwrap();
    let child = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap_or_else(|e| panic!("failed to start {}: {e}", program.display()));
    ChildGuard { child, dir }
}

/// Polls `f` until it returns `Some`, or fails after `timeout` with `what` and the server log.
pub fn wait_for<T>(timeout: Duration, guard: &ChildGuard, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        if Instant::now() > deadline {
            let log = std::fs::read_to_string(guard.dir.join("server.log")).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(30).collect();
            panic!(
                "timed out waiting for {what}; server log tail:\n{}",
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// A one-shot HTTP/1.1 request with `Connection: close`, read to EOF, with one `timeout` for the
/// connect and for each read and write, so a caller measuring a server under load is never
/// stuck longer than that on one request.
pub fn request_within(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    timeout: Duration,
) -> std::io::Result<Reply> {
    let mut s = TcpStream::connect_timeout(&addr, timeout)?;
    s.set_read_timeout(Some(timeout))?;
    s.set_write_timeout(Some(timeout))?;
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes())?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    parse(&raw).ok_or_else(|| std::io::Error::other("incomplete HTTP response"))
}

/// A slow-header ("slowloris") attack on a server: `sockets` connections, each sending a
/// request head that never ends, one byte per `every`, and reconnecting as soon as the server
/// closes it (or refuses it). Driven by `threads` threads over non-blocking sockets; stops and
/// closes every socket when dropped.
pub struct SlowClients {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    reconnects: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl SlowClients {
    pub fn start(addr: SocketAddr, sockets: usize, threads: usize, every: Duration) -> SlowClients {
        use std::sync::{
            atomic::{AtomicBool, AtomicUsize, Ordering},
            Arc,
        };
        let stop = Arc::new(AtomicBool::new(false));
        let reconnects = Arc::new(AtomicUsize::new(0));
        let threads = (0..threads.max(1))
            .map(|t| {
                let (stop, reconnects) = (stop.clone(), reconnects.clone());
                let mine = sockets / threads.max(1) + usize::from(t < sockets % threads.max(1));
                std::thread::spawn(move || {
                    // A head that never ends: a request line, then one header growing forever.
                    let head = |i: usize| -> u8 {
                        let start = b"GET /metrics HTTP/1.1\r\nHost: x\r\nX-Slow: ";
                        start.get(i).copied().unwrap_or(b'a')
                    };
                    struct Conn {
                        s: TcpStream,
                        sent: usize,
                        next: Instant,
                    }
                    let connect = || -> Option<Conn> {
                        let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(1)).ok()?;
                        s.write_all(&[head(0)]).ok()?;
                        s.set_nonblocking(true).ok()?;
                        Some(Conn { s, sent: 1, next: Instant::now() + every })
                    };
                    let mut conns: Vec<Option<Conn>> = (0..mine).map(|_| None).collect();
                    let mut buf = [0u8; 512];
                    while !stop.load(Ordering::Relaxed) {
                        for slot in conns.iter_mut() {
                            let alive = match slot {
                                None => false,
                                Some(c) => loop {
                                    match c.s.read(&mut buf) {
                                        Ok(0) => break false, // closed by the server
                                        Ok(_) => continue,    // a 503 or 408: read on to EOF
                                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                                            if Instant::now() >= c.next {
                                                if c.s.write(&[head(c.sent)]).is_err() {
                                                    break false;
                                                }
                                                c.sent += 1;
                                                c.next += every;
                                            }
                                            break true;
                                        }
                                        Err(_) => break false,
                                    }
                                },
                            };
                            if !alive {
                                if slot.is_some() {
                                    reconnects.fetch_add(1, Ordering::Relaxed);
                                }
                                *slot = connect();
                            }
                            if stop.load(Ordering::Relaxed) {
                                break;
                            }
                        }
                        std::thread::sleep(Duration::from_millis(2));
                    }
                })
            })
            .collect();
        SlowClients { stop, reconnects, threads }
    }

    /// How many times an attacking socket was closed (or refused) and opened again.
    pub fn reconnects(&self) -> usize {
        self.reconnects.load(std::sync::atomic::Ordering::Relaxed)
    }
}

impl Drop for SlowClients {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// Every `log` record of the test binary, so a test can check that a failure was reported
/// through `log`. One logger per process: the first call installs it.
pub mod logs {
    use std::sync::{Mutex, OnceLock};

    struct Capture;

    static RECORDS: Mutex<Vec<(log::Level, String)>> = Mutex::new(Vec::new());

    impl log::Log for Capture {
        fn enabled(&self, _: &log::Metadata<'_>) -> bool {
            true
        }
        fn log(&self, record: &log::Record<'_>) {
            RECORDS.lock().unwrap_or_else(|e| e.into_inner()).push((record.level(), record.args().to_string()));
        }
        fn flush(&self) {}
    }

    /// Installs the capturing logger (once per test binary; no other logger may be set).
    pub fn capture_logs() {
        static INIT: OnceLock<()> = OnceLock::new();
        INIT.get_or_init(|| {
            log::set_logger(&Capture).expect("no other logger in this test binary");
            log::set_max_level(log::LevelFilter::Debug);
        });
    }

    /// How many records at `level` contain `needle` (installs the logger if needed).
    pub fn logged(level: log::Level, needle: &str) -> usize {
        capture_logs();
        RECORDS
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .filter(|(l, m)| *l == level && m.contains(needle))
            .count()
    }
}

/// A real Prometheus server (Debian's `prometheus`) on a free loopback port, with its own
/// data directory, stopped and removed on drop.
pub struct Prometheus {
    pub guard: ChildGuard,
    /// Its HTTP API and UI.
    pub api: SocketAddr,
}

impl Prometheus {
    /// Starts Prometheus scraping `targets` every second (job `shardmetrics`) with the extra
    /// command-line `flags`; `None` (after the skip line, or a failure under `CI=true`) when it
    /// is not installed. Returns once it is ready.
    pub fn start(tag: &str, targets: &[SocketAddr], flags: &[&str]) -> Option<Prometheus> {
        let program = tool("prometheus")?;
        let dir = temp_dir(tag);
        let port = free_port();
        let mut config = "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n".to_owned();
        if !targets.is_empty() {
            let list: Vec<String> = targets.iter().map(|t| format!("'{t}'")).collect();
            config += &format!(
                "scrape_configs:\n  - job_name: shardmetrics\n    static_configs:\n      - targets: [{}]\n",
                list.join(", ")
            );
        }
        std::fs::write(dir.join("prometheus.yml"), config).unwrap();
        let mut args = vec![
            format!("--config.file={}", dir.join("prometheus.yml").display()),
            format!("--storage.tsdb.path={}", dir.join("data").display()),
            format!("--web.listen-address=127.0.0.1:{port}"),
            "--log.level=warn".to_owned(),
        ];
        args.extend(flags.iter().map(|f| f.to_string()));
        let guard = spawn(&program, &args, dir);
        let api: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        wait_for(Duration::from_secs(60), &guard, "prometheus to be ready", || {
            request(api, "GET", "/-/ready", &[]).ok().filter(|r| r.status == 200)
        });
        Some(Prometheus { guard, api })
    }

    /// The body of a successful `GET path` against its API, `None` on any failure.
    pub fn get(&self, path: &str) -> Option<Vec<u8>> {
        request(self.api, "GET", path, &[]).ok().filter(|r| r.status == 200).map(|r| r.body)
    }

    /// The raw JSON body of an instant query (`/api/v1/query`).
    pub fn query(&self, q: &str) -> Option<Vec<u8>> {
        self.get(&format!("/api/v1/query?query={}", urlencode(q)))
    }

    /// Polls `f` until it returns `Some`; see [`wait_for`].
    pub fn wait_for<T>(&self, timeout: Duration, what: &str, f: impl FnMut() -> Option<T>) -> T {
        wait_for(timeout, &self.guard, what, f)
    }
}
