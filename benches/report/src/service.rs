//! `target/shardmetrics-bench/service.json`, written by the service-overhead bench: an array of
//! `{"variant", "requests_per_sec", "p50_ms", "p99_ms"}`, in the order the bench ran them.

use std::path::Path;

use serde_json::Value;

use crate::{criterion::read_json, grid::Grid};

#[derive(Debug, Clone, PartialEq)]
pub struct ServiceRow {
    pub variant: String,
    pub requests_per_sec: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
}

/// The rows of `path` in file order, or `None` if the file does not exist. Malformed entries
/// are skipped with a warning; a file that is not a JSON array is an error.
pub fn read(path: &Path) -> Result<Option<Vec<ServiceRow>>, String> {
    if !path.exists() {
        return Ok(None);
    }
    let json = read_json(path)?;
    let items = json.as_array().ok_or_else(|| format!("{}: expected a JSON array", path.display()))?;
    Ok(Some(
        items
            .iter()
            .filter_map(|item| {
                let row = parse(item);
                if row.is_none() {
                    eprintln!("warning: {}: skipping malformed entry {item}", path.display());
                }
                row
            })
            .collect(),
    ))
}

fn parse(v: &Value) -> Option<ServiceRow> {
    Some(ServiceRow {
        variant: v.get("variant")?.as_str()?.to_owned(),
        requests_per_sec: v.get("requests_per_sec")?.as_f64()?,
        p50_ms: v.get("p50_ms")?.as_f64()?,
        p99_ms: v.get("p99_ms")?.as_f64()?,
    })
}

/// One figure per variant, for a bar chart: a single row named `series`, one column per variant
/// in file order.
pub fn grid(rows: &[ServiceRow], series: &str, figure: impl Fn(&ServiceRow) -> f64) -> Grid {
    Grid::from_points(rows.iter().enumerate().map(|(i, r)| (series.to_owned(), r.variant.clone(), i as f64, figure(r))))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_in_file_order() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("service.json");
        assert_eq!(read(&path), Ok(None));
        std::fs::write(
            &path,
            r#"[{"variant":"none","requests_per_sec":50000,"p50_ms":0.5,"p99_ms":2.25},
                {"variant":"shardmetrics","requests_per_sec":49000.5,"p50_ms":0.51,"p99_ms":2.5},
                {"variant":"bad"}]"#,
        )
        .unwrap();
        let rows = read(&path).unwrap().unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[1].requests_per_sec, 49000.5);
        let g = grid(&rows, "p99", |r| r.p99_ms);
        assert_eq!(g.cols.iter().map(|c| c.label.as_str()).collect::<Vec<_>>(), ["none", "shardmetrics"]);
        assert_eq!(g.find("p99", "shardmetrics"), Some(2.5));
    }
}
