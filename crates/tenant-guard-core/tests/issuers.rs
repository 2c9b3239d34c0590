//! Several issuers: tokens routed by `iss` to the one profile whose keys may verify them, each
//! profile with its own audiences, claim mapping and role rules; configuration in code and from
//! `JWT_ISSUERS`.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failure report

mod common;

use std::collections::HashMap;

use common::*;
use jsonwebtoken::Algorithm as J;
use serde_json::{Value, json};
use tenant_guard_core::{
    AuthError, Environment, IssuerProfile, RoleArray, Verifier, VerifierBuilder,
};

const A: &str = "https://a.example/";
const B: &str = "https://b.example/";
const SECRET_B: &str = "issuer-b-secret-issuer-b-secret-issuer-b";

/// Two issuers with keys of the same kinds and even the same `kid`: A holds the common test
/// secret and rsa1 as `k`, B another secret and rsa2 as `k`.
fn two_issuers() -> Verifier {
    Verifier::builder(Environment::Production)
        .issuer(A)
        .hmac_secret(SECRET)
        .public_key_pem_with_kid("k", fixture("rsa1_public.pem"))
        .add_issuer(
            IssuerProfile::new(B)
                .hmac_secret(SECRET_B)
                .public_key_pem_with_kid("k", fixture("rsa2_public.pem"))
                .audience("api-b")
                .org_claim("tenant.id")
                .role_claim("roles")
                .role_array(RoleArray::FirstAllowed)
                .map_role("admin", "org_admin")
                .allowed_roles(["authenticated", "org_admin"]),
        )
        .clock(|| NOW)
        .build()
        .unwrap()
}

fn claims_a() -> Value {
    with(claims(), "iss", json!(A))
}

fn claims_b() -> Value {
    json!({
        "iss": B, "sub": "partner-user-7", "aud": "api-b", "exp": NOW + 600, "iat": NOW,
        "tenant": {"id": ORG}, "roles": ["viewer", "admin"],
    })
}

fn hs(claims: &Value, secret: &str) -> String {
    hmac_signed(r#"{"alg":"HS256","typ":"JWT"}"#, claims, secret.as_bytes())
}

#[test]
fn each_issuer_verifies_its_own_tokens_with_its_own_rules() {
    let v = two_issuers();
    assert_eq!(v.issuers().collect::<Vec<_>>(), [A, B]);
    let a = v.verify(&hs(&claims_a(), SECRET)).unwrap();
    assert_eq!(
        (a.org_id().to_string(), a.role().as_str()),
        (ORG.into(), "authenticated")
    );
    let a = v
        .verify(&mint(J::RS256, Signer::Rsa1, Some("k"), &claims_a()))
        .unwrap();
    assert_eq!(a.role().as_str(), "authenticated");
    let b = v.verify(&hs(&claims_b(), SECRET_B)).unwrap();
    assert_eq!(
        (b.user_id(), b.org_id().to_string(), b.role().as_str()),
        ("partner-user-7", ORG.into(), "org_admin")
    );
    let b = v
        .verify(&mint(J::RS256, Signer::Rsa2, Some("k"), &claims_b()))
        .unwrap();
    assert_eq!(b.role().as_str(), "org_admin");
    // B's rules are not A's: A's audience and claim shape fail at B, and the other way round.
    let b_with_a_audience = with(claims_b(), "aud", json!("authenticated"));
    assert_eq!(
        v.verify(&hs(&b_with_a_audience, SECRET_B)).unwrap_err(),
        AuthError::WrongAudience
    );
    let a_shaped_for_b = with(claims(), "iss", json!(B));
    assert_eq!(
        v.verify(&hs(&with(a_shaped_for_b, "aud", json!("api-b")), SECRET_B))
            .unwrap_err(),
        AuthError::RoleNotAllowed
    );
}

#[test]
fn a_key_of_issuer_a_never_verifies_a_token_claiming_issuer_b() {
    let v = two_issuers();
    // Every key of A, on a token that is B's in every other respect (and the reverse).
    let cases = [
        (hs(&claims_b(), SECRET), "A's secret, iss B"),
        (
            mint(J::RS256, Signer::Rsa1, Some("k"), &claims_b()),
            "A's RSA key (same kid), iss B",
        ),
        (
            mint(J::RS256, Signer::Rsa1, None, &claims_b()),
            "A's RSA key, no kid, iss B",
        ),
        (hs(&claims_a(), SECRET_B), "B's secret, iss A"),
        (
            mint(J::RS256, Signer::Rsa2, Some("k"), &claims_a()),
            "B's RSA key (same kid), iss A",
        ),
    ];
    for (token, what) in cases {
        assert_eq!(
            v.verify(&token).unwrap_err(),
            AuthError::InvalidSignature,
            "{what}"
        );
    }
    // The same holds with B's token content under A's rules: the signature is checked first.
    let b_for_a = with(claims_a(), "aud", json!("authenticated"));
    assert_eq!(
        v.verify(&hs(&b_for_a, SECRET_B)).unwrap_err(),
        AuthError::InvalidSignature
    );
}

#[test]
fn unknown_missing_or_odd_issuers_are_invalid_issuer() {
    let v = two_issuers();
    for iss in [
        json!("https://a.example"),
        json!("https://A.example/"),
        json!("https://a.example/ "),
        json!("https://c.example/"),
        json!(""),
        json!(null),
        json!(1),
        json!([A]),
        json!({"iss": A}),
    ] {
        let token = hs(&with(claims(), "iss", iss.clone()), SECRET);
        assert_eq!(
            v.verify(&token).unwrap_err(),
            AuthError::WrongIssuer,
            "{iss}"
        );
    }
    let token = hs(&without(claims(), "iss"), SECRET);
    assert_eq!(v.verify(&token).unwrap_err(), AuthError::WrongIssuer);
    // Escapes are read as JSON reads them, so this is A, and a repeated iss is malformed.
    let escaped = hs(&claims_a(), SECRET);
    assert!(v.verify(&escaped).is_ok());
    let text = claims_a().to_string().replace("\"iss\"", "\"i\\u0073s\"");
    let token = hmac_signed_text(&text, SECRET);
    assert!(v.verify(&token).is_ok());
    let dup = claims_a()
        .to_string()
        .replacen("\"iss\":", &format!("\"iss\":\"{B}\",\"iss\":"), 1);
    assert_eq!(
        v.verify(&hmac_signed_text(&dup, SECRET)).unwrap_err(),
        AuthError::MalformedToken
    );
    // Not JSON at all: malformed, before any key is tried.
    assert_eq!(
        v.verify(&hmac_signed_text("not json", SECRET)).unwrap_err(),
        AuthError::MalformedToken
    );
}

fn hmac_signed_text(payload: &str, secret: &str) -> String {
    use base64::Engine as _;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let message = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(r#"{"alg":"HS256"}"#),
        URL_SAFE_NO_PAD.encode(payload)
    );
    let sig = jsonwebtoken::crypto::sign(
        message.as_bytes(),
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
        J::HS256,
    )
    .unwrap();
    format!("{message}.{sig}")
}

#[test]
fn a_single_issuer_is_checked_as_before() {
    let v = Verifier::builder(Environment::Production)
        .hmac_secret(SECRET)
        .issuer(A)
        .clock(|| NOW)
        .build()
        .unwrap();
    assert!(v.verify(&hs(&claims_a(), SECRET)).is_ok());
    assert_eq!(
        v.verify(&hs(&with(claims(), "iss", json!(B)), SECRET))
            .unwrap_err(),
        AuthError::WrongIssuer
    );
    // No issuer configured, one profile: iss is not checked (unchanged behaviour).
    let v = Verifier::builder(Environment::Production)
        .hmac_secret(SECRET)
        .clock(|| NOW)
        .build()
        .unwrap();
    assert!(
        v.verify(&hs(&with(claims(), "iss", json!(B)), SECRET))
            .is_ok()
    );
    assert_eq!(v.issuers().count(), 0);
}

#[test]
fn builder_only_issuers_and_configuration_errors() {
    // The builder's own profile is left out when it is unconfigured.
    let v = Verifier::builder(Environment::Production)
        .add_issuer(IssuerProfile::new(A).hmac_secret(SECRET))
        .add_issuer(IssuerProfile::new(B).hmac_secret(SECRET_B))
        .clock(|| NOW)
        .build()
        .unwrap();
    assert_eq!(v.issuers().collect::<Vec<_>>(), [A, B]);
    assert!(v.verify(&hs(&claims_a(), SECRET)).is_ok());
    let errors = [
        (
            Verifier::builder(Environment::Production)
                .hmac_secret(SECRET)
                .add_issuer(IssuerProfile::new(B).hmac_secret(SECRET_B)),
            "must name its issuer",
        ),
        (
            Verifier::builder(Environment::Production)
                .issuer(A)
                .hmac_secret(SECRET)
                .add_issuer(IssuerProfile::new(A).hmac_secret(SECRET_B)),
            "configured twice",
        ),
        (
            Verifier::builder(Environment::Production)
                .issuer(A)
                .hmac_secret(SECRET)
                .add_issuer(IssuerProfile::new(B)),
            "https://b.example/",
        ),
        (
            Verifier::builder(Environment::Production)
                .add_issuer(IssuerProfile::new(B).hmac_secret("short")),
            "32 bytes",
        ),
        (
            Verifier::builder(Environment::Production).add_issuer(
                IssuerProfile::new(B)
                    .hmac_secret(SECRET)
                    .default_role("org_admin"),
            ),
            "not an allowed role",
        ),
        (
            Verifier::builder(Environment::Production).add_issuer(
                IssuerProfile::new(B)
                    .hmac_secret(SECRET)
                    .map_role("admin", "postgres"),
            ),
            "not an allowed role",
        ),
        (
            Verifier::builder(Environment::Production)
                .add_issuer(IssuerProfile::new(B).hmac_secret(SECRET).role_claim("a..b")),
            "role claim",
        ),
    ];
    for (builder, want) in errors {
        let err = builder.build().unwrap_err();
        assert!(err.is_config_error(), "{err}");
        assert!(err.to_string().contains(want), "{want}: {err}");
    }
}

#[test]
fn several_issuers_from_the_environment() {
    let json = format!(
        r#"[{{"issuer": "{B}", "secret_env": "PARTNER_JWT_SECRET", "algorithms": ["HS256"],
             "audience": "api-b", "org_claim": ["tenant", "id"], "role_claim": "roles",
             "role_array": "first", "role_map": {{"admin": "org_admin"}},
             "allowed_roles": ["authenticated", "org_admin"]}}]"#
    );
    let vars = HashMap::from([
        ("APP_ENV", "production".to_owned()),
        ("JWT_SECRET", SECRET.to_owned()),
        ("JWT_ISSUER", A.to_owned()),
        ("PARTNER_JWT_SECRET", SECRET_B.to_owned()),
        ("JWT_ISSUERS", json),
    ]);
    let v = VerifierBuilder::from_lookup(|k| vars.get(k).cloned())
        .unwrap()
        .clock(|| NOW)
        .build()
        .unwrap();
    assert_eq!(v.issuers().collect::<Vec<_>>(), [A, B]);
    assert!(v.verify(&hs(&claims_a(), SECRET)).is_ok());
    assert_eq!(
        v.verify(&hs(&claims_b(), SECRET_B))
            .unwrap()
            .role()
            .as_str(),
        "org_admin"
    );
    assert_eq!(
        v.verify(&hs(&claims_b(), SECRET)).unwrap_err(),
        AuthError::InvalidSignature
    );
    // The secret itself never sits in the JSON, and errors name the entry.
    let vars = HashMap::from([("JWT_ISSUERS", r#"[{"issuer":"x","secret":"s"}]"#.to_owned())]);
    let err = VerifierBuilder::from_lookup(|k| vars.get(k).cloned()).unwrap_err();
    assert!(err.to_string().contains("JWT_ISSUERS[0] (x)"), "{err}");
}

#[test]
fn role_mapping_from_the_environment() {
    let vars = HashMap::from([
        ("JWT_SECRET", SECRET.to_owned()),
        ("ROLE_CLAIM", r#"["https://example.com/roles"]"#.to_owned()),
        ("JWT_ROLE_ARRAY", "exactly_one".to_owned()),
        ("JWT_DEFAULT_ROLE", "authenticated".to_owned()),
        ("JWT_ROLE_MAP", "admin=org_admin".to_owned()),
        ("JWT_ALLOWED_ROLES", "authenticated,org_admin".to_owned()),
    ]);
    let v = VerifierBuilder::from_lookup(|k| vars.get(k).cloned())
        .unwrap()
        .clock(|| NOW)
        .build()
        .unwrap();
    let role = |roles: Value| {
        let claims = with(
            without(claims(), "role"),
            "https://example.com/roles",
            roles,
        );
        v.verify(&hs(&claims, SECRET))
            .map(|p| p.role().as_str().to_owned())
    };
    assert_eq!(role(json!(["admin"])), Ok("org_admin".into()));
    assert_eq!(role(json!(["reader"])), Ok("authenticated".into()));
    assert_eq!(role(json!([])), Ok("authenticated".into()));
    assert_eq!(
        role(json!(["admin", "authenticated"])),
        Err(AuthError::RoleNotAllowed)
    );
    assert_eq!(role(json!("postgres")), Err(AuthError::RoleNotAllowed));
    assert_eq!(role(json!(["admin", 1])), Err(AuthError::RoleNotAllowed));
    let v_no_role = v.verify(&hs(&without(claims(), "role"), SECRET)).unwrap();
    assert_eq!(v_no_role.role().as_str(), "authenticated");
}

#[test]
fn an_org_chosen_per_request_is_never_an_org_in_authenticate() {
    use tenant_guard_core::{Identity, Role};
    let v = Verifier::builder(Environment::Production)
        .issuer(A)
        .hmac_secret(SECRET)
        .add_issuer(
            IssuerProfile::new(B)
                .public_key_pem_with_kid("k", fixture("rsa2_public.pem"))
                .audience("api-b")
                .org_from_request(true),
        )
        .clock(|| NOW)
        .build()
        .unwrap();
    let no_org =
        json!({"iss": B, "sub": "u-9", "aud": "api-b", "exp": NOW + 600, "role": "authenticated"});
    let token = mint(J::RS256, Signer::Rsa2, Some("k"), &no_org);
    // Twice: the second answer comes from the verified-token cache.
    for _ in 0..2 {
        assert_eq!(v.verify(&token).unwrap_err(), AuthError::InvalidOrg);
        assert_eq!(
            v.authenticate(&bearer(&token)).unwrap_err(),
            AuthError::InvalidOrg
        );
        let Identity::NeedsOrg(pending) = v.authenticate_identity(&bearer(&token)).unwrap() else {
            panic!("an org-less token is NeedsOrg");
        };
        assert_eq!(pending.user_id(), "u-9");
        assert!(!format!("{pending:?}").contains("api-b"));
        let org = uuid::Uuid::from_u128(42);
        let p = pending.into_member(org, Role::new("org_admin").unwrap());
        assert_eq!(
            (p.org_id().as_uuid(), p.role().as_str()),
            (Some(org), "org_admin")
        );
    }
    // An org claim that is there must still be valid, and then it is the org.
    let bad = with(no_org.clone(), "org_id", json!("not-a-uuid"));
    let token = mint(J::RS256, Signer::Rsa2, Some("k"), &bad);
    assert_eq!(
        v.verify_identity(&token).unwrap_err(),
        AuthError::InvalidOrg
    );
    let good = with(no_org, "org_id", json!(ORG));
    let token = mint(J::RS256, Signer::Rsa2, Some("k"), &good);
    assert!(
        matches!(v.verify_identity(&token), Ok(Identity::Org(p)) if p.org_id().to_string() == ORG)
    );
    assert!(v.verify(&token).is_ok());
    // Issuers without the option: no org is invalid_org on every path.
    let token = hs(&without(claims_a(), "org_id"), SECRET);
    assert_eq!(
        v.verify_identity(&token).unwrap_err(),
        AuthError::InvalidOrg
    );
}

#[test]
fn the_shared_cache_never_outlives_an_issuers_keys() {
    let v = two_issuers();
    let a = mint(J::RS256, Signer::Rsa1, Some("k"), &claims_a());
    let b = mint(J::RS256, Signer::Rsa2, Some("k"), &claims_b());
    for _ in 0..3 {
        assert!(v.verify(&a).is_ok());
        assert!(v.verify(&b).is_ok());
    }
    assert_eq!(v.cached_tokens(), 2);
    // A rotates to another key: A's cached token is refused, B's still served.
    let mut rotated = tenant_guard_core::KeySet::new();
    rotated
        .add_pem(&fixture("ec256_public.pem"), Some("ec"))
        .unwrap();
    v.set_keys(rotated).unwrap();
    assert_eq!(v.verify(&a).unwrap_err(), AuthError::UnknownKeyId);
    assert_eq!(v.cached_tokens(), 1, "the stale entry is dropped on lookup");
    assert!(v.verify(&b).is_ok());
    // The cached answer is the same routed answer: expiry is re-checked on every hit.
    let expiring = with(claims_b(), "exp", json!(NOW + 1));
    let token = mint(J::RS256, Signer::Rsa2, Some("k"), &expiring);
    assert!(v.verify(&token).is_ok());
    let late = Verifier::builder(Environment::Production)
        .add_issuer(IssuerProfile::new(A).hmac_secret(SECRET))
        .add_issuer(
            IssuerProfile::new(B)
                .public_key_pem_with_kid("k", fixture("rsa2_public.pem"))
                .audience("api-b")
                .org_claim("tenant.id")
                .role_claim("roles")
                .role_array(RoleArray::FirstAllowed)
                .map_role("admin", "org_admin")
                .allowed_roles(["authenticated", "org_admin"]),
        )
        .clock(|| NOW + 120)
        .build()
        .unwrap();
    assert_eq!(late.verify(&token).unwrap_err(), AuthError::Expired);
}
