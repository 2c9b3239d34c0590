//! The shared tower layers, with axum's matched route template for the request span.

use axum::extract::MatchedPath;
use tenant_guard_http::{GuardLayer, GuardService, RouteSource, Tracing, TracingLayer};

/// axum's [`MatchedPath`] as the span's `route` (`/projects/{id}`, never the raw path).
#[derive(Debug, Clone, Copy, Default)]
pub struct MatchedRoute;

impl RouteSource for MatchedRoute {
    fn route(extensions: &http::Extensions) -> Option<&str> {
        extensions.get::<MatchedPath>().map(MatchedPath::as_str)
    }
}

/// Authenticates every request of the routes it wraps and scopes their database access: the
/// shared pipeline's tower layer ([`tenant_guard_http::GuardLayer`]; its steps, in order, are
/// described on [`GuardConfig::admit`](tenant_guard_http::GuardConfig::admit)).
///
/// Per request it takes the request id (`x-request-id` when sane, else a fresh one), opens a
/// tracing span with `request_id`, `route`, `org_id`, `user_id` and `role` (and the W3C trace
/// context when sent), verifies the bearer token *before* anything touches the pool, and either
/// answers the refusal (401/403 with `WWW-Authenticate` and a JSON body; 429 over a rate limit)
/// or hands the request to the route with its principal, request id and transaction slot.
/// Every response, refusals included, carries `x-request-id`.
///
/// With a [`pool`](GuardLayer::pool), handlers can take a [`TenantDb`](crate::TenantDb): a
/// transaction scoped to the caller's org and role, checked out at its first statement,
/// committed when the handler's response is a success (2xx/3xx) and rolled back otherwise.
///
/// Add it with `Router::route_layer`, which wraps the routes added before it and nothing else:
/// routes added after it (health checks) need no token, and unknown paths still get the router's
/// 404 (`Router::layer` would also wrap the fallback and answer 401 there). For per-route role
/// requirements, wrap each group of routes in its own layer (`guard.clone().allow_roles([..])`).
///
/// ```
/// use axum::{Router, routing::get};
/// use tenant_guard_axum::{Authenticated, TenantGuardLayer};
/// use tenant_guard_core::{Environment, RateLimiter, Verifier};
///
/// async fn me(Authenticated(principal): Authenticated) -> String {
///     principal.user_id().to_owned()
/// }
///
/// let verifier = Verifier::builder(Environment::Production)
///     .hmac_secret("a-long-random-secret-from-your-vault")
///     .build()?;
/// let guard = TenantGuardLayer::new(verifier).rate_limit(RateLimiter::per_minute(600)?);
/// let app: Router = Router::new()
///     .route("/me", get(me))
///     .route_layer(guard.clone())
///     .route("/admin", get(|| async { "hi" }))
///     .route_layer(guard.allow_roles(["org_admin"])) // 403 for anyone else
///     .route("/healthz", get(|| async { "ok" })); // outside the layers: no token needed
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub type TenantGuardLayer = GuardLayer<MatchedRoute>;

/// The middleware service built by [`TenantGuardLayer`].
pub type TenantGuard<S> = GuardService<S, MatchedRoute>;

/// Gives every request a request id (the caller's sane `x-request-id`, else a generated one) and
/// a `request` tracing span, and stamps `x-request-id` on every response.
///
/// The span carries the fields described in [`tenant_guard_core::trace`]: `request_id`, the
/// matched `route` template, `org_id`, `user_id` and `role` once a guard verified the token,
/// `error_code` for a refused request, the W3C trace context, and `status` and `latency_ms`
/// when the response is produced (or `cancelled` when the client goes away first).
///
/// Add it around the whole router so that routes without a token (health checks, the fallback
/// 404) carry the header too; a [`TenantGuardLayer`] inside reuses its id and span.
///
/// ```
/// use axum::{Router, routing::get};
/// use tenant_guard_axum::RequestTracingLayer;
///
/// let app: Router = Router::new()
///     .route("/healthz", get(|| async { "ok" }))
///     .layer(RequestTracingLayer::new());
/// ```
pub type RequestTracingLayer = TracingLayer<MatchedRoute>;

/// The service of [`RequestTracingLayer`].
pub type RequestTracing<S> = Tracing<S, MatchedRoute>;
