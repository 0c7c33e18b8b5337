//! `shardmetrics export URL --format json|prometheus --out FILE`: one scrape, checked, written
//! atomically (a temporary file in the same directory, synced, then renamed over `FILE`), so a
//! reader never sees half a snapshot.

use std::{
    fs,
    io::{self, Write},
    path::Path,
};

use serde_json::Value as Json;
use shardmetrics::scrape;

use super::{
    args::{ExportArgs, ExportFormat},
    fetch::{Fetcher, Target, Want},
    CliError, EXIT_BAD_RESPONSE, EXIT_USAGE, EXIT_WRITE,
};

/// Checks that `body` is what was asked for; returns a description (`12 series`).
pub fn validate(body: &str, content_type: Option<&str>, format: ExportFormat) -> Result<String, String> {
    let ct = content_type.unwrap_or("");
    match format {
        ExportFormat::Json => {
            let doc: Json = serde_json::from_str(body)
                .map_err(|e| format!("asked for JSON but got {} ({e}); try --format prometheus", or_unknown(ct)))?;
            let n = doc
                .get("series")
                .and_then(Json::as_array)
                .map(Vec::len)
                .ok_or("the JSON has no \"series\" array: not a shardmetrics document; try --format prometheus")?;
            Ok(format!("{n} series"))
        }
        ExportFormat::Prometheus => {
            if ct.starts_with("application/json") {
                return Err("asked for Prometheus text but the endpoint sent JSON; try --format json".into());
            }
            let families = scrape::parse(body, scrape::Format::from_content_type(ct))
                .map_err(|e| format!("the exposition does not parse: {e}"))?;
            let samples: usize = families.iter().map(|f| f.samples.len()).sum();
            Ok(format!("{} families, {samples} samples", families.len()))
        }
    }
}

fn or_unknown(ct: &str) -> &str {
    if ct.is_empty() {
        "a body without a Content-Type"
    } else {
        ct
    }
}

/// Writes `bytes` to `path` atomically: temporary file beside it, `fsync`, rename.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let name = path
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "the output path has no file name"))?;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let tmp = dir.join(format!(".{}.{}.tmp", name.to_string_lossy(), std::process::id()));
    let written = (|| {
        let mut f = fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        fs::rename(&tmp, path)
    })();
    if written.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    written?;
    // Make the rename itself durable where directories can be synced (not on every platform).
    if let Ok(d) = fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

fn stdout(body: &str) -> io::Result<()> {
    let mut out = io::stdout().lock();
    out.write_all(body.as_bytes())?;
    out.flush()
}

/// Runs `export`; returns the exit code.
pub fn run(args: ExportArgs) -> Result<u8, CliError> {
    let target = Target::parse(&args.endpoint.url).map_err(|e| CliError::new(EXIT_USAGE, e))?;
    let want = match args.format {
        ExportFormat::Json => Want::Json,
        ExportFormat::Prometheus => Want::Text,
    };
    let mut fetcher = Fetcher::new(target, want, args.endpoint.timeout, args.endpoint.bearer.clone());
    let f = fetcher.fetch()?;
    let what = validate(&f.body, f.content_type.as_deref(), args.format)
        .map_err(|e| CliError::new(EXIT_BAD_RESPONSE, format!("{}: {e}", f.url)))?;
    match args.out.as_deref() {
        None => stdout(&f.body)?,
        Some(p) if p == Path::new("-") => stdout(&f.body)?,
        Some(path) => {
            write_atomic(path, f.body.as_bytes())
                .map_err(|e| CliError::new(EXIT_WRITE, format!("cannot write {}: {e}", path.display())))?;
            eprintln!("wrote {} ({what}, {} bytes) from {}", path.display(), f.body.len(), f.url);
        }
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_write_replaces_and_leaves_no_temporary() {
        let dir = std::env::temp_dir().join(format!("sm-export-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let path = dir.join("snap.json");
        write_atomic(&path, b"one").unwrap();
        write_atomic(&path, b"two").unwrap();
        assert_eq!(fs::read_to_string(&path).unwrap(), "two");
        let left: Vec<_> = fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(left, [std::ffi::OsString::from("snap.json")]);
        assert!(write_atomic(&dir.join("missing/x"), b"x").is_err());
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn validation() {
        assert_eq!(
            validate(r#"{"series":[{},{}]}"#, Some("application/json"), ExportFormat::Json).unwrap(),
            "2 series"
        );
        assert!(validate("a 1\n", Some("text/plain"), ExportFormat::Json).unwrap_err().contains("--format prometheus"));
        assert!(validate("{}", Some("application/json"), ExportFormat::Prometheus).is_err());
        assert_eq!(
            validate("a 1\nb 2\n", Some("text/plain"), ExportFormat::Prometheus).unwrap(),
            "2 families, 2 samples"
        );
        assert!(validate("a b c\n", None, ExportFormat::Prometheus).is_err());
    }
}
