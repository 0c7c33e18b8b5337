//! Every option of every command with boundary values (issue #14: `--seconds
//! 18446744073709551615` panicked): the command line either fails to parse with a usage error
//! (exit 2), or gives settings that the commands' own checks and conversions (`prepare`) turn
//! into what they run with, without a panic. Nothing is started: no process, no socket.

use std::{
    ffi::OsString,
    panic::{catch_unwind, AssertUnwindSafe},
    time::{Duration, Instant},
};

use clap::{CommandFactory, Parser};
use shardmetrics_cli::{
    args::{Cli, Command},
    demo, export, report, top, EXIT_USAGE,
};

/// Values every option is tried with.
fn values() -> Vec<OsString> {
    let mut v: Vec<OsString> = [
        "0",
        "1",
        "-1",
        "2",
        "65535",
        "65536",
        "4294967295",
        "4294967296",
        "18446744073709551615",
        "18446744073709551616",
        "99999999999999999999999",
        "-9223372036854775808",
        "1e308",
        "1e-308",
        "-0",
        "NaN",
        "inf",
        "-inf",
        "0.5",
        "",
        " ",
        "0s",
        "0ms",
        "1ms",
        "9ms",
        "10ms",
        "1h",
        "61m",
        "3601s",
        "99999999999h",
        "18446744073709551615s",
        "18446744073709551615ms",
        "5124095576030431h",
        "307445734561825860m",
        "1x1",
        "0x0",
        "65535x65535",
        "120x40",
        "127.0.0.1:0",
        "127.0.0.1:70000",
        "127.0.0.1:",
        ":9464",
        "[::1]:9464",
        "[::1",
        "localhost:-1",
        "http://127.0.0.1:1",
        "http://127.0.0.1:99999/metrics",
        "https://h",
        "ftp://h",
        "http://",
        "10s&x=1",
        "a b",
        "json",
        "prometheus",
        "-",
        "\u{0}",
        "ü",
    ]
    .into_iter()
    .map(OsString::from)
    .collect();
    v.push(OsString::from("9".repeat(400)));
    #[cfg(unix)]
    {
        use std::os::unix::ffi::OsStringExt;
        v.push(OsString::from_vec(vec![0xff, 0xfe, b'1']));
    }
    v
}

/// Parses `argv`; on success runs the command's checks and conversions, as `run` would.
fn check(argv: &[OsString]) {
    let shown = argv.iter().map(|a| a.to_string_lossy().into_owned()).collect::<Vec<_>>();
    let outcome = catch_unwind(AssertUnwindSafe(|| match Cli::try_parse_from(argv) {
        Err(e) => {
            assert_eq!(e.exit_code(), i32::from(EXIT_USAGE), "{shown:?}: {e}");
            assert!(!e.to_string().trim().is_empty(), "{shown:?}");
        }
        Ok(cli) => {
            let now = Instant::now();
            let result = match cli.command {
                None => demo::prepare(&cli.demo, now).map(|p| {
                    assert!(p.threads >= 1 && p.deadline.is_none_or(|d| d >= now), "{shown:?}: {p:?}");
                    assert!(p.rate_per_thread.is_none_or(|r| r.is_finite() && r > 0.0), "{shown:?}: {p:?}");
                    assert!(cli.demo.interval >= Duration::from_millis(10), "{shown:?}");
                }),
                Some(Command::Demo(a)) => demo::prepare(&a, now).map(|p| {
                    assert!(p.threads >= 1 && p.deadline.is_none_or(|d| d >= now), "{shown:?}: {p:?}");
                    assert!(p.rate_per_thread.is_none_or(|r| r.is_finite() && r > 0.0), "{shown:?}: {p:?}");
                    assert!(a.interval >= Duration::from_millis(10), "{shown:?}");
                }),
                Some(Command::Top(a)) => top::prepare(&a, now).map(|(f, deadline)| {
                    assert!(deadline.is_none_or(|d| d >= now), "{shown:?}");
                    let _ = f.url();
                    for attempts in [0, 1, 2, 31, 32, 33, u32::MAX] {
                        assert!(top::backoff(attempts, a.interval) <= top::MAX_BACKOFF, "{shown:?}");
                    }
                }),
                Some(Command::Report(a)) => report::prepare(&a).map(|(f, t)| {
                    let _ = f.url();
                    assert!(t.p99 > 0.0 && t.error_rate > 0.0, "{shown:?}");
                }),
                Some(Command::Export(a)) => export::prepare(&a).map(|f| {
                    let _ = f.url();
                }),
            };
            if let Err(e) = result {
                assert_eq!(e.code, EXIT_USAGE, "{shown:?}: {e}");
                assert!(!e.message.is_empty(), "{shown:?}");
            }
        }
    }));
    if let Err(p) = outcome {
        let msg = p.downcast_ref::<String>().cloned().or(p.downcast_ref::<&str>().map(|s| s.to_string()));
        panic!("{shown:?} panicked: {}", msg.unwrap_or_default());
    }
}

#[test]
fn no_argument_panics() {
    let cli = Cli::command();
    let values = values();
    let mut cases = 0;
    // `shardmetrics [demo options]` and each subcommand; URL-taking commands get a valid URL
    // unless the URL itself is what is varied.
    let mut commands: Vec<(Option<String>, &clap::Command)> = vec![(None, &cli)];
    commands.extend(cli.get_subcommands().map(|c| (Some(c.get_name().to_owned()), c)));
    for (name, cmd) in commands {
        let prefix: Vec<OsString> =
            std::iter::once("shardmetrics".into()).chain(name.iter().map(OsString::from)).collect();
        let needs_url = cmd.get_positionals().any(|p| p.get_id() == "url");
        let url: Vec<OsString> = if needs_url { vec!["http://127.0.0.1:1".into()] } else { Vec::new() };
        for arg in cmd.get_arguments() {
            let with = |extra: &[OsString], url: &[OsString]| {
                let mut argv = prefix.clone();
                argv.extend_from_slice(url);
                argv.extend_from_slice(extra);
                argv
            };
            if arg.is_positional() {
                for v in &values {
                    check(&with(&[], std::slice::from_ref(v)));
                    cases += 1;
                }
                continue;
            }
            let Some(long) = arg.get_long() else { continue };
            let flag = OsString::from(format!("--{long}"));
            if !arg.get_action().takes_values() {
                check(&with(std::slice::from_ref(&flag), &url));
                cases += 1;
                continue;
            }
            for v in &values {
                // `--opt VALUE` and `--opt=VALUE` (the latter for values starting with `-`).
                check(&with(&[flag.clone(), v.clone()], &url));
                let mut joined = flag.clone();
                joined.push("=");
                joined.push(v);
                check(&with(&[joined], &url));
                cases += 2;
            }
        }
    }
    assert!(cases > 500, "only {cases} cases: options not found");
}

#[test]
fn out_of_range_values_are_usage_errors() {
    let parse = |args: &[&str]| Cli::try_parse_from(std::iter::once("shardmetrics").chain(args.iter().copied()));
    for args in [
        &["demo", "--seconds", "18446744073709551615"][..],
        &["--seconds", "18446744073709551615"],
        &["top", "127.0.0.1:1", "--seconds", "18446744073709551615"],
        &["top", "127.0.0.1:1", "--seconds", "31536001"],
        &["top", "127.0.0.1:70000"],
        &["top", "127.0.0.1:0"],
        &["report", "http://127.0.0.1:65536/metrics"],
        &["top", "127.0.0.1:1", "--interval", "99999999999h"],
        &["top", "127.0.0.1:1", "--interval", "1ms"],
        &["top", "127.0.0.1:1", "--timeout", "18446744073709551615s"],
        &["demo", "--interval", "18446744073709551615s"],
        &["demo", "--rate", "1e300"],
        &["demo", "--listen", "127.0.0.1:70000"],
        &["demo", "--listen", "127.0.0.1"],
        &["report", "127.0.0.1:1", "--window", "10s&x=1"],
        &["top", "127.0.0.1:1", "--window", "a b"],
    ] {
        let e = parse(args).err().unwrap_or_else(|| panic!("{args:?} parsed"));
        assert_eq!(e.exit_code(), 2, "{args:?}: {e}");
    }
    for args in [
        &["demo", "--seconds", "31536000", "--interval", "1h", "--rate", "1e9", "--listen", "[::1]:0"][..],
        &["top", "[::1]:9464", "--seconds", "0", "--interval", "10ms", "--timeout", "1h", "--window", "1m"],
        &["report", "http://user:pw@localhost:65535/metrics", "--max-p99", "99999999999h"],
    ] {
        assert!(parse(args).is_ok(), "{args:?}: {}", parse(args).unwrap_err());
    }
}
