//! The exporter's own thread: every interval a new snapshot is encoded into a bounded queue
//! that drops the oldest batch when full, the batch at its front is delivered with retries and
//! backoff, and shutdown delivers what is left; [`deliver`] does the same for one batch on the
//! caller's thread. How it behaves, as users see it, is documented on [`ExporterHandle`].
//! [`Exporter`] is the glue every exporter shares: its sink, its counters, its registry and
//! its [`ExportOptions`], registered, delivered once or started as one.
//!
//! The thread's own synchronisation (a stop flag under a mutex, a condvar, atomics for the
//! handle's statistics) uses `std::sync` directly: it is process bookkeeping outside the
//! sharded protocol that the loom models check.

#![forbid(unsafe_code)]

use std::{
    collections::VecDeque,
    fmt,
    sync::{Arc, Condvar, Mutex, PoisonError},
    thread::JoinHandle,
    time::{Duration, Instant},
};

use super::{
    backoff::{Backoff, Rng},
    builder::ExportOptions,
    error::ExportError,
    sink::{Batch, ExporterId, SendError, Sink},
    stats::{ExportStats, Meter},
};
use crate::{snapshot::Snapshot, Registry};

/// Delivers one batch now, retrying with backoff (sleeping on the caller's thread) until it
/// is sent, refused, or `max_attempts` is reached. Counts the outcome. For one-shot pushes.
fn deliver(sink: &dyn Sink, batch: &Batch, backoff: &Backoff, meter: &Meter) -> Result<(), ExportError> {
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
                    meter.exporter(),
                    batch.samples
                );
                meter.failed(batch);
                return Err(ExportError::Rejected { status, body });
            }
            Err(SendError::Retryable(last)) if attempt >= backoff.attempts() => {
                log::error!(
                    "shardmetrics {} exporter: giving up on a batch of {} samples after {attempt} attempt(s): {last}",
                    meter.exporter(),
                    batch.samples
                );
                meter.failed(batch);
                return Err(ExportError::GaveUp { attempts: attempt, last });
            }
            Err(SendError::Retryable(e)) => {
                let delay = backoff.delay(attempt, &mut rng);
                log::warn!(
                    "shardmetrics {} exporter: attempt {attempt} failed ({e}); retrying in {delay:?}",
                    meter.exporter()
                );
                std::thread::sleep(delay);
            }
        }
    }
}

/// What every configured exporter is made of: its sink, its counters, the registry it exports
/// and the shared settings. `RemoteWrite`, `Pushgateway` and `FileExporter` each wrap one and
/// add what only they do.
pub(crate) struct Exporter<S> {
    id: ExporterId,
    pub(crate) sink: Arc<S>,
    meter: Meter,
    registry: Registry,
    options: ExportOptions,
}

impl<S: Sink> Exporter<S> {
    /// Registers the exporter's self-metrics in `registry`.
    pub(crate) fn new(registry: &Registry, id: ExporterId, sink: S, options: ExportOptions) -> Self {
        Exporter { id, meter: Meter::new(registry, id.name), sink: Arc::new(sink), registry: registry.clone(), options }
    }

    /// Encodes and delivers one snapshot now on the calling thread, retrying with the
    /// configured backoff; counts the outcome like the background thread does.
    pub(crate) fn export_once(&self, snapshot: &Snapshot) -> Result<(), ExportError> {
        self.deliver_via(&*self.sink, &self.sink.encode(snapshot))
    }

    /// Delivers `batch` through `sink` (this exporter's or a variant of it) with this
    /// exporter's backoff and counters.
    pub(crate) fn deliver_via(&self, sink: &dyn Sink, batch: &Batch) -> Result<(), ExportError> {
        deliver(sink, batch, &self.options.backoff, &self.meter)
    }

    /// Starts the background thread.
    pub(crate) fn start(self) -> ExporterHandle {
        ExporterHandle::spawn(self.registry, self.id, self.sink, self.meter, self.options)
    }
}

/// The longest thread name Linux keeps: `comm` holds 16 bytes with the NUL, and a longer name
/// shows truncated in `top -H`, `ps -L`, gdb and perf. Every thread the crate names fits.
pub(crate) const MAX_THREAD_NAME: usize = 15;

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
///
/// # How an exporter runs
/// [`ExporterHandle`] owns one thread per exporter, never a recording thread. Every `interval`
/// it takes [`Registry::snapshot`] (wait-free) and, when [`Snapshot::seq`] is new, encodes it
/// into a batch at the back of the queue. When the queue is over capacity the oldest batch is
/// dropped and its samples counted as `dropped`. The batch at the front is sent; a retryable
/// failure (transport error, HTTP 429 or 5xx, I/O error) is tried again after an exponential,
/// jittered delay while new snapshots keep arriving, a permanent one (other 4xx) is not; a
/// batch that fails `max_attempts` times is given up and its samples counted as `failed`.
/// Nothing here touches a shard, and no recording thread ever waits for this thread.
///
/// # Self-metrics
/// Each exporter registers, in the registry it exports,
/// `shardmetrics_export_samples_total{exporter="…",outcome="sent|failed|dropped"}` and
/// `shardmetrics_export_retries_total{exporter="…"}`, so its health is exported with
/// everything else.
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
    pub(crate) fn spawn(
        registry: Registry,
        id: ExporterId,
        sink: Arc<dyn Sink>,
        meter: Meter,
        options: ExportOptions,
    ) -> ExporterHandle {
        let control = Arc::new(Control::default());
        let (name, thread_name) = (id.name, id.thread);
        let worker = Worker {
            interval: options.interval.unwrap_or_else(|| registry.interval()),
            registry,
            sink,
            meter: meter.clone(),
            options,
            control: control.clone(),
            queue: VecDeque::new(),
            last_seq: 0,
            head_attempts: 0,
            consecutive_failures: 0,
            next_try: Instant::now(),
            rng: Rng::new(),
        };
        debug_assert!(thread_name.len() <= MAX_THREAD_NAME, "thread name {thread_name:?} is over 15 bytes");
        let thread = std::thread::Builder::new().name(thread_name.into()).spawn(move || worker.run());
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
    options: ExportOptions,
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
        while self.queue.len() > self.options.queue_capacity.max(1) {
            if let Some(old) = self.queue.pop_front() {
                log::warn!(
                    "shardmetrics {} exporter: queue full, dropping the batch of snapshot {} ({} samples)",
                    self.meter.exporter(),
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
        let name = self.meter.exporter();
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
                let delay = self.options.backoff.delay(self.consecutive_failures, &mut self.rng);
                self.next_try = Instant::now() + delay;
                if self.head_attempts >= self.options.backoff.attempts() {
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
        let last = if self.options.flush_on_shutdown { self.registry.flush() } else { self.registry.snapshot() };
        self.collect(&last);
        let deadline = Instant::now() + self.options.shutdown_timeout;
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
                self.meter.exporter(),
                batch.seq,
                batch.samples
            );
            self.meter.failed(&batch);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        export::sink::sample_count,
        self_metrics,
        sync::{AtomicU64, Ordering},
    };

    /// A sink that fails its first `fail` sends with a retryable error.
    struct Flaky {
        fail: AtomicU64,
        sent: Mutex<Vec<u64>>,
        permanent: bool,
    }

    impl Sink for Flaky {
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

    /// Every thread the crate starts, by its name constant: each fits Linux's 15 bytes (the
    /// remote-write exporter's thread was `shardmetrics-remote_write`, shown as
    /// `shardmetrics-re`), and no two are alike.
    #[test]
    fn every_thread_name_fits_linux_comm() {
        let mut names = Vec::new();
        names.extend([crate::aggregator::THREAD_NAME, crate::alert::THREAD_NAME, crate::export::file::THREAD_NAME]);
        #[cfg(feature = "http")]
        names.extend([crate::export::http::THREAD_NAME, crate::export::http::BLOCKING_THREAD_NAME]);
        #[cfg(feature = "push")]
        names.push(crate::export::pushgateway::THREAD_NAME);
        #[cfg(feature = "remote-write")]
        names.push(crate::export::remote_write::THREAD_NAME);
        for name in &names {
            assert!(!name.is_empty() && name.len() <= MAX_THREAD_NAME, "{name:?} is {} bytes", name.len());
        }
        let mut unique = names.clone();
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(unique.len(), names.len(), "{names:?}");
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
        let mut options = ExportOptions::new(2);
        options.interval = Some(Duration::from_millis(2));
        options.backoff = Backoff::new().initial(Duration::from_millis(30)).jitter(0.0).max_attempts(10);
        let id = ExporterId { name: "test", thread: "sm-test" };
        let handle = ExporterHandle::spawn(r.clone(), id, sink.clone(), meter, options);
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
        // retries of the next one. How many of the three were retries depends on the
        // scheduling: on a loaded machine every failed batch can be dropped (the queue holds
        // two) before its retry, and then none is (seen in CI-like runs with other builds).
        assert_eq!(stats.attempts, stats.sent_batches + 3, "{stats:?}");
        assert!(stats.retries <= 3, "{stats:?}");
    }
}
