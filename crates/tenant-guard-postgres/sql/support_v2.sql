-- tenant-guard support SQL, version 2.
--
-- Idempotent: safe to apply on every start, and safe on Supabase (roles and auth.* functions that
-- already exist are left alone). Apply it as a superuser (creating a BYPASSRLS role needs one),
-- with `tenant_guard_postgres::support::apply_support_sql`, which runs it in one transaction
-- under an advisory lock and retries the races of concurrent application from several databases
-- (roles are cluster-wide), then grants the app roles to the pool's login.
--
-- The pool's login: PostgREST's `authenticator` pattern. A login that can do nothing by itself
-- (NOINHERIT, no table privileges, not the owner of any table), only switch to the app roles:
--
--   CREATE ROLE authenticator LOGIN NOINHERIT PASSWORD '...';
--   SELECT tenant_guard.grant_app_roles('authenticator');
--
-- Tables are owned by another role (the one running migrations); grant the app roles what they
-- need and let RLS decide which rows:
--
--   GRANT SELECT, INSERT, UPDATE, DELETE ON public.projects TO authenticated;

-- Roles. NOLOGIN: reachable only through SET ROLE from a login that was granted them.
-- CREATE ROLE is cluster-wide: a concurrent creation from another database surfaces as
-- duplicate_object or unique_violation, which means the role exists: fine.
DO $roles$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = 'anon') THEN
        BEGIN
            CREATE ROLE anon NOLOGIN NOINHERIT;
        EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL;
        END;
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = 'authenticated') THEN
        BEGIN
            CREATE ROLE authenticated NOLOGIN NOINHERIT;
        EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL;
        END;
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = 'service_role') THEN
        BEGIN
            CREATE ROLE service_role NOLOGIN NOINHERIT BYPASSRLS;
        EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL;
        END;
    END IF;
END
$roles$;

CREATE SCHEMA IF NOT EXISTS auth;
CREATE SCHEMA IF NOT EXISTS tenant_guard;

-- auth.uid(), auth.role(), auth.jwt(), auth.email(): the same definitions as Supabase's, reading
-- the legacy per-claim settings first and the full claims second. Created only when missing.
DO $auth$
BEGIN
    IF to_regprocedure('auth.uid()') IS NULL THEN
        CREATE FUNCTION auth.uid() RETURNS uuid
            LANGUAGE sql STABLE
            AS $fn$
                SELECT coalesce(
                    nullif(current_setting('request.jwt.claim.sub', true), ''),
                    (nullif(current_setting('request.jwt.claims', true), '')::jsonb ->> 'sub')
                )::uuid
            $fn$;
    END IF;
    IF to_regprocedure('auth.role()') IS NULL THEN
        CREATE FUNCTION auth.role() RETURNS text
            LANGUAGE sql STABLE
            AS $fn$
                SELECT coalesce(
                    nullif(current_setting('request.jwt.claim.role', true), ''),
                    (nullif(current_setting('request.jwt.claims', true), '')::jsonb ->> 'role')
                )::text
            $fn$;
    END IF;
    IF to_regprocedure('auth.jwt()') IS NULL THEN
        CREATE FUNCTION auth.jwt() RETURNS jsonb
            LANGUAGE sql STABLE
            AS $fn$
                SELECT coalesce(
                    nullif(current_setting('request.jwt.claim', true), ''),
                    nullif(current_setting('request.jwt.claims', true), '')
                )::jsonb
            $fn$;
    END IF;
    IF to_regprocedure('auth.email()') IS NULL THEN
        CREATE FUNCTION auth.email() RETURNS text
            LANGUAGE sql STABLE
            AS $fn$
                SELECT coalesce(
                    nullif(current_setting('request.jwt.claim.email', true), ''),
                    (nullif(current_setting('request.jwt.claims', true), '')::jsonb ->> 'email')
                )::text
            $fn$;
    END IF;
END
$auth$;

-- Our helpers. After a transaction a custom setting reads '' (not NULL): nullif turns it into NULL,
-- which matches no row. In policies, wrap them as `(SELECT tenant_guard.org_id())` so Postgres
-- evaluates them once per statement (an InitPlan), not once per row.
CREATE OR REPLACE FUNCTION tenant_guard.org_id() RETURNS uuid
    LANGUAGE sql STABLE PARALLEL SAFE
    AS $fn$ SELECT nullif(current_setting('tenant_guard.org_id', true), '')::uuid $fn$;

-- The same setting for orgs keyed by text or bigint (issuers configured with org id kind `text`
-- or `integer`): `(SELECT tenant_guard.org_id_text())`, `(SELECT tenant_guard.org_id_bigint())`.
-- org_id_bigint() is NULL, never an error, when the setting holds no integer (no org, or a UUID
-- org): the guard writes only canonical i64 text there.
CREATE OR REPLACE FUNCTION tenant_guard.org_id_text() RETURNS text
    LANGUAGE sql STABLE PARALLEL SAFE
    AS $fn$ SELECT nullif(current_setting('tenant_guard.org_id', true), '') $fn$;

CREATE OR REPLACE FUNCTION tenant_guard.org_id_bigint() RETURNS bigint
    LANGUAGE sql STABLE PARALLEL SAFE
    AS $fn$
        SELECT CASE WHEN s ~ '^-?[0-9]{1,19}$' THEN s::bigint END
          FROM (SELECT current_setting('tenant_guard.org_id', true) AS s) AS setting
    $fn$;

-- The user id: the per-claim setting when the guard sets it (`ScopeSettings::claim_settings`),
-- else the claims' `sub` (the guard's default sets only role, claims and org).
CREATE OR REPLACE FUNCTION tenant_guard.user_id() RETURNS text
    LANGUAGE sql STABLE PARALLEL SAFE
    AS $fn$
        SELECT nullif(coalesce(
            nullif(current_setting('request.jwt.claim.sub', true), ''),
            nullif(current_setting('request.jwt.claims', true), '')::jsonb ->> 'sub'
        ), '')
    $fn$;

-- Set only when the guard opts in (`ScopeSettings::request_id`); NULL otherwise.
CREATE OR REPLACE FUNCTION tenant_guard.request_id() RETURNS text
    LANGUAGE sql STABLE PARALLEL SAFE
    AS $fn$ SELECT nullif(current_setting('tenant_guard.request_id', true), '') $fn$;

CREATE OR REPLACE FUNCTION tenant_guard.support_version() RETURNS integer
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    AS $fn$ SELECT 2 $fn$;

-- Grants the app roles to a login so it can SET ROLE to them (the pool's login).
CREATE OR REPLACE FUNCTION tenant_guard.grant_app_roles(login name) RETURNS void
    LANGUAGE plpgsql
    AS $fn$
BEGIN
    EXECUTE format('GRANT anon, authenticated, service_role TO %I', login);
EXCEPTION WHEN unique_violation THEN
    NULL; -- granted concurrently
END
$fn$;
REVOKE ALL ON FUNCTION tenant_guard.grant_app_roles(name) FROM PUBLIC;

-- The app roles may call the helpers (functions are executable by PUBLIC by default; schemas are
-- not usable by default).
DO $usage$
BEGIN
    GRANT USAGE ON SCHEMA tenant_guard TO anon, authenticated, service_role;
    BEGIN
        GRANT USAGE ON SCHEMA auth TO anon, authenticated, service_role;
    EXCEPTION WHEN insufficient_privilege THEN NULL; -- a managed `auth` schema (Supabase) has its own grants
    END;
END
$usage$;
