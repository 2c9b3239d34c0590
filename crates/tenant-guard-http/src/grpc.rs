//! gRPC: refusals as gRPC statuses (a trailers-only response), and the commit rule's view of a
//! gRPC answer. Used by the tower layer for requests whose `content-type` is `application/grpc*`.

use http::header::CONTENT_TYPE;
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use tenant_guard_core::ErrorResponse;

/// The gRPC status header.
pub const GRPC_STATUS: HeaderName = HeaderName::from_static("grpc-status");
/// The gRPC status message header (percent-encoded).
pub const GRPC_MESSAGE: HeaderName = HeaderName::from_static("grpc-message");

/// Whether a request is gRPC (`content-type: application/grpc`, `application/grpc+proto`, …).
pub fn is_grpc(headers: &HeaderMap) -> bool {
    headers
        .get(CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"))
}

/// The gRPC status code for an HTTP status the guard answers with: 401 → `UNAUTHENTICATED` (16),
/// 403 → `PERMISSION_DENIED` (7), 429 → `RESOURCE_EXHAUSTED` (8), 503 → `UNAVAILABLE` (14),
/// 400/422 → `INVALID_ARGUMENT` (3), 404 → `NOT_FOUND` (5), 504 → `DEADLINE_EXCEEDED` (4),
/// 500 → `INTERNAL` (13), anything else → `UNKNOWN` (2).
///
/// ```
/// assert_eq!(tenant_guard_http::grpc::code(http::StatusCode::UNAUTHORIZED), 16);
/// assert_eq!(tenant_guard_http::grpc::code(http::StatusCode::TOO_MANY_REQUESTS), 8);
/// ```
pub fn code(status: StatusCode) -> u16 {
    match status.as_u16() {
        401 => 16,
        403 => 7,
        429 => 8,
        503 => 14,
        400 | 422 => 3,
        404 => 5,
        504 => 4,
        500 => 13,
        _ => 2,
    }
}

/// Whether a gRPC response's headers say it succeeded: no `grpc-status` yet (it comes in the
/// trailers after the messages) or `0`. A handler's error is a trailers-only response whose
/// headers carry its non-zero status.
pub fn succeeded(headers: &HeaderMap) -> bool {
    headers.get(GRPC_STATUS).is_none_or(|s| s == "0")
}

/// The headers of a trailers-only gRPC response for `error`: `content-type: application/grpc`,
/// `grpc-status` (see [`code`]), `grpc-message` (percent-encoded) and the error's own headers
/// (`WWW-Authenticate`, `Retry-After`, `RateLimit-*`) except its JSON `content-type`. The HTTP
/// status of such a response is 200.
pub fn error_headers(error: &ErrorResponse) -> HeaderMap {
    let mut headers = HeaderMap::new();
    for (name, value) in error.headers() {
        if name != CONTENT_TYPE {
            headers.append(name, value);
        }
    }
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/grpc"));
    headers.insert(GRPC_STATUS, HeaderValue::from(code(error.status())));
    if let Ok(message) = HeaderValue::from_str(&percent_encode(error.message())) {
        headers.insert(GRPC_MESSAGE, message);
    }
    headers
}

/// gRPC's `grpc-message` encoding: printable ASCII except `%` as is, every other byte `%XX`.
fn percent_encode(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    for byte in message.bytes() {
        if (0x20..=0x7e).contains(&byte) && byte != b'%' {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_map_to_their_grpc_codes_and_keep_their_challenge() {
        let error = tenant_guard_core::ToErrorResponse::to_error_response(
            &tenant_guard_core::AuthError::MissingToken,
        );
        let headers = error_headers(&error);
        assert_eq!(headers[GRPC_STATUS], "16");
        assert_eq!(headers[CONTENT_TYPE], "application/grpc");
        assert_eq!(headers["www-authenticate"], "Bearer");
        assert_eq!(percent_encode("50% é"), "50%25 %C3%A9");
        assert!(succeeded(&HeaderMap::new()));
        assert!(!succeeded(&headers));
    }
}
