//! Turns criterion's output into PNG charts and markdown tables for BENCHMARKS.md.
//!
//! ```text
//! cargo run --release --manifest-path benches/report/Cargo.toml -- \
//!     --criterion target/criterion --out docs/bench
//! ```
//!
//! Reads `<criterion>/**/new/{benchmark.json,estimates.json}` and, if present,
//! `memory.json` and `service.json` from `--data` (default `<criterion>/../shardmetrics-bench`).
//! Writes one PNG per hot-path, render and tick group, `memory.png`, `service.png`, and
//! `tables.md`. Groups that were not run are left out; see `sections.rs` for how groups are
//! recognised.

#![forbid(unsafe_code)]

mod chart;
mod criterion;
mod format;
mod grid;
mod memory;
mod sections;
mod service;
mod table;

use std::{
    fs,
    path::{Path, PathBuf},
    process::ExitCode,
    time::{SystemTime, UNIX_EPOCH},
};

use chart::{Bars, Lines};

/// DejaVu Sans, from Debian's `fonts-dejavu-core`.
pub const DEFAULT_FONT: &str = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf";

const USAGE: &str = "\
usage: shardmetrics-bench-report [--criterion DIR] [--out DIR] [--data DIR] [--font TTF]
                                 [--image-dir PATH] [--date YYYY-MM-DD]

  --criterion DIR   criterion's output (default target/criterion)
  --out DIR         where the PNGs and tables.md go (default docs/bench)
  --data DIR        memory.json and service.json (default <criterion>/../shardmetrics-bench)
  --font TTF        font for the charts (default $SHARDMETRICS_REPORT_FONT or DejaVuSans.ttf)
  --image-dir PATH  image links in tables.md, relative to BENCHMARKS.md (default: --out)
  --date DATE       date in the tables.md header (default: today, UTC)";

#[derive(Debug)]
struct Args {
    criterion: PathBuf,
    out: PathBuf,
    data: Option<PathBuf>,
    font: PathBuf,
    image_dir: Option<String>,
    date: Option<String>,
}

fn parse_args(mut it: impl Iterator<Item = String>) -> Result<Args, String> {
    let font = std::env::var_os("SHARDMETRICS_REPORT_FONT").map_or_else(|| DEFAULT_FONT.into(), Into::into);
    let mut a = Args {
        criterion: "target/criterion".into(),
        out: "docs/bench".into(),
        data: None,
        font,
        image_dir: None,
        date: None,
    };
    while let Some(flag) = it.next() {
        if flag == "-h" || flag == "--help" {
            return Err(USAGE.to_owned());
        }
        let value = it.next().ok_or_else(|| format!("{flag} needs a value\n{USAGE}"))?;
        match flag.as_str() {
            "--criterion" => a.criterion = value.into(),
            "--out" => a.out = value.into(),
            "--data" => a.data = Some(value.into()),
            "--font" => a.font = value.into(),
            "--image-dir" => a.image_dir = Some(value),
            "--date" => a.date = Some(value),
            _ => return Err(format!("unknown argument {flag}\n{USAGE}")),
        }
    }
    Ok(a)
}

/// The PNG file name for a group: its id with anything but `[A-Za-z0-9_-]` replaced by `_`.
pub fn png_name(group: &str) -> String {
    let stem: String =
        group.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' { c } else { '_' }).collect();
    format!("{stem}.png")
}

/// Today's date (UTC) as `YYYY-MM-DD`, from the days since the epoch (Howard Hinnant's
/// `civil_from_days`).
fn today() -> String {
    let secs = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    civil_date(secs / 86_400)
}

fn civil_date(days: u64) -> String {
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}")
}

fn run(args: Args) -> Result<(), String> {
    let benches = criterion::read_tree(&args.criterion);
    let data = args
        .data
        .clone()
        .unwrap_or_else(|| args.criterion.parent().unwrap_or(Path::new(".")).join("shardmetrics-bench"));
    let memory = memory::read(&data.join("memory.json"))?;
    let service = service::read(&data.join("service.json"))?;
    if benches.is_empty() && memory.is_none() && service.is_none() {
        return Err(format!(
            "no criterion results under {} and no memory.json/service.json in {}: run `cargo bench` first",
            args.criterion.display(),
            data.display()
        ));
    }
    let sections = sections::classify(&benches);
    chart::load_font(&args.font)?;
    fs::create_dir_all(&args.out).map_err(|e| format!("{}: {e}", args.out.display()))?;

    let mut images: Vec<String> = Vec::new();
    let mut write = |name: &str, draw: &dyn Fn(&Path) -> chart::Result<()>| {
        let file = png_name(name);
        let path = args.out.join(&file);
        match draw(&path) {
            Ok(()) => images.push(file),
            Err(e) => eprintln!("warning: {}: {e}", path.display()),
        }
    };
    let sig3 = |v: f64| format::compact(v);
    let same = |c: &str| c.to_owned();
    let threads = |c: &str| match c.strip_suffix('t') {
        Some("1") => "1 thread".to_owned(),
        Some(n) => format!("{n} threads"),
        None => c.to_owned(),
    };
    for s in &sections.hot_path {
        let title = format!("{}: ns per operation per thread (median, lower is better)", s.name);
        write(&s.name, &|p| {
            chart::bars_png(
                p,
                &Bars {
                    title: &title,
                    y_desc: "ns / op / thread",
                    grid: &s.grid,
                    label: &sig3,
                    category: &threads,
                    log: None,
                    legend: true,
                },
            )
        });
    }
    let count = |v: f64| format::count(v);
    for s in &sections.render {
        let title = format!("{}: render cost per series (median / series)", s.name);
        write(&s.name, &|p| {
            let lines =
                Lines { title: &title, x_desc: "series", y_desc: "ns per series", grid: &s.grid, y_label: &count };
            chart::lines_png(p, &lines)
        });
    }
    let duration = |v: f64| format::duration_short(v);
    for s in &sections.tick {
        let title = format!("{}: time per aggregator tick (median)", s.name);
        write(&s.name, &|p| {
            let lines =
                Lines { title: &title, x_desc: "series", y_desc: "time per tick", grid: &s.grid, y_label: &duration };
            chart::lines_png(p, &lines)
        });
    }
    if let Some(rows) = memory.as_deref().filter(|r| !r.is_empty()) {
        let grid = memory::bytes_grid(rows);
        write("memory", &|p| {
            let title = "Memory: bytes per series (largest measured size; lower is better)";
            let bars = Bars {
                title,
                y_desc: "bytes per series",
                grid: &grid,
                label: &sig3,
                category: &same,
                log: Some(true),
                legend: true,
            };
            chart::bars_png(p, &bars)
        });
    }
    if let Some(rows) = service.as_deref().filter(|r| !r.is_empty()) {
        let rps = service::grid(rows, "req/s", |r| r.requests_per_sec);
        let p99 = service::grid(rows, "p99", |r| r.p99_ms);
        write("service", &|p| {
            let left = Bars {
                title: "Throughput (req/s, higher is better)",
                y_desc: "requests per second",
                grid: &rps,
                label: &count,
                category: &same,
                log: Some(false),
                legend: false,
            };
            let right = Bars {
                title: "p99 latency (ms, lower is better)",
                y_desc: "p99 ms",
                grid: &p99,
                label: &sig3,
                category: &same,
                log: Some(false),
                legend: false,
            };
            chart::bars_pair_png(p, &left, &right)
        });
    }

    let image_dir = args.image_dir.clone().unwrap_or_else(|| args.out.display().to_string());
    let date = args.date.clone().unwrap_or_else(today);
    let source = args.criterion.display().to_string();
    let md = table::markdown(&table::Input {
        source: &source,
        date: &date,
        sections: &sections,
        memory: memory.as_deref(),
        service: service.as_deref(),
        image_dir: Some(&image_dir),
        images: &images,
    });
    let tables = args.out.join("tables.md");
    fs::write(&tables, md).map_err(|e| format!("{}: {e}", tables.display()))?;
    println!("{} benchmarks read; wrote {} PNGs and tables.md to {}", benches.len(), images.len(), args.out.display());
    Ok(())
}

fn main() -> ExitCode {
    match parse_args(std::env::args().skip(1)).and_then(run) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_and_names() {
        assert_eq!(civil_date(0), "1970-01-01");
        assert_eq!(civil_date(11_016), "2000-02-29");
        assert_eq!(civil_date(20_089), "2025-01-01");
        assert_eq!(png_name("facade_counter"), "facade_counter.png");
        assert_eq!(png_name("a/b c"), "a_b_c.png");
    }

    #[test]
    fn arguments() {
        let a = parse_args(["--criterion", "x", "--out", "y", "--date", "2025-01-01"].map(String::from).into_iter())
            .unwrap();
        assert_eq!((a.criterion, a.out, a.date.as_deref()), ("x".into(), "y".into(), Some("2025-01-01")));
        assert!(parse_args(["--bogus", "1"].map(String::from).into_iter()).unwrap_err().contains("unknown"));
        assert!(parse_args(["--out"].map(String::from).into_iter()).unwrap_err().contains("needs a value"));
    }

    /// The whole run on a fake tree: PNGs for each group, tables.md with links to them.
    #[test]
    fn end_to_end() {
        let tmp = tempfile::tempdir().unwrap();
        let crit = tmp.path().join("target/criterion");
        for (lib, a, b) in [("shardmetrics", 1.2, 1.3), ("prometheus", 3.5, 60.0), ("floor", 0.6, 0.6)] {
            criterion::tests::write_bench(&crit, "counter_inc", lib, Some("1t"), a, 1);
            criterion::tests::write_bench(&crit, "counter_inc", lib, Some("2t"), b, 1);
        }
        for n in [100u32, 10_000, 100_000] {
            criterion::tests::write_bench(
                &crit,
                "render_json",
                "shardmetrics",
                Some(&n.to_string()),
                40.0 * f64::from(n),
                1,
            );
            criterion::tests::write_bench(&crit, "tick_counters", "2thr", Some(&n.to_string()), 9.0 * f64::from(n), 1);
        }
        let data = tmp.path().join("target/shardmetrics-bench");
        fs::create_dir_all(&data).unwrap();
        fs::write(
            data.join("memory.json"),
            r#"[{"lib":"shardmetrics","kind":"counter","threads":2,"series":1000,"bytes_per_series":24,"allocs_per_series":0}]"#,
        )
        .unwrap();
        let out = tmp.path().join("docs/bench");
        let font = std::env::var("SHARDMETRICS_REPORT_FONT").unwrap_or_else(|_| DEFAULT_FONT.into());
        let args = [
            "--criterion",
            crit.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
            "--image-dir",
            "docs/bench",
            "--font",
            &font,
            "--date",
            "2025-01-01",
        ];
        run(parse_args(args.map(String::from).into_iter()).unwrap()).unwrap();
        let mut files: Vec<String> =
            fs::read_dir(&out).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
        files.sort();
        assert_eq!(files, ["counter_inc.png", "memory.png", "render_json.png", "tables.md", "tick_counters.png"]);
        let md = fs::read_to_string(out.join("tables.md")).unwrap();
        assert!(md.contains("on 2025-01-01"), "{md}");
        assert!(md.contains("![render_json](docs/bench/render_json.png)"), "{md}");
        assert!(md.contains("| prometheus | 3.50 | 60.0 |"), "{md}");
        assert!(md.contains("| shardmetrics | 40.0 | 40.0 | 40.0 |"), "{md}");
        assert!(md.contains("| 2thr | 900 ns | 90.0 µs | 900 µs |"), "{md}");
        assert!(!md.contains("service"), "no service.json, no service section: {md}");
    }
}
