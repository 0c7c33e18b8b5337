//! The exporter's settings from the OpenTelemetry SDK environment variables, parsed by a pure
//! function over a look-up closure ([`EnvConfig::from_lookup`]) so that tests never touch the
//! process environment. Invalid values are reported as warnings and the default is kept, as the
//! OpenTelemetry specification asks ("SHOULD log a warning and ignore the setting").

#![forbid(unsafe_code)]

use std::time::Duration;

use super::Histograms;

/// The OTLP/HTTP metrics endpoint when none is configured.
pub const DEFAULT_ENDPOINT: &str = "http://localhost:4318/v1/metrics";
/// The path appended to `OTEL_EXPORTER_OTLP_ENDPOINT` (the metrics-specific endpoint is used as
/// is).
pub const METRICS_PATH: &str = "v1/metrics";
/// OTel's default request timeout.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
/// OTel's default export interval (`OTEL_METRIC_EXPORT_INTERVAL`).
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(60);

/// Request body compression (`OTEL_EXPORTER_OTLP_COMPRESSION`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Compression {
    /// No compression (the OTel default).
    #[default]
    None,
    /// gzip, sent with `Content-Encoding: gzip`.
    Gzip,
}

/// The OTLP transport and encoding (`OTEL_EXPORTER_OTLP_[METRICS_]PROTOCOL`). OTLP over gRPC
/// (`grpc`) is not built: asking for it makes [`OtlpBuilder::build`](super::OtlpBuilder::build)
/// fail with [`ExportError::Unsupported`](crate::export::ExportError::Unsupported).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Protocol {
    /// `http/protobuf` (the OTel default): binary protobuf, `Content-Type: application/x-protobuf`.
    #[default]
    HttpProtobuf,
    /// `http/json`: the OTLP JSON encoding of the same messages ([`json`](super::json)),
    /// `Content-Type: application/json`.
    HttpJson,
}

impl Protocol {
    /// The request's `Content-Type`.
    pub fn content_type(self) -> &'static str {
        match self {
            Protocol::HttpProtobuf => super::CONTENT_TYPE,
            Protocol::HttpJson => super::json::CONTENT_TYPE,
        }
    }
}

/// Aggregation temporality of sums and histograms
/// (`OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Temporality {
    /// Totals since the start (the default, what Prometheus-compatible receivers want).
    #[default]
    Cumulative,
    /// Increases since the previous export, computed by the exporter from consecutive
    /// snapshots (the recording path does not change).
    Delta,
    /// OTel's `lowmemory`: delta for (synchronous) counters and histograms, cumulative for
    /// up-down counters. Every counter here is monotonic, so this is [`Delta`](Self::Delta) for
    /// counters and histograms; gauges are gauges in every mode.
    LowMemory,
}

impl Temporality {
    /// Whether counters and histograms are exported as deltas.
    pub(crate) fn is_delta(self) -> bool {
        !matches!(self, Temporality::Cumulative)
    }
}

/// What the OTel environment variables configure, every field already defaulted.
#[derive(Debug, Clone, PartialEq)]
pub struct EnvConfig {
    /// The full URL requests are POSTed to.
    pub endpoint: String,
    /// Extra request headers: the generic ones, then the metrics-specific ones (which replace
    /// a generic header of the same name).
    pub headers: Vec<(String, String)>,
    pub timeout: Duration,
    pub compression: Compression,
    /// `OTEL_SERVICE_NAME`, which wins over a `service.name` in `OTEL_RESOURCE_ATTRIBUTES`.
    pub service_name: Option<String>,
    /// `OTEL_RESOURCE_ATTRIBUTES`, in order, percent-decoded.
    pub resource_attributes: Vec<(String, String)>,
    pub interval: Duration,
    pub temporality: Temporality,
    /// `OTEL_EXPORTER_OTLP_METRICS_DEFAULT_HISTOGRAM_AGGREGATION`.
    pub histograms: Histograms,
    pub protocol: Protocol,
    /// The setting that asked for a protocol this exporter does not speak (`grpc`), as
    /// `NAME=value`: [`OtlpBuilder::build`](super::OtlpBuilder::build) fails with
    /// [`ExportError::Unsupported`](crate::export::ExportError::Unsupported) rather than send
    /// HTTP to a gRPC port. [`OtlpBuilder::protocol`](super::OtlpBuilder::protocol) clears it.
    pub unsupported_protocol: Option<String>,
}

impl Default for EnvConfig {
    fn default() -> Self {
        EnvConfig {
            endpoint: DEFAULT_ENDPOINT.to_owned(),
            headers: Vec::new(),
            timeout: DEFAULT_TIMEOUT,
            compression: Compression::None,
            service_name: None,
            resource_attributes: Vec::new(),
            interval: DEFAULT_INTERVAL,
            temporality: Temporality::Cumulative,
            histograms: Histograms::Explicit,
            protocol: Protocol::HttpProtobuf,
            unsupported_protocol: None,
        }
    }
}

impl EnvConfig {
    /// Reads the process environment (see [`from_lookup`](Self::from_lookup)).
    pub fn from_env() -> (EnvConfig, Vec<String>) {
        Self::from_lookup(|k| std::env::var(k).ok())
    }

    /// The settings the OTel variables give, looking each up with `var`; the second value lists
    /// the variables that were set but invalid (their defaults are kept). Empty values count
    /// as unset.
    ///
    /// | variable | meaning |
    /// |---|---|
    /// | `OTEL_EXPORTER_OTLP_METRICS_ENDPOINT` | the full URL, used as is |
    /// | `OTEL_EXPORTER_OTLP_ENDPOINT` | base URL; `/v1/metrics` is appended |
    /// | `OTEL_EXPORTER_OTLP_[METRICS_]HEADERS` | `k=v,k2=v2`, percent-decoded |
    /// | `OTEL_EXPORTER_OTLP_[METRICS_]TIMEOUT` | request timeout in milliseconds (10000) |
    /// | `OTEL_EXPORTER_OTLP_[METRICS_]COMPRESSION` | `gzip` or `none` |
    /// | `OTEL_EXPORTER_OTLP_[METRICS_]PROTOCOL` | `http/protobuf` (default) or `http/json`; `grpc` is not supported (build fails) |
    /// | `OTEL_SERVICE_NAME` | resource `service.name` |
    /// | `OTEL_RESOURCE_ATTRIBUTES` | `k=v,k2=v2`, percent-decoded |
    /// | `OTEL_METRIC_EXPORT_INTERVAL` | milliseconds between exports (60000) |
    /// | `OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE` | `cumulative`, `delta`, `lowmemory` |
    /// | `OTEL_EXPORTER_OTLP_METRICS_DEFAULT_HISTOGRAM_AGGREGATION` | `explicit_bucket_histogram` (default), `base2_exponential_bucket_histogram` |
    ///
    /// The metrics-specific variable wins over the generic one.
    pub fn from_lookup(var: impl Fn(&str) -> Option<String>) -> (EnvConfig, Vec<String>) {
        let get = |k: &str| var(k).map(|v| v.trim().to_owned()).filter(|v| !v.is_empty());
        let mut c = EnvConfig::default();
        let mut warnings = Vec::new();
        if let Some(url) = get("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT") {
            c.endpoint = url;
        } else if let Some(base) = get("OTEL_EXPORTER_OTLP_ENDPOINT") {
            c.endpoint = append_metrics_path(&base);
        }
        for k in ["OTEL_EXPORTER_OTLP_HEADERS", "OTEL_EXPORTER_OTLP_METRICS_HEADERS"] {
            if let Some(v) = get(k) {
                match parse_pairs(&v) {
                    Ok(pairs) => {
                        for (name, value) in pairs {
                            c.headers.retain(|(n, _)| !n.eq_ignore_ascii_case(&name));
                            c.headers.push((name, value));
                        }
                    }
                    Err(e) => warnings.push(format!("{k}: {e}; ignored")),
                }
            }
        }
        let specific = |generic: &str, specific: &str| {
            get(specific).map(|v| (specific.to_owned(), v)).or_else(|| get(generic).map(|v| (generic.to_owned(), v)))
        };
        if let Some((k, v)) = specific("OTEL_EXPORTER_OTLP_TIMEOUT", "OTEL_EXPORTER_OTLP_METRICS_TIMEOUT") {
            match v.parse::<u64>() {
                Ok(ms) => c.timeout = Duration::from_millis(ms),
                Err(_) => warnings.push(format!("{k}={v:?} is not a number of milliseconds; using the default")),
            }
        }
        if let Some((k, v)) = specific("OTEL_EXPORTER_OTLP_COMPRESSION", "OTEL_EXPORTER_OTLP_METRICS_COMPRESSION") {
            match v.to_ascii_lowercase().as_str() {
                "gzip" => c.compression = Compression::Gzip,
                "none" => c.compression = Compression::None,
                _ => warnings.push(format!("{k}={v:?}: only gzip and none are supported; using none")),
            }
        }
        if let Some((k, v)) = specific("OTEL_EXPORTER_OTLP_PROTOCOL", "OTEL_EXPORTER_OTLP_METRICS_PROTOCOL") {
            match v.to_ascii_lowercase().as_str() {
                "http/protobuf" => c.protocol = Protocol::HttpProtobuf,
                "http/json" => c.protocol = Protocol::HttpJson,
                "grpc" => c.unsupported_protocol = Some(format!("{k}={v}")),
                _ => {
                    warnings.push(format!("{k}={v:?}: expected http/protobuf, http/json or grpc; using http/protobuf"))
                }
            }
        }
        c.service_name = get("OTEL_SERVICE_NAME");
        if let Some(v) = get("OTEL_RESOURCE_ATTRIBUTES") {
            match parse_pairs(&v) {
                Ok(pairs) => c.resource_attributes = pairs,
                Err(e) => warnings.push(format!("OTEL_RESOURCE_ATTRIBUTES: {e}; ignored")),
            }
        }
        if let Some(v) = get("OTEL_METRIC_EXPORT_INTERVAL") {
            match v.parse::<u64>() {
                Ok(ms) if ms > 0 => c.interval = Duration::from_millis(ms),
                _ => warnings.push(format!(
                    "OTEL_METRIC_EXPORT_INTERVAL={v:?} is not a positive number of milliseconds; using the default"
                )),
            }
        }
        if let Some(v) = get("OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE") {
            match v.to_ascii_lowercase().as_str() {
                "cumulative" => c.temporality = Temporality::Cumulative,
                "delta" => c.temporality = Temporality::Delta,
                "lowmemory" => c.temporality = Temporality::LowMemory,
                _ => warnings.push(format!(
                    "OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE={v:?}: expected cumulative, delta or \
                     lowmemory; using cumulative"
                )),
            }
        }
        if let Some(v) = get("OTEL_EXPORTER_OTLP_METRICS_DEFAULT_HISTOGRAM_AGGREGATION") {
            match v.to_ascii_lowercase().as_str() {
                "explicit_bucket_histogram" => c.histograms = Histograms::Explicit,
                "base2_exponential_bucket_histogram" => c.histograms = Histograms::Exponential,
                _ => warnings.push(format!(
                    "OTEL_EXPORTER_OTLP_METRICS_DEFAULT_HISTOGRAM_AGGREGATION={v:?}: expected \
                     explicit_bucket_histogram or base2_exponential_bucket_histogram; using explicit_bucket_histogram"
                )),
            }
        }
        (c, warnings)
    }
}

/// `base` + `/v1/metrics`, with exactly one slash between them.
pub(crate) fn append_metrics_path(base: &str) -> String {
    if base.ends_with('/') {
        format!("{base}{METRICS_PATH}")
    } else {
        format!("{base}/{METRICS_PATH}")
    }
}

/// Parses `k=v,k2=v2` (the W3C-baggage-like list of `OTEL_RESOURCE_ATTRIBUTES` and
/// `OTEL_EXPORTER_OTLP_HEADERS`): whitespace around keys and values trimmed, both
/// percent-decoded, empty members skipped. A member without `=`, with an empty key, or with a
/// bad percent escape makes the whole list invalid, as the OTel SDKs treat it.
pub(crate) fn parse_pairs(list: &str) -> Result<Vec<(String, String)>, String> {
    let mut out = Vec::new();
    for member in list.split(',') {
        if member.trim().is_empty() {
            continue;
        }
        let (k, v) = member.split_once('=').ok_or_else(|| format!("{member:?} is not key=value"))?;
        let key = percent_decode(k.trim())?;
        if key.is_empty() {
            return Err(format!("{member:?} has an empty key"));
        }
        out.push((key, percent_decode(v.trim())?));
    }
    Ok(out)
}

/// Decodes `%XX` escapes (UTF-8 bytes); `+` stays a plus.
pub(crate) fn percent_decode(s: &str) -> Result<String, String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes.get(i + 1..i + 3).and_then(|h| std::str::from_utf8(h).ok());
            let byte =
                hex.and_then(|h| u8::from_str_radix(h, 16).ok()).ok_or_else(|| format!("bad escape in {s:?}"))?;
            out.push(byte);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| format!("{s:?} decodes to invalid UTF-8"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn parse(vars: &[(&str, &str)]) -> (EnvConfig, Vec<String>) {
        let map: HashMap<String, String> = vars.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
        EnvConfig::from_lookup(|k| map.get(k).cloned())
    }

    #[test]
    fn nothing_set_gives_the_otel_defaults() {
        let (c, w) = parse(&[]);
        assert!(w.is_empty());
        assert_eq!(c, EnvConfig::default());
        assert_eq!(c.endpoint, "http://localhost:4318/v1/metrics");
        assert_eq!((c.timeout, c.interval), (Duration::from_secs(10), Duration::from_secs(60)));
        assert_eq!((c.compression, c.temporality), (Compression::None, Temporality::Cumulative));
    }

    #[test]
    fn the_generic_endpoint_gets_the_metrics_path_and_the_specific_one_is_used_as_is() {
        let e = |vars: &[(&str, &str)]| parse(vars).0.endpoint;
        assert_eq!(e(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://col:4318")]), "http://col:4318/v1/metrics");
        assert_eq!(e(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://col:4318/")]), "http://col:4318/v1/metrics");
        assert_eq!(e(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://p/otlp")]), "http://p/otlp/v1/metrics");
        assert_eq!(
            e(&[
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://col:4318"),
                ("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", "http://prom:9090/api/v1/otlp/v1/metrics"),
            ]),
            "http://prom:9090/api/v1/otlp/v1/metrics"
        );
        assert_eq!(e(&[("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", "http://x/custom")]), "http://x/custom");
        assert_eq!(e(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "  ")]), DEFAULT_ENDPOINT, "empty is unset");
    }

    #[test]
    fn headers_are_percent_decoded_and_the_metrics_ones_replace_generic_ones() {
        let (c, w) = parse(&[
            ("OTEL_EXPORTER_OTLP_HEADERS", "Authorization=Basic%20dXNlcjpwdw%3D%3D, X-Tenant = a ,api-key=1"),
            ("OTEL_EXPORTER_OTLP_METRICS_HEADERS", "x-tenant=b"),
        ]);
        assert!(w.is_empty(), "{w:?}");
        assert_eq!(
            c.headers,
            [
                ("Authorization".to_owned(), "Basic dXNlcjpwdw==".to_owned()),
                ("api-key".to_owned(), "1".to_owned()),
                ("x-tenant".to_owned(), "b".to_owned()),
            ]
        );
        let (c, w) = parse(&[("OTEL_EXPORTER_OTLP_HEADERS", "novalue,a=1")]);
        assert!(c.headers.is_empty());
        assert_eq!(w.len(), 1, "{w:?}");
        assert!(parse(&[("OTEL_EXPORTER_OTLP_HEADERS", "a=%zz")]).1[0].contains("bad escape"));
    }

    #[test]
    fn timeout_compression_interval_and_temporality() {
        let (c, w) = parse(&[
            ("OTEL_EXPORTER_OTLP_TIMEOUT", "500"),
            ("OTEL_EXPORTER_OTLP_METRICS_TIMEOUT", "2500"),
            ("OTEL_EXPORTER_OTLP_COMPRESSION", "none"),
            ("OTEL_EXPORTER_OTLP_METRICS_COMPRESSION", "GZIP"),
            ("OTEL_METRIC_EXPORT_INTERVAL", "15000"),
            ("OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE", "Delta"),
        ]);
        assert!(w.is_empty(), "{w:?}");
        assert_eq!((c.timeout, c.compression), (Duration::from_millis(2500), Compression::Gzip));
        assert_eq!((c.interval, c.temporality), (Duration::from_secs(15), Temporality::Delta));
        let (c, _) = parse(&[("OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE", "lowmemory")]);
        assert_eq!(c.temporality, Temporality::LowMemory);
        assert!(c.temporality.is_delta() && !Temporality::Cumulative.is_delta());
        assert_eq!(parse(&[("OTEL_EXPORTER_OTLP_TIMEOUT", "1000")]).0.timeout, Duration::from_secs(1));
    }

    #[test]
    fn default_histogram_aggregation() {
        let var = "OTEL_EXPORTER_OTLP_METRICS_DEFAULT_HISTOGRAM_AGGREGATION";
        assert_eq!(parse(&[]).0.histograms, Histograms::Explicit);
        let (c, w) = parse(&[(var, "base2_exponential_bucket_histogram")]);
        assert_eq!((c.histograms, w.len()), (Histograms::Exponential, 0));
        let (c, w) = parse(&[(var, "Explicit_Bucket_Histogram")]);
        assert_eq!((c.histograms, w.len()), (Histograms::Explicit, 0));
    }

    #[test]
    fn protocol_the_specific_variable_wins_and_grpc_is_remembered_as_unsupported() {
        let p = |vars: &[(&str, &str)]| {
            let (c, w) = parse(vars);
            (c.protocol, c.unsupported_protocol, w.len())
        };
        assert_eq!(p(&[]), (Protocol::HttpProtobuf, None, 0));
        assert_eq!(p(&[("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json")]), (Protocol::HttpJson, None, 0));
        assert_eq!(p(&[("OTEL_EXPORTER_OTLP_METRICS_PROTOCOL", "HTTP/JSON")]), (Protocol::HttpJson, None, 0));
        assert_eq!(
            p(&[
                ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json"),
                ("OTEL_EXPORTER_OTLP_METRICS_PROTOCOL", "http/protobuf")
            ]),
            (Protocol::HttpProtobuf, None, 0)
        );
        assert_eq!(
            p(&[("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"), ("OTEL_EXPORTER_OTLP_METRICS_PROTOCOL", "http/json")]),
            (Protocol::HttpJson, None, 0),
            "the metrics-specific setting wins over a generic grpc"
        );
        assert_eq!(
            p(&[("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")]),
            (Protocol::HttpProtobuf, Some("OTEL_EXPORTER_OTLP_PROTOCOL=grpc".to_owned()), 0),
            "grpc is no warning: the build fails"
        );
        let (c, w) = parse(&[("OTEL_EXPORTER_OTLP_METRICS_PROTOCOL", "http/xml")]);
        assert_eq!((c.protocol, c.unsupported_protocol), (Protocol::HttpProtobuf, None));
        assert_eq!(w.len(), 1, "{w:?}");
        assert!(w[0].contains("OTEL_EXPORTER_OTLP_METRICS_PROTOCOL") && w[0].contains("http/xml"), "{w:?}");
        assert_eq!(Protocol::HttpJson.content_type(), "application/json");
        assert_eq!(Protocol::HttpProtobuf.content_type(), "application/x-protobuf");
    }

    #[test]
    fn invalid_values_warn_and_keep_the_default() {
        let (c, w) = parse(&[
            ("OTEL_EXPORTER_OTLP_TIMEOUT", "10s"),
            ("OTEL_EXPORTER_OTLP_COMPRESSION", "zstd"),
            ("OTEL_METRIC_EXPORT_INTERVAL", "0"),
            ("OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE", "sometimes"),
            ("OTEL_RESOURCE_ATTRIBUTES", "=x"),
            ("OTEL_EXPORTER_OTLP_METRICS_DEFAULT_HISTOGRAM_AGGREGATION", "exponential"),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "udp"),
        ]);
        assert_eq!(w.len(), 7, "{w:?}");
        assert_eq!(c, EnvConfig::default());
    }

    #[test]
    fn service_name_and_resource_attributes() {
        let (c, w) = parse(&[
            ("OTEL_SERVICE_NAME", "checkout"),
            ("OTEL_RESOURCE_ATTRIBUTES", "service.name=ignored,deployment.environment=prod%2Ceu,team= a b "),
        ]);
        assert!(w.is_empty(), "{w:?}");
        assert_eq!(c.service_name.as_deref(), Some("checkout"));
        assert_eq!(
            c.resource_attributes,
            [
                ("service.name".to_owned(), "ignored".to_owned()),
                ("deployment.environment".to_owned(), "prod,eu".to_owned()),
                ("team".to_owned(), "a b".to_owned()),
            ]
        );
    }

    #[test]
    fn percent_decoding() {
        assert_eq!(percent_decode("a%20b%C3%A9+").unwrap(), "a bé+");
        assert!(percent_decode("%").is_err());
        assert!(percent_decode("%ff").is_err(), "invalid UTF-8");
    }
}
