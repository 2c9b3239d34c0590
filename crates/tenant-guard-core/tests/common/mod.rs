//! Token minting for the tests: real signatures with the checked-in test keys.
#![allow(dead_code, unreachable_pub, clippy::unwrap_used, clippy::expect_used)]

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{EncodingKey, Header};
use serde_json::{Value, json};

pub const SECRET: &str = "test-secret-that-is-at-least-32-bytes-long";
pub const ORG: &str = "7d0a3d39-3a4b-4c49-9a41-5bd2f1a1f0aa";
pub const NOW: u64 = 1_800_000_000;

pub fn fixture(name: &str) -> Vec<u8> {
    let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

pub fn fixture_path(name: &str) -> String {
    format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"))
}

pub fn jwks() -> String {
    String::from_utf8(fixture("jwks.json")).unwrap()
}

/// A Supabase-shaped claim set (~1 KB once signed), valid at [`NOW`].
pub fn claims() -> Value {
    json!({
        "iss": "https://abcdefghijklmnop.supabase.co/auth/v1",
        "sub": "2b4f8c1e-9d3a-4e5f-8a7b-6c5d4e3f2a1b",
        "aud": "authenticated",
        "exp": NOW + 3600,
        "iat": NOW - 10,
        "email": "ada.lovelace@example.com",
        "phone": "",
        "app_metadata": {"provider": "email", "providers": ["email"], "org_id": ORG},
        "user_metadata": {
            "email": "ada.lovelace@example.com", "email_verified": true,
            "full_name": "Ada Lovelace", "phone_verified": false,
            "sub": "2b4f8c1e-9d3a-4e5f-8a7b-6c5d4e3f2a1b"
        },
        "role": "authenticated",
        "aal": "aal1",
        "amr": [{"method": "password", "timestamp": NOW - 10}],
        "session_id": "5e6f7a8b-9c0d-4e1f-a2b3-c4d5e6f7a8b9",
        "is_anonymous": false,
        "org_id": ORG
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

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Signer {
    Hmac,
    Rsa1,
    Rsa2,
    Ec256,
    Ec384,
    Ed,
}

impl Signer {
    pub fn key(self) -> EncodingKey {
        match self {
            Self::Hmac => EncodingKey::from_secret(SECRET.as_bytes()),
            Self::Rsa1 => EncodingKey::from_rsa_pem(&fixture("rsa1_private_pkcs1.pem")).unwrap(),
            Self::Rsa2 => EncodingKey::from_rsa_pem(&fixture("rsa2_private_pkcs1.pem")).unwrap(),
            Self::Ec256 => EncodingKey::from_ec_pem(&fixture("ec256_private.pem")).unwrap(),
            Self::Ec384 => EncodingKey::from_ec_pem(&fixture("ec384_private.pem")).unwrap(),
            Self::Ed => EncodingKey::from_ed_pem(&fixture("ed25519_private.pem")).unwrap(),
        }
    }

    /// The kid of this key in `jwks.json`.
    pub fn kid(self) -> Option<&'static str> {
        match self {
            Self::Hmac => None,
            Self::Rsa1 => Some("rsa-1"),
            Self::Rsa2 => Some("rsa-2"),
            Self::Ec256 => Some("ec-1"),
            Self::Ec384 => Some("ec384-1"),
            Self::Ed => Some("ed-1"),
        }
    }
}

pub fn mint(
    alg: jsonwebtoken::Algorithm,
    signer: Signer,
    kid: Option<&str>,
    claims: &Value,
) -> String {
    let mut header = Header::new(alg);
    header.kid = kid.map(str::to_owned);
    jsonwebtoken::encode(&header, claims, &signer.key()).unwrap()
}

pub fn hs256(claims: &Value) -> String {
    mint(jsonwebtoken::Algorithm::HS256, Signer::Hmac, None, claims)
}

/// A token assembled by hand: any header JSON, any claims, any signature text.
pub fn raw(header: &str, claims: &Value, signature: &str) -> String {
    format!(
        "{}.{}.{}",
        URL_SAFE_NO_PAD.encode(header),
        URL_SAFE_NO_PAD.encode(claims.to_string()),
        signature
    )
}

/// An HS256 signature over `header` and `claims` with `secret`, for tokens with unusual headers.
pub fn hmac_signed(header: &str, claims: &Value, secret: &[u8]) -> String {
    let message = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    );
    let sig = jsonwebtoken::crypto::sign(
        message.as_bytes(),
        &EncodingKey::from_secret(secret),
        jsonwebtoken::Algorithm::HS256,
    )
    .unwrap();
    format!("{message}.{sig}")
}

pub fn bearer(token: &str) -> http::HeaderMap {
    let mut h = http::HeaderMap::new();
    h.insert(
        http::header::AUTHORIZATION,
        http::HeaderValue::from_str(&format!("Bearer {token}")).unwrap(),
    );
    h
}
