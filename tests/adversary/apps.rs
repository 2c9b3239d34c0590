//! One small app, built twice: with the axum adapter (driven in process by `tower::oneshot`) and
//! with the actix adapter (driven by `actix_web::test`). The routes:
//!
//! - `GET /me`: the verified principal (no database);
//! - `GET /notes`: the caller's notes (read-only transaction);
//! - `GET /orgs/{org}/me`, `GET /orgs/{org}/notes`: `/me` and `/notes` under a path that names
//!   an org (HTTP apps only);
//! - `POST /notes/{body}`: inserts a note, 201;
//! - `POST /notes/{body}/refuse`: inserts a note, then answers 422 (so the write is rolled back);
//! - `POST /notes/{body}/panic`: inserts a note, then panics;
//! - `POST /notes/{body}/sleep`: inserts a note, then runs `pg_sleep(30)` tagged with the body;
//! - `POST /notes/{body}/give-up`: inserts a note, then runs `pg_sleep(30)` but gives up waiting
//!   for it after a moment (a handler-level timeout) and answers 504;
//! - `POST /notes/{body}/hold`: inserts a note, then waits for the test's [`Gate`] and commits;
//! - `POST /notes/{body}/escape`: inserts a note and moves its transaction into a task that
//!   outlives the handler (a bug: 500, rolled back);
//! - `POST /notes/{body}/swallow`: inserts a note, runs a failing statement, ignores its error and
//!   answers 200 (the commit cannot succeed: the guard's error replaces the answer);
//! - `POST /notes/{body}/twice`: takes two transactions (a bug: 500);
//! - `POST /notes/{body}/read-only`: inserts a note through a `TenantDb<ReadOnly>` (refused by
//!   the database; the handler returns the error with `?`);
//! - `POST /notes/{body}/elsewhere`: inserts a note for another org (refused by the policy's
//!   `WITH CHECK`: 403 `forbidden_by_policy`);
//! - `POST /notes/{body}/conflict`: inserts a note and the same `deferred` row twice, answers 201
//!   (the deferred unique constraint fails the commit: 409 `conflict` replaces the answer);
//! - `POST /notes/{body}/status/{code}`: inserts a note, answers `code` (HTTP apps only);
//! - `GET /nested/notes`: the list behind a second guard without a pool (it uses the outer one's);
//! - `GET /own-limit`: answers with its own `RateLimit-Remaining: 7` (the guard's must not
//!   replace it);
//! - `GET /healthz` (HTTP apps): outside the guard, no token needed;
//! - `GET /unguarded` (HTTP apps): the notes list outside the guard (a wiring bug: 500).
//!
//! With [`AppConfig::outer_tracing`], each app is wrapped in its framework's request-tracing
//! middleware, which opens the request span (the guard inside reuses it).
//!
//! The tonic app (a real gRPC server on a local port) serves the same operations as methods of
//! `notes.Notes` (see [`tonic_app::method`]).

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use tenant_guard::core::{RateLimitBackend, Verifier};
use tenant_guard::http::GuardConfig;
use tenant_guard::postgres::{GuardError, TenantPool};
use tokio::sync::Semaphore;

/// What both frameworks answered, in a framework-neutral form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub status: u16,
    /// Lower-case names, in the order the framework lists them.
    pub headers: Vec<(String, Vec<u8>)>,
    pub body: Vec<u8>,
}

impl Answer {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .and_then(|(_, v)| std::str::from_utf8(v).ok())
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "status {}: body is not JSON ({e}): {:?}",
                self.status,
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    /// The `error` code of a JSON error body (asserting its shape).
    pub fn error_code(&self) -> String {
        let v = self.json();
        assert!(
            v["message"].as_str().is_some_and(|m| !m.is_empty()),
            "no message: {v}"
        );
        assert_eq!(
            v.as_object().map(|o| o.len()),
            Some(2),
            "exactly error+message: {v}"
        );
        v["error"].as_str().expect("error code").to_owned()
    }

    /// The headers without those that legitimately differ per framework or per request.
    pub fn comparable_headers(&self) -> Vec<(String, Vec<u8>)> {
        let mut h: Vec<_> = self
            .headers
            .iter()
            .filter(|(n, _)| !["x-request-id", "content-length", "date"].contains(&n.as_str()))
            .cloned()
            .collect();
        h.sort();
        h
    }
}

/// The request of a test, framework-neutral.
#[derive(Debug, Clone)]
pub struct Req {
    pub method: &'static str,
    pub path: String,
    /// Appended in order (several values of one name stay several headers).
    pub headers: Vec<(String, Vec<u8>)>,
}

impl Req {
    pub fn get(path: &str) -> Self {
        Self {
            method: "GET",
            path: path.to_owned(),
            headers: Vec::new(),
        }
    }

    pub fn post(path: &str) -> Self {
        Self {
            method: "POST",
            path: path.to_owned(),
            headers: Vec::new(),
        }
    }

    pub fn header(mut self, name: &str, value: impl AsRef<[u8]>) -> Self {
        self.headers
            .push((name.to_owned(), value.as_ref().to_vec()));
        self
    }

    pub fn bearer(self, token: &str) -> Self {
        self.header("authorization", format!("Bearer {token}"))
    }
}

/// Lets the test decide when `/hold` handlers finish.
#[derive(Debug, Clone)]
pub struct Gate(pub Arc<Semaphore>);

impl Gate {
    pub fn closed() -> Self {
        Self(Arc::new(Semaphore::new(0)))
    }

    pub fn open(&self, n: usize) {
        self.0.add_permits(n);
    }

    async fn pass(&self) {
        let permit = self.0.acquire().await.expect("gate");
        permit.forget();
    }
}

/// Everything the app needs.
#[derive(Debug, Clone)]
pub struct AppConfig {
    pub verifier: Verifier,
    pub pool: Option<TenantPool>,
    pub gate: Gate,
    pub rate_limit: Option<Arc<dyn RateLimitBackend>>,
    /// A guard configuration shared by every request (its per-org cap counts across them);
    /// built from the fields above when unset.
    pub shared_guard: Option<GuardConfig>,
    /// Wrap the whole app in the framework's request-tracing middleware.
    pub outer_tracing: bool,
    /// The tonic app's inner (nested, pool-less) guard; `GuardConfig::new(verifier)` when unset.
    pub nested_guard: Option<GuardConfig>,
}

impl AppConfig {
    pub fn new(verifier: Verifier) -> Self {
        Self {
            verifier,
            pool: None,
            gate: Gate::closed(),
            rate_limit: None,
            shared_guard: None,
            outer_tracing: false,
            nested_guard: None,
        }
    }

    pub fn pool(mut self, pool: TenantPool) -> Self {
        self.pool = Some(pool);
        self
    }

    pub fn rate_limit(mut self, limiter: impl RateLimitBackend) -> Self {
        self.rate_limit = Some(Arc::new(limiter));
        self
    }

    /// The guard every framework's app is built with (the same configuration type for all).
    pub fn guard(&self) -> GuardConfig {
        if let Some(guard) = &self.shared_guard {
            return guard.clone();
        }
        let mut guard = GuardConfig::new(self.verifier.clone());
        if let Some(pool) = &self.pool {
            guard = guard.pool(pool.clone());
        }
        if let Some(limiter) = &self.rate_limit {
            guard = guard.rate_limit(Arc::clone(limiter));
        }
        guard
    }
}

/// How long `/give-up` waits for its statement.
pub const GIVE_UP_AFTER: Duration = Duration::from_millis(300);

const INSERT: &str = "INSERT INTO notes (body) VALUES ($1)";
const LIST: &str = "SELECT org_id::text, body FROM notes ORDER BY id";

fn notes_json(rows: &[tenant_guard::postgres::tokio_postgres::Row]) -> Value {
    Value::Array(
        rows.iter()
            .map(|r| json!({"org_id": r.get::<_, String>(0), "body": r.get::<_, String>(1)}))
            .collect(),
    )
}

/// A statement that fails (a division by zero), for `/swallow`.
const FAILING: &str = "SELECT 1 / 0";
/// A note for another org than the caller's (the policy's `WITH CHECK` refuses it).
const INSERT_ELSEWHERE: &str = "INSERT INTO notes (org_id, body) VALUES (gen_random_uuid(), $1)";
/// A row of `deferred`, whose unique constraint is checked only at commit.
const INSERT_DEFERRED: &str = "INSERT INTO deferred (body) VALUES ($1)";

fn sleep_sql(body: &str) -> String {
    // The tag lets the test find the statement in pg_stat_activity; bodies are [a-z0-9-].
    assert!(body.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'));
    format!("SELECT pg_sleep(30) -- sleeper {body}")
}

// ---------------------------------------------------------------------------------------------
// axum

pub mod axum_app {
    use super::*;
    use axum::Router;
    use axum::body::Body;
    use axum::extract::{Extension, Path};
    use axum::http::StatusCode;
    use axum::response::{IntoResponse, Response};
    use axum::routing::{get, post};
    use tenant_guard::axum::{
        Authenticated, ReadOnly, RequestTracingLayer, TenantDb, TenantGuardLayer, error_response,
    };
    use tower::ServiceExt;

    fn fail(e: &GuardError) -> Response {
        error_response(e)
    }

    async fn me(Authenticated(p): Authenticated) -> Response {
        axum::Json(json!({"user_id": p.user_id(), "org_id": p.org_id(), "role": p.role().as_str()}))
            .into_response()
    }

    async fn list(db: TenantDb<ReadOnly>) -> Response {
        match db.query(LIST, &[]).await {
            Ok(rows) => axum::Json(notes_json(&rows)).into_response(),
            Err(e) => fail(&e),
        }
    }

    async fn create(db: TenantDb, Path(body): Path<String>) -> Response {
        match db.execute(INSERT, &[&body]).await {
            Ok(_) => StatusCode::CREATED.into_response(),
            Err(e) => fail(&e),
        }
    }

    async fn refuse(db: TenantDb, Path(body): Path<String>) -> Response {
        if let Err(e) = db.execute(INSERT, &[&body]).await {
            return fail(&e);
        }
        (StatusCode::UNPROCESSABLE_ENTITY, "refused").into_response()
    }

    async fn panics(db: TenantDb, Path(body): Path<String>) -> Response {
        db.execute(INSERT, &[&body]).await.expect("insert");
        panic!("handler bug after a write (test)");
    }

    async fn sleep(db: TenantDb, Path(body): Path<String>) -> Response {
        if let Err(e) = db.execute(INSERT, &[&body]).await {
            return fail(&e);
        }
        match db.execute(&sleep_sql(&body), &[]).await {
            Ok(_) => StatusCode::CREATED.into_response(),
            Err(e) => fail(&e),
        }
    }

    async fn give_up(db: TenantDb, Path(body): Path<String>) -> Response {
        if let Err(e) = db.execute(INSERT, &[&body]).await {
            return fail(&e);
        }
        let sql = sleep_sql(&body);
        match tokio::time::timeout(GIVE_UP_AFTER, db.execute(&sql, &[])).await {
            Ok(Ok(_)) => StatusCode::CREATED.into_response(),
            Ok(Err(e)) => fail(&e),
            Err(_) => (StatusCode::GATEWAY_TIMEOUT, "gave up").into_response(),
        }
    }

    async fn hold(
        db: TenantDb,
        Extension(gate): Extension<Gate>,
        Path(body): Path<String>,
    ) -> Response {
        if let Err(e) = db.execute(INSERT, &[&body]).await {
            return fail(&e);
        }
        gate.pass().await;
        StatusCode::CREATED.into_response()
    }

    async fn escape(db: TenantDb, Path(body): Path<String>) -> Response {
        if let Err(e) = db.execute(INSERT, &[&body]).await {
            return fail(&e);
        }
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(200)).await;
            drop(db);
        });
        StatusCode::CREATED.into_response()
    }

    async fn swallow(db: TenantDb, Path(body): Path<String>) -> Response {
        if let Err(e) = db.execute(INSERT, &[&body]).await {
            return fail(&e);
        }
        let _ignored = db.execute(FAILING, &[]).await;
        StatusCode::OK.into_response()
    }

    async fn twice(_first: TenantDb, _second: TenantDb) -> Response {
        StatusCode::OK.into_response()
    }

    async fn read_only(db: TenantDb<ReadOnly>, Path(body): Path<String>) -> Response {
        match db.execute(INSERT, &[&body]).await {
            Ok(_) => StatusCode::CREATED.into_response(),
            Err(e) => fail(&e),
        }
    }

    async fn elsewhere(db: TenantDb, Path(body): Path<String>) -> Response {
        match db.execute(INSERT_ELSEWHERE, &[&body]).await {
            Ok(_) => StatusCode::CREATED.into_response(),
            Err(e) => fail(&e),
        }
    }

    async fn conflict(db: TenantDb, Path(body): Path<String>) -> Response {
        for sql in [INSERT, INSERT_DEFERRED, INSERT_DEFERRED] {
            if let Err(e) = db.execute(sql, &[&body]).await {
                return fail(&e);
            }
        }
        StatusCode::CREATED.into_response()
    }

    async fn with_status(db: TenantDb, Path((body, code)): Path<(String, u16)>) -> Response {
        if let Err(e) = db.execute(INSERT, &[&body]).await {
            return fail(&e);
        }
        StatusCode::from_u16(code)
            .unwrap_or(StatusCode::IM_A_TEAPOT)
            .into_response()
    }

    pub fn router(config: &AppConfig) -> Router {
        let layer = TenantGuardLayer::from_config(config.guard());
        // A second guard without a pool inside the first: it uses the outer guard's pool.
        let nested = Router::new()
            .route("/nested/notes", get(list))
            .route_layer(TenantGuardLayer::new(config.verifier.clone()));
        let router = Router::new()
            .route("/me", get(me))
            // The org named in the path (`OrgMembership::from_path("/orgs/{org}")`).
            .route("/orgs/{org}/me", get(me))
            .route("/orgs/{org}/notes", get(list))
            .route(
                "/own-limit",
                get(|| async { ([("ratelimit-remaining", "7")], "own") }),
            )
            .route("/notes", get(list))
            .route("/notes/{body}", post(create))
            .route("/notes/{body}/refuse", post(refuse))
            .route("/notes/{body}/panic", post(panics))
            .route("/notes/{body}/sleep", post(sleep))
            .route("/notes/{body}/give-up", post(give_up))
            .route("/notes/{body}/hold", post(hold))
            .route("/notes/{body}/escape", post(escape))
            .route("/notes/{body}/swallow", post(swallow))
            .route("/notes/{body}/twice", post(twice))
            .route("/notes/{body}/read-only", post(read_only))
            .route("/notes/{body}/elsewhere", post(elsewhere))
            .route("/notes/{body}/conflict", post(conflict))
            .route("/notes/{body}/status/{code}", post(with_status))
            .merge(nested)
            .route_layer(layer)
            .route("/healthz", get(|| async { "ok" }))
            .route("/unguarded", get(list))
            .layer(Extension(config.gate.clone()));
        if config.outer_tracing {
            router.layer(RequestTracingLayer::new())
        } else {
            router
        }
    }

    pub fn request(req: &Req) -> axum::http::Request<Body> {
        let mut builder = axum::http::Request::builder()
            .method(req.method)
            .uri(&req.path);
        for (name, value) in &req.headers {
            builder = builder.header(
                name.as_str(),
                axum::http::HeaderValue::from_bytes(value).expect("a valid header value"),
            );
        }
        builder.body(Body::empty()).expect("request")
    }

    /// Sends `req` through a fresh router; a panicking handler surfaces as the task's panic.
    pub async fn send(config: &AppConfig, req: &Req) -> Answer {
        let response = router(config)
            .oneshot(request(req))
            .await
            .expect("infallible");
        into_answer(response).await
    }

    pub async fn into_answer(response: Response) -> Answer {
        let status = response.status().as_u16();
        let headers = response
            .headers()
            .iter()
            .map(|(n, v)| (n.as_str().to_owned(), v.as_bytes().to_vec()))
            .collect();
        let body = axum::body::to_bytes(response.into_body(), 4 << 20)
            .await
            .expect("body")
            .to_vec();
        Answer {
            status,
            headers,
            body,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// actix

pub mod actix_app {
    use super::*;
    use actix_web::http::StatusCode;
    use actix_web::{App, HttpResponse, test, web};
    use tenant_guard::actix::{
        Authenticated, ReadOnly, RequestTracing, TenantDb, TenantGuard, TenantGuardError,
    };

    async fn me(Authenticated(p): Authenticated) -> HttpResponse {
        HttpResponse::Ok()
            .json(json!({"user_id": p.user_id(), "org_id": p.org_id(), "role": p.role().as_str()}))
    }

    async fn list(db: TenantDb<ReadOnly>) -> Result<HttpResponse, TenantGuardError> {
        let rows = db.query(LIST, &[]).await?;
        Ok(HttpResponse::Ok().json(notes_json(&rows)))
    }

    async fn create(
        db: TenantDb,
        body: web::Path<String>,
    ) -> Result<HttpResponse, TenantGuardError> {
        db.execute(INSERT, &[&*body]).await?;
        Ok(HttpResponse::Created().finish())
    }

    async fn refuse(
        db: TenantDb,
        body: web::Path<String>,
    ) -> Result<HttpResponse, TenantGuardError> {
        db.execute(INSERT, &[&*body]).await?;
        Ok(HttpResponse::build(StatusCode::UNPROCESSABLE_ENTITY).body("refused"))
    }

    async fn panics(db: TenantDb, body: web::Path<String>) -> HttpResponse {
        db.execute(INSERT, &[&*body]).await.expect("insert");
        panic!("handler bug after a write (test)");
    }

    async fn sleep(
        db: TenantDb,
        body: web::Path<String>,
    ) -> Result<HttpResponse, TenantGuardError> {
        db.execute(INSERT, &[&*body]).await?;
        db.execute(&sleep_sql(&body), &[]).await?;
        Ok(HttpResponse::Created().finish())
    }

    async fn give_up(
        db: TenantDb,
        body: web::Path<String>,
    ) -> Result<HttpResponse, TenantGuardError> {
        db.execute(INSERT, &[&*body]).await?;
        let sql = sleep_sql(&body);
        match tokio::time::timeout(GIVE_UP_AFTER, db.execute(&sql, &[])).await {
            Ok(result) => {
                result?;
                Ok(HttpResponse::Created().finish())
            }
            Err(_) => Ok(HttpResponse::build(StatusCode::GATEWAY_TIMEOUT).body("gave up")),
        }
    }

    async fn hold(
        db: TenantDb,
        gate: web::Data<Gate>,
        body: web::Path<String>,
    ) -> Result<HttpResponse, TenantGuardError> {
        db.execute(INSERT, &[&*body]).await?;
        gate.pass().await;
        Ok(HttpResponse::Created().finish())
    }

    async fn escape(
        db: TenantDb,
        body: web::Path<String>,
    ) -> Result<HttpResponse, TenantGuardError> {
        db.execute(INSERT, &[&*body]).await?;
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(200)).await;
            drop(db);
        });
        Ok(HttpResponse::Created().finish())
    }

    async fn swallow(
        db: TenantDb,
        body: web::Path<String>,
    ) -> Result<HttpResponse, TenantGuardError> {
        db.execute(INSERT, &[&*body]).await?;
        let _ignored = db.execute(FAILING, &[]).await;
        Ok(HttpResponse::Ok().finish())
    }

    async fn twice(_first: TenantDb, _second: TenantDb) -> HttpResponse {
        HttpResponse::Ok().finish()
    }

    async fn read_only(
        db: TenantDb<ReadOnly>,
        body: web::Path<String>,
    ) -> Result<HttpResponse, TenantGuardError> {
        db.execute(INSERT, &[&*body]).await?;
        Ok(HttpResponse::Created().finish())
    }

    async fn elsewhere(
        db: TenantDb,
        body: web::Path<String>,
    ) -> Result<HttpResponse, TenantGuardError> {
        db.execute(INSERT_ELSEWHERE, &[&*body]).await?;
        Ok(HttpResponse::Created().finish())
    }

    async fn conflict(
        db: TenantDb,
        body: web::Path<String>,
    ) -> Result<HttpResponse, TenantGuardError> {
        for sql in [INSERT, INSERT_DEFERRED, INSERT_DEFERRED] {
            db.execute(sql, &[&*body]).await?;
        }
        Ok(HttpResponse::Created().finish())
    }

    async fn with_status(
        db: TenantDb,
        path: web::Path<(String, u16)>,
    ) -> Result<HttpResponse, TenantGuardError> {
        db.execute(INSERT, &[&path.0]).await?;
        let status = StatusCode::from_u16(path.1).unwrap_or(StatusCode::IM_A_TEAPOT);
        Ok(HttpResponse::build(status).finish())
    }

    /// Sends `req` through a fresh app sharing `config`'s verifier, pool and gate (call inside
    /// an actix system). An error the app did not render itself becomes actix's response for it.
    pub async fn send(config: &AppConfig, req: &Req) -> Answer {
        let guard = TenantGuard::from_config(config.guard());
        let app = test::init_service(
            App::new()
                .wrap(actix_web::middleware::Condition::new(
                    config.outer_tracing,
                    RequestTracing::new(),
                ))
                .app_data(web::Data::new(config.gate.clone()))
                .route("/healthz", web::get().to(HttpResponse::Ok))
                .route("/unguarded", web::get().to(list))
                .service(
                    web::scope("")
                        .wrap(guard)
                        .route("/me", web::get().to(me))
                        .route("/orgs/{org}/me", web::get().to(me))
                        .route("/orgs/{org}/notes", web::get().to(list))
                        .route(
                            "/own-limit",
                            web::get().to(|| async {
                                HttpResponse::Ok()
                                    .insert_header(("ratelimit-remaining", "7"))
                                    .finish()
                            }),
                        )
                        .route("/notes", web::get().to(list))
                        .route("/notes/{body}", web::post().to(create))
                        .route("/notes/{body}/refuse", web::post().to(refuse))
                        .route("/notes/{body}/panic", web::post().to(panics))
                        .route("/notes/{body}/sleep", web::post().to(sleep))
                        .route("/notes/{body}/give-up", web::post().to(give_up))
                        .route("/notes/{body}/hold", web::post().to(hold))
                        .route("/notes/{body}/escape", web::post().to(escape))
                        .route("/notes/{body}/swallow", web::post().to(swallow))
                        .route("/notes/{body}/twice", web::post().to(twice))
                        .route("/notes/{body}/read-only", web::post().to(read_only))
                        .route("/notes/{body}/elsewhere", web::post().to(elsewhere))
                        .route("/notes/{body}/conflict", web::post().to(conflict))
                        .route("/notes/{body}/status/{code}", web::post().to(with_status))
                        .service(
                            // A second guard without a pool: it uses the outer guard's.
                            web::resource("/nested/notes")
                                .wrap(TenantGuard::new(config.verifier.clone()))
                                .route(web::get().to(list)),
                        ),
                ),
        )
        .await;
        let mut request = test::TestRequest::default()
            .method(actix_web::http::Method::from_bytes(req.method.as_bytes()).expect("method"))
            .uri(&req.path);
        for (name, value) in &req.headers {
            request = request.append_header((
                actix_web::http::header::HeaderName::from_bytes(name.as_bytes()).expect("name"),
                actix_web::http::header::HeaderValue::from_bytes(value).expect("value"),
            ));
        }
        let response = match test::try_call_service(&app, request.to_request()).await {
            Ok(response) => response.map_into_boxed_body().into_parts().1,
            Err(error) => error.error_response(),
        };
        let status = response.status().as_u16();
        let headers = response
            .headers()
            .iter()
            .map(|(n, v)| (n.as_str().to_owned(), v.as_bytes().to_vec()))
            .collect();
        let body = actix_web::body::to_bytes(response.into_body())
            .await
            .map(|b| b.to_vec())
            .unwrap_or_default();
        Answer {
            status,
            headers,
            body,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// tonic

pub mod tonic_app {
    //! `notes.Notes` on a real tonic server (HTTP/2 over a local TCP port), behind the tower
    //! layer of `tenant_guard::http` twice (the inner guard has no pool: it uses the outer one's).
    //! Each method takes a [`Note`] and answers a [`Reply`] whose `json` is what the HTTP apps
    //! send as their body; errors are gRPC statuses.

    use std::convert::Infallible;
    use std::future::Future;
    use std::pin::Pin;
    use std::task::{Context, Poll};

    use tenant_guard::ToErrorResponse;
    use tenant_guard::http::{
        ReadOnly, ReadWrite, RequestContext, TenantDb, TenantGuardLayer, grpc,
    };
    use tonic::body::Body;
    use tonic::server::{Grpc, NamedService};
    use tonic::{Code, Request, Response, Status};
    use tonic_prost::ProstCodec;

    use super::*;

    /// Every method's request.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Note {
        #[prost(string, tag = "1")]
        pub body: String,
    }

    /// Every method's answer: the JSON the HTTP apps would send (empty for none).
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Reply {
        #[prost(string, tag = "1")]
        pub json: String,
    }

    /// The method and message for an HTTP-shaped request of the table, or `None` for routes the
    /// gRPC app does not have (`/panic`, `/sleep`, `/give-up`, `/hold`).
    pub fn method(req: &Req) -> Option<(&'static str, String)> {
        let segments: Vec<&str> = req.path.trim_start_matches('/').split('/').collect();
        let found = match (req.method, segments.as_slice()) {
            ("GET", ["me"]) => ("Me", String::new()),
            ("GET", ["own-limit"]) => ("OwnLimit", String::new()),
            ("GET", ["notes"] | ["nested", "notes"]) => ("List", String::new()),
            ("POST", ["notes", body]) => ("Create", (*body).to_owned()),
            ("POST", ["notes", body, "refuse"]) => ("Refuse", (*body).to_owned()),
            ("POST", ["notes", body, "escape"]) => ("Escape", (*body).to_owned()),
            ("POST", ["notes", body, "swallow"]) => ("Swallow", (*body).to_owned()),
            ("POST", ["notes", body, "twice"]) => ("Twice", (*body).to_owned()),
            ("POST", ["notes", body, "hold"]) => ("Hold", (*body).to_owned()),
            ("POST", ["notes", body, "read-only"]) => ("ReadOnlyWrite", (*body).to_owned()),
            ("POST", ["notes", body, "elsewhere"]) => ("Elsewhere", (*body).to_owned()),
            ("POST", ["notes", body, "conflict"]) => ("Conflict", (*body).to_owned()),
            _ => return None,
        };
        Some(found)
    }

    fn status(error: &impl ToErrorResponse) -> Status {
        let response = error.to_error_response();
        Status::new(
            Code::from(i32::from(grpc::code(response.status()))),
            response.message(),
        )
    }

    fn db<M: tenant_guard::http::Mode>(request: &Request<Note>) -> Result<TenantDb<M>, Status> {
        RequestContext::from_extensions(request.extensions())
            .and_then(RequestContext::db)
            .map_err(|e| status(&e))
    }

    async fn call(
        method: String,
        gate: Gate,
        request: Request<Note>,
    ) -> Result<Response<Reply>, Status> {
        let reply = |json: String| Ok(Response::new(Reply { json }));
        let body = request.get_ref().body.clone();
        match method.as_str() {
            "Me" => {
                let context = RequestContext::from_extensions(request.extensions())
                    .map_err(|e| status(&e))?;
                let p = context.principal();
                reply(json!({"user_id": p.user_id(), "org_id": p.org_id(), "role": p.role().as_str()}).to_string())
            }
            "OwnLimit" => {
                let mut response = Response::new(Reply::default());
                response
                    .metadata_mut()
                    .insert("ratelimit-remaining", "7".parse().expect("metadata"));
                Ok(response)
            }
            "List" => {
                let db = db::<ReadOnly>(&request)?;
                let rows = db.query(LIST, &[]).await.map_err(|e| status(&e))?;
                reply(notes_json(&rows).to_string())
            }
            "Create" => {
                let db = db::<ReadWrite>(&request)?;
                db.execute(INSERT, &[&body]).await.map_err(|e| status(&e))?;
                reply(String::new())
            }
            "Refuse" => {
                let db = db::<ReadWrite>(&request)?;
                db.execute(INSERT, &[&body]).await.map_err(|e| status(&e))?;
                Err(Status::invalid_argument("refused"))
            }
            "Escape" => {
                let db = db::<ReadWrite>(&request)?;
                db.execute(INSERT, &[&body]).await.map_err(|e| status(&e))?;
                tokio::spawn(async move {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    drop(db);
                });
                reply(String::new())
            }
            "Swallow" => {
                let db = db::<ReadWrite>(&request)?;
                db.execute(INSERT, &[&body]).await.map_err(|e| status(&e))?;
                let _ignored = db.execute(FAILING, &[]).await;
                reply(String::new())
            }
            "Hold" => {
                let db = db::<ReadWrite>(&request)?;
                db.execute(INSERT, &[&body]).await.map_err(|e| status(&e))?;
                gate.pass().await;
                reply(String::new())
            }
            "ReadOnlyWrite" => {
                let db = db::<ReadOnly>(&request)?;
                db.execute(INSERT, &[&body]).await.map_err(|e| status(&e))?;
                reply(String::new())
            }
            "Elsewhere" => {
                let db = db::<ReadWrite>(&request)?;
                db.execute(INSERT_ELSEWHERE, &[&body])
                    .await
                    .map_err(|e| status(&e))?;
                reply(String::new())
            }
            "Conflict" => {
                let db = db::<ReadWrite>(&request)?;
                for sql in [INSERT, INSERT_DEFERRED, INSERT_DEFERRED] {
                    db.execute(sql, &[&body]).await.map_err(|e| status(&e))?;
                }
                reply(String::new())
            }
            "Twice" => {
                let _first = db::<ReadWrite>(&request)?;
                let _second = db::<ReadWrite>(&request)?;
                reply(String::new())
            }
            _ => Err(Status::unimplemented("no such method")),
        }
    }

    /// The service `notes.Notes` (what `tonic-build` would generate).
    #[derive(Clone)]
    struct Notes {
        gate: Gate,
    }

    impl NamedService for Notes {
        const NAME: &'static str = "notes.Notes";
    }

    impl tower::Service<http::Request<Body>> for Notes {
        type Response = http::Response<Body>;
        type Error = Infallible;
        type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

        fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
            Poll::Ready(Ok(()))
        }

        fn call(&mut self, request: http::Request<Body>) -> Self::Future {
            let method = request
                .uri()
                .path()
                .rsplit('/')
                .next()
                .unwrap_or_default()
                .to_owned();
            let gate = self.gate.clone();
            Box::pin(async move {
                let handler = tower::service_fn(move |r: Request<Note>| {
                    call(method.clone(), gate.clone(), r)
                });
                let mut grpc = Grpc::new(ProstCodec::<Reply, Note>::default());
                Ok(grpc.unary(handler, request).await)
            })
        }
    }

    /// Sends `req` to a fresh tonic server (on a local port, served on this runtime) through a
    /// tonic client. The answer: `status` is the HTTP status the guard would have used (the
    /// gRPC code mapped back; 200 for OK), the headers are the response's metadata (trailers
    /// included), the body the reply's JSON.
    pub async fn send(config: &AppConfig, req: &Req) -> Answer {
        let (method, body) = method(req).expect("a route the gRPC app has");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let outer = config
            .outer_tracing
            .then(tenant_guard::http::RequestTracingLayer::new);
        let server = tonic::transport::Server::builder()
            .layer(tower::util::option_layer(outer))
            .layer(TenantGuardLayer::from_config(config.guard()))
            .layer(TenantGuardLayer::from_config(
                config
                    .nested_guard
                    .clone()
                    .unwrap_or_else(|| GuardConfig::new(config.verifier.clone())),
            ))
            .add_service(Notes {
                gate: config.gate.clone(),
            })
            .serve_with_incoming_shutdown(
                tonic::transport::server::TcpIncoming::from(listener),
                async {
                    let _ = stopped.await;
                },
            );
        let server = tokio::spawn(server);
        let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
            .expect("endpoint")
            .connect()
            .await
            .expect("connect");
        let mut client = tonic::client::Grpc::new(channel);
        client.ready().await.expect("ready");
        let mut request = Request::new(Note { body });
        for (name, value) in &req.headers {
            let name = tonic::metadata::MetadataKey::from_bytes(name.as_bytes()).expect("name");
            let value = tonic::metadata::MetadataValue::try_from(value.as_slice()).expect("value");
            request.metadata_mut().append(name, value);
        }
        let path =
            http::uri::PathAndQuery::try_from(format!("/notes.Notes/{method}")).expect("path");
        let result = client
            .unary::<Note, Reply, _>(request, path, ProstCodec::default())
            .await;
        let _ = stop.send(());
        let _ = server.await;
        let (code, metadata, body) = match result {
            Ok(response) => (
                Code::Ok,
                response.metadata().clone(),
                response.into_inner().json,
            ),
            Err(status) => (
                status.code(),
                status.metadata().clone(),
                json!({"error": "grpc", "message": status.message()}).to_string(),
            ),
        };
        let mut headers: Vec<_> = metadata
            .into_headers()
            .iter()
            .map(|(n, v)| (n.as_str().to_owned(), v.as_bytes().to_vec()))
            .collect();
        // tonic keeps the status out of the metadata: put it back, as the client saw it.
        headers.push((
            "grpc-status".to_owned(),
            (code as i32).to_string().into_bytes(),
        ));
        let status = http_status(code);
        Answer {
            status,
            headers,
            body: body.into_bytes(),
        }
    }

    /// The HTTP status the guard maps to `code` (see `tenant_guard::http::grpc::code`).
    pub fn http_status(code: Code) -> u16 {
        match code {
            Code::Ok => 200,
            Code::Unauthenticated => 401,
            Code::PermissionDenied => 403,
            Code::ResourceExhausted => 429,
            Code::Unavailable => 503,
            Code::InvalidArgument => 422,
            Code::NotFound => 404,
            Code::DeadlineExceeded => 504,
            Code::Internal => 500,
            _ => 520,
        }
    }
}
