//! JSON rendering: every series with its labels, help, unit and value; counters with delta and
//! rate; histograms with count, sum, min, max, mean, p50/p90/p99/p999 and rate; each series'
//! exemplars, if it recorded any.
//! Values are in the metric's own unit (named in `"unit"`); absent statistics (an empty
//! histogram's quantiles) are `null`, never a made-up 0. JSON has no NaN or infinities:
//! non-finite floats are the strings `"NaN"`, `"+Inf"` and `"-Inf"`, as in the text formats.
//!
//! One job over ~800 lines: the JSON document (snapshot, window and operation views share one
//! writer), most of it the tests that pin the document against serde_json.
//!
//! # The document
//!
//! ```text
//! { "seq", "timestamp_ms", "interval_seconds", "tick_duration_seconds",
//!   "windows": ["10s", …],
//!   "window": { "length", "length_seconds", "covered_seconds", "ticks" },   // render_window only
//!   "series": [ { "name", "type", "help"?, "unit"?, "labels": {…},
//!                 counter:   "value", "delta", "rate", "window"?: { "increase", "rate" }
//!                 gauge:     "value"
//!                 histogram: "count", "sum", "min", "max", "mean", "p50", "p90", "p99", "p999",
//!                            "delta_count", "rate", "window"?: { …the same statistics…, "rate" }
//!                 "exemplars"?: [ { "labels", "value", "timestamp_ms", "le"? } ] } ],
//!   "operations": [ { "name", "labels", "stats": {…}, "window"?: {…} } ] }
//! ```
//!
//! Readers must not depend on key order (the layout above is what is written today).
//!
//! # How it is written
//!
//! Straight into one `String`, in one pass over the snapshot: no intermediate tree. Each
//! family's constant head (`{"name":…,"type":…,"help":…,"unit":…,"labels":{`) is escaped once
//! and copied per series; integers go through `itoa`, finite floats through `zmij` (the
//! shortest decimal that round-trips: the formatter `serde_json` itself uses), strings through
//! `json_string::string` (shared with OTLP/HTTP JSON), which escapes as `serde_json` does. [`to_value`] parses the rendered text, so the tree and
//! the text cannot disagree.

#![forbid(unsafe_code)]

use std::time::{Duration, SystemTime};

use serde_json::Value as Json;

use super::json_string::string;
#[cfg(test)]
use super::json_string::{needs_escape, needs_escaping};
use crate::{
    snapshot::{FamilyInfo, HistogramSnapshot, OperationStats, Series, Snapshot, Value},
    window::{format_duration, Window},
};

/// The Content-Type of this format.
pub const CONTENT_TYPE: &str = "application/json";

/// Quantiles included for every histogram, with their JSON keys.
pub const QUANTILES: &[(&str, f64)] = &[("p50", 0.5), ("p90", 0.9), ("p99", 0.99), ("p999", 0.999)];

/// Renders the snapshot as a JSON document.
pub fn render(snapshot: &Snapshot) -> String {
    document(snapshot, None)
}

/// Renders the snapshot with every series' view over the last `window` added under
/// `"window"` (see [`crate::window`] for what an empty window reports).
pub fn render_window(snapshot: &Snapshot, window: Duration) -> String {
    document(snapshot, Some(window))
}

/// The snapshot as a `serde_json::Value` (for embedding in other documents): the rendered
/// document ([`render`] or [`render_window`]), parsed.
pub fn to_value(snapshot: &Snapshot, window: Option<Duration>) -> Json {
    // The writer emits only valid JSON (tested against a tree-built reference below), so a
    // parse error here would be a bug in this module, not bad input.
    serde_json::from_str(&document(snapshot, window)).expect("export::json writes valid JSON")
}

/// Appends `,"key":` (every member of an object but its first). `key` must need no escaping.
macro_rules! key {
    ($out:expr, $key:literal) => {
        $out.push_str(concat!(",\"", $key, "\":"))
    };
}

fn document(snapshot: &Snapshot, window: Option<Duration>) -> String {
    let w = window.map(|d| snapshot.window(d));
    // About 150 bytes per counter series; histograms need more and the String grows for them.
    let mut out = String::with_capacity(256 + snapshot.series().len() * 160);
    out.push_str("{\"seq\":");
    uint(&mut out, snapshot.seq());
    key!(out, "timestamp_ms");
    uint(&mut out, unix_ms(snapshot.taken_at()));
    key!(out, "interval_seconds");
    float(&mut out, snapshot.interval().as_secs_f64());
    key!(out, "tick_duration_seconds");
    float(&mut out, snapshot.tick_duration().as_secs_f64());
    key!(out, "windows");
    out.push('[');
    for (i, d) in snapshot.windows().iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        string(&mut out, &format_duration(*d));
    }
    out.push(']');
    if let Some(w) = &w {
        key!(out, "window");
        out.push_str("{\"length\":");
        string(&mut out, &format_duration(w.length()));
        key!(out, "length_seconds");
        float(&mut out, w.length().as_secs_f64());
        key!(out, "covered_seconds");
        float(&mut out, w.covered().as_secs_f64());
        key!(out, "ticks");
        uint(&mut out, w.ticks() as u64);
        out.push('}');
    }

    key!(out, "series");
    out.push('[');
    let mut head = FamilyHead::default();
    for (i, s) in snapshot.series().iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(head.of(s));
        series(&mut out, &s, w.as_ref());
    }
    out.push(']');

    key!(out, "operations");
    out.push('[');
    for (i, (name, labels, stats)) in snapshot.operations().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str("{\"name\":");
        string(&mut out, name);
        key!(out, "labels");
        label_object(&mut out, labels.iter());
        key!(out, "stats");
        operation_stats(&mut out, &stats);
        let pairs: Vec<(&str, &str)> = labels.iter().collect();
        if let Some(ws) = w.as_ref().and_then(|w| w.operation(name, &pairs)) {
            key!(out, "window");
            operation_stats(&mut out, &ws);
        }
        out.push('}');
    }
    out.push_str("]}");
    out
}

/// The constant opening of a family's series objects, up to and including `"labels":{`,
/// rendered once per run of series sharing a name and `FamilyInfo` (series are sorted by name).
#[derive(Default)]
struct FamilyHead<'a> {
    name: &'a str,
    family: Option<&'a FamilyInfo>,
    text: String,
}

impl<'a> FamilyHead<'a> {
    fn of(&mut self, s: Series<'a>) -> &str {
        // Series of one family usually share the name's allocation: compare pointers first.
        let same = self.family.is_some_and(|f| std::ptr::eq(f, s.family()))
            && (std::ptr::eq(self.name, s.name()) || self.name == s.name());
        if !same {
            let f = s.family();
            (self.name, self.family) = (s.name(), Some(f));
            let t = &mut self.text;
            t.clear();
            t.push_str("{\"name\":");
            string(t, s.name());
            key!(t, "type");
            string(t, s.kind().as_str());
            if !f.help().is_empty() {
                key!(t, "help");
                string(t, f.help());
            }
            if !f.unit().as_str().is_empty() {
                key!(t, "unit");
                string(t, f.unit().as_str());
            }
            key!(t, "labels");
            t.push('{');
        }
        &self.text
    }
}

/// The rest of a series object after its family head: labels, value fields, window, exemplars.
fn series(out: &mut String, s: &Series, window: Option<&Window<'_>>) {
    label_members(out, s.labels().iter());
    out.push('}');
    match s.value() {
        Value::Counter(c) => {
            key!(out, "value");
            uint(out, c.total);
            key!(out, "delta");
            uint(out, c.delta);
            key!(out, "rate");
            float(out, c.rate);
            if let Some(wc) = window.and_then(|w| w.counter_of(s)) {
                key!(out, "window");
                out.push_str("{\"increase\":");
                uint(out, wc.increase);
                key!(out, "rate");
                float(out, wc.rate);
                out.push('}');
            }
        }
        Value::Gauge(g) => {
            key!(out, "value");
            float(out, g);
        }
        Value::Histogram(h) => {
            out.push(',');
            histogram_fields(out, h);
            key!(out, "delta_count");
            uint(out, h.delta_count());
            key!(out, "rate");
            float(out, h.rate());
            if let Some(wh) = window.and_then(|w| w.histogram_of(s)) {
                key!(out, "window");
                out.push('{');
                histogram_fields(out, &wh);
                key!(out, "rate");
                float(out, wh.rate());
                out.push('}');
            }
        }
    }
    exemplars(out, s);
    out.push('}');
}

/// `"count":…,"sum":…,"min":…,"max":…,"mean":…,"p50":…,…`
fn histogram_fields(out: &mut String, h: &HistogramSnapshot) {
    out.push_str("\"count\":");
    uint(out, h.count());
    key!(out, "sum");
    uint(out, h.sum());
    key!(out, "min");
    opt_uint(out, h.min());
    key!(out, "max");
    opt_uint(out, h.max());
    key!(out, "mean");
    opt_float(out, h.mean());
    for (k, q) in QUANTILES {
        out.push_str(",\"");
        out.push_str(k);
        out.push_str("\":");
        opt_uint(out, h.quantile(*q));
    }
}

fn operation_stats(out: &mut String, s: &OperationStats) {
    out.push_str("{\"count\":");
    uint(out, s.count);
    key!(out, "errors");
    uint(out, s.errors);
    key!(out, "error_rate");
    opt_float(out, s.error_rate);
    key!(out, "success_rate");
    opt_float(out, s.success_rate);
    key!(out, "total_time_seconds");
    float(out, s.total_time.as_secs_f64());
    key!(out, "mean_ns");
    opt_float(out, s.mean);
    key!(out, "min_ns");
    opt_uint(out, s.min);
    key!(out, "max_ns");
    opt_uint(out, s.max);
    key!(out, "stddev_ns");
    opt_float(out, s.stddev);
    key!(out, "p50_ns");
    opt_uint(out, s.p50);
    key!(out, "p90_ns");
    opt_uint(out, s.p90);
    key!(out, "p95_ns");
    opt_uint(out, s.p95);
    key!(out, "p99_ns");
    opt_uint(out, s.p99);
    key!(out, "p999_ns");
    opt_uint(out, s.p999);
    key!(out, "throughput");
    float(out, s.throughput);
    out.push('}');
}

/// `,"exemplars":[{"labels":{…},"value":…,"timestamp_ms":…,"le":…},…]` if the series kept any:
/// labels, value (in the metric's unit), timestamp and, for a histogram, the `le` bound of the
/// bucket it is kept for (`"+Inf"` for the last).
fn exemplars(out: &mut String, s: &Series) {
    let kept = s.exemplars();
    if kept.iter().all(Option::is_none) {
        return;
    }
    let bounds = crate::export::prometheus::export_buckets(s.family());
    let histogram = matches!(s.value(), Value::Histogram(_));
    key!(out, "exemplars");
    out.push('[');
    for (n, (i, e)) in kept.iter().enumerate().filter_map(|(i, e)| Some((i, e.as_ref()?))).enumerate() {
        if n > 0 {
            out.push(',');
        }
        out.push_str("{\"labels\":");
        label_object(out, e.labels());
        key!(out, "value");
        uint(out, e.value());
        key!(out, "timestamp_ms");
        uint(out, unix_ms(e.timestamp()));
        if histogram {
            key!(out, "le");
            match bounds.get(i) {
                Some(b) => float(out, *b),
                None => out.push_str("\"+Inf\""),
            }
        }
        out.push('}');
    }
    out.push(']');
}

/// `{"k":"v",…}`. Label names are unique in a series and in an exemplar.
fn label_object<'l>(out: &mut String, labels: impl Iterator<Item = (&'l str, &'l str)>) {
    out.push('{');
    label_members(out, labels);
    out.push('}');
}

fn label_members<'l>(out: &mut String, labels: impl Iterator<Item = (&'l str, &'l str)>) {
    for (i, (k, v)) in labels.enumerate() {
        if i > 0 {
            out.push(',');
        }
        string(out, k);
        out.push(':');
        string(out, v);
    }
}

/// Milliseconds since the Unix epoch (0 before it).
fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

fn uint(out: &mut String, v: u64) {
    out.push_str(itoa::Buffer::new().format(v));
}

fn opt_uint(out: &mut String, v: Option<u64>) {
    match v {
        Some(v) => uint(out, v),
        None => out.push_str("null"),
    }
}

/// A float as a JSON number when finite, in `serde_json`'s own spelling (`zmij`: `3.0`,
/// `0.1`, `1e-7`, `1e+16`, always parsed back as a float); otherwise `"NaN"`, `"+Inf"` or `"-Inf"`.
fn float(out: &mut String, v: f64) {
    if v.is_finite() {
        out.push_str(zmij::Buffer::new().format_finite(v));
    } else if v.is_nan() {
        out.push_str("\"NaN\"");
    } else if v > 0.0 {
        out.push_str("\"+Inf\"");
    } else {
        out.push_str("\"-Inf\"");
    }
}

fn opt_float(out: &mut String, v: Option<f64>) {
    match v {
        Some(v) => float(out, v),
        None => out.push_str("null"),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use serde_json::{json, Map, Value as Json};

    use super::*;
    use crate::{Registry, Unit};

    // -- The previous implementation, kept verbatim as the reference: it built a
    // -- `serde_json::Value` tree (a `Map` with owned keys per field per series) and serialised it.

    fn reference(snapshot: &Snapshot, window: Option<Duration>) -> Json {
        let ts = snapshot.taken_at().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0);
        let w = window.map(|d| snapshot.window(d));
        let mut doc = json!({
            "seq": snapshot.seq(),
            "timestamp_ms": ts,
            "interval_seconds": snapshot.interval().as_secs_f64(),
            "tick_duration_seconds": snapshot.tick_duration().as_secs_f64(),
            "windows": snapshot.windows().iter().map(|d| format_duration(*d)).collect::<Vec<_>>(),
            "series": snapshot.series().iter().map(|s| ref_series(&s, w.as_ref())).collect::<Vec<_>>(),
        });
        let operations: Vec<Json> = snapshot
            .operations()
            .map(|(name, labels, stats)| {
                let pairs: Vec<(&str, &str)> = labels.iter().collect();
                let mut o = json!({
                    "name": name,
                    "labels": labels.iter().map(|(k, v)| (k.to_owned(), json!(v))).collect::<Map<String, Json>>(),
                    "stats": ref_operation_stats(&stats),
                });
                if let Some(ws) = w.as_ref().and_then(|w| w.operation(name, &pairs)) {
                    o["window"] = ref_operation_stats(&ws);
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

    fn ref_operation_stats(s: &crate::snapshot::OperationStats) -> Json {
        json!({
            "count": s.count,
            "errors": s.errors,
            "error_rate": s.error_rate.map(ref_finite),
            "success_rate": s.success_rate.map(ref_finite),
            "total_time_seconds": s.total_time.as_secs_f64(),
            "mean_ns": s.mean.map(ref_finite),
            "min_ns": s.min,
            "max_ns": s.max,
            "stddev_ns": s.stddev.map(ref_finite),
            "p50_ns": s.p50,
            "p90_ns": s.p90,
            "p95_ns": s.p95,
            "p99_ns": s.p99,
            "p999_ns": s.p999,
            "throughput": ref_finite(s.throughput),
        })
    }

    fn ref_histogram_fields(m: &mut Map<String, Json>, h: &HistogramSnapshot) {
        m.insert("count".into(), json!(h.count()));
        m.insert("sum".into(), json!(h.sum()));
        m.insert("min".into(), json!(h.min()));
        m.insert("max".into(), json!(h.max()));
        m.insert("mean".into(), h.mean().map(ref_finite).unwrap_or(Json::Null));
        for (k, q) in QUANTILES {
            m.insert((*k).into(), json!(h.quantile(*q)));
        }
    }

    fn ref_finite(v: f64) -> Json {
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

    fn ref_series(s: &Series, window: Option<&Window<'_>>) -> Json {
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
                m.insert("rate".into(), ref_finite(c.rate));
                if let Some(wc) = window.and_then(|w| w.counter_of(s)) {
                    m.insert("window".into(), json!({ "increase": wc.increase, "rate": ref_finite(wc.rate) }));
                }
            }
            Value::Gauge(g) => {
                m.insert("value".into(), ref_finite(g));
            }
            Value::Histogram(h) => {
                ref_histogram_fields(&mut m, h);
                m.insert("delta_count".into(), json!(h.delta_count()));
                m.insert("rate".into(), ref_finite(h.rate()));
                if let Some(wh) = window.and_then(|w| w.histogram_of(s)) {
                    let mut wm = Map::new();
                    ref_histogram_fields(&mut wm, &wh);
                    wm.insert("rate".into(), ref_finite(wh.rate()));
                    m.insert("window".into(), Json::Object(wm));
                }
            }
        }
        let exemplars = ref_exemplars(s);
        if !exemplars.is_empty() {
            m.insert("exemplars".into(), Json::Array(exemplars));
        }
        Json::Object(m)
    }

    fn ref_exemplars(s: &Series) -> Vec<Json> {
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
                    o["le"] = bounds.get(i).map_or(json!("+Inf"), |b| ref_finite(*b));
                }
                Some(o)
            })
            .collect()
    }

    // -- The tests.

    /// Label values that need every kind of escape, and some that need none.
    const AWKWARD: &[&str] = &[
        "plain",
        "",
        "quote\"d",
        "back\\slash",
        "new\nline",
        "tab\tcr\rff\x0cbs\x08",
        "ctl\x00\x01\x1f\x7f",
        "ünïcödé ✓ 🦀",
        "\"\\\n",
        "/api/v1/users/{id}",
    ];

    /// Every kind of series the render handles: counters, gauges (incl. NaN and ±Inf),
    /// histograms empty and full (time and byte units, custom and default buckets, exemplars
    /// in some buckets), labels needing escapes, an operation, after several ticks so that
    /// windows have history.
    fn rich_snapshot() -> Arc<Snapshot> {
        let r = Registry::builder().manual().windows(&[Duration::from_secs(10), Duration::from_secs(60)]).build();
        let requests =
            r.counter("rich_requests_total").help("Requests \"served\"\nover\\all").family(&["route"]).unwrap();
        let temps = r.gauge("rich_temperature").unit(Unit::Bytes).family(&["sensor"]).unwrap();
        let lat = r
            .histogram("rich_latency")
            .help("Latency")
            .unit(Unit::Nanoseconds)
            .buckets(&[0.001, 0.01, 0.1])
            .family(&["path"])
            .unwrap();
        let sizes = r.histogram("rich_sizes").unit(Unit::Bytes).build().unwrap();
        let never = r.histogram("rich_never_recorded").build().unwrap();
        let plain = r.counter("rich_plain_total").build().unwrap();
        let op = r.operation("rich_db").help("DB \"ops\"").label("table", "us\"ers\n").build().unwrap();
        let idle_op = r.operation("rich_idle").build().unwrap();
        let specials = [0.0, -0.0, 1.5, -2.25, 1e300, 5e-324, 0.1 + 0.2, f64::NAN, f64::INFINITY, f64::NEG_INFINITY];

        for tick in 0..4u64 {
            for (i, v) in AWKWARD.iter().enumerate() {
                requests.with(&[v]).add(tick * 7 + i as u64);
                temps.with(&[v]).set(specials[i % specials.len()]);
                if i % 3 != 0 {
                    lat.with(&[v]).record((i as u64 + 1) * 10_000 * (tick + 1));
                }
            }
            lat.with(&["exemplary"]).record_with_exemplar(900_000, &[("trace_id", "t\"1\\\n")]);
            lat.with(&["exemplary"]).record_with_exemplar(50_000_000, &[("trace_id", "mid"), ("span_id", "ü")]);
            lat.with(&["exemplary"]).record_with_exemplar(3_000_000_000, &[("trace_id", "slow")]);
            plain.add_with_exemplar(3, &[("trace_id", "c\x01")]);
            sizes.record(tick * 1000 + 1);
            op.record(Duration::from_micros(100 + tick), tick % 2 == 0);
            r.flush();
        }
        let _ = (never, idle_op);
        let snap = r.flush();
        // NaN cannot reach a gauge through the API (it is rejected), nor a rate: put non-finite
        // values into a copy of the snapshot so every float slot is rendered both ways.
        let (mut gauges, mut histograms) = (snap.gauges.to_vec(), snap.histograms.to_vec());
        let mut poked = 0;
        for s in snap.series() {
            let plain = s.labels().iter().any(|(_, v)| v == "plain");
            // (A counter's rate is delta / interval: always finite.)
            match (s.name(), s.value()) {
                ("rich_temperature", Value::Gauge(_)) if plain => gauges[s.slot() as usize] = f64::NAN,
                ("rich_sizes", Value::Histogram(_)) => histograms[s.slot() as usize].rate = f64::NEG_INFINITY,
                _ => continue,
            }
            poked += 1;
        }
        assert_eq!(poked, 2);
        Arc::new(Snapshot {
            seq: snap.seq,
            taken_at: snap.taken_at,
            interval: snap.interval,
            tick_duration: snap.tick_duration,
            shards: snap.shards,
            view: snap.view.clone(),
            counters: snap.counters.clone(),
            prev_counters: snap.prev_counters.clone(),
            gauges: gauges.into(),
            histograms: histograms.into(),
            exemplars: snap.exemplars.clone(),
            hidden: snap.hidden.clone(),
            levels: snap.levels.clone(),
            at: snap.at,
            bases: snap.bases.clone(),
            windows: snap.windows.clone(),
        })
    }

    use std::sync::Arc;

    fn check(snap: &Snapshot, window: Option<Duration>) {
        let text = match window {
            Some(w) => render_window(snap, w),
            None => render(snap),
        };
        let parsed: Json = serde_json::from_str(&text).unwrap_or_else(|e| panic!("invalid JSON ({e}):\n{text}"));
        let expected = reference(snap, window);
        if parsed != expected {
            let (p, e) =
                (serde_json::to_string_pretty(&parsed).unwrap(), serde_json::to_string_pretty(&expected).unwrap());
            let first = p.lines().zip(e.lines()).position(|(a, b)| a != b);
            panic!("render differs from the reference at pretty line {first:?}:\nrendered: {p}\nreference: {e}");
        }
        assert_eq!(to_value(snap, window), expected);
    }

    #[test]
    fn render_equals_the_tree_built_reference() {
        let snap = rich_snapshot();
        // The fixture covers what it claims to.
        let kinds: Vec<_> = snap.series().iter().map(|s| s.kind().as_str()).collect();
        assert!(["counter", "gauge", "histogram"].iter().all(|k| kinds.contains(k)), "{kinds:?}");
        let gauges: Vec<f64> = snap
            .series()
            .iter()
            .filter_map(|s| match s.value() {
                Value::Gauge(g) => Some(g),
                _ => None,
            })
            .collect();
        assert!(gauges.iter().any(|g| g.is_nan()), "{gauges:?}");
        assert!(gauges.contains(&f64::INFINITY) && gauges.contains(&f64::NEG_INFINITY), "{gauges:?}");
        let empty = |s: &Series| matches!(s.value(), Value::Histogram(h) if h.count() == 0);
        assert!(snap.series().iter().any(|s| empty(&s)), "an empty histogram");
        for v in AWKWARD {
            assert!(snap.series().iter().any(|s| s.labels().get("route") == Some(v)), "label value {v:?} accepted");
        }
        assert!(snap.series().iter().filter(|s| s.exemplars().iter().any(Option::is_some)).count() >= 2);
        assert_eq!(snap.operations().count(), 2);
        assert!(snap.window(Duration::from_secs(60)).ticks() >= 3);

        check(&snap, None);
        check(&snap, Some(Duration::from_secs(10)));
        check(&snap, Some(Duration::from_secs(60)));
        // A window length that is not configured, and one longer than the history.
        check(&snap, Some(Duration::from_millis(1)));
        check(&snap, Some(Duration::from_secs(3600)));
    }

    #[test]
    fn empty_snapshot() {
        let r = Registry::builder().manual().build();
        let snap = r.flush();
        check(&snap, None);
        check(&snap, Some(Duration::from_secs(10)));
        let empty = Snapshot::empty();
        assert_eq!(to_value(&empty, None), reference(&empty, None));
    }

    #[test]
    fn strings_escape_like_serde_json() {
        // Every ASCII byte at every position of strings up to three words long, alone and
        // beside multi-byte characters: the eight-bytes-at-a-time test must miss none.
        for b in 0u8..0x80 {
            for len in 1..=24 {
                for at in 0..len {
                    for filler in ["a", "é"] {
                        let mut s: String = filler.repeat(len);
                        let at = s.char_indices().nth(at).unwrap().0;
                        s.replace_range(at..at + filler.len(), &char::from(b).to_string());
                        assert_eq!(needs_escaping(s.as_bytes()), s.bytes().any(needs_escape), "{s:?}");
                        let mut out = String::new();
                        string(&mut out, &s);
                        assert_eq!(out, serde_json::to_string(&s).unwrap(), "{s:?}");
                    }
                }
            }
        }
        let mut every_char: String = (0u8..0x80).map(char::from).collect();
        every_char.push_str("é€𝄞\u{2028}\u{2029}\u{fffd}");
        for s in AWKWARD.iter().copied().chain([every_char.as_str()]) {
            let mut out = String::new();
            string(&mut out, s);
            assert_eq!(out, serde_json::to_string(s).unwrap(), "{s:?}");
            assert_eq!(serde_json::from_str::<String>(&out).unwrap(), s);
        }
    }

    #[test]
    fn floats_round_trip_as_floats() {
        for v in [0.0, -0.0, 1.0, 3.0, 0.1, 1.0 / 3.0, 1e-7, 1e16, 1e300, 5e-324, f64::MAX, f64::MIN_POSITIVE, 2e9] {
            let mut out = String::new();
            float(&mut out, v);
            // The spelling is serde_json's today, but only the number read back is the contract.
            let back: Json = serde_json::from_str(&out).unwrap();
            assert_eq!(back, json!(v), "{out} must parse as the float the tree held");
            assert!(back.is_f64(), "{out} must parse as a float, as the tree's f64 did");
            assert_eq!(back.as_f64().unwrap().to_bits(), v.to_bits(), "{out}");
        }
        for (v, s) in [(f64::NAN, "\"NaN\""), (f64::INFINITY, "\"+Inf\""), (f64::NEG_INFINITY, "\"-Inf\"")] {
            let mut out = String::new();
            float(&mut out, v);
            assert_eq!(out, s);
        }
    }
}
