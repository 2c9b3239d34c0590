//! [`GuardService`] and [`Tracing`]: the services of the two layers.

use std::fmt;
use std::marker::PhantomData;
use std::task::{Context, Poll};

use http::{Request, Response};
use tower_service::Service;

use super::RouteSource;
use super::body::GuardBody;
use super::future::{ResponseFuture, TracedFuture};
use crate::admit::Admission;
use crate::config::GuardConfig;
use crate::context::RequestContext;
use crate::grpc;
use crate::trace::RequestTrace;

/// The request's trace (reused or new), with the route recorded by the first layer that knows it.
fn trace_of<B, R: RouteSource>(
    request: &mut Request<B>,
) -> (RequestTrace, Option<tenant_guard_core::trace::RequestTimer>) {
    let (mut trace, timer) = RequestTrace::of(request);
    if trace.record_route(R::route(request.extensions())) {
        request.extensions_mut().insert(trace.clone());
    }
    (trace, timer)
}

/// What an admitted request's extensions get: the context, the principal (for extractors that
/// read it alone), the request id (already there from the trace).
fn admit_into<B>(request: &mut Request<B>, context: RequestContext) {
    let extensions = request.extensions_mut();
    extensions.insert(context.principal().clone());
    extensions.insert(context);
}

/// The service of [`GuardLayer`](super::GuardLayer): guards `S`.
pub struct GuardService<S, R = super::NoRoute> {
    inner: S,
    config: GuardConfig,
    route: PhantomData<fn() -> R>,
}

/// [`GuardService`] for stacks without routing (tonic, hyper).
pub type TenantGuard<S> = GuardService<S, super::NoRoute>;

impl<S, R> GuardService<S, R> {
    /// Guards `inner` with `config`.
    pub fn new(inner: S, config: GuardConfig) -> Self {
        Self {
            inner,
            config,
            route: PhantomData,
        }
    }

    /// The wrapped service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }
}

impl<S: Clone, R> Clone for GuardService<S, R> {
    fn clone(&self) -> Self {
        Self::new(self.inner.clone(), self.config.clone())
    }
}

impl<S: fmt::Debug, R> fmt::Debug for GuardService<S, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TenantGuard")
            .field("inner", &self.inner)
            .field("config", &self.config)
            .finish()
    }
}

impl<S, R, ReqBody, ResBody> Service<Request<ReqBody>> for GuardService<S, R>
where
    // Send + 'static: a pending admission step (a shared rate limit) is awaited before the inner
    // service is called, so the request and the service wait in the response future.
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone + Send + 'static,
    ReqBody: Send + 'static,
    R: RouteSource,
{
    type Response = Response<GuardBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future, ResBody>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<ReqBody>) -> Self::Future {
        let (trace, timer) = trace_of::<_, R>(&mut request);
        let grpc = grpc::is_grpc(request.headers());
        let outer = request.extensions().get::<RequestContext>().cloned();
        let admission = self.config.admit_request(
            request.uri().path(),
            request.headers(),
            &trace,
            outer.as_ref(),
        );
        let future = ResponseFuture::new(trace.span().clone(), trace.id().clone(), timer, grpc);
        // tower's readiness contract: call the instance that was polled ready, keep a fresh clone.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        match admission {
            Admission::Refused(refused) => future.refused(refused),
            Admission::Admitted(admitted) => {
                let (context, finisher) = admitted.into_parts();
                admit_into(&mut request, context);
                let called = trace.span().in_scope(|| inner.call(request));
                future.called(called, finisher)
            }
            Admission::Pending(pending) => future.admitting(
                pending,
                Box::new(move |context| {
                    admit_into(&mut request, context);
                    inner.call(request)
                }),
            ),
        }
    }
}

/// The service of [`TracingLayer`](super::TracingLayer).
pub struct Tracing<S, R = super::NoRoute> {
    inner: S,
    route: PhantomData<fn() -> R>,
}

impl<S, R> Tracing<S, R> {
    pub(crate) fn new(inner: S) -> Self {
        Self {
            inner,
            route: PhantomData,
        }
    }
}

impl<S: Clone, R> Clone for Tracing<S, R> {
    fn clone(&self) -> Self {
        Self::new(self.inner.clone())
    }
}

impl<S: fmt::Debug, R> fmt::Debug for Tracing<S, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RequestTracing")
            .field("inner", &self.inner)
            .finish()
    }
}

impl<S, R, ReqBody, ResBody> Service<Request<ReqBody>> for Tracing<S, R>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone,
    R: RouteSource,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = TracedFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<ReqBody>) -> Self::Future {
        let (trace, timer) = trace_of::<_, R>(&mut request);
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let future = trace.span().in_scope(|| inner.call(request));
        TracedFuture::new(future, trace, timer)
    }
}
