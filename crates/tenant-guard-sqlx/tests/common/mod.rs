//! Shared set-up of the sqlx guard's database tests: a fresh database per test with the support
//! SQL (the same as the tokio-postgres guard's), an authenticator-style login, two RLS tables.
#![allow(
    dead_code,
    unreachable_pub,
    clippy::expect_used,
    clippy::unwrap_used,
    clippy::print_stderr
)]

use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{PgPool, Row};
use tenant_guard_core::Principal;
use tenant_guard_postgres::support;
use tenant_guard_postgres::tokio_postgres::Client;
use tenant_guard_sqlx::SqlxGuard;
use tenant_guard_testkit::{TestDatabase, TestIssuer, TestPostgres};
use uuid::Uuid;

/// The pool's login: NOINHERIT, no table privileges, member of the app roles.
pub const LOGIN: &str = "tg_sqlx_authenticator";

/// Two RLS tables (also the schema `scripts/sqlx-prepare.sh` prepares the macros against).
pub const SCHEMA: &str = include_str!("../fixtures/schema.sql");

pub struct Env {
    pub db: TestDatabase,
    pub admin: Client,
    pub guard: SqlxGuard,
    pub pool: PgPool,
    pub issuer: TestIssuer,
}

/// Creates the login role unless it exists (roles are cluster-wide; tests run concurrently).
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

pub async fn database_on(server: &TestPostgres) -> (TestDatabase, Client) {
    let db = server.create_database_async().await.expect("test database");
    let admin = db.connect().await.expect("superuser connection");
    ensure_login(&admin, LOGIN).await;
    support::apply_support_sql_with(&admin, Some(LOGIN), SCHEMA)
        .await
        .expect("support SQL and schema");
    (db, admin)
}

/// The pool's connect options: the test database as [`LOGIN`].
pub fn connect_options(db: &TestDatabase) -> PgConnectOptions {
    let options: PgConnectOptions = db.url().parse().expect("test URL");
    options.username(LOGIN)
}

/// A fresh database and a guard over a pool of `size` built with `pool_options()`.
pub async fn env(size: u32) -> Env {
    env_with(size, tenant_guard_sqlx::pool_options(), |o| o).await
}

pub async fn env_with(
    size: u32,
    pool_options: PgPoolOptions,
    connect: impl FnOnce(PgConnectOptions) -> PgConnectOptions,
) -> Env {
    let (db, admin) = database_on(TestPostgres::shared().expect("test server")).await;
    let pool = pool_options
        .max_connections(size)
        .acquire_timeout(Duration::from_secs(10))
        .connect_with(connect(connect_options(&db)))
        .await
        .expect("pool");
    Env {
        db,
        admin,
        guard: SqlxGuard::new(pool.clone()),
        pool,
        issuer: TestIssuer::new(),
    }
}

pub fn two_orgs(issuer: &TestIssuer) -> (Principal, Principal) {
    (issuer.user(Uuid::new_v4()), issuer.user(Uuid::new_v4()))
}

/// What an idle pooled connection looks like from the inside, outside any guard transaction.
#[derive(Debug)]
pub struct Snapshot {
    pub pid: i32,
    pub current_user: String,
    pub claims: Option<String>,
    pub org: Option<String>,
    pub search_path: String,
    pub custom: Option<String>,
    pub in_transaction: bool,
}

impl Snapshot {
    pub fn assert_clean(&self) {
        assert_eq!(self.current_user, LOGIN, "role reset: {self:?}");
        assert!(self.claims.as_deref().unwrap_or("").is_empty(), "{self:?}");
        assert!(self.org.as_deref().unwrap_or("").is_empty(), "{self:?}");
        assert_eq!(self.search_path, "\"$user\", public", "{self:?}");
        assert!(self.custom.as_deref().unwrap_or("").is_empty(), "{self:?}");
        assert!(!self.in_transaction, "{self:?}");
    }
}

/// Checks a raw connection out of the pool and reads its state (no guard transaction).
pub async fn snapshot(pool: &PgPool) -> Snapshot {
    let mut conn = pool.acquire().await.expect("raw checkout");
    let row = sqlx::query(
        "SELECT pg_backend_pid(), current_user::text, \
                current_setting('request.jwt.claims', true), \
                current_setting('tenant_guard.org_id', true), \
                current_setting('search_path'), \
                current_setting('app.leak', true), \
                now() <> statement_timestamp()",
    )
    .fetch_one(&mut *conn)
    .await
    .expect("snapshot");
    Snapshot {
        pid: row.get(0),
        current_user: row.get(1),
        claims: row.get(2),
        org: row.get(3),
        search_path: row.get(4),
        custom: row.get(5),
        // Only valid inside a transaction block: fails with 25P01 outside one.
        in_transaction: match sqlx::Executor::execute(&mut *conn, "SAVEPOINT tg_probe").await {
            Ok(_) => true,
            Err(e) => {
                let code = e
                    .as_database_error()
                    .and_then(|d| d.code())
                    .map(|c| c.into_owned());
                assert_eq!(code.as_deref(), Some("25P01"), "{e}");
                false
            }
        },
    }
}

pub async fn audit_rows(admin: &Client, note: &str) -> i64 {
    admin
        .query_one("SELECT count(*) FROM audit_log WHERE note = $1", &[&note])
        .await
        .unwrap()
        .get(0)
}
