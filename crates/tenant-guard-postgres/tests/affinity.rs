//! Role affinity (see `tenant_guard_postgres::affinity`), against a real PostgreSQL: a role gets
//! back the connection its last transaction ran on, a checkout never waits for an affine
//! connection longer than for any (no starvation, cancellation included), the pool's size holds,
//! and connections still come back clean.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{Env, snapshot};
use tenant_guard_core::Principal;
use tenant_guard_postgres::{GuardError, ScopeOptions, TenantPool, TenantTx};
use uuid::Uuid;

async fn pid(tx: &TenantTx) -> i32 {
    tx.query_one("SELECT pg_backend_pid()", &[])
        .await
        .unwrap()
        .get(0)
}

/// A principal of `role` in a fresh org.
fn principal(env: &Env, role: &str) -> Principal {
    env.issuer
        .principal(Uuid::new_v4(), &Uuid::new_v4().to_string(), role)
        .unwrap()
}

/// Opens both connections of a pool of 2: one ran as `a`, the other as `b`. Their pids.
async fn one_connection_per_role(pool: &TenantPool, a: &Principal, b: &Principal) -> (i32, i32) {
    let tx_a = pool.begin(a, ScopeOptions::default()).await.unwrap();
    let tx_b = pool.begin(b, ScopeOptions::default()).await.unwrap();
    let (pa, pb) = (pid(&tx_a).await, pid(&tx_b).await);
    assert_ne!(pa, pb);
    // Read-write commits wait for the session check: the connections are idle again after.
    tx_a.commit().await.unwrap();
    tx_b.commit().await.unwrap();
    (pa, pb)
}

/// A sequence FIFO order would not keep per role (two of the same role in a row).
const PATTERN: [bool; 10] = [
    true, true, false, true, false, false, false, true, true, false,
];

/// Which pid each step of [`PATTERN`] got, and whether it was its role's connection.
async fn run_pattern(pool: &TenantPool, a: &Principal, b: &Principal, pids: (i32, i32)) -> usize {
    let mut affine = 0;
    for is_a in PATTERN {
        let (who, want) = if is_a { (a, pids.0) } else { (b, pids.1) };
        let tx = pool.begin(who, ScopeOptions::default()).await.unwrap();
        if pid(&tx).await == want {
            affine += 1;
        }
        tx.commit().await.unwrap();
    }
    affine
}

#[tokio::test]
async fn each_role_gets_back_the_connection_it_last_ran_on() {
    let env = common::env(2).await;
    let (a, b) = (principal(&env, "authenticated"), principal(&env, "anon"));
    let pids = one_connection_per_role(&env.pool, &a, &b).await;
    let before = env.pool.affinity_stats();
    assert_eq!(
        run_pattern(&env.pool, &a, &b, pids).await,
        PATTERN.len(),
        "every checkout got its role's connection"
    );
    let stats = env.pool.affinity_stats();
    assert_eq!(stats.checkouts - before.checkouts, PATTERN.len() as u64);
    assert_eq!(stats.affine - before.affine, PATTERN.len() as u64);
    // Hygiene is unchanged: the idle connections carry no role or claims.
    let snap = snapshot(&env.pool).await;
    snap.assert_clean();
}

#[tokio::test]
async fn read_only_transactions_keep_their_role_too() {
    // A read-only commit returns the connection after the session check, on a spawned task.
    let env = common::env(2).await;
    let (a, b) = (principal(&env, "authenticated"), principal(&env, "anon"));
    let pids = one_connection_per_role(&env.pool, &a, &b).await;
    for is_a in PATTERN {
        let (who, want) = if is_a { (&a, pids.0) } else { (&b, pids.1) };
        let tx = env
            .pool
            .begin(who, ScopeOptions::default().read_only(true))
            .await
            .unwrap();
        assert_eq!(pid(&tx).await, want);
        tx.commit().await.unwrap();
        // Until the check answers the connection is not idle; wait for it.
        let deadline = Instant::now() + Duration::from_secs(5);
        while env.pool.status().available < 2 {
            assert!(Instant::now() < deadline, "{:?}", env.pool.status());
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }
}

#[tokio::test]
async fn without_affinity_the_same_pattern_mixes_connections() {
    // The control: the test above can fail (FIFO order alone does not keep roles apart).
    let (db, _admin) = common::database().await;
    let pool = common::pool_builder(&db)
        .max_size(2)
        .role_affinity(false)
        .build()
        .unwrap();
    let env = Env {
        db,
        admin: _admin,
        pool,
        issuer: common::TestIssuer::new(),
    };
    let (a, b) = (principal(&env, "authenticated"), principal(&env, "anon"));
    let pids = one_connection_per_role(&env.pool, &a, &b).await;
    assert!(run_pattern(&env.pool, &a, &b, pids).await < PATTERN.len());
    assert_eq!(env.pool.affinity_stats().checkouts, 0);
}

#[tokio::test]
async fn a_transaction_that_sent_nothing_keeps_the_connections_role() {
    let env = common::env(2).await;
    let (a, b) = (principal(&env, "authenticated"), principal(&env, "anon"));
    let pids = one_connection_per_role(&env.pool, &a, &b).await;
    // `b` takes `a`'s connection only if `b`'s is busy: hold it.
    let held = env.pool.begin(&b, ScopeOptions::default()).await.unwrap();
    assert_eq!(pid(&held).await, pids.1);
    let untouched = env.pool.begin(&b, ScopeOptions::default()).await.unwrap();
    untouched.commit().await.unwrap(); // sent nothing
    held.commit().await.unwrap();
    let tx = env.pool.begin(&a, ScopeOptions::default()).await.unwrap();
    assert_eq!(pid(&tx).await, pids.0, "still `a`'s connection");
}

#[tokio::test]
async fn a_waiter_takes_the_first_connection_returned_whatever_its_role() {
    let env = common::env(2).await;
    let (a, b) = (principal(&env, "authenticated"), principal(&env, "anon"));
    // Both connections busy as `b`.
    let first = env.pool.begin(&b, ScopeOptions::default()).await.unwrap();
    let second = env.pool.begin(&b, ScopeOptions::default()).await.unwrap();
    let returned = pid(&first).await;
    pid(&second).await;
    let pool = env.pool.clone();
    let waiter = tokio::spawn(async move {
        let tx = pool.begin(&a, ScopeOptions::default()).await?;
        let got = pid(&tx).await;
        tx.commit().await?;
        Ok::<_, GuardError>((got, Instant::now()))
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(env.pool.status().waiting, 1, "{:?}", env.pool.status());
    let released = Instant::now();
    first.commit().await.unwrap();
    let (got, at) = tokio::time::timeout(Duration::from_secs(2), waiter)
        .await
        .expect("the waiter was served at once, not at its timeout")
        .unwrap()
        .unwrap();
    assert_eq!(got, returned, "it got the `b` connection just returned");
    assert!(at - released < Duration::from_secs(1));
    second.commit().await.unwrap();
}

#[tokio::test]
async fn idle_connections_of_another_role_serve_at_once() {
    let env = common::env(2).await;
    let (a, b) = (principal(&env, "authenticated"), principal(&env, "anon"));
    one_connection_per_role(&env.pool, &b, &b).await;
    let started = Instant::now();
    let tx = env.pool.begin(&a, ScopeOptions::default()).await.unwrap();
    pid(&tx).await;
    tx.commit().await.unwrap();
    assert!(started.elapsed() < Duration::from_secs(1));
    let status = env.pool.status();
    assert_eq!((status.size, status.available), (2, 2), "{status:?}");
}

#[tokio::test]
async fn a_cancelled_waiter_leaves_no_trace() {
    let env = common::env(1).await;
    let (a, b) = (principal(&env, "authenticated"), principal(&env, "anon"));
    let held = env.pool.begin(&b, ScopeOptions::default()).await.unwrap();
    pid(&held).await;
    // Waits, then is dropped (a request's timeout, a client gone).
    let cancelled = tokio::time::timeout(
        Duration::from_millis(50),
        env.pool.begin(&a, ScopeOptions::default()),
    )
    .await;
    assert!(cancelled.is_err(), "the pool of one was busy");
    held.commit().await.unwrap();
    let status = env.pool.status();
    assert_eq!((status.available, status.waiting), (1, 0), "{status:?}");
    // The connection went back to the idle list, not to a waiter that is gone.
    let started = Instant::now();
    let tx = env.pool.begin(&a, ScopeOptions::default()).await.unwrap();
    pid(&tx).await;
    tx.commit().await.unwrap();
    assert!(started.elapsed() < Duration::from_secs(1));
}

#[tokio::test]
async fn mixed_roles_under_contention_never_time_out_and_never_exceed_the_pool() {
    // Four roles' worth of traffic (two roles, read-only and read-write, cancellations) from 8
    // tasks on a pool of 3 with a short wait timeout: a waiter starved while connections sat
    // idle would time out.
    let (db, admin) = common::database().await;
    let pool = common::pool_builder(&db)
        .max_size(3)
        .wait_timeout(Duration::from_secs(3))
        .build()
        .unwrap();
    let env = Arc::new(Env {
        db,
        admin,
        pool,
        issuer: common::TestIssuer::new(),
    });
    let roles = [
        principal(&env, "authenticated"),
        principal(&env, "anon"),
        principal(&env, "authenticated"),
        principal(&env, "anon"),
    ];
    let mut tasks = Vec::new();
    for t in 0..8usize {
        let env = Arc::clone(&env);
        let roles = roles.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..40usize {
                let who = &roles[(t + i) % roles.len()];
                let read_only = (t + i) % 3 == 0;
                let options = ScopeOptions::default().read_only(read_only);
                if i % 13 == 7 {
                    // A checkout given up after 1 ms (possibly while waiting).
                    let _ = tokio::time::timeout(
                        Duration::from_millis(1),
                        env.pool.begin(who, options),
                    )
                    .await;
                    continue;
                }
                let tx = env.pool.begin(who, options).await?;
                pid(&tx).await;
                let status = env.pool.status();
                assert!(status.size <= 3, "{status:?}");
                tx.commit().await?;
            }
            Ok::<_, GuardError>(())
        }));
    }
    for task in tasks {
        task.await.unwrap().expect("no checkout timed out");
    }
    let backends: i64 = env
        .admin
        .query_one(
            "SELECT count(*) FROM pg_stat_activity WHERE usename = $1 AND datname = current_database()",
            &[&common::LOGIN],
        )
        .await
        .unwrap()
        .get(0);
    assert!(backends <= 3, "{backends} backends for a pool of 3");
    // Saturated (more tasks than connections), most connections go straight to a waiter,
    // whatever its role: affinity only chooses among idle connections.
    let stats = env.pool.affinity_stats();
    assert!(stats.affine <= stats.checkouts, "{stats:?}");
    // Every connection comes back idle and clean.
    let deadline = Instant::now() + Duration::from_secs(5);
    while env.pool.status().available != env.pool.status().size {
        assert!(Instant::now() < deadline, "{:?}", env.pool.status());
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(env.pool.status().waiting, 0);
    for _ in 0..env.pool.status().available {
        snapshot(&env.pool).await.assert_clean();
    }
}

#[tokio::test]
async fn close_closes_idle_connections_kept_by_role() {
    let env = common::env(2).await;
    let (a, b) = (principal(&env, "authenticated"), principal(&env, "anon"));
    one_connection_per_role(&env.pool, &a, &b).await;
    assert_eq!(env.pool.status().available, 2);
    env.pool.close();
    let err = env
        .pool
        .begin(&a, ScopeOptions::default())
        .await
        .unwrap_err();
    assert!(matches!(err, GuardError::PoolClosed), "{err:?}");
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let backends: i64 = env
            .admin
            .query_one(
                "SELECT count(*) FROM pg_stat_activity WHERE usename = $1 AND datname = current_database()",
                &[&common::LOGIN],
            )
            .await
            .unwrap()
            .get(0);
        if backends == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{backends} connections left open"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_connection_handed_to_a_waiter_keeps_its_role() {
    let env = common::env(1).await;
    let b = principal(&env, "anon");
    let held = env.pool.begin(&b, ScopeOptions::default()).await.unwrap();
    let first = pid(&held).await;
    let pool = env.pool.clone();
    let b2 = b.clone();
    let waiter = tokio::spawn(async move {
        let tx = pool.begin(&b2, ScopeOptions::default()).await?;
        let got = pid(&tx).await;
        tx.commit().await?;
        Ok::<_, GuardError>(got)
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    let before = env.pool.affinity_stats();
    held.commit().await.unwrap();
    assert_eq!(waiter.await.unwrap().unwrap(), first);
    let after = env.pool.affinity_stats();
    assert_eq!(after.checkouts - before.checkouts, 1);
    assert_eq!(
        after.affine - before.affine,
        1,
        "the waiter got its own role's connection through deadpool"
    );
}
