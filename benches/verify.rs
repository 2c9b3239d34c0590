//! Verification latency on the hot path: `HeaderMap` → `Principal`, against the floor (plain
//! `jsonwebtoken::decode` into a minimal struct with the same key), in the same run.
//!
//! `cargo bench --bench verify -- --warm-up-time 1 --measurement-time 3`
//!
//! Groups: `verify/<ALG>` with `floor` (jsonwebtoken), `ours` (cache off: a full verification) and,
//! for the asymmetric algorithms, `ours_cached` (a verified-token cache hit). HS256 also has
//! `ours_cached` with the opt-in HMAC cache. `issuers/<ALG>` measures the cost per issuer count: a
//! verifier with 1, 4 or 16 issuer profiles (each with its own key), the token from the last one
//! (1 is the single-profile path, no routing; 4 and 16 route by `iss`). Results and method:
//! `BENCHMARKS.md`.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::hint::black_box;
use std::time::{SystemTime, UNIX_EPOCH};

use criterion::{Criterion, criterion_group};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::Deserialize;
use serde_json::json;
use tenant_guard_core::{Environment, IssuerProfile, Verifier};

const SECRET: &str = "bench-secret-that-is-at-least-32-bytes-long";
const ORG: &str = "7d0a3d39-3a4b-4c49-9a41-5bd2f1a1f0aa";

fn fixture(name: &str) -> Vec<u8> {
    let path = format!(
        "{}/crates/tenant-guard-core/tests/fixtures/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// The floor's target: the smallest struct a service would decode into.
#[derive(Deserialize)]
#[allow(dead_code)]
struct Minimal {
    sub: String,
    exp: u64,
}

/// A Supabase-shaped token body (about 1 KB once encoded).
fn claims() -> serde_json::Value {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    json!({
        "iss": "https://abcdefghijklmnop.supabase.co/auth/v1",
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

struct Case {
    name: &'static str,
    alg: Algorithm,
    encoding: EncodingKey,
    kid: Option<&'static str>,
    /// The key the floor uses: built exactly as the verifier builds it.
    floor_key: DecodingKey,
}

fn jwk(kid: &str) -> jsonwebtoken::jwk::Jwk {
    let set: jsonwebtoken::jwk::JwkSet = serde_json::from_slice(&fixture("jwks.json")).unwrap();
    set.find(kid).unwrap().clone()
}

fn cases() -> Vec<Case> {
    vec![
        Case {
            name: "HS256",
            alg: Algorithm::HS256,
            encoding: EncodingKey::from_secret(SECRET.as_bytes()),
            kid: None,
            floor_key: DecodingKey::from_secret(SECRET.as_bytes()),
        },
        Case {
            name: "RS256",
            alg: Algorithm::RS256,
            encoding: EncodingKey::from_rsa_pem(&fixture("rsa1_private_pkcs1.pem")).unwrap(),
            kid: Some("rsa-1"),
            floor_key: DecodingKey::from_jwk(&jwk("rsa-1")).unwrap(),
        },
        Case {
            name: "ES256",
            alg: Algorithm::ES256,
            encoding: EncodingKey::from_ec_pem(&fixture("ec256_private.pem")).unwrap(),
            kid: Some("ec-1"),
            floor_key: DecodingKey::from_jwk(&jwk("ec-1")).unwrap(),
        },
        Case {
            name: "EdDSA",
            alg: Algorithm::EdDSA,
            encoding: EncodingKey::from_ed_pem(&fixture("ed25519_private.pem")).unwrap(),
            kid: Some("ed-1"),
            floor_key: DecodingKey::from_jwk(&jwk("ed-1")).unwrap(),
        },
    ]
}

fn verifier(cache: bool) -> Verifier {
    let jwks = String::from_utf8(fixture("jwks.json")).unwrap();
    Verifier::builder(Environment::Production)
        .hmac_secret(SECRET)
        .jwks_json(&jwks)
        .issuer("https://abcdefghijklmnop.supabase.co/auth/v1")
        .cache_capacity(if cache { 1000 } else { 0 })
        .cache_hmac_tokens(cache)
        .build()
        .unwrap()
}

/// One benchmark subject: a token, its headers, and the three ways to check it.
struct Subject {
    name: &'static str,
    token: String,
    headers: http::HeaderMap,
    floor_key: DecodingKey,
    validation: Validation,
}

fn subjects(uncached: &Verifier, cached: &Verifier) -> Vec<Subject> {
    cases()
        .into_iter()
        .map(|case| {
            let mut header = Header::new(case.alg);
            header.kid = case.kid.map(str::to_owned);
            let token = jsonwebtoken::encode(&header, &claims(), &case.encoding).unwrap();
            let mut headers = http::HeaderMap::new();
            headers.insert(
                http::header::AUTHORIZATION,
                format!("Bearer {token}").parse().unwrap(),
            );
            let mut validation = Validation::new(case.alg);
            validation.set_audience(&["authenticated"]);
            validation.set_issuer(&["https://abcdefghijklmnop.supabase.co/auth/v1"]);
            // Sanity: all three agree the token is good (and the cache is warm).
            jsonwebtoken::decode::<Minimal>(&token, &case.floor_key, &validation).unwrap();
            assert_eq!(
                uncached
                    .authenticate(&headers)
                    .unwrap()
                    .org_id()
                    .to_string(),
                ORG
            );
            cached.authenticate(&headers).unwrap();
            Subject {
                name: case.name,
                token,
                headers,
                floor_key: case.floor_key,
                validation,
            }
        })
        .collect()
}

fn floor(s: &Subject) -> Minimal {
    jsonwebtoken::decode::<Minimal>(black_box(&s.token), &s.floor_key, &s.validation)
        .unwrap()
        .claims
}

fn bench(c: &mut Criterion) {
    let uncached = verifier(false);
    let cached = verifier(true);
    for s in subjects(&uncached, &cached) {
        let mut group = c.benchmark_group(format!("verify/{}", s.name));
        group.bench_function("floor", |b| b.iter(|| floor(&s)));
        group.bench_function("ours", |b| {
            b.iter(|| uncached.authenticate(black_box(&s.headers)).unwrap())
        });
        group.bench_function("ours_cached", |b| {
            b.iter(|| cached.authenticate(black_box(&s.headers)).unwrap())
        });
        group.finish();
    }
}

/// Instruction-count mode, for a CPU shared with other work: with `VERIFY_ICOUNT=ALG:VARIANT:N`
/// (VARIANT `floor`, `ours`, `ours_cached` or `issuers<K>`) the binary runs one variant N times
/// and exits, to be run under
/// `valgrind --tool=callgrind` (see `BENCHMARKS.md`).
fn icount(spec: &str) {
    let mut parts = spec.split(':');
    let (alg, variant, n) = (
        parts.next().unwrap(),
        parts.next().unwrap(),
        parts.next().unwrap().parse::<usize>().unwrap(),
    );
    let uncached = verifier(false);
    let cached = verifier(true);
    let subject = subjects(&uncached, &cached)
        .into_iter()
        .find(|s| s.name == alg)
        .unwrap();
    // `issuers<K>`: the verifier of `bench_issuers` with K profiles (cache on for RS256).
    let multi = variant
        .strip_prefix("issuers")
        .map(|k| multi_issuer(k.parse().unwrap(), alg != "HS256"));
    if let Some(v) = &multi {
        v.authenticate(&subject.headers).unwrap();
    }
    for _ in 0..n {
        if let Some(v) = &multi {
            drop(black_box(
                v.authenticate(black_box(&subject.headers)).unwrap(),
            ));
            continue;
        }
        match variant {
            "floor" => drop(black_box(floor(&subject))),
            "ours" => drop(black_box(
                uncached.authenticate(black_box(&subject.headers)).unwrap(),
            )),
            "ours_cached" => drop(black_box(
                cached.authenticate(black_box(&subject.headers)).unwrap(),
            )),
            other => panic!("unknown variant {other}"),
        }
    }
}

const ISSUER: &str = "https://abcdefghijklmnop.supabase.co/auth/v1";

/// A verifier trusting `n` issuers, each with its own HMAC secret and RSA key; the last one is
/// the bench token's issuer (`ISSUER`), the others `https://idp-<i>.example/`.
fn multi_issuer(n: usize, cache: bool) -> Verifier {
    let rsa = fixture("rsa1_public.pem");
    let mut builder =
        Verifier::builder(Environment::Production).cache_capacity(if cache { 1000 } else { 0 });
    for i in 0..n {
        let issuer = if i + 1 == n {
            ISSUER.to_owned()
        } else {
            format!("https://idp-{i}.example/")
        };
        let secret = if i + 1 == n {
            SECRET.to_owned()
        } else {
            format!("{SECRET}-{i}")
        };
        builder = builder.add_issuer(
            IssuerProfile::new(issuer)
                .hmac_secret(secret)
                .public_key_pem_with_kid("rsa-1", &rsa),
        );
    }
    builder.build().unwrap()
}

fn bench_issuers(c: &mut Criterion) {
    let uncached = verifier(false);
    let cached = verifier(true);
    let subjects = subjects(&uncached, &cached);
    for (alg, cache) in [("HS256", false), ("RS256", true)] {
        let s = subjects.iter().find(|s| s.name == alg).unwrap();
        let mut group = c.benchmark_group(format!(
            "issuers/{alg}{}",
            if cache { "_cached" } else { "" }
        ));
        for n in [1, 4, 16] {
            let v = multi_issuer(n, cache);
            assert_eq!(
                v.authenticate(&s.headers).unwrap().org_id().to_string(),
                ORG
            );
            group.bench_function(n.to_string(), |b| {
                b.iter(|| v.authenticate(black_box(&s.headers)).unwrap())
            });
        }
        group.finish();
    }
}

criterion_group!(benches, bench, bench_issuers);

fn main() {
    if let Ok(spec) = std::env::var("VERIFY_ICOUNT") {
        icount(&spec);
        return;
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}
