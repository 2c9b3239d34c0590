//! Extractors: the verified principal, the request id and the scoped transaction, read from the
//! [`RequestContext`] the middleware put into the request.

use std::future::{Ready, ready};
use std::ops::Deref;

use actix_web::dev::Payload;
use actix_web::{FromRequest, HttpMessage, HttpRequest};
use tenant_guard_core::{Principal, RequestId};
use tenant_guard_http::{GuardRejection, Mode, ReadWrite, RequestContext};

use crate::error::TenantGuardError;

/// Reads from the middleware's context of `req`, or fails with the wiring error.
fn with_context<T>(
    req: &HttpRequest,
    read: impl FnOnce(&RequestContext) -> Result<T, GuardRejection>,
) -> Result<T, TenantGuardError> {
    let extensions = req.extensions();
    let context = extensions
        .get::<RequestContext>()
        .ok_or(GuardRejection::MissingGuard)?;
    Ok(read(context)?)
}

/// The verified [`Principal`] of the request, put there by [`TenantGuard`](crate::TenantGuard).
///
/// Rejects with a 500 (and an `error` log line) when the route is not wrapped by the middleware:
/// that is a server bug, not the caller's fault — never a panic, never an unauthenticated handler.
///
/// ```
/// use actix_web::HttpResponse;
/// use tenant_guard_actix::Authenticated;
///
/// async fn me(Authenticated(principal): Authenticated) -> HttpResponse {
///     HttpResponse::Ok().json(serde_json::json!({
///         "user_id": principal.user_id(),
///         "org_id": principal.org_id(),
///         "role": principal.role().as_str(),
///     }))
/// }
/// ```
#[derive(Debug, Clone)]
pub struct Authenticated(pub Principal);

impl Deref for Authenticated {
    type Target = Principal;

    fn deref(&self) -> &Principal {
        &self.0
    }
}

impl FromRequest for Authenticated {
    type Error = TenantGuardError;
    type Future = Ready<Result<Self, TenantGuardError>>;

    fn from_request(req: &HttpRequest, _payload: &mut Payload) -> Self::Future {
        ready(with_context(req, |c| Ok(Self(c.principal().clone()))))
    }
}

/// The request id the middleware chose (the caller's sane `x-request-id`, else a generated one);
/// the same value is sent back in the response's `x-request-id`.
#[derive(Debug, Clone)]
pub struct CurrentRequestId(pub RequestId);

impl FromRequest for CurrentRequestId {
    type Error = TenantGuardError;
    type Future = Ready<Result<Self, TenantGuardError>>;

    fn from_request(req: &HttpRequest, _payload: &mut Payload) -> Self::Future {
        ready(with_context(req, |c| Ok(Self(c.request_id().clone()))))
    }
}

/// A database transaction scoped to the caller's org and role: the only way a handler reaches
/// the database. It dereferences to [`tenant_guard_http::TenantDb`] (`query`, `query_one`,
/// `query_opt`, `execute`, …), which describes its life: checked out of the middleware's pool at
/// the first statement (so extracting it next to a `web::Json` body holds no connection while
/// the body arrives), committed after a 2xx/3xx response, rolled back otherwise.
///
/// Take `TenantDb<ReadOnly>` for handlers that only read. Extracting it never waits; it fails
/// with a 500 only when the middleware is missing, has no pool, or the extractor is taken twice.
///
/// ```no_run
/// use actix_web::HttpResponse;
/// use tenant_guard_actix::{ReadOnly, TenantDb, TenantGuardError};
///
/// async fn count_projects(db: TenantDb<ReadOnly>) -> Result<HttpResponse, TenantGuardError> {
///     // No `WHERE org_id = …`: RLS only lets the caller's org through.
///     let row = db.query_one("SELECT count(*) FROM projects", &[]).await?;
///     Ok(HttpResponse::Ok().body(row.get::<_, i64>(0).to_string()))
/// }
/// ```
#[derive(Debug)]
pub struct TenantDb<M: Mode = ReadWrite>(tenant_guard_http::TenantDb<M>);

impl<M: Mode> Deref for TenantDb<M> {
    type Target = tenant_guard_http::TenantDb<M>;

    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl<M: Mode> FromRequest for TenantDb<M> {
    type Error = TenantGuardError;
    type Future = Ready<Result<Self, TenantGuardError>>;

    fn from_request(req: &HttpRequest, _payload: &mut Payload) -> Self::Future {
        ready(with_context(req, |c| c.db().map(Self)))
    }
}
