//! The sqlx backend through the shared pipeline and both adapters (axum in process with
//! `tower::oneshot`, actix-web with `actix_web::test`), against the testkit's PostgreSQL: one
//! table of requests, the same answers and the same database effects from each framework.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use sqlx::postgres::PgConnectOptions;
use tenant_guard::postgres::support;
use tenant_guard::sqlx::SqlxGuard;
use tenant_guard_testkit::{TestDatabase, TestIssuer, TestPostgres};
use uuid::Uuid;

const LOGIN: &str = "tg_sqlx_pipeline_login";
const SCHEMA: &str = "
CREATE TABLE notes (
    id bigserial PRIMARY KEY,
    org_id uuid NOT NULL DEFAULT tenant_guard.org_id(),
    body text NOT NULL
);
ALTER TABLE notes ENABLE ROW LEVEL SECURITY;
ALTER TABLE notes FORCE ROW LEVEL SECURITY;
CREATE POLICY notes_org ON notes FOR ALL TO authenticated
    USING (org_id = (SELECT tenant_guard.org_id()))
    WITH CHECK (org_id = (SELECT tenant_guard.org_id()));
GRANT SELECT, INSERT, UPDATE, DELETE ON notes TO authenticated;
GRANT USAGE ON SEQUENCE notes_id_seq TO authenticated;
";
const LIST: &str = "SELECT body FROM notes ORDER BY id";
const INSERT: &str = "INSERT INTO notes (body) VALUES ($1)";

struct Env {
    _db: TestDatabase,
    admin: tokio_postgres::Client,
    guard: SqlxGuard,
    issuer: TestIssuer,
}

async fn env() -> Env {
    let db = TestPostgres::shared()
        .unwrap()
        .create_database_async()
        .await
        .unwrap();
    let admin = db.connect().await.unwrap();
    admin
        .batch_execute(&format!(
            "DO $$ BEGIN
                IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{LOGIN}') THEN
                    BEGIN CREATE ROLE {LOGIN} LOGIN NOINHERIT;
                    EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL; END;
                END IF;
            END $$"
        ))
        .await
        .unwrap();
    support::apply_support_sql_with(&admin, Some(LOGIN), SCHEMA)
        .await
        .unwrap();
    let options: PgConnectOptions = db.url().parse().unwrap();
    let pool = tenant_guard::sqlx::pool_options()
        .max_connections(2)
        .acquire_timeout(Duration::from_secs(10))
        .connect_with(options.username(LOGIN))
        .await
        .unwrap();
    Env {
        _db: db,
        admin,
        guard: SqlxGuard::new(pool),
        issuer: TestIssuer::new(),
    }
}

async fn stored(admin: &tokio_postgres::Client, body: &str) -> i64 {
    admin
        .query_one("SELECT count(*) FROM notes WHERE body = $1", &[&body])
        .await
        .unwrap()
        .get(0)
}

mod axum_app {
    use super::*;
    use axum::Router;
    use axum::extract::Path;
    use axum::http::StatusCode;
    use axum::routing::{get, post};
    use tenant_guard::axum::{ReadOnly, SqlxDb, TenantDb, TenantGuardLayer, TenantGuardRejection};
    use tower::ServiceExt;

    async fn list(mut db: SqlxDb<ReadOnly>) -> Result<String, TenantGuardRejection> {
        let bodies: Vec<String> = sqlx::query_scalar(LIST).fetch_all(db.conn().await?).await?;
        Ok(bodies.join(","))
    }

    async fn create(
        mut db: SqlxDb,
        Path(body): Path<String>,
    ) -> Result<StatusCode, TenantGuardRejection> {
        sqlx::query(INSERT)
            .bind(body)
            .execute(db.conn().await?)
            .await?;
        Ok(StatusCode::CREATED)
    }

    async fn refuse(
        mut db: SqlxDb,
        Path(body): Path<String>,
    ) -> Result<StatusCode, TenantGuardRejection> {
        sqlx::query(INSERT)
            .bind(body)
            .execute(db.conn().await?)
            .await?;
        Ok(StatusCode::UNPROCESSABLE_ENTITY)
    }

    async fn read_only_write(
        mut db: SqlxDb<ReadOnly>,
        Path(body): Path<String>,
    ) -> Result<StatusCode, TenantGuardRejection> {
        sqlx::query(INSERT)
            .bind(body)
            .execute(db.conn().await?)
            .await?;
        Ok(StatusCode::CREATED)
    }

    async fn twice(_a: TenantDb, _b: SqlxDb) -> StatusCode {
        StatusCode::OK
    }

    pub(crate) async fn send(env: &Env, method: &str, path: &str, token: &str) -> (u16, String) {
        let app = Router::new()
            .route("/notes", get(list))
            .route("/notes/{body}", post(create))
            .route("/notes/{body}/refuse", post(refuse))
            .route("/notes/{body}/read-only", post(read_only_write))
            .route("/twice", get(twice))
            .layer(
                TenantGuardLayer::new(env.issuer.verifier().clone()).sqlx_pool(env.guard.clone()),
            );
        let request = http::Request::builder()
            .method(method)
            .uri(path)
            .header("authorization", format!("Bearer {token}"))
            .body(axum::body::Body::empty())
            .unwrap();
        let response = app.oneshot(request).await.unwrap();
        let status = response.status().as_u16();
        let body = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .unwrap();
        (status, String::from_utf8_lossy(&body).into_owned())
    }
}

mod actix_app {
    use super::*;
    use actix_web::{App, HttpResponse, test, web};
    use tenant_guard::actix::{ReadOnly, SqlxDb, TenantDb, TenantGuard, TenantGuardError};

    async fn list(mut db: SqlxDb<ReadOnly>) -> Result<HttpResponse, TenantGuardError> {
        let bodies: Vec<String> = sqlx::query_scalar(LIST).fetch_all(db.conn().await?).await?;
        Ok(HttpResponse::Ok().body(bodies.join(",")))
    }

    async fn create(
        mut db: SqlxDb,
        body: web::Path<String>,
    ) -> Result<HttpResponse, TenantGuardError> {
        sqlx::query(INSERT)
            .bind(body.into_inner())
            .execute(db.conn().await?)
            .await?;
        Ok(HttpResponse::Created().finish())
    }

    async fn refuse(
        mut db: SqlxDb,
        body: web::Path<String>,
    ) -> Result<HttpResponse, TenantGuardError> {
        sqlx::query(INSERT)
            .bind(body.into_inner())
            .execute(db.conn().await?)
            .await?;
        Ok(HttpResponse::UnprocessableEntity().finish())
    }

    async fn read_only_write(
        mut db: SqlxDb<ReadOnly>,
        body: web::Path<String>,
    ) -> Result<HttpResponse, TenantGuardError> {
        sqlx::query(INSERT)
            .bind(body.into_inner())
            .execute(db.conn().await?)
            .await?;
        Ok(HttpResponse::Created().finish())
    }

    async fn twice(_a: TenantDb, _b: SqlxDb) -> HttpResponse {
        HttpResponse::Ok().finish()
    }

    pub(crate) async fn send(env: &Env, method: &str, path: &str, token: &str) -> (u16, String) {
        let guard = TenantGuard::new(env.issuer.verifier().clone()).sqlx_pool(env.guard.clone());
        let app = test::init_service(
            App::new().service(
                web::scope("")
                    .wrap(guard)
                    .route("/notes", web::get().to(list))
                    .route("/notes/{body}", web::post().to(create))
                    .route("/notes/{body}/refuse", web::post().to(refuse))
                    .route("/notes/{body}/read-only", web::post().to(read_only_write))
                    .route("/twice", web::get().to(twice)),
            ),
        )
        .await;
        let request = test::TestRequest::default()
            .method(actix_web::http::Method::from_bytes(method.as_bytes()).unwrap())
            .uri(path)
            .insert_header(("authorization", format!("Bearer {token}")))
            .to_request();
        let response = match test::try_call_service(&app, request).await {
            Ok(response) => response.map_into_boxed_body().into_parts().1,
            Err(error) => error.error_response(),
        };
        let status = response.status().as_u16();
        let body = actix_web::body::to_bytes(response.into_body())
            .await
            .map(|b| b.to_vec())
            .unwrap_or_default();
        (status, String::from_utf8_lossy(&body).into_owned())
    }
}

#[derive(Clone, Copy, Debug)]
enum Framework {
    Axum,
    Actix,
}

async fn send(env: &Env, fw: Framework, method: &str, path: &str, token: &str) -> (u16, String) {
    match fw {
        Framework::Axum => axum_app::send(env, method, path, token).await,
        Framework::Actix => actix_app::send(env, method, path, token).await,
    }
}

/// The table: every row through `fw`, with the expected status and database effect.
async fn run_table(fw: Framework) {
    let env = env().await;
    let alice = env.issuer.token(Uuid::new_v4(), "alice", "authenticated");
    let bob = env.issuer.token(Uuid::new_v4(), "bob", "authenticated");
    let tag = |s: &str| format!("{fw:?}-{s}");
    // 2xx commits.
    let (status, _) = send(&env, fw, "POST", &format!("/notes/{}", tag("kept")), &alice).await;
    assert_eq!(status, 201, "{fw:?}");
    assert_eq!(
        stored(&env.admin, &tag("kept")).await,
        1,
        "{fw:?}: committed"
    );
    // 4xx rolls back.
    let path = format!("/notes/{}/refuse", tag("refused"));
    let (status, _) = send(&env, fw, "POST", &path, &alice).await;
    assert_eq!(status, 422, "{fw:?}");
    assert_eq!(
        stored(&env.admin, &tag("refused")).await,
        0,
        "{fw:?}: rolled back"
    );
    // READ ONLY refuses writes (25006: a 500 with a generic body); nothing stored.
    let path = format!("/notes/{}/read-only", tag("ro"));
    let (status, body) = send(&env, fw, "POST", &path, &alice).await;
    assert_eq!(status, 500, "{fw:?}: {body}");
    assert!(body.contains("database_error"), "{fw:?}: {body}");
    assert_eq!(stored(&env.admin, &tag("ro")).await, 0);
    // Isolation: bob sees nothing of alice's.
    let (status, body) = send(&env, fw, "GET", "/notes", &bob).await;
    assert_eq!((status, body.as_str()), (200, ""), "{fw:?}");
    let (status, body) = send(&env, fw, "GET", "/notes", &alice).await;
    assert_eq!((status, body), (200, tag("kept")), "{fw:?}");
    // One transaction per request, whichever backend.
    let (status, _) = send(&env, fw, "GET", "/twice", &alice).await;
    assert_eq!(status, 500, "{fw:?}");
    // A bad token: 401 before any database work.
    let (status, _) = send(&env, fw, "GET", "/notes", "not-a-token").await;
    assert_eq!(status, 401, "{fw:?}");
}

#[tokio::test]
async fn axum_sqlx_db_commits_rolls_back_and_isolates() {
    run_table(Framework::Axum).await;
}

#[actix_web::test]
async fn actix_sqlx_db_commits_rolls_back_and_isolates() {
    run_table(Framework::Actix).await;
}
