//! OTLP/HTTP JSON ([`Protocol::HttpJson`](super::Protocol::HttpJson)): an
//! [`ExportMetricsServiceRequest`] written straight into a `String` in the OTLP specification's
//! "JSON Protobuf Encoding", and the `partialSuccess` of a JSON answer read back.
//!
//! The encoding is the proto3 JSON mapping with OTLP's exceptions:
//!
//! * keys are the fields' lowerCamelCase JSON names (`timeUnixNano`, `dataPoints`);
//! * `traceId` and `spanId` are lowercase hex strings, not base64 (OTLP's exception); other
//!   bytes (an attribute's `bytesValue`) are base64;
//! * enums are integers (`"aggregationTemporality": 2`);
//! * 64-bit integers (the `fixed64` times and counts, `int64`/`sfixed64` values) are decimal
//!   strings, 32-bit ones (`flags`, `scale`, `offset`) numbers;
//! * doubles are numbers in their shortest round-trip form (`0.1`, `1e300`, `5e-324`), the
//!   non-finite ones the strings `"NaN"`, `"Infinity"`, `"-Infinity"`;
//! * a field at its default (0, `""`, `false`, an empty list, an absent message) is left out,
//!   as proto3 JSON does; a oneof that is set (`"asInt": "0"`), a proto3 `optional` field that
//!   is present (a histogram point's `sum`, `min`, `max`) and a present message are written even
//!   when zero or empty, since their presence is information.
//!
//! No intermediate tree and no JSON library: the exporter's `otlp` feature does not need
//! serde_json (only tests parse the output with it, and with Python's `json_format`).

#![forbid(unsafe_code)]

use super::proto::{
    any_value, exemplar, exponential_histogram_data_point::Buckets, metric::Data, number_data_point,
    summary_data_point::ValueAtQuantile, AnyValue, Exemplar, ExponentialHistogramDataPoint,
    ExportMetricsPartialSuccess, ExportMetricsServiceRequest, ExportMetricsServiceResponse, HistogramDataPoint,
    InstrumentationScope, KeyValue, Metric, NumberDataPoint, Resource, ResourceMetrics, ScopeMetrics, SummaryDataPoint,
};
use crate::export::json_string::string;

/// `Content-Type` of an OTLP/HTTP JSON request (and of the receiver's answer to it).
pub const CONTENT_TYPE: &str = "application/json";

/// The request in OTLP/JSON.
pub fn encode(req: &ExportMetricsServiceRequest) -> String {
    let mut out = String::with_capacity(4096);
    let mut o = Obj::open(&mut out);
    o.list("resourceMetrics", &req.resource_metrics, resource_metrics);
    o.close();
    out
}

// ---------------------------------------------------------------------------------------------
// The messages, field by field in the `.proto` files' order.

fn resource_metrics(out: &mut String, rm: &ResourceMetrics) {
    let mut o = Obj::open(out);
    o.message("resource", rm.resource.as_ref(), resource);
    o.list("scopeMetrics", &rm.scope_metrics, scope_metrics);
    o.string("schemaUrl", &rm.schema_url);
    o.close();
}

fn resource(out: &mut String, r: &Resource) {
    let mut o = Obj::open(out);
    o.list("attributes", &r.attributes, key_value);
    o.u32("droppedAttributesCount", r.dropped_attributes_count);
    o.close();
}

fn scope_metrics(out: &mut String, sm: &ScopeMetrics) {
    let mut o = Obj::open(out);
    o.message("scope", sm.scope.as_ref(), scope);
    o.list("metrics", &sm.metrics, metric);
    o.string("schemaUrl", &sm.schema_url);
    o.close();
}

fn scope(out: &mut String, s: &InstrumentationScope) {
    let mut o = Obj::open(out);
    o.string("name", &s.name);
    o.string("version", &s.version);
    o.list("attributes", &s.attributes, key_value);
    o.u32("droppedAttributesCount", s.dropped_attributes_count);
    o.close();
}

fn metric(out: &mut String, m: &Metric) {
    let mut o = Obj::open(out);
    o.string("name", &m.name);
    o.string("description", &m.description);
    o.string("unit", &m.unit);
    match &m.data {
        Some(Data::Gauge(g)) => o.message("gauge", Some(g), |out, g| {
            let mut o = Obj::open(out);
            o.list("dataPoints", &g.data_points, number_point);
            o.close();
        }),
        Some(Data::Sum(s)) => o.message("sum", Some(s), |out, s| {
            let mut o = Obj::open(out);
            o.list("dataPoints", &s.data_points, number_point);
            o.i32("aggregationTemporality", s.aggregation_temporality);
            o.bool("isMonotonic", s.is_monotonic);
            o.close();
        }),
        Some(Data::Histogram(h)) => o.message("histogram", Some(h), |out, h| {
            let mut o = Obj::open(out);
            o.list("dataPoints", &h.data_points, histogram_point);
            o.i32("aggregationTemporality", h.aggregation_temporality);
            o.close();
        }),
        Some(Data::ExponentialHistogram(h)) => o.message("exponentialHistogram", Some(h), |out, h| {
            let mut o = Obj::open(out);
            o.list("dataPoints", &h.data_points, exponential_point);
            o.i32("aggregationTemporality", h.aggregation_temporality);
            o.close();
        }),
        Some(Data::Summary(s)) => o.message("summary", Some(s), |out, s| {
            let mut o = Obj::open(out);
            o.list("dataPoints", &s.data_points, summary_point);
            o.close();
        }),
        None => {}
    }
    o.list("metadata", &m.metadata, key_value);
    o.close();
}

fn number_point(out: &mut String, p: &NumberDataPoint) {
    let mut o = Obj::open(out);
    o.list("attributes", &p.attributes, key_value);
    o.u64("startTimeUnixNano", p.start_time_unix_nano);
    o.u64("timeUnixNano", p.time_unix_nano);
    match p.value {
        Some(number_data_point::Value::AsDouble(v)) => f64_value(o.key("asDouble"), v),
        Some(number_data_point::Value::AsInt(v)) => i64_value(o.key("asInt"), v),
        None => {}
    }
    o.list("exemplars", &p.exemplars, exemplar);
    o.u32("flags", p.flags);
    o.close();
}

fn histogram_point(out: &mut String, p: &HistogramDataPoint) {
    let mut o = Obj::open(out);
    o.list("attributes", &p.attributes, key_value);
    o.u64("startTimeUnixNano", p.start_time_unix_nano);
    o.u64("timeUnixNano", p.time_unix_nano);
    o.u64("count", p.count);
    o.optional_f64("sum", p.sum);
    o.list("bucketCounts", &p.bucket_counts, |out, &n| u64_value(out, n));
    o.list("explicitBounds", &p.explicit_bounds, |out, &b| f64_value(out, b));
    o.list("exemplars", &p.exemplars, exemplar);
    o.u32("flags", p.flags);
    o.optional_f64("min", p.min);
    o.optional_f64("max", p.max);
    o.close();
}

fn exponential_point(out: &mut String, p: &ExponentialHistogramDataPoint) {
    let mut o = Obj::open(out);
    o.list("attributes", &p.attributes, key_value);
    o.u64("startTimeUnixNano", p.start_time_unix_nano);
    o.u64("timeUnixNano", p.time_unix_nano);
    o.u64("count", p.count);
    o.optional_f64("sum", p.sum);
    o.i32("scale", p.scale);
    o.u64("zeroCount", p.zero_count);
    o.message("positive", p.positive.as_ref(), buckets);
    o.message("negative", p.negative.as_ref(), buckets);
    o.u32("flags", p.flags);
    o.list("exemplars", &p.exemplars, exemplar);
    o.optional_f64("min", p.min);
    o.optional_f64("max", p.max);
    o.f64("zeroThreshold", p.zero_threshold);
    o.close();
}

fn buckets(out: &mut String, b: &Buckets) {
    let mut o = Obj::open(out);
    o.i32("offset", b.offset);
    o.list("bucketCounts", &b.bucket_counts, |out, &n| u64_value(out, n));
    o.close();
}

fn summary_point(out: &mut String, p: &SummaryDataPoint) {
    let mut o = Obj::open(out);
    o.list("attributes", &p.attributes, key_value);
    o.u64("startTimeUnixNano", p.start_time_unix_nano);
    o.u64("timeUnixNano", p.time_unix_nano);
    o.u64("count", p.count);
    o.f64("sum", p.sum);
    o.list("quantileValues", &p.quantile_values, |out, q: &ValueAtQuantile| {
        let mut o = Obj::open(out);
        o.f64("quantile", q.quantile);
        o.f64("value", q.value);
        o.close();
    });
    o.u32("flags", p.flags);
    o.close();
}

fn exemplar(out: &mut String, e: &Exemplar) {
    let mut o = Obj::open(out);
    o.list("filteredAttributes", &e.filtered_attributes, key_value);
    o.u64("timeUnixNano", e.time_unix_nano);
    match e.value {
        Some(exemplar::Value::AsDouble(v)) => f64_value(o.key("asDouble"), v),
        Some(exemplar::Value::AsInt(v)) => i64_value(o.key("asInt"), v),
        None => {}
    }
    // OTLP's exception to the proto3 mapping: the ids are hex, not base64.
    if !e.span_id.is_empty() {
        hex_value(o.key("spanId"), &e.span_id);
    }
    if !e.trace_id.is_empty() {
        hex_value(o.key("traceId"), &e.trace_id);
    }
    o.close();
}

fn key_value(out: &mut String, kv: &KeyValue) {
    let mut o = Obj::open(out);
    o.string("key", &kv.key);
    o.message("value", kv.value.as_ref(), any_value);
    o.close();
}

fn any_value(out: &mut String, v: &AnyValue) {
    let mut o = Obj::open(out);
    match &v.value {
        Some(any_value::Value::StringValue(s)) => string(o.key("stringValue"), s),
        Some(any_value::Value::BoolValue(b)) => o.key("boolValue").push_str(if *b { "true" } else { "false" }),
        Some(any_value::Value::IntValue(i)) => i64_value(o.key("intValue"), *i),
        Some(any_value::Value::DoubleValue(d)) => f64_value(o.key("doubleValue"), *d),
        Some(any_value::Value::ArrayValue(a)) => o.message("arrayValue", Some(a), |out, a| {
            let mut o = Obj::open(out);
            o.list("values", &a.values, any_value);
            o.close();
        }),
        Some(any_value::Value::KvlistValue(l)) => o.message("kvlistValue", Some(l), |out, l| {
            let mut o = Obj::open(out);
            o.list("values", &l.values, key_value);
            o.close();
        }),
        Some(any_value::Value::BytesValue(b)) => base64_value(o.key("bytesValue"), b),
        None => {}
    }
    o.close();
}

// ---------------------------------------------------------------------------------------------
// The writer.

/// An object being written: `key` adds the comma and the key, the typed methods leave out
/// defaults.
struct Obj<'a> {
    out: &'a mut String,
    empty: bool,
}

impl<'a> Obj<'a> {
    fn open(out: &'a mut String) -> Obj<'a> {
        out.push('{');
        Obj { out, empty: true }
    }

    /// Writes `"name":` (after a comma if needed); the caller writes the value.
    fn key(&mut self, name: &str) -> &mut String {
        if !self.empty {
            self.out.push(',');
        }
        self.empty = false;
        self.out.push('"');
        self.out.push_str(name); // field names need no escaping
        self.out.push_str("\":");
        self.out
    }

    fn string(&mut self, name: &str, v: &str) {
        if !v.is_empty() {
            string(self.key(name), v);
        }
    }

    /// A 64-bit unsigned field (fixed64, uint64): a decimal string.
    fn u64(&mut self, name: &str, v: u64) {
        if v != 0 {
            u64_value(self.key(name), v);
        }
    }

    fn u32(&mut self, name: &str, v: u32) {
        if v != 0 {
            self.key(name).push_str(itoa::Buffer::new().format(v));
        }
    }

    /// A 32-bit signed field (int32, sint32, an enum's number).
    fn i32(&mut self, name: &str, v: i32) {
        if v != 0 {
            self.key(name).push_str(itoa::Buffer::new().format(v));
        }
    }

    fn bool(&mut self, name: &str, v: bool) {
        if v {
            self.key(name).push_str("true");
        }
    }

    /// A plain `double`: left out at 0 (either sign, as protobuf's binary encoding does).
    fn f64(&mut self, name: &str, v: f64) {
        if v != 0.0 {
            f64_value(self.key(name), v);
        }
    }

    /// A proto3 `optional double`: written when present, even 0.
    fn optional_f64(&mut self, name: &str, v: Option<f64>) {
        if let Some(v) = v {
            f64_value(self.key(name), v);
        }
    }

    /// A repeated field, left out when empty.
    fn list<T>(&mut self, name: &str, items: &[T], mut write: impl FnMut(&mut String, &T)) {
        if items.is_empty() {
            return;
        }
        let out = self.key(name);
        out.push('[');
        for (i, item) in items.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            write(out, item);
        }
        out.push(']');
    }

    /// A message field, left out when absent (an empty present one is `{}`).
    fn message<T>(&mut self, name: &str, m: Option<&T>, write: impl FnOnce(&mut String, &T)) {
        if let Some(m) = m {
            write(self.key(name), m);
        }
    }

    fn close(self) {
        self.out.push('}');
    }
}

fn u64_value(out: &mut String, v: u64) {
    out.push('"');
    out.push_str(itoa::Buffer::new().format(v));
    out.push('"');
}

fn i64_value(out: &mut String, v: i64) {
    out.push('"');
    out.push_str(itoa::Buffer::new().format(v));
    out.push('"');
}

/// A double: ryu's shortest round-trip digits, which are always a valid JSON number (`1.0`,
/// `1e300`, `-1.5e-7`: no `inf`, no leading `.`, no `+` in the exponent); the non-finite
/// values as the strings proto3 JSON uses.
fn f64_value(out: &mut String, v: f64) {
    if v.is_nan() {
        out.push_str("\"NaN\"");
    } else if v == f64::INFINITY {
        out.push_str("\"Infinity\"");
    } else if v == f64::NEG_INFINITY {
        out.push_str("\"-Infinity\"");
    } else {
        out.push_str(ryu::Buffer::new().format_finite(v));
    }
}

const HEX: &[u8; 16] = b"0123456789abcdef";

fn hex_value(out: &mut String, bytes: &[u8]) {
    out.push('"');
    for &b in bytes {
        out.push(char::from(HEX[usize::from(b >> 4)]));
        out.push(char::from(HEX[usize::from(b & 0xf)]));
    }
    out.push('"');
}

/// Standard base64 with padding (proto3 JSON's `bytes`).
fn base64_value(out: &mut String, bytes: &[u8]) {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    out.push('"');
    for chunk in bytes.chunks(3) {
        let n = chunk.iter().enumerate().fold(0u32, |n, (i, &b)| n | u32::from(b) << (16 - 8 * i));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[(n >> (18 - 6 * i) & 0x3f) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out.push('"');
}

// ---------------------------------------------------------------------------------------------
// The answer.

/// Reads a JSON `ExportMetricsServiceResponse`: only its `partialSuccess` (`rejectedDataPoints`
/// as a string or a number, `errorMessage`), every other member skipped. The original
/// snake_case names are accepted too, as proto3 JSON parsers do. An empty body is an empty
/// response.
pub(crate) fn decode_response(body: &[u8]) -> Result<ExportMetricsServiceResponse, String> {
    let mut p = Parser { s: body, i: 0 };
    p.ws();
    if p.i == body.len() {
        return Ok(ExportMetricsServiceResponse { partial_success: None });
    }
    let mut partial = None;
    p.object(&mut |p, key| {
        if !matches!(key.as_str(), "partialSuccess" | "partial_success") {
            return p.skip(0);
        }
        if p.null() {
            return Ok(());
        }
        let mut ps = ExportMetricsPartialSuccess { rejected_data_points: 0, error_message: String::new() };
        p.object(&mut |p, key| match key.as_str() {
            _ if p.null() => Ok(()),
            "rejectedDataPoints" | "rejected_data_points" => {
                ps.rejected_data_points = p.int64()?;
                Ok(())
            }
            "errorMessage" | "error_message" => {
                ps.error_message = p.string()?;
                Ok(())
            }
            _ => p.skip(0),
        })?;
        partial = Some(ps);
        Ok(())
    })?;
    p.ws();
    if p.i != body.len() {
        return Err(p.error("trailing characters"));
    }
    Ok(ExportMetricsServiceResponse { partial_success: partial })
}

/// Nesting the answer's reader follows before it gives up (its input is bounded, its stack
/// should be too).
const MAX_DEPTH: usize = 64;

/// A minimal JSON reader over the receiver's answer.
struct Parser<'a> {
    s: &'a [u8],
    i: usize,
}

impl Parser<'_> {
    fn error(&self, what: &str) -> String {
        format!("JSON answer: {what} at byte {}", self.i)
    }

    fn ws(&mut self) {
        while matches!(self.s.get(self.i), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.i += 1;
        }
    }

    fn peek(&mut self) -> Option<u8> {
        self.ws();
        self.s.get(self.i).copied()
    }

    fn expect(&mut self, c: u8) -> Result<(), String> {
        if self.peek() == Some(c) {
            self.i += 1;
            Ok(())
        } else {
            Err(self.error(&format!("expected {:?}", char::from(c))))
        }
    }

    fn literal(&mut self, word: &str) -> Result<(), String> {
        if self.s[self.i..].starts_with(word.as_bytes()) {
            self.i += word.len();
            Ok(())
        } else {
            Err(self.error("unexpected character"))
        }
    }

    /// Consumes a `null` if one comes next.
    fn null(&mut self) -> bool {
        self.peek() == Some(b'n') && self.literal("null").is_ok()
    }

    /// An object: `member` is called with each key and must consume its value.
    fn object(&mut self, member: &mut dyn FnMut(&mut Self, String) -> Result<(), String>) -> Result<(), String> {
        self.expect(b'{')?;
        if self.peek() == Some(b'}') {
            self.i += 1;
            return Ok(());
        }
        loop {
            let key = self.string()?;
            self.expect(b':')?;
            member(self, key)?;
            match self.peek() {
                Some(b',') => self.i += 1,
                Some(b'}') => {
                    self.i += 1;
                    return Ok(());
                }
                _ => return Err(self.error("expected ',' or '}'")),
            }
        }
    }

    fn string(&mut self) -> Result<String, String> {
        self.expect(b'"')?;
        let mut out = Vec::new();
        loop {
            let Some(&b) = self.s.get(self.i) else { return Err(self.error("unterminated string")) };
            self.i += 1;
            match b {
                b'"' => break,
                b'\\' => {
                    let Some(&e) = self.s.get(self.i) else { return Err(self.error("unterminated string")) };
                    self.i += 1;
                    let c = match e {
                        b'"' | b'\\' | b'/' => char::from(e),
                        b'b' => '\u{8}',
                        b'f' => '\u{c}',
                        b'n' => '\n',
                        b'r' => '\r',
                        b't' => '\t',
                        b'u' => {
                            let hi = self.hex4()?;
                            let code = if (0xd800..0xdc00).contains(&hi) && self.s[self.i..].starts_with(b"\\u") {
                                self.i += 2;
                                let lo = self.hex4()?;
                                if !(0xdc00..0xe000).contains(&lo) {
                                    return Err(self.error("unpaired surrogate"));
                                }
                                0x10000 + ((hi - 0xd800) << 10) + (lo - 0xdc00)
                            } else {
                                hi
                            };
                            char::from_u32(code).ok_or_else(|| self.error("unpaired surrogate"))?
                        }
                        _ => return Err(self.error("bad escape")),
                    };
                    out.extend_from_slice(c.encode_utf8(&mut [0; 4]).as_bytes());
                }
                0..=0x1f => return Err(self.error("control character in a string")),
                _ => out.push(b),
            }
        }
        String::from_utf8(out).map_err(|_| self.error("invalid UTF-8"))
    }

    fn hex4(&mut self) -> Result<u32, String> {
        let digits = self.s.get(self.i..self.i + 4).and_then(|h| std::str::from_utf8(h).ok());
        let v = digits.and_then(|h| u32::from_str_radix(h, 16).ok()).ok_or_else(|| self.error("bad \\u escape"))?;
        self.i += 4;
        Ok(v)
    }

    /// A number token's text (not checked beyond its characters: `int64` parses it).
    fn number(&mut self) -> &str {
        self.ws();
        let start = self.i;
        while matches!(self.s.get(self.i), Some(b'0'..=b'9' | b'-' | b'+' | b'.' | b'e' | b'E')) {
            self.i += 1;
        }
        std::str::from_utf8(&self.s[start..self.i]).unwrap_or("")
    }

    /// A proto3 JSON `int64`: a decimal string or a number (an integral float like `3.0` or
    /// `3e0` too).
    fn int64(&mut self) -> Result<i64, String> {
        let text = if self.peek() == Some(b'"') { self.string()? } else { self.number().to_owned() };
        if let Ok(v) = text.parse::<i64>() {
            return Ok(v);
        }
        match text.parse::<f64>() {
            Ok(f) if f.fract() == 0.0 && f.abs() < 9.2e18 => Ok(f as i64),
            _ => Err(self.error(&format!("{text:?} is not an int64"))),
        }
    }

    /// Skips one value of any type.
    fn skip(&mut self, depth: usize) -> Result<(), String> {
        if depth > MAX_DEPTH {
            return Err(self.error("nested too deeply"));
        }
        match self.peek() {
            Some(b'{') => self.object(&mut |p, _| p.skip(depth + 1)),
            Some(b'[') => {
                self.i += 1;
                if self.peek() == Some(b']') {
                    self.i += 1;
                    return Ok(());
                }
                loop {
                    self.skip(depth + 1)?;
                    match self.peek() {
                        Some(b',') => self.i += 1,
                        Some(b']') => {
                            self.i += 1;
                            return Ok(());
                        }
                        _ => return Err(self.error("expected ',' or ']'")),
                    }
                }
            }
            Some(b'"') => self.string().map(drop),
            Some(b't') => self.literal("true"),
            Some(b'f') => self.literal("false"),
            Some(b'n') => self.literal("null"),
            Some(b'-' | b'0'..=b'9') => {
                let n = self.number();
                if n.parse::<f64>().is_ok() {
                    Ok(())
                } else {
                    Err(self.error("bad number"))
                }
            }
            _ => Err(self.error("unexpected character")),
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::Value as Json;

    use super::*;
    use crate::export::otlp::proto::{
        self, exponential_histogram_data_point, AggregationTemporality, ArrayValue, KeyValueList,
    };

    fn parse(s: &str) -> Json {
        serde_json::from_str(s).unwrap_or_else(|e| panic!("invalid JSON ({e}): {s}"))
    }

    fn kv(key: &str, v: any_value::Value) -> KeyValue {
        KeyValue { key: key.to_owned(), value: Some(AnyValue { value: Some(v) }) }
    }

    /// One of every message and oneof case, with the values that JSON makes awkward.
    fn request() -> ExportMetricsServiceRequest {
        let point = |value| NumberDataPoint {
            attributes: vec![KeyValue::string("route", "/api")],
            start_time_unix_nano: 1_700_000_000_000_000_000,
            time_unix_nano: u64::MAX,
            value: Some(value),
            exemplars: Vec::new(),
            flags: 0,
        };
        let metric = |name: &str, data| Metric {
            name: name.to_owned(),
            description: String::new(),
            unit: "s".to_owned(),
            data: Some(data),
            metadata: Vec::new(),
        };
        let metrics = vec![
            metric(
                "sum",
                Data::Sum(proto::Sum {
                    data_points: vec![
                        point(number_data_point::Value::AsInt(i64::MIN)),
                        point(number_data_point::Value::AsInt(0)),
                    ],
                    aggregation_temporality: AggregationTemporality::Cumulative as i32,
                    is_monotonic: true,
                }),
            ),
            metric(
                "gauge",
                Data::Gauge(proto::Gauge {
                    data_points: [f64::NAN, f64::INFINITY, f64::NEG_INFINITY, 1e300, -0.0, 5e-324, 0.1, 1e21]
                        .into_iter()
                        .map(|v| point(number_data_point::Value::AsDouble(v)))
                        .collect(),
                }),
            ),
            metric(
                "histogram",
                Data::Histogram(proto::Histogram {
                    data_points: vec![HistogramDataPoint {
                        attributes: Vec::new(),
                        start_time_unix_nano: 1,
                        time_unix_nano: 2,
                        count: 3,
                        sum: Some(0.0),
                        bucket_counts: vec![0, 3],
                        explicit_bounds: vec![0.25],
                        exemplars: vec![Exemplar {
                            filtered_attributes: vec![KeyValue::string("user", "x")],
                            time_unix_nano: 5,
                            value: Some(exemplar::Value::AsDouble(0.5)),
                            span_id: vec![0x00, 0xf0, 0x67, 0xaa, 0x0b, 0xa9, 0x02, 0xb7],
                            trace_id: (0..16).map(|i| i * 17).collect(),
                        }],
                        flags: 1,
                        min: Some(0.0),
                        max: None,
                    }],
                    aggregation_temporality: AggregationTemporality::Delta as i32,
                }),
            ),
            metric(
                "exponential",
                Data::ExponentialHistogram(proto::ExponentialHistogram {
                    data_points: vec![ExponentialHistogramDataPoint {
                        attributes: Vec::new(),
                        start_time_unix_nano: 1,
                        time_unix_nano: 2,
                        count: 4,
                        sum: Some(2.5),
                        scale: -3,
                        zero_count: 1,
                        positive: Some(exponential_histogram_data_point::Buckets {
                            offset: -7,
                            bucket_counts: vec![1, 0, 2],
                        }),
                        negative: Some(exponential_histogram_data_point::Buckets { offset: 0, bucket_counts: vec![] }),
                        flags: 0,
                        exemplars: Vec::new(),
                        min: None,
                        max: Some(2.0),
                        zero_threshold: 1e-9,
                    }],
                    aggregation_temporality: AggregationTemporality::Cumulative as i32,
                }),
            ),
            metric(
                "summary",
                Data::Summary(proto::Summary {
                    data_points: vec![SummaryDataPoint {
                        attributes: Vec::new(),
                        start_time_unix_nano: 1,
                        time_unix_nano: 2,
                        count: 0,
                        sum: 0.0,
                        quantile_values: vec![ValueAtQuantile { quantile: 0.0, value: 1.5 }],
                        flags: 0,
                    }],
                }),
            ),
        ];
        ExportMetricsServiceRequest {
            resource_metrics: vec![ResourceMetrics {
                resource: Some(Resource {
                    attributes: vec![
                        KeyValue::string("service.name", "q\"uote\\ \n\t\u{1}\u{7f} é 𝄞 </script>"),
                        KeyValue::string("empty", ""),
                        kv("bool", any_value::Value::BoolValue(false)),
                        kv("int", any_value::Value::IntValue(-42)),
                        kv("double", any_value::Value::DoubleValue(2.5)),
                        kv("bytes", any_value::Value::BytesValue(b"\x00\xffab".to_vec())),
                        kv(
                            "array",
                            any_value::Value::ArrayValue(ArrayValue {
                                values: vec![
                                    AnyValue { value: Some(any_value::Value::IntValue(1)) },
                                    AnyValue { value: None },
                                ],
                            }),
                        ),
                        kv(
                            "kvlist",
                            any_value::Value::KvlistValue(KeyValueList { values: vec![KeyValue::string("k", "v")] }),
                        ),
                        KeyValue { key: "unset".to_owned(), value: None },
                    ],
                    dropped_attributes_count: 2,
                }),
                scope_metrics: vec![ScopeMetrics {
                    scope: Some(InstrumentationScope {
                        name: "shardmetrics".to_owned(),
                        version: "0.1.0".to_owned(),
                        ..Default::default()
                    }),
                    metrics,
                    schema_url: "https://opentelemetry.io/schemas/1.24.0".to_owned(),
                }],
                schema_url: String::new(),
            }],
        }
    }

    #[test]
    fn serde_json_parses_it_and_every_field_follows_the_otlp_json_rules() {
        let req = request();
        let text = encode(&req);
        let j = parse(&text);
        let rm = &j["resourceMetrics"][0];
        assert!(rm.get("schemaUrl").is_none(), "empty strings are left out");
        let attrs = rm["resource"]["attributes"].as_array().unwrap();
        assert_eq!(attrs[0]["value"]["stringValue"], "q\"uote\\ \n\t\u{1}\u{7f} é 𝄞 </script>");
        assert_eq!(attrs[1]["value"], serde_json::json!({"stringValue": ""}), "a set oneof is written");
        assert_eq!(attrs[2]["value"], serde_json::json!({"boolValue": false}));
        assert_eq!(attrs[3]["value"], serde_json::json!({"intValue": "-42"}), "int64 as a string");
        assert_eq!(attrs[4]["value"], serde_json::json!({"doubleValue": 2.5}));
        assert_eq!(attrs[5]["value"], serde_json::json!({"bytesValue": "AP9hYg=="}), "other bytes: base64");
        assert_eq!(attrs[6]["value"], serde_json::json!({"arrayValue": {"values": [{"intValue": "1"}, {}]}}));
        assert_eq!(
            attrs[7]["value"],
            serde_json::json!({"kvlistValue": {"values": [{"key": "k", "value": {"stringValue": "v"}}]}})
        );
        assert_eq!(attrs[8], serde_json::json!({"key": "unset"}));
        assert_eq!(rm["resource"]["droppedAttributesCount"], 2, "32-bit integers are numbers");
        let sm = &rm["scopeMetrics"][0];
        assert_eq!(sm["scope"], serde_json::json!({"name": "shardmetrics", "version": "0.1.0"}));
        assert_eq!(sm["schemaUrl"], "https://opentelemetry.io/schemas/1.24.0");
        let m = |name: &str| sm["metrics"].as_array().unwrap().iter().find(|m| m["name"] == name).unwrap();

        let sum = &m("sum")["sum"];
        assert_eq!((&sum["aggregationTemporality"], &sum["isMonotonic"]), (&Json::from(2), &Json::from(true)));
        let p = &sum["dataPoints"];
        assert_eq!(p[0]["asInt"], i64::MIN.to_string());
        assert_eq!(p[1]["asInt"], "0", "a zero in a set oneof is written");
        assert_eq!(p[0]["startTimeUnixNano"], "1700000000000000000");
        assert_eq!(p[0]["timeUnixNano"], u64::MAX.to_string(), "fixed64 as a string, exactly");
        assert!(p[0].get("flags").is_none() && p[0].get("exemplars").is_none());
        assert_eq!(m("sum")["unit"], "s");
        assert!(m("sum").get("description").is_none());

        let values: Vec<&Json> =
            m("gauge")["gauge"]["dataPoints"].as_array().unwrap().iter().map(|p| &p["asDouble"]).collect();
        assert_eq!(values[..3], [&Json::from("NaN"), &Json::from("Infinity"), &Json::from("-Infinity")]);
        for (v, want) in values[3..].iter().zip([1e300, -0.0, 5e-324, 0.1, 1e21]) {
            assert_eq!(v.as_f64().unwrap().to_bits(), f64::to_bits(want), "{v} round-trips exactly");
        }
        assert!(!text.contains("inf") && !text.contains("e+"), "{text}");

        let h = &m("histogram")["histogram"];
        assert_eq!(h["aggregationTemporality"], 1);
        let p = &h["dataPoints"][0];
        assert_eq!(p["count"], "3");
        assert_eq!(p["sum"], 0.0, "a present optional is written even at 0");
        assert_eq!(p["min"], 0.0);
        assert!(p.get("max").is_none(), "an absent optional is left out");
        assert_eq!(p["bucketCounts"], serde_json::json!(["0", "3"]));
        assert_eq!(p["explicitBounds"], serde_json::json!([0.25]));
        assert_eq!(p["flags"], 1);
        let e = &p["exemplars"][0];
        assert_eq!(e["traceId"], "00112233445566778899aabbccddeeff", "hex, not base64");
        assert_eq!(e["spanId"], "00f067aa0ba902b7");
        assert_eq!((&e["asDouble"], &e["timeUnixNano"]), (&Json::from(0.5), &Json::from("5")));
        assert_eq!(e["filteredAttributes"][0]["key"], "user");

        let x = &m("exponential")["exponentialHistogram"]["dataPoints"][0];
        assert_eq!(
            (&x["scale"], &x["zeroCount"], &x["zeroThreshold"]),
            (&Json::from(-3), &Json::from("1"), &Json::from(1e-9))
        );
        assert_eq!(x["positive"], serde_json::json!({"offset": -7, "bucketCounts": ["1", "0", "2"]}));
        assert_eq!(x["negative"], serde_json::json!({}), "a present empty message is {{}}");
        assert_eq!((&x["max"], x.get("min")), (&Json::from(2.0), None));

        let s = &m("summary")["summary"]["dataPoints"][0];
        assert!(s.get("count").is_none() && s.get("sum").is_none(), "plain zeros are left out");
        assert_eq!(s["quantileValues"], serde_json::json!([{"value": 1.5}]));

        // Only lowerCamelCase keys anywhere.
        fn keys(v: &Json, out: &mut Vec<String>) {
            match v {
                Json::Object(m) => {
                    for (k, v) in m {
                        out.push(k.clone());
                        keys(v, out);
                    }
                }
                Json::Array(a) => a.iter().for_each(|v| keys(v, out)),
                _ => {}
            }
        }
        let mut all = Vec::new();
        keys(&j, &mut all);
        assert!(all.iter().all(|k| k.chars().all(|c| c.is_ascii_alphanumeric())), "{all:?}");
    }

    #[test]
    fn an_encoder_request_is_valid_json() {
        use crate::{
            export::otlp::{Encoder, Temporality},
            Registry, Unit,
        };
        let r = Registry::builder().manual().build();
        r.counter("c_total").label("k", "v").build().unwrap().add(3);
        r.gauge("g").build().unwrap().set(f64::NEG_INFINITY);
        let h = r.histogram("h").unit(Unit::Nanoseconds).quantiles(&[0.5]).build().unwrap();
        h.record_with_exemplar(5_000, &[("trace_id", "4bf92f3577b34da6a3ce929d0e0e4736")]);
        let enc = Encoder::new(vec![("service.name".into(), "svc".into())], Temporality::Cumulative, r.started_at());
        let (req, _) = enc.encode(&r.flush());
        let j = parse(&encode(&req));
        let metrics = j["resourceMetrics"][0]["scopeMetrics"][0]["metrics"].as_array().unwrap();
        let m = |name: &str| metrics.iter().find(|m| m["name"] == name).unwrap_or_else(|| panic!("{name}"));
        assert_eq!(m("c")["sum"]["dataPoints"][0]["asInt"], "3");
        assert_eq!(m("g")["gauge"]["dataPoints"][0]["asDouble"], "-Infinity");
        let e = &m("h")["histogram"]["dataPoints"][0]["exemplars"][0];
        assert_eq!(e["traceId"], "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(e["asDouble"], 5e-6);
        assert!(m("h_quantiles")["summary"]["dataPoints"][0]["quantileValues"].is_array());
    }

    #[test]
    fn doubles_are_valid_json_numbers_that_round_trip() {
        let mut x = 1u64;
        for _ in 0..20_000 {
            // xorshift: bit patterns across every exponent, subnormals included.
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let v = f64::from_bits(x);
            if !v.is_finite() {
                continue;
            }
            let mut s = String::new();
            f64_value(&mut s, v);
            let back: f64 = serde_json::from_str(&s).unwrap_or_else(|e| panic!("{s}: {e}"));
            assert_eq!(back.to_bits(), v.to_bits(), "{s}");
        }
        for (v, want) in [(1e300, "1e300"), (1.0, "1.0"), (-1.5e-7, "-1.5e-7"), (123.456, "123.456")] {
            let mut s = String::new();
            f64_value(&mut s, v);
            assert_eq!(s, want);
        }
    }

    #[test]
    fn strings_escape_every_control_character_and_keep_unicode() {
        let all: String = (0u8..0x20).map(char::from).chain("\"\\/é😀\u{2028}".chars()).collect();
        let mut s = String::new();
        string(&mut s, &all);
        assert_eq!(serde_json::from_str::<String>(&s).unwrap(), all);
        assert!(s.contains("\\u001f") && s.contains("\\n") && s.contains("é😀"), "{s}");
    }

    #[test]
    fn base64_matches_the_standard_alphabet_with_padding() {
        for (bytes, want) in [
            (&b""[..], ""),
            (b"f", "Zg=="),
            (b"fo", "Zm8="),
            (b"foo", "Zm9v"),
            (b"foob", "Zm9vYg=="),
            (b"\xfb\xff", "+/8="),
        ] {
            let mut s = String::new();
            base64_value(&mut s, bytes);
            assert_eq!(s, format!("\"{want}\""));
        }
    }

    #[test]
    fn the_answers_partial_success() {
        let ps = |body: &str| decode_response(body.as_bytes()).map(|r| r.partial_success);
        let some =
            |n, m: &str| Ok(Some(ExportMetricsPartialSuccess { rejected_data_points: n, error_message: m.into() }));
        assert_eq!(ps(r#"{"partialSuccess":{"rejectedDataPoints":"3","errorMessage":"too old"}}"#), some(3, "too old"));
        assert_eq!(ps(r#" { "partialSuccess" : { "rejectedDataPoints" : 7 } } "#), some(7, ""));
        assert_eq!(
            ps(r#"{"partial_success":{"rejected_data_points":2.0,"error_message":"\u00e9\ud83d\ude00\n"}}"#),
            some(2, "é😀\n")
        );
        assert_eq!(
            ps(r#"{"other":[1,{"a":[true,false,null,-1.5e3,"x"]}],"partialSuccess":{"errorMessage":"warn","x":{}}}"#),
            some(0, "warn")
        );
        assert_eq!(ps(r#"{"partialSuccess":{}}"#), some(0, ""));
        assert_eq!(ps(r#"{"partialSuccess":null}"#), Ok(None));
        assert_eq!(ps("{}"), Ok(None));
        assert_eq!(ps(""), Ok(None), "an empty answer");
        assert_eq!(ps(" \n"), Ok(None));
        for bad in [
            "{",
            r#"{"partialSuccess":{"rejectedDataPoints":"x"}}"#,
            r#"{"partialSuccess":{"rejectedDataPoints":1.5}}"#,
            r#"{"a":tru}"#,
            r#"{"a":"\ud800"}"#,
            r#"{"a":1}x"#,
            "\x0a\x0b\x08\x03",
            &("[".repeat(100) + &"]".repeat(100)),
            &(r#"{"a":"#.to_owned() + &"[".repeat(1000)),
        ] {
            assert!(ps(bad).is_err(), "{bad:?}");
        }
    }
}
