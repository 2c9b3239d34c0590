//! Role mix: a 50/50 two-role workload against the single-role one, with the pool's role affinity
//! on and off, in the same run, on a throwaway local server from the testkit.
//!
//! `cargo bench --bench role_mix --features postgres`
//!
//! PostgreSQL re-plans a cached statement on a table with Row Level Security when the current
//! role differs from the one its plan was made for, so a connection alternating between two
//! roles does far more server work per transaction (see `BENCHMARKS.md`, "Role affinity").
//!
//! The workload: 2 concurrent clients on a pool of 4 (`ROLE_MIX_CLIENTS`, `ROLE_MIX_POOL`), each running guarded
//! read-only transactions (`begin` + a prepared `SELECT … LIMIT 10` on an RLS table + `commit`).
//! - `single`: every transaction as `authenticated`;
//! - `mixed`: each client alternates `authenticated` / `anon` (50/50, the worst case for a pool
//!   that ignores roles).
//!
//! Each under `affinity_on` (the default pool) and `affinity_off` (`role_affinity(false)`).
//! Criterion measures the time per transaction (the clients run concurrently, so it is the
//! inverse of throughput); a second pass (interleaved rounds) prints the ratios mixed ÷ single.
//!
//! `ROLE_MIX_COUNT=<variant>:<n>` (variant `single_on`, `mixed_on`, `single_off`, `mixed_off`)
//! runs `n` transactions and exits, printing the pool's backend pids (`backend <pid>`): with the
//! server under callgrind (`scripts/role-mix-floor.sh`), the server's instructions per
//! transaction, noise-free.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stdout,
    missing_docs
)]

use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group};
use tenant_guard::Principal;
use tenant_guard::postgres::{LoginPolicy, ScopeOptions, TenantPool, support};
use tenant_guard_testkit::{TestDatabase, TestIssuer, TestPostgres};
use tokio::runtime::Runtime;
use uuid::Uuid;

/// Pool size and concurrent clients: `ROLE_MIX_POOL` and `ROLE_MIX_CLIENTS`, defaults 4 and 2.
fn pool_size() -> usize {
    knob("ROLE_MIX_POOL", 4)
}

fn clients() -> usize {
    knob("ROLE_MIX_CLIENTS", 2)
}

fn knob(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|&n| n > 0)
        .unwrap_or(default)
}
const LOGIN: &str = "bench_role_mix_login";
const QUERY: &str = "SELECT id, org_id, name FROM items ORDER BY id LIMIT 10";

/// The guard bench's table (org from `tenant_guard.org_id()`), readable by both roles, with
/// 10 000 rows (100 per org: the query reads the same rows as on the guard bench's 100 000).
const SCHEMA: &str = "
CREATE TABLE items (id bigserial PRIMARY KEY, org_id uuid NOT NULL, name text NOT NULL);
INSERT INTO items (org_id, name)
    SELECT ('00000000-0000-4000-8000-' || lpad((g % 100)::text, 12, '0'))::uuid, 'item ' || g
      FROM generate_series(1, 10000) g;
CREATE INDEX items_org_id_id ON items (org_id, id);
ALTER TABLE items ENABLE ROW LEVEL SECURITY;
ALTER TABLE items FORCE ROW LEVEL SECURITY;
CREATE POLICY items_org ON items FOR SELECT TO authenticated, anon
    USING (org_id = (SELECT tenant_guard.org_id()));
GRANT SELECT ON items TO authenticated, anon;
ANALYZE items;
";

/// Org number 7 of the 100 in `items`.
const ORG: Uuid = Uuid::from_u128(0x0000_0000_0000_4000_8000_0000_0000_0007);

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Variant {
    SingleOn,
    MixedOn,
    SingleOff,
    MixedOff,
}

const VARIANTS: [Variant; 4] = [
    Variant::SingleOn,
    Variant::MixedOn,
    Variant::SingleOff,
    Variant::MixedOff,
];

impl Variant {
    fn name(self) -> &'static str {
        match self {
            Self::SingleOn => "single_on",
            Self::MixedOn => "mixed_on",
            Self::SingleOff => "single_off",
            Self::MixedOff => "mixed_off",
        }
    }

    fn mixed(self) -> bool {
        matches!(self, Self::MixedOn | Self::MixedOff)
    }

    fn affinity(self) -> bool {
        matches!(self, Self::SingleOn | Self::MixedOn)
    }
}

struct Fixture {
    rt: Runtime,
    on: TenantPool,
    off: TenantPool,
    /// `authenticated` and `anon`, same org.
    roles: [Principal; 2],
    _db: TestDatabase,
    _server: TestPostgres,
}

impl Fixture {
    fn pool(&self, variant: Variant) -> &TenantPool {
        if variant.affinity() {
            &self.on
        } else {
            &self.off
        }
    }
}

fn fixture() -> Fixture {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let server = TestPostgres::start().expect("a throwaway PostgreSQL (see the testkit)");
    let db = server.create_database().unwrap();
    let issuer = TestIssuer::new();
    let sub = Uuid::new_v4().to_string();
    let roles = [
        issuer.principal(ORG, &sub, "authenticated").unwrap(),
        issuer.principal(ORG, &sub, "anon").unwrap(),
    ];
    let (on, off) = rt.block_on(async {
        let admin = db.connect().await.unwrap();
        admin
            .batch_execute(&format!(
                "DO $$ BEGIN
                    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{LOGIN}') THEN
                        CREATE ROLE {LOGIN} LOGIN NOINHERIT;
                    END IF;
                END $$"
            ))
            .await
            .unwrap();
        support::apply_support_sql_with(&admin, Some(LOGIN), SCHEMA)
            .await
            .unwrap();
        let mut login = db.config().clone();
        login.user(LOGIN);
        let pool = |affinity| {
            TenantPool::builder(login.clone())
                .max_size(pool_size())
                .login_policy(LoginPolicy::Refuse)
                .role_affinity(affinity)
                .build()
                .unwrap()
        };
        (pool(true), pool(false))
    });
    let f = Fixture {
        rt,
        on,
        off,
        roles,
        _db: db,
        _server: server,
    };
    // Open every connection of both pools and prepare the statements under both roles.
    f.rt.block_on(async {
        for pool in [&f.on, &f.off] {
            for principal in &f.roles {
                let mut held = Vec::new();
                for _ in 0..pool_size() {
                    let tx = pool
                        .begin(principal, ScopeOptions::default().read_only(true))
                        .await
                        .unwrap();
                    tx.query(QUERY, &[]).await.unwrap();
                    held.push(tx);
                }
                for tx in held {
                    tx.commit().await.unwrap();
                }
                settle(pool).await;
            }
        }
    });
    f
}

/// Waits until every connection of `pool` is idle again (read-only commits return theirs after
/// the session check, on a spawned task).
async fn settle(pool: &TenantPool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while pool.status().available < pool.status().size && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// `n` transactions of `variant`, spread over the concurrent clients.
async fn workload(f: &Fixture, variant: Variant, n: u64) {
    let pool = f.pool(variant);
    let per_client = n.div_ceil(clients() as u64);
    let tasks = (0..clients())
        .map(|c| async move {
            for k in 0..per_client {
                let role = if variant.mixed() {
                    (c + k as usize) % 2
                } else {
                    0
                };
                let tx = pool
                    .begin(&f.roles[role], ScopeOptions::default().read_only(true))
                    .await
                    .unwrap();
                let rows = tx.query(QUERY, &[]).await.unwrap();
                assert_eq!(rows.len(), 10);
                tx.commit().await.unwrap();
            }
        })
        .collect::<Vec<_>>();
    futures_util::future::join_all(tasks).await;
}

fn criterion_benches(c: &mut Criterion) {
    let f = fixture();
    let mut group = c.benchmark_group("role_mix");
    for variant in VARIANTS {
        group.bench_function(variant.name(), |b| {
            b.iter_custom(|iters| {
                // Whole rounds of the clients: scaled back to `iters` transactions.
                let n = iters.max(1).div_ceil(clients() as u64) * clients() as u64;
                f.rt.block_on(async {
                    let start = Instant::now();
                    workload(&f, variant, n).await;
                    start.elapsed().mul_f64(iters as f64 / n as f64)
                })
            });
        });
    }
    group.finish();
    // `cargo test --bench role_mix` (CI's "does it still run"): criterion ran each variant once.
    let args: Vec<String> = std::env::args().collect();
    if args.iter().any(|arg| arg == "--test") || !args.iter().any(|arg| arg == "--bench") {
        return;
    }
    ratios(&f);
}

/// Interleaved rounds (so load changes hit every variant alike): time per transaction and the
/// share of affine checkouts, then mixed ÷ single with affinity on and off.
fn ratios(f: &Fixture) {
    const ROUNDS: usize = 5;
    const PER_ROUND: u64 = 2000;
    let mut total = [Duration::ZERO; 4];
    let mut mixed_on_stats = (0, 0);
    f.rt.block_on(async {
        for _ in 0..ROUNDS {
            for (i, variant) in VARIANTS.into_iter().enumerate() {
                let stats = f.on.affinity_stats();
                let start = Instant::now();
                workload(f, variant, PER_ROUND).await;
                total[i] += start.elapsed();
                if variant == Variant::MixedOn {
                    let after = f.on.affinity_stats();
                    mixed_on_stats.0 += after.affine - stats.affine;
                    mixed_on_stats.1 += after.checkouts - stats.checkouts;
                }
                settle(f.pool(variant)).await;
            }
        }
    });
    let per_tx: Vec<f64> = total
        .iter()
        .map(|t| t.as_secs_f64() * 1e6 / (ROUNDS as u64 * PER_ROUND) as f64)
        .collect();
    println!(
        "\nrole_mix: {} transactions per variant in {ROUNDS} interleaved rounds, {} clients, pool {}",
        ROUNDS as u64 * PER_ROUND,
        clients(),
        pool_size()
    );
    println!("{:<12} {:>12} {:>10}", "variant", "µs per tx", "tx/s");
    for (i, variant) in VARIANTS.into_iter().enumerate() {
        println!(
            "{:<12} {:>12.1} {:>10.0}",
            variant.name(),
            per_tx[i],
            1e6 / per_tx[i]
        );
    }
    println!(
        "mixed ÷ single: affinity on {:.2}×, off {:.2}×; affine checkouts (mixed, on): {:.0} %",
        per_tx[1] / per_tx[0],
        per_tx[3] / per_tx[2],
        100.0 * mixed_on_stats.0 as f64 / mixed_on_stats.1.max(1) as f64
    );
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4))
        .sample_size(20);
    targets = criterion_benches
}

/// `ROLE_MIX_COUNT=<variant>:<n>`: `n` transactions of one variant, for counting the server's
/// instructions under callgrind; prints the pool's backend pids first.
fn count_mode(spec: &str) {
    let (name, n) = spec.split_once(':').expect("ROLE_MIX_COUNT=<variant>:<n>");
    let n: u64 = n.parse().expect("a transaction count");
    let variant = VARIANTS
        .into_iter()
        .find(|v| v.name() == name)
        .expect("a variant name");
    let f = fixture();
    let pool = f.pool(variant);
    f.rt.block_on(async {
        let mut held = Vec::new();
        for _ in 0..pool_size() {
            let tx = pool
                .begin(&f.roles[0], ScopeOptions::default().read_only(true))
                .await
                .unwrap();
            let pid: i32 = tx
                .query_one("SELECT pg_backend_pid()", &[])
                .await
                .unwrap()
                .get(0);
            println!("backend {pid}");
            held.push(tx);
        }
        for tx in held {
            tx.commit().await.unwrap();
        }
        settle(pool).await;
        workload(&f, variant, n).await;
        settle(pool).await;
    });
    let stats = pool.affinity_stats();
    println!("affinity {} of {}", stats.affine, stats.checkouts);
}

fn main() {
    if let Ok(spec) = std::env::var("ROLE_MIX_COUNT") {
        count_mode(&spec);
        return;
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}
