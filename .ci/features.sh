#!/usr/bin/env bash
# The library's feature matrix: every target (lib, tests, benches, examples) checked with no
# default features, with each feature alone and with all of them, and the full test suite run
# with no default features (the lean build a library user gets).
#
# Why not `cargo hack --each-feature`: cargo-hack selects the package with `--manifest-path`,
# which at this workspace root means the default members — and the CLI among them turns on
# `json`, `http` and `process` through feature unification, so every "feature alone" run would
# really have those three on. `-p shardmetrics` selects the library alone.
set -euo pipefail
cd "$(dirname "$0")/.."

features=$(cargo metadata --no-deps --format-version 1 | python3 -c '
import json, sys
pkg = next(p for p in json.load(sys.stdin)["packages"] if p["name"] == "shardmetrics")
print(" ".join(sorted(f for f in pkg["features"] if f != "default")))')

run() { echo "+ $*"; "$@"; }

# What a dependent pays: no CLI, terminal, HTTP-client or system-sampling crate by default, and
# few packages (issue #12: at most 50 with the defaults, 20 without).
count() { cargo tree -p shardmetrics -e normal --prefix none "$@" | sed 's/ (\*)//' | sort -u | wc -l; }
with_defaults=$(count)
without=$(count --no-default-features)
echo "packages in the library's tree: $with_defaults with default features, $without without"
[ "$with_defaults" -le 50 ] || { echo "too many packages with default features: $with_defaults > 50"; exit 1; }
[ "$without" -le 20 ] || { echo "too many packages without default features: $without > 20"; exit 1; }
heavy=$(cargo tree -p shardmetrics -e normal --prefix none | grep -E '^(clap|ratatui|crossterm|ureq|sysinfo|reqwest) ' || true)
[ -z "$heavy" ] || { echo "default features pull in: $heavy"; exit 1; }
# Warnings are errors here: code only one feature uses shows up as dead code in the others
# (clippy, which denies warnings, runs with all features only).
export RUSTFLAGS="${RUSTFLAGS:-} -D warnings"
run cargo check -p shardmetrics --all-targets --no-default-features
for f in $features; do
  run cargo check -p shardmetrics --all-targets --no-default-features --features "$f"
done
run cargo check -p shardmetrics --all-targets --all-features
unset RUSTFLAGS
run cargo test -p shardmetrics --no-default-features
echo "features: checked none, each of [$features] alone and all; tests pass without default features"
