//! What the background exporters (remote write, Pushgateway, file) share: the exporter's own
//! thread, a bounded queue that drops the oldest batch when full, exponential backoff with
//! jitter, and the counters of sent / failed / dropped samples.
//!
//! # How an exporter runs
//! [`ExporterHandle`] owns one thread per exporter, never a recording thread. Every `interval`
//! it takes [`Registry::snapshot`] (wait-free) and, when [`Snapshot::seq`] is new, encodes it
//! into a batch at the back of the queue. When the queue is over capacity the oldest batch is
//! dropped and its samples counted as `dropped`. The batch at the front is sent; a retryable
//! failure (transport error, HTTP 429 or 5xx, I/O error) is tried again after an exponential,
//! jittered delay while new snapshots keep arriving, a permanent one (other 4xx) is not; a
//! batch that fails `max_attempts` times is given up and its samples counted as `failed`.
//! Nothing here touches a shard, and no recording thread ever waits for this thread.
//!
//! The thread's own synchronisation (a stop flag under a mutex, a condvar, atomics for the
//! handle's statistics) uses `std::sync` directly: it is process bookkeeping outside the
//! sharded protocol that the loom models check.
//!
//! # Self-metrics
//! Each exporter registers, in the registry it exports,
//! `shardmetrics_export_samples_total{exporter="…",outcome="sent|failed|dropped"}` and
//! `shardmetrics_export_retries_total{exporter="…"}`, so its health is exported with
//! everything else.

#![forbid(unsafe_code)]

use std::{
    collections::{hash_map::RandomState, VecDeque},
    fmt,
    hash::{BuildHasher, Hasher},
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Condvar, Mutex, PoisonError,
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use crate::self_metrics;
use crate::{
    snapshot::{Snapshot, Value},
    Counter, Registry,
};

/// Exponential backoff with jitter for retried deliveries.
///
/// The delay before retry `n` (1-based, counting consecutive failures against the endpoint)
/// is `d = min(max, initial · 2^(n-1))`, then shortened by a random fraction of up to
/// `jitter · d` so that many processes restarted together do not retry in lock-step. A batch
/// is given up after `max_attempts` attempts in total (the first one included).
#[derive(Debug, Clone, Copy, PartialEq)]
#[must_use = "a backoff does nothing until given to an exporter"]
pub struct Backoff {
    initial: Duration,
    max: Duration,
    max_attempts: u32,
    jitter: f64,
}

impl Default for Backoff {
    /// 100 ms doubling up to 10 s, 5 attempts, jitter 0.5.
    fn default() -> Self {
        Backoff { initial: Duration::from_millis(100), max: Duration::from_secs(10), max_attempts: 5, jitter: 0.5 }
    }
}

impl Backoff {
    /// The default: 100 ms doubling up to 10 s, 5 attempts, jitter 0.5.
    pub fn new() -> Self {
        Backoff::default()
    }

    /// Delay before the first retry (default 100 ms).
    pub fn initial(mut self, d: Duration) -> Self {
        self.initial = d;
        self
    }

    /// Cap on any one delay (default 10 s).
    pub fn max(mut self, d: Duration) -> Self {
        self.max = d;
        self
    }

    /// Attempts per batch, the first included (default 5; at least 1).
    pub fn max_attempts(mut self, n: u32) -> Self {
        self.max_attempts = n.max(1);
        self
    }

    /// Largest fraction of a delay removed at random, `0.0..=1.0` (default 0.5: each delay
    /// lies in `[d/2, d]`). `0.0` makes delays exact.
    pub fn jitter(mut self, fraction: f64) -> Self {
        self.jitter = if fraction.is_nan() { 0.0 } else { fraction.clamp(0.0, 1.0) };
        self
    }

    /// Attempts per batch.
    pub fn attempts(&self) -> u32 {
        self.max_attempts
    }

    /// The un-jittered delay before retry `n` (1-based): `min(max, initial · 2^(n-1))`.
    pub fn base_delay(&self, n: u32) -> Duration {
        let shift = n.saturating_sub(1).min(32);
        self.initial.saturating_mul(1u32 << shift.min(31)).min(self.max)
    }

    /// The jittered delay before retry `n`, with `unit` a random number in `[0, 1)`.
    pub fn delay_with(&self, n: u32, unit: f64) -> Duration {
        self.base_delay(n).mul_f64(1.0 - self.jitter * unit.clamp(0.0, 1.0))
    }

    fn delay(&self, n: u32, rng: &mut Rng) -> Duration {
        self.delay_with(n, rng.unit())
    }
}

/// xorshift64* seeded from std's per-process random hasher keys: jitter needs spread, not
/// cryptographic quality, and this keeps `rand` out of the library's dependencies.
struct Rng(u64);

impl Rng {
    fn new() -> Rng {
        let mut h = RandomState::new().build_hasher();
        h.write_u128(Instant::now().elapsed().as_nanos());
        Rng(h.finish() | 1)
    }

    fn unit(&mut self) -> f64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Why an export operation failed. Each variant's message says what to do about it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ExportError {
    /// The endpoint is not an absolute `http://host[:port]/path` URL (https needs ureq's
    /// `rustls` or `native-tls` feature enabled in your own Cargo.toml).
    InvalidUrl { url: String, reason: String },
    /// A label name (external or grouping label) does not match `[a-zA-Z_][a-zA-Z0-9_]*` or
    /// starts with the reserved `__`.
    InvalidLabelName { label: String },
    /// An extra HTTP header's name or value is not valid in HTTP/1.1.
    InvalidHeader { name: String },
    /// A required setting is missing or empty (e.g. the Pushgateway job name).
    Missing { what: &'static str },
    /// The receiver refused the batch with a status that retrying cannot fix (a 4xx other
    /// than 429): check the URL, the payload and the receiver's log; `body` is the start of
    /// its answer.
    Rejected { status: u16, body: String },
    /// Every attempt failed with a retryable error (connection refused, timeout, 429, 5xx,
    /// I/O error); `last` is the last one. The receiver may be down: it is tried again with
    /// the next snapshot.
    GaveUp { attempts: u32, last: String },
    /// A local I/O operation failed (file exporter).
    Io { path: String, message: String },
}

impl fmt::Display for ExportError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExportError::InvalidUrl { url, reason } => {
                write!(f, "invalid exporter URL {url:?}: {reason}; give an absolute http://host:port/path URL")
            }
            ExportError::InvalidLabelName { label } => write!(
                f,
                "invalid label name {label:?}: label names must match [a-zA-Z_][a-zA-Z0-9_]* and must not start \
                 with \"__\""
            ),
            ExportError::InvalidHeader { name } => {
                write!(f, "invalid HTTP header {name:?}: use a token name and a visible-ASCII value")
            }
            ExportError::Missing { what } => write!(f, "{what} is required and must not be empty"),
            ExportError::Rejected { status, body } => write!(
                f,
                "the receiver refused the batch with HTTP {status} (not retried): {body}; check the URL, the \
                 receiver's configuration and its log"
            ),
            ExportError::GaveUp { attempts, last } => {
                write!(f, "gave up after {attempts} attempt(s), last error: {last}; is the receiver up and reachable?")
            }
            ExportError::Io { path, message } => write!(f, "I/O error on {path}: {message}"),
        }
    }
}

impl std::error::Error for ExportError {}

/// Whether label `name` is a valid, non-reserved Prometheus label name.
#[cfg(any(feature = "remote-write", feature = "push", test))]
pub(crate) fn check_label_name(name: &str) -> Result<(), ExportError> {
    let mut chars = name.chars();
    let ok = matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !name.starts_with("__");
    if ok {
        Ok(())
    } else {
        Err(ExportError::InvalidLabelName { label: name.to_owned() })
    }
}

/// How one delivery attempt failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum SendError {
    /// Worth trying again later (transport error, 429, 5xx, I/O error).
    Retryable(String),
    /// Retrying cannot help (4xx other than 429): the batch is given up at once.
    // Only the HTTP exporters refuse for good; the file exporter always retries.
    #[cfg_attr(not(any(feature = "remote-write", feature = "push", test)), allow(dead_code))]
    Rejected { status: u16, body: String },
}

impl fmt::Display for SendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SendError::Retryable(m) => f.write_str(m),
            SendError::Rejected { status, body } => write!(f, "HTTP {status}: {body}"),
        }
    }
}

/// One encoded snapshot, ready to deliver.
#[derive(Debug, Clone)]
pub(crate) struct Batch {
    pub(crate) seq: u64,
    /// Samples in the batch (what the self-metrics count).
    pub(crate) samples: u64,
    /// The encoded payload, or why encoding failed (the batch then fails without retries).
    pub(crate) body: Result<Vec<u8>, String>,
}

/// An exporter's encoding and delivery, driven by [`deliver`] and the background thread.
pub(crate) trait Sink: Send + Sync + 'static {
    /// The `exporter` label of the self-metrics and the thread name's suffix.
    fn name(&self) -> &'static str;
    /// Encodes a snapshot for delivery.
    fn encode(&self, snapshot: &Snapshot) -> Batch;
    /// Tries once to deliver a batch.
    fn send(&self, batch: &Batch) -> Result<(), SendError>;
}

/// Number of samples a snapshot exports in the Prometheus data model: one per counter and
/// gauge, `buckets + 1 (+Inf) + 2 (_sum, _count)` per histogram.
pub(crate) fn sample_count(snapshot: &Snapshot) -> u64 {
    snapshot
        .series()
        .iter()
        .map(|s| match s.value() {
            Value::Counter(_) | Value::Gauge(_) => 1,
            Value::Histogram(_) => {
                let quantile_samples = s.family().quantiles().map_or(0, |q| q.len() as u64 + 2);
                crate::export::prometheus::export_buckets(s.family()).len() as u64 + 3 + quantile_samples
            }
        })
        .sum()
}

/// What an exporter has done so far, from its handle.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ExportStats {
    /// Samples delivered (written, for the file exporter).
    pub sent_samples: u64,
    /// Samples of batches given up (permanent error or every attempt failed).
    pub failed_samples: u64,
    /// Samples of batches dropped from a full queue before being tried to the end.
    pub dropped_samples: u64,
    /// Batches delivered.
    pub sent_batches: u64,
    /// Batches given up.
    pub failed_batches: u64,
    /// Batches dropped from a full queue.
    pub dropped_batches: u64,
    /// Delivery attempts (requests or writes), successful or not.
    pub attempts: u64,
    /// Attempts that were retries of a batch that had failed before.
    pub retries: u64,
    /// Sequence number of the last snapshot delivered (0: none yet).
    pub last_sent_seq: u64,
}

#[derive(Default)]
struct StatCells {
    sent_samples: AtomicU64,
    failed_samples: AtomicU64,
    dropped_samples: AtomicU64,
    sent_batches: AtomicU64,
    failed_batches: AtomicU64,
    dropped_batches: AtomicU64,
    attempts: AtomicU64,
    retries: AtomicU64,
    last_sent_seq: AtomicU64,
}

// Relaxed throughout: each cell is an independent statistic; readers want a recent value, not
// an ordering with anything else.
impl StatCells {
    fn load(&self) -> ExportStats {
        let l = |c: &AtomicU64| c.load(Ordering::Relaxed);
        ExportStats {
            sent_samples: l(&self.sent_samples),
            failed_samples: l(&self.failed_samples),
            dropped_samples: l(&self.dropped_samples),
            sent_batches: l(&self.sent_batches),
            failed_batches: l(&self.failed_batches),
            dropped_batches: l(&self.dropped_batches),
            attempts: l(&self.attempts),
            retries: l(&self.retries),
            last_sent_seq: l(&self.last_sent_seq),
        }
    }
}

/// An exporter's counters: the registry's self-metrics plus the handle's statistics.
#[derive(Clone)]
pub(crate) struct Meter {
    exporter: &'static str,
    sent: Counter,
    failed: Counter,
    dropped: Counter,
    retries: Counter,
    cells: Arc<StatCells>,
}

impl fmt::Debug for Meter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Meter").field("exporter", &self.exporter).finish_non_exhaustive()
    }
}

impl Meter {
    /// Registers the self-metrics of `exporter` in `registry`. A registration conflict (the
    /// names taken by a metric of another shape) is logged and the counts kept on the handle
    /// only: exporting must not fail because of it.
    pub(crate) fn new(registry: &Registry, exporter: &'static str) -> Meter {
        let samples = |outcome: &str| {
            registry
                .counter(self_metrics::EXPORT_SAMPLES)
                .help("Samples handled by the exporters, by exporter and outcome (sent, failed, dropped)")
                .label("exporter", exporter)
                .label("outcome", outcome)
                .build()
                .unwrap_or_else(|e| {
                    log::error!(
                        "shardmetrics {exporter} exporter: cannot register {}: {e}",
                        self_metrics::EXPORT_SAMPLES
                    );
                    Counter::noop()
                })
        };
        let retries = registry
            .counter(self_metrics::EXPORT_RETRIES)
            .help("Delivery attempts that retried a batch that had failed before, by exporter")
            .label("exporter", exporter)
            .build()
            .unwrap_or_else(|e| {
                log::error!("shardmetrics {exporter} exporter: cannot register {}: {e}", self_metrics::EXPORT_RETRIES);
                Counter::noop()
            });
        Meter {
            exporter,
            sent: samples("sent"),
            failed: samples("failed"),
            dropped: samples("dropped"),
            retries,
            cells: Arc::default(),
        }
    }

    pub(crate) fn stats(&self) -> ExportStats {
        self.cells.load()
    }

    fn attempt(&self, retry: bool) {
        self.cells.attempts.fetch_add(1, Ordering::Relaxed);
        if retry {
            self.cells.retries.fetch_add(1, Ordering::Relaxed);
            self.retries.inc();
        }
    }

    fn sent(&self, b: &Batch) {
        self.sent.add(b.samples);
        self.cells.sent_samples.fetch_add(b.samples, Ordering::Relaxed);
        self.cells.sent_batches.fetch_add(1, Ordering::Relaxed);
        self.cells.last_sent_seq.fetch_max(b.seq, Ordering::Relaxed);
    }

    fn failed(&self, b: &Batch) {
        self.failed.add(b.samples);
        self.cells.failed_samples.fetch_add(b.samples, Ordering::Relaxed);
        self.cells.failed_batches.fetch_add(1, Ordering::Relaxed);
    }

    fn dropped(&self, b: &Batch) {
        self.dropped.add(b.samples);
        self.cells.dropped_samples.fetch_add(b.samples, Ordering::Relaxed);
        self.cells.dropped_batches.fetch_add(1, Ordering::Relaxed);
    }
}

/// Delivers one batch now, retrying with backoff (sleeping on the caller's thread) until it
/// is sent, refused, or `max_attempts` is reached. Counts the outcome. For one-shot pushes.
pub(crate) fn deliver(sink: &dyn Sink, batch: &Batch, backoff: &Backoff, meter: &Meter) -> Result<(), ExportError> {
    let mut rng = Rng::new();
    let mut attempt = 0;
    loop {
        meter.attempt(attempt > 0);
        attempt += 1;
        match sink.send(batch) {
            Ok(()) => {
                meter.sent(batch);
                return Ok(());
            }
            Err(SendError::Rejected { status, body }) => {
                log::error!(
                    "shardmetrics {} exporter: batch of {} samples refused with HTTP {status}, not retried: {body}",
                    sink.name(),
                    batch.samples
                );
                meter.failed(batch);
                return Err(ExportError::Rejected { status, body });
            }
            Err(SendError::Retryable(last)) if attempt >= backoff.max_attempts => {
                log::error!(
                    "shardmetrics {} exporter: giving up on a batch of {} samples after {attempt} attempt(s): {last}",
                    sink.name(),
                    batch.samples
                );
                meter.failed(batch);
                return Err(ExportError::GaveUp { attempts: attempt, last });
            }
            Err(SendError::Retryable(e)) => {
                let delay = backoff.delay(attempt, &mut rng);
                log::warn!(
                    "shardmetrics {} exporter: attempt {attempt} failed ({e}); retrying in {delay:?}",
                    sink.name()
                );
                std::thread::sleep(delay);
            }
        }
    }
}

/// Settings of the background thread, shared by every exporter's builder.
#[derive(Debug, Clone)]
pub(crate) struct WorkerConfig {
    /// How often to look for a new snapshot; `None`: the registry's interval.
    pub(crate) interval: Option<Duration>,
    pub(crate) queue_capacity: usize,
    pub(crate) backoff: Backoff,
    /// How long `shutdown` may spend delivering what is left.
    pub(crate) shutdown_timeout: Duration,
    /// Whether `shutdown` merges a final snapshot (`Registry::flush`) to deliver.
    pub(crate) flush_on_shutdown: bool,
}

impl WorkerConfig {
    pub(crate) fn new(queue_capacity: usize) -> Self {
        WorkerConfig {
            interval: None,
            queue_capacity,
            backoff: Backoff::default(),
            shutdown_timeout: Duration::from_secs(5),
            flush_on_shutdown: true,
        }
    }
}

/// The stop flag the handle raises and the thread waits on.
#[derive(Default)]
struct Control {
    stop: Mutex<bool>,
    wake: Condvar,
}

impl Control {
    /// Waits until `deadline` or a stop request; returns whether stop was requested.
    fn wait_until(&self, deadline: Instant) -> bool {
        let mut stop = self.stop.lock().unwrap_or_else(PoisonError::into_inner);
        loop {
            if *stop {
                return true;
            }
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            stop = self.wake.wait_timeout(stop, deadline - now).unwrap_or_else(PoisonError::into_inner).0;
        }
    }

    fn request_stop(&self) {
        *self.stop.lock().unwrap_or_else(PoisonError::into_inner) = true;
        self.wake.notify_all();
    }
}

/// A running exporter. [`ExporterHandle::shutdown`] (or dropping the handle) delivers the last
/// snapshot, within the exporter's shutdown timeout, and joins its thread.
///
/// The thread holds a clone of the [`Registry`], so the registry's aggregator keeps running
/// until the exporter is shut down.
#[must_use = "dropping the handle shuts the exporter down at once"]
pub struct ExporterHandle {
    name: &'static str,
    control: Arc<Control>,
    meter: Meter,
    thread: Option<JoinHandle<()>>,
}

impl fmt::Debug for ExporterHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ExporterHandle").field("exporter", &self.name).field("stats", &self.stats()).finish()
    }
}

impl ExporterHandle {
    /// Starts the exporter's thread.
    pub(crate) fn spawn(registry: Registry, sink: Arc<dyn Sink>, meter: Meter, config: WorkerConfig) -> ExporterHandle {
        let control = Arc::new(Control::default());
        let name = sink.name();
        let worker = Worker {
            interval: config.interval.unwrap_or_else(|| registry.interval()),
            registry,
            sink,
            meter: meter.clone(),
            config,
            control: control.clone(),
            queue: VecDeque::new(),
            last_seq: 0,
            head_attempts: 0,
            consecutive_failures: 0,
            next_try: Instant::now(),
            rng: Rng::new(),
        };
        let thread = std::thread::Builder::new().name(format!("shardmetrics-{name}")).spawn(move || worker.run());
        let thread = match thread {
            Ok(t) => Some(t),
            Err(e) => {
                log::error!("shardmetrics {name} exporter: cannot start its thread: {e}; nothing will be exported");
                None
            }
        };
        ExporterHandle { name, control, meter, thread }
    }

    /// What the exporter has done so far.
    pub fn stats(&self) -> ExportStats {
        self.meter.stats()
    }

    /// Whether the exporter's thread is running.
    pub fn is_running(&self) -> bool {
        self.thread.as_ref().is_some_and(|t| !t.is_finished())
    }

    /// Stops the exporter: merges and delivers a final snapshot (unless disabled with
    /// `flush_on_shutdown(false)`), delivers what is queued within the shutdown timeout
    /// (counting the rest as failed), joins the thread and returns the final statistics.
    pub fn shutdown(mut self) -> ExportStats {
        self.stop();
        self.stats()
    }

    fn stop(&mut self) {
        self.control.request_stop();
        if let Some(t) = self.thread.take() {
            if t.join().is_err() {
                log::error!("shardmetrics {} exporter: its thread panicked", self.name);
            }
        }
    }
}

impl Drop for ExporterHandle {
    fn drop(&mut self) {
        self.stop();
    }
}

struct Worker {
    registry: Registry,
    sink: Arc<dyn Sink>,
    meter: Meter,
    config: WorkerConfig,
    interval: Duration,
    control: Arc<Control>,
    queue: VecDeque<Batch>,
    last_seq: u64,
    /// Failed attempts of the batch at the front of the queue.
    head_attempts: u32,
    /// Failed attempts in a row against the endpoint: what the backoff delay grows with (a
    /// batch dropped while the endpoint is down does not reset it).
    consecutive_failures: u32,
    next_try: Instant,
    rng: Rng,
}

impl Worker {
    fn run(mut self) {
        let mut next_poll = Instant::now();
        loop {
            let now = Instant::now();
            if now >= next_poll {
                self.collect(&self.registry.snapshot());
                next_poll = now + self.interval;
            }
            if !self.queue.is_empty() && Instant::now() >= self.next_try {
                self.try_head();
            }
            let wake = if self.queue.is_empty() { next_poll } else { next_poll.min(self.next_try) };
            if self.control.wait_until(wake) {
                break;
            }
        }
        self.drain();
    }

    /// Encodes a snapshot not seen yet into the queue, dropping the oldest batch if full.
    fn collect(&mut self, snapshot: &Snapshot) {
        if snapshot.seq() <= self.last_seq {
            return;
        }
        self.last_seq = snapshot.seq();
        self.queue.push_back(self.sink.encode(snapshot));
        while self.queue.len() > self.config.queue_capacity.max(1) {
            if let Some(old) = self.queue.pop_front() {
                log::warn!(
                    "shardmetrics {} exporter: queue full, dropping the batch of snapshot {} ({} samples)",
                    self.sink.name(),
                    old.seq,
                    old.samples
                );
                self.meter.dropped(&old);
                self.head_attempts = 0;
            }
        }
    }

    /// One attempt at the batch at the front of the queue.
    fn try_head(&mut self) {
        let Some(batch) = self.queue.front() else { return };
        self.meter.attempt(self.head_attempts > 0);
        let result = self.sink.send(batch);
        let name = self.sink.name();
        match result {
            Ok(()) => {
                self.meter.sent(batch);
                self.consecutive_failures = 0;
                self.head_attempts = 0;
                self.queue.pop_front();
            }
            Err(SendError::Rejected { status, body }) => {
                log::error!(
                    "shardmetrics {name} exporter: batch of snapshot {} ({} samples) refused with HTTP {status}, \
                     not retried: {body}",
                    batch.seq,
                    batch.samples
                );
                self.meter.failed(batch);
                self.head_attempts = 0;
                self.queue.pop_front();
            }
            Err(SendError::Retryable(e)) => {
                self.head_attempts += 1;
                self.consecutive_failures = self.consecutive_failures.saturating_add(1);
                let delay = self.config.backoff.delay(self.consecutive_failures, &mut self.rng);
                self.next_try = Instant::now() + delay;
                if self.head_attempts >= self.config.backoff.max_attempts {
                    log::error!(
                        "shardmetrics {name} exporter: giving up on the batch of snapshot {} ({} samples) after {} \
                         attempt(s): {e}",
                        batch.seq,
                        batch.samples,
                        self.head_attempts
                    );
                    self.meter.failed(batch);
                    self.head_attempts = 0;
                    self.queue.pop_front();
                } else {
                    log::warn!(
                        "shardmetrics {name} exporter: attempt {} for snapshot {} failed ({e}); retrying in {delay:?}",
                        self.head_attempts,
                        batch.seq
                    );
                }
            }
        }
    }

    /// After a stop request: the final snapshot, then what is queued, within the timeout.
    fn drain(&mut self) {
        let last = if self.config.flush_on_shutdown { self.registry.flush() } else { self.registry.snapshot() };
        self.collect(&last);
        let deadline = Instant::now() + self.config.shutdown_timeout;
        while !self.queue.is_empty() {
            let now = Instant::now();
            if now >= deadline || self.next_try >= deadline {
                break;
            }
            if self.next_try > now {
                std::thread::sleep(self.next_try - now);
            }
            self.try_head();
        }
        for batch in std::mem::take(&mut self.queue) {
            log::error!(
                "shardmetrics {} exporter: shutting down with the batch of snapshot {} ({} samples) undelivered",
                self.sink.name(),
                batch.seq,
                batch.samples
            );
            self.meter.failed(&batch);
        }
    }
}

/// HTTP plumbing shared by the push exporters.
#[cfg(any(feature = "remote-write", feature = "push"))]
pub(crate) mod http {
    use std::time::Duration;

    use super::{ExportError, SendError};

    /// Longest part of an error response kept for the log and the error.
    const MAX_ERROR_BODY: u64 = 512;

    /// An agent that returns every status as a response (classified by [`outcome`]) and
    /// bounds each call by `timeout`.
    pub(crate) fn agent(timeout: Duration) -> ureq::Agent {
        ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(timeout))
            .user_agent(concat!("shardmetrics/", env!("CARGO_PKG_VERSION")))
            .build()
            .into()
    }

    /// Checks that `url` is an absolute http(s) URL ureq can use.
    pub(crate) fn check_url(url: &str) -> Result<(), ExportError> {
        let bad = |reason: &str| Err(ExportError::InvalidUrl { url: url.to_owned(), reason: reason.to_owned() });
        match url.parse::<ureq::http::Uri>() {
            Err(e) => bad(&e.to_string()),
            Ok(u) if !matches!(u.scheme_str(), Some("http" | "https")) => bad("the scheme must be http or https"),
            Ok(u) if u.host().is_none_or(str::is_empty) => bad("it has no host"),
            Ok(_) => Ok(()),
        }
    }

    /// Classifies a response: 2xx is delivered; 429 and 5xx are retried; any other status is
    /// refused for good. Transport errors are retried, except a malformed request.
    pub(crate) fn outcome(
        result: Result<ureq::http::Response<ureq::Body>, ureq::Error>,
    ) -> Result<ureq::http::Response<ureq::Body>, SendError> {
        match result {
            Ok(resp) if resp.status().is_success() => Ok(resp),
            Ok(mut resp) => {
                let status = resp.status().as_u16();
                let body = resp
                    .body_mut()
                    .with_config()
                    .limit(MAX_ERROR_BODY)
                    .read_to_vec()
                    .map(|b| String::from_utf8_lossy(&b).trim().to_owned())
                    .unwrap_or_default();
                if status == 429 || status >= 500 {
                    Err(SendError::Retryable(format!("HTTP {status}: {body}")))
                } else {
                    Err(SendError::Rejected { status, body })
                }
            }
            Err(e @ (ureq::Error::BadUri(_) | ureq::Error::Http(_))) => {
                Err(SendError::Rejected { status: 0, body: e.to_string() })
            }
            Err(e) => Err(SendError::Retryable(e.to_string())),
        }
    }

    /// Reads (and discards) a successful response's body so the connection can be reused.
    pub(crate) fn finish(mut resp: ureq::http::Response<ureq::Body>) {
        let _ = resp.body_mut().with_config().limit(64 * 1024).read_to_vec();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let b = Backoff::new().initial(Duration::from_millis(100)).max(Duration::from_secs(1)).jitter(0.0);
        let d: Vec<u64> = (1..=6).map(|n| b.base_delay(n).as_millis() as u64).collect();
        assert_eq!(d, [100, 200, 400, 800, 1000, 1000]);
        assert_eq!(b.base_delay(u32::MAX), Duration::from_secs(1));
        assert_eq!(b.delay_with(3, 0.99), Duration::from_millis(400));
    }

    #[test]
    fn jitter_stays_within_its_fraction() {
        let b = Backoff::new().initial(Duration::from_millis(100)).jitter(0.5);
        let mut rng = Rng::new();
        let delays: Vec<Duration> = (0..1000).map(|_| b.delay(2, &mut rng)).collect();
        assert!(delays.iter().all(|d| *d >= Duration::from_millis(100) && *d <= Duration::from_millis(200)));
        // Spread, not a constant: jitter exists to de-synchronise retries.
        let min = delays.iter().min().unwrap();
        let max = delays.iter().max().unwrap();
        assert!(*max - *min > Duration::from_millis(50), "{min:?}..{max:?}");
    }

    #[test]
    fn rng_is_uniformish() {
        let mut rng = Rng::new();
        let xs: Vec<f64> = (0..10_000).map(|_| rng.unit()).collect();
        assert!(xs.iter().all(|x| (0.0..1.0).contains(x)));
        let mean = xs.iter().sum::<f64>() / xs.len() as f64;
        assert!((mean - 0.5).abs() < 0.02, "{mean}");
    }

    #[test]
    fn label_names() {
        assert!(check_label_name("job").is_ok());
        assert!(check_label_name("_x9").is_ok());
        for bad in ["", "9a", "a-b", "__name__", "a b"] {
            assert_eq!(check_label_name(bad), Err(ExportError::InvalidLabelName { label: bad.into() }));
        }
    }

    /// A sink that fails its first `fail` sends with a retryable error.
    struct Flaky {
        fail: AtomicU64,
        sent: Mutex<Vec<u64>>,
        permanent: bool,
    }

    impl Sink for Flaky {
        fn name(&self) -> &'static str {
            "test"
        }
        fn encode(&self, s: &Snapshot) -> Batch {
            Batch { seq: s.seq(), samples: sample_count(s), body: Ok(Vec::new()) }
        }
        fn send(&self, b: &Batch) -> Result<(), SendError> {
            let left = self.fail.load(Ordering::Relaxed);
            if left > 0 {
                self.fail.store(left - 1, Ordering::Relaxed);
                return Err(if self.permanent {
                    SendError::Rejected { status: 400, body: "bad".into() }
                } else {
                    SendError::Retryable("down".into())
                });
            }
            self.sent.lock().unwrap().push(b.seq);
            Ok(())
        }
    }

    fn flaky(fail: u64, permanent: bool) -> Flaky {
        Flaky { fail: AtomicU64::new(fail), sent: Mutex::new(Vec::new()), permanent }
    }

    #[test]
    fn deliver_retries_then_succeeds_and_counts() {
        let r = Registry::builder().manual().build();
        r.counter("x_total").build().unwrap().add(3);
        let snap = r.flush();
        let meter = Meter::new(&r, "test");
        let sink = flaky(2, false);
        let b = Backoff::new().initial(Duration::from_millis(5)).jitter(0.0);
        let batch = sink.encode(&snap);
        let start = Instant::now();
        assert_eq!(deliver(&sink, &batch, &b, &meter), Ok(()));
        assert!(start.elapsed() >= Duration::from_millis(15), "5 + 10 ms of backoff");
        let s = meter.stats();
        assert_eq!((s.attempts, s.retries, s.sent_batches, s.failed_batches), (3, 2, 1, 0));
        assert_eq!(s.sent_samples, batch.samples);
        let after = r.flush();
        assert_eq!(
            after.counter(self_metrics::EXPORT_SAMPLES, &[("exporter", "test"), ("outcome", "sent")]),
            Some(batch.samples)
        );
        assert_eq!(after.counter(self_metrics::EXPORT_RETRIES, &[("exporter", "test")]), Some(2));
    }

    #[test]
    fn deliver_gives_up_and_does_not_retry_refusals() {
        let r = Registry::builder().manual().build();
        let snap = r.flush();
        let meter = Meter::new(&r, "test");
        let b = Backoff::new().initial(Duration::from_millis(1)).max_attempts(3);
        let sink = flaky(10, false);
        let batch = sink.encode(&snap);
        assert!(matches!(deliver(&sink, &batch, &b, &meter), Err(ExportError::GaveUp { attempts: 3, .. })));
        assert_eq!(meter.stats().attempts, 3);
        let refusing = flaky(10, true);
        assert!(matches!(deliver(&refusing, &batch, &b, &meter), Err(ExportError::Rejected { status: 400, .. })));
        let s = meter.stats();
        assert_eq!((s.attempts, s.failed_batches, s.failed_samples), (4, 2, 2 * batch.samples));
    }

    #[test]
    fn worker_drops_oldest_and_delivers_the_last_snapshot_on_shutdown() {
        let r = Registry::builder().manual().build();
        let c = r.counter("x_total").build().unwrap();
        let meter = Meter::new(&r, "test");
        // Down for the first 3 attempts, with long backoff: snapshots pile up behind it.
        let sink = Arc::new(flaky(3, false));
        let mut config = WorkerConfig::new(2);
        config.interval = Some(Duration::from_millis(2));
        config.backoff = Backoff::new().initial(Duration::from_millis(30)).jitter(0.0).max_attempts(10);
        let handle = ExporterHandle::spawn(r.clone(), sink.clone(), meter, config);
        for _ in 0..20 {
            c.inc();
            r.flush();
            std::thread::sleep(Duration::from_millis(3));
        }
        let stats = handle.shutdown();
        let sent = sink.sent.lock().unwrap().clone();
        assert!(stats.dropped_batches > 0, "{stats:?}");
        assert_eq!(stats.failed_batches, 0, "{stats:?}");
        assert!(sent.windows(2).all(|w| w[0] < w[1]), "in order: {sent:?}");
        // The final flush's snapshot is the last one delivered.
        let last = r.snapshot().seq();
        assert_eq!(sent.last().copied(), Some(last));
        assert_eq!(stats.last_sent_seq, last);
        assert_eq!(stats.sent_batches as usize, sent.len());
        // Three failed attempts; the retries of a batch dropped meanwhile do not count as
        // retries of the next one.
        assert_eq!(stats.attempts, stats.sent_batches + 3, "{stats:?}");
        assert!((1..=3).contains(&stats.retries), "{stats:?}");
    }
}
