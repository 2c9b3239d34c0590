//! How every error becomes an HTTP response, in one place both adapters share.
//!
//! Adapters never decide statuses, headers or bodies themselves: they call
//! [`ToErrorResponse::to_error_response`] and render the [`ErrorResponse`] as it is, so axum and
//! actix answer identically.

use std::borrow::Cow;
use std::fmt::Write as _;

use http::{HeaderName, HeaderValue, StatusCode, header};

/// The framework-neutral description of an error response: status, headers and JSON body.
///
/// The body is always `{"error": "<code>", "message": "<text>"}`; neither ever contains a token,
/// a secret, SQL or a stack trace.
///
/// ```
/// use http::StatusCode;
/// use tenant_guard_core::ErrorResponse;
///
/// let r = ErrorResponse::new(StatusCode::TOO_MANY_REQUESTS, "rate_limited", "slow down")
///     .with_retry_after(3);
/// assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
/// assert_eq!(r.body(), r#"{"error":"rate_limited","message":"slow down"}"#);
/// assert!(r.headers().any(|(name, value)| name == "retry-after" && value == "3"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrorResponse {
    status: StatusCode,
    code: &'static str,
    message: Cow<'static, str>,
    www_authenticate: Option<HeaderValue>,
    retry_after: Option<u64>,
    extra_headers: Vec<(HeaderName, HeaderValue)>,
}

impl ErrorResponse {
    /// A response with `status`, a stable machine-readable `code` and a human `message`.
    pub fn new(
        status: StatusCode,
        code: &'static str,
        message: impl Into<Cow<'static, str>>,
    ) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            www_authenticate: None,
            retry_after: None,
            extra_headers: Vec::new(),
        }
    }

    /// The generic answer to a server bug or an internal failure: 500, code `internal_error`, a
    /// message that says nothing about the cause (log the cause; never send it).
    ///
    /// ```
    /// let r = tenant_guard_core::ErrorResponse::internal();
    /// assert_eq!((r.status().as_u16(), r.code()), (500, "internal_error"));
    /// ```
    pub fn internal() -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal_error",
            "internal server error",
        )
    }

    /// Adds a `WWW-Authenticate` header value.
    #[must_use]
    pub fn with_www_authenticate(mut self, value: HeaderValue) -> Self {
        self.www_authenticate = Some(value);
        self
    }

    /// Adds a `Retry-After` header, in seconds.
    #[must_use]
    pub fn with_retry_after(mut self, seconds: u64) -> Self {
        self.retry_after = Some(seconds);
        self
    }

    /// Adds any other header (e.g. the `RateLimit-*` ones), rendered after the named ones.
    ///
    /// ```
    /// use http::{HeaderName, HeaderValue, StatusCode};
    /// use tenant_guard_core::ErrorResponse;
    ///
    /// let r = ErrorResponse::new(StatusCode::TOO_MANY_REQUESTS, "rate_limited", "slow down")
    ///     .with_header(HeaderName::from_static("ratelimit-remaining"), HeaderValue::from(0));
    /// assert!(r.headers().any(|(name, value)| name == "ratelimit-remaining" && value == "0"));
    /// ```
    #[must_use]
    pub fn with_header(mut self, name: HeaderName, value: HeaderValue) -> Self {
        self.extra_headers.push((name, value));
        self
    }

    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The stable error code (the body's `error` field).
    pub fn code(&self) -> &'static str {
        self.code
    }

    /// The human-readable message (the body's `message` field).
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The `WWW-Authenticate` value, if any.
    pub fn www_authenticate(&self) -> Option<&HeaderValue> {
        self.www_authenticate.as_ref()
    }

    /// The `Retry-After` seconds, if any.
    pub fn retry_after(&self) -> Option<u64> {
        self.retry_after
    }

    /// Every header the response carries, `content-type` included.
    pub fn headers(&self) -> impl Iterator<Item = (HeaderName, HeaderValue)> + '_ {
        let content_type = (
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        let www = self
            .www_authenticate
            .clone()
            .map(|v| (header::WWW_AUTHENTICATE, v));
        let retry = self
            .retry_after
            .map(|s| (header::RETRY_AFTER, HeaderValue::from(s)));
        std::iter::once(content_type)
            .chain(www)
            .chain(retry)
            .chain(self.extra_headers.iter().cloned())
    }

    /// The JSON body: `{"error": code, "message": message}`.
    pub fn body(&self) -> String {
        let mut out = String::with_capacity(32 + self.code.len() + self.message.len());
        out.push_str("{\"error\":");
        push_json_string(&mut out, self.code);
        out.push_str(",\"message\":");
        push_json_string(&mut out, &self.message);
        out.push('}');
        out
    }
}

/// Appends `s` as a JSON string literal.
fn push_json_string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if u32::from(c) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// Anything that knows its HTTP error response: [`crate::AuthError`], the guard's errors, rate limits.
pub trait ToErrorResponse {
    /// The response to send for this error.
    fn to_error_response(&self) -> ErrorResponse;
}

impl ToErrorResponse for ErrorResponse {
    fn to_error_response(&self) -> ErrorResponse {
        self.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_is_valid_json_even_with_awkward_text() {
        let r = ErrorResponse::new(
            StatusCode::BAD_REQUEST,
            "bad",
            "quote \" back \\ nl \n ctl \u{1}",
        );
        let v: serde_json::Value = serde_json::from_str(&r.body()).unwrap();
        assert_eq!(v["error"], "bad");
        assert_eq!(v["message"], "quote \" back \\ nl \n ctl \u{1}");
    }

    #[test]
    fn headers_include_content_type_and_optional_ones() {
        let r = ErrorResponse::new(StatusCode::UNAUTHORIZED, "x", "y")
            .with_www_authenticate(HeaderValue::from_static("Bearer"));
        let headers: Vec<_> = r.headers().collect();
        assert_eq!(headers.len(), 2);
        assert_eq!(headers[0].1, "application/json");
        assert_eq!(
            headers[1],
            (header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"))
        );
    }
}
