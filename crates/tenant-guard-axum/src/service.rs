//! [`TenantGuard`]: the middleware service built by [`TenantGuardLayer`].

use std::task::{Context, Poll};

use axum_core::response::Response;
use http::Request;
use tenant_guard_core::{AuthError, Principal, RateLimitCheck, RequestId, ToErrorResponse, trace};

use crate::trace::RequestTrace;
use tower_service::Service;

use crate::future::{Admitted, ResponseFuture};
use crate::layer::TenantGuardLayer;
use crate::slot::Slot;

/// The per-request state the extractors find in the request extensions.
#[derive(Debug, Clone)]
pub(crate) struct GuardContext {
    pub(crate) principal: Principal,
    pub(crate) request_id: RequestId,
    pub(crate) pool: Option<tenant_guard_postgres::TenantPool>,
    pub(crate) slot: Slot<tenant_guard_postgres::TenantTx>,
}

/// Authenticates requests before passing them to `S`; see [`TenantGuardLayer`].
#[derive(Debug, Clone)]
pub struct TenantGuard<S> {
    inner: S,
    config: TenantGuardLayer,
}

impl<S> TenantGuard<S> {
    /// Wraps `inner` with the configuration of `layer`.
    pub fn new(inner: S, layer: TenantGuardLayer) -> Self {
        Self {
            inner,
            config: layer,
        }
    }

    /// The wrapped service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// Verifies the token, then checks the route's role restriction.
    fn authenticate(&self, headers: &http::HeaderMap) -> Result<Principal, AuthError> {
        let principal = self.config.verifier.authenticate(headers)?;
        if let Some(allowed) = &self.config.allowed_roles {
            let role = principal.role().as_str();
            if !allowed.iter().any(|r| &**r == role) {
                return Err(AuthError::RoleNotAllowed);
            }
        }
        Ok(principal)
    }
}

impl<S, ReqBody> Service<Request<ReqBody>> for TenantGuard<S>
where
    // Send + 'static: a shared rate limit check is awaited before the inner service is called,
    // so the request and the service wait in the (boxed) response future.
    S: Service<Request<ReqBody>, Response = Response> + Clone + Send + 'static,
    ReqBody: Send + 'static,
{
    type Response = Response;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<ReqBody>) -> Self::Future {
        let (
            RequestTrace {
                id: request_id,
                span,
                ..
            },
            timer,
        ) = RequestTrace::of(&mut request);
        let entered = span.enter();
        // Authentication comes first: a request without a valid token never touches the pool.
        let principal = match self.authenticate(request.headers()) {
            Ok(principal) => principal,
            Err(error) => {
                trace::record_rejection(&span, error.status().as_u16(), error.code());
                drop(entered);
                return ResponseFuture::rejected(&error, span, request_id, timer);
            }
        };
        // A guard nested in another one authenticates again but records the identity once.
        if request.extensions().get::<GuardContext>().is_none() {
            trace::record_principal(&span, &principal);
        }
        // The rate limit comes next, still before the pool: decided here when it is in memory,
        // awaited in the response future (before the inner service runs) when it is shared.
        let mut limit_status = None;
        let pending = match self
            .config
            .rate_limit
            .as_ref()
            .map(|l| l.check_request(&principal))
        {
            None => None,
            Some(RateLimitCheck::Ready(Ok(status))) => {
                limit_status = Some(status);
                None
            }
            Some(RateLimitCheck::Ready(Err(error))) => {
                let response = error.to_error_response();
                trace::record_rejection(&span, response.status().as_u16(), response.code());
                drop(entered);
                return ResponseFuture::rejected(&response, span, request_id, timer);
            }
            Some(RateLimitCheck::Pending(check)) => Some(check),
        };

        let slot = Slot::new();
        let extensions = request.extensions_mut();
        extensions.insert(principal.clone());
        extensions.insert(request_id.clone());
        extensions.insert(GuardContext {
            principal,
            request_id: request_id.clone(),
            pool: self.config.pool.clone(),
            slot: slot.clone(),
        });

        // tower's readiness contract: call the instance that was polled ready, keep a fresh clone.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        if let Some(check) = pending {
            drop(entered);
            let in_span = span.clone();
            let admit = Box::pin(async move {
                match check.await {
                    Ok(status) => {
                        Admitted::Called(in_span.in_scope(|| inner.call(request)), status)
                    }
                    Err(error) => {
                        let response = error.to_error_response();
                        trace::record_rejection(
                            &in_span,
                            response.status().as_u16(),
                            response.code(),
                        );
                        Admitted::Rejected(crate::response::render(&response))
                    }
                }
            });
            return ResponseFuture::limiting(admit, slot, span, request_id, timer);
        }
        let future = inner.call(request);
        drop(entered);
        ResponseFuture::called(future, Some(slot), span, request_id, timer)
            .with_rate_limit(limit_status)
    }
}

#[cfg(test)]
mod tests {
    use std::time::{SystemTime, UNIX_EPOCH};

    use axum::Router;
    use axum::body::Body;
    use axum::routing::get;
    use http::{HeaderValue, StatusCode, header};
    use tenant_guard_core::{Environment, Verifier};
    use tower::ServiceExt;

    use crate::{Authenticated, CurrentRequestId, TenantGuardLayer};

    const SECRET: &str = "unit-test-secret-unit-test-secret";
    const ORG: &str = "3f2b8c1e-9d4a-4e6b-8f7c-1a2b3c4d5e6f";

    fn verifier() -> Verifier {
        Verifier::builder(Environment::Test)
            .hmac_secret(SECRET)
            .allowed_roles(["authenticated", "org_admin"])
            .build()
            .unwrap()
    }

    fn token_with(claims: serde_json::Value, secret: &str) -> String {
        let header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
        let key = jsonwebtoken::EncodingKey::from_secret(secret.as_bytes());
        jsonwebtoken::encode(&header, &claims, &key).unwrap()
    }

    fn token(role: &str) -> String {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs();
        token_with(
            serde_json::json!({
                "sub": "user-1", "role": role, "aud": "authenticated", "org_id": ORG,
                "iat": now, "exp": now + 600,
            }),
            SECRET,
        )
    }

    async fn me(Authenticated(p): Authenticated, CurrentRequestId(id): CurrentRequestId) -> String {
        format!("{} {} {} {}", p.user_id(), p.org_id(), p.role(), id)
    }

    fn app(layer: TenantGuardLayer) -> Router {
        Router::new()
            .route("/me", get(me))
            .route_layer(layer)
            .route("/healthz", get(|| async { "ok" }))
    }

    async fn send(app: Router, headers: &[(&str, &str)]) -> (StatusCode, http::HeaderMap, String) {
        send_to(app, "/me", headers).await
    }

    async fn send_to(
        app: Router,
        path: &str,
        headers: &[(&str, &str)],
    ) -> (StatusCode, http::HeaderMap, String) {
        let mut request = http::Request::builder().uri(path);
        for (name, value) in headers {
            request = request.header(*name, HeaderValue::from_bytes(value.as_bytes()).unwrap());
        }
        let response = app
            .oneshot(request.body(Body::empty()).unwrap())
            .await
            .unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        let body = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .unwrap();
        (status, headers, String::from_utf8(body.to_vec()).unwrap())
    }

    fn error_code(body: &str) -> String {
        let v: serde_json::Value = serde_json::from_str(body).expect("JSON error body");
        assert!(v["message"].is_string(), "{body}");
        v["error"].as_str().unwrap().to_owned()
    }

    #[tokio::test]
    async fn missing_token_is_401_with_a_bare_challenge() {
        let (status, headers, body) = send(app(TenantGuardLayer::new(verifier())), &[]).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert_eq!(headers[header::WWW_AUTHENTICATE], "Bearer");
        assert_eq!(headers[header::CONTENT_TYPE], "application/json");
        assert_eq!(error_code(&body), "missing_token");
        assert!(headers.contains_key("x-request-id"));
    }

    #[tokio::test]
    async fn malformed_headers_are_401_invalid_request() {
        let good = token("authenticated");
        for value in [
            "Basic dXNlcjpwYXNz".to_owned(),
            "Bearer".to_owned(),
            format!("Token {good}"),
        ] {
            let (status, headers, body) = send(
                app(TenantGuardLayer::new(verifier())),
                &[("authorization", &value)],
            )
            .await;
            assert_eq!(status, StatusCode::UNAUTHORIZED, "{value}");
            let www = headers[header::WWW_AUTHENTICATE].to_str().unwrap();
            assert!(www.starts_with("Bearer"), "{www}");
            assert_eq!(error_code(&body), "malformed_authorization_header");
            assert!(!body.contains(&good));
        }
    }

    #[tokio::test]
    async fn invalid_tokens_are_401_invalid_token_and_never_echoed() {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let claims = serde_json::json!({
            "sub": "user-1", "role": "authenticated", "aud": "authenticated", "org_id": ORG,
            "iat": now, "exp": now + 600,
        });
        let mut expired = claims.clone();
        expired["exp"] = (now - 3600).into();
        let mut wrong_aud = claims.clone();
        wrong_aud["aud"] = "someone-else".into();
        let cases = [
            (
                token_with(claims.clone(), "another-secret-another-secret"),
                "invalid_signature",
            ),
            (token_with(expired, SECRET), "token_expired"),
            (token_with(wrong_aud, SECRET), "invalid_audience"),
            ("not.a.jwt".to_owned(), "malformed_token"),
        ];
        for (bad, code) in cases {
            let (status, headers, body) = send(
                app(TenantGuardLayer::new(verifier())),
                &[("authorization", &format!("Bearer {bad}"))],
            )
            .await;
            assert_eq!(status, StatusCode::UNAUTHORIZED, "{code}");
            assert!(
                headers[header::WWW_AUTHENTICATE]
                    .to_str()
                    .unwrap()
                    .contains("error=\"invalid_token\""),
                "{code}"
            );
            assert_eq!(error_code(&body), code);
            assert!(!body.contains(&bad), "the token must never be echoed");
            for value in headers.values() {
                assert!(
                    !value
                        .as_bytes()
                        .windows(bad.len())
                        .any(|w| w == bad.as_bytes())
                );
            }
        }
    }

    #[tokio::test]
    async fn a_valid_token_reaches_the_handler_with_its_principal() {
        let bearer = format!("Bearer {}", token("authenticated"));
        let (status, headers, body) = send(
            app(TenantGuardLayer::new(verifier())),
            &[("authorization", &bearer), ("x-request-id", "req-42")],
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body, format!("user-1 {ORG} authenticated req-42"));
        assert_eq!(headers["x-request-id"], "req-42");
    }

    #[tokio::test]
    async fn a_role_outside_the_route_allowlist_is_403() {
        let layer = TenantGuardLayer::new(verifier()).allow_roles(["org_admin"]);
        let bearer = format!("Bearer {}", token("authenticated"));
        let (status, headers, body) = send(app(layer.clone()), &[("authorization", &bearer)]).await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        assert_eq!(error_code(&body), "role_not_allowed");
        assert!(
            headers[header::WWW_AUTHENTICATE]
                .to_str()
                .unwrap()
                .contains("insufficient_scope")
        );

        let admin = format!("Bearer {}", token("org_admin"));
        let (status, _, body) = send(app(layer), &[("authorization", &admin)]).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert!(
            body.starts_with(&format!("user-1 {ORG} org_admin ")),
            "{body}"
        );
    }

    #[tokio::test]
    async fn an_invalid_role_name_in_the_allowlist_locks_the_route() {
        let layer = TenantGuardLayer::new(verifier()).allow_roles(["Not A Role", ""]);
        let bearer = format!("Bearer {}", token("authenticated"));
        let (status, _, _) = send(app(layer), &[("authorization", &bearer)]).await;
        assert_eq!(status, StatusCode::FORBIDDEN);
    }

    #[tokio::test]
    async fn a_role_the_verifier_refuses_is_403() {
        let bearer = format!("Bearer {}", token("service_role"));
        let (status, _, body) = send(
            app(TenantGuardLayer::new(verifier())),
            &[("authorization", &bearer)],
        )
        .await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        assert_eq!(error_code(&body), "role_not_allowed");
    }

    #[tokio::test]
    async fn request_ids_are_echoed_when_sane_and_generated_otherwise() {
        // Echoed on rejections too.
        let (_, headers, _) = send(
            app(TenantGuardLayer::new(verifier())),
            &[("x-request-id", "abc-123")],
        )
        .await;
        assert_eq!(headers["x-request-id"], "abc-123");

        let long = "a".repeat(129);
        for insane in ["has space", long.as_str(), ""] {
            let (_, headers, _) = send(
                app(TenantGuardLayer::new(verifier())),
                &[("x-request-id", insane)],
            )
            .await;
            let got = headers["x-request-id"].to_str().unwrap();
            assert_ne!(got, insane);
            assert_eq!(got.len(), 36, "a generated UUID");
        }
        let (_, first, _) = send(app(TenantGuardLayer::new(verifier())), &[]).await;
        let (_, second, _) = send(app(TenantGuardLayer::new(verifier())), &[]).await;
        assert_ne!(first["x-request-id"], second["x-request-id"]);
    }

    #[tokio::test]
    async fn routes_outside_the_layer_need_no_token() {
        let (status, _, body) =
            send_to(app(TenantGuardLayer::new(verifier())), "/healthz", &[]).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body, "ok");
    }

    #[tokio::test]
    async fn an_extractor_without_the_layer_is_a_500_not_a_panic() {
        let app = Router::new().route("/me", get(me));
        let (status, _, body) = send(app, &[]).await;
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(error_code(&body), "internal_error");
    }

    fn token_for_org(org: &str) -> String {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs();
        token_with(
            serde_json::json!({
                "sub": "user-1", "role": "authenticated", "aud": "authenticated", "org_id": org,
                "iat": now, "exp": now + 600,
            }),
            SECRET,
        )
    }

    /// The headers of a 429 without `x-request-id` and the framework's own, sorted (the actix
    /// adapter's test asserts the same list, so both adapters answer identically).
    const RATE_LIMITED_HEADERS: [&str; 5] = [
        "content-type",
        "ratelimit-limit",
        "ratelimit-remaining",
        "ratelimit-reset",
        "retry-after",
    ];

    #[tokio::test]
    async fn over_the_rate_limit_is_429_with_retry_after_and_other_orgs_pass() {
        let layer = TenantGuardLayer::new(verifier())
            .rate_limit(tenant_guard_core::RateLimiter::per_minute(2).unwrap());
        let bearer = format!("Bearer {}", token("authenticated"));
        // An unauthenticated request is refused before the limiter and does not count.
        let (status, _, _) = send(app(layer.clone()), &[]).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        // Allowed responses carry the RateLimit-* headers too (the IETF draft's every response).
        for remaining in ["1", "0"] {
            let (status, headers, body) =
                send(app(layer.clone()), &[("authorization", &bearer)]).await;
            assert_eq!(status, StatusCode::OK, "{body}");
            assert_eq!(headers["ratelimit-limit"], "2");
            assert_eq!(headers["ratelimit-remaining"], remaining);
            assert!(headers.contains_key("ratelimit-reset"));
            assert!(!headers.contains_key(header::RETRY_AFTER));
        }
        let (status, headers, body) = send(
            app(layer.clone()),
            &[("authorization", &bearer), ("x-request-id", "req-429")],
        )
        .await;
        assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(error_code(&body), "rate_limited");
        let retry: u64 = headers[header::RETRY_AFTER]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!((1..=30).contains(&retry), "{retry}");
        assert_eq!(headers["ratelimit-limit"], "2");
        assert_eq!(headers["ratelimit-remaining"], "0");
        let reset: u64 = headers["ratelimit-reset"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!(reset >= retry, "{reset} {retry}");
        assert_eq!(headers["x-request-id"], "req-429");
        let mut names: Vec<&str> = headers
            .keys()
            .map(|n| n.as_str())
            .filter(|n| !["x-request-id", "content-length", "date"].contains(n))
            .collect();
        names.sort_unstable();
        assert_eq!(names, RATE_LIMITED_HEADERS);

        let other = format!(
            "Bearer {}",
            token_for_org("9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d")
        );
        let (status, _, body) = send(app(layer.clone()), &[("authorization", &other)]).await;
        assert_eq!(status, StatusCode::OK, "another org is unaffected: {body}");
        // A layer with its own limiter (another route group) has its own budget.
        let fresh = TenantGuardLayer::new(verifier())
            .rate_limit(tenant_guard_core::RateLimiter::per_minute(2).unwrap());
        let (status, _, _) = send(app(fresh), &[("authorization", &bearer)]).await;
        assert_eq!(status, StatusCode::OK);
    }

    #[tokio::test]
    async fn routes_without_a_limiter_get_no_ratelimit_headers_and_handlers_keep_their_own() {
        let bearer = format!("Bearer {}", token("authenticated"));
        let (status, headers, _) = send(
            app(TenantGuardLayer::new(verifier())),
            &[("authorization", &bearer)],
        )
        .await;
        assert_eq!(status, StatusCode::OK);
        assert!(!headers.contains_key("ratelimit-limit"));

        // A handler that sets its own RateLimit-* header (a finer, inner limit) keeps it.
        let own = Router::new()
            .route(
                "/me",
                get(|| async { ([("ratelimit-remaining", "7")], "own") }),
            )
            .route_layer(
                TenantGuardLayer::new(verifier())
                    .rate_limit(tenant_guard_core::RateLimiter::per_minute(100).unwrap()),
            );
        let (status, headers, _) = send(own, &[("authorization", &bearer)]).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(headers["ratelimit-remaining"], "7");
        assert_eq!(headers["ratelimit-limit"], "100");
    }

    #[tokio::test]
    async fn tokens_in_query_strings_or_other_headers_are_ignored() {
        let t = token("authenticated");
        let (status, _, body) = send_to(
            app(TenantGuardLayer::new(verifier())),
            &format!("/me?access_token={t}"),
            &[("x-user-id", "user-1"), ("cookie", &format!("token={t}"))],
        )
        .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert_eq!(error_code(&body), "missing_token");
    }
}
