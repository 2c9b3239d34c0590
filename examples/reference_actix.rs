//! The reference app on actix-web: a small multi-tenant API whose isolation is enforced by the
//! database, not by the handlers. The same contract as `reference_axum` (see the README):
//!
//!     APP_ENV=development cargo run --example reference_actix
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

use std::process::ExitCode;

use std::future::Future as _;
use std::pin::Pin;
use std::task::{Context, Poll};

use actix_web::HttpMessage as _;
use actix_web::dev::{Payload, Service as _};
use actix_web::error::{InternalError, JsonPayloadError, PathError, PayloadError};
use actix_web::web::Bytes;
use actix_web::{App, HttpRequest, HttpResponse, HttpServer, Route, guard, web};
use futures_util::Stream;
use http::StatusCode;
use serde::{Deserialize, Serialize};
use tenant_guard::actix::{
    Authenticated, ReadOnly, RequestTracing, TenantDb, TenantGuard, TenantGuardError,
    error_response,
};
use tenant_guard::postgres::tokio_postgres::Row;
use tenant_guard::{ErrorResponse, OrgId, OrgIdKind};
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

/// What a handler returns: a response, or the guard's error rendered as the library describes it.
type Reply = Result<HttpResponse, TenantGuardError>;

fn client_error(
    status: StatusCode,
    code: &'static str,
    message: impl Into<String>,
) -> HttpResponse {
    error_response(&ErrorResponse::new(status, code, message.into()))
}

/// The answer to an [`UnexpectedOrg`]: a server bug, 500.
fn internal_error(_: UnexpectedOrg) -> HttpResponse {
    client_error(
        StatusCode::INTERNAL_SERVER_ERROR,
        "internal",
        "internal server error",
    )
}

fn not_found() -> HttpResponse {
    client_error(StatusCode::NOT_FOUND, "not_found", "no such resource")
}

/// 405 with the `Allow` header, as axum answers.
async fn method_not_allowed(allow: &'static str) -> HttpResponse {
    let mut response = client_error(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "this method is not allowed here",
    );
    response.headers_mut().insert(
        actix_web::http::header::ALLOW,
        actix_web::http::header::HeaderValue::from_static(allow),
    );
    response
}

/// GET routes answer HEAD too, as axum's do.
fn get() -> Route {
    web::route().guard(guard::Any(guard::Get()).or(guard::Head()))
}

async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(serde_json::json!({"status": "ok"}))
}

async fn me(Authenticated(principal): Authenticated) -> HttpResponse {
    HttpResponse::Ok().json(serde_json::json!({
        "user_id": principal.user_id(),
        "org_id": principal.org_id(),
        "role": principal.role().as_str(),
    }))
}

async fn list_projects(Authenticated(principal): Authenticated, db: TenantDb<ReadOnly>) -> Reply {
    let rows = db
        .query(
            "SELECT id, org_id::text AS org_id, name FROM projects ORDER BY created_at, id",
            &[],
        )
        .await?;
    let kind = principal.org_id().kind();
    let projects = rows.iter().map(|row| Project::from_row(row, kind));
    Ok(match projects.collect::<Result<Vec<_>, _>>() {
        Ok(projects) => HttpResponse::Ok().json(projects),
        Err(unexpected) => internal_error(unexpected),
    })
}

async fn create_project(
    Authenticated(principal): Authenticated,
    db: TenantDb,
    body: web::Json<NewProject>,
) -> Reply {
    let name = body.name.trim();
    if name.is_empty() || name.chars().count() > 200 {
        return Ok(client_error(
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
    Ok(match Project::from_row(&row, principal.org_id().kind()) {
        Ok(project) => HttpResponse::Created().json(project),
        Err(unexpected) => internal_error(unexpected),
    })
}

async fn get_project(
    Authenticated(principal): Authenticated,
    db: TenantDb<ReadOnly>,
    id: web::Path<Uuid>,
) -> Reply {
    let row = db
        .query_opt(
            "SELECT id, org_id::text AS org_id, name FROM projects WHERE id = $1",
            &[&*id],
        )
        .await?;
    // Another org's row is invisible: 404, never 403, so existence does not leak.
    Ok(row.map_or_else(not_found, |row| {
        match Project::from_row(&row, principal.org_id().kind()) {
            Ok(project) => HttpResponse::Ok().json(project),
            Err(unexpected) => internal_error(unexpected),
        }
    }))
}

async fn delete_project(db: TenantDb, id: web::Path<Uuid>) -> Reply {
    let deleted = db
        .execute("DELETE FROM projects WHERE id = $1", &[&*id])
        .await?;
    Ok(if deleted == 0 {
        not_found()
    } else {
        HttpResponse::NoContent().finish()
    })
}

/// The same four handlers over sqlx (`DB_BACKEND=sqlx`): `SqlxDb` instead of `TenantDb`, the
/// same SQL, the same answers.
mod on_sqlx {
    use super::*;
    use tenant_guard::actix::SqlxDb;

    /// `id, org_id::text, name`.
    type ProjectRow = (Uuid, String, String);

    /// The project of `row` as the body of `response`, its org read as `kind`.
    fn reply(
        (id, org_id, name): ProjectRow,
        kind: OrgIdKind,
        mut response: actix_web::HttpResponseBuilder,
    ) -> HttpResponse {
        match Project::new(id, kind, &org_id, name) {
            Ok(project) => response.json(project),
            Err(unexpected) => internal_error(unexpected),
        }
    }

    pub(super) async fn list_projects(
        Authenticated(principal): Authenticated,
        mut db: SqlxDb<ReadOnly>,
    ) -> Reply {
        let sql = "SELECT id, org_id::text AS org_id, name FROM projects ORDER BY created_at, id";
        let rows: Vec<ProjectRow> = sqlx::query_as(sql).fetch_all(db.conn().await?).await?;
        let kind = principal.org_id().kind();
        let projects = rows
            .into_iter()
            .map(|(id, org_id, name)| Project::new(id, kind, &org_id, name));
        Ok(match projects.collect::<Result<Vec<_>, _>>() {
            Ok(projects) => HttpResponse::Ok().json(projects),
            Err(unexpected) => internal_error(unexpected),
        })
    }

    pub(super) async fn create_project(
        Authenticated(principal): Authenticated,
        mut db: SqlxDb,
        body: web::Json<NewProject>,
    ) -> Reply {
        let name = body.name.trim();
        if name.is_empty() || name.chars().count() > 200 {
            return Ok(client_error(
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
        Ok(reply(
            row,
            principal.org_id().kind(),
            HttpResponse::Created(),
        ))
    }

    pub(super) async fn get_project(
        Authenticated(principal): Authenticated,
        mut db: SqlxDb<ReadOnly>,
        id: web::Path<Uuid>,
    ) -> Reply {
        let sql = "SELECT id, org_id::text AS org_id, name FROM projects WHERE id = $1";
        let row: Option<ProjectRow> = sqlx::query_as(sql)
            .bind(*id)
            .fetch_optional(db.conn().await?)
            .await?;
        let kind = principal.org_id().kind();
        Ok(row.map_or_else(not_found, |row| reply(row, kind, HttpResponse::Ok())))
    }

    pub(super) async fn delete_project(mut db: SqlxDb, id: web::Path<Uuid>) -> Reply {
        let deleted = sqlx::query("DELETE FROM projects WHERE id = $1")
            .bind(*id)
            .execute(db.conn().await?)
            .await?
            .rows_affected();
        Ok(if deleted == 0 {
            not_found()
        } else {
            HttpResponse::NoContent().finish()
        })
    }
}

/// actix-web's own JSON errors, in the contract's `{"error", "message"}` shape.
fn json_error(error: JsonPayloadError, _req: &HttpRequest) -> actix_web::Error {
    use StatusCode as S;
    let (status, code, message) = match &error {
        JsonPayloadError::ContentType => (
            S::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "expected content-type: application/json".into(),
        ),
        JsonPayloadError::Deserialize(e) if e.is_data() => {
            (S::UNPROCESSABLE_ENTITY, "invalid_body", e.to_string())
        }
        JsonPayloadError::Payload(PayloadError::Io(e))
            if e.kind() == std::io::ErrorKind::TimedOut =>
        {
            (
                S::REQUEST_TIMEOUT,
                "body_timeout",
                "the request body did not arrive in time".into(),
            )
        }
        JsonPayloadError::Overflow { .. } | JsonPayloadError::OverflowKnownLength { .. } => (
            S::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            "the body is too large".into(),
        ),
        _ => (
            S::BAD_REQUEST,
            "invalid_json",
            "the body is not valid JSON".into(),
        ),
    };
    let response = client_error(status, code, message);
    InternalError::from_response(error, response).into()
}

/// A request payload that fails once its deadline (`BODY_TIMEOUT_SECONDS`) passes: a body that
/// arrives slowly, or never, ends in 408 (see [`json_error`]). The handler's `TenantDb` holds no
/// connection meanwhile (it checks out at the first statement).
struct TimedPayload {
    payload: Payload,
    deadline: Pin<Box<actix_web::rt::time::Sleep>>,
}

impl Stream for TimedPayload {
    type Item = Result<Bytes, PayloadError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if let Poll::Ready(item) = Pin::new(&mut self.payload).poll_next(cx) {
            return Poll::Ready(item);
        }
        match self.deadline.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Some(Err(PayloadError::Io(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "the request body did not arrive in time",
            ))))),
            Poll::Pending => Poll::Pending,
        }
    }
}

/// A malformed `{id}`: 404 in the same shape (the resource cannot exist).
fn path_error(error: PathError, _req: &HttpRequest) -> actix_web::Error {
    InternalError::from_response(error, not_found()).into()
}

#[actix_web::main]
async fn main() -> ExitCode {
    let mut app = match common::App::start().await {
        Ok(app) => app,
        Err(error) => return common::fail(&error),
    };
    let Some(listener) = app.take_listener() else {
        return common::fail(&"the listener was already taken".into());
    };
    let mut guard = TenantGuard::new(app.verifier.clone()).pool(app.pool.clone());
    // ORG_SOURCE=header: the org a request names in its header, checked by the membership lookup.
    if let Some(membership) = &app.membership {
        guard = guard.org_membership(membership.clone());
    }
    // DB_BACKEND=sqlx: the same routes over sqlx.
    let on_sqlx = app.sqlx.is_some();
    if let Some(sqlx) = &app.sqlx {
        guard = guard.sqlx_pool(sqlx.clone());
    }
    match common::rate_limiter(&app.config) {
        Ok(Some(limiter)) => guard = guard.rate_limit(limiter),
        Ok(None) => {}
        Err(error) => return common::fail(&error),
    }
    let body_timeout = app.config.body_timeout;
    let server = HttpServer::new(move || {
        // The guard wraps each route, not the app: unknown paths stay 404 and wrong methods 405
        // without a token, as in the axum app.
        let guarded = |route: Route| route.wrap(guard.clone());
        let projects = web::resource("/projects");
        let projects = if on_sqlx {
            projects
                .route(guarded(get().to(on_sqlx::list_projects)))
                .route(guarded(web::post().to(on_sqlx::create_project)))
        } else {
            projects
                .route(guarded(get().to(list_projects)))
                .route(guarded(web::post().to(create_project)))
        };
        let project = web::resource("/projects/{id}");
        let project = if on_sqlx {
            project
                .route(guarded(get().to(on_sqlx::get_project)))
                .route(guarded(web::delete().to(on_sqlx::delete_project)))
        } else {
            project
                .route(guarded(get().to(get_project)))
                .route(guarded(web::delete().to(delete_project)))
        };
        App::new()
            .wrap_fn(move |mut req, service| {
                let payload = req.take_payload();
                let deadline = Box::pin(actix_web::rt::time::sleep(body_timeout));
                req.set_payload(Payload::from(Box::pin(TimedPayload { payload, deadline })
                    as Pin<Box<dyn Stream<Item = Result<Bytes, PayloadError>>>>));
                service.call(req)
            })
            .wrap(RequestTracing::new())
            .app_data(
                web::JsonConfig::default()
                    .limit(64 * 1024)
                    .error_handler(json_error),
            )
            .app_data(web::PathConfig::default().error_handler(path_error))
            .route("/healthz", get().to(healthz))
            .service(
                web::resource("/me")
                    .route(guarded(get().to(me)))
                    .default_service(web::to(|| method_not_allowed("GET,HEAD"))),
            )
            .service(projects.default_service(web::to(|| method_not_allowed("GET,HEAD,POST"))))
            .service(project.default_service(web::to(|| method_not_allowed("GET,HEAD,DELETE"))))
            .default_service(web::to(|| async { not_found() }))
    })
    .disable_signals() // common::shutdown_signal() decides, as in the axum app
    .listen(listener);
    let server = match server {
        Ok(server) => server.run(),
        Err(error) => return common::fail(&error.into()),
    };
    let handle = server.handle();
    actix_web::rt::spawn(async move {
        common::shutdown_signal().await;
        handle.stop(true).await;
    });
    app.announce();
    match server.await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => common::fail(&error.into()),
    }
    // `app` is dropped here: the pool closes, then a throwaway database is removed.
}
