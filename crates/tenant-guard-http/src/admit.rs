//! Admission, the pipeline's first half: authenticate, check the role, count the request against
//! the rate limit, choose the pool (outer-pool rule) — all before anything touches the pool.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tenant_guard_core::{
    AuthError, ErrorResponse, Identity, OrgId, PendingOrg, Principal, RateLimitCheck,
    RateLimitStatus, RequestId, Role, ToErrorResponse, trace,
};
use tenant_guard_postgres::TenantPool;
use tracing::Span;

use crate::cap::OrgCap;
use crate::config::GuardConfig;
use crate::context::RequestContext;
use crate::finish::Finisher;
use crate::handoff::TxSlot;
use crate::membership::{OrgError, OrgMembership};
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
    sqlx: Option<crate::sqlx::SqlxPool>,
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
    /// With [`org_membership`](Self::org_membership), a token without an org gets its org from
    /// the request and step 2 waits on the membership lookup (an [`Admission::Pending`] step,
    /// unless the answer is cached): 400 `org_required`/`invalid_org_header`, 403
    /// `not_a_member`/`org_mismatch`. With [`allow_anonymous`](Self::allow_anonymous), a request
    /// without a token is admitted as the anonymous principal (a bad token is still 401).
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
        self.admit_request("", headers, trace, outer)
    }

    /// [`admit`](Self::admit) for a request to `path` (the URI's path, without the query): what
    /// adapters call, so that an org named in the path
    /// ([`OrgMembership::from_path`](crate::OrgMembership::from_path)) is found. Through
    /// [`admit`](Self::admit) no path names an org.
    ///
    /// ```
    /// # use tenant_guard_core::{Environment, Verifier};
    /// # use tenant_guard_http::{Admission, GuardConfig, RequestTrace};
    /// # let verifier = Verifier::builder(Environment::Production).hmac_secret("a-long-random-secret-from-your-vault").build()?;
    /// let request = http::Request::get("/orgs/7/projects").body(())?;
    /// let (trace, _timer) = RequestTrace::start(request.headers());
    /// let config = GuardConfig::new(verifier);
    /// let admission = config.admit_request(request.uri().path(), request.headers(), &trace, None);
    /// assert!(matches!(admission, Admission::Refused(_))); // no token
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn admit_request(
        &self,
        path: &str,
        headers: &http::HeaderMap,
        trace: &RequestTrace,
        outer: Option<&RequestContext>,
    ) -> Admission {
        let span = trace.span();
        let pool = match &self.pool {
            Some(pool) => Some((pool.clone(), self.org_cap.clone())),
            None => outer.and_then(RequestContext::pool_and_cap),
        };
        #[cfg(feature = "sqlx")]
        let sqlx = match &self.sqlx {
            Some(guard) => Some((guard.clone(), self.sqlx_cap.clone())),
            None => outer.and_then(RequestContext::sqlx_guard),
        };
        let principal = match span.in_scope(|| self.identify(headers, path, pool.as_ref())) {
            Ok(Identified::Ready(principal)) => principal,
            Ok(Identified::Lookup(lookup)) => {
                let (config, span) = (self.clone(), span.clone());
                let (request_id, first) = (trace.id().clone(), outer.is_none());
                return Admission::Pending(PendingAdmission(Box::pin(async move {
                    let principal = match lookup.run().await {
                        Ok(principal) => principal,
                        Err(error) => return Err(Refused::new(&span, *error)),
                    };
                    match config.proceed(
                        principal,
                        &span,
                        request_id,
                        pool,
                        #[cfg(feature = "sqlx")]
                        sqlx,
                        first,
                    ) {
                        Admission::Admitted(admitted) => Ok(admitted),
                        Admission::Refused(refused) => Err(refused),
                        Admission::Pending(pending) => pending.await,
                    }
                })));
            }
            Err(error) => return Admission::Refused(Refused::new(span, *error)),
        };
        self.proceed(
            principal,
            span,
            trace.id().clone(),
            pool,
            #[cfg(feature = "sqlx")]
            sqlx,
            outer.is_none(),
        )
    }

    /// Steps 1–2 (and the org choice): the principal, or the membership lookup still to run.
    fn identify(
        &self,
        headers: &http::HeaderMap,
        path: &str,
        pool: Option<&(TenantPool, Option<Arc<OrgCap>>)>,
    ) -> Result<Identified, Box<ErrorResponse>> {
        let Some(membership) = &self.membership else {
            return match self.authorize(headers) {
                Ok(principal) => Ok(Identified::Ready(principal)),
                Err(AuthError::MissingToken) if self.anonymous.is_some() => {
                    Ok(Identified::Ready(self.anonymous_principal()))
                }
                Err(error) => Err(refusal(&error)),
            };
        };
        let identity = match self.verifier.authenticate_identity(headers) {
            Ok(identity) => identity,
            Err(AuthError::MissingToken) if self.anonymous.is_some() => {
                return Ok(Identified::Ready(self.anonymous_principal()));
            }
            Err(error) => return Err(refusal(&error)),
        };
        // Parsed with the kind of org id the token's issuer is configured with.
        let kind = match &identity {
            Identity::Org(principal) => principal.org_id_kind(),
            Identity::NeedsOrg(pending) => pending.org_id_kind(),
            // A kind of identity this pipeline does not know: refuse.
            _ => return Err(refusal(&AuthError::InvalidOrg)),
        };
        let requested = membership
            .requested_org(headers, path, kind)
            .map_err(|e| refusal(&e))?;
        let pending = match identity {
            Identity::Org(principal) => match &requested {
                // Another org than the token's: refused (the token's org is authoritative), or
                // checked like a token without an org (it is only the default).
                Some(org) if org != principal.org_id() => {
                    if membership.token_org_wins() {
                        return Err(refusal(&OrgError::Mismatch));
                    }
                    PendingOrg::from_principal(principal)
                }
                _ => {
                    self.check_role(&principal).map_err(|e| refusal(&e))?;
                    return Ok(Identified::Ready(principal));
                }
            },
            Identity::NeedsOrg(pending) => pending,
            _ => return Err(refusal(&AuthError::InvalidOrg)),
        };
        let org = requested.ok_or_else(|| refusal(&OrgError::Missing))?;
        let lookup = Lookup {
            config: self.clone(),
            membership: Arc::clone(membership),
            pool: pool.map(|(pool, _)| pool.clone()),
            pending,
            org,
        };
        match membership.cached(lookup.pending.user_id(), &lookup.org) {
            Some(answer) => lookup.member(answer).map(Identified::Ready),
            None => Ok(Identified::Lookup(lookup)),
        }
    }

    fn anonymous_principal(&self) -> Principal {
        let role = self
            .anonymous
            .clone()
            .unwrap_or_else(|| unreachable!("only called with anonymous access on"));
        Principal::anonymous(role)
    }

    /// Steps 3–5: record the identity, the rate limit, the pool.
    fn proceed(
        &self,
        principal: Principal,
        span: &Span,
        request_id: RequestId,
        pool: Option<(TenantPool, Option<Arc<OrgCap>>)>,
        #[cfg(feature = "sqlx")] sqlx: Option<crate::sqlx::SqlxPool>,
        first: bool,
    ) -> Admission {
        // A guard nested in another one authenticates again but records the identity once.
        if first {
            trace::record_principal(span, &principal);
        }
        let check = self
            .rate_limit
            .as_ref()
            .map(|l| l.check_request(&principal));
        let ticket = Ticket {
            principal,
            request_id,
            pool,
            #[cfg(feature = "sqlx")]
            sqlx,
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

/// What authentication found.
enum Identified {
    Ready(Principal),
    Lookup(Lookup),
}

/// A membership lookup to run before the request is scoped.
struct Lookup {
    config: GuardConfig,
    membership: Arc<OrgMembership>,
    pool: Option<TenantPool>,
    pending: PendingOrg,
    org: OrgId,
}

impl Lookup {
    async fn run(self) -> Result<Principal, Box<ErrorResponse>> {
        let Some(pool) = &self.pool else {
            tracing::error!("org membership configured on a guard without a pool (server bug)");
            return Err(refusal(&OrgError::NoPool));
        };
        match self
            .membership
            .lookup(pool, self.pending.user_id(), &self.org)
            .await
        {
            Ok(answer) => self.member(answer),
            Err(error) => {
                if let OrgError::Lookup(cause) = &error {
                    tracing::warn!(error = %cause, "the membership lookup failed");
                }
                Err(refusal(&error))
            }
        }
    }

    /// The principal of a member (with the membership's role), or the refusal.
    fn member(self, answer: Option<Role>) -> Result<Principal, Box<ErrorResponse>> {
        let Some(role) = answer else {
            return Err(refusal(&OrgError::NotAMember));
        };
        if self
            .pool
            .as_ref()
            .is_some_and(|p| !p.allows_user_role(&role))
        {
            tracing::warn!(org_id = %self.org, %role, "the membership's role is not a user role of the pool");
            return Err(refusal(&OrgError::RoleNotAllowed));
        }
        let principal = self.pending.into_member(self.org, role);
        self.config
            .check_role(&principal)
            .map_err(|e| refusal(&e))?;
        Ok(principal)
    }
}

/// A refusal, boxed (an `ErrorResponse` is large for a `Result`'s error).
fn refusal(error: &impl ToErrorResponse) -> Box<ErrorResponse> {
    Box::new(error.to_error_response())
}
