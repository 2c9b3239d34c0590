//! [`GuardConfig`]: the one configuration of the pipeline, shared by every adapter.

use std::sync::Arc;

use tenant_guard_core::{AuthError, Principal, RateLimitBackend, Role, Verifier};
use tenant_guard_postgres::TenantPool;

use crate::cap::OrgCap;
use crate::membership::OrgMembership;

/// What the guard does for the routes it wraps: who verifies tokens, which roles may pass, the
/// rate limit, and the pool [`TenantDb`](crate::TenantDb) checks its connection out of.
///
/// Every adapter's guard (the tower [`TenantGuardLayer`](crate::TenantGuardLayer), axum's
/// `TenantGuardLayer`, actix's `TenantGuard`) holds one and has the same builder methods, which
/// forward here; [`admit`](Self::admit) is the pipeline's first half.
///
/// ```
/// use tenant_guard_core::{Environment, RateLimiter, Verifier};
/// use tenant_guard_http::GuardConfig;
///
/// let verifier = Verifier::builder(Environment::Production)
///     .hmac_secret("a-long-random-secret-from-your-vault")
///     .build()?;
/// let config = GuardConfig::new(verifier)
///     .allow_roles(["authenticated"])
///     .rate_limit(RateLimiter::per_minute(600)?);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone)]
pub struct GuardConfig {
    pub(crate) verifier: Verifier,
    pub(crate) pool: Option<TenantPool>,
    #[cfg(feature = "sqlx")]
    pub(crate) sqlx: Option<tenant_guard_sqlx::SqlxGuard>,
    /// The per-org cap on the sqlx pool: its own count, the same limit as `org_cap`.
    #[cfg(feature = "sqlx")]
    pub(crate) sqlx_cap: Option<Arc<OrgCap>>,
    pub(crate) allowed_roles: Option<Arc<[Box<str>]>>,
    pub(crate) rate_limit: Option<Arc<dyn RateLimitBackend>>,
    pub(crate) org_cap: Option<Arc<OrgCap>>,
    pub(crate) membership: Option<Arc<OrgMembership>>,
    pub(crate) anonymous: Option<Role>,
}

impl GuardConfig {
    /// A guard that authenticates with `verifier` and accepts every role it accepts. Without a
    /// [`pool`](Self::pool), handlers can read the principal but not use a
    /// [`TenantDb`](crate::TenantDb) (unless an outer guard has one).
    pub fn new(verifier: Verifier) -> Self {
        Self {
            verifier,
            pool: None,
            #[cfg(feature = "sqlx")]
            sqlx: None,
            #[cfg(feature = "sqlx")]
            sqlx_cap: None,
            allowed_roles: None,
            rate_limit: None,
            org_cap: None,
            membership: None,
            anonymous: None,
        }
    }

    /// The pool [`TenantDb`](crate::TenantDb) checks its connection out of (at its first
    /// statement). A guard without one, nested inside a guard that has one (e.g. a route's
    /// [`allow_roles`](Self::allow_roles) inside a scope's guard), uses the outer guard's pool.
    #[must_use]
    pub fn pool(mut self, pool: TenantPool) -> Self {
        self.pool = Some(pool);
        self
    }

    /// The sqlx guard [`SqlxDb`](crate::SqlxDb) begins its transaction on (feature `sqlx`),
    /// beside or instead of [`pool`](Self::pool); a nested guard without one uses the outer
    /// guard's (and its per-org cap). The per-org cap
    /// ([`max_connections_per_org`](Self::max_connections_per_org)) applies to this pool too,
    /// counted on its own: an org holds at most `limit` connections of each pool.
    #[cfg(feature = "sqlx")]
    #[must_use]
    pub fn sqlx_pool(mut self, guard: tenant_guard_sqlx::SqlxGuard) -> Self {
        self.sqlx = Some(guard);
        self
    }

    /// Restricts the routes to tokens whose role is one of `roles`; any other (verified) role is
    /// refused with 403 `role_not_allowed`. Without this, every role the verifier accepts passes.
    ///
    /// A role must also be in the verifier's allowlist to get this far. A name that is not a
    /// valid role never matches, so a typo locks the routes rather than opening them; an empty
    /// list refuses every request. For per-route requirements, wrap each group of routes in its
    /// own guard (each request still passes exactly one of them).
    #[must_use]
    pub fn allow_roles<I, R>(mut self, roles: I) -> Self
    where
        I: IntoIterator<Item = R>,
        R: AsRef<str>,
    {
        self.allowed_roles = Some(roles.into_iter().map(|r| r.as_ref().into()).collect());
        self
    }

    /// Limits the requests of each org (or user, see
    /// [`RateLimiterBuilder::per_user`](tenant_guard_core::rate_limit::RateLimiterBuilder::per_user)).
    /// Checked right after authentication and the role check, before anything touches the pool;
    /// over the limit: 429 `rate_limited` with `Retry-After`, the `RateLimit-*` headers and the
    /// usual JSON body. Every response of a request that passed carries the `RateLimit-*` headers
    /// too (the handler's own, if it set them, win).
    ///
    /// `limiter` is any [`RateLimitBackend`]: the in-memory
    /// [`RateLimiter`](tenant_guard_core::RateLimiter) (per process, decided synchronously) or
    /// `tenant_guard_postgres::PgRateLimiter` (one budget shared by every instance, one database
    /// round trip per request, awaited before the handler runs; when the database cannot answer,
    /// its `OnDatabaseError` policy decides, by default 503 `rate_limit_unavailable`).
    ///
    /// Clones of one limiter share their counters; give each route group its own limiter (or, for
    /// `PgRateLimiter`, its own name) for its own budget.
    #[must_use]
    pub fn rate_limit(mut self, limiter: impl RateLimitBackend) -> Self {
        self.rate_limit = Some(Arc::new(limiter));
        self
    }

    /// At most `limit` pooled connections held at once by the transactions of one org (on this
    /// guard's pool; a nested guard without a pool uses the outer guard's cap too). A
    /// transaction of an org at its cap fails at its first statement, at once, with
    /// [`GuardError::PoolTimeout`](tenant_guard_postgres::GuardError::PoolTimeout) (503
    /// `database_busy` with `Retry-After`), instead of taking one more connection, so one
    /// tenant's slow handlers cannot take the whole pool from the others. Without this, any org
    /// may use the whole pool. A `limit` of 0 is taken as 1.
    ///
    /// Both backends: a [`TenantDb`](crate::TenantDb) on [`pool`](Self::pool) and (feature
    /// `sqlx`) a `SqlxDb` on `sqlx_pool`, each pool with its own count; a `SqlxDb` at the cap
    /// fails its first `conn()` with `SqlxGuardError::PoolTimeout`, the same 503. A connection
    /// counts from its check-out until its transaction ended (committed, or rolled back after an
    /// error, a panic or a cancelled request).
    ///
    /// ```
    /// # use tenant_guard_core::{Environment, Verifier};
    /// # let verifier = Verifier::builder(Environment::Production).hmac_secret("a-long-random-secret-from-your-vault").build().unwrap();
    /// // With a pool of 16: no org holds more than 4 of them.
    /// let config = tenant_guard_http::GuardConfig::new(verifier).max_connections_per_org(4);
    /// ```
    #[must_use]
    pub fn max_connections_per_org(mut self, limit: usize) -> Self {
        self.org_cap = Some(Arc::new(OrgCap::new(limit.max(1))));
        #[cfg(feature = "sqlx")]
        {
            self.sqlx_cap = Some(Arc::new(OrgCap::new(limit.max(1))));
        }
        self
    }

    /// Header-selected orgs, checked in the database (off by default: without it, an org header
    /// is ignored and a token without an org is 403 `invalid_org`). For a token of an issuer with
    /// [`org_from_request`](tenant_guard_core::IssuerProfile::org_from_request), the org comes
    /// from the request and the membership SQL, run over this guard's pool (or the outer
    /// guard's) as a dedicated lookup role, decides: a member is scoped to that org with the role
    /// the membership grants (still subject to [`allow_roles`](Self::allow_roles)); anyone else
    /// is refused with 403 `not_a_member`, before any scoping. A token that names its own org
    /// wins, and a header naming another is 403 `org_mismatch` (unless
    /// [`TokenOrg::Default`](crate::TokenOrg::Default): then the header overrides it, after the
    /// same membership check). See [`OrgMembership`].
    ///
    /// ```
    /// # use tenant_guard_core::{Environment, IssuerProfile, Verifier};
    /// use tenant_guard_http::{GuardConfig, OrgMembership};
    ///
    /// let verifier = Verifier::builder(Environment::Production)
    ///     .add_issuer(
    ///         IssuerProfile::new("https://idp.example/")
    ///             .hmac_secret("a-long-random-secret-from-your-vault")
    ///             .org_from_request(true),
    ///     )
    ///     .build()?;
    /// let reader = tenant_guard_core::Role::new("membership_reader")?; // the lookup role
    /// let membership = OrgMembership::from_header(http::HeaderName::from_static("x-org-id"), reader);
    /// let cache = membership.cache_handle(); // `cache.invalidate(user, org)` on revocation
    /// let config = GuardConfig::new(verifier).org_membership(membership);
    /// # let _ = (cache, config);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[must_use]
    pub fn org_membership(mut self, membership: OrgMembership) -> Self {
        self.membership = Some(Arc::new(membership));
        self
    }

    /// Opens the routes to requests **without a token**: they get a transaction scoped to
    /// `role` (normally `anon`, which must be one of the pool's user roles) with no user and no
    /// org ([`Principal::anonymous`]), so Row Level Security decides what they see. A request
    /// that presents a token is authenticated as usual: a bad token is still 401. Wrap only the
    /// public route group in such a guard.
    ///
    /// ```
    /// # use tenant_guard_core::{Environment, Role, Verifier};
    /// # let verifier = Verifier::builder(Environment::Production).hmac_secret("a-long-random-secret-from-your-vault").build().unwrap();
    /// let public = tenant_guard_http::GuardConfig::new(verifier).allow_anonymous(Role::new("anon")?);
    /// # Ok::<(), tenant_guard_core::InvalidRole>(())
    /// ```
    #[must_use]
    pub fn allow_anonymous(mut self, role: Role) -> Self {
        self.anonymous = Some(role);
        self
    }

    /// The request headers admission reads besides `Authorization`, cookies and the trace
    /// headers (the org header of [`org_membership`](Self::org_membership)): an adapter that
    /// copies headers into an [`http::HeaderMap`] for [`admit`](Self::admit) copies these too.
    pub fn admission_headers(&self) -> impl Iterator<Item = &http::HeaderName> {
        self.membership.iter().filter_map(|m| m.header_name())
    }

    /// Applies the role requirement of [`allow_roles`](Self::allow_roles).
    pub(crate) fn check_role(&self, principal: &Principal) -> Result<(), AuthError> {
        if let Some(allowed) = &self.allowed_roles
            && !allowed.iter().any(|r| **r == *principal.role().as_str())
        {
            return Err(AuthError::RoleNotAllowed);
        }
        Ok(())
    }

    /// Verifies the token, then applies the role requirement.
    pub(crate) fn authorize(&self, headers: &http::HeaderMap) -> Result<Principal, AuthError> {
        let principal = self.verifier.authenticate(headers)?;
        self.check_role(&principal)?;
        Ok(principal)
    }
}

/// Gives an adapter's guard type (a struct with a `config: GuardConfig` field) the builder
/// methods of [`GuardConfig`], so every framework's guard is configured with the same words.
///
/// ```
/// use tenant_guard_http::GuardConfig;
///
/// /// My framework's guard.
/// pub struct MyGuard {
///     config: GuardConfig,
/// }
/// tenant_guard_http::guard_builder!(MyGuard);
/// ```
#[macro_export]
macro_rules! guard_builder {
    ($ty:ident $(<$g:ident>)?) => {
        impl$(<$g>)? $ty$(<$g>)? {
            /// The pool `TenantDb` checks its connection out of, at its first statement; see
            /// [`GuardConfig::pool`]($crate::GuardConfig::pool) (a nested guard without one uses
            /// the outer guard's).
            #[must_use]
            pub fn pool(mut self, pool: $crate::__private::TenantPool) -> Self {
                self.config = self.config.pool(pool);
                self
            }

            $crate::__sqlx_builder!();

            /// Restricts the wrapped routes to tokens whose role is one of `roles` (403
            /// `role_not_allowed` otherwise); see
            /// [`GuardConfig::allow_roles`]($crate::GuardConfig::allow_roles).
            #[must_use]
            pub fn allow_roles<Roles, Name>(mut self, roles: Roles) -> Self
            where
                Roles: IntoIterator<Item = Name>,
                Name: AsRef<str>,
            {
                self.config = self.config.allow_roles(roles);
                self
            }

            /// Limits the requests of each org (429 `rate_limited` with `Retry-After` and
            /// `RateLimit-*`); see [`GuardConfig::rate_limit`]($crate::GuardConfig::rate_limit).
            #[must_use]
            pub fn rate_limit(
                mut self,
                limiter: impl $crate::__private::RateLimitBackend,
            ) -> Self {
                self.config = self.config.rate_limit(limiter);
                self
            }

            /// At most `limit` pooled connections held at once by one org (503 `database_busy`
            /// beyond); see
            /// [`GuardConfig::max_connections_per_org`]($crate::GuardConfig::max_connections_per_org).
            #[must_use]
            pub fn max_connections_per_org(mut self, limit: usize) -> Self {
                self.config = self.config.max_connections_per_org(limit);
                self
            }

            /// Header-selected orgs checked against a membership table (403 `not_a_member`);
            /// see [`GuardConfig::org_membership`]($crate::GuardConfig::org_membership).
            #[must_use]
            pub fn org_membership(mut self, membership: $crate::OrgMembership) -> Self {
                self.config = self.config.org_membership(membership);
                self
            }

            /// Requests without a token get a transaction scoped to `role` (normally `anon`);
            /// see [`GuardConfig::allow_anonymous`]($crate::GuardConfig::allow_anonymous).
            #[must_use]
            pub fn allow_anonymous(mut self, role: $crate::__private::Role) -> Self {
                self.config = self.config.allow_anonymous(role);
                self
            }

            /// The configuration (shared by every adapter).
            pub fn config(&self) -> &$crate::GuardConfig {
                &self.config
            }
        }
    };
}
