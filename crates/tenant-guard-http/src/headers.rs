//! The request headers the pipeline reads, for frameworks whose header map is not `http` 1.x's
//! (actix-web 4 speaks `http` 0.2): [`pipeline_headers`] copies exactly those, by their wire form.

use http::header::{AUTHORIZATION, COOKIE};
use http::{HeaderMap, HeaderName, HeaderValue};
use tenant_guard_core::request_id::X_REQUEST_ID;

use crate::trace::{TRACEPARENT, TRACESTATE};

/// A value both `http` versions accept but that no check accepts either: counted, never valid.
///
/// Both versions validate header values by the same rule, so this is only a fail-closed fallback.
const UNREPRESENTABLE: HeaderValue = HeaderValue::from_static(" ");

/// Which headers a step of the pipeline reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeaderUse {
    /// A guard: the token (`authorization`, or — only when no `authorization` header was sent,
    /// for a verifier opted in to a token cookie — `cookie`), the request id and the W3C trace
    /// context.
    Authenticate,
    /// A tracing middleware: only the request id and the trace context.
    Trace,
}

/// Builds the `http` 1.x map that [`GuardConfig::admit`](crate::GuardConfig::admit) and
/// [`RequestTrace::start`](crate::RequestTrace::start) read, from a framework's own map:
/// `values(name)` lists every value of the header `name` (lower-case), as bytes. Every value of
/// each header is copied, so "more than one" stays detectable; nothing else is (a handful of
/// bytes per request instead of converting the whole map). A value `http` 1.x would not accept
/// becomes one that no check accepts.
///
/// ```
/// use tenant_guard_http::{HeaderUse, pipeline_headers};
///
/// let sent = [("authorization", "Bearer a"), ("x-user-id", "mallory"), ("x-request-id", "r1")];
/// let values = |name: &http::HeaderName| {
///     sent.iter()
///         .filter(|(n, _)| *n == name.as_str())
///         .map(|(_, v)| v.as_bytes())
///         .collect::<Vec<_>>()
/// };
/// let headers = pipeline_headers(HeaderUse::Authenticate, values);
/// assert_eq!(headers.len(), 2, "never x-user-id");
/// assert_eq!(pipeline_headers(HeaderUse::Trace, values).len(), 1);
/// ```
pub fn pipeline_headers<'a, I>(uses: HeaderUse, values: impl Fn(&HeaderName) -> I) -> HeaderMap
where
    I: IntoIterator<Item = &'a [u8]>,
{
    let mut out = HeaderMap::new();
    let copy = |name: &HeaderName, out: &mut HeaderMap| {
        for value in values(name) {
            let value = HeaderValue::from_bytes(value).unwrap_or(UNREPRESENTABLE);
            out.append(name.clone(), value);
        }
    };
    if uses == HeaderUse::Authenticate {
        copy(&AUTHORIZATION, &mut out);
        if out.is_empty() {
            // The core reads an opted-in cookie only when no `Authorization` header was sent.
            copy(&COOKIE, &mut out);
        }
    }
    for name in [&X_REQUEST_ID, &TRACEPARENT, &TRACESTATE] {
        copy(name, &mut out);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn copied(uses: HeaderUse, pairs: &[(&str, &[u8])]) -> HeaderMap {
        pipeline_headers(uses, |name: &HeaderName| {
            pairs
                .iter()
                .filter(|(n, _)| n.eq_ignore_ascii_case(name.as_str()))
                .map(|(_, v)| *v)
                .collect::<Vec<_>>()
        })
    }

    #[test]
    fn copies_every_value_of_the_headers_read_and_nothing_else() {
        let map = copied(
            HeaderUse::Authenticate,
            &[
                ("Authorization", b"Bearer a"),
                ("authorization", b"Bearer b"),
                ("x-request-id", b"rid"),
                ("x-user-id", b"mallory"),
                ("cookie", b"token=x"),
                ("traceparent", b"00-x"),
            ],
        );
        let auth: Vec<_> = map.get_all(AUTHORIZATION).iter().collect();
        assert_eq!(auth, ["Bearer a", "Bearer b"]);
        assert_eq!(map[X_REQUEST_ID], "rid");
        assert_eq!(map[TRACEPARENT], "00-x");
        assert_eq!(
            map.len(),
            4,
            "no cookie when a header is sent, no x-user-id ever"
        );
    }

    #[test]
    fn cookies_are_copied_only_without_an_authorization_header() {
        let map = copied(
            HeaderUse::Authenticate,
            &[("cookie", b"a=1"), ("cookie", b"token=x")],
        );
        let cookies: Vec<_> = map.get_all(COOKIE).iter().collect();
        assert_eq!(cookies, ["a=1", "token=x"]);
    }

    #[test]
    fn tracing_reads_neither_the_token_nor_cookies() {
        let map = copied(
            HeaderUse::Trace,
            &[
                ("authorization", b"Bearer a"),
                ("cookie", b"token=x"),
                ("x-request-id", b"rid"),
            ],
        );
        assert_eq!(map.len(), 1);
        assert_eq!(map[X_REQUEST_ID], "rid");
    }

    #[test]
    fn unrepresentable_values_fail_closed_and_an_empty_map_stays_empty() {
        let map = copied(
            HeaderUse::Authenticate,
            &[("authorization", b"Bearer \x01")],
        );
        assert_eq!(map[AUTHORIZATION], " ");
        assert!(copied(HeaderUse::Authenticate, &[]).is_empty());
    }
}
