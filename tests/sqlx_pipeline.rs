//! The sqlx backend through the shared pipeline and both adapters (axum in process with
//! `tower::oneshot`, actix-web with `actix_web::test`), against the testkit's PostgreSQL: one
//! table of requests, the same answers and the same database effects from each framework.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
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

/// What a held request waits on: it signals `holding` once its connection is checked out and
/// its note inserted, then waits for `open`.
#[derive(Debug)]
struct Gate {
    holding: tokio::sync::Semaphore,
    open: tokio::sync::Semaphore,
}

impl Default for Gate {
    fn default() -> Self {
        Self {
            holding: tokio::sync::Semaphore::new(0),
            open: tokio::sync::Semaphore::new(0),
        }
    }
}

impl Gate {
    async fn hold(&self) {
        self.holding.add_permits(1);
        self.open.acquire().await.unwrap().forget();
    }

    async fn wait_until_holding(&self) {
        self.holding.acquire().await.unwrap().forget();
    }
}

/// An answer: status, `Retry-After`, body.
#[derive(Debug)]
struct Reply {
    status: u16,
    retry_after: Option<String>,
    body: String,
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
    use axum::extract::{Extension, Path};
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

    async fn hold(
        mut db: SqlxDb,
        Path(body): Path<String>,
        Extension(gate): Extension<Arc<Gate>>,
    ) -> Result<StatusCode, TenantGuardRejection> {
        sqlx::query(INSERT)
            .bind(body)
            .execute(db.conn().await?)
            .await?;
        gate.hold().await;
        Ok(StatusCode::CREATED)
    }

    async fn panic(
        mut db: SqlxDb,
        Path(body): Path<String>,
    ) -> Result<StatusCode, TenantGuardRejection> {
        sqlx::query(INSERT)
            .bind(body)
            .execute(db.conn().await?)
            .await?;
        panic!("the handler panics holding its connection");
    }

    /// The guard of a test's requests (one per test, so its per-org cap counts across them).
    pub(crate) fn guard(env: &Env, cap: Option<usize>) -> TenantGuardLayer {
        let layer =
            TenantGuardLayer::new(env.issuer.verifier().clone()).sqlx_pool(env.guard.clone());
        match cap {
            Some(cap) => layer.max_connections_per_org(cap),
            None => layer,
        }
    }

    pub(crate) async fn send(env: &Env, method: &str, path: &str, token: &str) -> (u16, String) {
        let reply = call(&guard(env, None), &Arc::default(), method, path, token).await;
        (reply.status, reply.body)
    }

    pub(crate) async fn call(
        guard: &TenantGuardLayer,
        gate: &Arc<Gate>,
        method: &str,
        path: &str,
        token: &str,
    ) -> Reply {
        let app = Router::new()
            .route("/notes", get(list))
            .route("/notes/{body}", post(create))
            .route("/notes/{body}/refuse", post(refuse))
            .route("/notes/{body}/read-only", post(read_only_write))
            .route("/notes/{body}/hold", post(hold))
            .route("/notes/{body}/panic", post(panic))
            .route("/twice", get(twice))
            .layer(guard.clone())
            .layer(Extension(Arc::clone(gate)));
        let request = http::Request::builder()
            .method(method)
            .uri(path)
            .header("authorization", format!("Bearer {token}"))
            .body(axum::body::Body::empty())
            .unwrap();
        let response = app.oneshot(request).await.unwrap();
        let status = response.status().as_u16();
        let retry_after = response
            .headers()
            .get("retry-after")
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
        let body = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .unwrap();
        Reply {
            status,
            retry_after,
            body: String::from_utf8_lossy(&body).into_owned(),
        }
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

    async fn hold(
        mut db: SqlxDb,
        body: web::Path<String>,
        gate: web::Data<Gate>,
    ) -> Result<HttpResponse, TenantGuardError> {
        sqlx::query(INSERT)
            .bind(body.into_inner())
            .execute(db.conn().await?)
            .await?;
        gate.hold().await;
        Ok(HttpResponse::Created().finish())
    }

    async fn panic(
        mut db: SqlxDb,
        body: web::Path<String>,
    ) -> Result<HttpResponse, TenantGuardError> {
        sqlx::query(INSERT)
            .bind(body.into_inner())
            .execute(db.conn().await?)
            .await?;
        panic!("the handler panics holding its connection");
    }

    /// The guard of a test's requests (one per test, so its per-org cap counts across them).
    pub(crate) fn guard(env: &Env, cap: Option<usize>) -> TenantGuard {
        let guard = TenantGuard::new(env.issuer.verifier().clone()).sqlx_pool(env.guard.clone());
        match cap {
            Some(cap) => guard.max_connections_per_org(cap),
            None => guard,
        }
    }

    pub(crate) async fn send(env: &Env, method: &str, path: &str, token: &str) -> (u16, String) {
        let reply = call(&guard(env, None), &Arc::default(), method, path, token).await;
        (reply.status, reply.body)
    }

    pub(crate) async fn call(
        guard: &TenantGuard,
        gate: &Arc<Gate>,
        method: &str,
        path: &str,
        token: &str,
    ) -> Reply {
        let app = test::init_service(
            App::new()
                .app_data(web::Data::from(Arc::clone(gate)))
                .service(
                    web::scope("")
                        .wrap(guard.clone())
                        .route("/notes", web::get().to(list))
                        .route("/notes/{body}", web::post().to(create))
                        .route("/notes/{body}/refuse", web::post().to(refuse))
                        .route("/notes/{body}/read-only", web::post().to(read_only_write))
                        .route("/notes/{body}/hold", web::post().to(hold))
                        .route("/notes/{body}/panic", web::post().to(panic))
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
        let retry_after = response
            .headers()
            .get("retry-after")
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
        let body = actix_web::body::to_bytes(response.into_body())
            .await
            .map(|b| b.to_vec())
            .unwrap_or_default();
        Reply {
            status,
            retry_after,
            body: String::from_utf8_lossy(&body).into_owned(),
        }
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

/// A test's guard, whichever framework.
enum Guard {
    Axum(tenant_guard::axum::TenantGuardLayer),
    Actix(tenant_guard::actix::TenantGuard),
}

impl Guard {
    fn new(env: &Env, fw: Framework, cap: Option<usize>) -> Self {
        match fw {
            Framework::Axum => Self::Axum(axum_app::guard(env, cap)),
            Framework::Actix => Self::Actix(actix_app::guard(env, cap)),
        }
    }

    async fn call(&self, gate: &Arc<Gate>, method: &str, path: &str, token: &str) -> Reply {
        match self {
            Self::Axum(guard) => axum_app::call(guard, gate, method, path, token).await,
            Self::Actix(guard) => actix_app::call(guard, gate, method, path, token).await,
        }
    }
}

/// `max_connections_per_org(1)` on the sqlx pool (of two), as on the tokio-postgres pool
/// (`tests/behaviour.rs`): while org A's request holds a connection, A's next transaction is
/// refused at once (503 `database_busy` with `Retry-After`, nothing stored) and org B still gets
/// the other connection; the slot comes back when the held request ends, when a handler panics
/// and when a request is cancelled.
async fn run_cap(fw: Framework) {
    let env = env().await;
    let guard = Guard::new(&env, fw, Some(1));
    let gate = Arc::new(Gate::default());
    let alice = env.issuer.token(Uuid::new_v4(), "alice", "authenticated");
    let bob = env.issuer.token(Uuid::new_v4(), "bob", "authenticated");
    let tag = |s: &str| format!("{fw:?}-cap-{s}");
    let held_path = format!("/notes/{}/hold", tag("held"));
    let held = guard.call(&gate, "POST", &held_path, &alice);
    let (held, ()) = tokio::join!(held, async {
        gate.wait_until_holding().await;
        let over = format!("/notes/{}", tag("over"));
        let refused = guard.call(&gate, "POST", &over, &alice).await;
        assert_eq!(refused.status, 503, "{fw:?}: {refused:?}");
        assert!(refused.retry_after.is_some(), "{fw:?}: {refused:?}");
        assert!(
            refused.body.contains("\"database_busy\""),
            "{fw:?}: {refused:?}"
        );
        let other = format!("/notes/{}", tag("other"));
        let other = guard.call(&gate, "POST", &other, &bob).await;
        assert_eq!(other.status, 201, "{fw:?}: org B is unaffected: {other:?}");
        gate.open.add_permits(1);
    });
    assert_eq!(held.status, 201, "{fw:?}: {held:?}");
    for (body, kept) in [("held", 1), ("over", 0), ("other", 1)] {
        assert_eq!(stored(&env.admin, &tag(body)).await, kept, "{fw:?}: {body}");
    }
    // Released at the end of the held request: A gets a connection again.
    let again = format!("/notes/{}", tag("again"));
    let again = guard.call(&gate, "POST", &again, &alice).await;
    assert_eq!(
        again.status, 201,
        "{fw:?}: released after the request: {again:?}"
    );

    // A handler that panics holding its connection: the slot comes back.
    let panic_path = format!("/notes/{}/panic", tag("panicked"));
    let panicked = std::panic::AssertUnwindSafe(guard.call(&gate, "POST", &panic_path, &alice));
    let panicked = futures_util::FutureExt::catch_unwind(panicked).await;
    assert!(
        panicked.is_err() || panicked.as_ref().is_ok_and(|r| r.status == 500),
        "{fw:?}: {:?}",
        panicked.map(|r| r.status)
    );
    let after_panic = format!("/notes/{}", tag("after-panic"));
    let after_panic = guard.call(&gate, "POST", &after_panic, &alice).await;
    assert_eq!(
        after_panic.status, 201,
        "{fw:?}: released after a panic: {after_panic:?}"
    );

    // A request cancelled while it holds its connection (the client gave up): the slot comes back.
    let cancelled = format!("/notes/{}/hold", tag("cancelled"));
    let cancelled = guard.call(&gate, "POST", &cancelled, &alice);
    let (cancelled, ()) = tokio::join!(
        tokio::time::timeout(Duration::from_secs(5), cancelled),
        gate.wait_until_holding()
    );
    assert!(cancelled.is_err(), "{fw:?}: the gate is closed");
    let after_cancel = format!("/notes/{}", tag("after-cancel"));
    let after_cancel = guard.call(&gate, "POST", &after_cancel, &alice).await;
    assert_eq!(
        after_cancel.status, 201,
        "{fw:?}: released after a cancellation: {after_cancel:?}"
    );
    for (body, kept) in [("panicked", 0), ("cancelled", 0), ("after-cancel", 1)] {
        assert_eq!(stored(&env.admin, &tag(body)).await, kept, "{fw:?}: {body}");
    }
}

#[tokio::test]
async fn axum_sqlx_db_keeps_the_per_org_cap() {
    run_cap(Framework::Axum).await;
}

#[actix_web::test]
async fn actix_sqlx_db_keeps_the_per_org_cap() {
    run_cap(Framework::Actix).await;
}
