//! `PgRateLimiter` against a real PostgreSQL (one fresh database per test): limits hit and not
//! counted beyond, orgs and users independent, one budget shared by two limiters (two instances)
//! of the same name, atomic under concurrency, expired windows swept, the counters out of
//! tenants' reach, and each failure policy when the database cannot answer.

// Test helpers: a failed expectation is a failed test.
#![allow(clippy::expect_used, clippy::unwrap_used)]

mod common;

use std::time::Duration;

use tenant_guard_core::{Principal, RateLimitError, ToErrorResponse};
use tenant_guard_postgres::{
    GuardError, OnDatabaseError, PgRateLimitError, PgRateLimiter, PgRateLimiterBuilder,
    ScopeOptions, support,
};
use tenant_guard_testkit::{TestDatabase, TestIssuer};
use tokio_postgres::Client;
use uuid::Uuid;

/// A day: a test never straddles a window boundary in practice, and if it did, the sliding
/// window still counts the previous window's hits at almost full weight.
const DAY: Duration = Duration::from_secs(86_400);

struct Fixture {
    db: TestDatabase,
    admin: Client,
    issuer: TestIssuer,
}

async fn fixture() -> Fixture {
    let (db, admin) = common::database().await;
    support::apply_rate_limit_sql(&admin, Some(common::LOGIN))
        .await
        .expect("rate limit SQL");
    Fixture {
        db,
        admin,
        issuer: TestIssuer::new(),
    }
}

impl Fixture {
    /// A limiter connecting as the pool's login, like a second instance would.
    fn limiter(&self, builder: PgRateLimiterBuilder) -> PgRateLimiter {
        builder
            .build(common::login_config(&self.db))
            .expect("limiter")
    }

    fn user(&self, org: Uuid, user: &str) -> Principal {
        self.issuer
            .principal(org, user, "authenticated")
            .expect("principal")
    }

    /// The counters as the superuser sees them: (limiter, org, user, hits).
    async fn counters(&self) -> Vec<(String, Uuid, String, i32)> {
        self.admin
            .query(
                "SELECT limiter, org_id, user_id, hits FROM tenant_guard.rate_counters
                  ORDER BY limiter, org_id, user_id",
                &[],
            )
            .await
            .expect("read counters")
            .iter()
            .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
            .collect()
    }
}

fn limited(outcome: Result<tenant_guard_core::RateLimitStatus, RateLimitError>) -> Duration {
    match outcome {
        Err(RateLimitError::Limited(limited)) => limited.retry_after(),
        other => panic!("expected a rate limit rejection, got {other:?}"),
    }
}

#[tokio::test]
async fn the_limit_is_hit_and_refused_requests_are_not_counted() {
    let f = fixture().await;
    let limiter = f.limiter(PgRateLimiter::builder("api", 3, DAY));
    let org = Uuid::new_v4();
    let alice = f.user(org, "alice");
    let mut remaining = Vec::new();
    for _ in 0..3 {
        let status = limiter.check(&alice).await.expect("within the limit");
        assert_eq!(status.limit(), 3);
        remaining.push(status.remaining());
    }
    assert_eq!(remaining, [2, 1, 0]);
    for _ in 0..2 {
        let retry = limited(limiter.check(&alice).await);
        // The rest of the day's window at most (plus the 1 ms tick).
        assert!(
            retry > Duration::ZERO && retry <= DAY + Duration::from_millis(1),
            "{retry:?}"
        );
    }
    let error = limiter.check(&alice).await.unwrap_err();
    let response = error.to_error_response();
    assert_eq!(response.status(), 429);
    assert_eq!(response.code(), "rate_limited");
    assert!(response.retry_after().unwrap() >= 1);
    assert_eq!(
        f.counters().await,
        [("api".to_owned(), org, String::new(), 3)],
        "refused requests are not counted"
    );
}

/// Integer and text orgs (the counters' `uuid` column holds a per-kind marker, the org goes in
/// front of the user key): each org, kind and user keeps a budget of its own.
#[tokio::test]
async fn integer_and_text_orgs_have_their_own_budgets() {
    use tenant_guard_core::{OrgId, OrgIdKind};
    let f = fixture().await;
    let ints = TestIssuer::with_org_id_kind(OrgIdKind::Integer);
    let texts = TestIssuer::with_org_id_kind(OrgIdKind::Text);
    let int_user = |org: i64, user: &str| ints.principal(org, user, "authenticated").unwrap();
    let text_user = |org: &str, user: &str| {
        texts
            .principal(OrgId::text(org).unwrap(), user, "authenticated")
            .unwrap()
    };
    let per_org = f.limiter(PgRateLimiter::builder("kinds", 1, DAY));
    per_org.check(&int_user(7, "alice")).await.unwrap();
    limited(per_org.check(&int_user(7, "bob")).await);
    per_org.check(&int_user(8, "alice")).await.unwrap();
    per_org.check(&text_user("7", "alice")).await.unwrap();
    limited(per_org.check(&text_user("7", "bob")).await);
    per_org.check(&text_user("acme", "alice")).await.unwrap();
    let per_user = f.limiter(PgRateLimiter::builder("kinds-users", 1, DAY).per_user());
    per_user.check(&int_user(7, "alice")).await.unwrap();
    per_user.check(&int_user(7, "bob")).await.unwrap();
    limited(per_user.check(&int_user(7, "alice")).await);
    per_user.check(&text_user("acme", "alice")).await.unwrap();
    limited(per_user.check(&text_user("acme", "alice")).await);
    let users: Vec<String> = f.counters().await.into_iter().map(|c| c.2).collect();
    for key in ["7/", "8/", "acme/", "7/alice", "7/bob", "acme/alice"] {
        assert!(users.iter().any(|u| u == key), "{key} in {users:?}");
    }
}

#[tokio::test]
async fn orgs_users_and_names_have_their_own_budgets() {
    let f = fixture().await;
    let (org_a, org_b) = (Uuid::new_v4(), Uuid::new_v4());
    let per_org = f.limiter(PgRateLimiter::builder("reports", 1, DAY));
    per_org.check(&f.user(org_a, "alice")).await.unwrap();
    // Another user of the same org shares the org's budget.
    limited(per_org.check(&f.user(org_a, "bob")).await);
    // Another org has its own.
    per_org.check(&f.user(org_b, "carol")).await.unwrap();
    // Another name (route group) too.
    let other_name = f.limiter(PgRateLimiter::builder("exports", 1, DAY));
    other_name.check(&f.user(org_a, "alice")).await.unwrap();

    let per_user = f.limiter(PgRateLimiter::builder("uploads", 1, DAY).per_user());
    per_user.check(&f.user(org_a, "alice")).await.unwrap();
    per_user.check(&f.user(org_a, "bob")).await.unwrap();
    limited(per_user.check(&f.user(org_a, "alice")).await);
    // The same user id in another org is another key.
    per_user.check(&f.user(org_b, "alice")).await.unwrap();
    let uploads: Vec<_> = f
        .counters()
        .await
        .into_iter()
        .filter(|c| c.0 == "uploads")
        .map(|c| (c.1, c.2))
        .collect();
    let mut expected = vec![
        (org_a, "alice".to_owned()),
        (org_a, "bob".to_owned()),
        (org_b, "alice".to_owned()),
    ];
    expected.sort();
    assert_eq!(uploads, expected);
}

#[tokio::test]
async fn two_instances_of_one_name_share_the_budget() {
    let f = fixture().await;
    // Two limiters with their own pools: two instances of the service.
    let first = f.limiter(PgRateLimiter::builder("api", 4, DAY));
    let second = f.limiter(PgRateLimiter::builder("api", 4, DAY));
    let p = f.user(Uuid::new_v4(), "alice");
    assert_eq!(first.check(&p).await.unwrap().remaining(), 3);
    assert_eq!(second.check(&p).await.unwrap().remaining(), 2);
    assert_eq!(first.check(&p).await.unwrap().remaining(), 1);
    assert_eq!(second.check(&p).await.unwrap().remaining(), 0);
    limited(first.check(&p).await);
    limited(second.check(&p).await);
}

#[tokio::test]
async fn concurrent_checks_never_overshoot() {
    let f = fixture().await;
    let a = f.limiter(PgRateLimiter::builder("burst", 25, DAY).max_size(8));
    let b = f.limiter(PgRateLimiter::builder("burst", 25, DAY).max_size(8));
    let p = f.user(Uuid::new_v4(), "alice");
    let mut tasks = Vec::new();
    for i in 0..100 {
        let limiter = if i % 2 == 0 { a.clone() } else { b.clone() };
        let p = p.clone();
        tasks.push(tokio::spawn(async move { limiter.check(&p).await.is_ok() }));
    }
    let mut allowed = 0;
    for task in tasks {
        allowed += usize::from(task.await.unwrap());
    }
    assert_eq!(allowed, 25);
    assert_eq!(f.counters().await[0].3, 25);
}

#[tokio::test]
async fn the_previous_window_weighs_on_the_current_one() {
    let f = fixture().await;
    let limiter = f.limiter(PgRateLimiter::builder("slide", 10, DAY));
    let org = Uuid::new_v4();
    // 10 hits in the previous window, almost all of which is still inside the sliding window
    // (unless this runs in the first seconds of a UTC day).
    f.admin
        .execute(
            "INSERT INTO tenant_guard.rate_counters
                 (limiter, org_id, user_id, window_start, hits, expires_at)
             VALUES ('slide', $1, '', date_trunc('day', now(), 'UTC') - interval '1 day', 10,
                     date_trunc('day', now(), 'UTC') + interval '1 day')",
            &[&org],
        )
        .await
        .unwrap();
    let elapsed: f64 = f
        .admin
        .query_one(
            "SELECT extract(epoch FROM now() - date_trunc('day', now(), 'UTC'))::float8 / 86400",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    let weighted = (10.0 * (1.0 - elapsed)).floor() as u32;
    let p = f.user(org, "alice");
    for _ in weighted..10 {
        limiter
            .check(&p)
            .await
            .expect("room left by the decayed weight");
    }
    let retry = limited(limiter.check(&p).await);
    assert!(retry <= DAY + Duration::from_millis(1), "{retry:?}");
}

#[tokio::test]
async fn expired_windows_are_swept_live_ones_kept() {
    let f = fixture().await;
    let limiter = f.limiter(PgRateLimiter::builder("api", 5, DAY).sweep_every(3));
    let live = f.user(Uuid::new_v4(), "alice");
    limiter.check(&live).await.unwrap();
    let expired = |org: Uuid| {
        let admin = &f.admin;
        async move {
            admin
                .execute(
                    "INSERT INTO tenant_guard.rate_counters
                         (limiter, org_id, user_id, window_start, hits, expires_at)
                     VALUES ('api', $1, '', now() - interval '3 days', 1,
                             now() - interval '1 day')",
                    &[&org],
                )
                .await
                .unwrap();
        }
    };
    for _ in 0..3 {
        expired(Uuid::new_v4()).await;
    }
    assert_eq!(f.counters().await.len(), 4);
    assert_eq!(limiter.sweep().await.unwrap(), 3);
    assert_eq!(f.counters().await.len(), 1, "the live window stays");

    // Automatically, pipelined with every third check of this instance.
    expired(Uuid::new_v4()).await;
    limiter.check(&live).await.unwrap(); // 2nd check
    assert_eq!(f.counters().await.len(), 2);
    limiter.check(&live).await.unwrap(); // 3rd: sweeps
    assert_eq!(f.counters().await.len(), 1);
    assert_eq!(f.counters().await[0].3, 3);
}

#[tokio::test]
async fn tenants_cannot_reach_the_counters() {
    let f = fixture().await;
    let limiter = f.limiter(PgRateLimiter::builder("api", 5, DAY));
    let org = Uuid::new_v4();
    limiter.check(&f.user(org, "alice")).await.unwrap();
    let pool = common::pool_builder(&f.db).max_size(2).build().unwrap();
    let principal = f.user(org, "alice");
    for sql in [
        "SELECT count(*) FROM tenant_guard.rate_counters",
        "DELETE FROM tenant_guard.rate_counters",
        "SELECT tenant_guard.rate_limit_hit('api', gen_random_uuid(), '', 1000, 5)::text",
        "SELECT tenant_guard.rate_limit_sweep(10)",
    ] {
        let tx = pool
            .begin(&principal, ScopeOptions::default())
            .await
            .unwrap();
        let error = tx.query(sql, &[]).await.unwrap_err();
        assert!(
            matches!(error, GuardError::ForbiddenByPolicy(_)),
            "{sql}: {error:?}"
        );
    }
    // The app roles cannot be granted the limiter either, nor any other NOLOGIN role.
    f.admin
        .batch_execute(
            "DO $$ BEGIN
                IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'tg_rl_custom_app_role') THEN
                    CREATE ROLE tg_rl_custom_app_role NOLOGIN;
                END IF;
            EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL;
            END $$",
        )
        .await
        .unwrap();
    for role in [
        "authenticated",
        "anon",
        "service_role",
        "tg_rl_custom_app_role",
    ] {
        let error = f
            .admin
            .execute("SELECT tenant_guard.grant_rate_limiter($1)", &[&role])
            .await
            .unwrap_err();
        let message = error.as_db_error().unwrap().message();
        assert!(message.contains("must not be granted"), "{message}");
    }
    // Nothing was reset.
    assert_eq!(f.counters().await[0].3, 1);
    // Granting the limiter leaves the login fit for the guarded pool (LoginPolicy::Refuse).
    assert!(pool.check_login().await.unwrap().is_fit());
}

#[tokio::test]
async fn counting_writes_no_wal() {
    let f = fixture().await;
    let persistence: i8 = f
        .admin
        .query_one(
            "SELECT relpersistence::\"char\" FROM pg_class
              WHERE oid = 'tenant_guard.rate_counters'::regclass",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(persistence as u8, b'u', "the counters table is UNLOGGED");
}

#[tokio::test]
async fn the_rate_limit_sql_is_idempotent() {
    let f = fixture().await;
    let limiter = f.limiter(PgRateLimiter::builder("api", 5, DAY));
    let p = f.user(Uuid::new_v4(), "alice");
    limiter.check(&p).await.unwrap();
    support::apply_rate_limit_sql(&f.admin, Some(common::LOGIN))
        .await
        .expect("applied twice");
    assert_eq!(limiter.check(&p).await.unwrap().remaining(), 3);
}

fn unreachable_config() -> tokio_postgres::Config {
    let mut config = tokio_postgres::Config::new();
    // A port nothing listens on (the discard port, refused at once on loopback).
    config
        .host("127.0.0.1")
        .port(9)
        .user("nobody")
        .dbname("none");
    config
}

#[tokio::test]
async fn without_a_database_the_policy_decides() {
    let issuer = TestIssuer::new();
    let p = issuer
        .principal(Uuid::new_v4(), "alice", "authenticated")
        .unwrap();
    let builder = PgRateLimiter::builder("api", 2, DAY).timeout(Duration::from_secs(5));

    let refuse = builder.clone().build(unreachable_config()).unwrap();
    match refuse.check(&p).await {
        Err(error @ RateLimitError::Unavailable(_)) => {
            let source = std::error::Error::source(&error).unwrap();
            assert!(source.downcast_ref::<PgRateLimitError>().is_some());
            let response = error.to_error_response();
            assert_eq!(response.status(), 503);
            assert_eq!(response.code(), "rate_limit_unavailable");
            assert_eq!(response.retry_after(), Some(1));
        }
        other => panic!("fail closed by default: {other:?}"),
    }

    let allow = builder
        .clone()
        .on_database_error(OnDatabaseError::Allow)
        .build(unreachable_config())
        .unwrap();
    for _ in 0..5 {
        allow.check(&p).await.expect("fail open: uncounted");
    }

    let local = builder
        .on_database_error(OnDatabaseError::LocalFallback)
        .build(unreachable_config())
        .unwrap();
    assert_eq!(local.check(&p).await.unwrap().remaining(), 1);
    local.check(&p).await.unwrap();
    limited(local.check(&p).await);
}

#[tokio::test]
async fn a_database_without_the_rate_limit_sql_is_unavailable() {
    let (db, _admin) = common::database().await;
    let limiter = PgRateLimiter::builder("api", 2, DAY)
        .build(common::login_config(&db))
        .unwrap();
    let p = TestIssuer::new().user(Uuid::new_v4());
    match limiter.check(&p).await {
        Err(RateLimitError::Unavailable(source)) => {
            let error = source.downcast_ref::<PgRateLimitError>().unwrap();
            // The login may not even use the schema yet (42501), or the function is missing.
            assert!(matches!(error, PgRateLimitError::Database(_)), "{error:?}");
        }
        other => panic!("{other:?}"),
    }
}
