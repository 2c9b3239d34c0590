//! axum adapter for tenant-guard: an authentication layer, the verified principal and a
//! transaction scoped to the caller's org and role, as extractors.
//!
//! ```
//! use axum::{Router, routing::get};
//! use tenant_guard_axum::{Authenticated, TenantGuardLayer};
//! use tenant_guard_core::{Environment, Verifier};
//!
//! async fn me(Authenticated(principal): Authenticated) -> String {
//!     principal.org_id().to_string()
//! }
//!
//! let verifier = Verifier::builder(Environment::Production)
//!     .hmac_secret("a-long-random-secret-from-your-vault")
//!     .build()
//!     .unwrap();
//! let app: Router = Router::new()
//!     .route("/me", get(me))
//!     .route_layer(TenantGuardLayer::new(verifier))
//!     .route("/healthz", get(|| async { "ok" })); // outside the layer: no token
//! ```
//!
//! What happens per request is described on [`TenantGuardLayer`]. Every error response is the core's [`ErrorResponse`](tenant_guard_core::ErrorResponse),
//! rendered by [`error_response`], so this adapter and the actix one answer identically.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod extract;
mod future;
mod layer;
mod rejection;
mod response;
mod service;
mod trace;

pub use extract::{Authenticated, CurrentRequestId};
pub use future::ResponseFuture;
pub use layer::TenantGuardLayer;
pub use rejection::TenantGuardRejection;
pub use response::error_response;
pub use service::TenantGuard;
pub use trace::{RequestTracing, RequestTracingLayer};
