#!/usr/bin/env bash
# The published packages: the library and the CLI contain only their sources, README and
# licences, and each builds from its package alone (`cargo package` verifies; the CLI against
# the library's package through cargo's temporary local registry).
set -euo pipefail
cd "$(dirname "$0")/.."

check_list() {
  local pkg=$1 allowed=$2 stray
  stray=$(cargo package --list --allow-dirty -p "$pkg" 2>/dev/null | grep -Ev "$allowed" || true)
  if [ -n "$stray" ]; then
    echo "stray files in the $pkg package:"; echo "$stray"; exit 1
  fi
  echo "$pkg: $(cargo package --list --allow-dirty -p "$pkg" 2>/dev/null | wc -l) files, none stray"
}
common='^(\.cargo_vcs_info\.json|Cargo\.lock|Cargo\.toml|Cargo\.toml\.orig|README\.md|LICENSE-MIT|LICENSE-APACHE'
check_list shardmetrics "$common|ARCHITECTURE\.md|src/.*\.rs)$"
check_list shardmetrics-cli "$common|src/.*\.rs)$"

# cargo unpacks the library's package for the CLI's verification from a temporary local
# registry into $CARGO_HOME/registry/src/-<hash>/ and builds it as a registry crate, and treats
# both as immutable (same name and version): after an earlier commit was packaged from the same
# path, the CLI would be verified against that commit's library. So: remove our unpacked
# copies, and verify in a target dir of its own, emptied first.
rm -rf "${CARGO_HOME:-$HOME/.cargo}"/registry/src/-*/shardmetrics-[0-9]* target/package-verify

# Tests, benches and examples stay in the repository (they need the workspace's test harness
# and peers), so cargo notes each one it leaves out; those notes are expected.
cargo package -p shardmetrics -p shardmetrics-cli --allow-dirty --target-dir target/package-verify 2>&1 | grep -v '^warning: ignoring \(test\|benchmark\|example\)'
