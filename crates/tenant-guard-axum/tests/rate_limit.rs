//! The axum layer with the PostgreSQL rate limiter, against a real PostgreSQL: two app instances
//! (two routers, two pools, two limiters) over one database share each org's budget; 429 with
//! `Retry-After` and `RateLimit-*`, the headers on allowed responses too, orgs independent, and
//! a limiter whose database cannot answer fails closed (503) unless told otherwise.

// Test helpers: a failed expectation is a failed test.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::routing::get;
use http::{HeaderMap, StatusCode, header};
use tenant_guard_axum::{ReadOnly, TenantDb, TenantGuardLayer};
use tenant_guard_postgres::tokio_postgres::{Client, Config};
use tenant_guard_postgres::{OnDatabaseError, PgRateLimiter, TenantPool, support};
use tenant_guard_testkit::{TestDatabase, TestIssuer, TestPostgres};
use tower::ServiceExt;
use uuid::Uuid;

const LOGIN: &str = "tg_axum_rate_login";
const DAY: Duration = Duration::from_secs(86_400);

struct Fixture {
    db: TestDatabase,
    admin: Client,
    issuer: TestIssuer,
}

async fn fixture() -> Fixture {
    let db = TestPostgres::shared()
        .expect("test PostgreSQL")
        .create_database_async()
        .await
        .expect("test database");
    let admin = db.connect().await.expect("admin connection");
    // Roles are per server: tolerate the login existing (or being created concurrently).
    let login = format!(
        "DO $$ BEGIN
            IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{LOGIN}') THEN
                CREATE ROLE {LOGIN} LOGIN NOINHERIT;
            END IF;
        EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL;
        END $$"
    );
    admin.batch_execute(&login).await.expect("login");
    support::apply_support_sql_with(&admin, Some(LOGIN), "")
        .await
        .expect("support SQL");
    support::apply_rate_limit_sql(&admin, Some(LOGIN))
        .await
        .expect("rate limit SQL");
    Fixture {
        db,
        admin,
        issuer: TestIssuer::new(),
    }
}

impl Fixture {
    fn login_config(&self) -> Config {
        let mut config = self.db.config().clone();
        config.user(LOGIN);
        config
    }

    /// One instance of the app: its own pool and its own limiter over the shared database.
    fn instance(&self, limit: u32) -> Router {
        let pool = TenantPool::builder(self.login_config())
            .max_size(2)
            .build()
            .expect("pool");
        let limiter = PgRateLimiter::builder("reports", limit, DAY)
            .build(self.login_config())
            .expect("limiter");
        self.app(
            TenantGuardLayer::new(self.issuer.verifier().clone()).pool(pool),
            limiter,
        )
    }

    fn app(&self, layer: TenantGuardLayer, limiter: PgRateLimiter) -> Router {
        Router::new()
            .route("/reports", get(org_seen_by_the_database))
            .route_layer(layer.rate_limit(limiter))
    }

    fn bearer(&self, org: Uuid) -> String {
        format!(
            "Bearer {}",
            self.issuer.token(org, "user-1", "authenticated")
        )
    }
}

/// The handler runs its scoped transaction while the limiter used its own connection.
async fn org_seen_by_the_database(db: TenantDb<ReadOnly>) -> Result<String, StatusCode> {
    let row = db
        .query_one("SELECT tenant_guard.org_id()::text", &[])
        .await
        .map_err(|_| StatusCode::INTERNAL_SERVER_ERROR)?;
    Ok(row.get(0))
}

async fn get_reports(app: &Router, bearer: Option<&str>) -> (StatusCode, HeaderMap, String) {
    let mut request = http::Request::builder().uri("/reports");
    if let Some(bearer) = bearer {
        request = request.header(header::AUTHORIZATION, bearer);
    }
    let response = app
        .clone()
        .oneshot(request.body(Body::empty()).unwrap())
        .await
        .unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let body = axum::body::to_bytes(response.into_body(), 1 << 20)
        .await
        .unwrap();
    (status, headers, String::from_utf8(body.to_vec()).unwrap())
}

fn seconds(headers: &HeaderMap, name: &str) -> u64 {
    headers[name].to_str().unwrap().parse().unwrap()
}

#[tokio::test]
async fn two_instances_share_each_orgs_budget() {
    let f = fixture().await;
    let (one, two) = (f.instance(3), f.instance(3));
    let (org_a, org_b) = (Uuid::new_v4(), Uuid::new_v4());
    let a = f.bearer(org_a);

    // Refused before the limiter: not counted, no RateLimit-* headers.
    let (status, headers, _) = get_reports(&one, None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(!headers.contains_key("ratelimit-limit"));

    for (app, remaining) in [(&one, "2"), (&two, "1"), (&one, "0")] {
        let (status, headers, body) = get_reports(app, Some(&a)).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(
            body,
            org_a.to_string(),
            "the handler's transaction is scoped"
        );
        assert_eq!(headers["ratelimit-limit"], "3");
        assert_eq!(headers["ratelimit-remaining"], remaining);
        assert!(seconds(&headers, "ratelimit-reset") <= DAY.as_secs() * 2);
    }
    for app in [&two, &one] {
        let (status, headers, body) = get_reports(app, Some(&a)).await;
        assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
        let json: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(json["error"], "rate_limited");
        let retry = seconds(&headers, "retry-after");
        assert!((1..=DAY.as_secs() + 1).contains(&retry), "{retry}");
        assert_eq!(headers["ratelimit-limit"], "3");
        assert_eq!(headers["ratelimit-remaining"], "0");
        assert!(seconds(&headers, "ratelimit-reset") >= retry);
        assert_eq!(headers[header::CONTENT_TYPE], "application/json");
        assert!(headers.contains_key("x-request-id"));
    }

    // Another org has its own budget, on either instance.
    let (status, headers, body) = get_reports(&two, Some(&f.bearer(org_b))).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body, org_b.to_string());
    assert_eq!(headers["ratelimit-remaining"], "2");

    let hits: Vec<(Uuid, i32)> = f
        .admin
        .query(
            "SELECT org_id, hits FROM tenant_guard.rate_counters ORDER BY hits DESC",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(hits, [(org_a, 3), (org_b, 1)]);
}

fn unreachable() -> Config {
    let mut config = Config::new();
    config
        .host("127.0.0.1")
        .port(9)
        .user("nobody")
        .dbname("none");
    config
}

#[tokio::test]
async fn a_limiter_without_its_database_fails_closed_unless_told_otherwise() {
    let f = fixture().await;
    let layer = TenantGuardLayer::new(f.issuer.verifier().clone()).pool(
        TenantPool::builder(f.login_config())
            .max_size(1)
            .build()
            .unwrap(),
    );
    let bearer = f.bearer(Uuid::new_v4());

    let closed = PgRateLimiter::builder("reports", 3, DAY)
        .build(unreachable())
        .unwrap();
    let (status, headers, body) = get_reports(&f.app(layer.clone(), closed), Some(&bearer)).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    let json: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(json["error"], "rate_limit_unavailable");
    assert_eq!(headers[header::RETRY_AFTER], "1");
    assert!(!body.contains("127.0.0.1"), "no connection details: {body}");

    let open = PgRateLimiter::builder("reports", 3, DAY)
        .on_database_error(OnDatabaseError::Allow)
        .build(unreachable())
        .unwrap();
    let (status, _, body) = get_reports(&f.app(layer, open), Some(&bearer)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
}
