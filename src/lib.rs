//! Multi-tenant Postgres services, safe by construction.
//!
//! Each request's JWT is verified (strictly outside development), the org and role come only from
//! the verified token, and the handler gets a Postgres transaction already scoped to that org and
//! role, so Row Level Security enforces isolation even when application code is wrong. Background
//! jobs get an explicit, audited service-role path.
//!
//! This crate is the facade: it re-exports the member crates, each behind a feature.
//!
//! | feature | what it adds |
//! |---|---|
//! | *(always)* | the core: [`Verifier`], [`Principal`], [`AuthError`], [`ErrorResponse`], [`RequestId`], … |
//! | `aws_lc_rs` (default) / `rust_crypto` | the crypto backend of JWT verification (exactly one) |
//! | `postgres` | [`postgres`]: the guard (scoped pool, `with_tenant_guard`, support SQL) |
//! | `http` | [`http`]: the request pipeline every adapter shares, as a tower layer for tonic and hyper (implies `postgres`) |
//! | `axum` | [`axum`]: the axum layer and extractors (implies `http`) |
//! | `actix` | [`actix`]: the actix-web middleware and extractors (implies `http`) |
//! | `metrics` | request, rejection, per-org and guard metrics through the `metrics` facade (`core::metrics`) |
//! | `full` | all of the above |
//!
//! ```
//! use tenant_guard::{Environment, Verifier};
//!
//! // Fail closed: production without a key refuses to build.
//! assert!(Verifier::builder(Environment::Production).build().is_err());
//!
//! let verifier = Verifier::builder(Environment::Production)
//!     .hmac_secret("a-long-random-secret-from-your-vault")
//!     .build()
//!     .unwrap();
//! let err = verifier.authenticate(&http::HeaderMap::new()).unwrap_err();
//! assert_eq!(err.status(), http::StatusCode::UNAUTHORIZED);
//! assert_eq!(err.code(), "missing_token");
//! ```
//!
//! With the `axum` feature, one layer authenticates every route it wraps and a handler takes its
//! scoped transaction as an extractor: see [`axum`] and `examples/reference_axum.rs`.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

/// The framework- and database-independent core (also re-exported at the crate root).
pub use tenant_guard_core as core;
pub use tenant_guard_core::*;

/// The guard: Postgres transactions scoped to the verified org and role.
#[cfg(feature = "postgres")]
pub use tenant_guard_postgres as postgres;

/// The sqlx backend: sqlx transactions scoped exactly like the tokio-postgres guard's.
#[cfg(feature = "sqlx")]
pub use tenant_guard_sqlx as sqlx;

/// The request pipeline shared by every adapter, and its tower layer (tonic, hyper).
#[cfg(feature = "http")]
pub use tenant_guard_http as http;

/// The axum adapter: [`TenantGuardLayer`](tenant_guard_axum::TenantGuardLayer) and extractors.
#[cfg(feature = "axum")]
pub use tenant_guard_axum as axum;

/// The actix-web adapter: middleware and extractors.
#[cfg(feature = "actix")]
pub use tenant_guard_actix as actix;
