//! JSON rendering (serde_json): every series with its labels, help, unit and value; counters
//! with delta and rate; histograms with count, sum, min, max, mean, p50/p90/p99/p999 and rate;
//! each series' exemplars, if it recorded any.
//! Values are in the metric's own unit (named in `"unit"`); absent statistics (an empty
//! histogram's quantiles) are `null`, never a made-up 0.

use std::time::Duration;

use serde_json::{json, Map, Value as Json};

use crate::{
    snapshot::{HistogramSnapshot, Series, Snapshot, Value},
    window::{format_duration, Window},
};

/// The Content-Type of this format.
pub const CONTENT_TYPE: &str = "application/json";

/// Quantiles included for every histogram, with their JSON keys.
pub const QUANTILES: &[(&str, f64)] = &[("p50", 0.5), ("p90", 0.9), ("p99", 0.99), ("p999", 0.999)];

/// Renders the snapshot as a JSON document.
pub fn render(snapshot: &Snapshot) -> String {
    to_value(snapshot, None).to_string()
}

/// Renders the snapshot with every series' view over the last `window` added under
/// `"window"` (see [`crate::window`] for what an empty window reports).
pub fn render_window(snapshot: &Snapshot, window: Duration) -> String {
    to_value(snapshot, Some(window)).to_string()
}

/// The snapshot as a `serde_json::Value` (for embedding in other documents).
pub fn to_value(snapshot: &Snapshot, window: Option<Duration>) -> Json {
    let ts = snapshot.taken_at().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0);
    let w = window.map(|d| snapshot.window(d));
    let mut doc = json!({
        "seq": snapshot.seq(),
        "timestamp_ms": ts,
        "interval_seconds": snapshot.interval().as_secs_f64(),
        "tick_duration_seconds": snapshot.tick_duration().as_secs_f64(),
        "windows": snapshot.windows().iter().map(|d| format_duration(*d)).collect::<Vec<_>>(),
        "series": snapshot.series().iter().map(|s| series(s, w.as_ref())).collect::<Vec<_>>(),
    });
    let operations: Vec<Json> = snapshot
        .operations()
        .map(|(name, labels, stats)| {
            let pairs: Vec<(&str, &str)> = labels.iter().collect();
            let mut o = json!({
                "name": name,
                "labels": labels.iter().map(|(k, v)| (k.to_owned(), json!(v))).collect::<Map<String, Json>>(),
                "stats": operation_stats(&stats),
            });
            if let Some(ws) = w.as_ref().and_then(|w| w.operation(name, &pairs)) {
                o["window"] = operation_stats(&ws);
            }
            o
        })
        .collect();
    doc["operations"] = Json::Array(operations);
    if let Some(w) = &w {
        doc["window"] = json!({
            "length": format_duration(w.length()),
            "length_seconds": w.length().as_secs_f64(),
            "covered_seconds": w.covered().as_secs_f64(),
            "ticks": w.ticks(),
        });
    }
    doc
}

fn operation_stats(s: &crate::OperationStats) -> Json {
    json!({
        "count": s.count,
        "errors": s.errors,
        "error_rate": s.error_rate.map(finite),
        "success_rate": s.success_rate.map(finite),
        "total_time_seconds": s.total_time.as_secs_f64(),
        "mean_ns": s.mean.map(finite),
        "min_ns": s.min,
        "max_ns": s.max,
        "stddev_ns": s.stddev.map(finite),
        "p50_ns": s.p50,
        "p90_ns": s.p90,
        "p95_ns": s.p95,
        "p99_ns": s.p99,
        "p999_ns": s.p999,
        "throughput": finite(s.throughput),
    })
}

fn histogram_fields(m: &mut Map<String, Json>, h: &HistogramSnapshot) {
    m.insert("count".into(), json!(h.count()));
    m.insert("sum".into(), json!(h.sum()));
    m.insert("min".into(), json!(h.min()));
    m.insert("max".into(), json!(h.max()));
    m.insert("mean".into(), h.mean().map(finite).unwrap_or(Json::Null));
    for (k, q) in QUANTILES {
        m.insert((*k).into(), json!(h.quantile(*q)));
    }
}

fn finite(v: f64) -> Json {
    // JSON has no NaN/Infinity: non-finite values become strings Prometheus-style.
    if v.is_finite() {
        json!(v)
    } else if v.is_nan() {
        json!("NaN")
    } else if v > 0.0 {
        json!("+Inf")
    } else {
        json!("-Inf")
    }
}

fn series(s: &Series, window: Option<&Window<'_>>) -> Json {
    let mut m = Map::new();
    m.insert("name".into(), json!(s.name()));
    m.insert("type".into(), json!(s.kind().as_str()));
    let labels: Map<String, Json> = s.labels().iter().map(|(k, v)| (k.to_owned(), json!(v))).collect();
    m.insert("labels".into(), Json::Object(labels));
    if !s.family().help().is_empty() {
        m.insert("help".into(), json!(s.family().help()));
    }
    if !s.family().unit().as_str().is_empty() {
        m.insert("unit".into(), json!(s.family().unit().as_str()));
    }
    match s.value() {
        Value::Counter(c) => {
            m.insert("value".into(), json!(c.total));
            m.insert("delta".into(), json!(c.delta));
            m.insert("rate".into(), finite(c.rate));
            if let Some(w) = window {
                let wc = w.counter_by_id(s.id);
                m.insert("window".into(), json!({ "increase": wc.increase, "rate": finite(wc.rate) }));
            }
        }
        Value::Gauge(g) => {
            m.insert("value".into(), finite(*g));
        }
        Value::Histogram(h) => {
            histogram_fields(&mut m, h);
            m.insert("delta_count".into(), json!(h.delta_count()));
            m.insert("rate".into(), finite(h.rate()));
            if let Some(w) = window {
                let wh = w.histogram_by_id(s.id, h);
                let mut wm = Map::new();
                histogram_fields(&mut wm, &wh);
                wm.insert("rate".into(), finite(wh.rate()));
                m.insert("window".into(), Json::Object(wm));
            }
        }
    }
    let exemplars = exemplars(s);
    if !exemplars.is_empty() {
        m.insert("exemplars".into(), Json::Array(exemplars));
    }
    Json::Object(m)
}

/// A series' exemplars: labels, value (in the metric's unit), timestamp and, for a histogram,
/// the `le` bound of the bucket it is kept for (`"+Inf"` for the last).
fn exemplars(s: &Series) -> Vec<Json> {
    let bounds = crate::export::prometheus::export_buckets(s.family());
    let histogram = matches!(s.value(), Value::Histogram(_));
    s.exemplars()
        .iter()
        .enumerate()
        .filter_map(|(i, e)| {
            let e = e.as_ref()?;
            let ts = e.timestamp().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0);
            let mut o = json!({
                "labels": e.labels().map(|(k, v)| (k.to_owned(), json!(v))).collect::<Map<String, Json>>(),
                "value": e.value(),
                "timestamp_ms": ts,
            });
            if histogram {
                o["le"] = bounds.get(i).map_or(json!("+Inf"), |b| finite(*b));
            }
            Some(o)
        })
        .collect()
}
