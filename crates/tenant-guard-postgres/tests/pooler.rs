//! The guard behind a real PgBouncer in `pool_mode = transaction` (testkit): `Pooler::Transaction`
//! works with many more clients than server connections, and the default (cached named
//! statements) fails with an error that names the switch.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::HashSet;
use std::time::Duration;

use common::{LOGIN, pgbouncer, pgbouncer_env, two_orgs};
use tenant_guard_postgres::tokio_postgres::types::Type;
use tenant_guard_postgres::{
    GuardError, PgRateLimiter, Pooler, ScopeOptions, TenantPool, support, with_tenant_guard,
};
use tenant_guard_testkit::{PgBouncerOptions, TestPgBouncer, TestPostgres};
use uuid::Uuid;

#[tokio::test]
async fn many_clients_share_one_server_connection_and_stay_isolated() {
    let env = pgbouncer_env(16).await;
    let orgs: Vec<_> = (0..8).map(|_| env.issuer.user(Uuid::new_v4())).collect();
    let mut tasks = Vec::new();
    for round in 0..25 {
        for (i, who) in orgs.iter().enumerate() {
            let pool = env.pool.clone();
            let who = who.clone();
            tasks.push(tokio::spawn(async move {
                with_tenant_guard(&pool, &who, async |tx| {
                    let name = format!("p-{round}-{i}");
                    // Parameters of several types, none prepared.
                    tx.execute(
                        "INSERT INTO projects (org_id, name) VALUES ($1, $2)",
                        &[&who.org_id().as_uuid(), &name],
                    )
                    .await?;
                    let rows = tx
                        .query(
                            "SELECT org_id, pg_backend_pid() FROM projects WHERE name <> $1 \
                             LIMIT $2",
                            &[&"", &1000_i64],
                        )
                        .await?;
                    let pid = rows.first().map(|r| r.get::<_, i32>(1));
                    let foreign = rows
                        .iter()
                        .filter(|r| r.get::<_, Uuid>(0) != who.org_id())
                        .count();
                    Ok::<_, GuardError>((foreign, pid))
                })
                .await
            }));
        }
    }
    let mut pids = HashSet::new();
    for task in tasks {
        let (foreign, pid) = task.await.unwrap().expect("no error behind the pooler");
        assert_eq!(foreign, 0, "a row of another org");
        pids.extend(pid);
    }
    assert_eq!(
        pids.len(),
        1,
        "default_pool_size = 1: one server connection served all"
    );
    let n: i64 = env
        .admin
        .query_one("SELECT count(*) FROM projects", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 200, "every acknowledged write is there");
}

#[tokio::test]
async fn query_one_opt_typed_and_the_scoping_work_unnamed() {
    let env = pgbouncer_env(2).await;
    let (alice, bob) = two_orgs(&env.issuer);
    let tx = env
        .pool
        .begin(&alice, ScopeOptions::default())
        .await
        .unwrap();
    assert_eq!(tx.pooler(), Pooler::Transaction);
    let row = tx
        .query_one(
            "SELECT tenant_guard.org_id(), auth.uid()::text, current_user::text, $1::int8 + 1",
            &[&41_i32],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, Uuid>(0), alice.org_id());
    assert_eq!(row.get::<_, String>(1), alice.user_id());
    assert_eq!(row.get::<_, String>(2), "authenticated");
    assert_eq!(row.get::<_, i64>(3), 42);
    let none = tx
        .query_opt("SELECT 1 FROM projects WHERE id = $1", &[&Uuid::new_v4()])
        .await
        .unwrap();
    assert!(none.is_none());
    let typed = tx
        .query_typed("SELECT $1::text", &[(&"x", Type::TEXT)])
        .await
        .unwrap();
    assert_eq!(typed[0].get::<_, String>(0), "x");
    let err = tx.prepare("SELECT 1").await.unwrap_err();
    assert!(matches!(err, GuardError::NeedsSession(_)), "{err:?}");
    assert!(err.to_string().contains("Pooler::Transaction"));
    tx.commit().await.unwrap();

    let tx = env.pool.begin(&bob, ScopeOptions::default()).await.unwrap();
    let org: Uuid = tx
        .query_one("SELECT tenant_guard.org_id()", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(org, bob.org_id());
    // No named statement was ever created on the (shared) server connection.
    let named: i64 = tx
        .query_one("SELECT count(*) FROM pg_prepared_statements", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(named, 0);
    tx.commit().await.unwrap();
}

#[tokio::test]
async fn the_default_cached_mode_behind_the_pooler_fails_with_a_message_naming_the_switch() {
    let env = pgbouncer_env(1).await;
    let (alice, _) = two_orgs(&env.issuer);
    // The default mode, through a PgBouncer with three server connections per database: a
    // statement prepared on one is missing on the others.
    let bouncer = TestPgBouncer::start(
        TestPostgres::shared().unwrap(),
        PgBouncerOptions::default().default_pool_size(3).user(LOGIN),
    )
    .unwrap();
    let mut config = bouncer.config(&env.db);
    config.user(LOGIN);
    let cached = TenantPool::builder(config).max_size(8).build().unwrap();
    assert_eq!(cached.pooler(), Pooler::None);
    let mut lost = None;
    let mut tasks = Vec::new();
    for _ in 0..40 {
        let (pool, who) = (cached.clone(), alice.clone());
        tasks.push(tokio::spawn(async move {
            with_tenant_guard(&pool, &who, async |tx| {
                tx.query("SELECT count(*) FROM projects", &[]).await
            })
            .await
        }));
    }
    for task in tasks {
        if let Err(error) = task.await.unwrap() {
            lost.get_or_insert(error);
        }
    }
    let error = lost.expect("named statements cannot survive a transaction-mode pooler");
    assert!(
        matches!(error, GuardError::PreparedStatementLost(_)),
        "{error:?}"
    );
    let message = error.to_string();
    assert!(message.contains("Pooler::Transaction"), "{message}");
    assert!(
        message.contains("TENANT_GUARD_POOLER=transaction"),
        "{message}"
    );
    assert_eq!(error.status(), http::StatusCode::INTERNAL_SERVER_ERROR);
}

#[tokio::test]
async fn the_url_switch_and_the_local_statement_timeout() {
    let env = pgbouncer_env(1).await;
    let (alice, _) = two_orgs(&env.issuer);
    let url = format!(
        "{}?pooler=transaction",
        pgbouncer().url_for(env.db.name(), LOGIN)
    );
    let pool = TenantPool::builder_from_url(&url)
        .unwrap()
        .statement_timeout(Duration::from_millis(200))
        .build()
        .unwrap();
    assert_eq!(pool.pooler(), Pooler::Transaction);
    let err = with_tenant_guard(&pool, &alice, async |tx| {
        tx.execute("SELECT pg_sleep(5)", &[]).await
    })
    .await
    .unwrap_err();
    assert!(matches!(err, GuardError::StatementTimeout(_)), "{err:?}");
    // The timeout was transaction-local: the next transaction on the shared server connection
    // has the server's default again.
    let timeout: String = with_tenant_guard(&env.pool, &alice, async |tx| {
        Ok::<_, GuardError>(
            tx.query_one("SELECT current_setting('statement_timeout')", &[])
                .await?
                .get(0),
        )
    })
    .await
    .unwrap();
    assert_eq!(timeout, "0");
    let report = pool.check_login().await.unwrap();
    assert_eq!(report.login, LOGIN);
}

#[tokio::test]
async fn the_shared_rate_limiter_counts_through_the_pooler() {
    let env = pgbouncer_env(1).await;
    support::apply_rate_limit_sql(&env.admin, Some(LOGIN))
        .await
        .unwrap();
    let (alice, _) = two_orgs(&env.issuer);
    let url = pgbouncer().url_for(env.db.name(), LOGIN);
    let limiter = PgRateLimiter::builder("pooled", 5, Duration::from_secs(60))
        .pooler(Pooler::Transaction)
        .sweep_every(2)
        .max_size(4)
        .build_from_url(&url)
        .unwrap();
    let mut allowed = 0;
    for _ in 0..8 {
        if limiter.check(&alice).await.is_ok() {
            allowed += 1;
        }
    }
    assert_eq!(allowed, 5);
    limiter.sweep().await.unwrap();
}
