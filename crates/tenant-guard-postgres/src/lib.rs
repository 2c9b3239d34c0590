//! The guard: Postgres transactions scoped to a verified principal's org and role, so Row Level
//! Security isolates tenants even when application code is wrong.
//!
//! ```no_run
//! use tenant_guard_core::{Environment, Verifier};
//! use tenant_guard_postgres::{GuardError, TenantPool, support, with_tenant_guard};
//!
//! # async fn demo(token: &str) -> Result<(), Box<dyn std::error::Error>> {
//! // At start: roles, auth.* helpers and tenant_guard.org_id() (as a superuser), then the pool
//! // as a login that can do nothing by itself but switch to the app roles.
//! let admin: tokio_postgres::Config = "postgres://postgres@localhost/app".parse()?;
//! support::apply(&admin, "").await?;
//! let pool = TenantPool::builder_from_url("postgres://authenticator@localhost/app")?.build()?;
//! let verifier = Verifier::builder(Environment::Production).hmac_secret("…").build()?;
//!
//! // Per request: verify first (a bad token never costs a connection), then run scoped.
//! let principal = verifier.verify(token)?;
//! let names: Vec<String> = with_tenant_guard(&pool, &principal, async |tx| {
//!     let rows = tx.query("SELECT name FROM projects ORDER BY name", &[]).await?;
//!     Ok::<_, GuardError>(rows.iter().map(|r| r.get(0)).collect())
//! })
//! .await?;
//! # Ok(())
//! # }
//! ```
//!
//! What a transaction does, in order, without a round trip of its own:
//! `BEGIN [READ ONLY]`, then one statement setting transaction-locally (`set_config(…, true)`)
//! `role` (the principal's role, validated by [`Role`](tenant_guard_core::Role) and the pool's
//! allowlist), `request.jwt.claims` (the verified claims), `request.jwt.claim.sub`,
//! `request.jwt.claim.role`, `tenant_guard.org_id` and `tenant_guard.request_id`, then your
//! first statement: all three sent in one pipeline. Nothing is ever set at session level, and
//! connections go back to the pool clean whatever happens (see [`TenantTx`]).
//!
//! Modules: [`support`] (the support SQL and policy templates), [`dangerous`] (the unscoped
//! escape hatch), [`rate_limit`] (per-org rate limits shared by every instance, counted in
//! PostgreSQL), [`tls`] (libpq's `sslmode`/`sslrootcert` for every connection opened from a URL),
//! [`pooler`] (running behind PgBouncer/Supavisor in transaction mode), [`replica`] (read
//! replicas), [`affinity`] (idle connections handed out by the role of their last transaction).
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod affinity;
pub mod dangerous;
mod error;
mod guard;
mod login;
mod options;
mod pool;
pub mod pooler;
pub mod rate_limit;
mod redact;
pub mod replica;
mod reset;
mod scope;
pub mod support;
pub mod tls;
mod tx;

pub use affinity::AffinityStats;
pub use error::GuardError;
pub use guard::{with_org_job, with_service_role, with_tenant_guard, with_tenant_guard_options};
pub use login::{LoginPolicy, LoginReport};
pub use options::{ScopeOptions, ScopeSettings};
pub use pool::{
    DEFAULT_CONNECT_TIMEOUT, DEFAULT_MAX_SIZE, DEFAULT_WAIT_TIMEOUT, PoolStatus, TenantPool,
    TenantPoolBuilder,
};
pub use pooler::Pooler;
pub use rate_limit::{OnDatabaseError, PgRateLimitError, PgRateLimiter, PgRateLimiterBuilder};
pub use replica::ReplicaFallback;
pub use reset::{SESSION_CHECK_SQL, SESSION_RESET_SQL, SessionReset};
pub use tx::{TenantTx, ToStatement};

/// The one statement that scopes a transaction, for tools that must see the database exactly as a
/// guarded request does (the audit's isolation probe). Run it as its own statement inside an open
/// transaction, before the statements it should scope. Parameters, all text: `$1` role, `$2` the
/// claims JSON, `$3` the org id. It is the default shape (no per-claim settings, no request id; see
/// [`ScopeSettings`]), the one a pool with default settings sends. Every setting is
/// transaction-local (`set_config(…, true)`); nothing survives the transaction.
///
/// ```
/// assert!(tenant_guard_postgres::SCOPE_STATEMENT.contains("set_config('role', $1, true)"));
/// ```
pub const SCOPE_STATEMENT: &str = scope::SCOPE_SQL;

/// The driver, re-exported for [`Row`](tokio_postgres::Row), [`ToSql`](tokio_postgres::types::ToSql),
/// [`Config`](tokio_postgres::Config) and friends.
pub use tokio_postgres;
