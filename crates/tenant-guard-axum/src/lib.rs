//! axum adapter for tenant-guard: an authentication layer, the verified principal and a
//! transaction scoped to the caller's org and role, as extractors.
//!
//! ```no_run
//! use axum::{Json, Router, routing::get};
//! use tenant_guard_axum::{Authenticated, ReadOnly, TenantDb, TenantGuardLayer};
//! use tenant_guard_core::{Environment, Verifier};
//! use tenant_guard_postgres::TenantPool;
//!
//! async fn names(db: TenantDb<ReadOnly>) -> Json<Vec<String>> {
//!     // Row Level Security scopes this to the caller's org: no `WHERE org_id = …` needed.
//!     let rows = db.query("SELECT name FROM projects", &[]).await.unwrap_or_default();
//!     Json(rows.iter().map(|r| r.get(0)).collect())
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
//! What happens per request is described on [`TenantGuardLayer`]; the transaction's life on
//! [`TenantDb`]. Every error response is the core's [`ErrorResponse`](tenant_guard_core::ErrorResponse),
//! rendered by [`error_response`], so this adapter and the actix one answer identically.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod extract;
mod future;
mod layer;
mod rejection;
mod response;
mod service;
mod slot;
mod trace;

pub use extract::{Authenticated, CurrentRequestId, Mode, ReadOnly, ReadWrite, TenantDb};
pub use future::ResponseFuture;
pub use layer::TenantGuardLayer;
pub use rejection::TenantGuardRejection;
pub use response::error_response;
pub use service::TenantGuard;
pub use trace::{RequestTracing, RequestTracingLayer};
