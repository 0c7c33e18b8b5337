//! Prometheus remote write (protocol 1.0): each new snapshot becomes one `WriteRequest`,
//! protobuf-encoded (prost, messages written out below — no protoc), snappy block-compressed,
//! and POSTed from the exporter's own thread with `Content-Encoding: snappy`,
//! `Content-Type: application/x-protobuf`, `X-Prometheus-Remote-Write-Version: 0.1.0`.
//!
//! One job over ~600 lines: the remote-write encoder, its protobuf messages and its exporter
//! glue; the messages alone are a third of it.
//!
//! Series are named exactly as in the [text export](crate::export::prometheus): counters
//! with `_total`, histograms as classic `_bucket{le="…"}` / `_sum` / `_count` series in base
//! units (seconds for time units). Each series carries its labels, `__name__`, and the
//! configured external labels (`job`, `instance`, …) it does not already have, sorted by name.
//! Samples are stamped with the snapshot's time, strictly increasing per exporter.
//!
//! Queueing, retries with backoff, and the `shardmetrics_export_samples_total` self-metrics
//! are described in [`ExporterHandle`].
//!
//! ```no_run
//! use shardmetrics::{
//!     export::{remote_write::RemoteWrite, ExporterBuilder},
//!     Registry,
//! };
//! use std::time::Duration;
//!
//! let registry = Registry::new();
//! let exporter = RemoteWrite::builder("http://127.0.0.1:9090/api/v1/write")
//!     .external_label("job", "checkout")
//!     .external_label("instance", "host-1")
//!     .interval(Duration::from_secs(15))
//!     .start(&registry)?;
//! // … record metrics …
//! let stats = exporter.shutdown(); // sends the final snapshot
//! println!("{} samples sent, {} failed", stats.sent_samples, stats.failed_samples);
//! # Ok::<(), shardmetrics::export::ExportError>(())
//! ```

#![forbid(unsafe_code)]

use std::{
    fmt,
    time::{Duration, UNIX_EPOCH},
};

use prost::Message as _;

use crate::sync::{AtomicI64, Ordering};
use crate::{
    export::{
        bound_in_unit,
        error::check_label_name,
        http_client,
        prometheus::{export_buckets, exported_name},
        sink::{Batch, ExporterId, SendError, Sink},
        worker::Exporter,
        write_f64, ExportError, ExportOptions, ExporterBuilder, ExporterHandle,
    },
    snapshot::{Snapshot, Value},
    Kind, Registry,
};

/// `Content-Type` of a remote-write request.
pub const CONTENT_TYPE: &str = "application/x-protobuf";
/// `X-Prometheus-Remote-Write-Version` sent with every request.
pub const PROTOCOL_VERSION: &str = "0.1.0";

/// The remote-write 1.0 protobuf messages (`prometheus/prompb`), the fields this exporter
/// sends.
pub mod proto {
    /// `prometheus.WriteRequest`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct WriteRequest {
        #[prost(message, repeated, tag = "1")]
        pub timeseries: Vec<TimeSeries>,
        #[prost(message, repeated, tag = "3")]
        pub metadata: Vec<MetricMetadata>,
    }

    /// `prometheus.TimeSeries`: labels sorted by name, samples (or native histograms) in time
    /// order.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct TimeSeries {
        #[prost(message, repeated, tag = "1")]
        pub labels: Vec<Label>,
        #[prost(message, repeated, tag = "2")]
        pub samples: Vec<Sample>,
        #[prost(message, repeated, tag = "4")]
        pub histograms: Vec<Histogram>,
    }

    /// `prometheus.Histogram`: a native histogram at one time — integer counts (this exporter
    /// never sends float histograms), positive buckets as spans and delta-encoded counts.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Histogram {
        #[prost(uint64, tag = "1")]
        pub count_int: u64,
        #[prost(double, tag = "3")]
        pub sum: f64,
        #[prost(sint32, tag = "4")]
        pub schema: i32,
        #[prost(double, tag = "5")]
        pub zero_threshold: f64,
        #[prost(uint64, tag = "6")]
        pub zero_count_int: u64,
        #[prost(message, repeated, tag = "11")]
        pub positive_spans: Vec<BucketSpan>,
        #[prost(sint64, repeated, tag = "12")]
        pub positive_deltas: Vec<i64>,
        /// `ResetHint`: 0 unknown (the receiver detects resets), 1 yes, 2 no, 3 gauge.
        #[prost(int32, tag = "14")]
        pub reset_hint: i32,
        #[prost(int64, tag = "15")]
        pub timestamp: i64,
    }

    /// `prometheus.BucketSpan`: `length` consecutive buckets, `offset` buckets after the
    /// previous span (the first span's offset is its first bucket's index).
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct BucketSpan {
        #[prost(sint32, tag = "1")]
        pub offset: i32,
        #[prost(uint32, tag = "2")]
        pub length: u32,
    }

    /// `prometheus.Label`.
    #[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, prost::Message)]
    pub struct Label {
        #[prost(string, tag = "1")]
        pub name: String,
        #[prost(string, tag = "2")]
        pub value: String,
    }

    /// `prometheus.Sample`: a value at a Unix time in milliseconds.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Sample {
        #[prost(double, tag = "1")]
        pub value: f64,
        #[prost(int64, tag = "2")]
        pub timestamp: i64,
    }

    /// `prometheus.MetricMetadata`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct MetricMetadata {
        #[prost(enumeration = "MetricType", tag = "1")]
        pub r#type: i32,
        #[prost(string, tag = "2")]
        pub metric_family_name: String,
        #[prost(string, tag = "4")]
        pub help: String,
        #[prost(string, tag = "5")]
        pub unit: String,
    }

    /// `prometheus.MetricMetadata.MetricType`.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
    #[repr(i32)]
    pub enum MetricType {
        Unknown = 0,
        Counter = 1,
        Gauge = 2,
        Histogram = 3,
        Gaugehistogram = 4,
        Summary = 5,
        Info = 6,
        Stateset = 7,
    }
}

use crate::export::native::NativeBuckets;
use proto::{Label, MetricMetadata, MetricType, Sample, TimeSeries, WriteRequest};

/// What a [`write_request`] carries besides the samples.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RequestOptions {
    /// One metadata entry per family (type, help, unit).
    pub metadata: bool,
    /// Histograms with native buckets as native histograms (one series under the family's
    /// name, a `Histogram` message) instead of classic `_bucket`/`_sum`/`_count` series — what a
    /// Prometheus with native histograms enabled stores from a protobuf scrape. The receiver
    /// must accept them (Prometheus: `--enable-feature=native-histograms`).
    pub native_histograms: bool,
}

/// The `WriteRequest` for one snapshot: every sample the text export would show, stamped
/// `timestamp_ms`, with `external_labels` added to series that lack them (see
/// [`RequestOptions`] for metadata and native histograms).
pub fn write_request(
    snapshot: &Snapshot,
    external_labels: &[(String, String)],
    timestamp_ms: i64,
    options: RequestOptions,
) -> WriteRequest {
    let RequestOptions { metadata, native_histograms } = options;
    let mut req = WriteRequest { timeseries: Vec::with_capacity(snapshot.series().len()), metadata: Vec::new() };
    let mut le = String::new();
    for family in snapshot.families() {
        let Some(info) = family.first().map(|s| s.family()) else { continue };
        let name = exported_name(info);
        if metadata {
            req.metadata.push(MetricMetadata {
                r#type: match info.kind() {
                    Kind::Counter => MetricType::Counter,
                    Kind::Gauge => MetricType::Gauge,
                    Kind::Histogram => MetricType::Histogram,
                } as i32,
                metric_family_name: name.clone(),
                help: info.help().to_owned(),
                unit: if info.kind() == Kind::Histogram {
                    info.unit().base_name().unwrap_or("").to_owned()
                } else {
                    String::new()
                },
            });
            if info.quantiles().is_some() {
                req.metadata.push(MetricMetadata {
                    r#type: MetricType::Summary as i32,
                    metric_family_name: crate::export::quantile_family_name(info),
                    help: info.help().to_owned(),
                    unit: info.unit().base_name().unwrap_or("").to_owned(),
                });
            }
        }
        // Per family, once: the sample names and the formatted `le` bounds.
        let q = crate::export::quantile_family_name(info);
        let names = [
            name.clone(),
            format!("{name}_bucket"),
            format!("{name}_sum"),
            format!("{name}_count"),
            q.clone(),
            format!("{q}_sum"),
            format!("{q}_count"),
        ];
        let quantiles: Vec<(f64, String)> = info
            .quantiles()
            .unwrap_or(&[])
            .iter()
            .map(|&q| {
                le.clear();
                write_f64(&mut le, q);
                (q, le.clone())
            })
            .collect();
        let window = info.quantile_window().map(|d| snapshot.window(d));
        let les: Vec<String> = if info.kind() == Kind::Histogram {
            export_buckets(info)
                .iter()
                .map(|&b| {
                    le.clear();
                    write_f64(&mut le, b);
                    le.clone()
                })
                .collect()
        } else {
            Vec::new()
        };
        for s in family {
            // Per series, once: its labels, the external ones it lacks and `__name__`, sorted;
            // each sample clones them, fills in its name and inserts `le` where it sorts.
            let mut base: Vec<Label> =
                s.labels().iter().map(|(k, v)| Label { name: k.to_owned(), value: v.to_owned() }).collect();
            for (k, v) in external_labels {
                if s.labels().get(k).is_none() {
                    base.push(Label { name: k.clone(), value: v.clone() });
                }
            }
            base.push(Label { name: "__name__".into(), value: String::new() });
            base.sort_unstable_by(|a, b| a.name.cmp(&b.name));
            let name_at = base.iter().position(|l| l.name == "__name__").unwrap_or(0);
            let le_at = base.partition_point(|l| l.name.as_str() < "le");
            let quantile_at = base.partition_point(|l| l.name.as_str() < "quantile");
            // A histogram with native buckets, when asked for: one series under the family's
            // name, in place of the classic `_bucket`/`_sum`/`_count` (its quantile series stay).
            let mut native = false;
            if let (true, Value::Histogram(h)) = (native_histograms, s.value()) {
                if let Some(buckets) = crate::export::native::native_buckets(info, h) {
                    let mut labels = base.clone();
                    labels[name_at].value.clone_from(&names[0]);
                    let sum = info.unit().value_in_base(h.sum());
                    let histograms = vec![native_histogram(&buckets, h.count(), sum, timestamp_ms)];
                    req.timeseries.push(TimeSeries { labels, samples: Vec::new(), histograms });
                    native = true;
                }
            }
            let mut push_with = |which: usize, extra: Option<(&str, &str, usize)>, value: f64| {
                let mut labels = Vec::with_capacity(base.len() + 1);
                labels.extend_from_slice(&base);
                labels[name_at].value.clone_from(&names[which]);
                if let Some((name, value, at)) = extra {
                    labels.insert(at, Label { name: name.into(), value: value.to_owned() });
                }
                req.timeseries.push(TimeSeries {
                    labels,
                    samples: vec![Sample { value, timestamp: timestamp_ms }],
                    histograms: Vec::new(),
                });
            };
            let mut push = |which: usize, le: Option<&str>, value: f64| {
                push_with(which, le.map(|le| ("le", le, le_at)), value);
            };
            match s.value() {
                // Counters in a time unit are exported in seconds, as in the text formats.
                Value::Counter(c) => push(0, None, info.unit().value_in_base(c.total)),
                Value::Gauge(g) => push(0, None, g),
                Value::Histogram(h) => {
                    let unit = info.unit();
                    let sum = unit.value_in_base(h.sum());
                    if !native {
                        let mut counts = h.counts_le();
                        for (&bound, le) in export_buckets(info).iter().zip(&les) {
                            push(1, Some(le), counts.count_le(bound_in_unit(bound, unit)) as f64);
                        }
                        push(1, Some("+Inf"), h.count() as f64);
                        push(2, None, sum);
                        push(3, None, h.count() as f64);
                    }
                    if !quantiles.is_empty() {
                        let windowed = window.as_ref().and_then(|w| w.histogram_of(&s));
                        let hq = windowed.as_ref().unwrap_or(h);
                        for (q, text) in &quantiles {
                            let v = hq.quantile(*q).map_or(f64::NAN, |v| unit.value_in_base(v));
                            push_with(4, Some(("quantile", text, quantile_at)), v);
                        }
                        push_with(5, None, sum);
                        push_with(6, None, h.count() as f64);
                    }
                }
            }
        }
    }
    req
}

/// A native histogram's `Histogram` message: spans and deltas as the protobuf exposition writes
/// them (`export::native`), integer counts, the sum in the exported unit.
fn native_histogram(native: &impl NativeBuckets, count: u64, sum: f64, timestamp_ms: i64) -> proto::Histogram {
    let mut positive_spans = Vec::new();
    crate::export::native::for_each_span(native, |offset, length| {
        positive_spans.push(proto::BucketSpan { offset, length });
    });
    proto::Histogram {
        count_int: count,
        sum,
        schema: native.schema(),
        zero_threshold: native.zero_threshold(),
        zero_count_int: native.zero_count(),
        positive_spans,
        positive_deltas: crate::export::native::deltas(native).collect(),
        reset_hint: 0,
        timestamp: timestamp_ms,
    }
}

/// Protobuf-encodes and snappy-compresses (block format) a request: a remote-write body.
pub fn encode(req: &WriteRequest) -> Result<Vec<u8>, ExportError> {
    snap::raw::Encoder::new()
        .compress_vec(&req.encode_to_vec())
        .map_err(|e| ExportError::Io { path: "snappy".into(), message: e.to_string() })
}

/// Decodes a remote-write body (snappy block + protobuf), as a receiver does.
pub fn decode(body: &[u8]) -> Result<WriteRequest, String> {
    let raw = snap::raw::Decoder::new().decompress_vec(body).map_err(|e| format!("snappy: {e}"))?;
    WriteRequest::decode(raw.as_slice()).map_err(|e| format!("protobuf: {e}"))
}

/// Configures a [`RemoteWrite`] exporter. The settings every exporter shares (interval,
/// queue capacity, backoff, shutdown, request timeout) are set through [`ExporterBuilder`];
/// the queue holds 16 batches by default.
#[derive(Debug, Clone)]
#[must_use = "a builder does nothing until `build` or `start`"]
pub struct RemoteWriteBuilder {
    url: String,
    external_labels: Vec<(String, String)>,
    headers: Vec<(String, String)>,
    metadata: bool,
    native_histograms: bool,
    options: ExportOptions,
}

impl ExporterBuilder for RemoteWriteBuilder {
    fn options_mut(&mut self) -> &mut ExportOptions {
        &mut self.options
    }
}

impl crate::export::builder::sealed::Sealed for RemoteWriteBuilder {}
impl crate::export::builder::sealed::Http for RemoteWriteBuilder {}

impl RemoteWriteBuilder {
    /// Adds a label to every series that does not have it (e.g. `job`, `instance`). A later
    /// call with the same name replaces the value.
    pub fn external_label(mut self, name: &str, value: &str) -> Self {
        self.external_labels.retain(|(k, _)| k != name);
        self.external_labels.push((name.to_owned(), value.to_owned()));
        self
    }

    /// Adds an HTTP header to every request (e.g. `Authorization`, `X-Scope-OrgID`).
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }

    /// Whether to send metric metadata (type, help, unit) with each request (default true).
    pub fn metadata(mut self, on: bool) -> Self {
        self.metadata = on;
        self
    }

    /// Whether to send histograms that have native buckets as native histograms (default
    /// false: classic `_bucket`/`_sum`/`_count` series, which every receiver accepts). See
    /// [`RequestOptions::native_histograms`].
    pub fn native_histograms(mut self, on: bool) -> Self {
        self.native_histograms = on;
        self
    }

    /// Validates the configuration and registers the exporter's self-metrics in `registry`.
    pub fn build(self, registry: &Registry) -> Result<RemoteWrite, ExportError> {
        http_client::check_url(&self.url)?;
        for (k, _) in &self.external_labels {
            check_label_name(k)?;
        }
        for (k, v) in &self.headers {
            if ureq::http::HeaderName::try_from(k.as_str()).is_err()
                || ureq::http::HeaderValue::try_from(v.as_str()).is_err()
            {
                return Err(ExportError::InvalidHeader { name: k.clone() });
            }
        }
        let mut external_labels = self.external_labels;
        external_labels.sort();
        let sink = RemoteSink {
            url: self.url,
            agent: http_client::agent(self.options.timeout),
            headers: self.headers,
            external_labels,
            request: RequestOptions { metadata: self.metadata, native_histograms: self.native_histograms },
            last_timestamp: AtomicI64::new(i64::MIN),
        };
        Ok(RemoteWrite { exporter: Exporter::new(registry, ID, sink, self.options) })
    }

    /// [`build`](Self::build)s and [`start`](RemoteWrite::start)s the exporter.
    pub fn start(self, registry: &Registry) -> Result<ExporterHandle, ExportError> {
        Ok(self.build(registry)?.start())
    }
}

/// The name of the exporter's thread.
pub(crate) const THREAD_NAME: &str = "sm-remote-write";
/// The `exporter` label of the self-metrics, and the thread.
const ID: ExporterId = ExporterId { name: "remote_write", thread: THREAD_NAME };

/// A configured remote-write exporter: [`start`](Self::start) it for periodic export on its
/// own thread, or [`send_once`](Self::send_once) a snapshot now.
pub struct RemoteWrite {
    exporter: Exporter<RemoteSink>,
}

impl fmt::Debug for RemoteWrite {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RemoteWrite").field("url", &self.exporter.sink.url).finish_non_exhaustive()
    }
}

impl RemoteWrite {
    /// Starts configuring an exporter that writes to `url` (e.g.
    /// `http://prometheus:9090/api/v1/write`).
    pub fn builder(url: &str) -> RemoteWriteBuilder {
        RemoteWriteBuilder {
            url: url.to_owned(),
            external_labels: Vec::new(),
            headers: Vec::new(),
            metadata: true,
            native_histograms: false,
            options: ExportOptions::new(16),
        }
    }

    /// Sends one snapshot now on the calling thread, retrying with the configured backoff;
    /// counts the outcome like the background thread does. A receiver that does not answer
    /// within the request [`timeout`](ExporterBuilder::timeout) is not retried:
    /// [`ExportError::TimedOut`] after one timeout.
    pub fn send_once(&self, snapshot: &Snapshot) -> Result<(), ExportError> {
        self.exporter.export_once(snapshot)
    }

    /// Starts the background thread: every interval, a new snapshot is queued and sent.
    pub fn start(self) -> ExporterHandle {
        self.exporter.start()
    }
}

struct RemoteSink {
    url: String,
    agent: ureq::Agent,
    headers: Vec<(String, String)>,
    /// Sorted by name.
    external_labels: Vec<(String, String)>,
    request: RequestOptions,
    /// Last timestamp used: samples of one series must have increasing timestamps, and two
    /// snapshots may be taken within one millisecond.
    last_timestamp: AtomicI64,
}

impl RemoteSink {
    fn timestamp(&self, snapshot: &Snapshot) -> i64 {
        let t = snapshot.taken_at().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0);
        // Relaxed: a single number only this exporter's threads update; no other memory hangs
        // on it.
        let prev = self.last_timestamp.fetch_max(t, Ordering::Relaxed);
        if prev >= t {
            self.last_timestamp.fetch_add(1, Ordering::Relaxed) + 1
        } else {
            t
        }
    }
}

impl Sink for RemoteSink {
    fn encode(&self, snapshot: &Snapshot) -> Batch {
        let req = write_request(snapshot, &self.external_labels, self.timestamp(snapshot), self.request);
        let samples = req.timeseries.len() as u64;
        match encode(&req) {
            Ok(body) => Batch { seq: snapshot.seq(), samples, body: Ok(body) },
            Err(e) => Batch { seq: snapshot.seq(), samples, body: Err(e.to_string()) },
        }
    }

    fn send(&self, batch: &Batch, timeout: Duration) -> Result<(), SendError> {
        let body = batch.body.as_ref().map_err(|e| SendError::Rejected { status: 0, body: e.clone() })?;
        let mut req = self
            .agent
            .post(&self.url)
            .header("Content-Encoding", "snappy")
            .header("Content-Type", CONTENT_TYPE)
            .header("X-Prometheus-Remote-Write-Version", PROTOCOL_VERSION);
        for (k, v) in &self.headers {
            req = req.header(k, v);
        }
        http_client::outcome(http_client::within(req, timeout).send(body.as_slice())).map(http_client::finish)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    use crate::{export::prometheus, Unit};

    fn labels(ts: &TimeSeries) -> Vec<(&str, &str)> {
        ts.labels.iter().map(|l| (l.name.as_str(), l.value.as_str())).collect()
    }

    /// Every sample line of the text export, as `(name{sorted labels}, value)`.
    fn text_samples(text: &str) -> Vec<(String, f64)> {
        let mut out: Vec<(String, f64)> = text
            .lines()
            .filter(|l| !l.starts_with('#'))
            .map(|l| {
                let (series, value) = l.rsplit_once(' ').unwrap();
                let v = match value {
                    "+Inf" => f64::INFINITY,
                    v => v.parse().unwrap(),
                };
                let (name, labels) = series.split_once('{').unwrap_or((series, "}"));
                let mut ls: Vec<&str> = labels.trim_end_matches('}').split(',').filter(|s| !s.is_empty()).collect();
                ls.sort();
                (format!("{name}{{{}}}", ls.join(",")), v)
            })
            .collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    fn sample_keys(req: &WriteRequest, ignore: &[&str]) -> Vec<(String, f64)> {
        let mut out: Vec<(String, f64)> = req
            .timeseries
            .iter()
            .map(|ts| {
                let name = ts.labels.iter().find(|l| l.name == "__name__").unwrap().value.clone();
                let mut ls: Vec<String> = ts
                    .labels
                    .iter()
                    .filter(|l| l.name != "__name__" && !ignore.contains(&l.name.as_str()))
                    .map(|l| format!("{}=\"{}\"", l.name, l.value))
                    .collect();
                ls.sort();
                (format!("{name}{{{}}}", ls.join(",")), ts.samples[0].value)
            })
            .collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    fn sample_registry() -> (Registry, Arc<Snapshot>) {
        let r = Registry::builder().manual().build();
        r.counter("requests").help("Requests").label("route", "/api").build().unwrap().add(42);
        r.gauge("temperature").build().unwrap().set(-3.5);
        let h = r
            .histogram("latency")
            .unit(Unit::Milliseconds)
            .label("zone", "eu")
            .quantiles(&[0.5, 0.99])
            .build()
            .unwrap();
        for v in 1..=100 {
            h.record(v);
        }
        let bytes = r.histogram("payload").buckets(&[10.0, 100.0]).build().unwrap();
        bytes.record(5);
        bytes.record(50);
        bytes.record(500);
        // A time-unit counter (exported in seconds) and a bound that must snap to 30 ns exactly.
        r.counter("busy_seconds_total").unit(Unit::Nanoseconds).build().unwrap().add(900_000);
        let fine = r.histogram("fine").unit(Unit::Nanoseconds).buckets(&[3e-8, 1e-6]).build().unwrap();
        fine.record(30);
        fine.record(31);
        let snap = r.flush();
        (r, snap)
    }

    #[test]
    fn samples_match_the_text_export() {
        let (_r, snap) = sample_registry();
        let req = write_request(
            &snap,
            &[("job".into(), "test".into())],
            1_000,
            RequestOptions { metadata: true, ..Default::default() },
        );
        assert_eq!(sample_keys(&req, &["job"]), text_samples(&prometheus::render(&snap)));
        assert_eq!(req.timeseries.len() as u64, crate::export::sink::sample_count(&snap));
    }

    #[test]
    fn labels_are_sorted_with_name_and_external_labels() {
        let (_r, snap) = sample_registry();
        let ext = vec![("instance".to_owned(), "h1".to_owned()), ("job".to_owned(), "svc".to_owned())];
        let req = write_request(&snap, &ext, 7, RequestOptions { metadata: false, ..Default::default() });
        assert!(req.metadata.is_empty());
        for ts in &req.timeseries {
            let names: Vec<&str> = ts.labels.iter().map(|l| l.name.as_str()).collect();
            let mut sorted = names.clone();
            sorted.sort();
            assert_eq!(names, sorted);
            assert_eq!(ts.samples, vec![Sample { value: ts.samples[0].value, timestamp: 7 }]);
        }
        let counter = req.timeseries.iter().find(|ts| ts.labels[0].value == "requests_total").unwrap();
        assert_eq!(
            labels(counter),
            [("__name__", "requests_total"), ("instance", "h1"), ("job", "svc"), ("route", "/api")]
        );
        assert_eq!(counter.samples[0].value, 42.0);
        let bucket = req
            .timeseries
            .iter()
            .find(|ts| ts.labels[0].value == "latency_seconds_bucket" && ts.labels.iter().any(|l| l.value == "0.05"))
            .unwrap();
        assert_eq!(
            labels(bucket),
            [
                ("__name__", "latency_seconds_bucket"),
                ("instance", "h1"),
                ("job", "svc"),
                ("le", "0.05"),
                ("zone", "eu")
            ]
        );
        assert!((bucket.samples[0].value - 50.0).abs() <= 2.0, "{}", bucket.samples[0].value);
        let sum = req.timeseries.iter().find(|ts| ts.labels[0].value == "latency_seconds_sum").unwrap();
        assert!((sum.samples[0].value - 5.05).abs() < 1e-9, "sum in seconds: {}", sum.samples[0].value);
    }

    #[test]
    fn series_labels_win_over_external_labels() {
        let r = Registry::builder().manual().build();
        r.counter("c").label("job", "own").build().unwrap().inc();
        let req = write_request(
            &r.flush(),
            &[("job".into(), "external".into())],
            0,
            RequestOptions { metadata: false, ..Default::default() },
        );
        let c = req.timeseries.iter().find(|ts| ts.labels[0].value == "c_total").unwrap();
        assert_eq!(labels(c), [("__name__", "c_total"), ("job", "own")]);
    }

    #[test]
    fn metadata_describes_each_family() {
        let (_r, snap) = sample_registry();
        let req = write_request(&snap, &[], 0, RequestOptions { metadata: true, ..Default::default() });
        let m = |n: &str| req.metadata.iter().find(|m| m.metric_family_name == n).unwrap().clone();
        assert_eq!(m("requests_total").r#type, MetricType::Counter as i32);
        assert_eq!(m("requests_total").help, "Requests");
        assert_eq!(m("temperature").r#type, MetricType::Gauge as i32);
        assert_eq!(m("latency_seconds").r#type, MetricType::Histogram as i32);
        assert_eq!(m("latency_seconds").unit, "seconds");
    }

    #[test]
    fn encode_round_trips_through_snappy_and_protobuf() {
        let (_r, snap) = sample_registry();
        let req = write_request(
            &snap,
            &[("job".into(), "x".into())],
            123,
            RequestOptions { metadata: true, ..Default::default() },
        );
        let body = encode(&req).unwrap();
        // Snappy block format starts with the uncompressed length as a varint.
        let raw = req.encode_to_vec();
        let mut len = 0usize;
        for (i, b) in body.iter().take(5).enumerate() {
            len |= ((b & 0x7f) as usize) << (7 * i);
            if b & 0x80 == 0 {
                break;
            }
        }
        assert_eq!(len, raw.len());
        assert_eq!(decode(&body).unwrap(), req);
        assert!(decode(b"not snappy").is_err());
    }

    #[test]
    fn timestamps_strictly_increase() {
        let r = Registry::builder().manual().build();
        let sink = RemoteWrite::builder("http://127.0.0.1:1/api/v1/write").build(&r).unwrap().exporter.sink;
        let snap = r.flush();
        let a = sink.timestamp(&snap);
        let b = sink.timestamp(&snap);
        let c = sink.timestamp(&snap);
        assert!(a < b && b < c, "{a} {b} {c}");
    }

    #[test]
    fn builder_validates() {
        let r = Registry::builder().manual().build();
        let err = |b: RemoteWriteBuilder| b.build(&r).unwrap_err();
        assert!(matches!(err(RemoteWrite::builder("localhost:9090")), ExportError::InvalidUrl { .. }));
        assert!(matches!(err(RemoteWrite::builder("ftp://h/x")), ExportError::InvalidUrl { .. }));
        assert!(matches!(
            err(RemoteWrite::builder("http://h/x").external_label("__x", "1")),
            ExportError::InvalidLabelName { .. }
        ));
        assert!(matches!(
            err(RemoteWrite::builder("http://h/x").header("bad header", "1")),
            ExportError::InvalidHeader { .. }
        ));
        assert!(RemoteWrite::builder("http://h:1/x").external_label("job", "a").build(&r).is_ok());
    }
}
