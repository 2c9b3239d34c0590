//! sqlx's prepared-statement cache and transaction-mode poolers (PgBouncer `pool_mode =
//! transaction`): what sqlx leaves prepared on the server connection, measured.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stderr)]

mod common;

use common::{env_with, two_orgs};
use sqlx::postgres::PgConnection;
use tenant_guard_sqlx::{SqlxGuardError, with_tenant_guard};

async fn prepared_after_three_requests(env: &common::Env, persistent: bool) -> i64 {
    let (alice, _) = two_orgs(&env.issuer);
    for i in 0..3 {
        with_tenant_guard(&env.guard, &alice, |tx| {
            Box::pin(async move {
                sqlx::query("SELECT $1::int")
                    .bind(i)
                    .persistent(persistent)
                    .execute(&mut **tx)
                    .await?;
                Ok::<_, SqlxGuardError>(())
            })
        })
        .await
        .unwrap();
    }
    let mut conn = env.pool.acquire().await.unwrap();
    count(&mut conn).await
}

async fn count(conn: &mut PgConnection) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM pg_prepared_statements")
        .persistent(false)
        .fetch_one(conn)
        .await
        .unwrap()
}

#[tokio::test]
async fn the_default_cache_keeps_named_statements_on_the_connection() {
    let env = env_with(1, tenant_guard_sqlx::pool_options(), |o| o).await;
    let n = prepared_after_three_requests(&env, true).await;
    eprintln!("default cache: {n} named statements on the server connection");
    assert!(
        n >= 1,
        "named statements live on the server connection: {n}"
    );
}

/// With `statement_cache_capacity(0)` sqlx still names the statements of persistent queries
/// (the default), it only stops caching them: every one stays prepared on the server. Behind a
/// transaction-mode pooler (without protocol-level prepared-statement support, PgBouncer < 1.21
/// or `max_prepared_statements = 0`) such names collide across clients. The guard's own
/// statement (scoping) is unnamed with `SqlxGuardBuilder::unnamed_statements`, and queries
/// that run behind such a pooler must use `.persistent(false)`.
#[tokio::test]
async fn cache_capacity_zero_alone_still_prepares_named_statements() {
    let env = env_with(1, tenant_guard_sqlx::pool_options(), |o| {
        o.statement_cache_capacity(0)
    })
    .await;
    let n = prepared_after_three_requests(&env, true).await;
    eprintln!("capacity 0, persistent queries: {n} named statements");
    assert!(n >= 3, "one per execution, never closed: {n}");
}

#[tokio::test]
async fn unnamed_statements_leave_nothing_prepared() {
    let env = env_with(1, tenant_guard_sqlx::pool_options(), |o| {
        o.statement_cache_capacity(0)
    })
    .await;
    let guard = tenant_guard_sqlx::SqlxGuard::builder(env.pool.clone())
        .unnamed_statements(true)
        .build();
    let env = common::Env { guard, ..env };
    let n = prepared_after_three_requests(&env, false).await;
    assert_eq!(n, 0, "nothing named stays on the server connection");
}

/// Through the testkit's PgBouncer in `pool_mode = transaction` (one server connection shared
/// by four client connections): with `statement_cache_capacity(0)`, the guard's
/// `unnamed_statements` and `.persistent(false)` queries, every transaction is scoped and each
/// org sees only its rows.
#[tokio::test]
async fn through_a_transaction_mode_pgbouncer() {
    use sqlx::postgres::PgConnectOptions;
    use std::time::Duration;
    use tenant_guard_testkit::{PgBouncerOptions, TestPgBouncer, TestPostgres};

    let server = TestPostgres::shared().expect("test server");
    let (db, _admin) = common::database_on(server).await;
    let bouncer = TestPgBouncer::start(
        server,
        PgBouncerOptions::default()
            .default_pool_size(1)
            .user(common::LOGIN),
    )
    .expect("PgBouncer (Debian: apt-get install pgbouncer)");
    let options: PgConnectOptions = bouncer.url_for(db.name(), common::LOGIN).parse().unwrap();
    let pool = tenant_guard_sqlx::pool_options()
        .max_connections(4)
        .acquire_timeout(Duration::from_secs(10))
        .connect_with(options.statement_cache_capacity(0))
        .await
        .unwrap();
    let guard = tenant_guard_sqlx::SqlxGuard::builder(pool)
        .unnamed_statements(true)
        .build();
    let issuer = tenant_guard_testkit::TestIssuer::new();
    let (alice, bob) = two_orgs(&issuer);
    let mut tasks = Vec::new();
    for i in 0..16 {
        let guard = guard.clone();
        let who = if i % 2 == 0 {
            alice.clone()
        } else {
            bob.clone()
        };
        tasks.push(tokio::spawn(async move {
            with_tenant_guard(&guard, &who, |tx| {
                Box::pin(async move {
                    sqlx::query("INSERT INTO audit_log (note) VALUES ($1)")
                        .bind(format!("n{i}"))
                        .persistent(false)
                        .execute(&mut **tx)
                        .await?;
                    let (mine, org): (i64, uuid::Uuid) = sqlx::query_as(
                        "SELECT count(*) FILTER (WHERE org_id = tenant_guard.org_id()), \
                                tenant_guard.org_id() FROM audit_log",
                    )
                    .persistent(false)
                    .fetch_one(&mut **tx)
                    .await?;
                    let all: i64 = sqlx::query_scalar("SELECT count(*) FROM audit_log")
                        .persistent(false)
                        .fetch_one(&mut **tx)
                        .await?;
                    Ok::<_, SqlxGuardError>((mine, all, org))
                })
            })
            .await
        }));
    }
    for (i, task) in tasks.into_iter().enumerate() {
        let (mine, all, org) = task.await.unwrap().unwrap();
        let expected = if i % 2 == 0 {
            alice.org_id()
        } else {
            bob.org_id()
        };
        assert_eq!(org, expected, "scoped to its own org through the pooler");
        assert_eq!(mine, all, "RLS shows only the org's rows");
    }
}
