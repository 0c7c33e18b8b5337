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
    /// No answer within the attempt's timeout: the batch is given up at once (retrying would
    /// hold the queue for another whole timeout; the next snapshot carries the same totals).
    // Only the HTTP exporters have a timeout.
    #[cfg_attr(not(any(feature = "remote-write", feature = "push", test)), allow(dead_code))]
    TimedOut(String),
    /// Retrying cannot help (4xx other than 429): the batch is given up at once.
    // Only the HTTP exporters refuse for good; the file exporter always retries.
    #[cfg_attr(not(any(feature = "remote-write", feature = "push", test)), allow(dead_code))]
    Rejected { status: u16, body: String },
}

impl fmt::Display for SendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SendError::Retryable(m) => f.write_str(m),
            SendError::TimedOut(m) => write!(f, "no answer in time ({m})"),
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
