//! [`ResponseFuture`]: answers a rejection, or runs the inner service and then finishes the
//! request's scoped transaction before the response leaves.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use axum_core::response::Response;
use pin_project_lite::pin_project;
use tenant_guard_core::request_id::X_REQUEST_ID;
use tenant_guard_core::trace::RequestTimer;
use tenant_guard_core::{RateLimitStatus, RequestId, ToErrorResponse};
use tenant_guard_postgres::TenantTx;
use tracing::Span;

use crate::rejection::internal_error;
use crate::response::render;
use crate::slot::{Closed, Slot};

/// Commits or rolls back; yields a replacement response when a commit failed.
type Finish = Pin<Box<dyn Future<Output = Option<Response>> + Send>>;

/// A shared rate limit check, then the call of the inner service (or the rejection).
pub(crate) type Admit<F> = Pin<Box<dyn Future<Output = Admitted<F>> + Send>>;

/// What an [`Admit`] ends with.
pub(crate) enum Admitted<F> {
    /// Within the limit: the inner service's future, and the `RateLimit-*` figures.
    Called(F, RateLimitStatus),
    /// Over the limit, or the limiter could not decide.
    Rejected(Response),
}

pin_project! {
    /// The response future of [`TenantGuard`](crate::TenantGuard) and
    /// [`RequestTracing`](crate::RequestTracing).
    pub struct ResponseFuture<F> {
        #[pin]
        state: State<F>,
        span: Span,
        request_id: RequestId,
        // Set in the future of the layer that opened the request's span: records status and
        // latency when the response is produced, or `cancelled` when this future is dropped.
        timer: Option<RequestTimer>,
        rate_limit: Option<RateLimitStatus>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<F> {
        Rejected { response: Option<Response> },
        Limiting { admit: Admit<F>, slot: Option<Slot<TenantTx>> },
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
        timer: Option<RequestTimer>,
    ) -> Self {
        Self {
            state: State::Rejected {
                response: Some(render(&error.to_error_response())),
            },
            span,
            request_id,
            timer,
            rate_limit: None,
        }
    }

    /// Awaits `admit` (a shared rate limit check), then goes on as [`called`](Self::called).
    pub(crate) fn limiting(
        admit: Admit<F>,
        slot: Slot<TenantTx>,
        span: Span,
        request_id: RequestId,
        timer: Option<RequestTimer>,
    ) -> Self {
        Self {
            state: State::Limiting {
                admit,
                slot: Some(slot),
            },
            span,
            request_id,
            timer,
            rate_limit: None,
        }
    }

    /// Stamps the `RateLimit-*` headers of `status` on the response (unless it has its own).
    pub(crate) fn with_rate_limit(mut self, status: Option<RateLimitStatus>) -> Self {
        self.rate_limit = status;
        self
    }

    pub(crate) fn called(
        future: F,
        slot: Option<Slot<TenantTx>>,
        span: Span,
        request_id: RequestId,
        timer: Option<RequestTimer>,
    ) -> Self {
        Self {
            state: State::Called { future, slot },
            span,
            request_id,
            timer,
            rate_limit: None,
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
                StateProj::Limiting { admit, slot } => match ready!(admit.as_mut().poll(cx)) {
                    Admitted::Called(future, status) => {
                        *this.rate_limit = Some(status);
                        let slot = slot.take();
                        this.state.set(State::Called { future, slot });
                        continue;
                    }
                    Admitted::Rejected(response) => response,
                },
                StateProj::Called { future, slot } => {
                    let response = match ready!(future.poll(cx)) {
                        Ok(response) => response,
                        Err(error) => {
                            if let Some(timer) = this.timer.take() {
                                timer.finish(500);
                            }
                            return Poll::Ready(Err(error));
                        }
                    };
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
            if let Some(status) = this.rate_limit.take() {
                for (name, value) in status.headers() {
                    response.headers_mut().entry(name).or_insert(value);
                }
            }
            if let Some(timer) = this.timer.take() {
                timer.finish(response.status().as_u16());
            }
            return Poll::Ready(Ok(response));
        }
    }
}
