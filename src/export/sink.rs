//! What an exporter gives the worker: a [`Sink`] that encodes a snapshot into a [`Batch`] and
//! tries once to deliver it, telling a retryable failure from a refusal ([`SendError`]).

#![forbid(unsafe_code)]

use std::{fmt, time::Duration};

use crate::snapshot::{Snapshot, Value};

/// How one delivery attempt failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum SendError {
    /// Worth trying again later (transport error, 429, 5xx, I/O error).
    Retryable(String),
    /// Worth trying again, but not before `retry_after`: the receiver said so with a
    /// `Retry-After` header on a 429 or 5xx answer. The worker waits for the longer of it
    /// (capped at [`MAX_RETRY_AFTER`]) and its own backoff delay.
    // Only the HTTP exporters read the header.
    #[cfg_attr(not(any(feature = "remote-write", feature = "push", feature = "otlp", test)), allow(dead_code))]
    Throttled { detail: String, retry_after: Duration },
    /// No answer within the attempt's timeout: the batch is given up at once (retrying would
    /// hold the queue for another whole timeout; the next snapshot carries the same totals).
    // Only the HTTP exporters have a timeout.
    #[cfg_attr(not(any(feature = "remote-write", feature = "push", feature = "otlp", test)), allow(dead_code))]
    TimedOut(String),
    /// Retrying cannot help (4xx other than 429): the batch is given up at once.
    // Only the HTTP exporters refuse for good; the file exporter always retries.
    #[cfg_attr(not(any(feature = "remote-write", feature = "push", feature = "otlp", test)), allow(dead_code))]
    Rejected { status: u16, body: String },
}

impl fmt::Display for SendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SendError::Retryable(m) => f.write_str(m),
            SendError::Throttled { detail, retry_after } => write!(f, "{detail} (retry after {retry_after:?})"),
            SendError::TimedOut(m) => write!(f, "no answer in time ({m})"),
            SendError::Rejected { status, body } => write!(f, "HTTP {status}: {body}"),
        }
    }
}

/// The longest `Retry-After` a receiver can impose before the next attempt: a longer one
/// (or an HTTP date far ahead) is cut to this, so that a misconfigured receiver cannot stall
/// an exporter for hours.
pub(crate) const MAX_RETRY_AFTER: Duration = Duration::from_secs(300);

impl SendError {
    /// The error text and, for [`Throttled`](Self::Throttled), how long the receiver asked to
    /// wait (capped at [`MAX_RETRY_AFTER`]), if the failure is worth retrying.
    pub(crate) fn retry(&self) -> Option<(&str, Option<Duration>)> {
        match self {
            SendError::Retryable(m) => Some((m, None)),
            SendError::Throttled { detail, retry_after } => Some((detail, Some((*retry_after).min(MAX_RETRY_AFTER)))),
            SendError::TimedOut(_) | SendError::Rejected { .. } => None,
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

impl Batch {
    /// The encoded size: what the queue's byte bound counts.
    pub(crate) fn bytes(&self) -> usize {
        self.body.as_ref().map_or(0, Vec::len)
    }
}

/// Who an exporter is, in its self-metrics, its log lines and its thread.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ExporterId {
    /// The `exporter` label of the self-metrics.
    pub(crate) name: &'static str,
    /// The name of the exporter's thread: at most
    /// [`MAX_THREAD_NAME`](super::worker::MAX_THREAD_NAME) bytes.
    pub(crate) thread: &'static str,
}

/// An exporter's encoding and delivery, driven by [`deliver`](super::worker::deliver) and the
/// background thread.
pub(crate) trait Sink: Send + Sync + 'static {
    /// Encodes a snapshot for delivery.
    fn encode(&self, snapshot: &Snapshot) -> Batch;
    /// Tries once to deliver a batch, within `timeout`: the HTTP sinks bound the whole request
    /// by it (connect to last byte of the answer) and report running out of it as
    /// [`SendError::TimedOut`]; a local write has no timeout and ignores it.
    fn send(&self, batch: &Batch, timeout: Duration) -> Result<(), SendError>;
    /// [`send`](Self::send), returning how many of the batch's samples the receiver accepted
    /// the request but reported as rejected (OTLP's `partial_success`); 0 for receivers that
    /// cannot say. What the worker calls.
    fn send_counting(&self, batch: &Batch, timeout: Duration) -> Result<u64, SendError> {
        self.send(batch, timeout).map(|()| 0)
    }
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
