//! The OpenMetrics project's parser conformance cases (`tests/data/openmetrics-parsers`, copied
//! from the OpenMetrics repository with its Apache-2.0 licence; see the README there): every case marked `shouldParse: true` must be
//! accepted by `scrape::parse_openmetrics`, every other one rejected, and no case may panic
//! either parser.

use std::{fs, path::PathBuf};

use shardmetrics::scrape::{self, Format};

fn cases_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/openmetrics-parsers")
}

struct Case {
    name: String,
    text: Vec<u8>,
    should_parse: bool,
}

fn cases() -> Vec<Case> {
    let dir = cases_dir();
    let entries = fs::read_dir(&dir).unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()));
    let mut out = Vec::new();
    for entry in entries {
        let path = entry.expect("readable directory entry").path();
        if !path.is_dir() {
            continue;
        }
        let json = fs::read_to_string(path.join("test.json")).expect("test.json");
        let v: serde_json::Value = serde_json::from_str(&json).expect("test.json is JSON");
        assert_eq!(v["type"], "text", "{}", path.display());
        let file = v["file"].as_str().expect("file name");
        let should_parse = v["shouldParse"].as_bool().expect("shouldParse is a bool");
        let text = fs::read(path.join(file)).expect("metrics file");
        out.push(Case { name: path.file_name().unwrap().to_string_lossy().into_owned(), text, should_parse });
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

#[test]
fn openmetrics_parser_conformance() {
    let cases = cases();
    assert!(cases.len() >= 200, "expected the full suite (211 cases), found {}", cases.len());
    let (mut valid, mut valid_ok, mut invalid, mut invalid_rejected) = (0, 0, 0, 0);
    let mut failures = Vec::new();
    for c in &cases {
        let result = scrape::parse_bytes(&c.text, Format::OpenMetrics);
        if c.should_parse {
            valid += 1;
            match result {
                Ok(_) => valid_ok += 1,
                Err(e) => failures.push(format!("{}: valid case rejected: {e}", c.name)),
            }
        } else {
            invalid += 1;
            match result {
                Err(_) => invalid_rejected += 1,
                Ok(_) => failures.push(format!("{}: invalid case accepted", c.name)),
            }
        }
        // The lenient Prometheus parser must not panic on any of them either.
        let _ = scrape::parse_bytes(&c.text, Format::Prometheus);
    }
    println!(
        "OpenMetrics conformance: {} cases; valid accepted {valid_ok}/{valid}; invalid rejected {invalid_rejected}/{invalid}",
        cases.len()
    );
    assert!(failures.is_empty(), "{} failures:\n{}", failures.len(), failures.join("\n"));
}

#[test]
fn valid_cases_parse_to_the_expected_values() {
    let read = |case: &str| {
        let text = fs::read_to_string(cases_dir().join(case).join("metrics")).unwrap();
        scrape::parse_openmetrics(&text).unwrap_or_else(|e| panic!("{case}: {e}"))
    };
    let f = read("escaping");
    assert_eq!(f[0].help.as_deref(), Some("he\n\\l\\tp"));
    let values: Vec<&str> = f[0].samples.iter().map(|s| s.label("foo").unwrap()).collect();
    assert_eq!(values, ["b\"a\nr", "b\\a\\z", "b\"a\nr # ", "b\\a\\z # "]);

    let f = read("labels_and_infinite");
    assert_eq!(f[0].samples[0].value, f64::INFINITY);
    assert_eq!(f[0].samples[1].value, f64::NEG_INFINITY);

    let f = read("nan_gauge");
    assert!(f[0].samples[0].value.is_nan());

    let f = read("timestamps");
    let ts: Vec<f64> = f[0].samples.iter().map(|s| s.timestamp.unwrap()).collect();
    assert_eq!(&ts[..3], [0.0, 0.0, 1.1]);
    assert_eq!(ts[4], 1500.0);

    let f = read("histogram_exemplars");
    let ex = f[0].samples[2].exemplar.as_ref().unwrap();
    assert_eq!((ex.value, ex.timestamp), (4.0, Some(123.0)));

    let f = read("counter_unit");
    assert_eq!((f[0].name.as_str(), f[0].unit.as_deref()), ("cc_seconds", Some("seconds")));
    assert_eq!(f[0].samples.len(), 2);

    let f = read("hash_in_label_value");
    assert_eq!(f[0].samples[1].label("foo"), Some("} foo # bar # "));

    let f = read("uint64_counter");
    assert_eq!(f[0].samples[0].value, 9_223_372_036_854_775_808.0);
}
