//! The exporters' error type, and the validation of the label names they are configured with.

#![forbid(unsafe_code)]

use std::{fmt, time::Duration};

/// Why an export operation failed. Each variant's message says what to do about it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ExportError {
    /// The endpoint is not an absolute `http://host[:port]/path` URL (https needs ureq's
    /// `rustls` or `native-tls` feature enabled in your own Cargo.toml).
    InvalidUrl { url: String, reason: String },
    /// A label name (external or grouping label) does not match `[a-zA-Z_][a-zA-Z0-9_]*` or
    /// starts with the reserved `__`.
    InvalidLabelName { label: String },
    /// An extra HTTP header's name or value is not valid in HTTP/1.1.
    InvalidHeader { name: String },
    /// A required setting is missing or empty (e.g. the Pushgateway job name).
    Missing { what: &'static str },
    /// The receiver refused the batch with a status that retrying cannot fix (a 4xx other
    /// than 429): check the URL, the payload and the receiver's log; `body` is the start of
    /// its answer.
    Rejected { status: u16, body: String },
    /// Every attempt failed with a retryable error (connection refused, timeout, 429, 5xx,
    /// I/O error); `last` is the last one. The receiver may be down: it is tried again with
    /// the next snapshot.
    GaveUp { attempts: u32, last: String },
    /// The receiver did not answer within the request `timeout` (it may have accepted the
    /// connection and hung, or be overloaded); `detail` says which phase timed out. Not
    /// retried: the next snapshot is sent instead. Raise the exporter's
    /// [`timeout`](crate::export::ExporterBuilder::timeout) if the receiver is only slow.
    TimedOut { timeout: Duration, detail: String },
    /// A local I/O operation failed (file exporter).
    Io { path: String, message: String },
    /// The configuration asks for something this exporter does not do (e.g. OTLP over gRPC,
    /// `OTEL_EXPORTER_OTLP_PROTOCOL=grpc`): `what` names it and the setting, `instead` says
    /// what to use.
    Unsupported { what: String, instead: &'static str },
}

impl fmt::Display for ExportError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExportError::InvalidUrl { url, reason } => {
                write!(f, "invalid exporter URL {url:?}: {reason}; give an absolute http://host:port/path URL")
            }
            ExportError::InvalidLabelName { label } => write!(
                f,
                "invalid label name {label:?}: label names must match [a-zA-Z_][a-zA-Z0-9_]* and must not start \
                 with \"__\""
            ),
            ExportError::InvalidHeader { name } => {
                write!(f, "invalid HTTP header {name:?}: use a token name and a visible-ASCII value")
            }
            ExportError::Missing { what } => write!(f, "{what} is required and must not be empty"),
            ExportError::Rejected { status, body } => write!(
                f,
                "the receiver refused the batch with HTTP {status} (not retried): {body}; check the URL, the \
                 receiver's configuration and its log"
            ),
            ExportError::GaveUp { attempts, last } => {
                write!(f, "gave up after {attempts} attempt(s), last error: {last}; is the receiver up and reachable?")
            }
            ExportError::TimedOut { timeout, detail } => write!(
                f,
                "no answer from the receiver within the request timeout of {timeout:?} ({detail}; not retried); is \
                 it hung or overloaded? raise the exporter's timeout if it is only slow"
            ),
            ExportError::Io { path, message } => write!(f, "I/O error on {path}: {message}"),
            ExportError::Unsupported { what, instead } => write!(f, "{what} is not supported; {instead}"),
        }
    }
}

impl std::error::Error for ExportError {}

/// Whether label `name` is a valid, non-reserved Prometheus label name.
#[cfg(any(feature = "remote-write", feature = "push", test))]
pub(crate) fn check_label_name(name: &str) -> Result<(), ExportError> {
    let mut chars = name.chars();
    let ok = matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !name.starts_with("__");
    if ok {
        Ok(())
    } else {
        Err(ExportError::InvalidLabelName { label: name.to_owned() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_names() {
        assert!(check_label_name("job").is_ok());
        assert!(check_label_name("_x9").is_ok());
        for bad in ["", "9a", "a-b", "__name__", "a b"] {
            assert_eq!(check_label_name(bad), Err(ExportError::InvalidLabelName { label: bad.into() }));
        }
    }
}
