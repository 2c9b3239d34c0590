//! [`SqlxGuardError`]: everything the sqlx guard can fail with, and its HTTP description, the
//! same as the tokio-postgres guard's (`tenant_guard_postgres::GuardError`).

use http::StatusCode;
use tenant_guard_core::{DbFailure, ErrorResponse, ToErrorResponse};

/// An error of the sqlx guard: the pool, the scoping, or a statement run on a scoped
/// transaction (convert a statement's `sqlx::Error` with `?`: `From<sqlx::Error>` classifies it).
///
/// Its `Display` never contains SQL, parameters or row data (the server's message stays in the
/// [`source`](std::error::Error::source) for your logs); the HTTP response built by
/// [`ToErrorResponse`] carries only a fixed code and message. The table is the tokio-postgres
/// guard's, variant for variant:
///
/// | variant | status | `error` code |
/// |---|---|---|
/// | [`PoolTimeout`](Self::PoolTimeout) | 503 + `Retry-After` | `database_busy` |
/// | [`Unavailable`](Self::Unavailable), [`PoolClosed`](Self::PoolClosed) | 503 + `Retry-After` | `database_unavailable` |
/// | [`ForbiddenByPolicy`](Self::ForbiddenByPolicy) (SQLSTATE 42501) | 403 | `forbidden_by_policy` |
/// | [`RoleNotAllowed`](Self::RoleNotAllowed) | 403 | `role_not_allowed` |
/// | [`UniqueViolation`](Self::UniqueViolation) (23505) | 409 | `conflict` |
/// | [`ConstraintViolation`](Self::ConstraintViolation) (other 23xxx) | 422 | `constraint_violation` |
/// | [`TransactionConflict`](Self::TransactionConflict) (40001, 40P01) | 503 + `Retry-After` | `transaction_conflict` |
/// | [`StatementTimeout`](Self::StatementTimeout) (57014) | 503 + `Retry-After` | `database_timeout` |
/// | everything else | 500 | `database_error` or `internal_error` |
///
/// ```
/// use tenant_guard_core::ToErrorResponse;
/// use tenant_guard_sqlx::SqlxGuardError;
///
/// let e = SqlxGuardError::from(sqlx::Error::PoolTimedOut);
/// assert_eq!(e.to_error_response().status(), 503);
/// assert_eq!(e.code(), "database_busy");
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SqlxGuardError {
    /// No pooled connection became free within the pool's acquire timeout.
    #[error("no database connection became available within the pool's acquire timeout")]
    PoolTimeout,

    /// The pool has been closed.
    #[error("the database pool is closed")]
    PoolClosed,

    /// The database could not be reached, or the connection was lost (the transaction, if any,
    /// was rolled back by the server).
    #[error("the database is unavailable")]
    Unavailable(#[source] sqlx::Error),

    /// The principal's role is not one the guard switches to for users (see
    /// [`SqlxGuardBuilder::user_roles`](crate::SqlxGuardBuilder::user_roles)); nothing was sent
    /// to the database.
    #[error("role `{0}` is not allowed on this pool")]
    RoleNotAllowed(String),

    /// Scoping the transaction failed (for example the login may not switch to the role: run the
    /// support SQL and grant the role to the login). No statement of the caller ran scoped.
    #[error("could not scope the transaction (SQLSTATE {})", sqlstate(.0))]
    Scope(#[source] sqlx::Error),

    /// Row Level Security or a missing privilege refused the statement (SQLSTATE `42501`).
    #[error("refused by a row-level security policy or privilege (SQLSTATE 42501)")]
    ForbiddenByPolicy(#[source] sqlx::Error),

    /// A unique constraint was violated (SQLSTATE `23505`).
    #[error("unique constraint violated{}", constraint_suffix(.0))]
    UniqueViolation(#[source] sqlx::Error),

    /// Another integrity constraint was violated (SQLSTATE class `23`).
    #[error("integrity constraint violated (SQLSTATE {}){}", sqlstate(.0), constraint_suffix(.0))]
    ConstraintViolation(#[source] sqlx::Error),

    /// Serialization failure or deadlock (SQLSTATE `40001`, `40P01`): retrying may succeed.
    #[error("transaction conflict (SQLSTATE {}); retrying may succeed", sqlstate(.0))]
    TransactionConflict(#[source] sqlx::Error),

    /// The statement ran longer than the statement timeout (SQLSTATE `57014`).
    #[error("statement cancelled by the statement timeout (SQLSTATE 57014)")]
    StatementTimeout(#[source] sqlx::Error),

    /// Any other database error, or a client-side error of the driver (a column of the wrong
    /// type, no row where one was expected).
    #[error("{}", describe(.0))]
    Database(#[source] sqlx::Error),
}

fn sqlstate(error: &sqlx::Error) -> &str {
    error
        .as_database_error()
        .and_then(|e| e.code())
        .map_or("none", |c| match c {
            std::borrow::Cow::Borrowed(s) => s,
            // sqlx-postgres always borrows the code; never reached.
            std::borrow::Cow::Owned(_) => "other",
        })
}

/// A server error by its SQLSTATE only (its message may quote data); a client-side error by its
/// kind (sqlx's messages name columns and types, never values, but stay conservative).
fn describe(error: &sqlx::Error) -> String {
    match error {
        sqlx::Error::Database(_) => format!("database error (SQLSTATE {})", sqlstate(error)),
        sqlx::Error::RowNotFound => "no row where one was expected".to_owned(),
        sqlx::Error::ColumnDecode { index, .. } => format!("cannot decode column {index}"),
        sqlx::Error::ColumnNotFound(name) => format!("no column `{name}`"),
        sqlx::Error::Encode(_) => "cannot encode a parameter".to_owned(),
        sqlx::Error::Decode(_) => "cannot decode a value".to_owned(),
        _ => "database client error".to_owned(),
    }
}

fn constraint_suffix(error: &sqlx::Error) -> String {
    error
        .as_database_error()
        .and_then(|e| e.constraint())
        .map(|c| format!(" (constraint `{c}`)"))
        .unwrap_or_default()
}

/// The connection (not the statement) failed: I/O, TLS, protocol, or a server error of the
/// connection classes (08, 57P, 53300). Transient.
fn is_connection_failure(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::Protocol(_)
        | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(_) => {
            let c = sqlstate(error);
            c.starts_with("08") || c.starts_with("57P") || c == "53300"
        }
        _ => false,
    }
}

impl From<sqlx::Error> for SqlxGuardError {
    /// Classifies an error of a statement run for the caller.
    fn from(error: sqlx::Error) -> Self {
        match error {
            sqlx::Error::PoolTimedOut => return Self::PoolTimeout,
            sqlx::Error::PoolClosed => return Self::PoolClosed,
            _ => {}
        }
        if is_connection_failure(&error) {
            return Self::Unavailable(error);
        }
        match sqlstate(&error) {
            "42501" => Self::ForbiddenByPolicy(error),
            "23505" => Self::UniqueViolation(error),
            c if c.starts_with("23") => Self::ConstraintViolation(error),
            "40001" | "40P01" => Self::TransactionConflict(error),
            "57014" => Self::StatementTimeout(error),
            _ => Self::Database(error),
        }
    }
}

impl SqlxGuardError {
    /// Classifies an error of the scoping statement: a failing connection is
    /// [`Unavailable`](Self::Unavailable) like for any statement, anything else a
    /// [`Scope`](Self::Scope) error.
    pub(crate) fn from_scope(error: sqlx::Error) -> Self {
        match Self::from(error) {
            Self::Database(e)
            | Self::ForbiddenByPolicy(e)
            | Self::UniqueViolation(e)
            | Self::ConstraintViolation(e)
            | Self::TransactionConflict(e)
            | Self::StatementTimeout(e) => Self::Scope(e),
            other => other,
        }
    }

    /// The SQLSTATE, when the error came from the server.
    pub fn sqlstate(&self) -> Option<&str> {
        self.sqlx()
            .filter(|e| e.as_database_error().is_some())
            .map(sqlstate)
    }

    /// The underlying driver error, if any.
    pub fn sqlx(&self) -> Option<&sqlx::Error> {
        match self {
            Self::Unavailable(e)
            | Self::Scope(e)
            | Self::ForbiddenByPolicy(e)
            | Self::UniqueViolation(e)
            | Self::ConstraintViolation(e)
            | Self::TransactionConflict(e)
            | Self::StatementTimeout(e)
            | Self::Database(e) => Some(e),
            Self::PoolTimeout | Self::PoolClosed | Self::RoleNotAllowed(_) => None,
        }
    }

    /// `true` when row-level security or a missing privilege refused the statement.
    pub fn is_forbidden_by_policy(&self) -> bool {
        matches!(self, Self::ForbiddenByPolicy(_))
    }

    /// `true` for transient failures worth retrying later.
    pub fn is_transient(&self) -> bool {
        self.failure().is_transient()
    }

    /// The stable error code of the HTTP body (`forbidden_by_policy`, `database_busy`, …).
    pub fn code(&self) -> &'static str {
        self.failure().code()
    }

    /// The HTTP status adapters answer with.
    pub fn status(&self) -> StatusCode {
        self.failure().status()
    }

    /// What this error means to a client: the same mapping as the tokio-postgres guard's.
    pub fn failure(&self) -> DbFailure {
        match self {
            Self::PoolTimeout => DbFailure::Busy,
            Self::PoolClosed | Self::Unavailable(_) => DbFailure::Unavailable,
            Self::ForbiddenByPolicy(_) => DbFailure::ForbiddenByPolicy,
            Self::RoleNotAllowed(_) => DbFailure::RoleNotAllowed,
            Self::UniqueViolation(_) => DbFailure::UniqueViolation,
            Self::ConstraintViolation(_) => DbFailure::ConstraintViolation,
            Self::TransactionConflict(_) => DbFailure::TransactionConflict,
            Self::StatementTimeout(_) => DbFailure::StatementTimeout,
            Self::Database(_) => DbFailure::Database,
            Self::Scope(_) => DbFailure::Internal,
        }
    }
}

impl ToErrorResponse for SqlxGuardError {
    fn to_error_response(&self) -> ErrorResponse {
        self.failure().to_error_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tenant_guard_core::RETRY_AFTER_SECONDS;

    #[test]
    fn pool_errors_are_503_with_retry_after() {
        for (e, code) in [
            (sqlx::Error::PoolTimedOut, "database_busy"),
            (sqlx::Error::PoolClosed, "database_unavailable"),
        ] {
            let r = SqlxGuardError::from(e).to_error_response();
            assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
            assert_eq!(r.code(), code);
            assert_eq!(r.retry_after(), Some(RETRY_AFTER_SECONDS));
        }
    }

    #[test]
    fn io_errors_are_unavailable_and_role_refusals_403() {
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionReset, "reset");
        let e = SqlxGuardError::from(sqlx::Error::Io(io));
        assert!(matches!(e, SqlxGuardError::Unavailable(_)));
        let r = SqlxGuardError::RoleNotAllowed("service_role".into()).to_error_response();
        assert_eq!(r.status(), StatusCode::FORBIDDEN);
        assert!(!r.body().contains("service_role"));
    }

    #[test]
    fn client_errors_never_quote_values() {
        let e = SqlxGuardError::from(sqlx::Error::RowNotFound);
        assert_eq!(e.to_error_response().status(), 500);
        assert_eq!(e.to_string(), "no row where one was expected");
    }
}
