//! [`GuardRejection`]: why the pipeline could not give a handler what it asked for.

use tenant_guard_core::{ErrorResponse, ToErrorResponse};
use tenant_guard_postgres::GuardError;

/// Why an extractor could not produce its value, or a statement of a
/// [`TenantDb`](crate::TenantDb) failed. Each adapter's rejection wraps this one (with
/// `From<GuardError>`, so `?` on a statement works in every framework's handlers).
///
/// Every variant except [`Guard`](Self::Guard) is a server bug (the guard is missing or
/// misconfigured): it answers 500 with a generic body and [`log`](Self::log)s the cause at
/// `error` level. The guard's errors answer as the guard describes them (503 with
/// `Retry-After` when the pool is exhausted, 500 with a generic body otherwise).
///
/// ```
/// use tenant_guard_core::ToErrorResponse;
/// use tenant_guard_http::GuardRejection;
///
/// let r = GuardRejection::MissingGuard.to_error_response();
/// assert_eq!((r.status().as_u16(), r.code()), (500, "internal_error"));
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GuardRejection {
    /// The request did not pass through a guard: the route is not wrapped by one.
    #[error("no tenant guard in front of this route: wrap the route with the adapter's guard")]
    MissingGuard,
    /// A transaction was asked for behind a guard without a pool (and no outer guard has one).
    #[error("the tenant guard in front of this route has no pool: call `.pool(pool)` on it")]
    MissingPool,
    /// Two transaction extractors in one handler: each request gets one transaction.
    #[error("a transaction was already extracted for this request: take the extractor only once")]
    AlreadyExtracted,
    /// The guard reported an error: checking out or scoping the transaction (pool timeout,
    /// database down, …) or a statement of the handler.
    #[error("the tenant guard reported an error")]
    Guard(#[from] GuardError),
    /// The sqlx guard reported an error (feature `sqlx`): beginning the transaction or a
    /// statement of the handler.
    #[cfg(feature = "sqlx")]
    #[error("the tenant guard reported an error")]
    Sqlx(#[from] tenant_guard_sqlx::SqlxGuardError),
}

impl GuardRejection {
    /// Logs the cause: a warning for the guard's errors, an error for server bugs. Adapters call
    /// it once, when they render the rejection.
    pub fn log(&self) {
        match self {
            Self::Guard(error) => tracing::warn!(%error, "database request failed"),
            #[cfg(feature = "sqlx")]
            Self::Sqlx(error) => tracing::warn!(%error, "database request failed"),
            bug => tracing::error!(error = %bug, "tenant-guard misconfiguration (server bug)"),
        }
    }
}

impl ToErrorResponse for GuardRejection {
    fn to_error_response(&self) -> ErrorResponse {
        match self {
            Self::Guard(error) => error.to_error_response(),
            #[cfg(feature = "sqlx")]
            Self::Sqlx(error) => error.to_error_response(),
            _ => ErrorResponse::internal(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_bugs_are_a_generic_500() {
        for error in [
            GuardRejection::MissingGuard,
            GuardRejection::MissingPool,
            GuardRejection::AlreadyExtracted,
        ] {
            let r = error.to_error_response();
            assert_eq!(r.status(), http::StatusCode::INTERNAL_SERVER_ERROR);
            assert_eq!(r.code(), "internal_error");
            assert!(!r.body().contains("guard"), "no internals in the body");
        }
    }
}
