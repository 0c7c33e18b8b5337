//! Sorting criterion's benchmarks into the report's sections, each group one [`Grid`].
//!
//! * **Hot path**: a parameter of the form `<n>t` (`counter_inc/shardmetrics/2t`), or a group
//!   named `<base>/<n>thr` without a parameter (`facade_counter/2thr/metrics`). Rows are
//!   libraries, columns thread counts, cells the median per element (ns per operation per
//!   thread: the groups set `Throughput::Elements(1)`).
//! * **Render**: groups named `render_*` whose parameter is a series count. Cells are the
//!   median divided by the series count: ns per series.
//! * **Tick**: groups named `tick_*`; the function is the thread count (`1thr`), the parameter
//!   the series count. Cells are the median time of one tick, ns.
//! * Everything else is listed as it is in a table of its own.

use crate::{
    criterion::Bench,
    grid::{leading_number, Grid},
};

/// Hot-path groups in the order the report shows them; groups not listed follow, alphabetically.
const HOT_PATH_ORDER: &[&str] = &[
    "counter_inc",
    "gauge_set",
    "histogram_record",
    "timer_guard",
    "labelled_inc",
    "labelled_inc_1",
    "labelled_inc_2",
    "labelled_inc_3",
    "snapshot_load",
];
const RENDER_ORDER: &[&str] = &["render_prometheus", "render_openmetrics", "render_json"];
const TICK_ORDER: &[&str] = &["tick_counters", "tick_histograms"];

/// One criterion group as a grid.
#[derive(Debug, Clone, PartialEq)]
pub struct Section {
    /// The group id (for hot-path groups named `<base>/<n>thr`, the `<base>`).
    pub name: String,
    pub grid: Grid,
}

#[derive(Debug, Default)]
pub struct Sections {
    pub hot_path: Vec<Section>,
    pub render: Vec<Section>,
    pub tick: Vec<Section>,
    /// Benchmarks that fit none of the shapes above, in (group, function, value) order.
    pub other: Vec<Bench>,
}

type Point = (String, String, f64, f64);

pub fn classify(benches: &[Bench]) -> Sections {
    let mut hot: Vec<(String, Point)> = Vec::new();
    let mut render: Vec<(String, Point)> = Vec::new();
    let mut tick: Vec<(String, Point)> = Vec::new();
    let mut other = Vec::new();
    for b in benches {
        let series = b.value.as_deref().and_then(|v| v.parse::<u64>().ok());
        if let Some((base, threads)) = thread_count(b) {
            hot.push((base, (b.function.clone(), format!("{threads}t"), threads as f64, b.ns_per_element())));
        } else if let (true, Some(n)) = (b.group.starts_with("render_"), series) {
            let per_series = b.median_ns / n.max(1) as f64;
            render.push((b.group.clone(), (b.function.clone(), n.to_string(), n as f64, per_series)));
        } else if let (true, Some(n)) = (b.group.starts_with("tick_"), series) {
            tick.push((b.group.clone(), (b.function.clone(), n.to_string(), n as f64, b.median_ns)));
        } else {
            other.push(b.clone());
        }
    }
    Sections {
        hot_path: group(hot, HOT_PATH_ORDER),
        render: group(render, RENDER_ORDER),
        tick: group(tick, TICK_ORDER),
        other,
    }
}

/// The hot-path group and thread count of a benchmark, if it is a thread-scaling one.
fn thread_count(b: &Bench) -> Option<(String, u64)> {
    if let Some(v) = &b.value {
        let n = v.strip_suffix('t').filter(|d| !d.is_empty() && d.bytes().all(|c| c.is_ascii_digit()))?;
        return Some((b.group.clone(), n.parse().ok()?));
    }
    let (base, last) = b.group.rsplit_once('/')?;
    let n = last.strip_suffix("thr").filter(|d| !d.is_empty() && d.bytes().all(|c| c.is_ascii_digit()))?;
    Some((base.to_owned(), leading_number(n)?))
}

/// Splits points by group into sections, ordered by `order` then by name.
fn group(points: Vec<(String, Point)>, order: &[&str]) -> Vec<Section> {
    let mut names: Vec<String> = points.iter().map(|(g, _)| g.clone()).collect();
    names.sort_by_key(|n| (order.iter().position(|o| o == n).unwrap_or(order.len()), n.clone()));
    names.dedup();
    names
        .into_iter()
        .map(|name| {
            let grid = Grid::from_points(points.iter().filter(|(g, _)| *g == name).map(|(_, p)| p.clone()));
            Section { name, grid }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(group: &str, function: &str, value: Option<&str>, median_ns: f64, elements: u64) -> Bench {
        Bench {
            group: group.into(),
            function: function.into(),
            value: value.map(Into::into),
            median_ns,
            elements: Some(elements),
        }
    }

    #[test]
    fn sorts_groups_into_sections() {
        let s = classify(&[
            b("snapshot_load", "shardmetrics", Some("1t"), 3.0, 1),
            b("counter_inc", "shardmetrics", Some("1t"), 1.0, 1),
            b("counter_inc", "shardmetrics", Some("2t"), 2.0, 1),
            b("facade_counter/2thr", "metrics", None, 8.0, 1),
            b("render_json", "shardmetrics", Some("10000"), 500_000.0, 10_000),
            b("render_prometheus", "shardmetrics", Some("100"), 2_000.0, 1),
            b("tick_counters", "2thr", Some("100000"), 1e6, 1),
            b("tick_counters", "1thr", Some("100"), 1e3, 1),
            b("flush", "10k_counters_2_threads", None, 5e5, 10_000),
            b("render_10k_counters", "prometheus", None, 9e5, 10_000),
        ]);
        let names = |v: &[Section]| v.iter().map(|s| s.name.clone()).collect::<Vec<_>>();
        assert_eq!(names(&s.hot_path), ["counter_inc", "snapshot_load", "facade_counter"]);
        assert_eq!(names(&s.render), ["render_prometheus", "render_json"]);
        assert_eq!(names(&s.tick), ["tick_counters"]);
        assert_eq!(s.other.iter().map(|b| b.group.as_str()).collect::<Vec<_>>(), ["flush", "render_10k_counters"]);

        assert_eq!(s.hot_path[0].grid.find("shardmetrics", "2t"), Some(2.0));
        assert_eq!(s.hot_path[2].grid.find("metrics", "2t"), Some(8.0));
        // ns per series is the median over the series count, whatever the throughput says.
        assert_eq!(s.render[1].grid.find("shardmetrics", "10000"), Some(50.0));
        assert_eq!(s.render[0].grid.find("shardmetrics", "100"), Some(20.0));
        assert_eq!(s.tick[0].grid.rows, ["1thr", "2thr"]);
        assert_eq!(s.tick[0].grid.find("2thr", "100000"), Some(1e6));
    }

    #[test]
    fn thread_counts() {
        assert_eq!(thread_count(&b("g", "f", Some("12t"), 1.0, 1)), Some(("g".into(), 12)));
        assert_eq!(thread_count(&b("g", "f", Some("t"), 1.0, 1)), None);
        assert_eq!(thread_count(&b("g", "f", Some("10000"), 1.0, 1)), None);
        assert_eq!(thread_count(&b("a/b/4thr", "f", None, 1.0, 1)), Some(("a/b".into(), 4)));
        assert_eq!(thread_count(&b("a/xthr", "f", None, 1.0, 1)), None);
    }
}
