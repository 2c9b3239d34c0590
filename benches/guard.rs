//! Guard latency and throughput: a guarded `SELECT … LIMIT 10` on an RLS table against the same
//! query on a raw pooled connection with no scoping, in the same run, same pool size, on a
//! throwaway local server from the testkit.
//!
//! `cargo bench --bench guard --features postgres`
//!
//! Variants (pool of 8 connections each, deadpool FIFO, prepared statements cached per connection):
//! - `raw_read`: the query on a plain deadpool connection (the table owner: no RLS, no scoping);
//! - `guarded_read_only`: `TenantPool::begin(.., read_only)` + the query + `commit` (BEGIN READ ONLY,
//!   the scoping and the query sent in one pipeline; COMMIT queued, not awaited);
//! - `guarded_read_write`: the same in a read-write transaction (COMMIT awaited);
//! - `naive_read`: each step awaited in turn (BEGIN, SET LOCAL ROLE, set_config, query, COMMIT),
//!   the way the seeds and PostgREST do it;
//! - `raw_write` / `guarded_write`: one `INSERT` (autocommit vs a guarded transaction);
//! - `*_no_reset` / `*_discard_all`: `guarded_read_only` and `guarded_write` on pools with
//!   `SessionReset::DangerousNone` (no session reset, as before issue 17) and
//!   `SessionReset::DiscardAll` (`DISCARD ALL` and the statement cache dropped after every
//!   transaction); the plain variants use the default `SessionReset::Check`. A second table gives
//!   each reset's ratio to no reset.
//! - `raw_read_unnamed`: `raw_read` as an unnamed statement (`query_typed`): planned every time;
//! - `guarded_unnamed`: `guarded_read_only` with `Pooler::Transaction` (unnamed statements), direct:
//!   the cost of pooler mode itself (re-planning the scoping statement and the query);
//! - `raw_read_pgbouncer` / `guarded_pgbouncer`: `raw_read_unnamed` / `guarded_unnamed` through a
//!   testkit PgBouncer (`pool_mode = transaction`, `default_pool_size` = the pool size) in front
//!   of the same server (skipped, with a note, when PgBouncer is not installed).
//!
//! Ratios: reads against `raw_read`, writes against `raw_write`, `guarded_pgbouncer` against
//! `raw_read_pgbouncer` (the `vs` column says which).
//!
//! Criterion measures the mean per request (sequential requests); a second pass records every
//! request's latency for the median and p99, and a third runs 8 concurrent clients for throughput.
//! Results and method: `BENCHMARKS.md`.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stdout,
    missing_docs
)]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group};
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime as PoolRuntime};
use tenant_guard::Principal;
use tenant_guard::postgres::tokio_postgres::{Config, NoTls};
use tenant_guard::postgres::{
    LoginPolicy, Pooler, ScopeOptions, SessionReset, TenantPool, support,
};
use tenant_guard_testkit::{
    PgBouncerOptions, TestDatabase, TestIssuer, TestPgBouncer, TestPostgres,
};
use tokio::runtime::Runtime;
use uuid::Uuid;

const POOL_SIZE: usize = 8;
const CLIENTS: usize = 8;
const LOGIN: &str = "bench_authenticator";
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

/// Org number 7 of the 100 in `items`.
const ORG: Uuid = Uuid::from_u128(0x0000_0000_0000_4000_8000_0000_0000_0007);

struct Fixture {
    rt: Runtime,
    guarded: TenantPool,
    no_reset: TenantPool,
    discard_all: TenantPool,
    guarded_unnamed: TenantPool,
    raw: Pool,
    naive: Pool,
    /// The pools through PgBouncer, when it is installed.
    bounced: Option<(TenantPool, Pool)>,
    principal: Principal,
    // Dropped last: PgBouncer, the database, then the server.
    _bouncer: Option<TestPgBouncer>,
    _db: TestDatabase,
    _server: TestPostgres,
}

impl Fixture {
    fn variants(&self) -> Vec<Variant> {
        VARIANTS
            .into_iter()
            .filter(|v| self.bounced.is_some() || !v.through_pgbouncer())
            .collect()
    }
}

fn deadpool(config: Config) -> Pool {
    let manager = Manager::from_config(
        config,
        NoTls,
        ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        },
    );
    Pool::builder(manager)
        .max_size(POOL_SIZE)
        .runtime(PoolRuntime::Tokio1)
        .build()
        .unwrap()
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
    let principal = issuer
        .principal(ORG, &Uuid::new_v4().to_string(), "authenticated")
        .unwrap();
    let bouncer = match TestPgBouncer::start(
        &server,
        PgBouncerOptions::default()
            .default_pool_size(POOL_SIZE as u32)
            .user(LOGIN),
    ) {
        Ok(bouncer) => Some(bouncer),
        Err(error) => {
            println!("guard bench: no PgBouncer, skipping the pgbouncer variants ({error})");
            None
        }
    };
    let (guarded, no_reset, discard_all, guarded_unnamed, raw, naive, bounced) =
        rt.block_on(async {
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
            let guarded = |reset| {
                TenantPool::builder(login.clone())
                    .max_size(POOL_SIZE)
                    .login_policy(LoginPolicy::Refuse)
                    .session_reset(reset)
                    .build()
                    .unwrap()
            };
            let guarded_unnamed = TenantPool::builder(login.clone())
                .pooler(Pooler::Transaction)
                .max_size(POOL_SIZE)
                .login_policy(LoginPolicy::Refuse)
                .build()
                .unwrap();
            let bounced = bouncer.as_ref().map(|bouncer| {
                let mut bounced_login = bouncer.config(&db);
                bounced_login.user(LOGIN);
                let guarded = TenantPool::builder(bounced_login)
                    .pooler(Pooler::Transaction)
                    .max_size(POOL_SIZE)
                    .login_policy(LoginPolicy::Refuse)
                    .build()
                    .unwrap();
                (guarded, deadpool(bouncer.config(&db)))
            });
            // The raw baseline logs in as the table owner: no RLS, no scoping.
            (
                guarded(SessionReset::Check),
                guarded(SessionReset::DangerousNone),
                guarded(SessionReset::DiscardAll),
                guarded_unnamed,
                deadpool(db.config().clone()),
                deadpool(login),
                bounced,
            )
        });
    let f = Fixture {
        rt,
        guarded,
        no_reset,
        discard_all,
        guarded_unnamed,
        raw,
        naive,
        bounced,
        principal,
        _bouncer: bouncer,
        _db: db,
        _server: server,
    };
    // Open every connection of every pool and prepare the statements.
    f.rt.block_on(async {
        for _ in 0..4 {
            let mut all = Vec::new();
            for _ in 0..POOL_SIZE {
                for v in f.variants() {
                    all.push(run(&f, v));
                }
            }
            futures_util::future::join_all(all).await;
        }
    });
    f
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Variant {
    RawRead,
    GuardedReadOnly,
    GuardedReadWrite,
    NaiveRead,
    RawWrite,
    GuardedWrite,
    ReadOnlyNoReset,
    ReadOnlyDiscardAll,
    WriteNoReset,
    WriteDiscardAll,
    RawReadUnnamed,
    GuardedUnnamed,
    RawReadPgBouncer,
    GuardedPgBouncer,
}

const VARIANTS: [Variant; 14] = [
    Variant::RawRead,
    Variant::GuardedReadOnly,
    Variant::GuardedReadWrite,
    Variant::NaiveRead,
    Variant::RawWrite,
    Variant::GuardedWrite,
    Variant::ReadOnlyNoReset,
    Variant::ReadOnlyDiscardAll,
    Variant::WriteNoReset,
    Variant::WriteDiscardAll,
    Variant::RawReadUnnamed,
    Variant::GuardedUnnamed,
    Variant::RawReadPgBouncer,
    Variant::GuardedPgBouncer,
];

/// (variant, its no-reset counterpart) for the reset table.
const RESET_PAIRS: [(Variant, Variant); 4] = [
    (Variant::GuardedReadOnly, Variant::ReadOnlyNoReset),
    (Variant::ReadOnlyDiscardAll, Variant::ReadOnlyNoReset),
    (Variant::GuardedWrite, Variant::WriteNoReset),
    (Variant::WriteDiscardAll, Variant::WriteNoReset),
];

impl Variant {
    fn name(self) -> &'static str {
        match self {
            Self::RawRead => "raw_read",
            Self::GuardedReadOnly => "guarded_read_only",
            Self::GuardedReadWrite => "guarded_read_write",
            Self::NaiveRead => "naive_read",
            Self::RawWrite => "raw_write",
            Self::GuardedWrite => "guarded_write",
            Self::ReadOnlyNoReset => "read_only_no_reset",
            Self::ReadOnlyDiscardAll => "read_only_discard_all",
            Self::WriteNoReset => "write_no_reset",
            Self::WriteDiscardAll => "write_discard_all",
            Self::RawReadUnnamed => "raw_read_unnamed",
            Self::GuardedUnnamed => "guarded_unnamed",
            Self::RawReadPgBouncer => "raw_read_pgbouncer",
            Self::GuardedPgBouncer => "guarded_pgbouncer",
        }
    }

    fn through_pgbouncer(self) -> bool {
        matches!(self, Self::RawReadPgBouncer | Self::GuardedPgBouncer)
    }

    /// The variant its ratios are computed against.
    fn base(self) -> Self {
        match self {
            Self::RawWrite | Self::GuardedWrite | Self::WriteNoReset | Self::WriteDiscardAll => {
                Self::RawWrite
            }
            Self::GuardedPgBouncer => Self::RawReadPgBouncer,
            _ => Self::RawRead,
        }
    }

    fn index(self) -> usize {
        VARIANTS.iter().position(|v| *v == self).unwrap()
    }
}

/// One request of `variant`.
async fn run(f: &Fixture, variant: Variant) {
    match variant {
        Variant::RawRead => {
            let client = f.raw.get().await.unwrap();
            let statement = client.prepare_cached(QUERY).await.unwrap();
            let rows = client.query(&statement, &[]).await.unwrap();
            assert_eq!(rows.len(), 10);
        }
        Variant::GuardedReadOnly
        | Variant::GuardedReadWrite
        | Variant::ReadOnlyNoReset
        | Variant::ReadOnlyDiscardAll => {
            let options = ScopeOptions::default()
                .request_id("bench")
                .read_only(variant != Variant::GuardedReadWrite);
            let pool = match variant {
                Variant::ReadOnlyNoReset => &f.no_reset,
                Variant::ReadOnlyDiscardAll => &f.discard_all,
                _ => &f.guarded,
            };
            let tx = pool.begin(&f.principal, options).await.unwrap();
            let rows = tx.query(QUERY, &[]).await.unwrap();
            assert_eq!(rows.len(), 10);
            tx.commit().await.unwrap();
        }
        Variant::NaiveRead => {
            let client = f.naive.get().await.unwrap();
            let scope = client
                .prepare_cached(
                    "SELECT set_config('request.jwt.claims', $1, true),
                            set_config('request.jwt.claim.sub', $2, true),
                            set_config('tenant_guard.org_id', $3, true)",
                )
                .await
                .unwrap();
            let statement = client.prepare_cached(QUERY).await.unwrap();
            client.batch_execute("BEGIN").await.unwrap();
            client
                .batch_execute("SET LOCAL ROLE authenticated")
                .await
                .unwrap();
            let org = f.principal.org_id().to_string();
            client
                .execute(
                    &scope,
                    &[&f.principal.claims_json(), &f.principal.user_id(), &org],
                )
                .await
                .unwrap();
            let rows = client.query(&statement, &[]).await.unwrap();
            assert_eq!(rows.len(), 10);
            client.batch_execute("COMMIT").await.unwrap();
        }
        Variant::RawWrite => {
            let client = f.raw.get().await.unwrap();
            let statement = client.prepare_cached(RAW_INSERT).await.unwrap();
            assert_eq!(client.execute(&statement, &[&ORG]).await.unwrap(), 1);
        }
        Variant::GuardedWrite | Variant::WriteNoReset | Variant::WriteDiscardAll => {
            let pool = match variant {
                Variant::WriteNoReset => &f.no_reset,
                Variant::WriteDiscardAll => &f.discard_all,
                _ => &f.guarded,
            };
            let tx = pool
                .begin(&f.principal, ScopeOptions::default().request_id("bench"))
                .await
                .unwrap();
            assert_eq!(tx.execute(GUARDED_INSERT, &[]).await.unwrap(), 1);
            tx.commit().await.unwrap();
        }
        Variant::RawReadUnnamed | Variant::RawReadPgBouncer => {
            let pool = match (variant, &f.bounced) {
                (Variant::RawReadPgBouncer, Some((_, raw))) => raw,
                _ => &f.raw,
            };
            let client = pool.get().await.unwrap();
            let rows = client.query_typed(QUERY, &[]).await.unwrap();
            assert_eq!(rows.len(), 10);
        }
        Variant::GuardedUnnamed | Variant::GuardedPgBouncer => {
            let pool = match (variant, &f.bounced) {
                (Variant::GuardedPgBouncer, Some((guarded, _))) => guarded,
                _ => &f.guarded_unnamed,
            };
            let options = ScopeOptions::default().request_id("bench").read_only(true);
            let tx = pool.begin(&f.principal, options).await.unwrap();
            let rows = tx.query(QUERY, &[]).await.unwrap();
            assert_eq!(rows.len(), 10);
            tx.commit().await.unwrap();
        }
    }
}

fn criterion_benches(c: &mut Criterion) {
    let f = fixture();
    let mut group = c.benchmark_group("guard");
    for variant in f.variants() {
        group.bench_function(variant.name(), |b| {
            b.iter_custom(|iters| {
                f.rt.block_on(async {
                    let start = Instant::now();
                    for _ in 0..iters {
                        run(&f, variant).await;
                    }
                    start.elapsed()
                })
            });
        });
    }
    group.finish();
    // `cargo test --bench guard` or `cargo bench -- --test` (CI's "does it still run"): criterion
    // ran each variant once; skip the timed passes.
    let args: Vec<String> = std::env::args().collect();
    if args.iter().any(|arg| arg == "--test") || !args.iter().any(|arg| arg == "--bench") {
        return;
    }
    distribution_and_throughput(&f);
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

/// Per-request latencies (interleaved rounds, so load changes hit every variant alike) and
/// throughput with [`CLIENTS`] concurrent clients.
fn distribution_and_throughput(f: &Fixture) {
    const ROUNDS: usize = 5;
    const PER_ROUND: usize = 1000;
    const THROUGHPUT_TIME: Duration = Duration::from_secs(2);
    let variants = f.variants();
    let mut samples: Vec<Vec<Duration>> = vec![Vec::new(); variants.len()];
    f.rt.block_on(async {
        for _ in 0..ROUNDS {
            for (i, &variant) in variants.iter().enumerate() {
                for _ in 0..PER_ROUND {
                    let start = Instant::now();
                    run(f, variant).await;
                    samples[i].push(start.elapsed());
                }
            }
        }
    });
    let mut throughput = vec![0f64; variants.len()];
    for (i, &variant) in variants.iter().enumerate() {
        let done = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        f.rt.block_on(async {
            let start = Instant::now();
            let clients: Vec<_> = (0..CLIENTS)
                .map(|_| {
                    let done = Arc::clone(&done);
                    let stop = Arc::clone(&stop);
                    async move {
                        while !stop.load(Ordering::Relaxed) {
                            run(f, variant).await;
                            done.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                })
                .collect();
            let timer = async {
                tokio::time::sleep(THROUGHPUT_TIME).await;
                stop.store(true, Ordering::Relaxed);
            };
            let (_, ()) = tokio::join!(futures_util::future::join_all(clients), timer);
            throughput[i] = done.load(Ordering::Relaxed) as f64 / start.elapsed().as_secs_f64();
        });
    }

    println!(
        "\nguard: {} requests per variant in {ROUNDS} interleaved rounds; throughput with {CLIENTS} clients, pool {POOL_SIZE}",
        ROUNDS * PER_ROUND
    );
    println!(
        "{:<20} {:>10} {:>10} {:>9} {:>9} {:>10} {:>9}  vs",
        "variant", "median", "p99", "med ×", "p99 ×", "req/s", "thr ×"
    );
    let stats: Vec<(Duration, Duration)> = samples
        .iter_mut()
        .map(|s| {
            s.sort();
            (percentile(s, 0.5), percentile(s, 0.99))
        })
        .collect();
    for (i, &variant) in variants.iter().enumerate() {
        let base = variants
            .iter()
            .position(|v| *v == variant.base())
            .unwrap_or(0);
        let (median, p99) = stats[i];
        println!(
            "{:<20} {:>8.1}µs {:>8.1}µs {:>8.2}× {:>8.2}× {:>10.0} {:>8.2}×  {}",
            variant.name(),
            median.as_secs_f64() * 1e6,
            p99.as_secs_f64() * 1e6,
            median.as_secs_f64() / stats[base].0.as_secs_f64(),
            p99.as_secs_f64() / stats[base].1.as_secs_f64(),
            throughput[i],
            throughput[i] / throughput[base],
            variant.base().name(),
        );
    }
    println!("\nsession reset (issue 17): each variant against the same requests with no reset");
    println!(
        "{:<24} {:>9} {:>9} {:>9}",
        "variant", "med ×", "p99 ×", "thr ×"
    );
    for (variant, base) in RESET_PAIRS {
        let (i, b) = (variant.index(), base.index());
        println!(
            "{:<24} {:>8.2}× {:>8.2}× {:>8.2}×",
            variant.name(),
            stats[i].0.as_secs_f64() / stats[b].0.as_secs_f64(),
            stats[i].1.as_secs_f64() / stats[b].1.as_secs_f64(),
            throughput[i] / throughput[b],
        );
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4))
        .sample_size(30);
    targets = criterion_benches
}
/// `GUARD_BENCH_COUNT=<variant>:<n>` runs `n` sequential requests of one variant and exits, for
/// counting the client's instructions per request under callgrind (noise-free):
///
/// ```text
/// GUARD_BENCH_COUNT=guarded_read_only:1000 valgrind --tool=callgrind target/release/deps/guard-…
/// ```
///
/// Two runs with different `n` give the cost of one request with start-up cancelled out.
fn count_mode(spec: &str) {
    let (name, n) = spec
        .split_once(':')
        .expect("GUARD_BENCH_COUNT=<variant>:<n>");
    let n: usize = n.parse().expect("a request count");
    let variant = VARIANTS
        .into_iter()
        .find(|v| v.name() == name)
        .expect("a variant name");
    let f = fixture();
    f.rt.block_on(async {
        for _ in 0..n {
            run(&f, variant).await;
        }
    });
}

fn main() {
    if let Ok(spec) = std::env::var("GUARD_BENCH_COUNT") {
        count_mode(&spec);
        return;
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}
