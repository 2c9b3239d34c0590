//! [`SessionReset`]: what happens to session-level state a transaction leaves on its connection.
//!
//! A scoped transaction's role, claims and org are transaction-local and end with it. Some things
//! a handler can create outlive the transaction on the *session*: a `DECLARE … WITH HOLD` cursor,
//! a temporary table, a session advisory lock, `LISTEN`, an SQL-level `PREPARE`, a session `SET`
//! (or `set_config(…, false)`, a plain `SET ROLE`), a sequence's `currval`. With a pool, the next
//! request on that connection would see them, whoever it is for. The guard checks for them after
//! every transaction that ran a statement, and never hands such a session to another request.

use std::pin::pin;
use std::time::Duration;

use deadpool_postgres::{ClientWrapper, Object};
use futures_util::StreamExt;
use futures_util::future::join;
use tokio_postgres::{SimpleQueryMessage, Statement};

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
    /// behind the statements (no extra round trip on the request's path):
    /// 1. `COMMIT` and [`SESSION_RESET_SQL`] as one message (after a `ROLLBACK`, which is sent at
    ///    once, the reset in a message of its own):
    ///    `SET SESSION AUTHORIZATION DEFAULT` (a session `SET ROLE`), `RESET ALL` (every session
    ///    `SET` and `set_config(…, false)`, custom settings included), `CLOSE ALL` (`WITH HOLD`
    ///    cursors), `UNLISTEN *` and, after a read-write transaction, `DISCARD SEQUENCES`
    ///    (`currval`/`lastval`: any `INSERT` with a serial column sets them, too common to close
    ///    the connection for). They run after the
    ///    transaction ended, outside it. A `COMMIT` that fails (a deferred constraint, a
    ///    serialization failure) rolls back, undoing the transaction's session `SET`s, and the
    ///    server skips the reset behind it: the guard then sends the reset and the check again
    ///    on their own (a second round trip, on that rare path only);
    /// 2. [`SESSION_CHECK_SQL`], cached per connection: releases session advisory locks and
    ///    reports whether anything is left that is rare and costly to reset: an SQL-level
    ///    prepared statement, a temporary object (any temporary schema, see the constant).
    ///
    /// If anything is left, or a reset statement or the check fails or does not answer in time,
    /// the connection is closed instead of returned (the pool opens a fresh one). The connection
    /// goes back to the pool once the answers are in. A read-only `commit()` does not wait: its
    /// `COMMIT` goes out folded into the reset on the task that returns the connection. The
    /// statement cache is kept: the driver's protocol-level prepared statements (the guard's SQL
    /// and the handlers' statement texts, never their parameters) are what makes a guarded
    /// request cheap. Server cost of each part: `BENCHMARKS.md`, "Session reset cost".
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
/// (column 2) whether the session still holds anything the next request could see and no cheap
/// statement resets:
///
/// - `pg_prepared_statements` with `from_sql`: an SQL-level `PREPARE` (the driver's own
///   statements are protocol-level: the statement cache; `DEALLOCATE ALL` would drop both).
///   Left behind it gives the next request no rows of another org (its plan is re-made for the
///   next role, and the policies read the next transaction's settings), but its text, literals
///   included, is the next request's to read, and its name is taken. The largest part of the
///   check's cost (about 48 000 server instructions plus 2 300 per cached statement,
///   `BENCHMARKS.md`), kept because nothing cheaper detects it;
/// - a temporary schema at all (`pg_my_temp_schema()` is `0` until the session first commits a
///   temporary object, table, view, sequence, function or type): stricter than looking for
///   objects in it and cheaper (no catalog scan; a plan naming `pg_class` locks it on every
///   execution). A connection that once committed a temporary object, even one dropped since
///   (`ON COMMIT DROP`), is closed after that transaction: close on doubt. `DISCARD TEMP` would
///   cost every later transaction of the session a scan instead.
///
/// `WITH HOLD` cursors and `LISTEN` are reset rather than checked (`CLOSE ALL`, `UNLISTEN *` in
/// [`SESSION_RESET_SQL`]): checking `pg_cursors` and `pg_listening_channels()` cost the server
/// more than the reset (`BENCHMARKS.md`, "Session reset cost").
///
/// Every name is schema-qualified, so nothing on a `search_path` a handler set can stand in.
pub const SESSION_CHECK_SQL: &str = "SELECT pg_catalog.pg_advisory_unlock_all(), \
    EXISTS (SELECT FROM pg_catalog.pg_prepared_statements AS p WHERE p.from_sql) \
    OR pg_catalog.pg_my_temp_schema() OPERATOR(pg_catalog.<>) 0";

/// The reset of [`SessionReset::Check`] after a read-write transaction, one message: the login's
/// own role and session again, every setting back to its value at connection time (connection
/// options such as the pool's `statement_timeout` are kept), no `WITH HOLD` cursor (`CLOSE ALL`:
/// after the transaction no other portal is open), no `LISTEN`, no `currval`.
///
/// The guard sends it folded into the message that ends the transaction
/// (`COMMIT; SET SESSION AUTHORIZATION DEFAULT; …`, see [`SessionReset::Check`]), and on its own
/// only when that `COMMIT` failed (the server then skips the statements behind it).
pub const SESSION_RESET_SQL: &str =
    "SET SESSION AUTHORIZATION DEFAULT; RESET ALL; CLOSE ALL; UNLISTEN *; DISCARD SEQUENCES";

/// [`SESSION_RESET_SQL`] after a read-only transaction, which cannot call `nextval`.
const SESSION_RESET_READ_ONLY_SQL: &str =
    "SET SESSION AUTHORIZATION DEFAULT; RESET ALL; CLOSE ALL; UNLISTEN *";

/// How a transaction ends, in the message that also carries the reset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ending {
    Commit,
}

impl Ending {
    /// `COMMIT`/`ROLLBACK` and [`SESSION_RESET_SQL`] as one simple query (one message, one
    /// answer): the statements behind the first run after it, outside the transaction.
    fn sql(self, read_only: bool) -> &'static str {
        match (self, read_only) {
            (Self::Commit, false) => {
                "COMMIT; SET SESSION AUTHORIZATION DEFAULT; RESET ALL; CLOSE ALL; UNLISTEN *; \
                 DISCARD SEQUENCES"
            }
            (Self::Commit, true) => {
                "COMMIT; SET SESSION AUTHORIZATION DEFAULT; RESET ALL; CLOSE ALL; UNLISTEN *"
            }
        }
    }
}

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
    match reset {
        Ok(()) => verdict(answer),
        Err(error) => {
            failed(&error);
            false
        }
    }
}

/// Ends the transaction and resets the session in one message, with the check behind it (two
/// messages, one round trip), and waits for the answers: the end's result, and `true` when the
/// session is clean.
///
/// The end's result is the `COMMIT`'s (or `ROLLBACK`'s): a failure of the reset behind a
/// successful `COMMIT` is not reported as a failed commit (the statements answer in order, so
/// the first `CommandComplete` is the end's); it closes the connection. When the `COMMIT` itself
/// fails, the server rolls the transaction back (undoing its session `SET`s) and skips the reset;
/// what a rollback does not undo (`currval`, a session advisory lock, an SQL `PREPARE`) is then
/// reset and checked again in a second round trip, on this rare path only.
pub(crate) async fn end_and_check(
    client: &ClientWrapper,
    statement: &Statement,
    ending: Ending,
    read_only: bool,
) -> (Result<(), tokio_postgres::Error>, bool) {
    let (ended, answer) = join(
        end_then_reset(client, ending.sql(read_only)),
        client.query_one(statement, &[]),
    )
    .await;
    match ended {
        Ended::All => (Ok(()), verdict(answer)),
        Ended::ResetFailed(error) => {
            failed(&error);
            (Ok(()), false)
        }
        Ended::EndFailed(error) => {
            if error.is_closed() || error.as_db_error().is_none() {
                return (Err(error), false);
            }
            let clean = check(client, statement, read_only).await;
            (Err(error), clean)
        }
    }
}

/// The `COMMIT` message of [`Reset::Folded`](crate::tx::Reset) (behind a transaction-mode
/// pooler): `COMMIT` and the reset, one simple query.
pub(crate) fn folded_commit_sql(read_only: bool) -> &'static str {
    Ending::Commit.sql(read_only)
}

/// Commits with the reset folded in and no check (behind a transaction-mode pooler, where a
/// message of its own could reach another server connection), waiting for the answer: the
/// `COMMIT`'s result, and `false` when the connection must be closed (the reset behind a
/// successful `COMMIT` failed, or the connection broke). A failed `COMMIT` rolled back, undoing
/// the transaction's session `SET`s itself.
pub(crate) async fn end_folded(
    client: &ClientWrapper,
    read_only: bool,
) -> (Result<(), tokio_postgres::Error>, bool) {
    match end_then_reset(client, Ending::Commit.sql(read_only)).await {
        Ended::All => (Ok(()), true),
        Ended::ResetFailed(error) => {
            failed(&error);
            (Ok(()), false)
        }
        Ended::EndFailed(error) => {
            let clean = !error.is_closed() && error.as_db_error().is_some();
            (Err(error), clean)
        }
    }
}

/// What the end-and-reset message answered.
enum Ended {
    /// Every statement completed.
    All,
    /// The first statement (`COMMIT`/`ROLLBACK`) failed; nothing behind it ran.
    EndFailed(tokio_postgres::Error),
    /// The end completed, a reset statement behind it failed.
    ResetFailed(tokio_postgres::Error),
}

async fn end_then_reset(client: &ClientWrapper, sql: &str) -> Ended {
    let stream = match client.simple_query_raw(sql).await {
        Ok(stream) => stream,
        Err(error) => return Ended::EndFailed(error),
    };
    let mut stream = pin!(stream);
    let mut completed = 0usize;
    while let Some(message) = stream.next().await {
        match message {
            Ok(SimpleQueryMessage::CommandComplete(_)) => completed += 1,
            Ok(_) => {}
            Err(error) if completed == 0 => return Ended::EndFailed(error),
            Err(error) => return Ended::ResetFailed(error),
        }
    }
    Ended::All
}

/// The check's answer: `true` when the session is clean.
fn verdict(answer: Result<tokio_postgres::Row, tokio_postgres::Error>) -> bool {
    match answer.and_then(|row| row.try_get::<_, bool>(1)) {
        Ok(false) => true,
        Ok(true) => {
            tracing::debug!(
                "the transaction left session state (an SQL PREPARE, a temporary object): \
                 closing the connection"
            );
            false
        }
        Err(error) => {
            failed(&error);
            false
        }
    }
}

fn failed(error: &tokio_postgres::Error) {
    tracing::warn!(
        %error,
        "resetting or checking the session after a transaction failed: closing the connection"
    );
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
/// making the caller wait: the check runs on a spawned task. `ending` is the `COMMIT` still to
/// send (folded into the reset's message), `None` when it was sent already. A clean connection
/// goes back through `home` (role affinity). Without a tokio runtime (the transaction dropped
/// outside one), the connection is closed (the server rolls back).
pub(crate) fn return_when_clean(
    conn: Object,
    statement: Statement,
    ending: Option<Ending>,
    read_only: bool,
    home: Home,
) {
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        close(conn);
        return;
    };
    let mut pending = Pending(Some(conn));
    runtime.spawn(async move {
        let Some(conn) = pending.0.as_ref() else {
            return;
        };
        let checked = async {
            match ending {
                Some(ending) => {
                    let (ended, clean) = end_and_check(conn, &statement, ending, read_only).await;
                    if let Err(error) = ended {
                        // A rollback, or a read-only `COMMIT` its caller did not wait for.
                        tracing::warn!(%error, ?ending, "ending the transaction failed");
                    }
                    clean
                }
                None => check(conn, &statement, read_only).await,
            }
        };
        match tokio::time::timeout(CHECK_TIMEOUT, checked).await {
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
    fn the_end_carries_the_reset() {
        for read_only in [false, true] {
            let reset = if read_only {
                SESSION_RESET_READ_ONLY_SQL
            } else {
                SESSION_RESET_SQL
            };
            assert_eq!(Ending::Commit.sql(read_only), format!("COMMIT; {reset}"));
        }
    }

    #[test]
    fn the_default_checks() {
        assert_eq!(SessionReset::default(), SessionReset::Check);
    }

    #[test]
    fn the_check_is_schema_qualified() {
        for name in [
            "pg_prepared_statements",
            "pg_my_temp_schema",
            "pg_advisory_unlock_all",
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
