# Shell helpers for counting PostgreSQL server instructions per transaction with callgrind
# (sourced by scripts/guard-workloads.sh; the method of scripts/guard-floor.sh).
#
#   source scripts/lib/callgrind-pg.sh
#   cg_start            # throwaway server under callgrind on $PORT; sets $CG_WORK, $CG_BIN
#   cg_per_tx SCRIPT USER N1 N2 [pgbench -D options…]   # instructions per transaction
#
# cg_per_tx runs SCRIPT with pgbench (one client, prepared statements) N1 and N2 times, each run on
# a fresh connection, and prints (I(N2) − I(N1)) / (N2 − N1) of the backend that served it:
# connection start-up and first-use planning cancel out. Callgrind counts do not depend on the
# machine's load. Needs PostgreSQL binaries (initdb, postgres, psql, pgbench) and valgrind.

CG_BIN=$(dirname "$(command -v initdb 2>/dev/null || ls /usr/lib/postgresql/*/bin/initdb | tail -1)")
CG_RUN=()

# A free local TCP port (nothing answers on it).
cg_free_port() {
  local port
  for _ in $(seq 1 50); do
    port=$((56000 + RANDOM % 4000))
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
      echo "$port"
      return 0
    fi
  done
  return 1
}

cg_start() {
  PORT=${PORT:-$(cg_free_port)}
  CG_WORK=$(mktemp -d /tmp/guard-cg.XXXXXX)
  if [ "$(id -u)" = 0 ]; then
    chown postgres "$CG_WORK"
    CG_RUN=(runuser -u postgres --)
  fi
  trap cg_stop EXIT
  "${CG_RUN[@]}" "$CG_BIN/initdb" -D "$CG_WORK/data" -A trust -U postgres >/dev/null
  "${CG_RUN[@]}" mkdir "$CG_WORK/cg"
  "${CG_RUN[@]}" bash -c "valgrind --tool=callgrind --trace-children=yes \
    --callgrind-out-file=$CG_WORK/cg/cg.%p $CG_BIN/postgres -D $CG_WORK/data -p $PORT \
    -k $CG_WORK -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off \
    -c autovacuum=off >$CG_WORK/server.log 2>&1 &"
  # Ours, not another server that took the port first: its data directory must be ours.
  local dir
  for _ in $(seq 1 180); do
    dir=$(psql -h 127.0.0.1 -p "$PORT" -U postgres -qtAc 'SHOW data_directory' 2>/dev/null || true)
    if [ -n "$dir" ]; then
      [ "$dir" = "$CG_WORK/data" ] && return 0
      echo "port $PORT is served by another server ($dir); set PORT" >&2
      return 1
    fi
    sleep 1
  done
  echo "the server did not start under callgrind:" >&2
  tail -20 "$CG_WORK/server.log" >&2
  return 1
}

cg_stop() {
  [ -n "${CG_WORK:-}" ] || return 0
  "${CG_RUN[@]}" "$CG_BIN/pg_ctl" -D "$CG_WORK/data" -m immediate stop >/dev/null 2>&1 || true
  rm -rf "$CG_WORK"
}

# psql as the superuser on the test server.
cg_psql() { psql -h 127.0.0.1 -p "$PORT" -U postgres -q -v ON_ERROR_STOP=1 "$@"; }

# cg_total SCRIPT USER N [options…] -> instructions of the backend that served the run.
cg_total() {
  local script=$1 user=$2 n=$3
  shift 3
  ls "$CG_WORK/cg" >"$CG_WORK/before"
  pgbench -h 127.0.0.1 -p "$PORT" -U "$user" -n -M prepared -c 1 -t "$n" -f "$script" "$@" \
    postgres >/dev/null
  # The backend's profile is written when it exits, shortly after pgbench disconnects.
  local f files=""
  for _ in $(seq 1 60); do
    sleep 1
    files=$(ls "$CG_WORK/cg" | grep -vxFf "$CG_WORK/before" || true)
    [ -n "$files" ] && break
  done
  sleep 1
  for f in $files; do
    grep -E '^(totals|summary):' "$CG_WORK/cg/$f" | head -1 | awk '{print $2}'
  done | sort -n | tail -1
}

# cg_per_tx SCRIPT USER N1 N2 [options…] -> instructions per transaction.
cg_per_tx() {
  local script=$1 user=$2 n1=$3 n2=$4 a b
  shift 4
  a=$(cg_total "$script" "$user" "$n1" "$@")
  b=$(cg_total "$script" "$user" "$n2" "$@")
  echo $(((b - a) / (n2 - n1)))
}
