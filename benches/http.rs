//! End-to-end HTTP load on loopback: the reference apps (`reference_axum`, `reference_actix`)
//! against the same framework with the guard replaced by a raw pooled query and no
//! authentication (`examples/bench_baseline_unguarded.rs`), in the same run, same process
//! settings (`DB_POOL_SIZE`, `RUST_LOG=warn`, default runtimes), same data.
//!
//! `scripts/bench.sh` builds the example binaries and runs this; by hand:
//!
//!     cargo build --release --features full --examples
//!     cargo bench --features full --bench http
//!
//! Measured, each as requests per second, p50 and p99 with `HTTP_BENCH_CONNS` keep-alive
//! connections (a small HTTP/1.1 client over tokio, `benches/support/loadgen.rs`):
//! - `GET /projects` with valid HS256 tokens from 50 orgs (10 rows each) vs the baseline (the same
//!   rows by `WHERE org_id = $1`), in interleaved rounds; ratios against the baseline;
//! - a rejected request (bad signature) vs an accepted one on the same app, and a check that
//!   rejected requests never touch the pool: an app that has only rejected requests has opened no
//!   database connection (asserted through `pg_stat_activity`), and one accepted request then
//!   opens one (so the check can fail);
//! - the guarded axum app with pool sizes `HTTP_BENCH_POOL_SIZES` (default `4,8,16,32,64`).
//!
//! Settings (environment): `HTTP_BENCH_SECS` per variant and round (default 5),
//! `HTTP_BENCH_ROUNDS` (3), `HTTP_BENCH_CONNS` (32), `HTTP_BENCH_POOL` (16),
//! `HTTP_BENCH_POOL_SIZES`, `HTTP_BENCH_OUT` (append the markdown tables to this file),
//! `HTTP_BENCH_SESSION_RESET` (the guarded apps' `SESSION_RESET`: `check`, the default,
//! `discard_all` or `dangerous_none`, to measure the session reset's share end to end).
//! Run without `--bench` (`cargo test --benches`) or with `--test`: a quick "does it still run"
//! pass with a few requests per variant, no timing.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stdout,
    clippy::print_stderr,
    missing_docs
)]

#[path = "support/loadgen.rs"]
mod loadgen;

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use loadgen::{AppProcess, Connection, example_binary, hs256_token, percentile};
use tenant_guard::postgres::tokio_postgres::Client;
use tenant_guard_testkit::{TestDatabase, TestPostgres};
use uuid::Uuid;

const SECRET: &str = "http-bench-secret-0123456789abcdef-0123456789";
const WRONG_SECRET: &str = "not-the-secret-0123456789abcdef-0123456789ab";
const ORGS: usize = 50;
const ROWS_PER_ORG: usize = 10;
const BASELINE_OPT_IN: (&str, &str) = (
    "TENANT_GUARD_BENCH_BASELINE",
    "unguarded-and-unauthenticated",
);

struct Settings {
    quick: bool,
    budget: Budget,
    rounds: usize,
    conns: usize,
    pool: usize,
    pool_sizes: Vec<usize>,
    out: Option<PathBuf>,
}

#[derive(Clone, Copy)]
enum Budget {
    /// Each connection sends this many requests (quick mode).
    Requests(usize),
    /// Every connection sends requests for this long.
    Time(Duration),
}

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(default)
}

fn settings() -> Settings {
    let args: Vec<String> = std::env::args().collect();
    let bench = args.iter().any(|a| a == "--bench");
    let test = args.iter().any(|a| a == "--test");
    let quick = !bench || test;
    let pool_sizes = std::env::var("HTTP_BENCH_POOL_SIZES")
        .unwrap_or_else(|_| "4,8,16,32,64".to_owned())
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    if quick {
        return Settings {
            quick,
            budget: Budget::Requests(10),
            rounds: 1,
            conns: 4,
            pool: 4,
            pool_sizes: vec![4],
            out: None,
        };
    }
    Settings {
        quick,
        budget: Budget::Time(Duration::from_secs_f64(env_or("HTTP_BENCH_SECS", 5.0))),
        rounds: env_or("HTTP_BENCH_ROUNDS", 3),
        conns: env_or("HTTP_BENCH_CONNS", 32),
        pool: env_or("HTTP_BENCH_POOL", 16),
        pool_sizes,
        out: std::env::var_os("HTTP_BENCH_OUT").map(PathBuf::from),
    }
}

/// What one request of a variant looks like.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kind {
    /// A valid token of org `i % 50`.
    Accepted,
    /// The same token shape signed with the wrong secret.
    Rejected,
    /// No token; the org in `x-bench-org` (the unguarded baseline).
    Baseline,
}

impl Kind {
    fn expected_status(self) -> u16 {
        match self {
            Self::Accepted | Self::Baseline => 200,
            Self::Rejected => 401,
        }
    }
}

/// Per-org request headers for each kind.
struct Requests {
    orgs: Vec<Uuid>,
    good: Vec<String>,
    bad: Vec<String>,
}

impl Requests {
    fn new() -> Self {
        let orgs: Vec<Uuid> = (0..ORGS)
            .map(|i| Uuid::from_u128(0xb0b0_0000_0000_4000_8000_0000_0000_0000 + i as u128))
            .collect();
        let good = orgs
            .iter()
            .enumerate()
            .map(|(i, org)| {
                format!(
                    "Bearer {}",
                    hs256_token(SECRET, *org, &format!("user-{i}"), 0)
                )
            })
            .collect();
        let bad = orgs
            .iter()
            .enumerate()
            .map(|(i, org)| {
                format!(
                    "Bearer {}",
                    hs256_token(WRONG_SECRET, *org, &format!("user-{i}"), 0)
                )
            })
            .collect();
        Self { orgs, good, bad }
    }

    fn header(&self, kind: Kind, i: usize) -> (&'static str, String) {
        let org = i % ORGS;
        match kind {
            Kind::Accepted => ("authorization", self.good[org].clone()),
            Kind::Rejected => ("authorization", self.bad[org].clone()),
            Kind::Baseline => ("x-bench-org", self.orgs[org].to_string()),
        }
    }
}

/// The outcome of one load run.
#[derive(Default)]
struct Stats {
    ok: u64,
    unexpected: u64,
    io_errors: u64,
    elapsed: Duration,
    latencies: Vec<Duration>,
}

impl Stats {
    fn merge(&mut self, other: Stats) {
        self.ok += other.ok;
        self.unexpected += other.unexpected;
        self.io_errors += other.io_errors;
        self.elapsed += other.elapsed;
        self.latencies.extend(other.latencies);
    }

    fn rps(&self) -> f64 {
        self.ok as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    fn finish(&mut self) -> (Duration, Duration) {
        self.latencies.sort_unstable();
        (
            percentile(&self.latencies, 0.5),
            percentile(&self.latencies, 0.99),
        )
    }
}

/// `conns` keep-alive connections sending `GET /projects` of `kind` until the budget is spent.
async fn load(
    addr: SocketAddr,
    kind: Kind,
    conns: usize,
    budget: Budget,
    reqs: &Requests,
) -> Stats {
    // Headers prepared up front: the client does as little as possible per request.
    let headers: Vec<(&'static str, String)> = (0..ORGS).map(|i| reqs.header(kind, i)).collect();
    let headers = &headers;
    let start = Instant::now();
    let deadline = match budget {
        Budget::Time(d) => Some(start + d),
        Budget::Requests(_) => None,
    };
    let clients = (0..conns).map(|c| async move {
        let mut stats = Stats::default();
        let mut conn: Option<Connection> = None;
        let mut i = c;
        loop {
            match budget {
                Budget::Requests(n)
                    if stats.ok + stats.unexpected + stats.io_errors >= n as u64 =>
                {
                    break;
                }
                _ => {}
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                break;
            }
            if conn.as_ref().is_none_or(Connection::is_closed) {
                conn = match Connection::connect(addr).await {
                    Ok(c) => Some(c),
                    Err(_) => {
                        stats.io_errors += 1;
                        continue;
                    }
                };
            }
            let Some(c) = conn.as_mut() else { continue };
            let (name, value) = &headers[i % ORGS];
            i += 1;
            let sent = Instant::now();
            match c.request("GET", "/projects", &[(name, value)], b"").await {
                Ok(r) if r.status == kind.expected_status() => {
                    stats.latencies.push(sent.elapsed());
                    stats.ok += 1;
                }
                Ok(r) => {
                    if stats.unexpected == 0 {
                        eprintln!(
                            "http bench: {kind:?}: unexpected status {} ({})",
                            r.status,
                            String::from_utf8_lossy(&r.body)
                        );
                    }
                    stats.unexpected += 1;
                }
                Err(_) => {
                    stats.io_errors += 1;
                    conn = None;
                }
            }
        }
        stats
    });
    let results = futures_util::future::join_all(clients).await;
    let elapsed = start.elapsed();
    let mut total = Stats::default();
    for s in results {
        total.merge(s);
    }
    total.elapsed = elapsed;
    total
}

/// One request of `kind` for org 0, its body checked: 10 rows of that org (or a 401).
async fn check_once(addr: SocketAddr, kind: Kind, reqs: &Requests) {
    let mut conn = Connection::connect(addr).await.unwrap();
    let (name, value) = reqs.header(kind, 0);
    let r = conn
        .request("GET", "/projects", &[(name, &value)], b"")
        .await
        .unwrap();
    assert_eq!(
        r.status,
        kind.expected_status(),
        "{kind:?}: {}",
        String::from_utf8_lossy(&r.body)
    );
    if kind != Kind::Rejected {
        let rows: Vec<serde_json::Value> = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(rows.len(), ROWS_PER_ORG, "{kind:?}: {rows:?}");
        let org = reqs.orgs[0].to_string();
        assert!(rows.iter().all(|row| row["org_id"] == org.as_str()));
    }
}

/// `HTTP_BENCH_SESSION_RESET`: the guarded apps' `SESSION_RESET` (default `check`).
fn session_reset() -> String {
    std::env::var("HTTP_BENCH_SESSION_RESET").unwrap_or_else(|_| "check".to_owned())
}

fn start_guarded(example: &str, db: &TestDatabase, pool: usize) -> AppProcess {
    let pool = pool.to_string();
    let reset = session_reset();
    AppProcess::start(
        &example_binary(example).unwrap_or_else(|e| panic!("{e}")),
        &[],
        &[
            ("APP_ENV", "test"),
            ("JWT_SECRET", SECRET),
            ("DATABASE_URL", db.url()),
            ("DB_POOL_SIZE", &pool),
            ("SESSION_RESET", &reset),
        ],
    )
    .unwrap_or_else(|e| panic!("{e}"))
}

fn start_baseline(framework: &str, db: &TestDatabase, pool: usize) -> AppProcess {
    let pool = pool.to_string();
    AppProcess::start(
        &example_binary("bench_baseline_unguarded").unwrap_or_else(|e| panic!("{e}")),
        &[framework],
        &[
            ("APP_ENV", "test"),
            ("DATABASE_URL", db.url()),
            ("DB_POOL_SIZE", &pool),
            BASELINE_OPT_IN,
        ],
    )
    .unwrap_or_else(|e| panic!("{e}"))
}

/// Backends connected to `db`'s database, other than the asking connection.
async fn backends(admin: &Client) -> i64 {
    admin
        .query_one(
            "SELECT count(*) FROM pg_stat_activity \
             WHERE datname = current_database() AND pid <> pg_backend_pid() \
             AND backend_type = 'client backend'",
            &[],
        )
        .await
        .unwrap()
        .get(0)
}

/// Waits (bounded) until the backend count is stable and returns it.
async fn settled_backends(admin: &Client) -> i64 {
    let mut last = backends(admin).await;
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let now = backends(admin).await;
        if now == last {
            return now;
        }
        last = now;
    }
    last
}

fn us(d: Duration) -> String {
    format!("{:.0} µs", d.as_secs_f64() * 1e6)
}

fn main() {
    let s = settings();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let server = TestPostgres::start().expect("a throwaway PostgreSQL (see the testkit)");
    let reqs = Requests::new();
    let mut report = String::new();
    let machine = format!(
        "{} CPUs, load average {}",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        std::fs::read_to_string("/proc/loadavg")
            .unwrap_or_default()
            .split(' ')
            .take(3)
            .collect::<Vec<_>>()
            .join(" ")
    );
    let budget_text = match s.budget {
        Budget::Time(d) => format!("{:.1} s", d.as_secs_f64()),
        Budget::Requests(n) => format!("{n} requests"),
    };
    writeln!(
        report,
        "### End to end: `GET /projects` (HTTP/1.1 keep-alive, loopback)\n\n\
         {} connections, {} rounds × {budget_text} per variant, pool {} (each app), {ORGS} orgs × \
         {ROWS_PER_ORG} rows, guarded apps with `SESSION_RESET={}`; {machine}{}.\n",
        s.conns,
        s.rounds,
        s.pool,
        session_reset(),
        if s.quick {
            " — QUICK MODE, not a measurement"
        } else {
            ""
        }
    )
    .unwrap();
    writeln!(
        report,
        "| app | variant | requests | req/s | p50 | p99 | req/s ÷ baseline | p99 ÷ baseline |\n|---|---|---|---|---|---|---|---|"
    )
    .unwrap();

    rt.block_on(async {
        // --- Accepted vs the unguarded baseline, both frameworks, interleaved rounds. ---
        let db = server.create_database_async().await.unwrap();
        let apps = [
            ("axum", start_guarded("reference_axum", &db, s.pool), start_baseline("axum", &db, s.pool)),
            ("actix", start_guarded("reference_actix", &db, s.pool), start_baseline("actix", &db, s.pool)),
        ];
        let admin = db.connect().await.unwrap();
        for org in &reqs.orgs {
            for n in 0..ROWS_PER_ORG {
                admin
                    .execute(
                        "INSERT INTO projects (org_id, name, created_by) VALUES ($1, $2, 'bench')",
                        &[org, &format!("project {n}")],
                    )
                    .await
                    .unwrap();
            }
        }
        admin.batch_execute("ANALYZE projects").await.unwrap();
        for (_, guarded, baseline) in &apps {
            check_once(guarded.addr, Kind::Accepted, &reqs).await;
            check_once(baseline.addr, Kind::Baseline, &reqs).await;
            // Warm-up: fill the pools and prepared statements.
            load(guarded.addr, Kind::Accepted, s.conns, Budget::Requests(20), &reqs).await;
            load(baseline.addr, Kind::Baseline, s.conns, Budget::Requests(20), &reqs).await;
        }
        let mut results: Vec<[Stats; 2]> = apps.iter().map(|_| Default::default()).collect();
        for _ in 0..s.rounds {
            for (i, (_, guarded, baseline)) in apps.iter().enumerate() {
                results[i][0].merge(load(guarded.addr, Kind::Accepted, s.conns, s.budget, &reqs).await);
                results[i][1].merge(load(baseline.addr, Kind::Baseline, s.conns, s.budget, &reqs).await);
            }
        }
        let mut accepted_p50 = Vec::new();
        for ((name, _, _), [guarded, baseline]) in apps.iter().zip(results.iter_mut()) {
            let (bp50, bp99) = baseline.finish();
            let (gp50, gp99) = guarded.finish();
            accepted_p50.push((gp50, guarded.rps()));
            for (variant, st, p50, p99) in [
                ("guarded (token, RLS)", &*guarded, gp50, gp99),
                ("unguarded baseline", &*baseline, bp50, bp99),
            ] {
                assert_eq!(st.unexpected + st.io_errors, 0, "{name} {variant}: failed requests");
                writeln!(
                    report,
                    "| {name} | {variant} | {} | {:.0} | {} | {} | {:.2}× | {:.2}× |",
                    st.ok,
                    st.rps(),
                    us(p50),
                    us(p99),
                    st.rps() / baseline.rps(),
                    p99.as_secs_f64() / bp99.as_secs_f64().max(1e-9),
                )
                .unwrap();
            }
        }
        drop(apps);

        // --- Rejected requests (bad signature): cost, and the pool is never touched. ---
        let fresh = server.create_database_async().await.unwrap();
        let monitor = fresh.connect().await.unwrap();
        writeln!(
            report,
            "\n### Rejected request (bad signature) vs accepted\n\n\
             Same connections and rounds; each app started on a fresh database and sent only \
             rejected requests first: database connections opened meanwhile (pg_stat_activity) \
             must be 0.\n\n\
             | app | requests | req/s | p50 | p99 | p50 ÷ accepted p50 | req/s ÷ accepted | connections opened by rejected requests |\n\
             |---|---|---|---|---|---|---|---|"
        )
        .unwrap();
        for (i, example) in ["reference_axum", "reference_actix"].into_iter().enumerate() {
            let app = start_guarded(example, &fresh, s.pool);
            let before = settled_backends(&monitor).await;
            let mut rejected = Stats::default();
            for _ in 0..s.rounds {
                rejected.merge(load(app.addr, Kind::Rejected, s.conns, s.budget, &reqs).await);
            }
            let after = settled_backends(&monitor).await;
            assert_eq!(rejected.unexpected + rejected.io_errors, 0, "{example}: rejected run failed");
            assert_eq!(
                after, before,
                "{example}: rejected requests opened database connections ({before} → {after})"
            );
            // The probe can fail: one accepted request does open a pooled connection.
            let mut conn = Connection::connect(app.addr).await.unwrap();
            let (name, value) = reqs.header(Kind::Accepted, 0);
            let r = conn.request("GET", "/projects", &[(name, &value)], b"").await.unwrap();
            assert_eq!(r.status, 200);
            let used = settled_backends(&monitor).await;
            assert!(used > before, "{example}: an accepted request opened no connection");
            let (p50, p99) = rejected.finish();
            let (accepted_p50, accepted_rps) = accepted_p50[i];
            writeln!(
                report,
                "| {example} | {} | {:.0} | {} | {} | {:.2}× | {:.2}× | {} |",
                rejected.ok,
                rejected.rps(),
                us(p50),
                us(p99),
                p50.as_secs_f64() / accepted_p50.as_secs_f64().max(1e-9),
                rejected.rps() / accepted_rps.max(1e-9),
                after - before,
            )
            .unwrap();
        }

        // --- Pool size (guarded axum app). ---
        let conns = if s.quick { s.conns } else { s.conns.max(64) };
        writeln!(
            report,
            "\n### Pool size (reference_axum, {conns} connections)\n\n\
             | pool | requests | req/s | p50 | p99 |\n|---|---|---|---|---|"
        )
        .unwrap();
        for &pool in &s.pool_sizes {
            let app = start_guarded("reference_axum", &db, pool);
            load(app.addr, Kind::Accepted, conns, Budget::Requests(20), &reqs).await;
            let mut st = Stats::default();
            for _ in 0..s.rounds {
                st.merge(load(app.addr, Kind::Accepted, conns, s.budget, &reqs).await);
            }
            assert_eq!(st.unexpected + st.io_errors, 0, "pool {pool}: failed requests");
            let (p50, p99) = st.finish();
            writeln!(
                report,
                "| {pool} | {} | {:.0} | {} | {} |",
                st.ok,
                st.rps(),
                us(p50),
                us(p99)
            )
            .unwrap();
        }
    });

    println!("\n{report}");
    if let Some(out) = &s.out {
        use std::io::Write as _;
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(out)
            .unwrap();
        writeln!(file, "{report}").unwrap();
    }
}
