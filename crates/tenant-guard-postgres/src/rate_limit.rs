//! [`PgRateLimiter`]: per-org rate limits shared by every instance of a service, counted in the
//! PostgreSQL the service already has.
//!
//! The in-memory [`RateLimiter`] counts in one process: run three instances behind a load
//! balancer and an org gets three budgets. A `PgRateLimiter` keeps the counters in a table
//! ([`RATE_LIMIT_SQL`](crate::support::RATE_LIMIT_SQL)), so every instance (and every route group
//! that uses the same limiter *name*) draws from one budget per org, or per user with
//! [`per_user`](PgRateLimiterBuilder::per_user).
//!
//! # How a check works
//!
//! One statement, one round trip, on the limiter's own small pool (never inside, or instead of,
//! a tenant's transaction): `SELECT … FROM tenant_guard.rate_limit_hit(…)`, a `SECURITY DEFINER`
//! function that upserts the counter of the key's current window (`INSERT … ON CONFLICT … DO
//! UPDATE … WHERE … RETURNING`) only while the sliding-window estimate is below the limit:
//!
//! `estimate = hits(current window) + floor(hits(previous window) × share of it still in the
//! sliding window)`
//!
//! so a burst straddling a window boundary cannot get twice the limit, and a refused request is
//! not counted. The check is atomic under concurrency (the condition is re-checked on the locked
//! row), and windows follow the database's clock, one clock for every instance. The table is
//! `UNLOGGED` and the limiter's sessions run with `synchronous_commit = off`: a check writes no WAL
//! and never waits for a disk flush (after a crash or a failover, budgets start afresh). Expired
//! windows are deleted every [`sweep_every`](PgRateLimiterBuilder::sweep_every) checks, pipelined
//! with that check (no extra round trip), or by [`PgRateLimiter::sweep`].
//!
//! # Roles and grants
//!
//! Apply [`support::apply_rate_limit_sql`](crate::support::apply_rate_limit_sql) as a superuser,
//! naming the limiter's login (usually the pool's `authenticator` login). The table belongs to a
//! NOLOGIN role `tenant_guard_limiter`; the login may only execute the two functions. The app
//! roles get nothing: a tenant's scoped transaction (running as `authenticated`) cannot read the
//! counters, reset its own or spend another org's (tested).
//!
//! # When the database cannot answer
//!
//! [`OnDatabaseError`]: by default the request is refused with 503 `rate_limit_unavailable`
//! (fail closed; the request would most likely fail on the same database anyway), or it is let
//! through uncounted, or counted by a per-process limiter until the database answers again.
//!
//! ```no_run
//! use std::time::Duration;
//! use tenant_guard_postgres::{PgRateLimiter, support};
//!
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! // Once, at start, as a superuser: the table, the functions, EXECUTE for the login.
//! let admin: tokio_postgres::Config = "postgres://postgres@db.internal/app".parse()?;
//! let (client, connection) = admin.connect(tokio_postgres::NoTls).await?;
//! tokio::spawn(connection);
//! support::apply_rate_limit_sql(&client, Some("authenticator")).await?;
//!
//! // Every instance: 600 report requests per minute and org, shared by all instances.
//! let reports = PgRateLimiter::builder("reports", 600, Duration::from_secs(60))
//!     .build("postgres://authenticator@db.internal/app".parse()?)?;
//! // axum: TenantGuardLayer::new(verifier).rate_limit(reports)
//! // actix: TenantGuard::new(verifier).rate_limit(reports)
//! # Ok(())
//! # }
//! ```
//!
//! [`RateLimiter`]: tenant_guard_core::RateLimiter

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, QueueMode, RecyclingMethod, Runtime};
use tenant_guard_core::rate_limit::{DEFAULT_SWEEP_EVERY, RateLimitBackend, RateLimitCheck};
use tenant_guard_core::{
    InvalidRateLimit, OrgId, Principal, RateLimitError, RateLimitStatus, RateLimited, RateLimiter,
};
use tokio_postgres::Socket;
use tokio_postgres::error::SqlState;
use tokio_postgres::tls::{MakeTlsConnect, TlsConnect};
use tokio_postgres::types::{ToSql, Type};
use uuid::Uuid;

use crate::error::GuardError;
use crate::pool::map_pool_error;
use crate::pooler::Pooler;
use crate::tls::{DatabaseUrl, TlsOptions, config_error as tls_config_error};

/// Default number of connections of a limiter's own pool.
pub const DEFAULT_LIMITER_MAX_SIZE: usize = 4;
/// Default bound on one check (waiting for a connection included); the statement itself is
/// also cancelled by the server after this long.
pub const DEFAULT_LIMITER_TIMEOUT: Duration = Duration::from_secs(1);
/// Expired windows deleted per sweep statement.
const SWEEP_BATCH: i32 = 10_000;

const HIT_SQL: &str = "SELECT allowed, hits, previous, elapsed \
                       FROM tenant_guard.rate_limit_hit($1, $2, $3, $4, $5)";
const SWEEP_SQL: &str = "SELECT tenant_guard.rate_limit_sweep($1)";

/// What a [`PgRateLimiter`] does with a request when the database cannot answer in time (down,
/// pool exhausted, timeout, rate limit SQL not applied).
///
/// Every such failure is logged at `warn` with its cause.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum OnDatabaseError {
    /// Refuse the request: 503 `rate_limit_unavailable` with `Retry-After: 1` (fail closed). The
    /// default: a limiter that lets everything through while its database struggles protects
    /// nothing exactly when protection matters, and a request that needs the same database
    /// would most likely fail anyway.
    #[default]
    Refuse,
    /// Let the request through, uncounted (fail open). For limits that are about fairness
    /// rather than protection. Its `RateLimit-*` headers then report the full quota.
    Allow,
    /// Count the request in this process (an in-memory [`RateLimiter`] with the same limit and
    /// window) until the database answers again: each instance then enforces the whole limit on
    /// its own, so an org may get up to one budget per instance meanwhile.
    LocalFallback,
}

/// Why a [`PgRateLimiter`] could not count a request: the
/// [`source`](std::error::Error::source) of [`RateLimitError::Unavailable`], and the error of
/// [`PgRateLimiter::sweep`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PgRateLimitError {
    /// No answer within the limiter's [`timeout`](PgRateLimiterBuilder::timeout).
    #[error("the rate limit check got no answer within {0:?}")]
    Timeout(Duration),
    /// Checking out a connection or running the statement failed. SQLSTATE `42883` (undefined
    /// function) means the rate limit SQL was not applied; `42501` that the login was not
    /// granted it (see [`support::apply_rate_limit_sql`](crate::support::apply_rate_limit_sql)).
    #[error("the rate limit check failed: {0}")]
    Database(#[source] GuardError),
}

/// A rate limiter whose counters live in PostgreSQL, shared by every instance that uses the same
/// name on the same database; see the [module docs](self). Cheap to clone (shared pool and
/// counters).
///
/// Give it to an adapter like the in-memory one: `TenantGuardLayer::rate_limit` (axum),
/// `TenantGuard::rate_limit` (actix); it implements [`RateLimitBackend`].
#[derive(Clone)]
pub struct PgRateLimiter {
    inner: Arc<Inner>,
}

struct Inner {
    pool: Pool,
    name: Box<str>,
    limit: u32,
    window: Duration,
    window_ms: i64,
    per_user: bool,
    on_error: OnDatabaseError,
    fallback: Option<RateLimiter>,
    timeout: Duration,
    sweep_every: u64,
    checks: AtomicU64,
    pooler: Pooler,
}

impl fmt::Debug for PgRateLimiter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let i = &self.inner;
        f.debug_struct("PgRateLimiter")
            .field("name", &i.name)
            .field("limit", &i.limit)
            .field("window", &i.window)
            .field("per_user", &i.per_user)
            .field("on_error", &i.on_error)
            .field("timeout", &i.timeout)
            .finish_non_exhaustive()
    }
}

impl PgRateLimiter {
    /// A limiter named `name` allowing `limit` requests per `window` for each org. Instances (and
    /// route groups) using the same name on the same database share the budget; give other
    /// route groups other names. Every user of one name must configure the same limit and
    /// window.
    pub fn builder(name: &str, limit: u32, window: Duration) -> PgRateLimiterBuilder {
        PgRateLimiterBuilder {
            name: name.into(),
            limit,
            window,
            per_user: false,
            on_error: OnDatabaseError::default(),
            max_size: DEFAULT_LIMITER_MAX_SIZE,
            timeout: DEFAULT_LIMITER_TIMEOUT,
            sweep_every: DEFAULT_SWEEP_EVERY,
            pooler: Pooler::None,
        }
    }

    /// Counts one request of `principal` (its org, and user with
    /// [`per_user`](PgRateLimiterBuilder::per_user)), in one round trip.
    ///
    /// # Errors
    /// [`RateLimitError::Limited`] when the key is over its limit (nothing is counted then);
    /// [`RateLimitError::Unavailable`] when the database did not answer and the limiter refuses
    /// then ([`OnDatabaseError::Refuse`], the default).
    pub async fn check(&self, principal: &Principal) -> Result<RateLimitStatus, RateLimitError> {
        let user = self.user_key(principal);
        let (org, user) = counter_key(principal.org_id(), user.as_deref().unwrap_or(""));
        self.check_key(org, &user, principal).await
    }

    fn user_key(&self, principal: &Principal) -> Option<Box<str>> {
        self.inner.per_user.then(|| principal.user_id().into())
    }

    async fn check_key(
        &self,
        org: Uuid,
        user: &str,
        principal: &Principal,
    ) -> Result<RateLimitStatus, RateLimitError> {
        let i = &*self.inner;
        let n = i.checks.fetch_add(1, Ordering::Relaxed) + 1;
        let sweep = n.is_multiple_of(i.sweep_every);
        let failure = match tokio::time::timeout(i.timeout, self.hit(org, user, sweep)).await {
            Ok(Ok(hit)) => {
                let outcome = hit.outcome(i.limit, i.window);
                if outcome.is_err() {
                    tracing::debug!(limiter = %i.name, %org, "rate limited (shared counter)");
                }
                return outcome.map_err(RateLimitError::Limited);
            }
            Ok(Err(error)) => PgRateLimitError::Database(error),
            Err(_) => PgRateLimitError::Timeout(i.timeout),
        };
        self.on_failure(failure, principal)
    }

    fn on_failure(
        &self,
        failure: PgRateLimitError,
        principal: &Principal,
    ) -> Result<RateLimitStatus, RateLimitError> {
        let i = &*self.inner;
        let hint = match &failure {
            PgRateLimitError::Database(GuardError::Database(e))
                if e.code() == Some(&SqlState::UNDEFINED_FUNCTION) =>
            {
                "; apply tenant_guard_postgres::support::apply_rate_limit_sql"
            }
            PgRateLimitError::Database(GuardError::ForbiddenByPolicy(_)) => {
                "; grant it with tenant_guard.grant_rate_limiter(login)"
            }
            _ => "",
        };
        tracing::warn!(
            limiter = %i.name,
            error = %failure,
            on_error = ?i.on_error,
            "the shared rate limit could not be checked{hint}"
        );
        match (i.on_error, &i.fallback) {
            (OnDatabaseError::Allow, _) => {
                Ok(RateLimitStatus::new(i.limit, i.limit, Duration::ZERO))
            }
            (OnDatabaseError::LocalFallback, Some(local)) => {
                local.check(principal).map_err(RateLimitError::Limited)
            }
            _ => Err(RateLimitError::Unavailable(Box::new(failure))),
        }
    }

    /// One round trip: the hit, and the sweep pipelined behind it when due.
    async fn hit(&self, org: Uuid, user: &str, sweep: bool) -> Result<Hit, GuardError> {
        let i = &*self.inner;
        let client = i.pool.get().await.map_err(map_pool_error)?;
        let limit = i32::try_from(i.limit).unwrap_or(i32::MAX);
        let name: &str = &i.name;
        let params: [&(dyn ToSql + Sync); 5] = [&name, &org, &user, &i.window_ms, &limit];
        let row = if i.pooler.is_transaction() {
            // Unnamed statements, each one message with its own Sync: nothing outlives it.
            let types = [Type::TEXT, Type::UUID, Type::TEXT, Type::INT8, Type::INT4];
            let typed: Vec<_> = params.iter().copied().zip(types).collect();
            if sweep {
                let (row, swept) = tokio::join!(
                    client.query_typed_one(HIT_SQL, &typed),
                    client.query_typed_one(SWEEP_SQL, &[(&SWEEP_BATCH, Type::INT4)]),
                );
                log_sweep(&i.name, swept);
                row
            } else {
                client.query_typed_one(HIT_SQL, &typed).await
            }
        } else if sweep {
            let statement = client
                .prepare_cached(HIT_SQL)
                .await
                .map_err(GuardError::from_statement)?;
            let sweeper = client
                .prepare_cached(SWEEP_SQL)
                .await
                .map_err(GuardError::from_statement)?;
            let (row, swept) = tokio::join!(
                client.query_one(&statement, &params),
                client.query_one(&sweeper, &[&SWEEP_BATCH]),
            );
            log_sweep(&i.name, swept);
            row
        } else {
            let statement = client
                .prepare_cached(HIT_SQL)
                .await
                .map_err(GuardError::from_statement)?;
            client.query_one(&statement, &params).await
        }
        .map_err(GuardError::from_statement)?;
        let get = |e| GuardError::from_statement(e);
        Ok(Hit {
            allowed: row.try_get(0).map_err(get)?,
            hits: row.try_get(1).map_err(get)?,
            previous: row.try_get(2).map_err(get)?,
            elapsed: row.try_get(3).map_err(get)?,
        })
    }

    /// Deletes the expired windows of every limiter in the database (in batches of 10 000),
    /// returning how many rows went. Runs automatically (see
    /// [`sweep_every`](PgRateLimiterBuilder::sweep_every)); call it from a timer too if traffic
    /// can stop for long, or run `SELECT tenant_guard.rate_limit_sweep(10000)` from `pg_cron`.
    ///
    /// # Errors
    /// [`PgRateLimitError`] when the database cannot be reached or the SQL is missing.
    pub async fn sweep(&self) -> Result<u64, PgRateLimitError> {
        let client = self
            .inner
            .pool
            .get()
            .await
            .map_err(|e| PgRateLimitError::Database(map_pool_error(e)))?;
        let mut total = 0_u64;
        loop {
            let rows: i64 = client
                .query_typed_one(SWEEP_SQL, &[(&SWEEP_BATCH, Type::INT4)])
                .await
                .and_then(|row| row.try_get(0))
                .map_err(|e| PgRateLimitError::Database(GuardError::from_statement(e)))?;
            total += u64::try_from(rows).unwrap_or(0);
            if rows < i64::from(SWEEP_BATCH) {
                return Ok(total);
            }
        }
    }

    /// The limiter's name (its budget's identity in the table).
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// Requests allowed per [`window`](Self::window) and key.
    pub fn limit(&self) -> u32 {
        self.inner.limit
    }

    /// The window the [`limit`](Self::limit) applies to.
    pub fn window(&self) -> Duration {
        self.inner.window
    }

    /// Closes the limiter's pool (checks then fail as configured by [`OnDatabaseError`]).
    pub fn close(&self) {
        self.inner.pool.close();
    }
}

impl RateLimitBackend for PgRateLimiter {
    fn check_request(&self, principal: &Principal) -> RateLimitCheck {
        let this = self.clone();
        let principal = principal.clone();
        RateLimitCheck::Pending(Box::pin(async move { this.check(&principal).await }))
    }
}

/// Configures a [`PgRateLimiter`]; from [`PgRateLimiter::builder`].
#[derive(Debug, Clone)]
#[must_use]
pub struct PgRateLimiterBuilder {
    name: Box<str>,
    limit: u32,
    window: Duration,
    per_user: bool,
    on_error: OnDatabaseError,
    max_size: usize,
    timeout: Duration,
    sweep_every: u64,
    pooler: Pooler,
}

impl PgRateLimiterBuilder {
    /// What sits between the limiter and PostgreSQL (default [`Pooler::None`]). With
    /// [`Pooler::Transaction`] the checks use unnamed statements and no connection options are
    /// sent (PgBouncer refuses them): set `synchronous_commit = off` and a `statement_timeout`
    /// on the limiter's login instead (`ALTER ROLE authenticator SET synchronous_commit = off`).
    pub fn pooler(mut self, pooler: Pooler) -> Self {
        self.pooler = pooler;
        self
    }

    /// Counts each user of an org separately (key: org and `sub`) instead of the org as a whole.
    pub fn per_user(mut self) -> Self {
        self.per_user = true;
        self
    }

    /// What to do when the database cannot answer (default [`OnDatabaseError::Refuse`]).
    pub fn on_database_error(mut self, policy: OnDatabaseError) -> Self {
        self.on_error = policy;
        self
    }

    /// Connections of the limiter's own pool (default [`DEFAULT_LIMITER_MAX_SIZE`]). A check holds
    /// one for a single statement.
    pub fn max_size(mut self, max_size: usize) -> Self {
        self.max_size = max_size;
        self
    }

    /// Bound on one check, waiting for a connection included (default
    /// [`DEFAULT_LIMITER_TIMEOUT`]); past it the check fails as configured by
    /// [`on_database_error`](Self::on_database_error). The server also cancels the statement.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Sweeps the expired windows every `checks` checks of this instance (default
    /// [`DEFAULT_SWEEP_EVERY`]; 0 means the default), pipelined with that check.
    pub fn sweep_every(mut self, checks: u64) -> Self {
        self.sweep_every = if checks == 0 {
            DEFAULT_SWEEP_EVERY
        } else {
            checks
        };
        self
    }

    /// The limiter, connecting with `config` lazily, on the first check, with TLS as its
    /// `ssl_mode` asks (`prefer`/`require`: without certificate checks; see [`crate::tls`]).
    ///
    /// # Errors
    /// [`GuardError::Config`] for an empty or overlong name, a zero limit, a window shorter than
    /// a millisecond or a zero pool size.
    pub fn build(self, config: tokio_postgres::Config) -> Result<PgRateLimiter, GuardError> {
        let connector = TlsOptions::from_config(&config)
            .connector()
            .map_err(tls_config_error)?;
        self.build_with_tls(config, connector)
    }

    /// [`build`](Self::build) from a URL; the error never repeats the URL. TLS follows the URL's
    /// `sslmode` and `sslrootcert` as libpq does (see [`crate::tls`]); a missing or invalid
    /// `sslrootcert` fails here. A `pooler=transaction` parameter sets [`pooler`](Self::pooler),
    /// as for [`TenantPool::builder_from_url`](crate::TenantPool::builder_from_url).
    pub fn build_from_url(mut self, url: &str) -> Result<PgRateLimiter, GuardError> {
        let (url, mode) = crate::pooler::split_url(url)?;
        if let Some(mode) = mode {
            self.pooler = mode;
        }
        let url: DatabaseUrl = url.parse().map_err(tls_config_error)?;
        let connector = url.tls().connector().map_err(tls_config_error)?;
        let (config, _) = url.into_parts();
        self.build_with_tls(config, connector)
    }

    /// [`build`](Self::build) with a TLS connector.
    pub fn build_with_tls<T>(
        self,
        mut config: tokio_postgres::Config,
        tls: T,
    ) -> Result<PgRateLimiter, GuardError>
    where
        T: MakeTlsConnect<Socket> + Clone + Sync + Send + 'static,
        T::Stream: Sync + Send,
        T::TlsConnect: Sync + Send,
        <T::TlsConnect as TlsConnect<Socket>>::Future: Send,
    {
        let invalid = |e: InvalidRateLimit| GuardError::Config(e.to_string());
        if self.name.is_empty() || self.name.len() > 128 {
            return Err(GuardError::Config(
                "a rate limiter's name must have 1 to 128 bytes".into(),
            ));
        }
        if self.limit == 0 {
            return Err(invalid(InvalidRateLimit::ZeroLimit));
        }
        let window_ms = i64::try_from(self.window.as_millis()).unwrap_or(i64::MAX);
        if window_ms < 1 {
            return Err(invalid(InvalidRateLimit::PeriodTooShort));
        }
        if self.max_size == 0 {
            return Err(GuardError::Config("max_size must be at least 1".into()));
        }
        let fallback = match self.on_error {
            OnDatabaseError::LocalFallback => {
                let mut local = RateLimiter::builder(self.limit, self.window);
                if self.per_user {
                    local = local.per_user();
                }
                Some(local.build().map_err(invalid)?)
            }
            _ => None,
        };
        if config.get_application_name().is_none() {
            config.application_name("tenant-guard-limiter");
        }
        // The server gives up on a statement when the check would; a counter increment lost in
        // a crash costs nothing, so a check never waits for a WAL flush.
        // (Behind a transaction-mode pooler, which refuses startup options, the login's settings
        // must do it; see `pooler`.)
        if !self.pooler.is_transaction() {
            let millis = self.timeout.as_millis().max(1);
            let ours = format!("-c statement_timeout={millis} -c synchronous_commit=off");
            let options = match config.get_options() {
                Some(existing) if !existing.trim().is_empty() => format!("{existing} {ours}"),
                _ => ours,
            };
            config.options(&options);
        }
        let manager = Manager::from_config(
            config,
            tls,
            ManagerConfig {
                // One autocommit statement per checkout: nothing to clean.
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(self.max_size)
            .wait_timeout(Some(self.timeout))
            .create_timeout(Some(self.timeout))
            .recycle_timeout(Some(self.timeout))
            .queue_mode(QueueMode::Fifo)
            .runtime(Runtime::Tokio1)
            .build()
            .map_err(|e| GuardError::Config(e.to_string()))?;
        Ok(PgRateLimiter {
            inner: Arc::new(Inner {
                pool,
                name: self.name,
                limit: self.limit,
                window: self.window,
                window_ms,
                per_user: self.per_user,
                on_error: self.on_error,
                fallback,
                timeout: self.timeout,
                sweep_every: self.sweep_every,
                checks: AtomicU64::new(0),
                pooler: self.pooler,
            }),
        })
    }
}

fn log_sweep(limiter: &str, swept: Result<tokio_postgres::Row, tokio_postgres::Error>) {
    match swept.and_then(|r| r.try_get::<_, i64>(0)) {
        Ok(rows) => tracing::debug!(limiter, rows, "swept expired rate windows"),
        Err(error) => tracing::warn!(limiter, %error, "sweeping expired rate windows failed"),
    }
}

/// What `tenant_guard.rate_limit_hit` answered.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Hit {
    /// The request was counted.
    allowed: bool,
    /// Hits of the current window (after counting this one, if allowed).
    hits: i32,
    /// Hits of the previous window.
    previous: i32,
    /// The part of the current window that has passed, 0 to 1.
    elapsed: f64,
}

/// One millisecond: the database's clock resolution here, added to waits so that a client
/// retrying exactly after `Retry-After` is not refused at the boundary.
const TICK: Duration = Duration::from_millis(1);

impl Hit {
    /// The status or rejection, with the RateLimit-* and Retry-After figures of the sliding
    /// window (`estimate = hits + floor(previous × (1 − elapsed))`, allowed while `< limit`).
    fn outcome(self, limit: u32, window: Duration) -> Result<RateLimitStatus, RateLimited> {
        let l = f64::from(limit);
        let f = if self.elapsed.is_finite() {
            self.elapsed.clamp(0.0, 1.0)
        } else {
            0.0
        };
        let hits = f64::from(self.hits.max(0));
        let previous = f64::from(self.previous.max(0));
        let weighted = (previous * (1.0 - f)).floor();
        // The full quota is back once the estimate is 0: the current window's hits, become the
        // previous window's, weigh less than one; or, without any, the previous window's do.
        let reset = if hits > 0.0 {
            (1.0 - f) + (1.0 - 1.0 / hits)
        } else if previous > 0.0 {
            (1.0 - 1.0 / previous - f).max(0.0)
        } else {
            0.0
        };
        let reset = scale(window, reset);
        if self.allowed {
            let remaining = (l - hits - weighted).max(0.0);
            return Ok(RateLimitStatus::new(limit, remaining as u32, reset));
        }
        // The next request fits once `hits + floor(previous × (1 − f')) < limit`: later in this
        // window while the previous one's weight decays, or else in the next window, where this
        // window's hits weigh `1 − f''`.
        let wait = if hits < l && previous > 0.0 {
            (1.0 - (l - hits) / previous - f).max(0.0)
        } else {
            (1.0 - f) + (1.0 - l / hits.max(1.0)).max(0.0)
        };
        let wait = scale(window, wait);
        Err(RateLimited::new(
            limit,
            wait.saturating_add(TICK),
            reset.max(wait).saturating_add(TICK),
        ))
    }
}

/// `window × share`, saturating instead of panicking on odd figures.
fn scale(window: Duration, share: f64) -> Duration {
    Duration::try_from_secs_f64(window.as_secs_f64() * share).unwrap_or(if share > 0.0 {
        Duration::MAX
    } else {
        Duration::ZERO
    })
}

/// The counters table is keyed by (`uuid` org, `text` user) (`rate_limit_v1.sql`). A UUID org is
/// its own key. An integer or text org maps to a fixed marker UUID per kind (version 8, which no
/// v4 or v7 id carries) with its canonical text in front of the user key (`<org>/<user>`; `/`
/// cannot occur in an org id), so every org of every kind keeps a budget of its own.
fn counter_key<'a>(org: &OrgId, user: &'a str) -> (Uuid, Cow<'a, str>) {
    const INTEGER_ORGS: Uuid = Uuid::from_u128(0x746e_7467_0000_8000_8000_0000_0000_0001);
    const TEXT_ORGS: Uuid = Uuid::from_u128(0x746e_7467_0000_8000_8000_0000_0000_0002);
    match org {
        OrgId::Uuid(uuid) => (*uuid, Cow::Borrowed(user)),
        OrgId::Int(_) => (INTEGER_ORGS, Cow::Owned(format!("{org}/{user}"))),
        _ => (TEXT_ORGS, Cow::Owned(format!("{org}/{user}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINUTE: Duration = Duration::from_secs(60);

    #[test]
    fn counter_keys_are_distinct_per_org_and_kind() {
        let uuid = Uuid::from_u128(7);
        assert_eq!(
            counter_key(&OrgId::Uuid(uuid), "alice"),
            (uuid, Cow::Borrowed("alice"))
        );
        let keys = [
            counter_key(&OrgId::Int(7), ""),
            counter_key(&OrgId::Int(7), "alice"),
            counter_key(&OrgId::Int(8), ""),
            counter_key(&OrgId::text("7").unwrap(), ""),
            counter_key(&OrgId::text("7").unwrap(), "alice"),
            counter_key(&OrgId::Uuid(uuid), ""),
        ];
        for (i, a) in keys.iter().enumerate() {
            for b in &keys[i + 1..] {
                assert_ne!(a, b);
            }
        }
        assert_eq!(keys[1].1, "7/alice");
        assert_eq!(keys[0].0.get_version_num(), 8);
    }

    fn hit(allowed: bool, hits: i32, previous: i32, elapsed: f64) -> Hit {
        Hit {
            allowed,
            hits,
            previous,
            elapsed,
        }
    }

    #[test]
    fn an_allowed_hit_reports_what_is_left_of_the_sliding_window() {
        // 3 of 10 in this window, 8 in the previous one still weighing half: 10 - 3 - 4 = 3.
        let status = hit(true, 3, 8, 0.5).outcome(10, MINUTE).unwrap();
        assert_eq!((status.limit(), status.remaining()), (10, 3));
        // Full quota: the rest of this window, then until 3 hits weigh less than one (2/3 of
        // the next): 30 s + 40 s.
        assert_eq!(status.reset(), Duration::from_secs(70));
        let first = hit(true, 1, 0, 0.25).outcome(10, MINUTE).unwrap();
        assert_eq!(first.remaining(), 9);
        assert_eq!(first.reset(), Duration::from_secs(45));
    }

    #[test]
    fn a_full_window_waits_for_the_next_one() {
        let limited = hit(false, 10, 0, 0.75).outcome(10, MINUTE).unwrap_err();
        // 15 s left in this window; then 10 hits weigh 10 × (1 − f'') < 10 at once.
        assert_eq!(limited.retry_after(), Duration::from_secs(15) + TICK);
        assert_eq!(limited.limit(), 10);
        // Full quota: 15 s + 9/10 of the next window.
        assert_eq!(limited.reset(), Duration::from_secs(15 + 54) + TICK);
    }

    #[test]
    fn a_heavy_previous_window_waits_for_its_weight_to_decay() {
        // 2 hits now, 10 in the previous window weighing 0.9 → estimate 2 + 9 = 11 ≥ 10. It fits
        // once 10 × (1 − f') < 8, i.e. f' > 0.2: 6 s from now (f = 0.1).
        let limited = hit(false, 2, 10, 0.1).outcome(10, MINUTE).unwrap_err();
        assert_eq!(limited.retry_after(), Duration::from_secs(6) + TICK);
        // A limit of 1: one hit waits for the next window, not one more.
        let one = hit(false, 1, 0, 0.5).outcome(1, MINUTE).unwrap_err();
        assert_eq!(one.retry_after(), Duration::from_secs(30) + TICK);
    }

    #[test]
    fn odd_figures_never_panic() {
        for (hits, previous, elapsed) in [
            (0, 0, f64::NAN),
            (-1, -5, 2.0),
            (i32::MAX, i32::MAX, 0.0),
            (0, i32::MAX, f64::INFINITY),
        ] {
            for allowed in [true, false] {
                let _ = hit(allowed, hits, previous, elapsed).outcome(u32::MAX, Duration::MAX);
                let _ = hit(allowed, hits, previous, elapsed).outcome(1, Duration::from_millis(1));
            }
        }
    }

    #[test]
    fn invalid_configurations_are_refused() {
        let config = tokio_postgres::Config::new();
        let build = |b: PgRateLimiterBuilder| b.build(config.clone()).unwrap_err();
        assert!(matches!(
            build(PgRateLimiter::builder("r", 0, MINUTE)),
            GuardError::Config(_)
        ));
        assert!(matches!(
            build(PgRateLimiter::builder("", 1, MINUTE)),
            GuardError::Config(_)
        ));
        assert!(matches!(
            build(PgRateLimiter::builder("r", 1, Duration::from_micros(10))),
            GuardError::Config(_)
        ));
        assert!(matches!(
            build(PgRateLimiter::builder("r", 1, MINUTE).max_size(0)),
            GuardError::Config(_)
        ));
        let err = PgRateLimiter::builder("r", 1, MINUTE)
            .build_from_url("postgres://u:hunter2@h:notaport/db")
            .unwrap_err();
        assert!(!err.to_string().contains("hunter2"));
    }

    #[test]
    fn debug_names_the_configuration_only() {
        let limiter = PgRateLimiter::builder("reports", 600, MINUTE)
            .build("postgres://u:hunter2@localhost/db".parse().unwrap())
            .unwrap();
        let debug = format!("{limiter:?}");
        assert!(
            debug.contains("reports") && debug.contains("600"),
            "{debug}"
        );
        assert!(!debug.contains("hunter2"));
    }
}
