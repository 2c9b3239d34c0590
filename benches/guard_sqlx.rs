//! The sqlx backend's cost: guarded vs raw pooled sqlx reads and writes in one run, on the
//! schema of `benches/guard.rs` (RLS table, 100 000 rows over 100 orgs), with the tokio-postgres
//! guard's read in the same run for comparison.
//!
//! `cargo bench --bench guard_sqlx --features full`
//!
//! Variants (pools of 8; sqlx's default pool options, so both raw and guarded ping on acquire):
//! - `raw_read`: the query on a plain sqlx pool (table owner: no RLS, no scoping);
//! - `guarded_read_only`: `SqlxGuard::begin(.., read_only)` + the query + commit, on a pool from
//!   `tenant_guard_sqlx::pool_options()` (with the session-reset release hook);
//! - `guarded_read_only_no_reset`: the same on a pool without the release hook (its cost);
//! - `guarded_read_write`: read-write transaction;
//! - `raw_write` / `guarded_write`: one `INSERT` (autocommit vs a guarded transaction);
//! - `tokio_postgres_guarded_read_only`: `TenantPool` (tokio-postgres guard), same query.
//!
//! Criterion reports each mean; the bench then records 2 000 requests per variant in 4
//! interleaved rounds and prints the median and p99 with their ratios to the raw variant.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stdout,
    missing_docs
)]

use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group};
use sqlx::PgPool;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use tenant_guard::Principal;
use tenant_guard::postgres::{LoginPolicy, ScopeOptions, TenantPool, support};
use tenant_guard::sqlx::SqlxGuard;
use tenant_guard_testkit::{TestDatabase, TestIssuer, TestPostgres};
use tokio::runtime::Runtime;
use uuid::Uuid;

const POOL_SIZE: u32 = 8;
const LOGIN: &str = "bench_sqlx_authenticator";
const QUERY: &str = "SELECT id, org_id, name FROM items ORDER BY id LIMIT 10";
const RAW_INSERT: &str = "INSERT INTO events (org_id, note) VALUES ($1, 'bench')";
const GUARDED_INSERT: &str = "INSERT INTO events (note) VALUES ('bench')";
const SCHEMA: &str = "
CREATE TABLE items (id bigserial PRIMARY KEY, org_id uuid NOT NULL, name text NOT NULL);
INSERT INTO items (org_id, name)
    SELECT ('00000000-0000-4000-8000-' || lpad((g % 100)::text, 12, '0'))::uuid, 'item ' || g
      FROM generate_series(1, 100000) g;
CREATE INDEX items_org_id_id ON items (org_id, id);
ALTER TABLE items ENABLE ROW LEVEL SECURITY;
ALTER TABLE items FORCE ROW LEVEL SECURITY;
CREATE POLICY items_org ON items FOR ALL TO authenticated
    USING (org_id = (SELECT tenant_guard.org_id()))
    WITH CHECK (org_id = (SELECT tenant_guard.org_id()));
GRANT SELECT ON items TO authenticated;
CREATE TABLE events (id bigserial PRIMARY KEY, org_id uuid NOT NULL DEFAULT tenant_guard.org_id(),
                     note text NOT NULL);
ALTER TABLE events ENABLE ROW LEVEL SECURITY;
CREATE POLICY events_org ON events FOR ALL TO authenticated
    USING (org_id = (SELECT tenant_guard.org_id()))
    WITH CHECK (org_id = (SELECT tenant_guard.org_id()));
GRANT SELECT, INSERT ON events TO authenticated;
GRANT USAGE ON SEQUENCE events_id_seq TO authenticated;
ANALYZE items;
";
const ORG: Uuid = Uuid::from_u128(0x0000_0000_0000_4000_8000_0000_0000_0007);

struct Fixture {
    rt: Runtime,
    raw: PgPool,
    guarded: SqlxGuard,
    no_reset: SqlxGuard,
    tokio_postgres: TenantPool,
    principal: Principal,
    _db: TestDatabase,
    _server: TestPostgres,
}

#[derive(Clone, Copy, Debug)]
enum Variant {
    RawRead,
    GuardedReadOnly,
    GuardedReadOnlyNoReset,
    GuardedReadWrite,
    RawWrite,
    GuardedWrite,
    TokioPostgresGuardedReadOnly,
}

const VARIANTS: [Variant; 7] = [
    Variant::RawRead,
    Variant::GuardedReadOnly,
    Variant::GuardedReadOnlyNoReset,
    Variant::GuardedReadWrite,
    Variant::RawWrite,
    Variant::GuardedWrite,
    Variant::TokioPostgresGuardedReadOnly,
];

impl Variant {
    fn name(self) -> &'static str {
        match self {
            Self::RawRead => "raw_read",
            Self::GuardedReadOnly => "guarded_read_only",
            Self::GuardedReadOnlyNoReset => "guarded_read_only_no_reset",
            Self::GuardedReadWrite => "guarded_read_write",
            Self::RawWrite => "raw_write",
            Self::GuardedWrite => "guarded_write",
            Self::TokioPostgresGuardedReadOnly => "tokio_postgres_guarded_read_only",
        }
    }

    fn baseline(self) -> Self {
        match self {
            Self::RawWrite | Self::GuardedWrite => Self::RawWrite,
            _ => Self::RawRead,
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
    let principal = TestIssuer::new()
        .principal(ORG, &Uuid::new_v4().to_string(), "authenticated")
        .unwrap();
    let (raw, guarded, no_reset, tokio_postgres) = rt.block_on(async {
        let admin = db.connect().await.unwrap();
        admin
            .batch_execute(&format!("CREATE ROLE {LOGIN} LOGIN NOINHERIT"))
            .await
            .unwrap();
        support::apply_support_sql_with(&admin, Some(LOGIN), SCHEMA)
            .await
            .unwrap();
        let owner: PgConnectOptions = db.url().parse().unwrap();
        let login = owner.clone().username(LOGIN);
        let raw = PgPoolOptions::new()
            .max_connections(POOL_SIZE)
            .connect_with(owner)
            .await
            .unwrap();
        let guarded = tenant_guard::sqlx::pool_options()
            .max_connections(POOL_SIZE)
            .connect_with(login.clone())
            .await
            .unwrap();
        let no_reset = PgPoolOptions::new()
            .max_connections(POOL_SIZE)
            .connect_with(login)
            .await
            .unwrap();
        let mut config = db.config().clone();
        config.user(LOGIN);
        let tokio_postgres = TenantPool::builder(config)
            .max_size(POOL_SIZE as usize)
            .login_policy(LoginPolicy::Refuse)
            .build()
            .unwrap();
        (
            raw,
            SqlxGuard::new(guarded),
            SqlxGuard::new(no_reset),
            tokio_postgres,
        )
    });
    let f = Fixture {
        rt,
        raw,
        guarded,
        no_reset,
        tokio_postgres,
        principal,
        _db: db,
        _server: server,
    };
    f.rt.block_on(async {
        for _ in 0..50 {
            for v in VARIANTS {
                run(&f, v).await;
            }
        }
    });
    f
}

async fn guarded_read(guard: &SqlxGuard, principal: &Principal, read_only: bool) {
    let mut tx = guard
        .begin(principal, ScopeOptions::default().read_only(read_only))
        .await
        .unwrap();
    let rows = sqlx::query(QUERY).fetch_all(&mut *tx).await.unwrap();
    assert_eq!(rows.len(), 10);
    tx.commit().await.unwrap();
}

async fn run(f: &Fixture, v: Variant) {
    match v {
        Variant::RawRead => {
            let rows = sqlx::query(QUERY).fetch_all(&f.raw).await.unwrap();
            assert_eq!(rows.len(), 10);
        }
        Variant::GuardedReadOnly => guarded_read(&f.guarded, &f.principal, true).await,
        Variant::GuardedReadOnlyNoReset => guarded_read(&f.no_reset, &f.principal, true).await,
        Variant::GuardedReadWrite => guarded_read(&f.guarded, &f.principal, false).await,
        Variant::RawWrite => {
            sqlx::query(RAW_INSERT)
                .bind(ORG)
                .execute(&f.raw)
                .await
                .unwrap();
        }
        Variant::GuardedWrite => {
            let mut tx = f
                .guarded
                .begin(&f.principal, ScopeOptions::default())
                .await
                .unwrap();
            sqlx::query(GUARDED_INSERT).execute(&mut *tx).await.unwrap();
            tx.commit().await.unwrap();
        }
        Variant::TokioPostgresGuardedReadOnly => {
            let tx = f
                .tokio_postgres
                .begin(&f.principal, ScopeOptions::default().read_only(true))
                .await
                .unwrap();
            assert_eq!(tx.query(QUERY, &[]).await.unwrap().len(), 10);
            tx.commit().await.unwrap();
        }
    }
}

fn bench(c: &mut Criterion) {
    let f = fixture();
    let mut group = c.benchmark_group("guard_sqlx");
    for v in VARIANTS {
        group.bench_function(v.name(), |b| {
            b.iter_custom(|iters| {
                f.rt.block_on(async {
                    let start = Instant::now();
                    for _ in 0..iters {
                        run(&f, v).await;
                    }
                    start.elapsed()
                })
            });
        });
    }
    group.finish();
    if std::env::args().any(|a| a == "--bench") {
        latency_table(&f);
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

/// Interleaved rounds, so load changes hit every variant alike; median and p99 with ratios.
fn latency_table(f: &Fixture) {
    const ROUNDS: usize = 4;
    const PER_ROUND: usize = 500;
    let mut samples: Vec<Vec<Duration>> = vec![Vec::new(); VARIANTS.len()];
    for _ in 0..ROUNDS {
        for (i, v) in VARIANTS.iter().enumerate() {
            f.rt.block_on(async {
                for _ in 0..PER_ROUND {
                    let started = Instant::now();
                    run(f, *v).await;
                    samples[i].push(started.elapsed());
                }
            });
        }
    }
    let stats: Vec<(Duration, Duration)> = samples
        .iter_mut()
        .map(|s| {
            s.sort();
            (percentile(s, 0.5), percentile(s, 0.99))
        })
        .collect();
    println!("| variant | median | p99 | median ÷ raw | p99 ÷ raw |");
    println!("|---|---|---|---|---|");
    for (i, v) in VARIANTS.iter().enumerate() {
        let base = VARIANTS
            .iter()
            .position(|b| b.name() == v.baseline().name())
            .unwrap();
        let (m, p) = stats[i];
        let (bm, bp) = stats[base];
        println!(
            "| `{}` | {:.1} µs | {:.1} µs | {:.2}× | {:.2}× |",
            v.name(),
            m.as_secs_f64() * 1e6,
            p.as_secs_f64() * 1e6,
            m.as_secs_f64() / bm.as_secs_f64(),
            p.as_secs_f64() / bp.as_secs_f64()
        );
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(20)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    targets = bench
}

fn main() {
    benches();
    Criterion::default().configure_from_args().final_summary();
}
