//! Admission, the pipeline's first half: authenticate, check the role, count the request against
//! the rate limit, choose the pool (outer-pool rule) — all before anything touches the pool.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tenant_guard_core::{
    ErrorResponse, Principal, RateLimitCheck, RateLimitStatus, RequestId, ToErrorResponse, trace,
};
use tenant_guard_postgres::TenantPool;
use tracing::Span;

use crate::cap::OrgCap;
use crate::config::GuardConfig;
use crate::context::RequestContext;
use crate::finish::Finisher;
use crate::handoff::TxSlot;
use crate::trace::RequestTrace;

/// The verdict on a request: [`GuardConfig::admit`]'s answer.
#[derive(Debug)]
pub enum Admission {
    /// Admitted now: put the context into the request, call the handler, then finish.
    Admitted(Admitted),
    /// Refused: answer with the response (recorded on the span already).
    Refused(Refused),
    /// A step is awaited (a shared rate limit's round trip) before the verdict.
    Pending(PendingAdmission),
}

impl Admission {
    /// The verdict, awaiting a [`Pending`](Self::Pending) step: for adapters whose middleware is
    /// an `async` block (the tower layer polls the steps itself).
    pub async fn resolve(self) -> Result<Admitted, Refused> {
        match self {
            Self::Admitted(admitted) => Ok(admitted),
            Self::Refused(refused) => Err(refused),
            Self::Pending(pending) => pending.await,
        }
    }
}

/// An admitted request: the [`RequestContext`] for its handler and the [`Finisher`] that ends it.
#[derive(Debug)]
pub struct Admitted {
    context: RequestContext,
    finisher: Finisher,
}

impl Admitted {
    /// The context, for the request's extensions.
    pub fn context(&self) -> &RequestContext {
        &self.context
    }

    /// The context and the finisher.
    pub fn into_parts(self) -> (RequestContext, Finisher) {
        (self.context, self.finisher)
    }
}

/// A refused request: the error response to send (before the handler, before the pool).
#[derive(Debug, Clone)]
pub struct Refused {
    response: ErrorResponse,
}

impl Refused {
    fn new(span: &Span, response: ErrorResponse) -> Self {
        trace::record_rejection(span, response.status().as_u16(), response.code());
        Self { response }
    }

    /// The response to send.
    pub fn response(&self) -> &ErrorResponse {
        &self.response
    }
}

/// An admission waiting on an asynchronous step (`Send + 'static`).
pub struct PendingAdmission(Pin<Box<dyn Future<Output = Result<Admitted, Refused>> + Send>>);

impl fmt::Debug for PendingAdmission {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("PendingAdmission").finish_non_exhaustive()
    }
}

impl Future for PendingAdmission {
    type Output = Result<Admitted, Refused>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.0.as_mut().poll(cx)
    }
}

/// What an admitted request carries from one step to the next.
struct Ticket {
    principal: Principal,
    request_id: RequestId,
    pool: Option<(TenantPool, Option<Arc<OrgCap>>)>,
    #[cfg(feature = "sqlx")]
    sqlx: Option<tenant_guard_sqlx::SqlxGuard>,
}

impl Ticket {
    fn admit(self, rate_limit: Option<RateLimitStatus>) -> Admitted {
        let slot = TxSlot::new();
        let finisher = Finisher::new(slot.clone(), self.request_id.clone(), rate_limit);
        let context = RequestContext::new(
            self.principal,
            self.request_id,
            self.pool,
            #[cfg(feature = "sqlx")]
            self.sqlx,
            slot,
        );
        Admitted { context, finisher }
    }
}

impl GuardConfig {
    /// Decides on a request from its headers, in this order (each step only if the previous
    /// passed; none touches the pool):
    ///
    /// 1. **authenticate**: the token from the `Authorization` header (or an opted-in cookie)
    ///    verified by the [`Verifier`](tenant_guard_core::Verifier); 401 with an RFC 6750
    ///    challenge otherwise;
    /// 2. **role check**: [`allow_roles`](Self::allow_roles); 403 `role_not_allowed`;
    /// 3. the identity is recorded on the request span (once, by the outermost guard);
    /// 4. **rate limit**: [`rate_limit`](Self::rate_limit); 429 (or the shared limiter's 503);
    /// 5. **pool**: this guard's (with its
    ///    [`max_connections_per_org`](Self::max_connections_per_org)), else the `outer` guard's
    ///    (a nested guard without a pool).
    ///
    /// `outer` is the context an outer guard already put into the request, if any.
    ///
    /// Steps to come (issue 14) slot in between 2 and 4 as further [`Admission::Pending`] steps:
    /// an asynchronous org-membership lookup that picks the org before scoping, and an opt-in
    /// path that admits a request without a token as the `anon` role.
    ///
    /// ```
    /// use tenant_guard_core::{Environment, Verifier};
    /// use tenant_guard_http::{Admission, GuardConfig, RequestTrace};
    ///
    /// let verifier = Verifier::builder(Environment::Production)
    ///     .hmac_secret("a-long-random-secret-from-your-vault")
    ///     .build()?;
    /// let headers = http::HeaderMap::new();
    /// let (trace, _timer) = RequestTrace::start(&headers);
    /// let Admission::Refused(refused) = GuardConfig::new(verifier).admit(&headers, &trace, None)
    /// else {
    ///     unreachable!("no token")
    /// };
    /// assert_eq!(refused.response().status(), 401);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn admit(
        &self,
        headers: &http::HeaderMap,
        trace: &RequestTrace,
        outer: Option<&RequestContext>,
    ) -> Admission {
        let span = trace.span();
        let principal = match span.in_scope(|| self.authorize(headers)) {
            Ok(principal) => principal,
            Err(error) => return Admission::Refused(Refused::new(span, error.to_error_response())),
        };
        // A guard nested in another one authenticates again but records the identity once.
        if outer.is_none() {
            trace::record_principal(span, &principal);
        }
        let check = self
            .rate_limit
            .as_ref()
            .map(|l| l.check_request(&principal));
        let ticket = Ticket {
            principal,
            request_id: trace.id().clone(),
            pool: match &self.pool {
                Some(pool) => Some((pool.clone(), self.org_cap.clone())),
                None => outer.and_then(RequestContext::pool_and_cap),
            },
            #[cfg(feature = "sqlx")]
            sqlx: match &self.sqlx {
                Some(guard) => Some(guard.clone()),
                None => outer.and_then(RequestContext::sqlx_guard),
            },
        };
        match check {
            None => Admission::Admitted(ticket.admit(None)),
            Some(RateLimitCheck::Ready(Ok(status))) => {
                Admission::Admitted(ticket.admit(Some(status)))
            }
            Some(RateLimitCheck::Ready(Err(error))) => {
                Admission::Refused(Refused::new(span, error.to_error_response()))
            }
            Some(RateLimitCheck::Pending(check)) => {
                let span = span.clone();
                Admission::Pending(PendingAdmission(Box::pin(async move {
                    match check.await {
                        Ok(status) => Ok(ticket.admit(Some(status))),
                        Err(error) => Err(Refused::new(&span, error.to_error_response())),
                    }
                })))
            }
        }
    }
}
