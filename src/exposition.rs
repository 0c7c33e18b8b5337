//! The text-format vocabulary both sides of the one-way flow share: how a family is named in
//! the Prometheus and OpenMetrics renders, its header lines, the classic `le` bounds, label
//! and HELP escaping, and number formatting.
//!
//! A leaf: it knows a family only as a [`Desc`] (name, kind, unit, help) and imports nothing
//! but [`Kind`] and [`Unit`], so the engine (the catalogue refusing clashing names, the
//! snapshot caching each family's headers, exemplar labels) and the exporters use it without
//! the engine importing anything from `export`.

#![forbid(unsafe_code)]

use crate::{Kind, Unit};

/// What the text formats need to know about a family to name it and write its header.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Desc<'a> {
    pub(crate) name: &'a str,
    pub(crate) kind: Kind,
    pub(crate) unit: Unit,
    pub(crate) help: &'a str,
    /// A gauge family that is an OpenMetrics StateSet.
    pub(crate) stateset: bool,
    /// A histogram that also exports a summary family of quantile series.
    pub(crate) quantiles: bool,
}

/// Default `le` boundaries for time histograms, in seconds: 1-2.5-5 steps from 1 µs to 10 s.
pub const DEFAULT_TIME_BUCKETS: &[f64] = &[
    1e-6, 2.5e-6, 5e-6, 1e-5, 2.5e-5, 5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3, 5e-3, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
    1.0, 2.5, 5.0, 10.0,
];

/// Default `le` boundaries for other histograms: 1-2.5-5 steps from 1 to 5·10⁹.
pub const DEFAULT_BUCKETS: &[f64] = &[
    1.0, 2.5, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1e3, 2.5e3, 5e3, 1e4, 2.5e4, 5e4, 1e5, 2.5e5, 5e5, 1e6,
    2.5e6, 5e6, 1e7, 2.5e7, 5e7, 1e8, 2.5e8, 5e8, 1e9, 2.5e9, 5e9,
];

/// The classic-histogram `le` bounds of a family in the exported unit: the configured ones or
/// the defaults for its unit.
pub(crate) fn le_bounds(configured: Option<&[f64]>, unit: Unit) -> &[f64] {
    configured.unwrap_or(if unit.is_time() { DEFAULT_TIME_BUCKETS } else { DEFAULT_BUCKETS })
}

/// The name a family is exported under in Prometheus text (unit suffix for histograms,
/// `_total` for counters).
pub(crate) fn exported_name(d: Desc<'_>) -> String {
    let name = d.name;
    match d.kind {
        Kind::Counter => {
            let base = name.strip_suffix("_total").unwrap_or(name);
            match d.unit.base_name() {
                Some(u) if !base.ends_with(&format!("_{u}")) => format!("{base}_{u}_total"),
                _ => format!("{base}_total"),
            }
        }
        Kind::Histogram => match d.unit.base_name() {
            Some(u) if !name.ends_with(&format!("_{u}")) => format!("{name}_{u}"),
            _ => name.to_owned(),
        },
        _ => name.to_owned(),
    }
}

/// The OpenMetrics family name: the Prometheus exported name, without `_total` for counters
/// (unless nothing would be left of it: a counter registered as `_total` is family `_total`
/// with samples `_total_total`).
pub(crate) fn om_family_name(d: Desc<'_>) -> String {
    let exported = exported_name(d);
    match d.kind {
        Kind::Counter => match exported.strip_suffix("_total") {
            Some(base) if !base.is_empty() => base.to_owned(),
            _ => exported,
        },
        _ => exported,
    }
}

/// The name of a counter's OpenMetrics samples (family name + `_total`); for other kinds the
/// family name.
pub(crate) fn om_sample_name(d: Desc<'_>) -> String {
    let f = om_family_name(d);
    match d.kind {
        Kind::Counter => f + "_total",
        _ => f,
    }
}

/// The OpenMetrics `# UNIT` of a family, if it is written: the family has a unit, its values
/// are exported in the base unit, and its family name ends in `_<unit>`.
pub(crate) fn om_unit(d: Desc<'_>) -> Option<&'static str> {
    let u = d.unit.base_name()?;
    // Counters and histograms are converted to the base unit; gauges are written as set.
    let in_base = d.kind != Kind::Gauge || d.unit.to_base() == 1.0;
    (in_base && om_family_name(d).ends_with(&format!("_{u}"))).then_some(u)
}

/// The name of a histogram's summary family of quantile series: its exported name followed by
/// `_quantiles` (`http_request_duration_seconds` → `http_request_duration_seconds_quantiles`).
pub(crate) fn quantile_family_name(d: Desc<'_>) -> String {
    exported_name(d) + "_quantiles"
}

/// Every family and sample name a family occupies in the Prometheus and OpenMetrics renders
/// (including OpenMetrics' reserved `_created`). Two families sharing one would render a
/// duplicate `# TYPE` or a clash that strict parsers reject, so the registry refuses the second.
pub(crate) fn exposition_names(d: Desc<'_>) -> Vec<String> {
    let exported = exported_name(d);
    let mut names = match d.kind {
        Kind::Counter => {
            let family = om_family_name(d);
            vec![format!("{family}_total"), format!("{family}_created"), family]
        }
        Kind::Gauge => Vec::new(),
        Kind::Histogram => ["_bucket", "_count", "_sum", "_created"].iter().map(|s| format!("{exported}{s}")).collect(),
    };
    if d.quantiles {
        let q = quantile_family_name(d);
        names.extend(["_sum", "_count", "_created"].iter().map(|s| format!("{q}{s}")));
        names.push(q);
    }
    names.push(exported);
    names.sort();
    names.dedup();
    names
}

/// A family's names and header lines in both text formats, rendered once and cached with the
/// family's metadata, so a render only copies bytes per family.
#[derive(Debug, Clone)]
pub(crate) struct Headers {
    /// Prometheus sample name and `# HELP` / `# TYPE` lines.
    pub(crate) prom_name: String,
    pub(crate) prom: String,
    /// OpenMetrics sample name and `# TYPE` / `# UNIT` / `# HELP` lines.
    pub(crate) om_name: String,
    pub(crate) om: String,
    /// The OpenMetrics `# UNIT` (also the protobuf `MetricFamily.unit`), if written. Read only
    /// by the protobuf encoder.
    #[cfg_attr(not(feature = "protobuf"), allow(dead_code))]
    pub(crate) om_unit: Option<&'static str>,
    /// The summary family of a histogram's quantile series, if it has one.
    pub(crate) quantiles: Option<QuantileHeaders>,
}

/// The names and header lines of a histogram's summary family of quantile series.
#[derive(Debug, Clone)]
pub(crate) struct QuantileHeaders {
    pub(crate) name: String,
    /// Its HELP text (unescaped; the text formats use the escaped lines below). Read only by
    /// the protobuf encoder.
    #[cfg_attr(not(feature = "protobuf"), allow(dead_code))]
    pub(crate) help: String,
    /// Prometheus `# HELP` / `# TYPE` lines.
    pub(crate) prom: String,
    /// OpenMetrics `# TYPE` / `# HELP` lines.
    pub(crate) om: String,
}

impl Headers {
    pub(crate) fn new(d: Desc<'_>) -> Headers {
        Headers {
            prom_name: exported_name(d),
            prom: prom_header(d),
            om_name: om_sample_name(d),
            om: om_header(d),
            om_unit: om_unit(d),
            quantiles: d.quantiles.then(|| {
                let name = quantile_family_name(d);
                let help = match d.help {
                    "" => format!("Quantiles of {}", exported_name(d)),
                    h => format!("{h} (quantiles)"),
                };
                let mut prom = format!("# HELP {name} ");
                escape_help(&mut prom, &help);
                prom.push_str(&format!("\n# TYPE {name} summary\n"));
                let mut om = format!("# TYPE {name} summary\n# HELP {name} ");
                escape_label_value(&mut om, &help);
                om.push('\n');
                QuantileHeaders { name, help, prom, om }
            }),
        }
    }
}

/// A family's Prometheus `# HELP` and `# TYPE` lines.
fn prom_header(d: Desc<'_>) -> String {
    let name = exported_name(d);
    let mut out = String::new();
    if !d.help.is_empty() {
        out.push_str("# HELP ");
        out.push_str(&name);
        out.push(' ');
        escape_help(&mut out, d.help);
        out.push('\n');
    }
    out.push_str("# TYPE ");
    out.push_str(&name);
    out.push(' ');
    out.push_str(d.kind.as_str());
    out.push('\n');
    out
}

/// A family's OpenMetrics `# TYPE`, `# UNIT` and `# HELP` lines.
fn om_header(d: Desc<'_>) -> String {
    let family = om_family_name(d);
    let mut out = String::new();
    out.push_str("# TYPE ");
    out.push_str(&family);
    out.push(' ');
    out.push_str(if d.stateset { "stateset" } else { d.kind.as_str() });
    out.push('\n');
    if let Some(u) = om_unit(d) {
        out.push_str("# UNIT ");
        out.push_str(&family);
        out.push(' ');
        out.push_str(u);
        out.push('\n');
    }
    if !d.help.is_empty() {
        out.push_str("# HELP ");
        out.push_str(&family);
        out.push(' ');
        // OpenMetrics escapes `"` in HELP too (Prometheus 0.0.4 does not).
        escape_label_value(&mut out, d.help);
        out.push('\n');
    }
    out
}

/// Escapes a label value for the Prometheus / OpenMetrics text formats: `\` → `\\`,
/// `"` → `\"`, newline → `\n`.
pub(crate) fn escape_label_value(out: &mut String, v: &str) {
    let mut rest = v;
    // Copy the runs between the bytes that need escaping (all ASCII, so every cut is on a
    // character boundary).
    while let Some(i) = rest.bytes().position(|b| matches!(b, b'\\' | b'"' | b'\n')) {
        out.push_str(&rest[..i]);
        out.push_str(match rest.as_bytes()[i] {
            b'\\' => "\\\\",
            b'"' => "\\\"",
            _ => "\\n",
        });
        rest = &rest[i + 1..];
    }
    out.push_str(rest);
}

/// Whether [`escape_label_value`] changes `v`.
#[inline]
pub(crate) fn label_value_needs_escape(v: &str) -> bool {
    v.bytes().any(|b| matches!(b, b'\\' | b'"' | b'\n'))
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
