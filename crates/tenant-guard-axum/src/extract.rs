//! Extractors: the verified principal, the request id and the scoped transaction, read from the
//! [`RequestContext`] the layer put into the request (types declared by the shared pipeline).

use axum_core::extract::FromRequestParts;
use http::request::Parts;
use tenant_guard_http::{Mode, RequestContext};

use crate::rejection::TenantGuardRejection;

tenant_guard_http::extractor_types! {
    /// The verified [`Principal`](tenant_guard_core::Principal) of the request, put there by
    /// [`TenantGuardLayer`](crate::TenantGuardLayer).
    ///
    /// Rejects with a 500 (and an `error` log line) when the route is not behind the layer:
    /// that is a server bug, not the caller's fault.
    ///
    /// ```
    /// use tenant_guard_axum::Authenticated;
    ///
    /// async fn me(Authenticated(principal): Authenticated) -> String {
    ///     format!("{} of {}", principal.user_id(), principal.org_id())
    /// }
    /// ```
    Authenticated;
    /// The request id the layer chose (the caller's sane `x-request-id`, else a generated one);
    /// the same value is sent back in the response's `x-request-id`.
    ///
    /// ```
    /// use tenant_guard_axum::CurrentRequestId;
    ///
    /// async fn id(CurrentRequestId(id): CurrentRequestId) -> String {
    ///     id.to_string()
    /// }
    /// ```
    CurrentRequestId;
    /// A database transaction scoped to the caller's org and role: the only way a handler
    /// reaches the database. It dereferences to [`tenant_guard_http::TenantDb`] (`query`,
    /// `query_one`, `query_opt`, `execute`, …), which describes its life: checked out of the
    /// layer's pool at the first statement (so reading the body first holds no connection),
    /// committed after a 2xx/3xx response, rolled back otherwise.
    ///
    /// Take `TenantDb<ReadOnly>` for handlers that only read. Extracting it never waits; it
    /// rejects with a 500 only when the layer is missing, has no pool, or the extractor is taken
    /// twice.
    ///
    /// ```no_run
    /// use tenant_guard_axum::{ReadOnly, TenantDb, TenantGuardRejection};
    ///
    /// async fn count_projects(db: TenantDb<ReadOnly>) -> Result<String, TenantGuardRejection> {
    ///     // No `WHERE org_id = …`: RLS only lets the caller's org through.
    ///     let row = db.query_one("SELECT count(*) FROM projects", &[]).await?;
    ///     Ok(row.get::<_, i64>(0).to_string())
    /// }
    /// ```
    TenantDb;
}

fn context(parts: &Parts) -> Result<&RequestContext, TenantGuardRejection> {
    Ok(RequestContext::from_extensions(&parts.extensions)?)
}

impl<S: Send + Sync> FromRequestParts<S> for Authenticated {
    type Rejection = TenantGuardRejection;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        context(parts).map(Self::from_context)
    }
}

impl<S: Send + Sync> FromRequestParts<S> for CurrentRequestId {
    type Rejection = TenantGuardRejection;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        context(parts).map(Self::from_context)
    }
}

impl<S: Send + Sync, M: Mode> FromRequestParts<S> for TenantDb<M> {
    type Rejection = TenantGuardRejection;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        Ok(Self::from_context(context(parts)?)?)
    }
}
