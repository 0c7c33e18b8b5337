//! Pushes snapshots to a Prometheus Pushgateway in text format 0.0.4, periodically from the
//! exporter's own thread or once with [`Pushgateway::push_once`].
//!
//! The group is `/metrics/job/<job>{/<label>/<value>}`: values are percent-encoded, and a
//! value that is empty or contains `/` (or is `.` / `..`, which HTTP path handling would
//! collapse) uses the `<label>@base64/<base64url>` form the Pushgateway documents (an empty
//! value is sent as `=`). [`PushMethod::Put`] (default) replaces the whole group,
//! [`PushMethod::Post`] only the metric names pushed.
//!
//! Queueing, retries with backoff, and the `shardmetrics_export_samples_total` self-metrics
//! are described in [`ExporterHandle`]. The queue holds one push by default: a
//! newer snapshot supersedes an older one still waiting (counted as `dropped`).
//!
//! ```no_run
//! use shardmetrics::{export::pushgateway::Pushgateway, Registry};
//!
//! let registry = Registry::builder().manual().build();
//! let batch_done = registry.counter("batch_records_total").build()?;
//! batch_done.add(1_000);
//! let gateway = Pushgateway::builder("http://127.0.0.1:9091")
//!     .job("nightly_import")
//!     .grouping_label("instance", "db-1")
//!     .build(&registry)?;
//! gateway.push_once(&registry.flush())?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

#![forbid(unsafe_code)]

use std::{fmt, sync::Arc, time::Duration};

use crate::{
    export::{
        error::check_label_name,
        http_client, prometheus,
        sink::{sample_count, Batch, ExporterId, SendError, Sink},
        worker::Exporter,
        ExportError, ExportOptions, ExporterBuilder, ExporterHandle,
    },
    snapshot::Snapshot,
    Registry,
};

/// How a push treats the metrics already in the group.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PushMethod {
    /// `PUT`: the pushed metrics replace every metric of the group.
    #[default]
    Put,
    /// `POST`: only metrics with the pushed names are replaced.
    Post,
}

/// Configures a [`Pushgateway`] exporter. The settings every exporter shares (interval,
/// queue capacity, backoff, shutdown, request timeout) are set through [`ExporterBuilder`];
/// the queue holds one push by default (only the newest matters).
#[derive(Debug, Clone)]
#[must_use = "a builder does nothing until `build` or `start`"]
pub struct PushgatewayBuilder {
    url: String,
    job: String,
    grouping: Vec<(String, String)>,
    method: PushMethod,
    options: ExportOptions,
}

impl ExporterBuilder for PushgatewayBuilder {
    fn options_mut(&mut self) -> &mut ExportOptions {
        &mut self.options
    }
}

impl crate::export::builder::sealed::Sealed for PushgatewayBuilder {}
impl crate::export::builder::sealed::Http for PushgatewayBuilder {}

impl PushgatewayBuilder {
    /// The `job` of the group (required).
    pub fn job(mut self, job: &str) -> Self {
        self.job = job.to_owned();
        self
    }

    /// Adds a grouping label (e.g. `instance`); a later call with the same name replaces the
    /// value.
    pub fn grouping_label(mut self, name: &str, value: &str) -> Self {
        self.grouping.retain(|(k, _)| k != name);
        self.grouping.push((name.to_owned(), value.to_owned()));
        self
    }

    /// `PUT` (default) or `POST`.
    pub fn method(mut self, method: PushMethod) -> Self {
        self.method = method;
        self
    }

    /// Validates the configuration and registers the exporter's self-metrics in `registry`.
    pub fn build(self, registry: &Registry) -> Result<Pushgateway, ExportError> {
        let base = self.url.trim_end_matches('/');
        http_client::check_url(base)?;
        if self.job.is_empty() {
            return Err(ExportError::Missing { what: "the Pushgateway job" });
        }
        for (k, _) in &self.grouping {
            check_label_name(k)?;
            if k == "job" {
                return Err(ExportError::InvalidLabelName { label: k.clone() });
            }
        }
        let url = group_url(base, &self.job, &self.grouping);
        http_client::check_url(&url)?;
        let sink = PushSink { url, agent: http_client::agent(self.options.timeout), method: self.method };
        Ok(Pushgateway { exporter: Exporter::new(registry, ID, sink, self.options) })
    }

    /// [`build`](Self::build)s and [`start`](Pushgateway::start)s the exporter.
    pub fn start(self, registry: &Registry) -> Result<ExporterHandle, ExportError> {
        Ok(self.build(registry)?.start())
    }
}

/// The name of the exporter's thread.
pub(crate) const THREAD_NAME: &str = "sm-pushgateway";
/// The `exporter` label of the self-metrics, and the thread.
const ID: ExporterId = ExporterId { name: "pushgateway", thread: THREAD_NAME };

/// A configured Pushgateway exporter.
pub struct Pushgateway {
    exporter: Exporter<PushSink>,
}

impl fmt::Debug for Pushgateway {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pushgateway").field("url", &self.exporter.sink.url).finish_non_exhaustive()
    }
}

impl Pushgateway {
    /// Starts configuring an exporter for the gateway at `url` (e.g. `http://pushgateway:9091`).
    pub fn builder(url: &str) -> PushgatewayBuilder {
        PushgatewayBuilder {
            url: url.to_owned(),
            job: String::new(),
            grouping: Vec::new(),
            method: PushMethod::default(),
            options: ExportOptions::new(1),
        }
    }

    /// The group's URL, `…/metrics/job/<job>{/<label>/<value>}`.
    pub fn url(&self) -> &str {
        &self.exporter.sink.url
    }

    /// Pushes one snapshot now on the calling thread, retrying with the configured backoff;
    /// counts the outcome like the background thread does. A gateway that does not answer
    /// within the request [`timeout`](ExporterBuilder::timeout) is not retried:
    /// [`ExportError::TimedOut`] after one timeout.
    pub fn push_once(&self, snapshot: &Snapshot) -> Result<(), ExportError> {
        self.exporter.export_once(snapshot)
    }

    /// Deletes the group from the gateway (e.g. when a batch job's results should not
    /// linger), retrying with the configured backoff (a timeout is not retried, as for
    /// [`push_once`](Self::push_once)).
    pub fn delete(&self) -> Result<(), ExportError> {
        let delete = DeleteGroup(self.exporter.sink.clone());
        let batch = Batch { seq: 0, samples: 0, body: Ok(Vec::new()) };
        self.exporter.deliver_via(&delete, &batch)
    }

    /// Starts the background thread: every interval, a new snapshot is pushed.
    pub fn start(self) -> ExporterHandle {
        self.exporter.start()
    }
}

struct PushSink {
    url: String,
    agent: ureq::Agent,
    method: PushMethod,
}

impl Sink for PushSink {
    fn encode(&self, snapshot: &Snapshot) -> Batch {
        Batch {
            seq: snapshot.seq(),
            samples: sample_count(snapshot),
            body: Ok(prometheus::render(snapshot).into_bytes()),
        }
    }

    fn send(&self, batch: &Batch, timeout: Duration) -> Result<(), SendError> {
        let body = batch.body.as_ref().map_err(|e| SendError::Rejected { status: 0, body: e.clone() })?;
        let req = match self.method {
            PushMethod::Put => self.agent.put(&self.url),
            PushMethod::Post => self.agent.post(&self.url),
        };
        let req = http_client::within(req.header("Content-Type", prometheus::CONTENT_TYPE), timeout);
        http_client::outcome(req.send(body.as_slice())).map(http_client::finish)
    }
}

/// The DELETE of a group, as a sink so it gets the same retries and logging.
struct DeleteGroup(Arc<PushSink>);

impl Sink for DeleteGroup {
    fn encode(&self, _: &Snapshot) -> Batch {
        Batch { seq: 0, samples: 0, body: Ok(Vec::new()) }
    }
    fn send(&self, _: &Batch, timeout: Duration) -> Result<(), SendError> {
        http_client::outcome(http_client::within(self.0.agent.delete(&self.0.url), timeout).call())
            .map(http_client::finish)
    }
}

/// `base/metrics/job/<job>{/<label>/<value>}` with each value encoded as the Pushgateway
/// expects.
pub fn group_url(base: &str, job: &str, grouping: &[(String, String)]) -> String {
    let mut url = String::with_capacity(base.len() + 64);
    url.push_str(base.trim_end_matches('/'));
    url.push_str("/metrics");
    push_segment(&mut url, "job", job);
    for (k, v) in grouping {
        push_segment(&mut url, k, v);
    }
    url
}

fn push_segment(url: &mut String, name: &str, value: &str) {
    url.push('/');
    url.push_str(name);
    if value.is_empty() || value.contains('/') || value == "." || value == ".." {
        url.push_str("@base64/");
        if value.is_empty() {
            url.push('=');
        } else {
            base64url(url, value.as_bytes());
        }
    } else {
        url.push('/');
        percent_encode(url, value);
    }
}

/// Percent-encodes everything but RFC 3986's unreserved characters.
fn percent_encode(out: &mut String, v: &str) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    for &b in v.as_bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push('%');
            out.push(HEX[(b >> 4) as usize] as char);
            out.push(HEX[(b & 15) as usize] as char);
        }
    }
}

/// RFC 4648 §5 base64url, with `=` padding (the Pushgateway accepts both).
fn base64url(out: &mut String, data: &[u8]) {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    for chunk in data.chunks(3) {
        let b = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b64(s: &str) -> String {
        let mut out = String::new();
        base64url(&mut out, s.as_bytes());
        out
    }

    #[test]
    fn base64url_matches_rfc4648_vectors() {
        // RFC 4648 §10 test vectors.
        for (plain, enc) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(b64(plain), enc);
        }
        // The URL-safe alphabet: '-' and '_' instead of '+' and '/'.
        assert_eq!(b64("\u{fb}\u{ff}"), "w7vDvw==");
        let mut out = String::new();
        base64url(&mut out, &[0xfb, 0xff, 0xbf]);
        assert_eq!(out, "-_-_");
    }

    #[test]
    fn group_urls_follow_the_pushgateway_docs() {
        let g = |pairs: &[(&str, &str)]| {
            let v: Vec<(String, String)> = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
            group_url("http://gw:9091/", "some_job", &v)
        };
        assert_eq!(g(&[]), "http://gw:9091/metrics/job/some_job");
        assert_eq!(g(&[("instance", "some_instance")]), "http://gw:9091/metrics/job/some_job/instance/some_instance");
        // The docs' examples: a '/' in a value, and an empty value.
        assert_eq!(g(&[("path", "/var/tmp")]), "http://gw:9091/metrics/job/some_job/path@base64/L3Zhci90bXA=");
        assert_eq!(g(&[("first_label", "")]), "http://gw:9091/metrics/job/some_job/first_label@base64/=");
        assert_eq!(g(&[("zone", "eu 1?#%")]), "http://gw:9091/metrics/job/some_job/zone/eu%201%3F%23%25");
        assert_eq!(g(&[("x", "ü")]), "http://gw:9091/metrics/job/some_job/x/%C3%BC");
        assert_eq!(g(&[("d", "..")]), "http://gw:9091/metrics/job/some_job/d@base64/Li4=");
        assert_eq!(group_url("http://gw", "a/b", &[]), "http://gw/metrics/job@base64/YS9i");
    }

    #[test]
    fn builder_validates() {
        let r = Registry::builder().manual().build();
        let err = |b: PushgatewayBuilder| b.build(&r).unwrap_err();
        assert_eq!(err(Pushgateway::builder("http://gw:9091")), ExportError::Missing { what: "the Pushgateway job" });
        assert!(matches!(err(Pushgateway::builder("gw:9091").job("j")), ExportError::InvalidUrl { .. }));
        assert!(matches!(
            err(Pushgateway::builder("http://gw:9091").job("j").grouping_label("job", "x")),
            ExportError::InvalidLabelName { .. }
        ));
        assert!(matches!(
            err(Pushgateway::builder("http://gw:9091").job("j").grouping_label("a-b", "x")),
            ExportError::InvalidLabelName { .. }
        ));
        let ok = Pushgateway::builder("http://gw:9091").job("j").grouping_label("i", "1").grouping_label("i", "2");
        assert_eq!(ok.build(&r).unwrap().url(), "http://gw:9091/metrics/job/j/i/2");
    }
}
