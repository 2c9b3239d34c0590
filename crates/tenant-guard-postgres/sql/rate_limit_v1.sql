-- tenant-guard rate limit SQL, version 1: the shared counters of
-- `tenant_guard_postgres::PgRateLimiter` (a sliding window over per-window counters).
--
-- Idempotent: safe to apply on every start. Apply it as a superuser (it creates a role) with
-- `tenant_guard_postgres::support::apply_rate_limit_sql`, which runs it in one transaction under the
-- support SQL's advisory lock, then grants the limiter's login what it needs:
--
--   SELECT tenant_guard.grant_rate_limiter('authenticator');
--
-- Privileges, least first:
-- * the counters belong to the NOLOGIN role `tenant_guard_limiter`; nobody else has any privilege
--   on them;
-- * two SECURITY DEFINER functions running as that role are the only way in:
--   `tenant_guard.rate_limit_hit(...)` counts one request (or refuses it) and
--   `tenant_guard.rate_limit_sweep(...)` deletes expired windows;
-- * EXECUTE on them goes only to the logins named with `tenant_guard.grant_rate_limiter(login)`
--   (the limiter's own pooled connections, outside any tenant transaction), never to the app roles:
--   a tenant's scoped transaction (running as `authenticated`) can neither read the counters, nor
--   reset its own, nor spend another org's budget.

DO $role$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = 'tenant_guard_limiter') THEN
        BEGIN
            CREATE ROLE tenant_guard_limiter NOLOGIN NOINHERIT;
        EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL; -- created concurrently
        END;
    END IF;
END
$role$;

CREATE SCHEMA IF NOT EXISTS tenant_guard;
GRANT USAGE ON SCHEMA tenant_guard TO tenant_guard_limiter;

-- One row per limiter, key and window. `hits` counts the requests allowed in the window (refused
-- requests are not counted). A row matters for two windows (its own, then as the previous window
-- of the sliding estimate): `expires_at` is the end of the second, and the sweep deletes past it.
-- UNLOGGED: counting a request writes no WAL (and the limiter's sessions run with
-- synchronous_commit off), so a check never waits for a disk flush; the price is that a crash or
-- a failover to a standby starts every budget afresh, which a rate limit can afford.
CREATE UNLOGGED TABLE IF NOT EXISTS tenant_guard.rate_counters (
    limiter      text        NOT NULL,
    org_id       uuid        NOT NULL,
    user_id      text        NOT NULL DEFAULT '',
    window_start timestamptz NOT NULL,
    hits         integer     NOT NULL,
    expires_at   timestamptz NOT NULL,
    PRIMARY KEY (limiter, org_id, user_id, window_start)
);
CREATE INDEX IF NOT EXISTS rate_counters_expires_at ON tenant_guard.rate_counters (expires_at);
ALTER TABLE tenant_guard.rate_counters OWNER TO tenant_guard_limiter;
REVOKE ALL ON tenant_guard.rate_counters FROM PUBLIC;

-- Counts one request of (limiter, org, user) if the sliding estimate allows it, atomically.
--
-- Windows are aligned on the database's clock (one clock for every instance): the current one
-- started at `start`, `elapsed` (0..1) of it has passed. The estimate is the current window's
-- hits plus the previous window's, weighted by the part of it still inside the sliding window:
-- `hits + floor(previous * (1 - elapsed))`. A request is allowed while that is below the limit;
-- the upsert re-checks on the locked row, so concurrent requests never overshoot.
--
-- Returns whether it was allowed, the current window's hits (after counting), the previous
-- window's hits and the elapsed fraction: the caller derives RateLimit-* and Retry-After.
CREATE OR REPLACE FUNCTION tenant_guard.rate_limit_hit(
    p_limiter text,
    p_org uuid,
    p_user text,
    p_window_ms bigint,
    p_limit integer,
    OUT allowed boolean,
    OUT hits integer,
    OUT previous integer,
    OUT elapsed double precision)
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    AS $fn$
#variable_conflict use_column
DECLARE
    now_ms bigint;
    n bigint;
    start timestamptz;
    weighted bigint;
BEGIN
    IF p_window_ms IS NULL OR p_window_ms < 1 OR p_limit IS NULL OR p_limit < 1
       OR p_limiter IS NULL OR p_org IS NULL OR p_user IS NULL THEN
        RAISE EXCEPTION 'tenant_guard.rate_limit_hit: invalid arguments'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    now_ms := floor(extract(epoch FROM now()) * 1000)::bigint;
    n := now_ms / p_window_ms;
    start := to_timestamp((n * p_window_ms)::numeric / 1000);
    elapsed := (now_ms - n * p_window_ms)::double precision / p_window_ms;

    SELECT c.hits INTO previous
      FROM tenant_guard.rate_counters c
     WHERE c.limiter = p_limiter AND c.org_id = p_org AND c.user_id = p_user
       AND c.window_start = to_timestamp(((n - 1) * p_window_ms)::numeric / 1000);
    previous := coalesce(previous, 0);
    weighted := floor(previous * (1 - elapsed));

    INSERT INTO tenant_guard.rate_counters AS c
           (limiter, org_id, user_id, window_start, hits, expires_at)
    SELECT p_limiter, p_org, p_user, start, 1,
           to_timestamp(((n + 2) * p_window_ms)::numeric / 1000)
     WHERE weighted < p_limit
    ON CONFLICT (limiter, org_id, user_id, window_start)
    DO UPDATE SET hits = c.hits + 1
     WHERE c.hits + weighted < p_limit
    RETURNING c.hits INTO hits;

    allowed := hits IS NOT NULL;
    IF NOT allowed THEN
        SELECT c.hits INTO hits
          FROM tenant_guard.rate_counters c
         WHERE c.limiter = p_limiter AND c.org_id = p_org AND c.user_id = p_user
           AND c.window_start = start;
        hits := coalesce(hits, 0);
    END IF;
END
$fn$;
ALTER FUNCTION tenant_guard.rate_limit_hit(text, uuid, text, bigint, integer)
    OWNER TO tenant_guard_limiter;
REVOKE ALL ON FUNCTION tenant_guard.rate_limit_hit(text, uuid, text, bigint, integer) FROM PUBLIC;

-- Deletes up to `p_max_rows` expired windows (of every limiter); returns how many. Rows another
-- session is deleting are skipped, so concurrent sweeps from several instances do not wait.
CREATE OR REPLACE FUNCTION tenant_guard.rate_limit_sweep(p_max_rows integer) RETURNS bigint
    LANGUAGE sql VOLATILE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    AS $fn$
    WITH expired AS (
        SELECT c.ctid AS row_id
          FROM tenant_guard.rate_counters c
         WHERE c.expires_at < now()
         LIMIT greatest(p_max_rows, 0)
           FOR UPDATE SKIP LOCKED
    ), gone AS (
        DELETE FROM tenant_guard.rate_counters c
         USING expired e
         WHERE c.ctid = e.row_id
        RETURNING 1
    )
    SELECT count(*) FROM gone
$fn$;
ALTER FUNCTION tenant_guard.rate_limit_sweep(integer) OWNER TO tenant_guard_limiter;
REVOKE ALL ON FUNCTION tenant_guard.rate_limit_sweep(integer) FROM PUBLIC;

-- Lets `login` call the two functions above (and see the schema). Only a LOGIN role qualifies:
-- the app roles (NOLOGIN, reached through SET ROLE, whatever their names) are refused, because a
-- tenant's scoped transaction runs as one of them and must not touch the counters.
CREATE OR REPLACE FUNCTION tenant_guard.grant_rate_limiter(login name) RETURNS void
    LANGUAGE plpgsql
    AS $fn$
BEGIN
    IF login IN ('anon', 'authenticated', 'service_role', 'public')
       OR NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles r
                       WHERE r.rolname = login AND r.rolcanlogin) THEN
        RAISE EXCEPTION 'the rate limiter must not be granted to %: it is an app role or not a login',
            login
            USING ERRCODE = 'invalid_grant_operation';
    END IF;
    EXECUTE format('GRANT USAGE ON SCHEMA tenant_guard TO %I', login);
    EXECUTE format(
        'GRANT EXECUTE ON FUNCTION tenant_guard.rate_limit_hit(text, uuid, text, bigint, integer), '
        'tenant_guard.rate_limit_sweep(integer) TO %I', login);
EXCEPTION WHEN unique_violation THEN
    NULL; -- granted concurrently
END
$fn$;
REVOKE ALL ON FUNCTION tenant_guard.grant_rate_limiter(name) FROM PUBLIC;
