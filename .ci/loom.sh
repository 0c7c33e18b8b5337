#!/usr/bin/env bash
# Runs the loom models in loom-tests/ (one test file per structure) against the real engine
# code: `--cfg shardmetrics_loom` switches the engine's sync facade to loom and shrinks the
# shard chunks. Release build with debug assertions on, as loom recommends. Exits non-zero if
# any model fails (set -e + cargo's exit status).
#
# Knobs (environment): LOOM_MAX_PREEMPTIONS (default 2), LOOM_MAX_BRANCHES (default set in
# loom-tests/src/lib.rs), LOOM_LOG=1 / LOOM_LOCATION=1 / LOOM_CHECKPOINT_FILE for debugging a
# failure. Extra arguments go to the test harness, e.g. `.ci/loom.sh shard_handoff`.
set -euo pipefail
cd "$(dirname "$0")/.."

export LOOM_MAX_PREEMPTIONS="${LOOM_MAX_PREEMPTIONS:-2}"
export RUSTFLAGS="${RUSTFLAGS:-} --cfg shardmetrics_loom -C debug-assertions"
# A separate target dir: the loom cfg changes every crate's flags, and sharing `target/` would
# make ordinary builds and loom builds evict each other.
export CARGO_TARGET_DIR="${LOOM_TARGET_DIR:-target/loom}"

start=$(date +%s)
cargo test -p shardmetrics-loom-tests --release -- --nocapture "$@"
echo "loom: all models passed in $(( $(date +%s) - start )) s (LOOM_MAX_PREEMPTIONS=$LOOM_MAX_PREEMPTIONS)"
