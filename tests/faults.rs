//! Faults against a real PostgreSQL through both adapters (issue 7, "Faults"): client
//! disconnects and handler timeouts mid-transaction, panics in handlers, statement timeouts, pool
//! exhaustion, PostgreSQL restarted under load, backends killed with `pg_terminate_backend`.
//!
//! After each scenario (`tests/adversary/faults.rs`): no backend `idle in transaction`, every
//! idle pooled connection clean (role, claims, org, transaction state), committed writes
//! present, rolled-back writes absent, and the next request succeeds.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stderr)]

mod adversary;

use adversary::faults::{self, Framework};

#[actix_web::test]
async fn success_commits_and_refusal_rolls_back() {
    for fw in Framework::BOTH {
        faults::commit_and_rollback(fw).await;
    }
}

#[actix_web::test]
async fn a_panicking_handler_leaves_nothing_behind() {
    for fw in Framework::BOTH {
        faults::panic_in_handler(fw).await;
    }
}

#[actix_web::test]
async fn a_client_disconnect_mid_statement_leaves_nothing_behind() {
    for fw in Framework::BOTH {
        faults::client_disconnect(fw).await;
    }
}

#[actix_web::test]
async fn a_handler_timeout_mid_statement_leaves_nothing_behind() {
    for fw in Framework::BOTH {
        faults::handler_timeout(fw).await;
    }
}

#[actix_web::test]
async fn a_statement_timeout_is_a_clean_503() {
    for fw in Framework::BOTH {
        faults::statement_timeout(fw).await;
    }
}

#[actix_web::test]
async fn pool_exhaustion_is_a_bounded_503_and_recovers() {
    for fw in Framework::BOTH {
        faults::pool_exhaustion(fw).await;
    }
}

#[actix_web::test]
async fn a_terminated_backend_is_a_clean_503_and_never_reused() {
    for fw in Framework::BOTH {
        faults::terminated_backend(fw).await;
    }
}

#[actix_web::test]
async fn postgres_restarted_under_load() {
    faults::restart_under_load().await;
}

#[actix_web::test]
async fn the_checks_can_fail() {
    faults::the_checks_can_fail().await;
}

#[actix_web::test]
async fn hostile_but_valid_tokens_scope_cleanly() {
    for fw in Framework::BOTH {
        faults::accepted_hostile_tokens_reach_the_database(fw).await;
    }
}
