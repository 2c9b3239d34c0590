//! Load with isolation checking: many orgs and users drive one reference app at once, reads and
//! writes mixed, some requests cancelled by the client mid-way, and every response is checked.
//!
//! Each worker holds one keep-alive connection and sends requests of random users of random orgs
//! over it (so connection reuse across tenants is exercised on both sides): `GET /projects`,
//! `POST /projects` (with a foreign `org_id` in the body, which must be ignored),
//! `GET /projects/{id}` of its own acknowledged writes (must be 200, same org) and of other orgs'
//! (must be 404), `DELETE` of its own writes (must be 204), and cancellations (half a request, or a
//! whole request, then the connection dropped without reading). Checked on every response: every
//! row belongs to the caller's org. At the end, over HTTP and directly in the database: every
//! acknowledged write is there with its org and listed for it, every acknowledged delete is gone,
//! every row written by a cancelled request carries the org of its token, and no backend is left
//! `idle in transaction`.
//!
//! Bounded in requests and time (loopback only). The default is a short run for
//! `cargo test --workspace --features full`; `scripts/bench.sh` runs the long one with
//! `LOAD_ISOLATION_REQUESTS`, `LOAD_ISOLATION_CONCURRENCY`, `LOAD_ISOLATION_ORGS`,
//! `LOAD_ISOLATION_USERS`, `LOAD_ISOLATION_SECS` (the time bound) and `LOAD_ISOLATION_REPORT`
//! (append the report, markdown, to this file). Run with `--nocapture` to see the report.
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::print_stderr)]

#[path = "../benches/support/loadgen.rs"]
mod loadgen;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use loadgen::{AppProcess, Connection, Response, Rng, example_binary, hs256_token};
use tenant_guard_testkit::{PgBouncerOptions, TestPgBouncer, TestPostgres};
use uuid::Uuid;

const SECRET: &str = "load-isolation-secret-0123456789abcdef-01234";
/// A bound per request, so a stuck request fails the test instead of hanging it.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, Clone)]
struct Settings {
    requests: u64,
    concurrency: usize,
    orgs: usize,
    users: usize,
    time_bound: Duration,
    report: Option<std::path::PathBuf>,
}

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(default)
}

impl Settings {
    fn from_env() -> Self {
        Self {
            requests: env_or("LOAD_ISOLATION_REQUESTS", 1200),
            concurrency: env_or("LOAD_ISOLATION_CONCURRENCY", 12),
            orgs: env_or("LOAD_ISOLATION_ORGS", 24).max(2),
            users: env_or("LOAD_ISOLATION_USERS", 3).max(1),
            time_bound: Duration::from_secs(env_or("LOAD_ISOLATION_SECS", 180)),
            report: std::env::var_os("LOAD_ISOLATION_REPORT").map(Into::into),
        }
    }
}

/// The tenants: org ids and one token per (org, user).
struct Tenants {
    orgs: Vec<Uuid>,
    org_text: Vec<String>,
    /// `bearer[org][user]` = `"Bearer <token>"`.
    bearer: Vec<Vec<String>>,
}

impl Tenants {
    fn new(orgs: usize, users: usize) -> Self {
        let orgs: Vec<Uuid> = (0..orgs).map(|_| Uuid::new_v4()).collect();
        let bearer = orgs
            .iter()
            .enumerate()
            .map(|(o, org)| {
                (0..users)
                    .map(|u| {
                        format!(
                            "Bearer {}",
                            hs256_token(SECRET, *org, &format!("u{o}-{u}"), 0)
                        )
                    })
                    .collect()
            })
            .collect();
        Self {
            org_text: orgs.iter().map(Uuid::to_string).collect(),
            orgs,
            bearer,
        }
    }
}

/// An acknowledged write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum WriteState {
    /// Created (201) and not deleted.
    Live,
    /// Deleted (204).
    Deleted,
}

#[derive(Default)]
struct Counters {
    by_op: BTreeMap<&'static str, u64>,
    errors: BTreeMap<String, u64>,
    /// Rows or objects of another org seen in a response.
    cross_org_rows: u64,
    /// Acknowledged writes not readable by their org (or acknowledged deletes still there).
    lost_writes: u64,
    rows_checked: u64,
    cancelled: u64,
}

struct Shared {
    tenants: Tenants,
    budget: AtomicU64,
    deadline: Instant,
    /// Every acknowledged write: id → (org index, state).
    writes: Mutex<HashMap<Uuid, (usize, WriteState)>>,
    /// Ids in acknowledgement order (to pick another org's id at random).
    write_ids: Mutex<Vec<(Uuid, usize)>>,
    /// Names sent by cancelled creates, with the org of their token.
    cancelled_names: Mutex<Vec<(String, usize)>>,
    counters: Mutex<Counters>,
}

impl Shared {
    fn count(&self, op: &'static str) {
        *self.counters.lock().unwrap().by_op.entry(op).or_default() += 1;
    }

    fn error(&self, kind: String) {
        *self
            .counters
            .lock()
            .unwrap()
            .errors
            .entry(kind)
            .or_default() += 1;
    }

    fn cross_org(&self, n: u64, what: &str) {
        if n > 0 {
            eprintln!("load_isolation: CROSS-ORG: {what}");
            self.counters.lock().unwrap().cross_org_rows += n;
        }
    }

    fn lost(&self, what: &str) {
        eprintln!("load_isolation: LOST WRITE: {what}");
        self.counters.lock().unwrap().lost_writes += 1;
    }

    /// Checks a list of projects for `org`: returns the ids, counts foreign rows.
    fn check_rows(&self, org: usize, body: &[u8]) -> Option<Vec<Uuid>> {
        let Ok(rows) = serde_json::from_slice::<Vec<serde_json::Value>>(body) else {
            self.error("unparsable list body".into());
            return None;
        };
        let own = &self.tenants.org_text[org];
        let writes = self.writes.lock().unwrap();
        let mut ids = Vec::with_capacity(rows.len());
        let mut foreign = 0;
        for row in &rows {
            let id = row["id"].as_str().and_then(|s| s.parse::<Uuid>().ok());
            let wrong_field = row["org_id"].as_str() != Some(own.as_str());
            let wrong_known = id
                .and_then(|id| writes.get(&id))
                .is_some_and(|(o, _)| *o != org);
            if wrong_field || wrong_known {
                foreign += 1;
            }
            ids.extend(id);
        }
        drop(writes);
        self.counters.lock().unwrap().rows_checked += rows.len() as u64;
        self.cross_org(
            foreign,
            &format!("{foreign} foreign rows in a list for org {own}"),
        );
        Some(ids)
    }
}

/// One worker: a keep-alive connection, random users, random operations.
async fn worker(shared: Arc<Shared>, addr: std::net::SocketAddr, seed: u64) {
    let mut rng = Rng::new(seed);
    let mut conn: Option<Connection> = None;
    // This worker's own acknowledged writes: (id, org, live). Only the writer reads back or
    // deletes its writes, so "acknowledged and live" is known without races.
    let mut mine: Vec<(Uuid, usize, bool)> = Vec::new();
    let mut seq = 0u64;
    let orgs = shared.tenants.orgs.len();
    let users = shared.tenants.bearer[0].len();
    loop {
        if Instant::now() >= shared.deadline {
            shared.error("time bound reached".into());
            return;
        }
        if shared
            .budget
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
            .is_err()
        {
            return;
        }
        if conn.as_ref().is_none_or(Connection::is_closed) {
            match Connection::connect(addr).await {
                Ok(c) => conn = Some(c),
                Err(e) => {
                    shared.error(format!("connect: {e}"));
                    continue;
                }
            }
        }
        let Some(c) = conn.as_mut() else { continue };
        let org = rng.below(orgs);
        let bearer = shared.tenants.bearer[org][rng.below(users)].as_str();
        let roll = rng.below(100);
        let live: Vec<usize> = (0..mine.len()).filter(|&i| mine[i].2).collect();
        let outcome = match roll {
            0..40 => {
                shared.count("list");
                let r = send(c, "GET", "/projects", bearer, b"").await;
                expect(&shared, "list", r, 200).map(|r| {
                    shared.check_rows(org, &r.body);
                })
            }
            40..65 => {
                shared.count("create");
                seq += 1;
                let name = format!("lt-{org}-{seed}-{seq}");
                // A foreign org in the body: the contract says it is ignored.
                let foreign = &shared.tenants.org_text[(org + 1) % orgs];
                let body = serde_json::json!({"name": name, "org_id": foreign}).to_string();
                let r = send(c, "POST", "/projects", bearer, body.as_bytes()).await;
                expect(&shared, "create", r, 201).map(|r| {
                    let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap_or_default();
                    let id = v["id"].as_str().and_then(|s| s.parse::<Uuid>().ok());
                    if v["org_id"].as_str() != Some(shared.tenants.org_text[org].as_str()) {
                        shared.cross_org(1, &format!("create answered {v}"));
                    }
                    match id {
                        Some(id) => {
                            shared
                                .writes
                                .lock()
                                .unwrap()
                                .insert(id, (org, WriteState::Live));
                            shared.write_ids.lock().unwrap().push((id, org));
                            mine.push((id, org, true));
                        }
                        None => shared.error("create: no id".into()),
                    }
                })
            }
            65..78 if !live.is_empty() => {
                shared.count("read own write");
                let (id, owner, _) = mine[live[rng.below(live.len())]];
                let bearer = shared.tenants.bearer[owner][rng.below(users)].as_str();
                let r = send(c, "GET", &format!("/projects/{id}"), bearer, b"").await;
                match r {
                    Ok(r) if r.status == 404 => {
                        shared.lost(&format!("acknowledged {id} not readable by its org"));
                        Some(())
                    }
                    r => expect(&shared, "read own write", r, 200).map(|r| {
                        let v: serde_json::Value =
                            serde_json::from_slice(&r.body).unwrap_or_default();
                        if v["org_id"].as_str() != Some(shared.tenants.org_text[owner].as_str()) {
                            shared.cross_org(1, &format!("read own write answered {v}"));
                        }
                    }),
                }
            }
            78..88 => {
                let pick = {
                    let ids = shared.write_ids.lock().unwrap();
                    (!ids.is_empty()).then(|| ids[rng.below(ids.len())])
                };
                match pick {
                    Some((id, owner)) if owner != org => {
                        shared.count("read foreign id");
                        let r = send(c, "GET", &format!("/projects/{id}"), bearer, b"").await;
                        match r {
                            Ok(r) if r.status == 200 => {
                                shared.cross_org(1, &format!("org {org} read {id} of org {owner}"));
                                Some(())
                            }
                            r => expect(&shared, "read foreign id", r, 404).map(|_| ()),
                        }
                    }
                    _ => {
                        shared.count("list");
                        let r = send(c, "GET", "/projects", bearer, b"").await;
                        expect(&shared, "list", r, 200).map(|r| {
                            shared.check_rows(org, &r.body);
                        })
                    }
                }
            }
            88..93 if !live.is_empty() => {
                shared.count("delete own write");
                let i = live[rng.below(live.len())];
                let (id, owner, _) = mine[i];
                let bearer = shared.tenants.bearer[owner][rng.below(users)].as_str();
                let r = send(c, "DELETE", &format!("/projects/{id}"), bearer, b"").await;
                match r {
                    Ok(r) if r.status == 404 => {
                        shared.lost(&format!("acknowledged {id} not deletable by its org"));
                        Some(())
                    }
                    r => expect(&shared, "delete own write", r, 204).map(|_| {
                        mine[i].2 = false;
                        if let Some(w) = shared.writes.lock().unwrap().get_mut(&id) {
                            w.1 = WriteState::Deleted;
                        }
                    }),
                }
            }
            93..100 => {
                // Cancelled by the client: half a request, or all of it, then the connection is
                // dropped without reading the answer.
                shared.count("cancelled");
                shared.counters.lock().unwrap().cancelled += 1;
                seq += 1;
                let name = format!("lt-{org}-{seed}-{seq}-cancelled");
                let body = serde_json::json!({ "name": name }).to_string();
                let (method, path, body) = if rng.below(2) == 0 {
                    shared.cancelled_names.lock().unwrap().push((name, org));
                    ("POST", "/projects", body.into_bytes())
                } else {
                    ("GET", "/projects", Vec::new())
                };
                let fraction = if rng.below(2) == 0 { 0.5 } else { 1.0 };
                let headers = [
                    ("authorization", bearer),
                    ("content-type", "application/json"),
                ];
                let _ = c
                    .send_partial(method, path, &headers, &body, fraction)
                    .await;
                if fraction >= 1.0 && rng.below(2) == 0 {
                    // Sometimes give the server a moment to start the handler first.
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
                conn = None;
                continue;
            }
            _ => {
                shared.count("list");
                let r = send(c, "GET", "/projects", bearer, b"").await;
                expect(&shared, "list", r, 200).map(|r| {
                    shared.check_rows(org, &r.body);
                })
            }
        };
        if outcome.is_none() {
            // Transport error or unexpected status: start over on a new connection.
            conn = None;
        }
    }
}

type Sent = Result<Response, String>;

async fn send(c: &mut Connection, method: &str, path: &str, bearer: &str, body: &[u8]) -> Sent {
    let headers = [
        ("authorization", bearer),
        ("content-type", "application/json"),
    ];
    match tokio::time::timeout(REQUEST_TIMEOUT, c.request(method, path, &headers, body)).await {
        Ok(Ok(r)) => Ok(r),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err("timeout".into()),
    }
}

/// `Some(response)` when it has the expected status; otherwise counts the error.
fn expect(shared: &Shared, op: &str, r: Sent, status: u16) -> Option<Response> {
    match r {
        Ok(r) if r.status == status => Some(r),
        Ok(r) => {
            let body = String::from_utf8_lossy(&r.body);
            eprintln!("load_isolation: {op}: status {} {body}", r.status);
            shared.error(format!("{op}: status {}", r.status));
            None
        }
        Err(e) => {
            shared.error(format!("{op}: {e}"));
            None
        }
    }
}

/// Runs the whole scenario against `example` and returns the report; panics on any violation.
/// How the app reaches PostgreSQL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Route {
    Direct,
    /// Through a PgBouncer in `pool_mode = transaction` with [`BOUNCER_SERVER_CONNECTIONS`]
    /// server connections, the app's pool of [`BOUNCER_CLIENT_CONNECTIONS`] in
    /// `DB_POOLER=transaction` mode.
    PgBouncer,
}

const BOUNCER_SERVER_CONNECTIONS: u32 = 2;
const BOUNCER_CLIENT_CONNECTIONS: &str = "16";

fn run(example: &str) -> String {
    run_via(example, Route::Direct)
}

fn run_via(example: &str, route: Route) -> String {
    run_with(example, route, "postgres")
}

/// [`run_via`] with `DB_BACKEND=backend` (`postgres` or `sqlx`).
fn run_with(example: &str, route: Route, backend: &str) -> String {
    let settings = Settings::from_env();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let server = TestPostgres::shared().expect("test PostgreSQL");
    let database = server.create_database().expect("test database");
    let bouncer = (route == Route::PgBouncer).then(|| {
        TestPgBouncer::start(
            server,
            PgBouncerOptions::default().default_pool_size(BOUNCER_SERVER_CONNECTIONS),
        )
        .expect("PgBouncer (Debian: apt-get install pgbouncer)")
    });
    let url = match &bouncer {
        Some(bouncer) => bouncer.url(&database),
        None => database.url().to_owned(),
    };
    let mut vars = vec![
        ("APP_ENV", "test"),
        ("JWT_SECRET", SECRET),
        ("DATABASE_URL", url.as_str()),
        ("DB_BACKEND", backend),
    ];
    if bouncer.is_some() {
        vars.extend([
            ("DB_POOLER", "transaction"),
            ("DB_POOL_SIZE", BOUNCER_CLIENT_CONNECTIONS),
        ]);
    } else {
        vars.push(("DB_POOL_SIZE", "8"));
    }
    let app = AppProcess::start(
        &example_binary(example).unwrap_or_else(|e| panic!("{e}")),
        &[],
        &vars,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let shared = Arc::new(Shared {
        tenants: Tenants::new(settings.orgs, settings.users),
        budget: AtomicU64::new(settings.requests),
        deadline: Instant::now() + settings.time_bound,
        writes: Mutex::default(),
        write_ids: Mutex::default(),
        cancelled_names: Mutex::default(),
        counters: Mutex::default(),
    });
    let started = Instant::now();
    rt.block_on(async {
        let workers =
            (0..settings.concurrency).map(|w| worker(Arc::clone(&shared), app.addr, 1 + w as u64));
        futures_util::future::join_all(workers).await;
    });
    let elapsed = started.elapsed();
    let final_checks = rt.block_on(final_checks(&shared, &app, &database));

    let counters = shared.counters.lock().unwrap();
    let writes = shared.writes.lock().unwrap();
    let acked = writes.len();
    let deleted = writes
        .values()
        .filter(|(_, s)| *s == WriteState::Deleted)
        .count();
    let sent: u64 = counters.by_op.values().sum();
    let errors: u64 = counters.errors.values().sum();
    let mut report = String::new();
    let via = match route {
        Route::Direct => "pool 8".to_owned(),
        Route::PgBouncer => format!(
            "through PgBouncer {}.{} (`pool_mode = transaction`, {BOUNCER_SERVER_CONNECTIONS} \
             server connections) with `DB_POOLER=transaction` and a pool of \
             {BOUNCER_CLIENT_CONNECTIONS} client connections",
            bouncer.as_ref().map_or(0, |b| b.version().0),
            bouncer.as_ref().map_or(0, |b| b.version().1),
        ),
    };
    let app_log = app.stderr();
    let prepared_errors = app_log.matches("prepared statement").count();
    let errors_total: u64 = counters.errors.values().sum();
    if errors_total > 0 {
        for line in app_log
            .lines()
            .filter(|l| l.contains("WARN") || l.contains("ERROR"))
            .take(20)
        {
            eprintln!("load_isolation: app log: {line}");
        }
    }
    writeln!(
        report,
        "### Load with isolation checking: {example}{}\n\n\
         {} orgs × {} users, {} concurrent keep-alive connections (users of every org share them), \
         {sent} requests in {:.1} s ({:.0} req/s, {} build), {via}.\n\n\
         | what | count |\n|---|---|",
        if route == Route::PgBouncer {
            " behind PgBouncer"
        } else {
            ""
        },
        settings.orgs,
        settings.users,
        settings.concurrency,
        elapsed.as_secs_f64(),
        sent as f64 / elapsed.as_secs_f64().max(1e-9),
        if cfg!(debug_assertions) {
            "debug"
        } else {
            "optimized"
        },
    )
    .unwrap();
    for (op, n) in &counters.by_op {
        writeln!(report, "| requests: {op} | {n} |").unwrap();
    }
    writeln!(
        report,
        "| rows checked in lists | {} |",
        counters.rows_checked
    )
    .unwrap();
    writeln!(report, "| acknowledged writes (201) | {acked} |").unwrap();
    writeln!(report, "| acknowledged deletes (204) | {deleted} |").unwrap();
    writeln!(
        report,
        "| cancelled by the client | {} |",
        counters.cancelled
    )
    .unwrap();
    writeln!(
        report,
        "| rows written by cancelled creates (committed before the drop) | {} |",
        final_checks.cancelled_rows
    )
    .unwrap();
    writeln!(report, "| errors (all kinds) | {errors} |").unwrap();
    for (kind, n) in &counters.errors {
        writeln!(report, "| error: {kind} | {n} |").unwrap();
    }
    writeln!(
        report,
        "| **cross-org rows seen** | **{}** |",
        counters.cross_org_rows
    )
    .unwrap();
    writeln!(
        report,
        "| **cross-org rows in the database** | **{}** |",
        final_checks.cross_org_in_db
    )
    .unwrap();
    writeln!(
        report,
        "| **lost acknowledged writes** | **{}** |",
        counters.lost_writes
    )
    .unwrap();
    writeln!(
        report,
        "| backends left in a transaction (or still active) after the run | {} |",
        final_checks.idle_in_tx
    )
    .unwrap();
    writeln!(
        report,
        "| `prepared statement` errors in the app's log | {prepared_errors} |"
    )
    .unwrap();
    writeln!(
        report,
        "| server connections to the database after the run | {} |",
        final_checks.backends
    )
    .unwrap();
    eprintln!("\n{report}");
    if let Some(path) = &settings.report {
        use std::io::Write as _;
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .unwrap();
        writeln!(file, "{report}").unwrap();
    }

    assert_eq!(counters.cross_org_rows, 0, "cross-org rows seen\n{report}");
    assert_eq!(
        final_checks.cross_org_in_db, 0,
        "cross-org rows in the database\n{report}"
    );
    assert_eq!(
        counters.lost_writes, 0,
        "lost acknowledged writes\n{report}"
    );
    assert_eq!(
        final_checks.idle_in_tx, 0,
        "backends idle in transaction\n{report}"
    );
    assert_eq!(errors, 0, "errors\n{report}");
    assert_eq!(prepared_errors, 0, "prepared statement errors\n{report}");
    if route == Route::PgBouncer {
        assert!(
            final_checks.backends <= i64::from(BOUNCER_SERVER_CONNECTIONS),
            "PgBouncer opened more server connections than configured\n{report}"
        );
    }
    // The run did what it claims (so the checks above had something to check).
    assert_eq!(sent, settings.requests, "{report}");
    assert!(
        acked > 0 && deleted > 0 && counters.cancelled > 0,
        "{report}"
    );
    assert!(counters.rows_checked > 0, "{report}");
    assert!(
        counters.by_op.get("read foreign id").copied().unwrap_or(0) > 0,
        "{report}"
    );
    report
}

struct FinalChecks {
    cross_org_in_db: u64,
    cancelled_rows: u64,
    idle_in_tx: i64,
    /// Client backends connected to the test database after the run (the app's server
    /// connections: its pool, or PgBouncer's).
    backends: i64,
}

/// After the load: every org's list holds exactly its live acknowledged writes; the database
/// agrees row by row; no connection is left inside a transaction.
async fn final_checks(
    shared: &Shared,
    app: &AppProcess,
    database: &tenant_guard_testkit::TestDatabase,
) -> FinalChecks {
    let tenants = &shared.tenants;
    let writes: HashMap<Uuid, (usize, WriteState)> = shared.writes.lock().unwrap().clone();
    // Over HTTP: one list per org.
    let mut conn = Connection::connect(app.addr).await.unwrap();
    for org in 0..tenants.orgs.len() {
        if conn.is_closed() {
            conn = Connection::connect(app.addr).await.unwrap();
        }
        let r = send(&mut conn, "GET", "/projects", &tenants.bearer[org][0], b"").await;
        let Some(r) = expect(shared, "final list", r, 200) else {
            continue;
        };
        let listed: HashSet<Uuid> = shared
            .check_rows(org, &r.body)
            .unwrap_or_default()
            .into_iter()
            .collect();
        for (id, (owner, state)) in &writes {
            match (*owner == org, *state, listed.contains(id)) {
                (true, WriteState::Live, false) => {
                    shared.lost(&format!("{id} missing from its org's list"))
                }
                (true, WriteState::Deleted, true) => {
                    shared.lost(&format!("deleted {id} still listed"))
                }
                // Another org's write in this list: already counted by `check_rows`.
                _ => {}
            }
        }
    }
    drop(conn);

    // In the database, as the superuser (no RLS in the way).
    let admin = database.connect().await.unwrap();
    let mut idle_in_tx = 0;
    for _ in 0..100 {
        idle_in_tx = admin
            .query_one(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() \
                 AND pid <> pg_backend_pid() AND backend_type = 'client backend' \
                 AND state IN ('idle in transaction', 'idle in transaction (aborted)', 'active')",
                &[],
            )
            .await
            .unwrap()
            .get::<_, i64>(0);
        if idle_in_tx == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let backends: i64 = admin
        .query_one(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() \
             AND pid <> pg_backend_pid() AND backend_type = 'client backend'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    let rows = admin
        .query("SELECT id, org_id, name FROM projects", &[])
        .await
        .unwrap();
    let org_index: HashMap<Uuid, usize> = tenants
        .orgs
        .iter()
        .enumerate()
        .map(|(i, o)| (*o, i))
        .collect();
    let cancelled: HashMap<String, usize> = shared
        .cancelled_names
        .lock()
        .unwrap()
        .iter()
        .cloned()
        .collect();
    let mut in_db: HashMap<Uuid, Uuid> = HashMap::new();
    let mut cross_org_in_db = 0;
    let mut cancelled_rows = 0;
    for row in &rows {
        let (id, org, name): (Uuid, Uuid, String) = (row.get(0), row.get(1), row.get(2));
        in_db.insert(id, org);
        // Names are `lt-<org index>-…`: the org of the token that wrote the row.
        let written_by = name
            .strip_prefix("lt-")
            .and_then(|rest| rest.split('-').next())
            .and_then(|i| i.parse::<usize>().ok());
        if written_by != org_index.get(&org).copied() {
            eprintln!("load_isolation: CROSS-ORG in the database: {name} has org {org}");
            cross_org_in_db += 1;
        }
        if let Some(&o) = cancelled.get(&name) {
            cancelled_rows += 1;
            if tenants.orgs[o] != org {
                cross_org_in_db += 1;
            }
        }
    }
    for (id, (owner, state)) in &writes {
        match (state, in_db.get(id)) {
            (WriteState::Live, Some(org)) if *org == tenants.orgs[*owner] => {}
            (WriteState::Live, _) => shared.lost(&format!("{id} not in the database with its org")),
            (WriteState::Deleted, Some(_)) => {
                shared.lost(&format!("deleted {id} still in the database"))
            }
            (WriteState::Deleted, None) => {}
        }
    }
    FinalChecks {
        cross_org_in_db,
        cancelled_rows,
        idle_in_tx,
        backends,
    }
}

/// The checker itself: a foreign row in a list, or a row of a known write of another org, is
/// counted (so the zeros above mean something).
#[test]
fn the_checker_counts_foreign_rows() {
    let shared = Shared {
        tenants: Tenants::new(2, 1),
        budget: AtomicU64::new(0),
        deadline: Instant::now(),
        writes: Mutex::default(),
        write_ids: Mutex::default(),
        cancelled_names: Mutex::default(),
        counters: Mutex::default(),
    };
    let (own, other) = (&shared.tenants.org_text[0], &shared.tenants.org_text[1]);
    let known_foreign = Uuid::new_v4();
    shared
        .writes
        .lock()
        .unwrap()
        .insert(known_foreign, (1, WriteState::Live));
    let body = serde_json::json!([
        {"id": Uuid::new_v4(), "org_id": own, "name": "mine"},
        {"id": Uuid::new_v4(), "org_id": other, "name": "foreign org_id"},
        {"id": known_foreign, "org_id": own, "name": "another org's write"},
    ])
    .to_string();
    let ids = shared.check_rows(0, body.as_bytes()).unwrap();
    assert_eq!(ids.len(), 3);
    assert_eq!(shared.counters.lock().unwrap().cross_org_rows, 2);
    assert_eq!(shared.counters.lock().unwrap().rows_checked, 3);
}

#[test]
fn axum_many_orgs_under_load_never_see_each_other() {
    run("reference_axum");
}

#[test]
fn actix_many_orgs_under_load_never_see_each_other() {
    run("reference_actix");
}

#[test]
fn axum_on_sqlx_many_orgs_under_load_never_see_each_other() {
    run_with("reference_axum", Route::Direct, "sqlx");
}

#[test]
fn actix_on_sqlx_many_orgs_under_load_never_see_each_other() {
    run_with("reference_actix", Route::Direct, "sqlx");
}

#[test]
fn axum_many_orgs_behind_pgbouncer_never_see_each_other() {
    run_via("reference_axum", Route::PgBouncer);
}

#[test]
fn actix_many_orgs_behind_pgbouncer_never_see_each_other() {
    run_via("reference_actix", Route::PgBouncer);
}
