//! The low-severity findings of the security review (issue 17), through the public API: lone
//! surrogates in claims, org/role claims under the user-editable `user_metadata`, an unbounded
//! clock leeway, and role names PostgreSQL reserves.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failure report

mod common;

use std::collections::HashMap;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use common::*;
use jsonwebtoken::EncodingKey;
use tenant_guard_core::verifier::MAX_LEEWAY;
use tenant_guard_core::{AuthError, Environment, Role, Verifier, VerifierBuilder};

fn verifier() -> Verifier {
    Verifier::builder(Environment::Production)
        .hmac_secret(SECRET)
        .clock(|| NOW)
        .build()
        .unwrap()
}

/// An HS256 token over claims given as raw JSON text (escapes serde_json would never write).
fn signed_text(claims: &str) -> String {
    let message = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(r#"{"alg":"HS256","typ":"JWT"}"#),
        URL_SAFE_NO_PAD.encode(claims)
    );
    let sig = jsonwebtoken::crypto::sign(
        message.as_bytes(),
        &EncodingKey::from_secret(SECRET.as_bytes()),
        jsonwebtoken::Algorithm::HS256,
    )
    .unwrap();
    format!("{message}.{sig}")
}

/// The test claims with `"key": raw` added.
fn claims_with(key: &str, raw: &str) -> String {
    let mut text = claims().to_string();
    text.pop();
    format!("{text},\"{key}\":{raw}}}")
}

#[test]
fn a_lone_surrogate_in_any_claim_is_a_malformed_token() {
    let v = verifier();
    for (key, raw) in [
        ("nickname", r#""\ud800""#),
        ("nickname", r#""\uDBFF tail""#),
        ("nickname", r#""\udc00""#),
        ("nickname", r#""\ud800\u0041""#),
        ("nested", r#"{"a":["\ud800"]}"#),
        ("x\\ud800", "1"),
    ] {
        let token = signed_text(&claims_with(key, raw));
        assert_eq!(
            v.verify(&token).map(drop),
            Err(AuthError::MalformedToken),
            "{key}: {raw}"
        );
    }
    // A surrogate pair is an ordinary character, and an escaped backslash is text.
    for raw in [r#""\ud83d\ude00""#, r#""C:\\ud800""#] {
        let token = signed_text(&claims_with("nickname", raw));
        assert!(v.verify(&token).is_ok(), "{raw}");
    }
}

fn lookup(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
    let map: HashMap<String, String> = vars
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    move |k| map.get(k).cloned()
}

#[test]
fn an_org_or_role_claim_under_user_metadata_is_refused_at_build_time() {
    for path in ["user_metadata.org_id", "user_metadata.a.b.org"] {
        let err = Verifier::builder(Environment::Production)
            .hmac_secret(SECRET)
            .org_claim(path)
            .build()
            .unwrap_err();
        assert!(
            matches!(err, AuthError::InvalidConfig(_)),
            "{path}: {err:?}"
        );
        assert!(err.to_string().contains("user_metadata"), "{err}");
        let err = Verifier::builder(Environment::Production)
            .hmac_secret(SECRET)
            .role_claim(path)
            .build()
            .unwrap_err();
        assert!(
            matches!(err, AuthError::InvalidConfig(_)),
            "{path}: {err:?}"
        );
    }
    // From the environment too, in every environment.
    for env in ["production", "test", "development"] {
        let err = VerifierBuilder::from_lookup(lookup(&[
            ("APP_ENV", env),
            ("JWT_SECRET", SECRET),
            ("ORG_CLAIM", "user_metadata.org_id"),
        ]))
        .and_then(VerifierBuilder::build)
        .unwrap_err();
        assert!(err.to_string().contains("user_metadata"), "{env}: {err}");
    }
    // app_metadata (server-written) and a claim merely named like it are fine.
    for path in [
        "app_metadata.org_id",
        "user_metadata_org",
        "org.user_metadata",
    ] {
        assert!(
            Verifier::builder(Environment::Production)
                .hmac_secret(SECRET)
                .org_claim(path)
                .build()
                .is_ok(),
            "{path}"
        );
    }
}

#[test]
fn the_user_metadata_override_is_explicit_and_works() {
    let v = Verifier::builder(Environment::Production)
        .hmac_secret(SECRET)
        .org_claim("user_metadata.org_id")
        .dangerous_allow_user_editable_claims()
        .clock(|| NOW)
        .build()
        .unwrap();
    let mut claims = claims();
    claims["user_metadata"]["org_id"] = ORG.into();
    assert_eq!(v.verify(&hs256(&claims)).unwrap().org_id().to_string(), ORG);
}

#[test]
fn the_clock_leeway_is_bounded() {
    let build = |leeway: Duration| {
        Verifier::builder(Environment::Production)
            .hmac_secret(SECRET)
            .leeway(leeway)
            .build()
    };
    assert!(build(MAX_LEEWAY).is_ok());
    let err = build(MAX_LEEWAY + Duration::from_secs(1)).unwrap_err();
    assert!(matches!(err, AuthError::InvalidConfig(_)), "{err:?}");
    assert!(err.to_string().contains("JWT_LEEWAY_SECONDS"), "{err}");
    for value in ["301", "86400", "18446744073709551615"] {
        let err = VerifierBuilder::from_lookup(lookup(&[
            ("JWT_SECRET", SECRET),
            ("JWT_LEEWAY_SECONDS", value),
        ]))
        .and_then(VerifierBuilder::build)
        .unwrap_err();
        assert!(
            err.to_string().contains("JWT_LEEWAY_SECONDS"),
            "{value}: {err}"
        );
    }
    assert!(
        VerifierBuilder::from_lookup(lookup(&[
            ("JWT_SECRET", SECRET),
            ("JWT_LEEWAY_SECONDS", "300")
        ]))
        .and_then(VerifierBuilder::build)
        .is_ok()
    );
    // The override, in code only.
    let v = Verifier::builder(Environment::Production)
        .hmac_secret(SECRET)
        .leeway(Duration::from_secs(3600))
        .dangerous_allow_large_leeway()
        .clock(|| NOW)
        .build()
        .unwrap();
    let expired = with(claims(), "exp", (NOW - 1800).into());
    assert!(v.verify(&hs256(&expired)).is_ok());
}

#[test]
fn reserved_role_names_are_never_roles() {
    for name in [
        "none",
        "public",
        "current_user",
        "session_user",
        "current_role",
        "NONE",
        "Public",
    ] {
        assert!(Role::new(name).is_err(), "{name}");
        // Nor can a verifier be configured to accept them.
        let err = Verifier::builder(Environment::Production)
            .hmac_secret(SECRET)
            .allowed_roles([name])
            .build()
            .unwrap_err();
        assert!(
            matches!(err, AuthError::InvalidConfig(_)),
            "{name}: {err:?}"
        );
    }
    // So a token claiming role "none" (which set_config('role', 'none', true) would read as
    // RESET ROLE, the login's privileges) is refused like any other unknown role.
    let token = hs256(&with(claims(), "role", "none".into()));
    assert_eq!(
        verifier().verify(&token).map(drop),
        Err(AuthError::RoleNotAllowed)
    );
}
