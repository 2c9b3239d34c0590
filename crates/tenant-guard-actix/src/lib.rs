//! actix-web adapter for tenant-guard: an authentication middleware, the verified principal and a
//! transaction scoped to the caller's org and role, as extractors.
//!
//! ```no_run
//! use actix_web::{App, HttpResponse, HttpServer, web};
//! use tenant_guard_actix::{
//!     Authenticated, ReadOnly, RequestTracing, TenantDb, TenantGuard, TenantGuardError,
//! };
//! use tenant_guard_core::{Environment, Verifier};
//! use tenant_guard_postgres::TenantPool;
//!
//! async fn names(db: TenantDb<ReadOnly>) -> Result<HttpResponse, TenantGuardError> {
//!     // Row Level Security scopes this to the caller's org: no `WHERE org_id = …` needed.
//!     let rows = db.query("SELECT name FROM projects", &[]).await?;
//!     let names: Vec<String> = rows.iter().map(|r| r.get(0)).collect();
//!     Ok(HttpResponse::Ok().json(names))
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
//! let guard = TenantGuard::new(verifier).pool(pool);
//! HttpServer::new(move || {
//!     App::new()
//!         .wrap(RequestTracing::new()) // x-request-id and a span for every response
//!         .route("/healthz", web::get().to(HttpResponse::Ok)) // no token needed
//!         .service(
//!             web::scope("/api")
//!                 .wrap(guard.clone())
//!                 .route("/projects", web::get().to(names))
//!                 .route("/me", web::get().to(me)),
//!         )
//! })
//! .bind("127.0.0.1:3000")?
//! .run()
//! .await?;
//! # Ok(())
//! # }
//! ```
//!
//! The pipeline itself (request id and span, authentication, role check, rate limit, the
//! transaction's hand-over and its commit or rollback by status, error rendering, metrics) lives
//! in `tenant_guard_http`, shared with the axum adapter and the tower layer tonic and hyper use.
//! What this crate adds is what actix-web forces: the middleware's `Transform` and service
//! ([`TenantGuard`], [`RequestTracing`]), the extractors ([`Authenticated`],
//! [`CurrentRequestId`], [`TenantDb`]), their error ([`TenantGuardError`]), and the conversion
//! between actix-web's `http` 0.2 types and the pipeline's `http` 1.x ([`error_response`]).
//!
//! actix-web runs each request on one thread: the middleware's future is boxed and not `Send`,
//! as is usual for actix middleware.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod error;
mod extract;
mod middleware;
mod response;
#[cfg(feature = "sqlx")]
mod sqlx;
mod trace;

pub use error::TenantGuardError;
pub use extract::{Authenticated, CurrentRequestId, TenantDb};
pub use middleware::{TenantGuard, TenantGuardMiddleware};
pub use response::error_response;
#[cfg(feature = "sqlx")]
pub use sqlx::SqlxDb;
pub use tenant_guard_http::{Mode, ReadOnly, ReadWrite};
pub use trace::{RequestTracing, RequestTracingMiddleware};
