//! Integer and text org ids end to end, against a real server: tokens of an issuer configured
//! with `OrgIdKind::Integer` / `OrgIdKind::Text`, schemas keyed by `bigint` / `text` with RLS on
//! `tenant_guard.org_id_bigint()`, a plain cast of the setting, and `tenant_guard.org_id_text()`.
#![allow(clippy::unwrap_used, clippy::expect_used)] // helpers outside #[test] fns

mod common;

use common::{TestIssuer, database, pool_builder};
use tenant_guard_core::{AuthError, OrgId, OrgIdKind, Principal, ServiceContext};
use tenant_guard_postgres::tokio_postgres::Client;
use tenant_guard_postgres::{
    GuardError, TenantPool, with_org_job, with_service_role, with_tenant_guard,
};

/// Tables keyed by a `bigint` org (two policy spellings) and by a text slug.
const KINDS_SCHEMA: &str = r#"
CREATE TABLE accounts (
    id bigserial PRIMARY KEY,
    org_id bigint NOT NULL,
    name text NOT NULL
);
CREATE POLICY accounts_org ON accounts FOR ALL TO authenticated
    USING (org_id = (SELECT tenant_guard.org_id_bigint()))
    WITH CHECK (org_id = (SELECT tenant_guard.org_id_bigint()));

-- The same rule written as a cast of the setting, as the support module documents.
CREATE TABLE ledgers (
    org_id bigint NOT NULL DEFAULT nullif(current_setting('tenant_guard.org_id', true), '')::bigint,
    note text NOT NULL
);
CREATE POLICY ledgers_org ON ledgers FOR ALL TO authenticated
    USING (org_id = (SELECT nullif(current_setting('tenant_guard.org_id', true), '')::bigint))
    WITH CHECK (org_id = (SELECT nullif(current_setting('tenant_guard.org_id', true), '')::bigint));

CREATE TABLE pages (
    id bigserial PRIMARY KEY,
    org_slug text NOT NULL DEFAULT tenant_guard.org_id_text(),
    title text NOT NULL
);
CREATE POLICY pages_org ON pages FOR ALL TO authenticated
    USING (org_slug = (SELECT tenant_guard.org_id_text()))
    WITH CHECK (org_slug = (SELECT tenant_guard.org_id_text()));

DO $$
DECLARE t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['accounts', 'ledgers', 'pages'] LOOP
        EXECUTE format('ALTER TABLE %I ENABLE ROW LEVEL SECURITY', t);
        EXECUTE format('ALTER TABLE %I FORCE ROW LEVEL SECURITY', t);
        EXECUTE format('GRANT SELECT, INSERT, UPDATE, DELETE ON %I TO authenticated, service_role', t);
    END LOOP;
END $$;
GRANT USAGE ON SEQUENCE accounts_id_seq, pages_id_seq TO authenticated, service_role;

INSERT INTO accounts (org_id, name) VALUES (7, 'seven-a'), (7, 'seven-b'), (8, 'eight'),
    (-7, 'minus-seven'), (9223372036854775807, 'max');
INSERT INTO ledgers (org_id, note) VALUES (7, 'seven'), (8, 'eight');
INSERT INTO pages (org_slug, title) VALUES ('acme', 'acme-1'), ('acme', 'acme-2'),
    ('ACME', 'upper-acme'), ('globex', 'globex-1'), ('acme.eu', 'acme-eu');
"#;

async fn kinds_env() -> (tenant_guard_testkit::TestDatabase, Client, TenantPool) {
    let (db, admin) = database().await;
    admin
        .batch_execute(KINDS_SCHEMA)
        .await
        .expect("kinds schema");
    let pool = pool_builder(&db).max_size(2).build().expect("pool");
    (db, admin, pool)
}

async fn names(pool: &TenantPool, who: &Principal, sql: &'static str) -> Vec<String> {
    with_tenant_guard(pool, who, async |tx| {
        let rows = tx.query(sql, &[]).await?;
        Ok::<_, GuardError>(rows.iter().map(|r| r.get::<_, String>(0)).collect())
    })
    .await
    .unwrap()
}

#[tokio::test]
async fn an_integer_org_token_sees_only_its_org_rows() {
    let (_db, _admin, pool) = kinds_env().await;
    let issuer = TestIssuer::with_org_id_kind(OrgIdKind::Integer);
    let seven = issuer.user(7_i64);
    let eight = issuer.user(8_i64);
    assert_eq!(seven.org_id(), &OrgId::Int(7));

    let accounts = "SELECT name FROM accounts ORDER BY name";
    assert_eq!(names(&pool, &seven, accounts).await, ["seven-a", "seven-b"]);
    assert_eq!(names(&pool, &eight, accounts).await, ["eight"]);
    let ledgers = "SELECT note FROM ledgers";
    assert_eq!(names(&pool, &seven, ledgers).await, ["seven"]);
    assert_eq!(names(&pool, &eight, ledgers).await, ["eight"]);
    // Negative and extreme ids scope like any other (canonical decimal text).
    assert_eq!(
        names(&pool, &issuer.user(-7_i64), accounts).await,
        ["minus-seven"]
    );
    assert_eq!(
        names(&pool, &issuer.user(i64::MAX), accounts).await,
        ["max"]
    );

    // What the transaction sees: the canonical text, the typed helpers, the claim as minted.
    let row = with_tenant_guard(&pool, &seven, async |tx| {
        tx.query_one(
            "SELECT current_setting('tenant_guard.org_id'), tenant_guard.org_id_bigint(),
                    tenant_guard.org_id_text(), auth.jwt() -> 'org_id'",
            &[],
        )
        .await
    })
    .await
    .unwrap();
    assert_eq!(row.get::<_, String>(0), "7");
    assert_eq!(row.get::<_, i64>(1), 7);
    assert_eq!(row.get::<_, String>(2), "7");
    assert_eq!(row.get::<_, serde_json::Value>(3), serde_json::json!(7));

    // A token naming the org as a decimal string is the same org.
    let as_string = issuer
        .verifier()
        .verify(&issuer.sign(serde_json::json!({
            "sub": "u-string", "role": "authenticated", "org_id": "8"
        })))
        .unwrap();
    assert_eq!(as_string.org_id(), &OrgId::Int(8));
    assert_eq!(names(&pool, &as_string, accounts).await, ["eight"]);

    // Writes: the own org passes WITH CHECK, another org's is refused (42501, 403).
    let err = with_tenant_guard(&pool, &seven, async |tx| {
        tx.execute(
            "INSERT INTO accounts (org_id, name) VALUES ($1, 'smuggled')",
            &[&8_i64],
        )
        .await
    })
    .await
    .unwrap_err();
    assert!(matches!(err, GuardError::ForbiddenByPolicy(_)), "{err:?}");
    with_tenant_guard(&pool, &seven, async |tx| {
        tx.execute("INSERT INTO ledgers (note) VALUES ('defaulted')", &[])
            .await
    })
    .await
    .unwrap();
    assert_eq!(
        names(&pool, &seven, "SELECT note FROM ledgers ORDER BY note").await,
        ["defaulted", "seven"]
    );
}

#[tokio::test]
async fn malformed_integer_org_claims_are_invalid_org() {
    let issuer = TestIssuer::with_org_id_kind(OrgIdKind::Integer);
    for org in [
        serde_json::json!("7d0a3d39-3a4b-4c49-9a41-5bd2f1a1f0aa"),
        serde_json::json!("+7"),
        serde_json::json!("07"),
        serde_json::json!(" 7"),
        serde_json::json!(7.5),
        serde_json::json!("9223372036854775808"),
        serde_json::json!(u64::MAX),
        serde_json::json!("acme"),
    ] {
        let token = issuer.sign(serde_json::json!({
            "sub": "u", "role": "authenticated", "org_id": org
        }));
        assert_eq!(
            issuer.verifier().verify(&token).unwrap_err(),
            AuthError::InvalidOrg,
            "{org}"
        );
    }
}

#[tokio::test]
async fn a_text_org_token_sees_only_its_org_rows() {
    let (_db, _admin, pool) = kinds_env().await;
    let issuer = TestIssuer::with_org_id_kind(OrgIdKind::Text);
    let acme = issuer.user(OrgId::text("acme").unwrap());
    let pages = "SELECT title FROM pages ORDER BY title";
    assert_eq!(names(&pool, &acme, pages).await, ["acme-1", "acme-2"]);
    // Case-sensitive, exact: `ACME` and `acme.eu` are other orgs.
    let upper = issuer.user(OrgId::text("ACME").unwrap());
    assert_eq!(names(&pool, &upper, pages).await, ["upper-acme"]);
    let eu = issuer.user(OrgId::text("acme.eu").unwrap());
    assert_eq!(names(&pool, &eu, pages).await, ["acme-eu"]);
    let nobody = issuer.user(OrgId::text("initech").unwrap());
    assert!(names(&pool, &nobody, pages).await.is_empty());

    // A new row defaults to the org's slug; another org's slug is refused.
    with_tenant_guard(&pool, &acme, async |tx| {
        tx.execute("INSERT INTO pages (title) VALUES ('acme-3')", &[])
            .await
    })
    .await
    .unwrap();
    assert_eq!(
        names(&pool, &acme, pages).await,
        ["acme-1", "acme-2", "acme-3"]
    );
    let err = with_tenant_guard(&pool, &acme, async |tx| {
        tx.execute(
            "INSERT INTO pages (org_slug, title) VALUES ('globex', 'smuggled')",
            &[],
        )
        .await
    })
    .await
    .unwrap_err();
    assert!(matches!(err, GuardError::ForbiddenByPolicy(_)), "{err:?}");
    // A slug that looks like an integer is text here: org_id_bigint() does not make it one org
    // with integer 7 in another schema, and org_id_text() is the slug.
    let row = with_tenant_guard(&pool, &acme, async |tx| {
        tx.query_one(
            "SELECT tenant_guard.org_id_text(), tenant_guard.org_id_bigint()",
            &[],
        )
        .await
    })
    .await
    .unwrap();
    assert_eq!(row.get::<_, String>(0), "acme");
    assert_eq!(row.get::<_, Option<i64>>(1), None);

    // Malformed text org claims never verify.
    for org in [
        serde_json::json!(""),
        serde_json::json!("acme corp"),
        serde_json::json!("acme'--"),
        serde_json::json!("acme\u{7}"),
        serde_json::json!("x".repeat(129)),
        serde_json::json!(7),
    ] {
        let token = issuer.sign(serde_json::json!({
            "sub": "u", "role": "authenticated", "org_id": org
        }));
        assert_eq!(
            issuer.verifier().verify(&token).unwrap_err(),
            AuthError::InvalidOrg,
            "{org}"
        );
    }
}

#[tokio::test]
async fn jobs_of_integer_and_text_orgs_and_the_service_role() {
    let (_db, _admin, pool) = kinds_env().await;
    let job = ServiceContext::new("org-kinds-test");
    let eights = with_org_job(&pool, &job, 8_i64, async |tx| {
        let rows = tx.query("SELECT name FROM accounts", &[]).await?;
        Ok::<_, GuardError>(rows.len())
    })
    .await
    .unwrap();
    assert_eq!(eights, 1);
    let globex = with_org_job(&pool, &job, OrgId::text("globex").unwrap(), async |tx| {
        let rows = tx.query("SELECT title FROM pages", &[]).await?;
        Ok::<_, GuardError>(rows.len())
    })
    .await
    .unwrap();
    assert_eq!(globex, 1);
    // No org on the service path: both typed helpers are NULL (never an error).
    let row = with_service_role(&pool, &job, async |tx| {
        tx.query_one(
            "SELECT tenant_guard.org_id_bigint(), tenant_guard.org_id_text(), tenant_guard.org_id()",
            &[],
        )
        .await
    })
    .await
    .unwrap();
    assert_eq!(row.get::<_, Option<i64>>(0), None);
    assert_eq!(row.get::<_, Option<String>>(1), None);
    assert_eq!(row.get::<_, Option<uuid::Uuid>>(2), None);
}
