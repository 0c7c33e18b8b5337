//! Prometheus text exposition format 0.0.4.
//!
//! * Counters are exported with a `_total` suffix (added when the name lacks it).
//! * Histograms are exported as classic histograms: cumulative `_bucket{le="…"}` series ending
//!   in `le="+Inf"` (equal to `_count`), `_sum`, `_count`. Time units are converted to seconds
//!   and `_seconds` is appended to the name when missing (`_bytes` for bytes).
//! * Label values and HELP text are escaped; floats use `NaN`, `+Inf`, `-Inf`.

use crate::{
    export::{write_f64, write_u64},
    snapshot::{FamilyInfo, SeriesList, Snapshot},
    Unit,
};

/// The Content-Type of this format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

pub use crate::exposition::{DEFAULT_BUCKETS, DEFAULT_TIME_BUCKETS};

/// The name a family is exported under (unit suffix for histograms, `_total` for counters).
pub fn exported_name(family: &FamilyInfo) -> String {
    crate::exposition::exported_name(family.desc())
}

/// The classic-histogram `le` boundaries of a family, in the exported unit.
pub fn export_buckets(family: &FamilyInfo) -> &[f64] {
    family.le_bounds()
}

/// Renders the snapshot in Prometheus text format 0.0.4.
pub fn render(snapshot: &Snapshot) -> String {
    let mut out = String::new();
    render_into(snapshot, &mut out);
    out
}

/// [`render`], appended to `out`: a caller that renders every tick can hand back last tick's
/// buffer (cleared), so a large body is written into memory already mapped instead of fresh
/// pages (at 1M series the text is ~60 MB, and faulting it in costs more than rendering it).
pub fn render_into(snapshot: &Snapshot, out: &mut String) {
    out.reserve(snapshot.series().len() * 64);
    for family in snapshot.families() {
        render_family(out, snapshot, family);
    }
}

fn render_family(out: &mut String, snapshot: &Snapshot, series: SeriesList<'_>) {
    let Some(info) = series.first().map(|s| s.family()) else { return };
    let headers = info.headers();
    let name = &headers.prom_name;
    out.push_str(&headers.prom);
    super::write_samples(out, series, name, super::Dialect::Prometheus);
    super::write_quantile_family(out, snapshot, series, super::Dialect::Prometheus);
}

/// Writes an integer in `unit`, converted to the base unit (seconds for time units).
pub(crate) fn write_scaled(out: &mut String, v: u64, unit: Unit) {
    if unit.to_base() == 1.0 {
        write_u64(out, v);
    } else {
        write_f64(out, unit.value_in_base(v));
    }
}
