//! HTTP plumbing shared by the push exporters (remote write, Pushgateway): a ureq agent, the
//! URL check, and how a response is classified (delivered, retried or refused).

#![forbid(unsafe_code)]

use std::{io::Read, time::Duration};

use super::{error::ExportError, sink::SendError};

/// Longest part of an error response kept for the log and the error; a longer one is cut at
/// a character boundary and marked with `…`.
const MAX_ERROR_BODY: usize = 512;

/// An agent that returns every status as a response (classified by [`outcome`]) and
/// bounds each call by `timeout` (each sink narrows it per request with [`within`]).
pub(crate) fn agent(timeout: Duration) -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(timeout))
        .user_agent(concat!("shardmetrics/", env!("CARGO_PKG_VERSION")))
        .build()
        .into()
}

/// Bounds one request, connect to the last byte of the answer, by `timeout`: the attempt's
/// own bound, shorter than the agent's during shutdown.
pub(crate) fn within<B>(req: ureq::RequestBuilder<B>, timeout: Duration) -> ureq::RequestBuilder<B> {
    req.config().timeout_global(Some(timeout)).build()
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
/// refused for good. Running out of the request timeout is [`SendError::TimedOut`]; other
/// transport errors are retried, except a malformed request. The body of an error answer is
/// kept for the log, cut to its first [`MAX_ERROR_BODY`] bytes.
pub(crate) fn outcome(
    result: Result<ureq::http::Response<ureq::Body>, ureq::Error>,
) -> Result<ureq::http::Response<ureq::Body>, SendError> {
    match result {
        Ok(resp) if resp.status().is_success() => Ok(resp),
        Ok(mut resp) => {
            let status = resp.status().as_u16();
            let body = error_body(resp.body_mut().as_reader());
            if status == 429 || status >= 500 {
                Err(SendError::Retryable(format!("HTTP {status}: {body}")))
            } else {
                Err(SendError::Rejected { status, body })
            }
        }
        Err(e @ (ureq::Error::BadUri(_) | ureq::Error::Http(_))) => {
            Err(SendError::Rejected { status: 0, body: e.to_string() })
        }
        Err(ureq::Error::Timeout(t)) => Err(SendError::TimedOut(format!("{t} timeout"))),
        Err(ureq::Error::Io(e)) if e.kind() == std::io::ErrorKind::TimedOut => Err(SendError::TimedOut(e.to_string())),
        Err(e) => Err(SendError::Retryable(e.to_string())),
    }
}

/// The start of an error answer for the log: its first [`MAX_ERROR_BODY`] bytes (at most;
/// what could be read before an error or the request timeout), lossy UTF-8 without a
/// character cut in half, trimmed, with `…` when there was more.
fn error_body(body: impl Read) -> String {
    let mut bytes = Vec::with_capacity(MAX_ERROR_BODY + 1);
    // One byte more than kept tells whether there was more; a read error keeps what came.
    let _ = body.take(MAX_ERROR_BODY as u64 + 1).read_to_end(&mut bytes);
    let cut = bytes.len() > MAX_ERROR_BODY;
    bytes.truncate(MAX_ERROR_BODY);
    if cut {
        // Drop a character cut in half at the end (an invalid sequence elsewhere stays, lossily).
        if let Err(e) = std::str::from_utf8(&bytes) {
            if e.error_len().is_none() {
                bytes.truncate(e.valid_up_to());
            }
        }
    }
    let mut text = String::from_utf8_lossy(&bytes).trim().to_owned();
    if cut {
        text.push('…');
    }
    text
}

/// Reads (and discards) a successful response's body so the connection can be reused.
pub(crate) fn finish(mut resp: ureq::http::Response<ureq::Body>) {
    let _ = resp.body_mut().with_config().limit(64 * 1024).read_to_vec();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_bodies_are_cut_at_a_character_boundary_and_marked() {
        assert_eq!(error_body(&b" bad labels\n"[..]), "bad labels");
        assert_eq!(error_body(&[b'a'; 512][..]), "a".repeat(512), "exactly the limit: whole");
        let long = [b'a'; 10_000];
        assert_eq!(error_body(&long[..]), format!("{}…", "a".repeat(512)));
        // 'é' is two bytes: 511 'a's then 'é' would cut it after its first byte.
        let mut text = "a".repeat(511);
        text.push_str(&"é".repeat(10));
        assert_eq!(error_body(text.as_bytes()), format!("{}…", "a".repeat(511)));
        // Invalid UTF-8 is kept lossily, not dropped.
        assert_eq!(error_body(&b"bad \xff byte"[..]), "bad \u{fffd} byte");
    }
}
