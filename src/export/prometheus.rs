//! Prometheus text exposition format 0.0.4.
//!
//! * Counters are exported with a `_total` suffix (added when the name lacks it).
//! * Histograms are exported as classic histograms: cumulative `_bucket{le="…"}` series ending
//!   in `le="+Inf"` (equal to `_count`), `_sum`, `_count`. Time units are converted to seconds
//!   and `_seconds` is appended to the name when missing (`_bytes` for bytes).
//! * Label values and HELP text are escaped; floats use `NaN`, `+Inf`, `-Inf`.

use crate::{
    export::{escape_help, write_f64, write_u64},
    snapshot::{FamilyInfo, Series, Snapshot},
    Kind, Unit,
};

/// The Content-Type of this format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

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

/// The name a family is exported under (unit suffix for histograms, `_total` for counters).
pub fn exported_name(family: &FamilyInfo) -> String {
    let name = family.name();
    match family.kind() {
        Kind::Counter => {
            let base = name.strip_suffix("_total").unwrap_or(name);
            match family.unit().base_name() {
                Some(u) if !base.ends_with(&format!("_{u}")) => format!("{base}_{u}_total"),
                _ => format!("{base}_total"),
            }
        }
        Kind::Histogram => match family.unit().base_name() {
            Some(u) if !name.ends_with(&format!("_{u}")) => format!("{name}_{u}"),
            _ => name.to_owned(),
        },
        _ => name.to_owned(),
    }
}

/// The classic-histogram `le` boundaries of a family, in the exported unit.
pub fn export_buckets(family: &FamilyInfo) -> &[f64] {
    family.export_buckets().unwrap_or(if family.unit().is_time() { DEFAULT_TIME_BUCKETS } else { DEFAULT_BUCKETS })
}

/// Renders the snapshot in Prometheus text format 0.0.4.
pub fn render(snapshot: &Snapshot) -> String {
    let mut out = String::with_capacity(snapshot.series().len() * 64);
    for family in snapshot.families() {
        render_family(&mut out, snapshot, family);
    }
    out
}

/// A family's `# HELP` and `# TYPE` lines.
pub(crate) fn header(info: &FamilyInfo) -> String {
    let name = exported_name(info);
    let mut out = String::new();
    if !info.help().is_empty() {
        out.push_str("# HELP ");
        out.push_str(&name);
        out.push(' ');
        escape_help(&mut out, info.help());
        out.push('\n');
    }
    out.push_str("# TYPE ");
    out.push_str(&name);
    out.push(' ');
    out.push_str(info.kind().as_str());
    out.push('\n');
    out
}

fn render_family(out: &mut String, snapshot: &Snapshot, series: &[Series]) {
    let info = series[0].family();
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
