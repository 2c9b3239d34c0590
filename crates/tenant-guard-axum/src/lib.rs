//! axum adapter for tenant-guard: an authentication layer, the verified principal and a
//! transaction scoped to the caller's org and role, as extractors.
//!
//! ```no_run
//! use axum::{Json, Router, routing::get};
//! use tenant_guard_axum::{Authenticated, ReadOnly, TenantDb, TenantGuardLayer, TenantGuardRejection};
//! use tenant_guard_core::{Environment, Verifier};
//! use tenant_guard_postgres::TenantPool;
//!
//! async fn names(db: TenantDb<ReadOnly>) -> Result<Json<Vec<String>>, TenantGuardRejection> {
//!     // Row Level Security scopes this to the caller's org: no `WHERE org_id = …` needed.
//!     let rows = db.query("SELECT name FROM projects", &[]).await?; // 503 when the pool is busy
//!     Ok(Json(rows.iter().map(|r| r.get(0)).collect()))
//! }
//!
//! async fn me(Authenticated(principal): Authenticated) -> String {
//!     principal.org_id().to_string()
//! }
//!
//! # async fn run(pool: TenantPool) -> Result<(), Box<dyn std::error::Error>> {
//! let verifier = Verifier::builder(Environment::from_env())
//!     .hmac_secret(std::env::var("JWT_SECRET")?)
//!     .build()?;
//! let app = Router::new()
//!     .route("/projects", get(names))
//!     .route("/me", get(me))
//!     .route_layer(TenantGuardLayer::new(verifier).pool(pool))
//!     .route("/healthz", get(|| async { "ok" })); // outside the layer: no token
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
//! axum::serve(listener, app).await?;
//! # Ok(())
//! # }
//! ```
//!
//! The pipeline itself (request id and span, authentication, role check, rate limit, the
//! transaction's hand-over and its commit or rollback by status, error rendering, metrics) lives
//! in `tenant_guard_http`, shared with the actix-web adapter and usable as is by tonic and hyper:
//! [`TenantGuardLayer`] and [`RequestTracingLayer`] are its tower layers with axum's route
//! template ([`MatchedRoute`]). What this crate adds is what axum forces: the extractors
//! ([`Authenticated`], [`CurrentRequestId`], [`TenantDb`]), their rejection
//! ([`TenantGuardRejection`]) and [`error_response`].
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod extract;
mod rejection;
mod response;
mod route;
#[cfg(feature = "sqlx")]
mod sqlx;

pub use extract::{Authenticated, CurrentRequestId, TenantDb};
pub use rejection::TenantGuardRejection;
pub use response::error_response;
pub use route::{MatchedRoute, RequestTracing, RequestTracingLayer, TenantGuard, TenantGuardLayer};
#[cfg(feature = "sqlx")]
pub use sqlx::SqlxDb;
pub use tenant_guard_http::{Mode, ReadOnly, ReadWrite, ResponseFuture};
