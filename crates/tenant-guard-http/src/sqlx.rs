//! [`SqlxDb`]: the request's sqlx transaction (feature `sqlx`), begun at its first use and ended
//! by the pipeline exactly like [`TenantDb`](crate::TenantDb)'s.

use std::marker::PhantomData;
use std::sync::Arc;

use sqlx::postgres::PgConnection;
use tenant_guard_core::scope::ScopeOptions;
use tenant_guard_core::{ErrorResponse, Principal, RequestId, ToErrorResponse};
use tenant_guard_sqlx::{SqlxGuard, SqlxGuardError, TenantTransaction};

use crate::cap::{OrgCap, OrgPermit};
use crate::db::Held;
use crate::handoff::{Mode, ReadWrite, TxSlot};

/// A guard's sqlx pool and its per-org cap (with
/// [`max_connections_per_org`](crate::GuardConfig::max_connections_per_org)).
pub(crate) type SqlxPool = (SqlxGuard, Option<Arc<OrgCap>>);

/// A request's sqlx transaction and what is needed to begin it.
#[derive(Debug)]
pub(crate) struct SqlxHeld {
    guard: SqlxGuard,
    cap: Option<Arc<OrgCap>>,
    principal: Principal,
    request_id: RequestId,
    pub(crate) tx: Option<TenantTransaction>,
    /// The org's permit for the connection `tx` holds (with a per-org cap). Declared after `tx`
    /// so that, dropped together (panic, cancellation), the transaction goes first.
    permit: Option<OrgPermit>,
    /// The last begin failure, for the pipeline to answer with when the handler did not.
    pub(crate) failed: Option<ErrorResponse>,
}

impl SqlxHeld {
    pub(crate) fn new(
        guard: SqlxGuard,
        cap: Option<Arc<OrgCap>>,
        principal: Principal,
        request_id: RequestId,
    ) -> Self {
        Self {
            guard,
            cap,
            principal,
            request_id,
            tx: None,
            permit: None,
            failed: None,
        }
    }
}

/// A sqlx transaction scoped to the caller's org and role (the sqlx backend's
/// [`TenantDb`](crate::TenantDb)): [`conn`](Self::conn) begins it at first use (`BEGIN`, then the
/// shared scoping statement) and gives the `&mut PgConnection` every sqlx executor takes,
/// including the compile-time checked `query!` macros.
///
/// There is no `commit`: when the handler has answered, the pipeline commits if the response is
/// a success (2xx or 3xx) and rolls back otherwise, replacing the response when the commit
/// fails, exactly as for `TenantDb`. `SqlxDb<ReadOnly>` begins `BEGIN READ ONLY`.
///
/// ```no_run
/// use tenant_guard_http::{ReadOnly, SqlxDb};
///
/// async fn count(mut db: SqlxDb<ReadOnly>) -> Result<i64, tenant_guard_sqlx::SqlxGuardError> {
///     // No `WHERE org_id = …`: RLS only lets the caller's org through.
///     Ok(sqlx::query_scalar("SELECT count(*) FROM projects").fetch_one(db.conn().await?).await?)
/// }
/// ```
pub struct SqlxDb<M: Mode = ReadWrite> {
    held: Option<SqlxHeld>,
    slot: TxSlot<Held>,
    mode: PhantomData<M>,
}

impl SqlxHeld {
    /// Checks a connection out for the org (within its cap, if any) and begins the scoped
    /// transaction; the permit is kept with it.
    async fn begin(&mut self, read_only: bool) -> Result<TenantTransaction, SqlxGuardError> {
        let permit = OrgCap::admit(self.cap.as_ref(), self.principal.org_id())
            .map_err(|()| SqlxGuardError::PoolTimeout)?;
        let options = ScopeOptions::default()
            .request_id(self.request_id.as_str())
            .read_only(read_only);
        let tx = self.guard.begin(&self.principal, options).await?;
        self.permit = permit;
        Ok(tx)
    }
}

impl<M: Mode> std::fmt::Debug for SqlxDb<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqlxDb")
            .field("read_only", &M::READ_ONLY)
            .field("begun", &self.held.as_ref().is_some_and(|h| h.tx.is_some()))
            .finish_non_exhaustive()
    }
}

impl<M: Mode> SqlxDb<M> {
    pub(crate) fn new(held: SqlxHeld, slot: TxSlot<Held>) -> Self {
        Self {
            held: Some(held),
            slot,
            mode: PhantomData,
        }
    }

    fn held(&self) -> &SqlxHeld {
        // `held` is only `None` inside `drop`.
        self.held
            .as_ref()
            .unwrap_or_else(|| unreachable!("SqlxDb used after drop"))
    }

    /// The transaction's connection, beginning the transaction first if this is its first use
    /// (within the org's cap, with
    /// [`max_connections_per_org`](crate::GuardConfig::max_connections_per_org)).
    ///
    /// # Errors
    /// The begin's: [`SqlxGuardError::PoolTimeout`] (the pool is exhausted, or the org holds
    /// its maximum of connections), [`SqlxGuardError::RoleNotAllowed`], …
    pub async fn conn(&mut self) -> Result<&mut PgConnection, SqlxGuardError> {
        let held = self
            .held
            .as_mut()
            .unwrap_or_else(|| unreachable!("SqlxDb used after drop"));
        let tx = match held.tx.take() {
            Some(tx) => tx,
            None => match held.begin(M::READ_ONLY).await {
                Ok(tx) => tx,
                Err(error) => {
                    held.failed = Some(error.to_error_response());
                    return Err(error);
                }
            },
        };
        Ok(&mut **held.tx.insert(tx))
    }

    /// The principal the transaction is scoped to.
    pub fn principal(&self) -> &Principal {
        &self.held().principal
    }

    /// Whether the transaction is opened `READ ONLY`.
    pub fn is_read_only(&self) -> bool {
        M::READ_ONLY
    }
}

impl<M: Mode> Drop for SqlxDb<M> {
    fn drop(&mut self) {
        if let Some(held) = self.held.take() {
            // Hand the transaction to the pipeline; if it already finished, dropping it here
            // rolls it back (sqlx queues the ROLLBACK; the release hook resets the session).
            drop(self.slot.give_back(Held::Sqlx(held)));
        }
    }
}

/// Ends a request's sqlx transaction: commits (resolving to the replacement response if the
/// commit failed) or drops it (sqlx rolls back before the connection's next use). The org's
/// permit is released once the transaction ended.
pub(crate) async fn finish(held: SqlxHeld, commit: bool) -> Option<ErrorResponse> {
    let SqlxHeld {
        tx, failed, permit, ..
    } = held;
    let _permit = permit;
    match tx {
        None => failed.filter(|_| !commit),
        Some(tx) if commit => match tx.commit().await {
            Ok(()) => None,
            Err(error) => {
                let error = SqlxGuardError::from(error);
                tracing::warn!(%error, "commit failed; the handler's response is replaced");
                Some(error.to_error_response())
            }
        },
        Some(tx) => {
            drop(tx);
            None
        }
    }
}

/// Declares an adapter's `SqlxDb<M: Mode = ReadWrite>` extractor newtype (feature `sqlx`), with
/// the docs given: it dereferences (mutably) to [`tenant_guard_http::SqlxDb`](crate::SqlxDb)
/// and is built with `SqlxDb::from_context`; the adapter adds its framework's trait impl.
#[macro_export]
macro_rules! sqlx_extractor_type {
    ($(#[$db:meta])* SqlxDb;) => {
        $(#[$db])*
        #[derive(Debug)]
        pub struct SqlxDb<M: $crate::Mode = $crate::ReadWrite>($crate::SqlxDb<M>);

        impl<M: $crate::Mode> ::core::ops::Deref for SqlxDb<M> {
            type Target = $crate::SqlxDb<M>;
            fn deref(&self) -> &Self::Target {
                &self.0
            }
        }

        impl<M: $crate::Mode> ::core::ops::DerefMut for SqlxDb<M> {
            fn deref_mut(&mut self) -> &mut Self::Target {
                &mut self.0
            }
        }

        #[allow(dead_code)]
        impl<M: $crate::Mode> SqlxDb<M> {
            /// The request's sqlx transaction (see
            /// [`RequestContext::sqlx_db`]($crate::RequestContext::sqlx_db)).
            fn from_context(
                context: &$crate::RequestContext,
            ) -> ::core::result::Result<Self, $crate::GuardRejection> {
                context.sqlx_db().map(Self)
            }
        }
    };
}

/// Gives an adapter's rejection type `$name` (from [`rejection_type!`](crate::rejection_type))
/// `From<SqlxGuardError>`, so `?` on a sqlx statement works in handlers (feature `sqlx`).
#[macro_export]
macro_rules! sqlx_rejection_from {
    ($name:ident) => {
        impl ::core::convert::From<$crate::__private::SqlxGuardError> for $name {
            fn from(error: $crate::__private::SqlxGuardError) -> Self {
                Self::from($crate::GuardRejection::Sqlx(error))
            }
        }

        impl ::core::convert::From<$crate::__private::SqlxError> for $name {
            fn from(error: $crate::__private::SqlxError) -> Self {
                Self::from($crate::GuardRejection::Sqlx(error.into()))
            }
        }
    };
}

/// The `sqlx_pool` builder method of [`guard_builder!`](crate::guard_builder).
#[doc(hidden)]
#[macro_export]
macro_rules! __sqlx_builder {
    () => {
        /// The sqlx guard `SqlxDb` begins its transaction on; see
        /// [`GuardConfig::sqlx_pool`]($crate::GuardConfig::sqlx_pool).
        #[must_use]
        pub fn sqlx_pool(mut self, guard: $crate::__private::SqlxGuard) -> Self {
            self.config = self.config.sqlx_pool(guard);
            self
        }
    };
}
