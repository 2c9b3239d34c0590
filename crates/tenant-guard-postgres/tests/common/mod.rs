//! Shared set-up of the guard's database tests: a fresh database per test with the support SQL,
//! an authenticator-style login, and a schema with every policy shape from the seeds.
#![allow(
    dead_code,
    unreachable_pub,
    clippy::expect_used,
    clippy::unwrap_used,
    clippy::print_stderr
)]

use std::sync::OnceLock;
use std::time::Duration;

use tenant_guard_core::Principal;
use tenant_guard_postgres::tokio_postgres::{self, Client, Config};
use tenant_guard_postgres::{LoginPolicy, Pooler, TenantPool, TenantPoolBuilder, support};
use tenant_guard_testkit::{PgBouncerOptions, TestDatabase, TestPgBouncer, TestPostgres};
use uuid::Uuid;

pub use tenant_guard_testkit::TestIssuer;

/// The pool's login in these tests: NOINHERIT, no table privileges, member of the app roles.
pub const LOGIN: &str = "tg_test_authenticator";

/// Every policy shape of the seeds, plus the templates of the support module.
pub const SCHEMA: &str = r#"
-- Direct org_id column (the template).
CREATE TABLE projects (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    org_id uuid NOT NULL,
    name text NOT NULL
);
CREATE UNIQUE INDEX projects_org_name ON projects (org_id, name);
CREATE POLICY projects_org ON projects FOR ALL TO authenticated
    USING (org_id = (SELECT tenant_guard.org_id()))
    WITH CHECK (org_id = (SELECT tenant_guard.org_id()));

-- Parent join (the template): a task belongs to the org of its project.
CREATE TABLE tasks (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    project_id uuid NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    title text NOT NULL
);
CREATE POLICY tasks_org ON tasks FOR ALL TO authenticated
    USING (project_id IN (SELECT id FROM projects WHERE org_id = (SELECT tenant_guard.org_id())))
    WITH CHECK (project_id IN (SELECT id FROM projects WHERE org_id = (SELECT tenant_guard.org_id())));

-- Seed 001: tenant_id through a user_profiles sub-select on auth.uid().
CREATE TABLE user_profiles (id uuid PRIMARY KEY, tenant_id uuid NOT NULL);
CREATE POLICY profiles_self ON user_profiles FOR SELECT TO authenticated
    USING (id = (SELECT auth.uid()));
CREATE TABLE campaigns (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    tenant_id uuid NOT NULL,
    name text NOT NULL
);
CREATE POLICY campaigns_tenant ON campaigns FOR ALL TO authenticated
    USING (tenant_id = (SELECT tenant_id FROM user_profiles WHERE id = (SELECT auth.uid())))
    WITH CHECK (tenant_id = (SELECT tenant_id FROM user_profiles WHERE id = (SELECT auth.uid())));

-- Seed 002: the org straight from the JWT claims.
CREATE TABLE invoices (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    org_id uuid NOT NULL,
    amount integer NOT NULL
);
CREATE POLICY invoices_org ON invoices FOR ALL TO authenticated
    USING (org_id = (SELECT (auth.jwt() ->> 'org_id')::uuid))
    WITH CHECK (org_id = (SELECT (auth.jwt() ->> 'org_id')::uuid));

-- Seed 004: membership table, EXISTS.
CREATE TABLE workspace_memberships (
    workspace_id uuid NOT NULL,
    user_id uuid NOT NULL,
    PRIMARY KEY (workspace_id, user_id)
);
CREATE POLICY memberships_self ON workspace_memberships FOR SELECT TO authenticated
    USING (user_id = (SELECT auth.uid()));
CREATE TABLE work_sessions (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    workspace_id uuid NOT NULL,
    title text NOT NULL
);
CREATE POLICY work_sessions_members ON work_sessions FOR ALL TO authenticated
    USING (EXISTS (SELECT 1 FROM workspace_memberships wm
                    WHERE wm.workspace_id = work_sessions.workspace_id
                      AND wm.user_id = (SELECT auth.uid())))
    WITH CHECK (EXISTS (SELECT 1 FROM workspace_memberships wm
                         WHERE wm.workspace_id = work_sessions.workspace_id
                           AND wm.user_id = (SELECT auth.uid())));

-- Seed 000: per-user ownership.
CREATE TABLE agent_sessions (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id uuid NOT NULL DEFAULT auth.uid(),
    title text NOT NULL
);
CREATE POLICY agent_sessions_owner ON agent_sessions FOR ALL TO authenticated
    USING (user_id = (SELECT auth.uid()))
    WITH CHECK (user_id = (SELECT auth.uid()));

-- A table written by the guard's hygiene tests.
CREATE TABLE audit_log (
    id bigserial PRIMARY KEY,
    org_id uuid NOT NULL DEFAULT tenant_guard.org_id(),
    request_id text DEFAULT tenant_guard.request_id(),
    note text NOT NULL
);
CREATE POLICY audit_log_org ON audit_log FOR ALL TO authenticated
    USING (org_id = (SELECT tenant_guard.org_id()))
    WITH CHECK (org_id = (SELECT tenant_guard.org_id()));

DO $$
DECLARE t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['projects', 'tasks', 'user_profiles', 'campaigns', 'invoices',
                             'workspace_memberships', 'work_sessions', 'agent_sessions', 'audit_log']
    LOOP
        EXECUTE format('ALTER TABLE %I ENABLE ROW LEVEL SECURITY', t);
        EXECUTE format('ALTER TABLE %I FORCE ROW LEVEL SECURITY', t);
        EXECUTE format('GRANT SELECT, INSERT, UPDATE, DELETE ON %I TO authenticated, service_role', t);
    END LOOP;
END $$;
GRANT USAGE ON SEQUENCE audit_log_id_seq TO authenticated, service_role;
"#;

/// One test's database: the superuser client, the database handle and the guarded pool.
pub struct Env {
    pub db: TestDatabase,
    pub admin: Client,
    pub pool: TenantPool,
    pub issuer: TestIssuer,
}

/// Creates the login role `name` (NOINHERIT, no privileges) unless it exists; tolerant of
/// concurrent creation from other tests' databases (roles are cluster-wide).
pub async fn ensure_login(admin: &Client, name: &str) {
    let sql = format!(
        "DO $$ BEGIN
            IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{name}') THEN
                BEGIN
                    CREATE ROLE {name} LOGIN NOINHERIT;
                EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL;
                END;
            END IF;
        END $$"
    );
    for attempt in 0..10 {
        match admin.batch_execute(&sql).await {
            Ok(()) => return,
            Err(e) if attempt < 9 => {
                eprintln!("retrying login creation after: {e}");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(e) => panic!("creating login {name}: {e}"),
        }
    }
}

/// A fresh database with the support SQL, the login and [`SCHEMA`].
pub async fn database() -> (TestDatabase, Client) {
    let db = TestPostgres::shared()
        .expect("test server")
        .create_database_async()
        .await
        .expect("test database");
    let admin = db.connect().await.expect("superuser connection");
    ensure_login(&admin, LOGIN).await;
    support::apply_support_sql_with(&admin, Some(LOGIN), SCHEMA)
        .await
        .expect("support SQL and schema");
    (db, admin)
}

/// The pool's connection config: the test database as [`LOGIN`].
pub fn login_config(db: &TestDatabase) -> Config {
    let mut config = db.config().clone();
    config.user(LOGIN);
    config
}

/// A builder for a pool on `db` as [`LOGIN`], refusing unsafe logins.
pub fn pool_builder(db: &TestDatabase) -> TenantPoolBuilder {
    TenantPool::builder(login_config(db))
        .login_policy(LoginPolicy::Refuse)
        .wait_timeout(Duration::from_secs(10))
}

/// A fresh database and a pool of `size` on it.
pub async fn env(size: usize) -> Env {
    let (db, admin) = database().await;
    let pool = pool_builder(&db).max_size(size).build().expect("pool");
    Env {
        db,
        admin,
        pool,
        issuer: TestIssuer::new(),
    }
}

/// The process-wide PgBouncer (`pool_mode = transaction`, `default_pool_size = 1`: one server
/// connection per test database, so every client shares it) in front of the shared server.
pub fn pgbouncer() -> &'static TestPgBouncer {
    static BOUNCER: OnceLock<TestPgBouncer> = OnceLock::new();
    BOUNCER.get_or_init(|| {
        TestPgBouncer::start(
            TestPostgres::shared().expect("test server"),
            PgBouncerOptions::default().default_pool_size(1).user(LOGIN),
        )
        .expect("PgBouncer (Debian: apt-get install pgbouncer)")
    })
}

/// The pool's connection config through [`pgbouncer`]: the test database as [`LOGIN`].
pub fn pgbouncer_login_config(db: &TestDatabase) -> Config {
    let mut config = pgbouncer().config(db);
    config.user(LOGIN);
    config
}

/// Like [`pool_builder`], through [`pgbouncer`] with [`Pooler::Transaction`].
pub fn pgbouncer_pool_builder(db: &TestDatabase) -> TenantPoolBuilder {
    TenantPool::builder(pgbouncer_login_config(db))
        .pooler(Pooler::Transaction)
        .login_policy(LoginPolicy::Refuse)
        .wait_timeout(Duration::from_secs(10))
}

/// A fresh database and a pool of `size` on it through [`pgbouncer`].
pub async fn pgbouncer_env(size: usize) -> Env {
    let (db, admin) = database().await;
    let pool = pgbouncer_pool_builder(&db)
        .max_size(size)
        .build()
        .expect("pool");
    Env {
        db,
        admin,
        pool,
        issuer: TestIssuer::new(),
    }
}

/// What an idle pooled connection looks like from the inside, outside any guard transaction.
#[derive(Debug, PartialEq, Eq)]
pub struct Snapshot {
    pub pid: i32,
    pub current_user: String,
    pub session_user: String,
    pub claims: Option<String>,
    pub org_id: Option<String>,
    pub sub: Option<String>,
    /// `true` when the snapshot's statement ran in a fresh transaction (none was left open).
    pub fresh_transaction: bool,
}

impl Snapshot {
    /// Asserts nothing of a previous transaction is left on the connection.
    pub fn assert_clean(&self) {
        assert_eq!(
            self.current_user, LOGIN,
            "role left on the connection: {self:?}"
        );
        assert_eq!(self.session_user, LOGIN, "{self:?}");
        for (what, value) in [
            ("claims", &self.claims),
            ("org", &self.org_id),
            ("sub", &self.sub),
        ] {
            assert!(
                value.as_deref().unwrap_or("").is_empty(),
                "{what} left on the connection: {self:?}"
            );
        }
        assert!(
            self.fresh_transaction,
            "a transaction was left open: {self:?}"
        );
    }
}

/// Inspects the next idle connection of `pool` without scoping (then discards it).
pub async fn snapshot(pool: &TenantPool) -> Snapshot {
    let conn = pool
        .dangerous_unscoped_connection("test: inspect an idle pooled connection")
        .await
        .expect("checkout for inspection");
    // Let a little time pass so a transaction left open would have an older start time.
    tokio::time::sleep(Duration::from_millis(5)).await;
    // Simple protocol: one message, so a fresh transaction starts with it and `now()` equals
    // `statement_timestamp()`; a transaction left open would have started earlier.
    let messages = conn
        .simple_query(
            "SELECT pg_backend_pid()::text, current_user::text, session_user::text,
                    current_setting('request.jwt.claims', true),
                    current_setting('tenant_guard.org_id', true),
                    current_setting('request.jwt.claim.sub', true),
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
    let text = |i: usize| row.get(i).map(str::to_owned);
    Snapshot {
        pid: text(0).unwrap().parse().unwrap(),
        current_user: text(1).unwrap(),
        session_user: text(2).unwrap(),
        claims: text(3),
        org_id: text(4),
        sub: text(5),
        fresh_transaction: text(6).as_deref() == Some("true"),
    }
}

/// Two principals of two different orgs.
pub fn two_orgs(issuer: &TestIssuer) -> (Principal, Principal) {
    (issuer.user(Uuid::new_v4()), issuer.user(Uuid::new_v4()))
}

/// The error type of closures in tests: the guard's error or a test failure.
#[derive(Debug)]
pub enum TestError {
    Guard(tenant_guard_postgres::GuardError),
    Handler(&'static str),
}

impl From<tenant_guard_postgres::GuardError> for TestError {
    fn from(e: tenant_guard_postgres::GuardError) -> Self {
        Self::Guard(e)
    }
}
