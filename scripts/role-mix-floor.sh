#!/usr/bin/env bash
# Server instructions per transaction (callgrind) of the role-mix bench's workloads: a 50/50
# two-role mix against one role, the pool's role affinity on and off (benches/role_mix.rs).
# Noise-free, so it holds on a busy machine; the client's build profile does not matter (only
# the server is counted).
#
#   scripts/role-mix-floor.sh            # needs PostgreSQL 15 binaries and valgrind
#
# Starts a throwaway server under `valgrind --tool=callgrind --trace-children=yes` (as the
# `postgres` user when run as root), points the bench at it (TENANT_GUARD_TEST_DATABASE_URL) and
# runs each variant twice in count mode (ROLE_MIX_COUNT=<variant>:<n>, 200 and 1 200
# transactions, 2 clients, pool of 4). The bench prints its pool's backend pids; the difference of
# those backends' instruction totals / 1 000 is the cost of one transaction, with connection
# start-up and the fixture's set-up cancelled out (other backends are not counted).
# ROLE_MIX_POOL / ROLE_MIX_CLIENTS change the pool size and clients (defaults 4 and 2).
# Prints a markdown table. BENCH_BIN: a role_mix bench binary (built with `cargo test --no-run`
# otherwise).
set -euo pipefail
cd "$(dirname "$0")/.."

BIN=$(dirname "$(command -v initdb 2>/dev/null || ls /usr/lib/postgresql/*/bin/initdb | tail -1)")
PORT=${PORT:-55441}
WORK=$(mktemp -d /tmp/role-mix-floor.XXXXXX)
RUN=()
if [ "$(id -u)" = 0 ]; then
  chown postgres "$WORK"
  RUN=(runuser -u postgres --)
fi
cleanup() {
  "${RUN[@]}" "$BIN/pg_ctl" -D "$WORK/data" -m immediate stop >/dev/null 2>&1 || true
  sleep 3 # backends still writing their profiles
  rm -rf "$WORK" 2>/dev/null || true
}
trap cleanup EXIT

if [ -z "${BENCH_BIN:-}" ]; then
  BENCH_BIN=$(cargo test --features postgres --bench role_mix --no-run --message-format=json 2>/dev/null |
    python3 -c 'import json,sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m["target"]["name"] == "role_mix" and m.get("executable"):
        print(m["executable"])')
fi

"${RUN[@]}" "$BIN/initdb" -D "$WORK/data" -A trust -U postgres >/dev/null
"${RUN[@]}" mkdir "$WORK/cg"
"${RUN[@]}" bash -c "valgrind --tool=callgrind --trace-children=yes --callgrind-out-file=$WORK/cg/cg.%p \
  $BIN/postgres -D $WORK/data -p $PORT -k $WORK -c listen_addresses=127.0.0.1 -c fsync=off \
  -c synchronous_commit=off -c autovacuum=off -c max_connections=50 >$WORK/server.log 2>&1 &"
for _ in $(seq 1 120); do
  psql -h 127.0.0.1 -p "$PORT" -U postgres -qtAc 'SELECT 1' >/dev/null 2>&1 && break
  sleep 1
done
export TENANT_GUARD_TEST_DATABASE_URL="postgres://postgres@127.0.0.1:$PORT/postgres"

total() { # variant n -> instructions of the bench pool's backends
  ROLE_MIX_COUNT="$1:$2" "$BENCH_BIN" >"$WORK/out" 2>"$WORK/err" || { cat "$WORK/err" >&2; exit 1; }
  local sum=0 pid n f
  grep '^affinity ' "$WORK/out" >&2
  for pid in $(awk '/^backend /{print $2}' "$WORK/out"); do
    f="$WORK/cg/cg.$pid"
    for _ in $(seq 1 60); do
      [ -s "$f" ] && grep -qE '^(totals|summary):' "$f" && break
      sleep 1
    done
    n=$(grep -E '^(totals|summary):' "$f" | head -1 | awk '{print $2}')
    sum=$((sum + n))
  done
  echo "$sum"
}
per_tx() { local a b; a=$(total "$1" 200); b=$(total "$1" 1200); echo $(((b - a) / 1000)); }

single_on=$(per_tx single_on)
mixed_on=$(per_tx mixed_on)
single_off=$(per_tx single_off)
mixed_off=$(per_tx mixed_off)
echo "| workload (${ROLE_MIX_CLIENTS:-2} clients, pool of ${ROLE_MIX_POOL:-4}, guarded read-only read) | server instructions per transaction | ÷ single role |"
echo "|---|---|---|"
row() { awk -v n="$2" -v r="$3" -v l="$1" 'BEGIN { printf "| %s | %d | %.2f× |\n", l, n, n / r }'; }
row 'single role, affinity on' "$single_on" "$single_on"
row '**50/50 two roles, affinity on (default)**' "$mixed_on" "$single_on"
row 'single role, affinity off' "$single_off" "$single_off"
row '50/50 two roles, affinity off' "$mixed_off" "$single_off"
