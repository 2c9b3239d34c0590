//! [`DbFailure`]: what a database failure means to a client, shared by every database backend
//! (`tenant-guard-postgres`, `tenant-guard-sqlx`), so both answer a failure with the same status,
//! code, message and `Retry-After`.

use http::StatusCode;

use crate::response::{ErrorResponse, ToErrorResponse};

/// Seconds a client is told to wait (`Retry-After`) after a transient database failure.
pub const RETRY_AFTER_SECONDS: u64 = 1;

/// The client-facing kind of a database failure. A backend's error maps each of its variants to
/// one of these; the HTTP answer is decided here, once.
///
/// ```
/// use tenant_guard_core::{DbFailure, ToErrorResponse};
///
/// let response = DbFailure::ForbiddenByPolicy.to_error_response();
/// assert_eq!(response.status(), http::StatusCode::FORBIDDEN);
/// assert_eq!(response.code(), "forbidden_by_policy");
/// assert_eq!(DbFailure::Busy.to_error_response().retry_after(), Some(1));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum DbFailure {
    /// No pooled connection became free in time: 503 `database_busy`, transient.
    Busy,
    /// The database cannot be reached or the connection was lost: 503 `database_unavailable`,
    /// transient.
    Unavailable,
    /// RLS or a missing privilege refused a statement: 403 `forbidden_by_policy`.
    ForbiddenByPolicy,
    /// The principal's role is not one the pool switches to: 403 `role_not_allowed`.
    RoleNotAllowed,
    /// A unique constraint was violated: 409 `conflict`.
    UniqueViolation,
    /// Another integrity constraint was violated: 422 `constraint_violation`.
    ConstraintViolation,
    /// Serialization failure or deadlock: 503 `transaction_conflict`, transient.
    TransactionConflict,
    /// The statement timeout cancelled a statement: 503 `database_timeout`, transient.
    StatementTimeout,
    /// Any other database error: 500 `database_error`.
    Database,
    /// A server-side misconfiguration or bug (scoping failed, unsafe login, …): the generic 500
    /// `internal_error`, with nothing of the cause in the body.
    Internal,
}

impl DbFailure {
    /// `true` for failures worth retrying later (answered with `Retry-After`).
    pub fn is_transient(self) -> bool {
        matches!(
            self,
            Self::Busy | Self::Unavailable | Self::TransactionConflict | Self::StatementTimeout
        )
    }

    /// The stable error code of the HTTP body.
    pub fn code(self) -> &'static str {
        match self {
            Self::Busy => "database_busy",
            Self::Unavailable => "database_unavailable",
            Self::ForbiddenByPolicy => "forbidden_by_policy",
            Self::RoleNotAllowed => "role_not_allowed",
            Self::UniqueViolation => "conflict",
            Self::ConstraintViolation => "constraint_violation",
            Self::TransactionConflict => "transaction_conflict",
            Self::StatementTimeout => "database_timeout",
            Self::Database => "database_error",
            Self::Internal => "internal_error",
        }
    }

    /// The HTTP status.
    pub fn status(self) -> StatusCode {
        match self {
            Self::Busy | Self::Unavailable | Self::TransactionConflict | Self::StatementTimeout => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            Self::ForbiddenByPolicy | Self::RoleNotAllowed => StatusCode::FORBIDDEN,
            Self::UniqueViolation => StatusCode::CONFLICT,
            Self::ConstraintViolation => StatusCode::UNPROCESSABLE_ENTITY,
            Self::Database | Self::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// A fixed, client-safe message for the HTTP body.
    fn public_message(self) -> &'static str {
        match self {
            Self::Busy => "the service is busy; retry shortly",
            Self::Unavailable => "the database is temporarily unavailable; retry shortly",
            Self::ForbiddenByPolicy => "the operation is not permitted for this organization",
            Self::RoleNotAllowed => "the token's role is not allowed here",
            Self::UniqueViolation => "a record with the same unique value already exists",
            Self::ConstraintViolation => "the data violates a database constraint",
            Self::TransactionConflict => "the request conflicted with another; retry it",
            Self::StatementTimeout => "the database took too long to answer; retry shortly",
            Self::Database | Self::Internal => "internal server error",
        }
    }
}

impl ToErrorResponse for DbFailure {
    fn to_error_response(&self) -> ErrorResponse {
        let response = ErrorResponse::new(self.status(), self.code(), self.public_message());
        if self.is_transient() {
            response.with_retry_after(RETRY_AFTER_SECONDS)
        } else {
            response
        }
    }
}
