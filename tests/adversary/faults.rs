//! Fault scenarios against a real PostgreSQL, through the adapters (issue 7, "Faults").
//!
//! Each scenario runs through axum or actix ([`Framework`]) inside an actix system (a
//! current-thread tokio runtime), and ends with the same checks ([`Env::assert_after`]): no
//! backend of the test database left `idle in transaction`, every idle pooled connection clean
//! (login role, no claims, no org, no open transaction), committed writes present, rolled-back
//! writes absent.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::json;
use tenant_guard::postgres::tokio_postgres::{self, Client};
use tenant_guard::postgres::{LoginPolicy, ScopeOptions, TenantPool, TenantPoolBuilder, support};
use tenant_guard_testkit::{TestDatabase, TestPostgres};
use uuid::Uuid;

use super::apps::{Answer, AppConfig, Req, actix_app, axum_app};
use super::tokens::{self, claims, good, with};

/// The pool's login: NOINHERIT, no privileges of its own, member of the app roles.
pub const LOGIN: &str = "tg_faults_authenticator";

const SCHEMA: &str = "
    CREATE TABLE notes (
        id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        org_id uuid NOT NULL DEFAULT tenant_guard.org_id(),
        body text NOT NULL
    );
    ALTER TABLE notes ENABLE ROW LEVEL SECURITY;
    ALTER TABLE notes FORCE ROW LEVEL SECURITY;
    GRANT SELECT, INSERT ON notes TO authenticated;
    CREATE POLICY notes_org ON notes FOR ALL TO authenticated
        USING (org_id = (SELECT tenant_guard.org_id()))
        WITH CHECK (org_id = (SELECT tenant_guard.org_id()));
    -- Checked only at commit: a duplicate body fails the commit, not the statement.
    CREATE TABLE deferred (
        org_id uuid NOT NULL DEFAULT tenant_guard.org_id(),
        body text NOT NULL,
        CONSTRAINT deferred_body_unique UNIQUE (body) DEFERRABLE INITIALLY DEFERRED
    );
    ALTER TABLE deferred ENABLE ROW LEVEL SECURITY;
    ALTER TABLE deferred FORCE ROW LEVEL SECURITY;
    GRANT SELECT, INSERT ON deferred TO authenticated;
    CREATE POLICY deferred_org ON deferred FOR ALL TO authenticated
        USING (org_id = (SELECT tenant_guard.org_id()))
        WITH CHECK (org_id = (SELECT tenant_guard.org_id()));
";

/// Upper bound for any wait on the database in these tests (a hang fails instead of blocking CI).
const PATIENCE: Duration = Duration::from_secs(30);

/// Which adapter a scenario goes through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framework {
    Axum,
    Actix,
}

impl Framework {
    pub const BOTH: [Framework; 2] = [Framework::Axum, Framework::Actix];

    pub async fn send(self, config: &AppConfig, req: &Req) -> Answer {
        match self {
            Self::Axum => axum_app::send(config, req).await,
            Self::Actix => actix_app::send(config, req).await,
        }
    }
}

/// A caller: an org and a token for it.
#[derive(Debug, Clone)]
pub struct Caller {
    pub org: Uuid,
    pub token: String,
}

impl Caller {
    pub fn new() -> Self {
        let org = Uuid::new_v4();
        let claims = with(
            with(claims(), "org_id", json!(org)),
            "sub",
            json!(Uuid::new_v4()),
        );
        Self {
            org,
            token: good(&claims),
        }
    }

    pub fn post(&self, path: &str) -> Req {
        Req::post(path).bearer(&self.token)
    }

    pub fn get(&self, path: &str) -> Req {
        Req::get(path).bearer(&self.token)
    }
}

impl Default for Caller {
    fn default() -> Self {
        Self::new()
    }
}

/// One scenario's database, pool and app.
pub struct Env {
    pub db: TestDatabase,
    pub admin: Client,
    pub pool: TenantPool,
    pub app: AppConfig,
}

async fn ensure_login(admin: &Client) {
    let sql = format!(
        "DO $$ BEGIN
            IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{LOGIN}') THEN
                BEGIN
                    CREATE ROLE {LOGIN} LOGIN NOINHERIT;
                EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL;
                END;
            END IF;
        END $$"
    );
    let mut attempt = 0;
    while let Err(e) = admin.batch_execute(&sql).await {
        attempt += 1;
        assert!(attempt < 20, "creating the login: {e}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn connect(config: &tokio_postgres::Config) -> Result<Client, tokio_postgres::Error> {
    let (client, connection) = config.connect(tokio_postgres::NoTls).await?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(client)
}

impl Env {
    /// A fresh database on `server` with the support SQL, the login and the notes table, and a
    /// pool of `size` as the login, configured further by `tweak`.
    pub async fn new(
        server: &TestPostgres,
        size: usize,
        tweak: impl FnOnce(TenantPoolBuilder) -> TenantPoolBuilder,
    ) -> Self {
        let db = server.create_database_async().await.expect("test database");
        let admin = connect(db.config()).await.expect("superuser connection");
        ensure_login(&admin).await;
        support::apply_support_sql_with(&admin, Some(LOGIN), SCHEMA)
            .await
            .expect("support SQL and schema");
        let mut login = db.config().clone();
        login.user(LOGIN);
        let builder = TenantPool::builder(login)
            .max_size(size)
            .login_policy(LoginPolicy::Refuse)
            .wait_timeout(Duration::from_secs(10));
        let pool = tweak(builder).build().expect("pool");
        let app = AppConfig::new(tokens::verifier()).pool(pool.clone());
        Self {
            db,
            admin,
            pool,
            app,
        }
    }

    /// A fresh superuser connection (the one in `admin` dies with a server restart).
    pub async fn superuser(&self) -> Client {
        connect(self.db.config())
            .await
            .expect("superuser connection")
    }

    /// Every note, read as the superuser with row security off.
    pub async fn notes(&self) -> Vec<(Uuid, String)> {
        let client = self.superuser().await;
        client
            .batch_execute("SET row_security = off")
            .await
            .expect("row_security off");
        client
            .query("SELECT org_id, body FROM notes ORDER BY id", &[])
            .await
            .expect("notes")
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect()
    }

    /// Waits until a backend of this database runs the `/sleep` statement of note `body`;
    /// returns its pid.
    pub async fn wait_until_sleeping(&self, body: &str) -> i32 {
        let needle = format!("sleeper {body}");
        let client = self.superuser().await;
        for _ in 0..(PATIENCE.as_millis() / 10) {
            let row = client
                .query_opt(
                    "SELECT pid FROM pg_stat_activity
                      WHERE datname = current_database() AND pid <> pg_backend_pid()
                        AND state = 'active' AND query LIKE '%' || $1 || '%'",
                    &[&needle],
                )
                .await
                .expect("pg_stat_activity");
            if let Some(row) = row {
                return row.get(0);
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("no backend ever ran {needle}");
    }

    /// Waits until no backend of this database runs the sleep of `body` any more (a cancelled
    /// statement must not keep running, holding its locks and its transaction).
    pub async fn wait_until_not_sleeping(&self, body: &str) {
        let needle = format!("sleeper {body}");
        let client = self.superuser().await;
        for _ in 0..(PATIENCE.as_millis() / 10) {
            let running: i64 = client
                .query_one(
                    "SELECT count(*) FROM pg_stat_activity
                      WHERE datname = current_database() AND pid <> pg_backend_pid()
                        AND state = 'active' AND query LIKE '%' || $1 || '%'",
                    &[&needle],
                )
                .await
                .expect("pg_stat_activity")
                .get(0);
            if running == 0 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("{needle} still runs after its request ended");
    }

    /// Waits until `n` backends of the pool's login are `idle in transaction` (requests holding
    /// their transaction open on purpose).
    pub async fn wait_until_holding(&self, n: i64) {
        let client = self.superuser().await;
        for _ in 0..(PATIENCE.as_millis() / 10) {
            let holding: i64 = client
                .query_one(
                    "SELECT count(*) FROM pg_stat_activity
                      WHERE datname = current_database() AND usename = $1
                        AND state = 'idle in transaction'",
                    &[&LOGIN],
                )
                .await
                .expect("pg_stat_activity")
                .get(0);
            if holding >= n {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("{n} requests never held their transactions");
    }

    /// The backends of this database `idle in transaction` after waiting up to `wait` for them
    /// to go (a rollback or a read-only commit is queued without waiting, and may still be on
    /// its way).
    pub async fn idle_in_transaction(&self, wait: Duration) -> Vec<String> {
        let client = self.superuser().await;
        let mut left = Vec::new();
        for _ in 0..=(wait.as_millis() / 10) {
            left = client
                .query(
                    "SELECT pid, usename::text, state, query FROM pg_stat_activity
                      WHERE datname = current_database() AND state LIKE 'idle in transaction%'",
                    &[],
                )
                .await
                .expect("pg_stat_activity")
                .iter()
                .map(|r| {
                    format!(
                        "{} {} {} {}",
                        r.get::<_, i32>(0),
                        r.get::<_, String>(1),
                        r.get::<_, String>(2),
                        r.get::<_, String>(3)
                    )
                })
                .collect();
            if left.is_empty() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        left
    }

    /// No backend of this database is left `idle in transaction`.
    pub async fn assert_no_idle_in_transaction(&self) {
        let left = self.idle_in_transaction(PATIENCE).await;
        assert!(
            left.is_empty(),
            "backends left idle in transaction: {left:?}"
        );
    }

    /// Every idle pooled connection is clean (see [`assert_pool_clean`]).
    pub async fn assert_pool_clean(&self) -> usize {
        assert_pool_clean(&self.pool).await
    }

    /// The checks after every scenario. `kept` must be present with their org, `gone` absent.
    /// Returns how many idle pooled connections were inspected.
    pub async fn assert_after(&self, kept: &[(Uuid, &str)], gone: &[&str]) -> usize {
        self.assert_no_idle_in_transaction().await;
        let inspected = self.assert_pool_clean().await;
        let notes = self.notes().await;
        for (org, body) in kept {
            assert!(
                notes.iter().any(|(o, b)| o == org && b == body),
                "committed write {body} missing: {notes:?}"
            );
        }
        for body in gone {
            assert!(
                !notes.iter().any(|(_, b)| b == body),
                "rolled-back write {body} present: {notes:?}"
            );
        }
        inspected
    }

    /// A request after the fault: the pool works again, scoped to `caller`.
    pub async fn assert_recovers(&self, fw: Framework, caller: &Caller, body: &str) {
        let answer = fw
            .send(&self.app, &caller.post(&format!("/notes/{body}")))
            .await;
        assert_eq!(answer.status, 201, "{fw:?}: {answer:?}");
        let answer = fw.send(&self.app, &caller.get("/notes")).await;
        assert_eq!(answer.status, 200, "{fw:?}: {answer:?}");
        let rows = answer.json();
        let rows = rows.as_array().expect("array");
        assert!(
            rows.iter().all(|r| r["org_id"] == caller.org.to_string()),
            "another org's rows: {rows:?}"
        );
        assert!(rows.iter().any(|r| r["body"] == body));
    }
}

/// Checks out every idle pooled connection at once (unscoped, through the guard's audited
/// escape hatch) and asserts each is clean: the pool's login as current user, no
/// claims, no org, no sub, no transaction left open. The inspected connections are closed
/// afterwards (the escape hatch never returns them). Returns how many were inspected.
pub async fn assert_pool_clean(pool: &TenantPool) -> usize {
    let idle = pool.status().available;
    let mut held = Vec::new();
    for _ in 0..idle {
        let conn = pool
            .dangerous_unscoped_connection("test: inspect every idle pooled connection")
            .await
            .expect("checkout for inspection");
        held.push(conn);
    }
    // A transaction left open would have started before this pause.
    tokio::time::sleep(Duration::from_millis(5)).await;
    for conn in &held {
        let messages = conn
            .simple_query(
                "SELECT current_user::text, session_user::text,
                        coalesce(current_setting('request.jwt.claims', true), ''),
                        coalesce(current_setting('tenant_guard.org_id', true), ''),
                        coalesce(current_setting('request.jwt.claim.sub', true), ''),
                        (now() = statement_timestamp())::text",
            )
            .await
            .expect("inspection query");
        let row = messages
            .iter()
            .find_map(|m| match m {
                tokio_postgres::SimpleQueryMessage::Row(row) => Some(row),
                _ => None,
            })
            .expect("one row");
        let got: Vec<&str> = (0..6).map(|i| row.get(i).unwrap_or("")).collect();
        // The role in force is the login itself (no role switch left), nothing else is set.
        assert_eq!(
            got,
            [got[1], got[1], "", "", "", "true"],
            "a dirty pooled connection (user, session user, claims, org, sub, fresh tx)"
        );
    }
    held.len()
}

fn shared() -> &'static TestPostgres {
    TestPostgres::shared().expect("test server")
}

fn tag(fw: Framework, what: &str) -> String {
    format!("{}-{what}", format!("{fw:?}").to_lowercase())
}

/// Asserts a JSON error answer with `status` and `code` (and `Retry-After` on 503).
pub fn assert_error(fw: Framework, answer: &Answer, status: u16, code: &str) {
    assert_eq!(answer.status, status, "{fw:?}: {answer:?}");
    assert_eq!(answer.error_code(), code, "{fw:?}");
    assert_eq!(answer.header("content-type"), Some("application/json"));
    if status == 503 {
        assert!(answer.header("retry-after").is_some(), "{fw:?}: {answer:?}");
    }
}

/// A success is committed, a refusal (422) rolled back.
pub async fn commit_and_rollback(fw: Framework) {
    let env = Env::new(shared(), 1, |b| b).await;
    let caller = Caller::new();
    let kept = tag(fw, "kept");
    let refused = tag(fw, "refused");
    let a = fw
        .send(&env.app, &caller.post(&format!("/notes/{kept}")))
        .await;
    assert_eq!(a.status, 201, "{a:?}");
    let a = fw
        .send(&env.app, &caller.post(&format!("/notes/{refused}/refuse")))
        .await;
    assert_eq!(a.status, 422, "{a:?}");
    let idle = env.assert_after(&[(caller.org, &kept)], &[&refused]).await;
    assert_eq!(
        idle, 1,
        "the connection is kept after a commit and a rollback"
    );
    env.assert_recovers(fw, &Caller::new(), &tag(fw, "after"))
        .await;
}

/// A handler panics after a write: the write is rolled back, the (only) connection reused clean.
pub async fn panic_in_handler(fw: Framework) {
    let env = Env::new(shared(), 1, |b| b).await;
    let caller = Caller::new();
    let body = tag(fw, "panicked");
    let app = env.app.clone();
    let req = caller.post(&format!("/notes/{body}/panic"));
    let joined = actix_web::rt::spawn(async move { fw.send(&app, &req).await }).await;
    match joined {
        Err(e) => assert!(e.is_panic(), "{fw:?}: {e:?}"),
        // A framework may turn the panic into a 500 itself: still a clean one.
        Ok(answer) => assert_error(fw, &answer, 500, "internal_error"),
    }
    let idle = env.assert_after(&[], &[&body]).await;
    assert_eq!(idle, 1, "a rollback is queued and the connection kept");
    env.assert_recovers(fw, &Caller::new(), &tag(fw, "after-panic"))
        .await;
}

/// The client goes away while the handler's statement runs: the request future is dropped.
pub async fn client_disconnect(fw: Framework) {
    let env = Env::new(shared(), 1, |b| b).await;
    let caller = Caller::new();
    let body = tag(fw, "disconnected");
    let req = caller.post(&format!("/notes/{body}/sleep"));
    tokio::select! {
        answer = fw.send(&env.app, &req) => panic!("{fw:?}: the sleep finished: {answer:?}"),
        _ = env.wait_until_sleeping(&body) => {}
    }
    env.wait_until_not_sleeping(&body).await;
    let idle = env.assert_after(&[], &[&body]).await;
    assert_eq!(
        idle, 0,
        "a connection whose statement may still run is discarded"
    );
    env.assert_recovers(fw, &Caller::new(), &tag(fw, "after-disconnect"))
        .await;
}

/// The handler stops waiting for its statement (its own timeout) and answers 504.
pub async fn handler_timeout(fw: Framework) {
    let env = Env::new(shared(), 1, |b| b).await;
    let caller = Caller::new();
    let body = tag(fw, "gave-up");
    let a = fw
        .send(&env.app, &caller.post(&format!("/notes/{body}/give-up")))
        .await;
    assert_eq!(a.status, 504, "{fw:?}: {a:?}");
    env.wait_until_not_sleeping(&body).await;
    let idle = env.assert_after(&[], &[&body]).await;
    assert_eq!(
        idle, 0,
        "a connection whose statement may still run is discarded"
    );
    env.assert_recovers(fw, &Caller::new(), &tag(fw, "after-give-up"))
        .await;
}

/// The server cancels a statement over the pool's statement timeout: 503 database_timeout.
pub async fn statement_timeout(fw: Framework) {
    let env = Env::new(shared(), 1, |b| {
        b.statement_timeout(Duration::from_millis(300))
    })
    .await;
    let caller = Caller::new();
    let body = tag(fw, "too-slow");
    let a = fw
        .send(&env.app, &caller.post(&format!("/notes/{body}/sleep")))
        .await;
    assert_error(fw, &a, 503, "database_timeout");
    let idle = env.assert_after(&[], &[&body]).await;
    assert_eq!(
        idle, 1,
        "the server ended the statement: the connection is kept"
    );
    env.assert_recovers(fw, &Caller::new(), &tag(fw, "after-timeout"))
        .await;
}

/// Every connection is held: the next request waits a bounded time and gets 503 database_busy
/// with a JSON body; when the holders finish, requests succeed again.
pub async fn pool_exhaustion(fw: Framework) {
    let env = Env::new(shared(), 2, |b| b.wait_timeout(Duration::from_millis(300))).await;
    let caller = Caller::new();
    let held: Vec<String> = (0..2).map(|i| tag(fw, &format!("held-{i}"))).collect();
    let mut holders = Vec::new();
    for body in &held {
        let app = env.app.clone();
        let req = caller.post(&format!("/notes/{body}/hold"));
        holders.push(actix_web::rt::spawn(
            async move { fw.send(&app, &req).await },
        ));
    }
    env.wait_until_holding(2).await;
    let status = env.pool.status();
    assert_eq!((status.size, status.available), (2, 0), "{status:?}");
    let busy = tokio::time::timeout(
        PATIENCE,
        fw.send(
            &env.app,
            &caller.post(&format!("/notes/{}", tag(fw, "busy"))),
        ),
    )
    .await
    .expect("the wait for a connection is bounded");
    assert_error(fw, &busy, 503, "database_busy");
    env.app.gate.open(2);
    for holder in holders {
        let answer = holder.await.expect("holder");
        assert_eq!(answer.status, 201, "{fw:?}: {answer:?}");
    }
    let kept: Vec<(Uuid, &str)> = held.iter().map(|b| (caller.org, b.as_str())).collect();
    let idle = env.assert_after(&kept, &[&tag(fw, "busy")]).await;
    assert_eq!(idle, 2, "both held connections are back, clean");
    env.assert_recovers(fw, &Caller::new(), &tag(fw, "after-busy"))
        .await;
}

/// An operator kills the backend mid-request (`pg_terminate_backend`): the request fails with a
/// clean 503, its write is gone, the broken connection is never handed out again.
pub async fn terminated_backend(fw: Framework) {
    let env = Env::new(shared(), 1, |b| b).await;
    let caller = Caller::new();
    let body = tag(fw, "terminated");
    let req = caller.post(&format!("/notes/{body}/sleep"));
    let killer = async {
        let pid = env.wait_until_sleeping(&body).await;
        let killed: bool = env
            .superuser()
            .await
            .query_one("SELECT pg_terminate_backend($1)", &[&pid])
            .await
            .expect("terminate")
            .get(0);
        assert!(killed);
    };
    let (answer, ()) = tokio::join!(fw.send(&env.app, &req), killer);
    assert_error(fw, &answer, 503, "database_unavailable");
    let idle = env.assert_after(&[], &[&body]).await;
    assert_eq!(idle, 0, "the killed connection went back to the pool");
    env.assert_recovers(fw, &Caller::new(), &tag(fw, "after-kill"))
        .await;
}

/// What the load of [`restart_under_load`] saw.
#[derive(Debug, Default)]
pub struct LoadReport {
    pub ok: AtomicUsize,
    pub failed: AtomicUsize,
    pub acked: Mutex<Vec<(Uuid, String)>>,
    pub error_codes: Mutex<BTreeSet<(u16, String)>>,
}

/// PostgreSQL is stopped and started again while requests of several orgs, through both
/// adapters, keep coming: while it is down they fail with a clean 503 JSON answer, after it
/// is back they succeed; no answer ever carries another org's rows, every acknowledged write is
/// there afterwards, and no pooled connection is dirty.
pub async fn restart_under_load() {
    let server = Arc::new(TestPostgres::start_local().expect("a server of this test's own"));
    let env = Arc::new(
        Env::new(&server, 4, |b| {
            b.wait_timeout(Duration::from_millis(500))
                .connect_timeout(Duration::from_secs(2))
        })
        .await,
    );
    let report = Arc::new(LoadReport::default());
    let stop = Arc::new(AtomicBool::new(false));
    let callers: Vec<Caller> = (0..3).map(|_| Caller::new()).collect();
    let mut workers = Vec::new();
    for (i, caller) in callers.iter().cycle().take(6).cloned().enumerate() {
        let fw = Framework::BOTH[i % 2];
        let (env, report, stop) = (env.clone(), report.clone(), stop.clone());
        workers.push(actix_web::rt::spawn(async move {
            let mut n = 0usize;
            while !stop.load(Ordering::Acquire) {
                n += 1;
                let body = format!("w{i}-{n}");
                for req in [caller.post(&format!("/notes/{body}")), caller.get("/notes")] {
                    let answer = fw.send(&env.app, &req).await;
                    match answer.status {
                        201 => {
                            report.ok.fetch_add(1, Ordering::Relaxed);
                            report
                                .acked
                                .lock()
                                .expect("acked")
                                .push((caller.org, body.clone()));
                        }
                        200 => {
                            report.ok.fetch_add(1, Ordering::Relaxed);
                            let rows = answer.json();
                            for row in rows.as_array().expect("array") {
                                assert_eq!(
                                    row["org_id"],
                                    caller.org.to_string(),
                                    "{fw:?}: another org's row in an answer"
                                );
                            }
                        }
                        503 => {
                            report.failed.fetch_add(1, Ordering::Relaxed);
                            // A transient outage: 503 + Retry-After, never a 500.
                            assert!(answer.header("retry-after").is_some(), "{answer:?}");
                            let code = answer.error_code();
                            assert!(
                                ["database_unavailable", "database_busy"].contains(&code.as_str()),
                                "{fw:?}: {answer:?}"
                            );
                            report
                                .error_codes
                                .lock()
                                .expect("codes")
                                .insert((answer.status, code));
                            // Do not spin while the database is down.
                            tokio::time::sleep(Duration::from_millis(5)).await;
                        }
                        other => panic!("{fw:?}: unexpected status {other}: {answer:?}"),
                    }
                }
            }
        }));
    }
    let wait_for = |count: &'static str, target: usize| {
        let report = report.clone();
        async move {
            let counter = match count {
                "ok" => &report.ok,
                _ => &report.failed,
            };
            for _ in 0..(PATIENCE.as_millis() / 5) {
                if counter.load(Ordering::Relaxed) >= target {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            panic!("never reached {target} {count} answers: {report:?}");
        }
    };
    wait_for("ok", 40).await;
    let s = server.clone();
    tokio::task::spawn_blocking(move || s.stop())
        .await
        .expect("join")
        .expect("stop");
    let failed_before = report.failed.load(Ordering::Relaxed);
    wait_for("failed", failed_before + 20).await;
    let s = server.clone();
    tokio::task::spawn_blocking(move || s.start_again())
        .await
        .expect("join")
        .expect("start again");
    let ok_after = report.ok.load(Ordering::Relaxed);
    wait_for("ok", ok_after + 60).await;
    stop.store(true, Ordering::Release);
    for worker in workers {
        worker.await.expect("a worker failed");
    }
    let acked = report.acked.lock().expect("acked").clone();
    let kept: Vec<(Uuid, &str)> = acked.iter().map(|(o, b)| (*o, b.as_str())).collect();
    let idle = env.assert_after(&kept, &[]).await;
    assert!(
        idle >= 1,
        "no pooled connection to inspect after the restart"
    );
    for caller in &callers {
        env.assert_recovers(
            Framework::Axum,
            caller,
            &format!("final-axum-{}", caller.org.simple()),
        )
        .await;
        env.assert_recovers(
            Framework::Actix,
            caller,
            &format!("final-actix-{}", caller.org.simple()),
        )
        .await;
    }
    let codes = report.error_codes.lock().expect("codes").clone();
    eprintln!(
        "restart under load: {} answers ok, {} failed cleanly ({codes:?}), {} acknowledged writes all present",
        report.ok.load(Ordering::Relaxed),
        report.failed.load(Ordering::Relaxed),
        acked.len()
    );
    assert!(
        codes.iter().any(|(s, _)| *s == 503),
        "no 503 while the database was down: {codes:?}"
    );
}

/// The checks themselves can fail: a pooled connection whose session carries claims is dirty, a
/// transaction left open is seen.
pub async fn the_checks_can_fail() {
    const DIRTY: &str = "tg_faults_dirty_login";
    let env = Env::new(shared(), 1, |b| b).await;
    let admin = env.superuser().await;
    admin
        .batch_execute(&format!(
            "DO $$ BEGIN
                IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{DIRTY}') THEN
                    BEGIN CREATE ROLE {DIRTY} LOGIN NOINHERIT;
                    EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL; END;
                END IF;
            END $$;
            ALTER ROLE {DIRTY} IN DATABASE \"{db}\" SET request.jwt.claims = '{{\"sub\":\"leak\"}}';",
            db = env.db.name()
        ))
        .await
        .expect("a login whose sessions carry claims");
    let mut login = env.db.config().clone();
    login.user(DIRTY);
    let pool = TenantPool::builder(login)
        .max_size(1)
        .build()
        .expect("pool");
    // One idle pooled connection: a transaction that sends nothing returns it as it is.
    let principal = tokens::verifier()
        .verify(&Caller::new().token)
        .expect("principal");
    pool.begin(&principal, ScopeOptions::default())
        .await
        .expect("checkout")
        .commit()
        .await
        .expect("commit");
    assert_eq!(pool.status().available, 1);
    let check = actix_web::rt::spawn(async move { assert_pool_clean(&pool).await }).await;
    assert!(
        check.is_err_and(|e| e.is_panic()),
        "a dirty pooled connection went unnoticed"
    );
    // A transaction left open is seen.
    let open = env.superuser().await;
    open.batch_execute("BEGIN; SELECT 1").await.expect("begin");
    let left = env.idle_in_transaction(Duration::from_millis(100)).await;
    assert_eq!(left.len(), 1, "{left:?}");
    open.batch_execute("ROLLBACK").await.expect("rollback");
    assert!(env.idle_in_transaction(PATIENCE).await.is_empty());
}

/// The hostile rows the verifier accepts (odd but valid: `exp` as a float or huge, a `kid` that
/// looks like a path, control characters in a claim, 1 MB of unrelated headers) also scope a
/// transaction cleanly: 200 from a guarded query, never a 5xx from the database.
pub async fn accepted_hostile_tokens_reach_the_database(fw: Framework) {
    let env = Env::new(shared(), 2, |b| b).await;
    let trap = super::table::Trap::new();
    let mut accepted = 0;
    for row in super::table::rows(&trap) {
        if row.expect != super::table::Expect::Ok {
            continue;
        }
        accepted += 1;
        let mut req = row.req.clone();
        req.path = "/notes".to_owned();
        let answer = fw.send(&env.app, &req).await;
        assert_eq!(answer.status, 200, "{fw:?}: {}: {answer:?}", row.name);
        assert!(answer.json().is_array(), "{}", row.name);
    }
    assert!(accepted >= 10, "{accepted} accepted rows");
    assert!(env.assert_after(&[], &[]).await >= 1);
}
