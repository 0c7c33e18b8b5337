#!/usr/bin/env bash
# Instructions per operation of the hot_path benches, counted by valgrind's callgrind: exact and
# repeatable where wall-clock figures on a shared 2-core machine are not.
#
#   benches/callgrind.sh                 # the default operations (below)
#   benches/callgrind.sh counter_inc/floor histogram_record/shardmetrics …
#
# For each `<group>/<lib>`, runs the hot_path bench binary twice under callgrind with
# SHARDMETRICS_CALLGRIND=<group>/<lib>:<iters> (iters = N, then 0; both after the same 1,000
# warm-up calls), counting only inside `time_loop` (the measured loop; set-up, hashing with
# random seeds and exit are not counted), and prints (total(N) − total(0)) / N: the
# instructions of one operation in the bench's own loop, the loop's increment, compare and
# `black_box` included (the floor rows show that part).
# One thread, so the 2-thread contention of the wall-clock tables does not appear here.
set -euo pipefail
cd "$(dirname "$0")/.."
N="${N:-100000}"
if ! command -v valgrind >/dev/null; then
    echo "callgrind.sh: valgrind is not installed (apt-get install valgrind)" >&2
    exit 1
fi
bin=$(cargo bench --bench hot_path --no-run --message-format=json 2>/dev/null |
    python3 -c 'import json,sys
for l in sys.stdin:
    m = json.loads(l)
    if m.get("reason") == "compiler-artifact" and m["target"]["name"] == "hot_path" and m.get("executable"):
        print(m["executable"])')
ops=("$@")
if [ ${#ops[@]} -eq 0 ]; then
    for lib in shardmetrics prometheus prometheus-client metrics fast-telemetry floor; do ops+=("counter_inc/$lib"); done
    for lib in shardmetrics prometheus prometheus-client prometheus-client-native metrics fast-telemetry floor; do
        ops+=("histogram_record/$lib")
    done
    for lib in shardmetrics prometheus prometheus-client metrics fast-telemetry floor; do ops+=("labelled_inc_3/$lib"); done
    ops+=(timer_guard/shardmetrics timer_guard/prometheus timer_guard/floor gauge_set/shardmetrics gauge_set/floor)
fi
total() {
    # The last total is the bench process's own (criterion forks a child to look for gnuplot).
    SHARDMETRICS_CALLGRIND="$1:$2" valgrind --tool=callgrind --toggle-collect='*time_loop*' --callgrind-out-file=/dev/null "$bin" --bench 2>&1 |
        sed -n 's/.*Collected : \([0-9]*\).*/\1/p' | tail -1
}
echo "| operation | instructions per op (callgrind, 1 thread, N = $N) |"
echo "|---|---:|"
for op in "${ops[@]}"; do
    a=$(total "$op" "$N")
    b=$(total "$op" 0)
    if [ -z "$a" ] || [ -z "$b" ] || [ "$a" -le "$b" ]; then
        echo "callgrind.sh: $op: no such operation in benches/hot_path.rs (or it did not run)" >&2
        exit 1
    fi
    python3 -c "print(f'| $op | {($a - $b) / $N:.1f} |')"
done
