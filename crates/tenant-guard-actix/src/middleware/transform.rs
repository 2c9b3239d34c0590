//! [`TenantGuard`]: the middleware's configuration and its `Transform`.

use std::future::{Ready, ready};
use std::rc::Rc;

use actix_web::Error;
use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{Service, ServiceRequest, ServiceResponse, Transform};
use tenant_guard_core::Verifier;
use tenant_guard_http::GuardConfig;

use super::service::TenantGuardMiddleware;

/// Middleware that authenticates each request with the core [`Verifier`] and scopes its database
/// access: actix-web's face of the shared pipeline (its steps, in order, are described on
/// [`GuardConfig::admit`]).
///
/// Per request, before the inner service runs:
/// 1. a request id (the caller's sane `x-request-id`, else a fresh one) and a `tracing` span with
///    `request_id`, `org_id`, `user_id` and `role` (never the token) and the W3C trace context —
///    the id and span of an outer [`RequestTracing`](crate::RequestTracing) when there is one;
/// 2. authentication from the `Authorization` header alone, *before* anything touches the pool;
///    a failure is answered right here (401 with an RFC 6750 challenge, or 403, and a JSON body)
///    and the handler never runs;
/// 3. the route's role requirement ([`allow_roles`](Self::allow_roles)): 403 `role_not_allowed`;
///    then the rate limit ([`rate_limit`](Self::rate_limit)): 429;
/// 4. the [`Principal`](tenant_guard_core::Principal) and the
///    [`RequestId`](tenant_guard_core::RequestId) go into the request extensions, for the
///    [`Authenticated`](crate::Authenticated), [`CurrentRequestId`](crate::CurrentRequestId) and
///    [`TenantDb`](crate::TenantDb) extractors (or `web::ReqData<Principal>`).
///
/// After the handler answered, a [`TenantDb`](crate::TenantDb) it used is committed when the
/// response is a success (2xx or 3xx) and rolled back otherwise; a failed commit replaces the
/// response with the guard's error. Every response leaving it carries `x-request-id`.
///
/// Routes that need no token (health checks) are simply not wrapped by it.
///
/// ```
/// use actix_web::{App, HttpResponse, http::StatusCode, test, web};
/// use tenant_guard_actix::{Authenticated, TenantGuard};
/// use tenant_guard_core::{Environment, Verifier};
///
/// async fn me(Authenticated(principal): Authenticated) -> HttpResponse {
///     HttpResponse::Ok().body(principal.user_id().to_owned())
/// }
///
/// # actix_web::rt::System::new().block_on(async {
/// let verifier = Verifier::builder(Environment::Production)
///     .hmac_secret("a-long-random-secret-from-your-vault")
///     .build()
///     .unwrap();
/// let admin = web::scope("/admin").wrap(TenantGuard::new(verifier.clone()).allow_roles(["org_admin"]));
/// let app = test::init_service(
///     App::new().wrap(TenantGuard::new(verifier)).route("/me", web::get().to(me)),
/// )
/// .await;
/// let res = test::call_service(&app, test::TestRequest::get().uri("/me").to_request()).await;
/// assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
/// assert_eq!(res.headers().get("www-authenticate").unwrap(), "Bearer");
/// # });
/// ```
#[derive(Debug, Clone)]
pub struct TenantGuard {
    config: GuardConfig,
}

impl TenantGuard {
    /// A middleware that authenticates with `verifier` and accepts every role it accepts; see
    /// [`GuardConfig::new`].
    pub fn new(verifier: Verifier) -> Self {
        Self {
            config: GuardConfig::new(verifier),
        }
    }

    /// A middleware with `config` (the configuration every adapter shares).
    pub fn from_config(config: GuardConfig) -> Self {
        Self { config }
    }
}

tenant_guard_http::guard_builder!(TenantGuard);

impl<S, B> Transform<S, ServiceRequest> for TenantGuard
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = Error> + 'static,
    B: MessageBody + 'static,
{
    type Response = ServiceResponse<EitherBody<B>>;
    type Error = Error;
    type Transform = TenantGuardMiddleware<S>;
    type InitError = ();
    type Future = Ready<Result<Self::Transform, Self::InitError>>;

    fn new_transform(&self, service: S) -> Self::Future {
        ready(Ok(TenantGuardMiddleware::new(
            Rc::new(service),
            Rc::new(self.config.clone()),
        )))
    }
}
