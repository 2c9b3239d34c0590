//! The sqlx backend's extractor (feature `sqlx`): declared by the shared pipeline, made an
//! actix-web extractor here.

use std::future::{Ready, ready};

use actix_web::dev::Payload;
use actix_web::{FromRequest, HttpMessage, HttpRequest};
use tenant_guard_http::{GuardRejection, Mode, RequestContext};

use crate::error::TenantGuardError;

tenant_guard_http::sqlx_extractor_type! {
    /// A sqlx transaction scoped to the caller's org and role, from the middleware's
    /// [`sqlx_pool`](crate::TenantGuard::sqlx_pool). It dereferences to
    /// [`tenant_guard_http::SqlxDb`]: `db.conn().await?` begins it at first use and gives the
    /// `&mut PgConnection` sqlx executors (and the `query!` macros) take. Committed after a
    /// 2xx/3xx response, rolled back otherwise. `SqlxDb<ReadOnly>` for handlers that only read.
    ///
    /// ```no_run
    /// use tenant_guard_actix::{ReadOnly, SqlxDb, TenantGuardError};
    ///
    /// async fn count(mut db: SqlxDb<ReadOnly>) -> Result<String, TenantGuardError> {
    ///     let n: i64 = sqlx::query_scalar("SELECT count(*) FROM projects")
    ///         .fetch_one(db.conn().await?)
    ///         .await?;
    ///     Ok(n.to_string())
    /// }
    /// ```
    SqlxDb;
}

tenant_guard_http::sqlx_rejection_from!(TenantGuardError);

impl<M: Mode> FromRequest for SqlxDb<M> {
    type Error = TenantGuardError;
    type Future = Ready<Result<Self, TenantGuardError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let extensions = req.extensions();
        let db = extensions
            .get::<RequestContext>()
            .ok_or(GuardRejection::MissingGuard)
            .and_then(Self::from_context);
        ready(db.map_err(TenantGuardError::from))
    }
}
