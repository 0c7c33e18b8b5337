//! Ingestion, the dashboard's first step: one scrape (our JSON, Prometheus text or OpenMetrics)
//! becomes a [`Scrape`] — base units, operations recognised, families split by type — which
//! [`model`](super::model) then takes in.
//!
//! Nothing here touches a terminal or the network: the caller passes the scrape's body, so
//! tests can replay recorded scrapes.

use std::{collections::BTreeMap, fmt};

use serde_json::Value as Json;
use shardmetrics::scrape::{self, MetricType};

use super::human::Measure;

/// A series' identity: metric name and labels, sorted by label name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SeriesKey {
    pub name: String,
    pub labels: Vec<(String, String)>,
}

impl SeriesKey {
    pub fn new(name: &str, labels: impl IntoIterator<Item = (String, String)>) -> SeriesKey {
        let mut labels: Vec<(String, String)> = labels.into_iter().collect();
        labels.sort();
        SeriesKey { name: name.to_owned(), labels }
    }

    /// The value of label `name`.
    pub fn label(&self, name: &str) -> Option<&str> {
        self.labels.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    /// The same labels under another metric name.
    pub(crate) fn renamed(&self, name: &str) -> SeriesKey {
        SeriesKey { name: name.to_owned(), labels: self.labels.clone() }
    }

    /// `name{labels}` if it fits in `width` columns, else `name{value,value}` (label values
    /// only), else cut short with `…`.
    pub fn fit(&self, width: usize) -> String {
        let full = self.to_string();
        if full.chars().count() <= width {
            return full;
        }
        let values: Vec<&str> = self.labels.iter().map(|(_, v)| v.as_str()).collect();
        let compact = if values.is_empty() { full } else { format!("{}{{{}}}", self.name, values.join(",")) };
        if compact.chars().count() <= width || width == 0 {
            compact
        } else {
            compact.chars().take(width - 1).collect::<String>() + "…"
        }
    }

    /// Case-insensitive substring match against `name{labels}`; an empty filter matches all.
    pub fn matches(&self, filter: &str) -> bool {
        filter.is_empty() || self.to_string().to_lowercase().contains(&filter.to_lowercase())
    }
}

impl fmt::Display for SeriesKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name)?;
        if !self.labels.is_empty() {
            f.write_str("{")?;
            for (i, (k, v)) in self.labels.iter().enumerate() {
                if i > 0 {
                    f.write_str(",")?;
                }
                write!(f, "{k}=\"{v}\"")?;
            }
            f.write_str("}")?;
        }
        Ok(())
    }
}

/// What kind of document a scrape was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// shardmetrics' `/metrics.json`: operations, quantiles and rates computed by the service.
    Json,
    /// Prometheus text format 0.0.4 (node_exporter and the like).
    Prometheus,
    /// OpenMetrics 1.0 text.
    OpenMetrics,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Json => "json",
            Source::Prometheus => "prometheus text",
            Source::OpenMetrics => "openmetrics",
        }
    }
}

/// Where a latency row comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LatencyKind {
    /// An operation: calls, errors and a duration histogram sharing a name and labels.
    Operation,
    /// A histogram on its own.
    Histogram,
    /// A summary (quantiles computed by the service).
    Summary,
}

/// A counter as scraped.
#[derive(Debug, Clone, PartialEq)]
pub struct CounterObs {
    pub measure: Measure,
    /// Total in the base unit (seconds for time counters).
    pub total: f64,
    /// Per second, as the source computed it (JSON); text sources leave it to the model.
    pub rate: Option<f64>,
}

/// Latency quantiles in the base unit (seconds for durations).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Quantiles {
    pub p50: Option<f64>,
    pub p90: Option<f64>,
    pub p99: Option<f64>,
    pub max: Option<f64>,
}

/// An operation, histogram or summary as scraped.
#[derive(Debug, Clone, PartialEq)]
pub struct LatencyObs {
    pub kind: LatencyKind,
    pub measure: Measure,
    /// Calls (operations) or observations, cumulative.
    pub count: f64,
    /// Failed calls, cumulative (operations only).
    pub errors: Option<f64>,
    /// Calls per second as the source computed it (JSON).
    pub rate: Option<f64>,
    /// Error ratio over the source's window (JSON with `?window=`).
    pub recent_error_rate: Option<f64>,
    /// Quantiles as the source reported them (JSON: over the window if there is one; summaries).
    pub quantiles: Option<Quantiles>,
    /// Cumulative classic-histogram buckets `(le, count)`, ascending, `+Inf` last (text sources).
    pub buckets: Vec<(f64, f64)>,
}

/// One scrape, normalised: base units, operations recognised, families split by type.
#[derive(Debug, Clone, PartialEq)]
pub struct Scrape {
    pub source: Source,
    pub counters: BTreeMap<SeriesKey, CounterObs>,
    pub gauges: BTreeMap<SeriesKey, f64>,
    pub latencies: BTreeMap<SeriesKey, LatencyObs>,
    /// JSON: the aggregator tick that produced it.
    pub seq: Option<u64>,
    /// JSON: the windows the service keeps (`10s`, `1m`, …).
    pub windows: Vec<String>,
    /// JSON: the window this scrape's recent figures cover, if one was asked for.
    pub window: Option<String>,
    /// Size of the document.
    pub bytes: usize,
}

impl Scrape {
    fn empty(source: Source, bytes: usize) -> Scrape {
        Scrape {
            source,
            counters: BTreeMap::new(),
            gauges: BTreeMap::new(),
            latencies: BTreeMap::new(),
            seq: None,
            windows: Vec::new(),
            window: None,
            bytes,
        }
    }

    /// Parses a response body, choosing the parser by its `Content-Type` (JSON for
    /// `application/json`, OpenMetrics for `application/openmetrics-text`, Prometheus text
    /// otherwise) and falling back to sniffing a body that starts with `{`.
    pub fn parse(body: &str, content_type: Option<&str>) -> Result<Scrape, String> {
        let ct = content_type.unwrap_or("").to_ascii_lowercase();
        if ct.starts_with("application/json") || (ct.is_empty() && body.trim_start().starts_with('{')) {
            Scrape::from_json(body)
        } else {
            Scrape::from_text(body, scrape::Format::from_content_type(&ct))
        }
    }

    /// Reads shardmetrics' JSON document (`export::json`).
    pub fn from_json(body: &str) -> Result<Scrape, String> {
        let doc: Json = serde_json::from_str(body).map_err(|e| format!("the body is not valid JSON: {e}"))?;
        let mut s = Scrape::from_json_value(&doc)?;
        s.bytes = body.len();
        Ok(s)
    }

    /// Reads an already parsed JSON document (the demo feeds its own snapshot this way).
    pub fn from_json_value(doc: &Json) -> Result<Scrape, String> {
        let series = doc
            .get("series")
            .and_then(Json::as_array)
            .ok_or("JSON without a \"series\" array: not a shardmetrics /metrics.json document")?;
        let mut out = Scrape::empty(Source::Json, 0);
        out.seq = doc.get("seq").and_then(Json::as_u64);
        out.windows = doc
            .get("windows")
            .and_then(Json::as_array)
            .map(|w| w.iter().filter_map(|v| v.as_str().map(str::to_owned)).collect())
            .unwrap_or_default();
        out.window = doc.pointer("/window/length").and_then(Json::as_str).map(str::to_owned);
        let operations = doc.get("operations").and_then(Json::as_array).map(Vec::as_slice).unwrap_or_default();
        let op_histograms: Vec<SeriesKey> = operations
            .iter()
            .filter_map(|o| Some(json_key(&format!("{}_duration", o.get("name")?.as_str()?), o.get("labels"))))
            .collect();
        for s in series {
            let (Some(name), Some(kind)) = (s.get("name").and_then(Json::as_str), s.get("type").and_then(Json::as_str))
            else {
                continue;
            };
            let key = json_key(name, s.get("labels"));
            let unit = s.get("unit").and_then(Json::as_str).unwrap_or("");
            let (scale, measure) = unit_scale(unit, name);
            let window = s.get("window");
            match kind {
                "counter" => {
                    let total = num(s.get("value")).unwrap_or(0.0) * scale;
                    let rate = num(window.and_then(|w| w.get("rate"))).or(num(s.get("rate"))).map(|r| r * scale);
                    out.counters.insert(key, CounterObs { measure, total, rate });
                }
                "gauge" => {
                    if let Some(v) = num(s.get("value")) {
                        out.gauges.insert(key, v * scale);
                    }
                }
                "histogram" if !op_histograms.contains(&key) => {
                    let src = window.unwrap_or(s);
                    let q = |k: &str| num(src.get(k)).map(|v| v * scale);
                    out.latencies.insert(
                        key,
                        LatencyObs {
                            kind: LatencyKind::Histogram,
                            measure,
                            count: num(s.get("count")).unwrap_or(0.0),
                            errors: None,
                            rate: num(src.get("rate")),
                            recent_error_rate: None,
                            quantiles: Some(Quantiles { p50: q("p50"), p90: q("p90"), p99: q("p99"), max: q("max") }),
                            buckets: Vec::new(),
                        },
                    );
                }
                _ => {}
            }
        }
        for o in operations {
            let Some(name) = o.get("name").and_then(Json::as_str) else { continue };
            let Some(stats) = o.get("stats") else { continue };
            let recent = o.get("window");
            let src = recent.unwrap_or(stats);
            let ns = |k: &str| num(src.get(k)).map(|v| v * 1e-9);
            out.latencies.insert(
                json_key(name, o.get("labels")),
                LatencyObs {
                    kind: LatencyKind::Operation,
                    measure: Measure::Seconds,
                    count: num(stats.get("count")).unwrap_or(0.0),
                    errors: num(stats.get("errors")),
                    rate: num(src.get("throughput")),
                    recent_error_rate: recent.and_then(|w| num(w.get("error_rate"))),
                    quantiles: Some(Quantiles {
                        p50: ns("p50_ns"),
                        p90: ns("p90_ns"),
                        p99: ns("p99_ns"),
                        max: ns("max_ns"),
                    }),
                    buckets: Vec::new(),
                },
            );
        }
        Ok(out)
    }

    /// Reads Prometheus text 0.0.4 or OpenMetrics with [`shardmetrics::scrape`].
    pub fn from_text(body: &str, format: scrape::Format) -> Result<Scrape, String> {
        let families = scrape::parse(body, format).map_err(|e| format!("cannot parse the exposition: {e}"))?;
        let source = match format {
            scrape::Format::Prometheus => Source::Prometheus,
            scrape::Format::OpenMetrics => Source::OpenMetrics,
        };
        let mut out = Scrape::empty(source, body.len());
        for fam in &families {
            let measure = match fam.unit.as_deref() {
                Some("seconds") => Measure::Seconds,
                Some("bytes") => Measure::Bytes,
                _ => Measure::from_name(&fam.name),
            };
            match fam.kind {
                MetricType::Counter => {
                    for s in fam.samples.iter().filter(|s| !s.name.ends_with("_created")) {
                        let key = SeriesKey::new(&s.name, s.labels.iter().cloned());
                        out.counters.insert(key, CounterObs { measure, total: s.value, rate: None });
                    }
                }
                MetricType::Gauge | MetricType::StateSet | MetricType::Unknown => {
                    for s in &fam.samples {
                        let key = SeriesKey::new(&s.name, s.labels.iter().cloned());
                        if fam.kind == MetricType::Unknown && s.name.ends_with("_total") {
                            out.counters.insert(key, CounterObs { measure, total: s.value, rate: None });
                        } else {
                            out.gauges.insert(key, s.value);
                        }
                    }
                }
                // A distribution of `…_time_seconds` is of durations, not of timestamps.
                MetricType::Histogram | MetricType::GaugeHistogram => histogram_family(
                    &mut out,
                    fam,
                    if measure == Measure::Timestamp { Measure::Seconds } else { measure },
                ),
                MetricType::Summary => summary_family(
                    &mut out,
                    fam,
                    if measure == Measure::Timestamp { Measure::Seconds } else { measure },
                ),
                MetricType::Info => {}
            }
        }
        recognise_operations(&mut out);
        Ok(out)
    }
}

/// Parses an exposition and hands each family to `f`.
pub fn for_each_family(
    body: &str,
    format: scrape::Format,
    mut f: impl FnMut(&scrape::MetricFamily),
) -> Result<(), scrape::ParseError> {
    scrape::parse(body, format)?.iter().for_each(&mut f);
    Ok(())
}

/// Labels of a JSON series or operation.
fn json_key(name: &str, labels: Option<&Json>) -> SeriesKey {
    let labels = labels.and_then(Json::as_object).map(|m| {
        m.iter().map(|(k, v)| (k.clone(), v.as_str().map_or_else(|| v.to_string(), str::to_owned))).collect::<Vec<_>>()
    });
    SeriesKey::new(name, labels.unwrap_or_default())
}

/// A JSON number, or one of the strings `"NaN"`, `"+Inf"`, `"-Inf"` the exporter writes for
/// non-finite values.
fn num(v: Option<&Json>) -> Option<f64> {
    match v? {
        Json::Number(n) => n.as_f64(),
        Json::String(s) => match s.as_str() {
            "NaN" => Some(f64::NAN),
            "+Inf" => Some(f64::INFINITY),
            "-Inf" => Some(f64::NEG_INFINITY),
            _ => None,
        },
        _ => None,
    }
}

/// Factor from a JSON series' unit to its base unit, and what it measures.
fn unit_scale(unit: &str, name: &str) -> (f64, Measure) {
    match unit {
        "nanoseconds" => (1e-9, Measure::Seconds),
        "microseconds" => (1e-6, Measure::Seconds),
        "milliseconds" => (1e-3, Measure::Seconds),
        "seconds" => (1.0, Measure::Seconds),
        "bytes" => (1.0, Measure::Bytes),
        _ => (1.0, Measure::from_name(name)),
    }
}

fn histogram_family(out: &mut Scrape, fam: &scrape::MetricFamily, measure: Measure) {
    let mut groups: BTreeMap<SeriesKey, LatencyObs> = BTreeMap::new();
    for s in &fam.samples {
        let labels = s.labels.iter().filter(|(k, _)| k != "le").cloned();
        let obs = groups.entry(SeriesKey::new(&fam.name, labels)).or_insert_with(|| LatencyObs {
            kind: LatencyKind::Histogram,
            measure,
            count: 0.0,
            errors: None,
            rate: None,
            recent_error_rate: None,
            quantiles: None,
            buckets: Vec::new(),
        });
        if s.name.ends_with("_bucket") {
            if let Some(le) = s.label("le").and_then(parse_le) {
                obs.buckets.push((le, s.value));
            }
        } else if s.name.ends_with("_count") || s.name.ends_with("_gcount") {
            obs.count = s.value;
        }
    }
    for (key, mut obs) in groups {
        obs.buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
        if obs.count == 0.0 {
            obs.count = obs.buckets.last().map_or(0.0, |b| b.1);
        }
        out.latencies.insert(key, obs);
    }
}

fn summary_family(out: &mut Scrape, fam: &scrape::MetricFamily, measure: Measure) {
    let mut groups: BTreeMap<SeriesKey, LatencyObs> = BTreeMap::new();
    for s in &fam.samples {
        let labels = s.labels.iter().filter(|(k, _)| k != "quantile").cloned();
        let obs = groups.entry(SeriesKey::new(&fam.name, labels)).or_insert_with(|| LatencyObs {
            kind: LatencyKind::Summary,
            measure,
            count: 0.0,
            errors: None,
            rate: None,
            recent_error_rate: None,
            quantiles: Some(Quantiles::default()),
            buckets: Vec::new(),
        });
        if s.name.ends_with("_count") {
            obs.count = s.value;
        } else if let (Some(q), Some(qs)) =
            (s.label("quantile").and_then(|q| q.parse::<f64>().ok()), &mut obs.quantiles)
        {
            let v = Some(s.value).filter(|v| !v.is_nan());
            if q == 0.5 {
                qs.p50 = v;
            } else if q == 0.9 {
                qs.p90 = v;
            } else if q == 0.99 {
                qs.p99 = v;
            } else if q == 1.0 {
                qs.max = v;
            }
        }
    }
    out.latencies.extend(groups);
}

fn parse_le(le: &str) -> Option<f64> {
    match le {
        "+Inf" | "Inf" | "+inf" | "inf" => Some(f64::INFINITY),
        v => v.parse().ok(),
    }
}

/// shardmetrics exports an operation `x` as `x_duration_seconds` (histogram),
/// `x_calls_total` and `x_errors_total`: fold the three back into one operation row.
fn recognise_operations(out: &mut Scrape) {
    let candidates: Vec<SeriesKey> = out
        .latencies
        .iter()
        .filter(|(k, o)| o.kind == LatencyKind::Histogram && k.name.ends_with("_duration_seconds"))
        .map(|(k, _)| k.clone())
        .collect();
    for key in candidates {
        let base = key.name.strip_suffix("_duration_seconds").unwrap_or(&key.name);
        let Some(calls) = out.counters.get(&key.renamed(&format!("{base}_calls_total"))).map(|c| c.total) else {
            continue;
        };
        let errors = out.counters.get(&key.renamed(&format!("{base}_errors_total"))).map(|c| c.total);
        let Some(mut obs) = out.latencies.remove(&key) else { continue };
        obs.kind = LatencyKind::Operation;
        obs.count = calls;
        obs.errors = errors;
        out.latencies.insert(key.renamed(base), obs);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_fit_their_column() {
        let k = SeriesKey::new(
            "req_total",
            [("route".to_owned(), "/api".to_owned()), ("code".to_owned(), "200".to_owned())],
        );
        assert_eq!(k.to_string(), "req_total{code=\"200\",route=\"/api\"}");
        assert_eq!(k.fit(40), k.to_string());
        assert_eq!(k.fit(20), "req_total{200,/api}");
        assert_eq!(k.fit(12), "req_total{2…");
        assert_eq!(SeriesKey::new("abcdef", []).fit(4), "abc…");
    }
}
