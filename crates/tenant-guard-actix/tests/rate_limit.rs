//! The actix middleware with the PostgreSQL rate limiter, against a real PostgreSQL: two app
//! instances (two apps, two pools, two limiters) over one database share each org's budget; 429
//! with `Retry-After` and `RateLimit-*`, the headers on allowed responses too, orgs independent,
//! and a limiter whose database cannot answer fails closed (503) unless told otherwise.

// Test helpers: a failed expectation is a failed test.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::time::Duration;

use actix_web::body::MessageBody;
use actix_web::dev::{Service, ServiceResponse};
use actix_web::http::StatusCode;
use actix_web::{App, HttpResponse, test, web};
use serde_json::Value;
use tenant_guard_actix::{ReadOnly, TenantDb, TenantGuard, TenantGuardError};
use tenant_guard_postgres::tokio_postgres::{Client, Config};
use tenant_guard_postgres::{OnDatabaseError, PgRateLimiter, TenantPool, support};
use tenant_guard_testkit::{TestDatabase, TestIssuer, TestPostgres};
use uuid::Uuid;

const LOGIN: &str = "tg_actix_rate_login";
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

    fn pool(&self) -> TenantPool {
        TenantPool::builder(self.login_config())
            .max_size(2)
            .build()
            .expect("pool")
    }

    /// One instance's guard: its own pool and its own limiter over the shared database.
    fn instance(&self, limit: u32) -> TenantGuard {
        let limiter = PgRateLimiter::builder("reports", limit, DAY)
            .build(self.login_config())
            .expect("limiter");
        TenantGuard::new(self.issuer.verifier().clone())
            .pool(self.pool())
            .rate_limit(limiter)
    }

    fn bearer(&self, org: Uuid) -> String {
        format!(
            "Bearer {}",
            self.issuer.token(org, "user-1", "authenticated")
        )
    }
}

/// The handler runs its scoped transaction while the limiter used its own connection.
async fn org_seen_by_the_database(
    db: TenantDb<ReadOnly>,
) -> Result<HttpResponse, TenantGuardError> {
    let row = db
        .query_one("SELECT tenant_guard.org_id()::text", &[])
        .await?;
    Ok(HttpResponse::Ok().body(row.get::<_, String>(0)))
}

/// One app over `guard` (a macro: the service type of `init_service` cannot be named here).
macro_rules! app {
    ($guard:expr) => {
        test::init_service(
            App::new().service(
                web::resource("/reports")
                    .wrap($guard)
                    .get(org_seen_by_the_database),
            ),
        )
        .await
    };
}

type Answer = (StatusCode, Vec<(String, String)>, String);

fn get_reports(bearer: Option<&str>) -> test::TestRequest {
    let req = test::TestRequest::get().uri("/reports");
    match bearer {
        Some(bearer) => req.insert_header(("authorization", bearer)),
        None => req,
    }
}

async fn send<S, R, B>(app: &S, req: R) -> Answer
where
    S: Service<R, Response = ServiceResponse<B>, Error = actix_web::Error>,
    B: MessageBody,
{
    let res = test::call_service(app, req).await;
    let status = res.status();
    let headers = res
        .headers()
        .iter()
        .map(|(n, v)| (n.to_string(), v.to_str().unwrap().to_owned()))
        .collect();
    let body = test::read_body(res).await;
    (status, headers, String::from_utf8(body.to_vec()).unwrap())
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
}

fn seconds(headers: &[(String, String)], name: &str) -> u64 {
    header(headers, name).unwrap().parse().unwrap()
}

#[actix_web::test]
async fn two_instances_share_each_orgs_budget() {
    let f = fixture().await;
    let one = app!(f.instance(3));
    let two = app!(f.instance(3));
    let (org_a, org_b) = (Uuid::new_v4(), Uuid::new_v4());
    let a = f.bearer(org_a);

    // Refused before the limiter: not counted, no RateLimit-* headers.
    let (status, headers, _) = send(&one, get_reports(None).to_request()).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(header(&headers, "ratelimit-limit").is_none());

    for (remaining, on_one) in [("2", true), ("1", false), ("0", true)] {
        let (status, headers, body) = if on_one {
            send(&one, get_reports(Some(&a)).to_request()).await
        } else {
            send(&two, get_reports(Some(&a)).to_request()).await
        };
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(
            body,
            org_a.to_string(),
            "the handler's transaction is scoped"
        );
        assert_eq!(header(&headers, "ratelimit-limit"), Some("3"));
        assert_eq!(header(&headers, "ratelimit-remaining"), Some(remaining));
        assert!(seconds(&headers, "ratelimit-reset") <= DAY.as_secs() * 2);
    }
    for on_one in [false, true] {
        let (status, headers, body) = if on_one {
            send(&one, get_reports(Some(&a)).to_request()).await
        } else {
            send(&two, get_reports(Some(&a)).to_request()).await
        };
        assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
        let json: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(json["error"], "rate_limited");
        let retry = seconds(&headers, "retry-after");
        assert!((1..=DAY.as_secs() + 1).contains(&retry), "{retry}");
        assert_eq!(header(&headers, "ratelimit-limit"), Some("3"));
        assert_eq!(header(&headers, "ratelimit-remaining"), Some("0"));
        assert!(seconds(&headers, "ratelimit-reset") >= retry);
        assert_eq!(header(&headers, "content-type"), Some("application/json"));
        assert!(header(&headers, "x-request-id").is_some());
    }

    // Another org has its own budget, on either instance.
    let (status, headers, body) =
        send(&two, get_reports(Some(&f.bearer(org_b))).to_request()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body, org_b.to_string());
    assert_eq!(header(&headers, "ratelimit-remaining"), Some("2"));

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

#[actix_web::test]
async fn a_limiter_without_its_database_fails_closed_unless_told_otherwise() {
    let f = fixture().await;
    let bearer = f.bearer(Uuid::new_v4());
    let guard = TenantGuard::new(f.issuer.verifier().clone()).pool(f.pool());

    let closed = PgRateLimiter::builder("reports", 3, DAY)
        .build(unreachable())
        .unwrap();
    let closed = app!(guard.clone().rate_limit(closed));
    let (status, headers, body) = send(&closed, get_reports(Some(&bearer)).to_request()).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    let json: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(json["error"], "rate_limit_unavailable");
    assert_eq!(header(&headers, "retry-after"), Some("1"));
    assert!(header(&headers, "x-request-id").is_some());
    assert!(!body.contains("127.0.0.1"), "no connection details: {body}");

    let open = PgRateLimiter::builder("reports", 3, DAY)
        .on_database_error(OnDatabaseError::Allow)
        .build(unreachable())
        .unwrap();
    let open = app!(guard.rate_limit(open));
    let (status, _, body) = send(&open, get_reports(Some(&bearer)).to_request()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
}
