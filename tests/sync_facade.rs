//! The loom facade, enforced: outside `src/sync.rs` the engine names no atomic, `OnceLock`,
//! arc-swap or loom type directly, so every shared access is one that `--cfg shardmetrics_loom`
//! switches to loom and the models in `loom-tests/` check. (A clippy `disallowed-types` list
//! cannot say this: the facade's own re-exports resolve to the same std types.)
//!
//! A line may still use one if it, or one of the three lines above it, carries a
//! `loom-exempt:` comment saying why (process-wide statics, which loom types cannot be).

use std::{fs, path::Path};

/// Paths that name the types directly. A bare `AtomicU64` is fine: it was imported either from
/// the facade or through a path that contains one of these (and is reported there).
const FORBIDDEN: &[&str] = &["atomic::", "OnceLock", "arc_swap", "ArcSwap", "loom::"];

fn rust_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in fs::read_dir(dir).expect("readable src/") {
        let path = entry.expect("directory entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The code part of a line: without `//` comments and string literals (crudely, enough for
/// this source tree: no `//` inside strings on lines that also name a forbidden type).
fn code(line: &str) -> &str {
    let line = line.split("//").next().unwrap_or("");
    if line.trim_start().starts_with('"') {
        ""
    } else {
        line
    }
}

#[test]
fn engine_uses_atomics_only_through_the_sync_facade() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    files.sort();
    let mut violations = Vec::new();
    for file in &files {
        if file.ends_with("src/sync.rs") {
            continue;
        }
        let text = fs::read_to_string(file).expect("readable source");
        let lines: Vec<&str> = text.lines().collect();
        for (i, line) in lines.iter().enumerate() {
            let code = code(line);
            let direct = FORBIDDEN.iter().any(|f| code.contains(f)) && !code.contains("crate::sync");
            let exempt = lines[i.saturating_sub(3)..=i].iter().any(|l| l.contains("loom-exempt:"));
            if direct && !exempt {
                violations.push(format!("{}:{}: {}", file.strip_prefix(&src).unwrap().display(), i + 1, line.trim()));
            }
        }
    }
    assert!(
        violations.is_empty(),
        "use crate::sync (the loom facade) instead, or say why not with a `loom-exempt:` comment:\n{}",
        violations.join("\n")
    );
}
