//! [`pool_options`]: a sqlx pool whose connections go back clean, and the release hook that does it.

use std::time::Duration;

use sqlx::pool::PoolConnectionMetadata;
use sqlx::postgres::{PgConnection, PgPoolOptions};
use sqlx::{Connection as _, Executor};

/// What the release hook runs: the session user back to the login (`SET SESSION AUTHORIZATION
/// DEFAULT`: with a superuser login, a handler's `SET SESSION AUTHORIZATION other` would
/// otherwise outlive every `RESET`, and the next request would run as `other`), every session
/// setting back to its value at connection start (`RESET ALL`; settings given in the startup
/// packet, e.g. `PgConnectOptions::options`, keep theirs), and the role back to the login
/// (`RESET ROLE`: `RESET ALL` leaves `role` alone).
///
/// The guard's own settings are transaction-local and never need this; it undoes what a
/// handler did at session level and committed (`SET search_path …`, `SET ROLE …`,
/// `SET SESSION AUTHORIZATION …`, `set_config(…, false)`). Prepared statements are kept (no
/// `DISCARD ALL`, which would break sqlx's statement cache). Then, as the tokio-postgres guard's
/// reset (`tenant_guard_postgres::SESSION_RESET_SQL`) does: no `WITH HOLD` cursor (`CLOSE ALL`),
/// no `LISTEN` (`UNLISTEN *`), no `currval`/`lastval` (`DISCARD SEQUENCES`). What no cheap
/// statement resets is checked afterwards ([`CHECK_SQL`]).
pub const RESET_SQL: &str = "SET SESSION AUTHORIZATION DEFAULT; RESET ALL; RESET ROLE; \
    CLOSE ALL; UNLISTEN *; DISCARD SEQUENCES";

/// The release hook's check, after [`RESET_SQL`]: releases session advisory locks and answers
/// `true` when the session still holds what the next request could see and no cheap statement
/// resets: an SQL-level `PREPARE` (sqlx's own statements are protocol-level, not `from_sql`) or
/// a temporary object (any temporary schema: `pg_my_temp_schema()` is `0` until the session
/// first committed one). Such a connection is closed. The same check as the tokio-postgres
/// guard's `SESSION_CHECK_SQL`, in one boolean column; every name schema-qualified. Skipped on a
/// connection without a statement cache (`statement_cache_capacity(0)`, the setting behind a
/// transaction-mode pooler), as the tokio-postgres guard skips it in pooler mode.
pub const CHECK_SQL: &str = "SELECT EXISTS (SELECT FROM pg_catalog.pg_prepared_statements AS p \
    WHERE p.from_sql) OR pg_catalog.pg_my_temp_schema() OPERATOR(pg_catalog.<>) 0 \
    FROM (SELECT pg_catalog.pg_advisory_unlock_all()) AS unlocked";

/// How long the release hook waits for the reset (and for whatever a cancelled statement still
/// runs before it) before closing the connection instead.
pub const RELEASE_TIMEOUT: Duration = Duration::from_secs(5);

/// Pool options for [`SqlxGuard`](crate::SqlxGuard): sqlx's defaults plus an `after_release`
/// hook running [`RESET_SQL`] and [`CHECK_SQL`] on every connection going back to the pool,
/// closing the connection instead when the check finds state left, or the reset or check fails
/// or takes longer than [`RELEASE_TIMEOUT`].
///
/// sqlx itself rolls back a dropped transaction (queued, flushed before the reset runs) and
/// pings on release, closing broken connections; the hook adds the session reset. Set session
/// defaults through the connect options (startup packet) rather than `after_connect`, so the
/// reset keeps them.
///
/// ```no_run
/// use std::time::Duration;
/// use sqlx::postgres::PgConnectOptions;
///
/// # async fn demo() -> Result<(), sqlx::Error> {
/// let connect: PgConnectOptions = "postgres://authenticator@db.internal/app".parse()?;
/// let pool = tenant_guard_sqlx::pool_options()
///     .max_connections(16)
///     .acquire_timeout(Duration::from_secs(5))
///     // Behind a transaction-mode pooler (PgBouncer): no named prepared statements.
///     .connect_with(connect.statement_cache_capacity(0).options([("statement_timeout", "10s")]))
///     .await?;
/// # Ok(())
/// # }
/// ```
pub fn pool_options() -> PgPoolOptions {
    PgPoolOptions::new().after_release(release_hook)
}

/// The `after_release` hook of [`pool_options`]: `Ok(true)` keeps the connection, `Ok(false)`
/// closes it.
pub fn release_hook(
    conn: &mut PgConnection,
    _meta: PoolConnectionMetadata,
) -> futures_util::future::BoxFuture<'_, Result<bool, sqlx::Error>> {
    Box::pin(reset(conn))
}

async fn reset(conn: &mut PgConnection) -> Result<bool, sqlx::Error> {
    let reset_and_check = async {
        conn.execute(RESET_SQL).await?;
        // The check is a cached statement (the pg_prepared_statements scan, parsed and planned
        // anew, would cost the server more than the whole transaction). With the statement
        // cache off (`statement_cache_capacity(0)`, behind a transaction-mode pooler) nothing is
        // ever cached: a named check would stay prepared on the pooler's shared server
        // connection, and its answer could come from another client's session anyway. So the
        // check runs only on connections whose cache holds statements (the guard's scoping
        // statement, after the first guarded transaction).
        if conn.cached_statements_size() == 0 {
            return Ok(false);
        }
        sqlx::query_scalar::<_, bool>(CHECK_SQL)
            .fetch_one(&mut *conn)
            .await
    };
    match tokio::time::timeout(RELEASE_TIMEOUT, reset_and_check).await {
        Ok(Ok(false)) => Ok(true),
        Ok(Ok(true)) => {
            tracing::debug!(
                "the transaction left session state (an SQL PREPARE, a temporary object): \
                 closing the connection"
            );
            Ok(false)
        }
        Ok(Err(error)) => {
            tracing::warn!(%error, "session reset failed; the connection is closed");
            Ok(false)
        }
        Err(_) => {
            tracing::warn!("session reset timed out; the connection is closed");
            Ok(false)
        }
    }
}
