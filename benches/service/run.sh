#!/usr/bin/env bash
# What instrumentation costs a real HTTP service (issue #7).
#
# Builds benches/service/server.rs in release, then for ROUNDS rounds runs each variant
# (none, shardmetrics, prometheus, metrics) once, in an order rotated every round: start the
# server on a free 127.0.0.1 port, warm up, drive it with
#   wrk -t1 -c${CONNECTIONS} -d${DURATION}s --latency -s <route mix>
# record Requests/sec, the 50% and 99% latency lines and the server's CPU time, check its
# /metrics counted the requests, stop it. Prints a markdown table of medians and writes
# target/shardmetrics-bench/service.json (raw reports in target/shardmetrics-bench/service-runs/).
#
# Environment: DURATION (s, default 10), ROUNDS (3), WARMUP (s, 2), CONNECTIONS (32),
# VARIANTS ("none shardmetrics prometheus metrics"), SERVER_CPU / WRK_CPU (default 1 / 0 when
# taskset exists and there are at least 2 CPUs), WORKERS (tokio worker threads, 1).
# INSTRUCTIONS=1 also runs each variant once under valgrind's callgrind (CG_DURATION s, default
# 10; counters zeroed after the warm-up, dumped after wrk) and reports user-space instructions
# per request: a figure that does not move when other jobs load the machine.
# Needs: cargo, wrk (installed with apt-get if missing and running as root), curl, python3;
# valgrind for INSTRUCTIONS=1.
set -euo pipefail
cd "$(dirname "$0")/../.."

DURATION=${DURATION:-10}
ROUNDS=${ROUNDS:-3}
WARMUP=${WARMUP:-2}
CONNECTIONS=${CONNECTIONS:-32}
WORKERS=${WORKERS:-1}
INSTRUCTIONS=${INSTRUCTIONS:-0}
CG_DURATION=${CG_DURATION:-10}
# shellcheck disable=SC2206 # a space-separated list, split on purpose
VARIANTS=(${VARIANTS:-none shardmetrics prometheus metrics})
OUT_DIR=target/shardmetrics-bench
BIN=target/release/examples/bench_service_overhead

log() { printf '==> %s\n' "$*" >&2; }

TOOLS=(curl python3)
[ "$INSTRUCTIONS" = 1 ] && TOOLS+=(valgrind callgrind_control)
for tool in "${TOOLS[@]}"; do
  command -v "$tool" >/dev/null || { echo "run.sh needs $tool" >&2; exit 1; }
done
if ! command -v wrk >/dev/null; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    log "installing wrk"
    apt-get update -qq && apt-get install -y -qq wrk >/dev/null
  else
    echo "wrk is not installed (Debian/Ubuntu: apt-get install wrk)" >&2
    exit 1
  fi
fi

log "building the example (release)"
cargo build --release --quiet --example bench_service_overhead

# Pinning: the server (all its threads, the aggregator's included) on one CPU, wrk on another,
# so they do not take turns on the same core.
SERVER_PIN=() WRK_PIN=()
if command -v taskset >/dev/null && [ "$(nproc)" -ge 2 ]; then
  SERVER_CPU=${SERVER_CPU:-1}
  WRK_CPU=${WRK_CPU:-0}
  SERVER_PIN=(taskset -c "$SERVER_CPU")
  WRK_PIN=(taskset -c "$WRK_CPU")
  PINNING="server on CPU $SERVER_CPU, wrk on CPU $WRK_CPU (taskset)"
else
  PINNING="not pinned (no taskset or fewer than 2 CPUs)"
fi
log "pinning: $PINNING"
log "load before the run: $(uptime)"

# Working files (every wrk report, server logs, callgrind dumps) stay here for inspection.
WORK=$OUT_DIR/service-runs
rm -rf "$WORK"
mkdir -p "$WORK"
RAW="$WORK/rounds.tsv"
: >"$RAW"

SERVER_PID=
stop_server() {
  if [ -n "$SERVER_PID" ]; then
    kill "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
    SERVER_PID=
  fi
}
trap stop_server EXIT
trap 'exit 130' INT TERM

# The route mix, cycled per connection: of every 50 requests 24 /api/users, 16 /api/orders,
# 9 /health and 1 unknown path (a 404). Requests are formatted once, in init.
cat >"$WORK/mix.lua" <<'EOF'
local paths = {}
for i = 1, 50 do
  if i == 50 then paths[i] = "/api/missing"
  elseif i % 5 == 0 then paths[i] = "/health"
  elseif i % 2 == 0 then paths[i] = "/api/orders"
  else paths[i] = "/api/users" end
end
local reqs, n = {}, 0
init = function(args)
  for i, p in ipairs(paths) do reqs[i] = wrk.format("GET", p) end
end
request = function()
  n = n % #reqs + 1
  return reqs[n]
end
EOF

CLK_TCK=$(getconf CLK_TCK)
# CPU seconds (user + system) the process has used so far, from /proc/PID/stat.
cpu_seconds() {
  awk -v tck="$CLK_TCK" '{ sub(/^.*\) /, ""); printf "%.3f", ($12 + $13) / tck }' "/proc/$1/stat"
}

# wrk prints latencies as 123.45us / 1.23ms / 1.00s.
to_ms() {
  awk -v v="$1" 'BEGIN {
    if (v ~ /us$/) { sub(/us$/, "", v); printf "%.4f", v / 1000 }
    else if (v ~ /ms$/) { sub(/ms$/, "", v); printf "%.4f", v }
    else if (v ~ /m$/) { sub(/m$/, "", v); printf "%.4f", v * 60000 }
    else if (v ~ /s$/) { sub(/s$/, "", v); printf "%.4f", v * 1000 }
    else { print "nan" }
  }'
}

run_one() {
  local variant=$1 round=$2 out="$WORK/server-$1-$2.out"
  "${SERVER_PIN[@]}" "$BIN" --variant "$variant" --listen 127.0.0.1:0 --workers "$WORKERS" >"$out" 2>&1 &
  SERVER_PID=$!
  local url= i
  for i in $(seq 100); do
    url=$(sed -n 's/^listening on \(http:[^ ]*\).*/\1/p' "$out")
    [ -n "$url" ] && break
    kill -0 "$SERVER_PID" 2>/dev/null || { cat "$out" >&2; exit 1; }
    sleep 0.1
  done
  [ -n "$url" ] || { echo "server did not start" >&2; cat "$out" >&2; exit 1; }

  "${WRK_PIN[@]}" wrk -t1 -c"$CONNECTIONS" -d"${WARMUP}s" -s "$WORK/mix.lua" "$url" >/dev/null
  local cpu0 cpu1 report
  cpu0=$(cpu_seconds "$SERVER_PID")
  report=$("${WRK_PIN[@]}" wrk -t1 -c"$CONNECTIONS" -d"${DURATION}s" --latency -s "$WORK/mix.lua" "$url")
  cpu1=$(cpu_seconds "$SERVER_PID")
  printf '%s\n' "$report" >"$WORK/wrk-$variant-$round.txt"

  local rps p50 p99 total non2xx
  rps=$(awk '/^Requests\/sec:/ { print $2 }' <<<"$report")
  p50=$(to_ms "$(awk '$1 == "50%" { print $2 }' <<<"$report")")
  p99=$(to_ms "$(awk '$1 == "99%" { print $2 }' <<<"$report")")
  total=$(awk '/requests in/ { print $1 }' <<<"$report")
  non2xx=$(awk '/Non-2xx or 3xx responses:/ { print $NF }' <<<"$report")
  non2xx=${non2xx:-0}
  if [ -z "$rps" ] || [ -z "$total" ] || [ "$total" = 0 ]; then
    echo "could not parse wrk's report for $variant:" >&2
    printf '%s\n' "$report" >&2
    exit 1
  fi
  if grep -q 'Socket errors' <<<"$report"; then
    log "warning: $variant round $round: $(grep 'Socket errors' <<<"$report")"
  fi
  # 1 request in 50 is a 404; anything far from that means the mix or the server is wrong.
  python3 - "$variant" "$total" "$non2xx" <<'EOF'
import sys
variant, total, non2xx = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
share = non2xx / total
if not 0.015 <= share <= 0.025:
    sys.exit(f"{variant}: {non2xx} of {total} responses were not 2xx ({share:.2%}); expected 2%")
EOF

  # The exporter must have seen at least the measured requests (warm-up ones come on top).
  # shardmetrics publishes a snapshot every second: wait for the tick after the run.
  if [ "$variant" != none ]; then
    [ "$variant" = shardmetrics ] && sleep 1.2
    local counted
    counted=$(curl -sf "$url/metrics" | awk '$1 == "http_requests_total" { print $2 }')
    python3 - "$variant" "${counted:-0}" "$total" <<'EOF'
import sys
variant, counted, total = sys.argv[1], float(sys.argv[2]), int(sys.argv[3])
if counted < total:
    sys.exit(f"{variant}: /metrics reports http_requests_total {counted:.0f}, wrk sent {total}")
EOF
  fi
  stop_server

  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$variant" "$round" "$rps" "$p50" "$p99" "$total" \
    "$(awk -v a="$cpu0" -v b="$cpu1" 'BEGIN { printf "%.3f", b - a }')" >>"$RAW"
  log "round $round $variant: $rps req/s, p50 ${p50} ms, p99 ${p99} ms, server CPU $(awk -v a="$cpu0" -v b="$cpu1" 'BEGIN { printf "%.2f", b - a }') s"
}

# One run under callgrind: instructions (all threads, user space) per request between a zero
# after the warm-up and a dump after wrk. Requests are wrk's count (off by at most the
# connections in flight at either edge).
CG=$WORK/instructions.tsv
: >"$CG"
instructions_one() {
  local variant=$1 out="$WORK/cg-server-$1.out" cg="$WORK/cg-$1.out"
  "${SERVER_PIN[@]}" valgrind --tool=callgrind --callgrind-out-file="$cg" "$BIN" --variant "$variant" \
    --listen 127.0.0.1:0 --workers "$WORKERS" >"$out" 2>"$WORK/cg-valgrind-$variant.err" &
  SERVER_PID=$!
  local url= i
  for i in $(seq 300); do
    url=$(sed -n 's/^listening on \(http:[^ ]*\).*/\1/p' "$out")
    [ -n "$url" ] && break
    kill -0 "$SERVER_PID" 2>/dev/null || { cat "$out" "$WORK/cg-valgrind-$variant.err" >&2; exit 1; }
    sleep 0.1
  done
  [ -n "$url" ] || { echo "server did not start under valgrind" >&2; exit 1; }
  "${WRK_PIN[@]}" wrk -t1 -c"$CONNECTIONS" -d"${WARMUP}s" -s "$WORK/mix.lua" "$url" >/dev/null
  callgrind_control -z "$SERVER_PID" >/dev/null 2>&1
  local report total ir
  report=$("${WRK_PIN[@]}" wrk -t1 -c"$CONNECTIONS" -d"${CG_DURATION}s" -s "$WORK/mix.lua" "$url")
  callgrind_control -d "$SERVER_PID" >/dev/null 2>&1
  total=$(awk '/requests in/ { print $1 }' <<<"$report")
  ir=$(awk '/^summary:/ { print $2 }' "$cg".1)
  [ -n "$total" ] && [ -n "$ir" ] || { echo "callgrind run of $variant gave no figures" >&2; exit 1; }
  stop_server
  printf '%s\t%s\t%s\n' "$variant" "$ir" "$total" >>"$CG"
  log "callgrind $variant: $ir instructions over $total requests ($(awk -v a="$ir" -v b="$total" 'BEGIN { printf "%.0f", a / b }') per request)"
}

n=${#VARIANTS[@]}
for round in $(seq "$ROUNDS"); do
  for k in $(seq 0 $((n - 1))); do
    run_one "${VARIANTS[$(((k + round - 1) % n))]}" "$round"
  done
done
log "load after the run: $(uptime)"
if [ "$INSTRUCTIONS" = 1 ]; then
  for v in "${VARIANTS[@]}"; do instructions_one "$v"; done
fi

python3 - "$RAW" "$CG" "$OUT_DIR/service.json" "$DURATION" "$CONNECTIONS" "$PINNING" "${VARIANTS[@]}" <<'EOF'
import json, statistics, sys

raw, cg, out, duration, connections, pinning, *variants = sys.argv[1:]
rounds = {v: [] for v in variants}
for line in open(raw):
    v, r, rps, p50, p99, total, cpu = line.rstrip("\n").split("\t")
    rounds[v].append({
        "round": int(r), "requests_per_sec": float(rps), "p50_ms": float(p50), "p99_ms": float(p99),
        "requests": int(total), "server_cpu_s": float(cpu),
        "cpu_us_per_request": float(cpu) * 1e6 / int(total),
        "server_busy": float(cpu) / int(duration),
    })

instructions = {}
for line in open(cg):
    v, ir, total = line.rstrip("\n").split("\t")
    instructions[v] = {"instructions": int(ir), "requests": int(total), "per_request": int(ir) / int(total)}

med = lambda v, k: statistics.median(x[k] for x in rounds[v])
rows = [{
    "variant": v,
    "requests_per_sec": med(v, "requests_per_sec"),
    "p50_ms": med(v, "p50_ms"),
    "p99_ms": med(v, "p99_ms"),
    "cpu_us_per_request": med(v, "cpu_us_per_request"),
    "server_busy": med(v, "server_busy"),
    "requests_per_sec_best": max(x["requests_per_sec"] for x in rounds[v]),
    "duration_s": int(duration),
    "connections": int(connections),
    "pinning": pinning,
    "rounds": sorted(rounds[v], key=lambda x: x["round"]),
} for v in variants]
for r in rows:
    if r["variant"] in instructions:
        r["instructions_per_request"] = instructions[r["variant"]]["per_request"]
        r["callgrind"] = instructions[r["variant"]]
json.dump(rows, open(out, "w"), indent=2)

base = next((r for r in rows if r["variant"] == "none"), None)
def pct(value, ref, lower_is_better):
    if ref is None or ref == 0:
        return "—"
    d = (value - ref) / ref * 100
    return f"{-d if not lower_is_better else d:+.1f}%"

print(f"\n{len(next(iter(rounds.values())))} rounds x {duration} s, wrk -t1 -c{connections}; {pinning}\n")
# Server busy: its CPU time over the run's duration. Well under 100% means the server was not
# the bottleneck (wrk was, or other processes took its CPU): req/s then says little about it.
print("| variant | req/s (median) | p50 | p99 | server CPU per request | server busy | best req/s "
      "| throughput cost | p99 cost | CPU cost |")
print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
for r in rows:
    ref = base if base and r is not base else None
    print(f"| {r['variant']} | {r['requests_per_sec']:,.0f} | {r['p50_ms'] * 1000:.0f} µs | {r['p99_ms'] * 1000:.0f} µs "
          f"| {r['cpu_us_per_request']:.2f} µs | {r['server_busy']:.0%} | {r['requests_per_sec_best']:,.0f} "
          f"| {pct(r['requests_per_sec'], ref and ref['requests_per_sec'], False)} "
          f"| {pct(r['p99_ms'], ref and ref['p99_ms'], True)} "
          f"| {pct(r['cpu_us_per_request'], ref and ref['cpu_us_per_request'], True)} |")
if instructions:
    print("\n| variant | instructions per request (callgrind) | cost vs none |")
    print("|---|---:|---:|")
    ref = instructions.get("none")
    for v in variants:
        if v in instructions:
            i = instructions[v]
            cost = pct(i["per_request"], ref["per_request"], True) if ref and v != "none" else "—"
            print(f"| {v} | {i['per_request']:,.0f} | {cost} |")
print(f"\nJSON: {out}")
EOF
