//! [`TenantPool`]: a deadpool-postgres pool that only hands out scoped transactions.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use deadpool_postgres::{
    ClientWrapper, Hook, HookError, Manager, ManagerConfig, Pool, PoolError, QueueMode,
    RecyclingMethod, Runtime,
};
use tenant_guard_core::{OrgId, Principal, Role, ServiceContext};
use tokio_postgres::Socket;
use tokio_postgres::tls::{MakeTlsConnect, TlsConnect};

use crate::affinity::{Affinity, AffinityStats, Checkout};
use crate::error::GuardError;
use crate::login::{LoginPolicy, LoginReport};
use crate::options::ScopeOptions;
use crate::pooler::{self, POOLER_ENV, Pooler};
use crate::replica::{DEFAULT_READ_YOUR_WRITES, ReplicaFallback, Replicas};
use crate::reset::{SESSION_CHECK_SQL, SessionReset};
use crate::scope::{Scope, ScopeSettings};
use crate::tls::{DatabaseUrl, TlsOptions, config_error as tls_config_error};
use crate::tx::{Reset, TenantTx, TxSettings};

/// Default maximum number of pooled connections.
pub const DEFAULT_MAX_SIZE: usize = 16;
/// Default time a checkout waits for a free connection before [`GuardError::PoolTimeout`].
pub const DEFAULT_WAIT_TIMEOUT: Duration = Duration::from_secs(5);
/// Default time allowed to open a new connection.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Prefix of the post-create hook's refusal message, to recognise it in pool errors.
const INSECURE_LOGIN: &str = "insecure login: ";

/// A pool of Postgres connections that only hands out [`TenantTx`]s: transactions scoped to a
/// verified principal's org and role (or the audited service paths).
///
/// It never hands out a raw client, so an unscoped query cannot be written by accident; the one
/// escape hatch is [`dangerous_unscoped_connection`](Self::dangerous_unscoped_connection).
/// Cheap to clone (an `Arc`), `Send + Sync`.
///
/// ```no_run
/// use std::time::Duration;
/// use tenant_guard_postgres::TenantPool;
///
/// # fn demo() -> Result<(), tenant_guard_postgres::GuardError> {
/// let pool = TenantPool::builder_from_url("postgres://authenticator:secret@db.internal/app")?
///     .max_size(16)
///     .wait_timeout(Duration::from_secs(2))
///     .statement_timeout(Duration::from_secs(10))
///     .build()?;
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct TenantPool {
    inner: Arc<Inner>,
}

struct Inner {
    /// The primary's connections, idle ones kept by role (see [`crate::affinity`]).
    pool: Arc<Affinity>,
    /// Read replicas for `READ ONLY` transactions (see [`crate::replica`]).
    replicas: Option<Replicas>,
    settings: Arc<TxSettings>,
    user_roles: Vec<Role>,
    service_role: Role,
    job_role: Role,
    max_size: usize,
    session_reset: SessionReset,
}

impl fmt::Debug for TenantPool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TenantPool")
            .field("status", &self.status())
            .field("user_roles", &self.inner.user_roles)
            .field("service_role", &self.inner.service_role)
            .field("pooler", &self.inner.settings.pooler)
            .finish_non_exhaustive()
    }
}

/// A snapshot of the pool's occupancy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct PoolStatus {
    /// The configured maximum.
    pub max_size: usize,
    /// Connections currently open (idle or in use).
    pub size: usize,
    /// Idle connections ready for a checkout.
    pub available: usize,
    /// Callers waiting for a connection.
    pub waiting: usize,
}

/// Configures a [`TenantPool`]; see [`TenantPool::builder`].
pub struct TenantPoolBuilder {
    config: tokio_postgres::Config,
    tls: TlsOptions,
    max_size: usize,
    wait_timeout: Duration,
    connect_timeout: Duration,
    statement_timeout: Option<Duration>,
    user_roles: Vec<Role>,
    service_role: Role,
    job_role: Role,
    login_policy: LoginPolicy,
    session_reset: SessionReset,
    pooler: Pooler,
    scope_settings: ScopeSettings,
    replicas: Vec<tokio_postgres::Config>,
    replica_fallback: ReplicaFallback,
    read_your_writes: Duration,
    role_affinity: bool,
}

impl fmt::Debug for TenantPoolBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // tokio_postgres::Config's Debug redacts the password.
        f.debug_struct("TenantPoolBuilder")
            .field("config", &self.config)
            .field("tls", &self.tls)
            .field("max_size", &self.max_size)
            .field("wait_timeout", &self.wait_timeout)
            .field("statement_timeout", &self.statement_timeout)
            .field("user_roles", &self.user_roles)
            .field("login_policy", &self.login_policy)
            .field("session_reset", &self.session_reset)
            .field("pooler", &self.pooler)
            .field("scope_settings", &self.scope_settings)
            .field("replicas", &self.replicas.len())
            .field("replica_fallback", &self.replica_fallback)
            .field("role_affinity", &self.role_affinity)
            .finish_non_exhaustive()
    }
}

fn role(name: &str) -> Role {
    Role::new(name).unwrap_or_else(|_| unreachable!("{name} is a plain role name"))
}

impl TenantPool {
    /// Starts configuring a pool for `config` (host, port, database, login).
    pub fn builder(config: tokio_postgres::Config) -> TenantPoolBuilder {
        TenantPoolBuilder {
            tls: TlsOptions::from_config(&config),
            config,
            max_size: DEFAULT_MAX_SIZE,
            wait_timeout: DEFAULT_WAIT_TIMEOUT,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            statement_timeout: None,
            user_roles: vec![role("authenticated"), role("anon")],
            service_role: role("service_role"),
            job_role: role("authenticated"),
            login_policy: LoginPolicy::default(),
            session_reset: SessionReset::default(),
            scope_settings: ScopeSettings::default(),
            pooler: Pooler::None,
            replicas: Vec::new(),
            replica_fallback: ReplicaFallback::default(),
            read_your_writes: DEFAULT_READ_YOUR_WRITES,
            role_affinity: true,
        }
    }

    /// Like [`builder`](Self::builder), from a URL (`postgres://user:password@host:port/db`) or a
    /// `key=value` connection string. The error never repeats the URL (it may hold a password).
    ///
    /// TLS follows libpq's `sslmode` and `sslrootcert` in the URL (see [`crate::tls`]):
    /// [`build`](TenantPoolBuilder::build) then connects with TLS as asked, e.g.
    /// `postgres://authenticator@db.example.com/app?sslmode=verify-full` checks the server's
    /// certificate against the system's CAs and its host name.
    ///
    /// A URL may also say `pooler=transaction` (see [`Pooler`]): that parameter is removed
    /// before the URL is parsed and sets [`pooler`](TenantPoolBuilder::pooler).
    pub fn builder_from_url(url: &str) -> Result<TenantPoolBuilder, GuardError> {
        let (url, mode) = pooler::split_url(url)?;
        let url: DatabaseUrl = url.parse().map_err(tls_config_error)?;
        let (config, tls) = url.into_parts();
        let mut builder = Self::builder(config);
        builder.tls = tls;
        Ok(match mode {
            Some(mode) => builder.pooler(mode),
            None => builder,
        })
    }

    /// Checks out a connection for `principal`: the transaction is scoped to its org and role.
    ///
    /// Only the checkout happens here; `BEGIN` and the scoping travel with the first statement
    /// (see [`TenantTx`]). Fails with [`GuardError::RoleNotAllowed`], before touching the pool,
    /// when the principal's role is not one of the pool's
    /// [`user_roles`](TenantPoolBuilder::user_roles); with [`GuardError::PoolTimeout`] when no
    /// connection frees up within the wait timeout.
    pub async fn begin(
        &self,
        principal: &Principal,
        options: ScopeOptions,
    ) -> Result<TenantTx, GuardError> {
        if !self.inner.user_roles.contains(principal.role()) {
            tracing::warn!(
                role = %principal.role(),
                "refusing a principal whose role is not one of the pool's user roles"
            );
            return Err(GuardError::RoleNotAllowed(principal.role().to_string()));
        }
        let primary = options.is_primary();
        let (request_id, read_only) = options.into_parts();
        let scope = Scope::principal(principal, request_id);
        self.checkout(scope, read_only, primary).await
    }

    /// Checks out a connection running as the service role (which bypasses RLS): the audited
    /// path for work that must cross orgs. Prefer [`with_service_role`](crate::with_service_role)
    /// or, for work on one org, [`begin_org_job`](Self::begin_org_job).
    ///
    /// Emits an `info` event on the `tenant_guard::audit` target with the context's reason and job
    /// id, and another when the transaction ends.
    pub async fn begin_service_role(
        &self,
        context: &ServiceContext,
        options: ScopeOptions,
    ) -> Result<TenantTx, GuardError> {
        tracing::info!(
            target: "tenant_guard::audit",
            reason = context.reason(),
            job_id = context.job_id(),
            role = %self.inner.service_role,
            "service-role transaction (bypasses row level security)"
        );
        let primary = options.is_primary();
        let (request_id, read_only) = options.into_parts();
        let scope = Scope::service(context, self.inner.service_role.clone(), request_id);
        self.checkout(scope, read_only, primary).await
    }

    /// Checks out a connection for a background job acting for one org: scoped exactly like a
    /// user of `org_id` (the job role, `authenticated` by default, under RLS), with claims naming
    /// the job (`sub` = `service:<reason>`). Emits an audit event.
    ///
    /// Policies that call `auth.uid()` (which casts `sub` to `uuid`) raise an error for such a
    /// job: per-user tables are not for org jobs.
    pub async fn begin_org_job(
        &self,
        context: &ServiceContext,
        org_id: impl Into<OrgId>,
        options: ScopeOptions,
    ) -> Result<TenantTx, GuardError> {
        let org_id = org_id.into();
        tracing::info!(
            target: "tenant_guard::audit",
            reason = context.reason(),
            job_id = context.job_id(),
            %org_id,
            role = %self.inner.job_role,
            "org-scoped job transaction"
        );
        let principal = context.org_principal(org_id, self.inner.job_role.clone());
        let primary = options.is_primary();
        let (request_id, read_only) = options.into_parts();
        let scope = Scope::principal(&principal, request_id);
        self.checkout(scope, read_only, primary).await
    }

    /// Whether [`begin`](Self::begin) accepts principals of `role` (one of the pool's
    /// [`user_roles`](TenantPoolBuilder::user_roles)): for a pipeline that picks a role itself
    /// (from a membership) and wants to refuse it before checking a connection out.
    pub fn allows_user_role(&self, role: &Role) -> bool {
        self.inner.user_roles.contains(role)
    }

    /// Checks out a `READ ONLY` connection running as `role` for an org-membership lookup: the
    /// named, audited path a request pipeline uses to ask whether a verified user belongs to the
    /// org the request chose, **before** anything is scoped to that org. `role` is a dedicated
    /// role (granted to the pool's login, allowed to read the membership table and nothing
    /// else), never the request's role; the claims name the lookup (`service_reason` =
    /// `membership-lookup`), not the user. Emits a `debug` event on the `tenant_guard::audit`
    /// target per lookup (lookups are cached by the caller).
    pub async fn begin_membership_lookup(&self, role: &Role) -> Result<TenantTx, GuardError> {
        tracing::debug!(
            target: "tenant_guard::audit",
            %role,
            "org-membership lookup transaction"
        );
        let context = ServiceContext::new("membership-lookup");
        let scope = Scope::service(&context, role.clone(), None);
        // From the primary: a membership just granted or revoked must be seen at once.
        self.checkout(scope, true, true).await
    }

    /// A connection for the transaction and the node it is on: a replica for a read-only
    /// transaction when the pool has replicas and no rule sends it to the primary (see
    /// [`crate::replica`]), the primary otherwise.
    async fn connection(
        &self,
        scope: &Scope,
        read_only: bool,
        primary: bool,
    ) -> Result<(Checkout, &'static str), GuardError> {
        if let Some(replicas) = &self.inner.replicas
            && read_only
            && !primary
        {
            let wrote = match scope.user() {
                Some(p) => replicas.wrote_recently(p.org_id(), p.user_id()),
                None => false,
            };
            if !wrote {
                if let Some(conn) = replicas.checkout(scope.role()).await {
                    return Ok((conn, "replica"));
                }
                if replicas.fallback == ReplicaFallback::Unavailable {
                    return Err(GuardError::ReplicasUnavailable);
                }
                tracing::debug!("no read replica could serve; reading from the primary");
            }
        }
        let conn = self
            .inner
            .pool
            .get(Some(scope.role()))
            .await
            .map_err(map_pool_error)?;
        Ok((conn, "primary"))
    }

    async fn checkout(
        &self,
        scope: Scope,
        read_only: bool,
        primary: bool,
    ) -> Result<TenantTx, GuardError> {
        let span = crate::tx::tx_span(&scope, read_only);
        let started = Instant::now();
        let (Checkout { conn, home, affine }, node) =
            match self.connection(&scope, read_only, primary).await {
                Ok(found) => found,
                Err(error) => {
                    span.record("outcome", "checkout_failed");
                    span.in_scope(|| tracing::warn!(%error, "no connection for the transaction"));
                    return Err(error);
                }
            };
        #[cfg(feature = "metrics")]
        tenant_guard_core::metrics::record_tx_node(node);
        if let Some(affine) = affine {
            span.record("affine", affine);
            #[cfg(feature = "metrics")]
            tenant_guard_core::metrics::record_checkout_affinity(affine);
        }
        let recorder = match (&self.inner.replicas, scope.user()) {
            (Some(replicas), Some(p)) if !read_only => replicas.recorder(p.org_id(), p.user_id()),
            _ => None,
        };
        let wait = started.elapsed();
        span.record("pool_wait_ms", tenant_guard_core::trace::millis(wait));
        #[cfg(feature = "metrics")]
        tenant_guard_core::metrics::record_pool_wait(wait);
        let unnamed = self.inner.settings.pooler.is_transaction();
        let scope_statement = if unnamed {
            None
        } else {
            // Prepared by the post-create hook (the pool's shape), so this is a cache hit without
            // a round trip; prepared here, before anything of the transaction is sent, otherwise.
            let shape = scope.shape(self.inner.settings.scope_settings);
            Some(
                conn.prepare_cached(shape.sql())
                    .await
                    .map_err(GuardError::from_scope)?,
            )
        };
        let reset = match self.inner.session_reset {
            // Behind a transaction-mode pooler the client connection has no server session of
            // its own to check (the next message may reach any server connection), but the
            // reset in the `COMMIT`'s own message runs on the transaction's server connection
            // before the pooler hands it on (see `crate::pooler`).
            SessionReset::DangerousNone if unnamed => Reset::None,
            _ if unnamed => Reset::Folded,
            // Prepared by the post-create hook too.
            SessionReset::Check => Reset::Check(
                conn.prepare_cached(SESSION_CHECK_SQL)
                    .await
                    .map_err(GuardError::from_scope)?,
            ),
            SessionReset::DiscardAll => Reset::DiscardAll,
            SessionReset::DangerousNone => Reset::None,
        };
        let tx = TenantTx::new(
            conn,
            scope_statement,
            Arc::clone(&self.inner.settings),
            reset,
            scope,
            read_only,
            span,
            started,
        )
        .served_by(node)
        .returning_to(home);
        Ok(match recorder {
            Some(record) => tx.on_commit(record),
            None => tx,
        })
    }

    /// Reads the facts about the pool's login (see [`LoginPolicy`]); for a startup report.
    pub async fn check_login(&self) -> Result<LoginReport, GuardError> {
        let Checkout { conn, home, .. } =
            self.inner.pool.get(None).await.map_err(map_pool_error)?;
        let report = LoginReport::read(&conn)
            .await
            .map_err(GuardError::from_statement);
        // Only catalog reads as the login, outside any transaction: the session is as it was.
        home.put(conn);
        report
    }

    /// What the pool was built for: named statements ([`Pooler::None`]) or unnamed ones.
    pub fn pooler(&self) -> Pooler {
        self.inner.settings.pooler
    }

    /// The pool's occupancy (idle connections kept by role count as `available`).
    pub fn status(&self) -> PoolStatus {
        let status = self.inner.pool.status();
        PoolStatus {
            max_size: self.inner.max_size,
            size: status.size,
            available: status.available,
            waiting: status.waiting,
        }
    }

    /// How often a checkout got a connection whose last transaction ran as its role (see
    /// [`role_affinity`](TenantPoolBuilder::role_affinity)); the primary's checkouts only.
    ///
    /// ```
    /// use tenant_guard_postgres::TenantPool;
    ///
    /// let pool = TenantPool::builder_from_url("postgres://authenticator@db.internal/app")?.build()?;
    /// let stats = pool.affinity_stats();
    /// assert_eq!((stats.checkouts, stats.affine), (0, 0));
    /// # Ok::<(), tenant_guard_postgres::GuardError>(())
    /// ```
    pub fn affinity_stats(&self) -> AffinityStats {
        self.inner.pool.stats()
    }

    /// Closes the pool: idle connections are closed, checkouts fail with
    /// [`GuardError::PoolClosed`], connections in use close when returned.
    pub fn close(&self) {
        self.inner.pool.close();
        if let Some(replicas) = &self.inner.replicas {
            replicas.close();
        }
    }

    /// How many read replicas the pool routes read-only transactions to.
    pub fn replica_count(&self) -> usize {
        self.inner.replicas.as_ref().map_or(0, Replicas::len)
    }

    /// An unscoped connection, for migrations and administration: **no** role, claims or org is
    /// set, so Row Level Security sees only the pool's login. Logged at `warn` with `reason`
    /// every time.
    ///
    /// The connection is closed (not returned to the pool) when dropped, so whatever it changed
    /// never reaches a scoped transaction.
    pub async fn dangerous_unscoped_connection(
        &self,
        reason: &'static str,
    ) -> Result<crate::dangerous::UnscopedConnection, GuardError> {
        tracing::warn!(
            target: "tenant_guard::audit",
            reason,
            "unscoped database connection handed out"
        );
        let checkout = self.inner.pool.get(None).await.map_err(map_pool_error)?;
        Ok(crate::dangerous::UnscopedConnection::new(checkout.conn))
    }
}

pub(crate) fn map_pool_error(error: PoolError) -> GuardError {
    match error {
        PoolError::Timeout(_) => GuardError::PoolTimeout,
        PoolError::Closed => GuardError::PoolClosed,
        PoolError::Backend(e) => GuardError::Unavailable(e),
        PoolError::PostCreateHook(HookError::Backend(e))
            if !crate::error::is_connection_failure(&e) && e.code().is_some() =>
        {
            GuardError::from_statement(e)
        }
        PoolError::PostCreateHook(HookError::Backend(e)) => GuardError::Unavailable(e),
        PoolError::PostCreateHook(HookError::Message(m)) => match m.strip_prefix(INSECURE_LOGIN) {
            Some(problems) => GuardError::InsecureLogin(problems.to_owned()),
            None => GuardError::Config(m.into_owned()),
        },
        PoolError::NoRuntimeSpecified => GuardError::Config("no async runtime configured".into()),
    }
}

impl TenantPoolBuilder {
    /// TLS for the pool's connections (default: what the URL's `sslmode`/`sslrootcert` said for
    /// [`TenantPool::builder_from_url`], the `Config`'s `ssl_mode` unverified for
    /// [`TenantPool::builder`]). Also sets the `Config`'s `ssl_mode` to match.
    ///
    /// ```
    /// use tenant_guard_postgres::TenantPool;
    /// use tenant_guard_postgres::tls::{SslMode, TlsOptions};
    ///
    /// let config: tokio_postgres::Config = "host=db.example.com user=authenticator".parse()?;
    /// let builder = TenantPool::builder(config)
    ///     .tls(TlsOptions::new(SslMode::VerifyFull).root_cert_file("/etc/ssl/db-ca.pem"));
    /// # let _ = builder;
    /// # Ok::<(), tokio_postgres::Error>(())
    /// ```
    #[must_use]
    pub fn tls(mut self, tls: TlsOptions) -> Self {
        tls.apply(&mut self.config);
        self.tls = tls;
        self
    }

    /// Maximum number of connections (default [`DEFAULT_MAX_SIZE`]).
    #[must_use]
    pub fn max_size(mut self, max_size: usize) -> Self {
        self.max_size = max_size;
        self
    }

    /// How long a checkout waits for a free connection before failing with
    /// [`GuardError::PoolTimeout`] (default [`DEFAULT_WAIT_TIMEOUT`]).
    #[must_use]
    pub fn wait_timeout(mut self, timeout: Duration) -> Self {
        self.wait_timeout = timeout;
        self
    }

    /// How long opening a new connection may take (default [`DEFAULT_CONNECT_TIMEOUT`]).
    #[must_use]
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// The server cancels any statement running longer (`statement_timeout`, set as a connection
    /// option, so it costs nothing per request); the statement fails with
    /// [`GuardError::StatementTimeout`]. Default: the server's setting.
    #[must_use]
    pub fn statement_timeout(mut self, timeout: Duration) -> Self {
        self.statement_timeout = Some(timeout);
        self
    }

    /// The roles [`TenantPool::begin`] switches to for users (default `authenticated`, `anon`).
    ///
    /// A second allowlist behind the verifier's: a principal with any other role (say a
    /// misconfigured verifier that lets `service_role` tokens through) is refused before anything
    /// reaches the database.
    #[must_use]
    pub fn user_roles(mut self, roles: impl IntoIterator<Item = Role>) -> Self {
        self.user_roles = roles.into_iter().collect();
        self
    }

    /// The role of [`TenantPool::begin_service_role`] (default `service_role`).
    #[must_use]
    pub fn service_role(mut self, role: Role) -> Self {
        self.service_role = role;
        self
    }

    /// The role of [`TenantPool::begin_org_job`] (default `authenticated`).
    #[must_use]
    pub fn job_role(mut self, role: Role) -> Self {
        self.job_role = role;
        self
    }

    /// What to do when the login is a superuser, has `BYPASSRLS`, inherits privileges or owns
    /// tables with RLS (default [`LoginPolicy::Warn`]). Checked once per new connection.
    #[must_use]
    pub fn login_policy(mut self, policy: LoginPolicy) -> Self {
        self.login_policy = policy;
        self
    }

    /// What the guard does about session-level state a transaction leaves on its connection (a
    /// `WITH HOLD` cursor, a temporary table, `LISTEN`, `PREPARE`, a session `SET`, a session
    /// advisory lock): default [`SessionReset::Check`], which never lets it reach another request.
    /// [`SessionReset::DangerousNone`] turns that off.
    #[must_use]
    pub fn session_reset(mut self, reset: SessionReset) -> Self {
        if reset == SessionReset::DangerousNone {
            tracing::warn!(
                "session reset turned off: session state a handler creates reaches the next request"
            );
        }
        self.session_reset = reset;
        self
    }

    /// Which settings every transaction sets beyond `role`, `request.jwt.claims` and
    /// `tenant_guard.org_id` (default: none, see [`ScopeSettings`]). Opt into the per-claim
    /// settings (`request.jwt.claim.sub`, `request.jwt.claim.role`) for SQL that reads them
    /// directly, and into `tenant_guard.request_id` for audit triggers that record it;
    /// `auth.uid()`, `auth.role()`, `auth.jwt()`, `tenant_guard.org_id()` and
    /// `tenant_guard.user_id()` answer the same in every mode.
    ///
    /// The per-claim settings are set anyway behind a transaction-mode pooler
    /// ([`Pooler::Transaction`], where the guard runs no session reset): a session-level
    /// `request.jwt.claim.sub` a handler planted would otherwise be what `auth.uid()` reads in
    /// the next request. With the default [`SessionReset::Check`] such a connection is closed
    /// (`DiscardAll` resets it); with [`SessionReset::DangerousNone`] it reaches the next request,
    /// like every other session state a handler creates: opt into `claim_settings(true)` there if
    /// handlers might plant one.
    ///
    /// ```
    /// use tenant_guard_postgres::{ScopeSettings, TenantPool};
    ///
    /// let pool = TenantPool::builder_from_url("postgres://authenticator@db.internal/app")?
    ///     .scope_settings(ScopeSettings::default().request_id(true))
    ///     .build()?;
    /// # Ok::<(), tenant_guard_postgres::GuardError>(())
    /// ```
    #[must_use]
    pub fn scope_settings(mut self, settings: ScopeSettings) -> Self {
        self.scope_settings = settings;
        self
    }

    /// What sits between the pool and PostgreSQL (default [`Pooler::None`]: a direct connection
    /// or a session-mode pooler). [`Pooler::Transaction`] for PgBouncer `pool_mode = transaction`
    /// or Supavisor's port 6543: no named statement is ever created (see [`Pooler`] for what
    /// that changes).
    ///
    /// ```
    /// use tenant_guard_postgres::{Pooler, TenantPool};
    ///
    /// let pool = TenantPool::builder_from_url("postgres://authenticator@pooler.internal:6543/app")?
    ///     .pooler(Pooler::Transaction)
    ///     .build()?;
    /// assert_eq!(pool.pooler(), Pooler::Transaction);
    /// # Ok::<(), tenant_guard_postgres::GuardError>(())
    /// ```
    #[must_use]
    pub fn pooler(mut self, pooler: Pooler) -> Self {
        self.pooler = pooler;
        self
    }

    /// Sets [`pooler`](Self::pooler) from the `TENANT_GUARD_POOLER` environment variable
    /// (`none`, `session` or `transaction`) when it is set; an unknown value is an error, never
    /// silently "direct".
    pub fn pooler_from_env(self) -> Result<Self, GuardError> {
        match std::env::var(POOLER_ENV) {
            Ok(value) if !value.trim().is_empty() => Ok(self.pooler(value.parse()?)),
            Ok(_) | Err(std::env::VarError::NotPresent) => Ok(self),
            Err(std::env::VarError::NotUnicode(_)) => Err(GuardError::Config(format!(
                "{POOLER_ENV} is not valid UTF-8"
            ))),
        }
    }

    /// Adds read replicas (hot standbys of the primary): `READ ONLY` transactions run there,
    /// everything else on the primary; see [`crate::replica`] for the routing rules. Each replica
    /// gets a pool of its own with this builder's settings (size, timeouts, login policy,
    /// [`pooler`](Self::pooler)).
    ///
    /// ```
    /// use tenant_guard_postgres::TenantPool;
    ///
    /// let pool = TenantPool::builder_from_url("postgres://authenticator@primary.internal/app")?
    ///     .replica_urls("postgres://authenticator@replica-1.internal/app, postgres://authenticator@replica-2.internal/app")?
    ///     .build()?;
    /// assert_eq!(pool.replica_count(), 2);
    /// # Ok::<(), tenant_guard_postgres::GuardError>(())
    /// ```
    #[must_use]
    pub fn replicas(mut self, replicas: impl IntoIterator<Item = tokio_postgres::Config>) -> Self {
        self.replicas.extend(replicas);
        self
    }

    /// [`replicas`](Self::replicas) from a comma-separated list of URLs (e.g. an environment
    /// variable); empty entries are ignored. The error never repeats a URL. A URL's `sslmode`
    /// decides whether its connections need TLS; the certificate checks are the primary's (the
    /// pool has one TLS connector). A `pooler=…` parameter is ignored here: the pool's
    /// [`pooler`](Self::pooler) applies to every server.
    pub fn replica_urls(self, urls: &str) -> Result<Self, GuardError> {
        let configs = urls
            .split(',')
            .map(str::trim)
            .filter(|u| !u.is_empty())
            .map(|u| {
                let (u, _) = pooler::split_url(u)?;
                let url: DatabaseUrl = u.parse().map_err(|_| {
                    GuardError::Config("a replica URL is not a valid PostgreSQL URL".into())
                })?;
                Ok(url.into_parts().0)
            })
            .collect::<Result<Vec<_>, GuardError>>()?;
        Ok(self.replicas(configs))
    }

    /// What a read-only transaction does when no replica can serve it (default
    /// [`ReplicaFallback::Primary`]).
    #[must_use]
    pub fn replica_fallback(mut self, fallback: ReplicaFallback) -> Self {
        self.replica_fallback = fallback;
        self
    }

    /// How long after a principal's committed write its reads stay on the primary (default
    /// [`DEFAULT_READ_YOUR_WRITES`]; `Duration::ZERO` turns the rule off). Set it above the
    /// replicas' worst replay lag.
    #[must_use]
    pub fn read_your_writes(mut self, window: Duration) -> Self {
        self.read_your_writes = window;
        self
    }

    /// Role affinity (default on): a checkout prefers an idle connection whose last transaction
    /// ran as the same role, so statements on tables with Row Level Security are not re-planned
    /// for a role change (PostgreSQL plans them per role); it never waits for one longer than
    /// for any connection. See [`crate::affinity`] and `BENCHMARKS.md` ("Role affinity"). Off
    /// anyway behind a transaction-mode [`pooler`](Self::pooler) and with
    /// [`SessionReset::DiscardAll`]. Applies to the replicas' pools too.
    ///
    /// ```
    /// use tenant_guard_postgres::TenantPool;
    ///
    /// let pool = TenantPool::builder_from_url("postgres://authenticator@db.internal/app")?
    ///     .role_affinity(false)
    ///     .build()?;
    /// # drop(pool);
    /// # Ok::<(), tenant_guard_postgres::GuardError>(())
    /// ```
    #[must_use]
    pub fn role_affinity(mut self, on: bool) -> Self {
        self.role_affinity = on;
        self
    }

    /// Builds the pool, with TLS as the URL's `sslmode`/`sslrootcert` asked (see
    /// [`crate::tls`]; for a [`builder`](TenantPool::builder) from a `Config`, as its
    /// `ssl_mode` asks, without certificate checks). Connections are opened lazily, on first
    /// checkout; a missing or invalid `sslrootcert` fails here.
    ///
    /// Must be called inside a tokio runtime only when connections are opened, not here.
    pub fn build(self) -> Result<TenantPool, GuardError> {
        let connector = self.tls.connector().map_err(tls_config_error)?;
        self.build_with_tls(connector)
    }

    /// Builds the pool with a TLS connector of your own (e.g. `postgres-native-tls`, or a
    /// [`TlsOptions::connector`] with other options); the URL's TLS options are ignored, its
    /// `sslmode` still decides whether TLS is required.
    pub fn build_with_tls<T>(self, tls: T) -> Result<TenantPool, GuardError>
    where
        T: MakeTlsConnect<Socket> + Clone + Sync + Send + 'static,
        T::Stream: Sync + Send,
        T::TlsConnect: Sync + Send,
        <T::TlsConnect as TlsConnect<Socket>>::Future: Send,
    {
        if self.max_size == 0 {
            return Err(GuardError::Config("max_size must be at least 1".into()));
        }
        crate::pooler::warn_on_pooler_port(
            self.pooler,
            self.config
                .get_ports()
                .iter()
                .chain(self.replicas.iter().flat_map(|c| c.get_ports())),
        );
        let pool = self.make_pool(self.config.clone(), tls.clone())?;
        let replicas = if self.replicas.is_empty() {
            None
        } else {
            let pools = self
                .replicas
                .iter()
                .map(|config| self.make_pool(config.clone(), tls.clone()))
                .collect::<Result<Vec<_>, _>>()?;
            Some(Replicas::new(
                pools,
                self.replica_fallback,
                self.read_your_writes,
            ))
        };
        let statement_timeout_ms = self.statement_timeout.map(|t| t.as_millis().max(1));
        let pooler = self.pooler;
        Ok(TenantPool {
            inner: Arc::new(Inner {
                pool,
                replicas,
                settings: Arc::new(TxSettings::new(
                    pooler,
                    statement_timeout_ms,
                    self.effective_scope_settings(),
                )),
                user_roles: self.user_roles,
                service_role: self.service_role,
                job_role: self.job_role,
                max_size: self.max_size,
                session_reset: self.session_reset,
            }),
        })
    }

    /// The scope settings transactions send: the configured ones, plus the per-claim settings
    /// behind a transaction-mode pooler, where no session reset of the guard runs between
    /// transactions: a session-level `request.jwt.claim.sub` a handler planted would otherwise
    /// survive into the next transaction, so it is overwritten every time instead.
    fn effective_scope_settings(&self) -> ScopeSettings {
        if self.pooler.is_transaction() {
            self.scope_settings.claim_settings(true)
        } else {
            self.scope_settings
        }
    }

    /// A deadpool pool on `config` with this builder's settings: the primary's, or a replica's.
    fn make_pool<T>(
        &self,
        mut config: tokio_postgres::Config,
        tls: T,
    ) -> Result<Arc<Affinity>, GuardError>
    where
        T: MakeTlsConnect<Socket> + Clone + Sync + Send + 'static,
        T::Stream: Sync + Send,
        T::TlsConnect: Sync + Send,
        <T::TlsConnect as TlsConnect<Socket>>::Future: Send,
    {
        if config.get_application_name().is_none() {
            config.application_name("tenant-guard");
        }
        let pooler = self.pooler;
        // Behind a transaction-mode pooler the timeout is a `SET LOCAL` sent with `BEGIN`:
        // PgBouncer refuses the `options` startup parameter.
        if let Some(timeout) = self.statement_timeout.filter(|_| !pooler.is_transaction()) {
            let millis = timeout.as_millis().max(1);
            let options = match config.get_options() {
                Some(existing) if !existing.trim().is_empty() => {
                    format!("{existing} -c statement_timeout={millis}")
                }
                _ => format!("-c statement_timeout={millis}"),
            };
            config.options(&options);
        }
        let manager = Manager::from_config(
            config,
            tls,
            ManagerConfig {
                // Hygiene is the guard's job (see `TenantTx`): recycling only checks liveness.
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let policy = self.login_policy;
        let check_session = self.session_reset == SessionReset::Check;
        let scope_sql = self.effective_scope_settings().sql();
        let warned = Arc::new(AtomicBool::new(false));
        let hook = Hook::async_fn(move |client: &mut ClientWrapper, _| {
            let warned = Arc::clone(&warned);
            Box::pin(async move {
                if !pooler.is_transaction() {
                    // The pool's shape. The one with the per-claim settings (sent for a principal
                    // whose claims do not name its role) is prepared at its first checkout.
                    client
                        .prepare_cached(scope_sql)
                        .await
                        .map_err(HookError::Backend)?;
                }
                if check_session && !pooler.is_transaction() {
                    client
                        .prepare_cached(SESSION_CHECK_SQL)
                        .await
                        .map_err(HookError::Backend)?;
                }
                if policy == LoginPolicy::Skip {
                    return Ok(());
                }
                let report = LoginReport::read(client)
                    .await
                    .map_err(HookError::Backend)?;
                if report.is_fit() {
                    return Ok(());
                }
                match policy {
                    LoginPolicy::Refuse => {
                        tracing::error!(problems = %report, "refusing the pool's database login");
                        Err(HookError::message(format!("{INSECURE_LOGIN}{report}")))
                    }
                    _ => {
                        if !warned.swap(true, Ordering::Relaxed) {
                            tracing::warn!(
                                problems = %report,
                                "the pool's database login weakens tenant isolation; use an \
                                 authenticator-style login (see the support SQL)"
                            );
                        }
                        Ok(())
                    }
                }
            })
        });
        let pool = Pool::builder(manager)
            .max_size(self.max_size)
            .wait_timeout(Some(self.wait_timeout))
            .create_timeout(Some(self.connect_timeout))
            .recycle_timeout(Some(self.connect_timeout))
            .queue_mode(QueueMode::Fifo)
            .runtime(Runtime::Tokio1)
            .post_create(hook)
            .build()
            .map_err(|e| GuardError::Config(e.to_string()))?;
        let affinity = self.role_affinity
            && !pooler.is_transaction()
            && self.session_reset != SessionReset::DiscardAll;
        Ok(Affinity::new(pool, affinity))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bad_url_is_a_config_error_without_the_url() {
        let err =
            TenantPool::builder_from_url("postgres://user:hunter2@host:notaport/db").unwrap_err();
        assert!(matches!(err, GuardError::Config(_)));
        assert!(!err.to_string().contains("hunter2"));
    }

    #[test]
    fn zero_size_is_refused() {
        let err = TenantPool::builder(tokio_postgres::Config::new())
            .max_size(0)
            .build()
            .unwrap_err();
        assert!(matches!(err, GuardError::Config(_)));
    }

    #[test]
    fn pool_is_send_sync_clone() {
        fn check<T: Send + Sync + Clone + 'static>() {}
        check::<TenantPool>();
    }

    #[test]
    fn default_user_roles_exclude_the_service_role() {
        let b = TenantPool::builder(tokio_postgres::Config::new());
        assert!(b.user_roles.iter().all(|r| r.as_str() != "service_role"));
        assert_eq!(b.service_role.as_str(), "service_role");
    }
}
