//! Exporters. Every one reads only an `Arc<Snapshot>`; none touches a shard or blocks
//! recording.

#![forbid(unsafe_code)]

pub(crate) use crate::exposition::{bound_in_unit, write_f64, write_u64};
use crate::{snapshot::FamilyInfo, Unit};

#[cfg(feature = "http")]
pub mod http;

// The background exporters run std threads of their own; the loom build compiles only the core.
#[cfg(not(shardmetrics_loom))]
mod backoff;
#[cfg(not(shardmetrics_loom))]
mod builder;
#[cfg(not(shardmetrics_loom))]
mod error;
#[cfg(not(shardmetrics_loom))]
pub mod file;
#[cfg(all(any(feature = "remote-write", feature = "push", feature = "otlp"), not(shardmetrics_loom)))]
mod http_client;
#[cfg(feature = "json")]
pub mod json;
// JSON string literals for the JSON render and OTLP/HTTP JSON.
#[cfg(any(feature = "json", all(feature = "otlp", not(shardmetrics_loom))))]
mod json_string;
pub mod openmetrics;
#[cfg(all(feature = "otlp", not(shardmetrics_loom)))]
pub mod otlp;
pub mod prometheus;
// Native-histogram buckets as the binary formats read them (protobuf exposition, remote write,
// OTLP exponential histograms).
#[cfg(any(feature = "protobuf", feature = "remote-write", feature = "otlp"))]
mod native;
#[cfg(feature = "protobuf")]
pub mod protobuf;
#[cfg(all(feature = "push", not(shardmetrics_loom)))]
pub mod pushgateway;
#[cfg(all(feature = "remote-write", not(shardmetrics_loom)))]
pub mod remote_write;
#[cfg(not(shardmetrics_loom))]
mod sink;
#[cfg(not(shardmetrics_loom))]
mod stats;
#[cfg(not(shardmetrics_loom))]
mod worker;

#[cfg(not(shardmetrics_loom))]
pub use backoff::Backoff;
#[cfg(not(shardmetrics_loom))]
pub use builder::{ExportOptions, ExporterBuilder};
#[cfg(not(shardmetrics_loom))]
pub use error::ExportError;
#[cfg(not(shardmetrics_loom))]
pub use stats::ExportStats;
#[cfg(not(shardmetrics_loom))]
pub use worker::ExporterHandle;

/// The name of a histogram's summary family of quantile series: its exported name followed by
/// `_quantiles` (`http_request_duration_seconds` → `http_request_duration_seconds_quantiles`).
pub fn quantile_family_name(info: &FamilyInfo) -> String {
    crate::exposition::quantile_family_name(info.desc())
}

/// Which text format [`write_samples`] writes.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Dialect {
    Prometheus,
    OpenMetrics,
}

/// Writes the sample lines of one family (its header is already written). The two text formats
/// differ only in two details of histograms: OpenMetrics leaves out `le` bounds below 0 (values
/// are unsigned, those buckets are always empty, and it forbids `_sum` beside negative buckets)
/// and writes `_count` before `_sum`.
///
/// OpenMetrics samples of counters and histogram buckets carry the series' latest exemplar for
/// them, if any (`… # {trace_id="…"} value timestamp`); Prometheus 0.0.4 has no exemplars.
pub(crate) fn write_samples(out: &mut String, series: crate::snapshot::SeriesList<'_>, name: &str, dialect: Dialect) {
    let Some(info) = series.first().map(|s| s.family()) else { return };
    let mut le = String::new();
    let exemplar = |out: &mut String, s: crate::snapshot::Series<'_>, i: usize| {
        if dialect == Dialect::OpenMetrics {
            if let Some(Some(e)) = s.exemplars().get(i) {
                write_exemplar(out, e, info.unit());
            }
        }
    };
    for s in series {
        let labels = s.rendered_labels();
        match s.value() {
            crate::snapshot::Value::Counter(c) => {
                sample_start(out, name, "", labels, None);
                prometheus::write_scaled(out, c.total, info.unit());
                exemplar(out, s, 0);
                out.push('\n');
            }
            crate::snapshot::Value::Gauge(g) => {
                sample_start(out, name, "", labels, None);
                write_f64(out, g);
                out.push('\n');
            }
            crate::snapshot::Value::Histogram(h) => {
                let buckets = classic_buckets(info, h);
                let inf = buckets.len();
                for (i, (bound, count)) in buckets.enumerate() {
                    if dialect == Dialect::OpenMetrics && bound < 0.0 {
                        continue;
                    }
                    le.clear();
                    write_f64(&mut le, bound);
                    sample_start(out, name, "_bucket", labels, Some(&le));
                    write_u64(out, count);
                    exemplar(out, s, i);
                    out.push('\n');
                }
                sample_start(out, name, "_bucket", labels, Some("+Inf"));
                write_u64(out, h.count());
                exemplar(out, s, inf);
                out.push('\n');
                write_sum_count(out, name, labels, h, info.unit(), dialect);
            }
        }
    }
}

/// Writes a histogram's or summary's `_sum` and `_count` (Prometheus: sum first; OpenMetrics:
/// count first).
fn write_sum_count(
    out: &mut String,
    name: &str,
    labels: &str,
    h: &crate::snapshot::HistogramSnapshot,
    unit: Unit,
    d: Dialect,
) {
    let sum = |out: &mut String| {
        sample_start(out, name, "_sum", labels, None);
        prometheus::write_scaled(out, h.sum(), unit);
        out.push('\n');
    };
    if d == Dialect::Prometheus {
        sum(out);
    }
    sample_start(out, name, "_count", labels, None);
    write_u64(out, h.count());
    out.push('\n');
    if d == Dialect::OpenMetrics {
        sum(out);
    }
}

/// Writes ` # {labels} value timestamp` (OpenMetrics exemplar; value in the base unit).
fn write_exemplar(out: &mut String, e: &crate::exemplar::Exemplar, unit: Unit) {
    out.push_str(" # {");
    e.write_labels(out);
    out.push_str("} ");
    prometheus::write_scaled(out, e.value(), unit);
    out.push(' ');
    let ms = e.timestamp().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis()).unwrap_or(0);
    write_f64(out, ms as f64 / 1000.0);
}

/// Writes the summary family of a histogram family's quantile series (if it has them): one
/// `quantile` sample per configured quantile, computed over the family's quantile window
/// (or since the start), then the cumulative `_sum` and `_count`. An empty histogram's
/// quantiles are `NaN`, as in Prometheus summaries.
pub(crate) fn write_quantile_family(
    out: &mut String,
    snapshot: &crate::Snapshot,
    series: crate::snapshot::SeriesList<'_>,
    dialect: Dialect,
) {
    let Some(info) = series.first().map(|s| s.family()) else { return };
    let (Some(qs), Some(headers)) = (info.quantiles(), &info.headers().quantiles) else { return };
    out.push_str(if dialect == Dialect::Prometheus { &headers.prom } else { &headers.om });
    let name = &headers.name;
    let mut q = String::new();
    for_each_quantile_series(snapshot, series, |s, cumulative, h| {
        let labels = s.rendered_labels();
        for &quantile in qs {
            q.clear();
            write_f64(&mut q, quantile);
            sample_start_with(out, name, "", labels, Some(("quantile", &q)));
            match h.quantile(quantile) {
                Some(v) => prometheus::write_scaled(out, v, info.unit()),
                None => out.push_str("NaN"),
            }
            out.push('\n');
        }
        write_sum_count(out, name, labels, cumulative, info.unit(), dialect);
    });
}

/// Calls `f` for each histogram series of a family with quantiles, with its cumulative
/// histogram (for `_sum` and `_count`) and the one its quantiles are computed over: the
/// family's quantile window, or the cumulative one when it has none.
pub(crate) fn for_each_quantile_series(
    snapshot: &crate::Snapshot,
    series: crate::snapshot::SeriesList<'_>,
    mut f: impl FnMut(crate::snapshot::Series<'_>, &crate::snapshot::HistogramSnapshot, &crate::snapshot::HistogramSnapshot),
) {
    let Some(info) = series.first().map(|s| s.family()) else { return };
    let window = info.quantile_window().map(|d| snapshot.window(d));
    for s in series {
        let crate::snapshot::Value::Histogram(cumulative) = s.value() else { continue };
        let windowed = window.as_ref().and_then(|w| w.histogram_of(&s));
        f(s, cumulative, windowed.as_ref().unwrap_or(cumulative));
    }
}

/// A histogram's classic buckets, as every format exports them: each `le` bound of the family
/// (in the exported unit, ascending) with the number of values at or below it. The `+Inf`
/// bucket, the count, is not among them.
pub(crate) fn classic_buckets<'a>(
    info: &'a FamilyInfo,
    h: &'a crate::snapshot::HistogramSnapshot,
) -> impl ExactSizeIterator<Item = (f64, u64)> + 'a {
    let unit = info.unit();
    let mut counts = h.counts_le();
    prometheus::export_buckets(info).iter().map(move |&bound| (bound, counts.count_le(bound_in_unit(bound, unit))))
}

/// Writes `name suffix {labels[,le="…"]} ` (everything before the value).
#[inline]
pub(crate) fn sample_start(out: &mut String, name: &str, suffix: &str, labels: &str, le: Option<&str>) {
    sample_start_with(out, name, suffix, labels, le.map(|le| ("le", le)));
}

/// Writes `name suffix {labels[,key="value"]} ` (everything before the value).
#[inline]
pub(crate) fn sample_start_with(out: &mut String, name: &str, suffix: &str, labels: &str, extra: Option<(&str, &str)>) {
    out.push_str(name);
    out.push_str(suffix);
    match (labels.is_empty(), extra) {
        (true, None) => {}
        (false, None) => {
            out.push('{');
            out.push_str(labels);
            out.push('}');
        }
        (empty, Some((key, value))) => {
            out.push('{');
            out.push_str(labels);
            if !empty {
                out.push(',');
            }
            out.push_str(key);
            out.push_str("=\"");
            out.push_str(value);
            out.push_str("\"}");
        }
    }
    out.push(' ');
}
