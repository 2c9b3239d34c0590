//! `TenantDb` through the actix middleware, against a real PostgreSQL (one fresh database per
//! test): commit on success, rollback otherwise, Row Level Security between orgs, and the
//! misuse cases (two extractors, no pool, a transaction escaping its handler, an exhausted pool).

// Test helpers: a failed expectation is a failed test.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use actix_web::http::StatusCode;
use actix_web::{App, HttpResponse, test, web};
use serde::Deserialize;
use serde_json::{Value, json};
use tenant_guard_actix::{Authenticated, ReadOnly, TenantDb, TenantGuard, TenantGuardError};
use tenant_guard_core::{Environment, Verifier};
use tenant_guard_postgres::tokio_postgres::Client;
use tenant_guard_postgres::{ScopeOptions, TenantPool, support};
use tenant_guard_testkit::{TestDatabase, TestPostgres};

const SECRET: &str = "actix-tenant-db-test-secret-0123456789";
const ORG_A: &str = "aaaaaaaa-0000-4000-8000-00000000000a";
const ORG_B: &str = "bbbbbbbb-0000-4000-8000-00000000000b";

/// A tenant table under forced RLS, and a powerless login for the pool (roles are per server).
const SCHEMA: &str = r#"
CREATE TABLE notes (
    id bigserial PRIMARY KEY,
    org_id uuid NOT NULL,
    body text NOT NULL
);
ALTER TABLE notes ENABLE ROW LEVEL SECURITY;
ALTER TABLE notes FORCE ROW LEVEL SECURITY;
GRANT SELECT, INSERT, UPDATE, DELETE ON notes TO authenticated;
GRANT USAGE ON SEQUENCE notes_id_seq TO authenticated;
CREATE POLICY notes_org ON notes FOR ALL TO authenticated
    USING (org_id = (SELECT tenant_guard.org_id()))
    WITH CHECK (org_id = (SELECT tenant_guard.org_id()));
-- Checked only at commit: a duplicate body fails the commit, not the statement.
ALTER TABLE notes ADD CONSTRAINT notes_body_unique UNIQUE (body) DEFERRABLE INITIALLY DEFERRED;
DO $$ BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'tg_actix_login') THEN
        CREATE ROLE tg_actix_login LOGIN NOINHERIT;
    END IF;
END $$;
SELECT tenant_guard.grant_app_roles('tg_actix_login');
"#;

struct Fixture {
    database: TestDatabase,
    admin: Client,
    verifier: Verifier,
}

impl Fixture {
    async fn new() -> Self {
        let database = TestPostgres::shared()
            .expect("test PostgreSQL")
            .create_database_async()
            .await
            .expect("test database");
        support::apply(database.config(), SCHEMA)
            .await
            .expect("support SQL and schema");
        let admin = database.connect().await.expect("admin connection");
        let verifier = Verifier::builder(Environment::Test)
            .hmac_secret(SECRET)
            .build()
            .expect("verifier");
        Self {
            database,
            admin,
            verifier,
        }
    }

    fn pool(&self, max_size: usize) -> TenantPool {
        let mut config = self.database.config().clone();
        config.user("tg_actix_login");
        TenantPool::builder(config)
            .max_size(max_size)
            .wait_timeout(Duration::from_millis(200))
            .build()
            .expect("pool")
    }

    fn guard(&self) -> TenantGuard {
        TenantGuard::new(self.verifier.clone()).pool(self.pool(4))
    }

    /// Every note's body, read as the superuser (no RLS): what was really committed.
    async fn committed(&self) -> Vec<String> {
        self.admin
            .query("SELECT body FROM notes ORDER BY id", &[])
            .await
            .expect("read notes")
            .iter()
            .map(|r| r.get(0))
            .collect()
    }
}

fn token(org: &str) -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    let claims = json!({
        "sub": format!("user-of-{org}"), "role": "authenticated", "aud": "authenticated",
        "org_id": org, "iat": now, "exp": now + 600,
    });
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .expect("sign")
}

#[derive(Deserialize)]
struct Write {
    body: String,
    status: u16,
}

/// Inserts a note for the caller's org, then answers with the requested status.
async fn write(
    Authenticated(principal): Authenticated,
    db: TenantDb,
    query: web::Query<Write>,
) -> Result<HttpResponse, TenantGuardError> {
    db.execute(
        "INSERT INTO notes (org_id, body) VALUES ($1, $2)",
        &[&principal.org_id(), &query.body],
    )
    .await?;
    let status = StatusCode::from_u16(query.status).unwrap_or(StatusCode::OK);
    Ok(HttpResponse::build(status).finish())
}

async fn list(db: TenantDb<ReadOnly>) -> Result<HttpResponse, TenantGuardError> {
    let rows = db.query("SELECT body FROM notes ORDER BY id", &[]).await?;
    let bodies: Vec<String> = rows.iter().map(|r| r.get(0)).collect();
    Ok(HttpResponse::Ok().json(bodies))
}

/// Writes for another org than the token's: RLS's WITH CHECK refuses it.
async fn write_elsewhere(db: TenantDb) -> Result<HttpResponse, TenantGuardError> {
    let other: uuid::Uuid = ORG_B.parse().expect("uuid");
    db.execute(
        "INSERT INTO notes (org_id, body) VALUES ($1, 'smuggled')",
        &[&other],
    )
    .await?;
    Ok(HttpResponse::Ok().finish())
}

async fn write_read_only(db: TenantDb<ReadOnly>) -> Result<HttpResponse, TenantGuardError> {
    db.execute(
        "INSERT INTO notes (org_id, body) VALUES (tenant_guard.org_id(), 'read-only')",
        &[],
    )
    .await?;
    Ok(HttpResponse::Ok().finish())
}

/// Runs a failing statement, ignores its error and answers 200 anyway.
async fn swallow(db: TenantDb) -> HttpResponse {
    let _ = db
        .execute(
            "INSERT INTO notes (org_id, body) VALUES (tenant_guard.org_id(), 'before')",
            &[],
        )
        .await;
    let _ = db.execute("SELECT 1 / 0", &[]).await;
    HttpResponse::Ok().finish()
}

async fn twice(_first: TenantDb, _second: TenantDb) -> HttpResponse {
    HttpResponse::Ok().finish()
}

/// Moves its transaction into a task that outlives the handler.
async fn escape(db: TenantDb) -> Result<HttpResponse, TenantGuardError> {
    db.execute(
        "INSERT INTO notes (org_id, body) VALUES (tenant_guard.org_id(), 'escaped')",
        &[],
    )
    .await?;
    // The task keeps `db` until the runtime ends.
    actix_web::rt::spawn(async move {
        std::future::pending::<()>().await;
        drop(db);
    });
    Ok(HttpResponse::Ok().finish())
}

async fn with_json(_db: TenantDb, _body: web::Json<Value>) -> HttpResponse {
    HttpResponse::Ok().finish()
}

/// The test routes behind `guard`.
macro_rules! routes {
    ($guard:expr) => {
        web::scope("")
            .wrap($guard)
            .route("/notes", web::post().to(write))
            .route("/notes", web::get().to(list))
            .route("/elsewhere", web::post().to(write_elsewhere))
            .route("/read-only", web::post().to(write_read_only))
            .route("/twice", web::get().to(twice))
            .route("/swallow", web::post().to(swallow))
            .route("/escape", web::post().to(escape))
            .route("/json", web::post().to(with_json))
    };
}

/// Sends `req` to `app`: the status, the `Retry-After` header and the JSON body (or null).
macro_rules! send {
    ($app:expr, $req:expr) => {{
        let res = test::call_service(&$app, $req.to_request()).await;
        let status = res.status();
        let retry = res
            .headers()
            .get("retry-after")
            .map(|v| v.to_str().unwrap_or_default().to_owned());
        let body = test::read_body(res).await;
        let json: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        (status, retry, json)
    }};
}

fn as_org(req: test::TestRequest, org: &str) -> test::TestRequest {
    req.insert_header(("authorization", format!("Bearer {}", token(org))))
}

#[actix_web::test]
async fn success_commits_and_anything_else_rolls_back() {
    let fx = Fixture::new().await;
    let app = test::init_service(App::new().service(routes!(fx.guard()))).await;
    for (body, status) in [
        ("created", 201),
        ("redirect", 303),
        ("bad", 422),
        ("boom", 500),
    ] {
        let uri = format!("/notes?body={body}&status={status}");
        let (got, _, _) = send!(app, as_org(test::TestRequest::post().uri(&uri), ORG_A));
        assert_eq!(got.as_u16(), status);
    }
    assert_eq!(fx.committed().await, ["created", "redirect"]);
}

#[actix_web::test]
async fn each_org_sees_only_its_own_rows() {
    let fx = Fixture::new().await;
    let app = test::init_service(App::new().service(routes!(fx.guard()))).await;
    for (org, body) in [(ORG_A, "a1"), (ORG_B, "b1"), (ORG_A, "a2")] {
        let uri = format!("/notes?body={body}&status=201");
        send!(app, as_org(test::TestRequest::post().uri(&uri), org));
    }
    let (status, _, a) = send!(app, as_org(test::TestRequest::get().uri("/notes"), ORG_A));
    assert_eq!(status, StatusCode::OK);
    assert_eq!(a, json!(["a1", "a2"]));
    let (_, _, b) = send!(app, as_org(test::TestRequest::get().uri("/notes"), ORG_B));
    assert_eq!(b, json!(["b1"]));
}

#[actix_web::test]
async fn database_refusals_answer_as_the_guard_describes_them() {
    let fx = Fixture::new().await;
    let app = test::init_service(App::new().service(routes!(fx.guard()))).await;
    let (status, _, body) = send!(
        app,
        as_org(test::TestRequest::post().uri("/elsewhere"), ORG_A)
    );
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(body["error"], "forbidden_by_policy");
    let (status, _, body) = send!(
        app,
        as_org(test::TestRequest::post().uri("/read-only"), ORG_A)
    );
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    assert!(body["error"].is_string());
    assert!(fx.committed().await.is_empty());
}

#[actix_web::test]
async fn no_token_never_reaches_the_pool() {
    let fx = Fixture::new().await;
    let pool = fx.pool(1);
    let guard = TenantGuard::new(fx.verifier.clone()).pool(pool.clone());
    let app = test::init_service(App::new().service(routes!(guard))).await;
    let (status, _, body) = send!(
        app,
        test::TestRequest::post().uri("/notes?body=x&status=201")
    );
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(body["error"], "missing_token");
    assert_eq!(pool.status().size, 0, "no connection was opened");
}

#[actix_web::test]
async fn misuse_is_a_json_500_and_commits_nothing() {
    let fx = Fixture::new().await;
    let app = test::init_service(App::new().service(routes!(fx.guard()))).await;
    let (status, _, body) = send!(app, as_org(test::TestRequest::get().uri("/twice"), ORG_A));
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(body["error"], "internal_error");

    let (status, _, body) = send!(app, as_org(test::TestRequest::post().uri("/escape"), ORG_A));
    assert_eq!(
        status,
        StatusCode::INTERNAL_SERVER_ERROR,
        "an escaped transaction fails the request"
    );
    assert_eq!(body["error"], "internal_error");
    assert!(fx.committed().await.is_empty());

    let no_pool = TenantGuard::new(fx.verifier.clone());
    let app = test::init_service(App::new().service(routes!(no_pool))).await;
    let (status, _, body) = send!(app, as_org(test::TestRequest::get().uri("/notes"), ORG_A));
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(body["error"], "internal_error");

    let unguarded = test::init_service(App::new().route("/notes", web::get().to(list))).await;
    let (status, _, body) = send!(
        unguarded,
        as_org(test::TestRequest::get().uri("/notes"), ORG_A)
    );
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(body["error"], "internal_error");
}

#[actix_web::test]
async fn a_failing_sibling_extractor_leaves_its_own_answer() {
    let fx = Fixture::new().await;
    let app = test::init_service(App::new().service(routes!(fx.guard()))).await;
    let req = as_org(test::TestRequest::post().uri("/json"), ORG_A)
        .insert_header(("content-type", "application/json"))
        .set_payload("{not json");
    let (status, _, _) = send!(app, req);
    assert_eq!(
        status,
        StatusCode::BAD_REQUEST,
        "the JSON error, not a 500 from the transaction"
    );
}

#[actix_web::test]
async fn an_exhausted_pool_is_503_with_retry_after() {
    let fx = Fixture::new().await;
    let pool = fx.pool(1);
    let holder = fx.verifier.verify(&token(ORG_A)).expect("principal");
    let held = pool
        .begin(&holder, ScopeOptions::default())
        .await
        .expect("the only connection");
    let guard = TenantGuard::new(fx.verifier.clone()).pool(pool.clone());
    let app = test::init_service(App::new().service(routes!(guard))).await;
    let (status, retry, body) = send!(app, as_org(test::TestRequest::get().uri("/notes"), ORG_B));
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(body["error"], "database_busy");
    assert!(retry.is_some());
    held.rollback().await.expect("rollback");
    let (status, _, _) = send!(app, as_org(test::TestRequest::get().uri("/notes"), ORG_B));
    assert_eq!(status, StatusCode::OK, "the pool recovers");
}

#[actix_web::test]
async fn a_failed_commit_replaces_the_handlers_answer() {
    let fx = Fixture::new().await;
    let app = test::init_service(App::new().service(routes!(fx.guard()))).await;
    let uri = "/notes?body=same&status=201";
    let (status, _, _) = send!(app, as_org(test::TestRequest::post().uri(uri), ORG_A));
    assert_eq!(status, StatusCode::CREATED);
    // The duplicate passes the INSERT (the constraint is deferred) and fails the commit.
    let (status, _, body) = send!(app, as_org(test::TestRequest::post().uri(uri), ORG_A));
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(body["error"], "conflict");
    assert_eq!(fx.committed().await, ["same"]);
}

#[actix_web::test]
async fn a_swallowed_statement_error_cannot_be_committed() {
    let fx = Fixture::new().await;
    let app = test::init_service(App::new().service(routes!(fx.guard()))).await;
    let (status, _, body) = send!(
        app,
        as_org(test::TestRequest::post().uri("/swallow"), ORG_A)
    );
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR, "{body}");
    assert!(body["error"].is_string());
    assert!(fx.committed().await.is_empty());
}

#[actix_web::test]
async fn a_nested_role_guard_uses_the_outer_pool() {
    let fx = Fixture::new().await;
    let inner = TenantGuard::new(fx.verifier.clone()).allow_roles(["authenticated"]);
    let app = test::init_service(
        App::new().service(
            web::scope("")
                .wrap(fx.guard())
                .service(web::resource("/notes").wrap(inner).get(list)),
        ),
    )
    .await;
    let (status, _, body) = send!(app, as_org(test::TestRequest::get().uri("/notes"), ORG_A));
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body, json!([]));
}
