#!/usr/bin/env bash
# Server-side floor of a scoped transaction, in instructions (callgrind): what the database itself
# must do for a guarded read, whatever the driver. Noise-free, so it holds on a busy machine.
#
#   scripts/guard-floor.sh            # needs PostgreSQL 15 binaries, pgbench and valgrind
#
# Starts a throwaway server under `valgrind --tool=callgrind --trace-children=yes` (as the
# `postgres` user when run as root), loads the guard bench's table (100 000 rows over 100 orgs,
# forced RLS), and runs each pgbench script twice (200 and 1 200 transactions, one client,
# prepared statements). The difference of the two backends' instruction totals / 1 000 is the cost
# of one transaction, with connection start-up cancelled out. Prints a markdown table.
set -euo pipefail

BIN=$(dirname "$(command -v initdb 2>/dev/null || ls /usr/lib/postgresql/*/bin/initdb | tail -1)")
PORT=${PORT:-55439}
WORK=$(mktemp -d /tmp/guard-floor.XXXXXX)
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
CREATE ROLE rls_login LOGIN INHERIT IN ROLE authenticated;
ALTER ROLE rls_login SET tenant_guard.org_id = '00000000-0000-4000-8000-000000000007';
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

# A ~1 KB Supabase-shaped claims document, as the guard bench's tokens carry.
CLAIMS=$(printf '{"sub":"5f1c1d5e-0000-4000-8000-000000000001","role":"authenticated","org_id":"00000000-0000-4000-8000-000000000007","aud":"authenticated","exp":9999999999,"iat":1700000000,"email":"someone@example.com","app_metadata":{"provider":"email","providers":["email"]},"user_metadata":{"name":"%s"},"session_id":"abc"}' "$(head -c 600 /dev/zero | tr '\0' x)")
Q='SELECT id, org_id, name FROM items ORDER BY id LIMIT 10;'
SETS="pg_catalog.set_config('role', :role, true), pg_catalog.set_config('request.jwt.claims', :claims, true), pg_catalog.set_config('request.jwt.claim.sub', :sub, true), pg_catalog.set_config('request.jwt.claim.role', :role, true), pg_catalog.set_config('tenant_guard.org_id', :org, true), pg_catalog.set_config('tenant_guard.request_id', :rid, true)"
S="$WORK/scripts"; mkdir -p "$S"
echo "$Q" >"$S/raw.sql"
printf '\\startpipeline\nBEGIN READ ONLY;\n%s\nCOMMIT;\n\\endpipeline\n' "$Q" >"$S/begin.sql"
printf '\\startpipeline\nBEGIN READ ONLY;\nSELECT %s;\n%s\nCOMMIT;\n\\endpipeline\n' "$SETS" "$Q" >"$S/echo.sql"
printf '\\startpipeline\nBEGIN READ ONLY;\nSELECT FROM (SELECT %s) AS scoped;\n%s\nCOMMIT;\n\\endpipeline\n' "$SETS" "$Q" >"$S/guard.sql"
printf 'BEGIN READ ONLY;\nSELECT FROM (SELECT %s) AS scoped;\n%s\nCOMMIT;\n' "$SETS" "$Q" >"$S/steps.sql"

total() { # script user n -> instructions of the backend that served the run
  ls "$WORK/cg" >"$WORK/before"
  pgbench -h 127.0.0.1 -p "$PORT" -U "$2" -n -M prepared -c 1 -t "$3" -f "$1" \
    -D "claims=$CLAIMS" -D role=authenticated -D sub=5f1c1d5e-0000-4000-8000-000000000001 \
    -D org=00000000-0000-4000-8000-000000000007 -D rid=req-123 postgres >/dev/null
  sleep 3
  for f in $(ls "$WORK/cg" | grep -vxFf "$WORK/before"); do
    grep -E '^(totals|summary):' "$WORK/cg/$f" | head -1 | awk '{print $2}'
  done | sort -n | tail -1
}
per_tx() { local a b; a=$(total "$1" "$2" 200); b=$(total "$1" "$2" 1200); echo $(((b - a) / 1000)); }

sleep 3 # let the set-up session's profile land before the first count
total "$S/raw.sql" postgres 10 >/dev/null
raw=$(per_tx "$S/raw.sql" postgres)
echo "| server work per transaction | instructions | ÷ raw |"
echo "|---|---|---|"
row() { awk -v n="$2" -v r="$raw" -v l="$1" 'BEGIN { printf "| %s | %d | %.2f× |\n", l, n, n / r }'; }
row 'raw query (no RLS, no transaction)' "$raw"
row 'the query under RLS (login in `authenticated`, org from a role default)' "$(per_tx "$S/raw.sql" rls_login)"
row 'BEGIN READ ONLY + query + COMMIT, one pipeline' "$(per_tx "$S/begin.sql" postgres)"
row 'the same + scoping (six set_config), claims echoed back' "$(per_tx "$S/echo.sql" postgres)"
row '**the guard: scoping without echo, one pipeline, one Sync**' "$(per_tx "$S/guard.sql" postgres)"
row 'the guard'"'"'s statements, each its own round trip' "$(per_tx "$S/steps.sql" postgres)"
