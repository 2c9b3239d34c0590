//! Tracing helpers: a request span with the fields every log line of a request should carry, and
//! the timer that records how the request ended.
//!
//! Both adapters use these, so a request's span looks the same under axum and actix-web:
//!
//! | field | set when | value |
//! | --- | --- | --- |
//! | `request_id` | the request arrives | the caller's sane `x-request-id`, else a fresh UUID |
//! | `route` | the framework matched a route | the route *template* (`/projects/{id}`), never the raw path |
//! | `org_id`, `user_id`, `role` | the token is verified ([`record_principal`]) | ids and the role only, never a token or other claims |
//! | `error_code` | the request is refused ([`record_rejection`]) | the JSON body's `error`, e.g. `missing_token` |
//! | `status`, `latency_ms` | the response is produced ([`RequestTimer::finish`]) | the HTTP status; milliseconds since arrival |
//! | `cancelled` | the request is dropped before a response (the client went away) | `true`, with `latency_ms` |
//! | `trace_id`, `parent_span_id`, `trace_flags`, `tracestate` | the request carries a valid W3C `traceparent` (recorded by `tenant_guard_http`) | its fields as sent (lower-case hex), `tracestate` when sane |
//!
//! The span is at `info` level on the target `tenant_guard_core::trace`; [`RequestTimer::finish`]
//! emits a `debug` event `request finished` inside it, so a formatter shows every field at least
//! once per request (or use span close events, e.g. tracing-subscriber's `FmtSpan::CLOSE`).
//!
//! ```
//! use tenant_guard_core::{trace, RequestId};
//!
//! let span = trace::request_span(&RequestId::generate());
//! let timer = trace::RequestTimer::start(span.clone());
//! trace::record_route(&span, "/projects/{id}");
//! // ... authenticate, then: trace::record_principal(&span, &principal);
//! timer.finish(200);
//! ```
//!
//! With the `metrics` feature the same calls also feed the counters and histograms described in
//! `tenant_guard_core::metrics`.

use std::time::{Duration, Instant};

use tracing::Span;
use tracing::field::Empty;

use crate::principal::Principal;
use crate::request_id::RequestId;

/// An `info`-level span named `request` with `request_id` set and the other fields (see the
/// [module docs](self)) left empty for the helpers of this module.
pub fn request_span(request_id: &RequestId) -> Span {
    tracing::info_span!(
        "request",
        request_id = %request_id,
        route = Empty,
        org_id = Empty,
        user_id = Empty,
        role = Empty,
        error_code = Empty,
        status = Empty,
        latency_ms = Empty,
        cancelled = Empty,
        trace_id = Empty,
        parent_span_id = Empty,
        trace_flags = Empty,
        tracestate = Empty,
    )
}

/// Records the verified identity on `span` (any span with `org_id`, `user_id` and `role` fields):
/// ids and the role, never the token or other claims. With the `metrics` feature, counts the
/// request for its org. Call it once per request.
pub fn record_principal(span: &Span, principal: &Principal) {
    span.record("org_id", tracing::field::display(principal.org_id()));
    span.record("user_id", principal.user_id());
    span.record("role", principal.role().as_str());
    #[cfg(feature = "metrics")]
    crate::metrics::org_request(principal.org_id());
}

/// Records the matched route template (`/projects/{id}`, not `/projects/42`) on `span`.
pub fn record_route(span: &Span, route: &str) {
    span.record("route", route);
}

/// Records that the request is refused with the error `code` (the JSON body's `error`), and
/// emits a `debug` event `request rejected` with `status` and `error_code`. The status itself is
/// recorded on the span by [`RequestTimer::finish`]. With the `metrics` feature, counts the
/// rejection by code.
pub fn record_rejection(span: &Span, status: u16, code: &'static str) {
    span.record("error_code", code);
    span.in_scope(|| tracing::debug!(status, error_code = code, "request rejected"));
    #[cfg(feature = "metrics")]
    crate::metrics::request_rejected(code);
}

/// Times one request from its arrival; records `status` and `latency_ms` on its span when the
/// response is produced ([`finish`](Self::finish)), or `cancelled` and `latency_ms` when it is
/// dropped unfinished (the client went away, the server shut down).
///
/// Holds the span (a clone of it), so the span closes when the last of the timer, the request's
/// future and its extensions is gone. Costs one `Instant::now()`; nothing is allocated.
#[derive(Debug)]
pub struct RequestTimer {
    span: Span,
    started: Instant,
    finished: bool,
}

impl RequestTimer {
    /// Starts timing now.
    pub fn start(span: Span) -> Self {
        Self {
            span,
            started: Instant::now(),
            finished: false,
        }
    }

    /// The request's span.
    pub fn span(&self) -> &Span {
        &self.span
    }

    /// Time since the request arrived.
    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// The response is produced with `status`: records `status` and `latency_ms` and emits a
    /// `debug` event `request finished`. With the `metrics` feature, counts the request by status
    /// and records its latency.
    pub fn finish(mut self, status: u16) {
        self.finished = true;
        let latency = self.started.elapsed();
        self.span.record("status", status);
        self.span.record("latency_ms", millis(latency));
        self.span.in_scope(|| tracing::debug!("request finished"));
        #[cfg(feature = "metrics")]
        crate::metrics::request_finished(status, latency);
    }
}

impl Drop for RequestTimer {
    fn drop(&mut self) {
        if !self.finished {
            self.span.record("cancelled", true);
            self.span
                .record("latency_ms", millis(self.started.elapsed()));
            self.span.in_scope(|| {
                tracing::debug!("request cancelled before its response (the client went away?)");
            });
        }
    }
}

/// Milliseconds with microsecond precision, for the `latency_ms` fields.
pub fn millis(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::{Arc, Mutex};

    use tracing::field::{Field, Visit};
    use tracing::span::{Attributes, Id, Record};
    use tracing_subscriber::Registry;
    use tracing_subscriber::layer::{Context, Layer, SubscriberExt};

    use super::*;

    /// The fields of the one `request` span, as text.
    #[derive(Clone, Default)]
    struct Fields(Arc<Mutex<BTreeMap<String, String>>>);

    impl Visit for Fields {
        fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
            self.0
                .lock()
                .unwrap()
                .insert(field.name().into(), format!("{value:?}"));
        }
    }

    impl<S: tracing::Subscriber> Layer<S> for Fields {
        fn on_new_span(&self, attrs: &Attributes<'_>, _: &Id, _: Context<'_, S>) {
            attrs.record(&mut self.clone());
        }
        fn on_record(&self, _: &Id, values: &Record<'_>, _: Context<'_, S>) {
            values.record(&mut self.clone());
        }
    }

    fn captured(f: impl FnOnce()) -> BTreeMap<String, String> {
        let fields = Fields::default();
        let subscriber = Registry::default().with(fields.clone());
        tracing::subscriber::with_default(subscriber, f);
        fields.0.lock().unwrap().clone()
    }

    #[test]
    fn a_finished_request_has_status_and_latency() {
        let fields = captured(|| {
            let span = request_span(&RequestId::generate());
            let timer = RequestTimer::start(span.clone());
            record_route(&span, "/projects/{id}");
            record_rejection(&span, 401, "missing_token");
            timer.finish(401);
        });
        assert_eq!(fields["route"], "\"/projects/{id}\"");
        assert_eq!(fields["status"], "401");
        assert_eq!(fields["error_code"], "\"missing_token\"");
        assert!(fields["latency_ms"].parse::<f64>().unwrap() >= 0.0);
        assert!(!fields.contains_key("cancelled"));
    }

    #[test]
    fn a_dropped_request_is_cancelled_without_a_status() {
        let fields = captured(|| {
            let span = request_span(&RequestId::generate());
            drop(RequestTimer::start(span));
        });
        assert_eq!(fields["cancelled"], "true");
        assert!(fields.contains_key("latency_ms"));
        assert!(!fields.contains_key("status"));
    }
}
