//! Extractors: the verified principal, the request id and the scoped transaction.

use std::future::{Ready, ready};
use std::ops::Deref;

use actix_web::dev::Payload;
use actix_web::{FromRequest, HttpMessage, HttpRequest};
use tenant_guard_core::{Principal, RequestId};

use crate::error::TenantGuardError;
use crate::guard::GuardContext;

/// The middleware's context of `req`, or the wiring error.
fn context(req: &HttpRequest) -> Result<GuardContext, TenantGuardError> {
    req.extensions()
        .get::<GuardContext>()
        .cloned()
        .ok_or(TenantGuardError::MissingMiddleware)
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
        ready(context(req).map(|c| Self(c.principal)))
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
        ready(context(req).map(|c| Self(c.request_id)))
    }
}
