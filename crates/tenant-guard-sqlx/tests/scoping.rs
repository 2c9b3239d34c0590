//! The sqlx guard scopes exactly as the tokio-postgres guard: the same settings, allowlist,
//! read-only mode, service and org-job paths, and error table.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{audit_rows, env, two_orgs};
use sqlx::Row;
use tenant_guard_core::{Role, ServiceContext, ToErrorResponse};
use tenant_guard_sqlx::{
    ScopeOptions, ScopeSettings, SqlxGuardError, with_org_job, with_service_role,
    with_tenant_guard, with_tenant_guard_options,
};

#[tokio::test]
async fn settings_inside_the_transaction_are_the_principals() {
    let env = env(2).await;
    let (alice, _) = two_orgs(&env.issuer);
    let legacy = tenant_guard_sqlx::SqlxGuard::builder(env.guard.dangerous_pool().clone())
        .scope_settings(ScopeSettings::LEGACY)
        .build();
    for (guard, opted_in) in [(&env.guard, false), (&legacy, true)] {
        let options = ScopeOptions::default().request_id("req-7");
        let row = with_tenant_guard_options(guard, &alice, options, |tx| {
            Box::pin(async move {
                Ok::<_, SqlxGuardError>(
                    sqlx::query(
                        "SELECT current_user::text, tenant_guard.org_id(), \
                            tenant_guard.request_id(), \
                            nullif(current_setting('request.jwt.claim.sub', true), ''), \
                            auth.jwt() ->> 'org_id', auth.uid()::text, auth.role(), \
                            tenant_guard.user_id()",
                    )
                    .fetch_one(&mut **tx)
                    .await?,
                )
            })
        })
        .await
        .unwrap();
        assert_eq!(row.get::<String, _>(0), "authenticated");
        assert_eq!(row.get::<uuid::Uuid, _>(1), alice.org_id());
        let (request_id, sub) = if opted_in {
            (Some("req-7"), Some(alice.user_id()))
        } else {
            (None, None)
        };
        assert_eq!(row.get::<Option<String>, _>(2).as_deref(), request_id);
        assert_eq!(row.get::<Option<String>, _>(3).as_deref(), sub);
        assert_eq!(row.get::<String, _>(4), alice.org_id().to_string());
        // The helpers answer the same in both modes.
        assert_eq!(row.get::<String, _>(5), alice.user_id());
        assert_eq!(row.get::<String, _>(6), "authenticated");
        assert_eq!(row.get::<String, _>(7), alice.user_id());
    }
}

#[tokio::test]
async fn each_org_sees_only_its_rows() {
    let env = env(2).await;
    let (alice, bob) = two_orgs(&env.issuer);
    for (p, name) in [(&alice, "a"), (&bob, "b")] {
        with_tenant_guard(&env.guard, p, |tx| {
            Box::pin(async move {
                sqlx::query("INSERT INTO projects (name) VALUES ($1)")
                    .bind(name)
                    .execute(&mut **tx)
                    .await?;
                Ok::<_, SqlxGuardError>(())
            })
        })
        .await
        .unwrap();
    }
    let names: Vec<String> = with_tenant_guard(&env.guard, &alice, |tx| {
        Box::pin(async move {
            Ok::<_, SqlxGuardError>(
                sqlx::query_scalar("SELECT name FROM projects ORDER BY name")
                    .fetch_all(&mut **tx)
                    .await?,
            )
        })
    })
    .await
    .unwrap();
    assert_eq!(names, ["a"]);
}

#[tokio::test]
async fn an_rls_refusal_is_403_and_a_duplicate_409() {
    let env = env(1).await;
    let (alice, bob) = two_orgs(&env.issuer);
    let err = with_tenant_guard(&env.guard, &alice, |tx| {
        Box::pin(async move {
            sqlx::query("INSERT INTO projects (org_id, name) VALUES ($1, 'x')")
                .bind(bob.org_id().as_uuid())
                .execute(&mut **tx)
                .await?;
            Ok::<_, SqlxGuardError>(())
        })
    })
    .await
    .unwrap_err();
    assert!(err.is_forbidden_by_policy(), "{err:?}");
    assert_eq!(err.sqlstate(), Some("42501"));
    assert_eq!(err.to_error_response().status(), 403);

    let err = with_tenant_guard(&env.guard, &alice, |tx| {
        Box::pin(async move {
            for _ in 0..2 {
                sqlx::query("INSERT INTO projects (name) VALUES ('dup')")
                    .execute(&mut **tx)
                    .await?;
            }
            Ok::<_, SqlxGuardError>(())
        })
    })
    .await
    .unwrap_err();
    assert!(matches!(err, SqlxGuardError::UniqueViolation(_)), "{err:?}");
    assert_eq!(err.to_error_response().status(), 409);
    assert!(!err.to_string().contains("dup"), "no data in the message");
}

#[tokio::test]
async fn read_only_transactions_refuse_writes() {
    let env = env(1).await;
    let (alice, _) = two_orgs(&env.issuer);
    let err = with_tenant_guard_options(
        &env.guard,
        &alice,
        ScopeOptions::default().read_only(true),
        |tx| {
            Box::pin(async move {
                sqlx::query("INSERT INTO audit_log (note) VALUES ('ro')")
                    .execute(&mut **tx)
                    .await?;
                Ok::<_, SqlxGuardError>(())
            })
        },
    )
    .await
    .unwrap_err();
    assert_eq!(err.sqlstate(), Some("25006"), "{err:?}");
    assert_eq!(audit_rows(&env.admin, "ro").await, 0);
}

#[tokio::test]
async fn a_role_outside_the_allowlist_never_reaches_the_pool() {
    let env = env(1).await;
    let issuer = tenant_guard_testkit::TestIssuer::with_allowed_roles(["authenticated", "admin"]);
    let admin = issuer.user_with_role(uuid::Uuid::new_v4(), "admin");
    // Hold the only connection: a checkout would time out, the refusal must come first.
    let _held = env.pool.acquire().await.unwrap();
    let err = env
        .guard
        .begin(&admin, ScopeOptions::default())
        .await
        .unwrap_err();
    assert!(matches!(err, SqlxGuardError::RoleNotAllowed(_)), "{err:?}");
    assert_eq!(err.to_error_response().status(), 403);
}

#[tokio::test]
async fn service_role_crosses_orgs_and_org_jobs_do_not() {
    let env = env(1).await;
    let (alice, bob) = two_orgs(&env.issuer);
    for p in [&alice, &bob] {
        with_tenant_guard(&env.guard, p, |tx| {
            Box::pin(async move {
                sqlx::query("INSERT INTO audit_log (note) VALUES ('n')")
                    .execute(&mut **tx)
                    .await?;
                Ok::<_, SqlxGuardError>(())
            })
        })
        .await
        .unwrap();
    }
    let job = ServiceContext::new("sqlx-nightly").with_job_id("j-9");
    let capture = tenant_guard_testkit::capture::Capture::new();
    let all: i64 = {
        let _guard = capture.set_default();
        with_service_role(&env.guard, &job, |tx| {
            Box::pin(async move {
                Ok::<_, SqlxGuardError>(
                    sqlx::query_scalar("SELECT count(*) FROM audit_log")
                        .fetch_one(&mut **tx)
                        .await?,
                )
            })
        })
        .await
        .unwrap()
    };
    assert_eq!(all, 2);
    let audit = capture.all_text();
    assert!(
        audit.contains("sqlx-nightly") && audit.contains("j-9"),
        "{audit}"
    );

    let (one, user): (i64, String) = with_org_job(&env.guard, &job, bob.org_id(), |tx| {
        Box::pin(async move {
            let row = sqlx::query("SELECT count(*), current_user::text FROM audit_log")
                .fetch_one(&mut **tx)
                .await?;
            Ok::<_, SqlxGuardError>((row.get(0), row.get(1)))
        })
    })
    .await
    .unwrap();
    assert_eq!((one, user.as_str()), (1, "authenticated"));
    let _ = Role::new("authenticated").unwrap();
}

/// The error table is the tokio-postgres guard's, status and code for status and code.
#[tokio::test]
async fn errors_render_like_the_tokio_postgres_guards() {
    use tenant_guard_postgres::GuardError;
    let cases: [(SqlxGuardError, GuardError); 3] = [
        (sqlx::Error::PoolTimedOut.into(), GuardError::PoolTimeout),
        (sqlx::Error::PoolClosed.into(), GuardError::PoolClosed),
        (
            SqlxGuardError::RoleNotAllowed("x".into()),
            GuardError::RoleNotAllowed("x".into()),
        ),
    ];
    for (ours, theirs) in cases {
        assert_eq!(ours.to_error_response(), theirs.to_error_response());
    }
    // Server errors, produced for real by both drivers.
    let env = env(1).await;
    let (alice, bob) = two_orgs(&env.issuer);
    let sql = format!(
        "INSERT INTO projects (org_id, name) VALUES ('{}', 'x')",
        bob.org_id()
    );
    let sql_ref = sql.as_str();
    let ours = with_tenant_guard(&env.guard, &alice, |tx| {
        Box::pin(async move {
            sqlx::query(sql_ref).execute(&mut **tx).await?;
            Ok::<_, SqlxGuardError>(())
        })
    })
    .await
    .unwrap_err();
    let mut config = env.db.config().clone();
    config.user(common::LOGIN);
    let pool = tenant_guard_postgres::TenantPool::builder(config)
        .build()
        .unwrap();
    let theirs = tenant_guard_postgres::with_tenant_guard(&pool, &alice, async |tx| {
        tx.execute(sql.as_str(), &[]).await?;
        Ok::<_, GuardError>(())
    })
    .await
    .unwrap_err();
    assert_eq!(ours.to_error_response(), theirs.to_error_response());
}
