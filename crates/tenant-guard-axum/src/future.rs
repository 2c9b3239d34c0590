//! [`ResponseFuture`]: answers a rejection, or runs the inner service; stamps `x-request-id`.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use axum_core::response::Response;
use pin_project_lite::pin_project;
use tenant_guard_core::request_id::X_REQUEST_ID;
use tenant_guard_core::{RequestId, ToErrorResponse};
use tracing::Span;

use crate::rejection::internal_error;
use crate::response::render;

pin_project! {
    /// The response future of [`TenantGuard`](crate::TenantGuard) and
    /// [`RequestTracing`](crate::RequestTracing).
    pub struct ResponseFuture<F> {
        #[pin]
        state: State<F>,
        span: Span,
        request_id: RequestId,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<F> {
        Rejected { response: Option<Response> },
        Called { #[pin] future: F },
    }
}

impl<F> std::fmt::Debug for ResponseFuture<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseFuture")
            .field("request_id", &self.request_id)
            .finish_non_exhaustive()
    }
}

impl<F> ResponseFuture<F> {
    pub(crate) fn rejected<E: ToErrorResponse>(
        error: &E,
        span: Span,
        request_id: RequestId,
    ) -> Self {
        Self {
            state: State::Rejected {
                response: Some(render(&error.to_error_response())),
            },
            span,
            request_id,
        }
    }

    pub(crate) fn called(future: F, span: Span, request_id: RequestId) -> Self {
        Self {
            state: State::Called { future },
            span,
            request_id,
        }
    }
}

impl<F, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response, E>>,
{
    type Output = Result<Response, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        let _entered = this.span.enter();
        let mut response = match this.state.as_mut().project() {
            StateProj::Rejected { response } => match response.take() {
                Some(response) => response,
                None => render(&internal_error()),
            },
            StateProj::Called { future } => ready!(future.poll(cx))?,
        };
        response
            .headers_mut()
            .insert(X_REQUEST_ID, this.request_id.header_value().clone());
        Poll::Ready(Ok(response))
    }
}
