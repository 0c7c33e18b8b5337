//! A parser for the Prometheus text format 0.0.4 and the OpenMetrics 1.0 text format: turns a
//! scraped exposition into [`MetricFamily`]s of [`Sample`]s.
//!
//! One job over ~1,000 lines: the two text grammars share one tokenizer and one sample model,
//! and splitting the strict OpenMetrics rules from the lenient 0.0.4 ones would duplicate both.
//!
//! * [`parse_openmetrics`] is **strict**: it accepts exactly what the OpenMetrics 1.0 ABNF and
//!   its semantic rules allow (`# EOF` last, no blank lines, metadata before samples, no clashing
//!   or interleaved families, counter-like values neither negative nor NaN, histograms with
//!   ordered buckets ending in `le="+Inf"` equal to `_count`, exemplars only on `_total` and
//!   `_bucket`, …). It is tested against the OpenMetrics project's parser conformance cases.
//! * [`parse_prometheus`] follows the Prometheus text format 0.0.4 as Prometheus itself reads
//!   it from arbitrary targets (node_exporter and friends): blank lines, free comments, runs of
//!   blanks between tokens, trailing commas in label sets and integer millisecond timestamps
//!   are accepted; malformed samples, unknown `# TYPE`s and duplicated metadata are errors.
//!
//! Both never panic, whatever the input (the `scrape` fuzz target checks that). Timestamps are
//! given in seconds in both formats (Prometheus' milliseconds are divided by 1000).
//!
//! ```
//! use shardmetrics::scrape::{parse_openmetrics, MetricType};
//!
//! let text = "# TYPE http_requests counter\nhttp_requests_total{route=\"/api\"} 3\n# EOF\n";
//! let families = parse_openmetrics(text).unwrap();
//! assert_eq!(families[0].name, "http_requests");
//! assert_eq!(families[0].kind, MetricType::Counter);
//! assert_eq!(families[0].samples[0].name, "http_requests_total");
//! assert_eq!(families[0].samples[0].label("route"), Some("/api"));
//! assert_eq!(families[0].samples[0].value, 3.0);
//! ```

#![forbid(unsafe_code)]

use std::{
    collections::{HashMap, HashSet},
    fmt,
};

/// Which text format to parse.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Format {
    /// Prometheus text exposition format 0.0.4 (`text/plain; version=0.0.4`).
    Prometheus,
    /// OpenMetrics 1.0 text (`application/openmetrics-text; version=1.0.0`), parsed strictly.
    OpenMetrics,
}

impl Format {
    /// The format a `Content-Type` header announces: OpenMetrics for
    /// `application/openmetrics-text`, otherwise Prometheus text.
    pub fn from_content_type(content_type: &str) -> Format {
        let media = content_type.split(';').next().unwrap_or("").trim();
        if media.eq_ignore_ascii_case("application/openmetrics-text") {
            Format::OpenMetrics
        } else {
            Format::Prometheus
        }
    }
}

/// The type of a metric family, as declared by `# TYPE` (or [`MetricType::Unknown`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MetricType {
    Counter,
    Gauge,
    Histogram,
    /// OpenMetrics only.
    GaugeHistogram,
    Summary,
    /// OpenMetrics only.
    Info,
    /// OpenMetrics only.
    StateSet,
    /// No `# TYPE` line, or `unknown` (OpenMetrics) / `untyped` (Prometheus).
    Unknown,
}

impl MetricType {
    /// The name used in `# TYPE` lines (OpenMetrics spelling; `unknown` for untyped).
    pub fn as_str(self) -> &'static str {
        match self {
            MetricType::Counter => "counter",
            MetricType::Gauge => "gauge",
            MetricType::Histogram => "histogram",
            MetricType::GaugeHistogram => "gaugehistogram",
            MetricType::Summary => "summary",
            MetricType::Info => "info",
            MetricType::StateSet => "stateset",
            MetricType::Unknown => "unknown",
        }
    }

    fn parse(s: &str, format: Format) -> Option<MetricType> {
        Some(match (s, format) {
            ("counter", _) => MetricType::Counter,
            ("gauge", _) => MetricType::Gauge,
            ("histogram", _) => MetricType::Histogram,
            ("summary", _) => MetricType::Summary,
            ("gaugehistogram", Format::OpenMetrics) => MetricType::GaugeHistogram,
            ("info", Format::OpenMetrics) => MetricType::Info,
            ("stateset", Format::OpenMetrics) => MetricType::StateSet,
            ("unknown", Format::OpenMetrics) | ("untyped", Format::Prometheus) => MetricType::Unknown,
            _ => return None,
        })
    }

    /// Sample-name suffixes an OpenMetrics family of this type owns.
    fn om_suffixes(self) -> &'static [&'static str] {
        match self {
            MetricType::Counter => &["_total", "_created"],
            MetricType::Summary => &["", "_count", "_sum", "_created"],
            MetricType::Histogram => &["_count", "_sum", "_bucket", "_created"],
            MetricType::GaugeHistogram => &["_gcount", "_gsum", "_bucket"],
            MetricType::Info => &["_info"],
            MetricType::Gauge | MetricType::StateSet | MetricType::Unknown => &[""],
        }
    }
}

impl fmt::Display for MetricType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An OpenMetrics exemplar attached to a `_total` or `_bucket` sample.
#[derive(Debug, Clone, PartialEq)]
pub struct Exemplar {
    pub labels: Vec<(String, String)>,
    pub value: f64,
    /// Seconds since the epoch.
    pub timestamp: Option<f64>,
}

/// One sample line.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// The full sample name (`http_requests_total`, `latency_seconds_bucket`, …).
    pub name: String,
    /// Labels in the order they were written, values unescaped.
    pub labels: Vec<(String, String)>,
    pub value: f64,
    /// Seconds since the epoch.
    pub timestamp: Option<f64>,
    /// OpenMetrics only.
    pub exemplar: Option<Exemplar>,
}

impl Sample {
    /// The value of label `name`.
    pub fn label(&self, name: &str) -> Option<&str> {
        self.labels.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }
}

/// A metric family: its metadata and samples, in input order.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricFamily {
    /// The family name: for OpenMetrics counters without `_total`; for Prometheus 0.0.4 the name
    /// in `# TYPE` (or the sample name of an untyped sample).
    pub name: String,
    pub kind: MetricType,
    /// Unescaped `# HELP` text, if the family had one.
    pub help: Option<String>,
    /// `# UNIT` (OpenMetrics only).
    pub unit: Option<String>,
    pub samples: Vec<Sample>,
}

/// Why an exposition was rejected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    /// 1-based line number (0 for problems with the whole text, such as a missing `# EOF`).
    pub line: usize,
    pub message: String,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            f.write_str(&self.message)
        } else {
            write!(f, "line {}: {}", self.line, self.message)
        }
    }
}

impl std::error::Error for ParseError {}

/// Parses `input` in `format`.
pub fn parse(input: &str, format: Format) -> Result<Vec<MetricFamily>, ParseError> {
    match format {
        Format::Prometheus => parse_prometheus(input),
        Format::OpenMetrics => parse_openmetrics(input),
    }
}

/// Parses raw bytes (rejecting invalid UTF-8) in `format`.
pub fn parse_bytes(input: &[u8], format: Format) -> Result<Vec<MetricFamily>, ParseError> {
    let text = std::str::from_utf8(input).map_err(|e| {
        let line = input[..e.valid_up_to()].iter().filter(|&&b| b == b'\n').count() + 1;
        ParseError { line, message: format!("invalid UTF-8: {e}") }
    })?;
    parse(text, format)
}

// ---------------------------------------------------------------------------------------------
// Shared lexing
// ---------------------------------------------------------------------------------------------

type Labels = Vec<(String, String)>;

fn is_metric_name(s: &str) -> bool {
    let mut b = s.bytes();
    matches!(b.next(), Some(c) if c.is_ascii_alphabetic() || c == b'_' || c == b':')
        && b.all(|c| c.is_ascii_alphanumeric() || c == b'_' || c == b':')
}

fn is_label_name(s: &str) -> bool {
    let mut b = s.bytes();
    matches!(b.next(), Some(c) if c.is_ascii_alphabetic() || c == b'_')
        && b.all(|c| c.is_ascii_alphanumeric() || c == b'_')
}

/// Unescapes HELP text and label values: `\\`, `\n`, `\"`; any other backslash is kept as is
/// (both formats' reference parsers accept `\z` as the two characters `\z`).
fn unescape(s: &str) -> String {
    if !s.contains('\\') {
        return s.to_owned();
    }
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('\\') => out.push('\\'),
            Some('n') => out.push('\n'),
            Some('"') => out.push('"'),
            Some(other) => {
                out.push('\\');
                out.push(other);
            }
            None => out.push('\\'),
        }
    }
    out
}

/// A byte cursor over one line.
struct Cursor<'a> {
    s: &'a str,
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn peek(&self) -> Option<u8> {
        self.s.as_bytes().get(self.pos).copied()
    }

    fn eat(&mut self, c: u8) -> bool {
        if self.peek() == Some(c) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn rest(&self) -> &'a str {
        &self.s[self.pos..]
    }

    fn at_end(&self) -> bool {
        self.pos >= self.s.len()
    }

    /// Takes the longest run of bytes satisfying `f` (ASCII only, so always a char boundary).
    fn take_while(&mut self, f: impl Fn(u8) -> bool) -> &'a str {
        let start = self.pos;
        while let Some(c) = self.peek() {
            if !c.is_ascii() || !f(c) {
                break;
            }
            self.pos += 1;
        }
        &self.s[start..self.pos]
    }

    fn skip_blanks(&mut self) -> usize {
        self.take_while(|c| c == b' ' || c == b'\t').len()
    }

    /// A token up to the next space (or the end of the line).
    fn token(&mut self, stop_at_tab: bool) -> &'a str {
        let start = self.pos;
        while let Some(c) = self.peek() {
            if c == b' ' || (stop_at_tab && c == b'\t') {
                break;
            }
            self.pos += 1;
        }
        // Spaces and tabs are ASCII, so `pos` is a char boundary.
        &self.s[start..self.pos]
    }

    /// A quoted label value after its opening quote, up to the closing unescaped quote,
    /// unescaped.
    fn quoted(&mut self) -> Result<String, String> {
        let bytes = self.s.as_bytes();
        let start = self.pos;
        let mut i = start;
        while i < bytes.len() {
            match bytes[i] {
                b'\\' => i += 2,
                b'"' => {
                    self.pos = i + 1;
                    return Ok(unescape(&self.s[start..i]));
                }
                _ => i += 1,
            }
        }
        Err("unterminated label value".into())
    }

    /// `{…}` at the cursor (which is on `{`). Strict: OpenMetrics (no blanks, no trailing comma).
    fn labels(&mut self, strict: bool) -> Result<Labels, String> {
        debug_assert_eq!(self.peek(), Some(b'{'));
        self.pos += 1;
        let mut labels: Labels = Vec::new();
        loop {
            if !strict {
                self.skip_blanks();
            }
            if self.eat(b'}') {
                if strict && !labels.is_empty() {
                    return Err("trailing comma in label set".into());
                }
                return Ok(labels);
            }
            let name = self.take_while(|c| c.is_ascii_alphanumeric() || c == b'_');
            if !is_label_name(name) {
                return Err(format!("invalid label name at {:?}", truncate(self.rest())));
            }
            if !strict {
                self.skip_blanks();
            }
            if !self.eat(b'=') {
                return Err(format!("expected '=' after label name {name:?}"));
            }
            if !strict {
                self.skip_blanks();
            }
            if !self.eat(b'"') {
                return Err(format!("label {name:?}: value must be in double quotes"));
            }
            let value = self.quoted()?;
            if labels.iter().any(|(k, _)| k == name) {
                return Err(format!("duplicate label {name:?}"));
            }
            labels.push((name.to_owned(), value));
            if !strict {
                self.skip_blanks();
            }
            if self.eat(b'}') {
                return Ok(labels);
            }
            if !self.eat(b',') {
                return Err(format!("expected ',' or '}}' after label {name:?}"));
            }
            if strict && self.peek() == Some(b'}') {
                return Err("trailing comma in label set".into());
            }
        }
    }
}

fn truncate(s: &str) -> &str {
    match s.char_indices().nth(32) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

/// `[sign] (digits [. digits*] | . digits) [(e|E) [sign] digits]`, the decimal numbers both
/// formats share (no hex, no `_`, no blanks).
fn is_real(s: &str) -> bool {
    let b = s.as_bytes();
    let mut i = 0;
    if matches!(b.first(), Some(b'+' | b'-')) {
        i += 1;
    }
    let int_start = i;
    while i < b.len() && b[i].is_ascii_digit() {
        i += 1;
    }
    let mut digits = i - int_start;
    if i < b.len() && b[i] == b'.' {
        i += 1;
        let frac_start = i;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        digits += i - frac_start;
    }
    if digits == 0 {
        return false;
    }
    if i < b.len() && (b[i] == b'e' || b[i] == b'E') {
        i += 1;
        if i < b.len() && (b[i] == b'+' || b[i] == b'-') {
            i += 1;
        }
        let exp_start = i;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        if i == exp_start {
            return false;
        }
    }
    i == b.len()
}

/// A sample value: a real number, `[sign] Inf`/`Infinity` or `NaN` (case-insensitive).
fn parse_value(s: &str) -> Option<f64> {
    if is_real(s) {
        return s.parse().ok();
    }
    let unsigned = s.strip_prefix(['+', '-']).unwrap_or(s);
    if unsigned.eq_ignore_ascii_case("inf") || unsigned.eq_ignore_ascii_case("infinity") {
        return Some(if s.starts_with('-') { f64::NEG_INFINITY } else { f64::INFINITY });
    }
    if s.eq_ignore_ascii_case("nan") {
        return Some(f64::NAN);
    }
    None
}

/// An OpenMetrics timestamp: a real number of seconds (never NaN or infinite).
fn parse_om_timestamp(s: &str) -> Option<f64> {
    if !is_real(s) {
        return None;
    }
    s.parse::<f64>().ok().filter(|t| t.is_finite())
}

// ---------------------------------------------------------------------------------------------
// Prometheus text 0.0.4
// ---------------------------------------------------------------------------------------------

struct PromFamily {
    family: MetricFamily,
    typed: bool,
}

/// Parses Prometheus text format 0.0.4.
pub fn parse_prometheus(input: &str) -> Result<Vec<MetricFamily>, ParseError> {
    let mut families: Vec<PromFamily> = Vec::new();
    let mut by_name: HashMap<String, usize> = HashMap::new();
    for (n, line) in input.split('\n').enumerate() {
        let err = |message: String| ParseError { line: n + 1, message };
        let mut c = Cursor { s: line, pos: 0 };
        c.skip_blanks();
        if c.at_end() {
            continue;
        }
        if c.eat(b'#') {
            prom_comment(&mut c, &mut families, &mut by_name).map_err(err)?;
            continue;
        }
        let sample = prom_sample(&mut c).map_err(err)?;
        let f = prom_family_of(&sample.name, &families, &by_name).unwrap_or_else(|| {
            families.push(PromFamily {
                family: MetricFamily {
                    name: sample.name.clone(),
                    kind: MetricType::Unknown,
                    help: None,
                    unit: None,
                    samples: Vec::new(),
                },
                typed: false,
            });
            by_name.insert(sample.name.clone(), families.len() - 1);
            families.len() - 1
        });
        let fam = &mut families[f].family;
        let suffix = &sample.name[fam.name.len()..];
        match (fam.kind, suffix) {
            (MetricType::Histogram, "_bucket") => match sample.label("le").map(parse_value) {
                Some(Some(le)) if !le.is_nan() => {}
                _ => return Err(err(format!("{}: missing or invalid \"le\" label", sample.name))),
            },
            (MetricType::Summary, "") => match sample.label("quantile").map(parse_value) {
                Some(Some(q)) if !q.is_nan() => {}
                _ => return Err(err(format!("{}: missing or invalid \"quantile\" label", sample.name))),
            },
            _ => {}
        }
        fam.samples.push(sample);
    }
    Ok(families.into_iter().map(|f| f.family).collect())
}

/// The family a sample belongs to: its own name, or the histogram/summary it is a part of.
fn prom_family_of(name: &str, families: &[PromFamily], by_name: &HashMap<String, usize>) -> Option<usize> {
    if let Some(&f) = by_name.get(name) {
        return Some(f);
    }
    for suffix in ["_bucket", "_sum", "_count"] {
        if let Some(base) = name.strip_suffix(suffix) {
            if let Some(&f) = by_name.get(base) {
                match families[f].family.kind {
                    MetricType::Histogram => return Some(f),
                    MetricType::Summary if suffix != "_bucket" => return Some(f),
                    _ => {}
                }
            }
        }
    }
    None
}

fn prom_comment(
    c: &mut Cursor<'_>,
    families: &mut Vec<PromFamily>,
    by_name: &mut HashMap<String, usize>,
) -> Result<(), String> {
    c.skip_blanks();
    let keyword = c.token(true);
    if keyword != "HELP" && keyword != "TYPE" {
        return Ok(()); // a free comment
    }
    if c.skip_blanks() == 0 {
        return Ok(()); // "# HELP" alone is a comment too (as in Prometheus)
    }
    let name = c.token(true);
    if !is_metric_name(name) {
        return Err(format!("# {keyword}: invalid metric name {:?}", truncate(name)));
    }
    let had_blank = c.skip_blanks() > 0;
    let f = match by_name.get(name) {
        Some(&f) => f,
        None => {
            families.push(PromFamily {
                family: MetricFamily {
                    name: name.to_owned(),
                    kind: MetricType::Unknown,
                    help: None,
                    unit: None,
                    samples: Vec::new(),
                },
                typed: false,
            });
            by_name.insert(name.to_owned(), families.len() - 1);
            families.len() - 1
        }
    };
    let fam = &mut families[f];
    if keyword == "HELP" {
        if fam.family.help.is_some() {
            return Err(format!("second # HELP for {name}"));
        }
        let text = if had_blank { c.rest() } else { "" };
        if !had_blank && !c.at_end() {
            return Err(format!("# HELP {name}: expected a blank after the name"));
        }
        fam.family.help = Some(unescape(text));
    } else {
        if fam.typed {
            return Err(format!("second # TYPE for {name}"));
        }
        if !fam.family.samples.is_empty() {
            return Err(format!("# TYPE for {name} after its samples"));
        }
        let t = c.token(true);
        c.skip_blanks();
        if !c.at_end() {
            return Err(format!("# TYPE {name}: unexpected text after the type"));
        }
        fam.family.kind =
            MetricType::parse(t, Format::Prometheus).ok_or_else(|| format!("# TYPE {name}: unknown type {t:?}"))?;
        fam.typed = true;
    }
    Ok(())
}

fn prom_sample(c: &mut Cursor<'_>) -> Result<Sample, String> {
    let name = c.take_while(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b':');
    if !is_metric_name(name) {
        return Err(format!("invalid metric name at {:?}", truncate(c.s)));
    }
    c.skip_blanks();
    let labels = if c.peek() == Some(b'{') { c.labels(false)? } else { Vec::new() };
    c.skip_blanks();
    let value_tok = c.token(true);
    let value = parse_value(value_tok).ok_or_else(|| format!("{name}: invalid value {:?}", truncate(value_tok)))?;
    c.skip_blanks();
    let timestamp = if c.at_end() {
        None
    } else {
        let t = c.token(true);
        let ms: i64 = t
            .strip_prefix('+')
            .unwrap_or(t)
            .parse()
            .ok()
            .filter(|_| t.bytes().all(|b| b.is_ascii_digit() || b == b'-' || b == b'+'))
            .ok_or_else(|| format!("{name}: invalid timestamp {:?}", truncate(t)))?;
        c.skip_blanks();
        if !c.at_end() {
            return Err(format!("{name}: unexpected text after the timestamp"));
        }
        Some(ms as f64 / 1000.0)
    };
    Ok(Sample { name: name.to_owned(), labels, value, timestamp, exemplar: None })
}

// ---------------------------------------------------------------------------------------------
// OpenMetrics 1.0 (strict)
// ---------------------------------------------------------------------------------------------

/// The family being read, with the state the grouping and ordering rules need.
struct OmFamily {
    family: MetricFamily,
    typed: bool,
    /// Sample names this family owns.
    allowed: Vec<String>,
    /// Label set (without `le`/`quantile`/the stateset label) of the last sample's metric point.
    group: Option<Labels>,
    seen_groups: HashSet<Labels>,
    group_timestamp: Option<f64>,
}

impl OmFamily {
    fn new(name: &str, kind: MetricType, typed: bool) -> OmFamily {
        OmFamily {
            family: MetricFamily { name: name.to_owned(), kind, help: None, unit: None, samples: Vec::new() },
            typed,
            allowed: vec![name.to_owned()],
            group: None,
            seen_groups: HashSet::new(),
            group_timestamp: None,
        }
    }
}

/// Parses OpenMetrics 1.0 text, strictly.
pub fn parse_openmetrics(input: &str) -> Result<Vec<MetricFamily>, ParseError> {
    let mut done: Vec<MetricFamily> = Vec::new();
    let mut seen_names: HashSet<String> = HashSet::new();
    let mut cur: Option<OmFamily> = None;
    let body = match input.strip_suffix('\n') {
        Some(b) => b,
        None => input,
    };
    let mut eof = false;
    let mut last_line = 0;
    for (n, line) in body.split('\n').enumerate() {
        last_line = n + 1;
        let err = |message: String| ParseError { line: n + 1, message };
        if eof {
            return Err(err("text after # EOF".into()));
        }
        if line.is_empty() {
            return Err(err("blank line".into()));
        }
        if line == "# EOF" {
            eof = true;
        } else if line.starts_with('#') {
            om_metadata(line, &mut cur, &mut done, &mut seen_names).map_err(err)?;
        } else {
            om_sample_line(line, &mut cur, &mut done, &mut seen_names).map_err(err)?;
        }
    }
    if !eof {
        return Err(ParseError { line: 0, message: "missing # EOF at the end".into() });
    }
    if let Some(f) = cur.take() {
        finish_family(f, &mut done, &mut seen_names).map_err(|message| ParseError { line: last_line, message })?;
    }
    Ok(done)
}

fn om_metadata(
    line: &str,
    cur: &mut Option<OmFamily>,
    done: &mut Vec<MetricFamily>,
    seen: &mut HashSet<String>,
) -> Result<(), String> {
    let mut parts = line.splitn(4, ' ');
    let (hash, keyword, name, rest) = (parts.next(), parts.next(), parts.next(), parts.next());
    let (Some("#"), Some(keyword), Some(name), Some(rest)) = (hash, keyword, name, rest) else {
        return Err(format!("invalid comment line {:?}", truncate(line)));
    };
    if !matches!(keyword, "HELP" | "TYPE" | "UNIT") {
        return Err(format!("unknown metadata keyword {:?}", truncate(keyword)));
    }
    if !is_metric_name(name) {
        return Err(format!("# {keyword}: invalid metric name {:?}", truncate(name)));
    }
    let same = cur.as_ref().is_some_and(|f| f.family.name == name);
    if same {
        if cur.as_ref().is_some_and(|f| !f.family.samples.is_empty()) {
            return Err(format!("# {keyword} for {name} after its samples"));
        }
    } else {
        if let Some(f) = cur.take() {
            finish_family(f, done, seen)?;
        }
        *cur = Some(OmFamily::new(name, MetricType::Unknown, false));
    }
    let Some(f) = cur.as_mut() else { unreachable!("a family was just set") };
    match keyword {
        "HELP" => {
            if f.family.help.is_some() {
                return Err(format!("second # HELP for {name}"));
            }
            f.family.help = Some(unescape(rest));
        }
        "TYPE" => {
            if f.typed {
                return Err(format!("second # TYPE for {name}"));
            }
            let kind = MetricType::parse(rest, Format::OpenMetrics)
                .ok_or_else(|| format!("# TYPE {name}: invalid type {:?}", truncate(rest)))?;
            f.family.kind = kind;
            f.typed = true;
            f.allowed = kind.om_suffixes().iter().map(|s| format!("{name}{s}")).collect();
        }
        _ => {
            if f.family.unit.is_some() {
                return Err(format!("second # UNIT for {name}"));
            }
            if !rest.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b':') {
                return Err(format!("# UNIT {name}: invalid unit {:?}", truncate(rest)));
            }
            f.family.unit = Some(rest.to_owned());
        }
    }
    Ok(())
}

/// Checks a finished family (clashing names, unit, histogram structure) and stores it.
fn finish_family(f: OmFamily, done: &mut Vec<MetricFamily>, seen: &mut HashSet<String>) -> Result<(), String> {
    let fam = f.family;
    let mut suffixes: Vec<&str> = fam.kind.om_suffixes().to_vec();
    if !suffixes.contains(&"") {
        suffixes.push("");
    }
    for s in suffixes {
        let n = format!("{}{s}", fam.name);
        if !seen.insert(n) {
            return Err(format!("metric name {}{s} clashes with an earlier family", fam.name));
        }
    }
    if let Some(unit) = fam.unit.as_deref().filter(|u| !u.is_empty()) {
        if !fam.name.ends_with(&format!("_{unit}")) {
            return Err(format!("family {} has unit {unit:?} but its name does not end in _{unit}", fam.name));
        }
        if matches!(fam.kind, MetricType::Info | MetricType::StateSet) {
            return Err(format!("{} families cannot have a unit ({})", fam.kind, fam.name));
        }
    }
    if matches!(fam.kind, MetricType::Histogram | MetricType::GaugeHistogram) {
        check_histogram(&fam)?;
    }
    done.push(fam);
    Ok(())
}

fn om_sample_line(
    line: &str,
    cur: &mut Option<OmFamily>,
    done: &mut Vec<MetricFamily>,
    seen: &mut HashSet<String>,
) -> Result<(), String> {
    let sample = om_sample(line)?;
    if !cur.as_ref().is_some_and(|f| f.allowed.contains(&sample.name)) {
        if let Some(f) = cur.take() {
            finish_family(f, done, seen)?;
        }
        *cur = Some(OmFamily::new(&sample.name, MetricType::Unknown, false));
    }
    let Some(f) = cur.as_mut() else { unreachable!("a family was just set") };
    let (name, kind) = (f.family.name.as_str(), f.family.kind);
    let suffix = &sample.name[name.len()..];
    let v = sample.value;
    let integral = |v: f64| v.is_finite() && v.fract() == 0.0;

    if kind == MetricType::StateSet && sample.label(name).is_none() {
        return Err(format!("stateset sample without the {name:?} label"));
    }
    if matches!(kind, MetricType::Histogram | MetricType::GaugeHistogram) && suffix == "_bucket" {
        match sample.label("le") {
            Some(le) if canonical_bound(le).is_some() => {}
            _ => return Err(format!("{}: missing or invalid \"le\" label", sample.name)),
        }
        if !integral(v) {
            return Err(format!("{}: bucket value must be an integer", sample.name));
        }
    }
    if matches!(suffix, "_count" | "_gcount")
        && matches!(kind, MetricType::Histogram | MetricType::GaugeHistogram | MetricType::Summary)
        && !integral(v)
    {
        return Err(format!("{}: count must be an integer", sample.name));
    }
    if kind == MetricType::Summary && suffix.is_empty() {
        match sample.label("quantile").and_then(canonical_bound) {
            Some(q) if (0.0..=1.0).contains(&q) => {}
            _ => return Err(format!("{}: missing or invalid \"quantile\" label", sample.name)),
        }
        if v < 0.0 {
            return Err(format!("{}: quantile values cannot be negative", sample.name));
        }
    }

    // Grouping: the samples of one metric point (label set) are contiguous, and within it
    // timestamps are all present or all absent and never go backwards.
    let mut group: Labels = sample
        .labels
        .iter()
        .filter(|(k, _)| match kind {
            MetricType::Summary => !(suffix.is_empty() && k == "quantile"),
            MetricType::StateSet => k != name,
            MetricType::Histogram | MetricType::GaugeHistogram => !(suffix == "_bucket" && k == "le"),
            _ => true,
        })
        .cloned()
        .collect();
    if kind == MetricType::Info {
        group.clear();
    }
    group.sort();
    if f.group.as_ref() == Some(&group) {
        if sample.timestamp.is_some() != f.group_timestamp.is_some() {
            return Err(format!("{}: some samples of a metric point have a timestamp, some do not", sample.name));
        }
        if let (Some(prev), Some(t)) = (f.group_timestamp, sample.timestamp) {
            if t < prev && kind != MetricType::Info {
                return Err(format!("{}: timestamps went backwards", sample.name));
            }
        }
    } else if f.seen_groups.contains(&group) {
        return Err(format!("{}: samples of one metric point are not together", sample.name));
    }
    f.group_timestamp = sample.timestamp;
    f.seen_groups.insert(group.clone());
    f.group = Some(group);

    if kind == MetricType::StateSet && v != 0.0 && v != 1.0 {
        return Err(format!("{}: stateset values must be 0 or 1", sample.name));
    }
    if kind == MetricType::Info && v != 1.0 {
        return Err(format!("{}: info values must be 1", sample.name));
    }
    let counter_like = matches!(suffix, "_total" | "_sum" | "_count" | "_bucket" | "_gcount" | "_gsum");
    if counter_like && v.is_nan() {
        return Err(format!("{}: counter-like values cannot be NaN", sample.name));
    }
    if counter_like && suffix != "_gsum" && v < 0.0 {
        return Err(format!("{}: counter-like values cannot be negative", sample.name));
    }
    if sample.exemplar.is_some() {
        let ok = (matches!(kind, MetricType::Histogram | MetricType::GaugeHistogram) && suffix == "_bucket")
            || (kind == MetricType::Counter && suffix == "_total");
        if !ok {
            return Err(format!("{}: only counter _total and histogram _bucket samples have exemplars", sample.name));
        }
    }
    f.family.samples.push(sample);
    Ok(())
}

/// A `le` or `quantile` label value: a number other than NaN, with infinities spelled `+Inf`
/// / `-Inf` exactly.
fn canonical_bound(s: &str) -> Option<f64> {
    let v = parse_value(s)?;
    if v.is_nan() || (v.is_infinite() && s != "+Inf" && s != "-Inf") {
        return None;
    }
    Some(v)
}

/// One OpenMetrics sample line: `name[{labels}] SP value [SP timestamp] [SP # SP {labels} SP value [SP ts]]`.
fn om_sample(line: &str) -> Result<Sample, String> {
    let mut c = Cursor { s: line, pos: 0 };
    let name = c.take_while(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b':');
    if !is_metric_name(name) {
        return Err(format!("invalid metric name at {:?}", truncate(line)));
    }
    let labels = if c.peek() == Some(b'{') { c.labels(true)? } else { Vec::new() };
    if !c.eat(b' ') {
        return Err(format!("{name}: expected a space before the value"));
    }
    let value_tok = c.token(false);
    let value = parse_value(value_tok).ok_or_else(|| format!("{name}: invalid value {:?}", truncate(value_tok)))?;
    let mut timestamp = None;
    let mut exemplar = None;
    if c.eat(b' ') {
        if c.peek() != Some(b'#') {
            let t = c.token(false);
            timestamp =
                Some(parse_om_timestamp(t).ok_or_else(|| format!("{name}: invalid timestamp {:?}", truncate(t)))?);
            if c.eat(b' ') {
                exemplar = Some(om_exemplar(&mut c, name)?);
            }
        } else {
            exemplar = Some(om_exemplar(&mut c, name)?);
        }
    }
    if !c.at_end() {
        return Err(format!("{name}: unexpected text {:?}", truncate(c.rest())));
    }
    Ok(Sample { name: name.to_owned(), labels, value, timestamp, exemplar })
}

/// `# {labels} value [timestamp]` at the cursor (after the blank that precedes `#`).
fn om_exemplar(c: &mut Cursor<'_>, name: &str) -> Result<Exemplar, String> {
    if !(c.eat(b'#') && c.eat(b' ') && c.peek() == Some(b'{')) {
        return Err(format!("{name}: malformed exemplar"));
    }
    let labels = c.labels(true)?;
    let len: usize = labels.iter().map(|(k, v)| k.chars().count() + v.chars().count()).sum();
    if len > 128 {
        return Err(format!("{name}: exemplar labels longer than 128 characters"));
    }
    if !c.eat(b' ') {
        return Err(format!("{name}: expected a space before the exemplar value"));
    }
    let value_tok = c.token(false);
    let value =
        parse_value(value_tok).ok_or_else(|| format!("{name}: invalid exemplar value {:?}", truncate(value_tok)))?;
    let timestamp = if c.eat(b' ') {
        let t = c.token(false);
        Some(parse_om_timestamp(t).ok_or_else(|| format!("{name}: invalid exemplar timestamp {:?}", truncate(t)))?)
    } else {
        None
    };
    Ok(Exemplar { labels, value, timestamp })
}

/// The structural rules of (gauge) histograms, per metric point: buckets in increasing `le`
/// order ending in `+Inf` with non-decreasing counts, `_count` equal to the `+Inf` bucket,
/// `_sum`/`_count` (`_gsum`/`_gcount`) together, no `_sum` with negative buckets.
fn check_histogram(fam: &MetricFamily) -> Result<(), String> {
    #[derive(Default)]
    struct Point {
        last_le: Option<f64>,
        last_value: f64,
        count: Option<f64>,
        negative_buckets: bool,
        sum: bool,
        gsum: bool,
        negative_gsum: bool,
    }
    let check = |p: &Point| -> Result<(), String> {
        let n = &fam.name;
        if p.last_le != Some(f64::INFINITY) {
            return Err(format!("histogram {n}: the +Inf bucket is missing"));
        }
        if p.count.is_some_and(|c| c != p.last_value) {
            return Err(format!("histogram {n}: _count does not equal the +Inf bucket"));
        }
        if (p.sum || p.gsum) != p.count.is_some() {
            return Err(format!("histogram {n}: _count and _sum must come together"));
        }
        if p.negative_buckets && p.sum {
            return Err(format!("histogram {n}: _sum is not allowed with negative buckets"));
        }
        if !p.negative_buckets && p.negative_gsum {
            return Err(format!("histogram {n}: negative _gsum without negative buckets"));
        }
        Ok(())
    };
    let mut point: Option<(Labels, Option<u64>, Point)> = None;
    for s in &fam.samples {
        let suffix = &s.name[fam.name.len()..];
        let mut group: Labels = s.labels.iter().filter(|(k, _)| !(suffix == "_bucket" && k == "le")).cloned().collect();
        group.sort();
        let ts = s.timestamp.map(f64::to_bits);
        let same = point.as_ref().is_some_and(|(g, t, _)| *g == group && *t == ts);
        if !same {
            if let Some((_, _, p)) = &point {
                check(p)?;
            }
            point = Some((group, ts, Point::default()));
        }
        let Some((_, _, p)) = point.as_mut() else { unreachable!("a point was just set") };
        match suffix {
            "_bucket" => {
                let le = s.label("le").and_then(canonical_bound).ok_or("bucket without a valid le")?;
                if le < 0.0 {
                    p.negative_buckets = true;
                }
                if p.last_le.is_some_and(|prev| le <= prev) {
                    return Err(format!("histogram {}: buckets out of order", fam.name));
                }
                if s.value < p.last_value {
                    return Err(format!("histogram {}: bucket counts decrease", fam.name));
                }
                p.last_le = Some(le);
                p.last_value = s.value;
            }
            "_count" | "_gcount" => p.count = Some(s.value),
            "_sum" => p.sum = true,
            "_gsum" => {
                p.gsum = true;
                p.negative_gsum |= s.value < 0.0;
            }
            _ => {}
        }
    }
    if let Some((_, _, p)) = &point {
        check(p)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers() {
        for ok in ["1", "-1", "+1", "1.5", ".5", "5.", "1e3", "1E-3", "0001.2e-1", "Inf", "+inf", "-Infinity", "NaN"] {
            assert!(parse_value(ok).is_some(), "{ok}");
        }
        for bad in ["", "a", "1_2", "0x1", "0x1p-3", "1e", ".", "+", "1 ", " 1", "+NaN", "1.1.1", "infx"] {
            assert!(parse_value(bad).is_none(), "{bad}");
        }
        assert!(parse_om_timestamp("Inf").is_none());
        assert_eq!(parse_om_timestamp("1.5e3"), Some(1500.0));
    }

    #[test]
    fn prometheus_lenient_but_not_sloppy() {
        let text = "# a free comment\n\n  # HELP x the help\\n\\z\n# TYPE x histogram\n\
                    x_bucket { le = \"1\" , } 0 1000\nx_bucket{le=\"+Inf\"}\t2\nx_sum 3\nx_count 2\nuntyped_one 4\n";
        let f = parse_prometheus(text).unwrap();
        assert_eq!(f.len(), 2);
        assert_eq!(f[0].help.as_deref(), Some("the help\n\\z"));
        assert_eq!(f[0].kind, MetricType::Histogram);
        assert_eq!(f[0].samples.len(), 4);
        assert_eq!(f[0].samples[0].timestamp, Some(1.0));
        assert_eq!(f[1].kind, MetricType::Unknown);
        for bad in ["a 1 2 3\n", "a{b=c} 1\n", "# TYPE a foo\n", "a 1 1.5\n", "a\n", "# TYPE a gauge\n# TYPE a gauge\n"]
        {
            assert!(parse_prometheus(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn openmetrics_exemplar_and_content_type() {
        let f = parse_openmetrics("# TYPE a counter\na_total 1 2.5 # {t=\"x\"} 0.5 3\n# EOF").unwrap();
        let s = &f[0].samples[0];
        assert_eq!(s.timestamp, Some(2.5));
        let e = s.exemplar.as_ref().unwrap();
        assert_eq!((e.labels.clone(), e.value, e.timestamp), (vec![("t".into(), "x".into())], 0.5, Some(3.0)));
        assert_eq!(Format::from_content_type("application/openmetrics-text; version=1.0.0"), Format::OpenMetrics);
        assert_eq!(Format::from_content_type("text/plain; version=0.0.4"), Format::Prometheus);
        assert!(parse_bytes(b"\xff", Format::OpenMetrics).is_err());
    }
}
