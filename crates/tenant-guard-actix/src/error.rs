//! [`TenantGuardError`]: the shared [`GuardRejection`](tenant_guard_http::GuardRejection) as an
//! actix-web error.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use tenant_guard_core::ToErrorResponse;

tenant_guard_http::rejection_type! {
    /// Why an extractor of this crate could not produce its value, or a statement of a
    /// [`TenantDb`](crate::TenantDb) failed (`?` converts a
    /// [`GuardError`](tenant_guard_postgres::GuardError) into it): the shared
    /// [`GuardRejection`](tenant_guard_http::GuardRejection) (see [`kind`](Self::kind)),
    /// answered as the pipeline describes it (503 with `Retry-After` when the pool is
    /// exhausted; a generic 500 with an `error` log line for server bugs: no middleware, no
    /// pool, two transaction extractors).
    TenantGuardError
}

impl ResponseError for TenantGuardError {
    fn status_code(&self) -> StatusCode {
        StatusCode::from_u16(self.to_error_response().status().as_u16())
            .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }

    /// Logs the cause (once per response) and renders the description.
    fn error_response(&self) -> HttpResponse {
        self.kind().log();
        crate::response::render(&self.to_error_response())
    }
}
