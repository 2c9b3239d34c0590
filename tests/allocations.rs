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
//!
//! With the `http` feature, a second test counts a whole guarded request through the pipeline of
//! `tenant_guard_http` (what an adapter calls: request trace, admission with a fresh HS256
//! verification, the handler's `TenantDb` and one 10-row query, commit by status, response
//! headers stamped, trace finished) against the same query on a raw `tokio_postgres` client, on
//! a current-thread runtime and a throwaway server from the testkit; the guarded request's
//! budget is [`GUARDED_REQUEST`]. The two tests take turns (a lock), since the counters are
//! process-wide.
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::print_stderr)]

use std::alloc::System;
use std::sync::Mutex;
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

/// The counters are process-wide: one test counts at a time.
static COUNTING: Mutex<()> = Mutex::new(());

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
    let _turn = COUNTING
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
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

/// A whole guarded request through `tenant_guard_http` (see the module documentation).
#[cfg(feature = "http")]
mod guarded_request {
    use std::cell::RefCell;

    use super::{COUNTING, GLOBAL};

    use http::{HeaderMap, StatusCode};
    use stats_alloc::Region;
    use tenant_guard::http::{GuardConfig, ReadOnly, RequestTrace, commits};
    use tenant_guard::postgres::tokio_postgres::Client;
    use tenant_guard::postgres::{LoginPolicy, TenantPool, support};
    use tenant_guard_testkit::{TestIssuer, TestPostgres};
    use uuid::Uuid;

    /// Allocations + reallocations of one guarded request, everything included (HS256
    /// verification, pipeline, guard, pool, tokio-postgres, the 10 rows): 81.3 measured on
    /// 2026-12-04, 74.3 after the metrics keys and the generated request id stopped allocating
    /// (the raw query alone: 20.3), 75.3 with the pool's role affinity; see BENCHMARKS.md, "The
    /// client side's share".
    const GUARDED_REQUEST: u64 = 76;

    const LOGIN: &str = "alloc_authenticator";
    const QUERY: &str = "SELECT id, org_id, name FROM items ORDER BY id LIMIT 10";
    const ORG: Uuid = Uuid::from_u128(0x0000_0000_0000_4000_8000_0000_0000_0007);
    const SCHEMA: &str = "
        CREATE TABLE items (id bigserial PRIMARY KEY, org_id uuid NOT NULL, name text NOT NULL);
        INSERT INTO items (org_id, name)
            SELECT ('00000000-0000-4000-8000-' || lpad((g % 10)::text, 12, '0'))::uuid, 'item ' || g
              FROM generate_series(1, 1000) g;
        CREATE INDEX items_org_id_id ON items (org_id, id);
        ALTER TABLE items ENABLE ROW LEVEL SECURITY;
        ALTER TABLE items FORCE ROW LEVEL SECURITY;
        CREATE POLICY items_org ON items FOR ALL TO authenticated
            USING (org_id = (SELECT tenant_guard.org_id()));
        GRANT SELECT ON items TO authenticated;
    ";

    /// What an adapter does for one request whose handler reads 10 rows and answers 200.
    /// (`response` stands for the framework's response headers, allocated outside the count.)
    async fn guarded(config: &GuardConfig, headers: &HeaderMap, response: &RefCell<HeaderMap>) {
        let (trace, timer) = RequestTrace::reuse_or_start(None, headers, Some("/projects"));
        let admitted = config.admit(headers, &trace, None).resolve().await.unwrap();
        let (context, finisher) = admitted.into_parts();
        {
            let db = context.db::<ReadOnly>().unwrap();
            assert_eq!(db.query(QUERY, &[]).await.unwrap().len(), 10);
        }
        drop(context);
        assert!(finisher.finish(commits(StatusCode::OK)).await.is_none());
        let mut response = response.borrow_mut();
        response.clear();
        finisher.stamp(&mut response);
        RequestTrace::finish(timer, 200);
    }

    async fn raw(client: &Client, statement: &tenant_guard::postgres::tokio_postgres::Statement) {
        assert_eq!(client.query(statement, &[]).await.unwrap().len(), 10);
    }

    /// Average allocations (+ reallocations) of one awaited `f()`, after warm-up calls.
    async fn per_request<F: std::future::Future<Output = ()>>(mut f: impl FnMut() -> F) -> f64 {
        const CALLS: u64 = 64;
        for _ in 0..4 {
            f().await;
        }
        let region = Region::new(GLOBAL);
        for _ in 0..CALLS {
            f().await;
        }
        let change = region.change();
        (change.allocations + change.reallocations) as f64 / CALLS as f64
    }

    #[test]
    fn guarded_request_allocations_stay_within_budget() {
        let _turn = COUNTING
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let server = TestPostgres::start().unwrap();
        let db = server.create_database().unwrap();
        let issuer = TestIssuer::new();
        let token = issuer.token(ORG, &Uuid::new_v4().to_string(), "authenticated");
        let headers = super::headers(&token);
        let (guarded_per, raw_per, verify_per) = rt.block_on(async {
            let admin = db.connect().await.unwrap();
            admin
                .batch_execute(&format!("CREATE ROLE {LOGIN} LOGIN NOINHERIT"))
                .await
                .unwrap();
            support::apply_support_sql_with(&admin, Some(LOGIN), SCHEMA)
                .await
                .unwrap();
            let mut login = db.config().clone();
            login.user(LOGIN);
            let pool = TenantPool::builder(login)
                .max_size(1)
                .login_policy(LoginPolicy::Refuse)
                .build()
                .unwrap();
            let config = GuardConfig::new(issuer.verifier().clone()).pool(pool);
            let statement = admin.prepare(QUERY).await.unwrap();
            let response = RefCell::new(HeaderMap::with_capacity(8));
            let guarded_per = per_request(|| guarded(&config, &headers, &response)).await;
            let raw_per = per_request(|| raw(&admin, &statement)).await;
            let verify = issuer.verifier();
            let verify_per = per_request(|| async {
                drop(std::hint::black_box(verify.authenticate(&headers)));
            })
            .await;
            (guarded_per, raw_per, verify_per)
        });
        eprintln!(
            "allocations per request: guarded {guarded_per:.2} (budget {GUARDED_REQUEST}), \
             raw query {raw_per:.2}, of which HS256 verification {verify_per:.2}"
        );
        assert!(
            guarded_per <= GUARDED_REQUEST as f64,
            "a guarded request: {guarded_per:.2} allocations, budget {GUARDED_REQUEST}"
        );
    }
}
