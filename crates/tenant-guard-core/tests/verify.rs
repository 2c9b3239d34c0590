//! End-to-end verification: every algorithm and key form, algorithm confusion, key selection,
//! claim rules, the cache, rotation, and the HTTP mapping of what comes out.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failure report

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use common::*;
use jsonwebtoken::Algorithm as J;
use serde_json::json;
use tenant_guard_core::{
    Algorithm, AuthError, Environment, KeySet, ToErrorResponse, Verifier, VerifierBuilder,
};

fn builder() -> VerifierBuilder {
    Verifier::builder(Environment::Production).clock(|| NOW)
}

fn hmac() -> Verifier {
    builder().hmac_secret(SECRET).build().unwrap()
}

fn jwks_verifier() -> Verifier {
    builder().jwks_json(&jwks()).build().unwrap()
}

#[test]
fn every_algorithm_verifies_with_its_key() {
    let v = builder()
        .hmac_secret(SECRET)
        .jwks_json(&jwks())
        .build()
        .unwrap();
    let cases = [
        (J::HS256, Signer::Hmac),
        (J::HS384, Signer::Hmac),
        (J::HS512, Signer::Hmac),
        (J::RS256, Signer::Rsa1),
        (J::RS256, Signer::Rsa2),
        (J::RS384, Signer::Rsa2),
        (J::RS512, Signer::Rsa2),
        (J::PS256, Signer::Rsa2),
        (J::PS384, Signer::Rsa2),
        (J::PS512, Signer::Rsa2),
        (J::ES256, Signer::Ec256),
        (J::ES384, Signer::Ec384),
        (J::EdDSA, Signer::Ed),
    ];
    for (alg, signer) in cases {
        let token = mint(alg, signer, signer.kid(), &claims());
        let p = v
            .verify(&token)
            .unwrap_or_else(|e| panic!("{alg:?}/{signer:?}: {e}"));
        assert_eq!(p.org_id().to_string(), ORG);
        assert_eq!(p.user_id(), "2b4f8c1e-9d3a-4e5f-8a7b-6c5d4e3f2a1b");
        assert_eq!(p.role().as_str(), "authenticated");
        assert_eq!(p.expires_at(), NOW + 3600);
        // The claims handed to the database are exactly the verified payload.
        assert_eq!(p.claims(), claims());
        let payload = token.split('.').nth(1).unwrap();
        let decoded =
            base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, payload)
                .unwrap();
        assert_eq!(p.claims_json().as_bytes(), &decoded[..]);
    }
}

#[test]
fn pem_keys_of_every_type() {
    for (pem, alg, signer) in [
        ("rsa1_public.pem", J::RS256, Signer::Rsa1),
        ("rsa1_public_pkcs1.pem", J::PS512, Signer::Rsa1),
        ("ec256_public.pem", J::ES256, Signer::Ec256),
        ("ec384_public.pem", J::ES384, Signer::Ec384),
        ("ed25519_public.pem", J::EdDSA, Signer::Ed),
    ] {
        let v = builder().public_key_pem(fixture(pem)).build().unwrap();
        let token = mint(alg, signer, None, &claims());
        assert!(v.verify(&token).is_ok(), "{pem}");
        // A token signed by another key of another type never verifies.
        let other = mint(J::EdDSA, Signer::Ed, None, &claims());
        if signer != Signer::Ed {
            assert_eq!(
                v.verify(&other).unwrap_err(),
                AuthError::DisallowedAlgorithm,
                "{pem}"
            );
        }
    }
    let v = builder()
        .public_key_pem_with_kid("pem-1", fixture("ec256_public.pem"))
        .build()
        .unwrap();
    assert!(
        v.verify(&mint(J::ES256, Signer::Ec256, Some("pem-1"), &claims()))
            .is_ok()
    );
    assert_eq!(
        v.verify(&mint(J::ES256, Signer::Ec256, Some("pem-2"), &claims()))
            .unwrap_err(),
        AuthError::UnknownKeyId
    );
}

#[test]
fn weak_private_and_garbage_keys_are_refused_at_build() {
    let weak = String::from_utf8(fixture("jwks_weak_rsa.json")).unwrap();
    let err = builder().jwks_json(&weak).build().unwrap_err();
    assert!(
        matches!(err, AuthError::InvalidKey(ref m) if m.contains("2048")),
        "{err}"
    );
    let err = builder()
        .public_key_pem(fixture("rsa1024_public.pem"))
        .build()
        .unwrap_err();
    assert!(matches!(err, AuthError::InvalidKey(_)), "{err}");
    let err = builder()
        .public_key_pem(fixture("ec256_private.pem"))
        .build()
        .unwrap_err();
    assert!(err.to_string().contains("private key"), "{err}");
    let err = builder().public_key_pem("not a key").build().unwrap_err();
    assert!(err.is_config_error());
    let err = builder().jwks_json("{}").build().unwrap_err();
    assert!(err.is_config_error());
    let err = builder().hmac_secret_base64("***").build().unwrap_err();
    assert!(err.is_config_error());
    // No key material ever appears in a configuration error.
    let err = builder().hmac_secret("short").build().unwrap_err();
    assert!(!err.to_string().contains("short"), "{err}");
}

#[test]
fn algorithm_confusion_is_impossible() {
    // The classic attack: HS256 "signed" with the RSA public key as the HMAC secret.
    let public_pem = fixture("rsa1_public.pem");
    let forged = hmac_signed(r#"{"alg":"HS256","typ":"JWT"}"#, &claims(), &public_pem);
    let rsa_only = builder().public_key_pem(&public_pem).build().unwrap();
    assert_eq!(
        rsa_only.verify(&forged).unwrap_err(),
        AuthError::DisallowedAlgorithm
    );
    let with_kid = hmac_signed(r#"{"alg":"HS256","kid":"rsa-1"}"#, &claims(), &public_pem);
    assert_eq!(
        jwks_verifier().verify(&with_kid).unwrap_err(),
        AuthError::DisallowedAlgorithm
    );
    // With an HMAC secret configured too, the RSA key is still never used as a secret.
    let both = builder()
        .hmac_secret(SECRET)
        .public_key_pem(&public_pem)
        .build()
        .unwrap();
    assert_eq!(
        both.verify(&forged).unwrap_err(),
        AuthError::InvalidSignature
    );
    // An ES384 token cannot use the P-256 key, nor an ES256 token the P-384 key.
    let es384 = mint(J::ES384, Signer::Ec384, Some("ec-1"), &claims());
    assert_eq!(
        jwks_verifier().verify(&es384).unwrap_err(),
        AuthError::DisallowedAlgorithm
    );
    let p256 = builder()
        .public_key_pem(fixture("ec256_public.pem"))
        .build()
        .unwrap();
    assert_eq!(
        p256.verify(&mint(J::ES384, Signer::Ec384, None, &claims()))
            .unwrap_err(),
        AuthError::DisallowedAlgorithm
    );
    // rsa-1 is published with alg RS256: a PS256 token naming it is refused.
    let ps = mint(J::PS256, Signer::Rsa1, Some("rsa-1"), &claims());
    assert_eq!(
        jwks_verifier().verify(&ps).unwrap_err(),
        AuthError::DisallowedAlgorithm
    );
}

#[test]
fn none_is_never_accepted() {
    let v = builder()
        .hmac_secret(SECRET)
        .jwks_json(&jwks())
        .build()
        .unwrap();
    for alg in ["none", "None", "NONE", "nOnE"] {
        let header = format!(r#"{{"alg":"{alg}","typ":"JWT"}}"#);
        for sig in ["", "AAAA"] {
            let token = raw(&header, &claims(), sig);
            let err = v.verify(&token).unwrap_err();
            assert!(
                matches!(
                    err,
                    AuthError::DisallowedAlgorithm | AuthError::MalformedToken
                ),
                "{alg} {sig:?}: {err:?}"
            );
            assert_eq!(err.status(), http::StatusCode::UNAUTHORIZED);
        }
    }
    let unsigned = raw(r#"{"alg":"none"}"#, &claims(), "AAAA");
    assert_eq!(
        v.verify(&unsigned).unwrap_err(),
        AuthError::DisallowedAlgorithm
    );
}

#[test]
fn algorithm_allowlist() {
    let v = builder()
        .jwks_json(&jwks())
        .algorithms([Algorithm::ES256, Algorithm::EdDSA])
        .build()
        .unwrap();
    assert!(
        v.verify(&mint(J::ES256, Signer::Ec256, Some("ec-1"), &claims()))
            .is_ok()
    );
    for (alg, signer) in [(J::RS256, Signer::Rsa1), (J::ES384, Signer::Ec384)] {
        let token = mint(alg, signer, signer.kid(), &claims());
        assert_eq!(
            v.verify(&token).unwrap_err(),
            AuthError::DisallowedAlgorithm,
            "{alg:?}"
        );
    }
    let err = builder()
        .hmac_secret(SECRET)
        .algorithms([Algorithm::RS256])
        .build()
        .unwrap_err();
    assert!(matches!(err, AuthError::InvalidConfig(_)), "{err}");
    let err = builder()
        .hmac_secret(SECRET)
        .algorithms([])
        .build()
        .unwrap_err();
    assert!(matches!(err, AuthError::InvalidConfig(_)), "{err}");
}

#[test]
fn key_selection_by_kid() {
    let v = jwks_verifier();
    let c = claims();
    assert!(
        v.verify(&mint(J::RS256, Signer::Rsa2, Some("rsa-2"), &c))
            .is_ok()
    );
    // Without a kid, every key fit for the algorithm is tried.
    assert!(v.verify(&mint(J::RS256, Signer::Rsa2, None, &c)).is_ok());
    assert_eq!(
        v.verify(&mint(J::RS256, Signer::Rsa2, Some("rsa-1"), &c))
            .unwrap_err(),
        AuthError::InvalidSignature
    );
    assert_eq!(
        v.verify(&mint(J::RS256, Signer::Rsa2, Some("rsa-9"), &c))
            .unwrap_err(),
        AuthError::UnknownKeyId
    );
    // A kid-less key (here the HMAC secret) is tried for any kid.
    let h = hmac();
    assert!(
        h.verify(&mint(J::HS256, Signer::Hmac, Some("whatever"), &c))
            .is_ok()
    );
}

#[test]
fn tampering_is_detected() {
    let v = builder()
        .hmac_secret(SECRET)
        .jwks_json(&jwks())
        .build()
        .unwrap();
    for (alg, signer) in [
        (J::HS256, Signer::Hmac),
        (J::ES256, Signer::Ec256),
        (J::EdDSA, Signer::Ed),
    ] {
        let token = mint(alg, signer, signer.kid(), &claims());
        let mut parts: Vec<String> = token.split('.').map(str::to_owned).collect();
        let forged_claims = with(
            claims(),
            "org_id",
            json!("00000000-0000-4000-8000-000000000001"),
        );
        parts[1] = base64::Engine::encode(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD,
            forged_claims.to_string(),
        );
        assert_eq!(
            v.verify(&parts.join(".")).unwrap_err(),
            AuthError::InvalidSignature,
            "{alg:?}"
        );
        let bad_sig = format!(
            "{}.{}.{}",
            parts[0],
            token.split('.').nth(1).unwrap(),
            "A".repeat(parts[2].len())
        );
        assert_eq!(
            v.verify(&bad_sig).unwrap_err(),
            AuthError::InvalidSignature,
            "{alg:?}"
        );
        let not_b64 = format!(
            "{}.{}.{}",
            parts[0],
            token.split('.').nth(1).unwrap(),
            "!!!!"
        );
        assert_eq!(
            v.verify(&not_b64).unwrap_err(),
            AuthError::MalformedToken,
            "{alg:?}"
        );
    }
}

#[test]
fn claim_rules_end_to_end() {
    let v = builder()
        .issuer("https://abcdefghijklmnop.supabase.co/auth/v1")
        .hmac_secret(SECRET)
        .build()
        .unwrap();
    let cases = [
        (without(claims(), "exp"), AuthError::InvalidClaim("exp")),
        (
            with(claims(), "exp", json!("4102444800")),
            AuthError::InvalidClaim("exp"),
        ),
        (with(claims(), "exp", json!(NOW - 31)), AuthError::Expired),
        (
            with(claims(), "nbf", json!(NOW + 31)),
            AuthError::NotYetValid,
        ),
        (
            with(claims(), "nbf", json!("0")),
            AuthError::InvalidClaim("nbf"),
        ),
        (
            with(claims(), "iat", json!(NOW + 31)),
            AuthError::NotYetValid,
        ),
        (without(claims(), "aud"), AuthError::WrongAudience),
        (
            with(claims(), "aud", json!("anon")),
            AuthError::WrongAudience,
        ),
        (without(claims(), "iss"), AuthError::WrongIssuer),
        (
            with(claims(), "iss", json!("https://evil.example")),
            AuthError::WrongIssuer,
        ),
        (without(claims(), "sub"), AuthError::InvalidClaim("sub")),
        (
            with(claims(), "role", json!("postgres")),
            AuthError::RoleNotAllowed,
        ),
        (
            with(claims(), "role", json!("service_role")),
            AuthError::RoleNotAllowed,
        ),
        (
            with(claims(), "role", json!("anon")),
            AuthError::RoleNotAllowed,
        ),
        (without(claims(), "role"), AuthError::RoleNotAllowed),
        (without(claims(), "org_id"), AuthError::InvalidOrg),
        (
            with(claims(), "org_id", json!("acme")),
            AuthError::InvalidOrg,
        ),
    ];
    for (c, want) in cases {
        let err = v.verify(&hs256(&c)).unwrap_err();
        assert_eq!(err, want, "{c}");
        let r = err.to_error_response();
        let forbidden = matches!(want, AuthError::RoleNotAllowed | AuthError::InvalidOrg);
        assert_eq!(r.status().as_u16(), if forbidden { 403 } else { 401 });
        assert!(r.www_authenticate().is_some());
    }
    // Leeway is configurable.
    let strict = builder()
        .hmac_secret(SECRET)
        .leeway(Duration::ZERO)
        .build()
        .unwrap();
    let just_expired = with(claims(), "exp", json!(NOW));
    assert_eq!(
        strict.verify(&hs256(&just_expired)).unwrap_err(),
        AuthError::Expired
    );
    assert!(hmac().verify(&hs256(&just_expired)).is_ok());
}

#[test]
fn audience_org_and_role_paths_are_configurable() {
    let v = builder()
        .hmac_secret(SECRET)
        .audiences(["api", "authenticated"])
        .org_claim("app_metadata.org_id")
        .role_claim("app_metadata.role")
        .allowed_roles(["member", "admin"])
        .build()
        .unwrap();
    let mut c = without(claims(), "org_id");
    c["aud"] = json!(["api"]);
    c["app_metadata"]["role"] = json!("admin");
    let p = v.verify(&hs256(&c)).unwrap();
    assert_eq!(p.role().as_str(), "admin");
    assert_eq!(p.org_id().to_string(), ORG);
    c["app_metadata"]["role"] = json!("authenticated");
    assert_eq!(v.verify(&hs256(&c)).unwrap_err(), AuthError::RoleNotAllowed);
    for bad in ["", "a..b", "exp", "x.y.z.a.b.c.d.e.f"] {
        assert!(
            builder()
                .hmac_secret(SECRET)
                .org_claim(bad)
                .build()
                .is_err(),
            "{bad:?}"
        );
    }
    for bad in ["postgres\"", "Admin", "pg_monitor", ""] {
        let err = builder()
            .hmac_secret(SECRET)
            .allowed_roles([bad])
            .build()
            .unwrap_err();
        assert!(matches!(err, AuthError::InvalidConfig(_)), "{bad:?}");
    }
    assert!(
        builder()
            .hmac_secret(SECRET)
            .allowed_roles(Vec::<String>::new())
            .build()
            .is_err()
    );
    assert!(builder().hmac_secret(SECRET).audience("").build().is_err());
    assert!(builder().hmac_secret(SECRET).issuer("").build().is_err());
    assert!(
        builder()
            .hmac_secret(SECRET)
            .org_claim("a")
            .role_claim("a.b")
            .build()
            .is_err()
    );
}

#[test]
fn token_length_is_bounded_before_decoding() {
    let v = builder()
        .hmac_secret(SECRET)
        .max_token_len(100)
        .build()
        .unwrap();
    let token = hs256(&claims());
    assert!(token.len() > 100);
    assert_eq!(v.verify(&token).unwrap_err(), AuthError::TokenTooLarge);
    // Not even garbage is looked at.
    assert_eq!(
        v.verify(&"!".repeat(101)).unwrap_err(),
        AuthError::TokenTooLarge
    );
    let default = hmac();
    assert_eq!(
        default.verify(&"a".repeat(8 * 1024 + 1)).unwrap_err(),
        AuthError::TokenTooLarge
    );
    let mut big = claims();
    big["user_metadata"]["bio"] = json!("x".repeat(5000));
    assert!(default.verify(&hs256(&big)).is_ok());
    assert!(
        builder()
            .hmac_secret(SECRET)
            .max_token_len(0)
            .build()
            .is_err()
    );
}

#[test]
fn malformed_tokens() {
    let v = hmac();
    let good = hs256(&claims());
    let parts: Vec<&str> = good.split('.').collect();
    for bad in [
        String::new(),
        "abc".into(),
        format!("{}.{}", parts[0], parts[1]),
        format!("{good}.x"),
        format!("{}..{}", parts[0], parts[2]),
        format!("e30.{}.{}", parts[1], parts[2]),
        format!("{}.%%%.{}", parts[0], parts[2]),
        raw(r#"{"alg":"HS256"}"#, &json!([1, 2]), "AAAA"),
    ] {
        let err = v.verify(&bad).unwrap_err();
        assert!(
            matches!(err, AuthError::MalformedToken | AuthError::InvalidSignature),
            "{bad}: {err:?}"
        );
    }
    // A signed payload that is not a JSON object is malformed, after the signature check.
    let not_object = hmac_signed(
        r#"{"alg":"HS256"}"#,
        &json!("just a string"),
        SECRET.as_bytes(),
    );
    assert_eq!(
        v.verify(&not_object).unwrap_err(),
        AuthError::MalformedToken
    );
    let dup = {
        let text = claims()
            .to_string()
            .replacen("\"role\":", "\"role\":\"postgres\",\"role\":", 1);
        let header = base64::Engine::encode(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD,
            r#"{"alg":"HS256"}"#,
        );
        let body = base64::Engine::encode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, text);
        let message = format!("{header}.{body}");
        let sig = jsonwebtoken::crypto::sign(
            message.as_bytes(),
            &jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes()),
            J::HS256,
        )
        .unwrap();
        format!("{message}.{sig}")
    };
    assert_eq!(v.verify(&dup).unwrap_err(), AuthError::MalformedToken);
}

#[test]
fn cache_serves_asymmetric_tokens_and_rechecks_time() {
    let now = Arc::new(AtomicU64::new(NOW));
    let clock = now.clone();
    let v = Verifier::builder(Environment::Production)
        .jwks_json(&jwks())
        .clock(move || clock.load(Ordering::SeqCst))
        .build()
        .unwrap();
    let c = with(claims(), "nbf", json!(NOW - 5));
    let token = mint(J::ES256, Signer::Ec256, Some("ec-1"), &c);
    assert_eq!(v.cached_tokens(), 0);
    let first = v.verify(&token).unwrap();
    assert_eq!(v.cached_tokens(), 1);
    let second = v.verify(&token).unwrap();
    assert_eq!(first.claims_json(), second.claims_json());
    assert_eq!(v.cached_tokens(), 1);
    // The clock goes back before nbf: the cached entry is re-checked and refused.
    now.store(NOW - 100, Ordering::SeqCst);
    assert_eq!(v.verify(&token).unwrap_err(), AuthError::NotYetValid);
    assert_eq!(
        v.cached_tokens(),
        0,
        "an entry that fails its re-check is dropped"
    );
    now.store(NOW, Ordering::SeqCst);
    v.verify(&token).unwrap();
    assert_eq!(v.cached_tokens(), 1);
    // Past exp (plus leeway): refused on the hit, and dropped.
    now.store(NOW + 3600 + 30, Ordering::SeqCst);
    assert_eq!(v.verify(&token).unwrap_err(), AuthError::Expired);
    assert_eq!(v.cached_tokens(), 0);
    // Failures are never cached.
    now.store(NOW, Ordering::SeqCst);
    let bad = mint(
        J::ES256,
        Signer::Ec256,
        Some("ec-1"),
        &with(claims(), "role", json!("postgres")),
    );
    for _ in 0..3 {
        assert_eq!(v.verify(&bad).unwrap_err(), AuthError::RoleNotAllowed);
    }
    let mut tampered = token.clone();
    tampered.pop();
    tampered.push(if token.ends_with('A') { 'B' } else { 'A' });
    assert!(v.verify(&tampered).is_err());
    assert_eq!(v.cached_tokens(), 0);
}

#[test]
fn cache_is_bounded_and_optional() {
    let v = builder()
        .jwks_json(&jwks())
        .cache_capacity(3)
        .build()
        .unwrap();
    for i in 0..10 {
        let token = mint(
            J::EdDSA,
            Signer::Ed,
            Some("ed-1"),
            &with(claims(), "n", json!(i)),
        );
        v.verify(&token).unwrap();
        assert!(v.cached_tokens() <= 3);
    }
    let off = builder()
        .jwks_json(&jwks())
        .cache_capacity(0)
        .build()
        .unwrap();
    off.verify(&mint(J::EdDSA, Signer::Ed, None, &claims()))
        .unwrap();
    assert_eq!(off.cached_tokens(), 0);
    // HMAC tokens are not cached unless asked for.
    let both = builder()
        .hmac_secret(SECRET)
        .jwks_json(&jwks())
        .build()
        .unwrap();
    both.verify(&hs256(&claims())).unwrap();
    assert_eq!(both.cached_tokens(), 0);
    let hmac_only = hmac();
    hmac_only.verify(&hs256(&claims())).unwrap();
    assert_eq!(hmac_only.cached_tokens(), 0);
    let cached = builder()
        .hmac_secret(SECRET)
        .cache_hmac_tokens(true)
        .build()
        .unwrap();
    cached.verify(&hs256(&claims())).unwrap();
    assert_eq!(cached.cached_tokens(), 1);
}

#[test]
fn key_rotation_swaps_keys_and_flushes_the_cache() {
    let v = builder()
        .public_key_pem_with_kid("rsa-1", fixture("rsa1_public.pem"))
        .build()
        .unwrap();
    let old = mint(J::RS256, Signer::Rsa1, Some("rsa-1"), &claims());
    let new = mint(J::RS256, Signer::Rsa2, Some("rsa-2"), &claims());
    assert!(v.verify(&old).is_ok());
    assert_eq!(v.cached_tokens(), 1);
    assert_eq!(v.verify(&new).unwrap_err(), AuthError::UnknownKeyId);

    let mut rotated = KeySet::new();
    rotated
        .add_pem(&fixture("rsa2_public.pem"), Some("rsa-2"))
        .unwrap();
    let clone = v.clone();
    clone.set_keys(rotated).unwrap();
    assert_eq!(v.cached_tokens(), 0, "the cache starts empty with new keys");
    assert!(v.verify(&new).is_ok());
    // The old token was cached, but its key is gone: it must not verify from the cache.
    assert_eq!(v.verify(&old).unwrap_err(), AuthError::UnknownKeyId);
    assert_eq!(v.key_set().key_ids().collect::<Vec<_>>(), ["rsa-2"]);

    // Bad sets are refused and the current keys stay.
    assert!(matches!(
        v.set_keys(KeySet::new()),
        Err(AuthError::MissingKey(_))
    ));
    let mut short = KeySet::new();
    short.add_hmac_secret(b"short", None).unwrap();
    assert!(v.set_keys(short).is_err());
    assert!(v.verify(&new).is_ok());
}

#[test]
fn rotation_under_concurrent_verification() {
    let v = jwks_verifier();
    let token = mint(J::EdDSA, Signer::Ed, Some("ed-1"), &claims());
    let readers: Vec<_> = (0..2)
        .map(|_| {
            let v = v.clone();
            let token = token.clone();
            std::thread::spawn(move || {
                for _ in 0..300 {
                    v.verify(&token).unwrap();
                }
            })
        })
        .collect();
    for _ in 0..50 {
        v.set_keys(KeySet::from_jwks_json(&jwks()).unwrap())
            .unwrap();
    }
    for r in readers {
        r.join().unwrap();
    }
}

#[test]
fn authenticate_reads_only_the_authorization_header() {
    let v = hmac();
    let token = hs256(&claims());
    assert!(v.authenticate(&bearer(&token)).is_ok());
    let mut h = http::HeaderMap::new();
    for scheme in ["bearer", "BEARER", "BeArEr"] {
        h.insert(
            http::header::AUTHORIZATION,
            format!("{scheme} {token}").parse().unwrap(),
        );
        assert!(v.authenticate(&h).is_ok(), "{scheme}");
    }
    h.append(
        http::header::AUTHORIZATION,
        format!("Bearer {token}").parse().unwrap(),
    );
    assert_eq!(v.authenticate(&h).unwrap_err(), AuthError::MalformedHeader);

    let mut h = http::HeaderMap::new();
    h.insert(
        "x-user-id",
        "2b4f8c1e-9d3a-4e5f-8a7b-6c5d4e3f2a1b".parse().unwrap(),
    );
    h.insert("x-org-id", ORG.parse().unwrap());
    h.insert("x-access-token", token.parse().unwrap());
    h.insert(
        http::header::COOKIE,
        format!("sb-access-token={token}").parse().unwrap(),
    );
    let err = v.authenticate(&h).unwrap_err();
    assert_eq!(err, AuthError::MissingToken);
    let r = err.to_error_response();
    assert_eq!(r.status().as_u16(), 401);
    assert_eq!(r.www_authenticate().unwrap(), "Bearer");

    let mut h = http::HeaderMap::new();
    h.insert(
        http::header::AUTHORIZATION,
        format!("Basic {token}").parse().unwrap(),
    );
    assert_eq!(v.authenticate(&h).unwrap_err(), AuthError::MalformedHeader);
    for bad in [
        format!("Bearer {token} x"),
        format!("Bearer x {token}"),
        format!("Bearer {token},"),
    ] {
        h.insert(http::header::AUTHORIZATION, bad.parse().unwrap());
        assert_eq!(
            v.authenticate(&h).unwrap_err(),
            AuthError::MalformedHeader,
            "{bad}"
        );
    }
    h.insert(
        http::header::AUTHORIZATION,
        http::HeaderValue::from_bytes(b"Bearer \xff\xfe").unwrap(),
    );
    assert_eq!(v.authenticate(&h).unwrap_err(), AuthError::MalformedHeader);
}

#[test]
fn cookie_token_is_an_explicit_opt_in() {
    let v = builder()
        .hmac_secret(SECRET)
        .cookie_token("sb-access-token")
        .build()
        .unwrap();
    let token = hs256(&claims());
    let mut h = http::HeaderMap::new();
    h.insert(
        http::header::COOKIE,
        format!("theme=dark; sb-access-token={token}")
            .parse()
            .unwrap(),
    );
    assert!(v.authenticate(&h).is_ok());
    // The Authorization header wins over the cookie.
    h.insert(http::header::AUTHORIZATION, "Bearer x.y.z".parse().unwrap());
    assert_eq!(v.authenticate(&h).unwrap_err(), AuthError::MalformedToken);
    let mut h = http::HeaderMap::new();
    h.insert(
        http::header::COOKIE,
        "sb-access-token=a; sb-access-token=b".parse().unwrap(),
    );
    assert_eq!(v.authenticate(&h).unwrap_err(), AuthError::MalformedHeader);
}

#[test]
fn every_request_error_kind_is_reachable_and_mapped() {
    let v = builder()
        .hmac_secret(SECRET)
        .jwks_json(&jwks())
        .issuer("https://abcdefghijklmnop.supabase.co/auth/v1")
        .max_token_len(4096)
        .build()
        .unwrap();
    let mut two = http::HeaderMap::new();
    two.append(http::header::AUTHORIZATION, "Bearer a".parse().unwrap());
    two.append(http::header::AUTHORIZATION, "Bearer b".parse().unwrap());
    let cases: Vec<(Result<_, AuthError>, &str)> = vec![
        (v.authenticate(&http::HeaderMap::new()), "missing_token"),
        (v.authenticate(&two), "malformed_authorization_header"),
        (v.verify("a.b"), "malformed_token"),
        (v.verify("%%%.e30.AAAA"), "malformed_token"),
        (
            v.verify(&mint(J::HS256, Signer::Hmac, None, &claims()).replacen('e', "f", 1)),
            "malformed_token",
        ),
        (
            v.verify(&raw(r#"{"alg":"none"}"#, &claims(), "x")),
            "disallowed_algorithm",
        ),
        (
            v.verify(&mint(J::ES256, Signer::Ec256, Some("nope"), &claims())),
            "unknown_key_id",
        ),
        (
            v.verify(&mint(J::ES256, Signer::Ec256, Some("ed-1"), &claims())),
            "disallowed_algorithm",
        ),
        (
            v.verify(&hs256(&with(claims(), "exp", json!(1)))),
            "token_expired",
        ),
        (
            v.verify(&hs256(&with(claims(), "nbf", json!(NOW + 999)))),
            "token_not_yet_valid",
        ),
        (
            v.verify(&hs256(&with(claims(), "aud", json!("x")))),
            "invalid_audience",
        ),
        (
            v.verify(&hs256(&with(claims(), "iss", json!("x")))),
            "invalid_issuer",
        ),
        (v.verify(&"a".repeat(4097)), "token_too_large"),
        (v.verify(&hs256(&without(claims(), "sub"))), "invalid_claim"),
        (
            v.verify(&hs256(&without(claims(), "org_id"))),
            "invalid_org",
        ),
        (
            v.verify(&hs256(&with(claims(), "role", json!("postgres")))),
            "role_not_allowed",
        ),
    ];
    for (result, code) in cases {
        let err = result.unwrap_err();
        assert_eq!(err.code(), code, "{err:?}");
        let body = err.to_error_response().body();
        let parsed: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(parsed["error"], code);
    }
    let forged = mint(J::HS256, Signer::Hmac, None, &claims());
    let sig_start = forged.rfind('.').unwrap() + 1;
    let flipped = format!(
        "{}{}",
        &forged[..sig_start],
        "A".repeat(forged.len() - sig_start)
    );
    assert_eq!(v.verify(&flipped).unwrap_err().code(), "invalid_signature");
}

#[test]
fn responses_never_contain_the_token() {
    let v = hmac();
    let token = hs256(&with(claims(), "role", json!("postgres")));
    let err = v.authenticate(&bearer(&token)).unwrap_err();
    let r = err.to_error_response();
    let everything = format!("{err} {err:?} {} {:?}", r.body(), r);
    let sig = token.rsplit('.').next().unwrap();
    assert!(!everything.contains(sig));
    assert!(!everything.contains("postgres"));
    assert!(!everything.contains(SECRET));
}

/// Org ids of each kind through the whole verifier (signature, claims, HTTP mapping): accepted
/// in their canonical form, every malformed one `403 invalid_org` with the usual body.
#[test]
fn org_claims_of_each_kind_end_to_end() {
    use tenant_guard_core::{OrgId, OrgIdKind};
    let verifier = |kind| {
        builder()
            .hmac_secret(SECRET)
            .org_id_kind(kind)
            .build()
            .unwrap()
    };
    let org_of = |v: &Verifier, org: serde_json::Value| {
        v.authenticate(&bearer(&hs256(&with(claims(), "org_id", org))))
            .map(|p| p.org_id().clone())
    };
    let (uuid, integer, text) = (
        verifier(OrgIdKind::Uuid),
        verifier(OrgIdKind::Integer),
        verifier(OrgIdKind::Text),
    );
    assert_eq!(
        org_of(&uuid, json!(ORG)).unwrap().to_string(),
        ORG,
        "the default kind"
    );
    assert_eq!(org_of(&integer, json!(42)), Ok(OrgId::Int(42)));
    assert_eq!(org_of(&integer, json!("-42")), Ok(OrgId::Int(-42)));
    assert_eq!(
        org_of(&text, json!("org_2abcDEF")),
        Ok(OrgId::text("org_2abcDEF").unwrap())
    );
    let refused = [
        (&uuid, json!(42)),
        (&uuid, json!("acme")),
        (&uuid, json!("00000000-0000-0000-0000-000000000000")),
        (&integer, json!(ORG)),
        (&integer, json!("+42")),
        (&integer, json!("0042")),
        (&integer, json!("42\n")),
        (&integer, json!(42.5)),
        (&integer, json!(-9_223_372_036_854_775_809.0)),
        (&integer, json!("-9223372036854775809")),
        (&integer, json!(18_446_744_073_709_551_615_u64)),
        (&integer, json!([42])),
        (&text, json!(42)),
        (&text, json!("")),
        (&text, json!("a b")),
        (&text, json!("a\u{1b}[31m")),
        (&text, json!("../etc")),
        (&text, json!("x".repeat(129))),
        (&text, json!({"slug": "acme"})),
    ];
    for (v, org) in refused {
        let err = org_of(v, org.clone()).unwrap_err();
        assert_eq!(err, AuthError::InvalidOrg, "{org}");
        let response = err.to_error_response();
        assert_eq!(response.status(), 403, "{org}");
        assert!(response.body().contains("invalid_org"), "{org}");
    }
}
