//! `target/shardmetrics-bench/memory.json`, written by the memory bench: an array of
//! `{"lib", "kind", "threads", "series", "bytes_per_series", "allocs_per_series"}` with `kind`
//! one of `counter`, `histogram`, `registered_counter`.

use std::path::Path;

use serde_json::Value;

use crate::{criterion::read_json, grid::Grid};

/// Kinds in the order the chart and table show them; other kinds follow alphabetically.
const KIND_ORDER: &[&str] = &["counter", "registered_counter", "histogram"];

#[derive(Debug, Clone, PartialEq)]
pub struct MemoryRow {
    pub lib: String,
    pub kind: String,
    pub threads: u64,
    pub series: u64,
    pub bytes_per_series: f64,
    pub allocs_per_series: f64,
}

/// The rows of `path`, or `None` if the file does not exist. Malformed entries are skipped
/// with a warning; a file that is not a JSON array is an error.
pub fn read(path: &Path) -> Result<Option<Vec<MemoryRow>>, String> {
    if !path.exists() {
        return Ok(None);
    }
    let json = read_json(path)?;
    let items = json.as_array().ok_or_else(|| format!("{}: expected a JSON array", path.display()))?;
    let mut rows: Vec<MemoryRow> = items
        .iter()
        .filter_map(|item| {
            let row = parse(item);
            if row.is_none() {
                eprintln!("warning: {}: skipping malformed entry {item}", path.display());
            }
            row
        })
        .collect();
    rows.sort_by(|a, b| {
        (kind_rank(&a.kind), crate::grid::row_order(&a.lib), a.threads, a.series).cmp(&(
            kind_rank(&b.kind),
            crate::grid::row_order(&b.lib),
            b.threads,
            b.series,
        ))
    });
    Ok(Some(rows))
}

fn parse(v: &Value) -> Option<MemoryRow> {
    Some(MemoryRow {
        lib: v.get("lib")?.as_str()?.to_owned(),
        kind: v.get("kind")?.as_str()?.to_owned(),
        threads: v.get("threads")?.as_u64()?,
        series: v.get("series")?.as_u64()?,
        bytes_per_series: v.get("bytes_per_series")?.as_f64()?,
        allocs_per_series: v.get("allocs_per_series")?.as_f64()?,
    })
}

fn kind_rank(kind: &str) -> (usize, String) {
    (KIND_ORDER.iter().position(|k| *k == kind).unwrap_or(KIND_ORDER.len()), kind.to_owned())
}

/// Bytes per series for the chart: rows are libraries, columns kinds. Where a library and kind
/// were measured at several sizes, the largest series count (then thread count) is kept: it is
/// the one least affected by fixed costs.
pub fn bytes_grid(rows: &[MemoryRow]) -> Grid {
    let mut kinds: Vec<(usize, String)> = rows.iter().map(|r| kind_rank(&r.kind)).collect();
    kinds.sort();
    kinds.dedup();
    let mut best: Vec<&MemoryRow> = Vec::new();
    for r in rows {
        match best.iter_mut().find(|b| b.lib == r.lib && b.kind == r.kind) {
            Some(b) if (r.series, r.threads) > (b.series, b.threads) => *b = r,
            Some(_) => {}
            None => best.push(r),
        }
    }
    Grid::from_points(best.into_iter().map(|r| {
        let x = kinds.iter().position(|k| k.1 == r.kind).expect("kind collected above") as f64;
        (r.lib.clone(), r.kind.clone(), x, r.bytes_per_series)
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_and_keeps_the_largest_size_per_kind() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("memory.json");
        assert_eq!(read(&path), Ok(None));
        std::fs::write(
            &path,
            r#"[
              {"lib":"prometheus","kind":"histogram","threads":1,"series":1000,"bytes_per_series":900.5,"allocs_per_series":3},
              {"lib":"shardmetrics","kind":"counter","threads":2,"series":1000,"bytes_per_series":40,"allocs_per_series":0.01},
              {"lib":"shardmetrics","kind":"counter","threads":2,"series":100000,"bytes_per_series":24,"allocs_per_series":0.001},
              {"lib":"shardmetrics","kind":"histogram","threads":2,"series":1000,"bytes_per_series":1200,"allocs_per_series":0.1},
              {"lib":"broken","kind":"counter"}
            ]"#,
        )
        .unwrap();
        let rows = read(&path).unwrap().unwrap();
        assert_eq!(rows.len(), 4);
        assert_eq!((rows[0].lib.as_str(), rows[0].kind.as_str(), rows[0].series), ("shardmetrics", "counter", 1000));
        assert_eq!(rows[3].lib, "prometheus");
        let g = bytes_grid(&rows);
        assert_eq!(g.cols.iter().map(|c| c.label.as_str()).collect::<Vec<_>>(), ["counter", "histogram"]);
        assert_eq!(g.find("shardmetrics", "counter"), Some(24.0));
        assert_eq!(g.find("prometheus", "histogram"), Some(900.5));
        assert_eq!(g.find("prometheus", "counter"), None);
    }

    #[test]
    fn not_an_array_is_an_error() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("memory.json");
        std::fs::write(&path, r#"{"lib":"x"}"#).unwrap();
        assert!(read(&path).unwrap_err().contains("array"));
    }
}
