//! Exporters. Every one reads only an `Arc<Snapshot>`; none touches a shard or blocks
//! recording.

#![forbid(unsafe_code)]

use crate::{snapshot::FamilyInfo, Kind, Unit};

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
#[cfg(all(any(feature = "remote-write", feature = "push"), not(shardmetrics_loom)))]
mod http_client;
#[cfg(feature = "json")]
pub mod json;
pub mod openmetrics;
pub mod prometheus;
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

/// Every family and sample name a family occupies in the Prometheus and OpenMetrics renders
/// (including OpenMetrics' reserved `_created`). Two families sharing one would render a
/// duplicate `# TYPE` or a clash that strict parsers reject, so the registry refuses the second.
pub(crate) fn exposition_names(info: &FamilyInfo) -> Vec<String> {
    let exported = prometheus::exported_name(info);
    let mut names = match info.kind() {
        Kind::Counter => {
            let family = openmetrics::family_name(info);
            vec![format!("{family}_total"), format!("{family}_created"), family]
        }
        Kind::Gauge => Vec::new(),
        Kind::Histogram => ["_bucket", "_count", "_sum", "_created"].iter().map(|s| format!("{exported}{s}")).collect(),
    };
    if info.quantiles().is_some() {
        let q = quantile_family_name(info);
        names.extend(["_sum", "_count", "_created"].iter().map(|s| format!("{q}{s}")));
        names.push(q);
    }
    names.push(exported);
    names.sort();
    names.dedup();
    names
}

/// A family's names and header lines in both text formats, rendered once and cached in its
/// `FamilyInfo`, so a render only copies bytes per family.
#[derive(Debug, Clone)]
pub(crate) struct Headers {
    /// Prometheus sample name and `# HELP` / `# TYPE` lines.
    pub(crate) prom_name: String,
    pub(crate) prom: String,
    /// OpenMetrics sample name and `# TYPE` / `# UNIT` / `# HELP` lines.
    pub(crate) om_name: String,
    pub(crate) om: String,
    /// The summary family of a histogram's quantile series, if it has one: name, Prometheus
    /// header, OpenMetrics header.
    pub(crate) quantiles: Option<(String, String, String)>,
}

impl Headers {
    pub(crate) fn new(info: &FamilyInfo) -> Headers {
        Headers {
            prom_name: prometheus::exported_name(info),
            prom: prometheus::header(info),
            om_name: openmetrics::sample_name(info),
            om: openmetrics::header(info),
            quantiles: info.quantiles().map(|_| {
                let name = quantile_family_name(info);
                let help = match info.help() {
                    "" => format!("Quantiles of {}", prometheus::exported_name(info)),
                    h => format!("{h} (quantiles)"),
                };
                let mut prom = format!("# HELP {name} ");
                escape_help(&mut prom, &help);
                prom.push_str(&format!("\n# TYPE {name} summary\n"));
                let mut om = format!("# TYPE {name} summary\n# HELP {name} ");
                escape_label_value(&mut om, &help);
                om.push('\n');
                (name, prom, om)
            }),
        }
    }
}

/// The name of a histogram's summary family of quantile series: its exported name followed by
/// `_quantiles` (`http_request_duration_seconds` → `http_request_duration_seconds_quantiles`).
pub fn quantile_family_name(info: &FamilyInfo) -> String {
    prometheus::exported_name(info) + "_quantiles"
}

/// Escapes a label value for the Prometheus / OpenMetrics text formats: `\` → `\\`,
/// `"` → `\"`, newline → `\n`.
pub(crate) fn escape_label_value(out: &mut String, v: &str) {
    if !v.contains(['\\', '"', '\n']) {
        out.push_str(v);
        return;
    }
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

/// Escapes HELP text: `\` → `\\`, newline → `\n`.
pub(crate) fn escape_help(out: &mut String, v: &str) {
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

/// Writes a float the way Prometheus parsers expect: `NaN`, `+Inf`, `-Inf`, otherwise the
/// shortest round-tripping decimal (never Rust's `inf`).
pub(crate) fn write_f64(out: &mut String, v: f64) {
    if v.is_nan() {
        out.push_str("NaN");
    } else if v == f64::INFINITY {
        out.push_str("+Inf");
    } else if v == f64::NEG_INFINITY {
        out.push_str("-Inf");
    } else if v == v.trunc() && v.abs() < 1e15 {
        // Integral values print without a fraction ("3", not "3.0").
        out.push_str(itoa::Buffer::new().format(v as i64));
    } else {
        out.push_str(ryu::Buffer::new().format_finite(v));
    }
}

/// Writes an unsigned integer.
#[inline]
pub(crate) fn write_u64(out: &mut String, v: u64) {
    out.push_str(itoa::Buffer::new().format(v));
}

/// Converts a classic-histogram `le` boundary from the exported base unit (seconds) into the
/// unit the values were recorded in. Multiplies by the exact integer factor and snaps results
/// within a rounding error of an integer, so `3e-8` s is 30 ns, not `29.999999999999996`
/// (which would leave a value of exactly 30 ns out of its `le="3e-8"` bucket).
pub(crate) fn bound_in_unit(bound: f64, unit: Unit) -> f64 {
    let factor = match unit {
        Unit::Nanoseconds => 1e9,
        Unit::Microseconds => 1e6,
        Unit::Milliseconds => 1e3,
        _ => return bound,
    };
    let x = bound * factor;
    let r = x.round();
    if (x - r).abs() <= r.abs() * 4.0 * f64::EPSILON {
        r
    } else {
        x
    }
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
pub(crate) fn write_samples(out: &mut String, series: &[crate::Series], name: &str, dialect: Dialect) {
    let info = series[0].family();
    let mut le = String::new();
    let exemplar = |out: &mut String, s: &crate::Series, i: usize| {
        if dialect == Dialect::OpenMetrics {
            if let Some(Some(e)) = s.exemplars().get(i) {
                write_exemplar(out, e, info.unit());
            }
        }
    };
    for s in series {
        let labels = s.rendered_labels();
        match s.value() {
            crate::Value::Counter(c) => {
                sample_start(out, name, "", labels, None);
                prometheus::write_scaled(out, c.total, info.unit());
                exemplar(out, s, 0);
                out.push('\n');
            }
            crate::Value::Gauge(g) => {
                sample_start(out, name, "", labels, None);
                write_f64(out, *g);
                out.push('\n');
            }
            crate::Value::Histogram(h) => {
                let bounds = prometheus::export_buckets(info);
                for (i, &bound) in bounds.iter().enumerate() {
                    if dialect == Dialect::OpenMetrics && bound < 0.0 {
                        continue;
                    }
                    le.clear();
                    write_f64(&mut le, bound);
                    sample_start(out, name, "_bucket", labels, Some(&le));
                    write_u64(out, h.count_le(bound_in_unit(bound, info.unit())));
                    exemplar(out, s, i);
                    out.push('\n');
                }
                sample_start(out, name, "_bucket", labels, Some("+Inf"));
                write_u64(out, h.count());
                exemplar(out, s, bounds.len());
                out.push('\n');
                write_sum_count(out, name, labels, h, info.unit(), dialect);
            }
        }
    }
}

/// Writes a histogram's or summary's `_sum` and `_count` (Prometheus: sum first; OpenMetrics:
/// count first).
fn write_sum_count(out: &mut String, name: &str, labels: &str, h: &crate::HistogramSnapshot, unit: Unit, d: Dialect) {
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
fn write_exemplar(out: &mut String, e: &crate::Exemplar, unit: Unit) {
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
    series: &[crate::Series],
    dialect: Dialect,
) {
    let info = series[0].family();
    let (Some(qs), Some((name, prom, om))) = (info.quantiles(), &info.headers().quantiles) else { return };
    out.push_str(if dialect == Dialect::Prometheus { prom } else { om });
    let window = info.quantile_window().map(|d| snapshot.window(d));
    let mut q = String::new();
    for s in series {
        let crate::Value::Histogram(cumulative) = s.value() else { continue };
        let windowed = window.as_ref().map(|w| w.histogram_by_id(s.id, cumulative));
        let h = windowed.as_ref().unwrap_or(cumulative);
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
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floats() {
        let f = |v| {
            let mut s = String::new();
            write_f64(&mut s, v);
            s
        };
        assert_eq!(f(f64::NAN), "NaN");
        assert_eq!(f(f64::INFINITY), "+Inf");
        assert_eq!(f(f64::NEG_INFINITY), "-Inf");
        assert_eq!(f(3.0), "3");
        assert_eq!(f(-2.0), "-2");
        assert_eq!(f(0.25), "0.25");
        assert_eq!(f(1e-6), "1e-6");
        assert_eq!(f(1e300).parse::<f64>().unwrap(), 1e300);
        assert_eq!(f(-0.0), "0");
    }

    #[test]
    fn bounds_convert_exactly() {
        for (s, ns) in [(3e-8, 30.0), (1e-7, 100.0), (7e-7, 700.0), (1e-6, 1000.0), (2.5e-6, 2500.0)] {
            assert_eq!(bound_in_unit(s, Unit::Nanoseconds), ns, "{s}");
        }
        assert_eq!(bound_in_unit(1e-3, Unit::Microseconds), 1000.0);
        assert_eq!(bound_in_unit(0.5, Unit::Seconds), 0.5);
        assert!((bound_in_unit(1.0000001e-9, Unit::Nanoseconds) - 1.0000001).abs() < 1e-12);
    }

    #[test]
    fn escapes() {
        let mut s = String::new();
        escape_label_value(&mut s, "a\\b\"c\nd");
        assert_eq!(s, r#"a\\b\"c\nd"#);
        let mut h = String::new();
        escape_help(&mut h, "x\\y\n\"z\"");
        assert_eq!(h, r#"x\\y\n"z""#);
    }
}
