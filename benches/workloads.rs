//! The guard's cost on realistic work (issue 18, item 5): for each workload the same SQL with the
//! same parameters on a raw pooled connection (the table owner: no RLS, no scoping) and through
//! the guard (`TenantPool::begin` + the statement + `commit`, RLS forced), in one criterion run,
//! same pool size, same throwaway server. The guard's fixed cost (transaction, scoping, policy
//! set-up) should weigh less as the statement's own work grows: the ratio falls along the table.
//!
//! `cargo bench --features postgres --bench workloads`
//!
//! Workloads (100 orgs; the principal's org is number 7; the guarded role is `authenticated`):
//! - `read_10`: `items … ORDER BY id LIMIT 10` (`benches/guard.rs`'s trivial read, the anchor);
//! - `page_100`: the same, a 100-row page (raw reads 100 neighbouring rows by the primary key,
//!   guarded the org's 100 rows through the policy's `(org_id, id)` index: other heap pages);
//! - `page_100_org`: a 100-row page `WHERE org_id = $1`: the same rows and plan on both sides;
//! - `join_page`: one project's 100 tasks joined to their project; `tasks` has no `org_id`: its
//!   policy checks the parent project's org (`EXISTS (… projects …)`);
//! - `join_aggregate`: per-project count and sum over the org's 1 000 tasks (the same join);
//! - `join_page_org`, `join_aggregate_org`: the same two statements over `org_tasks`, the same
//!   rows with their own `org_id` (kept equal to the project's by a composite foreign key) and a
//!   direct `org_id = (SELECT tenant_guard.org_id())` policy: no probe of the parent per row;
//! - `write_indexed`: one `INSERT` into `events` (primary key + a secondary `(org_id, created_at)`
//!   index; `WITH CHECK` policy), committed (autocommit for raw);
//! - `membership_page`: a 100-row page of `docs` whose policy is a membership check,
//!   `EXISTS (SELECT 1 FROM memberships WHERE user_id = auth.uid() AND org_id = docs.org_id)`
//!   (`memberships` itself under RLS, `user_id = auth.uid()`).
//!
//! `page_100_org`, the aggregate, the write and the membership page name the org as `$1` (an
//! unguarded app has to; with the guard the policy filters again) and the join page a project of
//! the org, so raw and guarded return the same rows; the two `items` reads have no filter (as in
//! `benches/guard.rs`: raw gets any 10/100 rows, guarded the org's through the policy's index).
//! Row counts are asserted on both sides.
//!
//! After criterion (with `--bench` only) the bench records 2 000 requests per variant in
//! interleaved rounds and prints the median ratio per workload (the curve, see `BENCHMARKS.md`).
//! `WORKLOADS_BENCH_COUNT=<workload>/<raw|guarded>:<n>` runs `n` requests of one variant and exits
//! (client instruction counts under callgrind). With the `http` feature, `pipeline/guarded:<n>`
//! counts `read_10` as an HTTP adapter runs it (`tenant_guard_http`: request trace, admission
//! with a fresh HS256 verification of the token, the handler's `TenantDb`, commit by status,
//! response headers stamped, trace finished) and `pipeline/verify:<n>` the verification alone.
//! The server-side instruction curve of the same workloads is `scripts/guard-workloads.sh`.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stdout,
    missing_docs
)]

use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group};
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime as PoolRuntime};
use tenant_guard::Principal;
use tenant_guard::postgres::tokio_postgres::types::ToSql;
use tenant_guard::postgres::tokio_postgres::{Config, NoTls};
use tenant_guard::postgres::{LoginPolicy, ScopeOptions, TenantPool, support};
use tenant_guard_testkit::{TestDatabase, TestIssuer, TestPostgres};
use tokio::runtime::Runtime;
use uuid::Uuid;

const POOL_SIZE: usize = 8;
const LOGIN: &str = "bench_authenticator";

/// Org number 7 of the 100.
const ORG: Uuid = Uuid::from_u128(0x0000_0000_0000_4000_8000_0000_0000_0007);
/// The principal's user id: a member of org 7 (and of two others) in `memberships`.
const USER: Uuid = Uuid::from_u128(0x5f1c_1d5e_0000_4000_8000_0000_0000_0001);

/// The workloads' schema and data; `scripts/guard-workloads.sh` loads the same file.
const SCHEMA: &str = include_str!("support/workloads.sql");

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Workload {
    Read10,
    Page100,
    PageOrg100,
    JoinPage,
    JoinAggregate,
    JoinPageOrg,
    JoinAggregateOrg,
    WriteIndexed,
    MembershipPage,
}

const WORKLOADS: [Workload; 9] = [
    Workload::Read10,
    Workload::Page100,
    Workload::PageOrg100,
    Workload::JoinPage,
    Workload::JoinAggregate,
    Workload::JoinPageOrg,
    Workload::JoinAggregateOrg,
    Workload::WriteIndexed,
    Workload::MembershipPage,
];

impl Workload {
    fn name(self) -> &'static str {
        match self {
            Self::Read10 => "read_10",
            Self::Page100 => "page_100",
            Self::PageOrg100 => "page_100_org",
            Self::JoinPage => "join_page",
            Self::JoinAggregate => "join_aggregate",
            Self::JoinPageOrg => "join_page_org",
            Self::JoinAggregateOrg => "join_aggregate_org",
            Self::WriteIndexed => "write_indexed",
            Self::MembershipPage => "membership_page",
        }
    }

    /// The statement, the same for raw and guarded (`scripts/guard-workloads.sh` sends the same
    /// text with `:org` for `$1`).
    fn sql(self) -> &'static str {
        match self {
            Self::Read10 => "SELECT id, org_id, name FROM items ORDER BY id LIMIT 10",
            Self::Page100 => "SELECT id, org_id, name FROM items ORDER BY id LIMIT 100",
            Self::PageOrg100 => {
                "SELECT id, org_id, name FROM items WHERE org_id = $1 ORDER BY id LIMIT 100"
            }
            // Project 7 is one of org 7's (100 tasks).
            Self::JoinPage => {
                "SELECT t.id, t.title, t.status, p.name FROM tasks t \
                 JOIN projects p ON p.id = t.project_id \
                 WHERE t.project_id = 7 ORDER BY t.id LIMIT 100"
            }
            Self::JoinAggregate => {
                "SELECT p.id, p.name, count(*), sum(t.estimate) FROM projects p \
                 JOIN tasks t ON t.project_id = p.id \
                 WHERE p.org_id = $1 GROUP BY p.id, p.name ORDER BY p.id"
            }
            Self::JoinPageOrg => {
                "SELECT t.id, t.title, t.status, p.name FROM org_tasks t \
                 JOIN projects p ON p.id = t.project_id \
                 WHERE t.project_id = 7 ORDER BY t.id LIMIT 100"
            }
            Self::JoinAggregateOrg => {
                "SELECT p.id, p.name, count(*), sum(t.estimate) FROM projects p \
                 JOIN org_tasks t ON t.project_id = p.id \
                 WHERE p.org_id = $1 GROUP BY p.id, p.name ORDER BY p.id"
            }
            Self::WriteIndexed => "INSERT INTO events (org_id, note) VALUES ($1, 'bench')",
            Self::MembershipPage => {
                "SELECT id, org_id, title FROM docs WHERE org_id = $1 ORDER BY id LIMIT 100"
            }
        }
    }

    fn takes_org(self) -> bool {
        !matches!(
            self,
            Self::Read10 | Self::Page100 | Self::JoinPage | Self::JoinPageOrg
        )
    }

    fn is_write(self) -> bool {
        self == Self::WriteIndexed
    }

    /// Rows returned (or written, for the write).
    fn rows(self) -> usize {
        match self {
            Self::Read10 | Self::JoinAggregate | Self::JoinAggregateOrg => 10,
            Self::Page100
            | Self::PageOrg100
            | Self::JoinPage
            | Self::JoinPageOrg
            | Self::MembershipPage => 100,
            Self::WriteIndexed => 1,
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Side {
    Raw,
    Guarded,
}

impl Side {
    fn name(self) -> &'static str {
        match self {
            Self::Raw => "raw",
            Self::Guarded => "guarded",
        }
    }
}

struct Fixture {
    rt: Runtime,
    guarded: TenantPool,
    raw: Pool,
    principal: Principal,
    /// The principal's token as an `Authorization` header, and the issuer's verifier.
    #[cfg_attr(not(feature = "http"), allow(dead_code))]
    token: (http::HeaderMap, tenant_guard::Verifier),
    // Dropped last: the database, then the server.
    _db: TestDatabase,
    _server: TestPostgres,
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
        .principal(ORG, &USER.to_string(), "authenticated")
        .unwrap();
    let mut headers = http::HeaderMap::new();
    headers.insert(
        http::header::AUTHORIZATION,
        format!(
            "Bearer {}",
            issuer.token(ORG, &USER.to_string(), "authenticated")
        )
        .parse()
        .unwrap(),
    );
    let token = (headers, issuer.verifier().clone());
    let (guarded, raw) = rt.block_on(async {
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
        let guarded = TenantPool::builder(login)
            .max_size(POOL_SIZE)
            .login_policy(LoginPolicy::Refuse)
            .build()
            .unwrap();
        (guarded, deadpool(db.config().clone()))
    });
    let f = Fixture {
        rt,
        guarded,
        raw,
        principal,
        token,
        _db: db,
        _server: server,
    };
    // Open every connection of both pools and prepare every statement on each.
    f.rt.block_on(async {
        for _ in 0..2 {
            let all: Vec<_> = (0..POOL_SIZE)
                .flat_map(|_| variants())
                .map(|(w, s)| run(&f, w, s))
                .collect();
            futures_util::future::join_all(all).await;
        }
    });
    f
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

fn variants() -> impl Iterator<Item = (Workload, Side)> {
    WORKLOADS
        .into_iter()
        .flat_map(|w| [(w, Side::Raw), (w, Side::Guarded)])
}

/// One request of `workload` on `side`.
async fn run(f: &Fixture, workload: Workload, side: Side) {
    let org: &(dyn ToSql + Sync) = &ORG;
    let params: &[&(dyn ToSql + Sync)] = if workload.takes_org() {
        std::slice::from_ref(&org)
    } else {
        &[]
    };
    let rows = match side {
        Side::Raw => {
            let client = f.raw.get().await.unwrap();
            let statement = client.prepare_cached(workload.sql()).await.unwrap();
            if workload.is_write() {
                client.execute(&statement, params).await.unwrap() as usize
            } else {
                client.query(&statement, params).await.unwrap().len()
            }
        }
        Side::Guarded => {
            let options = ScopeOptions::default()
                .request_id("bench")
                .read_only(!workload.is_write());
            let tx = f.guarded.begin(&f.principal, options).await.unwrap();
            let rows = if workload.is_write() {
                tx.execute(workload.sql(), params).await.unwrap() as usize
            } else {
                tx.query(workload.sql(), params).await.unwrap().len()
            };
            tx.commit().await.unwrap();
            rows
        }
    };
    assert_eq!(rows, workload.rows(), "{} {}", workload.name(), side.name());
}

fn criterion_benches(c: &mut Criterion) {
    let f = fixture();
    let mut group = c.benchmark_group("workloads");
    for (workload, side) in variants() {
        group.bench_function(format!("{}/{}", workload.name(), side.name()), |b| {
            b.iter_custom(|iters| {
                f.rt.block_on(async {
                    let start = Instant::now();
                    for _ in 0..iters {
                        run(&f, workload, side).await;
                    }
                    start.elapsed()
                })
            });
        });
    }
    group.finish();
    let args: Vec<String> = std::env::args().collect();
    if args.iter().any(|arg| arg == "--test") || !args.iter().any(|arg| arg == "--bench") {
        return;
    }
    curve(&f);
}

/// Medians of every variant from interleaved rounds (a load change hits raw and guarded alike),
/// and each workload's guarded ÷ raw.
fn curve(f: &Fixture) {
    const ROUNDS: usize = 4;
    const PER_ROUND: usize = 500;
    let all: Vec<_> = variants().collect();
    let mut samples: Vec<Vec<Duration>> = vec![Vec::new(); all.len()];
    f.rt.block_on(async {
        for _ in 0..ROUNDS {
            for (i, &(workload, side)) in all.iter().enumerate() {
                for _ in 0..PER_ROUND {
                    let start = Instant::now();
                    run(f, workload, side).await;
                    samples[i].push(start.elapsed());
                }
            }
        }
    });
    let median = |i: usize| {
        let s = &mut samples[i];
        s.sort();
        s[s.len() / 2]
    };
    let medians: Vec<Duration> = (0..all.len()).map(median).collect();
    println!(
        "\nworkloads: {} requests per variant in {ROUNDS} interleaved rounds, pool {POOL_SIZE}",
        ROUNDS * PER_ROUND
    );
    println!("| workload | raw median | guarded median | guarded ÷ raw |");
    println!("|---|---|---|---|");
    for (k, workload) in WORKLOADS.into_iter().enumerate() {
        let (raw, guarded) = (medians[2 * k], medians[2 * k + 1]);
        println!(
            "| `{}` | {:.1} µs | {:.1} µs | {:.2}× |",
            workload.name(),
            raw.as_secs_f64() * 1e6,
            guarded.as_secs_f64() * 1e6,
            guarded.as_secs_f64() / raw.as_secs_f64()
        );
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .sample_size(20);
    targets = criterion_benches
}

/// `WORKLOADS_BENCH_COUNT=<workload>/<raw|guarded>:<n>`: `n` sequential requests of one variant,
/// then exit (two runs with different `n` under callgrind give one request's client cost).
fn count_mode(spec: &str) {
    let (name, n) = spec
        .split_once(':')
        .expect("WORKLOADS_BENCH_COUNT=<workload>/<raw|guarded>:<n>");
    let n: usize = n.parse().expect("a request count");
    #[cfg(feature = "http")]
    if let Some(what) = name.strip_prefix("pipeline/") {
        pipeline::count(what, n);
        return;
    }
    let (workload, side) = variants()
        .find(|(w, s)| format!("{}/{}", w.name(), s.name()) == name)
        .expect("a variant name: <workload>/<raw|guarded>");
    let f = fixture();
    f.rt.block_on(async {
        for _ in 0..n {
            run(&f, workload, side).await;
        }
    });
}

/// `read_10` the way an HTTP adapter runs it through `tenant_guard_http` (count mode only).
#[cfg(feature = "http")]
mod pipeline {
    use tenant_guard::http::{GuardConfig, ReadOnly, RequestTrace, commits};

    use super::{Fixture, Workload, fixture};

    async fn request(f: &Fixture, config: &GuardConfig, response: &mut http::HeaderMap) {
        let headers = &f.token.0;
        let (trace, timer) = RequestTrace::reuse_or_start(None, headers, Some("/items"));
        let admitted = config.admit(headers, &trace, None).resolve().await.unwrap();
        let (context, finisher) = admitted.into_parts();
        {
            let db = context.db::<ReadOnly>().unwrap();
            let rows = db.query(Workload::Read10.sql(), &[]).await.unwrap();
            assert_eq!(rows.len(), 10);
        }
        drop(context);
        assert!(
            finisher
                .finish(commits(http::StatusCode::OK))
                .await
                .is_none()
        );
        response.clear();
        finisher.stamp(response);
        RequestTrace::finish(timer, 200);
    }

    pub(super) fn count(what: &str, n: usize) {
        let f = fixture();
        let config = GuardConfig::new(f.token.1.clone()).pool(f.guarded.clone());
        let mut response = http::HeaderMap::with_capacity(8);
        f.rt.block_on(async {
            for _ in 0..n {
                match what {
                    "guarded" => request(&f, &config, &mut response).await,
                    "verify" => {
                        std::hint::black_box(f.token.1.authenticate(&f.token.0).unwrap());
                    }
                    _ => panic!("pipeline/guarded or pipeline/verify"),
                }
            }
        });
    }
}

fn main() {
    if let Ok(spec) = std::env::var("WORKLOADS_BENCH_COUNT") {
        count_mode(&spec);
        return;
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}
