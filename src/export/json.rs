//! JSON rendering (serde_json): every series with its labels, help, unit and value; counters
//! with delta and rate; histograms with count, sum, min, max, mean, p50/p90/p99/p999 and rate.
//! Values are in the metric's own unit (named in `"unit"`); absent statistics (an empty
//! histogram's quantiles) are `null`, never a made-up 0.

use serde_json::{json, Map, Value as Json};

use crate::snapshot::{Series, Snapshot, Value};

/// The Content-Type of this format.
pub const CONTENT_TYPE: &str = "application/json";

/// Quantiles included for every histogram, with their JSON keys.
pub const QUANTILES: &[(&str, f64)] = &[("p50", 0.5), ("p90", 0.9), ("p99", 0.99), ("p999", 0.999)];

/// Renders the snapshot as a JSON document.
pub fn render(snapshot: &Snapshot) -> String {
    to_value(snapshot).to_string()
}

/// The snapshot as a `serde_json::Value` (for embedding in other documents).
pub fn to_value(snapshot: &Snapshot) -> Json {
    let ts = snapshot.taken_at().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0);
    json!({
        "seq": snapshot.seq(),
        "timestamp_ms": ts,
        "interval_seconds": snapshot.interval().as_secs_f64(),
        "tick_duration_seconds": snapshot.tick_duration().as_secs_f64(),
        "series": snapshot.series().iter().map(series).collect::<Vec<_>>(),
    })
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

fn series(s: &Series) -> Json {
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
        }
        Value::Gauge(g) => {
            m.insert("value".into(), finite(*g));
        }
        Value::Histogram(h) => {
            m.insert("count".into(), json!(h.count()));
            m.insert("sum".into(), json!(h.sum()));
            m.insert("min".into(), json!(h.min()));
            m.insert("max".into(), json!(h.max()));
            m.insert("mean".into(), h.mean().map(finite).unwrap_or(Json::Null));
            for (k, q) in QUANTILES {
                m.insert((*k).into(), json!(h.quantile(*q)));
            }
            m.insert("delta_count".into(), json!(h.delta_count()));
            m.insert("rate".into(), finite(h.rate()));
        }
    }
    Json::Object(m)
}
