//! Replays every committed fuzz corpus file (fuzz/corpus/<target>/*) through the same target
//! bodies the cargo-fuzz binaries run, on stable, in every `cargo test --workspace`: the seed
//! edge cases and every minimised crash stay fixed.

use shardmetrics_fuzz as targets;

use std::{fs, path::PathBuf};

fn replay(target: &str, run: fn(&[u8])) {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("corpus").join(target);
    let mut files: Vec<PathBuf> = fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()))
        .map(|e| e.expect("directory entry").path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no corpus files for {target}");
    for f in &files {
        let data = fs::read(f).expect("corpus file");
        if let Err(panic) = std::panic::catch_unwind(|| run(&data)) {
            eprintln!("corpus file {} failed", f.display());
            std::panic::resume_unwind(panic);
        }
    }
    println!("{target}: {} corpus files replayed", files.len());
}

#[test]
fn names_corpus() {
    replay("names", targets::names);
}

#[test]
fn exposition_corpus() {
    replay("exposition", targets::exposition);
}

#[test]
fn histogram_corpus() {
    replay("histogram", targets::histogram);
}

#[test]
fn json_corpus() {
    replay("json", targets::json);
}

#[test]
fn scrape_corpus() {
    replay("scrape", targets::scrape);
}

/// The targets also run on generated inputs here, so a plain `cargo test` exercises them
/// beyond the corpus (deterministic xorshift; a hundred inputs per target).
#[test]
fn generated_inputs() {
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    for round in 0..100 {
        let len = (next() % 200) as usize;
        let data: Vec<u8> = (0..len).map(|_| next() as u8).collect();
        for (name, run) in [
            ("names", targets::names as fn(&[u8])),
            ("exposition", targets::exposition),
            ("histogram", targets::histogram),
            ("json", targets::json),
            ("scrape", targets::scrape),
        ] {
            if let Err(panic) = std::panic::catch_unwind(|| run(&data)) {
                eprintln!("{name}: generated input {round} failed: {data:?}");
                std::panic::resume_unwind(panic);
            }
        }
    }
}
