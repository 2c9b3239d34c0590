//! Allocations per verification on the request hot path (`Verifier::authenticate`), counted with
//! a wrapper of the system allocator, and bounded: a change that adds an allocation per request
//! fails here.
//!
//! The counting allocator is `stats_alloc` (a `GlobalAlloc` impl needs `unsafe`, which the
//! workspace forbids in every target). Its counters are process-wide, so this binary holds a
//! single test and nothing else runs while it counts.
//!
//! Budgets (allocations + reallocations per call, a Supabase-shaped token of about 1.3 KB), set
//! to what is measured today (2026-11-23):
//! - HS256 full verification: ours are the payload buffer kept as `claims_json`, the `Principal`
//!   `Arc`, `sub` and the role name (see BENCHMARKS.md, "Verification"); the rest is inside
//!   `jsonwebtoken::crypto::verify` (decoded signature, per-call verifier): [`FRESH_HS256`];
//! - an asymmetric (ES256) full verification: [`FRESH_ES256`];
//! - a verified-token cache hit (HS256 with the opt-in HMAC cache, and ES256): at most
//!   [`CACHE_HIT`];
//! - a rejected token (bad signature): at most [`REJECTED`].
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::print_stderr)]

use std::alloc::System;
use std::time::{SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use stats_alloc::{INSTRUMENTED_SYSTEM, Region, StatsAlloc};
use tenant_guard::{Environment, Verifier};

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

/// Allocation budgets per call (see the module documentation).
const FRESH_HS256: u64 = 7;
const FRESH_ES256: u64 = 9;
const CACHE_HIT: u64 = 0;
const REJECTED: u64 = 2;

const SECRET: &str = "allocations-secret-that-is-at-least-32-bytes";
const ORG: &str = "7d0a3d39-3a4b-4c49-9a41-5bd2f1a1f0aa";
const ISSUER: &str = "https://abcdefghijklmnop.supabase.co/auth/v1";

fn fixture(name: &str) -> Vec<u8> {
    let path = format!(
        "{}/crates/tenant-guard-core/tests/fixtures/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// The Supabase-shaped claims of `benches/verify.rs`.
fn claims() -> serde_json::Value {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    serde_json::json!({
        "iss": ISSUER,
        "sub": "2b4f8c1e-9d3a-4e5f-8a7b-6c5d4e3f2a1b",
        "aud": "authenticated",
        "exp": now + 24 * 3600,
        "iat": now - 10,
        "email": "ada.lovelace@example.com",
        "phone": "",
        "app_metadata": {"provider": "email", "providers": ["email", "github"], "org_id": ORG},
        "user_metadata": {
            "avatar_url": "https://avatars.example.com/u/12345678?v=4",
            "email": "ada.lovelace@example.com", "email_verified": true,
            "full_name": "Ada Lovelace", "iss": "https://api.github.com",
            "name": "Ada Lovelace", "phone_verified": false,
            "preferred_username": "ada", "provider_id": "12345678",
            "sub": "2b4f8c1e-9d3a-4e5f-8a7b-6c5d4e3f2a1b", "user_name": "ada"
        },
        "role": "authenticated",
        "aal": "aal1",
        "amr": [{"method": "password", "timestamp": now - 10}],
        "session_id": "5e6f7a8b-9c0d-4e1f-a2b3-c4d5e6f7a8b9",
        "is_anonymous": false,
        "org_id": ORG
    })
}

fn verifier(cache: bool) -> Verifier {
    let jwks = String::from_utf8(fixture("jwks.json")).unwrap();
    Verifier::builder(Environment::Production)
        .hmac_secret(SECRET)
        .jwks_json(&jwks)
        .issuer(ISSUER)
        .cache_capacity(if cache { 1000 } else { 0 })
        .cache_hmac_tokens(cache)
        .build()
        .unwrap()
}

fn headers(token: &str) -> http::HeaderMap {
    let mut headers = http::HeaderMap::new();
    headers.insert(
        http::header::AUTHORIZATION,
        format!("Bearer {token}").parse().unwrap(),
    );
    headers
}

/// Average allocations (+ reallocations) of one `f()`, after a warm-up call.
fn allocations_per_call<T>(mut f: impl FnMut() -> T) -> f64 {
    const CALLS: u64 = 64;
    drop(f());
    let region = Region::new(GLOBAL);
    for _ in 0..CALLS {
        // The result is dropped inside the region: only allocation counts matter.
        drop(std::hint::black_box(f()));
    }
    let change = region.change();
    (change.allocations + change.reallocations) as f64 / CALLS as f64
}

#[test]
fn verification_allocations_stay_within_budget() {
    let hs256 = {
        let key = EncodingKey::from_secret(SECRET.as_bytes());
        headers(&jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims(), &key).unwrap())
    };
    let es256 = {
        let key = EncodingKey::from_ec_pem(&fixture("ec256_private.pem")).unwrap();
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some("ec-1".to_owned());
        headers(&jsonwebtoken::encode(&header, &claims(), &key).unwrap())
    };
    let forged = {
        let key = EncodingKey::from_secret(b"not-the-secret-but-as-long-as-the-real-one");
        headers(&jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims(), &key).unwrap())
    };
    let uncached = verifier(false);
    let cached = verifier(true);
    // Sanity: what is counted below is the accepting (or rejecting) path.
    assert_eq!(
        uncached.authenticate(&hs256).unwrap().org_id().to_string(),
        ORG
    );
    uncached.authenticate(&es256).unwrap();
    assert!(uncached.authenticate(&forged).is_err());
    cached.authenticate(&hs256).unwrap();
    cached.authenticate(&es256).unwrap();

    let measured = [
        (
            "HS256 full verification",
            allocations_per_call(|| uncached.authenticate(&hs256)),
            FRESH_HS256,
        ),
        (
            "ES256 full verification",
            allocations_per_call(|| uncached.authenticate(&es256)),
            FRESH_ES256,
        ),
        (
            "HS256 cache hit",
            allocations_per_call(|| cached.authenticate(&hs256)),
            CACHE_HIT,
        ),
        (
            "ES256 cache hit",
            allocations_per_call(|| cached.authenticate(&es256)),
            CACHE_HIT,
        ),
        (
            "rejected (bad signature)",
            allocations_per_call(|| uncached.authenticate(&forged)),
            REJECTED,
        ),
    ];
    for (what, per_call, budget) in &measured {
        eprintln!("allocations per call: {what}: {per_call:.2} (budget {budget})");
    }
    for (what, per_call, budget) in measured {
        assert!(
            per_call <= budget as f64,
            "{what}: {per_call:.2} allocations per call, budget {budget}"
        );
    }
}
