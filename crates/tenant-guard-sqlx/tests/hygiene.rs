//! Connection hygiene of the sqlx guard against a real PostgreSQL: whatever a handler does
//! (error, panic, cancelled future, statement timeout, committed session-level settings, killed
//! backend, server restart), the next checkout of the connection carries no role, no claims, no
//! session setting and no open transaction, or the connection was discarded. Pools of size 1,
//! so the next checkout is the same connection (checked by its backend pid) unless discarded.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stderr)]

mod common;

use std::time::{Duration, Instant};

use common::{Env, LOGIN, audit_rows, env, env_with, snapshot, two_orgs};
use sqlx::postgres::{PgConnection, PgPoolOptions};
use tenant_guard_core::ToErrorResponse;
use tenant_guard_sqlx::{SqlxGuardError, with_tenant_guard};

async fn pid(conn: &mut PgConnection) -> i32 {
    sqlx::query_scalar("SELECT pg_backend_pid()")
        .fetch_one(conn)
        .await
        .unwrap()
}

async fn note(conn: &mut PgConnection, note: &str) -> Result<(), SqlxGuardError> {
    sqlx::query("INSERT INTO audit_log (note) VALUES ($1)")
        .bind(note)
        .execute(conn)
        .await?;
    Ok(())
}

#[derive(Debug)]
enum TestError {
    Guard(#[allow(dead_code)] SqlxGuardError),
    Handler,
}

impl From<SqlxGuardError> for TestError {
    fn from(e: SqlxGuardError) -> Self {
        Self::Guard(e)
    }
}

#[tokio::test]
async fn after_the_closure_returns_err() {
    let env = env(1).await;
    let (alice, _) = two_orgs(&env.issuer);
    let mut seen = 0;
    let seen_mut = &mut seen;
    let result: Result<(), TestError> = with_tenant_guard(&env.guard, &alice, |tx| {
        Box::pin(async move {
            let p = pid(tx).await;
            *seen_mut = p;
            note(tx, "err-path").await?;
            Err(TestError::Handler)
        })
    })
    .await;
    assert!(matches!(result, Err(TestError::Handler)));
    assert_eq!(audit_rows(&env.admin, "err-path").await, 0, "rolled back");
    let snap = snapshot(&env.pool).await;
    snap.assert_clean();
    assert_eq!(snap.pid, seen, "the same connection was reused");
}

#[tokio::test]
async fn after_a_database_error() {
    let env = env(1).await;
    let (alice, _) = two_orgs(&env.issuer);
    let mut seen = 0;
    let seen_mut = &mut seen;
    let err = with_tenant_guard(&env.guard, &alice, |tx| {
        Box::pin(async move {
            let p = pid(tx).await;
            *seen_mut = p;
            note(tx, "db-error").await?;
            sqlx::query("SELECT 1 / 0").execute(&mut **tx).await?;
            Ok::<_, SqlxGuardError>(())
        })
    })
    .await
    .unwrap_err();
    assert!(matches!(err, SqlxGuardError::Database(_)), "{err:?}");
    assert_eq!(err.sqlstate(), Some("22012"));
    assert_eq!(audit_rows(&env.admin, "db-error").await, 0);
    let snap = snapshot(&env.pool).await;
    snap.assert_clean();
    assert_eq!(snap.pid, seen);
}

#[tokio::test]
async fn after_a_panic_in_the_closure() {
    let env = env(1).await;
    let (alice, _) = two_orgs(&env.issuer);
    let guard = env.guard.clone();
    let (pid_tx, pid_rx) = tokio::sync::oneshot::channel();
    let joined = tokio::spawn(async move {
        let _: Result<(), SqlxGuardError> = with_tenant_guard(&guard, &alice, |tx| {
            Box::pin(async move {
                let _ = pid_tx.send(pid(tx).await);
                note(tx, "panic-path").await?;
                panic!("handler bug");
            })
        })
        .await;
    })
    .await;
    assert!(joined.unwrap_err().is_panic());
    let seen = pid_rx.await.unwrap();
    assert_eq!(audit_rows(&env.admin, "panic-path").await, 0);
    let snap = snapshot(&env.pool).await;
    snap.assert_clean();
    assert_eq!(snap.pid, seen);
}

/// The future is dropped while a statement runs: sqlx waits for the statement's answer before
/// the connection's next use (there is no cancel request), then rolls back and resets.
#[tokio::test]
async fn after_the_future_is_dropped_mid_statement() {
    let env = env(1).await;
    let (alice, _) = two_orgs(&env.issuer);
    let dropped = tokio::time::timeout(
        Duration::from_millis(200),
        with_tenant_guard(&env.guard, &alice, |tx| {
            Box::pin(async move {
                note(tx, "cancelled").await?;
                sqlx::query("SELECT pg_sleep(1.5)")
                    .execute(&mut **tx)
                    .await?;
                Ok::<_, SqlxGuardError>(())
            })
        }),
    )
    .await;
    assert!(dropped.is_err(), "the future was dropped by the timeout");
    let started = Instant::now();
    let snap = snapshot(&env.pool).await;
    let waited = started.elapsed();
    eprintln!("next checkout after a dropped statement waited {waited:?}");
    snap.assert_clean();
    assert_eq!(audit_rows(&env.admin, "cancelled").await, 0, "rolled back");
}

/// A dropped transaction that sent nothing more than the scoping: the queued ROLLBACK is
/// flushed on release; the connection is reused at once.
#[tokio::test]
async fn after_a_forgotten_transaction() {
    let env = env(1).await;
    let (alice, _) = two_orgs(&env.issuer);
    let mut tx = env
        .guard
        .begin(&alice, tenant_guard_sqlx::ScopeOptions::default())
        .await
        .unwrap();
    let seen = pid(&mut tx).await;
    note(&mut tx, "forgotten").await.unwrap();
    drop(tx);
    let snap = snapshot(&env.pool).await;
    snap.assert_clean();
    assert_eq!(snap.pid, seen);
    assert_eq!(audit_rows(&env.admin, "forgotten").await, 0);
}

#[tokio::test]
async fn after_a_statement_timeout_the_pools_own_timeout_stays() {
    let env = env_with(1, tenant_guard_sqlx::pool_options(), |o| {
        o.options([("statement_timeout", "200ms")])
    })
    .await;
    let (alice, _) = two_orgs(&env.issuer);
    let err = with_tenant_guard(&env.guard, &alice, |tx| {
        Box::pin(async move {
            sqlx::query("SELECT pg_sleep(2)").execute(&mut **tx).await?;
            Ok::<_, SqlxGuardError>(())
        })
    })
    .await
    .unwrap_err();
    assert!(
        matches!(err, SqlxGuardError::StatementTimeout(_)),
        "{err:?}"
    );
    let r = err.to_error_response();
    assert_eq!((r.status().as_u16(), r.code()), (503, "database_timeout"));
    snapshot(&env.pool).await.assert_clean();
    let mut conn = env.pool.acquire().await.unwrap();
    let timeout: String = sqlx::query_scalar("SELECT current_setting('statement_timeout')")
        .fetch_one(&mut *conn)
        .await
        .unwrap();
    assert_eq!(timeout, "200ms", "RESET ALL keeps startup-packet settings");
}

/// What a handler commits at session level (search_path, a custom setting, SET ROLE).
async fn commit_session_changes(env: &Env) -> i32 {
    let (alice, _) = two_orgs(&env.issuer);
    with_tenant_guard(&env.guard, &alice, |tx| {
        Box::pin(async move {
            sqlx::Executor::execute(
                &mut **tx,
                "SET search_path = pg_catalog; SELECT set_config('app.leak', 'x', false); \
             SET SESSION ROLE anon; \
             SELECT set_config('request.jwt.claims', '{\"org_id\":\"leak\"}', false)",
            )
            .await?;
            Ok::<_, SqlxGuardError>(pid(tx).await)
        })
    })
    .await
    .unwrap()
}

#[tokio::test]
async fn committed_session_settings_are_reset_by_the_release_hook() {
    let env = env(1).await;
    let seen = commit_session_changes(&env).await;
    let snap = snapshot(&env.pool).await;
    snap.assert_clean();
    assert_eq!(snap.pid, seen, "reset, not discarded");
}

/// The measurement behind the hook: sqlx alone (no `after_release`) returns the connection with
/// the committed session state. If this starts failing, sqlx resets by itself.
#[tokio::test]
async fn without_the_hook_sqlx_alone_leaks_session_settings() {
    let env = env_with(1, PgPoolOptions::new(), |o| o).await;
    let seen = commit_session_changes(&env).await;
    let snap = snapshot(&env.pool).await;
    assert_eq!(snap.pid, seen);
    assert_eq!(snap.custom.as_deref(), Some("x"), "{snap:?}");
    assert_eq!(snap.current_user, "anon", "{snap:?}");
    assert_eq!(snap.search_path, "pg_catalog", "{snap:?}");
}

/// Session state beyond settings, committed by a handler (as `tests/session_state.rs` of the
/// tokio-postgres guard): a `WITH HOLD` cursor, `LISTEN`, a session advisory lock and `currval`
/// are reset in place (same backend, gone); an SQL-level `PREPARE` and a temporary table close
/// the connection (the next checkout is another backend). Each `probe` answers `true` when the
/// state is visible on the next checkout.
#[tokio::test]
async fn session_state_beyond_settings_is_reset_or_the_connection_closed() {
    let cases: [(&str, &str, &str, bool); 6] = [
        (
            "WITH HOLD cursor",
            "DECLARE leak CURSOR WITH HOLD FOR SELECT 1",
            "SELECT EXISTS (SELECT FROM pg_cursors WHERE name = 'leak')",
            true,
        ),
        (
            "LISTEN",
            "LISTEN org_a_events",
            "SELECT EXISTS (SELECT FROM pg_listening_channels() AS c WHERE c = 'org_a_events')",
            true,
        ),
        (
            "session advisory lock",
            "SELECT pg_advisory_lock(4217)",
            "SELECT EXISTS (SELECT FROM pg_locks WHERE locktype = 'advisory' \
             AND pid = pg_backend_pid() AND objid = 4217)",
            true,
        ),
        (
            "currval",
            "SELECT nextval('tenant_guard_sqlx_hygiene_seq')",
            "SELECT currval('tenant_guard_sqlx_hygiene_seq') IS NOT NULL",
            true,
        ),
        (
            "PREPARE",
            "PREPARE leak_stmt AS SELECT 'a secret of org a'",
            "SELECT EXISTS (SELECT FROM pg_prepared_statements WHERE name = 'leak_stmt')",
            false,
        ),
        (
            "temporary table",
            "CREATE TEMP TABLE scratch AS SELECT 1 AS a",
            "SELECT to_regclass('pg_temp.scratch') IS NOT NULL",
            false,
        ),
    ];
    for (name, leave, probe, kept) in cases {
        let env = env(1).await;
        env.admin
            .batch_execute(
                "CREATE SEQUENCE tenant_guard_sqlx_hygiene_seq; \
                 GRANT USAGE ON SEQUENCE tenant_guard_sqlx_hygiene_seq TO PUBLIC",
            )
            .await
            .unwrap();
        let (alice, _) = two_orgs(&env.issuer);
        let seen = with_tenant_guard(&env.guard, &alice, |tx| {
            Box::pin(async move {
                sqlx::Executor::execute(&mut **tx, leave).await?;
                Ok::<_, SqlxGuardError>(pid(tx).await)
            })
        })
        .await
        .unwrap_or_else(|e| panic!("{name}: {e:?}"));
        let mut conn = env.pool.acquire().await.unwrap();
        let now = pid(&mut conn).await;
        let answer = sqlx::query_scalar::<_, bool>(probe)
            .fetch_one(&mut *conn)
            .await;
        // `currval` errors (55000) when the session never called `nextval`: "not visible".
        let visible = match answer {
            Ok(visible) => visible,
            Err(error) if name == "currval" && error.to_string().contains("not yet defined") => {
                false
            }
            Err(error) => panic!("{name}: {error}"),
        };
        assert!(!visible, "{name} reached the next checkout");
        assert_eq!(
            now == seen,
            kept,
            "{name}: kept {kept} (pid {seen} then {now})"
        );
    }
}

/// With a superuser login, a handler can change the *session* user (`SET SESSION AUTHORIZATION`,
/// at session level, committed). `RESET ALL; RESET ROLE` leave it (the next request would run
/// as that role, and as the pool's login again only once it ends); the release hook sets it
/// back to the login.
#[tokio::test]
async fn a_superuser_logins_session_authorization_is_reset_by_the_release_hook() {
    let env = env(1).await;
    // The test database's own URL: its superuser.
    let pool = tenant_guard_sqlx::pool_options()
        .max_connections(1)
        .acquire_timeout(Duration::from_secs(10))
        .connect(env.db.url())
        .await
        .unwrap();
    let guard = tenant_guard_sqlx::SqlxGuard::new(pool.clone());
    let (login, superuser): (String, bool) = sqlx::query_as(
        "SELECT session_user::text, rolsuper FROM pg_roles WHERE rolname = session_user",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert!(superuser && login != LOGIN, "{login}");
    let (alice, _) = two_orgs(&env.issuer);
    let seen = with_tenant_guard(&guard, &alice, |tx| {
        Box::pin(async move {
            let set = format!("SET SESSION AUTHORIZATION {LOGIN}");
            sqlx::Executor::execute(&mut **tx, set.as_str()).await?;
            Ok::<_, SqlxGuardError>(pid(tx).await)
        })
    })
    .await
    .unwrap();
    let mut conn = pool.acquire().await.unwrap();
    let (next, session_user, current_user): (i32, String, String) =
        sqlx::query_as("SELECT pg_backend_pid(), session_user::text, current_user::text")
            .fetch_one(&mut *conn)
            .await
            .unwrap();
    assert_eq!(next, seen, "the same connection, reset");
    assert_eq!(
        (session_user.as_str(), current_user.as_str()),
        (login.as_str(), login.as_str()),
        "the next checkout is the login again"
    );
}

#[tokio::test]
async fn a_backend_killed_while_idle_is_replaced() {
    let env = env(1).await;
    let (alice, _) = two_orgs(&env.issuer);
    let first = with_tenant_guard(&env.guard, &alice, |tx| {
        Box::pin(async move { Ok::<_, SqlxGuardError>(pid(tx).await) })
    })
    .await
    .unwrap();
    env.admin
        .execute("SELECT pg_terminate_backend($1)", &[&first])
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    // sqlx pings before handing out an idle connection (test_before_acquire): replaced.
    let second = with_tenant_guard(&env.guard, &alice, |tx| {
        Box::pin(async move {
            note(tx, "after-kill").await?;
            Ok::<_, SqlxGuardError>(pid(tx).await)
        })
    })
    .await
    .unwrap();
    assert_ne!(first, second);
    assert_eq!(audit_rows(&env.admin, "after-kill").await, 1);
    snapshot(&env.pool).await.assert_clean();
}

#[tokio::test]
async fn a_backend_killed_mid_transaction_is_503_and_discarded() {
    let env = env(1).await;
    let (alice, _) = two_orgs(&env.issuer);
    let admin = &env.admin;
    let mut seen = 0;
    let seen_mut = &mut seen;
    let err = with_tenant_guard(&env.guard, &alice, |tx| {
        Box::pin(async move {
            let p = pid(tx).await;
            *seen_mut = p;
            note(tx, "killed").await?;
            admin
                .execute("SELECT pg_terminate_backend($1)", &[&p])
                .await
                .unwrap();
            tokio::time::sleep(Duration::from_millis(100)).await;
            note(tx, "killed-2").await?;
            Ok::<_, SqlxGuardError>(())
        })
    })
    .await
    .unwrap_err();
    assert!(err.is_transient(), "{err:?}");
    assert_eq!(err.to_error_response().status(), 503, "{err:?}");
    assert_eq!(audit_rows(&env.admin, "killed").await, 0);
    let snap = snapshot(&env.pool).await;
    snap.assert_clean();
    assert_ne!(snap.pid, seen, "the broken connection was discarded");
}

#[tokio::test]
async fn after_a_server_restart_connections_come_back() {
    let server = tenant_guard_testkit::TestPostgres::start_local().expect("own server");
    let (db, admin) = common::database_on(&server).await;
    let pool = tenant_guard_sqlx::pool_options()
        .max_connections(2)
        .acquire_timeout(Duration::from_secs(10))
        .connect_with(common::connect_options(&db))
        .await
        .unwrap();
    let guard = tenant_guard_sqlx::SqlxGuard::new(pool.clone());
    let issuer = tenant_guard_testkit::TestIssuer::new();
    let (alice, _) = two_orgs(&issuer);
    with_tenant_guard(&guard, &alice, |tx| {
        Box::pin(async move { note(tx, "before").await })
    })
    .await
    .unwrap();
    drop(admin);
    server.restart().expect("restart");
    let mut ok = false;
    for _ in 0..20 {
        match with_tenant_guard(&guard, &alice, |tx| {
            Box::pin(async move { note(tx, "after").await })
        })
        .await
        {
            Ok(()) => {
                ok = true;
                break;
            }
            Err(e) => {
                assert!(e.is_transient(), "{e:?}");
                assert_eq!(e.to_error_response().status(), 503);
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
    assert!(ok, "the guard works again after the restart");
    snapshot(&pool).await.assert_clean();
    let admin = db.connect().await.unwrap();
    assert_eq!(audit_rows(&admin, "after").await, 1);
}
