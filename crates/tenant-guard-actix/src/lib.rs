//! actix-web adapter for tenant-guard.
//!
//! [`TenantGuard`] is the middleware: it authenticates each request with the core
//! [`Verifier`](tenant_guard_core::Verifier) before anything else runs, answers failures with the
//! core's response (401 with an RFC 6750 challenge, or 403, and a JSON body), and hands the
//! verified [`Principal`](tenant_guard_core::Principal) to the [`Authenticated`] extractor.
//! [`RequestTracing`] gives routes outside the guard (health checks, unknown routes) their
//! `x-request-id` and span. Errors render through [`error_response`], so statuses, headers and
//! bodies are those of the axum adapter byte for byte.
//!
//! ```
//! use actix_web::{App, HttpResponse, http::StatusCode, test, web};
//! use tenant_guard_actix::{Authenticated, RequestTracing, TenantGuard};
//! use tenant_guard_core::{Environment, Verifier};
//!
//! async fn me(Authenticated(principal): Authenticated) -> HttpResponse {
//!     HttpResponse::Ok().body(principal.user_id().to_owned())
//! }
//!
//! # actix_web::rt::System::new().block_on(async {
//! let verifier = Verifier::builder(Environment::Production)
//!     .hmac_secret("a-long-random-secret-from-your-vault")
//!     .build()
//!     .unwrap();
//! let app = test::init_service(
//!     App::new()
//!         .wrap(RequestTracing::new())
//!         .route("/healthz", web::get().to(HttpResponse::Ok))
//!         .service(web::resource("/me").wrap(TenantGuard::new(verifier)).get(me)),
//! )
//! .await;
//! let res = test::call_service(&app, test::TestRequest::get().uri("/me").to_request()).await;
//! assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
//! assert!(res.headers().contains_key("x-request-id"));
//! # });
//! ```
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod error;
mod extract;
mod guard;
mod headers;
mod request_id;
mod response;

pub use error::TenantGuardError;
pub use extract::{Authenticated, CurrentRequestId};
pub use guard::{TenantGuard, TenantGuardMiddleware};
pub use request_id::{RequestTracing, RequestTracingMiddleware};
pub use response::error_response;
