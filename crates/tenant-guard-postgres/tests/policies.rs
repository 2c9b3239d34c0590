//! Every policy shape of the seeds, checked through the real guard with the testkit's
//! isolation assertion: cross-org select/update/delete/insert blocked, own rows fully usable.
#![allow(clippy::unwrap_used, clippy::expect_used)] // helpers outside #[test] fns

mod common;

use common::{Env, env};
use tenant_guard_core::Principal;
use tenant_guard_testkit::{IsolatedTable, assert_table_isolated, check_table_isolated};
use uuid::Uuid;

/// Two users of two orgs, with their profiles, memberships and a project each (written by the
/// superuser, as migrations or sign-up would).
async fn seeded() -> (Env, Principal, Principal) {
    let env = env(2).await;
    let alice = env.issuer.user(Uuid::new_v4());
    let bob = env.issuer.user(Uuid::new_v4());
    env.admin
        .batch_execute(
            "CREATE TABLE org_projects (org_id uuid PRIMARY KEY, project_id uuid NOT NULL);
             GRANT SELECT ON org_projects TO authenticated;",
        )
        .await
        .unwrap();
    for p in [&alice, &bob] {
        let user: Uuid = p.user_id().parse().unwrap();
        let org = p.org_id().as_uuid();
        env.admin
            .execute(
                "INSERT INTO user_profiles (id, tenant_id) VALUES ($1, $2)",
                &[&user, &org],
            )
            .await
            .unwrap();
        env.admin
            .execute(
                "INSERT INTO workspace_memberships (workspace_id, user_id) VALUES ($1, $2)",
                &[&org, &user],
            )
            .await
            .unwrap();
        env.admin
            .execute(
                "WITH p AS (INSERT INTO projects (org_id, name) VALUES ($1, 'parent') RETURNING id)
                 INSERT INTO org_projects SELECT $1, id FROM p",
                &[&org],
            )
            .await
            .unwrap();
    }
    (env, alice, bob)
}

#[tokio::test]
async fn direct_org_id_column() {
    let (env, alice, bob) = seeded().await;
    let table = IsolatedTable::new(
        "public.projects",
        "id",
        "INSERT INTO projects (org_id, name) VALUES ($1::uuid, 'probe') RETURNING id::text",
    );
    assert_table_isolated(&env.pool, &table, &alice, &bob).await;
}

#[tokio::test]
async fn parent_join() {
    let (env, alice, bob) = seeded().await;
    let table = IsolatedTable::new(
        "tasks",
        "id",
        "INSERT INTO tasks (project_id, title)
         VALUES ((SELECT project_id FROM org_projects WHERE org_id = $1::uuid), 'probe')
         RETURNING id::text",
    );
    assert_table_isolated(&env.pool, &table, &alice, &bob).await;
}

#[tokio::test]
async fn seed_001_tenant_id_through_user_profiles() {
    let (env, alice, bob) = seeded().await;
    let table = IsolatedTable::new(
        "campaigns",
        "id",
        "INSERT INTO campaigns (tenant_id, name) VALUES ($1::uuid, 'probe') RETURNING id::text",
    );
    assert_table_isolated(&env.pool, &table, &alice, &bob).await;
}

#[tokio::test]
async fn seed_002_org_from_the_jwt_claims() {
    let (env, alice, bob) = seeded().await;
    let table = IsolatedTable::new(
        "invoices",
        "id",
        "INSERT INTO invoices (org_id, amount) VALUES ($1::uuid, 100) RETURNING id::text",
    );
    assert_table_isolated(&env.pool, &table, &alice, &bob).await;
}

#[tokio::test]
async fn seed_004_membership_exists() {
    let (env, alice, bob) = seeded().await;
    let table = IsolatedTable::new(
        "work_sessions",
        "id",
        "INSERT INTO work_sessions (workspace_id, title) VALUES ($1::uuid, 'probe') RETURNING id::text",
    );
    assert_table_isolated(&env.pool, &table, &alice, &bob).await;
}

#[tokio::test]
async fn seed_000_per_user_ownership_within_one_org() {
    let (env, _, _) = seeded().await;
    let org = Uuid::new_v4();
    let carol = env.issuer.user(org);
    let dave = env.issuer.user(org);
    let table = IsolatedTable::new(
        "agent_sessions",
        "id",
        "INSERT INTO agent_sessions (user_id, title) VALUES ($2::uuid, 'probe') RETURNING id::text",
    );
    assert_table_isolated(&env.pool, &table, &carol, &dave).await;
}

#[tokio::test]
async fn a_leaky_policy_is_caught() {
    let (env, alice, bob) = seeded().await;
    env.admin
        .batch_execute(
            "CREATE TABLE notes (id uuid PRIMARY KEY DEFAULT gen_random_uuid(), org_id uuid NOT NULL);
             ALTER TABLE notes ENABLE ROW LEVEL SECURITY;
             ALTER TABLE notes FORCE ROW LEVEL SECURITY;
             GRANT SELECT, INSERT, UPDATE, DELETE ON notes TO authenticated;
             -- The classic mistake: 'authenticated' is not 'same org'.
             CREATE POLICY notes_any ON notes FOR ALL TO authenticated
                 USING (auth.role() = 'authenticated') WITH CHECK (true);",
        )
        .await
        .unwrap();
    let table = IsolatedTable::new(
        "notes",
        "id",
        "INSERT INTO notes (org_id) VALUES ($1::uuid) RETURNING id::text",
    );
    let failure = check_table_isolated(&env.pool, &table, &alice, &bob)
        .await
        .unwrap_err();
    let text = failure.to_string();
    for verb in ["SELECT", "UPDATE", "DELETE", "INSERT"] {
        assert!(text.contains(&format!("A can {verb}")), "{text}");
        assert!(text.contains(&format!("B can {verb}")), "{text}");
    }
    // The probes were rolled back and the probe rows removed.
    let left: i64 = env
        .admin
        .query_one("SELECT count(*) FROM notes", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(left, 0);
}

#[tokio::test]
async fn a_policy_that_hides_own_rows_is_caught() {
    let (env, alice, bob) = seeded().await;
    env.admin
        .batch_execute(
            "CREATE TABLE drafts (id uuid PRIMARY KEY DEFAULT gen_random_uuid(), org_id uuid NOT NULL);
             ALTER TABLE drafts ENABLE ROW LEVEL SECURITY;
             GRANT SELECT, INSERT, UPDATE, DELETE ON drafts TO authenticated;
             CREATE POLICY drafts_insert ON drafts FOR INSERT TO authenticated
                 WITH CHECK (org_id = (SELECT tenant_guard.org_id()));",
        )
        .await
        .unwrap();
    let table = IsolatedTable::new(
        "drafts",
        "id",
        "INSERT INTO drafts (org_id) VALUES ($1::uuid) RETURNING id::text",
    );
    // RETURNING needs SELECT visibility: without a SELECT policy even the own insert fails.
    let failure = check_table_isolated(&env.pool, &table, &alice, &bob)
        .await
        .unwrap_err();
    assert!(
        failure.violations[0].contains("cannot insert a row of its own"),
        "{failure}"
    );
}
