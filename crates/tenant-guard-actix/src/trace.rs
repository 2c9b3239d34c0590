//! Request ids and the per-request span in actix-web: the [`RequestTracing`] middleware, and the
//! helpers [`crate::TenantGuard`] shares with it. The id, the span and the trace context are the
//! pipeline's ([`RequestTrace`]); this module only keeps them in actix's extensions and copies
//! `x-request-id` into actix's (`http` 0.2) responses.

use std::future::{Future, Ready, ready};
use std::pin::Pin;

use actix_web::body::MessageBody;
use actix_web::dev::{Service, ServiceRequest, ServiceResponse, Transform, forward_ready};
use actix_web::error::InternalError;
use actix_web::http::header::HeaderMap;
use actix_web::{Error, HttpMessage};
use tenant_guard_core::RequestId;
use tenant_guard_core::request_id::X_REQUEST_ID;
use tenant_guard_core::trace::RequestTimer;
use tenant_guard_http::{HeaderUse, RequestTrace, pipeline_headers};
use tracing::Instrument;

/// The future of both middlewares: actix-web services run on one thread, so it need not be `Send`.
pub(crate) type LocalFuture<T> = Pin<Box<dyn Future<Output = T>>>;

/// The request's trace: the one an outer middleware of ours started, else a new one (with the
/// route template from actix-web's resource map) stored in the extensions, with its
/// [`RequestId`] (handlers can take `web::ReqData<RequestId>`). The timer is `Some` for a new
/// trace only: the middleware that started it records how the request ended.
pub(crate) fn of(
    req: &ServiceRequest,
    uses: HeaderUse,
) -> (http::HeaderMap, RequestTrace, Option<RequestTimer>) {
    let headers = pipeline_headers(uses, |name| {
        req.headers().get_all(name.as_str()).map(|v| v.as_bytes())
    });
    let outer = req.extensions().get::<RequestTrace>().cloned();
    let route = req.match_pattern();
    let (trace, timer) = RequestTrace::reuse_or_start(outer.as_ref(), &headers, route.as_deref());
    if timer.is_some() {
        let mut extensions = req.extensions_mut();
        extensions.insert(trace.id().clone());
        extensions.insert(trace.clone());
    }
    (headers, trace, timer)
}

/// Sets `x-request-id` (replacing the handler's; the id is visible ASCII, always valid).
fn tag(headers: &mut HeaderMap, id: &RequestId) {
    crate::response::put(headers, &X_REQUEST_ID, id.header_value(), true);
}

/// Ends a request with the inner service's answer (or the guard's own): `x-request-id` on it
/// (also on the response an error turns into) and, for the span's opener, how it ended.
pub(crate) fn answered<B>(
    result: Result<ServiceResponse<B>, Error>,
    id: &RequestId,
    timer: Option<RequestTimer>,
) -> Result<ServiceResponse<B>, Error> {
    match result {
        Ok(mut response) => {
            tag(response.headers_mut(), id);
            RequestTrace::finish(timer, response.status().as_u16());
            Ok(response)
        }
        Err(error) => {
            let mut response = error.error_response();
            RequestTrace::finish(timer, response.status().as_u16());
            tag(response.headers_mut(), id);
            Err(InternalError::from_response(error, response).into())
        }
    }
}

/// Middleware giving every request an id and a `tracing` span (the fields of
/// [`tenant_guard_core::trace`], with the route template from actix-web's resource map and the
/// W3C trace context), and every response its `x-request-id`, without authenticating anything.
/// Wrap the whole `App` with it so public routes and actix-web's own responses (unknown routes)
/// carry them too; a [`crate::TenantGuard`] inside reuses the id and span.
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
        let (_, trace, timer) = of(&req, HeaderUse::Trace);
        let span = trace.span().clone();
        let inner = span.in_scope(|| self.service.call(req));
        Box::pin(async move { answered(inner.await, trace.id(), timer) }.instrument(span))
    }
}
