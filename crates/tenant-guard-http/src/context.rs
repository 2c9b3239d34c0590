//! [`RequestContext`]: what an admitted request carries into its handler.

use std::sync::Arc;

use tenant_guard_core::{Principal, RequestId};
use tenant_guard_postgres::TenantPool;

use crate::cap::OrgCap;
use crate::db::{Held, LazyTx, TenantDb};
use crate::handoff::{Mode, TxSlot};
use crate::rejection::GuardRejection;

/// The verified principal, the request id and the request's transaction slot, put into the
/// request's extensions by the guard once the request is admitted. Cheap to clone.
///
/// Adapters' extractors read it; a service without an adapter (tonic, bare hyper) reads it from
/// the request's extensions itself:
///
/// ```
/// use tenant_guard_http::{GuardRejection, ReadOnly, RequestContext, TenantDb};
///
/// fn handler(extensions: &http::Extensions) -> Result<TenantDb<ReadOnly>, GuardRejection> {
///     let context = RequestContext::from_extensions(extensions)?;
///     let _org = context.principal().org_id();
///     context.db() // no connection yet: checked out at the first statement
/// }
/// assert!(matches!(handler(&http::Extensions::new()), Err(GuardRejection::MissingGuard)));
/// ```
#[derive(Debug, Clone)]
pub struct RequestContext {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    principal: Principal,
    request_id: RequestId,
    pool: Option<(TenantPool, Option<Arc<OrgCap>>)>,
    #[cfg(feature = "sqlx")]
    sqlx: Option<crate::sqlx::SqlxPool>,
    slot: TxSlot<Held>,
}

impl RequestContext {
    pub(crate) fn new(
        principal: Principal,
        request_id: RequestId,
        pool: Option<(TenantPool, Option<Arc<OrgCap>>)>,
        #[cfg(feature = "sqlx")] sqlx: Option<crate::sqlx::SqlxPool>,
        slot: TxSlot<Held>,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                principal,
                request_id,
                pool,
                #[cfg(feature = "sqlx")]
                sqlx,
                slot,
            }),
        }
    }

    /// The context the guard put into `extensions`.
    ///
    /// # Errors
    /// [`GuardRejection::MissingGuard`] when the request did not pass through a guard (a server
    /// bug: answer 500).
    pub fn from_extensions(extensions: &http::Extensions) -> Result<&Self, GuardRejection> {
        extensions.get().ok_or(GuardRejection::MissingGuard)
    }

    /// The verified principal.
    pub fn principal(&self) -> &Principal {
        &self.inner.principal
    }

    /// The request id (the caller's sane `x-request-id`, else a generated one).
    pub fn request_id(&self) -> &RequestId {
        &self.inner.request_id
    }

    /// The pool (and its per-org cap) a nested guard without a pool uses.
    pub(crate) fn pool_and_cap(&self) -> Option<(TenantPool, Option<Arc<OrgCap>>)> {
        self.inner.pool.clone()
    }

    /// The sqlx guard (and its per-org cap) a nested guard without one uses.
    #[cfg(feature = "sqlx")]
    pub(crate) fn sqlx_guard(&self) -> Option<crate::sqlx::SqlxPool> {
        self.inner.sqlx.clone()
    }

    /// The request's scoped sqlx transaction (feature `sqlx`); begun at its first use, ended by
    /// the pipeline like [`db`](Self::db)'s. One transaction per request, whichever backend.
    ///
    /// # Errors
    /// [`GuardRejection::MissingPool`] without a sqlx pool on the guard
    /// ([`GuardConfig::sqlx_pool`](crate::GuardConfig::sqlx_pool));
    /// [`GuardRejection::AlreadyExtracted`] when the request's transaction was already taken.
    #[cfg(feature = "sqlx")]
    pub fn sqlx_db<M: Mode>(&self) -> Result<crate::SqlxDb<M>, GuardRejection> {
        let (guard, cap) = self.inner.sqlx.clone().ok_or(GuardRejection::MissingPool)?;
        self.inner
            .slot
            .check_out()
            .map_err(|_| GuardRejection::AlreadyExtracted)?;
        let held = crate::sqlx::SqlxHeld::new(
            guard,
            cap,
            self.inner.principal.clone(),
            self.inner.request_id.clone(),
        );
        Ok(crate::SqlxDb::new(held, self.inner.slot.clone()))
    }

    /// The request's scoped transaction. Nothing is checked out of the pool here: the connection
    /// is taken at the first statement (which also carries `BEGIN` and the scoping), so a handler
    /// waiting on a slow client body holds no connection.
    ///
    /// # Errors
    /// [`GuardRejection::MissingPool`] without a pool; [`GuardRejection::AlreadyExtracted`] when
    /// the request's transaction was already taken.
    pub fn db<M: Mode>(&self) -> Result<TenantDb<M>, GuardRejection> {
        let (pool, cap) = self.inner.pool.clone().ok_or(GuardRejection::MissingPool)?;
        self.inner
            .slot
            .check_out()
            .map_err(|_| GuardRejection::AlreadyExtracted)?;
        let lazy = LazyTx::new(
            pool,
            cap,
            self.inner.principal.clone(),
            self.inner.request_id.clone(),
            M::READ_ONLY,
        );
        Ok(TenantDb::new(lazy, self.inner.slot.clone()))
    }
}
