//! Extractors: the verified principal.

use std::future::{Ready, ready};
use std::ops::Deref;

use actix_web::dev::Payload;
use actix_web::{FromRequest, HttpMessage, HttpRequest};
use tenant_guard_core::Principal;

use crate::error::Error;

/// The verified [`Principal`] of the request, put there by [`crate::TenantGuard`].
///
/// On a route the middleware does not wrap, extraction fails with
/// [`Error::MissingMiddleware`]: a 500 and an error log line naming the fix, never a panic and
/// never an unauthenticated handler.
///
/// ```
/// use actix_web::{HttpResponse, web::Json};
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

impl Authenticated {
    /// The principal of `req`, as the extractor finds it.
    pub fn from_http_request(req: &HttpRequest) -> Result<Self, Error> {
        match req.extensions().get::<Principal>() {
            Some(principal) => Ok(Self(principal.clone())),
            None => {
                tracing::error!(
                    path = req.path(),
                    "Authenticated extractor used on a route without the TenantGuard middleware; \
                     wrap the route (or its scope) with TenantGuard"
                );
                Err(Error::MissingMiddleware)
            }
        }
    }

    /// The principal.
    pub fn into_inner(self) -> Principal {
        self.0
    }
}

impl Deref for Authenticated {
    type Target = Principal;

    fn deref(&self) -> &Principal {
        &self.0
    }
}

impl FromRequest for Authenticated {
    type Error = Error;
    type Future = Ready<Result<Self, Error>>;

    fn from_request(req: &HttpRequest, _payload: &mut Payload) -> Self::Future {
        ready(Self::from_http_request(req))
    }
}
