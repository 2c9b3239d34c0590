//! The closure forms: check out, scope, run, commit on `Ok`, roll back on `Err`.

use tenant_guard_core::{OrgId, Principal, ServiceContext};

use crate::error::GuardError;
use crate::options::ScopeOptions;
use crate::pool::TenantPool;
use crate::tx::TenantTx;

/// Runs `f` in a transaction scoped to `principal`'s org and role; commits when it returns `Ok`,
/// rolls back when it returns `Err` (or panics, or is cancelled).
///
/// `principal` must come from a verifier (a bad token never costs a connection). The closure's
/// error type passes through; it only needs `From<GuardError>` for the guard's own failures
/// (pool timeout, scoping, commit). The returned future is `Send` when the closure's is, so it
/// works in axum handlers and `tokio::spawn`.
///
/// ```no_run
/// use tenant_guard_core::Principal;
/// use tenant_guard_postgres::{GuardError, TenantPool, with_tenant_guard};
///
/// async fn project_names(pool: &TenantPool, principal: &Principal) -> Result<Vec<String>, GuardError> {
///     with_tenant_guard(pool, principal, async |tx| {
///         // Only the principal's org is visible: RLS filters, not this query.
///         let rows = tx.query("SELECT name FROM projects ORDER BY name", &[]).await?;
///         Ok(rows.iter().map(|r| r.get(0)).collect())
///     })
///     .await
/// }
/// ```
pub async fn with_tenant_guard<T, E, F>(
    pool: &TenantPool,
    principal: &Principal,
    f: F,
) -> Result<T, E>
where
    F: AsyncFnOnce(&mut TenantTx) -> Result<T, E>,
    E: From<GuardError>,
{
    with_tenant_guard_options(pool, principal, ScopeOptions::default(), f).await
}

/// [`with_tenant_guard`] with [`ScopeOptions`] (request id, read-only).
pub async fn with_tenant_guard_options<T, E, F>(
    pool: &TenantPool,
    principal: &Principal,
    options: ScopeOptions,
    f: F,
) -> Result<T, E>
where
    F: AsyncFnOnce(&mut TenantTx) -> Result<T, E>,
    E: From<GuardError>,
{
    let tx = pool.begin(principal, options).await?;
    run(tx, f).await
}

/// Runs `f` as the service role, which bypasses Row Level Security: for jobs that must cross
/// orgs. Requires a [`ServiceContext`] (built in code with a `'static` reason, never from a
/// request) and emits an audit event on the `tenant_guard::audit` target at the start and end.
///
/// Most jobs work for one org: use [`with_org_job`] for those.
///
/// ```no_run
/// use tenant_guard_core::ServiceContext;
/// use tenant_guard_postgres::{GuardError, TenantPool, with_service_role};
///
/// async fn purge(pool: &TenantPool) -> Result<u64, GuardError> {
///     let job = ServiceContext::new("nightly-purge").with_job_id("2025-01-01");
///     with_service_role(pool, &job, async |tx| {
///         tx.execute("DELETE FROM sessions WHERE expires_at < now()", &[]).await
///     })
///     .await
/// }
/// ```
pub async fn with_service_role<T, E, F>(
    pool: &TenantPool,
    context: &ServiceContext,
    f: F,
) -> Result<T, E>
where
    F: AsyncFnOnce(&mut TenantTx) -> Result<T, E>,
    E: From<GuardError>,
{
    let tx = pool
        .begin_service_role(context, ScopeOptions::default())
        .await?;
    run(tx, f).await
}

/// Runs `f` for a background job acting for one org, under Row Level Security exactly like a
/// user of `org_id` (see [`TenantPool::begin_org_job`]). Audited like [`with_service_role`], but it
/// sees only that org's rows.
///
/// ```no_run
/// use tenant_guard_core::ServiceContext;
/// use tenant_guard_postgres::{GuardError, TenantPool, with_org_job};
///
/// async fn recount(pool: &TenantPool, org: uuid::Uuid) -> Result<i64, GuardError> {
///     let job = ServiceContext::new("recount-projects");
///     with_org_job(pool, &job, org, async |tx| {
///         Ok(tx.query_one("SELECT count(*) FROM projects", &[]).await?.get(0))
///     })
///     .await
/// }
/// ```
pub async fn with_org_job<T, E, F>(
    pool: &TenantPool,
    context: &ServiceContext,
    org_id: impl Into<OrgId>,
    f: F,
) -> Result<T, E>
where
    F: AsyncFnOnce(&mut TenantTx) -> Result<T, E>,
    E: From<GuardError>,
{
    let tx = pool
        .begin_org_job(context, org_id, ScopeOptions::default())
        .await?;
    run(tx, f).await
}

/// Runs `f`, then commits or rolls back. A panic or cancellation drops `tx`, whose drop rolls back.
async fn run<T, E, F>(mut tx: TenantTx, f: F) -> Result<T, E>
where
    F: AsyncFnOnce(&mut TenantTx) -> Result<T, E>,
    E: From<GuardError>,
{
    match f(&mut tx).await {
        Ok(value) => {
            tx.commit().await?;
            Ok(value)
        }
        Err(error) => {
            // Never fails; the closure's error is the one that matters.
            let _ = tx.rollback().await;
            Err(error)
        }
    }
}
