//! The [`TenantGuard`] middleware: authenticates every request it wraps before anything else runs,
//! and finishes the request's scoped transaction after the handler answered.

use std::future::{Ready, ready};
use std::rc::Rc;
use std::sync::Arc;

use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{Service, ServiceRequest, ServiceResponse, Transform, forward_ready};
use actix_web::{Error, HttpMessage, HttpResponse};
use tenant_guard_core::{
    AuthError, ErrorResponse, Principal, RateLimitBackend, RateLimitCheck, RateLimitStatus,
    RequestId, ToErrorResponse, Verifier, trace,
};
use tenant_guard_postgres::{TenantPool, TenantTx};
use tracing::{Instrument, Span};

use crate::error::internal_error;
use crate::request_id::{self, LocalFuture};
use crate::response::render;
use crate::slot::{Closed, Slot};

/// What the middleware leaves in the request extensions for the extractors.
#[derive(Debug, Clone)]
pub(crate) struct GuardContext {
    pub(crate) principal: Principal,
    pub(crate) request_id: RequestId,
    pub(crate) pool: Option<TenantPool>,
    pub(crate) slot: Slot<TenantTx>,
}

/// Middleware that authenticates each request with the core [`Verifier`] and scopes its database
/// access.
///
/// Per request, before the inner service runs:
/// 1. a request id (the caller's sane `x-request-id`, else a fresh one) and a `tracing` span with
///    `request_id`, `org_id`, `user_id` and `role` (never the token) — the id and span of an
///    outer [`RequestTracing`](crate::RequestTracing) when there is one, so a request has one of
///    each;
/// 2. authentication from the `Authorization` header alone, *before* anything touches the pool;
///    a failure is answered right here with the core's response (401 with an RFC 6750 challenge,
///    or 403, and a JSON body) and the handler never runs;
/// 3. the route's role requirement ([`TenantGuard::allow_roles`]): 403 `role_not_allowed`;
/// 4. the [`Principal`] and the [`RequestId`] go into the request extensions, for the
///    [`Authenticated`](crate::Authenticated), [`CurrentRequestId`](crate::CurrentRequestId) and
///    [`TenantDb`](crate::TenantDb) extractors (or `web::ReqData<Principal>`).
///
/// After the handler answered, a [`TenantDb`](crate::TenantDb) it took is committed when the
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
    verifier: Verifier,
    pool: Option<TenantPool>,
    allowed_roles: Option<Arc<[Box<str>]>>,
    rate_limit: Option<Arc<dyn RateLimitBackend>>,
}

impl TenantGuard {
    /// A middleware that authenticates with `verifier` and accepts every role it accepts. Without
    /// a [`pool`](Self::pool), handlers can read the principal but not take a
    /// [`TenantDb`](crate::TenantDb).
    pub fn new(verifier: Verifier) -> Self {
        Self {
            verifier,
            pool: None,
            allowed_roles: None,
            rate_limit: None,
        }
    }

    /// The pool [`TenantDb`](crate::TenantDb) begins its scoped transactions on. A guard without
    /// one, nested inside a guard that has one (e.g. a route's [`allow_roles`](Self::allow_roles)
    /// inside a scope's guard), uses the outer guard's pool.
    #[must_use]
    pub fn pool(mut self, pool: TenantPool) -> Self {
        self.pool = Some(pool);
        self
    }

    /// Restricts the routes this middleware wraps to tokens whose role is one of `roles`; any
    /// other (verified) role is rejected with 403 `role_not_allowed`. Without this, every role
    /// the verifier accepts is allowed.
    ///
    /// A role must also be in the verifier's allowlist to get this far. A name that is not a
    /// valid role never matches, so a typo locks the routes rather than opening them; an empty
    /// list refuses every request.
    ///
    /// ```
    /// # use tenant_guard_core::{Environment, Verifier};
    /// # let verifier = Verifier::builder(Environment::Production).hmac_secret("a-long-random-secret-from-your-vault").build().unwrap();
    /// use actix_web::web;
    /// use tenant_guard_actix::TenantGuard;
    ///
    /// let admin = web::scope("/admin")
    ///     .wrap(TenantGuard::new(verifier).allow_roles(["org_admin"]));
    /// ```
    #[must_use]
    pub fn allow_roles<I, R>(mut self, roles: I) -> Self
    where
        I: IntoIterator<Item = R>,
        R: AsRef<str>,
    {
        self.allowed_roles = Some(roles.into_iter().map(|r| r.as_ref().into()).collect());
        self
    }

    /// Limits the requests of each org (or user, see
    /// [`RateLimiterBuilder::per_user`](tenant_guard_core::rate_limit::RateLimiterBuilder::per_user))
    /// on the routes this middleware wraps. Checked right after authentication and the role
    /// requirement, before anything touches the pool; over the limit: 429 `rate_limited` with
    /// `Retry-After`, the `RateLimit-*` headers and the usual JSON body. Every response of a
    /// request that passed carries the `RateLimit-*` headers too (the handler's own, if it set
    /// them, win).
    ///
    /// `limiter` is any [`RateLimitBackend`]: the in-memory
    /// [`RateLimiter`](tenant_guard_core::RateLimiter) (per process, decided synchronously, no
    /// extra cost) or `tenant_guard_postgres::PgRateLimiter` (one budget shared by every
    /// instance, one database round trip per request, awaited before the handler runs; when the
    /// database cannot answer, its `OnDatabaseError` policy decides, by default 503
    /// `rate_limit_unavailable`).
    ///
    /// Clones of one limiter share their counters; give each scope its own limiter (or, for
    /// `PgRateLimiter`, its own name) for its own budget.
    ///
    /// ```
    /// # use tenant_guard_core::{Environment, Verifier};
    /// # let verifier = Verifier::builder(Environment::Production).hmac_secret("a-long-random-secret-from-your-vault").build().unwrap();
    /// use actix_web::web;
    /// use tenant_guard_actix::TenantGuard;
    /// use tenant_guard_core::RateLimiter;
    ///
    /// let reports = web::scope("/reports")
    ///     .wrap(TenantGuard::new(verifier).rate_limit(RateLimiter::per_minute(600)?));
    /// # Ok::<(), tenant_guard_core::InvalidRateLimit>(())
    /// ```
    #[must_use]
    pub fn rate_limit(mut self, limiter: impl RateLimitBackend) -> Self {
        self.rate_limit = Some(Arc::new(limiter));
        self
    }

    /// Authentication, the role requirement, then the rate limit: the principal and the rate
    /// limit's verdict as far as it is known now, or the response that refuses the request
    /// (boxed: rejections are the cold path).
    fn admit(&self, headers: &http::HeaderMap) -> Result<(Principal, Limit), Box<ErrorResponse>> {
        let principal = self
            .authorize(headers)
            .map_err(|error| Box::new(error.to_error_response()))?;
        let limit = match self
            .rate_limit
            .as_ref()
            .map(|l| l.check_request(&principal))
        {
            None => Limit::Unlimited,
            Some(RateLimitCheck::Ready(Ok(status))) => Limit::Passed(status),
            Some(RateLimitCheck::Ready(Err(error))) => {
                return Err(Box::new(error.to_error_response()));
            }
            Some(RateLimitCheck::Pending(check)) => Limit::Pending(RateLimitCheck::Pending(check)),
        };
        Ok((principal, limit))
    }

    /// Authenticates from the request's headers and applies the role requirement.
    fn authorize(&self, headers: &http::HeaderMap) -> Result<Principal, AuthError> {
        let principal = self.verifier.authenticate(headers)?;
        if let Some(allowed) = &self.allowed_roles
            && !allowed.iter().any(|r| **r == *principal.role().as_str())
        {
            return Err(AuthError::RoleNotAllowed);
        }
        Ok(principal)
    }
}

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
        ready(Ok(TenantGuardMiddleware {
            service: Rc::new(service),
            guard: Rc::new(self.clone()),
        }))
    }
}

/// The rate limit's verdict when the request arrives.
enum Limit {
    /// No limiter on these routes.
    Unlimited,
    /// Within the limit (an in-memory limiter decides at once).
    Passed(RateLimitStatus),
    /// A shared limiter's check, awaited before the inner service is called.
    Pending(RateLimitCheck),
}

/// The inner service's call: made at once, or after a pending rate limit check.
enum Call<F, S> {
    Now(F),
    AfterCheck(RateLimitCheck, Rc<S>, ServiceRequest),
}

/// The service [`TenantGuard`] wraps around the inner one.
#[derive(Debug)]
pub struct TenantGuardMiddleware<S> {
    service: Rc<S>,
    guard: Rc<TenantGuard>,
}

impl<S, B> Service<ServiceRequest> for TenantGuardMiddleware<S>
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = Error> + 'static,
    B: MessageBody + 'static,
{
    type Response = ServiceResponse<EitherBody<B>>;
    type Error = Error;
    type Future = LocalFuture<Result<Self::Response, Self::Error>>;

    forward_ready!(service);

    fn call(&self, req: ServiceRequest) -> Self::Future {
        let headers = crate::headers::core_headers(req.headers());
        let id = request_id::assign(&req, &headers);
        let (span, timer) = request_id::span(&req, &id);
        let (principal, limit) = match span.in_scope(|| self.guard.admit(&headers)) {
            Ok(admitted) => admitted,
            Err(error) => {
                trace::record_rejection(&span, error.status().as_u16(), error.code());
                let response = render(&error);
                let mut response = req.into_response(response).map_into_right_body();
                request_id::tag_response(&mut response, &id);
                request_id::finish(timer, response.status());
                return Box::pin(ready(Ok(response)));
            }
        };
        // A guard nested in another one authenticates again but records the identity once.
        if req.extensions().get::<GuardContext>().is_none() {
            trace::record_principal(&span, &principal);
        }
        let slot = Slot::new();
        {
            let mut extensions = req.extensions_mut();
            // A guard nested in another (say, a route's `allow_roles` inside a scope's guard)
            // without a pool of its own uses the outer one's.
            let pool = self.guard.pool.clone().or_else(|| {
                extensions
                    .get::<GuardContext>()
                    .and_then(|outer| outer.pool.clone())
            });
            extensions.insert(principal.clone());
            extensions.insert(GuardContext {
                principal,
                request_id: id.clone(),
                pool,
                slot: slot.clone(),
            });
        }
        let mut limit_status = None;
        let call = match limit {
            Limit::Pending(check) => Call::AfterCheck(check, Rc::clone(&self.service), req),
            Limit::Passed(status) => {
                limit_status = Some(status);
                Call::Now(span.in_scope(|| self.service.call(req)))
            }
            Limit::Unlimited => Call::Now(span.in_scope(|| self.service.call(req))),
        };
        Box::pin(
            async move {
                let inner = match call {
                    Call::Now(inner) => inner,
                    Call::AfterCheck(check, service, req) => match check.outcome().await {
                        Ok(status) => {
                            limit_status = Some(status);
                            service.call(req)
                        }
                        Err(error) => {
                            let error = error.to_error_response();
                            trace::record_rejection(
                                &Span::current(),
                                error.status().as_u16(),
                                error.code(),
                            );
                            let mut response =
                                req.into_response(render(&error)).map_into_right_body();
                            request_id::tag_response(&mut response, &id);
                            request_id::finish(timer, response.status());
                            return Ok(response);
                        }
                    },
                };
                let result = inner.await;
                let outcome = slot.close();
                let response = match result {
                    Ok(response) => response,
                    Err(error) => {
                        if let Closed::Returned(tx) = outcome {
                            rollback(tx).await;
                        }
                        request_id::finish(timer, error.as_response_error().status_code());
                        return Err(request_id::tag_error(error, &id));
                    }
                };
                let mut response = match outcome {
                    Closed::Unused => response.map_into_left_body(),
                    Closed::Returned(tx) => {
                        let status = response.status();
                        if status.is_success() || status.is_redirection() {
                            match commit(tx).await {
                                None => response.map_into_left_body(),
                                Some(replacement) => {
                                    response.into_response(replacement).map_into_right_body()
                                }
                            }
                        } else {
                            rollback(tx).await;
                            response.map_into_left_body()
                        }
                    }
                    Closed::Outstanding => {
                        // The handler moved its TenantDb somewhere that outlives it: its work
                        // cannot be committed, so the handler's answer would be a lie.
                        tracing::error!(
                            "the scoped transaction outlived its handler (moved into a task?); \
                             it is rolled back and the request fails"
                        );
                        response
                            .into_response(render(&internal_error()))
                            .map_into_right_body()
                    }
                };
                request_id::tag_response(&mut response, &id);
                if let Some(status) = limit_status {
                    stamp_rate_limit(&mut response, &status);
                }
                request_id::finish(timer, response.status());
                Ok(response)
            }
            .instrument(span),
        )
    }
}

/// Adds the `RateLimit-*` headers of a request that passed the limiter, unless the handler set
/// its own.
fn stamp_rate_limit<B>(response: &mut ServiceResponse<B>, status: &RateLimitStatus) {
    let headers = response.headers_mut();
    for (name, value) in status.headers() {
        // actix-web 4 speaks `http` 0.2: copy by wire form (always representable).
        let (Ok(name), Ok(value)) = (
            actix_web::http::header::HeaderName::from_bytes(name.as_str().as_bytes()),
            actix_web::http::header::HeaderValue::from_bytes(value.as_bytes()),
        ) else {
            continue;
        };
        if !headers.contains_key(&name) {
            headers.insert(name, value);
        }
    }
}

/// Commits; a failure yields the response that replaces the handler's.
async fn commit(tx: TenantTx) -> Option<HttpResponse> {
    match tx.commit().await {
        Ok(()) => None,
        Err(error) => {
            tracing::warn!(%error, "commit failed; the handler's response is replaced");
            Some(render(&error.to_error_response()))
        }
    }
}

/// Rolls back; a failure only logs (the guard discards the connection).
async fn rollback(tx: TenantTx) {
    if let Err(error) = tx.rollback().await {
        tracing::warn!(%error, "rollback failed; the connection is discarded by the guard");
    }
}

#[cfg(test)]
mod tests {
    use actix_web::body::to_bytes;
    use actix_web::http::StatusCode;
    use actix_web::{App, HttpResponse, test, web};
    use serde_json::{Value, json};
    use tenant_guard_core::{Environment, RequestId};

    use super::*;
    use crate::Authenticated;
    use tenant_guard_core::RateLimiter;

    const SECRET: &str = "unit-test-secret-unit-test-secret";
    const ORG: &str = "11111111-1111-4111-8111-111111111111";

    fn verifier() -> Verifier {
        Verifier::builder(Environment::Test)
            .hmac_secret(SECRET)
            .allowed_roles(["authenticated", "service_role"])
            .build()
            .unwrap()
    }

    fn now() -> u64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs()
    }

    fn token_with(claims: &Value, secret: &str) -> String {
        jsonwebtoken::encode(
            &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
            claims,
            &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
        )
        .unwrap()
    }

    fn claims(role: &str) -> Value {
        json!({
            "sub": "user-1", "role": role, "aud": "authenticated", "org_id": ORG,
            "iat": now(), "exp": now() + 600,
        })
    }

    fn token(role: &str) -> String {
        token_with(&claims(role), SECRET)
    }

    async fn me(Authenticated(p): Authenticated, id: web::ReqData<RequestId>) -> HttpResponse {
        HttpResponse::Ok().json(json!({
            "user_id": p.user_id(), "org_id": p.org_id(), "role": p.role().as_str(),
            "request_id": id.as_str(),
        }))
    }

    async fn call(
        guard: TenantGuard,
        req: test::TestRequest,
    ) -> (StatusCode, Vec<(String, String)>, Value) {
        let app = test::init_service(
            App::new()
                .service(web::resource("/me").wrap(guard).get(me))
                .route("/open", web::get().to(me)),
        )
        .await;
        let res = test::call_service(&app, req.to_request()).await;
        let status = res.status();
        let headers = res
            .headers()
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_str().unwrap().to_owned()))
            .collect();
        let body = to_bytes(res.into_body()).await.unwrap();
        let body = serde_json::from_slice(&body).unwrap_or(Value::Null);
        (status, headers, body)
    }

    fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
        headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    fn get_me() -> test::TestRequest {
        test::TestRequest::get().uri("/me")
    }

    #[actix_web::test]
    async fn without_a_token_401_with_a_bare_challenge_and_json() {
        let (status, headers, body) = call(TenantGuard::new(verifier()), get_me()).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert_eq!(header(&headers, "www-authenticate"), Some("Bearer"));
        assert_eq!(header(&headers, "content-type"), Some("application/json"));
        assert_eq!(
            body,
            json!({"error": "missing_token", "message": "a bearer token is required"})
        );
        assert_eq!(header(&headers, "x-request-id").map(str::len), Some(36));
    }

    #[actix_web::test]
    async fn bad_tokens_are_401_invalid_token_and_never_echo_the_token() {
        let expired = token_with(
            &json!({"sub": "u", "role": "authenticated", "aud": "authenticated",
            "org_id": ORG, "exp": now() - 3600}),
            SECRET,
        );
        let forged = token_with(&claims("authenticated"), "another-secret-another-secret");
        for (bad, code) in [
            (expired, "token_expired"),
            (forged, "invalid_signature"),
            ("not.a.jwt".to_owned(), "malformed_token"),
        ] {
            let req = get_me().insert_header(("authorization", format!("Bearer {bad}")));
            let (status, headers, body) = call(TenantGuard::new(verifier()), req).await;
            assert_eq!(status, StatusCode::UNAUTHORIZED, "{code}");
            assert_eq!(
                header(&headers, "www-authenticate"),
                Some("Bearer error=\"invalid_token\"")
            );
            assert_eq!(body["error"], code);
            assert!(!body.to_string().contains(&bad));
        }
    }

    #[actix_web::test]
    async fn a_malformed_header_is_401_invalid_request() {
        for value in ["Basic dXNlcjpwYXNz", "Bearer", "token-without-scheme"] {
            let req = get_me().insert_header(("authorization", value));
            let (status, headers, body) = call(TenantGuard::new(verifier()), req).await;
            assert_eq!(status, StatusCode::UNAUTHORIZED, "{value}");
            assert!(
                header(&headers, "www-authenticate")
                    .unwrap()
                    .contains("invalid_request")
            );
            assert_eq!(body["error"], "malformed_authorization_header");
        }
        let twice = get_me()
            .append_header((
                "authorization",
                format!("Bearer {}", token("authenticated")),
            ))
            .append_header((
                "authorization",
                format!("Bearer {}", token("authenticated")),
            ));
        let (status, _, body) = call(TenantGuard::new(verifier()), twice).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert_eq!(body["error"], "malformed_authorization_header");
    }

    #[actix_web::test]
    async fn a_valid_token_reaches_the_handler_with_its_principal() {
        let req = get_me()
            .insert_header((
                "Authorization",
                format!("bearer {}", token("authenticated")),
            ))
            .insert_header(("x-user-id", "someone-else"));
        let (status, headers, body) = call(TenantGuard::new(verifier()), req).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body["user_id"], "user-1");
        assert_eq!(body["org_id"], ORG);
        assert_eq!(body["role"], "authenticated");
        assert_eq!(
            header(&headers, "x-request-id"),
            body["request_id"].as_str()
        );
    }

    #[actix_web::test]
    async fn a_role_outside_the_route_requirement_is_403() {
        let admin_only = || TenantGuard::new(verifier()).allow_roles(["service_role"]);
        let req = get_me().insert_header((
            "authorization",
            format!("Bearer {}", token("authenticated")),
        ));
        let (status, headers, body) = call(admin_only(), req).await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        assert_eq!(body["error"], "role_not_allowed");
        assert!(
            header(&headers, "www-authenticate")
                .unwrap()
                .contains("insufficient_scope")
        );

        let req =
            get_me().insert_header(("authorization", format!("Bearer {}", token("service_role"))));
        let (status, _, body) = call(admin_only(), req).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body["role"], "service_role");

        let req =
            get_me().insert_header(("authorization", format!("Bearer {}", token("service_role"))));
        let (status, _, _) = call(TenantGuard::new(verifier()).allow_roles([""; 0]), req).await;
        assert_eq!(
            status,
            StatusCode::FORBIDDEN,
            "an empty list refuses everyone"
        );
    }

    #[actix_web::test]
    async fn a_role_the_verifier_does_not_allow_is_403_even_if_the_route_names_it() {
        let req =
            get_me().insert_header(("authorization", format!("Bearer {}", token("postgres"))));
        let (status, _, body) =
            call(TenantGuard::new(verifier()).allow_roles(["postgres"]), req).await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        assert_eq!(body["error"], "role_not_allowed");
    }

    /// The headers of a 429 without `x-request-id` and the framework's own, sorted (the axum
    /// adapter's test asserts the same list, so both adapters answer identically).
    const RATE_LIMITED_HEADERS: [&str; 5] = [
        "content-type",
        "ratelimit-limit",
        "ratelimit-remaining",
        "ratelimit-reset",
        "retry-after",
    ];

    #[actix_web::test]
    async fn over_the_rate_limit_is_429_with_retry_after_and_other_orgs_pass() {
        let guard = TenantGuard::new(verifier()).rate_limit(RateLimiter::per_minute(2).unwrap());
        let bearer = format!("Bearer {}", token("authenticated"));
        // An unauthenticated request is refused before the limiter and does not count.
        let (status, _, _) = call(guard.clone(), get_me()).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        // Allowed responses carry the RateLimit-* headers too (the IETF draft's every response).
        for remaining in ["1", "0"] {
            let req = get_me().insert_header(("authorization", bearer.as_str()));
            let (status, headers, body) = call(guard.clone(), req).await;
            assert_eq!(status, StatusCode::OK, "{body}");
            assert_eq!(header(&headers, "ratelimit-limit"), Some("2"));
            assert_eq!(header(&headers, "ratelimit-remaining"), Some(remaining));
            assert!(header(&headers, "ratelimit-reset").is_some());
            assert!(header(&headers, "retry-after").is_none());
        }
        let req = get_me()
            .insert_header(("authorization", bearer.as_str()))
            .insert_header(("x-request-id", "req-429"));
        let (status, headers, body) = call(guard.clone(), req).await;
        assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(body["error"], "rate_limited");
        assert!(body["message"].is_string());
        let retry: u64 = header(&headers, "retry-after").unwrap().parse().unwrap();
        assert!((1..=30).contains(&retry), "{retry}");
        assert_eq!(header(&headers, "ratelimit-limit"), Some("2"));
        assert_eq!(header(&headers, "ratelimit-remaining"), Some("0"));
        let reset: u64 = header(&headers, "ratelimit-reset")
            .unwrap()
            .parse()
            .unwrap();
        assert!(reset >= retry, "{reset} {retry}");
        assert_eq!(header(&headers, "x-request-id"), Some("req-429"));
        let mut names: Vec<&str> = headers
            .iter()
            .map(|(n, _)| n.as_str())
            .filter(|n| !["x-request-id", "content-length", "date"].contains(n))
            .collect();
        names.sort_unstable();
        assert_eq!(names, RATE_LIMITED_HEADERS);

        let mut other = claims("authenticated");
        other["org_id"] = "22222222-2222-4222-8222-222222222222".into();
        let req = get_me().insert_header((
            "authorization",
            format!("Bearer {}", token_with(&other, SECRET)),
        ));
        let (status, _, body) = call(guard.clone(), req).await;
        assert_eq!(status, StatusCode::OK, "another org is unaffected: {body}");
        // A guard with its own limiter (another scope) has its own budget.
        let fresh = TenantGuard::new(verifier()).rate_limit(RateLimiter::per_minute(2).unwrap());
        let req = get_me().insert_header(("authorization", bearer.as_str()));
        let (status, _, _) = call(fresh, req).await;
        assert_eq!(status, StatusCode::OK);
    }

    #[actix_web::test]
    async fn routes_without_a_limiter_get_no_ratelimit_headers_and_handlers_keep_their_own() {
        let bearer = format!("Bearer {}", token("authenticated"));
        let req = get_me().insert_header(("authorization", bearer.as_str()));
        let (status, headers, _) = call(TenantGuard::new(verifier()), req).await;
        assert_eq!(status, StatusCode::OK);
        assert!(header(&headers, "ratelimit-limit").is_none());

        // A handler that sets its own RateLimit-* header (a finer, inner limit) keeps it.
        let guard = TenantGuard::new(verifier()).rate_limit(RateLimiter::per_minute(100).unwrap());
        let app = test::init_service(App::new().service(web::resource("/own").wrap(guard).get(
            || async {
                HttpResponse::Ok()
                    .insert_header(("ratelimit-remaining", "7"))
                    .finish()
            },
        )))
        .await;
        let req = test::TestRequest::get()
            .uri("/own")
            .insert_header(("authorization", bearer.as_str()))
            .to_request();
        let res = test::call_service(&app, req).await;
        assert_eq!(res.status(), StatusCode::OK);
        assert_eq!(res.headers().get("ratelimit-remaining").unwrap(), "7");
        assert_eq!(res.headers().get("ratelimit-limit").unwrap(), "100");
    }

    #[actix_web::test]
    async fn a_sane_request_id_is_echoed_and_an_insane_one_replaced() {
        let req = get_me().insert_header(("x-request-id", "req-42"));
        let (_, headers, _) = call(TenantGuard::new(verifier()), req).await;
        assert_eq!(header(&headers, "x-request-id"), Some("req-42"));

        let long = "a".repeat(129);
        let req = get_me()
            .insert_header(("x-request-id", long.as_str()))
            .insert_header((
                "authorization",
                format!("Bearer {}", token("authenticated")),
            ));
        let (status, headers, body) = call(TenantGuard::new(verifier()), req).await;
        assert_eq!(status, StatusCode::OK);
        let id = header(&headers, "x-request-id").unwrap();
        assert_ne!(id, long);
        assert_eq!(id.len(), 36);
        assert_eq!(
            body["request_id"], id,
            "the handler sees the id the response carries"
        );
    }

    #[actix_web::test]
    async fn the_extractor_without_the_middleware_is_a_json_500() {
        let req = test::TestRequest::get().uri("/open").insert_header((
            "authorization",
            format!("Bearer {}", token("authenticated")),
        ));
        let (status, headers, body) = call(TenantGuard::new(verifier()), req).await;
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(header(&headers, "content-type"), Some("application/json"));
        assert_eq!(body["error"], "internal_error");
    }

    #[actix_web::test]
    async fn an_opted_in_cookie_authenticates_only_without_a_header() {
        let verifier = Verifier::builder(Environment::Test)
            .hmac_secret(SECRET)
            .cookie_token("access_token")
            .build()
            .unwrap();
        let cookie = format!("theme=dark; access_token={}", token("authenticated"));
        let req = get_me().insert_header(("cookie", cookie.as_str()));
        let (status, _, body) = call(TenantGuard::new(verifier.clone()), req).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body["user_id"], "user-1");

        let req = get_me()
            .insert_header(("cookie", cookie.as_str()))
            .insert_header(("authorization", "Bearer not-a-jwt"));
        let (status, _, _) = call(TenantGuard::new(verifier), req).await;
        assert_eq!(
            status,
            StatusCode::UNAUTHORIZED,
            "the header wins over the cookie"
        );
    }

    #[actix_web::test]
    async fn request_tracing_outside_shares_its_id_and_tags_public_routes() {
        let app = test::init_service(
            App::new()
                .wrap(crate::RequestTracing::new())
                .route("/healthz", web::get().to(HttpResponse::Ok))
                .service(
                    web::resource("/me")
                        .wrap(TenantGuard::new(verifier()))
                        .get(me),
                ),
        )
        .await;
        let res =
            test::call_service(&app, test::TestRequest::get().uri("/healthz").to_request()).await;
        assert_eq!(res.status(), StatusCode::OK);
        assert_eq!(res.headers().get("x-request-id").unwrap().len(), 36);

        let res =
            test::call_service(&app, test::TestRequest::get().uri("/nowhere").to_request()).await;
        assert_eq!(res.status(), StatusCode::NOT_FOUND);
        assert!(res.headers().contains_key("x-request-id"));

        let req = get_me()
            .insert_header(("x-request-id", "bad id"))
            .insert_header((
                "authorization",
                format!("Bearer {}", token("authenticated")),
            ));
        let res = test::call_service(&app, req.to_request()).await;
        let header = res
            .headers()
            .get("x-request-id")
            .unwrap()
            .to_str()
            .unwrap()
            .to_owned();
        let body: Value = test::read_body_json(res).await;
        assert_eq!(
            body["request_id"],
            header.as_str(),
            "one generated id for the request"
        );
    }

    #[actix_web::test]
    async fn an_inner_error_keeps_its_response_and_gets_the_request_id() {
        let failing = |req: actix_web::dev::ServiceRequest| async move {
            drop(req);
            Err::<ServiceResponse, _>(actix_web::error::ErrorImATeapot("inner"))
        };
        let service = Transform::new_transform(
            &TenantGuard::new(verifier()),
            actix_web::dev::fn_service(failing),
        )
        .await
        .unwrap();
        let req = get_me()
            .insert_header((
                "authorization",
                format!("Bearer {}", token("authenticated")),
            ))
            .insert_header(("x-request-id", "rid-7"))
            .to_srv_request();
        let error = match service.call(req).await {
            Err(error) => error,
            Ok(_) => panic!("the inner error is passed on"),
        };
        let response = error.error_response();
        assert_eq!(response.status(), StatusCode::IM_A_TEAPOT);
        assert_eq!(response.headers().get("x-request-id").unwrap(), "rid-7");
    }
}
