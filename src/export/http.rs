//! The scrape endpoint: `GET /metrics` (Prometheus text, OpenMetrics or, with the `protobuf`
//! feature, the Prometheus protobuf format, by the `Accept` header), `GET /metrics.json`,
//! `GET /healthz`.
//!
//! Runs hyper 1 on a current-thread tokio runtime in its own thread, never on a recording
//! thread. Every response is rendered from an owned `Arc<Snapshot>` (`load_full`, no arc-swap
//! guard held while a slow client reads) and cached per snapshot and format, so N concurrent
//! scrapers of one tick cost one render. Renders run on tokio's blocking pool so a big render
//! never stalls the accept loop.
//!
//! Safe defaults: binds `127.0.0.1:9464`; at most 64 connections and 16 requests in flight
//! (more get 503); 8 KiB of headers; a 5 s header-read timeout (hyper's, made effective by
//! installing its tokio timer) and a 30 s cap on a connection's life (slow or stuck clients are
//! dropped); unknown paths 404, wrong methods 405; gzip when the client accepts it; optional
//! bearer-token or basic auth compared in constant time and checked before the query string
//! (`/healthz` is exempt so liveness probes need no secret); an unknown `window` is quoted back
//! cut to 64 characters.
//!
//! Shedding slow clients: when all 64 connections are open, a new one is not refused; it takes
//! the place of the connection that has waited longest for a complete request head (a
//! slow-header client, or the keep-alive connection idle the longest). A client that sends its
//! request promptly is never the longest waiter, so slow clients, however many and however fast
//! they reconnect, cannot keep scrapes or `/healthz` out; they only lengthen the accept queue.
//! Clients are told apart by how far their requests got, not by address, which also works when
//! they share one (a proxy, a node, loopback), where a per-peer limit would not. Only when every
//! connection is in the middle of a request is a new one answered 503. An evicted connection is
//! held open, unserved, for 1 s before it is closed (up to twice the cap's number of them at a
//! time, so the endpoint holds at most 3 × 64 sockets besides any being answered 503), so a flood that reconnects the moment it
//! is closed does not keep the accept queue full of itself, with a good client waiting behind
//! it; and the listen queue holds 1024 connections, so such a flood does not make the kernel
//! drop well-behaved clients' handshakes (a 1 s SYN retransmit each).
//!
//! No empty scrapes: until the registry has published its first snapshot (up to one tick after
//! it was built, a minute with a long interval), a scrape publishes one itself
//! ([`Registry::flush`], once, also on a manual registry), so registered series are there, at
//! zero, from the first scrape on. Prometheus would record an empty answer as a successful
//! scrape with no samples and mark every series stale.

use std::{
    collections::HashMap,
    convert::Infallible,
    io::{self, Write},
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use base64::Engine;
use bytes::Bytes;
use http_body_util::Full;
use hyper::{
    body::Incoming,
    header::{self, HeaderValue},
    Method, Request, Response, StatusCode,
};
use hyper_util::rt::{TokioIo, TokioTimer};
use subtle::ConstantTimeEq;
use tokio::sync::{oneshot, Notify};

use crate::sync::{AtomicUsize, Ordering};
use crate::{Registry, Snapshot};

/// Default listen address: loopback only.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:9464";

/// Name of the endpoint's thread (it runs the server's current-thread runtime).
pub(crate) const THREAD_NAME: &str = "sm-http";
/// Name of the runtime's blocking threads, where renders run (tokio's default,
/// `tokio-runtime-worker`, is over Linux's 15 bytes).
pub(crate) const BLOCKING_THREAD_NAME: &str = "sm-http-render";

/// A response format the endpoint can produce.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Format {
    /// Prometheus text exposition 0.0.4.
    Prometheus,
    /// OpenMetrics 1.0 text.
    OpenMetrics,
    /// JSON (`export::json`).
    #[cfg(feature = "json")]
    Json,
    /// Prometheus protobuf exposition, length-delimited `MetricFamily` messages
    /// (`export::protobuf`). Binary: render it with [`Format::render_bytes_into`].
    #[cfg(feature = "protobuf")]
    Protobuf,
}

impl Format {
    /// The versioned Content-Type sent with this format.
    pub fn content_type(self) -> &'static str {
        match self {
            Format::Prometheus => crate::export::prometheus::CONTENT_TYPE,
            Format::OpenMetrics => crate::export::openmetrics::CONTENT_TYPE,
            #[cfg(feature = "json")]
            Format::Json => crate::export::json::CONTENT_TYPE,
            #[cfg(feature = "protobuf")]
            Format::Protobuf => crate::export::protobuf::CONTENT_TYPE,
        }
    }

    /// Whether the format is text (all but [`Format::Protobuf`]).
    pub fn is_text(self) -> bool {
        #[cfg(feature = "protobuf")]
        if self == Format::Protobuf {
            return false;
        }
        true
    }

    /// Renders a snapshot in a text format (with a windowed view for JSON). A binary format
    /// renders nothing here: use [`Format::render_bytes_into`] for those.
    pub fn render(self, snapshot: &Snapshot, window: Option<Duration>) -> String {
        let mut out = String::new();
        self.render_into(snapshot, window, &mut out);
        out
    }

    /// [`Format::render`], appended to `out` (a reused buffer: see
    /// [`crate::export::prometheus::render_into`]). Text formats only, as [`Format::render`].
    pub fn render_into(self, snapshot: &Snapshot, window: Option<Duration>, out: &mut String) {
        #[cfg(not(feature = "json"))]
        let _ = window; // only the JSON view has windows
        match self {
            Format::Prometheus => crate::export::prometheus::render_into(snapshot, out),
            Format::OpenMetrics => crate::export::openmetrics::render_into(snapshot, out),
            #[cfg(feature = "json")]
            Format::Json => out.push_str(&match window {
                Some(w) => crate::export::json::render_window(snapshot, w),
                None => crate::export::json::render(snapshot),
            }),
            #[cfg(feature = "protobuf")]
            Format::Protobuf => {}
        }
    }

    /// Renders a snapshot in any format, text or binary, appended to `out` (a reused buffer,
    /// as in [`Format::render_into`]). A text format renders into `out`'s own allocation when
    /// `out` is empty (as the endpoint's is), so this costs the text formats no copy.
    pub fn render_bytes_into(self, snapshot: &Snapshot, window: Option<Duration>, out: &mut Vec<u8>) {
        #[cfg(feature = "protobuf")]
        if self == Format::Protobuf {
            return crate::export::protobuf::render_into(snapshot, out);
        }
        if out.is_empty() {
            // An empty Vec is valid UTF-8: the String takes over its allocation, and gives it back.
            let mut text = String::from_utf8(std::mem::take(out)).unwrap_or_default();
            self.render_into(snapshot, window, &mut text);
            *out = text.into_bytes();
        } else {
            let mut text = String::new();
            self.render_into(snapshot, window, &mut text);
            out.extend_from_slice(text.as_bytes());
        }
    }

    /// A small index per format, for the per-format response counts.
    fn index(self) -> usize {
        match self {
            Format::Prometheus => 0,
            Format::OpenMetrics => 1,
            #[cfg(feature = "json")]
            Format::Json => 2,
            #[cfg(feature = "protobuf")]
            Format::Protobuf => 3,
        }
    }
}

/// How many formats [`Format::index`] numbers.
const FORMATS: usize = 4;

/// Picks the exposition format for an `Accept` header: the one the client ranks highest, and on
/// a tie the protobuf format (with the `protobuf` feature), then OpenMetrics, then text 0.0.4.
/// Prometheus servers send OpenMetrics with q=1, and with native histograms enabled the protobuf
/// format (`application/vnd.google.protobuf; proto=io.prometheus.client.MetricFamily;
/// encoding=delimited`) with q=1 before it. A missing or unparsable header gets text 0.0.4,
/// which every scraper understands.
pub fn negotiate(accept: Option<&str>) -> Format {
    let Some(accept) = accept else { return Format::Prometheus };
    let (mut om, mut text, mut pb) = (0.0f32, 0.0f32, 0.0f32);
    for range in accept.split(',') {
        let mut parts = range.split(';').map(str::trim);
        let media = parts.next().unwrap_or("").to_ascii_lowercase();
        let mut q = 1.0f32;
        let (mut version, mut proto, mut encoding) = (None, None, None);
        for p in parts {
            if let Some((k, v)) = p.split_once('=') {
                let v = Some(v.trim().trim_matches('"').to_owned());
                match k.trim().to_ascii_lowercase().as_str() {
                    "q" => q = v.and_then(|v| v.parse().ok()).unwrap_or(0.0),
                    "version" => version = v,
                    "proto" => proto = v,
                    "encoding" => encoding = v,
                    _ => {}
                }
            }
        }
        match media.as_str() {
            "application/vnd.google.protobuf"
                if proto.as_deref() == Some("io.prometheus.client.MetricFamily")
                    && encoding.as_deref() == Some("delimited") =>
            {
                pb = pb.max(q)
            }
            "application/openmetrics-text" if matches!(version.as_deref(), None | Some("1.0.0") | Some("0.0.1")) => {
                om = om.max(q)
            }
            "text/plain" if matches!(version.as_deref(), None | Some("0.0.4")) => text = text.max(q),
            "*/*" | "text/*" => text = text.max(q.min(text.max(q))),
            _ => {}
        }
    }
    #[cfg(feature = "protobuf")]
    if pb > 0.0 && pb >= om && pb >= text {
        return Format::Protobuf;
    }
    #[cfg(not(feature = "protobuf"))]
    let _ = pb;
    if om > 0.0 && om >= text {
        Format::OpenMetrics
    } else {
        Format::Prometheus
    }
}

/// Whether an `Accept-Encoding` header accepts gzip (with a non-zero q).
pub fn accepts_gzip(accept_encoding: Option<&str>) -> bool {
    accept_encoding.is_some_and(|h| {
        h.split(',').any(|e| {
            let mut parts = e.split(';').map(str::trim);
            let coding = parts.next().unwrap_or("");
            let q = parts
                .find_map(|p| p.strip_prefix("q=").or_else(|| p.strip_prefix("Q=")))
                .map_or(1.0, |q| q.parse::<f32>().unwrap_or(0.0));
            (coding.eq_ignore_ascii_case("gzip") || coding == "*") && q > 0.0
        })
    })
}

/// Configures the endpoint; [`ServerBuilder::start`] binds and serves.
#[derive(Debug, Clone)]
#[must_use = "a builder serves nothing until `start()`"]
pub struct ServerBuilder {
    listen: String,
    max_connections: usize,
    max_in_flight: usize,
    max_header_bytes: usize,
    header_read_timeout: Duration,
    connection_timeout: Duration,
    auth: Option<Vec<u8>>,
    auth_scheme: &'static str,
    gzip: bool,
}

impl Default for ServerBuilder {
    fn default() -> Self {
        ServerBuilder {
            listen: DEFAULT_LISTEN.to_owned(),
            max_connections: 64,
            max_in_flight: 16,
            max_header_bytes: 8 * 1024,
            header_read_timeout: Duration::from_secs(5),
            connection_timeout: Duration::from_secs(30),
            auth: None,
            auth_scheme: "Bearer",
            gzip: true,
        }
    }
}

impl ServerBuilder {
    /// Address to bind (default `127.0.0.1:9464`; port 0 picks a free one).
    pub fn listen(mut self, addr: impl Into<String>) -> Self {
        self.listen = addr.into();
        self
    }

    /// Most connections open at once (default 64). At the cap a new connection replaces the one
    /// that has waited longest for a request head; it is answered 503 and closed only when every
    /// open connection is in the middle of a request. Evicted connections are held open for 1 s
    /// before they are closed, at most twice this many at a time.
    pub fn max_connections(mut self, n: usize) -> Self {
        self.max_connections = n.max(1);
        self
    }

    /// Requests being rendered or written beyond this get 503 (default 16).
    pub fn max_in_flight(mut self, n: usize) -> Self {
        self.max_in_flight = n.max(1);
        self
    }

    /// Largest accepted request head in bytes (default 8 KiB; hyper's floor is 8 KiB).
    pub fn max_header_bytes(mut self, n: usize) -> Self {
        self.max_header_bytes = n.max(8 * 1024);
        self
    }

    /// Time a client has to send a request head (default 5 s).
    pub fn header_read_timeout(mut self, d: Duration) -> Self {
        self.header_read_timeout = d;
        self
    }

    /// Longest a connection may stay open, reading or writing (default 30 s).
    pub fn connection_timeout(mut self, d: Duration) -> Self {
        self.connection_timeout = d;
        self
    }

    /// Require `Authorization: Bearer <token>`.
    pub fn bearer_token(mut self, token: &str) -> Self {
        self.auth = Some(format!("Bearer {token}").into_bytes());
        self.auth_scheme = "Bearer";
        self
    }

    /// Require HTTP basic auth with these credentials.
    pub fn basic_auth(mut self, user: &str, password: &str) -> Self {
        let creds = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
        self.auth = Some(format!("Basic {creds}").into_bytes());
        self.auth_scheme = "Basic";
        self
    }

    /// Compress responses for clients that accept gzip (default on).
    pub fn gzip(mut self, on: bool) -> Self {
        self.gzip = on;
        self
    }

    /// Binds the address and starts serving on a thread of its own.
    pub fn start(self, registry: &Registry) -> io::Result<Server> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .max_blocking_threads(4)
            .thread_name(BLOCKING_THREAD_NAME)
            .build()?;
        let listener = {
            let _in_runtime = runtime.enter(); // the listener registers with this runtime's reactor
            bind(&self.listen)?
        };
        let addr = listener.local_addr()?;
        let state = Arc::new(State {
            registry: registry.clone(),
            cache: Mutex::new(HashMap::new()),
            in_flight: AtomicUsize::new(0),
            renders: AtomicUsize::new(0),
            served: std::array::from_fn(|_| AtomicUsize::new(0)),
            first_publish: Mutex::new(()),
            config: self,
        });
        let (stop_tx, stop_rx) = oneshot::channel();
        let serving = state.clone();
        let thread = std::thread::Builder::new()
            .name(THREAD_NAME.into())
            .spawn(move || runtime.block_on(serve(listener, serving, stop_rx)))?;
        Ok(Server { addr, state: Arc::downgrade(&state), stop: Some(stop_tx), thread: Some(thread) })
    }
}

/// A running endpoint. Dropping it (or [`Server::shutdown`]) stops it.
#[derive(Debug)]
pub struct Server {
    addr: SocketAddr,
    state: std::sync::Weak<State>,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Server {
    /// A builder with the safe defaults.
    pub fn builder() -> ServerBuilder {
        ServerBuilder::default()
    }

    /// The bound address (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// How many renders the endpoint has done (one per snapshot and format that was asked for,
    /// however many scrapers asked).
    pub fn render_count(&self) -> usize {
        self.state.upgrade().map_or(0, |s| s.renders.load(Ordering::Relaxed))
    }

    /// How many successful `/metrics` or `/metrics.json` responses the endpoint has sent in
    /// `format` (which format scrapers negotiate, e.g. whether Prometheus took protobuf).
    pub fn served_count(&self, format: Format) -> usize {
        self.state.upgrade().map_or(0, |s| s.served[format.index()].load(Ordering::Relaxed))
    }

    /// `http://addr/metrics`.
    pub fn url(&self) -> String {
        format!("http://{}/metrics", self.addr)
    }

    /// Stops accepting, closes connections and joins the server thread.
    pub fn shutdown(mut self) {
        self.stop_now();
    }

    fn stop_now(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop_now();
    }
}

/// One cached render: the snapshot it came from, the body, and its gzip form once asked for.
struct Cached {
    seq: u64,
    taken_at: std::time::SystemTime,
    body: Bytes,
    gzip: Option<Bytes>,
}

type CacheSlot = Arc<Mutex<Option<Cached>>>;

struct State {
    registry: Registry,
    /// One slot per (format, window): bounded by the formats × configured windows.
    cache: Mutex<HashMap<(Format, Option<Duration>), CacheSlot>>,
    in_flight: AtomicUsize,
    renders: AtomicUsize,
    /// Successful responses per format ([`Format::index`]).
    served: [AtomicUsize; FORMATS],
    /// Serialises [`first_publish`].
    first_publish: Mutex<()>,
    config: ServerBuilder,
}

/// Length of the listen queue. std's 128 is less than one flood of reconnecting clients: past
/// it the kernel drops handshakes, and a well-behaved client waits a 1 s SYN retransmit. (The
/// kernel caps it at `net.core.somaxconn`, 4096 by default.)
const LISTEN_BACKLOG: u32 = 1024;

/// Binds the first address `listen` resolves to that accepts a bind. Needs a runtime context.
fn bind(listen: &str) -> io::Result<tokio::net::TcpListener> {
    use std::net::ToSocketAddrs;
    let mut last = io::Error::new(io::ErrorKind::InvalidInput, format!("{listen}: resolves to no address"));
    for addr in listen.to_socket_addrs()? {
        let socket = if addr.is_ipv4() { tokio::net::TcpSocket::new_v4()? } else { tokio::net::TcpSocket::new_v6()? };
        // As std's `TcpListener::bind` does on Unix: rebind at once after a restart.
        #[cfg(unix)]
        socket.set_reuseaddr(true)?;
        match socket.bind(addr).and_then(|()| socket.listen(LISTEN_BACKLOG)) {
            Ok(listener) => return Ok(listener),
            Err(e) => last = e,
        }
    }
    Err(last)
}

async fn serve(listener: tokio::net::TcpListener, state: Arc<State>, mut stop: oneshot::Receiver<()>) {
    let connections = Arc::new(Connections::new(state.config.max_connections));
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(state.config.header_read_timeout)
        .max_buf_size(state.config.max_header_bytes)
        .keep_alive(true);
    let http = Arc::new(http);
    loop {
        let (stream, _peer) = tokio::select! {
            _ = &mut stop => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                // Out of file descriptors and the like: back off briefly, keep serving.
                Err(_) => { tokio::time::sleep(Duration::from_millis(50)).await; continue; }
            },
        };
        let _ = stream.set_nodelay(true);
        let Some(conn) = connections.admit() else {
            tokio::spawn(refuse(stream));
            continue;
        };
        let (state, http) = (state.clone(), http.clone());
        let lifetime = state.config.connection_timeout;
        let connections = connections.clone();
        tokio::spawn(async move {
            let evicted = conn.evicted.clone();
            let conn = Arc::new(conn);
            let service = hyper::service::service_fn(move |req| {
                let (state, request) = (state.clone(), conn.begin_request());
                async move {
                    let response = handle(req, &state).await;
                    drop(request);
                    Ok::<_, Infallible>(response)
                }
            });
            let mut serving = http.serve_connection(TokioIo::new(stream), service);
            tokio::select! {
                _ = &mut serving => {}
                // The lifetime cap also bounds slow readers, which hyper has no write timeout for.
                _ = tokio::time::sleep(lifetime) => {}
                _ = evicted.notified() => {
                    let stream = serving.into_parts().io;
                    if let Some(_held) = connections.hold() {
                        tokio::time::sleep(EVICTED_LINGER).await;
                    }
                    drop(stream);
                }
            }
        });
        // Let the new connection's task run (and read its request head, if sent) before the next
        // accept: under a flood, one burst of accepts could otherwise evict it unread.
        tokio::task::yield_now().await;
    }
}

/// The open connections, and for each whether it is waiting for a request head and since when.
///
/// When all `max` are open, a new connection evicts the one that has waited longest for a
/// complete request head (a slow client, or a keep-alive connection idle the longest) rather
/// than being refused: a client that sends its head promptly is never the oldest waiter, so
/// slow clients can occupy connections but cannot keep anyone else out. Only when every
/// connection is in the middle of a request is a new one refused (503).
struct Connections {
    max: usize,
    table: Mutex<ConnTable>,
    held: AtomicUsize,
}

/// How long an evicted connection is held open, unserved, before it is closed: a flood that
/// reconnects the moment it is closed would otherwise keep the accept queue full (a good client
/// waits behind every attacker in it) and the server busy evicting.
const EVICTED_LINGER: Duration = Duration::from_secs(1);

/// Evicted connections held at once, per connection of the cap; past it they are closed at once.
/// The endpoint's sockets stay under `(1 + HELD_PER_CONNECTION) × max_connections`.
const HELD_PER_CONNECTION: usize = 2;

struct Held<'a>(&'a AtomicUsize);

impl Drop for Held<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

#[derive(Default)]
struct ConnTable {
    next_id: u64,
    open: HashMap<u64, Open>,
}

struct Open {
    /// `None` while a request is being handled.
    waiting_since: Option<Instant>,
    evicted: Arc<Notify>,
}

impl Connections {
    fn new(max: usize) -> Self {
        Connections { max, table: Mutex::new(ConnTable::default()), held: AtomicUsize::new(0) }
    }

    /// A place among the held evicted connections, if one is free.
    fn hold(&self) -> Option<Held<'_>> {
        if self.held.fetch_add(1, Ordering::Relaxed) >= HELD_PER_CONNECTION * self.max {
            self.held.fetch_sub(1, Ordering::Relaxed);
            return None;
        }
        Some(Held(&self.held))
    }

    fn table(&self) -> std::sync::MutexGuard<'_, ConnTable> {
        self.table.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Registers a new connection, evicting the longest waiter if all are open; `None` if
    /// every open connection is mid-request.
    fn admit(self: &Arc<Self>) -> Option<Conn> {
        let mut table = self.table();
        if table.open.len() >= self.max {
            let victim = longest_waiting(table.open.iter().map(|(id, c)| (*id, c.waiting_since)))?;
            if let Some(open) = table.open.remove(&victim) {
                open.evicted.notify_one();
            }
        }
        let id = table.next_id;
        table.next_id += 1;
        let evicted = Arc::new(Notify::new());
        table.open.insert(id, Open { waiting_since: Some(Instant::now()), evicted: evicted.clone() });
        Some(Conn { id, connections: self.clone(), evicted })
    }

    fn set_waiting(&self, id: u64, waiting: bool) {
        if let Some(open) = self.table().open.get_mut(&id) {
            open.waiting_since = waiting.then(Instant::now);
        }
    }
}

/// The id of the connection waiting longest for a request head, if any is waiting.
fn longest_waiting(open: impl Iterator<Item = (u64, Option<Instant>)>) -> Option<u64> {
    open.filter_map(|(id, since)| Some((since?, id))).min().map(|(_, id)| id)
}

/// One admitted connection; leaves the table when its task ends.
struct Conn {
    id: u64,
    connections: Arc<Connections>,
    evicted: Arc<Notify>,
}

impl Conn {
    /// Marks the connection busy (not evictable) until the returned guard drops.
    fn begin_request(self: &Arc<Self>) -> InRequest {
        self.connections.set_waiting(self.id, false);
        InRequest(self.clone())
    }
}

impl Drop for Conn {
    fn drop(&mut self) {
        self.connections.table().open.remove(&self.id);
    }
}

/// A request in progress on a connection; when it ends (the response handed to hyper to write)
/// the connection waits for the next head again.
struct InRequest(Arc<Conn>);

impl Drop for InRequest {
    fn drop(&mut self) {
        self.0.connections.set_waiting(self.0.id, true);
    }
}

/// Over the connection cap: a minimal 503 and close, without reading the request.
async fn refuse(mut stream: tokio::net::TcpStream) {
    use tokio::io::AsyncWriteExt;
    let msg = b"HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\nContent-Length: 20\r\nRetry-After: 1\r\n\r\ntoo many connections";
    let _ = tokio::time::timeout(Duration::from_secs(1), stream.write_all(msg)).await;
    let _ = stream.shutdown().await;
}

fn plain(status: StatusCode, body: &'static str) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *r.status_mut() = status;
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    r
}

/// Decrements the in-flight count when a request finishes, however it finishes.
struct InFlight<'a>(&'a AtomicUsize);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

async fn handle(req: Request<Incoming>, state: &Arc<State>) -> Response<Full<Bytes>> {
    let path = req.uri().path();
    let format = match path {
        "/metrics" => negotiate(req.headers().get(header::ACCEPT).and_then(|v| v.to_str().ok())),
        #[cfg(feature = "json")]
        "/metrics.json" => Format::Json,
        "/healthz" => {
            return match *req.method() {
                Method::GET | Method::HEAD => plain(StatusCode::OK, "ok\n"),
                _ => method_not_allowed(),
            }
        }
        _ => return plain(StatusCode::NOT_FOUND, "not found: try /metrics, /metrics.json or /healthz\n"),
    };
    if !matches!(*req.method(), Method::GET | Method::HEAD) {
        return method_not_allowed();
    }
    // Before the query is looked at: an unauthenticated client learns nothing from its errors
    // (the configured windows, say).
    if let Some(expected) = &state.config.auth {
        let given = req.headers().get(header::AUTHORIZATION).map(|v| v.as_bytes()).unwrap_or(b"");
        if !bool::from(given.ct_eq(expected.as_slice())) {
            let mut r = plain(StatusCode::UNAUTHORIZED, "unauthorized\n");
            let challenge = if state.config.auth_scheme == "Basic" { "Basic realm=\"shardmetrics\"" } else { "Bearer" };
            r.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static(challenge));
            return r;
        }
    }
    if state.registry.snapshot().seq() == 0 {
        // Nothing published yet (the first tick is up to an interval away): publish now, off
        // the runtime thread, rather than answer a successful scrape with no series.
        let st = state.clone();
        let _ = tokio::task::spawn_blocking(move || first_publish(&st)).await;
    }
    let window = match window_param(req.uri().query()) {
        Ok(None) => None,
        Ok(Some(w)) => {
            let configured = state.registry.snapshot().windows().to_vec();
            match crate::window::parse_duration(&w).filter(|d| configured.contains(d)) {
                Some(d) if format_is_json(format) => Some(d),
                _ => return bad_window(&w, &configured),
            }
        }
        Err(()) => return plain(StatusCode::BAD_REQUEST, "malformed query string\n"),
    };
    if state.in_flight.fetch_add(1, Ordering::Relaxed) >= state.config.max_in_flight {
        state.in_flight.fetch_sub(1, Ordering::Relaxed);
        let mut r = plain(StatusCode::SERVICE_UNAVAILABLE, "too many requests in flight\n");
        r.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        return r;
    }
    let _guard = InFlight(&state.in_flight);
    let gzip =
        state.config.gzip && accepts_gzip(req.headers().get(header::ACCEPT_ENCODING).and_then(|v| v.to_str().ok()));
    let st = state.clone();
    let rendered = tokio::task::spawn_blocking(move || cached_render(&st, format, window, gzip)).await;
    let Ok((body, taken_at)) = rendered else {
        return plain(StatusCode::INTERNAL_SERVER_ERROR, "render failed\n");
    };
    state.served[format.index()].fetch_add(1, Ordering::Relaxed);
    let mut r = Response::new(Full::new(body));
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(format.content_type()));
    h.insert(header::VARY, HeaderValue::from_static("Accept, Accept-Encoding"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if gzip {
        h.insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
    }
    if let Ok(v) = HeaderValue::from_str(&httpdate(taken_at)) {
        h.insert(header::LAST_MODIFIED, v);
    }
    r
}

/// Publishes the registry's first snapshot if nobody has yet; concurrent first scrapers wait
/// for the one flush.
fn first_publish(state: &State) {
    let _one_at_a_time = state.first_publish.lock().unwrap_or_else(|e| e.into_inner());
    if state.registry.snapshot().seq() == 0 {
        state.registry.flush();
    }
}

fn format_is_json(format: Format) -> bool {
    #[cfg(feature = "json")]
    {
        format == Format::Json
    }
    #[cfg(not(feature = "json"))]
    {
        let _ = format;
        false
    }
}

/// The `window` query parameter, if any. `Err` for a malformed query.
fn window_param(query: Option<&str>) -> Result<Option<String>, ()> {
    let Some(q) = query else { return Ok(None) };
    for pair in q.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        if k == "window" {
            if v.is_empty() || !v.bytes().all(|b| b.is_ascii_alphanumeric()) {
                return Err(());
            }
            return Ok(Some(v.to_owned()));
        }
    }
    Ok(None)
}

/// Longest part of an unknown `window` value quoted back in the error.
const ECHO_MAX_CHARS: usize = 64;

fn bad_window(asked: &str, configured: &[Duration]) -> Response<Full<Bytes>> {
    let list: Vec<String> = configured.iter().map(|d| crate::window::format_duration(*d)).collect();
    let asked = match asked.char_indices().nth(ECHO_MAX_CHARS) {
        Some((cut, _)) => {
            let shown = format!("{}…", &asked[..cut]);
            format!("{shown:?} ({} characters)", asked.chars().count())
        }
        None => format!("{asked:?}"),
    };
    let body =
        format!("unknown window {asked} (windows apply to /metrics.json); configured windows: {}\n", list.join(", "));
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = StatusCode::BAD_REQUEST;
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    r
}

fn method_not_allowed() -> Response<Full<Bytes>> {
    let mut r = plain(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n");
    r.headers_mut().insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
    r
}

/// The body for `format` from the latest snapshot, rendering (and compressing) only if this
/// snapshot has not been rendered in this format yet. Concurrent callers wait on the slot's
/// mutex and reuse the one render.
fn cached_render(
    state: &State,
    format: Format,
    window: Option<Duration>,
    gzip: bool,
) -> (Bytes, std::time::SystemTime) {
    let snapshot = state.registry.snapshot();
    let slot = state.cache.lock().unwrap_or_else(|e| e.into_inner()).entry((format, window)).or_default().clone();
    let mut slot = slot.lock().unwrap_or_else(|e| e.into_inner());
    if slot.as_ref().is_none_or(|c| c.seq != snapshot.seq()) {
        state.renders.fetch_add(1, Ordering::Relaxed);
        // Render into the previous body's buffer when no response still holds it: its pages
        // are mapped already (a fresh 60 MB body at 1M series costs more in page faults than in
        // rendering), and the old and new bodies are never resident together.
        let mut buf = match slot.take().map(|c| c.body.try_into_mut()) {
            Some(Ok(old)) => {
                let mut v = Vec::from(old);
                v.clear();
                v
            }
            _ => Vec::new(),
        };
        format.render_bytes_into(&snapshot, window, &mut buf);
        *slot = Some(Cached { seq: snapshot.seq(), taken_at: snapshot.taken_at(), body: Bytes::from(buf), gzip: None });
    }
    let cached = slot.as_mut().expect("filled above");
    if !gzip {
        return (cached.body.clone(), cached.taken_at);
    }
    if cached.gzip.is_none() {
        let mut enc =
            flate2::write::GzEncoder::new(Vec::with_capacity(cached.body.len() / 4), flate2::Compression::fast());
        // Writing to a Vec cannot fail.
        let _ = enc.write_all(&cached.body);
        cached.gzip = Some(Bytes::from(enc.finish().unwrap_or_default()));
    }
    (cached.gzip.clone().expect("filled above"), cached.taken_at)
}

/// RFC 7231 IMF-fixdate, e.g. `Sun, 06 Nov 1994 08:49:37 GMT`.
fn httpdate(t: std::time::SystemTime) -> String {
    let secs = t.duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (h, m, s) = (rem / 3600, rem % 3600 / 60, rem % 60);
    // Civil-from-days (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let mo = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(mo <= 2);
    const WD: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MO: [&str; 12] = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
    format!("{}, {d:02} {} {y} {h:02}:{m:02}:{s:02} GMT", WD[(days % 7) as usize], MO[(mo - 1) as usize])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn negotiation() {
        assert_eq!(negotiate(None), Format::Prometheus);
        assert_eq!(negotiate(Some("*/*")), Format::Prometheus);
        assert_eq!(negotiate(Some("text/plain;version=0.0.4")), Format::Prometheus);
        // What Prometheus 2.x sends.
        let prom = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,\
                    text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
        assert_eq!(negotiate(Some(prom)), Format::OpenMetrics);
        assert_eq!(negotiate(Some("application/openmetrics-text; version=1.0.0; charset=utf-8")), Format::OpenMetrics);
        assert_eq!(negotiate(Some("application/openmetrics-text;q=0.2,text/plain;q=0.9")), Format::Prometheus);
        assert_eq!(negotiate(Some("application/openmetrics-text;version=2.0.0")), Format::Prometheus);
        assert_eq!(negotiate(Some("garbage;;;==,")), Format::Prometheus);
    }

    #[cfg(feature = "protobuf")]
    #[test]
    fn protobuf_negotiation() {
        // What Prometheus 2.42 sends with `--enable-feature=native-histograms`.
        let prom = "application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited,\
                    application/openmetrics-text;version=1.0.0;q=0.8,application/openmetrics-text;version=0.0.1;q=0.75,\
                    text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
        assert_eq!(negotiate(Some(prom)), Format::Protobuf);
        assert_eq!(negotiate(Some(crate::export::protobuf::CONTENT_TYPE)), Format::Protobuf);
        let quoted =
            r#"application/vnd.google.protobuf; proto="io.prometheus.client.MetricFamily"; encoding="delimited""#;
        assert_eq!(negotiate(Some(quoted)), Format::Protobuf);
        // Ranked below a text format: the text format.
        let low = "text/plain;q=0.9, application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited;q=0.8";
        assert_eq!(negotiate(Some(low)), Format::Prometheus);
        let high = "text/plain;q=0.2, application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited;q=0.8";
        assert_eq!(negotiate(Some(high)), Format::Protobuf);
        // Other messages or encodings are not this format.
        assert_eq!(
            negotiate(Some("application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=text")),
            Format::Prometheus
        );
        assert_eq!(
            negotiate(Some("application/vnd.google.protobuf;proto=other.Message;encoding=delimited")),
            Format::Prometheus
        );
        assert_eq!(negotiate(Some("application/vnd.google.protobuf")), Format::Prometheus);
    }

    #[cfg(not(feature = "protobuf"))]
    #[test]
    fn protobuf_is_not_offered_without_the_feature() {
        let prom = "application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited,\
                    application/openmetrics-text;version=1.0.0;q=0.8,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
        assert_eq!(negotiate(Some(prom)), Format::OpenMetrics);
    }

    #[test]
    fn gzip_acceptance() {
        assert!(accepts_gzip(Some("gzip")));
        assert!(accepts_gzip(Some("br, gzip;q=0.5")));
        assert!(!accepts_gzip(Some("gzip;q=0")));
        assert!(!accepts_gzip(Some("identity")));
        assert!(!accepts_gzip(None));
    }

    #[test]
    fn admission_evicts_the_longest_waiter_and_refuses_only_when_all_are_busy() {
        let conns = Arc::new(Connections::new(2));
        let open = |c: &Conn| conns.table().open.contains_key(&c.id);
        let a = Arc::new(conns.admit().unwrap());
        let b = Arc::new(conns.admit().unwrap());
        // Full, both waiting for a head: the newcomer replaces the one waiting longest.
        let c = Arc::new(conns.admit().unwrap());
        assert!(!open(&a) && open(&b) && open(&c));
        // A connection in the middle of a request is never evicted; b waits longest now.
        let busy_c = c.begin_request();
        let d = Arc::new(conns.admit().unwrap());
        assert!(!open(&b) && open(&c) && open(&d));
        // Every connection busy: refused.
        let busy_d = d.begin_request();
        assert!(conns.admit().is_none());
        // A request ends: its connection waits again, and is the one to go.
        drop(busy_c);
        let e = conns.admit().unwrap();
        assert!(!open(&c) && open(&d) && open(&e));
        drop(busy_d);
        // A closed connection leaves the table and frees its place.
        drop(e);
        assert_eq!(conns.table().open.len(), 1);
        assert!(conns.admit().is_some());
    }

    #[test]
    fn evicted_connections_held_at_most_twice_the_cap() {
        let conns = Connections::new(2);
        let held: Vec<_> = (0..4).map(|_| conns.hold().expect("a free place")).collect();
        assert!(conns.hold().is_none(), "past 2 × the cap, evicted connections close at once");
        drop(held);
        assert!(conns.hold().is_some());
    }

    #[test]
    fn longest_waiting_skips_busy_connections() {
        let now = Instant::now();
        let later = now + Duration::from_millis(1);
        assert_eq!(longest_waiting([(1, Some(later)), (2, None), (3, Some(now))].into_iter()), Some(3));
        assert_eq!(longest_waiting([(1, None), (2, None)].into_iter()), None);
    }

    #[test]
    fn http_dates() {
        assert_eq!(httpdate(std::time::UNIX_EPOCH), "Thu, 01 Jan 1970 00:00:00 GMT");
        let t = std::time::UNIX_EPOCH + Duration::from_secs(784_111_777);
        assert_eq!(httpdate(t), "Sun, 06 Nov 1994 08:49:37 GMT");
    }
}
