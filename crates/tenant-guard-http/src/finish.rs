//! The pipeline's second half: once the handler answered, commit or roll back by status, and the
//! headers every guarded response carries (`x-request-id`, `RateLimit-*`).

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures_util::FutureExt as _;
use tenant_guard_core::request_id::X_REQUEST_ID;
use tenant_guard_core::{ErrorResponse, RateLimitStatus, RequestId, ToErrorResponse};

use crate::db::{Held, Parts};
use crate::handoff::{Closed, TxSlot};

/// Whether a response with `status` commits the request's transaction: 2xx and 3xx do.
///
/// ```
/// assert!(tenant_guard_http::commits(http::StatusCode::CREATED));
/// assert!(!tenant_guard_http::commits(http::StatusCode::UNPROCESSABLE_ENTITY));
/// ```
pub fn commits(status: http::StatusCode) -> bool {
    status.is_success() || status.is_redirection()
}

/// Ends one admitted request: [`finish`](Self::finish) after the handler answered, and
/// [`stamp`](Self::stamp) the response.
#[derive(Debug)]
pub struct Finisher {
    slot: TxSlot<Held>,
    request_id: RequestId,
    rate_limit: Option<RateLimitStatus>,
}

impl Finisher {
    pub(crate) fn new(
        slot: TxSlot<Held>,
        request_id: RequestId,
        rate_limit: Option<RateLimitStatus>,
    ) -> Self {
        Self {
            slot,
            request_id,
            rate_limit,
        }
    }

    /// Closes the request's transaction slot and ends what it finds: commits when `commit`
    /// (see [`commits`]), rolls back otherwise. Resolves to the response that replaces the
    /// handler's, if any:
    ///
    /// - the commit failed: the guard's error;
    /// - the check-out at the first statement failed and the handler answered an error: the
    ///   check-out's error (503 with `Retry-After` for an exhausted pool), not whatever the
    ///   handler made of it;
    /// - the [`TenantDb`](crate::TenantDb) outlived its handler (moved into a task): 500, since
    ///   its work cannot be committed and the handler's answer would be a lie.
    pub fn finish(&self, commit: bool) -> Finish {
        let Parts { tx, failed } = match self.slot.close() {
            Closed::Unused => return Finish::ready(None),
            Closed::Outstanding => {
                tracing::error!(
                    "the scoped transaction outlived its handler (moved into a task?); \
                     it is rolled back and the request fails"
                );
                return Finish::ready(Some(ErrorResponse::internal()));
            }
            Closed::Returned(Held::Postgres(lazy)) => lazy.into_parts(),
            #[cfg(feature = "sqlx")]
            Closed::Returned(Held::Sqlx(held)) => {
                return Finish(Some(Box::pin(crate::sqlx::finish(held, commit))), None);
            }
        };
        match tx {
            None => Finish::ready(failed.filter(|_| !commit)),
            // The org's permit (with a per-org cap) is released once the transaction ended.
            Some((tx, permit)) if commit => Finish(
                Some(Box::pin(async move {
                    let _permit = permit;
                    match tx.commit().await {
                        Ok(()) => None,
                        Err(error) => {
                            tracing::warn!(%error, "commit failed; the handler's response is replaced");
                            Some(error.to_error_response())
                        }
                    }
                })),
                None,
            ),
            Some((tx, _permit)) => {
                // Queued without waiting: resolves at once.
                if let Some(Err(error)) = tx.rollback().now_or_never() {
                    tracing::warn!(%error, "rollback failed; the connection is discarded by the guard");
                }
                Finish::ready(None)
            }
        }
    }

    /// The request id (for `x-request-id`).
    pub fn request_id(&self) -> &RequestId {
        &self.request_id
    }

    /// The `RateLimit-*` figures of a request that passed a limiter.
    pub fn rate_limit(&self) -> Option<&RateLimitStatus> {
        self.rate_limit.as_ref()
    }

    /// Sets `x-request-id` (replacing the handler's) and the `RateLimit-*` headers (unless the
    /// handler set its own) on a response's headers.
    pub fn stamp(&self, headers: &mut http::HeaderMap) {
        for (name, value, replace) in self.stamped_headers() {
            if replace {
                headers.insert(name, value);
            } else {
                headers.entry(name).or_insert(value);
            }
        }
    }

    /// What [`stamp`](Self::stamp) sets, for adapters whose header map is not `http`'s: each
    /// header with whether it replaces the handler's (`x-request-id`) or only fills in
    /// (`RateLimit-*`: the handler's own win).
    pub fn stamped_headers(
        &self,
    ) -> impl Iterator<Item = (http::HeaderName, http::HeaderValue, bool)> + '_ {
        let id = (X_REQUEST_ID, self.request_id.header_value().clone(), true);
        let limits = self.rate_limit.iter().flat_map(|status| {
            status
                .headers()
                .into_iter()
                .map(|(name, value)| (name, value, false))
        });
        std::iter::once(id).chain(limits)
    }
}

/// The end of a request's transaction: resolves to the replacement response, if any (see
/// [`Finisher::finish`]). `Send`; allocates only to await a commit.
pub struct Finish(
    Option<Pin<Box<dyn Future<Output = Option<ErrorResponse>> + Send>>>,
    Option<ErrorResponse>,
);

impl Finish {
    fn ready(replacement: Option<ErrorResponse>) -> Self {
        Self(None, replacement)
    }
}

impl fmt::Debug for Finish {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Finish")
            .field("committing", &self.0.is_some())
            .finish_non_exhaustive()
    }
}

impl Future for Finish {
    type Output = Option<ErrorResponse>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match &mut self.0 {
            Some(commit) => commit.as_mut().poll(cx),
            None => Poll::Ready(self.1.take()),
        }
    }
}
