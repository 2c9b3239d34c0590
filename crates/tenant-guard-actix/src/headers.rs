//! The request headers the core reads, copied from actix-web's `http` 0.2 map into an `http` 1.x
//! map.
//!
//! Only `authorization`, `x-request-id`, the W3C `traceparent`/`tracestate` and — when there is
//! no `authorization` header, for a verifier opted in to a token cookie — `cookie` are copied (every value of each, so "more than
//! one" stays detectable): a handful of bytes per request instead of converting the whole map.

use actix_web::http::header::HeaderMap as ActixHeaderMap;
use http::header::{AUTHORIZATION, COOKIE};
use http::{HeaderMap, HeaderName, HeaderValue};
use tenant_guard_core::request_id::X_REQUEST_ID;
use tenant_guard_http::{TRACEPARENT, TRACESTATE};

/// A value both `http` versions accept but that no check accepts either: counted, never valid.
///
/// Both versions validate header values by the same rule, so this is only a fail-closed fallback.
const UNREPRESENTABLE: HeaderValue = HeaderValue::from_static(" ");

/// Builds the `http` 1.x map [`tenant_guard_core::Verifier::authenticate`] and
/// [`tenant_guard_core::RequestId::from_headers`] read.
pub(crate) fn core_headers(headers: &ActixHeaderMap) -> HeaderMap {
    let mut out = HeaderMap::new();
    copy(headers, &AUTHORIZATION, &mut out);
    if out.is_empty() {
        // The core reads an opted-in cookie only when no `Authorization` header was sent.
        copy(headers, &COOKIE, &mut out);
    }
    copy_trace_headers(headers, &mut out);
    out
}

/// Only the request id and trace context, for middlewares that do not authenticate.
pub(crate) fn trace_headers(headers: &ActixHeaderMap) -> HeaderMap {
    let mut out = HeaderMap::new();
    copy_trace_headers(headers, &mut out);
    out
}

fn copy_trace_headers(from: &ActixHeaderMap, to: &mut HeaderMap) {
    for name in [&X_REQUEST_ID, &TRACEPARENT, &TRACESTATE] {
        copy(from, name, to);
    }
}

fn copy(from: &ActixHeaderMap, name: &HeaderName, to: &mut HeaderMap) {
    for value in from.get_all(name.as_str()) {
        let value = HeaderValue::from_bytes(value.as_bytes()).unwrap_or(UNREPRESENTABLE);
        to.append(name.clone(), value);
    }
}

#[cfg(test)]
mod tests {
    use actix_web::http::header::{HeaderName as AName, HeaderValue as AValue};

    use super::*;

    fn actix(pairs: &[(&str, &str)]) -> ActixHeaderMap {
        let mut map = ActixHeaderMap::new();
        for (name, value) in pairs {
            map.append(
                AName::from_bytes(name.as_bytes()).unwrap(),
                AValue::from_str(value).unwrap(),
            );
        }
        map
    }

    #[test]
    fn copies_every_value_of_the_two_headers_and_nothing_else() {
        let map = core_headers(&actix(&[
            ("Authorization", "Bearer a"),
            ("authorization", "Bearer b"),
            ("x-request-id", "rid"),
            ("x-user-id", "mallory"),
            ("cookie", "token=x"),
        ]));
        let auth: Vec<_> = map.get_all(AUTHORIZATION).iter().collect();
        assert_eq!(auth, ["Bearer a", "Bearer b"]);
        assert_eq!(map[X_REQUEST_ID], "rid");
        assert_eq!(
            map.len(),
            3,
            "no cookie when a header is sent, no x-user-id ever"
        );
    }

    #[test]
    fn cookies_are_copied_only_without_an_authorization_header() {
        let map = core_headers(&actix(&[("cookie", "a=1"), ("cookie", "token=x")]));
        let cookies: Vec<_> = map.get_all(COOKIE).iter().collect();
        assert_eq!(cookies, ["a=1", "token=x"]);
    }

    #[test]
    fn an_empty_map_stays_empty() {
        assert!(core_headers(&ActixHeaderMap::new()).is_empty());
    }
}
