//! The bodies of the cargo-fuzz targets, as plain functions of `&[u8]`.
//!
//! One job over ~600 lines: the fuzz target bodies and the naive models they compare against.
//!
//! `fuzz_targets/*.rs` call them under libFuzzer (`cargo +nightly fuzz run <target>`);
//! `tests/corpus.rs` replays every file of `corpus/<target>/` through them on stable, so the
//! corpus (edge cases and minimised crashes) is a regression suite in every
//! `cargo test --workspace`; [`replay_args`] lets a plain build of a target binary replay files.
//!
//! Every target that records runs its body on a fresh thread: a thread keeps a shard of every
//! registry it ever recorded into until it exits (see the report in `fuzz/README.md`), so
//! recording into one short-lived registry per input on the fuzzer's own thread would grow
//! without bound.
//!
//! | target | property |
//! |---|---|
//! | [`names`] | arbitrary metric/label names and values: never a panic; a name is accepted only if valid; whatever is accepted renders to Prometheus text and OpenMetrics that the strict parser accepts, with every series' label values intact |
//! | [`exposition`] | label values, HELP and gauge values (NaN, ±Inf, subnormals, −0) survive render → parse in both text formats |
//! | [`histogram`] | record/flush/snapshot ops against a sorted-`Vec` model: bucket placement, counts, sum, min, max, quantile error bound, deltas, classic `le` buckets |
//! | [`json`] | the JSON render parses back with serde_json to the same numbers |
//! | [`scrape()`] | both parsers on arbitrary bytes: never a panic; OpenMetrics acceptance implies Prometheus-compatible structure |

#![forbid(unsafe_code)]

use std::{collections::BTreeMap, path::PathBuf};

use shardmetrics::{
    __private as buckets,
    export::{openmetrics, prometheus},
    scrape::{self, Format, MetricFamily, Sample},
    series::Value,
    Kind, Registry, Snapshot, Unit,
};

/// Reads structured choices from fuzzer bytes; reads past the end give zeros.
pub struct Input<'a> {
    data: &'a [u8],
}

/// Characters a string byte ≥ 0x80 maps to: the escaping-relevant and unusual ones.
const SPECIAL_CHARS: &[char] = &[
    '"',
    '\\',
    '\n',
    '\r',
    '\t',
    '\0',
    ' ',
    '#',
    '{',
    '}',
    '=',
    ',',
    'é',
    '☃',
    '😀',
    '\u{2028}',
    '\u{feff}',
    '\u{7f}',
    '\u{10ffff}',
    'ß',
    '_',
    ':',
    'e',
    'E',
    '+',
    '-',
    '.',
    'n',
    'N',
];

impl<'a> Input<'a> {
    pub fn new(data: &'a [u8]) -> Self {
        Input { data }
    }

    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    pub fn byte(&mut self) -> u8 {
        match self.data.split_first() {
            Some((&b, rest)) => {
                self.data = rest;
                b
            }
            None => 0,
        }
    }

    pub fn u64(&mut self) -> u64 {
        let mut b = [0u8; 8];
        let n = self.data.len().min(8);
        b[..n].copy_from_slice(&self.data[..n]);
        self.data = &self.data[n..];
        u64::from_le_bytes(b)
    }

    /// A string of up to `max` chars: bytes < 0x80 are themselves, others pick from
    /// `SPECIAL_CHARS`.
    pub fn string(&mut self, max: usize) -> String {
        let n = usize::from(self.byte()) % (max + 1);
        (0..n)
            .map(|_| {
                let b = self.byte();
                if b < 0x80 {
                    char::from(b)
                } else {
                    SPECIAL_CHARS[usize::from(b - 0x80) % SPECIAL_CHARS.len()]
                }
            })
            .collect()
    }

    /// An `f64`, often an edge case.
    pub fn f64(&mut self) -> f64 {
        match self.byte() % 16 {
            0 => f64::NAN,
            1 => f64::INFINITY,
            2 => f64::NEG_INFINITY,
            3 => f64::from_bits(1),                      // smallest subnormal
            4 => -f64::from_bits(0x000f_ffff_ffff_ffff), // largest negative subnormal
            5 => -0.0,
            6 => f64::MAX,
            7 => f64::MIN_POSITIVE,
            8 => f64::EPSILON,
            9 => 1e15, // where write_f64 switches from integer to ryu formatting
            10 => -(2f64.powi(53)) - 2.0,
            11 => f64::from(self.byte()) / 8.0,
            _ => f64::from_bits(self.u64()),
        }
    }

    /// A `u64`, often at a bucket boundary: 0, 2^k - 1, 2^k, 2^k + 1, `u64::MAX`.
    pub fn value(&mut self) -> u64 {
        match self.byte() % 8 {
            0 => 0,
            1 => u64::MAX,
            2..=4 => {
                let k = self.byte() % 64;
                let v = 1u64 << k;
                match self.byte() % 3 {
                    0 => v - 1,
                    1 => v,
                    _ => v.saturating_add(1),
                }
            }
            5 => u64::from(self.byte()),
            6 => self.u64() >> (self.byte() % 64),
            _ => self.u64(),
        }
    }
}

/// Runs `f` on a new thread (so every shard it binds is released when it ends) and re-raises
/// its panic on the calling thread.
fn isolated(f: impl FnOnce() + Send) {
    std::thread::scope(|s| {
        if let Err(panic) = s.spawn(f).join() {
            std::panic::resume_unwind(panic);
        }
    });
}

/// Sorted `(name, value)` label pairs.
type LabelSet = Vec<(String, String)>;
/// A series: sample name and sorted labels.
type SeriesKey = (String, LabelSet);
/// A classic histogram point: `(le, cumulative count)` buckets and `_count`.
type Point = (Vec<(f64, f64)>, Option<f64>);

fn same_f64(a: f64, b: f64) -> bool {
    a == b || (a.is_nan() && b.is_nan())
}

fn sorted(labels: &[(String, String)]) -> Vec<(String, String)> {
    let mut l = labels.to_vec();
    l.sort();
    l
}

/// Samples keyed by (sample name, sorted labels); panics on a duplicate series.
fn index(families: &[MetricFamily]) -> BTreeMap<SeriesKey, &Sample> {
    let mut map = BTreeMap::new();
    for f in families {
        for s in &f.samples {
            let key = (s.name.clone(), sorted(&s.labels));
            assert!(map.insert(key, s).is_none(), "duplicate series {} {:?}", s.name, s.labels);
        }
    }
    map
}

/// Structural checks every render must pass, on top of the strict parser's: classic histograms
/// with `le` strictly increasing and ending in `+Inf`, cumulative counts non-decreasing,
/// `_count` equal to the `+Inf` bucket (and present, if `require_count`). Samples with
/// timestamps are skipped (one series may then hold several points).
pub fn check_histogram_invariants(families: &[MetricFamily], require_count: bool) {
    for f in families.iter().filter(|f| f.kind == scrape::MetricType::Histogram) {
        let mut points: BTreeMap<LabelSet, Point> = BTreeMap::new();
        for s in f.samples.iter().filter(|s| s.timestamp.is_none()) {
            let mut key: Vec<(String, String)> = s.labels.iter().filter(|(k, _)| k != "le").cloned().collect();
            key.sort();
            let entry = points.entry(key).or_default();
            if s.name.ends_with("_bucket") {
                let le = s.label("le").expect("bucket has le");
                let le = if le == "+Inf" { f64::INFINITY } else { le.parse().expect("le is a number") };
                entry.0.push((le, s.value));
            } else if s.name.ends_with("_count") {
                entry.1 = Some(s.value);
            }
        }
        for (labels, (buckets, count)) in points {
            assert!(!buckets.is_empty(), "{} {labels:?}: no buckets", f.name);
            assert!(buckets.windows(2).all(|w| w[0].0 < w[1].0), "{} {labels:?}: le not increasing", f.name);
            assert!(buckets.windows(2).all(|w| w[0].1 <= w[1].1), "{} {labels:?}: counts decrease", f.name);
            let last = buckets.last().expect("non-empty");
            assert_eq!(last.0, f64::INFINITY, "{} {labels:?}: last bucket is not +Inf", f.name);
            assert!(count.is_some() || !require_count, "{} {labels:?}: no _count", f.name);
            assert!(count.iter().all(|&c| c == last.1), "{} {labels:?}: _count != +Inf bucket", f.name);
        }
    }
}

/// Parses both renders of `snap` strictly and checks their structure; returns the families.
pub fn render_and_parse(snap: &Snapshot) -> (Vec<MetricFamily>, Vec<MetricFamily>) {
    let prom_text = prometheus::render(snap);
    let om_text = openmetrics::render(snap);
    let prom = scrape::parse_prometheus(&prom_text)
        .unwrap_or_else(|e| panic!("Prometheus render rejected: {e}\n---\n{prom_text}"));
    let om = scrape::parse_openmetrics(&om_text)
        .unwrap_or_else(|e| panic!("OpenMetrics render rejected: {e}\n---\n{om_text}"));
    index(&prom);
    index(&om);
    check_histogram_invariants(&prom, true);
    check_histogram_invariants(&om, true);
    (prom, om)
}

/// The sample names a series is exported under in each format: (Prometheus, OpenMetrics).
fn exported_sample(series: &shardmetrics::series::Series<'_>) -> (String, String) {
    let info = series.family();
    let (p, o) = (prometheus::exported_name(info), openmetrics::sample_name(info));
    match info.kind() {
        Kind::Histogram => (p + "_count", o + "_count"),
        _ => (p, o),
    }
}

fn is_metric_name(s: &str) -> bool {
    let mut c = s.chars();
    matches!(c.next(), Some(c) if c.is_ascii_alphabetic() || c == '_' || c == ':')
        && c.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

fn is_label_name(s: &str) -> bool {
    let mut c = s.chars();
    matches!(c.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && c.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !s.starts_with("__")
}

/// (a) Arbitrary metric names, label names, label values and help texts.
pub fn names(data: &[u8]) {
    isolated(|| names_body(data));
}

fn names_body(data: &[u8]) {
    let registry = Registry::builder().manual().build();
    let mut input = Input::new(data);
    let mut registered = 0;
    while !input.is_empty() && registered < 16 {
        let kind = input.byte() % 3;
        let name = input.string(12);
        let help = input.string(8);
        let unit = [Unit::None, Unit::Nanoseconds, Unit::Seconds, Unit::Bytes][usize::from(input.byte() % 4)];
        let family = input.byte().is_multiple_of(2);
        let n_labels = usize::from(input.byte() % 3);
        let labels: Vec<(String, String)> = (0..n_labels).map(|_| (input.string(6), input.string(8))).collect();
        let names_ok = is_metric_name(&name) && labels.iter().all(|(k, _)| is_label_name(k));
        let result = if family {
            let label_names: Vec<&str> = labels.iter().map(|(k, _)| k.as_str()).collect();
            let values: Vec<&str> = labels.iter().map(|(_, v)| v.as_str()).collect();
            match kind {
                0 => registry.counter(&name).help(&help).unit(unit).family(&label_names).map(|f| f.with(&values).inc()),
                1 => {
                    registry.gauge(&name).help(&help).unit(unit).family(&label_names).map(|f| f.with(&values).set(1.5))
                }
                _ => registry
                    .histogram(&name)
                    .help(&help)
                    .unit(unit)
                    .family(&label_names)
                    .map(|f| f.with(&values).record(7)),
            }
        } else {
            macro_rules! build {
                ($b:expr, $use:expr) => {{
                    let mut b = $b.help(&help).unit(unit);
                    for (k, v) in &labels {
                        b = b.label(k, v);
                    }
                    b.build().map($use)
                }};
            }
            match kind {
                0 => build!(registry.counter(&name), |c| c.inc()),
                1 => build!(registry.gauge(&name), |g| g.set(1.5)),
                _ => build!(registry.histogram(&name), |h| h.record(7)),
            }
        };
        match result {
            Ok(()) => {
                assert!(names_ok, "accepted invalid names: {name:?} {labels:?}");
                registered += 1;
            }
            Err(e) => {
                // Invalid names are always rejected; valid ones may clash with earlier ones.
                let msg = e.to_string();
                assert!(!msg.is_empty());
            }
        }
    }
    let snap = registry.flush();
    let (prom, om) = render_and_parse(&snap);
    let (prom, om) = (index(&prom), index(&om));
    for s in snap.series() {
        let (p, o) = exported_sample(&s);
        let labels: Vec<(String, String)> = s.labels().iter().map(|(k, v)| (k.to_owned(), v.to_owned())).collect();
        assert!(prom.contains_key(&(p.clone(), labels.clone())), "{p} {labels:?} missing from the Prometheus render");
        assert!(om.contains_key(&(o.clone(), labels.clone())), "{o} {labels:?} missing from the OpenMetrics render");
    }
}

/// (b) Label values, HELP text and gauge values round trip through both text formats.
pub fn exposition(data: &[u8]) {
    isolated(|| exposition_body(data));
}

fn exposition_body(data: &[u8]) {
    let registry = Registry::builder().manual().build();
    let mut input = Input::new(data);
    let help = input.string(24);
    let counters = registry.counter("fz_requests_total").help(&help).family(&["a", "b"]).expect("valid family");
    let gauges = registry.gauge("fz_level").help(&help).family(&["a"]).expect("valid family");
    let hists =
        registry.histogram("fz_latency").unit(Unit::Nanoseconds).help(&help).family(&["a"]).expect("valid family");
    let mut counter_model: BTreeMap<Vec<(String, String)>, u64> = BTreeMap::new();
    let mut gauge_model: BTreeMap<Vec<(String, String)>, f64> = BTreeMap::new();
    let mut hist_model: BTreeMap<Vec<(String, String)>, (u64, u64)> = BTreeMap::new();
    let mut ops = 0;
    while !input.is_empty() && ops < 64 {
        ops += 1;
        let a = input.string(10);
        match input.byte() % 3 {
            0 => {
                let b = input.string(6);
                let n = u64::from(input.byte());
                counters.with(&[&a, &b]).add(n);
                let key = sorted(&[("a".into(), a), ("b".into(), b)]);
                let e = counter_model.entry(key).or_insert(0);
                *e = e.wrapping_add(n);
            }
            1 => {
                let v = input.f64();
                gauges.with(&[&a]).set(v);
                let e = gauge_model.entry(vec![("a".into(), a)]).or_insert(0.0);
                if !v.is_nan() {
                    *e = v; // NaN is rejected and counted; the gauge keeps its value
                }
            }
            _ => {
                let v = input.value();
                hists.with(&[&a]).record(v);
                let e = hist_model.entry(vec![("a".into(), a)]).or_insert((0, 0));
                *e = (e.0 + 1, e.1.saturating_add(v));
            }
        }
    }
    let snap = registry.flush();
    let (prom, om) = render_and_parse(&snap);
    for (format, families) in [("Prometheus", &prom), ("OpenMetrics", &om)] {
        let samples = index(families);
        let value = |name: &str, labels: &Vec<(String, String)>| {
            samples
                .get(&(name.to_owned(), labels.clone()))
                .unwrap_or_else(|| panic!("{format}: {name} {labels:?} missing"))
                .value
        };
        for (labels, n) in &counter_model {
            assert_eq!(value("fz_requests_total", labels), *n as f64, "{format}: counter {labels:?}");
        }
        for (labels, v) in &gauge_model {
            let got = value("fz_level", labels);
            assert!(same_f64(got, *v), "{format}: gauge {labels:?}: {got:?} != {v:?}");
            assert!(got.to_bits() == v.to_bits() || *v == 0.0 || v.is_nan(), "{format}: gauge {labels:?} bits");
        }
        for (labels, (count, sum)) in &hist_model {
            assert_eq!(value("fz_latency_seconds_count", labels), *count as f64, "{format}: histogram {labels:?}");
            let mut inf = labels.clone();
            inf.push(("le".into(), "+Inf".into()));
            inf.sort();
            assert_eq!(value("fz_latency_seconds_bucket", &inf), *count as f64, "{format}: +Inf {labels:?}");
            let got_sum = value("fz_latency_seconds_sum", labels);
            assert_eq!(got_sum, *sum as f64 / 1e9, "{format}: _sum {labels:?}");
        }
        let series_count = counter_model.len() + gauge_model.len() + hist_model.len();
        let ours: usize = families.iter().filter(|f| f.name.starts_with("fz_")).map(|f| f.samples.len()).sum();
        let hist_samples_per_series = prometheus::DEFAULT_TIME_BUCKETS.len() + 3;
        assert_eq!(
            ours,
            counter_model.len() + gauge_model.len() + hist_model.len() * hist_samples_per_series,
            "{format}: {series_count} series expected"
        );
        for f in families.iter().filter(|f| f.name.starts_with("fz_") && !f.samples.is_empty()) {
            let got = f.help.as_deref().unwrap_or("");
            // Prometheus 0.0.4 cannot carry leading blanks in HELP (parsers skip them).
            let want = if format == "Prometheus" { help.trim_start_matches([' ', '\t']) } else { help.as_str() };
            assert_eq!(got, want, "{format}: HELP of {}", f.name);
        }
    }
}

/// (c) Histogram ops against a naive model.
pub fn histogram(data: &[u8]) {
    isolated(|| histogram_body(data));
}

fn histogram_body(data: &[u8]) {
    let mut input = Input::new(data);
    let p = buckets::MIN_PRECISION + input.byte() % (buckets::MAX_PRECISION - buckets::MIN_PRECISION + 1);
    let registry = Registry::builder().manual().build();
    let h = registry.histogram("fz_hist").precision(p).build().expect("valid histogram");
    let mut model: Vec<u64> = Vec::new();
    let mut at_last_flush = 0usize;
    let mut last_seq = 0;
    let mut ops = 0;
    while !input.is_empty() && ops < 256 {
        ops += 1;
        match input.byte() % 8 {
            0 => {
                let snap = registry.flush();
                assert!(snap.seq() > last_seq, "seq goes up");
                last_seq = snap.seq();
                check_histogram(&snap, &model, p, model.len() - at_last_flush);
                at_last_flush = model.len();
            }
            1 => {
                // The latest published snapshot is the last flush's.
                let snap = registry.snapshot();
                assert_eq!(snap.seq(), last_seq);
                if last_seq > 0 {
                    check_histogram(&snap, &model[..at_last_flush], p, usize::MAX);
                }
            }
            _ => {
                let v = input.value();
                let i = buckets::index(v, p);
                assert!(i < buckets::bucket_count(p), "index {i} out of range for {v} p={p}");
                assert!(buckets::lowest(i, p) <= v && v <= buckets::highest(i, p), "{v} outside bucket {i} p={p}");
                if v > 0 {
                    assert!(buckets::index(v - 1, p) <= i, "index not monotonic at {v}");
                }
                if v < u64::MAX {
                    assert!(buckets::index(v + 1, p) >= i, "index not monotonic at {v}");
                }
                h.record(v);
                model.push(v);
            }
        }
    }
    let snap = registry.flush();
    check_histogram(&snap, &model, p, model.len() - at_last_flush);
    render_and_parse(&snap);
}

/// Compares the snapshot's histogram with the model values (`delta` unchecked when `usize::MAX`).
fn check_histogram(snap: &Snapshot, model: &[u64], p: u8, delta: usize) {
    let h = snap.histogram("fz_hist", &[]).expect("histogram in snapshot");
    let mut sorted = model.to_vec();
    sorted.sort_unstable();
    assert_eq!(h.count(), sorted.len() as u64, "count");
    assert_eq!(h.sum(), sorted.iter().fold(0u64, |s, &v| s.saturating_add(v)), "saturating sum");
    assert_eq!(h.min(), sorted.first().copied(), "min");
    assert_eq!(h.max(), sorted.last().copied(), "max");
    if delta != usize::MAX {
        assert_eq!(h.delta_count(), delta as u64, "delta_count");
    }
    // Buckets: ascending, each one the model's count for that index, with the right bounds.
    let mut expected: BTreeMap<usize, u64> = BTreeMap::new();
    for &v in &sorted {
        *expected.entry(buckets::index(v, p)).or_default() += 1;
    }
    let got: Vec<_> = h.buckets().collect();
    assert_eq!(got.len(), expected.len(), "number of non-empty buckets");
    for (b, (&i, &n)) in got.iter().zip(&expected) {
        assert_eq!((b.low, b.high, b.count), (buckets::lowest(i, p), buckets::highest(i, p), n), "bucket {i}");
    }
    assert_eq!(got.iter().map(|b| b.count).sum::<u64>(), h.count(), "count == Σ buckets");
    // Quantiles: within (γ-1)/(γ+1) (γ = 2^(2^-p)) plus half a unit of the exact order
    // statistic, and within [min, max].
    for q in [0.0, 0.001, 0.25, 0.5, 0.9, 0.99, 0.999, 1.0] {
        match (h.quantile(q), sorted.is_empty()) {
            (None, true) => {}
            (Some(got), false) => {
                let n = sorted.len();
                let rank = ((q * n as f64).ceil() as usize).clamp(1, n);
                let exact = sorted[rank - 1];
                let err = got.abs_diff(exact) as f64;
                let bound = buckets::relative_error(p) * exact as f64 + 0.5;
                assert!(err <= bound * (1.0 + 1e-12), "q={q}: {got} vs exact {exact} (p={p})");
                assert!(h.min().unwrap() <= got && got <= h.max().unwrap(), "q={q}: {got} outside [min, max]");
            }
            (got, empty) => panic!("q={q}: quantile {got:?} with empty={empty}"),
        }
    }
    assert_eq!(h.quantile(f64::NAN), None);
    // Classic buckets: monotonic in the bound, complete at max.
    let mut prev = 0;
    for bound in [0.0, 1.0, 2.0, 31.0, 32.0, 33.0, 1e3, 1e6, 1e9, 1e12, 1e15, 1e18, 1.8e19, f64::INFINITY] {
        let c = h.count_le(bound);
        assert!(c >= prev && c <= h.count(), "count_le({bound}) = {c}");
        prev = c;
    }
    assert_eq!(h.count_le(f64::INFINITY), h.count());
}

/// (d) The JSON render parses back to the same numbers.
pub fn json(data: &[u8]) {
    isolated(|| json_body(data));
}

fn json_body(data: &[u8]) {
    let registry = Registry::builder().manual().build();
    let mut input = Input::new(data);
    let counters = registry.counter("fz_c_total").family(&["k"]).expect("valid");
    let gauges = registry.gauge("fz_g").family(&["k"]).expect("valid");
    let hists = registry.histogram("fz_h").family(&["k"]).expect("valid");
    let mut ops = 0;
    while !input.is_empty() && ops < 64 {
        ops += 1;
        let k = input.string(8);
        match input.byte() % 3 {
            0 => counters.with(&[&k]).add(input.value()),
            1 => gauges.with(&[&k]).set(input.f64()),
            _ => hists.with(&[&k]).record(input.value()),
        }
    }
    let snap = registry.flush();
    let text = shardmetrics::export::json::render(&snap);
    let doc: serde_json::Value = serde_json::from_str(&text).expect("JSON render is JSON");
    let series = doc["series"].as_array().expect("series array");
    assert_eq!(series.len(), snap.series().len());
    let f64_of = |v: &serde_json::Value| -> f64 {
        match v {
            serde_json::Value::String(s) if s == "NaN" => f64::NAN,
            serde_json::Value::String(s) if s == "+Inf" => f64::INFINITY,
            serde_json::Value::String(s) if s == "-Inf" => f64::NEG_INFINITY,
            v => v.as_f64().unwrap_or_else(|| panic!("not a number: {v}")),
        }
    };
    let u64_or_null = |v: &serde_json::Value| if v.is_null() { None } else { Some(v.as_u64().expect("u64")) };
    for (j, s) in series.iter().zip(snap.series()) {
        assert_eq!(j["name"], s.name());
        let labels: BTreeMap<&str, &str> = s.labels().iter().collect();
        let jl: BTreeMap<&str, &str> =
            j["labels"].as_object().expect("labels").iter().map(|(k, v)| (k.as_str(), v.as_str().unwrap())).collect();
        assert_eq!(jl, labels);
        match s.value() {
            Value::Counter(c) => {
                assert_eq!(j["value"].as_u64(), Some(c.total));
                assert_eq!(j["delta"].as_u64(), Some(c.delta));
                assert!(same_f64(f64_of(&j["rate"]), c.rate));
            }
            Value::Gauge(g) => {
                let got = f64_of(&j["value"]);
                assert!(same_f64(got, g), "gauge {labels:?}: {got:?} != {g:?}");
                assert!(got.to_bits() == g.to_bits() || g == 0.0, "gauge {labels:?}: {got:?} != {g:?} (bits)");
            }
            Value::Histogram(h) => {
                assert_eq!(j["count"].as_u64(), Some(h.count()));
                assert_eq!(j["sum"].as_u64(), Some(h.sum()));
                assert_eq!(u64_or_null(&j["min"]), h.min());
                assert_eq!(u64_or_null(&j["max"]), h.max());
                match h.mean() {
                    Some(m) => assert!(same_f64(f64_of(&j["mean"]), m)),
                    None => assert!(j["mean"].is_null()),
                }
                for (key, q) in shardmetrics::export::json::QUANTILES {
                    assert_eq!(u64_or_null(&j[*key]), h.quantile(*q), "{key}");
                }
            }
        }
    }
}

/// (e) The scrape parsers on arbitrary bytes.
pub fn scrape(data: &[u8]) {
    let om = scrape::parse_bytes(data, Format::OpenMetrics);
    let prom = scrape::parse_bytes(data, Format::Prometheus);
    if let Ok(families) = &om {
        for f in families {
            for s in &f.samples {
                assert!(s.name.starts_with(&f.name), "{} outside family {}", s.name, f.name);
                assert!(s.timestamp.iter().all(|t| t.is_finite()));
            }
        }
        check_histogram_invariants(families, false);
    }
    if let Ok(families) = &prom {
        let samples: usize = families.iter().map(|f| f.samples.len()).sum();
        assert!(samples <= data.iter().filter(|&&b| b == b'\n').count() + 1);
    }
}

/// `main` of a target binary built without libFuzzer: runs `body` on every file named on the
/// command line (directories: every file in them, sorted), reporting which one panics.
pub fn replay_args(body: fn(&[u8])) {
    let mut files = Vec::new();
    for arg in std::env::args_os().skip(1) {
        let path = PathBuf::from(arg);
        match std::fs::read_dir(&path) {
            Ok(entries) => {
                let mut inside: Vec<PathBuf> =
                    entries.filter_map(|e| e.ok().map(|e| e.path())).filter(|p| p.is_file()).collect();
                inside.sort();
                files.extend(inside);
            }
            Err(_) => files.push(path),
        }
    }
    if files.is_empty() {
        eprintln!("usage: <target> FILE_OR_DIR... (replays inputs; `cargo +nightly fuzz run <target>` fuzzes)");
        std::process::exit(2);
    }
    for file in &files {
        let data = std::fs::read(file).unwrap_or_else(|e| panic!("cannot read {}: {e}", file.display()));
        eprintln!("replaying {} ({} bytes)", file.display(), data.len());
        body(&data);
    }
    eprintln!("{} inputs replayed, no failure", files.len());
}
