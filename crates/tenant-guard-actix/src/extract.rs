//! Extractors: the verified principal, the request id and the scoped transaction.

use std::future::{Ready, ready};
use std::marker::PhantomData;
use std::ops::{Deref, DerefMut};

use actix_web::dev::Payload;
use actix_web::{FromRequest, HttpMessage, HttpRequest};
use tenant_guard_core::{Principal, RequestId};
use tenant_guard_postgres::{ScopeOptions, TenantTx};

use crate::error::TenantGuardError;
use crate::guard::GuardContext;
use crate::request_id::LocalFuture;
use crate::slot::Slot;

/// The middleware's context of `req`, or the wiring error.
fn context(req: &HttpRequest) -> Result<GuardContext, TenantGuardError> {
    req.extensions()
        .get::<GuardContext>()
        .cloned()
        .ok_or(TenantGuardError::MissingMiddleware)
}

/// The verified [`Principal`] of the request, put there by [`TenantGuard`](crate::TenantGuard).
///
/// Rejects with a 500 (and an `error` log line) when the route is not wrapped by the middleware:
/// that is a server bug, not the caller's fault — never a panic, never an unauthenticated handler.
///
/// ```
/// use actix_web::HttpResponse;
/// use tenant_guard_actix::Authenticated;
///
/// async fn me(Authenticated(principal): Authenticated) -> HttpResponse {
///     HttpResponse::Ok().json(serde_json::json!({
///         "user_id": principal.user_id(),
///         "org_id": principal.org_id(),
///         "role": principal.role().as_str(),
///     }))
/// }
/// ```
#[derive(Debug, Clone)]
pub struct Authenticated(pub Principal);

impl Deref for Authenticated {
    type Target = Principal;

    fn deref(&self) -> &Principal {
        &self.0
    }
}

impl FromRequest for Authenticated {
    type Error = TenantGuardError;
    type Future = Ready<Result<Self, TenantGuardError>>;

    fn from_request(req: &HttpRequest, _payload: &mut Payload) -> Self::Future {
        ready(context(req).map(|c| Self(c.principal)))
    }
}

/// The request id the middleware chose (the caller's sane `x-request-id`, else a generated one);
/// the same value is sent back in the response's `x-request-id`.
#[derive(Debug, Clone)]
pub struct CurrentRequestId(pub RequestId);

impl FromRequest for CurrentRequestId {
    type Error = TenantGuardError;
    type Future = Ready<Result<Self, TenantGuardError>>;

    fn from_request(req: &HttpRequest, _payload: &mut Payload) -> Self::Future {
        ready(context(req).map(|c| Self(c.request_id)))
    }
}

pub use tenant_guard_postgres::handoff::{Mode, ReadOnly, ReadWrite};

/// A database transaction scoped to the caller's org and role: the only way a handler reaches
/// the database.
///
/// Extracting it begins the transaction on the middleware's pool (the role, the verified claims,
/// the org and the request id are set transaction-locally, so Row Level Security applies to every
/// statement). It dereferences to [`TenantTx`] for `query`, `query_one`, `query_opt` and
/// `execute`. There is no `commit`: when the handler has answered, the middleware commits if the
/// response is a success (2xx or 3xx) and rolls back otherwise; a failed commit replaces the
/// response with the guard's error. If the request is cancelled or the handler panics, the
/// transaction is dropped and the guard's drop hygiene cleans the connection.
///
/// Take `TenantDb<ReadOnly>` for handlers that only read.
///
/// Errors: the guard's (e.g. 503 with `Retry-After` when the pool is exhausted), or a 500 when
/// the middleware is missing, has no pool, or the extractor is taken twice.
///
/// ```no_run
/// use actix_web::{HttpResponse, error::ErrorInternalServerError};
/// use tenant_guard_actix::{ReadOnly, TenantDb};
///
/// async fn count_projects(db: TenantDb<ReadOnly>) -> actix_web::Result<HttpResponse> {
///     // No `WHERE org_id = …`: RLS only lets the caller's org through.
///     let row = db
///         .query_one("SELECT count(*) FROM projects", &[])
///         .await
///         .map_err(ErrorInternalServerError)?;
///     Ok(HttpResponse::Ok().body(row.get::<_, i64>(0).to_string()))
/// }
/// ```
pub struct TenantDb<M: Mode = ReadWrite> {
    tx: Option<TenantTx>,
    slot: Slot<TenantTx>,
    mode: PhantomData<M>,
}

impl<M: Mode> std::fmt::Debug for TenantDb<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TenantDb")
            .field("read_only", &M::READ_ONLY)
            .finish_non_exhaustive()
    }
}

impl<M: Mode> TenantDb<M> {
    /// Begins the scoped transaction for the request described by `context`.
    async fn begin(context: GuardContext) -> Result<Self, TenantGuardError> {
        let pool = context.pool.as_ref().ok_or(TenantGuardError::MissingPool)?;
        let reservation = Reservation::new(&context.slot)?;
        let options = ScopeOptions::default()
            .request_id(context.request_id.as_str())
            .read_only(M::READ_ONLY);
        let tx = pool.begin(&context.principal, options).await?;
        reservation.keep();
        Ok(Self {
            tx: Some(tx),
            slot: context.slot,
            mode: PhantomData,
        })
    }
}

/// The slot reserved while a transaction is being begun: released again unless [`keep`]
/// (Self::keep) is called, so a begin that fails — or whose future is dropped, as actix-web does
/// with the other extractors of a handler when one of them fails — leaves the slot unused.
struct Reservation<'a>(Option<&'a Slot<TenantTx>>);

impl<'a> Reservation<'a> {
    fn new(slot: &'a Slot<TenantTx>) -> Result<Self, TenantGuardError> {
        slot.check_out()
            .map_err(|_| TenantGuardError::AlreadyExtracted)?;
        Ok(Self(Some(slot)))
    }

    fn keep(mut self) {
        self.0 = None;
    }
}

impl Drop for Reservation<'_> {
    fn drop(&mut self) {
        if let Some(slot) = self.0 {
            slot.cancel_check_out();
        }
    }
}

impl<M: Mode> Deref for TenantDb<M> {
    type Target = TenantTx;

    fn deref(&self) -> &TenantTx {
        // `tx` is only `None` inside `drop`.
        self.tx
            .as_ref()
            .unwrap_or_else(|| unreachable!("TenantDb used after drop"))
    }
}

impl<M: Mode> DerefMut for TenantDb<M> {
    fn deref_mut(&mut self) -> &mut TenantTx {
        self.tx
            .as_mut()
            .unwrap_or_else(|| unreachable!("TenantDb used after drop"))
    }
}

impl<M: Mode> Drop for TenantDb<M> {
    fn drop(&mut self) {
        if let Some(tx) = self.tx.take() {
            // Hand the transaction to the middleware; if it already finished (the extractor
            // escaped the handler), dropping it here lets the guard roll it back.
            drop(self.slot.give_back(tx));
        }
    }
}

impl<M: Mode> FromRequest for TenantDb<M> {
    type Error = TenantGuardError;
    type Future = LocalFuture<Result<Self, TenantGuardError>>;

    fn from_request(req: &HttpRequest, _payload: &mut Payload) -> Self::Future {
        let context = context(req);
        Box::pin(async move { Self::begin(context?).await })
    }
}
