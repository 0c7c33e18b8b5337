//! Scraping an endpoint over plain HTTP (ureq): which URL to ask, what a failure means and
//! how to fix it.
//!
//! A base address (`http://127.0.0.1:9464`, or just `127.0.0.1:9464`) is tried as
//! `/metrics.json` (shardmetrics' richer document) and, if that is 404 or not JSON
//! (node_exporter answers every path with an HTML page), as `/metrics` (any Prometheus
//! exporter). A full URL is used as given.

use std::{
    fmt,
    io::{self, Read},
    time::Duration,
};

use super::CliError;

/// Largest response body read (node_exporter on a big host is a few hundred KiB).
const MAX_BODY: u64 = 64 << 20;

/// What the caller wants back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Want {
    /// Whatever the endpoint serves: JSON if it has `/metrics.json`, else text.
    Any,
    /// shardmetrics' JSON document.
    Json,
    /// Prometheus text format 0.0.4.
    Text,
}

/// Where to scrape.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// `http://host:port`.
    pub base: String,
    /// The path given, if any (`/metrics`, `/custom/path`).
    pub path: Option<String>,
    /// The query string given, if any (without `?`).
    pub query: Option<String>,
}

impl Target {
    /// Reads `URL` as typed by a user: scheme optional (`http` assumed), path optional.
    pub fn parse(url: &str) -> Result<Target, String> {
        let url = url.trim();
        let rest = match url.split_once("://") {
            Some(("http", rest)) => rest,
            Some(("https", _)) => {
                return Err(format!(
                    "{url}: https is not supported by this build (plain HTTP only); scrape the service over \
                     http, e.g. through a local port-forward"
                ))
            }
            Some((scheme, _)) => return Err(format!("{url}: unsupported scheme {scheme:?} (use http://host:port)")),
            None => url,
        };
        let (authority, path_query) = match rest.find('/') {
            Some(i) => rest.split_at(i),
            None => (rest, ""),
        };
        if authority.is_empty() || authority.contains(char::is_whitespace) {
            return Err(format!("{url}: expected an address such as http://127.0.0.1:9464"));
        }
        // `user:password@` aside, the host and the port: checked here so that a port such as
        // 70000 is a bad address, not an endpoint that refuses connections.
        let host_port = authority.rsplit_once('@').map_or(authority, |(_, hp)| hp);
        let (host, port) = super::args::split_host_port(host_port)
            .ok_or_else(|| format!("{url}: {host_port:?} is not a host and port such as 127.0.0.1:9464"))?;
        if host.is_empty() {
            return Err(format!("{url}: the host is missing (e.g. http://127.0.0.1:9464)"));
        }
        if let Some(p) = port {
            super::args::check_port(p, false).map_err(|e| format!("{url}: {e}"))?;
        }
        let (path, query) = match path_query.split_once('?') {
            Some((p, q)) => (p, Some(q.to_owned())),
            None => (path_query, None),
        };
        let path = (!path.is_empty() && path != "/").then(|| path.to_owned());
        Ok(Target { base: format!("http://{authority}"), path, query })
    }

    /// URLs to try, in order, for `want`, with `window` added to JSON URLs.
    pub fn candidates(&self, want: Want, window: Option<&str>) -> Vec<String> {
        let paths: Vec<&str> = match (self.path.as_deref(), want) {
            (None, Want::Any) => vec!["/metrics.json", "/metrics"],
            (None, Want::Json) | (Some("/metrics"), Want::Json) => vec!["/metrics.json"],
            (None, Want::Text) | (Some("/metrics.json"), Want::Text) => vec!["/metrics"],
            (Some(p), _) => vec![p],
        };
        paths.into_iter().map(|p| self.url(p, window.filter(|_| p.ends_with(".json")))).collect()
    }

    fn url(&self, path: &str, window: Option<&str>) -> String {
        let json = path.ends_with(".json");
        // `window=` means something to the JSON document only; the text formats refuse it.
        let mut query: Vec<String> = self
            .query
            .iter()
            .flat_map(|q| q.split('&'))
            .filter(|q| json || !q.starts_with("window="))
            .map(str::to_owned)
            .collect();
        if let Some(w) = window {
            if !query.iter().any(|q| q.starts_with("window=")) {
                query.push(format!("window={w}"));
            }
        }
        if query.is_empty() {
            format!("{}{path}", self.base)
        } else {
            format!("{}{path}?{}", self.base, query.join("&"))
        }
    }

    /// The URL as shown to the user.
    pub fn display(&self) -> String {
        self.url(self.path.as_deref().unwrap_or(""), None)
    }
}

/// A response body and what it says it is.
#[derive(Debug, Clone)]
pub struct Fetched {
    pub url: String,
    pub body: String,
    pub content_type: Option<String>,
    pub took: Duration,
}

/// Why a scrape failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FetchError {
    /// Nothing listens at the address.
    Refused { url: String },
    /// The host could not be resolved or reached, or the connection broke.
    Unreachable { url: String, detail: String },
    /// No answer within the timeout.
    Timeout { url: String },
    /// The endpoint answered with an error status.
    Status { url: String, status: u16, body: String },
    /// The body could not be read or understood.
    Invalid { url: String, detail: String },
}

impl FetchError {
    /// The process exit code for this failure (see `shardmetrics --help`).
    pub fn exit_code(&self) -> u8 {
        match self {
            FetchError::Refused { .. } | FetchError::Unreachable { .. } | FetchError::Timeout { .. } => {
                super::EXIT_UNREACHABLE
            }
            FetchError::Status { .. } | FetchError::Invalid { .. } => super::EXIT_BAD_RESPONSE,
        }
    }

    /// One line for the dashboard's status bar.
    pub fn short(&self) -> String {
        match self {
            FetchError::Refused { url } => format!("connection refused ({url})"),
            FetchError::Unreachable { url, detail } => format!("{detail} ({url})"),
            FetchError::Timeout { url } => format!("no answer in time ({url})"),
            FetchError::Status { url, status, .. } => format!("HTTP {status} ({url})"),
            FetchError::Invalid { url, detail } => format!("{detail} ({url})"),
        }
    }
}

impl fmt::Display for FetchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FetchError::Refused { url } => write!(
                f,
                "cannot connect to {url}: connection refused.\n\
                 Is the service running? Try `shardmetrics demo` (it serves http://127.0.0.1:9464), \
                 or pass the address your service's metrics endpoint listens on."
            ),
            FetchError::Unreachable { url, detail } => {
                write!(f, "cannot reach {url}: {detail}.\nCheck the host name and port, and that the service is up.")
            }
            FetchError::Timeout { url } => {
                write!(f, "{url} did not answer in time.\nThe service may be overloaded; try a longer --timeout.")
            }
            FetchError::Status { url, status, body } => {
                write!(f, "{url} answered HTTP {status}")?;
                if !body.is_empty() {
                    write!(f, ": {body}")?;
                }
                match status {
                    401 | 403 => f.write_str("\nThe endpoint wants credentials: pass --bearer TOKEN."),
                    404 => {
                        f.write_str("\nNo metrics at that path: give the base address or the exporter's metrics path.")
                    }
                    _ => Ok(()),
                }
            }
            FetchError::Invalid { url, detail } => write!(f, "{url}: {detail}"),
        }
    }
}

impl From<FetchError> for CliError {
    fn from(e: FetchError) -> CliError {
        CliError::new(e.exit_code(), e.to_string())
    }
}

/// Scrapes one [`Target`], remembering which candidate URL worked.
#[derive(Debug)]
pub struct Fetcher {
    agent: ureq::Agent,
    target: Target,
    want: Want,
    bearer: Option<String>,
    /// JSON window to ask for (`10s`, `1m`, …).
    pub window: Option<String>,
    resolved: Option<String>,
}

impl Fetcher {
    pub fn new(target: Target, want: Want, timeout: Duration, bearer: Option<String>) -> Fetcher {
        let config = ureq::Agent::config_builder()
            .timeout_global(Some(timeout))
            .http_status_as_error(false)
            .user_agent(concat!("shardmetrics/", env!("CARGO_PKG_VERSION")))
            .build();
        Fetcher { agent: config.into(), target, want, bearer, window: None, resolved: None }
    }

    /// The URL that answered last, or the target as given.
    pub fn url(&self) -> String {
        self.resolved.clone().unwrap_or_else(|| self.target.display())
    }

    /// One scrape, the body read whole. With a base address, a 404 or a non-JSON answer on
    /// `/metrics.json` falls through to `/metrics`.
    pub fn fetch(&mut self) -> Result<Fetched, FetchError> {
        let got = self.fetch_with(|url, _, reader| {
            let mut body = String::new();
            reader.read_to_string(&mut body).map_err(|e| read_error(url, e))?;
            Ok(body)
        })?;
        Ok(Fetched { url: got.url, body: got.value, content_type: got.content_type, took: got.took })
    }

    /// One scrape as [`Fetcher::fetch`], but the body is handed to `read` (with the URL and
    /// the Content-Type) to take in as it arrives, instead of being read whole first.
    /// [`read_error`] says what a failed read of it means.
    pub fn fetch_with<T>(
        &mut self,
        read: impl FnOnce(&str, Option<&str>, &mut dyn Read) -> Result<T, FetchError>,
    ) -> Result<Streamed<T>, FetchError> {
        let candidates = match &self.resolved {
            Some(resolved) => vec![self.with_window(resolved)],
            None => self.target.candidates(self.want, self.window.as_deref()),
        };
        let mut last = None;
        for (i, url) in candidates.iter().enumerate() {
            let more = i + 1 < candidates.len();
            let started = std::time::Instant::now();
            match self.open(url) {
                Err(FetchError::Status { status: 404, .. }) if more => continue,
                // node_exporter answers every path with its HTML landing page: not our JSON.
                Ok((content_type, _)) if more && !content_type.as_deref().is_some_and(is_json) => continue,
                Err(e) => {
                    last = Some(e);
                    break;
                }
                Ok((content_type, body)) => {
                    self.resolved = Some(url.split('?').next().unwrap_or(url).to_owned());
                    let mut reader = body.into_with_config().limit(MAX_BODY).reader();
                    let value = read(url, content_type.as_deref(), &mut reader)?;
                    return Ok(Streamed { value, url: url.clone(), content_type, took: started.elapsed() });
                }
            }
        }
        Err(last.unwrap_or_else(|| FetchError::Invalid { url: self.url(), detail: "no URL to try".into() }))
    }

    /// The resolved URL (`base + path`) with the user's query and the window put back.
    fn with_window(&self, resolved: &str) -> String {
        let path = resolved.strip_prefix(&self.target.base).unwrap_or(resolved);
        self.target.url(path, self.window.as_deref().filter(|_| path.ends_with(".json")))
    }

    /// Sends the request; a 2xx answer's Content-Type and body (not read yet), or the error.
    fn open(&self, url: &str) -> Result<(Option<String>, ureq::Body), FetchError> {
        let accept = if url.split('?').next().is_some_and(|p| p.ends_with(".json")) {
            "application/json"
        } else {
            "text/plain;version=0.0.4;q=1,application/openmetrics-text;version=1.0.0;q=0.5,*/*;q=0.1"
        };
        let mut req = self.agent.get(url).header("Accept", accept);
        if let Some(token) = &self.bearer {
            req = req.header("Authorization", &format!("Bearer {token}"));
        }
        let resp = req.call().map_err(|e| classify(url, e))?;
        let status = resp.status().as_u16();
        let content_type = resp.headers().get("content-type").and_then(|v| v.to_str().ok()).map(str::to_owned);
        let body = resp.into_body();
        if !(200..300).contains(&status) {
            // The start of the error page is enough to show.
            let mut head = Vec::new();
            let mut reader = body.into_with_config().limit(MAX_BODY).reader();
            reader.by_ref().take(8 << 10).read_to_end(&mut head).map_err(|e| read_error(url, e))?;
            let text = String::from_utf8_lossy(&head);
            let first_line: String = text.lines().next().unwrap_or("").chars().take(200).collect();
            return Err(FetchError::Status { url: url.to_owned(), status, body: first_line });
        }
        Ok((content_type, body))
    }
}

/// A body taken in by [`Fetcher::fetch_with`].
#[derive(Debug, Clone)]
pub struct Streamed<T> {
    pub value: T,
    pub url: String,
    pub content_type: Option<String>,
    /// From the request to the end of the body.
    pub took: Duration,
}

fn is_json(content_type: &str) -> bool {
    content_type.starts_with("application/json")
}

/// What a failure to read the body of `url` means (a body cut short, too big, too slow, …).
pub fn read_error(url: &str, e: io::Error) -> FetchError {
    match classify(url, ureq::Error::from(e)) {
        FetchError::Unreachable { url, detail } => FetchError::Invalid { url, detail },
        other => other,
    }
}

fn classify(url: &str, e: ureq::Error) -> FetchError {
    let url = url.to_owned();
    match e {
        ureq::Error::Io(io) if io.kind() == io::ErrorKind::ConnectionRefused => FetchError::Refused { url },
        ureq::Error::Io(io) if io.kind() == io::ErrorKind::TimedOut => FetchError::Timeout { url },
        ureq::Error::Timeout(_) => FetchError::Timeout { url },
        ureq::Error::HostNotFound => FetchError::Unreachable { url, detail: "host not found".into() },
        ureq::Error::Io(io) => FetchError::Unreachable { url, detail: io.to_string() },
        ureq::Error::ConnectionFailed => FetchError::Unreachable { url, detail: "connection failed".into() },
        ureq::Error::BadUri(u) => FetchError::Invalid { url, detail: format!("bad URL {u}") },
        other => FetchError::Invalid { url, detail: other.to_string() },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets() {
        let t = Target::parse("127.0.0.1:9464").unwrap();
        assert_eq!((t.base.as_str(), t.path.as_deref()), ("http://127.0.0.1:9464", None));
        assert_eq!(
            t.candidates(Want::Any, Some("10s")),
            ["http://127.0.0.1:9464/metrics.json?window=10s", "http://127.0.0.1:9464/metrics"]
        );
        assert_eq!(t.candidates(Want::Text, None), ["http://127.0.0.1:9464/metrics"]);
        let t = Target::parse("http://h:1/metrics").unwrap();
        assert_eq!(t.candidates(Want::Any, None), ["http://h:1/metrics"]);
        assert_eq!(t.candidates(Want::Json, None), ["http://h:1/metrics.json"]);
        let t = Target::parse("http://h:1/metrics.json?window=1m").unwrap();
        assert_eq!(t.candidates(Want::Any, Some("10s")), ["http://h:1/metrics.json?window=1m"]);
        assert_eq!(t.candidates(Want::Text, None), ["http://h:1/metrics"]);
        assert!(Target::parse("https://h/metrics").unwrap_err().contains("https"));
        assert!(Target::parse("ftp://h").is_err());
        assert!(Target::parse("http:///metrics").is_err());
        assert!(Target::parse("[::1]:9464").is_ok() && Target::parse("http://u:p@h:1/m").is_ok());
        for bad in ["127.0.0.1:70000", "h:0", "h:", "h:x", ":9464", "[::1", "[::1]x", "h:-1", "h:65536"] {
            assert!(Target::parse(bad).is_err(), "{bad}");
        }
        assert!(Target::parse("127.0.0.1:70000").unwrap_err().contains("port 70000 is out of range"));
    }
}
