//! [`TenantGuardRejection`]: the shared [`GuardRejection`] as an axum response.

use axum_core::response::{IntoResponse, Response};
use tenant_guard_core::{ErrorResponse, ToErrorResponse};
use tenant_guard_http::GuardRejection;
use tenant_guard_postgres::GuardError;

use crate::response::render;

/// Why an extractor of this crate could not produce its value, or a statement of a
/// [`TenantDb`](crate::TenantDb) failed (`?` converts a [`GuardError`] into it): the shared
/// [`GuardRejection`] (see [`kind`](Self::kind)), answered as the pipeline describes it. Server
/// bugs (no layer, no pool, two transaction extractors) are a 500 with a generic body and an
/// `error` log line.
///
/// ```
/// use tenant_guard_axum::{ReadOnly, TenantDb, TenantGuardRejection};
///
/// async fn count(db: TenantDb<ReadOnly>) -> Result<String, TenantGuardRejection> {
///     let row = db.query_one("SELECT count(*) FROM projects", &[]).await?;
///     Ok(row.get::<_, i64>(0).to_string())
/// }
/// ```
#[derive(Debug, thiserror::Error)]
#[error(transparent)]
pub struct TenantGuardRejection(#[from] GuardRejection);

impl TenantGuardRejection {
    /// What went wrong.
    pub fn kind(&self) -> &GuardRejection {
        &self.0
    }
}

impl From<GuardError> for TenantGuardRejection {
    fn from(error: GuardError) -> Self {
        Self(GuardRejection::Guard(error))
    }
}

impl ToErrorResponse for TenantGuardRejection {
    fn to_error_response(&self) -> ErrorResponse {
        self.0.to_error_response()
    }
}

impl IntoResponse for TenantGuardRejection {
    fn into_response(self) -> Response {
        self.0.log();
        render(&self.to_error_response())
    }
}
