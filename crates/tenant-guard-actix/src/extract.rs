//! Extractors: the verified principal, the request id and the scoped transaction, read from the
//! [`RequestContext`] the middleware put into the request (types declared by the shared
//! pipeline).

use std::future::{Ready, ready};

use actix_web::dev::Payload;
use actix_web::{FromRequest, HttpMessage, HttpRequest};
use tenant_guard_http::{GuardRejection, Mode, RequestContext};

use crate::error::TenantGuardError;

tenant_guard_http::extractor_types! {
    /// The verified [`Principal`](tenant_guard_core::Principal) of the request, put there by
    /// [`TenantGuard`](crate::TenantGuard) (also available as `web::ReqData<Principal>`).
    ///
    /// Fails with a 500 (and an `error` log line) when the route is not wrapped by the
    /// middleware: a server bug, never a panic, never an unauthenticated handler.
    ///
    /// ```
    /// use actix_web::HttpResponse;
    /// use tenant_guard_actix::Authenticated;
    ///
    /// async fn me(Authenticated(principal): Authenticated) -> HttpResponse {
    ///     HttpResponse::Ok().body(principal.user_id().to_owned())
    /// }
    /// ```
    Authenticated;
    /// The request id the middleware chose (also `web::ReqData<RequestId>`); the response's
    /// `x-request-id` carries the same value.
    CurrentRequestId;
    /// A database transaction scoped to the caller's org and role, dereferencing to
    /// [`tenant_guard_http::TenantDb`] (`query`, `execute`, …; checked out of the pool at the
    /// first statement, so extracting it next to a `web::Json` body holds no connection while
    /// the body arrives; committed after a 2xx/3xx response, rolled back otherwise). Take
    /// `TenantDb<ReadOnly>` for handlers that only read. Fails with a 500 only when the
    /// middleware is missing, has no pool, or the extractor is taken twice.
    ///
    /// ```no_run
    /// use actix_web::HttpResponse;
    /// use tenant_guard_actix::{ReadOnly, TenantDb, TenantGuardError};
    ///
    /// async fn count_projects(db: TenantDb<ReadOnly>) -> Result<HttpResponse, TenantGuardError> {
    ///     let row = db.query_one("SELECT count(*) FROM projects", &[]).await?;
    ///     Ok(HttpResponse::Ok().body(row.get::<_, i64>(0).to_string()))
    /// }
    /// ```
    TenantDb;
}

/// Reads from the middleware's context of `req`, or fails with the wiring error.
fn with_context<T>(
    req: &HttpRequest,
    read: impl FnOnce(&RequestContext) -> Result<T, GuardRejection>,
) -> Ready<Result<T, TenantGuardError>> {
    let extensions = req.extensions();
    let context = extensions
        .get::<RequestContext>()
        .ok_or(GuardRejection::MissingGuard);
    ready(context.and_then(read).map_err(TenantGuardError::from))
}

/// `FromRequest` for an extractor read from the context with `$read`.
macro_rules! from_context {
    ($ty:ty, $read:expr $(, $m:ident)?) => {
        impl$(<$m: Mode>)? FromRequest for $ty {
            type Error = TenantGuardError;
            type Future = Ready<Result<Self, TenantGuardError>>;

            fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
                with_context(req, $read)
            }
        }
    };
}

from_context!(Authenticated, |c| Ok(Self::from_context(c)));
from_context!(CurrentRequestId, |c| Ok(Self::from_context(c)));
from_context!(TenantDb<M>, Self::from_context, M);
