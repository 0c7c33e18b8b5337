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

use crate::snapshot::{FamilyInfo, SeriesList, Snapshot};

/// The Content-Type of this format.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The OpenMetrics family name: the Prometheus exported name, without `_total` for counters
/// (unless nothing would be left of it: a counter registered as `_total` is family `_total`
/// with samples `_total_total`).
pub fn family_name(family: &FamilyInfo) -> String {
    crate::exposition::om_family_name(family.desc())
}

/// The name of a counter's samples (`family_name` + `_total`); for other kinds the family name.
pub fn sample_name(family: &FamilyInfo) -> String {
    crate::exposition::om_sample_name(family.desc())
}

/// The `# UNIT` of a family, if it is written: the family has a unit, its values are exported
/// in the base unit, and its family name ends in `_<unit>`.
pub fn unit(family: &FamilyInfo) -> Option<&'static str> {
    crate::exposition::om_unit(family.desc())
}

/// Renders the snapshot in OpenMetrics 1.0 text format.
pub fn render(snapshot: &Snapshot) -> String {
    let mut out = String::new();
    render_into(snapshot, &mut out);
    out
}

/// [`render`], appended to `out` (see [`crate::export::prometheus::render_into`] for why).
pub fn render_into(snapshot: &Snapshot, out: &mut String) {
    out.reserve(snapshot.series().len() * 64 + 8);
    for family in snapshot.families() {
        render_family(out, snapshot, family);
    }
    out.push_str("# EOF\n");
}

fn render_family(out: &mut String, snapshot: &Snapshot, series: SeriesList<'_>) {
    let Some(info) = series.first().map(|s| s.family()) else { return };
    let headers = info.headers();
    let name = &headers.om_name;
    out.push_str(&headers.om);
    super::write_samples(out, series, name, super::Dialect::OpenMetrics);
    super::write_quantile_family(out, snapshot, series, super::Dialect::OpenMetrics);
}
