//! Connection hygiene: whatever a handler does, the next checkout of the same connection carries
//! no role, no claims and no open transaction. Pools of size 1, so the next checkout is the same
//! connection (checked by its backend pid) unless the guard discarded it.
#![allow(clippy::unwrap_used, clippy::expect_used)] // helpers outside #[test] fns

mod common;

use std::time::Duration;

use common::{Env, TestError, snapshot, two_orgs};
use tenant_guard_postgres::{GuardError, ScopeOptions, TenantTx, with_tenant_guard};

/// A direct connection: the guard resets the session after each transaction.
const RESETS_SESSION: bool = true;

async fn setup(size: usize) -> Env {
    common::env(size).await
}

fn builder(db: &tenant_guard_testkit::TestDatabase) -> tenant_guard_postgres::TenantPoolBuilder {
    common::pool_builder(db)
}

include!("hygiene/cases.rs");
