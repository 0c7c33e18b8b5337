//! The registration error type. Recording never fails: bad values there are rejected and
//! counted (`shardmetrics_rejected_values_total`), never returned or panicked on.

#![forbid(unsafe_code)]

use std::fmt;

use crate::Kind;

/// Why a metric could not be registered. Each variant's message says how to fix it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error {
    /// The metric name does not match `[a-zA-Z_:][a-zA-Z0-9_:]*`. Rename it, e.g. replace
    /// dots and dashes with underscores.
    InvalidMetricName { name: String, reason: &'static str },
    /// A label name does not match `[a-zA-Z_][a-zA-Z0-9_]*`, starts with the reserved `__`,
    /// or is reserved by the metric kind (`le`, `quantile` on histograms).
    InvalidLabelName { metric: String, label: String, reason: &'static str },
    /// The same label name was given twice for one series or family.
    DuplicateLabel { metric: String, label: String },
    /// The name is already registered as another kind of metric. Use a different name.
    KindMismatch { name: String, registered: Kind, requested: Kind },
    /// The name is already registered with another set of label names. Every series of a
    /// metric must carry the same label names.
    LabelNamesMismatch { name: String, registered: Vec<String>, requested: Vec<String> },
    /// The name is already registered with another unit, precision or bucket layout.
    ConfigMismatch { name: String, what: &'static str },
    /// A family look-up gave a different number of label values than the family has names.
    LabelCount { name: String, expected: usize, got: usize },
    /// Histogram precision (the exponential schema) outside `MIN_PRECISION..=MAX_PRECISION`
    /// (`0..=8`).
    InvalidPrecision { name: String, precision: u8 },
    /// Export bucket boundaries must be finite and strictly increasing.
    InvalidBuckets { name: String },
    /// Exported quantiles must be in `0..=1` and strictly ascending, and a quantile window
    /// must be one of the registry's configured windows.
    InvalidQuantiles { name: String, reason: &'static str },
    /// The metric would be exported under a family or sample name another metric already
    /// uses: `x` and `x_total` are both the counter `x_total`; a nanosecond histogram `lat` is
    /// exported as `lat_seconds`; OpenMetrics reserves `x`, `x_total` and `x_created` for a
    /// counter `x_total`, and `h_bucket`, `h_count`, `h_sum` for a histogram `h`. Rename one of
    /// the two.
    ExpositionClash { name: String, exported: String, other: String },
    /// The registry ran out of cell storage (over 4 billion counters or 16 million histograms).
    StorageExhausted { name: String },
    /// A metric name, label name or label value is longer than the registry allows
    /// ([`RegistryBuilder::max_name_len`](crate::RegistryBuilder::max_name_len),
    /// [`RegistryBuilder::max_label_value_len`](crate::RegistryBuilder::max_label_value_len)).
    /// Shorten it (an id belongs in an exemplar or a log, not in a label), or raise the limit.
    /// `metric` is cut to its first 64 characters.
    TooLong { metric: String, what: &'static str, len: usize, max: usize },
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::InvalidMetricName { name, reason } => write!(
                f,
                "invalid metric name {name:?}: {reason}; metric names must match [a-zA-Z_:][a-zA-Z0-9_:]* \
                 (replace '.', '-' and spaces with '_')"
            ),
            Error::InvalidLabelName { metric, label, reason } => write!(
                f,
                "invalid label name {label:?} on metric {metric:?}: {reason}; label names must match \
                 [a-zA-Z_][a-zA-Z0-9_]* and must not start with \"__\""
            ),
            Error::DuplicateLabel { metric, label } => {
                write!(f, "label {label:?} given twice on metric {metric:?}; give each label name once")
            }
            Error::KindMismatch { name, registered, requested } => write!(
                f,
                "metric {name:?} is already registered as a {registered}, cannot register it as a {requested}; \
                 pick a different name"
            ),
            Error::LabelNamesMismatch { name, registered, requested } => write!(
                f,
                "metric {name:?} is already registered with label names {registered:?}, not {requested:?}; \
                 every series of a metric must have the same label names"
            ),
            Error::ConfigMismatch { name, what } => write!(
                f,
                "metric {name:?} is already registered with a different {what}; register it with the same \
                 {what} everywhere or use a different name"
            ),
            Error::LabelCount { name, expected, got } => write!(
                f,
                "metric {name:?} has {expected} label name(s) but {got} label value(s) were given; \
                 pass one value per label name, in the family's order"
            ),
            Error::InvalidPrecision { name, precision } => write!(
                f,
                "histogram {name:?}: precision {precision} is out of range; the precision is the \
                 native-histogram schema: use {}..={} (default {})",
                crate::buckets::MIN_PRECISION,
                crate::buckets::MAX_PRECISION,
                crate::buckets::DEFAULT_PRECISION
            ),
            Error::InvalidQuantiles { name, reason } => {
                write!(f, "invalid quantiles for histogram {name:?}: {reason}")
            }
            Error::InvalidBuckets { name } => write!(
                f,
                "histogram {name:?}: export bucket boundaries must be finite, non-empty and strictly increasing"
            ),
            Error::ExpositionClash { name, exported, other } => write!(
                f,
                "metric {name:?} would be exported as {exported:?}, which metric {other:?} already uses; \
                 rename one of them"
            ),
            Error::StorageExhausted { name } => {
                write!(f, "cannot register {name:?}: the registry's cell storage is exhausted")
            }
            Error::TooLong { metric, what, len, max } => write!(
                f,
                "metric {metric:?}: the {what} is {len} bytes, over the registry's limit of {max}; shorten it \
                 or raise the limit on the registry builder"
            ),
        }
    }
}

impl std::error::Error for Error {}

/// The first 64 characters of `s`, with `…` if it was longer (error messages never echo a
/// megabyte of input).
pub(crate) fn cut(s: &str) -> String {
    match s.char_indices().nth(64) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_owned(),
    }
}

/// Checks a metric name against the Prometheus rule `[a-zA-Z_:][a-zA-Z0-9_:]*`.
pub(crate) fn validate_metric_name(name: &str) -> Result<(), Error> {
    let err = |reason| Err(Error::InvalidMetricName { name: name.to_owned(), reason });
    let mut chars = name.chars();
    match chars.next() {
        None => return err("it is empty"),
        Some(c) if c.is_ascii_alphabetic() || c == '_' || c == ':' => {}
        Some(_) => return err("it must start with a letter, '_' or ':'"),
    }
    if chars.any(|c| !(c.is_ascii_alphanumeric() || c == '_' || c == ':')) {
        return err("it contains a character other than letters, digits, '_' and ':'");
    }
    Ok(())
}

/// The label of a family's overflow series (`{overflow="true"}`), reserved so that no user
/// series can be the same series.
pub(crate) const OVERFLOW_LABEL: &str = "overflow";

/// Checks a label name against `[a-zA-Z_][a-zA-Z0-9_]*`, the reserved `__` prefix, and the
/// names the exposition uses itself (`overflow`; `le` and `quantile` on histograms).
pub(crate) fn validate_label_name(metric: &str, label: &str, kind: Kind) -> Result<(), Error> {
    let err = |reason| Err(Error::InvalidLabelName { metric: metric.to_owned(), label: label.to_owned(), reason });
    let mut chars = label.chars();
    match chars.next() {
        None => return err("it is empty"),
        Some(c) if c.is_ascii_alphabetic() || c == '_' => {}
        Some(_) => return err("it must start with a letter or '_'"),
    }
    if chars.any(|c| !(c.is_ascii_alphanumeric() || c == '_')) {
        return err("it contains a character other than letters, digits and '_'");
    }
    if label.starts_with("__") {
        return err("names starting with \"__\" are reserved for Prometheus' internal use");
    }
    if label == OVERFLOW_LABEL {
        return err("\"overflow\" is reserved: a family over its cardinality cap sends new label sets to its overflow series {overflow=\"true\"}");
    }
    if kind == Kind::Histogram && (label == "le" || label == "quantile") {
        return err("\"le\" and \"quantile\" are reserved on histograms by the exposition format");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metric_names() {
        for ok in ["a", "_a", ":a", "http_requests_total", "a:b:c", "A9_"] {
            assert!(validate_metric_name(ok).is_ok(), "{ok}");
        }
        for bad in ["", "9a", "a-b", "a.b", "a b", "é", "a\n", "a{b}"] {
            let e = validate_metric_name(bad).unwrap_err();
            assert!(e.to_string().contains("invalid metric name"), "{e}");
        }
    }

    #[test]
    fn label_names() {
        assert!(validate_label_name("m", "route", Kind::Counter).is_ok());
        assert!(validate_label_name("m", "le", Kind::Counter).is_ok());
        for bad in ["", "__x", "a:b", "9", "a-b"] {
            assert!(validate_label_name("m", bad, Kind::Counter).is_err(), "{bad}");
        }
        assert!(validate_label_name("m", "le", Kind::Histogram).is_err());
        assert!(validate_label_name("m", "quantile", Kind::Histogram).is_err());
    }
}
