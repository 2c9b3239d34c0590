//! tenant-guard's request pipeline, written once for every framework: the axum and actix-web
//! adapters are thin shells around it, and its tower [`TenantGuardLayer`] guards tonic and bare
//! hyper services as they are.
//!
//! ```no_run
//! use tenant_guard_core::{Environment, Verifier};
//! use tenant_guard_http::{RequestTracingLayer, TenantGuardLayer};
//! use tenant_guard_postgres::TenantPool;
//! use tower_layer::Layer;
//!
//! # fn demo<S>(pool: TenantPool, service: S) -> Result<(), Box<dyn std::error::Error>> {
//! let verifier = Verifier::builder(Environment::from_env())
//!     .hmac_secret(std::env::var("JWT_SECRET")?)
//!     .build()?;
//! // Any `tower::Service<http::Request<B>, Response = http::Response<B2>>`: a tonic server's
//! // routes, a hyper service. Handlers find a `RequestContext` in the request's extensions.
//! let guarded = TenantGuardLayer::new(verifier).pool(pool).layer(service);
//! let traced = RequestTracingLayer::new().layer(guarded);
//! # Ok(())
//! # }
//! ```
//!
//! # Where each step lives
//!
//! | step | where |
//! |---|---|
//! | request id, `request` span, W3C `traceparent`/`tracestate` | [`RequestTrace`], [`record_trace_context`] (span fields: `tenant_guard_core::trace`) |
//! | authenticate, role check, rate limit, outer-pool rule | [`GuardConfig::admit`] → [`Admission`] |
//! | the headers read, for frameworks on another `http` version | [`pipeline_headers`] |
//! | the handler's context (principal, request id) | [`RequestContext`] |
//! | the scoped transaction, checked out at its first statement | [`TenantDb`] ([`ReadOnly`], [`ReadWrite`]); over sqlx (feature `sqlx`): `SqlxDb` |
//! | commit/rollback by status, replacement responses, `x-request-id`, `RateLimit-*` | [`Finisher`], [`commits`] |
//! | error rendering (status, headers, JSON body) | `tenant_guard_core::ErrorResponse`, [`GuardRejection`]; gRPC statuses in [`grpc`] |
//! | metrics (requests, rejections, orgs, pool, transactions) | recorded by the steps above through `tenant_guard_core::trace`/`metrics` |
//! | tower / tonic / hyper | [`TenantGuardLayer`], [`RequestTracingLayer`] ([`GuardLayer`], [`TracingLayer`] for a framework's route template) |
//!
//! An adapter calls, per request: [`RequestTrace::reuse_or_start`], then
//! [`GuardConfig::admit`] (and [`Admission::resolve`]); on a refusal it renders it; otherwise it puts
//! the [`RequestContext`] into the request and calls the handler, then
//! [`Finisher::finish`]`(commits(status))`, [`Finisher::stamp`] and [`RequestTrace::finish`].
//! Extractors call
//! [`RequestContext::db`]. Nothing else is the adapter's to decide; even its types are declared
//! here ([`guard_builder!`], [`extractor_types!`], [`rejection_type!`]), so adapters only add
//! their framework's trait impls.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod adapter;
mod admit;
mod cap;
mod config;
mod context;
mod db;
mod finish;
pub mod grpc;
mod handoff;
mod headers;
mod layer;
mod membership;
mod org_source;
mod rejection;
#[cfg(feature = "sqlx")]
mod sqlx;
mod trace;

pub use admit::{Admission, Admitted, PendingAdmission, Refused};
pub use config::GuardConfig;
pub use context::RequestContext;
pub use db::TenantDb;
pub use finish::{Finish, Finisher, commits};
pub use handoff::{Mode, ReadOnly, ReadWrite};
pub use headers::{HeaderUse, pipeline_headers};
pub use layer::TenantGuard;
pub use layer::{
    GuardBody, GuardLayer, GuardService, NoRoute, RequestTracingLayer, ResponseFuture, RouteSource,
    TenantGuardLayer, TracedFuture, Tracing, TracingLayer,
};
pub use membership::{
    DEFAULT_MEMBERSHIP_CACHE_CAPACITY, DEFAULT_MEMBERSHIP_CACHE_TTL, DEFAULT_MEMBERSHIP_SQL,
    MembershipCache, OrgMembership, TokenOrg,
};
pub use org_source::{InvalidOrgPath, OrgPath, OrgSource};
pub use rejection::GuardRejection;
#[cfg(feature = "sqlx")]
pub use sqlx::SqlxDb;
pub use trace::{RequestTrace, TRACEPARENT, TRACESTATE, record_trace_context};

#[doc(hidden)]
pub mod __private {
    pub use tenant_guard_core::{
        ErrorResponse, Principal, RateLimitBackend, RequestId, Role, ToErrorResponse,
    };
    pub use tenant_guard_postgres::{GuardError, TenantPool};
    #[cfg(feature = "sqlx")]
    pub use tenant_guard_sqlx::{SqlxGuard, SqlxGuardError, sqlx::Error as SqlxError};
}

/// Without the `sqlx` feature, [`guard_builder!`] adds no `sqlx_pool`.
#[cfg(not(feature = "sqlx"))]
#[doc(hidden)]
#[macro_export]
macro_rules! __sqlx_builder {
    () => {};
}
