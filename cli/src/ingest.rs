//! Ingestion, the dashboard's first step: one scrape (our JSON, Prometheus text or OpenMetrics)
//! becomes a [`Scrape`] — base units, operations recognised, families split by type — which
//! [`model`](super::model) then takes in.
//!
//! Nothing here touches a terminal or the network: the caller passes the scrape's body, so
//! tests can replay recorded scrapes.

use std::{
    borrow::Borrow,
    collections::{BTreeMap, HashMap},
    fmt,
    io::{self, Read},
    sync::Arc,
};

use serde_json::Value as Json;
use shardmetrics::scrape::{self, MetricType};

use super::human::Measure;

/// A series' identity: metric name and labels, sorted by label name.
///
/// One shared allocation holding the name, then `\0label\0value` per label, so a key costs
/// little more than its text and a clone is a reference count: a big scrape holds one key per
/// series, and the dashboard's rows share them. Ordered as (name, labels) would be. A NUL
/// inside a name or value (legal in a label value, unseen in practice) is kept as U+FFFD.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SeriesKey(Arc<str>);

/// Separates the parts of a [`SeriesKey`].
const SEP: char = '\0';

fn push_part(out: &mut String, part: &str) {
    if part.contains(SEP) {
        out.push_str(&part.replace(SEP, "\u{FFFD}"));
    } else {
        out.push_str(part);
    }
}

/// Writes the text of the key of `name` and `labels` to `out` (cleared first).
fn write_key<'a>(out: &mut String, name: &str, labels: impl Iterator<Item = (&'a str, &'a str)> + Clone) {
    out.clear();
    push_part(out, name);
    let write = |(k, v): (&str, &str)| {
        out.push(SEP);
        push_part(out, k);
        out.push(SEP);
        push_part(out, v);
    };
    // Expositions write labels sorted as a rule: sort (a copy) only when they are not.
    let mut last = None;
    if labels.clone().all(|l| last.replace(l).is_none_or(|p| p <= l)) {
        labels.for_each(write);
    } else {
        let mut sorted: Vec<(&str, &str)> = labels.collect();
        sorted.sort();
        sorted.into_iter().for_each(write);
    }
}

impl Borrow<str> for SeriesKey {
    /// The key's text (ordered and hashed as the key is), to look a key up without making one.
    fn borrow(&self) -> &str {
        &self.0
    }
}

/// Series keys shared from one scrape of an endpoint to the next (`top`): a key whose text is
/// already known is a reference to the known one, not a new allocation. A big scrape's keys
/// cost about as much as its text; without this the model's keys and the next scrape's would
/// be two copies of the same. Only the last scrape's keys are known, so series that went away
/// do not pile up.
#[derive(Default)]
pub struct Keys {
    /// The last scrape's keys, sorted (16 bytes a key: less than a hash set's table).
    known: Vec<SeriesKey>,
    /// Whether keys are kept for the next scrape (not for a one-off: `report`).
    remember: bool,
    /// The key being made.
    buf: String,
    /// Counters and gauges in the last scrape (entries pushed, before any were merged).
    sizes: (usize, usize),
}

impl Keys {
    /// Keys kept from scrape to scrape.
    pub fn shared() -> Keys {
        Keys { remember: true, ..Keys::default() }
    }

    /// The key of `name` and `labels`.
    fn key<'a>(&mut self, name: &str, labels: impl Iterator<Item = (&'a str, &'a str)> + Clone) -> SeriesKey {
        write_key(&mut self.buf, name, labels);
        self.made()
    }

    /// The text of the key of `name` and `labels`, without making the key.
    fn text<'a>(&mut self, name: &str, labels: impl Iterator<Item = (&'a str, &'a str)> + Clone) -> &str {
        write_key(&mut self.buf, name, labels);
        &self.buf
    }

    /// The key of the text in `buf`.
    fn made(&mut self) -> SeriesKey {
        match self.known.binary_search_by(|k| k.0.as_ref().cmp(self.buf.as_str())) {
            Ok(i) => self.known[i].clone(),
            Err(_) => SeriesKey(Arc::from(self.buf.as_str())),
        }
    }

    /// Remembers `scrape`'s keys (and only those) for the next scrape.
    fn learn(&mut self, scrape: &Scrape) {
        if !self.remember {
            return;
        }
        // The old list goes first: its keys live on in the scrape and the model.
        self.known = Vec::new();
        let mut known = Vec::with_capacity(scrape.counters.len() + scrape.gauges.len() + scrape.latencies.len());
        known.extend(scrape.counters.keys().chain(scrape.gauges.keys()).chain(scrape.latencies.keys()).cloned());
        known.sort_unstable();
        known.dedup();
        self.known = known;
    }

    /// `key`'s labels under another metric name.
    fn renamed(&mut self, key: &SeriesKey, name: &str) -> SeriesKey {
        self.renamed_text(key, name);
        self.made()
    }

    /// The text of [`Keys::renamed`], without making the key.
    fn renamed_text(&mut self, key: &SeriesKey, name: &str) -> &str {
        self.buf.clear();
        push_part(&mut self.buf, name);
        self.buf.push_str(&key.0[key.name().len()..]);
        &self.buf
    }
}

impl SeriesKey {
    pub fn new(name: &str, labels: impl IntoIterator<Item = (String, String)>) -> SeriesKey {
        SeriesKey::from_parts(name, labels)
    }

    /// [`SeriesKey::new`] from borrowed (or any string-like) labels.
    pub fn from_parts<K: AsRef<str>, V: AsRef<str>>(name: &str, labels: impl IntoIterator<Item = (K, V)>) -> SeriesKey {
        let labels: Vec<(K, V)> = labels.into_iter().collect();
        let mut key = String::new();
        write_key(&mut key, name, labels.iter().map(|(k, v)| (k.as_ref(), v.as_ref())));
        SeriesKey(Arc::from(key))
    }

    /// The metric name.
    pub fn name(&self) -> &str {
        self.0.split(SEP).next().unwrap_or("")
    }

    /// `(label, value)` pairs, sorted.
    pub fn labels(&self) -> impl Iterator<Item = (&str, &str)> + '_ {
        let mut parts = self.0.split(SEP).skip(1);
        std::iter::from_fn(move || Some((parts.next()?, parts.next()?)))
    }

    /// Whether the series has labels.
    pub fn has_labels(&self) -> bool {
        self.0.contains(SEP)
    }

    /// The value of label `name`.
    pub fn label(&self, name: &str) -> Option<&str> {
        self.labels().find(|(k, _)| *k == name).map(|(_, v)| v)
    }

    /// The same labels under another metric name.
    pub(crate) fn renamed(&self, name: &str) -> SeriesKey {
        let labels = &self.0[self.name().len()..];
        let mut key = String::with_capacity(name.len() + labels.len());
        push_part(&mut key, name);
        key.push_str(labels);
        SeriesKey(Arc::from(key))
    }

    /// `name{labels}` if it fits in `width` columns, else `name{value,value}` (label values
    /// only), else cut short with `…`.
    pub fn fit(&self, width: usize) -> String {
        let full = self.to_string();
        if full.chars().count() <= width {
            return full;
        }
        let values: Vec<&str> = self.labels().map(|(_, v)| v).collect();
        let compact = if values.is_empty() { full } else { format!("{}{{{}}}", self.name(), values.join(",")) };
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

impl fmt::Debug for SeriesKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SeriesKey({self})")
    }
}

impl fmt::Display for SeriesKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())?;
        if self.has_labels() {
            f.write_str("{")?;
            for (i, (k, v)) in self.labels().enumerate() {
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

/// Series and their values in key order: a map in one allocation, for tables of hundreds of
/// thousands of series (a tree's nodes would cost as much again as the entries). Built by
/// pushing entries in any order, then sorting them once.
#[derive(Clone, PartialEq)]
pub struct SeriesMap<V>(Vec<(SeriesKey, V)>);

impl<V> Default for SeriesMap<V> {
    fn default() -> SeriesMap<V> {
        SeriesMap(Vec::new())
    }
}

impl<V> SeriesMap<V> {
    fn with_capacity(n: usize) -> SeriesMap<V> {
        SeriesMap(Vec::with_capacity(n))
    }

    /// Adds an entry, in any order; [`SeriesMap::seal`] before looking anything up.
    fn push(&mut self, key: SeriesKey, value: V) {
        self.0.push((key, value));
    }

    /// Puts the entries in key order; of entries with the same key the last pushed stays, as
    /// with a map's `insert`. Sorts an index (4 bytes an entry), not the entries, so that the
    /// sort's scratch space is small.
    fn seal(&mut self) {
        let entries = &mut self.0;
        let mut order: Vec<u32> = (0..entries.len() as u32).collect();
        order.sort_by(|&a, &b| entries[a as usize].0.cmp(&entries[b as usize].0));
        // Entry `order[i]` goes to `i`, one cycle of the permutation at a time.
        for i in 0..order.len() {
            let mut j = i;
            loop {
                let k = order[j] as usize;
                order[j] = j as u32;
                if k == i {
                    break;
                }
                entries.swap(j, k);
                j = k;
            }
        }
        entries.dedup_by(|later, kept| {
            let same = later.0 == kept.0;
            if same {
                std::mem::swap(later, kept);
            }
            same
        });
        if entries.capacity() > entries.len() + entries.len() / 8 {
            entries.shrink_to_fit();
        }
    }

    /// The value of `key` (a [`SeriesKey`], or its text).
    pub fn get<Q: Ord + ?Sized>(&self, key: &Q) -> Option<&V>
    where
        SeriesKey: Borrow<Q>,
    {
        self.0.binary_search_by(|(k, _)| k.borrow().cmp(key)).ok().map(|i| &self.0[i].1)
    }

    pub fn contains_key<Q: Ord + ?Sized>(&self, key: &Q) -> bool
    where
        SeriesKey: Borrow<Q>,
    {
        self.get(key).is_some()
    }

    /// The entries in key order.
    pub fn iter(&self) -> impl DoubleEndedIterator<Item = (&SeriesKey, &V)> + ExactSizeIterator + '_ {
        self.0.iter().map(|(k, v)| (k, v))
    }

    pub fn keys(&self) -> impl DoubleEndedIterator<Item = &SeriesKey> + ExactSizeIterator + '_ {
        self.0.iter().map(|(k, _)| k)
    }

    pub fn values(&self) -> impl DoubleEndedIterator<Item = &V> + ExactSizeIterator + '_ {
        self.0.iter().map(|(_, v)| v)
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl<V> std::ops::Index<&SeriesKey> for SeriesMap<V> {
    type Output = V;

    fn index(&self, key: &SeriesKey) -> &V {
        self.get(key).unwrap_or_else(|| panic!("no series {key}"))
    }
}

impl<V> IntoIterator for SeriesMap<V> {
    type Item = (SeriesKey, V);
    type IntoIter = std::vec::IntoIter<(SeriesKey, V)>;

    fn into_iter(self) -> Self::IntoIter {
        self.0.into_iter()
    }
}

impl<'a, V> IntoIterator for &'a SeriesMap<V> {
    type Item = (&'a SeriesKey, &'a V);
    type IntoIter =
        std::iter::Map<std::slice::Iter<'a, (SeriesKey, V)>, fn(&'a (SeriesKey, V)) -> (&'a SeriesKey, &'a V)>;

    fn into_iter(self) -> Self::IntoIter {
        self.0.iter().map(|(k, v)| (k, v))
    }
}

impl<V: fmt::Debug> fmt::Debug for SeriesMap<V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

/// One scrape, normalised: base units, operations recognised, families split by type.
#[derive(Debug, Clone, PartialEq)]
pub struct Scrape {
    pub source: Source,
    pub counters: SeriesMap<CounterObs>,
    pub gauges: SeriesMap<f64>,
    pub latencies: SeriesMap<LatencyObs>,
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
            counters: SeriesMap::default(),
            gauges: SeriesMap::default(),
            latencies: SeriesMap::default(),
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
                    out.counters.push(key, CounterObs { measure, total, rate });
                }
                "gauge" => {
                    if let Some(v) = num(s.get("value")) {
                        out.gauges.push(key, v * scale);
                    }
                }
                "histogram" if !op_histograms.contains(&key) => {
                    let src = window.unwrap_or(s);
                    let q = |k: &str| num(src.get(k)).map(|v| v * scale);
                    out.latencies.push(
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
            out.latencies.push(
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
        out.counters.seal();
        out.gauges.seal();
        out.latencies.seal();
        Ok(out)
    }

    /// Reads Prometheus text 0.0.4 or OpenMetrics with [`shardmetrics::scrape`], a slice at a
    /// time ([`for_each_family`]): only the series are kept, never the parsed samples of the
    /// whole body.
    pub fn from_text(body: &str, format: scrape::Format) -> Result<Scrape, String> {
        Scrape::from_text_in(body, format, CHUNK)
    }

    fn from_text_in(body: &str, format: scrape::Format, chunk: usize) -> Result<Scrape, String> {
        let mut keys = Keys::default();
        let mut b = TextBuilder::new(format, &mut keys);
        for_each_family_in(body, format, chunk, |fam| b.add(fam))
            .map_err(|e| format!("cannot parse the exposition: {e}"))?;
        Ok(b.finish(body.len()))
    }

    /// Reads a response body from `reader` as [`Scrape::parse`] reads it from a string, but
    /// Prometheus text as it arrives, a slice at a time: neither the body nor its parsed
    /// samples are ever whole in memory, only the series (JSON and OpenMetrics are read whole).
    pub fn read(reader: &mut dyn Read, content_type: Option<&str>) -> Result<Scrape, ReadError> {
        Scrape::read_in(reader, content_type, CHUNK, &mut Keys::default())
    }

    /// [`Scrape::read`] with the keys of the same endpoint's previous scrapes: a series seen
    /// before gets the key it had (see [`Keys`]).
    pub fn read_keyed(reader: &mut dyn Read, content_type: Option<&str>, keys: &mut Keys) -> Result<Scrape, ReadError> {
        Scrape::read_in(reader, content_type, CHUNK, keys)
    }

    fn read_in(
        reader: &mut dyn Read,
        content_type: Option<&str>,
        chunk: usize,
        keys: &mut Keys,
    ) -> Result<Scrape, ReadError> {
        let ct = content_type.unwrap_or("").to_ascii_lowercase();
        let format = scrape::Format::from_content_type(&ct);
        let mut buf: Vec<u8> = Vec::with_capacity(chunk.max(1) * 2);
        let at_eof = fill(reader, &mut buf, chunk)?;
        let json = ct.starts_with("application/json")
            || (ct.is_empty() && buf.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{'));
        if json || format == scrape::Format::OpenMetrics {
            if !at_eof {
                reader.read_to_end(&mut buf).map_err(ReadError::Io)?;
            }
            let body =
                String::from_utf8(buf).map_err(|e| ReadError::Invalid(not_utf8(e.as_bytes(), &e.utf8_error())))?;
            return Scrape::parse(&body, content_type).map_err(ReadError::Invalid);
        }
        let mut b = TextBuilder::new(format, keys);
        let mut families = Families::default();
        let mut bytes = 0;
        let mut eof = at_eof;
        loop {
            // Whole lines only: a line (or a character) cut by the read waits for the next one.
            let cut = if eof { buf.len() } else { buf.iter().rposition(|&c| c == b'\n').map_or(0, |i| i + 1) };
            if cut > 0 {
                let text = std::str::from_utf8(&buf[..cut]).map_err(|e| {
                    let line = families.first_line + buf[..e.valid_up_to()].iter().filter(|&&c| c == b'\n').count();
                    ReadError::Invalid(format!("the body is not UTF-8 text (line {line}): {e}"))
                })?;
                families
                    .feed(text, &mut |fam| b.add(fam))
                    .map_err(|e| ReadError::Invalid(format!("cannot parse the exposition: {e}")))?;
                bytes += cut;
                buf.drain(..cut);
            }
            if eof {
                break;
            }
            eof = fill(reader, &mut buf, chunk)?;
        }
        Ok(b.finish(bytes))
    }
}

/// Why a body read with [`Scrape::read`] gave no scrape.
#[derive(Debug)]
pub enum ReadError {
    /// Reading failed (the connection broke, the size limit, a timeout).
    Io(io::Error),
    /// The body is not a metrics document.
    Invalid(String),
}

/// Reads until `buf` has `chunk` more bytes or the body ends; returns whether it ended.
fn fill(reader: &mut dyn Read, buf: &mut Vec<u8>, chunk: usize) -> Result<bool, ReadError> {
    let want = buf.len() + chunk.max(1);
    let mut piece = [0u8; 16 << 10];
    while buf.len() < want {
        match reader.read(&mut piece[..(want - buf.len()).min(16 << 10)]) {
            Ok(0) => return Ok(true),
            Ok(n) => buf.extend_from_slice(&piece[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(ReadError::Io(e)),
        }
    }
    Ok(false)
}

fn not_utf8(bytes: &[u8], e: &std::str::Utf8Error) -> String {
    let line = bytes[..e.valid_up_to()].iter().filter(|&&c| c == b'\n').count() + 1;
    format!("the body is not UTF-8 text (line {line}): {e}")
}

/// Builds a [`Scrape`] from text families, piece by piece.
struct TextBuilder<'k> {
    out: Scrape,
    /// Histograms and summaries, grouped over every piece of their family, then added.
    groups: BTreeMap<SeriesKey, LatencyObs>,
    keys: &'k mut Keys,
}

impl<'k> TextBuilder<'k> {
    fn new(format: scrape::Format, keys: &'k mut Keys) -> TextBuilder<'k> {
        let source = match format {
            scrape::Format::Prometheus => Source::Prometheus,
            scrape::Format::OpenMetrics => Source::OpenMetrics,
        };
        let mut out = Scrape::empty(source, 0);
        // As many as last time: a big scrape's tables made at their size, not doubled to it.
        out.counters = SeriesMap::with_capacity(keys.sizes.0);
        out.gauges = SeriesMap::with_capacity(keys.sizes.1);
        TextBuilder { out, groups: BTreeMap::new(), keys }
    }

    fn add(&mut self, fam: &scrape::MetricFamily) {
        let (out, keys) = (&mut self.out, &mut *self.keys);
        let measure = match fam.unit.as_deref() {
            Some("seconds") => Measure::Seconds,
            Some("bytes") => Measure::Bytes,
            _ => Measure::from_name(&fam.name),
        };
        let mut key = |s: &scrape::Sample| keys.key(&s.name, s.labels.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        match fam.kind {
            MetricType::Counter => {
                for s in fam.samples.iter().filter(|s| !s.name.ends_with("_created")) {
                    out.counters.push(key(s), CounterObs { measure, total: s.value, rate: None });
                }
            }
            MetricType::Gauge | MetricType::StateSet | MetricType::Unknown => {
                for s in &fam.samples {
                    if fam.kind == MetricType::Unknown && s.name.ends_with("_total") {
                        out.counters.push(key(s), CounterObs { measure, total: s.value, rate: None });
                    } else {
                        out.gauges.push(key(s), s.value);
                    }
                }
            }
            // A distribution of `…_time_seconds` is of durations, not of timestamps.
            MetricType::Histogram | MetricType::GaugeHistogram => histogram_family(
                &mut self.groups,
                keys,
                fam,
                if measure == Measure::Timestamp { Measure::Seconds } else { measure },
            ),
            MetricType::Summary => summary_family(
                &mut self.groups,
                keys,
                fam,
                if measure == Measure::Timestamp { Measure::Seconds } else { measure },
            ),
            MetricType::Info => {}
        }
    }

    fn finish(mut self, bytes: usize) -> Scrape {
        for (key, mut obs) in std::mem::take(&mut self.groups) {
            if obs.kind == LatencyKind::Histogram {
                obs.buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
                if obs.count == 0.0 {
                    obs.count = obs.buckets.last().map_or(0.0, |b| b.1);
                }
            }
            self.out.latencies.push(key, obs);
        }
        let out = &mut self.out;
        (self.keys.sizes.0, self.keys.sizes.1) = (out.counters.len(), out.gauges.len());
        out.counters.seal();
        out.gauges.seal();
        recognise_operations(&mut self.out, self.keys);
        self.keys.learn(&self.out);
        self.out.bytes = bytes;
        self.out
    }
}

/// Text is parsed in slices of about this many bytes, so that the parser's owned samples
/// (several times the size of their text) exist for one slice at a time, not the whole body.
const CHUNK: usize = 256 << 10;

/// Parses an exposition and hands each family to `f`, as [`scrape::parse`] would return them,
/// without holding the whole body's parsed samples at once.
///
/// Prometheus text is parsed in slices of about 256 KiB cut at line ends. A family can
/// come in several pieces (one per slice it spans), each handed to `f` under the family's name
/// and type: a slice that may start inside a family is parsed after that family's `# TYPE`
/// line, so the parser checks its samples as part of it; samples of a family declared in an
/// earlier slice are given that family (as the whole-body parser does); a second `# HELP` or
/// `# TYPE`, or a `# TYPE` after samples, across slices is an error as it is within one.
/// OpenMetrics, whose rules span the whole text (`# EOF` last, no interleaving), is parsed in
/// one piece.
pub fn for_each_family(
    body: &str,
    format: scrape::Format,
    f: impl FnMut(&scrape::MetricFamily),
) -> Result<(), scrape::ParseError> {
    for_each_family_in(body, format, CHUNK, f)
}

/// What is known of a family from earlier slices.
#[derive(Clone, Copy)]
struct Seen {
    kind: MetricType,
    typed: bool,
    help: bool,
    samples: bool,
}

fn for_each_family_in(
    body: &str,
    format: scrape::Format,
    chunk: usize,
    mut f: impl FnMut(&scrape::MetricFamily),
) -> Result<(), scrape::ParseError> {
    if format == scrape::Format::OpenMetrics {
        scrape::parse(body, format)?.iter().for_each(&mut f);
        return Ok(());
    }
    let mut families = Families::default();
    let mut start = 0;
    while start < body.len() {
        let end = match body[start..].get(chunk.max(1)..).and_then(|rest| rest.find('\n')) {
            Some(i) => start + chunk.max(1) + i + 1,
            None => body.len(),
        };
        families.feed(&body[start..end], &mut f)?;
        start = end;
    }
    Ok(())
}

/// Prometheus text parsed slice by slice (each whole lines), with what the slices share.
struct Families {
    /// What is known of each family from earlier slices.
    seen: HashMap<String, Seen>,
    /// The last `# TYPE` line of the text parsed so far: (its family, the line).
    last_type: Option<(String, String)>,
    /// The next slice's first line number.
    first_line: usize,
    /// The `# TYPE` line and a slice.
    buf: String,
}

impl Default for Families {
    fn default() -> Families {
        Families { seen: HashMap::new(), last_type: None, first_line: 1, buf: String::new() }
    }
}

impl Families {
    /// Parses `slice`, whole lines following the previous slice, and hands its families to `f`.
    fn feed(&mut self, slice: &str, f: &mut impl FnMut(&scrape::MetricFamily)) -> Result<(), scrape::ParseError> {
        let seen = &mut self.seen;
        // A slice that may start inside the family of the last `# TYPE` line is parsed after it.
        let (text, prefix_lines, continued) = match &self.last_type {
            Some((name, line)) => {
                self.buf.clear();
                self.buf.push_str(line);
                self.buf.push('\n');
                self.buf.push_str(slice);
                (self.buf.as_str(), 1, Some(name.as_str()))
            }
            None => (slice, 0, None),
        };
        // Line numbers of `text` in the body.
        let first_line = self.first_line;
        let at = |line: usize| if line <= prefix_lines { 0 } else { line - prefix_lines + first_line - 1 };
        let families = scrape::parse_prometheus(text).map_err(|e| scrape::ParseError { line: at(e.line), ..e })?;
        for mut fam in families {
            let synthetic = continued == Some(fam.name.as_str());
            let typed_here = fam.kind != MetricType::Unknown && !synthetic;
            // The family these samples belong to: this name, or the histogram or summary an
            // untyped `x_bucket`/`x_sum`/`x_count` is part of.
            let resolved = match seen.get(&fam.name) {
                Some(_) => Some(fam.name.clone()),
                None if fam.kind == MetricType::Unknown => ["_bucket", "_sum", "_count"].iter().find_map(|suffix| {
                    let base = fam.name.strip_suffix(suffix)?;
                    match seen.get(base)?.kind {
                        MetricType::Histogram => Some(base.to_owned()),
                        MetricType::Summary if *suffix != "_bucket" => Some(base.to_owned()),
                        _ => None,
                    }
                }),
                None => None,
            };
            let Some(name) = resolved else {
                let first = Seen {
                    kind: fam.kind,
                    typed: typed_here,
                    help: fam.help.is_some(),
                    samples: !fam.samples.is_empty(),
                };
                seen.insert(fam.name.clone(), first);
                f(&fam);
                continue;
            };
            let before = seen[&name];
            if name == fam.name {
                let meta_error = |what: &str, message: String| scrape::ParseError {
                    line: at(line_of(text, |l| meta_line(l) == Some((what, name.as_str()))).unwrap_or(0)),
                    message,
                };
                if typed_here && before.typed {
                    return Err(meta_error("TYPE", format!("second # TYPE for {name}")));
                }
                if typed_here && before.samples {
                    return Err(meta_error("TYPE", format!("# TYPE for {name} after its samples")));
                }
                if fam.help.is_some() && before.help {
                    return Err(meta_error("HELP", format!("second # HELP for {name}")));
                }
            }
            if !typed_here && !synthetic {
                fam.kind = before.kind;
                check_continued(&fam, &name, text)
                    .map_err(|(line, message)| scrape::ParseError { line: at(line), message })?;
            }
            let e = seen.get_mut(&name).expect("resolved from `seen`");
            e.typed |= typed_here;
            e.kind = fam.kind;
            e.help |= fam.help.is_some();
            e.samples |= !fam.samples.is_empty();
            fam.name = name;
            if !fam.samples.is_empty() {
                f(&fam);
            }
        }
        if let Some(line) = slice.rsplit('\n').find(|l| meta_line(l).is_some_and(|(k, _)| k == "TYPE")) {
            let name = meta_line(line).map_or_else(String::new, |(_, n)| n.to_owned());
            self.last_type = Some((name, line.to_owned()));
        }
        self.first_line += slice.matches('\n').count();
        Ok(())
    }
}

/// `# HELP name …` / `# TYPE name …` → (`HELP`/`TYPE`, name), blanks as the parser allows them.
fn meta_line(line: &str) -> Option<(&str, &str)> {
    let rest = line.trim_start_matches([' ', '\t']).strip_prefix('#')?;
    let mut words = rest.split([' ', '\t']).filter(|w| !w.is_empty());
    match (words.next()?, words.next()?) {
        (k @ ("HELP" | "TYPE"), name) => Some((k, name)),
        _ => None,
    }
}

/// 1-based number of the first line of `text` matching `pred`.
fn line_of(text: &str, pred: impl Fn(&str) -> bool) -> Option<usize> {
    text.split('\n').position(pred).map(|i| i + 1)
}

/// Samples of a histogram or summary declared in an earlier slice, checked as the parser checks
/// them within one: `x_bucket` needs a number in `le`, a summary's `x` one in `quantile`.
fn check_continued(fam: &scrape::MetricFamily, name: &str, text: &str) -> Result<(), (usize, String)> {
    let number = |v: Option<&str>| v.and_then(|v| v.parse::<f64>().ok()).is_some_and(|v| !v.is_nan());
    for s in &fam.samples {
        let label = match (fam.kind, s.name.strip_prefix(name)) {
            (MetricType::Histogram, Some("_bucket")) => "le",
            (MetricType::Summary, Some("")) => "quantile",
            _ => continue,
        };
        if !number(s.label(label)) {
            let line = line_of(text, |l| l.trim_start_matches([' ', '\t']).starts_with(s.name.as_str())).unwrap_or(0);
            return Err((line, format!("{}: missing or invalid \"{label}\" label", s.name)));
        }
    }
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

/// The entry of `groups` for `name` and `labels`, made with `new` (and a key) if there is none:
/// a histogram's or summary's samples are looked up by text, one key made per group.
fn group<'a, 'g>(
    groups: &'g mut BTreeMap<SeriesKey, LatencyObs>,
    keys: &mut Keys,
    name: &str,
    labels: impl Iterator<Item = (&'a str, &'a str)> + Clone,
    new: impl FnOnce() -> LatencyObs,
) -> &'g mut LatencyObs {
    if !groups.contains_key(keys.text(name, labels)) {
        groups.insert(keys.made(), new());
    }
    groups.get_mut(keys.buf.as_str()).expect("inserted")
}

/// Adds a histogram family's samples to `groups` (one entry per label set without `le`).
fn histogram_family(
    groups: &mut BTreeMap<SeriesKey, LatencyObs>,
    keys: &mut Keys,
    fam: &scrape::MetricFamily,
    measure: Measure,
) {
    for s in &fam.samples {
        let labels = s.labels.iter().filter(|(k, _)| k != "le").map(|(k, v)| (k.as_str(), v.as_str()));
        let obs = group(groups, keys, &fam.name, labels, || LatencyObs {
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
}

/// Adds a summary family's samples to `groups` (one entry per label set without `quantile`).
fn summary_family(
    groups: &mut BTreeMap<SeriesKey, LatencyObs>,
    keys: &mut Keys,
    fam: &scrape::MetricFamily,
    measure: Measure,
) {
    for s in &fam.samples {
        let labels = s.labels.iter().filter(|(k, _)| k != "quantile").map(|(k, v)| (k.as_str(), v.as_str()));
        let obs = group(groups, keys, &fam.name, labels, || LatencyObs {
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
}

fn parse_le(le: &str) -> Option<f64> {
    match le {
        "+Inf" | "Inf" | "+inf" | "inf" => Some(f64::INFINITY),
        v => v.parse().ok(),
    }
}

/// shardmetrics exports an operation `x` as `x_duration_seconds` (histogram),
/// `x_calls_total` and `x_errors_total`: fold the three back into one operation row.
fn recognise_operations(out: &mut Scrape, keys: &mut Keys) {
    // (index of the histogram, the operation's key, calls, errors)
    let mut found = Vec::new();
    for (i, (key, obs)) in out.latencies.0.iter().enumerate() {
        let Some(base) = key.name().strip_suffix("_duration_seconds") else { continue };
        if obs.kind != LatencyKind::Histogram {
            continue;
        }
        let Some(calls) = out.counters.get(keys.renamed_text(key, &format!("{base}_calls_total"))).map(|c| c.total)
        else {
            continue;
        };
        let errors = out.counters.get(keys.renamed_text(key, &format!("{base}_errors_total"))).map(|c| c.total);
        found.push((i, keys.renamed(key, base), calls, errors));
    }
    if !found.is_empty() {
        let mut found = found.into_iter().peekable();
        let (mut kept, mut ops) = (Vec::with_capacity(out.latencies.len()), Vec::new());
        for (i, (key, mut obs)) in std::mem::take(&mut out.latencies.0).into_iter().enumerate() {
            match found.next_if(|f| f.0 == i) {
                Some((_, op, calls, errors)) => {
                    (obs.kind, obs.count, obs.errors) = (LatencyKind::Operation, calls, errors);
                    ops.push((op, obs));
                }
                None => kept.push((key, obs)),
            }
        }
        // Pushed last, an operation replaces any other series of its name.
        kept.extend(ops);
        out.latencies.0 = kept;
    }
    out.latencies.seal();
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every kind of family, blank lines and comments, labels with escapes and multi-byte
    /// characters, and samples of a histogram and a summary after other families.
    const RICH: &str = "# HELP req_total Requests.\n# TYPE req_total counter\n\
        req_total{route=\"/a\",code=\"200\"} 10\nreq_total{route=\"/ü/日本\",code=\"5\\\"00\"} 3\n\n\
        # a free comment\n# TYPE temp_celsius gauge\ntemp_celsius{zone=\"a b\"} 21.5\n\
        # TYPE lat_seconds histogram\n# HELP lat_seconds Latency.\n\
        lat_seconds_bucket{op=\"get\",le=\"0.1\"} 4\nlat_seconds_bucket{op=\"get\",le=\"1\"} 9\n\
        lat_seconds_bucket{op=\"get\",le=\"+Inf\"} 10\nlat_seconds_sum{op=\"get\"} 2\n\
        lat_seconds_bucket{op=\"put\",le=\"0.1\"} 1\nlat_seconds_bucket{op=\"put\",le=\"+Inf\"} 2\n\
        # TYPE rpc_seconds summary\nrpc_seconds{quantile=\"0.5\"} 0.2\nrpc_seconds{quantile=\"0.99\"} 0.9\n\
        rpc_seconds_sum 5\nuntyped_total 7\nloose 1 1700000000000\n\
        lat_seconds_count{op=\"get\"} 10\nlat_seconds_count{op=\"put\"} 2\nrpc_seconds_count 12\n\
        # TYPE db_calls_total counter\ndb_calls_total 20\n# TYPE db_duration_seconds histogram\n\
        db_duration_seconds_bucket{le=\"0.01\"} 20\ndb_duration_seconds_bucket{le=\"+Inf\"} 20\n\
        db_duration_seconds_count 20\nlast_gauge 3";

    /// The whole body parsed at once, as before slices: what slicing must not change.
    fn whole(body: &str) -> Result<Scrape, String> {
        let families = scrape::parse_prometheus(body).map_err(|e| e.to_string())?;
        let mut keys = Keys::default();
        let mut b = TextBuilder::new(scrape::Format::Prometheus, &mut keys);
        families.iter().for_each(|f| b.add(f));
        Ok(b.finish(body.len()))
    }

    /// A reader giving 1 to 3 bytes at a time: lines and characters cut anywhere.
    struct Trickle<'a>(&'a [u8], usize);

    impl Read for Trickle<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            self.1 = self.1 % 3 + 1;
            let n = self.1.min(buf.len()).min(self.0.len());
            buf[..n].copy_from_slice(&self.0[..n]);
            self.0 = &self.0[n..];
            Ok(n)
        }
    }

    fn sliced(body: &str, chunk: usize) -> Result<Scrape, String> {
        let text = Scrape::from_text_in(body, scrape::Format::Prometheus, chunk);
        let read = Scrape::read_in(
            &mut Trickle(body.as_bytes(), 0),
            Some("text/plain; version=0.0.4"),
            chunk,
            &mut Keys::default(),
        )
        .map_err(|e| match e {
            ReadError::Invalid(e) => e,
            ReadError::Io(e) => e.to_string(),
        });
        assert_eq!(text, read, "chunk {chunk}: a string and a reader give the same");
        text
    }

    #[test]
    fn slices_change_nothing() {
        let reference = whole(RICH).unwrap();
        assert!(reference.latencies.len() == 4 && reference.counters.len() == 4, "{reference:#?}");
        let db = &reference.latencies[&SeriesKey::new("db", [])];
        assert_eq!((db.kind, db.count), (LatencyKind::Operation, 20.0));
        let put = &reference.latencies[&SeriesKey::new("lat_seconds", [("op".to_owned(), "put".to_owned())])];
        assert_eq!((put.count, put.buckets.len()), (2.0, 2));
        for chunk in [1, 2, 3, 5, 8, 13, 40, 100, 333, 1 << 20] {
            assert_eq!(sliced(RICH, chunk).unwrap(), reference, "chunk {chunk}");
            let ended = format!("{RICH}\n");
            assert_eq!(sliced(&ended, chunk).unwrap().counters, reference.counters, "chunk {chunk}");
        }
        // Families counted once however many pieces they come in.
        let mut names = std::collections::BTreeSet::new();
        for_each_family_in(RICH, scrape::Format::Prometheus, 1, |f| {
            names.insert(f.name.clone());
        })
        .unwrap();
        let whole_names: std::collections::BTreeSet<String> =
            scrape::parse_prometheus(RICH).unwrap().into_iter().map(|f| f.name).collect();
        assert_eq!(names, whole_names);
    }

    #[test]
    fn slices_reject_what_the_whole_body_rejects() {
        for (bad, line) in [
            // Across slices: a second TYPE, a TYPE after samples, a second HELP.
            ("# TYPE a counter\na_total 1\nb 2\n# TYPE a counter\n", 4),
            ("a 1\nb 2\n# TYPE a gauge\n", 3),
            ("# HELP a x\na 1\nb 2\n# HELP a y\n", 4),
            // A bucket without `le`, far from its TYPE line.
            ("# TYPE h histogram\nh_bucket{le=\"1\"} 1\nx 1\ny 2\nh_bucket{a=\"b\"} 1\n", 5),
            // A summary quantile without `quantile`, after other families.
            ("# TYPE s summary\ns{quantile=\"0.5\"} 1\nx 1\ns{a=\"b\"} 1\n", 4),
            ("a 1\nb 2\nc 3\nd{ 4\n", 4),
        ] {
            let e = whole(bad).unwrap_err();
            assert!(e.starts_with(&format!("line {line}:")), "{bad:?}: {e}");
            for chunk in [1, 2, 5, 9, 1 << 20] {
                let s = sliced(bad, chunk).unwrap_err();
                assert!(s.contains(&format!("line {line}:")), "{bad:?} chunk {chunk}: {s} (whole: {e})");
            }
        }
        let e = Scrape::read_in(&mut &b"a 1\nb\xff 2\n"[..], None, 1, &mut Keys::default()).unwrap_err();
        assert!(matches!(&e, ReadError::Invalid(m) if m.contains("not UTF-8") && m.contains("line 2")), "{e:?}");
    }

    #[test]
    fn keys_are_shared_from_scrape_to_scrape() {
        let read = |body: &str, keys: &mut Keys| Scrape::read_keyed(&mut body.as_bytes(), None, keys).unwrap();
        let mut keys = Keys::shared();
        let first = read(RICH, &mut keys);
        let again = read(RICH, &mut keys);
        assert_eq!(first, again);
        let shared = |a: Vec<&SeriesKey>, b: Vec<&SeriesKey>| a.iter().zip(&b).all(|(a, b)| Arc::ptr_eq(&a.0, &b.0));
        assert!(shared(first.counters.keys().collect(), again.counters.keys().collect()));
        assert!(shared(first.gauges.keys().collect(), again.gauges.keys().collect()));
        assert!(shared(first.latencies.keys().collect(), again.latencies.keys().collect()), "groups, operations");
        // A series that went away is forgotten: it comes back as a new key.
        let without = read("# TYPE req_total counter\nreq_total{route=\"/a\",code=\"200\"} 11\n", &mut keys);
        assert_eq!(without.counters.len(), 1);
        let back = read(RICH, &mut keys);
        let fresh = back.counters.keys().zip(first.counters.keys()).filter(|(a, b)| !Arc::ptr_eq(&a.0, &b.0)).count();
        assert_eq!(fresh, first.counters.len() - 1);
        // A one-off read keeps nothing.
        let mut once = Keys::default();
        read(RICH, &mut once);
        assert!(once.known.is_empty());
    }

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
        // Ordered as (name, labels) is; a NUL cannot split a label.
        let key = |n: &str, l: &[(&str, &str)]| SeriesKey::from_parts(n, l.iter().copied());
        let sorted =
            [key("a", &[]), key("a", &[("b", "")]), key("a", &[("b", "c")]), key("a", &[("bb", "")]), key("ab", &[])];
        assert!(sorted.windows(2).all(|w| w[0] < w[1]), "{sorted:?}");
        let nul = key("a", &[("x", "1\u{0}y\u{0}2")]);
        assert_eq!((nul.label("x"), nul.label("y"), nul.labels().count()), (Some("1\u{FFFD}y\u{FFFD}2"), None, 1));
        assert_eq!(nul.renamed("b").to_string(), "b{x=\"1\u{FFFD}y\u{FFFD}2\"}");
    }
}
