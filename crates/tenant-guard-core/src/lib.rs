//! Framework-agnostic core of tenant-guard: environment-aware JWT verification, claim mapping,
//! the verified [`Principal`], and the HTTP description of every error.
//!
//! It knows no web framework and no database; the adapters and the guard build on it.
//!
//! ```
//! use tenant_guard_core::{AuthError, Environment, ToErrorResponse, Verifier};
//!
//! // Once, at startup (or `Verifier::from_env()`; see the `config` module for the variables).
//! let verifier = Verifier::builder(Environment::Production)
//!     .hmac_secret("a-long-random-secret-from-your-vault")
//!     .org_claim("app_metadata.org_id")
//!     .build()?;
//!
//! // Per request: only `Authorization: Bearer <token>` is read.
//! let mut headers = http::HeaderMap::new();
//! headers.insert("x-user-id", "admin".parse().unwrap()); // ignored, always
//! let err = verifier.authenticate(&headers).unwrap_err();
//! assert_eq!(err, AuthError::MissingToken);
//! let response = err.to_error_response();
//! assert_eq!(response.status(), 401);
//! assert_eq!(response.body(), r#"{"error":"missing_token","message":"a bearer token is required"}"#);
//! # Ok::<(), AuthError>(())
//! ```
//!
//! # Features
//!
//! - `aws_lc_rs` (default) or `rust_crypto`: the crypto backend of jsonwebtoken. **Exactly one**
//!   must be on; none or both is a `compile_error!` here (jsonwebtoken itself would panic at the
//!   first verification). To use `rust_crypto`, turn default features off.
//! - `jwks-remote`: fetch and refresh a JWK set over HTTP(S) in the background (module `remote`,
//!   `VerifierBuilder::jwks_url`, `JWT_JWKS_URL`).
//! - `metrics`: request, rejection and per-org counters and latency histograms through the
//!   `metrics` facade (module `metrics`; the guard and the adapters record into it).
//!
//! # Fail closed
//!
//! An unknown environment is production; no key is a build error in every environment; the
//! development-only conveniences live in [`dangerous`] and are build errors elsewhere; no identity
//! is ever read from anything but a verified token.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

#[cfg(all(feature = "aws_lc_rs", feature = "rust_crypto"))]
compile_error!(
    "tenant-guard-core: enable exactly one crypto backend; both `aws_lc_rs` and `rust_crypto` are on. \
     Depend on tenant-guard with `default-features = false, features = [\"rust_crypto\"]` to pick rust_crypto."
);
#[cfg(not(any(feature = "aws_lc_rs", feature = "rust_crypto")))]
compile_error!(
    "tenant-guard-core: enable exactly one crypto backend feature: `aws_lc_rs` (default) or `rust_crypto`."
);

pub mod algorithm;
mod cache;
mod claims;
pub mod config;
pub mod dangerous;
mod db_failure;
pub mod environment;
pub mod error;
mod extract;
pub mod identity;
pub mod issuer;
mod jwk;
pub mod keys;
#[cfg(feature = "metrics")]
pub mod metrics;
#[cfg(feature = "jwks-remote")]
mod oidc;
pub mod org_id;
pub mod principal;
mod profile;
pub mod rate_limit;
#[cfg(feature = "jwks-remote")]
pub mod remote;
pub mod request_id;
pub mod response;
pub mod role;
pub mod scope;
mod token;
pub mod trace;
pub mod verifier;

pub use algorithm::Algorithm;
pub use cache::DEFAULT_CACHE_CAPACITY;
pub use claims::RoleArray;
pub use dangerous::DemoPrincipal;
pub use db_failure::{DbFailure, RETRY_AFTER_SECONDS};
pub use environment::Environment;
pub use error::AuthError;
pub use identity::{Identity, PendingOrg};
pub use issuer::IssuerProfile;
pub use keys::KeySet;
pub use org_id::{InvalidOrgId, OrgId, OrgIdKind, UnknownOrgIdKind};
pub use principal::{Principal, ServiceContext};
pub use rate_limit::{
    InvalidRateLimit, RateLimitBackend, RateLimitCheck, RateLimitError, RateLimitStatus,
    RateLimited, RateLimiter,
};
pub use request_id::RequestId;
pub use response::{ErrorResponse, ToErrorResponse};
pub use role::{InvalidRole, RESERVED_ROLE_NAMES, Role};
pub use verifier::{Verifier, VerifierBuilder};
