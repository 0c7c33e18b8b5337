//! Reading criterion's output directory.
//!
//! Criterion 0.8 writes one directory per benchmark,
//! `<criterion>/<group>/<function>[/<value>]/new/{benchmark.json,estimates.json}`. The directory
//! names are sanitised copies of the ids (and a group id may itself contain `/`, as
//! `facade_counter/1thr` does), so the ids are taken from `benchmark.json`, never from the path.
//! The figure kept is the median's point estimate, in nanoseconds per iteration.

use std::{
    fs,
    path::{Path, PathBuf},
};

use serde_json::Value;

/// One benchmark's identity and median, as criterion recorded them.
#[derive(Debug, Clone, PartialEq)]
pub struct Bench {
    /// `group_id`, e.g. `counter_inc`.
    pub group: String,
    /// `function_id`, e.g. `shardmetrics` (the library) or `1thr` (the tick's thread count).
    pub function: String,
    /// `value_str`, e.g. `2t` or `10000`; `None` for benchmarks without a parameter.
    pub value: Option<String>,
    /// Median time per iteration, in nanoseconds.
    pub median_ns: f64,
    /// `Throughput::Elements(n)` if the group set it; each iteration then handled `n` elements.
    pub elements: Option<u64>,
}

impl Bench {
    /// Median time per element: the median divided by the throughput's element count (1 if the
    /// group did not set `Throughput::Elements`).
    pub fn ns_per_element(&self) -> f64 {
        match self.elements {
            Some(n) if n > 0 => self.median_ns / n as f64,
            _ => self.median_ns,
        }
    }
}

/// Everything readable under `root`, sorted by (group, function, value). Benchmarks whose files
/// are missing or malformed are skipped with a warning on stderr, and a missing `root` gives an
/// empty list: the report is built from whatever groups have been run.
pub fn read_tree(root: &Path) -> Vec<Bench> {
    let mut dirs = Vec::new();
    collect_new_dirs(root, &mut dirs);
    let mut benches: Vec<Bench> = dirs
        .iter()
        .filter_map(|dir| match read_bench(dir) {
            Ok(b) => Some(b),
            Err(e) => {
                eprintln!("warning: skipping {}: {e}", dir.display());
                None
            }
        })
        .collect();
    benches.sort_by(|a, b| (&a.group, &a.function, &a.value).cmp(&(&b.group, &b.function, &b.value)));
    benches
}

/// Every `new` directory below `dir` that holds a `benchmark.json`. Criterion's own HTML
/// (`report/`) and the previous run (`base/`) are not descended into.
fn collect_new_dirs(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = fs::read_dir(dir) else { return };
    let mut subdirs: Vec<PathBuf> = entries.filter_map(Result::ok).map(|e| e.path()).filter(|p| p.is_dir()).collect();
    subdirs.sort();
    for path in subdirs {
        match path.file_name().and_then(|n| n.to_str()) {
            Some("new") if path.join("benchmark.json").is_file() => out.push(path),
            Some("report" | "base" | "change") => {}
            _ => collect_new_dirs(&path, out),
        }
    }
}

/// Reads one `new/` directory.
pub fn read_bench(dir: &Path) -> Result<Bench, String> {
    let meta = read_json(&dir.join("benchmark.json"))?;
    let estimates = read_json(&dir.join("estimates.json"))?;
    let text = |key: &str| meta.get(key).and_then(Value::as_str).map(str::to_owned);
    let group = text("group_id").ok_or("benchmark.json has no group_id")?;
    let function = text("function_id").ok_or("benchmark.json has no function_id")?;
    let value = text("value_str");
    let elements = meta.get("throughput").and_then(|t| t.get("Elements")).and_then(Value::as_u64);
    let median_ns = estimates
        .pointer("/median/point_estimate")
        .and_then(Value::as_f64)
        .ok_or("estimates.json has no median.point_estimate")?;
    if !median_ns.is_finite() || median_ns < 0.0 {
        return Err(format!("median {median_ns} is not a time"));
    }
    Ok(Bench { group, function, value, median_ns, elements })
}

/// Parses a JSON file, with the path in the error.
pub fn read_json(path: &Path) -> Result<Value, String> {
    let text = fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Writes one benchmark the way criterion 0.8 lays it out; `dir_parts` are the directory
    /// names (which criterion derives from the ids), the ids go into `benchmark.json`.
    pub(crate) fn write_bench(
        root: &Path,
        group: &str,
        function: &str,
        value: Option<&str>,
        median: f64,
        elements: u64,
    ) {
        let mut dir = root.join(group.replace('/', "_")).join(function);
        if let Some(v) = value {
            dir = dir.join(v);
        }
        for sub in ["new", "base"] {
            let d = dir.join(sub);
            fs::create_dir_all(&d).unwrap();
            let meta = serde_json::json!({
                "group_id": group, "function_id": function, "value_str": value,
                "throughput": {"Elements": elements},
                "full_id": "ignored", "directory_name": "ignored", "title": "ignored",
            });
            // The base run differs, so reading it by mistake shows up in the medians.
            let m = if sub == "new" { median } else { median * 1000.0 };
            let est = serde_json::json!({
                "mean": {"point_estimate": m * 1.5, "standard_error": 0.1},
                "median": {"point_estimate": m, "standard_error": 0.1,
                           "confidence_interval": {"confidence_level": 0.95, "lower_bound": m, "upper_bound": m}},
            });
            fs::write(d.join("benchmark.json"), meta.to_string()).unwrap();
            fs::write(d.join("estimates.json"), est.to_string()).unwrap();
        }
    }

    #[test]
    fn reads_ids_from_benchmark_json_and_the_new_median() {
        let tmp = tempfile::tempdir().unwrap();
        write_bench(tmp.path(), "counter_inc", "shardmetrics", Some("1t"), 1.25, 1);
        write_bench(tmp.path(), "counter_inc", "prometheus", Some("2t"), 30.5, 1);
        write_bench(tmp.path(), "facade_counter/2thr", "metrics", None, 7.0, 1);
        write_bench(tmp.path(), "flush", "10k", None, 50_000.0, 10_000);
        // Criterion's HTML report directory is ignored, and so is a benchmark missing its estimates.
        fs::create_dir_all(tmp.path().join("report")).unwrap();
        let broken = tmp.path().join("counter_inc/broken/1t/new");
        fs::create_dir_all(&broken).unwrap();
        fs::write(broken.join("benchmark.json"), r#"{"group_id":"counter_inc","function_id":"broken"}"#).unwrap();

        let b = read_tree(tmp.path());
        let ids: Vec<(&str, &str, Option<&str>, f64)> =
            b.iter().map(|b| (b.group.as_str(), b.function.as_str(), b.value.as_deref(), b.median_ns)).collect();
        assert_eq!(
            ids,
            vec![
                ("counter_inc", "prometheus", Some("2t"), 30.5),
                ("counter_inc", "shardmetrics", Some("1t"), 1.25),
                ("facade_counter/2thr", "metrics", None, 7.0),
                ("flush", "10k", None, 50_000.0),
            ]
        );
        assert_eq!(b[3].elements, Some(10_000));
        assert_eq!(b[3].ns_per_element(), 5.0);
    }

    #[test]
    fn missing_root_is_empty() {
        let tmp = tempfile::tempdir().unwrap();
        assert!(read_tree(&tmp.path().join("nope")).is_empty());
    }

    #[test]
    fn rejects_estimates_without_a_median() {
        let tmp = tempfile::tempdir().unwrap();
        let d = tmp.path();
        fs::write(d.join("benchmark.json"), r#"{"group_id":"g","function_id":"f","value_str":null}"#).unwrap();
        fs::write(d.join("estimates.json"), r#"{"mean":{"point_estimate":3.0}}"#).unwrap();
        let err = read_bench(d).unwrap_err();
        assert!(err.contains("median"), "{err}");
    }
}
