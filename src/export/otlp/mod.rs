//! OTLP/HTTP metrics push: each new snapshot becomes one `ExportMetricsServiceRequest`
//! ([`proto`]) POSTed to `…/v1/metrics` from the exporter's own thread — to an OpenTelemetry
//! Collector, Prometheus 3 (`/api/v1/otlp/v1/metrics`), Grafana Mimir or any OTLP receiver.
//!
//! **Protocol** ([`Protocol`], `OTEL_EXPORTER_OTLP_[METRICS_]PROTOCOL`, [`OtlpBuilder::protocol`]):
//!
//! | protocol | body | `Content-Type` |
//! |---|---|---|
//! | `http/protobuf` (default) | binary protobuf | `application/x-protobuf` |
//! | `http/json` | the OTLP JSON encoding ([`json`]: lowerCamelCase keys, hex trace and span ids, enums as integers, 64-bit integers as strings) | `application/json` |
//! | `grpc` | not supported: [`OtlpBuilder::build`] fails with [`ExportError::Unsupported`]; use one of the above on the receiver's OTLP/HTTP port (4318) | |
//!
//! Either body is gzip-compressed (`Content-Encoding: gzip`) when configured.
//!
//! **Configuration** comes from the OpenTelemetry SDK environment variables
//! ([`EnvConfig::from_lookup`] lists them: endpoint, protocol, headers, timeout, compression,
//! service name, resource attributes, export interval, temporality preference), read by
//! [`Otlp::builder`]; every builder method overrides what the environment said.
//!
//! **Mapping** (the OpenTelemetry/Prometheus compatibility rules, in reverse):
//!
//! | shardmetrics | OTLP |
//! |---|---|
//! | counter `http_requests_total` | monotonic `Sum` `http_requests` (integer points; `s` and double points for time units, in seconds) |
//! | gauge | `Gauge` (double points, the value as recorded) |
//! | histogram `request_duration` (ns) | explicit-bucket `Histogram` `request_duration`, unit `s`: the family's `le` bounds (as the text formats export them) with per-bucket counts, count, sum, min, max |
//! | a histogram's quantile series | `Summary` `<name>_quantiles` (cumulative count and sum, the quantiles over the family's quantile window) |
//! | labels | attributes (string values) |
//! | exemplars | exemplars; `trace_id` / `span_id` labels in hex become the binary ids, the other labels `filtered_attributes` |
//! | units | UCUM: `s`, `By`, `1` (ratio), `ns`/`us`/`ms` for gauges recorded in them; the unit suffix and `_total` leave the name |
//!
//! Every request carries one resource (`service.name`, `OTEL_RESOURCE_ATTRIBUTES`, the
//! `telemetry.sdk.*` attributes) and one scope (`shardmetrics`, the crate version).
//!
//! **Times.** `time_unix_nano` is the snapshot's time. A cumulative point's
//! `start_time_unix_nano` is [`Registry::started_at`] — or, for a series that appeared after
//! the previous export (newly registered, or back after idle expiry with its total restarted
//! from zero) or whose total went down, the previous export's time. With delta temporality
//! (`OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE=delta` or [`OtlpBuilder::temporality`])
//! counters and histograms carry the increase since the previous export, starting at its time;
//! the exporter computes it from consecutive snapshots, so recording pays nothing for it. A
//! batch that is dropped or given up loses its increase (the cumulative default does not).
//!
//! **Delivery** is the shared exporter worker's: a bounded queue, retries with backoff on
//! 429, 502, 503 and 504 (OTLP's retryable statuses) waiting at least the answer's
//! `Retry-After`, other statuses refused for good, a bounded shutdown; see
//! [`ExporterHandle`]. A successful answer's `partial_success` is decoded (protobuf, or JSON's
//! `partialSuccess`: the answer's `Content-Type` says which, else the request's encoding): its
//! `rejected_data_points` are logged and counted in [`ExportStats::rejected_samples`] and
//! `shardmetrics_export_samples_total{exporter="otlp",outcome="rejected"}` (a batch's
//! "samples" are its data points).
//!
//! ```no_run
//! use shardmetrics::{export::{otlp::Otlp, ExporterBuilder}, Registry};
//! use std::time::Duration;
//!
//! let registry = Registry::new();
//! // OTEL_EXPORTER_OTLP_ENDPOINT etc. are read here; the methods override them.
//! let exporter = Otlp::builder()
//!     .endpoint("http://collector:4318/v1/metrics")
//!     .service_name("checkout")
//!     .interval(Duration::from_secs(15))
//!     .start(&registry)?;
//! // … record metrics …
//! let stats = exporter.shutdown(); // sends the final snapshot
//! # Ok::<(), shardmetrics::export::ExportError>(())
//! ```
//!
//! # Exponential histograms
//! [`Histograms::Exponential`] ([`OtlpBuilder::histograms`]) sends histograms as OTLP
//! `ExponentialHistogram`s, exactly the recorded base-2 exponential buckets (issue #16): scale =
//! the histogram's schema, OTLP index = native key − 1 (OTLP numbers a bucket by its lower
//! bound), zero count, dense positive counts from the first non-empty bucket. A family with a
//! series that has no native buckets (a `metrics`-facade histogram whose unit was described
//! after it was registered) is sent as explicit buckets instead.

#![forbid(unsafe_code)]

mod config;
pub mod json;
pub mod proto;

use std::{
    collections::HashMap,
    fmt,
    io::Write as _,
    sync::{Mutex, PoisonError},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

pub use config::{Compression, EnvConfig, Protocol, Temporality, DEFAULT_ENDPOINT, DEFAULT_INTERVAL, DEFAULT_TIMEOUT};
use prost::Message as _;
use proto::{
    metric::Data, number_data_point, summary_data_point::ValueAtQuantile, AggregationTemporality,
    ExportMetricsServiceRequest, ExportMetricsServiceResponse, HistogramDataPoint, InstrumentationScope, KeyValue,
    Metric, NumberDataPoint, Resource, ResourceMetrics, ScopeMetrics, SummaryDataPoint,
};

use crate::{
    export::{
        classic_buckets, for_each_quantile_series, http_client,
        sink::{Batch, ExporterId, SendError, Sink},
        worker::Exporter,
        ExportError, ExportOptions, ExportStats, ExporterBuilder, ExporterHandle,
    },
    snapshot::{FamilyInfo, HistogramSnapshot, Series, Snapshot, Value},
    Kind, Registry, Unit,
};

/// `Content-Type` of an OTLP/HTTP protobuf request.
pub const CONTENT_TYPE: &str = "application/x-protobuf";
/// The `telemetry.sdk.name` resource attribute and the instrumentation scope's name.
pub const SDK_NAME: &str = "shardmetrics";

/// A histogram point's min and max in the exported unit. They are known since the start only,
/// so a delta point leaves them out.
fn min_max(h: &HistogramSnapshot, unit: Unit, delta: bool) -> (Option<f64>, Option<f64>) {
    if delta {
        (None, None)
    } else {
        (h.min().map(|v| unit.value_in_base(v)), h.max().map(|v| unit.value_in_base(v)))
    }
}

/// How histograms are sent: explicit-bucket `Histogram`s (the classic `le` buckets) or
/// `ExponentialHistogram`s (the recorded buckets, exactly).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Histograms {
    /// `Histogram` with the family's `le` bounds (configured, or the defaults for its unit) as
    /// `explicit_bounds`: the buckets the text formats export.
    #[default]
    Explicit,
    /// `ExponentialHistogram` with the recorded base-2 exponential buckets (scale = schema).
    Exponential,
}

/// The OTLP metric name of a family: the registered name without `_total` (counters) and
/// without the unit suffix (`_seconds`, `_bytes`, `_ratio`) the text formats add, as the
/// OpenTelemetry/Prometheus compatibility rules drop them; the unit travels in `unit`.
pub fn metric_name(info: &FamilyInfo) -> String {
    let mut name = info.name();
    if info.kind() == Kind::Counter {
        name = strip_nonempty(name, "_total");
    }
    if let Some(base) = info.unit().base_name() {
        if info.kind() != Kind::Gauge || info.unit() == Unit::Seconds || !info.unit().is_time() {
            name = strip_nonempty(name, &format!("_{base}"));
        }
    }
    name.to_owned()
}

fn strip_nonempty<'a>(name: &'a str, suffix: &str) -> &'a str {
    match name.strip_suffix(suffix) {
        Some(rest) if !rest.is_empty() => rest,
        _ => name,
    }
}

/// The UCUM unit of a family's exported values: counters and histograms in a time unit are
/// exported in seconds (`s`), as in the text formats; gauges keep the unit they were recorded
/// in (`ms`, …) since their values are not converted; bytes are `By`, ratios `1`, no unit is
/// empty.
pub fn ucum_unit(info: &FamilyInfo) -> &'static str {
    let unit = info.unit();
    if info.kind() == Kind::Gauge {
        match unit {
            Unit::Nanoseconds => return "ns",
            Unit::Microseconds => return "us",
            Unit::Milliseconds => return "ms",
            _ => {}
        }
    }
    match unit {
        _ if unit.is_time() => "s",
        Unit::Bytes => "By",
        Unit::Ratio => "1",
        _ => "",
    }
}

fn nanos(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

/// What the exporter remembers of a counter or histogram series between exports: when its
/// cumulative values started, and (for deltas) what they were.
#[derive(Debug, Clone, Default)]
struct Track {
    start: u64,
    /// Counter total or histogram count at the previous export (a decrease is a restart).
    count: u64,
    /// Histogram sum at the previous export (in the recorded unit).
    sum: u64,
    /// Per-bucket histogram counts at the previous export (delta temporality only): explicit
    /// buckets, or exponential ones from OTLP index `offset`.
    buckets: Vec<u64>,
    offset: i32,
    /// Exponential histograms' zero count at the previous export (delta temporality only).
    zero: u64,
    /// The export that last saw the series.
    seen: u64,
}

/// The exporter's memory of the previous export.
#[derive(Debug, Default)]
struct History {
    /// Time of the previous export (`None` before the first).
    prev_time: Option<u64>,
    /// Exports so far.
    exports: u64,
    /// By series id (stable for a registry's life).
    series: HashMap<u32, Track>,
}

/// Builds requests from snapshots: the resource, the scope, the temporality, and the
/// per-series memory that start times and deltas need.
#[derive(Debug)]
pub struct Encoder {
    resource: Resource,
    scope: InstrumentationScope,
    temporality: Temporality,
    histograms: Histograms,
    /// Per family (registered name) overrides of `histograms`.
    histogram_forms: HashMap<String, Histograms>,
    registry_start: u64,
    history: Mutex<History>,
}

impl Encoder {
    /// An encoder for snapshots of a registry started at `registry_start`, with `resource`
    /// attributes (`service.name` and the SDK attributes included by the builder).
    pub fn new(resource: Vec<(String, String)>, temporality: Temporality, registry_start: SystemTime) -> Encoder {
        Encoder {
            resource: Resource {
                attributes: resource.iter().map(|(k, v)| KeyValue::string(k, v)).collect(),
                dropped_attributes_count: 0,
            },
            scope: InstrumentationScope {
                name: SDK_NAME.to_owned(),
                version: env!("CARGO_PKG_VERSION").to_owned(),
                ..Default::default()
            },
            temporality,
            histograms: Histograms::Explicit,
            histogram_forms: HashMap::new(),
            registry_start: nanos(registry_start),
            history: Mutex::new(History::default()),
        }
    }

    /// How histograms are sent (default [`Histograms::Explicit`]).
    pub fn histograms(mut self, h: Histograms) -> Encoder {
        self.histograms = h;
        self
    }

    /// How the histogram family `name` (registered name) is sent, overriding
    /// [`histograms`](Self::histograms).
    pub fn histogram_form(mut self, name: &str, h: Histograms) -> Encoder {
        self.histogram_forms.insert(name.to_owned(), h);
        self
    }

    /// The request for `snapshot`, and its number of data points. Remembers what it sent:
    /// the next call's start times and deltas are relative to this one.
    pub fn encode(&self, snapshot: &Snapshot) -> (ExportMetricsServiceRequest, u64) {
        let mut history = self.history.lock().unwrap_or_else(PoisonError::into_inner);
        let history = &mut *history;
        history.exports += 1;
        let now = nanos(snapshot.taken_at());
        let mut ctx = Ctx {
            now,
            prev: history.prev_time.unwrap_or(self.registry_start),
            delta: self.temporality.is_delta(),
            export: history.exports,
            series: &mut history.series,
            points: 0,
        };
        let temporality =
            if ctx.delta { AggregationTemporality::Delta } else { AggregationTemporality::Cumulative } as i32;
        let mut metrics = Vec::new();
        for family in snapshot.families() {
            let Some(info) = family.first().map(|s| s.family()) else { continue };
            let mut metric = Metric {
                name: metric_name(info),
                description: info.help().to_owned(),
                unit: ucum_unit(info).to_owned(),
                data: None,
                metadata: Vec::new(),
            };
            metric.data = Some(match info.kind() {
                Kind::Counter => Data::Sum(proto::Sum {
                    data_points: family.iter().filter_map(|s| ctx.counter_point(s)).collect(),
                    aggregation_temporality: temporality,
                    is_monotonic: true,
                }),
                Kind::Gauge => Data::Gauge(proto::Gauge {
                    data_points: family.iter().filter_map(|s| ctx.gauge_point(s)).collect(),
                }),
                Kind::Histogram => {
                    let exact = family.iter().all(|s| match s.value() {
                        Value::Histogram(h) => crate::export::native::native_buckets(info, h).is_some(),
                        _ => false,
                    });
                    let form = self.histogram_forms.get(info.name()).copied().unwrap_or(self.histograms);
                    if form == Histograms::Exponential && exact {
                        Data::ExponentialHistogram(proto::ExponentialHistogram {
                            data_points: family.iter().filter_map(|s| ctx.exponential_point(s)).collect(),
                            aggregation_temporality: temporality,
                        })
                    } else {
                        Data::Histogram(proto::Histogram {
                            data_points: family.iter().filter_map(|s| ctx.histogram_point(s)).collect(),
                            aggregation_temporality: temporality,
                        })
                    }
                }
            });
            metrics.push(metric);
            if let Some(qs) = info.quantiles() {
                let mut points = Vec::new();
                for_each_quantile_series(snapshot, family, |s, cumulative, windowed| {
                    points.push(ctx.summary_point(s, qs, cumulative, windowed));
                });
                metrics.push(Metric {
                    name: format!("{}_quantiles", metric_name(info)),
                    description: info.help().to_owned(),
                    unit: ucum_unit(info).to_owned(),
                    data: Some(Data::Summary(proto::Summary { data_points: points })),
                    metadata: Vec::new(),
                });
            }
        }
        let points = ctx.points;
        // Series not seen in this export are forgotten: if they come back (idle expiry ended),
        // their totals restarted from zero and they start again at this export's time.
        let export = history.exports;
        history.series.retain(|_, t| t.seen == export);
        history.prev_time = Some(now);
        let req = ExportMetricsServiceRequest {
            resource_metrics: vec![ResourceMetrics {
                resource: Some(self.resource.clone()),
                scope_metrics: vec![ScopeMetrics {
                    scope: Some(self.scope.clone()),
                    metrics,
                    schema_url: String::new(),
                }],
                schema_url: String::new(),
            }],
        };
        (req, points)
    }
}

/// One export's encoding state.
struct Ctx<'a> {
    now: u64,
    /// The previous export's time (the registry's start before the first): where a delta
    /// starts, and where a series new since then starts.
    prev: u64,
    delta: bool,
    export: u64,
    series: &'a mut HashMap<u32, Track>,
    points: u64,
}

impl Ctx<'_> {
    /// The series' memory, reset when it is new since the previous export or its cumulative
    /// `count` went down (a restart): its start is then the previous export's time.
    fn track(&mut self, s: &Series<'_>, count: u64) -> &mut Track {
        let (prev, export) = (self.prev, self.export);
        let t = self.series.entry(s.id()).or_insert_with(|| Track { start: prev, ..Track::default() });
        if count < t.count {
            *t = Track { start: prev, ..Track::default() };
        }
        t.seen = export;
        t
    }

    fn start(&self, t_start: u64) -> u64 {
        if self.delta {
            self.prev
        } else {
            t_start
        }
    }

    fn counter_point(&mut self, s: Series<'_>) -> Option<NumberDataPoint> {
        let Value::Counter(c) = s.value() else { return None };
        let delta = self.delta;
        let t = self.track(&s, c.total);
        let value = if delta { c.total - t.count } else { c.total };
        t.count = c.total;
        let start = t.start;
        let unit = s.family().unit();
        self.points += 1;
        Some(NumberDataPoint {
            attributes: attributes(&s),
            start_time_unix_nano: self.start(start),
            time_unix_nano: self.now,
            value: Some(if unit.is_time() {
                number_data_point::Value::AsDouble(unit.value_in_base(value))
            } else {
                number_data_point::Value::AsInt(i64::try_from(value).unwrap_or(i64::MAX))
            }),
            exemplars: exemplars(&s),
            flags: 0,
        })
    }

    fn gauge_point(&mut self, s: Series<'_>) -> Option<NumberDataPoint> {
        let Value::Gauge(g) = s.value() else { return None };
        self.points += 1;
        Some(NumberDataPoint {
            attributes: attributes(&s),
            start_time_unix_nano: 0,
            time_unix_nano: self.now,
            value: Some(number_data_point::Value::AsDouble(g)),
            exemplars: Vec::new(),
            flags: 0,
        })
    }

    /// An explicit-bucket point: the family's `le` bounds and the counts between them, from
    /// [`classic_buckets`] (the same numbers as the text formats' `_bucket` samples).
    fn histogram_point(&mut self, s: Series<'_>) -> Option<HistogramDataPoint> {
        let Value::Histogram(h) = s.value() else { return None };
        let info = s.family();
        let unit = info.unit();
        let mut bounds = Vec::new();
        let mut counts = Vec::new();
        let mut below = 0;
        for (bound, le) in classic_buckets(info, h) {
            bounds.push(bound);
            counts.push(le.saturating_sub(below));
            below = le.max(below);
        }
        counts.push(h.count().saturating_sub(below));
        let delta = self.delta;
        let t = self.track(&s, h.count());
        // Cumulative: the counts are the point's. Delta: the point gets the increases and the
        // counts stay for the next export.
        let (count, sum, buckets) = if !delta {
            (h.count(), h.sum(), counts)
        } else if t.buckets.len() == counts.len() {
            let d: Vec<u64> = counts.iter().zip(&t.buckets).map(|(c, p)| c.saturating_sub(*p)).collect();
            let point = (h.count() - t.count, h.sum().saturating_sub(t.sum), d);
            t.buckets = counts;
            point
        } else {
            t.buckets.clone_from(&counts);
            (h.count(), h.sum(), counts)
        };
        t.count = h.count();
        t.sum = h.sum();
        let start = t.start;
        let (min, max) = min_max(h, unit, delta);
        self.points += 1;
        Some(HistogramDataPoint {
            attributes: attributes(&s),
            start_time_unix_nano: self.start(start),
            time_unix_nano: self.now,
            count,
            sum: Some(unit.value_in_base(sum)),
            bucket_counts: buckets,
            explicit_bounds: bounds,
            exemplars: exemplars(&s),
            flags: 0,
            min,
            max,
        })
    }

    /// An exponential-histogram point: the recorded buckets (OTLP index = native key − 1),
    /// dense from the first non-empty one; in delta temporality each bucket's increase since
    /// the previous export.
    fn exponential_point(&mut self, s: Series<'_>) -> Option<proto::ExponentialHistogramDataPoint> {
        use crate::export::native::NativeBuckets;
        let Value::Histogram(h) = s.value() else { return None };
        let info = s.family();
        let unit = info.unit();
        let native = crate::export::native::native_buckets(info, h)?;
        // The first and last keys (one pass, no copy), then the dense counts between them.
        let mut keys = native.positive().map(|(k, _)| k);
        let first = keys.next();
        let (offset, len) = match (first, keys.last().or(first)) {
            (Some(lo), Some(hi)) => (lo - 1, (hi - lo) as usize + 1),
            _ => (0, 0),
        };
        let mut counts = vec![0u64; len];
        for (k, n) in native.positive() {
            counts[(k - 1 - offset) as usize] = n;
        }
        let (scale, zero) = (native.schema(), native.zero_count());
        let delta = self.delta;
        let t = self.track(&s, h.count());
        // Cumulative: the counts are the point's, moved. Delta: the point gets the increases and
        // the counts stay for the next export.
        let (count, sum, zero_count, buckets) = if delta {
            let previous =
                |i: i32| usize::try_from(i - t.offset).ok().and_then(|j| t.buckets.get(j)).copied().unwrap_or(0);
            let d = counts.iter().enumerate().map(|(j, &c)| c.saturating_sub(previous(offset + j as i32))).collect();
            let point = (h.count() - t.count, h.sum().saturating_sub(t.sum), zero.saturating_sub(t.zero), d);
            (t.buckets, t.offset, t.zero) = (counts, offset, zero);
            point
        } else {
            (h.count(), h.sum(), zero, counts)
        };
        t.count = h.count();
        t.sum = h.sum();
        let start = t.start;
        let (min, max) = min_max(h, unit, delta);
        self.points += 1;
        Some(proto::ExponentialHistogramDataPoint {
            attributes: attributes(&s),
            start_time_unix_nano: self.start(start),
            time_unix_nano: self.now,
            count,
            sum: Some(unit.value_in_base(sum)),
            scale,
            zero_count,
            positive: Some(proto::exponential_histogram_data_point::Buckets { offset, bucket_counts: buckets }),
            negative: None,
            flags: 0,
            exemplars: exemplars(&s),
            min,
            max,
            zero_threshold: native.zero_threshold(),
        })
    }

    /// A summary point: cumulative count and sum since the series' start, quantiles over the
    /// family's quantile window (an empty histogram's are left out, not NaN).
    fn summary_point(
        &mut self,
        s: Series<'_>,
        qs: &[f64],
        cumulative: &HistogramSnapshot,
        windowed: &HistogramSnapshot,
    ) -> SummaryDataPoint {
        let unit = s.family().unit();
        let start = self.series.get(&s.id()).map_or(self.prev, |t| t.start);
        self.points += 1;
        SummaryDataPoint {
            attributes: attributes(&s),
            start_time_unix_nano: start,
            time_unix_nano: self.now,
            count: cumulative.count(),
            sum: unit.value_in_base(cumulative.sum()),
            quantile_values: qs
                .iter()
                .filter_map(|&q| {
                    windowed.quantile(q).map(|v| ValueAtQuantile { quantile: q, value: unit.value_in_base(v) })
                })
                .collect(),
            flags: 0,
        }
    }
}

fn attributes(s: &Series<'_>) -> Vec<KeyValue> {
    s.labels().iter().map(|(k, v)| KeyValue::string(k, v)).collect()
}

/// The series' exemplars, the latest per bucket (per counter), with `trace_id` (32 hex
/// digits) and `span_id` (16) as binary ids; other labels, or ids that are not such hex, are
/// `filtered_attributes`.
fn exemplars(s: &Series<'_>) -> Vec<proto::Exemplar> {
    let unit = s.family().unit();
    let counter = s.kind() == Kind::Counter;
    s.exemplars()
        .iter()
        .flatten()
        .map(|e| {
            let mut out = proto::Exemplar {
                time_unix_nano: nanos(e.timestamp()),
                value: Some(if counter && !unit.is_time() {
                    proto::exemplar::Value::AsInt(i64::try_from(e.value()).unwrap_or(i64::MAX))
                } else {
                    proto::exemplar::Value::AsDouble(unit.value_in_base(e.value()))
                }),
                ..Default::default()
            };
            for (k, v) in e.labels() {
                match (k, hex_id(v)) {
                    ("trace_id", Some(id)) if id.len() == 16 => out.trace_id = id,
                    ("span_id", Some(id)) if id.len() == 8 => out.span_id = id,
                    _ => out.filtered_attributes.push(KeyValue::string(k, v)),
                }
            }
            out
        })
        .collect()
}

/// Hex digits (either case) as bytes; `None` if `s` is not an even number of them.
fn hex_id(s: &str) -> Option<Vec<u8>> {
    if s.len() % 2 != 0 {
        return None;
    }
    (0..s.len()).step_by(2).map(|i| s.get(i..i + 2).and_then(|h| u8::from_str_radix(h, 16).ok())).collect()
}

/// Protobuf-encodes a request, gzip-compressed when asked: a request body.
pub fn encode_body(req: &ExportMetricsServiceRequest, compression: Compression) -> Result<Vec<u8>, String> {
    compress(req.encode_to_vec(), compression)
}

/// A request body in `protocol`'s encoding (protobuf, or [`json`]), gzip-compressed when asked.
pub fn encode_body_as(
    req: &ExportMetricsServiceRequest,
    protocol: Protocol,
    compression: Compression,
) -> Result<Vec<u8>, String> {
    match protocol {
        Protocol::HttpProtobuf => encode_body(req, compression),
        Protocol::HttpJson => compress(json::encode(req).into_bytes(), compression),
    }
}

fn compress(raw: Vec<u8>, compression: Compression) -> Result<Vec<u8>, String> {
    match compression {
        Compression::None => Ok(raw),
        Compression::Gzip => {
            let mut gz = flate2::write::GzEncoder::new(Vec::with_capacity(raw.len() / 4), flate2::Compression::fast());
            gz.write_all(&raw).and_then(|()| gz.finish()).map_err(|e| format!("gzip: {e}"))
        }
    }
}

/// Configures an [`Otlp`] exporter: starts from the OpenTelemetry environment variables
/// ([`EnvConfig`]); each method overrides one of them. The settings every exporter shares
/// (queue, backoff, shutdown) come from [`ExporterBuilder`]; the interval and request timeout
/// default to `OTEL_METRIC_EXPORT_INTERVAL` (60 s) and `OTEL_EXPORTER_OTLP_TIMEOUT` (10 s).
#[derive(Debug, Clone)]
#[must_use = "a builder does nothing until `build` or `start`"]
pub struct OtlpBuilder {
    env: EnvConfig,
    service_name: Option<String>,
    /// Per family overrides of `env.histograms`.
    histogram_forms: Vec<(String, Histograms)>,
    options: ExportOptions,
}

impl ExporterBuilder for OtlpBuilder {
    fn options_mut(&mut self) -> &mut ExportOptions {
        &mut self.options
    }
}

impl crate::export::builder::sealed::Sealed for OtlpBuilder {}
impl crate::export::builder::sealed::Http for OtlpBuilder {}

impl OtlpBuilder {
    /// A builder from already-parsed settings (what [`Otlp::builder`] does with the process
    /// environment; tests pass their own).
    pub fn from_config(env: EnvConfig) -> OtlpBuilder {
        let mut options = ExportOptions::new(16);
        options.interval = Some(env.interval);
        options.timeout = env.timeout;
        OtlpBuilder { env, service_name: None, histogram_forms: Vec::new(), options }
    }

    /// The full URL to POST to (e.g. `http://collector:4318/v1/metrics`), used as is, like
    /// `OTEL_EXPORTER_OTLP_METRICS_ENDPOINT`.
    pub fn endpoint(mut self, url: &str) -> Self {
        url.clone_into(&mut self.env.endpoint);
        self
    }

    /// A base URL to which `/v1/metrics` is appended (e.g. `http://collector:4318`, or
    /// Prometheus 3's `http://prometheus:9090/api/v1/otlp`), like
    /// `OTEL_EXPORTER_OTLP_ENDPOINT`.
    pub fn base_endpoint(mut self, base: &str) -> Self {
        self.env.endpoint = config::append_metrics_path(base);
        self
    }

    /// Adds an HTTP header to every request (e.g. `Authorization`), replacing one of the same
    /// name from `OTEL_EXPORTER_OTLP_HEADERS`.
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.env.headers.retain(|(n, _)| !n.eq_ignore_ascii_case(name));
        self.env.headers.push((name.to_owned(), value.to_owned()));
        self
    }

    /// Request body compression (default from `OTEL_EXPORTER_OTLP_COMPRESSION`, else none).
    pub fn compression(mut self, c: Compression) -> Self {
        self.env.compression = c;
        self
    }

    /// The resource's `service.name` (default `OTEL_SERVICE_NAME`, else a `service.name` in
    /// `OTEL_RESOURCE_ATTRIBUTES`, else `unknown_service:<executable name>`).
    pub fn service_name(mut self, name: &str) -> Self {
        self.service_name = Some(name.to_owned());
        self
    }

    /// Adds (or replaces) a resource attribute.
    pub fn resource_attribute(mut self, key: &str, value: &str) -> Self {
        self.env.resource_attributes.retain(|(k, _)| k != key);
        self.env.resource_attributes.push((key.to_owned(), value.to_owned()));
        self
    }

    /// Cumulative (default) or delta counters and histograms.
    pub fn temporality(mut self, t: Temporality) -> Self {
        self.env.temporality = t;
        self
    }

    /// How histograms are sent (default from
    /// `OTEL_EXPORTER_OTLP_METRICS_DEFAULT_HISTOGRAM_AGGREGATION`, else
    /// [`Histograms::Explicit`], the OpenTelemetry SDK default).
    pub fn histograms(mut self, h: Histograms) -> Self {
        self.env.histograms = h;
        self
    }

    /// How the histogram family `name` (its registered name, e.g. `request_duration_seconds`)
    /// is sent, whatever [`histograms`](Self::histograms) says for the others.
    pub fn histogram_form(mut self, name: &str, h: Histograms) -> Self {
        self.histogram_forms.retain(|(n, _)| n != name);
        self.histogram_forms.push((name.to_owned(), h));
        self
    }

    /// The request encoding (default from `OTEL_EXPORTER_OTLP_[METRICS_]PROTOCOL`, else
    /// [`Protocol::HttpProtobuf`]); overrides a `grpc` the environment asked for.
    pub fn protocol(mut self, p: Protocol) -> Self {
        self.env.protocol = p;
        self.env.unsupported_protocol = None;
        self
    }

    /// The resource attributes sent: `OTEL_RESOURCE_ATTRIBUTES` and
    /// [`resource_attribute`](Self::resource_attribute)s, `service.name`, then the SDK's
    /// `telemetry.sdk.{name,language,version}` (which nothing overrides).
    pub fn resource(&self) -> Vec<(String, String)> {
        let mut attrs: Vec<(String, String)> = Vec::new();
        for (k, v) in &self.env.resource_attributes {
            attrs.retain(|(o, _)| o != k);
            attrs.push((k.clone(), v.clone()));
        }
        let from_attrs = attrs.iter().find(|(k, _)| k == "service.name").map(|(_, v)| v.clone());
        let service =
            self.service_name.clone().or_else(|| self.env.service_name.clone()).or(from_attrs).unwrap_or_else(|| {
                let exe = std::env::current_exe().ok();
                let name = exe.as_deref().and_then(|p| p.file_name()).map(|n| n.to_string_lossy().into_owned());
                format!("unknown_service:{}", name.unwrap_or_default())
            });
        attrs.retain(|(k, _)| k != "service.name" && !k.starts_with("telemetry.sdk."));
        attrs.insert(0, ("service.name".to_owned(), service));
        attrs.push(("telemetry.sdk.name".to_owned(), SDK_NAME.to_owned()));
        attrs.push(("telemetry.sdk.language".to_owned(), "rust".to_owned()));
        attrs.push(("telemetry.sdk.version".to_owned(), env!("CARGO_PKG_VERSION").to_owned()));
        attrs
    }

    /// Validates the configuration and registers the exporter's self-metrics in `registry`.
    /// Fails with [`ExportError::Unsupported`] when the environment asks for OTLP over gRPC
    /// (`OTEL_EXPORTER_OTLP_PROTOCOL=grpc`), which this exporter does not speak.
    pub fn build(self, registry: &Registry) -> Result<Otlp, ExportError> {
        if let Some(setting) = &self.env.unsupported_protocol {
            return Err(ExportError::Unsupported {
                what: format!("OTLP over gRPC ({setting})"),
                instead: "this exporter speaks OTLP/HTTP: use http/protobuf (the default) or http/json, to the \
                          receiver's OTLP/HTTP port (4318, not gRPC's 4317)",
            });
        }
        http_client::check_url(&self.env.endpoint)?;
        for (k, v) in &self.env.headers {
            if ureq::http::HeaderName::try_from(k.as_str()).is_err()
                || ureq::http::HeaderValue::try_from(v.as_str()).is_err()
            {
                return Err(ExportError::InvalidHeader { name: k.clone() });
            }
        }
        let mut encoder =
            Encoder::new(self.resource(), self.env.temporality, registry.started_at()).histograms(self.env.histograms);
        for (name, form) in &self.histogram_forms {
            encoder = encoder.histogram_form(name, *form);
        }
        let sink = OtlpSink {
            agent: http_client::agent(self.options.timeout),
            url: self.env.endpoint,
            headers: self.env.headers,
            compression: self.env.compression,
            protocol: self.env.protocol,
            encoder,
        };
        Ok(Otlp { exporter: Exporter::new_with_rejected(registry, ID, sink, self.options) })
    }

    /// [`build`](Self::build)s and [`start`](Otlp::start)s the exporter.
    pub fn start(self, registry: &Registry) -> Result<ExporterHandle, ExportError> {
        Ok(self.build(registry)?.start())
    }
}

/// The name of the exporter's thread.
pub(crate) const THREAD_NAME: &str = "sm-otlp";
/// The `exporter` label of the self-metrics, and the thread.
const ID: ExporterId = ExporterId { name: "otlp", thread: THREAD_NAME };

/// A configured OTLP exporter: [`start`](Self::start) it for periodic export on its own
/// thread, or [`send_once`](Self::send_once) a snapshot now.
pub struct Otlp {
    exporter: Exporter<OtlpSink>,
}

impl fmt::Debug for Otlp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Otlp")
            .field("endpoint", &self.exporter.sink.url)
            .field("protocol", &self.exporter.sink.protocol)
            .finish_non_exhaustive()
    }
}

impl Otlp {
    /// Starts configuring an exporter from the OpenTelemetry environment variables of this
    /// process ([`EnvConfig::from_env`]); invalid ones are logged as warnings and ignored.
    pub fn builder() -> OtlpBuilder {
        let (env, warnings) = EnvConfig::from_env();
        for w in warnings {
            log::warn!("shardmetrics otlp exporter: {w}");
        }
        OtlpBuilder::from_config(env)
    }

    /// The endpoint requests go to.
    pub fn endpoint(&self) -> &str {
        &self.exporter.sink.url
    }

    /// The encoding requests are sent in.
    pub fn protocol(&self) -> Protocol {
        self.exporter.sink.protocol
    }

    /// Sends one snapshot now on the calling thread, retrying with the configured backoff;
    /// counts the outcome like the background thread does (with delta temporality, the
    /// increase since the previous export of this exporter).
    pub fn send_once(&self, snapshot: &Snapshot) -> Result<(), ExportError> {
        self.exporter.export_once(snapshot)
    }

    /// What the exporter has done so far (the background thread's statistics are on its
    /// [`ExporterHandle`]).
    pub fn stats(&self) -> ExportStats {
        self.exporter.stats()
    }

    /// Starts the background thread: every interval, a new snapshot is queued and sent.
    pub fn start(self) -> ExporterHandle {
        self.exporter.start()
    }
}

struct OtlpSink {
    url: String,
    agent: ureq::Agent,
    headers: Vec<(String, String)>,
    compression: Compression,
    protocol: Protocol,
    encoder: Encoder,
}

/// OTLP/HTTP's retryable statuses; every other 4xx and 5xx must not be retried.
fn retryable(status: u16) -> bool {
    matches!(status, 429 | 502 | 503 | 504)
}

impl Sink for OtlpSink {
    fn encode(&self, snapshot: &Snapshot) -> Batch {
        let (req, points) = self.encoder.encode(snapshot);
        Batch { seq: snapshot.seq(), samples: points, body: encode_body_as(&req, self.protocol, self.compression) }
    }

    fn send(&self, batch: &Batch, timeout: Duration) -> Result<(), SendError> {
        self.send_counting(batch, timeout).map(drop)
    }

    fn send_counting(&self, batch: &Batch, timeout: Duration) -> Result<u64, SendError> {
        let body = batch.body.as_ref().map_err(|e| SendError::Rejected { status: 0, body: e.clone() })?;
        let mut req = self.agent.post(&self.url).header("Content-Type", self.protocol.content_type());
        if self.compression == Compression::Gzip {
            req = req.header("Content-Encoding", "gzip");
        }
        for (k, v) in &self.headers {
            req = req.header(k, v);
        }
        let mut resp = http_client::outcome_with(http_client::within(req, timeout).send(body.as_slice()), retryable)?;
        // The answer is in the request's encoding (OTLP/HTTP asks receivers to answer with the
        // request's Content-Type); a receiver that says otherwise is believed.
        let answer_type = resp.headers().get("content-type").and_then(|v| v.to_str().ok()).map(str::to_ascii_lowercase);
        let json = match answer_type.as_deref() {
            Some(t) if t.starts_with(json::CONTENT_TYPE) => true,
            Some(t) if t.starts_with(CONTENT_TYPE) || t.starts_with("application/protobuf") => false,
            _ => self.protocol == Protocol::HttpJson,
        };
        let answer = resp.body_mut().with_config().limit(64 * 1024).read_to_vec().unwrap_or_default();
        let decoded = if json {
            json::decode_response(&answer)
        } else {
            ExportMetricsServiceResponse::decode(answer.as_slice()).map_err(|e| e.to_string())
        };
        let answer = match decoded {
            Ok(answer) => answer,
            Err(e) => {
                log::debug!(
                    "shardmetrics otlp exporter: the receiver's answer is not an ExportMetricsServiceResponse: {e}"
                );
                return Ok(0);
            }
        };
        let Some(partial) = answer.partial_success else { return Ok(0) };
        let rejected = u64::try_from(partial.rejected_data_points).unwrap_or(0);
        if rejected > 0 || !partial.error_message.is_empty() {
            log::warn!(
                "shardmetrics otlp exporter: the receiver rejected {rejected} of {} data points of snapshot {}: {}",
                batch.samples,
                batch.seq,
                partial.error_message
            );
        }
        Ok(rejected)
    }
}

/// Decodes a request body as a receiver does (gunzipping it first when `gzip`).
pub fn decode_body(body: &[u8], gzip: bool) -> Result<ExportMetricsServiceRequest, String> {
    let raw;
    let bytes = if gzip {
        let mut out = Vec::new();
        std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(body), &mut out)
            .map_err(|e| format!("gzip: {e}"))?;
        raw = out;
        &raw[..]
    } else {
        body
    };
    ExportMetricsServiceRequest::decode(bytes).map_err(|e| format!("protobuf: {e}"))
}

/// The attribute `key`'s string value among `attrs`.
pub fn attribute<'a>(attrs: &'a [KeyValue], key: &str) -> Option<&'a str> {
    attrs.iter().find(|kv| kv.key == key).and_then(KeyValue::as_str)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Unit;

    fn registry() -> Registry {
        let r = Registry::builder().manual().build();
        r.counter("http_requests_total").help("Requests").label("route", "/api").build().unwrap().add(42);
        r.counter("busy_seconds_total").unit(Unit::Nanoseconds).build().unwrap().add(1_500_000_000);
        r.gauge("queue_depth").build().unwrap().set(-3.5);
        r.gauge("wait").unit(Unit::Milliseconds).build().unwrap().set(12.0);
        let h = r
            .histogram("request_duration")
            .unit(Unit::Nanoseconds)
            .buckets(&[0.001, 0.01, 0.1])
            .quantiles(&[0.5, 0.99])
            .build()
            .unwrap();
        for v in [500_000, 2_000_000, 3_000_000, 50_000_000, 900_000_000] {
            h.record(v);
        }
        h.record_with_exemplar(
            7_000_000,
            &[("trace_id", "4bf92f3577b34da6a3ce929d0e0e4736"), ("span_id", "00f067aa0ba902b7"), ("user", "x")],
        );
        r.histogram("payload_bytes").unit(Unit::Bytes).buckets(&[100.0]).build().unwrap().record(50);
        r
    }

    fn metric<'a>(req: &'a ExportMetricsServiceRequest, name: &str) -> &'a Metric {
        req.resource_metrics[0].scope_metrics[0].metrics.iter().find(|m| m.name == name).unwrap()
    }

    fn encoder(r: &Registry, t: Temporality) -> Encoder {
        let b = OtlpBuilder::from_config(EnvConfig { temporality: t, ..EnvConfig::default() }).service_name("svc");
        Encoder::new(b.resource(), t, r.started_at())
    }

    #[test]
    fn names_units_and_kinds_follow_the_compatibility_rules() {
        let r = registry();
        let (req, points) = encoder(&r, Temporality::Cumulative).encode(&r.flush());
        let names: Vec<(&str, &str)> = req.resource_metrics[0].scope_metrics[0]
            .metrics
            .iter()
            .map(|m| (m.name.as_str(), m.unit.as_str()))
            .collect();
        for expected in [
            ("http_requests", ""),
            ("busy", "s"),
            ("queue_depth", ""),
            ("wait", "ms"),
            ("request_duration", "s"),
            ("request_duration_quantiles", "s"),
            ("payload", "By"),
        ] {
            assert!(names.contains(&expected), "{expected:?} in {names:?}");
        }
        let Some(Data::Sum(sum)) = &metric(&req, "http_requests").data else { panic!() };
        assert!(sum.is_monotonic);
        assert_eq!(sum.aggregation_temporality, AggregationTemporality::Cumulative as i32);
        assert_eq!(sum.data_points[0].value, Some(number_data_point::Value::AsInt(42)));
        assert_eq!(attribute(&sum.data_points[0].attributes, "route"), Some("/api"));
        let Some(Data::Sum(busy)) = &metric(&req, "busy").data else { panic!() };
        assert_eq!(busy.data_points[0].value, Some(number_data_point::Value::AsDouble(1.5)));
        let Some(Data::Gauge(g)) = &metric(&req, "queue_depth").data else { panic!() };
        assert_eq!(g.data_points[0].value, Some(number_data_point::Value::AsDouble(-3.5)));
        assert_eq!(metric(&req, "http_requests").description, "Requests");
        // Self-metrics count too: every series is one point, plus one summary point.
        assert_eq!(points, r.snapshot().series().len() as u64 + 1);
    }

    #[test]
    fn histograms_carry_the_text_formats_buckets_min_max_and_exemplars() {
        let r = registry();
        let snap = r.flush();
        let (req, _) = encoder(&r, Temporality::Cumulative).encode(&snap);
        let Some(Data::Histogram(h)) = &metric(&req, "request_duration").data else { panic!() };
        let p = &h.data_points[0];
        assert_eq!(p.explicit_bounds, [0.001, 0.01, 0.1]);
        assert_eq!(p.bucket_counts, [1, 3, 1, 1]);
        assert_eq!(p.count, 6);
        assert_eq!(p.bucket_counts.iter().sum::<u64>(), p.count);
        assert!((p.sum.unwrap() - 0.9625).abs() < 1e-12, "{:?}", p.sum);
        assert_eq!((p.min, p.max), (Some(0.0005), Some(0.9)));
        let e = &p.exemplars[0];
        assert_eq!(e.trace_id, hex_id("4bf92f3577b34da6a3ce929d0e0e4736").unwrap());
        assert_eq!(e.span_id, [0x00, 0xf0, 0x67, 0xaa, 0x0b, 0xa9, 0x02, 0xb7]);
        assert_eq!(e.value, Some(proto::exemplar::Value::AsDouble(0.007)));
        assert_eq!(attribute(&e.filtered_attributes, "user"), Some("x"));
        let Some(Data::Summary(s)) = &metric(&req, "request_duration_quantiles").data else { panic!() };
        let q = &s.data_points[0];
        assert_eq!((q.count, q.quantile_values.len()), (6, 2));
        assert_eq!(q.quantile_values[0].quantile, 0.5);
    }

    #[test]
    fn resource_and_scope() {
        let r = registry();
        let (req, _) = encoder(&r, Temporality::Cumulative).encode(&r.flush());
        let rm = &req.resource_metrics[0];
        let attrs = &rm.resource.as_ref().unwrap().attributes;
        assert_eq!(attribute(attrs, "service.name"), Some("svc"));
        assert_eq!(attribute(attrs, "telemetry.sdk.name"), Some("shardmetrics"));
        assert_eq!(attribute(attrs, "telemetry.sdk.language"), Some("rust"));
        assert_eq!(attribute(attrs, "telemetry.sdk.version"), Some(env!("CARGO_PKG_VERSION")));
        assert_eq!(rm.scope_metrics[0].scope.as_ref().unwrap().name, "shardmetrics");
    }

    #[test]
    fn service_name_precedence() {
        let env = EnvConfig {
            service_name: Some("from-env".into()),
            resource_attributes: vec![("service.name".into(), "from-attrs".into()), ("team".into(), "a".into())],
            ..EnvConfig::default()
        };
        let service = |b: &OtlpBuilder| b.resource().into_iter().find(|(k, _)| k == "service.name").unwrap().1;
        let b = OtlpBuilder::from_config(env.clone());
        assert_eq!(service(&b), "from-env");
        assert_eq!(service(&b.clone().service_name("built")), "built");
        let b = OtlpBuilder::from_config(EnvConfig { service_name: None, ..env });
        assert_eq!(service(&b), "from-attrs");
        assert!(b.resource().contains(&("team".into(), "a".into())));
        let unknown = service(&OtlpBuilder::from_config(EnvConfig::default()));
        assert!(unknown.starts_with("unknown_service:"), "{unknown}");
    }

    #[test]
    fn start_times_and_deltas() {
        let r = Registry::builder().manual().build();
        let c = r.counter("c_total").build().unwrap();
        let h = r.histogram("h").buckets(&[10.0]).build().unwrap();
        let cumulative = encoder(&r, Temporality::Cumulative);
        let delta = encoder(&r, Temporality::Delta);
        let start = nanos(r.started_at());
        let mut totals = (0, 0, vec![0u64; 2]);
        let mut prev_time = start;
        for round in 1..=3u64 {
            c.add(round);
            h.record(round * 4);
            let snap = r.flush();
            let now = nanos(snap.taken_at());
            let (creq, _) = cumulative.encode(&snap);
            let (dreq, _) = delta.encode(&snap);
            let Some(Data::Sum(cs)) = &metric(&creq, "c").data else { panic!() };
            let Some(Data::Sum(ds)) = &metric(&dreq, "c").data else { panic!() };
            assert_eq!(ds.aggregation_temporality, AggregationTemporality::Delta as i32);
            assert_eq!(cs.data_points[0].start_time_unix_nano, start, "cumulative: the registry's start");
            assert_eq!(ds.data_points[0].start_time_unix_nano, prev_time, "delta: the previous export");
            assert_eq!((cs.data_points[0].time_unix_nano, ds.data_points[0].time_unix_nano), (now, now));
            let Some(number_data_point::Value::AsInt(d)) = ds.data_points[0].value else { panic!() };
            totals.0 += d as u64;
            assert_eq!(cs.data_points[0].value, Some(number_data_point::Value::AsInt(totals.0 as i64)));
            let Some(Data::Histogram(dh)) = &metric(&dreq, "h").data else { panic!() };
            let Some(Data::Histogram(ch)) = &metric(&creq, "h").data else { panic!() };
            let (dp, cp) = (&dh.data_points[0], &ch.data_points[0]);
            assert_eq!((dp.count, dp.min), (1, None), "one value per round; no min in a delta");
            totals.1 += dp.count;
            for (t, d) in totals.2.iter_mut().zip(&dp.bucket_counts) {
                *t += d;
            }
            assert_eq!((cp.count, &cp.bucket_counts), (totals.1, &totals.2), "deltas add up to the totals");
            prev_time = now;
        }
    }

    #[test]
    fn a_series_back_from_idle_expiry_restarts_at_the_previous_export() {
        let r = Registry::builder().manual().expire_after(1).build();
        let c = r.counter("c_total").build().unwrap();
        let enc = encoder(&r, Temporality::Cumulative);
        c.add(5);
        let (first, _) = enc.encode(&r.flush());
        let Some(Data::Sum(s)) = &metric(&first, "c").data else { panic!() };
        assert_eq!(s.data_points[0].start_time_unix_nano, nanos(r.started_at()));
        // Idle for a few ticks: expired, not exported.
        let mut last = nanos(r.started_at());
        for _ in 0..3 {
            let snap = r.flush();
            last = nanos(snap.taken_at());
            enc.encode(&snap);
        }
        c.add(2);
        let (back, _) = enc.encode(&r.flush());
        let Some(Data::Sum(s)) = &metric(&back, "c").data else { panic!("{back:?}") };
        assert_eq!(s.data_points[0].value, Some(number_data_point::Value::AsInt(2)), "counting from zero");
        assert_eq!(s.data_points[0].start_time_unix_nano, last, "starts at the previous export");
    }

    #[test]
    fn prost_round_trip_plain_and_gzip() {
        let r = registry();
        let (req, _) = encoder(&r, Temporality::Cumulative).encode(&r.flush());
        let plain = encode_body(&req, Compression::None).unwrap();
        let gz = encode_body(&req, Compression::Gzip).unwrap();
        assert_eq!(&gz[..2], [0x1f, 0x8b], "a gzip member");
        assert_eq!(decode_body(&plain, false).unwrap(), req);
        assert_eq!(decode_body(&gz, true).unwrap(), req);
        assert!(decode_body(b"\xff\xff", false).is_err());
        let resp = ExportMetricsServiceResponse {
            partial_success: Some(proto::ExportMetricsPartialSuccess {
                rejected_data_points: 3,
                error_message: "bad".into(),
            }),
        };
        assert_eq!(ExportMetricsServiceResponse::decode(resp.encode_to_vec().as_slice()).unwrap(), resp);
    }

    #[test]
    fn grpc_fails_the_build_and_the_builder_can_override_it() {
        let r = Registry::builder().manual().build();
        let (env, warnings) = EnvConfig::from_lookup(|k| (k == "OTEL_EXPORTER_OTLP_PROTOCOL").then(|| "grpc".into()));
        assert!(warnings.is_empty(), "{warnings:?}");
        let err = OtlpBuilder::from_config(env.clone()).build(&r).unwrap_err();
        assert!(matches!(err, ExportError::Unsupported { .. }), "{err:?}");
        let message = err.to_string();
        for part in ["gRPC", "OTEL_EXPORTER_OTLP_PROTOCOL=grpc", "not supported", "http/protobuf", "4318"] {
            assert!(message.contains(part), "{part:?} in {message}");
        }
        let json = OtlpBuilder::from_config(env).protocol(Protocol::HttpJson).build(&r).unwrap();
        assert_eq!(json.protocol(), Protocol::HttpJson);
    }

    #[test]
    fn json_bodies_plain_and_gzip() {
        let r = registry();
        let (req, _) = encoder(&r, Temporality::Cumulative).encode(&r.flush());
        let plain = encode_body_as(&req, Protocol::HttpJson, Compression::None).unwrap();
        assert_eq!(plain, json::encode(&req).into_bytes());
        let gz = encode_body_as(&req, Protocol::HttpJson, Compression::Gzip).unwrap();
        let mut unzipped = Vec::new();
        std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(gz.as_slice()), &mut unzipped).unwrap();
        assert_eq!(unzipped, plain);
        assert_eq!(
            encode_body_as(&req, Protocol::HttpProtobuf, Compression::None),
            encode_body(&req, Compression::None)
        );
    }

    #[test]
    fn hex_ids() {
        assert_eq!(hex_id("00fF"), Some(vec![0, 255]));
        assert_eq!(hex_id("abc"), None);
        assert_eq!(hex_id("zz"), None);
        assert_eq!(hex_id("é1"), None);
    }

    #[test]
    fn builder_validates_and_overrides() {
        let r = Registry::builder().manual().build();
        let b = || OtlpBuilder::from_config(EnvConfig::default());
        assert!(matches!(b().endpoint("localhost:4318").build(&r), Err(ExportError::InvalidUrl { .. })));
        assert!(matches!(b().header("bad header", "1").build(&r), Err(ExportError::InvalidHeader { .. })));
        let o = b().endpoint("http://c:4318/v1/metrics").build(&r).unwrap();
        assert_eq!(o.endpoint(), "http://c:4318/v1/metrics");
        assert_eq!(
            b().base_endpoint("http://p:9090/api/v1/otlp").build(&r).unwrap().endpoint(),
            "http://p:9090/api/v1/otlp/v1/metrics"
        );
        assert_eq!(b().build(&r).unwrap().protocol(), Protocol::HttpProtobuf);
        assert_eq!(b().protocol(Protocol::HttpJson).build(&r).unwrap().protocol(), Protocol::HttpJson);
        let mut built = b().timeout(Duration::from_secs(2));
        assert_eq!(built.options_mut().timeout, Duration::from_secs(2));
        assert_eq!(built.options_mut().interval, Some(DEFAULT_INTERVAL));
    }
}
