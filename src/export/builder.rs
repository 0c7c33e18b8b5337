//! One builder vocabulary for the background exporters: the settings they all share live in
//! one [`ExportOptions`] that each builder embeds, and [`ExporterBuilder`] sets them with the
//! same methods on every builder. What only one exporter has (the Pushgateway's job, remote
//! write's external labels, the file's path and rotation) stays on that exporter's builder.

#![forbid(unsafe_code)]

use std::time::Duration;

use super::backoff::Backoff;

/// The settings every background exporter shares: how often it exports, how many batches and
/// bytes it keeps while the receiver is down, how it retries, how it shuts down and, for the HTTP
/// exporters, how long one request may take. Set through [`ExporterBuilder`].
#[derive(Debug, Clone)]
pub struct ExportOptions {
    /// How often to look for a new snapshot; `None`: the registry's interval.
    pub(crate) interval: Option<Duration>,
    pub(crate) queue_capacity: usize,
    /// Bound on the encoded bytes queued (the newest batch is kept even if larger).
    pub(crate) queue_bytes: usize,
    pub(crate) backoff: Backoff,
    /// How long `shutdown` may spend delivering what is left.
    pub(crate) shutdown_timeout: Duration,
    /// Whether `shutdown` merges a final snapshot (`Registry::flush`) to deliver.
    pub(crate) flush_on_shutdown: bool,
    /// Bound on one HTTP request, connect to last byte (the HTTP exporters only).
    pub(crate) timeout: Duration,
}

impl ExportOptions {
    /// The default bound on the encoded bytes an exporter's queue holds: 32 MiB, a few
    /// batches of a registry of tens of thousands of series, whatever `queue_capacity` says.
    pub const DEFAULT_QUEUE_BYTES: usize = 32 << 20;

    /// The defaults every exporter starts from, with its own queue capacity: the registry's
    /// interval, [`DEFAULT_QUEUE_BYTES`](Self::DEFAULT_QUEUE_BYTES), [`Backoff::default`],
    /// 5 s to shut down with a final flush, 10 s per request.
    pub(crate) fn new(queue_capacity: usize) -> Self {
        ExportOptions {
            interval: None,
            queue_capacity,
            queue_bytes: Self::DEFAULT_QUEUE_BYTES,
            backoff: Backoff::default(),
            shutdown_timeout: Duration::from_secs(5),
            flush_on_shutdown: true,
            timeout: Duration::from_secs(10),
        }
    }
}

/// The settings every exporter builder shares, set by the same methods on each:
/// `RemoteWriteBuilder`, `PushgatewayBuilder` and
/// [`FileExporterBuilder`](crate::export::file::FileExporterBuilder). Bring the trait into
/// scope (`use shardmetrics::export::ExporterBuilder;`) to call them.
///
/// ```
/// use shardmetrics::export::{file::FileExporter, Backoff, ExporterBuilder};
/// use std::time::Duration;
///
/// let builder = FileExporter::builder("metrics.prom")
///     .interval(Duration::from_secs(15))
///     .backoff(Backoff::new().max_attempts(3))
///     .shutdown_timeout(Duration::from_secs(1));
/// # let _ = builder;
/// ```
///
/// The trait is sealed: only this crate's exporter builders implement it.
pub trait ExporterBuilder: Sized + sealed::Sealed {
    /// The shared settings this builder carries: what the other methods set.
    fn options_mut(&mut self) -> &mut ExportOptions;

    /// How often to look for a new snapshot and export it (default: the registry's interval;
    /// at least 1 ms).
    fn interval(mut self, interval: Duration) -> Self {
        self.options_mut().interval = Some(interval.max(Duration::from_millis(1)));
        self
    }

    /// Batches kept while the receiver is slow or down (at least 1); past it the oldest is
    /// dropped and its samples counted as `dropped`. Default 16 for remote write; 1 for the
    /// Pushgateway and the file exporter, where only the newest snapshot matters. The queue is
    /// bounded in bytes too: see [`queue_bytes`](Self::queue_bytes).
    fn queue_capacity(mut self, n: usize) -> Self {
        self.options_mut().queue_capacity = n.max(1);
        self
    }

    /// Encoded bytes kept while the receiver is slow or down (default
    /// [`ExportOptions::DEFAULT_QUEUE_BYTES`], 32 MiB): when a new batch takes the queue past
    /// it, the oldest batches are dropped first and their samples counted as `dropped`, as for
    /// [`queue_capacity`](Self::queue_capacity); whichever bound is reached first applies. The
    /// newest batch is always kept, even when it alone is larger, so that a large registry is
    /// still exported: the queue holds at most `max(bytes, one batch)`.
    /// [`ExportStats`](crate::export::ExportStats) shows the bytes queued and the peak.
    fn queue_bytes(mut self, bytes: usize) -> Self {
        self.options_mut().queue_bytes = bytes;
        self
    }

    /// Retry policy (default [`Backoff::default`]; the file exporter's default makes one
    /// attempt per snapshot, see
    /// [`FileExporterBuilder`](crate::export::file::FileExporterBuilder)).
    fn backoff(mut self, backoff: Backoff) -> Self {
        self.options_mut().backoff = backoff;
        self
    }

    /// How long [`ExporterHandle::shutdown`](crate::export::ExporterHandle::shutdown) may keep
    /// trying to deliver what is left (default 5 s); it returns by then (plus a fraction of a
    /// second) whatever the receiver does, counting what is undelivered as failed.
    fn shutdown_timeout(mut self, d: Duration) -> Self {
        self.options_mut().shutdown_timeout = d;
        self
    }

    /// Whether shutdown merges a final snapshot with [`Registry::flush`](crate::Registry::flush)
    /// (default true) rather than exporting the last published one.
    fn flush_on_shutdown(mut self, on: bool) -> Self {
        self.options_mut().flush_on_shutdown = on;
        self
    }

    /// Bound on one request, connect to the last byte of the answer (default 10 s). A request
    /// that runs out of it (a receiver that accepts the connection and never answers) is
    /// counted as failed at once and not retried, so a one-off push to a hung receiver returns
    /// after one timeout (with [`ExportError::TimedOut`](crate::export::ExportError::TimedOut)).
    /// During shutdown each request is bounded by what is left of the
    /// [`shutdown_timeout`](Self::shutdown_timeout) instead, when that is shorter. The HTTP
    /// exporters only (remote write, Pushgateway): the file exporter has no such setting.
    ///
    /// ```compile_fail
    /// use shardmetrics::export::{file::FileExporter, ExporterBuilder};
    /// let _ = FileExporter::builder("m.prom").timeout(std::time::Duration::from_secs(1));
    /// ```
    fn timeout(mut self, timeout: Duration) -> Self
    where
        Self: sealed::Http,
    {
        self.options_mut().timeout = timeout;
        self
    }
}

/// Seals [`ExporterBuilder`], and marks the builders whose exporter speaks HTTP (those with a
/// request `timeout`).
pub(crate) mod sealed {
    /// Implemented by this crate's exporter builders only.
    pub trait Sealed {}
    /// An exporter builder whose exporter sends HTTP requests.
    pub trait Http {}
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::export::file::FileExporter;

    #[test]
    fn the_setters_fill_the_shared_options() {
        let mut b = FileExporter::builder("m.prom")
            .interval(Duration::ZERO)
            .queue_capacity(0)
            .queue_bytes(1000)
            .backoff(Backoff::new().max_attempts(7))
            .shutdown_timeout(Duration::from_secs(2))
            .flush_on_shutdown(false);
        let o = b.options_mut().clone();
        assert_eq!(o.interval, Some(Duration::from_millis(1)), "at least 1 ms");
        assert_eq!(o.queue_capacity, 1, "at least 1");
        assert_eq!(o.queue_bytes, 1000);
        assert_eq!(ExportOptions::new(1).queue_bytes, 32 << 20);
        assert_eq!(o.backoff.attempts(), 7);
        assert_eq!((o.shutdown_timeout, o.flush_on_shutdown), (Duration::from_secs(2), false));
    }

    #[cfg(feature = "push")]
    #[test]
    fn http_builders_take_a_request_timeout() {
        let mut b = crate::export::pushgateway::Pushgateway::builder("http://gw:9091").timeout(Duration::from_secs(3));
        assert_eq!(b.options_mut().timeout, Duration::from_secs(3));
    }
}
