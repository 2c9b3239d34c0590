//! [`ResponseFuture`]: answers a rejection, or runs the inner service and then finishes the
//! request's scoped transaction before the response leaves.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use axum_core::response::Response;
use pin_project_lite::pin_project;
use tenant_guard_core::request_id::X_REQUEST_ID;
use tenant_guard_core::{RequestId, ToErrorResponse};
use tenant_guard_postgres::TenantTx;
use tracing::Span;

use crate::rejection::internal_error;
use crate::response::render;
use crate::slot::{Closed, Slot};

/// Commits or rolls back; yields a replacement response when a commit failed.
type Finish = Pin<Box<dyn Future<Output = Option<Response>> + Send>>;

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
        Called { #[pin] future: F, slot: Option<Slot<TenantTx>> },
        Finishing { finish: Finish, response: Option<Response> },
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

    pub(crate) fn called(
        future: F,
        slot: Option<Slot<TenantTx>>,
        span: Span,
        request_id: RequestId,
    ) -> Self {
        Self {
            state: State::Called { future, slot },
            span,
            request_id,
        }
    }
}

/// Commits after a success (2xx, 3xx), rolls back after anything else.
fn finish(tx: TenantTx, commit: bool) -> Finish {
    Box::pin(async move {
        if commit {
            match tx.commit().await {
                Ok(()) => None,
                Err(error) => {
                    tracing::warn!(%error, "commit failed; the handler's response is replaced");
                    Some(render(&error.to_error_response()))
                }
            }
        } else {
            if let Err(error) = tx.rollback().await {
                tracing::warn!(%error, "rollback failed; the connection is discarded by the guard");
            }
            None
        }
    })
}

impl<F, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response, E>>,
{
    type Output = Result<Response, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        let _entered = this.span.enter();
        loop {
            let mut response = match this.state.as_mut().project() {
                StateProj::Rejected { response } => match response.take() {
                    Some(response) => response,
                    None => render(&internal_error()),
                },
                StateProj::Called { future, slot } => {
                    let response = ready!(future.poll(cx))?;
                    match slot.as_ref().map_or(Closed::Unused, Slot::close) {
                        Closed::Unused => response,
                        Closed::Returned(tx) => {
                            let status = response.status();
                            let commit = status.is_success() || status.is_redirection();
                            this.state.set(State::Finishing {
                                finish: finish(tx, commit),
                                response: Some(response),
                            });
                            continue;
                        }
                        Closed::Outstanding => {
                            // The handler moved its TenantDb somewhere that outlives it: its work
                            // cannot be committed, so the handler's answer would be a lie.
                            tracing::error!(
                                "the scoped transaction outlived its handler (moved into a task?); \
                                 it is rolled back and the request fails"
                            );
                            render(&internal_error())
                        }
                    }
                }
                StateProj::Finishing { finish, response } => {
                    let replacement = ready!(finish.as_mut().poll(cx));
                    match replacement.or_else(|| response.take()) {
                        Some(response) => response,
                        None => render(&internal_error()),
                    }
                }
            };
            response
                .headers_mut()
                .insert(X_REQUEST_ID, this.request_id.header_value().clone());
            return Poll::Ready(Ok(response));
        }
    }
}
