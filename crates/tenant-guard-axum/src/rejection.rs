//! Typed rejections of the extractors.

use axum_core::response::{IntoResponse, Response};
use http::StatusCode;
use tenant_guard_core::{ErrorResponse, ToErrorResponse};

use crate::response::render;

/// Why an extractor of this crate could not produce its value.
///
/// Every variant is a server bug (the layer is missing or misconfigured): it answers 500 with a
/// generic body and logs the cause at `error` level.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TenantGuardRejection {
    /// The request did not pass through a [`TenantGuardLayer`](crate::TenantGuardLayer): the
    /// route is outside the layer (`route_layer` wraps only the routes added before it).
    #[error(
        "no TenantGuardLayer in front of this route: add `.route_layer(TenantGuardLayer::new(..))`"
    )]
    MissingLayer,
}

/// The generic answer to a server bug: 500 with a body that says nothing about the cause.
pub(crate) fn internal_error() -> ErrorResponse {
    ErrorResponse::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        "internal_error",
        "the server encountered an internal error",
    )
}

impl ToErrorResponse for TenantGuardRejection {
    fn to_error_response(&self) -> ErrorResponse {
        match self {
            Self::MissingLayer => internal_error(),
        }
    }
}

impl IntoResponse for TenantGuardRejection {
    fn into_response(self) -> Response {
        tracing::error!(error = %self, "tenant-guard misconfiguration (server bug)");
        render(&self.to_error_response())
    }
}
