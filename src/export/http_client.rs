//! HTTP plumbing shared by the push exporters (remote write, Pushgateway): a ureq agent, the
//! URL check, and how a response is classified (delivered, retried or refused).

#![forbid(unsafe_code)]

use std::time::Duration;

use super::{error::ExportError, sink::SendError};

/// Longest part of an error response kept for the log and the error.
const MAX_ERROR_BODY: u64 = 512;

/// An agent that returns every status as a response (classified by [`outcome`]) and
/// bounds each call by `timeout`.
pub(crate) fn agent(timeout: Duration) -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(timeout))
        .user_agent(concat!("shardmetrics/", env!("CARGO_PKG_VERSION")))
        .build()
        .into()
}

/// Checks that `url` is an absolute http(s) URL ureq can use.
pub(crate) fn check_url(url: &str) -> Result<(), ExportError> {
    let bad = |reason: &str| Err(ExportError::InvalidUrl { url: url.to_owned(), reason: reason.to_owned() });
    match url.parse::<ureq::http::Uri>() {
        Err(e) => bad(&e.to_string()),
        Ok(u) if !matches!(u.scheme_str(), Some("http" | "https")) => bad("the scheme must be http or https"),
        Ok(u) if u.host().is_none_or(str::is_empty) => bad("it has no host"),
        Ok(_) => Ok(()),
    }
}

/// Classifies a response: 2xx is delivered; 429 and 5xx are retried; any other status is
/// refused for good. Transport errors are retried, except a malformed request.
pub(crate) fn outcome(
    result: Result<ureq::http::Response<ureq::Body>, ureq::Error>,
) -> Result<ureq::http::Response<ureq::Body>, SendError> {
    match result {
        Ok(resp) if resp.status().is_success() => Ok(resp),
        Ok(mut resp) => {
            let status = resp.status().as_u16();
            let body = resp
                .body_mut()
                .with_config()
                .limit(MAX_ERROR_BODY)
                .read_to_vec()
                .map(|b| String::from_utf8_lossy(&b).trim().to_owned())
                .unwrap_or_default();
            if status == 429 || status >= 500 {
                Err(SendError::Retryable(format!("HTTP {status}: {body}")))
            } else {
                Err(SendError::Rejected { status, body })
            }
        }
        Err(e @ (ureq::Error::BadUri(_) | ureq::Error::Http(_))) => {
            Err(SendError::Rejected { status: 0, body: e.to_string() })
        }
        Err(e) => Err(SendError::Retryable(e.to_string())),
    }
}

/// Reads (and discards) a successful response's body so the connection can be reused.
pub(crate) fn finish(mut resp: ureq::http::Response<ureq::Body>) {
    let _ = resp.body_mut().with_config().limit(64 * 1024).read_to_vec();
}
