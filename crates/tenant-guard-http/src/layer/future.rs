//! The response futures: [`ResponseFuture`] (refuse, or call and then finish the transaction) and
//! [`TracedFuture`] (stamp the request id, record how the request ended).

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use http::Response;
use pin_project_lite::pin_project;
use tenant_guard_core::request_id::X_REQUEST_ID;
use tenant_guard_core::trace::RequestTimer;
use tenant_guard_core::{ErrorResponse, RequestId};
use tracing::Span;

use super::body::GuardBody;
use crate::admit::{PendingAdmission, Refused};
use crate::context::RequestContext;
use crate::finish::{Finish, Finisher, commits};
use crate::grpc;
use crate::trace::RequestTrace;

/// Calls the inner service once a pending admission admitted the request.
pub(crate) type Call<F> = Box<dyn FnOnce(RequestContext) -> F + Send>;

pin_project! {
    /// The response future of [`GuardService`](super::GuardService).
    pub struct ResponseFuture<F, B> {
        #[pin]
        state: State<F, B>,
        span: Span,
        request_id: RequestId,
        // Set in the future of the layer that opened the request's span: records status and
        // latency when the response is produced, or `cancelled` when this future is dropped.
        timer: Option<RequestTimer>,
        grpc: bool,
        finisher: Option<Finisher>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<F, B> {
        Refused { response: Option<ErrorResponse> },
        Admitting { admission: PendingAdmission, call: Option<Call<F>> },
        Called { #[pin] future: F },
        Finishing { finish: Finish, response: Option<Response<B>> },
    }
}

impl<F, B> fmt::Debug for ResponseFuture<F, B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture")
            .field("request_id", &self.request_id)
            .finish_non_exhaustive()
    }
}

impl<F, B> ResponseFuture<F, B> {
    pub(crate) fn new(
        span: Span,
        request_id: RequestId,
        timer: Option<RequestTimer>,
        grpc: bool,
    ) -> Self {
        Self {
            state: State::Refused { response: None },
            span,
            request_id,
            timer,
            grpc,
            finisher: None,
        }
    }

    pub(crate) fn refused(mut self, refused: Refused) -> Self {
        self.state = State::Refused {
            response: Some(refused.response().clone()),
        };
        self
    }

    pub(crate) fn called(mut self, future: F, finisher: Finisher) -> Self {
        self.state = State::Called { future };
        self.finisher = Some(finisher);
        self
    }

    pub(crate) fn admitting(mut self, admission: PendingAdmission, call: Call<F>) -> Self {
        self.state = State::Admitting {
            admission,
            call: Some(call),
        };
        self
    }
}

/// The guard's own answer: the JSON error response, or for gRPC a trailers-only status.
fn render<B>(error: &ErrorResponse, grpc: bool) -> Response<GuardBody<B>> {
    if grpc {
        let mut response = Response::new(GuardBody::guard(Bytes::new()));
        *response.headers_mut() = grpc::error_headers(error);
        return response;
    }
    let mut response = Response::new(GuardBody::guard(Bytes::from(error.body())));
    *response.status_mut() = error.status();
    let headers = response.headers_mut();
    for (name, value) in error.headers() {
        headers.insert(name, value);
    }
    response
}

impl<F, B, E> Future for ResponseFuture<F, B>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = Result<Response<GuardBody<B>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        let _entered = this.span.enter();
        loop {
            // The response, and the status recorded for it (a gRPC refusal's HTTP equivalent).
            let (mut response, status) = match this.state.as_mut().project() {
                StateProj::Refused { response } => {
                    let error = response.take().unwrap_or_else(ErrorResponse::internal);
                    (render(&error, *this.grpc), error.status())
                }
                StateProj::Admitting { admission, call } => {
                    match ready!(Pin::new(admission).poll(cx)) {
                        Ok(admitted) => {
                            let (context, finisher) = admitted.into_parts();
                            *this.finisher = Some(finisher);
                            match call.take() {
                                Some(call) => {
                                    let future = call(context);
                                    this.state.set(State::Called { future });
                                    continue;
                                }
                                None => this.state.set(State::Refused { response: None }),
                            }
                            continue;
                        }
                        Err(refused) => {
                            let error = refused.response();
                            (render(error, *this.grpc), error.status())
                        }
                    }
                }
                StateProj::Called { future } => {
                    let response = match ready!(future.poll(cx)) {
                        Ok(response) => response,
                        Err(error) => {
                            if let Some(finisher) = this.finisher.take() {
                                drop(finisher.finish(false));
                            }
                            if let Some(timer) = this.timer.take() {
                                timer.finish(500);
                            }
                            return Poll::Ready(Err(error));
                        }
                    };
                    match this.finisher.as_ref() {
                        None => {
                            let status = response.status();
                            (response.map(GuardBody::inner), status)
                        }
                        Some(finisher) => {
                            let mut commit = commits(response.status());
                            if *this.grpc {
                                commit &= grpc::succeeded(response.headers());
                            }
                            let finish = finisher.finish(commit);
                            this.state.set(State::Finishing {
                                finish,
                                response: Some(response),
                            });
                            continue;
                        }
                    }
                }
                StateProj::Finishing { finish, response } => {
                    let replacement = ready!(Pin::new(finish).poll(cx));
                    match replacement.or_else(|| response.is_none().then(ErrorResponse::internal)) {
                        Some(error) => (render(&error, *this.grpc), error.status()),
                        None => match response.take() {
                            Some(response) => {
                                let status = response.status();
                                (response.map(GuardBody::inner), status)
                            }
                            None => unreachable!("checked above"),
                        },
                    }
                }
            };
            match this.finisher.as_ref() {
                Some(finisher) => finisher.stamp(response.headers_mut()),
                None => {
                    response
                        .headers_mut()
                        .insert(X_REQUEST_ID, this.request_id.header_value().clone());
                }
            }
            if let Some(timer) = this.timer.take() {
                timer.finish(status.as_u16());
            }
            return Poll::Ready(Ok(response));
        }
    }
}

pin_project! {
    /// The response future of [`Tracing`](super::Tracing).
    pub struct TracedFuture<F> {
        #[pin]
        inner: F,
        trace: RequestTrace,
        timer: Option<RequestTimer>,
    }
}

impl<F> fmt::Debug for TracedFuture<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TracedFuture")
            .field("request_id", self.trace.id())
            .finish_non_exhaustive()
    }
}

impl<F> TracedFuture<F> {
    pub(crate) fn new(inner: F, trace: RequestTrace, timer: Option<RequestTimer>) -> Self {
        Self {
            inner,
            trace,
            timer,
        }
    }
}

impl<F, B, E> Future for TracedFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = Result<Response<B>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let _entered = this.trace.span().enter();
        let result = ready!(this.inner.poll(cx));
        let status = match &result {
            Ok(response) => response.status().as_u16(),
            Err(_) => 500,
        };
        if let Some(timer) = this.timer.take() {
            timer.finish(status);
        }
        Poll::Ready(result.map(|mut response| {
            response
                .headers_mut()
                .insert(X_REQUEST_ID, this.trace.id().header_value().clone());
            response
        }))
    }
}
