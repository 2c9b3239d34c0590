//! The adapter's error: what its extractors reject with, rendered through the core's
//! [`ErrorResponse`] like every other error.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use tenant_guard_core::{ErrorResponse, ToErrorResponse};
use tenant_guard_postgres::GuardError;

/// Why an extractor of this crate could not produce its value.
///
/// Every variant except [`Guard`](Self::Guard) is a server bug (the middleware is missing or
/// misconfigured): it answers 500 with a generic JSON body and logs the cause at `error` level.
/// The guard's errors answer as the guard describes them (503 with `Retry-After` when the pool is
/// exhausted, 500 with a generic body otherwise).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TenantGuardError {
    /// The request did not pass through a [`TenantGuard`](crate::TenantGuard) middleware: the
    /// route (or its scope or app) is not wrapped by it.
    #[error("no TenantGuard middleware in front of this route: add `.wrap(TenantGuard::new(..))`")]
    MissingMiddleware,
    /// A transaction extractor was used behind a middleware that has no pool.
    #[error("the TenantGuard in front of this route has no pool: call `.pool(pool)` on it")]
    MissingPool,
    /// Two transaction extractors in one handler: each request gets one transaction.
    #[error("a transaction was already extracted for this request: take the extractor only once")]
    AlreadyExtracted,
    /// The guard reported an error: beginning the scoped transaction (pool timeout, database
    /// down, …) or a statement of the handler (`?` on a [`TenantDb`](crate::TenantDb) query
    /// converts into this variant).
    #[error("the tenant guard reported an error")]
    Guard(#[from] GuardError),
}

/// The generic answer to a server bug (the core's one description of it).
pub(crate) fn internal_error() -> ErrorResponse {
    ErrorResponse::internal()
}

impl TenantGuardError {
    /// Logs the cause: a warning for the guard's errors, an error for server bugs.
    fn log(&self) {
        match self {
            Self::Guard(error) => tracing::warn!(%error, "database request failed"),
            bug => tracing::error!(error = %bug, "tenant-guard misconfiguration (server bug)"),
        }
    }
}

impl ToErrorResponse for TenantGuardError {
    fn to_error_response(&self) -> ErrorResponse {
        match self {
            Self::Guard(error) => error.to_error_response(),
            _ => internal_error(),
        }
    }
}

impl ResponseError for TenantGuardError {
    fn status_code(&self) -> StatusCode {
        StatusCode::from_u16(self.to_error_response().status().as_u16())
            .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }

    /// Logs the cause (once per response) and renders the description.
    fn error_response(&self) -> HttpResponse {
        self.log();
        crate::response::render(&self.to_error_response())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_bugs_are_a_generic_500() {
        for error in [
            TenantGuardError::MissingMiddleware,
            TenantGuardError::MissingPool,
            TenantGuardError::AlreadyExtracted,
        ] {
            assert_eq!(error.status_code(), StatusCode::INTERNAL_SERVER_ERROR);
            let r = error.to_error_response();
            assert_eq!(r.code(), "internal_error");
            assert!(
                !r.body().contains("TenantGuard"),
                "no internals in the body"
            );
        }
    }
}
