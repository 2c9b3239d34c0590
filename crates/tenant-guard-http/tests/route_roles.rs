//! A guard's own role requirement (`allow_roles`), checked by the shared pipeline before the
//! handler and before the pool: through the tower layer, which axum, actix-web and tonic share.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::convert::Infallible;

use http::{Request, Response, StatusCode, header};
use http_body_util::BodyExt;
use tenant_guard_http::{GuardLayer, RequestContext};
use tenant_guard_testkit::TestIssuer;
use tower::{Layer, ServiceExt, service_fn};
use uuid::Uuid;

const ORG: Uuid = Uuid::from_u128(0x0a0a_0a0a_0a0a_4a0a_8a0a_0a0a_0a0a_0a0a);

/// Sends one request with `token` through a guard built by `layer`; returns the status, the
/// challenge and the body (the handler answers with the principal's role).
async fn send(layer: GuardLayer, token: &str) -> (StatusCode, Option<String>, String) {
    let handler = service_fn(|request: Request<String>| async move {
        let context = RequestContext::from_extensions(request.extensions()).unwrap();
        let role = context.principal().role().as_str().to_owned();
        Ok::<_, Infallible>(Response::new(role))
    });
    let request = Request::builder()
        .uri("/admin")
        .header(header::AUTHORIZATION, format!("Bearer {token}"))
        .body(String::new())
        .unwrap();
    let response = layer.layer(handler).oneshot(request).await.unwrap();
    let status = response.status();
    let challenge = response
        .headers()
        .get(header::WWW_AUTHENTICATE)
        .map(|v| v.to_str().unwrap().to_owned());
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    (
        status,
        challenge,
        String::from_utf8(bytes.to_vec()).unwrap(),
    )
}

fn code(body: &str) -> String {
    let value: serde_json::Value = serde_json::from_str(body).unwrap();
    value["error"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn a_role_outside_the_route_allowlist_is_403_and_a_listed_role_passes() {
    let issuer = TestIssuer::with_allowed_roles(["authenticated", "org_admin"]);
    let layer = GuardLayer::new(issuer.verifier().clone()).allow_roles(["org_admin"]);

    let user = issuer.token(ORG, "user-1", "authenticated");
    let (status, challenge, body) = send(layer.clone(), &user).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(code(&body), "role_not_allowed");
    assert!(challenge.unwrap().contains("insufficient_scope"));

    let admin = issuer.token(ORG, "user-1", "org_admin");
    let (status, challenge, body) = send(layer, &admin).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body, "org_admin");
    assert!(challenge.is_none());
}

#[tokio::test]
async fn an_invalid_role_name_in_the_allowlist_locks_the_route() {
    let issuer = TestIssuer::with_allowed_roles(["authenticated", "org_admin"]);
    for allowlist in [vec!["Not A Role", ""], vec![]] {
        let layer = GuardLayer::new(issuer.verifier().clone()).allow_roles(allowlist.clone());
        for role in ["authenticated", "org_admin"] {
            let (status, _, body) = send(layer.clone(), &issuer.token(ORG, "u", role)).await;
            assert_eq!(
                status,
                StatusCode::FORBIDDEN,
                "{allowlist:?} {role}: {body}"
            );
            assert_eq!(code(&body), "role_not_allowed");
        }
    }
}

#[tokio::test]
async fn a_role_the_verifier_refuses_is_403_whatever_the_route_allows() {
    // The route lists service_role, but the verifier's allowlist (authenticated and anon) is the
    // last word: a route can narrow the roles, never widen them.
    let issuer = TestIssuer::new();
    let layer = GuardLayer::new(issuer.verifier().clone()).allow_roles(["service_role"]);
    let (status, _, body) = send(layer, &issuer.token(ORG, "u", "service_role")).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(code(&body), "role_not_allowed");
}
