//! The crate's error type.

use std::io;
use std::path::PathBuf;
use std::sync::Arc;

/// Everything that can go wrong while providing a test server or a test database.
///
/// Messages are meant to be read by a person looking at a failed test: each one says what was
/// attempted and, where there is one, what to do about it. Connection URLs are never included
/// (they may carry a password).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TestkitError {
    /// No PostgreSQL server binaries (`initdb` and `postgres`) were found, and
    /// `TENANT_GUARD_TEST_DATABASE_URL` is not set.
    #[error(
        "no PostgreSQL server binaries found: looked for `initdb` and `postgres` {searched}. \
         Install them (Debian/Ubuntu: `apt-get install postgresql`; any version from 13 on) \
         or set TENANT_GUARD_TEST_DATABASE_URL to the superuser URL of a running server, \
         e.g. postgres://postgres:secret@127.0.0.1:5432/postgres"
    )]
    BinariesNotFound {
        /// Where the binaries were looked for, for the message.
        searched: String,
    },

    /// The process runs as root (which PostgreSQL refuses), and no way was found to run the server
    /// as an unprivileged user.
    #[error(
        "running as root, and PostgreSQL refuses to run as root: {reason}. Run the tests as a \
         non-root user, install util-linux (`setpriv`/`runuser`) and a `postgres` or `nobody` \
         user, or set TENANT_GUARD_TEST_DATABASE_URL"
    )]
    NoUnprivilegedUser {
        /// What was missing.
        reason: String,
    },

    /// An operating-system operation failed (creating the temporary directory, spawning a
    /// process, reading a file…).
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The underlying error.
        #[source]
        source: io::Error,
    },

    /// No `pgbouncer` binary was found (for [`TestPgBouncer`](crate::TestPgBouncer)).
    #[error(
        "no pgbouncer binary found (looked at TENANT_GUARD_PGBOUNCER, on PATH and at \
         /usr/sbin/pgbouncer). Install it (Debian/Ubuntu: `apt-get install pgbouncer`) or set \
         TENANT_GUARD_PGBOUNCER to its path"
    )]
    PgBouncerNotFound,

    /// PgBouncer exited during start-up or did not answer in time.
    #[error("PgBouncer did not start: {reason}; last lines of its log:\n{log_tail}")]
    PgBouncerStart {
        /// What happened.
        reason: String,
        /// The end of its log.
        log_tail: String,
    },

    /// `pg_basebackup` failed while creating a standby (for
    /// [`TestPostgres::start_standby`](crate::TestPostgres::start_standby)).
    #[error("creating the standby failed: {reason}")]
    Standby {
        /// What happened, with the tool's output.
        reason: String,
    },

    /// `initdb` exited unsuccessfully.
    #[error("initdb failed ({status}) for {data_dir}; its output:\n{output}")]
    Initdb {
        /// The exit status, as text.
        status: String,
        /// The data directory it was creating.
        data_dir: PathBuf,
        /// initdb's combined stdout and stderr.
        output: String,
    },

    /// The server process exited during start-up or did not accept connections in time.
    #[error("PostgreSQL server did not start: {reason}; last lines of its log:\n{log_tail}")]
    ServerStart {
        /// What happened.
        reason: String,
        /// The end of the server log.
        log_tail: String,
    },

    /// `TENANT_GUARD_TEST_DATABASE_URL` (or a URL given to
    /// [`TestPostgres::from_url`](crate::TestPostgres::from_url)) is not a valid connection string.
    #[error("invalid PostgreSQL connection string: {source}")]
    InvalidUrl {
        /// The parse error.
        #[source]
        source: tokio_postgres::Error,
    },

    /// The server given by URL was reached, but the login is not a superuser. Test databases and
    /// the roles of the support SQL need one.
    #[error(
        "the test server login `{user}` is not a superuser; TENANT_GUARD_TEST_DATABASE_URL \
         must name a superuser (tests create databases and roles)"
    )]
    NotSuperuser {
        /// The login role.
        user: String,
    },

    /// A statement or connection to the test server failed.
    #[error("{context}: {source}")]
    Postgres {
        /// What was being done.
        context: String,
        /// The underlying error.
        #[source]
        source: tokio_postgres::Error,
    },

    /// An administrative operation did not complete in time.
    #[error("timed out after {seconds}s while {context}")]
    Timeout {
        /// What was being done.
        context: String,
        /// How long was waited.
        seconds: u64,
    },

    /// The background thread that runs administrative statements is gone (it panicked, or the
    /// runtime could not be built).
    #[error("the testkit's administration thread is not running")]
    AdminUnavailable,

    /// [`TestPostgres::shared`](crate::TestPostgres::shared) failed to start the process-wide
    /// server earlier in this process; the original error is kept and returned to every caller.
    #[error("the shared test server is unavailable: {0}")]
    Shared(#[source] Arc<TestkitError>),

    /// [`TestPostgres::stop`](crate::TestPostgres::stop) and friends need a throwaway server
    /// started by the testkit; this one is an external server (`TENANT_GUARD_TEST_DATABASE_URL`).
    #[error(
        "only a throwaway test server can be stopped and started: use TestPostgres::start_local()"
    )]
    NotLocal,
}

impl TestkitError {
    pub(crate) fn io(context: impl Into<String>, source: io::Error) -> Self {
        Self::Io {
            context: context.into(),
            source,
        }
    }

    pub(crate) fn postgres(context: impl Into<String>, source: tokio_postgres::Error) -> Self {
        Self::Postgres {
            context: context.into(),
            source,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_binaries_message_says_what_to_install() {
        let err = TestkitError::BinariesNotFound {
            searched: "on PATH".to_owned(),
        };
        let msg = err.to_string();
        assert!(msg.contains("apt-get install postgresql"), "{msg}");
        assert!(msg.contains("TENANT_GUARD_TEST_DATABASE_URL"), "{msg}");
    }

    #[test]
    fn shared_error_shows_the_original() {
        let err = TestkitError::Shared(Arc::new(TestkitError::AdminUnavailable));
        assert!(err.to_string().contains("administration thread"));
        assert!(std::error::Error::source(&err).is_some());
    }

    #[test]
    fn error_is_send_sync() {
        fn assert_send_sync<T: Send + Sync + 'static>() {}
        assert_send_sync::<TestkitError>();
    }
}
