//! No input panics: random bytes, mutated real tokens, signed random payloads, random headers.
//! A deterministic PRNG keeps every run identical (a failure names its iteration).
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failure report

mod common;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use common::*;
use jsonwebtoken::Algorithm as J;
use tenant_guard_core::{AuthError, Environment, Verifier};

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

fn verifier() -> Verifier {
    Verifier::builder(Environment::Production)
        .hmac_secret(SECRET)
        .jwks_json(&jwks())
        .org_claim("app_metadata.org_id")
        .clock(|| NOW)
        .build()
        .unwrap()
}

/// Every error a request can produce is a request error (never a configuration error).
fn check(result: Result<tenant_guard_core::Principal, AuthError>, what: &str) {
    if let Err(e) = result {
        assert!(!e.is_config_error(), "{what}: {e:?}");
        assert!(!e.code().is_empty());
    }
}

#[test]
fn random_bytes_as_tokens() {
    let v = verifier();
    let mut rng = Rng(0x2545_f491_4f6c_dd1d);
    let alphabet: &[u8] = b"eyJhbGciOiJIUzI1NiJ9.-_AZaz09+/=\"{}:, \x00\xff";
    for i in 0..20_000 {
        let len = rng.below(200);
        let bytes: Vec<u8> = (0..len).map(|_| *rng.pick(alphabet)).collect();
        let text = String::from_utf8_lossy(&bytes);
        check(v.verify(&text), &format!("iteration {i}"));
    }
}

#[test]
fn mutated_real_tokens() {
    let v = verifier();
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let tokens = [
        hs256(&claims()),
        mint(J::ES256, Signer::Ec256, Some("ec-1"), &claims()),
        mint(J::EdDSA, Signer::Ed, Some("ed-1"), &claims()),
        mint(J::RS256, Signer::Rsa1, Some("rsa-1"), &claims()),
    ];
    let alphabet: &[u8] = b"AZaz09-_.=+/ \"";
    for i in 0..6_000 {
        let mut bytes = rng.pick(&tokens).as_bytes().to_vec();
        for _ in 0..=rng.below(3) {
            if bytes.is_empty() {
                break;
            }
            let at = rng.below(bytes.len());
            match rng.below(4) {
                0 => bytes[at] = *rng.pick(alphabet),
                1 => bytes.insert(at, *rng.pick(alphabet)),
                2 => {
                    bytes.remove(at);
                }
                _ => bytes.truncate(at),
            }
        }
        let text = String::from_utf8(bytes).unwrap();
        let result = v.verify(&text);
        // A mutation may leave the token intact (e.g. replacing a byte by itself), never more.
        if let Ok(p) = &result {
            assert!(
                tokens.iter().any(|t| t == &text),
                "iteration {i}: forged {p:?}"
            );
        }
        check(result, &format!("iteration {i}"));
    }
}

#[test]
fn signed_random_payloads_reach_the_claims_parser_safely() {
    let v = verifier();
    let mut rng = Rng(0xdead_beef_cafe_f00d);
    let pieces: [&str; 25] = [
        "{",
        "}",
        "[",
        "]",
        ",",
        ":",
        "\"sub\"",
        "\"exp\"",
        "\"aud\"",
        "\"role\"",
        "\"app_metadata\"",
        "\"org_id\"",
        "\"authenticated\"",
        "\"7d0a3d39-3a4b-4c49-9a41-5bd2f1a1f0aa\"",
        "1800003600",
        "-1",
        "1e999",
        "0.5",
        "null",
        "true",
        "\"\\u0000\"",
        "\"\\ud800\"",
        "\"x\"",
        " ",
        "\"\\\"",
    ];
    let header = URL_SAFE_NO_PAD.encode(r#"{"alg":"HS256"}"#);
    let key = jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes());
    for i in 0..5_000 {
        let mut payload = String::from("{");
        for _ in 0..rng.below(30) {
            let piece = pieces[rng.below(pieces.len())];
            payload.push_str(piece);
        }
        if rng.below(2) == 0 {
            payload.push('}');
        }
        let message = format!("{header}.{}", URL_SAFE_NO_PAD.encode(&payload));
        let sig = jsonwebtoken::crypto::sign(message.as_bytes(), &key, J::HS256).unwrap();
        check(
            v.verify(&format!("{message}.{sig}")),
            &format!("iteration {i}: {payload}"),
        );
    }
}

#[test]
fn random_headers() {
    let v = Verifier::builder(Environment::Production)
        .hmac_secret(SECRET)
        .cookie_token("tok")
        .clock(|| NOW)
        .build()
        .unwrap();
    let mut rng = Rng(0x0123_4567_89ab_cdef);
    let token = hs256(&claims());
    let names = [
        http::header::AUTHORIZATION,
        http::header::COOKIE,
        http::HeaderName::from_static("x-user-id"),
    ];
    let prefixes: [&[u8]; 6] = [
        b"Bearer ",
        b"bearer  ",
        b"Basic ",
        b"tok=",
        b"",
        b"Bearer\t",
    ];
    for i in 0..10_000 {
        let mut headers = http::HeaderMap::new();
        for _ in 0..rng.below(4) {
            let mut value = rng.pick(&prefixes).to_vec();
            let body = token.as_bytes();
            let cut = rng.below(body.len() + 1);
            value.extend_from_slice(&body[..cut]);
            for _ in 0..rng.below(3) {
                value.push((rng.next() & 0xff) as u8);
            }
            if let Ok(hv) = http::HeaderValue::from_bytes(&value) {
                headers.append(rng.pick(&names).clone(), hv);
            }
        }
        check(v.authenticate(&headers), &format!("iteration {i}"));
    }
}
