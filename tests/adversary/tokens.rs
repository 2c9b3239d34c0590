//! Token forging: real signatures with the core's checked-in test keys, and hand-assembled
//! tokens with any header, payload and signature text.

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use jsonwebtoken::{Algorithm, EncodingKey};
use serde_json::{Value, json};
use tenant_guard::core::{Environment, Verifier};

/// The HMAC secret of the app under test (never sent, never logged).
pub const SECRET: &str = "hostile-suite-secret-5f1d9c2e7a4b8e3f-do-not-log";
/// A secret the attacker signs with.
pub const ATTACKER_SECRET: &str = "attacker-secret-attacker-secret-attacker";
/// The fixed clock of the verifier.
pub const NOW: u64 = 1_800_000_000;
/// The caller's org.
pub const ORG: &str = "5d3c1b2a-4e6f-4a8b-9c0d-1e2f3a4b5c6d";
/// The caller's user id.
pub const SUB: &str = "0f9e8d7c-6b5a-4c3d-8e1f-2a3b4c5d6e7f";
/// Claim values that are not ids: they must never appear in any log line or response.
pub const EMAIL: &str = "carol.confidential@example.com";
pub const FULL_NAME: &str = "Carol Verysecretsurname";
pub const PHONE: &str = "+15550001234999";

pub fn fixture(name: &str) -> Vec<u8> {
    let path = format!(
        "{}/crates/tenant-guard-core/tests/fixtures/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// The verifier of both apps: production rules, an HMAC secret and two public keys with kids
/// (`rsa-1`, `ec-1`); `rsa2` is the attacker's key pair (not configured).
pub fn verifier() -> Verifier {
    Verifier::builder(Environment::Production)
        .hmac_secret(SECRET)
        .public_key_pem_with_kid("rsa-1", fixture("rsa1_public.pem"))
        .public_key_pem_with_kid("ec-1", fixture("ec256_public.pem"))
        .allowed_roles(["authenticated", "org_admin"])
        .clock(|| NOW)
        .build()
        .expect("verifier")
}

/// [`verifier`] whose tokens may carry no org (`org_from_request`): the org is then chosen per
/// request, by a guard with `org_membership` (the rows of `table::org_header_rows`).
pub fn org_request_verifier() -> Verifier {
    Verifier::builder(Environment::Production)
        .hmac_secret(SECRET)
        .allowed_roles(["authenticated", "org_admin"])
        .org_from_request(true)
        .clock(|| NOW)
        .build()
        .expect("verifier")
}

/// An org [`SUB`] is no member of (the rows of `table::org_header_rows`).
pub const OTHER_ORG: &str = "9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d";

/// A second org [`SUB`] is a member of, beside [`ORG`] (the rows of
/// `table::token_org_default_rows`).
pub const SECOND_ORG: &str = "3c4d5e6f-7a8b-4c9d-8e0f-1a2b3c4d5e6f";

/// A Supabase-shaped claim set valid at [`NOW`], with non-id values that must stay secret.
pub fn claims() -> Value {
    json!({
        "sub": SUB,
        "aud": "authenticated",
        "exp": NOW + 3600,
        "iat": NOW - 10,
        "role": "authenticated",
        "org_id": ORG,
        "email": EMAIL,
        "phone": PHONE,
        "user_metadata": {"full_name": FULL_NAME},
    })
}

pub fn with(mut claims: Value, key: &str, value: Value) -> Value {
    claims[key] = value;
    claims
}

pub fn without(mut claims: Value, key: &str) -> Value {
    claims.as_object_mut().unwrap().remove(key);
    claims
}

pub fn b64(bytes: impl AsRef<[u8]>) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// A token from any header JSON text, claims JSON text and signature text.
pub fn assemble(header: &str, payload: &str, signature: &str) -> String {
    format!("{}.{}.{signature}", b64(header), b64(payload))
}

/// `header.payload` signed with `alg` and `key`.
pub fn sign_text(header: &str, payload: &str, alg: Algorithm, key: &EncodingKey) -> String {
    let message = format!("{}.{}", b64(header), b64(payload));
    let sig = jsonwebtoken::crypto::sign(message.as_bytes(), key, alg).expect("sign");
    format!("{message}.{sig}")
}

/// HS256 with any header and payload text, signed with `secret`.
pub fn hs256_text(header: &str, payload: &str, secret: &[u8]) -> String {
    sign_text(
        header,
        payload,
        Algorithm::HS256,
        &EncodingKey::from_secret(secret),
    )
}

/// A valid token: HS256 with the app's secret.
pub fn good(claims: &Value) -> String {
    hs256_text(
        r#"{"alg":"HS256","typ":"JWT"}"#,
        &claims.to_string(),
        SECRET.as_bytes(),
    )
}

/// RS256 signed with a private key fixture.
pub fn rs256(header: &str, claims: &Value, private_pem: &str) -> String {
    let key = EncodingKey::from_rsa_pem(&fixture(private_pem)).expect("rsa key");
    sign_text(header, &claims.to_string(), Algorithm::RS256, &key)
}

/// Standard (non-URL-safe, padded) base64 of the same three parts.
pub fn standard_alphabet(token: &str) -> String {
    token
        .split('.')
        .map(|part| STANDARD.encode(URL_SAFE_NO_PAD.decode(part).expect("base64url")))
        .collect::<Vec<_>>()
        .join(".")
}

/// The attacker's public key (rsa2) as a JWK, for `jwk` headers.
pub fn attacker_jwk() -> Value {
    let jwks: Value = serde_json::from_slice(&fixture("jwks.json")).expect("jwks fixture is JSON");
    jwks["keys"]
        .as_array()
        .and_then(|keys| keys.iter().find(|k| k["kid"] == "rsa-2"))
        .cloned()
        .expect("rsa-2 in the fixture")
}

/// The issuer of [`verifier`]'s tokens in [`two_issuer_verifier`].
pub const ISSUER_A: &str = "https://abcdefghijklmnop.supabase.co/auth/v1";
/// A second, partner issuer (an OIDC-style IdP with Ed25519 keys and an array role claim).
pub const ISSUER_B: &str = "https://partner.example.com/";
/// The partner's HMAC secret (machine tokens); never the app's.
pub const PARTNER_SECRET: &str = "partner-hs256-secret-3c9a1f7e5b2d8c4a-do-not-log";

/// Issuer confusion: the keys of [`verifier`] for [`ISSUER_A`], and for [`ISSUER_B`] an Ed25519
/// key (`kid` `partner-1`) and [`PARTNER_SECRET`], its own audience and role mapping. Tokens are
/// routed by `iss`.
pub fn two_issuer_verifier() -> Verifier {
    use tenant_guard::core::{IssuerProfile, RoleArray};
    Verifier::builder(Environment::Production)
        .issuer(ISSUER_A)
        .hmac_secret(SECRET)
        .public_key_pem_with_kid("rsa-1", fixture("rsa1_public.pem"))
        .public_key_pem_with_kid("ec-1", fixture("ec256_public.pem"))
        .allowed_roles(["authenticated", "org_admin"])
        .add_issuer(
            IssuerProfile::new(ISSUER_B)
                .public_key_pem_with_kid("partner-1", fixture("ed25519_public.pem"))
                .hmac_secret(PARTNER_SECRET)
                .audience("partner-api")
                .org_claim(r#"["https://partner.example.com/org"]"#)
                .role_claim("roles")
                .role_array(RoleArray::FirstAllowed)
                .map_role("member", "authenticated")
                .allowed_roles(["authenticated"]),
        )
        .clock(|| NOW)
        .build()
        .expect("two-issuer verifier")
}

/// [`claims`] as issued by [`ISSUER_A`].
pub fn claims_a() -> Value {
    with(claims(), "iss", json!(ISSUER_A))
}

/// The same user as the partner issues them: its audience, namespaced org, role array.
pub fn claims_b() -> Value {
    json!({
        "iss": ISSUER_B,
        "sub": SUB,
        "aud": "partner-api",
        "exp": NOW + 3600,
        "iat": NOW - 10,
        "https://partner.example.com/org": ORG,
        "roles": ["viewer", "member"],
        "email": EMAIL,
    })
}

/// EdDSA with the partner's private key and any header and payload text.
pub fn partner_ed(header: &str, payload: &str) -> String {
    let key = EncodingKey::from_ed_pem(&fixture("ed25519_private.pem")).expect("ed key");
    sign_text(header, payload, Algorithm::EdDSA, &key)
}
