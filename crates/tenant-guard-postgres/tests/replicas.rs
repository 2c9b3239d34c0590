//! Read replicas against a real streaming hot standby (testkit: `pg_basebackup -R` from a
//! throwaway primary): read-only transactions are served by the standby with the same scoping
//! and isolation, read-write ones by the primary; read-your-writes under lag; a standby that is
//! down falls back to the primary or is refused.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::{LOGIN, SCHEMA, TestIssuer, ensure_login};
use tenant_guard_core::Principal;
use tenant_guard_postgres::replica::REPLICA_RETRY_AFTER;
use tenant_guard_postgres::{
    GuardError, LoginPolicy, ReplicaFallback, ScopeOptions, TenantPool, TenantPoolBuilder, support,
};
use tenant_guard_testkit::{TestDatabase, TestPostgres, TestStandby};
use uuid::Uuid;

struct Cluster {
    // Field order: databases before the servers.
    db: TestDatabase,
    standby: TestStandby,
    primary: TestPostgres,
}

/// A primary with the schema, and a standby that has replayed it.
async fn cluster() -> Cluster {
    let primary = TestPostgres::start_local_replicated().expect("primary");
    let standby = primary.start_standby().expect("standby");
    let db = primary.create_database_async().await.expect("database");
    let admin = db.connect().await.unwrap();
    ensure_login(&admin, LOGIN).await;
    support::apply_support_sql_with(&admin, Some(LOGIN), SCHEMA)
        .await
        .unwrap();
    standby.wait_for_replay(&primary).unwrap();
    Cluster {
        db,
        standby,
        primary,
    }
}

fn builder(c: &Cluster) -> TenantPoolBuilder {
    let mut primary = c.db.config().clone();
    primary.user(LOGIN);
    let mut replica = c.standby.config(&c.db);
    replica.user(LOGIN);
    TenantPool::builder(primary)
        .replicas([replica])
        .login_policy(LoginPolicy::Refuse)
        .max_size(4)
        .wait_timeout(Duration::from_secs(10))
        .connect_timeout(Duration::from_secs(2))
}

/// What a read-only transaction of `who` sees: in recovery?, node, org, role, project names.
async fn read(
    pool: &TenantPool,
    who: &Principal,
    options: ScopeOptions,
) -> Result<(bool, &'static str, Uuid, String, Vec<String>), GuardError> {
    let tx = pool.begin(who, options.read_only(true)).await?;
    let node = tx.node();
    let row = tx
        .query_one(
            "SELECT pg_is_in_recovery(), tenant_guard.org_id(), current_user::text",
            &[],
        )
        .await?;
    let names = tx
        .query("SELECT name FROM projects ORDER BY name", &[])
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect();
    tx.commit().await?;
    Ok((row.get(0), node, row.get(1), row.get(2), names))
}

async fn write(pool: &TenantPool, who: &Principal, name: &str) {
    let tx = pool.begin(who, ScopeOptions::default()).await.unwrap();
    assert_eq!(tx.node(), "primary");
    let in_recovery: bool = tx
        .query_one("SELECT pg_is_in_recovery()", &[])
        .await
        .unwrap()
        .get(0);
    assert!(!in_recovery, "writes go to the primary");
    tx.execute(
        "INSERT INTO projects (org_id, name) VALUES (tenant_guard.org_id(), $1)",
        &[&name],
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
}

#[tokio::test]
async fn reads_are_served_by_the_standby_scoped_and_isolated() {
    let c = cluster().await;
    let pool = builder(&c).build().unwrap();
    assert_eq!(pool.replica_count(), 1);
    let issuer = TestIssuer::new();
    let (alice, bob) = (issuer.user(Uuid::new_v4()), issuer.user(Uuid::new_v4()));
    write(&pool, &alice, "alice-1").await;
    write(&pool, &bob, "bob-1").await;
    c.standby.wait_for_replay(&c.primary).unwrap();
    // Outside the read-your-writes window of alice and bob: a third user of each org reads.
    let alice2 = issuer.user(alice.org_id());
    let bob2 = issuer.user(bob.org_id());
    for (who, mine) in [(&alice2, "alice-1"), (&bob2, "bob-1")] {
        let (in_recovery, node, org, role, names) =
            read(&pool, who, ScopeOptions::default()).await.unwrap();
        assert!(in_recovery, "served by the hot standby");
        assert_eq!(node, "replica");
        assert_eq!(
            org,
            who.org_id(),
            "transaction-local set_config works on a standby"
        );
        assert_eq!(role, "authenticated");
        assert_eq!(names, vec![mine.to_owned()], "only the caller's org");
    }
    // The span says which server served the transaction.
    let capture = tenant_guard_testkit::capture::Capture::new();
    {
        let _trace = capture.set_default();
        read(&pool, &alice2, ScopeOptions::default()).await.unwrap();
    }
    let spans = capture.spans_named("tenant_tx");
    assert_eq!(spans.len(), 1, "{spans:#?}");
    assert_eq!(spans[0].field("node"), Some("replica"));

    // The standby refuses writes even if a read-only transaction tried.
    let tx = pool
        .begin(&alice2, ScopeOptions::default().read_only(true))
        .await
        .unwrap();
    let err = tx
        .execute(
            "INSERT INTO projects (org_id, name) VALUES (tenant_guard.org_id(), 'x')",
            &[],
        )
        .await
        .unwrap_err();
    assert_eq!(err.sqlstate().map(|s| s.code()), Some("25006"));
}

#[tokio::test]
async fn under_lag_a_writer_reads_its_writes_and_others_may_not_yet() {
    let c = cluster().await;
    let pool = builder(&c)
        .read_your_writes(Duration::from_secs(30))
        .build()
        .unwrap();
    let issuer = TestIssuer::new();
    let org = Uuid::new_v4();
    let (alice, carol) = (issuer.user(org), issuer.user(org));
    c.standby.pause_replay().unwrap();
    write(&pool, &alice, "fresh").await;

    // Alice just wrote: her reads go to the primary and see it.
    let (in_recovery, node, _, _, names) =
        read(&pool, &alice, ScopeOptions::default()).await.unwrap();
    assert!(!in_recovery);
    assert_eq!((node, names), ("primary", vec!["fresh".to_owned()]));

    // Carol (same org, another user) reads from the lagging replica: not there yet.
    let (in_recovery, node, _, _, names) =
        read(&pool, &carol, ScopeOptions::default()).await.unwrap();
    assert!(in_recovery);
    assert_eq!(node, "replica");
    assert!(names.is_empty(), "the replica lags: {names:?}");
    // Unless she asks for the primary.
    let (_, node, _, _, names) = read(&pool, &carol, ScopeOptions::default().primary(true))
        .await
        .unwrap();
    assert_eq!((node, names), ("primary", vec!["fresh".to_owned()]));

    // Without the rule, even the writer would read the stale replica.
    let no_rule = builder(&c)
        .read_your_writes(Duration::ZERO)
        .build()
        .unwrap();
    write(&no_rule, &alice, "second").await;
    let (_, node, _, _, names) = read(&no_rule, &alice, ScopeOptions::default())
        .await
        .unwrap();
    assert_eq!(node, "replica");
    assert!(names.is_empty(), "{names:?}");

    c.standby.resume_replay().unwrap();
    c.standby.wait_for_replay(&c.primary).unwrap();
    let (_, node, _, _, names) = read(&pool, &carol, ScopeOptions::default()).await.unwrap();
    assert_eq!(node, "replica");
    assert_eq!(names, vec!["fresh".to_owned(), "second".to_owned()]);
}

#[tokio::test]
async fn a_standby_that_is_down_falls_back_to_the_primary_or_is_refused() {
    let c = cluster().await;
    let fallback = builder(&c).build().unwrap();
    let refuse = builder(&c)
        .replica_fallback(ReplicaFallback::Unavailable)
        .build()
        .unwrap();
    let issuer = TestIssuer::new();
    let alice = issuer.user(Uuid::new_v4());
    let (_, node, ..) = read(&fallback, &alice, ScopeOptions::default())
        .await
        .unwrap();
    assert_eq!(node, "replica");

    c.standby.stop().unwrap();
    // Idle connections to the stopped standby are found closed at checkout (once their
    // connection tasks have seen the server's shutdown message) and replacing them fails: the
    // read goes to the primary. A transaction already running on the standby when it goes down
    // fails with 503 `database_unavailable` (transient), like on a primary.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (in_recovery, node, org, ..) = read(&fallback, &alice, ScopeOptions::default())
        .await
        .unwrap();
    assert!(!in_recovery);
    assert_eq!((node, org), ("primary", alice.org_id().as_uuid().unwrap()));
    let err = read(&refuse, &alice, ScopeOptions::default())
        .await
        .unwrap_err();
    assert!(matches!(err, GuardError::ReplicasUnavailable), "{err:?}");
    assert_eq!(err.status(), http::StatusCode::SERVICE_UNAVAILABLE);
    assert!(err.is_transient());

    c.standby.start_again().unwrap();
    tokio::time::sleep(REPLICA_RETRY_AFTER + Duration::from_millis(100)).await;
    let (in_recovery, node, ..) = read(&fallback, &alice, ScopeOptions::default())
        .await
        .unwrap();
    assert!(in_recovery, "back on the standby once it is up again");
    assert_eq!(node, "replica");
}
