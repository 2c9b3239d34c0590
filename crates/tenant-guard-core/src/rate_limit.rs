//! Per-org (optionally per-user) rate limits keyed on the verified [`Principal`].
//!
//! A [`RateLimiter`] allows `limit` requests per `period` for each org, with bursts, using GCRA
//! (the `governor` crate: one atomic per key in a sharded map, no global lock on the hot path).
//! It knows no web framework: the adapters call [`RateLimiter::check`] right after
//! authentication, before anything touches the pool, and render a [`RateLimited`] rejection like
//! every other error (429 `rate_limited`, `Retry-After`, the `RateLimit-*` headers of the IETF
//! draft, the usual JSON body).
//!
//! Memory stays bounded with many orgs: automatically (see
//! [`sweep_every`](RateLimiterBuilder::sweep_every)) and whenever you call
//! [`RateLimiter::sweep`] (e.g. from a timer), keys whose state is indistinguishable from a fresh
//! one (back to their full burst) are dropped and the map is shrunk. The next automatic sweep
//! comes after `max(sweep_every, keys kept)` further checks, so a sweep costs O(1) per check
//! amortized, however many orgs there are, and the map stays within the live keys plus as many
//! again (plus `sweep_every`).
//!
//! The state lives in this process: with several instances each one counts separately. For one
//! budget shared by every instance, use `tenant_guard_postgres::PgRateLimiter` (counters in the
//! PostgreSQL the app already has, one round trip per limited request). Both implement
//! [`RateLimitBackend`], which is what the adapters take; the in-memory limiter is decided
//! synchronously ([`RateLimitCheck::Ready`]) and costs the adapters nothing extra.
//!
//! ```
//! use tenant_guard_core::{RateLimiter, ServiceContext, Role, ToErrorResponse};
//! use uuid::Uuid;
//!
//! let limiter = RateLimiter::per_minute(2)?;
//! let alice = ServiceContext::new("doc").org_principal(Uuid::new_v4(), Role::new("authenticated")?);
//! let bob = ServiceContext::new("doc").org_principal(Uuid::new_v4(), Role::new("authenticated")?);
//!
//! assert!(limiter.check(&alice).is_ok());
//! assert!(limiter.check(&alice).is_ok());
//! let limited = limiter.check(&alice).unwrap_err();
//! let response = limited.to_error_response();
//! assert_eq!(response.status(), 429);
//! assert_eq!(response.code(), "rate_limited");
//! assert!(response.retry_after().is_some());
//! assert!(limiter.check(&bob).is_ok()); // another org is unaffected
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::fmt;
use std::future::Future;
use std::num::NonZeroU32;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::middleware::StateInformationMiddleware;
use governor::state::keyed::DashMapStateStore;
use governor::{Quota, clock::Reference};
use http::{HeaderName, HeaderValue, StatusCode};

use crate::response::{ErrorResponse, ToErrorResponse};
use crate::{OrgId, Principal};

/// `RateLimit-Limit` (IETF draft): the burst size, i.e. how many requests may come at once.
pub const RATELIMIT_LIMIT: HeaderName = HeaderName::from_static("ratelimit-limit");
/// `RateLimit-Remaining` (IETF draft): requests left right now.
pub const RATELIMIT_REMAINING: HeaderName = HeaderName::from_static("ratelimit-remaining");
/// `RateLimit-Reset` (IETF draft): seconds until the full burst is available again.
pub const RATELIMIT_RESET: HeaderName = HeaderName::from_static("ratelimit-reset");

/// How many checks pass between two automatic sweeps of idle keys, unless configured.
pub const DEFAULT_SWEEP_EVERY: u64 = 4096;

/// What one limiter counts: an org, or a user within an org.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Key {
    org: OrgId,
    user: Option<Box<str>>,
}

/// The clock-independent face of a governor keyed limiter.
trait Store: Send + Sync {
    /// `Ok(remaining burst capacity)` or `Err(time until the next request is allowed)`.
    fn check(&self, key: &Key) -> Result<u32, Duration>;
    /// Drops idle keys and shrinks the map.
    fn sweep(&self);
    /// Keys currently tracked.
    fn len(&self) -> usize;
}

type Governed<C> =
    governor::RateLimiter<Key, DashMapStateStore<Key>, C, StateInformationMiddleware>;

impl<C> Store for Governed<C>
where
    C: Clock + Send + Sync,
    C::Instant: Reference + Send + Sync,
{
    fn check(&self, key: &Key) -> Result<u32, Duration> {
        match self.check_key(key) {
            Ok(snapshot) => Ok(snapshot.remaining_burst_capacity()),
            Err(not_until) => Err(not_until.wait_time_from(self.clock().now())),
        }
    }

    fn sweep(&self) {
        self.retain_recent();
        self.shrink_to_fit();
    }

    fn len(&self) -> usize {
        governor::RateLimiter::len(self)
    }
}

/// A keyed GCRA rate limiter for the routes of one guard layer; cheap to clone (shared state).
///
/// Build it with [`RateLimiter::per_minute`] or [`RateLimiter::builder`], then give it to the
/// adapter's guard (`TenantGuardLayer::rate_limit` in axum, `TenantGuard::rate_limit` in actix).
/// Each clone shares the same counters; separate limiters (per route group) count separately.
#[derive(Clone)]
pub struct RateLimiter {
    inner: Arc<Inner>,
}

struct Inner {
    store: Box<dyn Store>,
    limit: u32,
    period: Duration,
    burst: u32,
    interval: Duration,
    per_user: bool,
    sweep_every: u64,
    checks: AtomicU64,
    /// The check count at which the next automatic sweep runs (`u64::MAX` while one runs).
    next_sweep: AtomicU64,
}

impl fmt::Debug for RateLimiter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let i = &self.inner;
        f.debug_struct("RateLimiter")
            .field("limit", &i.limit)
            .field("period", &i.period)
            .field("burst", &i.burst)
            .field("per_user", &i.per_user)
            .field("tracked_keys", &i.store.len())
            .finish_non_exhaustive()
    }
}

impl RateLimiter {
    /// `limit` requests per minute for each org, all of which may come at once.
    ///
    /// # Errors
    /// [`InvalidRateLimit::ZeroLimit`] when `limit` is 0.
    pub fn per_minute(limit: u32) -> Result<Self, InvalidRateLimit> {
        Self::builder(limit, Duration::from_secs(60)).build()
    }

    /// A limiter allowing `limit` requests per `period` for each org (one request is given back
    /// every `period / limit`); see [`RateLimiterBuilder`] for bursts and per-user keys.
    pub fn builder(limit: u32, period: Duration) -> RateLimiterBuilder {
        RateLimiterBuilder {
            limit,
            period,
            burst: None,
            per_user: false,
            sweep_every: DEFAULT_SWEEP_EVERY,
        }
    }

    /// Counts one request of `principal`: its org (and user, with
    /// [`per_user`](RateLimiterBuilder::per_user)).
    ///
    /// # Errors
    /// [`RateLimited`] when the key is over its limit; nothing is counted then.
    pub fn check(&self, principal: &Principal) -> Result<RateLimitStatus, RateLimited> {
        let i = &*self.inner;
        let key = Key {
            org: principal.org_id().clone(),
            user: i.per_user.then(|| principal.user_id().into()),
        };
        let outcome = i.store.check(&key);
        let n = i.checks.fetch_add(1, Ordering::Relaxed) + 1;
        let due = i.next_sweep.load(Ordering::Relaxed);
        // One caller claims a due sweep; the others go on without waiting for it.
        if n >= due
            && i.next_sweep
                .compare_exchange(due, u64::MAX, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            self.sweep();
            let kept = u64::try_from(i.store.len()).unwrap_or(u64::MAX);
            i.next_sweep
                .store(n.saturating_add(i.sweep_every.max(kept)), Ordering::Relaxed);
        }
        match outcome {
            Ok(remaining) => Ok(RateLimitStatus {
                limit: i.burst,
                remaining,
                reset: i.interval.saturating_mul(i.burst.saturating_sub(remaining)),
            }),
            Err(wait) => Err(RateLimited {
                limit: i.burst,
                retry_after: wait,
                reset: wait.saturating_add(i.interval.saturating_mul(i.burst.saturating_sub(1))),
            }),
        }
    }

    /// Drops the keys that are idle (their state equals a fresh one) and shrinks the map. Runs
    /// automatically (see [`sweep_every`](RateLimiterBuilder::sweep_every)) on the request that
    /// makes it due; call it from a timer too if traffic can stop for long. It locks the map's
    /// shards one at a time.
    pub fn sweep(&self) {
        self.inner.store.sweep();
        tracing::debug!(
            tracked_keys = self.inner.store.len(),
            "rate limiter swept idle keys"
        );
    }

    /// How many keys (orgs, or org/user pairs) are tracked now.
    pub fn tracked_keys(&self) -> usize {
        self.inner.store.len()
    }

    /// Requests allowed per [`period`](Self::period).
    pub fn limit(&self) -> u32 {
        self.inner.limit
    }

    /// The period the [`limit`](Self::limit) applies to.
    pub fn period(&self) -> Duration {
        self.inner.period
    }
}

/// Configures a [`RateLimiter`]; from [`RateLimiter::builder`].
#[derive(Debug, Clone)]
#[must_use]
pub struct RateLimiterBuilder {
    limit: u32,
    period: Duration,
    burst: Option<u32>,
    per_user: bool,
    sweep_every: u64,
}

impl RateLimiterBuilder {
    /// How many requests may come at once (default: `limit`). A smaller burst spreads the
    /// requests evenly over the period.
    pub fn burst(mut self, burst: u32) -> Self {
        self.burst = Some(burst);
        self
    }

    /// Counts each user of an org separately (key: org and `sub`) instead of the org as a whole.
    pub fn per_user(mut self) -> Self {
        self.per_user = true;
        self
    }

    /// Sweeps idle keys automatically after `checks` checks (default [`DEFAULT_SWEEP_EVERY`]; 0
    /// means the default), or after as many checks as keys were kept by the last sweep when that
    /// is more (so sweeping a big map stays cheap per request).
    pub fn sweep_every(mut self, checks: u64) -> Self {
        self.sweep_every = if checks == 0 {
            DEFAULT_SWEEP_EVERY
        } else {
            checks
        };
        self
    }

    /// The limiter, on the process's monotonic clock.
    ///
    /// # Errors
    /// [`InvalidRateLimit`] for a zero limit or burst, or a period too short for the limit.
    pub fn build(self) -> Result<RateLimiter, InvalidRateLimit> {
        self.build_with_clock(DefaultClock::default())
    }

    fn build_with_clock<C>(self, clock: C) -> Result<RateLimiter, InvalidRateLimit>
    where
        C: Clock + Send + Sync + 'static,
        C::Instant: Reference + Send + Sync,
    {
        if self.limit == 0 {
            return Err(InvalidRateLimit::ZeroLimit);
        }
        let burst = self.burst.unwrap_or(self.limit);
        let burst_nz = NonZeroU32::new(burst).ok_or(InvalidRateLimit::ZeroBurst)?;
        let interval = self.period / self.limit;
        let quota = Quota::with_period(interval)
            .ok_or(InvalidRateLimit::PeriodTooShort)?
            .allow_burst(burst_nz);
        let store: Governed<C> =
            governor::RateLimiter::dashmap_with_clock(quota, clock).with_middleware();
        Ok(RateLimiter {
            inner: Arc::new(Inner {
                store: Box::new(store),
                limit: self.limit,
                period: self.period,
                burst,
                interval,
                per_user: self.per_user,
                sweep_every: self.sweep_every,
                checks: AtomicU64::new(0),
                next_sweep: AtomicU64::new(self.sweep_every),
            }),
        })
    }
}

/// Why a [`RateLimiterBuilder`] refused its configuration.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum InvalidRateLimit {
    /// The limit is 0 (to forbid every request, don't route it).
    #[error("the rate limit must allow at least one request per period")]
    ZeroLimit,
    /// The burst is 0, which would refuse every request.
    #[error("the rate limit burst must be at least 1")]
    ZeroBurst,
    /// `period / limit` rounds to zero.
    #[error("the rate limit period is too short for its limit")]
    PeriodTooShort,
}

/// A request that passed the limiter, with what is left of its key's quota.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimitStatus {
    limit: u32,
    remaining: u32,
    reset: Duration,
}

impl RateLimitStatus {
    /// A status reported by a [`RateLimitBackend`]: `limit` requests (`RateLimit-Limit`),
    /// `remaining` of them left now, the full quota back after `reset`.
    pub fn new(limit: u32, remaining: u32, reset: Duration) -> Self {
        Self {
            limit,
            remaining,
            reset,
        }
    }

    /// The burst size (`RateLimit-Limit`).
    pub fn limit(&self) -> u32 {
        self.limit
    }

    /// Requests left right now (`RateLimit-Remaining`).
    pub fn remaining(&self) -> u32 {
        self.remaining
    }

    /// Time until the full burst is available again (`RateLimit-Reset`, rounded up to seconds).
    pub fn reset(&self) -> Duration {
        self.reset
    }

    /// The three `RateLimit-*` headers for this status.
    pub fn headers(&self) -> [(HeaderName, HeaderValue); 3] {
        ratelimit_headers(self.limit, self.remaining, self.reset)
    }
}

/// The rejection of a request over its key's limit: 429 `rate_limited` with `Retry-After`
/// (seconds, rounded up) and the `RateLimit-*` headers.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("rate limit exceeded; retry in {}s", ceil_secs(*.retry_after))]
pub struct RateLimited {
    limit: u32,
    retry_after: Duration,
    reset: Duration,
}

impl RateLimited {
    /// A rejection reported by a [`RateLimitBackend`]: the key's quota is `limit` requests, the
    /// next one is allowed after `retry_after`, the full quota is back after `reset`.
    pub fn new(limit: u32, retry_after: Duration, reset: Duration) -> Self {
        Self {
            limit,
            retry_after,
            reset,
        }
    }

    /// Time until the next request of this key is allowed.
    pub fn retry_after(&self) -> Duration {
        self.retry_after
    }

    /// The burst size (`RateLimit-Limit`).
    pub fn limit(&self) -> u32 {
        self.limit
    }

    /// Time until the full burst is available again (`RateLimit-Reset`).
    pub fn reset(&self) -> Duration {
        self.reset
    }
}

impl ToErrorResponse for RateLimited {
    fn to_error_response(&self) -> ErrorResponse {
        let seconds = ceil_secs(self.retry_after).max(1);
        let mut response = ErrorResponse::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limited",
            format!("too many requests; retry after {seconds} s"),
        )
        .with_retry_after(seconds);
        for (name, value) in ratelimit_headers(self.limit, 0, self.reset) {
            response = response.with_header(name, value);
        }
        response
    }
}

/// Why a [`RateLimitBackend`] refused a request.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RateLimitError {
    /// The key is over its limit: 429 `rate_limited` (see [`RateLimited`]).
    #[error(transparent)]
    Limited(#[from] RateLimited),
    /// The backend could not decide (its database is unreachable, slow or not set up) and is
    /// configured to fail closed: 503 `rate_limit_unavailable` with `Retry-After: 1`. The cause
    /// stays in the [`source`](std::error::Error::source), for logs; the response names none.
    #[error("the rate limit backend is unavailable")]
    Unavailable(#[source] Box<dyn std::error::Error + Send + Sync>),
}

impl ToErrorResponse for RateLimitError {
    fn to_error_response(&self) -> ErrorResponse {
        match self {
            Self::Limited(limited) => limited.to_error_response(),
            Self::Unavailable(_) => ErrorResponse::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "rate_limit_unavailable",
                "the rate limit cannot be checked right now; retry shortly",
            )
            .with_retry_after(1),
        }
    }
}

/// The outcome of one [`RateLimitBackend::check_request`]: known at once (an in-memory limiter,
/// no allocation, nothing to await) or after a round trip (a shared backend).
///
/// The adapters decide a [`Ready`](Self::Ready) check synchronously on the request's path and
/// await only a [`Pending`](Self::Pending) one. [`outcome`](Self::outcome) awaits either.
#[must_use = "a check does nothing until its outcome is looked at"]
pub enum RateLimitCheck {
    /// Decided without waiting.
    Ready(Result<RateLimitStatus, RateLimitError>),
    /// Decided when this future completes (it owns what it needs: `'static`, `Send`).
    Pending(Pin<Box<dyn Future<Output = Result<RateLimitStatus, RateLimitError>> + Send>>),
}

impl RateLimitCheck {
    /// The outcome, awaiting a pending check.
    pub async fn outcome(self) -> Result<RateLimitStatus, RateLimitError> {
        match self {
            Self::Ready(outcome) => outcome,
            Self::Pending(check) => check.await,
        }
    }
}

impl fmt::Debug for RateLimitCheck {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Ready(outcome) => f.debug_tuple("Ready").field(outcome).finish(),
            Self::Pending(_) => f.debug_tuple("Pending").finish_non_exhaustive(),
        }
    }
}

/// What the adapters' `rate_limit(…)` accepts: something that counts one request of a verified
/// [`Principal`] and says whether it may go on.
///
/// Two implementations ship: [`RateLimiter`] (in memory, per process, decided synchronously: the
/// fast default) and `tenant_guard_postgres::PgRateLimiter` (counters in the PostgreSQL the app
/// already has, shared by every instance, one round trip per check). Implement it for another
/// store (Redis, say) the same way: return [`RateLimitCheck::Ready`] when you can decide without
/// I/O, else a [`RateLimitCheck::Pending`] future that owns clones of what it needs.
///
/// ```
/// use tenant_guard_core::rate_limit::{RateLimitBackend, RateLimitCheck};
/// use tenant_guard_core::{RateLimiter, Role, ServiceContext};
/// use uuid::Uuid;
///
/// let limiter = RateLimiter::per_minute(1)?;
/// let org = ServiceContext::new("doc").org_principal(Uuid::new_v4(), Role::new("authenticated")?);
/// // The in-memory limiter decides at once.
/// assert!(matches!(limiter.check_request(&org), RateLimitCheck::Ready(Ok(_))));
/// assert!(matches!(limiter.check_request(&org), RateLimitCheck::Ready(Err(_))));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub trait RateLimitBackend: fmt::Debug + Send + Sync + 'static {
    /// Counts one request of `principal` (its org, or its org and user) if its key is within the
    /// limit. A refused request must not be counted.
    fn check_request(&self, principal: &Principal) -> RateLimitCheck;
}

impl RateLimitBackend for RateLimiter {
    fn check_request(&self, principal: &Principal) -> RateLimitCheck {
        RateLimitCheck::Ready(self.check(principal).map_err(RateLimitError::Limited))
    }
}

impl<B: RateLimitBackend + ?Sized> RateLimitBackend for Arc<B> {
    fn check_request(&self, principal: &Principal) -> RateLimitCheck {
        (**self).check_request(principal)
    }
}

fn ratelimit_headers(
    limit: u32,
    remaining: u32,
    reset: Duration,
) -> [(HeaderName, HeaderValue); 3] {
    [
        (RATELIMIT_LIMIT, HeaderValue::from(limit)),
        (RATELIMIT_REMAINING, HeaderValue::from(remaining)),
        (RATELIMIT_RESET, HeaderValue::from(ceil_secs(reset))),
    ]
}

/// Whole seconds, rounded up.
fn ceil_secs(d: Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

#[cfg(test)]
mod tests {
    use governor::clock::FakeRelativeClock;
    use http::header::{CONTENT_TYPE, RETRY_AFTER};

    use super::*;
    use crate::{Role, ServiceContext};
    use uuid::Uuid;

    fn principal(org: Uuid, user: &str) -> Principal {
        let claims = format!(r#"{{"sub":"{user}","org_id":"{org}"}}"#);
        Principal::from_verified(
            user.into(),
            org.into(),
            crate::OrgIdKind::Uuid,
            Role::new("authenticated").unwrap(),
            claims.into(),
            u64::MAX,
        )
    }

    fn org_principal(org: Uuid) -> Principal {
        ServiceContext::new("test").org_principal(org, Role::new("authenticated").unwrap())
    }

    fn limiter(builder: RateLimiterBuilder) -> (RateLimiter, FakeRelativeClock) {
        let clock = FakeRelativeClock::default();
        (builder.build_with_clock(clock.clone()).unwrap(), clock)
    }

    fn header(r: &ErrorResponse, name: &str) -> Option<HeaderValue> {
        r.headers().find(|(n, _)| n == name).map(|(_, v)| v)
    }

    #[test]
    fn the_limit_is_hit_after_the_burst_and_comes_back_after_retry_after() {
        let (limiter, clock) = limiter(RateLimiter::builder(3, Duration::from_secs(60)));
        let p = org_principal(Uuid::new_v4());
        let remaining: Vec<u32> = (0..3)
            .map(|_| limiter.check(&p).unwrap().remaining())
            .collect();
        assert_eq!(remaining, [2, 1, 0]);
        let limited = limiter.check(&p).unwrap_err();
        // One request is given back every 60 s / 3 = 20 s.
        assert_eq!(limited.retry_after(), Duration::from_secs(20));
        clock.advance(Duration::from_secs(19));
        assert_eq!(
            limiter.check(&p).unwrap_err().retry_after(),
            Duration::from_secs(1)
        );
        clock.advance(Duration::from_secs(1));
        assert_eq!(limiter.check(&p).unwrap().remaining(), 0);
        assert!(limiter.check(&p).is_err());
    }

    #[test]
    fn the_rejection_is_a_429_with_retry_after_ratelimit_headers_and_json() {
        let (limiter, clock) = limiter(RateLimiter::builder(2, Duration::from_secs(60)));
        let p = org_principal(Uuid::new_v4());
        limiter.check(&p).unwrap();
        limiter.check(&p).unwrap();
        clock.advance(Duration::from_millis(500));
        let r = limiter.check(&p).unwrap_err().to_error_response();
        assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(r.code(), "rate_limited");
        // 29.5 s to wait, rounded up.
        assert_eq!(r.retry_after(), Some(30));
        assert_eq!(header(&r, "retry-after"), Some(HeaderValue::from(30)));
        assert_eq!(header(&r, "ratelimit-limit"), Some(HeaderValue::from(2)));
        assert_eq!(
            header(&r, "ratelimit-remaining"),
            Some(HeaderValue::from(0))
        );
        // 29.5 s for the next request plus 30 s for the second one.
        assert_eq!(header(&r, "ratelimit-reset"), Some(HeaderValue::from(60)));
        assert_eq!(
            header(&r, CONTENT_TYPE.as_str()),
            Some(HeaderValue::from_static("application/json"))
        );
        assert!(r.headers().any(|(n, _)| n == RETRY_AFTER));
        let body: serde_json::Value = serde_json::from_str(&r.body()).unwrap();
        assert_eq!(body["error"], "rate_limited");
        assert_eq!(body["message"], "too many requests; retry after 30 s");
    }

    #[test]
    fn an_allowed_request_reports_its_ratelimit_headers() {
        let (limiter, _clock) = limiter(RateLimiter::builder(4, Duration::from_secs(60)));
        let p = org_principal(Uuid::new_v4());
        limiter.check(&p).unwrap();
        let status = limiter.check(&p).unwrap();
        assert_eq!((status.limit(), status.remaining()), (4, 2));
        assert_eq!(status.reset(), Duration::from_secs(30));
        let headers = status.headers();
        assert_eq!(headers[0], (RATELIMIT_LIMIT, HeaderValue::from(4)));
        assert_eq!(headers[1], (RATELIMIT_REMAINING, HeaderValue::from(2)));
        assert_eq!(headers[2], (RATELIMIT_RESET, HeaderValue::from(30)));
    }

    #[test]
    fn orgs_are_independent() {
        let (limiter, _clock) = limiter(RateLimiter::builder(1, Duration::from_secs(60)));
        let a = org_principal(Uuid::new_v4());
        let b = org_principal(Uuid::new_v4());
        limiter.check(&a).unwrap();
        assert!(limiter.check(&a).is_err());
        assert!(limiter.check(&b).is_ok());
        assert!(limiter.check(&b).is_err());
        assert_eq!(limiter.tracked_keys(), 2);
    }

    #[test]
    fn users_share_their_org_limit_unless_per_user() {
        let org = Uuid::new_v4();
        let (alice, bob) = (principal(org, "alice"), principal(org, "bob"));

        let (shared, _c) = limiter(RateLimiter::builder(1, Duration::from_secs(60)));
        shared.check(&alice).unwrap();
        assert!(shared.check(&bob).is_err(), "one org, one budget");

        let (per_user, _c) = limiter(RateLimiter::builder(1, Duration::from_secs(60)).per_user());
        per_user.check(&alice).unwrap();
        per_user.check(&bob).unwrap();
        assert!(per_user.check(&alice).is_err());
        // Same user id in another org: another key.
        assert!(per_user.check(&principal(Uuid::new_v4(), "alice")).is_ok());
    }

    #[test]
    fn a_smaller_burst_spreads_requests() {
        let (limiter, _clock) = limiter(RateLimiter::builder(60, Duration::from_secs(60)).burst(2));
        let p = org_principal(Uuid::new_v4());
        limiter.check(&p).unwrap();
        limiter.check(&p).unwrap();
        let limited = limiter.check(&p).unwrap_err();
        assert_eq!(limited.retry_after(), Duration::from_secs(1));
        assert_eq!(limited.limit(), 2);
    }

    #[test]
    fn idle_keys_are_swept_so_memory_stays_bounded() {
        let (limiter, clock) = limiter(RateLimiter::builder(10, Duration::from_secs(60)));
        for _ in 0..1000 {
            limiter.check(&org_principal(Uuid::new_v4())).unwrap();
        }
        let busy = org_principal(Uuid::new_v4());
        for _ in 0..10 {
            limiter.check(&busy).unwrap();
        }
        assert_eq!(limiter.tracked_keys(), 1001);
        clock.advance(Duration::from_secs(12));
        limiter.sweep();
        // The orgs that made one request are back to a fresh state; the busy one is not.
        assert_eq!(limiter.tracked_keys(), 1);
        // Two of its ten requests came back in 12 s; a fresh key would have 9 left after this one.
        assert_eq!(
            limiter.check(&busy).unwrap().remaining(),
            1,
            "sweeping must not reset a limit"
        );
    }

    #[test]
    fn sweeps_run_automatically_every_n_checks() {
        let (limiter, clock) =
            limiter(RateLimiter::builder(1, Duration::from_secs(60)).sweep_every(10));
        for _ in 0..10 {
            limiter.check(&org_principal(Uuid::new_v4())).unwrap();
        }
        assert_eq!(
            limiter.tracked_keys(),
            10,
            "all still recent at the 10th check"
        );
        clock.advance(Duration::from_secs(120));
        for _ in 0..10 {
            limiter.check(&org_principal(Uuid::new_v4())).unwrap();
        }
        // The 20th check swept the first ten away; without sweeping there would be 20.
        assert_eq!(limiter.tracked_keys(), 10);
        for _ in 0..1000 {
            limiter.check(&org_principal(Uuid::new_v4())).unwrap();
            clock.advance(Duration::from_secs(7));
        }
        // A sweep keeps the keys used in the last 120 s (about 17); the next one comes after
        // max(10, kept) checks: at most about twice the live keys, never the thousand used.
        assert!(limiter.tracked_keys() <= 40, "{}", limiter.tracked_keys());
    }

    #[test]
    fn a_big_live_map_is_swept_less_often() {
        let (limiter, _clock) =
            limiter(RateLimiter::builder(1, Duration::from_secs(60)).sweep_every(10));
        // 100 live keys (none idle): the sweep at check 10 keeps 10, the one at 20 keeps 20, at
        // 40 keeps 40, at 80 keeps 80; the next is due at 160, not at every tenth check.
        for _ in 0..100 {
            limiter.check(&org_principal(Uuid::new_v4())).unwrap();
        }
        assert_eq!(limiter.inner.next_sweep.load(Ordering::Relaxed), 160);
        assert_eq!(limiter.tracked_keys(), 100);
    }

    #[test]
    fn clones_share_counters() {
        let (limiter, _clock) = limiter(RateLimiter::builder(1, Duration::from_secs(60)));
        let p = org_principal(Uuid::new_v4());
        limiter.clone().check(&p).unwrap();
        assert!(limiter.check(&p).is_err());
    }

    #[test]
    fn the_in_memory_backend_is_decided_at_once() {
        let (limiter, _clock) = limiter(RateLimiter::builder(1, Duration::from_secs(60)));
        let backend: Arc<dyn RateLimitBackend> = Arc::new(limiter);
        let p = org_principal(Uuid::new_v4());
        match backend.check_request(&p) {
            RateLimitCheck::Ready(Ok(status)) => assert_eq!(status.remaining(), 0),
            other => panic!("expected an allowed, ready check: {other:?}"),
        }
        match backend.check_request(&p) {
            RateLimitCheck::Ready(Err(RateLimitError::Limited(limited))) => {
                assert_eq!(limited.retry_after(), Duration::from_secs(60));
            }
            other => panic!("expected a ready rejection: {other:?}"),
        }
    }

    #[test]
    fn an_unavailable_backend_is_a_503_that_names_no_cause() {
        let cause = std::io::Error::other("connection refused to db.internal:5432");
        let error = RateLimitError::Unavailable(Box::new(cause));
        let r = error.to_error_response();
        assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(r.code(), "rate_limit_unavailable");
        assert_eq!(r.retry_after(), Some(1));
        assert!(!r.body().contains("db.internal"), "{}", r.body());
        assert!(std::error::Error::source(&error).is_some());
        // A limited one renders exactly as RateLimited does.
        let limited = RateLimited::new(5, Duration::from_millis(1500), Duration::from_secs(9));
        let r = RateLimitError::from(limited.clone()).to_error_response();
        assert_eq!(r.body(), limited.to_error_response().body());
        assert_eq!(r.retry_after(), Some(2));
        assert_eq!(header(&r, "ratelimit-reset"), Some(HeaderValue::from(9)));
    }

    #[test]
    fn invalid_configurations_are_refused() {
        assert_eq!(
            RateLimiter::per_minute(0).unwrap_err(),
            InvalidRateLimit::ZeroLimit
        );
        assert_eq!(
            RateLimiter::builder(5, Duration::from_secs(1))
                .burst(0)
                .build()
                .unwrap_err(),
            InvalidRateLimit::ZeroBurst
        );
        assert_eq!(
            RateLimiter::builder(10, Duration::from_nanos(5))
                .build()
                .unwrap_err(),
            InvalidRateLimit::PeriodTooShort
        );
        let l = RateLimiter::per_minute(600).unwrap();
        assert_eq!((l.limit(), l.period()), (600, Duration::from_secs(60)));
        assert!(format!("{l:?}").contains("limit: 600"));
    }
}
