// The connection hygiene cases, shared by `hygiene.rs` (a direct connection) and
// `hygiene_pgbouncer.rs` (through PgBouncer in transaction mode). Each includes this file after
// defining `setup(size)`, `builder(db)` and `RESETS_SESSION` (whether the guard resets the
// session after each transaction: both do; behind a transaction-mode pooler the reset rides in
// the `COMMIT`'s message, see `tenant_guard_postgres::pooler`).
async fn pid(tx: &TenantTx) -> i32 {
    tx.query_one("SELECT pg_backend_pid()", &[])
        .await
        .unwrap()
        .get(0)
}

async fn audit_rows(admin: &tokio_postgres::Client, note: &str) -> i64 {
    admin
        .query_one("SELECT count(*) FROM audit_log WHERE note = $1", &[&note])
        .await
        .unwrap()
        .get(0)
}

#[tokio::test]
async fn after_the_closure_returns_err() {
    let env = setup(1).await;
    let (alice, _) = two_orgs(&env.issuer);
    let mut seen_pid = 0;
    let result: Result<(), TestError> = with_tenant_guard(&env.pool, &alice, async |tx| {
        seen_pid = pid(tx).await;
        tx.execute("INSERT INTO audit_log (note) VALUES ('err-path')", &[])
            .await?;
        Err(TestError::Handler("handler failed"))
    })
    .await;
    assert!(matches!(result, Err(TestError::Handler(_))));
    assert_eq!(audit_rows(&env.admin, "err-path").await, 0, "rolled back");
    let snap = snapshot(&env.pool).await;
    snap.assert_clean();
    assert_eq!(snap.pid, seen_pid, "the same connection was reused");
}

#[tokio::test]
async fn after_a_database_error() {
    let env = setup(1).await;
    let (alice, _) = two_orgs(&env.issuer);
    let mut seen_pid = 0;
    let result: Result<(), GuardError> = with_tenant_guard(&env.pool, &alice, async |tx| {
        seen_pid = pid(tx).await;
        tx.execute("INSERT INTO audit_log (note) VALUES ('db-error')", &[])
            .await?;
        tx.query_one("SELECT 1 / 0", &[]).await?;
        Ok(())
    })
    .await;
    let err = result.unwrap_err();
    assert!(matches!(err, GuardError::Database(_)), "{err:?}");
    assert_eq!(err.sqlstate().map(|s| s.code()), Some("22012"));
    assert_eq!(audit_rows(&env.admin, "db-error").await, 0);
    let snap = snapshot(&env.pool).await;
    snap.assert_clean();
    assert_eq!(snap.pid, seen_pid);
}

#[tokio::test]
async fn after_a_panic_in_the_closure() {
    let env = setup(1).await;
    let (alice, _) = two_orgs(&env.issuer);
    let pool = env.pool.clone();
    let (pid_tx, pid_rx) = tokio::sync::oneshot::channel();
    let joined = tokio::spawn(async move {
        let _: Result<(), GuardError> = with_tenant_guard(&pool, &alice, async |tx| {
            let _ = pid_tx.send(pid(tx).await);
            tx.execute("INSERT INTO audit_log (note) VALUES ('panic-path')", &[])
                .await?;
            panic!("handler bug");
        })
        .await;
    })
    .await;
    assert!(joined.unwrap_err().is_panic());
    let seen_pid = pid_rx.await.unwrap();
    assert_eq!(audit_rows(&env.admin, "panic-path").await, 0);
    let snap = snapshot(&env.pool).await;
    snap.assert_clean();
    assert_eq!(
        snap.pid, seen_pid,
        "a rollback was queued, the connection kept"
    );
}

#[tokio::test]
async fn after_a_transaction_is_dropped_unfinished() {
    let env = setup(1).await;
    let (alice, _) = two_orgs(&env.issuer);
    let tx = env
        .pool
        .begin(&alice, ScopeOptions::default())
        .await
        .unwrap();
    let seen_pid = pid(&tx).await;
    tx.execute("INSERT INTO audit_log (note) VALUES ('forgotten')", &[])
        .await
        .unwrap();
    drop(tx); // neither commit nor rollback
    assert_eq!(audit_rows(&env.admin, "forgotten").await, 0);
    let snap = snapshot(&env.pool).await;
    snap.assert_clean();
    assert_eq!(snap.pid, seen_pid);
}

#[tokio::test]
async fn after_a_statement_timeout() {
    let (db, admin) = common::database().await;
    let pool = builder(&db)
        .max_size(1)
        .statement_timeout(Duration::from_millis(200))
        .build()
        .unwrap();
    let issuer = common::TestIssuer::new();
    let (alice, _) = two_orgs(&issuer);
    let mut seen_pid = 0;
    let result: Result<(), GuardError> = with_tenant_guard(&pool, &alice, async |tx| {
        seen_pid = pid(tx).await;
        tx.execute("INSERT INTO audit_log (note) VALUES ('timeout')", &[])
            .await?;
        tx.execute("SELECT pg_sleep(30)", &[]).await?;
        Ok(())
    })
    .await;
    let err = result.unwrap_err();
    assert!(matches!(err, GuardError::StatementTimeout(_)), "{err:?}");
    assert_eq!(err.status(), http::StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(audit_rows(&admin, "timeout").await, 0);
    let snap = snapshot(&pool).await;
    snap.assert_clean();
    assert_eq!(snap.pid, seen_pid);
}

/// Waits until the backend `pid` is running a statement containing `needle`.
async fn wait_until_running(admin: &tokio_postgres::Client, pid: i32, needle: &str) {
    for _ in 0..2000 {
        let running: bool = admin
            .query_one(
                "SELECT EXISTS (SELECT 1 FROM pg_stat_activity
                                 WHERE pid = $1 AND state = 'active' AND query LIKE '%' || $2 || '%')",
                &[&pid, &needle],
            )
            .await
            .unwrap()
            .get(0);
        if running {
            return;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    panic!("backend {pid} never ran {needle}");
}

#[tokio::test]
async fn after_cancellation_mid_query() {
    let env = setup(1).await;
    let (alice, bob) = two_orgs(&env.issuer);
    let tx = env
        .pool
        .begin(&alice, ScopeOptions::default())
        .await
        .unwrap();
    let seen_pid = pid(&tx).await;
    tx.execute("INSERT INTO audit_log (note) VALUES ('cancelled')", &[])
        .await
        .unwrap();
    {
        // The client goes away while the query runs: the future is dropped mid-query.
        let slow = tx.execute("SELECT pg_sleep(60) -- cancel-me", &[]);
        tokio::select! {
            _ = slow => panic!("the sleep finished"),
            () = wait_until_running(&env.admin, seen_pid, "cancel-me") => {}
        }
    }
    drop(tx);
    assert_eq!(audit_rows(&env.admin, "cancelled").await, 0);

    // The connection could still be busy: it was discarded, and a new one is clean.
    let snap = snapshot(&env.pool).await;
    snap.assert_clean();
    assert_ne!(
        snap.pid, seen_pid,
        "a connection with a running statement must be discarded"
    );

    // And the pool still works, scoped to the next principal.
    let org: uuid::Uuid = with_tenant_guard(&env.pool, &bob, async |tx| {
        Ok::<_, GuardError>(
            tx.query_one("SELECT tenant_guard.org_id()", &[])
                .await?
                .get(0),
        )
    })
    .await
    .unwrap();
    assert_eq!(org, bob.org_id());
}

#[tokio::test]
async fn after_the_whole_guarded_future_is_dropped() {
    let env = setup(1).await;
    let (alice, _) = two_orgs(&env.issuer);
    let (pid_tx, pid_rx) = tokio::sync::oneshot::channel();
    let admin = &env.admin;
    let guarded = with_tenant_guard(&env.pool, &alice, async |tx| {
        let _ = pid_tx.send(pid(tx).await);
        tx.execute("SELECT pg_sleep(60) -- drop-the-request", &[])
            .await?;
        Ok::<_, GuardError>(())
    });
    let watch = async {
        let pid = pid_rx.await.unwrap();
        wait_until_running(admin, pid, "drop-the-request").await;
        pid
    };
    let seen_pid = tokio::select! {
        _ = guarded => panic!("the sleep finished"),
        pid = watch => pid,
    };
    let snap = snapshot(&env.pool).await;
    snap.assert_clean();
    assert_ne!(snap.pid, seen_pid);
}

#[tokio::test]
async fn a_read_only_commit_is_not_awaited_yet_the_next_user_is_clean() {
    let env = setup(1).await;
    let (alice, bob) = two_orgs(&env.issuer);
    let tx = env
        .pool
        .begin(&alice, ScopeOptions::default().read_only(true))
        .await
        .unwrap();
    let seen_pid = pid(&tx).await;
    let err = tx
        .execute("INSERT INTO audit_log (note) VALUES ('ro')", &[])
        .await
        .unwrap_err();
    assert_eq!(
        err.sqlstate().map(|s| s.code()),
        Some("25006"),
        "read-only refuses writes"
    );
    // The failed write aborted the transaction: committing reports it.
    assert!(matches!(tx.commit().await, Err(GuardError::RolledBack)));

    let tx = env
        .pool
        .begin(&alice, ScopeOptions::default().read_only(true))
        .await
        .unwrap();
    let row = tx
        .query_one("SELECT pg_backend_pid(), now()::text", &[])
        .await
        .unwrap();
    assert_eq!(row.get::<_, i32>(0), seen_pid);
    let alice_started: String = row.get(1);
    tx.commit().await.unwrap();
    // Immediately the next user, on the same connection, behind the queued COMMIT.
    let tx = env.pool.begin(&bob, ScopeOptions::default()).await.unwrap();
    let row = tx
        .query_one(
            "SELECT pg_backend_pid(), tenant_guard.org_id(), auth.uid()::text, now() > $1::text::timestamptz",
            &[&alice_started],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, i32>(0), seen_pid);
    assert_eq!(row.get::<_, uuid::Uuid>(1), bob.org_id());
    assert_eq!(row.get::<_, String>(2), bob.user_id());
    assert!(row.get::<_, bool>(3), "a new transaction, not alice's");
    tx.commit().await.unwrap();
    snapshot(&env.pool).await.assert_clean();
}

#[tokio::test]
async fn ignoring_a_failed_statement_cannot_commit() {
    let env = setup(1).await;
    let (alice, _) = two_orgs(&env.issuer);
    let result: Result<(), GuardError> = with_tenant_guard(&env.pool, &alice, async |tx| {
        tx.execute("INSERT INTO audit_log (note) VALUES ('ignored')", &[])
            .await?;
        let _ = tx.execute("SELECT 1 / 0", &[]).await; // error ignored by the handler
        Ok(())
    })
    .await;
    assert!(matches!(result, Err(GuardError::RolledBack)), "{result:?}");
    assert_eq!(audit_rows(&env.admin, "ignored").await, 0);
    snapshot(&env.pool).await.assert_clean();
}

#[tokio::test]
async fn a_transaction_that_sends_nothing_costs_nothing_and_leaves_nothing() {
    let env = setup(1).await;
    let (alice, _) = two_orgs(&env.issuer);
    let tx = env
        .pool
        .begin(&alice, ScopeOptions::default())
        .await
        .unwrap();
    tx.commit().await.unwrap();
    let tx = env
        .pool
        .begin(&alice, ScopeOptions::default())
        .await
        .unwrap();
    tx.rollback().await.unwrap();
    snapshot(&env.pool).await.assert_clean();
}

#[tokio::test]
async fn committed_work_is_kept_and_the_connection_is_clean() {
    let env = setup(1).await;
    let (alice, _) = two_orgs(&env.issuer);
    with_tenant_guard(&env.pool, &alice, async |tx| {
        tx.execute("INSERT INTO audit_log (note) VALUES ('kept')", &[])
            .await
    })
    .await
    .unwrap();
    assert_eq!(audit_rows(&env.admin, "kept").await, 1);
    snapshot(&env.pool).await.assert_clean();
}

/// A handler that gave up waiting for a statement (dropped its future) and then commits: the
/// commit waits for the statement, and reports a rollback if it failed instead of pretending.
#[tokio::test]
async fn committing_after_a_cancelled_statement_tells_the_truth() {
    let env = setup(1).await;
    let (alice, _) = two_orgs(&env.issuer);

    // The abandoned statement succeeds: the commit keeps the work.
    let tx = env
        .pool
        .begin(&alice, ScopeOptions::default())
        .await
        .unwrap();
    let seen_pid = pid(&tx).await;
    tx.execute(
        "INSERT INTO audit_log (note) VALUES ('kept-after-cancel')",
        &[],
    )
    .await
    .unwrap();
    {
        let slow = tx.execute("SELECT pg_sleep(0.3) -- abandoned-ok", &[]);
        tokio::select! {
            _ = slow => panic!("finished before it was seen running"),
            () = wait_until_running(&env.admin, seen_pid, "abandoned-ok") => {}
        }
    }
    tx.commit().await.unwrap();
    assert_eq!(audit_rows(&env.admin, "kept-after-cancel").await, 1);

    // The abandoned statement fails: the commit says so.
    let tx = env
        .pool
        .begin(&alice, ScopeOptions::default())
        .await
        .unwrap();
    let seen_pid = pid(&tx).await;
    tx.execute(
        "INSERT INTO audit_log (note) VALUES ('lost-after-cancel')",
        &[],
    )
    .await
    .unwrap();
    {
        let slow = tx.execute(
            "SELECT pg_sleep(0.3), (SELECT 1 / (count(*) - count(*)) FROM pg_class) -- abandoned-fails",
            &[],
        );
        tokio::select! {
            _ = slow => panic!("finished before it was seen running"),
            () = wait_until_running(&env.admin, seen_pid, "abandoned-fails") => {}
        }
    }
    assert!(matches!(tx.commit().await, Err(GuardError::RolledBack)));
    assert_eq!(audit_rows(&env.admin, "lost-after-cancel").await, 0);
    snapshot(&env.pool).await.assert_clean();
}

/// A handler that changes the *session* (plain `SET ROLE`, `set_config(…, false)`) and commits:
/// the values never reach another request's statements (every guarded transaction sets role,
/// claims, sub and org itself before its first statement). Where the guard owns the session
/// (`RESETS_SESSION`), the session reset after the transaction also removes them from the
/// connection (`tests/session_state.rs` covers the other kinds of session state); behind a
/// transaction-mode pooler too, where the reset rides in the `COMMIT`'s message.
#[tokio::test]
async fn a_handlers_session_settings_never_reach_the_next_request() {
    let env = setup(1).await;
    let (alice, bob) = two_orgs(&env.issuer);
    let alice_pid = with_tenant_guard(&env.pool, &alice, async |tx| {
        tx.execute(
            "INSERT INTO projects (org_id, name) VALUES (tenant_guard.org_id(), 'alice-only')",
            &[],
        )
        .await?;
        // The worst a handler can do to its session: switch to the service role and plant another
        // identity, all session-level (they survive the COMMIT).
        tx.execute("SET ROLE service_role", &[]).await?;
        tx.execute(
            "SELECT set_config('request.jwt.claims', '{\"role\":\"service_role\"}', false), \
                    set_config('request.jwt.claim.sub', 'planted', false), \
                    set_config('tenant_guard.org_id', gen_random_uuid()::text, false)",
            &[],
        )
        .await?;
        Ok::<_, GuardError>(pid(tx).await)
    })
    .await
    .unwrap();

    let (bob_pid, user, org, sub, claims_org, projects, planted) =
        with_tenant_guard(&env.pool, &bob, async |tx| {
            let row = tx
                .query_one(
                    "SELECT pg_backend_pid(), current_user::text, \
                            current_setting('tenant_guard.org_id'), \
                            tenant_guard.user_id(), \
                            current_setting('request.jwt.claims')::jsonb ->> 'org_id', \
                            (SELECT count(*) FROM projects), \
                            current_setting('request.jwt.claim.sub', true) = 'planted'",
                    &[],
                )
                .await?;
            Ok::<_, GuardError>((
                row.get::<_, i32>(0),
                row.get::<_, String>(1),
                row.get::<_, String>(2),
                row.get::<_, String>(3),
                row.get::<_, Option<String>>(4),
                row.get::<_, i64>(5),
                row.get::<_, Option<bool>>(6),
            ))
        })
        .await
        .unwrap();
    assert_eq!(bob_pid, alice_pid, "the same connection");
    assert_eq!(user, "authenticated", "the planted role did not apply");
    assert_eq!(org, bob.org_id().to_string());
    assert_eq!(sub, bob.user_id());
    // The default scope does not set the per-claim settings: the planted one is gone with the
    // session's reset, not overwritten.
    assert_ne!(planted, Some(true), "the planted request.jwt.claim.sub survived");
    assert_eq!(claims_org, Some(bob.org_id().to_string()));
    assert_eq!(projects, 0, "alice's row is invisible to bob");
    if RESETS_SESSION {
        // Between requests, the connection is the login's again, without the planted values.
        let snap = snapshot(&env.pool).await;
        snap.assert_clean();
        assert_eq!(snap.pid, alice_pid, "reset in place, not closed");
    }
}

/// A read-only transaction (whose `COMMIT` is not awaited) that changes the session: `SET
/// search_path`, a custom setting, a plain `SET ROLE`. Where the guard resets the session, none
/// of it is on the connection afterwards (behind the pooler: on the one server connection).
#[tokio::test]
async fn a_read_only_transactions_session_settings_are_reset() {
    let env = setup(1).await;
    let (alice, _) = two_orgs(&env.issuer);
    let tx = env
        .pool
        .begin(&alice, ScopeOptions::default().read_only(true))
        .await
        .unwrap();
    tx.execute("SET search_path = auth, public", &[]).await.unwrap();
    tx.execute("SELECT set_config('app.left_by_alice', 'alice', false)", &[])
        .await
        .unwrap();
    tx.execute("SET ROLE service_role", &[]).await.unwrap();
    tx.commit().await.unwrap();
    let conn = env
        .pool
        .dangerous_unscoped_connection("test: inspect the session after a read-only commit")
        .await
        .unwrap();
    let messages = conn
        .simple_query(
            "SELECT current_setting('search_path'), \
                    coalesce(current_setting('app.left_by_alice', true), ''), \
                    current_user::text",
        )
        .await
        .unwrap();
    let row = messages
        .iter()
        .find_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(row) => Some(row),
            _ => None,
        })
        .unwrap();
    let left = (
        row.get(0).unwrap().to_owned(),
        row.get(1).unwrap().to_owned(),
        row.get(2).unwrap().to_owned(),
    );
    let planted = left.0 == "auth, public" || left.1 == "alice" || left.2 == "service_role";
    assert_eq!(planted, !RESETS_SESSION, "{left:?}");
}
