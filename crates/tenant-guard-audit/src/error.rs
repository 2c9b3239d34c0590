//! The audit's error type.

/// Why an audit could not run. Findings are not errors: a database full of mistakes still
/// yields `Ok(report)`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AuditError {
    /// The connection string could not be parsed.
    #[error("invalid database URL: {source}")]
    InvalidUrl {
        /// The parser's error (it never repeats the password).
        #[source]
        source: tokio_postgres::Error,
    },
    /// The connection string's TLS settings cannot be used (an unknown `sslmode`, an unreadable
    /// `sslrootcert`, no system CAs, …).
    #[error("{source}")]
    Tls {
        /// What is wrong.
        #[source]
        source: tenant_guard_postgres::tls::TlsError,
    },
    /// Connecting to the database failed (no server, TLS refused or the server's certificate
    /// rejected, authentication).
    #[error("could not connect to the database: {source}")]
    Connect {
        /// The driver's error.
        #[source]
        source: tokio_postgres::Error,
    },
    /// A catalog query or a probe statement failed unexpectedly.
    #[error("{context}: {source}")]
    Query {
        /// What the audit was doing.
        context: String,
        /// The driver's error.
        #[source]
        source: tokio_postgres::Error,
    },
    /// The configuration cannot be used (no schema, an empty tenant column name, …).
    #[error("invalid audit configuration: {reason}")]
    InvalidConfig {
        /// What is wrong.
        reason: String,
    },
}

impl AuditError {
    pub(crate) fn from_tls(error: tenant_guard_postgres::tls::TlsError) -> Self {
        match error {
            tenant_guard_postgres::tls::TlsError::InvalidUrl { source } => {
                Self::InvalidUrl { source }
            }
            source => Self::Tls { source },
        }
    }

    pub(crate) fn query(context: impl Into<String>, source: tokio_postgres::Error) -> Self {
        Self::Query {
            context: context.into(),
            source,
        }
    }
}

/// A context for `map_err` on query results.
pub(crate) trait QueryContext<T> {
    fn context(self, context: &str) -> Result<T, AuditError>;
}

impl<T> QueryContext<T> for Result<T, tokio_postgres::Error> {
    fn context(self, context: &str) -> Result<T, AuditError> {
        self.map_err(|source| AuditError::query(context, source))
    }
}
