//! The request span of the actix-web adapter, captured in memory: identity, route template,
//! status and latency for accepted, refused and abandoned requests; never the token. With the
//! `metrics` feature, the counters too.

// Test helpers: a failed expectation is a failed test.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::future::{Future, poll_fn};
use std::task::Poll;

use actix_web::dev::Service;
use actix_web::http::StatusCode;
use actix_web::{App, HttpResponse, test, web};
use tenant_guard_actix::{Authenticated, RequestTracing, TenantGuard};
use tenant_guard_testkit::TestIssuer;
use tenant_guard_testkit::capture::{Capture, CapturedSpan};
use uuid::Uuid;

const ORG: Uuid = Uuid::from_u128(0x3f2b8c1e_9d4a_4e6b_8f7c_1a2b3c4d5e6f);

async fn project(Authenticated(p): Authenticated) -> HttpResponse {
    HttpResponse::Ok().body(p.user_id().to_owned())
}

async fn slow(Authenticated(_): Authenticated) -> HttpResponse {
    std::future::pending().await
}

/// `/api/projects/{id}` behind the guard; `outer` wraps the whole app in `RequestTracing`.
macro_rules! app {
    ($issuer:expr, $outer:expr) => {
        test::init_service(
            App::new()
                .wrap(actix_web::middleware::Condition::new(
                    $outer,
                    RequestTracing::new(),
                ))
                .service(
                    web::scope("/api")
                        .wrap(TenantGuard::new($issuer.verifier().clone()))
                        .route("/projects/{id}", web::get().to(project))
                        .route("/slow/{id}", web::get().to(slow)),
                )
                .route("/healthz", web::get().to(HttpResponse::Ok)),
        )
        .await
    };
}

fn request(path: &str, token: Option<&str>) -> test::TestRequest {
    let mut request = test::TestRequest::get()
        .uri(path)
        .insert_header(("x-request-id", "req-obs-2"));
    if let Some(token) = token {
        request = request.insert_header(("authorization", format!("Bearer {token}")));
    }
    request
}

/// Sends one request with a capture installed; the status and the one `request` span.
async fn traced(
    issuer: &TestIssuer,
    outer: bool,
    path: &str,
    token: Option<&str>,
) -> (StatusCode, CapturedSpan, Capture) {
    let capture = Capture::new();
    let status = {
        let _trace = capture.set_default();
        let app = app!(issuer, outer);
        let status = test::call_service(&app, request(path, token).to_request())
            .await
            .status();
        drop(app);
        status
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

#[actix_web::test]
async fn an_accepted_request_carries_identity_route_status_and_latency() {
    let issuer = TestIssuer::new();
    let token = issuer.token(ORG, "user-7", "authenticated");
    for outer in [true, false] {
        let (status, span, capture) =
            traced(&issuer, outer, "/api/projects/42", Some(&token)).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(
            span.field("request_id"),
            Some("req-obs-2"),
            "outer: {outer}"
        );
        assert_eq!(span.field("org_id"), Some(ORG.to_string().as_str()));
        assert_eq!(span.field("user_id"), Some("user-7"));
        assert_eq!(span.field("role"), Some("authenticated"));
        assert_eq!(
            span.field("route"),
            Some("/api/projects/{id}"),
            "the template, not the path"
        );
        assert_eq!(span.field("status"), Some("200"));
        assert_eq!(span.field("error_code"), None);
        assert_eq!(span.field("cancelled"), None);
        assert_latency(&span);
        let everything = capture.all_text();
        assert!(!everything.contains(&token), "the token is never logged");
        assert!(!everything.contains("Bearer"), "{everything}");
    }
}

#[actix_web::test]
async fn a_refused_request_carries_status_and_error_code_but_no_identity() {
    let issuer = TestIssuer::new();
    for outer in [true, false] {
        let (status, span, _) = traced(&issuer, outer, "/api/projects/42", None).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert_eq!(span.field("status"), Some("401"), "outer: {outer}");
        assert_eq!(span.field("error_code"), Some("missing_token"));
        assert_eq!(span.field("route"), Some("/api/projects/{id}"));
        assert_eq!(span.field("request_id"), Some("req-obs-2"));
        for identity in ["org_id", "user_id", "role"] {
            assert_eq!(span.field(identity), None, "{identity}: {span:#?}");
        }
        assert_latency(&span);
    }
    let forged = TestIssuer::new().token(ORG, "user-7", "authenticated");
    let (status, span, capture) = traced(&issuer, true, "/api/projects/42", Some(&forged)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(span.field("error_code"), Some("invalid_signature"));
    assert!(!capture.all_text().contains(&forged));
}

#[actix_web::test]
async fn public_and_unknown_routes_are_traced_by_the_outer_middleware() {
    let issuer = TestIssuer::new();
    let (status, span, _) = traced(&issuer, true, "/healthz", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(span.field("route"), Some("/healthz"));
    assert_eq!(span.field("status"), Some("200"));
    assert_eq!(span.field("org_id"), None);
    let (status, span, _) = traced(&issuer, true, "/nowhere/1", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(span.field("status"), Some("404"));
    assert_eq!(span.field("route"), None, "no route matched");
}

#[actix_web::test]
async fn a_request_the_client_abandons_is_cancelled_and_its_span_closes() {
    let issuer = TestIssuer::new();
    let token = issuer.token(ORG, "user-7", "authenticated");
    for outer in [true, false] {
        let capture = Capture::new();
        {
            let _trace = capture.set_default();
            let app = app!(&issuer, outer);
            let mut response =
                Box::pin(app.call(request("/api/slow/1", Some(&token)).to_request()));
            // One poll runs the middlewares and the handler up to its pending point; then the
            // client goes away (actix-web drops the future).
            poll_fn(|cx| {
                assert!(response.as_mut().poll(cx).is_pending());
                Poll::Ready(())
            })
            .await;
            drop(response);
            drop(app);
        }
        let span = capture.span("request").expect("one request span");
        assert!(span.closed, "{span:#?}");
        assert_eq!(span.field("cancelled"), Some("true"), "outer: {outer}");
        assert_eq!(span.field("status"), None);
        assert_eq!(span.field("org_id"), Some(ORG.to_string().as_str()));
        assert_eq!(span.field("route"), Some("/api/slow/{id}"));
        assert_latency(&span);
    }
}

#[cfg(feature = "metrics")]
#[actix_web::test]
async fn metrics_count_requests_rejections_and_orgs() {
    use metrics_util::debugging::{DebugValue, DebuggingRecorder};
    use tenant_guard_core::metrics as names;

    let issuer = TestIssuer::new();
    let token = issuer.token(ORG, "user-7", "authenticated");
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    {
        let _local = metrics::set_default_local_recorder(&recorder);
        let app = app!(&issuer, true);
        for _ in 0..2 {
            let response =
                test::call_service(&app, request("/api/projects/1", Some(&token)).to_request())
                    .await;
            assert_eq!(response.status(), StatusCode::OK);
        }
        let response =
            test::call_service(&app, request("/api/projects/1", None).to_request()).await;
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    }
    let mut counters = std::collections::BTreeMap::new();
    for (key, _, _, value) in snapshotter.snapshot().into_vec() {
        if let DebugValue::Counter(n) = value {
            let key = key.key();
            let labels: Vec<String> = key
                .labels()
                .map(|l| format!("{}={}", l.key(), l.value()))
                .collect();
            counters.insert(format!("{}{{{}}}", key.name(), labels.join(",")), n);
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
}
