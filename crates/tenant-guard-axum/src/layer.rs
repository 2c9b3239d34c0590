//! [`TenantGuardLayer`]: the configuration of the authentication middleware.

use std::sync::Arc;

use tenant_guard_core::{RateLimitBackend, Verifier};
use tenant_guard_postgres::TenantPool;
use tower_layer::Layer;

use crate::service::TenantGuard;

/// Authenticates every request of the routes it wraps and scopes their database access.
///
/// Per request it takes the request id (`x-request-id` when sane, else a fresh one), opens a
/// tracing span with `request_id`, `org_id`, `user_id` and `role`, verifies the bearer token
/// *before* anything touches the pool, and either answers the rejection (401/403 with
/// `WWW-Authenticate` and a JSON body) or puts the [`Principal`](tenant_guard_core::Principal)
/// and the [`RequestId`](tenant_guard_core::RequestId) into the request extensions for the
/// extractors. Every response, rejections included, carries `x-request-id`.
///
/// With a [`pool`](Self::pool), handlers can take a [`TenantDb`](crate::TenantDb): a transaction
/// scoped to the caller's org and role, committed when the handler's response is a success
/// (2xx/3xx) and rolled back otherwise.
///
/// Add it with `Router::route_layer`, which wraps the routes added before it and nothing else:
/// routes added after it (health checks) need no token, and unknown paths still get the router's
/// 404 (`Router::layer` would also wrap the fallback and answer 401 there).
///
/// ```
/// use axum::{Router, routing::get};
/// use tenant_guard_axum::{Authenticated, TenantGuardLayer};
/// use tenant_guard_core::{Environment, Verifier};
///
/// async fn me(Authenticated(principal): Authenticated) -> String {
///     principal.user_id().to_owned()
/// }
///
/// let verifier = Verifier::builder(Environment::Production)
///     .hmac_secret("a-long-random-secret-from-your-vault")
///     .build()
///     .unwrap();
/// let app: Router = Router::new()
///     .route("/me", get(me))
///     .route_layer(TenantGuardLayer::new(verifier))
///     .route("/healthz", get(|| async { "ok" })); // outside the layer: no token needed
/// ```
#[derive(Debug, Clone)]
pub struct TenantGuardLayer {
    pub(crate) verifier: Verifier,
    pub(crate) pool: Option<TenantPool>,
    pub(crate) allowed_roles: Option<Arc<[Box<str>]>>,
    pub(crate) rate_limit: Option<Arc<dyn RateLimitBackend>>,
}

impl TenantGuardLayer {
    /// A layer that authenticates with `verifier`. Without a pool, handlers can read the principal
    /// but not take a [`TenantDb`](crate::TenantDb).
    pub fn new(verifier: Verifier) -> Self {
        Self {
            verifier,
            pool: None,
            allowed_roles: None,
            rate_limit: None,
        }
    }

    /// The pool [`TenantDb`](crate::TenantDb) begins its scoped transactions on.
    #[must_use]
    pub fn pool(mut self, pool: TenantPool) -> Self {
        self.pool = Some(pool);
        self
    }

    /// Restricts the routes this layer wraps to tokens whose role is one of `roles`; any other
    /// (verified) role is rejected with 403 `role_not_allowed`. Without this, every role the
    /// verifier accepts is allowed.
    ///
    /// A role must also be in the verifier's allowlist to get this far. A name that is not a valid
    /// role never matches, so a typo locks the routes rather than opening them.
    ///
    /// Per-route requirements: wrap each group of routes in its own layer (each request still
    /// passes exactly one of them).
    ///
    /// ```
    /// use axum::{Router, routing::{delete, get}};
    /// use tenant_guard_axum::TenantGuardLayer;
    ///
    /// # fn demo(guard: TenantGuardLayer) -> Router {
    /// let admin = Router::new()
    ///     .route("/members/{id}", delete(|| async { "removed" }))
    ///     .route_layer(guard.clone().allow_roles(["org_admin"])); // 403 for anyone else
    /// Router::new()
    ///     .route("/projects", get(|| async { "[]" }))
    ///     .route_layer(guard) // every role the verifier accepts
    ///     .merge(admin)
    /// # }
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
}

impl TenantGuardLayer {
    /// Limits the requests of each org (or user, see
    /// [`RateLimiterBuilder::per_user`](tenant_guard_core::rate_limit::RateLimiterBuilder::per_user))
    /// on the routes this layer wraps. Checked right after authentication and the role check,
    /// before anything touches the pool; over the limit: 429 `rate_limited` with `Retry-After`,
    /// the `RateLimit-*` headers and the usual JSON body. Every response of a request that passed
    /// carries the `RateLimit-*` headers too (the handler's own, if it set them, win).
    ///
    /// `limiter` is any [`RateLimitBackend`]: the in-memory
    /// [`RateLimiter`](tenant_guard_core::RateLimiter) (per process, decided synchronously, no
    /// extra cost) or `tenant_guard_postgres::PgRateLimiter` (one budget shared by every
    /// instance, one database round trip per request, awaited before the handler runs; when the
    /// database cannot answer, its `OnDatabaseError` policy decides, by default 503
    /// `rate_limit_unavailable`).
    ///
    /// Clones of one limiter share their counters; give each route group its own limiter (or, for
    /// `PgRateLimiter`, its own name) for its own budget.
    ///
    /// ```
    /// use axum::{Router, routing::post};
    /// use tenant_guard_axum::TenantGuardLayer;
    /// use tenant_guard_core::RateLimiter;
    ///
    /// # fn demo(guard: TenantGuardLayer) -> Result<Router, tenant_guard_core::InvalidRateLimit> {
    /// let expensive = Router::new()
    ///     .route("/reports", post(|| async { "queued" }))
    ///     .route_layer(guard.rate_limit(RateLimiter::per_minute(600)?));
    /// # Ok(expensive)
    /// # }
    /// ```
    #[must_use]
    pub fn rate_limit(mut self, limiter: impl RateLimitBackend) -> Self {
        self.rate_limit = Some(Arc::new(limiter));
        self
    }
}

impl<S> Layer<S> for TenantGuardLayer {
    type Service = TenantGuard<S>;

    fn layer(&self, inner: S) -> Self::Service {
        TenantGuard::new(inner, self.clone())
    }
}
