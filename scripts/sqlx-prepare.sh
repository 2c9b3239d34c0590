#!/usr/bin/env bash
# Regenerates crates/tenant-guard-sqlx/.sqlx: the offline data of the sqlx query macros in
# crates/tenant-guard-sqlx/tests/macros.rs (what `cargo sqlx prepare` does, without sqlx-cli).
# Starts a throwaway PostgreSQL from the local binaries, applies the support SQL and the tests'
# schema, compiles the macros with DATABASE_URL and SQLX_OFFLINE_DIR set, stops the server.
# Run it after changing a macro query or the schema; commit the .sqlx directory.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
crate="$root/crates/tenant-guard-sqlx"
bin="${PG_BIN:-$(dirname "$(command -v initdb 2>/dev/null || echo /usr/local/bin/initdb)")}"
port="${PORT:-55439}"
dir="$(mktemp -d /tmp/tg-sqlx-prepare.XXXXXX)"
run=()
if [ "$(id -u)" = 0 ]; then
    chown postgres "$dir" 2>/dev/null || chown nobody "$dir"
    run=(runuser -u "$(stat -c %U "$dir")" --)
fi
cleanup() { "${run[@]}" "$bin/pg_ctl" -D "$dir/data" -m immediate stop >/dev/null 2>&1 || true; rm -rf "$dir"; }
trap cleanup EXIT
"${run[@]}" "$bin/initdb" -D "$dir/data" -U postgres -A trust >/dev/null
"${run[@]}" "$bin/pg_ctl" -D "$dir/data" -w -o "-p $port -k $dir -c listen_addresses=127.0.0.1" \
    -l "$dir/log" start >/dev/null
url="postgres://postgres@127.0.0.1:$port/postgres"
psql=("$(command -v psql || echo "$bin/psql")" -q -v ON_ERROR_STOP=1 "$url")
"${psql[@]}" -f "$root/crates/tenant-guard-postgres/sql/support_v2.sql" >/dev/null
"${psql[@]}" -f "$crate/tests/fixtures/schema.sql" >/dev/null
rm -rf "$crate/.sqlx" && mkdir -p "$crate/.sqlx"
touch "$crate/tests/macros.rs"
(cd "$root" && DATABASE_URL="$url" SQLX_OFFLINE_DIR="$crate/.sqlx" \
    cargo check -q -p tenant-guard-sqlx --test macros)
echo "wrote $(ls "$crate/.sqlx" | wc -l) query files to $crate/.sqlx"
