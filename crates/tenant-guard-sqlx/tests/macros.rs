//! sqlx's compile-time checked macros (`query!`, `query_as!`, `query_scalar!`) on the guard's
//! scoped transaction. Checked against the committed offline data in `../.sqlx`
//! (`scripts/sqlx-prepare.sh` regenerates it), so building needs no database.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{env, two_orgs};
use tenant_guard_sqlx::{ScopeOptions, SqlxGuardError, with_tenant_guard};
use uuid::Uuid;

#[derive(Debug)]
struct Project {
    id: Uuid,
    org_id: Uuid,
    name: String,
}

#[tokio::test]
async fn checked_macros_run_scoped() {
    let env = env(1).await;
    let (alice, bob) = two_orgs(&env.issuer);
    let projects = with_tenant_guard(&env.guard, &alice, |tx| {
        Box::pin(async move {
            sqlx::query!("INSERT INTO projects (name) VALUES ($1)", "from-macro")
                .execute(&mut **tx)
                .await?;
            let projects = sqlx::query_as!(
                Project,
                "SELECT id, org_id, name FROM projects ORDER BY name"
            )
            .fetch_all(&mut **tx)
            .await?;
            Ok::<_, SqlxGuardError>(projects)
        })
    })
    .await
    .unwrap();
    assert_eq!(projects.len(), 1);
    assert_eq!(projects[0].name, "from-macro");
    assert_eq!(
        projects[0].org_id,
        alice.org_id(),
        "the org came from the token"
    );
    assert_ne!(projects[0].id, Uuid::nil());

    // Another org sees nothing, through the macros too.
    let mut tx = env
        .guard
        .begin(&bob, ScopeOptions::default())
        .await
        .unwrap();
    let seen = sqlx::query_scalar!(r#"SELECT count(*) AS "n!" FROM projects"#)
        .fetch_one(&mut *tx)
        .await
        .unwrap();
    assert_eq!(seen, 0);
    let row = sqlx::query!(r#"SELECT tenant_guard.org_id() AS "org!""#)
        .fetch_one(&mut *tx)
        .await
        .unwrap();
    assert_eq!(row.org, bob.org_id());
    tx.commit().await.unwrap();
}
