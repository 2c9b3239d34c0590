//! Shared helpers for the audit's integration tests: fixture databases on the testkit server.
#![allow(dead_code, unreachable_pub, clippy::expect_used, clippy::unwrap_used)]

use std::collections::BTreeSet;

use tenant_guard_audit::{AuditConfig, Report};
use tenant_guard_testkit::{TestDatabase, TestPostgres};
use tokio_postgres::Client;

pub const ROLES: &str = include_str!("../fixtures/roles.sql");
pub const EXTRA_ROLES: &str = include_str!("../fixtures/extra_roles.sql");
pub const SUPABASE_AUTH: &str = include_str!("../fixtures/supabase_auth.sql");
pub const SEED_002: &str = include_str!("../fixtures/seed_002.sql");
pub const SEED_004: &str = include_str!("../fixtures/seed_004.sql");
pub const CORRECT: &str = include_str!("../fixtures/correct.sql");
pub const EXTRAS: &str = include_str!("../fixtures/extras.sql");
pub const LEAKY: &str = include_str!("../fixtures/leaky.sql");
pub const CHAIN: &str = include_str!("../fixtures/chain.sql");
pub const MEMBERSHIPS: &str = include_str!("../fixtures/memberships.sql");
pub const WRITE_SIDE: &str = include_str!("../fixtures/write_side.sql");

/// The application login the fixtures create: NOINHERIT, member of the app roles, no powers.
pub const APP_LOGIN: &str = "tg_audit_app_login";

/// A fresh database with the shared roles and then `scripts` applied, and a superuser client.
pub async fn database(scripts: &[&str]) -> (TestDatabase, Client) {
    let server = TestPostgres::shared().expect("test PostgreSQL server");
    let db = server.create_database_async().await.expect("test database");
    let client = db.connect().await.expect("connect to the test database");
    client.batch_execute(ROLES).await.expect("roles fixture");
    for script in scripts {
        client.batch_execute(script).await.expect("fixture");
    }
    (db, client)
}

/// The (check, object) pairs of a report.
pub fn pairs(report: &Report) -> BTreeSet<(String, String)> {
    report
        .findings
        .iter()
        .map(|f| (f.check.id().to_owned(), f.object.clone()))
        .collect()
}

pub fn expected(list: &[(&str, &str)]) -> BTreeSet<(String, String)> {
    list.iter()
        .map(|(c, o)| ((*c).to_owned(), (*o).to_owned()))
        .collect()
}

/// Audits with `config`, checking the application login's powers (the tests connect as a
/// superuser).
pub async fn audit(client: &mut Client, config: AuditConfig) -> Report {
    tenant_guard_audit::audit(client, &config.login_role(APP_LOGIN))
        .await
        .expect("audit")
}

/// Row counts of every table in `public`, read as the superuser.
pub async fn row_counts(client: &Client) -> Vec<(String, i64)> {
    let tables: Vec<String> = client
        .query(
            "SELECT relname::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE n.nspname = 'public' AND c.relkind = 'r' ORDER BY 1",
            &[],
        )
        .await
        .expect("list tables")
        .iter()
        .map(|r| r.get(0))
        .collect();
    let mut counts = Vec::new();
    for table in tables {
        let n: i64 = client
            .query_one(&format!("SELECT count(*) FROM public.\"{table}\""), &[])
            .await
            .expect("count")
            .get(0);
        counts.push((table, n));
    }
    counts
}
