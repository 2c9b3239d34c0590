//! The per-request cost of the rate limiter: `RateLimiter::check(&Principal)`, the call both
//! adapters make after authentication.
//!
//! `cargo bench --bench rate_limit -- --warm-up-time 1 --measurement-time 3`
//!
//! Group `rate_limit`: `allowed/one_org`, `allowed/one_org_per_user` (the key includes the user id,
//! one allocation), `allowed/10k_orgs` (round-robin over 10 000 resident keys: the sharded map at
//! size, with the periodic sweep amortized in), `rejected/one_org` (over the limit). Results:
//! `BENCHMARKS.md`, section "Rate limiting".
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use tenant_guard_core::{Principal, RateLimiter, Role, ServiceContext};
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
    assert!(many.tracked_keys() >= 9_000, "{}", many.tracked_keys());

    let strict = RateLimiter::per_minute(1).unwrap();
    strict.check(&one).unwrap();
    group.bench_function("rejected/one_org", |b| {
        b.iter(|| black_box(strict.check(black_box(&one)).is_err()));
    });

    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
