//! [`RequestTracingLayer`]: request id and tracing span for every route, token or not.

use std::task::{Context, Poll};

use axum::extract::MatchedPath;
use axum_core::response::Response;
use http::Request;
use tenant_guard_core::trace::RequestTimer;
use tenant_guard_core::{RequestId, trace};
use tower_layer::Layer;
use tower_service::Service;
use tracing::Span;

use crate::future::ResponseFuture;

/// The request id and span chosen by the outermost of our layers; inner layers reuse them.
#[derive(Debug, Clone)]
pub(crate) struct RequestTrace {
    pub(crate) id: RequestId,
    pub(crate) span: Span,
    /// The layer that opened the span found the matched route (it runs after routing).
    pub(crate) has_route: bool,
}

impl RequestTrace {
    /// The trace an outer layer of ours put into `request`, or a new one, stored in the request's
    /// extensions (with its id) for the layers and extractors inside. The timer is `Some` for a
    /// new trace only: the layer that opened the span records how the request ended.
    pub(crate) fn of<B>(request: &mut Request<B>) -> (Self, Option<RequestTimer>) {
        if let Some(trace) = request.extensions().get::<Self>() {
            let trace = trace.clone();
            if !trace.has_route
                && let Some(route) = request.extensions().get::<MatchedPath>()
            {
                trace::record_route(&trace.span, route.as_str());
            }
            return (trace, None);
        }
        let id = RequestId::from_headers(request.headers());
        let span = trace::request_span(&id);
        let timer = RequestTimer::start(span.clone());
        let route = request.extensions().get::<MatchedPath>();
        if let Some(route) = route {
            trace::record_route(&span, route.as_str());
        }
        let trace = Self {
            id,
            span,
            has_route: route.is_some(),
        };
        request.extensions_mut().insert(trace.id.clone());
        request.extensions_mut().insert(trace.clone());
        (trace, Some(timer))
    }
}

/// Gives every request a request id (the caller's sane `x-request-id`, else a generated one) and
/// a `request` tracing span, and stamps `x-request-id` on every response.
///
/// The span carries the fields described in [`tenant_guard_core::trace`]: `request_id`, the
/// matched `route` template (axum's [`MatchedPath`]; `Router::layer` runs the layer after
/// routing, so it is known), `org_id`, `user_id` and `role` once a guard verified the token,
/// `error_code` for a refused request, and `status` and `latency_ms` when the response is
/// produced (or `cancelled` when the client goes away first). Requests no route matched (the
/// fallback) have no `route`.
///
/// [`TenantGuardLayer`](crate::TenantGuardLayer) does the same for the routes it wraps; add this
/// layer around the whole router so that routes without a token (health checks, the fallback 404)
/// carry the header too. A `TenantGuardLayer` inside it reuses its id and span, and records the
/// verified `org_id`, `user_id` and `role` on that span.
///
/// ```
/// use axum::{Router, routing::get};
/// use tenant_guard_axum::RequestTracingLayer;
///
/// let app: Router = Router::new()
///     .route("/healthz", get(|| async { "ok" }))
///     .layer(RequestTracingLayer::new());
/// ```
#[derive(Debug, Clone, Default)]
pub struct RequestTracingLayer {
    _private: (),
}

impl RequestTracingLayer {
    /// The layer.
    pub fn new() -> Self {
        Self::default()
    }
}

impl<S> Layer<S> for RequestTracingLayer {
    type Service = RequestTracing<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RequestTracing { inner }
    }
}

/// The service of [`RequestTracingLayer`].
#[derive(Debug, Clone)]
pub struct RequestTracing<S> {
    inner: S,
}

impl<S, ReqBody> Service<Request<ReqBody>> for RequestTracing<S>
where
    S: Service<Request<ReqBody>, Response = Response> + Clone,
{
    type Response = Response;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<ReqBody>) -> Self::Future {
        let (trace, timer) = RequestTrace::of(&mut request);
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let future = trace.span.in_scope(|| inner.call(request));
        ResponseFuture::called(future, None, trace.span, trace.id, timer)
    }
}

#[cfg(test)]
mod tests {
    use axum::Router;
    use axum::body::Body;
    use axum::routing::get;
    use http::StatusCode;
    use tenant_guard_core::{Environment, Verifier};
    use tower::ServiceExt;

    use crate::{CurrentRequestId, RequestTracingLayer, TenantGuardLayer};

    fn app() -> Router {
        let verifier = Verifier::builder(Environment::Test)
            .hmac_secret("unit-test-secret-unit-test-secret")
            .build()
            .unwrap();
        Router::new()
            .route(
                "/me",
                get(|CurrentRequestId(id): CurrentRequestId| async move { id.to_string() }),
            )
            .route_layer(TenantGuardLayer::new(verifier))
            .route("/healthz", get(|| async { "ok" }))
            .layer(RequestTracingLayer::new())
    }

    async fn request_id(path: &str, sent: Option<&str>) -> (StatusCode, String) {
        let mut request = http::Request::builder().uri(path);
        if let Some(id) = sent {
            request = request.header("x-request-id", id);
        }
        let response = app()
            .oneshot(request.body(Body::empty()).unwrap())
            .await
            .unwrap();
        let id = response.headers()["x-request-id"]
            .to_str()
            .unwrap()
            .to_owned();
        (response.status(), id)
    }

    #[tokio::test]
    async fn routes_without_a_token_get_a_request_id() {
        assert_eq!(
            request_id("/healthz", Some("hc-1")).await,
            (StatusCode::OK, "hc-1".into())
        );
        let (status, generated) = request_id("/healthz", Some("bad id")).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(generated.len(), 36);
        let (status, generated) = request_id("/nowhere", None).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert_eq!(generated.len(), 36);
    }

    #[tokio::test]
    async fn the_guard_inside_reuses_the_outer_id() {
        // A generated id must be the same in the rejection as chosen by the outer layer: there is
        // exactly one header value.
        let request = http::Request::builder()
            .uri("/me")
            .body(Body::empty())
            .unwrap();
        let response = app().oneshot(request).await.unwrap();
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(response.headers().get_all("x-request-id").iter().count(), 1);
        assert_eq!(
            request_id("/me", Some("r-7")).await,
            (StatusCode::UNAUTHORIZED, "r-7".into())
        );
    }
}
