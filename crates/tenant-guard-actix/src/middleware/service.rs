//! [`TenantGuardMiddleware`]: the shared pipeline around actix-web's inner service.

use std::rc::Rc;

use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{Service, ServiceRequest, ServiceResponse, forward_ready};
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::{Error, HttpMessage};
use tenant_guard_core::ErrorResponse;
use tenant_guard_core::trace::RequestTimer;
use tenant_guard_http::{Admission, Finisher, GuardConfig, RequestContext, RequestTrace, commits};
use tracing::Instrument;

use crate::response::render;
use crate::trace::{self, LocalFuture};

/// The service [`TenantGuard`](crate::TenantGuard) wraps around the inner one.
#[derive(Debug)]
pub struct TenantGuardMiddleware<S> {
    service: Rc<S>,
    config: Rc<GuardConfig>,
}

impl<S> TenantGuardMiddleware<S> {
    pub(super) fn new(service: Rc<S>, config: Rc<GuardConfig>) -> Self {
        Self { service, config }
    }
}

/// Answers a refused request without calling the inner service.
fn refuse<B>(
    req: ServiceRequest,
    error: &ErrorResponse,
    trace: &RequestTrace,
    timer: Option<RequestTimer>,
) -> ServiceResponse<EitherBody<B>> {
    let mut response = req.into_response(render(error)).map_into_right_body();
    trace::tag_response(&mut response, trace.id());
    trace::finish(timer, response.status());
    response
}

/// Adds the `RateLimit-*` headers of a request that passed the limiter (unless the handler set
/// its own) and `x-request-id`.
fn stamp<B>(response: &mut ServiceResponse<B>, finisher: &Finisher) {
    trace::tag_response(response, finisher.request_id());
    let Some(status) = finisher.rate_limit() else {
        return;
    };
    let headers = response.headers_mut();
    for (name, value) in status.headers() {
        // actix-web 4 speaks `http` 0.2: copy by wire form (always representable).
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(name.as_str().as_bytes()),
            HeaderValue::from_bytes(value.as_bytes()),
        ) && !headers.contains_key(&name)
        {
            headers.insert(name, value);
        }
    }
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
        let (trace, timer) = trace::of(&req, &headers);
        let outer = req.extensions().get::<RequestContext>().cloned();
        let admission = self.config.admit(&headers, &trace, outer.as_ref());
        let service = Rc::clone(&self.service);
        let span = trace.span().clone();
        Box::pin(
            async move {
                let admitted = match admission {
                    Admission::Admitted(admitted) => admitted,
                    Admission::Refused(refused) => {
                        return Ok(refuse(req, refused.response(), &trace, timer));
                    }
                    Admission::Pending(pending) => match pending.await {
                        Ok(admitted) => admitted,
                        Err(refused) => return Ok(refuse(req, refused.response(), &trace, timer)),
                    },
                };
                let (context, finisher) = admitted.into_parts();
                {
                    let mut extensions = req.extensions_mut();
                    extensions.insert(context.principal().clone());
                    extensions.insert(context);
                }
                let response = match service.call(req).await {
                    Ok(response) => response,
                    Err(error) => {
                        drop(finisher.finish(false));
                        trace::finish(timer, error.as_response_error().status_code());
                        return Err(trace::tag_error(error, trace.id()));
                    }
                };
                let status = http::StatusCode::from_u16(response.status().as_u16())
                    .unwrap_or(http::StatusCode::INTERNAL_SERVER_ERROR);
                let mut response = match finisher.finish(commits(status)).await {
                    None => response.map_into_left_body(),
                    Some(error) => response.into_response(render(&error)).map_into_right_body(),
                };
                stamp(&mut response, &finisher);
                trace::finish(timer, response.status());
                Ok(response)
            }
            .instrument(span),
        )
    }
}
