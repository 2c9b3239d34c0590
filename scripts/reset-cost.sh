#!/usr/bin/env bash
# Server-side cost of the session reset (`SessionReset::Check`) after a guarded transaction, in
# instructions (callgrind), part by part, and of the alternatives considered. Noise-free, so it
# holds on a busy machine. The method of `scripts/guard-floor.sh`:
#
#   scripts/reset-cost.sh             # needs PostgreSQL 15 binaries, pgbench and valgrind
#
# Starts a throwaway server under `valgrind --tool=callgrind --trace-children=yes` (as the
# `postgres` user when run as root), loads the guard bench's table (forced RLS), logs in as an
# `authenticator`-style NOINHERIT login, and runs each pgbench script twice (200 and 1 200
# transactions, one client). The difference of the two backends' instruction totals / 1 000 is
# the cost of one transaction, start-up cancelled out. Every script is a guarded read (BEGIN READ
# ONLY, the scoping statement, the 10-row query, COMMIT) plus the part measured; each figure is
# the difference to the same read without it, in the same protocol the guard uses for the part:
# simple query for `batch_execute` (the reset, COMMIT), prepared for the cached check statement.
#
# Set CACHE=N (default 30) for the number of protocol-level prepared statements the session holds
# in the "with a statement cache" rows (a driver's statement cache: `pg_prepared_statements`
# lists them too, so the check's scan of it grows with the cache).
set -euo pipefail

BIN=$(dirname "$(command -v initdb 2>/dev/null || ls /usr/lib/postgresql/*/bin/initdb | tail -1)")
PORT=${PORT:-55467}
CACHE=${CACHE:-30}
WORK=$(mktemp -d /tmp/reset-cost.XXXXXX)
RUN=()
if [ "$(id -u)" = 0 ]; then
  chown postgres "$WORK"
  RUN=(runuser -u postgres --)
fi
cleanup() {
  "${RUN[@]}" "$BIN/pg_ctl" -D "$WORK/data" -m immediate stop >/dev/null 2>&1 || true
  rm -rf "$WORK"
}
trap cleanup EXIT

if psql -h 127.0.0.1 -p "$PORT" -U postgres -qtAc 'SELECT 1' >/dev/null 2>&1; then
  echo "port $PORT is taken: set PORT" >&2
  exit 1
fi
"${RUN[@]}" "$BIN/initdb" -D "$WORK/data" -A trust -U postgres >/dev/null
"${RUN[@]}" mkdir "$WORK/cg"
"${RUN[@]}" bash -c "valgrind --tool=callgrind --trace-children=yes --callgrind-out-file=$WORK/cg/cg.%p \
  $BIN/postgres -D $WORK/data -p $PORT -k $WORK -c listen_addresses=127.0.0.1 -c fsync=off \
  -c synchronous_commit=off -c autovacuum=off >$WORK/server.log 2>&1 &"
for _ in $(seq 1 120); do
  psql -h 127.0.0.1 -p "$PORT" -U postgres -qtAc 'SELECT 1' >/dev/null 2>&1 && break
  sleep 1
done

psql -h 127.0.0.1 -p "$PORT" -U postgres -q -v ON_ERROR_STOP=1 <<'SQL'
CREATE ROLE authenticated NOLOGIN;
CREATE ROLE authenticator LOGIN NOINHERIT IN ROLE authenticated;
CREATE SCHEMA tenant_guard;
CREATE FUNCTION tenant_guard.org_id() RETURNS uuid LANGUAGE sql STABLE
    AS $$ SELECT nullif(current_setting('tenant_guard.org_id', true), '')::uuid $$;
GRANT USAGE ON SCHEMA tenant_guard TO authenticated;
CREATE TABLE items (id bigserial PRIMARY KEY, org_id uuid NOT NULL, name text NOT NULL);
INSERT INTO items (org_id, name)
    SELECT ('00000000-0000-4000-8000-' || lpad((g % 100)::text, 12, '0'))::uuid, 'item ' || g
      FROM generate_series(1, 100000) g;
CREATE INDEX items_org_id_id ON items (org_id, id);
ALTER TABLE items ENABLE ROW LEVEL SECURITY;
ALTER TABLE items FORCE ROW LEVEL SECURITY;
CREATE POLICY items_org ON items FOR ALL TO authenticated
    USING (org_id = (SELECT tenant_guard.org_id()));
GRANT SELECT ON items TO authenticated;
ANALYZE items;
SQL

CLAIMS=$(printf '{"sub":"5f1c1d5e-0000-4000-8000-000000000001","role":"authenticated","org_id":"00000000-0000-4000-8000-000000000007","aud":"authenticated","exp":9999999999,"iat":1700000000,"email":"someone@example.com","app_metadata":{"provider":"email","providers":["email"]},"user_metadata":{"name":"%s"},"session_id":"abc"}' "$(head -c 600 /dev/zero | tr '\0' x)")
Q='SELECT id, org_id, name FROM items ORDER BY id LIMIT 10;'
# The guard's scoping statement (tenant_guard_core::scope::SCOPE_SQL), parameters as pgbench variables.
# Prepared scripts bind them; simple-protocol scripts carry them as literals (pgbench substitutes
# variables into a simple query's text unquoted).
scope() { # role claims sub org rid
  echo "SELECT FROM (SELECT pg_catalog.set_config('role', $1, true), pg_catalog.set_config('request.jwt.claims', $2, true), pg_catalog.set_config('request.jwt.claim.sub', $3, true), pg_catalog.set_config('request.jwt.claim.role', $1, true), pg_catalog.set_config('tenant_guard.org_id', $4, true), pg_catalog.set_config('tenant_guard.request_id', $5, true)) AS scoped;"
}
SCOPE_PREPARED=$(scope :role :claims :sub :org :rid)
SCOPE_SIMPLE=$(scope "'authenticated'" "'$CLAIMS'" "'5f1c1d5e-0000-4000-8000-000000000001'" \
  "'00000000-0000-4000-8000-000000000007'" "'req-123'")

# The check statement's parts (crates/tenant-guard-postgres/src/reset.rs).
UNLOCK='pg_catalog.pg_advisory_unlock_all()'
CURSORS='EXISTS (SELECT FROM pg_catalog.pg_cursors AS k WHERE k.is_holdable)'
LISTEN='EXISTS (SELECT FROM pg_catalog.pg_listening_channels())'
PREPARED='EXISTS (SELECT FROM pg_catalog.pg_prepared_statements AS p WHERE p.from_sql)'
TEMP='CASE WHEN pg_catalog.pg_my_temp_schema() OPERATOR(pg_catalog.=) 0 THEN false ELSE EXISTS (SELECT FROM pg_catalog.pg_class AS c WHERE c.relnamespace OPERATOR(pg_catalog.=) pg_catalog.pg_my_temp_schema()) END'
CHECK="SELECT $UNLOCK, $CURSORS OR $LISTEN OR $PREPARED OR $TEMP;"
# Since this study: cursors and channels are reset (`CLOSE ALL; UNLISTEN *` in the COMMIT's
# message), the check keeps what no cheap statement resets.
TEMP_SCHEMA='pg_catalog.pg_my_temp_schema() OPERATOR(pg_catalog.<>) 0'
CHECK_SLIM="SELECT $UNLOCK, $PREPARED OR $TEMP_SCHEMA;"
RESET_NOW='SET SESSION AUTHORIZATION DEFAULT \; RESET ALL \; CLOSE ALL \; UNLISTEN *'


S="$WORK/scripts"; mkdir -p "$S"
# script NAME PART [COMMIT]: the guarded read, then PART; COMMIT replaces the plain `COMMIT;`.
# Written once per protocol (NAME.simple.sql, NAME.prepared.sql).
script() {
  local commit=${3:-COMMIT;}
  printf 'BEGIN READ ONLY;\n%s\n%s\n%s\n%s\n' "$SCOPE_SIMPLE" "$Q" "$commit" "$2" >"$S/$1.simple.sql"
  printf 'BEGIN READ ONLY;\n%s\n%s\n%s\n%s\n' "$SCOPE_PREPARED" "$Q" "$commit" "$2" >"$S/$1.prepared.sql"
}
# cached NAME PART: the same after CACHE protocol-level statements were prepared once.
cached() {
  { echo '\if :warm = 0'
    for i in $(seq 1 "$CACHE"); do echo "SELECT $i AS cached_statement_$i;"; done
    echo '\set warm 1'
    echo '\endif'
    printf 'BEGIN READ ONLY;\n%s\n%s\nCOMMIT;\n%s\n' "$SCOPE_PREPARED" "$Q" "$2"
  } >"$S/$1.prepared.sql"
}

script base ''
script ssa 'SET SESSION AUTHORIZATION DEFAULT;'
script reset_role 'RESET ROLE;'
script reset_all 'RESET ALL;'
script discard_seq 'DISCARD SEQUENCES;'
script reset_today 'SET SESSION AUTHORIZATION DEFAULT \; RESET ALL;'
script reset_today_rw 'SET SESSION AUTHORIZATION DEFAULT \; RESET ALL \; DISCARD SEQUENCES;'
script folded '' 'COMMIT \; SET SESSION AUTHORIZATION DEFAULT \; RESET ALL;'
script folded_rw '' 'COMMIT \; SET SESSION AUTHORIZATION DEFAULT \; RESET ALL \; DISCARD SEQUENCES;'
script folded_role '' 'COMMIT \; RESET ROLE \; RESET ALL;'
script folded_close '' "COMMIT \\; $RESET_NOW;"
script folded_close_rw '' "COMMIT \\; $RESET_NOW \\; DISCARD SEQUENCES;"
script check_slim "$CHECK_SLIM"
script check_simple "$CHECK"
script folded_check_simple '' "COMMIT \\; SET SESSION AUTHORIZATION DEFAULT \\; RESET ALL \\; ${CHECK}"
script check "$CHECK"
script check_select 'SELECT;'
script check_unlock "SELECT $UNLOCK;"
script check_cursors "SELECT $CURSORS;"
script check_listen "SELECT $LISTEN;"
script check_prepared "SELECT $PREPARED;"
script check_temp "SELECT $TEMP;"
script check_temp_schema "SELECT $TEMP_SCHEMA;"
cached cached_base ''
cached cached_check "$CHECK"
cached cached_prepared "SELECT $PREPARED;"
cached cached_check_slim "$CHECK_SLIM"

total() { # script mode n -> instructions of the backend that served the run
  ls "$WORK/cg" >"$WORK/before"
  pgbench -h 127.0.0.1 -p "$PORT" -U authenticator -n -M "$2" -c 1 -t "$3" -f "$S/$1.$2.sql" \
    -D "claims=$CLAIMS" -D role=authenticated -D sub=5f1c1d5e-0000-4000-8000-000000000001 \
    -D org=00000000-0000-4000-8000-000000000007 -D rid=req-123 -D warm=0 postgres >/dev/null
  sleep 3
  for f in $(ls "$WORK/cg" | grep -vxFf "$WORK/before"); do
    grep -E '^(totals|summary):' "$WORK/cg/$f" | head -1 | awk '{print $2}'
  done | sort -n | tail -1
}
per_tx() { local a b; a=$(total "$1" "$2" 200); b=$(total "$1" "$2" 1200); echo $(((b - a) / 1000)); }

sleep 3 # let the set-up session's profile land before the first count
total base simple 10 >/dev/null
simple=$(per_tx base simple)
prepared=$(per_tx base prepared)
cached_base=$(per_tx cached_base prepared)
echo "Guarded read (BEGIN READ ONLY, scoping, 10-row query, COMMIT), no reset: $simple instructions"
echo "(simple protocol), $prepared (prepared), $cached_base (prepared, $CACHE more statements cached)."
echo
echo "| part (after the guarded read) | protocol | instructions per transaction | ÷ read |"
echo "|---|---|---|---|"
declare -A COST
row() { # label protocol script base
  local n; n=$(per_tx "$3" "$2")
  COST[$3]=$((n - $4))
  awk -v n="$n" -v b="$4" -v l="$1" -v p="$2" \
    'BEGIN { printf "| %s | %s | %d | %.3f× |\n", l, p, n - b, (n - b) / b }'
}
row '`SET SESSION AUTHORIZATION DEFAULT` (own message)' simple ssa "$simple"
row '`RESET ROLE` (own message)' simple reset_role "$simple"
row '`RESET ALL` (own message)' simple reset_all "$simple"
row '`DISCARD SEQUENCES` (own message)' simple discard_seq "$simple"
row 'reset before: `SET SESSION AUTHORIZATION DEFAULT; RESET ALL` (one message)' simple reset_today "$simple"
row 'the same `; DISCARD SEQUENCES` (read-write)' simple reset_today_rw "$simple"
row '**folded: `COMMIT; SET SESSION AUTHORIZATION DEFAULT; RESET ALL` instead of `COMMIT`**' simple folded "$simple"
row 'folded, read-write (`…; DISCARD SEQUENCES`)' simple folded_rw "$simple"
row 'folded with `RESET ROLE` instead of `SET SESSION AUTHORIZATION DEFAULT`' simple folded_role "$simple"
row 'the check statement, cached (prepared)' prepared check "$prepared"
row '… an empty `SELECT` (a statement'"'"'s floor)' prepared check_select "$prepared"
row '… `pg_advisory_unlock_all()` alone' prepared check_unlock "$prepared"
row '… `pg_cursors` part alone' prepared check_cursors "$prepared"
row '… `pg_listening_channels()` part alone' prepared check_listen "$prepared"
row '… `pg_prepared_statements` part alone' prepared check_prepared "$prepared"
row '… temporary-schema part alone' prepared check_temp "$prepared"
row '… `pg_my_temp_schema() <> 0` instead (no pg_class in the plan)' prepared check_temp_schema "$prepared"
row "the check statement, $CACHE more statements cached" prepared cached_check "$cached_base"
row "… \`pg_prepared_statements\` part alone, $CACHE more cached" prepared cached_prepared "$cached_base"
row 'the check as a simple query (parsed and planned each time)' simple check_simple "$simple"
row 'everything in the COMMIT message (folded reset + check, simple)' simple folded_check_simple "$simple"
row '`COMMIT; SET SESSION AUTHORIZATION DEFAULT; RESET ALL; CLOSE ALL; UNLISTEN *`' simple folded_close "$simple"
row 'the same `; DISCARD SEQUENCES` (read-write)' simple folded_close_rw "$simple"
row 'the check now: unlock, SQL-level PREPARE, any temporary schema (prepared)' prepared check_slim "$prepared"
row "the same, $CACHE more statements cached" prepared cached_check_slim "$cached_base"
echo
before=$((COST[reset_today] + COST[check])); after=$((COST[folded_close] + COST[check_slim]))
before_rw=$((COST[reset_today_rw] + COST[check])); after_rw=$((COST[folded_close_rw] + COST[check_slim]))
before_c=$((COST[reset_today] + COST[cached_check])); after_c=$((COST[folded_close] + COST[cached_check_slim]))
echo "| the whole reset (read-only; read-write; read-only with $CACHE cached statements) | before | after |"
echo "|---|---|---|"
echo "| reset message + check, instructions per transaction | $before; $before_rw; $before_c | $after; $after_rw; $after_c |"
awk -v b="$before" -v a="$after" -v p="$prepared" \
  'BEGIN { printf "| ÷ the prepared guarded read (%d) | %.3f× | %.3f× |\n", p, b / p, a / p }'
