//! Rendering the core's [`ErrorResponse`] as an axum [`Response`].
//!
//! Statuses, headers and bodies are decided by [`ToErrorResponse`] implementations in the core
//! and guard crates, so every framework answers every error identically.

use axum_core::body::Body;
use axum_core::response::Response;
use tenant_guard_core::{ErrorResponse, ToErrorResponse};

/// Renders an error's [`ErrorResponse`]: its status, every header it names (`content-type`,
/// `WWW-Authenticate`, `Retry-After`) and its JSON body.
///
/// ```
/// use http::StatusCode;
/// use tenant_guard_core::AuthError;
///
/// let response = tenant_guard_axum::error_response(&AuthError::MissingToken);
/// assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
/// assert_eq!(response.headers()["www-authenticate"], "Bearer");
/// assert_eq!(response.headers()["content-type"], "application/json");
/// ```
pub fn error_response<E: ToErrorResponse + ?Sized>(error: &E) -> Response {
    render(&error.to_error_response())
}

/// Renders an [`ErrorResponse`] as it is.
pub(crate) fn render(error: &ErrorResponse) -> Response {
    let mut response = Response::new(Body::from(error.body()));
    *response.status_mut() = error.status();
    let headers = response.headers_mut();
    for (name, value) in error.headers() {
        headers.insert(name, value);
    }
    response
}
