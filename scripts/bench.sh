#!/usr/bin/env bash
# Reproduces every figure of BENCHMARKS.md with one command, and writes them as markdown.
#
#   scripts/bench.sh [--quick] [OUT]      (OUT defaults to <target>/bench-results.md)
#
# Full mode (about 15-20 minutes plus the release build; run it on a quiet machine):
#   1. the criterion benches (verify, rate_limit, scale, guard), summarised as tables from
#      criterion's estimates;
#   2. the end-to-end HTTP harness (benches/http.rs): reference apps vs the unguarded baseline,
#      rejected requests (and their pool check), pool sizes;
#   3. the long load-with-isolation-checking run (tests/load_isolation.rs);
#   4. the server-side instruction floor of a scoped transaction (scripts/guard-floor.sh, when
#      valgrind and pgbench are installed), of the role mix (scripts/role-mix-floor.sh), of the
#      realistic workloads (scripts/guard-workloads.sh) and of the session reset (scripts/reset-cost.sh).
# --quick: the "does it still run" pass CI makes (debug build, every bench case once, a few HTTP
# requests per variant, the short isolation run); nothing in it is a measurement.
#
# Knobs (environment): BENCH_TIME (criterion measurement seconds, default 3), HTTP_BENCH_SECS,
# HTTP_BENCH_ROUNDS, HTTP_BENCH_CONNS, HTTP_BENCH_POOL, HTTP_BENCH_POOL_SIZES (see benches/http.rs),
# LOAD_ISOLATION_REQUESTS, LOAD_ISOLATION_CONCURRENCY, LOAD_ISOLATION_ORGS, LOAD_ISOLATION_USERS,
# LOAD_ISOLATION_SECS (see tests/load_isolation.rs).
set -euo pipefail
cd "$(dirname "$0")/.."

MODE=full
if [[ ${1:-} == --quick ]]; then
  MODE=quick
  shift
fi
TARGET=${CARGO_TARGET_DIR:-target}
mkdir -p "$TARGET"
OUT=${1:-$TARGET/bench-results.md}
LOG="$TARGET/bench-log.txt"

if [[ $MODE == quick ]]; then
  # The example binaries the HTTP harness and the isolation test start (debug, next to the tests).
  cargo build --features full --examples
  cargo test --features full --bench verify --bench scale --bench http --bench guard --bench rate_limit
  cargo test --features full --bench role_mix --bench workloads --bench guard_sqlx --bench membership
  cargo test --features full --test load_isolation -- --nocapture
  exit 0
fi

: >"$LOG"
STARTED=$(date +%s)
{
  echo "## Benchmark run $(date -u '+%Y-%m-%d %H:%M UTC'), commit $(git rev-parse --short HEAD)$(git diff --quiet HEAD -- . 2>/dev/null || echo ' (with local changes)')"
  echo
  echo "Machine: $(nproc) CPUs ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//')), $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(. /etc/os-release && echo "$PRETTY_NAME"), $(rustc -V | cut -d' ' -f1-2); load average at start: $(cut -d' ' -f1-3 /proc/loadavg)."
  echo
} >"$OUT"

# The bench profile (release + debug info) for everything, so the examples are built once.
cargo build --profile bench --features full --examples

BENCH_TIME=${BENCH_TIME:-3}
for bench in verify rate_limit scale; do
  cargo bench --features full --bench "$bench" -- --warm-up-time 1 --measurement-time "$BENCH_TIME" 2>&1 | tee -a "$LOG"
done
# The guard bench has its own criterion settings and prints its latency/throughput table.
cargo bench --features full --bench guard 2>&1 | tee -a "$LOG" | tee "$TARGET/guard-bench.txt"
# Role affinity: 50/50 two roles vs one, affinity on and off (prints its ratio table).
cargo bench --features full --bench role_mix 2>&1 | tee -a "$LOG" | tee "$TARGET/role-mix-bench.txt"
# Realistic workloads, raw vs guarded in one run (prints its guarded ÷ raw table), and the sqlx
# guard and the membership check.
cargo bench --features full --bench workloads 2>&1 | tee -a "$LOG" | tee "$TARGET/workloads-bench.txt"
cargo bench --features full --bench guard_sqlx 2>&1 | tee -a "$LOG"
cargo bench --features full --bench membership 2>&1 | tee -a "$LOG"

# Criterion estimates as tables (median of each case).
python3 - "$TARGET/criterion" "$STARTED" >>"$OUT" <<'PY'
import json, os, sys
root, started = sys.argv[1], float(sys.argv[2])
groups = {}
for dirpath, _, files in os.walk(root):
    if os.path.basename(dirpath) == "new" and "estimates.json" in files and "benchmark.json" in files:
        # Only this run's results (criterion keeps older ones).
        if os.path.getmtime(os.path.join(dirpath, "estimates.json")) < started:
            continue
        bench = json.load(open(os.path.join(dirpath, "benchmark.json")))
        est = json.load(open(os.path.join(dirpath, "estimates.json")))
        groups.setdefault(bench["group_id"], []).append(
            (bench.get("function_id") or "", bench.get("value_str") or "", est["median"]["point_estimate"]))
def fmt(ns):
    return f"{ns/1000:.2f} µs" if ns >= 1000 else f"{ns:.1f} ns"
print("### Criterion (median per call)\n")
for group in sorted(groups):
    rows = groups[group]
    print(f"#### `{group}`\n\n| case | parameter | median |\n|---|---|---|")
    def key(r):
        try:
            return (r[0], float(r[1].rstrip("KB")))
        except ValueError:
            return (r[0], float("inf"))
    for function, value, median in sorted(rows, key=key):
        print(f"| {function} | {value} | {fmt(median)} |")
    print()
PY
{
  echo "### Guard bench (benches/guard.rs) output"
  echo
  echo '```'
  sed -n '/^guard: /,$p' "$TARGET/guard-bench.txt"
  echo '```'
  echo
  echo "### Role mix bench (benches/role_mix.rs) output"
  echo
  echo '```'
  sed -n '/^role_mix: /,$p' "$TARGET/role-mix-bench.txt"
  echo '```'
  echo
} >>"$OUT"

# End to end over HTTP (appends its own tables).
HTTP_BENCH_OUT="$OUT" cargo bench --features full --bench http 2>&1 | tee -a "$LOG"

# Load with isolation checking, long version (appends its report).
LOAD_ISOLATION_REQUESTS=${LOAD_ISOLATION_REQUESTS:-200000} \
LOAD_ISOLATION_CONCURRENCY=${LOAD_ISOLATION_CONCURRENCY:-32} \
LOAD_ISOLATION_ORGS=${LOAD_ISOLATION_ORGS:-200} \
LOAD_ISOLATION_USERS=${LOAD_ISOLATION_USERS:-5} \
LOAD_ISOLATION_SECS=${LOAD_ISOLATION_SECS:-900} \
LOAD_ISOLATION_REPORT="$OUT" \
  cargo test --profile bench --features full --test load_isolation -- --nocapture --test-threads=1 2>&1 | tee -a "$LOG"

# The server-side floor of a scoped transaction, in instructions (noise-free; needs valgrind, pgbench).
if command -v valgrind >/dev/null 2>&1 && command -v pgbench >/dev/null 2>&1; then
  {
    echo "### Server-side floor of a scoped transaction (scripts/guard-floor.sh)"
    echo
    scripts/guard-floor.sh
    echo
    echo "### Server instructions of the role mix (scripts/role-mix-floor.sh)"
    echo
    scripts/role-mix-floor.sh
    echo
    echo "### Server instructions of the realistic workloads (scripts/guard-workloads.sh)"
    echo
    scripts/guard-workloads.sh
    echo
    echo "### Server instructions of the session reset, part by part (scripts/reset-cost.sh)"
    echo
    scripts/reset-cost.sh
    echo
  } >>"$OUT"
else
  echo "bench.sh: valgrind or pgbench missing, scripts/guard-floor.sh skipped" | tee -a "$OUT"
fi

echo "load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)" >>"$OUT"
echo "bench.sh: results in $OUT (full log: $LOG)"
