//! The sqlx backend of tenant-guard: sqlx transactions scoped to a verified principal's org and
//! role, so Row Level Security isolates tenants, with the same guarantees as the tokio-postgres
//! guard (`tenant-guard-postgres`).
//!
//! ```no_run
//! use tenant_guard_core::{Environment, Verifier};
//! use tenant_guard_sqlx::{SqlxGuard, SqlxGuardError, with_tenant_guard};
//!
//! # async fn demo(token: &str) -> Result<(), Box<dyn std::error::Error>> {
//! let pool = tenant_guard_sqlx::pool_options()
//!     .connect("postgres://authenticator@localhost/app")
//!     .await?;
//! let guard = SqlxGuard::new(pool);
//! let verifier = Verifier::builder(Environment::Production).hmac_secret("…").build()?;
//!
//! // Per request: verify first (a bad token never costs a connection), then run scoped.
//! let principal = verifier.verify(token)?;
//! let count: i64 = with_tenant_guard(&guard, &principal, |tx| Box::pin(async move {
//!     Ok::<_, SqlxGuardError>(
//!         sqlx::query_scalar("SELECT count(*) FROM projects").fetch_one(&mut **tx).await?,
//!     )
//! }))
//! .await?;
//! # Ok(())
//! # }
//! ```
//!
//! What a transaction does: `BEGIN [READ ONLY]`, then the one scoping statement shared with the
//! tokio-postgres guard ([`tenant_guard_core::scope::SCOPE_SQL`]: `role`, `request.jwt.claims`,
//! `tenant_guard.org_id`, plus `request.jwt.claim.sub`, `request.jwt.claim.role` and
//! `tenant_guard.request_id` when [`SqlxGuardBuilder::scope_settings`] opts in; all
//! transaction-local), then your statements. Unlike the
//! tokio-postgres guard (which pipelines all three), these are separate round trips: sqlx has no
//! pipelining. `BENCHMARKS.md` has the cost.
//!
//! # Hygiene
//!
//! A connection never carries one request's role or claims into the next:
//! - the guard's settings are transaction-local: gone at `COMMIT`/`ROLLBACK`;
//! - a transaction dropped unfinished (error, panic, cancelled future) is rolled back by sqlx
//!   before the connection is used again (queued `ROLLBACK`, flushed on release);
//! - a statement cancelled mid-flight: sqlx waits for its answer before the connection's next
//!   use (bounded by [`RELEASE_TIMEOUT`], then the connection is closed);
//! - session-level changes a handler committed are undone by the release hook of
//!   [`pool_options`] ([`RESET_SQL`]), and a session holding what no cheap statement resets (an
//!   SQL-level `PREPARE`, a temporary object) is closed ([`CHECK_SQL`]);
//! - a broken connection (killed backend, restart) fails sqlx's release ping and is closed.
//!
//! The tests in `tests/hygiene.rs` prove each against a real PostgreSQL.
//!
//! # Transaction-mode poolers (PgBouncer)
//!
//! sqlx prepares every persistent statement (the default) under a name, per connection; behind
//! a pooler in transaction mode the next transaction may land on another server connection,
//! where that name is unknown or already taken. Measured (`tests/pooler.rs`):
//! `PgConnectOptions::statement_cache_capacity(0)` alone does *not* avoid this: sqlx stops
//! caching but still names each statement (and never closes it). Behind such a pooler (PgBouncer
//! before 1.21, or `max_prepared_statements = 0`), connect with `statement_cache_capacity(0)`,
//! build the guard with [`SqlxGuardBuilder::unnamed_statements`], and run queries with
//! `.persistent(false)` (tested through the testkit's PgBouncer in `tests/pooler.rs`). PgBouncer
//! 1.21+ with `max_prepared_statements` set handles named
//! statements itself; keep the defaults there.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod error;
mod guard;
mod pool;

pub use error::SqlxGuardError;
pub use guard::{
    GuardedTx, SqlxGuard, SqlxGuardBuilder, TenantTransaction, with_org_job, with_service_role,
    with_tenant_guard, with_tenant_guard_options,
};
pub use pool::{CHECK_SQL, RELEASE_TIMEOUT, RESET_SQL, pool_options, release_hook};
pub use tenant_guard_core::scope::{SCOPE_SQL, ScopeOptions, ScopeSettings};

/// The driver, re-exported.
pub use sqlx;
