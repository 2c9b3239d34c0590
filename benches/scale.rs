//! How the per-request costs grow (issue 6, "Scale"):
//!
//! - `scale/token_size/{fresh,cache_hit}/{1,2,4,8}KB`: HS256 `authenticate` with claims of about
//!   1–8 KB (a filler claim; the verifier's `max_token_len` raised to 16 KB so 8 KB of claims fit),
//!   a full verification and a verified-token cache hit (the hit compares the whole token);
//! - `scale/jwks_keys/{verify,unknown_kid}/{1,8,64}`: EdDSA with 1–64 keys in the JWKS (64 is the
//!   verifier's limit per JWKS; the same public key under N `kid`s, the token naming the last one,
//!   so only the key-set lookup grows),
//!   and a token naming an unknown `kid` (rejected before any signature work: the lookup alone);
//! - `scale/cache_orgs/{hit,capacity_n}/{10,1000,10000,100000}`: verified-token cache lookups,
//!   round-robin over one token per org, the cache sized for twice the tokens (all hits) or for
//!   exactly n (uneven shards evict: part of the lookups miss);
//! - `scale/rate_limit_orgs/{10,1000,10000,100000}`: `RateLimiter::check`, round-robin over N orgs
//!   that all stay resident (the sweep amortized in).
//!
//! `cargo bench --bench scale -- --warm-up-time 1 --measurement-time 2`; `scripts/bench.sh` turns
//! the results into tables. Under `cargo test --benches` (test mode) the largest sizes are skipped
//! to keep the "does it still run" pass quick.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::hint::black_box;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use criterion::{BenchmarkId, Criterion, criterion_group};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::json;
use tenant_guard_core::{Environment, Principal, RateLimiter, Role, ServiceContext, Verifier};
use uuid::Uuid;

const SECRET: &str = "scale-bench-secret-that-is-at-least-32-bytes";

/// Whether this is a real benchmark run (`cargo bench` without `--test`).
fn benchmarking() -> bool {
    let args: Vec<String> = std::env::args().collect();
    args.iter().any(|a| a == "--bench") && !args.iter().any(|a| a == "--test")
}

fn fixture(name: &str) -> Vec<u8> {
    let path = format!(
        "{}/crates/tenant-guard-core/tests/fixtures/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn claims(org: Uuid, pad: usize) -> serde_json::Value {
    let now = now();
    let mut claims = json!({
        "sub": "2b4f8c1e-9d3a-4e5f-8a7b-6c5d4e3f2a1b",
        "aud": "authenticated",
        "exp": now + 24 * 3600,
        "iat": now - 10,
        "role": "authenticated",
        "org_id": org.to_string(),
    });
    if pad > 0 {
        claims["pad"] = json!("p".repeat(pad));
    }
    claims
}

fn hs256(claims: &serde_json::Value) -> String {
    let key = EncodingKey::from_secret(SECRET.as_bytes());
    jsonwebtoken::encode(&Header::new(Algorithm::HS256), claims, &key).unwrap()
}

fn headers(token: &str) -> http::HeaderMap {
    let mut headers = http::HeaderMap::new();
    headers.insert(
        http::header::AUTHORIZATION,
        format!("Bearer {token}").parse().unwrap(),
    );
    headers
}

fn hmac_verifier(cache: usize) -> Verifier {
    Verifier::builder(Environment::Production)
        .hmac_secret(SECRET)
        .max_token_len(16 * 1024)
        .cache_capacity(cache)
        .cache_hmac_tokens(cache > 0)
        .build()
        .unwrap()
}

fn token_size(c: &mut Criterion) {
    let mut group = c.benchmark_group("scale/token_size");
    let fresh = hmac_verifier(0);
    let cached = hmac_verifier(100);
    let org = Uuid::new_v4();
    for kb in [1usize, 2, 4, 8] {
        let base = claims(org, 0).to_string().len();
        let pad = (kb * 1024).saturating_sub(base + 10);
        let claims = claims(org, pad);
        assert!((claims.to_string().len() as i64 - (kb * 1024) as i64).abs() < 64);
        let headers = headers(&hs256(&claims));
        fresh.authenticate(&headers).unwrap();
        cached.authenticate(&headers).unwrap();
        group.bench_function(BenchmarkId::new("fresh", format!("{kb}KB")), |b| {
            b.iter(|| fresh.authenticate(black_box(&headers)).unwrap())
        });
        group.bench_function(BenchmarkId::new("cache_hit", format!("{kb}KB")), |b| {
            b.iter(|| cached.authenticate(black_box(&headers)).unwrap())
        });
    }
    group.finish();
}

fn jwks_keys(c: &mut Criterion) {
    let mut group = c.benchmark_group("scale/jwks_keys");
    let set: serde_json::Value = serde_json::from_slice(&fixture("jwks.json")).unwrap();
    let ed = set["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["kid"] == "ed-1")
        .unwrap()
        .clone();
    let signing = EncodingKey::from_ed_pem(&fixture("ed25519_private.pem")).unwrap();
    let org = Uuid::new_v4();
    for n in [1usize, 8, 64] {
        let keys: Vec<serde_json::Value> = (0..n)
            .map(|i| {
                let mut key = ed.clone();
                key["kid"] = json!(format!("key-{i}"));
                key
            })
            .collect();
        let verifier = Verifier::builder(Environment::Production)
            .jwks_json(&json!({ "keys": keys }).to_string())
            .cache_capacity(0)
            .build()
            .unwrap();
        let sign = |kid: &str| {
            let mut header = Header::new(Algorithm::EdDSA);
            header.kid = Some(kid.to_owned());
            headers(&jsonwebtoken::encode(&header, &claims(org, 0), &signing).unwrap())
        };
        let last = sign(&format!("key-{}", n - 1));
        let unknown = sign("no-such-key");
        verifier.authenticate(&last).unwrap();
        assert!(verifier.authenticate(&unknown).is_err());
        group.bench_function(BenchmarkId::new("verify", n), |b| {
            b.iter(|| verifier.authenticate(black_box(&last)).unwrap())
        });
        group.bench_function(BenchmarkId::new("unknown_kid", n), |b| {
            b.iter(|| verifier.authenticate(black_box(&unknown)).is_err())
        });
    }
    group.finish();
}

fn org_counts() -> Vec<usize> {
    if benchmarking() {
        vec![10, 1_000, 10_000, 100_000]
    } else {
        vec![10, 1_000]
    }
}

fn cache_orgs(c: &mut Criterion) {
    let mut group = c.benchmark_group("scale/cache_orgs");
    for n in org_counts() {
        let tokens: Vec<String> = (0..n).map(|_| hs256(&claims(Uuid::new_v4(), 0))).collect();
        // `hit`: room for twice the tokens, so every lookup hits (the cost of a hit at size).
        // `capacity_n`: a cache of exactly n entries; its shards fill unevenly, and a shard over
        // its share evicts under this round-robin (the worst case for SIEVE), so part of the
        // lookups miss and verify afresh.
        for (case, capacity) in [("hit", 2 * n), ("capacity_n", n)] {
            let verifier = hmac_verifier(capacity);
            for token in &tokens {
                verifier.verify(token).unwrap();
            }
            if case == "hit" {
                assert_eq!(
                    verifier.cached_tokens(),
                    n,
                    "{n} tokens, capacity {capacity}"
                );
            }
            let mut next = tokens.iter().cycle();
            group.bench_function(BenchmarkId::new(case, n), |b| {
                b.iter(|| verifier.verify(black_box(next.next().unwrap())).unwrap())
            });
        }
    }
    group.finish();
}

fn principal(org: Uuid) -> Principal {
    ServiceContext::new("bench").org_principal(org, Role::new("authenticated").unwrap())
}

fn rate_limit_orgs(c: &mut Criterion) {
    let mut group = c.benchmark_group("scale/rate_limit_orgs");
    for n in org_counts() {
        // Roomy enough that no key is limited, and each check keeps its key resident for ~15 ms
        // (2^31 per year), longer than a round over 100 000 keys takes.
        let limiter = RateLimiter::builder(1 << 31, Duration::from_secs(365 * 24 * 3600))
            .build()
            .unwrap();
        let orgs: Vec<Principal> = (0..n).map(|_| principal(Uuid::new_v4())).collect();
        for p in &orgs {
            limiter.check(p).unwrap();
        }
        let mut next = orgs.iter().cycle();
        group.bench_function(BenchmarkId::from_parameter(n), |b| {
            b.iter(|| black_box(limiter.check(black_box(next.next().unwrap())).is_ok()))
        });
        assert!(
            limiter.tracked_keys() * 10 >= n * 9,
            "{}",
            limiter.tracked_keys()
        );
    }
    group.finish();
}

criterion_group!(benches, token_size, jwks_keys, cache_orgs, rate_limit_orgs);

fn main() {
    benches();
    Criterion::default().configure_from_args().final_summary();
}
