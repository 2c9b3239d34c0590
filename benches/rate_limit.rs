//! The per-request cost of the rate limiter: `RateLimiter::check(&Principal)`, the call both
//! adapters make after authentication.
//!
//! `cargo bench --bench rate_limit -- --warm-up-time 1 --measurement-time 3`
//!
//! Group `rate_limit`: `allowed/one_org`, `allowed/one_org_per_user` (the key includes the user id,
//! one allocation), `allowed/10k_orgs` (round-robin over 10 000 resident keys: the sharded map at
//! size, with the periodic sweep amortized in), `rejected/one_org` (over the limit),
//! `allowed/one_org_via_backend` (the same check through `Arc<dyn RateLimitBackend>`, as the
//! adapters call it: the trait adds nothing measurable).
//!
//! Group `rate_limit_pg` (a throwaway PostgreSQL from the testkit, loopback): `allowed/one_org`,
//! one `PgRateLimiter::check`, i.e. one round trip, awaited sequentially. Results: `BENCHMARKS.md`,
//! section "Rate limiting".
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::hint::black_box;
use std::time::Duration;

use std::sync::Arc;

use criterion::{Criterion, criterion_group, criterion_main};
use tenant_guard::postgres::{PgRateLimiter, support};
use tenant_guard_core::rate_limit::{RateLimitBackend, RateLimitCheck};
use tenant_guard_core::{Principal, RateLimiter, Role, ServiceContext};
use tenant_guard_testkit::TestPostgres;
use uuid::Uuid;

fn principal(org: Uuid) -> Principal {
    ServiceContext::new("bench").org_principal(org, Role::new("authenticated").unwrap())
}

/// A limit the bench never reaches for one key (about 2^31 per hour, all as burst).
fn roomy() -> RateLimiter {
    RateLimiter::builder(1 << 31, Duration::from_secs(3600))
        .build()
        .unwrap()
}

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("rate_limit");

    let limiter = roomy();
    let one = principal(Uuid::new_v4());
    group.bench_function("allowed/one_org", |b| {
        b.iter(|| black_box(limiter.check(black_box(&one)).is_ok()));
    });

    let per_user = RateLimiter::builder(1 << 31, Duration::from_secs(3600))
        .per_user()
        .build()
        .unwrap();
    group.bench_function("allowed/one_org_per_user", |b| {
        b.iter(|| black_box(per_user.check(black_box(&one)).is_ok()));
    });

    // One request back every 3.6 ms per key and 10 000 keys visited in turn: every key stays
    // in the map (its state never looks fresh), so the map really holds 10 000 entries.
    let many = RateLimiter::builder(1_000_000, Duration::from_secs(3600))
        .build()
        .unwrap();
    let orgs: Vec<Principal> = (0..10_000).map(|_| principal(Uuid::new_v4())).collect();
    let mut next = orgs.iter().cycle();
    group.bench_function("allowed/10k_orgs", |b| {
        b.iter(|| {
            let p = next.next().unwrap();
            black_box(many.check(black_box(p)).is_ok())
        });
    });
    // Only a measured run visits every key in time; criterion's test mode (CI) runs the case once.
    if std::env::args().any(|arg| arg == "--bench") && !std::env::args().any(|arg| arg == "--test")
    {
        assert!(many.tracked_keys() >= 9_000, "{}", many.tracked_keys());
    }

    let backend: Arc<dyn RateLimitBackend> = Arc::new(roomy());
    group.bench_function("allowed/one_org_via_backend", |b| {
        b.iter(|| {
            let check = backend.check_request(black_box(&one));
            black_box(matches!(check, RateLimitCheck::Ready(Ok(_))))
        });
    });

    let strict = RateLimiter::per_minute(1).unwrap();
    strict.check(&one).unwrap();
    group.bench_function("rejected/one_org", |b| {
        b.iter(|| black_box(strict.check(black_box(&one)).is_err()));
    });

    group.finish();
}

/// The login the limiter connects as (roles are per server).
const LOGIN: &str = "bench_rate_limiter";

fn bench_postgres(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let server = TestPostgres::start().expect("a throwaway PostgreSQL (see the testkit)");
    let db = server.create_database().unwrap();
    let limiter = rt.block_on(async {
        let admin = db.connect().await.unwrap();
        admin
            .batch_execute(&format!("CREATE ROLE {LOGIN} LOGIN NOINHERIT"))
            .await
            .unwrap();
        support::apply_rate_limit_sql(&admin, Some(LOGIN))
            .await
            .unwrap();
        let mut config = db.config().clone();
        config.user(LOGIN);
        PgRateLimiter::builder("bench", i32::MAX as u32, Duration::from_secs(3600))
            .build(config)
            .unwrap()
    });
    let one = principal(Uuid::new_v4());
    rt.block_on(limiter.check(&one)).unwrap();

    let mut group = c.benchmark_group("rate_limit_pg");
    group.bench_function("allowed/one_org", |b| {
        b.iter(|| black_box(rt.block_on(limiter.check(black_box(&one))).is_ok()));
    });
    group.finish();
    drop(limiter);
    drop(db);
}

criterion_group!(benches, bench, bench_postgres);
criterion_main!(benches);
