//! Scoping, roles, service paths, errors, the pool and the support SQL, against a real server.
#![allow(clippy::unwrap_used, clippy::expect_used)] // helpers outside #[test] fns

mod common;

use std::time::Duration;

use common::{LOGIN, TestError, TestIssuer, env, two_orgs};
use tenant_guard_core::{Principal, ServiceContext, ToErrorResponse};
use tenant_guard_postgres::{
    GuardError, LoginPolicy, ScopeOptions, TenantPool, TenantTx, support, with_org_job,
    with_service_role, with_tenant_guard, with_tenant_guard_options,
};
use uuid::Uuid;

fn assert_send<T: Send>(_: T) {}

#[tokio::test]
async fn guard_futures_are_send() {
    let env = env(1).await;
    let (alice, _) = two_orgs(&env.issuer);
    // Not awaited: only the types are checked (axum handlers and tokio::spawn need Send).
    assert_send(with_tenant_guard(&env.pool, &alice, async |tx| {
        let rows = tx.query("SELECT 1", &[]).await?;
        tokio::task::yield_now().await;
        tx.execute("SELECT $1::int", &[&1i32]).await?;
        Ok::<_, GuardError>(rows.len())
    }));
    assert_send(env.pool.begin(&alice, ScopeOptions::default()));
    let tx = env
        .pool
        .begin(&alice, ScopeOptions::default())
        .await
        .unwrap();
    assert_send(tx.query_one("SELECT 1", &[]));
    assert_send(async move { tx.commit().await });
}

/// What the support SQL's helpers and the raw settings answer inside a guarded transaction.
async fn helpers(
    pool: &TenantPool,
    principal: &Principal,
    options: ScopeOptions,
) -> Vec<Option<String>> {
    let row = with_tenant_guard_options(pool, principal, options, async |tx| {
        tx.query_one(
            "SELECT current_user::text, session_user::text,
                    current_setting('request.jwt.claims'),
                    auth.uid()::text, auth.role(), auth.jwt() ->> 'org_id',
                    tenant_guard.org_id()::text, tenant_guard.user_id(), tenant_guard.request_id(),
                    current_setting('transaction_read_only'),
                    nullif(current_setting('request.jwt.claim.sub', true), ''),
                    nullif(current_setting('request.jwt.claim.role', true), '')",
            &[],
        )
        .await
    })
    .await
    .unwrap();
    (0..row.len()).map(|i| row.get(i)).collect()
}

#[tokio::test]
async fn a_transaction_sees_the_principal_and_nothing_else() {
    let env = env(2).await;
    let (alice, _) = two_orgs(&env.issuer);
    let options = ScopeOptions::default().request_id("req-42");
    let got = helpers(&env.pool, &alice, options).await;
    let some = |s: &str| Some(s.to_owned());
    assert_eq!(got[0], some("authenticated"));
    assert_eq!(got[1], some(LOGIN));
    assert_eq!(got[2], some(alice.claims_json()));
    assert_eq!(got[3], some(alice.user_id()));
    assert_eq!(got[4], some("authenticated"));
    assert_eq!(got[5], some(&alice.org_id().to_string()));
    assert_eq!(got[6], some(&alice.org_id().to_string()));
    assert_eq!(got[7], some(alice.user_id()));
    // The default shape sets role, claims and org only.
    assert_eq!(got[8], None, "request id set without opting in");
    assert_eq!(got[9], some("off"));
    assert_eq!((got[10].as_deref(), got[11].as_deref()), (None, None));
}

/// `auth.uid()`, `auth.role()`, `auth.jwt()`, `tenant_guard.org_id()` and `tenant_guard.user_id()`
/// answer the same whichever settings the pool sets, in session and pooler (unnamed) mode, for a
/// principal whose claims name its role and user, one whose role the token did not name (a
/// default role), one with a membership role and an org job; the opt-in settings are there
/// exactly when asked for.
#[tokio::test]
async fn helpers_answer_the_same_in_every_scope_shape() {
    use tenant_guard_postgres::{Pooler, ScopeSettings};
    let env = env(1).await;
    let (alice, _) = two_orgs(&env.issuer);
    let org = alice.org_id();
    // A role the token does not name: the verifier's default role. Its claims do not say the
    // role in force, so the guard sets the per-claim settings for it in every mode.
    let secret = [7u8; 32];
    let verifier = tenant_guard_core::Verifier::builder(tenant_guard_core::Environment::Test)
        .hmac_secret(secret)
        .audience("shapes")
        .allowed_roles(["authenticated", "anon"])
        .default_role("authenticated")
        .build()
        .unwrap();
    let claims = serde_json::json!({
        "sub": Uuid::new_v4().to_string(), "org_id": org.to_string(), "aud": "shapes",
        "exp": 4_000_000_000u64,
    });
    let token = jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(&secret),
    )
    .unwrap();
    let defaulted = verifier.verify(&token).unwrap();
    assert!(!defaulted.claims_agree());
    let anon = env.issuer.user_with_role(org, "anon");
    let principals = [
        ("claims agree", alice.clone()),
        ("anon", anon),
        ("default role", defaulted),
    ];
    let all = [
        ScopeSettings::MINIMAL,
        ScopeSettings::MINIMAL.claim_settings(true),
        ScopeSettings::MINIMAL.request_id(true),
        ScopeSettings::LEGACY,
    ];
    for pooler in [Pooler::None, Pooler::Transaction] {
        for settings in all {
            let pool = common::pool_builder(&env.db)
                .max_size(1)
                .pooler(pooler)
                .scope_settings(settings)
                .build()
                .unwrap();
            for (what, p) in &principals {
                let options = ScopeOptions::default().request_id("req-7");
                let got = helpers(&pool, p, options).await;
                let ctx = format!("{what}, {settings:?}, {pooler:?}");
                let role = p.role().as_str();
                assert_eq!(got[0].as_deref(), Some(role), "{ctx}");
                assert_eq!(got[2].as_deref(), Some(p.claims_json()), "{ctx}");
                if Uuid::parse_str(p.user_id()).is_ok() {
                    assert_eq!(got[3].as_deref(), Some(p.user_id()), "auth.uid(), {ctx}");
                }
                assert_eq!(got[4].as_deref(), Some(role), "auth.role(), {ctx}");
                assert_eq!(
                    got[6],
                    Some(org.to_string()),
                    "tenant_guard.org_id(), {ctx}"
                );
                assert_eq!(
                    got[7].as_deref(),
                    Some(p.user_id()),
                    "tenant_guard.user_id(), {ctx}"
                );
                // Without a session reset in between (pooler mode) the per-claim settings are
                // overwritten every time.
                let forced = pooler == Pooler::Transaction;
                let request_id = settings.sets_request_id().then_some("req-7");
                assert_eq!(
                    got[8].as_deref(),
                    request_id,
                    "tenant_guard.request_id(), {ctx}"
                );
                if settings.sets_claim_settings() || forced {
                    assert_eq!(got[10].as_deref(), Some(p.user_id()), "{ctx}");
                    assert_eq!(got[11].as_deref(), Some(role), "{ctx}");
                } else if p.claims_agree() {
                    assert_eq!(
                        (got[10].as_deref(), got[11].as_deref()),
                        (None, None),
                        "{ctx}"
                    );
                }
            }
        }
    }
}

#[tokio::test]
async fn read_only_transactions_refuse_writes() {
    let env = env(1).await;
    let (alice, _) = two_orgs(&env.issuer);
    let tx = env
        .pool
        .begin(&alice, ScopeOptions::default().read_only(true))
        .await
        .unwrap();
    assert!(tx.is_read_only());
    let ro: String = tx
        .query_one("SHOW transaction_read_only", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(ro, "on");
    let err = tx
        .execute(
            "INSERT INTO projects (org_id, name) VALUES ($1, 'x')",
            &[&alice.org_id().as_uuid()],
        )
        .await
        .unwrap_err();
    assert_eq!(err.sqlstate().map(|s| s.code()), Some("25006"));
}

#[tokio::test]
async fn the_role_from_the_token_is_honoured() {
    let env = env(1).await;
    let org = Uuid::new_v4();
    let anon = env.issuer.user_with_role(org, "anon");
    let tx = env
        .pool
        .begin(&anon, ScopeOptions::default())
        .await
        .unwrap();
    let user: String = tx
        .query_one("SELECT current_user::text", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(user, "anon");
    // `anon` was granted nothing on projects: refused, whatever the policies say.
    let err = tx.query("SELECT * FROM projects", &[]).await.unwrap_err();
    assert!(err.is_forbidden_by_policy(), "{err:?}");
}

#[tokio::test]
async fn a_role_outside_the_allowlists_never_reaches_set_role() {
    let env = env(1).await;
    let org = Uuid::new_v4();
    // The verifier's allowlist: a token naming service_role never becomes a principal.
    let token = env.issuer.token(org, "mallory", "service_role");
    assert!(env.issuer.verifier().verify(&token).is_err());
    // A verifier misconfigured to let it through: the pool's own allowlist refuses it before
    // any connection is even opened.
    let lax = TestIssuer::with_allowed_roles(["authenticated", "service_role", "postgres"]);
    for role in ["service_role", "postgres"] {
        let principal = lax.principal(org, "mallory", role).unwrap();
        let err = env
            .pool
            .begin(&principal, ScopeOptions::default())
            .await
            .unwrap_err();
        assert!(matches!(err, GuardError::RoleNotAllowed(_)), "{err:?}");
        assert_eq!(err.to_error_response().status(), 403);
    }
    assert_eq!(env.pool.status().size, 0, "no connection was opened");
}

#[tokio::test]
async fn a_failed_scoping_never_lets_the_statement_run_unscoped() {
    let (db, admin) = common::database().await;
    // A login that is NOT a member of `authenticated` but may insert into projects directly:
    // if the statement ran without its scoping, the row would land.
    common::ensure_login(&admin, "tg_test_ungranted").await;
    admin
        .batch_execute(
            "GRANT INSERT, SELECT ON projects TO tg_test_ungranted;
             ALTER TABLE projects NO FORCE ROW LEVEL SECURITY;
             ALTER TABLE projects DISABLE ROW LEVEL SECURITY;",
        )
        .await
        .unwrap();
    let mut config = db.config().clone();
    config.user("tg_test_ungranted");
    let pool = TenantPool::builder(config).max_size(1).build().unwrap();
    let issuer = TestIssuer::new();
    let (alice, _) = two_orgs(&issuer);
    let tx = pool.begin(&alice, ScopeOptions::default()).await.unwrap();
    let err = tx
        .execute(
            "INSERT INTO projects (org_id, name) VALUES ($1, 'unscoped')",
            &[&alice.org_id().as_uuid()],
        )
        .await
        .unwrap_err();
    assert!(matches!(err, GuardError::Scope(_)), "{err:?}");
    assert_eq!(err.to_error_response().status(), 500);
    assert!(!err.to_error_response().body().contains("tg_test"));
    drop(tx);
    let landed: i64 = admin
        .query_one("SELECT count(*) FROM projects WHERE name = 'unscoped'", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(landed, 0);
}

#[tokio::test]
async fn rls_violations_and_constraints_map_to_their_error_kinds() {
    let env = env(1).await;
    let (alice, bob) = two_orgs(&env.issuer);
    // Writing a row for another org: the policy's WITH CHECK refuses it (SQLSTATE 42501).
    let err: GuardError = with_tenant_guard(&env.pool, &alice, async |tx| {
        tx.execute(
            "INSERT INTO projects (org_id, name) VALUES ($1, 'smuggled')",
            &[&bob.org_id().as_uuid()],
        )
        .await
    })
    .await
    .unwrap_err();
    assert!(matches!(err, GuardError::ForbiddenByPolicy(_)), "{err:?}");
    let response = err.to_error_response();
    assert_eq!(response.status(), 403);
    assert_eq!(response.code(), "forbidden_by_policy");
    assert!(
        !response.body().contains("projects"),
        "no SQL details in the body"
    );
    assert!(!err.to_string().contains("smuggled"));

    // A unique violation: 409, without the duplicated value anywhere in the message.
    let err: GuardError = with_tenant_guard(&env.pool, &alice, async |tx| {
        for _ in 0..2 {
            tx.execute(
                "INSERT INTO projects (org_id, name) VALUES ($1, 'dup-value')",
                &[&alice.org_id().as_uuid()],
            )
            .await?;
        }
        Ok(())
    })
    .await
    .unwrap_err();
    assert!(matches!(err, GuardError::UniqueViolation(_)), "{err:?}");
    assert_eq!(err.to_error_response().status(), 409);
    assert!(!err.to_string().contains("dup-value"));
    assert!(!err.to_error_response().body().contains("dup-value"));

    // The closure's own error type passes through, with the guard's errors converted into it.
    let err = with_tenant_guard(&env.pool, &alice, async |tx| {
        tx.execute("SELECT * FROM no_such_table", &[]).await?;
        Ok::<(), TestError>(())
    })
    .await
    .unwrap_err();
    assert!(matches!(err, TestError::Guard(GuardError::Database(_))));
}

#[tokio::test]
async fn an_exhausted_pool_times_out_instead_of_hanging() {
    let (db, _admin) = common::database().await;
    let pool = common::pool_builder(&db)
        .max_size(1)
        .wait_timeout(Duration::from_millis(100))
        .build()
        .unwrap();
    let issuer = TestIssuer::new();
    let (alice, bob) = two_orgs(&issuer);
    let held = pool.begin(&alice, ScopeOptions::default()).await.unwrap();
    held.query("SELECT 1", &[]).await.unwrap();
    let err = pool.begin(&bob, ScopeOptions::default()).await.unwrap_err();
    assert!(matches!(err, GuardError::PoolTimeout), "{err:?}");
    let response = err.to_error_response();
    assert_eq!(response.status(), 503);
    assert_eq!(response.retry_after(), Some(1));
    held.commit().await.unwrap();
    // Free again.
    pool.begin(&bob, ScopeOptions::default())
        .await
        .unwrap()
        .commit()
        .await
        .unwrap();
}

#[tokio::test]
async fn an_unreachable_database_is_unavailable() {
    let mut config = tokio_postgres::Config::new();
    config
        .host("127.0.0.1")
        .port(1)
        .user(LOGIN)
        .dbname("nowhere");
    let pool = TenantPool::builder(config)
        .connect_timeout(Duration::from_secs(2))
        .build()
        .unwrap();
    let issuer = TestIssuer::new();
    let (alice, _) = two_orgs(&issuer);
    let err = pool
        .begin(&alice, ScopeOptions::default())
        .await
        .unwrap_err();
    assert!(
        matches!(err, GuardError::Unavailable(_) | GuardError::PoolTimeout),
        "{err:?}"
    );
    assert_eq!(err.to_error_response().status(), 503);
}

async fn seed_projects(admin: &tokio_postgres::Client, orgs: &[Uuid]) {
    for (i, org) in orgs.iter().enumerate() {
        for n in 0..=i {
            admin
                .execute(
                    "INSERT INTO projects (org_id, name) VALUES ($1, $2)",
                    &[org, &format!("p{n}")],
                )
                .await
                .unwrap();
        }
    }
}

async fn count_projects(tx: &mut TenantTx) -> Result<i64, GuardError> {
    Ok(tx
        .query_one("SELECT count(*) FROM projects", &[])
        .await?
        .get(0))
}

#[tokio::test]
async fn the_service_role_sees_every_org_and_an_org_job_sees_one() {
    let env = env(2).await;
    let (alice, bob) = two_orgs(&env.issuer);
    seed_projects(&env.admin, &[uuid_of(&alice), uuid_of(&bob)]).await; // 1 + 2 rows
    let job = ServiceContext::new("test-reindex").with_job_id("job-1");

    let all = with_service_role(&env.pool, &job, async |tx| {
        let who: String = tx
            .query_one("SELECT current_user::text || ' ' || auth.role()", &[])
            .await?
            .get(0);
        assert_eq!(who, "service_role service_role");
        count_projects(tx).await
    })
    .await
    .unwrap();
    assert_eq!(all, 3);

    let bobs = with_org_job(&env.pool, &job, bob.org_id(), async |tx| {
        let who: String = tx.query_one("SELECT current_user::text", &[]).await?.get(0);
        assert_eq!(who, "authenticated");
        count_projects(tx).await
    })
    .await
    .unwrap();
    assert_eq!(bobs, 2);

    let alices = with_tenant_guard(&env.pool, &alice, async |tx| count_projects(tx).await)
        .await
        .unwrap();
    assert_eq!(alices, 1);
}

#[tokio::test]
async fn statements_in_flight_together_all_run_scoped() {
    let env = env(1).await;
    let (alice, bob) = two_orgs(&env.issuer);
    seed_projects(&env.admin, &[uuid_of(&alice), uuid_of(&bob)]).await;
    let tx = env.pool.begin(&bob, ScopeOptions::default()).await.unwrap();
    // Several statements first polled together: the scoping still goes first.
    let (a, b, c) = tokio::join!(
        tx.query_one("SELECT count(*) FROM projects", &[]),
        tx.query_one("SELECT tenant_guard.org_id()", &[]),
        tx.query_one("SELECT current_user::text", &[]),
    );
    assert_eq!(a.unwrap().get::<_, i64>(0), 2);
    assert_eq!(b.unwrap().get::<_, Uuid>(0), bob.org_id());
    assert_eq!(c.unwrap().get::<_, String>(0), "authenticated");
    tx.commit().await.unwrap();
}

#[tokio::test]
async fn prepared_and_typed_statements_run_scoped() {
    let env = env(1).await;
    let (alice, bob) = two_orgs(&env.issuer);
    seed_projects(&env.admin, &[uuid_of(&alice), uuid_of(&bob)]).await;
    let tx = env.pool.begin(&bob, ScopeOptions::default()).await.unwrap();
    let statement = tx
        .prepare("SELECT count(*) FROM projects WHERE name <> $1")
        .await
        .unwrap();
    let n: i64 = tx.query_one(&statement, &[&"none"]).await.unwrap().get(0);
    assert_eq!(n, 2);
    let rows = tx
        .query_typed(
            "SELECT name FROM projects WHERE name = $1",
            &[(&"p1", tokio_postgres::types::Type::TEXT)],
        )
        .await
        .unwrap();
    assert_eq!(rows.len(), 1);
    tx.rollback().await.unwrap();
    // A typed statement as the very first statement carries the scoping too.
    let tx = env
        .pool
        .begin(&alice, ScopeOptions::default())
        .await
        .unwrap();
    let rows = tx
        .query_typed("SELECT name FROM projects", &[])
        .await
        .unwrap();
    assert_eq!(rows.len(), 1);
    tx.commit().await.unwrap();
}

#[tokio::test]
async fn the_login_check_refuses_a_superuser_and_accepts_an_authenticator() {
    let (db, _admin) = common::database().await;
    let issuer = TestIssuer::new();
    let (alice, _) = two_orgs(&issuer);

    let report = common::pool_builder(&db)
        .build()
        .unwrap()
        .check_login()
        .await
        .unwrap();
    assert!(report.is_fit(), "{report}");

    let superuser = TenantPool::builder(db.config().clone())
        .login_policy(LoginPolicy::Refuse)
        .build()
        .unwrap();
    let err = superuser
        .begin(&alice, ScopeOptions::default())
        .await
        .unwrap_err();
    let GuardError::InsecureLogin(problems) = &err else {
        panic!("{err:?}");
    };
    assert!(problems.contains("superuser"), "{problems}");
    assert_eq!(err.to_error_response().status(), 500);

    // The default policy warns and carries on (development setups).
    let lenient = TenantPool::builder(db.config().clone()).build().unwrap();
    let tx = lenient
        .begin(&alice, ScopeOptions::default())
        .await
        .unwrap();
    let user: String = tx
        .query_one("SELECT current_user::text", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(user, "authenticated", "a superuser login is still scoped");
}

#[tokio::test]
async fn the_login_check_reports_owned_rls_tables_and_bypassrls() {
    let (db, admin) = common::database().await;
    common::ensure_login(&admin, "tg_test_owner").await;
    admin
        .batch_execute(
            "GRANT CREATE ON SCHEMA public TO tg_test_owner;
             SET ROLE tg_test_owner;
             CREATE TABLE owned (org_id uuid);
             ALTER TABLE owned ENABLE ROW LEVEL SECURITY;
             RESET ROLE;",
        )
        .await
        .unwrap();
    let mut config = db.config().clone();
    config.user("tg_test_owner");
    let report = TenantPool::builder(config)
        .login_policy(LoginPolicy::Skip)
        .build()
        .unwrap()
        .check_login()
        .await
        .unwrap();
    assert_eq!(report.owned_rls_tables, vec!["public.owned".to_owned()]);
    assert!(!report.superuser);
    assert!(report.problems()[0].contains("owns tables"));
}

#[tokio::test]
async fn the_support_sql_is_idempotent_and_keeps_existing_auth_functions() {
    let (db, admin) = common::database().await;
    // A Supabase-like auth.uid() of its own must survive.
    admin
        .batch_execute(
            "CREATE OR REPLACE FUNCTION auth.uid() RETURNS uuid LANGUAGE sql STABLE
                 AS $$ SELECT '00000000-0000-0000-0000-000000000001'::uuid $$;",
        )
        .await
        .unwrap();
    support::apply_support_sql(&admin).await.unwrap();
    support::apply(db.config(), "").await.unwrap();
    let row = admin
        .query_one(
            "SELECT auth.uid()::text, tenant_guard.support_version(),
                    (SELECT rolbypassrls FROM pg_roles WHERE rolname = 'service_role'),
                    (SELECT rolcanlogin FROM pg_roles WHERE rolname = 'authenticated'),
                    pg_has_role($1, 'authenticated', 'MEMBER')",
            &[&LOGIN],
        )
        .await
        .unwrap();
    assert_eq!(
        row.get::<_, String>(0),
        "00000000-0000-0000-0000-000000000001"
    );
    assert_eq!(row.get::<_, i32>(1), support::SUPPORT_SQL_VERSION);
    assert!(row.get::<_, bool>(2), "service_role bypasses RLS");
    assert!(!row.get::<_, bool>(3), "app roles cannot log in");
    assert!(
        row.get::<_, bool>(4),
        "the login may switch to authenticated"
    );
}

#[tokio::test]
async fn the_support_sql_applies_concurrently_across_databases() {
    let server = tenant_guard_testkit::TestPostgres::shared().unwrap();
    let mut tasks = Vec::new();
    for _ in 0..6 {
        let db = server.create_database_async().await.unwrap();
        tasks.push(tokio::spawn(async move {
            let admin = db.connect().await.unwrap();
            let result = support::apply_support_sql_with(&admin, Some(LOGIN), "").await;
            (db, result)
        }));
    }
    for task in tasks {
        let (_db, result) = task.await.unwrap();
        result.unwrap();
    }
}

#[tokio::test]
async fn principals_from_real_tokens_cross_no_org_boundary() {
    let env = env(4).await;
    let (alice, bob) = two_orgs(&env.issuer);
    seed_projects(&env.admin, &[uuid_of(&alice), uuid_of(&bob)]).await;
    // Interleave many transactions of both orgs on a small pool: each sees only its own.
    let mut tasks = Vec::new();
    for i in 0..40 {
        let pool = env.pool.clone();
        let p: Principal = if i % 2 == 0 {
            alice.clone()
        } else {
            bob.clone()
        };
        tasks.push(tokio::spawn(async move {
            let read_only = i % 3 == 0;
            let options = ScopeOptions::default().read_only(read_only);
            let orgs: Vec<Uuid> = with_tenant_guard_options(&pool, &p, options, async |tx| {
                let rows = tx
                    .query("SELECT DISTINCT org_id FROM projects", &[])
                    .await?;
                Ok::<_, GuardError>(rows.iter().map(|r| r.get(0)).collect())
            })
            .await
            .unwrap();
            assert_eq!(orgs, vec![p.org_id()]);
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
}

/// The UUID org of a principal of the (UUID-keyed) test schema.
fn uuid_of(principal: &tenant_guard_core::Principal) -> Uuid {
    principal.org_id().as_uuid().expect("a UUID org")
}
