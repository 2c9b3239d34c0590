//! [`TenantGuardRejection`]: the shared [`GuardRejection`](tenant_guard_http::GuardRejection) as
//! an axum response.

use axum_core::response::{IntoResponse, Response};
use tenant_guard_core::ToErrorResponse;

use crate::response::render;

tenant_guard_http::rejection_type! {
    /// Why an extractor of this crate could not produce its value, or a statement of a
    /// [`TenantDb`](crate::TenantDb) failed (`?` converts a
    /// [`GuardError`](tenant_guard_postgres::GuardError) into it): the shared
    /// [`GuardRejection`](tenant_guard_http::GuardRejection) (see [`kind`](Self::kind)),
    /// answered as the pipeline describes it. Server bugs (no layer, no pool, two transaction
    /// extractors) are a 500 with a generic body and an `error` log line.
    ///
    /// ```
    /// use tenant_guard_axum::{ReadOnly, TenantDb, TenantGuardRejection};
    ///
    /// async fn count(db: TenantDb<ReadOnly>) -> Result<String, TenantGuardRejection> {
    ///     let row = db.query_one("SELECT count(*) FROM projects", &[]).await?;
    ///     Ok(row.get::<_, i64>(0).to_string())
    /// }
    /// ```
    TenantGuardRejection
}

impl IntoResponse for TenantGuardRejection {
    fn into_response(self) -> Response {
        self.kind().log();
        render(&self.to_error_response())
    }
}
