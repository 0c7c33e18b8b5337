//! OpenMetrics 1.0 text format.
//!
//! The same series, names and values as the [Prometheus render](super::prometheus), in the
//! OpenMetrics framing:
//!
//! * a counter family is declared without `_total` (`# TYPE http_requests counter`) and its
//!   samples carry it (`http_requests_total 3`);
//! * `# UNIT` is written when the family has a unit and its name ends in that unit's suffix with
//!   values in the base unit (always true for histograms, whose time units are exported in
//!   seconds under a `_seconds` name, as in the Prometheus render);
//! * `# HELP` escapes `\`, `"` and newlines;
//! * histograms are classic: cumulative `_bucket{le="…"}` ending in `le="+Inf"` (equal to
//!   `_count`), `_count`, `_sum`. Configured `le` boundaries below 0 are left out (values are
//!   unsigned, so those buckets are always empty, and OpenMetrics forbids `_sum` beside
//!   negative buckets);
//! * floats are `NaN`, `+Inf`, `-Inf` or the shortest round-tripping decimal;
//! * the text ends with `# EOF`.

use crate::{
    export::{escape_label_value, prometheus},
    snapshot::{FamilyInfo, Series, Snapshot},
    Kind,
};

/// The Content-Type of this format.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The OpenMetrics family name: the Prometheus exported name, without `_total` for counters
/// (unless nothing would be left of it: a counter registered as `_total` is family `_total`
/// with samples `_total_total`).
pub fn family_name(family: &FamilyInfo) -> String {
    let exported = prometheus::exported_name(family);
    match family.kind() {
        Kind::Counter => match exported.strip_suffix("_total") {
            Some(base) if !base.is_empty() => base.to_owned(),
            _ => exported,
        },
        _ => exported,
    }
}

/// The name of a counter's samples (`family_name` + `_total`); for other kinds the family name.
pub fn sample_name(family: &FamilyInfo) -> String {
    let f = family_name(family);
    match family.kind() {
        Kind::Counter => f + "_total",
        _ => f,
    }
}

/// The `# UNIT` of a family, if it is written: the family has a unit, its values are exported
/// in the base unit, and its family name ends in `_<unit>`.
pub fn unit(family: &FamilyInfo) -> Option<&'static str> {
    let u = family.unit().base_name()?;
    // Counters and histograms are converted to the base unit; gauges are written as set.
    let in_base = family.kind() != Kind::Gauge || family.unit().to_base() == 1.0;
    (in_base && family_name(family).ends_with(&format!("_{u}"))).then_some(u)
}

/// Renders the snapshot in OpenMetrics 1.0 text format.
pub fn render(snapshot: &Snapshot) -> String {
    let mut out = String::with_capacity(snapshot.series().len() * 64 + 8);
    for family in snapshot.families() {
        render_family(&mut out, snapshot, family);
    }
    out.push_str("# EOF\n");
    out
}

/// A family's `# TYPE`, `# UNIT` and `# HELP` lines.
pub(crate) fn header(info: &FamilyInfo) -> String {
    let family = family_name(info);
    let mut out = String::new();
    out.push_str("# TYPE ");
    out.push_str(&family);
    out.push(' ');
    out.push_str(if info.is_stateset() { "stateset" } else { info.kind().as_str() });
    out.push('\n');
    if let Some(u) = unit(info) {
        out.push_str("# UNIT ");
        out.push_str(&family);
        out.push(' ');
        out.push_str(u);
        out.push('\n');
    }
    if !info.help().is_empty() {
        out.push_str("# HELP ");
        out.push_str(&family);
        out.push(' ');
        // OpenMetrics escapes `"` in HELP too (Prometheus 0.0.4 does not).
        escape_label_value(&mut out, info.help());
        out.push('\n');
    }
    out
}

fn render_family(out: &mut String, snapshot: &Snapshot, series: &[Series]) {
    let info = series[0].family();
    let headers = info.headers();
    let name = &headers.om_name;
    out.push_str(&headers.om);
    super::write_samples(out, series, name, super::Dialect::OpenMetrics);
    super::write_quantile_family(out, snapshot, series, super::Dialect::OpenMetrics);
}
