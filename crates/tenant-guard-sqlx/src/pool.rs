//! [`pool_options`]: a sqlx pool whose connections go back clean, and the release hook that does it.

use std::time::Duration;

use sqlx::Executor;
use sqlx::pool::PoolConnectionMetadata;
use sqlx::postgres::{PgConnection, PgPoolOptions};

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
/// `DISCARD ALL`, which would break sqlx's statement cache). The tokio-postgres guard's reset
/// (`tenant_guard_postgres::SESSION_RESET_SQL`) starts the same way.
pub const RESET_SQL: &str = "SET SESSION AUTHORIZATION DEFAULT; RESET ALL; RESET ROLE";

/// How long the release hook waits for the reset (and for whatever a cancelled statement still
/// runs before it) before closing the connection instead.
pub const RELEASE_TIMEOUT: Duration = Duration::from_secs(5);

/// Pool options for [`SqlxGuard`](crate::SqlxGuard): sqlx's defaults plus an `after_release`
/// hook running [`RESET_SQL`] on every connection going back to the pool, closing the
/// connection instead when the reset fails or takes longer than [`RELEASE_TIMEOUT`].
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
    match tokio::time::timeout(RELEASE_TIMEOUT, conn.execute(RESET_SQL)).await {
        Ok(Ok(_)) => Ok(true),
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
