//! [`GuardError`]: everything the guard can fail with, and its HTTP description.

use http::StatusCode;
use tenant_guard_core::{DbFailure, ErrorResponse, ToErrorResponse};
use tokio_postgres::error::{DbError, SqlState};

/// An error of the guard: the pool, the scoping, or a statement run through a [`TenantTx`].
///
/// Its `Display` never contains SQL, parameters or row data (the server's message and detail
/// stay in the [`source`](std::error::Error::source) for your logs); the HTTP response built by
/// [`ToErrorResponse`] carries only a fixed code and message.
///
/// | variant | status | `error` code |
/// |---|---|---|
/// | [`PoolTimeout`](Self::PoolTimeout) | 503 + `Retry-After` | `database_busy` |
/// | [`Unavailable`](Self::Unavailable), [`ConnectionLost`](Self::ConnectionLost), [`PoolClosed`](Self::PoolClosed) | 503 + `Retry-After` | `database_unavailable` |
/// | [`ForbiddenByPolicy`](Self::ForbiddenByPolicy) (SQLSTATE 42501) | 403 | `forbidden_by_policy` |
/// | [`RoleNotAllowed`](Self::RoleNotAllowed) | 403 | `role_not_allowed` |
/// | [`UniqueViolation`](Self::UniqueViolation) (23505) | 409 | `conflict` |
/// | [`ConstraintViolation`](Self::ConstraintViolation) (other 23xxx) | 422 | `constraint_violation` |
/// | [`TransactionConflict`](Self::TransactionConflict) (40001, 40P01) | 503 + `Retry-After` | `transaction_conflict` |
/// | [`StatementTimeout`](Self::StatementTimeout) (57014) | 503 + `Retry-After` | `database_timeout` |
/// | everything else | 500 | `database_error` or `internal_error` |
///
/// [`TenantTx`]: crate::TenantTx
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GuardError {
    /// No pooled connection became free within the pool's wait timeout.
    #[error("no database connection became available within the pool's wait timeout")]
    PoolTimeout,

    /// The pool has been closed.
    #[error("the database pool is closed")]
    PoolClosed,

    /// The database could not be reached, or the connection was lost.
    #[error("the database is unavailable")]
    Unavailable(#[source] tokio_postgres::Error),

    /// The pool's login failed the startup check and the pool is configured to refuse it
    /// ([`LoginPolicy::Refuse`](crate::LoginPolicy::Refuse)).
    #[error("the pool's database login is unsafe for tenant isolation: {0}")]
    InsecureLogin(String),

    /// The principal's role is not one the pool switches to for users (see
    /// [`TenantPoolBuilder::user_roles`](crate::TenantPoolBuilder::user_roles)); nothing was sent
    /// to the database.
    #[error("role `{0}` is not allowed on this pool")]
    RoleNotAllowed(String),

    /// Scoping the transaction failed (for example the login may not switch to the role: run the
    /// support SQL and grant the role to the login). No statement of the caller ran scoped.
    #[error("could not scope the transaction (SQLSTATE {})", sqlstate(.0))]
    Scope(#[source] tokio_postgres::Error),

    /// Row Level Security or a missing privilege refused the statement (SQLSTATE `42501`, e.g.
    /// `new row violates row-level security policy`).
    #[error("refused by a row-level security policy or privilege (SQLSTATE 42501)")]
    ForbiddenByPolicy(#[source] tokio_postgres::Error),

    /// A unique constraint was violated (SQLSTATE `23505`).
    #[error("unique constraint violated{}", constraint_suffix(.0))]
    UniqueViolation(#[source] tokio_postgres::Error),

    /// Another integrity constraint was violated (SQLSTATE class `23`: foreign key, not null,
    /// check, exclusion).
    #[error("integrity constraint violated (SQLSTATE {}){}", sqlstate(.0), constraint_suffix(.0))]
    ConstraintViolation(#[source] tokio_postgres::Error),

    /// Serialization failure or deadlock (SQLSTATE `40001`, `40P01`): retrying may succeed.
    #[error("transaction conflict (SQLSTATE {}); retrying may succeed", sqlstate(.0))]
    TransactionConflict(#[source] tokio_postgres::Error),

    /// The statement ran longer than the pool's statement timeout (SQLSTATE `57014`).
    #[error("statement cancelled by the statement timeout (SQLSTATE 57014)")]
    StatementTimeout(#[source] tokio_postgres::Error),

    /// The connection broke before the transaction could be committed (the server restarted,
    /// the backend was terminated); the server rolled back whatever the transaction held.
    /// Transient: retrying later may succeed.
    #[error("the database connection was lost before the transaction ended; it was rolled back")]
    ConnectionLost,

    /// A statement of this transaction failed earlier, so the database rolled it back; it
    /// cannot be committed.
    #[error("the transaction was rolled back because an earlier statement failed")]
    RolledBack,

    /// Any other database error, or a client-side error of the driver (a parameter of the wrong
    /// type, a row count other than expected).
    #[error("{}", describe(.0))]
    Database(#[source] tokio_postgres::Error),

    /// The configuration is invalid (bad URL, zero pool size, …).
    #[error("invalid guard configuration: {0}")]
    Config(String),

    /// A named prepared statement was not found on, or clashed with one already on, the server
    /// connection (SQLSTATE `26000`, `42P05`): the database is almost certainly reached through a
    /// transaction-mode pooler while the pool caches named statements. Build the pool with
    /// [`.pooler(Pooler::Transaction)`](crate::TenantPoolBuilder::pooler) (or
    /// `TENANT_GUARD_POOLER=transaction`, or `?pooler=transaction` in the URL).
    #[error(
        "prepared statement lost (SQLSTATE {}): the database is behind a transaction-mode pooler \
         (PgBouncer pool_mode=transaction, Supavisor port 6543); build the pool with \
         .pooler(Pooler::Transaction), TENANT_GUARD_POOLER=transaction or ?pooler=transaction",
        sqlstate(.0)
    )]
    PreparedStatementLost(#[source] tokio_postgres::Error),

    /// No read replica could serve a read-only transaction and the pool is configured not to
    /// fall back to the primary
    /// ([`ReplicaFallback::Unavailable`](crate::replica::ReplicaFallback::Unavailable)).
    /// Transient.
    #[error("no read replica is available")]
    ReplicasUnavailable,

    /// The feature needs a session of its own, which a transaction-mode pooler does not give
    /// (see [`Pooler`](crate::Pooler)); nothing was sent.
    #[error("{0} needs a session-mode connection; it is not available with Pooler::Transaction")]
    NeedsSession(&'static str),

    /// In [`Pooler::Transaction`](crate::Pooler::Transaction) mode the type of a parameter is
    /// inferred from its Rust value, and this one's could not be (a custom `ToSql` type); nothing
    /// was sent. Pass it with its type through `query_typed`/`execute_typed`.
    #[error(
        "the PostgreSQL type of parameter ${index} cannot be inferred in pooler mode; pass it \
         with its type through query_typed/execute_typed"
    )]
    ParameterType {
        /// The 1-based position of the parameter (`$index` in the SQL).
        index: usize,
    },
}

/// SQLSTATEs of a named statement missing on, or clashing on, a server connection.
fn is_prepared_statement_lost(error: &tokio_postgres::Error) -> bool {
    matches!(error.code().map(SqlState::code), Some("26000" | "42P05"))
}

/// The connection (not the statement) failed: closed, an I/O error on the socket, or a server
/// error of the connection classes (08: connection exception; 57P: admin shutdown, crash
/// shutdown, cannot connect now; 53300: too many connections). Transient: retrying later may
/// succeed.
pub(crate) fn is_connection_failure(error: &tokio_postgres::Error) -> bool {
    if error.is_closed() {
        return true;
    }
    match error.code() {
        Some(code) => {
            let c = code.code();
            c.starts_with("08") || c.starts_with("57P") || c == "53300"
        }
        None => std::error::Error::source(error).is_some_and(|s| s.is::<std::io::Error>()),
    }
}

fn sqlstate(error: &tokio_postgres::Error) -> &str {
    error.code().map_or("none", SqlState::code)
}

/// A server error by its SQLSTATE only (its message may quote data); a client-side error of the
/// driver by its message (it names types and counts, never values).
fn describe(error: &tokio_postgres::Error) -> String {
    match error.code() {
        Some(code) => format!("database error (SQLSTATE {})", code.code()),
        None => format!("database client error: {error}"),
    }
}

fn constraint_suffix(error: &tokio_postgres::Error) -> String {
    error
        .as_db_error()
        .and_then(DbError::constraint)
        .map(|c| format!(" (constraint `{c}`)"))
        .unwrap_or_default()
}

impl GuardError {
    /// Classifies an error of a statement run for the caller.
    pub(crate) fn from_statement(error: tokio_postgres::Error) -> Self {
        if is_connection_failure(&error) {
            return Self::Unavailable(error);
        }
        if is_prepared_statement_lost(&error) {
            return Self::prepared_statement_lost(error);
        }
        let Some(code) = error.code() else {
            return Self::Database(error);
        };
        match code.code() {
            "42501" => Self::ForbiddenByPolicy(error),
            "23505" => Self::UniqueViolation(error),
            c if c.starts_with("23") => Self::ConstraintViolation(error),
            "40001" | "40P01" => Self::TransactionConflict(error),
            "57014" => Self::StatementTimeout(error),
            _ => Self::Database(error),
        }
    }

    /// Classifies an error of the scoping prelude: the connection failing (the server shutting
    /// down, restarting, the backend killed) is [`Unavailable`](Self::Unavailable) like for any
    /// statement, anything else a [`Scope`](Self::Scope) error.
    pub(crate) fn from_scope(error: tokio_postgres::Error) -> Self {
        if is_connection_failure(&error) {
            Self::Unavailable(error)
        } else if is_prepared_statement_lost(&error) {
            Self::prepared_statement_lost(error)
        } else {
            Self::Scope(error)
        }
    }

    fn prepared_statement_lost(error: tokio_postgres::Error) -> Self {
        let error = Self::PreparedStatementLost(error);
        tracing::error!(%error, "named statements do not survive a transaction-mode pooler");
        error
    }

    /// The database's error, when the error came from the server.
    pub fn db_error(&self) -> Option<&DbError> {
        self.postgres().and_then(tokio_postgres::Error::as_db_error)
    }

    /// The SQLSTATE, when the error came from the server.
    pub fn sqlstate(&self) -> Option<&SqlState> {
        self.postgres().and_then(tokio_postgres::Error::code)
    }

    /// The underlying driver error, if any.
    pub fn postgres(&self) -> Option<&tokio_postgres::Error> {
        match self {
            Self::Unavailable(e)
            | Self::Scope(e)
            | Self::ForbiddenByPolicy(e)
            | Self::UniqueViolation(e)
            | Self::ConstraintViolation(e)
            | Self::TransactionConflict(e)
            | Self::StatementTimeout(e)
            | Self::PreparedStatementLost(e)
            | Self::Database(e) => Some(e),
            _ => None,
        }
    }

    /// `true` when row-level security or a missing privilege refused the statement.
    pub fn is_forbidden_by_policy(&self) -> bool {
        matches!(self, Self::ForbiddenByPolicy(_))
    }

    /// `true` for transient failures worth retrying later (pool exhausted, database unreachable,
    /// serialization failure, statement timeout).
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

    /// What this error means to a client: the one mapping shared with every backend.
    pub fn failure(&self) -> DbFailure {
        match self {
            Self::PoolTimeout => DbFailure::Busy,
            Self::PoolClosed
            | Self::Unavailable(_)
            | Self::ConnectionLost
            | Self::ReplicasUnavailable => DbFailure::Unavailable,
            Self::ForbiddenByPolicy(_) => DbFailure::ForbiddenByPolicy,
            Self::RoleNotAllowed(_) => DbFailure::RoleNotAllowed,
            Self::UniqueViolation(_) => DbFailure::UniqueViolation,
            Self::ConstraintViolation(_) => DbFailure::ConstraintViolation,
            Self::TransactionConflict(_) => DbFailure::TransactionConflict,
            Self::StatementTimeout(_) => DbFailure::StatementTimeout,
            Self::Database(_) | Self::RolledBack => DbFailure::Database,
            Self::Scope(_)
            | Self::InsecureLogin(_)
            | Self::Config(_)
            | Self::PreparedStatementLost(_)
            | Self::NeedsSession(_)
            | Self::ParameterType { .. } => DbFailure::Internal,
        }
    }
}

impl ToErrorResponse for GuardError {
    fn to_error_response(&self) -> ErrorResponse {
        self.failure().to_error_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tenant_guard_core::RETRY_AFTER_SECONDS;

    #[test]
    fn a_lost_connection_is_503_database_unavailable_with_retry_after() {
        let e = GuardError::ConnectionLost;
        assert!(e.is_transient());
        let r = e.to_error_response();
        assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(r.code(), "database_unavailable");
        assert_eq!(r.retry_after(), Some(RETRY_AFTER_SECONDS));
    }

    #[test]
    fn pool_timeout_is_503_with_retry_after() {
        let r = GuardError::PoolTimeout.to_error_response();
        assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(r.code(), "database_busy");
        assert_eq!(r.retry_after(), Some(RETRY_AFTER_SECONDS));
    }

    #[test]
    fn internal_errors_have_a_generic_body() {
        for e in [
            GuardError::RolledBack,
            GuardError::Config("secret-ish detail".into()),
            GuardError::InsecureLogin("login `postgres` is a superuser".into()),
        ] {
            let r = e.to_error_response();
            assert_eq!(r.status(), StatusCode::INTERNAL_SERVER_ERROR);
            assert_eq!(r.message(), "internal server error");
            assert!(!r.body().contains("secret"));
            assert!(!r.body().contains("postgres"));
            assert_eq!(r.retry_after(), None);
        }
    }

    #[test]
    fn role_not_allowed_is_403() {
        let r = GuardError::RoleNotAllowed("service_role".into()).to_error_response();
        assert_eq!(r.status(), StatusCode::FORBIDDEN);
        assert_eq!(r.code(), "role_not_allowed");
        assert!(!r.body().contains("service_role"));
    }
}
