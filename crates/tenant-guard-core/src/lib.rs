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

pub mod environment;
pub mod error;
pub mod principal;
pub mod request_id;
pub mod response;
pub mod role;
pub mod verifier;

pub use environment::Environment;
pub use error::AuthError;
pub use principal::{Principal, ServiceContext};
pub use request_id::RequestId;
pub use response::{ErrorResponse, ToErrorResponse};
pub use role::{InvalidRole, Role};
pub use verifier::{Verifier, VerifierBuilder};
