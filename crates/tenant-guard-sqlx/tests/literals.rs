//! Hostile values in the scoping (quotes, backslashes, `$` tags, JSON escapes of surrogates and
//! NUL as text, non-ASCII) arrive byte for byte through the sqlx guard, whatever
//! `standard_conforming_strings` says; a NUL is refused by the server; a scoping failure is the
//! server's error and never leaves an aborted transaction on a pooled connection. (The values are
//! bound parameters: an earlier one-message variant sent them as literals, which put the claims
//! in sqlx's statement log and in the server's log of a failing statement.)
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{env, env_with, snapshot};
use sqlx::Row;
use tenant_guard_core::{Principal, Role};
use tenant_guard_sqlx::{
    ScopeOptions, ScopeSettings, SqlxGuard, SqlxGuardError, with_tenant_guard_options,
};
use uuid::Uuid;

const HOSTILE: &[&str] = &[
    "it's",
    "''",
    "\\",
    "\\'",
    "'; SET ROLE service_role; --",
    "\\'; SET ROLE service_role; --",
    "E'\\x41'",
    "$1 $$ $tag$ $5",
    "\\\\' OR '1'='1",
    "\\ud800 \\udc00 \\u0000 (as text)",
    "émoji 🦀 \u{FEFF} \u{10FFFF}",
    "line\nbreak\ttab\r",
];

/// A guard that sets every setting ([`ScopeSettings::LEGACY`]).
fn legacy(env: &common::Env) -> SqlxGuard {
    SqlxGuard::builder(env.pool.clone())
        .scope_settings(ScopeSettings::LEGACY)
        .build()
}

async fn settings(guard: &SqlxGuard, p: &Principal, request_id: &str) -> [String; 4] {
    let options = ScopeOptions::default().request_id(request_id);
    let row = with_tenant_guard_options(guard, p, options, |tx| {
        Box::pin(async move {
            Ok::<_, SqlxGuardError>(
                sqlx::query(
                    "SELECT current_user::text, current_setting('request.jwt.claims'), \
                            current_setting('request.jwt.claim.sub'), \
                            current_setting('tenant_guard.request_id')",
                )
                .fetch_one(&mut **tx)
                .await?,
            )
        })
    })
    .await
    .unwrap();
    [row.get(0), row.get(1), row.get(2), row.get(3)]
}

async fn hostile_values_arrive_intact(conforming: &'static str) {
    let env = env_with(1, tenant_guard_sqlx::pool_options(), |o| {
        o.options([("standard_conforming_strings", conforming)])
    })
    .await;
    // Every setting, so each value is seen arriving (sub and request id are opt-in).
    let guard = legacy(&env);
    for value in HOSTILE {
        let p = env
            .issuer
            .principal(Uuid::new_v4(), value, "authenticated")
            .unwrap();
        let [role, claims, sub, request_id] = settings(&guard, &p, value).await;
        assert_eq!(role, "authenticated", "{value:?}");
        assert_eq!(claims, p.claims_json(), "{value:?}");
        assert_eq!(sub, *value, "{value:?}");
        assert_eq!(request_id, *value, "{value:?}");
        snapshot(&env.pool).await.assert_clean();
    }
}

#[tokio::test]
async fn hostile_values_arrive_intact_with_standard_conforming_strings() {
    hostile_values_arrive_intact("on").await;
}

#[tokio::test]
async fn hostile_values_arrive_intact_without_standard_conforming_strings() {
    hostile_values_arrive_intact("off").await;
}

/// A NUL cannot be in a literal: the bound-parameter path sends it and the server refuses it
/// (22021), as it always did; the pool's connection is clean for the next request.
#[tokio::test]
async fn a_nul_in_a_value_is_refused_by_the_server() {
    let env = env(1).await;
    let guard = legacy(&env);
    let (alice, _) = common::two_orgs(&env.issuer);
    let options = ScopeOptions::default().request_id("req\0-7");
    let err = guard.begin(&alice, options).await.unwrap_err();
    assert!(matches!(err, SqlxGuardError::Scope(_)), "{err:?}");
    assert_eq!(err.sqlstate(), Some("22021"), "{err:?}");
    snapshot(&env.pool).await.assert_clean();
    assert_eq!(settings(&guard, &alice, "ok").await[3], "ok");
}

/// A role the login may not switch to: the server's own error (42501) comes back as a scoping
/// error, and the aborted transaction never reaches the next request (its connection is
/// closed by the release hook, whose reset fails on it).
#[tokio::test]
async fn a_failed_scoping_is_the_servers_error_and_leaves_nothing_open() {
    let env = env(1).await;
    env.admin
        .batch_execute(
            "DO $$ BEGIN CREATE ROLE tg_sqlx_stranger NOLOGIN; \
             EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL; END $$",
        )
        .await
        .unwrap();
    let stranger_role = Role::new("tg_sqlx_stranger").unwrap();
    let guard = SqlxGuard::builder(env.pool.clone())
        .user_roles([stranger_role, Role::new("authenticated").unwrap()])
        .scope_settings(ScopeSettings::LEGACY)
        .build();
    let issuer =
        tenant_guard_testkit::TestIssuer::with_allowed_roles(["tg_sqlx_stranger", "authenticated"]);
    let stranger = issuer.user_with_role(Uuid::new_v4(), "tg_sqlx_stranger");
    for read_only in [false, true] {
        let err = guard
            .begin(&stranger, ScopeOptions::default().read_only(read_only))
            .await
            .unwrap_err();
        assert!(matches!(err, SqlxGuardError::Scope(_)), "{err:?}");
        assert_eq!(err.sqlstate(), Some("42501"), "{err:?}");
        snapshot(&env.pool).await.assert_clean();
        let user = issuer.user(Uuid::new_v4());
        assert_eq!(settings(&guard, &user, "after").await[0], "authenticated");
    }
}
