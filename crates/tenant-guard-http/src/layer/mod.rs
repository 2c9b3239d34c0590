//! The pipeline as a plain tower middleware over `http::Request<B>` / `http::Response<B>`:
//! [`GuardLayer`] (authentication, admission, the transaction's hand-over and end) and
//! [`TracingLayer`] (request id and span for every route, token or not). axum's adapter is these
//! two with axum's route template; tonic and bare hyper services use them as they are.
//!
//! tower-http's layout: configuration in the layer (`Debug, Clone`), the service holds
//! `inner: S`, response futures in `future.rs`.

mod body;
mod future;
mod service;

use std::fmt;
use std::marker::PhantomData;

use tenant_guard_core::Verifier;
use tower_layer::Layer;

use crate::config::GuardConfig;

pub use body::GuardBody;
pub use future::{ResponseFuture, TracedFuture};
pub use service::{GuardService, TenantGuard, Tracing};

/// Where a framework keeps the matched route *template* (`/projects/{id}`) in a request's
/// extensions, for the span's `route` field. [`NoRoute`] for services without routing.
pub trait RouteSource: Default + Clone + Send + Sync + 'static {
    /// The matched route template of the request with `extensions`, if known.
    fn route(extensions: &http::Extensions) -> Option<&str>;
}

/// No route template (tonic's and hyper's requests: the span has no `route`).
#[derive(Debug, Clone, Copy, Default)]
pub struct NoRoute;

impl RouteSource for NoRoute {
    fn route(_: &http::Extensions) -> Option<&str> {
        None
    }
}

/// The guard as a tower [`Layer`], for routes described by `R` (axum's adapter uses its
/// `MatchedPath`; see [`TenantGuardLayer`] for every other tower stack).
pub struct GuardLayer<R = NoRoute> {
    config: GuardConfig,
    route: PhantomData<fn() -> R>,
}

impl<R> fmt::Debug for GuardLayer<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TenantGuardLayer")
            .field("config", &self.config)
            .finish()
    }
}

impl<R> Clone for GuardLayer<R> {
    fn clone(&self) -> Self {
        Self {
            config: self.config.clone(),
            route: PhantomData,
        }
    }
}

/// The guard for any tower stack over `http` types: tonic, bare hyper, tower-http.
///
/// Per request it takes the request id and opens the `request` span (or reuses those of an outer
/// layer), runs [`GuardConfig::admit`], and either answers the refusal or puts the
/// [`RequestContext`](crate::RequestContext), the [`Principal`](tenant_guard_core::Principal) and
/// the [`RequestId`](tenant_guard_core::RequestId) into the request's extensions and calls the
/// inner service. When the inner service answered, [`Finisher::finish`](crate::Finisher::finish)
/// commits or rolls back the request's transaction, and every response gets `x-request-id` and
/// `RateLimit-*`.
///
/// gRPC requests (`content-type: application/grpc*`) are refused with a gRPC status (see
/// [`grpc`](crate::grpc): 401 → `UNAUTHENTICATED`, 403 → `PERMISSION_DENIED`, 429 →
/// `RESOURCE_EXHAUSTED`, 503 → `UNAVAILABLE`) and commit only with `grpc-status` 0; every other
/// request is refused with the JSON error response.
///
/// ```
/// use tenant_guard_core::{Environment, Verifier};
/// use tenant_guard_http::TenantGuardLayer;
/// use tower_layer::Layer;
///
/// let verifier = Verifier::builder(Environment::Production)
///     .hmac_secret("a-long-random-secret-from-your-vault")
///     .build()?;
/// let guard = TenantGuardLayer::new(verifier).allow_roles(["authenticated"]);
/// let _service = guard.layer(tower_service_fn());
/// # fn tower_service_fn() -> () {}
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub type TenantGuardLayer = GuardLayer<NoRoute>;

impl<R: RouteSource> GuardLayer<R> {
    /// A guard that authenticates with `verifier`; see [`GuardConfig::new`].
    pub fn new(verifier: Verifier) -> Self {
        Self::from_config(GuardConfig::new(verifier))
    }

    /// A guard with `config`.
    pub fn from_config(config: GuardConfig) -> Self {
        Self {
            config,
            route: PhantomData,
        }
    }
}

crate::guard_builder!(GuardLayer<R>);

impl<S, R: RouteSource> Layer<S> for GuardLayer<R> {
    type Service = GuardService<S, R>;

    fn layer(&self, inner: S) -> Self::Service {
        GuardService::new(inner, self.config.clone())
    }
}

/// Gives every request a request id (the caller's sane `x-request-id`, else a generated one)
/// and a `request` span (with the W3C trace context when sent), and stamps `x-request-id` on
/// every response, without authenticating anything: put it around the whole app so public
/// routes and the router's own answers carry them too. A [`GuardLayer`] inside reuses both.
pub struct TracingLayer<R = NoRoute> {
    route: PhantomData<fn() -> R>,
}

impl<R> fmt::Debug for TracingLayer<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RequestTracingLayer").finish()
    }
}

impl<R> Clone for TracingLayer<R> {
    fn clone(&self) -> Self {
        Self::new()
    }
}

impl<R> Default for TracingLayer<R> {
    fn default() -> Self {
        Self::new()
    }
}

impl<R> TracingLayer<R> {
    /// The layer (it has no configuration).
    pub fn new() -> Self {
        Self { route: PhantomData }
    }
}

/// [`TracingLayer`] for stacks without routing (tonic, hyper).
pub type RequestTracingLayer = TracingLayer<NoRoute>;

impl<S, R: RouteSource> Layer<S> for TracingLayer<R> {
    type Service = Tracing<S, R>;

    fn layer(&self, inner: S) -> Self::Service {
        Tracing::new(inner)
    }
}
