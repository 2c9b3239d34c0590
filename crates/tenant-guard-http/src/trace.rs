//! The request's id and span (chosen once per request, reused by every guard inside), and the
//! W3C Trace Context (`traceparent`, `tracestate`) recorded on that span.

use http::{HeaderMap, HeaderName};
use tenant_guard_core::RequestId;
use tenant_guard_core::trace::{self, RequestTimer};
use tracing::Span;

/// The W3C Trace Context header naming the caller's trace and span.
pub const TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");
/// The W3C Trace Context header with vendor-specific trace state.
pub const TRACESTATE: HeaderName = HeaderName::from_static("tracestate");

/// The longest `tracestate` recorded (the W3C recommends propagating at least 512 characters).
const MAX_TRACESTATE: usize = 512;

/// A request's id and `request` span: opened by the outermost guard or tracing layer and kept in
/// the request's extensions, so the layers inside record on the same span and answer with the
/// same `x-request-id`.
#[derive(Debug, Clone)]
pub struct RequestTrace {
    id: RequestId,
    span: Span,
    routed: bool,
}

impl RequestTrace {
    /// A new trace for a request with `headers`: the caller's sane `x-request-id` (else a fresh
    /// one), a span from [`tenant_guard_core::trace::request_span`] carrying the caller's W3C
    /// `traceparent`/`tracestate` when valid, and the timer that records how the request ends.
    ///
    /// ```
    /// use tenant_guard_http::RequestTrace;
    ///
    /// let mut headers = http::HeaderMap::new();
    /// headers.insert("x-request-id", "abc".parse()?);
    /// let (trace, timer) = RequestTrace::start(&headers);
    /// assert_eq!(trace.id().as_str(), "abc");
    /// timer.finish(200);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn start(headers: &HeaderMap) -> (Self, RequestTimer) {
        let id = RequestId::from_headers(headers);
        let span = trace::request_span(&id);
        record_trace_context(&span, headers);
        let timer = RequestTimer::start(span.clone());
        let trace = Self {
            id,
            span,
            routed: false,
        };
        (trace, timer)
    }

    /// The trace an outer layer put into `request`'s extensions, or a new one stored there (with
    /// its [`RequestId`]); the timer is `Some` for a new trace only: whoever opened the span
    /// records how the request ended.
    pub fn of<B>(request: &mut http::Request<B>) -> (Self, Option<RequestTimer>) {
        let outer = request.extensions().get::<Self>();
        let (trace, timer) = Self::reuse_or_start(outer, request.headers(), None);
        if timer.is_some() {
            let extensions = request.extensions_mut();
            extensions.insert(trace.id.clone());
            extensions.insert(trace.clone());
        }
        (trace, timer)
    }

    /// The `outer` trace (an outer layer's, from the request's extensions), else a new one for
    /// `headers` with `route` recorded; the timer is `Some` for a new trace only (its opener
    /// records how the request ended, see [`finish`](Self::finish)). For adapters whose
    /// extensions are not `http`'s; store a new trace (and its [`RequestId`]) in them.
    pub fn reuse_or_start(
        outer: Option<&Self>,
        headers: &HeaderMap,
        route: Option<&str>,
    ) -> (Self, Option<RequestTimer>) {
        if let Some(trace) = outer {
            return (trace.clone(), None);
        }
        let (mut trace, timer) = Self::start(headers);
        trace.record_route(route);
        (trace, Some(timer))
    }

    /// Records how the request ended (`status`, `latency_ms`) when `timer` is the span's: the
    /// one [`reuse_or_start`](Self::reuse_or_start) gave the layer that opened it.
    pub fn finish(timer: Option<RequestTimer>, status: u16) {
        if let Some(timer) = timer {
            timer.finish(status);
        }
    }

    /// Records the matched route template once (the first layer that knows it).
    pub fn record_route(&mut self, route: Option<&str>) -> bool {
        match route {
            Some(route) if !self.routed => {
                trace::record_route(&self.span, route);
                self.routed = true;
                true
            }
            _ => false,
        }
    }

    /// The request id (sent back in `x-request-id`).
    pub fn id(&self) -> &RequestId {
        &self.id
    }

    /// The request's `request` span.
    pub fn span(&self) -> &Span {
        &self.span
    }
}

/// Records a valid W3C `traceparent` (`version-traceid-parentid-flags`, lower-case hex, ids not
/// all zero, version not `ff`) as `trace_id`, `parent_span_id` and `trace_flags` on `span`, and
/// then a sane `tracestate` (visible ASCII, at most 512 bytes, one header). Anything else is
/// ignored: a malformed or repeated `traceparent` starts no trace, as the W3C specification says.
///
/// ```
/// let span = tenant_guard_core::trace::request_span(&tenant_guard_core::RequestId::generate());
/// let mut headers = http::HeaderMap::new();
/// headers.insert(
///     "traceparent",
///     "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".parse()?,
/// );
/// assert!(tenant_guard_http::record_trace_context(&span, &headers));
/// headers.insert("traceparent", "00-00000000000000000000000000000000-00f067aa0ba902b7-01".parse()?);
/// assert!(!tenant_guard_http::record_trace_context(&span, &headers));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn record_trace_context(span: &Span, headers: &HeaderMap) -> bool {
    let mut values = headers.get_all(TRACEPARENT).iter();
    let (Some(value), None) = (values.next(), values.next()) else {
        return false;
    };
    let Some((trace_id, parent, flags)) = parse_traceparent(value.as_bytes()) else {
        return false;
    };
    span.record("trace_id", trace_id);
    span.record("parent_span_id", parent);
    span.record("trace_flags", flags);
    let mut states = headers.get_all(TRACESTATE).iter();
    if let (Some(state), None) = (states.next(), states.next())
        && state.len() <= MAX_TRACESTATE
        && let Ok(state) = state.to_str()
        && !state.is_empty()
    {
        span.record("tracestate", state);
    }
    true
}

/// `(trace_id, parent_id, flags)` of a valid `traceparent`.
fn parse_traceparent(value: &[u8]) -> Option<(&str, &str, &str)> {
    let text = std::str::from_utf8(value).ok()?;
    let mut parts = text.split('-');
    let (version, trace_id, parent, flags) =
        (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    let lower_hex = |s: &str, len: usize| {
        s.len() == len
            && s.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    };
    let valid = lower_hex(version, 2)
        && version != "ff"
        // Version 00 has exactly four fields; later versions may append more.
        && (version != "00" || parts.next().is_none())
        && lower_hex(trace_id, 32)
        && trace_id.bytes().any(|b| b != b'0')
        && lower_hex(parent, 16)
        && parent.bytes().any(|b| b != b'0')
        && lower_hex(flags, 2);
    valid.then_some((trace_id, parent, flags))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_valid_traceparents_parse() {
        let good = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        assert_eq!(
            parse_traceparent(good.as_bytes()),
            Some(("4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7", "01"))
        );
        for bad in [
            "",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
        ] {
            assert_eq!(parse_traceparent(bad.as_bytes()), None, "{bad}");
        }
        assert!(
            parse_traceparent(b"01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-future")
                .is_some()
        );
    }
}
