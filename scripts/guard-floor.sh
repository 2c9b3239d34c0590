#!/usr/bin/env bash
# Server-side floor of a scoped transaction, in instructions (callgrind): what the database itself
# must do for a guarded read, per scoping shape, and what the library actually sends. Noise-free,
# so it holds on a busy machine.
#
#   scripts/guard-floor.sh            # needs PostgreSQL 15 binaries, pgbench, valgrind and cargo
#
# Starts a throwaway server under `valgrind --tool=callgrind --trace-children=yes` (as the
# `postgres` user when run as root), loads the guard bench's table (100 000 rows over 100 orgs,
# forced RLS) and the pool login of PostgREST/Supabase (`authenticator`, LOGIN NOINHERIT, granted
# `authenticated`), and runs each load twice (200 and 1 200 transactions, one client): pgbench
# scripts (prepared statements) for the hand-written shapes, and `examples/guard_floor_client.rs`
# (guarded read-only transactions through `TenantPool`, as a handler runs them) for what the
# library sends. The difference of the two backends' instruction totals / 1 000 is the cost of
# one transaction, with connection start-up cancelled out. Prints a markdown table.
#
#   CLIENT=path/to/guard_floor_client   # use this client binary instead of building it
#   ONLY_LIBRARY=1                      # only the raw and the library rows
#   PROFILE=dev                         # build the client in the dev profile (default: release;
#                                       # the server's count does not depend on it)
set -euo pipefail

BIN=$(dirname "$(command -v initdb 2>/dev/null || ls /usr/lib/postgresql/*/bin/initdb | tail -1)")
PORT=${PORT:-55439}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
if [ -z "${CLIENT:-}" ]; then
  PROFILE=${PROFILE:-release}
  (cd "$ROOT" && cargo build -q --profile "$PROFILE" --example guard_floor_client --features postgres)
  dir=$PROFILE; [ "$PROFILE" = dev ] && dir=debug
  CLIENT="$ROOT/target/$dir/examples/guard_floor_client"
fi
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
CREATE ROLE authenticated NOLOGIN NOINHERIT;
-- PostgREST's and Supabase's pool login: can do nothing by itself, only switch to the app roles.
CREATE ROLE authenticator LOGIN NOINHERIT;
GRANT authenticated TO authenticator;
-- A role whose policy reads the org from the claims JSON instead of its own setting.
CREATE ROLE authenticated_claims NOLOGIN NOINHERIT;
GRANT authenticated_claims TO authenticator;
-- No role switch at all: the login is the RLS role (its policy applies through membership).
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
CREATE POLICY items_claims ON items FOR ALL TO authenticated_claims
    USING (org_id = (SELECT (nullif(current_setting('request.jwt.claims', true), '')::jsonb
                             ->> 'org_id')::uuid));
GRANT USAGE ON SCHEMA tenant_guard TO authenticated_claims;
GRANT SELECT ON items TO authenticated_claims;
ANALYZE items;
SQL

# A ~1 KB Supabase-shaped claims document, as the guard bench's tokens carry (and the client's).
CLAIMS=$(printf '{"sub":"5f1c1d5e-0000-4000-8000-000000000001","role":"authenticated","org_id":"00000000-0000-4000-8000-000000000007","aud":"authenticated","exp":9999999999,"iat":1700000000,"email":"someone@example.com","app_metadata":{"provider":"email","providers":["email"]},"user_metadata":{"name":"%s"},"session_id":"abc"}' "$(head -c 600 /dev/zero | tr '\0' x)")
Q='SELECT id, org_id, name FROM items ORDER BY id LIMIT 10;'
Q100='SELECT id, org_id, name FROM items ORDER BY id LIMIT 100;'
cfg() { echo "pg_catalog.set_config('$1', $2, true)"; }
# The guard before issue 18: six settings. Then the default since: role, claims, org.
SIX="$(cfg role :role), $(cfg request.jwt.claims :claims), $(cfg request.jwt.claim.sub :sub), $(cfg request.jwt.claim.role :role), $(cfg tenant_guard.org_id :org), $(cfg tenant_guard.request_id :rid)"
THREE="$(cfg role :role), $(cfg request.jwt.claims :claims), $(cfg tenant_guard.org_id :org)"
ROLE_CLAIMS="$(cfg role "'authenticated_claims'"), $(cfg request.jwt.claims :claims)"
NO_ROLE="$(cfg request.jwt.claims :claims), $(cfg tenant_guard.org_id :org)"
S="$WORK/scripts"; mkdir -p "$S"
steps() { printf 'BEGIN READ ONLY;\nSELECT FROM (SELECT %s) AS scoped;\n%s\nCOMMIT;\n' "$1" "$2"; }
pipe() { printf '\\startpipeline\n'; steps "$1" "$2"; printf '\\endpipeline\n'; }
echo "$Q" >"$S/raw.sql"
echo "$Q100" >"$S/raw100.sql"
printf '\\startpipeline\nBEGIN READ ONLY;\n%s\nCOMMIT;\n\\endpipeline\n' "$Q" >"$S/begin.sql"
steps "$SIX" "$Q" >"$S/six.sql"
pipe "$SIX" "$Q" >"$S/six-pipe.sql"
steps "$THREE" "$Q" >"$S/three.sql"
pipe "$THREE" "$Q" >"$S/three-pipe.sql"
steps "$ROLE_CLAIMS" "$Q" >"$S/role-claims.sql"
steps "$NO_ROLE" "$Q" >"$S/no-role.sql"
steps "$SIX" "$Q100" >"$S/six100.sql"
pipe "$THREE" "$Q100" >"$S/three-pipe100.sql"

LAST=$WORK/last
total() { # label n command... -> instructions of the backend that served the run
  ls "$WORK/cg" >"$WORK/before"
  shift
  local n=$1; shift
  "$@" "$n" >/dev/null
  sleep 3
  for f in $(ls "$WORK/cg" | grep -vxFf "$WORK/before"); do
    grep -E '^(totals|summary):' "$WORK/cg/$f" | head -1 | awk '{print $2}'
  done | sort -n | tail -1
}
bench() { # script user n
  pgbench -h 127.0.0.1 -p "$PORT" -U "$2" -n -M prepared -c 1 -t "$3" -f "$1" \
    -D "claims=$CLAIMS" -D role=authenticated -D sub=5f1c1d5e-0000-4000-8000-000000000001 \
    -D org=00000000-0000-4000-8000-000000000007 -D rid=req-123 postgres
}
client() { # reset limit settings n
  "$CLIENT" "postgresql://authenticator@127.0.0.1:$PORT/postgres" "$4" "$1" "$2" "$3"
}
per_tx() { local a b; a=$(total x 200 "$@"); b=$(total x 1200 "$@"); echo $(((b - a) / 1000)); }
pg() { local script=$1 user=$2; per_tx bench_n "$script" "$user"; }
bench_n() { bench "$1" "$2" "$3"; }
lib() { per_tx client_n "$@"; }
client_n() { client "$1" "$2" "$3" "$4"; }

sleep 3 # let the set-up session's profile land before the first count
total x 10 bench_n "$S/raw.sql" postgres >/dev/null
raw=$(pg "$S/raw.sql" postgres)
raw100=$(pg "$S/raw100.sql" postgres)
echo "| server work per transaction (10-row read unless said; raw = the query alone as the table owner) | instructions | ÷ raw |"
echo "|---|---|---|"
row() { awk -v n="$2" -v r="${3:-$raw}" -v l="$1" 'BEGIN { printf "| %s | %d | %.2f× |\n", l, n, n / r }'; }
row 'raw query (no RLS, no transaction)' "$raw"
row 'RLS alone: the query as a login in `authenticated`, org from a role default, no per-transaction scoping' "$(pg "$S/raw.sql" rls_login)"
if [ -z "${ONLY_LIBRARY:-}" ]; then
row '`BEGIN READ ONLY` + query + `COMMIT`, one pipeline (owner, no RLS)' "$(pg "$S/begin.sql" postgres)"
row 'before issue 18: BEGIN + 6 settings + query + COMMIT, one Sync per statement' "$(pg "$S/six.sql" authenticator)"
row 'before issue 18: the same, one Sync for the whole transaction' "$(pg "$S/six-pipe.sql" authenticator)"
row 'role + claims + org (3 settings), one Sync per statement' "$(pg "$S/three.sql" authenticator)"
row 'role + claims + org (3 settings), one Sync for the whole transaction' "$(pg "$S/three-pipe.sql" authenticator)"
row 'role + claims only, the policy reads the org from the claims JSON' "$(pg "$S/role-claims.sql" authenticator)"
row 'no role switch (login = RLS role), claims + org, one Sync per statement' "$(pg "$S/no-role.sql" rls_login)"
fi
for reset in check none; do
  what='default session reset (`SessionReset::Check`)'
  [ "$reset" = none ] && what='`SessionReset::DangerousNone`'
  row "**the library** (\`TenantPool\`, default scope settings), $what" "$(lib "$reset" 10 minimal)"
  row "the library with \`ScopeSettings::LEGACY\` (six settings), $what" "$(lib "$reset" 10 legacy)"
done
row 'raw 100-row read' "$raw100" "$raw100"
if [ -z "${ONLY_LIBRARY:-}" ]; then
  row '100-row read: before issue 18 (6 settings, Sync per statement)' "$(pg "$S/six100.sql" authenticator)" "$raw100"
  row '100-row read: 3 settings, one Sync' "$(pg "$S/three-pipe100.sql" authenticator)" "$raw100"
fi
row '100-row read: **the library**, `SessionReset::Check`' "$(lib check 100 minimal)" "$raw100"
row '100-row read: the library, `SessionReset::DangerousNone`' "$(lib none 100 minimal)" "$raw100"
