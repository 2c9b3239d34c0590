//! Framework-agnostic core of tenant-guard: environment-aware JWT verification, claim mapping,
//! the verified [`Principal`], and the HTTP description of every error.
//!
//! It knows no web framework and no database; the adapters and the guard build on it.
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
pub mod environment;
pub mod error;
mod extract;
mod jwk;
pub mod keys;
pub mod principal;
#[cfg(feature = "jwks-remote")]
pub mod remote;
pub mod request_id;
pub mod response;
pub mod role;
mod token;
pub mod trace;
pub mod verifier;

pub use algorithm::Algorithm;
pub use cache::DEFAULT_CACHE_CAPACITY;
pub use dangerous::DemoPrincipal;
pub use environment::Environment;
pub use error::AuthError;
pub use keys::KeySet;
pub use principal::{Principal, ServiceContext};
pub use request_id::RequestId;
pub use response::{ErrorResponse, ToErrorResponse};
pub use role::{InvalidRole, Role};
pub use verifier::{Verifier, VerifierBuilder};
