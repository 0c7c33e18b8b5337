//! Periodic export to a file, in Prometheus text format (for node_exporter's textfile
//! collector, for instance) or JSON, from the exporter's own thread.
//!
//! Every write is atomic: the new content goes to a temporary file in the same directory,
//! which is fsynced and renamed over the target, and the directory is fsynced — a reader
//! opening the file sees the previous complete content or the new one, never a partial file.
//!
//! * [`FileMode::Replace`] (default): the file always holds the latest snapshot.
//! * [`FileMode::Append`]: each snapshot is appended as one record (a
//!   `# shardmetrics snapshot seq=… timestamp_ms=…` line followed by the text export, or one
//!   JSON document per line). When the file would grow past
//!   [`rotate_bytes`](FileExporterBuilder::rotate_bytes) it is rotated: `metrics.prom` becomes
//!   `metrics.prom.1`, `.1` becomes `.2`, …; at most [`max_files`](FileExporterBuilder::max_files)
//!   rotated files are kept, and rotated files older than
//!   [`max_age`](FileExporterBuilder::max_age) are deleted.
//!
//! I/O errors never panic: they are logged, counted in
//! `shardmetrics_export_samples_total{exporter="file",outcome="failed"}`, and the write is
//! tried again with the next snapshot, at the next tick, with no backoff by default (why:
//! [`FileExporterBuilder`], "When a write fails").
//!
//! ```no_run
//! use shardmetrics::{export::file::{FileExporter, FileFormat}, Registry};
//!
//! let registry = Registry::new();
//! let exporter = FileExporter::builder("/var/lib/node_exporter/textfile/app.prom")
//!     .format(FileFormat::Prometheus)
//!     .start(&registry)?;
//! // … record metrics …
//! exporter.shutdown(); // writes the final snapshot
//! # Ok::<(), shardmetrics::export::ExportError>(())
//! ```

#![forbid(unsafe_code)]

use std::{
    ffi::OsString,
    fmt, fs,
    io::{self, Write},
    path::{Path, PathBuf},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use crate::sync::{AtomicU64, Ordering};
use crate::{
    export::{
        prometheus,
        sink::{sample_count, Batch, ExporterId, SendError, Sink},
        worker::Exporter,
        Backoff, ExportError, ExportOptions, ExporterBuilder, ExporterHandle,
    },
    snapshot::Snapshot,
    Registry,
};

/// What the file holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum FileFormat {
    /// Prometheus text format 0.0.4 ([`prometheus::render`]).
    #[default]
    Prometheus,
    /// The JSON document of [`crate::export::json::render`].
    #[cfg(feature = "json")]
    Json,
}

/// Whether each write replaces the file or appends to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FileMode {
    /// The file holds the latest snapshot only.
    #[default]
    Replace,
    /// Each snapshot is appended as a record; the file is rotated by size.
    Append,
}

/// Configures a [`FileExporter`]. The settings every exporter shares (interval, queue
/// capacity, backoff, shutdown) are set through [`ExporterBuilder`].
///
/// # When a write fails
/// The default [`backoff`](ExporterBuilder::backoff) is one attempt per snapshot and no delay:
/// a failed write is counted as failed and tried again with the next snapshot, at the next
/// tick, however long the errors last. This is on purpose, and unlike the HTTP exporters: a
/// local write fails for a full disk, a permission or a missing directory, which someone
/// fixes out of band, and the file should be current at the first tick after the fix, as
/// node_exporter's textfile collector users expect. There is no receiver to spare either: a
/// failing attempt costs a few syscalls, and errors are logged once per tick. (The HTTP
/// exporters' default, 100 ms doubling up to 10 s between attempts, would leave the file up
/// to 10 s stale after the fix.) A [`Backoff`] with delays set here spaces attempts out while
/// errors persist, as for the HTTP exporters (snapshots arriving meanwhile supersede the
/// pending one and are counted as dropped).
#[derive(Debug, Clone)]
#[must_use = "a builder does nothing until `build` or `start`"]
pub struct FileExporterBuilder {
    path: PathBuf,
    format: FileFormat,
    mode: FileMode,
    rotate_bytes: u64,
    max_files: usize,
    max_age: Option<Duration>,
    options: ExportOptions,
}

impl ExporterBuilder for FileExporterBuilder {
    fn options_mut(&mut self) -> &mut ExportOptions {
        &mut self.options
    }
}

impl crate::export::builder::sealed::Sealed for FileExporterBuilder {}

impl FileExporterBuilder {
    /// The file's format (default Prometheus text).
    pub fn format(mut self, format: FileFormat) -> Self {
        self.format = format;
        self
    }

    /// Replace (default) or append.
    pub fn mode(mut self, mode: FileMode) -> Self {
        self.mode = mode;
        self
    }

    /// Append mode: rotate when the file would grow past this many bytes (default 16 MiB).
    /// A single record larger than this gets a file of its own.
    pub fn rotate_bytes(mut self, bytes: u64) -> Self {
        self.rotate_bytes = bytes.max(1);
        self
    }

    /// Append mode: rotated files kept, `metrics.prom.1` ..= `metrics.prom.N` (default 5;
    /// 0 keeps none).
    pub fn max_files(mut self, n: usize) -> Self {
        self.max_files = n;
        self
    }

    /// Append mode: rotated files last modified longer ago than this are deleted (default:
    /// no age limit).
    pub fn max_age(mut self, age: Duration) -> Self {
        self.max_age = Some(age);
        self
    }

    /// Validates the configuration and registers the exporter's self-metrics in `registry`.
    /// The directory is not created or checked here: errors surface (counted) when writing.
    pub fn build(self, registry: &Registry) -> Result<FileExporter, ExportError> {
        let file_name = self.path.file_name().ok_or(ExportError::Missing { what: "the file name" })?.to_owned();
        let dir = match self.path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
            _ => PathBuf::from("."),
        };
        let sink = FileSink {
            path: self.path,
            dir,
            file_name,
            format: self.format,
            mode: self.mode,
            rotate_bytes: self.rotate_bytes,
            max_files: self.max_files,
            max_age: self.max_age,
            nonce: AtomicU64::new(0),
        };
        Ok(FileExporter { exporter: Exporter::new(registry, ID, sink, self.options) })
    }

    /// [`build`](Self::build)s and [`start`](FileExporter::start)s the exporter.
    pub fn start(self, registry: &Registry) -> Result<ExporterHandle, ExportError> {
        Ok(self.build(registry)?.start())
    }
}

/// The name of the exporter's thread.
pub(crate) const THREAD_NAME: &str = "sm-file-export";
/// The `exporter` label of the self-metrics, and the thread.
const ID: ExporterId = ExporterId { name: "file", thread: THREAD_NAME };

/// A configured file exporter: [`start`](Self::start) it for periodic writes on its own
/// thread, or [`write_once`](Self::write_once) a snapshot now.
pub struct FileExporter {
    exporter: Exporter<FileSink>,
}

impl fmt::Debug for FileExporter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FileExporter").field("path", &self.exporter.sink.path).finish_non_exhaustive()
    }
}

impl FileExporter {
    /// Starts configuring an exporter that writes `path`.
    pub fn builder(path: impl Into<PathBuf>) -> FileExporterBuilder {
        FileExporterBuilder {
            path: path.into(),
            format: FileFormat::default(),
            mode: FileMode::default(),
            rotate_bytes: 16 << 20,
            max_files: 5,
            max_age: None,
            // One attempt per snapshot, no delay: a failed write is tried again at the next tick
            // (see "When a write fails" on the builder).
            options: ExportOptions {
                backoff: Backoff::new().max_attempts(1).initial(Duration::ZERO),
                ..ExportOptions::new(1)
            },
        }
    }

    /// Writes one snapshot now, on the calling thread; counts the outcome.
    pub fn write_once(&self, snapshot: &Snapshot) -> Result<(), ExportError> {
        self.exporter.export_once(snapshot).map_err(|e| match e {
            ExportError::GaveUp { last, .. } => {
                ExportError::Io { path: self.exporter.sink.path.display().to_string(), message: last }
            }
            e => e,
        })
    }

    /// The file written.
    pub fn path(&self) -> &Path {
        &self.exporter.sink.path
    }

    /// Starts the background thread: every interval, a new snapshot is written.
    pub fn start(self) -> ExporterHandle {
        self.exporter.start()
    }
}

struct FileSink {
    path: PathBuf,
    dir: PathBuf,
    file_name: OsString,
    format: FileFormat,
    mode: FileMode,
    rotate_bytes: u64,
    max_files: usize,
    max_age: Option<Duration>,
    /// Makes temporary file names unique within the process.
    nonce: AtomicU64,
}

impl FileSink {
    fn rotated(&self, n: usize) -> PathBuf {
        let mut name = self.file_name.clone();
        name.push(format!(".{n}"));
        self.dir.join(name)
    }

    fn temp_path(&self) -> PathBuf {
        // Relaxed: a unique number, nothing else depends on it.
        let n = self.nonce.fetch_add(1, Ordering::Relaxed);
        let mut name = OsString::from(".");
        name.push(&self.file_name);
        name.push(format!(".tmp.{}.{n}", std::process::id()));
        self.dir.join(name)
    }

    /// Writes `record` atomically (replacing, or appending to a copy of, the file), rotating
    /// first if appending would pass the size limit. Removes the temporary file on failure.
    fn write(&self, record: &[u8]) -> io::Result<()> {
        let tmp = self.temp_path();
        let result = self.write_via(&tmp, record);
        if result.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        result
    }

    fn write_via(&self, tmp: &Path, record: &[u8]) -> io::Result<()> {
        let mut rotate = false;
        let mut file = match self.mode {
            FileMode::Replace => fs::File::create(tmp)?,
            FileMode::Append => {
                let len = match fs::metadata(&self.path) {
                    Ok(m) => m.len(),
                    Err(e) if e.kind() == io::ErrorKind::NotFound => 0,
                    Err(e) => return Err(e),
                };
                rotate = len > 0 && len.saturating_add(record.len() as u64) > self.rotate_bytes;
                if len == 0 || rotate {
                    fs::File::create(tmp)?
                } else {
                    // The kernel copies (copy_file_range on Linux); the append then goes to the
                    // private copy, so readers of the file never see half a record.
                    fs::copy(&self.path, tmp)?;
                    fs::OpenOptions::new().append(true).open(tmp)?
                }
            }
        };
        file.write_all(record)?;
        file.sync_all()?;
        drop(file);
        if rotate {
            self.rotate()?;
        }
        fs::rename(tmp, &self.path)?;
        sync_dir(&self.dir)?;
        if self.mode == FileMode::Append {
            self.retain()?;
        }
        Ok(())
    }

    /// Shifts `name.k` to `name.k+1` (dropping the oldest) and links the current file as
    /// `name.1`. The current file stays in place until the new one is renamed over it.
    fn rotate(&self) -> io::Result<()> {
        if self.max_files == 0 {
            return Ok(());
        }
        remove_if_exists(&self.rotated(self.max_files))?;
        for k in (1..self.max_files).rev() {
            match fs::rename(self.rotated(k), self.rotated(k + 1)) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
                _ => {}
            }
        }
        let first = self.rotated(1);
        if fs::hard_link(&self.path, &first).is_err() {
            // File systems without hard links: a copy (the mtime then becomes now).
            fs::copy(&self.path, &first)?;
        }
        Ok(())
    }

    /// Deletes rotated files past `max_files` or older than `max_age`.
    fn retain(&self) -> io::Result<()> {
        let prefix = {
            let mut p = self.file_name.clone();
            p.push(".");
            p.into_string().ok()
        };
        let Some(prefix) = prefix else { return Ok(()) };
        let now = SystemTime::now();
        for entry in fs::read_dir(&self.dir)? {
            let entry = entry?;
            let name = entry.file_name();
            let Some(n) = name.to_str().and_then(|n| n.strip_prefix(&prefix)).and_then(|n| n.parse::<usize>().ok())
            else {
                continue;
            };
            let too_many = n == 0 || n > self.max_files;
            let too_old = match self.max_age {
                Some(age) => entry
                    .metadata()
                    .and_then(|m| m.modified())
                    .is_ok_and(|t| now.duration_since(t).unwrap_or(Duration::ZERO) > age),
                None => false,
            };
            if too_many || too_old {
                remove_if_exists(&entry.path())?;
            }
        }
        Ok(())
    }
}

fn remove_if_exists(path: &Path) -> io::Result<()> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// Makes a rename durable: fsync of the directory holding the entry.
fn sync_dir(dir: &Path) -> io::Result<()> {
    #[cfg(unix)]
    {
        fs::File::open(dir)?.sync_all()
    }
    #[cfg(not(unix))]
    {
        let _ = dir;
        Ok(())
    }
}

impl Sink for FileSink {
    fn encode(&self, snapshot: &Snapshot) -> Batch {
        let mut body = String::new();
        match self.format {
            FileFormat::Prometheus => {
                if self.mode == FileMode::Append {
                    let ts = snapshot.taken_at().duration_since(UNIX_EPOCH).map(|d| d.as_millis()).unwrap_or(0);
                    body.push_str(&format!("# shardmetrics snapshot seq={} timestamp_ms={ts}\n", snapshot.seq()));
                }
                body.push_str(&prometheus::render(snapshot));
            }
            #[cfg(feature = "json")]
            FileFormat::Json => {
                body.push_str(&crate::export::json::render(snapshot));
                body.push('\n');
            }
        }
        Batch { seq: snapshot.seq(), samples: sample_count(snapshot), body: Ok(body.into_bytes()) }
    }

    fn send(&self, batch: &Batch, _timeout: Duration) -> Result<(), SendError> {
        let body = batch.body.as_ref().map_err(|e| SendError::Retryable(e.clone()))?;
        self.write(body).map_err(|e| SendError::Retryable(format!("{}: {e}", self.path.display())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_dir(tag: &str) -> PathBuf {
        static N: AtomicU64 = AtomicU64::new(0);
        let d = std::env::temp_dir().join(format!(
            "shardmetrics-file-unit-{}-{tag}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = fs::remove_dir_all(&d);
        fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn replace_writes_the_text_export_and_leaves_no_temp_file() {
        let dir = temp_dir("replace");
        let r = Registry::builder().manual().build();
        let c = r.counter("hits").build().unwrap();
        let exporter = FileExporter::builder(dir.join("m.prom")).build(&r).unwrap();
        c.add(5);
        exporter.write_once(&r.flush()).unwrap();
        c.add(5);
        let snap = r.flush();
        exporter.write_once(&snap).unwrap();
        assert_eq!(fs::read_to_string(dir.join("m.prom")).unwrap(), prometheus::render(&snap));
        let names: Vec<_> = fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names, vec![OsString::from("m.prom")]);
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn rotated_names() {
        let r = Registry::builder().manual().build();
        let e = FileExporter::builder("metrics.prom").build(&r).unwrap();
        assert_eq!(e.exporter.sink.dir, PathBuf::from("."));
        assert_eq!(e.exporter.sink.rotated(2), PathBuf::from("./metrics.prom.2"));
        assert!(e.exporter.sink.temp_path().file_name().unwrap().to_str().unwrap().starts_with(".metrics.prom.tmp."));
        assert!(FileExporter::builder("/").build(&r).is_err());
    }
}
