//! HTTP plumbing shared by the push exporters (remote write, Pushgateway, OTLP): a ureq agent,
//! the URL check, and how a response is classified (delivered, retried — after the answer's
//! `Retry-After`, if any — or refused).

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

/// Classifies a response: 2xx is delivered; 429 and 5xx are retried (after the answer's
/// `Retry-After`, if it has one); any other status is refused for good. Running out of the
/// request timeout is [`SendError::TimedOut`]; other transport errors are retried, except a
/// malformed request. The body of an error answer is kept for the log, cut to its first
/// [`MAX_ERROR_BODY`] bytes.
// Remote write and the Pushgateway retry every 5xx; OTLP calls `outcome_with`.
#[cfg_attr(not(any(feature = "remote-write", feature = "push")), allow(dead_code))]
pub(crate) fn outcome(
    result: Result<ureq::http::Response<ureq::Body>, ureq::Error>,
) -> Result<ureq::http::Response<ureq::Body>, SendError> {
    outcome_with(result, |status| status == 429 || status >= 500)
}

/// [`outcome`] with the receiver's own list of retryable statuses (OTLP retries only 429, 502,
/// 503 and 504).
pub(crate) fn outcome_with(
    result: Result<ureq::http::Response<ureq::Body>, ureq::Error>,
    retryable: impl Fn(u16) -> bool,
) -> Result<ureq::http::Response<ureq::Body>, SendError> {
    match result {
        Ok(resp) if resp.status().is_success() => Ok(resp),
        Ok(mut resp) => {
            let status = resp.status().as_u16();
            let retry_after = resp
                .headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| retry_after(v, std::time::SystemTime::now()));
            let body = error_body(resp.body_mut().as_reader());
            match (retryable(status), retry_after) {
                (true, Some(retry_after)) => {
                    Err(SendError::Throttled { detail: format!("HTTP {status}: {body}"), retry_after })
                }
                (true, None) => Err(SendError::Retryable(format!("HTTP {status}: {body}"))),
                (false, _) => Err(SendError::Rejected { status, body }),
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

/// A `Retry-After` value (RFC 9110 §10.2.3): delay-seconds, or an HTTP date (IMF-fixdate,
/// `Sun, 06 Nov 1994 08:49:37 GMT`) turned into the time left until it from `now` (zero if it
/// has passed). `None` when it is neither.
pub(crate) fn retry_after(value: &str, now: std::time::SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = http_date(value)?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

/// Parses an IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`), the HTTP date format senders must
/// use.
fn http_date(s: &str) -> Option<std::time::SystemTime> {
    let rest = s.split_once(", ")?.1;
    let parts: Vec<&str> = rest.split(' ').collect();
    let [day, month, year, time, "GMT"] = parts[..] else { return None };
    let day: u64 = day.parse().ok().filter(|d| (1..=31).contains(d))?;
    const MONTHS: [&str; 12] = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
    let month = MONTHS.iter().position(|m| *m == month)? as u64 + 1;
    let year: i64 = year.parse().ok().filter(|y| *y >= 1970)?;
    let hms: Vec<u64> = time.split(':').map(|p| p.parse().ok()).collect::<Option<_>>()?;
    let [h, m, sec] = hms[..] else { return None };
    if h > 23 || m > 59 || sec > 60 {
        return None;
    }
    // Days from 1970-01-01 to the civil date (Howard Hinnant's days_from_civil).
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month as i64 + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = u64::try_from(era * 146_097 + doe - 719_468).ok()?;
    Some(std::time::UNIX_EPOCH + Duration::from_secs(days * 86_400 + h * 3600 + m * 60 + sec))
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
#[cfg_attr(not(any(feature = "remote-write", feature = "push")), allow(dead_code))]
pub(crate) fn finish(mut resp: ureq::http::Response<ureq::Body>) {
    let _ = resp.body_mut().with_config().limit(64 * 1024).read_to_vec();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_takes_seconds_or_an_http_date() {
        let now = std::time::UNIX_EPOCH + Duration::from_secs(784_111_777); // Sun, 06 Nov 1994 08:49:37 GMT
        assert_eq!(retry_after("120", now), Some(Duration::from_secs(120)));
        assert_eq!(retry_after(" 0 ", now), Some(Duration::ZERO));
        assert_eq!(retry_after("Sun, 06 Nov 1994 08:49:37 GMT", now), Some(Duration::ZERO));
        assert_eq!(retry_after("Sun, 06 Nov 1994 08:50:07 GMT", now), Some(Duration::from_secs(30)));
        assert_eq!(
            retry_after("Tue, 01 Mar 2000 00:00:00 GMT", now + Duration::ZERO).map(|d| d.as_secs()),
            Some(951_868_800 - 784_111_777),
            "a date past a leap day"
        );
        assert_eq!(retry_after("Sat, 05 Nov 1994 08:49:37 GMT", now), Some(Duration::ZERO), "in the past");
        for bad in ["", "-1", "1.5", "soon", "Sun, 06 Nov 1994 08:49:37 PST", "Sun, 32 Nov 1994 08:49:37 GMT"] {
            assert_eq!(retry_after(bad, now), None, "{bad:?}");
        }
    }

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
