#!/usr/bin/env bash
# Regenerates the benchmark charts and tables (docs/bench/*.png, docs/bench/tables.md) from
# criterion's output. By default it only reads the results already in target/criterion and
# target/shardmetrics-bench; --run runs the benches first.
#
#   benches/report.sh                 # plots from the last `cargo bench`
#   benches/report.sh --run           # cargo bench, then plots
#   benches/report.sh --run --bench hot_path    # extra arguments go to `cargo bench`
#
# The generator is a standalone crate (benches/report, outside the workspace) drawing with
# plotters; its text is rendered from DejaVu Sans, installed here from Debian's
# fonts-dejavu-core if it is missing. SHARDMETRICS_REPORT_FONT picks another TTF.
set -euo pipefail
cd "$(dirname "$0")/.."

run=0
bench_args=()
while [ $# -gt 0 ]; do
    case "$1" in
        --run) run=1 ;;
        -h|--help) sed -n '2,11p' "$0"; exit 0 ;;
        *) bench_args+=("$1") ;;
    esac
    shift
done
if [ "$run" = 0 ] && [ ${#bench_args[@]} -gt 0 ]; then
    echo "report.sh: ${bench_args[*]}: bench arguments need --run" >&2
    exit 2
fi

font="${SHARDMETRICS_REPORT_FONT:-/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf}"
if [ ! -f "$font" ]; then
    if [ -z "${SHARDMETRICS_REPORT_FONT:-}" ] && command -v apt-get >/dev/null; then
        sudo=""
        [ "$(id -u)" = 0 ] || sudo="sudo"
        $sudo apt-get update -qq
        $sudo apt-get install -y -qq fonts-dejavu-core
    else
        echo "report.sh: font $font not found (install fonts-dejavu-core or set SHARDMETRICS_REPORT_FONT)" >&2
        exit 1
    fi
fi

if [ "$run" = 1 ]; then
    cargo bench --features metrics-facade "${bench_args[@]}"
fi

SHARDMETRICS_REPORT_FONT="$font" cargo run --release --manifest-path benches/report/Cargo.toml -- \
    --criterion target/criterion --out docs/bench
