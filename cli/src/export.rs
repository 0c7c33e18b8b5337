//! `shardmetrics export URL --format json|prometheus --out FILE`: one scrape, checked, written
//! atomically (a temporary file in the same directory, synced, then renamed over `FILE`), so a
//! reader never sees half a snapshot.

use std::{
    fmt, fs,
    io::{self, Write},
    path::Path,
};

use serde::de::{Deserialize, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use shardmetrics::scrape;

use super::{
    args::{ExportArgs, ExportFormat},
    fetch::{Fetcher, Want},
    ingest, CliError, EXIT_BAD_RESPONSE, EXIT_WRITE,
};

/// Checks that `body` is what was asked for; returns a description (`12 series`).
///
/// Neither format is built in memory: JSON is read with its values skipped (only the length of
/// the `"series"` array is kept), text is parsed a slice at a time ([`ingest::for_each_family`]).
pub fn validate(body: &str, content_type: Option<&str>, format: ExportFormat) -> Result<String, String> {
    let ct = content_type.unwrap_or("");
    match format {
        ExportFormat::Json => {
            let says_json = ct.to_ascii_lowercase().starts_with("application/json");
            let no_series = "the JSON has no \"series\" array: not a shardmetrics document; try --format prometheus";
            match serde_json::from_str::<SeriesCount>(body) {
                Ok(SeriesCount(Some(n))) => Ok(format!("{n} series")),
                Ok(SeriesCount(None)) => Err(no_series.into()),
                // Valid JSON of another shape (an array, a number, …).
                Err(e) if e.is_data() => Err(no_series.into()),
                Err(e) if says_json => Err(format!("the body is not valid JSON: {e}")),
                Err(e) => Err(format!(
                    "asked for JSON but got {}, and the body is not valid JSON ({e}); try --format prometheus",
                    or_unknown(ct)
                )),
            }
        }
        ExportFormat::Prometheus => {
            if ct.starts_with("application/json") {
                return Err("asked for Prometheus text but the endpoint sent JSON; try --format json".into());
            }
            // A family can come in several pieces: count names.
            let (mut families, mut samples) = (std::collections::HashSet::new(), 0usize);
            ingest::for_each_family(body, scrape::Format::from_content_type(ct), |f| {
                if !families.contains(&f.name) {
                    families.insert(f.name.clone());
                }
                samples += f.samples.len();
            })
            .map_err(|e| format!("the exposition does not parse: {e}"))?;
            Ok(format!("{} families, {samples} samples", families.len()))
        }
    }
}

/// A JSON document's top level read without building it: the length of its `"series"` array.
struct SeriesCount(Option<usize>);

impl<'de> Deserialize<'de> for SeriesCount {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<SeriesCount, D::Error> {
        struct Doc;
        impl<'de> Visitor<'de> for Doc {
            type Value = SeriesCount;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<SeriesCount, A::Error> {
                let mut n = None;
                while let Some(key) = map.next_key::<String>()? {
                    if key == "series" {
                        n = map.next_value::<ArrayLen>()?.0;
                    } else {
                        map.next_value::<IgnoredAny>()?;
                    }
                }
                Ok(SeriesCount(n))
            }
        }
        d.deserialize_map(Doc)
    }
}

/// Any JSON value: the number of elements if it is an array.
struct ArrayLen(Option<usize>);

impl<'de> Deserialize<'de> for ArrayLen {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<ArrayLen, D::Error> {
        struct Len;
        impl<'de> Visitor<'de> for Len {
            type Value = ArrayLen;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<ArrayLen, A::Error> {
                let mut n = 0;
                while seq.next_element::<IgnoredAny>()?.is_some() {
                    n += 1;
                }
                Ok(ArrayLen(Some(n)))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<ArrayLen, A::Error> {
                while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(ArrayLen(None))
            }
            fn visit_bool<E>(self, _: bool) -> Result<ArrayLen, E> {
                Ok(ArrayLen(None))
            }
            fn visit_i64<E>(self, _: i64) -> Result<ArrayLen, E> {
                Ok(ArrayLen(None))
            }
            fn visit_u64<E>(self, _: u64) -> Result<ArrayLen, E> {
                Ok(ArrayLen(None))
            }
            fn visit_f64<E>(self, _: f64) -> Result<ArrayLen, E> {
                Ok(ArrayLen(None))
            }
            fn visit_str<E>(self, _: &str) -> Result<ArrayLen, E> {
                Ok(ArrayLen(None))
            }
            fn visit_unit<E>(self) -> Result<ArrayLen, E> {
                Ok(ArrayLen(None))
            }
        }
        d.deserialize_any(Len)
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

/// Checks and converts `args` without starting anything: the fetcher.
pub fn prepare(args: &ExportArgs) -> Result<Fetcher, CliError> {
    let want = match args.format {
        ExportFormat::Json => Want::Json,
        ExportFormat::Prometheus => Want::Text,
    };
    Ok(args.endpoint.fetcher(want))
}

/// Runs `export`; returns the exit code.
pub fn run(args: ExportArgs) -> Result<u8, CliError> {
    let mut fetcher = prepare(&args)?;
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
        // Valid JSON that is not a shardmetrics document.
        for doc in ["[1,2]", "{}", r#"{"series":5}"#, "3", r#"{"series":{"a":[]}}"#] {
            let e = validate(doc, Some("application/json"), ExportFormat::Json).unwrap_err();
            assert!(e.contains("no \"series\" array"), "{doc}: {e}");
        }
        assert_eq!(
            validate(r#"{"a":{"series":[1]},"series":[[],{"x":[1]},null]}"#, None, ExportFormat::Json).unwrap(),
            "3 series"
        );
        // Invalid JSON said to be JSON: what is wrong and where.
        let e = validate("{not json", Some("application/json"), ExportFormat::Json).unwrap_err();
        assert!(e.starts_with("the body is not valid JSON: ") && e.contains("line 1 column 2"), "{e}");
        assert!(!e.contains("asked for JSON but got application/json"), "{e}");
        let e = validate(r#"{"series":[1,2"#, Some("application/json"), ExportFormat::Json).unwrap_err();
        assert!(e.contains("not valid JSON") && e.contains("EOF"), "{e}");
    }
}
