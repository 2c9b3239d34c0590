//! The sqlx backend's extractor (feature `sqlx`): declared by the shared pipeline, made an axum
//! extractor here.

use axum_core::extract::FromRequestParts;
use http::request::Parts;
use tenant_guard_http::{Mode, RequestContext};

use crate::rejection::TenantGuardRejection;

tenant_guard_http::sqlx_extractor_type! {
    /// A sqlx transaction scoped to the caller's org and role, from the layer's
    /// [`sqlx_pool`](crate::TenantGuardLayer::sqlx_pool). It dereferences to
    /// [`tenant_guard_http::SqlxDb`]: `db.conn().await?` begins it at first use and gives the
    /// `&mut PgConnection` sqlx executors (and the `query!` macros) take. Committed after a
    /// 2xx/3xx response, rolled back otherwise. `SqlxDb<ReadOnly>` for handlers that only read.
    ///
    /// ```no_run
    /// use tenant_guard_axum::{ReadOnly, SqlxDb, TenantGuardRejection};
    ///
    /// async fn count(mut db: SqlxDb<ReadOnly>) -> Result<String, TenantGuardRejection> {
    ///     let n: i64 = sqlx::query_scalar("SELECT count(*) FROM projects")
    ///         .fetch_one(db.conn().await?)
    ///         .await?;
    ///     Ok(n.to_string())
    /// }
    /// ```
    SqlxDb;
}

tenant_guard_http::sqlx_rejection_from!(TenantGuardRejection);

impl<S: Send + Sync, M: Mode> FromRequestParts<S> for SqlxDb<M> {
    type Rejection = TenantGuardRejection;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        Ok(Self::from_context(RequestContext::from_extensions(
            &parts.extensions,
        )?)?)
    }
}
