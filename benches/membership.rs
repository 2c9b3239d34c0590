//! The cost of header-selected orgs (`GuardConfig::org_membership`): admission of one request,
//! measured through `GuardConfig::admit` (awaiting its pending step) on a throwaway local server
//! from the testkit, in the same run:
//! - `token_org`: a token that names its org (no lookup; the baseline);
//! - `membership_hit`: a token without an org, `x-org-id` header, the membership answer cached;
//! - `membership_miss`: the same with the cache off (capacity 0): one read-only lookup
//!   transaction as the lookup role per request.
//!
//! `cargo bench --features full --bench membership`; results in `BENCHMARKS.md`.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stdout,
    missing_docs
)]

use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use jsonwebtoken::{EncodingKey, Header};
use serde_json::json;
use tenant_guard::http::{Admission, GuardConfig, OrgMembership, RequestTrace};
use tenant_guard::postgres::{LoginPolicy, TenantPool, support};
use tenant_guard::{Environment, IssuerProfile, Role, Verifier};
use tenant_guard_testkit::TestPostgres;
use uuid::Uuid;

const LOGIN: &str = "bench_membership_login";
const READER: &str = "bench_membership_reader";
const SECRET: &str = "membership-bench-secret-0123456789abcdef";
const ISSUER: &str = "https://idp.bench/";

fn token(user: Uuid, org: Option<Uuid>) -> String {
    let mut claims = json!({
        "sub": user, "aud": "authenticated", "role": "authenticated", "iss": ISSUER,
        "exp": 4_000_000_000u64, "iat": 1_700_000_000u64,
    });
    if let Some(org) = org {
        claims["org_id"] = json!(org);
    }
    jsonwebtoken::encode(
        &Header::default(),
        &claims,
        &EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .unwrap()
}

fn headers(token: &str, org: Option<Uuid>) -> http::HeaderMap {
    let mut h = http::HeaderMap::new();
    h.insert(
        http::header::AUTHORIZATION,
        format!("Bearer {token}").parse().unwrap(),
    );
    if let Some(org) = org {
        h.insert("x-org-id", org.to_string().parse().unwrap());
    }
    h
}

async fn admit(config: &GuardConfig, headers: &http::HeaderMap) {
    let (trace, _timer) = RequestTrace::start(headers);
    match config.admit(headers, &trace, None) {
        Admission::Admitted(_) => {}
        Admission::Pending(pending) => {
            pending.await.expect("admitted");
        }
        Admission::Refused(r) => panic!("refused: {}", r.response().code()),
    }
}

fn benches(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let server = TestPostgres::start().expect("a throwaway PostgreSQL (see the testkit)");
    let db = server.create_database().unwrap();
    let (user, org) = (Uuid::new_v4(), Uuid::new_v4());
    let pool = rt.block_on(async {
        let admin = db.connect().await.unwrap();
        admin
            .batch_execute(&format!(
                "CREATE ROLE {LOGIN} LOGIN NOINHERIT; CREATE ROLE {READER} NOLOGIN"
            ))
            .await
            .unwrap();
        support::apply_support_sql_with(
            &admin,
            Some(LOGIN),
            &format!(
                "GRANT {READER} TO {LOGIN};
                 CREATE TABLE memberships (user_id uuid, org_id uuid, role text NOT NULL,
                                           PRIMARY KEY (user_id, org_id));
                 GRANT SELECT ON memberships TO {READER};"
            ),
        )
        .await
        .unwrap();
        admin
            .execute(
                "INSERT INTO memberships VALUES ($1, $2, 'authenticated')",
                &[&user, &org],
            )
            .await
            .unwrap();
        let mut login = db.config().clone();
        login.user(LOGIN);
        TenantPool::builder(login)
            .max_size(4)
            .login_policy(LoginPolicy::Refuse)
            .build()
            .unwrap()
    });
    let verifier = Verifier::builder(Environment::Production)
        .add_issuer(
            IssuerProfile::new(ISSUER)
                .hmac_secret(SECRET)
                .org_from_request(true),
        )
        .build()
        .unwrap();
    let membership = |capacity| {
        OrgMembership::from_header(
            http::HeaderName::from_static("x-org-id"),
            Role::new(READER).unwrap(),
        )
        .cache(capacity, Duration::from_secs(3600))
    };
    let base = GuardConfig::new(verifier).pool(pool);
    let hit = base.clone().org_membership(membership(1000));
    let miss = base.clone().org_membership(membership(0));
    let with_org = headers(&token(user, Some(org)), None);
    let without_org = headers(&token(user, None), Some(org));

    let mut group = c.benchmark_group("membership");
    group.bench_function("token_org", |b| {
        b.iter(|| rt.block_on(admit(&hit, &with_org)));
    });
    group.bench_function("membership_hit", |b| {
        b.iter(|| rt.block_on(admit(&hit, &without_org)));
    });
    group.bench_function("membership_miss", |b| {
        b.iter(|| rt.block_on(admit(&miss, &without_org)));
    });
    group.finish();
}

criterion_group!(membership, benches);
criterion_main!(membership);
