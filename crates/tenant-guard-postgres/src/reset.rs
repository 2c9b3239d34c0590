//! [`SessionReset`]: what happens to session-level state a transaction leaves on its connection.
//!
//! A scoped transaction's role, claims and org are transaction-local and end with it. Some things
//! a handler can create outlive the transaction on the *session*: a `DECLARE … WITH HOLD` cursor,
//! a temporary table, a session advisory lock, `LISTEN`, an SQL-level `PREPARE`, a session `SET`
//! (or `set_config(…, false)`, a plain `SET ROLE`), a sequence's `currval`. With a pool, the next
//! request on that connection would see them, whoever it is for. The guard checks for them after
//! every transaction that ran a statement, and never hands such a session to another request.

use std::time::Duration;

use deadpool_postgres::{ClientWrapper, Object};
use futures_util::future::join;
use tokio_postgres::Statement;

use crate::affinity::Home;

/// What the guard does, after a transaction, about session-level state the transaction may have
/// created; see [`TenantPoolBuilder::session_reset`](crate::TenantPoolBuilder::session_reset).
///
/// ```
/// use tenant_guard_postgres::{SessionReset, TenantPool};
///
/// let builder = TenantPool::builder(tokio_postgres::Config::new())
///     .session_reset(SessionReset::DiscardAll);
/// # drop(builder);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum SessionReset {
    /// The default. After a transaction that ran a statement, the guard sends, in the pipeline
    /// behind `COMMIT`/`ROLLBACK` (no extra round trip on the request's path):
    /// 1. [`SESSION_RESET_SQL`]: `SET SESSION AUTHORIZATION DEFAULT` (a session `SET ROLE`),
    ///    `RESET ALL` (every session `SET` and `set_config(…, false)`, custom settings included)
    ///    and, after a read-write transaction, `DISCARD SEQUENCES` (`currval`/`lastval`: any
    ///    `INSERT` with a serial column sets them, too common to close the connection for);
    /// 2. [`SESSION_CHECK_SQL`], cached per connection: releases session advisory locks and
    ///    reports whether anything is left that is rare and costly to reset: a `WITH HOLD`
    ///    cursor, `LISTEN`, an SQL-level prepared statement, a temporary object.
    ///
    /// If anything is left, or either statement fails or does not answer in time, the connection
    /// is closed instead of returned (the pool opens a fresh one). The connection goes back to the
    /// pool once the answers are in. The statement cache is kept: the driver's protocol-level
    /// prepared statements (the guard's SQL and the handlers' statement texts, never their
    /// parameters) are what makes a guarded request cheap.
    #[default]
    Check,
    /// `DISCARD ALL` after every transaction that ran a statement (queued behind
    /// `COMMIT`/`ROLLBACK`, not awaited), and the connection's statement cache cleared: every
    /// statement is prepared again on the connection's next use (one round trip each). The
    /// bluntest reset, for comparison (see `BENCHMARKS.md`).
    DiscardAll,
    /// **Dangerous**: no reset. Session-level state a handler creates reaches the next request on
    /// the connection, whatever org it is for. Only for benchmarks, or applications that can prove
    /// their SQL never creates session state.
    DangerousNone,
}

/// The check of [`SessionReset::Check`], run outside any transaction after `COMMIT`/`ROLLBACK`
/// and [`SESSION_RESET_SQL`]: releases session advisory locks (column 1, `void`) and answers
/// (column 2) whether the session still holds anything the next request could see.
///
/// - `pg_cursors` with `is_holdable`: a `WITH HOLD` cursor (others close with the transaction;
///   the check's own protocol-level portal is listed, not holdable);
/// - `pg_listening_channels()`: `LISTEN`;
/// - `pg_prepared_statements` with `from_sql`: an SQL-level `PREPARE` (the driver's own
///   statements are protocol-level: the statement cache);
/// - a relation in the session's temporary schema (`pg_my_temp_schema()` is `0` until the session
///   first creates one).
///
/// Every name is schema-qualified, so nothing on a `search_path` a handler set can stand in.
pub const SESSION_CHECK_SQL: &str = "SELECT pg_catalog.pg_advisory_unlock_all(), \
    EXISTS (SELECT FROM pg_catalog.pg_cursors AS k WHERE k.is_holdable) \
    OR EXISTS (SELECT FROM pg_catalog.pg_listening_channels()) \
    OR EXISTS (SELECT FROM pg_catalog.pg_prepared_statements AS p WHERE p.from_sql) \
    OR CASE WHEN pg_catalog.pg_my_temp_schema() OPERATOR(pg_catalog.=) 0 THEN false \
       ELSE EXISTS (SELECT FROM pg_catalog.pg_class AS c \
                     WHERE c.relnamespace OPERATOR(pg_catalog.=) pg_catalog.pg_my_temp_schema()) END";

/// The reset of [`SessionReset::Check`] after a read-write transaction, one message: the login's
/// own role and session again, every setting back to its value at connection time (connection
/// options such as the pool's `statement_timeout` are kept), no `currval`.
pub const SESSION_RESET_SQL: &str =
    "SET SESSION AUTHORIZATION DEFAULT; RESET ALL; DISCARD SEQUENCES";

/// [`SESSION_RESET_SQL`] after a read-only transaction, which cannot call `nextval`.
const SESSION_RESET_READ_ONLY_SQL: &str = "SET SESSION AUTHORIZATION DEFAULT; RESET ALL";

/// How long the guard waits for the answer of the check before closing the connection.
pub(crate) const CHECK_TIMEOUT: Duration = Duration::from_secs(5);

/// Sends the reset and the check and waits for both answers: `true` when the session is clean.
/// Must be first polled after `COMMIT`/`ROLLBACK` was sent.
pub(crate) async fn check(client: &ClientWrapper, statement: &Statement, read_only: bool) -> bool {
    let reset = if read_only {
        SESSION_RESET_READ_ONLY_SQL
    } else {
        SESSION_RESET_SQL
    };
    let (reset, answer) = join(
        client.batch_execute(reset),
        client.query_one(statement, &[]),
    )
    .await;
    let dirty = answer.and_then(|row| row.try_get::<_, bool>(1));
    match (reset, dirty) {
        (Ok(()), Ok(false)) => true,
        (Ok(()), Ok(true)) => {
            tracing::debug!(
                "the transaction left session state (a WITH HOLD cursor, LISTEN, PREPARE, a \
                 temporary table): closing the connection"
            );
            false
        }
        (Err(error), _) | (_, Err(error)) => {
            tracing::warn!(
                %error,
                "checking the session after a transaction failed: closing the connection"
            );
            false
        }
    }
}

/// Queues `DISCARD ALL` and clears the connection's statement cache
/// ([`SessionReset::DiscardAll`]). `false` when the connection is closed.
pub(crate) fn discard_all(conn: &Object) -> bool {
    conn.statement_cache.clear();
    crate::tx::send_without_waiting(conn, "DISCARD ALL")
}

/// Closes the connection for good (nothing is running on it).
pub(crate) fn close(conn: Object) {
    drop(Object::take(conn));
}

/// Returns `conn` to the pool once the check says the session is clean, or closes it, without
/// making the caller wait: the check runs on a spawned task. Without a tokio runtime (the
/// transaction dropped outside one), the connection is closed.
pub(crate) fn return_when_clean(conn: Object, statement: Statement, read_only: bool, home: Home) {
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        close(conn);
        return;
    };
    let mut pending = Pending(Some(conn));
    runtime.spawn(async move {
        let Some(conn) = pending.0.as_ref() else {
            return;
        };
        match tokio::time::timeout(CHECK_TIMEOUT, check(conn, &statement, read_only)).await {
            Ok(true) => {
                // Clean: back to the pool.
                if let Some(conn) = pending.0.take() {
                    home.put(conn);
                }
            }
            Ok(false) => {}
            Err(_) => {
                tracing::warn!("the session check did not answer in time: closing the connection");
                if let Some(conn) = pending.0.take() {
                    crate::tx::discard(conn);
                }
            }
        }
    });
}

/// A connection waiting for its session check: closed when dropped unless the check took it out
/// (so a task dropped unfinished, say at runtime shutdown, never returns an unchecked session).
struct Pending(Option<Object>);

impl Drop for Pending {
    fn drop(&mut self) {
        if let Some(conn) = self.0.take() {
            close(conn);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_checks() {
        assert_eq!(SessionReset::default(), SessionReset::Check);
    }

    #[test]
    fn the_check_is_schema_qualified() {
        for name in [
            "pg_cursors",
            "pg_listening_channels",
            "pg_prepared_statements",
            "pg_my_temp_schema",
            "pg_advisory_unlock_all",
            "pg_class",
        ] {
            for (i, _) in SESSION_CHECK_SQL.match_indices(name) {
                assert_eq!(
                    &SESSION_CHECK_SQL[i - "pg_catalog.".len()..i],
                    "pg_catalog.",
                    "{name}"
                );
            }
        }
    }
}
