//! The reference app on axum: a small multi-tenant API whose isolation is enforced by the
//! database, not by the handlers. The same contract as `reference_actix` (see the README):
//!
//!     APP_ENV=development cargo run --example reference_axum
//!
//! starts a throwaway PostgreSQL, prints demo tokens and curl lines on stderr, and serves
//! `GET /healthz`, `GET /me`, `GET|POST /projects`, `GET|DELETE /projects/{id}`.
//!
//! Every handler's SQL runs in a `TenantDb`: a transaction already scoped to the caller's org and
//! role, committed when the handler answers 2xx/3xx and rolled back otherwise. No query filters by
//! org; Row Level Security does.

#[path = "common/mod.rs"]
mod common;

use common::UnexpectedOrg;

use std::future::Future as _;
use std::process::ExitCode;

use axum::body::Body;
use axum::extract::rejection::{JsonRejection, PathRejection};
use axum::extract::{DefaultBodyLimit, Extension, Path, Request};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use tenant_guard::axum::{
    Authenticated, ReadOnly, RequestTracingLayer, TenantDb, TenantGuardLayer, error_response,
};
use tenant_guard::postgres::GuardError;
use tenant_guard::postgres::tokio_postgres::Row;
use tenant_guard::{ErrorResponse, OrgId, OrgIdKind, ToErrorResponse};
use uuid::Uuid;

/// A project as the API shows it (`org_id` as `/me` shows it: a number for integer orgs).
#[derive(Serialize)]
struct Project {
    id: Uuid,
    org_id: OrgId,
    name: String,
}

impl Project {
    /// A project from its columns as every query returns them (`id, org_id::text, name`: the org
    /// as text, so the SQL is the same for every `JWT_ORG_ID_KIND`), the org read as `kind`
    /// (the caller's).
    fn new(id: Uuid, kind: OrgIdKind, org_id: &str, name: String) -> Result<Self, UnexpectedOrg> {
        let org_id = common::org_from_text(kind, org_id)?;
        Ok(Self { id, org_id, name })
    }

    fn from_row(row: &Row, kind: OrgIdKind) -> Result<Self, UnexpectedOrg> {
        Self::new(
            row.get("id"),
            kind,
            row.get::<_, &str>("org_id"),
            row.get("name"),
        )
    }
}

/// The body of `POST /projects`. Any other field (an `org_id`, say) is ignored.
#[derive(Deserialize)]
struct NewProject {
    name: String,
}

/// Every error a handler returns, rendered as the library describes it (`{"error", "message"}`).
struct ApiError(ErrorResponse);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        error_response(&self.0)
    }
}

impl From<tenant_guard::sqlx::SqlxGuardError> for ApiError {
    fn from(error: tenant_guard::sqlx::SqlxGuardError) -> Self {
        tracing::warn!(%error, "database error");
        Self(error.to_error_response())
    }
}

impl From<sqlx::Error> for ApiError {
    fn from(error: sqlx::Error) -> Self {
        tenant_guard::sqlx::SqlxGuardError::from(error).into()
    }
}

impl From<GuardError> for ApiError {
    fn from(error: GuardError) -> Self {
        tracing::warn!(%error, "database error");
        Self(error.to_error_response())
    }
}

impl From<UnexpectedOrg> for ApiError {
    fn from(_: UnexpectedOrg) -> Self {
        client_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "internal server error",
        )
    }
}

fn client_error(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
    ApiError(ErrorResponse::new(status, code, message.into()))
}

fn not_found() -> ApiError {
    client_error(StatusCode::NOT_FOUND, "not_found", "no such resource")
}

/// axum's JSON errors, in the contract's shape.
fn bad_body(rejection: JsonRejection) -> ApiError {
    match rejection {
        JsonRejection::JsonDataError(e) => client_error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_body",
            e.body_text(),
        ),
        JsonRejection::MissingJsonContentType(_) => client_error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "expected content-type: application/json",
        ),
        JsonRejection::BytesRejection(e) if timed_out(&e) => client_error(
            StatusCode::REQUEST_TIMEOUT,
            "body_timeout",
            "the request body did not arrive in time",
        ),
        r if r.status() == StatusCode::PAYLOAD_TOO_LARGE => client_error(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            "the body is too large",
        ),
        _ => client_error(
            StatusCode::BAD_REQUEST,
            "invalid_json",
            "the body is not valid JSON",
        ),
    }
}

type Reply<T> = Result<T, ApiError>;

async fn healthz() -> Json<serde_json::Value> {
    Json(serde_json::json!({"status": "ok"}))
}

async fn me(Authenticated(principal): Authenticated) -> Json<serde_json::Value> {
    Json(serde_json::json!({
        "user_id": principal.user_id(),
        "org_id": principal.org_id(),
        "role": principal.role().as_str(),
    }))
}

async fn list_projects(
    Authenticated(principal): Authenticated,
    db: TenantDb<ReadOnly>,
) -> Reply<Json<Vec<Project>>> {
    let rows = db
        .query(
            "SELECT id, org_id::text AS org_id, name FROM projects ORDER BY created_at, id",
            &[],
        )
        .await?;
    let kind = principal.org_id().kind();
    let projects = rows.iter().map(|row| Project::from_row(row, kind));
    Ok(Json(projects.collect::<Result<_, _>>()?))
}

async fn create_project(
    Authenticated(principal): Authenticated,
    db: TenantDb,
    body: Result<Json<NewProject>, JsonRejection>,
) -> Reply<(StatusCode, Json<Project>)> {
    let Json(body) = body.map_err(bad_body)?;
    let name = body.name.trim();
    if name.is_empty() || name.chars().count() > 200 {
        return Err(client_error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_name",
            "name must be 1 to 200 characters",
        ));
    }
    // The org comes from the verified token; RLS's WITH CHECK refuses any other. It is bound
    // as its own type (`uuid`, `bigint` or `text`: the column's for the org id kind).
    let org = common::org_param(principal.org_id());
    let row = db
        .query_one(
            "INSERT INTO projects (org_id, name, created_by) VALUES ($1, $2, $3) \
             RETURNING id, org_id::text AS org_id, name",
            &[&*org, &name, &principal.user_id()],
        )
        .await?;
    let project = Project::from_row(&row, principal.org_id().kind())?;
    Ok((StatusCode::CREATED, Json(project)))
}

async fn get_project(
    Authenticated(principal): Authenticated,
    db: TenantDb<ReadOnly>,
    id: Result<Path<Uuid>, PathRejection>,
) -> Reply<Json<Project>> {
    // A malformed id cannot name a project: 404, like any id the caller cannot see.
    let Path(id) = id.map_err(|_| not_found())?;
    let row = db
        .query_opt(
            "SELECT id, org_id::text AS org_id, name FROM projects WHERE id = $1",
            &[&id],
        )
        .await?;
    // Another org's row is invisible: 404, never 403, so existence does not leak.
    let row = row.ok_or_else(not_found)?;
    Ok(Json(Project::from_row(&row, principal.org_id().kind())?))
}

async fn delete_project(db: TenantDb, id: Result<Path<Uuid>, PathRejection>) -> Reply<StatusCode> {
    let Path(id) = id.map_err(|_| not_found())?;
    let deleted = db
        .execute("DELETE FROM projects WHERE id = $1", &[&id])
        .await?;
    if deleted == 0 {
        Err(not_found())
    } else {
        Ok(StatusCode::NO_CONTENT)
    }
}

/// The same four handlers over sqlx (`DB_BACKEND=sqlx`): `SqlxDb` instead of `TenantDb`, the
/// same SQL, the same answers.
mod on_sqlx {
    use super::*;
    use tenant_guard::axum::SqlxDb;

    /// `id, org_id::text, name`.
    type ProjectRow = (Uuid, String, String);

    fn project((id, org_id, name): ProjectRow, kind: OrgIdKind) -> Result<Project, UnexpectedOrg> {
        Project::new(id, kind, &org_id, name)
    }

    pub(super) async fn list_projects(
        Authenticated(principal): Authenticated,
        mut db: SqlxDb<ReadOnly>,
    ) -> Reply<Json<Vec<Project>>> {
        let sql = "SELECT id, org_id::text AS org_id, name FROM projects ORDER BY created_at, id";
        let rows: Vec<ProjectRow> = sqlx::query_as(sql).fetch_all(db.conn().await?).await?;
        let kind = principal.org_id().kind();
        let projects = rows.into_iter().map(|row| project(row, kind));
        Ok(Json(projects.collect::<Result<_, _>>()?))
    }

    pub(super) async fn create_project(
        Authenticated(principal): Authenticated,
        mut db: SqlxDb,
        body: Result<Json<NewProject>, JsonRejection>,
    ) -> Reply<(StatusCode, Json<Project>)> {
        let Json(body) = body.map_err(bad_body)?;
        let name = body.name.trim();
        if name.is_empty() || name.chars().count() > 200 {
            return Err(client_error(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_name",
                "name must be 1 to 200 characters",
            ));
        }
        let insert = sqlx::query_as(
            "INSERT INTO projects (org_id, name, created_by) VALUES ($1, $2, $3) \
             RETURNING id, org_id::text AS org_id, name",
        );
        // The org as its own type (`uuid`, `bigint` or `text`), as `common::org_param` does.
        let insert = match principal.org_id() {
            OrgId::Int(n) => insert.bind(*n),
            OrgId::Text(text) => insert.bind(text.as_str()),
            org => insert.bind(org.as_uuid()),
        };
        let row: ProjectRow = insert
            .bind(name)
            .bind(principal.user_id())
            .fetch_one(db.conn().await?)
            .await?;
        let project = project(row, principal.org_id().kind())?;
        Ok((StatusCode::CREATED, Json(project)))
    }

    pub(super) async fn get_project(
        Authenticated(principal): Authenticated,
        mut db: SqlxDb<ReadOnly>,
        id: Result<Path<Uuid>, PathRejection>,
    ) -> Reply<Json<Project>> {
        let Path(id) = id.map_err(|_| not_found())?;
        let sql = "SELECT id, org_id::text AS org_id, name FROM projects WHERE id = $1";
        let row: Option<ProjectRow> = sqlx::query_as(sql)
            .bind(id)
            .fetch_optional(db.conn().await?)
            .await?;
        let row = row.ok_or_else(not_found)?;
        Ok(Json(project(row, principal.org_id().kind())?))
    }

    pub(super) async fn delete_project(
        mut db: SqlxDb,
        id: Result<Path<Uuid>, PathRejection>,
    ) -> Reply<StatusCode> {
        let Path(id) = id.map_err(|_| not_found())?;
        let deleted = sqlx::query("DELETE FROM projects WHERE id = $1")
            .bind(id)
            .execute(db.conn().await?)
            .await?
            .rows_affected();
        if deleted == 0 {
            Err(not_found())
        } else {
            Ok(StatusCode::NO_CONTENT)
        }
    }
}

/// Bounds the time a request body may take (`BODY_TIMEOUT_SECONDS`): the body stream fails with
/// [`BodyTimedOut`] once the deadline passes, and the JSON extractor's rejection becomes 408. The
/// handler's `TenantDb` holds no connection meanwhile (it checks out at the first statement).
async fn bound_body_time(
    Extension(limit): Extension<BodyTimeout>,
    request: Request,
    next: Next,
) -> Response {
    let deadline = Box::pin(tokio::time::sleep(limit.0));
    next.run(request.map(|body| Body::new(TimedBody { body, deadline })))
        .await
}

/// The body-read bound, for [`bound_body_time`].
#[derive(Clone, Copy)]
struct BodyTimeout(std::time::Duration);

/// The error of a body that did not arrive in time.
#[derive(Debug)]
struct BodyTimedOut;

impl std::fmt::Display for BodyTimedOut {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the request body did not arrive in time")
    }
}

impl std::error::Error for BodyTimedOut {}

/// A request body that fails once its deadline passes.
struct TimedBody {
    body: Body,
    deadline: std::pin::Pin<Box<tokio::time::Sleep>>,
}

impl http_body::Body for TimedBody {
    type Data = axum::body::Bytes;
    type Error = axum::BoxError;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        if let std::task::Poll::Ready(frame) = std::pin::Pin::new(&mut self.body).poll_frame(cx) {
            return std::task::Poll::Ready(frame.map(|f| f.map_err(Into::into)));
        }
        match self.deadline.as_mut().poll(cx) {
            std::task::Poll::Ready(()) => std::task::Poll::Ready(Some(Err(BodyTimedOut.into()))),
            std::task::Poll::Pending => std::task::Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}

/// Whether a body error was [`BodyTimedOut`] (somewhere in its source chain).
fn timed_out(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut current = Some(error);
    while let Some(error) = current {
        if error.is::<BodyTimedOut>() {
            return true;
        }
        current = error.source();
    }
    false
}

async fn fallback() -> ApiError {
    not_found()
}

async fn method_not_allowed() -> ApiError {
    client_error(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "this method is not allowed here",
    )
}

#[tokio::main]
async fn main() -> ExitCode {
    let mut app = match common::App::start().await {
        Ok(app) => app,
        Err(error) => return common::fail(&error),
    };
    let listener = match app.take_listener().map(tokio::net::TcpListener::from_std) {
        Some(Ok(listener)) => listener,
        Some(Err(error)) => return common::fail(&error.into()),
        None => return common::fail(&"the listener was already taken".into()),
    };
    let mut guard = TenantGuardLayer::new(app.verifier.clone()).pool(app.pool.clone());
    // ORG_SOURCE=header: the org a request names in its header, checked by the membership lookup.
    if let Some(membership) = &app.membership {
        guard = guard.org_membership(membership.clone());
    }
    match common::rate_limiter(&app.config) {
        Ok(Some(limiter)) => guard = guard.rate_limit(limiter),
        Ok(None) => {}
        Err(error) => return common::fail(&error),
    }
    let routes = match &app.sqlx {
        // DB_BACKEND=sqlx: the same routes over sqlx.
        Some(sqlx) => {
            guard = guard.sqlx_pool(sqlx.clone());
            Router::new()
                .route(
                    "/projects",
                    get(on_sqlx::list_projects).post(on_sqlx::create_project),
                )
                .route(
                    "/projects/{id}",
                    get(on_sqlx::get_project).delete(on_sqlx::delete_project),
                )
        }
        None => Router::new()
            .route("/projects", get(list_projects).post(create_project))
            .route("/projects/{id}", get(get_project).delete(delete_project)),
    };
    let router = routes
        .route("/me", get(me))
        // `route_layer`: only the routes above need a token; the rest still 404s.
        .route_layer(guard)
        .route("/healthz", get(healthz))
        .fallback(fallback)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(64 * 1024))
        .layer(middleware::from_fn(bound_body_time))
        .layer(Extension(BodyTimeout(app.config.body_timeout)))
        // Outermost: a request id and a span for every response, healthz and 404s included.
        .layer(RequestTracingLayer::new());
    app.announce();
    let served = axum::serve(listener, router)
        .with_graceful_shutdown(common::shutdown_signal())
        .await;
    match served {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => common::fail(&error.into()),
    }
    // `app` is dropped here: the pool closes, then a throwaway database is removed.
}
