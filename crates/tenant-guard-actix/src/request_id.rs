//! Request ids and the per-request span: the [`RequestTracing`] middleware, and the helpers
//! [`crate::TenantGuard`] shares with it.

use std::future::{Future, Ready, ready};
use std::pin::Pin;

use actix_web::body::MessageBody;
use actix_web::dev::{Service, ServiceRequest, ServiceResponse, Transform, forward_ready};
use actix_web::error::InternalError;
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::{Error, HttpMessage};
use tenant_guard_core::RequestId;
use tenant_guard_core::trace::{self, RequestTimer};
use tracing::{Instrument, Span};

/// The response header carrying the request id (actix-web's `http` 0.2 type).
const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The future of both middlewares: actix-web services run on one thread, so it need not be `Send`.
pub(crate) type LocalFuture<T> = Pin<Box<dyn Future<Output = T>>>;

/// The request's id: the one an outer middleware already chose, else the caller's sane
/// `x-request-id` (see [`RequestId::from_headers`]) or a fresh one. Stored in the extensions, so
/// handlers can take it as `web::ReqData<RequestId>`.
pub(crate) fn assign(req: &ServiceRequest, headers: &http::HeaderMap) -> RequestId {
    if let Some(id) = req.extensions().get::<RequestId>() {
        return id.clone();
    }
    let id = RequestId::from_headers(headers);
    req.extensions_mut().insert(id.clone());
    id
}

/// The span the outermost of our middlewares opened, kept in the extensions so the ones inside
/// record on it instead of opening a second one.
#[derive(Clone)]
struct RequestSpan(Span);

/// The request's span: the one an outer middleware of ours opened, else a new one (see
/// [`tenant_guard_core::trace::request_span`]) with the matched route template, stored in the
/// extensions. The timer is `Some` for a new span only: the middleware that opened it records
/// how the request ended.
pub(crate) fn span(req: &ServiceRequest, id: &RequestId) -> (Span, Option<RequestTimer>) {
    if let Some(RequestSpan(span)) = req.extensions().get::<RequestSpan>() {
        return (span.clone(), None);
    }
    let span = trace::request_span(id);
    let timer = RequestTimer::start(span.clone());
    // The resource map knows the pattern before routing (actix-web resolves it from the path).
    if let Some(route) = req.match_pattern() {
        trace::record_route(&span, &route);
    }
    req.extensions_mut().insert(RequestSpan(span.clone()));
    (span, Some(timer))
}

/// Records how the request ended on its span (when `timer` is the span's owner).
pub(crate) fn finish(timer: Option<RequestTimer>, status: actix_web::http::StatusCode) {
    if let Some(timer) = timer {
        timer.finish(status.as_u16());
    }
}

/// The request id as an actix header value (always valid: it is visible ASCII).
fn header_value(id: &RequestId) -> Option<HeaderValue> {
    HeaderValue::from_bytes(id.header_value().as_bytes()).ok()
}

/// Sets `x-request-id` on a response, replacing any value the handler set.
pub(crate) fn tag_response<B>(response: &mut ServiceResponse<B>, id: &RequestId) {
    if let Some(value) = header_value(id) {
        response.headers_mut().insert(X_REQUEST_ID, value);
    }
}

/// Sets `x-request-id` on the response an inner service's error turns into.
pub(crate) fn tag_error(error: Error, id: &RequestId) -> Error {
    let mut response = error.error_response();
    if let Some(value) = header_value(id) {
        response.headers_mut().insert(X_REQUEST_ID, value);
    }
    InternalError::from_response(error, response).into()
}

/// Middleware giving every request an id and a `tracing` span, and every response its
/// `x-request-id`, without authenticating anything.
///
/// The span carries the fields described in [`tenant_guard_core::trace`]: `request_id`, the
/// matched `route` template (`/projects/{id}`, from actix-web's resource map; absent when no
/// route matches), `org_id`, `user_id` and `role` once a [`crate::TenantGuard`] verified the
/// token, `error_code` for a refused request, and `status` and `latency_ms` when the response is
/// produced (or `cancelled` when the client goes away first).
///
/// Wrap the whole `App` with it so that public routes (health checks) and actix-web's own
/// responses (unknown routes) carry `x-request-id` too. [`crate::TenantGuard`] does the same for
/// the routes it wraps and reuses the id chosen here, so one request has one id.
///
/// ```
/// use actix_web::{App, HttpResponse, test, web};
/// use tenant_guard_actix::RequestTracing;
///
/// # actix_web::rt::System::new().block_on(async {
/// let app = test::init_service(
///     App::new()
///         .wrap(RequestTracing::new())
///         .route("/healthz", web::get().to(HttpResponse::Ok)),
/// )
/// .await;
/// let req = test::TestRequest::get().uri("/healthz").insert_header(("x-request-id", "abc")).to_request();
/// let res = test::call_service(&app, req).await;
/// assert_eq!(res.headers().get("x-request-id").unwrap(), "abc");
/// # });
/// ```
#[derive(Debug, Clone, Default)]
pub struct RequestTracing {
    _private: (),
}

impl RequestTracing {
    /// The middleware (it has no configuration).
    pub fn new() -> Self {
        Self::default()
    }
}

impl<S, B> Transform<S, ServiceRequest> for RequestTracing
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = Error> + 'static,
    B: MessageBody + 'static,
{
    type Response = ServiceResponse<B>;
    type Error = Error;
    type Transform = RequestTracingMiddleware<S>;
    type InitError = ();
    type Future = Ready<Result<Self::Transform, Self::InitError>>;

    fn new_transform(&self, service: S) -> Self::Future {
        ready(Ok(RequestTracingMiddleware { service }))
    }
}

/// The service [`RequestTracing`] wraps around the inner one.
#[derive(Debug)]
pub struct RequestTracingMiddleware<S> {
    service: S,
}

impl<S, B> Service<ServiceRequest> for RequestTracingMiddleware<S>
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = Error> + 'static,
    B: MessageBody + 'static,
{
    type Response = ServiceResponse<B>;
    type Error = Error;
    type Future = LocalFuture<Result<Self::Response, Self::Error>>;

    forward_ready!(service);

    fn call(&self, req: ServiceRequest) -> Self::Future {
        let headers = crate::headers::request_id_headers(req.headers());
        let id = assign(&req, &headers);
        let (span, timer) = span(&req, &id);
        let inner = span.in_scope(|| self.service.call(req));
        Box::pin(
            async move {
                match inner.await {
                    Ok(mut response) => {
                        tag_response(&mut response, &id);
                        finish(timer, response.status());
                        Ok(response)
                    }
                    Err(error) => {
                        finish(timer, error.as_response_error().status_code());
                        Err(tag_error(error, &id))
                    }
                }
            }
            .instrument(span),
        )
    }
}
