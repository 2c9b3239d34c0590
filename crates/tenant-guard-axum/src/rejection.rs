//! Typed rejections of the extractors.

use axum_core::response::{IntoResponse, Response};
use tenant_guard_core::{ErrorResponse, ToErrorResponse};

use crate::response::render;

/// Why an extractor of this crate could not produce its value.
///
/// Every variant except [`Guard`](Self::Guard) is a server bug (the layer is missing or
/// misconfigured): it answers 500 with a generic body and logs the cause at `error` level.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TenantGuardRejection {
    /// The request did not pass through a [`TenantGuardLayer`](crate::TenantGuardLayer): the
    /// route is outside the layer (`route_layer` wraps only the routes added before it).
    #[error(
        "no TenantGuardLayer in front of this route: add `.route_layer(TenantGuardLayer::new(..))`"
    )]
    MissingLayer,
    /// A transaction extractor was used behind a layer that has no pool.
    #[error("the TenantGuardLayer in front of this route has no pool: call `.pool(pool)` on it")]
    MissingPool,
    /// Two transaction extractors in one handler: each request gets one transaction.
    #[error("a transaction was already extracted for this request: take the extractor only once")]
    AlreadyExtracted,
    /// The guard could not begin the scoped transaction (pool timeout, database down, …).
    #[error("could not begin the scoped transaction")]
    Guard(#[source] tenant_guard_postgres::GuardError),
}

/// The generic answer to a server bug (the core's one description of it).
pub(crate) fn internal_error() -> ErrorResponse {
    ErrorResponse::internal()
}

impl ToErrorResponse for TenantGuardRejection {
    fn to_error_response(&self) -> ErrorResponse {
        match self {
            Self::Guard(error) => error.to_error_response(),
            _ => internal_error(),
        }
    }
}

impl IntoResponse for TenantGuardRejection {
    fn into_response(self) -> Response {
        match &self {
            Self::Guard(error) => tracing::warn!(%error, "scoped transaction not begun"),
            bug => tracing::error!(error = %bug, "tenant-guard misconfiguration (server bug)"),
        }
        render(&self.to_error_response())
    }
}
