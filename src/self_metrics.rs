//! The names of the series shardmetrics registers about itself, in one place.
//!
//! Each is an ordinary series of the registry it describes, so its health is exported, windowed
//! and alerted on with everything else. Names start with `shardmetrics_`; registering a metric of
//! your own under one of them is refused as a clash.

/// Counter: values rejected on the recording path (NaN or negative where not allowed, family
/// look-ups with the wrong number of labels, invalid exemplars, facade registration errors),
/// and additions that a counter could not take whole because it saturated (a recording
/// thread's part of it reached 2^63; its total then reads `u64::MAX`: counters saturate rather
/// than wrap, which would read as a reset).
pub const REJECTED: &str = "shardmetrics_rejected_values_total";
/// Counter: look-ups redirected to a family's overflow series because a per-family or global
/// cardinality cap was reached.
pub const OVERFLOW: &str = "shardmetrics_cardinality_overflow_total";
/// Counter family (labels `exporter`, `outcome` = `sent` | `failed` | `dropped`): samples handled
/// by the background exporters (remote write, Pushgateway, file).
pub const EXPORT_SAMPLES: &str = "shardmetrics_export_samples_total";
/// Counter family (label `exporter`): deliveries retried after a retryable failure.
pub const EXPORT_RETRIES: &str = "shardmetrics_export_retries_total";
/// Gauge family (label `rule`): each alert rule's state, 0 ok, 1 warning, 2 critical.
pub const ALERT_STATE: &str = "shardmetrics_alert_state";
/// Gauge family (label `rule`): the value each alert rule evaluated at the last tick.
pub const ALERT_VALUE: &str = "shardmetrics_alert_value";
/// Counter family (labels `rule`, `kind`): notifications handed to the notifier thread.
pub const ALERT_NOTIFICATIONS: &str = "shardmetrics_alert_notifications_total";
/// Counter: notifications dropped because the notifier's queue was full.
pub const ALERT_NOTIFICATIONS_DROPPED: &str = "shardmetrics_alert_notifications_dropped_total";
/// Histogram (nanoseconds): how long one process/system resource sample took
/// (`collect::process`).
pub const PROCESS_COLLECT_DURATION: &str = "shardmetrics_process_collect_duration";
