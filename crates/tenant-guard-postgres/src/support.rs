//! The support SQL: app roles, Supabase-compatible `auth.*` helpers, `tenant_guard.org_id()`
//! (and `org_id_text()` / `org_id_bigint()` for text and integer org ids).
//!
//! [`SUPPORT_SQL`] is a versioned, idempotent script (see its comments); [`apply_support_sql`]
//! applies it and grants the app roles to the pool's login; [`apply`] also runs your schema in the
//! same transaction (the reference apps do this at start).
//!
//! # Policy templates
//!
//! Wrap helpers as `(SELECT …)` so Postgres evaluates them once per statement (an InitPlan), not
//! once per row; enable **and force** RLS so the table owner is subject to it too; give the app
//! roles table privileges and let the policies pick the rows.
//!
//! Direct `org_id` column:
//!
//! ```sql
//! ALTER TABLE projects ENABLE ROW LEVEL SECURITY;
//! ALTER TABLE projects FORCE ROW LEVEL SECURITY;
//! GRANT SELECT, INSERT, UPDATE, DELETE ON projects TO authenticated;
//! CREATE POLICY projects_org ON projects FOR ALL TO authenticated
//!     USING (org_id = (SELECT tenant_guard.org_id()))
//!     WITH CHECK (org_id = (SELECT tenant_guard.org_id()));
//! ```
//!
//! Orgs keyed by `bigint` or `text` (issuers configured with
//! [`OrgIdKind::Integer`](tenant_guard_core::OrgIdKind::Integer) or
//! [`OrgIdKind::Text`](tenant_guard_core::OrgIdKind::Text)): the same setting, typed. Both are
//! `NULL` without an org, so they match no row; `org_id_bigint()` is also `NULL` (not an error)
//! when the setting holds no integer.
//!
//! ```sql
//! CREATE POLICY accounts_org ON accounts FOR ALL TO authenticated
//!     USING (org_id = (SELECT tenant_guard.org_id_bigint()))       -- org_id bigint
//!     WITH CHECK (org_id = (SELECT tenant_guard.org_id_bigint()));
//! CREATE POLICY pages_org ON pages FOR ALL TO authenticated
//!     USING (org_slug = (SELECT tenant_guard.org_id_text()))       -- org_slug text
//!     WITH CHECK (org_slug = (SELECT tenant_guard.org_id_text()));
//! ```
//!
//! Parent join (a child row belongs to the org of its parent):
//!
//! ```sql
//! CREATE POLICY tasks_org ON tasks FOR ALL TO authenticated
//!     USING (project_id IN (SELECT id FROM projects WHERE org_id = (SELECT tenant_guard.org_id())))
//!     WITH CHECK (project_id IN (SELECT id FROM projects WHERE org_id = (SELECT tenant_guard.org_id())));
//! ```
//!
//! Membership table (access through a row naming the user):
//!
//! ```sql
//! CREATE POLICY docs_members ON docs FOR ALL TO authenticated
//!     USING (EXISTS (SELECT 1 FROM workspace_memberships m
//!                     WHERE m.workspace_id = docs.workspace_id
//!                       AND m.user_id = (SELECT auth.uid())))
//!     WITH CHECK (EXISTS (SELECT 1 FROM workspace_memberships m
//!                          WHERE m.workspace_id = docs.workspace_id
//!                            AND m.user_id = (SELECT auth.uid())));
//! ```
//!
//! The parent and membership tables need their own policies (or no grant at all to the app role
//! other than what the sub-select needs): a sub-select in a policy runs with the caller's rights.

use std::time::Duration;

use tokio_postgres::error::SqlState;
use tokio_postgres::{Client, Config, NoTls};

/// The support SQL script (version [`SUPPORT_SQL_VERSION`]).
pub const SUPPORT_SQL: &str = include_str!("../sql/support_v2.sql");

/// The version of [`SUPPORT_SQL`]; `tenant_guard.support_version()` returns it once applied.
pub const SUPPORT_SQL_VERSION: i32 = 2;

/// The rate limit SQL (version [`RATE_LIMIT_SQL_VERSION`]): the counters table of
/// [`PgRateLimiter`](crate::PgRateLimiter), the `SECURITY DEFINER` functions
/// `tenant_guard.rate_limit_hit(…)` and `tenant_guard.rate_limit_sweep(…)` (the only way to the
/// table), the NOLOGIN role `tenant_guard_limiter` owning them, and
/// `tenant_guard.grant_rate_limiter(login)`, which lets a login execute them and refuses the app
/// roles. Idempotent; independent of [`SUPPORT_SQL`]. Apply it with [`apply_rate_limit_sql`].
pub const RATE_LIMIT_SQL: &str = include_str!("../sql/rate_limit_v1.sql");

/// The version of [`RATE_LIMIT_SQL`].
pub const RATE_LIMIT_SQL_VERSION: i32 = 1;

/// Advisory-lock key serialising concurrent application in one database.
const LOCK_KEY: i64 = 0x7465_6e61_6e74_6701; // "tenantg" + 1

/// Attempts before giving up on a race with a concurrent application.
const ATTEMPTS: u32 = 8;

/// Applying the support SQL (or the schema after it) failed.
///
/// Unlike [`GuardError`](crate::GuardError) this is a start-up error for operators: its message
/// includes the server's message.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SupportSqlError {
    /// Could not connect.
    #[error("connecting to apply the support SQL: {0}")]
    Connect(#[source] tokio_postgres::Error),
    /// A statement failed.
    #[error("applying {step}: {source}")]
    Apply {
        /// What was being applied (`support SQL`, `schema`, `role grants`).
        step: &'static str,
        /// The driver's error (with the server's message).
        #[source]
        source: tokio_postgres::Error,
    },
}

/// SQLSTATEs of races between concurrent applications: retried.
fn is_race(error: &tokio_postgres::Error) -> bool {
    error.code().is_some_and(|code| {
        *code == SqlState::UNIQUE_VIOLATION
            || *code == SqlState::DUPLICATE_OBJECT
            || *code == SqlState::T_R_SERIALIZATION_FAILURE
            || *code == SqlState::T_R_DEADLOCK_DETECTED
            || *code == SqlState::INTERNAL_ERROR // "tuple concurrently updated"
    })
}

/// Applies [`SUPPORT_SQL`] on `client` and grants `anon`, `authenticated` and `service_role` to
/// `login` (default: the session's own login), then runs `extra_sql` (may be empty), all in one
/// transaction under an advisory lock. Idempotent; retries races with concurrent application
/// (other databases of the same server included).
///
/// `client` must be a superuser (or, on Supabase, the `postgres` role).
pub async fn apply_support_sql_with(
    client: &Client,
    login: Option<&str>,
    extra_sql: &str,
) -> Result<(), SupportSqlError> {
    let mut attempt = 0;
    loop {
        attempt += 1;
        match apply_once(client, login, extra_sql).await {
            Ok(()) => return Ok(()),
            Err(error) => {
                let _ = client.batch_execute("ROLLBACK").await;
                let race = match &error {
                    SupportSqlError::Apply { source, .. } => is_race(source),
                    SupportSqlError::Connect(_) => false,
                };
                if !race || attempt >= ATTEMPTS {
                    return Err(error);
                }
                tracing::debug!(attempt, %error, "support SQL raced a concurrent application; retrying");
                tokio::time::sleep(Duration::from_millis(10 * u64::from(attempt))).await;
            }
        }
    }
}

/// [`apply_support_sql_with`] for the session's own login, without extra SQL.
pub async fn apply_support_sql(client: &Client) -> Result<(), SupportSqlError> {
    apply_support_sql_with(client, None, "").await
}

async fn apply_once(
    client: &Client,
    login: Option<&str>,
    extra_sql: &str,
) -> Result<(), SupportSqlError> {
    let step = |step: &'static str| move |source| SupportSqlError::Apply { step, source };
    client
        .batch_execute("BEGIN")
        .await
        .map_err(step("support SQL"))?;
    client
        .execute("SELECT pg_advisory_xact_lock($1)", &[&LOCK_KEY])
        .await
        .map_err(step("support SQL"))?;
    client
        .batch_execute(SUPPORT_SQL)
        .await
        .map_err(step("support SQL"))?;
    client
        .execute(
            "SELECT tenant_guard.grant_app_roles(coalesce($1, session_user))",
            &[&login],
        )
        .await
        .map_err(step("role grants"))?;
    if !extra_sql.trim().is_empty() {
        client
            .batch_execute(extra_sql)
            .await
            .map_err(step("schema"))?;
    }
    client
        .batch_execute("COMMIT")
        .await
        .map_err(step("support SQL"))?;
    Ok(())
}

/// Applies [`RATE_LIMIT_SQL`] on `client`, then lets `login` (default: the session's own login)
/// execute the limiter's functions, in one transaction under the support SQL's advisory lock.
/// Idempotent; retries races with a concurrent application.
///
/// `client` must be a superuser (the script creates the `tenant_guard_limiter` role). `login` is
/// the login of the [`PgRateLimiter`](crate::PgRateLimiter)'s connections, typically the pool's
/// `authenticator`; naming an app role (`anon`, `authenticated`, `service_role`) is refused, so
/// tenants' scoped transactions never reach the counters.
///
/// ```no_run
/// # async fn demo(admin: &tokio_postgres::Client) -> Result<(), Box<dyn std::error::Error>> {
/// tenant_guard_postgres::support::apply_rate_limit_sql(admin, Some("authenticator")).await?;
/// # Ok(())
/// # }
/// ```
pub async fn apply_rate_limit_sql(
    client: &Client,
    login: Option<&str>,
) -> Result<(), SupportSqlError> {
    let step = |step: &'static str| move |source| SupportSqlError::Apply { step, source };
    let mut attempt = 0;
    loop {
        attempt += 1;
        let result = async {
            client
                .batch_execute("BEGIN")
                .await
                .map_err(step("rate limit SQL"))?;
            client
                .execute("SELECT pg_advisory_xact_lock($1)", &[&LOCK_KEY])
                .await
                .map_err(step("rate limit SQL"))?;
            client
                .batch_execute(RATE_LIMIT_SQL)
                .await
                .map_err(step("rate limit SQL"))?;
            client
                .execute(
                    "SELECT tenant_guard.grant_rate_limiter(coalesce($1, session_user))",
                    &[&login],
                )
                .await
                .map_err(step("rate limiter grants"))?;
            client
                .batch_execute("COMMIT")
                .await
                .map_err(step("rate limit SQL"))
        }
        .await;
        let Err(error) = result else {
            return Ok(());
        };
        let _ = client.batch_execute("ROLLBACK").await;
        let race = matches!(&error, SupportSqlError::Apply { source, .. } if is_race(source));
        if !race || attempt >= ATTEMPTS {
            return Err(error);
        }
        tracing::debug!(attempt, %error, "rate limit SQL raced a concurrent application; retrying");
        tokio::time::sleep(Duration::from_millis(10 * u64::from(attempt))).await;
    }
}

/// Connects with `config` (without TLS), applies the support SQL granting the app roles to
/// `config`'s user, then `extra_sql` (your idempotent schema), in one transaction.
///
/// ```no_run
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// let config: tokio_postgres::Config = "postgres://postgres@localhost/app".parse()?;
/// tenant_guard_postgres::support::apply(&config, "CREATE TABLE IF NOT EXISTS notes (org_id uuid)").await?;
/// # Ok(())
/// # }
/// ```
pub async fn apply(config: &Config, extra_sql: &str) -> Result<(), SupportSqlError> {
    let (client, connection) = config
        .connect(NoTls)
        .await
        .map_err(SupportSqlError::Connect)?;
    let driver = tokio::spawn(async move {
        if let Err(error) = connection.await {
            tracing::debug!(%error, "support SQL connection ended with an error");
        }
    });
    let result = apply_support_sql_with(&client, config.get_user(), extra_sql).await;
    drop(client);
    let _ = driver.await;
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn script_is_transaction_safe_and_versioned() {
        // No statement that refuses to run in a transaction block.
        let upper = SUPPORT_SQL.to_uppercase();
        for forbidden in ["CREATE DATABASE", "VACUUM", "COMMIT;", "BEGIN;"] {
            assert!(!upper.contains(forbidden), "{forbidden}");
        }
        assert!(SUPPORT_SQL.contains(&format!("SELECT {SUPPORT_SQL_VERSION} $fn$")));
    }

    #[test]
    fn rate_limit_script_is_transaction_safe_and_locks_the_counters_away() {
        let upper = RATE_LIMIT_SQL.to_uppercase();
        for forbidden in ["CREATE DATABASE", "VACUUM", "COMMIT;", "BEGIN;"] {
            assert!(!upper.contains(forbidden), "{forbidden}");
        }
        assert!(RATE_LIMIT_SQL.contains(&format!("version {RATE_LIMIT_SQL_VERSION}")));
        // Functions are executable by PUBLIC unless revoked.
        assert_eq!(RATE_LIMIT_SQL.matches("FROM PUBLIC;").count(), 4);
        assert_eq!(
            RATE_LIMIT_SQL
                .matches("SET search_path = pg_catalog, pg_temp")
                .count(),
            2
        );
    }

    #[test]
    fn helpers_treat_empty_settings_as_null() {
        assert!(SUPPORT_SQL.contains("nullif(current_setting('tenant_guard.org_id', true), '')"));
        // Supabase's functions are created only when missing.
        for f in ["auth.uid()", "auth.role()", "auth.jwt()"] {
            assert!(SUPPORT_SQL.contains(&format!("to_regprocedure('{f}') IS NULL")));
        }
    }
}
