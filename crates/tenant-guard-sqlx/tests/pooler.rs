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
