//! Environment rules (fail closed), configuration from variables, the development-only
//! conveniences, and what gets logged.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failure report

mod common;

use std::collections::HashMap;
use std::io::Write;
use std::sync::{Arc, Mutex};

use common::*;
use jsonwebtoken::Algorithm as J;
use serde_json::json;
use tenant_guard_core::{AuthError, DemoPrincipal, Environment, Verifier};

fn lookup(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
    let map: HashMap<String, String> = vars
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    move |k| map.get(k).cloned()
}

fn from(vars: &[(&str, &str)]) -> Result<Verifier, AuthError> {
    tenant_guard_core::VerifierBuilder::from_lookup(lookup(vars))?
        .clock(|| NOW)
        .build()
}

fn demo() -> DemoPrincipal {
    DemoPrincipal::new("demo-user", ORG.parse::<uuid::Uuid>().unwrap())
}

#[test]
fn no_key_is_a_build_error_naming_the_variable_in_every_environment() {
    for env in [
        Environment::Production,
        Environment::Test,
        Environment::Development,
    ] {
        let err = Verifier::builder(env).build().unwrap_err();
        assert!(matches!(err, AuthError::MissingKey(_)), "{env}: {err:?}");
        assert!(err.to_string().contains("JWT_SECRET"), "{err}");
        assert!(err.to_string().contains("JWT_JWKS_FILE"), "{err}");
    }
    for vars in [
        &[][..],
        &[("APP_ENV", "production")],
        &[("APP_ENV", "test")],
        &[("APP_ENV", "development")],
        &[("APP_ENV", "prod"), ("JWT_SECRET", "")],
        &[("JWT_SECRET", "   ")],
        &[("JWT_JWKS_FILE", "")],
    ] {
        let err = from(vars).unwrap_err();
        assert!(matches!(err, AuthError::MissingKey(_)), "{vars:?}: {err:?}");
        assert!(err.to_string().contains("JWT_SECRET"), "{err}");
    }
}

#[test]
fn unknown_or_missing_environment_is_production() {
    for value in [
        None,
        Some(""),
        Some("prod"),
        Some("dev"),
        Some("staging"),
        Some("DEVELOPMENT "),
    ] {
        let mut vars = vec![("JWT_SECRET", SECRET)];
        if let Some(v) = value {
            vars.push(("APP_ENV", v));
        }
        let v = from(&vars).unwrap();
        let want = if value == Some("DEVELOPMENT ") {
            Environment::Development
        } else {
            Environment::Production
        };
        assert_eq!(v.environment(), want, "{value:?}");
    }
}

#[test]
fn dangerous_options_are_build_errors_outside_development() {
    for env in [Environment::Production, Environment::Test] {
        let err = Verifier::builder(env)
            .hmac_secret(SECRET)
            .dangerous_accept_unverified_tokens()
            .build()
            .unwrap_err();
        assert!(
            matches!(err, AuthError::InsecureConfig(_)),
            "{env}: {err:?}"
        );
        let err = Verifier::builder(env)
            .hmac_secret(SECRET)
            .dangerous_demo_principal(demo())
            .build()
            .unwrap_err();
        assert!(
            matches!(err, AuthError::InsecureConfig(_)),
            "{env}: {err:?}"
        );
        assert!(err.is_config_error());
    }
    // Environment variables cannot switch them on: a development builder from variables still
    // needs the code to ask.
    let err = from(&[("APP_ENV", "development"), ("JWT_INSECURE", "true")]).unwrap_err();
    assert!(matches!(err, AuthError::MissingKey(_)));
}

#[test]
fn development_may_accept_unverified_tokens_but_still_checks_claims() {
    let v = Verifier::builder(Environment::Development)
        .dangerous_accept_unverified_tokens()
        .clock(|| NOW)
        .build()
        .unwrap();
    // Signed by a key the verifier does not have.
    let token = mint(J::ES256, Signer::Ec256, Some("unknown"), &claims());
    assert_eq!(v.verify(&token).unwrap().org_id().to_string(), ORG);
    let garbage_sig = raw(r#"{"alg":"HS256"}"#, &claims(), "AAAA");
    assert!(v.verify(&garbage_sig).is_ok());
    for (c, want) in [
        (with(claims(), "exp", json!(NOW - 100)), AuthError::Expired),
        (
            with(claims(), "role", json!("postgres")),
            AuthError::RoleNotAllowed,
        ),
        (without(claims(), "org_id"), AuthError::InvalidOrg),
    ] {
        assert_eq!(
            v.verify(&raw(r#"{"alg":"HS256"}"#, &c, "AAAA"))
                .unwrap_err(),
            want
        );
    }
    assert_eq!(
        v.verify(&raw(r#"{"alg":"none"}"#, &claims(), "AAAA"))
            .unwrap_err(),
        AuthError::DisallowedAlgorithm
    );
    // The signature is not decoded, yet its characters are still checked.
    let spaced = format!("{garbage_sig} x");
    let mut h = http::HeaderMap::new();
    h.insert(
        http::header::AUTHORIZATION,
        format!("Bearer {spaced}").parse().unwrap(),
    );
    assert_eq!(v.authenticate(&h).unwrap_err(), AuthError::MalformedHeader);
    assert_eq!(v.verify(&spaced).unwrap_err(), AuthError::MalformedToken);
    assert_eq!(v.cached_tokens(), 0);
}

#[test]
fn development_demo_principal_only_when_no_token_is_sent() {
    let v = Verifier::builder(Environment::Development)
        .hmac_secret(SECRET)
        .org_claim("app_metadata.org_id")
        .dangerous_demo_principal(demo())
        .clock(|| NOW)
        .build()
        .unwrap();
    let p = v.authenticate(&http::HeaderMap::new()).unwrap();
    assert_eq!(p.user_id(), "demo-user");
    assert_eq!(p.org_id().to_string(), ORG);
    assert_eq!(p.role().as_str(), "authenticated");
    assert_eq!(p.claims()["app_metadata"]["org_id"], ORG);
    // A token that is sent is verified, and a bad one is rejected (no fallback to the demo user).
    let bad = hs256(&with(claims(), "exp", json!(1)));
    assert_eq!(
        v.authenticate(&bearer(&bad)).unwrap_err(),
        AuthError::Expired
    );
    let mut malformed = http::HeaderMap::new();
    malformed.insert(http::header::AUTHORIZATION, "Basic abc".parse().unwrap());
    assert_eq!(
        v.authenticate(&malformed).unwrap_err(),
        AuthError::MalformedHeader
    );
    let mut c = without(claims(), "org_id");
    c["app_metadata"]["org_id"] = json!("00000000-0000-4000-8000-000000000009");
    let real = v.authenticate(&bearer(&hs256(&c))).unwrap();
    assert_eq!(
        real.org_id().to_string(),
        "00000000-0000-4000-8000-000000000009"
    );
    // Identity headers do not pick another demo identity.
    let mut h = http::HeaderMap::new();
    h.insert("x-user-id", "someone-else".parse().unwrap());
    assert_eq!(v.authenticate(&h).unwrap().user_id(), "demo-user");
    // The demo role must be allowed.
    let err = Verifier::builder(Environment::Development)
        .dangerous_demo_principal(demo().with_role("service_role"))
        .build()
        .unwrap_err();
    assert!(matches!(err, AuthError::InvalidConfig(_)));
}

#[test]
fn hmac_secrets_shorter_than_32_bytes_only_in_development() {
    for env in [Environment::Production, Environment::Test] {
        let err = Verifier::builder(env)
            .hmac_secret("short-secret")
            .build()
            .unwrap_err();
        assert!(matches!(err, AuthError::InvalidKey(_)), "{err:?}");
    }
    let v = Verifier::builder(Environment::Development)
        .hmac_secret("short-secret")
        .clock(|| NOW)
        .build()
        .unwrap();
    let token = mint_with_secret(b"short-secret");
    assert!(v.verify(&token).is_ok());
}

fn mint_with_secret(secret: &[u8]) -> String {
    jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &claims(),
        &jsonwebtoken::EncodingKey::from_secret(secret),
    )
    .unwrap()
}

#[test]
fn configuration_from_variables() {
    // Raw secret.
    let v = from(&[("JWT_SECRET", SECRET)]).unwrap();
    assert!(v.verify(&hs256(&claims())).is_ok());
    // Base64 secret (standard and URL-safe alphabets).
    let b64 = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, SECRET);
    let v = from(&[("JWT_SECRET", &b64), ("JWT_SECRET_IS_BASE64", "true")]).unwrap();
    assert!(v.verify(&hs256(&claims())).is_ok());
    let err = from(&[("JWT_SECRET", SECRET), ("JWT_SECRET_IS_BASE64", "perhaps")]).unwrap_err();
    assert!(err.to_string().contains("JWT_SECRET_IS_BASE64"));
    let err = from(&[("JWT_SECRET", "***"), ("JWT_SECRET_IS_BASE64", "1")]).unwrap_err();
    assert!(matches!(err, AuthError::InvalidKey(_)));
    // JWKS file: every key type in it.
    let v = from(&[("JWT_JWKS_FILE", &fixture_path("jwks.json"))]).unwrap();
    for (alg, signer) in [
        (J::RS256, Signer::Rsa1),
        (J::ES256, Signer::Ec256),
        (J::EdDSA, Signer::Ed),
    ] {
        assert!(
            v.verify(&mint(alg, signer, signer.kid(), &claims()))
                .is_ok(),
            "{alg:?}"
        );
    }
    // Both kinds at once.
    let v = from(&[
        ("JWT_SECRET", SECRET),
        ("JWT_JWKS_FILE", &fixture_path("jwks.json")),
    ])
    .unwrap();
    assert!(v.verify(&hs256(&claims())).is_ok());
    assert!(
        v.verify(&mint(J::EdDSA, Signer::Ed, Some("ed-1"), &claims()))
            .is_ok()
    );
    let err = from(&[("JWT_JWKS_FILE", "/nonexistent/jwks.json")]).unwrap_err();
    assert!(
        err.to_string().contains("JWT_JWKS_FILE") || err.to_string().contains("jwks.json"),
        "{err}"
    );
    let err = from(&[("JWT_JWKS_FILE", &fixture_path("jwks_weak_rsa.json"))]).unwrap_err();
    assert!(err.to_string().contains("JWT_JWKS_FILE"), "{err}");
    // Inline JWKS and a PEM file.
    let v = from(&[("JWT_JWKS", &jwks())]).unwrap();
    assert!(
        v.verify(&mint(J::ES384, Signer::Ec384, Some("ec384-1"), &claims()))
            .is_ok()
    );
    let v = from(&[("JWT_PUBLIC_KEY_FILE", &fixture_path("ed25519_public.pem"))]).unwrap();
    assert!(
        v.verify(&mint(J::EdDSA, Signer::Ed, None, &claims()))
            .is_ok()
    );
    // Claim settings.
    let v = from(&[
        ("JWT_SECRET", SECRET),
        ("JWT_AUDIENCE", "api, authenticated"),
        ("JWT_ISSUER", "https://issuer.example"),
        ("ORG_CLAIM", "app_metadata.org_id"),
        ("ROLE_CLAIM", "role"),
        ("JWT_ALLOWED_ROLES", "authenticated,member"),
        ("JWT_LEEWAY_SECONDS", "0"),
        ("JWT_MAX_TOKEN_BYTES", "4000"),
    ])
    .unwrap();
    let mut c = without(claims(), "org_id");
    c["iss"] = json!("https://issuer.example");
    c["aud"] = json!("api");
    c["role"] = json!("member");
    assert_eq!(v.verify(&hs256(&c)).unwrap().role().as_str(), "member");
    c["iss"] = json!("https://other.example");
    assert_eq!(v.verify(&hs256(&c)).unwrap_err(), AuthError::WrongIssuer);
    let exp_now = with(
        with(c.clone(), "iss", json!("https://issuer.example")),
        "exp",
        json!(NOW),
    );
    assert_eq!(v.verify(&hs256(&exp_now)).unwrap_err(), AuthError::Expired);
    // Algorithm allowlist.
    let v = from(&[("JWT_JWKS", &jwks()), ("JWT_ALGORITHMS", "EdDSA")]).unwrap();
    let rs = mint(J::RS256, Signer::Rsa1, Some("rsa-1"), &claims());
    assert_eq!(v.verify(&rs).unwrap_err(), AuthError::DisallowedAlgorithm);
    for bad in ["none", "HS256,none", "rs256"] {
        let err = from(&[("JWT_JWKS", &jwks()), ("JWT_ALGORITHMS", bad)]).unwrap_err();
        assert!(err.to_string().contains("JWT_ALGORITHMS"), "{bad}: {err}");
    }
    // Numbers and the cookie.
    for (var, value) in [
        ("JWT_LEEWAY_SECONDS", "-1"),
        ("JWT_MAX_TOKEN_BYTES", "lots"),
        ("JWT_CACHE_SIZE", "1e3"),
    ] {
        let err = from(&[("JWT_SECRET", SECRET), (var, value)]).unwrap_err();
        assert!(err.to_string().contains(var), "{var}: {err}");
    }
    let v = from(&[
        ("JWT_SECRET", SECRET),
        ("JWT_COOKIE_NAME", "sb-access-token"),
    ])
    .unwrap();
    let mut h = http::HeaderMap::new();
    h.insert(
        http::header::COOKIE,
        format!("sb-access-token={}", hs256(&claims()))
            .parse()
            .unwrap(),
    );
    assert!(v.authenticate(&h).is_ok());
    let v = from(&[("JWT_SECRET", SECRET)]).unwrap();
    assert_eq!(v.authenticate(&h).unwrap_err(), AuthError::MissingToken);
    let v = from(&[("JWT_JWKS", &jwks()), ("JWT_CACHE_SIZE", "0")]).unwrap();
    v.verify(&mint(J::EdDSA, Signer::Ed, None, &claims()))
        .unwrap();
    assert_eq!(v.cached_tokens(), 0);
}

/// A writer the test subscriber logs into.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn capture(f: impl FnOnce()) -> String {
    let out = Captured::default();
    let writer = out.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::DEBUG)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    tracing::subscriber::with_default(subscriber, f);
    let bytes = out.0.lock().unwrap().clone();
    String::from_utf8(bytes).unwrap()
}

#[test]
fn rejections_are_logged_at_debug_with_the_code_and_never_the_token() {
    let v = Verifier::builder(Environment::Production)
        .hmac_secret(SECRET)
        .clock(|| NOW)
        .build()
        .unwrap();
    let token = hs256(&with(claims(), "role", json!("postgres")));
    let forged = format!("{}x", &token[..token.len() - 1]);
    let logs = capture(|| {
        let _ = v.authenticate(&bearer(&token));
        let _ = v.verify(&forged);
        let _ = v.authenticate(&http::HeaderMap::new());
    });
    assert!(logs.contains("DEBUG"), "{logs}");
    assert!(logs.contains("role_not_allowed"), "{logs}");
    assert!(logs.contains("missing_token"), "{logs}");
    assert!(!logs.contains("WARN") && !logs.contains("ERROR"), "{logs}");
    for part in token.split('.') {
        assert!(!logs.contains(part), "a token segment was logged: {logs}");
    }
    assert!(!logs.contains(SECRET));
    assert!(!logs.contains("postgres"));
}

#[test]
fn each_dangerous_use_logs_a_warning() {
    let logs = capture(|| {
        let v = Verifier::builder(Environment::Development)
            .dangerous_accept_unverified_tokens()
            .dangerous_demo_principal(demo())
            .clock(|| NOW)
            .build()
            .unwrap();
        v.authenticate(&http::HeaderMap::new()).unwrap();
        v.authenticate(&http::HeaderMap::new()).unwrap();
        v.verify(&raw(r#"{"alg":"HS256"}"#, &claims(), "AAAA"))
            .unwrap();
    });
    let warnings = logs.lines().filter(|l| l.contains("WARN")).count();
    // Two at build (demo principal, unverified tokens) plus one per use.
    assert!(warnings >= 5, "{logs}");
    assert!(logs.contains("demo principal"), "{logs}");
    assert!(logs.contains("WITHOUT checking"), "{logs}");
}
