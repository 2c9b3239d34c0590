//! The request span of the axum adapter, captured in memory: identity, route template, status
//! and latency for accepted, refused and abandoned requests; never the token. With the `metrics`
//! feature, the counters too.
#![allow(clippy::unwrap_used, clippy::expect_used)] // helpers outside #[test] fns

use std::future::{Future, poll_fn};
use std::task::Poll;

use axum::Router;
use axum::body::Body;
use axum::routing::get;
use http::StatusCode;
use tenant_guard_axum::{Authenticated, RequestTracingLayer, TenantGuardLayer};
use tenant_guard_testkit::TestIssuer;
use tenant_guard_testkit::capture::{Capture, CapturedSpan};
use tower::ServiceExt;
use uuid::Uuid;

const ORG: Uuid = Uuid::from_u128(0x3f2b8c1e_9d4a_4e6b_8f7c_1a2b3c4d5e6f);

async fn project(Authenticated(p): Authenticated) -> String {
    p.user_id().to_owned()
}

/// `/projects/{id}` behind the guard; `outer` adds `RequestTracingLayer` around the router.
fn app(issuer: &TestIssuer, outer: bool) -> Router {
    let router = Router::new()
        .route("/projects/{id}", get(project))
        .route(
            "/slow/{id}",
            get(|Authenticated(_): Authenticated| std::future::pending::<String>()),
        )
        .route_layer(TenantGuardLayer::new(issuer.verifier().clone()))
        .route("/healthz", get(|| async { "ok" }));
    if outer {
        router.layer(RequestTracingLayer::new())
    } else {
        router
    }
}

fn request(path: &str, token: Option<&str>) -> http::Request<Body> {
    let mut request = http::Request::builder()
        .uri(path)
        .header("x-request-id", "req-obs-1");
    if let Some(token) = token {
        request = request.header("authorization", format!("Bearer {token}"));
    }
    request.body(Body::empty()).unwrap()
}

/// Sends one request with a capture installed; the status and the one `request` span.
async fn traced(app: Router, request: http::Request<Body>) -> (StatusCode, CapturedSpan, Capture) {
    let capture = Capture::new();
    let status = {
        let _trace = capture.set_default();
        app.oneshot(request).await.unwrap().status()
    };
    let spans = capture.spans_named("request");
    assert_eq!(spans.len(), 1, "one request, one span: {spans:#?}");
    let span = spans.into_iter().next().unwrap();
    assert!(span.closed, "{span:#?}");
    (status, span, capture)
}

fn assert_latency(span: &CapturedSpan) {
    let latency: f64 = span
        .field("latency_ms")
        .expect("latency_ms")
        .parse()
        .unwrap();
    assert!(latency >= 0.0 && latency.is_finite(), "{latency}");
}

#[tokio::test]
async fn an_accepted_request_carries_identity_route_status_and_latency() {
    let issuer = TestIssuer::new();
    let token = issuer.token(ORG, "user-7", "authenticated");
    for outer in [true, false] {
        let (status, span, capture) =
            traced(app(&issuer, outer), request("/projects/42", Some(&token))).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(
            span.field("request_id"),
            Some("req-obs-1"),
            "outer: {outer}"
        );
        assert_eq!(span.field("org_id"), Some(ORG.to_string().as_str()));
        assert_eq!(span.field("user_id"), Some("user-7"));
        assert_eq!(span.field("role"), Some("authenticated"));
        assert_eq!(
            span.field("route"),
            Some("/projects/{id}"),
            "the template, not the path"
        );
        assert_eq!(span.field("status"), Some("200"));
        assert_eq!(span.field("error_code"), None);
        assert_eq!(span.field("cancelled"), None);
        assert_latency(&span);
        let finished = capture
            .events()
            .into_iter()
            .find(|e| e.field("message") == Some("request finished"))
            .expect("a `request finished` event");
        assert_eq!(finished.spans, ["request"]);
        let everything = capture.all_text();
        assert!(!everything.contains(&token), "the token is never logged");
        assert!(!everything.contains("Bearer"), "{everything}");
    }
}

#[tokio::test]
async fn a_refused_request_carries_status_and_error_code_but_no_identity() {
    let issuer = TestIssuer::new();
    for outer in [true, false] {
        let (status, span, _) = traced(app(&issuer, outer), request("/projects/42", None)).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert_eq!(span.field("status"), Some("401"), "outer: {outer}");
        assert_eq!(span.field("error_code"), Some("missing_token"));
        assert_eq!(span.field("route"), Some("/projects/{id}"));
        assert_eq!(span.field("request_id"), Some("req-obs-1"));
        for identity in ["org_id", "user_id", "role"] {
            assert_eq!(span.field(identity), None, "{identity}: {span:#?}");
        }
        assert_latency(&span);
    }

    // A token signed with another key: refused, and never logged.
    let forged = TestIssuer::new().token(ORG, "user-7", "authenticated");
    let (status, span, capture) =
        traced(app(&issuer, true), request("/projects/42", Some(&forged))).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(span.field("error_code"), Some("invalid_signature"));
    assert!(!capture.all_text().contains(&forged));
}

#[tokio::test]
async fn routes_outside_the_guard_are_traced_by_the_outer_layer() {
    let issuer = TestIssuer::new();
    let (status, span, _) = traced(app(&issuer, true), request("/healthz", None)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(span.field("route"), Some("/healthz"));
    assert_eq!(span.field("status"), Some("200"));
    assert_eq!(span.field("org_id"), None);

    let (status, span, _) = traced(app(&issuer, true), request("/nowhere/1", None)).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(span.field("status"), Some("404"));
    assert_eq!(span.field("route"), None, "no route matched");
}

#[tokio::test]
async fn a_request_the_client_abandons_is_cancelled_and_its_span_closes() {
    let issuer = TestIssuer::new();
    let token = issuer.token(ORG, "user-7", "authenticated");
    for outer in [true, false] {
        let capture = Capture::new();
        {
            let _trace = capture.set_default();
            let mut response =
                Box::pin(app(&issuer, outer).oneshot(request("/slow/1", Some(&token))));
            // One poll runs the guard and the handler up to its pending point; then the client
            // goes away (hyper drops the future).
            poll_fn(|cx| {
                assert!(response.as_mut().poll(cx).is_pending());
                Poll::Ready(())
            })
            .await;
            drop(response);
        }
        let span = capture.span("request").expect("one request span");
        assert!(span.closed, "{span:#?}");
        assert_eq!(span.field("cancelled"), Some("true"), "outer: {outer}");
        assert_eq!(span.field("status"), None);
        assert_eq!(span.field("org_id"), Some(ORG.to_string().as_str()));
        assert_eq!(span.field("route"), Some("/slow/{id}"));
        assert_latency(&span);
    }
}

#[cfg(feature = "metrics")]
#[tokio::test]
async fn metrics_count_requests_rejections_and_orgs() {
    use metrics_util::debugging::{DebugValue, DebuggingRecorder};
    use tenant_guard_core::metrics as names;

    let issuer = TestIssuer::new();
    let token = issuer.token(ORG, "user-7", "authenticated");
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    {
        let _local = metrics::set_default_local_recorder(&recorder);
        for _ in 0..2 {
            let response = app(&issuer, true)
                .oneshot(request("/projects/1", Some(&token)))
                .await
                .unwrap();
            assert_eq!(response.status(), StatusCode::OK);
        }
        let response = app(&issuer, true)
            .oneshot(request("/projects/1", None))
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    }
    let mut counters = std::collections::BTreeMap::new();
    let mut latencies = 0;
    for (key, _, _, value) in snapshotter.snapshot().into_vec() {
        let key = key.key();
        let labels: Vec<String> = key
            .labels()
            .map(|l| format!("{}={}", l.key(), l.value()))
            .collect();
        match value {
            DebugValue::Counter(n) => {
                counters.insert(format!("{}{{{}}}", key.name(), labels.join(",")), n);
            }
            DebugValue::Histogram(values) if key.name() == names::REQUEST_DURATION => {
                latencies += values.len();
            }
            _ => {}
        }
    }
    assert_eq!(
        counters[&format!("{}{{status=200}}", names::REQUESTS)],
        2,
        "{counters:#?}"
    );
    assert_eq!(counters[&format!("{}{{status=401}}", names::REQUESTS)], 1);
    assert_eq!(
        counters[&format!("{}{{code=missing_token}}", names::REJECTIONS)],
        1
    );
    assert_eq!(
        counters[&format!("{}{{org_id={ORG}}}", names::ORG_REQUESTS)],
        2
    );
    assert_eq!(latencies, 3);
}
