//! Support code shared by the reference apps (`reference_axum`, `reference_actix`).
//!
//! Everything here is independent of the web framework: reading the configuration from the
//! environment, logging, building the verifier (with demo tokens in development), starting or
//! connecting to the database and applying the schema, binding the listener, printing the
//! `listening on` line, and waiting for a shutdown signal. An app includes it with
//!
//! ```ignore
//! #[path = "common/mod.rs"]
//! mod common;
//! ```
//!
//! and its `main` reads like this (the framework part in the middle):
//!
//! ```ignore
//! let app = match common::App::start().await {
//!     Ok(app) => app,
//!     Err(error) => return common::fail(&error),
//! };
//! // … build the server from app.verifier, app.pool and app.take_listener() …
//! app.announce();
//! // … serve until common::shutdown_signal() resolves …
//! ```
//!
//! The `App` must stay alive until the server has stopped: it owns the throwaway database (when
//! one was started), which is removed when the `App` is dropped.
// Each app uses a different subset; items are `pub` to document the shared interface.
#![allow(dead_code, unreachable_pub)]

use std::io::{IsTerminal as _, Write as _};
use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tenant_guard::postgres::tokio_postgres::types::ToSql;
use tenant_guard::postgres::{Pooler, SessionReset, TenantPool};
use tenant_guard::{Environment, OrgId, OrgIdKind, Verifier, VerifierBuilder};
use tenant_guard_testkit::{TestDatabase, TestPostgres};

/// Any start-up failure. Its message names what to fix (e.g. the missing variable).
pub type StartError = Box<dyn std::error::Error + Send + Sync>;

/// The two demo organisations of development mode (fixed, so curl lines can be reused), for
/// the default org id kind (`uuid`); see [`demo_orgs`] for the others.
pub const DEMO_ORGS: [(&str, &str); 2] = [
    ("alice", "11111111-1111-4111-8111-111111111111"),
    ("bob", "22222222-2222-4222-8222-222222222222"),
];

/// The demo organisations for `kind` (`JWT_ORG_ID_KIND`): [`DEMO_ORGS`] for UUIDs, `1`/`2` for
/// integers, `alice-org`/`bob-org` for text.
pub fn demo_orgs(kind: OrgIdKind) -> [(&'static str, &'static str); 2] {
    match kind {
        OrgIdKind::Integer => [("alice", "1"), ("bob", "2")],
        OrgIdKind::Text => [("alice", "alice-org"), ("bob", "bob-org")],
        _ => DEMO_ORGS,
    }
}

/// How long demo tokens stay valid.
const DEMO_TOKEN_LIFETIME: Duration = Duration::from_secs(12 * 60 * 60);

/// The role the membership lookup of `ORG_SOURCE=header` runs as by default (`MEMBERSHIP_ROLE`):
/// `NOLOGIN`, allowed to read `memberships` and nothing else.
pub const MEMBERSHIP_READER: &str = "membership_reader";

/// The app's schema on top of the library's support SQL: one tenant table under forced RLS, and
/// the `memberships` table `ORG_SOURCE=header` checks (readable by [`MEMBERSHIP_READER`] only:
/// neither `authenticated` nor `anon` may read or write it).
///
/// This is the schema for UUID org ids (the default `JWT_ORG_ID_KIND`); [`schema_sql`] gives the
/// one for any kind. Idempotent: safe to apply on every start.
pub const SCHEMA_SQL: &str = r#"
SET LOCAL client_min_messages = warning;
DO $$ BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'membership_reader') THEN
        CREATE ROLE membership_reader NOLOGIN;
    END IF;
EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL;
END $$;
CREATE TABLE IF NOT EXISTS public.memberships (
    user_id text NOT NULL,
    org_id uuid NOT NULL,
    role text NOT NULL DEFAULT 'authenticated',
    PRIMARY KEY (user_id, org_id)
);
REVOKE ALL ON public.memberships FROM PUBLIC;
GRANT SELECT ON public.memberships TO membership_reader;
CREATE TABLE IF NOT EXISTS public.projects (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    org_id uuid NOT NULL,
    name text NOT NULL,
    created_by text,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS projects_org_id_idx ON public.projects (org_id);
ALTER TABLE public.projects ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.projects FORCE ROW LEVEL SECURITY;
GRANT SELECT, INSERT, UPDATE, DELETE ON public.projects TO authenticated;
DROP POLICY IF EXISTS projects_org_isolation ON public.projects;
CREATE POLICY projects_org_isolation ON public.projects
    FOR ALL TO authenticated
    USING (org_id = (SELECT tenant_guard.org_id()))
    WITH CHECK (org_id = (SELECT tenant_guard.org_id()));
"#;

/// The reference schema for org ids of `kind` (`JWT_ORG_ID_KIND`): [`SCHEMA_SQL`] with the
/// `org_id` columns of `projects` and `memberships` typed for the kind (`uuid`, `bigint`,
/// `text`) and the policy comparing them with the matching support function
/// (`tenant_guard.org_id()`, `org_id_bigint()`, `org_id_text()`).
///
/// It starts with a check: when either table already exists with an `org_id` of another type
/// (a database made for another kind), applying it fails, naming the column, its type and
/// `JWT_ORG_ID_KIND`, so the app refuses to start instead of failing at the first request.
pub fn schema_sql(kind: OrgIdKind) -> String {
    let (column, function) = org_column(kind);
    let check = format!(
        r#"
DO $check$
DECLARE
    tbl text;
    found text;
BEGIN
    FOREACH tbl IN ARRAY ARRAY['projects', 'memberships'] LOOP
        SELECT format_type(a.atttypid, a.atttypmod) INTO found
          FROM pg_attribute a
         WHERE a.attrelid = to_regclass('public.' || tbl)
           AND a.attname = 'org_id' AND NOT a.attisdropped;
        IF found IS NOT NULL AND found <> '{column}' THEN
            RAISE EXCEPTION 'public.%.org_id is %, but JWT_ORG_ID_KIND={kind} needs {column}: the database was set up for another org id kind (use a database made for this kind, or migrate the column)', tbl, found
                USING ERRCODE = 'datatype_mismatch';
        END IF;
    END LOOP;
END $check$;
"#,
        kind = kind.as_str(),
    );
    let schema = SCHEMA_SQL
        .replace("org_id uuid NOT NULL", &format!("org_id {column} NOT NULL"))
        .replace("tenant_guard.org_id()", function);
    format!("{check}{schema}")
}

/// The column type of an org id of `kind`, and the support SQL function that reads the scoped
/// org as that type.
fn org_column(kind: OrgIdKind) -> (&'static str, &'static str) {
    match kind {
        OrgIdKind::Integer => ("bigint", "tenant_guard.org_id_bigint()"),
        OrgIdKind::Text => ("text", "tenant_guard.org_id_text()"),
        _ => ("uuid", "tenant_guard.org_id()"),
    }
}

/// The org as a SQL parameter of its own type (`uuid`, `bigint` or `text`: the `org_id` column
/// type [`schema_sql`] gives its kind), so the handlers' SQL is the same for every kind.
pub fn org_param(org: &OrgId) -> Box<dyn ToSql + Sync + Send + '_> {
    match org {
        OrgId::Uuid(uuid) => Box::new(*uuid),
        OrgId::Int(n) => Box::new(*n),
        other => Box::new(
            other
                .as_text()
                .map_or_else(|| other.to_string(), str::to_owned),
        ),
    }
}

/// An org id as the handlers read it back (`org_id::text`), parsed as `kind` (the caller's:
/// row security shows no other org's rows). An error when the text is no id of that kind, which
/// [`schema_sql`]'s start-up check rules out: a server bug (logged; the apps answer 500).
pub fn org_from_text(kind: OrgIdKind, text: &str) -> Result<OrgId, UnexpectedOrg> {
    kind.parse(text).map_err(|_| {
        tracing::error!(
            kind = kind.as_str(),
            "a row's org_id is no org id of the configured kind"
        );
        UnexpectedOrg
    })
}

/// A row's `org_id` that is no org id of the configured kind (see [`org_from_text`]).
#[derive(Debug, Clone, Copy)]
pub struct UnexpectedOrg;

/// The pool's login on a throwaway database: PostgREST's `authenticator` pattern, a login that
/// can do nothing by itself but switch to the app roles (the guard then warns about nothing).
const AUTHENTICATOR: &str = "authenticator";

/// Creates [`AUTHENTICATOR`] (idempotent; roles are per server) and grants it the app roles.
const AUTHENTICATOR_SQL: &str = r#"
DO $$ BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'authenticator') THEN
        CREATE ROLE authenticator LOGIN NOINHERIT;
    END IF;
END $$;
SELECT tenant_guard.grant_app_roles('authenticator');
GRANT membership_reader TO authenticator;
"#;

/// Output format of the logs on stderr (`LOG_FORMAT`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines (the default).
    Human,
    /// One JSON object per line (`LOG_FORMAT=json`).
    Json,
}

/// The reference apps' configuration, read from the environment (see `reference-app.md`).
#[derive(Clone)]
pub struct Config {
    /// `APP_ENV`; unset or unknown means production.
    pub environment: Environment,
    /// `DATABASE_URL`; `None`: in development, start a throwaway PostgreSQL; in any other
    /// environment, refuse to start (see [`open_database`]).
    pub database_url: Option<String>,
    /// `JWT_SECRET`: HS256/384/512 shared secret.
    pub jwt_secret: Option<String>,
    /// `JWT_JWKS_FILE`: path of a JWKS JSON file.
    pub jwks_file: Option<PathBuf>,
    /// `JWT_AUDIENCE` (default `authenticated`).
    pub audience: String,
    /// `JWT_ISSUER`, checked when set.
    pub issuer: Option<String>,
    /// `ORG_CLAIM`: dotted path of the org claim (default `org_id`).
    pub org_claim: String,
    /// `BIND` (default `127.0.0.1:3000`; port 0 picks a free port).
    pub bind: SocketAddr,
    /// `DB_POOL_SIZE` (default 16).
    pub db_pool_size: usize,
    /// `DB_POOLER`: `transaction` when `DATABASE_URL` is a transaction-mode pooler (PgBouncer,
    /// Supavisor port 6543); default `none`.
    pub db_pooler: Pooler,
    /// `DATABASE_REPLICA_URLS`: comma-separated hot standbys for the `ReadOnly` (GET) routes.
    pub replica_urls: Option<String>,
    /// `DB_BACKEND`: the database driver handlers use, tokio-postgres (`postgres`, the default)
    /// or sqlx (`sqlx`); any other value refuses to start.
    pub db_backend: DbBackend,
    /// `SESSION_RESET`: what the pool does about session state a transaction leaves (see
    /// `SessionReset`): `check` (the default), `discard_all`, or `dangerous_none` (no reset,
    /// for benchmarks: logged as a warning at start). Only `check` with `DB_BACKEND=sqlx`, whose
    /// release hook is fixed; any other value refuses to start.
    pub session_reset: SessionReset,
    /// `RATE_LIMIT_PER_MINUTE`: per-org limit on the authenticated routes (see [`rate_limiter`]).
    pub rate_limit_per_minute: Option<u32>,
    /// `LOG_FORMAT`.
    pub log_format: LogFormat,
    /// `BODY_TIMEOUT_SECONDS` (default 10): how long a request body may take to arrive; slower
    /// ones get 408. (The guard holds no connection while a body arrives; this bounds the
    /// socket and the task.)
    pub body_timeout: Duration,
    /// `ORG_SOURCE` and the membership variables: where a request's org comes from.
    pub org_source: OrgSource,
    /// `JWT_ORG_ID_KIND` (default `uuid`): the kind of the org ids, and so the type of the
    /// schema's `org_id` columns (see [`schema_sql`]).
    pub org_id_kind: OrgIdKind,
}

/// Where a request's org comes from (`ORG_SOURCE`).
#[derive(Debug, Clone)]
pub enum OrgSource {
    /// `token` (the default): the org claim of the verified token, nothing else.
    Token,
    /// `header`: tokens may carry no org; the request names it in a header and the membership
    /// lookup decides (a token that names its org still wins).
    Header(MembershipConfig),
}

/// The membership lookup of `ORG_SOURCE=header`.
#[derive(Debug, Clone)]
pub struct MembershipConfig {
    /// `ORG_HEADER` (default `x-org-id`).
    pub header: http::HeaderName,
    /// `MEMBERSHIP_SQL` (default: the library's, which fits [`SCHEMA_SQL`]'s `memberships`).
    pub sql: String,
    /// `MEMBERSHIP_ROLE` (default [`MEMBERSHIP_READER`]): the role the lookup runs as.
    pub role: tenant_guard::Role,
    /// `MEMBERSHIP_CACHE_TTL_SECONDS` (default 30; 0: every request asks the database).
    pub cache_ttl: Duration,
    /// `MEMBERSHIP_CACHE_SIZE` (default 10 000; 0: nothing is cached).
    pub cache_size: usize,
    /// `TOKEN_ORG`: `authoritative` (default; a header naming another org than the token's is
    /// 403 `org_mismatch`) or `default` (the header overrides it, membership-checked).
    pub token_org: tenant_guard::http::TokenOrg,
}

/// The variables that only mean something with `ORG_SOURCE=header`.
const MEMBERSHIP_VARS: [&str; 6] = [
    "ORG_HEADER",
    "TOKEN_ORG",
    "MEMBERSHIP_SQL",
    "MEMBERSHIP_ROLE",
    "MEMBERSHIP_CACHE_TTL_SECONDS",
    "MEMBERSHIP_CACHE_SIZE",
];

/// Headers the org may not come from: the pipeline reads them for something else.
const RESERVED_HEADERS: [&str; 5] = [
    "authorization",
    "cookie",
    "x-request-id",
    "traceparent",
    "tracestate",
];

impl OrgSource {
    /// Reads `ORG_SOURCE` and, for `header`, the membership variables; any bad value (or a
    /// membership variable without `ORG_SOURCE=header`) is an error naming the variable.
    fn from_lookup(non_empty: &dyn Fn(&str) -> Option<String>) -> Result<Self, StartError> {
        let source = non_empty("ORG_SOURCE");
        match source.as_deref().map(str::trim) {
            None | Some("token") => {
                if let Some(var) = MEMBERSHIP_VARS.iter().find(|v| non_empty(v).is_some()) {
                    return Err(format!(
                        "{var} is set but ORG_SOURCE is not `header`: set ORG_SOURCE=header to \
                         choose orgs per request, or unset {var}"
                    )
                    .into());
                }
                return Ok(Self::Token);
            }
            Some("header") => {}
            Some(v) => {
                return Err(format!("ORG_SOURCE must be `token` or `header`, got {v:?}").into());
            }
        }
        let header = match non_empty("ORG_HEADER") {
            None => http::HeaderName::from_static("x-org-id"),
            Some(v) => {
                let name = http::HeaderName::from_bytes(v.trim().as_bytes())
                    .map_err(|_| format!("ORG_HEADER must be a header name, got {v:?}"))?;
                if RESERVED_HEADERS.contains(&name.as_str()) {
                    return Err(format!(
                        "ORG_HEADER may not be {name:?}: the guard reads that header for \
                         something else"
                    )
                    .into());
                }
                name
            }
        };
        let sql = non_empty("MEMBERSHIP_SQL").map_or_else(
            || tenant_guard::http::DEFAULT_MEMBERSHIP_SQL.to_owned(),
            |v| v.trim().to_owned(),
        );
        if !(sql.contains("$1") && sql.contains("$2")) {
            return Err(
                "MEMBERSHIP_SQL must use $1 (the token's sub) and $2 (the requested org)".into(),
            );
        }
        let role = match non_empty("MEMBERSHIP_ROLE") {
            None => tenant_guard::Role::new(MEMBERSHIP_READER)?,
            Some(v) => tenant_guard::Role::new(v.trim())
                .map_err(|_| format!("MEMBERSHIP_ROLE must be a role name, got {v:?}"))?,
        };
        let cache_ttl = match non_empty("MEMBERSHIP_CACHE_TTL_SECONDS") {
            None => tenant_guard::http::DEFAULT_MEMBERSHIP_CACHE_TTL,
            Some(v) => Duration::from_secs(v.trim().parse::<u64>().map_err(|_| {
                format!("MEMBERSHIP_CACHE_TTL_SECONDS must be a whole number of seconds, got {v:?}")
            })?),
        };
        let cache_size = match non_empty("MEMBERSHIP_CACHE_SIZE") {
            None => tenant_guard::http::DEFAULT_MEMBERSHIP_CACHE_CAPACITY,
            Some(v) => v.trim().parse::<usize>().map_err(|_| {
                format!("MEMBERSHIP_CACHE_SIZE must be a non-negative integer, got {v:?}")
            })?,
        };
        let token_org = match non_empty("TOKEN_ORG").as_deref().map(str::trim) {
            None | Some("authoritative") => tenant_guard::http::TokenOrg::Authoritative,
            Some("default") => tenant_guard::http::TokenOrg::Default,
            Some(v) => {
                return Err(
                    format!("TOKEN_ORG must be `authoritative` or `default`, got {v:?}").into(),
                );
            }
        };
        Ok(Self::Header(MembershipConfig {
            header,
            sql,
            role,
            cache_ttl,
            cache_size,
            token_org,
        }))
    }

    /// Whether tokens may come without an org (the org chosen per request).
    pub fn per_request(&self) -> bool {
        matches!(self, Self::Header(_))
    }
}

impl MembershipConfig {
    /// The guard's [`OrgMembership`](tenant_guard::http::OrgMembership).
    pub fn org_membership(&self) -> tenant_guard::http::OrgMembership {
        tenant_guard::http::OrgMembership::from_header(self.header.clone(), self.role.clone())
            .sql(self.sql.as_str())
            .cache(self.cache_size, self.cache_ttl)
            .token_org(self.token_org)
    }
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the secret or the database password.
        f.debug_struct("Config")
            .field("environment", &self.environment)
            .field("database_url", &self.database_url.as_ref().map(|_| "<set>"))
            .field(
                "jwt_secret",
                &self.jwt_secret.as_ref().map(|_| "<redacted>"),
            )
            .field("jwks_file", &self.jwks_file)
            .field("audience", &self.audience)
            .field("issuer", &self.issuer)
            .field("org_claim", &self.org_claim)
            .field("bind", &self.bind)
            .field("db_pool_size", &self.db_pool_size)
            .field("db_pooler", &self.db_pooler)
            .field("replica_urls", &self.replica_urls.as_ref().map(|_| "<set>"))
            .field("db_backend", &self.db_backend)
            .field("session_reset", &self.session_reset)
            .field("rate_limit_per_minute", &self.rate_limit_per_minute)
            .field("log_format", &self.log_format)
            .field("body_timeout", &self.body_timeout)
            .field("org_source", &self.org_source)
            .field("org_id_kind", &self.org_id_kind)
            .finish()
    }
}

/// The database driver the handlers use (`DB_BACKEND`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DbBackend {
    /// tokio-postgres through `TenantPool` / `TenantDb` (the default).
    Postgres,
    /// sqlx through `SqlxGuard` / `SqlxDb`.
    Sqlx,
}

impl Config {
    /// Reads the configuration from the process environment.
    ///
    /// Errors name the variable that is wrong. Missing keys are not an error here: that is
    /// decided by [`verifier`], which knows the environment's rules.
    pub fn from_env() -> Result<Self, StartError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Like [`Config::from_env`], with the variables taken from `lookup` (for tests).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, StartError> {
        let non_empty = |name: &str| lookup(name).filter(|v| !v.trim().is_empty());
        let bind = match non_empty("BIND") {
            None => SocketAddr::from(([127, 0, 0, 1], 3000)),
            Some(v) => v
                .trim()
                .parse()
                .map_err(|_| format!("BIND must be an address like 127.0.0.1:3000, got {v:?}"))?,
        };
        let db_pool_size = match non_empty("DB_POOL_SIZE") {
            None => 16,
            Some(v) => match v.trim().parse::<usize>() {
                Ok(n) if n > 0 => n,
                _ => {
                    return Err(
                        format!("DB_POOL_SIZE must be a positive integer, got {v:?}").into(),
                    );
                }
            },
        };
        let rate_limit_per_minute = match non_empty("RATE_LIMIT_PER_MINUTE") {
            None => None,
            Some(v) => match v.trim().parse::<u32>() {
                Ok(n) if n > 0 => Some(n),
                _ => {
                    return Err(format!(
                        "RATE_LIMIT_PER_MINUTE must be a positive integer, got {v:?}"
                    )
                    .into());
                }
            },
        };
        let body_timeout = match non_empty("BODY_TIMEOUT_SECONDS") {
            None => Duration::from_secs(10),
            Some(v) => match v.trim().parse::<u64>() {
                Ok(n) if n > 0 => Duration::from_secs(n),
                _ => {
                    return Err(format!(
                        "BODY_TIMEOUT_SECONDS must be a positive integer, got {v:?}"
                    )
                    .into());
                }
            },
        };
        let db_pooler = match non_empty("DB_POOLER") {
            None => Pooler::None,
            Some(v) => v
                .parse()
                .map_err(|_| format!("DB_POOLER must be `none` or `transaction`, got {v:?}"))?,
        };
        let db_backend = match non_empty("DB_BACKEND").as_deref().map(str::trim) {
            None | Some("postgres") => DbBackend::Postgres,
            Some("sqlx") => DbBackend::Sqlx,
            Some(v) => {
                return Err(format!("DB_BACKEND must be `postgres` or `sqlx`, got {v:?}").into());
            }
        };
        let session_reset = match non_empty("SESSION_RESET").as_deref().map(str::trim) {
            None | Some("check") => SessionReset::Check,
            Some("discard_all") => SessionReset::DiscardAll,
            Some("dangerous_none") => SessionReset::DangerousNone,
            Some(v) => {
                return Err(format!(
                    "SESSION_RESET must be `check`, `discard_all` or `dangerous_none`, got {v:?}"
                )
                .into());
            }
        };
        if db_backend == DbBackend::Sqlx && session_reset != SessionReset::Check {
            return Err(
                "SESSION_RESET other than `check` is not available with DB_BACKEND=sqlx \
                        (its release hook always resets)"
                    .into(),
            );
        }
        let org_source = OrgSource::from_lookup(&non_empty)?;
        let org_id_kind = match non_empty("JWT_ORG_ID_KIND") {
            None => OrgIdKind::Uuid,
            Some(v) => v.parse().map_err(|_| {
                format!("JWT_ORG_ID_KIND must be `uuid`, `integer` or `text`, got {v:?}")
            })?,
        };
        if let Some(issuers) = non_empty("JWT_ISSUERS") {
            one_org_id_kind(org_id_kind, &issuers)?;
        }
        let log_format = match non_empty("LOG_FORMAT") {
            Some(v) if v.trim().eq_ignore_ascii_case("json") => LogFormat::Json,
            _ => LogFormat::Human,
        };
        Ok(Self {
            environment: lookup("APP_ENV")
                .map_or(Environment::Production, |v| Environment::parse(&v)),
            database_url: non_empty("DATABASE_URL"),
            jwt_secret: lookup("JWT_SECRET").filter(|v| !v.is_empty()),
            jwks_file: non_empty("JWT_JWKS_FILE").map(PathBuf::from),
            audience: non_empty("JWT_AUDIENCE").unwrap_or_else(|| "authenticated".to_owned()),
            issuer: non_empty("JWT_ISSUER"),
            org_claim: non_empty("ORG_CLAIM").unwrap_or_else(|| "org_id".to_owned()),
            bind,
            db_pool_size,
            db_pooler,
            replica_urls: non_empty("DATABASE_REPLICA_URLS"),
            db_backend,
            session_reset,
            rate_limit_per_minute,
            log_format,
            body_timeout,
            org_source,
            org_id_kind,
        })
    }
}

/// The reference schema has one `org_id` column type: every issuer of `JWT_ISSUERS` must carry
/// the org ids of `JWT_ORG_ID_KIND` (their `org_id_kind`, default `uuid`, is not inherited).
/// A value the verifier cannot read is left for it to report.
fn one_org_id_kind(kind: OrgIdKind, issuers: &str) -> Result<(), StartError> {
    let Ok(serde_json::Value::Array(profiles)) = serde_json::from_str(issuers) else {
        return Ok(());
    };
    for profile in &profiles {
        let theirs = match profile
            .get("org_id_kind")
            .and_then(serde_json::Value::as_str)
        {
            None => OrgIdKind::Uuid,
            Some(v) => match v.parse::<OrgIdKind>() {
                Ok(theirs) => theirs,
                Err(_) => continue, // the verifier names the bad value
            },
        };
        if theirs != kind {
            let issuer = profile
                .get("issuer")
                .and_then(serde_json::Value::as_str)
                .unwrap_or("?");
            return Err(format!(
                "JWT_ISSUERS: issuer {issuer:?} has org_id_kind {theirs}, but JWT_ORG_ID_KIND is                  {kind}: the reference schema's org_id columns hold one kind; give every issuer                  \"org_id_kind\": \"{kind}\"",
                theirs = theirs.as_str(),
                kind = kind.as_str(),
            )
            .into());
        }
    }
    Ok(())
}

/// Installs the global `tracing` subscriber: logs on stderr, filtered by `RUST_LOG` (default
/// `info`), human-readable or JSON (`LOG_FORMAT=json`: one object per line, with the current
/// span's fields under `span` and the enclosing spans under `spans`). Safe to call twice (the
/// second call does nothing).
///
/// Spans log a line when they close: the `request` span's line is the access log (`request_id`,
/// `route`, `org_id`, `user_id`, `role`, `status`, `latency_ms`, `error_code` or `cancelled`), the
/// `tenant_tx` span's the guard's (`pool_wait_ms`, `scope_ms`, `outcome`, `duration_ms`).
pub fn init_logging(format: LogFormat) {
    use tracing_subscriber::EnvFilter;
    use tracing_subscriber::fmt::format::FmtSpan;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_span_events(FmtSpan::CLOSE)
        .with_ansi(std::io::stderr().is_terminal());
    let _ = match format {
        LogFormat::Json => builder
            .json()
            .with_current_span(true)
            .with_span_list(true)
            .try_init(),
        LogFormat::Human => builder.try_init(),
    };
}

/// Demo credentials of development mode: the generated secret and one token per demo org.
pub struct DemoTokens {
    /// `(name, org id, token)` for each of [`DEMO_ORGS`].
    pub tokens: Vec<(&'static str, &'static str, String)>,
}

impl std::fmt::Debug for DemoTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DemoTokens").finish_non_exhaustive()
    }
}

/// Builds the verifier from the environment (`APP_ENV`, `JWT_SECRET`, `JWT_JWKS_FILE`,
/// `JWT_OIDC_ISSUER`, `JWT_ISSUERS`, `JWT_AUDIENCE`, `JWT_ISSUER`, `ORG_CLAIM`, … as read by
/// `VerifierBuilder::from_env`).
///
/// With no key source at all: in development a random HS256 secret is
/// generated and demo tokens are returned (print them with [`print_demo_tokens`]); in any other
/// environment this fails with a message naming the missing variables. With both, both kinds of
/// token are accepted.
pub fn verifier(config: &Config) -> Result<(Verifier, Option<DemoTokens>), StartError> {
    let mut builder = VerifierBuilder::from_env()?;
    if config.org_source.per_request() {
        // ORG_SOURCE=header: tokens of the configured issuer may name no org (the header and
        // the membership lookup choose it; a token that names its org still wins).
        builder = builder.org_from_request(true);
    }
    // Any key source counts: JWT_SECRET, JWT_JWKS_FILE, JWT_JWKS_URL, JWT_OIDC_ISSUER, JWT_ISSUERS…
    if !builder.has_key_source() && config.environment.is_development() {
        let secret = random_secret();
        let verifier = builder.hmac_secret(&secret).build()?;
        let tokens = demo_tokens(config, &secret)?;
        return Ok((verifier, Some(tokens)));
    }
    // Without keys, outside development, `build` refuses and names JWT_SECRET / JWT_JWKS_FILE.
    Ok((builder.build()?, None))
}

/// 256 random bits, hex-encoded (two v4 UUIDs come from the OS's random source).
fn random_secret() -> String {
    format!(
        "{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    )
}

/// Mints one demo token per demo org with `secret`.
fn demo_tokens(config: &Config, secret: &str) -> Result<DemoTokens, StartError> {
    let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs();
    let key = jsonwebtoken::EncodingKey::from_secret(secret.as_bytes());
    let mut tokens = Vec::new();
    for (name, org) in demo_orgs(config.org_id_kind) {
        let mut claims = serde_json::json!({
            "sub": format!("demo-{name}"),
            "role": "authenticated",
            "aud": config.audience.split(',').next().unwrap_or_default().trim(),
            "iat": now,
            "exp": now + DEMO_TOKEN_LIFETIME.as_secs(),
        });
        if let Some(iss) = &config.issuer {
            claims["iss"] = serde_json::Value::from(iss.as_str());
        }
        set_dotted(&mut claims, &config.org_claim, org);
        let header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
        tokens.push((name, org, jsonwebtoken::encode(&header, &claims, &key)?));
    }
    Ok(DemoTokens { tokens })
}

/// Sets `value` at the dotted `path` of a JSON object, creating intermediate objects.
fn set_dotted(target: &mut serde_json::Value, path: &str, value: &str) {
    let mut node = target;
    let mut segments = path.split('.').peekable();
    while let Some(segment) = segments.next() {
        if !node.is_object() {
            *node = serde_json::Value::Object(serde_json::Map::new());
        }
        let serde_json::Value::Object(map) = node else {
            return;
        };
        if segments.peek().is_none() {
            map.insert(segment.to_owned(), serde_json::Value::from(value));
            return;
        }
        node = map
            .entry(segment.to_owned())
            .or_insert_with(|| serde_json::Value::Object(serde_json::Map::new()));
    }
}

/// Prints the demo tokens and ready-to-run curl lines on stderr (development mode only).
#[allow(clippy::print_stderr)]
pub fn print_demo_tokens(tokens: &DemoTokens, addr: SocketAddr) {
    let base = format!("http://{addr}");
    let mut out = String::from(
        "\ndevelopment mode: a random HS256 secret was generated; demo tokens (valid 12 hours):\n",
    );
    for (name, org, token) in &tokens.tokens {
        out.push_str(&format!(
            "\n  {name} (org {org}):\n  export TOKEN_{}={token}\n",
            name.to_uppercase()
        ));
    }
    let (first, _, _) = tokens.tokens[0];
    let var = format!("$TOKEN_{}", first.to_uppercase());
    out.push_str(&format!(
        "\ntry:\n  curl -s {base}/healthz\n  curl -s -H \"Authorization: Bearer {var}\" {base}/me\n  \
         curl -s -X POST -H \"Authorization: Bearer {var}\" -H 'content-type: application/json' \
         -d '{{\"name\":\"first project\"}}' {base}/projects\n  \
         curl -s -H \"Authorization: Bearer {var}\" {base}/projects\n\n"
    ));
    eprint!("{out}");
}

/// The database the app talks to: the pool, and the throwaway server when one was started.
#[derive(Debug)]
pub struct Database {
    /// The guarded pool; the only way the app reaches the database (with `DB_BACKEND=sqlx`,
    /// only the startup checks use it).
    pub pool: TenantPool,
    /// The sqlx guard, with `DB_BACKEND=sqlx`.
    pub sqlx: Option<tenant_guard::sqlx::SqlxGuard>,
    // Dropped in this order: the throwaway database, then its server (both removed).
    throwaway_database: Option<TestDatabase>,
    throwaway_server: Option<TestPostgres>,
}

/// Connects to `DATABASE_URL`, applies the library's support SQL and [`schema_sql`] for
/// `JWT_ORG_ID_KIND` (refusing a database set up for another kind), and builds
/// the pool. Without `DATABASE_URL`: in development, starts a throwaway PostgreSQL (deleted on
/// exit) and logs its URL on stderr; in any other environment, an error naming the variable (a
/// forgotten variable must not turn a deployment into one that accepts writes and loses them).
pub async fn open_database(config: &Config) -> Result<Database, StartError> {
    open_database_with_schema(config, &schema_sql(config.org_id_kind)).await
}

/// [`open_database`] with another idempotent schema instead of [`SCHEMA_SQL`] (e.g. `SCHEMA_SQL`
/// plus the example's own tables), applied as the URL's user in the support SQL's transaction.
pub async fn open_database_with_schema(
    config: &Config,
    schema_sql: &str,
) -> Result<Database, StartError> {
    let (url, throwaway_database, throwaway_server) = match &config.database_url {
        Some(url) => (url.clone(), None, None),
        None if !config.environment.is_development() => {
            return Err(format!(
                "DATABASE_URL is not set (APP_ENV={}): outside APP_ENV=development the app \
                 refuses to start without a database; the throwaway PostgreSQL of development \
                 loses every write on exit",
                config.environment
            )
            .into());
        }
        None => {
            let server = TestPostgres::start()?;
            let database = server.create_database_async().await?;
            let url = database.url().to_owned();
            tracing::info!(%url, "started a throwaway PostgreSQL database (removed on exit)");
            (url, Some(database), Some(server))
        }
    };
    let pg_config: tenant_guard::postgres::tokio_postgres::Config = url
        .parse()
        .map_err(|e| format!("DATABASE_URL is not a valid PostgreSQL URL: {e}"))?;
    // Schema as the URL's user; the pool logs in as that user too, except on a throwaway
    // database, where it uses a dedicated authenticator login (trust authentication, no password).
    let mut pool_config = pg_config.clone();
    if throwaway_database.is_some() {
        let sql = format!("{schema_sql}{AUTHENTICATOR_SQL}");
        tenant_guard::postgres::support::apply(&pg_config, &sql)
            .await
            .map_err(with_server_message)?;
        pool_config.user(AUTHENTICATOR);
    } else {
        tenant_guard::postgres::support::apply(&pg_config, schema_sql)
            .await
            .map_err(with_server_message)?;
    }
    let sqlx = match config.db_backend {
        DbBackend::Postgres => None,
        DbBackend::Sqlx => Some(sqlx_guard(&url, &pool_config, config.db_pool_size)?),
    };
    let mut builder = TenantPool::builder(pool_config)
        .pooler(config.db_pooler)
        .session_reset(config.session_reset)
        .max_size(config.db_pool_size)
        .wait_timeout(Duration::from_secs(5))
        .statement_timeout(Duration::from_secs(10));
    if let Some(urls) = &config.replica_urls {
        builder = builder
            .replica_urls(urls)
            .map_err(|_| "DATABASE_REPLICA_URLS holds a URL that is not a valid PostgreSQL URL")?;
    }
    let pool = builder.build()?;
    Ok(Database {
        pool,
        sqlx,
        throwaway_database,
        throwaway_server,
    })
}

/// `error` with the server's message appended, when a PostgreSQL error in its source chain has
/// one (tokio-postgres shows only `db error`): e.g. [`schema_sql`]'s check, naming the column
/// whose type disagrees with `JWT_ORG_ID_KIND`.
fn with_server_message(error: impl std::error::Error + Send + Sync + 'static) -> StartError {
    let mut source = error.source();
    while let Some(cause) = source {
        let db = cause
            .downcast_ref::<tenant_guard::postgres::tokio_postgres::Error>()
            .and_then(tenant_guard::postgres::tokio_postgres::Error::as_db_error);
        if let Some(db) = db {
            return format!("{error}: {}", db.message()).into();
        }
        source = cause.source();
    }
    error.into()
}

/// The sqlx pool of `DB_BACKEND=sqlx`: the same login, size, timeouts as the tokio-postgres pool
/// (statement timeout in the startup packet, so the release hook's reset keeps it), with the
/// session-reset hook of `tenant_guard::sqlx::pool_options`.
fn sqlx_guard(
    url: &str,
    pool_config: &tenant_guard::postgres::tokio_postgres::Config,
    size: usize,
) -> Result<tenant_guard::sqlx::SqlxGuard, StartError> {
    let options: sqlx::postgres::PgConnectOptions = url
        .parse()
        .map_err(|_| "DATABASE_URL is not a valid PostgreSQL URL for sqlx")?;
    let options = options
        .username(pool_config.get_user().unwrap_or_default())
        .options([("statement_timeout", "10s")]);
    let pool = tenant_guard::sqlx::pool_options()
        .max_connections(u32::try_from(size).unwrap_or(u32::MAX))
        .acquire_timeout(Duration::from_secs(5))
        // Connect at the first request, like deadpool: a start does not need the database up.
        .connect_lazy_with(options);
    Ok(tenant_guard::sqlx::SqlxGuard::new(pool))
}

/// Binds `addr` (non-blocking, as tokio and actix expect).
pub fn bind(addr: SocketAddr) -> Result<TcpListener, StartError> {
    let listener = TcpListener::bind(addr).map_err(|e| format!("BIND {addr}: {e}"))?;
    listener.set_nonblocking(true)?;
    Ok(listener)
}

/// Prints the one `listening on http://HOST:PORT` line on stdout and flushes it.
#[allow(clippy::print_stdout)]
pub fn announce(addr: SocketAddr) {
    let mut stdout = std::io::stdout().lock();
    let _ = writeln!(stdout, "listening on http://{addr}");
    let _ = stdout.flush();
}

/// Resolves on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = terminate => {}
    }
    tracing::info!("shutdown signal received, finishing in-flight requests");
}

/// The per-org limiter of `RATE_LIMIT_PER_MINUTE` (all of it may come as a burst), if set. Give
/// one limiter to every guarded route so an org has one budget across them.
pub fn rate_limiter(config: &Config) -> Result<Option<tenant_guard::RateLimiter>, StartError> {
    let Some(per_minute) = config.rate_limit_per_minute else {
        return Ok(None);
    };
    tracing::info!(per_minute, "per-org rate limit on the authenticated routes");
    Ok(Some(tenant_guard::RateLimiter::per_minute(per_minute)?))
}

/// The guard's membership lookup for `ORG_SOURCE=header`, run once against the database first:
/// a broken `MEMBERSHIP_SQL` or `MEMBERSHIP_ROLE` (a typo, a missing table or grant, a role the
/// login cannot switch to) refuses to start, naming the variables.
pub async fn org_membership(
    config: &Config,
    pool: &TenantPool,
) -> Result<Option<tenant_guard::http::OrgMembership>, StartError> {
    let OrgSource::Header(settings) = &config.org_source else {
        return Ok(None);
    };
    let membership = settings.org_membership();
    membership.check(pool).await.map_err(|error| {
        format!(
            "the membership lookup (MEMBERSHIP_SQL as MEMBERSHIP_ROLE={}) fails: {error}",
            settings.role
        )
    })?;
    tracing::info!(
        header = %settings.header,
        role = %settings.role,
        cache_ttl_s = settings.cache_ttl.as_secs(),
        "orgs chosen per request, checked by the membership lookup"
    );
    Ok(Some(membership))
}

/// Everything an app needs, started and checked: the recipe of the reference apps.
#[derive(Debug)]
pub struct App {
    /// The configuration read at start.
    pub config: Config,
    /// The verifier every authenticated route uses.
    pub verifier: Verifier,
    /// The guarded pool.
    pub pool: TenantPool,
    /// The sqlx guard (`DB_BACKEND=sqlx`).
    pub sqlx: Option<tenant_guard::sqlx::SqlxGuard>,
    /// The membership lookup of `ORG_SOURCE=header` (checked against the database at start).
    pub membership: Option<tenant_guard::http::OrgMembership>,
    listener: Option<TcpListener>,
    addr: SocketAddr,
    database: Database,
}

impl App {
    /// Reads the configuration, sets up logging, builds the verifier (failing outside development
    /// when no key is configured), binds the listener, opens the database (applying the schema)
    /// and, in development without keys, prints the demo tokens and curl lines on stderr.
    pub async fn start() -> Result<Self, StartError> {
        let config = Config::from_env()?;
        init_logging(config.log_format);
        let (verifier, demo) = verifier(&config)?;
        let listener = bind(config.bind)?;
        let addr = listener.local_addr()?;
        let database = open_database(&config).await?;
        let membership = org_membership(&config, &database.pool).await?;
        if let Some(demo) = &demo {
            print_demo_tokens(demo, addr);
        }
        tracing::info!(environment = %config.environment, %addr, "reference app configured");
        Ok(Self {
            pool: database.pool.clone(),
            sqlx: database.sqlx.clone(),
            membership,
            config,
            verifier,
            listener: Some(listener),
            addr,
            database,
        })
    }

    /// The address actually bound (port 0 resolved).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Takes the bound, non-blocking listener (once; `None` afterwards).
    pub fn take_listener(&mut self) -> Option<TcpListener> {
        self.listener.take()
    }

    /// Prints the `listening on` line (see [`announce`]).
    pub fn announce(&self) {
        announce(self.addr);
    }
}

/// Reports a start-up error on stderr and returns the failure exit code.
#[allow(clippy::print_stderr)]
pub fn fail(error: &StartError) -> std::process::ExitCode {
    eprintln!("error: {error}");
    std::process::ExitCode::FAILURE
}
