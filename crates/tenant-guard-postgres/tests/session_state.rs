//! Session-level state (issue 17): whatever a handler leaves on its *session* — a `WITH HOLD`
//! cursor, a temporary table, a session advisory lock, `LISTEN`, an SQL-level `PREPARE`, a
//! session `SET`, `currval` — never reaches the next request. Org A, then org B, on a pool of one
//! connection, for each construct and each way a transaction ends; and the statement cache (the
//! reason the guard does not simply `DISCARD ALL`) still works for clean transactions.
#![allow(clippy::unwrap_used, clippy::expect_used)] // helpers outside #[test] fns

mod common;

use common::{database, pool_builder, two_orgs};
use tenant_guard_core::Principal;
use tenant_guard_postgres::{GuardError, ScopeOptions, SessionReset, TenantPool};

/// How org A's transaction ends.
#[derive(Clone, Copy, Debug)]
enum End {
    /// `commit()` of a read-write transaction (awaited).
    Commit,
    /// `commit()` of a read-only transaction (queued, not awaited).
    CommitReadOnly,
    /// `rollback()`.
    Rollback,
    /// A statement fails, then the transaction is dropped.
    FailThenDrop,
}

const ENDS: [End; 4] = [
    End::Commit,
    End::CommitReadOnly,
    End::Rollback,
    End::FailThenDrop,
];

/// One construct: what org A runs, and a query that answers `true` when org B's transaction can
/// see what A left.
struct Construct {
    name: &'static str,
    leave: &'static [&'static str],
    /// Survives a rollback (not transactional).
    survives_rollback: bool,
    /// Allowed in a read-only transaction.
    read_only_ok: bool,
    seen_by_b: &'static str,
}

const CONSTRUCTS: &[Construct] = &[
    Construct {
        name: "WITH HOLD cursor",
        leave: &["DECLARE leak CURSOR WITH HOLD FOR SELECT name FROM projects"],
        survives_rollback: false,
        read_only_ok: true,
        seen_by_b: "SELECT EXISTS (SELECT FROM pg_cursors WHERE name = 'leak')",
    },
    Construct {
        name: "temporary table",
        leave: &["CREATE TEMP TABLE scratch AS SELECT name FROM projects"],
        survives_rollback: false,
        read_only_ok: false,
        seen_by_b: "SELECT to_regclass('pg_temp.scratch') IS NOT NULL",
    },
    Construct {
        name: "temporary function",
        leave: &["CREATE FUNCTION pg_temp.leak() RETURNS text LANGUAGE sql \
                  AS $$ SELECT 'a secret of org a' $$"],
        survives_rollback: false,
        read_only_ok: false,
        seen_by_b: "SELECT EXISTS (SELECT FROM pg_proc \
                    WHERE pronamespace = pg_my_temp_schema() AND proname = 'leak')",
    },
    Construct {
        name: "session advisory lock",
        leave: &["SELECT pg_advisory_lock(4217)"],
        survives_rollback: true,
        read_only_ok: true,
        seen_by_b: "SELECT EXISTS (SELECT FROM pg_locks WHERE locktype = 'advisory' \
                    AND pid = pg_backend_pid() AND objid = 4217)",
    },
    Construct {
        name: "LISTEN",
        leave: &["LISTEN org_a_events"],
        survives_rollback: false,
        read_only_ok: true,
        seen_by_b: "SELECT EXISTS (SELECT FROM pg_listening_channels() AS c WHERE c = 'org_a_events')",
    },
    Construct {
        name: "PREPARE",
        leave: &["PREPARE leak_stmt AS SELECT 'a secret of org a'"],
        survives_rollback: true,
        read_only_ok: true,
        seen_by_b: "SELECT EXISTS (SELECT FROM pg_prepared_statements WHERE name = 'leak_stmt')",
    },
    Construct {
        name: "session SET",
        leave: &["SET app.left_by_a = 'a secret of org a'"],
        survives_rollback: false,
        read_only_ok: true,
        seen_by_b: "SELECT coalesce(current_setting('app.left_by_a', true), '') <> ''",
    },
    Construct {
        name: "set_config(.., false)",
        leave: &["SELECT set_config('app.also_left_by_a', 'a secret', false)"],
        survives_rollback: false,
        read_only_ok: true,
        seen_by_b: "SELECT coalesce(current_setting('app.also_left_by_a', true), '') <> ''",
    },
    Construct {
        name: "session search_path",
        leave: &["SET search_path = auth, public"],
        survives_rollback: false,
        read_only_ok: true,
        seen_by_b: "SELECT current_setting('search_path') = 'auth, public'",
    },
];

async fn pool(reset: SessionReset) -> (tenant_guard_testkit::TestDatabase, TenantPool) {
    let (db, admin) = database().await;
    admin
        .batch_execute(
            "INSERT INTO projects (org_id, name) VALUES (gen_random_uuid(), 'someone else''s')",
        )
        .await
        .unwrap();
    let pool = pool_builder(&db)
        .max_size(1)
        .session_reset(reset)
        .build()
        .unwrap();
    (db, pool)
}

/// Org A runs `leave` and ends as `end`; then org B, on the same pool of one, runs `probe`.
/// Returns (whether B ran on the same backend, B's answer).
async fn a_then_b(
    pool: &TenantPool,
    a: &Principal,
    b: &Principal,
    leave: &[&str],
    end: End,
    probe: &str,
) -> (bool, bool) {
    let read_only = matches!(end, End::CommitReadOnly);
    let tx = pool
        .begin(a, ScopeOptions::default().read_only(read_only))
        .await
        .unwrap();
    let a_pid: i32 = tx
        .query_one("SELECT pg_backend_pid()", &[])
        .await
        .unwrap()
        .get(0);
    for sql in leave {
        tx.execute(*sql, &[]).await.unwrap();
    }
    match end {
        End::Commit | End::CommitReadOnly => tx.commit().await.unwrap(),
        End::Rollback => tx.rollback().await.unwrap(),
        End::FailThenDrop => {
            tx.execute("SELECT 1 / 0", &[]).await.unwrap_err();
            drop(tx);
        }
    }
    let tx = pool.begin(b, ScopeOptions::default()).await.unwrap();
    let row = tx.query_one("SELECT pg_backend_pid()", &[]).await.unwrap();
    let b_pid: i32 = row.get(0);
    let seen: bool = tx.query_one(probe, &[]).await.unwrap().get(0);
    tx.commit().await.unwrap();
    (a_pid == b_pid, seen)
}

async fn nothing_reaches_b(reset: SessionReset) {
    let (_db, pool) = pool(reset).await;
    let issuer = common::TestIssuer::new();
    for construct in CONSTRUCTS {
        for end in ENDS {
            if matches!(end, End::CommitReadOnly) && !construct.read_only_ok {
                continue;
            }
            let (a, b) = two_orgs(&issuer);
            let (_, seen) =
                a_then_b(&pool, &a, &b, construct.leave, end, construct.seen_by_b).await;
            assert!(
                !seen,
                "{reset:?}: org B saw org A's {} ({end:?})",
                construct.name
            );
        }
    }
}

#[tokio::test]
async fn no_construct_reaches_the_next_org_with_the_default_check() {
    nothing_reaches_b(SessionReset::default()).await;
}

#[tokio::test]
async fn no_construct_reaches_the_next_org_with_discard_all() {
    nothing_reaches_b(SessionReset::DiscardAll).await;
}

/// Closes the only connection of `pool` (an unscoped one is closed on drop).
async fn fresh_connection(pool: &TenantPool) {
    drop(
        pool.dangerous_unscoped_connection("test: close the only connection")
            .await
            .unwrap(),
    );
}

/// The tests above can fail: without a reset, each construct is visible to the next org (as the
/// security review reproduced), unless a rollback already undid it.
#[tokio::test]
async fn without_a_reset_every_construct_leaks() {
    let (_db, pool) = pool(SessionReset::DangerousNone).await;
    let issuer = common::TestIssuer::new();
    for construct in CONSTRUCTS {
        let (a, b) = two_orgs(&issuer);
        let (same, seen) = a_then_b(
            &pool,
            &a,
            &b,
            construct.leave,
            End::Commit,
            construct.seen_by_b,
        )
        .await;
        assert!(same);
        assert!(seen, "{} should leak without a reset", construct.name);
        fresh_connection(&pool).await;
        if construct.survives_rollback {
            let (a, b) = two_orgs(&issuer);
            let (_, seen) = a_then_b(
                &pool,
                &a,
                &b,
                construct.leave,
                End::FailThenDrop,
                construct.seen_by_b,
            )
            .await;
            assert!(seen, "{} survives a rollback", construct.name);
        }
        fresh_connection(&pool).await;
    }
}

/// Why an SQL-level `PREPARE` closes the connection (issue 18's review of the check's largest
/// cost): left behind (here without a reset, so it survives), it gives org B **no rows** of org
/// A's (the plan is re-made for B's role and the policy reads B's settings when it runs), but
/// its **text**, literals included, is B's to read in
/// `pg_prepared_statements`, and its name is taken for B. The default check closes such a
/// connection (`no_construct_reaches_the_next_org_with_the_default_check`).
#[tokio::test]
async fn a_prepare_left_behind_gives_no_rows_but_shows_its_text() {
    let (_db, pool) = pool(SessionReset::DangerousNone).await;
    let issuer = common::TestIssuer::new();
    let (a, b) = two_orgs(&issuer);
    let tx = pool.begin(&a, ScopeOptions::default()).await.unwrap();
    let a_org = a.org_id().as_uuid().unwrap();
    tx.execute(
        "INSERT INTO projects (org_id, name) VALUES ($1, 'org a plan')",
        &[&a_org],
    )
    .await
    .unwrap();
    tx.execute("PREPARE a_projects AS SELECT name FROM projects", &[])
        .await
        .unwrap();
    tx.execute("PREPARE a_note AS SELECT 'a secret of org a'", &[])
        .await
        .unwrap();
    let a_rows: Vec<String> = tx
        .query("EXECUTE a_projects", &[])
        .await
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect();
    assert_eq!(a_rows, ["org a plan"]);
    tx.commit().await.unwrap();

    let tx = pool.begin(&b, ScopeOptions::default()).await.unwrap();
    let b_rows = tx.query("EXECUTE a_projects", &[]).await.unwrap();
    assert!(
        b_rows.is_empty(),
        "org B got org A's rows through its PREPARE"
    );
    let texts: Vec<String> = tx
        .query(
            "SELECT statement FROM pg_prepared_statements WHERE from_sql ORDER BY name",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect();
    assert!(
        texts.iter().any(|text| text.contains("a secret of org a")),
        "{texts:?}"
    );
    let taken = tx
        .execute("PREPARE a_note AS SELECT 'org b'", &[])
        .await
        .unwrap_err();
    // 42P05 duplicate_prepared_statement (which the guard explains as a transaction-mode pooler
    // losing statements: with the default check, a name taken by an earlier request cannot be
    // the cause).
    assert!(taken.to_string().contains("42P05"), "{taken}");
    drop(tx);
    fresh_connection(&pool).await;
}

/// The review's reproduction: org A leaves a `WITH HOLD` cursor over its rows and a temporary
/// copy of them; org B's `FETCH` and `SELECT` find neither, while RLS shows B none of A's rows.
#[tokio::test]
async fn org_b_cannot_fetch_org_as_cursor_or_read_its_scratch_table() {
    let (_db, pool) = pool(SessionReset::default()).await;
    let issuer = common::TestIssuer::new();
    let (a, b) = two_orgs(&issuer);
    let tx = pool.begin(&a, ScopeOptions::default()).await.unwrap();
    tx.execute(
        "INSERT INTO projects (org_id, name) VALUES (tenant_guard.org_id(), 'org a secret')",
        &[],
    )
    .await
    .unwrap();
    tx.execute(
        "DECLARE leak CURSOR WITH HOLD FOR SELECT name FROM projects",
        &[],
    )
    .await
    .unwrap();
    tx.execute(
        "CREATE TEMP TABLE scratch AS SELECT name FROM projects",
        &[],
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();

    let tx = pool.begin(&b, ScopeOptions::default()).await.unwrap();
    let visible: i64 = tx
        .query_one("SELECT count(*) FROM projects", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(visible, 0, "RLS shows org B none of A's rows");
    let err = tx.query("FETCH ALL FROM leak", &[]).await.unwrap_err();
    assert_eq!(err.sqlstate().map(|s| s.code()), Some("34000"), "{err:?}");
    drop(tx);
    let tx = pool.begin(&b, ScopeOptions::default()).await.unwrap();
    let err = tx.query("SELECT * FROM scratch", &[]).await.unwrap_err();
    assert_eq!(err.sqlstate().map(|s| s.code()), Some("42P01"), "{err:?}");
}

/// `currval` after org A's insert: reset after every read-write transaction, on the same
/// connection (inserts are too common to close it for).
#[tokio::test]
async fn a_sequences_currval_does_not_reach_the_next_org() {
    let (_db, pool) = pool(SessionReset::default()).await;
    let issuer = common::TestIssuer::new();
    let (a, b) = two_orgs(&issuer);
    let tx = pool.begin(&a, ScopeOptions::default()).await.unwrap();
    let a_pid: i32 = tx
        .query_one("SELECT pg_backend_pid()", &[])
        .await
        .unwrap()
        .get(0);
    tx.execute("INSERT INTO audit_log (note) VALUES ('a')", &[])
        .await
        .unwrap();
    tx.commit().await.unwrap();
    let tx = pool.begin(&b, ScopeOptions::default()).await.unwrap();
    let b_pid: i32 = tx
        .query_one("SELECT pg_backend_pid()", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(a_pid, b_pid, "an insert does not cost the connection");
    let err = tx
        .query_one("SELECT currval('audit_log_id_seq')", &[])
        .await
        .unwrap_err();
    assert_eq!(err.sqlstate().map(|s| s.code()), Some("55000"), "{err:?}");
}

/// A session advisory lock org A forgot is released: another session can take it.
#[tokio::test]
async fn a_forgotten_session_advisory_lock_is_released() {
    let (db, admin) = database().await;
    let pool = pool_builder(&db).max_size(1).build().unwrap();
    let issuer = common::TestIssuer::new();
    let (a, _) = two_orgs(&issuer);
    for read_only in [false, true] {
        let tx = pool
            .begin(&a, ScopeOptions::default().read_only(read_only))
            .await
            .unwrap();
        tx.execute("SELECT pg_advisory_lock(99)", &[])
            .await
            .unwrap();
        tx.commit().await.unwrap();
        // The next checkout waits for the check, which released the lock.
        drop(pool.begin(&a, ScopeOptions::default()).await.unwrap());
        let taken: bool = admin
            .query_one("SELECT pg_try_advisory_lock(99)", &[])
            .await
            .unwrap()
            .get(0);
        assert!(taken, "read_only = {read_only}");
        admin
            .execute("SELECT pg_advisory_unlock(99)", &[])
            .await
            .unwrap();
    }
}

/// Clean transactions keep their connection and its statement cache: the next request's
/// statements are not prepared again (no round trip), on the same backend.
#[tokio::test]
async fn clean_transactions_keep_the_connection_and_its_statement_cache() {
    let (_db, pool) = pool(SessionReset::default()).await;
    let issuer = common::TestIssuer::new();
    let (a, b) = two_orgs(&issuer);
    const QUERY: &str = "SELECT count(*) FROM projects WHERE name <> 'statement cache probe'";
    let mut pids = Vec::new();
    for (who, read_only) in [(&a, false), (&b, true), (&a, true), (&b, false)] {
        let tx = pool
            .begin(who, ScopeOptions::default().read_only(read_only))
            .await
            .unwrap();
        let count: i64 = tx.query_one(QUERY, &[]).await.unwrap().get(0);
        assert_eq!(count, 0);
        let row = tx
            .query_one(
                "SELECT pg_backend_pid(), \
                        (SELECT count(*) FROM pg_prepared_statements WHERE statement = $1 AND NOT from_sql)",
                &[&QUERY],
            )
            .await
            .unwrap();
        pids.push(row.get::<_, i32>(0));
        assert_eq!(row.get::<_, i64>(1), 1, "prepared once, kept");
        tx.commit().await.unwrap();
    }
    assert!(pids.windows(2).all(|w| w[0] == w[1]), "{pids:?}");
}

/// `DiscardAll` keeps the connection but drops its statement cache; statements are prepared again
/// and work.
#[tokio::test]
async fn discard_all_prepares_again_and_works() {
    let (_db, pool) = pool(SessionReset::DiscardAll).await;
    let issuer = common::TestIssuer::new();
    let (a, b) = two_orgs(&issuer);
    let mut pids = Vec::new();
    for who in [&a, &b, &a] {
        let result: Result<(i32, i64), GuardError> =
            tenant_guard_postgres::with_tenant_guard(&pool, who, async |tx| {
                let row = tx
                    .query_one(
                        "SELECT pg_backend_pid(), (SELECT count(*) FROM pg_prepared_statements)",
                        &[],
                    )
                    .await?;
                Ok((row.get(0), row.get(1)))
            })
            .await;
        let (pid, prepared) = result.unwrap();
        pids.push(pid);
        // The scoping statement and this one, nothing left from before.
        assert!(prepared <= 2, "{prepared}");
    }
    assert!(pids.windows(2).all(|w| w[0] == w[1]), "{pids:?}");
}

/// The reset rides in the `COMMIT`'s message, and the server skips the statements behind a
/// `COMMIT` that fails (here a deferred unique constraint): the guard then resets and checks on
/// their own. What a rollback does not undo — `currval`, a session advisory lock, an SQL
/// `PREPARE` — still never reaches the next org, and the commit's error is the caller's.
#[tokio::test]
async fn a_failed_commit_still_resets_the_session() {
    let (db, pool) = pool(SessionReset::default()).await;
    let admin = db.connect().await.unwrap();
    admin
        .batch_execute(
            "CREATE TABLE deferred_unique (id int UNIQUE DEFERRABLE INITIALLY DEFERRED); \
             GRANT INSERT ON deferred_unique TO authenticated",
        )
        .await
        .unwrap();
    let issuer = common::TestIssuer::new();
    let cases: [(&str, &str); 4] = [
        (
            "INSERT INTO audit_log (note) VALUES ('a')",
            // currval: probed below (an error when unset).
            "SELECT false",
        ),
        (
            "SELECT pg_advisory_lock(4217)",
            "SELECT EXISTS (SELECT FROM pg_locks WHERE locktype = 'advisory' \
             AND pid = pg_backend_pid() AND objid = 4217)",
        ),
        (
            "PREPARE leak_stmt AS SELECT 'a secret of org a'",
            "SELECT EXISTS (SELECT FROM pg_prepared_statements WHERE name = 'leak_stmt')",
        ),
        (
            "SET app.left_by_a = 'a secret of org a'",
            "SELECT coalesce(current_setting('app.left_by_a', true), '') <> ''",
        ),
    ];
    for (leave, seen_by_b) in cases {
        let (a, b) = two_orgs(&issuer);
        let tx = pool.begin(&a, ScopeOptions::default()).await.unwrap();
        tx.execute(leave, &[]).await.unwrap();
        tx.execute("INSERT INTO deferred_unique VALUES (1), (1)", &[])
            .await
            .unwrap();
        let err = tx.commit().await.unwrap_err();
        assert_eq!(
            err.sqlstate().map(|s| s.code()),
            Some("23505"),
            "{leave}: {err:?}"
        );
        let tx = pool.begin(&b, ScopeOptions::default()).await.unwrap();
        let seen: bool = tx.query_one(seen_by_b, &[]).await.unwrap().get(0);
        assert!(!seen, "org B saw org A's `{leave}` after a failed commit");
        if leave.starts_with("INSERT") {
            let err = tx
                .query_one("SELECT currval('audit_log_id_seq')", &[])
                .await
                .unwrap_err();
            assert_eq!(err.sqlstate().map(|s| s.code()), Some("55000"), "{err:?}");
        } else {
            tx.commit().await.unwrap();
        }
    }
}
