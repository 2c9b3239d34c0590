//! [`TenantGuardLayer`]: the configuration of the authentication middleware.

use std::sync::Arc;

use tenant_guard_core::Verifier;
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
    pub(crate) allowed_roles: Option<Arc<[Box<str>]>>,
}

impl TenantGuardLayer {
    /// A layer that authenticates with `verifier`.
    pub fn new(verifier: Verifier) -> Self {
        Self {
            verifier,
            allowed_roles: None,
        }
    }

    /// Restricts the routes this layer wraps to tokens whose role is one of `roles`; any other
    /// (verified) role is rejected with 403 `role_not_allowed`. Without this, every role the
    /// verifier accepts is allowed.
    ///
    /// A role must also be in the verifier's allowlist to get this far. A name that is not a valid
    /// role never matches, so a typo locks the routes rather than opening them.
    ///
    /// ```
    /// # use tenant_guard_axum::TenantGuardLayer;
    /// # fn demo(layer: TenantGuardLayer) {
    /// let admin_only = layer.allow_roles(["org_admin"]);
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

impl<S> Layer<S> for TenantGuardLayer {
    type Service = TenantGuard<S>;

    fn layer(&self, inner: S) -> Self::Service {
        TenantGuard::new(inner, self.clone())
    }
}
