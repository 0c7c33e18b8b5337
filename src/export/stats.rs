//! What an exporter has done: the handle's [`ExportStats`] and the registry's self-metrics
//! (`shardmetrics_export_samples_total{exporter,outcome}`, `shardmetrics_export_retries_total`),
//! counted together by a [`Meter`].

#![forbid(unsafe_code)]

use std::{fmt, sync::Arc};

use super::sink::Batch;
use crate::sync::{AtomicU64, Ordering};
use crate::{self_metrics, Counter, Registry};

/// What an exporter has done so far, from its handle.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ExportStats {
    /// Samples delivered (written, for the file exporter).
    pub sent_samples: u64,
    /// Samples of batches given up (permanent error or every attempt failed).
    pub failed_samples: u64,
    /// Samples of delivered batches that the receiver reported as rejected while accepting the
    /// rest (OTLP `partial_success.rejected_data_points`); not counted in `sent_samples`.
    pub rejected_samples: u64,
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
    /// Batches waiting in the queue now.
    pub queued_batches: u64,
    /// Encoded bytes waiting in the queue now: within
    /// [`queue_bytes`](crate::export::ExporterBuilder::queue_bytes), unless the newest batch
    /// alone is larger (it is kept, alone).
    pub queued_bytes: u64,
    /// The most encoded bytes the queue has held at once: how close to its bound it came.
    pub peak_queued_bytes: u64,
}

#[derive(Default)]
struct StatCells {
    sent_samples: AtomicU64,
    failed_samples: AtomicU64,
    rejected_samples: AtomicU64,
    dropped_samples: AtomicU64,
    sent_batches: AtomicU64,
    failed_batches: AtomicU64,
    dropped_batches: AtomicU64,
    attempts: AtomicU64,
    retries: AtomicU64,
    last_sent_seq: AtomicU64,
    queued_batches: AtomicU64,
    queued_bytes: AtomicU64,
    peak_queued_bytes: AtomicU64,
}

// Relaxed throughout: each cell is an independent statistic; readers want a recent value, not
// an ordering with anything else.
impl StatCells {
    fn load(&self) -> ExportStats {
        let l = |c: &AtomicU64| c.load(Ordering::Relaxed);
        ExportStats {
            sent_samples: l(&self.sent_samples),
            failed_samples: l(&self.failed_samples),
            rejected_samples: l(&self.rejected_samples),
            dropped_samples: l(&self.dropped_samples),
            sent_batches: l(&self.sent_batches),
            failed_batches: l(&self.failed_batches),
            dropped_batches: l(&self.dropped_batches),
            attempts: l(&self.attempts),
            retries: l(&self.retries),
            last_sent_seq: l(&self.last_sent_seq),
            queued_batches: l(&self.queued_batches),
            queued_bytes: l(&self.queued_bytes),
            peak_queued_bytes: l(&self.peak_queued_bytes),
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
    /// `outcome="rejected"`: registered by [`with_rejected`](Self::with_rejected) only, for the
    /// exporters whose receiver can reject part of a batch; a no-op for the others.
    rejected: Counter,
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
            rejected: Counter::noop(),
            retries,
            cells: Arc::default(),
        }
    }

    /// Also counts `outcome="rejected"` samples in the registry (OTLP's partial success): only
    /// the exporters that can report them register the series.
    // Only the OTLP exporter reads partial successes.
    #[cfg_attr(not(feature = "otlp"), allow(dead_code))]
    pub(crate) fn with_rejected(mut self, registry: &Registry) -> Meter {
        let exporter = self.exporter;
        self.rejected = registry
            .counter(self_metrics::EXPORT_SAMPLES)
            .label("exporter", exporter)
            .label("outcome", "rejected")
            .build()
            .unwrap_or_else(|e| {
                log::error!("shardmetrics {exporter} exporter: cannot register {}: {e}", self_metrics::EXPORT_SAMPLES);
                Counter::noop()
            });
        self
    }

    /// The `exporter` label of the counters.
    pub(crate) fn exporter(&self) -> &'static str {
        self.exporter
    }

    pub(crate) fn stats(&self) -> ExportStats {
        self.cells.load()
    }

    pub(crate) fn attempt(&self, retry: bool) {
        self.cells.attempts.fetch_add(1, Ordering::Relaxed);
        if retry {
            self.cells.retries.fetch_add(1, Ordering::Relaxed);
            self.retries.inc();
        }
    }

    /// A delivered batch, `rejected` of whose samples the receiver reported as rejected.
    pub(crate) fn sent(&self, b: &Batch, rejected: u64) {
        let rejected = rejected.min(b.samples);
        self.sent.add(b.samples - rejected);
        self.cells.sent_samples.fetch_add(b.samples - rejected, Ordering::Relaxed);
        if rejected > 0 {
            self.rejected.add(rejected);
            self.cells.rejected_samples.fetch_add(rejected, Ordering::Relaxed);
        }
        self.cells.sent_batches.fetch_add(1, Ordering::Relaxed);
        self.cells.last_sent_seq.fetch_max(b.seq, Ordering::Relaxed);
    }

    pub(crate) fn failed(&self, b: &Batch) {
        self.failed.add(b.samples);
        self.cells.failed_samples.fetch_add(b.samples, Ordering::Relaxed);
        self.cells.failed_batches.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn dropped(&self, b: &Batch) {
        self.dropped.add(b.samples);
        self.cells.dropped_samples.fetch_add(b.samples, Ordering::Relaxed);
        self.cells.dropped_batches.fetch_add(1, Ordering::Relaxed);
    }

    /// What the queue holds now (the thread that changed it calls this while holding it).
    pub(crate) fn queued(&self, batches: usize, bytes: usize) {
        self.cells.queued_batches.store(batches as u64, Ordering::Relaxed);
        self.cells.queued_bytes.store(bytes as u64, Ordering::Relaxed);
        self.cells.peak_queued_bytes.fetch_max(bytes as u64, Ordering::Relaxed);
    }
}
