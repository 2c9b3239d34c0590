//! [`TenantGuardMiddleware`]: the shared pipeline around actix-web's inner service.

use std::rc::Rc;

use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{Service, ServiceRequest, ServiceResponse, forward_ready};
use actix_web::{Error, HttpMessage};
use tenant_guard_core::trace::RequestTimer;
use tenant_guard_http::{Finisher, GuardConfig, HeaderUse, RequestContext, RequestTrace, commits};
use tracing::Instrument;

use crate::response::{put, render};
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

/// Sets what the pipeline stamps on a response (`x-request-id`, `RateLimit-*`) and records how
/// the request ended.
fn end<B>(response: &mut ServiceResponse<B>, finisher: &Finisher, timer: Option<RequestTimer>) {
    let headers = response.headers_mut();
    for (name, value, replace) in finisher.stamped_headers() {
        put(headers, &name, &value, replace);
    }
    RequestTrace::finish(timer, response.status().as_u16());
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
        let (mut headers, trace, timer) = trace::of(&req, HeaderUse::Authenticate);
        // The headers the guard's configuration reads too (the org header of org_membership).
        for name in self.config.admission_headers() {
            for value in req.headers().get_all(name.as_str()) {
                if let Ok(value) = http::HeaderValue::from_bytes(value.as_bytes()) {
                    headers.append(name.clone(), value);
                }
            }
        }
        let outer = req.extensions().get::<RequestContext>().cloned();
        let admission = self
            .config
            .admit_request(req.path(), &headers, &trace, outer.as_ref());
        let service = Rc::clone(&self.service);
        let span = trace.span().clone();
        Box::pin(
            async move {
                let (context, finisher) = match admission.resolve().await {
                    Ok(admitted) => admitted.into_parts(),
                    Err(refused) => {
                        let response = req.into_response(render(refused.response()));
                        return trace::answered(
                            Ok(response.map_into_right_body()),
                            trace.id(),
                            timer,
                        );
                    }
                };
                {
                    let mut extensions = req.extensions_mut();
                    extensions.insert(context.principal().clone());
                    extensions.insert(context);
                }
                let response = match service.call(req).await {
                    Ok(response) => response,
                    Err(error) => {
                        drop(finisher.finish(false));
                        return trace::answered(Err(error), trace.id(), timer);
                    }
                };
                let status = http::StatusCode::from_u16(response.status().as_u16())
                    .unwrap_or(http::StatusCode::INTERNAL_SERVER_ERROR);
                let mut response = match finisher.finish(commits(status)).await {
                    None => response.map_into_left_body(),
                    Some(error) => response.into_response(render(&error)).map_into_right_body(),
                };
                end(&mut response, &finisher, timer);
                Ok(response)
            }
            .instrument(span),
        )
    }
}
