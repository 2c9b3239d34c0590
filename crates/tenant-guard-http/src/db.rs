//! [`TenantDb`]: the request's scoped transaction, checked out of the pool at its first statement.

use std::marker::PhantomData;
use std::sync::{Arc, Mutex, PoisonError};

use tenant_guard_core::{ErrorResponse, Principal, RequestId, ToErrorResponse};
use tenant_guard_postgres::tokio_postgres::types::{ToSql, Type};
use tenant_guard_postgres::tokio_postgres::{Row, Statement};
use tenant_guard_postgres::{GuardError, ScopeOptions, TenantPool, TenantTx, ToStatement};
use tokio::sync::OnceCell;

use crate::cap::{OrgCap, OrgPermit};
use crate::handoff::{Mode, ReadWrite, TxSlot};

/// What a request's transaction slot holds once its extractor is dropped: the transaction of
/// one backend.
#[derive(Debug)]
// One per request, moved once into the slot: boxing the larger variant would add an allocation
// to the default backend's path for nothing.
#[allow(clippy::large_enum_variant)]
pub(crate) enum Held {
    /// tokio-postgres ([`TenantDb`]).
    Postgres(LazyTx),
    /// sqlx ([`SqlxDb`](crate::SqlxDb)).
    #[cfg(feature = "sqlx")]
    Sqlx(crate::sqlx::SqlxHeld),
}

/// The transaction of one request, begun on first use.
#[derive(Debug)]
pub(crate) struct LazyTx {
    tx: OnceCell<TenantTx>,
    pool: TenantPool,
    cap: Option<Arc<OrgCap>>,
    /// The org's permit for the connection `tx` holds (with a per-org cap).
    permit: Mutex<Option<OrgPermit>>,
    principal: Principal,
    request_id: RequestId,
    read_only: bool,
    /// The last check-out failure, for the pipeline to answer with when the handler did not.
    failed: Mutex<Option<ErrorResponse>>,
}

/// What a finished request's transaction leaves: the transaction if one was begun (with the
/// org's permit for its connection, to release once it ended), and the last check-out failure.
pub(crate) struct Parts {
    pub(crate) tx: Option<(TenantTx, Option<OrgPermit>)>,
    pub(crate) failed: Option<ErrorResponse>,
}

impl LazyTx {
    pub(crate) fn new(
        pool: TenantPool,
        cap: Option<Arc<OrgCap>>,
        principal: Principal,
        request_id: RequestId,
        read_only: bool,
    ) -> Self {
        Self {
            tx: OnceCell::new(),
            pool,
            cap,
            permit: Mutex::new(None),
            principal,
            request_id,
            read_only,
            failed: Mutex::new(None),
        }
    }

    async fn get(&self) -> Result<&TenantTx, GuardError> {
        self.tx
            .get_or_try_init(|| async {
                let begun = self.begin().await;
                if let Err(error) = &begun {
                    *self.failed.lock().unwrap_or_else(PoisonError::into_inner) =
                        Some(error.to_error_response());
                }
                begun
            })
            .await
    }

    /// Checks a connection out for the org (within its cap, if any) and scopes it.
    async fn begin(&self) -> Result<TenantTx, GuardError> {
        let permit = OrgCap::admit(self.cap.as_ref(), self.principal.org_id())
            .map_err(|()| GuardError::PoolTimeout)?;
        let options = ScopeOptions::default()
            .request_id(self.request_id.as_str())
            .read_only(self.read_only);
        let tx = self.pool.begin(&self.principal, options).await?;
        *self.permit.lock().unwrap_or_else(PoisonError::into_inner) = permit;
        Ok(tx)
    }

    /// What the request's transaction leaves behind.
    pub(crate) fn into_parts(self) -> Parts {
        let failed = self
            .failed
            .into_inner()
            .unwrap_or_else(PoisonError::into_inner);
        let permit = self
            .permit
            .into_inner()
            .unwrap_or_else(PoisonError::into_inner);
        Parts {
            tx: self.tx.into_inner().map(|tx| (tx, permit)),
            failed,
        }
    }
}

/// A database transaction scoped to the caller's org and role: the only way a handler reaches
/// the database. Adapters' `TenantDb` extractors dereference to it; elsewhere get it from
/// [`RequestContext::db`](crate::RequestContext::db).
///
/// The connection is checked out of the pool at the first statement, which is sent in one
/// pipeline with `BEGIN` and the scoping (role, verified claims, org and request id set
/// transaction-locally, so Row Level Security applies to every statement). Taking a `TenantDb`
/// and then waiting for the request body therefore holds no connection. A check-out that fails
/// (pool exhausted: [`GuardError::PoolTimeout`], 503 with `Retry-After`) fails that statement.
///
/// There is no `commit`: when the handler has answered, the pipeline commits if the response is
/// a success (2xx or 3xx; for gRPC also `grpc-status` 0) and rolls back otherwise; a failed
/// commit replaces the response with the guard's error, and so does a failed check-out when the
/// handler answered with an error of its own. If the request is cancelled or the handler panics,
/// the transaction is dropped and the guard's drop hygiene cleans the connection.
///
/// `TenantDb<ReadOnly>` opens the transaction `READ ONLY`.
pub struct TenantDb<M: Mode = ReadWrite> {
    lazy: Option<LazyTx>,
    slot: TxSlot<Held>,
    mode: PhantomData<M>,
}

impl<M: Mode> std::fmt::Debug for TenantDb<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TenantDb")
            .field("read_only", &M::READ_ONLY)
            .field("begun", &self.lazy().tx.initialized())
            .finish_non_exhaustive()
    }
}

impl<M: Mode> TenantDb<M> {
    pub(crate) fn new(lazy: LazyTx, slot: TxSlot<Held>) -> Self {
        Self {
            lazy: Some(lazy),
            slot,
            mode: PhantomData,
        }
    }

    fn lazy(&self) -> &LazyTx {
        // `lazy` is only `None` inside `drop`.
        self.lazy
            .as_ref()
            .unwrap_or_else(|| unreachable!("TenantDb used after drop"))
    }

    /// The transaction, checking its connection out of the pool first if no statement ran yet:
    /// for the methods of [`TenantTx`] not repeated here (its `span`, say).
    ///
    /// # Errors
    /// The check-out's: [`GuardError::PoolTimeout`], [`GuardError::RoleNotAllowed`], …
    pub async fn tx(&self) -> Result<&TenantTx, GuardError> {
        self.lazy().get().await
    }

    /// The principal the transaction is scoped to.
    pub fn principal(&self) -> &Principal {
        &self.lazy().principal
    }

    /// Whether the transaction is opened `READ ONLY`.
    pub fn is_read_only(&self) -> bool {
        M::READ_ONLY
    }

    /// Runs a statement and returns its rows; see [`TenantTx::query`].
    pub async fn query<S>(
        &self,
        statement: &S,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<Row>, GuardError>
    where
        S: ?Sized + ToStatement,
    {
        self.tx().await?.query(statement, params).await
    }

    /// Runs a statement that returns exactly one row; see [`TenantTx::query_one`].
    pub async fn query_one<S>(
        &self,
        statement: &S,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Row, GuardError>
    where
        S: ?Sized + ToStatement,
    {
        self.tx().await?.query_one(statement, params).await
    }

    /// Runs a statement that returns at most one row; see [`TenantTx::query_opt`].
    pub async fn query_opt<S>(
        &self,
        statement: &S,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Option<Row>, GuardError>
    where
        S: ?Sized + ToStatement,
    {
        self.tx().await?.query_opt(statement, params).await
    }

    /// Runs a statement and returns the number of rows it affected; see [`TenantTx::execute`].
    pub async fn execute<S>(
        &self,
        statement: &S,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<u64, GuardError>
    where
        S: ?Sized + ToStatement,
    {
        self.tx().await?.execute(statement, params).await
    }

    /// Runs SQL with explicitly typed parameters; see [`TenantTx::query_typed`].
    pub async fn query_typed(
        &self,
        sql: &str,
        params: &[(&(dyn ToSql + Sync), Type)],
    ) -> Result<Vec<Row>, GuardError> {
        self.tx().await?.query_typed(sql, params).await
    }

    /// Like [`execute`](Self::execute) with explicitly typed parameters; see
    /// [`TenantTx::execute_typed`].
    pub async fn execute_typed(
        &self,
        sql: &str,
        params: &[(&(dyn ToSql + Sync), Type)],
    ) -> Result<u64, GuardError> {
        self.tx().await?.execute_typed(sql, params).await
    }

    /// Prepares `sql` on the transaction's connection; see [`TenantTx::prepare`].
    pub async fn prepare(&self, sql: &str) -> Result<Statement, GuardError> {
        self.tx().await?.prepare(sql).await
    }
}

impl<M: Mode> Drop for TenantDb<M> {
    fn drop(&mut self) {
        if let Some(lazy) = self.lazy.take() {
            // Hand the transaction to the pipeline; if it already finished (the TenantDb escaped
            // the handler), dropping it here lets the guard roll it back.
            drop(self.slot.give_back(Held::Postgres(lazy)));
        }
    }
}
