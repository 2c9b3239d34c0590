//! The adapter's error: what its extractors reject with, rendered through the core's
//! [`ErrorResponse`] like every other error.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use tenant_guard_core::{AuthError, ErrorResponse, ToErrorResponse};

/// Why an extractor of this crate (or the middleware, after the handler) refused a request.
///
/// Authentication failures carry the core's [`AuthError`] (401/403). Everything else is a server
/// bug or a database problem, answered with a generic body; the details go to the log only.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Authentication or authorisation failed; rendered as the core describes it.
    #[error(transparent)]
    Auth(#[from] AuthError),
    /// An extractor ran on a route that the [`crate::TenantGuard`] middleware does not wrap.
    /// A wiring bug in the application: 500.
    #[error("the TenantGuard middleware is not installed on this route")]
    MissingMiddleware,
}

impl Error {
    fn internal() -> ErrorResponse {
        ErrorResponse::new(
            http::StatusCode::INTERNAL_SERVER_ERROR,
            "internal_error",
            "internal server error",
        )
    }
}

impl ToErrorResponse for Error {
    fn to_error_response(&self) -> ErrorResponse {
        match self {
            Self::Auth(e) => e.to_error_response(),
            Self::MissingMiddleware => Self::internal(),
        }
    }
}

impl ResponseError for Error {
    fn status_code(&self) -> StatusCode {
        StatusCode::from_u16(self.to_error_response().status().as_u16())
            .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }

    fn error_response(&self) -> HttpResponse {
        crate::response::render(&self.to_error_response())
    }
}
