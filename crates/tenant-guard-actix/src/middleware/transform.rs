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
/// access: actix-web's face of the shared pipeline. Before the inner service runs: the request id
/// and span (those of an outer [`RequestTracing`](crate::RequestTracing) when there is one),
/// then [`GuardConfig::admit`] (token, [`allow_roles`](Self::allow_roles),
/// [`rate_limit`](Self::rate_limit), all before the pool); a refusal (401 with an RFC 6750
/// challenge, 403, 429, JSON body) is answered right here. After the handler answered, a
/// [`TenantDb`](crate::TenantDb) it used is committed on 2xx/3xx and rolled back otherwise.
/// Every response leaving it carries `x-request-id`. Routes that need no token (health checks)
/// are simply not wrapped by it.
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
/// let _admin = web::scope("/admin").wrap(TenantGuard::new(verifier.clone()).allow_roles(["org_admin"]));
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
