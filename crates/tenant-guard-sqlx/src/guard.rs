//! [`SqlxGuard`]: a sqlx pool that hands out transactions scoped to a verified principal, and the
//! closure forms over it.

use std::fmt;
use std::marker::PhantomData;
use std::ops::{Deref, DerefMut};

use futures_util::future::BoxFuture;
use sqlx::postgres::PgConnection;
use sqlx::{PgPool, Postgres, Transaction};
use tenant_guard_core::scope::{Scope, ScopeOptions, ScopeSettings};
use tenant_guard_core::{OrgId, Principal, Role, ServiceContext};
use tracing::Instrument;

use crate::error::SqlxGuardError;

/// A scoped sqlx transaction: what [`SqlxGuard::begin`] returns and the closures of
/// [`with_tenant_guard`] receive. Run statements on `&mut **tx` (or `tx.as_mut()`), with
/// `sqlx::query`, `query_as` or the compile-time checked `query!`/`query_as!` macros.
pub type TenantTransaction = Transaction<'static, Postgres>;

/// The scoped transaction the closures of [`with_tenant_guard`] and friends receive: run
/// statements on `&mut **tx` (it dereferences to the connection, like a `&mut Transaction`).
///
/// `'a` is the closure's borrows: the boxed future may use references to the caller's locals.
/// The guard commits or rolls back when the closure's future ends;
/// [`transaction`](Self::transaction) gives the sqlx transaction itself (savepoints).
#[derive(Debug)]
pub struct GuardedTx<'a> {
    tx: TenantTransaction,
    _borrows: PhantomData<&'a ()>,
}

impl GuardedTx<'_> {
    /// The sqlx transaction (for nested transactions: `tx.transaction().begin()` opens a
    /// savepoint).
    pub fn transaction(&mut self) -> &mut TenantTransaction {
        &mut self.tx
    }
}

impl Deref for GuardedTx<'_> {
    type Target = PgConnection;

    fn deref(&self) -> &PgConnection {
        &self.tx
    }
}

impl DerefMut for GuardedTx<'_> {
    fn deref_mut(&mut self) -> &mut PgConnection {
        &mut self.tx
    }
}

fn role(name: &str) -> Role {
    Role::new(name).unwrap_or_else(|_| unreachable!("{name} is a plain role name"))
}

/// A [`PgPool`] that only hands out transactions scoped to a verified principal's org and role
/// (or the audited service paths), exactly as the tokio-postgres guard scopes them: `BEGIN`
/// (`BEGIN READ ONLY` when asked), then the one scoping statement of
/// [`tenant_guard_core::scope`] setting `role`, the verified claims, `sub`, the org id and the
/// request id transaction-locally. Both go out as one simple-protocol query (one round trip),
/// the values as escaped string literals (`E'…'`, quotes and backslashes doubled; exact whatever
/// `standard_conforming_strings` says); a value holding a NUL, which no literal can carry, is
/// sent as a bound parameter after its own `BEGIN` instead, and the server refuses it.
///
/// Build the pool with [`pool_options`](crate::pool_options) so connections also go back with
/// their session reset. Cheap to clone.
///
/// ```no_run
/// use tenant_guard_sqlx::{SqlxGuard, SqlxGuardError, with_tenant_guard};
///
/// # async fn demo(principal: &tenant_guard_core::Principal) -> Result<(), SqlxGuardError> {
/// let pool = tenant_guard_sqlx::pool_options()
///     .connect("postgres://authenticator@localhost/app")
///     .await?;
/// let guard = SqlxGuard::new(pool);
/// let names: Vec<String> = with_tenant_guard(&guard, principal, |tx| Box::pin(async move {
///     // No `WHERE org_id = …`: Row Level Security only lets the principal's org through.
///     Ok::<_, SqlxGuardError>(
///         sqlx::query_scalar("SELECT name FROM projects ORDER BY name")
///             .fetch_all(&mut **tx)
///             .await?,
///     )
/// }))
/// .await?;
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct SqlxGuard {
    pool: PgPool,
    user_roles: Vec<Role>,
    service_role: Role,
    job_role: Role,
    unnamed_statements: bool,
    scope_settings: ScopeSettings,
}

impl fmt::Debug for SqlxGuard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqlxGuard")
            .field("size", &self.pool.size())
            .field("idle", &self.pool.num_idle())
            .field("user_roles", &self.user_roles)
            .field("service_role", &self.service_role)
            .finish_non_exhaustive()
    }
}

/// Configures a [`SqlxGuard`]; see [`SqlxGuard::builder`].
#[derive(Debug)]
pub struct SqlxGuardBuilder {
    guard: SqlxGuard,
}

impl SqlxGuardBuilder {
    /// A second allowlist behind the verifier's: a principal with any other role is refused
    /// ([`SqlxGuardError::RoleNotAllowed`], 403) before a connection is checked out. Default:
    /// `authenticated`, `anon` (as the tokio-postgres guard).
    #[must_use]
    pub fn user_roles(mut self, roles: impl IntoIterator<Item = Role>) -> Self {
        self.guard.user_roles = roles.into_iter().collect();
        self
    }

    /// The role of [`SqlxGuard::begin_service_role`] (default `service_role`).
    #[must_use]
    pub fn service_role(mut self, role: Role) -> Self {
        self.guard.service_role = role;
        self
    }

    /// The role of [`SqlxGuard::begin_org_job`] (default `authenticated`).
    #[must_use]
    pub fn job_role(mut self, role: Role) -> Self {
        self.guard.job_role = role;
        self
    }

    /// Sends the guard's scoping statement unnamed (`persistent(false)`: parsed each time, never
    /// left prepared on the server) on the bound-parameter path (a value with a NUL; the usual
    /// path is a simple query, which prepares nothing), for a transaction-mode pooler without protocol-level
    /// prepared statements (PgBouncer before 1.21, or `max_prepared_statements = 0`). Connect
    /// with `statement_cache_capacity(0)` and run your own queries with `.persistent(false)`
    /// too: sqlx names every persistent statement even when it does not cache it. Default off.
    #[must_use]
    pub fn unnamed_statements(mut self, unnamed: bool) -> Self {
        self.guard.unnamed_statements = unnamed;
        self
    }

    /// Which settings every transaction sets beyond `role`, `request.jwt.claims` and
    /// `tenant_guard.org_id` (default: none; see [`ScopeSettings`]): opt into
    /// `request.jwt.claim.sub`/`request.jwt.claim.role` for SQL that reads them directly and into
    /// `tenant_guard.request_id` for audit triggers. `auth.uid()`, `auth.role()`, `auth.jwt()`,
    /// `tenant_guard.org_id()` and `tenant_guard.user_id()` answer the same in every mode.
    #[must_use]
    pub fn scope_settings(mut self, settings: ScopeSettings) -> Self {
        self.guard.scope_settings = settings;
        self
    }

    /// The guard.
    pub fn build(self) -> SqlxGuard {
        self.guard
    }
}

impl SqlxGuard {
    /// A guard over `pool` with the default roles.
    pub fn new(pool: PgPool) -> Self {
        Self::builder(pool).build()
    }

    /// Starts configuring a guard over `pool` (build it with
    /// [`pool_options`](crate::pool_options)).
    pub fn builder(pool: PgPool) -> SqlxGuardBuilder {
        SqlxGuardBuilder {
            guard: Self {
                pool,
                user_roles: vec![role("authenticated"), role("anon")],
                service_role: role("service_role"),
                job_role: role("authenticated"),
                unnamed_statements: false,
                scope_settings: ScopeSettings::default(),
            },
        }
    }

    /// The pool (for migrations and other set-up as the pool's login: nothing guarded).
    pub fn dangerous_pool(&self) -> &PgPool {
        &self.pool
    }

    /// Begins a transaction scoped to `principal`'s org and role.
    ///
    /// Fails with [`SqlxGuardError::RoleNotAllowed`], before touching the pool, when the
    /// principal's role is not one of the guard's [`user_roles`](SqlxGuardBuilder::user_roles);
    /// with [`SqlxGuardError::PoolTimeout`] when no connection frees up in time. Dropping the
    /// transaction rolls back; commit it with `tx.commit().await`.
    pub async fn begin(
        &self,
        principal: &Principal,
        options: ScopeOptions,
    ) -> Result<TenantTransaction, SqlxGuardError> {
        if !self.user_roles.contains(principal.role()) {
            tracing::warn!(
                role = %principal.role(),
                "refusing a principal whose role is not one of the guard's user roles"
            );
            return Err(SqlxGuardError::RoleNotAllowed(principal.role().to_string()));
        }
        let (request_id, read_only) = options.into_parts();
        self.scoped(Scope::principal(principal, request_id), read_only)
            .await
    }

    /// Begins a transaction as the service role (which bypasses RLS): the audited path for work
    /// that must cross orgs. Emits an `info` event on the `tenant_guard::audit` target with the
    /// context's reason and job id.
    pub async fn begin_service_role(
        &self,
        context: &ServiceContext,
        options: ScopeOptions,
    ) -> Result<TenantTransaction, SqlxGuardError> {
        tracing::info!(
            target: "tenant_guard::audit",
            reason = context.reason(),
            job_id = context.job_id(),
            role = %self.service_role,
            backend = "sqlx",
            "service-role transaction (bypasses row level security)"
        );
        let (request_id, read_only) = options.into_parts();
        let scope = Scope::service(context, self.service_role.clone(), request_id);
        self.scoped(scope, read_only).await
    }

    /// Begins a transaction for a background job acting for one org: scoped exactly like a user
    /// of `org_id` (the job role, under RLS), with claims naming the job. Emits an audit event.
    pub async fn begin_org_job(
        &self,
        context: &ServiceContext,
        org_id: impl Into<OrgId>,
        options: ScopeOptions,
    ) -> Result<TenantTransaction, SqlxGuardError> {
        let org_id = org_id.into();
        tracing::info!(
            target: "tenant_guard::audit",
            reason = context.reason(),
            job_id = context.job_id(),
            %org_id,
            role = %self.job_role,
            backend = "sqlx",
            "org-scoped job transaction"
        );
        let principal = context.org_principal(org_id, self.job_role.clone());
        let (request_id, read_only) = options.into_parts();
        self.scoped(Scope::principal(&principal, request_id), read_only)
            .await
    }

    async fn scoped(
        &self,
        scope: Scope,
        read_only: bool,
    ) -> Result<TenantTransaction, SqlxGuardError> {
        let span = tracing::info_span!(
            "tenant_tx",
            backend = "sqlx",
            role = %scope.role(),
            org_id = scope.org_id().map(|o| o.to_string()).unwrap_or_default(),
            read_only,
            service_reason = scope.service_reason(),
            job_id = scope.service_job_id(),
        );
        async {
            // `BEGIN` and the scoping statement with bound parameters, never the values as
            // literals in the SQL text: sqlx logs statement texts at debug level, and the server
            // logs the text of a failing statement, so literals would put the claims in both.
            let begin = if read_only {
                "BEGIN READ ONLY"
            } else {
                "BEGIN"
            };
            let mut tx = begin_uncancelled(&self.pool, begin)
                .await
                .map_err(SqlxGuardError::from)?;
            let mut buf = [0u8; 36];
            // Behind a transaction-mode pooler the release hook's reset may run on another
            // server connection: overwrite the per-claim settings every time instead.
            let settings = if self.unnamed_statements {
                self.scope_settings.claim_settings(true)
            } else {
                self.scope_settings
            };
            let shape = scope.shape(settings);
            let params = shape.params(scope.values(&mut buf));
            let mut query = sqlx::query(shape.sql());
            for value in params.as_slice() {
                query = query.bind(*value);
            }
            // On failure `tx` is dropped: sqlx queues the ROLLBACK, the release hook resets.
            query
                .persistent(!self.unnamed_statements)
                .execute(&mut *tx)
                .await
                .map_err(SqlxGuardError::from_scope)?;
            Ok(tx)
        }
        .instrument(span)
        .await
    }
}

/// `pool.begin_with(sql)` on a task of its own, so dropping the caller's future cannot cut it
/// short: sqlx counts the transaction only once `BEGIN` answered, and a begin dropped while
/// waiting for that answer would return its connection to the pool inside the open transaction
/// (the release hook's reset then runs in it, and succeeds). Run to the end, a transaction nobody
/// waits for any more is dropped, which rolls it back.
async fn begin_uncancelled(
    pool: &PgPool,
    sql: impl Into<std::borrow::Cow<'static, str>>,
) -> Result<TenantTransaction, sqlx::Error> {
    let pool = pool.clone();
    let sql = sql.into();
    tokio::spawn(async move { pool.begin_with(sql).await })
        .await
        .unwrap_or(Err(sqlx::Error::WorkerCrashed))
}

/// Runs `f` in a transaction scoped to `principal`'s org and role; commits when it returns `Ok`,
/// rolls back when it returns `Err` (or panics, or is cancelled: the transaction is dropped and
/// sqlx rolls it back before the connection is reused).
///
/// The closure's error type passes through; it only needs `From<SqlxGuardError>`. It returns a
/// boxed future (`Box::pin(async move { … })`): sqlx's executor traits are generic over the
/// borrow's lifetime, which rustc cannot yet prove `Send` through an `async` closure, and a
/// boxed future keeps the whole call `Send` (axum handlers, `tokio::spawn`).
///
/// ```no_run
/// use tenant_guard_sqlx::{SqlxGuard, SqlxGuardError, with_tenant_guard};
///
/// async fn rename(guard: &SqlxGuard, p: &tenant_guard_core::Principal, id: uuid::Uuid) -> Result<u64, SqlxGuardError> {
///     with_tenant_guard(guard, p, |tx| Box::pin(async move {
///         let done = sqlx::query("UPDATE projects SET name = 'renamed' WHERE id = $1")
///             .bind(id)
///             .execute(&mut **tx)
///             .await?;
///         Ok(done.rows_affected())
///     }))
///     .await
/// }
/// ```
pub async fn with_tenant_guard<'a, T, E, F>(
    guard: &SqlxGuard,
    principal: &Principal,
    f: F,
) -> Result<T, E>
where
    F: for<'c> FnOnce(&'c mut GuardedTx<'a>) -> BoxFuture<'c, Result<T, E>>,
    E: From<SqlxGuardError>,
{
    with_tenant_guard_options(guard, principal, ScopeOptions::default(), f).await
}

/// [`with_tenant_guard`] with [`ScopeOptions`] (request id, read-only).
pub async fn with_tenant_guard_options<'a, T, E, F>(
    guard: &SqlxGuard,
    principal: &Principal,
    options: ScopeOptions,
    f: F,
) -> Result<T, E>
where
    F: for<'c> FnOnce(&'c mut GuardedTx<'a>) -> BoxFuture<'c, Result<T, E>>,
    E: From<SqlxGuardError>,
{
    let tx = guard.begin(principal, options).await?;
    run(tx, f).await
}

/// Runs `f` as the service role (bypasses RLS), audited; see [`SqlxGuard::begin_service_role`].
pub async fn with_service_role<'a, T, E, F>(
    guard: &SqlxGuard,
    context: &ServiceContext,
    f: F,
) -> Result<T, E>
where
    F: for<'c> FnOnce(&'c mut GuardedTx<'a>) -> BoxFuture<'c, Result<T, E>>,
    E: From<SqlxGuardError>,
{
    let tx = guard
        .begin_service_role(context, ScopeOptions::default())
        .await?;
    run(tx, f).await
}

/// Runs `f` for a job acting for one org, under RLS; see [`SqlxGuard::begin_org_job`].
pub async fn with_org_job<'a, T, E, F>(
    guard: &SqlxGuard,
    context: &ServiceContext,
    org_id: impl Into<OrgId>,
    f: F,
) -> Result<T, E>
where
    F: for<'c> FnOnce(&'c mut GuardedTx<'a>) -> BoxFuture<'c, Result<T, E>>,
    E: From<SqlxGuardError>,
{
    let tx = guard
        .begin_org_job(context, org_id, ScopeOptions::default())
        .await?;
    run(tx, f).await
}

async fn run<'a, T, E, F>(tx: TenantTransaction, f: F) -> Result<T, E>
where
    F: for<'c> FnOnce(&'c mut GuardedTx<'a>) -> BoxFuture<'c, Result<T, E>>,
    E: From<SqlxGuardError>,
{
    let mut guarded = GuardedTx {
        tx,
        _borrows: PhantomData,
    };
    let result = f(&mut guarded).await;
    let tx = guarded.tx;
    match result {
        Ok(value) => {
            tx.commit().await.map_err(SqlxGuardError::from)?;
            Ok(value)
        }
        Err(error) => {
            // The closure's error is the one that matters; a failed rollback leaves the
            // connection to sqlx's release check, which closes it.
            let _ = tx.rollback().await;
            Err(error)
        }
    }
}
