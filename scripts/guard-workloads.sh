#!/usr/bin/env bash
# Server instructions per transaction of the realistic workloads of benches/workloads.rs (issue 18
# item 5), raw vs guarded, with callgrind: the curve of guarded ÷ raw as the statement's own work
# grows. Noise-free (instruction counts do not depend on the machine's load).
#
#   scripts/guard-workloads.sh      # needs PostgreSQL 15 binaries, pgbench and valgrind (~15 min)
#
# Method of scripts/guard-floor.sh (helpers in scripts/lib/callgrind-pg.sh): a throwaway server
# under `valgrind --tool=callgrind --trace-children=yes`, the schema and data of
# benches/support/workloads.sql after the support SQL, and pgbench scripts (one client,
# `-M prepared`, one Sync per statement as tokio-postgres sends them) run N1 and N2 times; the
# difference of the serving backends' instruction totals ÷ (N2 − N1) is one transaction.
#   raw:      the statement alone, as the table owner (no RLS, autocommit);
#   guarded:  BEGIN [READ ONLY] + the scoping statement + the statement + COMMIT, as a NOINHERIT
#             login switching to `authenticated`; two scoping shapes:
#             six = the library's SCOPE_SQL today (role, claims, sub, role claim, org, request id),
#             three = role + claims + org (issue 18 item 2's default).
# Knobs: WORKLOADS (space-separated subset), SHAPES ("six three"), PORT.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=scripts/lib/callgrind-pg.sh
source "$ROOT/scripts/lib/callgrind-pg.sh"

WORKLOADS=${WORKLOADS:-"read_10 page_100 page_100_org join_page join_aggregate join_page_org join_aggregate_org write_indexed membership_page"}
SHAPES=${SHAPES:-"six three"}
LOGIN=bench_authenticator
ORG=00000000-0000-4000-8000-000000000007
SUB=5f1c1d5e-0000-4000-8000-000000000001

cg_start
cg_psql -f "$ROOT/crates/tenant-guard-postgres/sql/support_v2.sql" >/dev/null
cg_psql -c "CREATE ROLE $LOGIN LOGIN NOINHERIT" -c "SELECT tenant_guard.grant_app_roles('$LOGIN')" >/dev/null
cg_psql -f "$ROOT/benches/support/workloads.sql" >/dev/null

# A ~1 KB Supabase-shaped claims document, as the benches' tokens carry.
CLAIMS=$(printf '{"sub":"%s","role":"authenticated","org_id":"%s","aud":"authenticated","exp":9999999999,"iat":1700000000,"email":"someone@example.com","app_metadata":{"provider":"email","providers":["email"]},"user_metadata":{"name":"%s"},"session_id":"abc"}' "$SUB" "$ORG" "$(head -c 600 /dev/zero | tr '\0' x)")
DEFS=(-D "claims=$CLAIMS" -D role=authenticated -D "sub=$SUB" -D "org=$ORG" -D rid=bench)
SIX="pg_catalog.set_config('role', :role, true), pg_catalog.set_config('request.jwt.claims', :claims, true), pg_catalog.set_config('request.jwt.claim.sub', :sub, true), pg_catalog.set_config('request.jwt.claim.role', :role, true), pg_catalog.set_config('tenant_guard.org_id', :org, true), pg_catalog.set_config('tenant_guard.request_id', :rid, true)"
THREE="pg_catalog.set_config('role', :role, true), pg_catalog.set_config('request.jwt.claims', :claims, true), pg_catalog.set_config('tenant_guard.org_id', :org, true)"

# The statements of benches/workloads.rs, `$1` written as `:org`.
sql() {
  case $1 in
    read_10) echo "SELECT id, org_id, name FROM items ORDER BY id LIMIT 10;" ;;
    page_100) echo "SELECT id, org_id, name FROM items ORDER BY id LIMIT 100;" ;;
    page_100_org) echo "SELECT id, org_id, name FROM items WHERE org_id = :org ORDER BY id LIMIT 100;" ;;
    join_page) echo "SELECT t.id, t.title, t.status, p.name FROM tasks t JOIN projects p ON p.id = t.project_id WHERE t.project_id = 7 ORDER BY t.id LIMIT 100;" ;;
    join_aggregate) echo "SELECT p.id, p.name, count(*), sum(t.estimate) FROM projects p JOIN tasks t ON t.project_id = p.id WHERE p.org_id = :org GROUP BY p.id, p.name ORDER BY p.id;" ;;
    join_page_org) echo "SELECT t.id, t.title, t.status, p.name FROM org_tasks t JOIN projects p ON p.id = t.project_id WHERE t.project_id = 7 ORDER BY t.id LIMIT 100;" ;;
    join_aggregate_org) echo "SELECT p.id, p.name, count(*), sum(t.estimate) FROM projects p JOIN org_tasks t ON t.project_id = p.id WHERE p.org_id = :org GROUP BY p.id, p.name ORDER BY p.id;" ;;
    write_indexed) echo "INSERT INTO events (org_id, note) VALUES (:org, 'bench');" ;;
    membership_page) echo "SELECT id, org_id, title FROM docs WHERE org_id = :org ORDER BY id LIMIT 100;" ;;
    *) echo "unknown workload $1" >&2; return 1 ;;
  esac
}
# Transactions per run: heavy statements get fewer (callgrind runs ~50× slower than native).
counts() { case $1 in join_aggregate|join_aggregate_org) echo "20 220" ;; *) echo "200 1200" ;; esac; }

S="$CG_WORK/scripts"
mkdir -p "$S"
sleep 3 # let the set-up sessions' profiles land before the first count
cg_total <(echo 'SELECT 1;') postgres 10 >/dev/null

header="| workload | raw |"
rule="|---|---|"
for shape in $SHAPES; do header="$header guarded ($shape) | ÷ raw |"; rule="$rule---|---|"; done
echo "$header"
echo "$rule"
for w in $WORKLOADS; do
  q=$(sql "$w")
  begin="BEGIN READ ONLY;"
  [ "$w" = write_indexed ] && begin="BEGIN;"
  echo "$q" >"$S/$w.raw.sql"
  read -r n1 n2 <<<"$(counts "$w")"
  raw=$(cg_per_tx "$S/$w.raw.sql" postgres "$n1" "$n2" "${DEFS[@]}")
  line="| \`$w\` | $raw |"
  for shape in $SHAPES; do
    case $shape in six) sets=$SIX ;; three) sets=$THREE ;; *) echo "unknown shape $shape" >&2; exit 1 ;; esac
    printf '%s\nSELECT FROM (SELECT %s) AS scoped;\n%s\nCOMMIT;\n' "$begin" "$sets" "$q" >"$S/$w.$shape.sql"
    g=$(cg_per_tx "$S/$w.$shape.sql" "$LOGIN" "$n1" "$n2" "${DEFS[@]}")
    line="$line $g | $(awk -v g="$g" -v r="$raw" 'BEGIN { printf "%.3f×", g / r }') |"
  done
  echo "$line"
done
