//! The connection hygiene cases of `hygiene.rs`, through a real PgBouncer in `pool_mode =
//! transaction` with `default_pool_size = 1` and the pool in `Pooler::Transaction` mode: whatever
//! a handler does, the next transaction on the (shared) server connection carries no role, no
//! claims and no open transaction.
#![allow(clippy::unwrap_used, clippy::expect_used)] // helpers outside #[test] fns

mod common;

use std::time::Duration;

use common::{Env, TestError, snapshot, two_orgs};
use tenant_guard_postgres::{GuardError, ScopeOptions, TenantTx, with_tenant_guard};

/// Behind the pooler the guard resets the session too: in the `COMMIT`'s own message, which runs
/// on the transaction's server connection before PgBouncer hands it on.
const RESETS_SESSION: bool = true;

async fn setup(size: usize) -> Env {
    common::pgbouncer_env(size).await
}

fn builder(db: &tenant_guard_testkit::TestDatabase) -> tenant_guard_postgres::TenantPoolBuilder {
    common::pgbouncer_pool_builder(db)
}

include!("hygiene/cases.rs");
