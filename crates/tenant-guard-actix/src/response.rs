//! Rendering the core's [`ErrorResponse`] as an actix-web [`HttpResponse`].
//!
//! Statuses, headers and bodies are decided by [`ToErrorResponse`] implementations in the core
//! and guard crates, so every framework answers every error identically.

use actix_web::HttpResponse;
use actix_web::http::StatusCode;
use actix_web::http::header::{HeaderMap, HeaderName, HeaderValue};
use tenant_guard_core::{ErrorResponse, ToErrorResponse};

/// Renders an error's [`ErrorResponse`]: its status, every header it names (`content-type`,
/// `WWW-Authenticate`, `Retry-After`) and its JSON body.
///
/// ```
/// use actix_web::http::StatusCode;
/// use tenant_guard_core::AuthError;
///
/// let response = tenant_guard_actix::error_response(&AuthError::MissingToken);
/// assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
/// assert_eq!(response.headers().get("www-authenticate").unwrap(), "Bearer");
/// assert_eq!(response.headers().get("content-type").unwrap(), "application/json");
/// ```
pub fn error_response<E: ToErrorResponse + ?Sized>(error: &E) -> HttpResponse {
    render(&error.to_error_response())
}

/// Renders an [`ErrorResponse`] as it is.
///
/// actix-web 4 uses `http` 0.2 types, the core `http` 1.x: the status and headers are copied by
/// their wire form. Both versions accept exactly the same names and values, so nothing is lost;
/// should a conversion ever fail, the response becomes a plain 500 rather than a partial one.
pub(crate) fn render(error: &ErrorResponse) -> HttpResponse {
    if let Ok(status) = StatusCode::from_u16(error.status().as_u16()) {
        let mut response = HttpResponse::build(status).body(error.body());
        let headers = response.headers_mut();
        if error
            .headers()
            .all(|(name, value)| put(headers, &name, &value, true))
        {
            return response;
        }
    }
    tracing::error!(
        code = error.code(),
        "error response not representable in actix-web"
    );
    HttpResponse::InternalServerError().finish()
}

/// Sets an `http` 1.x header on actix-web's (`http` 0.2) map by its wire form, replacing the
/// value there or only filling in; `false` when it is not representable (never, in practice:
/// both versions accept exactly the same names and values).
pub(crate) fn put(
    headers: &mut HeaderMap,
    name: &http::HeaderName,
    value: &http::HeaderValue,
    replace: bool,
) -> bool {
    let (Ok(name), Ok(value)) = (
        HeaderName::from_bytes(name.as_str().as_bytes()),
        HeaderValue::from_bytes(value.as_bytes()),
    ) else {
        return false;
    };
    if replace || !headers.contains_key(&name) {
        headers.insert(name, value);
    }
    true
}

#[cfg(test)]
mod tests {
    use actix_web::body::to_bytes;
    use actix_web::http::header::{CONTENT_TYPE, RETRY_AFTER, WWW_AUTHENTICATE};
    use tenant_guard_core::AuthError;

    use super::*;

    #[actix_web::test]
    async fn renders_status_headers_and_body() {
        let error = ErrorResponse::new(http::StatusCode::SERVICE_UNAVAILABLE, "busy", "try later")
            .with_retry_after(2);
        let response = render(&error);
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(
            response.headers().get(CONTENT_TYPE).unwrap(),
            "application/json"
        );
        assert_eq!(response.headers().get(RETRY_AFTER).unwrap(), "2");
        assert!(response.headers().get(WWW_AUTHENTICATE).is_none());
        let body = to_bytes(response.into_body()).await.unwrap();
        assert_eq!(body, error.body().as_bytes());
    }

    #[actix_web::test]
    async fn every_auth_error_renders_exactly_its_description() {
        for error in [
            AuthError::MissingToken,
            AuthError::MalformedHeader,
            AuthError::Expired,
            AuthError::RoleNotAllowed,
            AuthError::MissingKey("JWT_SECRET"),
        ] {
            let expected = error.to_error_response();
            let response = error_response(&error);
            assert_eq!(response.status().as_u16(), expected.status().as_u16());
            let mut names: Vec<_> = response.headers().keys().map(|n| n.as_str()).collect();
            names.sort_unstable();
            let mut wanted: Vec<_> = expected.headers().map(|(n, _)| n.to_string()).collect();
            wanted.sort_unstable();
            assert_eq!(names, wanted, "{error:?}");
            for (name, value) in expected.headers() {
                assert_eq!(
                    response.headers().get(name.as_str()).unwrap().as_bytes(),
                    value.as_bytes()
                );
            }
            let body = to_bytes(response.into_body()).await.unwrap();
            assert_eq!(body, expected.body().as_bytes());
        }
    }
}
